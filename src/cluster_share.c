/*
 * Shared subscriptions across the nodes of a cluster ("$share/GROUP/FILTER"
 * with a store of vtable version 6).
 *
 * Every node reads the whole log and routes it to its own sessions
 * (cluster.c), but a group's message must reach one member in the whole
 * cluster. So the live routing leaves groups out (router_shares_apart), and
 * the store hands the log to each group once for all the nodes: in each
 * partition a group reads the log from where it was first joined, and each
 * entry goes to one reader, a node with a member of the group online
 * (Redis: a consumer group on each partition's stream, one consumer per
 * node). That node gives the entry to one of its members, chosen among
 * its online members as on one node (share_pick_group), through the
 * normal path: the delivery is staged into the member's queue, and the
 * entry is acknowledged to the store once the commit holding it is done.
 * An entry that does not match the group's filter is acknowledged as it
 * comes (the group reads every entry of the partition).
 *
 * An entry a node read but did not acknowledge (the node died or stalled,
 * its member's session moved to another node before the commit, the
 * commit failed) is taken over by a node of the group after
 * CSH_CLAIM_IDLE_MS, and given to one of its members. With a store of
 * version 7 a QoS 1 or 2 entry still reaches one member once: its
 * delivery's commit also records it in the member's session
 * (store_share_given), the member's connection sends it only once that
 * commit is done (corked), and the takeover asks the group's members
 * first: an entry one of them was given stays that member's (the store
 * acknowledges it), the others are marked taken, so that the stalled
 * reader's late commit is fenced (its member disconnected) rather than
 * giving one out a second time. A member that left the group in between
 * is not asked. While no node dies, each entry is read once and reaches
 * one member once; a node that stops acknowledges what its last commit
 * gave out as the store closes (store_close runs the completions, the
 * backend sends what they ask before its link goes).
 *
 * A group with no member online anywhere is read by nobody: its entries
 * wait in the store, and the first member to come online on any node gets
 * them (those the log still holds: message_retention). A member that
 * leaves (UNSUBSCRIBE, or its session ends on the node holding it) leaves
 * the group in the store, and the group stops reading when it has no
 * member left.
 */
#include "cluster_share.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "client.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "message.h"
#include "router.h"
#include "server.h"
#include "share.h"
#include "store.h"
#include "topic.h"
#include "util.h"

/* Entries one read asks for at most: fewer when this node's members of
 * the group have less room (csh_room), none when they have none. */
#define CSH_READ_COUNT 256
/* Entries a group holds here read but not yet acknowledged (given out,
 * their commit not yet done), over its partitions: a read stops there. */
#define CSH_HELD_MAX 512
/* A member's queue counted as full at this many, for reading's sake, when
 * max_queued_messages is 0 (unlimited): the group's entries wait in the
 * store rather than in the member's memory. */
#define CSH_QUEUE_UNLIMITED 1000
/* Every this often each group with a member online here reads each
 * partition, besides the reads new entries trigger (cluster_share_wake):
 * a member that comes online, or a read that failed, waits at most this.
 * A partition whose reads come back empty is read half as often each
 * time, down to every CSH_IDLE_MS (new entries wake it at once). */
#define CSH_TICK_MS 200
#define CSH_IDLE_MS 5000
/* How often a group's reader looks for entries left unacknowledged, and
 * how long one must be left so before it is taken over. */
#define CSH_CLAIM_EVERY_MS 1000
#define CSH_CLAIM_IDLE_MS  5000

struct csh_group;

/* A call to the store about one partition of a group: its argument, kept
 * in the group (at most one read is under way), so that a call the store
 * drops when it closes leaves nothing to free. */
struct csh_call {
	struct csh_group *g;
	uint32_t part;
	bool claim;   /* a read: the one taking over what a reader left */
	bool mine;    /* a read: of this reader's own unacknowledged entries */
	size_t count; /* a read: the entries asked for */
};

/* A member's join of one partition, kept in its group until the store
 * took it: one that failed (the store unreachable) is sent again at each
 * tick, so that the member set in the store has every member. */
struct csh_join {
	struct csh_join *next;
	struct csh_group *g;
	uint32_t part;
	char *member; /* NULL: the group's own join (pt->join), only reading */
	bool busy;    /* a share_join is on its way */
	bool failed;  /* one failed already (logged once) */
	bool gone;    /* the member left meanwhile: not sent again */
};

/* Per partition. */
struct csh_part {
	bool joined;      /* the store reads the group in this partition */
	unsigned joining; /* share_joins on their way */
	bool reading;     /* a share_read is on its way */
	bool again;       /* new entries came meanwhile: read again after it */
	/* Entries read here were left unacknowledged (no member with room, or
	 * a delivery dropped for a full queue): the next reads are of this
	 * reader's own entries, oldest first, before any new one (order). */
	bool mine;
	uint32_t held; /* entries given out here, not yet acknowledged */
	/* The group's filter matches no topic of this partition (its first
	 * level is literal, and its topics are in another): never read. */
	bool outside;
	uint32_t delay_ms; /* between the tick's reads (0: CSH_TICK_MS) */
	uint64_t next_ms;  /* the tick's next read */
	uint64_t claimed_ms;
	struct csh_join join; /* the group's own join, without a member */
	struct csh_call read;
};

/* A group that has (or had) a member here. */
struct csh_group {
	struct csh_group *next;
	struct cluster_shares *sh;
	char *key; /* "GROUP/FILTER", NUL-terminated */
	size_t len, group_len;
	bool seen;       /* in the router's set at the last tick */
	bool online;     /* ... with a member online */
	bool was_online; /* at the tick before */
	unsigned refs;   /* calls and completions under way */
	uint32_t held;   /* the parts' held, summed */
	struct csh_part *parts;
	struct csh_join *joins; /* its members' joins not yet taken */
};

struct cluster_shares {
	struct server *srv;
	uint32_t nparts;
	const struct cairn_log_pos *routed;
	struct csh_group *groups;
	struct event *tick;
	bool stopped;
#ifdef CAIRN_FAULT_INJECTION
	uint64_t kill_after; /* share_test_kill_after (0: never) */
	uint64_t given;
	uint64_t stop_before; /* share_test_stop_before_commit (0: never) */
	uint64_t staged;
#endif
};

/* Entries given out, acknowledged once the commit holding their
 * deliveries is done. */
struct csh_ack {
	struct csh_group *g;
	uint32_t part;
	size_t n;
	struct cairn_log_pos *pos;
	struct client **to; /* the member each went to (a reference), or NULL */
	uint64_t *corked;   /* the member's connection corked for it (its id), or 0 */
	uint32_t given;     /* how many went to a member (counted in held) */
};

static uint64_t csh_now_ms(void)
{
	return store_now_ns() / 1000000;
}

static struct csh_group *csh_find(struct cluster_shares *sh, const char *key, size_t len)
{
	for (struct csh_group *g = sh->groups; g; g = g->next)
		if (g->len == len && memcmp(g->key, key, len) == 0)
			return g;
	return NULL;
}

static struct csh_group *csh_get(struct cluster_shares *sh, const char *key, size_t len,
				 size_t group_len)
{
	struct csh_group *g = csh_find(sh, key, len);

	if (g != NULL)
		return g;
	g = xcalloc(1, sizeof(*g));
	g->sh = sh;
	g->key = xstrndup(key, len);
	g->len = len;
	g->group_len = group_len;
	g->parts = xcalloc(sh->nparts, sizeof(*g->parts));
	g->next = sh->groups;
	sh->groups = g;
	return g;
}

static void csh_join_free(struct csh_join *j)
{
	free(j->member);
	free(j);
}

static void csh_group_free(struct csh_group *g)
{
	while (g->joins) {
		struct csh_join *j = g->joins;

		g->joins = j->next;
		csh_join_free(j);
	}
	free(g->parts);
	free(g->key);
	free(g);
}

/* ---- joining ---- */

static void csh_join_unlink(struct csh_join *j)
{
	for (struct csh_join **pp = &j->g->joins; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	csh_join_free(j);
}

static void csh_join_done(struct csh_join *j, int status)
{
	struct csh_group *g = j->g;
	struct csh_part *pt = &g->parts[j->part];

	if (status == 0) {
		pt->joined = true;
		if (j->member != NULL)
			csh_join_unlink(j);
		return;
	}
	if (j->member != NULL && j->gone) {
		csh_join_unlink(j);
		return;
	}
	if (!j->failed)
		log_write(g->sh->srv->log, LOG_LEVEL_WARNING,
			  "shared subscription group '%s': joining it in the store "
			  "(partition %u%s%s) failed: %s; trying again",
			  g->key, (unsigned)j->part, j->member ? ", member " : "",
			  j->member ? j->member : "", cairn_strerror(status));
	j->failed = true;
}

static void csh_joined(void *arg, int status)
{
	struct csh_join *j = arg;
	struct csh_group *g = j->g;

	g->refs--;
	g->parts[j->part].joining--;
	j->busy = false;
	if (!g->sh->stopped)
		csh_join_done(j, status);
}

/* Send join j (again). */
static void csh_join_send(struct csh_join *j)
{
	struct csh_group *g = j->g;
	struct cluster_shares *sh = g->sh;
	int rc;

	g->refs++;
	g->parts[j->part].joining++;
	j->busy = true;
	rc = store_share_join(sh->srv->store, j->part, g->key, j->member, sh->routed[j->part],
			      csh_joined, j);
	if (rc != CAIRN_EINPROGRESS) {
		g->refs--;
		g->parts[j->part].joining--;
		j->busy = false;
		/* 0 at once: the group reads nothing of that partition. */
		if (rc == 0)
			g->parts[j->part].outside = true;
		csh_join_done(j, rc);
	}
}

/* Join g in partition part for member (NULL: only make sure it reads). */
static void csh_join(struct csh_group *g, uint32_t part, const char *member)
{
	struct csh_join *j = &g->parts[part].join;

	if (member != NULL) {
		j = xcalloc(1, sizeof(*j));
		j->member = xstrdup(member);
		j->next = g->joins;
		g->joins = j;
	}
	j->g = g;
	j->part = part;
	csh_join_send(j);
}

/* The joins of g that failed go again; those of members gone are let go. */
static void csh_join_retry(struct csh_group *g)
{
	for (struct csh_join *j = g->joins, *next; j; j = next) {
		next = j->next;
		if (j->busy)
			continue;
		if (j->gone)
			csh_join_unlink(j);
		else
			csh_join_send(j);
	}
}

/* ---- giving entries out ---- */

static bool csh_online(struct csh_group *g);
static void csh_read(struct csh_group *g, uint32_t part, bool claim);

/* How many more messages member session can take now without one being
 * dropped for a full queue: its window's free places (while nothing
 * waits before them) and its queue's. 0 while it is offline. */
static uint32_t csh_room(void *session)
{
	const struct client *c = session;
	const struct config *cfg = c->srv->cfg;
	uint64_t room = 0;

	if (c->dead || !client_is_connected(c))
		return 0;
	uint32_t win = cfg->max_inflight_messages;
	if (win == 0 || win > 65535)
		win = 65535;
	if (c->version == CODEC_V5 && c->recv_max && c->recv_max < win)
		win = c->recv_max;
	if (c->queued.head == NULL && c->inflight.count < win)
		room += win - c->inflight.count;
	uint32_t qmax = cfg->max_queued_messages ? cfg->max_queued_messages : CSH_QUEUE_UNLIMITED;
	bool bytes_full = cfg->max_queued_bytes && c->queued_bytes >= cfg->max_queued_bytes;
	if (c->queued.count < qmax && !bytes_full)
		room += qmax - c->queued.count;
	return room > CSH_READ_COUNT ? CSH_READ_COUNT : (uint32_t)room;
}

static void csh_acked(void *arg, bool durable)
{
	struct csh_ack *a = arg;
	struct csh_group *g = a->g;
	size_t k = 0;

	g->refs--;
	g->held -= a->given;
	g->parts[a->part].held -= a->given;
#ifdef CAIRN_FAULT_INJECTION
	/* The worst moment for a reader to die: its deliveries are in the
	 * members' sessions, the entries not yet acknowledged. */
	g->sh->given += durable ? a->given : 0;
	if (g->sh->kill_after > 0 && g->sh->given >= g->sh->kill_after)
		raise(SIGKILL);
#endif
	for (size_t i = 0; i < a->n; i++) {
		/* A delivery to a session another node took meanwhile was
		 * dropped with its writes: the entry stays for a takeover. */
		if (a->to[i] == NULL || !a->to[i]->cluster_lost)
			a->pos[k++] = a->pos[i];
		/* Its PUBLISH goes now that the commit gave it (and not if
		 * the commit was fenced: cluster_drop_session dropped it). */
		if (a->corked[i] != 0 && a->to[i]->conn != NULL &&
		    conn_id(a->to[i]->conn) == a->corked[i])
			conn_set_corked(a->to[i]->conn, false);
		if (a->to[i] != NULL)
			client_unref(a->to[i]);
	}
	/* Also while the node stops: the store's close runs the last
	 * commit's completions before its link goes, and sends what they
	 * ask (the redis backend waits for the replies). Not acknowledged,
	 * these entries would be taken over, and given out a second time. */
	if (durable && g->sh->srv->store != NULL &&
	    store_share_ack(g->sh->srv->store, a->part, g->key, a->pos, k) == 0)
		g->sh->srv->stats.cluster_share_acked += k;
	uint32_t part = a->part;
	bool gave = a->given > 0;
	free(a->pos);
	free(a->to);
	free(a->corked);
	free(a);
	/* The reader's own entries are read again only when none of them is
	 * on its way to an acknowledgement (it would be given out twice), and
	 * at once only after a batch that gave something out: one that a full
	 * member refused waits for the tick, not read again in a loop. */
	struct csh_part *pt = &g->parts[part];
	if (gave && !g->sh->stopped && pt->mine && pt->held == 0 && !pt->reading && pt->joined &&
	    csh_online(g))
		csh_read(g, part, false);
}

/* Give e[0..n) out; true when some matching entry was left (no member
 * here had room). */
static bool csh_give(struct csh_group *g, uint32_t part, const struct cairn_log_entry *e, size_t n)
{
	struct server *srv = g->sh->srv;
	struct share_set *set = router_shares(srv->router);
	const char *filter = g->key + g->group_len + 1;
	size_t flen = g->len - g->group_len - 1;
	struct csh_ack *a = xcalloc(1, sizeof(*a));

	a->g = g;
	a->part = part;
	a->pos = xmalloc(n * sizeof(*a->pos));
	a->to = xcalloc(n, sizeof(*a->to));
	a->corked = xcalloc(n, sizeof(*a->corked));
	bool left = false;
	bool once_ok = store_share_once(srv->store); /* store version 7 */

	store_unit(srv->store, true);
	for (size_t i = 0; i < n; i++) {
		const char *t = e[i].msg.topic;
		struct share_pick pk;
		size_t matched, full;

		if (!topic_matches(filter, flen, t, strlen(t))) {
			a->pos[a->n++] = e[i].pos;
			continue;
		}
		/* No member here with room (or none at all): this entry and the
		 * matching ones after it stay unacknowledged, this reader's, to
		 * be read again in order (or taken over by another node after
		 * the idle time). Never acknowledged unless given out. */
		if (left || !share_pick_group_room(set, g->key, g->len, csh_room, &pk)) {
			left = true;
			continue;
		}
		/* Given once (store version 7): the member's output waits for
		 * the commit that gives it the entry (a reader that dies first
		 * must not have sent it), and the commit records the entry in
		 * the member's session with the delivery: a takeover elsewhere
		 * asks the members before giving it out again. QoS 0 goes at
		 * most once anyway. A clean member's session does not store
		 * the delivery (it ends with the connection): marked given, an
		 * entry its reader left unacknowledged would reach nobody, so
		 * it stays at least once. */
		struct client *to = pk.session;
		bool once = once_ok && e[i].msg.qos > 0 && pk.qos > 0 && !to->clean;
		uint64_t corked = 0;
		if (once && to->conn != NULL) {
			conn_set_corked(to->conn, true);
			corked = conn_id(to->conn);
		}
		/* No Local does not apply to a group: no origin. */
		struct message *m = message_from_log(&e[i]);
		router_deliver_pick(srv->router, m, &pk);
		message_unref(m);
		router_last_result(srv->router, &matched, &full);
		if (full > 0) {
			if (corked != 0)
				conn_set_corked(to->conn, false);
			left = true; /* dropped (bytes): not given out */
			continue;
		}
		a->corked[a->n] = corked;
		srv->stats.cluster_share_delivered++;
		if (once)
			store_share_given(srv->store, part, g->key, to->id, e[i].pos);
		a->to[a->n] = client_ref(pk.session);
		a->pos[a->n++] = e[i].pos;
		a->given++;
	}
	store_unit(srv->store, false);
#ifdef CAIRN_FAULT_INJECTION
	/* A reader that stalls with deliveries staged, its commit not sent. */
	g->sh->staged += a->given;
	if (g->sh->stop_before > 0 && g->sh->staged >= g->sh->stop_before) {
		g->sh->stop_before = 0;
		raise(SIGSTOP);
	}
#endif
	if (left)
		g->parts[part].mine = true;
	g->held += a->given;
	g->parts[part].held += a->given;
	g->refs++;
	store_after_commit(srv->store, csh_acked, a);
	return left;
}

/* Whether g has a member online here now (a read for it is worth it: what
 * it reads waits for a takeover when nobody here can take it). */
static bool csh_online(struct csh_group *g)
{
	g->online = share_group_online(router_shares(g->sh->srv->router), g->key, g->len);
	return g->online;
}

static void csh_read_cb(void *arg, int status, const struct cairn_log_entry *e, size_t n)
{
	struct csh_call *k = arg;
	struct csh_group *g = k->g;
	uint32_t part = k->part;

	g->refs--;
	g->parts[part].reading = false;
	if (g->sh->stopped)
		return;
	if (status == CAIRN_ENOTFOUND) {
		/* The store lost the group (it had no member left there, or the
		 * store was emptied): join it again from here on. */
		g->parts[part].joined = false;
		return;
	}
	bool again = g->parts[part].again;
	g->parts[part].again = false;
	if (status != 0)
		return; /* the next tick reads again */
	if (k->claim)
		g->sh->srv->stats.cluster_share_taken_over += n;
	/* Fewer of its own than asked: none left but these (or on their way
	 * to an acknowledgement, which a read of its own waits for). */
	if (k->mine && n < k->count)
		g->parts[part].mine = false;
	/* Idle: the tick reads it less often (cluster_share_wake and a
	 * member coming online bring it back). */
	struct csh_part *pt = &g->parts[part];
	if (n == 0 && !again && !pt->mine) {
		uint32_t d = pt->delay_ms ? pt->delay_ms * 2 : CSH_TICK_MS * 2;
		pt->delay_ms = d > CSH_IDLE_MS ? CSH_IDLE_MS : d;
	} else {
		pt->delay_ms = 0;
	}
	/* Read on at once while what was read was given out (or was not the
	 * group's); entries a full member left wait for the tick. */
	bool left = n > 0 && csh_give(g, part, e, n);
	if ((n == k->count || again) && !left && csh_online(g))
		csh_read(g, part, false);
}

static void csh_read(struct csh_group *g, uint32_t part, bool claim)
{
	struct cluster_shares *sh = g->sh;
	struct csh_part *pt = &g->parts[part];
	struct csh_call *k = &pt->read;
	uint64_t room = share_group_room(router_shares(sh->srv->router), g->key, g->len, csh_room);
	size_t count = CSH_READ_COUNT;

	/* Only as much as the members here can take: the rest waits in the
	 * store, for them or for another node's. */
	if (room < count)
		count = (size_t)room;
	if (g->held >= CSH_HELD_MAX)
		count = 0;
	else if (CSH_HELD_MAX - g->held < count)
		count = CSH_HELD_MAX - g->held;
	/* Its own left entries first; read once none is on its way to an
	 * acknowledgement (csh_acked reads then). */
	if (count == 0 || (pt->mine && !claim && pt->held > 0))
		return;
	k->g = g;
	k->part = part;
	k->claim = claim;
	k->mine = !claim && pt->mine;
	k->count = count;
	g->refs++;
	pt->reading = true;
	if (store_share_read(sh->srv->store, part, g->key, count,
			     claim     ? CSH_CLAIM_IDLE_MS
			     : k->mine ? CAIRN_SHARE_READ_MINE
				       : 0,
			     csh_read_cb, k) != CAIRN_EINPROGRESS) {
		g->refs--;
		g->parts[part].reading = false;
	}
}

/* ---- the groups of this node's members ---- */

static void csh_seen(void *arg, const char *key, size_t len, size_t group_len, bool online)
{
	struct csh_group *g = csh_get(arg, key, len, group_len);

	g->seen = true;
	g->online = online;
}

static void csh_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cluster_shares *sh = arg;
	uint64_t now = csh_now_ms();

	(void)fd;
	(void)what;
	if (sh->stopped)
		return;
	for (struct csh_group *g = sh->groups; g; g = g->next)
		g->seen = g->online = false;
	share_foreach_group(router_shares(sh->srv->router), csh_seen, sh);
	for (struct csh_group **pp = &sh->groups; *pp;) {
		struct csh_group *g = *pp;

		if (!g->seen && g->refs == 0) {
			*pp = g->next;
			csh_group_free(g);
			continue;
		}
		pp = &g->next;
		csh_join_retry(g);
		bool back = g->online && !g->was_online;
		g->was_online = g->online;
		if (!g->online)
			continue;
		for (uint32_t p = 0; p < sh->nparts; p++) {
			struct csh_part *pt = &g->parts[p];

			if (!pt->joined) {
				/* A member restored here (a session claimed from the
				 * store): its group is there already, unless the store
				 * lost it. */
				if (!pt->joining)
					csh_join(g, p, NULL);
				continue;
			}
			if (back)
				pt->delay_ms = pt->next_ms = 0; /* a member online again */
			if (pt->reading || pt->outside || now < pt->next_ms)
				continue;
			pt->next_ms = now + (pt->delay_ms ? pt->delay_ms : CSH_TICK_MS);
			bool claim = now - pt->claimed_ms >= CSH_CLAIM_EVERY_MS;
			if (claim)
				pt->claimed_ms = now;
			csh_read(g, p, claim);
		}
	}
}

void cluster_share_wake(struct cluster_shares *sh, uint32_t part)
{
	if (sh == NULL || sh->stopped || part >= sh->nparts)
		return;
	for (struct csh_group *g = sh->groups; g; g = g->next) {
		struct csh_part *pt = &g->parts[part];

		if (!pt->joined || pt->outside || !csh_online(g))
			continue;
		pt->delay_ms = pt->next_ms = 0;
		if (pt->reading)
			pt->again = true; /* it may have been answered before they came */
		else
			csh_read(g, part, false);
	}
}

void cluster_share_subscribed(struct cluster_shares *sh, const struct sub *s)
{
	struct topic_subfilter sf;

	if (sh == NULL || sh->stopped || !topic_is_shared(s->filter, s->len) ||
	    topic_subfilter_parse(s->filter, s->len, &sf) != TOPIC_OK)
		return;
	struct csh_group *g =
	    csh_get(sh, sf.group, (size_t)(sf.filter + sf.filter_len - sf.group), sf.group_len);
	g->seen = g->online = true;
	for (uint32_t p = 0; p < sh->nparts; p++)
		csh_join(g, p, s->owner->id);
}

static void csh_leave(struct server *srv, const struct client *c, const char *filter, size_t len)
{
	struct topic_subfilter sf;

	if (!topic_is_shared(filter, len) || topic_subfilter_parse(filter, len, &sf) != TOPIC_OK)
		return;
	size_t klen = (size_t)(sf.filter + sf.filter_len - sf.group);
	struct csh_group *g = csh_find(srv->cluster_shares, sf.group, klen);
	/* A join of the member not yet taken is not sent again. */
	if (g != NULL)
		for (struct csh_join *j = g->joins; j; j = j->next)
			if (strcmp(j->member, c->id) == 0)
				j->gone = true;
	char *key = xstrndup(sf.group, klen);
	for (uint32_t p = 0; p < srv->cluster_shares->nparts; p++)
		store_share_leave(srv->store, p, key, c->id);
	free(key);
}

void cluster_share_left(struct server *srv, const struct client *c, const char *filter, size_t len)
{
	/* Also while the node stops: a clean session ending at the shutdown
	 * leaves its groups (the store is open until the connections are
	 * gone). */
	if (srv->cluster_shares == NULL || srv->store == NULL)
		return;
	if (filter != NULL) {
		csh_leave(srv, c, filter, len);
		return;
	}
	for (uint32_t i = 0; i < c->subs.cap; i++)
		for (const struct sub *s = c->subs.slots[i]; s; s = s->hnext)
			csh_leave(srv, c, s->filter, s->len);
}

bool cluster_share_available(const struct server *srv)
{
	return srv->cluster_shares != NULL;
}

/* ---- start and stop ---- */

struct cluster_shares *cluster_share_new(struct server *srv, uint32_t nparts,
					 const struct cairn_log_pos *routed)
{
	if (!store_can_share_groups(srv->store))
		return NULL;
	struct cluster_shares *sh = xcalloc(1, sizeof(*sh));
	struct timeval tv = {0, CSH_TICK_MS * 1000};

	sh->srv = srv;
	sh->nparts = nparts;
	sh->routed = routed;
#ifdef CAIRN_FAULT_INJECTION
	const char *v = config_get_option(srv->cfg, "share_test_kill_after");
	sh->kill_after = v ? strtoull(v, NULL, 10) : 0;
	v = config_get_option(srv->cfg, "share_test_stop_before_commit");
	sh->stop_before = v ? strtoull(v, NULL, 10) : 0;
#endif
	sh->tick = event_new(srv->base, -1, EV_PERSIST, csh_tick_cb, sh);
	event_add(sh->tick, &tv);
	router_shares_apart(srv->router);
	return sh;
}

void cluster_share_stop(struct cluster_shares *sh)
{
	if (sh == NULL)
		return;
	sh->stopped = true;
	event_del(sh->tick);
}

void cluster_share_free(struct cluster_shares *sh)
{
	if (sh == NULL)
		return;
	while (sh->groups) {
		struct csh_group *g = sh->groups;

		sh->groups = g->next;
		csh_group_free(g);
	}
	event_free(sh->tick);
	free(sh);
}
