/*
 * Retained messages: a trie of topic names, one opaque value per name,
 * searched with a subscription filter. Like the subscription trie in
 * topic.c it walks explicit worklists and never recurses per topic level.
 */
#include "retain.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/*
 * One topic level. Children are kept in an open-addressed hash table
 * (linear probing, power-of-two size), which serves both exact lookups and
 * the full scans that '+' and '#' need.
 */
struct rnode {
	struct rnode *parent;
	struct rnode **slots; /* NULL when the node has no children */
	void *value;          /* NULL: no retained message at this exact topic */
	uint32_t nslots;
	uint32_t nchildren;
	uint32_t hv;
	size_t seglen;
	char seg[];
};

struct retain_tree {
	struct rnode *root;
	size_t count;
};

/* A growable array of node pointers that starts in caller storage. */
#define RVEC_INLINE 32

struct rvec {
	struct rnode **v;
	size_t n;
	size_t cap;
	struct rnode *inl[RVEC_INLINE];
};

static void rvec_init(struct rvec *rv)
{
	rv->v = rv->inl;
	rv->n = 0;
	rv->cap = RVEC_INLINE;
}

static void rvec_cleanup(struct rvec *rv)
{
	if (rv->v != rv->inl)
		free(rv->v);
}

static void rvec_push(struct rvec *rv, struct rnode *n)
{
	if (rv->n == rv->cap) {
		size_t cap = rv->cap * 2;
		struct rnode **v = xmalloc(cap * sizeof(*v));

		memcpy(v, rv->v, rv->n * sizeof(*v));
		rvec_cleanup(rv);
		rv->v = v;
		rv->cap = cap;
	}
	rv->v[rv->n++] = n;
}

static size_t level_end(const char *s, size_t len, size_t from)
{
	const char *p = from < len ? memchr(s + from, '/', len - from) : NULL;

	return p ? (size_t)(p - s) : len;
}

static uint32_t seg_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static struct rnode *child_find(const struct rnode *n, const char *seg, size_t len, uint32_t hv)
{
	uint32_t mask, i;

	if (n->slots == NULL)
		return NULL;
	mask = n->nslots - 1;
	for (i = hv & mask; n->slots[i] != NULL; i = (i + 1) & mask) {
		struct rnode *c = n->slots[i];

		if (c->hv == hv && c->seglen == len && memcmp(c->seg, seg, len) == 0)
			return c;
	}
	return NULL;
}

static void slots_put(struct rnode **slots, uint32_t nslots, struct rnode *c)
{
	uint32_t mask = nslots - 1, i;

	for (i = c->hv & mask; slots[i] != NULL; i = (i + 1) & mask)
		;
	slots[i] = c;
}

static void slots_resize(struct rnode *n, uint32_t nslots)
{
	struct rnode **slots = xcalloc(nslots, sizeof(*slots));

	for (uint32_t i = 0; i < n->nslots; i++)
		if (n->slots[i] != NULL)
			slots_put(slots, nslots, n->slots[i]);
	free(n->slots);
	n->slots = slots;
	n->nslots = nslots;
}

static struct rnode *child_add(struct rnode *n, const char *seg, size_t len, uint32_t hv)
{
	struct rnode *c = xcalloc(1, sizeof(*c) + len);

	c->parent = n;
	memcpy(c->seg, seg, len);
	c->seglen = len;
	c->hv = hv;
	if (n->slots == NULL)
		slots_resize(n, 4);
	else if ((n->nchildren + 1) * 4 > n->nslots * 3)
		slots_resize(n, n->nslots * 2);
	slots_put(n->slots, n->nslots, c);
	n->nchildren++;
	return c;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void child_del(struct rnode *n, struct rnode *c)
{
	uint32_t mask = n->nslots - 1, i, j;

	for (i = c->hv & mask; n->slots[i] != c; i = (i + 1) & mask)
		;
	n->slots[i] = NULL;
	for (j = (i + 1) & mask; n->slots[j] != NULL; j = (j + 1) & mask) {
		uint32_t home = n->slots[j]->hv & mask;

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

static bool is_dollar(const struct rnode *n)
{
	return n->seglen > 0 && n->seg[0] == '$';
}

struct retain_tree *retain_tree_new(void)
{
	struct retain_tree *t = xcalloc(1, sizeof(*t));

	t->root = xcalloc(1, sizeof(*t->root));
	return t;
}

void retain_tree_free(struct retain_tree *t)
{
	struct rvec stack;

	if (t == NULL)
		return;
	rvec_init(&stack);
	rvec_push(&stack, t->root);
	while (stack.n > 0) {
		struct rnode *n = stack.v[--stack.n];

		for (uint32_t i = 0; i < n->nslots; i++)
			if (n->slots[i] != NULL)
				rvec_push(&stack, n->slots[i]);
		free(n->slots);
		free(n);
	}
	rvec_cleanup(&stack);
	free(t);
}

/* The node of exactly this topic, created on demand when create is set. */
static struct rnode *node_walk(struct retain_tree *t, const char *topic, size_t len, bool create)
{
	struct rnode *n = t->root;
	size_t i = 0;

	for (;;) {
		size_t e = level_end(topic, len, i);
		const char *seg = topic + i;
		uint32_t hv = seg_hash(seg, e - i);
		struct rnode *c = child_find(n, seg, e - i, hv);

		if (c == NULL) {
			if (!create)
				return NULL;
			c = child_add(n, seg, e - i, hv);
		}
		n = c;
		if (e == len)
			return n;
		i = e + 1;
	}
}

void *retain_tree_set(struct retain_tree *t, const char *topic, size_t len, void *value)
{
	struct rnode *n = node_walk(t, topic, len, value != NULL);
	void *old;

	if (n == NULL)
		return NULL;
	old = n->value;
	n->value = value;
	if (old == NULL && value != NULL)
		t->count++;
	else if (old != NULL && value == NULL)
		t->count--;

	/* Free the chain of nodes that no longer lead to any value. */
	while (n != t->root && n->value == NULL && n->nchildren == 0) {
		struct rnode *p = n->parent;

		child_del(p, n);
		free(n);
		n = p;
	}
	return old;
}

void *retain_tree_get(struct retain_tree *t, const char *topic, size_t len)
{
	struct rnode *n = node_walk(t, topic, len, false);

	return n ? n->value : NULL;
}

/*
 * Report the value of every node below n (n itself excluded), depth first
 * with an explicit stack. Children of the root whose level starts with '$'
 * are skipped when skip_dollar is set.
 */
static void walk_below(struct retain_tree *t, struct rnode *top, bool skip_dollar, retain_fn fn,
		       void *arg)
{
	struct rvec stack;

	rvec_init(&stack);
	rvec_push(&stack, top);
	while (stack.n > 0) {
		struct rnode *n = stack.v[--stack.n];

		if (n != top && n->value != NULL)
			fn(arg, n->value);
		for (uint32_t i = 0; i < n->nslots; i++) {
			struct rnode *c = n->slots[i];

			if (c == NULL || (skip_dollar && n == t->root && is_dollar(c)))
				continue;
			rvec_push(&stack, c);
		}
	}
	rvec_cleanup(&stack);
}

/*
 * Breadth-first over the filter's levels: cur holds the nodes whose topic
 * prefix matches the filter levels consumed so far; all of them sit at the
 * same depth, so their subtrees are disjoint and no value is reported twice.
 * The callback must not modify the tree.
 */
void retain_tree_match(struct retain_tree *t, const char *filter, size_t len, retain_fn fn,
		       void *arg)
{
	struct rvec a, b;
	struct rvec *cur = &a, *next = &b;
	size_t i = 0;
	bool done = false;

	rvec_init(&a);
	rvec_init(&b);
	rvec_push(cur, t->root);
	for (;;) {
		size_t e = level_end(filter, len, i);
		const char *seg = filter + i;
		size_t slen = e - i;

		if (slen == 1 && seg[0] == '#') {
			/* 'x/#' matches 'x' itself and everything below it. */
			for (size_t k = 0; k < cur->n; k++) {
				struct rnode *n = cur->v[k];

				if (n->value != NULL)
					fn(arg, n->value);
				walk_below(t, n, n == t->root, fn, arg);
			}
			done = true;
			break;
		}
		next->n = 0;
		for (size_t k = 0; k < cur->n; k++) {
			struct rnode *n = cur->v[k];

			if (slen == 1 && seg[0] == '+') {
				for (uint32_t s = 0; s < n->nslots; s++) {
					struct rnode *c = n->slots[s];

					if (c != NULL && !(n == t->root && is_dollar(c)))
						rvec_push(next, c);
				}
			} else {
				struct rnode *c = child_find(n, seg, slen, seg_hash(seg, slen));

				if (c != NULL)
					rvec_push(next, c);
			}
		}
		{
			struct rvec *tmp = cur;

			cur = next;
			next = tmp;
		}
		if (cur->n == 0 || e == len)
			break;
		i = e + 1;
	}
	if (!done) {
		for (size_t k = 0; k < cur->n; k++)
			if (cur->v[k]->value != NULL)
				fn(arg, cur->v[k]->value);
	}
	rvec_cleanup(&a);
	rvec_cleanup(&b);
}

void retain_tree_foreach(struct retain_tree *t, retain_fn fn, void *arg)
{
	walk_below(t, t->root, false, fn, arg);
}

size_t retain_tree_count(const struct retain_tree *t)
{
	return t->count;
}
