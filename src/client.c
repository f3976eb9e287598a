/*
 * The session: its subscriptions, the queue of messages owed to it, the
 * in-flight window, and the pump that writes both into its connection.
 * Carries out what the QoS 1 and QoS 2 state machines of qos.c decide for
 * the messages it sends; protocol.c calls in for the packets it receives.
 */
#include "client.h"
#include "cluster.h"
#include "cluster_share.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cairn/store.h"
#include "codec.h"
#include "conn.h"
#include "dpool.h"
#include "gate.h"
#include "levelmap.h"
#include "log.h"
#include "message.h"
#include "pidmap.h"
#include "qos.h"
#include "router.h"
#include "security.h"
#include "server.h"
#include "share.h"
#include "store.h"
#include "topic.h"
#include "util.h"

/* ---- queues ---- */

/* A queued message costs its delivery: a 48-byte block of the server's
 * pool (dpool.c), with no allocator header. */
_Static_assert(sizeof(struct delivery) == DPOOL_BLOCK, "struct delivery is one pool block");

static struct delivery *client_delivery_new(struct client *c)
{
	return dpool_alloc(&c->srv->deliveries);
}

struct delivery *client_delivery_next(const struct client *c, const struct delivery *d)
{
	return dpool_at(&c->srv->deliveries, d->next);
}

static struct delivery *client_dprev(const struct client *c, const struct delivery *d)
{
	return dpool_at(&c->srv->deliveries, d->prev);
}

static void client_dqueue_push(struct client *c, struct dqueue *q, struct delivery *d)
{
	const struct dpool *p = &c->srv->deliveries;
	d->next = 0;
	d->prev = q->tail ? dpool_index(p, q->tail) : 0;
	if (q->tail)
		q->tail->next = dpool_index(p, d);
	else
		q->head = d;
	q->tail = d;
	q->count++;
}

static void client_dqueue_remove(struct client *c, struct dqueue *q, struct delivery *d)
{
	struct delivery *prev = client_dprev(c, d), *next = client_delivery_next(c, d);
	if (prev)
		prev->next = d->next;
	else
		q->head = next;
	if (next)
		next->prev = d->prev;
	else
		q->tail = prev;
	d->prev = d->next = 0;
	q->count--;
}

/* ---- the window's packet id index (pidmap.c) ---- */

static struct delivery *client_pid_find(const struct client *c, uint16_t pid)
{
	return pidmap_find(&c->by_pid, pid);
}

/* The in-flight window. Deliveries not yet written on the current
 * connection always form a suffix of it (they are written in order, and a
 * reconnect marks them all), so c->unwritten counts that suffix and the
 * pump starts there instead of walking the whole window. */
static void client_window_push(struct client *c, struct delivery *d)
{
	pidmap_add(&c->by_pid, d);
	client_dqueue_push(c, &c->inflight, d);
	if (!d->written)
		c->unwritten++;
}

static void client_window_remove(struct client *c, struct delivery *d)
{
	if (!d->written)
		c->unwritten--;
	client_dqueue_remove(c, &c->inflight, d);
	pidmap_remove(&c->by_pid, d);
}

/* Release a delivery; when it was stored, delete its record and, with the
 * last stored reference, the message record. */
static void client_delivery_free(struct client *c, struct delivery *d, bool unstore)
{
	struct message *m = d->msg;
	if (d->seq) {
		if (unstore)
			store_delivery_delete(c->srv->store, c->id, d->seq);
		if (m->stored_refs > 0 && --m->stored_refs == 0 && m->id) {
			if (unstore)
				store_message_delete(c->srv->store, m->id);
			m->id = 0;
		}
	}
	if (d->gate)
		gate_unref(d->gate);
	message_unref(m);
	if (d->n_sub_ids > 1)
		free(d->ids.many);
	dpool_free(&c->srv->deliveries, d);
}

/* The subscription identifiers d goes out with. */
static const uint32_t *client_delivery_ids(const struct delivery *d)
{
	return d->n_sub_ids > 1 ? d->ids.many : &d->ids.one;
}

static void client_delivery_store(struct client *c, const struct delivery *d)
{
	struct cairn_delivery_rec r = {
	    .client_id = c->id,
	    .seq = d->seq,
	    .msg_id = d->msg->id,
	    .packet_id = d->pid,
	    .qos = d->qos,
	    .state = d->state,
	    .retain = d->retain,
	    .sub_ids = d->n_sub_ids ? client_delivery_ids(d) : NULL,
	    .n_sub_ids = d->n_sub_ids,
	};
	store_delivery_put(c->srv->store, &r);
}

/* ---- writing ---- */

int64_t client_wall_ms(const struct client *c)
{
	struct timeval tv;
	event_base_gettimeofday_cached(c->srv->base, &tv);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* True once m's message expiry interval has passed: it is not sent. */
static bool client_msg_expired(const struct client *c, const struct message *m)
{
	if (!m->expires_at || client_wall_ms(c) < m->expires_at)
		return false;
	c->srv->stats.drop_expired++;
	return true;
}

/*
 * Topic aliases the broker assigns to a 5.0 client: first come, first
 * served. The first alias_out_max distinct topics sent on a connection
 * (at most CLIENT_ALIAS_OUT_CAP) get aliases 1, 2, ... for the rest of the
 * connection, and later topics go out in full: a hot topic is usually
 * among the first, and nothing is ever re-mapped, so the client's table
 * and the broker's never disagree. Open addressing by topic hash.
 */
#define CLIENT_ALIAS_OUT_CAP 1024
/* ... and the topics they name hold at most this many bytes, so a client
 * cannot make the broker keep 1024 topics of 64 KiB each. */
#define CLIENT_ALIAS_OUT_BYTES (64 * 1024)

struct client_alias {
	char *topic; /* NULL: free slot */
	uint32_t hash;
	uint16_t len;
	uint16_t alias;
};

struct client_aliases {
	struct client_alias *slots;
	uint32_t cap;   /* a power of two, over twice the aliases it can hold */
	uint32_t bytes; /* of the topics held */
	uint16_t used;
};

static void client_aliases_free(struct client *c)
{
	struct client_aliases *a = c->alias_out;
	if (a) {
		for (uint32_t i = 0; i < a->cap; i++)
			free(a->slots[i].topic);
		free(a->slots);
		free(a);
		c->alias_out = NULL;
	}
	if (c->alias_in) {
		for (uint32_t i = 0; i <= c->srv->cfg->max_topic_alias; i++)
			free(c->alias_in[i]);
		free(c->alias_in);
		c->alias_in = NULL;
	}
}

/* The slot of m's topic in c's aliases: its alias, or the free slot it
 * would take. NULL when c takes no aliases. */
static struct client_alias *client_alias_slot(struct client *c, const struct message *m)
{
	uint16_t max =
	    c->alias_out_max < CLIENT_ALIAS_OUT_CAP ? c->alias_out_max : CLIENT_ALIAS_OUT_CAP;
	if (max == 0)
		return NULL;
	struct client_aliases *a = c->alias_out;
	if (!a) {
		a = c->alias_out = xcalloc(1, sizeof(*a));
		a->cap = 4;
		while (a->cap <= 2u * max)
			a->cap *= 2;
		a->slots = xcalloc(a->cap, sizeof(*a->slots));
	}
	uint32_t h = levelmap_hash(m->topic, m->topic_len);
	for (uint32_t i = h & (a->cap - 1);; i = (i + 1) & (a->cap - 1)) {
		struct client_alias *s = &a->slots[i];
		if (!s->topic)
			return a->used < max && a->bytes + m->topic_len <= CLIENT_ALIAS_OUT_BYTES
				   ? s
				   : NULL;
		if (s->hash == h && s->len == m->topic_len &&
		    memcmp(s->topic, m->topic, m->topic_len) == 0)
			return s;
	}
}

/* One message not sent because it exceeds the client's maximum packet
 * size: as the standard says, it is discarded as if it had been
 * delivered [MQTT5-3.1.2-25], counted, and logged without flooding. */
static void client_count_too_large(struct client *c, const struct message *m)
{
	c->too_large++;
	c->srv->stats.drop_too_large++;
	uint64_t now = (uint64_t)client_wall_ms(c);
	if (c->too_large_logged > 0 && now - c->too_large_ms < 10000)
		return;
	log_write(c->srv->log, LOG_LEVEL_WARNING,
		  "client %s: message to '%s' not sent: larger than its maximum packet size %u "
		  "(%llu such messages since the last report, %llu in all)",
		  c->id, m->topic, c->max_packet,
		  (unsigned long long)(c->too_large - c->too_large_logged),
		  (unsigned long long)c->too_large);
	c->too_large_logged = c->too_large;
	c->too_large_ms = now;
}

/* Write m to c: 3.1.1 from the message's cached header, 5.0 with its
 * properties, ids and an alias. Returns 0, or MESSAGE_TOO_LARGE (counted;
 * the caller discards the delivery) or -1. */
static int client_write_publish(struct client *c, struct message *m, uint8_t qos, uint16_t pid,
				bool retain, bool dup, const uint32_t *ids, uint32_t n_ids)
{
	int rc;
	if (c->version != CODEC_V5) {
		rc = message_write_publish(m, conn_output(c->conn), qos, pid, retain, dup);
	} else {
		struct message_v5 o = {
		    .sub_ids = ids,
		    .n_sub_ids = n_ids,
		    .now_ms = m->expires_at ? client_wall_ms(c) : 0,
		    .max_packet = c->max_packet,
		};
		struct client_alias *slot = client_alias_slot(c, m);
		if (slot) {
			o.alias_only = slot->topic != NULL;
			o.alias = o.alias_only ? slot->alias : (uint16_t)(c->alias_out->used + 1);
		}
		rc = message_write_publish5(m, conn_output(c->conn), qos, pid, retain, dup, &o);
		if (rc == MESSAGE_TOO_LARGE && slot && !o.alias_only) {
			/* Maybe the alias alone made it too large: try without. */
			o.alias = 0;
			rc = message_write_publish5(m, conn_output(c->conn), qos, pid, retain, dup,
						    &o);
		} else if (rc == 0 && slot && !o.alias_only) {
			slot->topic = xstrndup(m->topic, m->topic_len);
			slot->len = m->topic_len;
			slot->hash = levelmap_hash(m->topic, m->topic_len);
			slot->alias = o.alias;
			c->alias_out->used++;
			c->alias_out->bytes += m->topic_len;
		}
		if (rc == MESSAGE_TOO_LARGE)
			client_count_too_large(c, m);
	}
	if (rc == 0) {
		c->srv->stats.msgs_sent_qos[qos]++;
		c->srv->stats.payload_out_qos[qos] += m->payload_len;
	}
	return rc;
}

/* Encode a two-byte-id acknowledgement; it always fits. */
static void client_ack_bytes(uint8_t out[CODEC_ACK_LEN], enum codec_type type, uint16_t pid)
{
	int n = codec_encode_ack(type, pid, out, CODEC_ACK_LEN);
	assert(n == CODEC_ACK_LEN);
	(void)n;
}

/* bytes end one PUBLISH of c's counted against the receive maximum
 * (quota) once they are written. */
static void client_send_ordered_q(struct client *c, const uint8_t *bytes, size_t len, bool defer,
				  bool quota)
{
	if (!defer && c->deferred == 0) {
		conn_write(c->conn, bytes, len);
		if (quota && c->in_unacked)
			c->in_unacked--;
		return;
	}
	struct gate_wait *w = gate_wait_new(c, bytes, len, NULL);
	if (quota)
		gate_wait_release_quota(w);
	gate_wait_submit(w, c->srv->store);
}

void client_send_ordered(struct client *c, const uint8_t *bytes, size_t len, bool defer)
{
	client_send_ordered_q(c, bytes, len, defer, false);
}

void client_send_ack_rc(struct client *c, enum codec_type type, uint16_t pid, uint8_t reason,
			bool defer)
{
	uint8_t b[8];
	int n;
	if (c->version == CODEC_V5)
		n = codec_v5_encode_ack(type, pid, reason, NULL, 0, b, sizeof(b));
	else
		n = codec_encode_ack(type, pid, b, sizeof(b));
	assert(n > 0);
	/* What frees a slot of the broker's Receive Maximum: the end of a
	 * QoS 1/2 exchange the client started (a PUBCOMP for an unknown id,
	 * 0x92, ends nothing). */
	bool quota = c->version == CODEC_V5 &&
		     (type == CODEC_PUBACK || (type == CODEC_PUBCOMP && reason == 0) ||
		      (type == CODEC_PUBREC && reason >= 0x80));
	client_send_ordered_q(c, b, (size_t)n, defer, quota);
}

void client_send_ack(struct client *c, enum codec_type type, uint16_t pid, bool defer)
{
	client_send_ack_rc(c, type, pid, 0, defer);
}

/* ---- the outbound pump ---- */

static uint16_t client_next_pid(struct client *c)
{
	/* Skip ids still in flight; the window never holds all 65535. */
	for (int tries = 0; tries < 65536; tries++) {
		if (++c->next_pid == 0)
			c->next_pid = 1;
		if (!client_pid_find(c, c->next_pid))
			return c->next_pid;
	}
	return 0;
}

/* max_inflight_messages 0 means "as many as packet ids allow". */
static bool client_window_open(const struct client *c)
{
	uint32_t max = c->srv->cfg->max_inflight_messages;
	if (max == 0 || max > 65535)
		max = 65535;
	/* A 5.0 client's receive maximum caps it too [MQTT5-3.3.4-7]. */
	if (c->version == CODEC_V5 && c->recv_max && c->recv_max < max)
		max = c->recv_max;
	return c->inflight.count < max;
}

/* The queue of deliveries waiting for the window; it counts the bytes
 * (max_queued_bytes) and the QoS 0 entries (the first to be dropped). */
static void client_queue_push(struct client *c, struct delivery *d)
{
	client_dqueue_push(c, &c->queued, d);
	c->queued_bytes += d->msg->payload_len;
	if (d->qos == 0)
		c->queued_qos0++;
}

static void client_queue_take(struct client *c, struct delivery *d)
{
	client_dqueue_remove(c, &c->queued, d);
	c->queued_bytes -= d->msg->payload_len;
	if (d->qos == 0)
		c->queued_qos0--;
}

/* Give d a fresh packet id in the in-flight window. */
/*
 * The packet identifier of a stored delivery follows from its sequence
 * number. A delivery sent before a crash whose "sent" record was not yet
 * durable is restored as queued and goes out again under the same id
 * (MQTT-4.4.0-1: a QoS 2 receiver that holds the id recognises it), so
 * the PUBLISH need not wait for that record's commit. 0 while that id is
 * still in flight (a delivery 65,535 sequence numbers older, or one
 * restored with an id of its own): the window then waits for it.
 */
static uint16_t client_seq_pid(const struct client *c, uint64_t seq)
{
	uint16_t pid = (uint16_t)((seq - 1) % 65535 + 1);
	return client_pid_find(c, pid) ? 0 : pid;
}

/* The identifier d would enter the window with; 0 while it must wait. */
static uint16_t client_window_pid(struct client *c, const struct delivery *d)
{
	return d->seq ? client_seq_pid(c, d->seq) : client_next_pid(c);
}

/* Put d in the window under pid (from client_window_pid). */
static void client_window_enter(struct client *c, struct delivery *d, uint16_t pid)
{
	d->pid = pid;
	d->state = CAIRN_DELIVERY_SENT;
	client_window_push(c, d);
}

static bool client_gate_closed(const struct gate *g)
{
	return g && !g->open;
}

/*
 * Whether c may read a message on topic now, under the ACL of its last
 * connection. A session with none since the start (restored, offline) is
 * let through here: its deliveries are checked before they are sent,
 * when it has connected. A refusal is counted.
 */
static bool client_may_read(struct client *c, const char *topic, size_t len)
{
	if (!c->sec || !c->sec->acl ||
	    security_allows(c->sec, c->id, c->username, topic, len, ACL_READ))
		return true;
	c->srv->stats.acl_denied++;
	c->srv->stats.drop_acl++;
	return false;
}

/* The next of c's stamps. They are 16 bits (a delivery carries one): at
 * the wrap every delivery of c is marked never checked, so no stamp can
 * match one given 65,535 stamps before. */
static uint16_t client_acl_next(struct client *c)
{
	if (c->acl_stamp == UINT16_MAX) {
		struct dqueue *qs[2] = {&c->inflight, &c->queued};
		for (int i = 0; i < 2; i++)
			for (struct delivery *d = qs[i]->head; d; d = client_delivery_next(c, d))
				d->acl_stamp = 0;
		c->acl_stamp = 0;
	}
	return ++c->acl_stamp;
}

/* A number that changes whenever what c may read can have changed: a new
 * identity (client_set_identity) or a new ACL (a reload). A delivery found
 * readable under one stamp is not checked again under it. */
static uint16_t client_acl_stamp(struct client *c)
{
	if (c->acl_gen_seen != c->sec->acl_gen) {
		c->acl_gen_seen = c->sec->acl_gen;
		client_acl_next(c);
	}
	return c->acl_stamp;
}

/* The same for a delivery about to be sent: checked again only when the
 * identity or the ACL changed since, or never was (restored), so a live
 * delivery costs one check. */
static bool client_delivery_readable(struct client *c, struct delivery *d)
{
	if (!c->sec || !c->sec->acl)
		return true;
	/* The stamp first: a wrap resets d's, which must be read after it. */
	uint16_t now = client_acl_stamp(c);
	if (d->acl_stamp == now)
		return true;
	if (!client_may_read(c, d->msg->topic, d->msg->topic_len))
		return false;
	d->acl_stamp = c->acl_stamp;
	return true;
}

void client_set_identity(struct client *c, char *username, const struct security *sec)
{
	free(c->username);
	c->username = username;
	c->sec = sec;
	c->acl_gen_seen = sec->acl_gen;
	client_acl_next(c);
}

/*
 * Write the in-flight deliveries not yet written on this connection, in
 * order (they are a suffix of the window). Returns false when it had to
 * stop: at a delivery still waiting for its commit (*held is set) or at a
 * full output.
 */
static bool client_write_window(struct client *c, bool *held)
{
	struct delivery *d = c->inflight.tail;
	for (uint32_t i = 1; d && i < c->unwritten; i++)
		d = client_dprev(c, d);
	struct delivery *next;
	for (d = c->unwritten ? d : NULL; d; d = next) {
		next = client_delivery_next(c, d);
		if (client_gate_closed(d->gate)) {
			*held = true;
			return false;
		}
		if (conn_output_full(c->conn))
			return false;
		/* A window carried over from an earlier connection (or a
		 * restart) may hold more than this client's Receive Maximum:
		 * no more PUBLISHes out than it allows unacknowledged; an ack
		 * pumps the rest [MQTT5-3.3.4-9]. */
		if (d->state != CAIRN_DELIVERY_PUBREC && c->version == CODEC_V5 && c->recv_max &&
		    c->inflight.count - c->unwritten >= c->recv_max)
			return false;
		if (d->state == CAIRN_DELIVERY_PUBREC) {
			/* Only the release goes out: nothing of the message. */
			uint8_t b[CODEC_ACK_LEN];
			client_ack_bytes(b, CODEC_PUBREL, d->pid);
			conn_write(c->conn, b, sizeof(b));
		} else if (!client_delivery_readable(c, d) ||
			   (!d->dup && client_msg_expired(c, d->msg)) ||
			   client_write_publish(c, d->msg, d->qos, d->pid, d->retain, d->dup,
						client_delivery_ids(d),
						d->n_sub_ids) == MESSAGE_TOO_LARGE) {
			/* Unreadable, expired before its first send, or too large
			 * for the client: discarded as if delivered. */
			client_window_remove(c, d);
			client_delivery_free(c, d, true);
			continue;
		}
		d->written = true;
		c->unwritten--;
		d->dup = true; /* any later send is a redelivery */
	}
	return true;
}

/*
 * Move queued deliveries into the window while it and the output have
 * room; QoS 0 ones are written and freed on the way, never overtaking one
 * held back (held). A stored delivery gets its new state staged; it is
 * written at once, as its identifier follows from its sequence number
 * (client_seq_pid). Returns true when deliveries entered the window: they
 * can be written now.
 */
/* The commit a backlogged store was waiting for is done: pump again. */
static void client_store_room(void *arg, bool durable)
{
	struct client *c = arg;
	c->store_wait = false;
	if (durable && !c->dead)
		client_pump(c);
	client_unref(c);
}

/* Whether the window may take a stored delivery now. Not while the store
 * is backlogged (store_backlogged): the pump resumes once the commit in
 * flight is done (the backlog then commits), so a fast drain keeps its
 * staged writes bounded instead of holding a put and a delete for most of
 * its queue. */
static bool client_store_has_room(struct client *c)
{
	struct store *st = c->srv->store;
	if (!st || !store_backlogged(st))
		return true;
	if (!c->store_wait) {
		c->store_wait = true;
		store_after_inflight(st, client_store_room, client_ref(c));
	}
	return false;
}

static bool client_fill_window(struct client *c, bool held)
{
	bool ready = false;
	while (c->queued.head && !conn_output_full(c->conn)) {
		struct delivery *d = c->queued.head;
		if (client_gate_closed(d->gate))
			break;
		if (!client_delivery_readable(c, d) || client_msg_expired(c, d->msg)) {
			client_queue_take(c, d);
			client_delivery_free(c, d, true);
			continue;
		}
		if (d->qos == 0) {
			if (held)
				break;
			client_queue_take(c, d);
			client_write_publish(c, d->msg, 0, 0, d->retain, false,
					     client_delivery_ids(d), d->n_sub_ids);
			client_delivery_free(c, d, true);
			continue;
		}
		if (d->seq && client_window_open(c) && !client_store_has_room(c))
			break;
		uint16_t pid = client_window_open(c) ? client_window_pid(c, d) : 0;
		if (pid == 0)
			break;
		client_queue_take(c, d);
		client_window_enter(c, d, pid);
		ready = true;
		if (d->seq)
			client_delivery_store(c, d);
	}
	return ready;
}

void client_pump(struct client *c)
{
	if (!client_is_connected(c))
		return;
	bool ready;
	do {
		bool held = false;
		if (!client_write_window(c, &held) && !held)
			return; /* the output is full; the drained hook pumps again */
		ready = client_fill_window(c, held);
	} while (ready);
}

/* A session's queue-full drops are logged at most this often. */
#define CLIENT_DROP_LOG_MS 10000

static uint64_t client_now_ms(const struct client *c)
{
	struct timeval tv;
	event_base_gettimeofday_cached(c->srv->base, &tv);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/*
 * One message dropped for c because its queue is full: counted for the
 * session and the broker. The first drop is logged, then at most one line
 * per CLIENT_DROP_LOG_MS with the drops since the last; the session
 * record, which carries the count to the store (cairn-store stats), is
 * written at the same moments and when the session is next stored for
 * another reason (connect, disconnect, shutdown).
 */
static void client_count_drop(struct client *c)
{
	c->dropped++;
	c->srv->stats.drop_queue_full++;
	uint64_t now = client_now_ms(c);
	if (c->dropped_logged > 0 && now - c->drop_logged_ms < CLIENT_DROP_LOG_MS)
		return;
	log_write(c->srv->log, LOG_LEVEL_WARNING,
		  "client %s: queue full (max_queued_messages %u, max_queued_bytes %llu): "
		  "%llu messages dropped since the last report, %llu in all",
		  c->id, c->srv->cfg->max_queued_messages,
		  (unsigned long long)c->srv->cfg->max_queued_bytes,
		  (unsigned long long)(c->dropped - c->dropped_logged),
		  (unsigned long long)c->dropped);
	c->dropped_logged = c->dropped;
	c->drop_logged_ms = now;
	client_store_session(c, client_is_connected(c));
}

void client_store_drops(struct client *c)
{
	if (c->dropped != c->dropped_stored)
		client_store_session(c, client_is_connected(c));
}

/* Make room in the queue for one more message of qos; false if the new
 * message is the one to drop. QoS 0 goes first. */
static bool client_queue_make_room(struct client *c, uint8_t qos, uint32_t len)
{
	const struct config *cfg = c->srv->cfg;
	for (;;) {
		bool full =
		    (cfg->max_queued_messages && c->queued.count >= cfg->max_queued_messages) ||
		    (cfg->max_queued_bytes && c->queued_bytes + len > cfg->max_queued_bytes);
		if (!full)
			return true;
		if (qos == 0 || c->queued_qos0 == 0)
			return false;
		struct delivery *victim = c->queued.head;
		while (victim->qos != 0)
			victim = client_delivery_next(c, victim);
		client_queue_take(c, victim);
		client_delivery_free(c, victim, true);
		client_count_drop(c);
	}
}

/* Stage the message record once, however many sessions store it. */
static void client_store_message(struct client *c, struct message *msg)
{
	if (msg->id == 0) {
		msg->id = server_next_msg_id(c->srv);
		struct cairn_msg_rec mr = message_rec(msg);
		store_message_put(c->srv->store, &mr);
	}
	msg->stored_refs++;
}

int client_deliver(struct client *c, struct message *msg, uint8_t qos, bool retain,
		   const uint32_t *ids, uint32_t n_ids, struct gate *gate)
{
	if (c->dead || !client_may_read(c, msg->topic, msg->topic_len))
		return CLIENT_SKIPPED;
	bool online = client_is_connected(c);
	if (qos == 0 && !online)
		return CLIENT_SKIPPED; /* QoS 0 is not queued for offline sessions */
	if (client_msg_expired(c, msg))
		return CLIENT_SKIPPED;
	if (c->version != CODEC_V5)
		n_ids = 0;
	if (n_ids > UINT16_MAX)
		n_ids = UINT16_MAX;
	/* Nothing of c's may be overtaken: not a queue, an unwritten window
	 * entry, a full output, or this message's own pending commit. */
	bool in_order = online && !c->queued.head && c->unwritten == 0 &&
			!client_gate_closed(gate) && !conn_output_full(c->conn);
	if (qos == 0 && in_order) {
		client_write_publish(c, msg, 0, 0, retain, false, ids, n_ids);
		return CLIENT_DELIVERED;
	}
	/* A QoS 1/2 message may enter the window at once (it is written when
	 * its gate opens); otherwise it waits in the queue, if there is room. */
	bool to_window = qos > 0 && online && !c->queued.head && client_window_open(c);
	if (!to_window && !client_queue_make_room(c, qos, msg->payload_len)) {
		client_count_drop(c);
		return CLIENT_DROPPED_FULL;
	}
	struct delivery *d = client_delivery_new(c);
	d->msg = message_ref(msg);
	d->qos = qos;
	d->retain = retain;
	d->n_sub_ids = (uint16_t)n_ids;
	if (n_ids == 1)
		d->ids.one = ids[0];
	else if (n_ids > 1)
		d->ids.many = xmemdup(ids, n_ids * sizeof(*ids));
	d->acl_stamp = c->sec && c->sec->acl ? client_acl_stamp(c) : 0;
	d->gate = gate ? gate_ref(gate) : NULL;
	if (qos > 0 && !c->clean) {
		assert(gate != NULL); /* router_publish gates every stored delivery */
		client_store_message(c, msg);
		d->seq = ++c->next_seq;
	}
	/* A stored delivery whose identifier is still in flight (65,535
	 * sequence numbers on) queues even past the limit: that is rare and
	 * the window frees it. */
	uint16_t pid = to_window ? client_window_pid(c, d) : 0;
	if (pid != 0) {
		client_window_enter(c, d, pid);
	} else {
		d->state = CAIRN_DELIVERY_QUEUED;
		client_queue_push(c, d);
	}
	if (d->seq)
		client_delivery_store(c, d);
	if (!client_gate_closed(gate))
		client_pump(c);
	return CLIENT_DELIVERED;
}

/* ---- sessions ---- */

struct client *client_new(struct server *srv, const char *id, size_t id_len, bool clean)
{
	struct client *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->refs = 1;
	c->id = xstrndup(id, id_len);
	c->id_len = id_len;
	c->clean = clean;
	c->version = CODEC_V311;
	c->problem_info = true;
	c->expiry = clean ? 0 : srv->cfg->persistent_client_expiration;
	return c;
}

struct client *client_ref(struct client *c)
{
	c->refs++;
	return c;
}

static void client_free_queues(struct client *c, bool unstore)
{
	struct dqueue *qs[2] = {&c->inflight, &c->queued};
	for (int i = 0; i < 2; i++) {
		while (qs[i]->head) {
			struct delivery *d = qs[i]->head;
			client_dqueue_remove(c, qs[i], d);
			client_delivery_free(c, d, unstore);
		}
	}
	c->queued_bytes = 0;
	c->queued_qos0 = 0;
	c->unwritten = 0;
	pidmap_cleanup(&c->by_pid);
}

void client_unref(struct client *c)
{
	if (--c->refs > 0)
		return;
	client_free_queues(c, false);
	for (uint32_t i = 0; i < c->subs.cap; i++) {
		while (c->subs.slots[i]) {
			struct sub *s = c->subs.slots[i];
			c->subs.slots[i] = s->hnext;
			free(s->filter);
			free(s);
		}
	}
	free(c->subs.slots);
	free(c->match_ids);
	client_aliases_free(c);
	if (c->timer)
		event_free(c->timer);
	if (c->will)
		message_unref(c->will);
	qos_in_cleanup(&c->in_qos2);
	free(c->username);
	free(c->id);
	free(c);
}

bool client_is_connected(const struct client *c)
{
	return c->conn != NULL && conn_is_open(c->conn);
}

void client_store_session(struct client *c, bool connected)
{
	/* In cluster mode a clean session's will is stored while it is
	 * connected, so that the cluster's janitor can publish it if this node
	 * dies (its expiry interval 0 marks it clean). */
	if (c->clean && !(c->srv->cluster && connected && c->will))
		return;
	struct cairn_session_rec r = {
	    .client_id = c->id,
	    .username = c->username,
	    .next_packet_id = c->next_pid,
	    .connected = connected,
	    .dropped = c->dropped,
	    .protocol_level = c->version,
	    .expiry_interval = c->expiry,
	    .expires_at = connected ? 0 : c->expires_at,
	    .will_delay = c->will_delay,
	    .will_at = c->will_at,
	};
	/* A will is stored while it can still fire: while connected (a crash
	 * makes it due), and while a delayed will waits. */
	if (c->will && (connected || c->will_at)) {
		r.has_will = true;
		r.will_topic = c->will->topic;
		r.will_payload = c->will->payload;
		r.will_payload_len = c->will->payload_len;
		r.will_qos = c->will->qos;
		r.will_retain = c->will->retain;
		r.will_props = c->will->props;
		r.will_props_len = c->will->props_len;
	}
	store_session_put(c->srv->store, &r);
	c->stored = true;
	c->dropped_stored = c->dropped;
}

/* ---- subscriptions ---- */

/* The link that points at filter's entry, or at the NULL that ends its
 * chain. */
static struct sub **client_sub_link(struct client *c, const char *filter, size_t len, uint32_t hash)
{
	struct sub **pp = &c->subs.slots[hash & (c->subs.cap - 1)];
	for (; *pp; pp = &(*pp)->hnext)
		if ((*pp)->hash == hash && (*pp)->len == len &&
		    memcmp((*pp)->filter, filter, len) == 0)
			break;
	return pp;
}

static void client_sub_grow(struct client *c)
{
	struct sub_table t = {.cap = c->subs.cap ? c->subs.cap * 2 : 8, .count = c->subs.count};
	t.slots = xcalloc(t.cap, sizeof(*t.slots));
	for (uint32_t i = 0; i < c->subs.cap; i++) {
		while (c->subs.slots[i]) {
			struct sub *s = c->subs.slots[i];
			c->subs.slots[i] = s->hnext;
			s->hnext = t.slots[s->hash & (t.cap - 1)];
			t.slots[s->hash & (t.cap - 1)] = s;
		}
	}
	free(c->subs.slots);
	c->subs = t;
}

/* The subscription to filter, or NULL. */
static struct sub *client_sub_find(struct client *c, const char *filter, size_t len, uint32_t hash)
{
	return c->subs.cap ? *client_sub_link(c, filter, len, hash) : NULL;
}

struct sub *client_sub_get(struct client *c, const char *filter, size_t len)
{
	return client_sub_find(c, filter, len, levelmap_hash(filter, len));
}

uint32_t client_sub_id(struct client *c, const char *filter, size_t len)
{
	struct sub *s = client_sub_get(c, filter, len);
	return s ? s->sub_id : 0;
}

struct sub *client_add_sub_opts(struct client *c, const char *filter, size_t len, uint8_t opts,
				uint32_t sub_id)
{
	uint8_t qos = opts & 0x03;
	uint32_t hash = levelmap_hash(filter, len);
	struct sub *s = client_sub_find(c, filter, len, hash);
	if (!s) {
		if (c->subs.count >= c->subs.cap)
			client_sub_grow(c);
		s = xcalloc(1, sizeof(*s));
		s->owner = c;
		s->filter = xstrndup(filter, len);
		s->len = (uint16_t)len;
		s->hash = hash;
		struct sub **head = &c->subs.slots[hash & (c->subs.cap - 1)];
		s->hnext = *head;
		*head = s;
		c->subs.count++;
	}
	s->qos = qos;
	s->options =
	    opts & (CAIRN_SUB_NO_LOCAL | CAIRN_SUB_RETAIN_AS_PUBLISHED | CAIRN_SUB_RETAIN_HANDLING);
	s->sub_id = sub_id;
	router_subscribe(c->srv->router, s);
	return s;
}

uint8_t client_subscribe_opts(struct client *c, const char *filter, size_t len, uint8_t opts,
			      uint32_t sub_id, bool *existed)
{
	uint32_t max = c->srv->cfg->max_subscriptions;
	*existed = client_sub_find(c, filter, len, levelmap_hash(filter, len)) != NULL;
	if (max && c->subs.count >= max && !*existed) {
		log_write(c->srv->log, LOG_LEVEL_WARNING,
			  "client %s: refused filter '%.*s': max_subscriptions %u reached", c->id,
			  (int)len, filter, max);
		return CODEC_SUBACK_FAILURE;
	}
	struct sub *s = client_add_sub_opts(c, filter, len, opts, sub_id);
	if (!*existed && c->srv->cluster)
		cluster_sub_since(c->srv, s);
	if (!c->clean) {
		struct cairn_sub_rec r = {.client_id = c->id,
					  .filter = s->filter,
					  .qos = s->qos,
					  .options = s->options,
					  .sub_id = s->sub_id,
					  .since_ms = s->since_ms,
					  .since_seq = s->since_seq};
		store_sub_put(c->srv->store, &r);
	}
	return s->qos;
}

bool client_unsubscribe(struct client *c, const char *filter, size_t len)
{
	if (!c->subs.cap)
		return false;
	struct sub **pp = client_sub_link(c, filter, len, levelmap_hash(filter, len));
	struct sub *s = *pp;
	if (!s)
		return false;
	router_unsubscribe(c->srv->router, s);
	if (!c->clean)
		store_sub_delete(c->srv->store, c->id, s->filter);
	*pp = s->hnext;
	c->subs.count--;
	free(s->filter);
	free(s);
	return true;
}

void client_leave_router(struct client *c)
{
	for (uint32_t i = 0; i < c->subs.cap; i++)
		for (struct sub *s = c->subs.slots[i]; s; s = s->hnext)
			router_unsubscribe(c->srv->router, s);
}

void client_discard(struct client *c)
{
	if (c->dead)
		return;
	if (c->will_at) {
		/* A will still waiting for its delay goes out as the session
		 * ends, however it ends [MQTT5-3.1.3-9, MQTT5-3.1.2-8]. */
		c->will_at = 0;
		client_handle_last_will(c);
	}
	c->dead = true;
	if (c->timer)
		event_del(c->timer);
	if (c->srv->cluster)
		cluster_share_left(c->srv, c, NULL, 0); /* its session ends */
	client_leave_router(c);
	/* Deleting each delivery also deletes messages nobody else holds. */
	client_free_queues(c, true);
	if (c->stored) {
		store_session_delete(c->srv->store, c->id);
		c->stored = false;
	}
	server_remove_client(c->srv, c);
}

void client_forget(struct client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	if (c->timer)
		event_del(c->timer);
	client_leave_router(c);
	client_free_queues(c, false);
	c->stored = false;
	server_remove_client(c->srv, c);
}

void client_handle_last_will(struct client *c)
{
	struct message *w = c->will;
	if (!w)
		return;
	c->will = NULL;
	/* Checked again against the ACL in force now: it may have changed
	 * since the CONNECT, or the session was restored after a restart. */
	const struct security *s = c->sec ? c->sec : security_for_unknown(&c->srv->security);
	if (!security_allows(s, c->id, c->username, w->topic, w->topic_len, ACL_WRITE)) {
		c->srv->stats.acl_denied++;
		log_write(c->srv->log, LOG_LEVEL_NOTICE,
			  "client %s: will to '%s' dropped: the ACL denies writing it", c->id,
			  w->topic);
		message_unref(w);
		return;
	}
	if (w->retain && s->acl && !w->source)
		message_set_source(w, c->id, c->username, s);
	/* A will's message expiry interval starts when it is published. */
	struct codec_props pr;
	if (w->props_len &&
	    codec_props_parse(CODEC_WILL, w->props, w->props_len, &pr) == CODEC_OK &&
	    CODEC_PROP_HAS(&pr, CODEC_PROP_MESSAGE_EXPIRY)) {
		w->expires_at = client_wall_ms(c) + (int64_t)pr.message_expiry * 1000;
		int n = codec_props_filter(w->props, w->props_len,
					   (uint64_t)1 << CODEC_PROP_MESSAGE_EXPIRY, w->props,
					   w->props_len);
		w->props_len = n > 0 ? (uint32_t)n : 0;
	}
	/* Cluster mode: the claim this connection is held under (a claim
	 * elsewhere may take the will too; the store appends it once). */
	w->will_serial = c->cluster_serial;
	log_write(c->srv->log, LOG_LEVEL_INFO, "client %s: publishing will to '%s'", c->id,
		  w->topic);
	c->srv->stats.msgs_received_qos[w->qos]++;
	c->srv->stats.payload_in_qos[w->qos] += w->payload_len;
	server_publish(c->srv, w, c);
	message_unref(w);
}

void client_restore_delivery(struct client *c, struct message *msg, uint64_t seq, uint16_t pid,
			     uint8_t qos, uint8_t state)
{
	struct delivery *d = client_delivery_new(c);
	d->msg = message_ref(msg);
	msg->stored_refs++;
	d->seq = seq;
	d->qos = qos;
	if (seq > c->next_seq)
		c->next_seq = seq;
	if (state != CAIRN_DELIVERY_QUEUED && pid != 0) {
		d->pid = pid;
		d->state = state;
		d->dup = true;
		client_window_push(c, d);
	} else {
		d->state = CAIRN_DELIVERY_QUEUED;
		client_queue_push(c, d);
	}
}

void client_restore_delivery5(struct client *c, bool retain, const uint32_t *sub_ids, uint32_t n)
{
	struct delivery *d = c->queued.tail;
	if (c->inflight.tail && (!d || c->inflight.tail->seq > d->seq))
		d = c->inflight.tail;
	if (!d)
		return;
	d->retain = retain;
	if (n > UINT16_MAX)
		n = UINT16_MAX;
	d->n_sub_ids = (uint16_t)n;
	if (n == 1) {
		d->ids.one = sub_ids[0];
	} else if (n > 1) {
		d->ids.many = xmemdup(sub_ids, n * sizeof(*sub_ids));
	}
}

void client_restore_inflight_in(struct client *c, uint16_t pid)
{
	if (pid)
		qos_in_add(&c->in_qos2, pid);
}

/* PUBACK, PUBREC or PUBCOMP for a delivery in flight: qos.c decides. */
void client_handle_ack(struct client *c, uint16_t pid, enum qos_out_event event)
{
	struct delivery *d = client_pid_find(c, pid);
	if (!d)
		return; /* unknown id: ignored */
	switch (qos_out_step(d->qos, &d->state, event)) {
	case QOS_OUT_IGNORE:
		return;
	case QOS_OUT_COMPLETE:
		client_window_remove(c, d);
		client_delivery_free(c, d, true);
		client_pump(c);
		return;
	case QOS_OUT_RELEASE_AGAIN:
		client_send_ack(c, CODEC_PUBREL, pid, false);
		return;
	case QOS_OUT_RELEASE:
		/* The PUBLISH is never sent again, only PUBREL, and only once
		 * that is stored. */
		if (d->seq)
			client_delivery_store(c, d);
		client_send_ack(c, CODEC_PUBREL, pid, d->seq != 0);
		return;
	}
}

void client_handle_pubrec_error(struct client *c, uint16_t pid)
{
	struct delivery *d = client_pid_find(c, pid);
	if (!d || d->qos != 2 || d->state != CAIRN_DELIVERY_SENT)
		return;
	/* The receiver refused the message: its QoS 2 flow ends here
	 * [MQTT5-4.3.3-4 and 5.0 section 4.9]. */
	client_window_remove(c, d);
	client_delivery_free(c, d, true);
	client_pump(c);
}

/* ---- the connection ---- */

void client_attach(struct client *c, struct conn *cn)
{
	c->conn = cn;
	conn_set_owner(cn, client_ref(c));
	share_session_online(c->shares, true); /* its groups may choose it first */
	/* A new connection: aliases and quotas start over, and a session or a
	 * will that was to end meanwhile no longer does. */
	client_aliases_free(c);
	c->in_unacked = 0;
	c->expires_at = 0;
	c->will_at = 0;
	client_arm_timer(c);
}

/* ---- session expiry and delayed wills ---- */

static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct client *c = arg;
	if (client_is_connected(c) || c->dead)
		return;
	int64_t now = client_wall_ms(c);
	client_ref(c);
	bool ends = c->expires_at && now >= c->expires_at;
	if (c->will_at && now >= c->will_at && !ends) {
		/* The will delay passed; the session goes on. (When the
		 * session ends first, client_discard publishes the will.) */
		c->will_at = 0;
		client_handle_last_will(c);
		client_store_session(c, false);
	}
	if (ends) {
		log_write(c->srv->log, LOG_LEVEL_NOTICE,
			  "client %s: session expired (session expiry interval %u s)", c->id,
			  c->expiry);
		c->srv->stats.sessions_expired++;
		client_discard(c);
	} else {
		client_arm_timer(c);
	}
	client_unref(c);
}

void client_arm_timer(struct client *c)
{
	int64_t due = c->expires_at;
	if (c->will_at && (!due || c->will_at < due))
		due = c->will_at;
	if (!due || c->dead) {
		if (c->timer)
			event_del(c->timer);
		return;
	}
	if (!c->timer)
		c->timer = evtimer_new(c->srv->base, client_timer_cb, c);
	int64_t left = due - client_wall_ms(c);
	if (left < 0)
		left = 0;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

void client_session_offline(struct client *c, bool will_due)
{
	if (c->dead)
		return; /* forgotten: another node holds the session now */
	int64_t now = client_wall_ms(c);
	if (will_due && c->will && c->will_delay && !c->clean && c->expiry != 0) {
		/* A delayed will waits for the delay or the end of the session. */
		c->will_at = now + (int64_t)c->will_delay * 1000;
	} else if (will_due) {
		client_handle_last_will(c);
	} else if (c->will) {
		message_unref(c->will);
		c->will = NULL;
	}
	if (c->clean || c->expiry == 0) {
		client_discard(c);
		return;
	}
	c->expires_at = c->expiry == CAIRN_EXPIRY_NEVER ? 0 : now + (int64_t)c->expiry * 1000;
	if (c->srv->cluster) {
		/* Offline sessions live in the store alone; one a new connection
		 * here takes over goes on at once (it stores itself). */
		if (!c->taking_over)
			cluster_park(c);
		return;
	}
	client_store_session(c, false);
	client_arm_timer(c);
}

void client_detach(struct client *c, struct conn *cn, bool will_due)
{
	conn_set_owner(cn, NULL);
	if (c->conn == cn) {
		c->conn = NULL;
		share_session_online(c->shares, false);
		/* Everything in flight goes out again on the next connection. */
		for (struct delivery *d = c->inflight.head; d; d = client_delivery_next(c, d))
			d->written = false;
		c->unwritten = c->inflight.count;
		client_session_offline(c, will_due);
	}
	client_unref(c);
}
