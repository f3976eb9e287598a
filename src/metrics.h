/*
 * What the broker counts, read at scrape time: the counters kept on the
 * hot path (server_stats, conn_stats, store_stats: plain increments) and
 * what is cheaper to compute when asked than to maintain per message
 * (sessions by state, subscriptions, queued messages and bytes, the
 * largest queues, the store's size on disk). Rendered in the Prometheus
 * text format (/metrics) and as JSON (/api/status).
 */
#ifndef CAIRN_METRICS_H
#define CAIRN_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct server;

#define METRICS_TOP_QUEUES 10

struct metrics_queue {
	const char *client_id; /* borrowed until the loop runs again */
	uint64_t messages;     /* queued and in flight */
	uint64_t bytes;
};

/* The values computed at scrape time. */
struct metrics_snapshot {
	uint64_t sessions_known;
	uint64_t sessions_connected;
	uint64_t sessions_offline; /* persistent sessions without a connection */
	uint64_t subscriptions;
	uint64_t queued_messages; /* waiting for the window */
	uint64_t inflight_messages;
	uint64_t queued_bytes;
	uint64_t retained;
	int64_t store_bytes; /* -1: the backend's size is not known */
	double uptime_seconds;
	double since_commit_seconds;
	size_t ntop;
	struct metrics_queue top[METRICS_TOP_QUEUES]; /* largest first */
};

void metrics_snapshot(struct server *srv, struct metrics_snapshot *m);

/* /metrics: the Prometheus text exposition format, version 0.0.4. */
void metrics_render_prometheus(struct server *srv, struct evbuffer *out);

/* Append s as a JSON string (quoted, escaped). */
void metrics_json_string(struct evbuffer *out, const char *s);

#endif
