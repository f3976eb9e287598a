/*
 * The HTTP listener: read-only endpoints for operators and monitoring,
 * and, with http_admin, a small JSON admin API whose writes go through
 * the broker's own paths (conn_disconnect, client_discard,
 * router_clear_retained) so the store stays consistent.
 *
 * Everything runs on the broker's event loop, between packets: a request
 * costs what its answer walks (the sessions for /metrics and the session
 * list), nothing is kept per message. The status page's chart reads a
 * ring of samples taken every HTTP_SAMPLE_SECONDS.
 */
#include "http.h"

#include <errno.h>
#include <event2/buffer.h>
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

#include "client.h"
#include "conn.h"
#include "http_page.h"
#include "metrics.h"
#include "router.h"
#include "server.h"
#include "store.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define HTTP_SAMPLE_SECONDS 5
#define HTTP_SAMPLES        120 /* ten minutes */
#define HTTP_PAGE_LIMIT     1000

/* 5.0 DISCONNECT reason: Administrative action. */
#define HTTP_RC_ADMINISTRATIVE 0x98

struct http_sample {
	double t; /* uptime, seconds */
	uint64_t received, sent, connections;
	uint64_t commits;
	double lat_sum;
};

struct http_server {
	struct server *srv;
	struct evhttp *http;
	struct evconnlistener *listener; /* evhttp's, paused after an accept error */
	struct event *resume;            /* re-enables it */
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
	struct metrics_snapshot m;
	metrics_snapshot(srv, &m);
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

/* Compare the Authorization header with the token in constant time (for
 * the token's length). */
static bool http_authorized(const struct http_server *h, struct evhttp_request *req)
{
	const struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	if (!h->token) {
		/* Loopback without a token (config.c allows nothing else):
		 * still not for a web page the operator's browser runs,
		 * which sends an Origin, or reaches here by DNS rebinding
		 * under a name that is not the loopback's. */
		const char *host = evhttp_find_header(in, "Host");
		return !evhttp_find_header(in, "Origin") && host && http_host_is_loopback(host);
	}
	const char *a = evhttp_find_header(in, "Authorization");
	if (!a || strncasecmp(a, "Bearer ", 7) != 0)
		return false;
	a += 7;
	size_t n = strlen(a);
	unsigned char diff = n != h->token_len;
	for (size_t i = 0; i < h->token_len; i++)
		diff |= (unsigned char)h->token[i] ^ (unsigned char)(i < n ? a[i] : 0);
	return diff == 0;
}

static int http_cmp_clients(const void *a, const void *b)
{
	const struct client *x = *(const struct client *const *)a;
	const struct client *y = *(const struct client *const *)b;
	size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
	int r = memcmp(x->id, y->id, n);
	return r ? r : (x->id_len > y->id_len) - (x->id_len < y->id_len);
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

static void http_list_sessions(struct http_server *h, struct evhttp_request *req,
			       const struct evkeyvalq *q)
{
	const struct server_client_map *m = &h->srv->clients;
	struct client **all = xcalloc(m->count ? m->count : 1, sizeof(*all));
	size_t n = 0;
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct client *c = m->buckets[i]; c; c = c->map_next)
			all[n++] = c;
	qsort(all, n, sizeof(*all), http_cmp_clients);
	uint64_t offset = http_query_number(q, "offset", 0, n);
	uint64_t limit = http_query_number(q, "limit", 100, HTTP_PAGE_LIMIT);
	struct evbuffer *b = evbuffer_new();
	evbuffer_add_printf(
	    b, "{\"total\":%zu,\"offset\":%" PRIu64 ",\"limit\":%" PRIu64 ",\"sessions\":[", n,
	    offset, limit);
	for (uint64_t i = offset; i < n && i < offset + limit; i++) {
		if (i > offset)
			evbuffer_add(b, ",", 1);
		http_session_summary(b, all[i]);
		evbuffer_add(b, "}", 1);
	}
	evbuffer_add(b, "]}\n", 3);
	free(all);
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
	for (const struct delivery *d = c->inflight.head; d; d = d->next)
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
	if (!http_authorized(h, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer");
		http_json_error(req, 401, "a valid bearer token is needed");
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
		} else if (!router_clear_retained(srv->router, topic, len)) {
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
		metrics_render_prometheus(srv, b);
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

static void http_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *h = arg;
	(void)fd;
	(void)what;
	evconnlistener_enable(h->listener);
}

/* The HTTP server whose listener reports accept errors: libevent hands the
 * error callback evhttp's own argument, not ours, and a broker runs one
 * HTTP listener. */
static struct http_server *http_accepting;

/* accept() failed (out of file descriptors, most likely): pause the
 * listener a second instead of retrying at once, forever. */
static void http_accept_error(struct evconnlistener *l, void *arg)
{
	struct http_server *h = http_accepting;
	(void)arg;
	if (!h)
		return;
	int err = EVUTIL_SOCKET_ERROR();
	log_write(h->srv->log, LOG_LEVEL_WARNING, "HTTP listener: accept failed: %s; paused 1 s",
		  evutil_socket_error_to_string(err));
	evconnlistener_disable(l);
	struct timeval tv = {1, 0};
	event_add(h->resume, &tv);
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
	h->resume = evtimer_new(srv->base, http_resume, h);
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
	if (h->resume)
		event_free(h->resume);
	if (h->http)
		evhttp_free(h->http);
	free(h->token);
	free(h);
}
