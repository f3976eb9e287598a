/*
 * The in-memory backend: the reference implementation of the store
 * contract. Committed state lives in sorted tables for the life of the
 * process; staged writes are copied into a list and applied all at once by
 * commit(), which therefore never fails.
 */
#include "cairn/store.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A table: records kept sorted by their key, so load() streams them in
 * key order (deliveries by client, then seq) and a client's rows are one
 * contiguous range. */
struct mem_table {
	void **v;
	size_t n, cap;
	int (*cmp)(const void *rec, const void *key);
	void (*free)(void *rec);
};

struct mem_db {
	struct mem_db *next; /* in mem_registry */
	char *location;      /* NULL for a private store */
	struct mem_table sessions, subs, messages, deliveries, inflight, retained;
};

enum mem_op_kind {
	MEM_SESSION_PUT,
	MEM_SESSION_DEL,
	MEM_SUB_PUT,
	MEM_SUB_DEL,
	MEM_MESSAGE_PUT,
	MEM_MESSAGE_DEL,
	MEM_DELIVERY_PUT,
	MEM_DELIVERY_DEL,
	MEM_INFLIGHT_PUT,
	MEM_INFLIGHT_DEL,
	MEM_RETAINED_PUT,
	MEM_RETAINED_DEL
};

/* One staged write. rec is an owned copy: the record to insert, or a key
 * record (only the key fields set) for a delete. */
struct mem_op {
	struct mem_op *next;
	enum mem_op_kind kind;
	void *rec;
};

struct cairn_store {
	struct mem_db *db;
	struct mem_op *head, *tail;
};

/*
 * Named stores outlive their handles so that "commit, close, reopen, load"
 * works for this backend too. This is the one mutable global in cairn: an
 * in-process store has nowhere else to live between a close and the next
 * open, and the broker never depends on it (main.c owns everything else).
 * Entries are never freed; they stay reachable until the process exits.
 */
static struct mem_db *mem_registry;

static char *dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

/* Never NULL, even when empty: load() hands out a valid pointer. */
static uint8_t *dup_blob(const uint8_t *p, uint32_t len)
{
	return xmemdup(p, len);
}

/* ---- record copies ---- */

static void *session_copy(const struct cairn_session_rec *r)
{
	struct cairn_session_rec *c = xmalloc(sizeof(*c));

	*c = *r;
	c->client_id = xstrdup(r->client_id);
	c->username = dup_or_null(r->username);
	c->will_topic = r->has_will ? dup_or_null(r->will_topic) : NULL;
	c->will_payload = r->has_will ? dup_blob(r->will_payload, r->will_payload_len) : NULL;
	if (!r->has_will)
		c->will_payload_len = 0;
	return c;
}

static void session_free(void *p)
{
	struct cairn_session_rec *r = p;

	free((char *)r->client_id);
	free((char *)r->username);
	free((char *)r->will_topic);
	free((uint8_t *)r->will_payload);
	free(r);
}

static void *sub_copy(const char *client_id, const char *filter, uint8_t qos)
{
	struct cairn_sub_rec *c = xmalloc(sizeof(*c));

	c->client_id = xstrdup(client_id);
	c->filter = xstrdup(filter);
	c->qos = qos;
	return c;
}

static void sub_free(void *p)
{
	struct cairn_sub_rec *r = p;

	free((char *)r->client_id);
	free((char *)r->filter);
	free(r);
}

static void *msg_copy(const struct cairn_msg_rec *r)
{
	struct cairn_msg_rec *c = xmalloc(sizeof(*c));

	*c = *r;
	c->topic = dup_or_null(r->topic);
	c->payload = dup_blob(r->payload, r->payload_len);
	return c;
}

static void msg_free(void *p)
{
	struct cairn_msg_rec *r = p;

	free((char *)r->topic);
	free((uint8_t *)r->payload);
	free(r);
}

static void *delivery_copy(const struct cairn_delivery_rec *r)
{
	struct cairn_delivery_rec *c = xmalloc(sizeof(*c));

	*c = *r;
	c->client_id = xstrdup(r->client_id);
	return c;
}

static void delivery_free(void *p)
{
	struct cairn_delivery_rec *r = p;

	free((char *)r->client_id);
	free(r);
}

static void *inflight_copy(const char *client_id, uint16_t packet_id)
{
	struct cairn_inflight_in_rec *c = xmalloc(sizeof(*c));

	c->client_id = xstrdup(client_id);
	c->packet_id = packet_id;
	return c;
}

static void inflight_free(void *p)
{
	struct cairn_inflight_in_rec *r = p;

	free((char *)r->client_id);
	free(r);
}

/* ---- key comparisons: rec against a key record of the same type ---- */

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int session_cmp(const void *a, const void *b)
{
	const struct cairn_session_rec *x = a, *y = b;

	return strcmp(x->client_id, y->client_id);
}

static int sub_cmp(const void *a, const void *b)
{
	const struct cairn_sub_rec *x = a, *y = b;
	int c = strcmp(x->client_id, y->client_id);

	return c != 0 ? c : strcmp(x->filter, y->filter);
}

static int message_cmp(const void *a, const void *b)
{
	const struct cairn_msg_rec *x = a, *y = b;

	return cmp_u64(x->msg_id, y->msg_id);
}

static int retained_cmp(const void *a, const void *b)
{
	const struct cairn_msg_rec *x = a, *y = b;

	return strcmp(x->topic, y->topic);
}

static int delivery_cmp(const void *a, const void *b)
{
	const struct cairn_delivery_rec *x = a, *y = b;
	int c = strcmp(x->client_id, y->client_id);

	return c != 0 ? c : cmp_u64(x->seq, y->seq);
}

static int inflight_cmp(const void *a, const void *b)
{
	const struct cairn_inflight_in_rec *x = a, *y = b;
	int c = strcmp(x->client_id, y->client_id);

	return c != 0 ? c : cmp_u64(x->packet_id, y->packet_id);
}

/* ---- sorted tables ---- */

static void table_init(struct mem_table *t, int (*cmp)(const void *, const void *),
		       void (*freefn)(void *))
{
	memset(t, 0, sizeof(*t));
	t->cmp = cmp;
	t->free = freefn;
}

static void table_cleanup(struct mem_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		t->free(t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

/* Index of the first record not less than key. */
static size_t table_lower(const struct mem_table *t, const void *key)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->cmp(t->v[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert rec, replacing (and freeing) a record with the same key. Takes
 * ownership of rec. */
static void table_put_take(struct mem_table *t, void *rec)
{
	size_t i = table_lower(t, rec);

	if (i < t->n && t->cmp(t->v[i], rec) == 0) {
		t->free(t->v[i]);
		t->v[i] = rec;
		return;
	}
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof(*t->v));
	t->v[i] = rec;
	t->n++;
}

static void table_delete(struct mem_table *t, const void *key)
{
	size_t i = table_lower(t, key);

	if (i < t->n && t->cmp(t->v[i], key) == 0) {
		t->free(t->v[i]);
		memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(*t->v));
		t->n--;
	}
}

/* Delete every record whose leading client_id equals client_id. key is a
 * record with that client_id and the smallest possible rest of the key;
 * client_id is the first member of each record type using this. */
static void table_delete_client(struct mem_table *t, const void *key, const char *client_id)
{
	size_t i = table_lower(t, key), j = i;

	while (j < t->n && strcmp(*(const char *const *)t->v[j], client_id) == 0)
		t->free(t->v[j++]);
	if (j == i)
		return;
	memmove(&t->v[i], &t->v[j], (t->n - j) * sizeof(*t->v));
	t->n -= j - i;
}

/* ---- the database ---- */

static struct mem_db *db_new(const char *location)
{
	struct mem_db *db = xcalloc(1, sizeof(*db));

	db->location = dup_or_null(location);
	table_init(&db->sessions, session_cmp, session_free);
	table_init(&db->subs, sub_cmp, sub_free);
	table_init(&db->messages, message_cmp, msg_free);
	table_init(&db->deliveries, delivery_cmp, delivery_free);
	table_init(&db->inflight, inflight_cmp, inflight_free);
	table_init(&db->retained, retained_cmp, msg_free);
	return db;
}

static void db_free(struct mem_db *db)
{
	table_cleanup(&db->sessions);
	table_cleanup(&db->subs);
	table_cleanup(&db->messages);
	table_cleanup(&db->deliveries);
	table_cleanup(&db->inflight);
	table_cleanup(&db->retained);
	free(db->location);
	free(db);
}

static void db_delete_session(struct mem_db *db, const char *client_id)
{
	struct cairn_session_rec sk = {.client_id = client_id};
	struct cairn_sub_rec subk = {.client_id = client_id, .filter = ""};
	struct cairn_delivery_rec dk = {.client_id = client_id, .seq = 0};
	struct cairn_inflight_in_rec ik = {.client_id = client_id, .packet_id = 0};

	table_delete(&db->sessions, &sk);
	table_delete_client(&db->subs, &subk, client_id);
	table_delete_client(&db->deliveries, &dk, client_id);
	table_delete_client(&db->inflight, &ik, client_id);
}

/* Apply one staged write to the committed state; consumes op->rec. */
static void db_apply(struct mem_db *db, struct mem_op *op)
{
	switch (op->kind) {
	case MEM_SESSION_PUT:
		table_put_take(&db->sessions, op->rec);
		return;
	case MEM_SESSION_DEL:
		db_delete_session(db, ((struct cairn_session_rec *)op->rec)->client_id);
		session_free(op->rec);
		return;
	case MEM_SUB_PUT:
		table_put_take(&db->subs, op->rec);
		return;
	case MEM_SUB_DEL:
		table_delete(&db->subs, op->rec);
		sub_free(op->rec);
		return;
	case MEM_MESSAGE_PUT:
		table_put_take(&db->messages, op->rec);
		return;
	case MEM_MESSAGE_DEL:
		table_delete(&db->messages, op->rec);
		msg_free(op->rec);
		return;
	case MEM_DELIVERY_PUT:
		table_put_take(&db->deliveries, op->rec);
		return;
	case MEM_DELIVERY_DEL:
		table_delete(&db->deliveries, op->rec);
		delivery_free(op->rec);
		return;
	case MEM_INFLIGHT_PUT:
		table_put_take(&db->inflight, op->rec);
		return;
	case MEM_INFLIGHT_DEL:
		table_delete(&db->inflight, op->rec);
		inflight_free(op->rec);
		return;
	case MEM_RETAINED_PUT:
		table_put_take(&db->retained, op->rec);
		return;
	case MEM_RETAINED_DEL:
		table_delete(&db->retained, op->rec);
		msg_free(op->rec);
		return;
	}
}

static void op_free(struct mem_op *op)
{
	switch (op->kind) {
	case MEM_SESSION_PUT:
	case MEM_SESSION_DEL:
		session_free(op->rec);
		break;
	case MEM_SUB_PUT:
	case MEM_SUB_DEL:
		sub_free(op->rec);
		break;
	case MEM_MESSAGE_PUT:
	case MEM_MESSAGE_DEL:
	case MEM_RETAINED_PUT:
	case MEM_RETAINED_DEL:
		msg_free(op->rec);
		break;
	case MEM_DELIVERY_PUT:
	case MEM_DELIVERY_DEL:
		delivery_free(op->rec);
		break;
	case MEM_INFLIGHT_PUT:
	case MEM_INFLIGHT_DEL:
		inflight_free(op->rec);
		break;
	}
	free(op);
}

static int stage(struct cairn_store *st, enum mem_op_kind kind, void *rec)
{
	struct mem_op *op = xmalloc(sizeof(*op));

	op->next = NULL;
	op->kind = kind;
	op->rec = rec;
	if (st->tail != NULL)
		st->tail->next = op;
	else
		st->head = op;
	st->tail = op;
	return 0;
}

static void drop_staged(struct cairn_store *st)
{
	struct mem_op *op, *next;

	for (op = st->head; op != NULL; op = next) {
		next = op->next;
		op_free(op);
	}
	st->head = st->tail = NULL;
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
			db = db_new(opts->location);
			db->next = mem_registry;
			mem_registry = db;
		}
	} else {
		db = db_new(NULL);
	}
	st = xcalloc(1, sizeof(*st));
	st->db = db;
	*out = st;
	return 0;
}

static void mem_close(struct cairn_store *st)
{
	if (st == NULL)
		return;
	drop_staged(st);
	if (st->db->location == NULL)
		db_free(st->db);
	free(st);
}

static int mem_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	const struct mem_db *db = st->db;
	int rc;

#define MEM_VISIT(fn, table)                                                                       \
	do {                                                                                       \
		for (size_t i = 0; (fn) != NULL && i < (table).n; i++)                             \
			if ((rc = (fn)(v->arg, (table).v[i])) != 0)                                \
				return rc;                                                         \
	} while (0)
	MEM_VISIT(v->session, db->sessions);
	MEM_VISIT(v->subscription, db->subs);
	MEM_VISIT(v->message, db->messages);
	MEM_VISIT(v->delivery, db->deliveries);
	MEM_VISIT(v->inflight_in, db->inflight);
	MEM_VISIT(v->retained, db->retained);
#undef MEM_VISIT
	return 0;
}

static int mem_session_put(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	return stage(st, MEM_SESSION_PUT, session_copy(rec));
}

static int mem_session_delete(struct cairn_store *st, const char *client_id)
{
	struct cairn_session_rec key = {.client_id = client_id};

	return stage(st, MEM_SESSION_DEL, session_copy(&key));
}

static int mem_sub_put(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	return stage(st, MEM_SUB_PUT, sub_copy(rec->client_id, rec->filter, rec->qos));
}

static int mem_sub_delete(struct cairn_store *st, const char *client_id, const char *filter)
{
	return stage(st, MEM_SUB_DEL, sub_copy(client_id, filter, 0));
}

static int mem_message_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return stage(st, MEM_MESSAGE_PUT, msg_copy(rec));
}

static int mem_message_delete(struct cairn_store *st, uint64_t msg_id)
{
	struct cairn_msg_rec key = {.msg_id = msg_id};

	return stage(st, MEM_MESSAGE_DEL, msg_copy(&key));
}

static int mem_delivery_put(struct cairn_store *st, const struct cairn_delivery_rec *rec)
{
	return stage(st, MEM_DELIVERY_PUT, delivery_copy(rec));
}

static int mem_delivery_delete(struct cairn_store *st, const char *client_id, uint64_t seq)
{
	struct cairn_delivery_rec key = {.client_id = client_id, .seq = seq};

	return stage(st, MEM_DELIVERY_DEL, delivery_copy(&key));
}

static int mem_inflight_in_put(struct cairn_store *st, const struct cairn_inflight_in_rec *rec)
{
	return stage(st, MEM_INFLIGHT_PUT, inflight_copy(rec->client_id, rec->packet_id));
}

static int mem_inflight_in_delete(struct cairn_store *st, const char *client_id, uint16_t packet_id)
{
	return stage(st, MEM_INFLIGHT_DEL, inflight_copy(client_id, packet_id));
}

static int mem_retained_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return stage(st, MEM_RETAINED_PUT, msg_copy(rec));
}

static int mem_retained_delete(struct cairn_store *st, const char *topic)
{
	struct cairn_msg_rec key = {.topic = topic};

	return stage(st, MEM_RETAINED_DEL, msg_copy(&key));
}

/* Applies the staged list in order. Nothing can fail half way (allocation
 * failure aborts), so the batch is atomic; done is never called. */
static int mem_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	struct mem_op *op, *next;

	(void)done;
	(void)arg;
	for (op = st->head; op != NULL; op = next) {
		next = op->next;
		db_apply(st->db, op);
		free(op);
	}
	st->head = st->tail = NULL;
	return 0;
}

const struct cairn_store_ops cairn_store_memory = {
    .version = 1,
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
};
