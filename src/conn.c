/*
 * Network connections. Reads go into one buffer the server shares, and
 * every whole packet in it is handled before the next read; only a packet
 * cut by the read boundary is kept per connection. Writes are appended to
 * a per-connection buffer and flushed once at the end of the loop pass, so
 * many packets leave in one system call; the buffer is freed once empty.
 * An idle connection thus holds its socket, one event and this struct.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "codec.h"
#include "server.h"
#include "util.h"

#define CONN_READ_SIZE (64 * 1024)
/* The pump stops above CONN_OUT_HIGH unwritten bytes and resumes below
 * CONN_OUT_LOW. */
#define CONN_OUT_HIGH (256 * 1024)
#define CONN_OUT_LOW  (64 * 1024)
/* The largest CONNECT: fixed header, variable header, five fields. */
#define CONN_MAX_CONNECT (5 + 12 + 5 * (2 + 65535))
/* How long a refused connection gets to flush its CONNACK. */
#define CONN_FLUSH_TIMEOUT_MS 5000
/* Period of the connect-timeout and keep-alive sweep. */
#define CONN_SWEEP_MS 250

/* Milliseconds on the monotonic clock: timeouts must not jump when the
 * wall clock is set. */
static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

/* Wait for what the connection needs now: input unless it is closing or
 * paused, and writability while output is left over from a flush. */
static void conn_update_events(struct conn *cn)
{
	short want = 0;
	if (!cn->reaped) {
		if (!cn->closing && !cn->paused)
			want |= EV_READ;
		if (cn->out && !cn->dirty)
			want |= EV_WRITE;
	}
	if (want == cn->events)
		return;
	if (cn->events)
		event_del(&cn->ev);
	cn->events = want;
	if (want) {
		event_assign(&cn->ev, cn->srv->base, cn->fd, want | EV_PERSIST, conn_io_cb, cn);
		event_add(&cn->ev, NULL);
	}
}

void conn_accept(struct server *srv, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
	(void)salen;
	struct conn *cn = xcalloc(1, sizeof(*cn));
	cn->srv = srv;
	cn->fd = fd;
	cn->gen = ++srv->conn_gen;
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(cn->addr, sizeof(cn->addr), "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(cn->addr, sizeof(cn->addr), "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(cn->addr, sizeof(cn->addr), "local");
	}
	evutil_make_socket_nonblocking(fd);
	cn->last_rx_ms = cn->since_ms = now_ms();
	cn->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = cn;
	srv->conns = cn;
	conn_update_events(cn);
	log_write(srv->log, LOG_LEVEL_DEBUG, "new connection from %s", cn->addr);
}

void conn_free(struct conn *cn)
{
	struct server *srv = cn->srv;
	if (cn->events)
		event_del(&cn->ev);
	if (cn->prev)
		cn->prev->next = cn->next;
	else if (srv->conns == cn)
		srv->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	if (cn->dirty) {
		for (struct conn **pp = &srv->dirty; *pp; pp = &(*pp)->next_dirty)
			if (*pp == cn) {
				*pp = cn->next_dirty;
				break;
			}
	}
	if (cn->out)
		evbuffer_free(cn->out);
	free(cn->in);
	evutil_closesocket(cn->fd);
	free(cn);
}

/* ---- output ---- */

struct evbuffer *conn_output(struct conn *cn)
{
	struct server *srv = cn->srv;
	if (!cn->out)
		cn->out = evbuffer_new();
	if (!cn->dirty) {
		cn->dirty = true;
		cn->next_dirty = srv->dirty;
		srv->dirty = cn;
		/* Runs after every callback already active in this pass. */
		event_active(srv->flush_ev, EV_TIMEOUT, 0);
	}
	return cn->out;
}

void conn_write(struct conn *cn, const void *bytes, size_t len)
{
	if (cn && !cn->closing)
		evbuffer_add(conn_output(cn), bytes, len);
}

bool conn_output_full(const struct conn *cn)
{
	return cn->out && evbuffer_get_length(cn->out) >= CONN_OUT_HIGH;
}

/* Write what the socket takes now. */
static void conn_flush(struct conn *cn)
{
	if (cn->reaped)
		return;
	while (cn->out && evbuffer_get_length(cn->out) > 0) {
		int n = evbuffer_write(cn->out, cn->fd);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EINTR))
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			if (cn->closing)
				server_reap(cn->srv, cn);
			else
				conn_close(cn, strerror(errno), true);
			return;
		}
		break;
	}
	size_t left = cn->out ? evbuffer_get_length(cn->out) : 0;
	if (cn->out && left == 0) {
		evbuffer_free(cn->out);
		cn->out = NULL;
	}
	if (cn->flushing && !cn->out) {
		server_reap(cn->srv, cn);
		return;
	}
	if (cn->want_pump && left < CONN_OUT_LOW && cn->client && !cn->closing) {
		cn->want_pump = false;
		client_pump(cn->client);
	}
	conn_update_events(cn);
}

static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct server *srv = arg;
	while (srv->dirty) {
		struct conn *cn = srv->dirty;
		srv->dirty = cn->next_dirty;
		cn->next_dirty = NULL;
		cn->dirty = false;
		conn_flush(cn);
	}
}

/* ---- closing ---- */

void conn_close(struct conn *cn, const char *reason, bool will_due)
{
	if (cn->closing)
		return;
	cn->closing = true;
	if (cn->connected || cn->client)
		log_write(cn->srv->log, LOG_LEVEL_NOTICE, "client %s disconnected from %s: %s",
			  cn->client ? cn->client->id : "?", cn->addr, reason);
	else
		log_write(cn->srv->log, LOG_LEVEL_NOTICE, "connection from %s closed: %s", cn->addr,
			  reason);
	client_connection_lost(cn, will_due);
	server_reap(cn->srv, cn);
}

void conn_close_after(struct conn *cn, const void *bytes, size_t len, const char *reason)
{
	if (cn->closing)
		return;
	evbuffer_add(conn_output(cn), bytes, len);
	log_write(cn->srv->log, LOG_LEVEL_NOTICE, "connection from %s refused: %s", cn->addr,
		  reason);
	cn->closing = true;
	cn->flushing = true;
	cn->since_ms = now_ms();
	conn_update_events(cn);
}

void conn_set_paused(struct conn *cn, bool paused)
{
	if (!cn || cn->closing || cn->paused == paused)
		return;
	cn->paused = paused;
	conn_update_events(cn);
	if (!paused && cn->in_len)
		event_active(&cn->ev, EV_READ, 0); /* handle what was read before the pause */
}

/* ---- input ---- */

static const char *codec_reason(int rc)
{
	switch (rc) {
	case CODEC_ETOOBIG:
		return "packet larger than max_packet_size";
	case CODEC_EPROTONAME:
		return "unknown protocol name";
	default:
		return "malformed packet";
	}
}

/* Handle every whole packet in buf; returns the bytes consumed. Stops at a
 * partial packet, or when the connection closes or pauses. */
static size_t conn_process(struct conn *cn, const uint8_t *buf, size_t len)
{
	struct server *srv = cn->srv;
	size_t off = 0;
	while (off < len && !cn->closing && !cn->paused) {
		const uint8_t *p = buf + off;
		size_t avail = len - off;
		if (!cn->connected && (p[0] >> 4) != CODEC_CONNECT) {
			conn_close(cn, "first packet is not CONNECT", false);
			break;
		}
		uint32_t limit = srv->cfg->max_packet_size;
		if (!cn->connected && limit > CONN_MAX_CONNECT)
			limit = CONN_MAX_CONNECT;
		struct codec_header h;
		int rc = codec_parse_header(p, avail < 5 ? avail : 5, limit, &h);
		if (rc == CODEC_EAGAIN)
			break;
		if (rc == CODEC_OK && (uint64_t)h.remaining + h.header_len > limit)
			rc = CODEC_ETOOBIG;
		if (rc != CODEC_OK) {
			conn_close(cn, codec_reason(rc), true);
			break;
		}
		size_t total = (size_t)h.header_len + h.remaining;
		if (avail < total)
			break;
		struct codec_packet pk;
		rc = codec_decode(p[0], p + h.header_len, h.remaining, &pk);
		if (rc == CODEC_EPROTOLEVEL && !cn->connected) {
			uint8_t refuse[CODEC_CONNACK_LEN];
			int n = codec_encode_connack(false, CODEC_CONNACK_BAD_PROTOCOL, refuse,
						     sizeof(refuse));
			assert(n == CODEC_CONNACK_LEN);
			conn_close_after(cn, refuse, (size_t)n, "unacceptable protocol version");
			break;
		}
		if (rc != CODEC_OK) {
			conn_close(cn, codec_reason(rc), true);
			break;
		}
		off += total;
		client_handle_packet(cn, &pk);
	}
	return off;
}

/* Keep the unconsumed tail of a read for the next one. */
static void conn_keep(struct conn *cn, const uint8_t *bytes, size_t len)
{
	if (cn->in_len + len > cn->in_cap) {
		size_t cap = cn->in_cap ? cn->in_cap : 256;
		while (cap < cn->in_len + len)
			cap *= 2;
		cn->in = xrealloc(cn->in, cap);
		cn->in_cap = (uint32_t)cap;
	}
	memcpy(cn->in + cn->in_len, bytes, len);
	cn->in_len += (uint32_t)len;
}

static void conn_consume_kept(struct conn *cn)
{
	size_t used = conn_process(cn, cn->in, cn->in_len);
	if (cn->reaped)
		return;
	cn->in_len -= (uint32_t)used;
	if (cn->in_len == 0) {
		free(cn->in);
		cn->in = NULL;
		cn->in_cap = 0;
	} else if (used) {
		memmove(cn->in, cn->in + used, cn->in_len);
	}
}

static void conn_readable(struct conn *cn)
{
	struct server *srv = cn->srv;
	if (cn->in_len) {
		conn_consume_kept(cn); /* input held back by a pause */
		if (cn->closing || cn->paused)
			return;
	}
	ssize_t n = recv(cn->fd, srv->rbuf, CONN_READ_SIZE, 0);
	if (n == 0) {
		conn_close(cn, "connection closed by peer", true);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(cn, strerror(errno), true);
		return;
	}
	cn->last_rx_ms = now_ms();
	if (cn->in_len) {
		conn_keep(cn, srv->rbuf, (size_t)n);
		conn_consume_kept(cn);
		return;
	}
	size_t used = conn_process(cn, srv->rbuf, (size_t)n);
	if (used < (size_t)n && !cn->closing)
		conn_keep(cn, srv->rbuf + used, (size_t)n - used);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct conn *cn = arg;
	if (what & EV_WRITE)
		conn_flush(cn);
	if ((what & EV_READ) && !cn->closing && !cn->reaped)
		conn_readable(cn);
}

/* ---- timeouts ---- */

static void conn_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct server *srv = arg;
	uint64_t now = now_ms();
	struct conn *next;
	for (struct conn *cn = srv->conns; cn; cn = next) {
		next = cn->next;
		if (cn->reaped)
			continue;
		if (cn->flushing) {
			if (now - cn->since_ms >= CONN_FLUSH_TIMEOUT_MS)
				server_reap(srv, cn);
		} else if (cn->closing) {
			continue;
		} else if (!cn->connected) {
			if (now - cn->since_ms >= (uint64_t)srv->cfg->connect_timeout * 1000)
				conn_close(cn, "no CONNECT within connect_timeout", false);
		} else if (cn->keepalive &&
			   now - cn->last_rx_ms >= (uint64_t)cn->keepalive * 1500) {
			conn_close(cn, "keep-alive timeout", true);
		}
	}
}

int conn_server_init(struct server *srv)
{
	srv->rbuf = xmalloc(CONN_READ_SIZE);
	srv->flush_ev = event_new(srv->base, -1, 0, conn_flush_cb, srv);
	srv->sweep_ev = event_new(srv->base, -1, EV_PERSIST, conn_sweep_cb, srv);
	if (!srv->flush_ev || !srv->sweep_ev)
		return -1;
	struct timeval tv = {0, CONN_SWEEP_MS * 1000};
	return event_add(srv->sweep_ev, &tv);
}

void conn_server_cleanup(struct server *srv)
{
	while (srv->conns) {
		struct conn *cn = srv->conns;
		if (!cn->reaped && cn->client)
			client_connection_lost(cn, false);
		conn_free(cn);
	}
	srv->dirty = NULL;
	if (srv->flush_ev)
		event_free(srv->flush_ev);
	if (srv->sweep_ev)
		event_free(srv->sweep_ev);
	free(srv->rbuf);
}
