/*
 * Redis Cluster slot routing, the parts that need no connection of their
 * own: the key slot (CRC16, XMODEM variant, of the key's hash tag, as the
 * Redis Cluster specification defines it), the slot map a CLUSTER SLOTS
 * reply describes, and the redirections (-MOVED, -ASK) a master answers
 * for a slot it does not serve. At open, rd_slots_check asks the server
 * whether it is a Redis Cluster (INFO cluster): cairn drives one primary
 * (with its replicas) only, so a Redis Cluster is refused there, with its
 * layout, rather than left to fail every multi-key commit with CROSSSLOT.
 */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	if (colon == NULL || colon == p || (size_t)(colon - p) >= hostlen ||
	    !rd_parse_u64(colon + 1, (size_t)(end - colon - 1), 65535, &v) || v == 0)
		return RD_NO_REDIRECT;
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
 * [host, port, id, ...]. A master that reports no host ("" or "?") is
 * reached at the address the reply came from, as Redis documents.
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
		    n->element[0]->type != REDIS_REPLY_STRING ||
		    n->element[1]->type != REDIS_REPLY_INTEGER || n->element[1]->integer <= 0 ||
		    n->element[1]->integer > 65535)
			goto bad;
		host = n->element[0]->str;
		hlen = n->element[0]->len;
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
			"redis at %s is a Redis Cluster, which cairn does not drive (its CLUSTER "
			"SLOTS reply was not understood either); point redis_host at a "
			"standalone primary",
			st->where);
		freeReplyObject(r);
		free(m);
		return CAIRN_EINVAL;
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
	bk_errf(err, errlen,
		"redis at %s is a Redis Cluster (%zu master%s: %s; %zu of %d slots unserved), "
		"which cairn does not drive yet: a commit spans several hash slots. Point "
		"redis_host at a standalone primary (cairn-redis(5), CLUSTER MODE)",
		st->where, m->nnodes, m->nnodes == 1 ? "" : "s", masters, unserved, RD_SLOTS);
	free(masters);
	rd_slot_map_free(m);
	free(m);
	return CAIRN_EINVAL;
}
