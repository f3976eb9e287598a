/*
 * The server object: start-up in order (store, restore, listeners),
 * signals, shutdown, and the map of known sessions by client id. What
 * happens to a packet lives in protocol.c, to a session in client.c, to a
 * published message in router.c, and to a socket in conn.c.
 */
#include "server.h"

#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn/store.h"
#include "client.h"
#include "cluster.h"
#include "conn.h"
#include "http.h"
#include "message.h"
#include "protocol.h"
#include "restore.h"
#include "router.h"
#include "security.h"
#include "service.h"
#include "store.h"
#include "sys.h"
#include "util.h"

/* ---- known clients ---- */

static size_t server_hash_id(const char *id, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
	return (size_t)h;
}

static void server_map_grow(struct server_client_map *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
	struct client **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct client *c = m->buckets[i];
		while (c) {
			struct client *next = c->map_next;
			size_t k = server_hash_id(c->id, c->id_len) & (n - 1);
			c->map_next = b[k];
			b[k] = c;
			c = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->nbuckets = n;
}

struct client *server_get_known_client(struct server *srv, const char *id, size_t len)
{
	struct server_client_map *m = &srv->clients;
	if (!m->nbuckets)
		return NULL;
	for (struct client *c = m->buckets[server_hash_id(id, len) & (m->nbuckets - 1)]; c;
	     c = c->map_next)
		if (c->id_len == len && memcmp(c->id, id, len) == 0)
			return c;
	return NULL;
}

void server_add_client(struct server *srv, struct client *c)
{
	struct server_client_map *m = &srv->clients;
	if (m->count >= m->nbuckets)
		server_map_grow(m);
	size_t k = server_hash_id(c->id, c->id_len) & (m->nbuckets - 1);
	c->map_next = m->buckets[k];
	m->buckets[k] = client_ref(c);
	m->count++;
}

void server_remove_client(struct server *srv, struct client *c)
{
	struct server_client_map *m = &srv->clients;
	if (!m->nbuckets)
		return;
	for (struct client **pp = &m->buckets[server_hash_id(c->id, c->id_len) & (m->nbuckets - 1)];
	     *pp; pp = &(*pp)->map_next) {
		if (*pp == c) {
			*pp = c->map_next;
			c->map_next = NULL;
			m->count--;
			client_unref(c);
			return;
		}
	}
}

uint64_t server_next_msg_id(struct server *srv)
{
	return ++srv->next_msg_id;
}

/* ---- life cycle ---- */

/*
 * SIGHUP's password file part: reload them, then close the connection of
 * every client whose username was removed or whose password changed. The
 * conns are gathered first because closing one detaches its client, which
 * may take it out of the map being walked. The close is not a DISCONNECT,
 * so the client's will is due, as 3.1.1 asks.
 */
static void server_reload_security(struct server *srv)
{
	if (security_set_reload(&srv->security, srv->log) == 0)
		return;
	struct server_client_map *m = &srv->clients;
	struct conn **revoked = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < m->nbuckets; i++) {
		for (struct client *c = m->buckets[i]; c; c = c->map_next) {
			/* A certificate login never asked the password file, so no
			 * change to it can revoke one; nor one an enhanced
			 * authentication method made (conn_auth). */
			if (!c->conn || !c->username || conn_tls_username(c->conn) ||
			    conn_auth(c->conn))
				continue;
			const struct security *s =
			    security_for(&srv->security, conn_listener(c->conn));
			if (!security_revoked(s, c->username, strlen(c->username)))
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				revoked = xrealloc(revoked, cap * sizeof(*revoked));
			}
			revoked[n++] = c->conn;
		}
	}
	for (size_t i = 0; i < n; i++)
		conn_disconnect(revoked[i], CONN_RC_NOT_AUTHORIZED,
				"credentials removed or changed by a reload", true);
	free(revoked);
	security_set_reload_done(&srv->security);
}

/* SIGHUP's sys_interval and http_max_connections: the $SYS timer is
 * re-armed (0 stops it; the values last published stay retained), and
 * the HTTP cap applies from the next connection on. */
static void server_reload_ops(struct server *srv, const struct config *fresh)
{
	struct config *cfg = srv->cfg;
	if (fresh->http_max_connections != cfg->http_max_connections) {
		cfg->http_max_connections = fresh->http_max_connections;
		log_write(srv->log, LOG_LEVEL_NOTICE, "reloaded http_max_connections: %" PRIu32,
			  cfg->http_max_connections);
	}
	if (fresh->sys_interval == cfg->sys_interval)
		return;
	cfg->sys_interval = fresh->sys_interval;
	if (cfg->sys_interval == 0) {
		sys_pub_free(srv->sys);
		srv->sys = NULL;
	} else if (srv->sys) {
		sys_pub_rearm(srv->sys);
	} else {
		srv->sys = sys_pub_new(srv);
	}
	log_write(srv->log, LOG_LEVEL_NOTICE, "reloaded sys_interval: %" PRIu32 "%s",
		  cfg->sys_interval, cfg->sys_interval ? " s" : " ($SYS updates off)");
}

static void server_reload(struct server *srv)
{
	log_write(srv->log, LOG_LEVEL_NOTICE, "SIGHUP: reopening the log");
	log_reopen(srv->log);
	conn_set_reload_tls(srv->conns);
	server_reload_security(srv);
	if (!srv->cfg->path)
		return;
	struct config fresh;
	char err[512];
	config_init(&fresh);
	if (config_load(&fresh, srv->cfg->path, err, sizeof(err)) == 0) {
		/* With -v every level stays on, whatever the file says. */
		if (!srv->cfg->verbose)
			srv->log->mask = fresh.log_mask;
		log_write(srv->log, LOG_LEVEL_NOTICE, "reloaded log_type from %s", srv->cfg->path);
		server_reload_ops(srv, &fresh);
	} else {
		log_write(srv->log, LOG_LEVEL_ERROR,
			  "reload failed, keeping the running config: %s", err);
	}
	config_cleanup(&fresh);
}

static void server_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct server *srv = arg;
	if (sig == SIGHUP) {
		if (srv->service)
			service_reloading(srv->service);
		server_reload(srv);
		if (srv->service)
			service_reloaded(srv->service);
		return;
	}
	log_write(srv->log, LOG_LEVEL_NOTICE, "%s: shutting down",
		  sig == SIGTERM ? "SIGTERM" : "SIGINT");
	server_stop(srv);
}

/* The backend's options: the keys kept verbatim, and the cluster keys
 * the core parsed (the Redis backend reads them too). */
static const char *server_store_option(void *arg, const char *key)
{
	struct config *cfg = arg;
	static char retention[16], partitions[16];
	if (strcmp(key, "cluster") == 0)
		return cfg->cluster ? "true" : NULL;
	if (strcmp(key, "cluster_node_id") == 0)
		return cfg->cluster_node_id;
	if (strcmp(key, "message_retention") == 0) {
		snprintf(retention, sizeof(retention), "%u", (unsigned)cfg->message_retention);
		return retention;
	}
	if (strcmp(key, "cluster_log_partitions") == 0) {
		snprintf(partitions, sizeof(partitions), "%u",
			 (unsigned)cfg->cluster_log_partitions);
		return partitions;
	}
	return config_get_option(arg, key);
}

bool server_publish(struct server *srv, struct message *m, const struct client *publisher)
{
	if (srv->cluster) {
		cluster_publish(srv, m, publisher);
		return true;
	}
	return router_publish(srv->router, m);
}

bool server_clear_retained(struct server *srv, const char *topic, size_t len)
{
	if (!srv->cluster)
		return router_clear_retained(srv->router, topic, len);
	if (!router_has_retained(srv->router, topic, len))
		return false;
	static const uint8_t none[1];
	struct message *m = message_new(topic, len, none, 0, 0, true);
	cluster_publish(srv, m, NULL);
	message_unref(m);
	return true;
}

/* A node's default name: the host's, and the port of its first listener. */
static void server_default_node_id(struct config *cfg)
{
	char host[256] = "cairn";
	if (cfg->cluster_node_id)
		return;
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	char id[300];
	snprintf(id, sizeof(id), "%s-%u", host,
		 cfg->listeners ? (unsigned)cfg->listeners->port : 1883u);
	cfg->cluster_node_id = xstrdup(id);
}

static void server_store_log(void *arg, int level, const char *msg)
{
	static const enum log_level map[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_NOTICE,
					     LOG_LEVEL_INFO};
	log_write(arg, map[level < 0 || level > 3 ? 3 : level], "store: %s", msg);
}

/* Back-pressure while commits fail: a client with packets waiting for the
 * store stops being read until the store recovers; clean sessions and
 * QoS 0 traffic that needs no storage keep flowing. */
static void server_store_health(void *arg, bool healthy)
{
	struct server *srv = arg;
	log_write(srv->log, healthy ? LOG_LEVEL_NOTICE : LOG_LEVEL_ERROR,
		  healthy ? "store recovered: resuming publishers that waited for it"
			  : "store commits failing: pausing publishers whose messages wait for "
			    "storage until it recovers");
	struct server_client_map *m = &srv->clients;
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct client *c = m->buckets[i]; c; c = c->map_next)
			if (c->conn && (healthy || c->deferred > 0))
				conn_set_paused(c->conn, !healthy);
	cluster_store_health(srv, healthy);
}

static int server_open_store(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	/* Each file backend creates its own directory (0700). */
	const char *backend = cfg->persistence_backend ? cfg->persistence_backend : "none";
	struct cairn_store_options opts = {
	    .location = cfg->persistence_location,
	    .durability = cfg->durability,
	    .on_corrupt = cfg->on_corrupt,
	    .base = srv->base,
	    .get = server_store_option,
	    .get_arg = srv->cfg,
	    .log = server_store_log,
	    .log_arg = srv->log,
	};
	char err[512] = "";
	int rc = store_open(&srv->store, backend, &opts, srv->base, 0, srv->log, err, sizeof(err));
	if (rc != 0) {
		log_write(srv->log, LOG_LEVEL_ERROR, "cannot open the %s store: %s", backend,
			  err[0] ? err : cairn_strerror(rc));
		return -1;
	}
	store_set_health_cb(srv->store, server_store_health, srv);
	return 0;
}

int server_init(struct server *srv, struct config *cfg, struct log *lg, struct event_base *base)
{
	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	srv->log = lg;
	srv->base = base;
	srv->conns = conn_set_new(base, cfg, lg, &protocol_hooks, srv);
	if (!srv->conns) {
		log_write(lg, LOG_LEVEL_ERROR, "cannot set up connection events");
		return -1;
	}
	if (security_set_init(&srv->security, cfg, lg, NULL) != 0)
		return -1;
	if (cfg->cluster)
		server_default_node_id(cfg);
	if (server_open_store(srv) != 0)
		return -1;
	srv->router = router_new(srv->store);
	if (restore_run(srv) != 0)
		return -1;
	if (cfg->cluster && cluster_start(srv) != 0)
		return -1;
	for (const struct config_listener *cl = cfg->listeners; cl; cl = cl->next)
		if (conn_set_listen(srv->conns, cl) != 0)
			return -1;
	srv->started_ns = store_now_ns();
	if (cfg->http_port && (srv->http = http_server_new(srv)) == NULL)
		return -1;
	srv->sys = cfg->sys_interval ? sys_pub_new(srv) : NULL;
	int sigs[4] = {SIGTERM, SIGINT, SIGHUP, 0};
	for (int i = 0; sigs[i]; i++) {
		srv->sigs[i] = evsignal_new(base, sigs[i], server_signal_cb, srv);
		event_add(srv->sigs[i], NULL);
	}
	return 0;
}

void server_stop(struct server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	if (srv->service)
		service_stopping(srv->service);
	/* Those still before CONNECT too: a broker going away is no
	 * DISCONNECT from the client, so wills are due. */
	conn_set_close_all(srv->conns, "server shutting down");
	event_base_loopexit(srv->base, NULL);
}

void server_cleanup(struct server *srv)
{
	/* Connections go first: detaching a session stages its last writes,
	 * and nothing may read a socket while an asynchronous store's close
	 * runs the loop. */
	cluster_stop(srv);
	http_server_free(srv->http);
	srv->http = NULL;
	sys_pub_free(srv->sys);
	srv->sys = NULL;
	conn_set_free(srv->conns);
	srv->conns = NULL;
	struct server_client_map *m = &srv->clients;
	if (srv->store)
		for (size_t i = 0; i < m->nbuckets; i++)
			for (struct client *c = m->buckets[i]; c; c = c->map_next)
				client_store_drops(c);
	if (srv->store) {
		store_close(srv->store); /* commits the last batch */
		srv->store = NULL;
	}
	cluster_free(srv);
	for (size_t i = 0; i < m->nbuckets; i++) {
		while (m->buckets[i]) {
			struct client *c = m->buckets[i];
			m->buckets[i] = c->map_next;
			if (srv->router)
				client_leave_router(c);
			client_unref(c);
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	router_free(srv->router);
	srv->router = NULL;
	size_t leaked = dpool_cleanup(&srv->deliveries);
	if (leaked)
		log_write(srv->log, LOG_LEVEL_ERROR, "%zu deliveries not freed at shutdown",
			  leaked);
	security_set_cleanup(&srv->security);
	for (int i = 0; i < 4; i++)
		if (srv->sigs[i])
			event_free(srv->sigs[i]);
}
