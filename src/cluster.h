/*
 * Cluster mode (`cluster true`): several brokers share one store (Redis)
 * through version 4 of the persistence interface. This is the core's side:
 * a session's claim when its client connects (the session is loaded from
 * the store then, not at start-up), the kicks and fenced writes that end a
 * session's stay on this node, every PUBLISH appended to the shared log,
 * and the log's entries routed to this node's sessions, with the catch-up
 * of a session that arrives from another node.
 */
#ifndef CAIRN_CLUSTER_H
#define CAIRN_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct conn;
struct message;
struct server;
struct sub;

/* Join the cluster once the store is restored: 0, or -1 logged. */
int cluster_start(struct server *srv);
/* The store failed (healthy false) or recovered. A node that cannot
 * commit for redis_connect_timeout closes its clients' connections, so
 * they move to a node that can. */
void cluster_store_health(struct server *srv, bool healthy);

/* Stop hearing from the store (shutdown, before the store closes). */
void cluster_stop(struct server *srv);
void cluster_free(struct server *srv);

/* Append m, published by publisher (NULL: the broker), to the shared log:
 * every node routes it from there, this one included. A staged write. */
void cluster_publish(struct server *srv, struct message *m, const struct client *publisher);

/* s, a subscription c has just made, matches the log's entries after this
 * node's mark only: those up to it were published before it (c's catch-up
 * may still bring them). */
void cluster_sub_since(struct server *srv, struct sub *s);

/* c's client went: park its session (stored as not connected, held by no
 * node, its cursor where this node's routing of it stands) and drop it
 * from memory. Nothing routes to it until a node claims it again and
 * catches it up: an offline session costs nothing at publish time. A
 * claim of it here waits until the park is committed. */
void cluster_park(struct client *c);

/* What became of a claim (cluster_claim's done). */
enum cluster_claim_result {
	CLUSTER_CLAIMED,     /* the session is held here: go on with the CONNECT */
	CLUSTER_UNAVAILABLE, /* the store could not be asked: refuse it */
	CLUSTER_OVERTAKEN    /* another node claimed it meanwhile: refuse it */
};

/*
 * Claim client id's session for the CONNECT on cn, which is held (nothing
 * more is read from it) until done(srv, cn, arg, result) runs from the
 * loop. A claimed persistent session is in memory by then (loaded from
 * the store, unless this node held it already); once done() has attached
 * it, it catches up with the log. If cn goes first, gone(arg) runs instead
 * and done() never. clean: the CONNECT asks for a clean start (the session
 * of a connection on another node ends now: its delayed will is due).
 */
void cluster_claim(struct server *srv, struct conn *cn, const char *id, size_t id_len, bool clean,
		   void (*done)(struct server *srv, struct conn *cn, void *arg,
				enum cluster_claim_result result),
		   void (*gone)(void *arg), void *arg);

#endif
