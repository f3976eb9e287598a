/*
 * The shared store (vtable version 4) of the Redis backend, driven through
 * the vtable against the redis-server ./dev test starts (CAIRN_REDIS_PORT):
 * two stores opened in cluster mode on one key prefix stand for two nodes.
 * A claim takes a session from the node that held it, which hears of it
 * (kicked) and whose later writes of the session are dropped and reported
 * (fenced); an append reaches every node's reader once, however often its
 * batch is replayed; a claim returns the session's cursor.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "../src/store.h"
#include "cairn/store.h"

#ifdef HAVE_HIREDIS
#include "../backends/redis/redis.h"

/* Under tests/with-redis-cluster.sh (./dev cluster-test) the server is a
 * three-master Redis Cluster: the same cases run there. */
static bool redis_cluster(void)
{
	const char *c = getenv("CAIRN_REDIS_CLUSTER");

	return c != NULL && strcmp(c, "1") == 0;
}

/* A command the test sends itself, following a Redis Cluster's MOVED to
 * the master it names (*c becomes a connection to it). */
static redisReply *tcmd_follow(redisContext **c, redisReply *r, int argc, const char **argv)
{
	for (int hops = 0; r != NULL && r->type == REDIS_REPLY_ERROR && hops < 3; hops++) {
		char host[64];
		unsigned slot;
		int port;

		if (rd_redirect_parse(r->str, r->len, &slot, host, sizeof(host), &port) != RD_MOVED)
			break;
		freeReplyObject(r);
		redisFree(*c);
		*c = redisConnect(host, port);
		ck_assert(*c != NULL && (*c)->err == 0);
		r = redisCommandArgv(*c, argc, argv, NULL);
	}
	return r;
}

static redisReply *tcmd_argv(redisContext **c, int argc, const char **argv)
{
	return tcmd_follow(c, redisCommandArgv(*c, argc, argv, NULL), argc, argv);
}

/* tcmd(&c, "CMD %s ...", ...): arguments split at spaces (none of these
 * tests' contain one). */
static redisReply *tcmd(redisContext **c, const char *fmt, ...)
{
	char line[512], *save = NULL, *w;
	const char *argv[16];
	int argc = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (w = strtok_r(line, " ", &save); w != NULL && argc < 16; w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	return tcmd_argv(c, argc, argv);
}

struct node {
	struct event_base *base;
	struct cairn_store_options opts;
	char prefix[80];
	char id[16];
	struct cairn_store *st;
	struct cairn_cluster_hooks hooks;
	struct cairn_log_pos tail;
	struct cairn_log_pos ptail[8]; /* with cluster_log_partitions */
	uint64_t id_base;
	/* What the store told this node. */
	char kicked[64];
	uint64_t kicked_serial;
	char fenced[64];
	uint64_t fenced_serial;
	int nentries;
	char entries[16][64]; /* "topic payload qos retain publisher" */
	uint32_t entry_part[16];
	/* The last claim. */
	bool claim_done;
	int claim_status;
	struct cairn_claim_result claim;
	char claimed_user[32]; /* the session record's username, if one came */
	int claimed_subs;
	/* The log position of the claimed subscription to "u/+" (since). */
	uint64_t claimed_since_ms, claimed_since_seq;
	bool commit_done;
	int commit_status;
	const char *wait;  /* redis_wait_replicas, or NULL */
	const char *parts; /* cluster_log_partitions, or NULL */
};

static const char *node_get(void *arg, const char *key)
{
	struct node *n = arg;

	if (strcmp(key, "redis_port") == 0)
		return getenv("CAIRN_REDIS_PORT");
	if (strcmp(key, "redis_key_prefix") == 0)
		return n->prefix;
	if (strcmp(key, "redis_connect_timeout") == 0)
		return "2000";
	if (strcmp(key, "cluster") == 0)
		return "true";
	if (strcmp(key, "cluster_node_id") == 0)
		return n->id;
	if (strcmp(key, "redis_wait_replicas") == 0)
		return n->wait;
	if (strcmp(key, "cluster_log_partitions") == 0)
		return n->parts;
	return NULL;
}

static void node_kicked(void *arg, const char *id, uint64_t serial)
{
	struct node *n = arg;

	snprintf(n->kicked, sizeof(n->kicked), "%s", id);
	n->kicked_serial = serial;
}

static void node_fenced(void *arg, const char *id, uint64_t serial)
{
	struct node *n = arg;

	snprintf(n->fenced, sizeof(n->fenced), "%s", id);
	n->fenced_serial = serial;
}

static void node_entries(void *arg, const struct cairn_log_entry *e, size_t count)
{
	struct node *n = arg;

	for (size_t i = 0; i < count && n->nentries < 16; i++) {
		n->entry_part[n->nentries] = e[i].partition;
		snprintf(n->entries[n->nentries++], sizeof(n->entries[0]), "%s %.*s %u %d %s",
			 e[i].msg.topic, (int)e[i].msg.payload_len, (const char *)e[i].msg.payload,
			 (unsigned)e[i].msg.qos, e[i].msg.retain ? 1 : 0, e[i].publisher);
	}
}

/* node_open with redis_wait_replicas wait (NULL: none). */
static void node_open_wait(struct node *n, const char *prefix, const char *id, const char *wait)
{
	char err[512] = "";

	memset(n, 0, sizeof(*n));
	n->wait = wait;
	snprintf(n->prefix, sizeof(n->prefix), "%s", prefix);
	snprintf(n->id, sizeof(n->id), "%s", id);
	n->base = event_base_new();
	ck_assert_ptr_nonnull(n->base);
	n->opts.durability = CAIRN_DURABILITY_OS;
	n->opts.base = n->base;
	n->opts.get = node_get;
	n->opts.get_arg = n;
	ck_assert_int_eq(cairn_store_redis.open(&n->opts, &n->st, err, sizeof(err)), 0);
	ck_assert_int_eq(cairn_store_redis.load(n->st, &(struct cairn_store_visitor){0}), 0);
	n->hooks = (struct cairn_cluster_hooks){
	    .arg = n, .entries = node_entries, .kicked = node_kicked, .fenced = node_fenced};
	ck_assert_int_eq(cairn_store_redis.cluster_start(n->st, &n->hooks, &n->tail, &n->id_base),
			 0);
	ck_assert_uint_gt(n->id_base, 0);
}

static void node_open(struct node *n, const char *prefix, const char *id)
{
	node_open_wait(n, prefix, id, NULL);
}

/* node_open with cluster_log_partitions parts. */
static void node_open_parts(struct node *n, const char *prefix, const char *id, const char *parts)
{
	char err[512] = "";

	memset(n, 0, sizeof(*n));
	n->parts = parts;
	snprintf(n->prefix, sizeof(n->prefix), "%s", prefix);
	snprintf(n->id, sizeof(n->id), "%s", id);
	n->base = event_base_new();
	ck_assert_ptr_nonnull(n->base);
	n->opts = (struct cairn_store_options){
	    .durability = CAIRN_DURABILITY_OS, .base = n->base, .get = node_get, .get_arg = n};
	ck_assert_int_eq(cairn_store_redis.open(&n->opts, &n->st, err, sizeof(err)), 0);
	ck_assert_int_eq(cairn_store_redis.load(n->st, &(struct cairn_store_visitor){0}), 0);
	n->hooks = (struct cairn_cluster_hooks){
	    .arg = n, .entries = node_entries, .kicked = node_kicked, .fenced = node_fenced};
	ck_assert_int_eq(cairn_store_redis.cluster_start(n->st, &n->hooks, n->ptail, &n->id_base),
			 0);
}

static void node_close(struct node *n)
{
	cairn_store_redis.close(n->st);
	event_base_free(n->base);
}

/* Run both loops until pred(n) holds, for at most 3 s. */
static void run_until(struct node *a, struct node *b, bool (*pred)(struct node *), struct node *n)
{
	for (int i = 0; i < 3000 && !pred(n); i++) {
		event_base_loop(a->base, EVLOOP_NONBLOCK);
		if (b)
			event_base_loop(b->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_msg(pred(n), "timed out");
}

static bool claim_done(struct node *n)
{
	return n->claim_done;
}

static bool commit_done(struct node *n)
{
	return n->commit_done;
}

static bool was_kicked(struct node *n)
{
	return n->kicked[0] != '\0';
}

static int claim_session(void *arg, const struct cairn_session_rec *r)
{
	struct node *n = arg;

	snprintf(n->claimed_user, sizeof(n->claimed_user), "%s", r->username ? r->username : "");
	return 0;
}

static int claim_sub(void *arg, const struct cairn_sub_rec *r)
{
	struct node *n = arg;

	n->claimed_subs++;
	if (strcmp(r->filter, "u/+") == 0) {
		n->claimed_since_ms = r->since_ms;
		n->claimed_since_seq = r->since_seq;
	}
	return 0;
}

static void on_claim(void *arg, int status, const struct cairn_claim_result *r)
{
	struct node *n = arg;
	struct cairn_store_visitor v = {
	    .arg = n, .session = claim_session, .subscription = claim_sub};

	n->claim_done = true;
	n->claim_status = status;
	if (r) {
		n->claim = *r;
		n->claim_status = r->visit(r->visit_ctx, &v);
	}
}

static void node_claim(struct node *n, struct node *other, const char *id, uint64_t serial)
{
	n->claim_done = false;
	n->claimed_user[0] = '\0';
	n->claimed_subs = 0;
	n->claimed_since_ms = n->claimed_since_seq = 0;
	ck_assert_int_eq(cairn_store_redis.claim(n->st, id, serial, on_claim, n),
			 CAIRN_EINPROGRESS);
	run_until(n, other, claim_done, n);
	ck_assert_int_eq(n->claim_status, 0);
}

static void on_commit(void *arg, int status)
{
	struct node *n = arg;

	n->commit_done = true;
	n->commit_status = status;
}

static void node_commit(struct node *n, struct node *other)
{
	n->commit_done = false;
	ck_assert_int_eq(cairn_store_redis.commit(n->st, on_commit, n), CAIRN_EINPROGRESS);
	run_until(n, other, commit_done, n);
	ck_assert_int_eq(n->commit_status, 0);
}

static void put_session(struct node *n, const char *id, const char *user)
{
	/* Connected: a session stored as not connected is parked. */
	struct cairn_session_rec r = {.client_id = id,
				      .username = user,
				      .connected = true,
				      .next_packet_id = 1,
				      .protocol_level = 4,
				      .expiry_interval = CAIRN_EXPIRY_NEVER};

	ck_assert_int_eq(cairn_store_redis.session_put(n->st, &r), 0);
}

static redisContext *redis(void)
{
	redisContext *c = redisConnect("127.0.0.1", atoi(getenv("CAIRN_REDIS_PORT")));

	ck_assert(c != NULL && c->err == 0);
	return c;
}

/* A test's own prefix on the shared server. */
static void prefix_for(char *out, size_t len, const char *test)
{
	snprintf(out, len, "ck-%s-%d:", test, (int)getpid());
}

/* Two nodes, a and b, on the prefix of test (into pfx, len bytes). */
static void nodes_open(struct node *a, struct node *b, char *pfx, size_t len, const char *test)
{
	prefix_for(pfx, len, test);
	node_open(a, pfx, "a");
	node_open(b, pfx, "b");
}

static void nodes_close(struct node *a, struct node *b)
{
	node_close(a);
	node_close(b);
}

/* A claim takes the session: the old holder is kicked, and its next write
 * of the session is dropped (fenced) while its other writes land. */
START_TEST(t_claim_kicks_and_fences)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "fence");
	ck_assert_uint_ne(a.id_base, b.id_base);

	node_claim(&a, &b, "c1", 1);
	ck_assert(!a.claim.prev_local);
	put_session(&a, "c1", "alice");
	struct cairn_sub_rec s = {.client_id = "c1", .filter = "t/#", .qos = 1};
	ck_assert_int_eq(cairn_store_redis.sub_put(a.st, &s), 0);
	/* A subscription made at a log position keeps it. */
	struct cairn_sub_rec u = {.client_id = "c1",
				  .filter = "u/+",
				  .qos = 2,
				  .since_ms = 1796664909722ULL,
				  .since_seq = 7};
	ck_assert_int_eq(cairn_store_redis.sub_put(a.st, &u), 0);
	node_commit(&a, &b);

	/* b claims: it gets a's records, a is told. */
	node_claim(&b, &a, "c1", 7);
	ck_assert(!b.claim.prev_local);
	ck_assert_str_eq(b.claimed_user, "alice");
	ck_assert_int_eq(b.claimed_subs, 2);
	ck_assert_uint_eq(b.claimed_since_ms, 1796664909722ULL);
	ck_assert_uint_eq(b.claimed_since_seq, 7);
	run_until(&a, &b, was_kicked, &a);
	ck_assert_str_eq(a.kicked, "c1");
	ck_assert_uint_eq(a.kicked_serial, 1);

	/* The kick ended a's hold: its write of c1 is dropped without a
	 * word, while its write of c2, which it holds, lands. */
	node_claim(&a, &b, "c2", 2);
	put_session(&a, "c1", "stale");
	put_session(&a, "c2", "carol");
	node_commit(&a, &b);
	ck_assert_str_eq(a.fenced, "");

	/* b writes c1; then a claims c1 again and sees b's write alone. */
	put_session(&b, "c1", "bob");
	node_commit(&b, &a);
	node_claim(&a, &b, "c1", 3);
	ck_assert_str_eq(a.claimed_user, "bob");
	run_until(&b, &a, was_kicked, &b);
	ck_assert_str_eq(b.kicked, "c1");
	ck_assert_uint_eq(b.kicked_serial, 7);

	/* b's hold went with the kick; its write of c1 is not applied. */
	put_session(&b, "c1", "mallory");
	node_commit(&b, &a);
	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "HGET %s{c:c1}:session username", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "bob");
	freeReplyObject(rep);
	redisFree(r);

	nodes_close(&a, &b);
}
END_TEST

/* A node that missed its kick: its commit of the session finds another
 * node's token, drops the session's writes, and says so before done(). */
START_TEST(t_fenced_without_kick)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "nokick");
	node_claim(&a, &b, "c1", 1);
	put_session(&a, "c1", "alice");
	node_commit(&a, &b);
	/* b takes the token behind a's back (no PUBLISH reaches a). */
	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "HSET %s{c:c1}:own tok 999:1", pfx);
	freeReplyObject(rep);
	put_session(&a, "c1", "stale");
	struct cairn_msg_rec m = {
	    .topic = "t/x", .payload = (const uint8_t *)"p", .payload_len = 1, .qos = 1};
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "", &m), 0);
	node_commit(&a, &b);
	ck_assert_str_eq(a.fenced, "c1");
	ck_assert_uint_eq(a.fenced_serial, 1);
	rep = tcmd(&r, "HGET %s{c:c1}:session username", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "alice");
	freeReplyObject(rep);
	/* The log's write of the same batch landed. */
	rep = tcmd(&r, "XLEN %s{L:0}:log", pfx);
	ck_assert_int_eq(rep->integer, 1);
	freeReplyObject(rep);
	redisFree(r);
	nodes_close(&a, &b);
}
END_TEST

static bool has_two_entries(struct node *n)
{
	return n->nentries >= 2;
}

/* Appends reach every node's reader in order with their fields; a retained
 * append writes the shared retained hash in the same step; a claim returns
 * the routed mark of the session's previous holder as its cursor. */
START_TEST(t_log_and_cursor)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "log");
	node_claim(&a, &b, "pub", 1);
	struct cairn_msg_rec m1 = {
	    .topic = "t/1", .payload = (const uint8_t *)"one", .payload_len = 3, .qos = 1};
	struct cairn_msg_rec m2 = {.topic = "t/2",
				   .payload = (const uint8_t *)"two",
				   .payload_len = 3,
				   .qos = 2,
				   .retain = true};
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "pub", &m1), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "pub", &m2), 0);
	node_commit(&a, &b);
	run_until(&a, &b, has_two_entries, &b);
	ck_assert_str_eq(b.entries[0], "t/1 one 1 0 pub");
	ck_assert_str_eq(b.entries[1], "t/2 two 2 1 pub");
	run_until(&a, &b, has_two_entries, &a);

	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "HGET %s{L:0}:retained t/2", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "2:two");
	freeReplyObject(rep);

	/* a routed up to some position: a claim by b of a session a held
	 * returns it, and records it as the session's own cursor. */
	node_claim(&a, &b, "sub", 2);
	struct cairn_log_pos mark = {12345, 6};
	ck_assert_int_eq(cairn_store_redis.log_routed_p(a.st, NULL, &mark), 0);
	node_commit(&a, &b);
	node_claim(&b, &a, "sub", 9);
	ck_assert(b.claim.has_cursor);
	ck_assert_uint_eq(b.claim.cursor.ms, 12345);
	ck_assert_uint_eq(b.claim.cursor.seq, 6);
	rep = tcmd(&r, "HGET %s{c:sub}:own cur", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "12345-6");
	freeReplyObject(rep);
	/* b's catch-up moves it, then drops it: a later claim takes b's mark. */
	ck_assert_int_eq(cairn_store_redis.log_routed_p(b.st, "sub", NULL), 0);
	ck_assert_int_eq(
	    cairn_store_redis.log_routed_p(b.st, NULL, &(struct cairn_log_pos){222, 0}), 0);
	node_commit(&b, &a);
	node_claim(&a, &b, "sub", 3);
	ck_assert_uint_eq(a.claim.cursor.ms, 222);
	redisFree(r);
	nodes_close(&a, &b);
}
END_TEST

/* A node records the log's partitions at the first start; a node with
 * another number is refused at cluster_start, and the record stays. */
static void partitions_refused(const char *pfx, const char *parts)
{
	struct node b;
	char err[512] = "";

	memset(&b, 0, sizeof(b));
	snprintf(b.prefix, sizeof(b.prefix), "%s", pfx);
	snprintf(b.id, sizeof(b.id), "b");
	b.parts = parts;
	b.base = event_base_new();
	b.opts = (struct cairn_store_options){
	    .durability = CAIRN_DURABILITY_OS, .base = b.base, .get = node_get, .get_arg = &b};
	ck_assert_int_eq(cairn_store_redis.open(&b.opts, &b.st, err, sizeof(err)), 0);
	ck_assert_int_eq(cairn_store_redis.load(b.st, &(struct cairn_store_visitor){0}), 0);
	b.hooks = (struct cairn_cluster_hooks){
	    .arg = &b, .entries = node_entries, .kicked = node_kicked, .fenced = node_fenced};
	ck_assert_int_eq(cairn_store_redis.cluster_start(b.st, &b.hooks, b.ptail, &b.id_base),
			 CAIRN_EINVAL);
	node_close(&b);
}

static void expect_partitions(const char *pfx, const char *want)
{
	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "GET %s{L:0}:partitions", pfx);

	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, want);
	freeReplyObject(rep);
	redisFree(r);
}

START_TEST(t_partitions_agree)
{
	struct node a;
	char pfx[80];

	prefix_for(pfx, sizeof(pfx), "parts");
	node_open(&a, pfx, "a");
	expect_partitions(pfx, "1");
	node_close(&a);
	/* A second node with the same number joins; one with 4 does not. */
	node_open(&a, pfx, "a2");
	node_close(&a);
	partitions_refused(pfx, "4");
	expect_partitions(pfx, "1");

	/* A cluster started with 4 refuses a node with the default 1. */
	prefix_for(pfx, sizeof(pfx), "parts4");
	node_open_parts(&a, pfx, "a", "4");
	expect_partitions(pfx, "4");
	partitions_refused(pfx, NULL);
	expect_partitions(pfx, "4");
	node_close(&a);
}
END_TEST

static bool has_eight_entries(struct node *n)
{
	return n->nentries >= 8;
}

struct read_result {
	bool done;
	int status;
	size_t n;
	uint32_t part[16];
	char topic[16][16];
};

static void on_read(void *arg, int status, const struct cairn_log_entry *e, size_t n)
{
	struct read_result *rr = arg;

	rr->done = true;
	rr->status = status;
	for (size_t i = 0; i < n && rr->n < 16; i++, rr->n++) {
		rr->part[rr->n] = e[i].partition;
		snprintf(rr->topic[rr->n], sizeof(rr->topic[0]), "%s", e[i].msg.topic);
	}
}

/* With cluster_log_partitions 4 a message goes to the partition of its
 * topic's first level (PREFIX{L:p}:log, its retained copy to
 * PREFIX{L:p}:retained), every node reads all four and hears which, a
 * read asks one partition, and a mark or cursor is one position per
 * partition ("MS-SEQ,MS-SEQ,MS-SEQ,MS-SEQ" in {c:ID}:own cur). */
START_TEST(t_partitions)
{
	static const char *const topics[8] = {"a/1", "b/1", "c/1", "d/1",
					      "e/1", "f/1", "a/2", "g/x"};
	struct node a, b;
	char pfx[80];
	int count[4] = {0};

	ck_assert_uint_eq(rd_log_partition("a/b", 1), 0);
	ck_assert_uint_eq(rd_log_partition("abc/x/y", 4), rd_crc16("abc", 3) % 4);
	ck_assert_uint_eq(rd_log_partition("abc/x/y", 4), rd_log_partition("abc", 4));
	ck_assert_uint_eq(rd_log_partition("/x", 4), rd_crc16("", 0) % 4);
	prefix_for(pfx, sizeof(pfx), "partitions");
	node_open_parts(&a, pfx, "a", "4");
	node_open_parts(&b, pfx, "b", "4");
	node_claim(&a, &b, "pub", 1);
	for (int i = 0; i < 8; i++) {
		struct cairn_msg_rec m = {.topic = topics[i],
					  .payload = (const uint8_t *)"x",
					  .payload_len = 1,
					  .qos = 1,
					  .retain = i == 7};

		ck_assert_int_eq(cairn_store_redis.log_append(a.st, "pub", &m), 0);
		count[rd_log_partition(topics[i], 4)]++;
	}
	node_commit(&a, &b);
	run_until(&a, &b, has_eight_entries, &b);
	for (int i = 0; i < 8; i++) {
		char topic[16];

		sscanf(b.entries[i], "%15s", topic);
		ck_assert_uint_eq(b.entry_part[i], rd_log_partition(topic, 4));
	}
	/* In order within a partition: a/1 before a/2. */
	int a1 = -1, a2 = -1;
	for (int i = 0; i < 8; i++) {
		if (strncmp(b.entries[i], "a/1 ", 4) == 0)
			a1 = i;
		if (strncmp(b.entries[i], "a/2 ", 4) == 0)
			a2 = i;
	}
	ck_assert(a1 >= 0 && a2 > a1);

	redisContext *r = redis();
	int used = 0;
	for (uint32_t p = 0; p < 4; p++) {
		redisReply *rep = tcmd(&r, "XLEN %s{L:%u}:log", pfx, p);

		ck_assert(rep != NULL && rep->type == REDIS_REPLY_INTEGER);
		ck_assert_int_eq(rep->integer, count[p]);
		used += rep->integer > 0;
		freeReplyObject(rep);
	}
	ck_assert_int_ge(used, 2);
	redisReply *rep = tcmd(&r, "HGET %s{L:%u}:retained g/x", pfx, rd_log_partition("g/x", 4));
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "1:x");
	freeReplyObject(rep);

	/* A read of one partition brings its entries only. */
	uint32_t pa = rd_log_partition("a/1", 4);
	struct read_result rr = {0};
	ck_assert_int_eq(
	    cairn_store_redis.log_read_p(b.st, pa, (struct cairn_log_pos){0, 0}, 16, on_read, &rr),
	    CAIRN_EINPROGRESS);
	for (int i = 0; i < 3000 && !rr.done; i++) {
		event_base_loop(b.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert(rr.done && rr.status == 0);
	ck_assert_uint_eq(rr.n, (size_t)count[pa]);
	for (size_t i = 0; i < rr.n; i++)
		ck_assert_uint_eq(rr.part[i], pa);
	ck_assert_str_eq(rr.topic[0], "a/1");

	/* a's mark in every partition is the cursor of a session it held. */
	node_claim(&a, &b, "sub", 2);
	struct cairn_log_pos mark[4] = {{11, 1}, {22, 2}, {33, 3}, {44, 4}};
	ck_assert_int_eq(cairn_store_redis.log_routed_p(a.st, NULL, mark), 0);
	node_commit(&a, &b);
	node_claim(&b, &a, "sub", 9);
	ck_assert(b.claim.has_cursor);
	for (int p = 0; p < 4; p++) {
		ck_assert_uint_eq(b.claim.cursors[p].ms, mark[p].ms);
		ck_assert_uint_eq(b.claim.cursors[p].seq, mark[p].seq);
	}
	rep = tcmd(&r, "HGET %s{c:sub}:own cur", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "11-1,22-2,33-3,44-4");
	freeReplyObject(rep);
	redisFree(r);
	nodes_close(&a, &b);
}
END_TEST

/* The commit function runs an append once however often its batch is
 * replayed: the once-only key skips the XADD and the retained write. */
START_TEST(t_append_once)
{
	struct node a;
	char pfx[80];

	prefix_for(pfx, sizeof(pfx), "once");
	node_open(&a, pfx, "a"); /* loads the functions */
	redisContext *r = redis();
	char once[120], log[120], ret[120];
	snprintf(once, sizeof(once), "%s{L:0}:dd:x", pfx);
	snprintf(log, sizeof(log), "%s{L:0}:log", pfx);
	snprintf(ret, sizeof(ret), "%s{L:0}:retained", pfx);
	/* The commands as the backend sends them, each as its group, its
	 * argument count and its arguments: append n of incarnation x, with
	 * its retained write. Append 1 replayed three times, then append 2,
	 * then 1 again. */
	const char *seqs[] = {"1", "1", "1", "2", "1"};
	for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
		const char *argv[] = {"FCALL",      "cairn_commit",
				      "1",          log,
				      "1",          "0",
				      "0",          "4",
				      "CAIRN.ONCE", once,
				      seqs[i],      "2",
				      "0",          "5",
				      "XADD",       log,
				      "*",          "t",
				      "x",          "0",
				      "4",          "HSET",
				      ret,          "x",
				      "0:v"};
		redisReply *rep = tcmd_argv(&r, 25, argv);
		ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_ARRAY, "%s",
			      rep && rep->str ? rep->str : "no reply");
		freeReplyObject(rep);
	}
	redisReply *rep = tcmd(&r, "XLEN %s", log);
	ck_assert_int_eq(rep->integer, 2);
	freeReplyObject(rep);
	/* One counter per incarnation, not a key per append. */
	rep = tcmd(&r, "GET %s", once);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "2");
	freeReplyObject(rep);
	redisFree(r);
	node_close(&a);
}
END_TEST

/*
 * Wait (3 s at most) until n's control link has subscribed and n has read
 * the confirmation, which makes it check every session it holds against
 * Redis: a test that parks a session wants that check over before the
 * park lands, else it can see the parked token while n still holds the
 * session and report it taken. On a Redis Cluster the subscriber may be
 * on another master than the one asked: the wait then runs its 3 s.
 */
static void node_wait_control(struct node *n)
{
	redisContext *rc = redis();
	char chan[160];

	snprintf(chan, sizeof(chan), "%sctl:%llu", n->prefix,
		 (unsigned long long)(n->id_base >> 40));
	for (int i = 0; i < 3000; i++) {
		redisReply *rep = tcmd(&rc, "PUBSUB NUMSUB %s", chan);
		bool up = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
			  rep->element[1]->type == REDIS_REPLY_INTEGER &&
			  rep->element[1]->integer > 0;

		freeReplyObject(rep);
		event_base_loop(n->base, EVLOOP_NONBLOCK);
		if (up) {
			for (int j = 0; j < 20; j++) {
				usleep(1000);
				event_base_loop(n->base, EVLOOP_NONBLOCK);
			}
			break;
		}
		usleep(1000);
	}
	redisFree(rc);
}

/* A session stored as not connected is parked in the same commit: no
 * holder, its cursor kept, its expiry the janitor's; the next claim kicks
 * nobody and catches it up from that cursor. */
START_TEST(t_park)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "park");
	node_wait_control(&a);
	node_claim(&a, &b, "c1", 1);
	struct cairn_session_rec r = {.client_id = "c1",
				      .next_packet_id = 1,
				      .protocol_level = 5,
				      .expiry_interval = 60,
				      .expires_at = 123456};
	ck_assert_int_eq(cairn_store_redis.log_routed_p(a.st, "c1", &(struct cairn_log_pos){77, 1}),
			 0);
	ck_assert_int_eq(cairn_store_redis.session_put(a.st, &r), 0);
	node_commit(&a, &b);
	/* As the core does once the park is committed: a holds it no more
	 * (else a's control link, subscribing late under a slow build, would
	 * find the parked token and report the session taken). */
	cairn_store_redis.release(a.st, "c1");
	redisContext *rc = redis();
	redisReply *rep = tcmd(&rc, "HGET %s{c:c1}:own tok", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "");
	freeReplyObject(rep);
	rep = tcmd(&rc, "ZSCORE %s%s c1", pfx,
		   redis_cluster() ? "{L:0}:cluster:expiry" : "cluster:expiry");
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "123456");
	freeReplyObject(rep);
	redisFree(rc);

	node_claim(&b, &a, "c1", 5);
	ck_assert(!b.claim.prev_local);
	ck_assert(b.claim.has_cursor);
	ck_assert_uint_eq(b.claim.cursor.ms, 77);
	ck_assert_uint_eq(b.claim.cursor.seq, 1);
	for (int i = 0; i < 200; i++) { /* no kick comes */
		event_base_loop(a.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_str_eq(a.kicked, "");
	nodes_close(&a, &b);
}
END_TEST

/* A case that needs the Redis Cluster says so on one server. */
static bool needs_redis_cluster(const char *fn)
{
	size_t n = strlen(fn);

	if (redis_cluster())
		return false;
	/* START_TEST(t_x) defines the function t_x_fn. */
	if (n > 3 && strcmp(fn + n - 3, "_fn") == 0)
		n -= 3;
	printf("SKIP cluster: %.*s[redis]: needs a Redis Cluster (tests/with-redis-cluster.sh, "
	       "./dev cluster-test)\n",
	       (int)n, fn);
	fflush(stdout);
	return true;
}

/* The integer a command answers (as tcmd), sent on a connection of its
 * own; of an array, its first element (XPENDING's summary: the count). */
static long long redis_int(const char *fmt, ...)
{
	redisContext *r = redis();
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	redisReply *rep = tcmd(&r, "%s", line);
	const redisReply *x = rep;
	long long v;

	ck_assert_msg(rep != NULL, "%s: no reply", line);
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0)
		x = rep->element[0];
	ck_assert_msg(x->type == REDIS_REPLY_INTEGER, "%s: %s", line,
		      x->type == REDIS_REPLY_ERROR ? x->str : "not an integer");
	v = x->integer;
	freeReplyObject(rep);
	redisFree(r);
	return v;
}

/* The entries of partition part of the log. */
static long long log_len_part(const char *pfx, uint32_t part)
{
	return redis_int("XLEN %s{L:%u}:log", pfx, (unsigned)part);
}

static long long log_len(const char *pfx)
{
	return log_len_part(pfx, 0);
}

/*
 * On a Redis Cluster the publisher's inbound QoS 2 id and the log are in
 * two slots: an append that follows the id's write sets a marker in the
 * log's slot, so the PUBLISH resent after a crash to another node (which
 * claims the session and stages the same) appends nothing; PUBREL removes
 * the marker, and the id then carries a new message.
 */
/* t_qos2_marker with cluster_log_partitions parts (NULL: 1) and topic. */
static void qos2_marker(const char *test, const char *parts, const char *topic)
{
	struct node a, b;
	char pfx[80];
	struct cairn_inflight_in_rec in = {"pub", 7};
	struct cairn_msg_rec m = {
	    .topic = topic, .payload = (const uint8_t *)"x", .payload_len = 1, .qos = 2};
	uint32_t part = rd_log_partition(topic, parts ? (uint32_t)atoi(parts) : 1);

	prefix_for(pfx, sizeof(pfx), test);
	node_open_parts(&a, pfx, "a", parts);
	node_open_parts(&b, pfx, "b", parts);
	node_claim(&a, &b, "pub", 1);
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(a.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "pub", &m), 0);
	node_commit(&a, &b);
	ck_assert_int_eq(log_len_part(pfx, part), 1);
	/* a dies before its PUBREC; the client resends to b. */
	node_claim(&b, &a, "pub", 2);
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len_part(pfx, part), 1);
	/* PUBREL, then a new message under the same id. */
	ck_assert_int_eq(cairn_store_redis.inflight_in_delete(b.st, "pub", 7), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len_part(pfx, part), 2);
	/* A QoS 1 message of that publisher is no resend of anything. */
	m.qos = 1;
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len_part(pfx, part), 3);
	/* An id that never sees its PUBREL: when the session goes (a clean
	 * start), its marker goes with it, and the next message under that id
	 * is appended. */
	m.qos = 2;
	in.packet_id = 9;
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len_part(pfx, part), 4);
	ck_assert_int_eq(cairn_store_redis.session_delete(b.st, "pub"), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len_part(pfx, part), 5);
	nodes_close(&a, &b);
}

START_TEST(t_qos2_marker)
{
	if (needs_redis_cluster(__func__))
		return;
	qos2_marker("q2", NULL, "t/q");
}
END_TEST

/* The same with the log in 4 partitions, the message in partition 2
 * ({L:2}, on another master than {L:0} in an evenly split cluster): its
 * marker goes with it, in {L:2}, and a PUBREL deletes it there. */
START_TEST(t_qos2_marker_partitions)
{
	if (needs_redis_cluster(__func__))
		return;
	ck_assert_uint_eq(rd_log_partition("k30a/q", 4), 2);
	qos2_marker("q2p", "4", "k30a/q");
}
END_TEST

/*
 * On a Redis Cluster the markers live in the log's slot, whose writes are
 * not fenced: a clean start on a node that has just lost the session to
 * another node's claim (its kick not yet read) forgets only the markers set
 * under its own claim and before, never one the new holder set since. Else
 * the client's resend of that QoS 2 PUBLISH to the new holder would be
 * appended a second time.
 */
START_TEST(t_q2_forget_races_a_claim)
{
	struct node a, b;
	char pfx[80];
	struct cairn_inflight_in_rec in = {"pub", 7};
	struct cairn_msg_rec m = {
	    .topic = "t/q", .payload = (const uint8_t *)"x", .payload_len = 1, .qos = 2};

	if (needs_redis_cluster(__func__))
		return;
	nodes_open(&a, &b, pfx, sizeof(pfx), "q2race");
	node_claim(&a, &b, "pub", 1); /* a clean start on a: its claim */
	node_claim(&b, &a, "pub", 2); /* the client, on b meanwhile */
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len(pfx), 1);
	/* a's clean start deletes the session it no longer holds. */
	ck_assert_int_eq(cairn_store_redis.session_delete(a.st, "pub"), 0);
	node_commit(&a, &b);
	/* The client resends the PUBLISH to b (no PUBREC came): a resend. */
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, &a);
	ck_assert_int_eq(log_len(pfx), 1);
	nodes_close(&a, &b);
}
END_TEST

/*
 * PUBREL's marker removal on a Redis Cluster is in the log's slot, outside
 * the session's fenced call: a node that has lost the publisher's session
 * to another node's claim (and has not acted on its kick yet) and reads a
 * late PUBREL on its old connection must not delete the marker the new
 * holder set since for a new message under the same packet id. Else the
 * client's resend of that message to the new holder (no PUBREC came) is
 * appended a second time.
 */
START_TEST(t_q2_pubrel_races_a_claim)
{
	struct node a, b;
	char pfx[80];
	struct cairn_inflight_in_rec in = {"pub", 7};
	struct cairn_msg_rec m = {
	    .topic = "t/q", .payload = (const uint8_t *)"x", .payload_len = 1, .qos = 2};

	if (needs_redis_cluster(__func__))
		return;
	nodes_open(&a, &b, pfx, sizeof(pfx), "q2rel");
	node_claim(&a, &b, "pub", 1);
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(a.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "pub", &m), 0);
	node_commit(&a, &b);
	ck_assert_int_eq(log_len(pfx), 1);
	/* The client moves to b: PUBREL there, then a new message under 7. */
	node_claim(&b, NULL, "pub", 2);
	ck_assert_int_eq(cairn_store_redis.inflight_in_delete(b.st, "pub", 7), 0);
	node_commit(&b, NULL);
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, NULL);
	ck_assert_int_eq(log_len(pfx), 2);
	/* a, its kick unread, reads a late PUBREL of the first message. */
	ck_assert_int_eq(cairn_store_redis.inflight_in_delete(a.st, "pub", 7), 0);
	node_commit(&a, NULL);
	/* The client resends the new message to b: a resend, not appended. */
	ck_assert_int_eq(cairn_store_redis.inflight_in_put(b.st, &in), 0);
	ck_assert_int_eq(cairn_store_redis.log_append(b.st, "pub", &m), 0);
	node_commit(&b, NULL);
	ck_assert_int_eq(log_len(pfx), 2);
	nodes_close(&a, &b);
}
END_TEST

/* A connected session of n with a will (no delay). */
static void put_session_will(struct node *n, const char *id)
{
	struct cairn_session_rec r = {.client_id = id,
				      .connected = true,
				      .next_packet_id = 1,
				      .protocol_level = 5,
				      .expiry_interval = CAIRN_EXPIRY_NEVER,
				      .has_will = true,
				      .will_topic = "w/t",
				      .will_payload = (const uint8_t *)"bye",
				      .will_payload_len = 3,
				      .will_qos = 1};

	ck_assert_int_eq(cairn_store_redis.session_put(n->st, &r), 0);
}

/* n claims id (the other node's loop not run: its kick stays unread); the
 * session's previous connection is held by that node, so the claim leaves
 * it the will (defer_will) and returns none. */
static void node_claim_leaves_will(struct node *n, const char *id, uint64_t serial)
{
	node_claim(n, NULL, id, serial);
	ck_assert(!n->claim.has_will);
}

/*
 * A claim of a session whose connection another node holds does not
 * publish its will: that node may have had a DISCONNECT its commit has
 * not stored yet (MQTT-3.14.4-3). The node that holds the connection
 * publishes the will (its connection broke, or the kick left it the will)
 * under its claim's epoch, once, whether its append comes after the claim
 * (outside the session's fence, on one server too) or before it.
 */
START_TEST(t_will_races_a_claim)
{
	struct node a, b;
	char pfx[80];
	struct cairn_msg_rec w = {
	    .topic = "w/t", .payload = (const uint8_t *)"bye", .payload_len = 3, .qos = 1};

	if (needs_redis_cluster(__func__))
		return;
	nodes_open(&a, &b, pfx, sizeof(pfx), "willrace");
	/* The claim first: a's append of the will still goes, once. */
	node_claim(&a, &b, "w1", 1);
	put_session_will(&a, "w1");
	node_commit(&a, &b);
	node_claim_leaves_will(&b, "w1", 2);
	ck_assert_int_eq(log_len(pfx), 0);
	w.will_serial = 1; /* a's claim of the connection */
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "w1", &w), 0);
	node_commit(&a, NULL);
	ck_assert_int_eq(log_len(pfx), 1);
	/* The breaking connection's append first, then the claim. */
	node_claim(&a, &b, "w2", 3);
	put_session_will(&a, "w2");
	node_commit(&a, &b);
	w.will_serial = 3;
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "w2", &w), 0);
	node_commit(&a, NULL);
	ck_assert_int_eq(log_len(pfx), 2);
	node_claim_leaves_will(&b, "w2", 4);
	ck_assert_int_eq(log_len(pfx), 2);
	nodes_close(&a, &b);
}
END_TEST

/* Whether the record of the will a claim left n for id exists (1) or not. */
static long long tw_exists(const struct node *n, const char *id)
{
	return redis_int("EXISTS %s{c:%s}:tw:%llu", n->prefix, id,
			 (unsigned long long)(n->id_base >> 40));
}

/* A node's key: PREFIX{n:INC}:kind, or PREFIX{L:0}:n:INC:kind. */
static void node_key(char *out, size_t len, const struct node *n, const char *kind)
{
	unsigned long long inc = n->id_base >> 40;

	if (redis_cluster())
		snprintf(out, len, "%s{L:0}:n:%llu:%s", n->prefix, inc, kind);
	else
		snprintf(out, len, "%s{n:%llu}:%s", n->prefix, inc, kind);
}

/* Whether id is in the set of the wills claims left n ({n:INC}:tw). */
static long long tw_member(const struct node *n, const char *id)
{
	char key[160];

	node_key(key, sizeof(key), n, "tw");
	return redis_int("SISMEMBER %s %s", key, id);
}

/*
 * The set of the wills claims left a node names only the sessions whose
 * claim left one: a takeover of a session without a will due adds nothing
 * (else the set of a long-lived node grows with every client taken from
 * it, cleared only at its death).
 */
START_TEST(t_claim_lists_only_left_wills)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "twset");
	node_claim(&a, &b, "n1", 1);
	put_session(&a, "n1", "alice");
	node_claim(&a, &b, "w1", 2);
	put_session_will(&a, "w1");
	node_commit(&a, &b);
	node_claim(&b, NULL, "n1", 3);
	ck_assert(!b.claim.has_will);
	node_claim_leaves_will(&b, "w1", 4);
	ck_assert_int_eq(tw_member(&a, "w1"), 1);
	ck_assert_int_eq(tw_member(&a, "n1"), 0);
	nodes_close(&a, &b);
}
END_TEST

/* A key of the janitor's ({L:0} on a Redis Cluster): PREFIX[{L:0}:]name. */
static void janitor_key(char *out, size_t len, const char *pfx, const char *name)
{
	snprintf(out, len, "%s%s%s", pfx, redis_cluster() ? "{L:0}:" : "", name);
}

/*
 * One round of a janitor (incarnation 999, which holds the lease) that
 * dies after handing out the wills claims left to departed node dead:
 * whether it handed out dead's will for id. On a Redis Cluster its round
 * goes as far as reading the will from the session's slot (janitor_s).
 */
static bool janitor_hands_out_left_will(const struct node *dead, const char *id)
{
	char inc[24], now[24], name[40];
	redisContext *r = redis();
	redisReply *rep;
	bool found = false;

	snprintf(inc, sizeof(inc), "%llu", (unsigned long long)(dead->id_base >> 40));
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL) * 1000);
	snprintf(name, sizeof(name), "tw:%s", inc);
	if (!redis_cluster()) {
		const char *argv[] = {"FCALL", "cairn_janitor", "0", dead->prefix, "999", now};

		rep = tcmd_argv(&r, 6, argv);
		ck_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
		for (size_t i = 0; i < rep->element[1]->elements; i++) {
			const redisReply *d = rep->element[1]->element[i];

			found = found || (strcmp(d->element[0]->str, id) == 0 &&
					  strcmp(d->element[1]->str, name) == 0);
		}
		freeReplyObject(rep);
		redisFree(r);
		return found;
	}
	char log[120], g[100], own[120];

	snprintf(log, sizeof(log), "%s{L:0}:log", dead->prefix);
	snprintf(g, sizeof(g), "%s{L:0}:", dead->prefix);
	snprintf(own, sizeof(own), "%s{c:%s}:own", dead->prefix, id);
	const char *jg[] = {"FCALL", "cairn_janitor_g", "1", log, g, "999", now};

	rep = tcmd_argv(&r, 7, jg);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5);
	for (size_t i = 0; i + 1 < rep->element[4]->elements; i += 2)
		found = found || (strcmp(rep->element[4]->element[i]->str, inc) == 0 &&
				  strcmp(rep->element[4]->element[i + 1]->str, id) == 0);
	freeReplyObject(rep);
	if (found) {
		const char *js[] = {
		    "FCALL", "cairn_janitor_s", "1", own, dead->prefix, id, "tw", inc, "", now};

		rep = tcmd_argv(&r, 10, js);
		ck_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 10);
		freeReplyObject(rep);
	}
	redisFree(r);
	return found;
}

/*
 * The janitor hands the wills claims left to a departed node over one by
 * one: each stays listed, with its record, until its append is done, so a
 * janitor that dies midway leaves them to the next round (the once-only
 * marker keeps a retried will to one append); the node leaves the list of
 * nodes once none is left.
 */
START_TEST(t_janitor_keeps_left_wills_until_appended)
{
	struct node a, b;
	char pfx[80], key[160];

	nodes_open(&a, &b, pfx, sizeof(pfx), "twjan");
	node_claim(&a, &b, "w1", 1);
	put_session_will(&a, "w1");
	node_commit(&a, &b);
	node_claim_leaves_will(&b, "w1", 2);
	/* a dies (its loop runs no more): its liveness goes. The test holds
	 * the janitor's lease (incarnation 999). */
	node_key(key, sizeof(key), &a, "alive");
	ck_assert_int_ge(redis_int("DEL %s", key), 0);
	janitor_key(key, sizeof(key), pfx, "cluster:janitor");
	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "SET %s 999 PX 30000", key);
	freeReplyObject(rep);
	redisFree(r);
	ck_assert(janitor_hands_out_left_will(&a, "w1"));
	/* That janitor died: the next round hands the will out again. */
	ck_assert(janitor_hands_out_left_will(&a, "w1"));
	ck_assert_int_eq(tw_exists(&a, "w1"), 1);
	ck_assert_int_eq(log_len(pfx), 0);
	/* The lease goes: b's janitor appends the will, once, and the record,
	 * the list and the node go. */
	ck_assert_int_eq(redis_int("DEL %s", key), 1);
	char nodes[120], inc[24];

	janitor_key(nodes, sizeof(nodes), pfx, "cluster:nodes");
	snprintf(inc, sizeof(inc), "%llu", (unsigned long long)(a.id_base >> 40));
	for (int i = 0; i < 8000 &&
			(tw_exists(&a, "w1") != 0 || redis_int("SISMEMBER %s %s", nodes, inc) != 0);
	     i++) {
		event_base_loop(b.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_int_eq(tw_exists(&a, "w1"), 0);
	ck_assert_int_eq(tw_member(&a, "w1"), 0);
	ck_assert_int_eq(redis_int("SISMEMBER %s %s", nodes, inc), 0);
	ck_assert_int_eq(log_len(pfx), 1);
	nodes_close(&a, &b);
}
END_TEST

/* On a Redis Cluster, the janitor's park of session id of departed
 * incarnation inc (janitor_s), then its will's deadline (the janitor's
 * last step). */
static void janitor_s_park(redisContext **r, const struct node *dead, const char *id,
			   const char *inc, const char *now)
{
	char own[120], wills[120];

	snprintf(own, sizeof(own), "%s{c:%s}:own", dead->prefix, id);
	/* No mark copy: the own key stands for it (no field inc). */
	const char *js[] = {
	    "FCALL", "cairn_janitor_s", "1", own, dead->prefix, id, "park", inc, own, now};
	redisReply *p = tcmd_argv(r, 10, js);

	ck_assert(p != NULL && p->type == REDIS_REPLY_ARRAY && p->elements == 3);
	if (p->element[1]->len > 0) {
		janitor_key(wills, sizeof(wills), dead->prefix, "cluster:wills");
		const char *zadd[] = {"ZADD", wills, p->element[1]->str, id};
		redisReply *z = tcmd_argv(r, 4, zadd);

		freeReplyObject(z);
	}
	freeReplyObject(p);
}

/* The janitor's lease goes to the test (incarnation 999), which parks the
 * sessions of departed node dead (its liveness goes) and hands out no
 * will: one round of a janitor that dies after parking. */
static void janitor_parks(const struct node *dead)
{
	char key[160], now[24], inc[24];
	redisContext *r = redis();
	redisReply *rep;

	node_key(key, sizeof(key), dead, "alive");
	ck_assert_int_ge(redis_int("DEL %s", key), 0);
	janitor_key(key, sizeof(key), dead->prefix, "cluster:janitor");
	rep = tcmd(&r, "SET %s 999 PX 30000", key);
	freeReplyObject(rep);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL) * 1000);
	snprintf(inc, sizeof(inc), "%llu", (unsigned long long)(dead->id_base >> 40));
	if (!redis_cluster()) {
		const char *argv[] = {"FCALL", "cairn_janitor", "0", dead->prefix, "999", now};

		rep = tcmd_argv(&r, 6, argv);
		ck_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3);
		ck_assert_int_ge(rep->element[0]->integer, 1);
		freeReplyObject(rep);
	} else {
		char log[120], g[100];

		snprintf(log, sizeof(log), "%s{L:0}:log", dead->prefix);
		snprintf(g, sizeof(g), "%s{L:0}:", dead->prefix);
		const char *jg[] = {"FCALL", "cairn_janitor_g", "1", log, g, "999", now};

		rep = tcmd_argv(&r, 7, jg);
		ck_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5);
		const redisReply *d = rep->element[1];
		bool found = false;

		for (size_t i = 0; i < d->elements; i++) {
			if (strcmp(d->element[i]->element[0]->str, inc) != 0)
				continue;
			found = true;
			for (size_t k = 2; k < d->element[i]->elements; k++)
				janitor_s_park(&r, dead, d->element[i]->element[k]->str, inc, now);
		}
		ck_assert(found);
		freeReplyObject(rep);
	}
	rep = tcmd(&r, "DEL %s", key);
	freeReplyObject(rep);
	redisFree(r);
}

/*
 * A node taken for dead (its liveness lapsed: a stall) while it lives on:
 * the janitor parks its session, whose will is due; the node, its kick not
 * yet read, publishes the will of the connection that broke meanwhile,
 * and the janitor publishes the parked will. It is one will, which goes
 * out once: the park names it (will_ep) by the claim of the node that
 * held it, as that node's own append does.
 */
START_TEST(t_stalled_nodes_will_goes_once)
{
	struct node a, b;
	char pfx[80];
	struct cairn_msg_rec w = {.topic = "w/t",
				  .payload = (const uint8_t *)"bye",
				  .payload_len = 3,
				  .qos = 1,
				  .will_serial = 1};

	nodes_open(&a, &b, pfx, sizeof(pfx), "stall");
	node_claim(&a, &b, "w1", 1);
	put_session_will(&a, "w1");
	node_commit(&a, &b);
	janitor_parks(&a);
	/* a's connection breaks (its kick unread): it publishes the will. */
	ck_assert_int_eq(cairn_store_redis.log_append(a.st, "w1", &w), 0);
	node_commit(&a, NULL);
	ck_assert_int_eq(log_len(pfx), 1);
	/* b's janitor publishes the parked session's will: no second copy. */
	char key[160];

	janitor_key(key, sizeof(key), pfx, "cluster:wills");
	for (int i = 0; i < 8000 && redis_int("ZCARD %s", key) != 0; i++) {
		event_base_loop(b.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	for (int i = 0; i < 500; i++) { /* its append, if one comes */
		event_base_loop(b.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_int_eq(redis_int("HEXISTS %s{c:w1}:session will_topic", pfx), 0);
	ck_assert_int_eq(log_len(pfx), 1);
	nodes_close(&a, &b);
}
END_TEST

/*
 * Node a holds client ID's session with a will; both nodes' control links
 * are cut (a's kick is lost with it) and b claims the session, leaving a
 * the will (a record under a's incarnation).
 */
static void will_left_while_links_down(struct node *a, struct node *b, const char *id)
{
	node_wait_control(a);
	node_claim(a, b, id, 1);
	put_session_will(a, id);
	node_commit(a, b);
	/* a's control link goes (and b's: both are subscribers here). */
	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "CLIENT KILL TYPE pubsub");
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 1);
	freeReplyObject(rep);
	redisFree(r);
	node_claim_leaves_will(b, id, 2);
}

/* Node a acted on the will left it as on the flagged kick of its first
 * hold of client ID: the core heard of the will, and the record goes. */
static void left_will_acted_on(struct node *a, const char *id)
{
	ck_assert_str_eq(a->kicked, id);
	ck_assert_uint_eq(a->kicked_serial, 1 | CAIRN_KICK_WILL);
	for (int i = 0; i < 3000 && tw_exists(a, id) != 0; i++) {
		event_base_loop(a->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_int_eq(tw_exists(a, id), 0);
}

/*
 * A claim that leaves a node the will of its connection while that node's
 * control link is down: the kick is lost, and the node, once subscribed
 * again, finds the session taken (reconcile) and the record of the will
 * the claim left it, and acts as the flagged kick does: the core hears of
 * the will (CAIRN_KICK_WILL), and the record goes.
 */
START_TEST(t_reconcile_finds_a_left_will)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "recwill");
	will_left_while_links_down(&a, &b, "w1");
	ck_assert_int_eq(tw_exists(&a, "w1"), 1);
	/* a reconnects its control link (after 1 s) and checks its holds. */
	run_until(&a, &b, was_kicked, &a);
	left_will_acted_on(&a, "w1");
	nodes_close(&a, &b);
}
END_TEST

/*
 * A client whose session another node claimed (leaving this node its
 * connection's will) comes back to this node before the kick is read
 * (here: lost with the control link): this node's claim finds the record
 * of the will left it under its hold's epoch and acts on the kick first,
 * so the core publishes the will if the connection still holds it, before
 * the claim's done() drops that session (the kick, read later, finds the
 * session held under the new serial).
 */
START_TEST(t_reclaim_before_the_kick_keeps_the_will)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "reclaim");
	will_left_while_links_down(&a, &b, "w1");
	/* The client is back on a: a's claim, well before its control link
	 * is up again (1 s). */
	node_claim(&a, NULL, "w1", 3);
	left_will_acted_on(&a, "w1");
	nodes_close(&a, &b);
}
END_TEST

/*
 * A slot map that names the wrong master (a slot moved since it was
 * read): the claim and the commit sent there are answered MOVED, sent
 * again to the master it names, and the map learns it.
 */
START_TEST(t_moved)
{
	struct node a, b;
	char pfx[80], own[120];
	unsigned slot;
	uint16_t right, wrong;

	if (needs_redis_cluster(__func__))
		return;
	nodes_open(&a, &b, pfx, sizeof(pfx), "moved");
	snprintf(own, sizeof(own), "%s{c:mv}:own", pfx);
	slot = rd_key_slot(own, strlen(own));
	right = a.st->map->owner[slot];
	wrong = (uint16_t)((right + 1) % a.st->map->nnodes);
	a.st->map->owner[slot] = wrong;
	node_claim(&a, &b, "mv", 1);
	ck_assert_uint_eq(a.st->map->owner[slot], right);
	a.st->map->owner[slot] = wrong;
	put_session(&a, "mv", "moved-user");
	node_commit(&a, &b);
	ck_assert_uint_eq(a.st->map->owner[slot], right);
	redisContext *r = redis();
	redisReply *rep = tcmd(&r, "HGET %s{c:mv}:session username", pfx);
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(rep->str, "moved-user");
	freeReplyObject(rep);
	redisFree(r);
	nodes_close(&a, &b);
}
END_TEST

static void on_claim_any(void *arg, int status, const struct cairn_claim_result *r)
{
	struct node *n = arg;

	(void)r;
	n->claim_done = true;
	n->claim_status = status;
}

/*
 * A master that answers nothing (its address gone, as after a failover)
 * gives no MOVED: the claim sent there fails, the map is read again
 * (CLUSTER SLOTS) from a link that is up, and the next claim goes to the
 * master that serves the slot.
 */
START_TEST(t_map_refresh)
{
	struct node a, b;
	char pfx[80], own[120], moved[160];
	unsigned slot;
	uint16_t right;

	if (needs_redis_cluster(__func__))
		return;
	nodes_open(&a, &b, pfx, sizeof(pfx), "refresh");
	node_claim(&a, &b, "warm", 1); /* a link is up to read the map from */
	snprintf(own, sizeof(own), "%s{c:rf}:own", pfx);
	slot = rd_key_slot(own, strlen(own));
	right = a.st->map->owner[slot];
	/* Port 1 on loopback: nothing listens there. */
	snprintf(moved, sizeof(moved), "MOVED %u 127.0.0.1:1", slot);
	ck_assert(rd_route_moved(a.st, moved, strlen(moved)));
	ck_assert_uint_ne(a.st->map->owner[slot], right);
	a.claim_done = false;
	ck_assert_int_eq(cairn_store_redis.claim(a.st, "rf", 2, on_claim_any, &a),
			 CAIRN_EINPROGRESS);
	run_until(&a, &b, claim_done, &a);
	ck_assert_int_eq(a.claim_status, CAIRN_EUNAVAILABLE);
	for (int i = 0; i < 3000 && a.st->map->owner[slot] != right; i++) {
		event_base_loop(a.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	ck_assert_uint_eq(a.st->map->owner[slot], right);
	node_claim(&a, &b, "rf", 3);
	nodes_close(&a, &b);
}
END_TEST

struct ask_result {
	bool done;
	int type;
	char err[128];
};

static void on_ask_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	struct ask_result *res = privdata;
	redisReply *reply = r;

	(void)ac;
	res->done = true;
	res->type = reply != NULL ? reply->type : -1;
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		snprintf(res->err, sizeof(res->err), "%s", reply->str);
}

/* CLUSTER SETSLOT slot how id on the master at port (synchronously). */
static void setslot(const char *host, int port, unsigned slot, const char *how, const char *id)
{
	redisContext *c = redisConnect(host, port);
	redisReply *r;
	char s[16];

	ck_assert(c != NULL && c->err == 0);
	snprintf(s, sizeof(s), "%u", slot);
	r = id != NULL ? redisCommand(c, "CLUSTER SETSLOT %s %s %s", s, how, id)
		       : redisCommand(c, "CLUSTER SETSLOT %s %s", s, how);
	ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "SETSLOT %s %s: %s", s, how,
		      r != NULL && r->str != NULL ? r->str : "no reply");
	freeReplyObject(r);
	redisFree(c);
}

static char *node_id_at(const char *host, int port)
{
	redisContext *c = redisConnect(host, port);
	redisReply *r;
	char *id;

	ck_assert(c != NULL && c->err == 0);
	r = redisCommand(c, "CLUSTER MYID");
	ck_assert(r != NULL && r->type == REDIS_REPLY_STRING);
	id = strdup(r->str);
	freeReplyObject(r);
	redisFree(c);
	return id;
}

/*
 * A slot on its way from one master to another (MIGRATING there,
 * IMPORTING here): a key the old master no longer has is answered ASK; the
 * command goes once more, after ASKING, to the master it names, and the
 * map stays as it is (the slot is still the old master's).
 */
START_TEST(t_ask)
{
	struct node a;
	char pfx[80], key[120];
	struct ask_result res = {0};
	const struct rd_slot_node *from, *to;
	unsigned slot;
	uint16_t m;
	char *from_id, *to_id;

	if (needs_redis_cluster(__func__))
		return;
	prefix_for(pfx, sizeof(pfx), "ask");
	node_open(&a, pfx, "a");
	snprintf(key, sizeof(key), "%sno-such-key", pfx);
	slot = rd_key_slot(key, strlen(key));
	m = a.st->map->owner[slot];
	from = &a.st->map->nodes[m];
	to = &a.st->map->nodes[(m + 1) % a.st->map->nnodes];
	from_id = node_id_at(from->host, from->port);
	to_id = node_id_at(to->host, to->port);
	setslot(to->host, to->port, slot, "IMPORTING", from_id);
	setslot(from->host, from->port, slot, "MIGRATING", to_id);
	{
		const char *argv[] = {"GET", key};

		ck_assert_int_eq(
		    rd_route_argv(a.st, key, strlen(key), on_ask_reply, &res, 2, argv, NULL),
		    REDIS_OK);
	}
	for (int i = 0; i < 3000 && !res.done; i++) {
		event_base_loop(a.base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	setslot(from->host, from->port, slot, "STABLE", NULL);
	setslot(to->host, to->port, slot, "STABLE", NULL);
	ck_assert(res.done);
	ck_assert_msg(res.type == REDIS_REPLY_NIL, "reply type %d: %s", res.type, res.err);
	ck_assert_uint_eq(a.st->map->owner[slot], m);
	free(from_id);
	free(to_id);
	node_close(&a);
}
END_TEST

/* The replicas each master has under tests/with-redis-cluster.sh
 * (CAIRN_REDIS_CLUSTER_REPLICAS, 0 by default). */
static int cluster_replicas(void)
{
	const char *r = getenv("CAIRN_REDIS_CLUSTER_REPLICAS");

	return r != NULL ? atoi(r) : 0;
}

/* The first replica of the master at host:port (CLUSTER REPLICAS), its
 * port, or 0. */
static int replica_port_of(const char *host, int port)
{
	char *id = node_id_at(host, port);
	redisContext *c = redisConnect(host, port);
	redisReply *r;
	int rport = 0;

	ck_assert(c != NULL && c->err == 0);
	r = redisCommand(c, "CLUSTER REPLICAS %s", id);
	ck_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
	if (r->elements > 0) {
		/* "<id> <ip>:<port>@<bus port> slave ..." */
		const char *colon = strchr(r->element[0]->str, ':');

		ck_assert_ptr_nonnull(colon);
		rport = atoi(colon + 1);
	}
	freeReplyObject(r);
	redisFree(c);
	free(id);
	return rport;
}

/*
 * redis_wait_replicas on a Redis Cluster: a commit's part on each master
 * is followed by WAIT there. Asking for one replica more than the masters
 * have (CAIRN_REDIS_CLUSTER_REPLICAS, 0 by default), the commit fails:
 * the core retries it, and acknowledges nothing it carries until then.
 */
START_TEST(t_wait_replicas_short)
{
	struct node a;
	char pfx[80], more[16];

	if (needs_redis_cluster(__func__))
		return;
	prefix_for(pfx, sizeof(pfx), "waitshort");
	snprintf(more, sizeof(more), "%d", cluster_replicas() + 1);
	node_open_wait(&a, pfx, "a", more);
	node_claim(&a, NULL, "ws", 1);
	put_session(&a, "ws", "short");
	a.commit_done = false;
	ck_assert_int_eq(cairn_store_redis.commit(a.st, on_commit, &a), CAIRN_EINPROGRESS);
	run_until(&a, NULL, commit_done, &a);
	ck_assert_int_ne(a.commit_status, 0);
	node_close(&a);
}
END_TEST

/*
 * Asking for as many replicas as the masters have (a cluster started with
 * CAIRN_REDIS_CLUSTER_REPLICAS=1, ./dev cluster-test --replicas), the
 * commit succeeds, and the session's master's replica holds the session
 * by the time done() says so.
 */
START_TEST(t_wait_replicas_held)
{
	struct node a;
	char pfx[80], have[16], own[120];
	const struct rd_slot_node *m;
	redisContext *r;
	redisReply *rep;
	int rport;

	if (needs_redis_cluster(__func__))
		return;
	if (cluster_replicas() == 0) {
		printf("SKIP cluster: t_wait_replicas_held[redis]: needs a Redis Cluster with "
		       "replicas (CAIRN_REDIS_CLUSTER_REPLICAS=1, ./dev cluster-test "
		       "--replicas)\n");
		fflush(stdout);
		return;
	}
	prefix_for(pfx, sizeof(pfx), "waitheld");
	snprintf(have, sizeof(have), "%d", cluster_replicas());
	node_open_wait(&a, pfx, "a", have);
	node_claim(&a, NULL, "wh", 1);
	put_session(&a, "wh", "held");
	node_commit(&a, NULL);
	snprintf(own, sizeof(own), "%s{c:wh}:own", pfx);
	m = &a.st->map->nodes[a.st->map->owner[rd_key_slot(own, strlen(own))]];
	rport = replica_port_of(m->host, m->port);
	ck_assert_int_gt(rport, 0);
	r = redisConnect(m->host, rport);
	ck_assert(r != NULL && r->err == 0);
	rep = redisCommand(r, "READONLY");
	ck_assert(rep != NULL && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	rep = redisCommand(r, "HGET %s{c:wh}:session username", pfx);
	ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_STRING,
		      "the replica on port %d does not hold the committed session", rport);
	ck_assert_str_eq(rep->str, "held");
	freeReplyObject(rep);
	redisFree(r);
	node_close(&a);
}
END_TEST

/*
 * A commit's part sent to the wrong master under redis_wait_replicas: the
 * MOVED sends it, and a WAIT after it, to the right one; the WAIT left on
 * the wrong master's link answers too and is ignored. With replicas the
 * commit succeeds; without, the right master's WAIT comes short and it
 * fails. Either way the map is put right.
 */
START_TEST(t_wait_replicas_moved)
{
	struct node a;
	char pfx[80], want[16], own[120];
	int have = cluster_replicas();
	unsigned slot;
	uint16_t right, wrong;

	if (needs_redis_cluster(__func__))
		return;
	prefix_for(pfx, sizeof(pfx), "waitmoved");
	snprintf(want, sizeof(want), "%d", have > 0 ? have : 1);
	node_open_wait(&a, pfx, "a", want);
	node_claim(&a, NULL, "wm", 1);
	snprintf(own, sizeof(own), "%s{c:wm}:own", pfx);
	slot = rd_key_slot(own, strlen(own));
	right = a.st->map->owner[slot];
	wrong = (uint16_t)((right + 1) % a.st->map->nnodes);
	a.st->map->owner[slot] = wrong;
	put_session(&a, "wm", "moved");
	a.commit_done = false;
	ck_assert_int_eq(cairn_store_redis.commit(a.st, on_commit, &a), CAIRN_EINPROGRESS);
	run_until(&a, NULL, commit_done, &a);
	if (have > 0)
		ck_assert_int_eq(a.commit_status, 0);
	else
		ck_assert_int_ne(a.commit_status, 0);
	ck_assert_uint_eq(a.st->map->owner[slot], right);
	node_close(&a);
}
END_TEST

/* ---- slot routing (slots.c) ---- */

/* Slots as CLUSTER KEYSLOT gives them (Redis 7.0). */
START_TEST(t_key_slot)
{
	static const struct {
		const char *key;
		unsigned slot;
	} v[] = {
	    {"foo", 12182},
	    {"bar", 5061},
	    {"123456789", 12739},
	    {"{user1000}.following", 3443},
	    {"{}x", 10595},
	    {"a{}{b}", 15033},
	    {"{{b}}", 6215},
	    {"x{", 3596},
	    {"{c:}x", 2400},
	    {"cairn:{c:dev1}:own", 15501},
	    {"cairn:{L:0}:log", 13505},
	    {"", 0},
	};

	ck_assert_uint_eq(rd_crc16("123456789", 9), 0x31C3);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		ck_assert_msg(rd_key_slot(v[i].key, strlen(v[i].key)) == v[i].slot,
			      "slot of '%s': %u, want %u", v[i].key,
			      rd_key_slot(v[i].key, strlen(v[i].key)), v[i].slot);
	/* Every key of one session shares its hash tag's slot. */
	ck_assert_uint_eq(rd_key_slot("p:{c:dev1}:session", 18), rd_key_slot("{c:dev1}", 8));
	ck_assert_uint_eq(rd_key_slot("p:{c:dev1}:session", 18), rd_key_slot("c:dev1", 6));
}
END_TEST

START_TEST(t_redirect_parse)
{
	char host[64];
	unsigned slot = 0;
	int port = 0;
	const char *moved = "MOVED 12182 127.0.0.1:46505", *ask = "ASK 3 ::1:7000";

	ck_assert_int_eq(rd_redirect_parse(moved, strlen(moved), &slot, host, sizeof(host), &port),
			 RD_MOVED);
	ck_assert_uint_eq(slot, 12182);
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_int_eq(port, 46505);
	ck_assert_int_eq(rd_redirect_parse(ask, strlen(ask), &slot, host, sizeof(host), &port),
			 RD_ASK);
	ck_assert_uint_eq(slot, 3);
	ck_assert_str_eq(host, "::1");
	ck_assert_int_eq(port, 7000);
	static const char *const bad[] = {"MOVED",
					  "MOVED 16384 127.0.0.1:1",
					  "MOVED 1 127.0.0.1",
					  "MOVED 1 127.0.0.1:0",
					  "MOVED 1 :0",
					  "MOVED x 127.0.0.1:1",
					  "ERR wrong type",
					  "CROSSSLOT Keys in request don't hash to the same slot"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(rd_redirect_parse(bad[i], strlen(bad[i]), &slot, host, sizeof(host),
						&port) == RD_NO_REDIRECT,
			      "'%s' taken for a redirection", bad[i]);
	/* No endpoint (cluster-preferred-endpoint-type unknown-endpoint):
	 * an empty host, for the caller to take the address it reached. */
	static const char *const none[] = {"MOVED 1 :7000", "MOVED 1 ?:7000", "ASK 1 :7000"};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		strcpy(host, "x");
		ck_assert_msg(rd_redirect_parse(none[i], strlen(none[i]), &slot, host, sizeof(host),
						&port) != RD_NO_REDIRECT,
			      "'%s' not taken for a redirection", none[i]);
		ck_assert_str_eq(host, "");
		ck_assert_int_eq(port, 7000);
		ck_assert_uint_eq(slot, 1);
	}
	/* A host that does not fit is no redirection either. */
	ck_assert_int_eq(rd_redirect_parse(moved, strlen(moved), &slot, host, 9, &port),
			 RD_NO_REDIRECT);
}
END_TEST

/* A reply built by hand, as hiredis would hand it over. */
static redisReply *rep(int type)
{
	redisReply *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	r->type = type;
	return r;
}

static redisReply *rep_int(long long v)
{
	redisReply *r = rep(REDIS_REPLY_INTEGER);

	r->integer = v;
	return r;
}

static redisReply *rep_str(const char *s)
{
	redisReply *r = rep(REDIS_REPLY_STRING);

	r->len = strlen(s);
	r->str = strdup(s);
	return r;
}

static redisReply *rep_arr(size_t n, ...)
{
	redisReply *r = rep(REDIS_REPLY_ARRAY);
	va_list ap;

	r->elements = n;
	r->element = calloc(n, sizeof(*r->element));
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static redisReply *range(long long first, long long last, const char *host, long long port)
{
	return rep_arr(3, rep_int(first), rep_int(last),
		       rep_arr(3, rep_str(host), rep_int(port), rep_str("id")));
}

START_TEST(t_slot_map_parse)
{
	struct rd_slot_map *m = calloc(1, sizeof(*m));
	redisReply *r =
	    rep_arr(4, range(0, 5460, "127.0.0.1", 7001), range(5461, 10922, "", 7002),
		    range(10923, 16000, "127.0.0.1", 7001), range(16001, 16383, "?", 7003));

	ck_assert_int_eq(rd_slot_map_parse(r, "10.0.0.9", m), 0);
	ck_assert_uint_eq(m->nnodes, 3);
	ck_assert_uint_eq(rd_slot_map_unserved(m), 0);
	ck_assert_str_eq(m->nodes[m->owner[0]].host, "127.0.0.1");
	ck_assert_int_eq(m->nodes[m->owner[0]].port, 7001);
	ck_assert_uint_eq(m->owner[5460], m->owner[0]);
	ck_assert_uint_eq(m->owner[16000], m->owner[0]);
	/* No host: the address the reply came from. */
	ck_assert_str_eq(m->nodes[m->owner[5461]].host, "10.0.0.9");
	ck_assert_int_eq(m->nodes[m->owner[10922]].port, 7002);
	ck_assert_str_eq(m->nodes[m->owner[16383]].host, "10.0.0.9");
	ck_assert_int_eq(m->nodes[m->owner[16383]].port, 7003);
	rd_slot_map_free(m);
	freeReplyObject(r);

	/* A NULL endpoint (Redis 7, cluster-preferred-endpoint-type
	 * unknown-endpoint) is the address the reply came from, too. */
	r = rep_arr(2, range(0, 8191, "127.0.0.1", 7001),
		    rep_arr(3, rep_int(8192), rep_int(16383),
			    rep_arr(3, rep(REDIS_REPLY_NIL), rep_int(7002), rep_str("id"))));
	ck_assert_int_eq(rd_slot_map_parse(r, "10.0.0.9", m), 0);
	ck_assert_uint_eq(rd_slot_map_unserved(m), 0);
	ck_assert_str_eq(m->nodes[m->owner[16383]].host, "10.0.0.9");
	ck_assert_int_eq(m->nodes[m->owner[16383]].port, 7002);
	rd_slot_map_free(m);
	freeReplyObject(r);

	/* A gap is unserved; a range past the last slot is refused. */
	r = rep_arr(1, range(0, 99, "127.0.0.1", 7001));
	ck_assert_int_eq(rd_slot_map_parse(r, "h", m), 0);
	ck_assert_uint_eq(rd_slot_map_unserved(m), RD_SLOTS - 100);
	ck_assert_uint_eq(m->owner[100], RD_NO_NODE);
	rd_slot_map_free(m);
	freeReplyObject(r);
	r = rep_arr(1, range(0, 16384, "127.0.0.1", 7001));
	ck_assert_int_eq(rd_slot_map_parse(r, "h", m), CAIRN_EIO);
	ck_assert_uint_eq(m->nnodes, 0);
	freeReplyObject(r);
	r = rep_arr(1, rep_arr(2, rep_int(0), rep_int(1)));
	ck_assert_int_eq(rd_slot_map_parse(r, "h", m), CAIRN_EIO);
	freeReplyObject(r);
	free(m);
}
END_TEST

static const char *cluster_get(void *arg, const char *key)
{
	const char *mode = arg;

	if (strcmp(key, "redis_port") == 0)
		return getenv("CAIRN_REDIS_PORT");
	if (strcmp(key, "redis_connect_timeout") == 0)
		return "2000";
	if (strcmp(key, "cluster") == 0)
		return mode;
	if (strcmp(key, "cluster_node_id") == 0)
		return "n1";
	return NULL;
}

/*
 * On a three-master Redis Cluster (tests/with-redis-cluster.sh): the slot
 * map CLUSTER SLOTS gives serves every slot from three masters, a key sent
 * to a master that does not serve its slot is answered with a MOVED that
 * names the master the map gives, and the backend's open takes the
 * cluster in cluster mode and refuses it without (the single-node layout
 * spans slots in one commit), naming it a Redis Cluster.
 */
START_TEST(t_redis_cluster_open)
{
	const char *c = getenv("CAIRN_REDIS_CLUSTER");
	const char *modes[] = {"true", "false"};
	struct rd_slot_map *m;
	redisContext *rc;
	redisReply *r;
	int moved = 0;

	if (c == NULL || strcmp(c, "1") != 0) {
		printf("SKIP cluster: t_redis_cluster_open[redis]: needs a Redis Cluster "
		       "(tests/with-redis-cluster.sh, ./dev cluster-test)\n");
		fflush(stdout);
		return;
	}
	rc = redis();
	r = redisCommand(rc, "CLUSTER SLOTS");
	m = calloc(1, sizeof(*m));
	ck_assert_int_eq(rd_slot_map_parse(r, "127.0.0.1", m), 0);
	freeReplyObject(r);
	ck_assert_uint_eq(m->nnodes, 3);
	ck_assert_uint_eq(rd_slot_map_unserved(m), 0);
	for (int i = 0; i < 200; i++) {
		char key[32], host[64];
		unsigned slot;
		int port;

		snprintf(key, sizeof(key), "ck-slot-%d", i);
		r = redisCommand(rc, "GET %s", key);
		ck_assert_ptr_nonnull(r);
		if (r->type == REDIS_REPLY_ERROR) {
			ck_assert_int_eq(
			    rd_redirect_parse(r->str, r->len, &slot, host, sizeof(host), &port),
			    RD_MOVED);
			ck_assert_uint_eq(slot, rd_key_slot(key, strlen(key)));
			ck_assert_str_eq(host, m->nodes[m->owner[slot]].host);
			ck_assert_int_eq(port, m->nodes[m->owner[slot]].port);
			moved++;
		}
		freeReplyObject(r);
	}
	ck_assert_int_gt(moved, 0);
	rd_slot_map_free(m);
	free(m);
	redisFree(rc);
	for (size_t i = 0; i < 2; i++) {
		struct event_base *base = event_base_new();
		struct cairn_store_options o = {.durability = CAIRN_DURABILITY_OS,
						.base = base,
						.get = cluster_get,
						.get_arg = (void *)modes[i]};
		struct cairn_store *st = NULL;
		char err[512] = "";

		if (i == 0) {
			ck_assert_msg(cairn_store_redis.open(&o, &st, err, sizeof(err)) == 0,
				      "error: %s", err);
			cairn_store_redis.close(st);
		} else {
			ck_assert_int_eq(cairn_store_redis.open(&o, &st, err, sizeof(err)),
					 CAIRN_EINVAL);
			ck_assert_ptr_null(st);
			ck_assert_msg(strstr(err, "is a Redis Cluster (3 masters") != NULL,
				      "error: %s", err);
		}
		event_base_free(base);
	}
}
END_TEST

/* ---- shared subscription groups (version 6) ---- */

static struct share_got {
	bool done;
	int status;
	size_t n;
	char payloads[8][16];
	struct cairn_log_pos pos[8];
} sg;

static void on_share_join(void *arg, int status)
{
	(void)arg;
	sg.done = true;
	sg.status = status;
}

static void on_share_read(void *arg, int status, const struct cairn_log_entry *e, size_t n)
{
	(void)arg;
	sg.done = true;
	sg.status = status;
	sg.n = n;
	for (size_t i = 0; i < n && i < 8; i++) {
		snprintf(sg.payloads[i], sizeof(sg.payloads[i]), "%.*s", (int)e[i].msg.payload_len,
			 (const char *)e[i].msg.payload);
		sg.pos[i] = e[i].pos;
	}
}

static bool sg_done(struct node *n)
{
	(void)n;
	return sg.done;
}

/* n appends "one", "two" and "three" for the session "pub" it holds, at
 * QoS 1, to t/x (the second to topic2), and commits them. */
static void append_three(struct node *n, struct node *other, const char *topic2)
{
	const char *pl[] = {"one", "two", "three"};

	for (int i = 0; i < 3; i++) {
		struct cairn_msg_rec m = {.topic = i == 1 ? topic2 : "t/x",
					  .payload = (const uint8_t *)pl[i],
					  .payload_len = (uint32_t)strlen(pl[i]),
					  .qos = 1};
		ck_assert_int_eq(cairn_store_redis.log_append(n->st, "pub", &m), 0);
	}
	node_commit(n, other);
}

static void share_join(struct node *n, struct node *other, const char *member, int want)
{
	sg = (struct share_got){0};
	ck_assert_int_eq(
	    cairn_store_redis.share_join(n->st, 0, "g/t/#", member, n->tail, on_share_join, NULL),
	    CAIRN_EINPROGRESS);
	run_until(n, other, sg_done, n);
	ck_assert_int_eq(sg.status, want);
}

static void share_read(struct node *n, struct node *other, uint64_t idle, int want, size_t nwant)
{
	sg = (struct share_got){0};
	ck_assert_int_eq(
	    cairn_store_redis.share_read(n->st, 0, "g/t/#", 8, idle, on_share_read, NULL),
	    CAIRN_EINPROGRESS);
	run_until(n, other, sg_done, n);
	ck_assert_int_eq(sg.status, want);
	ck_assert_uint_eq(sg.n, nwant);
}

/* A group reads the log once for all the nodes: an entry one node read is
 * not given to another, until it has been left unacknowledged for the idle
 * time asked (a takeover); an acknowledged entry is done with; the group
 * lives while it has a member (a second join is harmless) and a read of a
 * group that is gone says so (CAIRN_ENOTFOUND). */
START_TEST(t_share_group)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "share");
	/* Members with sessions a node holds (a takeover removes others). */
	node_claim(&a, &b, "m1", 1);
	put_session(&a, "m1", NULL);
	node_claim(&b, &a, "m2", 2);
	put_session(&b, "m2", NULL);
	node_commit(&b, &a);
	share_join(&a, &b, "m1", 0);
	share_join(&a, &b, "m1", 0);
	share_join(&b, &a, "m2", 0);
	ck_assert_int_eq(redis_int("SCARD %s{L:0}:share:g/t/#", pfx), 2);

	node_claim(&a, &b, "pub", 1);
	append_three(&a, &b, "u/x");

	/* a reads them all (the group reads the whole partition); b nothing. */
	share_read(&a, &b, 0, 0, 3);
	ck_assert_str_eq(sg.payloads[0], "one");
	ck_assert_str_eq(sg.payloads[2], "three");
	share_read(&b, &a, 0, 0, 0);
	/* a leaves them unacknowledged: b takes them over after the idle time. */
	share_read(&b, &a, 60000, 0, 0);
	usleep(30 * 1000);
	share_read(&b, &a, 20, 0, 3);
	ck_assert_str_eq(sg.payloads[1], "two");
	ck_assert_int_eq(redis_int("XPENDING %s{L:0}:log g/t/#", pfx), 3);
	struct cairn_log_pos pos[3] = {sg.pos[0], sg.pos[1], sg.pos[2]};
	ck_assert_int_eq(cairn_store_redis.share_ack(b.st, 0, "g/t/#", pos, 3), 0);
	share_read(&b, &a, 0, 0, 0); /* after the XACK on the same link */
	ck_assert_int_eq(redis_int("XPENDING %s{L:0}:log g/t/#", pfx), 0);

	/* One member left: the group stays; the last one: it goes. */
	ck_assert_int_eq(cairn_store_redis.share_leave(a.st, 0, "g/t/#", "m1"), 0);
	share_read(&a, &b, 0, 0, 0);
	ck_assert_int_eq(cairn_store_redis.share_leave(b.st, 0, "g/t/#", "m2"), 0);
	share_read(&b, &a, 0, CAIRN_ENOTFOUND, 0);
	ck_assert_int_eq(redis_int("EXISTS %s{L:0}:share:g/t/#", pfx), 0);
	/* Joined again without a member (a node that restored one): it reads
	 * from the position given, and counts no member. */
	share_join(&a, &b, NULL, 0);
	share_read(&a, &b, 0, 0, 3);
	ck_assert_int_eq(redis_int("EXISTS %s{L:0}:share:g/t/#", pfx), 0);
	nodes_close(&a, &b);
}
END_TEST

/* A reader's own unacknowledged entries (CAIRN_SHARE_READ_MINE) are read
 * again, oldest first, as long as it does not acknowledge them; not another
 * reader's, and not new ones. */
START_TEST(t_share_own_entries)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "sharemine");
	share_join(&a, &b, "m1", 0);
	node_claim(&a, &b, "pub", 1);
	append_three(&a, &b, "t/x");
	share_read(&a, &b, CAIRN_SHARE_READ_MINE, 0, 0); /* none read yet */
	share_read(&a, &b, 0, 0, 3);
	share_read(&b, &a, CAIRN_SHARE_READ_MINE, 0, 0); /* a's, not b's */
	share_read(&a, &b, CAIRN_SHARE_READ_MINE, 0, 3);
	ck_assert_str_eq(sg.payloads[0], "one");
	ck_assert_str_eq(sg.payloads[2], "three");
	struct cairn_log_pos first = sg.pos[0];
	ck_assert_int_eq(cairn_store_redis.share_ack(a.st, 0, "g/t/#", &first, 1), 0);
	share_read(&a, &b, CAIRN_SHARE_READ_MINE, 0, 2);
	ck_assert_str_eq(sg.payloads[0], "two");
	share_read(&a, &b, 0, 0, 0); /* nothing new */
	ck_assert_int_eq(redis_int("XPENDING %s{L:0}:log g/t/#", pfx), 2);
	/* An entry that is not cairn's is acknowledged as it is read: it
	 * does not come back with the reader's own. */
	redisContext *r = redis();
	freeReplyObject(tcmd(&r, "XADD %s{L:0}:log * foo bar", pfx));
	redisFree(r);
	share_read(&a, &b, 0, 0, 0);
	share_read(&a, &b, CAIRN_SHARE_READ_MINE, 0, 2);
	ck_assert_int_eq(redis_int("XPENDING %s{L:0}:log g/t/#", pfx), 2);
	nodes_close(&a, &b);
}
END_TEST

/* With the log in partitions, a group whose filter's first level is
 * literal joins (and leaves) at once, without Redis, every partition but
 * the one of that level's topics; a wildcard first level joins them all. */
START_TEST(t_share_partition_of_a_literal_level)
{
	struct node a, b;
	char pfx[80];
	uint32_t mine = rd_log_partition("t", 4);

	prefix_for(pfx, sizeof(pfx), "sharepart");
	node_open_parts(&a, pfx, "a", "4");
	node_open_parts(&b, pfx, "b", "4");
	for (uint32_t p = 0; p < 4; p++) {
		sg = (struct share_got){0};
		int rc = cairn_store_redis.share_join(a.st, p, "g/t/#", "m1", a.ptail[p],
						      on_share_join, NULL);
		if (p != mine) {
			ck_assert_int_eq(rc, 0);
			ck_assert(!sg.done);
			ck_assert_int_eq(cairn_store_redis.share_leave(a.st, p, "g/t/#", "m1"), 0);
			continue;
		}
		ck_assert_int_eq(rc, CAIRN_EINPROGRESS);
		run_until(&a, &b, sg_done, &a);
		ck_assert_int_eq(sg.status, 0);
		sg = (struct share_got){0};
		ck_assert_int_eq(cairn_store_redis.share_join(a.st, p, "h/+/x", "m1", a.ptail[p],
							      on_share_join, NULL),
				 CAIRN_EINPROGRESS);
		run_until(&a, &b, sg_done, &a);
		ck_assert_int_eq(sg.status, 0);
	}
	for (uint32_t p = 0; p < 4; p++)
		ck_assert_int_eq(redis_int("EXISTS %s{L:%u}:share:g/t/#", pfx, (unsigned)p),
				 p == mine ? 1 : 0);
	nodes_close(&a, &b);
}
END_TEST

/* A read of the reader's own entries that meets one the stream no longer
 * holds (trimmed while pending) acknowledges it and still brings as many of
 * its own as asked, when it has them: fewer would tell the core none is
 * left, and newer entries would go out before them (review23c finding 7). */
START_TEST(t_share_own_entries_past_a_trimmed_one)
{
	struct node a, b;
	char pfx[80], id[48];

	nodes_open(&a, &b, pfx, sizeof(pfx), "sharetrim");
	share_join(&a, &b, "m1", 0);
	node_claim(&a, &b, "pub", 1);
	append_three(&a, &b, "t/x");
	share_read(&a, &b, 0, 0, 3);
	rd_pos_format(id, sg.pos[0]);
	ck_assert_int_eq(redis_int("XDEL %s{L:0}:log %s", pfx, id), 1);
	sg = (struct share_got){0};
	ck_assert_int_eq(cairn_store_redis.share_read(a.st, 0, "g/t/#", 2, CAIRN_SHARE_READ_MINE,
						      on_share_read, NULL),
			 CAIRN_EINPROGRESS);
	run_until(&a, &b, sg_done, &a);
	ck_assert_int_eq(sg.status, 0);
	ck_assert_uint_eq(sg.n, 2);
	ck_assert_str_eq(sg.payloads[0], "two");
	ck_assert_str_eq(sg.payloads[1], "three");
	ck_assert_int_eq(redis_int("XPENDING %s{L:0}:log g/t/#", pfx), 2);
	nodes_close(&a, &b);
}
END_TEST

/* A takeover removes from the group the members whose session is gone and
 * held by no node (expired while parked, or clean and its node died): m3
 * never had one; m1, held by a, stays. With nothing to take over, the
 * members are looked at too (once in a while). */
START_TEST(t_share_stale_member_removed)
{
	struct node a, b;
	char pfx[80];

	nodes_open(&a, &b, pfx, sizeof(pfx), "sharestale");
	share_join(&a, &b, "m1", 0);
	share_join(&b, &a, "m3", 0);
	node_claim(&a, &b, "m1", 1);
	put_session(&a, "m1", NULL);
	node_commit(&a, &b);
	ck_assert_int_eq(redis_int("SCARD %s{L:0}:share:g/t/#", pfx), 2);
	share_read(&b, &a, 60000, 0, 0);
	ck_assert_int_eq(redis_int("SISMEMBER %s{L:0}:share:g/t/# m3", pfx), 0);
	ck_assert_int_eq(redis_int("SISMEMBER %s{L:0}:share:g/t/# m1", pfx), 1);
	/* With entries taken over too. */
	share_join(&b, &a, "m3", 0);
	node_claim(&a, &b, "pub", 2);
	append_three(&a, &b, "t/x");
	share_read(&a, &b, 0, 0, 3);
	usleep(30 * 1000);
	share_read(&b, &a, 20, 0, 3);
	ck_assert_int_eq(redis_int("SISMEMBER %s{L:0}:share:g/t/# m3", pfx), 0);
	ck_assert_int_eq(redis_int("SISMEMBER %s{L:0}:share:g/t/# m1", pfx), 1);
	nodes_close(&a, &b);
}
END_TEST

/* The mark of group g/t/# entry pos in member's session (cairn-redis(5):
 * {c:ID}:shared), into out ("" when there is none). */
static void share_mark_of(const char *pfx, const char *member, struct cairn_log_pos pos, char *out,
			  size_t len)
{
	char id[48];
	redisContext *r = redis();

	rd_pos_format(id, pos);
	redisReply *rep = tcmd(&r, "HGET %s{c:%s}:shared 0|%s|g/t/#", pfx, member, id);
	snprintf(out, len, "%s", rep != NULL && rep->type == REDIS_REPLY_STRING ? rep->str : "");
	freeReplyObject(rep);
	redisFree(r);
}

/* An entry is given once (version 7): a commit that gives it to a member
 * records it in the member's session; a takeover acknowledges the entries
 * a member holds (never returns them) and marks the others taken in every
 * member's session; the first reader's late commit of such an entry is
 * fenced, the taker's own goes through. */
START_TEST(t_share_given_once)
{
	struct node a, b;
	char pfx[80], mark[64], want[64];

	nodes_open(&a, &b, pfx, sizeof(pfx), "shareonce");
	share_join(&a, &b, "m1", 0);
	share_join(&b, &a, "m2", 0);
	node_claim(&a, &b, "m1", 1);
	put_session(&a, "m1", NULL);
	node_claim(&b, &a, "m2", 2);
	put_session(&b, "m2", NULL);
	node_commit(&b, &a);
	node_claim(&a, &b, "pub", 3);
	append_three(&a, &b, "t/x");

	/* a reads the three; gives "one" to m1 (committed), then "two" to m1
	 * (its commit held back), and acknowledges neither: a stall. */
	share_read(&a, &b, 0, 0, 3);
	struct cairn_log_pos pos[3] = {sg.pos[0], sg.pos[1], sg.pos[2]};
	ck_assert_int_eq(cairn_store_redis.share_given(a.st, 0, "g/t/#", "m1", pos[0]), 0);
	node_commit(&a, &b);
	share_mark_of(pfx, "m1", pos[0], mark, sizeof(mark));
	ck_assert_str_eq(mark, "d");
	ck_assert_int_eq(cairn_store_redis.share_given(a.st, 0, "g/t/#", "m1", pos[1]), 0);

	/* b takes over: "one" is m1's (acknowledged, not returned), "two" and
	 * "three" are b's, marked taken in both members' sessions. */
	usleep(30 * 1000);
	share_read(&b, &a, 20, 0, 2);
	ck_assert_str_eq(sg.payloads[0], "two");
	ck_assert_str_eq(sg.payloads[1], "three");
	ck_assert_int_eq(redis_int("XPENDING %s{L:0}:log g/t/#", pfx), 2);
	snprintf(want, sizeof(want), "t:%s", b.st->inc_s);
	share_mark_of(pfx, "m1", pos[1], mark, sizeof(mark));
	ck_assert_str_eq(mark, want);
	share_mark_of(pfx, "m2", pos[2], mark, sizeof(mark));
	ck_assert_str_eq(mark, want);

	/* a's late commit gives "two" to m1: fenced, m1's writes dropped. */
	ck_assert_str_eq(a.fenced, "");
	node_commit(&a, &b);
	ck_assert_str_eq(a.fenced, "m1");
	share_mark_of(pfx, "m1", pos[1], mark, sizeof(mark));
	ck_assert_str_eq(mark, want);

	/* b gives "two" to m2: its own mark lets it through. */
	ck_assert_int_eq(cairn_store_redis.share_given(b.st, 0, "g/t/#", "m2", pos[1]), 0);
	node_commit(&b, &a);
	ck_assert_str_eq(b.fenced, "");
	share_mark_of(pfx, "m2", pos[1], mark, sizeof(mark));
	ck_assert_str_eq(mark, "d");
	/* A replay of that commit (applied, its reply lost) goes through too. */
	ck_assert_int_eq(cairn_store_redis.share_given(b.st, 0, "g/t/#", "m2", pos[1]), 0);
	node_commit(&b, &a);
	ck_assert_str_eq(b.fenced, "");
	/* The marks go with the entries' age: they expire. */
	ck_assert_int_gt(redis_int("TTL %s{c:m2}:shared", pfx), 0);
	nodes_close(&a, &b);
}
END_TEST

#endif

static Suite *cluster_suite(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tcase_create("redis");

	tcase_set_timeout(tc, 30);
#ifdef HAVE_HIREDIS
	tcase_add_test(tc, t_claim_kicks_and_fences);
	tcase_add_test(tc, t_fenced_without_kick);
	tcase_add_test(tc, t_log_and_cursor);
	tcase_add_test(tc, t_partitions_agree);
	tcase_add_test(tc, t_partitions);
	tcase_add_test(tc, t_append_once);
	tcase_add_test(tc, t_park);
	tcase_add_test(tc, t_redis_cluster_open);
	tcase_add_test(tc, t_qos2_marker);
	tcase_add_test(tc, t_qos2_marker_partitions);
	tcase_add_test(tc, t_q2_forget_races_a_claim);
	tcase_add_test(tc, t_q2_pubrel_races_a_claim);
	tcase_add_test(tc, t_will_races_a_claim);
	tcase_add_test(tc, t_reconcile_finds_a_left_will);
	tcase_add_test(tc, t_claim_lists_only_left_wills);
	tcase_add_test(tc, t_janitor_keeps_left_wills_until_appended);
	tcase_add_test(tc, t_stalled_nodes_will_goes_once);
	tcase_add_test(tc, t_reclaim_before_the_kick_keeps_the_will);
	tcase_add_test(tc, t_moved);
	tcase_add_test(tc, t_map_refresh);
	tcase_add_test(tc, t_ask);
	tcase_add_test(tc, t_wait_replicas_short);
	tcase_add_test(tc, t_wait_replicas_held);
	tcase_add_test(tc, t_wait_replicas_moved);
	tcase_add_test(tc, t_share_group);
	tcase_add_test(tc, t_share_own_entries);
	tcase_add_test(tc, t_share_partition_of_a_literal_level);
	tcase_add_test(tc, t_share_given_once);
	tcase_add_test(tc, t_share_own_entries_past_a_trimmed_one);
	tcase_add_test(tc, t_share_stale_member_removed);
#endif
	suite_add_tcase(s, tc);
#ifdef HAVE_HIREDIS
	tc = tcase_create("slots");
	tcase_add_test(tc, t_key_slot);
	tcase_add_test(tc, t_redirect_parse);
	tcase_add_test(tc, t_slot_map_parse);
	suite_add_tcase(s, tc);
#endif
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(cluster_suite());
	int failed;

#ifndef HAVE_HIREDIS
	printf("SKIP cluster: redis: the Redis backend is not compiled in\n");
#endif
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
