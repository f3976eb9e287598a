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

struct evbuffer;

struct message {
	unsigned refs;
	uint64_t id;          /* store msg_id; 0 until stored */
	unsigned stored_refs; /* stored deliveries referencing it */
	uint8_t qos;
	bool retain;
	uint16_t topic_len;
	uint32_t payload_len;
	char *topic;      /* NUL-terminated, inside this allocation */
	uint8_t *payload; /* inside this allocation */
	/* The encoded PUBLISH header per QoS (retain 0, dup 0), built on first
	 * use by message_write_publish, so a fanned-out message is encoded
	 * once per QoS. */
	uint8_t *hdr[3];
	uint32_t hdr_len[3];
	uint32_t pid_off[3];
};

/* A new message with one reference; topic and payload are copied. */
struct message *message_new(const char *topic, size_t topic_len, const uint8_t *payload,
			    size_t payload_len, uint8_t qos, bool retain);
struct message *message_ref(struct message *m);
void message_unref(struct message *m);

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
