/*
 * The server object: listeners and accepted connections, the known
 * sessions by client id, routing of published messages through the
 * subscription trie with an encode-once cache, retained messages, and the
 * restore of every stored session at start-up.
 */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <time.h>

#include "cairn/store.h"
#include "client.h"
#include "conn.h"
#include "codec.h"
#include "retain.h"
#include "store.h"
#include "topic.h"
#include "util.h"

/* ---- known clients ---- */

static size_t hash_id(const char *id, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
	return (size_t)h;
}

static void map_grow(struct client_map *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
	struct client **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < m->nbuckets; i++) {
		struct client *c = m->buckets[i];
		while (c) {
			struct client *next = c->map_next;
			size_t k = hash_id(c->id, c->id_len) & (n - 1);
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
	struct client_map *m = &srv->clients;
	if (!m->nbuckets)
		return NULL;
	for (struct client *c = m->buckets[hash_id(id, len) & (m->nbuckets - 1)]; c;
	     c = c->map_next)
		if (c->id_len == len && memcmp(c->id, id, len) == 0)
			return c;
	return NULL;
}

void server_add_client(struct server *srv, struct client *c)
{
	struct client_map *m = &srv->clients;
	if (m->count >= m->nbuckets)
		map_grow(m);
	size_t k = hash_id(c->id, c->id_len) & (m->nbuckets - 1);
	c->map_next = m->buckets[k];
	m->buckets[k] = client_ref(c);
	m->count++;
}

void server_remove_client(struct server *srv, struct client *c)
{
	struct client_map *m = &srv->clients;
	if (!m->nbuckets)
		return;
	for (struct client **pp = &m->buckets[hash_id(c->id, c->id_len) & (m->nbuckets - 1)]; *pp;
	     pp = &(*pp)->map_next) {
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

/* ---- routing ---- */

struct route {
	uint64_t gen;
	struct client **hits;
	size_t n, cap;
};

static void route_match(void *arg, void *subscriber, uint8_t qos)
{
	struct route *r = arg;
	struct client *c = subscriber;
	if (c->match_gen == r->gen) {
		if (qos > c->match_qos)
			c->match_qos = qos;
		return;
	}
	c->match_gen = r->gen;
	c->match_qos = qos;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->hits = xrealloc(r->hits, r->cap * sizeof(*r->hits));
	}
	r->hits[r->n++] = c;
}

/* The QoS of c's one delivery of msg: the highest of its matching
 * subscriptions, capped by the published QoS. */
static uint8_t route_qos(const struct client *c, const struct message *msg)
{
	return c->match_qos < msg->qos ? c->match_qos : msg->qos;
}

/* Replace (or with an empty payload, clear) the retained message of the
 * topic. Returns true when a store write was staged. */
static bool server_set_retained(struct server *srv, struct message *msg)
{
	struct message *old;
	if (msg->payload_len == 0) {
		old = retain_tree_set(srv->retained, msg->topic, msg->topic_len, NULL);
		if (!old)
			return false;
		message_unref(old);
		store_retained_delete(srv->store, msg->topic);
		return true;
	}
	old = retain_tree_set(srv->retained, msg->topic, msg->topic_len, message_ref(msg));
	if (old)
		message_unref(old);
	struct cairn_msg_rec r = {
	    .topic = msg->topic,
	    .payload = msg->payload,
	    .payload_len = msg->payload_len,
	    .qos = msg->qos,
	    .retain = true,
	};
	store_retained_put(srv->store, &r);
	return true;
}

bool server_handle_incoming_publish(struct server *srv, struct message *msg)
{
	srv->stats.msgs_received++;
	bool staged = false;
	if (msg->retain)
		staged = server_set_retained(srv, msg);

	/* The hits array is the server's, reused by every publish: routing
	 * allocates nothing per message once it has grown. */
	struct route r = {.gen = ++srv->match_gen};
	r.hits = srv->route_hits;
	r.cap = srv->route_cap;
	assert(!srv->routing);
	srv->routing = true;
	topic_tree_match(srv->subs, msg->topic, msg->topic_len, route_match, &r);
	srv->route_hits = r.hits;
	srv->route_cap = r.cap;

	bool must_store = staged;
	for (size_t i = 0; i < r.n && !must_store; i++) {
		struct client *c = r.hits[i];
		uint8_t q = route_qos(c, msg);
		if (q > 0 && !c->clean)
			must_store = true;
	}
	if (!must_store) {
		for (size_t i = 0; i < r.n; i++) {
			struct client *c = r.hits[i];
			uint8_t q = route_qos(c, msg);
			client_deliver(c, msg, q, false, NULL);
		}
		srv->routing = false;
		return false;
	}
	struct gate *gate = gate_new();
	struct gate_wait *p = gate_wait_new(srv, NULL, NULL, 0, gate);
	for (size_t i = 0; i < r.n; i++) {
		struct client *c = r.hits[i];
		uint8_t q = route_qos(c, msg);
		client_deliver(c, msg, q, false, gate);
		gate_wait_add_target(p, c);
	}
	gate_wait_submit(p);
	gate_unref(gate);
	srv->routing = false;
	return true;
}

struct retained_walk {
	struct client *c;
	uint8_t qos;
	struct gate *gate;
};

static void retained_one(void *arg, void *value)
{
	struct retained_walk *w = arg;
	struct message *m = value;
	uint8_t q = m->qos < w->qos ? m->qos : w->qos;
	client_deliver(w->c, m, q, true, w->gate);
}

void server_enqueue_retained(struct server *srv, struct client *c, const char *filter, size_t len,
			     uint8_t qos, struct gate *gate)
{
	struct retained_walk w = {c, qos, gate};
	retain_tree_match(srv->retained, filter, len, retained_one, &w);
}

/* ---- connections ---- */

void server_reap(struct server *srv, struct conn *cn)
{
	if (cn->reaped)
		return;
	cn->reaped = true;
	cn->closing = true;
	cn->next_closing = srv->closing;
	srv->closing = cn;
	event_active(srv->reaper, EV_TIMEOUT, 0);
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct server *srv = arg;
	while (srv->closing) {
		struct conn *cn = srv->closing;
		srv->closing = cn->next_closing;
		conn_free(cn); /* conn_close detached its session already */
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	(void)l;
	struct server *srv = arg;
	if (srv->stopping) {
		evutil_closesocket(fd);
		return;
	}
	/* Acknowledgements and deliveries are small and latency-bound; the
	 * broker already batches many packets per write itself. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_accept(srv, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	struct server *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	log_write(srv->log, LOG_LEVEL_ERROR, "accept failed: %s",
		  evutil_socket_error_to_string(err));
}

static int server_listen(struct server *srv, const struct config_listener *cl)
{
	char portbuf[8];
	snprintf(portbuf, sizeof(portbuf), "%u", cl->port);
	struct evutil_addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE;
	int rc = evutil_getaddrinfo(cl->address, portbuf, &hints, &res);
	if (rc != 0) {
		log_write(srv->log, LOG_LEVEL_ERROR, "listener %s:%u: %s",
			  cl->address ? cl->address : "*", cl->port, evutil_gai_strerror(rc));
		return -1;
	}
	int opened = 0;
	for (struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
		if (ai->ai_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		struct evconnlistener *l = evconnlistener_new_bind(
		    srv->base, accept_cb, srv, flags, 1024, ai->ai_addr, (int)ai->ai_addrlen);
		if (!l) {
			log_write(srv->log, LOG_LEVEL_ERROR, "listener %s:%u: cannot bind: %s",
				  cl->address ? cl->address : "*", cl->port, strerror(errno));
			evutil_freeaddrinfo(res);
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		srv->listeners =
		    xrealloc(srv->listeners, (srv->nlisteners + 1) * sizeof(*srv->listeners));
		srv->listeners[srv->nlisteners++] = l;
		opened++;
	}
	evutil_freeaddrinfo(res);
	log_write(srv->log, LOG_LEVEL_NOTICE, "listening on %s port %u",
		  cl->address ? cl->address : "all addresses", cl->port);
	return opened ? 0 : -1;
}

/* ---- restore ---- */

struct restore {
	struct server *srv;
	struct message **msgs; /* by msg_id, sorted as loaded */
	size_t nmsgs, cap;
	bool sorted; /* msgs sorted by id (deliveries come after messages) */
	size_t sessions, subs, deliveries, retained, inflight_in;
	struct client **will_due;
	size_t nwill, willcap;
};

static int restore_session(void *arg, const struct cairn_session_rec *r)
{
	struct restore *rs = arg;
	struct server *srv = rs->srv;
	struct client *c = client_new(srv, r->client_id, strlen(r->client_id), false);
	c->stored = true;
	c->next_pid = r->next_packet_id;
	if (r->username)
		c->username = xstrdup(r->username);
	if (r->has_will && r->will_topic)
		c->will = message_new(r->will_topic, strlen(r->will_topic), r->will_payload,
				      r->will_payload_len, r->will_qos, r->will_retain);
	server_add_client(srv, c);
	if (r->connected) {
		/* The broker died with this connection open: its will is due. */
		if (rs->nwill == rs->willcap) {
			rs->willcap = rs->willcap ? rs->willcap * 2 : 16;
			rs->will_due = xrealloc(rs->will_due, rs->willcap * sizeof(*rs->will_due));
		}
		rs->will_due[rs->nwill++] = client_ref(c);
	}
	client_unref(c);
	rs->sessions++;
	return 0;
}

static int restore_sub(void *arg, const struct cairn_sub_rec *r)
{
	struct restore *rs = arg;
	struct client *c = server_get_known_client(rs->srv, r->client_id, strlen(r->client_id));
	size_t len = strlen(r->filter);
	if (!c || topic_filter_validate(r->filter, len) != 0 || r->qos > 2)
		return 0; /* a row without its session or with a bad filter: skip */
	client_add_sub(c, r->filter, len, r->qos);
	rs->subs++;
	return 0;
}

static int restore_message(void *arg, const struct cairn_msg_rec *r)
{
	struct restore *rs = arg;
	size_t tlen = strlen(r->topic);
	if (tlen == 0 || tlen > TOPIC_MAX_LEN || r->qos > 2)
		return 0;
	struct message *m =
	    message_new(r->topic, tlen, r->payload, r->payload_len, r->qos, r->retain);
	m->id = r->msg_id;
	if (r->msg_id > rs->srv->next_msg_id)
		rs->srv->next_msg_id = r->msg_id;
	if (rs->nmsgs == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 256;
		rs->msgs = xrealloc(rs->msgs, rs->cap * sizeof(*rs->msgs));
	}
	rs->msgs[rs->nmsgs++] = m;
	return 0;
}

static int cmp_msg_id(const void *a, const void *b)
{
	uint64_t x = (*(struct message *const *)a)->id, y = (*(struct message *const *)b)->id;
	return x < y ? -1 : x > y;
}

static struct message *restore_find_msg(struct restore *rs, uint64_t id)
{
	size_t lo = 0, hi = rs->nmsgs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (rs->msgs[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rs->nmsgs && rs->msgs[lo]->id == id ? rs->msgs[lo] : NULL;
}

static int restore_delivery(void *arg, const struct cairn_delivery_rec *r)
{
	struct restore *rs = arg;
	if (!rs->sorted) {
		qsort(rs->msgs, rs->nmsgs, sizeof(*rs->msgs), cmp_msg_id);
		rs->sorted = true;
	}
	struct client *c = server_get_known_client(rs->srv, r->client_id, strlen(r->client_id));
	struct message *m = restore_find_msg(rs, r->msg_id);
	if (!c || !m || r->qos == 0 || r->qos > 2 || r->state > CAIRN_DELIVERY_PUBREC)
		return 0; /* a record without its session or message, or damaged */
	client_restore_delivery(c, m, r->seq, r->packet_id, r->qos, r->state);
	rs->deliveries++;
	return 0;
}

static int restore_inflight_in(void *arg, const struct cairn_inflight_in_rec *r)
{
	struct restore *rs = arg;
	struct client *c = server_get_known_client(rs->srv, r->client_id, strlen(r->client_id));
	if (c) {
		client_restore_inflight_in(c, r->packet_id);
		rs->inflight_in++;
	}
	return 0;
}

static int restore_retained(void *arg, const struct cairn_msg_rec *r)
{
	struct restore *rs = arg;
	size_t tlen = strlen(r->topic);
	if (topic_name_validate(r->topic, tlen) != 0 || r->payload_len == 0 || r->qos > 2)
		return 0;
	struct message *m = message_new(r->topic, tlen, r->payload, r->payload_len, r->qos, true);
	struct message *old = retain_tree_set(rs->srv->retained, r->topic, tlen, m);
	if (old)
		message_unref(old);
	rs->retained++;
	return 0;
}

static int server_restore(struct server *srv)
{
	struct restore rs = {.srv = srv};
	struct cairn_store_visitor v = {
	    .arg = &rs,
	    .session = restore_session,
	    .subscription = restore_sub,
	    .message = restore_message,
	    .delivery = restore_delivery,
	    .inflight_in = restore_inflight_in,
	    .retained = restore_retained,
	};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = store_load(srv->store, &v);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	for (size_t i = 0; i < rs.nmsgs; i++) {
		struct message *m = rs.msgs[i];
		if (m->stored_refs == 0)
			store_message_delete(srv->store, m->id); /* orphan */
		message_unref(m);
	}
	free(rs.msgs);
	if (rc != 0) {
		log_write(srv->log, LOG_LEVEL_ERROR, "cannot load the %s store: %s",
			  store_name(srv->store), cairn_strerror(rc));
		for (size_t i = 0; i < rs.nwill; i++)
			client_unref(rs.will_due[i]);
		free(rs.will_due);
		return -1;
	}
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "restored %zu sessions, %zu subscriptions, %zu queued or in-flight messages, "
		  "%zu inbound QoS 2 ids and %zu retained messages from the %s store in %.1f ms",
		  rs.sessions, rs.subs, rs.deliveries, rs.inflight_in, rs.retained,
		  store_name(srv->store), ms);
	for (size_t i = 0; i < rs.nwill; i++) {
		struct client *c = rs.will_due[i];
		client_handle_last_will(c);
		client_store_session(c, false);
		client_unref(c);
	}
	free(rs.will_due);
	return 0;
}

/* ---- life cycle ---- */

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct server *srv = arg;
	if (sig == SIGHUP) {
		log_write(srv->log, LOG_LEVEL_NOTICE, "SIGHUP: reopening the log");
		log_reopen(srv->log);
		if (srv->cfg->path) {
			struct config fresh;
			char err[512];
			config_init(&fresh);
			if (config_load(&fresh, srv->cfg->path, err, sizeof(err)) == 0) {
				/* With -v every level stays on, whatever the file says. */
				if (!srv->cfg->verbose)
					srv->log->mask = fresh.log_mask;
				log_write(srv->log, LOG_LEVEL_NOTICE, "reloaded log_type from %s",
					  srv->cfg->path);
			} else {
				log_write(srv->log, LOG_LEVEL_ERROR,
					  "reload failed, keeping the running config: %s", err);
			}
			config_cleanup(&fresh);
		}
		return;
	}
	log_write(srv->log, LOG_LEVEL_NOTICE, "%s: shutting down",
		  sig == SIGTERM ? "SIGTERM" : "SIGINT");
	server_stop(srv);
}

static const char *server_store_option(void *arg, const char *key)
{
	return config_get_option(arg, key);
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
	struct client_map *m = &srv->clients;
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct client *c = m->buckets[i]; c; c = c->map_next)
			if (c->conn && (!healthy ? c->deferred > 0 : true))
				conn_set_paused(c->conn, !healthy);
}

int server_init(struct server *srv, struct config *cfg, struct log *lg, struct event_base *base)
{
	memset(srv, 0, sizeof(*srv));
	srv->cfg = cfg;
	srv->log = lg;
	srv->base = base;
	srv->subs = topic_tree_new();
	srv->retained = retain_tree_new();
	srv->reaper = event_new(base, -1, 0, reaper_cb, srv);
	if (conn_server_init(srv) != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "cannot set up connection events");
		return -1;
	}

	/* Each file backend creates its own directory (0700). */
	const char *backend = cfg->persistence_backend ? cfg->persistence_backend : "memory";
	struct cairn_store_options opts = {
	    .location = cfg->persistence_location,
	    .durability = cfg->durability,
	    .on_corrupt = cfg->on_corrupt,
	    .base = base,
	    .get = server_store_option,
	    .get_arg = cfg,
	    .log = server_store_log,
	    .log_arg = lg,
	};
	char err[512] = "";
	int rc = store_open(&srv->store, backend, &opts, base, 0, lg, err, sizeof(err));
	if (rc != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "cannot open the %s store: %s", backend,
			  err[0] ? err : cairn_strerror(rc));
		return -1;
	}
	store_set_health_cb(srv->store, server_store_health, srv);
	if (server_restore(srv) != 0)
		return -1;

	for (const struct config_listener *cl = cfg->listeners; cl; cl = cl->next)
		if (server_listen(srv, cl) != 0)
			return -1;

	int sigs[4] = {SIGTERM, SIGINT, SIGHUP, 0};
	for (int i = 0; sigs[i]; i++) {
		srv->sigs[i] = evsignal_new(base, sigs[i], signal_cb, srv);
		event_add(srv->sigs[i], NULL);
	}
	return 0;
}

void server_stop(struct server *srv)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i]);
	/* Close every connection, those still before CONNECT too: a broker
	 * going away is no DISCONNECT from the client, so wills are due.
	 * conn_close frees nothing, so the list stays walkable. */
	for (struct conn *cn = srv->conns; cn; cn = cn->next)
		if (!cn->closing)
			conn_close(cn, "server shutting down", true);
	event_base_loopexit(srv->base, NULL);
}

static void retained_release(void *arg, void *value)
{
	(void)arg;
	message_unref(value);
}

void server_cleanup(struct server *srv)
{
	/* Connections go first: detaching a session stages its last writes,
	 * and nothing may read a socket while an asynchronous store's close
	 * runs the loop. */
	reaper_cb(-1, 0, srv);
	conn_server_cleanup(srv);
	if (srv->store) {
		store_close(srv->store); /* commits the last batch */
		srv->store = NULL;
	}
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	free(srv->listeners);
	struct client_map *m = &srv->clients;
	for (size_t i = 0; i < m->nbuckets; i++) {
		while (m->buckets[i]) {
			struct client *c = m->buckets[i];
			m->buckets[i] = c->map_next;
			for (struct sub *s = c->subs; s; s = s->next)
				topic_tree_remove(srv->subs, s->filter, s->len, c);
			client_unref(c);
		}
	}
	free(m->buckets);
	if (srv->retained) {
		retain_tree_foreach(srv->retained, retained_release, NULL);
		retain_tree_free(srv->retained);
	}
	if (srv->subs)
		topic_tree_free(srv->subs);
	free(srv->route_hits);
	for (int i = 0; i < 4; i++)
		if (srv->sigs[i])
			event_free(srv->sigs[i]);
	if (srv->reaper)
		event_free(srv->reaper);
}
