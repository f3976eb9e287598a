/*
 * Topic names and filters: validation, one-to-one matching, and the
 * subscription trie that finds every subscriber of a published topic.
 * Nothing here recurses per topic level: deep filters (a 65,535-byte run of
 * '/') walk explicit worklists, so the C stack never grows with input.
 */
#include "topic.h"

#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "levelmap.h"
#include "util.h"

/* One (subscriber, qos) entry on a trie node. */
struct topic_sub {
	void *subscriber;
	uint8_t qos;
};

/*
 * A trie node stands for one filter level. Ordinary children are found
 * through the node's levelmap table; the '+' and '#' children sit apart
 * because every match visits them.
 */
struct tnode {
	struct levelmap_node lm; /* first, so a header pointer is a node pointer */
	struct tnode *plus;
	struct tnode *hash;
	struct topic_sub *subs;
	uint32_t nsubs;
	uint32_t capsubs;
};

struct topic_tree {
	struct tnode *root;
	size_t count;
};

static struct tnode *to_tnode(struct levelmap_node *m)
{
	return (struct tnode *)m;
}

/* ---- validation and one-to-one matching ---- */

int topic_name_validate(const char *s, size_t len)
{
	size_t levels = 1;

	if (len == 0 || len > TOPIC_MAX_LEN)
		return TOPIC_EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c == '+' || c == '#' || c == '\0')
			return TOPIC_EINVAL;
		if (c == '/' && ++levels > TOPIC_MAX_LEVELS)
			return TOPIC_EINVAL;
	}
	return codec_utf8_valid(s, len) ? TOPIC_OK : TOPIC_EINVAL;
}

bool topic_levels_ok(const char *s, size_t len)
{
	size_t levels = 1;
	const char *end = s + len, *p = s;

	while ((p = memchr(p, '/', (size_t)(end - p))) != NULL) {
		if (++levels > TOPIC_MAX_LEVELS)
			return false;
		p++;
	}
	return true;
}

int topic_filter_validate(const char *s, size_t len)
{
	size_t levels = 1;

	if (len == 0 || len > TOPIC_MAX_LEN)
		return TOPIC_EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool at_start = i == 0 || s[i - 1] == '/';

		switch (c) {
		case '\0':
			return TOPIC_EINVAL;
		case '/':
			if (++levels > TOPIC_MAX_LEVELS)
				return TOPIC_EINVAL;
			break;
		case '+':
			if (!at_start || (i + 1 < len && s[i + 1] != '/'))
				return TOPIC_EINVAL;
			break;
		case '#':
			if (!at_start || i + 1 != len)
				return TOPIC_EINVAL;
			break;
		default:
			break;
		}
	}
	return codec_utf8_valid(s, len) ? TOPIC_OK : TOPIC_EINVAL;
}

bool topic_is_shared(const char *s, size_t len)
{
	return len >= TOPIC_SHARE_PREFIX_LEN &&
	       memcmp(s, TOPIC_SHARE_PREFIX, TOPIC_SHARE_PREFIX_LEN) == 0;
}

int topic_subfilter_parse(const char *s, size_t len, struct topic_subfilter *out)
{
	struct topic_subfilter sf = {NULL, 0, s, len};

	if (topic_is_shared(s, len)) {
		const char *g = s + TOPIC_SHARE_PREFIX_LEN;
		size_t rest = len - TOPIC_SHARE_PREFIX_LEN;
		const char *slash = memchr(g, '/', rest);

		if (slash == NULL || slash == g)
			return TOPIC_EINVAL; /* no filter, or an empty group */
		sf.group = g;
		sf.group_len = (size_t)(slash - g);
		for (size_t i = 0; i < sf.group_len; i++)
			if (g[i] == '+' || g[i] == '#' || g[i] == '\0')
				return TOPIC_EINVAL;
		if (!codec_utf8_valid(g, sf.group_len))
			return TOPIC_EINVAL;
		sf.filter = slash + 1;
		sf.filter_len = rest - sf.group_len - 1;
	}
	if (topic_filter_validate(sf.filter, sf.filter_len) != TOPIC_OK)
		return TOPIC_EINVAL;
	if (out != NULL)
		*out = sf;
	return TOPIC_OK;
}

bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen)
{
	size_t fi = 0, ti = 0;
	bool topic_done = false; /* every topic level has been consumed */

	/* [MQTT-4.7.2-1]: '$' topics are out of reach of a leading wildcard. */
	if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '+' || filter[0] == '#'))
		return false;

	for (;;) {
		size_t fe = levelmap_level_end(filter, flen, fi);
		size_t te;
		bool fwild = fe - fi == 1 && filter[fi] == '+';

		/* '#' matches its parent level too, so it may follow the topic's end. */
		if (fe - fi == 1 && filter[fi] == '#')
			return true;
		if (topic_done)
			return false;
		te = levelmap_level_end(topic, tlen, ti);
		if (!fwild && (fe - fi != te - ti || memcmp(filter + fi, topic + ti, fe - fi) != 0))
			return false;
		if (fe == flen)
			return te == tlen;
		fi = fe + 1;
		if (te == tlen)
			topic_done = true;
		else
			ti = te + 1;
	}
}

/* ---- the trie ---- */

static struct tnode *node_new(struct tnode *parent, const char *seg, size_t len, uint32_t hv)
{
	return levelmap_node_new(sizeof(struct tnode), parent ? &parent->lm : NULL, seg, len, hv);
}

static struct tnode *child_find(const struct tnode *n, const char *seg, size_t len, uint32_t hv)
{
	return to_tnode(levelmap_find(&n->lm, seg, len, hv));
}

static bool is_plus(const char *seg, size_t len)
{
	return len == 1 && seg[0] == '+';
}

static bool is_hash(const char *seg, size_t len)
{
	return len == 1 && seg[0] == '#';
}

static void node_free(struct tnode *n)
{
	levelmap_node_cleanup(&n->lm);
	free(n->subs);
	free(n);
}

struct topic_tree *topic_tree_new(void)
{
	struct topic_tree *t = xcalloc(1, sizeof(*t));

	t->root = node_new(NULL, "", 0, 0);
	return t;
}

/* The '+' and '#' children are outside the table: stack them too. */
static void free_tnode(struct levelmap_node *m, struct levelmap_vec *stack)
{
	struct tnode *n = to_tnode(m);

	if (n->plus != NULL)
		levelmap_vec_push(stack, &n->plus->lm);
	if (n->hash != NULL)
		levelmap_vec_push(stack, &n->hash->lm);
	node_free(n);
}

void topic_tree_free(struct topic_tree *t)
{
	if (t == NULL)
		return;
	levelmap_tree_free(&t->root->lm, free_tnode);
	free(t);
}

int topic_tree_insert(struct topic_tree *t, const char *filter, size_t len, void *subscriber,
		      uint8_t qos)
{
	struct tnode *n = t->root;
	size_t i = 0;

	for (;;) {
		size_t e = levelmap_level_end(filter, len, i);
		const char *seg = filter + i;
		size_t slen = e - i;
		struct tnode *c;

		if (is_plus(seg, slen)) {
			if (n->plus == NULL)
				n->plus = node_new(n, seg, slen, 0);
			c = n->plus;
		} else if (is_hash(seg, slen)) {
			if (n->hash == NULL)
				n->hash = node_new(n, seg, slen, 0);
			c = n->hash;
		} else {
			uint32_t hv = levelmap_hash(seg, slen);

			c = child_find(n, seg, slen, hv);
			if (c == NULL) {
				c = node_new(n, seg, slen, hv);
				levelmap_add(&n->lm, &c->lm);
			}
		}
		n = c;
		if (e == len)
			break;
		i = e + 1;
	}

	for (uint32_t k = 0; k < n->nsubs; k++) {
		if (n->subs[k].subscriber == subscriber) {
			n->subs[k].qos = qos;
			return 0;
		}
	}
	if (n->nsubs == n->capsubs) {
		n->capsubs = n->capsubs ? n->capsubs * 2 : 2;
		n->subs = xrealloc(n->subs, n->capsubs * sizeof(*n->subs));
	}
	n->subs[n->nsubs].subscriber = subscriber;
	n->subs[n->nsubs].qos = qos;
	n->nsubs++;
	t->count++;
	return 1;
}

/* The node for filter, without creating anything; NULL if absent. */
static struct tnode *node_lookup(struct topic_tree *t, const char *filter, size_t len)
{
	struct tnode *n = t->root;
	size_t i = 0;

	for (;;) {
		size_t e = levelmap_level_end(filter, len, i);
		const char *seg = filter + i;
		size_t slen = e - i;

		if (is_plus(seg, slen))
			n = n->plus;
		else if (is_hash(seg, slen))
			n = n->hash;
		else
			n = child_find(n, seg, slen, levelmap_hash(seg, slen));
		if (n == NULL || e == len)
			return n;
		i = e + 1;
	}
}

static bool node_unused(const struct tnode *n)
{
	return n->nsubs == 0 && n->lm.nchildren == 0 && n->plus == NULL && n->hash == NULL;
}

int topic_tree_remove(struct topic_tree *t, const char *filter, size_t len, void *subscriber)
{
	struct tnode *n = node_lookup(t, filter, len);
	uint32_t k;

	if (n == NULL)
		return TOPIC_ENOENT;
	for (k = 0; k < n->nsubs; k++)
		if (n->subs[k].subscriber == subscriber)
			break;
	if (k == n->nsubs)
		return TOPIC_ENOENT;
	n->subs[k] = n->subs[--n->nsubs];
	t->count--;
	if (n->nsubs == 0) {
		free(n->subs);
		n->subs = NULL;
		n->capsubs = 0;
	}

	/* Free the emptied chain upwards; the root always stays. */
	while (n != t->root && node_unused(n)) {
		struct tnode *p = to_tnode(n->lm.parent);

		if (p->plus == n)
			p->plus = NULL;
		else if (p->hash == n)
			p->hash = NULL;
		else
			levelmap_del(&p->lm, &n->lm);
		node_free(n);
		n = p;
	}
	return TOPIC_OK;
}

static void report(const struct tnode *n, topic_match_fn fn, void *arg)
{
	for (uint32_t k = 0; k < n->nsubs; k++)
		fn(arg, n->subs[k].subscriber, n->subs[k].qos);
}

/*
 * Breadth-first, one topic level at a time: cur holds every node whose
 * filter prefix matches the topic levels consumed so far. Each trie node is
 * reached through exactly one edge, so nothing is reported twice for one
 * subscription. The callback must not modify the tree.
 */
void topic_tree_match(struct topic_tree *t, const char *topic, size_t len, topic_match_fn fn,
		      void *arg)
{
	struct levelmap_vec a, b;
	struct levelmap_vec *cur = &a, *next = &b;
	bool dollar = len > 0 && topic[0] == '$';
	size_t i = 0;

	levelmap_vec_init(&a);
	levelmap_vec_init(&b);
	levelmap_vec_push(cur, &t->root->lm);
	for (;;) {
		size_t e = levelmap_level_end(topic, len, i);
		const char *seg = topic + i;
		size_t slen = e - i;
		uint32_t hv = levelmap_hash(seg, slen);

		for (size_t k = 0; k < cur->n; k++) {
			struct tnode *n = to_tnode(cur->v[k]);
			struct tnode *c;
			bool wild_ok = !(dollar && n == t->root);

			if (wild_ok && n->hash != NULL)
				report(n->hash, fn, arg);
			if (wild_ok && n->plus != NULL)
				levelmap_vec_push(next, &n->plus->lm);
			c = child_find(n, seg, slen, hv);
			if (c != NULL)
				levelmap_vec_push(next, &c->lm);
		}
		levelmap_vec_swap(&cur, &next);
		if (cur->n == 0 || e == len)
			break;
		i = e + 1;
	}
	/* All levels consumed: exact ends, and 'x/#' matching its parent 'x'. */
	for (size_t k = 0; k < cur->n; k++) {
		struct tnode *n = to_tnode(cur->v[k]);

		report(n, fn, arg);
		if (n->hash != NULL)
			report(n->hash, fn, arg);
	}
	levelmap_vec_cleanup(&a);
	levelmap_vec_cleanup(&b);
}

size_t topic_tree_count(const struct topic_tree *t)
{
	return t->count;
}
