/*
 * The Redis backend: every record is a Redis key under a configurable prefix
 * (the layout is an operator interface, see cairn-redis(5)). open() and
 * load() use a blocking hiredis context at start-up only; afterwards each
 * commit is one MULTI/EXEC sent through hiredis's libevent adapter, so the
 * broker never waits on Redis, and a batch that fails is replayed whole.
 * hiredis writes with write(2): the process must ignore SIGPIPE (main.c does).
 */
#include "cairn/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "util.h"

#define RD_SCHEMA_VERSION 1
#define RD_BACKOFF_MIN_MS 100
#define RD_BACKOFF_MAX_MS 5000
#define RD_PIPELINE       256    /* commands in flight per round trip in load() */
#define RD_SCAN_COUNT     "1000" /* SCAN's COUNT hint */
#define RD_MAX_ARGS       16

/* One command, already in Redis protocol form (from redisFormatCommandArgv),
 * so a batch can be sent again unchanged after a failure. */
struct rd_cmd {
	char *buf;
	size_t len;
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

	redisContext *sync; /* start-up only: open() and load() */

	/*
	 * The asynchronous link. ac is NULL while the link is down and the
	 * reconnect timer is pending. ac_broken means hiredis reported the
	 * link dead but has not freed the context yet: commit() refuses it.
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
	bool multi_failed;
	int done_status;
	cairn_store_done_fn done;
	void *done_arg;
};

static void rd_log(const struct cairn_store *st, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rd_log(const struct cairn_store *st, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (st->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->log(st->log_arg, level, msg);
}

/* ---- keys and number formats ---- */

/* "PREFIX" kind [":" id], NUL-terminated, in a new allocation. */
static char *rd_key(const struct cairn_store *st, const char *kind, const char *id)
{
	size_t pl = strlen(st->prefix), kl = strlen(kind), il = id != NULL ? strlen(id) : 0;
	char *k = xmalloc(pl + kl + il + 2);

	memcpy(k, st->prefix, pl);
	memcpy(k + pl, kind, kl);
	if (id != NULL) {
		k[pl + kl] = ':';
		memcpy(k + pl + kl + 1, id, il);
		k[pl + kl + 1 + il] = '\0';
	} else {
		k[pl + kl] = '\0';
	}
	return k;
}

/* Strict decimal: digits only, no sign, no spaces, at most max. */
static bool rd_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static const char *rd_state_name(uint8_t state)
{
	switch (state) {
	case CAIRN_DELIVERY_QUEUED:
		return "queued";
	case CAIRN_DELIVERY_SENT:
		return "sent";
	case CAIRN_DELIVERY_PUBREC:
		return "pubrec";
	}
	return NULL;
}

static bool rd_state_parse(const char *s, size_t len, uint8_t *out)
{
	for (uint8_t i = CAIRN_DELIVERY_QUEUED; i <= CAIRN_DELIVERY_PUBREC; i++) {
		const char *n = rd_state_name(i);

		if (strlen(n) == len && memcmp(n, s, len) == 0) {
			*out = i;
			return true;
		}
	}
	return false;
}

/* ---- staged batches ---- */

static void rd_batch_clear(struct rd_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		redisFreeCommand(b->v[i].buf);
	b->n = 0;
}

static void rd_batch_cleanup(struct rd_batch *b)
{
	rd_batch_clear(b);
	free(b->v);
	b->v = NULL;
	b->cap = 0;
}

static void rd_batch_reserve(struct rd_batch *b, size_t more)
{
	if (b->n + more <= b->cap)
		return;
	while (b->cap < b->n + more)
		b->cap = b->cap ? b->cap * 2 : 64;
	b->v = xrealloc(b->v, b->cap * sizeof(*b->v));
}

/* After a failed commit: the sent batch goes back in front of whatever was
 * staged meanwhile, so the next commit replays both in their order. */
static void rd_batch_requeue(struct rd_batch *sent, struct rd_batch *staged)
{
	struct rd_batch tmp;

	rd_batch_reserve(sent, staged->n);
	if (staged->n > 0)
		memcpy(sent->v + sent->n, staged->v, staged->n * sizeof(*staged->v));
	sent->n += staged->n;
	staged->n = 0;
	tmp = *staged;
	*staged = *sent;
	*sent = tmp;
}

/* Write v in decimal at out (at least 21 bytes) with a NUL; returns the
 * length. The staging path formats several numbers per message, and
 * printf's machinery costs more than the rest of a command together. */
static size_t rd_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

/* One command in the Redis protocol (RESP): "*argc\r\n" then
 * "$len\r\nbytes\r\n" per argument, into a new buffer at *out. */
static size_t rd_format(char **out, int argc, const char **argv, const size_t *lens)
{
	size_t total = 1 + 20 + 2, pos;
	char *b;

	for (int i = 0; i < argc; i++)
		total += 1 + 20 + 2 + lens[i] + 2;
	b = xmalloc(total);
	b[0] = '*';
	pos = 1 + rd_u64(b + 1, (uint64_t)argc);
	b[pos++] = '\r';
	b[pos++] = '\n';
	for (int i = 0; i < argc; i++) {
		b[pos++] = '$';
		pos += rd_u64(b + pos, lens[i]);
		b[pos++] = '\r';
		b[pos++] = '\n';
		if (lens[i] > 0)
			memcpy(b + pos, argv[i], lens[i]);
		pos += lens[i];
		b[pos++] = '\r';
		b[pos++] = '\n';
	}
	*out = b;
	return pos;
}

/*
 * Stage one command. Every command a batch holds sets a value outright
 * (HSET, SADD, DEL, HDEL, SREM): replaying a batch that Redis
 * may already have applied, followed by the later ones, ends in the same
 * state.
 */
static int rd_stage(struct cairn_store *st, int argc, const char **argv, const size_t *lens)
{
	size_t sl[RD_MAX_ARGS];
	char *buf = NULL;
	size_t len;

	if (lens == NULL) {
		for (int i = 0; i < argc; i++)
			sl[i] = strlen(argv[i]);
		lens = sl;
	}
	len = rd_format(&buf, argc, argv, lens);
	rd_batch_reserve(&st->staged, 1);
	st->staged.v[st->staged.n].buf = buf;
	st->staged.v[st->staged.n].len = (size_t)len;
	st->staged.n++;
	return 0;
}

/* ---- the asynchronous link ---- */

static void rd_schedule_reconnect(struct cairn_store *st)
{
	struct timeval tv = {st->backoff_ms / 1000, (st->backoff_ms % 1000) * 1000};

	evtimer_add(st->reconnect_ev, &tv);
	st->backoff_ms *= 2;
	if (st->backoff_ms > RD_BACKOFF_MAX_MS)
		st->backoff_ms = RD_BACKOFF_MAX_MS;
}

/* The link ac is gone (hiredis frees it): note it and start reconnecting. */
static void rd_link_gone(struct cairn_store *st, const redisAsyncContext *ac, const char *why)
{
	if (st->ac != ac)
		return;
	st->ac = NULL;
	st->ac_broken = false;
	if (!st->link_lost) {
		st->link_lost = true;
		rd_log(st, 1, "redis at %s: connection lost (%s); reconnecting", st->where, why);
	}
	rd_schedule_reconnect(st);
}

/*
 * Ask for the link to be torn down from the event loop, never from inside
 * a hiredis callback: the watchdog event frees the context.
 */
static void rd_link_kill(struct cairn_store *st)
{
	st->ac_broken = true;
	event_active(st->watchdog_ev, EV_TIMEOUT, 1);
}

static void rd_connect_cb(const redisAsyncContext *ac, int status)
{
	struct cairn_store *st = ac->data;

	if (st == NULL)
		return;
	if (status != REDIS_OK) {
		rd_link_gone(st, ac, ac->errstr[0] ? ac->errstr : "connect failed");
		return;
	}
	st->backoff_ms = RD_BACKOFF_MIN_MS;
	if (st->link_lost) {
		st->link_lost = false;
		rd_log(st, 2, "redis at %s: connection restored", st->where);
	}
}

static void rd_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct cairn_store *st = ac->data;

	(void)status;
	if (st == NULL)
		return;
	rd_link_gone(st, ac, ac->errstr[0] ? ac->errstr : "closed by the server");
}

/* Replies to AUTH and SELECT on a new link. A refusal is logged; the
 * commits then fail with the server's error and are retried. */
static void rd_setup_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	if (st == NULL || reply == NULL || reply->type != REDIS_REPLY_ERROR)
		return;
	rd_log(st, 0, "redis at %s: %s refused: %s", st->where, (const char *)privdata, reply->str);
}

/* Open a new asynchronous link; it connects in the background. Commands
 * sent meanwhile are queued by hiredis behind AUTH and SELECT. */
static int rd_async_connect(struct cairn_store *st)
{
	redisAsyncContext *ac;
	char dbs[16];

	ac = st->unix_path != NULL ? redisAsyncConnectUnix(st->unix_path)
				   : redisAsyncConnect(st->host, st->port);
	if (ac == NULL)
		return CAIRN_ENOMEM;
	if (ac->err) {
		redisAsyncFree(ac);
		return CAIRN_EUNAVAILABLE;
	}
	if (redisLibeventAttach(ac, st->base) != REDIS_OK) {
		redisAsyncFree(ac);
		return CAIRN_ENOMEM;
	}
	ac->data = st;
	/* Notice a server host that vanished while the link was idle. */
	redisEnableKeepAlive(&ac->c);
	redisAsyncSetConnectCallback(ac, rd_connect_cb);
	redisAsyncSetDisconnectCallback(ac, rd_disconnect_cb);
	if (st->password != NULL) {
		const char *argv[] = {"AUTH", st->password};

		redisAsyncCommandArgv(ac, rd_setup_cb, "AUTH", 2, argv, NULL);
	}
	if (st->db != 0) {
		const char *argv[] = {"SELECT", dbs};

		snprintf(dbs, sizeof(dbs), "%d", st->db);
		redisAsyncCommandArgv(ac, rd_setup_cb, "SELECT", 2, argv, NULL);
	}
	st->ac = ac;
	st->ac_broken = false;
	return 0;
}

static void rd_reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cairn_store *st = arg;

	(void)fd;
	(void)what;
	if (st->ac != NULL)
		return;
	if (rd_async_connect(st) != 0)
		rd_schedule_reconnect(st);
}

/*
 * Tear the link down: on a reply timeout, or when rd_link_kill asked for
 * it. Runs from the event loop, so freeing the context is safe here; its
 * pending callbacks run now with a NULL reply (failing the commit).
 */
static void rd_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cairn_store *st = arg;
	redisAsyncContext *ac = st->ac;

	(void)fd;
	(void)what;
	if (ac == NULL)
		return;
	if (st->in_flight)
		rd_log(st, 1, "redis at %s: no reply to a commit within %d ms", st->where,
		       st->timeout_ms);
	st->ac = NULL;
	st->ac_broken = false;
	if (!st->link_lost) {
		st->link_lost = true;
		rd_log(st, 1, "redis at %s: dropping the connection; reconnecting", st->where);
	}
	rd_schedule_reconnect(st);
	redisAsyncFree(ac);
}

static void rd_multi_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	(void)privdata;
	if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR) {
		st->multi_failed = true;
		rd_log(st, 0, "redis at %s: MULTI failed: %s", st->where, reply->str);
	}
}

/* EXEC's reply ends the commit: an array means every command ran. */
static void rd_exec_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	int status = 0;

	(void)privdata;
	if (st == NULL || !st->in_flight)
		return;
	evtimer_del(st->watchdog_ev);
	if (reply == NULL) {
		/* hiredis is freeing the context: the link is gone. */
		status = CAIRN_EUNAVAILABLE;
		rd_link_gone(st, ac, ac->errstr[0] ? ac->errstr : "connection closed");
	} else if (reply->type == REDIS_REPLY_ARRAY && !st->multi_failed) {
		for (size_t i = 0; i < reply->elements; i++) {
			if (reply->element[i]->type == REDIS_REPLY_ERROR) {
				rd_log(st, 0, "redis at %s: command %zu of a commit failed: %s",
				       st->where, i + 1, reply->element[i]->str);
				status = CAIRN_EIO;
				break;
			}
		}
	} else {
		if (reply->type == REDIS_REPLY_ERROR)
			rd_log(st, 0, "redis at %s: EXEC failed: %s", st->where, reply->str);
		status = CAIRN_EIO;
	}
	if (status == 0)
		rd_batch_clear(&st->sending);
	else
		rd_batch_requeue(&st->sending, &st->staged);
	st->done_status = status;
	event_active(st->done_ev, EV_TIMEOUT, 1);
}

/*
 * done() runs from here, never from a hiredis callback: whatever it does
 * (commit again, close the store) then happens outside hiredis, which
 * therefore never sees its context freed or reused under its feet.
 */
static void rd_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cairn_store *st = arg;
	cairn_store_done_fn done = st->done;

	(void)fd;
	(void)what;
	st->in_flight = false;
	st->done = NULL;
	done(st->done_arg, st->done_status);
}

/* ---- the blocking context (start-up) ---- */

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
static redisReply *rd_sync_cmd(struct cairn_store *st, int argc, const char **argv, int *rc)
{
	redisReply *reply = redisCommandArgv(st->sync, argc, argv, NULL);

	if (reply == NULL)
		*rc = st->sync->err == REDIS_ERR_OOM ? CAIRN_ENOMEM : CAIRN_EUNAVAILABLE;
	return reply;
}

/*
 * Connect the blocking context, authenticate, select the database and wait
 * until the server answers PING (a restarting Redis answers LOADING while it
 * reads its append-only file). Retries until redis_connect_timeout.
 */
static int rd_sync_connect(struct cairn_store *st, char *err, size_t errlen)
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
			snprintf(err, errlen, "redis at %s: out of memory", st->where);
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
				snprintf(err, errlen, "redis at %s: AUTH refused: %s", st->where,
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
				snprintf(err, errlen, "redis at %s: SELECT %d refused: %s",
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
			snprintf(err, errlen, "redis at %s: PING refused: %s", st->where, last);
			return CAIRN_EIO;
		}
		redisFree(st->sync);
		st->sync = NULL;
		goto retry;
	lost:
		if (rc == CAIRN_ENOMEM) {
			snprintf(err, errlen, "redis at %s: out of memory", st->where);
			return rc;
		}
		snprintf(last, sizeof(last), "%s", st->sync->errstr);
		redisFree(st->sync);
		st->sync = NULL;
	retry:
		left = deadline - rd_now_ms();
		if (left <= 0) {
			snprintf(err, errlen, "cannot reach redis at %s within %d ms: %s",
				 st->where, st->timeout_ms, last);
			return CAIRN_EUNAVAILABLE;
		}
		rd_sleep_ms(left < 100 ? left : 100);
	}
}

static void rd_sync_close(struct cairn_store *st)
{
	if (st->sync != NULL)
		redisFree(st->sync);
	st->sync = NULL;
}

/* Create or check PREFIX schema_version. */
static int rd_check_schema(struct cairn_store *st, char *err, size_t errlen)
{
	char *key = rd_key(st, "schema_version", NULL);
	const char *get[] = {"GET", key};
	const char *set[] = {"SET", key, "1", "NX"};
	redisReply *reply = NULL;
	uint64_t v;
	int rc = 0;

	for (int attempt = 0; attempt < 2; attempt++) {
		reply = rd_sync_cmd(st, 2, get, &rc);
		if (reply == NULL) {
			snprintf(err, errlen, "redis at %s: %s", st->where, st->sync->errstr);
			goto out;
		}
		if (reply->type != REDIS_REPLY_NIL)
			break;
		freeReplyObject(reply);
		reply = rd_sync_cmd(st, 4, set, &rc);
		if (reply == NULL) {
			snprintf(err, errlen, "redis at %s: %s", st->where, st->sync->errstr);
			goto out;
		}
		if (reply->type == REDIS_REPLY_ERROR) {
			snprintf(err, errlen, "redis at %s: cannot write %s: %s", st->where, key,
				 reply->str);
			rc = CAIRN_EIO;
			goto out;
		}
		freeReplyObject(reply);
		reply = NULL;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_STRING ||
	    !rd_parse_u64(reply->str, reply->len, UINT32_MAX, &v) || v == 0) {
		snprintf(err, errlen, "redis at %s: %s is not a schema version", st->where, key);
		rc = CAIRN_ECORRUPT;
	} else if (v > RD_SCHEMA_VERSION) {
		snprintf(err, errlen,
			 "redis at %s: %s is %" PRIu64
			 ", written by a newer cairn (this one knows %d)",
			 st->where, key, v, RD_SCHEMA_VERSION);
		rc = CAIRN_EVERSION;
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
static void rd_check_durability(struct cairn_store *st, enum cairn_durability want)
{
	char aof[16], fsync[16];

	rd_config_get(st, "appendonly", aof, sizeof(aof));
	rd_config_get(st, "appendfsync", fsync, sizeof(fsync));
	if (aof[0] == '\0') {
		rd_log(st, 3, "redis at %s: CONFIG GET refused; cannot check appendonly",
		       st->where);
		return;
	}
	if (strcmp(aof, "yes") != 0)
		rd_log(st, 1,
		       "redis at %s: appendonly is %s: a commit is not on disk until the next "
		       "snapshot",
		       st->where, aof);
	else if (want == CAIRN_DURABILITY_FSYNC && strcmp(fsync, "always") != 0)
		rd_log(st, 1,
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
		sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	sv->v[sv->n++] = xstrndup(s, len);
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
	char *out = xmalloc(strlen(s) * 2 + 1), *p = out;

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
	char *pattern = xmalloc(strlen(esc) + strlen(kind) + 3);
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
			rd_log(st, 0, "redis at %s: SCAN failed: %s", st->where,
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

static int rd_corrupt(struct cairn_store *st, const char *kind, const char *id, const char *what)
{
	rd_log(st, 0, "redis at %s: key %s%s:%s: %s", st->where, st->prefix, kind, id, what);
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
					rd_log(st, 0, "redis at %s: load: %s", st->where,
					       st->sync->errstr);
					break;
				}
				r[k] = p;
				if (r[k]->type == REDIS_REPLY_ERROR) {
					rd_log(st, 0, "redis at %s: load: %s", st->where,
					       r[k]->str);
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

static int rd_visit_session(struct cairn_store *st, const char *id, redisReply **r,
			    const struct cairn_store_visitor *v)
{
	const redisReply *h = r[0], *user, *topic, *payload;
	struct cairn_session_rec rec = {.client_id = id};
	uint64_t npid, conn, wq = 0, wr = 0;

	if (h->type != REDIS_REPLY_ARRAY)
		return rd_corrupt(st, "session", id, "not a hash");
	if (h->elements == 0)
		return 0; /* deleted since SCAN saw it */
	if (!rd_hget_u64(h, "next_packet_id", UINT16_MAX, &npid) ||
	    !rd_hget_u64(h, "connected", 1, &conn))
		return rd_corrupt(st, "session", id, "bad next_packet_id or connected");
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
	rec.has_will = topic != NULL;
	if (rec.has_will) {
		rec.will_topic = topic->str;
		rec.will_payload = (const uint8_t *)payload->str;
		rec.will_payload_len = (uint32_t)payload->len;
		rec.will_qos = (uint8_t)wq;
		rec.will_retain = wr != 0;
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

static int rd_visit_subs(struct cairn_store *st, const char *id, redisReply **r,
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
		uint64_t qos;

		if (!rd_parse_u64(q->str, q->len, 2, &qos))
			return rd_corrupt(st, "subs", id, "bad qos");
		rec.qos = (uint8_t)qos;
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
	const redisReply *h = r[0], *topic, *payload;
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

/* Parses "msg_id:packet_id:qos:state". */
static bool rd_delivery_parse(const char *s, size_t len, struct cairn_delivery_rec *rec)
{
	const char *end = s + len, *f[4];
	size_t fl[4];
	uint64_t msg, pid, qos;

	for (int i = 0; i < 4; i++) {
		const char *c = i < 3 ? memchr(s, ':', (size_t)(end - s)) : end;

		if (c == NULL)
			return false;
		f[i] = s;
		fl[i] = (size_t)(c - s);
		s = c + (i < 3);
	}
	if (!rd_parse_u64(f[0], fl[0], UINT64_MAX, &msg) ||
	    !rd_parse_u64(f[1], fl[1], UINT16_MAX, &pid) || !rd_parse_u64(f[2], fl[2], 2, &qos) ||
	    !rd_state_parse(f[3], fl[3], &rec->state))
		return false;
	rec->msg_id = msg;
	rec->packet_id = (uint16_t)pid;
	rec->qos = (uint8_t)qos;
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
static int rd_visit_deliveries(struct cairn_store *st, const char *id, redisReply **r,
			       const struct cairn_store_visitor *v)
{
	const redisReply *h = r[0];
	struct rd_seq_val *sv = NULL;
	size_t n;
	int rc = 0;

	if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
		return rd_corrupt(st, "delivery", id, "wrong type");
	n = h->elements / 2;
	sv = xmalloc((n + 1) * sizeof(*sv));
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
		    !rd_delivery_parse(sv[i].val->str, sv[i].val->len, &rec)) {
			rc = rd_corrupt(st, "delivery", id, "bad record");
			goto out;
		}
		if (v->delivery != NULL)
			rc = v->delivery(v->arg, &rec);
	}
out:
	free(sv);
	return rc;
}

static void rd_append_inflight(struct cairn_store *st, const char *id)
{
	rd_append(st, "SMEMBERS", "inflight_in", id, NULL, NULL);
}

static int rd_visit_inflight(struct cairn_store *st, const char *id, redisReply **r,
			     const struct cairn_store_visitor *v)
{
	const redisReply *s = r[0];
	uint64_t *pids;
	int rc = 0;

	if (s->type != REDIS_REPLY_ARRAY)
		return rd_corrupt(st, "inflight_in", id, "not a set");
	pids = xmalloc((s->elements + 1) * sizeof(*pids));
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
 * Retained messages: HSCAN the one hash, then visit in topic order. A
 * value is "<qos>:<payload>"; msg_id is not kept (it is informational).
 */
static int rd_load_retained(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	char *key = rd_key(st, "retained", NULL);
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
			all = xrealloc(all, capall * sizeof(*all));
		}
		all[nall++] = reply; /* kept until the visits are done */
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		    reply->element[0]->type != REDIS_REPLY_STRING ||
		    reply->element[0]->len >= sizeof(cursor) ||
		    reply->element[1]->type != REDIS_REPLY_ARRAY) {
			rd_log(st, 0, "redis at %s: HSCAN %s failed: %s", st->where, key,
			       reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply");
			rc = reply->type == REDIS_REPLY_ERROR ? CAIRN_EIO : CAIRN_ECORRUPT;
			goto out;
		}
		memcpy(cursor, reply->element[0]->str, reply->element[0]->len + 1);
		kv = reply->element[1];
		for (size_t i = 0; i + 1 < kv->elements; i += 2) {
			if (n + 2 > cap) {
				cap = cap ? cap * 2 : 64;
				pairs = xrealloc(pairs, cap * sizeof(*pairs));
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
		const char *colon = memchr(val->str, ':', val->len);
		uint64_t qos;

		if (i > 0 && rd_pair_cmp(&pairs[i - 2], &pairs[i]) == 0)
			continue; /* HSCAN may return a field twice */
		if (colon == NULL || !rd_parse_u64(val->str, (size_t)(colon - val->str), 2, &qos) ||
		    val->len - (size_t)(colon + 1 - val->str) > UINT32_MAX) {
			rd_log(st, 0, "redis at %s: key %s: bad value for topic %s", st->where, key,
			       t->str);
			rc = CAIRN_ECORRUPT;
			break;
		}
		rec.qos = (uint8_t)qos;
		rec.payload = (const uint8_t *)colon + 1;
		rec.payload_len = (uint32_t)(val->len - (size_t)(colon + 1 - val->str));
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

static const struct rd_reader rd_readers[] = {
    {"session", NULL, 1, rd_append_session, rd_visit_session},
    {"subs", NULL, 1, rd_append_subs, rd_visit_subs},
    {"msg", rd_numcmp_p, 1, rd_append_message, rd_visit_message},
    {"delivery", NULL, 1, rd_append_deliveries, rd_visit_deliveries},
    {"inflight_in", NULL, 1, rd_append_inflight, rd_visit_inflight},
};

/* ---- the vtable ---- */

static const char *rd_opt(const struct cairn_store_options *opts, const char *key)
{
	return opts->get != NULL ? opts->get(opts->get_arg, key) : NULL;
}

static int rd_opt_int(const struct cairn_store_options *opts, const char *key, int def, int min,
		      int max, int *out, char *err, size_t errlen)
{
	const char *s = rd_opt(opts, key);
	uint64_t v;

	if (s == NULL) {
		*out = def;
		return 0;
	}
	if (!rd_parse_u64(s, strlen(s), (uint64_t)max, &v) || v < (uint64_t)min) {
		snprintf(err, errlen, "%s must be a number from %d to %d, got '%s'", key, min, max,
			 s);
		return CAIRN_EINVAL;
	}
	*out = (int)v;
	return 0;
}

static void rd_free(struct cairn_store *st)
{
	rd_batch_cleanup(&st->staged);
	rd_batch_cleanup(&st->sending);
	if (st->reconnect_ev != NULL)
		event_free(st->reconnect_ev);
	if (st->watchdog_ev != NULL)
		event_free(st->watchdog_ev);
	if (st->done_ev != NULL)
		event_free(st->done_ev);
	rd_sync_close(st);
	free(st->host);
	free(st->unix_path);
	free(st->password);
	free(st->prefix);
	free(st);
}

static int rd_open(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		   size_t errlen)
{
	struct cairn_store *st = xcalloc(1, sizeof(*st));
	const char *s;
	int rc;

	*out = NULL;
	if (opts->base == NULL) {
		snprintf(err, errlen, "redis: no event loop to attach to");
		rc = CAIRN_EINVAL;
		goto fail;
	}
	st->base = opts->base;
	st->log = opts->log;
	st->log_arg = opts->log_arg;
	st->backoff_ms = RD_BACKOFF_MIN_MS;
	s = rd_opt(opts, "redis_host");
	st->host = xstrdup(s != NULL && s[0] != '\0' ? s : "127.0.0.1");
	s = rd_opt(opts, "redis_unix_socket");
	st->unix_path = s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
	s = rd_opt(opts, "redis_password");
	st->password = s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
	s = rd_opt(opts, "redis_key_prefix");
	st->prefix = xstrdup(s != NULL ? s : "cairn:");
	if ((rc = rd_opt_int(opts, "redis_port", 6379, 1, 65535, &st->port, err, errlen)) != 0 ||
	    (rc = rd_opt_int(opts, "redis_db", 0, 0, 1000000, &st->db, err, errlen)) != 0 ||
	    (rc = rd_opt_int(opts, "redis_connect_timeout", 10000, 0, 3600000, &st->timeout_ms, err,
			     errlen)) != 0)
		goto fail;
	if (st->unix_path != NULL)
		snprintf(st->where, sizeof(st->where), "unix:%s", st->unix_path);
	else
		snprintf(st->where, sizeof(st->where), "%s:%d", st->host, st->port);

	st->reconnect_ev = evtimer_new(st->base, rd_reconnect_cb, st);
	st->watchdog_ev = evtimer_new(st->base, rd_watchdog_cb, st);
	st->done_ev = event_new(st->base, -1, 0, rd_done_cb, st);
	if (st->reconnect_ev == NULL || st->watchdog_ev == NULL || st->done_ev == NULL) {
		snprintf(err, errlen, "redis: cannot create timers");
		rc = CAIRN_ENOMEM;
		goto fail;
	}
	if ((rc = rd_sync_connect(st, err, errlen)) != 0 ||
	    (rc = rd_check_schema(st, err, errlen)) != 0)
		goto fail;
	rd_check_durability(st, opts->durability);
	rc = rd_async_connect(st);
	if (rc != 0) {
		snprintf(err, errlen, "redis at %s: cannot open the event-loop connection",
			 st->where);
		goto fail;
	}
	*out = st;
	return 0;
fail:
	rd_free(st);
	return rc;
}

/*
 * Free the store, dropping a commit in flight (done is not called). The
 * asynchronous context is detached first (ac->data = NULL) so that the
 * NULL-reply callbacks hiredis runs while freeing it find no store. close()
 * never runs inside a hiredis callback (done is deferred to the loop); were
 * it to, hiredis would see REDIS_IN_CALLBACK and defer the free itself.
 */
static void rd_close(struct cairn_store *st)
{
	if (st == NULL)
		return;
	if (st->ac != NULL) {
		redisAsyncContext *ac = st->ac;

		st->ac = NULL;
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	rd_free(st);
}

static int rd_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	char err[256];
	int rc = 0;

	if (st->sync == NULL) {
		rc = rd_sync_connect(st, err, sizeof(err));
		if (rc != 0) {
			rd_log(st, 0, "%s", err);
			return rc;
		}
	}
	for (size_t i = 0; rc == 0 && i < sizeof(rd_readers) / sizeof(rd_readers[0]); i++)
		rc = rd_read(st, &rd_readers[i], v);
	if (rc == 0)
		rc = rd_load_retained(st, v);
	/* The blocking context serves start-up only. */
	rd_sync_close(st);
	return rc;
}

static int rd_session_put(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	char *key = rd_key(st, "session", rec->client_id), *set = rd_key(st, "sessions", NULL);
	char npid[8], wq[4];
	const char *argv[RD_MAX_ARGS];
	size_t lens[RD_MAX_ARGS];
	int argc = 0, rc;

	snprintf(npid, sizeof(npid), "%u", (unsigned)rec->next_packet_id);
	snprintf(wq, sizeof(wq), "%u", (unsigned)rec->will_qos);
#define RD_ARG(p, l) (argv[argc] = (p), lens[argc] = (l), argc++)
#define RD_STR(p)    RD_ARG((p), strlen(p))
	/* DEL first: fields of an older record (a will) must not survive. */
	RD_STR("DEL");
	RD_STR(key);
	rc = rd_stage(st, argc, argv, lens);
	argc = 0;
	RD_STR("HSET");
	RD_STR(key);
	RD_STR("next_packet_id");
	RD_STR(npid);
	RD_STR("connected");
	RD_STR(rec->connected ? "1" : "0");
	if (rec->username != NULL) {
		RD_STR("username");
		RD_STR(rec->username);
	}
	if (rec->has_will) {
		RD_STR("will_topic");
		RD_STR(rec->will_topic != NULL ? rec->will_topic : "");
		RD_STR("will_payload");
		RD_ARG(rec->will_payload_len > 0 ? (const char *)rec->will_payload : "",
		       rec->will_payload_len);
		RD_STR("will_qos");
		RD_STR(wq);
		RD_STR("will_retain");
		RD_STR(rec->will_retain ? "1" : "0");
	}
	if (rc == 0)
		rc = rd_stage(st, argc, argv, lens);
	argc = 0;
	RD_STR("SADD");
	RD_STR(set);
	RD_STR(rec->client_id);
	if (rc == 0)
		rc = rd_stage(st, argc, argv, lens);
#undef RD_STR
#undef RD_ARG
	free(key);
	free(set);
	return rc;
}

static int rd_session_delete(struct cairn_store *st, const char *client_id)
{
	char *k[4] = {rd_key(st, "session", client_id), rd_key(st, "subs", client_id),
		      rd_key(st, "delivery", client_id), rd_key(st, "inflight_in", client_id)};
	char *set = rd_key(st, "sessions", NULL);
	const char *del[] = {"DEL", k[0], k[1], k[2], k[3]};
	const char *srem[] = {"SREM", set, client_id};
	int rc;

	rc = rd_stage(st, 5, del, NULL);
	if (rc == 0)
		rc = rd_stage(st, 3, srem, NULL);
	for (int i = 0; i < 4; i++)
		free(k[i]);
	free(set);
	return rc;
}

static int rd_sub_put(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	char *key = rd_key(st, "subs", rec->client_id);
	char qos[24];
	const char *argv[] = {"HSET", key, rec->filter, qos};
	int rc;

	rd_u64(qos, rec->qos);
	rc = rd_stage(st, 4, argv, NULL);
	free(key);
	return rc;
}

static int rd_sub_delete(struct cairn_store *st, const char *client_id, const char *filter)
{
	char *key = rd_key(st, "subs", client_id);
	const char *argv[] = {"HDEL", key, filter};
	int rc = rd_stage(st, 3, argv, NULL);

	free(key);
	return rc;
}

static int rd_message_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	char id[24], qos[24], *key;
	const char *argv[10];
	size_t lens[10];
	int rc;

	rd_u64(id, rec->msg_id);
	rd_u64(qos, rec->qos);
	key = rd_key(st, "msg", id);
	argv[0] = "HSET";
	argv[1] = key;
	argv[2] = "topic";
	argv[3] = rec->topic != NULL ? rec->topic : "";
	argv[4] = "payload";
	argv[5] = rec->payload_len > 0 ? (const char *)rec->payload : "";
	argv[6] = "qos";
	argv[7] = qos;
	argv[8] = "retain";
	argv[9] = rec->retain ? "1" : "0";
	for (int i = 0; i < 10; i++) /* the payload is bytes, not a string */
		lens[i] = i == 5 ? rec->payload_len : strlen(argv[i]);
	rc = rd_stage(st, 10, argv, lens);
	free(key);
	return rc;
}

static int rd_message_delete(struct cairn_store *st, uint64_t msg_id)
{
	char id[24], *key;
	const char *argv[2];
	int rc;

	rd_u64(id, msg_id);
	key = rd_key(st, "msg", id);
	argv[0] = "DEL";
	argv[1] = key;
	rc = rd_stage(st, 2, argv, NULL);
	free(key);
	return rc;
}

static int rd_delivery_put(struct cairn_store *st, const struct cairn_delivery_rec *rec)
{
	char *hkey = rd_key(st, "delivery", rec->client_id);
	char seq[24], val[64];
	const char *hset[] = {"HSET", hkey, seq, val};
	const char *state = rd_state_name(rec->state);
	int rc = CAIRN_EINVAL;

	if (state == NULL || rec->qos > 2)
		goto out;
	rd_u64(seq, rec->seq);
	/* "msg_id:packet_id:qos:state" */
	size_t n = rd_u64(val, rec->msg_id);
	val[n++] = ':';
	n += rd_u64(val + n, rec->packet_id);
	val[n++] = ':';
	n += rd_u64(val + n, rec->qos);
	val[n++] = ':';
	memcpy(val + n, state, strlen(state) + 1);
	rc = rd_stage(st, 4, hset, NULL);
out:
	free(hkey);
	return rc;
}

static int rd_delivery_delete(struct cairn_store *st, const char *client_id, uint64_t seq)
{
	char *hkey = rd_key(st, "delivery", client_id);
	char s[24];
	const char *hdel[] = {"HDEL", hkey, s};
	int rc;

	rd_u64(s, seq);
	rc = rd_stage(st, 3, hdel, NULL);
	free(hkey);
	return rc;
}

static int rd_inflight_op(struct cairn_store *st, const char *cmd, const char *client_id,
			  uint16_t packet_id)
{
	char *key = rd_key(st, "inflight_in", client_id);
	char pid[8];
	const char *argv[] = {cmd, key, pid};
	int rc;

	snprintf(pid, sizeof(pid), "%u", (unsigned)packet_id);
	rc = rd_stage(st, 3, argv, NULL);
	free(key);
	return rc;
}

static int rd_inflight_in_put(struct cairn_store *st, const struct cairn_inflight_in_rec *rec)
{
	return rd_inflight_op(st, "SADD", rec->client_id, rec->packet_id);
}

static int rd_inflight_in_delete(struct cairn_store *st, const char *client_id, uint16_t packet_id)
{
	return rd_inflight_op(st, "SREM", client_id, packet_id);
}

static int rd_retained_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	char *key = rd_key(st, "retained", NULL);
	size_t vlen = 2 + (size_t)rec->payload_len;
	char *val = xmalloc(vlen);
	const char *argv[] = {"HSET", key, rec->topic, val};
	size_t lens[] = {4, strlen(key), strlen(rec->topic), vlen};
	int rc;

	val[0] = (char)('0' + (rec->qos <= 2 ? rec->qos : 0));
	val[1] = ':';
	if (rec->payload_len > 0)
		memcpy(val + 2, rec->payload, rec->payload_len);
	rc = rec->qos <= 2 ? rd_stage(st, 4, argv, lens) : CAIRN_EINVAL;
	free(val);
	free(key);
	return rc;
}

static int rd_retained_delete(struct cairn_store *st, const char *topic)
{
	char *key = rd_key(st, "retained", NULL);
	const char *argv[] = {"HDEL", key, topic};
	int rc = rd_stage(st, 3, argv, NULL);

	free(key);
	return rc;
}

/*
 * Send the staged batch as MULTI ... EXEC and return CAIRN_EINPROGRESS;
 * rd_exec_cb calls done. While the link is down the batch stays staged and
 * CAIRN_EUNAVAILABLE comes back at once (done is never called from here).
 */
static int rd_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	struct rd_batch tmp;
	struct timeval tv;

	if (st->in_flight || done == NULL)
		return CAIRN_EINVAL;
	if (st->staged.n == 0)
		return 0;
	if (st->ac == NULL || st->ac_broken ||
	    (st->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0)
		return CAIRN_EUNAVAILABLE;
	tmp = st->sending;
	st->sending = st->staged;
	st->staged = tmp;
	st->multi_failed = false;
	if (redisAsyncCommand(st->ac, rd_multi_cb, NULL, "MULTI") != REDIS_OK)
		goto broken;
	for (size_t i = 0; i < st->sending.n; i++)
		if (redisAsyncFormattedCommand(st->ac, NULL, NULL, st->sending.v[i].buf,
					       st->sending.v[i].len) != REDIS_OK)
			goto broken;
	if (redisAsyncCommand(st->ac, rd_exec_cb, NULL, "EXEC") != REDIS_OK)
		goto broken;
	st->in_flight = true;
	st->done = done;
	st->done_arg = arg;
	if (st->timeout_ms > 0) {
		tv.tv_sec = st->timeout_ms / 1000;
		tv.tv_usec = (st->timeout_ms % 1000) * 1000;
		evtimer_add(st->watchdog_ev, &tv);
	}
	return CAIRN_EINPROGRESS;
broken:
	/* A half-sent MULTI must never be completed by a later EXEC: drop the
	 * link (from the loop) and keep the batch for the next attempt. */
	rd_batch_requeue(&st->sending, &st->staged);
	rd_link_kill(st);
	return CAIRN_EUNAVAILABLE;
}

const struct cairn_store_ops cairn_store_redis = {
    .version = 1,
    .name = "redis",
    .open = rd_open,
    .close = rd_close,
    .load = rd_load,
    .session_put = rd_session_put,
    .session_delete = rd_session_delete,
    .sub_put = rd_sub_put,
    .sub_delete = rd_sub_delete,
    .message_put = rd_message_put,
    .message_delete = rd_message_delete,
    .delivery_put = rd_delivery_put,
    .delivery_delete = rd_delivery_delete,
    .inflight_in_put = rd_inflight_in_put,
    .inflight_in_delete = rd_inflight_in_delete,
    .retained_put = rd_retained_put,
    .retained_delete = rd_retained_delete,
    .commit = rd_commit,
};
