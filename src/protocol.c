/*
 * Handlers for the packets a client sends. Each one validates what the
 * codec leaves to the server, changes the session through client.c and the
 * router, and answers through client_send_ordered, so an acknowledgement
 * that promises storage waits for the commit.
 */
#include "protocol.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/store.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "gate.h"
#include "log.h"
#include "message.h"
#include "qos.h"
#include "router.h"
#include "security.h"
#include "server.h"
#include "store.h"
#include "topic.h"
#include "util.h"

static void protocol_send_connack(struct conn *cn, bool sp, uint8_t rc)
{
	uint8_t b[CODEC_CONNACK_LEN];
	int n = codec_encode_connack(sp, rc, b, sizeof(b));
	assert(n == CODEC_CONNACK_LEN);
	(void)n;
	if (rc == CODEC_CONNACK_ACCEPTED)
		conn_write(cn, b, sizeof(b));
	else {
		static const char *why[] = {"",
					    "unacceptable protocol version",
					    "identifier rejected",
					    "server unavailable",
					    "bad user name or password",
					    "not authorized"};
		conn_refuse(cn, b, sizeof(b), why[rc]);
	}
}

/* $SYS and $CONTROL belong to the broker: no client publishes there, as
 * a message or as a will, whatever the ACL says. */
static bool protocol_topic_reserved(const struct codec_str *t)
{
	return (t->len >= 4 && memcmp(t->ptr, "$SYS", 4) == 0) ||
	       (t->len >= 8 && memcmp(t->ptr, "$CONTROL", 8) == 0);
}

/*
 * Authentication, before the will or the session is touched: a refused
 * client gets CONNACK 4 or 5 and the socket closes [MQTT-3.2.2-5], and
 * nothing it sent after the CONNECT is read [MQTT-3.1.4-5].
 * The refusal is logged with the client id, username and address (never
 * the password) and counted. Returns 0 if the client may go on.
 */
/* Whether the ACL lets the client write its will topic. */
static bool protocol_will_allowed(const struct security *s, const char *id, size_t id_len,
				  const char *username, const struct codec_str *topic)
{
	if (!s->acl)
		return true;
	char *cid = xstrndup(id, id_len); /* the ACL wants C strings */
	bool ok = security_allows(s, cid, username, topic->ptr, topic->len, ACL_WRITE);
	free(cid);
	return ok;
}

static int protocol_login(struct server *srv, struct conn *cn, const struct codec_connect *p,
			  const char *id, size_t id_len, char **username)
{
	const struct config_listener *l = conn_listener(cn);
	const struct security *s = security_for(&srv->security, l);
	const char *why = "";
	int rc;
	*username = NULL;
	if (l && (l->tls.use_identity_as_username || l->tls.use_subject_as_username)) {
		/* The certificate verified in the handshake is the login, and
		 * its name the username; the password file is not asked (as in
		 * Mosquitto). */
		const char *u = conn_tls_username(cn);
		why = "the client certificate gives no username";
		rc = u ? SECURITY_LOGIN_OK : SECURITY_LOGIN_NOT_AUTHORIZED;
		if (u)
			*username = xstrdup(u);
	} else {
		rc = security_login(s, p, &why);
		if (rc == SECURITY_LOGIN_OK && p->has_username)
			*username = xstrndup(p->username.ptr, p->username.len);
	}
	if (rc == SECURITY_LOGIN_OK)
		return 0;
	char pid[160], puser[160];
	security_printable(pid, sizeof(pid), id, id_len);
	security_printable(puser, sizeof(puser), p->username.ptr,
			   p->has_username ? p->username.len : 0);
	srv->stats.auth_failures++;
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "login refused: client %s, username %s%s%s, from %s: %s (CONNACK %d)", pid,
		  p->has_username ? "'" : "(none)", puser, p->has_username ? "'" : "",
		  conn_addr(cn), why, rc);
	protocol_send_connack(cn, false, (uint8_t)rc);
	return -1;
}

static void protocol_connect(struct server *srv, struct conn *cn, const struct codec_connect *p)
{
	const struct config *cfg = srv->cfg;
	char idbuf[64];
	const char *id = p->client_id.ptr;
	size_t id_len = p->client_id.len;

	if (id_len == 0) {
		if (!p->clean_session) {
			protocol_send_connack(cn, false, CODEC_CONNACK_ID_REJECTED);
			return;
		}
		id_len = (size_t)snprintf(idbuf, sizeof(idbuf), "cairn-auto-%llx-%llx",
					  (unsigned long long)conn_accepted_at(cn),
					  (unsigned long long)++srv->anon_counter);
		id = idbuf;
	}
	char *username;
	if (protocol_login(srv, cn, p, id, id_len, &username) != 0)
		return;
	/* The codec checked the will topic as it checks a PUBLISH's. */
	if (p->will_flag && !topic_levels_ok(p->will_topic.ptr, p->will_topic.len)) {
		free(username);
		conn_close(cn, "invalid will topic", false);
		return;
	}
	if (!p->clean_session && !store_is_healthy(srv->store) &&
	    !server_get_known_client(srv, id, id_len)) {
		/* A new persistent session would stage writes that cannot
		 * commit; queueing them without bound is worse than asking the
		 * client to come back (3.1.1: server unavailable). A session
		 * the store already holds may resume: it is there to be kept. */
		log_write(srv->log, LOG_LEVEL_WARNING,
			  "connection from %s refused: the store is failing, no new persistent "
			  "session can be kept",
			  conn_addr(cn));
		free(username);
		protocol_send_connack(cn, false, CODEC_CONNACK_UNAVAILABLE);
		return;
	}
	const struct security *sec = security_for(&srv->security, conn_listener(cn));
	if (p->will_flag && (protocol_topic_reserved(&p->will_topic) ||
			     !protocol_will_allowed(sec, id, id_len, username, &p->will_topic))) {
		log_write(srv->log, LOG_LEVEL_NOTICE,
			  "connection from %s refused: the will topic is not writable",
			  conn_addr(cn));
		free(username);
		protocol_send_connack(cn, false, CODEC_CONNACK_NOT_AUTHORIZED);
		return;
	}

	bool session_present = false;
	struct client *c = server_get_known_client(srv, id, id_len);
	if (c && c->conn) {
		conn_close(c->conn, "session taken over by a new connection", true);
		/* A clean session ended with its connection. */
		c = server_get_known_client(srv, id, id_len);
	}
	if (c && (p->clean_session || c->clean)) {
		client_discard(c);
		c = NULL;
	}
	if (c) {
		session_present = true;
	} else {
		c = client_new(srv, id, id_len, p->clean_session);
		server_add_client(srv, c);
		client_unref(c); /* the server's map holds it */
	}
	client_attach(c, cn);
	client_set_identity(c, username, sec);
	if (c->will) {
		message_unref(c->will);
		c->will = NULL;
	}
	if (p->will_flag)
		c->will = message_new(p->will_topic.ptr, p->will_topic.len,
				      (const uint8_t *)p->will_payload.ptr, p->will_payload.len,
				      p->will_qos, p->will_retain);
	uint16_t ka = p->keepalive;
	if (cfg->max_keepalive < 65535 && (ka == 0 || ka > cfg->max_keepalive))
		ka = cfg->max_keepalive;
	conn_accepted(cn, ka); /* conn.c enforces 1.5 x ka */
	client_store_session(c, true);
	srv->stats.clients_connected++;
	char drops[64] = "";
	if (c->dropped > 0)
		snprintf(drops, sizeof(drops), ", %llu messages dropped from its queue so far",
			 (unsigned long long)c->dropped);
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "client %s connected from %s (protocol %s, clean_session %d, keepalive %u%s%s)",
		  c->id, conn_addr(cn), p->protocol_level == 3 ? "3.1" : "3.1.1", p->clean_session,
		  ka, session_present ? ", session resumed" : "", drops);
	protocol_send_connack(cn, session_present, CODEC_CONNACK_ACCEPTED);
	client_pump(c);
}

static void protocol_publish(struct server *srv, struct conn *cn, struct client *c,
			     const struct codec_publish *p)
{
	/* The codec checked UTF-8, emptiness and wildcards; levels remain. */
	if (!topic_levels_ok(p->topic.ptr, p->topic.len)) {
		conn_close(cn, "invalid topic name in PUBLISH", true);
		return;
	}
	if (p->qos == 2 && qos_in_has(&c->in_qos2, p->packet_id)) {
		/* A resend before PUBREL: acknowledge again, deliver nothing. */
		client_send_ack(c, CODEC_PUBREC, p->packet_id, false);
		return;
	}
	if (protocol_topic_reserved(&p->topic) ||
	    !security_allows(c->sec, c->id, c->username, p->topic.ptr, p->topic.len, ACL_WRITE)) {
		/* 3.1.1 lets the server acknowledge and drop, or close; a
		 * client that keeps publishing where it may not is answered
		 * like any other, so it learns nothing of the ACL and keeps
		 * its connection for the topics it may use. */
		srv->stats.acl_denied++;
		log_write(srv->log, LOG_LEVEL_INFO,
			  "client %s: PUBLISH to '%.*s' denied by the ACL", c->id,
			  (int)p->topic.len, p->topic.ptr);
		if (p->qos > 0)
			client_send_ack(c, p->qos == 1 ? CODEC_PUBACK : CODEC_PUBREC, p->packet_id,
					false);
		return;
	}
	bool staged = false;
	if (p->qos == 2) {
		qos_in_add(&c->in_qos2, p->packet_id);
		if (!c->clean) {
			struct cairn_inflight_in_rec r = {c->id, p->packet_id};
			store_inflight_in_put(srv->store, &r);
			staged = true;
		}
	}
	struct message *m =
	    message_new(p->topic.ptr, p->topic.len, p->payload, p->payload_len, p->qos, p->retain);
	if (p->retain && c->sec->acl)
		message_set_source(m, c->id, c->username, c->sec);
	srv->stats.msgs_received++;
	if (router_publish(srv->router, m))
		staged = true;
	message_unref(m);
	if (p->qos > 0)
		client_send_ack(c, p->qos == 1 ? CODEC_PUBACK : CODEC_PUBREC, p->packet_id, staged);
}

static void protocol_pubrel(struct client *c, uint16_t pid)
{
	/* PUBCOMP frees the id for a new message: it goes out only once the
	 * store has forgotten the id, or a crash would bring it back and the
	 * next message under that id would be taken for a resend. */
	bool stored = qos_in_remove(&c->in_qos2, pid) && !c->clean;
	if (stored)
		store_inflight_in_delete(c->srv->store, c->id, pid);
	client_send_ack(c, CODEC_PUBCOMP, pid, stored);
}

/*
 * SUBSCRIBE: one walk over the list grants or refuses each filter, then the
 * SUBACK goes out (after the commit for a persistent session, or behind
 * packets already waiting for one), followed by the retained messages of
 * every granted filter.
 */
static void protocol_subscribe(struct server *srv, struct client *c, const struct codec_list *l)
{
	size_t n_max = l->count ? l->count : 1;
	uint8_t *codes = xmalloc(n_max);
	struct codec_str *granted = xmalloc(n_max * sizeof(*granted));
	/* The ACL's decisions for this client and packet (NULL: no ACL). */
	struct acl_view *av = acl_view_new(c->sec->acl, c->id, c->username);
	uint32_t pos = 0, n = 0;
	struct codec_str f;
	uint8_t qos;
	while (codec_list_next(CODEC_SUBSCRIBE, l, &pos, &f, &qos)) {
		/* A shared subscription is held to the ACL by its filter. */
		struct topic_subfilter sf;
		if (topic_subfilter_parse(f.ptr, f.len, &sf) != 0) {
			log_write(srv->log, LOG_LEVEL_INFO, "client %s: refused filter '%.*s'",
				  c->id, (int)f.len, f.ptr);
			codes[n] = CODEC_SUBACK_FAILURE;
		} else if (av != NULL &&
			   !acl_view_may_subscribe(av, sf.filter, sf.filter_len, NULL)) {
			/* Nothing the filter can match is readable. */
			srv->stats.acl_denied++;
			log_write(
			    srv->log, LOG_LEVEL_INFO,
			    "client %s: filter '%.*s' refused: the ACL lets it read nothing there",
			    c->id, (int)f.len, f.ptr);
			codes[n] = CODEC_SUBACK_FAILURE;
		} else {
			codes[n] = client_subscribe(c, f.ptr, f.len, qos);
		}
		granted[n++] = f;
	}
	acl_view_free(av);
	/* SUBACK: fixed header (<= 5) + packet id + one code per filter. It
	 * is smaller than the SUBSCRIBE it answers, so it always encodes. */
	size_t cap = 7 + (size_t)n;
	uint8_t *suback = xmalloc(cap);
	int len = codec_encode_suback(l->packet_id, codes, n, suback, cap);
	assert(len > 0);
	bool defer = !c->clean || c->deferred > 0;
	struct gate *gate = defer ? gate_new() : NULL;
	struct gate_wait *w = NULL;
	if (defer)
		w = gate_wait_new(c, suback, (size_t)len, gate);
	else
		conn_write(c->conn, suback, (size_t)len);
	/* No retained messages for a shared subscription: only a new
	 * non-shared one is sent them (MQTT 5.0 3.3.1.3, 4.8.2). */
	for (uint32_t i = 0; i < n; i++)
		if (codes[i] != CODEC_SUBACK_FAILURE &&
		    !topic_is_shared(granted[i].ptr, granted[i].len))
			router_send_retained(srv->router, c, granted[i].ptr, granted[i].len,
					     codes[i], gate);
	if (w) {
		gate_wait_add_target(w, c);
		gate_wait_submit(w, srv->store);
		gate_unref(gate);
	}
	free(suback);
	free(granted);
	free(codes);
}

static void protocol_unsubscribe(struct client *c, const struct codec_list *l)
{
	uint32_t pos = 0;
	struct codec_str f;
	uint8_t qos;
	while (codec_list_next(CODEC_UNSUBSCRIBE, l, &pos, &f, &qos))
		client_unsubscribe(c, f.ptr, f.len);
	/* Like SUBACK: a persistent session's change is stored first. */
	client_send_ack(c, CODEC_UNSUBACK, l->packet_id, !c->clean);
}

static void protocol_packet(void *arg, struct conn *cn, const struct codec_packet *pk)
{
	struct server *srv = arg;
	struct client *c = conn_owner(cn);
	if (pk->type == CODEC_CONNECT) {
		if (c) {
			conn_close(cn, "second CONNECT", true);
			return;
		}
		protocol_connect(srv, cn, &pk->u.connect);
		return;
	}
	/* conn.c lets nothing but CONNECT through before conn_accepted(). */
	switch (pk->type) {
	case CODEC_PUBLISH:
		protocol_publish(srv, cn, c, &pk->u.publish);
		break;
	case CODEC_PUBACK:
		client_handle_ack(c, pk->u.packet_id, QOS_OUT_PUBACK);
		break;
	case CODEC_PUBREC:
		client_handle_ack(c, pk->u.packet_id, QOS_OUT_PUBREC);
		break;
	case CODEC_PUBREL:
		protocol_pubrel(c, pk->u.packet_id);
		break;
	case CODEC_PUBCOMP:
		client_handle_ack(c, pk->u.packet_id, QOS_OUT_PUBCOMP);
		break;
	case CODEC_SUBSCRIBE:
		protocol_subscribe(srv, c, &pk->u.list);
		break;
	case CODEC_UNSUBSCRIBE:
		protocol_unsubscribe(c, &pk->u.list);
		break;
	case CODEC_PINGREQ: {
		uint8_t pong[CODEC_PINGRESP_LEN];
		if (codec_encode_pingresp(pong, sizeof(pong)) == CODEC_PINGRESP_LEN)
			conn_write(cn, pong, sizeof(pong));
		break;
	}
	case CODEC_DISCONNECT:
		conn_close(cn, "client sent DISCONNECT", false);
		break;
	default:
		conn_close(cn, "protocol violation: packet type only a server may send", true);
		break;
	}
}

static void protocol_closed(void *arg, struct conn *cn, const char *reason, bool will_due)
{
	struct server *srv = arg;
	struct client *c = conn_owner(cn);
	if (!c)
		return;
	log_write(srv->log, LOG_LEVEL_NOTICE, "client %s disconnected from %s: %s", c->id,
		  conn_addr(cn), reason);
	client_detach(c, cn, will_due);
}

static void protocol_drained(void *arg, struct conn *cn)
{
	(void)arg;
	struct client *c = conn_owner(cn);
	if (c)
		client_pump(c);
}

const struct conn_hooks protocol_hooks = {
    .packet = protocol_packet,
    .closed = protocol_closed,
    .drained = protocol_drained,
};
