/*
 * Check suite for the broker's MQTT 5.0 session logic, driven in-process as
 * check_qos does: a server on the memory store, 5.0 clients on
 * socketpairs speaking through the project codec, the loop run by hand.
 * Durability is checked through a named memory store that outlives a
 * server (a restart), and through records written with the vtable as a
 * broker that crashed would have left them; deadlines are set in the past
 * or far in the future, so nothing here waits for a clock.
 */
#include "client.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "message.h"
#include "server.h"
#include "store.h"
#include "util.h"

#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_PEERS 8
#define PEER_BUF  (64 * 1024)

struct peer {
	int fd;
	bool eof;
	size_t len;
	uint8_t buf[PEER_BUF];
	uint8_t pkt[PEER_BUF]; /* the last packet popped, which rx points into */
};

struct broker {
	struct config cfg;
	struct log lg;
	struct event_base *base;
	struct server srv;
	struct peer *peers[MAX_PEERS];
	size_t npeers;
};

static int64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void broker_start(struct broker *b, const char *store)
{
	memset(b, 0, sizeof(*b));
	config_init(&b->cfg);
	free(b->cfg.persistence_location);
	b->cfg.persistence_location = store ? xstrdup(store) : NULL;
	b->cfg.persistence_backend = xstrdup("memory");
	log_init(&b->lg);
	b->lg.dests = LOG_DEST_STDERR;
	b->lg.mask = LOG_LEVEL_ERROR;
	b->base = event_base_new();
	ck_assert_ptr_nonnull(b->base);
	ck_assert_int_eq(server_init(&b->srv, &b->cfg, &b->lg, b->base), 0);
}

static void peer_close(struct broker *b, struct peer *p)
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

static void broker_stop(struct broker *b)
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

static size_t peer_read(struct peer *p)
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

static void pump(struct broker *b)
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

static void broker_restart(struct broker *b)
{
	server_stop(&b->srv);
	pump(b);
	server_cleanup(&b->srv);
	while (b->npeers)
		peer_close(b, b->peers[0]);
	ck_assert_int_eq(server_init(&b->srv, &b->cfg, &b->lg, b->base), 0);
}

static void peer_send(struct peer *p, const struct codec_packet *pk)
{
	uint8_t out[2048];
	int n = codec_encode_v(CODEC_V5, pk, out, sizeof(out));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(write(p->fd, out, (size_t)n), n);
}

static struct peer *peer_new(struct broker *b)
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

/* Pop the next whole packet off p, decoded as 5.0 into pk (which points
 * into p->pkt until the next call); false if none is buffered. */
static bool peer_next(struct peer *p, struct codec_packet *pk)
{
	struct codec_header h;
	if (codec_parse_header_v(CODEC_V5, p->buf, p->len, CODEC_MAX_REMAINING, &h) != CODEC_OK)
		return false;
	size_t total = (size_t)h.header_len + h.remaining;
	if (p->len < total)
		return false;
	memcpy(p->pkt, p->buf, total);
	memmove(p->buf, p->buf + total, p->len - total);
	p->len -= total;
	ck_assert_int_eq(
	    codec_decode_v(CODEC_V5, p->pkt[0], p->pkt + h.header_len, h.remaining, pk), CODEC_OK);
	return true;
}

static void expect_type(struct peer *p, struct codec_packet *pk, uint8_t type)
{
	ck_assert_msg(peer_next(p, pk), "no packet; expected type %u", type);
	ck_assert_msg(pk->type == type, "got packet type %u; expected %u", pk->type, type);
}

static void expect_none(struct peer *p)
{
	struct codec_packet pk;
	bool got = peer_next(p, &pk);
	ck_assert_msg(!got, "unexpected packet type %u", pk.type);
}

/* CONNECT in 5.0 with a session expiry interval; the CONNACK is checked. */
static struct peer *connect5(struct broker *b, const char *id, bool clean, uint32_t expiry, bool sp)
{
	struct peer *p = peer_new(b);
	uint8_t pb[16];
	struct codec_propbuf pr;
	codec_propbuf_init(&pr, pb, sizeof(pb));
	if (expiry)
		codec_propbuf_add_int(&pr, CODEC_PROP_SESSION_EXPIRY, expiry);
	struct codec_packet pk = {.type = CODEC_CONNECT};
	pk.u.connect.protocol_level = CODEC_V5;
	pk.u.connect.clean_session = clean;
	pk.u.connect.client_id.ptr = id;
	pk.u.connect.client_id.len = (uint16_t)strlen(id);
	pk.u.connect.props.data = pb;
	pk.u.connect.props.len = (uint32_t)pr.len;
	peer_send(p, &pk);
	pump(b);
	struct codec_packet r;
	expect_type(p, &r, CODEC_CONNACK);
	ck_assert_uint_eq(r.u.connack.return_code, 0);
	ck_assert_msg(r.u.connack.session_present == sp, "%s: session present %d", id,
		      r.u.connack.session_present);
	return p;
}

static struct client *known(struct broker *b, const char *id)
{
	return server_get_known_client(&b->srv, id, strlen(id));
}

/* The memory store's records, as a restarted broker would read them. */
struct seen {
	struct cairn_session_rec s;
	char will_topic[64];
	bool found;
};

static int seen_session(void *arg, const struct cairn_session_rec *r)
{
	struct seen *sn = arg;
	if (strcmp(r->client_id, "exp") == 0) {
		sn->s = *r;
		sn->found = true;
	}
	return 0;
}

/* A 5.0 session's expiry interval and level are stored with it, and the
 * deadline is set when its connection ends; restored, the session keeps
 * them and its timer runs. */
/* covers: MQTT5-3.1.2-23 MQTT5-3.1.2-5 */
START_TEST(test_session_expiry_stored_and_restored)
{
	static const char *const where = "check_mqtt5-expiry";
	struct broker b;
	broker_start(&b, where);
	struct peer *p = connect5(&b, "exp", false, 3600, false);
	struct codec_packet d = {.type = CODEC_DISCONNECT};
	peer_send(p, &d);
	pump(&b);
	int64_t t = wall_ms();
	struct client *c = known(&b, "exp");
	ck_assert_ptr_nonnull(c);
	/* The broker reads the wall clock through libevent's cache, which
	 * may run a few ms apart from gettimeofday(): a second of slack. */
	ck_assert_int_ge(c->expires_at, t + 3599000);
	ck_assert_int_le(c->expires_at, t + 3601000);
	ck_assert(c->timer && evtimer_pending(c->timer, NULL));

	broker_restart(&b);
	c = known(&b, "exp");
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->version, CODEC_V5);
	ck_assert_uint_eq(c->expiry, 3600);
	ck_assert_int_ge(c->expires_at, t + 3599000);
	ck_assert(c->timer && evtimer_pending(c->timer, NULL));

	/* The record itself. */
	struct seen sn = {0};
	struct cairn_store_visitor v = {.arg = &sn, .session = seen_session};
	ck_assert_int_eq(store_load(b.srv.store, &v), 0);
	ck_assert(sn.found);
	ck_assert_uint_eq(sn.s.protocol_level, 5);
	ck_assert_uint_eq(sn.s.expiry_interval, 3600);
	ck_assert_int_eq(sn.s.expires_at, c->expires_at);
	ck_assert(!sn.s.connected);

	/* Resumed: the deadline is gone, and the session was present. */
	connect5(&b, "exp", false, 3600, true);
	c = known(&b, "exp");
	ck_assert_int_eq(c->expires_at, 0);
	ck_assert(!evtimer_pending(c->timer, NULL));
	broker_stop(&b);
}
END_TEST

/* Write a session record (and optionally a subscription) to a named
 * memory store as a broker that stopped would have left it. */
static void store_session(const char *where, const struct cairn_session_rec *s,
			  const struct cairn_sub_rec *sub)
{
	struct cairn_store_options opts = {.location = where};
	struct cairn_store *st = NULL;
	char err[256];
	ck_assert_int_eq(cairn_store_memory.open(&opts, &st, err, sizeof(err)), 0);
	ck_assert_int_eq(cairn_store_memory.session_put(st, s), 0);
	if (sub)
		ck_assert_int_eq(cairn_store_memory.sub_put(st, sub), 0);
	ck_assert_int_eq(cairn_store_memory.commit(st, NULL, NULL), 0);
	cairn_store_memory.close(st);
}

/* A session whose deadline passed while the broker was down is discarded
 * at restore, and the delayed will it still held goes out as it ends
 * (retained here, so a later subscriber sees it). */
/* covers: MQTT5-3.1.2-8 */
START_TEST(test_expired_session_discarded_at_restore_will_published)
{
	static const char *const where = "check_mqtt5-expired";
	int64_t now = wall_ms();
	uint8_t wp[32];
	struct codec_propbuf pb;
	codec_propbuf_init(&pb, wp, sizeof(wp));
	codec_propbuf_add_user(&pb, "k", 1, "v", 1);
	struct cairn_session_rec s = {
	    .client_id = "gone",
	    .has_will = true,
	    .will_topic = "will/gone",
	    .will_payload = (const uint8_t *)"bye",
	    .will_payload_len = 3,
	    .will_retain = true,
	    .protocol_level = 5,
	    .expiry_interval = 10,
	    .expires_at = now - 1000,
	    .will_delay = 60,
	    .will_at = now + 50000,
	    .will_props = wp,
	    .will_props_len = (uint32_t)pb.len,
	};
	struct cairn_sub_rec sub = {.client_id = "gone", .filter = "x", .qos = 1};
	store_session(where, &s, &sub);
	struct broker b;
	broker_start(&b, where);
	ck_assert_ptr_null(known(&b, "gone"));
	struct peer *w = connect5(&b, "watch", true, 0, false);
	struct codec_packet pk = {.type = CODEC_SUBSCRIBE};
	uint8_t list[32];
	int n = codec_list_append(CODEC_SUBSCRIBE, list, 0, sizeof(list), "will/#", 6, 1);
	pk.u.list.packet_id = 1;
	pk.u.list.count = 1;
	pk.u.list.data = list;
	pk.u.list.data_len = (uint32_t)n;
	peer_send(w, &pk);
	pump(&b);
	struct codec_packet r;
	expect_type(w, &r, CODEC_SUBACK);
	expect_type(w, &r, CODEC_PUBLISH);
	ck_assert_uint_eq(r.u.publish.topic.len, 9);
	ck_assert(r.u.publish.retain);
	/* The will's user property went with it. */
	struct codec_str name, value;
	uint32_t pos = 0;
	ck_assert(codec_props_next_user(&r.u.publish.props, &pos, &name, &value));
	ck_assert_uint_eq(name.len, 1);
	ck_assert_int_eq(name.ptr[0], 'k');
	broker_stop(&b);
}
END_TEST

/* A session connected when the broker died: its will delay starts at the
 * restart (the will is not published at once), and so does its expiry. A
 * will whose delay already passed (will_at in the past) goes out. */
/* covers: MQTT5-3.1.3-9 */
START_TEST(test_crash_with_will_delay_pending)
{
	static const char *const where = "check_mqtt5-crash";
	int64_t now = wall_ms();
	struct cairn_session_rec s = {
	    .client_id = "crashed",
	    .has_will = true,
	    .will_topic = "will/c",
	    .will_payload = (const uint8_t *)"x",
	    .will_payload_len = 1,
	    .connected = true,
	    .protocol_level = 5,
	    .expiry_interval = 600,
	    .will_delay = 300,
	};
	store_session(where, &s, NULL);
	struct broker b;
	broker_start(&b, where);
	struct client *c = known(&b, "crashed");
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(c->will);
	ck_assert_int_ge(c->will_at, now + 299000);
	ck_assert_int_ge(c->expires_at, now + 599000);
	ck_assert(evtimer_pending(c->timer, NULL));
	/* Reconnecting within the delay cancels the will. */
	connect5(&b, "crashed", false, 600, true);
	ck_assert_int_eq(c->will_at, 0);
	ck_assert_ptr_null(c->will);
	broker_stop(&b);
}
END_TEST

/* Subscription options and identifiers, a message's properties and
 * expiry, and a delivery's identifiers and retain flag survive a restart
 * and go out with the message. */
/* covers: MQTT5-3.3.4-3 MQTT5-3.3.2-17 MQTT5-3.3.2-6 */
START_TEST(test_queued_message_keeps_properties_across_restart)
{
	static const char *const where = "check_mqtt5-props";
	struct broker b;
	broker_start(&b, where);
	struct peer *sub = connect5(&b, "sub5", false, 3600, false);
	uint8_t sp[8];
	struct codec_propbuf spb;
	codec_propbuf_init(&spb, sp, sizeof(sp));
	codec_propbuf_add_int(&spb, CODEC_PROP_SUBSCRIPTION_ID, 42);
	uint8_t list[32];
	int n = codec_list_append(CODEC_SUBSCRIBE, list, 0, sizeof(list), "p/#", 3,
				  1 | CODEC_SUBOPT_RETAIN_AS_PUB);
	struct codec_packet pk = {.type = CODEC_SUBSCRIBE};
	pk.u.list.packet_id = 1;
	pk.u.list.count = 1;
	pk.u.list.data = list;
	pk.u.list.data_len = (uint32_t)n;
	pk.u.list.props.data = sp;
	pk.u.list.props.len = (uint32_t)spb.len;
	peer_send(sub, &pk);
	pump(&b);
	struct codec_packet r;
	expect_type(sub, &r, CODEC_SUBACK);
	peer_close(&b, sub); /* the subscriber goes away; its session stays */
	pump(&b);

	struct peer *pub = connect5(&b, "pub5", true, 0, false);
	uint8_t pp[64];
	struct codec_propbuf ppb;
	codec_propbuf_init(&ppb, pp, sizeof(pp));
	codec_propbuf_add_int(&ppb, CODEC_PROP_MESSAGE_EXPIRY, 3600);
	codec_propbuf_add_user(&ppb, "a", 1, "1", 1);
	codec_propbuf_add_str(&ppb, CODEC_PROP_CONTENT_TYPE, "text/x", 6);
	struct codec_packet m = {.type = CODEC_PUBLISH};
	m.u.publish.qos = 1;
	m.u.publish.retain = true;
	m.u.publish.topic.ptr = "p/q";
	m.u.publish.topic.len = 3;
	m.u.publish.packet_id = 9;
	m.u.publish.payload = (const uint8_t *)"hi";
	m.u.publish.payload_len = 2;
	m.u.publish.props.data = pp;
	m.u.publish.props.len = (uint32_t)ppb.len;
	peer_send(pub, &m);
	pump(&b);
	expect_type(pub, &r, CODEC_PUBACK);
	ck_assert_uint_eq(r.u.ack.reason, 0);

	broker_restart(&b);
	sub = connect5(&b, "sub5", false, 3600, true);
	expect_type(sub, &r, CODEC_PUBLISH);
	ck_assert(r.u.publish.retain); /* retain as published */
	ck_assert_uint_eq(r.u.publish.props.sub_id_count, 1);
	ck_assert_uint_eq(r.u.publish.props.sub_id, 42);
	ck_assert_uint_eq(r.u.publish.props.user_count, 1);
	ck_assert_uint_eq(r.u.publish.props.content_type.len, 6);
	ck_assert(CODEC_PROP_HAS(&r.u.publish.props, CODEC_PROP_MESSAGE_EXPIRY));
	ck_assert_uint_le(r.u.publish.props.message_expiry, 3600);
	ck_assert_uint_ge(r.u.publish.props.message_expiry, 3590);
	broker_stop(&b);
}
END_TEST

/* A queued message whose expiry passed while the broker was down is not
 * delivered from the restored store. */
/* covers: MQTT5-3.3.2-5 */
START_TEST(test_expired_message_not_delivered_from_store)
{
	static const char *const where = "check_mqtt5-msgexp";
	int64_t now = wall_ms();
	struct cairn_store_options opts = {.location = where};
	struct cairn_store *st = NULL;
	char err[256];
	ck_assert_int_eq(cairn_store_memory.open(&opts, &st, err, sizeof(err)), 0);
	struct cairn_session_rec s = {
	    .client_id = "q", .protocol_level = 5, .expiry_interval = CAIRN_EXPIRY_NEVER};
	struct cairn_msg_rec old = {.msg_id = 1,
				    .topic = "t",
				    .payload = (const uint8_t *)"old",
				    .payload_len = 3,
				    .qos = 1,
				    .expires_at = now - 1};
	struct cairn_msg_rec fresh = {.msg_id = 2,
				      .topic = "t",
				      .payload = (const uint8_t *)"new",
				      .payload_len = 3,
				      .qos = 1,
				      .expires_at = now + 600000};
	struct cairn_delivery_rec d1 = {.client_id = "q", .seq = 1, .msg_id = 1, .qos = 1};
	struct cairn_delivery_rec d2 = {.client_id = "q", .seq = 2, .msg_id = 2, .qos = 1};
	ck_assert_int_eq(cairn_store_memory.session_put(st, &s), 0);
	ck_assert_int_eq(cairn_store_memory.message_put(st, &old), 0);
	ck_assert_int_eq(cairn_store_memory.message_put(st, &fresh), 0);
	ck_assert_int_eq(cairn_store_memory.delivery_put(st, &d1), 0);
	ck_assert_int_eq(cairn_store_memory.delivery_put(st, &d2), 0);
	ck_assert_int_eq(cairn_store_memory.commit(st, NULL, NULL), 0);
	cairn_store_memory.close(st);
	struct broker b;
	broker_start(&b, where);
	struct peer *p = connect5(&b, "q", false, 0xFFFFFFFFu, true);
	struct codec_packet r;
	expect_type(p, &r, CODEC_PUBLISH);
	ck_assert_uint_eq(r.u.publish.payload_len, 3);
	ck_assert_int_eq(memcmp(r.u.publish.payload, "new", 3), 0);
	expect_none(p);
	broker_stop(&b);
}
END_TEST

/* A 3.1.1 persistent session expires persistent_client_expiration after
 * its connection ends (Mosquitto's duration syntax). */
START_TEST(test_persistent_client_expiration_311)
{
	ck_assert_int_eq(config_parse_duration("1h"), 3600);
	ck_assert_int_eq(config_parse_duration("2d"), 2 * 86400);
	ck_assert_int_eq(config_parse_duration("1w"), 7 * 86400);
	ck_assert_int_eq(config_parse_duration("3m"), 90 * 86400);
	ck_assert_int_eq(config_parse_duration("1y"), 365 * 86400);
	ck_assert_int_eq(config_parse_duration("10"), -1);
	ck_assert_int_eq(config_parse_duration("h"), -1);
	ck_assert_int_eq(config_parse_duration("1hh"), -1);
	ck_assert_int_eq(config_parse_duration("-1h"), -1);

	struct broker b;
	broker_start(&b, "check_mqtt5-pce");
	b.cfg.persistent_client_expiration = 7200;
	struct peer *p = peer_new(&b);
	struct codec_packet pk = {.type = CODEC_CONNECT};
	pk.u.connect.protocol_level = CODEC_V311;
	pk.u.connect.client_id.ptr = "old";
	pk.u.connect.client_id.len = 3;
	uint8_t out[64];
	int n = codec_encode(&pk, out, sizeof(out));
	ck_assert_int_eq(write(p->fd, out, (size_t)n), n);
	pump(&b);
	peer_close(&b, p);
	pump(&b);
	struct client *c = known(&b, "old");
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->expiry, 7200);
	ck_assert_int_ge(c->expires_at, wall_ms() + 7199000 - 1000);
	ck_assert(evtimer_pending(c->timer, NULL));
	broker_stop(&b);

	/* Unset: a 3.1.1 session never expires. */
	broker_start(&b, NULL);
	p = peer_new(&b);
	ck_assert_int_eq(write(p->fd, out, (size_t)n), n);
	pump(&b);
	peer_close(&b, p);
	pump(&b);
	c = known(&b, "old");
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->expiry, CAIRN_EXPIRY_NEVER);
	ck_assert_int_eq(c->expires_at, 0);
	broker_stop(&b);
}
END_TEST

/* A 5.0 PUBLISH as one subscriber gets it: the message's forwarded
 * properties in their order, then the remaining expiry, the alias and the
 * identifiers; an alias-only send leaves the topic out; a packet over the
 * client's maximum is not written at all. */
/* covers: MQTT5-3.3.2-18 MQTT5-3.1.2-24 */
START_TEST(test_publish5_encoding_per_subscriber)
{
	struct message *m = message_new("a/b", 3, (const uint8_t *)"payload", 7, 1, false);
	uint8_t pp[32];
	struct codec_propbuf pb;
	codec_propbuf_init(&pb, pp, sizeof(pp));
	codec_propbuf_add_user(&pb, "x", 1, "1", 1);
	codec_propbuf_add_user(&pb, "a", 1, "2", 1);
	message_set_props(m, pp, pb.len);
	m->expires_at = 100000;
	uint32_t ids[2] = {5, 268435455};
	struct message_v5 o = {.sub_ids = ids, .n_sub_ids = 2, .alias = 3, .now_ms = 40500};
	struct evbuffer *out = evbuffer_new();
	ck_assert_int_eq(message_write_publish5(m, out, 1, 77, true, false, &o), 0);
	size_t len = evbuffer_get_length(out);
	uint8_t *b = evbuffer_pullup(out, (ev_ssize_t)len);
	struct codec_header h;
	ck_assert_int_eq(codec_parse_header_v(CODEC_V5, b, len, CODEC_MAX_REMAINING, &h), CODEC_OK);
	ck_assert_uint_eq(h.header_len + h.remaining, len);
	struct codec_packet pk;
	ck_assert_int_eq(codec_decode_v(CODEC_V5, b[0], b + h.header_len, h.remaining, &pk),
			 CODEC_OK);
	ck_assert(pk.u.publish.retain);
	ck_assert_uint_eq(pk.u.publish.packet_id, 77);
	ck_assert_uint_eq(pk.u.publish.topic.len, 3);
	ck_assert_uint_eq(pk.u.publish.props.message_expiry, 60); /* 59.5 s left, rounded up */
	ck_assert_uint_eq(pk.u.publish.props.topic_alias, 3);
	ck_assert_uint_eq(pk.u.publish.props.sub_id_count, 2);
	struct codec_str n, v;
	uint32_t pos = 0;
	ck_assert(codec_props_next_user(&pk.u.publish.props, &pos, &n, &v));
	ck_assert_int_eq(n.ptr[0], 'x');
	ck_assert(codec_props_next_user(&pk.u.publish.props, &pos, &n, &v));
	ck_assert_int_eq(n.ptr[0], 'a');
	uint32_t id;
	pos = 0;
	ck_assert(codec_props_next_sub_id(&pk.u.publish.props, &pos, &id));
	ck_assert_uint_eq(id, 5);
	ck_assert(codec_props_next_sub_id(&pk.u.publish.props, &pos, &id));
	ck_assert_uint_eq(id, 268435455);
	evbuffer_drain(out, len);

	o.alias_only = true;
	ck_assert_int_eq(message_write_publish5(m, out, 0, 0, false, false, &o), 0);
	len = evbuffer_get_length(out);
	b = evbuffer_pullup(out, (ev_ssize_t)len);
	ck_assert_int_eq(codec_parse_header_v(CODEC_V5, b, len, CODEC_MAX_REMAINING, &h), CODEC_OK);
	ck_assert_int_eq(codec_decode_v(CODEC_V5, b[0], b + h.header_len, h.remaining, &pk),
			 CODEC_OK);
	ck_assert_uint_eq(pk.u.publish.topic.len, 0);
	evbuffer_drain(out, len);

	o.max_packet = (uint32_t)len - 1;
	ck_assert_int_eq(message_write_publish5(m, out, 0, 0, false, false, &o), MESSAGE_TOO_LARGE);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	o.max_packet = (uint32_t)len;
	ck_assert_int_eq(message_write_publish5(m, out, 0, 0, false, false, &o), 0);
	evbuffer_free(out);
	message_unref(m);
}
END_TEST

static Suite *mqtt5_suite(void)
{
	Suite *s = suite_create("mqtt5");
	TCase *tc = tcase_create("sessions");
	tcase_add_test(tc, test_session_expiry_stored_and_restored);
	tcase_add_test(tc, test_expired_session_discarded_at_restore_will_published);
	tcase_add_test(tc, test_crash_with_will_delay_pending);
	tcase_add_test(tc, test_queued_message_keeps_properties_across_restart);
	tcase_add_test(tc, test_expired_message_not_delivered_from_store);
	tcase_add_test(tc, test_persistent_client_expiration_311);
	tcase_add_test(tc, test_publish5_encoding_per_subscriber);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	SRunner *sr = srunner_create(mqtt5_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
