/*
 * The deliveries' block allocator: fixed-size blocks carved from large
 * aligned slabs, without a per-block header, each block also named by a
 * 32-bit index (the queues link deliveries by index, not by pointer).
 */
#ifndef CAIRN_DPOOL_H
#define CAIRN_DPOOL_H

#include <stddef.h>
#include <stdint.h>

/* Bytes per slab (a power of two; slabs are aligned to it) and per block. */
#define DPOOL_SLAB_BYTES ((size_t)256 * 1024)
#define DPOOL_BLOCK      48
/* Blocks the slab's header takes (dpool.c asserts it fits). */
#define DPOOL_HEAD_BLOCKS 17
/* An index is the slab's number above DPOOL_SLOT_BITS bits holding the
 * block's slot + 1 (so that no block has index 0). */
#define DPOOL_SLOT_BITS 13

struct dpool_slab;

/* All-zero is an empty pool: no _init needed. One per server, used by the
 * event loop's thread only. */
struct dpool {
	struct dpool_slab **slabs;  /* by slab number; NULL: number free */
	uint32_t nslabs;            /* numbers in use or free below this */
	uint32_t cap;               /* of slabs */
	struct dpool_slab *partial; /* slabs with a free block, linked */
	size_t live;                /* blocks handed out */
	size_t nslab_live;          /* slabs mapped */
	size_t empty_pages;         /* pages without a block in use, still mapped in */
};

/* A zeroed block of DPOOL_BLOCK bytes, 8-byte aligned. Aborts when the
 * system has no memory left. */
void *dpool_alloc(struct dpool *p);
/* Give b back. A slab left empty is returned to the system while another
 * slab has room; past DPOOL_KEEP_PAGES (dpool.c) empty pages, every empty
 * page is. */
void dpool_free(struct dpool *p, void *b);
/* b's index (never 0), and the block of an index (NULL for 0). */
uint32_t dpool_index(const struct dpool *p, const void *b);
static inline void *dpool_at(const struct dpool *p, uint32_t idx)
{
	if (idx == 0)
		return NULL;
	uint32_t slot = (idx & ((1u << DPOOL_SLOT_BITS) - 1)) - 1;
	return (char *)p->slabs[idx >> DPOOL_SLOT_BITS] +
	       (size_t)DPOOL_BLOCK * (slot + DPOOL_HEAD_BLOCKS);
}
/* Return every slab. Blocks still handed out (a leak) keep their slabs
 * mapped; returns how many there were. */
size_t dpool_cleanup(struct dpool *p);

#endif
