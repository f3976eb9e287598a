/*
 * The HTTP listener (http_listener PORT [ADDRESS]) on libevent's evhttp:
 * /metrics (Prometheus), /healthz, /readyz, the status page at / with its
 * JSON (/api/status), and, with http_admin, the admin API under /api/
 * (sessions, disconnect, delete, retained). See cairn(8).
 */
#ifndef CAIRN_HTTP_H
#define CAIRN_HTTP_H

struct server;
struct http_server;

/* Bind the listener and start the sampler of the status page's chart.
 * Logs why and returns NULL on failure (the port taken, the token file
 * unreadable). */
struct http_server *http_server_new(struct server *srv);
void http_server_free(struct http_server *h);

#endif
