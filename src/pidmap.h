/*
 * The in-flight window of a session by packet id: open addressing (linear
 * probing) over pointers to its deliveries, keyed by their pid, so that an
 * acknowledgement finds its delivery, and a new delivery a free id, at the
 * same cost in a window of 20 or 65,535, without a link in each delivery.
 */
#ifndef CAIRN_PIDMAP_H
#define CAIRN_PIDMAP_H

#include <stdint.h>

struct delivery;

/* All-zero is an empty map. */
struct pid_map {
	struct delivery **slots; /* NULL: empty slot */
	uint32_t cap;            /* a power of two, or 0 before the first */
	uint32_t count;
	/* No delivery is further than this from its home slot: a lookup or
	 * the shift after a removal stops there, so a window of consecutive
	 * ids (one long run of entries at home) costs O(1) per operation. */
	uint32_t max_disp;
};

/* The delivery in m under pid (the first found if a damaged store gave
 * two the same id), or NULL. */
struct delivery *pidmap_find(const struct pid_map *m, uint16_t pid);
/* Add d under d->pid; m grows to keep it at most 7/8 full. */
void pidmap_add(struct pid_map *m, struct delivery *d);
/* Remove d itself (which must be in m), not another under its id. */
void pidmap_remove(struct pid_map *m, const struct delivery *d);
/* Free the slots; m is empty after. */
void pidmap_cleanup(struct pid_map *m);

#endif
