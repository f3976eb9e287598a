/*
 * Messages: one allocation holding the topic and payload, reference
 * counted, and the cache of the encoded PUBLISH header (per protocol
 * version and QoS) that every delivery of the message patches (flags,
 * packet id) instead of encoding.
 */
#include "message.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "util.h"

struct message *message_new(const char *topic, size_t topic_len, const uint8_t *payload,
			    size_t payload_len, uint8_t qos, bool retain)
{
	struct message *m = xmalloc(sizeof(*m) + topic_len + 1 + payload_len);
	memset(m, 0, sizeof(*m));
	m->refs = 1;
	m->qos = qos;
	m->retain = retain;
	m->topic_len = (uint16_t)topic_len;
	m->payload_len = (uint32_t)payload_len;
	m->topic = (char *)(m + 1);
	memcpy(m->topic, topic, topic_len);
	m->topic[topic_len] = '\0';
	m->payload = (uint8_t *)m->topic + topic_len + 1;
	if (payload_len)
		memcpy(m->payload, payload, payload_len);
	return m;
}

/* Forget the cached headers of version slot v (0: 3.1.1, 1: 5.0). */
static void message_drop_headers(struct message *m, int v)
{
	if (!m->hdrs)
		return;
	for (int q = 0; q < 3; q++) {
		free(m->hdrs->hdr[v][q]);
		m->hdrs->hdr[v][q] = NULL;
	}
}

struct message *message_ref(struct message *m)
{
	m->refs++;
	return m;
}

void message_unref(struct message *m)
{
	if (!m || --m->refs > 0)
		return;
	message_drop_headers(m, 0);
	message_drop_headers(m, 1);
	free(m->hdrs);
	free(m->props);
	if (m->source) {
		free(m->source->client_id);
		free(m->source->username);
		free(m->source);
	}
	free(m);
}

void message_set_source(struct message *m, const char *client_id, const char *username,
			const struct security *sec)
{
	struct message_source *s = xcalloc(1, sizeof(*s));
	s->client_id = xstrdup(client_id);
	s->username = username ? xstrdup(username) : NULL;
	s->sec = sec;
	m->source = s;
}

static void message_payload_release(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	message_unref(arg);
}

/* The encoded PUBLISH header of m at qos, for 3.1.1 (v 0) or for 5.0
 * with m's properties alone (v 1), built once per message. */
static int message_header(struct message *m, int v, uint8_t qos)
{
	if (!m->hdrs)
		m->hdrs = xcalloc(1, sizeof(*m->hdrs));
	struct message_hdrs *h = m->hdrs;
	if (h->hdr[v][qos])
		return 0;
	struct codec_publish p = {
	    .qos = qos,
	    .topic = {m->topic, m->topic_len},
	    .packet_id = qos ? 1 : 0,
	    .payload = m->payload,
	    .payload_len = m->payload_len,
	};
	size_t cap = 5 + 2 + (size_t)m->topic_len + 2;
	if (v)
		cap += 4 + (size_t)m->props_len;
	uint8_t *buf = xmalloc(cap);
	size_t off = 0;
	int n;
	if (v) {
		p.props.data = m->props;
		p.props.len = m->props_len;
		n = codec_v5_encode_publish_header(&p, buf, cap, &off);
	} else {
		n = codec_encode_publish_header(&p, buf, cap, &off);
	}
	if (n < 0) {
		free(buf);
		return -1;
	}
	h->hdr[v][qos] = buf;
	h->hdr_len[v][qos] = (uint32_t)n;
	h->pid_off[v][qos] = (uint32_t)off;
	return 0;
}

/* Append m's payload to out: referenced when long, else copied. */
static void message_write_payload(struct message *m, struct evbuffer *out)
{
	if (m->payload_len >= MESSAGE_REF_PAYLOAD)
		evbuffer_add_reference(out, m->payload, m->payload_len, message_payload_release,
				       message_ref(m));
	else if (m->payload_len)
		evbuffer_add(out, m->payload, m->payload_len);
}

/* Append the cached header of slot v at qos (built), with the flags and
 * packet id patched in, then the payload. */
static void message_write_cached(struct message *m, struct evbuffer *out, int v, uint8_t qos,
				 uint16_t pid, bool retain, bool dup)
{
	const uint8_t *hdr = m->hdrs->hdr[v][qos];
	uint32_t hl = m->hdrs->hdr_len[v][qos];
	uint32_t po = m->hdrs->pid_off[v][qos];
	uint8_t first =
	    hdr[0] | (retain ? CODEC_PUBLISH_RETAIN : 0) | (dup ? CODEC_PUBLISH_DUP : 0);
	uint8_t idb[2] = {(uint8_t)(pid >> 8), (uint8_t)pid};
	uint8_t small[256];
	if (hl <= sizeof(small)) {
		/* The usual short header: one copy, one append. */
		memcpy(small, hdr, hl);
		small[0] = first;
		if (qos)
			memcpy(small + po, idb, 2);
		evbuffer_add(out, small, hl);
	} else {
		/* A long one: append the cached bytes around the patches. */
		evbuffer_add(out, &first, 1);
		if (qos) {
			evbuffer_add(out, hdr + 1, po - 1);
			evbuffer_add(out, idb, 2);
			evbuffer_add(out, hdr + po + 2, hl - po - 2);
		} else {
			evbuffer_add(out, hdr + 1, hl - 1);
		}
	}
	message_write_payload(m, out);
}

int message_write_publish(struct message *m, struct evbuffer *out, uint8_t qos, uint16_t pid,
			  bool retain, bool dup)
{
	if (qos > 2 || message_header(m, 0, qos) < 0)
		return -1;
	message_write_cached(m, out, 0, qos, pid, retain, dup);
	return 0;
}

void message_set_props(struct message *m, const uint8_t *props, size_t len)
{
	message_drop_headers(m, 1);
	free(m->props);
	m->props = NULL;
	m->props_len = 0;
	if (len) {
		m->props = xmalloc(len);
		memcpy(m->props, props, len);
		m->props_len = (uint32_t)len;
	}
}

int message_write_publish5(struct message *m, struct evbuffer *out, uint8_t qos, uint16_t pid,
			   bool retain, bool dup, const struct message_v5 *o)
{
	uint8_t pstack[256], hstack[512];
	uint8_t *pbuf = pstack, *hbuf = hstack;
	int rc = -1;
	if (qos > 2)
		return -1;
	if (!m->expires_at && !o->alias && o->n_sub_ids == 0) {
		/* Nothing of this send's own: the message's cached header. */
		if (message_header(m, 1, qos) < 0)
			return -1;
		if (o->max_packet &&
		    (uint64_t)m->hdrs->hdr_len[1][qos] + m->payload_len > o->max_packet)
			return MESSAGE_TOO_LARGE;
		message_write_cached(m, out, 1, qos, pid, retain, dup);
		return 0;
	}
	/* The forwarded block, then what is this send's own. */
	size_t pcap = (size_t)m->props_len + 5 + 3 + (size_t)o->n_sub_ids * 5;
	if (pcap > sizeof(pstack))
		pbuf = xmalloc(pcap);
	struct codec_propbuf b;
	codec_propbuf_init(&b, pbuf, pcap);
	if (m->props_len) {
		memcpy(pbuf, m->props, m->props_len);
		b.len = m->props_len;
	}
	if (m->expires_at) {
		int64_t left = m->expires_at - o->now_ms;
		/* Rounded up: an interval of 0 would mean "expired". */
		uint32_t s = left <= 0 ? 1 : (uint32_t)((left + 999) / 1000);
		codec_propbuf_add_int(&b, CODEC_PROP_MESSAGE_EXPIRY, s);
	}
	if (o->alias)
		codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS, o->alias);
	for (uint32_t i = 0; i < o->n_sub_ids; i++)
		codec_propbuf_add_int(&b, CODEC_PROP_SUBSCRIPTION_ID, o->sub_ids[i]);
	if (b.err != CODEC_OK)
		goto out;
	struct codec_publish p = {
	    .qos = qos,
	    .dup = dup,
	    .retain = retain,
	    .topic = {m->topic, o->alias_only ? 0 : m->topic_len},
	    .packet_id = pid,
	    .payload = m->payload,
	    .payload_len = m->payload_len,
	};
	p.props.data = pbuf;
	p.props.len = (uint32_t)b.len;
	size_t hcap = 5 + 2 + (size_t)m->topic_len + 2 + 4 + b.len;
	if (hcap > sizeof(hstack))
		hbuf = xmalloc(hcap);
	int n = codec_v5_encode_publish_header(&p, hbuf, hcap, NULL);
	if (n < 0)
		goto out;
	if (o->max_packet && (uint64_t)n + m->payload_len > o->max_packet) {
		rc = MESSAGE_TOO_LARGE;
		goto out;
	}
	evbuffer_add(out, hbuf, (size_t)n);
	message_write_payload(m, out);
	rc = 0;
out:
	if (pbuf != pstack)
		free(pbuf);
	if (hbuf != hstack)
		free(hbuf);
	return rc;
}

struct cairn_msg_rec message_rec(const struct message *m)
{
	return (struct cairn_msg_rec){
	    .msg_id = m->id,
	    .topic = m->topic,
	    .payload = m->payload,
	    .payload_len = m->payload_len,
	    .qos = m->qos,
	    .retain = m->retain,
	    .expires_at = m->expires_at,
	    .props = m->props,
	    .props_len = m->props_len,
	    .will_serial = m->will_serial,
	};
}

struct message *message_from_log(const struct cairn_log_entry *e)
{
	const struct cairn_msg_rec *r = &e->msg;
	struct message *m =
	    message_new(r->topic, strlen(r->topic), r->payload, r->payload_len, r->qos, r->retain);

	if (r->props_len)
		message_set_props(m, r->props, r->props_len);
	m->expires_at = r->expires_at;
	m->from_log = true;
	m->log_ms = e->pos.ms;
	m->log_seq = e->pos.seq;
	return m;
}
