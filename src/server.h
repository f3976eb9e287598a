/*
 * The server object: the broker's life cycle (start-up, signals, shutdown),
 * the known sessions by client id, and the objects every session shares:
 * the connection set, the router and the store.
 */
#ifndef CAIRN_SERVER_H
#define CAIRN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "dpool.h"
#include "log.h"
#include "security.h"

struct client;
struct cluster;
struct conn_set;
struct message;
struct event;
struct event_base;
struct http_server;
struct sys_pub;
struct router;
struct service;
struct store;

/* Counters of the broker: each is a plain increment where it happens
 * (metrics.c reads them at scrape time). */
struct server_stats {
	uint64_t msgs_received_qos[3]; /* PUBLISHes and wills routed, by published QoS */
	uint64_t msgs_sent_qos[3];     /* PUBLISHes written, by QoS sent */
	uint64_t payload_in_qos[3];    /* their payload bytes */
	uint64_t payload_out_qos[3];
	uint64_t drop_queue_full;  /* deliveries dropped: the session's queue was full */
	uint64_t drop_too_large;   /* larger than the client's maximum packet size */
	uint64_t drop_expired;     /* the message expiry interval passed first */
	uint64_t drop_acl;         /* the ACL did not let the session read it */
	uint64_t sessions_expired; /* ended by their session expiry interval */
	uint64_t clients_connected;
	uint64_t auth_failures; /* CONNECTs refused with CONNACK 4 or 5 by security_login */
	uint64_t acl_denied;    /* PUBLISHes, filters, deliveries and wills the ACL refused */
	/* Cluster mode. */
	uint64_t cluster_claims;         /* sessions claimed by CONNECTs here */
	uint64_t cluster_kicked;         /* sessions another node claimed from here */
	uint64_t cluster_fenced;         /* ... found out at a commit (the kick was lost) */
	uint64_t cluster_catchups;       /* sessions caught up with the log */
	uint64_t cluster_entries;        /* log entries routed here */
	uint64_t cluster_cursor_trimmed; /* catch-ups from before the log's retention */
	/* Cluster mode, shared subscription groups (cluster_share.c). */
	uint64_t cluster_share_delivered;  /* entries given to a member here */
	uint64_t cluster_share_taken_over; /* ... read from a reader that left them */
	uint64_t cluster_share_acked;      /* ... acknowledged to the store */
};

/* The totals, derived from the counts by QoS and by reason. Dropped is
 * what Mosquitto counts as dropped: queue full and too large for the
 * client (expired and ACL-refused deliveries have counters of their own). */
static inline uint64_t server_msgs_received(const struct server_stats *s)
{
	return s->msgs_received_qos[0] + s->msgs_received_qos[1] + s->msgs_received_qos[2];
}

static inline uint64_t server_msgs_sent(const struct server_stats *s)
{
	return s->msgs_sent_qos[0] + s->msgs_sent_qos[1] + s->msgs_sent_qos[2];
}

static inline uint64_t server_msgs_dropped(const struct server_stats *s)
{
	return s->drop_queue_full + s->drop_too_large;
}

/* The known sessions, by client id. */
struct server_client_map {
	struct client **buckets;
	size_t nbuckets;
	size_t count;
};

struct server {
	struct config *cfg;
	struct log *log;
	struct event_base *base;
	struct store *store;
	struct conn_set *conns;
	struct router *router;
	struct security_set security; /* who may log in, per listener or broker-wide */
	struct server_client_map clients;
	struct event *sigs[4];
	uint64_t next_msg_id;
	uint64_t anon_counter; /* for assigned client ids */
	struct server_stats stats;
	struct dpool deliveries;  /* every session's deliveries (client.c) */
	uint64_t started_ns;      /* store_now_ns() at start (uptime) */
	struct http_server *http; /* the HTTP listener; NULL when off */
	struct sys_pub *sys;      /* the $SYS publisher; NULL when off */
	struct cluster *cluster;  /* cluster mode; NULL when off */
	/* Cluster mode: shared subscriptions across the nodes (cluster_share.c);
	 * NULL when off or when the store cannot share groups. */
	struct cluster_shares *cluster_shares;
	bool stopping;
	struct service *service; /* the service manager's notifications; NULL: none */
};

/* Build the server from cfg: open the store, restore it, open the
 * listeners. On failure logs why and returns -1 (server_cleanup still
 * frees what was built). */
int server_init(struct server *srv, struct config *cfg, struct log *lg, struct event_base *base);
/* Close every connection, commit the last batch, close the store, free
 * everything. */
void server_cleanup(struct server *srv);

/* Known clients. The map holds a reference to each. */
struct client *server_get_known_client(struct server *srv, const char *id, size_t len);
void server_add_client(struct server *srv, struct client *c);
void server_remove_client(struct server *srv, struct client *c);

/* Publish m, from publisher (NULL: the broker): routed to the sessions
 * here, or in cluster mode appended to the shared log, from which every
 * node routes it. Returns true when a store write was staged. */
bool server_publish(struct server *srv, struct message *m, const struct client *publisher);

/* Clear topic's retained message (the admin API): here, or in cluster
 * mode on every node, as an empty retained message appended to the log
 * (which current subscribers receive, as they would a client's). False
 * when the topic has none. */
bool server_clear_retained(struct server *srv, const char *topic, size_t len);

/* Next store message id. */
uint64_t server_next_msg_id(struct server *srv);

/* Graceful stop: stop accepting, close every connection (wills due),
 * break the loop. */
void server_stop(struct server *srv);

#endif
