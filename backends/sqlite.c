/*
 * The SQLite backend: one WAL-mode database file, <location>/cairn.db, whose
 * plain schema is an operator interface (see cairn-sqlite(5)). Staged writes
 * run inside one IMMEDIATE transaction and are also logged in memory, so a
 * batch whose COMMIT fails is rolled back and replayed on the next commit.
 */
#include "cairn/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common.h"

/* Schema migrations: entry v turns a version v-1 database into version v.
 * Only ever append; never edit a released entry. */
static const char *const sq_migrations[] = {
    NULL, /* version 0: the empty database */
    "CREATE TABLE schema_version(version INTEGER NOT NULL);"
    "CREATE TABLE sessions(client_id TEXT PRIMARY KEY, username TEXT,"
    " next_packet_id INTEGER NOT NULL, will_topic TEXT, will_payload BLOB,"
    " will_qos INTEGER, will_retain INTEGER, connected INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE subscriptions(client_id TEXT NOT NULL, filter TEXT NOT NULL,"
    " qos INTEGER NOT NULL, PRIMARY KEY(client_id, filter));"
    "CREATE TABLE messages(msg_id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " stored_at INTEGER NOT NULL);"
    "CREATE TABLE deliveries(client_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " msg_id INTEGER NOT NULL, packet_id INTEGER NOT NULL, qos INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK(state IN ('queued','sent','pubrec')),"
    " PRIMARY KEY(client_id, seq));"
    "CREATE TABLE inflight_in(client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,"
    " PRIMARY KEY(client_id, packet_id));"
    "CREATE TABLE retained(topic TEXT PRIMARY KEY, payload BLOB NOT NULL,"
    " qos INTEGER NOT NULL, stored_at INTEGER NOT NULL);",
    /* version 2: queue-full drops per session */
    "ALTER TABLE sessions ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;",
    /* version 3: MQTT 5.0. A row written before it reads as a 3.1.1
     * session that never expires (expiry_interval NULL), without
     * properties, subscription options or identifiers. */
    "ALTER TABLE sessions ADD COLUMN protocol_level INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN expiry_interval INTEGER;"
    "ALTER TABLE sessions ADD COLUMN expires_at_ms INTEGER;"
    "ALTER TABLE sessions ADD COLUMN will_delay INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN will_at_ms INTEGER;"
    "ALTER TABLE sessions ADD COLUMN will_props BLOB;"
    "ALTER TABLE subscriptions ADD COLUMN options INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE subscriptions ADD COLUMN sub_id INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN expires_at_ms INTEGER;"
    "ALTER TABLE messages ADD COLUMN props BLOB;"
    "ALTER TABLE deliveries ADD COLUMN retain INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deliveries ADD COLUMN sub_ids TEXT;"
    "ALTER TABLE retained ADD COLUMN expires_at_ms INTEGER;"
    "ALTER TABLE retained ADD COLUMN props BLOB;",
    /* version 4: deliveries clustered on their primary key (WITHOUT
     * ROWID). Rows are inserted message-major when many sessions share a
     * topic; in a rowid table one client's queue is then spread over the
     * whole table, and both the restore's walk in (client_id, seq) order
     * and the deletes of a drained run touch pages at random. The columns
     * are those of version 3, in the same order. */
    "CREATE TABLE deliveries_v4(client_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " msg_id INTEGER NOT NULL, packet_id INTEGER NOT NULL, qos INTEGER NOT NULL,"
    " state TEXT NOT NULL CHECK(state IN ('queued','sent','pubrec')),"
    " retain INTEGER NOT NULL DEFAULT 0, sub_ids TEXT,"
    " PRIMARY KEY(client_id, seq)) WITHOUT ROWID;"
    "INSERT INTO deliveries_v4(client_id, seq, msg_id, packet_id, qos, state, retain,"
    " sub_ids) SELECT client_id, seq, msg_id, packet_id, qos, state, retain, sub_ids"
    " FROM deliveries ORDER BY client_id, seq;"
    "DROP TABLE deliveries;"
    "ALTER TABLE deliveries_v4 RENAME TO deliveries;",
};

#define SQ_SCHEMA_VERSION ((int)(sizeof(sq_migrations) / sizeof(sq_migrations[0])) - 1)

enum sq_stmt {
	SQ_BEGIN,
	SQ_COMMIT,
	SQ_ROLLBACK,
	SQ_SESSION_PUT,
	SQ_SESSION_DEL,
	SQ_SESSION_DEL_SUBS,
	SQ_SESSION_DEL_DELIVERIES,
	SQ_SESSION_DEL_INFLIGHT,
	SQ_SUB_PUT,
	SQ_SUB_DEL,
	SQ_MESSAGE_PUT,
	SQ_MESSAGE_DEL,
	SQ_DELIVERY_PUT,
	SQ_DELIVERY_DEL,
	SQ_INFLIGHT_PUT,
	SQ_INFLIGHT_DEL,
	SQ_RETAINED_PUT,
	SQ_RETAINED_DEL,
	SQ_LOAD_SESSIONS,
	SQ_LOAD_SUBS,
	SQ_LOAD_MESSAGES,
	SQ_LOAD_DELIVERIES,
	SQ_LOAD_INFLIGHT,
	SQ_LOAD_RETAINED,
	SQ_NSTMT
};

static const char *const sq_sql[SQ_NSTMT] = {
    [SQ_BEGIN] = "BEGIN IMMEDIATE",
    [SQ_COMMIT] = "COMMIT",
    [SQ_ROLLBACK] = "ROLLBACK",
    [SQ_SESSION_PUT] = "INSERT OR REPLACE INTO sessions(client_id, username, next_packet_id,"
		       " will_topic, will_payload, will_qos, will_retain, connected, updated_at,"
		       " dropped, protocol_level, expiry_interval, expires_at_ms, will_delay,"
		       " will_at_ms, will_props) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
		       " ?11, ?12, ?13, ?14, ?15, ?16)",
    [SQ_SESSION_DEL] = "DELETE FROM sessions WHERE client_id = ?1",
    [SQ_SESSION_DEL_SUBS] = "DELETE FROM subscriptions WHERE client_id = ?1",
    [SQ_SESSION_DEL_DELIVERIES] = "DELETE FROM deliveries WHERE client_id = ?1",
    [SQ_SESSION_DEL_INFLIGHT] = "DELETE FROM inflight_in WHERE client_id = ?1",
    [SQ_SUB_PUT] = "INSERT OR REPLACE INTO subscriptions(client_id, filter, qos, options, sub_id)"
		   " VALUES(?1, ?2, ?3, ?4, ?5)",
    [SQ_SUB_DEL] = "DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2",
    [SQ_MESSAGE_PUT] = "INSERT OR REPLACE INTO messages(msg_id, topic, payload, qos, retain,"
		       " stored_at, expires_at_ms, props) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* Deletes take a range: a run of them is merged into one op
     * (bk_log_push_merge); a single delete is the range of one key. */
    [SQ_MESSAGE_DEL] = "DELETE FROM messages WHERE msg_id BETWEEN ?1 AND ?2",
    [SQ_DELIVERY_PUT] = "INSERT OR REPLACE INTO deliveries(client_id, seq, msg_id, packet_id,"
			" qos, state, retain, sub_ids) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [SQ_DELIVERY_DEL] = "DELETE FROM deliveries WHERE client_id = ?1 AND seq BETWEEN ?2 AND ?3",
    [SQ_INFLIGHT_PUT] = "INSERT OR REPLACE INTO inflight_in(client_id, packet_id)"
			" VALUES(?1, ?2)",
    [SQ_INFLIGHT_DEL] = "DELETE FROM inflight_in WHERE client_id = ?1 AND packet_id = ?2",
    [SQ_RETAINED_PUT] = "INSERT OR REPLACE INTO retained(topic, payload, qos, stored_at,"
			" expires_at_ms, props) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [SQ_RETAINED_DEL] = "DELETE FROM retained WHERE topic = ?1",
    /* Every load query walks a primary key index: rows stream in key
     * order without a sort step holding them all in memory. */
    [SQ_LOAD_SESSIONS] =
	"SELECT client_id, username, next_packet_id, will_topic, will_payload,"
	" will_qos, will_retain, connected, dropped, protocol_level, expiry_interval,"
	" expires_at_ms, will_delay, will_at_ms, will_props FROM sessions ORDER BY client_id",
    [SQ_LOAD_SUBS] = "SELECT client_id, filter, qos, options, sub_id FROM subscriptions"
		     " ORDER BY client_id, filter",
    [SQ_LOAD_MESSAGES] = "SELECT msg_id, topic, payload, qos, retain, expires_at_ms, props"
			 " FROM messages ORDER BY msg_id",
    [SQ_LOAD_DELIVERIES] = "SELECT client_id, seq, msg_id, packet_id, qos, state, retain, sub_ids"
			   " FROM deliveries ORDER BY client_id, seq",
    [SQ_LOAD_INFLIGHT] = "SELECT client_id, packet_id FROM inflight_in"
			 " ORDER BY client_id, packet_id",
    [SQ_LOAD_RETAINED] = "SELECT topic, payload, qos, expires_at_ms, props FROM retained"
			 " ORDER BY topic",
};

struct cairn_store {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[SQ_NSTMT];
	struct bk_log staged;     /* the next batch */
	struct bk_log committing; /* the batch the commit thread writes */
	struct bk_worker *worker; /* NULL: commits run on the caller's thread */
	cairn_store_done_fn done; /* the commit in flight's completion */
	void *done_arg;
	/* Test knob sqlite_max_page_count (fault-injection builds only):
	 * re-read before each replay so a test can lift the limit. Kept only
	 * when set at open. */
	const char *(*get)(void *arg, const char *key);
	void *get_arg;
};

static int sq_map(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_FULL:
		return CAIRN_EFULL;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return CAIRN_ECORRUPT;
	case SQLITE_NOMEM:
		return CAIRN_ENOMEM;
	default:
		return CAIRN_EIO;
	}
}

/* Step a write statement to completion, then reset it and drop its
 * bindings (they may point at the caller's borrowed strings). */
static int sq_run(sqlite3_stmt *stmt)
{
	int rc = sqlite3_step(stmt);

	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sq_map(rc);
}

static void sq_bind_text(sqlite3_stmt *stmt, int i, const char *s)
{
	if (s != NULL)
		sqlite3_bind_text(stmt, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(stmt, i);
}

/* Payloads are always BLOBs: an empty one is a zero-length blob, not NULL. */
static void sq_bind_blob(sqlite3_stmt *stmt, int i, const uint8_t *p, uint32_t len)
{
	if (len > 0)
		sqlite3_bind_blob(stmt, i, p, (int)len, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(stmt, i, 0);
}

/* A property block (version 3): NULL when there is none. */
static void sq_bind_props(sqlite3_stmt *stmt, int i, const uint8_t *p, uint32_t len)
{
	if (len > 0)
		sqlite3_bind_blob(stmt, i, p, (int)len, SQLITE_STATIC);
	else
		sqlite3_bind_null(stmt, i);
}

/* A wall-clock deadline in ms: NULL for 0 (none). */
static void sq_bind_deadline(sqlite3_stmt *stmt, int i, int64_t ms)
{
	if (ms != 0)
		sqlite3_bind_int64(stmt, i, (sqlite3_int64)ms);
	else
		sqlite3_bind_null(stmt, i);
}

/* ---- executing one staged write inside the open transaction ---- */

static int sq_exec_op(struct cairn_store *st, const struct bk_op *op)
{
	sqlite3_stmt *s;
	int rc;

	switch (op->kind) {
	case BK_SESSION_PUT: {
		const struct cairn_session_rec *r = &op->rec.session;

		s = st->stmt[SQ_SESSION_PUT];
		sq_bind_text(s, 1, r->client_id);
		sq_bind_text(s, 2, r->username);
		sqlite3_bind_int(s, 3, r->next_packet_id);
		if (r->has_will) {
			sq_bind_text(s, 4, r->will_topic);
			sq_bind_blob(s, 5, r->will_payload, r->will_payload_len);
			sqlite3_bind_int(s, 6, r->will_qos);
			sqlite3_bind_int(s, 7, r->will_retain);
		}
		sqlite3_bind_int(s, 8, r->connected);
		sqlite3_bind_int64(s, 9, (sqlite3_int64)time(NULL));
		sqlite3_bind_int64(s, 10, (sqlite3_int64)(r->dropped & INT64_MAX));
		sqlite3_bind_int(s, 11, r->protocol_level);
		if (r->expiry_interval != CAIRN_EXPIRY_NEVER)
			sqlite3_bind_int64(s, 12, r->expiry_interval);
		sq_bind_deadline(s, 13, r->expires_at);
		sqlite3_bind_int64(s, 14, r->will_delay);
		sq_bind_deadline(s, 15, r->will_at);
		if (r->has_will)
			sq_bind_props(s, 16, r->will_props, r->will_props_len);
		return sq_run(s);
	}
	case BK_SESSION_DEL: {
		static const enum sq_stmt del[] = {SQ_SESSION_DEL, SQ_SESSION_DEL_SUBS,
						   SQ_SESSION_DEL_DELIVERIES,
						   SQ_SESSION_DEL_INFLIGHT};

		for (size_t i = 0; i < sizeof(del) / sizeof(del[0]); i++) {
			s = st->stmt[del[i]];
			sq_bind_text(s, 1, op->rec.session.client_id);
			if ((rc = sq_run(s)) != 0)
				return rc;
		}
		return 0;
	}
	case BK_SUB_PUT:
		s = st->stmt[SQ_SUB_PUT];
		sq_bind_text(s, 1, op->rec.sub.client_id);
		sq_bind_text(s, 2, op->rec.sub.filter);
		sqlite3_bind_int(s, 3, op->rec.sub.qos);
		sqlite3_bind_int(s, 4, op->rec.sub.options);
		sqlite3_bind_int64(s, 5, op->rec.sub.sub_id);
		return sq_run(s);
	case BK_SUB_DEL:
		s = st->stmt[SQ_SUB_DEL];
		sq_bind_text(s, 1, op->rec.sub.client_id);
		sq_bind_text(s, 2, op->rec.sub.filter);
		return sq_run(s);
	case BK_MESSAGE_PUT:
		s = st->stmt[SQ_MESSAGE_PUT];
		sqlite3_bind_int64(s, 1, (sqlite3_int64)op->rec.msg.msg_id);
		sq_bind_text(s, 2, op->rec.msg.topic);
		sq_bind_blob(s, 3, op->rec.msg.payload, op->rec.msg.payload_len);
		sqlite3_bind_int(s, 4, op->rec.msg.qos);
		sqlite3_bind_int(s, 5, op->rec.msg.retain);
		sqlite3_bind_int64(s, 6, (sqlite3_int64)time(NULL));
		sq_bind_deadline(s, 7, op->rec.msg.expires_at);
		sq_bind_props(s, 8, op->rec.msg.props, op->rec.msg.props_len);
		return sq_run(s);
	case BK_MESSAGE_DEL:
		s = st->stmt[SQ_MESSAGE_DEL];
		sqlite3_bind_int64(s, 1, (sqlite3_int64)op->rec.msg.msg_id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)op->hi);
		return sq_run(s);
	case BK_DELIVERY_PUT: {
		const struct cairn_delivery_rec *r = &op->rec.delivery;
		/* sub_ids as TEXT "1,5,7", NULL for none; a short list needs
		 * no allocation (sq_run clears the binding before returning). */
		char small[BK_IDS_TEXT_MAX(8)], *ids = NULL;

		if (r->n_sub_ids > 0) {
			ids = r->n_sub_ids <= 8 ? small : bk_xmalloc(BK_IDS_TEXT_MAX(r->n_sub_ids));
			bk_ids_format(ids, r->sub_ids, r->n_sub_ids);
		}

		s = st->stmt[SQ_DELIVERY_PUT];
		sq_bind_text(s, 1, r->client_id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)r->seq);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)r->msg_id);
		sqlite3_bind_int(s, 4, r->packet_id);
		sqlite3_bind_int(s, 5, r->qos);
		sq_bind_text(s, 6, bk_state_name(r->state));
		sqlite3_bind_int(s, 7, r->retain);
		sq_bind_text(s, 8, ids);
		rc = sq_run(s);
		if (ids != small)
			free(ids);
		return rc;
	}
	case BK_DELIVERY_DEL:
		s = st->stmt[SQ_DELIVERY_DEL];
		sq_bind_text(s, 1, op->rec.delivery.client_id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)op->rec.delivery.seq);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)op->hi);
		return sq_run(s);
	case BK_INFLIGHT_PUT:
	case BK_INFLIGHT_DEL:
		s = st->stmt[op->kind == BK_INFLIGHT_PUT ? SQ_INFLIGHT_PUT : SQ_INFLIGHT_DEL];
		sq_bind_text(s, 1, op->rec.inflight.client_id);
		sqlite3_bind_int(s, 2, op->rec.inflight.packet_id);
		return sq_run(s);
	case BK_RETAINED_PUT:
		s = st->stmt[SQ_RETAINED_PUT];
		sq_bind_text(s, 1, op->rec.msg.topic);
		sq_bind_blob(s, 2, op->rec.msg.payload, op->rec.msg.payload_len);
		sqlite3_bind_int(s, 3, op->rec.msg.qos);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
		sq_bind_deadline(s, 5, op->rec.msg.expires_at);
		sq_bind_props(s, 6, op->rec.msg.props, op->rec.msg.props_len);
		return sq_run(s);
	case BK_RETAINED_DEL:
		s = st->stmt[SQ_RETAINED_DEL];
		sq_bind_text(s, 1, op->rec.msg.topic);
		return sq_run(s);
	case BK_LOG_APPEND: /* never staged here: SQLite is not shared */
	case BK_LOG_ROUTED:
	case BK_SHARE_GIVEN:
		break;
	}
	return CAIRN_EINVAL;
}

/* ---- the staged batch ---- */

static bool sq_in_txn(const struct cairn_store *st)
{
	return sqlite3_get_autocommit(st->db) == 0;
}

/* Copy the write into the next batch. Nothing touches the database until
 * commit() (a commit thread may be writing the batch before), so a
 * staging call never fails (the copy aborts on out-of-memory). */
static int sq_stage(struct cairn_store *st, enum bk_op_kind kind, const void *rec)
{
	bk_log_push_merge(&st->staged, kind, rec);
	return 0;
}

#ifdef CAIRN_FAULT_INJECTION
/*
 * The test knob sqlite_max_page_count caps the database at that many pages,
 * so that a test can fill the "disk" on demand and lift the cap again. It
 * exists only in a build configured with --enable-fault-injection: a
 * production broker ignores the key.
 */
static int sq_page_knob_apply(struct cairn_store *st, const char *val)
{
	char sql[64];
	char *end;
	long n;

	errno = 0;
	n = strtol(val, &end, 10);
	if (errno != 0 || end == val || *end != '\0' || n < 0)
		return CAIRN_EINVAL;
	snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %ld", n);
	return sq_map(sqlite3_exec(st->db, sql, NULL, NULL, NULL));
}

/* Re-read the knob (a test may have lifted the cap since the last try). */
static void sq_page_knob_refresh(struct cairn_store *st)
{
	const char *knob;

	if (st->get != NULL && (knob = st->get(st->get_arg, "sqlite_max_page_count")) != NULL)
		sq_page_knob_apply(st, knob);
}

/* Read the knob at open; remember where to re-read it only when it is set. */
static int sq_page_knob_open(struct cairn_store *st, const struct cairn_store_options *opts,
			     char *err, size_t errlen)
{
	const char *knob =
	    opts->get != NULL ? opts->get(opts->get_arg, "sqlite_max_page_count") : NULL;

	if (knob == NULL)
		return 0;
	if (sq_page_knob_apply(st, knob) != 0) {
		bk_errf(err, errlen, "sqlite: bad sqlite_max_page_count \"%s\"", knob);
		return CAIRN_EINVAL;
	}
	st->get = opts->get;
	st->get_arg = opts->get_arg;
	return 0;
}
#endif

/* Write the batch in one transaction. On failure nothing of it stays
 * (rolled back) and the caller keeps the batch for the next commit. A
 * dead op (a delivery put a later delete in the batch undoes) is skipped. */
static int sq_write_batch(struct cairn_store *st, const struct bk_log *batch)
{
	int rc = sq_run(st->stmt[SQ_BEGIN]);

	for (const struct bk_op *op = batch->head; rc == 0 && op != NULL; op = op->next)
		if (!op->dead)
			rc = sq_exec_op(st, op);
	if (rc == 0)
		rc = sq_run(st->stmt[SQ_COMMIT]);
	if (rc != 0 && sq_in_txn(st))
		sq_run(st->stmt[SQ_ROLLBACK]);
	return rc;
}

/* On the commit thread: the loop's thread only stages (into st->staged)
 * until sq_commit_finish runs. */
static int sq_commit_job(void *arg)
{
	struct cairn_store *st = arg;

	return sq_write_batch(st, &st->committing);
}

/* Back on the loop's thread: a failed batch goes in front of what was
 * staged meanwhile, so the next commit retries it with them, in order. */
static void sq_commit_finish(void *arg, int rc)
{
	struct cairn_store *st = arg;

	if (rc == 0)
		bk_log_clear(&st->committing);
	else
		bk_log_prepend(&st->staged, &st->committing);
	st->done(st->done_arg, rc);
}

/* The batch is written (BEGIN, every write, COMMIT, which fsyncs) on the
 * commit thread while the loop stages the next one; done() follows. A
 * failed batch is kept whole for the next commit to retry. */
static int sq_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	int rc;

	if (st->staged.head == NULL)
		return 0;
#ifdef CAIRN_FAULT_INJECTION
	sq_page_knob_refresh(st);
#endif
	if (st->worker == NULL) {
		rc = sq_write_batch(st, &st->staged);
		if (rc == 0)
			bk_log_clear(&st->staged);
		return rc;
	}
	st->committing = st->staged;
	st->staged = (struct bk_log){0};
	st->done = done;
	st->done_arg = arg;
	bk_worker_run(st->worker, sq_commit_job, sq_commit_finish, st);
	return CAIRN_EINPROGRESS;
}

static int sq_session_put(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	return sq_stage(st, BK_SESSION_PUT, rec);
}

static int sq_session_delete(struct cairn_store *st, const char *client_id)
{
	struct cairn_session_rec key = {.client_id = client_id};

	return sq_stage(st, BK_SESSION_DEL, &key);
}

static int sq_sub_put(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	return sq_stage(st, BK_SUB_PUT, rec);
}

static int sq_sub_delete(struct cairn_store *st, const char *client_id, const char *filter)
{
	struct cairn_sub_rec key = {.client_id = client_id, .filter = filter};

	return sq_stage(st, BK_SUB_DEL, &key);
}

static int sq_message_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return sq_stage(st, BK_MESSAGE_PUT, rec);
}

static int sq_message_delete(struct cairn_store *st, uint64_t msg_id)
{
	struct cairn_msg_rec key = {.msg_id = msg_id};

	return sq_stage(st, BK_MESSAGE_DEL, &key);
}

static int sq_delivery_put(struct cairn_store *st, const struct cairn_delivery_rec *rec)
{
	return sq_stage(st, BK_DELIVERY_PUT, rec);
}

static int sq_delivery_delete(struct cairn_store *st, const char *client_id, uint64_t seq)
{
	struct cairn_delivery_rec key = {.client_id = client_id, .seq = seq};

	return sq_stage(st, BK_DELIVERY_DEL, &key);
}

static int sq_inflight_in_put(struct cairn_store *st, const struct cairn_inflight_in_rec *rec)
{
	return sq_stage(st, BK_INFLIGHT_PUT, rec);
}

static int sq_inflight_in_delete(struct cairn_store *st, const char *client_id, uint16_t packet_id)
{
	struct cairn_inflight_in_rec key = {.client_id = client_id, .packet_id = packet_id};

	return sq_stage(st, BK_INFLIGHT_DEL, &key);
}

static int sq_retained_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return sq_stage(st, BK_RETAINED_PUT, rec);
}

static int sq_retained_delete(struct cairn_store *st, const char *topic)
{
	struct cairn_msg_rec key = {.topic = topic};

	return sq_stage(st, BK_RETAINED_DEL, &key);
}

/* ---- load ---- */

static const char *sq_col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

/* A payload column: NULL (only an operator's hand can put it there) reads
 * as empty. */
static const uint8_t *sq_col_blob(sqlite3_stmt *s, int i, uint32_t *len)
{
	const uint8_t *p = sqlite3_column_blob(s, i);

	*len = (uint32_t)sqlite3_column_bytes(s, i);
	return *len > 0 ? p : (const uint8_t *)"";
}

static bool sq_qos_ok(sqlite3_int64 q)
{
	return q >= 0 && q <= 2;
}

/* A property block column (version 3): NULL or empty reads as none. */
static const uint8_t *sq_col_props(sqlite3_stmt *s, int i, uint32_t *len)
{
	const uint8_t *p = sqlite3_column_blob(s, i);

	*len = p != NULL ? (uint32_t)sqlite3_column_bytes(s, i) : 0;
	return *len > 0 ? p : NULL;
}

/* A column that holds a uint32 (an interval or an id), false when a hand
 * edit put something else there. */
static bool sq_col_u32(sqlite3_stmt *s, int i, uint32_t *out)
{
	sqlite3_int64 v = sqlite3_column_int64(s, i);

	if (v < 0 || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/*
 * Turn the current row of stmt kind `which` into a record and hand it to
 * the visitor. Rows a hand edit made unusable (a NULL key, a QoS out of
 * range) are skipped rather than loaded half-valid.
 */
static int sq_visit_row(sqlite3_stmt *s, enum sq_stmt which, const struct cairn_store_visitor *v)
{
	switch (which) {
	case SQ_LOAD_SESSIONS: {
		struct cairn_session_rec r = {0};

		r.client_id = sq_col_text(s, 0);
		r.username = sq_col_text(s, 1);
		r.next_packet_id = (uint16_t)sqlite3_column_int(s, 2);
		r.will_topic = sq_col_text(s, 3);
		r.has_will = r.will_topic != NULL;
		if (r.has_will) {
			r.will_payload = sq_col_blob(s, 4, &r.will_payload_len);
			r.will_qos = (uint8_t)sqlite3_column_int(s, 5);
			r.will_retain = sqlite3_column_int(s, 6) != 0;
			if (!sq_qos_ok(sqlite3_column_int64(s, 5)))
				return 0;
		}
		r.connected = sqlite3_column_int(s, 7) != 0;
		if (sqlite3_column_int64(s, 8) > 0)
			r.dropped = (uint64_t)sqlite3_column_int64(s, 8);
		r.protocol_level = (uint8_t)sqlite3_column_int(s, 9);
		r.expiry_interval = CAIRN_EXPIRY_NEVER;
		if (sqlite3_column_type(s, 10) != SQLITE_NULL &&
		    !sq_col_u32(s, 10, &r.expiry_interval))
			return 0;
		r.expires_at = (int64_t)sqlite3_column_int64(s, 11);
		if (!sq_col_u32(s, 12, &r.will_delay))
			return 0;
		r.will_at = (int64_t)sqlite3_column_int64(s, 13);
		if (r.has_will)
			r.will_props = sq_col_props(s, 14, &r.will_props_len);
		return r.client_id != NULL ? v->session(v->arg, &r) : 0;
	}
	case SQ_LOAD_SUBS: {
		struct cairn_sub_rec r = {.client_id = sq_col_text(s, 0),
					  .filter = sq_col_text(s, 1),
					  .qos = (uint8_t)sqlite3_column_int(s, 2),
					  .options = (uint8_t)sqlite3_column_int(s, 3)};

		if (r.client_id == NULL || r.filter == NULL ||
		    !sq_qos_ok(sqlite3_column_int64(s, 2)) || !sq_col_u32(s, 4, &r.sub_id))
			return 0;
		return v->subscription(v->arg, &r);
	}
	case SQ_LOAD_MESSAGES:
	case SQ_LOAD_RETAINED: {
		struct cairn_msg_rec r = {0};
		int c = which == SQ_LOAD_MESSAGES ? 1 : 0;

		r.msg_id = which == SQ_LOAD_MESSAGES ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
		r.topic = sq_col_text(s, c);
		r.payload = sq_col_blob(s, c + 1, &r.payload_len);
		r.qos = (uint8_t)sqlite3_column_int(s, c + 2);
		r.retain = which == SQ_LOAD_MESSAGES ? sqlite3_column_int(s, 4) != 0 : true;
		/* expires_at_ms and props follow retain (messages) or qos. */
		r.expires_at = (int64_t)sqlite3_column_int64(s, c + 3 + (c == 1));
		r.props = sq_col_props(s, c + 4 + (c == 1), &r.props_len);
		if (r.topic == NULL || !sq_qos_ok(sqlite3_column_int64(s, c + 2)))
			return 0;
		return which == SQ_LOAD_MESSAGES ? v->message(v->arg, &r) : v->retained(v->arg, &r);
	}
	case SQ_LOAD_DELIVERIES: {
		struct cairn_delivery_rec r = {0};
		uint8_t state = 0;
		const char *state_text = sq_col_text(s, 5);
		bool state_ok =
		    state_text != NULL && bk_state_parse(state_text, strlen(state_text), &state);
		const char *ids_text = sq_col_text(s, 7);
		uint32_t *ids = NULL;
		size_t cap = 0;
		int rc = 0;

		r.client_id = sq_col_text(s, 0);
		r.seq = (uint64_t)sqlite3_column_int64(s, 1);
		r.msg_id = (uint64_t)sqlite3_column_int64(s, 2);
		r.packet_id = (uint16_t)sqlite3_column_int(s, 3);
		r.qos = (uint8_t)sqlite3_column_int(s, 4);
		r.retain = sqlite3_column_int(s, 6) != 0;
		/* sub_ids: NULL or "" for none, else "1,5,7" (bk_ids_format). */
		if (r.client_id != NULL && state_ok && sq_qos_ok(sqlite3_column_int64(s, 4)) &&
		    bk_ids_parse(ids_text, ids_text != NULL ? strlen(ids_text) : 0, &ids, &cap,
				 &r.n_sub_ids)) {
			r.state = state;
			r.sub_ids = r.n_sub_ids > 0 ? ids : NULL;
			rc = v->delivery(v->arg, &r);
		}
		free(ids);
		return rc;
	}
	case SQ_LOAD_INFLIGHT: {
		struct cairn_inflight_in_rec r = {sq_col_text(s, 0),
						  (uint16_t)sqlite3_column_int(s, 1)};

		return r.client_id != NULL ? v->inflight_in(v->arg, &r) : 0;
	}
	default:
		return CAIRN_EINVAL;
	}
}

static int sq_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	const struct {
		enum sq_stmt stmt;
		bool wanted;
	} order[] = {
	    {SQ_LOAD_SESSIONS, v->session != NULL},     {SQ_LOAD_SUBS, v->subscription != NULL},
	    {SQ_LOAD_MESSAGES, v->message != NULL},     {SQ_LOAD_DELIVERIES, v->delivery != NULL},
	    {SQ_LOAD_INFLIGHT, v->inflight_in != NULL}, {SQ_LOAD_RETAINED, v->retained != NULL},
	};

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		sqlite3_stmt *s = st->stmt[order[i].stmt];
		int rc = 0, step;

		if (!order[i].wanted)
			continue;
		while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW)
			rc = sq_visit_row(s, order[i].stmt, v);
		if (rc == 0 && step != SQLITE_DONE)
			rc = sq_map(step);
		sqlite3_reset(s);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ---- open and close ---- */

static void sq_free(struct cairn_store *st)
{
	/* The core closes with no commit in flight: the thread is idle. */
	bk_worker_free(st->worker);
	bk_log_clear(&st->committing);
	for (int i = 0; i < SQ_NSTMT; i++)
		sqlite3_finalize(st->stmt[i]);
	if (st->db != NULL)
		sqlite3_close(st->db);
	bk_log_clear(&st->staged);
	free(st->path);
	free(st);
}

static void sq_close(struct cairn_store *st)
{
	if (st == NULL)
		return;
	/* Uncommitted staged writes are discarded. */
	if (st->db != NULL && sq_in_txn(st))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	sq_free(st);
}

/* Run a PRAGMA that returns one text row; copy it into out. */
static int sq_pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);

	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);

		snprintf(out, outlen, "%s", t ? t : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		snprintf(out, outlen, "%s", "");
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc;
}

/* Returns 0 when the file is a healthy database (or new and empty),
 * CAIRN_ECORRUPT with the reason in why, or another code. */
static int sq_check(sqlite3 *db, char *why, size_t whylen)
{
	char res[128];
	int rc = sq_pragma_text(db, "PRAGMA quick_check", res, sizeof(res));

	if (rc != SQLITE_OK) {
		snprintf(why, whylen, "%s", sqlite3_errmsg(db));
		return sq_map(rc);
	}
	if (strcmp(res, "ok") != 0) {
		snprintf(why, whylen, "quick_check: %s", res);
		return CAIRN_ECORRUPT;
	}
	return 0;
}

/* Move a corrupt database (and its -wal and -shm) aside as
 * cairn.db.corrupt-<unix time>, never overwriting an earlier one. Returns
 * the new name (the caller frees it) or NULL with errno set. */
static char *sq_quarantine(const char *path)
{
	static const char *const sfx[] = {"-wal", "-shm"};
	char tag[48], *newpath;

	if (bk_quarantine_suffix(path, tag, sizeof(tag)) != 0)
		return NULL;
	newpath = bk_strf("%s%s", path, tag);
	if (rename(path, newpath) != 0) {
		int saved = errno;

		free(newpath);
		errno = saved;
		return NULL;
	}
	for (size_t i = 0; i < 2; i++) {
		char *from = bk_strf("%s%s", path, sfx[i]);
		char *to = bk_strf("%s%s", newpath, sfx[i]);

		rename(from, to); /* usually absent */
		free(from);
		free(to);
	}
	return newpath;
}

/* Bring the schema up to SQ_SCHEMA_VERSION in one transaction. */
static int sq_migrate(struct cairn_store *st, const struct cairn_store_options *opts, char *err,
		      size_t errlen)
{
	char buf[32];
	int rc, version = 0;

	rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto sqlerr;
	rc = sq_pragma_text(st->db,
			    "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
			    " AND name = 'schema_version'",
			    buf, sizeof(buf));
	if (rc != SQLITE_OK)
		goto sqlerr;
	if (strcmp(buf, "0") != 0) {
		rc = sq_pragma_text(st->db, "SELECT max(version) FROM schema_version", buf,
				    sizeof(buf));
		if (rc != SQLITE_OK)
			goto sqlerr;
		if (buf[0] == '\0') {
			bk_errf(err, errlen, "sqlite: %s: table schema_version is empty", st->path);
			rc = CAIRN_ECORRUPT;
			goto out;
		}
		version = atoi(buf);
	}
	if (version > SQ_SCHEMA_VERSION) {
		bk_errf(err, errlen,
			"sqlite: %s has schema version %d, newer than version %d this cairn knows",
			st->path, version, SQ_SCHEMA_VERSION);
		rc = CAIRN_EVERSION;
		goto out;
	}
	if (version == SQ_SCHEMA_VERSION) {
		sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
		return 0;
	}
	for (int v = version + 1; v <= SQ_SCHEMA_VERSION; v++) {
		rc = sqlite3_exec(st->db, sq_migrations[v], NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			goto sqlerr;
	}
	{
		char sql[96];

		snprintf(sql, sizeof(sql),
			 "DELETE FROM schema_version; INSERT INTO schema_version VALUES(%d)",
			 SQ_SCHEMA_VERSION);
		rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		goto sqlerr;
	if (version == 0)
		bk_logf(opts->log, opts->log_arg, CAIRN_LOG_NOTICE,
			"sqlite: %s: schema created at version %d", st->path, SQ_SCHEMA_VERSION);
	else
		bk_logf(opts->log, opts->log_arg, CAIRN_LOG_NOTICE,
			"sqlite: %s: migrated from schema version %d to %d", st->path, version,
			SQ_SCHEMA_VERSION);
	return 0;
sqlerr:
	bk_errf(err, errlen, "sqlite: %s: %s", st->path, sqlite3_errmsg(st->db));
	rc = sq_map(rc);
out:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* SQLite's process-wide settings, before the library initializes: no
 * memory statistics, whose counters take a global mutex around every
 * allocation (a tenth of the broker's user time with the store busy). Too
 * late once something else in the process initialized SQLite: the call
 * fails then, harmlessly. */
static void sq_global_config(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* Open the file, check it, and set the connection up. */
static int sq_open_db(struct cairn_store *st, const struct cairn_store_options *opts, char *err,
		      size_t errlen)
{
	const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	char why[256], res[32], *newpath;
	static pthread_once_t config_once = PTHREAD_ONCE_INIT;
	int rc;

	pthread_once(&config_once, sq_global_config);
	for (int attempt = 0;; attempt++) {
		bool existed = access(st->path, F_OK) == 0;

		rc = sqlite3_open_v2(st->path, &st->db, flags, NULL);
		if (rc == SQLITE_OK) {
			/* An existing file keeps the mode its operator chose; a
			 * new one is 0600 whatever the umask. */
			if (!existed)
				chmod(st->path, 0600);
			sqlite3_busy_timeout(st->db, 5000);
			rc = sq_check(st->db, why, sizeof(why));
		} else {
			snprintf(why, sizeof(why), "%s",
				 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
			rc = sq_map(rc);
		}
		if (rc == 0)
			break;
		sqlite3_close(st->db);
		st->db = NULL;
		if (rc != CAIRN_ECORRUPT || opts->on_corrupt != CAIRN_ON_CORRUPT_QUARANTINE ||
		    attempt > 0) {
			bk_errf(err, errlen, "sqlite: %s: %s", st->path, why);
			return rc;
		}
		newpath = sq_quarantine(st->path);
		if (newpath == NULL) {
			bk_errf(err, errlen, "sqlite: %s is corrupt (%s) and cannot be moved: %s",
				st->path, why, strerror(errno));
			return CAIRN_ECORRUPT;
		}
		bk_logf(opts->log, opts->log_arg, CAIRN_LOG_WARNING,
			"sqlite: %s is corrupt (%s); moved to %s, starting with an empty store",
			st->path, why, newpath);
		free(newpath);
	}

	rc = sq_pragma_text(st->db, "PRAGMA journal_mode = WAL", res, sizeof(res));
	if (rc == SQLITE_OK && strcasecmp(res, "wal") != 0) {
		bk_errf(err, errlen, "sqlite: %s: cannot enable WAL (journal mode is %s)", st->path,
			res);
		return CAIRN_EIO;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(st->db,
				  opts->durability == CAIRN_DURABILITY_FSYNC
				      ? "PRAGMA synchronous = FULL"
				      : "PRAGMA synchronous = NORMAL",
				  NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(st->db, "PRAGMA foreign_keys = OFF", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		bk_errf(err, errlen, "sqlite: %s: %s", st->path, sqlite3_errmsg(st->db));
		return sq_map(rc);
	}
	rc = sq_migrate(st, opts, err, errlen);
	if (rc != 0)
		return rc;
#ifdef CAIRN_FAULT_INJECTION
	rc = sq_page_knob_open(st, opts, err, errlen);
	if (rc != 0)
		return rc;
#endif
	for (int i = 0; i < SQ_NSTMT; i++) {
		rc = sqlite3_prepare_v2(st->db, sq_sql[i], -1, &st->stmt[i], NULL);
		if (rc != SQLITE_OK) {
			bk_errf(err, errlen, "sqlite: %s: %s", st->path, sqlite3_errmsg(st->db));
			return sq_map(rc);
		}
	}
	return 0;
}

static int sq_open(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		   size_t errlen)
{
	struct cairn_store *st;
	mode_t old_umask;
	int rc;

	*out = NULL;
	if (opts->location == NULL || opts->location[0] == '\0') {
		bk_errf(err, errlen, "sqlite: persistence_location is not set");
		return CAIRN_EINVAL;
	}
	st = bk_xcalloc(1, sizeof(*st));
	st->path = bk_strf("%s/cairn.db", opts->location);

	/* Files SQLite creates (the database, -wal, -shm) get no group or
	 * other permissions, whatever the process umask is. */
	old_umask = umask(077);
	rc = bk_location_dir(opts->location, "sqlite", err, errlen);
	if (rc == 0)
		rc = sq_open_db(st, opts, err, errlen);
	umask(old_umask);
	if (rc == 0 && opts->base != NULL && (st->worker = bk_worker_new(opts->base)) == NULL) {
		bk_errf(err, errlen, "sqlite: %s: cannot start the commit thread: %s", st->path,
			strerror(errno));
		rc = CAIRN_ENOMEM;
	}
	if (rc != 0) {
		sq_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

const struct cairn_store_ops cairn_store_sqlite = {
    .version = 7, /* the shared-store slots stay NULL: not shareable */
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .load = sq_load,
    .session_put = sq_session_put,
    .session_delete = sq_session_delete,
    .sub_put = sq_sub_put,
    .sub_delete = sq_sub_delete,
    .message_put = sq_message_put,
    .message_delete = sq_message_delete,
    .delivery_put = sq_delivery_put,
    .delivery_delete = sq_delivery_delete,
    .inflight_in_put = sq_inflight_in_put,
    .inflight_in_delete = sq_inflight_in_delete,
    .retained_put = sq_retained_put,
    .retained_delete = sq_retained_delete,
    .commit = sq_commit,
    .flags = CAIRN_STORE_LOCAL_FILES | CAIRN_STORE_ASYNC_COMMIT,
};
