/*
 * MQTT 3.1.1 / 3.1 packet codec: bytes <-> structs. Pure: no I/O, no
 * allocation. Decoded strings and payloads point into the caller's buffer
 * and live as long as it does.
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
	CODEC_DISCONNECT = 14
};

enum codec_err {
	CODEC_OK = 0,
	CODEC_EAGAIN = -1,      /* not enough bytes yet */
	CODEC_EMALFORMED = -2,  /* malformed packet: close the connection */
	CODEC_ETOOBIG = -3,     /* remaining length over the caller's limit */
	CODEC_EPROTONAME = -4,  /* CONNECT: unknown protocol name: close, no CONNACK */
	CODEC_EPROTOLEVEL = -5, /* CONNECT: unsupported level: CONNACK 0x01 */
	CODEC_ENOSPACE = -6     /* encode: output buffer too small */
};

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

struct codec_header {
	uint8_t type;       /* enum codec_type, or 0 / 15 (reserved) */
	uint8_t flags;      /* low four bits of the first byte */
	uint32_t remaining; /* remaining length */
	uint8_t header_len; /* 2..5 bytes of fixed header */
};

struct codec_connect {
	uint8_t protocol_level; /* 3 (MQIsdp) or 4 (MQTT) */
	bool clean_session;
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
	struct codec_str password; /* binary */
};

struct codec_connack {
	bool session_present;
	uint8_t return_code;
};

struct codec_publish {
	uint8_t qos;
	bool dup;
	bool retain;
	struct codec_str topic;
	uint16_t packet_id; /* 0 for QoS 0 */
	const uint8_t *payload;
	uint32_t payload_len;
};

/* SUBSCRIBE / UNSUBSCRIBE / SUBACK: the list is validated by the decoder and
 * walked with codec_list_next(). */
struct codec_list {
	uint16_t packet_id;
	uint32_t count;      /* number of entries */
	const uint8_t *data; /* the payload */
	uint32_t data_len;
};

struct codec_packet {
	uint8_t type;
	uint8_t flags;
	union {
		struct codec_connect connect;
		struct codec_connack connack;
		struct codec_publish publish;
		uint16_t packet_id;     /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
		struct codec_list list; /* SUBSCRIBE, UNSUBSCRIBE, SUBACK */
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
 * Walk the entries of a decoded SUBSCRIBE (filter + requested QoS),
 * UNSUBSCRIBE (filter; qos set to 0) or SUBACK (filter empty; qos is the
 * return code). *pos starts at 0. Returns true while an entry was produced.
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

/* Append one SUBSCRIBE/UNSUBSCRIBE/SUBACK entry to an encoded list payload
 * buffer (used by clients and tests). Returns new length or
 * CODEC_ENOSPACE (CODEC_EMALFORMED for any other type). */
int codec_list_append(uint8_t type, uint8_t *buf, size_t len, size_t cap, const char *filter,
		      uint16_t filter_len, uint8_t qos);

/* True if s[0..len) is well-formed UTF-8 for MQTT: no U+0000, no
 * surrogates, no overlong forms. */
bool codec_utf8_valid(const char *s, size_t len);

/* Encode a remaining length into out (at least 4 bytes); returns the number
 * of bytes used (1-4), or CODEC_EMALFORMED (nothing written) for a value
 * over CODEC_MAX_REMAINING. */
int codec_encode_varint(uint32_t value, uint8_t *out);

#endif
