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
	const char *client_id; /* borrowed until the loop runs again, or owned by a cache */
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
	uint64_t walks; /* of the cache that gave it (metrics_cache_get) */
	size_t ntop;
	struct metrics_queue top[METRICS_TOP_QUEUES]; /* largest first */
};

/* Walk every session now (and stat the store's directory). */
void metrics_snapshot(struct server *srv, struct metrics_snapshot *m);

/*
 * A snapshot kept for METRICS_CACHE_NS, so that scrapes and status pages
 * walk the sessions once a second at most, whatever the request rate.
 * The walked values (sessions, subscriptions, queues, the largest queues,
 * retained count, store size) are up to that old; the uptime and the age
 * of the last commit are computed on every call, and the counters the
 * renderers read directly are always current.
 */
#define METRICS_CACHE_NS 1000000000ull

struct metrics_cache {
	struct metrics_snapshot snap; /* top[].client_id owned */
	uint64_t taken_ns;            /* store_now_ns() of the walk; 0: none yet */
	uint64_t walks;               /* how many walks it made */
};

void metrics_cache_init(struct metrics_cache *c);
/* The cached snapshot, walked again when older than METRICS_CACHE_NS.
 * Valid until the next call or metrics_cache_cleanup. */
const struct metrics_snapshot *metrics_cache_get(struct metrics_cache *c, struct server *srv);
void metrics_cache_cleanup(struct metrics_cache *c);

/* /metrics: the Prometheus text exposition format, version 0.0.4, from
 * the snapshot m and the counters read now. */
void metrics_render_prometheus(struct server *srv, const struct metrics_snapshot *m,
			       struct evbuffer *out);

/* Append s as a JSON string (quoted, escaped). */
void metrics_json_string(struct evbuffer *out, const char *s);

#endif
