/*
 * Network connections, their whole life: listening sockets, accept, reading
 * whole MQTT packets with one shared read buffer (an idle connection holds
 * no buffer at all), writing many packets per system call from an output
 * buffer that exists only while something waits to be written, the
 * connect-timeout and keep-alive sweep, close, and freeing from the loop.
 *
 * struct conn is private to conn.c. What happens above it (sessions, the
 * protocol) is reached through the hooks given to conn_set_new, and a
 * connection carries one opaque owner pointer for that layer.
 */
#ifndef CAIRN_CONN_H
#define CAIRN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct codec_packet;
struct config;
struct config_listener;
struct conn;
struct conn_set;
struct event_base;
struct evbuffer;
struct log;
struct sockaddr;

/*
 * Calls up from the connection layer. Each runs from the loop, never from
 * inside another conn_* call that the upper layer made, except closed,
 * which conn_close runs before it returns.
 */
struct conn_hooks {
	/* One whole, decoded packet arrived. Before conn_accepted() it is
	 * always a CONNECT, unless conn_set_auth() gave the connection an
	 * enhanced authentication exchange: then any packet may follow. */
	void (*packet)(void *arg, struct conn *cn, const struct codec_packet *pk);
	/* The connection is closing and will read nothing more; detach its
	 * owner (conn.c has logged reason already when there is none). Runs
	 * once per connection. will_due is false when the close was orderly:
	 * a DISCONNECT, a refused CONNECT, a set being freed. */
	void (*closed)(void *arg, struct conn *cn, const char *reason, bool will_due);
	/* The output fell below the low-water mark after conn_output_full()
	 * said it was full: the owner may write more. */
	void (*drained)(void *arg, struct conn *cn);
};

/* Every connection of one server, and its listeners. cfg is borrowed for
 * the set's life (max_packet_size, connect_timeout are read from it). */
struct conn_set *conn_set_new(struct event_base *base, const struct config *cfg, struct log *lg,
			      const struct conn_hooks *hooks, void *arg);
/* Open a listener (every address the name resolves to; TLS when cl has a
 * certfile). Logs and returns -1 on failure. cl is borrowed for the set's
 * life. */
int conn_set_listen(struct conn_set *set, const struct config_listener *cl);
/* Read every TLS listener's certificate, key, CA and CRL files again, for
 * the connections accepted from now on. A listener whose files fail to
 * load keeps its previous context; the failure is logged with the path. */
void conn_set_reload_tls(struct conn_set *set);
/* Stop accepting and close every open connection with reason (wills due:
 * a broker going away is no DISCONNECT from the client). */
void conn_set_close_all(struct conn_set *set, const char *reason);
/* Close what is left without running hooks for connections already
 * closed, and free everything. Runs closed(will_due false) for open ones. */
void conn_set_free(struct conn_set *set);

/* Why a connection was refused before its session began (metrics). */
enum conn_refusal {
	CONN_REFUSED_MAX_CONNECTIONS, /* the listener's max_connections */
	CONN_REFUSED_PROTOCOL,        /* unacceptable protocol version */
	CONN_REFUSED_IDENTIFIER,      /* client identifier rejected */
	CONN_REFUSED_UNAVAILABLE,     /* server unavailable (the store is failing) */
	CONN_REFUSED_CREDENTIALS,     /* bad user name or password */
	CONN_REFUSED_NOT_AUTHORIZED,  /* not authorized (ACL, certificate, will) */
	CONN_REFUSED_OTHER,           /* any other CONNACK failure */
	CONN_REFUSED_COUNT
};

/* Counters of the set, each a plain increment where it happens. */
struct conn_stats {
	uint64_t current;  /* connections accepted and not yet freed */
	uint64_t accepted; /* since start */
	uint64_t refused[CONN_REFUSED_COUNT];
	uint64_t bytes_in, bytes_out; /* on the wire (TLS: the plain text) */
};

const struct conn_stats *conn_set_stats(const struct conn_set *set);
/* The names of enum conn_refusal, for labels. */
const char *conn_refusal_name(enum conn_refusal r);
/* True while every listener of the config is open and the set is not
 * stopping. */
bool conn_set_listening(const struct conn_set *set);

/* Take an accepted socket (the listeners call this; tests too, with one
 * end of a socketpair). */
void conn_accept(struct conn_set *set, int fd, const struct sockaddr *sa, int salen);

/* The upper layer's object for this connection (NULL until set). */
void *conn_owner(const struct conn *cn);
void conn_set_owner(struct conn *cn, void *owner);

/*
 * Enhanced authentication (MQTT 5.0 section 4.12): auth is the upper
 * layer's state for it, owned by the connection from now on and released
 * with free_fn when the connection is freed. Set at most once. While the
 * connection awaits conn_accepted(), packets after the CONNECT are passed
 * up too, and connect_timeout still bounds the whole exchange.
 */
void conn_set_auth(struct conn *cn, void *auth, void (*free_fn)(void *));
/* The state given to conn_set_auth(), or NULL. */
void *conn_auth(const struct conn *cn);
/* Inside the packet hook: the packet's raw bytes (the fixed header's first
 * byte, and the body after the remaining length), valid until the hook
 * returns. False outside the hook. */
bool conn_packet_bytes(const struct conn *cn, uint8_t *hdr, const uint8_t **body, size_t *len);

/* CONNECT was accepted: the connection is open for every packet type, and
 * keep-alive is enforced at 1.5 x keepalive seconds (0: never). */
void conn_accepted(struct conn *cn, uint16_t keepalive);
/* Acknowledge what this read brings at the TCP level at once, unless a
 * reply leaves in the same pass (see conn_ack_now in conn.c). */
void conn_ack_soon(struct conn *cn);
/* True while the connection is accepted and not closing: packets written
 * now reach the peer. */
bool conn_is_open(const struct conn *cn);

/* "host:port" of the peer, for log lines. */
const char *conn_addr(const struct conn *cn);
/* A number no other connection of this process has had. */
uint64_t conn_id(const struct conn *cn);
/* When the connection was accepted, in monotonic milliseconds. */
uint64_t conn_accepted_at(const struct conn *cn);
/* The listener that accepted it (NULL for a socket given to conn_accept). */
const struct config_listener *conn_listener(const struct conn *cn);
/* The username the client certificate gives on a listener with
 * use_identity_as_username or use_subject_as_username (NULL when the
 * certificate has none), else NULL. */
const char *conn_tls_username(const struct conn *cn);

/* Queue bytes for the socket; they go out at the end of this loop pass,
 * together with everything else queued for it. Dropped once closing. */
void conn_write(struct conn *cn, const void *bytes, size_t len);
/* The output buffer, for zero-copy appends (evbuffer_add_reference). */
struct evbuffer *conn_output(struct conn *cn);
/* True when so much waits unwritten that the owner should stop writing;
 * the drained hook runs once the output has fallen below the low mark. */
bool conn_output_full(struct conn *cn);

/* Read, now, what the peer has sent and the socket holds (up to 8 MiB,
 * whatever the output holds), without handling it: a node told that its
 * client's session moved to another node looks for a DISCONNECT that came
 * before the move. True when one that discards the will is there (3.1.1,
 * or 5.0 with reason 0x00). Nothing read is acted on or acknowledged; the
 * caller closes the connection. */
bool conn_read_pending(struct conn *cn);
/* Close now: stop reading and writing, run the closed hook, free from the
 * loop. reason is logged. */
void conn_close(struct conn *cn, const char *reason, bool will_due);
/* 5.0 reason codes of the DISCONNECTs a server sends (5.0 section
 * 3.14.2.1), beside CODEC_RC_MALFORMED and CODEC_RC_PROTOCOL_ERROR. */
#define CONN_RC_NOT_AUTHORIZED       0x87
#define CONN_RC_SERVER_SHUTTING_DOWN 0x8B
#define CONN_RC_KEEPALIVE_TIMEOUT    0x8D
#define CONN_RC_SESSION_TAKEN_OVER   0x8E
#define CONN_RC_TOPIC_NAME_INVALID   0x90
#define CONN_RC_RECEIVE_MAX_EXCEEDED 0x93
#define CONN_RC_TOPIC_ALIAS_INVALID  0x94
#define CONN_RC_PACKET_TOO_LARGE     0x95

/* The protocol the connection speaks (enum codec_version): 4 until its
 * CONNECT names another; every packet is decoded with that version's rules. */
uint8_t conn_version(const struct conn *cn);

/* Close as conn_close does, but a 5.0 connection that is open first gets a
 * DISCONNECT with reason code (5.0 section 4.13): it is read no more, and
 * the socket closes once the packet is out (or after a bounded wait). */
void conn_disconnect(struct conn *cn, uint8_t code, const char *reason, bool will_due);

/* Write a last packet (a refusing CONNACK), run the closed hook, and close
 * once the packet is out (or after a bounded wait). */
void conn_refuse(struct conn *cn, const void *bytes, size_t len, const char *reason);

/* Keep what is written to the connection, in order, until uncorked (a
 * CONNACK that must wait for the session's commit, and what follows it; a
 * shared group's delivery, until the commit that gives it). Corks count:
 * the output goes once each is taken off. */
void conn_set_corked(struct conn *cn, bool corked);
/* Discard the output kept back by a cork: the commit it waited for will
 * not hold it (the session was claimed elsewhere, its writes dropped). */
void conn_drop_corked(struct conn *cn);

/* Hold the connection: nothing more is read from it until
 * conn_release_hold() (a CONNECT waits for its session's claim); if it is
 * freed first, gone(hold) runs. */
void conn_set_hold(struct conn *cn, void *hold, void (*gone)(void *));
void conn_release_hold(struct conn *cn);

/* Stop or resume reading (back-pressure while the store fails). */
void conn_set_paused(struct conn *cn, bool paused);

#endif
