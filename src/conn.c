/*
 * Network connections. Reads go into one buffer the set shares, and every
 * whole packet in it is handled before the next read; only a packet cut by
 * the read boundary is kept per connection. Writes are appended to a
 * per-connection buffer and flushed once at the end of the loop pass, so
 * many packets leave in one system call; the buffer is freed once empty.
 * An idle connection thus holds its socket, one event and this struct.
 *
 * A connection's life is one state machine:
 *
 *   HANDSHAKE (TLS listeners only)
 *        |
 *   AWAIT_CONNECT --conn_accepted--> ACTIVE <--conn_set_paused--> PAUSED
 *        |                             |                            |
 *        +------- conn_refuse ----> LINGER (last packet flushing)   |
 *        |                             |                            |
 *        +------- conn_close ------> CLOSED <-----------------------+
 *
 * CLOSED connections wait on the reap list and are freed from the loop,
 * never inside the callback that closed them.
 *
 * TLS is a second transport under the same machine: conn_recv and
 * conn_send drive OpenSSL's SSL_read and SSL_write on the socket's own
 * events (SSL_read may need the socket writable, and bytes OpenSSL has
 * already decrypted are read without waiting for the socket again).
 */
#include "conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define CONN_READ_SIZE (64 * 1024)
/* What a paused connection whose peer left may have sent, read to look
 * for its DISCONNECT; past this it counts as sent without one. */
#define CONN_PEER_GONE_SCAN (1024 * 1024)
/* What a connection whose session another node took may have sent before
 * its client connected there, read to look for its DISCONNECT (whatever
 * its output holds); past this it counts as sent without one. */
#define CONN_TAKEN_SCAN (8 * 1024 * 1024)
/* Above CONN_OUT_HIGH unwritten bytes the connection stops being read and
 * its owner stops writing; both resume once the output is below
 * CONN_OUT_LOW. A peer that does not read thus holds at most the mark plus
 * the replies to one read's packets. */
#define CONN_OUT_HIGH (256 * 1024)
#define CONN_OUT_LOW  (64 * 1024)
/* Output that waits this long without a byte taken by the socket closes
 * the connection: the peer has stopped reading. */
#define CONN_STALL_MS 60000
/* The largest CONNECT: fixed header, variable header, five fields. */
#define CONN_MAX_CONNECT (5 + 12 + 5 * (2 + 65535))
/* How long a refused connection gets to flush its last packet. */
#define CONN_LINGER_MS 5000
/* Period of the connect-timeout, keep-alive and linger sweep. */
#define CONN_SWEEP_MS 250
/* How long the listeners rest after accept() ran out of descriptors. */
#define CONN_ACCEPT_REST_MS 500
/* A connection whose read held at least CONN_REST_PACKETS QoS 0
 * PUBLISHes and nothing else (CONN_REST_ON after a rest: some 64,000
 * a second) is not read again for CONN_REST_US (conn_rest_if_streaming);
 * epoll_wait's timeout counts in milliseconds. */
#define CONN_REST_PACKETS 32
#define CONN_REST_ON      64
#define CONN_REST_US      1000
/* Bytes handed to one SSL_write: one full TLS record. */
#define CONN_TLS_RECORD (16 * 1024)

enum conn_state {
	CONN_HANDSHAKE,     /* TLS handshake in progress */
	CONN_AWAIT_CONNECT, /* accepted; only a CONNECT may arrive */
	CONN_ACTIVE,        /* CONNECT accepted */
	CONN_PAUSED,        /* active, but not read (the store is failing) */
	CONN_LINGER,        /* closed for input; the last packet is flushing */
	CONN_CLOSED,        /* on the reap list */
};

/* One listening socket, and the connections it accepted. */
struct conn_listener {
	struct conn_set *set;
	const struct config_listener *cl; /* borrowed from the config */
	struct evconnlistener *evl;
	SSL_CTX *tls;    /* NULL: plain MQTT; replaced by conn_set_reload_tls */
	uint32_t nconns; /* accepted and not yet freed */
};

struct conn {
	struct event ev; /* read, and write while output waits */
	struct conn_set *set;
	struct conn_listener *lis; /* NULL for a socket handed to conn_accept */
	void *owner;
	struct conn *prev, *next; /* every connection of the set */
	struct conn *next_dirty;  /* output to flush at the end of this pass */
	struct conn *next_reap;   /* CLOSED, waiting to be freed */
	struct evbuffer *out;     /* NULL when nothing waits to be written */
	SSL *ssl;                 /* NULL on a plain connection */
	char *tls_username;       /* from the client certificate, or NULL */
	uint32_t tls_wlen;        /* an SSL_write to retry with at least this */
	short tls_want;           /* the event OpenSSL waits for (handshake, read) */
	uint8_t *in;              /* a partial packet carried between reads */
	uint32_t in_len, in_cap;
	evutil_socket_t fd;
	uint64_t id;
	uint64_t accepted_ms;
	uint64_t last_rx_ms; /* keep-alive: last time anything arrived */
	uint64_t linger_ms;  /* entered LINGER at */
	uint64_t last_tx_ms; /* output waits: last progress, or when it began */
	uint16_t keepalive;
	uint8_t version; /* enum codec_version: 4 until a CONNECT names another */
	enum conn_state state;
	short events; /* what ev waits for now */
	bool dirty;   /* on the set's flush list */
	bool full;    /* output above the high mark: not read, owner waits */
	bool ack_due; /* acknowledge the next read without a reply now (conn_ack_now) */
	char addr[48];
	void *auth;                 /* the upper layer's enhanced authentication, or NULL */
	void (*auth_free)(void *);  /* releases auth when the connection is freed */
	unsigned corked;            /* output is kept while corks are on (conn_set_corked) */
	void *hold;                 /* the upper layer waits on this: nothing is read */
	void (*hold_gone)(void *);  /* tells it the connection is gone */
	const uint8_t *pkt;         /* the packet the packet hook is handling, or NULL */
	uint32_t pkt_hlen, pkt_len; /* its fixed header's and body's lengths */
	bool resting;               /* not read until CONN_REST_US have passed */
	bool rested;                /* the current read follows a rest */
	uint32_t nread, nread_q0;   /* packets of the current read, QoS 0 PUBLISHes among them */
};

struct conn_set {
	struct event_base *base;
	const struct config *cfg;
	struct log *log;
	struct conn_hooks hooks;
	void *arg;
	struct conn_listener **listeners;
	size_t nlisteners;
	struct conn *conns; /* every connection not yet freed */
	struct conn *dirty; /* with output to flush at the end of the pass */
	struct conn *reap;  /* CLOSED, to free from the loop */
	struct event *flush_ev;
	struct event *reap_ev;
	struct event *sweep_ev;
	struct util_accept_rest rest; /* after accept() ran out of descriptors */
	uint8_t *rbuf;                /* the shared read buffer */
	uint64_t next_id;
	bool stopping;
	struct conn_stats stats;
};

/* Milliseconds on the monotonic clock: timeouts must not jump when the
 * wall clock is set. */
static uint64_t conn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

/* True while packets may be read and handled: the state allows it and the
 * peer takes its replies. */
static bool conn_may_read(const struct conn *cn)
{
	return (cn->state == CONN_AWAIT_CONNECT || cn->state == CONN_ACTIVE) && !cn->full &&
	       !cn->hold;
}

/* Input already taken from the socket: a partial packet kept from an
 * earlier read, or bytes OpenSSL decrypted and holds. The socket will not
 * signal them again, so whoever resumes reading must. */
static bool conn_has_buffered_input(const struct conn *cn)
{
	return cn->in_len || (cn->ssl && SSL_has_pending(cn->ssl));
}

/* Wait for what the connection needs in its state: input while it may be
 * read, and writability while output is left over from a flush. */
static void conn_update_events(struct conn *cn)
{
	short want = 0;
	if (cn->state == CONN_HANDSHAKE)
		want |= cn->tls_want;
	else if (conn_may_read(cn))
		want |= cn->resting ? EV_TIMEOUT : EV_READ | cn->tls_want;
	else if (cn->state == CONN_PAUSED)
		want |= EV_CLOSED; /* not read, but a peer that leaves is seen */
	if (cn->state != CONN_CLOSED && cn->out && !cn->dirty && !cn->corked)
		want |= EV_WRITE;
	if (want == cn->events)
		return;
	if (cn->events)
		event_del(&cn->ev);
	cn->events = want;
	if (want) {
		event_assign(&cn->ev, cn->set->base, cn->fd, (want & ~EV_TIMEOUT) | EV_PERSIST,
			     conn_io_cb, cn);
		static const struct timeval rest = {0, CONN_REST_US};
		event_add(&cn->ev, (want & EV_TIMEOUT) ? &rest : NULL);
	}
}

/* The one place a connection changes state. */
static void conn_set_state(struct conn *cn, enum conn_state to)
{
	struct conn_set *set = cn->set;
	switch (to) {
	case CONN_HANDSHAKE:
		assert(!"a connection never returns to HANDSHAKE");
		break;
	case CONN_AWAIT_CONNECT:
		assert(cn->state == CONN_HANDSHAKE);
		break;
	case CONN_ACTIVE:
		assert(cn->state == CONN_AWAIT_CONNECT || cn->state == CONN_PAUSED);
		break;
	case CONN_PAUSED:
		assert(cn->state == CONN_ACTIVE);
		break;
	case CONN_LINGER:
		assert(cn->state == CONN_AWAIT_CONNECT || cn->state == CONN_ACTIVE ||
		       cn->state == CONN_PAUSED);
		cn->linger_ms = conn_now_ms();
		cn->corked = 0; /* the last packets go out */
		break;
	case CONN_CLOSED:
		assert(cn->state != CONN_CLOSED);
		cn->next_reap = set->reap;
		set->reap = cn;
		event_active(set->reap_ev, EV_TIMEOUT, 0);
		break;
	}
	cn->state = to;
	conn_update_events(cn);
}

static bool conn_closing(const struct conn *cn)
{
	return cn->state == CONN_LINGER || cn->state == CONN_CLOSED;
}

/* ---- accessors ---- */

void *conn_owner(const struct conn *cn)
{
	return cn->owner;
}

void conn_set_owner(struct conn *cn, void *owner)
{
	cn->owner = owner;
}

void conn_ack_soon(struct conn *cn)
{
	cn->ack_due = true;
}

void conn_accepted(struct conn *cn, uint16_t keepalive)
{
	cn->keepalive = keepalive;
	cn->ack_due = true;
	conn_set_state(cn, CONN_ACTIVE);
}

void conn_set_auth(struct conn *cn, void *auth, void (*free_fn)(void *))
{
	assert(!cn->auth);
	cn->auth = auth;
	cn->auth_free = free_fn;
}

void *conn_auth(const struct conn *cn)
{
	return cn->auth;
}

void conn_set_corked(struct conn *cn, bool corked)
{
	if (corked) {
		cn->corked++;
	} else {
		if (cn->corked == 0 || --cn->corked > 0)
			return;
		if (cn->out && evbuffer_get_length(cn->out) > 0)
			conn_output(cn); /* on the flush list again */
	}
	conn_update_events(cn);
}

void conn_drop_corked(struct conn *cn)
{
	if (cn->corked == 0 || cn->out == NULL || conn_closing(cn))
		return;
	evbuffer_drain(cn->out, evbuffer_get_length(cn->out));
}

void conn_set_hold(struct conn *cn, void *hold, void (*gone)(void *))
{
	assert(!cn->hold && hold);
	cn->hold = hold;
	cn->hold_gone = gone;
	conn_update_events(cn);
}

void conn_release_hold(struct conn *cn)
{
	cn->hold = NULL;
	cn->hold_gone = NULL;
	conn_update_events(cn);
	if (conn_has_buffered_input(cn) && conn_may_read(cn)) /* read during the hold */
		event_active(&cn->ev, EV_READ, 0);
}

bool conn_packet_bytes(const struct conn *cn, uint8_t *hdr, const uint8_t **body, size_t *len)
{
	if (!cn->pkt)
		return false;
	*hdr = cn->pkt[0];
	*body = cn->pkt + cn->pkt_hlen;
	*len = cn->pkt_len;
	return true;
}

uint8_t conn_version(const struct conn *cn)
{
	return cn->version;
}

bool conn_is_open(const struct conn *cn)
{
	return cn->state == CONN_ACTIVE || cn->state == CONN_PAUSED;
}

const char *conn_addr(const struct conn *cn)
{
	return cn->addr;
}

uint64_t conn_id(const struct conn *cn)
{
	return cn->id;
}

uint64_t conn_accepted_at(const struct conn *cn)
{
	return cn->accepted_ms;
}

const struct config_listener *conn_listener(const struct conn *cn)
{
	return cn->lis ? cn->lis->cl : NULL;
}

const char *conn_tls_username(const struct conn *cn)
{
	return cn->tls_username;
}

/* ---- accept and free ---- */

static void conn_format_addr(char *buf, size_t len, const struct sockaddr *sa)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "local");
	}
}

static struct conn *conn_new(struct conn_set *set, struct conn_listener *lis, int fd,
			     const struct sockaddr *sa)
{
	struct conn *cn = xcalloc(1, sizeof(*cn));
	cn->set = set;
	cn->lis = lis;
	if (lis)
		lis->nconns++;
	cn->fd = fd;
	cn->id = ++set->next_id;
	set->stats.current++;
	set->stats.accepted++;
	cn->state = CONN_AWAIT_CONNECT;
	cn->version = CODEC_V311;
	if (lis && lis->tls) {
		/* The client speaks first: wait for its ClientHello. */
		cn->ssl = SSL_new(lis->tls);
		if (cn->ssl)
			SSL_set_fd(cn->ssl, fd);
		cn->state = CONN_HANDSHAKE;
		cn->tls_want = EV_READ;
	}
	conn_format_addr(cn->addr, sizeof(cn->addr), sa);
	evutil_make_socket_nonblocking(fd);
	cn->last_rx_ms = cn->accepted_ms = conn_now_ms();
	cn->next = set->conns;
	if (set->conns)
		set->conns->prev = cn;
	set->conns = cn;
	conn_update_events(cn);
	log_write(set->log, LOG_LEVEL_DEBUG, "new connection from %s", cn->addr);
	if (cn->state == CONN_HANDSHAKE && !cn->ssl)
		conn_close(cn, "cannot set up TLS (out of memory)", false);
	else if (cn->ssl)
		SSL_set_accept_state(cn->ssl);
	return cn;
}

void conn_accept(struct conn_set *set, int fd, const struct sockaddr *sa, int salen)
{
	(void)salen;
	conn_new(set, NULL, fd, sa);
}

static void conn_free(struct conn *cn)
{
	struct conn_set *set = cn->set;
	if (cn->events)
		event_del(&cn->ev);
	if (cn->prev)
		cn->prev->next = cn->next;
	else if (set->conns == cn)
		set->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	if (cn->dirty) {
		for (struct conn **pp = &set->dirty; *pp; pp = &(*pp)->next_dirty)
			if (*pp == cn) {
				*pp = cn->next_dirty;
				break;
			}
	}
	if (cn->out)
		evbuffer_free(cn->out);
	if (cn->ssl) {
		/* A close_notify if the socket takes it now; nobody waits for
		 * the answer. */
		if (SSL_is_init_finished(cn->ssl))
			SSL_shutdown(cn->ssl);
		SSL_free(cn->ssl);
		ERR_clear_error();
	}
	free(cn->tls_username);
	if (cn->auth_free)
		cn->auth_free(cn->auth);
	if (cn->hold && cn->hold_gone)
		cn->hold_gone(cn->hold);
	if (cn->lis)
		cn->lis->nconns--;
	set->stats.current--;
	free(cn->in);
	evutil_closesocket(cn->fd);
	free(cn);
}

static void conn_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn_set *set = arg;
	while (set->reap) {
		struct conn *cn = set->reap;
		set->reap = cn->next_reap;
		conn_free(cn);
	}
}

/* ---- output ---- */

struct evbuffer *conn_output(struct conn *cn)
{
	struct conn_set *set = cn->set;
	if (!cn->out) {
		cn->out = evbuffer_new();
		cn->last_tx_ms = conn_now_ms();
	}
	if (!cn->dirty) {
		cn->dirty = true;
		cn->next_dirty = set->dirty;
		set->dirty = cn;
		/* Runs after every callback already active in this pass. */
		event_active(set->flush_ev, EV_TIMEOUT, 0);
	}
	return cn->out;
}

void conn_write(struct conn *cn, const void *bytes, size_t len)
{
	if (cn && !conn_closing(cn))
		evbuffer_add(conn_output(cn), bytes, len);
}

bool conn_output_full(struct conn *cn)
{
	if (!cn->full && cn->out && evbuffer_get_length(cn->out) >= CONN_OUT_HIGH)
		cn->full = true; /* reading stops at the next event update */
	return cn->full;
}

/*
 * What an SSL_read or SSL_write that returned rc means: SSL_get_error's
 * code. When the connection is broken (neither a WANT_ nor the peer's
 * orderly close), why receives the errno or OpenSSL's reason, else it is
 * left as it was.
 */
static int conn_tls_error(struct conn *cn, int rc, char *why, size_t whylen, const char *what)
{
	int err = SSL_get_error(cn->ssl, rc);
	switch (err) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
	case SSL_ERROR_ZERO_RETURN:
		break;
	case SSL_ERROR_SYSCALL:
		if (errno) {
			snprintf(why, whylen, "%s", strerror(errno));
			break;
		}
		/* fall through */
	default:
		tls_error_reason(why, whylen, what);
		break;
	}
	return err;
}

/*
 * Write from the output to the socket once: returns the bytes the socket
 * (or OpenSSL) took, 0 when it takes nothing now, or -1 with the reason in
 * why when the connection is broken. A TLS write goes one record at a
 * time from the front of the output; one that must be retried is retried
 * with at least the same bytes, which stay in place until it succeeds.
 */
static int conn_send(struct conn *cn, char *why, size_t whylen)
{
	if (!cn->ssl) {
		int n;
		do
			n = evbuffer_write(cn->out, cn->fd);
		while (n < 0 && errno == EINTR);
		if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK)
			return n > 0 ? n : 0;
		snprintf(why, whylen, "%s", strerror(errno));
		return -1;
	}
	size_t have = evbuffer_get_length(cn->out);
	size_t len = have < CONN_TLS_RECORD ? have : CONN_TLS_RECORD;
	assert(len >= cn->tls_wlen); /* the output only grows between tries */
	unsigned char *p = evbuffer_pullup(cn->out, (ev_ssize_t)len);
	ERR_clear_error();
	int n = SSL_write(cn->ssl, p, (int)len);
	if (n > 0) {
		evbuffer_drain(cn->out, (size_t)n);
		cn->tls_wlen = 0;
		return n;
	}
	snprintf(why, whylen, "TLS session closed by peer");
	switch (conn_tls_error(cn, n, why, whylen, "TLS write failed")) {
	case SSL_ERROR_WANT_WRITE:
	case SSL_ERROR_WANT_READ:
		cn->tls_wlen = (uint32_t)len;
		return 0;
	default:
		return -1;
	}
}

/* Write what the socket takes now. */
static void conn_flush(struct conn *cn)
{
	if (cn->state == CONN_CLOSED || cn->corked)
		return;
	while (cn->out && evbuffer_get_length(cn->out) > 0) {
		char why[256];
		int n = conn_send(cn, why, sizeof(why));
		if (n > 0) {
			cn->set->stats.bytes_out += (uint64_t)n;
			cn->last_tx_ms = conn_now_ms();
			continue;
		}
		if (n < 0) {
			if (cn->state == CONN_LINGER)
				conn_set_state(cn, CONN_CLOSED);
			else
				conn_close(cn, why, true);
			return;
		}
		break;
	}
	size_t left = cn->out ? evbuffer_get_length(cn->out) : 0;
	if (cn->out && left == 0) {
		evbuffer_free(cn->out);
		cn->out = NULL;
	}
	if (cn->state == CONN_LINGER && !cn->out) {
		conn_set_state(cn, CONN_CLOSED);
		return;
	}
	if (cn->full && left < CONN_OUT_LOW) {
		cn->full = false;
		conn_update_events(cn);
		if (conn_has_buffered_input(cn) && conn_may_read(cn)) /* read before the stop */
			event_active(&cn->ev, EV_READ, 0);
		if (conn_is_open(cn))
			cn->set->hooks.drained(cn->set->arg, cn);
		return;
	}
	conn_update_events(cn);
}

static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn_set *set = arg;
	while (set->dirty) {
		struct conn *cn = set->dirty;
		set->dirty = cn->next_dirty;
		cn->next_dirty = NULL;
		cn->dirty = false;
		conn_flush(cn);
	}
}

/* ---- closing ---- */

void conn_close(struct conn *cn, const char *reason, bool will_due)
{
	if (conn_closing(cn))
		return;
	if (!cn->owner)
		log_write(cn->set->log, LOG_LEVEL_NOTICE, "connection from %s closed: %s", cn->addr,
			  reason);
	conn_set_state(cn, CONN_CLOSED);
	cn->set->hooks.closed(cn->set->arg, cn, reason, will_due);
}

void conn_disconnect(struct conn *cn, uint8_t code, const char *reason, bool will_due)
{
	if (conn_closing(cn))
		return;
	uint8_t b[8];
	int n = -1;
	if (cn->version == CODEC_V5 && conn_is_open(cn))
		n = codec_v5_encode_disconnect(code, NULL, 0, b, sizeof(b));
	if (n <= 0) {
		conn_close(cn, reason, will_due);
		return;
	}
	/* The DISCONNECT is the last packet: nothing more is read, and the
	 * socket closes once it is out (or after the linger bound). */
	evbuffer_add(conn_output(cn), b, (size_t)n);
	if (!cn->owner)
		log_write(cn->set->log, LOG_LEVEL_NOTICE, "connection from %s closed: %s", cn->addr,
			  reason);
	conn_set_state(cn, CONN_LINGER);
	cn->set->hooks.closed(cn->set->arg, cn, reason, will_due);
}

/* The reason of a refusing CONNACK: its return code (3.1.1) or reason
 * code (5.0) is its fourth byte, the remaining length taking one. */
static enum conn_refusal conn_refusal_of(const void *bytes, size_t len)
{
	if (len < 4)
		return CONN_REFUSED_OTHER;
	switch (((const uint8_t *)bytes)[3]) {
	case 1:
	case 0x84:
		return CONN_REFUSED_PROTOCOL;
	case 2:
	case 0x85:
		return CONN_REFUSED_IDENTIFIER;
	case 3:
	case 0x88:
	case 0x89:
		return CONN_REFUSED_UNAVAILABLE;
	case 4:
	case 0x86:
		return CONN_REFUSED_CREDENTIALS;
	case 5:
	case 0x87:
		return CONN_REFUSED_NOT_AUTHORIZED;
	default:
		return CONN_REFUSED_OTHER;
	}
}

const char *conn_refusal_name(enum conn_refusal r)
{
	static const char *names[CONN_REFUSED_COUNT] = {"max_connections",
							"protocol_version",
							"identifier_rejected",
							"server_unavailable",
							"bad_credentials",
							"not_authorized",
							"other"};
	return r < CONN_REFUSED_COUNT ? names[r] : "other";
}

const struct conn_stats *conn_set_stats(const struct conn_set *set)
{
	return &set->stats;
}

bool conn_set_listening(const struct conn_set *set)
{
	size_t n = 0;
	for (const struct config_listener *cl = set->cfg->listeners; cl; cl = cl->next)
		n++;
	return !set->stopping && set->nlisteners >= n;
}

void conn_refuse(struct conn *cn, const void *bytes, size_t len, const char *reason)
{
	if (conn_closing(cn))
		return;
	evbuffer_add(conn_output(cn), bytes, len);
	cn->set->stats.refused[conn_refusal_of(bytes, len)]++;
	log_write(cn->set->log, LOG_LEVEL_NOTICE, "connection from %s refused: %s", cn->addr,
		  reason);
	conn_set_state(cn, CONN_LINGER);
	cn->set->hooks.closed(cn->set->arg, cn, reason, false);
}

void conn_set_paused(struct conn *cn, bool paused)
{
	if (paused && cn->state == CONN_ACTIVE) {
		conn_set_state(cn, CONN_PAUSED);
	} else if (!paused && cn->state == CONN_PAUSED) {
		conn_set_state(cn, CONN_ACTIVE);
		if (conn_has_buffered_input(cn) && conn_may_read(cn)) /* read before the pause */
			event_active(&cn->ev, EV_READ, 0);
	}
}

/* ---- input ---- */

static const char *conn_codec_reason(int rc)
{
	switch (rc) {
	case CODEC_ETOOBIG:
		return "packet larger than max_packet_size";
	case CODEC_EPROTONAME:
		return "unknown protocol name";
	case CODEC_EPROTOCOL:
		return "protocol error";
	default:
		return "malformed packet";
	}
}

/* The 5.0 reason code of a decode error. */
static uint8_t conn_codec_code(int rc)
{
	switch (rc) {
	case CODEC_ETOOBIG:
		return CONN_RC_PACKET_TOO_LARGE;
	case CODEC_EPROTOCOL:
		return CODEC_RC_PROTOCOL_ERROR;
	default:
		return CODEC_RC_MALFORMED;
	}
}

/* A 5.0 CONNECT that does not decode is answered with a CONNACK carrying
 * the reason before the close [MQTT5-4.13.1-1]. */
static void conn_refuse_connect5(struct conn *cn, int rc)
{
	uint8_t b[8];
	int n = codec_v5_encode_connack(false, conn_codec_code(rc), NULL, 0, b, sizeof(b));
	assert(n > 0);
	conn_refuse(cn, b, (size_t)n, conn_codec_reason(rc));
}

/* Handle every whole packet in buf; returns the bytes consumed. Stops at a
 * partial packet, or when the connection closes or pauses (the rest is
 * kept for when it resumes). */
static size_t conn_process(struct conn *cn, const uint8_t *buf, size_t len)
{
	struct conn_set *set = cn->set;
	size_t off = 0;
	while (off < len && conn_may_read(cn)) {
		const uint8_t *p = buf + off;
		size_t avail = len - off;
		/* With an enhanced authentication exchange under way, AUTH
		 * packets (and whatever else the client sends, which the
		 * protocol refuses) come before conn_accepted(). */
		bool first = cn->state == CONN_AWAIT_CONNECT && !cn->auth;
		if (first && (p[0] >> 4) != CODEC_CONNECT) {
			conn_close(cn, "first packet is not CONNECT", false);
			break;
		}
		uint32_t limit = set->cfg->max_packet_size;
		if (first && limit > CONN_MAX_CONNECT)
			limit = CONN_MAX_CONNECT;
		struct codec_header h;
		int rc = codec_parse_header_v(cn->version, p, avail < 5 ? avail : 5, limit, &h);
		if (rc == CODEC_EAGAIN)
			break;
		if (rc == CODEC_OK && (uint64_t)h.remaining + h.header_len > limit)
			rc = CODEC_ETOOBIG;
		if (rc != CODEC_OK) {
			conn_disconnect(cn, conn_codec_code(rc), conn_codec_reason(rc), true);
			break;
		}
		size_t total = (size_t)h.header_len + h.remaining;
		if (avail < total)
			break;
		uint8_t level;
		if (first &&
		    codec_connect_level(p + h.header_len, h.remaining, &level) == CODEC_OK &&
		    level == CODEC_V5)
			cn->version = CODEC_V5; /* the connection speaks 5.0 from here on */
		struct codec_packet pk;
		rc = codec_decode_v(cn->version, p[0], p + h.header_len, h.remaining, &pk);
		if (cn->state == CONN_AWAIT_CONNECT && cn->version == CODEC_V5 && rc != CODEC_OK &&
		    rc != CODEC_EPROTONAME) {
			conn_refuse_connect5(cn, rc);
			break;
		}
		if (rc == CODEC_EPROTOLEVEL && first) {
			uint8_t refuse[CODEC_CONNACK_LEN];
			int n = codec_encode_connack(false, CODEC_CONNACK_BAD_PROTOCOL, refuse,
						     sizeof(refuse));
			assert(n == CODEC_CONNACK_LEN);
			conn_refuse(cn, refuse, (size_t)n, "unacceptable protocol version");
			break;
		}
		if (rc != CODEC_OK) {
			conn_disconnect(cn, conn_codec_code(rc), conn_codec_reason(rc), true);
			break;
		}
		off += total;
		cn->pkt = p;
		cn->pkt_hlen = (uint32_t)h.header_len;
		cn->pkt_len = h.remaining;
		cn->nread++;
		if ((p[0] >> 4) == CODEC_PUBLISH && (p[0] & 0x06) == 0)
			cn->nread_q0++;
		set->hooks.packet(set->arg, cn, &pk);
		cn->pkt = NULL;
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
	if (cn->state == CONN_CLOSED)
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

/*
 * Read into buf: returns the bytes read, 0 at the end of the stream, or -1
 * with why empty when nothing waits now (OpenSSL may then wait for the
 * socket to be writable: tls_want) or naming what broke.
 */
static ssize_t conn_recv(struct conn *cn, uint8_t *buf, size_t len, char *why, size_t whylen)
{
	why[0] = '\0';
	if (!cn->ssl) {
		ssize_t n = recv(cn->fd, buf, len, 0);
		if (n > 0)
			cn->set->stats.bytes_in += (uint64_t)n;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			snprintf(why, whylen, "%s", strerror(errno));
		return n;
	}
	ERR_clear_error();
	cn->tls_want = 0;
	int n = SSL_read(cn->ssl, buf, (int)len);
	if (n > 0) {
		cn->set->stats.bytes_in += (uint64_t)n;
		return n;
	}
	switch (conn_tls_error(cn, n, why, whylen, "TLS read failed")) {
	case SSL_ERROR_WANT_WRITE:
		cn->tls_want = EV_WRITE;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default: /* WANT_READ (why stays empty) or broken */
		return -1;
	}
}

/*
 * The first packet after the CONNACK that gets no reply (a QoS 0 publisher's
 * PUBLISH) is acknowledged at once. Having just answered, the kernel thinks
 * the exchange interactive and delays that ACK (40 ms) to piggyback it on a
 * reply that never comes; a client that leaves Nagle on, as libmosquitto
 * does, holds every later packet until then. TCP_QUICKACK leaves that mode
 * and sends the ACK; later packets are acknowledged as they come, so it is
 * one system call per connection. Packets that get a reply carry the ACK
 * with it and need nothing. The same goes for a packet whose reply waits
 * while the store gathers a batch (conn_ack_soon, from gate.c): the
 * client's next packets are what the batch waits for.
 */
static void conn_ack_now(struct conn *cn)
{
	if (!cn->ack_due || cn->dirty || !conn_is_open(cn))
		return;
	cn->ack_due = false;
#ifdef TCP_QUICKACK
	int one = 1;
	setsockopt(cn->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#endif
}

/*
 * A read that held nothing but QoS 0 PUBLISHes, CONN_REST_PACKETS or more
 * of them, is from a publisher that streams and waits for nothing from
 * the broker. Such a connection rests: it is not read again for
 * CONN_REST_US, and its packets gather in the socket meanwhile. Read at
 * once instead, it would make the broker sleep and wake, read, and write
 * the deliveries once per few packets: a client that writes one packet
 * per system call with Nagle on (libmosquitto) sends its next few packets
 * as soon as the read's ACK comes back, and the sleep, the wake-up, the
 * read and the write of each loop pass cost the broker about 20 us on a
 * virtual machine, several times what handling the packets themselves
 * does. A rest makes every pass carry the packets of a millisecond.
 *
 * It goes on only while a millisecond brings CONN_REST_ON packets or
 * more: a client at a moderate rate whose packets bunched up (a
 * publishing thread woken late) rests once, not on and on, each rest
 * gathering enough for the next. A read that filled the read buffer does
 * not rest: more is waiting, and resting would leave a backlog (latency)
 * in the socket; the next pass reads on until the connection has caught
 * up. A packet that gets a reply (QoS 1 and 2, PINGREQ, SUBSCRIBE) or a
 * read of a few packets is read again as soon as more arrives, so nobody
 * waiting for an answer waits longer, and a rest only lowers a
 * connection's share of the loop, never raises it.
 */
static void conn_rest_if_streaming(struct conn *cn, size_t n)
{
	uint32_t min = cn->rested ? CONN_REST_ON : CONN_REST_PACKETS;
	cn->rested = false;
	if (cn->nread >= min && cn->nread_q0 == cn->nread && n < CONN_READ_SIZE &&
	    cn->state == CONN_ACTIVE && !cn->out)
		cn->resting = true;
}

/*
 * Read once and handle every whole packet read. The output's high-water
 * mark is looked at once per read, not per packet: the replies to one
 * read's packets are a bounded multiple of its 64 KiB, so a peer that
 * does not read still holds at most the mark plus that.
 */
static void conn_readable(struct conn *cn)
{
	struct conn_set *set = cn->set;
	if (cn->resting) { /* read before the rest ran out (a pause ended, say) */
		cn->resting = false;
		cn->rested = true;
	}
	if (conn_output_full(cn)) {
		conn_update_events(cn);
		return;
	}
	if (cn->in_len) {
		conn_consume_kept(cn); /* input held back by a pause */
		if (!conn_may_read(cn) || conn_output_full(cn)) {
			conn_update_events(cn);
			return;
		}
	}
	char why[256];
	ssize_t n = conn_recv(cn, set->rbuf, CONN_READ_SIZE, why, sizeof(why));
	if (n == 0) {
		conn_close(cn, "connection closed by peer", true);
		return;
	}
	if (n < 0) {
		if (why[0])
			conn_close(cn, why, true);
		else
			conn_update_events(cn); /* OpenSSL may wait for writability */
		return;
	}
	cn->last_rx_ms = conn_now_ms();
	cn->nread = cn->nread_q0 = 0;
	if (cn->in_len) {
		conn_keep(cn, set->rbuf, (size_t)n);
		conn_consume_kept(cn);
	} else {
		size_t used = conn_process(cn, set->rbuf, (size_t)n);
		if (used < (size_t)n && !conn_closing(cn))
			conn_keep(cn, set->rbuf + used, (size_t)n - used);
	}
	conn_ack_now(cn);
	conn_output_full(cn); /* stop reading if the output passed the mark */
	conn_rest_if_streaming(cn, (size_t)n);
	conn_update_events(cn);
	/* OpenSSL may hold more decrypted bytes than one read took; the
	 * socket will not say so. Come back in the next pass, after others. */
	if (cn->ssl && SSL_has_pending(cn->ssl) && conn_may_read(cn) && !conn_output_full(cn))
		event_active(&cn->ev, EV_READ, 0);
}

static bool conn_frames_disconnect(const struct conn *cn, const uint8_t *buf, size_t len);

bool conn_read_pending(struct conn *cn)
{
	struct conn_set *set = cn->set;
	char why[256];
	ssize_t n;
	if (cn->state != CONN_ACTIVE && cn->state != CONN_PAUSED)
		return false;
	/* Kept, not handled: nothing read here is acted on or acknowledged
	 * (the connection is closing), however full its output is. */
	while (cn->in_len < CONN_TAKEN_SCAN &&
	       (n = conn_recv(cn, set->rbuf, CONN_READ_SIZE, why, sizeof(why))) > 0)
		conn_keep(cn, set->rbuf, (size_t)n);
	return conn_frames_disconnect(cn, cn->in, cn->in_len);
}

/* Drive the TLS handshake one step; once it is done, the connection waits
 * for CONNECT like a plain one. */
static void conn_handshake(struct conn *cn)
{
	ERR_clear_error();
	int r = SSL_do_handshake(cn->ssl);
	if (r == 1) {
		const struct config_tls *t = &cn->lis->cl->tls;
		if (t->use_identity_as_username || t->use_subject_as_username)
			cn->tls_username = tls_peer_username(cn->ssl, t->use_subject_as_username);
		cn->tls_want = 0;
		conn_set_state(cn, CONN_AWAIT_CONNECT);
		log_write(cn->set->log, LOG_LEVEL_DEBUG, "TLS from %s: %s, %s", cn->addr,
			  SSL_get_version(cn->ssl), SSL_get_cipher_name(cn->ssl));
		/* The CONNECT may have arrived with the handshake's last flight. */
		conn_readable(cn);
		return;
	}
	switch (SSL_get_error(cn->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		cn->tls_want = EV_READ;
		break;
	case SSL_ERROR_WANT_WRITE:
		cn->tls_want = EV_WRITE;
		break;
	default: {
		char reason[256], msg[300];
		tls_error_reason(reason, sizeof(reason),
				 errno ? strerror(errno)
				       : "connection closed during the handshake");
		snprintf(msg, sizeof(msg), "TLS handshake failed: %s", reason);
		conn_close(cn, msg, false);
		return;
	}
	}
	conn_update_events(cn);
}

/* True when buf[0..len), taken frame by frame from its start, holds a
 * DISCONNECT that discards the will: 3.1.1's, or 5.0's with reason 0x00
 * (none given means 0x00) [MQTT5-3.14.4-3]; any other reason keeps it. */
static bool conn_frames_disconnect(const struct conn *cn, const uint8_t *buf, size_t len)
{
	size_t off = 0;
	while (off < len) {
		struct codec_header h;
		size_t avail = len - off;
		if (codec_parse_header(buf + off, avail < 5 ? avail : 5,
				       cn->set->cfg->max_packet_size, &h) != CODEC_OK)
			return false;
		if (buf[off] >> 4 == CODEC_DISCONNECT) {
			size_t at = off + (size_t)h.header_len;
			if (cn->version != CODEC_V5 || h.remaining == 0)
				return true;
			return at < len && buf[at] == 0x00;
		}
		off += (size_t)h.header_len + h.remaining;
	}
	return false;
}

/*
 * The peer of a paused connection closed it. Paused, the connection is
 * not read, so without this it would hold its descriptor until the store
 * recovers: a fleet retrying through an outage would run the broker out
 * of them. Nothing it sent since the pause is acted on (none of it was
 * acknowledged), but a DISCONNECT among it still means its will is not
 * due, so what it sent is read (up to CONN_PEER_GONE_SCAN) and looked at.
 */
static void conn_peer_gone(struct conn *cn)
{
	struct conn_set *set = cn->set;
	char why[256];
	ssize_t n;
	while (cn->in_len < CONN_PEER_GONE_SCAN &&
	       (n = conn_recv(cn, set->rbuf, CONN_READ_SIZE, why, sizeof(why))) > 0)
		conn_keep(cn, set->rbuf, (size_t)n);
	bool disconnect = conn_frames_disconnect(cn, cn->in, cn->in_len);
	conn_close(cn, "connection closed by peer while paused for the store", !disconnect);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	struct conn *cn = arg;
	if ((what & EV_CLOSED) && cn->state == CONN_PAUSED) {
		conn_peer_gone(cn);
		return;
	}
	if (cn->state == CONN_HANDSHAKE) {
		conn_handshake(cn);
		return;
	}
	if (cn->resting && (what & (EV_TIMEOUT | EV_WRITE))) {
		/* The rest is over; output that waited for the socket ends it
		 * too, since every write activation would put off its timeout. */
		cn->resting = false;
		cn->rested = true;
		conn_update_events(cn);
		what |= EV_READ;
	}
	bool read_waits_for_write = cn->tls_want & EV_WRITE;
	if (what & EV_WRITE)
		conn_flush(cn);
	if (((what & EV_READ) || (read_waits_for_write && (what & EV_WRITE))) && conn_may_read(cn))
		conn_readable(cn);
}

/* ---- timeouts ---- */

/* Milliseconds from t to now; 0 when t is later, as it is for a time a
 * connection took while the sweep ran (a will it published made another
 * connection's output, say): unsigned subtraction would wrap to "ages". */
static uint64_t conn_since(uint64_t now, uint64_t t)
{
	return now > t ? now - t : 0;
}

static void conn_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn_set *set = arg;
	uint64_t now = conn_now_ms();
	struct conn *next;
	for (struct conn *cn = set->conns; cn; cn = next) {
		next = cn->next;
		switch (cn->state) {
		case CONN_HANDSHAKE:
			if (conn_since(now, cn->accepted_ms) >=
			    (uint64_t)set->cfg->connect_timeout * 1000)
				conn_close(cn, "TLS handshake not done within connect_timeout",
					   false);
			break;
		case CONN_AWAIT_CONNECT:
			if (conn_since(now, cn->accepted_ms) >=
			    (uint64_t)set->cfg->connect_timeout * 1000)
				conn_close(cn,
					   cn->auth
					       ? "authentication not done within connect_timeout"
					       : "no CONNECT within connect_timeout",
					   false);
			break;
		case CONN_ACTIVE:
		case CONN_PAUSED:
			if (cn->keepalive &&
			    conn_since(now, cn->last_rx_ms) >= (uint64_t)cn->keepalive * 1500)
				conn_disconnect(cn, CONN_RC_KEEPALIVE_TIMEOUT, "keep-alive timeout",
						true);
			else if (cn->out && conn_since(now, cn->last_tx_ms) >= CONN_STALL_MS)
				conn_close(cn, "peer stopped reading (output stalled 60 s)", true);
			break;
		case CONN_LINGER:
			if (conn_since(now, cn->linger_ms) >= CONN_LINGER_MS)
				conn_set_state(cn, CONN_CLOSED);
			break;
		case CONN_CLOSED:
			break;
		}
	}
}

/* ---- listeners ---- */

static void conn_listener_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			     int salen, void *arg)
{
	(void)l;
	(void)salen;
	struct conn_listener *lis = arg;
	struct conn_set *set = lis->set;
	if (set->stopping) {
		evutil_closesocket(fd);
		return;
	}
	if (lis->cl->max_connections && lis->nconns >= lis->cl->max_connections) {
		char addr[48];
		conn_format_addr(addr, sizeof(addr), sa);
		log_write(set->log, LOG_LEVEL_NOTICE,
			  "connection from %s refused: max_connections %u reached on port %u", addr,
			  lis->cl->max_connections, lis->cl->port);
		set->stats.refused[CONN_REFUSED_MAX_CONNECTIONS]++;
		evutil_closesocket(fd);
		return;
	}
	/* Acknowledgements and deliveries are small and latency-bound; the
	 * broker already batches many packets per write itself. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_new(set, lis, fd, sa);
}

/* Out of descriptors or memory, accept() fails at once for as long as a
 * connection waits in the backlog: the listeners rest a moment instead
 * (util_accept_rest). */
static void conn_listener_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	util_accept_rest_failed(&((struct conn_listener *)arg)->set->rest);
}

static void conn_listeners_set_enabled(void *arg, bool enabled)
{
	struct conn_set *set = arg;
	if (enabled && set->stopping)
		return;
	for (size_t i = 0; i < set->nlisteners; i++) {
		if (enabled)
			evconnlistener_enable(set->listeners[i]->evl);
		else
			evconnlistener_disable(set->listeners[i]->evl);
	}
}

int conn_set_listen(struct conn_set *set, const struct config_listener *cl)
{
	char portbuf[8];
	snprintf(portbuf, sizeof(portbuf), "%u", cl->port);
	struct evutil_addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE;
	int rc = evutil_getaddrinfo(cl->address, portbuf, &hints, &res);
	if (rc != 0) {
		log_write(set->log, LOG_LEVEL_ERROR, "listener %s:%u: %s",
			  cl->address ? cl->address : "*", cl->port, evutil_gai_strerror(rc));
		return -1;
	}
	SSL_CTX *tls = NULL;
	if (cl->tls.certfile) {
		char err[512];
		tls = tls_context_new(&cl->tls, err, sizeof(err));
		if (!tls) {
			log_write(set->log, LOG_LEVEL_ERROR, "listener %s:%u: %s",
				  cl->address ? cl->address : "*", cl->port, err);
			evutil_freeaddrinfo(res);
			return -1;
		}
	}
	int opened = 0;
	for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
		if (ai->ai_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		struct conn_listener *lis = xcalloc(1, sizeof(*lis));
		lis->set = set;
		lis->cl = cl;
		if (tls && SSL_CTX_up_ref(tls) == 1)
			lis->tls = tls;
		lis->evl = evconnlistener_new_bind(set->base, conn_listener_cb, lis, flags, 1024,
						   ai->ai_addr, (int)ai->ai_addrlen);
		if (!lis->evl) {
			log_write(set->log, LOG_LEVEL_ERROR, "listener %s:%u: cannot bind: %s",
				  cl->address ? cl->address : "*", cl->port, strerror(errno));
			SSL_CTX_free(lis->tls);
			SSL_CTX_free(tls);
			free(lis);
			evutil_freeaddrinfo(res);
			return -1;
		}
		evconnlistener_set_error_cb(lis->evl, conn_listener_error_cb);
		set->listeners =
		    xrealloc(set->listeners, (set->nlisteners + 1) * sizeof(*set->listeners));
		set->listeners[set->nlisteners++] = lis;
		opened++;
	}
	evutil_freeaddrinfo(res);
	SSL_CTX_free(tls);
	log_write(set->log, LOG_LEVEL_NOTICE, "listening on %s port %u%s",
		  cl->address ? cl->address : "all addresses", cl->port, tls ? " (TLS)" : "");
	return opened ? 0 : -1;
}

void conn_set_reload_tls(struct conn_set *set)
{
	const struct config_listener *done = NULL;
	SSL_CTX *fresh = NULL;
	for (size_t i = 0; i < set->nlisteners; i++) {
		struct conn_listener *lis = set->listeners[i];
		const struct config_listener *cl = lis->cl;
		if (!lis->tls)
			continue;
		/* The sockets of one listener line (IPv4 and IPv6) share one
		 * freshly read context, and one log line. */
		if (cl != done) {
			char err[512];
			SSL_CTX_free(fresh);
			fresh = tls_context_new(&cl->tls, err, sizeof(err));
			done = cl;
			if (fresh)
				log_write(set->log, LOG_LEVEL_NOTICE,
					  "listener port %u: reloaded %s and the files with it",
					  cl->port, cl->tls.certfile);
			else
				log_write(set->log, LOG_LEVEL_ERROR,
					  "listener port %u: reload failed, keeping the previous "
					  "certificates: %s",
					  cl->port, err);
		}
		if (fresh && SSL_CTX_up_ref(fresh) == 1) {
			/* Open connections keep a reference to the old one. */
			SSL_CTX_free(lis->tls);
			lis->tls = fresh;
		}
	}
	SSL_CTX_free(fresh);
}

/* ---- the set ---- */

struct conn_set *conn_set_new(struct event_base *base, const struct config *cfg, struct log *lg,
			      const struct conn_hooks *hooks, void *arg)
{
	struct conn_set *set = xcalloc(1, sizeof(*set));
	set->base = base;
	set->cfg = cfg;
	set->log = lg;
	set->hooks = *hooks;
	set->arg = arg;
	set->rbuf = xmalloc(CONN_READ_SIZE);
	set->flush_ev = event_new(base, -1, 0, conn_flush_cb, set);
	set->reap_ev = event_new(base, -1, 0, conn_reap_cb, set);
	set->sweep_ev = event_new(base, -1, EV_PERSIST, conn_sweep_cb, set);
	struct timeval tv = {0, CONN_SWEEP_MS * 1000};
	if (util_accept_rest_init(&set->rest, base, lg, "MQTT", CONN_ACCEPT_REST_MS,
				  conn_listeners_set_enabled, set) != 0 ||
	    !set->flush_ev || !set->reap_ev || !set->sweep_ev ||
	    event_add(set->sweep_ev, &tv) != 0) {
		conn_set_free(set);
		return NULL;
	}
	return set;
}

void conn_set_close_all(struct conn_set *set, const char *reason)
{
	set->stopping = true;
	for (size_t i = 0; i < set->nlisteners; i++)
		evconnlistener_disable(set->listeners[i]->evl);
	/* Closing frees nothing (that waits for the loop), so the list stays
	 * walkable. */
	for (struct conn *cn = set->conns; cn; cn = cn->next)
		if (!conn_closing(cn)) {
			conn_disconnect(cn, CONN_RC_SERVER_SHUTTING_DOWN, reason, true);
			/* The loop may not run again: a 5.0 client's DISCONNECT
			 * goes out now if the socket takes it. */
			if (cn->state == CONN_LINGER)
				conn_flush(cn);
		}
}

void conn_set_free(struct conn_set *set)
{
	if (!set)
		return;
	conn_reap_cb(-1, 0, set);
	while (set->conns) {
		struct conn *cn = set->conns;
		if (!conn_closing(cn))
			set->hooks.closed(set->arg, cn, "server stopped", false);
		conn_free(cn);
	}
	for (size_t i = 0; i < set->nlisteners; i++) {
		evconnlistener_free(set->listeners[i]->evl);
		SSL_CTX_free(set->listeners[i]->tls);
		free(set->listeners[i]);
	}
	free(set->listeners);
	if (set->flush_ev)
		event_free(set->flush_ev);
	if (set->reap_ev)
		event_free(set->reap_ev);
	if (set->sweep_ev)
		event_free(set->sweep_ev);
	util_accept_rest_cleanup(&set->rest);
	free(set->rbuf);
	free(set);
}
