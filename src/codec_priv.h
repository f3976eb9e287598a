/*
 * What codec.c, codec_props.c and codec5.c share and nobody else sees: the
 * bounds-checked reader and the unchecked writer, and the internal entry
 * points between the three files.
 */
#ifndef CAIRN_CODEC_PRIV_H
#define CAIRN_CODEC_PRIV_H

#include "codec.h"

#include <string.h>

/*
 * A bounds-checked cursor over a packet body. Every read checks the bytes
 * left before touching them, so a truncated packet or one whose length
 * prefixes lie can never make the decoder read past the end of the body.
 */
struct reader {
	const uint8_t *p;
	uint32_t len;
	uint32_t pos;
};

static inline uint32_t rd_left(const struct reader *r)
{
	return r->len - r->pos;
}

static inline bool rd_u8(struct reader *r, uint8_t *v)
{
	if (rd_left(r) < 1)
		return false;
	*v = r->p[r->pos++];
	return true;
}

static inline bool rd_u16(struct reader *r, uint16_t *v)
{
	if (rd_left(r) < 2)
		return false;
	*v = (uint16_t)((r->p[r->pos] << 8) | r->p[r->pos + 1]);
	r->pos += 2;
	return true;
}

static inline bool rd_u32(struct reader *r, uint32_t *v)
{
	const uint8_t *b = r->p + r->pos;

	if (rd_left(r) < 4)
		return false;
	*v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
	r->pos += 4;
	return true;
}

/*
 * A 5.0 Variable Byte Integer: at most four bytes, in its shortest form
 * [MQTT-1.5.5-1] (a last byte of 0 after a continuation could have been
 * left out). False for a truncated, over-long or non-minimal encoding, all
 * malformed.
 */
static inline bool rd_vbi(struct reader *r, uint32_t *v)
{
	uint32_t value = 0;
	int i;

	for (i = 0; i < 4; i++) {
		uint8_t b;

		if (!rd_u8(r, &b))
			return false;
		value |= (uint32_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0) {
			if (i > 0 && b == 0)
				return false;
			*v = value;
			return true;
		}
	}
	return false;
}

/* A 2-byte length followed by that many bytes (binary data or a string). */
static inline bool rd_field(struct reader *r, struct codec_str *s)
{
	uint16_t n;

	if (!rd_u16(r, &n) || rd_left(r) < n)
		return false;
	s->ptr = (const char *)r->p + r->pos;
	s->len = n;
	r->pos += n;
	return true;
}

static inline bool rd_utf8(struct reader *r, struct codec_str *s)
{
	return rd_field(r, s) && codec_utf8_valid(s->ptr, s->len);
}

/* The writer never checks: callers size the packet first. */
struct writer {
	uint8_t *p;
	size_t pos;
};

static inline void wr_u8(struct writer *w, uint8_t v)
{
	w->p[w->pos++] = v;
}

static inline void wr_u16(struct writer *w, uint16_t v)
{
	w->p[w->pos++] = (uint8_t)(v >> 8);
	w->p[w->pos++] = (uint8_t)(v & 0xFF);
}

static inline void wr_u32(struct writer *w, uint32_t v)
{
	wr_u16(w, (uint16_t)(v >> 16));
	wr_u16(w, (uint16_t)(v & 0xFFFF));
}

static inline void wr_raw(struct writer *w, const void *src, size_t n)
{
	if (n > 0)
		memcpy(w->p + w->pos, src, n);
	w->pos += n;
}

static inline void wr_field(struct writer *w, const struct codec_str *s)
{
	wr_u16(w, s->len);
	wr_raw(w, s->ptr, s->len);
}

/* value must be at most CODEC_MAX_VBI (checked by the sizing pass). */
static inline void wr_vbi(struct writer *w, uint32_t value)
{
	w->pos += (size_t)codec_encode_varint(value, w->p + w->pos);
}

static inline void wr_header(struct writer *w, uint8_t first_byte, uint32_t remaining)
{
	wr_u8(w, first_byte);
	wr_vbi(w, remaining);
}

/* A remaining length that cannot be encoded, as the sizing passes return it. */
#define CODEC_BODY_INVALID UINT64_MAX

/* codec.c */
size_t codec_varint_len(uint32_t value);
bool codec_topic_name_ok(const struct codec_str *s);
uint8_t codec_required_flags(uint8_t type);

/* codec_props.c: read a Property Length and the block it announces from r
 * and parse it for ctx (see codec_props_parse()). Returns CODEC_OK,
 * CODEC_EMALFORMED or CODEC_EPROTOCOL; r is past the block unless
 * malformed. */
int codec_rd_props(struct reader *r, uint8_t ctx, struct codec_props *out);
/* The bytes a property block of len bytes takes with its length prefix,
 * or CODEC_BODY_INVALID. */
uint64_t codec_props_wire_len(uint32_t len);
/* Check a block the caller hands an encoder: CODEC_OK or CODEC_EMALFORMED. */
int codec_props_check(uint8_t ctx, const uint8_t *data, size_t len, struct codec_props *out);

/* codec5.c: the 5.0 bodies codec.c does not decode itself (everything but
 * CONNECT, PUBLISH, PINGREQ and PINGRESP), and every 5.0 encoding. */
int codec_v5_decode_body(uint8_t type, struct reader *r, struct codec_packet *out);
uint64_t codec_v5_body_len(const struct codec_packet *p);
int codec_v5_encode_packet(const struct codec_packet *p, uint8_t *out, size_t cap);

/* The CONNECT flags byte of c (both versions lay it out alike). */
static inline uint8_t codec_connect_flags(const struct codec_connect *c)
{
	uint8_t flags = 0;

	if (c->clean_session)
		flags |= 0x02;
	if (c->will_flag) {
		flags |= 0x04 | (uint8_t)(c->will_qos << 3);
		if (c->will_retain)
			flags |= 0x20;
	}
	if (c->has_password)
		flags |= 0x40;
	if (c->has_username)
		flags |= 0x80;
	return flags;
}

/*
 * The head every PUBLISH starts with, in both versions: fixed header
 * (type, QoS, DUP, RETAIN, remaining length rem), topic, and the packet id
 * for QoS > 0, whose offset goes to *pid_offset (0 for QoS 0, never a valid
 * offset). The caller checked that it fits.
 */
static inline void wr_publish_head(struct writer *w, const struct codec_publish *p, uint32_t rem,
				   size_t *pid_offset)
{
	uint8_t first = (uint8_t)(CODEC_PUBLISH << 4 | p->qos << 1);

	if (p->dup)
		first |= 0x08;
	if (p->retain)
		first |= 0x01;
	wr_header(w, first, rem);
	wr_field(w, &p->topic);
	if (pid_offset != NULL)
		*pid_offset = p->qos > 0 ? w->pos : 0;
	if (p->qos > 0)
		wr_u16(w, p->packet_id);
}

#endif
