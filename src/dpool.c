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

#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define DPOOL_POISON(b, n)   ASAN_POISON_MEMORY_REGION((b), (n))
#define DPOOL_UNPOISON(b, n) ASAN_UNPOISON_MEMORY_REGION((b), (n))
#else
#define DPOOL_POISON(b, n)   ((void)(b), (void)(n))
#define DPOOL_UNPOISON(b, n) ((void)(b), (void)(n))
#endif

/* The slab's header takes its first block. */
struct dpool_slab {
	uint32_t no;   /* its number: its blocks' indexes follow from it */
	uint32_t used; /* blocks handed out */
	uint32_t bump; /* blocks at and past this one were never used */
	uint32_t free; /* first free block (slot + 1), linked through them; 0: none */
	bool in_partial;
	struct dpool_slab *next, *prev; /* in the pool's partial list */
};

_Static_assert(sizeof(struct dpool_slab) <= DPOOL_BLOCK, "the slab header fits one block");
_Static_assert((DPOOL_SLAB_BYTES & (DPOOL_SLAB_BYTES - 1)) == 0, "slabs are a power of two");

#define DPOOL_PER_SLAB ((uint32_t)(DPOOL_SLAB_BYTES / DPOOL_BLOCK - 1))
/* Indexes are 32 bits, 0 excluded. */
#define DPOOL_MAX_SLABS ((uint32_t)(UINT32_MAX / DPOOL_PER_SLAB - 1))

static char *dpool_block(struct dpool_slab *s, uint32_t slot)
{
	return (char *)s + (size_t)DPOOL_BLOCK * (slot + 1);
}

static uint32_t dpool_slot(const struct dpool_slab *s, const void *b)
{
	return (uint32_t)(((const char *)b - (const char *)s) / DPOOL_BLOCK - 1);
}

static struct dpool_slab *dpool_slab_of(const void *b)
{
	return (struct dpool_slab *)((uintptr_t)b & ~(uintptr_t)(DPOOL_SLAB_BYTES - 1));
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
	p->slabs[s->no] = NULL;
	while (p->nslabs && !p->slabs[p->nslabs - 1])
		p->nslabs--;
	p->nslab_live--;
	DPOOL_UNPOISON(dpool_block(s, 0), (size_t)DPOOL_BLOCK * DPOOL_PER_SLAB);
	munmap(s, DPOOL_SLAB_BYTES);
}

void *dpool_alloc(struct dpool *p)
{
	struct dpool_slab *s = p->partial ? p->partial : dpool_slab_new(p);
	char *b;
	if (s->free) {
		b = dpool_block(s, s->free - 1);
		DPOOL_UNPOISON(b, DPOOL_BLOCK);
		memcpy(&s->free, b, sizeof(s->free));
	} else {
		b = dpool_block(s, s->bump++);
		DPOOL_UNPOISON(b, DPOOL_BLOCK);
	}
	s->used++;
	if (s->used == DPOOL_PER_SLAB)
		dpool_partial_remove(p, s);
	p->live++;
	memset(b, 0, DPOOL_BLOCK);
	return b;
}

void dpool_free(struct dpool *p, void *b)
{
	if (!b)
		return;
	struct dpool_slab *s = dpool_slab_of(b);
	uint32_t slot = dpool_slot(s, b);
	memcpy(b, &s->free, sizeof(s->free));
	DPOOL_POISON(b, DPOOL_BLOCK);
	s->free = slot + 1;
	s->used--;
	p->live--;
	if (!s->in_partial)
		dpool_partial_add(p, s);
	/* An empty slab goes back to the system while another has room. */
	if (s->used == 0 && (s->next || s->prev))
		dpool_slab_free(p, s);
}

uint32_t dpool_index(const struct dpool *p, const void *b)
{
	(void)p;
	const struct dpool_slab *s = dpool_slab_of(b);
	return s->no * DPOOL_PER_SLAB + dpool_slot(s, b) + 1;
}

void *dpool_at(const struct dpool *p, uint32_t idx)
{
	if (idx == 0)
		return NULL;
	idx--;
	return dpool_block(p->slabs[idx / DPOOL_PER_SLAB], idx % DPOOL_PER_SLAB);
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
