/*
 * MQTT 5.0 packets besides what codec.c shares with 3.1.1: the decoders for
 * CONNACK, the acknowledgements with reason codes, SUBSCRIBE with its
 * options, the SUBACK/UNSUBACK reason code lists, DISCONNECT and AUTH; every
 * 5.0 encoding, and the encoders for the packets the broker sends. Pure, no
 * allocation; property blocks are handled by codec_props.c.
 */
#include "codec.h"
#include "codec_priv.h"

#include <limits.h>
#include <string.h>

/* The reason code tables of 5.0 sections 3.2.2.2, 3.4.2.1 .. 3.7.2.1,
 * 3.9.3, 3.11.3, 3.14.2.1 and 3.15.2.1. */
static const uint8_t rc_connack[] = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
				     0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
				     0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
				    0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
					0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
					0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};

#define IN(table, code) (memchr((table), (code), sizeof(table)) != NULL)

bool codec_v5_reason_ok(uint8_t type, uint8_t code)
{
	switch (type) {
	case CODEC_CONNACK:
		return IN(rc_connack, code);
	case CODEC_PUBACK:
	case CODEC_PUBREC:
		return IN(rc_puback, code);
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		return IN(rc_pubrel, code);
	case CODEC_SUBACK:
		return IN(rc_suback, code);
	case CODEC_UNSUBACK:
		return IN(rc_unsuback, code);
	case CODEC_DISCONNECT:
		return IN(rc_disconnect, code);
	case CODEC_AUTH:
		return IN(rc_auth, code);
	default:
		return false;
	}
}

/* Decoding. A protocol error is remembered while the rest of the packet is
 * still parsed, so that malformed wins when a packet has both. */

static int rd_props_into(struct reader *r, uint8_t ctx, struct codec_props *pr, int *proto)
{
	int rc = codec_rd_props(r, ctx, pr);

	if (rc == CODEC_EPROTOCOL)
		*proto = rc;
	return rc == CODEC_EMALFORMED ? rc : CODEC_OK;
}

static int decode_connack(struct reader *r, struct codec_connack *c)
{
	uint8_t ack, rc;
	int proto = CODEC_OK;

	if (!rd_u8(r, &ack) || !rd_u8(r, &rc))
		return CODEC_EMALFORMED;
	if ((ack & 0xFE) != 0)
		return CODEC_EMALFORMED; /* [MQTT5-3.2.2-1] */
	c->session_present = ack & 0x01;
	c->return_code = rc;
	if (rd_props_into(r, CODEC_CONNACK, &c->props, &proto) != CODEC_OK || rd_left(r) != 0)
		return CODEC_EMALFORMED;
	if (!codec_v5_reason_ok(CODEC_CONNACK, rc) || (c->session_present && rc != 0))
		return CODEC_EPROTOCOL; /* [MQTT5-3.2.2-8, MQTT5-3.2.2-6] */
	return proto;
}

/*
 * PUBACK, PUBREC, PUBREL, PUBCOMP: the Reason Code may be left out when it
 * is 0 and there are no properties (remaining length 2), the Property
 * Length when there are none (remaining length 3).
 */
static int decode_ack(uint8_t type, struct reader *r, struct codec_ack *a)
{
	int proto = CODEC_OK;

	codec_props_parse(type, NULL, 0, &a->props); /* the defaults, if left out */
	if (!rd_u16(r, &a->packet_id) || a->packet_id == 0)
		return CODEC_EMALFORMED;
	if (rd_left(r) > 0 && !rd_u8(r, &a->reason))
		return CODEC_EMALFORMED;
	if (rd_left(r) > 0 && rd_props_into(r, type, &a->props, &proto) != CODEC_OK)
		return CODEC_EMALFORMED;
	if (rd_left(r) != 0)
		return CODEC_EMALFORMED;
	if (!codec_v5_reason_ok(type, a->reason))
		return CODEC_EPROTOCOL; /* [MQTT5-3.4.2-1 .. MQTT5-3.7.2-1] */
	return proto;
}

static bool is_shared(const struct codec_str *f)
{
	return f->len >= 7 && memcmp(f->ptr, "$share/", 7) == 0;
}

/*
 * One entry of a 5.0 list. Returns CODEC_OK, CODEC_EMALFORMED, or
 * CODEC_EPROTOCOL for a value the standard calls a protocol error.
 */
static int list_entry(uint8_t type, struct reader *r)
{
	struct codec_str filter;
	uint8_t o;

	if (type == CODEC_SUBACK || type == CODEC_UNSUBACK) {
		if (!rd_u8(r, &o))
			return CODEC_EMALFORMED;
		/* [MQTT5-3.9.3-2, MQTT5-3.11.3-2] */
		return codec_v5_reason_ok(type, o) ? CODEC_OK : CODEC_EPROTOCOL;
	}
	/* [MQTT5-3.8.3-1, MQTT5-3.10.3-1, MQTT5-4.7.3-1] */
	if (!rd_utf8(r, &filter) || filter.len == 0)
		return CODEC_EMALFORMED;
	if (type == CODEC_UNSUBSCRIBE)
		return CODEC_OK;
	if (!rd_u8(r, &o) || (o & 0xC0) != 0)
		return CODEC_EMALFORMED; /* [MQTT5-3.8.3-5] */
	/* QoS 3 and Retain Handling 3 (5.0 section 3.8.3.1); No Local on a
	 * shared subscription [MQTT5-3.8.3-4]. */
	if (CODEC_SUBOPT_QOS(o) == 3 || CODEC_SUBOPT_RETAIN_HANDLING(o) == 3 ||
	    ((o & CODEC_SUBOPT_NO_LOCAL) && is_shared(&filter)))
		return CODEC_EPROTOCOL;
	return CODEC_OK;
}

/* SUBSCRIBE, UNSUBSCRIBE, SUBACK, UNSUBACK: packet id, properties, and at
 * least one entry [MQTT5-3.8.3-2, MQTT5-3.10.3-2]. */
static int decode_list(uint8_t type, struct reader *r, struct codec_list *l)
{
	int proto = CODEC_OK;

	if (!rd_u16(r, &l->packet_id) || l->packet_id == 0)
		return CODEC_EMALFORMED;
	if (rd_props_into(r, type, &l->props, &proto) != CODEC_OK)
		return CODEC_EMALFORMED;
	l->data = r->p + r->pos;
	l->data_len = rd_left(r);
	l->count = 0;
	while (rd_left(r) > 0) {
		int rc = list_entry(type, r);

		if (rc == CODEC_EMALFORMED)
			return rc;
		if (rc != CODEC_OK)
			proto = rc;
		l->count++;
	}
	return l->count > 0 ? proto : CODEC_EPROTOCOL;
}

/*
 * DISCONNECT and AUTH: remaining length 0 means reason 0 and no properties.
 * DISCONNECT may also stop after the reason code (5.0 section 3.14.2.2.1);
 * AUTH may not (3.15.2.2.1 has no such case).
 */
static int decode_reason(uint8_t type, struct reader *r, struct codec_reason *d)
{
	int proto = CODEC_OK;

	codec_props_parse(type, NULL, 0, &d->props); /* the defaults, if left out */
	if (rd_left(r) == 0)
		return CODEC_OK;
	if (!rd_u8(r, &d->code))
		return CODEC_EMALFORMED;
	if (rd_left(r) == 0 && type == CODEC_AUTH)
		return CODEC_EMALFORMED;
	if (rd_left(r) > 0 && rd_props_into(r, type, &d->props, &proto) != CODEC_OK)
		return CODEC_EMALFORMED;
	if (rd_left(r) != 0)
		return CODEC_EMALFORMED;
	if (!codec_v5_reason_ok(type, d->code))
		return CODEC_EPROTOCOL; /* [MQTT5-3.14.2-1, MQTT5-3.15.2-1] */
	return proto;
}

int codec_v5_decode_body(uint8_t type, struct reader *r, struct codec_packet *out)
{
	switch (type) {
	case CODEC_CONNACK:
		return decode_connack(r, &out->u.connack);
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		return decode_ack(type, r, &out->u.ack);
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		return decode_list(type, r, &out->u.list);
	case CODEC_DISCONNECT:
	case CODEC_AUTH:
		return decode_reason(type, r, &out->u.reason);
	default:
		return CODEC_EMALFORMED;
	}
}

/* Encoding: sizes first (with every check), then unchecked writes. */

/* Property Length and block, or CODEC_BODY_INVALID for a block that is not
 * valid in ctx. */
static uint64_t props_size(uint8_t ctx, const struct codec_props *pr)
{
	if (codec_props_check(ctx, pr->data, pr->len, NULL) != CODEC_OK)
		return CODEC_BODY_INVALID;
	return codec_props_wire_len(pr->len);
}

static uint64_t add(uint64_t a, uint64_t b)
{
	return a == CODEC_BODY_INVALID || b == CODEC_BODY_INVALID ? CODEC_BODY_INVALID : a + b;
}

static uint64_t connect_body_len(const struct codec_connect *c)
{
	uint64_t n = 2 + 4 + 1 + 1 + 2 + 2 + (uint64_t)c->client_id.len;

	if (c->will_flag && c->will_qos > 2)
		return CODEC_BODY_INVALID;
	n = add(n, props_size(CODEC_CONNECT, &c->props));
	if (c->will_flag) {
		n = add(n, props_size(CODEC_WILL, &c->will_props));
		n = add(n, 4 + (uint64_t)c->will_topic.len + c->will_payload.len);
	}
	if (c->has_username)
		n = add(n, 2 + (uint64_t)c->username.len);
	if (c->has_password)
		n = add(n, 2 + (uint64_t)c->password.len);
	return n;
}

/*
 * Everything of a PUBLISH but the payload. strict adds what only the
 * sender's side must keep to: no Topic Alias 0 [MQTT5-3.3.2-8]. An empty
 * topic needs a Topic Alias either way, as the decoder demands.
 */
static uint64_t publish_head_len(const struct codec_publish *p, bool strict)
{
	struct codec_props pr;

	if (p->qos > 2 || codec_props_check(CODEC_PUBLISH, p->props.data, p->props.len, &pr) != 0)
		return CODEC_BODY_INVALID;
	if (p->topic.len == 0 && !CODEC_PROP_HAS(&pr, CODEC_PROP_TOPIC_ALIAS))
		return CODEC_BODY_INVALID;
	if (strict && CODEC_PROP_HAS(&pr, CODEC_PROP_TOPIC_ALIAS) && pr.topic_alias == 0)
		return CODEC_BODY_INVALID;
	return add(2 + (uint64_t)p->topic.len + (p->qos > 0 ? 2 : 0),
		   codec_props_wire_len(p->props.len));
}

/* The acks, DISCONNECT and AUTH in their shortest form. */
static uint64_t ack_body_len(uint8_t type, uint8_t reason, const struct codec_props *pr)
{
	uint64_t n = type == CODEC_DISCONNECT || type == CODEC_AUTH ? 0 : 2;

	if (!codec_v5_reason_ok(type, reason))
		return CODEC_BODY_INVALID;
	if (pr->len > 0)
		return add(n + 1, props_size(type, pr));
	if (reason == 0)
		return n;
	/* AUTH has no form that stops after the reason code. */
	return type == CODEC_AUTH ? n + 2 : n + 1;
}

uint64_t codec_v5_body_len(const struct codec_packet *p)
{
	const struct codec_connack *ca = &p->u.connack;

	switch (p->type) {
	case CODEC_CONNECT:
		return connect_body_len(&p->u.connect);
	case CODEC_CONNACK:
		if (!codec_v5_reason_ok(CODEC_CONNACK, ca->return_code) ||
		    (ca->session_present && ca->return_code != 0))
			return CODEC_BODY_INVALID;
		return add(2, props_size(CODEC_CONNACK, &ca->props));
	case CODEC_PUBLISH:
		return add(publish_head_len(&p->u.publish, false), p->u.publish.payload_len);
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		return ack_body_len(p->type, p->u.ack.reason, &p->u.ack.props);
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		return add(2 + (uint64_t)p->u.list.data_len, props_size(p->type, &p->u.list.props));
	case CODEC_DISCONNECT:
	case CODEC_AUTH:
		return ack_body_len(p->type, p->u.reason.code, &p->u.reason.props);
	default:
		return CODEC_BODY_INVALID;
	}
}

static void wr_props(struct writer *w, const struct codec_props *pr)
{
	wr_vbi(w, pr->len);
	wr_raw(w, pr->data, pr->len);
}

static void encode_connect(struct writer *w, const struct codec_connect *c)
{
	static const struct codec_str name = {"MQTT", 4};

	wr_field(w, &name);
	wr_u8(w, CODEC_V5);
	wr_u8(w, codec_connect_flags(c));
	wr_u16(w, c->keepalive);
	wr_props(w, &c->props);
	wr_field(w, &c->client_id);
	if (c->will_flag) {
		wr_props(w, &c->will_props);
		wr_field(w, &c->will_topic);
		wr_field(w, &c->will_payload);
	}
	if (c->has_username)
		wr_field(w, &c->username);
	if (c->has_password)
		wr_field(w, &c->password);
}

/* The reason code and properties of an ack, DISCONNECT or AUTH, in the
 * form ack_body_len() sized. */
static void encode_reason(struct writer *w, uint8_t type, uint8_t reason,
			  const struct codec_props *pr)
{
	if (pr->len == 0 && reason == 0)
		return;
	wr_u8(w, reason);
	if (pr->len > 0 || type == CODEC_AUTH)
		wr_props(w, pr);
}

static int publish_header(const struct codec_publish *p, bool strict, uint8_t *out, size_t cap,
			  size_t *pid_offset)
{
	uint64_t head = publish_head_len(p, strict);
	uint64_t rem = add(head, p->payload_len);
	struct writer w = {out, 0};
	size_t hdr;

	if (rem > CODEC_MAX_REMAINING)
		return CODEC_EMALFORMED;
	hdr = 1 + codec_varint_len((uint32_t)rem) + (size_t)head;
	if (hdr > cap)
		return CODEC_ENOSPACE;
	wr_publish_head(&w, p, (uint32_t)rem, pid_offset);
	wr_props(&w, &p->props);
	return (int)w.pos;
}

int codec_v5_encode_packet(const struct codec_packet *p, uint8_t *out, size_t cap)
{
	uint64_t rem = codec_v5_body_len(p);
	struct writer w = {out, 0};
	size_t total;
	int n;

	if (rem > CODEC_MAX_REMAINING)
		return CODEC_EMALFORMED;
	total = 1 + codec_varint_len((uint32_t)rem) + (size_t)rem;
	if (total > INT_MAX)
		return CODEC_EMALFORMED;
	if (total > cap)
		return CODEC_ENOSPACE;
	if (p->type == CODEC_PUBLISH) {
		n = publish_header(&p->u.publish, false, out, cap, NULL);
		if (n < 0)
			return n;
		w.pos = (size_t)n;
		wr_raw(&w, p->u.publish.payload, p->u.publish.payload_len);
		return (int)w.pos;
	}
	wr_header(&w, (uint8_t)(p->type << 4 | codec_required_flags(p->type)), (uint32_t)rem);
	switch (p->type) {
	case CODEC_CONNECT:
		encode_connect(&w, &p->u.connect);
		break;
	case CODEC_CONNACK:
		wr_u8(&w, p->u.connack.session_present ? 1 : 0);
		wr_u8(&w, p->u.connack.return_code);
		wr_props(&w, &p->u.connack.props);
		break;
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
		wr_u16(&w, p->u.ack.packet_id);
		encode_reason(&w, p->type, p->u.ack.reason, &p->u.ack.props);
		break;
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		wr_u16(&w, p->u.list.packet_id);
		wr_props(&w, &p->u.list.props);
		wr_raw(&w, p->u.list.data, p->u.list.data_len);
		break;
	default: /* DISCONNECT, AUTH */
		encode_reason(&w, p->type, p->u.reason.code, &p->u.reason.props);
		break;
	}
	return (int)w.pos;
}

/* The broker's encoders. */

static void set_props(struct codec_props *pr, const uint8_t *props, size_t props_len)
{
	memset(pr, 0, sizeof(*pr));
	pr->data = props;
	/* Too long a block is refused by the size check: clamp so it is. */
	pr->len = props_len > UINT32_MAX ? UINT32_MAX : (uint32_t)props_len;
}

int codec_v5_encode_connack(bool session_present, uint8_t reason, const uint8_t *props,
			    size_t props_len, uint8_t *out, size_t cap)
{
	struct codec_packet p = {.type = CODEC_CONNACK};

	p.u.connack.session_present = session_present;
	p.u.connack.return_code = reason;
	set_props(&p.u.connack.props, props, props_len);
	return codec_v5_encode_packet(&p, out, cap);
}

int codec_v5_encode_publish_header(const struct codec_publish *p, uint8_t *out, size_t cap,
				   size_t *pid_offset)
{
	return publish_header(p, true, out, cap, pid_offset);
}

int codec_v5_encode_ack(enum codec_type type, uint16_t packet_id, uint8_t reason,
			const uint8_t *props, size_t props_len, uint8_t *out, size_t cap)
{
	struct codec_packet p = {.type = (uint8_t)type};

	if (type != CODEC_PUBACK && type != CODEC_PUBREC && type != CODEC_PUBREL &&
	    type != CODEC_PUBCOMP)
		return CODEC_EMALFORMED;
	p.u.ack.packet_id = packet_id;
	p.u.ack.reason = reason;
	set_props(&p.u.ack.props, props, props_len);
	return codec_v5_encode_packet(&p, out, cap);
}

int codec_v5_encode_suback(enum codec_type type, uint16_t packet_id, const uint8_t *codes,
			   uint32_t count, const uint8_t *props, size_t props_len, uint8_t *out,
			   size_t cap)
{
	struct codec_packet p = {.type = (uint8_t)type};
	uint32_t i;

	if ((type != CODEC_SUBACK && type != CODEC_UNSUBACK) || count == 0)
		return CODEC_EMALFORMED;
	for (i = 0; i < count; i++)
		if (!codec_v5_reason_ok((uint8_t)type, codes[i]))
			return CODEC_EMALFORMED;
	p.u.list.packet_id = packet_id;
	p.u.list.count = count;
	p.u.list.data = codes;
	p.u.list.data_len = count;
	set_props(&p.u.list.props, props, props_len);
	return codec_v5_encode_packet(&p, out, cap);
}

int codec_v5_encode_disconnect(uint8_t reason, const uint8_t *props, size_t props_len, uint8_t *out,
			       size_t cap)
{
	struct codec_packet p = {.type = CODEC_DISCONNECT};
	struct codec_props pr;

	if (codec_props_check(CODEC_DISCONNECT, props, props_len, &pr) != CODEC_OK ||
	    CODEC_PROP_HAS(&pr, CODEC_PROP_SESSION_EXPIRY))
		return CODEC_EMALFORMED; /* [MQTT5-3.14.2-2] */
	p.u.reason.code = reason;
	set_props(&p.u.reason.props, props, props_len);
	return codec_v5_encode_packet(&p, out, cap);
}

int codec_v5_encode_auth(uint8_t reason, const uint8_t *props, size_t props_len, uint8_t *out,
			 size_t cap)
{
	struct codec_packet p = {.type = CODEC_AUTH};

	p.u.reason.code = reason;
	set_props(&p.u.reason.props, props, props_len);
	return codec_v5_encode_packet(&p, out, cap);
}
