/*
 * The deliveries' block allocator. A million queued messages are a
 * million deliveries: from malloc each would carry a chunk header and be
 * rounded up to the next 16 bytes; here a block costs its own size. Slabs
 * are mapped as needed, touched only as blocks are used, and unmapped when
 * they empty (one empty slab is kept against churn at a boundary).
 */
#include "dpool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

/* gcc says -fsanitize=address with __SANITIZE_ADDRESS__, clang with
 * __has_feature(address_sanitizer). */
#if defined(__SANITIZE_ADDRESS__)
#define DPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DPOOL_ASAN 1
#endif
#endif
#ifdef DPOOL_ASAN
#include <sanitizer/asan_interface.h>
#define DPOOL_POISON(b, n)   ASAN_POISON_MEMORY_REGION((b), (n))
#define DPOOL_UNPOISON(b, n) ASAN_UNPOISON_MEMORY_REGION((b), (n))
#else
#define DPOOL_POISON(b, n)   ((void)(b), (void)(n))
#define DPOOL_UNPOISON(b, n) ((void)(b), (void)(n))
#endif

/* Pages are counted in 4 KiB units; on a system with other pages the
 * pages of a slab are not given back one by one (whole slabs still are). */
#define DPOOL_PAGE  4096
#define DPOOL_PAGES (DPOOL_SLAB_BYTES / DPOOL_PAGE)
/* Empty pages kept mapped before a sweep gives them back. */
#define DPOOL_KEEP_PAGES 256

#define DPOOL_BLOCKS_ALL (DPOOL_SLAB_BYTES / DPOOL_BLOCK)
#define DPOOL_WORDS      ((DPOOL_BLOCKS_ALL + 63) / 64)

/* The slab's header takes its first blocks. */
struct dpool_slab {
	uint32_t no;   /* its number: its blocks' indexes follow from it */
	uint32_t used; /* blocks handed out */
	uint32_t hint; /* no free block in the words of freebits below this */
	bool in_partial;
	struct dpool_slab *next, *prev; /* in the pool's partial list */
	uint64_t resident;              /* pages that may be mapped in, a bit each */
	uint8_t count[DPOOL_PAGES];     /* blocks in use overlapping each page (+1: the header's) */
	uint64_t freebits[DPOOL_WORDS]; /* a bit per block: 1 free */
};

_Static_assert((DPOOL_SLAB_BYTES & (DPOOL_SLAB_BYTES - 1)) == 0, "slabs are a power of two");
_Static_assert(DPOOL_PAGES <= 64, "a slab's pages fit one word");
_Static_assert(DPOOL_PAGE / DPOOL_BLOCK + 2 < 255, "a page's count fits a byte");

/* Blocks left after the header's. */
#define DPOOL_PER_SLAB ((uint32_t)(DPOOL_BLOCKS_ALL - DPOOL_HEAD_BLOCKS))
/* Slab numbers above the slot bits of a 32-bit index. */
#define DPOOL_MAX_SLABS ((uint32_t)1 << (32 - DPOOL_SLOT_BITS))
_Static_assert(sizeof(struct dpool_slab) <= DPOOL_HEAD_BLOCKS * DPOOL_BLOCK,
	       "the header fits its blocks");
_Static_assert(DPOOL_PER_SLAB < (1u << DPOOL_SLOT_BITS), "a slot + 1 fits its bits");
_Static_assert(DPOOL_HEAD_BLOCKS *DPOOL_BLOCK <= DPOOL_PAGE, "the header fits its first page");

static char *dpool_block(struct dpool_slab *s, uint32_t slot)
{
	return (char *)s + (size_t)DPOOL_BLOCK * (slot + DPOOL_HEAD_BLOCKS);
}

static uint32_t dpool_slot(const struct dpool_slab *s, const void *b)
{
	return (uint32_t)(((const char *)b - (const char *)s) / DPOOL_BLOCK - DPOOL_HEAD_BLOCKS);
}

static struct dpool_slab *dpool_slab_of(const void *b)
{
	return (struct dpool_slab *)((uintptr_t)b & ~(uintptr_t)(DPOOL_SLAB_BYTES - 1));
}

/* The first and last page a slot overlaps. */
static void dpool_pages_of(uint32_t slot, unsigned *first, unsigned *last)
{
	size_t off = (size_t)DPOOL_BLOCK * (slot + DPOOL_HEAD_BLOCKS);
	*first = (unsigned)(off / DPOOL_PAGE);
	*last = (unsigned)((off + DPOOL_BLOCK - 1) / DPOOL_PAGE);
}

/* Pages of s that are empty and still mapped in. */
static uint64_t dpool_empty_pages(const struct dpool_slab *s)
{
	uint64_t m = 0;
	for (unsigned i = 0; i < DPOOL_PAGES; i++)
		if (s->count[i] == 0)
			m |= (uint64_t)1 << i;
	return m & s->resident;
}

/* A slab aligned to its size: map twice that and trim both ends. */
static struct dpool_slab *dpool_map(void)
{
	size_t len = 2 * DPOOL_SLAB_BYTES;
	char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		fputs("cairn: out of memory\n", stderr);
		abort();
	}
	uintptr_t at = ((uintptr_t)raw + DPOOL_SLAB_BYTES - 1) & ~(uintptr_t)(DPOOL_SLAB_BYTES - 1);
	char *start = (char *)at;
	if (start > raw)
		munmap(raw, (size_t)(start - raw));
	char *end = start + DPOOL_SLAB_BYTES;
	if (end < raw + len)
		munmap(end, (size_t)(raw + len - end));
	return (struct dpool_slab *)start;
}

static void dpool_partial_add(struct dpool *p, struct dpool_slab *s)
{
	s->prev = NULL;
	s->next = p->partial;
	if (p->partial)
		p->partial->prev = s;
	p->partial = s;
	s->in_partial = true;
}

static void dpool_partial_remove(struct dpool *p, struct dpool_slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		p->partial = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->in_partial = false;
}

static struct dpool_slab *dpool_slab_new(struct dpool *p)
{
	uint32_t no = 0;
	while (no < p->nslabs && p->slabs[no])
		no++;
	if (no == p->nslabs) {
		if (no >= DPOOL_MAX_SLABS) {
			fputs("cairn: too many deliveries\n", stderr);
			abort();
		}
		if (p->nslabs == p->cap) {
			p->cap = p->cap ? p->cap * 2 : 16;
			p->slabs = xrealloc(p->slabs, p->cap * sizeof(*p->slabs));
		}
		p->nslabs++;
	}
	struct dpool_slab *s = dpool_map();
	s->no = no;
	/* The header's page is never given back: it counts as one in use. */
	s->count[0] = 1;
	s->resident = 1;
	for (uint32_t i = 0; i < DPOOL_PER_SLAB; i++)
		s->freebits[i / 64] |= (uint64_t)1 << (i % 64);
	p->slabs[no] = s;
	p->nslab_live++;
	DPOOL_POISON(dpool_block(s, 0), (size_t)DPOOL_BLOCK * DPOOL_PER_SLAB);
	dpool_partial_add(p, s);
	return s;
}

static void dpool_slab_free(struct dpool *p, struct dpool_slab *s)
{
	if (s->in_partial)
		dpool_partial_remove(p, s);
	p->empty_pages -= (size_t)__builtin_popcountll(dpool_empty_pages(s));
	p->slabs[s->no] = NULL;
	while (p->nslabs && !p->slabs[p->nslabs - 1])
		p->nslabs--;
	p->nslab_live--;
	DPOOL_UNPOISON(dpool_block(s, 0), (size_t)DPOOL_BLOCK * DPOOL_PER_SLAB);
	munmap(s, DPOOL_SLAB_BYTES);
}

/* Give back every empty page still mapped in, in runs. */
static void dpool_sweep(struct dpool *p)
{
	bool give = sysconf(_SC_PAGESIZE) == DPOOL_PAGE;
	for (uint32_t n = 0; n < p->nslabs; n++) {
		struct dpool_slab *s = p->slabs[n];
		if (!s)
			continue;
		uint64_t m = dpool_empty_pages(s);
		for (unsigned i = 0; i < DPOOL_PAGES;) {
			if (!(m >> i & 1)) {
				i++;
				continue;
			}
			unsigned j = i;
			while (j < DPOOL_PAGES && (m >> j & 1))
				j++;
			if (give)
				madvise((char *)s + (size_t)i * DPOOL_PAGE,
					(size_t)(j - i) * DPOOL_PAGE, MADV_DONTNEED);
			i = j;
		}
		s->resident &= ~m; /* (kept mapped when !give, but no longer counted) */
		p->empty_pages -= (size_t)__builtin_popcountll(m);
	}
}

void *dpool_alloc(struct dpool *p)
{
	struct dpool_slab *s = p->partial ? p->partial : dpool_slab_new(p);
	uint32_t w = s->hint;
	while (!s->freebits[w])
		w++;
	s->hint = w;
	uint32_t slot = w * 64 + (uint32_t)__builtin_ctzll(s->freebits[w]);
	s->freebits[w] &= s->freebits[w] - 1;
	unsigned first, last;
	dpool_pages_of(slot, &first, &last);
	for (unsigned i = first; i <= last; i++) {
		if (s->count[i]++ == 0) {
			if (s->resident >> i & 1)
				p->empty_pages--;
			s->resident |= (uint64_t)1 << i;
		}
	}
	s->used++;
	if (s->used == DPOOL_PER_SLAB)
		dpool_partial_remove(p, s);
	p->live++;
	char *b = dpool_block(s, slot);
	DPOOL_UNPOISON(b, DPOOL_BLOCK);
	memset(b, 0, DPOOL_BLOCK);
	return b;
}

void dpool_free(struct dpool *p, void *b)
{
	if (!b)
		return;
	struct dpool_slab *s = dpool_slab_of(b);
	uint32_t slot = dpool_slot(s, b);
	DPOOL_POISON(b, DPOOL_BLOCK);
	s->freebits[slot / 64] |= (uint64_t)1 << (slot % 64);
	if (slot / 64 < s->hint)
		s->hint = slot / 64;
	unsigned first, last;
	dpool_pages_of(slot, &first, &last);
	for (unsigned i = first; i <= last; i++)
		if (--s->count[i] == 0)
			p->empty_pages++;
	s->used--;
	p->live--;
	if (!s->in_partial)
		dpool_partial_add(p, s);
	/* An empty slab goes back to the system while another has room. */
	if (s->used == 0 && (s->next || s->prev))
		dpool_slab_free(p, s);
	else if (p->empty_pages > DPOOL_KEEP_PAGES)
		dpool_sweep(p);
}

uint32_t dpool_index(const struct dpool *p, const void *b)
{
	(void)p;
	const struct dpool_slab *s = dpool_slab_of(b);
	return s->no << DPOOL_SLOT_BITS | (dpool_slot(s, b) + 1);
}

size_t dpool_cleanup(struct dpool *p)
{
	size_t leaked = p->live;
	for (uint32_t i = 0; i < p->nslabs; i++)
		if (p->slabs[i] && p->slabs[i]->used == 0)
			dpool_slab_free(p, p->slabs[i]);
	if (p->nslab_live == 0) {
		free(p->slabs);
		memset(p, 0, sizeof(*p));
	}
	return leaked;
}
