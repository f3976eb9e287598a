/*
 * Redis Cluster slot routing, the parts that need no connection of their
 * own: the key slot (CRC16, XMODEM variant, of the key's hash tag, as the
 * Redis Cluster specification defines it), the slot map a CLUSTER SLOTS
 * reply describes, and the redirections (-MOVED, -ASK) a master answers
 * for a slot it does not serve; and the asynchronous links, one per
 * master, that carry cluster mode's commits there (with WAIT after each
 * commit's part under redis_wait_replicas). At open, rd_slots_check asks
 * the server whether it is a Redis Cluster (INFO cluster): without cluster
 * mode one is refused, with its layout, rather than left to fail every
 * multi-key commit with CROSSSLOT.
 */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection. */
uint16_t rd_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) != 0 ? (uint16_t)((crc << 1) ^ 0x1021)
						  : (uint16_t)(crc << 1);
	}
	return crc;
}

/*
 * The hash tag: the bytes between the first '{' and the first '}' after
 * it, when there are any; else the whole key. "{}x" hashes whole, and so
 * does a key with a '{' but no '}' after it.
 */
uint32_t rd_log_partition(const char *topic, uint32_t partitions)
{
	const char *slash;

	if (partitions <= 1)
		return 0;
	slash = strchr(topic, '/');
	return rd_crc16(topic, slash != NULL ? (size_t)(slash - topic) : strlen(topic)) %
	       partitions;
}

unsigned rd_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open != NULL) {
		size_t rest = len - (size_t)(open + 1 - key);

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1)
			return rd_crc16(open + 1, (size_t)(close - open - 1)) & (RD_SLOTS - 1);
	}
	return rd_crc16(key, len) & (RD_SLOTS - 1);
}

/* "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>". */
enum rd_redirect rd_redirect_parse(const char *err, size_t len, unsigned *slot, char *host,
				   size_t hostlen, int *port)
{
	enum rd_redirect kind;
	const char *p, *sp, *colon, *end = err + len;
	uint64_t v;

	if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
		kind = RD_MOVED;
		p = err + 6;
	} else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
		kind = RD_ASK;
		p = err + 4;
	} else {
		return RD_NO_REDIRECT;
	}
	sp = memchr(p, ' ', (size_t)(end - p));
	if (sp == NULL || !rd_parse_u64(p, (size_t)(sp - p), RD_SLOTS - 1, &v))
		return RD_NO_REDIRECT;
	*slot = (unsigned)v;
	p = sp + 1;
	/* The last colon: an IPv6 address has colons of its own. */
	colon = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == ':')
			colon = q;
	if (colon == NULL || (size_t)(colon - p) >= hostlen ||
	    !rd_parse_u64(colon + 1, (size_t)(end - colon - 1), 65535, &v) || v == 0)
		return RD_NO_REDIRECT;
	/* No endpoint (":port", or "?:port"), as Redis 7 answers under
	 * cluster-preferred-endpoint-type unknown-endpoint: host is left
	 * empty, and the caller uses the address it reached. */
	if (colon - p == 1 && *p == '?')
		colon = p;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*port = (int)v;
	return kind;
}

void rd_slot_map_free(struct rd_slot_map *m)
{
	for (size_t i = 0; i < m->nnodes; i++)
		free(m->nodes[i].host);
	free(m->nodes);
	m->nodes = NULL;
	m->nnodes = 0;
}

/* The index of host:port in m->nodes, added if new. */
static uint16_t rd_slot_node(struct rd_slot_map *m, const char *host, size_t hlen, int port)
{
	for (size_t i = 0; i < m->nnodes; i++)
		if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hlen &&
		    memcmp(m->nodes[i].host, host, hlen) == 0)
			return (uint16_t)i;
	m->nodes = bk_xrealloc(m->nodes, (m->nnodes + 1) * sizeof(*m->nodes));
	m->nodes[m->nnodes].host = bk_xstrndup(host, hlen);
	m->nodes[m->nnodes].port = port;
	return (uint16_t)m->nnodes++;
}

/*
 * CLUSTER SLOTS: an array of [first, last, master, replica...], each node
 * [host, port, id, ...]. A master that reports no host (NULL under
 * cluster-preferred-endpoint-type unknown-endpoint, "" or "?") is reached
 * at the address the reply came from, as Redis documents.
 */
int rd_slot_map_parse(const redisReply *r, const char *from_host, struct rd_slot_map *m)
{
	memset(m, 0, sizeof(*m));
	for (size_t s = 0; s < RD_SLOTS; s++)
		m->owner[s] = RD_NO_NODE;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return CAIRN_EIO;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *n;
		const char *host;
		size_t hlen;
		uint16_t idx;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER || e->element[0]->integer < 0 ||
		    e->element[1]->integer >= RD_SLOTS ||
		    e->element[0]->integer > e->element[1]->integer)
			goto bad;
		n = e->element[2];
		if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
		    (n->element[0]->type != REDIS_REPLY_STRING &&
		     n->element[0]->type != REDIS_REPLY_NIL) ||
		    n->element[1]->type != REDIS_REPLY_INTEGER || n->element[1]->integer <= 0 ||
		    n->element[1]->integer > 65535)
			goto bad;
		host = n->element[0]->type == REDIS_REPLY_NIL ? "" : n->element[0]->str;
		hlen = n->element[0]->type == REDIS_REPLY_NIL ? 0 : n->element[0]->len;
		if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
			host = from_host;
			hlen = strlen(from_host);
		}
		idx = rd_slot_node(m, host, hlen, (int)n->element[1]->integer);
		for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
			m->owner[s] = idx;
	}
	return 0;
bad:
	rd_slot_map_free(m);
	return CAIRN_EIO;
}

size_t rd_slot_map_unserved(const struct rd_slot_map *m)
{
	size_t n = 0;

	for (size_t s = 0; s < RD_SLOTS; s++)
		n += m->owner[s] == RD_NO_NODE;
	return n;
}

/* Whether INFO cluster says cluster_enabled:1. */
static bool rd_info_cluster_enabled(const redisReply *r)
{
	const char *p;

	if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)
		return false;
	p = strstr(r->str, "cluster_enabled:");
	return p != NULL && p[16] == '1';
}

int rd_slots_check(struct cairn_store *st, char *err, size_t errlen)
{
	const char *info[] = {"INFO", "cluster"};
	const char *slots[] = {"CLUSTER", "SLOTS"};
	struct rd_slot_map *m;
	redisReply *r;
	int rc = 0;
	size_t unserved, len;
	char *masters;

	r = rd_sync_cmd(st, 2, info, &rc);
	if (r == NULL) {
		bk_errf(err, errlen, "redis at %s: INFO cluster: connection lost", st->where);
		return rc;
	}
	/* A server that refuses INFO (renamed, ACL) is taken for standalone,
	 * as it always was. */
	if (!rd_info_cluster_enabled(r)) {
		freeReplyObject(r);
		return 0;
	}
	freeReplyObject(r);
	r = rd_sync_cmd(st, 2, slots, &rc);
	if (r == NULL) {
		bk_errf(err, errlen, "redis at %s: CLUSTER SLOTS: connection lost", st->where);
		return rc;
	}
	m = bk_xcalloc(1, sizeof(*m));
	if (rd_slot_map_parse(r, st->unix_path != NULL ? "127.0.0.1" : st->host, m) != 0) {
		bk_errf(err, errlen,
			"redis at %s is a Redis Cluster whose CLUSTER SLOTS reply was not "
			"understood",
			st->where);
		freeReplyObject(r);
		free(m);
		return CAIRN_EIO;
	}
	freeReplyObject(r);
	unserved = rd_slot_map_unserved(m);
	len = 1;
	for (size_t i = 0; i < m->nnodes; i++)
		len += strlen(m->nodes[i].host) + 8;
	masters = bk_xmalloc(len);
	masters[0] = '\0';
	for (size_t i = 0, at = 0; i < m->nnodes; i++)
		at += (size_t)snprintf(masters + at, len - at, "%s%s:%d", i > 0 ? " " : "",
				       m->nodes[i].host, m->nodes[i].port);
	if (!st->cluster || unserved > 0) {
		/* Without cluster true, the single-node layout spans several
		 * hash slots in one MULTI; with slots unserved, a commit that
		 * touches one has nowhere to go until the cluster is mended. */
		bk_errf(err, errlen,
			"redis at %s is a Redis Cluster (%zu master%s: %s; %zu of %d slots "
			"unserved), which cairn drives only with cluster true and every slot "
			"served: the single-node layout spans several hash slots in one "
			"commit, and a slot no master serves takes no commit (cairn-redis(5), "
			"CLUSTER MODE)",
			st->where, m->nnodes, m->nnodes == 1 ? "" : "s", masters, unserved,
			RD_SLOTS);
		free(masters);
		rd_slot_map_free(m);
		free(m);
		return CAIRN_EINVAL;
	}
	rd_log(st, CAIRN_LOG_NOTICE, "redis at %s: a Redis Cluster of %zu master%s (%s)", st->where,
	       m->nnodes, m->nnodes == 1 ? "" : "s", masters);
	free(masters);
	st->rcluster = true;
	st->map = m;
	st->links = bk_xcalloc(m->nnodes, sizeof(*st->links));
	st->nlinks = m->nnodes;
	return 0;
}

uint16_t rd_slot_master(const struct cairn_store *st, unsigned slot)
{
	return st->map->owner[slot & (RD_SLOTS - 1)];
}

/* ---- the blocking context on a Redis Cluster ---- */

static redisContext *rd_sync_open(struct cairn_store *st, const char *host, int port)
{
	struct timeval tv = {st->timeout_ms / 1000, (st->timeout_ms % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(host, port, tv);

	if (c == NULL)
		return NULL;
	if (c->err) {
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s:%d: %s", host, port, c->errstr);
		redisFree(c);
		return NULL;
	}
	if (st->timeout_ms > 0)
		redisSetTimeout(c, tv);
	if (st->password != NULL) {
		redisReply *r = redisCommand(c, "AUTH %s", st->password);

		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			rd_log(st, CAIRN_LOG_ERROR, "redis at %s:%d: AUTH refused", host, port);
			if (r != NULL)
				freeReplyObject(r);
			redisFree(c);
			return NULL;
		}
		freeReplyObject(r);
	}
	return c;
}

redisReply *rd_sync_follow(struct cairn_store *st, redisReply *r, int argc, const char **argv,
			   int *rc)
{
	for (int hops = 0; r != NULL && r->type == REDIS_REPLY_ERROR && hops < 5; hops++) {
		char host[256];
		unsigned slot;
		int port;
		enum rd_redirect k =
		    rd_redirect_parse(r->str, r->len, &slot, host, sizeof(host), &port);
		redisContext *c;

		if (k == RD_NO_REDIRECT)
			break;
		if (host[0] == '\0') /* no endpoint: the host this context reached */
			snprintf(host, sizeof(host), "%s",
				 st->sync->tcp.host != NULL ? st->sync->tcp.host : "127.0.0.1");
		freeReplyObject(r);
		c = rd_sync_open(st, host, port);
		if (c == NULL) {
			*rc = CAIRN_EUNAVAILABLE;
			return NULL;
		}
		redisFree(st->sync);
		st->sync = c;
		if (k == RD_ASK) {
			r = redisCommand(c, "ASKING");
			if (r != NULL)
				freeReplyObject(r);
		}
		r = redisCommandArgv(c, argc, argv, NULL);
	}
	if (r == NULL)
		*rc = CAIRN_EUNAVAILABLE;
	return r;
}

/*
 * With redis_wait_replicas, a master with fewer replicas than asked for
 * takes no commit until more follow it: said at start-up, naming it.
 * (CLUSTER SLOTS is no count: Redis 7.0 leaves out a replica whose
 * offset is still 0.)
 */
static void rd_sync_check_replicas(struct cairn_store *st, redisContext *c,
				   const struct rd_slot_node *n)
{
	redisReply *r;
	const char *p;
	long have;

	if (st->wait_replicas <= 0)
		return;
	r = redisCommand(c, "INFO replication");
	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_STRING && (p = strstr(r->str, "connected_slaves:")) != NULL &&
	    (have = strtol(p + 17, NULL, 10)) < st->wait_replicas)
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis: the Redis Cluster master %s:%d has %ld replica%s and "
		       "redis_wait_replicas is %d: a commit that writes there is retried, and "
		       "nothing it carries acknowledged, until %d follow it",
		       n->host, n->port, have, have == 1 ? "" : "s", st->wait_replicas,
		       st->wait_replicas);
	freeReplyObject(r);
}

int rd_sync_load_everywhere(struct cairn_store *st, const char *lua)
{
	const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", lua};

	for (size_t i = 0; i < st->map->nnodes; i++) {
		const struct rd_slot_node *n = &st->map->nodes[i];
		redisContext *c = rd_sync_open(st, n->host, n->port);
		redisReply *r;

		if (c == NULL)
			return CAIRN_EUNAVAILABLE;
		r = redisCommandArgv(c, 4, argv, NULL);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			rd_log(st, CAIRN_LOG_ERROR,
			       "redis at %s:%d: cannot load cairn's functions (Redis 7 or later is "
			       "needed): %s",
			       n->host, n->port, r != NULL ? r->str : c->errstr);
			if (r != NULL)
				freeReplyObject(r);
			redisFree(c);
			return CAIRN_EIO;
		}
		freeReplyObject(r);
		rd_sync_check_replicas(st, c, n);
		redisFree(c);
	}
	return 0;
}

/* ---- the asynchronous links, one per master ---- */

/* A command on its way, kept until its final reply so that a redirection
 * can send it again. */
struct rd_routed {
	redisCallbackFn *cb;
	void *priv;
	char *buf;
	size_t len;
	unsigned slot;
	int hops;
	/*
	 * A commit's part under redis_wait_replicas: WAIT follows the command
	 * on the same master's link, and cb hears the command's reply only
	 * once WAIT has counted enough replicas (held keeps it until then).
	 * refs counts the callbacks hiredis still owes rr (the command's and
	 * each WAIT's); answered says cb ran. rr is freed when both are done.
	 */
	bool wait;
	bool answered;
	int refs;
	redisReply *held;
};

/* A WAIT's callback data: the command it follows, and which attempt
 * (hops) it followed; a WAIT left behind by a redirection is ignored. */
struct rd_wait_ref {
	struct rd_routed *rr;
	int hops;
};

static struct rd_route_link *rd_link_of(struct cairn_store *st, const redisAsyncContext *ac)
{
	for (size_t i = 0; i < st->nlinks; i++)
		if (st->links[i].ac == ac)
			return &st->links[i];
	return NULL;
}

static int64_t rd_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rd_refresh_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct cairn_store *st = ac->data;
	redisReply *reply = r;
	struct rd_slot_map *m;
	uint16_t *idx;
	size_t moved = 0;
	const char *from;
	int from_port = ac->c.tcp.port;

	(void)privdata;
	if (st == NULL)
		return;
	/* The master that answered: a node listed without an endpoint is
	 * reached at its address. */
	from = ac->c.tcp.host != NULL ? ac->c.tcp.host
				      : (st->unix_path != NULL ? "127.0.0.1" : st->host);
	st->refreshing = false;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		if (reply != NULL)
			rd_log(st, CAIRN_LOG_WARNING,
			       "redis: CLUSTER SLOTS on the Redis Cluster master %s:%d: %s", from,
			       from_port, reply->type == REDIS_REPLY_ERROR ? reply->str : "no map");
		return;
	}
	m = bk_xcalloc(1, sizeof(*m));
	if (rd_slot_map_parse(reply, from, m) == 0) {
		/* Indexes into st->map only grow: the links keep theirs. */
		idx = bk_xmalloc((m->nnodes + 1) * sizeof(*idx));
		for (size_t i = 0; i < m->nnodes; i++)
			idx[i] = rd_slot_node(st->map, m->nodes[i].host, strlen(m->nodes[i].host),
					      m->nodes[i].port);
		for (size_t s = 0; s < RD_SLOTS; s++) {
			uint16_t o = m->owner[s] == RD_NO_NODE ? RD_NO_NODE : idx[m->owner[s]];

			moved += st->map->owner[s] != o;
			st->map->owner[s] = o;
		}
		free(idx);
		if (moved > 0) {
			rd_route_map_changed(st);
			rd_log(st, CAIRN_LOG_NOTICE,
			       "redis: the Redis Cluster's slot map read again from %s:%d: %zu "
			       "slots moved, %zu unserved",
			       from, from_port, moved, rd_slot_map_unserved(st->map));
		}
	} else {
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis: the CLUSTER SLOTS reply of %s:%d was not understood", from,
		       from_port);
	}
	rd_slot_map_free(m);
	free(m);
}

/*
 * A master's link failed: a master that failed over answers no MOVED, so
 * the map is read again (CLUSTER SLOTS), at most once a second, from the
 * first link that is up: the configured server's or another master's.
 */
void rd_route_refresh(struct cairn_store *st, const redisAsyncContext *failed)
{
	const char *argv[] = {"CLUSTER", "SLOTS"};
	redisAsyncContext *ac = NULL;
	int64_t now = rd_mono_ms();

	if (st->refreshing || now - st->refreshed_ms < 1000)
		return;
	if (st->ac != NULL && st->ac != failed && !st->ac_broken &&
	    (st->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) == 0)
		ac = st->ac;
	for (size_t i = 0; ac == NULL && i < st->nlinks; i++) {
		redisAsyncContext *l = st->links[i].ac;

		if (l != NULL && l != failed && (l->c.flags & REDIS_CONNECTED) != 0 &&
		    (l->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) == 0)
			ac = l;
	}
	if (ac == NULL || redisAsyncCommandArgv(ac, rd_refresh_cb, NULL, 2, argv, NULL) != REDIS_OK)
		return;
	st->refreshing = true;
	st->refreshed_ms = now;
}

static void rd_route_connect_cb(const redisAsyncContext *ac, int status)
{
	struct cairn_store *st = ac->data;
	struct rd_route_link *l;

	if (st == NULL || status == REDIS_OK)
		return;
	if ((l = rd_link_of(st, ac)) != NULL) {
		l->ac = NULL; /* hiredis frees it */
		rd_route_refresh(st, ac);
	}
}

static void rd_route_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct cairn_store *st = ac->data;
	struct rd_route_link *l;

	(void)status;
	if (st == NULL)
		return;
	if ((l = rd_link_of(st, ac)) != NULL) {
		l->ac = NULL;
		rd_log(st, CAIRN_LOG_WARNING, "redis: a Redis Cluster master's link closed (%s)",
		       ac->errstr[0] ? ac->errstr : "by the server");
		rd_route_refresh(st, ac);
	}
}

/* The link of map node i, connected (or connecting), or NULL. */
static redisAsyncContext *rd_route_link(struct cairn_store *st, size_t i)
{
	const struct rd_slot_node *n;
	redisAsyncContext *ac;

	if (i >= st->map->nnodes)
		return NULL;
	if (i >= st->nlinks) {
		st->links = bk_xrealloc(st->links, st->map->nnodes * sizeof(*st->links));
		memset(st->links + st->nlinks, 0,
		       (st->map->nnodes - st->nlinks) * sizeof(*st->links));
		st->nlinks = st->map->nnodes;
	}
	ac = st->links[i].ac;
	if (ac != NULL)
		return (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0 ? NULL : ac;
	n = &st->map->nodes[i];
	ac = redisAsyncConnect(n->host, n->port);
	if (ac == NULL)
		return NULL;
	if (ac->err || redisLibeventAttach(ac, st->base) != REDIS_OK) {
		redisAsyncFree(ac);
		return NULL;
	}
	ac->data = st;
	redisEnableKeepAlive(&ac->c);
	redisAsyncSetConnectCallback(ac, rd_route_connect_cb);
	redisAsyncSetDisconnectCallback(ac, rd_route_disconnect_cb);
	if (st->password != NULL) {
		const char *argv[] = {"AUTH", st->password};

		redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, NULL);
	}
	st->links[i].ac = ac;
	return ac;
}

static void rd_routed_cb(redisAsyncContext *ac, void *r, void *privdata);
static void rd_routed_wait_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Send rr on the link of map node i (ASKING first when ask), and WAIT
 * after it when rr waits for replicas. */
static int rd_routed_send(struct cairn_store *st, struct rd_routed *rr, size_t i, bool ask)
{
	redisAsyncContext *ac = rd_route_link(st, i);
	char n[16], ms[16];
	const char *wait[] = {"WAIT", n, ms};
	struct rd_wait_ref *w;

	if (ac == NULL) {
		rd_route_refresh(st, NULL);
		return REDIS_ERR;
	}
	if (ask && redisAsyncCommand(ac, NULL, NULL, "ASKING") != REDIS_OK)
		return REDIS_ERR;
	if (redisAsyncFormattedCommand(ac, rd_routed_cb, rr, rr->buf, rr->len) != REDIS_OK)
		return REDIS_ERR;
	rr->refs++;
	if (!rr->wait)
		return REDIS_OK;
	snprintf(n, sizeof(n), "%d", st->wait_replicas);
	snprintf(ms, sizeof(ms), "%d", rd_link_wait_ms(st));
	w = bk_xmalloc(sizeof(*w));
	w->rr = rr;
	w->hops = rr->hops;
	if (redisAsyncCommandArgv(ac, rd_routed_wait_cb, w, 3, wait, NULL) != REDIS_OK) {
		/* Only a context on its way out refuses a command, and it
		 * answers the one just sent with NULL: the commit fails. */
		free(w);
		return REDIS_OK;
	}
	rr->refs++;
	return REDIS_OK;
}

/* cb hears reply (once). */
static void rd_routed_answer(struct rd_routed *rr, redisAsyncContext *ac, redisReply *reply)
{
	if (rr->answered)
		return;
	rr->answered = true;
	if (rr->cb != NULL)
		rr->cb(ac, reply, rr->priv);
}

/* One callback hiredis owed rr has run: free rr after the last. */
static void rd_routed_unref(struct rd_routed *rr, redisAsyncContext *ac)
{
	if (--rr->refs > 0)
		return;
	rd_routed_answer(rr, ac, NULL);
	if (rr->held != NULL)
		freeReplyObject(rr->held);
	free(rr->buf);
	free(rr);
}

/* A deep copy of a reply, which hiredis frees once its callback returns. */
redisReply *rd_reply_dup(const redisReply *r)
{
	redisReply *c = bk_xcalloc(1, sizeof(*c));

	c->type = r->type;
	c->integer = r->integer;
	if (r->str != NULL) {
		c->str = bk_xmemdup(r->str, r->len + 1);
		c->len = r->len;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
		c->element = bk_xcalloc(r->elements, sizeof(*c->element));
		c->elements = r->elements;
		for (size_t i = 0; i < r->elements; i++)
			c->element[i] = rd_reply_dup(r->element[i]);
	}
	return c;
}

/* An error reply made here, for a commit's part that WAIT found short. */
static redisReply *rd_reply_error(const char *msg)
{
	redisReply *e = bk_xcalloc(1, sizeof(*e));

	e->type = REDIS_REPLY_ERROR;
	e->str = bk_xstrdup(msg);
	e->len = strlen(msg);
	return e;
}

static void rd_routed_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_routed *rr = privdata;
	struct cairn_store *st = ac->data;
	redisReply *reply = r;

	if (st != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR && rr->hops < 5) {
		char host[256];
		unsigned slot;
		int port;
		enum rd_redirect k =
		    rd_redirect_parse(reply->str, reply->len, &slot, host, sizeof(host), &port);

		if (k != RD_NO_REDIRECT) {
			size_t i;

			/* No endpoint (cluster-preferred-endpoint-type
			 * unknown-endpoint): the host this link reached. */
			if (host[0] == '\0')
				snprintf(host, sizeof(host), "%s",
					 ac->c.tcp.host != NULL ? ac->c.tcp.host : "127.0.0.1");
			i = rd_slot_node(st->map, host, strlen(host), port);
			if (k == RD_MOVED && st->map->owner[slot] != i) {
				st->map->owner[slot] = (uint16_t)i;
				rd_route_map_changed(st);
			}
			rr->hops++;
			if (rd_routed_send(st, rr, i, k == RD_ASK) == REDIS_OK) {
				rd_routed_unref(rr, ac);
				return;
			}
			reply = NULL; /* as if the link went */
		} else if (strstr(reply->str, "non local key") != NULL ||
			   strncmp(reply->str, "CROSSSLOT", 9) == 0) {
			/* A function touched a key whose slot moved since the map
			 * was read: Redis says so without a MOVED. The caller's
			 * retry goes by the map read again. */
			rd_route_refresh(st, NULL);
		}
	}
	if (rr->wait && st != NULL && reply != NULL && reply->type != REDIS_REPLY_ERROR)
		rr->held = rd_reply_dup(reply); /* WAIT's reply decides */
	else
		rd_routed_answer(rr, ac, reply);
	rd_routed_unref(rr, ac);
}

/*
 * WAIT's reply after a commit's part: the replicas that hold every write
 * sent before it on this master's link. Too few, and the part fails with
 * an error naming the master; the commit is then retried (every part
 * bears a replay), as on one primary, so nothing is acknowledged that
 * fewer replicas hold.
 */
static void rd_routed_wait_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_wait_ref *w = privdata;
	struct rd_routed *rr = w->rr;
	struct cairn_store *st = ac->data;
	redisReply *reply = r, *err;
	bool current = w->hops == rr->hops;

	free(w);
	if (current && !rr->answered && rr->held != NULL) {
		if (st == NULL || reply == NULL) {
			rd_routed_answer(rr, ac, NULL);
		} else if (reply->type == REDIS_REPLY_INTEGER &&
			   reply->integer >= (long long)st->wait_replicas) {
			rd_routed_answer(rr, ac, rr->held);
		} else {
			char *msg = bk_strf(
			    "WAIT on the Redis Cluster master %s:%d: %lld of the %d replicas asked "
			    "for (redis_wait_replicas) hold the commit",
			    ac->c.tcp.host != NULL ? ac->c.tcp.host : "?", ac->c.tcp.port,
			    reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1LL,
			    st->wait_replicas);

			if (reply->type == REDIS_REPLY_ERROR)
				rd_log(st, CAIRN_LOG_WARNING, "redis: %s (WAIT refused: %s)", msg,
				       reply->str);
			err = rd_reply_error(msg);
			rd_routed_answer(rr, ac, err);
			freeReplyObject(err);
			free(msg);
		}
	}
	rd_routed_unref(rr, ac);
}

/* A command on its way to slot's master; waits for replicas when wait. */
static int rd_route_send_new(struct cairn_store *st, unsigned slot, redisCallbackFn *cb, void *priv,
			     const char *buf, size_t len, bool wait)
{
	uint16_t i = rd_slot_master(st, slot);
	struct rd_routed *rr;

	if (i == RD_NO_NODE) {
		rd_route_refresh(st, NULL);
		return REDIS_ERR;
	}
	rr = bk_xcalloc(1, sizeof(*rr));
	rr->cb = cb;
	rr->priv = priv;
	rr->buf = bk_xmemdup(buf, len);
	rr->len = len;
	rr->slot = slot;
	rr->wait = wait;
	if (rd_routed_send(st, rr, i, false) != REDIS_OK) {
		free(rr->buf);
		free(rr);
		return REDIS_ERR;
	}
	return REDIS_OK;
}

int rd_route_formatted(struct cairn_store *st, unsigned slot, redisCallbackFn *cb, void *priv,
		       const char *buf, size_t len)
{
	return rd_route_send_new(st, slot, cb, priv, buf, len, false);
}

int rd_route_commit(struct cairn_store *st, unsigned slot, redisCallbackFn *cb, void *priv,
		    const char *buf, size_t len)
{
	return rd_route_send_new(st, slot, cb, priv, buf, len, st->wait_replicas > 0);
}

int rd_route_argv(struct cairn_store *st, const char *key, size_t keylen, redisCallbackFn *cb,
		  void *priv, int argc, const char **argv, const size_t *lens)
{
	char *buf = NULL;
	int len = redisFormatCommandArgv(&buf, argc, argv, lens);
	int rc;

	if (len < 0)
		return REDIS_ERR;
	rc = rd_route_formatted(st, rd_key_slot(key, keylen), cb, priv, buf, (size_t)len);
	redisFreeCommand(buf);
	return rc;
}

void rd_route_map_changed(struct cairn_store *st)
{
	for (size_t i = 0; i < st->nmtags; i++)
		free(st->mtags[i]);
	free(st->mtags);
	st->mtags = NULL;
	st->nmtags = 0;
}

const char *rd_route_marks_tag(struct cairn_store *st, uint16_t m)
{
	char tag[24];
	bool serves = false;

	if (m >= st->map->nnodes)
		return NULL;
	if (m >= st->nmtags) {
		st->mtags = bk_xrealloc(st->mtags, st->map->nnodes * sizeof(*st->mtags));
		for (size_t i = st->nmtags; i < st->map->nnodes; i++)
			st->mtags[i] = NULL;
		st->nmtags = st->map->nnodes;
	}
	if (st->mtags[m] != NULL)
		return st->mtags[m][0] != '\0' ? st->mtags[m] : NULL;
	for (size_t s = 0; !serves && s < RD_SLOTS; s++)
		serves = st->map->owner[s] == m;
	for (unsigned t = 0; serves && t < (1u << 22); t++) {
		int n = snprintf(tag, sizeof(tag), "m:%u", t);

		if (st->map->owner[rd_key_slot(tag, (size_t)n)] == m) {
			st->mtags[m] = bk_xstrdup(tag);
			return st->mtags[m];
		}
	}
	st->mtags[m] = bk_xstrdup(""); /* serves no slot: none */
	return NULL;
}

bool rd_route_moved(struct cairn_store *st, const char *err, size_t len)
{
	char host[256];
	unsigned slot;
	int port;

	if (rd_redirect_parse(err, len, &slot, host, sizeof(host), &port) != RD_MOVED)
		return false;
	if (host[0] == '\0') /* no endpoint: the configured server's host */
		snprintf(host, sizeof(host), "%s", st->unix_path != NULL ? "127.0.0.1" : st->host);
	st->map->owner[slot] = rd_slot_node(st->map, host, strlen(host), port);
	rd_route_map_changed(st);
	return true;
}

const struct rd_slot_node *rd_route_node(const struct cairn_store *st, const char *key)
{
	uint16_t i = rd_slot_master(st, rd_key_slot(key, strlen(key)));

	return i == RD_NO_NODE ? NULL : &st->map->nodes[i];
}

void rd_route_drop_all(struct cairn_store *st)
{
	for (size_t i = 0; i < st->nlinks; i++) {
		redisAsyncContext *ac = st->links[i].ac;

		if (ac == NULL)
			continue;
		st->links[i].ac = NULL;
		redisAsyncFree(ac);
	}
}

void rd_route_free(struct cairn_store *st)
{
	for (size_t i = 0; i < st->nlinks; i++) {
		redisAsyncContext *ac = st->links[i].ac;

		if (ac == NULL)
			continue;
		ac->data = NULL;
		redisAsyncFree(ac);
	}
	free(st->links);
	st->links = NULL;
	st->nlinks = 0;
	rd_route_map_changed(st);
	if (st->map != NULL) {
		rd_slot_map_free(st->map);
		free(st->map);
		st->map = NULL;
	}
}
