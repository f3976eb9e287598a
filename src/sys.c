/*
 * $SYS/broker/... : what the broker counts, as retained QoS 0 messages
 * every sys_interval seconds. A topic is published again only when its
 * value changed (uptime changes every time), as Mosquitto does. Load
 * averages are Mosquitto's: a rate per minute, smoothed exponentially
 * over 1, 5 and 15 minutes.
 */
#include "sys.h"

#include <event2/event.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "message.h"
#include "metrics.h"
#include "router.h"
#include "server.h"
#include "store.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

/* The counters with load averages: received and sent messages and bytes,
 * and connections accepted. */
enum { SYS_MSG_IN, SYS_MSG_OUT, SYS_BYTES_IN, SYS_BYTES_OUT, SYS_CONNS, SYS_NLOAD };

#define SYS_MAX_TOPICS 64

struct sys_pub {
	struct server *srv;
	struct event *timer;
	uint64_t last[SYS_NLOAD];
	double load[SYS_NLOAD][3]; /* per minute, over 1, 5 and 15 minutes */
	bool primed;
	uint64_t last_ns;           /* store_now_ns() of the last tick */
	char *sent[SYS_MAX_TOPICS]; /* the value last published per slot */
	int slot;                   /* the next slot during one publishing pass */
};

static void sys_publish(struct sys_pub *p, const char *topic, bool always, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void sys_publish(struct sys_pub *p, const char *topic, bool always, const char *fmt, ...)
{
	char value[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	int slot = p->slot++;
	if (slot >= SYS_MAX_TOPICS)
		return;
	if (!always && p->sent[slot] && strcmp(p->sent[slot], value) == 0)
		return;
	free(p->sent[slot]);
	p->sent[slot] = xstrdup(value);
	struct message *m =
	    message_new(topic, strlen(topic), (const uint8_t *)value, strlen(value), 0, true);
	router_publish(p->srv->router, m);
	message_unref(m);
}

/* The rates are over the time since the last tick, measured: a reload
 * may have changed sys_interval in between. The first tick's are the
 * averages since the start (at least a second), not the counts since the
 * start over one interval: a reload can turn $SYS on long after it. */
static void sys_loads(struct sys_pub *p, const uint64_t now[SYS_NLOAD])
{
	uint64_t now_ns = store_now_ns();
	double interval = (double)(now_ns - (p->primed ? p->last_ns : p->srv->started_ns)) / 1e9;
	p->last_ns = now_ns;
	if (interval < 1 && !p->primed)
		interval = 1;
	if (interval <= 0)
		interval = 1e-3;
	static const double minutes[3] = {1, 5, 15};
	for (int i = 0; i < SYS_NLOAD; i++) {
		double rate = (double)(now[i] - p->last[i]) * 60.0 / interval;
		for (int k = 0; k < 3; k++) {
			double f = exp(-interval / (60.0 * minutes[k]));
			p->load[i][k] = p->primed ? p->load[i][k] * f + rate * (1 - f) : rate;
		}
		p->last[i] = now[i];
	}
	p->primed = true;
}

static void sys_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sys_pub *p = arg;
	struct server *srv = p->srv;
	const struct server_stats *st = &srv->stats;
	const struct conn_stats *cs = conn_set_stats(srv->conns);
	struct metrics_snapshot m;
	if (srv->stopping)
		return;
	metrics_snapshot(srv, &m);
	uint64_t now[SYS_NLOAD] = {server_msgs_received(st), server_msgs_sent(st), cs->bytes_in,
				   cs->bytes_out, cs->accepted};
	sys_loads(p, now);
	p->slot = 0;
	sys_publish(p, "$SYS/broker/version", false, "cairn version %s", PACKAGE_VERSION);
	sys_publish(p, "$SYS/broker/uptime", true, "%" PRIu64 " seconds",
		    (uint64_t)m.uptime_seconds);
	sys_publish(p, "$SYS/broker/clients/connected", false, "%" PRIu64, m.sessions_connected);
	sys_publish(p, "$SYS/broker/clients/active", false, "%" PRIu64, m.sessions_connected);
	sys_publish(p, "$SYS/broker/clients/disconnected", false, "%" PRIu64, m.sessions_offline);
	sys_publish(p, "$SYS/broker/clients/inactive", false, "%" PRIu64, m.sessions_offline);
	sys_publish(p, "$SYS/broker/clients/total", false, "%" PRIu64,
		    m.sessions_connected + m.sessions_offline);
	sys_publish(p, "$SYS/broker/clients/expired", false, "%" PRIu64, st->sessions_expired);
	sys_publish(p, "$SYS/broker/messages/received", false, "%" PRIu64,
		    server_msgs_received(st));
	sys_publish(p, "$SYS/broker/messages/sent", false, "%" PRIu64, server_msgs_sent(st));
	sys_publish(p, "$SYS/broker/messages/dropped", false, "%" PRIu64, server_msgs_dropped(st));
	sys_publish(p, "$SYS/broker/publish/messages/received", false, "%" PRIu64,
		    server_msgs_received(st));
	sys_publish(p, "$SYS/broker/publish/messages/sent", false, "%" PRIu64,
		    server_msgs_sent(st));
	sys_publish(p, "$SYS/broker/publish/messages/dropped", false, "%" PRIu64,
		    server_msgs_dropped(st));
	sys_publish(p, "$SYS/broker/bytes/received", false, "%" PRIu64, cs->bytes_in);
	sys_publish(p, "$SYS/broker/bytes/sent", false, "%" PRIu64, cs->bytes_out);
	sys_publish(p, "$SYS/broker/retained messages/count", false, "%" PRIu64, m.retained);
	sys_publish(p, "$SYS/broker/subscriptions/count", false, "%" PRIu64, m.subscriptions);
	sys_publish(p, "$SYS/broker/store messages/count", false, "%" PRIu64,
		    m.queued_messages + m.inflight_messages);
	sys_publish(p, "$SYS/broker/store messages/bytes", false, "%" PRIu64, m.queued_bytes);
	static const char *const load_names[SYS_NLOAD] = {
	    "messages/received", "messages/sent", "bytes/received", "bytes/sent", "connections"};
	static const char *const spans[3] = {"1min", "5min", "15min"};
	for (int i = 0; i < SYS_NLOAD; i++) {
		for (int k = 0; k < 3; k++) {
			char topic[96];
			snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%s", load_names[i],
				 spans[k]);
			sys_publish(p, topic, false, "%.2f", p->load[i][k]);
		}
	}
	if (srv->store) {
		const struct store_stats *ss = store_get_stats(srv->store);
		sys_publish(p, "$SYS/broker/store/backend", false, "%s", store_name(srv->store));
		sys_publish(p, "$SYS/broker/store/up", false, "%d",
			    store_is_healthy(srv->store) ? 1 : 0);
		sys_publish(p, "$SYS/broker/store/commits", false, "%" PRIu64, ss->commits);
		sys_publish(p, "$SYS/broker/store/commits/failed", false, "%" PRIu64,
			    ss->commits_failed);
		sys_publish(p, "$SYS/broker/store/commit latency/average", false, "%.6f",
			    ss->commits ? ss->lat_sum / (double)ss->commits : 0.0);
		sys_publish(p, "$SYS/broker/store/held writes", false, "%zu",
			    store_held_writes(srv->store));
		if (m.store_bytes >= 0)
			sys_publish(p, "$SYS/broker/store/size", false, "%" PRId64, m.store_bytes);
	}
}

struct sys_pub *sys_pub_new(struct server *srv)
{
	struct sys_pub *p = xcalloc(1, sizeof(*p));
	p->srv = srv;
	p->timer = event_new(srv->base, -1, EV_PERSIST, sys_tick, p);
	sys_pub_rearm(p);
	sys_tick(-1, 0, p); /* the first values at once */
	return p;
}

void sys_pub_rearm(struct sys_pub *p)
{
	struct timeval tv = {(time_t)p->srv->cfg->sys_interval, 0};
	event_add(p->timer, &tv); /* replaces the pending timeout */
}

void sys_pub_free(struct sys_pub *p)
{
	if (!p)
		return;
	event_free(p->timer);
	for (int i = 0; i < SYS_MAX_TOPICS; i++)
		free(p->sent[i]);
	free(p);
}
