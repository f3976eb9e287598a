/*
 * The HTTP listener (http_listener PORT [ADDRESS]) on libevent's evhttp:
 * /metrics (Prometheus), /healthz, /readyz, the status page at / with its
 * JSON (/api/status), and, with http_admin, the admin API under /api/
 * (sessions, disconnect, delete, retained). At most http_max_connections
 * connections are open at once. See cairn(8).
 */
#ifndef CAIRN_HTTP_H
#define CAIRN_HTTP_H

#include <stdint.h>

struct server;
struct http_server;

struct http_stats {
	uint64_t open;     /* connections evhttp holds now, counted against the cap */
	uint64_t accepted; /* connections taken in */
	uint64_t refused;  /* closed at once: http_max_connections were open */
};

/* Bind the listener and start the sampler of the status page's chart.
 * Logs why and returns NULL on failure (the port taken, the token file
 * unreadable). */
struct http_server *http_server_new(struct server *srv);
void http_server_free(struct http_server *h);
void http_server_stats(const struct http_server *h, struct http_stats *out);

#endif
