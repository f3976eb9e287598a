/*
 * MQTT 3.1.1 / 3.1 and 5.0 packet codec: bytes <-> structs. Pure: no I/O,
 * no allocation. Decoded strings, payloads and property blocks point into
 * the caller's buffer and live as long as it does.
 *
 * Caveats for 5.0: the version is a property of the connection, so the
 * caller passes it to codec_parse_header_v() and codec_decode_v() (the
 * unversioned functions mean 3.1.1). CONNECT is the exception: it names its
 * own level, which codec_decode_v() reports in connect.protocol_level. Rules
 * that need connection state (topic alias range, Receive Maximum, Maximum
 * Packet Size, authentication method continuity, a client PUBLISH carrying a
 * Subscription Identifier) are left to the caller; the decoder reports what
 * it needs to check them.
 */
#ifndef CAIRN_CODEC_H
#define CAIRN_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum codec_type {
	CODEC_CONNECT = 1,
	CODEC_CONNACK = 2,
	CODEC_PUBLISH = 3,
	CODEC_PUBACK = 4,
	CODEC_PUBREC = 5,
	CODEC_PUBREL = 6,
	CODEC_PUBCOMP = 7,
	CODEC_SUBSCRIBE = 8,
	CODEC_SUBACK = 9,
	CODEC_UNSUBSCRIBE = 10,
	CODEC_UNSUBACK = 11,
	CODEC_PINGREQ = 12,
	CODEC_PINGRESP = 13,
	CODEC_DISCONNECT = 14,
	CODEC_AUTH = 15 /* 5.0 only; reserved (malformed) in 3.1.1 */
};

/* Protocol versions, numbered as the CONNECT protocol level carries them. */
enum codec_version { CODEC_V31 = 3, CODEC_V311 = 4, CODEC_V5 = 5 };

enum codec_err {
	CODEC_OK = 0,
	CODEC_EAGAIN = -1,      /* not enough bytes yet */
	CODEC_EMALFORMED = -2,  /* malformed packet: close the connection */
	CODEC_ETOOBIG = -3,     /* remaining length over the caller's limit */
	CODEC_EPROTONAME = -4,  /* CONNECT: unknown protocol name: close, no CONNACK */
	CODEC_EPROTOLEVEL = -5, /* CONNECT: unsupported level: CONNACK 0x01 (5.0: 0x84) */
	CODEC_ENOSPACE = -6,    /* encode: output buffer too small */
	CODEC_EPROTOCOL = -7    /* 5.0: well formed but breaks a rule: reason 0x82 */
};

/*
 * In 5.0 a decode error maps to a reason code: CODEC_EMALFORMED to 0x81
 * (Malformed Packet), CODEC_EPROTOCOL to 0x82 (Protocol Error). When a
 * packet has both kinds of fault, CODEC_EMALFORMED wins.
 */
#define CODEC_RC_MALFORMED      0x81
#define CODEC_RC_PROTOCOL_ERROR 0x82

/* CONNACK return codes. */
enum codec_connack_rc {
	CODEC_CONNACK_ACCEPTED = 0,
	CODEC_CONNACK_BAD_PROTOCOL = 1,
	CODEC_CONNACK_ID_REJECTED = 2,
	CODEC_CONNACK_UNAVAILABLE = 3,
	CODEC_CONNACK_BAD_AUTH = 4,
	CODEC_CONNACK_NOT_AUTHORIZED = 5
};

#define CODEC_SUBACK_FAILURE 0x80
/* PUBLISH fixed-header flags, for patching a cached encoded header. */
#define CODEC_PUBLISH_RETAIN 0x01
#define CODEC_PUBLISH_DUP    0x08
/* Encoded sizes of the fixed-size packets the broker sends. */
#define CODEC_CONNACK_LEN   4
#define CODEC_ACK_LEN       4
#define CODEC_PINGRESP_LEN  2
#define CODEC_MAX_REMAINING 268435455u /* largest 4-byte remaining length */

/* A length-prefixed string or binary field, pointing into the packet. */
struct codec_str {
	const char *ptr;
	uint16_t len;
};

/* 5.0 property identifiers (MQTT 5.0 section 2.2.2.2). */
enum codec_prop_id {
	CODEC_PROP_PAYLOAD_FORMAT = 0x01,         /* byte: PUBLISH, Will */
	CODEC_PROP_MESSAGE_EXPIRY = 0x02,         /* four-byte: PUBLISH, Will */
	CODEC_PROP_CONTENT_TYPE = 0x03,           /* UTF-8: PUBLISH, Will */
	CODEC_PROP_RESPONSE_TOPIC = 0x08,         /* UTF-8: PUBLISH, Will */
	CODEC_PROP_CORRELATION_DATA = 0x09,       /* binary: PUBLISH, Will */
	CODEC_PROP_SUBSCRIPTION_ID = 0x0B,        /* VBI: PUBLISH, SUBSCRIBE */
	CODEC_PROP_SESSION_EXPIRY = 0x11,         /* four-byte: CONNECT, CONNACK, DISCONNECT */
	CODEC_PROP_ASSIGNED_CLIENT_ID = 0x12,     /* UTF-8: CONNACK */
	CODEC_PROP_SERVER_KEEPALIVE = 0x13,       /* two-byte: CONNACK */
	CODEC_PROP_AUTH_METHOD = 0x15,            /* UTF-8: CONNECT, CONNACK, AUTH */
	CODEC_PROP_AUTH_DATA = 0x16,              /* binary: CONNECT, CONNACK, AUTH */
	CODEC_PROP_REQUEST_PROBLEM_INFO = 0x17,   /* byte: CONNECT */
	CODEC_PROP_WILL_DELAY = 0x18,             /* four-byte: Will */
	CODEC_PROP_REQUEST_RESPONSE_INFO = 0x19,  /* byte: CONNECT */
	CODEC_PROP_RESPONSE_INFO = 0x1A,          /* UTF-8: CONNACK */
	CODEC_PROP_SERVER_REFERENCE = 0x1C,       /* UTF-8: CONNACK, DISCONNECT */
	CODEC_PROP_REASON_STRING = 0x1F,          /* UTF-8: acks, CONNACK, DISCONNECT, AUTH */
	CODEC_PROP_RECEIVE_MAX = 0x21,            /* two-byte: CONNECT, CONNACK */
	CODEC_PROP_TOPIC_ALIAS_MAX = 0x22,        /* two-byte: CONNECT, CONNACK */
	CODEC_PROP_TOPIC_ALIAS = 0x23,            /* two-byte: PUBLISH */
	CODEC_PROP_MAX_QOS = 0x24,                /* byte: CONNACK */
	CODEC_PROP_RETAIN_AVAILABLE = 0x25,       /* byte: CONNACK */
	CODEC_PROP_USER = 0x26,                   /* string pair: every packet with properties */
	CODEC_PROP_MAX_PACKET_SIZE = 0x27,        /* four-byte: CONNECT, CONNACK */
	CODEC_PROP_WILDCARD_SUB_AVAILABLE = 0x28, /* byte: CONNACK */
	CODEC_PROP_SUB_ID_AVAILABLE = 0x29,       /* byte: CONNACK */
	CODEC_PROP_SHARED_SUB_AVAILABLE = 0x2A    /* byte: CONNACK */
};

/* The property context of CONNECT's Will Properties, next to the packet
 * types 1..15 that codec_props_parse() also takes. */
#define CODEC_WILL    16
#define CODEC_MAX_VBI 268435455u /* largest Variable Byte Integer */

/*
 * A decoded, validated 5.0 property block. data/len is the block itself
 * (after its length prefix): walk it with codec_props_next() for every
 * property in order, or codec_props_next_user() / codec_props_next_sub_id()
 * for the ones that may repeat, and pass it on unchanged by pointer. The
 * single-valued properties are also decoded into the fields below; test
 * presence with CODEC_PROP_HAS(). An absent property reads as its default
 * from the standard: receive_max 65535, request_problem_info 1, max_qos 2,
 * the four *_available 1, everything else 0 (max_packet_size 0: no limit).
 * In a 3.1.1 packet every codec_props is all zero.
 */
struct codec_props {
	const uint8_t *data;
	uint32_t len;
	uint64_t present;      /* bit n set: property id n appears */
	uint32_t user_count;   /* User Property entries */
	uint32_t sub_id_count; /* Subscription Identifier entries */
	uint32_t sub_id;       /* the first Subscription Identifier */
	uint32_t message_expiry;
	uint32_t session_expiry;
	uint32_t will_delay;
	uint32_t max_packet_size;
	uint16_t receive_max;
	uint16_t topic_alias_max;
	uint16_t topic_alias;
	uint16_t server_keepalive;
	uint8_t payload_format;
	uint8_t request_problem_info;
	uint8_t request_response_info;
	uint8_t max_qos;
	uint8_t retain_available;
	uint8_t wildcard_sub_available;
	uint8_t sub_id_available;
	uint8_t shared_sub_available;
	struct codec_str content_type;
	struct codec_str response_topic;
	struct codec_str correlation_data; /* binary */
	struct codec_str assigned_client_id;
	struct codec_str auth_method;
	struct codec_str auth_data; /* binary */
	struct codec_str response_info;
	struct codec_str server_reference;
	struct codec_str reason_string;
};

#define CODEC_PROP_HAS(pr, id) ((((pr)->present) >> (id)) & 1u)

/* One property, as codec_props_next() yields it: value for the integer
 * types, str for strings and binary data, str and str2 (name, value) for a
 * User Property. */
struct codec_prop {
	uint8_t id;
	uint32_t value;
	struct codec_str str;
	struct codec_str str2;
};

/* 5.0 SUBSCRIBE options byte (the qos codec_list_next() yields). */
#define CODEC_SUBOPT_QOS(o)             ((uint8_t)((o)&0x03))
#define CODEC_SUBOPT_NO_LOCAL           0x04
#define CODEC_SUBOPT_RETAIN_AS_PUB      0x08
#define CODEC_SUBOPT_RETAIN_HANDLING(o) ((uint8_t)(((o) >> 4) & 0x03))

struct codec_header {
	uint8_t type;       /* enum codec_type, or 0 / 15 (reserved) */
	uint8_t flags;      /* low four bits of the first byte */
	uint32_t remaining; /* remaining length */
	uint8_t header_len; /* 2..5 bytes of fixed header */
};

struct codec_connect {
	uint8_t protocol_level; /* 3 (MQIsdp), 4 or 5 (MQTT) */
	bool clean_session;     /* Clean Start in 5.0 */
	uint16_t keepalive;
	struct codec_str client_id;
	bool will_flag;
	uint8_t will_qos;
	bool will_retain;
	struct codec_str will_topic;
	struct codec_str will_payload; /* binary */
	bool has_username;
	struct codec_str username;
	bool has_password;
	struct codec_str password;     /* binary */
	struct codec_props props;      /* 5.0 */
	struct codec_props will_props; /* 5.0, with will_flag */
};

struct codec_connack {
	bool session_present;
	uint8_t return_code;      /* the Connect Reason Code in 5.0 */
	struct codec_props props; /* 5.0 */
};

struct codec_publish {
	uint8_t qos;
	bool dup;
	bool retain;
	struct codec_str topic;
	uint16_t packet_id; /* 0 for QoS 0 */
	const uint8_t *payload;
	uint32_t payload_len;
	struct codec_props props; /* 5.0 */
};

/* 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP. packet_id comes first, so it reads
 * the same as codec_packet.u.packet_id. */
struct codec_ack {
	uint16_t packet_id;
	uint8_t reason; /* 0 when the short form left it out */
	struct codec_props props;
};

/* 5.0 DISCONNECT and AUTH. */
struct codec_reason {
	uint8_t code; /* 0 when the short form left it out */
	struct codec_props props;
};

/* SUBSCRIBE / UNSUBSCRIBE / SUBACK: the list is validated by the decoder and
 * walked with codec_list_next(). */
struct codec_list {
	uint16_t packet_id;
	uint32_t count;      /* number of entries */
	const uint8_t *data; /* the payload */
	uint32_t data_len;
	struct codec_props props; /* 5.0 */
};

struct codec_packet {
	uint8_t type;
	uint8_t flags;
	union {
		struct codec_connect connect;
		struct codec_connack connack;
		struct codec_publish publish;
		uint16_t packet_id;         /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
		struct codec_list list;     /* SUBSCRIBE, UNSUBSCRIBE, SUBACK; 5.0 UNSUBACK */
		struct codec_ack ack;       /* 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP */
		struct codec_reason reason; /* 5.0 DISCONNECT, AUTH */
	} u;
};

/*
 * Parse a fixed header from buf[0..len). Returns CODEC_OK and fills h,
 * CODEC_EAGAIN when more bytes are needed, CODEC_EMALFORMED for a remaining
 * length longer than 4 bytes or a reserved packet type (0 or 15), and
 * CODEC_ETOOBIG when the remaining length exceeds max_remaining (checked
 * from the header alone, before the body arrives; h is filled in then too).
 */
int codec_parse_header(const uint8_t *buf, size_t len, uint32_t max_remaining,
		       struct codec_header *h);

/*
 * Decode one packet's body (the remaining-length bytes after the fixed
 * header) of a packet whose first byte was first_byte. Checks fixed-header
 * flags, packet ids (non-zero where required), QoS values, UTF-8 of every
 * string (no U+0000, no surrogates), no wildcards in a PUBLISH topic, a
 * non-empty PUBLISH topic, SUBSCRIBE/UNSUBSCRIBE with at least one entry,
 * and every CONNECT flag rule. Topic filter syntax is left to topic.c.
 * Returns CODEC_OK, CODEC_EMALFORMED, CODEC_EPROTONAME or
 * CODEC_EPROTOLEVEL.
 */
int codec_decode(uint8_t first_byte, const uint8_t *body, uint32_t len, struct codec_packet *out);

/*
 * Walk the entries of a decoded SUBSCRIBE (filter + requested QoS; in 5.0
 * the whole options byte, see CODEC_SUBOPT_*), UNSUBSCRIBE (filter; qos set
 * to 0), SUBACK or 5.0 UNSUBACK (filter empty; qos is the return or reason
 * code). *pos starts at 0. Returns true while an entry was produced.
 */
bool codec_list_next(uint8_t type, const struct codec_list *l, uint32_t *pos,
		     struct codec_str *filter, uint8_t *qos);

/* Number of bytes encode would write for p (fixed header included), or 0 if
 * the packet cannot be encoded (remaining length too large, unknown type,
 * QoS > 2). */
size_t codec_encoded_len(const struct codec_packet *p);

/*
 * Encode p into out[0..cap). Returns the number of bytes written,
 * CODEC_ENOSPACE, or CODEC_EMALFORMED if p cannot be encoded at all
 * (codec_encoded_len() is 0: unknown type, QoS > 2, too long). For
 * SUBSCRIBE/UNSUBSCRIBE/SUBACK, p->u.list.data holds the
 * already-encoded payload (see codec_list_append()). The fixed-header flags
 * are derived from the packet (PUBLISH: qos/dup/retain); p->flags is ignored.
 */
int codec_encode(const struct codec_packet *p, uint8_t *out, size_t cap);

/*
 * Encode the PUBLISH fixed and variable headers only (the payload follows
 * separately, so a fanned-out payload is never copied). The remaining
 * length counts the payload. If pid_offset is not NULL it receives the
 * offset of the 2-byte packet id (QoS > 0), so a cached header can be
 * patched per subscriber. Returns bytes written, CODEC_ENOSPACE, or
 * CODEC_EMALFORMED for QoS > 2 or a remaining length over CODEC_MAX_REMAINING.
 */
int codec_encode_publish_header(const struct codec_publish *p, uint8_t *out, size_t cap,
				size_t *pid_offset);

/*
 * Encoders for the packets the broker sends, so no packet is built by hand
 * outside this file. Each writes into out[0..cap) and returns the bytes
 * written or CODEC_ENOSPACE; codec_encode_ack also returns CODEC_EMALFORMED
 * for a type that is not PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK, and
 * codec_encode_suback for a list too long to encode.
 */
int codec_encode_connack(bool session_present, uint8_t return_code, uint8_t *out, size_t cap);
int codec_encode_ack(enum codec_type type, uint16_t packet_id, uint8_t *out, size_t cap);
int codec_encode_pingresp(uint8_t *out, size_t cap);
int codec_encode_suback(uint16_t packet_id, const uint8_t *codes, uint32_t count, uint8_t *out,
			size_t cap);

/* Append one SUBSCRIBE/UNSUBSCRIBE/SUBACK (or 5.0 UNSUBACK: one reason
 * code, like SUBACK) entry to an encoded list payload buffer (used by
 * clients and tests). Returns new length or CODEC_ENOSPACE
 * (CODEC_EMALFORMED for any other type). */
int codec_list_append(uint8_t type, uint8_t *buf, size_t len, size_t cap, const char *filter,
		      uint16_t filter_len, uint8_t qos);

/* True if s[0..len) is well-formed UTF-8 for MQTT: no U+0000, no
 * surrogates, no overlong forms. */
bool codec_utf8_valid(const char *s, size_t len);

/* Encode a remaining length into out (at least 4 bytes); returns the number
 * of bytes used (1-4), or CODEC_EMALFORMED (nothing written) for a value
 * over CODEC_MAX_REMAINING. */
int codec_encode_varint(uint32_t value, uint8_t *out);

/* ---- MQTT 5.0 ---- */

/*
 * codec_parse_header() for a connection of the given version (3, 4 or 5).
 * In 5.0 packet type 15 is AUTH, and a remaining length not in its shortest
 * encoding is malformed [MQTT-1.5.5-1]; for 3 and 4 this is
 * codec_parse_header() exactly.
 */
int codec_parse_header_v(uint8_t version, const uint8_t *buf, size_t len, uint32_t max_remaining,
			 struct codec_header *h);

/*
 * Read the protocol name and level at the start of a CONNECT body without
 * decoding the rest, so that a caller can pick the version before it
 * decodes. Returns CODEC_OK with *level set, CODEC_EPROTONAME for a name
 * other than "MQTT" or "MQIsdp", or CODEC_EMALFORMED if the body is too
 * short to hold them.
 */
int codec_connect_level(const uint8_t *body, uint32_t len, uint8_t *level);

/*
 * codec_decode() for a connection of the given version: 3 or 4 decode as
 * codec_decode() does (codec_decode() is codec_decode_v(4, ...)), 5 decodes
 * the 5.0 forms: property blocks on every packet that has one, reason codes
 * on acknowledgements, SUBSCRIBE options, DISCONNECT and AUTH (with their
 * short forms).
 *
 * CONNECT names its own level. Version 3 or 4 accepts MQIsdp level 3 and
 * MQTT level 4 (as codec_decode() always has, so level 5 stays refused);
 * version 5 also accepts MQTT level 5. out->u.connect.protocol_level is
 * set to the level found, on CODEC_EPROTOLEVEL too, so the caller can
 * answer in the client's version.
 *
 * A 5.0 PUBLISH may carry a Subscription Identifier, as one from a server
 * does; a server must refuse one from a client [MQTT-3.3.4-6]:
 * publish.props.sub_id_count > 0. Topic Alias values are only reported.
 *
 * Returns CODEC_OK, CODEC_EMALFORMED (5.0 reason 0x81), CODEC_EPROTOCOL
 * (5.0 only, reason 0x82; every field that decoded is filled in),
 * CODEC_EPROTONAME or CODEC_EPROTOLEVEL.
 */
int codec_decode_v(uint8_t version, uint8_t first_byte, const uint8_t *body, uint32_t len,
		   struct codec_packet *out);

/*
 * codec_encoded_len() and codec_encode() for a version: 3 and 4 are the
 * unversioned functions, 5 writes the 5.0 forms with the property blocks
 * the structs point to (props.data/len, written as given after a check
 * with codec_props_parse()), reason codes (acks in their short form when
 * the reason is 0 and there are no properties; DISCONNECT and AUTH with
 * remaining length 0 then) and SUBSCRIBE options bytes. CONNECT is written
 * in the form its protocol_level names, whatever the version.
 * codec_encoded_len_v() returns 0 and codec_encode_v() CODEC_EMALFORMED for
 * a packet that cannot be encoded (as before, and in 5.0: a property block
 * not valid for the packet type, a reason code outside its table).
 */
size_t codec_encoded_len_v(uint8_t version, const struct codec_packet *p);
int codec_encode_v(uint8_t version, const struct codec_packet *p, uint8_t *out, size_t cap);

/*
 * Parse and validate a property block data[0..len) (without its length
 * prefix) for packet type ctx (CODEC_CONNECT .. CODEC_AUTH) or CODEC_WILL.
 * Checks every identifier is known and allowed in ctx, every value has its
 * type's form (UTF-8 strings and string pairs well formed [MQTT-1.5.4-1,
 * MQTT-1.5.4-2, MQTT-1.5.7-1], Variable Byte Integers in their shortest
 * form [MQTT-1.5.5-1]) and lies inside the block; then that no property
 * appears twice except User Property anywhere and Subscription Identifier
 * in PUBLISH, and the value rules: Payload Format Indicator, Request
 * Problem/Response Information, Maximum QoS and the *_available bytes 0 or
 * 1, Receive Maximum and Maximum Packet Size not 0, Subscription
 * Identifier 1..268435455, Response Topic a topic name without wildcards
 * [MQTT-3.3.2-14].
 * Returns CODEC_OK, CODEC_EMALFORMED (unknown or misplaced identifier,
 * wrong form, overrun) or CODEC_EPROTOCOL (repeated, value out of range);
 * out is filled as far as it decoded. out->data points into data.
 */
int codec_props_parse(uint8_t ctx, const uint8_t *data, uint32_t len, struct codec_props *out);

/*
 * Walk a block parsed by codec_props_parse(): all properties in wire
 * order, only the User Properties (name, value) in order [MQTT-3.3.2-18],
 * or only the Subscription Identifiers. *pos starts at 0. Each returns
 * true while it produced one.
 */
bool codec_props_next(const struct codec_props *pr, uint32_t *pos, struct codec_prop *out);
bool codec_props_next_user(const struct codec_props *pr, uint32_t *pos, struct codec_str *name,
			   struct codec_str *value);
bool codec_props_next_sub_id(const struct codec_props *pr, uint32_t *pos, uint32_t *id);

/*
 * Copy the well-formed block data[0..len) into out[0..cap) without the
 * properties whose bit (1 << id) is set in drop, keeping the order of the
 * rest. For the rules that leave Reason String and User Property out of a
 * packet that would exceed the peer's Maximum Packet Size [MQTT5-3.2.2-19,
 * MQTT5-3.2.2-20, MQTT5-3.4.2-2, MQTT5-3.4.2-3 and the like], and for
 * dropping what a forwarded PUBLISH must not repeat (Topic Alias,
 * Subscription Identifiers). out may be data itself (filtered in place)
 * but must not overlap it otherwise. Returns
 * the new length, CODEC_ENOSPACE, or CODEC_EMALFORMED for a block that
 * does not parse property by property.
 */
int codec_props_filter(const uint8_t *data, size_t len, uint64_t drop, uint8_t *out, size_t cap);

/*
 * Property builder: appends properties to a caller buffer. Errors are
 * sticky (b->err keeps the first, later appends do nothing), so a caller
 * can append several and check once. The result is b->data[0..b->len),
 * the block without its length prefix, to hand to an encoder as props.
 */
struct codec_propbuf {
	uint8_t *data;
	size_t cap;
	size_t len;
	int err; /* CODEC_OK or the first error */
};

void codec_propbuf_init(struct codec_propbuf *b, uint8_t *data, size_t cap);

/*
 * Append an integer property (byte, two-byte, four-byte or Variable Byte
 * Integer, as id's type says), a string or binary property, or a User
 * Property. Each returns CODEC_OK, CODEC_ENOSPACE, or CODEC_EMALFORMED
 * for an unknown id, an id of another type, a value that does not fit the
 * type, a string over 65,535 bytes or a UTF-8 string that is not well
 * formed. Which packet a property may go in is checked by the encoders.
 */
int codec_propbuf_add_int(struct codec_propbuf *b, uint8_t id, uint32_t value);
int codec_propbuf_add_str(struct codec_propbuf *b, uint8_t id, const void *s, size_t len);
int codec_propbuf_add_user(struct codec_propbuf *b, const char *name, size_t name_len,
			   const char *value, size_t value_len);

/*
 * Encoders for the 5.0 packets the broker sends. props/props_len is a
 * property block (without its length prefix, NULL/0 for none); each
 * encoder checks it with codec_props_parse() for its packet type, checks
 * the reason code against the packet's table [MQTT-3.2.2-8, MQTT-3.4.2-1,
 * MQTT-3.5.2-1, MQTT-3.6.2-1, MQTT-3.7.2-1, MQTT-3.9.3-2, MQTT-3.11.3-2,
 * MQTT-3.14.2-1, MQTT-3.15.2-1], and writes into out[0..cap). Each returns
 * the bytes written, CODEC_ENOSPACE, or CODEC_EMALFORMED when the packet
 * cannot be sent as asked: bad block or reason, remaining length too large,
 * and the rules below.
 *
 * codec_v5_encode_connack: Session Present only with reason 0
 * [MQTT-3.2.2-6]. codec_v5_encode_publish_header: as
 * codec_encode_publish_header() with p->props as the block; Topic Alias 0
 * [MQTT-3.3.2-8] and an empty topic without a Topic Alias are refused.
 * codec_v5_encode_ack: PUBACK, PUBREC, PUBREL or PUBCOMP; the short form
 * (remaining length 2) when reason is 0 and there are no properties, 3 when
 * only the properties are absent. codec_v5_encode_suback: SUBACK or
 * UNSUBACK, one reason code per filter. codec_v5_encode_disconnect:
 * remaining length 0 for reason 0 without properties; a Session Expiry
 * Interval is refused [MQTT-3.14.2-2]. codec_v5_encode_auth: reason 0x00,
 * 0x18 or 0x19; remaining length 0 for 0x00 without properties.
 */
int codec_v5_encode_connack(bool session_present, uint8_t reason, const uint8_t *props,
			    size_t props_len, uint8_t *out, size_t cap);
int codec_v5_encode_publish_header(const struct codec_publish *p, uint8_t *out, size_t cap,
				   size_t *pid_offset);
int codec_v5_encode_ack(enum codec_type type, uint16_t packet_id, uint8_t reason,
			const uint8_t *props, size_t props_len, uint8_t *out, size_t cap);
int codec_v5_encode_suback(enum codec_type type, uint16_t packet_id, const uint8_t *codes,
			   uint32_t count, const uint8_t *props, size_t props_len, uint8_t *out,
			   size_t cap);
int codec_v5_encode_disconnect(uint8_t reason, const uint8_t *props, size_t props_len, uint8_t *out,
			       size_t cap);
int codec_v5_encode_auth(uint8_t reason, const uint8_t *props, size_t props_len, uint8_t *out,
			 size_t cap);

/* True if code is in the 5.0 reason code table of packet type (CONNACK,
 * PUBACK .. PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH). */
bool codec_v5_reason_ok(uint8_t type, uint8_t code);

#endif
