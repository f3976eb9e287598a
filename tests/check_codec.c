/*
 * Check suite for src/codec.c: round trips of every packet type in both
 * directions, every malformed form the decoder must refuse, truncation and
 * single-byte mutation sweeps (run under ASan), and a replay of the fuzz
 * seed corpus in tests/corpus/codec/.
 */
#include "codec.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_codec_util.h"

static const struct sample samples[] = {
    SAMPLE("connect-full", 0x10, 34, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xEE, 0, 60, 0, 3, 'c', 'i', 'd',
	   0, 3, 'w', '/', 't', 0, 2, 'h', 'i', 0, 4, 'u', 's', 'e', 'r', 0, 2, 'p', 'w'),
    SAMPLE("connect-min", 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 1, 'c'),
    SAMPLE("connect-empty-id", 0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0, 0, 0),
    SAMPLE("connect-mqisdp", 0x10, 15, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 10, 0, 1,
	   'c'),
    SAMPLE("connack", 0x20, 2, 0x01, 0x00),
    SAMPLE("publish-qos0", 0x30, 5, 0, 3, 'a', '/', 'b'),
    SAMPLE("publish-qos1-retain", 0x33, 7, 0, 3, 'a', '/', 'b', 0x12, 0x34),
    SAMPLE("publish-qos2-dup", 0x3C, 7, 0, 3, 'a', '/', 'b', 0, 1),
    SAMPLE("puback", 0x40, 2, 0, 1),
    SAMPLE("pubrec", 0x50, 2, 0xFF, 0xFF),
    SAMPLE("pubrel", 0x62, 2, 0, 7),
    SAMPLE("pubcomp", 0x70, 2, 1, 0),
    SAMPLE("subscribe", 0x82, 8, 0, 10, 0, 3, 'a', '/', '#', 1),
    SAMPLE("suback", 0x90, 3, 0, 10, 0x80),
    SAMPLE("unsubscribe", 0xA2, 7, 0, 11, 0, 3, 'a', '/', '+'),
    SAMPLE("unsuback", 0xB0, 2, 0, 11),
    SAMPLE("pingreq", 0xC0, 0),
    SAMPLE("pingresp", 0xD0, 0),
    SAMPLE("disconnect", 0xE0, 0),
};

#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

static const struct sample *sample_named(const char *name)
{
	size_t i;

	for (i = 0; i < NSAMPLES; i++)
		if (strcmp(samples[i].name, name) == 0)
			return &samples[i];
	ck_abort_msg("no sample %s", name);
	return NULL;
}

/* Encode into an exactly sized heap buffer and compare with want. */
static void expect_encodes_to(const struct codec_packet *p, const uint8_t *want, size_t len)
{
	uint8_t *buf = malloc(len);

	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(codec_encoded_len(p), len);
	ck_assert_int_eq(codec_encode(p, buf, len), (int)len);
	ck_assert_mem_eq(buf, want, len);
	free(buf);
}

/* Struct -> bytes -> struct -> bytes; the bytes must be identical. */
static size_t roundtrip(const struct codec_packet *in, struct codec_packet *out, uint8_t *buf,
			size_t cap)
{
	struct codec_header h;
	size_t len = codec_encoded_len(in);
	int n = codec_encode(in, buf, cap);

	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq((size_t)n, len);
	ck_assert_int_eq(codec_parse_header(buf, len, CODEC_MAX_REMAINING, &h), CODEC_OK);
	ck_assert_uint_eq(h.header_len + (size_t)h.remaining, len);
	ck_assert_uint_eq(h.type, in->type);
	ck_assert_int_eq(codec_decode(buf[0], buf + h.header_len, h.remaining, out), CODEC_OK);
	ck_assert_uint_eq(out->type, in->type);
	ck_assert_uint_eq(out->flags, h.flags);
	expect_encodes_to(out, buf, len);
	return len;
}

/* Build a PUBLISH with the given topic bytes (no validation in the encoder)
 * and decode it. */
static int decode_publish_topic(uint8_t qos, const char *topic, size_t topic_len)
{
	struct codec_packet p = {.type = CODEC_PUBLISH};
	uint8_t buf[128];
	struct codec_packet out;
	int n;

	p.u.publish.qos = qos;
	p.u.publish.packet_id = 1;
	p.u.publish.topic.ptr = topic;
	p.u.publish.topic.len = (uint16_t)topic_len;
	p.u.publish.payload = (const uint8_t *)"x";
	p.u.publish.payload_len = 1;
	n = codec_encode(&p, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	return decode_whole(buf, (size_t)n, &out);
}

static void expect_all_invalid(const struct bad_utf8 *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		ck_assert_msg(!codec_utf8_valid(v[i].s, v[i].len), "accepted case %zu", i);
}

/* ---- UTF-8 ---- */

/* covers: MQTT-1.5.3-3 */
START_TEST(test_utf8_accepts_well_formed_including_bom)
{
	static const struct bad_utf8 good[] = {
	    U(""),
	    U("abc"),
	    U("\xC2\x80"),
	    U("\xDF\xBF"),
	    U("\xE0\xA0\x80"),
	    U("\xEF\xBB\xBF"),
	    U("\xED\x9F\xBF"),
	    U("\xEE\x80\x80"),
	    U("\xEF\xBF\xBF"),
	    U("\xF0\x90\x80\x80"),
	    U("\xF4\x8F\xBF\xBF"),
	    U("\xE2\x82\xAC"),
	    U("\xF0\x9F\x98\x80"),
	    U("a/\xEF\xBB\xBF/b"),
	};
	size_t i;

	for (i = 0; i < N(good); i++)
		ck_assert_msg(codec_utf8_valid(good[i].s, good[i].len), "refused case %zu", i);
	ck_assert(codec_utf8_valid(NULL, 0));
}
END_TEST

/* covers: MQTT-1.5.3-1 */
START_TEST(test_utf8_rejects_overlong_encodings)
{
	expect_all_invalid(utf8_overlong, N(utf8_overlong));
}
END_TEST

/* covers: MQTT-1.5.3-1 */
START_TEST(test_utf8_rejects_surrogates)
{
	expect_all_invalid(utf8_surrogate, N(utf8_surrogate));
}
END_TEST

/* covers: MQTT-1.5.3-2 */
START_TEST(test_utf8_rejects_nul)
{
	expect_all_invalid(utf8_nul, N(utf8_nul));
}
END_TEST

/* covers: MQTT-1.5.3-1 */
START_TEST(test_utf8_rejects_truncated_and_broken_sequences)
{
	expect_all_invalid(utf8_truncated, N(utf8_truncated));
	expect_all_invalid(utf8_lone_continuation, N(utf8_lone_continuation));
}
END_TEST

/* covers: MQTT-1.5.3-1 */
START_TEST(test_utf8_rejects_code_points_above_10ffff)
{
	expect_all_invalid(utf8_too_big, N(utf8_too_big));
}
END_TEST

/* ---- fixed header ---- */

/* covers: */
START_TEST(test_remaining_length_boundaries)
{
	static const struct {
		uint32_t value;
		uint8_t n;
		uint8_t bytes[4];
	} v[] = {
	    {0, 1, {0x00}},
	    {127, 1, {0x7F}},
	    {128, 2, {0x80, 0x01}},
	    {16383, 2, {0xFF, 0x7F}},
	    {16384, 3, {0x80, 0x80, 0x01}},
	    {2097151, 3, {0xFF, 0xFF, 0x7F}},
	    {2097152, 4, {0x80, 0x80, 0x80, 0x01}},
	    {268435455, 4, {0xFF, 0xFF, 0xFF, 0x7F}},
	};
	size_t i;

	for (i = 0; i < N(v); i++) {
		uint8_t buf[5] = {0x30};
		struct codec_header h;

		ck_assert_int_eq(codec_encode_varint(v[i].value, buf + 1), v[i].n);
		ck_assert_mem_eq(buf + 1, v[i].bytes, v[i].n);
		memset(&h, 0xAA, sizeof(h));
		ck_assert_int_eq(codec_parse_header(buf, 1 + v[i].n, CODEC_MAX_REMAINING, &h),
				 CODEC_OK);
		ck_assert_uint_eq(h.remaining, v[i].value);
		ck_assert_uint_eq(h.header_len, 1 + v[i].n);
		ck_assert_uint_eq(h.type, CODEC_PUBLISH);
		ck_assert_uint_eq(h.flags, 0);
	}
	ck_assert_int_eq(codec_encode_varint(CODEC_MAX_REMAINING + 1, (uint8_t[4]){0}),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_remaining_length_max_268435455)
{
	struct codec_header h;

	ck_assert_int_eq(
	    codec_parse_header(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 5, CODEC_MAX_REMAINING, &h),
	    CODEC_OK);
	ck_assert_uint_eq(h.remaining, 268435455u);
	ck_assert_uint_eq(h.header_len, 5);
	/* Non-minimal encodings are not forbidden by 3.1.1 and decode. */
	ck_assert_int_eq(
	    codec_parse_header(B(0xC0, 0x80, 0x80, 0x80, 0x00), 5, CODEC_MAX_REMAINING, &h),
	    CODEC_OK);
	ck_assert_uint_eq(h.remaining, 0);
}
END_TEST

/* covers: */
START_TEST(test_remaining_length_five_bytes_malformed)
{
	struct codec_header h;

	/* Four continuation bytes are enough to refuse: no fifth is awaited. */
	ck_assert_int_eq(
	    codec_parse_header(B(0x30, 0xFF, 0xFF, 0xFF, 0xFF), 5, CODEC_MAX_REMAINING, &h),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(
	    codec_parse_header(B(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), 6, CODEC_MAX_REMAINING, &h),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(
	    codec_parse_header(B(0x10, 0x80, 0x80, 0x80, 0x80, 0x01), 6, CODEC_MAX_REMAINING, &h),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(codec_parse_header(B(0x10, 0x80, 0x80, 0x80, 0x80), 5, 10, &h),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_header_partial_needs_more_bytes)
{
	static const uint8_t buf[] = {0x30, 0x80, 0x80, 0x80, 0x01};
	struct codec_header h;
	size_t n;

	ck_assert_int_eq(codec_parse_header(buf, 0, CODEC_MAX_REMAINING, &h), CODEC_EAGAIN);
	for (n = 1; n < sizeof(buf); n++)
		ck_assert_int_eq(codec_parse_header(buf, n, CODEC_MAX_REMAINING, &h), CODEC_EAGAIN);
	ck_assert_int_eq(codec_parse_header(buf, sizeof(buf), CODEC_MAX_REMAINING, &h), CODEC_OK);
	ck_assert_uint_eq(h.remaining, 2097152u);
}
END_TEST

/* covers: */
START_TEST(test_remaining_over_max_refused_from_header_alone)
{
	struct codec_header h;

	/* Only the two header bytes are given: the body never arrives. */
	ck_assert_int_eq(codec_parse_header(B(0x30, 0x0B), 2, 10, &h), CODEC_ETOOBIG);
	ck_assert_uint_eq(h.remaining, 11);
	ck_assert_uint_eq(h.header_len, 2);
	ck_assert_int_eq(codec_parse_header(B(0x30, 0x0A), 2, 10, &h), CODEC_OK);
	ck_assert_int_eq(codec_parse_header(B(0x10, 0x7F), 2, 0, &h), CODEC_ETOOBIG);
	ck_assert_int_eq(codec_parse_header(B(0x30, 0x80, 0x01), 3, 127, &h), CODEC_ETOOBIG);
	ck_assert_int_eq(
	    codec_parse_header(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 5, CODEC_MAX_REMAINING - 1, &h),
	    CODEC_ETOOBIG);
	ck_assert_int_eq(codec_parse_header(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 5, 1048576, &h),
			 CODEC_ETOOBIG);
	ck_assert_uint_eq(h.remaining, 268435455u);
}
END_TEST

/* covers: */
START_TEST(test_reserved_packet_types_0_and_15_malformed)
{
	struct codec_header h;
	struct codec_packet p;
	unsigned f;

	for (f = 0; f < 16; f++) {
		uint8_t b0[2] = {(uint8_t)f, 0};
		uint8_t b15[2] = {(uint8_t)(0xF0 | f), 0};

		ck_assert_int_eq(codec_parse_header(b0, 2, CODEC_MAX_REMAINING, &h),
				 CODEC_EMALFORMED);
		ck_assert_int_eq(codec_parse_header(b15, 2, CODEC_MAX_REMAINING, &h),
				 CODEC_EMALFORMED);
		/* Refused from the first byte, without waiting for the length. */
		ck_assert_int_eq(codec_parse_header(b15, 1, CODEC_MAX_REMAINING, &h),
				 CODEC_EMALFORMED);
		ck_assert_int_eq(codec_decode(b0[0], NULL, 0, &p), CODEC_EMALFORMED);
		ck_assert_int_eq(codec_decode(b15[0], NULL, 0, &p), CODEC_EMALFORMED);
	}
}
END_TEST

/* ---- round trips ---- */

/* covers: */
START_TEST(test_samples_decode_and_reencode_identically)
{
	size_t i;

	for (i = 0; i < NSAMPLES; i++) {
		struct codec_packet p;

		ck_assert_msg(decode_whole(samples[i].bytes, samples[i].len, &p) == CODEC_OK,
			      "sample %s", samples[i].name);
		expect_encodes_to(&p, samples[i].bytes, samples[i].len);
	}
}
END_TEST

/* covers: MQTT-3.1.3-1 MQTT-3.1.2-9 MQTT-3.1.2-19 MQTT-3.1.2-21 */
START_TEST(test_connect_wire_format_fields_in_order)
{
	const struct sample *s = sample_named("connect-full");
	struct codec_packet p;
	struct codec_connect *c = &p.u.connect;

	ck_assert_int_eq(decode_whole(s->bytes, s->len, &p), CODEC_OK);
	ck_assert_uint_eq(p.type, CODEC_CONNECT);
	ck_assert_uint_eq(c->protocol_level, 4);
	ck_assert(c->clean_session);
	ck_assert_uint_eq(c->keepalive, 60);
	expect_str(c->client_id, "cid");
	ck_assert(c->will_flag);
	ck_assert_uint_eq(c->will_qos, 1);
	ck_assert(c->will_retain);
	expect_str(c->will_topic, "w/t");
	expect_str(c->will_payload, "hi");
	ck_assert(c->has_username);
	expect_str(c->username, "user");
	ck_assert(c->has_password);
	expect_str(c->password, "pw");
}
END_TEST

/* covers: */
START_TEST(test_roundtrip_connect)
{
	struct codec_packet in = {.type = CODEC_CONNECT}, out;
	struct codec_connect *c = &in.u.connect;
	uint8_t buf[256];
	int level;

	for (level = 3; level <= 4; level++) {
		c->protocol_level = (uint8_t)level;
		c->clean_session = false;
		c->keepalive = 0xFFFF;
		c->client_id = str("client-1");
		c->will_flag = true;
		c->will_qos = 2;
		c->will_retain = false;
		c->will_topic = str("\xEF\xBB\xBFwill/\xE2\x82\xAC");
		c->will_payload.ptr = "\0\xFF\x01";
		c->will_payload.len = 3;
		c->has_username = true;
		c->username = str("");
		c->has_password = true;
		c->password.ptr = "\xFF\0";
		c->password.len = 2;
		roundtrip(&in, &out, buf, sizeof(buf));
		ck_assert_uint_eq(out.u.connect.protocol_level, level);
		ck_assert(!out.u.connect.clean_session);
		ck_assert_uint_eq(out.u.connect.keepalive, 0xFFFF);
		expect_str(out.u.connect.client_id, "client-1");
		ck_assert(out.u.connect.will_flag);
		ck_assert_uint_eq(out.u.connect.will_qos, 2);
		ck_assert(!out.u.connect.will_retain);
		expect_str(out.u.connect.will_topic, "\xEF\xBB\xBFwill/\xE2\x82\xAC");
		ck_assert_uint_eq(out.u.connect.will_payload.len, 3);
		ck_assert_mem_eq(out.u.connect.will_payload.ptr, "\0\xFF\x01", 3);
		ck_assert(out.u.connect.has_username);
		expect_str(out.u.connect.username, "");
		ck_assert(out.u.connect.has_password);
		ck_assert_mem_eq(out.u.connect.password.ptr, "\xFF\0", 2);
		ck_assert_mem_eq(buf + 4, level == 3 ? "MQIsdp" : "MQTT", level == 3 ? 6 : 4);

		/* And the minimal form: nothing optional. */
		memset(c, 0, sizeof(*c));
		c->protocol_level = (uint8_t)level;
		c->clean_session = true;
		roundtrip(&in, &out, buf, sizeof(buf));
		ck_assert(out.u.connect.clean_session);
		ck_assert(!out.u.connect.will_flag);
		ck_assert(!out.u.connect.has_username);
		ck_assert(!out.u.connect.has_password);
		ck_assert_uint_eq(out.u.connect.client_id.len, 0);
	}
}
END_TEST

/* covers: */
START_TEST(test_roundtrip_connack)
{
	struct codec_packet in = {.type = CODEC_CONNACK}, out;
	uint8_t buf[8];
	int rc;

	for (rc = 0; rc <= 5; rc++) {
		in.u.connack.session_present = rc == 0;
		in.u.connack.return_code = (uint8_t)rc;
		ck_assert_uint_eq(roundtrip(&in, &out, buf, sizeof(buf)), 4);
		ck_assert_uint_eq(out.u.connack.return_code, rc);
		ck_assert(out.u.connack.session_present == (rc == 0));
	}
}
END_TEST

/* covers: */
START_TEST(test_roundtrip_publish_every_qos)
{
	static const uint8_t payload[300] = {1, 2, 3};
	struct codec_packet in = {.type = CODEC_PUBLISH}, out;
	uint8_t buf[512];
	int qos;

	for (qos = 0; qos <= 2; qos++) {
		in.u.publish.qos = (uint8_t)qos;
		in.u.publish.dup = qos > 0;
		in.u.publish.retain = qos != 1;
		in.u.publish.topic = str("sensors/\xF0\x9F\x98\x80/temp");
		in.u.publish.packet_id = qos > 0 ? (uint16_t)(0x100 * qos + 1) : 0;
		in.u.publish.payload = payload;
		in.u.publish.payload_len = sizeof(payload);
		roundtrip(&in, &out, buf, sizeof(buf));
		ck_assert_uint_eq(out.flags, (qos > 0 ? 8 : 0) | qos << 1 | (qos != 1));
		ck_assert_uint_eq(out.u.publish.qos, qos);
		ck_assert(out.u.publish.dup == (qos > 0));
		ck_assert(out.u.publish.retain == (qos != 1));
		expect_str(out.u.publish.topic, "sensors/\xF0\x9F\x98\x80/temp");
		ck_assert_uint_eq(out.u.publish.packet_id, in.u.publish.packet_id);
		ck_assert_uint_eq(out.u.publish.payload_len, sizeof(payload));
		ck_assert_mem_eq(out.u.publish.payload, payload, sizeof(payload));
		/* 300 bytes of payload need a 2-byte remaining length. */
		ck_assert_uint_eq(buf[1] & 0x80, 0x80);

		/* An empty payload is valid. */
		in.u.publish.payload = NULL;
		in.u.publish.payload_len = 0;
		roundtrip(&in, &out, buf, sizeof(buf));
		ck_assert_uint_eq(out.u.publish.payload_len, 0);
	}
}
END_TEST

/* covers: MQTT-2.3.1-5 */
START_TEST(test_publish_qos0_has_no_packet_id)
{
	static const uint8_t pkt[] = {0x30, 7, 0, 3, 'a', '/', 'b', 'x', 'y'};
	struct codec_packet p;

	/* Topic "a/b" directly followed by the payload "xy". */
	ck_assert_int_eq(decode_whole(pkt, sizeof(pkt), &p), CODEC_OK);
	ck_assert_uint_eq(p.u.publish.packet_id, 0);
	ck_assert_uint_eq(p.u.publish.payload_len, 2);
	ck_assert_mem_eq(p.u.publish.payload, "xy", 2);

	/* And the encoder writes none: an id given for QoS 0 is ignored. */
	p.u.publish.packet_id = 77;
	expect_encodes_to(&p, pkt, sizeof(pkt));
}
END_TEST

/* covers: MQTT-1.5.3-3 */
START_TEST(test_publish_topic_bom_kept_not_stripped)
{
	static const uint8_t pkt[] = {0x30, 6, 0, 4, 0xEF, 0xBB, 0xBF, 'a'};
	struct codec_packet p;

	ck_assert_int_eq(decode_whole(pkt, sizeof(pkt), &p), CODEC_OK);
	ck_assert_uint_eq(p.u.publish.topic.len, 4);
	ck_assert_mem_eq(p.u.publish.topic.ptr,
			 "\xEF\xBB\xBF"
			 "a",
			 4);
	ck_assert_uint_eq(p.u.publish.payload_len, 0);
}
END_TEST

/* covers: */
START_TEST(test_roundtrip_packet_id_acks)
{
	static const uint8_t types[] = {CODEC_PUBACK, CODEC_PUBREC, CODEC_PUBREL, CODEC_PUBCOMP,
					CODEC_UNSUBACK};
	struct codec_packet in, out;
	uint8_t buf[8];
	size_t i;

	for (i = 0; i < N(types); i++) {
		memset(&in, 0, sizeof(in));
		in.type = types[i];
		in.flags = 0xF; /* ignored: the encoder derives the flags */
		in.u.packet_id = (uint16_t)(0xFF00 + i);
		ck_assert_uint_eq(roundtrip(&in, &out, buf, sizeof(buf)), 4);
		ck_assert_uint_eq(out.u.packet_id, 0xFF00 + i);
		ck_assert_uint_eq(buf[0], types[i] << 4 | (types[i] == CODEC_PUBREL ? 2 : 0));
	}
}
END_TEST

/* covers: */
START_TEST(test_roundtrip_subscribe_unsubscribe_suback_lists)
{
	static const char *filters[] = {"a/b", "c/+/d", "#", "\xE2\x82\xAC"};
	struct codec_packet in, out;
	struct codec_str f;
	uint8_t data[64], buf[128], q;
	uint32_t pos;
	int len, k;
	size_t i;

	/* SUBSCRIBE: filter + requested QoS. */
	memset(&in, 0, sizeof(in));
	in.type = CODEC_SUBSCRIBE;
	len = 0;
	for (i = 0; i < N(filters); i++) {
		len = codec_list_append(CODEC_SUBSCRIBE, data, (size_t)len, sizeof(data),
					filters[i], (uint16_t)strlen(filters[i]), (uint8_t)(i % 3));
		ck_assert_int_gt(len, 0);
	}
	in.u.list.packet_id = 42;
	in.u.list.data = data;
	in.u.list.data_len = (uint32_t)len;
	roundtrip(&in, &out, buf, sizeof(buf));
	ck_assert_uint_eq(buf[0], 0x82);
	ck_assert_uint_eq(out.u.list.packet_id, 42);
	ck_assert_uint_eq(out.u.list.count, N(filters));
	pos = 0;
	for (i = 0; codec_list_next(CODEC_SUBSCRIBE, &out.u.list, &pos, &f, &q); i++) {
		expect_str(f, filters[i]);
		ck_assert_uint_eq(q, i % 3);
	}
	ck_assert_uint_eq(i, N(filters));

	/* UNSUBSCRIBE: filters only. */
	in.type = CODEC_UNSUBSCRIBE;
	len = 0;
	for (i = 0; i < N(filters); i++)
		len = codec_list_append(CODEC_UNSUBSCRIBE, data, (size_t)len, sizeof(data),
					filters[i], (uint16_t)strlen(filters[i]), 2);
	in.u.list.data_len = (uint32_t)len;
	roundtrip(&in, &out, buf, sizeof(buf));
	ck_assert_uint_eq(buf[0], 0xA2);
	ck_assert_uint_eq(out.u.list.count, N(filters));
	pos = 0;
	for (i = 0; codec_list_next(CODEC_UNSUBSCRIBE, &out.u.list, &pos, &f, &q); i++) {
		expect_str(f, filters[i]);
		ck_assert_uint_eq(q, 0);
	}
	ck_assert_uint_eq(i, N(filters));

	/* SUBACK: one return code per entry. */
	in.type = CODEC_SUBACK;
	len = 0;
	for (k = 0; k < 4; k++)
		len = codec_list_append(CODEC_SUBACK, data, (size_t)len, sizeof(data), NULL, 0,
					k == 3 ? CODEC_SUBACK_FAILURE : (uint8_t)k);
	ck_assert_int_eq(len, 4);
	in.u.list.data_len = (uint32_t)len;
	roundtrip(&in, &out, buf, sizeof(buf));
	ck_assert_uint_eq(buf[0], 0x90);
	ck_assert_uint_eq(out.u.list.count, 4);
	pos = 0;
	for (k = 0; codec_list_next(CODEC_SUBACK, &out.u.list, &pos, &f, &q); k++) {
		ck_assert_uint_eq(f.len, 0);
		ck_assert_uint_eq(q, k == 3 ? 0x80 : k);
	}
	ck_assert_int_eq(k, 4);
}
END_TEST

/* covers: */
START_TEST(test_roundtrip_zero_length_packets)
{
	static const uint8_t types[] = {CODEC_PINGREQ, CODEC_PINGRESP, CODEC_DISCONNECT};
	struct codec_packet in, out;
	uint8_t buf[2];
	size_t i;

	for (i = 0; i < N(types); i++) {
		memset(&in, 0, sizeof(in));
		in.type = types[i];
		ck_assert_uint_eq(roundtrip(&in, &out, buf, sizeof(buf)), 2);
		ck_assert_uint_eq(buf[0], types[i] << 4);
		ck_assert_uint_eq(buf[1], 0);
	}
}
END_TEST

/* ---- encoder limits ---- */

/* covers: */
START_TEST(test_encode_short_buffer_every_length)
{
	size_t i, cap;

	for (i = 0; i < NSAMPLES; i++) {
		struct codec_packet p;

		ck_assert_int_eq(decode_whole(samples[i].bytes, samples[i].len, &p), CODEC_OK);
		for (cap = 0; cap < samples[i].len; cap++) {
			uint8_t *buf = malloc(cap);

			ck_assert_int_eq(codec_encode(&p, buf, cap), CODEC_ENOSPACE);
			free(buf);
		}
	}
}
END_TEST

/* covers: */
START_TEST(test_encode_refuses_unencodable)
{
	struct codec_packet p;
	uint8_t buf[64];

	memset(&p, 0, sizeof(p));
	p.type = CODEC_PUBLISH;
	p.u.publish.topic = str("a");
	p.u.publish.qos = 3;
	ck_assert_uint_eq(codec_encoded_len(&p), 0);
	ck_assert_int_eq(codec_encode(&p, buf, sizeof(buf)), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_encode_publish_header(&p.u.publish, buf, sizeof(buf), NULL),
			 CODEC_EMALFORMED);

	/* Remaining length one over the maximum; no payload memory is touched. */
	p.u.publish.qos = 1;
	p.u.publish.payload = (const uint8_t *)"";
	p.u.publish.payload_len = CODEC_MAX_REMAINING - 2 - 1 - 2 + 1;
	ck_assert_uint_eq(codec_encoded_len(&p), 0);
	ck_assert_int_eq(codec_encode(&p, buf, sizeof(buf)), CODEC_EMALFORMED);

	p.type = 0;
	ck_assert_uint_eq(codec_encoded_len(&p), 0);
	p.type = 15;
	ck_assert_uint_eq(codec_encoded_len(&p), 0);
	ck_assert_int_eq(codec_encode(&p, buf, sizeof(buf)), CODEC_EMALFORMED);

	memset(&p, 0, sizeof(p));
	p.type = CODEC_CONNECT;
	p.u.connect.protocol_level = 4;
	p.u.connect.will_flag = true;
	p.u.connect.will_qos = 3;
	ck_assert_uint_eq(codec_encoded_len(&p), 0);
}
END_TEST

/* covers: */
START_TEST(test_encode_publish_header_pid_offset)
{
	struct codec_publish pub = {0};
	struct codec_packet p;
	uint8_t pkt[64];
	size_t off = 99, cap;
	int n;

	pub.qos = 1;
	pub.topic = str("a/b");
	pub.packet_id = 1;
	pub.payload_len = 5; /* the payload itself is not read */
	n = codec_encode_publish_header(&pub, pkt, sizeof(pkt), &off);
	ck_assert_int_eq(n, 2 + 5 + 2);
	ck_assert_uint_eq(off, 7);
	ck_assert_uint_eq(pkt[1], 5 + 2 + 5);
	/* Patch the id per subscriber, then append the shared payload. */
	pkt[off] = 0x12;
	pkt[off + 1] = 0x34;
	memcpy(pkt + n, "hello", 5);
	ck_assert_int_eq(decode_whole(pkt, (size_t)n + 5, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.publish.packet_id, 0x1234);
	ck_assert_uint_eq(p.u.publish.payload_len, 5);
	ck_assert_mem_eq(p.u.publish.payload, "hello", 5);

	for (cap = 0; cap < (size_t)n; cap++)
		ck_assert_int_eq(codec_encode_publish_header(&pub, pkt, cap, &off), CODEC_ENOSPACE);

	pub.qos = 0;
	n = codec_encode_publish_header(&pub, pkt, sizeof(pkt), &off);
	ck_assert_int_eq(n, 2 + 5);
	ck_assert_uint_eq(off, 0);
	ck_assert_int_eq(codec_encode_publish_header(&pub, pkt, sizeof(pkt), NULL), n);

	/* The largest payload: a 4-byte remaining length of 268,435,455. */
	pub.qos = 2;
	pub.payload_len = CODEC_MAX_REMAINING - 2 - 3 - 2;
	n = codec_encode_publish_header(&pub, pkt, sizeof(pkt), &off);
	ck_assert_int_eq(n, 1 + 4 + 5 + 2);
	ck_assert_mem_eq(pkt, B(0x34, 0xFF, 0xFF, 0xFF, 0x7F), 5);
	ck_assert_uint_eq(off, 10);
	pub.payload_len++;
	ck_assert_int_eq(codec_encode_publish_header(&pub, pkt, sizeof(pkt), &off),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_list_append_bounds)
{
	uint8_t buf[8];

	ck_assert_int_eq(codec_list_append(CODEC_SUBSCRIBE, buf, 0, sizeof(buf), "a/b", 3, 1), 6);
	ck_assert_mem_eq(buf, B(0, 3, 'a', '/', 'b', 1), 6);
	ck_assert_int_eq(codec_list_append(CODEC_SUBSCRIBE, buf, 6, sizeof(buf), "c", 1, 0),
			 CODEC_ENOSPACE);
	ck_assert_int_eq(codec_list_append(CODEC_UNSUBSCRIBE, buf, 6, sizeof(buf), "", 0, 0), 8);
	ck_assert_int_eq(codec_list_append(CODEC_SUBACK, buf, 8, sizeof(buf), NULL, 0, 0),
			 CODEC_ENOSPACE);
	ck_assert_int_eq(codec_list_append(CODEC_SUBACK, buf, 9, sizeof(buf), NULL, 0, 0),
			 CODEC_ENOSPACE);
	ck_assert_int_eq(codec_list_append(CODEC_SUBACK, buf, 7, sizeof(buf), NULL, 0, 2), 8);
	ck_assert_uint_eq(buf[7], 2);
	ck_assert_int_eq(codec_list_append(CODEC_PUBLISH, buf, 0, sizeof(buf), "a", 1, 0),
			 CODEC_EMALFORMED);
}
END_TEST

/* ---- malformed packets ---- */

/* covers: MQTT-2.2.2-1 MQTT-2.2.2-2 MQTT-3.6.1-1 MQTT-3.8.1-1 MQTT-3.10.1-1 MQTT-3.14.1-1 */
START_TEST(test_bad_fixed_header_flags_every_type)
{
	size_t i;
	unsigned f;

	for (i = 0; i < NSAMPLES; i++) {
		const struct sample *s = &samples[i];
		uint8_t good = s->bytes[0] & 0x0F;
		uint8_t type = s->bytes[0] >> 4;

		if (type == CODEC_PUBLISH)
			continue;
		for (f = 0; f < 16; f++) {
			uint8_t first = (uint8_t)(type << 4 | f);
			int rc = decode_copy(first, s->bytes + 2, s->len - 2);

			if (f == good)
				ck_assert_int_eq(rc, CODEC_OK);
			else
				ck_assert_msg(rc == CODEC_EMALFORMED, "%s with flags %x: %d",
					      s->name, f, rc);
		}
	}
}
END_TEST

/* covers: MQTT-3.3.1-4 */
START_TEST(test_publish_qos3_malformed)
{
	ck_assert_int_eq(DEC(0x36, 0, 1, 'a', 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x37, 0, 1, 'a', 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x3E, 0, 1, 'a', 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x36, 0, 1, 'a'), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x34, 0, 1, 'a', 0, 1), CODEC_OK);
}
END_TEST

/* covers: MQTT-3.3.1-2 */
START_TEST(test_publish_dup_with_qos0_malformed)
{
	ck_assert_int_eq(DEC(0x38, 0, 1, 'a', 'x'), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x39, 0, 1, 'a'), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x3A, 0, 1, 'a', 0, 1), CODEC_OK);
}
END_TEST

/* covers: MQTT-2.3.1-1 */
START_TEST(test_packet_id_zero_publish_subscribe_unsubscribe)
{
	ck_assert_int_eq(DEC(0x32, 0, 1, 'a', 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x34, 0, 1, 'a', 0, 0, 'p'), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x3D, 0, 1, 'a', 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x82, 0, 0, 0, 1, 'a', 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xA2, 0, 0, 0, 1, 'a'), CODEC_EMALFORMED);
	/* The same packets with id 1 are fine. */
	ck_assert_int_eq(DEC(0x32, 0, 1, 'a', 0, 1), CODEC_OK);
	ck_assert_int_eq(DEC(0x82, 0, 1, 0, 1, 'a', 0), CODEC_OK);
	ck_assert_int_eq(DEC(0xA2, 0, 1, 0, 1, 'a'), CODEC_OK);
}
END_TEST

/* covers: */
START_TEST(test_packet_id_zero_in_acks_malformed)
{
	ck_assert_int_eq(DEC(0x40, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x50, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x62, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x70, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xB0, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x90, 0, 0, 1), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-3.3.2-2 MQTT-4.7.1-1 */
START_TEST(test_publish_topic_with_wildcards_malformed)
{
	static const char *bad[] = {"+",  "#",  "a/+",           "a/#", "a/+/b",
				    "a+", "#a", "sport/tennis#", "+/+"};
	size_t i;

	for (i = 0; i < N(bad); i++) {
		ck_assert_msg(decode_publish_topic(0, bad[i], strlen(bad[i])) == CODEC_EMALFORMED,
			      "topic %s", bad[i]);
		ck_assert_int_eq(decode_publish_topic(1, bad[i], strlen(bad[i])), CODEC_EMALFORMED);
	}
	ck_assert_int_eq(decode_publish_topic(0, "a/b c/$d", 8), CODEC_OK);
	ck_assert_int_eq(decode_publish_topic(0, "/", 1), CODEC_OK);
}
END_TEST

/* covers: MQTT-4.7.3-1 */
START_TEST(test_publish_topic_empty_malformed)
{
	ck_assert_int_eq(decode_publish_topic(0, "", 0), CODEC_EMALFORMED);
	ck_assert_int_eq(decode_publish_topic(1, "", 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x30, 0, 0, 'x', 'y'), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-1.5.3-1 MQTT-1.5.3-2 MQTT-3.3.2-1 MQTT-4.7.3-2 */
START_TEST(test_publish_topic_invalid_utf8_malformed)
{
	size_t i;

	for (i = 0; i < N(utf8_bad_mix); i++)
		ck_assert_int_eq(decode_publish_topic(1, utf8_bad_mix[i].s, utf8_bad_mix[i].len),
				 CODEC_EMALFORMED);
	for (i = 0; i < N(utf8_overlong); i++)
		ck_assert_int_eq(decode_publish_topic(0, utf8_overlong[i].s, utf8_overlong[i].len),
				 CODEC_EMALFORMED);
	for (i = 0; i < N(utf8_surrogate); i++)
		ck_assert_int_eq(
		    decode_publish_topic(0, utf8_surrogate[i].s, utf8_surrogate[i].len),
		    CODEC_EMALFORMED);
	for (i = 0; i < N(utf8_too_big); i++)
		ck_assert_int_eq(decode_publish_topic(0, utf8_too_big[i].s, utf8_too_big[i].len),
				 CODEC_EMALFORMED);
	ck_assert_int_eq(decode_publish_topic(0, "a\0b", 3), CODEC_EMALFORMED);
}
END_TEST

/* A CONNECT body: protocol name, level, flags, keepalive 0, then rest. */
static int connect_with(const char *name, uint8_t level, uint8_t flags, const uint8_t *rest,
			size_t rest_len)
{
	uint8_t body[128];
	size_t n = strlen(name), len = 0;

	body[len++] = 0;
	body[len++] = (uint8_t)n;
	memcpy(body + len, name, n);
	len += n;
	body[len++] = level;
	body[len++] = flags;
	body[len++] = 0;
	body[len++] = 0;
	memcpy(body + len, rest, rest_len);
	len += rest_len;
	return decode_copy(0x10, body, len);
}

#define CONN(flags, ...) connect_with("MQTT", 4, flags, B(__VA_ARGS__), sizeof(B(__VA_ARGS__)))

/* covers: MQTT-3.1.2-1 */
START_TEST(test_connect_wrong_protocol_name)
{
	static const char *bad[] = {"MQTX",   "mqtt",  "MQT",     "MQTTT",   "",
				    "MQIsdP", "MQIsd", "MQIsdpp", "MQTT\xFF"};
	static const uint8_t cid[] = {0, 1, 'c'};
	size_t i;

	for (i = 0; i < N(bad); i++) {
		ck_assert_msg(connect_with(bad[i], 4, 2, cid, 3) == CODEC_EPROTONAME, "%s", bad[i]);
		ck_assert_int_eq(connect_with(bad[i], 3, 2, cid, 3), CODEC_EPROTONAME);
	}
	ck_assert_int_eq(DEC(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 1, 'c'), CODEC_OK);
	ck_assert_int_eq(DEC(0x10, 0, 5, 'M', 'Q', 'T', 'T', 0, 4, 2, 0, 0, 0, 1, 'c'),
			 CODEC_EPROTONAME); /* "MQTT\0" */
}
END_TEST

/* covers: MQTT-3.1.2-2 */
START_TEST(test_connect_unsupported_level)
{
	static const uint8_t cid[] = {0, 1, 'c'};
	static const uint8_t mqtt_bad[] = {0, 1, 2, 3, 5, 6, 0x84, 0xFF};
	static const uint8_t mqisdp_bad[] = {0, 1, 2, 4, 5, 0x83, 0xFF};
	size_t i;

	for (i = 0; i < N(mqtt_bad); i++)
		ck_assert_int_eq(connect_with("MQTT", mqtt_bad[i], 2, cid, 3), CODEC_EPROTOLEVEL);
	for (i = 0; i < N(mqisdp_bad); i++)
		ck_assert_int_eq(connect_with("MQIsdp", mqisdp_bad[i], 2, cid, 3),
				 CODEC_EPROTOLEVEL);
	ck_assert_int_eq(connect_with("MQTT", 4, 2, cid, 3), CODEC_OK);
	ck_assert_int_eq(connect_with("MQIsdp", 3, 2, cid, 3), CODEC_OK);
	/* Reported even when the rest of the packet is broken (a CONNACK 0x01
	 * is still owed), but not when the level byte itself is missing. */
	ck_assert_int_eq(connect_with("MQTT", 5, 0xFF, cid, 1), CODEC_EPROTOLEVEL);
	ck_assert_int_eq(DEC(0x10, 0, 4, 'M', 'Q', 'T', 'T'), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-3.1.2-3 */
START_TEST(test_connect_reserved_flag_malformed)
{
	ck_assert_int_eq(CONN(0x01, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x03, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(connect_with("MQIsdp", 3, 0x03, B(0, 1, 'c'), 3), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02, 0, 1, 'c'), CODEC_OK);
	ck_assert_int_eq(CONN(0x00, 0, 1, 'c'), CODEC_OK);
}
END_TEST

/* covers: MQTT-3.1.2-11 MQTT-3.1.2-13 MQTT-3.1.2-15 */
START_TEST(test_connect_will_qos_or_retain_without_will_flag)
{
	ck_assert_int_eq(CONN(0x02 | 0x08, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02 | 0x10, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02 | 0x18, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02 | 0x20, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02 | 0x28, 0, 1, 'c', 0, 1, 't', 0, 0), CODEC_EMALFORMED);
	/* With the will flag the same bits are fine. */
	ck_assert_int_eq(CONN(0x04 | 0x08, 0, 1, 'c', 0, 1, 't', 0, 0), CODEC_OK);
	ck_assert_int_eq(CONN(0x04 | 0x10 | 0x20, 0, 1, 'c', 0, 1, 't', 0, 0), CODEC_OK);
}
END_TEST

/* covers: MQTT-3.1.2-11 MQTT-3.1.2-18 MQTT-3.1.2-20 */
START_TEST(test_connect_fields_without_their_flag_malformed)
{
	/* Bytes where a will, username or password would be, with the flag 0,
	 * are left over after the last field. */
	ck_assert_int_eq(CONN(0x02, 0, 1, 'c', 0, 1, 't', 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02, 0, 1, 'c', 0, 1, 'u'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x82, 0, 1, 'c', 0, 1, 'u', 0, 1, 'p'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x02, 0, 1, 'c', 0), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x82, 0, 1, 'c', 0, 1, 'u'), CODEC_OK);
}
END_TEST

/* covers: MQTT-3.1.2-14 */
START_TEST(test_connect_will_qos3_malformed)
{
	ck_assert_int_eq(CONN(0x04 | 0x18, 0, 1, 'c', 0, 1, 't', 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x04 | 0x18 | 0x20, 0, 1, 'c', 0, 1, 't', 0, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-3.1.2-22 */
START_TEST(test_connect_password_without_username_malformed)
{
	ck_assert_int_eq(CONN(0x42, 0, 1, 'c', 0, 1, 'p'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x42, 0, 1, 'c'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0xC2, 0, 1, 'c', 0, 1, 'u', 0, 1, 'p'), CODEC_OK);
}
END_TEST

/* covers: MQTT-3.1.2-9 MQTT-3.1.2-19 MQTT-3.1.2-21 MQTT-3.1.3-3 */
START_TEST(test_connect_flagged_fields_missing_malformed)
{
	ck_assert_int_eq(CONN(0x02, 0), CODEC_EMALFORMED);                    /* no client id */
	ck_assert_int_eq(CONN(0x02, 0, 5, 'a', 'b'), CODEC_EMALFORMED);       /* short id */
	ck_assert_int_eq(CONN(0x06, 0, 1, 'c'), CODEC_EMALFORMED);            /* no will topic */
	ck_assert_int_eq(CONN(0x06, 0, 1, 'c', 0, 1, 't'), CODEC_EMALFORMED); /* no will msg */
	ck_assert_int_eq(CONN(0x06, 0, 1, 'c', 0, 1, 't', 0, 3, 'm'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x82, 0, 1, 'c'), CODEC_EMALFORMED); /* no username */
	ck_assert_int_eq(CONN(0x82, 0, 1, 'c', 0, 2, 'u'), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0xC2, 0, 1, 'c', 0, 1, 'u'), CODEC_EMALFORMED); /* no password */
	ck_assert_int_eq(CONN(0xC2, 0, 1, 'c', 0, 1, 'u', 0, 9), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0xC6, 0, 1, 'c', 0, 1, 't', 0, 0, 0, 1, 'u', 0, 0), CODEC_OK);
}
END_TEST

/* covers: MQTT-1.5.3-1 MQTT-1.5.3-2 MQTT-3.1.3-4 MQTT-3.1.3-10 MQTT-3.1.3-11 */
START_TEST(test_connect_string_fields_invalid_utf8_malformed)
{
	struct codec_packet in = {.type = CODEC_CONNECT}, out;
	struct codec_connect *c = &in.u.connect;
	uint8_t buf[128];
	size_t i;
	int n, field;

	for (i = 0; i < N(utf8_bad_mix); i++) {
		for (field = 0; field < 3; field++) {
			struct codec_str bad = {utf8_bad_mix[i].s, (uint16_t)utf8_bad_mix[i].len};

			memset(c, 0, sizeof(*c));
			c->protocol_level = 4;
			c->clean_session = true;
			c->client_id = str("id");
			c->will_flag = true;
			c->will_topic = str("w");
			c->has_username = true;
			c->username = str("u");
			if (field == 0)
				c->client_id = bad;
			else if (field == 1)
				c->will_topic = bad;
			else
				c->username = bad;
			n = codec_encode(&in, buf, sizeof(buf));
			ck_assert_int_gt(n, 0);
			ck_assert_msg(decode_whole(buf, (size_t)n, &out) == CODEC_EMALFORMED,
				      "field %d case %zu", field, i);
		}
	}
}
END_TEST

/* covers: */
START_TEST(test_connect_binary_fields_take_any_bytes)
{
	ck_assert_int_eq(
	    CONN(0xC6, 0, 1, 'c', 0, 1, 't', 0, 2, 0xFF, 0x00, 0, 1, 'u', 0, 3, 0xED, 0xA0, 0x80),
	    CODEC_OK);
}
END_TEST

/* covers: MQTT-4.7.1-1 MQTT-4.7.3-1 */
START_TEST(test_connect_will_topic_empty_or_wildcard_malformed)
{
	ck_assert_int_eq(CONN(0x06, 0, 1, 'c', 0, 0, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x06, 0, 1, 'c', 0, 1, '#', 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(CONN(0x06, 0, 3, 'c', 0, 3, 'a', '/', '+', 0, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-3.8.3-3 */
START_TEST(test_subscribe_without_entries_malformed)
{
	ck_assert_int_eq(DEC(0x82, 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(decode_copy(0x82, NULL, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-3.8.3-4 */
START_TEST(test_subscribe_bad_requested_qos_malformed)
{
	static const uint8_t bad[] = {3, 4, 7, 0x40, 0x80, 0x81, 0xFC, 0xFF};
	size_t i;

	for (i = 0; i < N(bad); i++) {
		ck_assert_int_eq(DEC(0x82, 0, 1, 0, 1, 'a', bad[i]), CODEC_EMALFORMED);
		/* ...also when it is the second entry. */
		ck_assert_int_eq(DEC(0x82, 0, 1, 0, 1, 'a', 0, 0, 1, 'b', bad[i]),
				 CODEC_EMALFORMED);
	}
	ck_assert_int_eq(DEC(0x82, 0, 1, 0, 1, 'a', 0, 0, 1, 'b', 1, 0, 1, 'c', 2), CODEC_OK);
}
END_TEST

/* covers: MQTT-4.7.3-1 */
START_TEST(test_empty_filter_malformed)
{
	ck_assert_int_eq(DEC(0x82, 0, 1, 0, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x82, 0, 1, 0, 1, 'a', 0, 0, 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xA2, 0, 1, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xA2, 0, 1, 0, 1, 'a', 0, 0), CODEC_EMALFORMED);
}
END_TEST

static int decode_filter(uint8_t type, const char *f, size_t len)
{
	uint8_t data[32];
	uint8_t buf[64];
	struct codec_packet p = {.type = type}, out;
	int n = codec_list_append(type, data, 0, sizeof(data), f, (uint16_t)len, 1);

	ck_assert_int_gt(n, 0);
	p.u.list.packet_id = 1;
	p.u.list.data = data;
	p.u.list.data_len = (uint32_t)n;
	n = codec_encode(&p, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	return decode_whole(buf, (size_t)n, &out);
}

/* covers: MQTT-1.5.3-1 MQTT-1.5.3-2 MQTT-3.8.3-1 MQTT-4.7.3-2 */
START_TEST(test_subscribe_filter_invalid_utf8_malformed)
{
	size_t i;

	for (i = 0; i < N(utf8_bad_mix); i++)
		ck_assert_int_eq(
		    decode_filter(CODEC_SUBSCRIBE, utf8_bad_mix[i].s, utf8_bad_mix[i].len),
		    CODEC_EMALFORMED);
	ck_assert_int_eq(decode_filter(CODEC_SUBSCRIBE, "\xEF\xBB\xBF/+", 5), CODEC_OK);
}
END_TEST

/* covers: MQTT-1.5.3-1 MQTT-1.5.3-2 MQTT-3.10.3-1 MQTT-4.7.3-2 */
START_TEST(test_unsubscribe_filter_invalid_utf8_malformed)
{
	size_t i;

	for (i = 0; i < N(utf8_bad_mix); i++)
		ck_assert_int_eq(
		    decode_filter(CODEC_UNSUBSCRIBE, utf8_bad_mix[i].s, utf8_bad_mix[i].len),
		    CODEC_EMALFORMED);
	ck_assert_int_eq(decode_filter(CODEC_UNSUBSCRIBE, "a/#", 3), CODEC_OK);
}
END_TEST

/* covers: MQTT-3.10.3-2 */
START_TEST(test_unsubscribe_without_entries_malformed)
{
	ck_assert_int_eq(DEC(0xA2, 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(decode_copy(0xA2, NULL, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_zero_length_packets_with_body_malformed)
{
	ck_assert_int_eq(DEC(0xC0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xD0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xE0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0xE0, 0, 0, 0, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_connack_bad_return_code_or_ack_flags_malformed)
{
	unsigned v;

	for (v = 0; v < 256; v++) {
		ck_assert_int_eq(DEC(0x20, 0, (uint8_t)v), v <= 5 ? CODEC_OK : CODEC_EMALFORMED);
		ck_assert_int_eq(DEC(0x20, (uint8_t)v, 0), v <= 1 ? CODEC_OK : CODEC_EMALFORMED);
	}
	ck_assert_int_eq(DEC(0x20, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC(0x20, 0, 0, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT-3.9.3-2 */
START_TEST(test_suback_bad_return_codes_malformed)
{
	unsigned v;

	for (v = 0; v < 256; v++) {
		int ok = v <= 2 || v == 0x80;

		ck_assert_int_eq(DEC(0x90, 0, 1, (uint8_t)v), ok ? CODEC_OK : CODEC_EMALFORMED);
		ck_assert_int_eq(DEC(0x90, 0, 1, 0, (uint8_t)v), ok ? CODEC_OK : CODEC_EMALFORMED);
	}
	ck_assert_int_eq(DEC(0x90, 0, 1), CODEC_EMALFORMED);
}
END_TEST

/* ---- truncation, length off by one, mutation ---- */

/* covers: */
START_TEST(test_every_packet_truncated_at_every_byte)
{
	size_t i, n;

	for (i = 0; i < NSAMPLES; i++) {
		const struct sample *s = &samples[i];
		struct codec_header h;

		ck_assert_int_eq(codec_parse_header(s->bytes, s->len, CODEC_MAX_REMAINING, &h),
				 CODEC_OK);
		for (n = 0; n < h.header_len; n++)
			ck_assert_int_eq(codec_parse_header(s->bytes, n, CODEC_MAX_REMAINING, &h),
					 CODEC_EAGAIN);
		for (n = 0; n < s->len - 2; n++)
			ck_assert_msg(decode_copy(s->bytes[0], s->bytes + 2, n) != CODEC_OK,
				      "%s truncated to %zu accepted", s->name, n);
	}
}
END_TEST

/* covers: */
START_TEST(test_remaining_length_one_too_long_malformed)
{
	size_t i;

	/* One stray 0xFF after the last field: malformed for every type except
	 * PUBLISH, where it is one more payload byte. */
	for (i = 0; i < NSAMPLES; i++) {
		const struct sample *s = &samples[i];
		uint8_t body[64];
		int rc;

		memcpy(body, s->bytes + 2, s->len - 2);
		body[s->len - 2] = 0xFF;
		rc = decode_copy(s->bytes[0], body, s->len - 1);
		if (s->bytes[0] >> 4 == CODEC_PUBLISH)
			ck_assert_int_eq(rc, CODEC_OK);
		else
			ck_assert_msg(rc == CODEC_EMALFORMED, "%s + 1 byte: %d", s->name, rc);
	}
}
END_TEST

/* covers: */
START_TEST(test_single_byte_mutations_decode_safely)
{
	size_t i, pos;
	unsigned v;

	/* Every value at every position of every sample, first byte included.
	 * Whatever decodes must point inside the body and re-encode to it. */
	for (i = 0; i < NSAMPLES; i++) {
		const struct sample *s = &samples[i];
		size_t blen = s->len - 2;

		for (pos = 0; pos < s->len; pos++) {
			if (pos == 1)
				continue; /* the remaining length: see the tests above */
			for (v = 0; v < 256; v++) {
				uint8_t first = pos == 0 ? (uint8_t)v : s->bytes[0];
				uint8_t *body = malloc(blen + 2);
				struct codec_packet p;
				uint8_t again[64];
				int rc, n;

				ck_assert_ptr_nonnull(body);
				body[0] = first;
				body[1] = (uint8_t)blen;
				memcpy(body + 2, s->bytes + 2, blen);
				if (pos >= 2)
					body[pos] = (uint8_t)v;
				rc = codec_decode(first, body + 2, (uint32_t)blen, &p);
				if (rc == CODEC_OK) {
					n = codec_encode(&p, again, sizeof(again));
					ck_assert_int_eq(n, (int)s->len);
					ck_assert_mem_eq(again, body, s->len);
				}
				free(body);
			}
		}
	}
}
END_TEST

/* ---- seed corpus ---- */

/*
 * Replays tests/corpus/codec/ as the fuzz target does. Files named ok-*
 * must decode exactly (one whole packet) and re-encode to the same body;
 * bad-* must be refused (by the header, by the decoder, or as incomplete).
 */
static int replay(const uint8_t *data, size_t size)
{
	struct codec_header h;
	struct codec_packet p;
	uint8_t *body;
	int rc;

	rc = codec_parse_header(data, size, CODEC_MAX_REMAINING, &h);
	if (rc != CODEC_OK)
		return rc;
	if (size - h.header_len < h.remaining)
		return CODEC_EAGAIN;
	if (size - h.header_len > h.remaining)
		return CODEC_EMALFORMED; /* more than one packet: not a seed form */
	body = malloc(h.remaining);
	if (h.remaining > 0)
		memcpy(body, data + h.header_len, h.remaining);
	rc = codec_decode(data[0], body, h.remaining, &p);
	if (rc == CODEC_OK) {
		size_t len = codec_encoded_len(&p);
		uint8_t *again = malloc(len);

		ck_assert_ptr_nonnull(again);
		ck_assert_int_eq(codec_encode(&p, again, len), (int)len);
		ck_assert_uint_ge(len - h.remaining, 2);
		if (h.remaining > 0)
			ck_assert_mem_eq(again + len - h.remaining, body, h.remaining);
		free(again);
	}
	free(body);
	return rc;
}

/* covers: */
START_TEST(test_corpus_replay)
{
	unsigned ok = 0, bad = 0;

	/* The 5.0 seeds (ok5-*, bad5-*) are replayed too, unchecked. */
	corpus_replay(replay, "ok-", "bad-", true, &ok, &bad);
	/* A corpus that silently went missing must not pass. */
	ck_assert_uint_ge(ok, NSAMPLES);
	ck_assert_uint_ge(bad, 10);
}
END_TEST

/* The broker's own encoders produce exactly the bytes the spec fixes, and
 * the decoder reads them back. */
START_TEST(test_broker_encoders_bytes)
{
	uint8_t b[16];
	static const uint8_t connack[] = {0x20, 2, 1, 5};
	ck_assert_int_eq(codec_encode_connack(true, CODEC_CONNACK_NOT_AUTHORIZED, b, sizeof(b)), 4);
	ck_assert_mem_eq(b, connack, 4);
	ck_assert_int_eq(codec_encode_connack(false, 0, b, 3), CODEC_ENOSPACE);
	static const struct {
		enum codec_type type;
		uint8_t first;
	} acks[] = {{CODEC_PUBACK, 0x40},
		    {CODEC_PUBREC, 0x50},
		    {CODEC_PUBREL, 0x62},
		    {CODEC_PUBCOMP, 0x70},
		    {CODEC_UNSUBACK, 0xB0}};
	for (size_t i = 0; i < sizeof(acks) / sizeof(acks[0]); i++) {
		ck_assert_int_eq(codec_encode_ack(acks[i].type, 0x1234, b, sizeof(b)),
				 CODEC_ACK_LEN);
		const uint8_t want[4] = {acks[i].first, 2, 0x12, 0x34};
		ck_assert_mem_eq(b, want, 4);
		struct codec_packet pk;
		ck_assert_int_eq(codec_decode(b[0], b + 2, 2, &pk), CODEC_OK);
		ck_assert_uint_eq(pk.u.packet_id, 0x1234);
	}
	ck_assert_int_eq(codec_encode_ack(CODEC_CONNACK, 1, b, sizeof(b)), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_encode_ack(CODEC_PUBACK, 1, b, 3), CODEC_ENOSPACE);
	ck_assert_int_eq(codec_encode_pingresp(b, sizeof(b)), CODEC_PINGRESP_LEN);
	ck_assert_uint_eq(b[0], 0xD0);
	ck_assert_uint_eq(b[1], 0);
	static const uint8_t codes[] = {0, 1, 2, CODEC_SUBACK_FAILURE};
	static const uint8_t suback[] = {0x90, 6, 0, 7, 0, 1, 2, 0x80};
	ck_assert_int_eq(codec_encode_suback(7, codes, 4, b, sizeof(b)), 8);
	ck_assert_mem_eq(b, suback, 8);
	ck_assert_int_eq(codec_encode_suback(7, codes, 4, b, 7), CODEC_ENOSPACE);
}
END_TEST

static Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc;

	tc = tcase_create("utf8");
	tcase_add_test(tc, test_utf8_accepts_well_formed_including_bom);
	tcase_add_test(tc, test_utf8_rejects_overlong_encodings);
	tcase_add_test(tc, test_utf8_rejects_surrogates);
	tcase_add_test(tc, test_utf8_rejects_nul);
	tcase_add_test(tc, test_utf8_rejects_truncated_and_broken_sequences);
	tcase_add_test(tc, test_utf8_rejects_code_points_above_10ffff);
	suite_add_tcase(s, tc);

	tc = tcase_create("header");
	tcase_add_test(tc, test_remaining_length_boundaries);
	tcase_add_test(tc, test_remaining_length_max_268435455);
	tcase_add_test(tc, test_remaining_length_five_bytes_malformed);
	tcase_add_test(tc, test_header_partial_needs_more_bytes);
	tcase_add_test(tc, test_remaining_over_max_refused_from_header_alone);
	tcase_add_test(tc, test_reserved_packet_types_0_and_15_malformed);
	suite_add_tcase(s, tc);

	tc = tcase_create("roundtrip");
	tcase_add_test(tc, test_samples_decode_and_reencode_identically);
	tcase_add_test(tc, test_connect_wire_format_fields_in_order);
	tcase_add_test(tc, test_roundtrip_connect);
	tcase_add_test(tc, test_roundtrip_connack);
	tcase_add_test(tc, test_roundtrip_publish_every_qos);
	tcase_add_test(tc, test_publish_qos0_has_no_packet_id);
	tcase_add_test(tc, test_publish_topic_bom_kept_not_stripped);
	tcase_add_test(tc, test_roundtrip_packet_id_acks);
	tcase_add_test(tc, test_roundtrip_subscribe_unsubscribe_suback_lists);
	tcase_add_test(tc, test_roundtrip_zero_length_packets);
	suite_add_tcase(s, tc);

	tc = tcase_create("encode");
	tcase_add_test(tc, test_broker_encoders_bytes);
	tcase_add_test(tc, test_encode_short_buffer_every_length);
	tcase_add_test(tc, test_encode_refuses_unencodable);
	tcase_add_test(tc, test_encode_publish_header_pid_offset);
	tcase_add_test(tc, test_list_append_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_test(tc, test_bad_fixed_header_flags_every_type);
	tcase_add_test(tc, test_publish_qos3_malformed);
	tcase_add_test(tc, test_publish_dup_with_qos0_malformed);
	tcase_add_test(tc, test_packet_id_zero_publish_subscribe_unsubscribe);
	tcase_add_test(tc, test_packet_id_zero_in_acks_malformed);
	tcase_add_test(tc, test_publish_topic_with_wildcards_malformed);
	tcase_add_test(tc, test_publish_topic_empty_malformed);
	tcase_add_test(tc, test_publish_topic_invalid_utf8_malformed);
	tcase_add_test(tc, test_connect_wrong_protocol_name);
	tcase_add_test(tc, test_connect_unsupported_level);
	tcase_add_test(tc, test_connect_reserved_flag_malformed);
	tcase_add_test(tc, test_connect_will_qos_or_retain_without_will_flag);
	tcase_add_test(tc, test_connect_fields_without_their_flag_malformed);
	tcase_add_test(tc, test_connect_will_qos3_malformed);
	tcase_add_test(tc, test_connect_password_without_username_malformed);
	tcase_add_test(tc, test_connect_flagged_fields_missing_malformed);
	tcase_add_test(tc, test_connect_string_fields_invalid_utf8_malformed);
	tcase_add_test(tc, test_connect_binary_fields_take_any_bytes);
	tcase_add_test(tc, test_connect_will_topic_empty_or_wildcard_malformed);
	tcase_add_test(tc, test_subscribe_without_entries_malformed);
	tcase_add_test(tc, test_subscribe_bad_requested_qos_malformed);
	tcase_add_test(tc, test_empty_filter_malformed);
	tcase_add_test(tc, test_subscribe_filter_invalid_utf8_malformed);
	tcase_add_test(tc, test_unsubscribe_filter_invalid_utf8_malformed);
	tcase_add_test(tc, test_unsubscribe_without_entries_malformed);
	tcase_add_test(tc, test_zero_length_packets_with_body_malformed);
	tcase_add_test(tc, test_connack_bad_return_code_or_ack_flags_malformed);
	tcase_add_test(tc, test_suback_bad_return_codes_malformed);
	suite_add_tcase(s, tc);

	tc = tcase_create("robustness");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_every_packet_truncated_at_every_byte);
	tcase_add_test(tc, test_remaining_length_one_too_long_malformed);
	tcase_add_test(tc, test_single_byte_mutations_decode_safely);
	tcase_add_test(tc, test_corpus_replay);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(codec_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
