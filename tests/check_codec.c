/*
 * Check suite for src/codec.c: round trips of every packet type in both
 * directions, every malformed form the decoder must refuse, truncation and
 * single-byte mutation sweeps (run under ASan), and a replay of the fuzz
 * seed corpus in tests/corpus/codec/.
 */
#include "codec.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B(...)          ((const uint8_t[]){__VA_ARGS__})
#define DEC(first, ...) decode_copy(first, B(__VA_ARGS__), sizeof(B(__VA_ARGS__)))

/*
 * Decode from a heap copy of exactly len bytes, so that ASan reports any
 * read past the end of the body. Decoded pointers are not used afterwards.
 */
static int decode_copy(uint8_t first, const uint8_t *body, size_t len)
{
	struct codec_packet p;
	uint8_t *copy = malloc(len);
	int rc;

	if (len > 0) {
		ck_assert_ptr_nonnull(copy);
		memcpy(copy, body, len);
	}
	rc = codec_decode(first, copy, (uint32_t)len, &p);
	free(copy);
	return rc;
}

/* Valid packets, written by hand from the specification's byte layouts.
 * Each has an empty payload and one list entry, so that every truncation of
 * its body is malformed. */
struct sample {
	const char *name;
	const uint8_t *bytes;
	size_t len;
};

#define SAMPLE(n, ...)                                                                             \
	{                                                                                          \
		n, B(__VA_ARGS__), sizeof(B(__VA_ARGS__))                                          \
	}

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

/* Decode a whole packet in place; the header must cover it exactly. */
static int decode_whole(const uint8_t *pkt, size_t len, struct codec_packet *out)
{
	struct codec_header h;
	int rc = codec_parse_header(pkt, len, CODEC_MAX_REMAINING, &h);

	if (rc != CODEC_OK)
		return rc;
	ck_assert_uint_eq(h.header_len + (size_t)h.remaining, len);
	return codec_decode(pkt[0], pkt + h.header_len, h.remaining, out);
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

static struct codec_str str(const char *s)
{
	struct codec_str r = {s, (uint16_t)strlen(s)};

	return r;
}

static void expect_str(struct codec_str s, const char *want)
{
	ck_assert_uint_eq(s.len, strlen(want));
	if (s.len > 0)
		ck_assert_mem_eq(s.ptr, want, s.len);
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

/* Strings codec_utf8_valid must refuse, grouped by the rule they break. */
struct bad_utf8 {
	const char *s;
	size_t len;
};

#define U(lit)                                                                                     \
	{                                                                                          \
		lit, sizeof(lit) - 1                                                               \
	}

static const struct bad_utf8 utf8_overlong[] = {
    U("\xC0\x80"),     U("\xC0\xAF"),         U("\xC1\xBF"),         U("\xE0\x80\x80"),
    U("\xE0\x9F\xBF"), U("\xF0\x80\x80\x80"), U("\xF0\x8F\xBF\xBF"),
};
static const struct bad_utf8 utf8_surrogate[] = {
    U("\xED\xA0\x80"),
    U("\xED\xAD\xBF"),
    U("\xED\xB0\x80"),
    U("\xED\xBF\xBF"),
    U("a\xED\xA0\x80\xED\xB0\x80"),
};
static const struct bad_utf8 utf8_nul[] = {U("\0"), U("a\0b"), U("abc\0")};
static const struct bad_utf8 utf8_truncated[] = {
    U("\xC3"),         U("\xE2\x82"), U("\xF0\x9F\x98"),     U("a\xE2"),
    U("\xE2\x82\x28"), U("\xC3\x28"), U("\xF0\x9F\x28\x80"),
};
static const struct bad_utf8 utf8_too_big[] = {
    U("\xF4\x90\x80\x80"),
    U("\xF4\xBF\xBF\xBF"),
    U("\xF5\x80\x80\x80"),
    U("\xF7\xBF\xBF\xBF"),
    U("\xF8\x88\x80\x80\x80"),
    U("\xFC\x84\x80\x80\x80\x80"),
    U("\xFE"),
    U("\xFF"),
};
static const struct bad_utf8 utf8_lone_continuation[] = {U("\x80"), U("\xBF"), U("a\x80")};

/* One of each, for the per-field tests. */
static const struct bad_utf8 utf8_bad_mix[] = {
    U("\xC0\x80"), U("\xE0\x80\xAF"), U("\xED\xA0\x80"),     U("\xED\xBF\xBF"),
    U("a\0"),      U("\xE2\x82"),     U("\xF4\x90\x80\x80"), U("\x80"),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

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

/*
 * The source tree the corpus lives in: $CAIRN_SRCDIR (make check sets it),
 * else the one this binary was configured from, so a VPATH build's
 * tests/check_codec finds it when run by hand from the build directory.
 */
#ifndef CAIRN_TEST_SRCDIR
#define CAIRN_TEST_SRCDIR "."
#endif
static const char *corpus_srcdir(void)
{
	const char *src = getenv("CAIRN_SRCDIR");

	return src != NULL && *src ? src : CAIRN_TEST_SRCDIR;
}

/* covers: */
START_TEST(test_corpus_replay)
{
	char dir[4096], path[8192];
	struct dirent *e;
	unsigned ok = 0, bad = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tests/corpus/codec", corpus_srcdir());
	d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		static uint8_t data[65536];
		size_t size;
		FILE *f;
		int rc;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		ck_assert_msg(f != NULL, "cannot open %s", path);
		size = fread(data, 1, sizeof(data), f);
		fclose(f);
		rc = replay(data, size);
		if (strncmp(e->d_name, "ok-", 3) == 0) {
			ck_assert_msg(rc == CODEC_OK, "%s: %d", e->d_name, rc);
			ok++;
		} else if (strncmp(e->d_name, "bad-", 4) == 0) {
			ck_assert_msg(rc != CODEC_OK, "%s accepted", e->d_name);
			bad++;
		}
	}
	closedir(d);
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

/* ==== MQTT 5.0 ==== */

/*
 * Tags name 5.0 statements as MQTT5-x.y.z-n; 5.0 reuses 3.1.1 numbers with
 * other meanings, so an MQTT- tag always means 3.1.1. Duties the standard
 * states without a number are tagged with their section, MQTT5-x.y.z.w.
 */

/*
 * Decode a 5.0 body from a heap copy of exactly len bytes (see
 * decode_copy()); the packet is returned through out if not NULL. The copy
 * lives until the next call or the end of the test (v5_teardown()), so the
 * decoded pointers can be read.
 */
static uint8_t *dec5_copy;

static void v5_teardown(void)
{
	free(dec5_copy);
	dec5_copy = NULL;
}

static int dec5_into(uint8_t first, const uint8_t *body, size_t len, struct codec_packet *out)
{
	struct codec_packet p;

	v5_teardown();
	dec5_copy = malloc(len > 0 ? len : 1);
	ck_assert_ptr_nonnull(dec5_copy);
	if (len > 0)
		memcpy(dec5_copy, body, len);
	return codec_decode_v(CODEC_V5, first, dec5_copy, (uint32_t)len, out != NULL ? out : &p);
}

static int dec5(uint8_t first, const uint8_t *body, size_t len)
{
	return dec5_into(first, body, len, NULL);
}

#define DEC5(first, ...) dec5(first, B(__VA_ARGS__), sizeof(B(__VA_ARGS__)))

/* Decode a whole 5.0 packet in place (pointers stay valid). */
static int decode5_whole(const uint8_t *pkt, size_t len, struct codec_packet *out)
{
	struct codec_header h;
	int rc = codec_parse_header_v(CODEC_V5, pkt, len, CODEC_MAX_REMAINING, &h);

	if (rc != CODEC_OK)
		return rc;
	ck_assert_uint_eq(h.header_len + (size_t)h.remaining, len);
	return codec_decode_v(CODEC_V5, pkt[0], pkt + h.header_len, h.remaining, out);
}

/* 5.0 struct -> bytes -> struct -> bytes; the bytes must be identical. */
static size_t roundtrip5(const struct codec_packet *in, struct codec_packet *out, uint8_t *buf,
			 size_t cap)
{
	size_t len = codec_encoded_len_v(CODEC_V5, in);
	int n = codec_encode_v(CODEC_V5, in, buf, cap);
	uint8_t *again;

	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(n, (int)len);
	ck_assert_int_eq(decode5_whole(buf, len, out), CODEC_OK);
	ck_assert_uint_eq(out->type, in->type);
	again = malloc(len);
	ck_assert_ptr_nonnull(again);
	ck_assert_uint_eq(codec_encoded_len_v(CODEC_V5, out), len);
	ck_assert_int_eq(codec_encode_v(CODEC_V5, out, again, len), (int)len);
	ck_assert_mem_eq(again, buf, len);
	free(again);
	return len;
}

static void set_block(struct codec_props *pr, const struct codec_propbuf *b)
{
	ck_assert_int_eq(b->err, CODEC_OK);
	memset(pr, 0, sizeof(*pr));
	pr->data = b->data;
	pr->len = (uint32_t)b->len;
}

/*
 * Wrap a property block into the smallest valid 5.0 packet that carries
 * one for ctx (a packet type, or CODEC_WILL for the Will Properties of a
 * CONNECT) and decode it.
 */
static int props_in(uint8_t ctx, const uint8_t *props, size_t len, struct codec_packet *out)
{
	uint8_t body[1024], first = (uint8_t)(ctx << 4);
	size_t n = 0;

	ck_assert_uint_lt(len, 512);
#define PUT(...)                                                                                   \
	do {                                                                                       \
		memcpy(body + n, B(__VA_ARGS__), sizeof(B(__VA_ARGS__)));                          \
		n += sizeof(B(__VA_ARGS__));                                                       \
	} while (0)
#define PUTPROPS()                                                                                 \
	do {                                                                                       \
		n += (size_t)codec_encode_varint((uint32_t)len, body + n);                         \
		if (len > 0)                                                                       \
			memcpy(body + n, props, len);                                              \
		n += len;                                                                          \
	} while (0)
	switch (ctx) {
	case CODEC_CONNECT:
		PUT(0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0);
		PUTPROPS();
		PUT(0, 1, 'c');
		break;
	case CODEC_WILL:
		first = 0x10;
		PUT(0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 0, 0, 0, 1, 'c');
		PUTPROPS();
		PUT(0, 1, 'w', 0, 0);
		break;
	case CODEC_CONNACK:
		PUT(0, 0);
		PUTPROPS();
		break;
	case CODEC_PUBLISH:
		PUT(0, 1, 't');
		PUTPROPS();
		break;
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		if (ctx == CODEC_PUBREL)
			first |= 2;
		PUT(0, 1, 0);
		PUTPROPS();
		break;
	case CODEC_SUBSCRIBE:
		first |= 2;
		PUT(0, 1);
		PUTPROPS();
		PUT(0, 1, 'a', 0);
		break;
	case CODEC_UNSUBSCRIBE:
		first |= 2;
		PUT(0, 1);
		PUTPROPS();
		PUT(0, 1, 'a');
		break;
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		PUT(0, 1);
		PUTPROPS();
		PUT(0);
		break;
	case CODEC_DISCONNECT:
	case CODEC_AUTH:
		PUT(0);
		PUTPROPS();
		break;
	default:
		ck_abort_msg("no packet for context %u", ctx);
	}
#undef PUT
#undef PUTPROPS
	return dec5_into(first, body, n, out);
}

/* The decoded block of a packet built by props_in(). */
static const struct codec_props *props_of(uint8_t ctx, const struct codec_packet *p)
{
	switch (ctx) {
	case CODEC_CONNECT:
		return &p->u.connect.props;
	case CODEC_WILL:
		return &p->u.connect.will_props;
	case CODEC_CONNACK:
		return &p->u.connack.props;
	case CODEC_PUBLISH:
		return &p->u.publish.props;
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		return &p->u.ack.props;
	case CODEC_DISCONNECT:
	case CODEC_AUTH:
		return &p->u.reason.props;
	default:
		return &p->u.list.props;
	}
}

/*
 * The property table of 5.0 section 2.2.2.2 restated independently of
 * codec_props.c: identifier, type letter (b byte, 2 two-byte, 4 four-byte,
 * v VBI, s UTF-8, d binary, p string pair) and the contexts it may be in
 * (C CONNECT, A CONNACK, P PUBLISH, W Will, 1..4 PUBACK..PUBCOMP, S
 * SUBSCRIBE, K SUBACK, U UNSUBSCRIBE, N UNSUBACK, D DISCONNECT, X AUTH).
 */
static const struct {
	uint8_t id;
	char type;
	const char *where;
} ptab[] = {
    {0x01, 'b', "PW"},
    {0x02, '4', "PW"},
    {0x03, 's', "PW"},
    {0x08, 's', "PW"},
    {0x09, 'd', "PW"},
    {0x0B, 'v', "PS"},
    {0x11, '4', "CAD"},
    {0x12, 's', "A"},
    {0x13, '2', "A"},
    {0x15, 's', "CAX"},
    {0x16, 'd', "CAX"},
    {0x17, 'b', "C"},
    {0x18, '4', "W"},
    {0x19, 'b', "C"},
    {0x1A, 's', "A"},
    {0x1C, 's', "AD"},
    {0x1F, 's', "A1234KNDX"},
    {0x21, '2', "CA"},
    {0x22, '2', "CA"},
    {0x23, '2', "P"},
    {0x24, 'b', "A"},
    {0x25, 'b', "A"},
    {0x26, 'p', "CAPW1234SKUNDX"},
    {0x27, '4', "CA"},
    {0x28, 'b', "A"},
    {0x29, 'b', "A"},
    {0x2A, 'b', "A"},
};

static const struct {
	uint8_t ctx;
	char letter;
} contexts[] = {
    {CODEC_CONNECT, 'C'},    {CODEC_CONNACK, 'A'}, {CODEC_PUBLISH, 'P'},     {CODEC_WILL, 'W'},
    {CODEC_PUBACK, '1'},     {CODEC_PUBREC, '2'},  {CODEC_PUBREL, '3'},      {CODEC_PUBCOMP, '4'},
    {CODEC_SUBSCRIBE, 'S'},  {CODEC_SUBACK, 'K'},  {CODEC_UNSUBSCRIBE, 'U'}, {CODEC_UNSUBACK, 'N'},
    {CODEC_DISCONNECT, 'D'}, {CODEC_AUTH, 'X'},
};

/* One property of ptab[i] with a valid value (1 for integers, "x" for
 * strings, "k"="v" for pairs); returns its length. */
static size_t one_prop(size_t i, uint8_t *out)
{
	struct codec_propbuf b;

	codec_propbuf_init(&b, out, 16);
	switch (ptab[i].type) {
	case 's':
		codec_propbuf_add_str(&b, ptab[i].id, "x", 1);
		break;
	case 'd':
		codec_propbuf_add_str(&b, ptab[i].id, "\0", 1);
		break;
	case 'p':
		codec_propbuf_add_user(&b, "k", 1, "v", 1);
		break;
	default:
		codec_propbuf_add_int(&b, ptab[i].id, 1);
		break;
	}
	ck_assert_int_eq(b.err, CODEC_OK);
	return b.len;
}

/* covers: MQTT5-2.2.2.2 */
START_TEST(test_v5_property_allowed_only_in_its_packets)
{
	size_t i, k;

	for (i = 0; i < N(ptab); i++) {
		for (k = 0; k < N(contexts); k++) {
			uint8_t prop[16];
			size_t len = one_prop(i, prop);
			bool allowed = strchr(ptab[i].where, contexts[k].letter) != NULL;
			struct codec_packet p;
			struct codec_props pr;
			int rc = props_in(contexts[k].ctx, prop, len, &p);
			int want = allowed ? CODEC_OK : CODEC_EMALFORMED;

			/* Authentication Data alone: allowed in CONNECT, but a
			 * protocol error without a method (tested below). */
			if (ptab[i].id == CODEC_PROP_AUTH_DATA && contexts[k].ctx == CODEC_CONNECT)
				want = CODEC_EPROTOCOL;
			ck_assert_msg(rc == want, "id 0x%02x in %c: %d", ptab[i].id,
				      contexts[k].letter, rc);
			ck_assert_int_eq(
			    codec_props_parse(contexts[k].ctx, prop, (uint32_t)len, &pr),
			    allowed ? CODEC_OK : CODEC_EMALFORMED);
			if (allowed) {
				ck_assert(
				    CODEC_PROP_HAS(props_of(contexts[k].ctx, &p), ptab[i].id));
				ck_assert_uint_eq(props_of(contexts[k].ctx, &p)->len, len);
			}
		}
	}
}
END_TEST

/* covers: MQTT5-2.2.2.2 */
START_TEST(test_v5_property_unknown_identifier_malformed)
{
	unsigned id;
	size_t i;

	for (id = 0; id < 128; id++) {
		bool known = false;
		uint8_t prop[4] = {(uint8_t)id, 0, 0, 0};
		struct codec_props pr;

		for (i = 0; i < N(ptab); i++)
			known |= ptab[i].id == id;
		if (known)
			continue;
		for (i = 0; i < N(contexts); i++) {
			ck_assert_int_eq(props_in(contexts[i].ctx, prop, sizeof(prop), NULL),
					 CODEC_EMALFORMED);
			ck_assert_int_eq(codec_props_parse(contexts[i].ctx, prop, 4, &pr),
					 CODEC_EMALFORMED);
		}
	}
	/* A two-byte identifier: 0x81 0x00 is 1 in a non-minimal form, and
	 * 0x81 0x01 is 129, unknown. */
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x81, 0x00, 0x01), 3, NULL), CODEC_EMALFORMED);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x81, 0x01, 0x01), 3, NULL), CODEC_EMALFORMED);
	/* And a context that is no packet. */
	ck_assert_int_eq(codec_props_parse(0, NULL, 0, &(struct codec_props){0}), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_props_parse(CODEC_WILL + 1, NULL, 0, &(struct codec_props){0}),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-2.2.2-1 */
START_TEST(test_v5_property_length_always_present)
{
	/* The same packets with Property Length 0 decode; without it they
	 * do not (or read the next field as the length and fail later). */
	ck_assert_int_eq(DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0, 1, 'c'), CODEC_OK);
	ck_assert_int_eq(DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 1, 'c'),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x20, 0, 0, 0), CODEC_OK);
	ck_assert_int_eq(DEC5(0x20, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't', 0), CODEC_OK);
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't'), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 1, 'a', 0), CODEC_OK);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 1, 'a', 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x90, 0, 1, 0, 0), CODEC_OK);
	ck_assert_int_eq(DEC5(0x90, 0, 1, 0), CODEC_EPROTOCOL); /* no codes */
	ck_assert_int_eq(DEC5(0xB0, 0, 1, 0, 0x11), CODEC_OK);
	ck_assert_int_eq(DEC5(0xA2, 0, 1, 0, 0, 1, 'a'), CODEC_OK);
	/* Will Properties too. */
	ck_assert_int_eq(
	    DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 6, 0, 0, 0, 0, 1, 'c', 0, 0, 1, 'w', 0, 0),
	    CODEC_OK);
	ck_assert_int_eq(
	    DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 6, 0, 0, 0, 0, 1, 'c', 0, 1, 'w', 0, 0),
	    CODEC_EMALFORMED);
}
END_TEST

/* Every property, built with the builder, parsed back into its field. */
/* covers: MQTT5-1.5.7-1 */
START_TEST(test_v5_property_values_roundtrip_every_type)
{
	uint8_t buf[512];
	struct codec_propbuf b;
	struct codec_props pr;
	struct codec_prop one;
	struct codec_str k, v;
	uint32_t pos = 0, id, n = 0;

	/* PUBLISH: its own properties, two user properties, two ids. */
	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_int(&b, CODEC_PROP_PAYLOAD_FORMAT, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_MESSAGE_EXPIRY, 0xFFFFFFFF);
	codec_propbuf_add_str(&b, CODEC_PROP_CONTENT_TYPE, "text/\xE2\x82\xAC", 8);
	codec_propbuf_add_str(&b, CODEC_PROP_RESPONSE_TOPIC, "reply/\xEF\xBB\xBFx", 10);
	codec_propbuf_add_str(&b, CODEC_PROP_CORRELATION_DATA, "\0\xFF\xFE", 3);
	codec_propbuf_add_user(&b, "b", 1, "2", 1);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, CODEC_MAX_VBI);
	codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS, 0xFFFF);
	codec_propbuf_add_user(&b, "a", 1, "", 0);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 1);
	ck_assert_int_eq(b.err, CODEC_OK);
	ck_assert_int_eq(codec_props_parse(CODEC_PUBLISH, buf, (uint32_t)b.len, &pr), CODEC_OK);
	ck_assert_uint_eq(pr.payload_format, 1);
	ck_assert_uint_eq(pr.message_expiry, 0xFFFFFFFF);
	expect_str(pr.content_type, "text/\xE2\x82\xAC");
	expect_str(pr.response_topic, "reply/\xEF\xBB\xBFx"); /* BOM kept [MQTT5-1.5.4-3] */
	ck_assert_uint_eq(pr.correlation_data.len, 3);
	ck_assert_mem_eq(pr.correlation_data.ptr, "\0\xFF\xFE", 3);
	ck_assert_uint_eq(pr.topic_alias, 0xFFFF);
	ck_assert_uint_eq(pr.user_count, 2);
	ck_assert_uint_eq(pr.sub_id_count, 2);
	ck_assert_uint_eq(pr.sub_id, CODEC_MAX_VBI);
	ck_assert_ptr_eq(pr.data, buf);
	ck_assert_uint_eq(pr.len, b.len);
	/* User properties in wire order, names and values as sent. */
	ck_assert(codec_props_next_user(&pr, &pos, &k, &v));
	expect_str(k, "b");
	expect_str(v, "2");
	ck_assert(codec_props_next_user(&pr, &pos, &k, &v));
	expect_str(k, "a");
	expect_str(v, "");
	ck_assert(!codec_props_next_user(&pr, &pos, &k, &v));
	pos = 0;
	ck_assert(codec_props_next_sub_id(&pr, &pos, &id));
	ck_assert_uint_eq(id, CODEC_MAX_VBI);
	ck_assert(codec_props_next_sub_id(&pr, &pos, &id));
	ck_assert_uint_eq(id, 1);
	ck_assert(!codec_props_next_sub_id(&pr, &pos, &id));
	pos = 0;
	while (codec_props_next(&pr, &pos, &one))
		n++;
	ck_assert_uint_eq(n, 10);
	ck_assert_uint_eq(pos, b.len);

	/* CONNACK: every property it may carry. */
	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_int(&b, CODEC_PROP_SESSION_EXPIRY, 0xFFFFFFFF);
	codec_propbuf_add_str(&b, CODEC_PROP_ASSIGNED_CLIENT_ID, "auto-1", 6);
	codec_propbuf_add_int(&b, CODEC_PROP_SERVER_KEEPALIVE, 0);
	codec_propbuf_add_str(&b, CODEC_PROP_AUTH_METHOD, "SCRAM", 5);
	codec_propbuf_add_str(&b, CODEC_PROP_AUTH_DATA, "\0", 1);
	codec_propbuf_add_str(&b, CODEC_PROP_RESPONSE_INFO, "ri", 2);
	codec_propbuf_add_str(&b, CODEC_PROP_SERVER_REFERENCE, "h:1", 3);
	codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, "", 0);
	codec_propbuf_add_int(&b, CODEC_PROP_RECEIVE_MAX, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS_MAX, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_MAX_QOS, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_RETAIN_AVAILABLE, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_MAX_PACKET_SIZE, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_WILDCARD_SUB_AVAILABLE, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_SUB_ID_AVAILABLE, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_SHARED_SUB_AVAILABLE, 0);
	ck_assert_int_eq(b.err, CODEC_OK);
	ck_assert_int_eq(codec_props_parse(CODEC_CONNACK, buf, (uint32_t)b.len, &pr), CODEC_OK);
	ck_assert_uint_eq(pr.session_expiry, 0xFFFFFFFF);
	expect_str(pr.assigned_client_id, "auto-1");
	ck_assert(CODEC_PROP_HAS(&pr, CODEC_PROP_SERVER_KEEPALIVE));
	ck_assert_uint_eq(pr.server_keepalive, 0);
	expect_str(pr.auth_method, "SCRAM");
	ck_assert_uint_eq(pr.auth_data.len, 1);
	expect_str(pr.response_info, "ri");
	expect_str(pr.server_reference, "h:1");
	ck_assert(CODEC_PROP_HAS(&pr, CODEC_PROP_REASON_STRING));
	expect_str(pr.reason_string, "");
	ck_assert_uint_eq(pr.receive_max, 1);
	ck_assert_uint_eq(pr.topic_alias_max, 0);
	ck_assert_uint_eq(pr.max_qos, 0);
	ck_assert_uint_eq(pr.retain_available, 0);
	ck_assert_uint_eq(pr.max_packet_size, 1);
	ck_assert_uint_eq(pr.wildcard_sub_available, 0);
	ck_assert_uint_eq(pr.sub_id_available, 0);
	ck_assert_uint_eq(pr.shared_sub_available, 0);

	/* CONNECT and Will. */
	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_int(&b, CODEC_PROP_REQUEST_PROBLEM_INFO, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_REQUEST_RESPONSE_INFO, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_RECEIVE_MAX, 65535);
	codec_propbuf_add_int(&b, CODEC_PROP_MAX_PACKET_SIZE, 0xFFFFFFFF);
	ck_assert_int_eq(codec_props_parse(CODEC_CONNECT, buf, (uint32_t)b.len, &pr), CODEC_OK);
	ck_assert_uint_eq(pr.request_problem_info, 0);
	ck_assert_uint_eq(pr.request_response_info, 1);
	ck_assert_uint_eq(pr.receive_max, 65535);
	ck_assert_uint_eq(pr.max_packet_size, 0xFFFFFFFF);
	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_int(&b, CODEC_PROP_WILL_DELAY, 0x01020304);
	ck_assert_int_eq(codec_props_parse(CODEC_WILL, buf, (uint32_t)b.len, &pr), CODEC_OK);
	ck_assert_uint_eq(pr.will_delay, 0x01020304);
	ck_assert_mem_eq(buf, B(0x18, 1, 2, 3, 4), 5);
}
END_TEST

/* covers: */
START_TEST(test_v5_property_defaults_when_absent)
{
	struct codec_props pr;
	struct codec_packet p;

	ck_assert_int_eq(codec_props_parse(CODEC_CONNACK, NULL, 0, &pr), CODEC_OK);
	ck_assert_uint_eq(pr.present, 0);
	ck_assert_uint_eq(pr.receive_max, 65535);
	ck_assert_uint_eq(pr.request_problem_info, 1);
	ck_assert_uint_eq(pr.max_qos, 2);
	ck_assert_uint_eq(pr.retain_available, 1);
	ck_assert_uint_eq(pr.wildcard_sub_available, 1);
	ck_assert_uint_eq(pr.sub_id_available, 1);
	ck_assert_uint_eq(pr.shared_sub_available, 1);
	ck_assert_uint_eq(pr.max_packet_size, 0);
	ck_assert_uint_eq(pr.request_response_info, 0);
	ck_assert_uint_eq(pr.session_expiry, 0);
	ck_assert_uint_eq(pr.user_count, 0);
	/* Short forms without a block read the same as an empty block. */
	ck_assert_int_eq(dec5_into(0xE0, NULL, 0, &p), CODEC_OK);
	ck_assert_mem_eq(&p.u.reason.props.receive_max, &pr.receive_max, sizeof(pr.receive_max));
	ck_assert_uint_eq(p.u.reason.props.request_problem_info, 1);
	ck_assert_int_eq(dec5_into(0x40, B(0, 1), 2, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.ack.props.max_qos, 2);
	ck_assert_uint_eq(p.u.ack.props.len, 0);
}
END_TEST

/* covers: MQTT5-3.1.2.11 MQTT5-3.8.2.1.2 */
START_TEST(test_v5_property_repeated_protocol_error)
{
	size_t i, k;

	for (i = 0; i < N(ptab); i++) {
		for (k = 0; k < N(contexts); k++) {
			uint8_t two[32];
			size_t len;
			bool may_repeat;

			if (strchr(ptab[i].where, contexts[k].letter) == NULL)
				continue;
			len = one_prop(i, two);
			memcpy(two + len, two, len);
			may_repeat = ptab[i].id == CODEC_PROP_USER ||
				     (ptab[i].id == CODEC_PROP_SUBSCRIPTION_ID &&
				      contexts[k].ctx == CODEC_PUBLISH);
			ck_assert_msg(props_in(contexts[k].ctx, two, 2 * len, NULL) ==
					  (may_repeat ? CODEC_OK : CODEC_EPROTOCOL),
				      "id 0x%02x twice in %c", ptab[i].id, contexts[k].letter);
		}
	}
}
END_TEST

/* covers: MQTT5-3.1.2.11 MQTT5-3.8.2.1.2 */
START_TEST(test_v5_property_values_out_of_range_protocol_error)
{
	static const struct {
		uint8_t ctx;
		uint8_t id;
		uint32_t bad, good_lo, good_hi;
	} v[] = {
	    {CODEC_PUBLISH, CODEC_PROP_PAYLOAD_FORMAT, 2, 0, 1},
	    {CODEC_WILL, CODEC_PROP_PAYLOAD_FORMAT, 255, 0, 1},
	    {CODEC_CONNECT, CODEC_PROP_REQUEST_PROBLEM_INFO, 2, 0, 1},
	    {CODEC_CONNECT, CODEC_PROP_REQUEST_RESPONSE_INFO, 2, 0, 1},
	    {CODEC_CONNECT, CODEC_PROP_RECEIVE_MAX, 0, 1, 65535},
	    {CODEC_CONNACK, CODEC_PROP_RECEIVE_MAX, 0, 1, 65535},
	    {CODEC_CONNECT, CODEC_PROP_MAX_PACKET_SIZE, 0, 1, 0xFFFFFFFF},
	    {CODEC_CONNACK, CODEC_PROP_MAX_PACKET_SIZE, 0, 1, 0xFFFFFFFF},
	    {CODEC_CONNACK, CODEC_PROP_MAX_QOS, 2, 0, 1},
	    {CODEC_CONNACK, CODEC_PROP_RETAIN_AVAILABLE, 2, 0, 1},
	    {CODEC_CONNACK, CODEC_PROP_WILDCARD_SUB_AVAILABLE, 2, 0, 1},
	    {CODEC_CONNACK, CODEC_PROP_SUB_ID_AVAILABLE, 2, 0, 1},
	    {CODEC_CONNACK, CODEC_PROP_SHARED_SUB_AVAILABLE, 2, 0, 1},
	    {CODEC_SUBSCRIBE, CODEC_PROP_SUBSCRIPTION_ID, 0, 1, CODEC_MAX_VBI},
	    {CODEC_PUBLISH, CODEC_PROP_SUBSCRIPTION_ID, 0, 1, CODEC_MAX_VBI},
	};
	size_t i;

	for (i = 0; i < N(v); i++) {
		uint8_t buf[16];
		struct codec_propbuf b;
		uint32_t val[3] = {v[i].bad, v[i].good_lo, v[i].good_hi};
		int j;

		for (j = 0; j < 3; j++) {
			codec_propbuf_init(&b, buf, sizeof(buf));
			ck_assert_int_eq(codec_propbuf_add_int(&b, v[i].id, val[j]), CODEC_OK);
			ck_assert_msg(props_in(v[i].ctx, buf, b.len, NULL) ==
					  (j == 0 ? CODEC_EPROTOCOL : CODEC_OK),
				      "case %zu value %u", i, val[j]);
		}
	}
}
END_TEST

/* covers: MQTT5-1.5.4-1 MQTT5-1.5.4-2 MQTT5-1.5.7-1 */
START_TEST(test_v5_property_strings_must_be_utf8)
{
	static const uint8_t ctype[] = {CODEC_PROP_CONTENT_TYPE, CODEC_PROP_RESPONSE_TOPIC,
					CODEC_PROP_REASON_STRING, CODEC_PROP_AUTH_METHOD};
	static const uint8_t ctx[] = {CODEC_PUBLISH, CODEC_PUBLISH, CODEC_DISCONNECT, CODEC_AUTH};
	size_t i, k;

	for (k = 0; k < N(utf8_bad_mix); k++) {
		const struct bad_utf8 *u = &utf8_bad_mix[k];
		uint8_t buf[64];
		size_t n;

		for (i = 0; i < N(ctype); i++) {
			buf[0] = ctype[i];
			buf[1] = 0;
			buf[2] = (uint8_t)u->len;
			memcpy(buf + 3, u->s, u->len);
			ck_assert_int_eq(props_in(ctx[i], buf, 3 + u->len, NULL), CODEC_EMALFORMED);
		}
		/* A User Property with a bad name, then with a bad value. */
		n = 0;
		buf[n++] = CODEC_PROP_USER;
		buf[n++] = 0;
		buf[n++] = (uint8_t)u->len;
		memcpy(buf + n, u->s, u->len);
		n += u->len;
		memcpy(buf + n, B(0, 1, 'v'), 3);
		n += 3;
		ck_assert_int_eq(props_in(CODEC_PUBACK, buf, n, NULL), CODEC_EMALFORMED);
		n = 0;
		memcpy(buf, B(CODEC_PROP_USER, 0, 1, 'k', 0), 5);
		n = 5;
		buf[n++] = (uint8_t)u->len;
		memcpy(buf + n, u->s, u->len);
		n += u->len;
		ck_assert_int_eq(props_in(CODEC_PUBACK, buf, n, NULL), CODEC_EMALFORMED);
	}
	/* Binary data takes any bytes. */
	ck_assert_int_eq(
	    props_in(CODEC_PUBLISH, B(CODEC_PROP_CORRELATION_DATA, 0, 2, 0, 0xFF), 5, NULL),
	    CODEC_OK);
}
END_TEST

/* covers: MQTT5-1.5.5-1 */
START_TEST(test_v5_variable_byte_integers_minimal)
{
	struct codec_header h;

	/* Subscription Identifier 1 in two bytes, 0 in two bytes. */
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x0B, 0x81, 0x00), 3, NULL), CODEC_EMALFORMED);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x0B, 0x80, 0x00), 3, NULL), CODEC_EMALFORMED);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x0B, 0x80, 0x01), 3, NULL), CODEC_OK);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x0B, 0xFF, 0xFF, 0xFF, 0x7F), 5, NULL),
			 CODEC_OK);
	/* Five bytes, or four with a continuation. */
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), 6, NULL),
			 CODEC_EMALFORMED);
	/* A Property Length in two bytes for the value 0. */
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't', 0x80, 0x00), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xE0, 0, 0x80, 0x00), CODEC_EMALFORMED);
	/* The remaining length: 3.1.1 takes a long form, 5.0 does not. */
	ck_assert_int_eq(codec_parse_header(B(0xC0, 0x80, 0x00), 3, CODEC_MAX_REMAINING, &h),
			 CODEC_OK);
	ck_assert_int_eq(
	    codec_parse_header_v(CODEC_V311, B(0xC0, 0x80, 0x00), 3, CODEC_MAX_REMAINING, &h),
	    CODEC_OK);
	ck_assert_int_eq(
	    codec_parse_header_v(CODEC_V5, B(0xC0, 0x80, 0x00), 3, CODEC_MAX_REMAINING, &h),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(
	    codec_parse_header_v(CODEC_V5, B(0x30, 0xFF, 0x80, 0x00), 4, CODEC_MAX_REMAINING, &h),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(
	    codec_parse_header_v(CODEC_V5, B(0x30, 0x80, 0x01), 3, CODEC_MAX_REMAINING, &h),
	    CODEC_OK);
	ck_assert_uint_eq(h.remaining, 128);
}
END_TEST

/* covers: MQTT5-2.2.2.2 */
START_TEST(test_v5_property_truncated_or_past_its_block_malformed)
{
	uint8_t buf[512];
	struct codec_propbuf b;
	struct codec_props pr;
	size_t n;

	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_int(&b, CODEC_PROP_PAYLOAD_FORMAT, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_MESSAGE_EXPIRY, 7);
	codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS, 7);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 300000);
	codec_propbuf_add_str(&b, CODEC_PROP_CONTENT_TYPE, "abc", 3);
	codec_propbuf_add_str(&b, CODEC_PROP_CORRELATION_DATA, "abc", 3);
	codec_propbuf_add_user(&b, "ab", 2, "cd", 2);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, buf, b.len, NULL), CODEC_OK);
	/* Every cut inside a property is malformed; cuts between properties
	 * are shorter valid blocks. */
	for (n = 0; n < b.len; n++) {
		static const size_t ends[] = {0, 2, 7, 10, 14, 20, 26};
		bool boundary = false;
		size_t e;
		uint8_t *copy = malloc(n > 0 ? n : 1);

		for (e = 0; e < N(ends); e++)
			boundary |= ends[e] == n;
		memcpy(copy, buf, n);
		ck_assert_msg(codec_props_parse(CODEC_PUBLISH, copy, (uint32_t)n, &pr) ==
				  (boundary ? CODEC_OK : CODEC_EMALFORMED),
			      "cut at %zu", n);
		free(copy);
	}
	/* A Property Length past the end of the packet. */
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't', 3, 0x01, 0x01), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x40, 0, 1, 0x10, 2, 0x1F), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x20, 0, 0, 0x7F), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xE0, 0, 0xFF, 0xFF, 0xFF, 0x7F), CODEC_EMALFORMED);
	/* A string whose length runs past the block but not the packet: the
	 * payload behind the block must not be read as property data. */
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't', 3, 0x03, 0, 2, 'a', 'b'), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.3.2-13 MQTT5-3.3.2-14 */
START_TEST(test_v5_response_topic_is_a_topic_name)
{
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x08, 0, 3, 'a', '/', 'b'), 6, NULL), CODEC_OK);
	ck_assert_int_eq(props_in(CODEC_WILL, B(0x08, 0, 3, 'a', '/', 'b'), 6, NULL), CODEC_OK);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x08, 0, 3, 'a', '/', '#'), 6, NULL),
			 CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x08, 0, 3, 'a', '+', 'b'), 6, NULL),
			 CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_WILL, B(0x08, 0, 1, '#'), 4, NULL), CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x08, 0, 0), 3, NULL), CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x08, 0, 2, 0xC0, 0x80), 5, NULL),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_v5_property_builder_checks)
{
	uint8_t buf[8], big[70000];
	struct codec_propbuf b;
	static char s65536[65536];

	codec_propbuf_init(&b, buf, sizeof(buf));
	/* Wrong type for the id, unknown ids, values that do not fit. */
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_CONTENT_TYPE, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(b.err, CODEC_EMALFORMED);
	/* Sticky: a valid append after a failure does nothing. */
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_MAX_QOS, 1), CODEC_EMALFORMED);
	ck_assert_uint_eq(b.len, 0);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, 0x04, 1), CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, 0x7F, 1), CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_USER, 1), CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_MAX_QOS, 256), CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS, 65536),
			 CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, CODEC_MAX_VBI + 1),
			 CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_str(&b, CODEC_PROP_MAX_QOS, "a", 1), CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, "\xC0\x80", 2),
			 CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_user(&b, "a\0", 2, "v", 1), CODEC_EMALFORMED);
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_user(&b, "k", 1, "\xED\xA0\x80", 3), CODEC_EMALFORMED);
	/* Space: exactly full works, one more byte does not. */
	codec_propbuf_init(&b, buf, sizeof(buf));
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_MESSAGE_EXPIRY, 1), CODEC_OK);
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS, 1), CODEC_OK);
	ck_assert_uint_eq(b.len, 8);
	ck_assert_int_eq(codec_propbuf_add_int(&b, CODEC_PROP_PAYLOAD_FORMAT, 1), CODEC_ENOSPACE);
	ck_assert_uint_eq(b.len, 8);
	codec_propbuf_init(&b, buf, 4);
	ck_assert_int_eq(codec_propbuf_add_str(&b, CODEC_PROP_CONTENT_TYPE, "ab", 2),
			 CODEC_ENOSPACE);
	codec_propbuf_init(&b, buf, 4);
	ck_assert_int_eq(codec_propbuf_add_user(&b, "", 0, "", 0), CODEC_ENOSPACE);
	/* Strings up to 65,535 bytes. */
	memset(s65536, 'a', sizeof(s65536));
	codec_propbuf_init(&b, big, sizeof(big));
	ck_assert_int_eq(codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, s65536, 65536),
			 CODEC_EMALFORMED);
	codec_propbuf_init(&b, big, sizeof(big));
	ck_assert_int_eq(codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, s65536, 65535),
			 CODEC_OK);
	ck_assert_uint_eq(b.len, 65538);
	ck_assert_mem_eq(big, B(0x1F, 0xFF, 0xFF, 'a'), 4);
	/* Each type's wire form. */
	codec_propbuf_init(&b, big, sizeof(big));
	codec_propbuf_add_int(&b, CODEC_PROP_MAX_QOS, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_RECEIVE_MAX, 0x1234);
	codec_propbuf_add_int(&b, CODEC_PROP_SESSION_EXPIRY, 0x01020304);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 16384);
	codec_propbuf_add_str(&b, CODEC_PROP_AUTH_DATA, "\0", 1);
	codec_propbuf_add_user(&b, "k", 1, "v", 1);
	ck_assert_int_eq(b.err, CODEC_OK);
	ck_assert_uint_eq(b.len, 2 + 3 + 5 + 4 + 4 + 7);
	ck_assert_mem_eq(big,
			 B(0x24, 1, 0x21, 0x12, 0x34, 0x11, 1, 2, 3, 4, 0x0B, 0x80, 0x80, 0x01,
			   0x16, 0, 1, 0, 0x26, 0, 1, 'k', 0, 1, 'v'),
			 25);
}
END_TEST

/* covers: */
START_TEST(test_v5_property_filter)
{
	uint8_t buf[64], out[64];
	struct codec_propbuf b;
	struct codec_props pr;
	uint64_t diag = (uint64_t)1 << CODEC_PROP_REASON_STRING | (uint64_t)1 << CODEC_PROP_USER;
	int n;

	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, "long reason", 11);
	codec_propbuf_add_int(&b, CODEC_PROP_SESSION_EXPIRY, 7);
	codec_propbuf_add_user(&b, "k", 1, "v", 1);
	codec_propbuf_add_str(&b, CODEC_PROP_SERVER_REFERENCE, "s", 1);
	ck_assert_int_eq(b.err, CODEC_OK);
	/* Reason String and User Property out, the rest in order. */
	n = codec_props_filter(buf, b.len, diag, out, sizeof(out));
	ck_assert_int_eq(n, 9);
	ck_assert_mem_eq(out, B(0x11, 0, 0, 0, 7, 0x1C, 0, 1, 's'), 9);
	ck_assert_int_eq(codec_props_parse(CODEC_DISCONNECT, out, (uint32_t)n, &pr), CODEC_OK);
	ck_assert_uint_eq(pr.user_count, 0);
	/* Nothing dropped: a copy. Everything dropped: empty. */
	ck_assert_int_eq(codec_props_filter(buf, b.len, 0, out, sizeof(out)), (int)b.len);
	ck_assert_mem_eq(out, buf, b.len);
	ck_assert_int_eq(codec_props_filter(buf, b.len, ~(uint64_t)0, out, sizeof(out)), 0);
	ck_assert_int_eq(codec_props_filter(NULL, 0, 0, NULL, 0), 0);
	/* Too small an output; a block that does not parse. */
	ck_assert_int_eq(codec_props_filter(buf, b.len, diag, out, 8), CODEC_ENOSPACE);
	ck_assert_int_eq(codec_props_filter(buf, b.len - 1, diag, out, sizeof(out)),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(codec_props_filter(B(0x05, 0), 2, 0, out, sizeof(out)), CODEC_EMALFORMED);
	/* In place, e.g. the Subscription Identifiers of a PUBLISH. */
	codec_propbuf_init(&b, buf, sizeof(buf));
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_MESSAGE_EXPIRY, 9);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 200);
	codec_propbuf_add_int(&b, CODEC_PROP_PAYLOAD_FORMAT, 1);
	n = codec_props_filter(buf, b.len, (uint64_t)1 << CODEC_PROP_SUBSCRIPTION_ID, buf, b.len);
	ck_assert_int_eq(n, 7);
	ck_assert_mem_eq(buf, B(0x02, 0, 0, 0, 9, 0x01, 1), 7);
}
END_TEST

/* ---- 5.0 fixed header ---- */

/* covers: MQTT5-2.1.3-1 MQTT5-3.6.1-1 MQTT5-3.8.1-1 MQTT5-3.10.1-1 MQTT5-3.14.1-1 MQTT5-3.15.1-1 */
START_TEST(test_v5_fixed_header_flags_every_type)
{
	/* One valid 5.0 body per type, decoded with every flags value. */
	const struct {
		uint8_t type, want;
		const uint8_t *body;
		size_t len;
	} v[] = {
	    {CODEC_CONNECT, 0, B(0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0, 0), 13},
	    {CODEC_CONNACK, 0, B(0, 0, 0), 3},
	    {CODEC_PUBACK, 0, B(0, 1), 2},
	    {CODEC_PUBREC, 0, B(0, 1), 2},
	    {CODEC_PUBREL, 2, B(0, 1), 2},
	    {CODEC_PUBCOMP, 0, B(0, 1), 2},
	    {CODEC_SUBSCRIBE, 2, B(0, 1, 0, 0, 1, 'a', 0), 7},
	    {CODEC_SUBACK, 0, B(0, 1, 0, 0), 4},
	    {CODEC_UNSUBSCRIBE, 2, B(0, 1, 0, 0, 1, 'a'), 6},
	    {CODEC_UNSUBACK, 0, B(0, 1, 0, 0), 4},
	    {CODEC_PINGREQ, 0, NULL, 0},
	    {CODEC_PINGRESP, 0, NULL, 0},
	    {CODEC_DISCONNECT, 0, NULL, 0},
	    {CODEC_AUTH, 0, NULL, 0},
	};
	size_t i;
	unsigned f;

	for (i = 0; i < N(v); i++)
		for (f = 0; f < 16; f++)
			ck_assert_msg(dec5((uint8_t)(v[i].type << 4 | f), v[i].body, v[i].len) ==
					  (f == v[i].want ? CODEC_OK : CODEC_EMALFORMED),
				      "type %u flags %u", v[i].type, f);
}
END_TEST

/* covers: */
START_TEST(test_v5_auth_type_only_in_v5)
{
	struct codec_header h;
	struct codec_packet p;

	ck_assert_int_eq(codec_parse_header_v(CODEC_V5, B(0xF0, 0), 2, CODEC_MAX_REMAINING, &h),
			 CODEC_OK);
	ck_assert_uint_eq(h.type, CODEC_AUTH);
	ck_assert_int_eq(codec_parse_header_v(CODEC_V311, B(0xF0, 0), 2, CODEC_MAX_REMAINING, &h),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(codec_parse_header_v(CODEC_V5, B(0x00, 0), 2, CODEC_MAX_REMAINING, &h),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(codec_decode_v(CODEC_V5, 0xF0, NULL, 0, &p), CODEC_OK);
	ck_assert_int_eq(codec_decode_v(CODEC_V311, 0xF0, NULL, 0, &p), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_decode(0xF0, NULL, 0, &p), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_decode_v(CODEC_V5, 0x00, NULL, 0, &p), CODEC_EMALFORMED);
	/* No such version. */
	ck_assert_int_eq(codec_decode_v(6, 0xC0, NULL, 0, &p), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_decode_v(2, 0xC0, NULL, 0, &p), CODEC_EMALFORMED);
	/* 3.1 and 3.1.1 decode the same. */
	ck_assert_int_eq(codec_decode_v(CODEC_V31, 0xC0, NULL, 0, &p), CODEC_OK);
	/* The 3.1.1 DISCONNECT still has no body. */
	ck_assert_int_eq(codec_decode_v(CODEC_V311, 0xE0, B(0), 1, &p), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_decode_v(CODEC_V5, 0xE0, B(0), 1, &p), CODEC_OK);
}
END_TEST

/* ---- 5.0 CONNECT ---- */

/* covers: MQTT5-3.1.2-1 MQTT5-3.1.2-2 */
START_TEST(test_v5_connect_level_reported_and_chosen_by_caller)
{
	static const uint8_t v5[] = {0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 0, 0, 1, 'c'};
	static const uint8_t v4[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 1, 'c'};
	static const uint8_t v3[] = {0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 0, 0, 1, 'c'};
	static const uint8_t v6[] = {0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 0, 0, 0, 1, 'c'};
	static const uint8_t mqisdp5[] = {0, 6, 'M', 'Q', 'I', 's', 'd', 'p',
					  5, 2, 0,   0,   0,   0,   1,   'c'};
	struct codec_packet p;
	uint8_t level = 0;

	/* The 3.1.1 decoder refuses level 5 as it always has, and says so. */
	ck_assert_int_eq(codec_decode(0x10, v5, sizeof(v5), &p), CODEC_EPROTOLEVEL);
	ck_assert_uint_eq(p.u.connect.protocol_level, 5);
	ck_assert_int_eq(codec_decode_v(CODEC_V311, 0x10, v5, sizeof(v5), &p), CODEC_EPROTOLEVEL);
	/* The 5.0 decoder takes 5 and still 3 and 4. */
	ck_assert_int_eq(dec5_into(0x10, v5, sizeof(v5), &p), CODEC_OK);
	ck_assert_uint_eq(p.u.connect.protocol_level, 5);
	ck_assert_int_eq(dec5_into(0x10, v4, sizeof(v4), &p), CODEC_OK);
	ck_assert_uint_eq(p.u.connect.protocol_level, 4);
	ck_assert_int_eq(dec5_into(0x10, v3, sizeof(v3), &p), CODEC_OK);
	ck_assert_uint_eq(p.u.connect.protocol_level, 3);
	ck_assert_int_eq(dec5_into(0x10, v6, sizeof(v6), &p), CODEC_EPROTOLEVEL);
	ck_assert_uint_eq(p.u.connect.protocol_level, 6);
	ck_assert_int_eq(dec5_into(0x10, mqisdp5, sizeof(mqisdp5), &p), CODEC_EPROTOLEVEL);
	ck_assert_int_eq(DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'X', 5), CODEC_EPROTONAME);
	/* Peeking the level before choosing. */
	ck_assert_int_eq(codec_connect_level(v5, sizeof(v5), &level), CODEC_OK);
	ck_assert_uint_eq(level, 5);
	ck_assert_int_eq(codec_connect_level(v3, sizeof(v3), &level), CODEC_OK);
	ck_assert_uint_eq(level, 3);
	ck_assert_int_eq(codec_connect_level(v5, 6, &level), CODEC_EMALFORMED);
	ck_assert_int_eq(codec_connect_level(B(0, 4, 'm', 'q', 't', 't', 5), 7, &level),
			 CODEC_EPROTONAME);
}
END_TEST

/* covers: MQTT5-3.1.3-1 MQTT5-3.1.2-9 MQTT5-3.1.2-17 MQTT5-3.1.2-19 MQTT5-3.1.3-3 */
START_TEST(test_v5_roundtrip_connect_with_will_and_properties)
{
	uint8_t pbuf[128], wbuf[128], buf[512];
	struct codec_propbuf pb, wb;
	struct codec_packet in = {.type = CODEC_CONNECT}, out;
	struct codec_connect *c = &in.u.connect, *o = &out.u.connect;
	size_t len, h;

	codec_propbuf_init(&pb, pbuf, sizeof(pbuf));
	codec_propbuf_add_int(&pb, CODEC_PROP_SESSION_EXPIRY, 3600);
	codec_propbuf_add_int(&pb, CODEC_PROP_RECEIVE_MAX, 10);
	codec_propbuf_add_int(&pb, CODEC_PROP_MAX_PACKET_SIZE, 1024);
	codec_propbuf_add_int(&pb, CODEC_PROP_TOPIC_ALIAS_MAX, 5);
	codec_propbuf_add_str(&pb, CODEC_PROP_AUTH_METHOD, "SCRAM-SHA-1", 11);
	codec_propbuf_add_str(&pb, CODEC_PROP_AUTH_DATA, "\x01\x02", 2);
	codec_propbuf_add_user(&pb, "app", 3, "test", 4);
	codec_propbuf_init(&wb, wbuf, sizeof(wbuf));
	codec_propbuf_add_int(&wb, CODEC_PROP_WILL_DELAY, 30);
	codec_propbuf_add_int(&wb, CODEC_PROP_PAYLOAD_FORMAT, 1);
	codec_propbuf_add_int(&wb, CODEC_PROP_MESSAGE_EXPIRY, 60);
	codec_propbuf_add_str(&wb, CODEC_PROP_CONTENT_TYPE, "text/plain", 10);
	codec_propbuf_add_str(&wb, CODEC_PROP_RESPONSE_TOPIC, "re/ply", 6);
	codec_propbuf_add_str(&wb, CODEC_PROP_CORRELATION_DATA, "\0", 1);
	codec_propbuf_add_user(&wb, "w", 1, "1", 1);
	c->protocol_level = 5;
	c->clean_session = true;
	c->keepalive = 30;
	c->client_id = str("client-5");
	c->will_flag = true;
	c->will_qos = 1;
	c->will_retain = true;
	c->will_topic = str("will/t");
	c->will_payload = str("gone");
	c->has_username = true;
	c->username = str("u");
	c->has_password = true;
	c->password = str("p");
	set_block(&c->props, &pb);
	set_block(&c->will_props, &wb);
	len = roundtrip5(&in, &out, buf, sizeof(buf));
	/* The fixed order: variable header, properties, client id, Will
	 * properties, Will topic and payload, user name, password. */
	ck_assert_uint_lt(pb.len, 128);
	ck_assert_uint_lt(wb.len, 128);
	h = (buf[1] & 0x80) ? 3 : 2;
	ck_assert_mem_eq(buf + h, B(0, 4, 'M', 'Q', 'T', 'T', 5, 0xEE, 0, 30), 10);
	ck_assert_uint_eq(buf[h + 10], pb.len);
	ck_assert_mem_eq(buf + h + 11, pbuf, pb.len);
	ck_assert_mem_eq(buf + h + 11 + pb.len, B(0, 8, 'c', 'l', 'i', 'e', 'n', 't', '-', '5'),
			 10);
	ck_assert_uint_eq(buf[h + 21 + pb.len], wb.len);
	ck_assert_mem_eq(buf + h + 22 + pb.len, wbuf, wb.len);
	ck_assert_mem_eq(
	    buf + len - 20,
	    B(0, 6, 'w', 'i', 'l', 'l', '/', 't', 0, 4, 'g', 'o', 'n', 'e', 0, 1, 'u', 0, 1, 'p'),
	    20);
	ck_assert_uint_eq(o->protocol_level, 5);
	ck_assert(o->clean_session);
	expect_str(o->client_id, "client-5");
	ck_assert_uint_eq(o->props.session_expiry, 3600);
	ck_assert_uint_eq(o->props.receive_max, 10);
	ck_assert_uint_eq(o->props.max_packet_size, 1024);
	ck_assert_uint_eq(o->props.topic_alias_max, 5);
	expect_str(o->props.auth_method, "SCRAM-SHA-1");
	ck_assert_uint_eq(o->props.user_count, 1);
	ck_assert_uint_eq(o->will_props.will_delay, 30);
	ck_assert_uint_eq(o->will_props.payload_format, 1);
	ck_assert_uint_eq(o->will_props.message_expiry, 60);
	expect_str(o->will_props.content_type, "text/plain");
	expect_str(o->will_props.response_topic, "re/ply");
	ck_assert_uint_eq(o->will_props.user_count, 1);
	expect_str(o->will_topic, "will/t");
	expect_str(o->will_payload, "gone");
	ck_assert_uint_eq(o->will_qos, 1);
	ck_assert(o->will_retain);
	expect_str(o->username, "u");
	expect_str(o->password, "p");

	/* The smallest: no Will, no names, empty client id, no properties. */
	memset(c, 0, sizeof(*c));
	c->protocol_level = 5;
	ck_assert_uint_eq(roundtrip5(&in, &out, buf, sizeof(buf)), 15);
	ck_assert(!o->clean_session);
	ck_assert_uint_eq(o->props.len, 0);
	/* A CONNECT is written in the form its level names whatever the
	 * version given, and codec_encode() writes level 5 in 5.0 form. */
	ck_assert_int_eq(codec_encode(&in, buf, sizeof(buf)), 15);
	ck_assert_int_eq(decode5_whole(buf, 15, &out), CODEC_OK);
	c->protocol_level = 4;
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &in, buf, sizeof(buf)), 14);
	ck_assert_int_eq(decode_whole(buf, 14, &out), CODEC_OK);
}
END_TEST

/* covers: MQTT5-3.1.2-18 MQTT5-3.1.2-19 */
START_TEST(test_v5_connect_password_without_user_name)
{
	struct codec_packet p;

	/* Allowed in 5.0 (flags 0x42), still malformed in 3.1.1. */
	ck_assert_int_eq(
	    dec5_into(0x10,
		      B(0, 4, 'M', 'Q', 'T', 'T', 5, 0x42, 0, 0, 0, 0, 1, 'c', 0, 2, 'p', 'w'), 18,
		      &p),
	    CODEC_OK);
	ck_assert(p.u.connect.has_password);
	ck_assert(!p.u.connect.has_username);
	expect_str(p.u.connect.password, "pw");
	ck_assert_int_eq(
	    DEC(0x10, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 0, 0, 1, 'c', 0, 2, 'p', 'w'),
	    CODEC_EMALFORMED);
	/* Password flag 0: a password there is trailing garbage. */
	ck_assert_int_eq(
	    DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0, 0, 1, 'c', 0, 2, 'p', 'w'),
	    CODEC_EMALFORMED);
	/* Password flag 1 without one. */
	ck_assert_int_eq(DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x42, 0, 0, 0, 0, 1, 'c'),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.1.2-3 MQTT5-3.1.2-11 MQTT5-3.1.2-12 MQTT5-3.1.2-13 */
/* covers: MQTT5-3.1.2-16 MQTT5-3.1.3-3 */
START_TEST(test_v5_connect_flag_rules)
{
	unsigned flags;

	for (flags = 0; flags < 256; flags++) {
		/* A body with every field its flags announce, as 5.0 lays
		 * them out. */
		uint8_t body[64];
		size_t n = 0;
		bool will = flags & 0x04, user = flags & 0x80, pass = flags & 0x40;
		unsigned qos = (flags >> 3) & 3;
		bool valid =
		    (flags & 1) == 0 && (will || (qos == 0 && !(flags & 0x20))) && qos != 3;
		int rc;

		memcpy(body, B(0, 4, 'M', 'Q', 'T', 'T', 5), 7);
		n = 7;
		body[n++] = (uint8_t)flags;
		memcpy(body + n, B(0, 0, 0, 0, 1, 'c'), 6);
		n += 6;
		if (will) {
			memcpy(body + n, B(0, 0, 1, 'w', 0, 0), 6);
			n += 6;
		}
		if (user) {
			memcpy(body + n, B(0, 1, 'u'), 3);
			n += 3;
		}
		if (pass) {
			memcpy(body + n, B(0, 1, 'p'), 3);
			n += 3;
		}
		rc = dec5(0x10, body, n);
		ck_assert_msg(rc == (valid ? CODEC_OK : CODEC_EMALFORMED), "flags 0x%02x: %d",
			      flags, rc);
	}
	/* No client id at all. */
	ck_assert_int_eq(DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0), CODEC_EMALFORMED);
	/* User name flag 0 with a user name: trailing bytes. */
	ck_assert_int_eq(
	    DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 0, 0, 0, 1, 'c', 0, 1, 'u'),
	    CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.1.3-4 MQTT5-3.1.3-11 MQTT5-3.1.3-12 MQTT5-1.5.4-1 MQTT5-1.5.4-2 MQTT5-4.7.0-1 */
START_TEST(test_v5_connect_strings_utf8_and_will_topic)
{
	size_t k;

	for (k = 0; k < N(utf8_bad_mix); k++) {
		const struct bad_utf8 *u = &utf8_bad_mix[k];
		uint8_t body[64];
		size_t n, field;

		for (field = 0; field < 3; field++) {
			memcpy(body, B(0, 4, 'M', 'Q', 'T', 'T', 5, 0x86, 0, 0, 0), 11);
			n = 11;
			if (field == 0) {
				body[n++] = 0;
				body[n++] = (uint8_t)u->len;
				memcpy(body + n, u->s, u->len);
				n += u->len;
			} else {
				memcpy(body + n, B(0, 1, 'c'), 3);
				n += 3;
			}
			body[n++] = 0; /* Will Properties */
			body[n++] = 0;
			if (field == 1) {
				body[n++] = (uint8_t)u->len;
				memcpy(body + n, u->s, u->len);
				n += u->len;
			} else {
				body[n++] = 1;
				body[n++] = 'w';
			}
			body[n++] = 0; /* Will payload */
			body[n++] = 0;
			body[n++] = 0;
			if (field == 2) {
				body[n++] = (uint8_t)u->len;
				memcpy(body + n, u->s, u->len);
				n += u->len;
			} else {
				body[n++] = 1;
				body[n++] = 'u';
			}
			ck_assert_msg(dec5(0x10, body, n) == CODEC_EMALFORMED, "field %zu case %zu",
				      field, k);
		}
	}
	/* Will topic: no wildcards, not empty. */
	ck_assert_int_eq(
	    DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 0, 0, 0, 1, 'c', 0, 0, 1, '#', 0, 0),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(
	    DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 0, 0, 0, 1, 'c', 0, 0, 0, 0, 0),
	    CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.1.2.11 */
START_TEST(test_v5_connect_property_protocol_errors)
{
	/* Authentication Data without an Authentication Method. */
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x16, 0, 1, 'x'), 4, NULL), CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x15, 0, 1, 'm', 0x16, 0, 1, 'x'), 8, NULL),
			 CODEC_OK);
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x15, 0, 1, 'm'), 4, NULL), CODEC_OK);
	/* Receive Maximum 0 and Maximum Packet Size 0 (also in the table
	 * test), Request Problem / Response Information 2. */
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x21, 0, 0), 3, NULL), CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x27, 0, 0, 0, 0), 5, NULL), CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x17, 2), 2, NULL), CODEC_EPROTOCOL);
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x19, 2), 2, NULL), CODEC_EPROTOCOL);
	/* Properties of the wrong block: Will Delay in CONNECT, Session
	 * Expiry in the Will. */
	ck_assert_int_eq(props_in(CODEC_CONNECT, B(0x18, 0, 0, 0, 1), 5, NULL), CODEC_EMALFORMED);
	ck_assert_int_eq(props_in(CODEC_WILL, B(0x11, 0, 0, 0, 1), 5, NULL), CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_v5_malformed_wins_over_protocol_error)
{
	struct codec_packet p;

	/* Receive Maximum 0 (protocol error), then a truncated client id. */
	ck_assert_int_eq(DEC5(0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 0, 3, 0x21, 0, 0, 0, 5, 'c'),
			 CODEC_EMALFORMED);
	/* The same with a whole client id: a protocol error, and everything
	 * that decoded is there for the caller. */
	ck_assert_int_eq(
	    dec5_into(0x10, B(0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 9, 3, 0x21, 0, 0, 0, 1, 'c'), 17,
		      &p),
	    CODEC_EPROTOCOL);
	ck_assert_uint_eq(p.u.connect.keepalive, 9);
	expect_str(p.u.connect.client_id, "c");
	/* A duplicate, then an unknown identifier: malformed. */
	ck_assert_int_eq(props_in(CODEC_PUBLISH, B(0x01, 0, 0x01, 0, 0x05, 0), 6, NULL),
			 CODEC_EMALFORMED);
	/* SUBSCRIBE: Retain Handling 3 in the first entry, reserved bits in
	 * the second. */
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 1, 'a', 0x30, 0, 1, 'b', 0x80), CODEC_EMALFORMED);
}
END_TEST

/* ---- 5.0 CONNACK ---- */

/* covers: MQTT5-3.2.2-8 MQTT5-3.2.2-6 MQTT5-3.2.2-1 */
START_TEST(test_v5_connack_reason_codes_and_flags)
{
	uint8_t buf[16];
	unsigned rc;

	for (rc = 0; rc < 256; rc++) {
		bool ok = codec_v5_reason_ok(CODEC_CONNACK, (uint8_t)rc);
		struct codec_packet in = {.type = CODEC_CONNACK}, out;

		ck_assert_int_eq(DEC5(0x20, 0, (uint8_t)rc, 0), ok ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_int_eq(
		    codec_v5_encode_connack(false, (uint8_t)rc, NULL, 0, buf, sizeof(buf)),
		    ok ? 5 : CODEC_EMALFORMED);
		if (ok) {
			in.u.connack.return_code = (uint8_t)rc;
			ck_assert_uint_eq(roundtrip5(&in, &out, buf, sizeof(buf)), 5);
			ck_assert_uint_eq(out.u.connack.return_code, rc);
		}
		/* Session Present only with 0x00. */
		ck_assert_int_eq(DEC5(0x20, 1, (uint8_t)rc, 0),
				 ok && rc == 0 ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_int_eq(
		    codec_v5_encode_connack(true, (uint8_t)rc, NULL, 0, buf, sizeof(buf)),
		    ok && rc == 0 ? 5 : CODEC_EMALFORMED);
	}
	/* The table of 5.0 section 3.2.2.2, spelled out. */
	for (rc = 0; rc < 256; rc++) {
		static const uint8_t t[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
					    0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
					    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
		ck_assert(codec_v5_reason_ok(CODEC_CONNACK, (uint8_t)rc) ==
			  (memchr(t, (int)rc, sizeof(t)) != NULL));
	}
	/* Reserved acknowledge flags. */
	for (rc = 2; rc < 256; rc++)
		ck_assert_int_eq(DEC5(0x20, (uint8_t)rc, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x20, 0, 0, 0, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_v5_connack_encoder_with_properties)
{
	uint8_t props[64], buf[64];
	struct codec_propbuf b;
	struct codec_packet p;

	codec_propbuf_init(&b, props, sizeof(props));
	codec_propbuf_add_str(&b, CODEC_PROP_ASSIGNED_CLIENT_ID, "a1", 2);
	codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS_MAX, 10);
	codec_propbuf_add_int(&b, CODEC_PROP_MAX_QOS, 1);
	ck_assert_int_eq(codec_v5_encode_connack(true, 0, props, b.len, buf, sizeof(buf)), 15);
	ck_assert_mem_eq(buf, B(0x20, 13, 1, 0, 10, 0x12, 0, 2, 'a', '1', 0x22, 0, 10, 0x24, 1),
			 15);
	ck_assert_int_eq(decode5_whole(buf, 15, &p), CODEC_OK);
	ck_assert(p.u.connack.session_present);
	expect_str(p.u.connack.props.assigned_client_id, "a1");
	ck_assert_uint_eq(p.u.connack.props.max_qos, 1);
	/* Every shorter buffer is refused without writing past it. */
	for (size_t cap = 0; cap < 15; cap++)
		ck_assert_int_eq(codec_v5_encode_connack(true, 0, props, b.len, buf, cap),
				 CODEC_ENOSPACE);
	/* A block not valid in CONNACK: Topic Alias, a duplicate, a cut. */
	ck_assert_int_eq(codec_v5_encode_connack(false, 0, B(0x23, 0, 1), 3, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(
	    codec_v5_encode_connack(false, 0, B(0x24, 0, 0x24, 1), 4, buf, sizeof(buf)),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(codec_v5_encode_connack(false, 0, B(0x22, 0), 2, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(codec_v5_encode_connack(false, 0, NULL, 1, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
}
END_TEST

/* ---- 5.0 PUBLISH ---- */

/* covers: MQTT5-2.2.1-2 MQTT5-3.3.2-1 */
START_TEST(test_v5_roundtrip_publish_with_properties)
{
	static const uint8_t payload[200] = {9, 8, 7};
	uint8_t props[128], buf[512], hdr[64];
	struct codec_propbuf b;
	struct codec_packet in = {.type = CODEC_PUBLISH}, out;
	struct codec_publish *pub = &in.u.publish;
	size_t pid_off;
	int qos, n;

	codec_propbuf_init(&b, props, sizeof(props));
	codec_propbuf_add_int(&b, CODEC_PROP_PAYLOAD_FORMAT, 0);
	codec_propbuf_add_int(&b, CODEC_PROP_MESSAGE_EXPIRY, 100);
	codec_propbuf_add_str(&b, CODEC_PROP_RESPONSE_TOPIC, "r", 1);
	codec_propbuf_add_user(&b, "k", 1, "v", 1);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 5);
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 6);
	for (qos = 0; qos <= 2; qos++) {
		pub->qos = (uint8_t)qos;
		pub->retain = qos == 1;
		pub->dup = qos == 2;
		pub->topic = str("a/\xE2\x82\xAC");
		pub->packet_id = qos > 0 ? (uint16_t)(qos * 1000) : 0;
		pub->payload = payload;
		pub->payload_len = sizeof(payload);
		set_block(&pub->props, &b);
		n = (int)roundtrip5(&in, &out, buf, sizeof(buf));
		ck_assert_uint_eq(out.u.publish.qos, qos);
		ck_assert(out.u.publish.retain == (qos == 1));
		ck_assert(out.u.publish.dup == (qos == 2));
		ck_assert_uint_eq(out.u.publish.packet_id, pub->packet_id);
		ck_assert_uint_eq(out.u.publish.props.sub_id_count, 2);
		ck_assert_uint_eq(out.u.publish.props.message_expiry, 100);
		ck_assert_uint_eq(out.u.publish.payload_len, sizeof(payload));
		ck_assert_mem_eq(out.u.publish.payload, payload, sizeof(payload));
		/* QoS 0: no packet id between the topic and the properties. */
		ck_assert_uint_eq(buf[3 + 2 + 5 + (qos > 0 ? 2 : 0)], b.len);
		/* The header-only encoder writes the same first bytes, and the
		 * payload completes the packet. */
		ck_assert_int_eq(codec_v5_encode_publish_header(pub, hdr, sizeof(hdr), &pid_off),
				 n - (int)sizeof(payload));
		ck_assert_mem_eq(hdr, buf, (size_t)n - sizeof(payload));
		ck_assert_uint_eq(pid_off, qos > 0 ? 10 : 0);
		ck_assert_int_eq(
		    codec_v5_encode_publish_header(pub, hdr, (size_t)n - sizeof(payload) - 1, NULL),
		    CODEC_ENOSPACE);
		/* Without properties: Property Length 0. */
		memset(&pub->props, 0, sizeof(pub->props));
		n = (int)roundtrip5(&in, &out, buf, sizeof(buf));
		ck_assert_uint_eq(buf[3 + 2 + 5 + (qos > 0 ? 2 : 0)], 0);
	}
	/* A QoS 0 id is not written [MQTT5-2.2.1-2]. */
	pub->qos = 0;
	pub->dup = false;
	pub->packet_id = 99;
	pub->payload_len = 0;
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &in, buf, sizeof(buf)), 10);
	ck_assert_mem_eq(buf, B(0x30, 8, 0, 5, 'a', '/', 0xE2, 0x82, 0xAC, 0), 10);
}
END_TEST

/* covers: MQTT5-3.3.2.1 MQTT5-3.3.2-8 */
START_TEST(test_v5_publish_topic_alias_and_empty_topic)
{
	struct codec_packet p;
	struct codec_publish pub = {.qos = 1, .packet_id = 1};
	uint8_t buf[64];

	/* An empty topic needs a Topic Alias. */
	ck_assert_int_eq(DEC5(0x30, 0, 0, 0), CODEC_EPROTOCOL);
	ck_assert_int_eq(dec5_into(0x30, B(0, 0, 3, 0x23, 0, 7, 'x'), 7, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.publish.props.topic_alias, 7);
	ck_assert_uint_eq(p.u.publish.topic.len, 0);
	ck_assert_uint_eq(p.u.publish.payload_len, 1);
	/* Alias 0 is reported, not refused: the caller checks 1..its
	 * maximum and answers 0x94. */
	ck_assert_int_eq(dec5_into(0x30, B(0, 1, 't', 3, 0x23, 0, 0), 7, &p), CODEC_OK);
	ck_assert(CODEC_PROP_HAS(&p.u.publish.props, CODEC_PROP_TOPIC_ALIAS));
	ck_assert_uint_eq(p.u.publish.props.topic_alias, 0);
	/* The broker's encoder never sends alias 0, nor an empty topic
	 * without an alias. */
	pub.topic = str("t");
	pub.props.data = B(0x23, 0, 0);
	pub.props.len = 3;
	ck_assert_int_eq(codec_v5_encode_publish_header(&pub, buf, sizeof(buf), NULL),
			 CODEC_EMALFORMED);
	pub.props.data = B(0x23, 0, 1);
	ck_assert_int_eq(codec_v5_encode_publish_header(&pub, buf, sizeof(buf), NULL), 11);
	pub.topic = str("");
	ck_assert_int_eq(codec_v5_encode_publish_header(&pub, buf, sizeof(buf), NULL), 10);
	pub.props.len = 0;
	ck_assert_int_eq(codec_v5_encode_publish_header(&pub, buf, sizeof(buf), NULL),
			 CODEC_EMALFORMED);
	/* A property that PUBLISH may not carry. */
	pub.topic = str("t");
	pub.props.data = B(0x11, 0, 0, 0, 0);
	pub.props.len = 5;
	ck_assert_int_eq(codec_v5_encode_publish_header(&pub, buf, sizeof(buf), NULL),
			 CODEC_EMALFORMED);
	pub.qos = 3;
	pub.props.len = 0;
	ck_assert_int_eq(codec_v5_encode_publish_header(&pub, buf, sizeof(buf), NULL),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.3.1-4 MQTT5-3.3.1-2 MQTT5-3.3.2-2 MQTT5-4.7.0-1 MQTT5-1.5.4-1 MQTT5-1.5.4-2 */
START_TEST(test_v5_publish_header_and_topic_rules)
{
	size_t k;

	ck_assert_int_eq(DEC5(0x36, 0, 1, 't', 0, 1, 0), CODEC_EMALFORMED); /* QoS 3 */
	ck_assert_int_eq(DEC5(0x38, 0, 1, 't', 0), CODEC_EMALFORMED);       /* DUP, QoS 0 */
	ck_assert_int_eq(DEC5(0x3A, 0, 1, 't', 0, 1, 0), CODEC_OK);
	ck_assert_int_eq(DEC5(0x32, 0, 1, 't', 0, 0, 0), CODEC_EMALFORMED); /* id 0 */
	ck_assert_int_eq(DEC5(0x30, 0, 3, 'a', '/', '#', 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x30, 0, 3, 'a', '+', 'b', 0), CODEC_EMALFORMED);
	for (k = 0; k < N(utf8_bad_mix); k++) {
		uint8_t body[32];
		size_t n = 0;

		body[n++] = 0;
		body[n++] = (uint8_t)utf8_bad_mix[k].len;
		memcpy(body + n, utf8_bad_mix[k].s, utf8_bad_mix[k].len);
		n += utf8_bad_mix[k].len;
		body[n++] = 0;
		ck_assert_int_eq(dec5(0x30, body, n), CODEC_EMALFORMED);
	}
	/* Properties PUBLISH may not carry are malformed. */
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't', 2, 0x24, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x30, 0, 1, 't', 5, 0x18, 0, 0, 0, 1), CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_v5_publish_subscription_ids_reported_for_the_caller)
{
	struct codec_packet p;

	/* A PUBLISH from a server may carry several; a server refuses one
	 * from a client with publish.props.sub_id_count (MQTT5-3.3.4-6). */
	ck_assert_int_eq(dec5_into(0x30, B(0, 1, 't', 4, 0x0B, 1, 0x0B, 2), 8, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.publish.props.sub_id_count, 2);
	ck_assert_uint_eq(p.u.publish.props.sub_id, 1);
	ck_assert_int_eq(dec5_into(0x30, B(0, 1, 't', 0), 4, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.publish.props.sub_id_count, 0);
}
END_TEST

/* ---- 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP ---- */

/* covers: MQTT5-3.4.2-1 MQTT5-3.5.2-1 MQTT5-3.6.2-1 MQTT5-3.7.2-1 */
START_TEST(test_v5_ack_reason_code_tables)
{
	const struct {
		uint8_t type, first;
		const uint8_t *codes;
		size_t n;
	} v[] = {
	    {CODEC_PUBACK, 0x40, B(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99), 9},
	    {CODEC_PUBREC, 0x50, B(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99), 9},
	    {CODEC_PUBREL, 0x62, B(0x00, 0x92), 2},
	    {CODEC_PUBCOMP, 0x70, B(0x00, 0x92), 2},
	};
	size_t i;
	unsigned rc;

	for (i = 0; i < N(v); i++) {
		for (rc = 0; rc < 256; rc++) {
			bool ok = memchr(v[i].codes, (int)rc, v[i].n) != NULL;
			uint8_t buf[16];
			struct codec_packet p;

			ck_assert(codec_v5_reason_ok(v[i].type, (uint8_t)rc) == ok);
			ck_assert_int_eq(dec5_into(v[i].first, B(0, 1, (uint8_t)rc), 3, &p),
					 ok ? CODEC_OK : CODEC_EPROTOCOL);
			ck_assert_uint_eq(p.u.ack.reason, rc);
			ck_assert_int_eq(DEC5(v[i].first, 0, 1, (uint8_t)rc, 0),
					 ok ? CODEC_OK : CODEC_EPROTOCOL);
			ck_assert_int_eq(codec_v5_encode_ack((enum codec_type)v[i].type, 1,
							     (uint8_t)rc, NULL, 0, buf,
							     sizeof(buf)),
					 ok ? (rc == 0 ? 4 : 5) : CODEC_EMALFORMED);
		}
	}
}
END_TEST

/* covers: */
START_TEST(test_v5_ack_short_forms)
{
	struct codec_packet p;
	uint8_t buf[64], props[32];
	struct codec_propbuf b;

	/* Remaining length 2: reason 0, no properties. */
	ck_assert_int_eq(dec5_into(0x40, B(0x12, 0x34), 2, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.ack.packet_id, 0x1234);
	ck_assert_uint_eq(p.u.packet_id, 0x1234); /* the same field */
	ck_assert_uint_eq(p.u.ack.reason, 0);
	/* 3: a reason, no Property Length. */
	ck_assert_int_eq(dec5_into(0x50, B(0, 9, 0x80), 3, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.ack.reason, 0x80);
	ck_assert_uint_eq(p.u.ack.props.len, 0);
	/* 4 and more: reason and properties. */
	ck_assert_int_eq(dec5_into(0x62, B(0, 9, 0x92, 4, 0x1F, 0, 1, 'x'), 8, &p), CODEC_OK);
	expect_str(p.u.ack.props.reason_string, "x");
	ck_assert_int_eq(DEC5(0x70, 0, 9, 0, 0), CODEC_OK);
	/* Bad: id 0, a cut id, trailing bytes, a property they may not
	 * carry. */
	ck_assert_int_eq(DEC5(0x40, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x40, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x40, 0, 1, 0, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x40, 0, 1, 0, 3, 0x23, 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x40, 0, 1, 0, 5, 0x11, 0, 0, 0, 1), CODEC_EMALFORMED);

	/* The encoder picks the shortest form. */
	ck_assert_int_eq(codec_v5_encode_ack(CODEC_PUBACK, 7, 0, NULL, 0, buf, sizeof(buf)), 4);
	ck_assert_mem_eq(buf, B(0x40, 2, 0, 7), 4);
	ck_assert_int_eq(codec_v5_encode_ack(CODEC_PUBREL, 7, 0x92, NULL, 0, buf, sizeof(buf)), 5);
	ck_assert_mem_eq(buf, B(0x62, 3, 0, 7, 0x92), 5);
	codec_propbuf_init(&b, props, sizeof(props));
	codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, "no", 2);
	codec_propbuf_add_user(&b, "a", 1, "b", 1);
	ck_assert_int_eq(codec_v5_encode_ack(CODEC_PUBREC, 7, 0, props, b.len, buf, sizeof(buf)),
			 4 + 1 + 1 + (int)b.len);
	ck_assert_mem_eq(
	    buf, B(0x50, 16, 0, 7, 0, 12, 0x1F, 0, 2, 'n', 'o', 0x26, 0, 1, 'a', 0, 1, 'b'), 18);
	ck_assert_int_eq(decode5_whole(buf, 18, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.ack.props.user_count, 1);
	ck_assert_int_eq(codec_v5_encode_ack(CODEC_PUBREC, 7, 0, props, b.len, buf, 17),
			 CODEC_ENOSPACE);
	/* Not an ack type; a property an ack may not carry. */
	ck_assert_int_eq(codec_v5_encode_ack(CODEC_UNSUBACK, 7, 0, NULL, 0, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(codec_v5_encode_ack(CODEC_PUBACK, 7, 0, B(0x24, 1), 2, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_v5_roundtrip_acks_every_type_and_form)
{
	static const uint8_t types[] = {CODEC_PUBACK, CODEC_PUBREC, CODEC_PUBREL, CODEC_PUBCOMP};
	uint8_t props[32], buf[64];
	struct codec_propbuf b;
	size_t i;
	int form;

	codec_propbuf_init(&b, props, sizeof(props));
	codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, "r", 1);
	codec_propbuf_add_user(&b, "k", 1, "v", 1);
	for (i = 0; i < N(types); i++) {
		for (form = 0; form < 3; form++) {
			struct codec_packet in, out;
			uint8_t reason = types[i] >= CODEC_PUBREL ? 0x92 : 0x10;

			memset(&in, 0, sizeof(in));
			in.type = types[i];
			in.u.ack.packet_id = (uint16_t)(0xFFF0 + i);
			in.u.ack.reason = form == 0 ? 0 : reason;
			if (form == 2)
				set_block(&in.u.ack.props, &b);
			ck_assert_uint_eq(roundtrip5(&in, &out, buf, sizeof(buf)), form == 0 ? 4
										   : form == 1
										       ? 5
										       : 6 + b.len);
			ck_assert_uint_eq(out.u.ack.packet_id, 0xFFF0 + i);
			ck_assert_uint_eq(out.u.ack.reason, in.u.ack.reason);
			ck_assert_uint_eq(out.u.ack.props.len, form == 2 ? b.len : 0);
			ck_assert_uint_eq(buf[0],
					  types[i] << 4 | (types[i] == CODEC_PUBREL ? 2 : 0));
		}
	}
}
END_TEST

/* ---- 5.0 SUBSCRIBE, UNSUBSCRIBE, SUBACK, UNSUBACK ---- */

/* covers: MQTT5-3.8.3-1 */
START_TEST(test_v5_roundtrip_subscribe_every_option)
{
	uint8_t data[2048], buf[4096], props[16];
	struct codec_packet in = {.type = CODEC_SUBSCRIBE}, out;
	struct codec_propbuf b;
	struct codec_str f;
	uint32_t pos = 0, count = 0;
	unsigned o;
	uint8_t q;
	int len = 0;

	/* Every valid options byte: QoS 0..2, No Local, Retain As
	 * Published, Retain Handling 0..2. */
	for (o = 0; o < 64; o++) {
		if (CODEC_SUBOPT_QOS(o) == 3 || CODEC_SUBOPT_RETAIN_HANDLING(o) == 3)
			continue;
		len = codec_list_append(CODEC_SUBSCRIBE, data, (size_t)len, sizeof(data), "a/+", 3,
					(uint8_t)o);
		ck_assert_int_gt(len, 0);
		count++;
	}
	codec_propbuf_init(&b, props, sizeof(props));
	codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, 268435455);
	codec_propbuf_add_user(&b, "a", 1, "b", 1);
	in.u.list.packet_id = 42;
	in.u.list.data = data;
	in.u.list.data_len = (uint32_t)len;
	set_block(&in.u.list.props, &b);
	roundtrip5(&in, &out, buf, sizeof(buf));
	ck_assert_uint_eq(out.u.list.count, count);
	ck_assert_uint_eq(out.u.list.props.sub_id, 268435455);
	ck_assert_uint_eq(out.u.list.packet_id, 42);
	for (o = 0; o < 64; o++) {
		if (CODEC_SUBOPT_QOS(o) == 3 || CODEC_SUBOPT_RETAIN_HANDLING(o) == 3)
			continue;
		ck_assert(codec_list_next(CODEC_SUBSCRIBE, &out.u.list, &pos, &f, &q));
		expect_str(f, "a/+");
		ck_assert_uint_eq(q, o);
		ck_assert_uint_eq(CODEC_SUBOPT_QOS(q), o & 3);
		ck_assert((q & CODEC_SUBOPT_NO_LOCAL) == (o & 4));
		ck_assert((q & CODEC_SUBOPT_RETAIN_AS_PUB) == (o & 8));
		ck_assert_uint_eq(CODEC_SUBOPT_RETAIN_HANDLING(q), o >> 4);
	}
	ck_assert(!codec_list_next(CODEC_SUBSCRIBE, &out.u.list, &pos, &f, &q));
}
END_TEST

/* covers: MQTT5-3.8.3-5 MQTT5-3.8.3.1 */
START_TEST(test_v5_subscribe_options_rules)
{
	unsigned o;

	for (o = 0; o < 256; o++) {
		int want = CODEC_OK;

		if (o & 0xC0)
			want = CODEC_EMALFORMED;
		else if ((o & 3) == 3 || ((o >> 4) & 3) == 3)
			want = CODEC_EPROTOCOL;
		ck_assert_msg(DEC5(0x82, 0, 1, 0, 0, 1, 'a', (uint8_t)o) == want, "options 0x%02x",
			      o);
	}
	/* A missing options byte, an empty or ill-formed filter. */
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 1, 'a'), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 2, 0xC0, 0x80, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x82, 0, 0, 0, 0, 1, 'a', 0), CODEC_EMALFORMED); /* id 0 */
}
END_TEST

/* covers: MQTT5-3.8.3-4 */
START_TEST(test_v5_subscribe_no_local_on_shared_protocol_error)
{
	ck_assert_int_eq(
	    DEC5(0x82, 0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 4),
	    CODEC_EPROTOCOL);
	ck_assert_int_eq(
	    DEC5(0x82, 0, 1, 0, 0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 0x0A),
	    CODEC_OK);
	/* Not shared: "$shared/a" and "share/g/a". */
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 9, '$', 's', 'h', 'a', 'r', 'e', 'd', '/', 'a', 4),
			 CODEC_OK);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0, 0, 9, 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'a', 4),
			 CODEC_OK);
}
END_TEST

/* covers: MQTT5-3.8.3-2 MQTT5-3.10.3-2 */
START_TEST(test_v5_subscribe_unsubscribe_need_an_entry)
{
	ck_assert_int_eq(DEC5(0x82, 0, 1, 0), CODEC_EPROTOCOL);
	ck_assert_int_eq(DEC5(0xA2, 0, 1, 0), CODEC_EPROTOCOL);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 2, 0x26, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0x82, 0, 1), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xA2, 0, 1), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.8.2.1.2 */
START_TEST(test_v5_subscribe_subscription_identifier)
{
	struct codec_packet p;

	ck_assert_int_eq(dec5_into(0x82, B(0, 1, 2, 0x0B, 0x7F, 0, 1, 'a', 0), 9, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.list.props.sub_id, 127);
	ck_assert(CODEC_PROP_HAS(&p.u.list.props, CODEC_PROP_SUBSCRIPTION_ID));
	ck_assert_int_eq(DEC5(0x82, 0, 1, 2, 0x0B, 0, 0, 1, 'a', 0), CODEC_EPROTOCOL);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, 'a', 0), CODEC_EPROTOCOL);
	ck_assert_int_eq(DEC5(0x82, 0, 1, 5, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1, 'a', 0), CODEC_OK);
	/* Not allowed in UNSUBSCRIBE. */
	ck_assert_int_eq(DEC5(0xA2, 0, 1, 2, 0x0B, 1, 0, 1, 'a'), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.10.3-1 */
START_TEST(test_v5_roundtrip_unsubscribe)
{
	uint8_t data[64], buf[128];
	struct codec_packet in = {.type = CODEC_UNSUBSCRIBE}, out;
	struct codec_str f;
	uint32_t pos = 0;
	uint8_t q;
	int len;

	len = codec_list_append(CODEC_UNSUBSCRIBE, data, 0, sizeof(data), "a/b", 3, 0);
	len = codec_list_append(CODEC_UNSUBSCRIBE, data, (size_t)len, sizeof(data), "$share/g/#",
				10, 0);
	in.u.list.packet_id = 3;
	in.u.list.data = data;
	in.u.list.data_len = (uint32_t)len;
	in.u.list.props.data = B(0x26, 0, 1, 'k', 0, 0);
	in.u.list.props.len = 6;
	ck_assert_uint_eq(roundtrip5(&in, &out, buf, sizeof(buf)), 2 + 2 + 1 + 6 + 5 + 12);
	ck_assert_uint_eq(out.u.list.count, 2);
	ck_assert(codec_list_next(CODEC_UNSUBSCRIBE, &out.u.list, &pos, &f, &q));
	expect_str(f, "a/b");
	ck_assert(codec_list_next(CODEC_UNSUBSCRIBE, &out.u.list, &pos, &f, &q));
	expect_str(f, "$share/g/#");
	ck_assert(!codec_list_next(CODEC_UNSUBSCRIBE, &out.u.list, &pos, &f, &q));
	ck_assert_int_eq(DEC5(0xA2, 0, 1, 0, 0, 2, 0xED, 0xA0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xA2, 0, 1, 0, 0, 0), CODEC_EMALFORMED);
}
END_TEST

/* covers: MQTT5-3.9.3-2 MQTT5-3.11.3-2 */
START_TEST(test_v5_suback_unsuback_reason_codes)
{
	static const uint8_t suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
					 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
	static const uint8_t unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
	uint8_t buf[64];
	unsigned rc;

	for (rc = 0; rc < 256; rc++) {
		bool s_ok = memchr(suback, (int)rc, sizeof(suback)) != NULL;
		bool u_ok = memchr(unsuback, (int)rc, sizeof(unsuback)) != NULL;
		uint8_t two[2] = {0, (uint8_t)rc};

		ck_assert(codec_v5_reason_ok(CODEC_SUBACK, (uint8_t)rc) == s_ok);
		ck_assert(codec_v5_reason_ok(CODEC_UNSUBACK, (uint8_t)rc) == u_ok);
		ck_assert_int_eq(DEC5(0x90, 0, 1, 0, 0, (uint8_t)rc),
				 s_ok ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_int_eq(DEC5(0xB0, 0, 1, 0, 0, (uint8_t)rc),
				 u_ok ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_int_eq(
		    codec_v5_encode_suback(CODEC_SUBACK, 1, two, 2, NULL, 0, buf, sizeof(buf)),
		    s_ok ? 7 : CODEC_EMALFORMED);
		ck_assert_int_eq(
		    codec_v5_encode_suback(CODEC_UNSUBACK, 1, two, 2, NULL, 0, buf, sizeof(buf)),
		    u_ok ? 7 : CODEC_EMALFORMED);
	}
	/* No codes at all. */
	ck_assert_int_eq(
	    codec_v5_encode_suback(CODEC_SUBACK, 1, suback, 0, NULL, 0, buf, sizeof(buf)),
	    CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xB0, 0, 1, 0), CODEC_EPROTOCOL);
	ck_assert_int_eq(
	    codec_v5_encode_suback(CODEC_PUBACK, 1, suback, 1, NULL, 0, buf, sizeof(buf)),
	    CODEC_EMALFORMED);
}
END_TEST

/* covers: */
START_TEST(test_v5_suback_unsuback_encoders_bytes)
{
	static const uint8_t codes[] = {0x00, 0x02, 0x87};
	uint8_t buf[64];
	struct codec_packet p;
	struct codec_str f;
	uint32_t pos = 0;
	uint8_t q;

	ck_assert_int_eq(codec_v5_encode_suback(CODEC_SUBACK, 0x0102, codes, 3, B(0x1F, 0, 1, '!'),
						4, buf, sizeof(buf)),
			 12);
	ck_assert_mem_eq(buf, B(0x90, 10, 1, 2, 4, 0x1F, 0, 1, '!', 0, 2, 0x87), 12);
	ck_assert_int_eq(decode5_whole(buf, 12, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.list.count, 3);
	expect_str(p.u.list.props.reason_string, "!");
	ck_assert(codec_list_next(CODEC_SUBACK, &p.u.list, &pos, &f, &q));
	ck_assert_uint_eq(q, 0);
	ck_assert(codec_list_next(CODEC_SUBACK, &p.u.list, &pos, &f, &q));
	ck_assert_uint_eq(q, 2);
	ck_assert(codec_list_next(CODEC_SUBACK, &p.u.list, &pos, &f, &q));
	ck_assert_uint_eq(q, 0x87);
	ck_assert(!codec_list_next(CODEC_SUBACK, &p.u.list, &pos, &f, &q));

	ck_assert_int_eq(
	    codec_v5_encode_suback(CODEC_UNSUBACK, 9, B(0x11, 0), 2, NULL, 0, buf, sizeof(buf)), 7);
	ck_assert_mem_eq(buf, B(0xB0, 5, 0, 9, 0, 0x11, 0), 7);
	ck_assert_int_eq(decode5_whole(buf, 7, &p), CODEC_OK);
	pos = 0;
	ck_assert(codec_list_next(CODEC_UNSUBACK, &p.u.list, &pos, &f, &q));
	ck_assert_uint_eq(q, 0x11);
	ck_assert_uint_eq(p.u.packet_id, 9); /* reads the same as 3.1.1's */
	ck_assert_int_eq(codec_v5_encode_suback(CODEC_UNSUBACK, 9, B(0x11, 0), 2, NULL, 0, buf, 6),
			 CODEC_ENOSPACE);
	/* SUBACK may not carry a Subscription Identifier. */
	ck_assert_int_eq(
	    codec_v5_encode_suback(CODEC_SUBACK, 9, codes, 1, B(0x0B, 1), 2, buf, sizeof(buf)),
	    CODEC_EMALFORMED);
	/* 5.0 UNSUBACK lists are appended like SUBACK's. */
	ck_assert_int_eq(codec_list_append(CODEC_UNSUBACK, buf, 0, 1, NULL, 0, 0x11), 1);
	ck_assert_int_eq(codec_list_append(CODEC_UNSUBACK, buf, 1, 1, NULL, 0, 0x11),
			 CODEC_ENOSPACE);
}
END_TEST

/* ---- 5.0 DISCONNECT and AUTH ---- */

/* covers: MQTT5-3.14.2-1 MQTT5-3.14.2-2 */
START_TEST(test_v5_disconnect_forms_and_reason_codes)
{
	static const uint8_t table[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
					0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
					0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
	struct codec_packet p;
	uint8_t buf[64];
	unsigned rc;

	for (rc = 0; rc < 256; rc++) {
		bool ok = memchr(table, (int)rc, sizeof(table)) != NULL;

		ck_assert(codec_v5_reason_ok(CODEC_DISCONNECT, (uint8_t)rc) == ok);
		ck_assert_int_eq(dec5_into(0xE0, B((uint8_t)rc), 1, &p),
				 ok ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_uint_eq(p.u.reason.code, rc);
		ck_assert_int_eq(DEC5(0xE0, (uint8_t)rc, 0), ok ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_int_eq(codec_v5_encode_disconnect((uint8_t)rc, NULL, 0, buf, sizeof(buf)),
				 ok ? (rc == 0 ? 2 : 3) : CODEC_EMALFORMED);
	}
	/* Remaining length 0: Normal disconnection. */
	ck_assert_int_eq(dec5_into(0xE0, NULL, 0, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.reason.code, 0);
	/* With properties; trailing bytes; properties it may not carry. */
	ck_assert_int_eq(dec5_into(0xE0, B(0x04, 8, 0x11, 0, 0, 0, 5, 0x1C, 0, 0), 10, &p),
			 CODEC_OK);
	ck_assert_uint_eq(p.u.reason.props.session_expiry, 5);
	ck_assert(CODEC_PROP_HAS(&p.u.reason.props, CODEC_PROP_SERVER_REFERENCE));
	ck_assert_int_eq(DEC5(0xE0, 0, 0, 0), CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xE0, 0, 2, 0x24, 1), CODEC_EMALFORMED);
	/* The broker's encoder: shortest forms, and never a Session Expiry
	 * Interval [MQTT5-3.14.2-2]. */
	ck_assert_int_eq(codec_v5_encode_disconnect(0, NULL, 0, buf, sizeof(buf)), 2);
	ck_assert_mem_eq(buf, B(0xE0, 0), 2);
	ck_assert_int_eq(codec_v5_encode_disconnect(0x8E, NULL, 0, buf, sizeof(buf)), 3);
	ck_assert_mem_eq(buf, B(0xE0, 1, 0x8E), 3);
	ck_assert_int_eq(codec_v5_encode_disconnect(0x9C, B(0x1C, 0, 1, 'h'), 4, buf, sizeof(buf)),
			 8);
	ck_assert_mem_eq(buf, B(0xE0, 6, 0x9C, 4, 0x1C, 0, 1, 'h'), 8);
	ck_assert_int_eq(codec_v5_encode_disconnect(0, B(0x1F, 0, 0), 3, buf, sizeof(buf)), 7);
	ck_assert_mem_eq(buf, B(0xE0, 5, 0, 3, 0x1F, 0, 0), 7);
	ck_assert_int_eq(codec_v5_encode_disconnect(0, B(0x11, 0, 0, 0, 0), 5, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(codec_v5_encode_disconnect(0x8E, NULL, 0, buf, 2), CODEC_ENOSPACE);
	/* A client's DISCONNECT with one round trips through the generic
	 * encoder. */
	{
		struct codec_packet in = {.type = CODEC_DISCONNECT}, out;

		in.u.reason.code = 0x04;
		in.u.reason.props.data = B(0x11, 0, 0, 0, 9);
		in.u.reason.props.len = 5;
		ck_assert_uint_eq(roundtrip5(&in, &out, buf, sizeof(buf)), 9);
		ck_assert_uint_eq(out.u.reason.props.session_expiry, 9);
	}
}
END_TEST

/* covers: MQTT5-3.15.2-1 MQTT5-3.15.1-1 */
START_TEST(test_v5_auth_forms_and_reason_codes)
{
	struct codec_packet p;
	uint8_t buf[64], props[64];
	struct codec_propbuf b;
	unsigned rc;

	for (rc = 0; rc < 256; rc++) {
		bool ok = rc == 0x00 || rc == 0x18 || rc == 0x19;

		ck_assert(codec_v5_reason_ok(CODEC_AUTH, (uint8_t)rc) == ok);
		ck_assert_int_eq(DEC5(0xF0, (uint8_t)rc, 0), ok ? CODEC_OK : CODEC_EPROTOCOL);
		ck_assert_int_eq(codec_v5_encode_auth((uint8_t)rc, NULL, 0, buf, sizeof(buf)),
				 ok ? (rc == 0 ? 2 : 4) : CODEC_EMALFORMED);
		/* No form stops after the reason code. */
		ck_assert_int_eq(DEC5(0xF0, (uint8_t)rc), CODEC_EMALFORMED);
	}
	ck_assert_int_eq(dec5_into(0xF0, NULL, 0, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.reason.code, 0);
	codec_propbuf_init(&b, props, sizeof(props));
	codec_propbuf_add_str(&b, CODEC_PROP_AUTH_METHOD, "SCRAM", 5);
	codec_propbuf_add_str(&b, CODEC_PROP_AUTH_DATA, "\0\1", 2);
	codec_propbuf_add_str(&b, CODEC_PROP_REASON_STRING, "go on", 5);
	ck_assert_int_eq(codec_v5_encode_auth(0x18, props, b.len, buf, sizeof(buf)),
			 4 + (int)b.len);
	ck_assert_mem_eq(buf, B(0xF0, (uint8_t)(2 + b.len), 0x18, (uint8_t)b.len, 0x15), 5);
	ck_assert_int_eq(decode5_whole(buf, 4 + b.len, &p), CODEC_OK);
	ck_assert_uint_eq(p.u.reason.code, 0x18);
	expect_str(p.u.reason.props.auth_method, "SCRAM");
	ck_assert_uint_eq(p.u.reason.props.auth_data.len, 2);
	ck_assert_int_eq(codec_v5_encode_auth(0x18, props, b.len, buf, 3 + b.len), CODEC_ENOSPACE);
	/* A property AUTH may not carry. */
	ck_assert_int_eq(codec_v5_encode_auth(0x18, B(0x21, 0, 1), 3, buf, sizeof(buf)),
			 CODEC_EMALFORMED);
	ck_assert_int_eq(DEC5(0xF0, 0x18, 3, 0x21, 0, 1), CODEC_EMALFORMED);
}
END_TEST

/* ---- 5.0 robustness ---- */

/* Valid 5.0 packets (whole, with fixed header) for the sweeps below. */
static const struct sample samples5[] = {
    SAMPLE("connect", 0x10, 34, 0, 4, 'M', 'Q', 'T', 'T', 5, 0xCE, 0, 10, 5, 0x11, 0, 0, 0, 9, 0, 1,
	   'c', 2, 0x01, 0x01, 0, 1, 'w', 0, 1, 'x', 0, 1, 'u', 0, 1, 'p'),
    SAMPLE("connack", 0x20, 8, 1, 0, 5, 0x12, 0, 2, 'i', 'd'),
    SAMPLE("publish", 0x32, 15, 0, 1, 't', 0, 5, 8, 0x23, 0, 1, 0x26, 0, 0, 0, 0, 'p'),
    SAMPLE("puback", 0x40, 8, 0, 5, 0x10, 4, 0x1F, 0, 1, 'r'),
    SAMPLE("pubrel", 0x62, 3, 0, 5, 0x92),
    SAMPLE("subscribe", 0x82, 9, 0, 5, 2, 0x0B, 3, 0, 1, 'a', 0x2A),
    SAMPLE("suback", 0x90, 5, 0, 5, 0, 0x01, 0x80),
    SAMPLE("unsubscribe", 0xA2, 6, 0, 5, 0, 0, 1, 'a'),
    SAMPLE("unsuback", 0xB0, 4, 0, 5, 0, 0x11),
    SAMPLE("disconnect", 0xE0, 6, 0x8B, 4, 0x1F, 0, 1, 'b'),
    SAMPLE("auth", 0xF0, 6, 0x18, 4, 0x15, 0, 1, 'm'),
};

/* covers: */
START_TEST(test_v5_samples_roundtrip_and_every_truncation)
{
	size_t i, cut;

	for (i = 0; i < N(samples5); i++) {
		const struct sample *s = &samples5[i];
		struct codec_packet p;
		uint8_t again[64];

		ck_assert_msg(decode5_whole(s->bytes, s->len, &p) == CODEC_OK, "%s", s->name);
		ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, again, sizeof(again)), (int)s->len);
		ck_assert_mem_eq(again, s->bytes, s->len);
		/* Each cut body decodes safely (ASan watches the heap copy);
		 * most cuts are malformed, some are shorter valid forms. */
		for (cut = 0; cut < s->len - 2; cut++) {
			int rc = dec5(s->bytes[0], s->bytes + 2, cut);

			ck_assert_int_ne(rc, CODEC_EAGAIN);
			if (rc == CODEC_OK) {
				uint8_t *body = malloc(cut > 0 ? cut : 1);

				memcpy(body, s->bytes + 2, cut);
				ck_assert_int_eq(
				    codec_decode_v(CODEC_V5, s->bytes[0], body, (uint32_t)cut, &p),
				    CODEC_OK);
				ck_assert_int_gt(codec_encode_v(CODEC_V5, &p, again, sizeof(again)),
						 0);
				free(body);
			}
		}
	}
}
END_TEST

/* covers: */
START_TEST(test_v5_single_byte_mutations_decode_safely)
{
	size_t i, pos;
	unsigned v;

	for (i = 0; i < N(samples5); i++) {
		const struct sample *s = &samples5[i];
		size_t blen = s->len - 2;

		for (pos = 0; pos < s->len; pos++) {
			if (pos == 1)
				continue;
			for (v = 0; v < 256; v++) {
				uint8_t first = pos == 0 ? (uint8_t)v : s->bytes[0];
				uint8_t *body = malloc(blen);
				struct codec_packet p, q;
				uint8_t again[64];
				int rc, n;

				ck_assert_ptr_nonnull(body);
				memcpy(body, s->bytes + 2, blen);
				if (pos >= 2)
					body[pos - 2] = (uint8_t)v;
				rc = codec_decode_v(CODEC_V5, first, body, (uint32_t)blen, &p);
				if (rc == CODEC_OK) {
					/* Whatever decodes encodes, and decodes again. */
					n = codec_encode_v(CODEC_V5, &p, again, sizeof(again));
					ck_assert_int_gt(n, 0);
					ck_assert_int_eq(decode5_whole(again, (size_t)n, &q),
							 CODEC_OK);
				}
				free(body);
			}
		}
	}
}
END_TEST

/* covers: */
START_TEST(test_v5_encode_short_buffer_every_length)
{
	size_t i, cap;

	for (i = 0; i < N(samples5); i++) {
		const struct sample *s = &samples5[i];
		struct codec_packet p;
		uint8_t *buf;

		ck_assert_int_eq(decode5_whole(s->bytes, s->len, &p), CODEC_OK);
		ck_assert_uint_eq(codec_encoded_len_v(CODEC_V5, &p), s->len);
		for (cap = 0; cap < s->len; cap++) {
			buf = malloc(cap > 0 ? cap : 1);
			ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, buf, cap), CODEC_ENOSPACE);
			free(buf);
		}
	}
}
END_TEST

/* covers: */
START_TEST(test_v5_encode_refuses_unencodable)
{
	struct codec_packet p = {.type = CODEC_PUBACK};
	uint8_t buf[64];

	/* A reason outside the table, a bad block, a type 3.1.1 lacks. */
	p.u.ack.packet_id = 1;
	p.u.ack.reason = 0x01;
	ck_assert_uint_eq(codec_encoded_len_v(CODEC_V5, &p), 0);
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, buf, sizeof(buf)), CODEC_EMALFORMED);
	p.u.ack.reason = 0;
	p.u.ack.props.data = B(0x26, 0, 1);
	p.u.ack.props.len = 3;
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, buf, sizeof(buf)), CODEC_EMALFORMED);
	memset(&p, 0, sizeof(p));
	p.type = CODEC_AUTH;
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, buf, sizeof(buf)), 2);
	ck_assert_int_eq(codec_encode(&p, buf, sizeof(buf)), CODEC_EMALFORMED);
	ck_assert_uint_eq(codec_encoded_len(&p), 0);
	/* A payload that takes the remaining length past its maximum. */
	memset(&p, 0, sizeof(p));
	p.type = CODEC_PUBLISH;
	p.u.publish.topic = str("t");
	p.u.publish.payload_len = CODEC_MAX_REMAINING - 3;
	ck_assert_uint_eq(codec_encoded_len_v(CODEC_V5, &p), 0);
	p.u.publish.payload_len = CODEC_MAX_REMAINING - 4;
	ck_assert_uint_eq(codec_encoded_len_v(CODEC_V5, &p), 1 + 4 + CODEC_MAX_REMAINING);
	/* Will QoS 3 and a bad Will block. */
	memset(&p, 0, sizeof(p));
	p.type = CODEC_CONNECT;
	p.u.connect.protocol_level = 5;
	p.u.connect.will_flag = true;
	p.u.connect.will_qos = 3;
	p.u.connect.will_topic = str("w");
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, buf, sizeof(buf)), CODEC_EMALFORMED);
	p.u.connect.will_qos = 0;
	p.u.connect.will_props.data = B(0x11, 0, 0, 0, 0);
	p.u.connect.will_props.len = 5;
	ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, buf, sizeof(buf)), CODEC_EMALFORMED);
	p.u.connect.will_props.data = B(0x18, 0, 0, 0, 0);
	ck_assert_int_gt(codec_encode_v(CODEC_V5, &p, buf, sizeof(buf)), 0);
}
END_TEST

/* Replays the ok5-* and bad5-* seeds of tests/corpus/codec/ as 5.0:
 * ok5-* decode to CODEC_OK and re-encode (short forms may shorten),
 * bad5-* are refused. */
static int replay5(const uint8_t *data, size_t size)
{
	struct codec_header h;
	struct codec_packet p;
	uint8_t *body;
	int rc;

	rc = codec_parse_header_v(CODEC_V5, data, size, CODEC_MAX_REMAINING, &h);
	if (rc != CODEC_OK)
		return rc;
	if (size - h.header_len != h.remaining)
		return CODEC_EAGAIN;
	body = malloc(h.remaining > 0 ? h.remaining : 1);
	memcpy(body, data + h.header_len, h.remaining);
	rc = codec_decode_v(CODEC_V5, data[0], body, h.remaining, &p);
	if (rc == CODEC_OK) {
		size_t len = codec_encoded_len_v(CODEC_V5, &p);
		uint8_t *again = malloc(len);

		ck_assert_uint_gt(len, 0);
		ck_assert_uint_le(len, size);
		ck_assert_int_eq(codec_encode_v(CODEC_V5, &p, again, len), (int)len);
		free(again);
	}
	free(body);
	return rc;
}

/* covers: */
START_TEST(test_v5_corpus_replay)
{
	char dir[4096], path[8192];
	struct dirent *e;
	unsigned ok = 0, bad = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tests/corpus/codec", corpus_srcdir());
	d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		static uint8_t data[65536];
		size_t size;
		FILE *f;
		int rc;

		if (strncmp(e->d_name, "ok5-", 4) != 0 && strncmp(e->d_name, "bad5-", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		ck_assert_msg(f != NULL, "cannot open %s", path);
		size = fread(data, 1, sizeof(data), f);
		fclose(f);
		rc = replay5(data, size);
		if (e->d_name[0] == 'o') {
			ck_assert_msg(rc == CODEC_OK, "%s: %d", e->d_name, rc);
			ok++;
		} else {
			ck_assert_msg(rc != CODEC_OK, "%s accepted", e->d_name);
			bad++;
		}
	}
	closedir(d);
	ck_assert_uint_ge(ok, 20);
	ck_assert_uint_ge(bad, 15);
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

	tc = tcase_create("v5");
	tcase_add_checked_fixture(tc, NULL, v5_teardown);
	tcase_add_test(tc, test_v5_property_allowed_only_in_its_packets);
	tcase_add_test(tc, test_v5_property_unknown_identifier_malformed);
	tcase_add_test(tc, test_v5_property_length_always_present);
	tcase_add_test(tc, test_v5_property_values_roundtrip_every_type);
	tcase_add_test(tc, test_v5_property_defaults_when_absent);
	tcase_add_test(tc, test_v5_property_repeated_protocol_error);
	tcase_add_test(tc, test_v5_property_values_out_of_range_protocol_error);
	tcase_add_test(tc, test_v5_property_strings_must_be_utf8);
	tcase_add_test(tc, test_v5_variable_byte_integers_minimal);
	tcase_add_test(tc, test_v5_property_truncated_or_past_its_block_malformed);
	tcase_add_test(tc, test_v5_response_topic_is_a_topic_name);
	tcase_add_test(tc, test_v5_property_builder_checks);
	tcase_add_test(tc, test_v5_property_filter);
	tcase_add_test(tc, test_v5_fixed_header_flags_every_type);
	tcase_add_test(tc, test_v5_auth_type_only_in_v5);
	tcase_add_test(tc, test_v5_connect_level_reported_and_chosen_by_caller);
	tcase_add_test(tc, test_v5_roundtrip_connect_with_will_and_properties);
	tcase_add_test(tc, test_v5_connect_password_without_user_name);
	tcase_add_test(tc, test_v5_connect_flag_rules);
	tcase_add_test(tc, test_v5_connect_strings_utf8_and_will_topic);
	tcase_add_test(tc, test_v5_connect_property_protocol_errors);
	tcase_add_test(tc, test_v5_malformed_wins_over_protocol_error);
	tcase_add_test(tc, test_v5_connack_reason_codes_and_flags);
	tcase_add_test(tc, test_v5_connack_encoder_with_properties);
	tcase_add_test(tc, test_v5_roundtrip_publish_with_properties);
	tcase_add_test(tc, test_v5_publish_topic_alias_and_empty_topic);
	tcase_add_test(tc, test_v5_publish_header_and_topic_rules);
	tcase_add_test(tc, test_v5_publish_subscription_ids_reported_for_the_caller);
	tcase_add_test(tc, test_v5_ack_reason_code_tables);
	tcase_add_test(tc, test_v5_ack_short_forms);
	tcase_add_test(tc, test_v5_roundtrip_acks_every_type_and_form);
	tcase_add_test(tc, test_v5_roundtrip_subscribe_every_option);
	tcase_add_test(tc, test_v5_subscribe_options_rules);
	tcase_add_test(tc, test_v5_subscribe_no_local_on_shared_protocol_error);
	tcase_add_test(tc, test_v5_subscribe_unsubscribe_need_an_entry);
	tcase_add_test(tc, test_v5_subscribe_subscription_identifier);
	tcase_add_test(tc, test_v5_roundtrip_unsubscribe);
	tcase_add_test(tc, test_v5_suback_unsuback_reason_codes);
	tcase_add_test(tc, test_v5_suback_unsuback_encoders_bytes);
	tcase_add_test(tc, test_v5_disconnect_forms_and_reason_codes);
	tcase_add_test(tc, test_v5_auth_forms_and_reason_codes);
	tcase_add_test(tc, test_v5_samples_roundtrip_and_every_truncation);
	tcase_add_test(tc, test_v5_single_byte_mutations_decode_safely);
	tcase_add_test(tc, test_v5_encode_short_buffer_every_length);
	tcase_add_test(tc, test_v5_encode_refuses_unencodable);
	tcase_add_test(tc, test_v5_corpus_replay);
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
