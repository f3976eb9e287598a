/*
 * The in-process broker harness the session Check suites share
 * (tests/check_qos.c for 3.1.1, tests/check_mqtt5.c for 5.0): a server on
 * the memory store, the test's clients on socketpairs, the event loop run
 * by hand. Each suite keeps its own way of decoding what a peer receives
 * and its own CONNECT; this file only starts, pumps, restarts and stops the
 * broker and moves bytes. Included by those two files only; each uses part
 * of it, hence the unused attributes.
 */
#ifndef CAIRN_CHECK_BROKER_H
#define CAIRN_CHECK_BROKER_H

#include "client.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "server.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CK_UNUSED __attribute__((unused))

#define MAX_PEERS 8
#define PEER_BUF  (256 * 1024)

/* The test's end of one connection: bytes the broker wrote, not yet
 * consumed as packets. */
struct peer {
	int fd;
	bool eof;
	size_t len;
	uint8_t buf[PEER_BUF];
	uint8_t pkt[PEER_BUF]; /* the last packet popped, for decoders that point into it */
};

struct broker {
	struct config cfg;
	struct log lg;
	struct event_base *base;
	struct server srv;
	struct peer *peers[MAX_PEERS];
	size_t npeers;
};

/* The configuration of a broker on the memory store: a private one when
 * store is NULL, else the named, process-wide one that outlives a
 * server_cleanup. broker_run starts it. */
CK_UNUSED static void broker_config(struct broker *b, const char *store)
{
	memset(b, 0, sizeof(*b));
	config_init(&b->cfg);
	free(b->cfg.persistence_location);
	b->cfg.persistence_location = store ? xstrdup(store) : NULL;
	b->cfg.persistence_backend = xstrdup("memory");
}

CK_UNUSED static void broker_run(struct broker *b)
{
	log_init(&b->lg);
	b->lg.dests = LOG_DEST_STDERR;
	b->lg.mask = LOG_LEVEL_ERROR;
	b->base = event_base_new();
	ck_assert_ptr_nonnull(b->base);
	ck_assert_int_eq(server_init(&b->srv, &b->cfg, &b->lg, b->base), 0);
}

CK_UNUSED static void peer_close(struct broker *b, struct peer *p)
{
	for (size_t i = 0; i < b->npeers; i++) {
		if (b->peers[i] == p) {
			b->peers[i] = b->peers[--b->npeers];
			break;
		}
	}
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

CK_UNUSED static void broker_stop(struct broker *b)
{
	server_stop(&b->srv);
	for (int i = 0; i < 4; i++)
		event_base_loop(b->base, EVLOOP_NONBLOCK);
	server_cleanup(&b->srv);
	while (b->npeers)
		peer_close(b, b->peers[0]);
	event_base_free(b->base);
	log_cleanup(&b->lg);
	config_cleanup(&b->cfg);
}

/* Read everything the broker has written to p so far. Returns bytes read. */
CK_UNUSED static size_t peer_read(struct peer *p)
{
	size_t total = 0;
	while (!p->eof && p->len < sizeof(p->buf)) {
		ssize_t n = read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
		if (n > 0) {
			p->len += (size_t)n;
			total += (size_t)n;
		} else if (n == 0) {
			p->eof = true;
		} else {
			ck_assert_msg(errno == EAGAIN || errno == EWOULDBLOCK, "read: %s",
				      strerror(errno));
			break;
		}
	}
	return total;
}

/* Run the loop until nothing more arrives for a few rounds (bounded):
 * commits, deferred acknowledgements and socket flushes each take a turn. */
CK_UNUSED static void pump(struct broker *b)
{
	int idle = 0;
	for (int i = 0; i < 200 && idle < 4; i++) {
		event_base_loop(b->base, EVLOOP_NONBLOCK);
		size_t n = 0;
		for (size_t k = 0; k < b->npeers; k++)
			n += peer_read(b->peers[k]);
		idle = n ? 0 : idle + 1;
	}
}

/* Stop the server (its store commits what it can, and keeps only what it
 * committed: a named memory store outlives it), drop every peer, and start
 * it again on the same store, as a restart of the process would. */
CK_UNUSED static void broker_restart(struct broker *b)
{
	server_stop(&b->srv);
	pump(b);
	server_cleanup(&b->srv);
	while (b->npeers)
		peer_close(b, b->peers[0]);
	ck_assert_int_eq(server_init(&b->srv, &b->cfg, &b->lg, b->base), 0);
}

/* Encode pk in protocol version (CODEC_V5, or 4 for 3.1.1) and write it. */
CK_UNUSED static void peer_send_v(struct peer *p, uint8_t version, const struct codec_packet *pk)
{
	uint8_t out[2048];
	int n = codec_encode_v(version, pk, out, sizeof(out));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(write(p->fd, out, (size_t)n), n);
}

/* A new connection, accepted by the broker as if from 127.0.0.1's family. */
CK_UNUSED static struct peer *peer_new(struct broker *b)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	conn_accept(b->srv.conns, sv[0], (struct sockaddr *)&sa, sizeof(sa));
	struct peer *p = xcalloc(1, sizeof(*p));
	p->fd = sv[1];
	ck_assert_uint_lt(b->npeers, MAX_PEERS);
	b->peers[b->npeers++] = p;
	return p;
}

/* The broker's client (session) called id, connected or not; NULL if none. */
CK_UNUSED static struct client *known(struct broker *b, const char *id)
{
	return server_get_known_client(&b->srv, id, strlen(id));
}

#endif
