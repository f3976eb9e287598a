/*
 * The Redis backend: every record is a Redis key under a configurable prefix
 * (the layout is an operator interface, see cairn-redis(5)). This file fills
 * the vtable and encodes each staged write as Redis commands; open() and
 * load() use the blocking context of sync.c at start-up only, and every
 * commit afterwards is one MULTI/EXEC sent over the asynchronous link of
 * link.c, so the broker never waits on Redis, and a batch that fails is
 * replayed whole.
 */
#include "redis.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

void rd_log(const struct cairn_store *st, enum cairn_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bk_vlogf(st->log, st->log_arg, level, fmt, ap);
	va_end(ap);
}

/* ---- keys and number formats ---- */

char *rd_key(const struct cairn_store *st, const char *kind, const char *id)
{
	if (st->cluster) {
		char *ck = rd_cluster_key(st, kind, id);

		if (ck != NULL)
			return ck;
	}
	size_t pl = strlen(st->prefix), kl = strlen(kind), il = id != NULL ? strlen(id) : 0;
	char *k = bk_xmalloc(pl + kl + il + 2);

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

bool rd_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
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

bool rd_parse_i64(const char *s, size_t len, int64_t *out)
{
	uint64_t v;

	if (len > 0 && s[0] == '-') {
		if (!rd_parse_u64(s + 1, len - 1, (uint64_t)INT64_MAX + 1, &v) || v == 0)
			return false;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
		return true;
	}
	if (!rd_parse_u64(s, len, INT64_MAX, &v))
		return false;
	*out = (int64_t)v;
	return true;
}

/* ---- staged batches ---- */

void rd_batch_clear(struct rd_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		redisFreeCommand(b->v[i].buf);
		free(b->v[i].owner);
	}
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
	b->v = bk_xrealloc(b->v, b->cap * sizeof(*b->v));
}

void rd_batch_requeue(struct rd_batch *sent, struct rd_batch *staged)
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

int64_t rd_wall_ms(void)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
}

size_t rd_i64(char *out, int64_t v)
{
	if (v >= 0)
		return rd_u64(out, (uint64_t)v);
	out[0] = '-';
	return 1 + rd_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}

/* One command in the Redis protocol (RESP): "*argc\r\n" then
 * "$len\r\nbytes\r\n" per argument, into a new buffer at *out. */
static size_t rd_format(char **out, int argc, const char **argv, const size_t *lens)
{
	size_t total = 1 + 20 + 2, pos;
	char *b;

	for (int i = 0; i < argc; i++)
		total += 1 + 20 + 2 + lens[i] + 2;
	b = bk_xmalloc(total);
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
int rd_stage(struct cairn_store *st, int argc, const char **argv, const size_t *lens)
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
	st->staged.v[st->staged.n].owner = NULL;
	st->staged.v[st->staged.n].hold = 0;
	if (st->cluster && st->stage_owner != NULL) {
		st->staged.v[st->staged.n].owner = bk_xstrdup(st->stage_owner);
		st->staged.v[st->staged.n].hold = rd_cluster_hold(st, st->stage_owner);
	}
	st->staged.n++;
	return 0;
}

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
		bk_errf(err, errlen, "%s must be a number from %d to %d, got '%s'", key, min, max,
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
	rd_link_cleanup(st);
	rd_sync_close(st);
	rd_cluster_free(st);
	free(st->host);
	free(st->unix_path);
	free(st->password);
	free(st->prefix);
	free(st);
}

static int rd_open(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		   size_t errlen)
{
	struct cairn_store *st = bk_xcalloc(1, sizeof(*st));
	const char *s;
	int rc;

	*out = NULL;
	if (opts->base == NULL) {
		bk_errf(err, errlen, "redis: no event loop to attach to");
		rc = CAIRN_EINVAL;
		goto fail;
	}
	st->base = opts->base;
	st->log = opts->log;
	st->log_arg = opts->log_arg;
	st->backoff_ms = RD_BACKOFF_MIN_MS;
	s = rd_opt(opts, "redis_host");
	st->host = bk_xstrdup(s != NULL && s[0] != '\0' ? s : "127.0.0.1");
	s = rd_opt(opts, "redis_unix_socket");
	st->unix_path = s != NULL && s[0] != '\0' ? bk_xstrdup(s) : NULL;
	s = rd_opt(opts, "redis_password");
	st->password = s != NULL && s[0] != '\0' ? bk_xstrdup(s) : NULL;
	s = rd_opt(opts, "redis_key_prefix");
	st->prefix = bk_xstrdup(s != NULL ? s : "cairn:");
	if ((rc = rd_opt_int(opts, "redis_port", 6379, 1, 65535, &st->port, err, errlen)) != 0 ||
	    (rc = rd_opt_int(opts, "redis_db", 0, 0, 1000000, &st->db, err, errlen)) != 0 ||
	    (rc = rd_opt_int(opts, "redis_connect_timeout", 10000, 0, 3600000, &st->timeout_ms, err,
			     errlen)) != 0 ||
	    (rc = rd_opt_int(opts, "redis_wait_replicas", 0, 0, 100, &st->wait_replicas, err,
			     errlen)) != 0)
		goto fail;
	if ((rc = rd_cluster_open(st, opts, err, errlen)) != 0)
		goto fail;
	if (st->unix_path != NULL)
		snprintf(st->where, sizeof(st->where), "unix:%s", st->unix_path);
	else
		snprintf(st->where, sizeof(st->where), "%s:%d", st->host, st->port);

	if (rd_link_init(st) != 0) {
		bk_errf(err, errlen, "redis: cannot create timers");
		rc = CAIRN_ENOMEM;
		goto fail;
	}
	if ((rc = rd_sync_connect(st, err, errlen)) != 0 ||
	    (rc = rd_slots_check(st, err, errlen)) != 0 ||
	    (rc = rd_sync_check_schema(st, err, errlen)) != 0)
		goto fail;
	rd_sync_check_durability(st, opts->durability);
	rc = rd_link_connect(st);
	if (rc != 0) {
		bk_errf(err, errlen, "redis at %s: cannot open the event-loop connection",
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
	rd_share_drain(st);
	rd_link_close(st);
	rd_free(st);
}

static int rd_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	return rd_sync_load(st, v);
}

static int rd_session_put(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	char *key = rd_key(st, "session", rec->client_id), *set = rd_key(st, "sessions", NULL);
	char npid[8], wq[4], dropped[24], pl[4], exp[24], exp_at[24], wdelay[24], will_at[24];
	const char *argv[RD_MAX_ARGS];
	size_t lens[RD_MAX_ARGS];
	int argc = 0, rc;

	snprintf(npid, sizeof(npid), "%u", (unsigned)rec->next_packet_id);
	snprintf(wq, sizeof(wq), "%u", (unsigned)rec->will_qos);
	snprintf(dropped, sizeof(dropped), "%llu", (unsigned long long)rec->dropped);
	rd_u64(pl, rec->protocol_level);
	rd_u64(exp, rec->expiry_interval);
	rd_i64(exp_at, rec->expires_at);
	rd_u64(wdelay, rec->will_delay);
	rd_i64(will_at, rec->will_at);
	uint64_t wep = st->cluster && rec->has_will ? rd_cluster_epoch(st, rec->client_id) : 0;
	char wepbuf[24];

	snprintf(wepbuf, sizeof(wepbuf), "%llu", (unsigned long long)wep);
#define RD_ARG(p, l) (argv[argc] = (p), lens[argc] = (l), argc++)
#define RD_STR(p)    RD_ARG((p), strlen(p))
	/* DEL first: fields of an older record (a will) must not survive. */
	st->stage_owner = rec->client_id;
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
	if (rec->dropped > 0) {
		RD_STR("dropped");
		RD_STR(dropped);
	}
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
		if (rec->will_props_len > 0) {
			RD_STR("will_props");
			RD_ARG((const char *)rec->will_props, rec->will_props_len);
		}
		/* In cluster mode, the will's name: the epoch of the claim of
		 * the connection that left it, which the janitor and a claim
		 * that takes it append it under, as this node does (its once-
		 * only marker on a Redis Cluster). */
		if (wep > 0) {
			RD_STR("will_ep");
			RD_STR(wepbuf);
		}
	}
	/* Version 2 fields; absent (a version 1 record) reads as the
	 * default: protocol_level 0, expiry_interval never, the rest 0. */
	RD_STR("protocol_level");
	RD_STR(pl);
	RD_STR("expiry_interval");
	RD_STR(exp);
	if (rec->expires_at != 0) {
		RD_STR("expires_at");
		RD_STR(exp_at);
	}
	if (rec->will_delay != 0) {
		RD_STR("will_delay");
		RD_STR(wdelay);
	}
	if (rec->will_at != 0) {
		RD_STR("will_at");
		RD_STR(will_at);
	}
	if (rc == 0)
		rc = rd_stage(st, argc, argv, lens);
	argc = 0;
	RD_STR("SADD");
	RD_STR(set);
	RD_STR(rec->client_id);
	/* A shared store keeps no set of sessions: a node loads one when its
	 * client connects. */
	if (rc == 0 && !st->cluster)
		rc = rd_stage(st, argc, argv, lens);
	if (rc == 0 && st->cluster && !rec->connected)
		rc = rd_cluster_park(st, rec);
	st->stage_owner = NULL;
#undef RD_STR
#undef RD_ARG
	free(key);
	free(set);
	return rc;
}

static int rd_session_delete(struct cairn_store *st, const char *client_id)
{
	char *k[5] = {rd_key(st, "session", client_id), rd_key(st, "subs", client_id),
		      rd_key(st, "delivery", client_id), rd_key(st, "inflight_in", client_id),
		      rd_key(st, "m", client_id)};
	char *set = rd_key(st, "sessions", NULL);
	const char *del[] = {"DEL", k[0], k[1], k[2], k[3], k[4]};
	const char *srem[] = {"SREM", set, client_id};
	int rc;

	/* In cluster mode a session's message copies go with it. */
	st->stage_owner = client_id;
	rc = rd_stage(st, st->cluster ? 6 : 5, del, NULL);
	if (rc == 0 && !st->cluster)
		rc = rd_stage(st, 3, srem, NULL);
	st->stage_owner = NULL;
	if (rc == 0 && st->rcluster)
		rc = rd_cluster_q2_forget(st, client_id);
	for (int i = 0; i < 5; i++)
		free(k[i]);
	free(set);
	return rc;
}

static int rd_sub_put(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	char *key = rd_key(st, "subs", rec->client_id);
	char val[96];
	const char *argv[] = {"HSET", key, rec->filter, val};
	int rc;

	/* "qos", or "qos:options:sub_id" when either is set, or
	 * "qos:options:sub_id:ms-seq" with a log position (cluster mode). */
	size_t n = rd_u64(val, rec->qos);
	bool since = rec->since_ms != 0 || rec->since_seq != 0;
	if (rec->options != 0 || rec->sub_id != 0 || since) {
		val[n++] = ':';
		n += rd_u64(val + n, rec->options);
		val[n++] = ':';
		n += rd_u64(val + n, rec->sub_id);
	}
	if (since) {
		val[n++] = ':';
		n += rd_u64(val + n, rec->since_ms);
		val[n++] = '-';
		rd_u64(val + n, rec->since_seq);
	}
	st->stage_owner = rec->client_id;
	rc = rd_stage(st, 4, argv, NULL);
	st->stage_owner = NULL;
	free(key);
	return rc;
}

static int rd_sub_delete(struct cairn_store *st, const char *client_id, const char *filter)
{
	char *key = rd_key(st, "subs", client_id);
	const char *argv[] = {"HDEL", key, filter};
	int rc;

	st->stage_owner = client_id;
	rc = rd_stage(st, 3, argv, NULL);
	st->stage_owner = NULL;
	free(key);
	return rc;
}

static int rd_message_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	char id[24], qos[24], exp_at[24], *key;
	const char *argv[14];
	size_t lens[14];
	int rc;

	if (st->cluster) {
		rd_cluster_msg_put(st, rec);
		return 0;
	}
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
	/* Always written, so that a put replaces every field of the hash. */
	rd_i64(exp_at, rec->expires_at);
	argv[10] = "expires_at";
	argv[11] = exp_at;
	argv[12] = "props";
	argv[13] = rec->props_len > 0 ? (const char *)rec->props : "";
	for (int i = 0; i < 14; i++) /* the payload and props are bytes */
		lens[i] = i == 5 ? rec->payload_len : i == 13 ? rec->props_len : strlen(argv[i]);
	rc = rd_stage(st, 14, argv, lens);
	free(key);
	return rc;
}

static int rd_message_delete(struct cairn_store *st, uint64_t msg_id)
{
	char id[24], *key;
	const char *argv[2];
	int rc;

	if (st->cluster) {
		rd_cluster_msg_delete(st, msg_id);
		return 0;
	}
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
	char seq[24], small[80], *val = small;
	const char *hset[] = {"HSET", hkey, seq, NULL};
	const char *state = bk_state_name(rec->state);
	int rc = CAIRN_EINVAL;

	if (state == NULL || rec->qos > 2)
		goto out;
	if (rec->n_sub_ids > 2)
		val = bk_xmalloc(64 + BK_IDS_TEXT_MAX(rec->n_sub_ids));
	hset[3] = val;
	rd_u64(seq, rec->seq);
	/* "msg_id:packet_id:qos:state", then ":retain:ids" (ids "1,5,7",
	 * maybe empty) when the delivery has either. */
	size_t n = rd_u64(val, rec->msg_id);
	val[n++] = ':';
	n += rd_u64(val + n, rec->packet_id);
	val[n++] = ':';
	n += rd_u64(val + n, rec->qos);
	val[n++] = ':';
	memcpy(val + n, state, strlen(state) + 1);
	n += strlen(state);
	if (rec->retain || rec->n_sub_ids > 0) {
		val[n++] = ':';
		val[n++] = rec->retain ? '1' : '0';
		val[n++] = ':';
		bk_ids_format(val + n, rec->sub_ids, rec->n_sub_ids);
	}
	st->stage_owner = rec->client_id;
	rc = rd_stage(st, 4, hset, NULL);
	if (rc == 0 && st->cluster) {
		/* A shared store keeps a copy of the message with each of a
		 * session's deliveries, in the session's keys, written with
		 * the first put that knows it. */
		size_t mlen;
		const char *mv = rd_cluster_msg_value(st, rec->msg_id, &mlen);

		if (mv != NULL) {
			char *mkey = rd_key(st, "m", rec->client_id);
			const char *argv[] = {"HSETNX", mkey, seq, mv};
			size_t lens[] = {6, strlen(mkey), strlen(seq), mlen};

			rc = rd_stage(st, 4, argv, lens);
			free(mkey);
		}
	}
	st->stage_owner = NULL;
	if (val != small)
		free(val);
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
	st->stage_owner = client_id;
	rc = rd_stage(st, 3, hdel, NULL);
	if (rc == 0 && st->cluster) {
		char *mkey = rd_key(st, "m", client_id);
		const char *mdel[] = {"HDEL", mkey, s};

		rc = rd_stage(st, 3, mdel, NULL);
		free(mkey);
	}
	st->stage_owner = NULL;
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
	st->stage_owner = client_id;
	rc = rd_stage(st, 3, argv, NULL);
	st->stage_owner = NULL;
	free(key);
	if (rc == 0 && st->rcluster) {
		/* The session's id and the log are in two slots: the append
		 * that follows sets a marker in the log's slot (rd_cluster_log_
		 * append), which goes with the id. */
		free(st->last_in_id);
		st->last_in_id = NULL;
		if (strcmp(cmd, "SADD") == 0) {
			st->last_in_id = bk_xstrdup(client_id);
			st->last_in_pid = packet_id;
		} else {
			rc = rd_cluster_q2_done(st, client_id, pid);
		}
	}
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

char *rd_msg_value(const struct cairn_msg_rec *rec, size_t *len)
{
	bool v2 = rec->expires_at != 0 || rec->props_len > 0;
	size_t vlen = 2 + (v2 ? 48 + (size_t)rec->props_len : 0) + (size_t)rec->payload_len;
	char *val = bk_xmalloc(vlen);
	size_t n = 2;

	/* "<qos>:<payload>", or with an expiry or properties
	 * "<qos>;<expires_at>;<props_len>;<props><payload>". */
	val[0] = (char)('0' + (rec->qos <= 2 ? rec->qos : 0));
	val[1] = v2 ? ';' : ':';
	if (v2) {
		n += rd_i64(val + n, rec->expires_at);
		val[n++] = ';';
		n += rd_u64(val + n, rec->props_len);
		val[n++] = ';';
		if (rec->props_len > 0)
			memcpy(val + n, rec->props, rec->props_len);
		n += rec->props_len;
	}
	if (rec->payload_len > 0)
		memcpy(val + n, rec->payload, rec->payload_len);
	*len = n + rec->payload_len;
	return val;
}

static int rd_retained_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	char *key = rd_key(st, "retained", NULL);
	size_t vlen;
	char *val = rd_msg_value(rec, &vlen);
	const char *argv[] = {"HSET", key, rec->topic, val};
	size_t lens[] = {4, strlen(key), strlen(rec->topic), vlen};
	int rc;

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
 * the link calls done from the loop. While the link is down the batch stays
 * staged and CAIRN_EUNAVAILABLE comes back at once (done is never called
 * from here).
 */
static int rd_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	if (st->in_flight || done == NULL)
		return CAIRN_EINVAL;
	if (st->staged.n == 0)
		return 0;
	if (st->cluster)
		return rd_cluster_commit(st, done, arg);
	return rd_link_send(st, done, arg);
}

const struct cairn_store_ops cairn_store_redis = {
    .version = 7,
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
    .flags = CAIRN_STORE_ASYNC_COMMIT,
    .cluster_start = rd_cluster_start,
    .claim = rd_cluster_claim,
    .release = rd_cluster_release,
    .log_append = rd_cluster_log_append,
    .log_routed_p = rd_cluster_log_routed_p,
    .log_read_p = rd_cluster_log_read_p,
    .share_join = rd_share_join,
    .share_leave = rd_share_leave,
    .share_read = rd_share_read,
    .share_ack = rd_share_ack,
    .share_given = rd_share_given,
};
