/*
 * mosq-bench: an MQTT 3.1.1 load generator built on libmosquitto, for any
 * broker on loopback.
 *
 * Where cairn-bench drives every connection from one libevent loop and
 * batches its writes, mosq-bench behaves like a fleet of devices: every
 * client is a libmosquitto handle with its own network thread
 * (mosquitto_loop_start), every packet goes out in its own write, and
 * every QoS 1/2 message a subscriber receives is acknowledged by
 * libmosquitto itself, one PUBACK (or PUBREC/PUBCOMP) per message, the
 * moment it is read. Each publisher has one more thread of its own that
 * paces its messages (at a fixed rate, or as fast as its in-flight window
 * allows) and stamps each payload; subscribers account for loss,
 * duplicates and reordering. The last line is a machine-readable RESULT
 * line with the same keys as cairn-bench's.
 *
 * Only 127.0.0.1 and ::1 are accepted as the broker's address, and a hard
 * deadline (--deadline) ends every run.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#define STAMP_MAGIC 0x4d514231u /* "MQB1" */
#define STAMP_LEN   24          /* magic, run id, publisher, sequence, send time */

/* Latency histogram: 100 ns buckets below 10 ms, 100 us buckets below
 * 60 s (a broker that queues a flood delays it by seconds), one bucket for
 * everything slower. */
#define FINE_NS   100u
#define FINE_N    100000u
#define COARSE_NS 100000u
#define COARSE_N  599900u
#define HIST_N    (FINE_N + COARSE_N + 1u)

enum role { ROLE_SUB, ROLE_PUB };
/* wildcard: PREFIX/t/I under PREFIX/t/+; levels: I/PREFIX under +/PREFIX,
 * distinct first levels that a cluster's log partitions spread. */
enum layout { TOPICS_PER_PUBLISHER, TOPICS_SHARED, TOPICS_WILDCARD, TOPICS_LEVELS };

struct opts {
	const char *host;
	int port;
	unsigned publishers;
	unsigned subscribers;
	int qos;
	int sub_qos;
	size_t size;
	uint64_t count;
	double duration;
	double rate;
	unsigned window;
	enum layout layout;
	bool persistent;
	bool no_subscribe;
	uint64_t expect;
	const char *id_prefix;
	const char *topic_prefix;
	uint32_t run_id;
	double drain;
	double deadline;
	bool nodelay;
	int keepalive;
	unsigned lib_inflight; /* libmosquitto's own QoS 1/2 limit; 0: the window */
	int version;           /* MQTT protocol level: 4 (3.1.1) or 5 */
	const char *user_prop; /* 5.0: NAME=VALUE carried by every PUBLISH; NULL: none */
	bool topic_alias;      /* 5.0: publishers send their topic once, then alias 1 */
};

/* What one subscriber has seen of one publisher: one bit per sequence. */
struct track {
	uint8_t *bits;
	size_t cap;    /* bytes */
	uint64_t next; /* highest sequence seen + 1 */
};

struct bench;

struct client {
	struct bench *b;
	struct mosquitto *m;
	enum role role;
	unsigned index;
	char id[128];
	char topic[256]; /* publisher: where it publishes */
	/* 5.0 publisher: every PUBLISH's properties (the user property, topic
	 * alias 1 with --topic-alias); NULL: none. */
	mosquitto_property *pub_props;
	/* State the network thread changes and other threads wait on. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool connected;
	bool ready; /* connected, and subscribed when it subscribes */
	bool failed;
	unsigned subacks_due;
	/* publisher, under mu */
	unsigned inflight;
	uint64_t sent;
	uint64_t acked;
	bool pub_done;
	pthread_t thread;
	bool has_thread;
	/* subscriber: touched only by its network thread, read at the end */
	struct track *tracks;
	unsigned ntracks;
	uint64_t received;
	_Atomic uint64_t unique;
	uint64_t dup;
	uint64_t reorder;
	uint64_t foreign;
};

struct bench {
	struct opts o;
	struct client *clients;
	unsigned nclients;
	uint64_t t_start; /* first publish may go */
	_Atomic uint64_t t_first_recv;
	_Atomic uint64_t t_last_recv;
	_Atomic uint64_t last_progress;
	_Atomic uint64_t t_pub_end;
	_Atomic unsigned errors;
	_Atomic bool stopping; /* the end: publishers stop, disconnects are expected */
	_Atomic uint64_t hist[HIST_N];
	_Atomic uint64_t hist_count;
	_Atomic uint64_t hist_max;
	pthread_mutex_t mu; /* with cv: a client became ready or failed */
	pthread_cond_t cv;
	bool timed_out;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL) {
		fprintf(stderr, "mosq-bench: out of memory\n");
		exit(2);
	}
	return p;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* Absolute CLOCK_MONOTONIC time ns from now, for pthread_cond_timedwait
 * on a condition variable made with pthread_condattr_setclock. */
static struct timespec abstime_in(uint64_t ns)
{
	uint64_t t = now_ns() + ns;
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
			      .tv_nsec = (long)(t % 1000000000u)};
	return ts;
}

static void cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

static void atomic_max(_Atomic uint64_t *v, uint64_t x)
{
	uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);

	while (x > cur && !atomic_compare_exchange_weak(v, &cur, x))
		;
}

/* ---- latency ---- */

static void hist_add(struct bench *b, uint64_t ns)
{
	size_t i;

	if (ns < (uint64_t)FINE_NS * FINE_N)
		i = ns / FINE_NS;
	else if (ns < (uint64_t)FINE_NS * FINE_N + (uint64_t)COARSE_NS * COARSE_N)
		i = FINE_N + (ns - (uint64_t)FINE_NS * FINE_N) / COARSE_NS;
	else
		i = HIST_N - 1;
	atomic_fetch_add_explicit(&b->hist[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->hist_count, 1, memory_order_relaxed);
	atomic_max(&b->hist_max, ns);
}

/* The upper edge of the bucket holding quantile q, in microseconds. */
static double hist_quantile_us(struct bench *b, double q)
{
	uint64_t n = atomic_load(&b->hist_count), want, seen = 0;

	if (n == 0)
		return 0;
	want = (uint64_t)((double)n * q);
	if (want == 0)
		want = 1;
	for (size_t i = 0; i < HIST_N; i++) {
		seen += atomic_load_explicit(&b->hist[i], memory_order_relaxed);
		if (seen >= want) {
			if (i < FINE_N)
				return (double)((i + 1) * FINE_NS) / 1000.0;
			if (i < HIST_N - 1)
				return (double)((uint64_t)FINE_NS * FINE_N +
						(i - FINE_N + 1) * (uint64_t)COARSE_NS) /
				       1000.0;
			break;
		}
	}
	return (double)atomic_load(&b->hist_max) / 1000.0;
}

/* ---- topics ---- */

/* The topic publisher i publishes to. */
static void pub_topic(const struct opts *o, unsigned i, char *out, size_t len)
{
	if (o->layout == TOPICS_SHARED)
		snprintf(out, len, "%s/shared", o->topic_prefix);
	else if (o->layout == TOPICS_LEVELS)
		snprintf(out, len, "%u/%s", i, o->topic_prefix);
	else
		snprintf(out, len, "%s/t/%u", o->topic_prefix, i);
}

/* How many SUBSCRIBEs a subscriber sends; the i-th one's filter. With no
 * publishers in this run (a session made now, filled by a later run) the
 * filters are those of a run with one publisher. */
static unsigned sub_filters(const struct opts *o)
{
	if (o->layout != TOPICS_PER_PUBLISHER)
		return 1;
	return o->publishers ? o->publishers : 1;
}

static void sub_filter(const struct opts *o, unsigned i, char *out, size_t len)
{
	if (o->layout == TOPICS_WILDCARD)
		snprintf(out, len, "%s/t/+", o->topic_prefix);
	else if (o->layout == TOPICS_LEVELS)
		snprintf(out, len, "+/%s", o->topic_prefix);
	else
		pub_topic(o, i, out, len);
}

/* ---- callbacks (network threads) ---- */

static void client_fail(struct client *c)
{
	struct bench *b = c->b;

	pthread_mutex_lock(&c->mu);
	bool was = c->failed;
	c->failed = true;
	c->connected = false;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (!was)
		atomic_fetch_add(&b->errors, 1);
	pthread_mutex_lock(&b->mu);
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void client_ready(struct client *c)
{
	struct bench *b = c->b;

	pthread_mutex_lock(&b->mu);
	c->ready = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
	struct client *c = obj;
	const struct opts *o = &c->b->o;
	char filter[256];

	if (rc != 0) {
		fprintf(stderr, "mosq-bench: %s: CONNACK %d (%s)\n", c->id, rc,
			mosquitto_connack_string(rc));
		client_fail(c);
		mosquitto_disconnect(m);
		return;
	}
	pthread_mutex_lock(&c->mu);
	c->connected = true;
	pthread_mutex_unlock(&c->mu);
	if (c->role == ROLE_PUB || o->no_subscribe) {
		client_ready(c);
		return;
	}
	c->subacks_due = sub_filters(o);
	for (unsigned i = 0; i < sub_filters(o); i++) {
		sub_filter(o, i, filter, sizeof(filter));
		if (mosquitto_subscribe(m, NULL, filter, o->sub_qos) != MOSQ_ERR_SUCCESS) {
			client_fail(c);
			return;
		}
	}
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
	struct client *c = obj;

	(void)m;
	(void)mid;
	for (int i = 0; i < n; i++) {
		if (granted[i] == 0x80) {
			fprintf(stderr, "mosq-bench: %s: subscription refused\n", c->id);
			client_fail(c);
			return;
		}
	}
	if (c->subacks_due > 0 && --c->subacks_due == 0)
		client_ready(c);
}

/* QoS 0: the PUBLISH was written; QoS 1: PUBACK; QoS 2: PUBCOMP. */
static void on_publish(struct mosquitto *m, void *obj, int mid)
{
	struct client *c = obj;

	(void)m;
	(void)mid;
	pthread_mutex_lock(&c->mu);
	if (c->inflight > 0)
		c->inflight--;
	c->acked++;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	atomic_store_explicit(&c->b->last_progress, now_ns(), memory_order_relaxed);
}

static struct track *sub_track(struct client *c, uint32_t pub)
{
	if (pub >= c->ntracks) {
		unsigned n = pub + 1 > c->ntracks * 2 ? pub + 1 : c->ntracks * 2;
		struct track *t = realloc(c->tracks, (size_t)n * sizeof(*t));
		if (t == NULL) {
			fprintf(stderr, "mosq-bench: out of memory\n");
			exit(2);
		}
		memset(t + c->ntracks, 0, (size_t)(n - c->ntracks) * sizeof(*t));
		c->tracks = t;
		c->ntracks = n;
	}
	return &c->tracks[pub];
}

/* Set bit seq; false when it was set already. */
static bool track_mark(struct track *t, uint32_t seq)
{
	size_t byte = seq / 8;
	uint8_t bit = (uint8_t)(1u << (seq % 8));

	if (byte >= t->cap) {
		size_t n = t->cap ? t->cap : 4096;
		while (n <= byte)
			n *= 2;
		uint8_t *p = realloc(t->bits, n);
		if (p == NULL) {
			fprintf(stderr, "mosq-bench: out of memory\n");
			exit(2);
		}
		memset(p + t->cap, 0, n - t->cap);
		t->bits = p;
		t->cap = n;
	}
	if (t->bits[byte] & bit)
		return false;
	t->bits[byte] |= bit;
	return true;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
	struct client *c = obj;
	struct bench *b = c->b;
	const uint8_t *p = msg->payload;
	uint64_t now = now_ns(), sent_at, zero = 0;
	uint32_t pub, seq;
	struct track *t;

	(void)m;
	c->received++;
	if (msg->payloadlen < STAMP_LEN || get_be32(p) != STAMP_MAGIC ||
	    get_be32(p + 4) != b->o.run_id || get_be32(p + 8) > 1000000) {
		c->foreign++;
		return;
	}
	pub = get_be32(p + 8);
	seq = get_be32(p + 12);
	sent_at = get_be64(p + 16);
	atomic_compare_exchange_strong(&b->t_first_recv, &zero, now);
	atomic_max(&b->t_last_recv, now);
	atomic_store_explicit(&b->last_progress, now, memory_order_relaxed);
	hist_add(b, now > sent_at ? now - sent_at : 0);
	t = sub_track(c, pub);
	if (!track_mark(t, seq)) {
		c->dup++;
		return;
	}
	atomic_fetch_add_explicit(&c->unique, 1, memory_order_relaxed);
	if ((uint64_t)seq + 1 < t->next)
		c->reorder++;
	else
		t->next = (uint64_t)seq + 1;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
	struct client *c = obj;

	if (rc == 0 || atomic_load(&c->b->stopping))
		return;
	fprintf(stderr, "mosq-bench: %s: connection lost (%s)\n", c->id, mosquitto_strerror(rc));
	client_fail(c);
	/* No reconnect: the run reports the error instead. */
	mosquitto_disconnect(m);
}

/* ---- publishers ---- */

static bool pub_stop(const struct client *c)
{
	return c->failed || atomic_load(&c->b->stopping);
}

static void *pub_main(void *arg)
{
	struct client *c = arg;
	struct bench *b = c->b;
	const struct opts *o = &b->o;
	uint8_t *payload = xcalloc(1, o->size);
	double per_pub = o->rate > 0 ? o->rate / o->publishers : 0;
	uint64_t end = o->duration > 0 ? b->t_start + (uint64_t)(o->duration * 1e9) : 0;

	for (uint64_t seq = 0; o->duration > 0 || seq < o->count; seq++) {
		if (per_pub > 0) {
			uint64_t due = b->t_start + (uint64_t)((double)seq * 1e9 / per_pub);
			struct timespec ts = {.tv_sec = (time_t)(due / 1000000000u),
					      .tv_nsec = (long)(due % 1000000000u)};
			if (end && due >= end)
				break;
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
		} else if (end && now_ns() >= end) {
			break;
		}
		pthread_mutex_lock(&c->mu);
		while (c->inflight >= o->window && !pub_stop(c)) {
			struct timespec ts = abstime_in(100000000u);
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
		if (pub_stop(c)) {
			pthread_mutex_unlock(&c->mu);
			break;
		}
		c->inflight++;
		pthread_mutex_unlock(&c->mu);
		put_be32(payload, STAMP_MAGIC);
		put_be32(payload + 4, o->run_id);
		put_be32(payload + 8, c->index);
		put_be32(payload + 12, (uint32_t)seq);
		put_be64(payload + 16, now_ns());
		int rc;
		if (o->version == 5) {
			/* With aliases, the topic goes out once, then only alias 1. */
			bool alias = o->topic_alias && seq > 0;
			rc = mosquitto_publish_v5(c->m, NULL, alias ? NULL : c->topic, (int)o->size,
						  payload, o->qos, false, c->pub_props);
		} else {
			rc = mosquitto_publish(c->m, NULL, c->topic, (int)o->size, payload, o->qos,
					       false);
		}
		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "mosq-bench: %s: publish: %s\n", c->id,
				mosquitto_strerror(rc));
			client_fail(c);
			break;
		}
		pthread_mutex_lock(&c->mu);
		c->sent++;
		pthread_mutex_unlock(&c->mu);
	}
	/* Every message completed (QoS 0: written), unless the run ends. */
	pthread_mutex_lock(&c->mu);
	while (c->acked < c->sent && !pub_stop(c)) {
		struct timespec ts = abstime_in(100000000u);
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	}
	c->pub_done = true;
	pthread_mutex_unlock(&c->mu);
	atomic_max(&b->t_pub_end, now_ns());
	pthread_mutex_lock(&b->mu);
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	free(payload);
	return NULL;
}

/* ---- the run ---- */

static bool past(const struct bench *b, uint64_t deadline)
{
	(void)b;
	return now_ns() >= deadline;
}

static int client_start(struct bench *b, struct client *c)
{
	const struct opts *o = &b->o;
	bool clean = !(c->role == ROLE_SUB && o->persistent);
	int rc;

	c->m = mosquitto_new(c->id, clean, c);
	if (c->m == NULL) {
		fprintf(stderr, "mosq-bench: mosquitto_new failed\n");
		return -1;
	}
	mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION,
			     o->version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
	if (o->nodelay)
		mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
	/* libmosquitto holds back QoS 1/2 messages beyond its own limit (20 by
	 * default) and sends one more as each completes; unless told otherwise
	 * the publisher's window is the limit. */
	mosquitto_int_option(c->m, MOSQ_OPT_SEND_MAXIMUM,
			     (int)(o->lib_inflight ? o->lib_inflight : o->window));
	mosquitto_connect_callback_set(c->m, on_connect);
	mosquitto_disconnect_callback_set(c->m, on_disconnect);
	mosquitto_subscribe_callback_set(c->m, on_subscribe);
	mosquitto_publish_callback_set(c->m, on_publish);
	mosquitto_message_callback_set(c->m, on_message);
	if (o->version == 5) {
		mosquitto_property *conn_props = NULL;

		if (c->role == ROLE_PUB && o->user_prop != NULL) {
			const char *eq = strchr(o->user_prop, '=');
			char name[128];

			snprintf(name, sizeof(name), "%.*s", (int)(eq - o->user_prop),
				 o->user_prop);
			if (mosquitto_property_add_string_pair(&c->pub_props,
							       MQTT_PROP_USER_PROPERTY, name,
							       eq + 1) != MOSQ_ERR_SUCCESS)
				return -1;
		}
		if (c->role == ROLE_PUB && o->topic_alias &&
		    mosquitto_property_add_int16(&c->pub_props, MQTT_PROP_TOPIC_ALIAS, 1) !=
			MOSQ_ERR_SUCCESS)
			return -1;
		/* A subscriber's Receive Maximum (libmosquitto says 20 unless
		 * told): the broker's max_inflight_messages governs, as in
		 * 3.1.1. No Topic Alias Maximum: libmosquitto 2.0 cannot read a
		 * PUBLISH that carries only an alias (it drops the connection
		 * as a protocol error), so aliases go one way only. */
		if (c->role == ROLE_SUB)
			mosquitto_int_option(c->m, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
		rc = mosquitto_connect_bind_v5(c->m, o->host, o->port, o->keepalive, NULL,
					       conn_props);
		mosquitto_property_free_all(&conn_props);
	} else {
		rc = mosquitto_connect(c->m, o->host, o->port, o->keepalive);
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "mosq-bench: %s: connect to %s port %d: %s\n", c->id, o->host,
			o->port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return -1;
	}
	rc = mosquitto_loop_start(c->m);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "mosq-bench: loop_start: %s\n", mosquitto_strerror(rc));
		return -1;
	}
	return 0;
}

/* Wait until every client is ready; false on a failure or the deadline. */
static bool wait_ready(struct bench *b, uint64_t deadline)
{
	pthread_mutex_lock(&b->mu);
	for (;;) {
		unsigned ready = 0;
		bool failed = false;
		for (unsigned i = 0; i < b->nclients; i++) {
			ready += b->clients[i].ready;
			failed |= b->clients[i].failed;
		}
		if (failed || ready == b->nclients || past(b, deadline)) {
			pthread_mutex_unlock(&b->mu);
			return !failed && ready == b->nclients;
		}
		struct timespec ts = abstime_in(20000000u);
		pthread_cond_timedwait(&b->cv, &b->mu, &ts);
	}
}

/* Nothing delivered or completed for ns. Network threads store their own
 * clock readings, which may be later than one taken here first: the last
 * progress is read before the clock, and a later one counts as now. */
static bool quiet_for(struct bench *b, uint64_t ns)
{
	uint64_t last = atomic_load(&b->last_progress);
	uint64_t now = now_ns();

	return now > last && now - last >= ns;
}

static bool pubs_done(struct bench *b)
{
	bool done = true;

	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		if (c->role != ROLE_PUB || !c->has_thread)
			continue;
		pthread_mutex_lock(&c->mu);
		done &= c->pub_done;
		pthread_mutex_unlock(&c->mu);
	}
	return done;
}

static uint64_t total_sent(struct bench *b)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		if (c->role != ROLE_PUB)
			continue;
		pthread_mutex_lock(&c->mu);
		n += c->sent;
		pthread_mutex_unlock(&c->mu);
	}
	return n;
}

/* Messages every subscriber should receive. */
static uint64_t expected_per_sub(struct bench *b)
{
	return b->o.publishers ? total_sent(b) : b->o.expect;
}

static bool subs_complete(struct bench *b, uint64_t want)
{
	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		if (c->role == ROLE_SUB && !c->failed && atomic_load(&c->unique) < want)
			return false;
	}
	return true;
}

static void report(struct bench *b)
{
	const struct opts *o = &b->o;
	uint64_t sent = 0, acked = 0, received = 0, dup = 0, reorder = 0;
	uint64_t foreign = 0, expected = 0, lost = 0, per_sub = expected_per_sub(b);
	uint64_t t0 = b->t_start, t_first = atomic_load(&b->t_first_recv);
	uint64_t t_last = atomic_load(&b->t_last_recv), t_pub_end = atomic_load(&b->t_pub_end);
	unsigned nsubs = 0;
	double elapsed, rate, offered = 0;

	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		if (c->role == ROLE_PUB) {
			sent += c->sent;
			acked += c->acked < c->sent ? c->acked : c->sent;
			continue;
		}
		nsubs++;
		received += c->received - c->foreign;
		dup += c->dup;
		reorder += c->reorder;
		foreign += c->foreign;
		expected += per_sub;
		if (atomic_load(&c->unique) < per_sub)
			lost += per_sub - atomic_load(&c->unique);
	}
	if (t_first && (t0 == 0 || t_first < t0))
		t0 = t_first;
	if (t_pub_end > b->t_start && b->t_start)
		offered = (double)sent / ((double)(t_pub_end - b->t_start) / 1e9);
	if (nsubs > 0) {
		elapsed = t_last > t0 ? (double)(t_last - t0) / 1e9 : 0;
		rate = elapsed > 0 ? (double)received / elapsed : 0;
	} else {
		elapsed = t_pub_end > b->t_start ? (double)(t_pub_end - b->t_start) / 1e9 : 0;
		rate = offered;
	}
	printf("mosq-bench: %u publishers, %u subscribers, qos %d, payload %zu B, "
	       "libmosquitto, one network thread per client, TCP_NODELAY %s\n",
	       o->publishers, o->subscribers, o->qos, o->size, o->nodelay ? "on" : "off");
	printf("sent %" PRIu64 " (completed %" PRIu64 "), %.0f msgs/s offered\n", sent, acked,
	       offered);
	printf("received %" PRIu64 " of %" PRIu64 " expected in %.3f s: lost %" PRIu64
	       ", dup %" PRIu64 ", reorder %" PRIu64 ", foreign %" PRIu64 "\n",
	       received, expected, elapsed, lost, dup, reorder, foreign);
	printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", hist_quantile_us(b, 0.5),
	       hist_quantile_us(b, 0.9), hist_quantile_us(b, 0.99),
	       (double)atomic_load(&b->hist_max) / 1000.0);
	printf("RESULT sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64 " dup=%" PRIu64
	       " reorder=%" PRIu64 " msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f"
	       " expected=%" PRIu64 " acked=%" PRIu64 " foreign=%" PRIu64 " errors=%u"
	       " timeout=%d elapsed_s=%.3f\n",
	       sent, received, lost, dup, reorder, rate, hist_quantile_us(b, 0.5),
	       hist_quantile_us(b, 0.99), (double)atomic_load(&b->hist_max) / 1000.0, expected,
	       acked, foreign, atomic_load(&b->errors), b->timed_out ? 1 : 0, elapsed);
	fflush(stdout);
}

static int run(struct bench *b)
{
	const struct opts *o = &b->o;
	uint64_t deadline = now_ns() + (uint64_t)(o->deadline * 1e9);
	uint64_t drain_ns = (uint64_t)(o->drain * 1e9);
	bool ok;

	b->nclients = o->subscribers + o->publishers;
	b->clients = xcalloc(b->nclients ? b->nclients : 1, sizeof(*b->clients));
	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		c->b = b;
		c->role = i < o->subscribers ? ROLE_SUB : ROLE_PUB;
		c->index = c->role == ROLE_SUB ? i : i - o->subscribers;
		snprintf(c->id, sizeof(c->id), "%s-%s-%u", o->id_prefix,
			 c->role == ROLE_SUB ? "sub" : "pub", c->index);
		if (c->role == ROLE_PUB)
			pub_topic(o, c->index, c->topic, sizeof(c->topic));
		pthread_mutex_init(&c->mu, NULL);
		cond_init(&c->cv);
	}
	/* Subscribers first, so that nothing is published before they listen. */
	ok = true;
	for (unsigned i = 0; i < b->nclients && ok; i++)
		ok = client_start(b, &b->clients[i]) == 0;
	if (!ok)
		atomic_fetch_add(&b->errors, 1);
	else
		ok = wait_ready(b, deadline);
	if (ok) {
		printf("ready connections=%u publishers=%u subscribers=%u\n", b->nclients,
		       o->publishers, o->subscribers);
		fflush(stdout);
		b->t_start = now_ns();
		atomic_store(&b->last_progress, b->t_start);
		for (unsigned i = o->subscribers; i < b->nclients; i++) {
			struct client *c = &b->clients[i];
			if (pthread_create(&c->thread, NULL, pub_main, c) != 0) {
				fprintf(stderr, "mosq-bench: cannot start a publisher thread\n");
				atomic_fetch_add(&b->errors, 1);
				break;
			}
			c->has_thread = true;
		}
		/* Publishing, then every subscriber has everything, or nothing
		 * came for --drain seconds, or the deadline. */
		pthread_mutex_lock(&b->mu);
		while (!past(b, deadline) && !pubs_done(b)) {
			struct timespec ts = abstime_in(10000000u);
			pthread_cond_timedwait(&b->cv, &b->mu, &ts);
		}
		pthread_mutex_unlock(&b->mu);
		if (o->subscribers > 0 && (o->publishers > 0 || o->expect > 0)) {
			uint64_t want = expected_per_sub(b);
			while (!past(b, deadline) && !subs_complete(b, want) &&
			       !quiet_for(b, drain_ns))
				usleep(2000);
		}
	} else if (!past(b, deadline)) {
		fprintf(stderr, "mosq-bench: not every client connected and subscribed\n");
	}
	if (past(b, deadline)) {
		b->timed_out = true;
		fprintf(stderr, "mosq-bench: deadline reached: stopping\n");
	}
	atomic_store(&b->stopping, true);
	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		pthread_mutex_lock(&c->mu);
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
		if (c->has_thread)
			pthread_join(c->thread, NULL);
	}
	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		if (c->m == NULL)
			continue;
		mosquitto_disconnect(c->m);
		/* A network thread stuck past the deadline is cancelled. */
		mosquitto_loop_stop(c->m, b->timed_out);
	}
	report(b);
	for (unsigned i = 0; i < b->nclients; i++) {
		struct client *c = &b->clients[i];
		if (c->m)
			mosquitto_destroy(c->m);
		mosquitto_property_free_all(&c->pub_props);
		for (unsigned k = 0; k < c->ntracks; k++)
			free(c->tracks[k].bits);
		free(c->tracks);
	}
	if (atomic_load(&b->errors) || b->timed_out)
		return 1;
	return expected_per_sub(b) && o->subscribers && !subs_complete(b, expected_per_sub(b)) ? 1
											       : 0;
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mosq-bench [options]\n"
		"  -H, --host ADDR          127.0.0.1 (default) or ::1 only\n"
		"  -p, --port N             broker port (1883)\n"
		"  -P, --publishers N       publisher clients (1)\n"
		"  -S, --subscribers N      subscriber clients (1)\n"
		"  -q, --qos N              publish QoS 0, 1 or 2 (0)\n"
		"      --sub-qos N          subscription QoS (default: the publish QoS)\n"
		"  -s, --size BYTES         payload size, at least %d (64)\n"
		"  -n, --count N            messages per publisher (10000 unless -d)\n"
		"  -d, --duration SECONDS   publish for this long instead\n"
		"  -r, --rate N             total publish rate in msgs/s (0: flood)\n"
		"  -w, --window N           messages per publisher not yet completed:\n"
		"                           QoS 0 unwritten, QoS 1/2 unacknowledged (20)\n"
		"  -t, --topics LAYOUT      per-publisher, shared, wildcard or levels\n"
		"                           (per-publisher)\n"
		"      --persistent         subscribers connect with clean_session=0\n"
		"      --no-subscribe       subscribers resume their sessions without SUBSCRIBE\n"
		"      --expect N           messages each subscriber expects when -P 0\n"
		"      --id-prefix STR      client id prefix (mosq-bench)\n"
		"      --topic-prefix STR   topic prefix (bench)\n"
		"      --run-id N           stamp and accept only this run id (random)\n"
		"      --nodelay            set TCP_NODELAY (libmosquitto's default is off)\n"
		"      --lib-inflight N     libmosquitto's own in-flight limit (default: -w);\n"
		"                           below -w, the library queues and releases them\n"
		"      --drain SECONDS      stop waiting after this long without progress (2)\n"
		"      --deadline SECONDS   hard limit on the whole run (60)\n"
		"  -V, --mqtt-version N     4 (MQTT 3.1.1, default) or 5 (MQTT 5.0)\n"
		"      --user-property K=V  5.0: every PUBLISH carries this user property\n"
		"      --topic-alias        5.0: publishers send their topic once, then topic\n"
		"                           alias 1\n"
		"Client ids are PREFIX-sub-N and PREFIX-pub-N. The last line is\n"
		"RESULT key=value ... (sent, received, lost, dup, reorder, msgs_per_s, p50_us,\n"
		"p99_us, max_us, expected, acked, foreign, errors, timeout, elapsed_s).\n",
		STAMP_LEN);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static int parse_nonneg(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno || end == s || *end || !(*out >= 0) ? -1 : 0;
}

enum {
	OPT_SUB_QOS = 256,
	OPT_PERSISTENT,
	OPT_NO_SUBSCRIBE,
	OPT_EXPECT,
	OPT_ID_PREFIX,
	OPT_TOPIC_PREFIX,
	OPT_RUN_ID,
	OPT_NODELAY,
	OPT_LIB_INFLIGHT,
	OPT_DRAIN,
	OPT_DEADLINE,
	OPT_USER_PROP,
	OPT_TOPIC_ALIAS
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"publishers", required_argument, NULL, 'P'},
	    {"subscribers", required_argument, NULL, 'S'},
	    {"qos", required_argument, NULL, 'q'},
	    {"sub-qos", required_argument, NULL, OPT_SUB_QOS},
	    {"size", required_argument, NULL, 's'},
	    {"count", required_argument, NULL, 'n'},
	    {"duration", required_argument, NULL, 'd'},
	    {"rate", required_argument, NULL, 'r'},
	    {"window", required_argument, NULL, 'w'},
	    {"topics", required_argument, NULL, 't'},
	    {"persistent", no_argument, NULL, OPT_PERSISTENT},
	    {"no-subscribe", no_argument, NULL, OPT_NO_SUBSCRIBE},
	    {"expect", required_argument, NULL, OPT_EXPECT},
	    {"id-prefix", required_argument, NULL, OPT_ID_PREFIX},
	    {"topic-prefix", required_argument, NULL, OPT_TOPIC_PREFIX},
	    {"run-id", required_argument, NULL, OPT_RUN_ID},
	    {"nodelay", no_argument, NULL, OPT_NODELAY},
	    {"lib-inflight", required_argument, NULL, OPT_LIB_INFLIGHT},
	    {"drain", required_argument, NULL, OPT_DRAIN},
	    {"deadline", required_argument, NULL, OPT_DEADLINE},
	    {"mqtt-version", required_argument, NULL, 'V'},
	    {"user-property", required_argument, NULL, OPT_USER_PROP},
	    {"topic-alias", no_argument, NULL, OPT_TOPIC_ALIAS},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	uint64_t v;
	int ch;
	bool sub_qos_set = false, run_id_set = false;

	while ((ch = getopt_long(argc, argv, "H:p:P:S:q:s:n:d:r:w:t:V:h", longopts, NULL)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'H':
			o->host = optarg;
			break;
		case 'p':
			bad = parse_u64(optarg, 65535, &v) || v == 0;
			o->port = (int)v;
			break;
		case 'P':
			bad = parse_u64(optarg, 1000, &v);
			o->publishers = (unsigned)v;
			break;
		case 'S':
			bad = parse_u64(optarg, 1000, &v);
			o->subscribers = (unsigned)v;
			break;
		case 'q':
			bad = parse_u64(optarg, 2, &v);
			o->qos = (int)v;
			break;
		case OPT_SUB_QOS:
			bad = parse_u64(optarg, 2, &v);
			o->sub_qos = (int)v;
			sub_qos_set = true;
			break;
		case 's':
			bad = parse_u64(optarg, 256 * 1024 * 1024, &v) || v < STAMP_LEN;
			o->size = (size_t)v;
			break;
		case 'n':
			bad = parse_u64(optarg, UINT32_MAX, &v);
			o->count = v;
			break;
		case 'd':
			bad = parse_nonneg(optarg, &o->duration);
			break;
		case 'r':
			bad = parse_nonneg(optarg, &o->rate);
			break;
		case 'w':
			bad = parse_u64(optarg, 65535, &v) || v == 0;
			o->window = (unsigned)v;
			break;
		case 't':
			if (strcmp(optarg, "per-publisher") == 0)
				o->layout = TOPICS_PER_PUBLISHER;
			else if (strcmp(optarg, "shared") == 0)
				o->layout = TOPICS_SHARED;
			else if (strcmp(optarg, "wildcard") == 0)
				o->layout = TOPICS_WILDCARD;
			else if (strcmp(optarg, "levels") == 0)
				o->layout = TOPICS_LEVELS;
			else
				bad = 1;
			break;
		case OPT_PERSISTENT:
			o->persistent = true;
			break;
		case OPT_NO_SUBSCRIBE:
			o->no_subscribe = true;
			break;
		case OPT_EXPECT:
			bad = parse_u64(optarg, UINT32_MAX, &o->expect);
			break;
		case OPT_ID_PREFIX:
			o->id_prefix = optarg;
			bad = strlen(optarg) > 64;
			break;
		case OPT_TOPIC_PREFIX:
			o->topic_prefix = optarg;
			bad = strlen(optarg) > 128;
			break;
		case OPT_RUN_ID:
			bad = parse_u64(optarg, UINT32_MAX, &v);
			o->run_id = (uint32_t)v;
			run_id_set = true;
			break;
		case OPT_NODELAY:
			o->nodelay = true;
			break;
		case OPT_LIB_INFLIGHT:
			bad = parse_u64(optarg, 65535, &v) || v == 0;
			o->lib_inflight = (unsigned)v;
			break;
		case OPT_DRAIN:
			bad = parse_nonneg(optarg, &o->drain);
			break;
		case OPT_DEADLINE:
			bad = parse_nonneg(optarg, &o->deadline) || o->deadline == 0;
			break;
		case 'V':
			bad = parse_u64(optarg, 5, &v) || (v != 4 && v != 5);
			o->version = (int)v;
			break;
		case OPT_USER_PROP:
			o->user_prop = optarg;
			bad = strchr(optarg, '=') == NULL || strchr(optarg, '=') - optarg >= 128;
			break;
		case OPT_TOPIC_ALIAS:
			o->topic_alias = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "mosq-bench: bad value for option -%c: '%s'\n",
				ch < 256 ? ch : '-', optarg ? optarg : "");
			return -1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	if (!sub_qos_set)
		o->sub_qos = o->qos;
	if (!run_id_set)
		o->run_id = (uint32_t)(now_ns() ^ ((uint64_t)getpid() << 16));
	if (o->count == 0 && o->duration == 0)
		o->count = 10000;
	if (o->publishers == 0 && o->rate > 0)
		o->rate = 0;
	if (o->version != 5 && (o->user_prop != NULL || o->topic_alias)) {
		fprintf(stderr, "mosq-bench: --user-property and --topic-alias need -V 5\n");
		return -1;
	}
	return 0;
}

/* The broker must be on this machine's loopback: a literal 127.0.0.1 or ::1. */
static bool loopback_only(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, host, &a4) == 1)
		return ntohl(a4.s_addr) == 0x7f000001u;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
	return false;
}

int main(int argc, char **argv)
{
	static struct bench b; /* the histogram is large: not on the stack */
	int rc;

	b.o = (struct opts){.host = "127.0.0.1",
			    .port = 1883,
			    .publishers = 1,
			    .subscribers = 1,
			    .size = 64,
			    .window = 20,
			    .id_prefix = "mosq-bench",
			    .topic_prefix = "bench",
			    .drain = 2,
			    .deadline = 60,
			    .keepalive = 60,
			    .version = 4};
	if (parse_args(argc, argv, &b.o) != 0)
		return 2;
	if (!loopback_only(b.o.host)) {
		fprintf(stderr, "mosq-bench: refusing host '%s': only 127.0.0.1 and ::1\n",
			b.o.host);
		return 2;
	}
	pthread_mutex_init(&b.mu, NULL);
	cond_init(&b.cv);
	mosquitto_lib_init();
	rc = run(&b);
	mosquitto_lib_cleanup();
	return rc;
}
