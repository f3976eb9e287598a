/*
 * Acknowledgements and deliveries held back until the store has committed
 * what they promise: a gate opens when the batch that stored a message
 * commits, and a gate_wait writes its bytes (an acknowledgement), opens its
 * gate and pumps its sessions then, in submission order.
 */
#include "gate.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "conn.h"
#include "server.h"
#include "store.h"
#include "util.h"

struct gate *gate_new(void)
{
	struct gate *g = xcalloc(1, sizeof(*g));
	g->refs = 1;
	return g;
}

struct gate *gate_ref(struct gate *g)
{
	g->refs++;
	return g;
}

void gate_unref(struct gate *g)
{
	if (g && --g->refs == 0)
		free(g);
}

struct gate_wait {
	struct client *to;
	uint8_t *bytes;
	size_t len;
	struct gate *gate;
	uint64_t conn_id; /* the connection the bytes answer */
	struct client **targets;
	size_t ntargets, cap;
	bool quota; /* the bytes end a PUBLISH counted against the receive maximum */
	uint8_t inline_bytes[8];
};

void gate_wait_release_quota(struct gate_wait *p)
{
	p->quota = true;
}

struct gate_wait *gate_wait_new(struct client *to, const uint8_t *bytes, size_t len,
				struct gate *gate)
{
	struct gate_wait *p = xcalloc(1, sizeof(*p));
	if (to) {
		p->to = client_ref(to);
		p->conn_id = to->conn ? conn_id(to->conn) : 0;
		to->deferred++;
		if (to->conn && !store_is_healthy(to->srv->store))
			conn_set_paused(to->conn, true);
		/* The reply waits while the store gathers the other clients'
		 * packets: this client's next ones are wanted now, not after the
		 * kernel's delayed ACK (see conn_ack_now). */
		if (to->conn && store_gathering(to->srv->store))
			conn_ack_soon(to->conn);
	}
	if (len) {
		p->bytes = len <= sizeof(p->inline_bytes) ? p->inline_bytes : xmalloc(len);
		memcpy(p->bytes, bytes, len);
		p->len = len;
	}
	p->gate = gate ? gate_ref(gate) : NULL;
	return p;
}

void gate_wait_add_target(struct gate_wait *p, struct client *c)
{
	if (p->ntargets == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 4;
		p->targets = xrealloc(p->targets, p->cap * sizeof(*p->targets));
	}
	p->targets[p->ntargets++] = client_ref(c);
}

/* The store committed what w waits for (durable), or closed without ever
 * committing it: then nothing is acknowledged or delivered, and w only
 * lets go of what it holds. */
static void gate_wait_done(void *arg, bool durable)
{
	struct gate_wait *p = arg;
	if (p->to) {
		p->to->deferred--;
		/* An answer to a connection since replaced is not sent on the
		 * new one: that one never sent the packet. */
		if (durable && p->len && client_is_connected(p->to) &&
		    conn_id(p->to->conn) == p->conn_id) {
			conn_write(p->to->conn, p->bytes, p->len);
			if (p->quota && p->to->in_unacked)
				p->to->in_unacked--;
		}
	}
	if (p->gate && durable)
		p->gate->open = true;
	for (size_t i = 0; i < p->ntargets; i++) {
		if (durable && !p->targets[i]->dead)
			client_pump(p->targets[i]);
		client_unref(p->targets[i]);
	}
	if (p->to)
		client_unref(p->to);
	gate_unref(p->gate);
	if (p->bytes != p->inline_bytes)
		free(p->bytes);
	free(p->targets);
	free(p);
}

void gate_wait_submit(struct gate_wait *p, struct store *st)
{
	store_after_commit(st, gate_wait_done, p);
}
