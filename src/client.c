/*
 * The client object: handles the packets its connection reads, carries out
 * what the QoS 1 and QoS 2 state machines of qos.c decide, and pumps each
 * session's queue into its connection within the in-flight window.
 */
#include "client.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cairn/store.h"
#include "codec.h"
#include "conn.h"
#include "qos.h"
#include "server.h"
#include "store.h"
#include "topic.h"
#include "util.h"

/* ---- queues ---- */

static void dqueue_push(struct dqueue *q, struct delivery *d)
{
	d->next = NULL;
	d->prev = q->tail;
	if (q->tail)
		q->tail->next = d;
	else
		q->head = d;
	q->tail = d;
	q->count++;
}

static void dqueue_remove(struct dqueue *q, struct delivery *d)
{
	if (d->prev)
		d->prev->next = d->next;
	else
		q->head = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		q->tail = d->prev;
	d->prev = d->next = NULL;
	q->count--;
}

static struct delivery *dqueue_find(struct dqueue *q, uint16_t pid)
{
	for (struct delivery *d = q->head; d; d = d->next)
		if (d->pid == pid)
			return d;
	return NULL;
}

/* The in-flight window. Deliveries not yet written on the current
 * connection always form a suffix of it (they are written in order, and a
 * reconnect marks them all), so c->unwritten counts that suffix and the
 * pump starts there instead of walking the whole window. */
static void inflight_push(struct client *c, struct delivery *d)
{
	dqueue_push(&c->inflight, d);
	if (!d->written)
		c->unwritten++;
}

static void inflight_remove(struct client *c, struct delivery *d)
{
	if (!d->written)
		c->unwritten--;
	dqueue_remove(&c->inflight, d);
}

/* Release a delivery; when it was stored, delete its record and, with the
 * last stored reference, the message record. */
static void delivery_free(struct client *c, struct delivery *d, bool unstore)
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
	free(d);
}

static void delivery_store(struct client *c, const struct delivery *d)
{
	struct cairn_delivery_rec r = {
	    .client_id = c->id,
	    .seq = d->seq,
	    .msg_id = d->msg->id,
	    .packet_id = d->pid,
	    .qos = d->qos,
	    .state = d->state,
	};
	store_delivery_put(c->srv->store, &r);
}

/* ---- writing ---- */

static void conn_write_publish(struct conn *cn, struct message *m, uint8_t qos, uint16_t pid,
			       bool retain, bool dup)
{
	if (message_write_publish(m, conn_output(cn), qos, pid, retain, dup) == 0)
		cn->srv->stats.msgs_sent++;
}

/* Encode a two-byte-id acknowledgement; it always fits. */
static void ack_bytes(uint8_t out[CODEC_ACK_LEN], enum codec_type type, uint16_t pid)
{
	int n = codec_encode_ack(type, pid, out, CODEC_ACK_LEN);
	assert(n == CODEC_ACK_LEN);
	(void)n;
}

/* Send bytes to c after every packet to c that already waits for a commit,
 * or once the current batch commits when defer is set. Keeps PUBACKs and
 * PUBRECs in the order their PUBLISHes arrived. */
static void client_send_ordered(struct client *c, const uint8_t *bytes, size_t len, bool defer)
{
	if (!defer && c->deferred == 0) {
		conn_write(c->conn, bytes, len);
		return;
	}
	gate_wait_submit(gate_wait_new(c->srv, c, bytes, len, NULL));
}

/* ---- the outbound pump ---- */

static uint16_t client_next_pid(struct client *c)
{
	/* Skip ids still in flight; the window is far smaller than 65535. */
	for (int tries = 0; tries < 65536; tries++) {
		if (++c->next_pid == 0)
			c->next_pid = 1;
		if (!dqueue_find(&c->inflight, c->next_pid))
			return c->next_pid;
	}
	return 0;
}

/* max_inflight_messages 0 means "as many as packet ids allow". */
static bool window_open(const struct client *c)
{
	uint32_t max = c->srv->cfg->max_inflight_messages;
	if (max == 0 || max > 65535)
		max = 65535;
	return c->inflight.count < max;
}

/* True when the socket's output is full; the flush pumps again once it
 * has drained. */
static bool output_full(struct conn *cn)
{
	if (!conn_output_full(cn))
		return false;
	cn->want_pump = true;
	return true;
}

/* The queue of deliveries waiting for the window; it counts the bytes
 * (max_queued_bytes) and the QoS 0 entries (the first to be dropped). */
static void queue_push(struct client *c, struct delivery *d)
{
	dqueue_push(&c->queued, d);
	c->queued_bytes += d->msg->payload_len;
	if (d->qos == 0)
		c->queued_qos0++;
}

static void queue_take(struct client *c, struct delivery *d)
{
	dqueue_remove(&c->queued, d);
	c->queued_bytes -= d->msg->payload_len;
	if (d->qos == 0)
		c->queued_qos0--;
}

/* Move d from queued into the in-flight window with a fresh packet id. A
 * stored delivery is written only after its new state is committed, so a
 * crash never sends the same message again under a different id. */
static void client_promote(struct client *c, struct delivery *d, struct gate **gate)
{
	queue_take(c, d);
	d->pid = client_next_pid(c);
	d->state = CAIRN_DELIVERY_SENT;
	inflight_push(c, d);
	if (d->seq) {
		if (*gate == NULL)
			*gate = gate_new();
		if (d->gate)
			gate_unref(d->gate);
		d->gate = gate_ref(*gate);
		delivery_store(c, d);
	}
}

void client_pump(struct client *c)
{
	struct conn *cn = c->conn;
	if (!cn || cn->closing || !cn->connected)
		return;
	/* In-flight messages not yet written on this connection, in order. */
	bool held = false; /* an earlier message waits for its commit */
	struct delivery *first = c->inflight.tail;
	for (uint32_t i = 1; first && i < c->unwritten; i++)
		first = first->prev;
	for (struct delivery *d = c->unwritten ? first : NULL; d; d = d->next) {
		if (d->gate && !d->gate->open) {
			held = true;
			break;
		}
		if (output_full(cn))
			return;
		if (d->state == CAIRN_DELIVERY_PUBREC) {
			uint8_t b[CODEC_ACK_LEN];
			ack_bytes(b, CODEC_PUBREL, d->pid);
			conn_write(cn, b, sizeof(b));
		} else {
			conn_write_publish(cn, d->msg, d->qos, d->pid, d->retain, d->dup);
		}
		d->written = true;
		c->unwritten--;
		d->dup = true; /* any later send is a redelivery */
	}
	struct gate *gate = NULL;
	bool progress = false;
	while (c->queued.head && !output_full(cn)) {
		struct delivery *d = c->queued.head;
		if (d->gate && !d->gate->open)
			break;
		if ((held || gate) && d->qos == 0)
			break; /* never overtake a message still being stored */
		if (d->qos == 0) {
			queue_take(c, d);
			conn_write_publish(cn, d->msg, 0, 0, d->retain, false);
			delivery_free(c, d, true);
			continue;
		}
		if (!window_open(c))
			break;
		client_promote(c, d, &gate);
		progress = true;
	}
	if (gate) {
		struct gate_wait *p = gate_wait_new(c->srv, NULL, NULL, 0, gate);
		gate_wait_add_target(p, c);
		gate_wait_submit(p);
		gate_unref(gate);
	} else if (progress) {
		client_pump(c); /* write the promoted, unstored deliveries */
	}
}

/* Make room in the queue for one more message of qos; false if the new
 * message is the one to drop. QoS 0 goes first. */
static bool queue_make_room(struct client *c, uint8_t qos, uint32_t len)
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
			victim = victim->next;
		queue_take(c, victim);
		delivery_free(c, victim, true);
		c->dropped++;
		c->srv->stats.msgs_dropped++;
	}
}

static void log_drop(struct client *c)
{
	c->dropped++;
	c->srv->stats.msgs_dropped++;
	if (c->dropped == 1 || c->dropped % 1000 == 0)
		log_write(c->srv->log, LOG_LEVEL_WARNING,
			  "client %s: queue full (max_queued_messages %u, max_queued_bytes %llu): "
			  "%llu messages dropped so far",
			  c->id, c->srv->cfg->max_queued_messages,
			  (unsigned long long)c->srv->cfg->max_queued_bytes,
			  (unsigned long long)c->dropped);
}

void client_deliver(struct client *c, struct message *msg, uint8_t qos, bool retain,
		    struct gate *gate)
{
	if (c->dead)
		return;
	bool online = c->conn && c->conn->connected && !c->conn->closing;
	if (qos == 0) {
		if (!online)
			return; /* QoS 0 is not queued for offline sessions */
		bool behind = c->queued.head || (gate && !gate->open) || output_full(c->conn) ||
			      (c->inflight.tail && !c->inflight.tail->written);
		if (!behind) {
			conn_write_publish(c->conn, msg, 0, 0, retain, false);
			return;
		}
	}
	bool direct = qos > 0 && online && !c->queued.head && window_open(c);
	if (!direct && !queue_make_room(c, qos, msg->payload_len)) {
		log_drop(c);
		return;
	}
	struct delivery *d = xcalloc(1, sizeof(*d));
	d->msg = message_ref(msg);
	d->qos = qos;
	d->retain = retain;
	d->gate = gate ? gate_ref(gate) : NULL;
	if (qos > 0 && !c->clean) {
		struct store *st = c->srv->store;
		if (msg->id == 0) {
			msg->id = server_next_msg_id(c->srv);
			struct cairn_msg_rec mr = {
			    .msg_id = msg->id,
			    .topic = msg->topic,
			    .payload = msg->payload,
			    .payload_len = msg->payload_len,
			    .qos = msg->qos,
			    .retain = msg->retain,
			};
			store_message_put(st, &mr);
		}
		msg->stored_refs++;
		d->seq = ++c->next_seq;
		assert(gate != NULL);
	}
	if (direct) {
		d->pid = client_next_pid(c);
		d->state = CAIRN_DELIVERY_SENT;
		inflight_push(c, d);
	} else {
		d->state = CAIRN_DELIVERY_QUEUED;
		queue_push(c, d);
	}
	if (d->seq)
		delivery_store(c, d);
	if (!gate || gate->open)
		client_pump(c);
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
			dqueue_remove(qs[i], d);
			delivery_free(c, d, unstore);
		}
	}
	c->queued_bytes = 0;
	c->queued_qos0 = 0;
	c->unwritten = 0;
}

void client_unref(struct client *c)
{
	if (--c->refs > 0)
		return;
	client_free_queues(c, false);
	while (c->subs) {
		struct sub *s = c->subs;
		c->subs = s->next;
		free(s->filter);
		free(s);
	}
	if (c->will)
		message_unref(c->will);
	qos_in_cleanup(&c->in_qos2);
	free(c->username);
	free(c->id);
	free(c);
}

bool client_is_connected(const struct client *c)
{
	return c->conn != NULL && c->conn->connected && !c->conn->closing;
}

void client_store_session(struct client *c, bool connected)
{
	if (c->clean)
		return;
	struct cairn_session_rec r = {
	    .client_id = c->id,
	    .username = c->username,
	    .next_packet_id = c->next_pid,
	    .connected = connected,
	};
	if (c->will && connected) {
		r.has_will = true;
		r.will_topic = c->will->topic;
		r.will_payload = c->will->payload;
		r.will_payload_len = c->will->payload_len;
		r.will_qos = c->will->qos;
		r.will_retain = c->will->retain;
	}
	store_session_put(c->srv->store, &r);
	c->stored = true;
}

struct sub *client_add_sub(struct client *c, const char *filter, size_t len, uint8_t qos)
{
	struct sub *s;
	for (s = c->subs; s; s = s->next)
		if (s->len == len && memcmp(s->filter, filter, len) == 0)
			break;
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->filter = xstrndup(filter, len);
		s->len = (uint16_t)len;
		s->next = c->subs;
		c->subs = s;
	}
	s->qos = qos;
	topic_tree_insert(c->srv->subs, filter, len, c, qos);
	return s;
}

uint8_t client_subscribe(struct client *c, const char *filter, size_t len, uint8_t qos)
{
	struct sub *s = client_add_sub(c, filter, len, qos);
	if (!c->clean) {
		struct cairn_sub_rec r = {.client_id = c->id, .filter = s->filter, .qos = qos};
		store_sub_put(c->srv->store, &r);
	}
	return qos;
}

bool client_unsubscribe(struct client *c, const char *filter, size_t len)
{
	for (struct sub **pp = &c->subs; *pp; pp = &(*pp)->next) {
		struct sub *s = *pp;
		if (s->len != len || memcmp(s->filter, filter, len) != 0)
			continue;
		topic_tree_remove(c->srv->subs, s->filter, s->len, c);
		if (!c->clean)
			store_sub_delete(c->srv->store, c->id, s->filter);
		*pp = s->next;
		free(s->filter);
		free(s);
		return true;
	}
	return false;
}

void client_discard(struct client *c)
{
	if (c->dead)
		return;
	c->dead = true;
	for (struct sub *s = c->subs; s; s = s->next)
		topic_tree_remove(c->srv->subs, s->filter, s->len, c);
	/* Deleting each delivery also deletes messages nobody else holds. */
	client_free_queues(c, true);
	if (c->stored) {
		store_session_delete(c->srv->store, c->id);
		c->stored = false;
	}
	server_remove_client(c->srv, c);
}

void client_handle_last_will(struct client *c)
{
	struct message *w = c->will;
	if (!w)
		return;
	c->will = NULL;
	log_write(c->srv->log, LOG_LEVEL_INFO, "client %s: publishing will to '%s'", c->id,
		  w->topic);
	server_handle_incoming_publish(c->srv, w);
	message_unref(w);
}

void client_restore_delivery(struct client *c, struct message *msg, uint64_t seq, uint16_t pid,
			     uint8_t qos, uint8_t state)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
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
		inflight_push(c, d);
	} else {
		d->state = CAIRN_DELIVERY_QUEUED;
		queue_push(c, d);
	}
}

void client_restore_inflight_in(struct client *c, uint16_t pid)
{
	if (pid)
		qos_in_add(&c->in_qos2, pid);
}

/* ---- connections ---- */

void client_connection_lost(struct conn *cn, bool will_due)
{
	struct client *c = cn->client;
	if (!c)
		return;
	cn->client = NULL;
	if (c->conn == cn) {
		c->conn = NULL;
		for (struct delivery *d = c->inflight.head; d; d = d->next)
			d->written = false;
		c->unwritten = c->inflight.count;
		if (will_due)
			client_handle_last_will(c);
		else if (c->will) {
			message_unref(c->will);
			c->will = NULL;
		}
		if (c->clean)
			client_discard(c);
		else
			client_store_session(c, false);
	}
	client_unref(c);
}

/* ---- packet handlers ---- */

static void send_connack(struct conn *cn, bool sp, uint8_t rc)
{
	uint8_t b[CODEC_CONNACK_LEN];
	int n = codec_encode_connack(sp, rc, b, sizeof(b));
	assert(n == CODEC_CONNACK_LEN);
	(void)n;
	if (rc == CODEC_CONNACK_ACCEPTED)
		conn_write(cn, b, sizeof(b));
	else {
		static const char *why[] = {"",
					    "unacceptable protocol version",
					    "identifier rejected",
					    "server unavailable",
					    "bad user name or password",
					    "not authorized"};
		conn_close_after(cn, b, sizeof(b), why[rc]);
	}
}

static bool will_topic_forbidden(const struct codec_str *t)
{
	return (t->len >= 4 && memcmp(t->ptr, "$SYS", 4) == 0) ||
	       (t->len >= 8 && memcmp(t->ptr, "$CONTROL", 8) == 0);
}

static void handle_connect(struct conn *cn, const struct codec_connect *p)
{
	struct server *srv = cn->srv;
	const struct config *cfg = srv->cfg;
	char idbuf[64];
	const char *id = p->client_id.ptr;
	size_t id_len = p->client_id.len;

	if (id_len == 0) {
		if (!p->clean_session) {
			send_connack(cn, false, CODEC_CONNACK_ID_REJECTED);
			return;
		}
		id_len = (size_t)snprintf(idbuf, sizeof(idbuf), "cairn-auto-%llx-%llx",
					  (unsigned long long)cn->since_ms,
					  (unsigned long long)++srv->anon_counter);
		id = idbuf;
	}
	/* The codec checked the will topic as it checks a PUBLISH's. */
	if (p->will_flag && !topic_levels_ok(p->will_topic.ptr, p->will_topic.len)) {
		conn_close(cn, "invalid will topic", false);
		return;
	}
	if (p->will_flag && will_topic_forbidden(&p->will_topic)) {
		send_connack(cn, false, CODEC_CONNACK_NOT_AUTHORIZED);
		return;
	}
	if (!cfg->allow_anonymous && !p->has_username) {
		send_connack(cn, false, CODEC_CONNACK_NOT_AUTHORIZED);
		return;
	}
	if (p->has_username && !cfg->allow_anonymous) {
		/* No password file support yet: nobody can authenticate. */
		send_connack(cn, false, CODEC_CONNACK_BAD_AUTH);
		return;
	}

	bool session_present = false;
	struct client *c = server_get_known_client(srv, id, id_len);
	if (c && c->conn) {
		struct conn *old = c->conn;
		conn_close(old, "session taken over by a new connection", true);
		/* A clean session ended with its connection. */
		c = server_get_known_client(srv, id, id_len);
	}
	if (c && (p->clean_session || c->clean)) {
		client_discard(c);
		c = NULL;
	}
	if (c) {
		session_present = true;
	} else {
		c = client_new(srv, id, id_len, p->clean_session);
		server_add_client(srv, c);
		client_unref(c); /* the server's map holds it */
	}
	cn->client = client_ref(c);
	c->conn = cn;
	cn->connected = true;
	free(c->username);
	c->username = p->has_username ? xstrndup(p->username.ptr, p->username.len) : NULL;
	if (c->will) {
		message_unref(c->will);
		c->will = NULL;
	}
	if (p->will_flag)
		c->will = message_new(p->will_topic.ptr, p->will_topic.len,
				      (const uint8_t *)p->will_payload.ptr, p->will_payload.len,
				      p->will_qos, p->will_retain);
	uint16_t ka = p->keepalive;
	if (cfg->max_keepalive < 65535 && (ka == 0 || ka > cfg->max_keepalive))
		ka = cfg->max_keepalive;
	cn->keepalive = ka; /* the sweep in conn.c enforces 1.5 x ka */
	client_store_session(c, true);
	srv->stats.clients_connected++;
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "client %s connected from %s (protocol %s, clean_session %d, keepalive %u%s)",
		  c->id, cn->addr, p->protocol_level == 3 ? "3.1" : "3.1.1", p->clean_session, ka,
		  session_present ? ", session resumed" : "");
	send_connack(cn, session_present, CODEC_CONNACK_ACCEPTED);
	client_pump(c);
}

static void handle_publish(struct conn *cn, const struct codec_publish *p)
{
	struct client *c = cn->client;
	/* The codec checked UTF-8, emptiness and wildcards; levels remain. */
	if (!topic_levels_ok(p->topic.ptr, p->topic.len)) {
		conn_close(cn, "invalid topic name in PUBLISH", true);
		return;
	}
	uint8_t ack[CODEC_ACK_LEN];
	if (p->qos == 2 && qos_in_has(&c->in_qos2, p->packet_id)) {
		/* A resend before PUBREL: acknowledge again, deliver nothing. */
		ack_bytes(ack, CODEC_PUBREC, p->packet_id);
		client_send_ordered(c, ack, sizeof(ack), false);
		return;
	}
	bool staged = false;
	if (p->qos == 2) {
		qos_in_add(&c->in_qos2, p->packet_id);
		if (!c->clean) {
			struct cairn_inflight_in_rec r = {c->id, p->packet_id};
			store_inflight_in_put(cn->srv->store, &r);
			staged = true;
		}
	}
	struct message *m =
	    message_new(p->topic.ptr, p->topic.len, p->payload, p->payload_len, p->qos, p->retain);
	if (server_handle_incoming_publish(cn->srv, m))
		staged = true;
	message_unref(m);
	if (p->qos == 0)
		return;
	ack_bytes(ack, p->qos == 1 ? CODEC_PUBACK : CODEC_PUBREC, p->packet_id);
	client_send_ordered(c, ack, sizeof(ack), staged);
}

/* PUBACK, PUBREC or PUBCOMP for a delivery in flight: qos.c decides. */
static void handle_ack(struct client *c, uint16_t pid, enum qos_out_event event)
{
	struct delivery *d = dqueue_find(&c->inflight, pid);
	if (!d)
		return; /* unknown id: ignored */
	uint8_t rel[CODEC_ACK_LEN];
	switch (qos_out_step(d->qos, &d->state, event)) {
	case QOS_OUT_IGNORE:
		return;
	case QOS_OUT_COMPLETE:
		inflight_remove(c, d);
		delivery_free(c, d, true);
		client_pump(c);
		return;
	case QOS_OUT_RELEASE_AGAIN:
		ack_bytes(rel, CODEC_PUBREL, pid);
		client_send_ordered(c, rel, sizeof(rel), false);
		return;
	case QOS_OUT_RELEASE:
		/* The PUBLISH is never sent again, only PUBREL, and only once
		 * that is stored. */
		ack_bytes(rel, CODEC_PUBREL, pid);
		if (d->seq)
			delivery_store(c, d);
		client_send_ordered(c, rel, sizeof(rel), d->seq != 0);
		return;
	}
}

static void handle_pubrel(struct client *c, uint16_t pid)
{
	/* PUBCOMP frees the id for a new message: it goes out only once the
	 * store has forgotten the id, or a crash would bring it back and the
	 * next message under that id would be taken for a resend. */
	bool stored = qos_in_remove(&c->in_qos2, pid) && !c->clean;
	if (stored)
		store_inflight_in_delete(c->srv->store, c->id, pid);
	uint8_t comp[CODEC_ACK_LEN];
	ack_bytes(comp, CODEC_PUBCOMP, pid);
	client_send_ordered(c, comp, sizeof(comp), stored);
}

/*
 * SUBSCRIBE: one walk over the list grants or refuses each filter, then the
 * SUBACK goes out (after the commit for a persistent session, or behind
 * packets already waiting for one), followed by the retained messages of
 * every granted filter.
 */
static void handle_subscribe(struct conn *cn, const struct codec_list *l)
{
	struct client *c = cn->client;
	struct server *srv = cn->srv;
	size_t n_max = l->count ? l->count : 1;
	uint8_t *codes = xmalloc(n_max);
	struct codec_str *granted = xmalloc(n_max * sizeof(*granted));
	uint32_t pos = 0, n = 0;
	struct codec_str f;
	uint8_t qos;
	while (codec_list_next(CODEC_SUBSCRIBE, l, &pos, &f, &qos)) {
		if (topic_filter_validate(f.ptr, f.len) != 0) {
			log_write(srv->log, LOG_LEVEL_INFO, "client %s: refused filter '%.*s'",
				  c->id, (int)f.len, f.ptr);
			codes[n] = CODEC_SUBACK_FAILURE;
		} else {
			codes[n] = client_subscribe(c, f.ptr, f.len, qos);
		}
		granted[n++] = f;
	}
	/* SUBACK: fixed header (<= 5) + packet id + one code per filter. It
	 * is smaller than the SUBSCRIBE it answers, so it always encodes. */
	size_t cap = 7 + (size_t)n;
	uint8_t *suback = xmalloc(cap);
	int len = codec_encode_suback(l->packet_id, codes, n, suback, cap);
	assert(len > 0);
	bool defer = !c->clean || c->deferred > 0;
	struct gate *gate = defer ? gate_new() : NULL;
	struct gate_wait *p = NULL;
	if (defer)
		p = gate_wait_new(srv, c, suback, (size_t)len, gate);
	else
		conn_write(cn, suback, (size_t)len);
	for (uint32_t i = 0; i < n; i++)
		if (codes[i] != CODEC_SUBACK_FAILURE)
			server_enqueue_retained(srv, c, granted[i].ptr, granted[i].len, codes[i],
						gate);
	if (p) {
		gate_wait_add_target(p, c);
		gate_wait_submit(p);
		gate_unref(gate);
	}
	free(suback);
	free(granted);
	free(codes);
}

static void handle_unsubscribe(struct conn *cn, const struct codec_list *l)
{
	struct client *c = cn->client;
	uint32_t pos = 0;
	struct codec_str f;
	uint8_t qos;
	while (codec_list_next(CODEC_UNSUBSCRIBE, l, &pos, &f, &qos))
		client_unsubscribe(c, f.ptr, f.len);
	uint8_t b[CODEC_ACK_LEN];
	ack_bytes(b, CODEC_UNSUBACK, l->packet_id);
	/* Like SUBACK: a persistent session's change is stored first. */
	client_send_ordered(c, b, sizeof(b), !c->clean);
}

void client_handle_packet(struct conn *cn, const struct codec_packet *pk)
{
	if (pk->type == CODEC_CONNECT) {
		if (cn->connected) {
			conn_close(cn, "second CONNECT", true);
			return;
		}
		handle_connect(cn, &pk->u.connect);
		return;
	}
	struct client *c = cn->client;
	switch (pk->type) {
	case CODEC_PUBLISH:
		handle_publish(cn, &pk->u.publish);
		break;
	case CODEC_PUBACK:
		handle_ack(c, pk->u.packet_id, QOS_OUT_PUBACK);
		break;
	case CODEC_PUBREC:
		handle_ack(c, pk->u.packet_id, QOS_OUT_PUBREC);
		break;
	case CODEC_PUBREL:
		handle_pubrel(c, pk->u.packet_id);
		break;
	case CODEC_PUBCOMP:
		handle_ack(c, pk->u.packet_id, QOS_OUT_PUBCOMP);
		break;
	case CODEC_SUBSCRIBE:
		handle_subscribe(cn, &pk->u.list);
		break;
	case CODEC_UNSUBSCRIBE:
		handle_unsubscribe(cn, &pk->u.list);
		break;
	case CODEC_PINGREQ: {
		uint8_t pong[CODEC_PINGRESP_LEN];
		if (codec_encode_pingresp(pong, sizeof(pong)) == CODEC_PINGRESP_LEN)
			conn_write(cn, pong, sizeof(pong));
		break;
	}
	case CODEC_DISCONNECT:
		conn_close(cn, "client sent DISCONNECT", false);
		break;
	default:
		conn_close(cn, "protocol violation: packet type only a server may send", true);
		break;
	}
}
