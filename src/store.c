/*
 * The core's only door to persistence: the backend registry, the thin
 * wrappers that check the vtable contract, and group commit (one batch per
 * event-loop pass, completions run in order once their batch is durable,
 * failed commits retried with backoff while the store reports unhealthy).
 * A write the backend refuses to stage is kept here and staged again before
 * the retried commit. Test-time fault injection lives here too, compiled
 * only into a build configured with --enable-fault-injection.
 */
#include "store.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "../backends/common.h"
#include "log.h"
#include "util.h"

/* Compiled-in backends, found by name. Add new ones before the NULL. */
/* clang-format off */
static const struct cairn_store_ops *const store_backends[] = {
	&cairn_store_none,
	&cairn_store_memory,
#ifdef HAVE_SQLITE
	&cairn_store_sqlite,
#endif
#ifdef HAVE_LMDB
	&cairn_store_lmdb,
#endif
#ifdef HAVE_HIREDIS
	&cairn_store_redis,
#endif
	NULL
};
/* clang-format on */

/* Retries back off from 10 ms to 250 ms: a store that comes back (a
 * Redis reconnect, space freed on the disk) is used again within a quarter
 * of a second, and a retry of a store still down costs one failed call. */
#define STORE_BACKOFF_MIN_MS 10
#define STORE_BACKOFF_MAX_MS 250
/* While failing, the error is logged once and then at most this often. */
#define STORE_FAIL_LOG_MS 10000
/* Gathering after a commit (see store_gather): only after a batch that
 * answered at least this many waits (acknowledgements, mostly); by default
 * for at most this long. */
#define STORE_GATHER_MIN_WAITS 4
/* After pauses in vain, the most commits that do not gather. */
#define STORE_GATHER_MAX_SKIP 64
#define STORE_GATHER_MAX_US   2000

/* The held session records by client id (their ops stay in the held log):
 * chained buckets, a power of two of them. A slot keeps the link that
 * points at its op (s->held.head or the previous op's next), so that a
 * newer record can take the op's place in the log (store_hold). */
struct held_slot {
	struct held_slot *next;
	struct bk_op **link;
};

struct held_index {
	struct held_slot **buckets;
	size_t nbuckets, n;
};

/* A callback waiting for batch `gen` to be durable. */
struct store_completion {
	struct store_completion *next;
	store_commit_fn fn;
	void *arg;
	uint64_t gen;
};

#ifdef CAIRN_FAULT_INJECTION
/* Calls of one operation that fail on purpose: after `after` more calls
 * pass, the next `n` return err without reaching the backend. */
struct store_fault {
	int after;
	int n;
	int err;
};
#endif

struct store {
	const struct cairn_store_ops *ops;
	struct cairn_store *st;
	struct event_base *base;
	struct log *lg;
	struct event *commit_ev; /* runs the commit and the completions */
	struct event *retry_ev;  /* backoff timer after a failed commit */
	struct event *gather_ev; /* ends a gathering pause (store_gather) */

	/*
	 * Generations: next_gen is the batch being staged now; starting a
	 * commit seals it and increments next_gen. durable_gen is the newest
	 * batch known durable. A commit makes everything the backend holds
	 * durable, so a successful retry covers every older failed batch.
	 */
	uint64_t next_gen;
	uint64_t durable_gen;
	uint64_t inflight_gen;
	size_t nstaged; /* writes staged into next_gen */
	size_t nwaits;  /* completions registered for next_gen */
	bool dirty;     /* the backend holds writes not yet durable */
	bool in_flight; /* an asynchronous commit has not called done yet */
	bool retry_pending;
	int last_status; /* of the last asynchronous commit */
	int backoff_ms;
	uint64_t failures;    /* failed commits since the store was last healthy */
	uint64_t next_log_ms; /* log again once failures * max backoff reaches it */

	/*
	 * Writes kept here instead of in the backend, in staging order: one
	 * the backend refused to stage and every write after it (so that none
	 * overtakes an earlier one on the same key), and every write staged
	 * while the store is unhealthy. held_gen is the batch the first of
	 * them was staged in: no batch from it on counts as durable until a
	 * commit holding all of them succeeds. While the store is down, a
	 * session record replaces the held one of the same client (the latest
	 * wins; see store_hold), so an outage costs memory per session, not
	 * per reconnect, and the backend's failing batch stops growing.
	 */
	struct bk_log held;
	uint64_t held_gen;
	struct held_index held_sessions;
	uint64_t coalesced; /* session records superseded while held */
	bool complete;      /* the commit in flight holds every held write */
	bool unit;          /* store_unit: no early commit splits what is staged now */
#ifdef CAIRN_FAULT_INJECTION
	struct store_fault faults[STORE_OP_COUNT];
#endif

	struct store_completion *head, *tail;

	bool healthy;
	store_health_fn health_fn;
	void *health_arg;
	bool running; /* inside run_completions: store_close is forbidden */
	struct store_stats stats;
	uint64_t commit_t0;   /* store_now_ns() when the commit in flight began */
	size_t commit_writes; /* writes in it */
	size_t commit_waits;  /* completions waiting for it */

	/* Gathering (store_gather): until when, and for how many writes, a
	 * commit start may wait; 0: it may not. */
	uint64_t gather_until;   /* store_now_ns() */
	size_t gather_goal;      /* start as soon as this many completions wait */
	bool gathering;          /* a pause is on: gather_ev is pending */
	uint64_t gather_min_us;  /* the shortest and the longest pause */
	uint64_t gather_max_us;  /* (store_set_gather) */
	unsigned gather_skip;    /* commits that may not gather, after a pause in vain */
	unsigned gather_backoff; /* the next such skip: doubles with each pause in vain */
};

const double store_lat_bounds[STORE_LAT_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
						    0.01,   0.025,   0.05,   0.1,   0.5,    2.5};
const double store_batch_bounds[STORE_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 64, 256, 1024, 4096, 16384};

uint64_t store_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void store_observe(uint64_t *buckets, const double *bounds, size_t n, double v)
{
	size_t i = 0;
	while (i < n && v > bounds[i])
		i++;
	buckets[i]++;
}

/* A commit that reached the backend ended: its latency and batch size. */
static void store_measure(struct store *s, bool ok)
{
	uint64_t now = store_now_ns();
	double secs = (double)(now - s->commit_t0) / 1e9;
	store_observe(s->stats.lat, store_lat_bounds, STORE_LAT_BUCKETS, secs);
	s->stats.lat_sum += secs;
	store_observe(s->stats.batch, store_batch_bounds, STORE_BATCH_BUCKETS,
		      (double)s->commit_writes);
	s->stats.batch_sum += s->commit_writes;
	if (ok) {
		s->stats.commits++;
		s->stats.last_ok_ns = now;
	}
}

const struct store_stats *store_get_stats(const struct store *s)
{
	return &s->stats;
}

uint64_t store_commit_running_ns(const struct store *s)
{
	return s->in_flight ? store_now_ns() - s->commit_t0 : 0;
}

const char *cairn_strerror(int err)
{
	switch (err) {
	case CAIRN_OK:
		return "success";
	case CAIRN_ENOMEM:
		return "out of memory";
	case CAIRN_EIO:
		return "I/O error";
	case CAIRN_ECORRUPT:
		return "stored data is corrupt";
	case CAIRN_EFULL:
		return "storage is full";
	case CAIRN_EVERSION:
		return "store was written by a newer version";
	case CAIRN_EINVAL:
		return "invalid argument or option";
	case CAIRN_EINPROGRESS:
		return "operation in progress";
	case CAIRN_ENOTFOUND:
		return "not found";
	case CAIRN_EUNAVAILABLE:
		return "storage server unavailable";
	default:
		return "unknown store error";
	}
}

const struct cairn_store_ops *store_find_backend(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; store_backends[i] != NULL; i++)
		if (strcmp(store_backends[i]->name, name) == 0)
			return store_backends[i];
	return NULL;
}

void store_backend_names(char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	for (size_t i = 0; store_backends[i] != NULL; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
				 store_backends[i]->name);
		if (n < 0 || (size_t)n >= len - used)
			return; /* truncated; snprintf terminated it */
		used += (size_t)n;
	}
}

unsigned int store_ops_flags(const struct cairn_store_ops *ops)
{
	return ops->version >= 2 ? ops->flags : 0;
}

#ifdef CAIRN_FAULT_INJECTION
/* 0 when call op may proceed, or the error injected for it. */
static int store_fault(struct store *s, enum store_op op)
{
	struct store_fault *f = &s->faults[op];

	if (f->after > 0) {
		f->after--;
		return 0;
	}
	if (f->n > 0) {
		f->n--;
		return f->err;
	}
	return 0;
}

_Static_assert(STORE_OP_RETAINED_DELETE - STORE_OP_SESSION_PUT == BK_RETAINED_DEL - BK_SESSION_PUT,
	       "enum store_op lists the staging calls as enum bk_op_kind does");

void store_inject_failures(struct store *s, enum store_op op, int after, int n, int err)
{
	assert(op >= 0 && op < STORE_OP_COUNT);
	assert(err < 0 && err != CAIRN_EINPROGRESS);
	s->faults[op] = (struct store_fault){after, n, err};
}

void store_inject_commit_failures(struct store *s, int n)
{
	store_inject_failures(s, STORE_OP_COMMIT, 0, n, CAIRN_EIO);
}
#define STORE_FAULT(s, op) store_fault((s), (op))
#else
#define STORE_FAULT(s, op) 0
#endif

/*
 * Hand one write to the backend's staging slot; rec is the record kind
 * names, or for a delete the key record bk_op_new takes. Used both for the
 * caller's write and for staging a refused one again.
 */
static int store_dispatch(struct store *s, enum bk_op_kind kind, const void *rec)
{
	const struct cairn_store_ops *o = s->ops;
	const struct cairn_session_rec *session = rec;
	const struct cairn_sub_rec *sub = rec;
	const struct cairn_msg_rec *msg = rec;
	const struct cairn_delivery_rec *delivery = rec;
	const struct cairn_inflight_in_rec *inflight = rec;
	/* enum store_op lists the staging calls in enum bk_op_kind's order. */
	int rc = STORE_FAULT(s, (enum store_op)(STORE_OP_SESSION_PUT + (int)kind));

	if (rc != 0)
		return rc;
	switch (kind) {
	case BK_SESSION_PUT:
		return o->session_put(s->st, session);
	case BK_SESSION_DEL:
		return o->session_delete(s->st, session->client_id);
	case BK_SUB_PUT:
		return o->sub_put(s->st, sub);
	case BK_SUB_DEL:
		return o->sub_delete(s->st, sub->client_id, sub->filter);
	case BK_MESSAGE_PUT:
		return o->message_put(s->st, msg);
	case BK_MESSAGE_DEL:
		return o->message_delete(s->st, msg->msg_id);
	case BK_DELIVERY_PUT:
		return o->delivery_put(s->st, delivery);
	case BK_DELIVERY_DEL:
		return o->delivery_delete(s->st, delivery->client_id, delivery->seq);
	case BK_INFLIGHT_PUT:
		return o->inflight_in_put(s->st, inflight);
	case BK_INFLIGHT_DEL:
		return o->inflight_in_delete(s->st, inflight->client_id, inflight->packet_id);
	case BK_RETAINED_PUT:
		return o->retained_put(s->st, msg);
	case BK_RETAINED_DEL:
		return o->retained_delete(s->st, msg->topic);
	case BK_LOG_APPEND: {
		const struct bk_log_rec *l = rec;

		return o->log_append(s->st, l->publisher, &l->msg);
	}
	case BK_LOG_ROUTED: {
		/* The positions ride in msg.payload (store_log_routed). */
		const struct bk_log_rec *l = rec;
		struct cairn_log_pos v[CAIRN_LOG_PARTITIONS_MAX];
		size_t n = l->msg.payload_len / sizeof(*v);

		if (n == 0)
			return o->log_routed_p(s->st, l->publisher, NULL);
		memcpy(v, l->msg.payload, n * sizeof(*v));
		return o->log_routed_p(s->st, l->publisher, v);
	}
	case BK_SHARE_GIVEN: {
		const struct bk_log_rec *l = rec;

		return o->share_given(s->st, (uint32_t)l->msg.msg_id, l->msg.topic, l->publisher,
				      l->pos);
	}
	}
	return CAIRN_EINVAL;
}

/* ---- held writes ---- */

static size_t held_hash(const char *id)
{
	size_t h = 5381;

	while (*id)
		h = h * 33 + (unsigned char)*id++;
	return h;
}

static struct held_slot **held_find(struct held_index *ix, const char *client_id)
{
	struct held_slot **at;

	if (ix->nbuckets == 0)
		return NULL;
	at = &ix->buckets[held_hash(client_id) & (ix->nbuckets - 1)];
	while (*at != NULL && strcmp((*(*at)->link)->rec.session.client_id, client_id) != 0)
		at = &(*at)->next;
	return at;
}

/* Index the op *link points at. */
static void held_index_add(struct held_index *ix, struct bk_op **link)
{
	const char *client_id = (*link)->rec.session.client_id;
	struct held_slot *slot;

	if (ix->n >= ix->nbuckets) {
		size_t n = ix->nbuckets ? ix->nbuckets * 2 : 64;
		struct held_slot **b = xcalloc(n, sizeof(*b));

		for (size_t i = 0; i < ix->nbuckets; i++) {
			while ((slot = ix->buckets[i]) != NULL) {
				size_t j =
				    held_hash((*slot->link)->rec.session.client_id) & (n - 1);

				ix->buckets[i] = slot->next;
				slot->next = b[j];
				b[j] = slot;
			}
		}
		free(ix->buckets);
		ix->buckets = b;
		ix->nbuckets = n;
	}
	slot = xmalloc(sizeof(*slot));
	slot->link = link;
	slot->next = ix->buckets[held_hash(client_id) & (ix->nbuckets - 1)];
	ix->buckets[held_hash(client_id) & (ix->nbuckets - 1)] = slot;
	ix->n++;
}

static void held_index_clear(struct held_index *ix)
{
	for (size_t i = 0; i < ix->nbuckets; i++) {
		struct held_slot *slot, *next;

		for (slot = ix->buckets[i]; slot != NULL; slot = next) {
			next = slot->next;
			free(slot);
		}
	}
	free(ix->buckets);
	memset(ix, 0, sizeof(*ix));
}

/*
 * Put fresh in old's place in the held log and free old. old is the op
 * *link points at. The op after it may be an indexed session record,
 * whose slot holds &old->next: it moves to &fresh->next.
 */
static void held_replace(struct store *s, struct bk_op **link, struct bk_op *fresh)
{
	struct bk_op *old = *link, *after = old->next;

	fresh->next = after;
	*link = fresh;
	if (s->held.tail == old)
		s->held.tail = fresh;
	if (after != NULL && after->kind == BK_SESSION_PUT) {
		struct held_slot **at = held_find(&s->held_sessions, after->rec.session.client_id);

		if (at != NULL && *at != NULL && (*at)->link == &old->next)
			(*at)->link = &fresh->next;
	}
	bk_op_free(old);
}

/*
 * Keep one write in the held log. A session record supersedes the held
 * record of the same client when no delete of that session came between
 * them: it takes the earlier one's place. Its new place in the order is
 * harmless, as nothing else is keyed by the session record and a commit
 * takes every held write at once, in one batch.
 */
static void store_hold(struct store *s, enum bk_op_kind kind, const void *rec)
{
	const struct cairn_session_rec *session = rec;
	struct held_slot **at = NULL;
	struct bk_op **link;

	if (kind == BK_SESSION_PUT || kind == BK_SESSION_DEL)
		at = held_find(&s->held_sessions, session->client_id);
	if (kind == BK_SESSION_PUT && at != NULL && *at != NULL) {
		held_replace(s, (*at)->link, bk_op_new(kind, rec));
		s->coalesced++;
		return;
	}
	if (kind == BK_SESSION_DEL && at != NULL && *at != NULL) {
		struct held_slot *gone = *at;

		*at = gone->next;
		free(gone);
		s->held_sessions.n--;
	}
	if (s->held.head == NULL)
		s->held_gen = s->next_gen;
	link = s->held.tail != NULL ? &s->held.tail->next : &s->held.head;
	bk_log_push(&s->held, bk_op_new(kind, rec));
	if (kind == BK_SESSION_PUT)
		held_index_add(&s->held_sessions, link);
}

/* Stage the held writes into the backend, in order, stopping at the first
 * the backend refuses. Returns 0 when none is left. The index is dropped
 * first: the ops it points at are about to be freed. */
static int store_restage(struct store *s)
{
	struct bk_op *op;

	held_index_clear(&s->held_sessions);
	while ((op = s->held.head) != NULL) {
		int rc = store_dispatch(s, op->kind, &op->rec);

		if (rc != 0)
			return rc;
		s->dirty = true;
		bk_op_free(bk_log_shift(&s->held));
	}
	return 0;
}

static void set_health(struct store *s, bool healthy)
{
	if (s->healthy == healthy)
		return;
	s->healthy = healthy;
	if (s->health_fn != NULL)
		s->health_fn(s->health_arg, healthy);
}

static void schedule_commit(struct store *s)
{
	/* Activating an already active event is a no-op in libevent. */
	event_active(s->commit_ev, EV_TIMEOUT, 0);
}

/* Whatever ends a pause (store_gather): its timer, its goal reached, or a
 * commit started by other means (the batch limit, a flush). */
static void store_gather_end(struct store *s)
{
	if (s->gathering) {
		evtimer_del(s->gather_ev);
		s->gathering = false;
	}
	s->gather_until = 0;
}

/*
 * Group commit across the clients' windows. When an asynchronous commit of
 * a sizeable batch ends, its completions send the acknowledgements that
 * clients streaming over a window wait for, and each client answers with
 * its next messages one loop-back round trip later. A commit started at
 * the first of them would seal only that one and leave the rest to wait a
 * whole commit: the windows would split between two batches, each paying
 * its own fsync. So for a short while after such a commit (as long as it
 * took, at most gather_max_us) the next one waits until about as many
 * completions (acknowledgements, mostly) wait for it as the last one
 * answered; completions of earlier batches run meanwhile. A trickle of
 * small batches (clients that wait for each acknowledgement before sending
 * on) never waits. Returns true while the start is to wait.
 */
static bool store_gather(struct store *s)
{
	uint64_t now, us;
	struct timeval tv;

	if (s->gather_until == 0)
		return false;
	if (s->nwaits >= s->gather_goal) {
		if (s->gathering)
			s->gather_backoff = 0;
		store_gather_end(s);
		return false;
	}
	if (s->gathering)
		return true;
	now = store_now_ns();
	if (now >= s->gather_until) {
		s->gather_until = 0;
		return false;
	}
	us = (s->gather_until - now + 999) / 1000;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	evtimer_add(s->gather_ev, &tv);
	s->gathering = true;
	s->stats.gathers++;
	return true;
}

/* A commit that waits answered ended after ns: may the next one gather? */
static void store_gather_after(struct store *s, size_t waits, uint64_t ns)
{
	uint64_t us = ns / 1000;

	if (waits < STORE_GATHER_MIN_WAITS || s->gather_max_us == 0)
		return;
	if (s->gather_skip > 0) {
		s->gather_skip--;
		return;
	}
	if (us < s->gather_min_us)
		us = s->gather_min_us;
	if (us > s->gather_max_us)
		us = s->gather_max_us;
	s->gather_until = store_now_ns() + us * 1000;
	s->gather_goal = waits - waits / 8;
}

/*
 * A commit of batch gen succeeded. When writes are still held (the commit
 * only emptied what the backend had from before the outage, or writes were
 * held while it was in flight), nothing from the first held one on is
 * durable, and the next commit, started at once, stages them. The store is
 * healthy again only once a commit held every write.
 */
static void commit_succeeded(struct store *s, uint64_t gen, bool complete)
{
	if (s->held.head != NULL && gen >= s->held_gen)
		gen = s->held_gen - 1;
	if (gen > s->durable_gen)
		s->durable_gen = gen;
	if (s->held.head != NULL)
		schedule_commit(s);
	if (!complete)
		return;
	if (s->retry_pending) {
		evtimer_del(s->retry_ev);
		s->retry_pending = false;
	}
	s->backoff_ms = STORE_BACKOFF_MIN_MS;
	s->failures = 0;
	s->next_log_ms = 0;
	set_health(s, true);
}

/* what names the step that failed, for the log: "commit", or "staging" when
 * the backend refused a write. */
static void commit_failed(struct store *s, const char *what, int rc)
{
	struct timeval tv;

	s->failures++;
	s->stats.commits_failed++;
	if (s->lg != NULL && (s->healthy || s->failures * STORE_BACKOFF_MAX_MS >= s->next_log_ms)) {
		log_write(s->lg, LOG_LEVEL_ERROR,
			  "store %s: %s failed: %s (%llu attempts so far); retrying", s->ops->name,
			  what, cairn_strerror(rc), (unsigned long long)s->failures);
		s->next_log_ms = s->failures * STORE_BACKOFF_MAX_MS + STORE_FAIL_LOG_MS;
	}
	set_health(s, false);
	if (!s->retry_pending) {
		tv.tv_sec = s->backoff_ms / 1000;
		tv.tv_usec = (s->backoff_ms % 1000) * 1000;
		evtimer_add(s->retry_ev, &tv);
		s->retry_pending = true;
		s->backoff_ms *= 2;
		if (s->backoff_ms > STORE_BACKOFF_MAX_MS)
			s->backoff_ms = STORE_BACKOFF_MAX_MS;
	}
}

/* True when a commit would make progress: writes are waiting, or a
 * completion waits for a batch that has not started yet. */
static bool commit_needed(const struct store *s)
{
	return s->dirty || s->held.head != NULL || (s->tail != NULL && s->tail->gen >= s->next_gen);
}

static void commit_done(void *arg, int status)
{
	struct store *s = arg;

	assert(s->in_flight);
	assert(status != CAIRN_EINPROGRESS);
	s->in_flight = false;
	s->last_status = status;
	store_measure(s, status == 0);
	/* Not while held writes wait to be staged again after an outage: the
	 * clients waiting for them are paused, no answer would come. */
	if (status == 0 && s->complete && s->held.head == NULL)
		store_gather_after(s, s->commit_waits, store_now_ns() - s->commit_t0);
	if (status == 0)
		commit_succeeded(s, s->inflight_gen, s->complete);
	else
		commit_failed(s, "commit", status);
	/* The backend keeps the failed batch; the next commit retries it. */
	s->dirty = s->dirty || status != 0;
	/* Completions run from the commit event, which also starts the
	 * next batch if writes were staged meanwhile. */
	schedule_commit(s);
}

/*
 * Seal the staged batch and commit it. Returns 0 when it is durable, a
 * CAIRN_E* code when it failed (a retry is scheduled), or
 * CAIRN_EINPROGRESS for an asynchronous backend. Never runs completions.
 *
 * Held writes are staged only into a backend that holds nothing else: a
 * backend still holding a failed batch commits that first, on its own, so
 * a retry during an outage replays only what was staged before it began.
 */
static int commit_start(struct store *s)
{
	uint64_t gen;
	int rc;

	assert(!s->in_flight);
	store_gather_end(s);
	gen = s->next_gen++;
	s->commit_writes = s->nstaged;
	s->commit_waits = s->nwaits;
	s->nstaged = 0;
	s->nwaits = 0;
	if (!s->healthy)
		s->stats.commits_retried++;
	if (!s->dirty && s->held.head != NULL) {
		rc = store_restage(s);
		if (rc != 0) {
			commit_failed(s, "staging", rc);
			return rc;
		}
	}
	s->complete = s->held.head == NULL;
	if (!s->dirty) {
		/* Nothing to write: the batch is trivially durable. */
		s->stats.last_ok_ns = store_now_ns();
		commit_succeeded(s, gen, s->complete);
		return 0;
	}
	s->dirty = false;
	rc = STORE_FAULT(s, STORE_OP_COMMIT);
	if (rc == 0) {
		s->in_flight = true;
		s->inflight_gen = gen;
		s->commit_t0 = store_now_ns();
		rc = s->ops->commit(s->st, commit_done, s);
		/* A vtable that says its commits are synchronous keeps to it:
		 * callers (tests, the flush at shutdown) rely on the flag. */
		assert(rc != CAIRN_EINPROGRESS ||
		       (s->ops->version < 2 || (s->ops->flags & CAIRN_STORE_ASYNC_COMMIT)));
		if (rc == CAIRN_EINPROGRESS)
			return rc;
		s->in_flight = false;
		assert(rc <= 0);
		store_measure(s, rc == 0);
	}
	if (rc == 0) {
		commit_succeeded(s, gen, s->complete);
	} else {
		s->dirty = true; /* the backend keeps the batch for the retry */
		commit_failed(s, "commit", rc);
	}
	return rc;
}

/*
 * Run, in registration order, every completion whose batch is durable.
 * Each entry is unlinked before its callback runs, so a callback may
 * register new completions (they wait for a later batch) or cancel others.
 */
static void run_completions(struct store *s)
{
	bool was_running = s->running;

	s->running = true;
	while (s->head != NULL && s->head->gen <= s->durable_gen) {
		struct store_completion *c = s->head;

		s->head = c->next;
		if (s->head == NULL)
			s->tail = NULL;
		c->fn(c->arg, true);
		free(c);
	}
	s->running = was_running;
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (!s->in_flight && !s->retry_pending && commit_needed(s) && !store_gather(s))
		commit_start(s);
	run_completions(s);
}

static void gather_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	s->gathering = false;
	s->gather_until = 0;
	/* The answers did not come in time: these clients are slow to send
	 * on (a thread that wakes up to publish, say), and waiting for them
	 * only adds to every commit. Gather again after a few commits, fewer
	 * the more often it pays. */
	s->stats.gather_timeouts++;
	s->gather_backoff = s->gather_backoff == 0 ? 1 : s->gather_backoff * 2;
	if (s->gather_backoff > STORE_GATHER_MAX_SKIP)
		s->gather_backoff = STORE_GATHER_MAX_SKIP;
	s->gather_skip = s->gather_backoff;
	commit_cb(fd, what, arg); /* the pause is over: it starts the commit */
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	s->retry_pending = false;
	if (!s->in_flight && commit_needed(s))
		commit_start(s);
	run_completions(s);
}

static bool ops_complete(const struct cairn_store_ops *o)
{
	return o->name && o->open && o->close && o->load && o->session_put && o->session_delete &&
	       o->sub_put && o->sub_delete && o->message_put && o->message_delete &&
	       o->delivery_put && o->delivery_delete && o->inflight_in_put &&
	       o->inflight_in_delete && o->retained_put && o->retained_delete && o->commit &&
	       /* version 4: a shared store fills every cluster slot, others none;
		* from version 5 the partitioned log's slots replace log_routed
		* and log_read, which the core no longer calls */
	       (o->version < 4 ||
		(o->cluster_start ? o->claim && o->release && o->log_append &&
					(o->version >= 5 ? o->log_routed_p && o->log_read_p
							 : o->log_routed && o->log_read)
				  : !o->claim && !o->release && !o->log_append && !o->log_routed &&
					!o->log_read && !o->log_routed_p && !o->log_read_p)) &&
	       /* version 6: a shared store's shared subscriptions, all or none */
	       (o->version < 6 ||
		(o->share_join ? o->cluster_start && o->share_leave && o->share_read && o->share_ack
			       : !o->share_leave && !o->share_read && !o->share_ack)) &&
	       /* version 7: given-once records only with shared groups */
	       (o->version < 7 || !o->share_given || o->share_join);
}

int store_open(struct store **out, const char *name, const struct cairn_store_options *opts,
	       struct event_base *base, int priority, struct log *lg, char *err, size_t errlen)
{
	const struct cairn_store_ops *ops = store_find_backend(name);
	char names[256];

	assert(out != NULL);
	*out = NULL;
	if (ops == NULL) {
		store_backend_names(names, sizeof(names));
		snprintf(err, errlen, "unknown persistence backend \"%s\" (compiled in: %s)",
			 name ? name : "", names);
		return CAIRN_ENOTFOUND;
	}
	return store_open_ops(out, ops, opts, base, priority, lg, err, errlen);
}

int store_open_ops(struct store **out, const struct cairn_store_ops *ops,
		   const struct cairn_store_options *opts, struct event_base *base, int priority,
		   struct log *lg, char *err, size_t errlen)
{
	const char *name = ops->name != NULL ? ops->name : "";
	struct store *s;
	int rc;

	assert(out != NULL && opts != NULL && base != NULL);
	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (ops->version < 1 || !ops_complete(ops)) {
		snprintf(err, errlen,
			 "persistence backend \"%s\" has an unusable vtable (version %d)", name,
			 ops->version);
		return CAIRN_EINVAL;
	}

	s = xcalloc(1, sizeof(*s));
	s->ops = ops;
	s->base = base;
	s->lg = lg;
	s->next_gen = 1;
	s->healthy = true;
	s->stats.last_ok_ns = store_now_ns();
	s->backoff_ms = STORE_BACKOFF_MIN_MS;
	s->commit_ev = event_new(base, -1, 0, commit_cb, s);
	s->retry_ev = evtimer_new(base, retry_cb, s);
	s->gather_ev = evtimer_new(base, gather_cb, s);
	s->gather_max_us = STORE_GATHER_MAX_US;
	if (s->commit_ev == NULL || s->retry_ev == NULL || s->gather_ev == NULL) {
		snprintf(err, errlen, "cannot create the commit events");
		rc = CAIRN_ENOMEM;
		goto out;
	}
	if (event_priority_set(s->commit_ev, priority) != 0) {
		snprintf(err, errlen, "event priority %d is not configured on the event base",
			 priority);
		rc = CAIRN_EINVAL;
		goto out;
	}
	rc = ops->open(opts, &s->st, err, errlen);
	if (rc != 0) {
		if (errlen > 0 && err[0] == '\0')
			snprintf(err, errlen, "%s: %s", name, cairn_strerror(rc));
		goto out;
	}
	*out = s;
	return 0;
out:
	if (s->commit_ev != NULL)
		event_free(s->commit_ev);
	if (s->retry_ev != NULL)
		event_free(s->retry_ev);
	if (s->gather_ev != NULL)
		event_free(s->gather_ev);
	free(s);
	return rc;
}

int store_flush(struct store *s)
{
	int rc = 0;

	while (s->in_flight)
		event_base_loop(s->base, EVLOOP_ONCE);
	/* Held writes take a second commit after the backend's own batch. */
	while (rc == 0 && commit_needed(s)) {
		rc = commit_start(s);
		if (rc == CAIRN_EINPROGRESS) {
			while (s->in_flight)
				event_base_loop(s->base, EVLOOP_ONCE);
			rc = s->last_status;
		}
	}
	return rc;
}

void store_close(struct store *s)
{
	struct store_completion *c, *next;
	size_t dropped = 0;
	int rc;

	if (s == NULL)
		return;
	/* A completion must not free the store it runs from. */
	assert(!s->running);
	rc = store_flush(s);
	run_completions(s);
	/* Whatever still waits belongs to a batch that never became durable:
	 * telling its owner otherwise would be a lie, so each is told it was
	 * not, and releases what it held. */
	s->running = true;
	for (c = s->head; c != NULL; c = next) {
		next = c->next;
		c->fn(c->arg, false);
		free(c);
		dropped++;
	}
	s->head = s->tail = NULL;
	s->running = false;
	if (dropped > 0 && s->lg != NULL)
		log_write(
		    s->lg, LOG_LEVEL_ERROR,
		    "store %s: closing with an uncommitted batch (%s); %zu completions dropped",
		    s->ops->name, cairn_strerror(rc), dropped);
	bk_log_clear(&s->held);
	held_index_clear(&s->held_sessions);
	s->ops->close(s->st);
	event_free(s->commit_ev);
	event_free(s->retry_ev);
	event_free(s->gather_ev);
	free(s);
}

const char *store_name(const struct store *s)
{
	return s->ops->name;
}

/*
 * A backend older than vtable version 3 hands over records that end
 * where its header's records ended. Each is copied, up to the first
 * version 3 field, into a full record whose version 3 fields hold the
 * defaults of a record stored before they existed (a session that never
 * expires, everything else 0), so the core never reads past what the
 * backend filled. STORE_V2_PASS defines name, the callback doing that
 * for records of type (first_v3: their first version 3 field; the
 * designated initializers: the defaults other than 0) and passing the
 * full record to the visitor's slot.
 */
#define STORE_V2_PASS(name, type, first_v3, slot, ...)                                             \
	static int name(void *arg, const type *rec)                                                \
	{                                                                                          \
		const struct cairn_store_visitor *v = arg;                                         \
		type full = {0, __VA_ARGS__};                                                      \
                                                                                                   \
		memcpy(&full, rec, offsetof(type, first_v3));                                      \
		return v->slot(v->arg, &full);                                                     \
	}

STORE_V2_PASS(store_v2_session, struct cairn_session_rec, protocol_level, session,
	      .expiry_interval = CAIRN_EXPIRY_NEVER)
STORE_V2_PASS(store_v2_sub, struct cairn_sub_rec, options, subscription)
STORE_V2_PASS(store_v2_message, struct cairn_msg_rec, expires_at, message)
STORE_V2_PASS(store_v2_retained, struct cairn_msg_rec, expires_at, retained)
STORE_V2_PASS(store_v2_delivery, struct cairn_delivery_rec, retain, delivery)

static int store_v2_inflight(void *arg, const struct cairn_inflight_in_rec *rec)
{
	const struct cairn_store_visitor *v = arg;

	return v->inflight_in(v->arg, rec);
}

int store_load(struct store *s, const struct cairn_store_visitor *v)
{
	int rc = STORE_FAULT(s, STORE_OP_LOAD);

	assert(v != NULL);
	if (rc != 0)
		return rc;
	if (s->ops->version < 3) {
		/* A NULL slot stays NULL: the backend may skip those records. */
		const struct cairn_store_visitor wrap = {
		    .arg = (void *)v,
		    .session = v->session != NULL ? store_v2_session : NULL,
		    .subscription = v->subscription != NULL ? store_v2_sub : NULL,
		    .message = v->message != NULL ? store_v2_message : NULL,
		    .delivery = v->delivery != NULL ? store_v2_delivery : NULL,
		    .inflight_in = v->inflight_in != NULL ? store_v2_inflight : NULL,
		    .retained = v->retained != NULL ? store_v2_retained : NULL,
		};

		return s->ops->load(s->st, &wrap);
	}
	return s->ops->load(s->st, v);
}

/*
 * Stage one write: into the backend, or, once the backend has refused a
 * write or while the store is unhealthy, into s->held, where it waits
 * until commit_start stages the held writes, in order, into a backend
 * holding nothing else. Then the bookkeeping: schedule the commit event and, at the batch
 * limit, commit early (completions still run from the event, never from
 * inside the staging call). rec is what bk_op_new takes for kind.
 */
static int store_stage(struct store *s, enum bk_op_kind kind, const void *rec)
{
	if (s->held.head != NULL || !s->healthy || store_dispatch(s, kind, rec) != 0)
		store_hold(s, kind, rec);
	else
		s->dirty = true;
	s->nstaged++;
	schedule_commit(s);
	if (s->nstaged >= STORE_BATCH_LIMIT && !s->in_flight && !s->retry_pending && !s->unit)
		commit_start(s);
	return 0;
}

#define STORE_ASSERT_QOS(q) assert((q) <= 2)

int store_session_put(struct store *s, const struct cairn_session_rec *rec)
{
	assert(rec != NULL && rec->client_id != NULL);
	assert(!rec->has_will || rec->will_topic != NULL);
	assert(!rec->has_will || rec->will_payload != NULL || rec->will_payload_len == 0);
	STORE_ASSERT_QOS(rec->will_qos);
	return store_stage(s, BK_SESSION_PUT, rec);
}

int store_session_delete(struct store *s, const char *client_id)
{
	struct cairn_session_rec key = {.client_id = client_id};

	assert(client_id != NULL);
	return store_stage(s, BK_SESSION_DEL, &key);
}

int store_sub_put(struct store *s, const struct cairn_sub_rec *rec)
{
	assert(rec != NULL && rec->client_id != NULL && rec->filter != NULL);
	STORE_ASSERT_QOS(rec->qos);
	return store_stage(s, BK_SUB_PUT, rec);
}

int store_sub_delete(struct store *s, const char *client_id, const char *filter)
{
	struct cairn_sub_rec key = {.client_id = client_id, .filter = filter};

	assert(client_id != NULL && filter != NULL);
	return store_stage(s, BK_SUB_DEL, &key);
}

int store_message_put(struct store *s, const struct cairn_msg_rec *rec)
{
	assert(rec != NULL && rec->topic != NULL);
	assert(rec->payload != NULL || rec->payload_len == 0);
	STORE_ASSERT_QOS(rec->qos);
	return store_stage(s, BK_MESSAGE_PUT, rec);
}

int store_message_delete(struct store *s, uint64_t msg_id)
{
	struct cairn_msg_rec key = {.msg_id = msg_id};

	return store_stage(s, BK_MESSAGE_DEL, &key);
}

int store_delivery_put(struct store *s, const struct cairn_delivery_rec *rec)
{
	assert(rec != NULL && rec->client_id != NULL);
	STORE_ASSERT_QOS(rec->qos);
	assert(rec->state <= CAIRN_DELIVERY_PUBREC);
	return store_stage(s, BK_DELIVERY_PUT, rec);
}

int store_delivery_delete(struct store *s, const char *client_id, uint64_t seq)
{
	struct cairn_delivery_rec key = {.client_id = client_id, .seq = seq};

	assert(client_id != NULL);
	return store_stage(s, BK_DELIVERY_DEL, &key);
}

int store_inflight_in_put(struct store *s, const struct cairn_inflight_in_rec *rec)
{
	assert(rec != NULL && rec->client_id != NULL && rec->packet_id != 0);
	return store_stage(s, BK_INFLIGHT_PUT, rec);
}

int store_inflight_in_delete(struct store *s, const char *client_id, uint16_t packet_id)
{
	struct cairn_inflight_in_rec key = {.client_id = client_id, .packet_id = packet_id};

	assert(client_id != NULL);
	return store_stage(s, BK_INFLIGHT_DEL, &key);
}

int store_retained_put(struct store *s, const struct cairn_msg_rec *rec)
{
	assert(rec != NULL && rec->topic != NULL);
	assert(rec->payload != NULL || rec->payload_len == 0);
	STORE_ASSERT_QOS(rec->qos);
	return store_stage(s, BK_RETAINED_PUT, rec);
}

int store_retained_delete(struct store *s, const char *topic)
{
	struct cairn_msg_rec key = {.topic = topic};

	assert(topic != NULL);
	return store_stage(s, BK_RETAINED_DEL, &key);
}

/* ---- a shared store (cluster mode, vtable versions 4 and 5) ---- */

bool store_gathering(const struct store *s)
{
	/* No clock read per message: a window that has run out is cleared at
	 * the next commit event, and until then costs one early ACK. */
	return s->gather_until != 0;
}

void store_set_gather(struct store *s, uint64_t min_us, uint64_t max_us)
{
	s->gather_min_us = min_us;
	s->gather_max_us = max_us;
	if (max_us == 0 && s->gather_until != 0) {
		store_gather_end(s);
		schedule_commit(s);
	}
}

void store_unit(struct store *s, bool begin)
{
	s->unit = begin;
}

bool store_can_share(const struct store *s)
{
	/* Version 5: positions in every partition of the log. */
	return s->ops->version >= 5 && s->ops->cluster_start != NULL;
}

int store_cluster_start(struct store *s, const struct cairn_cluster_hooks *h,
			struct cairn_log_pos *tail, uint64_t *id_base)
{
	assert(store_can_share(s));
	return s->ops->cluster_start(s->st, h, tail, id_base);
}

int store_claim(struct store *s, const char *client_id, uint64_t serial, cairn_claim_fn done,
		void *arg)
{
	assert(store_can_share(s) && client_id != NULL && done != NULL);
	return s->ops->claim(s->st, client_id, serial, done, arg);
}

void store_release(struct store *s, const char *client_id)
{
	assert(store_can_share(s));
	s->ops->release(s->st, client_id);
}

int store_log_append(struct store *s, const char *publisher, const struct cairn_msg_rec *rec)
{
	struct bk_log_rec l = {.msg = *rec, .publisher = publisher ? publisher : ""};

	assert(store_can_share(s) && rec->topic != NULL);
	assert(rec->payload != NULL || rec->payload_len == 0);
	STORE_ASSERT_QOS(rec->qos);
	return store_stage(s, BK_LOG_APPEND, &l);
}

int store_log_routed(struct store *s, const char *client_id, const struct cairn_log_pos *pos,
		     size_t n)
{
	/* The positions are copied with the staged record as its payload. */
	struct bk_log_rec l = {.publisher = client_id};

	assert(store_can_share(s));
	assert(pos != NULL ? n > 0 && n <= CAIRN_LOG_PARTITIONS_MAX : client_id != NULL);
	if (pos != NULL) {
		l.msg.payload = (const uint8_t *)pos;
		l.msg.payload_len = (uint32_t)(n * sizeof(*pos));
		l.pos = pos[0];
	} else {
		l.pos = (struct cairn_log_pos){UINT64_MAX, UINT64_MAX};
	}
	return store_stage(s, BK_LOG_ROUTED, &l);
}

int store_log_read(struct store *s, uint32_t part, struct cairn_log_pos after, size_t max,
		   cairn_log_read_fn done, void *arg)
{
	assert(store_can_share(s) && done != NULL);
	return s->ops->log_read_p(s->st, part, after, max, done, arg);
}

bool store_can_share_groups(const struct store *s)
{
	return store_can_share(s) && s->ops->version >= 6 && s->ops->share_join != NULL;
}

int store_share_join(struct store *s, uint32_t part, const char *group, const char *member,
		     struct cairn_log_pos at, cairn_store_done_fn done, void *arg)
{
	assert(store_can_share_groups(s) && group != NULL && done != NULL);
	return s->ops->share_join(s->st, part, group, member, at, done, arg);
}

int store_share_leave(struct store *s, uint32_t part, const char *group, const char *member)
{
	assert(store_can_share_groups(s) && group != NULL && member != NULL);
	return s->ops->share_leave(s->st, part, group, member);
}

int store_share_read(struct store *s, uint32_t part, const char *group, size_t max,
		     uint64_t claim_idle_ms, cairn_log_read_fn done, void *arg)
{
	assert(store_can_share_groups(s) && group != NULL && done != NULL && max > 0);
	return s->ops->share_read(s->st, part, group, max, claim_idle_ms, done, arg);
}

int store_share_ack(struct store *s, uint32_t part, const char *group,
		    const struct cairn_log_pos *pos, size_t n)
{
	assert(store_can_share_groups(s) && group != NULL);
	return n == 0 ? 0 : s->ops->share_ack(s->st, part, group, pos, n);
}

void store_after_commit(struct store *s, store_commit_fn fn, void *arg)
{
	struct store_completion *c = xmalloc(sizeof(*c));

	assert(fn != NULL);
	c->next = NULL;
	c->fn = fn;
	c->arg = arg;
	c->gen = s->next_gen;
	s->nwaits++;
	if (s->tail != NULL)
		s->tail->next = c;
	else
		s->head = c;
	s->tail = c;
	schedule_commit(s);
}

void store_cancel(struct store *s, void *arg)
{
	struct store_completion **pp = &s->head, *prev = NULL;

	while (*pp != NULL) {
		struct store_completion *c = *pp;

		if (c->arg == arg) {
			*pp = c->next;
			free(c);
		} else {
			prev = c;
			pp = &c->next;
		}
	}
	s->tail = prev;
}

bool store_is_healthy(const struct store *s)
{
	return s->healthy;
}

bool store_backlogged(const struct store *s)
{
	return s->nstaged >= STORE_BACKLOG_LIMIT && (s->in_flight || s->retry_pending);
}

void store_after_inflight(struct store *s, store_commit_fn fn, void *arg)
{
	struct store_completion *c, **pp;

	if (!s->in_flight) {
		store_after_commit(s, fn, arg);
		return;
	}
	/* The list stays in batch order: the new entry goes after every
	 * entry of the batch in flight (or an older one), before those of the
	 * batch being staged. */
	c = xmalloc(sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	c->gen = s->inflight_gen;
	for (pp = &s->head; *pp != NULL && (*pp)->gen <= c->gen; pp = &(*pp)->next)
		;
	c->next = *pp;
	*pp = c;
	if (c->next == NULL)
		s->tail = c;
}

size_t store_held_writes(const struct store *s)
{
	return s->held.n;
}

uint64_t store_coalesced_writes(const struct store *s)
{
	return s->coalesced;
}

void store_set_health_cb(struct store *s, store_health_fn fn, void *arg)
{
	s->health_fn = fn;
	s->health_arg = arg;
}

bool store_share_once(const struct store *s)
{
	return store_can_share_groups(s) && s->ops->version >= 7 && s->ops->share_given != NULL;
}

int store_share_given(struct store *s, uint32_t part, const char *group, const char *member,
		      struct cairn_log_pos pos)
{
	/* The group rides in msg.topic, the partition in msg.msg_id. */
	struct bk_log_rec l = {.publisher = member, .pos = pos};

	assert(group != NULL && member != NULL);
	if (!store_share_once(s))
		return 0;
	l.msg.topic = group;
	l.msg.msg_id = part;
	return store_stage(s, BK_SHARE_GIVEN, &l);
}
