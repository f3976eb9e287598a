/*
 * The server object: listeners, the known clients (sessions) by id, the
 * subscription trie and retained messages, routing of published messages,
 * and the glue between in-memory state and the store.
 */
#ifndef CAIRN_SERVER_H
#define CAIRN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "log.h"
#include "gate.h"
#include "message.h"

struct event_base;
struct event;
struct evconnlistener;
struct client;
struct conn;
struct store;

struct server_stats {
	uint64_t msgs_received;
	uint64_t msgs_sent;
	uint64_t msgs_dropped;
	uint64_t clients_connected;
};

struct client_map {
	struct client **buckets;
	size_t nbuckets;
	size_t count;
};

struct server {
	struct config *cfg;
	struct log *log;
	struct event_base *base;
	struct store *store;
	struct evconnlistener **listeners;
	size_t nlisteners;
	struct client_map clients;
	struct topic_tree *subs;
	struct retain_tree *retained;
	struct conn *conns;     /* every open connection */
	struct conn *dirty;     /* connections with output to flush */
	struct event *flush_ev; /* flushes them at the end of the pass */
	struct event *sweep_ev; /* connect timeouts and keep-alive */
	uint8_t *rbuf;          /* the shared read buffer */
	struct conn *closing;   /* connections waiting to be freed */
	struct event *reaper;   /* frees them from the loop */
	struct event *sigs[4];
	uint64_t next_msg_id;
	uint64_t match_gen;
	struct client **route_hits; /* routing scratch, reused per message */
	size_t route_cap;
	bool routing;
	uint64_t conn_gen;
	uint64_t anon_counter;
	struct server_stats stats;
	bool stopping;
};

/* Build the server from cfg (opens the store, loads it, opens listeners).
 * On failure logs why and returns -1. */
int server_init(struct server *srv, struct config *cfg, struct log *lg, struct event_base *base);
/* Stop accepting, publish due wills, commit the last batch, close the
 * store, free everything. */
void server_cleanup(struct server *srv);

/* Known clients. */
struct client *server_get_known_client(struct server *srv, const char *id, size_t len);
void server_add_client(struct server *srv, struct client *c);
void server_remove_client(struct server *srv, struct client *c);

/*
 * Route a message (published by a client, or a will) to every matching
 * subscription and update the retained messages. When anything had to be
 * stored, the deliveries wait behind a gate that opens once the batch
 * commits, and the function returns true: the caller must then defer the
 * publisher's PUBACK/PUBREC the same way (client_send_ordered with defer).
 */
bool server_handle_incoming_publish(struct server *srv, struct message *msg);

/* Queue the retained messages matching filter to c at up to qos. */
void server_enqueue_retained(struct server *srv, struct client *c, const char *filter, size_t len,
			     uint8_t qos, struct gate *gate);

/* Next store message id. */
uint64_t server_next_msg_id(struct server *srv);

/* Schedule freeing of a closed connection from the loop. */
void server_reap(struct server *srv, struct conn *cn);

/* Graceful stop: stop accepting, close every connection (wills due),
 * break the loop. */
void server_stop(struct server *srv);

#endif
