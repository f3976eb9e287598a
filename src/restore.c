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

#include "cairn/store.h"
#include "client.h"
#include "log.h"
#include "message.h"
#include "progress.h"
#include "router.h"
#include "server.h"
#include "service.h"
#include "store.h"
#include "topic.h"
#include "util.h"

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
	c->dropped = c->dropped_logged = c->dropped_stored = r->dropped;
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
