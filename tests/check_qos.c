/*
 * Check suite for the QoS 1 / QoS 2 state machines in src/client.c and the
 * routing and commit gates in src/server.c, driven in-process (the harness
 * in tests/check_broker.h): a server on the memory store, clients on
 * socketpairs, MQTT packets written and read by the test through the
 * project codec, the event loop run by hand.
 */
#include "check_file.h"
#include "check_broker.h"
#include "client.h"
#include "conn.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "qos.h"
#include "server.h"
#include "store.h"
#include "util.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One packet received from the broker, copied out of the peer buffer. */
struct rx {
	uint8_t type;
	uint8_t flags;
	uint16_t pid;
	uint8_t qos;
	bool dup, retain;
	bool session_present;
	uint8_t rc;
	char topic[128];
	char payload[128];
	uint8_t codes[8];
	uint32_t ncodes;
};

/* A server on the memory store (see broker_config) with these limits. */
static void broker_start(struct broker *b, uint32_t inflight, uint32_t queued, const char *store)
{
	broker_config(b, store);
	b->cfg.max_inflight_messages = inflight;
	b->cfg.max_queued_messages = queued;
	broker_run(b);
}

static void peer_send(struct peer *p, const struct codec_packet *pk)
{
	peer_send_v(p, CODEC_V311, pk);
}

/* Pop the next whole packet off p into r; false if none is buffered. */
static bool peer_next(struct peer *p, struct rx *r)
{
	struct codec_header h;
	memset(r, 0, sizeof(*r));
	if (codec_parse_header(p->buf, p->len, CODEC_MAX_REMAINING, &h) != CODEC_OK)
		return false;
	size_t total = (size_t)h.header_len + h.remaining;
	if (p->len < total)
		return false;
	struct codec_packet pk;
	ck_assert_int_eq(codec_decode(p->buf[0], p->buf + h.header_len, h.remaining, &pk),
			 CODEC_OK);
	r->type = pk.type;
	r->flags = h.flags;
	switch (pk.type) {
	case CODEC_CONNACK:
		r->session_present = pk.u.connack.session_present;
		r->rc = pk.u.connack.return_code;
		break;
	case CODEC_PUBLISH: {
		const struct codec_publish *pb = &pk.u.publish;
		r->qos = pb->qos;
		r->dup = pb->dup;
		r->retain = pb->retain;
		r->pid = pb->packet_id;
		ck_assert_uint_lt(pb->topic.len, sizeof(r->topic));
		memcpy(r->topic, pb->topic.ptr, pb->topic.len);
		ck_assert_uint_lt(pb->payload_len, sizeof(r->payload));
		memcpy(r->payload, pb->payload, pb->payload_len);
		break;
	}
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
	case CODEC_UNSUBACK:
		r->pid = pk.u.packet_id;
		break;
	case CODEC_SUBACK: {
		uint32_t pos = 0;
		struct codec_str f;
		uint8_t q;
		r->pid = pk.u.list.packet_id;
		while (codec_list_next(CODEC_SUBACK, &pk.u.list, &pos, &f, &q) &&
		       r->ncodes < sizeof(r->codes))
			r->codes[r->ncodes++] = q;
		break;
	}
	default:
		break;
	}
	memmove(p->buf, p->buf + total, p->len - total);
	p->len -= total;
	return true;
}

static void expect_none(struct peer *p)
{
	struct rx r;
	bool got = peer_next(p, &r);
	ck_assert_msg(!got, "unexpected packet type %u (pid %u, payload '%s')", r.type, r.pid,
		      r.payload);
	ck_assert_uint_eq(p->len, 0);
}

static void expect_ack(struct peer *p, uint8_t type, uint16_t pid)
{
	struct rx r;
	ck_assert_msg(peer_next(p, &r), "no packet; expected type %u id %u", type, pid);
	ck_assert_msg(r.type == type && r.pid == pid, "got type %u id %u; expected type %u id %u",
		      r.type, r.pid, type, pid);
	if (type == CODEC_PUBREL)
		ck_assert_uint_eq(r.flags, 2);
	else
		ck_assert_uint_eq(r.flags, 0);
}

/* Expect a PUBLISH with these fields; returns its packet id. */
static uint16_t expect_publish(struct peer *p, const char *topic, const char *payload, uint8_t qos,
			       bool dup, bool retain)
{
	struct rx r;
	ck_assert_msg(peer_next(p, &r), "no packet; expected PUBLISH '%s'", payload);
	ck_assert_msg(r.type == CODEC_PUBLISH, "got type %u id %u; expected PUBLISH '%s'", r.type,
		      r.pid, payload);
	ck_assert_str_eq(r.topic, topic);
	ck_assert_str_eq(r.payload, payload);
	ck_assert_msg(r.qos == qos, "'%s': qos %u, expected %u", payload, r.qos, qos);
	ck_assert_msg(r.dup == dup, "'%s': dup %d, expected %d", payload, r.dup, dup);
	ck_assert_msg(r.retain == retain, "'%s': retain %d, expected %d", payload, r.retain,
		      retain);
	if (qos)
		ck_assert_uint_ne(r.pid, 0);
	return r.pid;
}

static void send_connect(struct peer *p, const char *id, bool clean)
{
	struct codec_packet pk = {.type = CODEC_CONNECT};
	pk.u.connect.protocol_level = 4;
	pk.u.connect.clean_session = clean;
	pk.u.connect.client_id.ptr = id;
	pk.u.connect.client_id.len = (uint16_t)strlen(id);
	peer_send(p, &pk);
}

/* Open a connection, CONNECT, and check the CONNACK. */
static struct peer *connect_client(struct broker *b, const char *id, bool clean, bool sp)
{
	struct peer *p = peer_new(b);
	send_connect(p, id, clean);
	pump(b);
	struct rx r;
	ck_assert_msg(peer_next(p, &r), "no CONNACK for %s", id);
	ck_assert_uint_eq(r.type, CODEC_CONNACK);
	ck_assert_uint_eq(r.rc, CODEC_CONNACK_ACCEPTED);
	ck_assert_msg(r.session_present == sp, "%s: session present %d, expected %d", id,
		      r.session_present, sp);
	return p;
}

static void send_publish(struct peer *p, const char *topic, const char *payload, uint8_t qos,
			 uint16_t pid, bool dup, bool retain)
{
	struct codec_packet pk = {.type = CODEC_PUBLISH};
	pk.u.publish.qos = qos;
	pk.u.publish.dup = dup;
	pk.u.publish.retain = retain;
	pk.u.publish.topic.ptr = topic;
	pk.u.publish.topic.len = (uint16_t)strlen(topic);
	pk.u.publish.packet_id = qos ? pid : 0;
	pk.u.publish.payload = (const uint8_t *)payload;
	pk.u.publish.payload_len = (uint32_t)strlen(payload);
	peer_send(p, &pk);
}

static void send_ack(struct peer *p, uint8_t type, uint16_t pid)
{
	struct codec_packet pk = {.type = type};
	pk.u.packet_id = pid;
	peer_send(p, &pk);
}

/* Subscribe to up to two filters and check the SUBACK grants what was
 * asked. */
static void subscribe2(struct broker *b, struct peer *p, uint16_t pid, const char *f1, uint8_t q1,
		       const char *f2, uint8_t q2)
{
	uint8_t data[512];
	int n =
	    codec_list_append(CODEC_SUBSCRIBE, data, 0, sizeof(data), f1, (uint16_t)strlen(f1), q1);
	ck_assert_int_gt(n, 0);
	if (f2) {
		n = codec_list_append(CODEC_SUBSCRIBE, data, (size_t)n, sizeof(data), f2,
				      (uint16_t)strlen(f2), q2);
		ck_assert_int_gt(n, 0);
	}
	struct codec_packet pk = {.type = CODEC_SUBSCRIBE};
	pk.u.list.packet_id = pid;
	pk.u.list.count = f2 ? 2 : 1;
	pk.u.list.data = data;
	pk.u.list.data_len = (uint32_t)n;
	peer_send(p, &pk);
	pump(b);
	struct rx r;
	ck_assert_msg(peer_next(p, &r), "no SUBACK");
	ck_assert_uint_eq(r.type, CODEC_SUBACK);
	ck_assert_uint_eq(r.pid, pid);
	ck_assert_uint_eq(r.ncodes, f2 ? 2 : 1);
	ck_assert_uint_eq(r.codes[0], q1);
	if (f2)
		ck_assert_uint_eq(r.codes[1], q2);
}

static void subscribe(struct broker *b, struct peer *p, const char *filter, uint8_t qos)
{
	subscribe2(b, p, 1, filter, qos, NULL, 0);
}

/* Drop the connection from the client's side and let the broker see it. */
static void disconnect_abruptly(struct broker *b, struct peer *p)
{
	peer_close(b, p);
	pump(b);
}

/* ---- the fixture ---- */

/* fixture_start's last argument: which of its clients connect with
 * clean_session 0 (0: both clean). */
#define SUB_PERSISTENT 1u
#define PUB_PERSISTENT 2u

/*
 * The set-up most tests share: a broker with these limits, a subscriber
 * "sub" on one filter at qos (none when filter is NULL), then a publisher
 * "pub", each CONNACK and SUBACK checked on the way. Tests that need
 * another order or another cast set up by hand.
 */
static void fixture_start(struct broker *b, struct peer **sub, struct peer **pub, uint32_t inflight,
			  uint32_t queued, const char *filter, uint8_t qos, unsigned persistent)
{
	broker_start(b, inflight, queued, NULL);
	*sub = connect_client(b, "sub", !(persistent & SUB_PERSISTENT), false);
	if (filter)
		subscribe(b, *sub, filter, qos);
	*pub = connect_client(b, "pub", !(persistent & PUB_PERSISTENT), false);
}

/* ---- CONNACK ---- */

/* covers: MQTT-3.2.0-1 MQTT-3.2.2-1 MQTT-3.2.2-2 MQTT-3.2.2-3 */
START_TEST(test_connack_session_present)
{
	struct broker b;
	broker_start(&b, 20, 1000, NULL);
	struct peer *p = connect_client(&b, "clean", true, false);
	expect_none(p);
	disconnect_abruptly(&b, p);
	p = connect_client(&b, "clean", true, false);
	disconnect_abruptly(&b, p);

	p = connect_client(&b, "keep", false, false);
	disconnect_abruptly(&b, p);
	p = connect_client(&b, "keep", false, true);
	disconnect_abruptly(&b, p);
	/* clean_session 1 discards it; the next persistent connect starts over. */
	p = connect_client(&b, "keep", true, false);
	disconnect_abruptly(&b, p);
	p = connect_client(&b, "keep", false, false);
	expect_none(p);
	broker_stop(&b);
}
END_TEST

/* ---- inbound QoS 1 and QoS 2 ---- */

/* _i: 0 clean sessions (nothing stored), 1 persistent sessions (acks wait
 * for the commit). */
/* covers: MQTT-2.3.1-6 MQTT-4.3.2-2 */
START_TEST(test_inbound_qos1_puback_same_id)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 20, 1000, "t", 1, _i ? SUB_PERSISTENT | PUB_PERSISTENT : 0);
	send_publish(pub, "t", "one", 1, 4711, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBACK, 4711);
	expect_none(pub);
	uint16_t id = expect_publish(sub, "t", "one", 1, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, id);
	/* The same id once acknowledged is a new message. */
	send_publish(pub, "t", "two", 1, 4711, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBACK, 4711);
	expect_publish(sub, "t", "two", 1, false, false);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-4.3.3-2 MQTT-2.3.1-6 */
START_TEST(test_inbound_qos2_exactly_once)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 20, 1000, "t", 2, _i ? SUB_PERSISTENT | PUB_PERSISTENT : 0);

	send_publish(pub, "t", "once", 2, 9, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 9);
	expect_none(pub);
	/* A resend before PUBREL: PUBREC again, no second delivery. */
	send_publish(pub, "t", "once", 2, 9, true, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 9);
	expect_none(pub);
	/* Also when the resend comes back to back with the first. */
	send_publish(pub, "t", "once", 2, 9, true, false);
	send_publish(pub, "t", "once", 2, 9, true, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 9);
	expect_ack(pub, CODEC_PUBREC, 9);
	expect_none(pub);
	uint16_t id = expect_publish(sub, "t", "once", 2, false, false);
	expect_none(sub);

	send_ack(pub, CODEC_PUBREL, 9);
	pump(&b);
	expect_ack(pub, CODEC_PUBCOMP, 9);
	expect_none(pub);
	expect_none(sub);

	/* After PUBCOMP the same id starts a new message. */
	send_publish(pub, "t", "again", 2, 9, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 9);
	uint16_t id2 = expect_publish(sub, "t", "again", 2, false, false);
	ck_assert_uint_ne(id2, id); /* the first is still in flight */
	expect_none(sub);
	send_ack(pub, CODEC_PUBREL, 9);
	pump(&b);
	expect_ack(pub, CODEC_PUBCOMP, 9);
	expect_none(pub);
	broker_stop(&b);
}
END_TEST

/* The acknowledgements keep the order of the PUBLISHes even when some of
 * them wait for a commit (a persistent subscriber on p/#) and others need
 * none (nobody subscribes to q/#). */
/* covers: MQTT-4.6.0-2 */
START_TEST(test_pubacks_in_publish_order)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 100, 1000, "p/#", 1,
		      SUB_PERSISTENT | (_i ? PUB_PERSISTENT : 0));
	static const char *topics[] = {"p/a", "q/a", "q/b", "p/b", "q/c", "p/c", "p/d", "q/d"};
	for (uint16_t i = 0; i < 8; i++)
		send_publish(pub, topics[i], "x", 1, (uint16_t)(100 + i * 7), false, false);
	send_publish(pub, "p/z", "qos0", 0, 0, false, false);
	send_publish(pub, "q/e", "y", 1, 1, false, false);
	pump(&b);
	for (uint16_t i = 0; i < 8; i++)
		expect_ack(pub, CODEC_PUBACK, (uint16_t)(100 + i * 7));
	expect_ack(pub, CODEC_PUBACK, 1);
	expect_none(pub);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-4.6.0-3 */
START_TEST(test_pubrecs_in_publish_order)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 100, 1000, "p/#", 2,
		      SUB_PERSISTENT | (_i ? PUB_PERSISTENT : 0));
	static const char *topics[] = {"q/a", "p/a", "q/b", "p/b", "p/c", "q/c"};
	static const uint8_t qos[] = {2, 2, 1, 2, 1, 2};
	for (uint16_t i = 0; i < 6; i++)
		send_publish(pub, topics[i], "x", qos[i], (uint16_t)(500 - i), false, false);
	/* A duplicate of one still waiting for PUBREL answers in turn too. */
	send_publish(pub, "q/a", "x", 2, 500, true, false);
	pump(&b);
	for (uint16_t i = 0; i < 6; i++)
		expect_ack(pub, qos[i] == 2 ? CODEC_PUBREC : CODEC_PUBACK, (uint16_t)(500 - i));
	expect_ack(pub, CODEC_PUBREC, 500);
	expect_none(pub);
	for (uint16_t i = 0; i < 6; i++)
		if (qos[i] == 2)
			send_ack(pub, CODEC_PUBREL, (uint16_t)(500 - i));
	pump(&b);
	for (uint16_t i = 0; i < 6; i++)
		if (qos[i] == 2)
			expect_ack(pub, CODEC_PUBCOMP, (uint16_t)(500 - i));
	expect_none(pub);
	broker_stop(&b);
}
END_TEST

/* ---- outbound QoS 1 and QoS 2 ---- */

/* covers: MQTT-4.3.2-1 MQTT-2.3.1-4 */
START_TEST(test_outbound_qos1_puback_frees_window)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 1, 1000, "t", 1, _i ? SUB_PERSISTENT : 0);
	send_publish(pub, "t", "m1", 1, 1, false, false);
	send_publish(pub, "t", "m2", 1, 2, false, false);
	pump(&b);
	uint16_t id1 = expect_publish(sub, "t", "m1", 1, false, false);
	expect_none(sub);
	/* A PUBACK for an id not in flight frees nothing. */
	send_ack(sub, CODEC_PUBACK, (uint16_t)(id1 + 1));
	pump(&b);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, id1);
	pump(&b);
	uint16_t id2 = expect_publish(sub, "t", "m2", 1, false, false);
	ck_assert_uint_ne(id1, id2);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, id2);
	pump(&b);
	expect_none(sub);
	ck_assert_uint_eq(known(&b, "sub")->inflight.count, 0);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-4.3.3-1 MQTT-2.3.1-6 */
START_TEST(test_outbound_qos2_flow)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 1, 1000, "t", 2, _i ? SUB_PERSISTENT : 0);
	send_publish(pub, "t", "m1", 2, 1, false, false);
	send_publish(pub, "t", "m2", 2, 2, false, false);
	pump(&b);
	uint16_t id1 = expect_publish(sub, "t", "m1", 2, false, false);
	expect_none(sub);
	/* A PUBCOMP before PUBREC completes nothing. */
	send_ack(sub, CODEC_PUBCOMP, id1);
	pump(&b);
	expect_none(sub);
	send_ack(sub, CODEC_PUBREC, id1);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id1);
	expect_none(sub);
	/* A repeated PUBREC gets PUBREL again, never the PUBLISH. */
	send_ack(sub, CODEC_PUBREC, id1);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id1);
	expect_none(sub);
	send_ack(sub, CODEC_PUBCOMP, id1);
	pump(&b);
	uint16_t id2 = expect_publish(sub, "t", "m2", 2, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBREC, id2);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id2);
	send_ack(sub, CODEC_PUBCOMP, id2);
	pump(&b);
	expect_none(sub);
	ck_assert_uint_eq(known(&b, "sub")->inflight.count, 0);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-4.6.0-6 MQTT-4.6.0-5 */
START_TEST(test_inflight_window_limits_and_orders)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 2, 1000, "w", 1, _i ? SUB_PERSISTENT : 0);
	char pay[8];
	for (uint16_t i = 0; i < 5; i++) {
		snprintf(pay, sizeof(pay), "m%u", i);
		send_publish(pub, "w", pay, 1, (uint16_t)(i + 1), false, false);
	}
	pump(&b);
	uint16_t ids[5];
	ids[0] = expect_publish(sub, "w", "m0", 1, false, false);
	ids[1] = expect_publish(sub, "w", "m1", 1, false, false);
	expect_none(sub);
	/* Acknowledge the second first: one slot opens, m2 goes next. */
	send_ack(sub, CODEC_PUBACK, ids[1]);
	pump(&b);
	ids[2] = expect_publish(sub, "w", "m2", 1, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, ids[0]);
	send_ack(sub, CODEC_PUBACK, ids[2]);
	pump(&b);
	ids[3] = expect_publish(sub, "w", "m3", 1, false, false);
	ids[4] = expect_publish(sub, "w", "m4", 1, false, false);
	expect_none(sub);
	/* Ids in flight at the same time differ. */
	ck_assert_uint_ne(ids[0], ids[1]);
	ck_assert_uint_ne(ids[0], ids[2]);
	ck_assert_uint_ne(ids[3], ids[4]);
	send_ack(sub, CODEC_PUBACK, ids[3]);
	send_ack(sub, CODEC_PUBACK, ids[4]);
	pump(&b);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* ---- persistent sessions: redelivery on reconnect ---- */

/* covers: MQTT-4.4.0-1 MQTT-3.3.1-1 MQTT-4.6.0-1 MQTT-3.1.2-4 MQTT-3.1.2-5 */
START_TEST(test_reconnect_resends_unacked_qos1)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 3, 1000, "r", 1, SUB_PERSISTENT);
	char pay[8];
	for (uint16_t i = 0; i < 5; i++) {
		snprintf(pay, sizeof(pay), "m%u", i);
		send_publish(pub, "r", pay, 1, (uint16_t)(i + 1), false, false);
	}
	pump(&b);
	for (uint16_t i = 1; i <= 5; i++)
		expect_ack(pub, CODEC_PUBACK, i);
	uint16_t ids[3];
	for (int i = 0; i < 3; i++) {
		snprintf(pay, sizeof(pay), "m%d", i);
		ids[i] = expect_publish(sub, "r", pay, 1, false, false);
	}
	expect_none(sub);
	disconnect_abruptly(&b, sub);

	/* One more while offline: it queues behind the others. */
	send_publish(pub, "r", "m5", 1, 6, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBACK, 6);

	sub = connect_client(&b, "sub", false, true);
	for (int i = 0; i < 3; i++) {
		snprintf(pay, sizeof(pay), "m%d", i);
		uint16_t id = expect_publish(sub, "r", pay, 1, true, false);
		ck_assert_uint_eq(id, ids[i]);
	}
	expect_none(sub);
	/* Acknowledging opens the window to the queued ones, first sends. */
	for (int i = 0; i < 3; i++)
		send_ack(sub, CODEC_PUBACK, ids[i]);
	pump(&b);
	uint16_t id3 = expect_publish(sub, "r", "m3", 1, false, false);
	uint16_t id4 = expect_publish(sub, "r", "m4", 1, false, false);
	uint16_t id5 = expect_publish(sub, "r", "m5", 1, false, false);
	expect_none(sub);

	/* A second reconnect resends exactly the unacknowledged ones. */
	send_ack(sub, CODEC_PUBACK, id4);
	pump(&b);
	disconnect_abruptly(&b, sub);
	sub = connect_client(&b, "sub", false, true);
	ck_assert_uint_eq(expect_publish(sub, "r", "m3", 1, true, false), id3);
	ck_assert_uint_eq(expect_publish(sub, "r", "m5", 1, true, false), id5);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-4.4.0-1 MQTT-4.3.3-1 */
START_TEST(test_reconnect_resends_pubrel_not_publish)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 20, 1000, "r", 2, SUB_PERSISTENT);
	send_publish(pub, "r", "recd", 2, 1, false, false);
	send_publish(pub, "r", "sent", 2, 2, false, false);
	pump(&b);
	uint16_t id1 = expect_publish(sub, "r", "recd", 2, false, false);
	uint16_t id2 = expect_publish(sub, "r", "sent", 2, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBREC, id1);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id1);
	expect_none(sub);
	disconnect_abruptly(&b, sub);

	sub = connect_client(&b, "sub", false, true);
	expect_ack(sub, CODEC_PUBREL, id1);
	ck_assert_uint_eq(expect_publish(sub, "r", "sent", 2, true, false), id2);
	expect_none(sub);
	send_ack(sub, CODEC_PUBCOMP, id1);
	send_ack(sub, CODEC_PUBREC, id2);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id2);
	expect_none(sub);
	send_ack(sub, CODEC_PUBCOMP, id2);
	pump(&b);
	expect_none(sub);
	ck_assert_uint_eq(known(&b, "sub")->inflight.count, 0);

	/* Nothing is owed any more: a reconnect resends nothing. */
	disconnect_abruptly(&b, sub);
	sub = connect_client(&b, "sub", false, true);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* A second connection with the same client id takes the session over; the
 * new one gets the unacknowledged messages again, DUP=1, same ids. */
/* covers: MQTT-4.4.0-1 MQTT-3.3.1-1 MQTT-4.6.0-1 */
START_TEST(test_takeover_resends_inflight)
{
	struct broker b;
	struct peer *old, *pub;
	fixture_start(&b, &old, &pub, 20, 1000, "k", 2, SUB_PERSISTENT);
	send_publish(pub, "k", "one", 1, 1, false, false);
	send_publish(pub, "k", "two", 2, 2, false, false);
	pump(&b);
	uint16_t id1 = expect_publish(old, "k", "one", 1, false, false);
	uint16_t id2 = expect_publish(old, "k", "two", 2, false, false);
	struct peer *sub = connect_client(&b, "sub", false, true);
	ck_assert(old->eof); /* the broker closed the old connection */
	ck_assert_uint_eq(expect_publish(sub, "k", "one", 1, true, false), id1);
	ck_assert_uint_eq(expect_publish(sub, "k", "two", 2, true, false), id2);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, id1);
	send_ack(sub, CODEC_PUBREC, id2);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id2);
	send_ack(sub, CODEC_PUBCOMP, id2);
	pump(&b);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* A persistent publisher that lost its connection after PUBREC resends the
 * PUBLISH with DUP=1: the broker remembers the id, answers PUBREC and does
 * not deliver it again; with clean_session 1 the id is forgotten. */
/* covers: MQTT-4.3.3-2 MQTT-4.4.0-1 */
START_TEST(test_inbound_qos2_survives_reconnect)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 20, 1000, "i", 2, PUB_PERSISTENT);
	send_publish(pub, "i", "x", 2, 42, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 42);
	uint16_t id = expect_publish(sub, "i", "x", 2, false, false);
	disconnect_abruptly(&b, pub);

	pub = connect_client(&b, "pub", false, true);
	expect_none(pub);
	send_publish(pub, "i", "x", 2, 42, true, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 42);
	expect_none(sub);
	send_ack(pub, CODEC_PUBREL, 42);
	pump(&b);
	expect_ack(pub, CODEC_PUBCOMP, 42);
	expect_none(pub);
	send_ack(sub, CODEC_PUBREC, id);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id);
	send_ack(sub, CODEC_PUBCOMP, id);

	/* Half an exchange, then a clean session: the id means nothing. */
	send_publish(pub, "i", "y", 2, 43, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 43);
	id = expect_publish(sub, "i", "y", 2, false, false);
	disconnect_abruptly(&b, pub);
	pub = connect_client(&b, "pub", true, false);
	send_publish(pub, "i", "y", 2, 43, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 43);
	uint16_t id2 = expect_publish(sub, "i", "y", 2, false, false);
	ck_assert_uint_ne(id2, id);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* The broker restarts on the same (named, process-wide) memory store: the
 * persistent subscriber finds its in-flight QoS 1 messages, its PUBREC'd
 * QoS 2 message and its queue again, with the same ids and order. */
/* covers: MQTT-4.4.0-1 MQTT-3.3.1-1 MQTT-4.6.0-1 MQTT-3.1.2-4 */
START_TEST(test_restart_resends_same_ids)
{
	struct broker b;
	broker_start(&b, 3, 1000, "check_qos-restart");
	struct peer *sub = connect_client(&b, "sub", false, false);
	subscribe(&b, sub, "s", 2);
	struct peer *pub = connect_client(&b, "pub", true, false);
	send_publish(pub, "s", "a", 1, 1, false, false);
	send_publish(pub, "s", "b", 2, 2, false, false);
	send_publish(pub, "s", "c", 1, 3, false, false);
	send_publish(pub, "s", "d", 1, 4, false, false); /* queued: the window is 3 */
	pump(&b);
	uint16_t ida = expect_publish(sub, "s", "a", 1, false, false);
	uint16_t idb = expect_publish(sub, "s", "b", 2, false, false);
	uint16_t idc = expect_publish(sub, "s", "c", 1, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBREC, idb);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, idb);

	broker_restart(&b);

	sub = connect_client(&b, "sub", false, true);
	ck_assert_uint_eq(expect_publish(sub, "s", "a", 1, true, false), ida);
	expect_ack(sub, CODEC_PUBREL, idb);
	ck_assert_uint_eq(expect_publish(sub, "s", "c", 1, true, false), idc);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, ida);
	pump(&b);
	uint16_t idd = expect_publish(sub, "s", "d", 1, false, false);
	ck_assert_uint_ne(idd, idb);
	ck_assert_uint_ne(idd, idc);
	send_ack(sub, CODEC_PUBCOMP, idb);
	send_ack(sub, CODEC_PUBACK, idc);
	send_ack(sub, CODEC_PUBACK, idd);
	pump(&b);
	expect_none(sub);
	ck_assert_uint_eq(known(&b, "sub")->inflight.count, 0);
	broker_stop(&b);
}
END_TEST

/* A queued QoS 2 message goes out as soon as it enters the window, before
 * its "sent" record is stored: the broker then dies with that record lost
 * (every commit after the PUBLISH fails). Restored as queued, the message
 * is sent again under the same packet identifier, the one the subscriber
 * may hold for it, as its identifier follows from its sequence number. */
/* covers: MQTT-4.4.0-1 */
START_TEST(test_crash_before_sent_record_resends_same_id)
{
	struct broker b;
	broker_start(&b, 3, 1000, "check_qos-crash-sent");
	struct peer *sub = connect_client(&b, "sub", false, false);
	subscribe(&b, sub, "s", 2);
	disconnect_abruptly(&b, sub);
	struct peer *pub = connect_client(&b, "pub", true, false);
	send_publish(pub, "s", "a", 2, 1, false, false);
	pump(&b);
	expect_ack(pub, CODEC_PUBREC, 1);

	store_inject_commit_failures(b.srv.store, 1000000);
	sub = connect_client(&b, "sub", false, true);
	uint16_t id = expect_publish(sub, "s", "a", 2, false, false);
	expect_none(sub);

	broker_restart(&b);

	sub = connect_client(&b, "sub", false, true);
	ck_assert_uint_eq(expect_publish(sub, "s", "a", 2, false, false), id);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* A delivery restored in flight under an identifier of its own (as an
 * older cairn assigned them) holds that identifier: a queued delivery whose
 * sequence number maps to the same one waits until it is acknowledged,
 * then goes out under it. The store is written through the vtable, as an
 * older broker would have left it. */
/* covers: MQTT-2.3.1-4 */
START_TEST(test_sequence_packet_id_waits_while_in_flight)
{
	static const char *const where = "check_qos-seq-collide";
	struct cairn_store_options opts = {.location = where};
	struct cairn_store *st = NULL;
	char err[256];
	ck_assert_int_eq(cairn_store_memory.open(&opts, &st, err, sizeof(err)), 0);
	struct cairn_session_rec sess = {.client_id = "sub", .next_packet_id = 1};
	struct cairn_sub_rec sub_rec = {.client_id = "sub", .filter = "s", .qos = 1};
	struct cairn_msg_rec ma = {.msg_id = 1,
				   .topic = "s",
				   .payload = (const uint8_t *)"a",
				   .payload_len = 1,
				   .qos = 1,
				   .retain = false};
	struct cairn_msg_rec mb = {.msg_id = 2,
				   .topic = "s",
				   .payload = (const uint8_t *)"b",
				   .payload_len = 1,
				   .qos = 1,
				   .retain = false};
	struct cairn_delivery_rec sent = {.client_id = "sub",
					  .seq = 1,
					  .msg_id = 1,
					  .packet_id = 2,
					  .qos = 1,
					  .state = CAIRN_DELIVERY_SENT};
	struct cairn_delivery_rec queued = {.client_id = "sub",
					    .seq = 2,
					    .msg_id = 2,
					    .packet_id = 0,
					    .qos = 1,
					    .state = CAIRN_DELIVERY_QUEUED};
	ck_assert_int_eq(cairn_store_memory.session_put(st, &sess), 0);
	ck_assert_int_eq(cairn_store_memory.sub_put(st, &sub_rec), 0);
	ck_assert_int_eq(cairn_store_memory.message_put(st, &ma), 0);
	ck_assert_int_eq(cairn_store_memory.message_put(st, &mb), 0);
	ck_assert_int_eq(cairn_store_memory.delivery_put(st, &sent), 0);
	ck_assert_int_eq(cairn_store_memory.delivery_put(st, &queued), 0);
	ck_assert_int_eq(cairn_store_memory.commit(st, NULL, NULL), 0);
	cairn_store_memory.close(st);

	struct broker b;
	broker_start(&b, 3, 1000, where);
	struct peer *sub = connect_client(&b, "sub", false, true);
	ck_assert_uint_eq(expect_publish(sub, "s", "a", 1, true, false), 2);
	expect_none(sub); /* seq 2 maps to id 2, still in flight */
	send_ack(sub, CODEC_PUBACK, 2);
	pump(&b);
	ck_assert_uint_eq(expect_publish(sub, "s", "b", 1, false, false), 2);
	send_ack(sub, CODEC_PUBACK, 2);
	pump(&b);
	expect_none(sub);
	ck_assert_uint_eq(known(&b, "sub")->inflight.count, 0);
	broker_stop(&b);
}
END_TEST

/* ---- QoS 0 behind a delivery that waits for its commit ---- */

/*
 * The spec orders deliveries only per topic and QoS, but cairn promises
 * more (commit e91449e: "a QoS 0 message never overtakes a promotion still
 * being stored"): a QoS 0 message published after a QoS 1 message on the
 * same topic reaches the subscriber after it.
 * _i 0: a clean subscriber; the QoS 1 message waits in the window behind
 *       the commit of the retained message it carries.
 * _i 1: a persistent subscriber with a window of 1; its PUBACK promotes a
 *       queued QoS 1 message whose new state is being stored, and a QoS 0
 *       message on the same topic, which the subscriber itself publishes,
 *       follows in the same read.
 */
START_TEST(test_qos0_does_not_overtake_delivery_waiting_for_commit)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 1, 1000, "g", 1, _i ? SUB_PERSISTENT : 0);
	if (_i == 0) {
		send_publish(pub, "g", "first", 1, 1, false, true);
		send_publish(pub, "g", "second", 0, 0, false, false);
		pump(&b);
	} else {
		send_publish(pub, "g", "zero", 1, 1, false, false);
		send_publish(pub, "g", "first", 1, 2, false, false);
		pump(&b);
		uint16_t id = expect_publish(sub, "g", "zero", 1, false, false);
		expect_none(sub);
		send_ack(sub, CODEC_PUBACK, id);
		send_publish(sub, "g", "second", 0, 0, false, false);
		pump(&b);
	}
	expect_publish(sub, "g", "first", 1, false, false);
	expect_publish(sub, "g", "second", 0, false, false);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* ---- queue limits ---- */

START_TEST(test_queue_limit_drops_qos0_first)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 1, 3, "d", 1, _i ? SUB_PERSISTENT : 0);
	send_publish(pub, "d", "a", 1, 1, false, false);  /* in flight */
	send_publish(pub, "d", "b", 1, 2, false, false);  /* queued: 1 */
	send_publish(pub, "d", "z0", 0, 0, false, false); /* queued: 2 */
	send_publish(pub, "d", "z1", 0, 0, false, false); /* queued: 3, full */
	pump(&b);
	ck_assert_uint_eq(server_msgs_dropped(&b.srv.stats), 0);
	send_publish(pub, "d", "c", 1, 3, false, false); /* evicts z0 */
	send_publish(pub, "d", "d", 1, 4, false, false); /* evicts z1 */
	pump(&b);
	ck_assert_uint_eq(server_msgs_dropped(&b.srv.stats), 2);
	send_publish(pub, "d", "e", 1, 5, false, false);  /* no QoS 0 left: dropped */
	send_publish(pub, "d", "z2", 0, 0, false, false); /* dropped */
	pump(&b);
	ck_assert_uint_eq(server_msgs_dropped(&b.srv.stats), 4);
	for (uint16_t i = 1; i <= 5; i++)
		expect_ack(pub, CODEC_PUBACK, i);
	expect_none(pub);

	uint16_t id = expect_publish(sub, "d", "a", 1, false, false);
	expect_none(sub);
	static const char *rest[] = {"b", "c", "d"};
	for (int i = 0; i < 3; i++) {
		send_ack(sub, CODEC_PUBACK, id);
		pump(&b);
		id = expect_publish(sub, "d", rest[i], 1, false, false);
		expect_none(sub);
	}
	send_ack(sub, CODEC_PUBACK, id);
	pump(&b);
	expect_none(sub);
	ck_assert_uint_eq(server_msgs_dropped(&b.srv.stats), 4);
	broker_stop(&b);
}
END_TEST

/* ---- acknowledgements nobody asked for ---- */

START_TEST(test_unsolicited_acks_ignored)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 20, 1000, "u", 2, _i ? SUB_PERSISTENT : 0);
	send_publish(pub, "u", "q1", 1, 1, false, false);
	pump(&b);
	/* The broker uses the id for a QoS 1 delivery; the acks below name
	 * ids it never used, or the wrong kind of ack for the one it did. */
	uint16_t id = expect_publish(sub, "u", "q1", 1, false, false);
	send_ack(sub, CODEC_PUBACK, 999);
	send_ack(sub, CODEC_PUBREC, 998);
	send_ack(sub, CODEC_PUBCOMP, 997);
	send_ack(sub, CODEC_PUBREC, id);
	send_ack(sub, CODEC_PUBCOMP, id);
	struct codec_packet ping = {.type = CODEC_PINGREQ};
	peer_send(sub, &ping);
	pump(&b);
	struct rx r;
	ck_assert(peer_next(sub, &r));
	ck_assert_uint_eq(r.type, CODEC_PINGRESP);
	expect_none(sub);
	ck_assert(!sub->eof);
	struct client *c = known(&b, "sub");
	ck_assert(client_is_connected(c));
	ck_assert_uint_eq(c->inflight.count, 1); /* still owed its PUBACK */
	send_ack(sub, CODEC_PUBACK, id);
	pump(&b);
	ck_assert_uint_eq(c->inflight.count, 0);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-4.3.3-2 */
START_TEST(test_unsolicited_pubrel_gets_pubcomp)
{
	struct broker b;
	broker_start(&b, 20, 1000, NULL);
	struct peer *p = connect_client(&b, "pub", _i == 0, false);
	send_ack(p, CODEC_PUBREL, 77);
	send_ack(p, CODEC_PUBREL, 78);
	pump(&b);
	expect_ack(p, CODEC_PUBCOMP, 77);
	expect_ack(p, CODEC_PUBCOMP, 78);
	expect_none(p);
	ck_assert(!p->eof);
	broker_stop(&b);
}
END_TEST

/* ---- retain flag and overlapping subscriptions ---- */

/* covers: MQTT-3.3.1-5 MQTT-3.3.1-6 MQTT-3.3.1-8 MQTT-3.3.1-9 */
START_TEST(test_retain_flag_new_vs_live)
{
	struct broker b;
	broker_start(&b, 20, 1000, NULL);
	bool clean = _i == 0;
	struct peer *pub = connect_client(&b, "pub", true, false);
	send_publish(pub, "r/t", "kept", 1, 1, false, true);
	pump(&b);
	expect_ack(pub, CODEC_PUBACK, 1);

	struct peer *sub = connect_client(&b, "sub", clean, false);
	subscribe(&b, sub, "r/#", 1);
	uint16_t id = expect_publish(sub, "r/t", "kept", 1, false, true);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, id);

	/* Live traffic, retained or not, goes to an existing subscription
	 * with RETAIN=0. */
	send_publish(pub, "r/t", "live-retained", 1, 2, false, true);
	pump(&b);
	id = expect_publish(sub, "r/t", "live-retained", 1, false, false);
	send_publish(pub, "r/t", "live", 0, 0, false, false);
	pump(&b);
	expect_publish(sub, "r/t", "live", 0, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBACK, id);
	pump(&b);

	/* A second subscriber sees the newest retained message, RETAIN=1. */
	struct peer *sub2 = connect_client(&b, "sub2", true, false);
	subscribe(&b, sub2, "r/+", 0);
	expect_publish(sub2, "r/t", "live-retained", 0, false, true);
	expect_none(sub2);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* covers: MQTT-3.3.5-1 MQTT-3.8.4-6 */
START_TEST(test_overlapping_subscriptions_deliver_once_at_max_qos)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 20, 1000, NULL, 0, _i ? SUB_PERSISTENT : 0);
	subscribe2(&b, sub, 1, "o/#", 1, "o/+", 2);
	subscribe2(&b, sub, 2, "o/a", 0, "#", 0);
	/* One at a time: the order between QoS levels is not what this is
	 * about. */
	send_publish(pub, "o/a", "q2", 2, 1, false, false);
	pump(&b);
	uint16_t id1 = expect_publish(sub, "o/a", "q2", 2, false, false);
	send_publish(pub, "o/a", "q1", 1, 2, false, false);
	pump(&b);
	uint16_t id2 = expect_publish(sub, "o/a", "q1", 1, false, false);
	send_publish(pub, "o/a", "q0", 0, 0, false, false);
	pump(&b);
	expect_publish(sub, "o/a", "q0", 0, false, false);
	send_publish(pub, "o/b/c", "deep", 2, 3, false, false); /* o/# (1) and # (0) */
	pump(&b);
	uint16_t id3 = expect_publish(sub, "o/b/c", "deep", 1, false, false);
	expect_none(sub);
	send_ack(sub, CODEC_PUBREC, id1);
	send_ack(sub, CODEC_PUBACK, id2);
	send_ack(sub, CODEC_PUBACK, id3);
	pump(&b);
	expect_ack(sub, CODEC_PUBREL, id1);
	expect_none(sub);
	broker_stop(&b);
}
END_TEST

/* The outbound transition function, every (QoS, state, event) pair. */
/* covers: MQTT-4.3.2-1 MQTT-4.3.3-1 */
START_TEST(test_qos_out_transition_table)
{
	static const struct {
		uint8_t qos, state;
		enum qos_out_event ev;
		enum qos_out_action act;
		uint8_t next;
	} t[] = {
	    {1, CAIRN_DELIVERY_SENT, QOS_OUT_PUBACK, QOS_OUT_COMPLETE, CAIRN_DELIVERY_SENT},
	    {1, CAIRN_DELIVERY_SENT, QOS_OUT_PUBREC, QOS_OUT_IGNORE, CAIRN_DELIVERY_SENT},
	    {1, CAIRN_DELIVERY_SENT, QOS_OUT_PUBCOMP, QOS_OUT_IGNORE, CAIRN_DELIVERY_SENT},
	    {2, CAIRN_DELIVERY_SENT, QOS_OUT_PUBACK, QOS_OUT_IGNORE, CAIRN_DELIVERY_SENT},
	    {2, CAIRN_DELIVERY_SENT, QOS_OUT_PUBREC, QOS_OUT_RELEASE, CAIRN_DELIVERY_PUBREC},
	    {2, CAIRN_DELIVERY_SENT, QOS_OUT_PUBCOMP, QOS_OUT_IGNORE, CAIRN_DELIVERY_SENT},
	    {2, CAIRN_DELIVERY_PUBREC, QOS_OUT_PUBACK, QOS_OUT_IGNORE, CAIRN_DELIVERY_PUBREC},
	    {2, CAIRN_DELIVERY_PUBREC, QOS_OUT_PUBREC, QOS_OUT_RELEASE_AGAIN,
	     CAIRN_DELIVERY_PUBREC},
	    {2, CAIRN_DELIVERY_PUBREC, QOS_OUT_PUBCOMP, QOS_OUT_COMPLETE, CAIRN_DELIVERY_PUBREC},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint8_t state = t[i].state;
		ck_assert_int_eq(qos_out_step(t[i].qos, &state, t[i].ev), t[i].act);
		ck_assert_int_eq(state, t[i].next);
	}
}
END_TEST

/* An impossible transition (a queued delivery acknowledged) is a bug in the
 * caller: it asserts. */
START_TEST(test_qos_out_queued_state_asserts)
{
	uint8_t state = CAIRN_DELIVERY_QUEUED;
	qos_out_step(1, &state, QOS_OUT_PUBACK);
}
END_TEST

/* covers: MQTT-4.3.3-2 */
START_TEST(test_qos_in_id_set)
{
	struct qos_in q = {0};
	ck_assert(!qos_in_has(&q, 7));
	ck_assert(qos_in_add(&q, 7));
	ck_assert(!qos_in_add(&q, 7)); /* a resent PUBLISH */
	ck_assert(qos_in_add(&q, 65535));
	ck_assert(qos_in_has(&q, 7) && qos_in_has(&q, 65535) && !qos_in_has(&q, 8));
	ck_assert_uint_eq(q.count, 2);
	ck_assert(qos_in_remove(&q, 7));
	ck_assert(!qos_in_remove(&q, 7)); /* an unsolicited PUBREL */
	ck_assert(qos_in_remove(&q, 65535));
	ck_assert_ptr_null(q.bits); /* empty costs nothing */
	for (uint32_t pid = 1; pid <= 65535; pid++)
		ck_assert(qos_in_add(&q, (uint16_t)pid));
	ck_assert_uint_eq(q.count, 65535);
	qos_in_cleanup(&q);
	ck_assert_ptr_null(q.bits);
}
END_TEST

/* Commits fail from here until store_commit_failures_end(): however long
 * a pump takes (a loaded machine, a sanitizer build), no retry of the
 * store's backoff can succeed in the middle of a check that nothing was
 * answered yet. */
static void store_commit_failures_begin(struct broker *b)
{
	store_inject_commit_failures(b->srv.store, 1000000);
}

/* Commits succeed again; run the loop until the store's next retry (within
 * its backoff, 250 ms at most) has committed, and p has an answer when p is
 * given; 3 s at most. */
static void store_commit_failures_end(struct broker *b, struct peer *p)
{
	store_inject_commit_failures(b->srv.store, 0);
	for (int i = 0; i < 600; i++) {
		if (store_is_healthy(b->srv.store) && (p == NULL || p->len > 0))
			break;
		usleep(5 * 1000);
		pump(b);
	}
	ck_assert_msg(store_is_healthy(b->srv.store), "the store's retry did not commit");
	pump(b);
}

/* A persistent session's PUBCOMP (which frees the id for a new message)
 * and UNSUBACK go out only once the store holds the change: while commits
 * fail, nothing is answered. */
/* covers: MQTT-4.3.3-2 MQTT-3.10.4-4 */
START_TEST(test_pubcomp_and_unsuback_wait_for_the_store)
{
	struct broker b;
	broker_start(&b, 10, 1000, NULL);
	struct peer *p = connect_client(&b, "durable", false, false);
	subscribe(&b, p, "u/t", 1);
	send_publish(p, "x/t", "m", 2, 9, false, false);
	pump(&b);
	expect_ack(p, CODEC_PUBREC, 9);

	store_commit_failures_begin(&b);
	send_ack(p, CODEC_PUBREL, 9);
	pump(&b);
	expect_none(p);
	store_commit_failures_end(&b, p);
	expect_ack(p, CODEC_PUBCOMP, 9);

	uint8_t data[64];
	int n = codec_list_append(CODEC_UNSUBSCRIBE, data, 0, sizeof(data), "u/t", 3, 0);
	ck_assert_int_gt(n, 0);
	struct codec_packet pk = {.type = CODEC_UNSUBSCRIBE};
	pk.u.list.packet_id = 12;
	pk.u.list.count = 1;
	pk.u.list.data = data;
	pk.u.list.data_len = (uint32_t)n;
	store_commit_failures_begin(&b);
	peer_send(p, &pk);
	pump(&b);
	expect_none(p);
	store_commit_failures_end(&b, p);
	expect_ack(p, CODEC_UNSUBACK, 12);
	broker_stop(&b);
}
END_TEST

/* An acknowledgement owed to a connection that has since been replaced is
 * not sent on the new one, which never sent that PUBLISH; the client's
 * resend is answered instead. */
/* covers: MQTT-4.4.0-1 */
START_TEST(test_ack_for_replaced_connection_not_sent)
{
	struct broker b;
	struct peer *sub, *pub;
	fixture_start(&b, &sub, &pub, 10, 1000, "t", 1, SUB_PERSISTENT | PUB_PERSISTENT);
	store_commit_failures_begin(&b);
	send_publish(pub, "t", "m1", 1, 5, false, false);
	pump(&b); /* stored message: the PUBACK waits for the failing commit */
	expect_none(pub);
	struct peer *pub2 = connect_client(&b, "pub", false, true); /* takes over */
	/* The commit holding m1 succeeds now; its PUBACK was owed to the
	 * replaced connection and must not reach the new one. */
	store_commit_failures_end(&b, NULL);
	expect_none(pub2);
	send_publish(pub2, "t", "m1", 1, 5, true, false);
	pump(&b);
	expect_ack(pub2, CODEC_PUBACK, 5);
	broker_stop(&b);
}
END_TEST

/* A session's ACL stamp that wraps (its 65,535th identity change or ACL
 * reload) marks every delivery unchecked; a delivery checked under stamp 1
 * in the round before must be checked again, not taken for checked under
 * the new 1. QoS 0 messages queued behind a full output are the first
 * deliveries looked at after a reload that revokes their topic: none of
 * them may go out. Fails if a delivery's stamp is read before the wrap
 * resets it (the first queued message goes out). */
START_TEST(test_acl_stamp_wrap_checks_again)
{
	struct broker b;
	char dir[] = "/tmp/check_qos-acl-XXXXXX", acl[64], payload[101];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(acl, sizeof(acl), "%s/acl", dir);
	write_file(acl, "topic readwrite d\n");
	memset(payload, 'x', sizeof(payload) - 1);
	payload[sizeof(payload) - 1] = '\0';
	broker_config(&b, NULL);
	b.cfg.sec.acl_file = xstrdup(acl);
	b.cfg.max_queued_messages = 100000;
	broker_run(&b);
	struct peer *sub = connect_client(&b, "sub", true, false);
	subscribe(&b, sub, "d", 0);
	struct peer *pub = connect_client(&b, "pub", true, false);
	struct client *c = known(&b, "sub");
	ck_assert_ptr_nonnull(c);
	int small = 4096;
	ck_assert_int_eq(setsockopt(sub->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	/* sub reads nothing: its buffer, the sockets' and the broker's output
	 * fill, and the messages after wait in its queue. */
	int sent = 0;
	while (c->queued.count < 10 && sent < 200000) {
		for (int i = 0; i < 10; i++, sent++)
			send_publish(pub, "d", payload, 0, 0, false, false);
		pump(&b);
	}
	ck_assert_uint_ge(c->queued.count, 10);
	uint32_t queued = c->queued.count;
	ck_assert_uint_eq(c->acl_stamp, 1); /* they were found readable under it */
	c->acl_stamp = UINT16_MAX;          /* as after 65,534 changes more */
	write_file(acl, "topic write d\n");
	security_set_reload(&b.srv.security, b.srv.log);
	security_set_reload_done(&b.srv.security);

	int got = 0, idle = 0;
	struct rx r;
	while (idle < 20) {
		pump(&b);
		int n = 0;
		while (peer_next(sub, &r)) {
			ck_assert_uint_eq(r.type, CODEC_PUBLISH);
			n++;
		}
		got += n;
		idle = n ? 0 : idle + 1;
	}
	ck_assert_uint_eq(c->queued.count, 0);
	ck_assert_int_eq(got, sent - (int)queued); /* what was written before the reload */
	broker_stop(&b);
	unlink(acl);
	rmdir(dir);
}
END_TEST

static Suite *qos_suite(void)
{
	Suite *s = suite_create("qos");
	TCase *tc;

	tc = tcase_create("state machines");
	tcase_add_test(tc, test_qos_out_transition_table);
	tcase_add_test_raise_signal(tc, test_qos_out_queued_state_asserts, SIGABRT);
	tcase_add_test(tc, test_qos_in_id_set);
	tcase_add_test(tc, test_acl_stamp_wrap_checks_again);
	suite_add_tcase(s, tc);

	tc = tcase_create("connack");
	tcase_add_test(tc, test_connack_session_present);
	suite_add_tcase(s, tc);

	/* Loop tests: _i 0 runs with clean sessions, 1 with persistent ones,
	 * where deliveries and acknowledgements wait for the store commit. */
	tc = tcase_create("inbound");
	tcase_add_loop_test(tc, test_inbound_qos1_puback_same_id, 0, 2);
	tcase_add_loop_test(tc, test_inbound_qos2_exactly_once, 0, 2);
	tcase_add_loop_test(tc, test_pubacks_in_publish_order, 0, 2);
	tcase_add_loop_test(tc, test_pubrecs_in_publish_order, 0, 2);
	tcase_add_loop_test(tc, test_unsolicited_pubrel_gets_pubcomp, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("outbound");
	tcase_add_loop_test(tc, test_outbound_qos1_puback_frees_window, 0, 2);
	tcase_add_loop_test(tc, test_outbound_qos2_flow, 0, 2);
	tcase_add_loop_test(tc, test_inflight_window_limits_and_orders, 0, 2);
	tcase_add_loop_test(tc, test_queue_limit_drops_qos0_first, 0, 2);
	tcase_add_loop_test(tc, test_unsolicited_acks_ignored, 0, 2);
	tcase_add_loop_test(tc, test_retain_flag_new_vs_live, 0, 2);
	tcase_add_loop_test(tc, test_overlapping_subscriptions_deliver_once_at_max_qos, 0, 2);
	tcase_add_loop_test(tc, test_qos0_does_not_overtake_delivery_waiting_for_commit, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("durability");
	tcase_add_test(tc, test_pubcomp_and_unsuback_wait_for_the_store);
	tcase_add_test(tc, test_ack_for_replaced_connection_not_sent);
	suite_add_tcase(s, tc);

	tc = tcase_create("session");
	tcase_add_test(tc, test_reconnect_resends_unacked_qos1);
	tcase_add_test(tc, test_reconnect_resends_pubrel_not_publish);
	tcase_add_test(tc, test_takeover_resends_inflight);
	tcase_add_test(tc, test_inbound_qos2_survives_reconnect);
	tcase_add_test(tc, test_restart_resends_same_ids);
	tcase_add_test(tc, test_crash_before_sent_record_resends_same_id);
	tcase_add_test(tc, test_sequence_packet_id_waits_while_in_flight);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* Writes to a peer the test has closed must fail, not kill the run. */
	signal(SIGPIPE, SIG_IGN);
	SRunner *sr = srunner_create(qos_suite());
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
