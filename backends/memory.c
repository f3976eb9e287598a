/*
 * The in-memory backend: the reference implementation of the store
 * contract. Committed state lives in sorted tables for the life of the
 * process; staged writes are copied into a list and applied all at once by
 * commit(), which therefore never fails.
 */
#include "cairn/store.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* A table: committed records kept in key order (deliveries by client,
 * then seq) in a treap, a binary search tree balanced by random
 * priorities: put, delete and the removal of one client's records cost
 * O(log n) expected whatever the order of the keys (a queue drained from
 * the front, as a session's deliveries are, included), and load() streams
 * the records in key order. Each node holds the staged op whose record it
 * was: commit moves ops from the log into the tables without copying. */
struct mem_node {
	struct bk_op *op;
	struct mem_node *left, *right;
	uint32_t prio;
};

struct mem_table {
	struct mem_node *root;
	uint32_t rand; /* xorshift32 state for the priorities */
	int (*cmp)(const union bk_rec *rec, const union bk_rec *key);
};

struct mem_db {
	struct mem_db *next; /* in mem_registry */
	char *location;      /* NULL for a private store */
	struct mem_table sessions, subs, messages, deliveries, inflight, retained;
};

struct cairn_store {
	struct mem_db *db;
	struct bk_log staged;
};

/*
 * Named stores outlive their handles so that "commit, close, reopen, load"
 * works for this backend too. This is the one mutable global in cairn: an
 * in-process store has nowhere else to live between a close and the next
 * open, and the broker never depends on it (main.c owns everything else).
 * Entries are never freed; they stay reachable until the process exits.
 */
static struct mem_db *mem_registry;

/* ---- key comparisons: a record against a key record of the same type ---- */

static int mem_cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int mem_session_cmp(const union bk_rec *a, const union bk_rec *b)
{
	return strcmp(a->session.client_id, b->session.client_id);
}

static int mem_sub_cmp(const union bk_rec *a, const union bk_rec *b)
{
	int c = strcmp(a->sub.client_id, b->sub.client_id);

	return c != 0 ? c : strcmp(a->sub.filter, b->sub.filter);
}

static int mem_message_cmp(const union bk_rec *a, const union bk_rec *b)
{
	return mem_cmp_u64(a->msg.msg_id, b->msg.msg_id);
}

static int mem_retained_cmp(const union bk_rec *a, const union bk_rec *b)
{
	return strcmp(a->msg.topic, b->msg.topic);
}

static int mem_delivery_cmp(const union bk_rec *a, const union bk_rec *b)
{
	int c = strcmp(a->delivery.client_id, b->delivery.client_id);

	return c != 0 ? c : mem_cmp_u64(a->delivery.seq, b->delivery.seq);
}

static int mem_inflight_cmp(const union bk_rec *a, const union bk_rec *b)
{
	int c = strcmp(a->inflight.client_id, b->inflight.client_id);

	return c != 0 ? c : mem_cmp_u64(a->inflight.packet_id, b->inflight.packet_id);
}

/* The client a subscription, delivery or inbound QoS 2 id belongs to. */
static const char *mem_client_of(const struct bk_op *op)
{
	switch (op->kind) {
	case BK_SUB_PUT:
		return op->rec.sub.client_id;
	case BK_DELIVERY_PUT:
		return op->rec.delivery.client_id;
	case BK_INFLIGHT_PUT:
		return op->rec.inflight.client_id;
	default:
		return op->rec.session.client_id;
	}
}

/* ---- tables ---- */

static void mem_table_init(struct mem_table *t,
			   int (*cmp)(const union bk_rec *, const union bk_rec *))
{
	t->root = NULL;
	t->rand = 2463534242u; /* any non-zero seed; the order of keys is what varies */
	t->cmp = cmp;
}

static void mem_node_free(struct mem_node *n)
{
	if (n == NULL)
		return;
	mem_node_free(n->left);
	mem_node_free(n->right);
	bk_op_free(n->op);
	free(n);
}

static void mem_table_cleanup(struct mem_table *t)
{
	mem_node_free(t->root);
	t->root = NULL;
}

/* Where a node lies against a split point: < 0 before it, 0 at it. */
struct mem_split_by {
	const struct mem_table *t;
	const union bk_rec *key; /* by the table's key order, or */
	const char *client_id;   /* by client only (the first part of the key) */
	bool take_equal;         /* nodes at the point go to the left part */
};

static int mem_split_order(const struct mem_split_by *by, const struct bk_op *op)
{
	if (by->client_id != NULL)
		return strcmp(mem_client_of(op), by->client_id);
	return by->t->cmp(&op->rec, by->key);
}

/* Split n into the nodes before the point (*l) and the rest (*r). */
static void mem_split(struct mem_node *n, const struct mem_split_by *by, struct mem_node **l,
		      struct mem_node **r)
{
	while (n != NULL) {
		int c = mem_split_order(by, n->op);

		if (c < 0 || (c == 0 && by->take_equal)) {
			*l = n;
			l = &n->right;
			n = n->right;
		} else {
			*r = n;
			r = &n->left;
			n = n->left;
		}
	}
	*l = *r = NULL;
}

/* Join two trees, every key of a before every key of b. */
static struct mem_node *mem_merge(struct mem_node *a, struct mem_node *b)
{
	struct mem_node *root = NULL, **at = &root;

	while (a != NULL && b != NULL) {
		if (a->prio > b->prio) {
			*at = a;
			at = &a->right;
			a = a->right;
		} else {
			*at = b;
			at = &b->left;
			b = b->left;
		}
	}
	*at = a != NULL ? a : b;
	return root;
}

/* Cut out of t the records from key (inclusive) to the last one equal to
 * key, or with client_id (not NULL), to the last one of that client; they
 * are returned as a tree and the rest stays in t. */
static struct mem_node *mem_table_cut(struct mem_table *t, const union bk_rec *key,
				      const char *client_id)
{
	struct mem_node *before, *from, *cut, *after;
	struct mem_split_by lo = {.t = t, .key = key, .take_equal = false};
	struct mem_split_by hi = {.t = t, .key = key, .client_id = client_id, .take_equal = true};

	mem_split(t->root, &lo, &before, &from);
	mem_split(from, &hi, &cut, &after);
	t->root = mem_merge(before, after);
	return cut;
}

/* Insert op's record, replacing (and freeing) one with the same key.
 * Takes ownership of op. */
static void mem_table_put_take(struct mem_table *t, struct bk_op *op)
{
	struct mem_node *n = bk_xcalloc(1, sizeof(*n)), *before, *from, *old, *after;
	struct mem_split_by lo = {.t = t, .key = &op->rec, .take_equal = false};
	struct mem_split_by hi = {.t = t, .key = &op->rec, .take_equal = true};

	t->rand ^= t->rand << 13;
	t->rand ^= t->rand >> 17;
	t->rand ^= t->rand << 5;
	n->op = op;
	n->prio = t->rand;
	mem_split(t->root, &lo, &before, &from);
	mem_split(from, &hi, &old, &after);
	mem_node_free(old);
	t->root = mem_merge(mem_merge(before, n), after);
}

static void mem_table_delete(struct mem_table *t, const union bk_rec *key)
{
	mem_node_free(mem_table_cut(t, key, NULL));
}

/* Delete every record of client_id. key is a record with that client_id
 * and the smallest possible rest of the key. */
static void mem_table_delete_client(struct mem_table *t, const union bk_rec *key,
				    const char *client_id)
{
	mem_node_free(mem_table_cut(t, key, client_id));
}

/* Call visit for each record of the subtree n in key order; stops at the
 * first non-zero return. */
typedef int (*mem_visit_fn)(const struct cairn_store_visitor *v, const union bk_rec *rec);

static int mem_walk(const struct mem_node *n, mem_visit_fn visit,
		    const struct cairn_store_visitor *v)
{
	int rc;

	for (; n != NULL; n = n->right) {
		if ((rc = mem_walk(n->left, visit, v)) != 0)
			return rc;
		if ((rc = visit(v, &n->op->rec)) != 0)
			return rc;
	}
	return 0;
}

static int mem_visit_session(const struct cairn_store_visitor *v, const union bk_rec *r)
{
	return v->session(v->arg, &r->session);
}

static int mem_visit_sub(const struct cairn_store_visitor *v, const union bk_rec *r)
{
	return v->subscription(v->arg, &r->sub);
}

static int mem_visit_message(const struct cairn_store_visitor *v, const union bk_rec *r)
{
	return v->message(v->arg, &r->msg);
}

static int mem_visit_delivery(const struct cairn_store_visitor *v, const union bk_rec *r)
{
	return v->delivery(v->arg, &r->delivery);
}

static int mem_visit_inflight(const struct cairn_store_visitor *v, const union bk_rec *r)
{
	return v->inflight_in(v->arg, &r->inflight);
}

static int mem_visit_retained(const struct cairn_store_visitor *v, const union bk_rec *r)
{
	return v->retained(v->arg, &r->msg);
}

/* ---- the database ---- */

static struct mem_db *mem_db_new(const char *location)
{
	struct mem_db *db = bk_xcalloc(1, sizeof(*db));

	db->location = bk_xstrdup_or_null(location);
	mem_table_init(&db->sessions, mem_session_cmp);
	mem_table_init(&db->subs, mem_sub_cmp);
	mem_table_init(&db->messages, mem_message_cmp);
	mem_table_init(&db->deliveries, mem_delivery_cmp);
	mem_table_init(&db->inflight, mem_inflight_cmp);
	mem_table_init(&db->retained, mem_retained_cmp);
	return db;
}

static void mem_db_free(struct mem_db *db)
{
	mem_table_cleanup(&db->sessions);
	mem_table_cleanup(&db->subs);
	mem_table_cleanup(&db->messages);
	mem_table_cleanup(&db->deliveries);
	mem_table_cleanup(&db->inflight);
	mem_table_cleanup(&db->retained);
	free(db->location);
	free(db);
}

static void mem_db_delete_session(struct mem_db *db, const char *client_id)
{
	union bk_rec k;

	k.session = (struct cairn_session_rec){.client_id = client_id};
	mem_table_delete(&db->sessions, &k);
	k.sub = (struct cairn_sub_rec){.client_id = client_id, .filter = ""};
	mem_table_delete_client(&db->subs, &k, client_id);
	k.delivery = (struct cairn_delivery_rec){.client_id = client_id, .seq = 0};
	mem_table_delete_client(&db->deliveries, &k, client_id);
	k.inflight = (struct cairn_inflight_in_rec){.client_id = client_id, .packet_id = 0};
	mem_table_delete_client(&db->inflight, &k, client_id);
}

/* The table a put or delete of this kind works on. */
static struct mem_table *mem_db_table(struct mem_db *db, enum bk_op_kind kind)
{
	switch (kind) {
	case BK_SESSION_PUT:
	case BK_SESSION_DEL:
		return &db->sessions;
	case BK_SUB_PUT:
	case BK_SUB_DEL:
		return &db->subs;
	case BK_MESSAGE_PUT:
	case BK_MESSAGE_DEL:
		return &db->messages;
	case BK_DELIVERY_PUT:
	case BK_DELIVERY_DEL:
		return &db->deliveries;
	case BK_INFLIGHT_PUT:
	case BK_INFLIGHT_DEL:
		return &db->inflight;
	case BK_RETAINED_PUT:
	case BK_RETAINED_DEL:
	case BK_LOG_APPEND: /* never staged here: the memory store is not shared */
	case BK_LOG_ROUTED:
	case BK_SHARE_GIVEN:
		break;
	}
	return &db->retained;
}

/* Apply one staged write to the committed state; takes op. */
static void mem_db_apply(struct mem_db *db, struct bk_op *op)
{
	switch (op->kind) {
	case BK_SESSION_PUT:
	case BK_SUB_PUT:
	case BK_MESSAGE_PUT:
	case BK_DELIVERY_PUT:
	case BK_INFLIGHT_PUT:
	case BK_RETAINED_PUT:
		mem_table_put_take(mem_db_table(db, op->kind), op);
		return;
	case BK_SESSION_DEL:
		mem_db_delete_session(db, op->rec.session.client_id);
		break;
	case BK_SUB_DEL:
	case BK_MESSAGE_DEL:
	case BK_DELIVERY_DEL:
	case BK_INFLIGHT_DEL:
	case BK_RETAINED_DEL:
		mem_table_delete(mem_db_table(db, op->kind), &op->rec);
		break;
	case BK_LOG_APPEND: /* never staged here: the memory store is not shared */
	case BK_LOG_ROUTED:
	case BK_SHARE_GIVEN:
		break;
	}
	bk_op_free(op);
}

static int mem_stage(struct cairn_store *st, enum bk_op_kind kind, const void *rec)
{
	bk_log_push(&st->staged, bk_op_new(kind, rec));
	return 0;
}

/* ---- the vtable ---- */

static int mem_open(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		    size_t errlen)
{
	struct cairn_store *st;
	struct mem_db *db = NULL;

	(void)err;
	(void)errlen;
	if (opts->location != NULL) {
		for (db = mem_registry; db != NULL; db = db->next)
			if (strcmp(db->location, opts->location) == 0)
				break;
		if (db == NULL) {
			db = mem_db_new(opts->location);
			db->next = mem_registry;
			mem_registry = db;
		}
	} else {
		db = mem_db_new(NULL);
	}
	st = bk_xcalloc(1, sizeof(*st));
	st->db = db;
	*out = st;
	return 0;
}

static void mem_close(struct cairn_store *st)
{
	if (st == NULL)
		return;
	bk_log_clear(&st->staged);
	if (st->db->location == NULL)
		mem_db_free(st->db);
	free(st);
}

static int mem_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	const struct mem_db *db = st->db;
	const struct {
		const struct mem_table *table;
		bool wanted; /* a NULL visitor slot skips its table */
		mem_visit_fn visit;
	} order[] = {
	    {&db->sessions, v->session != NULL, mem_visit_session},
	    {&db->subs, v->subscription != NULL, mem_visit_sub},
	    {&db->messages, v->message != NULL, mem_visit_message},
	    {&db->deliveries, v->delivery != NULL, mem_visit_delivery},
	    {&db->inflight, v->inflight_in != NULL, mem_visit_inflight},
	    {&db->retained, v->retained != NULL, mem_visit_retained},
	};
	int rc;

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (order[i].wanted &&
		    (rc = mem_walk(order[i].table->root, order[i].visit, v)) != 0)
			return rc;
	return 0;
}

static int mem_session_put(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	return mem_stage(st, BK_SESSION_PUT, rec);
}

static int mem_session_delete(struct cairn_store *st, const char *client_id)
{
	struct cairn_session_rec key = {.client_id = client_id};

	return mem_stage(st, BK_SESSION_DEL, &key);
}

static int mem_sub_put(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	return mem_stage(st, BK_SUB_PUT, rec);
}

static int mem_sub_delete(struct cairn_store *st, const char *client_id, const char *filter)
{
	struct cairn_sub_rec key = {.client_id = client_id, .filter = filter};

	return mem_stage(st, BK_SUB_DEL, &key);
}

static int mem_message_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return mem_stage(st, BK_MESSAGE_PUT, rec);
}

static int mem_message_delete(struct cairn_store *st, uint64_t msg_id)
{
	struct cairn_msg_rec key = {.msg_id = msg_id};

	return mem_stage(st, BK_MESSAGE_DEL, &key);
}

static int mem_delivery_put(struct cairn_store *st, const struct cairn_delivery_rec *rec)
{
	return mem_stage(st, BK_DELIVERY_PUT, rec);
}

static int mem_delivery_delete(struct cairn_store *st, const char *client_id, uint64_t seq)
{
	struct cairn_delivery_rec key = {.client_id = client_id, .seq = seq};

	return mem_stage(st, BK_DELIVERY_DEL, &key);
}

static int mem_inflight_in_put(struct cairn_store *st, const struct cairn_inflight_in_rec *rec)
{
	return mem_stage(st, BK_INFLIGHT_PUT, rec);
}

static int mem_inflight_in_delete(struct cairn_store *st, const char *client_id, uint16_t packet_id)
{
	struct cairn_inflight_in_rec key = {.client_id = client_id, .packet_id = packet_id};

	return mem_stage(st, BK_INFLIGHT_DEL, &key);
}

static int mem_retained_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return mem_stage(st, BK_RETAINED_PUT, rec);
}

static int mem_retained_delete(struct cairn_store *st, const char *topic)
{
	struct cairn_msg_rec key = {.topic = topic};

	return mem_stage(st, BK_RETAINED_DEL, &key);
}

/* Applies the staged log in order. Nothing can fail half way (allocation
 * failure aborts), so the batch is atomic; done is never called. */
static int mem_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	struct bk_op *op;

	(void)done;
	(void)arg;
	while ((op = bk_log_shift(&st->staged)) != NULL)
		mem_db_apply(st->db, op);
	return 0;
}

const struct cairn_store_ops cairn_store_memory = {
    .version = 7, /* the shared-store slots stay NULL: not shareable */
    .name = "memory",
    .open = mem_open,
    .close = mem_close,
    .load = mem_load,
    .session_put = mem_session_put,
    .session_delete = mem_session_delete,
    .sub_put = mem_sub_put,
    .sub_delete = mem_sub_delete,
    .message_put = mem_message_put,
    .message_delete = mem_message_delete,
    .delivery_put = mem_delivery_put,
    .delivery_delete = mem_delivery_delete,
    .inflight_in_put = mem_inflight_in_put,
    .inflight_in_delete = mem_inflight_in_delete,
    .retained_put = mem_retained_put,
    .retained_delete = mem_retained_delete,
    .commit = mem_commit,
    .flags = 0,
};
