/*
 * The message as the broker holds it: stored once, shared by every queue
 * that delivers it (reference counted), its payload never copied per
 * subscriber, and its PUBLISH header encoded once per QoS.
 */
#ifndef CAIRN_MESSAGE_H
#define CAIRN_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/store.h"

struct evbuffer;
struct security;

/* Who published a retained message, kept while an ACL is in force so the
 * publisher's right to write the topic is checked again each time the
 * message goes to a new subscriber (negative-tests row 20: a retained
 * message must not outlive its publisher's write access). */
struct message_source {
	char *client_id;
	char *username; /* NULL: the publisher gave none */
	const struct security *sec;
};

/* The encoded PUBLISH header of a message per version (0: 3.1.1, 1: 5.0
 * with its properties and nothing of the send's own) and QoS (retain 0,
 * dup 0, packet id 1), each built on first use, so a fanned-out message is
 * encoded once per version and QoS. */
struct message_hdrs {
	uint8_t *hdr[2][3];
	uint32_t hdr_len[2][3];
	uint32_t pid_off[2][3];
};

struct message {
	unsigned refs;
	unsigned stored_refs; /* stored deliveries referencing it */
	uint64_t id;          /* store msg_id; 0 until stored */
	uint8_t qos;
	bool retain;
	uint16_t topic_len;
	uint32_t payload_len;
	char *topic;      /* NUL-terminated, inside this allocation */
	uint8_t *payload; /* inside this allocation */
	/* Its encoded headers: an allocation of their own made by the first
	 * send (NULL until then), so that a queued message that has not gone
	 * out yet (a million of them in a long offline queue) does not carry
	 * the 96 bytes of the cache. */
	struct message_hdrs *hdrs;
	struct message_source *source; /* NULL: unknown (no ACL, or restored) */
	/* MQTT 5.0: when the message expires (wall-clock ms; 0: never), and
	 * the properties forwarded with it, encoded once (payload format,
	 * content type, response topic, correlation data, user properties;
	 * their own allocation, NULL when none: a 3.1.1 message has none). */
	int64_t expires_at;
	uint8_t *props;
	uint32_t props_len;
	/* The session that published it, while it is routed (No Local);
	 * NULL otherwise. Not a reference. */
	const void *origin;
	/* Cluster mode: read from the shared log at (log_ms, log_seq), so its
	 * retained copy is kept in memory only (the appending node stored it). */
	bool from_log;
	uint64_t log_ms, log_seq;
	/* Cluster mode: the will of its publisher's connection, published by
	 * this node, which holds it under the claim of this serial
	 * (cairn_msg_rec.will_serial: the store appends it once); else 0. */
	uint64_t will_serial;
};

/* The 5.0 parts of one send of a message to one subscriber. */
struct message_v5 {
	const uint32_t *sub_ids; /* subscription identifiers to send */
	uint32_t n_sub_ids;
	uint16_t alias;      /* topic alias to send with it; 0: none */
	bool alias_only;     /* the client knows alias: the topic is left out */
	int64_t now_ms;      /* wall clock, for the remaining expiry interval */
	uint32_t max_packet; /* the client's maximum packet size; 0: none */
};

/* message_write_publish5 when the packet would exceed max_packet. */
#define MESSAGE_TOO_LARGE (-2)

/* Copy a 5.0 property block to m (replacing any). */
void message_set_props(struct message *m, const uint8_t *props, size_t len);

/* The store's record of m (msg_id is m->id; its fields point into m). */
struct cairn_msg_rec message_rec(const struct message *m);

/* A new message (one reference) from an entry of the shared log (cluster
 * mode): its record copied, from_log set and its position kept. */
struct message *message_from_log(const struct cairn_log_entry *e);

/*
 * message_write_publish for a 5.0 subscriber: the PUBLISH carries m's
 * properties, the remaining message expiry interval, o's subscription
 * identifiers and topic alias. A send with none of the last three uses the
 * message's cached 5.0 header; one with any is encoded for itself. Returns
 * 0, -1 when it cannot be encoded, or MESSAGE_TOO_LARGE (nothing appended).
 */
int message_write_publish5(struct message *m, struct evbuffer *out, uint8_t qos, uint16_t pid,
			   bool retain, bool dup, const struct message_v5 *o);

/* A new message with one reference; topic and payload are copied. */
struct message *message_new(const char *topic, size_t topic_len, const uint8_t *payload,
			    size_t payload_len, uint8_t qos, bool retain);
struct message *message_ref(struct message *m);
void message_unref(struct message *m);

/* Record who published m (copies the strings; sec is borrowed, it lives
 * as long as the server). */
void message_set_source(struct message *m, const char *client_id, const char *username,
			const struct security *sec);

/*
 * Append m as a PUBLISH at qos with packet id pid (ignored at QoS 0) and
 * the given RETAIN and DUP flags to out. The header comes from the
 * message's cache; a payload of MESSAGE_REF_PAYLOAD bytes or more is
 * referenced, not copied (the reference holds m). Returns 0, or -1 when
 * the message cannot be encoded (nothing is appended then).
 */
int message_write_publish(struct message *m, struct evbuffer *out, uint8_t qos, uint16_t pid,
			  bool retain, bool dup);

/* Payloads this long or longer are referenced, not copied, into a socket's
 * output: below it a copy costs less than a reference chain. */
#define MESSAGE_REF_PAYLOAD 512

#endif
