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

#include "levelmap.h"
#include "util.h"

/*
 * One topic level. Children are kept in the node's levelmap table, which
 * serves both exact lookups and the full scans that '+' and '#' need.
 */
struct rnode {
	struct levelmap_node lm; /* first, so a header pointer is a node pointer */
	void *value;             /* NULL: no retained message at this exact topic */
};

struct retain_tree {
	struct rnode *root;
	size_t count;
};

static struct rnode *to_rnode(struct levelmap_node *m)
{
	return (struct rnode *)m;
}

static void node_free(struct rnode *n)
{
	levelmap_node_cleanup(&n->lm);
	free(n);
}

static bool is_dollar(const struct rnode *n)
{
	return n->lm.seglen > 0 && n->lm.seg[0] == '$';
}

struct retain_tree *retain_tree_new(void)
{
	struct retain_tree *t = xcalloc(1, sizeof(*t));

	t->root = levelmap_node_new(sizeof(struct rnode), NULL, "", 0, 0);
	return t;
}

static void free_rnode(struct levelmap_node *m, struct levelmap_vec *stack)
{
	(void)stack;
	node_free(to_rnode(m));
}

void retain_tree_free(struct retain_tree *t)
{
	if (t == NULL)
		return;
	levelmap_tree_free(&t->root->lm, free_rnode);
	free(t);
}

/* The node of exactly this topic, created on demand when create is set. */
static struct rnode *node_walk(struct retain_tree *t, const char *topic, size_t len, bool create)
{
	struct rnode *n = t->root;
	size_t i = 0;

	for (;;) {
		size_t e = levelmap_level_end(topic, len, i);
		const char *seg = topic + i;
		uint32_t hv = levelmap_hash(seg, e - i);
		struct rnode *c = to_rnode(levelmap_find(&n->lm, seg, e - i, hv));

		if (c == NULL) {
			if (!create)
				return NULL;
			c = levelmap_node_new(sizeof(*c), &n->lm, seg, e - i, hv);
			levelmap_add(&n->lm, &c->lm);
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
	while (n != t->root && n->value == NULL && n->lm.nchildren == 0) {
		struct rnode *p = to_rnode(n->lm.parent);

		levelmap_del(&p->lm, &n->lm);
		node_free(n);
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
	struct levelmap_vec stack;

	levelmap_vec_init(&stack);
	levelmap_vec_push(&stack, &top->lm);
	while (stack.n > 0) {
		struct rnode *n = to_rnode(stack.v[--stack.n]);

		if (n != top && n->value != NULL)
			fn(arg, n->value);
		for (uint32_t i = 0; i < n->lm.nslots; i++) {
			struct rnode *c = to_rnode(n->lm.slots[i]);

			if (c == NULL || (skip_dollar && n == t->root && is_dollar(c)))
				continue;
			levelmap_vec_push(&stack, &c->lm);
		}
	}
	levelmap_vec_cleanup(&stack);
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
	struct levelmap_vec a, b;
	struct levelmap_vec *cur = &a, *next = &b;
	size_t i = 0;
	bool done = false;

	levelmap_vec_init(&a);
	levelmap_vec_init(&b);
	levelmap_vec_push(cur, &t->root->lm);
	for (;;) {
		size_t e = levelmap_level_end(filter, len, i);
		const char *seg = filter + i;
		size_t slen = e - i;

		if (slen == 1 && seg[0] == '#') {
			/* 'x/#' matches 'x' itself and everything below it. */
			for (size_t k = 0; k < cur->n; k++) {
				struct rnode *n = to_rnode(cur->v[k]);

				if (n->value != NULL)
					fn(arg, n->value);
				walk_below(t, n, n == t->root, fn, arg);
			}
			done = true;
			break;
		}
		for (size_t k = 0; k < cur->n; k++) {
			struct rnode *n = to_rnode(cur->v[k]);

			if (slen == 1 && seg[0] == '+') {
				for (uint32_t s = 0; s < n->lm.nslots; s++) {
					struct rnode *c = to_rnode(n->lm.slots[s]);

					if (c != NULL && !(n == t->root && is_dollar(c)))
						levelmap_vec_push(next, &c->lm);
				}
			} else {
				struct levelmap_node *c =
				    levelmap_find(&n->lm, seg, slen, levelmap_hash(seg, slen));

				if (c != NULL)
					levelmap_vec_push(next, c);
			}
		}
		levelmap_vec_swap(&cur, &next);
		if (cur->n == 0 || e == len)
			break;
		i = e + 1;
	}
	if (!done) {
		for (size_t k = 0; k < cur->n; k++) {
			struct rnode *n = to_rnode(cur->v[k]);

			if (n->value != NULL)
				fn(arg, n->value);
		}
	}
	levelmap_vec_cleanup(&a);
	levelmap_vec_cleanup(&b);
}

void retain_tree_foreach(struct retain_tree *t, retain_fn fn, void *arg)
{
	walk_below(t, t->root, false, fn, arg);
}

size_t retain_tree_count(const struct retain_tree *t)
{
	return t->count;
}
