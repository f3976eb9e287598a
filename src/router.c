/*
 * Routing of published messages. One publish walks the subscription trie
 * once, collects each matching session once (with the highest QoS of its
 * matching filters), and decides before delivering anything whether a
 * store write is involved: only then do the deliveries wait behind a gate.
 * The matches land in an array the router reuses, so routing allocates
 * nothing per message once it has grown.
 */
#include "router.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/store.h"
#include "client.h"
#include "gate.h"
#include "message.h"
#include "retain.h"
#include "security.h"
#include "share.h"
#include "store.h"
#include "topic.h"
#include "util.h"

struct router {
	struct topic_tree *subs;
	struct retain_tree *retained;
	struct store *store;
	uint64_t gen;         /* the current walk, to de-duplicate matches */
	struct client **hits; /* sessions matched by the current walk */
	size_t nhits, cap;
	bool busy;                      /* a walk is running: routing does not recurse */
	struct share_set *shares;       /* shared subscriptions ($share/GROUP/FILTER) */
	bool shares_apart;              /* cluster mode: groups get messages elsewhere */
	const void *origin;             /* the publisher of the message routed (No Local) */
	const struct message *msg;      /* the message routed */
	struct client *only;            /* router_publish_to's session */
	size_t last_matched, last_full; /* the last publish: sessions matched, dropped full */
};

static bool router_session_online(void *session)
{
	return client_is_connected(session);
}

struct router *router_new(struct store *st)
{
	struct router *r = xcalloc(1, sizeof(*r));
	r->subs = topic_tree_new();
	r->retained = retain_tree_new();
	r->store = st;
	r->shares = share_set_new(router_session_online);
	return r;
}

static void router_release_retained(void *arg, void *value)
{
	(void)arg;
	message_unref(value);
}

void router_free(struct router *r)
{
	if (!r)
		return;
	retain_tree_foreach(r->retained, router_release_retained, NULL);
	retain_tree_free(r->retained);
	topic_tree_free(r->subs);
	share_set_free(r->shares);
	free(r->hits);
	free(r);
}

/* What the trie (or a shared group) keeps of s: its QoS, with the 5.0
 * options that change routing above its two bits. */
static uint8_t router_sub_qos(const struct sub *s)
{
	return s->qos | (s->options & (CAIRN_SUB_NO_LOCAL | CAIRN_SUB_RETAIN_AS_PUBLISHED));
}

/*
 * A "$share/GROUP/FILTER" subscription joins or leaves its group instead of
 * the trie. Returns false for any other filter. One that fails to parse
 * (the callers validate first) is ignored.
 */
static bool router_share_subscribe(struct router *r, const struct sub *s, bool join)
{
	struct client *c = s->owner;
	struct topic_subfilter sf;
	if (!topic_is_shared(s->filter, s->len))
		return false;
	if (topic_subfilter_parse(s->filter, s->len, &sf) != TOPIC_OK)
		return true;
	if (join)
		share_join(r->shares, &sf, c, &c->shares, router_sub_qos(s), s->sub_id, !c->clean);
	else
		share_leave(r->shares, &sf, c);
	return true;
}

void router_subscribe(struct router *r, struct sub *s)
{
	if (!router_share_subscribe(r, s, true))
		topic_tree_insert(r->subs, s->filter, s->len, s, router_sub_qos(s));
}

void router_unsubscribe(struct router *r, struct sub *s)
{
	if (!router_share_subscribe(r, s, false))
		topic_tree_remove(r->subs, s->filter, s->len, s);
}

/*
 * One matching subscription of the walk. A session matched by several
 * gets one delivery, at the highest of their QoS, with every one of their
 * identifiers [MQTT5-3.3.4-3]; the identifiers land in the session's
 * reused array, so this allocates nothing once it has grown.
 */
static void router_match_cb(void *arg, void *subscriber, uint8_t qos)
{
	struct router *r = arg;
	const struct sub *s = subscriber;
	struct client *c = s->owner;
	/* qos carries the 5.0 options that change routing above its two bits. */
	uint8_t opts = qos;
	qos &= 0x03;
	if ((opts & CAIRN_SUB_NO_LOCAL) && c == r->origin)
		return; /* [MQTT5-3.8.3-3] */
	/* Cluster mode: a subscription matches the log's entries made after
	 * it, whichever way they come (live, or a session's catch-up). */
	if (r->msg->from_log && (r->msg->log_ms < s->since_ms || (r->msg->log_ms == s->since_ms &&
								  r->msg->log_seq <= s->since_seq)))
		return;
	if (r->only) {
		if (c != r->only)
			return;
	} else if (r->msg->from_log && !client_log_after(c, r->msg->log_ms, r->msg->log_seq)) {
		return; /* c's queue has it already, or c is catching up */
	}
	bool rap = opts & CAIRN_SUB_RETAIN_AS_PUBLISHED;
	if (c->match_gen == r->gen) {
		if (qos > c->match_qos)
			c->match_qos = qos;
		c->match_rap |= rap;
	} else {
		c->match_gen = r->gen;
		c->match_qos = qos;
		c->match_rap = rap;
		c->match_n_ids = 0;
		if (r->nhits == r->cap) {
			r->cap = r->cap ? r->cap * 2 : 16;
			r->hits = xrealloc(r->hits, r->cap * sizeof(*r->hits));
		}
		r->hits[r->nhits++] = c;
	}
	if (s->sub_id) {
		if (c->match_n_ids == c->match_ids_cap) {
			c->match_ids_cap = c->match_ids_cap ? c->match_ids_cap * 2 : 4;
			c->match_ids =
			    xrealloc(c->match_ids, c->match_ids_cap * sizeof(*c->match_ids));
		}
		c->match_ids[c->match_n_ids++] = s->sub_id;
	}
}

/* The QoS of c's one delivery of msg: the highest of its matching
 * subscriptions, capped by the published QoS. */
static uint8_t router_qos(const struct client *c, const struct message *msg)
{
	return c->match_qos < msg->qos ? c->match_qos : msg->qos;
}

/* Replace (or with an empty payload, clear) the retained message of the
 * topic. Returns true when a store write was staged. */
static bool router_set_retained(struct router *r, struct message *msg)
{
	struct message *old;
	/* The broker's own $SYS messages are rebuilt at every start: they
	 * are kept in memory only. */
	bool volatile_topic =
	    (msg->topic_len >= 5 && memcmp(msg->topic, "$SYS/", 5) == 0) || msg->from_log;
	if (volatile_topic) {
		old = retain_tree_set(r->retained, msg->topic, msg->topic_len,
				      msg->payload_len ? message_ref(msg) : NULL);
		if (old)
			message_unref(old);
		return false;
	}
	if (msg->payload_len == 0) {
		old = retain_tree_set(r->retained, msg->topic, msg->topic_len, NULL);
		if (!old)
			return false;
		message_unref(old);
		store_retained_delete(r->store, msg->topic);
		return true;
	}
	old = retain_tree_set(r->retained, msg->topic, msg->topic_len, message_ref(msg));
	if (old)
		message_unref(old);
	struct cairn_msg_rec rec = message_rec(msg);
	rec.msg_id = 0;
	rec.retain = true;
	store_retained_put(r->store, &rec);
	return true;
}

void router_retain_local(struct router *r, struct message *msg)
{
	bool from_log = msg->from_log;

	msg->from_log = true; /* the memory-only path */
	router_set_retained(r, msg);
	msg->from_log = from_log;
}

/* A shared group's chosen member gets a copy of its own, at the QoS of
 * its shared subscription capped by the published QoS [MQTT5-4.8.2-3]
 * (p->qos carries the routing options above its two bits). */
static uint8_t router_pick_qos(const struct share_pick *p, const struct message *msg)
{
	uint8_t q = p->qos & 0x03;
	return q < msg->qos ? q : msg->qos;
}

/* Whether a pick of share_route() is a delivery the store must hold. */
static bool router_picks_stored(const struct share_pick *picks, size_t n, const struct message *msg)
{
	for (size_t i = 0; i < n; i++) {
		const struct client *c = picks[i].session;
		if (router_pick_qos(&picks[i], msg) > 0 && !c->clean)
			return true;
	}
	return false;
}

/*
 * Deliver msg to each member that share_route() chose, besides (and
 * independently of) the session's own non-shared match: a session that is
 * both gets a copy for each. The gate's wait pumps each session once.
 */
static void router_deliver_picks(struct router *r, const struct share_pick *picks, size_t n,
				 struct message *msg, struct gate *gate, struct gate_wait *w)
{
	for (size_t i = 0; i < n; i++) {
		struct client *c = picks[i].session;
		bool retain = (picks[i].qos & CAIRN_SUB_RETAIN_AS_PUBLISHED) && msg->retain;
		/* The copy carries its shared subscription's identifier alone. */
		if (client_deliver(c, msg, router_pick_qos(&picks[i], msg), retain,
				   &picks[i].sub_id, picks[i].sub_id != 0,
				   gate) == CLIENT_DROPPED_FULL)
			r->last_full++;
		if (w && c->match_gen != r->gen) {
			c->match_gen = r->gen;
			gate_wait_add_target(w, c);
		}
	}
}

bool router_publish(struct router *r, struct message *msg)
{
	return router_publish_to(r, msg, NULL);
}

bool router_publish_to(struct router *r, struct message *msg, struct client *only)
{
	bool staged = !only && msg->retain && router_set_retained(r, msg);

	assert(!r->busy);
	r->busy = true;
	r->gen++;
	r->nhits = 0;
	r->origin = msg->origin;
	r->msg = msg;
	r->only = only;
	topic_tree_match(r->subs, msg->topic, msg->topic_len, router_match_cb, r);
	const struct share_pick *picks = NULL;
	/* Cluster mode: the log's messages reach groups through the store
	 * (cluster_share.c); a message of this node alone (its $SYS) goes to
	 * its groups here, to a member on this node. */
	size_t npicks = only || (r->shares_apart && msg->from_log)
			    ? 0
			    : share_route(r->shares, msg->topic, msg->topic_len, &picks);

	/* A QoS 1/2 delivery to a persistent session is stored first. */
	bool must_store = staged;
	for (size_t i = 0; i < r->nhits && !must_store; i++)
		must_store = router_qos(r->hits[i], msg) > 0 && !r->hits[i]->clean;
	must_store = must_store || router_picks_stored(picks, npicks, msg);

	struct gate *gate = must_store ? gate_new() : NULL;
	struct gate_wait *w = must_store ? gate_wait_new(NULL, NULL, 0, gate) : NULL;
	r->last_matched = r->nhits;
	r->last_full = 0;
	for (size_t i = 0; i < r->nhits; i++) {
		struct client *c = r->hits[i];
		/* Retain As Published keeps the flag [MQTT5-3.3.1-12]. */
		bool retain = c->match_rap && msg->retain;
		if (client_deliver(c, msg, router_qos(c, msg), retain, c->match_ids, c->match_n_ids,
				   gate) == CLIENT_DROPPED_FULL)
			r->last_full++;
		if (w)
			gate_wait_add_target(w, c);
	}
	r->last_matched += npicks;
	router_deliver_picks(r, picks, npicks, msg, gate, w);
	if (w) {
		gate_wait_submit(w, r->store);
		gate_unref(gate);
	}
	r->busy = false;
	r->only = NULL;
	r->msg = NULL;
	return must_store;
}

void router_shares_apart(struct router *r)
{
	r->shares_apart = true;
}

struct share_set *router_shares(struct router *r)
{
	return r->shares;
}

bool router_deliver_pick(struct router *r, struct message *msg, const struct share_pick *p)
{
	bool must_store = router_picks_stored(p, 1, msg);
	struct gate *gate = must_store ? gate_new() : NULL;
	struct gate_wait *w = must_store ? gate_wait_new(NULL, NULL, 0, gate) : NULL;

	assert(!r->busy);
	r->gen++;
	r->last_matched = 1;
	r->last_full = 0;
	router_deliver_picks(r, p, 1, msg, gate, w);
	if (w) {
		gate_wait_submit(w, r->store);
		gate_unref(gate);
	}
	return must_store;
}

struct router_retained_walk {
	struct client *c;
	uint8_t qos;
	uint32_t sub_id;
	struct gate *gate;
};

static void router_retained_cb(void *arg, void *value)
{
	struct router_retained_walk *w = arg;
	struct message *m = value;
	uint8_t q = m->qos < w->qos ? m->qos : w->qos;
	/* A retained message lives on only while its publisher may still
	 * write its topic, under the ACL in force now. */
	const struct message_source *s = m->source;
	if (s &&
	    !security_allows(s->sec, s->client_id, s->username, m->topic, m->topic_len, ACL_WRITE))
		return;
	client_deliver(w->c, m, q, true, &w->sub_id, w->sub_id != 0, w->gate);
}

void router_send_retained(struct router *r, struct client *c, const char *filter, size_t len,
			  uint8_t qos, uint32_t sub_id, struct gate *gate)
{
	struct router_retained_walk w = {c, qos, sub_id, gate};
	retain_tree_match(r->retained, filter, len, router_retained_cb, &w);
}

void router_last_result(const struct router *r, size_t *matched, size_t *full)
{
	*matched = r->last_matched;
	*full = r->last_full;
}

void router_load_retained(struct router *r, struct message *msg)
{
	struct message *old = retain_tree_set(r->retained, msg->topic, msg->topic_len, msg);
	if (old)
		message_unref(old);
}

size_t router_retained_count(const struct router *r)
{
	return retain_tree_count(r->retained);
}

struct message *router_retained_get(struct router *r, const char *topic, size_t len)
{
	return retain_tree_get(r->retained, topic, len);
}

void router_retained_put(struct router *r, const char *topic, size_t len, struct message *msg)
{
	struct message *old =
	    retain_tree_set(r->retained, topic, len, msg ? message_ref(msg) : NULL);

	if (old)
		message_unref(old);
}

bool router_has_retained(const struct router *r, const char *topic, size_t len)
{
	return retain_tree_get(r->retained, topic, len) != NULL;
}

bool router_clear_retained(struct router *r, const char *topic, size_t len)
{
	if (!retain_tree_get(r->retained, topic, len))
		return false;
	static const uint8_t none[1];
	struct message *m = message_new(topic, len, none, 0, 0, true);
	router_set_retained(r, m);
	message_unref(m);
	return true;
}
