/*
 * Metrics at scrape time. Nothing here runs per message: the counters it
 * reads are plain fields incremented where things happen, and what is
 * walked (the sessions, the store's directory) is walked only when
 * someone asks, and through a metrics_cache at most once a second.
 */
#include "metrics.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "client.h"
#include "conn.h"
#include "http.h"
#include "router.h"
#include "server.h"
#include "store.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* The size of the files in the store's directory, for the backends that
 * keep one there; -1 for the others. */
static int64_t metrics_store_bytes(const struct server *srv)
{
	const char *b = srv->cfg->persistence_backend;
	const char *dir = srv->cfg->persistence_location;
	if (!b || !dir || (strcmp(b, "sqlite") != 0 && strcmp(b, "lmdb") != 0))
		return -1;
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int64_t total = 0;
	char path[4096];
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		struct stat st;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			total += (int64_t)st.st_size;
	}
	closedir(d);
	return total;
}

static void metrics_top_add(struct metrics_snapshot *m, const struct client *c, uint64_t n,
			    uint64_t bytes)
{
	if (n == 0)
		return;
	size_t i = m->ntop < METRICS_TOP_QUEUES ? m->ntop++ : METRICS_TOP_QUEUES;
	if (i == METRICS_TOP_QUEUES) {
		if (m->top[METRICS_TOP_QUEUES - 1].messages >= n)
			return;
		i = METRICS_TOP_QUEUES - 1;
	}
	while (i > 0 && m->top[i - 1].messages < n) {
		m->top[i] = m->top[i - 1];
		i--;
	}
	m->top[i] = (struct metrics_queue){c->id, n, bytes};
}

/* The values that change between two calls whatever the sessions do. */
static void metrics_times(const struct server *srv, struct metrics_snapshot *m)
{
	uint64_t now = store_now_ns();
	m->uptime_seconds = (double)(now - srv->started_ns) / 1e9;
	if (srv->store) {
		const struct store_stats *ss = store_get_stats(srv->store);
		m->since_commit_seconds = (double)(now - ss->last_ok_ns) / 1e9;
	}
}

void metrics_snapshot(struct server *srv, struct metrics_snapshot *m)
{
	memset(m, 0, sizeof(*m));
	const struct server_client_map *map = &srv->clients;
	for (size_t i = 0; i < map->nbuckets; i++) {
		for (const struct client *c = map->buckets[i]; c; c = c->map_next) {
			m->sessions_known++;
			if (c->conn)
				m->sessions_connected++;
			else if (!c->clean)
				m->sessions_offline++;
			m->subscriptions += c->subs.count;
			m->queued_messages += c->queued.count;
			m->inflight_messages += c->inflight.count;
			m->queued_bytes += c->queued_bytes;
			metrics_top_add(m, c, (uint64_t)c->queued.count + c->inflight.count,
					c->queued_bytes);
		}
	}
	m->retained = srv->router ? router_retained_count(srv->router) : 0;
	m->store_bytes = metrics_store_bytes(srv);
	metrics_times(srv, m);
}

void metrics_cache_init(struct metrics_cache *c)
{
	memset(c, 0, sizeof(*c));
}

static void metrics_cache_drop_ids(struct metrics_cache *c)
{
	for (size_t i = 0; i < c->snap.ntop; i++)
		free((char *)c->snap.top[i].client_id);
	c->snap.ntop = 0;
}

const struct metrics_snapshot *metrics_cache_get(struct metrics_cache *c, struct server *srv)
{
	uint64_t now = store_now_ns();
	if (c->taken_ns == 0 || now - c->taken_ns >= METRICS_CACHE_NS) {
		metrics_cache_drop_ids(c);
		metrics_snapshot(srv, &c->snap);
		/* The sessions named may be gone before the next walk. */
		for (size_t i = 0; i < c->snap.ntop; i++)
			c->snap.top[i].client_id = xstrdup(c->snap.top[i].client_id);
		c->taken_ns = now ? now : 1;
		c->walks++;
	}
	c->snap.walks = c->walks;
	metrics_times(srv, &c->snap);
	return &c->snap;
}

void metrics_cache_cleanup(struct metrics_cache *c)
{
	metrics_cache_drop_ids(c);
	c->taken_ns = 0;
}

void metrics_json_string(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			evbuffer_add_printf(out, "\\u%04x", *p);
		else
			evbuffer_add(out, p, 1);
	}
	evbuffer_add(out, "\"", 1);
}

/* A label value in the exposition format: backslash, quote and newline
 * escaped. */
static void metrics_label_value(struct evbuffer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			evbuffer_add_printf(out, "\\%c", *s);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

static void metrics_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_one(struct evbuffer *out, const char *name, const char *type, const char *help,
			uint64_t v)
{
	metrics_head(out, name, type, help);
	evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void metrics_by_qos(struct evbuffer *out, const char *name, const char *help,
			   const uint64_t v[3])
{
	metrics_head(out, name, "counter", help);
	for (int q = 0; q < 3; q++)
		evbuffer_add_printf(out, "%s{qos=\"%d\"} %" PRIu64 "\n", name, q, v[q]);
}

/* A gauge per session of the largest queues: its messages or its bytes. */
static void metrics_top(struct evbuffer *out, const char *name, const char *help,
			const struct metrics_snapshot *m, bool bytes)
{
	metrics_head(out, name, "gauge", help);
	for (size_t i = 0; i < m->ntop; i++) {
		evbuffer_add_printf(out, "%s{client_id=\"", name);
		metrics_label_value(out, m->top[i].client_id);
		evbuffer_add_printf(out, "\"} %" PRIu64 "\n",
				    bytes ? m->top[i].bytes : m->top[i].messages);
	}
}

static void metrics_histogram(struct evbuffer *out, const char *name, const char *help,
			      const uint64_t *buckets, const double *bounds, size_t n, double sum)
{
	metrics_head(out, name, "histogram", help);
	uint64_t cum = 0;
	for (size_t i = 0; i < n; i++) {
		cum += buckets[i];
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, bounds[i],
				    cum);
	}
	cum += buckets[n];
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
	evbuffer_add_printf(out, "%s_sum %.9g\n%s_count %" PRIu64 "\n", name, sum, name, cum);
}

void metrics_render_prometheus(struct server *srv, const struct metrics_snapshot *mp,
			       struct evbuffer *out)
{
	const struct metrics_snapshot m = *mp;
	const struct server_stats *st = &srv->stats;
	const struct conn_stats *cs = conn_set_stats(srv->conns);

	evbuffer_add_printf(out,
			    "# HELP cairn_build_info The running cairn's version.\n"
			    "# TYPE cairn_build_info gauge\ncairn_build_info{version=\"%s\"} 1\n",
			    PACKAGE_VERSION);
	metrics_head(out, "cairn_uptime_seconds", "gauge", "Seconds since the broker started.");
	evbuffer_add_printf(out, "cairn_uptime_seconds %.3f\n", m.uptime_seconds);

	metrics_one(out, "cairn_connections", "gauge", "Network connections open now.",
		    cs->current);
	metrics_one(out, "cairn_connections_accepted_total", "counter",
		    "Network connections accepted.", cs->accepted);
	metrics_head(out, "cairn_connections_refused_total", "counter",
		     "Connections refused before a session began, by reason.");
	for (int r = 0; r < CONN_REFUSED_COUNT; r++)
		evbuffer_add_printf(out,
				    "cairn_connections_refused_total{reason=\"%s\"} %" PRIu64 "\n",
				    conn_refusal_name(r), cs->refused[r]);
	if (srv->http) {
		struct http_stats hs;
		http_server_stats(srv->http, &hs);
		metrics_one(out, "cairn_http_connections", "gauge",
			    "HTTP connections open now (this one included).", hs.open);
		metrics_one(out, "cairn_http_connections_accepted_total", "counter",
			    "HTTP connections accepted.", hs.accepted);
		metrics_one(out, "cairn_http_connections_refused_total", "counter",
			    "HTTP connections closed at once: http_max_connections were open.",
			    hs.refused);
	}
	metrics_one(out, "cairn_clients_connected_total", "counter",
		    "CONNECTs accepted (sessions begun or resumed).", st->clients_connected);
	metrics_one(out, "cairn_received_bytes_total", "counter",
		    "Bytes read from MQTT connections.", cs->bytes_in);
	metrics_one(out, "cairn_sent_bytes_total", "counter", "Bytes written to MQTT connections.",
		    cs->bytes_out);

	metrics_one(out, "cairn_sessions", "gauge", "Sessions known (connected or not).",
		    m.sessions_known);
	metrics_one(out, "cairn_sessions_connected", "gauge", "Sessions with a connection.",
		    m.sessions_connected);
	metrics_one(out, "cairn_sessions_offline", "gauge",
		    "Persistent sessions without a connection.", m.sessions_offline);
	metrics_one(out, "cairn_sessions_expired_total", "counter",
		    "Sessions ended by their expiry interval.", st->sessions_expired);

	metrics_by_qos(out, "cairn_messages_received_total",
		       "PUBLISH packets and wills received, by their QoS.", st->msgs_received_qos);
	metrics_by_qos(out, "cairn_messages_sent_total", "PUBLISH packets sent, by QoS.",
		       st->msgs_sent_qos);
	metrics_by_qos(out, "cairn_payload_received_bytes_total",
		       "Payload bytes of the messages received, by QoS.", st->payload_in_qos);
	metrics_by_qos(out, "cairn_payload_sent_bytes_total",
		       "Payload bytes of the messages sent, by QoS.", st->payload_out_qos);

	metrics_head(out, "cairn_messages_dropped_total", "counter",
		     "Deliveries dropped, by reason.");
	evbuffer_add_printf(out,
			    "cairn_messages_dropped_total{reason=\"queue_full\"} %" PRIu64 "\n"
			    "cairn_messages_dropped_total{reason=\"too_large\"} %" PRIu64 "\n"
			    "cairn_messages_dropped_total{reason=\"expired\"} %" PRIu64 "\n"
			    "cairn_messages_dropped_total{reason=\"acl\"} %" PRIu64 "\n",
			    st->drop_queue_full, st->drop_too_large, st->drop_expired,
			    st->drop_acl);
	metrics_one(out, "cairn_acl_denied_total", "counter",
		    "PUBLISHes, filters, deliveries and wills the ACL refused.", st->acl_denied);
	metrics_one(out, "cairn_auth_failures_total", "counter",
		    "CONNECTs refused by the password file or a certificate.", st->auth_failures);
	if (srv->cluster) {
		metrics_one(out, "cairn_cluster_claims_total", "counter",
			    "Sessions claimed by CONNECTs to this node.", st->cluster_claims);
		metrics_head(out, "cairn_cluster_sessions_lost_total", "counter",
			     "Sessions another node claimed from this one, by how this node "
			     "learned it.");
		evbuffer_add_printf(
		    out,
		    "cairn_cluster_sessions_lost_total{how=\"kicked\"} %" PRIu64 "\n"
		    "cairn_cluster_sessions_lost_total{how=\"fenced\"} %" PRIu64 "\n",
		    st->cluster_kicked, st->cluster_fenced);
		metrics_one(out, "cairn_cluster_catchups_total", "counter",
			    "Sessions caught up with the shared log after a move.",
			    st->cluster_catchups);
		metrics_one(out, "cairn_cluster_log_entries_total", "counter",
			    "Entries of the shared log routed here.", st->cluster_entries);
		metrics_one(out, "cairn_cluster_cursor_trimmed_total", "counter",
			    "Catch-ups from a cursor older than message_retention.",
			    st->cluster_cursor_trimmed);
		metrics_one(out, "cairn_cluster_share_delivered_total", "counter",
			    "Shared subscription group messages given to a member here.",
			    st->cluster_share_delivered);
		metrics_one(out, "cairn_cluster_share_taken_over_total", "counter",
			    "Shared group log entries taken over from a reader that left them "
			    "unacknowledged (a node that died).",
			    st->cluster_share_taken_over);
		metrics_one(out, "cairn_cluster_share_acks_total", "counter",
			    "Shared group log entries acknowledged to the store.",
			    st->cluster_share_acked);
	}

	metrics_one(out, "cairn_scrape_walks_total", "counter",
		    "Walks of every session to answer /metrics and /api/status "
		    "(one a second at most; the gauges they give are up to 1 s old).",
		    m.walks);
	metrics_one(out, "cairn_retained_messages", "gauge", "Retained messages held.", m.retained);
	metrics_one(out, "cairn_subscriptions", "gauge", "Subscriptions of every session.",
		    m.subscriptions);
	metrics_one(out, "cairn_queued_messages", "gauge",
		    "Messages waiting for a session's in-flight window.", m.queued_messages);
	metrics_one(out, "cairn_inflight_messages", "gauge",
		    "Messages in sessions' in-flight windows.", m.inflight_messages);
	metrics_one(out, "cairn_queued_bytes", "gauge", "Payload bytes of the queued messages.",
		    m.queued_bytes);
	metrics_top(out, "cairn_session_queued_messages",
		    "Queued and in-flight messages of the largest queues.", &m, false);
	metrics_top(out, "cairn_session_queued_bytes", "Queued payload bytes of the same sessions.",
		    &m, true);

	if (!srv->store)
		return;
	const struct store_stats *ss = store_get_stats(srv->store);
	evbuffer_add_printf(out,
			    "# HELP cairn_store_up 1 while the store commits, 0 while commits "
			    "fail and are retried.\n# TYPE cairn_store_up gauge\n"
			    "cairn_store_up{backend=\"%s\"} %d\n",
			    store_name(srv->store), store_is_healthy(srv->store) ? 1 : 0);
	metrics_one(out, "cairn_store_commits_total", "counter", "Store commits that succeeded.",
		    ss->commits);
	metrics_one(out, "cairn_store_commits_failed_total", "counter",
		    "Store commits (or stagings) that failed.", ss->commits_failed);
	metrics_one(out, "cairn_store_commits_retried_total", "counter",
		    "Store commits started while the store was failing.", ss->commits_retried);
	metrics_one(out, "cairn_store_commit_gathers_total", "counter",
		    "Commit starts that waited for clients to answer the last commit's "
		    "acknowledgements.",
		    ss->gathers);
	metrics_one(out, "cairn_store_commit_gather_timeouts_total", "counter",
		    "Of those, the ones whose answers did not come in time.", ss->gather_timeouts);
	metrics_histogram(out, "cairn_store_commit_duration_seconds",
			  "Time from the start of a commit to its end.", ss->lat, store_lat_bounds,
			  STORE_LAT_BUCKETS, ss->lat_sum);
	metrics_histogram(out, "cairn_store_commit_batch_writes", "Writes in one commit.",
			  ss->batch, store_batch_bounds, STORE_BATCH_BUCKETS,
			  (double)ss->batch_sum);
	metrics_head(out, "cairn_store_last_commit_age_seconds", "gauge",
		     "Seconds since the store last had everything durable.");
	evbuffer_add_printf(out, "cairn_store_last_commit_age_seconds %.3f\n",
			    m.since_commit_seconds);
	metrics_head(out, "cairn_store_commit_running_seconds", "gauge",
		     "How long the commit in flight has been running; 0: none.");
	evbuffer_add_printf(out, "cairn_store_commit_running_seconds %.3f\n",
			    (double)store_commit_running_ns(srv->store) / 1e9);
	metrics_one(out, "cairn_store_held_writes", "gauge",
		    "Writes waiting in the core for a failing store.",
		    store_held_writes(srv->store));
	if (m.store_bytes >= 0)
		metrics_one(out, "cairn_store_size_bytes", "gauge",
			    "Size of the files in persistence_location.", (uint64_t)m.store_bytes);
}
