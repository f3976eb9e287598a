/*
 * Shared subscription groups in cluster mode (vtable version 6;
 * cairn-redis(5) has the keys). A group GROUP/FILTER is, in each partition
 * p of the log, a consumer group named GROUP/FILTER on the partition's
 * stream PREFIX{L:p}:log, and the set of its members' client ids
 * PREFIX{L:p}:share:GROUP/FILTER, in the same slot. Each node reads the
 * consumer group as consumer INC (its incarnation): XREADGROUP gives each
 * entry to one node, XACK retires it, XAUTOCLAIM hands an entry left
 * unacknowledged (a node that died) to another. Joining and leaving are
 * each one script, so the consumer group exists exactly while the set has
 * a member: the first member creates it at the joining node's mark, the
 * last one to leave destroys it.
 *
 * Given once (vtable version 7): rd_share_given stages CAIRN.SHARE into
 * the member's session (its slot {c:ID}, fenced as its other writes):
 * cairn_commit sets the entry's field of PREFIX{c:ID}:shared to "d", or
 * fences the session if a takeover marked it "t:INC" of another
 * incarnation. A takeover takes the ids (XAUTOCLAIM ... JUSTID), asks
 * every member in the set, one FCALL cairn_share_taken in each member's
 * slot, which it was given (marking the others taken there), acknowledges
 * those, and reads the rest in full (XCLAIM) for the core to give out.
 */
#include "redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

/* KEYS: the log, the members. ARGV: group, member ("" for none), the id to
 * read after when the group is new. */
static const char rd_share_join_lua[] =
    "if ARGV[2] ~= '' then redis.call('SADD', KEYS[2], ARGV[2]) end\n"
    "local ok, e = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[3], "
    "'MKSTREAM')\n"
    "if not ok then\n"
    "  local m = type(e) == 'table' and e.err or tostring(e)\n"
    "  if not string.find(m, 'BUSYGROUP', 1, true) then return redis.error_reply(m) end\n"
    "end\n"
    "return 1\n";

/* KEYS: the log, the members. ARGV: group, member. */
static const char rd_share_leave_lua[] =
    "redis.call('SREM', KEYS[2], ARGV[2])\n"
    "if redis.call('SCARD', KEYS[2]) == 0 then\n"
    "  pcall(redis.call, 'XGROUP', 'DESTROY', KEYS[1], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* KEYS: the log. ARGV: group, this reader, an idle time (ms). Removes the
 * group's other readers that hold no entry and did nothing for that long
 * (dead incarnations; a live one is made again by its next read). */
static const char rd_share_gc_lua[] =
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local f = {}\n"
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
    "  if f.name ~= ARGV[2] and f.pending == 0 and f.idle >= tonumber(ARGV[3]) then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f.name)\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* How often at most a takeover that took nothing still asks a group's
 * members whether their sessions are gone (rd_share_claimed_cb). */
#define RD_SHARE_SWEEP_MS 10000

/* How long close waits at most for the replies to the leaves and
 * acknowledgements sent (or redis_connect_timeout, if shorter). */
#define RD_SHARE_DRAIN_MS 2000

struct rd_share_call {
	struct cairn_store *st;
	uint32_t part;
	cairn_store_done_fn done;
	cairn_log_read_fn read;
	void *arg;
	bool claim;
	bool xclaim;      /* the takeover's second read (XCLAIM: entries only) */
	char *group;      /* a read's */
	uint64_t idle_ms; /* a takeover's idle time */
	size_t count;     /* a read's COUNT */
	/* A takeover's entries (ids), between its XAUTOCLAIM and its XCLAIM,
	 * while the members are asked (rd_share_taken_cb). */
	char **ids;
	size_t nids;
	bool *given;   /* ids[i] was given to a member already */
	size_t asking; /* members' answers awaited */
	char **stale;  /* members found gone (share_taken), left after */
	size_t nstale;
	int status; /* the first failure among them */
	bool closing;
};

/* Send argv on the link that serves key: the commit link on one server,
 * the slot's master on a Redis Cluster. */
static int rd_share_send(struct cairn_store *st, const char *key, redisCallbackFn *cb, void *priv,
			 int argc, const char **argv, const size_t *lens)
{
	if (st->ac == NULL || st->ac_broken ||
	    (st->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) != 0)
		return CAIRN_EUNAVAILABLE;
	if ((st->rcluster ? rd_route_argv(st, key, strlen(key), cb, priv, argc, argv, lens)
			  : redisAsyncCommandArgv(st->ac, cb, priv, argc, argv, lens)) != REDIS_OK)
		return CAIRN_EUNAVAILABLE;
	return CAIRN_EINPROGRESS;
}

static char *rd_share_members_key(const struct cairn_store *st, const char *group, uint32_t part)
{
	char *kind = bk_strf("share:%s", group);
	char *key = rd_cluster_part_key(st, kind, part);

	free(kind);
	return key;
}

/* A member's marks of the shared groups' entries given to it (or taken
 * over elsewhere), in its session's slot (share_mark in the library). */
static char *rd_share_marks_key(const struct cairn_store *st, const char *member)
{
	return bk_strf("%s{c:%s}:shared", st->prefix, member);
}

/* An entry's field in the marks: "PART|ID|GROUP". */
static char *rd_share_field(uint32_t part, const char *id, const char *group)
{
	return bk_strf("%u|%s|%s", (unsigned)part, id, group);
}

/* The marks older than the cutoff (ms since the epoch) go: the log has
 * trimmed their entries (message_retention), no takeover can see them. The
 * keys themselves live for ttl seconds after their last write. */
static void rd_share_cutoff(const struct cairn_store *st, char cutoff[24], char ttl[24])
{
	int64_t keep = st->retention_ms + 60000;

	snprintf(cutoff, 24, "%lld", (long long)(rd_wall_ms() - keep));
	snprintf(ttl, 24, "%lld", (long long)(keep / 1000 + 60));
}

int rd_share_given(struct cairn_store *st, uint32_t part, const char *group, const char *member,
		   struct cairn_log_pos pos)
{
	char id[48], cutoff[24], ttl[24];
	char *key = rd_share_marks_key(st, member), *field;
	int rc;

	if (part >= st->partitions)
		return CAIRN_EINVAL;
	rd_pos_format(id, pos);
	field = rd_share_field(part, id, group);
	rd_share_cutoff(st, cutoff, ttl);
	const char *argv[] = {"CAIRN.SHARE", key, field, cutoff, ttl};
	st->stage_owner = member;
	rc = rd_stage(st, 5, argv, NULL);
	st->stage_owner = NULL;
	free(field);
	free(key);
	return rc;
}

/* Whether group ("GROUP/FILTER") can match a topic of partition part: not
 * when the filter's first level is literal and its topics are in another
 * partition (rd_log_partition). */
static bool rd_share_in_part(const struct cairn_store *st, const char *group, uint32_t part)
{
	const char *f = strchr(group, '/');

	if (st->partitions <= 1 || f == NULL)
		return true;
	f++;
	if ((f[0] == '+' || f[0] == '#') && (f[1] == '/' || f[1] == '\0'))
		return true;
	return rd_log_partition(f, st->partitions) == part;
}

static void rd_share_join_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_share_call *k = privdata;
	redisReply *reply = r;
	int status = 0;

	if (ac->data == NULL) {
		free(k); /* the store is closing: no callback */
		return;
	}
	if (reply == NULL) {
		status = CAIRN_EUNAVAILABLE;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		rd_log(k->st, CAIRN_LOG_ERROR, "redis at %s: joining a shared group failed: %s",
		       k->st->where, reply->str);
		status = CAIRN_EIO;
	}
	k->done(k->arg, status);
	free(k);
}

int rd_share_join(struct cairn_store *st, uint32_t part, const char *group, const char *member,
		  struct cairn_log_pos at, cairn_store_done_fn done, void *arg)
{
	char pos[48];
	char *members;
	struct rd_share_call *k;
	int rc;

	if (part >= st->partitions)
		return CAIRN_EINVAL;
	if (!rd_share_in_part(st, group, part))
		return 0;
	members = rd_share_members_key(st, group, part);
	rd_pos_format(pos, at);
	const char *argv[] = {"EVAL",
			      rd_share_join_lua,
			      "2",
			      st->log_keys[part],
			      members,
			      group,
			      member != NULL ? member : "",
			      pos};
	k = bk_xcalloc(1, sizeof(*k));
	k->st = st;
	k->part = part;
	k->done = done;
	k->arg = arg;
	rc = rd_share_send(st, members, rd_share_join_cb, k, 8, argv, NULL);
	if (rc != CAIRN_EINPROGRESS)
		free(k);
	free(members);
	return rc;
}

/* The reply to a leave or an acknowledgement (privdata: what it was). */
static void rd_share_log_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	redisReply *reply = r;
	struct cairn_store *st = ac->data;

	if (st == NULL)
		return; /* the store is closing */
	if (st->share_pending > 0)
		st->share_pending--;
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		rd_log(st, CAIRN_LOG_ERROR, "redis at %s: %s failed: %s", st->where,
		       (const char *)privdata, reply->str);
}

static int rd_share_send_logged(struct cairn_store *st, const char *key, const char *what, int argc,
				const char **argv)
{
	int rc = rd_share_send(st, key, rd_share_log_cb, (void *)what, argc, argv, NULL);

	if (rc == CAIRN_EINPROGRESS) {
		st->share_pending++;
		return 0;
	}
	return rc;
}

static void rd_share_late_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

void rd_share_drain(struct cairn_store *st)
{
	int ms = st->timeout_ms < RD_SHARE_DRAIN_MS ? st->timeout_ms : RD_SHARE_DRAIN_MS;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *ev;
	bool late = false;

	if (st->share_pending == 0 || st->base == NULL)
		return;
	ev = evtimer_new(st->base, rd_share_late_cb, &late);
	if (ev == NULL)
		return;
	evtimer_add(ev, &tv);
	while (st->share_pending > 0 && !late)
		if (event_base_loop(st->base, EVLOOP_ONCE) != 0)
			break;
	if (st->share_pending > 0)
		rd_log(st, CAIRN_LOG_WARNING,
		       "redis at %s: closing with %u shared group leaves or acknowledgements "
		       "unanswered",
		       st->where, st->share_pending);
	event_free(ev);
}

int rd_share_leave(struct cairn_store *st, uint32_t part, const char *group, const char *member)
{
	char *members;
	int rc;

	if (part >= st->partitions)
		return CAIRN_EINVAL;
	if (!rd_share_in_part(st, group, part))
		return 0;
	members = rd_share_members_key(st, group, part);
	const char *argv[] = {"EVAL", rd_share_leave_lua, "2", st->log_keys[part], members, group,
			      member};
	rc = rd_share_send_logged(st, members, "leaving a shared group", 7, argv);
	free(members);
	return rc;
}

/* Acknowledge the entries of a read's list that no member can ever get
 * (not cairn's, or trimmed away: [id, nil]); pending, they would come back
 * at each read of the reader's own entries and each takeover. e: the n
 * entries parsed from list, in its order. */
static bool rd_share_ack_unusable(struct cairn_store *st, const struct rd_share_call *k,
				  const redisReply *list, const struct cairn_log_entry *e, size_t n)
{
	bool sent = false;
	const char **argv = bk_xmalloc((list->elements + 3) * sizeof(*argv));
	int argc = 3;
	char id[48];

	argv[0] = "XACK";
	argv[1] = st->log_keys[k->part];
	argv[2] = k->group;
	for (size_t i = 0, j = 0; i < list->elements; i++) {
		const redisReply *x = list->element[i];

		if (x->type != REDIS_REPLY_ARRAY || x->elements == 0 ||
		    x->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if (j < n) {
			rd_pos_format(id, e[j].pos);
			if (strcmp(id, x->element[0]->str) == 0) {
				j++;
				continue;
			}
		}
		argv[argc++] = x->element[0]->str;
	}
	if (argc > 3)
		sent = rd_share_send_logged(st, argv[1],
					    "acknowledging a shared group's unusable entries", argc,
					    argv) == 0;
	free(argv);
	return sent;
}

static void rd_share_call_free(struct rd_share_call *k)
{
	for (size_t i = 0; i < k->nstale; i++)
		free(k->stale[i]);
	free(k->stale);
	for (size_t i = 0; i < k->nids; i++)
		free(k->ids[i]);
	free(k->ids);
	free(k->given);
	free(k->group);
	free(k);
}

static void rd_share_read_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Every member answered the takeover (rd_share_taken_cb): the entries given
 * to one already are acknowledged (that member gets them, from its session,
 * wherever it resumes), the others read in full, as this reader's. */
static void rd_share_checked(struct cairn_store *st, struct rd_share_call *k)
{
	const char *key = st->log_keys[k->part];
	const char **argv;
	size_t argc = 0, left = 0;
	int rc;

	if (k->closing) {
		rd_share_call_free(k);
		return;
	}
	if (k->status != 0) {
		k->read(k->arg, k->status, NULL, 0);
		rd_share_call_free(k);
		return;
	}
	/* Members whose session is gone leave the group here (those of a
	 * session that expired parked, or of a clean one whose node died):
	 * they kept the group, and its consumer group, alive. */
	for (size_t i = 0; i < k->nstale; i++) {
		rd_log(st, CAIRN_LOG_NOTICE,
		       "redis at %s: shared group '%s': member %s has no session left: removed",
		       st->where, k->group, k->stale[i]);
		rd_share_leave(st, k->part, k->group, k->stale[i]);
	}
	argv = bk_xmalloc((k->nids + 6) * sizeof(*argv));
	argv[argc++] = "XACK";
	argv[argc++] = key;
	argv[argc++] = k->group;
	for (size_t i = 0; i < k->nids; i++)
		if (k->given[i])
			argv[argc++] = k->ids[i];
	if (argc > 3) {
		rd_log(st, CAIRN_LOG_INFO,
		       "redis at %s: shared group '%s': %zu entries taken over were given to a "
		       "member already: acknowledged, not given again",
		       st->where, k->group, argc - 3);
		rd_share_send_logged(st, key,
				     "acknowledging a shared group's entries given already",
				     (int)argc, argv);
	}
	argc = 0;
	argv[argc++] = "XCLAIM";
	argv[argc++] = key;
	argv[argc++] = k->group;
	argv[argc++] = st->inc_s;
	argv[argc++] = "0";
	for (size_t i = 0; i < k->nids; i++)
		if (!k->given[i]) {
			argv[argc++] = k->ids[i];
			left++;
		}
	if (left == 0) {
		free(argv);
		k->read(k->arg, 0, NULL, 0);
		rd_share_call_free(k);
		return;
	}
	k->xclaim = true;
	rc = rd_share_send(st, key, rd_share_read_cb, k, (int)argc, argv, NULL);
	free(argv);
	if (rc != CAIRN_EINPROGRESS) {
		k->read(k->arg, rc, NULL, 0);
		rd_share_call_free(k);
	}
}

/* A takeover's question to one member. */
struct rd_share_ask {
	struct rd_share_call *k;
	char *member;
};

/* One member's answer: whether it is gone, then the indexes (from 1) of the
 * entries given to it. */
static void rd_share_taken_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_share_ask *q = privdata;
	struct rd_share_call *k = q->k;
	redisReply *reply = r;

	if (ac->data == NULL) {
		k->closing = true;
	} else if (reply == NULL) {
		k->status = k->status ? k->status : CAIRN_EUNAVAILABLE;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		rd_log(k->st, CAIRN_LOG_ERROR,
		       "redis at %s: asking a shared group's member about entries taken over "
		       "failed: %s",
		       k->st->where, reply->str);
		k->status = k->status ? k->status : CAIRN_EIO;
	} else if (reply->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 1; i < reply->elements; i++) {
			const redisReply *x = reply->element[i];

			if (x->type == REDIS_REPLY_INTEGER && x->integer >= 1 &&
			    (size_t)x->integer <= k->nids)
				k->given[x->integer - 1] = true;
		}
		if (reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_INTEGER &&
		    reply->element[0]->integer == 1) {
			k->stale = bk_xrealloc(k->stale, (k->nstale + 1) * sizeof(*k->stale));
			k->stale[k->nstale++] = q->member;
			q->member = NULL;
		}
	}
	free(q->member);
	free(q);
	if (--k->asking == 0)
		rd_share_checked(k->st, k);
}

/* The group's members (SMEMBERS): each is asked, in its session's slot,
 * which of the entries taken over it was given, and the others are marked
 * taken there (cairn_share_taken). */
static void rd_share_members_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_share_call *k = privdata;
	struct cairn_store *st = k->st;
	redisReply *reply = r;
	char cutoff[24], ttl[24];
	char **fields;
	const char **argv;

	if (ac->data == NULL) {
		rd_share_call_free(k);
		return;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
			rd_log(st, CAIRN_LOG_ERROR,
			       "redis at %s: reading a shared group's members failed: %s",
			       st->where, reply->str);
		k->read(k->arg, reply == NULL ? CAIRN_EUNAVAILABLE : CAIRN_EIO, NULL, 0);
		rd_share_call_free(k);
		return;
	}
	rd_share_cutoff(st, cutoff, ttl);
	fields = bk_xmalloc((k->nids + 1) * sizeof(*fields));
	argv = bk_xmalloc((k->nids + 8) * sizeof(*argv));
	for (size_t i = 0; i < k->nids; i++)
		fields[i] = rd_share_field(k->part, k->ids[i], k->group);
	k->asking = 1; /* held until every member is asked */
	for (size_t m = 0; m < reply->elements; m++) {
		const redisReply *x = reply->element[m];
		size_t argc = 0;

		if (x->type != REDIS_REPLY_STRING)
			continue;
		char *key = rd_share_marks_key(st, x->str);
		argv[argc++] = "FCALL";
		argv[argc++] = "cairn_share_taken";
		argv[argc++] = "1";
		argv[argc++] = key;
		argv[argc++] = st->inc_s;
		argv[argc++] = cutoff;
		argv[argc++] = ttl;
		for (size_t i = 0; i < k->nids; i++)
			argv[argc++] = fields[i];
		struct rd_share_ask *q = bk_xcalloc(1, sizeof(*q));
		q->k = k;
		q->member = bk_xstrndup(x->str, x->len);
		int rc = rd_share_send(st, key, rd_share_taken_cb, q, (int)argc, argv, NULL);
		if (rc == CAIRN_EINPROGRESS) {
			k->asking++;
		} else {
			if (k->status == 0)
				k->status = rc;
			free(q->member);
			free(q);
		}
		free(key);
	}
	for (size_t i = 0; i < k->nids; i++)
		free(fields[i]);
	free(fields);
	free(argv);
	if (--k->asking == 0)
		rd_share_checked(st, k);
}

/* A takeover's XAUTOCLAIM ... JUSTID: [next, [ids], [deleted ids]]. The
 * entries are this reader's now; before it gives any out, the group's
 * members are asked whether one was given to them already. */
static void rd_share_claimed_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_share_call *k = privdata;
	struct cairn_store *st = k->st;
	redisReply *reply = r;
	const redisReply *list = NULL;

	if (ac->data == NULL) {
		rd_share_call_free(k);
		return;
	}
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		rd_share_read_cb(ac, r, privdata);
		return;
	}
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
	    reply->element[1]->type == REDIS_REPLY_ARRAY)
		list = reply->element[1];
	k->ids = bk_xcalloc(list ? list->elements + 1 : 1, sizeof(*k->ids));
	for (size_t i = 0; list && i < list->elements; i++)
		if (list->element[i]->type == REDIS_REPLY_STRING)
			k->ids[k->nids++] =
			    bk_xstrndup(list->element[i]->str, list->element[i]->len);
	/* With nothing taken over, the members are still looked at now and
	 * then (RD_SHARE_SWEEP_MS, one group and partition at a time), for
	 * those whose session is gone. */
	uint64_t now = (uint64_t)rd_wall_ms();
	if (k->nids == 0 && now < st->share_sweep_ms) {
		k->read(k->arg, 0, NULL, 0);
		rd_share_call_free(k);
		return;
	}
	if (k->nids == 0)
		st->share_sweep_ms = now + RD_SHARE_SWEEP_MS;
	k->given = bk_xcalloc(k->nids + 1, sizeof(*k->given));
	char *members = rd_share_members_key(st, k->group, k->part);
	const char *argv[] = {"SMEMBERS", members};
	int rc = rd_share_send(st, members, rd_share_members_cb, k, 2, argv, NULL);
	free(members);
	if (rc != CAIRN_EINPROGRESS) {
		k->read(k->arg, rc, NULL, 0);
		rd_share_call_free(k);
	}
}

/* XREADGROUP of k->count entries after from: ">" the group's new ones,
 * "0" this reader's own unacknowledged ones, oldest first. */
static int rd_share_xreadgroup(struct cairn_store *st, struct rd_share_call *k, const char *from)
{
	char count[24];
	const char *key = st->log_keys[k->part];

	snprintf(count, sizeof(count), "%zu", k->count);
	const char *argv[] = {"XREADGROUP", "GROUP",   k->group, st->inc_s, "COUNT",
			      count,        "STREAMS", key,      from};
	return rd_share_send(st, key, rd_share_read_cb, k, 9, argv, NULL);
}

static void rd_share_read_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct rd_share_call *k = privdata;
	struct cairn_store *st = k->st;
	redisReply *reply = r;
	const redisReply *list = NULL;

	if (ac->data == NULL) {
		rd_share_call_free(k);
		return;
	}
	if (reply == NULL) {
		k->read(k->arg, CAIRN_EUNAVAILABLE, NULL, 0);
		rd_share_call_free(k);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		bool nogroup = strncmp(reply->str, "NOGROUP", 7) == 0;

		if (!nogroup)
			rd_log(st, CAIRN_LOG_ERROR,
			       "redis at %s: reading a shared group's entries failed: %s",
			       st->where, reply->str);
		k->read(k->arg, nogroup ? CAIRN_ENOTFOUND : CAIRN_EIO, NULL, 0);
		rd_share_call_free(k);
		return;
	}
	if (k->xclaim) {
		/* XCLAIM: [entries]. */
		if (reply->type == REDIS_REPLY_ARRAY)
			list = reply;
	} else if (k->claim) {
		/* XAUTOCLAIM: [next, [entries], [deleted ids]]. */
		if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
		    reply->element[1]->type == REDIS_REPLY_ARRAY)
			list = reply->element[1];
	} else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
		   reply->element[0]->type == REDIS_REPLY_ARRAY &&
		   reply->element[0]->elements == 2 &&
		   reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
		/* XREADGROUP: [[key, [entries]]], or nil for none. */
		list = reply->element[0]->element[1];
	}
	if (list == NULL) {
		k->read(k->arg, 0, NULL, 0);
	} else {
		size_t n;
		struct cairn_log_pos last = {0, 0};
		struct cairn_log_entry *e = rd_entries_parse(st, list, k->part, &n, &last);

		bool acked = n < list->elements && rd_share_ack_unusable(st, k, list, e, n);
		/* A read of this reader's own entries that met unusable ones
		 * (now acknowledged, on the same link before it) is made again:
		 * fewer than asked tells the core none of its own is left, and
		 * it would read newer entries before them (order per topic). */
		if (acked && k->idle_ms == CAIRN_SHARE_READ_MINE && !k->xclaim) {
			free(e);
			if (rd_share_xreadgroup(st, k, "0") == CAIRN_EINPROGRESS)
				return;
			k->read(k->arg, CAIRN_EUNAVAILABLE, NULL, 0);
			rd_share_call_free(k);
			return;
		}
		if (k->claim && list->elements > 0) {
			/* A takeover: the readers it took from may be gone. */
			char idle[24];
			snprintf(idle, sizeof(idle), "%llu", (unsigned long long)k->idle_ms);
			const char *argv[] = {"EVAL",   rd_share_gc_lua, "1", st->log_keys[k->part],
					      k->group, st->inc_s,       idle};
			rd_share_send_logged(st, argv[3], "removing a shared group's old readers",
					     7, argv);
		}
		k->read(k->arg, 0, e, n);
		free(e);
	}
	rd_share_call_free(k);
}

int rd_share_read(struct cairn_store *st, uint32_t part, const char *group, size_t max,
		  uint64_t claim_idle_ms, cairn_log_read_fn done, void *arg)
{
	char count[24], idle[24];
	const char *key = part < st->partitions ? st->log_keys[part] : NULL;
	struct rd_share_call *k;
	int rc;

	if (key == NULL)
		return CAIRN_EINVAL;
	snprintf(count, sizeof(count), "%zu", max);
	snprintf(idle, sizeof(idle), "%llu", (unsigned long long)claim_idle_ms);
	k = bk_xcalloc(1, sizeof(*k));
	k->st = st;
	k->part = part;
	k->read = done;
	k->arg = arg;
	k->claim = claim_idle_ms > 0 && claim_idle_ms != CAIRN_SHARE_READ_MINE;
	k->group = bk_strf("%s", group);
	k->idle_ms = claim_idle_ms;
	k->count = max;
	if (k->claim) {
		const char *argv[] = {"XAUTOCLAIM", key,     group, st->inc_s, idle,
				      "0-0",        "COUNT", count, "JUSTID"};
		rc = rd_share_send(st, key, rd_share_claimed_cb, k, 9, argv, NULL);
	} else {
		rc = rd_share_xreadgroup(st, k, claim_idle_ms == CAIRN_SHARE_READ_MINE ? "0" : ">");
	}
	if (rc != CAIRN_EINPROGRESS)
		rd_share_call_free(k);
	return rc;
}

int rd_share_ack(struct cairn_store *st, uint32_t part, const char *group,
		 const struct cairn_log_pos *pos, size_t n)
{
	const char *key = part < st->partitions ? st->log_keys[part] : NULL;
	const char **argv;
	char *ids;
	int rc;

	if (key == NULL)
		return CAIRN_EINVAL;
	if (n == 0)
		return 0;
	argv = bk_xmalloc((n + 3) * sizeof(*argv));
	ids = bk_xmalloc(n * 48);
	argv[0] = "XACK";
	argv[1] = key;
	argv[2] = group;
	for (size_t i = 0; i < n; i++) {
		rd_pos_format(ids + i * 48, pos[i]);
		argv[3 + i] = ids + i * 48;
	}
	rc = rd_share_send_logged(st, key, "acknowledging a shared group's entries", (int)(n + 3),
				  argv);
	free(argv);
	free(ids);
	return rc;
}
