/*
 * A session's in-flight deliveries by packet id: linear probing from
 * pid & (cap - 1). The ids in flight are mostly consecutive, so they land
 * in consecutive slots and a lookup rarely probes twice; a removal shifts
 * the entries after it back instead of leaving a tombstone, looking no
 * further than the largest displacement in the table.
 */
#include "pidmap.h"

#include <assert.h>
#include <stdlib.h>

#include "client.h"
#include "util.h"

struct delivery *pidmap_find(const struct pid_map *m, uint16_t pid)
{
	if (!m->cap)
		return NULL;
	uint32_t mask = m->cap - 1;
	for (uint32_t k = 0, i = pid & mask; k <= m->max_disp; k++, i = (i + 1) & mask) {
		struct delivery *d = m->slots[i];
		if (!d || d->pid == pid)
			return d;
	}
	return NULL;
}

static void pidmap_place(struct pid_map *m, struct delivery *d)
{
	uint32_t i = d->pid & (m->cap - 1), disp = 0;
	while (m->slots[i]) {
		i = (i + 1) & (m->cap - 1);
		disp++;
	}
	m->slots[i] = d;
	if (disp > m->max_disp)
		m->max_disp = disp;
}

void pidmap_add(struct pid_map *m, struct delivery *d)
{
	if ((uint64_t)(m->count + 1) * 8 > (uint64_t)m->cap * 7) {
		struct pid_map old = *m;
		m->cap = old.cap ? old.cap * 2 : 16;
		m->slots = xcalloc(m->cap, sizeof(*m->slots));
		m->max_disp = 0;
		for (uint32_t i = 0; i < old.cap; i++)
			if (old.slots[i])
				pidmap_place(m, old.slots[i]);
		free(old.slots);
	}
	pidmap_place(m, d);
	m->count++;
}

void pidmap_remove(struct pid_map *m, const struct delivery *d)
{
	uint32_t mask = m->cap - 1;
	uint32_t i = d->pid & mask;
	while (m->slots[i] != d) {
		assert(m->slots[i] != NULL);
		i = (i + 1) & mask;
	}
	/* Shift back each later entry of the run that may move into the hole:
	 * one whose home slot is not cyclically in (hole, its slot]. One
	 * further than max_disp from the hole cannot be. */
	uint32_t hole = i;
	for (uint32_t j = (i + 1) & mask; m->slots[j] && ((j - hole) & mask) <= m->max_disp;
	     j = (j + 1) & mask) {
		uint32_t home = m->slots[j]->pid & mask;
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			m->slots[hole] = m->slots[j];
			hole = j;
		}
	}
	m->slots[hole] = NULL;
	m->count--;
}

void pidmap_cleanup(struct pid_map *m)
{
	free(m->slots);
	*m = (struct pid_map){0};
}
