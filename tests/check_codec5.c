/*
 * Check suite for the MQTT 5.0 half of the codec (src/codec5.c,
 * src/codec_props.c): every property in and out of its packets, repeats,
 * value ranges, UTF-8 and variable byte integer forms, the property
 * builder, every 5.0 packet's round trip, reason code tables, short forms,
 * SUBSCRIBE options, the broker's encoders, truncation and mutation sweeps,
 * and a replay of the 5.0 seeds of tests/corpus/codec/. The 3.1.1 half is
 * tests/check_codec.c.
 */
#include "codec.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_codec_util.h"

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
	unsigned ok = 0, bad = 0;

	corpus_replay(replay5, "ok5-", "bad5-", false, &ok, &bad);
	ck_assert_uint_ge(ok, 20);
	ck_assert_uint_ge(bad, 15);
}
END_TEST

static Suite *codec5_suite(void)
{
	Suite *s = suite_create("codec5");
	TCase *tc;

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
	SRunner *sr = srunner_create(codec5_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
