/*
 * The core's side of persistence: finds a backend by name, wraps every
 * vtable call (the only place the core touches a backend), and runs group
 * commit: writes staged during one pass of the event loop are committed as
 * one batch by an event activated when the first write is staged, and
 * completions registered with store_after_commit() run, in the order they
 * were registered, once the batch holding the writes staged before them is
 * durable.
 */
#ifndef CAIRN_STORE_CORE_H
#define CAIRN_STORE_CORE_H

#include <stdbool.h>
#include <stddef.h>

#include "cairn/store.h"

struct event_base;
struct log;
struct store;

/* Called once the writes staged before its registration are durable. */
typedef void (*store_commit_fn)(void *arg);

/* Called when the store turns unhealthy (a commit failed and is being
 * retried with backoff) or healthy again. */
typedef void (*store_health_fn)(void *arg, bool healthy);

/* Staged operations after which a batch is committed early. */
#define STORE_BATCH_LIMIT 4096

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

/* Commit what is staged (waiting for an asynchronous backend), run pending
 * completions, then close the backend and free. */
void store_close(struct store *s);

const char *store_name(const struct store *s);

/* Stream every stored record to v (start-up only). */
int store_load(struct store *s, const struct cairn_store_visitor *v);

/* Staged writes: see struct cairn_store_ops. Each schedules a commit. */
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
void store_set_health_cb(struct store *s, store_health_fn fn, void *arg);

/* Test hook: make the next n commits fail with CAIRN_EIO before reaching
 * the backend. */
void store_inject_commit_failures(struct store *s, int n);

#endif
