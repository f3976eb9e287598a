/*
 * The pieces both topic tries share: splitting a topic into levels, the
 * per-node table of children keyed by level bytes, and a growable vector of
 * node pointers for the explicit worklists that replace recursion.
 *
 * Caveats: a trie node must begin with a struct levelmap_node, so that a
 * pointer to the header is also a pointer to the node and the tries can cast
 * between the two. The table only links nodes; it never frees one.
 */
#ifndef CAIRN_LEVELMAP_H
#define CAIRN_LEVELMAP_H

#include <stddef.h>
#include <stdint.h>

/*
 * The header of a trie node. Children live in an open-addressed table
 * (linear probing, power-of-two size, load factor at most 3/4), so a parent
 * with 10,000 children costs one probe, not a list walk. The hash is kept in
 * the child so that the table can grow without rehashing bytes.
 */
struct levelmap_node {
	struct levelmap_node *parent;
	struct levelmap_node **slots; /* nslots entries, NULL ones free; NULL when empty */
	const char *seg;              /* this level's bytes, stored just past the node */
	uint32_t nslots;
	uint32_t nchildren; /* entries in slots */
	uint32_t hv;        /* levelmap_hash(seg, seglen) */
	uint32_t seglen;
};

/* Offset of the next '/' in s[from..len), or len when there is none. */
size_t levelmap_level_end(const char *s, size_t len, size_t from);

/* The hash (FNV-1a) a level is filed under. */
uint32_t levelmap_hash(const char *seg, size_t len);

/*
 * Allocate a zeroed node of size bytes (the caller's struct, which starts
 * with a struct levelmap_node) followed by a copy of the len bytes of seg,
 * and fill in the header. The node is not linked into parent's table: call
 * levelmap_add() for that. Aborts on out-of-memory; release the node with
 * levelmap_node_cleanup() and free().
 * @param len at most UINT32_MAX (a topic level is at most 65,535 bytes)
 */
void *levelmap_node_new(size_t size, struct levelmap_node *parent, const char *seg, size_t len,
			uint32_t hv);

/* Free the child table of n (not the children). */
void levelmap_node_cleanup(struct levelmap_node *n);

/* The child of n for level seg (hashed to hv), or NULL. Allocates nothing. */
struct levelmap_node *levelmap_find(const struct levelmap_node *n, const char *seg, size_t len,
				    uint32_t hv);

/* Link c into n's table. c must not be there already. */
void levelmap_add(struct levelmap_node *n, struct levelmap_node *c);

/* Unlink c (which must be there) from n's table; the table shrinks or goes
 * away as it empties. */
void levelmap_del(struct levelmap_node *n, struct levelmap_node *c);

/*
 * A growable array of node pointers that starts in caller storage, so a
 * typical walk allocates nothing.
 */
#define LEVELMAP_VEC_INLINE 32

struct levelmap_vec {
	struct levelmap_node **v;
	size_t n;
	size_t cap;
	struct levelmap_node *inl[LEVELMAP_VEC_INLINE];
};

void levelmap_vec_init(struct levelmap_vec *lv);
void levelmap_vec_cleanup(struct levelmap_vec *lv);
/* Append n; grows the array (aborting on out-of-memory) when full. */
void levelmap_vec_push(struct levelmap_vec *lv, struct levelmap_node *n);
/* For a level-by-level walk: *next becomes *cur, and the old *cur becomes
 * an emptied *next, ready for the level after. */
void levelmap_vec_swap(struct levelmap_vec **cur, struct levelmap_vec **next);
/*
 * Called once per node by levelmap_tree_free() after the node's table
 * children are on the stack: free the node (its table included, with
 * levelmap_node_cleanup()), after pushing any children it keeps outside the
 * table.
 */
typedef void (*levelmap_free_fn)(struct levelmap_node *n, struct levelmap_vec *stack);

/* Free root and every node below it, with an explicit stack rather than
 * recursion. */
void levelmap_tree_free(struct levelmap_node *root, levelmap_free_fn free_node);

#endif
