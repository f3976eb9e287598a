/*
 * Private to the Redis backend: its store object and what its files
 * call in each other. redis.c fills the vtable and encodes staged writes;
 * sync.c owns the blocking hiredis context used only at start-up (open's
 * connect and schema check, load); link.c owns the asynchronous link
 * through hiredis's libevent adapter that carries every commit afterwards;
 * cluster.c is cluster mode; slots.c routes commands on a Redis Cluster.
 */
#ifndef CAIRN_BACKENDS_REDIS_H
#define CAIRN_BACKENDS_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "../common.h"
#include "cairn/store.h"

struct event;
struct event_base;

/* 2: the MQTT 5.0 fields (cairn-redis(5)); every version 1 key reads as
 * version 2, so open() migrates by rewriting the number alone. */
#define RD_SCHEMA_VERSION 2
#define RD_BACKOFF_MIN_MS 100
#define RD_BACKOFF_MAX_MS 5000
#define RD_PIPELINE       256    /* commands in flight per round trip in load() */
#define RD_SCAN_COUNT     "1000" /* SCAN's COUNT hint */
#define RD_MAX_ARGS       32

/* One command, already in Redis protocol form, so a batch can be sent
 * again unchanged after a failure. */
struct rd_cmd {
	char *buf;
	size_t len;
	/* Cluster mode: the client whose session the command writes (its
	 * claim is checked in the same step), or NULL, and the hold it was
	 * staged under (rd_cluster_hold). */
	char *owner;
	uint64_t hold;
};

/* A Redis Cluster master's asynchronous link (slots.c), or NULL while
 * none is open. */
struct rd_route_link {
	redisAsyncContext *ac;
};

struct rd_batch {
	struct rd_cmd *v;
	size_t n, cap;
};

struct cairn_store {
	/* Configuration, copied at open. */
	char *host;
	int port;
	char *unix_path;
	int db;
	char *password;
	char *prefix;
	int timeout_ms;
	char where[300]; /* "host:port" or "unix:path", for messages */
	struct event_base *base;
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;

	redisContext *sync; /* start-up only: open() and load() (sync.c) */

	/* Shared group leaves and acknowledgements sent and not yet
	 * answered: close waits for them (rd_share_drain). */
	unsigned share_pending;
	/* When a takeover that took nothing may next look for members whose
	 * session is gone (share.c, ms since the epoch). */
	uint64_t share_sweep_ms;

	/*
	 * The asynchronous link (link.c). ac is NULL while the link is down
	 * and the reconnect timer is pending. ac_broken means hiredis reported
	 * the link dead but has not freed the context yet: commit() refuses it.
	 */
	redisAsyncContext *ac;
	bool ac_broken;
	bool link_lost; /* a loss was logged; log the recovery */
	int backoff_ms;
	struct event *reconnect_ev;
	struct event *watchdog_ev; /* reply timeout; also kills a broken link */
	struct event *done_ev;     /* runs done() from the loop */

	struct rd_batch staged;  /* written by the put and delete calls */
	struct rd_batch sending; /* the batch inside the MULTI in flight */
	bool in_flight;          /* from commit() until done() has been called */
	int wait_replicas;       /* redis_wait_replicas: WAIT for them after each commit */
	bool wait_pending;       /* the commit in flight ends at WAIT's reply */
	int wait_status;         /* the batch's own status, until then */
	bool multi_failed;
	int done_status;
	cairn_store_done_fn done;
	void *done_arg;

	/* ---- cluster mode (cluster.c): a store shared by several brokers ---- */
	bool cluster;
	char *node_id;
	int64_t retention_ms;    /* message_retention: how long the log keeps entries */
	uint32_t partitions;     /* cluster_log_partitions: the log's streams */
	uint64_t inc;            /* this start's incarnation, from the store */
	char inc_s[24];          /* inc in decimal */
	const char *stage_owner; /* the session of the write being staged, or NULL */
	struct rd_owners *owners;
	struct rd_msgs *msgs;
	uint64_t appends; /* log appends staged, for their once-only keys */
	size_t routed_at; /* 1 + index in staged of the routed mark; 0: none */
	const struct cairn_cluster_hooks *hooks;
	struct rd_aux **readers; /* XREAD of each partition of the log */
	struct rd_aux *control;  /* SUBSCRIBE to this incarnation's kicks */
	struct event *beat_ev;   /* liveness and the janitor, every second */
	/* Keys every append or mark writes, made once at cluster_start: per
	 * partition p, PREFIX{L:p}:log, :retained and :dd:INC. log_key is
	 * partition 0's, the slot of the node keys on a Redis Cluster. */
	char **log_keys, **retained_keys, **once_keys;
	char *log_key, *mark_key;
	struct cairn_log_pos *read_pos;  /* per partition: the last entry read */
	bool tail_read;                  /* read_pos is the log's end at load() */
	struct cairn_log_pos *claim_cur; /* a claim's cursor, per partition */
	/* Sessions a commit found claimed elsewhere, reported before done(). */
	char **fenced;
	uint64_t *fenced_serial;
	size_t nfenced, fenced_cap;

	/* ---- on a Redis Cluster (slots.c): rcluster, the cluster's slot map
	 * and one asynchronous link per master (links[i] is map->nodes[i]'s).
	 * The node keys then share the log's hash tag, {L:0}. ---- */
	bool rcluster;
	struct rd_slot_map *map;
	struct rd_route_link *links;
	size_t nlinks;
	uint64_t commit_gen;     /* the commit in flight; parts of older ones are ignored */
	size_t parts_pending;    /* its FCALLs still to answer */
	int parts_status;        /* the worst of their results */
	struct rd_part **phase2; /* FCALLs sent once the log's part is in */
	size_t nphase2;
	char *mark_sent;  /* the last mark sent, copied to each master's call */
	char *last_in_id; /* the last inbound QoS 2 id staged (its marker) */
	uint16_t last_in_pid;
	/* While a claim's done() runs: the session whose previous connection's
	 * will the claim took, and the will's name (take_will), borrowed. */
	const char *will_id;
	const char *will_name;
	/* While a kick's hook runs: the session a claim elsewhere left its
	 * previous connection's will to (defer_will), and that connection's
	 * claim epoch (the will's name), borrowed; kick_will_used once the
	 * core's append of it is staged. */
	const char *kick_will_id;
	uint64_t kick_will_ep;
	bool kick_will_used;
	struct rd_janitor *janitor; /* a janitor round in progress */
	char **mtags;               /* rd_route_marks_tag's, by master ("" for none) */
	size_t nmtags;
	bool refreshing;      /* CLUSTER SLOTS is on its way */
	int64_t refreshed_ms; /* when it was last asked (monotonic) */
};

/* ---- redis.c ---- */

/* Hand a formatted line to the broker's log, if it listens. */
void rd_log(const struct cairn_store *st, enum cairn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "PREFIX" kind [":" id], NUL-terminated, in a new allocation. */
char *rd_key(const struct cairn_store *st, const char *kind, const char *id);
/* Strict decimal: digits only, no sign, no spaces, at most max. */
bool rd_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
/* Strict signed decimal: an optional '-', then as rd_parse_u64. */
bool rd_parse_i64(const char *s, size_t len, int64_t *out);
/* Write v in decimal at out (at least 21 bytes) with a NUL; returns the
 * length. */
size_t rd_i64(char *out, int64_t v);
/* The wall clock in ms since the epoch (the log's entry ids, the will
 * and mark times the functions compare). */
int64_t rd_wall_ms(void);
/* Free every command of b, keeping its array. */
void rd_batch_clear(struct rd_batch *b);
/* After a failed commit: the sent batch goes back in front of whatever
 * was staged meanwhile, so the next commit replays both in their order. */
void rd_batch_requeue(struct rd_batch *sent, struct rd_batch *staged);

/* Stage one command (argv/lens, lens NULL: strlen) under st->stage_owner. */
int rd_stage(struct cairn_store *st, int argc, const char **argv, const size_t *lens);
/* A message as one value: "<qos>:<payload>", or "<qos>;<expires_at>;
 * <props_len>;<props><payload>" with an expiry or properties (the retained
 * hash's values). Returns a new buffer, its length in *len. */
char *rd_msg_value(const struct cairn_msg_rec *rec, size_t *len);

/* ---- sync.c: the blocking context ---- */

/* Connect (retrying until redis_connect_timeout), authenticate, select the
 * database and wait for PING. On failure the reason is in err. */
int rd_sync_connect(struct cairn_store *st, char *err, size_t errlen);
void rd_sync_close(struct cairn_store *st);
/* Create or check PREFIX schema_version. */
int rd_sync_check_schema(struct cairn_store *st, char *err, size_t errlen);
/* Warn when the server's persistence settings fall short of want. */
void rd_sync_check_durability(struct cairn_store *st, enum cairn_durability want);
/* One command on the blocking context: the reply (free it) or NULL with *rc. */
redisReply *rd_sync_cmd(struct cairn_store *st, int argc, const char **argv, int *rc);
/* Visit the records of client id in r[0] (an HGETALL or SMEMBERS reply). */
int rd_visit_session(struct cairn_store *st, const char *id, redisReply **r,
		     const struct cairn_store_visitor *v);
int rd_visit_subs(struct cairn_store *st, const char *id, redisReply **r,
		  const struct cairn_store_visitor *v);
int rd_visit_deliveries(struct cairn_store *st, const char *id, redisReply **r,
			const struct cairn_store_visitor *v);
int rd_visit_inflight(struct cairn_store *st, const char *id, redisReply **r,
		      const struct cairn_store_visitor *v);
/* Parse an rd_msg_value into rec's qos, expires_at, props and payload. */
bool rd_retained_parse(const char *s, size_t len, struct cairn_msg_rec *rec);
/* The whole of load(): connects if needed and closes the context after. */
int rd_sync_load(struct cairn_store *st, const struct cairn_store_visitor *v);

/* ---- link.c: the asynchronous link ---- */

/* Create the link's events on st->base. Returns 0 or CAIRN_ENOMEM. */
int rd_link_init(struct cairn_store *st);
/* Open a new link; it connects in the background. */
int rd_link_connect(struct cairn_store *st);
/* Send st->staged as MULTI ... EXEC: CAIRN_EINPROGRESS (done comes from
 * the loop) or CAIRN_EUNAVAILABLE with the batch still staged. */
int rd_link_send(struct cairn_store *st, cairn_store_done_fn done, void *arg);
/* Drop the link and a commit in flight (its done is never called). */
void rd_link_close(struct cairn_store *st);
/* Free the events of rd_link_init. */
void rd_link_cleanup(struct cairn_store *st);
/* Send one command (argv) as the commit of the batch in st->sending, with
 * the watchdog and done() handling of MULTI/EXEC; reply_cb gets the
 * reply and ends with rd_link_finish. Returns as rd_link_send. */
int rd_link_send_one(struct cairn_store *st, int argc, const char **argv, const size_t *lens,
		     void (*reply_cb)(redisAsyncContext *ac, void *r, void *privdata),
		     cairn_store_done_fn done, void *arg);
/* A commit was sent: done() waits for its reply, bounded by the watchdog. */
void rd_link_started(struct cairn_store *st, cairn_store_done_fn done, void *arg);
/* The commit in flight ended with status: keep or requeue the batch and
 * run done() from the loop. */
void rd_link_finish(struct cairn_store *st, int status);
/* The batch's reply came with status: end the commit, or with
 * redis_wait_replicas wait for WAIT's reply, which ends it. */
void rd_link_batch_done(struct cairn_store *st, int status);
/* WAIT's timeout under redis_wait_replicas: redis_connect_timeout, at
 * most 1000 ms (a shortfall is retried with the commit). */
int rd_link_wait_ms(const struct cairn_store *st);
/* The start of a commit's reply: false when nobody waits for it (the store
 * closes, or no commit is in flight); else the watchdog stops, and *status
 * is CAIRN_EUNAVAILABLE when the link went (reply NULL), 0 otherwise. */
bool rd_link_reply(struct cairn_store *st, const redisAsyncContext *ac, const void *reply,
		   int *status);

/* ---- cluster.c: the shared store ---- */

/* Read the cluster keys at open (opts->get): 0, or CAIRN_EINVAL with err. */
int rd_cluster_open(struct cairn_store *st, const struct cairn_store_options *opts, char *err,
		    size_t errlen);
void rd_cluster_free(struct cairn_store *st);
/* The key of a record kind: PREFIX{c:ID}:kind for a session's, PREFIX{L:0}:kind
 * for the log's, in cluster mode (rd_key calls it). NULL: not a cluster key. */
char *rd_cluster_key(const struct cairn_store *st, const char *kind, const char *id);
/* Whether client_id's session is held here (its writes are grouped), and
 * the hold's generation (0: not held). */
bool rd_cluster_owns(const struct cairn_store *st, const char *client_id);
uint64_t rd_cluster_hold(const struct cairn_store *st, const char *client_id);
/* The epoch of the claim client_id's session is held under here (0: not
 * held): a will written with the session is named by it (will_ep). */
uint64_t rd_cluster_epoch(const struct cairn_store *st, const char *client_id);
/* message_put / message_delete in cluster mode: kept here, written with
 * each delivery that references them. */
void rd_cluster_msg_put(struct cairn_store *st, const struct cairn_msg_rec *rec);
void rd_cluster_msg_delete(struct cairn_store *st, uint64_t msg_id);
/* The message value to store with a delivery of msg_id, or NULL. */
const char *rd_cluster_msg_value(const struct cairn_store *st, uint64_t msg_id, size_t *len);
/* A session stored as not connected is parked, in the same commit: no
 * node holds it (its token goes), its will delay and expiry are the
 * janitor's (cluster:wills, cluster:expiry), and the next claim catches it
 * up from its cursor. Staged under st->stage_owner (the session). */
int rd_cluster_park(struct cairn_store *st, const struct cairn_session_rec *rec);
/* commit() in cluster mode. */
int rd_cluster_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg);
/* Report (and forget) the sessions the last commit found fenced. */
void rd_cluster_report_fenced(struct cairn_store *st);
int rd_cluster_start(struct cairn_store *st, const struct cairn_cluster_hooks *h,
		     struct cairn_log_pos *tail, uint64_t *id_base);
int rd_cluster_claim(struct cairn_store *st, const char *client_id, uint64_t serial,
		     cairn_claim_fn done, void *arg);
/* load() in cluster mode: where the log ends, read before the retained
 * messages are, so that none appended in between is missed. */
int rd_cluster_read_tail(struct cairn_store *st);
void rd_cluster_release(struct cairn_store *st, const char *client_id);
/* On a Redis Cluster, the marker of an inbound QoS 2 message, in the log's
 * slot: PREFIX{L:0}:q2:PACKET_ID:CLIENT_ID. */
char *rd_cluster_q2_key(const struct cairn_store *st, const char *client_id, uint32_t part);
/* Stage the removal of an inbound QoS 2 marker (PUBREL) in every
 * partition it may be in. */
int rd_cluster_q2_done(struct cairn_store *st, const char *client_id, const char *pid);
/* The keys of the log's partitions (cluster mode): PREFIX{L:p}:kind. */
char *rd_cluster_part_key(const struct cairn_store *st, const char *kind, uint32_t part);
/* Stage, in the log's slot, the removal of every inbound QoS 2 marker of
 * client_id: its session is gone (deleted, or expired by the janitor), and
 * a marker left by an id that never saw its PUBREL would make the next
 * message under that id look like a resend. */
int rd_cluster_q2_forget(struct cairn_store *st, const char *client_id);
int rd_cluster_log_append(struct cairn_store *st, const char *publisher,
			  const struct cairn_msg_rec *rec);
int rd_cluster_log_routed_p(struct cairn_store *st, const char *client_id,
			    const struct cairn_log_pos *pos);
int rd_cluster_log_read_p(struct cairn_store *st, uint32_t part, struct cairn_log_pos after,
			  size_t max, cairn_log_read_fn done, void *arg);
/* A log position as "ms-seq" at out (48 bytes); returns its length. */
size_t rd_pos_format(char *out, struct cairn_log_pos p);
/* Decode the entries of an XRANGE reply (or one stream of an XREAD's, or
 * an XAUTOCLAIM's) of partition part into a new array; *last is the
 * position of the last, whether decoded or skipped. */
struct cairn_log_entry *rd_entries_parse(struct cairn_store *st, const redisReply *list,
					 uint32_t part, size_t *n, struct cairn_log_pos *last);

/* ---- share.c: shared subscription groups (cluster mode, version 6) ---- */
int rd_share_join(struct cairn_store *st, uint32_t part, const char *group, const char *member,
		  struct cairn_log_pos at, cairn_store_done_fn done, void *arg);
int rd_share_leave(struct cairn_store *st, uint32_t part, const char *group, const char *member);
int rd_share_read(struct cairn_store *st, uint32_t part, const char *group, size_t max,
		  uint64_t claim_idle_ms, cairn_log_read_fn done, void *arg);
int rd_share_ack(struct cairn_store *st, uint32_t part, const char *group,
		 const struct cairn_log_pos *pos, size_t n);
int rd_share_given(struct cairn_store *st, uint32_t part, const char *group, const char *member,
		   struct cairn_log_pos pos);
/* Wait (running the loop, 2 s at most) until the leaves and
 * acknowledgements sent are answered: close calls it before the links go,
 * which would drop them unsent. */
void rd_share_drain(struct cairn_store *st);

/* ---- slots.c: Redis Cluster slots ---- */

#define RD_SLOTS   16384
#define RD_NO_NODE UINT16_MAX

/* One master's address in a slot map. */
struct rd_slot_node {
	char *host;
	int port;
};

/* Which master serves each slot (an index into nodes, or RD_NO_NODE). */
struct rd_slot_map {
	uint16_t owner[RD_SLOTS];
	struct rd_slot_node *nodes;
	size_t nnodes;
};

enum rd_redirect { RD_NO_REDIRECT, RD_MOVED, RD_ASK };

/* CRC16 as Redis Cluster hashes keys (XMODEM). */
uint16_t rd_crc16(const char *buf, size_t len);
/* The log partition of topic among partitions: CRC16 of its first level
 * (up to the first '/'), modulo partitions; 0 when there is one. */
uint32_t rd_log_partition(const char *topic, uint32_t partitions);
/* The slot of a key: CRC16 of its hash tag (the bytes inside the first
 * non-empty {...}) or of the whole key, mod 16384. */
unsigned rd_key_slot(const char *key, size_t len);
/* An error reply's redirection: RD_MOVED or RD_ASK with the slot and the
 * address (host NUL-terminated in hostlen bytes), or RD_NO_REDIRECT. */
enum rd_redirect rd_redirect_parse(const char *err, size_t len, unsigned *slot, char *host,
				   size_t hostlen, int *port);
/* Fill m from a CLUSTER SLOTS reply; a master without a host is from_host.
 * 0, or CAIRN_EIO (m left empty) on a reply not understood. */
int rd_slot_map_parse(const redisReply *r, const char *from_host, struct rd_slot_map *m);
void rd_slot_map_free(struct rd_slot_map *m);
/* Slots no master serves. */
size_t rd_slot_map_unserved(const struct rd_slot_map *m);
/* At open, on the blocking context: 0 on a standalone server; on a Redis
 * Cluster (INFO cluster), in cluster mode, 0 with st->rcluster and the
 * slot map; without cluster mode, CAIRN_EINVAL with its masters in err. */
int rd_slots_check(struct cairn_store *st, char *err, size_t errlen);
/* The slot map's master of slot, or RD_NO_NODE. */
uint16_t rd_slot_master(const struct cairn_store *st, unsigned slot);
/* On the blocking context: after a MOVED or ASK reply, connect to the
 * master it names and run the command there (ASKING first for ASK). The
 * reply, or NULL with *rc. */
redisReply *rd_sync_follow(struct cairn_store *st, redisReply *r, int argc, const char **argv,
			   int *rc);
/* FUNCTION LOAD REPLACE lua on every master of the map (blocking). */
int rd_sync_load_everywhere(struct cairn_store *st, const char *lua);
/* Send a command to the master serving key's slot (connecting its link if
 * need be); a MOVED reply updates the map and resends, an ASK sends
 * ASKING and the command once to the node it names; cb gets the final
 * reply (NULL: the link went). REDIS_OK or REDIS_ERR (cb not called). */
int rd_route_argv(struct cairn_store *st, const char *key, size_t keylen, redisCallbackFn *cb,
		  void *priv, int argc, const char **argv, const size_t *lens);
/* As rd_route_argv, with the command already formatted (buf is copied). */
int rd_route_formatted(struct cairn_store *st, unsigned slot, redisCallbackFn *cb, void *priv,
		       const char *buf, size_t len);
/* As rd_route_formatted, for a commit's part: with redis_wait_replicas,
 * WAIT follows it on its master's link and cb gets its reply only when
 * WAIT counts enough replicas; else an error reply naming the master (a
 * WAIT that came short) or NULL (the link went). */
/* A deep copy of a reply that outlives its callback (hiredis frees the
 * original once the callback returns); freeReplyObject() frees it. */
redisReply *rd_reply_dup(const redisReply *r);
int rd_route_commit(struct cairn_store *st, unsigned slot, redisCallbackFn *cb, void *priv,
		    const char *buf, size_t len);
/* Read the slot map again (CLUSTER SLOTS) from a link that is up other
 * than failed (NULL: any), at most once a second. */
void rd_route_refresh(struct cairn_store *st, const redisAsyncContext *failed);
/* The hash tag ("m:T") of the first T whose slot master m serves (the
 * key of the node marks there), or NULL when m serves no slot; cached
 * until the map changes (rd_route_map_changed). */
const char *rd_route_marks_tag(struct cairn_store *st, uint16_t m);
void rd_route_map_changed(struct cairn_store *st);
/* Apply a MOVED error to the map; false if err is no MOVED. */
bool rd_route_moved(struct cairn_store *st, const char *err, size_t len);
/* The address of the master of key's slot (for the log reader), or NULL. */
const struct rd_slot_node *rd_route_node(const struct cairn_store *st, const char *key);
/* Drop every master link (their callbacks get NULL replies). */
void rd_route_drop_all(struct cairn_store *st);
void rd_route_free(struct cairn_store *st);

#endif
