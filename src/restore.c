/*
 * Rebuilding the broker's state from the store at start-up. The backend
 * streams records to the visitors below; messages arrive before the
 * deliveries that reference them, so they are collected, sorted by id once,
 * and looked up by binary search. Records that reference nothing or carry
 * damaged values are skipped, never trusted.
 */
#include "restore.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cairn/store.h"
#include "client.h"
#include "codec.h"
#include "log.h"
#include "message.h"
#include "progress.h"
#include "router.h"
#include "server.h"
#include "service.h"
#include "store.h"
#include "topic.h"
#include "util.h"

/* A restored session that has something to do once the store is loaded. */
struct restore_timed {
	struct client *c;
	bool crashed;      /* connected when the broker died */
	bool new_deadline; /* expires_at set by this start-up: store it */
};

struct restore {
	struct server *srv;
	struct message **msgs; /* by msg_id, sorted as loaded */
	size_t nmsgs, cap;
	bool sorted; /* msgs sorted by id (deliveries come after messages) */
	size_t sessions, subs, deliveries, retained, inflight_in;
	struct restore_timed *timed; /* connected at the crash, or with a deadline */
	size_t ntimed, timedcap;
	int64_t now; /* wall clock, ms */
};

struct client *restore_client_new(struct server *srv, const struct cairn_session_rec *r)
{
	struct client *c = client_new(srv, r->client_id, strlen(r->client_id), false);
	c->stored = true;
	c->next_pid = r->next_packet_id;
	c->dropped = c->dropped_logged = c->dropped_stored = r->dropped;
	if (r->username)
		c->username = xstrdup(r->username);
	/* A store from before version 3 knew no level: its sessions are 3.1.1
	 * ones. */
	c->version = r->protocol_level ? r->protocol_level : CODEC_V311;
	return c;
}

static int restore_session(void *arg, const struct cairn_session_rec *r)
{
	struct restore *rs = arg;
	struct server *srv = rs->srv;
	struct client *c = restore_client_new(srv, r);
	if (r->has_will && r->will_topic) {
		c->will = message_new(r->will_topic, strlen(r->will_topic), r->will_payload,
				      r->will_payload_len, r->will_qos, r->will_retain);
		if (r->will_props_len)
			message_set_props(c->will, r->will_props, r->will_props_len);
		c->will_delay = r->will_delay;
		c->will_at = r->will_at;
	}
	/* A 3.1.1 session expires as configured now
	 * (persistent_client_expiration), a 5.0 one as its client chose. */
	c->expiry =
	    c->version == CODEC_V5 ? r->expiry_interval : srv->cfg->persistent_client_expiration;
	c->expires_at = r->connected ? 0 : r->expires_at;
	/* An offline 3.1.1 session stored while it never expired (or by an
	 * older cairn), now under persistent_client_expiration: its expiry
	 * starts with this start-up, and the deadline is stored. */
	bool new_deadline = !r->connected && !c->expires_at && c->expiry != CAIRN_EXPIRY_NEVER &&
			    c->version != CODEC_V5;
	if (new_deadline)
		c->expires_at = rs->now + (int64_t)c->expiry * 1000;
	server_add_client(srv, c);
	if (r->connected || c->expires_at || c->will_at) {
		/* The broker died with this connection open (its will is due,
		 * its expiry starts now), or a deadline runs. */
		if (rs->ntimed == rs->timedcap) {
			rs->timedcap = rs->timedcap ? rs->timedcap * 2 : 16;
			rs->timed = xrealloc(rs->timed, rs->timedcap * sizeof(*rs->timed));
		}
		rs->timed[rs->ntimed++] = (struct restore_timed){
		    .c = client_ref(c), .crashed = r->connected, .new_deadline = new_deadline};
	}
	client_unref(c);
	rs->sessions++;
	return 0;
}

bool restore_add_sub(struct client *c, const struct cairn_sub_rec *r)
{
	size_t len = strlen(r->filter);
	if (topic_subfilter_parse(r->filter, len, NULL) != 0 || r->qos > 2)
		return false;
	struct sub *s = client_add_sub_opts(
	    c, r->filter, len,
	    r->qos | (r->options & (CAIRN_SUB_NO_LOCAL | CAIRN_SUB_RETAIN_AS_PUBLISHED |
				    CAIRN_SUB_RETAIN_HANDLING)),
	    r->sub_id);
	s->since_ms = r->since_ms;
	s->since_seq = r->since_seq;
	return true;
}

static int restore_sub(void *arg, const struct cairn_sub_rec *r)
{
	struct restore *rs = arg;
	struct client *c = server_get_known_client(rs->srv, r->client_id, strlen(r->client_id));
	if (c && restore_add_sub(c, r)) /* else: no session, or a bad filter: skip */
		rs->subs++;
	return 0;
}

struct message *restore_message_new(const struct cairn_msg_rec *r)
{
	size_t tlen = strlen(r->topic);
	if (tlen == 0 || tlen > TOPIC_MAX_LEN || r->qos > 2)
		return NULL;
	struct message *m =
	    message_new(r->topic, tlen, r->payload, r->payload_len, r->qos, r->retain);
	m->expires_at = r->expires_at;
	if (r->props_len)
		message_set_props(m, r->props, r->props_len);
	return m;
}

static int restore_message(void *arg, const struct cairn_msg_rec *r)
{
	struct restore *rs = arg;
	struct message *m = restore_message_new(r);
	if (!m)
		return 0;
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

static int restore_cmp_msg_id(const void *a, const void *b)
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
		qsort(rs->msgs, rs->nmsgs, sizeof(*rs->msgs), restore_cmp_msg_id);
		rs->sorted = true;
	}
	struct client *c = server_get_known_client(rs->srv, r->client_id, strlen(r->client_id));
	struct message *m = restore_find_msg(rs, r->msg_id);
	if (!c || !m || r->qos == 0 || r->qos > 2 || r->state > CAIRN_DELIVERY_PUBREC)
		return 0; /* a record without its session or message, or damaged */
	client_restore_delivery(c, m, r->seq, r->packet_id, r->qos, r->state);
	client_restore_delivery5(c, r->retain, r->sub_ids, r->n_sub_ids);
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
	if (r->expires_at && r->expires_at <= rs->now) {
		store_retained_delete(rs->srv->store, r->topic); /* expired meanwhile */
		return 0;
	}
	struct message *m = message_new(r->topic, tlen, r->payload, r->payload_len, r->qos, true);
	m->expires_at = r->expires_at;
	if (r->props_len)
		message_set_props(m, r->props, r->props_len);
	router_load_retained(rs->srv->router, m);
	rs->retained++;
	return 0;
}

/* A large store: a line every second while it loads, so a slow start-up
 * shows it is working, and how far it got. */
static void restore_progress(void *arg, const struct progress *p, bool final)
{
	struct server *srv = arg;
	char line[400];
	if (final)
		return; /* restore_run logs the totals */
	progress_format(p, line, sizeof(line));
	log_write(srv->log, LOG_LEVEL_NOTICE, "restoring the %s store: %s so far",
		  store_name(srv->store), line);
	service_progress(line);
}

int restore_run(struct server *srv)
{
	struct restore rs = {.srv = srv};
	struct timeval tv;
	event_base_gettimeofday_cached(srv->base, &tv);
	rs.now = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
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
	struct progress prog;
	struct cairn_store_visitor pv = progress_init(&prog, &v, 1.0, restore_progress, srv);
	int rc = store_load(srv->store, &pv);
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
		for (size_t i = 0; i < rs.ntimed; i++)
			client_unref(rs.timed[i].c);
		free(rs.timed);
		return -1;
	}
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "restored %zu sessions, %zu subscriptions, %zu queued or in-flight messages, "
		  "%zu inbound QoS 2 ids and %zu retained messages from the %s store in %.1f ms",
		  rs.sessions, rs.subs, rs.deliveries, rs.inflight_in, rs.retained,
		  store_name(srv->store), ms);
	size_t expired = 0;
	for (size_t i = 0; i < rs.ntimed; i++) {
		struct client *c = rs.timed[i].c;
		if (rs.timed[i].crashed) {
			/* Connected at the crash: its connection ended then, so
			 * its will is due (after its delay) and its expiry runs. */
			c->will_at = 0;
			client_session_offline(c, true);
		} else if (c->expires_at && c->expires_at <= rs.now) {
			/* Expired while the broker was down: a will still
			 * pending goes out as the session ends. */
			client_discard(c);
			expired++;
		} else {
			if (rs.timed[i].new_deadline)
				client_store_session(c, false);
			client_arm_timer(c); /* the rest of the delay or expiry */
		}
		client_unref(c);
	}
	free(rs.timed);
	if (expired)
		log_write(srv->log, LOG_LEVEL_NOTICE,
			  "%zu restored sessions had expired while the broker was down: discarded",
			  expired);
	return 0;
}
