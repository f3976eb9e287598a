/*
 * MQTT 5.0 properties: the table of every property identifier with its
 * type and the packets it may appear in, the parser that validates a
 * property block against it, the iterators over a parsed block, and the
 * builder that appends properties to a caller buffer. Pure, no allocation.
 */
#include "codec.h"
#include "codec_priv.h"

#include <string.h>

enum prop_type { PT_NONE, PT_BYTE, PT_U16, PT_U32, PT_VBI, PT_UTF8, PT_BIN, PT_PAIR };

#define T(x) (1u << (x))
#define ACKS (T(CODEC_PUBACK) | T(CODEC_PUBREC) | T(CODEC_PUBREL) | T(CODEC_PUBCOMP))
#define MSG  (T(CODEC_PUBLISH) | T(CODEC_WILL))
#define ALL                                                                                        \
	(T(CODEC_CONNECT) | T(CODEC_CONNACK) | MSG | ACKS | T(CODEC_SUBSCRIBE) | T(CODEC_SUBACK) | \
	 T(CODEC_UNSUBSCRIBE) | T(CODEC_UNSUBACK) | T(CODEC_DISCONNECT) | T(CODEC_AUTH))
#define NPROPS (CODEC_PROP_SHARED_SUB_AVAILABLE + 1)

/* 5.0 section 2.2.2.2, table 2-4: the type of each identifier, and (bit n
 * for packet type n, bit CODEC_WILL for the Will Properties) where it may
 * appear. Identifiers not listed are unknown. */
static const struct prop_info {
	uint8_t type;
	uint32_t where;
} prop_table[NPROPS] = {
    [CODEC_PROP_PAYLOAD_FORMAT] = {PT_BYTE, MSG},
    [CODEC_PROP_MESSAGE_EXPIRY] = {PT_U32, MSG},
    [CODEC_PROP_CONTENT_TYPE] = {PT_UTF8, MSG},
    [CODEC_PROP_RESPONSE_TOPIC] = {PT_UTF8, MSG},
    [CODEC_PROP_CORRELATION_DATA] = {PT_BIN, MSG},
    [CODEC_PROP_SUBSCRIPTION_ID] = {PT_VBI, T(CODEC_PUBLISH) | T(CODEC_SUBSCRIBE)},
    [CODEC_PROP_SESSION_EXPIRY] = {PT_U32,
				   T(CODEC_CONNECT) | T(CODEC_CONNACK) | T(CODEC_DISCONNECT)},
    [CODEC_PROP_ASSIGNED_CLIENT_ID] = {PT_UTF8, T(CODEC_CONNACK)},
    [CODEC_PROP_SERVER_KEEPALIVE] = {PT_U16, T(CODEC_CONNACK)},
    [CODEC_PROP_AUTH_METHOD] = {PT_UTF8, T(CODEC_CONNECT) | T(CODEC_CONNACK) | T(CODEC_AUTH)},
    [CODEC_PROP_AUTH_DATA] = {PT_BIN, T(CODEC_CONNECT) | T(CODEC_CONNACK) | T(CODEC_AUTH)},
    [CODEC_PROP_REQUEST_PROBLEM_INFO] = {PT_BYTE, T(CODEC_CONNECT)},
    [CODEC_PROP_WILL_DELAY] = {PT_U32, T(CODEC_WILL)},
    [CODEC_PROP_REQUEST_RESPONSE_INFO] = {PT_BYTE, T(CODEC_CONNECT)},
    [CODEC_PROP_RESPONSE_INFO] = {PT_UTF8, T(CODEC_CONNACK)},
    [CODEC_PROP_SERVER_REFERENCE] = {PT_UTF8, T(CODEC_CONNACK) | T(CODEC_DISCONNECT)},
    [CODEC_PROP_REASON_STRING] = {PT_UTF8, T(CODEC_CONNACK) | ACKS | T(CODEC_SUBACK) |
					       T(CODEC_UNSUBACK) | T(CODEC_DISCONNECT) |
					       T(CODEC_AUTH)},
    [CODEC_PROP_RECEIVE_MAX] = {PT_U16, T(CODEC_CONNECT) | T(CODEC_CONNACK)},
    [CODEC_PROP_TOPIC_ALIAS_MAX] = {PT_U16, T(CODEC_CONNECT) | T(CODEC_CONNACK)},
    [CODEC_PROP_TOPIC_ALIAS] = {PT_U16, T(CODEC_PUBLISH)},
    [CODEC_PROP_MAX_QOS] = {PT_BYTE, T(CODEC_CONNACK)},
    [CODEC_PROP_RETAIN_AVAILABLE] = {PT_BYTE, T(CODEC_CONNACK)},
    [CODEC_PROP_USER] = {PT_PAIR, ALL},
    [CODEC_PROP_MAX_PACKET_SIZE] = {PT_U32, T(CODEC_CONNECT) | T(CODEC_CONNACK)},
    [CODEC_PROP_WILDCARD_SUB_AVAILABLE] = {PT_BYTE, T(CODEC_CONNACK)},
    [CODEC_PROP_SUB_ID_AVAILABLE] = {PT_BYTE, T(CODEC_CONNACK)},
    [CODEC_PROP_SHARED_SUB_AVAILABLE] = {PT_BYTE, T(CODEC_CONNACK)},
};

static uint8_t prop_type(uint32_t id)
{
	return id < NPROPS ? prop_table[id].type : PT_NONE;
}

/*
 * Read one property in the form its identifier's type gives it. The
 * identifier is itself a Variable Byte Integer; every defined one fits in
 * a byte, so a longer form is an unknown identifier or not minimal. False
 * for anything malformed: unknown identifier, value past the end,
 * ill-formed UTF-8.
 */
static bool rd_prop(struct reader *r, struct codec_prop *p)
{
	uint32_t id;
	uint8_t b;
	uint16_t w;

	memset(p, 0, sizeof(*p));
	if (!rd_vbi(r, &id) || prop_type(id) == PT_NONE)
		return false;
	p->id = (uint8_t)id;
	switch (prop_type(id)) {
	case PT_BYTE:
		if (!rd_u8(r, &b))
			return false;
		p->value = b;
		return true;
	case PT_U16:
		if (!rd_u16(r, &w))
			return false;
		p->value = w;
		return true;
	case PT_U32:
		return rd_u32(r, &p->value);
	case PT_VBI:
		return rd_vbi(r, &p->value);
	case PT_UTF8:
		return rd_utf8(r, &p->str);
	case PT_BIN:
		return rd_field(r, &p->str);
	default: /* PT_PAIR [MQTT5-1.5.7-1] */
		return rd_utf8(r, &p->str) && rd_utf8(r, &p->str2);
	}
}

/* Store a single-valued property; false if its value breaks its rule. */
static bool store(struct codec_props *o, const struct codec_prop *p)
{
	uint32_t v = p->value;

	switch (p->id) {
	case CODEC_PROP_PAYLOAD_FORMAT:
		o->payload_format = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_MESSAGE_EXPIRY:
		o->message_expiry = v;
		return true;
	case CODEC_PROP_CONTENT_TYPE:
		o->content_type = p->str;
		return true;
	case CODEC_PROP_RESPONSE_TOPIC:
		o->response_topic = p->str;
		return codec_topic_name_ok(&p->str); /* [MQTT5-3.3.2-14] */
	case CODEC_PROP_CORRELATION_DATA:
		o->correlation_data = p->str;
		return true;
	case CODEC_PROP_SESSION_EXPIRY:
		o->session_expiry = v;
		return true;
	case CODEC_PROP_ASSIGNED_CLIENT_ID:
		o->assigned_client_id = p->str;
		return true;
	case CODEC_PROP_SERVER_KEEPALIVE:
		o->server_keepalive = (uint16_t)v;
		return true;
	case CODEC_PROP_AUTH_METHOD:
		o->auth_method = p->str;
		return true;
	case CODEC_PROP_AUTH_DATA:
		o->auth_data = p->str;
		return true;
	case CODEC_PROP_REQUEST_PROBLEM_INFO:
		o->request_problem_info = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_WILL_DELAY:
		o->will_delay = v;
		return true;
	case CODEC_PROP_REQUEST_RESPONSE_INFO:
		o->request_response_info = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_RESPONSE_INFO:
		o->response_info = p->str;
		return true;
	case CODEC_PROP_SERVER_REFERENCE:
		o->server_reference = p->str;
		return true;
	case CODEC_PROP_REASON_STRING:
		o->reason_string = p->str;
		return true;
	case CODEC_PROP_RECEIVE_MAX:
		o->receive_max = (uint16_t)v;
		return v != 0;
	case CODEC_PROP_TOPIC_ALIAS_MAX:
		o->topic_alias_max = (uint16_t)v;
		return true;
	case CODEC_PROP_TOPIC_ALIAS:
		o->topic_alias = (uint16_t)v;
		return true;
	case CODEC_PROP_MAX_QOS:
		o->max_qos = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_RETAIN_AVAILABLE:
		o->retain_available = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_MAX_PACKET_SIZE:
		o->max_packet_size = v;
		return v != 0;
	case CODEC_PROP_WILDCARD_SUB_AVAILABLE:
		o->wildcard_sub_available = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_SUB_ID_AVAILABLE:
		o->sub_id_available = (uint8_t)v;
		return v <= 1;
	case CODEC_PROP_SHARED_SUB_AVAILABLE:
		o->shared_sub_available = (uint8_t)v;
		return v <= 1;
	default:
		return true;
	}
}

int codec_props_parse(uint8_t ctx, const uint8_t *data, uint32_t len, struct codec_props *out)
{
	struct reader r = {data, len, 0};
	int proto = CODEC_OK;

	memset(out, 0, sizeof(*out));
	out->data = data;
	out->len = len;
	out->receive_max = 65535;
	out->request_problem_info = 1;
	out->max_qos = 2;
	out->retain_available = 1;
	out->wildcard_sub_available = 1;
	out->sub_id_available = 1;
	out->shared_sub_available = 1;
	if (ctx < CODEC_CONNECT || ctx > CODEC_WILL)
		return CODEC_EMALFORMED;
	while (rd_left(&r) > 0) {
		struct codec_prop p;
		uint64_t bit;

		/* An identifier not valid for the packet type is malformed
		 * (5.0 section 2.2.2.2). */
		if (!rd_prop(&r, &p) || (prop_table[p.id].where & T(ctx)) == 0)
			return CODEC_EMALFORMED;
		bit = (uint64_t)1 << p.id;
		if (p.id == CODEC_PROP_USER) {
			out->user_count++;
		} else if (p.id == CODEC_PROP_SUBSCRIPTION_ID) {
			/* 0 is a protocol error; only PUBLISH may carry several
			 * (5.0 sections 3.3.2.3.8, 3.8.2.1.2). */
			if (p.value == 0 || (ctx != CODEC_PUBLISH && (out->present & bit)))
				proto = CODEC_EPROTOCOL;
			if (out->sub_id_count++ == 0)
				out->sub_id = p.value;
		} else {
			if ((out->present & bit) || !store(out, &p))
				proto = CODEC_EPROTOCOL;
		}
		out->present |= bit;
	}
	return proto;
}

int codec_rd_props(struct reader *r, uint8_t ctx, struct codec_props *out)
{
	uint32_t n;
	int rc;

	/* Property Length is always there, even when 0 [MQTT5-2.2.2-1]. */
	if (!rd_vbi(r, &n) || n > rd_left(r)) {
		memset(out, 0, sizeof(*out));
		return CODEC_EMALFORMED;
	}
	rc = codec_props_parse(ctx, r->p + r->pos, n, out);
	r->pos += n;
	return rc;
}

uint64_t codec_props_wire_len(uint32_t len)
{
	if (len > CODEC_MAX_VBI)
		return CODEC_BODY_INVALID;
	return codec_varint_len(len) + (uint64_t)len;
}

int codec_props_check(uint8_t ctx, const uint8_t *data, size_t len, struct codec_props *out)
{
	struct codec_props local;

	if (out == NULL)
		out = &local;
	if (len > CODEC_MAX_VBI || (len > 0 && data == NULL)) {
		memset(out, 0, sizeof(*out));
		return CODEC_EMALFORMED;
	}
	if (codec_props_parse(ctx, data, (uint32_t)len, out) != CODEC_OK)
		return CODEC_EMALFORMED;
	return CODEC_OK;
}

bool codec_props_next(const struct codec_props *pr, uint32_t *pos, struct codec_prop *out)
{
	struct reader r = {pr->data, pr->len, *pos};

	/* Still bounds-checked: a caller may hand us a block it built. */
	if (*pos >= pr->len || !rd_prop(&r, out))
		return false;
	*pos = r.pos;
	return true;
}

bool codec_props_next_user(const struct codec_props *pr, uint32_t *pos, struct codec_str *name,
			   struct codec_str *value)
{
	struct codec_prop p;

	while (codec_props_next(pr, pos, &p)) {
		if (p.id == CODEC_PROP_USER) {
			*name = p.str;
			*value = p.str2;
			return true;
		}
	}
	return false;
}

bool codec_props_next_sub_id(const struct codec_props *pr, uint32_t *pos, uint32_t *id)
{
	struct codec_prop p;

	while (codec_props_next(pr, pos, &p)) {
		if (p.id == CODEC_PROP_SUBSCRIPTION_ID) {
			*id = p.value;
			return true;
		}
	}
	return false;
}

int codec_props_filter(const uint8_t *data, size_t len, uint64_t drop, uint8_t *out, size_t cap)
{
	struct reader r = {data, 0, 0};
	size_t n = 0;

	if (len > CODEC_MAX_VBI || (len > 0 && (data == NULL || out == NULL)))
		return CODEC_EMALFORMED;
	r.len = (uint32_t)len;
	/* Each kept property moves down (memmove: out may be data, and never
	 * runs ahead of the reader). */
	while (rd_left(&r) > 0) {
		struct codec_prop p;
		uint32_t start = r.pos;

		if (!rd_prop(&r, &p))
			return CODEC_EMALFORMED;
		if ((drop >> p.id) & 1u)
			continue;
		if (cap - n < r.pos - start)
			return CODEC_ENOSPACE;
		memmove(out + n, data + start, r.pos - start);
		n += r.pos - start;
	}
	return (int)n;
}

/* The builder. */

void codec_propbuf_init(struct codec_propbuf *b, uint8_t *data, size_t cap)
{
	b->data = data;
	b->cap = cap;
	b->len = 0;
	b->err = CODEC_OK;
}

static int pb_fail(struct codec_propbuf *b, int rc)
{
	b->err = rc;
	return rc;
}

/* Room for need more bytes, and the block still fits a Property Length. */
static bool pb_room(const struct codec_propbuf *b, size_t need)
{
	return b->len <= b->cap && b->cap - b->len >= need && b->len + need <= CODEC_MAX_VBI;
}

int codec_propbuf_add_int(struct codec_propbuf *b, uint8_t id, uint32_t value)
{
	struct writer w = {b->data, b->len};
	uint8_t t = prop_type(id);
	size_t need;

	if (b->err != CODEC_OK)
		return b->err;
	switch (t) {
	case PT_BYTE:
		need = 1;
		break;
	case PT_U16:
		need = 2;
		break;
	case PT_U32:
		need = 4;
		break;
	case PT_VBI:
		need = value <= CODEC_MAX_VBI ? codec_varint_len(value) : 0;
		break;
	default:
		return pb_fail(b, CODEC_EMALFORMED);
	}
	if ((t == PT_BYTE && value > 0xFF) || (t == PT_U16 && value > 0xFFFF) || need == 0)
		return pb_fail(b, CODEC_EMALFORMED);
	if (!pb_room(b, 1 + need))
		return pb_fail(b, CODEC_ENOSPACE);
	wr_u8(&w, id);
	if (t == PT_BYTE)
		wr_u8(&w, (uint8_t)value);
	else if (t == PT_U16)
		wr_u16(&w, (uint16_t)value);
	else if (t == PT_U32)
		wr_u32(&w, value);
	else
		wr_vbi(&w, value);
	b->len = w.pos;
	return CODEC_OK;
}

int codec_propbuf_add_str(struct codec_propbuf *b, uint8_t id, const void *s, size_t len)
{
	struct writer w = {b->data, b->len};
	uint8_t t = prop_type(id);

	if (b->err != CODEC_OK)
		return b->err;
	if ((t != PT_UTF8 && t != PT_BIN) || len > 0xFFFF || (len > 0 && s == NULL))
		return pb_fail(b, CODEC_EMALFORMED);
	if (t == PT_UTF8 && !codec_utf8_valid(s, len))
		return pb_fail(b, CODEC_EMALFORMED);
	if (!pb_room(b, 3 + len))
		return pb_fail(b, CODEC_ENOSPACE);
	wr_u8(&w, id);
	wr_u16(&w, (uint16_t)len);
	wr_raw(&w, s, len);
	b->len = w.pos;
	return CODEC_OK;
}

int codec_propbuf_add_user(struct codec_propbuf *b, const char *name, size_t name_len,
			   const char *value, size_t value_len)
{
	struct writer w = {b->data, b->len};

	if (b->err != CODEC_OK)
		return b->err;
	if (name_len > 0xFFFF || value_len > 0xFFFF || (name_len > 0 && name == NULL) ||
	    (value_len > 0 && value == NULL) || !codec_utf8_valid(name, name_len) ||
	    !codec_utf8_valid(value, value_len))
		return pb_fail(b, CODEC_EMALFORMED);
	if (!pb_room(b, 5 + name_len + value_len))
		return pb_fail(b, CODEC_ENOSPACE);
	wr_u8(&w, CODEC_PROP_USER);
	wr_u16(&w, (uint16_t)name_len);
	wr_raw(&w, name, name_len);
	wr_u16(&w, (uint16_t)value_len);
	wr_raw(&w, value, value_len);
	b->len = w.pos;
	return CODEC_OK;
}
