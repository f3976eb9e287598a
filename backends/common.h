/*
 * What the persistence backends share (prefix bk_), private to backends/
 * and to src/store.c, which keeps the writes a backend refused in the same
 * log the memory and SQLite backends stage into. A backend needs
 * include/cairn/store.h and this header, nothing from src/.
 *
 * Caveats:
 *  - The bk_x* allocators abort on out-of-memory, like the core's: they are
 *    for small internal allocations and for copies of records whose sizes
 *    the core has already checked against its limits.
 *  - A struct bk_op owns every string and payload its record points to, in
 *    the same allocation as the op itself: a record is never moved from one
 *    op to another (its pointers would point into the other op), and
 *    bk_op_free is one free().
 *  - A struct bk_op is allocated with room for the member of its union
 *    bk_rec that its kind sets, not for the whole union: never copy an op
 *    or its rec as a whole, only the member its kind names.
 */
#ifndef CAIRN_BACKENDS_COMMON_H
#define CAIRN_BACKENDS_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/store.h"

/* ---- allocation that aborts on out-of-memory ---- */

void *bk_xmalloc(size_t n);
void *bk_xcalloc(size_t count, size_t n);
void *bk_xrealloc(void *p, size_t n);
char *bk_xstrdup(const char *s);
char *bk_xstrndup(const char *s, size_t n);
/* A copy of n bytes; never NULL, even for n == 0 (NULL p is fine then). */
void *bk_xmemdup(const void *p, size_t n);
/* bk_xstrdup(s), or NULL when s is NULL. */
char *bk_xstrdup_or_null(const char *s);
/* A printf-formatted string in a new allocation. */
char *bk_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- messages ---- */

/* Format the one-line reason open() returns in err (errlen bytes; nothing
 * is written when errlen is 0). */
void bk_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Format a message and hand it to opts->log, if anybody listens (log is
 * NULL otherwise). The message is not truncated. */
void bk_logf(void (*log)(void *arg, int level, const char *msg), void *arg,
	     enum cairn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void bk_vlogf(void (*log)(void *arg, int level, const char *msg), void *arg,
	      enum cairn_log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* ---- files under persistence_location ---- */

/* Create dir (mode 0700) unless it exists, and check that it is a
 * directory. A directory it creates is made durable in its parent (the
 * parent is fsynced), so a power cut cannot lose the store's home.
 * Returns 0, or CAIRN_EIO with "<backend>: <reason>" in err. */
int bk_location_dir(const char *dir, const char *backend, char *err, size_t errlen);

/* fsync the directory at path, making the names created or renamed in it
 * durable (on filesystems that need it, a new file's name is not made
 * durable by fsyncing the file). Returns 0 or -1 with errno set. */
int bk_fsync_dir(const char *path);

/* Write into sfx a suffix ".corrupt-<unix time>[.N]" that no file path+sfx
 * has yet, so that a quarantined store never replaces an earlier one.
 * Returns 0, or -1 with errno EEXIST when a hundred such names are taken. */
int bk_quarantine_suffix(const char *path, char *sfx, size_t sfxlen);

/* ---- delivery states as stored text ---- */

/* "queued", "sent" or "pubrec"; NULL for a value outside the enum. */
const char *bk_state_name(uint8_t state);
/* Parse the len bytes at s as one of the names above. */
bool bk_state_parse(const char *s, size_t len, uint8_t *out);

/* ---- a delivery's subscription ids as stored text ---- */

/* Room bk_ids_format needs for n ids: ten digits and a comma (or the
 * final NUL) each. */
#define BK_IDS_TEXT_MAX(n) ((size_t)(n)*11 + 1)

/* Write ids as decimals separated by commas ("1,5,7"; "" for none) at
 * out, which has BK_IDS_TEXT_MAX(n) bytes, with a NUL; returns the length. */
size_t bk_ids_format(char *out, const uint32_t *ids, uint32_t n);
/* Parse the len bytes at s, as bk_ids_format writes them (len 0: none),
 * into *ids, grown as needed (*cap entries; free it when done), their
 * count in *n. False for anything else (an empty or non-decimal id, one
 * above UINT32_MAX). */
bool bk_ids_parse(const char *s, size_t len, uint32_t **ids, size_t *cap, uint32_t *n);

/* ---- the staged-write log ---- */

/* One of the twelve staging calls of struct cairn_store_ops. */
enum bk_op_kind {
	BK_SESSION_PUT,
	BK_SESSION_DEL,
	BK_SUB_PUT,
	BK_SUB_DEL,
	BK_MESSAGE_PUT,
	BK_MESSAGE_DEL,
	BK_DELIVERY_PUT,
	BK_DELIVERY_DEL,
	BK_INFLIGHT_PUT,
	BK_INFLIGHT_DEL,
	BK_RETAINED_PUT,
	BK_RETAINED_DEL,
	BK_LOG_APPEND, /* cluster mode (vtable version 4): rec.log */
	BK_LOG_ROUTED, /* rec.log.pos only */
	BK_SHARE_GIVEN /* version 7: rec.log.pos, publisher the member, msg.topic
			* the group, msg.msg_id the partition */
};

/* A log append: the message (first, so that it reads as rec.msg) and its
 * publisher; or, for a routed mark, the position and (in publisher) the
 * session it is the cursor of, or NULL. */
struct bk_log_rec {
	struct cairn_msg_rec msg;
	const char *publisher;
	struct cairn_log_pos pos;
};

/* A record of any type the vtable carries. */
union bk_rec {
	struct cairn_session_rec session;
	struct cairn_sub_rec sub;
	struct cairn_msg_rec msg;
	struct cairn_delivery_rec delivery;
	struct cairn_inflight_in_rec inflight;
	struct bk_log_rec log;
};

/*
 * One staged write with an owned copy of its record: the whole record for
 * a put, only the key fields for a delete (a session or message delete
 * fills client_id or msg_id, a retained delete the topic, and so on).
 * Which member of rec is set follows from kind: session, sub, msg (message
 * and retained), delivery or inflight.
 */
struct bk_op {
	struct bk_op *next;
	enum bk_op_kind kind;
	/* A delivery put that a delete of the same delivery, staged after it
	 * into the same log, made pointless (bk_log_push_merge): the batch
	 * writes the delete and skips the put, which leaves the store as
	 * writing both would. */
	bool dead;
	/* A delivery put's slot in bk_log.recent (bk_log_push_merge). */
	uint16_t slot;
	/* A delivery delete covers the seqs rec.delivery.seq .. hi of its
	 * client, a message delete the msg_ids rec.msg.msg_id .. hi (equal
	 * but for a run merged by bk_log_push_merge); unused by other kinds. */
	uint64_t hi;
	union bk_rec rec;
};

/* One of bk_log_push_merge's open runs: the last delete of its kind, which
 * a following delete of the next key may extend, and the first key it may
 * not reach (a put of that key was staged after the run, so deleting it in
 * the run, before the put, would undo the put). op is NULL when there is
 * none. */
struct bk_run {
	struct bk_op *op;
	uint64_t limit;
	uint64_t epoch; /* open only while it equals its log's epoch */
};

/* bk_log_push_merge keeps an open delivery delete run per client, in this
 * many slots (a power of two) chosen by client id: when many sessions
 * drain at once their acknowledgements interleave, and each session's
 * still merge into one range delete per batch. */
#define BK_DELETE_RUNS 1024

/* bk_log_push_merge remembers the last delivery put staged into each of
 * this many slots (a power of two), chosen by client id and seq: a few
 * windows' worth. */
#define BK_RECENT_PUTS 1024 /* at most 65,536: struct bk_op's slot */

/* The writes staged since the last successful commit, in staging order. */
struct bk_log {
	struct bk_op *head, *tail;
	size_t n;
	/* bk_log_push_merge's delivery delete runs (by a hash of the client
	 * id) and message delete run; every other function ends them all, by
	 * moving epoch on. */
	struct bk_run dels[BK_DELETE_RUNS], msgs;
	uint64_t epoch;
	/* bk_log_push_merge's delivery puts still in this log, by a hash of
	 * client id and seq (NULL: none; a later put takes the slot). */
	struct bk_op *recent[BK_RECENT_PUTS];
};

/*
 * A new op of kind holding a deep copy of rec, whose type is the one kind
 * names. A put's payloads are copied too; a NULL payload of length 0
 * becomes a valid empty one, so readers never see NULL. The version 3
 * blobs (will and message properties, a delivery's subscription ids) are
 * copied as well, but stay NULL when empty; a session's will properties
 * go with its will (dropped when has_will is false). The op and every copy
 * are one allocation (one malloc per staged write, one free).
 */
struct bk_op *bk_op_new(enum bk_op_kind kind, const void *rec);
void bk_op_free(struct bk_op *op);

/* Append op (taking it) at the end of log. */
void bk_log_push(struct bk_log *log, struct bk_op *op);
/* Remove and return the first op, or NULL when log is empty. */
struct bk_op *bk_log_shift(struct bk_log *log);
/* Free every op. */
void bk_log_clear(struct bk_log *log);
/* Put every op of from, in order, in front of log's; from ends empty. */
void bk_log_prepend(struct bk_log *log, struct bk_log *from);

/*
 * bk_log_push(log, bk_op_new(kind, rec)), but a delivery delete of the seq
 * after the last delivery delete's range (same client) extends that op
 * instead, and a message delete of the msg_id after the last message
 * delete's range extends that one (no copy of rec is made then). A
 * client's PUBACKs, in order, then cost one range delete per run instead
 * of one delete per message. Moving a delete earlier, past the ops staged
 * between, is safe because a run stops before any key put after it and at
 * a session delete: the batch leaves the store as the unmerged one would.
 * For a backend that executes ranges (a plain bk_log_push log never holds
 * one).
 *
 * A delivery delete also marks dead the delivery put of the same client
 * and seq staged last into this log, when that put is among the recent
 * ones it remembers (BK_RECENT_PUTS slots): in one batch, "put,
 * delete" leaves what "delete" leaves, and the backend skips dead ops. A
 * drained queue stages, per message, the put of its "sent" state and soon
 * after the delete at its PUBACK; with this the batch writes only the
 * (merged) delete. The delete itself stays: the delivery may be stored
 * from an earlier batch.
 */
void bk_log_push_merge(struct bk_log *log, enum bk_op_kind kind, const void *rec);

/* ---- the commit thread ---- */

/*
 * One thread on which a file backend runs its commits, so that the event
 * loop goes on reading, routing and staging the next batch while a batch
 * is written and fsynced (group commit that pipelines). One job at a time;
 * the caller (the store core, one commit in flight) keeps to it. finish()
 * runs on the event loop's thread, from an event on base, never from
 * inside bk_worker_run(). The job must touch nothing the loop's thread
 * uses while it runs: the backend hands it the batch and the connection.
 */
struct event_base;
struct bk_worker;

/* NULL when the thread or its event cannot be created (errno says why). */
struct bk_worker *bk_worker_new(struct event_base *base);
/* Waits for a running job (its finish is not called), stops the thread. */
void bk_worker_free(struct bk_worker *w);
void bk_worker_run(struct bk_worker *w, int (*job)(void *arg), void (*finish)(void *arg, int rc),
		   void *arg);

#endif
