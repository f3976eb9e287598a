/*
 * libFuzzer target for the packet decoder: parses a fixed header, decodes
 * the body as 3.1.1 and as 5.0, and checks that whatever decodes walks
 * (lists and property blocks) and re-encodes to the same body bytes (5.0
 * acks, DISCONNECT and AUTH may come back in a shorter form: those must
 * re-encode identically from their own re-encoding). Not built by default
 * (`make fuzz` in a build directory). From the source root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I include -I src \
 *       src/codec.c src/codec_props.c src/codec5.c tests/fuzz_codec.c -o fuzz_codec
 *   mkdir -p /tmp/codec-corpus && ./fuzz_codec /tmp/codec-corpus tests/corpus/codec
 *
 * (The first directory collects new inputs; the seed corpus stays as it is.
 * `-max_total_time=60` bounds a run.) The seeds also replay in check_codec.
 */
#include "codec.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_list(uint8_t type, const struct codec_list *l)
{
	struct codec_str f;
	uint32_t pos = 0, n = 0;
	uint8_t q;

	while (codec_list_next(type, l, &pos, &f, &q)) {
		if (f.len > 0 && (f.ptr < (const char *)l->data ||
				  f.ptr + f.len > (const char *)l->data + l->data_len))
			abort();
		n++;
	}
	if (n != l->count || pos != l->data_len)
		abort();
}

/* Every block the decoder accepted walks to its end, and the repeated
 * properties it counted are there. */
static void walk_props(const struct codec_props *pr)
{
	struct codec_prop prop;
	struct codec_str k, v;
	uint32_t pos = 0, users = 0, ids = 0, id;

	while (codec_props_next(pr, &pos, &prop)) {
		if (prop.str.len > 0 &&
		    ((const uint8_t *)prop.str.ptr < pr->data ||
		     (const uint8_t *)prop.str.ptr + prop.str.len > pr->data + pr->len))
			abort();
	}
	if (pos != pr->len)
		abort();
	pos = 0;
	while (codec_props_next_user(pr, &pos, &k, &v))
		users++;
	pos = 0;
	while (codec_props_next_sub_id(pr, &pos, &id)) {
		if (id == 0)
			abort();
		ids++;
	}
	if (users != pr->user_count || ids != pr->sub_id_count)
		abort();
}

static void walk_v5(const struct codec_packet *p)
{
	switch (p->type) {
	case CODEC_CONNECT:
		walk_props(&p->u.connect.props);
		walk_props(&p->u.connect.will_props);
		break;
	case CODEC_CONNACK:
		walk_props(&p->u.connack.props);
		break;
	case CODEC_PUBLISH:
		walk_props(&p->u.publish.props);
		if (p->u.publish.topic.len == 0 &&
		    !CODEC_PROP_HAS(&p->u.publish.props, CODEC_PROP_TOPIC_ALIAS))
			abort();
		break;
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		walk_props(&p->u.ack.props);
		if (!codec_v5_reason_ok(p->type, p->u.ack.reason))
			abort();
		break;
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		walk_props(&p->u.list.props);
		walk_list(p->type, &p->u.list);
		break;
	case CODEC_DISCONNECT:
	case CODEC_AUTH:
		walk_props(&p->u.reason.props);
		if (!codec_v5_reason_ok(p->type, p->u.reason.code))
			abort();
		break;
	default:
		break;
	}
}

/* Encode p as version v into a fresh exact-size buffer; aborts if a decoded
 * packet cannot be encoded. The caller frees. */
static uint8_t *encode_exact(uint8_t v, const struct codec_packet *p, size_t *len)
{
	uint8_t *buf;

	*len = codec_encoded_len_v(v, p);
	if (*len == 0)
		abort();
	buf = malloc(*len);
	if (buf == NULL)
		abort();
	if (codec_encode_v(v, p, buf, *len) != (int)*len)
		abort();
	return buf;
}

/* Types whose 5.0 encoding is not the only one the decoder accepts. */
static bool has_short_forms(uint8_t type)
{
	return (type >= CODEC_PUBACK && type <= CODEC_PUBCOMP) || type == CODEC_DISCONNECT ||
	       type == CODEC_AUTH;
}

static void fuzz_v5(const uint8_t *data, size_t size)
{
	struct codec_header h, h2;
	struct codec_packet p, p2;
	uint8_t *again, *third;
	size_t len, len3;

	if (codec_parse_header_v(CODEC_V5, data, size, CODEC_MAX_REMAINING, &h) != CODEC_OK)
		return;
	if (size - h.header_len < h.remaining)
		return;
	if (codec_decode_v(CODEC_V5, data[0], data + h.header_len, h.remaining, &p) != CODEC_OK)
		return;
	walk_v5(&p);
	again = encode_exact(CODEC_V5, &p, &len);
	if (again[0] != data[0])
		abort();
	if (!has_short_forms(p.type)) {
		/* 5.0 lengths are minimal, so the whole packet is the same. */
		if (len != h.header_len + (size_t)h.remaining || memcmp(again, data, len) != 0)
			abort();
		free(again);
		return;
	}
	if (len > h.header_len + (size_t)h.remaining)
		abort();
	if (codec_parse_header_v(CODEC_V5, again, len, CODEC_MAX_REMAINING, &h2) != CODEC_OK ||
	    codec_decode_v(CODEC_V5, again[0], again + h2.header_len, h2.remaining, &p2) !=
		CODEC_OK)
		abort();
	if (p2.u.ack.packet_id != p.u.ack.packet_id)
		abort();
	third = encode_exact(CODEC_V5, &p2, &len3);
	if (len3 != len || memcmp(third, again, len) != 0)
		abort();
	free(third);
	free(again);
}

/* The whole input as a property block, in every context: what parses walks
 * to its end. */
static void fuzz_props(const uint8_t *data, size_t size)
{
	struct codec_props pr;
	uint8_t ctx;

	if (size > CODEC_MAX_VBI)
		return;
	for (ctx = CODEC_CONNECT; ctx <= CODEC_WILL; ctx++) {
		uint64_t drop = size > 0 ? (uint64_t)data[size - 1] * 0x0101010101ull : 0;
		uint8_t *out;
		int n;

		if (codec_props_parse(ctx, data, (uint32_t)size, &pr) != CODEC_OK)
			continue;
		walk_props(&pr);
		/* What is left of a valid block after a filter is valid. */
		out = malloc(size > 0 ? size : 1);
		if (out == NULL)
			abort();
		n = codec_props_filter(data, size, drop, out, size);
		if (n < 0 || (size_t)n > size ||
		    codec_props_parse(ctx, out, (uint32_t)n, &pr) != CODEC_OK)
			abort();
		free(out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct codec_header h;
	struct codec_packet p;
	const uint8_t *body;
	uint8_t *again;
	size_t len;

	fuzz_v5(data, size);
	fuzz_props(data, size);
	if (codec_parse_header(data, size, CODEC_MAX_REMAINING, &h) != CODEC_OK)
		return 0;
	if (size - h.header_len < h.remaining)
		return 0;
	body = data + h.header_len;
	if (codec_decode(data[0], body, h.remaining, &p) != CODEC_OK)
		return 0;
	if (p.type == CODEC_SUBSCRIBE || p.type == CODEC_UNSUBSCRIBE || p.type == CODEC_SUBACK)
		walk_list(p.type, &p.u.list);

	/* The decoder only accepts canonical bodies: re-encoding must give
	 * back the same bytes (the header may differ only in a non-minimal
	 * remaining length). */
	len = codec_encoded_len(&p);
	if (len == 0 || len - h.remaining < 2 || len - h.remaining > 5)
		abort();
	again = malloc(len);
	if (again == NULL)
		return 0;
	if (codec_encode(&p, again, len) != (int)len || again[0] != data[0])
		abort();
	if (h.remaining > 0 && memcmp(again + len - h.remaining, body, h.remaining) != 0)
		abort();
	free(again);
	return 0;
}
