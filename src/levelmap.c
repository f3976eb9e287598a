/*
 * The child table and node vector shared by the subscription trie (topic.c)
 * and the retained-message trie (retain.c): one open-addressed hash table
 * per node, keyed by a level's bytes, plus the worklist vector both tries
 * walk instead of recursing.
 */
#include "levelmap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

size_t levelmap_level_end(const char *s, size_t len, size_t from)
{
	const char *p = from < len ? memchr(s + from, '/', len - from) : NULL;

	return p ? (size_t)(p - s) : len;
}

uint32_t levelmap_hash(const char *seg, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)seg[i];
		h *= 16777619u;
	}
	return h;
}

void *levelmap_node_new(size_t size, struct levelmap_node *parent, const char *seg, size_t len,
			uint32_t hv)
{
	char *mem = xcalloc(1, size + len);
	struct levelmap_node *n = (struct levelmap_node *)mem;

	if (len > 0)
		memcpy(mem + size, seg, len);
	n->parent = parent;
	n->seg = mem + size;
	n->seglen = (uint32_t)len;
	n->hv = hv;
	return mem;
}

void levelmap_node_cleanup(struct levelmap_node *n)
{
	free(n->slots);
	n->slots = NULL;
	n->nslots = 0;
	n->nchildren = 0;
}

struct levelmap_node *levelmap_find(const struct levelmap_node *n, const char *seg, size_t len,
				    uint32_t hv)
{
	uint32_t mask, i;

	if (n->slots == NULL)
		return NULL;
	mask = n->nslots - 1;
	for (i = hv & mask; n->slots[i] != NULL; i = (i + 1) & mask) {
		struct levelmap_node *c = n->slots[i];

		if (c->hv == hv && c->seglen == len && memcmp(c->seg, seg, len) == 0)
			return c;
	}
	return NULL;
}

static void slots_put(struct levelmap_node **slots, uint32_t nslots, struct levelmap_node *c)
{
	uint32_t mask = nslots - 1, i;

	for (i = c->hv & mask; slots[i] != NULL; i = (i + 1) & mask)
		;
	slots[i] = c;
}

static void slots_resize(struct levelmap_node *n, uint32_t nslots)
{
	struct levelmap_node **slots = xcalloc(nslots, sizeof(*slots));

	for (uint32_t i = 0; i < n->nslots; i++)
		if (n->slots[i] != NULL)
			slots_put(slots, nslots, n->slots[i]);
	free(n->slots);
	n->slots = slots;
	n->nslots = nslots;
}

void levelmap_add(struct levelmap_node *n, struct levelmap_node *c)
{
	/* Keep the load factor at or below 3/4. */
	if (n->slots == NULL)
		slots_resize(n, 4);
	else if ((n->nchildren + 1) * 4 > n->nslots * 3)
		slots_resize(n, n->nslots * 2);
	slots_put(n->slots, n->nslots, c);
	n->nchildren++;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
void levelmap_del(struct levelmap_node *n, struct levelmap_node *c)
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

void levelmap_vec_init(struct levelmap_vec *lv)
{
	lv->v = lv->inl;
	lv->n = 0;
	lv->cap = LEVELMAP_VEC_INLINE;
}

void levelmap_vec_cleanup(struct levelmap_vec *lv)
{
	if (lv->v != lv->inl)
		free(lv->v);
}

void levelmap_vec_push(struct levelmap_vec *lv, struct levelmap_node *n)
{
	if (lv->n == lv->cap) {
		size_t cap = lv->cap * 2;
		struct levelmap_node **v = xmalloc(cap * sizeof(*v));

		memcpy(v, lv->v, lv->n * sizeof(*v));
		levelmap_vec_cleanup(lv);
		lv->v = v;
		lv->cap = cap;
	}
	lv->v[lv->n++] = n;
}

void levelmap_vec_swap(struct levelmap_vec **cur, struct levelmap_vec **next)
{
	struct levelmap_vec *tmp = *cur;

	*cur = *next;
	*next = tmp;
	tmp->n = 0;
}

/* Append every child in n's table. */
static void push_children(struct levelmap_vec *lv, const struct levelmap_node *n)
{
	for (uint32_t i = 0; i < n->nslots; i++)
		if (n->slots[i] != NULL)
			levelmap_vec_push(lv, n->slots[i]);
}

void levelmap_tree_free(struct levelmap_node *root, levelmap_free_fn free_node)
{
	struct levelmap_vec stack;

	levelmap_vec_init(&stack);
	levelmap_vec_push(&stack, root);
	while (stack.n > 0) {
		struct levelmap_node *n = stack.v[--stack.n];

		push_children(&stack, n);
		free_node(n, &stack);
	}
	levelmap_vec_cleanup(&stack);
}
