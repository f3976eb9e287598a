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

#include "authmeth.h"
#include "cairn/store.h"
#include "client.h"
#include "cluster.h"
#include "cluster_share.h"
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

/* 5.0 CONNACK reason codes beyond the 3.1.1 return codes' (5.0 section
 * 3.2.2.2). */
#define PROTOCOL_RC_BAD_AUTH_METHOD 0x8C
#define PROTOCOL_RC_PAYLOAD_FORMAT  0x99
/* Other 5.0 reason codes the broker sends on acknowledgements. */
#define PROTOCOL_RC_NO_SUBSCRIBERS       0x10
#define PROTOCOL_RC_NO_SUBSCRIPTION      0x11
#define PROTOCOL_RC_UNSPECIFIED          0x80
#define PROTOCOL_RC_SHARED_NOT_SUPPORTED 0x9E
#define PROTOCOL_RC_NOT_AUTHORIZED       0x87
#define PROTOCOL_RC_FILTER_INVALID       0x8F
#define PROTOCOL_RC_PID_NOT_FOUND        0x92
#define PROTOCOL_RC_QUOTA_EXCEEDED       0x97
/* Authenticate Reason Codes (5.0 section 3.15.2.1). */
#define PROTOCOL_RC_AUTH_SUCCESS  0x00
#define PROTOCOL_RC_AUTH_CONTINUE 0x18
#define PROTOCOL_RC_AUTH_REAUTH   0x19

/* What an enhanced authentication method concluded, for the CONNECT it
 * ran on (NULL when the CONNECT named no method). */
struct protocol_authed {
	const struct authmeth *m;
	const char *username; /* authenticated, or NULL: anonymous */
	const uint8_t *data;  /* final Authentication Data for the CONNACK, or NULL */
	size_t data_len;
};

/* The 5.0 reason code for a 3.1.1 CONNACK return code. */
static uint8_t protocol_connack_reason5(uint8_t rc)
{
	static const uint8_t map[] = {0x00, 0x84, 0x85, 0x88, 0x86, 0x87};
	return rc < sizeof(map) ? map[rc] : PROTOCOL_RC_UNSPECIFIED;
}

/*
 * Refuse a CONNECT: the CONNACK in the client's version (reason5 for a 5.0
 * client, or the 5.0 code of rc when 0), then the socket closes.
 */
static void protocol_refuse(struct conn *cn, uint8_t rc, uint8_t reason5)
{
	static const char *why[] = {"",
				    "unacceptable protocol version",
				    "identifier rejected",
				    "server unavailable",
				    "bad user name or password",
				    "not authorized"};
	uint8_t b[16];
	int n;
	if (conn_version(cn) == CODEC_V5) {
		if (!reason5)
			reason5 = protocol_connack_reason5(rc);
		n = codec_v5_encode_connack(false, reason5, NULL, 0, b, sizeof(b));
	} else {
		n = codec_encode_connack(false, rc, b, sizeof(b));
	}
	assert(n > 0);
	conn_refuse(cn, b, (size_t)n,
		    reason5 == PROTOCOL_RC_BAD_AUTH_METHOD  ? "authentication method not supported"
		    : reason5 == PROTOCOL_RC_PAYLOAD_FORMAT ? "will payload is not UTF-8"
		    : reason5 == CONN_RC_TOPIC_NAME_INVALID ? "invalid will topic"
		    : rc < 6                                ? why[rc]
							    : "refused");
}

/* The accepting 3.1.1 CONNACK (protocol_connack5 is the 5.0 one). */
static void protocol_connack311(struct conn *cn, bool sp)
{
	uint8_t b[CODEC_CONNACK_LEN];
	int n = codec_encode_connack(sp, CODEC_CONNACK_ACCEPTED, b, sizeof(b));
	assert(n == CODEC_CONNACK_LEN);
	(void)n;
	conn_write(cn, b, sizeof(b));
}

/* The broker's receive maximum: QoS 1/2 PUBLISHes a 5.0 client may have
 * unanswered (max_inflight_messages, as Mosquitto sends it). */
static uint16_t protocol_receive_max(const struct config *cfg)
{
	uint32_t m = cfg->max_inflight_messages;
	return m == 0 || m > 65535 ? 65535 : (uint16_t)m;
}

/* The accepting 5.0 CONNACK with the properties that tell the client the
 * broker's limits and capabilities (5.0 section 3.2.2.3). */
static void protocol_connack5(struct server *srv, struct conn *cn, bool sp, const char *assigned,
			      size_t assigned_len, bool ka_capped, uint16_t ka,
			      const struct protocol_authed *authed)
{
	const struct config *cfg = srv->cfg;
	uint8_t stack[256]; /* the assigned id is cairn's own, under 64 bytes */
	size_t cap = sizeof(stack);
	if (authed) /* the method's name and final data come on top */
		cap += strlen(authed->m->name) + authed->data_len + 16;
	uint8_t *pb = cap <= sizeof(stack) ? stack : xmalloc(cap);
	struct codec_propbuf b;
	codec_propbuf_init(&b, pb, cap);
	uint16_t rm = protocol_receive_max(cfg);
	if (rm != 65535)
		codec_propbuf_add_int(&b, CODEC_PROP_RECEIVE_MAX, rm);
	codec_propbuf_add_int(&b, CODEC_PROP_RETAIN_AVAILABLE, 1);
	if (cfg->max_packet_size <= CODEC_MAX_REMAINING)
		codec_propbuf_add_int(&b, CODEC_PROP_MAX_PACKET_SIZE, cfg->max_packet_size);
	if (cfg->max_topic_alias)
		codec_propbuf_add_int(&b, CODEC_PROP_TOPIC_ALIAS_MAX, cfg->max_topic_alias);
	codec_propbuf_add_int(&b, CODEC_PROP_WILDCARD_SUB_AVAILABLE, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_SUB_ID_AVAILABLE, 1);
	codec_propbuf_add_int(&b, CODEC_PROP_SHARED_SUB_AVAILABLE,
			      srv->cluster && !cluster_share_available(srv) ? 0 : 1);
	if (ka_capped)
		codec_propbuf_add_int(&b, CODEC_PROP_SERVER_KEEPALIVE, ka);
	if (assigned)
		codec_propbuf_add_str(&b, CODEC_PROP_ASSIGNED_CLIENT_ID, assigned, assigned_len);
	if (authed) {
		/* The success repeats the CONNECT's method [MQTT5-4.12.0-5]. */
		codec_propbuf_add_str(&b, CODEC_PROP_AUTH_METHOD, authed->m->name,
				      strlen(authed->m->name));
		if (authed->data)
			codec_propbuf_add_str(&b, CODEC_PROP_AUTH_DATA, authed->data,
					      authed->data_len);
	}
	assert(b.err == CODEC_OK);
	uint8_t ostack[sizeof(stack) + 16];
	uint8_t *out = pb == stack ? ostack : xmalloc(cap + 16);
	int n = codec_v5_encode_connack(sp, 0, pb, b.len, out, cap + 16);
	assert(n > 0);
	conn_write(cn, out, (size_t)n);
	if (pb != stack) {
		free(out);
		free(pb);
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
			  const char *id, size_t id_len, char **username,
			  const struct protocol_authed *authed)
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
	} else if (authed) {
		/* The enhanced authentication method checked the client: its
		 * username is the one the method names, held to the ACL like
		 * a password user; none is an anonymous login. */
		why = "the authentication method names no user and anonymous clients are not "
		      "allowed";
		rc = authed->username || s->allow_anonymous ? SECURITY_LOGIN_OK
							    : SECURITY_LOGIN_NOT_AUTHORIZED;
		if (authed->username)
			*username = xstrdup(authed->username);
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
	protocol_refuse(cn, (uint8_t)rc, 0);
	return -1;
}

static void protocol_auth_begin(struct server *srv, struct conn *cn, const struct codec_connect *p);
static void protocol_claim(struct server *srv, struct conn *cn, const char *id, size_t id_len,
			   bool assigned, bool clean, char *username,
			   const struct protocol_authed *authed);
static void protocol_connect_session(struct server *srv, struct conn *cn,
				     const struct codec_connect *p,
				     const struct protocol_authed *authed, const char *id,
				     size_t id_len, bool assigned, char *username,
				     const struct security *sec);
static void protocol_cork_until_stored(struct server *srv, struct client *c, struct conn *cn);

static void protocol_connect(struct server *srv, struct conn *cn, const struct codec_connect *p,
			     const struct protocol_authed *authed)
{
	char idbuf[64];
	const char *id = p->client_id.ptr;
	size_t id_len = p->client_id.len;
	bool v5 = p->protocol_level == CODEC_V5;
	/* 5.0: the session outlives the connection by its expiry interval
	 * (0: it ends with it); 3.1.1: clean_session 0 keeps it. */
	bool persistent = v5 ? p->props.session_expiry != 0 : !p->clean_session;
	bool assigned = false;

	if (v5 && CODEC_PROP_HAS(&p->props, CODEC_PROP_AUTH_METHOD) && !authed) {
		/* Enhanced authentication first: the CONNECT goes on once the
		 * method has said who the client is (5.0 section 4.12). */
		protocol_auth_begin(srv, cn, p);
		return;
	}
	if (v5 && p->will_flag && p->will_props.payload_format == 1 &&
	    !codec_utf8_valid(p->will_payload.ptr, p->will_payload.len)) {
		protocol_refuse(cn, CODEC_CONNACK_NOT_AUTHORIZED, PROTOCOL_RC_PAYLOAD_FORMAT);
		return;
	}
	if (id_len == 0) {
		if (!v5 && !p->clean_session) {
			protocol_refuse(cn, CODEC_CONNACK_ID_REJECTED, 0);
			return;
		}
		id_len = (size_t)snprintf(idbuf, sizeof(idbuf), "cairn-auto-%llx-%llx",
					  (unsigned long long)conn_accepted_at(cn),
					  (unsigned long long)++srv->anon_counter);
		id = idbuf;
		assigned = true;
	}
	char *username;
	if (protocol_login(srv, cn, p, id, id_len, &username, authed) != 0)
		return;
	/* The codec checked the will topic as it checks a PUBLISH's. */
	if (p->will_flag && !topic_levels_ok(p->will_topic.ptr, p->will_topic.len)) {
		free(username);
		if (v5) /* 5.0 says why: Topic Name invalid */
			protocol_refuse(cn, CODEC_CONNACK_NOT_AUTHORIZED,
					CONN_RC_TOPIC_NAME_INVALID);
		else
			conn_close(cn, "invalid will topic", false);
		return;
	}
	if (persistent && !store_is_healthy(srv->store) &&
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
		protocol_refuse(cn, CODEC_CONNACK_UNAVAILABLE, 0);
		return;
	}
	const struct security *sec = security_for(&srv->security, conn_listener(cn));
	if (p->will_flag && (protocol_topic_reserved(&p->will_topic) ||
			     !protocol_will_allowed(sec, id, id_len, username, &p->will_topic))) {
		log_write(srv->log, LOG_LEVEL_NOTICE,
			  "connection from %s refused: the will topic is not writable",
			  conn_addr(cn));
		free(username);
		protocol_refuse(cn, CODEC_CONNACK_NOT_AUTHORIZED, 0);
		return;
	}
	if (srv->cluster) {
		/* The session may be another node's: claim it first. */
		protocol_claim(srv, cn, id, id_len, assigned, p->clean_session, username, authed);
		return;
	}
	protocol_connect_session(srv, cn, p, authed, id, id_len, assigned, username, sec);
}

/*
 * The CONNECT's session: taken over, resumed or new, then the CONNACK.
 * username (owned) is the login's; in cluster mode the session's claim is
 * done by now.
 */
static void protocol_connect_session(struct server *srv, struct conn *cn,
				     const struct codec_connect *p,
				     const struct protocol_authed *authed, const char *id,
				     size_t id_len, bool assigned, char *username,
				     const struct security *sec)
{
	const struct config *cfg = srv->cfg;
	bool v5 = p->protocol_level == CODEC_V5;
	bool persistent = v5 ? p->props.session_expiry != 0 : !p->clean_session;
	bool session_present = false;
	struct client *c = server_get_known_client(srv, id, id_len);
	if (c && c->conn) {
		/* The session goes on with this connection: not parked. (A
		 * clean one ends with the old connection: the reference keeps
		 * c readable until the flag is down.) */
		client_ref(c);
		c->taking_over = true;
		conn_disconnect(c->conn, CONN_RC_SESSION_TAKEN_OVER,
				"session taken over by a new connection", true);
		c->taking_over = false;
		client_unref(c);
		/* A clean session ended with its connection. */
		c = server_get_known_client(srv, id, id_len);
	}
	if (c && (p->clean_session || c->clean)) {
		client_discard(c); /* a delayed will goes out now [MQTT5-3.1.2-8] */
		c = NULL;
	}
	if (c) {
		session_present = true;
	} else {
		c = client_new(srv, id, id_len, !persistent);
		server_add_client(srv, c);
		client_unref(c); /* the server's map holds it */
	}
	client_attach(c, cn);
	client_set_identity(c, username, sec);
	if (c->will) {
		message_unref(c->will);
		c->will = NULL;
	}
	c->version = p->protocol_level;
	c->will_delay = 0;
	if (v5) {
		c->expiry = p->props.session_expiry;
		c->problem_info = p->props.request_problem_info;
		c->recv_max = p->props.receive_max;
		c->max_packet = p->props.max_packet_size;
		c->alias_out_max = p->props.topic_alias_max;
	} else {
		c->expiry = persistent ? cfg->persistent_client_expiration : 0;
		c->problem_info = true;
		c->recv_max = 0;
		c->max_packet = 0;
		c->alias_out_max = 0;
	}
	if (p->will_flag) {
		c->will = message_new(p->will_topic.ptr, p->will_topic.len,
				      (const uint8_t *)p->will_payload.ptr, p->will_payload.len,
				      p->will_qos, p->will_retain);
		if (v5 && p->will_props.len) {
			/* Kept as received but for the delay, which is the
			 * session's [MQTT5-3.1.3-9]; forwarded with the will. */
			c->will_delay = p->will_props.will_delay;
			uint8_t *wp = xmalloc(p->will_props.len);
			int n = codec_props_filter(p->will_props.data, p->will_props.len,
						   (uint64_t)1 << CODEC_PROP_WILL_DELAY, wp,
						   p->will_props.len);
			if (n > 0)
				message_set_props(c->will, wp, (size_t)n);
			free(wp);
		}
	}
	uint16_t ka = p->keepalive;
	bool ka_capped = false;
	if (cfg->max_keepalive < 65535 && (ka == 0 || ka > cfg->max_keepalive)) {
		ka = cfg->max_keepalive;
		ka_capped = true;
	}
	conn_accepted(cn, ka); /* conn.c enforces 1.5 x ka */
	client_store_session(c, true);
	if (srv->cluster && c->stored)
		protocol_cork_until_stored(srv, c, cn);
	srv->stats.clients_connected++;
	char drops[64] = "";
	if (c->dropped > 0)
		snprintf(drops, sizeof(drops), ", %llu messages dropped from its queue so far",
			 (unsigned long long)c->dropped);
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "client %s connected from %s (protocol %s, %s %d, keepalive %u%s%s)", c->id,
		  conn_addr(cn),
		  v5                       ? "5.0"
		  : p->protocol_level == 3 ? "3.1"
					   : "3.1.1",
		  v5 ? "clean_start" : "clean_session", p->clean_session, ka,
		  session_present ? ", session resumed" : "", drops);
	if (v5)
		protocol_connack5(srv, cn, session_present, assigned ? id : NULL, id_len, ka_capped,
				  ka, authed);
	else
		protocol_connack311(cn, session_present);
	client_pump(c);
}

/* ---- cluster mode: a CONNECT waiting for its session's claim ---- */

/* In cluster mode the CONNACK of a stored session goes out once the
 * session record is committed (with what follows it, in order): a node
 * that dies right after it leaves the session, and its will, in the store
 * for the node the client reconnects to. */
struct protocol_cork {
	struct client *c; /* a reference */
	uint64_t conn_id;
};

static void protocol_uncork(void *arg, bool durable)
{
	struct protocol_cork *k = arg;
	(void)durable;
	if (k->c->conn && conn_id(k->c->conn) == k->conn_id)
		conn_set_corked(k->c->conn, false);
	client_unref(k->c);
	free(k);
}

static void protocol_cork_until_stored(struct server *srv, struct client *c, struct conn *cn)
{
	struct protocol_cork *k = xmalloc(sizeof(*k));
	k->c = client_ref(c);
	k->conn_id = conn_id(cn);
	conn_set_corked(cn, true);
	store_after_commit(srv->store, protocol_uncork, k);
}

/* What the CONNECT needs to go on once the claim is done: the packet (the
 * codec decodes it again), the login, and the authentication's result. */
struct protocol_resume {
	struct server *srv;
	uint8_t hdr;
	uint8_t *body;
	size_t len;
	char *id;
	size_t id_len;
	bool assigned;
	char *username;
	bool authed;
	const struct authmeth *m;
	char *auth_user;
	uint8_t *auth_data;
	size_t auth_data_len;
};

static void protocol_resume_free(void *arg)
{
	struct protocol_resume *r = arg;
	free(r->body);
	free(r->id);
	free(r->username);
	free(r->auth_user);
	free(r->auth_data);
	free(r);
}

static void protocol_claimed(struct server *srv, struct conn *cn, void *arg,
			     enum cluster_claim_result result)
{
	struct protocol_resume *r = arg;
	if (result != CLUSTER_CLAIMED) {
		log_write(srv->log, LOG_LEVEL_NOTICE, "connection from %s refused: %s",
			  conn_addr(cn),
			  result == CLUSTER_OVERTAKEN
			      ? "the session was claimed by another node meanwhile"
			      : "the session cannot be claimed (store unavailable)");
		protocol_refuse(cn, CODEC_CONNACK_UNAVAILABLE, 0);
		protocol_resume_free(r);
		return;
	}
	struct codec_packet pk;
	int rc = codec_decode_v(conn_version(cn), r->hdr, r->body, (uint32_t)r->len, &pk);
	assert(rc == CODEC_OK); /* it decoded before */
	(void)rc;
	struct protocol_authed a = {r->m, r->auth_user, r->auth_data, r->auth_data_len};
	char *username = r->username;
	r->username = NULL;
	protocol_connect_session(srv, cn, &pk.u.connect, r->authed ? &a : NULL, r->id, r->id_len,
				 r->assigned, username,
				 security_for(&srv->security, conn_listener(cn)));
	protocol_resume_free(r);
}

static void protocol_claim(struct server *srv, struct conn *cn, const char *id, size_t id_len,
			   bool assigned, bool clean, char *username,
			   const struct protocol_authed *authed)
{
	struct protocol_resume *r = xcalloc(1, sizeof(*r));
	const uint8_t *body;
	r->srv = srv;
	if (authed) {
		/* The CONNECT is the one the method kept, not the AUTH at hand. */
		const struct authmeth_session *s = conn_auth(cn);
		r->hdr = s->connect_hdr;
		body = s->connect;
		r->len = s->connect_len;
		r->authed = true;
		r->m = authed->m;
		r->auth_user = authed->username ? xstrdup(authed->username) : NULL;
		if (authed->data_len)
			r->auth_data = xmemdup(authed->data, authed->data_len);
		r->auth_data_len = authed->data_len;
	} else {
		bool raw = conn_packet_bytes(cn, &r->hdr, &body, &r->len);
		assert(raw); /* inside the packet hook */
		(void)raw;
	}
	r->body = xmemdup(body, r->len ? r->len : 1);
	r->id = xstrndup(id, id_len);
	r->id_len = id_len;
	r->assigned = assigned;
	r->username = username;
	cluster_claim(srv, cn, id, id_len, clean, protocol_claimed, protocol_resume_free, r);
}

/*
 * A 5.0 PUBLISH's topic alias [MQTT5-3.3.2-7 .. MQTT5-3.3.2-12]: a topic
 * sets (or replaces) the alias, an empty topic uses it. On success *t is
 * the topic to route. Returns 0, or -1 after disconnecting the client.
 */
static int protocol_topic_alias(struct server *srv, struct conn *cn, struct client *c,
				const struct codec_publish *p, struct codec_str *t)
{
	*t = p->topic;
	if (!CODEC_PROP_HAS(&p->props, CODEC_PROP_TOPIC_ALIAS))
		return 0;
	uint16_t a = p->props.topic_alias, max = srv->cfg->max_topic_alias;
	if (a == 0 || a > max) {
		conn_disconnect(cn, CONN_RC_TOPIC_ALIAS_INVALID, "topic alias out of range", true);
		return -1;
	}
	if (!c->alias_in)
		c->alias_in = xcalloc((size_t)max + 1, sizeof(*c->alias_in));
	if (p->topic.len) {
		free(c->alias_in[a]);
		c->alias_in[a] = xstrndup(p->topic.ptr, p->topic.len);
		return 0;
	}
	if (!c->alias_in[a]) {
		conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR, "unknown topic alias", true);
		return -1;
	}
	t->ptr = c->alias_in[a];
	t->len = (uint16_t)strlen(c->alias_in[a]);
	return 0;
}

/* The properties of a 5.0 PUBLISH that travel with the message: all but
 * the topic alias, the message expiry interval (kept as a deadline) and
 * subscription identifiers. */
#define PROTOCOL_PUBLISH_NOT_FORWARDED                                                             \
	(((uint64_t)1 << CODEC_PROP_TOPIC_ALIAS) | ((uint64_t)1 << CODEC_PROP_MESSAGE_EXPIRY) |    \
	 ((uint64_t)1 << CODEC_PROP_SUBSCRIPTION_ID))

static void protocol_publish(struct server *srv, struct conn *cn, struct client *c,
			     const struct codec_publish *p)
{
	bool v5 = c->version == CODEC_V5;
	struct codec_str topic = p->topic;
	enum codec_type ack = p->qos == 1 ? CODEC_PUBACK : CODEC_PUBREC;
	if (v5) {
		if (p->props.sub_id_count > 0) {
			conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR,
					"subscription identifier in a client's PUBLISH", true);
			return; /* [MQTT5-3.3.4-6] */
		}
		if (protocol_topic_alias(srv, cn, c, p, &topic) != 0)
			return;
		bool resend = p->qos == 2 && qos_in_has(&c->in_qos2, p->packet_id);
		if (p->qos > 0 && !resend) {
			if (c->in_unacked >= protocol_receive_max(srv->cfg)) {
				conn_disconnect(cn, CONN_RC_RECEIVE_MAX_EXCEEDED,
						"receive maximum exceeded", true);
				return; /* 5.0 section 3.3.4 */
			}
			c->in_unacked++;
		}
	}
	/* The codec checked UTF-8, emptiness and wildcards; levels remain. */
	if (!topic_levels_ok(topic.ptr, topic.len)) {
		conn_disconnect(cn, CONN_RC_TOPIC_NAME_INVALID, "invalid topic name in PUBLISH",
				true);
		return;
	}
	if (p->qos == 2 && qos_in_has(&c->in_qos2, p->packet_id)) {
		/* A resend before PUBREL: acknowledge again, deliver nothing. */
		client_send_ack(c, CODEC_PUBREC, p->packet_id, false);
		return;
	}
	if (protocol_topic_reserved(&topic) ||
	    !security_allows(c->sec, c->id, c->username, topic.ptr, topic.len, ACL_WRITE)) {
		/* 3.1.1 lets the server acknowledge and drop, or close; a
		 * client that keeps publishing where it may not is answered
		 * like any other, so it learns nothing of the ACL and keeps
		 * its connection for the topics it may use. 5.0 says why. */
		srv->stats.acl_denied++;
		log_write(srv->log, LOG_LEVEL_INFO,
			  "client %s: PUBLISH to '%.*s' denied by the ACL", c->id, (int)topic.len,
			  topic.ptr);
		if (p->qos > 0)
			client_send_ack_rc(c, ack, p->packet_id, PROTOCOL_RC_NOT_AUTHORIZED, false);
		return;
	}
	if (v5 && p->props.payload_format == 1 &&
	    !codec_utf8_valid((const char *)p->payload, p->payload_len)) {
		log_write(srv->log, LOG_LEVEL_INFO,
			  "client %s: PUBLISH to '%.*s' refused: payload format indicator says "
			  "UTF-8, the payload is not",
			  c->id, (int)topic.len, topic.ptr);
		if (p->qos > 0)
			client_send_ack_rc(c, ack, p->packet_id, PROTOCOL_RC_PAYLOAD_FORMAT, false);
		return; /* 5.0 section 3.3.2.3.2 */
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
	    message_new(topic.ptr, topic.len, p->payload, p->payload_len, p->qos, p->retain);
	if (v5 && p->props.len) {
		uint8_t stack[256];
		uint8_t *pb = p->props.len <= sizeof(stack) ? stack : xmalloc(p->props.len);
		int n = codec_props_filter(p->props.data, p->props.len,
					   PROTOCOL_PUBLISH_NOT_FORWARDED, pb, p->props.len);
		if (n > 0)
			message_set_props(m, pb, (size_t)n);
		if (pb != stack)
			free(pb);
		if (CODEC_PROP_HAS(&p->props, CODEC_PROP_MESSAGE_EXPIRY))
			m->expires_at = client_wall_ms(c) + (int64_t)p->props.message_expiry * 1000;
	}
	if (p->retain && c->sec->acl)
		message_set_source(m, c->id, c->username, c->sec);
	srv->stats.msgs_received_qos[p->qos]++;
	srv->stats.payload_in_qos[p->qos] += p->payload_len;
	m->origin = c;
	if (server_publish(srv, m, c))
		staged = true;
	m->origin = NULL;
	message_unref(m);
	if (p->qos == 0)
		return;
	uint8_t reason = 0;
	/* In cluster mode the nodes that route it do not answer: 0. */
	if (v5 && !srv->cluster) {
		size_t matched, full;
		router_last_result(srv->router, &matched, &full);
		if (matched == 0)
			reason = PROTOCOL_RC_NO_SUBSCRIBERS;
		else if (full == matched && !p->retain)
			reason = PROTOCOL_RC_QUOTA_EXCEEDED; /* kept nowhere */
	}
	if (p->qos == 2 && reason >= 0x80) {
		/* A PUBREC that fails ends the exchange [MQTT5-4.3.3-4]: the
		 * client may reuse the id at once, so the broker forgets it (in
		 * the same batch as it was stored) or the next message under it
		 * would be taken for a resend and lost. */
		qos_in_remove(&c->in_qos2, p->packet_id);
		if (!c->clean)
			store_inflight_in_delete(srv->store, c->id, p->packet_id);
	}
	client_send_ack_rc(c, ack, p->packet_id, reason, staged);
}

static void protocol_pubrel(struct client *c, uint16_t pid)
{
	/* PUBCOMP frees the id for a new message: it goes out only once the
	 * store has forgotten the id, or a crash would bring it back and the
	 * next message under that id would be taken for a resend. */
	bool known = qos_in_remove(&c->in_qos2, pid);
	bool stored = known && !c->clean;
	if (stored)
		store_inflight_in_delete(c->srv->store, c->id, pid);
	client_send_ack_rc(c, CODEC_PUBCOMP, pid, known ? 0 : PROTOCOL_RC_PID_NOT_FOUND, stored);
}

/*
 * SUBSCRIBE: one walk over the list grants or refuses each filter, then the
 * SUBACK goes out (after the commit for a persistent session, or behind
 * packets already waiting for one), followed by the retained messages of
 * every granted filter (5.0: as its retain handling says).
 */
static void protocol_subscribe_free(uint8_t *codes, bool *send_retained, struct codec_str *granted,
				    struct acl_view *av)
{
	acl_view_free(av);
	free(granted);
	free(send_retained);
	free(codes);
}

static void protocol_subscribe(struct server *srv, struct client *c, const struct codec_list *l)
{
	bool v5 = c->version == CODEC_V5;
	uint32_t sub_id = v5 && l->props.sub_id_count ? l->props.sub_id : 0;
	size_t n_max = l->count ? l->count : 1;
	uint8_t *codes = xmalloc(n_max);
	bool *send_retained = xmalloc(n_max * sizeof(*send_retained));
	struct codec_str *granted = xmalloc(n_max * sizeof(*granted));
	/* The ACL's decisions for this client and packet (NULL: no ACL). */
	struct acl_view *av = acl_view_new(c->sec->acl, c->id, c->username);
	uint32_t pos = 0, n = 0;
	struct codec_str f;
	uint8_t opts;
	while (codec_list_next(CODEC_SUBSCRIBE, l, &pos, &f, &opts)) {
		bool existed = false;
		if (!v5)
			opts &= 0x03;
		/* A shared subscription is held to the ACL by its filter. */
		struct topic_subfilter sf;
		if (topic_subfilter_parse(f.ptr, f.len, &sf) != 0) {
			log_write(srv->log, LOG_LEVEL_INFO, "client %s: refused filter '%.*s'",
				  c->id, (int)f.len, f.ptr);
			codes[n] = v5 ? PROTOCOL_RC_FILTER_INVALID : CODEC_SUBACK_FAILURE;
		} else if (sf.group != NULL && srv->cluster && !cluster_share_available(srv)) {
			/* A group spans nodes: only a store that reads groups for
			 * the nodes (vtable version 6) can share it. */
			log_write(srv->log, LOG_LEVEL_INFO,
				  "client %s: shared subscription '%.*s' refused: not available "
				  "in cluster mode",
				  c->id, (int)f.len, f.ptr);
			codes[n] = v5 ? PROTOCOL_RC_SHARED_NOT_SUPPORTED : CODEC_SUBACK_FAILURE;
		} else if (sf.group != NULL && (opts & CODEC_SUBOPT_NO_LOCAL)) {
			/* No Local on a shared subscription [MQTT5-3.8.3-4]. */
			protocol_subscribe_free(codes, send_retained, granted, av);
			conn_disconnect(c->conn, CODEC_RC_PROTOCOL_ERROR,
					"No Local on a shared subscription", true);
			return;
		} else if (av != NULL &&
			   !acl_view_may_subscribe(av, sf.filter, sf.filter_len, NULL)) {
			/* Nothing the filter can match is readable. */
			srv->stats.acl_denied++;
			log_write(
			    srv->log, LOG_LEVEL_INFO,
			    "client %s: filter '%.*s' refused: the ACL lets it read nothing there",
			    c->id, (int)f.len, f.ptr);
			codes[n] = v5 ? PROTOCOL_RC_NOT_AUTHORIZED : CODEC_SUBACK_FAILURE;
		} else {
			codes[n] = client_subscribe_opts(c, f.ptr, f.len, opts, sub_id, &existed);
			if (v5 && codes[n] == CODEC_SUBACK_FAILURE)
				codes[n] = PROTOCOL_RC_QUOTA_EXCEEDED;
		}
		/* Retain handling: 0 always, 1 for a new subscription, 2 never
		 * [MQTT5-3.3.1-9, MQTT5-3.3.1-10, MQTT5-3.3.1-11]. */
		uint8_t rh = CODEC_SUBOPT_RETAIN_HANDLING(opts);
		send_retained[n] = codes[n] < 0x80 && (rh == 0 || (rh == 1 && !existed));
		granted[n++] = f;
	}
	acl_view_free(av);
	/* SUBACK: fixed header (<= 5) + packet id + one code per filter (and
	 * an empty property block in 5.0). It is smaller than the SUBSCRIBE
	 * it answers, so it always encodes. */
	size_t cap = 8 + (size_t)n;
	uint8_t *suback = xmalloc(cap);
	int len =
	    v5 ? codec_v5_encode_suback(CODEC_SUBACK, l->packet_id, codes, n, NULL, 0, suback, cap)
	       : codec_encode_suback(l->packet_id, codes, n, suback, cap);
	assert(len > 0);
	bool defer = !c->clean || c->deferred > 0;
	struct gate *gate = defer ? gate_new() : NULL;
	struct gate_wait *w = NULL;
	if (defer)
		w = gate_wait_new(c, suback, (size_t)len, gate);
	else
		conn_write(c->conn, suback, (size_t)len);
	for (uint32_t i = 0; i < n; i++) {
		/* No retained messages for a shared subscription (MQTT 5.0
		 * 4.8.2). */
		if (!send_retained[i] || topic_is_shared(granted[i].ptr, granted[i].len))
			continue;
		/* The retained messages carry this subscription's identifier
		 * alone. */
		router_send_retained(srv->router, c, granted[i].ptr, granted[i].len, codes[i],
				     client_sub_id(c, granted[i].ptr, granted[i].len), gate);
	}
	if (w) {
		gate_wait_add_target(w, c);
		gate_wait_submit(w, srv->store);
		gate_unref(gate);
	}
	free(suback);
	protocol_subscribe_free(codes, send_retained, granted, NULL);
}

static void protocol_unsubscribe(struct client *c, const struct codec_list *l)
{
	uint32_t pos = 0, n = 0;
	struct codec_str f;
	uint8_t qos;
	uint8_t *codes = c->version == CODEC_V5 ? xmalloc(l->count ? l->count : 1) : NULL;
	while (codec_list_next(CODEC_UNSUBSCRIBE, l, &pos, &f, &qos)) {
		bool had = client_unsubscribe(c, f.ptr, f.len);
		if (had && c->srv->cluster)
			cluster_share_left(c->srv, c, f.ptr, f.len);
		if (codes)
			codes[n++] = had ? 0 : PROTOCOL_RC_NO_SUBSCRIPTION;
	}
	/* Like SUBACK: a persistent session's change is stored first. */
	if (!codes) {
		client_send_ack(c, CODEC_UNSUBACK, l->packet_id, !c->clean);
		return;
	}
	size_t cap = 8 + (size_t)n;
	uint8_t *b = xmalloc(cap);
	int len = codec_v5_encode_suback(CODEC_UNSUBACK, l->packet_id, codes, n, NULL, 0, b, cap);
	assert(len > 0);
	client_send_ordered(c, b, (size_t)len, !c->clean);
	free(b);
	free(codes);
}

/* A 5.0 DISCONNECT: any reason but 0x00 keeps the will, and the session expiry
 * interval may change, but not from 0 [MQTT5-3.14.2-2 and 5.0 section
 * 3.14.2.2.2]. */
static void protocol_disconnect5(struct conn *cn, struct client *c, const struct codec_reason *r)
{
	if (CODEC_PROP_HAS(&r->props, CODEC_PROP_SESSION_EXPIRY)) {
		if (c->expiry == 0 && r->props.session_expiry != 0) {
			conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR,
					"DISCONNECT sets a session expiry interval after 0", true);
			return;
		}
		c->expiry = r->props.session_expiry;
	}
	/* Only a normal disconnection (0x00) discards the will [MQTT5-3.14.4-3];
	 * 0x04 asks for it, and so does any error the client reports. */
	bool will = r->code != 0x00;
	conn_close(cn, will ? "client sent DISCONNECT with will" : "client sent DISCONNECT", will);
}

/* ---- enhanced authentication (5.0 section 4.12) ---- */

/* Send AUTH with reason, s's method and data (NULL: none) [MQTT5-4.12.0-5].
 * Returns false, having sent nothing, when the packet would exceed the
 * client's Maximum Packet Size [MQTT5-3.1.2-24]. */
static bool protocol_send_auth(struct conn *cn, const struct authmeth_session *s, uint8_t reason,
			       const uint8_t *data, size_t len)
{
	size_t cap = strlen(s->m->name) + len + 16;
	uint8_t *pb = xmalloc(cap), *out = xmalloc(cap + 16);
	struct codec_propbuf b;
	codec_propbuf_init(&b, pb, cap);
	codec_propbuf_add_str(&b, CODEC_PROP_AUTH_METHOD, s->m->name, strlen(s->m->name));
	if (data)
		codec_propbuf_add_str(&b, CODEC_PROP_AUTH_DATA, data, len);
	assert(b.err == CODEC_OK);
	int n = codec_v5_encode_auth(reason, pb, b.len, out, cap + 16);
	assert(n > 0);
	bool fits = s->max_packet == 0 || (uint32_t)n <= s->max_packet;
	if (fits)
		conn_write(cn, out, (size_t)n);
	free(out);
	free(pb);
	return fits;
}

/* Refuse the CONNECT whose exchange is under way: CONNACK reason5, then
 * the socket closes (a DISCONNECT may not precede a CONNACK). */
static void protocol_auth_refuse(struct server *srv, struct conn *cn, uint8_t reason5,
				 const char *why)
{
	uint8_t b[16];
	if (!codec_v5_reason_ok(CODEC_CONNACK, reason5))
		reason5 = PROTOCOL_RC_NOT_AUTHORIZED;
	int n = codec_v5_encode_connack(false, reason5, NULL, 0, b, sizeof(b));
	assert(n > 0);
	if (reason5 != CODEC_RC_PROTOCOL_ERROR)
		srv->stats.auth_failures++;
	conn_refuse(cn, b, (size_t)n, why);
}

/* Whether an AUTH names s's method. */
static bool protocol_auth_same_method(const struct authmeth_session *s,
				      const struct codec_props *pr)
{
	return CODEC_PROP_HAS(pr, CODEC_PROP_AUTH_METHOD) &&
	       pr->auth_method.len == strlen(s->m->name) &&
	       memcmp(pr->auth_method.ptr, s->m->name, pr->auth_method.len) == 0;
}

/* The method succeeded on a CONNECT: finish the CONNECT kept in s. */
static void protocol_auth_connect(struct server *srv, struct conn *cn, struct authmeth_session *s,
				  const struct authmeth_out *out)
{
	struct codec_packet pk;
	int rc =
	    codec_decode_v(CODEC_V5, s->connect_hdr, s->connect, (uint32_t)s->connect_len, &pk);
	assert(rc == CODEC_OK); /* it decoded before */
	(void)rc;
	struct protocol_authed a = {s->m, out->username, out->data, out->data_len};
	protocol_connect(srv, cn, &pk.u.connect, &a);
	free(s->connect);
	s->connect = NULL;
	s->connect_len = 0;
	s->connected = true;
	if (out->username)
		s->auth_user = xstrdup(out->username);
}

/* Run the next step of s's method on data and act on what it decides. */
static void protocol_auth_run(struct server *srv, struct conn *cn, struct authmeth_session *s,
			      const struct codec_props *pr)
{
	bool has = CODEC_PROP_HAS(pr, CODEC_PROP_AUTH_DATA);
	struct authmeth_out out = {0};
	enum authmeth_result r =
	    authmeth_session_step(s, srv->cfg, has ? (const uint8_t *)pr->auth_data.ptr : NULL,
				  has ? pr->auth_data.len : 0, &out);
	char puser[160];
	security_printable(puser, sizeof(puser), s->username ? s->username : "(none)",
			   strlen(s->username ? s->username : "(none)"));
	/* What the method wants sent but cannot be: packet too large. */
	if (r == AUTHMETH_CONTINUE &&
	    !protocol_send_auth(cn, s, PROTOCOL_RC_AUTH_CONTINUE, out.data, out.data_len)) {
		r = AUTHMETH_FAILURE;
		out.reason = CONN_RC_PACKET_TOO_LARGE;
	}
	switch (r) {
	case AUTHMETH_CONTINUE:
		/* More data wanted: AUTH 0x18, sent above [MQTT5-4.12.0-2]. */
		break;
	case AUTHMETH_SUCCESS:
		if (!s->connected) {
			protocol_auth_connect(srv, cn, s, &out);
			break;
		}
		/* Re-authentication keeps the identity the connection has. */
		if ((out.username == NULL) != (s->auth_user == NULL) ||
		    (out.username && strcmp(out.username, s->auth_user) != 0)) {
			srv->stats.auth_failures++;
			conn_disconnect(cn, CONN_RC_NOT_AUTHORIZED,
					"re-authenticated as another user", true);
			break;
		}
		log_write(srv->log, LOG_LEVEL_INFO, "connection from %s re-authenticated (%s)",
			  conn_addr(cn), s->m->name);
		if (!protocol_send_auth(cn, s, PROTOCOL_RC_AUTH_SUCCESS, out.data, out.data_len))
			conn_disconnect(cn, CONN_RC_PACKET_TOO_LARGE,
					"AUTH larger than the client's maximum packet size", true);
		break;
	case AUTHMETH_FAILURE:
		log_write(srv->log, LOG_LEVEL_NOTICE,
			  "%s refused: username %s, from %s: authentication method %s failed "
			  "(reason 0x%02X)",
			  s->connected ? "re-authentication" : "login", puser, conn_addr(cn),
			  s->m->name, out.reason);
		if (!s->connected) {
			protocol_auth_refuse(srv, cn, out.reason, "enhanced authentication failed");
		} else {
			/* A failed re-authentication: DISCONNECT [MQTT5-4.12.1-2]. */
			srv->stats.auth_failures++;
			conn_disconnect(cn,
					codec_v5_reason_ok(CODEC_DISCONNECT, out.reason)
					    ? out.reason
					    : CONN_RC_NOT_AUTHORIZED,
					"re-authentication failed", true);
		}
		break;
	}
	authmeth_out_cleanup(&out);
}

/* A CONNECT named a method: start its exchange, or refuse the method. */
static void protocol_auth_begin(struct server *srv, struct conn *cn, const struct codec_connect *p)
{
	const struct authmeth *m =
	    authmeth_find(p->props.auth_method.ptr, p->props.auth_method.len);
	if (!m) {
		/* Not a method this broker has [MQTT5-4.12.0-1]. */
		protocol_refuse(cn, CODEC_CONNACK_NOT_AUTHORIZED, PROTOCOL_RC_BAD_AUTH_METHOD);
		return;
	}
	uint8_t hdr;
	const uint8_t *body;
	size_t len;
	bool raw = conn_packet_bytes(cn, &hdr, &body, &len);
	assert(raw); /* we are inside the packet hook */
	(void)raw;
	struct authmeth_session *s =
	    authmeth_session_new(m, p->has_username ? p->username.ptr : NULL, p->username.len);
	authmeth_session_keep_connect(s, hdr, body, len);
	s->max_packet = p->props.max_packet_size;
	conn_set_auth(cn, s, authmeth_session_free);
	protocol_auth_run(srv, cn, s, &p->props);
}

/* A packet while the CONNECT's exchange is under way: only AUTH 0x18 with
 * the same method goes on (5.0 section 4.12); a DISCONNECT ends it;
 * anything else is a protocol error [MQTT5-3.15.1-1 .. 5.0 section 3.15]. */
static void protocol_auth_packet(struct server *srv, struct conn *cn, struct authmeth_session *s,
				 const struct codec_packet *pk)
{
	if (pk->type == CODEC_DISCONNECT) {
		conn_close(cn, "client sent DISCONNECT during authentication", false);
		return;
	}
	if (pk->type != CODEC_AUTH) {
		protocol_auth_refuse(srv, cn, CODEC_RC_PROTOCOL_ERROR,
				     "a packet other than AUTH during authentication");
		return;
	}
	const struct codec_reason *r = &pk->u.reason;
	if (r->code != PROTOCOL_RC_AUTH_CONTINUE) {
		protocol_auth_refuse(srv, cn, CODEC_RC_PROTOCOL_ERROR,
				     "AUTH before CONNACK with a reason other than 0x18");
		return;
	}
	if (!protocol_auth_same_method(s, &r->props)) {
		protocol_auth_refuse(srv, cn, CODEC_RC_PROTOCOL_ERROR,
				     "AUTH names another authentication method");
		return;
	}
	protocol_auth_run(srv, cn, s, &r->props);
}

/* AUTH after the CONNACK: re-authentication with the CONNECT's method
 * (5.0 section 4.12.1). 0x19 starts it, 0x18 continues it. */
static void protocol_reauth(struct server *srv, struct conn *cn, struct authmeth_session *s,
			    const struct codec_reason *r)
{
	const char *bad = NULL;
	if (!protocol_auth_same_method(s, &r->props))
		bad = "AUTH names another authentication method";
	else if (r->code == PROTOCOL_RC_AUTH_REAUTH && s->in_progress)
		bad = "AUTH 0x19 while a re-authentication is under way";
	else if (r->code == PROTOCOL_RC_AUTH_CONTINUE && !s->in_progress)
		bad = "AUTH 0x18 without an authentication under way";
	else if (r->code == PROTOCOL_RC_AUTH_SUCCESS)
		bad = "AUTH 0x00 from a client";
	if (bad) {
		conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR, bad, true);
		return;
	}
	protocol_auth_run(srv, cn, s, &r->props);
}

static void protocol_packet(void *arg, struct conn *cn, const struct codec_packet *pk)
{
	struct server *srv = arg;
	struct client *c = conn_owner(cn);
	if (!c && conn_auth(cn)) {
		/* Enhanced authentication before the CONNACK. */
		protocol_auth_packet(srv, cn, conn_auth(cn), pk);
		return;
	}
	if (pk->type == CODEC_CONNECT) {
		if (c) {
			conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR, "second CONNECT", true);
			return;
		}
		protocol_connect(srv, cn, &pk->u.connect, NULL);
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
		if (c->version == CODEC_V5 && pk->u.ack.reason >= 0x80)
			client_handle_pubrec_error(c, pk->u.ack.packet_id);
		else
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
		if (c->version == CODEC_V5)
			protocol_disconnect5(cn, c, &pk->u.reason);
		else
			conn_close(cn, "client sent DISCONNECT", false);
		break;
	case CODEC_AUTH:
		if (conn_auth(cn)) {
			protocol_reauth(srv, cn, conn_auth(cn), &pk->u.reason);
			break;
		}
		/* No authentication method was agreed in CONNECT, so there is
		 * no exchange to continue [MQTT5-4.12.0-2 and 5.0 section 4.12]. */
		conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR,
				"AUTH without an authentication method", true);
		break;
	default:
		conn_disconnect(cn, CODEC_RC_PROTOCOL_ERROR,
				"protocol violation: packet type only a server may send", true);
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
