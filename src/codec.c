/*
 * MQTT 3.1.1 / 3.1 wire format: the fixed header, a decoder that enforces
 * every rule a packet must satisfy before the core sees it, and encoders for
 * all fourteen packet types. CONNECT and PUBLISH are decoded here for 5.0
 * too; the other 5.0 packets live in codec5.c, properties in codec_props.c.
 * Pure: no I/O and no allocation; decoded fields point into the caller's
 * buffer.
 */
#include "codec.h"
#include "codec_priv.h"

#include <limits.h>
#include <string.h>

/*
 * A topic name (PUBLISH topic, Will Topic) is at least one character
 * [MQTT-4.7.3-1] and never holds a wildcard [MQTT-3.3.2-2, MQTT-4.7.1-1].
 * Filters are checked further by topic.c; names need nothing more.
 */
bool codec_topic_name_ok(const struct codec_str *s)
{
	if (s->len == 0)
		return false;
	return memchr(s->ptr, '+', s->len) == NULL && memchr(s->ptr, '#', s->len) == NULL;
}

static bool str_is(const struct codec_str *s, const char *lit)
{
	size_t n = strlen(lit);

	return s->len == n && memcmp(s->ptr, lit, n) == 0;
}

bool codec_utf8_valid(const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		uint8_t lo = 0x80, hi = 0xBF;
		size_t n, k;

		if (c == 0)
			return false; /* U+0000 [MQTT-1.5.3-2] */
		if (c < 0x80) {
			i++;
			continue;
		}
		/* The narrowed second-byte ranges reject overlong forms (E0, F0),
		 * UTF-16 surrogates (ED) and code points above U+10FFFF (F4). */
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			if (c == 0xE0)
				lo = 0xA0;
			else if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F;
		} else {
			return false; /* continuation byte, C0/C1 overlong, F5-FF */
		}
		if (len - i - 1 < n)
			return false;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (k = 2; k <= n; k++)
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
		i += n + 1;
	}
	return true;
}

/*
 * Both versions' fixed header. All four bytes are decoded with their full
 * weight (7 bits each, up to 268,435,455); a fourth byte that still has the
 * continuation bit set is malformed without waiting for a fifth. 5.0 adds
 * type 15 (AUTH) and refuses a non-minimal length [MQTT-1.5.5-1], which
 * 3.1.1 does not forbid.
 */
static int parse_header(bool v5, const uint8_t *buf, size_t len, uint32_t max_remaining,
			struct codec_header *h)
{
	uint32_t value = 0;
	uint8_t type;
	size_t i;

	if (len < 1)
		return CODEC_EAGAIN;
	type = buf[0] >> 4;
	if (type == 0 || (type == 15 && !v5))
		return CODEC_EMALFORMED;
	for (i = 0; i < 4; i++) {
		uint8_t b;

		if (len < i + 2)
			return CODEC_EAGAIN;
		b = buf[i + 1];
		value |= (uint32_t)(b & 0x7F) << (7 * i);
		if ((b & 0x80) == 0) {
			if (v5 && i > 0 && b == 0)
				return CODEC_EMALFORMED;
			h->type = type;
			h->flags = buf[0] & 0x0F;
			h->remaining = value;
			h->header_len = (uint8_t)(i + 2);
			return value > max_remaining ? CODEC_ETOOBIG : CODEC_OK;
		}
	}
	return CODEC_EMALFORMED;
}

int codec_parse_header(const uint8_t *buf, size_t len, uint32_t max_remaining,
		       struct codec_header *h)
{
	return parse_header(false, buf, len, max_remaining, h);
}

int codec_parse_header_v(uint8_t version, const uint8_t *buf, size_t len, uint32_t max_remaining,
			 struct codec_header *h)
{
	return parse_header(version == CODEC_V5, buf, len, max_remaining, h);
}

/* The fixed-header flags every type but PUBLISH must carry [MQTT-2.2.2-1]. */
uint8_t codec_required_flags(uint8_t type)
{
	switch (type) {
	case CODEC_PUBREL:
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
		return 0x2;
	default:
		return 0x0;
	}
}

/* The protocol name and level; CODEC_EPROTONAME for an unknown name. */
static int rd_name_level(struct reader *r, struct codec_str *name, uint8_t *level)
{
	if (!rd_field(r, name))
		return CODEC_EMALFORMED;
	if (!str_is(name, "MQTT") && !str_is(name, "MQIsdp"))
		return CODEC_EPROTONAME;
	return rd_u8(r, level) ? CODEC_OK : CODEC_EMALFORMED;
}

int codec_connect_level(const uint8_t *body, uint32_t len, uint8_t *level)
{
	struct reader r = {body, len, 0};
	struct codec_str name;

	return rd_name_level(&r, &name, level);
}

/*
 * Both versions: 5.0 adds the property blocks (after Keep Alive, and
 * before the Will Topic), and allows a password without a user name
 * [MQTT5-3.1.2-19]. A protocol error found on the way (in a property
 * block) is kept while the rest is decoded, so a malformed packet is
 * reported as malformed.
 */
static int decode_connect(uint8_t version, struct reader *r, struct codec_connect *c)
{
	struct codec_str name;
	uint8_t level, flags;
	bool v5;
	int rc, proto = CODEC_OK;

	rc = rd_name_level(r, &name, &level);
	if (rc != CODEC_OK)
		return rc;
	c->protocol_level = level;
	/* Reported before the rest is checked: the server owes the client a
	 * CONNACK 0x01 [MQTT-3.1.2-2], whatever else is wrong. */
	if (str_is(&name, "MQTT") ? level != 4 && (level != 5 || version != CODEC_V5) : level != 3)
		return CODEC_EPROTOLEVEL;
	v5 = level == 5;
	if (!rd_u8(r, &flags) || !rd_u16(r, &c->keepalive))
		return CODEC_EMALFORMED;
	c->clean_session = flags & 0x02;
	c->will_flag = flags & 0x04;
	c->will_qos = (flags >> 3) & 0x03;
	c->will_retain = flags & 0x20;
	c->has_password = flags & 0x40;
	c->has_username = flags & 0x80;
	if (flags & 0x01)
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-3] */
	if (!c->will_flag && (c->will_qos != 0 || c->will_retain))
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-11/13/15] */
	if (c->will_qos == 3)
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-14] */
	if (!v5 && c->has_password && !c->has_username)
		return CODEC_EMALFORMED; /* [MQTT-3.1.2-22] */
	if (v5) {
		rc = codec_rd_props(r, CODEC_CONNECT, &c->props);
		if (rc == CODEC_EMALFORMED)
			return rc;
		if (rc != CODEC_OK)
			proto = rc;
		/* Authentication Data needs a method (5.0 section 3.1.2.11.10). */
		if (CODEC_PROP_HAS(&c->props, CODEC_PROP_AUTH_DATA) &&
		    !CODEC_PROP_HAS(&c->props, CODEC_PROP_AUTH_METHOD))
			proto = CODEC_EPROTOCOL;
	}

	/* Payload fields in their fixed order [MQTT-3.1.3-1]. */
	if (!rd_utf8(r, &c->client_id))
		return CODEC_EMALFORMED;
	if (c->will_flag) {
		if (v5) {
			rc = codec_rd_props(r, CODEC_WILL, &c->will_props);
			if (rc == CODEC_EMALFORMED)
				return rc;
			if (rc != CODEC_OK)
				proto = rc;
		}
		if (!rd_utf8(r, &c->will_topic) || !codec_topic_name_ok(&c->will_topic))
			return CODEC_EMALFORMED;
		if (!rd_field(r, &c->will_payload))
			return CODEC_EMALFORMED;
	}
	if (c->has_username && !rd_utf8(r, &c->username))
		return CODEC_EMALFORMED;
	if (c->has_password && !rd_field(r, &c->password))
		return CODEC_EMALFORMED;
	return rd_left(r) == 0 ? proto : CODEC_EMALFORMED;
}

static int decode_connack(struct reader *r, struct codec_connack *c)
{
	uint8_t ack, rc;

	if (!rd_u8(r, &ack) || !rd_u8(r, &rc) || rd_left(r) != 0)
		return CODEC_EMALFORMED;
	if ((ack & 0xFE) != 0 || rc > CODEC_CONNACK_NOT_AUTHORIZED)
		return CODEC_EMALFORMED;
	c->session_present = ack & 0x01;
	c->return_code = rc;
	return CODEC_OK;
}

/*
 * Both versions. In 5.0 the properties follow the packet id, and the topic
 * may be empty when a Topic Alias stands for it; without one that is a
 * protocol error (5.0 section 3.3.2.1).
 */
static int decode_publish(uint8_t version, uint8_t first_byte, struct reader *r,
			  struct codec_publish *p)
{
	int rc = CODEC_OK;

	p->qos = (first_byte >> 1) & 0x03;
	p->dup = first_byte & 0x08;
	p->retain = first_byte & 0x01;
	if (p->qos == 3)
		return CODEC_EMALFORMED; /* [MQTT-3.3.1-4] */
	if (p->dup && p->qos == 0)
		return CODEC_EMALFORMED; /* [MQTT-3.3.1-2] */
	if (!rd_utf8(r, &p->topic))
		return CODEC_EMALFORMED;
	if (!codec_topic_name_ok(&p->topic) && (version != CODEC_V5 || p->topic.len > 0))
		return CODEC_EMALFORMED;
	if (p->qos > 0 && (!rd_u16(r, &p->packet_id) || p->packet_id == 0))
		return CODEC_EMALFORMED; /* [MQTT-2.3.1-1] */
	if (version == CODEC_V5) {
		rc = codec_rd_props(r, CODEC_PUBLISH, &p->props);
		if (rc == CODEC_EMALFORMED)
			return rc;
		if (p->topic.len == 0 && !CODEC_PROP_HAS(&p->props, CODEC_PROP_TOPIC_ALIAS))
			rc = CODEC_EPROTOCOL;
	}
	p->payload = r->p + r->pos;
	p->payload_len = rd_left(r);
	return rc;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: a non-zero packet id only. */
static int decode_ack(struct reader *r, uint16_t *packet_id)
{
	if (!rd_u16(r, packet_id) || rd_left(r) != 0 || *packet_id == 0)
		return CODEC_EMALFORMED;
	return CODEC_OK;
}

/* One SUBSCRIBE / UNSUBSCRIBE / SUBACK entry, checked. */
static bool list_entry_ok(uint8_t type, struct reader *r)
{
	struct codec_str filter;
	uint8_t q;

	if (type == CODEC_SUBACK)
		return rd_u8(r, &q) && (q <= 2 || q == CODEC_SUBACK_FAILURE); /* [MQTT-3.9.3-2] */
	/* [MQTT-3.8.3-1, MQTT-3.10.3-1, MQTT-4.7.3-1] */
	if (!rd_utf8(r, &filter) || filter.len == 0)
		return false;
	if (type == CODEC_UNSUBSCRIBE)
		return true;
	/* Reserved upper bits and QoS 3 [MQTT-3.8.3-4]. */
	return rd_u8(r, &q) && (q & 0xFC) == 0 && q != 3;
}

/*
 * The entries are checked once here so codec_list_next() can walk them
 * without further validation. An empty list is malformed for all three
 * types: SUBSCRIBE [MQTT-3.8.3-3] and UNSUBSCRIBE [MQTT-3.10.3-2] need one
 * entry, and a SUBACK answers at least one.
 */
static int decode_list(uint8_t type, struct reader *r, struct codec_list *l)
{
	if (!rd_u16(r, &l->packet_id) || l->packet_id == 0)
		return CODEC_EMALFORMED; /* [MQTT-2.3.1-1] */
	l->data = r->p + r->pos;
	l->data_len = rd_left(r);
	l->count = 0;
	while (rd_left(r) > 0) {
		if (!list_entry_ok(type, r))
			return CODEC_EMALFORMED;
		l->count++;
	}
	return l->count > 0 ? CODEC_OK : CODEC_EMALFORMED;
}

int codec_decode(uint8_t first_byte, const uint8_t *body, uint32_t len, struct codec_packet *out)
{
	return codec_decode_v(CODEC_V311, first_byte, body, len, out);
}

int codec_decode_v(uint8_t version, uint8_t first_byte, const uint8_t *body, uint32_t len,
		   struct codec_packet *out)
{
	struct reader r = {body, len, 0};
	uint8_t type = first_byte >> 4;
	uint8_t flags = first_byte & 0x0F;
	bool v5 = version == CODEC_V5;

	memset(out, 0, sizeof(*out));
	out->type = type;
	out->flags = flags;
	if (version < CODEC_V31 || version > CODEC_V5)
		return CODEC_EMALFORMED;
	if (type == 0 || (type == 15 && !v5))
		return CODEC_EMALFORMED;
	/* [MQTT-2.2.2-1/2, MQTT-3.6.1-1, MQTT-3.8.1-1, MQTT-3.10.1-1,
	 * MQTT-3.14.1-1; MQTT5-2.1.3-1, MQTT5-3.15.1-1] */
	if (type != CODEC_PUBLISH && flags != codec_required_flags(type))
		return CODEC_EMALFORMED;

	switch (type) {
	case CODEC_CONNECT:
		return decode_connect(version, &r, &out->u.connect);
	case CODEC_PUBLISH:
		return decode_publish(version, first_byte, &r, &out->u.publish);
	case CODEC_PINGREQ:
	case CODEC_PINGRESP:
		return len == 0 ? CODEC_OK : CODEC_EMALFORMED;
	default:
		break;
	}
	if (v5)
		return codec_v5_decode_body(type, &r, out);
	switch (type) {
	case CODEC_CONNACK:
		return decode_connack(&r, &out->u.connack);
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
	case CODEC_UNSUBACK:
		return decode_ack(&r, &out->u.packet_id);
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
		return decode_list(type, &r, &out->u.list);
	default: /* DISCONNECT */
		return len == 0 ? CODEC_OK : CODEC_EMALFORMED;
	}
}

bool codec_list_next(uint8_t type, const struct codec_list *l, uint32_t *pos,
		     struct codec_str *filter, uint8_t *qos)
{
	struct reader r = {l->data, l->data_len, *pos};

	/* Still bounds-checked: a caller may hand us a list it built itself. */
	if (*pos >= l->data_len)
		return false;
	filter->ptr = NULL;
	filter->len = 0;
	*qos = 0;
	switch (type) {
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		if (!rd_u8(&r, qos))
			return false;
		break;
	case CODEC_SUBSCRIBE:
		if (!rd_field(&r, filter) || !rd_u8(&r, qos))
			return false;
		break;
	case CODEC_UNSUBSCRIBE:
		if (!rd_field(&r, filter))
			return false;
		break;
	default:
		return false;
	}
	*pos = r.pos;
	return true;
}

/* Encoding. Sizes are computed first, so the writers below never check. */

size_t codec_varint_len(uint32_t value)
{
	if (value < 128u)
		return 1;
	if (value < 16384u)
		return 2;
	if (value < 2097152u)
		return 3;
	return 4;
}

int codec_encode_varint(uint32_t value, uint8_t *out)
{
	int n = 0;

	if (value > CODEC_MAX_REMAINING)
		return CODEC_EMALFORMED;
	do {
		uint8_t b = value & 0x7F;

		value >>= 7;
		if (value != 0)
			b |= 0x80;
		out[n++] = b;
	} while (value != 0);
	return n;
}

static const char *protocol_name(uint8_t level)
{
	return level == 3 ? "MQIsdp" : "MQTT";
}

static uint64_t connect_body_len(const struct codec_connect *c)
{
	uint64_t n = 2 + strlen(protocol_name(c->protocol_level)) + 1 + 1 + 2;

	if (c->will_flag && c->will_qos > 2)
		return CODEC_BODY_INVALID;
	n += 2 + (uint64_t)c->client_id.len;
	if (c->will_flag)
		n += 2 + (uint64_t)c->will_topic.len + 2 + c->will_payload.len;
	if (c->has_username)
		n += 2 + (uint64_t)c->username.len;
	if (c->has_password)
		n += 2 + (uint64_t)c->password.len;
	return n;
}

static uint64_t publish_body_len(const struct codec_publish *p)
{
	if (p->qos > 2)
		return CODEC_BODY_INVALID;
	return 2 + (uint64_t)p->topic.len + (p->qos > 0 ? 2 : 0) + p->payload_len;
}

/* The remaining length of p, or CODEC_BODY_INVALID if p cannot be encoded. */
static uint64_t body_len(const struct codec_packet *p)
{
	switch (p->type) {
	case CODEC_CONNECT:
		return connect_body_len(&p->u.connect);
	case CODEC_CONNACK:
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
	case CODEC_UNSUBACK:
		return 2;
	case CODEC_PUBLISH:
		return publish_body_len(&p->u.publish);
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
		return 2 + (uint64_t)p->u.list.data_len;
	case CODEC_PINGREQ:
	case CODEC_PINGRESP:
	case CODEC_DISCONNECT:
		return 0;
	default:
		return CODEC_BODY_INVALID;
	}
}

/* Whether p is written in its 5.0 form: CONNECT names its own level. */
static bool uses_v5(uint8_t version, const struct codec_packet *p)
{
	if (p->type == CODEC_CONNECT)
		return p->u.connect.protocol_level == CODEC_V5;
	return version == CODEC_V5 && p->type != CODEC_PINGREQ && p->type != CODEC_PINGRESP;
}

size_t codec_encoded_len(const struct codec_packet *p)
{
	return codec_encoded_len_v(CODEC_V311, p);
}

size_t codec_encoded_len_v(uint8_t version, const struct codec_packet *p)
{
	uint64_t rem = uses_v5(version, p) ? codec_v5_body_len(p) : body_len(p);

	if (rem > CODEC_MAX_REMAINING)
		return 0;
	return 1 + codec_varint_len((uint32_t)rem) + (size_t)rem;
}

/* The flags byte follows the struct: Will QoS and Retain only with a Will. */
static void encode_connect(struct writer *w, const struct codec_connect *c)
{
	const char *name = protocol_name(c->protocol_level);
	struct codec_str n = {name, (uint16_t)strlen(name)};

	wr_field(w, &n);
	wr_u8(w, c->protocol_level);
	wr_u8(w, codec_connect_flags(c));
	wr_u16(w, c->keepalive);
	wr_field(w, &c->client_id);
	if (c->will_flag) {
		wr_field(w, &c->will_topic);
		wr_field(w, &c->will_payload);
	}
	if (c->has_username)
		wr_field(w, &c->username);
	if (c->has_password)
		wr_field(w, &c->password);
}

/*
 * The fixed-header flags are derived from the packet, never taken from
 * p->flags: PUBLISH gets them from qos/dup/retain, PUBREL, SUBSCRIBE and
 * UNSUBSCRIBE get 0010, every other type 0000.
 */
int codec_encode(const struct codec_packet *p, uint8_t *out, size_t cap)
{
	return codec_encode_v(CODEC_V311, p, out, cap);
}

int codec_encode_v(uint8_t version, const struct codec_packet *p, uint8_t *out, size_t cap)
{
	size_t total;
	struct writer w = {out, 0};
	int n;

	if (uses_v5(version, p))
		return codec_v5_encode_packet(p, out, cap);
	total = codec_encoded_len_v(version, p);
	if (total == 0 || total > INT_MAX)
		return CODEC_EMALFORMED;
	if (total > cap)
		return CODEC_ENOSPACE;
	if (p->type == CODEC_PUBLISH) {
		n = codec_encode_publish_header(&p->u.publish, out, cap, NULL);
		if (n < 0)
			return n;
		w.pos = (size_t)n;
		wr_raw(&w, p->u.publish.payload, p->u.publish.payload_len);
		return (int)w.pos;
	}
	wr_header(&w, (uint8_t)(p->type << 4 | codec_required_flags(p->type)),
		  (uint32_t)body_len(p));
	switch (p->type) {
	case CODEC_CONNECT:
		encode_connect(&w, &p->u.connect);
		break;
	case CODEC_CONNACK:
		wr_u8(&w, p->u.connack.session_present ? 1 : 0);
		wr_u8(&w, p->u.connack.return_code);
		break;
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
	case CODEC_UNSUBACK:
		wr_u16(&w, p->u.packet_id);
		break;
	case CODEC_SUBSCRIBE:
	case CODEC_UNSUBSCRIBE:
	case CODEC_SUBACK:
		wr_u16(&w, p->u.list.packet_id);
		wr_raw(&w, p->u.list.data, p->u.list.data_len);
		break;
	default: /* PINGREQ, PINGRESP, DISCONNECT: no body */
		break;
	}
	return (int)w.pos;
}

/* For QoS 0 there is no packet id and *pid_offset is set to 0, which is
 * never a valid offset (byte 0 is the packet type). */
int codec_encode_publish_header(const struct codec_publish *p, uint8_t *out, size_t cap,
				size_t *pid_offset)
{
	uint64_t rem = publish_body_len(p);
	struct writer w = {out, 0};
	size_t hdr;

	if (rem > CODEC_MAX_REMAINING)
		return CODEC_EMALFORMED;
	hdr = 1 + codec_varint_len((uint32_t)rem) + 2 + p->topic.len + (p->qos > 0 ? 2 : 0);
	if (hdr > cap)
		return CODEC_ENOSPACE;
	wr_publish_head(&w, p, (uint32_t)rem, pid_offset);
	return (int)w.pos;
}

int codec_encode_connack(bool session_present, uint8_t return_code, uint8_t *out, size_t cap)
{
	struct codec_packet p = {.type = CODEC_CONNACK};

	p.u.connack.session_present = session_present;
	p.u.connack.return_code = return_code;
	return codec_encode(&p, out, cap);
}

int codec_encode_ack(enum codec_type type, uint16_t packet_id, uint8_t *out, size_t cap)
{
	struct codec_packet p = {.type = (uint8_t)type};

	switch (type) {
	case CODEC_PUBACK:
	case CODEC_PUBREC:
	case CODEC_PUBREL:
	case CODEC_PUBCOMP:
	case CODEC_UNSUBACK:
		break;
	default:
		return CODEC_EMALFORMED;
	}
	p.u.packet_id = packet_id;
	return codec_encode(&p, out, cap);
}

int codec_encode_pingresp(uint8_t *out, size_t cap)
{
	struct codec_packet p = {.type = CODEC_PINGRESP};

	return codec_encode(&p, out, cap);
}

int codec_encode_suback(uint16_t packet_id, const uint8_t *codes, uint32_t count, uint8_t *out,
			size_t cap)
{
	struct codec_packet p = {.type = CODEC_SUBACK};

	p.u.list.packet_id = packet_id;
	p.u.list.count = count;
	p.u.list.data = codes;
	p.u.list.data_len = count;
	return codec_encode(&p, out, cap);
}

int codec_list_append(uint8_t type, uint8_t *buf, size_t len, size_t cap, const char *filter,
		      uint16_t filter_len, uint8_t qos)
{
	struct writer w = {buf, len};
	size_t need;

	switch (type) {
	case CODEC_SUBSCRIBE:
		need = 2 + (size_t)filter_len + 1;
		break;
	case CODEC_UNSUBSCRIBE:
		need = 2 + (size_t)filter_len;
		break;
	case CODEC_SUBACK:
	case CODEC_UNSUBACK:
		need = 1;
		break;
	default:
		return CODEC_EMALFORMED;
	}
	if (len > cap || cap - len < need || len + need > INT_MAX)
		return CODEC_ENOSPACE;
	if (type == CODEC_SUBSCRIBE || type == CODEC_UNSUBSCRIBE) {
		wr_u16(&w, filter_len);
		wr_raw(&w, filter, filter_len);
	}
	if (type != CODEC_UNSUBSCRIBE)
		wr_u8(&w, qos);
	return (int)w.pos;
}
