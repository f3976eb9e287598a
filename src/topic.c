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
#include "util.h"

/* One (subscriber, qos) entry on a trie node. */
struct topic_sub {
	void *subscriber;
	uint8_t qos;
};

/*
 * A trie node stands for one filter level. Ordinary children are found
 * through a per-node open-addressed hash table (linear probing, power-of-two
 * size), so a parent with 10,000 children costs one probe, not a list walk.
 * The '+' and '#' children sit apart because every match visits them.
 */
struct tnode {
	struct tnode *parent;
	struct tnode **slots; /* NULL when the node has no ordinary children */
	struct tnode *plus;
	struct tnode *hash;
	struct topic_sub *subs;
	uint32_t nslots;
	uint32_t nchildren;
	uint32_t nsubs;
	uint32_t capsubs;
	uint32_t hv; /* hash of seg, kept so a table can grow without rehashing bytes */
	size_t seglen;
	char seg[];
};

struct topic_tree {
	struct tnode *root;
	size_t count;
};

/*
 * A growable array of node pointers that starts in caller storage, so a
 * typical match allocates nothing.
 */
#define NODEVEC_INLINE 32

struct nodevec {
	struct tnode **v;
	size_t n;
	size_t cap;
	struct tnode *inl[NODEVEC_INLINE];
};

static void nodevec_init(struct nodevec *nv)
{
	nv->v = nv->inl;
	nv->n = 0;
	nv->cap = NODEVEC_INLINE;
}

static void nodevec_cleanup(struct nodevec *nv)
{
	if (nv->v != nv->inl)
		free(nv->v);
}

static void nodevec_push(struct nodevec *nv, struct tnode *n)
{
	if (nv->n == nv->cap) {
		size_t cap = nv->cap * 2;
		struct tnode **v = xmalloc(cap * sizeof(*v));

		memcpy(v, nv->v, nv->n * sizeof(*v));
		nodevec_cleanup(nv);
		nv->v = v;
		nv->cap = cap;
	}
	nv->v[nv->n++] = n;
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

/* Offset of the next '/' in s[from..len), or len. */
static size_t level_end(const char *s, size_t len, size_t from)
{
	const char *p = from < len ? memchr(s + from, '/', len - from) : NULL;

	return p ? (size_t)(p - s) : len;
}

bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen)
{
	size_t fi = 0, ti = 0;
	bool topic_done = false; /* every topic level has been consumed */

	/* [MQTT-4.7.2-1]: '$' topics are out of reach of a leading wildcard. */
	if (tlen > 0 && topic[0] == '$' && flen > 0 && (filter[0] == '+' || filter[0] == '#'))
		return false;

	for (;;) {
		size_t fe = level_end(filter, flen, fi);
		size_t te;
		bool fwild = fe - fi == 1 && filter[fi] == '+';

		/* '#' matches its parent level too, so it may follow the topic's end. */
		if (fe - fi == 1 && filter[fi] == '#')
			return true;
		if (topic_done)
			return false;
		te = level_end(topic, tlen, ti);
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

static uint32_t seg_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static struct tnode *node_new(struct tnode *parent, const char *seg, size_t len, uint32_t hv)
{
	struct tnode *n = xcalloc(1, sizeof(*n) + len);

	n->parent = parent;
	memcpy(n->seg, seg, len);
	n->seglen = len;
	n->hv = hv;
	return n;
}

static struct tnode *child_find(const struct tnode *n, const char *seg, size_t len, uint32_t hv)
{
	uint32_t mask, i;

	if (n->slots == NULL)
		return NULL;
	mask = n->nslots - 1;
	for (i = hv & mask; n->slots[i] != NULL; i = (i + 1) & mask) {
		struct tnode *c = n->slots[i];

		if (c->hv == hv && c->seglen == len && memcmp(c->seg, seg, len) == 0)
			return c;
	}
	return NULL;
}

static void slots_put(struct tnode **slots, uint32_t nslots, struct tnode *c)
{
	uint32_t mask = nslots - 1, i;

	for (i = c->hv & mask; slots[i] != NULL; i = (i + 1) & mask)
		;
	slots[i] = c;
}

static void slots_resize(struct tnode *n, uint32_t nslots)
{
	struct tnode **slots = xcalloc(nslots, sizeof(*slots));

	for (uint32_t i = 0; i < n->nslots; i++)
		if (n->slots[i] != NULL)
			slots_put(slots, nslots, n->slots[i]);
	free(n->slots);
	n->slots = slots;
	n->nslots = nslots;
}

static void child_add(struct tnode *n, struct tnode *c)
{
	/* Keep the load factor at or below 3/4. */
	if (n->slots == NULL)
		slots_resize(n, 4);
	else if ((n->nchildren + 1) * 4 > n->nslots * 3)
		slots_resize(n, n->nslots * 2);
	slots_put(n->slots, n->nslots, c);
	n->nchildren++;
}

/* Remove c from n's table with backward-shift deletion (no tombstones). */
static void child_del(struct tnode *n, struct tnode *c)
{
	uint32_t mask = n->nslots - 1, i, j;

	for (i = c->hv & mask; n->slots[i] != c; i = (i + 1) & mask)
		;
	n->slots[i] = NULL;
	for (j = (i + 1) & mask; n->slots[j] != NULL; j = (j + 1) & mask) {
		uint32_t home = n->slots[j]->hv & mask;

		/* Move slots[j] into the hole unless its home lies in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			n->slots[i] = n->slots[j];
			n->slots[j] = NULL;
			i = j;
		}
	}
	n->nchildren--;
	if (n->nchildren == 0) {
		free(n->slots);
		n->slots = NULL;
		n->nslots = 0;
	} else if (n->nslots > 8 && n->nchildren * 8 < n->nslots) {
		slots_resize(n, n->nslots / 2);
	}
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
	free(n->slots);
	free(n->subs);
	free(n);
}

struct topic_tree *topic_tree_new(void)
{
	struct topic_tree *t = xcalloc(1, sizeof(*t));

	t->root = node_new(NULL, "", 0, 0);
	return t;
}

void topic_tree_free(struct topic_tree *t)
{
	struct nodevec stack;

	if (t == NULL)
		return;
	nodevec_init(&stack);
	nodevec_push(&stack, t->root);
	while (stack.n > 0) {
		struct tnode *n = stack.v[--stack.n];

		for (uint32_t i = 0; i < n->nslots; i++)
			if (n->slots[i] != NULL)
				nodevec_push(&stack, n->slots[i]);
		if (n->plus != NULL)
			nodevec_push(&stack, n->plus);
		if (n->hash != NULL)
			nodevec_push(&stack, n->hash);
		node_free(n);
	}
	nodevec_cleanup(&stack);
	free(t);
}

int topic_tree_insert(struct topic_tree *t, const char *filter, size_t len, void *subscriber,
		      uint8_t qos)
{
	struct tnode *n = t->root;
	size_t i = 0;

	for (;;) {
		size_t e = level_end(filter, len, i);
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
			uint32_t hv = seg_hash(seg, slen);

			c = child_find(n, seg, slen, hv);
			if (c == NULL) {
				c = node_new(n, seg, slen, hv);
				child_add(n, c);
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
		size_t e = level_end(filter, len, i);
		const char *seg = filter + i;
		size_t slen = e - i;

		if (is_plus(seg, slen))
			n = n->plus;
		else if (is_hash(seg, slen))
			n = n->hash;
		else
			n = child_find(n, seg, slen, seg_hash(seg, slen));
		if (n == NULL || e == len)
			return n;
		i = e + 1;
	}
}

static bool node_unused(const struct tnode *n)
{
	return n->nsubs == 0 && n->nchildren == 0 && n->plus == NULL && n->hash == NULL;
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
		struct tnode *p = n->parent;

		if (p->plus == n)
			p->plus = NULL;
		else if (p->hash == n)
			p->hash = NULL;
		else
			child_del(p, n);
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
	struct nodevec a, b;
	struct nodevec *cur = &a, *next = &b;
	bool dollar = len > 0 && topic[0] == '$';
	size_t i = 0;

	nodevec_init(&a);
	nodevec_init(&b);
	nodevec_push(cur, t->root);
	for (;;) {
		size_t e = level_end(topic, len, i);
		const char *seg = topic + i;
		size_t slen = e - i;
		uint32_t hv = seg_hash(seg, slen);

		next->n = 0;
		for (size_t k = 0; k < cur->n; k++) {
			struct tnode *n = cur->v[k];
			struct tnode *c;
			bool wild_ok = !(dollar && n == t->root);

			if (wild_ok && n->hash != NULL)
				report(n->hash, fn, arg);
			if (wild_ok && n->plus != NULL)
				nodevec_push(next, n->plus);
			c = child_find(n, seg, slen, hv);
			if (c != NULL)
				nodevec_push(next, c);
		}
		{
			struct nodevec *tmp = cur;

			cur = next;
			next = tmp;
		}
		if (cur->n == 0 || e == len)
			break;
		i = e + 1;
	}
	/* All levels consumed: exact ends, and 'x/#' matching its parent 'x'. */
	for (size_t k = 0; k < cur->n; k++) {
		report(cur->v[k], fn, arg);
		if (cur->v[k]->hash != NULL)
			report(cur->v[k]->hash, fn, arg);
	}
	nodevec_cleanup(&a);
	nodevec_cleanup(&b);
}

size_t topic_tree_count(const struct topic_tree *t)
{
	return t->count;
}
