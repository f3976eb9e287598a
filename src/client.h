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
#include "pidmap.h"
#include "qos.h"

struct security;
struct server;
struct message;
struct gate;
struct event;
struct sockaddr;
struct share_member;

/* One message owed to one session: a block of the server's delivery pool
 * (dpool.c), 48 bytes, as a million queued messages are a million of them.
 * It links to its neighbours in its queue or window by pool index. */
struct delivery {
	uint32_t prev, next; /* dpool indexes; 0: none */
	struct message *msg;
	struct gate *gate; /* NULL: may go out at once */
	uint64_t seq;      /* store sequence; 0 when not stored */
	/* The 5.0 subscription identifiers sent with it: n_sub_ids of them,
	 * the one in ids.one, or several in ids.many (owned). */
	union {
		uint32_t one;
		uint32_t *many;
	} ids;
	uint16_t pid;       /* 0 until it enters the in-flight window */
	uint16_t n_sub_ids; /* 5.0 subscription identifiers sent with it */
	uint16_t acl_stamp; /* the session's acl_stamp when last found readable; 0: never */
	uint8_t state;      /* enum cairn_delivery_state */
	uint8_t qos : 2;
	bool retain : 1;
	bool dup : 1;     /* the next send of the PUBLISH carries DUP=1 */
	bool written : 1; /* in the socket's output since the last connect */
};

struct dqueue {
	struct delivery *head, *tail;
	uint32_t count;
};

/* One subscription, in its session's hash table by filter. The router's
 * trie holds it (not the session), so a match brings its identifier. */
struct sub {
	struct sub *hnext;
	struct client *owner;
	char *filter;
	uint32_t hash;
	uint16_t len;
	uint8_t qos;
	uint8_t options; /* 5.0 options other than the QoS (CAIRN_SUB_*) */
	uint32_t sub_id; /* 5.0 subscription identifier; 0: none */
	/* Cluster mode: it matches the shared log's entries after this
	 * position only (cairn_sub_rec's since). */
	uint64_t since_ms, since_seq;
};

/* A session's subscriptions: a chained hash table, so adding, replacing
 * or removing one filter costs the same with 10 or 100,000 of them. */
struct sub_table {
	struct sub **slots;
	uint32_t cap; /* a power of two, or 0 before the first */
	uint32_t count;
};

struct client {
	struct server *srv;
	unsigned refs;
	char *id;
	size_t id_len;
	char *username;             /* NULL: the client gave none */
	const struct security *sec; /* of its last connection; NULL: none since start */
	uint16_t acl_stamp;         /* names (identity, ACL) for delivery checks; 0: none */
	uint32_t acl_gen_seen;      /* sec->acl_gen when acl_stamp was taken */
	bool clean;                 /* the session ends with its connection */
	bool dead;                  /* discarded; kept alive only by references */
	bool stored;                /* a session record exists in the store */
	struct conn *conn;          /* NULL while offline */
	struct client *map_next;
	struct sub_table subs;
	struct dqueue inflight; /* pid assigned, in send order */
	struct pid_map by_pid;  /* inflight by packet id */
	struct dqueue queued;   /* waiting for the window */
	uint32_t unwritten;     /* in-flight deliveries not yet written */
	uint32_t queued_qos0;   /* QoS 0 deliveries in queued */
	uint64_t queued_bytes;
	uint16_t next_pid;
	uint64_t next_seq;
	struct qos_in in_qos2; /* inbound QoS 2 ids awaiting PUBREL */
	unsigned deferred;     /* packets to this client waiting for a commit */
	bool store_wait;       /* its pump waits for a backlogged store's commit */
	uint64_t match_gen;    /* routing: de-duplicates overlapping matches */
	uint8_t match_qos;
	bool match_rap;         /* routing: a matching filter has retain as published */
	uint32_t match_n_ids;   /* routing: the identifiers of the matching filters */
	uint32_t match_ids_cap; /* (match_ids is reused from one message to the next) */
	uint32_t *match_ids;
	struct message *will;
	/* Messages dropped because the queue was full: in all (restored with
	 * the session), as last logged, as last stored, and when last logged
	 * (ms on the event base's clock). */
	uint64_t dropped, dropped_logged, dropped_stored, drop_logged_ms;
	/* Its memberships of shared subscription groups (share.c links
	 * them; they follow its "$share/..." entries in subs). */
	struct share_member *shares;

	/* ---- what the last CONNECT set (MQTT 5.0) ---- */
	uint8_t version;                  /* its protocol level: 3, 4 or 5 */
	bool problem_info;                /* request problem information */
	uint16_t recv_max;                /* the client's receive maximum (caps the window) */
	uint32_t max_packet;              /* the client's maximum packet size; 0: none */
	uint16_t alias_out_max;           /* topic aliases the broker may assign it */
	struct client_aliases *alias_out; /* topics given an alias; NULL until the first */
	char **alias_in;                  /* topics of the aliases it set; NULL until the first */
	uint32_t in_unacked;              /* its QoS 1/2 PUBLISHes not yet answered (receive max) */
	/* Messages not sent because they exceed max_packet: in all, as last
	 * logged, and when (ms). */
	uint64_t too_large, too_large_logged, too_large_ms;

	/* ---- session expiry and the delayed will (MQTT 5.0) ---- */
	uint32_t expiry;     /* session expiry interval (s); CAIRN_EXPIRY_NEVER */
	int64_t expires_at;  /* offline: when the session ends (wall ms); 0: never */
	uint32_t will_delay; /* will delay interval (s) */
	int64_t will_at;     /* a delayed will is due then (wall ms); 0: none */
	struct event *timer; /* fires at the earlier of expires_at and will_at */

	/* ---- cluster mode ---- */
	uint64_t cluster_serial; /* the claim its session is held under */
	bool cluster_lost;       /* another node took the session from this one */
	/* Entries of the shared log up to here reach it from its stored queue
	 * or its catch-up, never from live routing (UINT64_MAX: catching up). */
	uint64_t floor_ms, floor_seq;
	bool floor_pending; /* the store's cursor of it waits for the floor */
	bool taking_over;   /* a new connection here takes it: not parked */
};

/* Whether the log entry at (ms, seq) is past c's floor (live routing). */
static inline bool client_log_after(const struct client *c, uint64_t ms, uint64_t seq)
{
	return ms > c->floor_ms || (ms == c->floor_ms && seq > c->floor_seq);
}

/* The delivery after d in its queue or window, or NULL. */
struct delivery *client_delivery_next(const struct client *c, const struct delivery *d);

/* Drop the session from memory without a store write: another node holds
 * it now (cluster mode). Its connection, if any, must be gone. */
void client_forget(struct client *c);

/* The current time on the wall clock, in ms (deadlines kept in the store). */
int64_t client_wall_ms(const struct client *c);

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

/* Give c a copy of msg at qos (already min(published, granted)), with the
 * n_ids 5.0 subscription identifiers of the subscriptions it goes out for
 * (copied; ignored for a 3.1.1 session). gate, if not NULL, holds it back
 * until the batch storing it commits. */
int client_deliver(struct client *c, struct message *msg, uint8_t qos, bool retain,
		   const uint32_t *ids, uint32_t n_ids, struct gate *gate);
/* client_deliver's results: queued or sent, dropped because the queue was
 * full (counted), or not for c (dead, the ACL, QoS 0 offline, expired). */
enum { CLIENT_DELIVERED = 0, CLIENT_DROPPED_FULL = 1, CLIENT_SKIPPED = 2 };

/* Send what the window and the socket allow. */
void client_pump(struct client *c);

/* Send bytes to c after every packet to c that already waits for a commit,
 * or once the current batch commits when defer is set. Keeps PUBACKs and
 * PUBRECs in the order their PUBLISHes arrived. */
void client_send_ordered(struct client *c, const uint8_t *bytes, size_t len, bool defer);
/* The same for a two-byte-id acknowledgement of type. */
void client_send_ack(struct client *c, enum codec_type type, uint16_t pid, bool defer);
/* The same with a 5.0 reason code (0: success; a 3.1.1 client gets the
 * plain acknowledgement). A PUBACK, a PUBCOMP or a failing PUBREC ends one
 * of the client's PUBLISHes counted against the broker's receive maximum
 * once it is written. */
void client_send_ack_rc(struct client *c, enum codec_type type, uint16_t pid, uint8_t reason,
			bool defer);

/* A PUBACK, PUBREC or PUBCOMP for a message c has in flight. */
void client_handle_ack(struct client *c, uint16_t pid, enum qos_out_event event);

/* A 5.0 PUBREC with a failure reason: the QoS 2 delivery ends. */
void client_handle_pubrec_error(struct client *c, uint16_t pid);

/* Add or replace a subscription with its options (the SUBSCRIBE options
 * byte: QoS in bits 0-1, CAIRN_SUB_* above) and 5.0 identifier (0: none);
 * returns the granted QoS, or CODEC_SUBACK_FAILURE when a new filter would
 * pass max_subscriptions. *existed says whether the filter was subscribed
 * before (retain handling 1). Stages the store write for a persistent
 * session. */
uint8_t client_subscribe_opts(struct client *c, const char *filter, size_t len, uint8_t opts,
			      uint32_t sub_id, bool *existed);
/* The in-memory half of client_subscribe_opts, without the limit (restore
 * brings back what was granted before). */
struct sub *client_add_sub_opts(struct client *c, const char *filter, size_t len, uint8_t opts,
				uint32_t sub_id);

/* c's subscription to filter, or NULL. */
struct sub *client_sub_get(struct client *c, const char *filter, size_t len);
/* The subscription identifier of c's subscription to filter (0: none, or
 * no such subscription). */
uint32_t client_sub_id(struct client *c, const char *filter, size_t len);

/* Remove it; returns true if it existed. */
bool client_unsubscribe(struct client *c, const char *filter, size_t len);

/* End the session: publish a will still waiting for its delay, drop
 * subscriptions and queues, delete it from the store, forget it in the
 * server. */
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
/* The 5.0 parts of a restored delivery (the last one restored). */
void client_restore_delivery5(struct client *c, bool retain, const uint32_t *sub_ids, uint32_t n);

/* Arm (or disarm) the session's timer for the earlier of expires_at and
 * will_at; when it fires the delayed will is published and an expired
 * session discarded. */
void client_arm_timer(struct client *c);
/* The session's connection is gone: start its expiry and will delay. */
void client_session_offline(struct client *c, bool will_due);
void client_restore_inflight_in(struct client *c, uint16_t pid);

/* Publish the will if one is set, then clear it. */
void client_handle_last_will(struct client *c);

#endif
