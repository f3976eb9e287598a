/*
 * Cluster mode, the core's side (see cluster.h and cairn/store.h version 4).
 *
 * Where a session's messages come from. Each node routes every entry of
 * the shared log to its own sessions, in log order, and stages, with the
 * deliveries of each batch of entries, the position it has routed up to
 * (its mark). A session held here has in its stored queue every matching
 * entry up to that mark. The store keeps a session's own cursor instead
 * while that is not true of it: from its claim until the node that claimed
 * it has caught it up (or its mark has passed the cursor). So a node that
 * claims a session learns where its queue ends, and:
 *  - reads the entries after that cursor up to its own mark and routes
 *    them to the session alone (catch-up), moving the stored cursor with
 *    each chunk, while live routing leaves the session out (its floor);
 *  - or, when the previous holder had routed further than this node has,
 *    leaves the session out of live routing up to that cursor (the entries
 *    are in its queue already), so no QoS 2 message is delivered twice.
 *
 * The log is kept in P partitions (cluster_log_partitions): a message's
 * topic names its partition, and a mark, a cursor or a floor is one
 * position per partition. The router compares one position (a client's
 * floor, a subscription's since) with an entry's: before each batch of
 * one partition's entries this file sets those of the sessions it keeps
 * apart (floors pending, catch-ups) to that partition's. With P > 1 a
 * subscription's since is kept here only while its session catches up
 * (where it matters: an entry the node had routed before the SUBSCRIBE
 * comes again then); with one partition it is the subscription's, as
 * before partitions.
 */
#include "cluster.h"
#include "cluster_share.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cairn/store.h"
#include "client.h"
#include "codec.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "message.h"
#include "restore.h"
#include "router.h"
#include "security.h"
#include "server.h"
#include "store.h"
#include "topic.h"
#include "util.h"

/* Entries one catch-up read asks for. */
#define CLUSTER_CATCHUP_CHUNK 512

struct cluster_claim;
struct cluster_catchup;

/* A park on its way to the store (cluster_park). */
struct cluster_park {
	struct cluster_park *next;
	struct cluster *cl;
	char *id;
};

/* A session whose stored cursor waits for the mark to pass its floor. */
struct cluster_floor {
	struct client *c;            /* a reference */
	struct cairn_log_pos *floor; /* per partition */
};

struct cluster {
	struct server *srv;
	struct cairn_cluster_hooks hooks;
	uint32_t nparts;              /* the log's partitions */
	struct cairn_log_pos *routed; /* per partition: the last entry routed here */
	uint64_t next_serial;
	bool stopped;
	struct cluster_claim *claims;     /* waiting for the store */
	struct cluster_claim *deferred;   /* waiting for a park of their session */
	struct cluster_park *parks;       /* parks not yet committed */
	struct cluster_catchup *catchups; /* sessions catching up */
	struct cluster_floor *floors;
	size_t nfloors, floorcap;
	struct event *unhealthy_ev; /* closes the clients of a node that cannot commit */
	struct event *beat_ev;      /* a commit every second, even when idle */
};

/* DISCONNECT reason (5.0): Use another server. */
#define CLUSTER_RC_USE_ANOTHER_SERVER 0x9C

/* ---- positions ---- */

static const struct cairn_log_pos cluster_none = {0, 0};
static const struct cairn_log_pos cluster_all = {UINT64_MAX, UINT64_MAX};

/*
 * A position whose ms is 0 comes before every entry (an entry's id is the
 * Redis server's time when it was appended, never 0): where the queue of a
 * session, or the node's mark, stands in a partition that had nothing for
 * it yet. The store keeps in its seq when that was (wall-clock ms; 0: not
 * known), which a catch-up reads as the cursor's age (the trim check of
 * cluster_catchup_start); as positions, all of them are one.
 */
static bool pos_lt(struct cairn_log_pos a, struct cairn_log_pos b)
{
	if (a.ms == 0 && b.ms == 0)
		return false;
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq);
}

/* v for the store: a partition with nothing in it yet (0-0) says since
 * when (now); a time it says already stays. NULL when v needs none. */
static struct cairn_log_pos *posv_stamped(const struct cluster *cl, const struct cairn_log_pos *v)
{
	struct cairn_log_pos *d = NULL;
	struct timeval tv;

	for (uint32_t p = 0; p < cl->nparts; p++) {
		if (v[p].ms != 0 || v[p].seq != 0)
			continue;
		if (d == NULL) {
			d = xmalloc(cl->nparts * sizeof(*d));
			memcpy(d, v, cl->nparts * sizeof(*d));
			event_base_gettimeofday_cached(cl->srv->base, &tv);
		}
		d[p].seq = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	}
	return d;
}

/* Stage where c's stored queue ends (per partition), or, pos NULL, that
 * the node's mark speaks for it. */
static void cluster_cursor(struct cluster *cl, const struct client *c,
			   const struct cairn_log_pos *pos)
{
	struct cairn_log_pos *d = pos ? posv_stamped(cl, pos) : NULL;

	store_log_routed(cl->srv->store, c->id, d ? d : pos, cl->nparts);
	free(d);
}

/* Stage the node's mark: every entry routed here so far, per partition. */
static void cluster_mark(struct cluster *cl)
{
	struct cairn_log_pos *d = posv_stamped(cl, cl->routed);

	store_log_routed(cl->srv->store, NULL, d ? d : cl->routed, cl->nparts);
	free(d);
}

static struct cairn_log_pos *posv_dup(const struct cluster *cl, const struct cairn_log_pos *v)
{
	struct cairn_log_pos *d = xmalloc(cl->nparts * sizeof(*d));
	memcpy(d, v, cl->nparts * sizeof(*d));
	return d;
}

static void client_set_floor(struct client *c, struct cairn_log_pos p)
{
	c->floor_ms = p.ms;
	c->floor_seq = p.seq;
}

static struct cairn_log_pos client_floor(const struct client *c)
{
	return (struct cairn_log_pos){c->floor_ms, c->floor_seq};
}

/* ---- sessions leaving ---- */

/*
 * Another node holds c's session now: close its connection (5.0: DISCONNECT
 * 0x8E, as a takeover on one node) and drop it from memory without a store
 * write. Its will is published here only when the claim left it to this
 * node (cluster_kicked: CAIRN_KICK_WILL); a janitor that parked the
 * session publishes it when due.
 */
static void cluster_drop_session(struct cluster *cl, struct client *c, const char *why)
{
	struct conn *cn = c->conn;

	log_write(cl->srv->log, LOG_LEVEL_NOTICE, "client %s: %s", c->id, why);
	c->cluster_lost = true; /* its staged writes are dropped */
	client_forget(c);
	if (cn) {
		conn_drop_corked(cn); /* what waited for those writes */
		conn_disconnect(cn, CONN_RC_SESSION_TAKEN_OVER, why, false);
	}
}

/* The store says another node claimed (kicked) or holds (fenced) the
 * session this node holds under serial. */
static void cluster_lost(struct cluster *cl, const char *id, uint64_t serial, const char *why)
{
	if (cl->stopped)
		return;
	struct client *c = server_get_known_client(cl->srv, id, strlen(id));
	if (c && !c->dead && c->cluster_serial == serial)
		cluster_drop_session(cl, c, why);
}

/* ---- catch-up ---- */

/* With P > 1: a subscription made while its session catches up matches
 * the entries after this node's mark at the SUBSCRIBE, in each partition. */
struct cluster_since {
	char *filter;
	struct cairn_log_pos *at; /* per partition */
};

struct cluster_catchup {
	struct cluster_catchup *next;
	struct cluster *cl;
	struct client *c;          /* a reference */
	struct cairn_log_pos *pos; /* per partition: where its queue ends */
	uint32_t part;             /* the partition being read */
	struct cluster_since *since;
	size_t nsince;
	struct event *retry;
};

static void cluster_catchup_read(struct cluster_catchup *cu);

/* Set the since of c's subscriptions that have one here to partition
 * part's (at NULL: to none, once the catch-up is over). */
static void cluster_since_apply(struct cluster_catchup *cu, const uint32_t *part)
{
	for (size_t k = 0; k < cu->nsince; k++) {
		const char *f = cu->since[k].filter;
		struct sub *s = client_sub_get(cu->c, f, strlen(f));
		struct cairn_log_pos at = part ? cu->since[k].at[*part] : cluster_none;

		if (s != NULL) {
			s->since_ms = at.ms;
			s->since_seq = at.seq;
		}
	}
}

static void cluster_catchup_free(struct cluster_catchup *cu)
{
	struct cluster *cl = cu->cl;

	for (struct cluster_catchup **pp = &cl->catchups; *pp; pp = &(*pp)->next)
		if (*pp == cu) {
			*pp = cu->next;
			break;
		}
	if (!cu->c->dead)
		cluster_since_apply(cu, NULL);
	for (size_t k = 0; k < cu->nsince; k++) {
		free(cu->since[k].filter);
		free(cu->since[k].at);
	}
	free(cu->since);
	event_free(cu->retry);
	client_unref(cu->c);
	free(cu->pos);
	free(cu);
}

/* A message from a log entry, routed as if published here. */
static struct message *cluster_entry_message(struct cluster *cl, const struct cairn_log_entry *e)
{
	struct message *m = message_from_log(e);

	if (e->publisher[0]) {
		struct client *p =
		    server_get_known_client(cl->srv, e->publisher, strlen(e->publisher));
		m->origin = p && !p->dead ? p : NULL; /* No Local */
	}
	return m;
}

static void cluster_floor_add(struct cluster *cl, struct client *c,
			      const struct cairn_log_pos *floor);

/* The catch-up of partition cu->part has reached the mark: the next
 * partition behind the mark, or UINT32_MAX when every one is caught up. */
static uint32_t cluster_catchup_next(const struct cluster_catchup *cu)
{
	const struct cluster *cl = cu->cl;

	for (uint32_t i = 1; i <= cl->nparts; i++) {
		uint32_t p = (cu->part + i) % cl->nparts;
		if (pos_lt(cu->pos[p], cl->routed[p]))
			return p;
	}
	return UINT32_MAX;
}

/* Everything up to the mark is in c's queue, in every partition, and live
 * routing brings what follows. */
static void cluster_catchup_done(struct cluster_catchup *cu)
{
	struct cluster *cl = cu->cl;
	struct client *c = cu->c;
	bool ahead = false;

	for (uint32_t p = 0; p < cl->nparts; p++) {
		if (pos_lt(cu->pos[p], cl->routed[p]))
			cu->pos[p] = cl->routed[p];
		else if (pos_lt(cl->routed[p], cu->pos[p]))
			ahead = true; /* its queue held more than this node routed */
	}
	if (ahead) {
		/* Left out of live routing up to its cursor there. */
		cluster_floor_add(cl, c, cu->pos);
		cluster_cursor(cl, c, cu->pos);
	} else {
		client_set_floor(c, cl->nparts == 1 ? cl->routed[0] : cluster_none);
		cluster_cursor(cl, c, NULL); /* the mark speaks for it */
	}
	log_write(cl->srv->log, LOG_LEVEL_INFO, "client %s: caught up with the log at %llu-%llu%s",
		  c->id, (unsigned long long)cl->routed[0].ms,
		  (unsigned long long)cl->routed[0].seq,
		  cl->nparts > 1 ? " (in its first partition)" : "");
}

static void cluster_catchup_cb(void *arg, int status, const struct cairn_log_entry *e, size_t n)
{
	struct cluster_catchup *cu = arg;
	struct cluster *cl = cu->cl;
	struct client *c = cu->c;
	uint32_t part = cu->part;

	if (cl->stopped || c->dead) {
		cluster_catchup_free(cu);
		return;
	}
	if (status != 0) {
		struct timeval tv = {0, 500 * 1000};
		evtimer_add(cu->retry, &tv);
		return;
	}
	struct cairn_log_pos mark = cl->routed[part];
	bool reached = false, moved = false;
	store_unit(cl->srv->store, true); /* the chunk's deliveries with its cursor */
	if (cl->nparts > 1)
		cluster_since_apply(cu, &part);
	for (size_t i = 0; i < n; i++) {
		if (pos_lt(mark, e[i].pos)) {
			reached = true; /* live routing takes it from here */
			break;
		}
		struct message *m = cluster_entry_message(cl, &e[i]);
		router_publish_to(cl->srv->router, m, c);
		m->origin = NULL;
		message_unref(m);
		cu->pos[part] = e[i].pos;
		moved = true;
	}
	if (n == 0)
		reached = true; /* nothing after its position up to now */
	if (reached || !pos_lt(cu->pos[part], mark)) {
		/* Every entry up to the mark is routed to it. */
		if (pos_lt(cu->pos[part], mark))
			cu->pos[part] = mark;
		moved = true;
		uint32_t next = cluster_catchup_next(cu);
		if (next == UINT32_MAX) {
			cluster_catchup_done(cu);
			store_unit(cl->srv->store, false);
			cluster_catchup_free(cu);
			return;
		}
		cu->part = next;
	}
	if (moved)
		cluster_cursor(cl, c, cu->pos);
	store_unit(cl->srv->store, false);
	cluster_catchup_read(cu);
}

static void cluster_catchup_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cluster_catchup_read(arg);
}

static void cluster_catchup_read(struct cluster_catchup *cu)
{
	if (store_log_read(cu->cl->srv->store, cu->part, cu->pos[cu->part], CLUSTER_CATCHUP_CHUNK,
			   cluster_catchup_cb, cu) != CAIRN_EINPROGRESS) {
		struct timeval tv = {0, 500 * 1000};
		evtimer_add(cu->retry, &tv);
	}
}

static void cluster_catchup_start(struct cluster *cl, struct client *c,
				  const struct cairn_log_pos *from)
{
	struct cluster_catchup *cu = xcalloc(1, sizeof(*cu));
	cu->cl = cl;
	cu->c = client_ref(c);
	cu->pos = posv_dup(cl, from);
	cu->part = 0;
	cu->retry = evtimer_new(cl->srv->base, cluster_catchup_retry_cb, cu);
	cu->next = cl->catchups;
	cl->catchups = cu;
	client_set_floor(c, cluster_all);
	cl->srv->stats.cluster_catchups++;
	/* The log keeps message_retention seconds: a cursor older than that
	 * may have lost entries to the trim (where entries came after it). A
	 * cursor before every entry is as old as its time (pos_lt's comment):
	 * a session parked on an empty partition a moment ago lost nothing,
	 * and one of an unknown time is not counted. */
	uint64_t keep_ms = (uint64_t)cl->srv->cfg->message_retention * 1000;
	for (uint32_t p = 0; p < cl->nparts; p++) {
		uint64_t at = from[p].ms ? from[p].ms : from[p].seq;
		if (at == 0 || !pos_lt(from[p], cl->routed[p]) ||
		    at + keep_ms >= (uint64_t)client_wall_ms(c))
			continue;
		cl->srv->stats.cluster_cursor_trimmed++;
		log_write(cl->srv->log, LOG_LEVEL_WARNING,
			  "client %s: its log cursor %llu-%llu (partition %u) is older than "
			  "message_retention (%u s): messages trimmed from the log since "
			  "are lost to it",
			  c->id, (unsigned long long)from[p].ms, (unsigned long long)from[p].seq,
			  (unsigned)p, (unsigned)cl->srv->cfg->message_retention);
		break;
	}
	if (!pos_lt(cu->pos[0], cl->routed[0]))
		cu->part = cluster_catchup_next(cu); /* one is behind: cluster_claim */
	log_write(cl->srv->log, LOG_LEVEL_INFO,
		  "client %s: catching up with the log from %llu-%llu to %llu-%llu%s", c->id,
		  (unsigned long long)from[0].ms, (unsigned long long)from[0].seq,
		  (unsigned long long)cl->routed[0].ms, (unsigned long long)cl->routed[0].seq,
		  cl->nparts > 1 ? " (in its first partition)" : "");
	cluster_catchup_read(cu);
}

/* ---- the log, live ---- */

static void cluster_floor_add(struct cluster *cl, struct client *c,
			      const struct cairn_log_pos *floor)
{
	if (cl->nfloors == cl->floorcap) {
		cl->floorcap = cl->floorcap ? cl->floorcap * 2 : 8;
		cl->floors = xrealloc(cl->floors, cl->floorcap * sizeof(*cl->floors));
	}
	cl->floors[cl->nfloors++] = (struct cluster_floor){client_ref(c), posv_dup(cl, floor)};
	client_set_floor(c, floor[0]);
	c->floor_pending = true;
}

static void cluster_entries(void *arg, const struct cairn_log_entry *e, size_t n)
{
	struct cluster *cl = arg;
	if (cl->stopped || n == 0)
		return;
	uint32_t part = e[0].partition;
	if (part >= cl->nparts)
		return; /* not the backend's: it reads P partitions */
	/* Sessions kept apart up to a floor, in this partition. */
	for (size_t i = 0; cl->nparts > 1 && i < cl->nfloors; i++)
		if (cl->floors[i].c->floor_pending)
			client_set_floor(cl->floors[i].c, cl->floors[i].floor[part]);
	/* The entries' deliveries and the mark that speaks for them go in one
	 * batch: a mark committed alone would be ahead of queues, deliveries
	 * committed alone would be redelivered by a catch-up. */
	store_unit(cl->srv->store, true);
	for (size_t i = 0; i < n; i++) {
		struct message *m = cluster_entry_message(cl, &e[i]);
		router_publish(cl->srv->router, m);
		m->origin = NULL;
		message_unref(m);
		cl->routed[part] = e[i].pos;
	}
	cl->srv->stats.cluster_entries += n;
	cluster_mark(cl);
	cluster_share_wake(cl->srv->cluster_shares, part);
	/* Sessions whose queue held entries past this node's mark: once the
	 * mark reaches their floor in every partition, the mark speaks for
	 * them. Until then their stored cursor follows live routing in the
	 * partitions the mark has passed. */
	size_t keep = 0;
	for (size_t i = 0; i < cl->nfloors; i++) {
		struct cluster_floor *f = &cl->floors[i];
		struct client *c = f->c;
		bool below = false;
		for (uint32_t p = 0; p < cl->nparts; p++)
			below = below || pos_lt(cl->routed[p], f->floor[p]);
		if (!c->dead && c->floor_pending && below) {
			if (cl->nparts > 1 && pos_lt(f->floor[part], cl->routed[part])) {
				struct cairn_log_pos *v = posv_dup(cl, f->floor);
				for (uint32_t p = 0; p < cl->nparts; p++)
					if (pos_lt(v[p], cl->routed[p]))
						v[p] = cl->routed[p];
				cluster_cursor(cl, c, v);
				free(v);
			}
			cl->floors[keep++] = *f;
			continue;
		}
		if (!c->dead && c->floor_pending) {
			cluster_cursor(cl, c, NULL);
			if (cl->nparts > 1)
				client_set_floor(c, cluster_none);
		}
		c->floor_pending = false;
		client_unref(c);
		free(f->floor);
	}
	cl->nfloors = keep;
	store_unit(cl->srv->store, false);
}

static void cluster_kicked(void *arg, const char *id, uint64_t serial);

/* The will of a client whose node is gone, about to be published by this
 * node (its janitor's round, or a claim that found it due): checked against
 * the ACL in force here now, as a will restored after a restart is (its
 * listener is not known). */
static bool cluster_will_allowed(void *arg, const char *id, const char *username, const char *topic)
{
	struct cluster *cl = arg;
	struct server *srv = cl->srv;
	const struct security *s = security_for_unknown(&srv->security);

	if (security_allows(s, id, username, topic, strlen(topic), ACL_WRITE))
		return true;
	srv->stats.acl_denied++;
	log_write(srv->log, LOG_LEVEL_NOTICE,
		  "client %s: will to '%s' dropped: the ACL denies writing it", id, topic);
	return false;
}

/* Append m to the shared log as published by client_id ("" for none). */
static void cluster_log_append(struct server *srv, const char *client_id, const struct message *m)
{
	struct cairn_msg_rec rec = message_rec(m);
	rec.msg_id = 0; /* a log entry has none */
	store_log_append(srv->store, client_id, &rec);
}

/* The will a claim took from the store (a parked session's, which a
 * clean start makes due):
 * published from here, once, as one broker publishes a will at a takeover:
 * under the ACL in force now, its Message Expiry Interval counted from now.
 * The store removes it with the append's commit. */
static void cluster_claim_will(struct cluster *cl, const char *id,
			       const struct cairn_claim_result *r)
{
	struct server *srv = cl->srv;
	const struct cairn_msg_rec *w = &r->will;

	if (!cluster_will_allowed(cl, id, r->will_username, w->topic))
		return;
	struct message *m =
	    message_new(w->topic, strlen(w->topic), w->payload, w->payload_len, w->qos, w->retain);
	struct codec_props pr;
	if (w->props_len) {
		message_set_props(m, w->props, w->props_len);
		if (codec_props_parse(CODEC_WILL, m->props, m->props_len, &pr) == CODEC_OK &&
		    CODEC_PROP_HAS(&pr, CODEC_PROP_MESSAGE_EXPIRY)) {
			struct timeval tv;
			event_base_gettimeofday_cached(srv->base, &tv);
			m->expires_at = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000 +
					(int64_t)pr.message_expiry * 1000;
			int n = codec_props_filter(m->props, m->props_len,
						   (uint64_t)1 << CODEC_PROP_MESSAGE_EXPIRY,
						   m->props, m->props_len);
			m->props_len = n > 0 ? (uint32_t)n : 0;
		}
	}
	log_write(srv->log, LOG_LEVEL_INFO,
		  "client %s: publishing the will its previous connection (on another node) left "
		  "to '%s'",
		  id, w->topic);
	srv->stats.msgs_received_qos[m->qos]++;
	srv->stats.payload_in_qos[m->qos] += m->payload_len;
	cluster_log_append(srv, id, m);
	if (m->retain)
		router_retain_local(srv->router, m);
	message_unref(m);
}

/* A commit found the session held elsewhere: what this node holds of it
 * under the serial the commit carried, or an older one (a takeover here
 * may have changed it while the commit was on its way), is stale, and its
 * connection must go before the commit's completions run (they would
 * acknowledge the dropped writes). */
static void cluster_fenced(void *arg, const char *id, uint64_t serial)
{
	struct cluster *cl = arg;
	if (cl->stopped)
		return;
	cl->srv->stats.cluster_fenced++;
	/* A claim made here after the fenced commit left (a higher serial:
	 * serials only grow) may have taken the session back already, its
	 * reply read before this report: that one is not stale. */
	struct client *c = server_get_known_client(cl->srv, id, strlen(id));
	if (c && !c->dead && c->cluster_serial <= serial)
		cluster_drop_session(cl, c, "session claimed by another node (fenced write)");
}

/* ---- claims ---- */

struct claim_msg {
	uint64_t key; /* the store's id of the copy */
	struct message *m;
};

struct cluster_claim {
	struct cluster_claim *next;
	struct cluster *cl;
	struct conn *cn; /* NULL once the connection is gone */
	char *id;
	uint64_t serial;
	bool kicked; /* another node claimed it before the reply came */
	bool clean;  /* the CONNECT's clean start (CAIRN_CLAIM_CLEAN) */
	struct cairn_store_visitor v;
	struct client *built; /* the session loaded from the records (a reference) */
	struct claim_msg *msgs;
	size_t nmsgs, msgcap;
	bool sorted;
	void (*done)(struct server *srv, struct conn *cn, void *arg,
		     enum cluster_claim_result result);
	void (*gone)(void *arg);
	void *arg;
};

static void cluster_kicked(void *arg, const char *id, uint64_t serial)
{
	struct cluster *cl = arg;
	/* The claim elsewhere found the will of this connection due and left
	 * it here: this node publishes it if it still holds it (no DISCONNECT
	 * discarded it), whatever its Will Delay (the claim decided). */
	bool will = (serial & CAIRN_KICK_WILL) != 0;

	serial &= ~CAIRN_KICK_WILL;
	if (cl->stopped)
		return;
	for (struct cluster_claim *k = cl->claims; k; k = k->next)
		if (k->serial == serial && strcmp(k->id, id) == 0) {
			k->kicked = true; /* claimed elsewhere before its reply came */
			return;
		}
	cl->srv->stats.cluster_kicked++;
	if (will) {
		struct client *c = server_get_known_client(cl->srv, id, strlen(id));
		if (c && !c->dead && c->cluster_serial == serial && c->will) {
			/* The client may have sent DISCONNECT before it connected
			 * elsewhere, behind more (a QoS 0 stream, say) and
			 * whatever its output holds: it discards the will. The
			 * rest read is dropped with the connection, unanswered
			 * (a QoS 1 or 2 PUBLISH is resent by a client that
			 * resumes its session; a QoS 0 one is lost). */
			client_ref(c);
			if (c->conn && conn_read_pending(c->conn)) {
				message_unref(c->will);
				c->will = NULL;
			}
			if (!c->dead && c->cluster_serial == serial && c->will) {
				c->will_at = 0;
				client_handle_last_will(c);
			}
			client_unref(c);
		}
	}
	cluster_lost(cl, id, serial, "session taken over on another node");
}

static int claim_session(void *arg, const struct cairn_session_rec *r)
{
	struct cluster_claim *k = arg;
	struct server *srv = k->cl->srv;
	struct client *stale = server_get_known_client(srv, r->client_id, strlen(r->client_id));
	if (stale) /* this node's copy is older than the store's */
		cluster_drop_session(k->cl, stale, "session moved to another node meanwhile");
	struct client *c = restore_client_new(srv, r);
	c->expiry = r->expiry_interval;
	/* Its client is connecting: no will or expiry runs. */
	client_set_floor(c, (struct cairn_log_pos){UINT64_MAX, UINT64_MAX});
	server_add_client(srv, c);
	k->built = c;
	return 0;
}

static int claim_sub(void *arg, const struct cairn_sub_rec *r)
{
	struct cluster_claim *k = arg;
	struct cairn_sub_rec rec = *r;
	/* With P > 1 the record's since is no position (cluster.c's top). */
	if (k->cl->nparts > 1)
		rec.since_ms = rec.since_seq = 0;
	if (k->built)
		restore_add_sub(k->built, &rec);
	return 0;
}

static int claim_message(void *arg, const struct cairn_msg_rec *r)
{
	struct cluster_claim *k = arg;
	struct message *m = restore_message_new(r);
	if (!m)
		return 0;
	/* The store keeps the copy with its delivery; the id is this node's. */
	m->id = server_next_msg_id(k->cl->srv);
	if (k->nmsgs == k->msgcap) {
		k->msgcap = k->msgcap ? k->msgcap * 2 : 64;
		k->msgs = xrealloc(k->msgs, k->msgcap * sizeof(*k->msgs));
	}
	k->msgs[k->nmsgs++] = (struct claim_msg){r->msg_id, m};
	return 0;
}

static int claim_msg_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct claim_msg *)a)->key, y = ((const struct claim_msg *)b)->key;
	return x < y ? -1 : x > y;
}

static struct message *claim_find_msg(struct cluster_claim *k, uint64_t key)
{
	if (!k->sorted) {
		qsort(k->msgs, k->nmsgs, sizeof(*k->msgs), claim_msg_cmp);
		k->sorted = true;
	}
	struct claim_msg want = {key, NULL};
	struct claim_msg *f = bsearch(&want, k->msgs, k->nmsgs, sizeof(*k->msgs), claim_msg_cmp);
	return f ? f->m : NULL;
}

static int claim_delivery(void *arg, const struct cairn_delivery_rec *r)
{
	struct cluster_claim *k = arg;
	struct message *m = claim_find_msg(k, r->msg_id);
	if (!k->built || !m || r->qos == 0 || r->qos > 2 || r->state > CAIRN_DELIVERY_PUBREC)
		return 0;
	client_restore_delivery(k->built, m, r->seq, r->packet_id, r->qos, r->state);
	client_restore_delivery5(k->built, r->retain, r->sub_ids, r->n_sub_ids);
	return 0;
}

static int claim_inflight_in(void *arg, const struct cairn_inflight_in_rec *r)
{
	struct cluster_claim *k = arg;
	if (k->built)
		client_restore_inflight_in(k->built, r->packet_id);
	return 0;
}

static void claim_free(struct cluster_claim *k)
{
	struct cluster *cl = k->cl;
	for (struct cluster_claim **pp = &cl->claims; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	for (size_t i = 0; i < k->nmsgs; i++) {
		struct message *m = k->msgs[i].m;
		if (m->stored_refs == 0)
			m->id = 0; /* a copy no delivery kept */
		message_unref(m);
	}
	free(k->msgs);
	if (k->built)
		client_unref(k->built); /* client_new's; the server's map has its own */
	free(k->id);
	free(k);
}

/* The connection of a claim still under way is gone. */
static void claim_conn_gone(void *arg)
{
	struct cluster_claim *k = arg;
	k->cn = NULL;
	k->gone(k->arg);
}

static void claim_done(void *arg, int status, const struct cairn_claim_result *r)
{
	struct cluster_claim *k = arg;
	struct cluster *cl = k->cl;
	struct server *srv = cl->srv;
	struct conn *cn = k->cn;

	if (cl->stopped) {
		if (cn)
			conn_release_hold(cn);
		claim_free(k);
		return;
	}
	if (status == 0 && r->has_will)
		cluster_claim_will(cl, k->id, r); /* whatever becomes of the claim */
	if (status == 0 && !k->kicked) {
		/* The records, unless this node holds the session in memory:
		 * then its copy is the newer one. */
		struct client *held = server_get_known_client(srv, k->id, strlen(k->id));
		if (!(r->prev_local && held && !held->dead))
			status = r->visit(r->visit_ctx, &k->v);
	}
	struct client *built = k->built;
	if (status != 0 || k->kicked || !cn) {
		/* Not ours (or nobody waits): a half-loaded session goes, and
		 * the store's claim. A session this node held before is
		 * another node's now, unless the claim failed. */
		if (built && !built->dead)
			client_forget(built);
		struct client *old = server_get_known_client(srv, k->id, strlen(k->id));
		if (old && old != built && status == 0 && !cn && r->prev_local) {
			old->cluster_serial = k->serial; /* still held here */
			claim_free(k);
			return;
		}
		if (old && old != built && !old->dead && status == 0)
			cluster_drop_session(cl, old, "session taken over on another node");
		store_release(srv->store, k->id);
		if (status != 0)
			log_write(srv->log, LOG_LEVEL_WARNING,
				  "client %s: cannot claim its session: %s", k->id,
				  cairn_strerror(status));
		if (cn) {
			conn_release_hold(cn);
			k->done(srv, cn, k->arg,
				status != 0 ? CLUSTER_UNAVAILABLE : CLUSTER_OVERTAKEN);
		}
		claim_free(k);
		return;
	}
	struct client *c = server_get_known_client(srv, k->id, strlen(k->id));
	if (c && c != built && !r->prev_local)
		cluster_drop_session(cl, c, "session moved to another node meanwhile");
	conn_release_hold(cn);
	k->done(srv, cn, k->arg, CLUSTER_CLAIMED);
	c = server_get_known_client(srv, k->id, strlen(k->id));
	if (!c) {
		/* The CONNECT was refused after all. */
		store_release(srv->store, k->id);
		claim_free(k);
		return;
	}
	c->cluster_serial = k->serial;
	srv->stats.cluster_claims++;
	if (c == built) {
		const struct cairn_log_pos *from = r->cursors;
		bool behind = false, ahead = false;
		for (uint32_t p = 0; r->has_cursor && p < cl->nparts; p++) {
			behind = behind || pos_lt(from[p], cl->routed[p]);
			ahead = ahead || pos_lt(cl->routed[p], from[p]);
		}
		if (!r->has_cursor) {
			client_set_floor(c, cluster_none);
			cluster_cursor(cl, c, NULL);
		} else if (behind) {
			cluster_catchup_start(cl, c, from);
		} else if (ahead) {
			/* Its queue holds entries this node has not routed yet. */
			cluster_floor_add(cl, c, from);
		} else {
			client_set_floor(c, cl->nparts == 1 ? from[0] : cluster_none);
			cluster_cursor(cl, c, NULL);
		}
	} else if (!r->prev_local) {
		cluster_cursor(cl, c, NULL);
	}
	claim_free(k);
}

static void cluster_claim_send(struct cluster_claim *k);

void cluster_claim(struct server *srv, struct conn *cn, const char *id, size_t id_len, bool clean,
		   void (*done)(struct server *srv, struct conn *cn, void *arg,
				enum cluster_claim_result result),
		   void (*gone)(void *arg), void *arg)
{
	struct cluster *cl = srv->cluster;
	struct cluster_claim *k = xcalloc(1, sizeof(*k));
	k->cl = cl;
	k->cn = cn;
	k->id = xstrndup(id, id_len);
	k->serial = ++cl->next_serial;
	k->clean = clean;
	k->done = done;
	k->gone = gone;
	k->arg = arg;
	k->v = (struct cairn_store_visitor){
	    .arg = k,
	    .session = claim_session,
	    .subscription = claim_sub,
	    .message = claim_message,
	    .delivery = claim_delivery,
	    .inflight_in = claim_inflight_in,
	};
	conn_set_hold(cn, k, claim_conn_gone);
	for (struct cluster_park *pk = cl->parks; pk; pk = pk->next)
		if (strcmp(pk->id, k->id) == 0) {
			/* Its park is on its way to the store: claim after it. */
			k->next = cl->deferred;
			cl->deferred = k;
			return;
		}
	cluster_claim_send(k);
}

static void cluster_claim_send(struct cluster_claim *k)
{
	struct cluster *cl = k->cl;
	struct server *srv = cl->srv;
	k->next = cl->claims;
	cl->claims = k;
	int rc = store_claim(srv->store, k->id, k->serial | (k->clean ? CAIRN_CLAIM_CLEAN : 0),
			     claim_done, k);
	if (rc != CAIRN_EINPROGRESS) {
		log_write(srv->log, LOG_LEVEL_WARNING, "client %s: cannot claim its session: %s",
			  k->id, cairn_strerror(rc));
		struct conn *cn = k->cn;
		void (*done)(struct server *, struct conn *, void *, enum cluster_claim_result) =
		    k->done;
		void *arg = k->arg;
		claim_free(k);
		if (cn) {
			conn_release_hold(cn);
			done(srv, cn, arg, CLUSTER_UNAVAILABLE);
		}
	}
}

/* ---- parking ---- */

static void cluster_parked(void *arg, bool durable)
{
	struct cluster_park *pk = arg;
	struct cluster *cl = pk->cl;
	for (struct cluster_park **pp = &cl->parks; *pp; pp = &(*pp)->next)
		if (*pp == pk) {
			*pp = pk->next;
			break;
		}
	if (durable && !cl->stopped) {
		store_release(cl->srv->store, pk->id);
		/* The claims that waited for it go now, in arrival order. */
		struct cluster_claim *mine = NULL, **keep = &cl->deferred;
		while (*keep) {
			struct cluster_claim *k = *keep;
			if (strcmp(k->id, pk->id) == 0) {
				*keep = k->next;
				k->next = mine;
				mine = k;
			} else {
				keep = &k->next;
			}
		}
		while (mine) {
			struct cluster_claim *k = mine;
			mine = k->next;
			cluster_claim_send(k);
		}
	}
	free(pk->id);
	free(pk);
}

void cluster_park(struct client *c)
{
	struct server *srv = c->srv;
	struct cluster *cl = srv->cluster;
	/* Where routing of it stands: its catch-up, else its floor when that
	 * is ahead of this node's mark, else the mark (in each partition). */
	struct cairn_log_pos *cursor = posv_dup(cl, cl->routed);
	const struct cairn_log_pos *floor = NULL;
	bool catching = false;
	for (struct cluster_catchup *cu = cl->catchups; cu; cu = cu->next)
		if (cu->c == c) {
			memcpy(cursor, cu->pos, cl->nparts * sizeof(*cursor));
			catching = true;
		}
	for (size_t i = 0; !catching && c->floor_pending && i < cl->nfloors; i++)
		if (cl->floors[i].c == c)
			floor = cl->floors[i].floor;
	for (uint32_t p = 0; !catching && p < cl->nparts; p++) {
		struct cairn_log_pos f = cl->nparts == 1 ? client_floor(c)
					 : floor         ? floor[p]
							 : cluster_none;
		if (pos_lt(cursor[p], f))
			cursor[p] = f;
	}
	store_unit(srv->store, true);
	cluster_cursor(cl, c, cursor);
	client_store_session(c, false); /* the backend parks it with the record */
	store_unit(srv->store, false);
	struct cluster_park *pk = xcalloc(1, sizeof(*pk));
	pk->cl = cl;
	pk->id = xstrdup(c->id);
	pk->next = cl->parks;
	cl->parks = pk;
	store_after_commit(srv->store, cluster_parked, pk);
	log_write(srv->log, LOG_LEVEL_INFO, "client %s: session parked in the store at %llu-%llu%s",
		  c->id, (unsigned long long)cursor[0].ms, (unsigned long long)cursor[0].seq,
		  cl->nparts > 1 ? " (in its first partition)" : "");
	free(cursor);
	client_forget(c);
}

/* ---- subscriptions ---- */

void cluster_sub_since(struct server *srv, struct sub *s)
{
	struct cluster *cl = srv->cluster;

	cluster_share_subscribed(srv->cluster_shares, s);
	if (cl->nparts == 1) {
		s->since_ms = cl->routed[0].ms;
		s->since_seq = cl->routed[0].seq;
		return;
	}
	/* Live routing brings only entries after the mark; a catch-up of its
	 * session brings older ones, which it must not match. */
	s->since_ms = s->since_seq = 0;
	for (struct cluster_catchup *cu = cl->catchups; cu; cu = cu->next) {
		if (cu->c != s->owner)
			continue;
		for (size_t k = 0; k < cu->nsince; k++)
			if (strcmp(cu->since[k].filter, s->filter) == 0) {
				memcpy(cu->since[k].at, cl->routed,
				       cl->nparts * sizeof(*cl->routed));
				return;
			}
		cu->since = xrealloc(cu->since, (cu->nsince + 1) * sizeof(*cu->since));
		cu->since[cu->nsince++] =
		    (struct cluster_since){xstrdup(s->filter), posv_dup(cl, cl->routed)};
	}
}

/* ---- publishing ---- */

/* A retained message this node published and set in its own copy at
 * once, until its append commits. */
struct cluster_retain {
	struct server *srv;
	struct message *m;
	struct message *prev;     /* the copy it replaced (a reference), or NULL */
	struct client *publisher; /* a reference */
};

/*
 * The append went with the publisher's session writes. When another node
 * had claimed the session, those writes were dropped (the commit reported
 * the session fenced, or a kick made this node drop it and its staged
 * writes), and the provisional copy is wrong: put back the one it
 * replaced, unless something newer (the reader, another publish) has
 * replaced it since. The reader sets its own copy of every entry it
 * brings, so a copy that is still this message's object was not brought
 * back from the log. Clears are not undone (an empty copy says nothing of
 * who cleared it): a clear that was dropped leaves this node without the
 * message until the topic's next retained write.
 */
static void cluster_retain_done(void *arg, bool durable)
{
	struct cluster_retain *k = arg;
	struct router *r = k->srv->router;

	if (durable && k->publisher->cluster_lost &&
	    router_retained_get(r, k->m->topic, k->m->topic_len) == k->m)
		router_retained_put(r, k->m->topic, k->m->topic_len, k->prev);
	message_unref(k->m);
	if (k->prev)
		message_unref(k->prev);
	client_unref(k->publisher);
	free(k);
}

void cluster_publish(struct server *srv, struct message *m, const struct client *publisher)
{
	cluster_log_append(srv, publisher ? publisher->id : "", m);
	if (!m->retain)
		return;
	/* A SUBSCRIBE right after the PUBLISH finds it here, whatever the
	 * reader's pace; the entry sets it again when it comes back. */
	if (publisher && m->payload_len) {
		struct cluster_retain *k = xmalloc(sizeof(*k));
		struct message *prev = router_retained_get(srv->router, m->topic, m->topic_len);

		k->srv = srv;
		k->m = message_ref(m);
		k->prev = prev ? message_ref(prev) : NULL;
		k->publisher = client_ref((struct client *)publisher);
		store_after_commit(srv->store, cluster_retain_done, k);
	}
	router_retain_local(srv->router, m);
}

/* ---- a node that cannot commit ---- */

static void cluster_unhealthy_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cluster *cl = arg;
	struct server *srv = cl->srv;
	struct server_client_map *m = &srv->clients;
	size_t n = 0;
	(void)fd;
	(void)what;
	if (cl->stopped || store_is_healthy(srv->store))
		return;
	/* Their sessions stay in the store: the node they reconnect to claims
	 * them. Wills are not due: the clients are not gone. The connections
	 * are gathered first: closing one parks and forgets its session, which
	 * changes the map (a connection is freed later, from the loop). */
	struct conn **cns = xmalloc((m->count + 1) * sizeof(*cns));
	for (size_t i = 0; i < m->nbuckets; i++)
		for (struct client *c = m->buckets[i]; c; c = c->map_next)
			if (c->conn && conn_is_open(c->conn) && n < m->count)
				cns[n++] = c->conn;
	for (size_t i = 0; i < n; i++)
		conn_disconnect(cns[i], CLUSTER_RC_USE_ANOTHER_SERVER,
				"this node cannot reach the store: use another node", false);
	free(cns);
	log_write(srv->log, LOG_LEVEL_ERROR,
		  "the store has been unreachable for redis_connect_timeout: %zu clients "
		  "disconnected so that they move to another node",
		  n);
}

/* An idle node commits nothing, so it would never learn that it lost the
 * store: every second it writes its mark again (one SET), and a commit that
 * fails makes the store unhealthy like any other. */
static void cluster_beat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cluster *cl = arg;
	(void)fd;
	(void)what;
	if (!cl->stopped)
		cluster_mark(cl);
}

void cluster_store_health(struct server *srv, bool healthy)
{
	struct cluster *cl = srv->cluster;
	if (!cl || cl->stopped)
		return;
	if (healthy) {
		event_del(cl->unhealthy_ev);
		return;
	}
	const char *t = config_get_option(srv->cfg, "redis_connect_timeout");
	long ms = t ? strtol(t, NULL, 10) : 10000;
	if (ms <= 0)
		ms = 10000;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(cl->unhealthy_ev, &tv);
}

/* ---- start and stop ---- */

int cluster_start(struct server *srv)
{
	if (!store_can_share(srv->store)) {
		log_write(srv->log, LOG_LEVEL_ERROR,
			  "cluster true: the %s store cannot be shared (use persistence_backend "
			  "redis)",
			  store_name(srv->store));
		return -1;
	}
	struct cluster *cl = xcalloc(1, sizeof(*cl));
	cl->srv = srv;
	cl->hooks = (struct cairn_cluster_hooks){
	    .arg = cl,
	    .entries = cluster_entries,
	    .kicked = cluster_kicked,
	    .fenced = cluster_fenced,
	    .will_allowed = cluster_will_allowed,
	};
	uint64_t base = 0;
	cl->nparts = srv->cfg->cluster_log_partitions ? srv->cfg->cluster_log_partitions : 1;
	cl->routed = xcalloc(cl->nparts, sizeof(*cl->routed));
	int rc = store_cluster_start(srv->store, &cl->hooks, cl->routed, &base);
	if (rc != 0) {
		log_write(srv->log, LOG_LEVEL_ERROR, "cannot join the cluster: %s",
			  cairn_strerror(rc));
		free(cl->routed);
		free(cl);
		return -1;
	}
	if (srv->next_msg_id < base)
		srv->next_msg_id = base;
	/* The mark exists from the start: a session this node holds without a
	 * cursor of its own (a new one, or one caught up) is exact up to it,
	 * even if no entry is ever routed here. */
	cluster_mark(cl);
	cl->unhealthy_ev = evtimer_new(srv->base, cluster_unhealthy_cb, cl);
	cl->beat_ev = event_new(srv->base, -1, EV_PERSIST, cluster_beat_cb, cl);
	struct timeval sec = {1, 0};
	event_add(cl->beat_ev, &sec);
	srv->cluster = cl;
	srv->cluster_shares = cluster_share_new(srv, cl->nparts, cl->routed);
	return 0;
}

void cluster_stop(struct server *srv)
{
	if (srv->cluster) {
		srv->cluster->stopped = true;
		event_del(srv->cluster->beat_ev);
		cluster_share_stop(srv->cluster_shares);
	}
}

void cluster_free(struct server *srv)
{
	struct cluster *cl = srv->cluster;
	if (!cl)
		return;
	while (cl->claims) {
		struct cluster_claim *k = cl->claims;
		if (k->cn)
			conn_release_hold(k->cn);
		claim_free(k);
	}
	while (cl->deferred) {
		struct cluster_claim *k = cl->deferred;
		cl->deferred = k->next;
		k->next = cl->claims; /* claim_free unlinks from claims */
		cl->claims = k;
		if (k->cn)
			conn_release_hold(k->cn);
		claim_free(k);
	}
	while (cl->catchups)
		cluster_catchup_free(cl->catchups);
	for (size_t i = 0; i < cl->nfloors; i++) {
		client_unref(cl->floors[i].c);
		free(cl->floors[i].floor);
	}
	free(cl->floors);
	cluster_share_free(srv->cluster_shares);
	srv->cluster_shares = NULL;
	free(cl->routed);
	if (cl->unhealthy_ev)
		event_free(cl->unhealthy_ev);
	if (cl->beat_ev)
		event_free(cl->beat_ev);
	free(cl);
	srv->cluster = NULL;
}
