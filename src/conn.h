/*
 * Network connections: accepting sockets, reading whole MQTT packets with
 * one shared read buffer (an idle connection holds no buffer at all),
 * writing many packets per system call from a per-connection output
 * buffer that exists only while something waits to be written, and the
 * connect-timeout and keep-alive sweep.
 */
#ifndef CAIRN_CONN_H
#define CAIRN_CONN_H

#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct client;
struct evbuffer;
struct sockaddr;

struct conn {
	struct event ev; /* read, and write while output waits */
	struct server *srv;
	struct client *client;
	struct conn *prev, *next;  /* every connection of the server */
	struct conn *next_dirty;   /* output to flush at the end of this pass */
	struct conn *next_closing; /* waiting to be freed */
	struct evbuffer *out;      /* NULL when nothing waits to be written */
	uint8_t *in;               /* a partial packet carried between reads */
	uint32_t in_len, in_cap;
	evutil_socket_t fd;
	uint64_t gen;
	uint64_t last_rx_ms; /* keep-alive: last time anything arrived */
	uint64_t since_ms;   /* accepted at, or started the final flush at */
	uint16_t keepalive;
	short events;   /* what ev waits for now */
	bool connected; /* CONNECT accepted */
	bool closing;
	bool flushing; /* closing once the output is written */
	bool reaped;
	bool dirty;
	bool paused;    /* reading stopped while the store fails */
	bool want_pump; /* the pump stopped on full output */
	char addr[48];
};

/* Set up and tear down the server's connection machinery (read buffer,
 * flush event, sweep timer). */
int conn_server_init(struct server *srv);
void conn_server_cleanup(struct server *srv);

/* Take an accepted socket. */
void conn_accept(struct server *srv, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/* Queue bytes for the socket; they go out at the end of this loop pass,
 * together with everything else queued for it. */
void conn_write(struct conn *cn, const void *bytes, size_t len);
/* The output buffer, for zero-copy appends (evbuffer_add_reference). */
struct evbuffer *conn_output(struct conn *cn);
/* True when enough waits unwritten that the pump should stop. */
bool conn_output_full(const struct conn *cn);

/* Close now: stop reading, detach the session (publishing its will when
 * will_due), free from the loop. reason is logged. */
void conn_close(struct conn *cn, const char *reason, bool will_due);
/* Write a last packet (a refusing CONNACK) and close once it is out. */
void conn_close_after(struct conn *cn, const void *bytes, size_t len, const char *reason);

/* Stop or resume reading (back-pressure while the store fails). */
void conn_set_paused(struct conn *cn, bool paused);

/* Free a connection the loop no longer references. */
void conn_free(struct conn *cn);

#endif
