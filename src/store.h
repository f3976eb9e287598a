/*
 * The core's side of persistence: finds a backend by name, wraps every
 * vtable call (the only place the core touches a backend), and runs group
 * commit: writes staged during one pass of the event loop are committed as
 * one batch by an event activated when the first write is staged, and
 * completions registered with store_after_commit() run, in the order they
 * were registered, once the batch holding the writes staged before them is
 * durable.
 *
 * A staging call cannot lose a write: when the backend refuses one, the
 * store keeps it, fails the batch (the store turns unhealthy and retries
 * with backoff, as after a failed commit) and stages it again, in order,
 * before the retried commit; no completion registered after it runs until
 * a commit holding it has succeeded.
 */
#ifndef CAIRN_STORE_CORE_H
#define CAIRN_STORE_CORE_H

#include <stdbool.h>
#include <stddef.h>

#include "cairn/store.h"

struct event_base;
struct log;
struct store;

/* Called once the writes staged before its registration are durable
 * (durable true), or, at store_close, when they never became durable
 * (durable false): the owner then releases what it held for the
 * completion and does nothing it promised. */
typedef void (*store_commit_fn)(void *arg, bool durable);

/* Called when the store turns unhealthy (a commit failed and is being
 * retried with backoff) or healthy again. */
typedef void (*store_health_fn)(void *arg, bool healthy);

/* Staged operations after which a batch is committed early. */
#define STORE_BATCH_LIMIT 4096

/* Writes staged behind a commit that has not finished past which the
 * store is backlogged (store_backlogged). About 100 bytes each: a few MiB. */
#define STORE_BACKLOG_LIMIT 32768

/* The CAIRN_STORE_* capability bits of ops (0 for a version 1 vtable). */
unsigned int store_ops_flags(const struct cairn_store_ops *ops);

/* Look up the compiled-in backend called name (NULL if none). */
const struct cairn_store_ops *store_find_backend(const char *name);

/* Write the compiled-in backend names, separated by ", ", into buf. */
void store_backend_names(char *buf, size_t len);

/*
 * Open backend `name` with opts. The commit event is created on base at
 * the priority given (the connections' priority). lg may be NULL. On error
 * returns a CAIRN_E* code and a reason in err (an unknown name lists the
 * compiled-in names).
 */
int store_open(struct store **out, const char *name, const struct cairn_store_options *opts,
	       struct event_base *base, int priority, struct log *lg, char *err, size_t errlen);

/* store_open with a backend that is not in the registry (an out-of-tree
 * backend, a test's wrapper). ops is borrowed for the life of the store.
 * Returns CAIRN_EINVAL when a required slot is NULL. */
int store_open_ops(struct store **out, const struct cairn_store_ops *ops,
		   const struct cairn_store_options *opts, struct event_base *base, int priority,
		   struct log *lg, char *err, size_t errlen);

/* Commit what is staged (waiting for an asynchronous backend), run pending
 * completions, then close the backend and free. */
void store_close(struct store *s);

const char *store_name(const struct store *s);

/* Stream every stored record to v (start-up only). */
int store_load(struct store *s, const struct cairn_store_visitor *v);

/* Staged writes: see struct cairn_store_ops. Each schedules a commit and
 * returns 0: from here on the write is the store's, even when the backend
 * refused to stage it (see the top of this file). The int stays so that a
 * caller need not change if a write can one day be refused for good. */
int store_session_put(struct store *s, const struct cairn_session_rec *rec);
int store_session_delete(struct store *s, const char *client_id);
int store_sub_put(struct store *s, const struct cairn_sub_rec *rec);
int store_sub_delete(struct store *s, const char *client_id, const char *filter);
int store_message_put(struct store *s, const struct cairn_msg_rec *rec);
int store_message_delete(struct store *s, uint64_t msg_id);
int store_delivery_put(struct store *s, const struct cairn_delivery_rec *rec);
int store_delivery_delete(struct store *s, const char *client_id, uint64_t seq);
int store_inflight_in_put(struct store *s, const struct cairn_inflight_in_rec *rec);
int store_inflight_in_delete(struct store *s, const char *client_id, uint16_t packet_id);
int store_retained_put(struct store *s, const struct cairn_msg_rec *rec);
int store_retained_delete(struct store *s, const char *topic);

/* The pause, in microseconds, a commit start may make after a large
 * asynchronous commit to gather the clients' answers to it (group commit
 * across windows; see store.c) is as long as that commit took, within
 * [min_us, max_us] (default 0 and 2,000); max_us 0 turns gathering off. */
void store_set_gather(struct store *s, uint64_t min_us, uint64_t max_us);
/* True while a commit start may wait to gather writes (until the next
 * commit event, which clears a window that has run out): a reply held for
 * the store now waits for the client's next packets, which a client with
 * Nagle on holds until the kernel acknowledges this one. */
bool store_gathering(const struct store *s);

/* Between store_unit(s, true) and store_unit(s, false) the writes staged
 * go to the backend in one batch: STORE_BATCH_LIMIT does not split them
 * (cluster mode: a batch of log entries' deliveries and the mark that
 * speaks for them). */
void store_unit(struct store *s, bool begin);

/* A shared store (cluster mode): see versions 4 and 5 of struct
 * cairn_store_ops. store_can_share() says whether the backend has the
 * slots (version 5: the log in partitions); the others may be called only
 * then. store_log_append and store_log_routed are staged writes like the
 * ones above. */
bool store_can_share(const struct store *s);
int store_cluster_start(struct store *s, const struct cairn_cluster_hooks *h,
			struct cairn_log_pos *tail, uint64_t *id_base);
int store_claim(struct store *s, const char *client_id, uint64_t serial, cairn_claim_fn done,
		void *arg);
void store_release(struct store *s, const char *client_id);
int store_log_append(struct store *s, const char *publisher, const struct cairn_msg_rec *rec);
/* pos: n positions, one per partition (n at most CAIRN_LOG_PARTITIONS_MAX);
 * NULL removes client_id's cursor. */
int store_log_routed(struct store *s, const char *client_id, const struct cairn_log_pos *pos,
		     size_t n);
int store_log_read(struct store *s, uint32_t part, struct cairn_log_pos after, size_t max,
		   cairn_log_read_fn done, void *arg);

/* Version 6 (cluster mode): the shared store reads shared subscription
 * groups for the nodes (cluster_share.c); the share_* slots of cairn/store.h
 * say what each call does. */
bool store_can_share_groups(const struct store *s);
int store_share_join(struct store *s, uint32_t part, const char *group, const char *member,
		     struct cairn_log_pos at, cairn_store_done_fn done, void *arg);
int store_share_leave(struct store *s, uint32_t part, const char *group, const char *member);
int store_share_read(struct store *s, uint32_t part, const char *group, size_t max,
		     uint64_t claim_idle_ms, cairn_log_read_fn done, void *arg);
int store_share_ack(struct store *s, uint32_t part, const char *group,
		    const struct cairn_log_pos *pos, size_t n);
/* Version 7: whether the store gives each entry of a group out once
 * (share_given); store_share_given stages the record that entry pos went
 * to member, with the delivery (a no-op, 0, below version 7). */
bool store_share_once(const struct store *s);
int store_share_given(struct store *s, uint32_t part, const char *group, const char *member,
		      struct cairn_log_pos pos);

/* Run fn(arg) once everything staged so far is durable. Never calls fn
 * from inside this call. */
void store_after_commit(struct store *s, store_commit_fn fn, void *arg);

/* Forget every pending completion whose arg is arg (the object is going
 * away). */
void store_cancel(struct store *s, void *arg);

/* Commit now and wait for it (shutdown). Returns 0 or a CAIRN_E* code. */
int store_flush(struct store *s);

/* False while commits are failing and being retried. */
bool store_is_healthy(const struct store *s);

/*
 * True while the batch being staged holds STORE_BACKLOG_LIMIT writes or
 * more and cannot be committed yet (a commit is in flight or being
 * retried): writes are arriving faster than the backend retires them, and
 * each waits in memory until it does. A producer of writes that can wait
 * (the pump that moves a stored queue into its window, whose sends bring
 * the deliveries' puts and deletes) waits, with store_after_inflight, for
 * the commit in flight to end; one that cannot (a PUBACK's delete) stages as
 * before. This bounds a drain's staged writes by the limit plus what the
 * windows in flight can bring, instead of the size of the queues.
 */
bool store_backlogged(const struct store *s);

/* Run fn(arg) once the commit in flight is done (durable true), or, when
 * none is, as store_after_commit. A backlogged producer waits with it: the
 * batch staged meanwhile starts committing as the one in flight ends, and
 * the producer stages the next one while it does. Never calls fn from
 * inside this call. */
void store_after_inflight(struct store *s, store_commit_fn fn, void *arg);

/* Writes waiting in the core for the backend (refused, or staged while the
 * store was unhealthy), and the session records superseded among them
 * since the store opened. */
size_t store_held_writes(const struct store *s);
uint64_t store_coalesced_writes(const struct store *s);

void store_set_health_cb(struct store *s, store_health_fn fn, void *arg);

/* Commit latency (seconds) and batch size (writes) histogram bounds. */
#define STORE_LAT_BUCKETS   12
#define STORE_BATCH_BUCKETS 10
extern const double store_lat_bounds[STORE_LAT_BUCKETS];
extern const double store_batch_bounds[STORE_BATCH_BUCKETS];

/* Measured once per commit, never per write. A histogram's buckets count
 * the observations at or below each bound (not cumulative: the last slot
 * is above every bound). */
struct store_stats {
	uint64_t commits;         /* commits that reached the backend and succeeded */
	uint64_t commits_failed;  /* commits (or stagings) that failed */
	uint64_t commits_retried; /* commits started while the store was unhealthy */
	uint64_t gathers;         /* starts that waited for the clients' answers (store_gather) */
	uint64_t gather_timeouts; /* of which the answers did not come in time */
	uint64_t lat[STORE_LAT_BUCKETS + 1];
	double lat_sum;
	uint64_t batch[STORE_BATCH_BUCKETS + 1];
	uint64_t batch_sum;
	uint64_t last_ok_ns; /* CLOCK_MONOTONIC of the last good commit (the open before one) */
};

const struct store_stats *store_get_stats(const struct store *s);
/* CLOCK_MONOTONIC in ns (for store_stats.last_ok_ns). */
uint64_t store_now_ns(void);
/* How long the commit in flight has been running (ns); 0 when none is. */
uint64_t store_commit_running_ns(const struct store *s);

#ifdef CAIRN_FAULT_INJECTION
/* Test-time fault injection, compiled only with --enable-fault-injection
 * (which defines CAIRN_FAULT_INJECTION for every file of the build). */

/* The backend calls a failure can be injected into. The staging calls come
 * in the order of the vtable. */
enum store_op {
	STORE_OP_LOAD,
	STORE_OP_SESSION_PUT,
	STORE_OP_SESSION_DELETE,
	STORE_OP_SUB_PUT,
	STORE_OP_SUB_DELETE,
	STORE_OP_MESSAGE_PUT,
	STORE_OP_MESSAGE_DELETE,
	STORE_OP_DELIVERY_PUT,
	STORE_OP_DELIVERY_DELETE,
	STORE_OP_INFLIGHT_IN_PUT,
	STORE_OP_INFLIGHT_IN_DELETE,
	STORE_OP_RETAINED_PUT,
	STORE_OP_RETAINED_DELETE,
	STORE_OP_LOG_APPEND,
	STORE_OP_LOG_ROUTED,
	STORE_OP_SHARE_GIVEN,
	STORE_OP_COMMIT,
	STORE_OP_COUNT
};

/* Let the next `after` calls of op through, then make the `n` after them
 * return err (a negative CAIRN_E* code) without reaching the backend. A
 * failed staging call is handled as a backend's refusal is: the write is
 * kept and staged again before the retried commit, which also counts. A
 * new call replaces what is left of the previous one for op. */
void store_inject_failures(struct store *s, enum store_op op, int after, int n, int err);

/* store_inject_failures(s, STORE_OP_COMMIT, 0, n, CAIRN_EIO). */
void store_inject_commit_failures(struct store *s, int n);
#endif

#endif
