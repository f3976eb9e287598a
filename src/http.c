/*
 * The HTTP listener: read-only endpoints for operators and monitoring,
 * and, with http_admin, a small JSON admin API whose writes go through
 * the broker's own paths (conn_disconnect, client_discard,
 * server_clear_retained) so the store stays consistent.
 *
 * Everything runs on the broker's event loop, between packets, and
 * nothing is kept per message. /metrics and /api/status read a snapshot
 * of the sessions walked at most once a second (metrics_cache); a page of
 * the session list costs one walk with a heap of the page's size. The
 * status page's chart reads a ring of samples taken every
 * HTTP_SAMPLE_SECONDS. Connections are counted and capped
 * (http_max_connections) through the bufferevent evhttp asks us for.
 */
#include "http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "auth.h"
#include "client.h"
#include "codec.h"
#include "conn.h"
#include "http_page.h"
#include "metrics.h"
#include "router.h"
#include "security.h"
#include "server.h"
#include "store.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define HTTP_SAMPLE_SECONDS 5
#define HTTP_SAMPLES        120 /* ten minutes */
#define HTTP_PAGE_LIMIT     1000
/* How long the listener rests after accept() ran out of descriptors. */
#define HTTP_ACCEPT_REST_MS 1000

/* 5.0 DISCONNECT reason: Administrative action. */
#define HTTP_RC_ADMINISTRATIVE 0x98

struct http_sample {
	double t; /* uptime, seconds */
	uint64_t received, sent, connections;
	uint64_t commits;
	double lat_sum;
};

struct http_conn;

struct http_server {
	struct server *srv;
	struct evhttp *http;
	struct evconnlistener *listener; /* evhttp's, rested after an accept error */
	struct util_accept_rest rest;
	struct http_stats st;
	struct http_conn *taking;   /* given a bufferevent, not yet seen taken in */
	struct event *take;         /* runs http_take_cb */
	uint64_t refusal_logged_ns; /* when a refusal was last logged */
	uint64_t refusals_unlogged; /* refused since */
	struct metrics_cache metrics;
	struct event *sampler;
	char *token; /* the admin bearer token; NULL: none (loopback only) */
	size_t token_len;
	struct http_sample ring[HTTP_SAMPLES];
	size_t nsamples, next;
};

/* ---- replies ---- */

static void http_reply(struct evhttp_request *req, int code, const char *type,
		       struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply(req, code, code == 200 ? "OK" : NULL, body);
}

static void http_text(struct evhttp_request *req, int code, const char *text)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "%s\n", text);
	http_reply(req, code, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void http_json_error(struct evhttp_request *req, int code, const char *msg)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, "{\"error\":", 9);
	metrics_json_string(b, msg);
	evbuffer_add(b, "}\n", 2);
	http_reply(req, code, "application/json", b);
	evbuffer_free(b);
}

static void http_json_ok(struct evhttp_request *req, struct evbuffer *b)
{
	http_reply(req, 200, "application/json", b);
}

/* A small JSON answer given as text. */
static void http_json_text(struct evhttp_request *req, const char *json)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "%s\n", json);
	http_json_ok(req, b);
	evbuffer_free(b);
}

/* ---- the samples of the chart ---- */

static void http_sample(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct http_server *h = arg;
	struct server *srv = h->srv;
	struct http_sample *s = &h->ring[h->next];
	s->t = (double)(store_now_ns() - srv->started_ns) / 1e9;
	s->received = server_msgs_received(&srv->stats);
	s->sent = server_msgs_sent(&srv->stats);
	s->connections = conn_set_stats(srv->conns)->current;
	if (srv->store) {
		const struct store_stats *ss = store_get_stats(srv->store);
		s->commits = ss->commits;
		s->lat_sum = ss->lat_sum;
	}
	h->next = (h->next + 1) % HTTP_SAMPLES;
	if (h->nsamples < HTTP_SAMPLES)
		h->nsamples++;
}

/* ---- read-only endpoints ---- */

/* A commit running longer than this (a hung disk, a silent link) makes
 * the broker not ready, as a failing one does. */
#define HTTP_COMMIT_STALL_NS (10 * 1000000000ull)

static bool http_ready(const struct server *srv)
{
	return !srv->stopping &&
	       (!srv->store || (store_is_healthy(srv->store) &&
				store_commit_running_ns(srv->store) < HTTP_COMMIT_STALL_NS)) &&
	       conn_set_listening(srv->conns);
}

static void http_status(struct http_server *h, struct evhttp_request *req)
{
	struct server *srv = h->srv;
	const struct metrics_snapshot m = *metrics_cache_get(&h->metrics, srv);
	const struct conn_stats *cs = conn_set_stats(srv->conns);
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b,
			    "{\"version\":\"%s\",\"uptime\":%.3f,\"ready\":%s,"
			    "\"connections\":%" PRIu64 ",\"connections_accepted\":%" PRIu64
			    ",\"sessions\":%" PRIu64 ",\"sessions_connected\":%" PRIu64
			    ",\"sessions_offline\":%" PRIu64 ",\"subscriptions\":%" PRIu64
			    ",\"retained\":%" PRIu64 ",\"queued_messages\":%" PRIu64
			    ",\"inflight_messages\":%" PRIu64 ",\"queued_bytes\":%" PRIu64
			    ",\"messages_received\":%" PRIu64 ",\"messages_sent\":%" PRIu64
			    ",\"messages_dropped\":%" PRIu64,
			    PACKAGE_VERSION, m.uptime_seconds, http_ready(srv) ? "true" : "false",
			    cs->current, cs->accepted, m.sessions_known, m.sessions_connected,
			    m.sessions_offline, m.subscriptions, m.retained, m.queued_messages,
			    m.inflight_messages, m.queued_bytes, server_msgs_received(&srv->stats),
			    server_msgs_sent(&srv->stats), server_msgs_dropped(&srv->stats));
	if (srv->store) {
		const struct store_stats *ss = store_get_stats(srv->store);
		evbuffer_add_printf(b,
				    ",\"store\":{\"backend\":\"%s\",\"up\":%s,\"commits\":%" PRIu64
				    ",\"commits_failed\":%" PRIu64 ",\"commit_seconds_avg\":%.9f,"
				    "\"last_commit_age\":%.3f,\"size_bytes\":%" PRId64 "}",
				    store_name(srv->store),
				    store_is_healthy(srv->store) ? "true" : "false", ss->commits,
				    ss->commits_failed,
				    ss->commits ? ss->lat_sum / (double)ss->commits : 0.0,
				    m.since_commit_seconds, m.store_bytes);
	}
	evbuffer_add(b, ",\"largest_queues\":[", 19);
	for (size_t i = 0; i < m.ntop; i++) {
		evbuffer_add_printf(b, "%s{\"client_id\":", i ? "," : "");
		metrics_json_string(b, m.top[i].client_id);
		evbuffer_add_printf(b, ",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
				    m.top[i].messages, m.top[i].bytes);
	}
	evbuffer_add_printf(b, "],\"sample_seconds\":%d,\"samples\":[", HTTP_SAMPLE_SECONDS);
	for (size_t i = 0; i < h->nsamples; i++) {
		size_t k = (h->next + HTTP_SAMPLES - h->nsamples + i) % HTTP_SAMPLES;
		const struct http_sample *s = &h->ring[k];
		evbuffer_add_printf(b,
				    "%s{\"t\":%.3f,\"received\":%" PRIu64 ",\"sent\":%" PRIu64
				    ",\"connections\":%" PRIu64 ",\"commits\":%" PRIu64
				    ",\"commit_seconds_sum\":%.9f}",
				    i ? "," : "", s->t, s->received, s->sent, s->connections,
				    s->commits, s->lat_sum);
	}
	evbuffer_add(b, "]}\n", 3);
	http_json_ok(req, b);
	evbuffer_free(b);
}

/* ---- the admin API ---- */

/* Whether host (a Host header, with or without a port) names the
 * loopback. */
static bool http_host_is_loopback(const char *host)
{
	const char *end = host[0] == '[' ? strchr(host, ']') : strchr(host, ':');
	if (host[0] == '[' && end)
		end++;
	return util_name_is_loopback(host, end ? (size_t)(end - host) : strlen(host));
}

/* The topic an MQTT user must be allowed to write (acl_file) to use the
 * admin API with HTTP Basic authentication. */
#define HTTP_ADMIN_TOPIC "$CAIRN/admin"
/* Longest "user:password" taken from a Basic header. */
#define HTTP_BASIC_MAX 1024

static int http_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode standard base64 (RFC 4648, padded) into out (cap bytes). Returns
 * the decoded length, or -1 for anything else, or when it does not fit. */
static long http_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	if (len % 4 != 0)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)in[i + k];
			if (c == '=' && i + 4 == len && k >= 2 && (k == 3 || in[i + 3] == '=')) {
				v[k] = 0;
				pad++;
			} else if ((v[k] = http_b64_value(c)) < 0 || pad) {
				return -1;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		unsigned char b3[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8),
				       (unsigned char)w};
		if (n + 3 - (size_t)pad > cap)
			return -1;
		memcpy(out + n, b3, 3 - (size_t)pad);
		n += 3 - (size_t)pad;
	}
	return (long)n;
}

/*
 * HTTP Basic credentials (the header's value after "Basic "): allowed
 * when the broker-wide password file verifies them, as it verifies an
 * MQTT CONNECT, and the broker-wide ACL lets that user write
 * HTTP_ADMIN_TOPIC. Without a password file or an ACL nobody is allowed:
 * "no ACL, everything allowed" holds for MQTT, not here.
 */
static bool http_basic_allowed(const struct http_server *h, const char *cred, int *status)
{
	struct server *srv = h->srv;
	const struct security *sec = security_for(&srv->security, NULL);
	unsigned char buf[HTTP_BASIC_MAX];
	bool ok = false;
	long n = -1;
	*status = 401;
	while (*cred == ' ')
		cred++;
	size_t len = strcspn(cred, " \t");
	if (cred[len] != '\0' || len > 4 * (HTTP_BASIC_MAX / 3))
		goto out;
	n = http_b64_decode(cred, len, buf, sizeof(buf));
	const unsigned char *colon = n > 0 ? memchr(buf, ':', (size_t)n) : NULL;
	if (!colon || colon == buf || !sec->auth || !sec->acl)
		goto out;
	size_t ulen = (size_t)(colon - buf);
	const char *user = (const char *)buf;
	if (memchr(user, '\0', ulen) || !codec_utf8_valid(user, ulen))
		goto out;
	char shown[64];
	security_printable(shown, sizeof(shown), user, ulen);
	if (auth_check(sec->auth, user, ulen, colon + 1, (size_t)n - ulen - 1) != 0) {
		log_write(srv->log, LOG_LEVEL_NOTICE,
			  "admin API: login of '%s' refused: bad username or password", shown);
		goto out;
	}
	char *username = xstrndup(user, ulen);
	/* No client id: a pattern rule with %c grants nothing here. */
	ok = acl_check(sec->acl, "", username, HTTP_ADMIN_TOPIC, strlen(HTTP_ADMIN_TOPIC),
		       ACL_WRITE);
	free(username);
	if (!ok) {
		log_write(srv->log, LOG_LEVEL_NOTICE,
			  "admin API: '%s' refused: the ACL does not let it write %s", shown,
			  HTTP_ADMIN_TOPIC);
		*status = 403;
	}
out:
	if (n > 0)
		explicit_bzero(buf, (size_t)n); /* the password */
	return ok;
}

/*
 * Whether req may use the admin API; *status is the refusal's code (401,
 * or 403 for a user the ACL does not allow). Three ways in: the bearer
 * token (compared in constant time for the token's length), an MQTT
 * user's HTTP Basic credentials (http_basic_allowed), and, on a loopback
 * listener without a token file only, no credentials at all.
 */
static bool http_authorized(const struct http_server *h, struct evhttp_request *req, int *status)
{
	const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *a = evhttp_find_header(in, "Authorization");
	*status = 401;
	if (a && strncasecmp(a, "Basic ", 6) == 0) {
		/* A browser sends Basic credentials it has cached with any
		 * request to the site, a cross-site one too: never with an
		 * Origin. */
		return !evhttp_find_header(in, "Origin") && http_basic_allowed(h, a + 6, status);
	}
	if (!h->token) {
		/* Loopback without a token (config.c allows nothing else):
		 * still not for a web page the operator's browser runs,
		 * which sends an Origin, or reaches here by DNS rebinding
		 * under a name that is not the loopback's; and credentials
		 * that are not accepted are refused, not ignored. */
		const char *host = evhttp_find_header(in, "Host");
		return !a && !evhttp_find_header(in, "Origin") && host &&
		       http_host_is_loopback(host);
	}
	if (!a || strncasecmp(a, "Bearer ", 7) != 0)
		return false;
	a += 7;
	size_t n = strlen(a);
	unsigned char diff = n != h->token_len;
	for (size_t i = 0; i < h->token_len; i++)
		diff |= (unsigned char)h->token[i] ^ (unsigned char)(i < n ? a[i] : 0);
	return diff == 0;
}

/* Client ids in the order of their bytes, a prefix before the longer id. */
static int http_cmp_ids(const char *x, size_t xlen, const char *y, size_t ylen)
{
	int r = memcmp(x, y, xlen < ylen ? xlen : ylen);
	return r ? r : (xlen > ylen) - (xlen < ylen);
}

static int http_cmp_clients(const struct client *x, const struct client *y)
{
	return http_cmp_ids(x->id, x->id_len, y->id, y->id_len);
}

/* A max-heap of clients by id: the root is the last of the page so far. */
static void http_heap_swap(struct client **heap, size_t i, size_t j)
{
	struct client *t = heap[i];
	heap[i] = heap[j];
	heap[j] = t;
}

static void http_heap_up(struct client **heap, size_t i)
{
	while (i > 0 && http_cmp_clients(heap[i], heap[(i - 1) / 2]) > 0) {
		http_heap_swap(heap, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void http_heap_down(struct client **heap, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, big = i;
		if (l < n && http_cmp_clients(heap[l], heap[big]) > 0)
			big = l;
		if (r < n && http_cmp_clients(heap[r], heap[big]) > 0)
			big = r;
		if (big == i)
			return;
		http_heap_swap(heap, i, big);
		i = big;
	}
}

static void http_session_summary(struct evbuffer *b, const struct client *c)
{
	evbuffer_add(b, "{\"client_id\":", 13);
	metrics_json_string(b, c->id);
	evbuffer_add_printf(
	    b,
	    ",\"connected\":%s,\"clean\":%s,\"protocol_version\":%u,"
	    "\"subscriptions\":%" PRIu32 ",\"queued\":%" PRIu32 ",\"inflight\":%" PRIu32
	    ",\"queued_bytes\":%" PRIu64 ",\"dropped\":%" PRIu64,
	    c->conn ? "true" : "false", c->clean ? "true" : "false", c->version, c->subs.count,
	    c->queued.count, c->inflight.count, c->queued_bytes, c->dropped);
	if (c->username) {
		evbuffer_add(b, ",\"username\":", 12);
		metrics_json_string(b, c->username);
	}
	if (c->conn) {
		evbuffer_add(b, ",\"address\":", 11);
		metrics_json_string(b, conn_addr(c->conn));
	}
}

static uint64_t http_query_number(const struct evkeyvalq *q, const char *key, uint64_t dflt,
				  uint64_t max)
{
	const char *v = evhttp_find_header(q, key);
	if (!v || !*v)
		return dflt;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end || v[0] == '-')
		return dflt;
	return x > max ? max : x;
}

/*
 * GET /api/sessions?after=ID&limit=N: the first N sessions in id order
 * whose id comes after ID (from the start without it), and "next", the
 * ID to ask for the page after this one (null on the last page). One walk
 * of the sessions keeping the N smallest in a max-heap: O(n log N) per
 * page, whatever the page's place, and no copy of the whole map.
 */
static void http_list_sessions(struct http_server *h, struct evhttp_request *req,
			       const struct evkeyvalq *q)
{
	const struct server_client_map *m = &h->srv->clients;
	if (evhttp_find_header(q, "offset")) {
		http_json_error(req, 400, "offset is not supported: page with after=<next>");
		return;
	}
	const char *after = evhttp_find_header(q, "after");
	size_t after_len = after ? strlen(after) : 0;
	uint64_t limit = http_query_number(q, "limit", 100, HTTP_PAGE_LIMIT);
	if (limit == 0)
		limit = 1;
	struct client **heap = xcalloc(limit, sizeof(*heap));
	size_t n = 0;
	uint64_t beyond = 0; /* sessions after the cursor */
	for (size_t i = 0; i < m->nbuckets; i++) {
		for (struct client *c = m->buckets[i]; c; c = c->map_next) {
			if (after && http_cmp_ids(c->id, c->id_len, after, after_len) <= 0)
				continue;
			beyond++;
			if (n < limit) {
				heap[n] = c;
				http_heap_up(heap, n++);
			} else if (http_cmp_clients(c, heap[0]) < 0) {
				heap[0] = c;
				http_heap_down(heap, n, 0);
			}
		}
	}
	for (size_t k = n; k > 1; k--) { /* in order: the largest goes last */
		http_heap_swap(heap, 0, k - 1);
		http_heap_down(heap, k - 1, 0);
	}
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(b, "{\"total\":%zu,\"limit\":%" PRIu64 ",\"after\":", m->count, limit);
	if (after)
		metrics_json_string(b, after);
	else
		evbuffer_add(b, "null", 4);
	evbuffer_add(b, ",\"sessions\":[", 13);
	for (size_t i = 0; i < n; i++) {
		if (i)
			evbuffer_add(b, ",", 1);
		http_session_summary(b, heap[i]);
		evbuffer_add(b, "}", 1);
	}
	evbuffer_add(b, "],\"next\":", 9);
	if (beyond > n)
		metrics_json_string(b, heap[n - 1]->id);
	else
		evbuffer_add(b, "null", 4);
	evbuffer_add(b, "}\n", 2);
	free(heap);
	http_json_ok(req, b);
	evbuffer_free(b);
}

static void http_show_session(struct http_server *h, struct evhttp_request *req, struct client *c)
{
	struct evbuffer *b = evbuffer_new();
	http_session_summary(b, c);
	uint32_t window = h->srv->cfg->max_inflight_messages;
	if (c->recv_max && (window == 0 || c->recv_max < window))
		window = c->recv_max;
	evbuffer_add_printf(b,
			    ",\"inflight_window\":%" PRIu32 ",\"session_expiry\":%" PRIu32
			    ",\"inflight_packet_ids\":[",
			    window, c->expiry);
	for (const struct delivery *d = c->inflight.head; d; d = client_delivery_next(c, d))
		evbuffer_add_printf(b, "%s%u", d == c->inflight.head ? "" : ",", d->pid);
	evbuffer_add(b, "],\"subscription_list\":[", 23);
	bool first = true;
	for (uint32_t i = 0; i < c->subs.cap; i++) {
		for (const struct sub *s = c->subs.slots[i]; s; s = s->hnext) {
			evbuffer_add(b, first ? "{\"filter\":" : ",{\"filter\":", first ? 10 : 11);
			metrics_json_string(b, s->filter);
			evbuffer_add_printf(b, ",\"qos\":%u", s->qos);
			if (s->sub_id)
				evbuffer_add_printf(b, ",\"subscription_id\":%" PRIu32, s->sub_id);
			evbuffer_add(b, "}", 1);
			first = false;
		}
	}
	evbuffer_add(b, "]}\n", 3);
	http_json_ok(req, b);
	evbuffer_free(b);
}

/* A path element after prefix, percent-decoded (a client id or topic may
 * hold any character; '/' in a client id arrives as %2F). NULL when the
 * decoding fails or gives an empty string or a NUL. */
static char *http_decode(const char *enc, size_t enc_len, size_t *len)
{
	char *tmp = xstrndup(enc, enc_len);
	char *d = evhttp_uridecode(tmp, 0, len);
	free(tmp);
	if (d && (*len == 0 || strlen(d) != *len)) {
		free(d);
		d = NULL;
	}
	return d;
}

static void http_admin(struct http_server *h, struct evhttp_request *req, const char *path,
		       const struct evkeyvalq *q)
{
	struct server *srv = h->srv;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (!srv->cfg->http_admin) {
		http_json_error(req, 404, "the admin API is off (http_admin)");
		return;
	}
	int status;
	if (!http_authorized(h, req, &status)) {
		if (status == 403) {
			http_json_error(req, 403,
					"the ACL does not let this user write " HTTP_ADMIN_TOPIC);
			return;
		}
		struct evkeyvalq *out = evhttp_request_get_output_headers(req);
		evhttp_add_header(out, "WWW-Authenticate", "Bearer");
		evhttp_add_header(out, "WWW-Authenticate", "Basic realm=\"cairn admin\"");
		http_json_error(req, 401, "a valid bearer token or user is needed");
		return;
	}
	if (strcmp(path, "/api/sessions") == 0) {
		if (cmd != EVHTTP_REQ_GET) {
			http_json_error(req, 405, "GET only");
			return;
		}
		http_list_sessions(h, req, q);
		return;
	}
	if (strncmp(path, "/api/retained/", 14) == 0) {
		size_t len;
		char *topic = http_decode(path + 14, strlen(path + 14), &len);
		if (!topic || cmd != EVHTTP_REQ_DELETE || len > UINT16_MAX) {
			http_json_error(req, topic ? 405 : 400,
					topic ? "DELETE only" : "bad topic in the path");
		} else if (topic[0] == '$') {
			/* $SYS topics are the broker's: it republishes them only
			 * when they change. */
			http_json_error(req, 403, "topics starting with $ belong to the broker");
		} else if (!server_clear_retained(srv, topic, len)) {
			http_json_error(req, 404, "no retained message on that topic");
		} else {
			log_write(srv->log, LOG_LEVEL_NOTICE,
				  "admin API: retained message of '%s' cleared", topic);
			http_json_text(req, "{\"cleared\":true}");
		}
		free(topic);
		return;
	}
	if (strncmp(path, "/api/sessions/", 14) != 0) {
		http_json_error(req, 404, "no such endpoint");
		return;
	}
	const char *rest = path + 14;
	size_t rest_len = strlen(rest);
	bool disconnect = rest_len > 11 && strcmp(rest + rest_len - 11, "/disconnect") == 0;
	size_t len;
	char *id = http_decode(rest, disconnect ? rest_len - 11 : rest_len, &len);
	struct client *c = id ? server_get_known_client(srv, id, len) : NULL;
	if (!c) {
		http_json_error(req, 404, "no such session");
	} else if (disconnect) {
		if (cmd != EVHTTP_REQ_POST) {
			http_json_error(req, 405, "POST only");
		} else if (!c->conn) {
			http_json_error(req, 409, "the session has no connection");
		} else {
			log_write(srv->log, LOG_LEVEL_NOTICE, "admin API: disconnecting client %s",
				  c->id);
			/* Not the client's DISCONNECT: its will is due. */
			conn_disconnect(c->conn, HTTP_RC_ADMINISTRATIVE,
					"disconnected through the admin API", true);
			http_json_text(req, "{\"disconnected\":true}");
		}
	} else if (cmd == EVHTTP_REQ_GET) {
		http_show_session(h, req, c);
	} else if (cmd == EVHTTP_REQ_DELETE) {
		if (c->conn) {
			http_json_error(req, 409, "the session is connected: disconnect it first");
		} else {
			log_write(srv->log, LOG_LEVEL_NOTICE, "admin API: deleting session %s",
				  c->id);
			client_discard(c); /* publishes a delayed will */
			http_json_text(req, "{\"deleted\":true}");
		}
	} else {
		http_json_error(req, 405, "GET or DELETE");
	}
	free(id);
}

/* ---- dispatch ---- */

static void http_cb(struct evhttp_request *req, void *arg)
{
	struct http_server *h = arg;
	struct server *srv = h->srv;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (!path || !*path)
		path = "/";
	if (strncmp(path, "/api/", 5) == 0 && strcmp(path, "/api/status") != 0) {
		struct evkeyvalq q = {0};
		TAILQ_INIT(&q);
		const char *query = evhttp_uri_get_query(uri);
		if (query)
			evhttp_parse_query_str(query, &q);
		http_admin(h, req, path, &q);
		evhttp_clear_headers(&q);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		http_text(req, 405, "method not allowed");
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		struct evbuffer *b = evbuffer_new();
		metrics_render_prometheus(srv, metrics_cache_get(&h->metrics, srv), b);
		http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
		evbuffer_free(b);
	} else if (strcmp(path, "/healthz") == 0) {
		http_text(req, 200, "ok");
	} else if (strcmp(path, "/readyz") == 0) {
		bool ok = http_ready(srv);
		http_text(req, ok ? 200 : 503, ok ? "ready" : "not ready");
	} else if (strcmp(path, "/api/status") == 0) {
		http_status(h, req);
	} else if (strcmp(path, "/") == 0) {
		struct evbuffer *b = evbuffer_new();
		evbuffer_add_reference(b, http_page_html, sizeof(http_page_html) - 1, NULL, NULL);
		http_reply(req, 200, "text/html; charset=utf-8", b);
		evbuffer_free(b);
	} else {
		http_text(req, 404, "not found");
	}
}

static int http_read_token(struct http_server *h, const char *path, struct log *lg)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		log_write(lg, LOG_LEVEL_ERROR, "http_admin_token_file %s: %s", path,
			  strerror(errno));
		return -1;
	}
	char buf[514];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The token is the first line, without its line end and trailing
	 * blanks. */
	n = strcspn(buf, "\n");
	if (n > 512) {
		log_write(lg, LOG_LEVEL_ERROR,
			  "http_admin_token_file %s: the token is longer than 512 characters",
			  path);
		return -1;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
			log_write(lg, LOG_LEVEL_ERROR,
				  "http_admin_token_file %s: the token has a control character",
				  path);
			return -1;
		}
	}
	if (n < 16) {
		log_write(lg, LOG_LEVEL_ERROR,
			  "http_admin_token_file %s: the token must have at least 16 characters",
			  path);
		return -1;
	}
	h->token = xstrndup(buf, n);
	h->token_len = n;
	return 0;
}

/* ---- counting and capping connections ---- */

/*
 * libevent 2.1.12 has no evhttp_set_max_connections (2.2 has it), and
 * evhttp_get_request, which would take a socket accepted by a listener of
 * our own, is private to it. What it offers instead: evhttp_set_bevcb,
 * through which evhttp asks http_bev_new for the bufferevent of every
 * connection it accepts, before it reads anything; and
 * evhttp_connection_set_closecb, which evhttp_connection_free calls for
 * any reason it frees a connection (the peer closed, the timeout, an
 * error, a reply with "Connection: close", evhttp_free).
 *
 * http_bev_new counts the connection and queues it on h->taking, and
 * activates h->take, which runs in the same loop pass once evhttp has
 * taken the connection in, before anything is read from it. Then the
 * bufferevent's callback argument is the evhttp_connection (checked with
 * evhttp_connection_get_bufferevent): an accepted connection gets the
 * close callback that uncounts it; one beyond http_max_connections gets
 * an end of file reported, so evhttp frees it, and closes its socket, as
 * if the peer had closed it.
 *
 * (A pass-through filter bufferevent, whose free_context would say when
 * evhttp frees it, does not do: evhttp takes the filter's write callback
 * for "sent" and closes a "Connection: close" reply's socket before the
 * socket bufferevent under the filter has written it.)
 */
struct http_conn {
	struct http_server *h;
	struct bufferevent *bev;
	struct http_conn *next; /* on h->taking */
	bool refused;
};

/* evhttp frees the connection. */
static void http_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	struct http_conn *hc = arg;
	hc->h->st.open--;
	free(hc);
}

/* A refusal is logged once a second at most, with the count since. */
static void http_log_refusal(struct http_server *h)
{
	uint64_t now = store_now_ns();
	h->refusals_unlogged++;
	if (h->refusal_logged_ns && now - h->refusal_logged_ns < 1000000000ull)
		return;
	log_write(h->srv->log, LOG_LEVEL_WARNING,
		  "HTTP connection refused: http_max_connections (%" PRIu32 ") are open (%" PRIu64
		  " refused since the last such line)",
		  h->srv->cfg->http_max_connections, h->refusals_unlogged);
	h->refusal_logged_ns = now;
	h->refusals_unlogged = 0;
}

static struct bufferevent *http_bev_new(struct event_base *base, void *arg)
{
	struct http_server *h = arg;
	struct http_conn *hc = xcalloc(1, sizeof(*hc));
	/* What evhttp makes when it is given none. */
	hc->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!hc->bev) {
		/* Returning NULL would let evhttp make its own, uncounted. */
		fputs("cairn: out of memory\n", stderr);
		abort();
	}
	hc->h = h;
	uint32_t cap = h->srv->cfg->http_max_connections;
	if (cap && h->st.open >= cap) {
		hc->refused = true;
		h->st.refused++;
		http_log_refusal(h);
	} else {
		h->st.open++;
		h->st.accepted++;
	}
	hc->next = h->taking;
	h->taking = hc;
	event_active(h->take, EV_TIMEOUT, 1);
	return hc->bev;
}

/* The connections http_bev_new gave a bufferevent, now evhttp's. */
static void http_take_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct http_server *h = arg;
	while (h->taking) {
		struct http_conn *hc = h->taking;
		h->taking = hc->next;
		bufferevent_event_cb eventcb = NULL;
		void *cbarg = NULL;
		bufferevent_getcb(hc->bev, NULL, NULL, &eventcb, &cbarg);
		struct evhttp_connection *evcon = cbarg;
		if (!eventcb || !evcon || evhttp_connection_get_bufferevent(evcon) != hc->bev) {
			/* evhttp let it go already (out of memory: bufferevent_free
			 * clears the callbacks), or this libevent does not say
			 * which connection a bufferevent is: it goes uncounted. */
			if (eventcb)
				log_write(h->srv->log, LOG_LEVEL_ERROR,
					  "HTTP connection not counted: cannot find its "
					  "evhttp connection");
			if (!hc->refused)
				h->st.open--;
			free(hc);
		} else if (hc->refused) {
			struct bufferevent *bev = hc->bev;
			free(hc);
			bufferevent_trigger_event(bev, BEV_EVENT_READING | BEV_EVENT_EOF, 0);
		} else {
			evhttp_connection_set_closecb(evcon, http_conn_closed, hc);
		}
	}
}

void http_server_stats(const struct http_server *h, struct http_stats *out)
{
	*out = h->st;
}

/* ---- the listener ---- */

static void http_listener_set_enabled(void *arg, bool enabled)
{
	struct http_server *h = arg;
	if (enabled)
		evconnlistener_enable(h->listener);
	else
		evconnlistener_disable(h->listener);
}

/* The HTTP server whose listener reports accept errors: libevent hands the
 * error callback evhttp's own argument, not ours, and a broker runs one
 * HTTP listener. */
static struct http_server *http_accepting;

/* accept() failed (out of file descriptors, most likely): the listener
 * rests a second instead of retrying at once, forever. */
static void http_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	if (http_accepting)
		util_accept_rest_failed(&http_accepting->rest);
}

/* Whether the socket fd is bound to a loopback address. */
static bool http_bound_to_loopback(evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	       util_sockaddr_is_loopback((struct sockaddr *)&ss);
}

struct http_server *http_server_new(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	struct http_server *h = xcalloc(1, sizeof(*h));
	h->srv = srv;
	metrics_cache_init(&h->metrics);
	const char *addr = cfg->http_address ? cfg->http_address : "127.0.0.1";
	if (cfg->http_admin && cfg->http_admin_token_file &&
	    http_read_token(h, cfg->http_admin_token_file, srv->log) != 0)
		goto fail;
	h->http = evhttp_new(srv->base);
	if (!h->http)
		goto fail;
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						EVHTTP_REQ_DELETE);
	evhttp_set_timeout(h->http, 30);
	evhttp_set_max_headers_size(h->http, 16384);
	evhttp_set_max_body_size(h->http, 16384);
	evhttp_set_gencb(h->http, http_cb, h);
	evhttp_set_bevcb(h->http, http_bev_new, h);
	h->take = event_new(srv->base, -1, 0, http_take_cb, h);
	if (!h->take)
		goto fail;
	struct evhttp_bound_socket *bound =
	    evhttp_bind_socket_with_handle(h->http, addr, cfg->http_port);
	if (!bound) {
		log_write(srv->log, LOG_LEVEL_ERROR, "http_listener: cannot listen on %s port %u",
			  addr, cfg->http_port);
		goto fail;
	}
	if (cfg->http_admin && !h->token &&
	    !http_bound_to_loopback(evhttp_bound_socket_get_fd(bound))) {
		/* The name in the config resolved elsewhere than the loopback. */
		log_write(srv->log, LOG_LEVEL_ERROR,
			  "http_listener: %s is not a loopback address: http_admin needs "
			  "http_admin_token_file there",
			  addr);
		goto fail;
	}
	h->listener = evhttp_bound_socket_get_listener(bound);
	if (util_accept_rest_init(&h->rest, srv->base, srv->log, "HTTP", HTTP_ACCEPT_REST_MS,
				  http_listener_set_enabled, h) != 0)
		goto fail;
	http_accepting = h;
	evconnlistener_set_error_cb(h->listener, http_accept_error);
	log_write(srv->log, LOG_LEVEL_NOTICE, "HTTP listener on %s port %u%s", addr, cfg->http_port,
		  cfg->http_admin ? " (admin API on)" : "");
	h->sampler = event_new(srv->base, -1, EV_PERSIST, http_sample, h);
	struct timeval tv = {HTTP_SAMPLE_SECONDS, 0};
	event_add(h->sampler, &tv);
	http_sample(-1, 0, h);
	return h;
fail:
	http_server_free(h);
	return NULL;
}

void http_server_free(struct http_server *h)
{
	if (!h)
		return;
	if (h->sampler)
		event_free(h->sampler);
	if (http_accepting == h)
		http_accepting = NULL;
	util_accept_rest_cleanup(&h->rest);
	/* Frees every connection: http_conn_closed for each counted one. */
	if (h->http)
		evhttp_free(h->http);
	while (h->taking) {
		struct http_conn *hc = h->taking;
		h->taking = hc->next;
		free(hc);
	}
	if (h->take)
		event_free(h->take);
	metrics_cache_cleanup(&h->metrics);
	free(h->token);
	free(h);
}
