/*
 * Commit-gated work: acknowledgements and deliveries that wait until
 * everything staged so far is durable ("acknowledge only what is stored").
 */
#ifndef CAIRN_GATE_H
#define CAIRN_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct store;

/* A gate holds back deliveries until the batch that stored them commits. */
struct gate {
	unsigned refs;
	bool open;
};

struct gate *gate_new(void);
struct gate *gate_ref(struct gate *g);
void gate_unref(struct gate *g);

/*
 * Work to do once everything staged so far is committed: write bytes to a
 * client (an acknowledgement, dropped if that client's connection was
 * replaced meanwhile), then open a gate and pump the clients whose
 * deliveries wait behind it. Waits complete in submission order. While the
 * store fails, the client `to` stops being read (back-pressure).
 */
struct gate_wait;
struct gate_wait *gate_wait_new(struct client *to, const uint8_t *bytes, size_t len,
				struct gate *gate);
/* w's bytes end one of its client's PUBLISHes counted against the
 * broker's receive maximum: the count drops when they are written. */
void gate_wait_release_quota(struct gate_wait *w);
/* Pump c when w completes; the caller adds each client once. */
void gate_wait_add_target(struct gate_wait *w, struct client *c);
/* Hand w to st; it runs once everything staged so far is committed and
 * is freed then. */
void gate_wait_submit(struct gate_wait *w, struct store *st);

#endif
