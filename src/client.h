/*
 * The session (MQTT's "client"): one per client id, connected or not. It
 * owns its subscriptions, the queue of messages owed to it and the
 * in-flight window, and pumps them into its connection; protocol.c drives
 * it from the packets the connection reads.
 */
#ifndef CAIRN_CLIENT_H
#define CAIRN_CLIENT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "qos.h"

struct security;
struct server;
struct message;
struct gate;
struct event;
struct sockaddr;
struct share_member;

/* One message owed to one session. */
struct delivery {
	struct delivery *prev, *next;
	struct delivery *pid_next; /* in the window's packet id index */
	struct message *msg;
	struct gate *gate;  /* NULL: may go out at once */
	uint64_t seq;       /* store sequence; 0 when not stored */
	uint64_t acl_stamp; /* client_acl_stamp() when last found readable; 0: never */
	uint16_t pid;       /* 0 until it enters the in-flight window */
	uint8_t qos;
	uint8_t state; /* enum cairn_delivery_state */
	bool retain;
	bool dup;     /* the next send of the PUBLISH carries DUP=1 */
	bool written; /* in the socket's output since the last connect */
};

struct dqueue {
	struct delivery *head, *tail;
	uint32_t count;
};

/* One subscription, in its session's hash table by filter. */
struct sub {
	struct sub *hnext;
	char *filter;
	uint32_t hash;
	uint16_t len;
	uint8_t qos;
};

/* A session's subscriptions: a chained hash table, so adding, replacing
 * or removing one filter costs the same with 10 or 100,000 of them. */
struct sub_table {
	struct sub **slots;
	uint32_t cap; /* a power of two, or 0 before the first */
	uint32_t count;
};

/* The in-flight window indexed by packet id (chained buckets), so an
 * acknowledgement finds its delivery, and a new delivery a free id, at the
 * same cost in a window of 20 or 65,535. */
struct pid_index {
	struct delivery **slots;
	uint32_t cap; /* a power of two, at least the window's size, or 0 */
};

struct client {
	struct server *srv;
	unsigned refs;
	char *id;
	size_t id_len;
	char *username;             /* NULL: the client gave none */
	const struct security *sec; /* of its last connection; NULL: none since start */
	uint64_t acl_stamp;         /* names (identity, ACL) for delivery checks */
	uint32_t acl_gen_seen;      /* sec->acl_gen when acl_stamp was taken */
	bool clean;                 /* the session ends with its connection */
	bool dead;                  /* discarded; kept alive only by references */
	bool stored;                /* a session record exists in the store */
	struct conn *conn;          /* NULL while offline */
	struct client *map_next;
	struct sub_table subs;
	struct dqueue inflight;  /* pid assigned, in send order */
	struct pid_index by_pid; /* inflight by packet id */
	struct dqueue queued;    /* waiting for the window */
	uint32_t unwritten;      /* in-flight deliveries not yet written */
	uint32_t queued_qos0;    /* QoS 0 deliveries in queued */
	uint64_t queued_bytes;
	uint16_t next_pid;
	uint64_t next_seq;
	struct qos_in in_qos2; /* inbound QoS 2 ids awaiting PUBREL */
	unsigned deferred;     /* packets to this client waiting for a commit */
	uint64_t match_gen;    /* routing: de-duplicates overlapping matches */
	uint8_t match_qos;
	struct message *will;
	/* Messages dropped because the queue was full: in all (restored with
	 * the session), as last logged, as last stored, and when last logged
	 * (ms on the event base's clock). */
	uint64_t dropped, dropped_logged, dropped_stored, drop_logged_ms;
	/* Its memberships of shared subscription groups (share.c links
	 * them; they follow its "$share/..." entries in subs). */
	struct share_member *shares;
};

struct conn;

/* cn now carries c (c becomes cn's owner and holds a reference). */
void client_attach(struct client *c, struct conn *cn);

/* The connection that took c over logged in as username (owned, may be
 * NULL) under sec: what c may read is decided anew for every message it
 * holds, whoever was allowed to read it before. */
void client_set_identity(struct client *c, char *username, const struct security *sec);
/* cn is closing: detach it from c, publishing the will when will_due, and
 * end a clean session. Drops the reference client_attach took. */
void client_detach(struct client *c, struct conn *cn, bool will_due);

struct client *client_new(struct server *srv, const char *id, size_t id_len, bool clean);
struct client *client_ref(struct client *c);
void client_unref(struct client *c);

bool client_is_connected(const struct client *c);

/* Give c a copy of msg at qos (already min(published, granted)). gate, if
 * not NULL, holds it back until the batch storing it commits. */
void client_deliver(struct client *c, struct message *msg, uint8_t qos, bool retain,
		    struct gate *gate);

/* Send what the window and the socket allow. */
void client_pump(struct client *c);

/* Send bytes to c after every packet to c that already waits for a commit,
 * or once the current batch commits when defer is set. Keeps PUBACKs and
 * PUBRECs in the order their PUBLISHes arrived. */
void client_send_ordered(struct client *c, const uint8_t *bytes, size_t len, bool defer);
/* The same for a two-byte-id acknowledgement of type. */
void client_send_ack(struct client *c, enum codec_type type, uint16_t pid, bool defer);

/* A PUBACK, PUBREC or PUBCOMP for a message c has in flight. */
void client_handle_ack(struct client *c, uint16_t pid, enum qos_out_event event);

/* Add or replace a subscription; returns the granted QoS, or
 * CODEC_SUBACK_FAILURE when a new filter would pass max_subscriptions.
 * Stages the store write for a persistent session. */
uint8_t client_subscribe(struct client *c, const char *filter, size_t len, uint8_t qos);
/* The in-memory half of client_subscribe, without the limit (restore
 * brings back what was granted before). */
struct sub *client_add_sub(struct client *c, const char *filter, size_t len, uint8_t qos);

/* Remove it; returns true if it existed. */
bool client_unsubscribe(struct client *c, const char *filter, size_t len);

/* End the session: drop subscriptions and queues, delete it from the
 * store, forget it in the server. */
void client_discard(struct client *c);
/* Take c's subscriptions out of the router (they stay in c->subs). */
void client_leave_router(struct client *c);

/* Write the session record (persistent sessions). */
void client_store_session(struct client *c, bool connected);
/* Store the session record again if its drop count changed since it was
 * last stored (at shutdown). */
void client_store_drops(struct client *c);

/* Start-up restore helpers. */
void client_restore_delivery(struct client *c, struct message *msg, uint64_t seq, uint16_t pid,
			     uint8_t qos, uint8_t state);
void client_restore_inflight_in(struct client *c, uint16_t pid);

/* Publish the will if one is set, then clear it. */
void client_handle_last_will(struct client *c);

#endif
