/*
 * The ACL engine: parses Mosquitto's acl_file syntax into per-user rule
 * tries and a list of compiled `pattern` rules, answers the per-message
 * read/write check without allocating, and decides SUBSCRIBE filters by
 * intersecting them with the rules. The indexes that choose which rules a
 * SUBSCRIBE filter (or a topic, for the deny patterns) meets are in
 * acl_index.c. See acl.h for the semantics.
 */
#include "acl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl_priv.h"
#include "codec.h"
#include "levelmap.h"
#include "topic.h"
#include "util.h"

/* What the deny patterns need of a client: one that cannot be given makes
 * a deny pattern deny everything (acl_pattern_fit), and it is found from
 * these bits rather than by looking at every deny pattern again. */
#define ACL_NEEDS_C_ANON    0x01 /* a deny pattern uses %c but not %u */
#define ACL_NEEDS_C         0x02 /* a deny pattern uses %c */
#define ACL_NEEDS_U         0x04 /* a deny pattern uses %u */
#define ACL_NEEDS_LEAD_ANON 0x08 /* one starts with %c and does not use %u */
#define ACL_NEEDS_LEAD_C    0x10 /* one starts with %c */
#define ACL_NEEDS_LEAD_U    0x20 /* one starts with %u */

/* What a pattern is for one client. */
enum acl_fit {
	ACL_FIT_SKIP,     /* does not apply (%u for an anonymous client) */
	ACL_FIT_UNUSABLE, /* a hostile value: grants nothing, denies everything */
	ACL_FIT_OK,
};

/* ---- blocks and patterns ---- */

static struct acl_block *acl_block_new(struct acl_block *parent, const char *name, size_t len,
				       uint32_t hv)
{
	struct acl_block *b =
	    levelmap_node_new(sizeof(*b), parent ? &parent->lm : NULL, name, len, hv);

	b->tree = topic_tree_new();
	return b;
}

static void acl_block_free(struct levelmap_node *m, struct levelmap_vec *stack)
{
	struct acl_block *b = (struct acl_block *)m;

	(void)stack;
	for (size_t i = 0; i < b->nrules; i++)
		free(b->rules[i].filter);
	free(b->rules);
	topic_tree_free(b->tree);
	acl_index_free(b->sgrants);
	acl_index_free(b->sdenies);
	levelmap_node_cleanup(&b->lm);
	free(b);
}

static struct acl_block *acl_block_find(const struct acl *a, const char *name, size_t len)
{
	return (struct acl_block *)levelmap_find(&a->users->lm, name, len,
						 levelmap_hash(name, len));
}

/* The block of a `user` line; two blocks for one name are one block. */
static struct acl_block *acl_block_get(struct acl *a, const char *name, size_t len)
{
	struct acl_block *b = acl_block_find(a, name, len);

	if (b == NULL) {
		b = acl_block_new(a->users, name, len, levelmap_hash(name, len));
		levelmap_add(&a->users->lm, &b->lm);
	}
	return b;
}

static void acl_block_add(struct acl_block *b, const char *filter, size_t len, uint8_t access)
{
	struct acl_rule *r;

	if (b->nrules == b->caprules) {
		b->caprules = b->caprules ? b->caprules * 2 : 4;
		b->rules = xrealloc(b->rules, b->caprules * sizeof(*b->rules));
	}
	r = &b->rules[b->nrules++];
	r->filter = xstrndup(filter, len);
	r->len = len;
	r->access = access;
	/* The trie wants one identity per entry: the rule's index, never its
	 * address, which moves when the array grows. */
	topic_tree_insert(b->tree, filter, len, (void *)(uintptr_t)b->nrules, access);
	if (access & ACL_DENY_BIT)
		acl_index_add(&b->sdenies, filter, len, b->nrules - 1, NULL);
	else if (access & ACL_READ)
		acl_index_add(&b->sgrants, filter, len, b->nrules - 1, NULL);
}

static void acl_pattern_cleanup(struct acl_pattern *p)
{
	free(p->filter);
	free(p->levels);
	free(p->pieces);
}

static void acl_pattern_piece(struct acl_pattern *p, uint8_t kind, size_t off, size_t len)
{
	struct acl_plevel *l = &p->levels[p->nlevels - 1];
	struct acl_piece *pc;

	p->pieces = xrealloc(p->pieces, (p->npieces + 1) * sizeof(*p->pieces));
	pc = &p->pieces[p->npieces++];
	pc->kind = kind;
	pc->off = (uint32_t)off;
	pc->len = (uint32_t)len;
	l->npieces++;
	if (kind == ACL_PIECE_TEXT)
		l->fixed += (uint32_t)len;
	else if (kind == ACL_PIECE_CLIENT)
		l->nc++;
	else
		l->nu++;
	if (p->npieces == 1)
		p->lead = kind;
}

/*
 * Split a (valid) pattern filter into levels and each level into literal
 * runs and placeholders. A '%' not followed by 'c' or 'u' is literal, as in
 * Mosquitto.
 */
static void acl_pattern_compile(struct acl_pattern *p)
{
	size_t i = 0;

	for (;;) {
		size_t e = levelmap_level_end(p->filter, p->len, i);
		struct acl_plevel *l;
		size_t run = i;

		p->levels = xrealloc(p->levels, (p->nlevels + 1) * sizeof(*p->levels));
		l = &p->levels[p->nlevels++];
		memset(l, 0, sizeof(*l));
		l->first = p->npieces;
		if (e - i == 1 && (p->filter[i] == '+' || p->filter[i] == '#'))
			l->wild = p->filter[i];
		for (size_t k = i; l->wild == 0 && k + 1 < e; k++) {
			char c = p->filter[k + 1];

			if (p->filter[k] != '%' || (c != 'c' && c != 'u'))
				continue;
			if (k > run)
				acl_pattern_piece(p, ACL_PIECE_TEXT, run, k - run);
			acl_pattern_piece(p, c == 'c' ? ACL_PIECE_CLIENT : ACL_PIECE_USER, 0, 0);
			if (c == 'c')
				p->uses_c = true;
			else
				p->uses_u = true;
			run = k + 2;
			k++;
		}
		if (e > run || l->npieces == 0)
			acl_pattern_piece(p, ACL_PIECE_TEXT, run, e - run);
		if (e == p->len)
			break;
		i = e + 1;
	}
}

/* ---- parsing ---- */

/* Fill err with "NAME:LINE: reason". */
static int acl_fail(char *err, size_t errlen, const char *name, unsigned long line, const char *fmt,
		    ...)
{
	va_list ap;
	int n;

	if (err == NULL || errlen == 0)
		return ACL_EPARSE;
	n = snprintf(err, errlen, "%s:%lu: ", name, line);
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return ACL_EPARSE;
}

static bool acl_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Advance *s past blanks. */
static void acl_skip_space(const char **s, const char *end)
{
	while (*s < end && acl_is_space(**s))
		(*s)++;
}

/* The word at *s (up to a blank or end); *s moves past it. */
static size_t acl_word(const char **s, const char *end, const char **word)
{
	const char *w = *s;

	while (*s < end && !acl_is_space(**s))
		(*s)++;
	*word = w;
	return (size_t)(*s - w);
}

static bool acl_word_is(const char *w, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* Quote at most this many bytes of a bad token in a message. */
#define ACL_QUOTE_MAX 64

/*
 * Parse the rest of a `topic` or `pattern` line: "[ACCESS] TOPIC", where
 * the access type is required when the topic contains a blank (the topic is
 * the rest of the line).
 */
static int acl_parse_rule(const char *s, const char *end, uint8_t *access, const char **topic,
			  size_t *tlen, const char **why, const char **tok, size_t *toklen)
{
	const char *w;
	size_t wn;

	acl_skip_space(&s, end);
	if (s == end) {
		*why = "missing topic";
		return -1;
	}
	wn = acl_word(&s, end, &w);
	acl_skip_space(&s, end);
	if (s == end) {
		*access = ACL_READ | ACL_WRITE;
		*topic = w;
		*tlen = wn;
	} else {
		if (acl_word_is(w, wn, "read"))
			*access = ACL_READ;
		else if (acl_word_is(w, wn, "write"))
			*access = ACL_WRITE;
		else if (acl_word_is(w, wn, "readwrite"))
			*access = ACL_READ | ACL_WRITE;
		else if (acl_word_is(w, wn, "deny"))
			*access = ACL_DENY_BIT;
		else {
			*why = "unknown access type";
			*tok = w;
			*toklen = wn;
			return -1;
		}
		*topic = s;
		*tlen = (size_t)(end - s);
	}
	if (topic_filter_validate(*topic, *tlen) != TOPIC_OK) {
		*why = "invalid topic filter";
		*tok = *topic;
		*toklen = *tlen;
		return -1;
	}
	return 0;
}

static struct acl *acl_new(void)
{
	struct acl *a = xcalloc(1, sizeof(*a));

	a->users = acl_block_new(NULL, "", 0, 0);
	a->anon = acl_block_new(NULL, "", 0, 0);
	return a;
}

/* Parse one line (without its newline) into a; cur is the block that
 * `topic` rules go to. */
static int acl_parse_line(struct acl *a, struct acl_block **cur, const char *s, const char *end,
			  const char **why, const char **tok, size_t *toklen)
{
	const char *kw, *topic;
	struct acl_pattern *p;
	size_t kwn, tlen;
	uint8_t access;

	if (memchr(s, '\0', (size_t)(end - s)) != NULL) {
		*why = "NUL byte in line";
		return -1;
	}
	while (end > s && (acl_is_space(end[-1]) || end[-1] == '\r'))
		end--;
	acl_skip_space(&s, end);
	if (s == end || *s == '#')
		return 0;
	if (!codec_utf8_valid(s, (size_t)(end - s))) {
		*why = "invalid UTF-8";
		return -1;
	}
	kwn = acl_word(&s, end, &kw);
	if (acl_word_is(kw, kwn, "user")) {
		acl_skip_space(&s, end);
		if (s == end) {
			*why = "user without a name";
			return -1;
		}
		if ((size_t)(end - s) > TOPIC_MAX_LEN) {
			*why = "user name longer than 65535 bytes";
			return -1;
		}
		*cur = acl_block_get(a, s, (size_t)(end - s));
		return 0;
	}
	if (!acl_word_is(kw, kwn, "topic") && !acl_word_is(kw, kwn, "pattern")) {
		*why = "unknown keyword";
		*tok = kw;
		*toklen = kwn;
		return -1;
	}
	if (acl_parse_rule(s, end, &access, &topic, &tlen, why, tok, toklen) != 0)
		return -1;
	a->nrules++;
	if (kw[0] == 't') {
		acl_block_add(*cur, topic, tlen, access);
		return 0;
	}
	if (a->npatterns == a->cappatterns) {
		a->cappatterns = a->cappatterns ? a->cappatterns * 2 : 4;
		a->patterns = xrealloc(a->patterns, a->cappatterns * sizeof(*a->patterns));
	}
	p = &a->patterns[a->npatterns++];
	memset(p, 0, sizeof(*p));
	p->filter = xstrndup(topic, tlen);
	p->len = tlen;
	p->access = access;
	acl_pattern_compile(p);
	return 0;
}

/* Note what deny pattern p needs of a client (ACL_NEEDS_*). */
static void acl_note_needs(struct acl *a, const struct acl_pattern *p)
{
	if (p->uses_c)
		a->deny_needs |= ACL_NEEDS_C | (p->uses_u ? 0 : ACL_NEEDS_C_ANON);
	if (p->uses_u)
		a->deny_needs |= ACL_NEEDS_U;
	if (p->lead == ACL_PIECE_CLIENT)
		a->deny_needs |= ACL_NEEDS_LEAD_C | (p->uses_u ? 0 : ACL_NEEDS_LEAD_ANON);
	if (p->lead == ACL_PIECE_USER)
		a->deny_needs |= ACL_NEEDS_LEAD_U;
}

/*
 * Index the granting patterns so that a check visits only those that can
 * match its topic. A pattern is filed in a trie under its shape: the
 * pattern with every level that holds a placeholder replaced by '+'. A
 * substituted value never contains '/', so such a level matches exactly one
 * topic level and the shape matches a superset of the pattern's topics;
 * each candidate is then matched for real. One case cannot be shaped: a
 * first level with a placeholder that starts with a literal '$' (`$%c/x`),
 * which a leading '+' would never let meet a '$' topic; those few are kept
 * apart. Deny patterns are indexed by pattern level rather than shape
 * (acl_index_add() in acl_index.c), in the index the subscribe decision
 * walks too: a hostile value makes a deny pattern deny everything,
 * whatever the topic, which the bits noted here answer for a client at
 * once (acl_denies_all()), and otherwise a check walks the index with the
 * topic (acl_topic_denied()). The subscribe decision also gets indexes of
 * the read patterns by level, one per use of %c and %u.
 */
static void acl_index_patterns(struct acl *a)
{
	a->pgrants = topic_tree_new();
	for (size_t i = 0; i < a->npatterns; i++) {
		const struct acl_pattern *p = &a->patterns[i];
		const struct acl_plevel *l0 = &p->levels[0];
		char *shape, *o;

		if (p->access & ACL_DENY_BIT) {
			a->denies = xrealloc(a->denies, (a->ndenies + 1) * sizeof(*a->denies));
			a->denies[a->ndenies++] = i;
			acl_index_add(&a->sdenies, p->filter, p->len, i, p);
			acl_note_needs(a, p);
			continue;
		}
		if (p->access & ACL_READ)
			acl_index_add(&a->sgrants[p->uses_c | p->uses_u << 1], p->filter, p->len, i,
				      p);
		if (l0->nc + l0->nu > 0 && p->pieces[l0->first].kind == ACL_PIECE_TEXT &&
		    p->filter[p->pieces[l0->first].off] == '$') {
			a->odd = xrealloc(a->odd, (a->nodd + 1) * sizeof(*a->odd));
			a->odd[a->nodd++] = i;
			continue;
		}
		o = shape = xmalloc(p->len + 1);
		for (uint32_t k = 0; k < p->nlevels; k++) {
			const struct acl_plevel *l = &p->levels[k];

			if (k > 0)
				*o++ = '/';
			if (l->nc + l->nu > 0) {
				*o++ = '+';
				continue;
			}
			/* A level without placeholders is one text piece. */
			memcpy(o, p->filter + p->pieces[l->first].off, p->pieces[l->first].len);
			o += p->pieces[l->first].len;
		}
		topic_tree_insert(a->pgrants, shape, (size_t)(o - shape),
				  (void *)(uintptr_t)(i + 1), p->access);
		free(shape);
	}
}

int acl_parse(const char *name, const char *text, size_t len, struct acl **out, char *err,
	      size_t errlen)
{
	struct acl *a = acl_new();
	struct acl_block *cur = a->anon;
	const char *p = text, *end = text + len;
	unsigned long line = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *why = NULL, *tok = NULL;
		size_t toklen = 0;

		line++;
		if (acl_parse_line(a, &cur, p, le, &why, &tok, &toklen) != 0) {
			acl_free(a);
			if (tok == NULL)
				return acl_fail(err, errlen, name, line, "%s", why);
			return acl_fail(err, errlen, name, line, "%s \"%.*s%s\"", why,
					(int)(toklen > ACL_QUOTE_MAX ? ACL_QUOTE_MAX : toklen), tok,
					toklen > ACL_QUOTE_MAX ? "..." : "");
		}
		p = nl ? nl + 1 : end;
	}
	acl_index_patterns(a);
	acl_index_finish(a, a->anon->sgrants, true);
	for (uint32_t i = 0; i < a->users->lm.nslots; i++)
		if (a->users->lm.slots[i] != NULL)
			acl_index_finish(a, ((struct acl_block *)a->users->lm.slots[i])->sgrants,
					 true);
	for (int i = 0; i < 4; i++)
		acl_index_finish(a, a->sgrants[i], true);
	acl_index_finish(a, a->sdenies, false);
	*out = a;
	return ACL_OK;
}

int acl_load(const char *path, struct acl **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = ACL_EIO;

	if (f == NULL)
		goto out;
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f))
		goto out;
	rc = acl_parse(path, buf, len, out, err, errlen);
out:
	if (rc == ACL_EIO && err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
	if (f != NULL)
		fclose(f);
	free(buf);
	return rc;
}

void acl_free(struct acl *a)
{
	if (a == NULL)
		return;
	levelmap_tree_free(&a->users->lm, acl_block_free);
	acl_block_free(&a->anon->lm, NULL);
	for (size_t i = 0; i < a->npatterns; i++)
		acl_pattern_cleanup(&a->patterns[i]);
	free(a->patterns);
	topic_tree_free(a->pgrants);
	free(a->odd);
	free(a->denies);
	for (int i = 0; i < 4; i++)
		acl_index_free(a->sgrants[i]);
	acl_index_free(a->sdenies);
	free(a);
}

size_t acl_rule_count(const struct acl *a)
{
	return a ? a->nrules : 0;
}

/* ---- the per-message check ---- */

/* A value may be substituted only if it names exactly one level. */
static bool acl_value_ok(const char *s, size_t n)
{
	return n > 0 && strpbrk(s, "+#/") == NULL;
}

static void acl_who_init(struct acl_who *w, const char *client_id, const char *username)
{
	w->cid = client_id ? client_id : "";
	w->clen = strlen(w->cid);
	w->c_ok = acl_value_ok(w->cid, w->clen);
	w->user = username;
	w->ulen = username ? strlen(username) : 0;
	w->u_ok = username && acl_value_ok(username, w->ulen);
}

static enum acl_fit acl_pattern_fit(const struct acl_pattern *p, const struct acl_who *w)
{
	if (p->uses_u && w->user == NULL)
		return ACL_FIT_SKIP;
	if ((p->uses_c && !w->c_ok) || (p->uses_u && !w->u_ok))
		return ACL_FIT_UNUSABLE;
	/* A value that begins the rule must not turn it into a '$' rule. */
	if ((p->lead == ACL_PIECE_CLIENT && w->cid[0] == '$') ||
	    (p->lead == ACL_PIECE_USER && w->user[0] == '$'))
		return ACL_FIT_UNUSABLE;
	return ACL_FIT_OK;
}

static const struct acl_block *acl_block_of(const struct acl *a, const struct acl_who *w)
{
	if (w->user == NULL)
		return a->anon;
	return acl_block_find(a, w->user, w->ulen);
}

/*
 * topic_matches() for a pattern, substituting as it goes so that nothing is
 * built or allocated. The pattern fits the client (ACL_FIT_OK).
 */
static bool acl_pattern_matches(const struct acl_pattern *p, const struct acl_who *w,
				const char *topic, size_t tlen)
{
	size_t ti = 0;
	bool topic_done = false;

	if (topic[0] == '$' && p->levels[0].wild != 0)
		return false;
	for (uint32_t k = 0; k < p->nlevels; k++) {
		const struct acl_plevel *l = &p->levels[k];
		size_t te;

		if (l->wild == '#')
			return true;
		if (topic_done)
			return false;
		te = levelmap_level_end(topic, tlen, ti);
		if (l->wild == 0 && !acl_level_equal(p, l, w, topic + ti, te - ti))
			return false;
		if (k + 1 == p->nlevels)
			return te == tlen;
		if (te == tlen)
			topic_done = true;
		else
			ti = te + 1;
	}
	return false;
}

static void acl_collect(void *arg, void *subscriber, uint8_t access)
{
	uint8_t *mask = arg;

	(void)subscriber;
	*mask |= access;
}

/* One check's question to the granting patterns. */
struct acl_query {
	const struct acl *a;
	const struct acl_who *w;
	const char *topic;
	size_t tlen;
	uint8_t access;
	bool granted;
};

static void acl_query_pattern(struct acl_query *q, size_t i)
{
	const struct acl_pattern *p = &q->a->patterns[i];

	if (q->granted || !(p->access & q->access))
		return;
	if (acl_pattern_fit(p, q->w) == ACL_FIT_OK &&
	    acl_pattern_matches(p, q->w, q->topic, q->tlen))
		q->granted = true;
}

/* A candidate from the shape trie: its identity is its index + 1. */
static void acl_query_visit(void *arg, void *subscriber, uint8_t access)
{
	(void)access;
	acl_query_pattern(arg, (size_t)(uintptr_t)subscriber - 1);
}

/* ---- the subscribe decision ---- */

/* Split a filter into at most TOPIC_MAX_LEVELS levels; -1 if it has more. */
static int acl_split(const char *s, size_t len, struct acl_span *out)
{
	size_t i = 0;
	int n = 0;

	for (;;) {
		size_t e = levelmap_level_end(s, len, i);

		if (n == TOPIC_MAX_LEVELS)
			return -1;
		out[n].s = s + i;
		out[n].n = e - i;
		n++;
		if (e == len)
			return n;
		i = e + 1;
	}
}

static bool acl_span_dollar(const struct acl_span *sp)
{
	return sp->n > 0 && sp->s[0] == '$' && !acl_span_is(sp, '+') && !acl_span_is(sp, '#');
}

/*
 * The filter whose topics are exactly those matched by both f and g, level
 * by level, with the '$' rule applied at the first level (a wildcard there
 * never meets a '$' level). Returns its number of levels in out, 0 when the
 * two match no topic in common.
 */
static int acl_intersect(const struct acl_span *f, int nf, const struct acl_span *g, int ng,
			 struct acl_span *out)
{
	int n = 0;

	for (int i = 0;; i++) {
		if (i == nf || i == ng) {
			/* One side ended: the other matches its parent only through a '#'. */
			if (i == nf && i == ng)
				return n;
			if (i < nf && acl_span_is(&f[i], '#'))
				return n;
			if (i < ng && acl_span_is(&g[i], '#'))
				return n;
			return 0;
		}
		if (acl_span_is(&f[i], '#') || acl_span_is(&g[i], '#')) {
			const struct acl_span *rest = acl_span_is(&f[i], '#') ? g : f;
			int nrest = rest == g ? ng : nf;

			if (i == 0 && acl_span_dollar(&rest[0]))
				return 0;
			for (int k = i; k < nrest; k++)
				out[n++] = rest[k];
			return n;
		}
		if (acl_span_is(&f[i], '+')) {
			if (i == 0 && acl_span_dollar(&g[i]))
				return 0;
			out[n++] = g[i];
		} else if (acl_span_is(&g[i], '+')) {
			if (i == 0 && acl_span_dollar(&f[i]))
				return 0;
			out[n++] = f[i];
		} else if (f[i].n == g[i].n && memcmp(f[i].s, g[i].s, f[i].n) == 0) {
			out[n++] = f[i];
		} else {
			return 0;
		}
	}
}

/* Is every topic matched by the filter x[0..nx) also matched by d? */
static bool acl_contained(const struct acl_span *x, int nx, const struct acl_span *d, int nd)
{
	if ((acl_span_is(&d[0], '+') || acl_span_is(&d[0], '#')) && acl_span_dollar(&x[0]))
		return false;
	for (int i = 0; i < nd; i++) {
		if (acl_span_is(&d[i], '#'))
			return true;
		if (i == nx || acl_span_is(&x[i], '#'))
			return false;
		if (acl_span_is(&d[i], '+'))
			continue;
		if (acl_span_is(&x[i], '+') || x[i].n != d[i].n ||
		    memcmp(x[i].s, d[i].s, d[i].n) != 0)
			return false;
	}
	return nx == nd;
}

/*
 * A pattern with the client's values in place of %c and %u (it fits), or
 * NULL when that would be longer than any topic: then it matches nothing,
 * and a pattern with many placeholders and a long client id never makes a
 * SUBSCRIBE allocate gigabytes.
 */
static char *acl_expand(const struct acl_pattern *p, const struct acl_who *w, size_t *len)
{
	size_t n = p->nlevels - 1;
	char *s, *o;

	for (uint32_t k = 0; k < p->nlevels; k++)
		n += p->levels[k].fixed + p->levels[k].nc * w->clen + p->levels[k].nu * w->ulen;
	if (n > TOPIC_MAX_LEN)
		return NULL;
	o = s = xmalloc(n + 1);
	for (uint32_t k = 0; k < p->nlevels; k++) {
		const struct acl_plevel *l = &p->levels[k];

		if (k > 0)
			*o++ = '/';
		for (uint32_t j = 0; j < l->npieces; j++) {
			const struct acl_piece *pc = &p->pieces[l->first + j];

			if (pc->kind == ACL_PIECE_TEXT) {
				memcpy(o, p->filter + pc->off, pc->len);
				o += pc->len;
			} else if (pc->kind == ACL_PIECE_CLIENT) {
				memcpy(o, w->cid, w->clen);
				o += w->clen;
			} else {
				memcpy(o, w->user, w->ulen);
				o += w->ulen;
			}
		}
	}
	*o = '\0';
	*len = n;
	return s;
}

/*
 * Does some deny pattern need a value this client cannot give? Then it
 * denies everything (acl_pattern_fit() is ACL_FIT_UNUSABLE for it), which
 * the bits gathered at load answer without looking at each pattern.
 */
static bool acl_denies_all(const struct acl *a, const struct acl_who *w)
{
	uint8_t n = a->deny_needs;

	if (w->user == NULL) /* patterns with %u do not apply */
		return ((n & ACL_NEEDS_C_ANON) && !w->c_ok) ||
		       ((n & ACL_NEEDS_LEAD_ANON) && w->cid[0] == '$');
	return ((n & ACL_NEEDS_C) && !w->c_ok) || ((n & ACL_NEEDS_U) && !w->u_ok) ||
	       ((n & ACL_NEEDS_LEAD_C) && w->cid[0] == '$') ||
	       ((n & ACL_NEEDS_LEAD_U) && w->user[0] == '$');
}

/* Is x[0..nx) wholly inside the deny rule d (a block's rule or, with
 * patterns, a pattern expanded for the client)? */
bool acl_deny_contains(const struct acl_walk *k, bool patterns, uint32_t id,
		       const struct acl_span *x, int nx)
{
	struct acl_span ds[TOPIC_MAX_LEVELS];
	const char *d;
	char *owned = NULL;
	size_t dlen;
	bool in;
	int nd;

	k->cost->denies++;
	if (!patterns) {
		d = k->b->rules[id].filter;
		dlen = k->b->rules[id].len;
	} else {
		const struct acl_pattern *p = &k->a->patterns[id];
		enum acl_fit fit = acl_pattern_fit(p, k->w);

		if (fit == ACL_FIT_SKIP)
			return false;
		if (fit == ACL_FIT_UNUSABLE)
			return true; /* never here: acl_denies_all() refused first */
		d = owned = acl_expand(p, k->w, &dlen);
		if (d == NULL)
			return false;
	}
	nd = acl_split(d, dlen, ds);
	in = nd > 0 && acl_contained(x, nx, ds, nd);
	free(owned);
	return in;
}

/* Does the read rule id (a block's or, with patterns, a pattern expanded
 * for the client) leave part of the filter f readable? */
bool acl_grant_reaches(const struct acl_walk *k, bool patterns, uint32_t id,
		       const struct acl_span *f, int nf)
{
	struct acl_span gs[TOPIC_MAX_LEVELS], x[TOPIC_MAX_LEVELS];
	const char *g;
	char *owned = NULL;
	size_t glen;
	bool ok;
	int ng, nx;

	k->cost->grants++;
	if (!patterns) {
		g = k->b->rules[id].filter;
		glen = k->b->rules[id].len;
	} else {
		const struct acl_pattern *p = &k->a->patterns[id];

		if (acl_pattern_fit(p, k->w) != ACL_FIT_OK)
			return false;
		g = owned = acl_expand(p, k->w, &glen);
		if (g == NULL)
			return false;
	}
	ng = acl_split(g, glen, gs);
	nx = ng > 0 ? acl_intersect(f, nf, gs, ng, x) : 0;
	ok = nx > 0 && !acl_denied(k, x, nx);
	free(owned);
	return ok;
}

/* A decision a view already made, by filter. */
struct acl_memo {
	char *filter; /* a copy; NULL: a free slot */
	uint32_t len, hv;
	bool granted;
};

/* A view remembers at most this many decisions (each a copy of a filter
 * of the packet at hand); past it, it decides without remembering. */
#define ACL_VIEW_MEMO_MAX (1u << 16)

struct acl_view {
	const struct acl *a;
	struct acl_who w;
	const struct acl_block *b; /* NULL: a username without a block */
	bool denies_all;           /* a deny pattern the client cannot fit */
	bool any_denies;           /* some deny rule may apply */
	struct acl_memo *memo;     /* open addressing, linear probing */
	uint32_t cap, count;       /* cap a power of two, or 0 */
};

/* What a decision for this client needs, whatever the filter. */
static void acl_view_init(struct acl_view *v, const struct acl *a, const char *client_id,
			  const char *username)
{
	memset(v, 0, sizeof(*v));
	v->a = a;
	acl_who_init(&v->w, client_id, username);
	v->b = acl_block_of(a, &v->w);
	/* A hostile value in a deny pattern refuses everything. */
	v->denies_all = acl_denies_all(a, &v->w);
	v->any_denies = (v->b != NULL && v->b->sdenies != NULL) || a->sdenies != NULL;
}

static bool acl_view_decide(const struct acl_view *v, const char *filter, size_t len,
			    struct acl_sub_cost *cost)
{
	struct acl_span f[TOPIC_MAX_LEVELS];
	uint32_t fh[TOPIC_MAX_LEVELS];
	struct acl_walk k;
	int nf;

	if (v->denies_all)
		return false;
	nf = acl_split(filter, len, f);
	if (nf < 0)
		return false;
	/* Hashed once: a '+' of the filter may take it to many nodes. */
	for (int i = 0; i < nf; i++)
		fh[i] = levelmap_hash(f[i].s, f[i].n);
	k.fh = fh;
	k.a = v->a;
	k.w = &v->w;
	k.b = v->b;
	k.cost = cost;
	k.any_denies = v->any_denies;
	/* A filter inside one deny rule has every intersection inside it. */
	if (acl_denied(&k, f, nf))
		return false;
	if (k.b != NULL && acl_granted_in(&k, k.b->sgrants, false, f, nf))
		return true;
	for (int cls = 0; cls < 4; cls++) {
		/* Patterns that need a value the client cannot give grant it
		 * nothing (acl_pattern_fit()). */
		if (((cls & 1) && !v->w.c_ok) || ((cls & 2) && !v->w.u_ok))
			continue;
		if (acl_granted_in(&k, v->a->sgrants[cls], true, f, nf))
			return true;
	}
	return false;
}

bool acl_may_subscribe_counted(const struct acl *a, const char *client_id, const char *username,
			       const char *filter, size_t len, struct acl_sub_cost *cost)
{
	struct acl_sub_cost ignored = {0};
	struct acl_view v;

	if (a == NULL || filter == NULL || len == 0)
		return false;
	acl_view_init(&v, a, client_id, username);
	return acl_view_decide(&v, filter, len, cost != NULL ? cost : &ignored);
}

bool acl_may_subscribe(const struct acl *a, const char *client_id, const char *username,
		       const char *filter, size_t len)
{
	return acl_may_subscribe_counted(a, client_id, username, filter, len, NULL);
}

struct acl_view *acl_view_new(const struct acl *a, const char *client_id, const char *username)
{
	struct acl_view *v;

	if (a == NULL)
		return NULL;
	v = xmalloc(sizeof(*v));
	acl_view_init(v, a, client_id, username);
	return v;
}

void acl_view_free(struct acl_view *v)
{
	if (v == NULL)
		return;
	for (uint32_t i = 0; i < v->cap; i++)
		free(v->memo[i].filter);
	free(v->memo);
	free(v);
}

/* The slot of filter in v's memory: its entry, or the free slot for it. */
static struct acl_memo *acl_view_slot(const struct acl_view *v, const char *filter, size_t len,
				      uint32_t hv)
{
	uint32_t mask = v->cap - 1, i;

	for (i = hv & mask; v->memo[i].filter != NULL; i = (i + 1) & mask)
		if (v->memo[i].hv == hv && v->memo[i].len == len &&
		    memcmp(v->memo[i].filter, filter, len) == 0)
			break;
	return &v->memo[i];
}

static void acl_view_grow(struct acl_view *v)
{
	struct acl_memo *old = v->memo;
	uint32_t oldcap = v->cap;

	v->cap = v->cap ? v->cap * 2 : 64;
	v->memo = xcalloc(v->cap, sizeof(*v->memo));
	for (uint32_t i = 0; i < oldcap; i++)
		if (old[i].filter != NULL)
			*acl_view_slot(v, old[i].filter, old[i].len, old[i].hv) = old[i];
	free(old);
}

bool acl_view_may_subscribe(struct acl_view *v, const char *filter, size_t len,
			    struct acl_sub_cost *cost)
{
	struct acl_sub_cost ignored = {0};
	struct acl_memo *m = NULL;
	uint32_t hv;
	bool ok;

	if (v == NULL || filter == NULL || len == 0)
		return false;
	hv = levelmap_hash(filter, len);
	if (v->count > 0) {
		m = acl_view_slot(v, filter, len, hv);
		if (m->filter != NULL) {
			if (cost != NULL)
				cost->reused++;
			return m->granted;
		}
	}
	ok = acl_view_decide(v, filter, len, cost != NULL ? cost : &ignored);
	if (v->count >= ACL_VIEW_MEMO_MAX)
		return ok;
	if ((v->count + 1) * 4 > v->cap * 3)
		acl_view_grow(v);
	m = acl_view_slot(v, filter, len, hv);
	m->filter = xmalloc(len);
	memcpy(m->filter, filter, len);
	m->len = (uint32_t)len;
	m->hv = hv;
	m->granted = ok;
	v->count++;
	return ok;
}

/* ---- the per-message check's deny patterns ---- */

/* Does a deny pattern match the topic? As acl_topic_denied(), but one
 * pattern at a time: only for a topic of more levels than a valid one has
 * (acl_split() fails), which the broker never asks about. */
static bool acl_topic_denied_slowly(const struct acl *a, const struct acl_who *w, const char *topic,
				    size_t topic_len)
{
	for (size_t i = 0; i < a->ndenies; i++) {
		const struct acl_pattern *p = &a->patterns[a->denies[i]];

		if (acl_pattern_fit(p, w) == ACL_FIT_OK &&
		    acl_pattern_matches(p, w, topic, topic_len))
			return true;
	}
	return false;
}

bool acl_check_counted(const struct acl *a, const char *client_id, const char *username,
		       const char *topic, size_t topic_len, enum acl_access access,
		       struct acl_sub_cost *cost)
{
	struct acl_sub_cost ignored = {0};
	const struct acl_block *b;
	struct acl_query q;
	struct acl_who w;
	uint8_t mask = 0;

	if (a == NULL || topic == NULL || topic_len == 0)
		return false;
	acl_who_init(&w, client_id, username);
	b = acl_block_of(a, &w);
	if (b != NULL)
		topic_tree_match(b->tree, topic, topic_len, acl_collect, &mask);
	if (mask & ACL_DENY_BIT)
		return false;
	if (a->sdenies != NULL) {
		struct acl_span t[TOPIC_MAX_LEVELS];
		int nt;

		/* A deny pattern that needs a value the client cannot give
		 * denies everything (acl_pattern_fit()). */
		if (acl_denies_all(a, &w))
			return false;
		nt = acl_split(topic, topic_len, t);
		if (nt > 0 ? acl_topic_denied(a, &w, t, nt, cost != NULL ? cost : &ignored)
			   : acl_topic_denied_slowly(a, &w, topic, topic_len))
			return false;
	}
	if (mask & access)
		return true;
	q.a = a;
	q.w = &w;
	q.topic = topic;
	q.tlen = topic_len;
	q.access = (uint8_t)access;
	q.granted = false;
	topic_tree_match(a->pgrants, topic, topic_len, acl_query_visit, &q);
	for (size_t i = 0; i < a->nodd; i++)
		acl_query_pattern(&q, a->odd[i]);
	return q.granted;
}

bool acl_check(const struct acl *a, const char *client_id, const char *username, const char *topic,
	       size_t topic_len, enum acl_access access)
{
	return acl_check_counted(a, client_id, username, topic, topic_len, access, NULL);
}