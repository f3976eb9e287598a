/*
 * cairn-bench: an MQTT 3.1.1 load generator for any broker on loopback.
 * Publishers stamp each payload with its send time and a per-publisher
 * sequence number; subscribers measure latency and count lost, duplicated
 * and reordered messages. One libevent loop drives every connection, plain
 * or TLS (OpenSSL on the same non-blocking sockets); --handshakes measures
 * connections per second instead. The last line printed is a
 * machine-readable RESULT line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "codec.h"

#define BENCH_MAGIC           0x43424e31u /* "CBN1" */
#define BENCH_STAMP_LEN       24          /* magic, run id, publisher, sequence, send time */
#define BENCH_READ_CHUNK      65536
#define BENCH_QOS0_HIGH_WATER (64 * 1024)
#define BENCH_MAX_REMAINING   (64u * 1024 * 1024)
#define BENCH_HDR_ROOM        512
#define BENCH_KEEPALIVE       60
#define BENCH_TLS_RECORD      16384 /* the largest TLS record's plaintext */
#define BENCH_RATE_READ_CHUNK 4096  /* --handshakes reads nothing but CONNACK */

/* Latency histogram: 100 ns buckets below 10 ms, 10 us buckets below 1 s,
 * 1 ms buckets below 100 s. */
#define HIST_FINE    100000
#define HIST_COARSE  99000
#define HIST_SLOW    99000
#define HIST_BUCKETS (HIST_FINE + HIST_COARSE + HIST_SLOW + 1)

/* Topics: one per publisher (PREFIX/t/I), one for all (PREFIX/shared),
 * one per publisher under a + filter (PREFIX/t/+), or one per publisher
 * with distinct first levels (I/PREFIX under +/PREFIX), which a cluster's
 * log partitions (cluster_log_partitions) spread. */
enum layout { LAYOUT_PER_PUBLISHER, LAYOUT_SHARED, LAYOUT_WILDCARD, LAYOUT_LEVELS };

enum role { ROLE_SUB, ROLE_IDLE, ROLE_PUB };

enum conn_state {
	CS_NEW,
	CS_CONNECTING,
	CS_TLS_HANDSHAKE,
	CS_WAIT_CONNACK,
	CS_WAIT_SUBACK,
	CS_READY,
	CS_CLOSING,
	CS_CLOSED
};

enum phase { PH_CONNECT, PH_HOLD, PH_RUN, PH_FLUSH, PH_DRAIN, PH_CLOSE, PH_DONE };

/* Outbound packet id states of a publisher. */
enum pid_state { PID_FREE = 0, PID_WAIT_PUBACK, PID_WAIT_PUBREC, PID_WAIT_PUBCOMP };

struct opts {
	const char *host;
	uint16_t port;
	unsigned publishers;
	unsigned subscribers;
	unsigned idle;
	unsigned qos;
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
	double hold;
	double drain;
	double deadline;
	unsigned connect_parallel;
	unsigned handshakes; /* connections per second mode: this many, one each */
	const char *cafile;  /* TLS on every connection when set */
	const char *certfile;
	const char *keyfile;
};

/* What one subscriber has seen from one publisher: a bitmap of sequences. */
struct track {
	uint8_t *bits;
	size_t cap; /* bytes */
	uint64_t max_plus1;
};

struct bench;

struct conn {
	struct bench *b;
	enum role role;
	unsigned index;
	enum conn_state state;
	int fd;
	SSL *ssl;                  /* NULL on a plain connection */
	bool ssl_read_wants_write; /* SSL_read asked for a writable socket */
	bool ssl_write_wants_read; /* SSL_write asked for a readable socket */
	uint64_t t_connect;        /* when connect() was called */
	struct event *rev;
	struct event *wev;
	struct event *kick; /* publisher: fill again on the next loop pass */
	bool wev_pending;
	uint8_t *in;
	size_t in_len;
	size_t in_cap;
	struct evbuffer *out;
	char topic[256];
	/* publisher */
	uint64_t sent;
	uint64_t acked;
	unsigned inflight;
	uint16_t next_pid;
	uint8_t *pid_state;
	bool done_sending;
	/* subscriber */
	struct track *tracks;
	unsigned ntracks;
	uint64_t received;
	uint64_t unique;
	uint64_t dup;
	uint64_t reorder;
	uint64_t stale;
	uint8_t *qos2_in; /* bitmap of inbound QoS 2 ids awaiting PUBREL */
};

struct bench {
	struct opts o;
	struct event_base *base;
	struct conn *conns;
	unsigned nconns;
	unsigned next_connect;
	unsigned connecting;
	unsigned settled; /* connections READY or failed during PH_CONNECT */
	unsigned open;
	unsigned first_pub;      /* publishers are conns[first_pub..nconns) */
	unsigned pubs_sending;   /* publishers neither done nor closed */
	uint64_t inflight_total; /* QoS 1/2 messages awaiting their last ack */
	uint64_t want_per_sub;   /* fixed when draining starts */
	unsigned subs_pending;   /* subscribers still short of want_per_sub */
	enum phase phase;
	struct event *deadline_ev;
	struct event *tick_ev;
	struct event *phase_ev;
	struct event *ping_ev;
	struct event *sigint_ev;
	uint64_t t_begin;
	uint64_t t_start;
	uint64_t t_pub_end;
	uint64_t t_first_recv;
	uint64_t t_last_recv;
	uint64_t last_progress;
	uint64_t progress_mark;
	uint64_t tick_ns;
	uint8_t *scratch;
	uint64_t *hist;
	uint64_t hist_count;
	uint64_t hist_max;
	long double hist_sum;
	unsigned errors;
	SSL_CTX *ssl_ctx;         /* NULL: plain TCP */
	uint64_t handshakes_done; /* --handshakes: CONNACKed and closed cleanly */
	uint64_t t_end;
	bool timed_out;
	bool interrupted;
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
		fprintf(stderr, "cairn-bench: out of memory\n");
		exit(1);
	}
	return p;
}

static void *xrealloc(void *p, size_t size)
{
	p = realloc(p, size);
	if (p == NULL) {
		fprintf(stderr, "cairn-bench: out of memory\n");
		exit(1);
	}
	return p;
}

static struct timeval tv_of(double seconds)
{
	struct timeval tv;

	if (seconds < 0)
		seconds = 0;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	return tv;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t)(v >> 32));
	put_u32(p + 4, (uint32_t)v);
}

static uint64_t get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* ---- latency histogram ---- */

static void hist_add(struct bench *b, uint64_t ns)
{
	size_t i;

	if (ns < 10000000u)
		i = (size_t)(ns / 100);
	else if (ns < 1000000000u)
		i = HIST_FINE + (size_t)((ns - 10000000u) / 10000);
	else if (ns < 100000000000u)
		i = HIST_FINE + HIST_COARSE + (size_t)((ns - 1000000000u) / 1000000);
	else
		i = HIST_BUCKETS - 1;
	b->hist[i]++;
	b->hist_count++;
	b->hist_sum += (long double)ns;
	if (ns > b->hist_max)
		b->hist_max = ns;
}

/* The middle of the bucket holding the p-quantile, in microseconds. */
static double hist_quantile_us(const struct bench *b, double p)
{
	uint64_t want, seen = 0;
	size_t i;

	if (b->hist_count == 0)
		return 0;
	want = (uint64_t)(p * (double)b->hist_count);
	if (want < 1)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += b->hist[i];
		if (seen >= want)
			break;
	}
	if (i < HIST_FINE)
		return ((double)i * 100 + 50) / 1000;
	if (i < HIST_FINE + HIST_COARSE)
		return (10000000.0 + (double)(i - HIST_FINE) * 10000 + 5000) / 1000;
	if (i < HIST_FINE + HIST_COARSE + HIST_SLOW)
		return (1e9 + (double)(i - HIST_FINE - HIST_COARSE) * 1e6 + 5e5) / 1000;
	return (double)b->hist_max / 1000;
}

/* ---- connections ---- */

static void conn_close(struct conn *c, bool error);
static void bench_check_phase(struct bench *b);
static void pub_fill(struct conn *c);

static void pub_set_done(struct conn *c)
{
	if (!c->done_sending) {
		c->done_sending = true;
		c->b->pubs_sending--;
	}
}

static void conn_client_id(const struct conn *c, char *buf, size_t len);

/* Say why OpenSSL failed on this connection; the caller closes it. */
static void conn_tls_error(struct conn *c, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char id[128];

	if (c->b->phase >= PH_CLOSE || c->state == CS_CLOSING) {
		ERR_clear_error();
		return;
	}
	conn_client_id(c, id, sizeof(id));
	fprintf(stderr, "cairn-bench: %s: TLS %s failed: %s\n", id, what,
		e       ? ERR_reason_error_string(e)
		: errno ? strerror(errno)
			: "unexpected end of file");
	ERR_clear_error();
}

/*
 * Hand the front of the output buffer to SSL_write, at most one record at a
 * time. Returns what evbuffer_write would: the bytes taken, or -1 with
 * errno EAGAIN when the socket (or the handshake state) must be waited for.
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets a retry after WANT_WRITE pass
 * the same bytes at another address, and the retry is never shorter: the
 * buffer only grows at its end until SSL_write has taken its front.
 */
static int conn_tls_write(struct conn *c)
{
	size_t len = evbuffer_get_length(c->out);
	unsigned char *p;
	int n;

	if (len > BENCH_TLS_RECORD)
		len = BENCH_TLS_RECORD;
	p = evbuffer_pullup(c->out, (ev_ssize_t)len);
	ERR_clear_error();
	n = SSL_write(c->ssl, p, (int)len);
	if (n > 0) {
		evbuffer_drain(c->out, (size_t)n);
		return n;
	}
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_READ:
		/* The read event is always armed and flushes after reading;
		 * waiting for a writable socket would only spin. */
		c->ssl_write_wants_read = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			errno = EPIPE;
		conn_tls_error(c, "write");
		return -1;
	default:
		conn_tls_error(c, "write");
		errno = EPROTO;
		return -1;
	}
}

/*
 * SSL_read with read(2)'s results: bytes, 0 at the end of the stream (a
 * close_notify or, with SSL_OP_IGNORE_UNEXPECTED_EOF, a bare EOF), or -1
 * with errno EAGAIN when nothing is ready yet.
 */
static ssize_t conn_tls_read(struct conn *c, uint8_t *buf, size_t len)
{
	int n;

	ERR_clear_error();
	n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		/* A key update or renegotiation wants to write: retried from
		 * the write event. */
		c->ssl_read_wants_write = true;
		if (!c->wev_pending) {
			event_add(c->wev, NULL);
			c->wev_pending = true;
		}
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == 0)
			return 0;
		conn_tls_error(c, "read");
		return -1;
	default:
		conn_tls_error(c, "read");
		errno = EPROTO;
		return -1;
	}
}

static void conn_flush(struct conn *c)
{
	if (c->state == CS_CLOSED || c->state == CS_CONNECTING || c->state == CS_TLS_HANDSHAKE)
		return;
	c->ssl_write_wants_read = false;
	while (evbuffer_get_length(c->out) > 0) {
		int n = c->ssl ? conn_tls_write(c) : evbuffer_write(c->out, c->fd);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			conn_close(c, true);
			return;
		}
		if (n == 0)
			break;
	}
	/* Wait for a writable socket while bytes wait, unless OpenSSL waits
	 * for the peer first, and while an SSL_read waits to write. */
	if ((evbuffer_get_length(c->out) > 0 && !c->ssl_write_wants_read) ||
	    c->ssl_read_wants_write) {
		if (!c->wev_pending) {
			event_add(c->wev, NULL);
			c->wev_pending = true;
		}
	} else if (c->wev_pending) {
		event_del(c->wev);
		c->wev_pending = false;
	}
	/* A QoS 0 flood has no acks to wake it: come back on the next loop
	 * pass, after the other connections had their turn. Not through wev:
	 * libevent does not register the fd of an event_add()ed event that is
	 * still active. */
	if (c->role == ROLE_PUB && c->b->phase == PH_RUN && !c->done_sending && c->b->o.qos == 0 &&
	    c->b->o.rate <= 0 && evbuffer_get_length(c->out) == 0)
		event_active(c->kick, 0, 1);
}

static int conn_send(struct conn *c, const struct codec_packet *p)
{
	uint8_t buf[1024];
	int n = codec_encode(p, buf, sizeof(buf));

	if (n < 0)
		return -1;
	return evbuffer_add(c->out, buf, (size_t)n);
}

static void conn_send_pid(struct conn *c, uint8_t type, uint16_t pid)
{
	struct codec_packet p = {.type = type};

	p.u.packet_id = pid;
	conn_send(c, &p);
}

static void conn_client_id(const struct conn *c, char *buf, size_t len)
{
	static const char *const names[] = {"sub", "idle", "pub"};

	snprintf(buf, len, "%s-%s-%u", c->b->o.id_prefix, names[c->role], c->index);
}

static void conn_send_connect(struct conn *c)
{
	struct codec_packet p = {.type = CODEC_CONNECT};
	char id[128];

	conn_client_id(c, id, sizeof(id));
	p.u.connect.protocol_level = 4;
	p.u.connect.clean_session = !(c->role == ROLE_SUB && c->b->o.persistent);
	p.u.connect.keepalive = BENCH_KEEPALIVE;
	p.u.connect.client_id.ptr = id;
	p.u.connect.client_id.len = (uint16_t)strlen(id);
	conn_send(c, &p);
	c->state = CS_WAIT_CONNACK;
	conn_flush(c);
}

/* The topic publisher i publishes to, by the layout (-t). */
static void pub_topic(const struct opts *o, unsigned i, char *out, size_t len)
{
	if (o->layout == LAYOUT_SHARED)
		snprintf(out, len, "%s/shared", o->topic_prefix);
	else if (o->layout == LAYOUT_LEVELS)
		snprintf(out, len, "%u/%s", i, o->topic_prefix);
	else
		snprintf(out, len, "%s/t/%u", o->topic_prefix, i);
}

/* A subscriber's i-th filter (one per publisher with the per-publisher
 * layout, else the one filter). */
static void sub_filter(const struct opts *o, unsigned i, char *out, size_t len)
{
	if (o->layout == LAYOUT_WILDCARD)
		snprintf(out, len, "%s/t/+", o->topic_prefix);
	else if (o->layout == LAYOUT_LEVELS)
		snprintf(out, len, "+/%s", o->topic_prefix);
	else
		pub_topic(o, i, out, len);
}

static void conn_send_subscribe(struct conn *c)
{
	const struct opts *o = &c->b->o;
	unsigned nfilters = o->layout == LAYOUT_PER_PUBLISHER ? o->publishers : 1;
	size_t cap = (size_t)nfilters * (strlen(o->topic_prefix) + 32) + 64;
	uint8_t *list = xcalloc(1, cap);
	uint8_t *pkt = xcalloc(1, cap + 16);
	struct codec_packet p = {.type = CODEC_SUBSCRIBE};
	char filter[256];
	int len = 0, n;
	uint8_t qos = (uint8_t)(o->sub_qos >= 0 ? o->sub_qos : (int)o->qos);

	for (unsigned i = 0; i < nfilters; i++) {
		sub_filter(o, i, filter, sizeof(filter));
		len = codec_list_append(CODEC_SUBSCRIBE, list, (size_t)len, cap, filter,
					(uint16_t)strlen(filter), qos);
		if (len < 0)
			break;
	}
	p.u.list.packet_id = 1;
	p.u.list.count = nfilters;
	p.u.list.data = list;
	p.u.list.data_len = len < 0 ? 0 : (uint32_t)len;
	n = len < 0 ? len : codec_encode(&p, pkt, cap + 16);
	if (n < 0) {
		fprintf(stderr, "cairn-bench: cannot encode SUBSCRIBE\n");
		conn_close(c, true);
	} else {
		evbuffer_add(c->out, pkt, (size_t)n);
		c->state = CS_WAIT_SUBACK;
	}
	free(list);
	free(pkt);
}

/* A connection finished its handshake (or failed) while connecting. */
static void conn_settled(struct conn *c)
{
	struct bench *b = c->b;

	if (b->phase == PH_CONNECT) {
		b->settled++;
		bench_check_phase(b);
	}
}

/*
 * --handshakes: the broker accepted this connection. Count the time from
 * connect() to CONNACK, say DISCONNECT and wait for the broker to close, so
 * that its work for the connection is done before the next one is counted.
 */
static void conn_rate_connacked(struct conn *c)
{
	struct codec_packet disc = {.type = CODEC_DISCONNECT};
	struct bench *b = c->b;

	hist_add(b, now_ns() - c->t_connect);
	/* No longer connecting, whether or not the DISCONNECT gets out. */
	b->connecting--;
	c->state = CS_CLOSING;
	conn_send(c, &disc);
	conn_flush(c);
	if (c->state == CS_CLOSED)
		return;
	if (c->ssl == NULL)
		shutdown(c->fd, SHUT_WR);
	bench_check_phase(b);
}

static void conn_ready(struct conn *c)
{
	c->state = CS_READY;
	c->b->connecting--;
	conn_settled(c);
}

static void conn_close(struct conn *c, bool error)
{
	struct bench *b = c->b;
	enum conn_state was = c->state;

	if (was == CS_CLOSED)
		return;
	if (error) {
		b->errors++;
		if (b->phase < PH_CLOSE) {
			char id[128];
			conn_client_id(c, id, sizeof(id));
			fprintf(stderr, "cairn-bench: %s: connection lost (%s)\n", id,
				errno ? strerror(errno) : "closed by the broker");
		}
	}
	c->state = CS_CLOSED;
	if (c->rev)
		event_del(c->rev);
	if (c->wev)
		event_del(c->wev);
	if (c->kick)
		event_del(c->kick);
	c->wev_pending = false;
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	b->open--;
	if (b->o.handshakes && was == CS_CLOSING && !error)
		b->handshakes_done++;
	if (was >= CS_CONNECTING && was < CS_READY) {
		b->connecting--;
		conn_settled(c);
	}
	if (c->role == ROLE_PUB) {
		pub_set_done(c);
		b->inflight_total -= c->inflight;
		c->inflight = 0;
	}
	if (c->role == ROLE_SUB && b->phase == PH_DRAIN && c->unique < b->want_per_sub)
		b->subs_pending--;
	bench_check_phase(b);
}

static struct track *sub_track(struct conn *c, uint32_t pub)
{
	if (pub >= c->ntracks) {
		unsigned n = pub + 1 > c->ntracks * 2 ? pub + 1 : c->ntracks * 2;
		c->tracks = xrealloc(c->tracks, (size_t)n * sizeof(*c->tracks));
		memset(c->tracks + c->ntracks, 0, (size_t)(n - c->ntracks) * sizeof(*c->tracks));
		c->ntracks = n;
	}
	return &c->tracks[pub];
}

/* One delivered application message: check its stamp and account for it. */
static void sub_record(struct conn *c, const struct codec_publish *pub)
{
	struct bench *b = c->b;
	const uint8_t *s = pub->payload;
	uint64_t now = now_ns(), sent_at;
	uint32_t pidx, seq;
	struct track *t;

	c->received++;
	if (pub->payload_len < BENCH_STAMP_LEN || get_u32(s) != BENCH_MAGIC ||
	    get_u32(s + 4) != b->o.run_id) {
		c->stale++;
		return;
	}
	pidx = get_u32(s + 8);
	seq = get_u32(s + 12);
	sent_at = get_u64(s + 16);
	if (pidx > 1000000) {
		c->stale++;
		return;
	}
	if (b->t_first_recv == 0)
		b->t_first_recv = now;
	b->t_last_recv = now;
	b->last_progress = now;
	hist_add(b, now > sent_at ? now - sent_at : 0);
	t = sub_track(c, pidx);
	if ((size_t)(seq / 8) >= t->cap) {
		size_t n = t->cap ? t->cap : 1024;
		while (n <= (size_t)(seq / 8))
			n *= 2;
		t->bits = xrealloc(t->bits, n);
		memset(t->bits + t->cap, 0, n - t->cap);
		t->cap = n;
	}
	if (t->bits[seq / 8] & (1u << (seq % 8))) {
		c->dup++;
		return;
	}
	t->bits[seq / 8] |= (uint8_t)(1u << (seq % 8));
	c->unique++;
	if (b->phase == PH_DRAIN && c->unique == b->want_per_sub)
		b->subs_pending--;
	if ((uint64_t)seq + 1 < t->max_plus1)
		c->reorder++;
	else
		t->max_plus1 = (uint64_t)seq + 1;
}

static void sub_publish(struct conn *c, const struct codec_publish *pub)
{
	uint16_t id = pub->packet_id;

	if (c->state == CS_CLOSING)
		return; /* left for the session to redeliver */
	switch (pub->qos) {
	case 0:
		sub_record(c, pub);
		break;
	case 1:
		sub_record(c, pub);
		conn_send_pid(c, CODEC_PUBACK, id);
		break;
	default:
		if (c->qos2_in == NULL)
			c->qos2_in = xcalloc(1, 65536 / 8);
		if (!(c->qos2_in[id / 8] & (1u << (id % 8)))) {
			c->qos2_in[id / 8] |= (uint8_t)(1u << (id % 8));
			sub_record(c, pub);
		}
		conn_send_pid(c, CODEC_PUBREC, id);
		break;
	}
}

static void pub_complete(struct conn *c, uint16_t id)
{
	c->pid_state[id] = PID_FREE;
	c->inflight--;
	c->b->inflight_total--;
	c->acked++;
	c->b->last_progress = now_ns();
}

static void pub_ack(struct conn *c, uint8_t type, uint16_t id)
{
	if (c->pid_state == NULL)
		return;
	switch (type) {
	case CODEC_PUBACK:
		if (c->pid_state[id] == PID_WAIT_PUBACK)
			pub_complete(c, id);
		break;
	case CODEC_PUBREC:
		if (c->pid_state[id] == PID_WAIT_PUBREC)
			c->pid_state[id] = PID_WAIT_PUBCOMP;
		if (c->pid_state[id] == PID_WAIT_PUBCOMP)
			conn_send_pid(c, CODEC_PUBREL, id);
		break;
	case CODEC_PUBCOMP:
		if (c->pid_state[id] == PID_WAIT_PUBCOMP)
			pub_complete(c, id);
		break;
	default:
		break;
	}
}

static int conn_handle(struct conn *c, const struct codec_packet *p)
{
	uint32_t pos = 0;
	struct codec_str f;
	uint8_t rc;

	switch (p->type) {
	case CODEC_CONNACK:
		if (c->state != CS_WAIT_CONNACK)
			return -1;
		if (p->u.connack.return_code != CODEC_CONNACK_ACCEPTED) {
			fprintf(stderr, "cairn-bench: CONNACK return code %u\n",
				p->u.connack.return_code);
			return -1;
		}
		if (c->b->o.handshakes)
			conn_rate_connacked(c);
		else if (c->role == ROLE_SUB && !c->b->o.no_subscribe)
			conn_send_subscribe(c);
		else
			conn_ready(c);
		break;
	case CODEC_SUBACK:
		if (c->state != CS_WAIT_SUBACK)
			return -1;
		while (codec_list_next(CODEC_SUBACK, &p->u.list, &pos, &f, &rc)) {
			if (rc == CODEC_SUBACK_FAILURE) {
				fprintf(stderr, "cairn-bench: subscription refused\n");
				return -1;
			}
		}
		conn_ready(c);
		break;
	case CODEC_PUBLISH:
		sub_publish(c, &p->u.publish);
		break;
	case CODEC_PUBREL:
		if (c->qos2_in)
			c->qos2_in[p->u.packet_id / 8] &= (uint8_t) ~(1u << (p->u.packet_id % 8));
		if (c->state != CS_CLOSING)
			conn_send_pid(c, CODEC_PUBCOMP, p->u.packet_id);
		break;
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBCOMP:
		pub_ack(c, p->type, p->u.packet_id);
		break;
	case CODEC_PINGRESP:
	case CODEC_UNSUBACK:
		break;
	default:
		return -1;
	}
	return 0;
}

/* Parse and handle every whole packet in the input buffer. */
static int conn_parse(struct conn *c)
{
	size_t pos = 0;

	while (pos < c->in_len && c->state != CS_CLOSED) {
		struct codec_header h;
		struct codec_packet p;
		size_t total;
		int rc = codec_parse_header(c->in + pos, c->in_len - pos, BENCH_MAX_REMAINING, &h);

		if (rc == CODEC_EAGAIN)
			break;
		if (rc != CODEC_OK)
			return -1;
		total = (size_t)h.header_len + h.remaining;
		if (c->in_len - pos < total) {
			if (total > c->in_cap) {
				c->in_cap = total;
				c->in = xrealloc(c->in, c->in_cap);
			}
			break;
		}
		if (codec_decode(c->in[pos], c->in + pos + h.header_len, h.remaining, &p) !=
		    CODEC_OK)
			return -1;
		if (conn_handle(c, &p) < 0)
			return -1;
		pos += total;
	}
	if (pos > 0 && c->state != CS_CLOSED) {
		memmove(c->in, c->in + pos, c->in_len - pos);
		c->in_len -= pos;
	}
	return 0;
}

static void conn_tls_handshake(struct conn *c);

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	(void)what;
	if (c->state == CS_TLS_HANDSHAKE) {
		conn_tls_handshake(c);
		return;
	}
	/* One read(2) per event on a plain socket. TLS may hold decrypted
	 * bytes the socket no longer signals (a record larger than the room
	 * left): read until SSL_pending says the record is used up. */
	do {
		if (c->in_len == c->in_cap) {
			c->in_cap *= 2;
			c->in = xrealloc(c->in, c->in_cap);
		}
		if (c->ssl)
			n = conn_tls_read(c, c->in + c->in_len, c->in_cap - c->in_len);
		else
			n = read(fd, c->in + c->in_len, c->in_cap - c->in_len);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0) {
			if (n == 0)
				errno = 0;
			conn_close(c, c->state != CS_CLOSING);
			return;
		}
		if (c->state == CS_CLOSING)
			continue; /* discard: waiting for the broker to close */
		c->in_len += (size_t)n;
		if (conn_parse(c) < 0) {
			fprintf(stderr, "cairn-bench: protocol error from the broker\n");
			errno = EPROTO;
			conn_close(c, true);
			return;
		}
		if (c->state == CS_CLOSED)
			return;
	} while (c->ssl && SSL_pending(c->ssl) > 0);
	if (c->state == CS_CLOSING)
		return;
	if (c->role == ROLE_PUB)
		pub_fill(c);
	conn_flush(c);
	bench_check_phase(c->b);
}

/*
 * One step of the client handshake. The read event stays armed throughout;
 * the write event only while OpenSSL waits for a writable socket. CONNECT
 * goes out as soon as the handshake completes.
 */
static void conn_tls_handshake(struct conn *c)
{
	int rc;

	ERR_clear_error();
	rc = SSL_connect(c->ssl);
	if (rc == 1) {
		if (c->wev_pending) {
			event_del(c->wev);
			c->wev_pending = false;
		}
		conn_send_connect(c);
		return;
	}
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		if (c->wev_pending) {
			event_del(c->wev);
			c->wev_pending = false;
		}
		return;
	case SSL_ERROR_WANT_WRITE:
		if (!c->wev_pending) {
			event_add(c->wev, NULL);
			c->wev_pending = true;
		}
		return;
	default:
		conn_tls_error(c, "handshake");
		if (errno == 0)
			errno = EPROTO;
		conn_close(c, true);
		return;
	}
}

/* The TCP connection is up: start TLS on it. */
static void conn_tls_start(struct conn *c)
{
	c->ssl = SSL_new(c->b->ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		conn_tls_error(c, "setup");
		errno = ENOMEM;
		conn_close(c, true);
		return;
	}
	/* An idle connection holds no record buffers between packets, as the
	 * broker's side should not either; busy ones keep theirs. */
	if (c->role == ROLE_IDLE && !c->b->o.handshakes)
		SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_set_connect_state(c->ssl);
	c->state = CS_TLS_HANDSHAKE;
	conn_tls_handshake(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)what;
	if (c->state == CS_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		event_del(c->wev);
		c->wev_pending = false;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
			errno = err;
			conn_close(c, true);
			return;
		}
		event_add(c->rev, NULL);
		if (c->b->ssl_ctx) {
			conn_tls_start(c);
			return;
		}
		conn_send_connect(c);
		return;
	}
	if (c->state == CS_TLS_HANDSHAKE) {
		conn_tls_handshake(c);
		return;
	}
	if (c->ssl_read_wants_write) {
		c->ssl_read_wants_write = false;
		conn_read_cb(fd, EV_READ, c);
		if (c->state == CS_CLOSED)
			return;
	}
	conn_flush(c); /* removes the write event once the buffer is empty */
	if (c->state == CS_READY && c->role == ROLE_PUB) {
		pub_fill(c);
		conn_flush(c);
	}
}

static void pub_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state != CS_READY)
		return;
	pub_fill(c);
	conn_flush(c);
}

static int addr_of(const struct opts *o, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strcmp(o->host, "::1") == 0) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(o->port);
		s6->sin6_addr = in6addr_loopback;
		*len = sizeof(*s6);
		return 0;
	}
	if (strcmp(o->host, "127.0.0.1") == 0 || strcmp(o->host, "localhost") == 0) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(o->port);
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*len = sizeof(*s4);
		return 0;
	}
	return -1;
}

static void conn_start(struct conn *c)
{
	struct bench *b = c->b;
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	b->connecting++;
	b->open++;
	c->t_connect = now_ns();
	addr_of(&b->o, &ss, &len);
	c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		c->state = CS_CONNECTING;
		conn_close(c, true);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->rev = event_new(b->base, c->fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wev = event_new(b->base, c->fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
	if (c->role == ROLE_PUB)
		c->kick = event_new(b->base, -1, 0, pub_kick_cb, c);
	c->out = evbuffer_new();
	c->in_cap = b->o.handshakes ? BENCH_RATE_READ_CHUNK : BENCH_READ_CHUNK;
	c->in = xcalloc(1, c->in_cap);
	c->state = CS_CONNECTING;
	if (connect(c->fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
		conn_close(c, true);
		return;
	}
	event_add(c->wev, NULL);
	c->wev_pending = true;
}

/* Keep at most connect_parallel handshakes in progress. */
static void bench_connect_more(struct bench *b)
{
	while (b->next_connect < b->nconns && b->connecting < b->o.connect_parallel)
		conn_start(&b->conns[b->next_connect++]);
}

/* ---- publishing ---- */

static void pub_one(struct conn *c)
{
	struct bench *b = c->b;
	struct codec_publish p = {.qos = (uint8_t)b->o.qos};
	uint8_t hdr[BENCH_HDR_ROOM];
	uint8_t *payload = b->scratch + BENCH_HDR_ROOM;
	int n;

	p.topic.ptr = c->topic;
	p.topic.len = (uint16_t)strlen(c->topic);
	p.payload = payload;
	p.payload_len = (uint32_t)b->o.size;
	if (p.qos > 0) {
		while (c->pid_state[c->next_pid] != PID_FREE || c->next_pid == 0)
			c->next_pid++;
		p.packet_id = c->next_pid++;
		c->pid_state[p.packet_id] = p.qos == 1 ? PID_WAIT_PUBACK : PID_WAIT_PUBREC;
		c->inflight++;
		b->inflight_total++;
	}
	n = codec_encode_publish_header(&p, hdr, sizeof(hdr), NULL);
	if (n < 0) {
		fprintf(stderr, "cairn-bench: cannot encode PUBLISH\n");
		exit(1);
	}
	put_u32(payload, BENCH_MAGIC);
	put_u32(payload + 4, b->o.run_id);
	put_u32(payload + 8, c->index);
	put_u32(payload + 12, (uint32_t)c->sent);
	put_u64(payload + 16, now_ns());
	memcpy(payload - n, hdr, (size_t)n);
	evbuffer_add(c->out, payload - n, (size_t)n + b->o.size);
	c->sent++;
}

/* Messages this publisher may have sent by now at the configured rate. */
static uint64_t pub_due(const struct conn *c, uint64_t now)
{
	const struct bench *b = c->b;
	double per_pub = b->o.rate / b->o.publishers;

	if (b->o.rate <= 0)
		return UINT64_MAX;
	return (uint64_t)(per_pub * (double)(now - b->t_start) / 1e9) + 1;
}

static void pub_fill(struct conn *c)
{
	struct bench *b = c->b;
	uint64_t due;

	if (b->phase != PH_RUN || c->done_sending || c->state != CS_READY)
		return;
	due = pub_due(c, now_ns());
	while (c->sent < due) {
		if (b->o.count && c->sent >= b->o.count)
			break;
		if (b->o.qos == 0 ? evbuffer_get_length(c->out) >= BENCH_QOS0_HIGH_WATER
				  : c->inflight >= b->o.window)
			break;
		pub_one(c);
	}
	if (b->o.count && c->sent >= b->o.count)
		pub_set_done(c);
}

/* ---- phases ---- */

static uint64_t bench_expected_per_sub(const struct bench *b)
{
	uint64_t sum = 0;

	if (b->o.publishers == 0)
		return b->o.expect;
	for (unsigned i = 0; i < b->nconns; i++) {
		if (b->conns[i].role == ROLE_PUB)
			sum += b->conns[i].sent;
	}
	return sum;
}

static void bench_begin_close(struct bench *b)
{
	struct codec_packet disc = {.type = CODEC_DISCONNECT};
	struct timeval tv = tv_of(2.0);

	b->phase = PH_CLOSE;
	event_del(b->tick_ev);
	for (unsigned i = 0; i < b->nconns; i++) {
		struct conn *c = &b->conns[i];
		if (c->state == CS_CLOSED || c->state == CS_NEW)
			continue;
		if (c->state == CS_CONNECTING || c->state == CS_TLS_HANDSHAKE) {
			conn_close(c, false);
			continue;
		}
		conn_send(c, &disc);
		conn_flush(c);
		if (c->state == CS_CLOSED)
			continue;
		shutdown(c->fd, SHUT_WR);
		c->state = CS_CLOSING;
	}
	event_add(b->phase_ev, &tv);
	bench_check_phase(b);
}

static void bench_start_run(struct bench *b)
{
	struct timeval tick = {0, 0};

	b->phase = PH_RUN;
	b->t_start = now_ns();
	b->last_progress = b->t_start;
	if (b->o.rate > 0) {
		tick.tv_usec = (suseconds_t)(b->tick_ns / 1000);
		event_add(b->tick_ev, &tick);
	}
	if (b->o.duration > 0 && b->o.publishers > 0) {
		struct timeval tv = tv_of(b->o.duration);
		event_add(b->phase_ev, &tv);
	}
	for (unsigned i = b->first_pub; i < b->nconns; i++) {
		pub_fill(&b->conns[i]);
		conn_flush(&b->conns[i]);
	}
}

/* Poll every 50 ms for a stall while waiting for acks or deliveries. */
static void bench_poll_stall(struct bench *b)
{
	struct timeval tv = tv_of(0.05);

	b->last_progress = now_ns();
	event_del(b->phase_ev);
	event_add(b->phase_ev, &tv);
}

static void bench_start_drain(struct bench *b)
{
	b->phase = PH_DRAIN;
	b->want_per_sub = bench_expected_per_sub(b);
	b->subs_pending = 0;
	for (unsigned i = 0; i < b->nconns; i++) {
		const struct conn *c = &b->conns[i];
		if (c->role == ROLE_SUB && c->state == CS_READY && c->unique < b->want_per_sub)
			b->subs_pending++;
	}
	bench_poll_stall(b);
}

/* Move to the next phase when the current one has nothing left to wait for. */
static void bench_check_phase(struct bench *b)
{
	switch (b->phase) {
	case PH_CONNECT:
		bench_connect_more(b);
		if (b->o.handshakes) {
			if (b->next_connect == b->nconns && b->open == 0) {
				b->t_end = now_ns();
				b->phase = PH_DONE;
				event_base_loopbreak(b->base);
			}
			return;
		}
		if (b->settled < b->nconns)
			return;
		printf("ready connections=%u errors=%u connect_ms=%.1f\n", b->open, b->errors,
		       (double)(now_ns() - b->t_begin) / 1e6);
		fflush(stdout);
		if (b->o.hold > 0) {
			struct timeval tv = tv_of(b->o.hold);
			b->phase = PH_HOLD;
			event_add(b->phase_ev, &tv);
			return;
		}
		bench_start_run(b);
		bench_check_phase(b);
		break;
	case PH_RUN:
		if (b->pubs_sending > 0)
			return;
		b->t_pub_end = now_ns();
		b->phase = PH_FLUSH;
		event_del(b->tick_ev);
		bench_poll_stall(b);
		/* fall through */
	case PH_FLUSH:
		if (b->inflight_total > 0)
			return;
		bench_start_drain(b);
		/* fall through */
	case PH_DRAIN:
		if (b->subs_pending == 0)
			bench_begin_close(b);
		break;
	case PH_CLOSE:
		if (b->open == 0) {
			b->phase = PH_DONE;
			event_base_loopbreak(b->base);
		}
		break;
	default:
		break;
	}
}

static void phase_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	struct timeval tv = tv_of(0.05);
	uint64_t now = now_ns();

	(void)fd;
	(void)what;
	switch (b->phase) {
	case PH_HOLD:
		bench_start_run(b);
		bench_check_phase(b);
		break;
	case PH_RUN: /* the duration is over */
		for (unsigned i = b->first_pub; i < b->nconns; i++)
			pub_set_done(&b->conns[i]);
		bench_check_phase(b);
		break;
	case PH_FLUSH:
	case PH_DRAIN:
		/* Give up when nothing arrived for the drain interval. */
		if ((double)(now - b->last_progress) / 1e9 >= b->o.drain) {
			bench_begin_close(b);
			break;
		}
		event_add(b->phase_ev, &tv);
		break;
	case PH_CLOSE:
		for (unsigned i = 0; i < b->nconns; i++)
			conn_close(&b->conns[i], false);
		break;
	default:
		break;
	}
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	struct timeval tv = {0, (suseconds_t)(b->tick_ns / 1000)};

	(void)fd;
	(void)what;
	if (b->phase != PH_RUN)
		return;
	for (unsigned i = b->first_pub; i < b->nconns; i++) {
		pub_fill(&b->conns[i]);
		conn_flush(&b->conns[i]);
	}
	event_add(b->tick_ev, &tv);
	bench_check_phase(b);
}

static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	struct codec_packet ping = {.type = CODEC_PINGREQ};

	(void)fd;
	(void)what;
	for (unsigned i = 0; i < b->nconns; i++) {
		struct conn *c = &b->conns[i];
		if (c->state == CS_READY) {
			conn_send(c, &ping);
			conn_flush(c);
		}
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;

	(void)fd;
	(void)what;
	if (b->phase >= PH_CLOSE) {
		/* The close phase itself overran: stop now. */
		event_base_loopbreak(b->base);
		return;
	}
	fprintf(stderr, "cairn-bench: hard deadline of %.1f s reached\n", b->o.deadline);
	b->timed_out = true;
	if (b->t_pub_end == 0)
		b->t_pub_end = now_ns();
	bench_begin_close(b);
	{
		struct timeval tv = tv_of(3.0);
		event_add(b->deadline_ev, &tv);
	}
}

static void sigint_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;

	(void)fd;
	(void)what;
	b->interrupted = true;
	if (b->phase < PH_CLOSE) {
		if (b->t_pub_end == 0)
			b->t_pub_end = now_ns();
		bench_begin_close(b);
	} else {
		event_base_loopbreak(b->base);
	}
}

/* ---- report ---- */

static void bench_report(struct bench *b)
{
	uint64_t sent = 0, acked = 0, received = 0, unique = 0, dup = 0, reorder = 0, stale = 0;
	uint64_t expected = 0, lost = 0, per_sub = bench_expected_per_sub(b);
	uint64_t t0, t1;
	double elapsed, rate, pub_rate;
	unsigned nsubs = 0;

	for (unsigned i = 0; i < b->nconns; i++) {
		const struct conn *c = &b->conns[i];
		if (c->role == ROLE_PUB) {
			sent += c->sent;
			acked += b->o.qos == 0 ? c->sent : c->acked;
		} else if (c->role == ROLE_SUB) {
			nsubs++;
			received += c->received;
			unique += c->unique;
			dup += c->dup;
			reorder += c->reorder;
			stale += c->stale;
			expected += per_sub;
			if (c->unique < per_sub)
				lost += per_sub - c->unique;
		}
	}
	t0 = b->t_start;
	if (b->t_first_recv && (t0 == 0 || b->t_first_recv < t0))
		t0 = b->t_first_recv;
	t1 = b->t_pub_end ? b->t_pub_end : now_ns();
	pub_rate = 0;
	if (b->t_start && t1 > b->t_start)
		pub_rate = (double)sent / ((double)(t1 - b->t_start) / 1e9);
	if (nsubs > 0) {
		elapsed = b->t_last_recv > t0 ? (double)(b->t_last_recv - t0) / 1e9 : 0;
		rate = elapsed > 0 ? (double)(unique + dup) / elapsed : 0;
	} else {
		elapsed = b->t_start && t1 > b->t_start ? (double)(t1 - b->t_start) / 1e9 : 0;
		rate = pub_rate;
	}
	printf("cairn-bench: %u publishers, %u subscribers, %u idle, qos %u, payload %zu B\n",
	       b->o.publishers, b->o.subscribers, b->o.idle, b->o.qos, b->o.size);
	printf("sent %" PRIu64 " (completed %" PRIu64 "), %.0f msgs/s offered\n", sent, acked,
	       pub_rate);
	printf("received %" PRIu64 " of %" PRIu64 " expected in %.3f s: lost %" PRIu64
	       ", dup %" PRIu64 ", reorder %" PRIu64 ", foreign %" PRIu64 "\n",
	       received, expected, elapsed, lost, dup, reorder, stale);
	printf("latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
	       hist_quantile_us(b, 0.50), hist_quantile_us(b, 0.90), hist_quantile_us(b, 0.99),
	       hist_quantile_us(b, 0.999), (double)b->hist_max / 1000,
	       b->hist_count ? (double)(b->hist_sum / b->hist_count) / 1000 : 0.0);
	printf("RESULT sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64 " dup=%" PRIu64
	       " reorder=%" PRIu64 " msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f max_us=%.1f"
	       " expected=%" PRIu64 " acked=%" PRIu64 " foreign=%" PRIu64 " errors=%u"
	       " timeout=%d elapsed_s=%.3f\n",
	       sent, unique + dup, lost, dup, reorder, rate, hist_quantile_us(b, 0.50),
	       hist_quantile_us(b, 0.99), (double)b->hist_max / 1000, expected, acked, stale,
	       b->errors, b->timed_out ? 1 : 0, elapsed);
	fflush(stdout);
}

/* --handshakes: connections per second and the time to CONNACK. */
static void bench_report_rate(struct bench *b)
{
	uint64_t t1 = b->t_end ? b->t_end : now_ns();
	double elapsed = (double)(t1 - b->t_begin) / 1e9;
	double rate = elapsed > 0 ? (double)b->handshakes_done / elapsed : 0;

	printf("cairn-bench: %u connections (%s), %u at a time: TCP%s, CONNECT, CONNACK, "
	       "DISCONNECT\n",
	       b->nconns, b->ssl_ctx ? "TLS" : "plain", b->o.connect_parallel,
	       b->ssl_ctx ? ", TLS handshake" : "");
	printf("completed %" PRIu64 " in %.3f s: %.0f connections/s, %u errors\n",
	       b->handshakes_done, elapsed, rate, b->errors);
	printf("connect to CONNACK us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
	       hist_quantile_us(b, 0.50), hist_quantile_us(b, 0.90), hist_quantile_us(b, 0.99),
	       (double)b->hist_max / 1000);
	printf("RESULT connections=%" PRIu64 " conn_per_s=%.1f p50_us=%.1f p99_us=%.1f"
	       " max_us=%.1f sent=0 received=0 lost=0 dup=0 reorder=0 errors=%u timeout=%d"
	       " elapsed_s=%.3f\n",
	       b->handshakes_done, rate, hist_quantile_us(b, 0.50), hist_quantile_us(b, 0.99),
	       (double)b->hist_max / 1000, b->errors, b->timed_out ? 1 : 0, elapsed);
	fflush(stdout);
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: cairn-bench [options]\n"
	    "  -H, --host ADDR          127.0.0.1 (default), ::1 or localhost only\n"
	    "  -p, --port N             broker port (1883)\n"
	    "  -P, --publishers N       publisher connections (1)\n"
	    "  -S, --subscribers N      subscriber connections (1)\n"
	    "  -I, --idle N             extra idle connections (0)\n"
	    "  -q, --qos N              publish QoS 0, 1 or 2 (0)\n"
	    "      --sub-qos N          subscription QoS (default: the publish QoS)\n"
	    "  -s, --size BYTES         payload size, at least %d (64)\n"
	    "  -n, --count N            messages per publisher (10000 unless -d)\n"
	    "  -d, --duration SECONDS   publish for this long\n"
	    "  -r, --rate N             total publish rate in msgs/s (0: flood)\n"
	    "  -w, --window N           QoS 1/2 messages in flight per publisher (20)\n"
	    "  -t, --topics LAYOUT      per-publisher, shared, wildcard or levels\n"
	    "                           (per-publisher)\n"
	    "      --persistent         subscribers connect with clean_session=0\n"
	    "      --no-subscribe       subscribers resume their sessions without SUBSCRIBE\n"
	    "      --expect N           messages each subscriber expects when -P 0\n"
	    "      --id-prefix STR      client id prefix (cairn-bench)\n"
	    "      --topic-prefix STR   topic prefix (bench)\n"
	    "      --run-id N           stamp and accept only this run id (random)\n"
	    "      --hold SECONDS       keep every connection open this long before publishing\n"
	    "      --drain SECONDS      stop waiting after this long without progress (2)\n"
	    "      --deadline SECONDS   hard limit on the whole run (60)\n"
	    "      --connect-parallel N handshakes in progress at once (64)\n"
	    "      --handshakes N       only connect: N connections, each CONNECT, CONNACK,\n"
	    "                           DISCONNECT; report connections per second\n"
	    "      --cafile FILE        TLS on every connection, the broker verified with\n"
	    "                           this CA and for the address connected to\n"
	    "      --cert FILE          client certificate (PEM chain) for TLS\n"
	    "      --key FILE           its private key (PEM)\n"
	    "Client ids are PREFIX-sub-N, PREFIX-pub-N and PREFIX-idle-N, so a persistent\n"
	    "session is resumed by running again with the same prefix. The last line is\n"
	    "RESULT key=value ... (sent, received, lost, dup, reorder, msgs_per_s, p50_us,\n"
	    "p99_us, max_us, expected, acked, foreign, errors, timeout, elapsed_s).\n",
	    BENCH_STAMP_LEN);
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
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

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	return errno || end == s || *end || !(*out >= 0) ? -1 : 0; /* NaN too */
}

enum {
	OPT_SUB_QOS = 256,
	OPT_PERSISTENT,
	OPT_NO_SUBSCRIBE,
	OPT_EXPECT,
	OPT_ID_PREFIX,
	OPT_TOPIC_PREFIX,
	OPT_RUN_ID,
	OPT_HOLD,
	OPT_DRAIN,
	OPT_DEADLINE,
	OPT_CONNECT_PARALLEL,
	OPT_HANDSHAKES,
	OPT_CAFILE,
	OPT_CERT,
	OPT_KEY
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"publishers", required_argument, NULL, 'P'},
	    {"subscribers", required_argument, NULL, 'S'},
	    {"idle", required_argument, NULL, 'I'},
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
	    {"hold", required_argument, NULL, OPT_HOLD},
	    {"drain", required_argument, NULL, OPT_DRAIN},
	    {"deadline", required_argument, NULL, OPT_DEADLINE},
	    {"connect-parallel", required_argument, NULL, OPT_CONNECT_PARALLEL},
	    {"handshakes", required_argument, NULL, OPT_HANDSHAKES},
	    {"cafile", required_argument, NULL, OPT_CAFILE},
	    {"cert", required_argument, NULL, OPT_CERT},
	    {"key", required_argument, NULL, OPT_KEY},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	bool count_set = false;
	uint64_t v;
	int ch, bad = 0;

	while ((ch = getopt_long(argc, argv, "H:p:P:S:I:q:s:n:d:r:w:t:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			o->host = optarg;
			break;
		case 'p':
			bad |= parse_uint(optarg, 65535, &v) || v == 0;
			o->port = (uint16_t)v;
			break;
		case 'P':
			bad |= parse_uint(optarg, 100000, &v);
			o->publishers = (unsigned)v;
			break;
		case 'S':
			bad |= parse_uint(optarg, 100000, &v);
			o->subscribers = (unsigned)v;
			break;
		case 'I':
			bad |= parse_uint(optarg, 1000000, &v);
			o->idle = (unsigned)v;
			break;
		case 'q':
			bad |= parse_uint(optarg, 2, &v);
			o->qos = (unsigned)v;
			break;
		case OPT_SUB_QOS:
			bad |= parse_uint(optarg, 2, &v);
			o->sub_qos = (int)v;
			break;
		case 's':
			bad |= parse_uint(optarg, 16 * 1024 * 1024, &v) || v < BENCH_STAMP_LEN;
			o->size = (size_t)v;
			break;
		case 'n':
			bad |= parse_uint(optarg, UINT32_MAX, &v);
			o->count = v;
			count_set = true;
			break;
		case 'd':
			bad |= parse_double(optarg, &o->duration);
			break;
		case 'r':
			bad |= parse_double(optarg, &o->rate);
			break;
		case 'w':
			bad |= parse_uint(optarg, 65535, &v) || v == 0;
			o->window = (unsigned)v;
			break;
		case 't':
			if (strcmp(optarg, "per-publisher") == 0)
				o->layout = LAYOUT_PER_PUBLISHER;
			else if (strcmp(optarg, "shared") == 0)
				o->layout = LAYOUT_SHARED;
			else if (strcmp(optarg, "wildcard") == 0)
				o->layout = LAYOUT_WILDCARD;
			else if (strcmp(optarg, "levels") == 0)
				o->layout = LAYOUT_LEVELS;
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
			bad |= parse_uint(optarg, UINT64_MAX, &o->expect);
			break;
		case OPT_ID_PREFIX:
			o->id_prefix = optarg;
			bad |= strlen(optarg) > 64;
			break;
		case OPT_TOPIC_PREFIX:
			o->topic_prefix = optarg;
			bad |= strlen(optarg) > 128 || strpbrk(optarg, "+#") != NULL;
			break;
		case OPT_RUN_ID:
			bad |= parse_uint(optarg, UINT32_MAX, &v);
			o->run_id = (uint32_t)v;
			break;
		case OPT_HOLD:
			bad |= parse_double(optarg, &o->hold);
			break;
		case OPT_DRAIN:
			bad |= parse_double(optarg, &o->drain);
			break;
		case OPT_DEADLINE:
			bad |= parse_double(optarg, &o->deadline) || o->deadline <= 0;
			break;
		case OPT_CONNECT_PARALLEL:
			bad |= parse_uint(optarg, 100000, &v) || v == 0;
			o->connect_parallel = (unsigned)v;
			break;
		case OPT_HANDSHAKES:
			bad |= parse_uint(optarg, 10000000, &v) || v == 0;
			o->handshakes = (unsigned)v;
			break;
		case OPT_CAFILE:
			o->cafile = optarg;
			break;
		case OPT_CERT:
			o->certfile = optarg;
			break;
		case OPT_KEY:
			o->keyfile = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
		if (bad) {
			fprintf(stderr, "cairn-bench: bad value '%s' for %s\n", optarg,
				argv[optind - 1][0] == '-' && argv[optind - 1] != optarg
				    ? argv[optind - 1]
				    : argv[optind - 2]);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cairn-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!o->certfile != !o->keyfile) {
		fprintf(stderr, "cairn-bench: --cert and --key go together\n");
		return -1;
	}
	if (o->certfile && !o->cafile) {
		fprintf(stderr, "cairn-bench: --cert needs --cafile\n");
		return -1;
	}
	if (!count_set && o->duration <= 0)
		o->count = 10000;
	if (!count_set && o->duration > 0)
		o->count = 0;
	return 0;
}

/*
 * The client context for --cafile: the broker's certificate must chain to
 * the CA and name the address connected to, as mosquitto_pub checks it.
 * No session is ever resumed, so every connection is a full handshake.
 */
static SSL_CTX *tls_client_ctx(const struct opts *o, const char *ip)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *what = "cannot create the TLS context";
	const char *file = "";
	char err[256];

	if (ctx == NULL)
		goto fail;
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* A broker that closes after DISCONNECT without close_notify ends the
	 * stream; it is not an attack on a benchmark. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	what = "cannot load --cafile";
	file = o->cafile;
	if (SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	what = "cannot check the broker's address";
	file = ip;
	if (X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), ip) != 1)
		goto fail;
	if (o->certfile) {
		what = "cannot load --cert";
		file = o->certfile;
		if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1)
			goto fail;
		what = "cannot load --key";
		file = o->keyfile;
		if (SSL_CTX_use_PrivateKey_file(ctx, o->keyfile, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1)
			goto fail;
	}
	return ctx;
fail:
	/* The first error in full: for a missing file the last one says
	 * only "system lib". */
	ERR_error_string_n(ERR_peek_error(), err, sizeof(err));
	fprintf(stderr, "cairn-bench: %s %s: %s\n", what, file, err);
	SSL_CTX_free(ctx);
	return NULL;
}

static void raise_fd_limit(unsigned need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)need + 32)
		fprintf(stderr, "cairn-bench: warning: %u connections but RLIMIT_NOFILE is %llu\n",
			need, (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
	struct bench b;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct event_config *cfg;
	struct timeval tv;
	unsigned k = 0;
	int rc;

	memset(&b, 0, sizeof(b));
	b.o.host = "127.0.0.1";
	b.o.port = 1883;
	b.o.publishers = 1;
	b.o.subscribers = 1;
	b.o.sub_qos = -1;
	b.o.size = 64;
	b.o.window = 20;
	b.o.id_prefix = "cairn-bench";
	b.o.topic_prefix = "bench";
	b.o.drain = 2.0;
	b.o.deadline = 60.0;
	b.o.connect_parallel = 64;
	b.o.run_id = (uint32_t)(now_ns() ^ ((uint64_t)getpid() << 16));
	if (parse_args(argc, argv, &b.o) < 0) {
		usage(stderr);
		return 2;
	}
	if (addr_of(&b.o, &ss, &sslen) < 0) {
		fprintf(stderr, "cairn-bench: refusing host '%s': only 127.0.0.1 and ::1\n",
			b.o.host);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (b.o.cafile) {
		b.ssl_ctx = tls_client_ctx(&b.o, ss.ss_family == AF_INET6 ? "::1" : "127.0.0.1");
		if (b.ssl_ctx == NULL)
			return 1;
	}
	if (b.o.handshakes) {
		/* Only connections, no messages: every slot is used once. */
		b.o.publishers = b.o.subscribers = 0;
		b.o.idle = b.o.handshakes;
	}
	b.nconns = b.o.subscribers + b.o.idle + b.o.publishers;
	raise_fd_limit(b.o.handshakes ? 2 * b.o.connect_parallel : b.nconns);

	cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	b.base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (b.base == NULL) {
		fprintf(stderr, "cairn-bench: cannot create the event base\n");
		return 1;
	}
	b.hist = xcalloc(HIST_BUCKETS, sizeof(*b.hist));
	b.scratch = xcalloc(1, BENCH_HDR_ROOM + b.o.size);
	memset(b.scratch + BENCH_HDR_ROOM, 'x', b.o.size);
	b.conns = xcalloc(b.nconns ? b.nconns : 1, sizeof(*b.conns));
	/* Subscribers first, then idle connections, then publishers. */
	for (unsigned i = 0; i < b.o.subscribers; i++, k++) {
		b.conns[k].role = ROLE_SUB;
		b.conns[k].index = i;
	}
	for (unsigned i = 0; i < b.o.idle; i++, k++) {
		b.conns[k].role = ROLE_IDLE;
		b.conns[k].index = i;
	}
	b.first_pub = k;
	b.pubs_sending = b.o.publishers;
	for (unsigned i = 0; i < b.o.publishers; i++, k++) {
		struct conn *c = &b.conns[k];
		c->role = ROLE_PUB;
		c->index = i;
		pub_topic(&b.o, i, c->topic, sizeof(c->topic));
		if (b.o.qos > 0)
			c->pid_state = xcalloc(65536, 1);
		c->next_pid = 1;
	}
	for (unsigned i = 0; i < b.nconns; i++) {
		b.conns[i].b = &b;
		b.conns[i].fd = -1;
	}
	if (b.o.rate > 0 && b.o.publishers > 0) {
		double per_pub = b.o.rate / b.o.publishers;
		b.tick_ns = (uint64_t)(1e9 / per_pub);
		if (b.tick_ns < 100000)
			b.tick_ns = 100000;
		if (b.tick_ns > 100000000)
			b.tick_ns = 100000000;
	}
	b.deadline_ev = evtimer_new(b.base, deadline_cb, &b);
	b.tick_ev = evtimer_new(b.base, tick_cb, &b);
	b.phase_ev = evtimer_new(b.base, phase_timer_cb, &b);
	b.ping_ev = event_new(b.base, -1, EV_PERSIST, ping_cb, &b);
	b.sigint_ev = evsignal_new(b.base, SIGINT, sigint_cb, &b);
	event_add(b.sigint_ev, NULL);
	tv = tv_of(b.o.deadline);
	event_add(b.deadline_ev, &tv);
	tv = tv_of(BENCH_KEEPALIVE / 2);
	event_add(b.ping_ev, &tv);

	b.t_begin = now_ns();
	b.phase = PH_CONNECT;
	bench_check_phase(&b);
	if (b.phase != PH_DONE)
		event_base_dispatch(b.base);
	if (b.o.handshakes)
		bench_report_rate(&b);
	else
		bench_report(&b);
	rc = b.timed_out || b.interrupted || b.errors ? 1 : 0;

	for (unsigned i = 0; i < b.nconns; i++) {
		struct conn *c = &b.conns[i];
		if (c->ssl)
			SSL_free(c->ssl);
		if (c->fd >= 0)
			close(c->fd);
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		if (c->kick)
			event_free(c->kick);
		if (c->out)
			evbuffer_free(c->out);
		for (unsigned t = 0; t < c->ntracks; t++)
			free(c->tracks[t].bits);
		free(c->tracks);
		free(c->in);
		free(c->pid_state);
		free(c->qos2_in);
	}
	free(b.conns);
	event_free(b.deadline_ev);
	event_free(b.tick_ev);
	event_free(b.phase_ev);
	event_free(b.ping_ev);
	event_free(b.sigint_ev);
	event_base_free(b.base);
	SSL_CTX_free(b.ssl_ctx);
	free(b.hist);
	free(b.scratch);
	return rc;
}
