/*
 * The Redis backend's asynchronous link: one hiredis context attached to the
 * broker's event loop through hiredis's libevent adapter, reconnected with
 * backoff when it drops, carrying each commit as one MULTI/EXEC. Callbacks
 * only record what happened; done() and the freeing of a dead context run
 * from events of their own, never inside hiredis.
 * hiredis writes with write(2): the process must ignore SIGPIPE (main.c does).
 */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

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
		rd_log(st, CAIRN_LOG_WARNING, "redis at %s: connection lost (%s); reconnecting",
		       st->where, why);
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
		rd_log(st, CAIRN_LOG_NOTICE, "redis at %s: connection restored", st->where);
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
	rd_log(st, CAIRN_LOG_ERROR, "redis at %s: %s refused: %s", st->where,
	       (const char *)privdata, reply->str);
}

/* Commands sent while the link connects are queued by hiredis behind AUTH
 * and SELECT. */
int rd_link_connect(struct cairn_store *st)
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
	if (rd_link_connect(st) != 0)
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
	if (st->rcluster && st->in_flight && st->parts_pending > 0) {
		/* A master that does not answer: every master link goes, and
		 * the commit's parts fail with them (the batch is replayed). */
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis at %s: no reply to a commit within %d ms from a Redis Cluster "
		       "master: reconnecting",
		       st->where, st->timeout_ms);
		rd_route_drop_all(st);
		return;
	}
	if (ac == NULL)
		return;
	if (st->in_flight)
		rd_log(st, CAIRN_LOG_WARNING, "redis at %s: no reply to a commit within %d ms",
		       st->where, st->timeout_ms);
	st->ac = NULL;
	st->ac_broken = false;
	if (!st->link_lost) {
		st->link_lost = true;
		rd_log(st, CAIRN_LOG_WARNING, "redis at %s: dropping the connection; reconnecting",
		       st->where);
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
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: MULTI failed: %s", st->where, reply->str);
	}
}

bool rd_link_reply(struct cairn_store *st, const redisAsyncContext *ac, const void *reply,
		   int *status)
{
	*status = 0;
	if (st == NULL || !st->in_flight)
		return false;
	evtimer_del(st->watchdog_ev);
	if (reply == NULL) {
		/* hiredis is freeing the context: the link is gone. */
		*status = CAIRN_EUNAVAILABLE;
		rd_link_gone(st, ac, ac->errstr[0] ? ac->errstr : "connection closed");
	}
	return true;
}

/* EXEC's reply ends the commit: an array means every command ran. */
static void rd_exec_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	int status;

	(void)privdata;
	if (!rd_link_reply(st, ac, reply, &status))
		return;
	if (reply == NULL) {
		/* status says the link went */
	} else if (reply->type == REDIS_REPLY_ARRAY && !st->multi_failed) {
		for (size_t i = 0; i < reply->elements; i++) {
			if (reply->element[i]->type == REDIS_REPLY_ERROR) {
				rd_log(st, CAIRN_LOG_ERROR,
				       "redis at %s: command %zu of a commit failed: %s", st->where,
				       i + 1, reply->element[i]->str);
				status = CAIRN_EIO;
				break;
			}
		}
	} else {
		if (reply->type == REDIS_REPLY_ERROR)
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s: EXEC failed: %s", st->where,
			       reply->str);
		status = CAIRN_EIO;
	}
	rd_link_batch_done(st, status);
}

static void rd_watchdog_arm(struct cairn_store *st)
{
	struct timeval tv;

	if (st->timeout_ms > 0) {
		tv.tv_sec = st->timeout_ms / 1000;
		tv.tv_usec = (st->timeout_ms % 1000) * 1000;
		evtimer_add(st->watchdog_ev, &tv);
	}
}

/* A commit was sent: done() waits for its reply, bounded by the watchdog. */
void rd_link_started(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	st->in_flight = true;
	st->done = done;
	st->done_arg = arg;
	rd_watchdog_arm(st);
}

void rd_link_batch_done(struct cairn_store *st, int status)
{
	if (st->wait_pending) {
		st->wait_status = status;
		rd_watchdog_arm(st); /* WAIT's reply is still to come */
		return;
	}
	rd_link_finish(st, status);
}

/*
 * WAIT's reply ends a commit under redis_wait_replicas: it counts the
 * replicas that acknowledged every write sent before it on this link. Too
 * few fails the commit, which is retried (a batch replays harmlessly), so
 * nothing is acknowledged before the replicas hold it.
 */
static void rd_wait_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	int status;

	(void)privdata;
	if (st == NULL || !st->in_flight || !st->wait_pending)
		return;
	st->wait_pending = false;
	evtimer_del(st->watchdog_ev);
	status = st->wait_status;
	if (reply == NULL) {
		status = CAIRN_EUNAVAILABLE;
	} else if (status == 0 && (reply->type != REDIS_REPLY_INTEGER ||
				   reply->integer < (long long)st->wait_replicas)) {
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis at %s: %lld of the %d replicas asked for (redis_wait_replicas) hold "
		       "the commit: retrying it",
		       st->where, reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1LL,
		       st->wait_replicas);
		status = CAIRN_EIO;
	}
	rd_link_finish(st, status);
}

int rd_link_wait_ms(const struct cairn_store *st)
{
	return st->timeout_ms > 0 && st->timeout_ms < 1000 ? st->timeout_ms : 1000;
}

/* With redis_wait_replicas, WAIT follows the batch on the link. */
static int rd_link_send_wait(struct cairn_store *st)
{
	char n[16], ms[16];
	const char *argv[] = {"WAIT", n, ms};

	st->wait_pending = false;
	if (st->wait_replicas <= 0)
		return REDIS_OK;
	snprintf(n, sizeof(n), "%d", st->wait_replicas);
	snprintf(ms, sizeof(ms), "%d", rd_link_wait_ms(st));
	if (redisAsyncCommandArgv(st->ac, rd_wait_cb, NULL, 3, argv, NULL) != REDIS_OK)
		return REDIS_ERR;
	st->wait_pending = true;
	return REDIS_OK;
}

void rd_link_finish(struct cairn_store *st, int status)
{
	if (status == 0)
		rd_batch_clear(&st->sending);
	else
		rd_batch_requeue(&st->sending, &st->staged);
	st->routed_at = 0; /* the batches moved: the routed mark is found anew */
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
	if (st->cluster)
		rd_cluster_report_fenced(st);
	done(st->done_arg, st->done_status);
}

/*
 * Send st->staged as MULTI ... EXEC. The batch moves to st->sending until
 * EXEC's reply; rd_exec_cb then clears it or requeues it in front of what
 * was staged meanwhile.
 */
int rd_link_send(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	struct rd_batch tmp;

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
	if (redisAsyncCommand(st->ac, rd_exec_cb, NULL, "EXEC") != REDIS_OK ||
	    rd_link_send_wait(st) != REDIS_OK)
		goto broken;
	rd_link_started(st, done, arg);
	return CAIRN_EINPROGRESS;
broken:
	/* A half-sent MULTI must never be completed by a later EXEC: drop the
	 * link (from the loop) and keep the batch for the next attempt. */
	rd_batch_requeue(&st->sending, &st->staged);
	rd_link_kill(st);
	return CAIRN_EUNAVAILABLE;
}

int rd_link_send_one(struct cairn_store *st, int argc, const char **argv, const size_t *lens,
		     void (*reply_cb)(redisAsyncContext *ac, void *r, void *privdata),
		     cairn_store_done_fn done, void *arg)
{
	if (st->ac == NULL || st->ac_broken ||
	    (st->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0) {
		rd_batch_requeue(&st->sending, &st->staged);
		return CAIRN_EUNAVAILABLE;
	}
	if (redisAsyncCommandArgv(st->ac, reply_cb, NULL, argc, argv, lens) != REDIS_OK ||
	    rd_link_send_wait(st) != REDIS_OK) {
		rd_batch_requeue(&st->sending, &st->staged);
		rd_link_kill(st);
		return CAIRN_EUNAVAILABLE;
	}
	rd_link_started(st, done, arg);
	return CAIRN_EINPROGRESS;
}

int rd_link_init(struct cairn_store *st)
{
	st->reconnect_ev = evtimer_new(st->base, rd_reconnect_cb, st);
	st->watchdog_ev = evtimer_new(st->base, rd_watchdog_cb, st);
	st->done_ev = event_new(st->base, -1, 0, rd_done_cb, st);
	if (st->reconnect_ev == NULL || st->watchdog_ev == NULL || st->done_ev == NULL)
		return CAIRN_ENOMEM;
	return 0;
}

/*
 * The context is detached first (ac->data = NULL) so that the NULL-reply
 * callbacks hiredis runs while freeing it find no store. close() never runs
 * inside a hiredis callback (done is deferred to the loop); were it to,
 * hiredis would see REDIS_IN_CALLBACK and defer the free itself.
 */
void rd_link_close(struct cairn_store *st)
{
	redisAsyncContext *ac = st->ac;

	if (ac == NULL)
		return;
	st->ac = NULL;
	ac->data = NULL;
	redisAsyncFree(ac);
}

void rd_link_cleanup(struct cairn_store *st)
{
	if (st->reconnect_ev != NULL)
		event_free(st->reconnect_ev);
	if (st->watchdog_ev != NULL)
		event_free(st->watchdog_ev);
	if (st->done_ev != NULL)
		event_free(st->done_ev);
	st->reconnect_ev = st->watchdog_ev = st->done_ev = NULL;
}
