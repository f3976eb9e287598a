/*
 * The Redis backend's blocking hiredis context, used at start-up only: open()
 * connects it (waiting out a server still loading its data), checks the
 * schema version and the server's persistence settings; load() SCANs and
 * pipelines every record to the visitor, then closes it for good.
 */
#include "redis.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t rd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rd_sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run one command on the blocking context. Returns the reply (free it) or
 * NULL when the link failed; *rc then says why. */
redisReply *rd_sync_cmd(struct cairn_store *st, int argc, const char **argv, int *rc)
{
	redisReply *reply = redisCommandArgv(st->sync, argc, argv, NULL);

	if (reply == NULL)
		*rc = st->sync->err == REDIS_ERR_OOM ? CAIRN_ENOMEM : CAIRN_EUNAVAILABLE;
	else if (st->rcluster && reply->type == REDIS_REPLY_ERROR)
		reply = rd_sync_follow(st, reply, argc, argv, rc);
	return reply;
}

/*
 * Connect the blocking context, authenticate, select the database and wait
 * until the server answers PING (a restarting Redis answers LOADING while it
 * reads its append-only file). Retries until redis_connect_timeout.
 */
int rd_sync_connect(struct cairn_store *st, char *err, size_t errlen)
{
	int64_t deadline = rd_now_ms() + st->timeout_ms;
	char last[256] = "timed out";
	int rc = 0;

	for (;;) {
		int64_t left = deadline - rd_now_ms();
		int64_t step = left < 1000 ? (left > 10 ? left : 10) : 1000;
		struct timeval tv = {(time_t)(step / 1000), (long)(step % 1000) * 1000};
		redisContext *c;
		redisReply *reply;
		const char *ping[] = {"PING"};

		c = st->unix_path != NULL ? redisConnectUnixWithTimeout(st->unix_path, tv)
					  : redisConnectWithTimeout(st->host, st->port, tv);
		if (c == NULL) {
			bk_errf(err, errlen, "redis at %s: out of memory", st->where);
			return CAIRN_ENOMEM;
		}
		if (c->err) {
			snprintf(last, sizeof(last), "%s", c->errstr);
			redisFree(c);
			goto retry;
		}
		tv.tv_sec = st->timeout_ms / 1000;
		tv.tv_usec = (st->timeout_ms % 1000) * 1000;
		if (st->timeout_ms > 0)
			redisSetTimeout(c, tv);
		st->sync = c;
		if (st->password != NULL) {
			const char *argv[] = {"AUTH", st->password};

			reply = rd_sync_cmd(st, 2, argv, &rc);
			if (reply == NULL)
				goto lost;
			if (reply->type == REDIS_REPLY_ERROR) {
				bk_errf(err, errlen, "redis at %s: AUTH refused: %s", st->where,
					reply->str);
				freeReplyObject(reply);
				return CAIRN_EINVAL;
			}
			freeReplyObject(reply);
		}
		if (st->db != 0) {
			char dbs[16];
			const char *argv[] = {"SELECT", dbs};

			snprintf(dbs, sizeof(dbs), "%d", st->db);
			reply = rd_sync_cmd(st, 2, argv, &rc);
			if (reply == NULL)
				goto lost;
			if (reply->type == REDIS_REPLY_ERROR) {
				bk_errf(err, errlen, "redis at %s: SELECT %d refused: %s",
					st->where, st->db, reply->str);
				freeReplyObject(reply);
				return CAIRN_EINVAL;
			}
			freeReplyObject(reply);
		}
		reply = rd_sync_cmd(st, 1, ping, &rc);
		if (reply == NULL)
			goto lost;
		if (reply->type != REDIS_REPLY_ERROR) {
			freeReplyObject(reply);
			return 0;
		}
		snprintf(last, sizeof(last), "%s", reply->str);
		freeReplyObject(reply);
		if (strncmp(last, "LOADING", 7) != 0 && strncmp(last, "BUSY", 4) != 0) {
			bk_errf(err, errlen, "redis at %s: PING refused: %s", st->where, last);
			return CAIRN_EIO;
		}
		redisFree(st->sync);
		st->sync = NULL;
		goto retry;
	lost:
		if (rc == CAIRN_ENOMEM) {
			bk_errf(err, errlen, "redis at %s: out of memory", st->where);
			return rc;
		}
		snprintf(last, sizeof(last), "%s", st->sync->errstr);
		redisFree(st->sync);
		st->sync = NULL;
	retry:
		left = deadline - rd_now_ms();
		if (left <= 0) {
			bk_errf(err, errlen, "cannot reach redis at %s within %d ms: %s", st->where,
				st->timeout_ms, last);
			return CAIRN_EUNAVAILABLE;
		}
		rd_sleep_ms(left < 100 ? left : 100);
	}
}

void rd_sync_close(struct cairn_store *st)
{
	if (st->sync != NULL)
		redisFree(st->sync);
	st->sync = NULL;
}

/* Run a SET of key (argv, argc) on the blocking context: 0, or an error
 * code with err filled in. */
static int rd_sync_set(struct cairn_store *st, int argc, const char **argv, const char *key,
		       char *err, size_t errlen)
{
	int rc = 0;
	redisReply *reply = rd_sync_cmd(st, argc, argv, &rc);

	if (reply == NULL) {
		bk_errf(err, errlen, "redis at %s: %s", st->where, st->sync->errstr);
		return rc;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		bk_errf(err, errlen, "redis at %s: cannot write %s: %s", st->where, key,
			reply->str);
		rc = CAIRN_EIO;
	}
	freeReplyObject(reply);
	return rc;
}

/* Create or check PREFIX schema_version. */
int rd_sync_check_schema(struct cairn_store *st, char *err, size_t errlen)
{
	char *key = rd_key(st, "schema_version", NULL);
	const char *get[] = {"GET", key};
	char want[16];
	const char *set[] = {"SET", key, want, "NX"};
	redisReply *reply = NULL;
	uint64_t v;
	int rc = 0;

	snprintf(want, sizeof(want), "%d", RD_SCHEMA_VERSION);
	for (int attempt = 0; attempt < 2; attempt++) {
		reply = rd_sync_cmd(st, 2, get, &rc);
		if (reply == NULL) {
			bk_errf(err, errlen, "redis at %s: %s", st->where, st->sync->errstr);
			goto out;
		}
		if (reply->type != REDIS_REPLY_NIL)
			break;
		freeReplyObject(reply);
		reply = NULL;
		rc = rd_sync_set(st, 4, set, key, err, errlen);
		if (rc != 0)
			goto out;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_STRING ||
	    !rd_parse_u64(reply->str, reply->len, UINT32_MAX, &v) || v == 0) {
		bk_errf(err, errlen, "redis at %s: %s is not a schema version", st->where, key);
		rc = CAIRN_ECORRUPT;
	} else if (v > RD_SCHEMA_VERSION) {
		bk_errf(err, errlen,
			"redis at %s: %s is %" PRIu64
			", written by a newer cairn (this one knows %d)",
			st->where, key, v, RD_SCHEMA_VERSION);
		rc = CAIRN_EVERSION;
	} else if (v < RD_SCHEMA_VERSION) {
		/* Every record of an older layout reads in this one: the
		 * migration is the new number, after which an older cairn
		 * refuses the store instead of misreading the new fields. */
		const char *mig[] = {"SET", key, want};

		rc = rd_sync_set(st, 3, mig, key, err, errlen);
		if (rc != 0)
			goto out;
		rd_log(st, CAIRN_LOG_NOTICE,
		       "redis at %s: %s: migrated from schema version %" PRIu64 " to %d", st->where,
		       key, v, RD_SCHEMA_VERSION);
	}
out:
	if (reply != NULL)
		freeReplyObject(reply);
	free(key);
	return rc;
}

/* Value of a CONFIG parameter, or "" when CONFIG is refused (it may be
 * renamed away on managed servers). */
static void rd_config_get(struct cairn_store *st, const char *name, char *out, size_t outlen)
{
	const char *argv[] = {"CONFIG", "GET", name};
	redisReply *reply;
	int rc;

	out[0] = '\0';
	reply = rd_sync_cmd(st, 3, argv, &rc);
	if (reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[1]->type == REDIS_REPLY_STRING)
		snprintf(out, outlen, "%s", reply->element[1]->str);
	freeReplyObject(reply);
}

/* Redis decides what reaches the disk: say so when its settings fall short
 * of persistence_durability. */
void rd_sync_check_durability(struct cairn_store *st, enum cairn_durability want)
{
	char aof[16], fsync[16];

	rd_config_get(st, "appendonly", aof, sizeof(aof));
	rd_config_get(st, "appendfsync", fsync, sizeof(fsync));
	if (aof[0] == '\0') {
		rd_log(st, CAIRN_LOG_INFO,
		       "redis at %s: CONFIG GET refused; cannot check appendonly", st->where);
		return;
	}
	if (strcmp(aof, "yes") != 0)
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis at %s: appendonly is %s: a commit is not on disk until the next "
		       "snapshot",
		       st->where, aof);
	else if (want == CAIRN_DURABILITY_FSYNC && strcmp(fsync, "always") != 0)
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis at %s: appendfsync is %s, not always: durability fsync is not met",
		       st->where, fsync);
}

/* ---- load ---- */

/* A list of strings (keys or client ids) with their lengths. */
struct rd_strv {
	char **v;
	size_t n, cap;
};

static void rd_strv_push(struct rd_strv *sv, const char *s, size_t len)
{
	if (sv->n == sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 64;
		sv->v = bk_xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	sv->v[sv->n++] = bk_xstrndup(s, len);
}

static void rd_strv_cleanup(struct rd_strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	memset(sv, 0, sizeof(*sv));
}

static int rd_strcmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and drop duplicates (SCAN may return a key twice). */
static void rd_strv_sort_unique(struct rd_strv *sv)
{
	size_t j = 0;

	if (sv->n == 0)
		return;
	qsort(sv->v, sv->n, sizeof(*sv->v), rd_strcmp_p);
	for (size_t i = 0; i < sv->n; i++) {
		if (j > 0 && strcmp(sv->v[j - 1], sv->v[i]) == 0)
			free(sv->v[i]);
		else
			sv->v[j++] = sv->v[i];
	}
	sv->n = j;
}

/* Escape SCAN's glob characters in s. */
static char *rd_glob_escape(const char *s)
{
	char *out = bk_xmalloc(strlen(s) * 2 + 1), *p = out;

	for (; *s != '\0'; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return out;
}

/*
 * SCAN for the keys "PREFIX kind:*" and collect the part after the colon
 * (a client id or a message id), sorted, without duplicates. Keys holding
 * a NUL byte cannot be ours and are skipped.
 */
static int rd_scan_ids(struct cairn_store *st, const char *kind, struct rd_strv *ids)
{
	char *esc = rd_glob_escape(st->prefix);
	size_t head = strlen(st->prefix) + strlen(kind) + 1;
	char *pattern = bk_xmalloc(strlen(esc) + strlen(kind) + 3);
	char cursor[32] = "0";
	int rc = 0;

	sprintf(pattern, "%s%s:*", esc, kind);
	do {
		const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", RD_SCAN_COUNT};
		redisReply *reply = rd_sync_cmd(st, 6, argv, &rc), *keys;

		if (reply == NULL)
			break;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		    reply->element[0]->type != REDIS_REPLY_STRING ||
		    reply->element[0]->len >= sizeof(cursor) ||
		    reply->element[1]->type != REDIS_REPLY_ARRAY) {
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s: SCAN failed: %s", st->where,
			       reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply");
			freeReplyObject(reply);
			rc = CAIRN_EIO;
			break;
		}
		memcpy(cursor, reply->element[0]->str, reply->element[0]->len + 1);
		keys = reply->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			const redisReply *k = keys->element[i];

			if (k->type != REDIS_REPLY_STRING || (size_t)k->len <= head ||
			    memchr(k->str, '\0', k->len) != NULL)
				continue;
			rd_strv_push(ids, k->str + head, k->len - head);
		}
		freeReplyObject(reply);
	} while (strcmp(cursor, "0") != 0);
	free(pattern);
	free(esc);
	rd_strv_sort_unique(ids);
	return rc;
}

/* The value of a field in an HGETALL reply, or NULL. */
static const redisReply *rd_hget(const redisReply *h, const char *field)
{
	size_t fl = strlen(field);

	for (size_t i = 0; i + 1 < h->elements; i += 2)
		if ((size_t)h->element[i]->len == fl && memcmp(h->element[i]->str, field, fl) == 0)
			return h->element[i + 1];
	return NULL;
}

static bool rd_hget_u64(const redisReply *h, const char *field, uint64_t max, uint64_t *out)
{
	const redisReply *v = rd_hget(h, field);

	return v != NULL && rd_parse_u64(v->str, v->len, max, out);
}

/* An optional field: absent leaves *out (its default) alone; false when
 * present and bad. */
static bool rd_hget_opt_u64(const redisReply *h, const char *field, uint64_t max, uint64_t *out)
{
	const redisReply *v = rd_hget(h, field);

	return v == NULL || rd_parse_u64(v->str, v->len, max, out);
}

/* An optional signed field: absent is 0; false when present and bad. */
static bool rd_hget_i64(const redisReply *h, const char *field, int64_t *out)
{
	const redisReply *v = rd_hget(h, field);

	*out = 0;
	return v == NULL || rd_parse_i64(v->str, v->len, out);
}

static int rd_corrupt(struct cairn_store *st, const char *kind, const char *id, const char *what)
{
	rd_log(st, CAIRN_LOG_ERROR, "redis at %s: key %s%s:%s: %s", st->where, st->prefix, kind, id,
	       what);
	return CAIRN_ECORRUPT;
}

/*
 * How load() reads one kind of record: the commands to send per id
 * (pipelined RD_PIPELINE ids at a time) and what to do with their replies.
 */
struct rd_reader {
	const char *kind;                         /* the SCAN pattern's kind */
	int (*cmp)(const void *a, const void *b); /* id order; NULL: strcmp */
	int ncmd;
	void (*append)(struct cairn_store *st, const char *id);
	int (*visit)(struct cairn_store *st, const char *id, redisReply **r,
		     const struct cairn_store_visitor *v);
};

static void rd_append(struct cairn_store *st, const char *cmd, const char *kind, const char *id,
		      const char *a1, const char *a2)
{
	char *key = rd_key(st, kind, id);
	const char *argv[] = {cmd, key, a1, a2};

	redisAppendCommandArgv(st->sync, a1 == NULL ? 2 : a2 == NULL ? 3 : 4, argv, NULL);
	free(key);
}

static int rd_read(struct cairn_store *st, const struct rd_reader *rd,
		   const struct cairn_store_visitor *v)
{
	struct rd_strv ids = {0};
	redisReply *r[4] = {NULL};
	int rc = rd_scan_ids(st, rd->kind, &ids);

	if (rd->cmp != NULL && ids.n > 0)
		qsort(ids.v, ids.n, sizeof(*ids.v), rd->cmp);
	for (size_t i = 0; rc == 0 && i < ids.n; i += RD_PIPELINE) {
		size_t end = i + RD_PIPELINE < ids.n ? i + RD_PIPELINE : ids.n;

		for (size_t j = i; j < end; j++)
			rd->append(st, ids.v[j]);
		for (size_t j = i; rc == 0 && j < end; j++) {
			for (int k = 0; k < rd->ncmd; k++) {
				void *p = NULL;

				if (redisGetReply(st->sync, &p) != REDIS_OK || p == NULL) {
					rc = st->sync->err == REDIS_ERR_OOM ? CAIRN_ENOMEM
									    : CAIRN_EUNAVAILABLE;
					rd_log(st, CAIRN_LOG_ERROR, "redis at %s: load: %s",
					       st->where, st->sync->errstr);
					break;
				}
				r[k] = p;
				if (r[k]->type == REDIS_REPLY_ERROR) {
					rd_log(st, CAIRN_LOG_ERROR, "redis at %s: load: %s",
					       st->where, r[k]->str);
					rc = CAIRN_EIO;
				}
			}
			if (rc == 0)
				rc = rd->visit(st, ids.v[j], r, v);
			for (int k = 0; k < rd->ncmd; k++) {
				if (r[k] != NULL)
					freeReplyObject(r[k]);
				r[k] = NULL;
			}
		}
	}
	/* After an error replies may still be queued: load() drops the
	 * blocking context anyway. */
	rd_strv_cleanup(&ids);
	return rc;
}

static void rd_append_session(struct cairn_store *st, const char *id)
{
	rd_append(st, "HGETALL", "session", id, NULL, NULL);
}

int rd_visit_session(struct cairn_store *st, const char *id, redisReply **r,
		     const struct cairn_store_visitor *v)
{
	const redisReply *h = r[0], *user, *topic, *payload, *wprops;
	struct cairn_session_rec rec = {.client_id = id, .expiry_interval = CAIRN_EXPIRY_NEVER};
	uint64_t npid, conn, wq = 0, wr = 0, dropped = 0, pl = 0, exp = CAIRN_EXPIRY_NEVER,
			     wdelay = 0;
	int64_t exp_at = 0, will_at = 0;

	if (h->type != REDIS_REPLY_ARRAY)
		return rd_corrupt(st, "session", id, "not a hash");
	if (h->elements == 0)
		return 0; /* deleted since SCAN saw it */
	if (!rd_hget_u64(h, "next_packet_id", UINT16_MAX, &npid) ||
	    !rd_hget_u64(h, "connected", 1, &conn))
		return rd_corrupt(st, "session", id, "bad next_packet_id or connected");
	/* Absent in records written before the field existed: 0. */
	if (!rd_hget_opt_u64(h, "dropped", UINT64_MAX, &dropped))
		return rd_corrupt(st, "session", id, "bad dropped");
	/* The version 2 fields, each absent in older records. */
	if (!rd_hget_opt_u64(h, "protocol_level", UINT8_MAX, &pl) ||
	    !rd_hget_opt_u64(h, "expiry_interval", UINT32_MAX, &exp) ||
	    !rd_hget_i64(h, "expires_at", &exp_at) ||
	    !rd_hget_opt_u64(h, "will_delay", UINT32_MAX, &wdelay) ||
	    !rd_hget_i64(h, "will_at", &will_at))
		return rd_corrupt(st, "session", id, "bad version 2 field");
	wprops = rd_hget(h, "will_props");
	if (wprops != NULL && (uint64_t)wprops->len > UINT32_MAX)
		return rd_corrupt(st, "session", id, "bad will_props");
	rec.protocol_level = (uint8_t)pl;
	rec.expiry_interval = (uint32_t)exp;
	rec.expires_at = exp_at;
	rec.will_delay = (uint32_t)wdelay;
	rec.will_at = will_at;
	user = rd_hget(h, "username");
	topic = rd_hget(h, "will_topic");
	payload = rd_hget(h, "will_payload");
	if (topic != NULL &&
	    (payload == NULL || (uint64_t)payload->len > UINT32_MAX ||
	     !rd_hget_u64(h, "will_qos", 2, &wq) || !rd_hget_u64(h, "will_retain", 1, &wr)))
		return rd_corrupt(st, "session", id, "incomplete will");
	rec.username = user != NULL ? user->str : NULL;
	rec.next_packet_id = (uint16_t)npid;
	rec.connected = conn != 0;
	rec.dropped = dropped;
	rec.has_will = topic != NULL;
	if (rec.has_will) {
		rec.will_topic = topic->str;
		rec.will_payload = (const uint8_t *)payload->str;
		rec.will_payload_len = (uint32_t)payload->len;
		rec.will_qos = (uint8_t)wq;
		rec.will_retain = wr != 0;
		if (wprops != NULL && wprops->len > 0) {
			rec.will_props = (const uint8_t *)wprops->str;
			rec.will_props_len = (uint32_t)wprops->len;
		}
	}
	return v->session != NULL ? v->session(v->arg, &rec) : 0;
}

static void rd_append_subs(struct cairn_store *st, const char *id)
{
	rd_append(st, "HGETALL", "subs", id, NULL, NULL);
}

/* Compares two HGETALL field/value pairs by field. */
static int rd_pair_cmp(const void *a, const void *b)
{
	const redisReply *x = *(redisReply *const *)a, *y = *(redisReply *const *)b;
	size_t n = x->len < y->len ? (size_t)x->len : (size_t)y->len;
	int c = memcmp(x->str, y->str, n);

	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

int rd_visit_subs(struct cairn_store *st, const char *id, redisReply **r,
		  const struct cairn_store_visitor *v)
{
	redisReply *h = r[0];
	size_t n;
	int rc = 0;

	if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
		return rd_corrupt(st, "subs", id, "not a hash");
	n = h->elements / 2;
	/* Field/value pairs are adjacent: sort them as two-element units. */
	if (n > 0)
		qsort(h->element, n, 2 * sizeof(*h->element), rd_pair_cmp);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const redisReply *f = h->element[2 * i], *q = h->element[2 * i + 1];
		struct cairn_sub_rec rec = {.client_id = id, .filter = f->str};
		uint64_t qos, opts = 0, sub_id = 0, since_ms = 0, since_seq = 0;
		/* "qos", "qos:options:sub_id" or "qos:options:sub_id:ms-seq" */
		const char *c1 = memchr(q->str, ':', q->len), *c2 = NULL, *end = q->str + q->len;
		const char *c3 = NULL, *dash = NULL, *idend = end;

		if (c1 != NULL && (c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1))) == NULL)
			return rd_corrupt(st, "subs", id, "bad value");
		if (c2 != NULL && (c3 = memchr(c2 + 1, ':', (size_t)(end - c2 - 1))) != NULL) {
			idend = c3;
			dash = memchr(c3 + 1, '-', (size_t)(end - c3 - 1));
			if (dash == NULL ||
			    !rd_parse_u64(c3 + 1, (size_t)(dash - c3 - 1), UINT64_MAX, &since_ms) ||
			    !rd_parse_u64(dash + 1, (size_t)(end - dash - 1), UINT64_MAX,
					  &since_seq))
				return rd_corrupt(st, "subs", id, "bad log position");
		}
		if (!rd_parse_u64(q->str, c1 != NULL ? (size_t)(c1 - q->str) : q->len, 2, &qos) ||
		    (c1 != NULL &&
		     (!rd_parse_u64(c1 + 1, (size_t)(c2 - c1 - 1), UINT8_MAX, &opts) ||
		      !rd_parse_u64(c2 + 1, (size_t)(idend - c2 - 1), UINT32_MAX, &sub_id))))
			return rd_corrupt(st, "subs", id, "bad qos, options or sub_id");
		rec.qos = (uint8_t)qos;
		rec.options = (uint8_t)opts;
		rec.sub_id = (uint32_t)sub_id;
		rec.since_ms = since_ms;
		rec.since_seq = since_seq;
		if (v->subscription != NULL)
			rc = v->subscription(v->arg, &rec);
	}
	return rc;
}

/* Canonical decimals sort numerically by length, then bytes. */
static int rd_numcmp_p(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	size_t xl = strlen(x), yl = strlen(y);

	return xl != yl ? (xl > yl) - (xl < yl) : strcmp(x, y);
}

static void rd_append_message(struct cairn_store *st, const char *id)
{
	rd_append(st, "HGETALL", "msg", id, NULL, NULL);
}

static int rd_visit_message(struct cairn_store *st, const char *id, redisReply **r,
			    const struct cairn_store_visitor *v)
{
	const redisReply *h = r[0], *topic, *payload, *props;
	struct cairn_msg_rec rec = {0};
	uint64_t qos, retain;

	if (!rd_parse_u64(id, strlen(id), UINT64_MAX, &rec.msg_id))
		return rd_corrupt(st, "msg", id, "not a message id");
	if (h->type != REDIS_REPLY_ARRAY)
		return rd_corrupt(st, "msg", id, "not a hash");
	if (h->elements == 0)
		return 0;
	topic = rd_hget(h, "topic");
	payload = rd_hget(h, "payload");
	if (topic == NULL || payload == NULL || (uint64_t)payload->len > UINT32_MAX ||
	    !rd_hget_u64(h, "qos", 2, &qos) || !rd_hget_u64(h, "retain", 1, &retain))
		return rd_corrupt(st, "msg", id, "missing or bad field");
	props = rd_hget(h, "props");
	if (!rd_hget_i64(h, "expires_at", &rec.expires_at) ||
	    (props != NULL && (uint64_t)props->len > UINT32_MAX))
		return rd_corrupt(st, "msg", id, "bad expires_at or props");
	if (props != NULL && props->len > 0) {
		rec.props = (const uint8_t *)props->str;
		rec.props_len = (uint32_t)props->len;
	}
	rec.topic = topic->str;
	rec.payload = (const uint8_t *)payload->str;
	rec.payload_len = (uint32_t)payload->len;
	rec.qos = (uint8_t)qos;
	rec.retain = retain != 0;
	return v->message != NULL ? v->message(v->arg, &rec) : 0;
}

static void rd_append_deliveries(struct cairn_store *st, const char *id)
{
	rd_append(st, "HGETALL", "delivery", id, NULL, NULL);
}

/* Parses "msg_id:packet_id:qos:state[:retain:ids]", ids "1,5,7" or
 * empty, into rec; the ids go to *ids (grown as needed, *cap entries). */
static bool rd_delivery_parse(const char *s, size_t len, struct cairn_delivery_rec *rec,
			      uint32_t **ids, size_t *cap)
{
	const char *end = s + len, *f[6] = {NULL};
	size_t fl[6] = {0}; /* no ids field: none */
	uint64_t msg, pid, qos, retain = 0;
	int nf = 0;

	while (nf < 6) {
		const char *c = nf < 5 ? memchr(s, ':', (size_t)(end - s)) : NULL;

		f[nf] = s;
		fl[nf] = (size_t)((c != NULL ? c : end) - s);
		nf++;
		if (c == NULL)
			break;
		s = c + 1;
	}
	if ((nf != 4 && nf != 6) || !rd_parse_u64(f[0], fl[0], UINT64_MAX, &msg) ||
	    !rd_parse_u64(f[1], fl[1], UINT16_MAX, &pid) || !rd_parse_u64(f[2], fl[2], 2, &qos) ||
	    !bk_state_parse(f[3], fl[3], &rec->state) ||
	    (nf == 6 && !rd_parse_u64(f[4], fl[4], 1, &retain)))
		return false;
	rec->msg_id = msg;
	rec->packet_id = (uint16_t)pid;
	rec->qos = (uint8_t)qos;
	rec->retain = retain != 0;
	rec->sub_ids = NULL;
	if (!bk_ids_parse(f[5], fl[5], ids, cap, &rec->n_sub_ids))
		return false;
	if (rec->n_sub_ids > 0)
		rec->sub_ids = *ids;
	return true;
}

static int rd_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

struct rd_seq_val {
	uint64_t seq;
	const redisReply *val;
};

static int rd_seq_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct rd_seq_val *)a)->seq, y = ((const struct rd_seq_val *)b)->seq;

	return (x > y) - (x < y);
}

/*
 * The hash maps each sequence number to its record; the client's queue
 * order is the order of the numbers, sorted here (one pass and a sort, so
 * a session with 100,000 queued messages loads in linear-log time).
 */
int rd_visit_deliveries(struct cairn_store *st, const char *id, redisReply **r,
			const struct cairn_store_visitor *v)
{
	const redisReply *h = r[0];
	struct rd_seq_val *sv = NULL;
	uint32_t *ids = NULL;
	size_t n, cap = 0;
	int rc = 0;

	if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
		return rd_corrupt(st, "delivery", id, "wrong type");
	n = h->elements / 2;
	sv = bk_xmalloc((n + 1) * sizeof(*sv));
	for (size_t i = 0; i < n; i++) {
		const redisReply *f = h->element[2 * i];

		if (f->type != REDIS_REPLY_STRING ||
		    !rd_parse_u64(f->str, f->len, UINT64_MAX, &sv[i].seq)) {
			rc = rd_corrupt(st, "delivery", id, "field is not a seq");
			goto out;
		}
		sv[i].val = h->element[2 * i + 1];
	}
	qsort(sv, n, sizeof(*sv), rd_seq_cmp);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct cairn_delivery_rec rec = {.client_id = id, .seq = sv[i].seq};

		if (sv[i].val->type != REDIS_REPLY_STRING ||
		    !rd_delivery_parse(sv[i].val->str, sv[i].val->len, &rec, &ids, &cap)) {
			rc = rd_corrupt(st, "delivery", id, "bad record");
			goto out;
		}
		if (v->delivery != NULL)
			rc = v->delivery(v->arg, &rec);
	}
out:
	free(ids);
	free(sv);
	return rc;
}

static void rd_append_inflight(struct cairn_store *st, const char *id)
{
	rd_append(st, "SMEMBERS", "inflight_in", id, NULL, NULL);
}

int rd_visit_inflight(struct cairn_store *st, const char *id, redisReply **r,
		      const struct cairn_store_visitor *v)
{
	const redisReply *s = r[0];
	uint64_t *pids;
	int rc = 0;

	if (s->type != REDIS_REPLY_ARRAY)
		return rd_corrupt(st, "inflight_in", id, "not a set");
	pids = bk_xmalloc((s->elements + 1) * sizeof(*pids));
	for (size_t i = 0; i < s->elements; i++) {
		if (!rd_parse_u64(s->element[i]->str, s->element[i]->len, UINT16_MAX, &pids[i]) ||
		    pids[i] == 0) {
			rc = rd_corrupt(st, "inflight_in", id, "member is not a packet id");
			goto out;
		}
	}
	qsort(pids, s->elements, sizeof(*pids), rd_u64_cmp);
	for (size_t i = 0; rc == 0 && i < s->elements; i++) {
		struct cairn_inflight_in_rec rec = {.client_id = id,
						    .packet_id = (uint16_t)pids[i]};

		if (v->inflight_in != NULL)
			rc = v->inflight_in(v->arg, &rec);
	}
out:
	free(pids);
	return rc;
}

/*
 * A retained value: "<qos>:<payload>", or "<qos>;<expires_at>;<props_len>;
 * <props><payload>" for a message with an expiry or properties.
 */
bool rd_retained_parse(const char *s, size_t len, struct cairn_msg_rec *rec)
{
	const char *end = s + len, *p, *c;
	uint64_t qos, plen;

	if (len < 2 || !rd_parse_u64(s, 1, 2, &qos))
		return false;
	rec->qos = (uint8_t)qos;
	p = s + 2;
	if (s[1] == ';') {
		if ((c = memchr(p, ';', (size_t)(end - p))) == NULL ||
		    !rd_parse_i64(p, (size_t)(c - p), &rec->expires_at))
			return false;
		p = c + 1;
		if ((c = memchr(p, ';', (size_t)(end - p))) == NULL ||
		    !rd_parse_u64(p, (size_t)(c - p), UINT32_MAX, &plen) ||
		    plen > (uint64_t)(end - c - 1))
			return false;
		p = c + 1;
		rec->props = plen > 0 ? (const uint8_t *)p : NULL;
		rec->props_len = (uint32_t)plen;
		p += plen;
	} else if (s[1] != ':') {
		return false;
	}
	if ((uint64_t)(end - p) > UINT32_MAX)
		return false;
	rec->payload = (const uint8_t *)p;
	rec->payload_len = (uint32_t)(end - p);
	return true;
}

/*
 * Retained messages: HSCAN the one hash, then visit in topic order. A
 * value is "<qos>:<payload>"; msg_id is not kept (it is informational).
 */
static int rd_load_retained_key(struct cairn_store *st, const struct cairn_store_visitor *v,
				char *key)
{
	char cursor[32] = "0";
	redisReply **pairs = NULL, **all = NULL;
	size_t n = 0, cap = 0, nall = 0, capall = 0;
	int rc = 0;

	do {
		const char *argv[] = {"HSCAN", key, cursor, "COUNT", RD_SCAN_COUNT};
		redisReply *reply = rd_sync_cmd(st, 5, argv, &rc), *kv;

		if (reply == NULL)
			goto out;
		if (nall == capall) {
			capall = capall ? capall * 2 : 16;
			all = bk_xrealloc(all, capall * sizeof(*all));
		}
		all[nall++] = reply; /* kept until the visits are done */
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		    reply->element[0]->type != REDIS_REPLY_STRING ||
		    reply->element[0]->len >= sizeof(cursor) ||
		    reply->element[1]->type != REDIS_REPLY_ARRAY) {
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s: HSCAN %s failed: %s", st->where,
			       key, reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply");
			rc = reply->type == REDIS_REPLY_ERROR ? CAIRN_EIO : CAIRN_ECORRUPT;
			goto out;
		}
		memcpy(cursor, reply->element[0]->str, reply->element[0]->len + 1);
		kv = reply->element[1];
		for (size_t i = 0; i + 1 < kv->elements; i += 2) {
			if (n + 2 > cap) {
				cap = cap ? cap * 2 : 64;
				pairs = bk_xrealloc(pairs, cap * sizeof(*pairs));
			}
			pairs[n++] = kv->element[i];
			pairs[n++] = kv->element[i + 1];
		}
	} while (strcmp(cursor, "0") != 0);

	if (n > 0)
		qsort(pairs, n / 2, 2 * sizeof(*pairs), rd_pair_cmp);
	for (size_t i = 0; rc == 0 && i < n; i += 2) {
		const redisReply *t = pairs[i], *val = pairs[i + 1];
		struct cairn_msg_rec rec = {.topic = t->str, .retain = true};

		if (i > 0 && rd_pair_cmp(&pairs[i - 2], &pairs[i]) == 0)
			continue; /* HSCAN may return a field twice */
		if (!rd_retained_parse(val->str, (size_t)val->len, &rec)) {
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s: key %s: bad value for topic %s",
			       st->where, key, t->str);
			rc = CAIRN_ECORRUPT;
			break;
		}
		if (v->retained != NULL)
			rc = v->retained(v->arg, &rec);
	}
out:
	for (size_t i = 0; i < nall; i++)
		freeReplyObject(all[i]);
	free(all);
	free(pairs);
	free(key);
	return rc;
}

/* Cluster mode keeps a retained hash per partition of the log. */
static int rd_load_retained(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	int rc = 0;

	if (!st->cluster || st->partitions <= 1)
		return rd_load_retained_key(st, v, rd_key(st, "retained", NULL));
	for (uint32_t p = 0; rc == 0 && p < st->partitions; p++)
		rc = rd_load_retained_key(st, v, rd_cluster_part_key(st, "retained", p));
	return rc;
}

static const struct rd_reader rd_readers[] = {
    {"session", NULL, 1, rd_append_session, rd_visit_session},
    {"subs", NULL, 1, rd_append_subs, rd_visit_subs},
    {"msg", rd_numcmp_p, 1, rd_append_message, rd_visit_message},
    {"delivery", NULL, 1, rd_append_deliveries, rd_visit_deliveries},
    {"inflight_in", NULL, 1, rd_append_inflight, rd_visit_inflight},
};

/* ---- the vtable's load ---- */

int rd_sync_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	char err[256];
	int rc = 0;

	if (st->sync == NULL) {
		rc = rd_sync_connect(st, err, sizeof(err));
		if (rc != 0) {
			rd_log(st, CAIRN_LOG_ERROR, "%s", err);
			return rc;
		}
	}
	/* A shared store (cluster mode) loads its retained messages alone:
	 * a session is loaded by the node that claims it. */
	for (size_t i = 0;
	     !st->cluster && rc == 0 && i < sizeof(rd_readers) / sizeof(rd_readers[0]); i++)
		rc = rd_read(st, &rd_readers[i], v);
	if (rc == 0 && st->cluster)
		rc = rd_cluster_read_tail(st);
	if (rc == 0)
		rc = rd_load_retained(st, v);
	/* The blocking context serves start-up only. */
	rd_sync_close(st);
	return rc;
}
