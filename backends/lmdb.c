/*
 * The LMDB backend: one environment (data.mdb, lock.mdb) in
 * persistence_location with a named database per entity, keyed so that
 * cursor order is load order (layout in cairn-lmdb(5)). Staged writes are
 * encoded into an in-memory log that commit() applies in one write
 * transaction, growing the map on MDB_MAP_FULL up to lmdb_map_size_max.
 */
#include "cairn/store.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/sysmacros.h>
#endif
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "common.h"

/* Version of the set of databases and their layout, kept in meta.
 * 2: a session record may carry a drop count (LM_SF_DROPPED); every
 * version 1 record is a version 2 record, so opening a version 1
 * environment only rewrites the number (and a cairn that knows only 1
 * then refuses the environment instead of misreading the new flag).
 * 3: records of record version 2, which end with the MQTT 5.0 fields (a
 * tail per record type, see lm_val_*); a record of record version 1
 * still reads, with those fields at their defaults, so opening a version
 * 1 or 2 environment again only rewrites the number, in the write
 * transaction that checks it. */
#define LM_SCHEMA_VERSION 3
/* First byte of every value this cairn writes: 2 (with the version 3
 * tail); records of version 1 (without it) are read too. */
#define LM_RECORD_VERSION 2
/* A key string this long or longer is cut to this many bytes followed by
 * 16 hex digits of a hash of the whole string, so that two strings fit in
 * LMDB's 511-byte key limit. The value always holds the whole string. */
#define LM_KEY_CUT 200

#define LM_MAP_SIZE_DEFAULT     ((uint64_t)64 << 20)
#define LM_MAP_SIZE_MAX_DEFAULT ((uint64_t)4 << 30)

/* The named databases; the first six in load order. */
enum lm_db {
	LM_SESSIONS,
	LM_SUBS,
	LM_MESSAGES,
	LM_DELIVERIES,
	LM_INFLIGHT,
	LM_RETAINED,
	LM_META,
	LM_NDB
};

static const char *const lm_db_names[LM_NDB] = {
    [LM_SESSIONS] = "sessions",
    [LM_SUBS] = "subscriptions",
    [LM_MESSAGES] = "messages",
    [LM_DELIVERIES] = "deliveries",
    [LM_INFLIGHT] = "inflight_in",
    [LM_RETAINED] = "retained",
    [LM_META] = "meta",
};

static const char lm_version_key[] = "schema_version";

enum lm_op_kind {
	LM_OP_PUT,
	LM_OP_DEL,
	/* Delete the session keyed data[0..klen) and every subscription,
	 * delivery and inbound QoS 2 id whose key starts with those bytes. */
	LM_OP_DEL_SESSION
};

/* One staged write: the encoded key followed by the encoded value (vlen
 * bytes, PUT only) in data. */
struct lm_op {
	struct lm_op *next;
	enum lm_op_kind kind;
	enum lm_db db;
	size_t klen, vlen;
	uint8_t data[];
};

/* Slots of cairn_store.recent: a drain keeps a window (100 by default) of
 * puts per session waiting for their deletes, and a thousand sessions
 * draining at once put tens of thousands in one batch (a 256 KiB table,
 * its pages touched as used). */
#define LM_RECENT_PUTS 32768
/* Slots whose use a batch remembers, so that a small batch empties only
 * those; a larger one empties the whole table. */
#define LM_RECENT_USED 512
_Static_assert((LM_RECENT_PUTS & (LM_RECENT_PUTS - 1)) == 0 && LM_RECENT_PUTS <= 65536,
	       "recent slots are a power of two that recent_used's uint16_t can name");

/* A growable byte buffer for encoding keys and values. */
struct lm_buf {
	uint8_t *p;
	size_t len, cap;
};

struct cairn_store {
	MDB_env *env;
	MDB_dbi dbi[LM_NDB];
	char *dir;
	char *data_path; /* dir/data.mdb, for messages */
	unsigned int env_flags;
	uint64_t map_size, map_max;
	struct lm_op *head, *tail; /* the next batch */
	struct lm_op *committing;  /* the batch the commit thread writes */
	struct bk_worker *worker;  /* NULL: commits run on the caller's thread */
	cairn_store_done_fn done;  /* the commit in flight's completion */
	void *done_arg;
	struct lm_buf scratch; /* key re-encoding while loading */
	struct lm_buf ids;     /* a delivery's subscription ids while loading */
	/* Kept to re-read lmdb_map_size_max when the map is full, so an
	 * operator's (or a test's) new limit applies without a restart. */
	const char *(*get)(void *arg, const char *key);
	void *get_arg;
	/* Records read or writes applied since the map's pages were last
	 * released from this process (lm_release_map), and where the map is
	 * (map_at NULL: not found) for the map size map_seen. */
	size_t touched;
	void *map_at;
	size_t map_len, map_seen;
	/* The last delivery put staged into the batch at head, by its client
	 * and seq (lm_recent_slot), until a delete of that delivery turns it
	 * into the delete (lm_delivery_delete). Emptied when head goes to a
	 * commit; recent_used lists the first slots a batch filled. */
	struct lm_op *recent[LM_RECENT_PUTS];
	uint16_t recent_used[LM_RECENT_USED];
	size_t nrecent; /* puts remembered since the table was emptied */
};

/* ---- errors ---- */

/*
 * Turn an LMDB or errno code into a CAIRN_E* code. CAIRN_E* codes (-1 to
 * -9) pass through unchanged: they share no value with LMDB's codes
 * (-30799 to -30780) or errno values (positive).
 */
static int lm_map(int rc)
{
	if (rc <= 0 && rc >= CAIRN_EUNAVAILABLE)
		return rc;
	switch (rc) {
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
	case MDB_PAGE_FULL:
	case ENOSPC:
	case EDQUOT:
		return CAIRN_EFULL;
	case MDB_INVALID:
	case MDB_CORRUPTED:
	case MDB_VERSION_MISMATCH:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
		return CAIRN_ECORRUPT;
	case ENOMEM:
		return CAIRN_ENOMEM;
	case MDB_BAD_VALSIZE:
	case EINVAL:
		return CAIRN_EINVAL;
	case MDB_NOTFOUND:
		return CAIRN_ENOTFOUND;
	default:
		return CAIRN_EIO;
	}
}

/* A reason for rc: LMDB's text, or ours for the codes it never made. */
static const char *lm_reason(int rc)
{
	if (rc <= 0 && rc >= CAIRN_EUNAVAILABLE)
		return cairn_strerror(rc);
	return mdb_strerror(rc);
}

/* ---- encoding: all integers big-endian ---- */

static void lm_buf_reserve(struct lm_buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return;
	b->cap = b->len + more > 2 * b->cap ? b->len + more : 2 * b->cap;
	b->p = bk_xrealloc(b->p, b->cap);
}

static void lm_put_bytes(struct lm_buf *b, const void *p, size_t n)
{
	lm_buf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void lm_put_u8(struct lm_buf *b, uint8_t v)
{
	lm_put_bytes(b, &v, 1);
}

static void lm_put_be(struct lm_buf *b, uint64_t v, int nbytes)
{
	uint8_t t[8];

	for (int i = 0; i < nbytes; i++)
		t[i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
	lm_put_bytes(b, t, (size_t)nbytes);
}

/* A value string: u32 length, the bytes, a NUL (so load can hand out a
 * pointer into the map as a C string). */
static void lm_put_str(struct lm_buf *b, const char *s)
{
	size_t n = strlen(s);

	lm_put_be(b, n, 4);
	lm_put_bytes(b, s, n + 1);
}

/* A value blob: u32 length, the bytes. */
static void lm_put_blob(struct lm_buf *b, const uint8_t *p, uint32_t n)
{
	lm_put_be(b, n, 4);
	lm_put_bytes(b, p, n);
}

static uint64_t lm_hash(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
	return h;
}

/* A key string: the string (cut and hashed when long, see LM_KEY_CUT) and
 * a NUL. MQTT strings hold no NUL, so the NUL ends the component and a
 * client's keys all share the prefix "client_id NUL". */
static void lm_key_str(struct lm_buf *b, const char *s)
{
	size_t n = strlen(s);
	char hex[17];

	if (n < LM_KEY_CUT) {
		lm_put_bytes(b, s, n + 1);
		return;
	}

	snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)lm_hash(s, n));
	lm_put_bytes(b, s, LM_KEY_CUT);
	lm_put_bytes(b, hex, 17);
}

/* ---- decoding values ---- */

struct lm_rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static uint64_t lm_rd_be(struct lm_rd *r, int nbytes)
{
	uint64_t v = 0;

	if (r->bad || r->left < (size_t)nbytes) {
		r->bad = true;
		return 0;
	}
	for (int i = 0; i < nbytes; i++)
		v = v << 8 | r->p[i];
	r->p += nbytes;
	r->left -= (size_t)nbytes;
	return v;
}

static const uint8_t *lm_rd_blob(struct lm_rd *r, uint32_t *len)
{
	const uint8_t *p;

	*len = (uint32_t)lm_rd_be(r, 4);
	if (r->bad || r->left < *len) {
		r->bad = true;
		*len = 0;
		return NULL;
	}
	p = *len > 0 ? r->p : (const uint8_t *)"";
	r->p += *len;
	r->left -= *len;
	return p;
}

static const char *lm_rd_str(struct lm_rd *r)
{
	uint32_t n = (uint32_t)lm_rd_be(r, 4);
	const char *s = (const char *)r->p;

	if (r->bad || r->left < (size_t)n + 1 || r->p[n] != '\0' || memchr(s, 0, n) != NULL) {
		r->bad = true;
		return NULL;
	}
	r->p += n + 1;
	r->left -= (size_t)n + 1;
	return s;
}

/* ---- records: keys and values ---- */

enum {
	LM_SF_WILL = 1,
	LM_SF_WILL_RETAIN = 2,
	LM_SF_CONNECTED = 4,
	LM_SF_USERNAME = 8,
	LM_SF_DROPPED = 16, /* a drop count (8 bytes) ends the record */
	LM_SF_ALL = 31
};

static void lm_key_session(struct lm_buf *b, const char *client_id)
{
	lm_key_str(b, client_id);
}

static void lm_key_sub(struct lm_buf *b, const char *client_id, const char *filter)
{
	lm_key_str(b, client_id);
	lm_key_str(b, filter);
}

static void lm_key_message(struct lm_buf *b, uint64_t msg_id)
{
	lm_put_be(b, msg_id, 8);
}

static void lm_key_delivery(struct lm_buf *b, const char *client_id, uint64_t seq)
{
	lm_key_str(b, client_id);
	lm_put_be(b, seq, 8);
}

static void lm_key_inflight(struct lm_buf *b, const char *client_id, uint16_t packet_id)
{
	lm_key_str(b, client_id);
	lm_put_be(b, packet_id, 2);
}

static void lm_key_retained(struct lm_buf *b, const char *topic)
{
	lm_key_str(b, topic);
}

static void lm_val_session(struct lm_buf *b, const struct cairn_session_rec *r)
{
	uint8_t flags = 0;

	if (r->has_will)
		flags |= LM_SF_WILL | (r->will_retain ? LM_SF_WILL_RETAIN : 0);
	if (r->connected)
		flags |= LM_SF_CONNECTED;
	if (r->username != NULL)
		flags |= LM_SF_USERNAME;
	if (r->dropped > 0)
		flags |= LM_SF_DROPPED;
	lm_put_u8(b, LM_RECORD_VERSION);
	lm_put_u8(b, flags);
	lm_put_be(b, r->next_packet_id, 2);
	lm_put_u8(b, r->has_will ? r->will_qos : 0);
	lm_put_str(b, r->client_id);
	if (r->username != NULL)
		lm_put_str(b, r->username);
	if (r->has_will) {
		lm_put_str(b, r->will_topic != NULL ? r->will_topic : "");
		lm_put_blob(b, r->will_payload, r->will_payload_len);
	}
	if (r->dropped > 0)
		lm_put_be(b, r->dropped, 8);
	/* The version 3 tail. */
	lm_put_u8(b, r->protocol_level);
	lm_put_be(b, r->expiry_interval, 4);
	lm_put_be(b, (uint64_t)r->expires_at, 8);
	lm_put_be(b, r->will_delay, 4);
	lm_put_be(b, (uint64_t)r->will_at, 8);
	lm_put_blob(b, r->will_props, r->has_will ? r->will_props_len : 0);
}

static void lm_val_sub(struct lm_buf *b, const struct cairn_sub_rec *r)
{
	lm_put_u8(b, LM_RECORD_VERSION);
	lm_put_u8(b, r->qos);
	lm_put_str(b, r->client_id);
	lm_put_str(b, r->filter);
	lm_put_u8(b, r->options);
	lm_put_be(b, r->sub_id, 4);
}

static void lm_val_msg(struct lm_buf *b, const struct cairn_msg_rec *r)
{
	lm_put_u8(b, LM_RECORD_VERSION);
	lm_put_u8(b, r->qos);
	lm_put_u8(b, r->retain ? 1 : 0);
	lm_put_be(b, r->msg_id, 8);
	lm_put_str(b, r->topic);
	lm_put_blob(b, r->payload, r->payload_len);
	lm_put_be(b, (uint64_t)r->expires_at, 8);
	lm_put_blob(b, r->props, r->props_len);
}

static void lm_val_delivery(struct lm_buf *b, const struct cairn_delivery_rec *r)
{
	lm_put_u8(b, LM_RECORD_VERSION);
	lm_put_u8(b, r->qos);
	lm_put_u8(b, r->state);
	lm_put_be(b, r->packet_id, 2);
	lm_put_be(b, r->seq, 8);
	lm_put_be(b, r->msg_id, 8);
	lm_put_str(b, r->client_id);
	lm_put_u8(b, r->retain ? 1 : 0);
	lm_put_be(b, r->n_sub_ids, 4);
	for (uint32_t i = 0; i < r->n_sub_ids; i++)
		lm_put_be(b, r->sub_ids[i], 4);
}

static void lm_val_inflight(struct lm_buf *b, const struct cairn_inflight_in_rec *r)
{
	lm_put_u8(b, LM_RECORD_VERSION);
	lm_put_be(b, r->packet_id, 2);
	lm_put_str(b, r->client_id);
	/* No version 3 fields: an empty tail. */
}

/* Any record a value decodes to. */
union lm_rec {
	struct cairn_session_rec session;
	struct cairn_sub_rec sub;
	struct cairn_msg_rec msg;
	struct cairn_delivery_rec delivery;
	struct cairn_inflight_in_rec inflight;
};

/* A property blob of the version 3 tail: NULL when empty. */
static const uint8_t *lm_rd_props(struct lm_rd *r, uint32_t *len)
{
	const uint8_t *p = lm_rd_blob(r, len);

	return *len > 0 ? p : NULL;
}

/*
 * Decode the value d of database db into rec (pointing into d, and into
 * ids for a delivery's subscription ids) and encode the key that record
 * must have into key. A record of record version 1 gets the version 3
 * fields' defaults. Returns 0, or CAIRN_ECORRUPT when the value is not a
 * well-formed record of a version this cairn reads.
 */
static int lm_decode(enum lm_db db, const MDB_val *d, union lm_rec *rec, struct lm_buf *key,
		     struct lm_buf *ids)
{
	struct lm_rd r = {d->mv_data, d->mv_size, false};
	uint8_t flags = 0;
	uint64_t rv;

	memset(rec, 0, sizeof(*rec));
	key->len = 0;
	rv = lm_rd_be(&r, 1);
	if (rv < 1 || rv > LM_RECORD_VERSION)
		return CAIRN_ECORRUPT;
	switch (db) {
	case LM_SESSIONS: {
		struct cairn_session_rec *s = &rec->session;

		flags = (uint8_t)lm_rd_be(&r, 1);
		s->next_packet_id = (uint16_t)lm_rd_be(&r, 2);
		s->will_qos = (uint8_t)lm_rd_be(&r, 1);
		s->client_id = lm_rd_str(&r);
		if (flags & LM_SF_USERNAME)
			s->username = lm_rd_str(&r);
		s->has_will = (flags & LM_SF_WILL) != 0;
		if (s->has_will) {
			s->will_topic = lm_rd_str(&r);
			s->will_payload = lm_rd_blob(&r, &s->will_payload_len);
			s->will_retain = (flags & LM_SF_WILL_RETAIN) != 0;
		}
		s->connected = (flags & LM_SF_CONNECTED) != 0;
		if (flags & LM_SF_DROPPED)
			s->dropped = lm_rd_be(&r, 8);
		s->expiry_interval = CAIRN_EXPIRY_NEVER;
		if (rv >= 2) {
			s->protocol_level = (uint8_t)lm_rd_be(&r, 1);
			s->expiry_interval = (uint32_t)lm_rd_be(&r, 4);
			s->expires_at = (int64_t)lm_rd_be(&r, 8);
			s->will_delay = (uint32_t)lm_rd_be(&r, 4);
			s->will_at = (int64_t)lm_rd_be(&r, 8);
			s->will_props = lm_rd_props(&r, &s->will_props_len);
		}
		if (r.bad || flags > LM_SF_ALL || s->will_qos > 2)
			return CAIRN_ECORRUPT;
		lm_key_session(key, s->client_id);
		break;
	}
	case LM_SUBS:
		rec->sub.qos = (uint8_t)lm_rd_be(&r, 1);
		rec->sub.client_id = lm_rd_str(&r);
		rec->sub.filter = lm_rd_str(&r);
		if (rv >= 2) {
			rec->sub.options = (uint8_t)lm_rd_be(&r, 1);
			rec->sub.sub_id = (uint32_t)lm_rd_be(&r, 4);
		}
		if (r.bad || rec->sub.qos > 2)
			return CAIRN_ECORRUPT;
		lm_key_sub(key, rec->sub.client_id, rec->sub.filter);
		break;
	case LM_MESSAGES:
	case LM_RETAINED: {
		struct cairn_msg_rec *m = &rec->msg;

		m->qos = (uint8_t)lm_rd_be(&r, 1);
		flags = (uint8_t)lm_rd_be(&r, 1);
		m->retain = flags & 1;
		m->msg_id = lm_rd_be(&r, 8);
		m->topic = lm_rd_str(&r);
		m->payload = lm_rd_blob(&r, &m->payload_len);
		if (rv >= 2) {
			m->expires_at = (int64_t)lm_rd_be(&r, 8);
			m->props = lm_rd_props(&r, &m->props_len);
		}
		if (r.bad || m->qos > 2 || flags > 1)
			return CAIRN_ECORRUPT;
		if (db == LM_MESSAGES)
			lm_key_message(key, m->msg_id);
		else
			lm_key_retained(key, m->topic);
		break;
	}
	case LM_DELIVERIES: {
		struct cairn_delivery_rec *dl = &rec->delivery;

		dl->qos = (uint8_t)lm_rd_be(&r, 1);
		dl->state = (uint8_t)lm_rd_be(&r, 1);
		dl->packet_id = (uint16_t)lm_rd_be(&r, 2);
		dl->seq = lm_rd_be(&r, 8);
		dl->msg_id = lm_rd_be(&r, 8);
		dl->client_id = lm_rd_str(&r);
		if (rv >= 2) {
			uint64_t retain = lm_rd_be(&r, 1);
			uint32_t n = (uint32_t)lm_rd_be(&r, 4);

			if (retain > 1 || r.left / 4 < n)
				return CAIRN_ECORRUPT;
			ids->len = 0;
			lm_buf_reserve(ids, (size_t)n * 4);
			for (uint32_t i = 0; i < n; i++)
				((uint32_t *)(void *)ids->p)[i] = (uint32_t)lm_rd_be(&r, 4);
			dl->retain = retain != 0;
			dl->n_sub_ids = n;
			dl->sub_ids = n > 0 ? (const uint32_t *)(void *)ids->p : NULL;
		}
		if (r.bad || dl->qos > 2 || dl->state > CAIRN_DELIVERY_PUBREC)
			return CAIRN_ECORRUPT;
		lm_key_delivery(key, dl->client_id, dl->seq);
		break;
	}
	case LM_INFLIGHT:
		rec->inflight.packet_id = (uint16_t)lm_rd_be(&r, 2);
		rec->inflight.client_id = lm_rd_str(&r);
		if (r.bad)
			return CAIRN_ECORRUPT;
		lm_key_inflight(key, rec->inflight.client_id, rec->inflight.packet_id);
		break;
	default:
		return CAIRN_ECORRUPT;
	}
	return r.left == 0 ? 0 : CAIRN_ECORRUPT;
}

/* ---- the staged batch ---- */

/* Move the encoded key (klen bytes) and value (the rest) of b into a new
 * op at the end of the batch, and empty b. */
static int lm_stage(struct cairn_store *st, enum lm_op_kind kind, enum lm_db db, struct lm_buf *b,
		    size_t klen)
{
	struct lm_op *op = bk_xmalloc(sizeof(*op) + b->len);

	op->next = NULL;
	op->kind = kind;
	op->db = db;
	op->klen = klen;
	op->vlen = b->len - klen;
	memcpy(op->data, b->p, b->len);
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	if (st->tail != NULL)
		st->tail->next = op;
	else
		st->head = op;
	st->tail = op;
	return 0;
}

static void lm_ops_free(struct lm_op *op)
{
	struct lm_op *next;

	for (; op != NULL; op = next) {
		next = op->next;
		free(op);
	}
}

static void lm_recent_clear(struct cairn_store *st)
{
	if (st->nrecent > LM_RECENT_USED) {
		memset(st->recent, 0, sizeof(st->recent));
	} else {
		for (size_t i = 0; i < st->nrecent; i++)
			st->recent[st->recent_used[i]] = NULL;
	}
	st->nrecent = 0;
}

static void lm_log_clear(struct cairn_store *st)
{
	lm_ops_free(st->head);
	st->head = st->tail = NULL;
	lm_recent_clear(st);
}

/* A client's seqs take consecutive slots, so that the window of a
 * session does not collide with itself. */
static size_t lm_recent_slot(const char *client_id, uint64_t seq)
{
	return (size_t)((lm_hash(client_id, strlen(client_id)) + seq) & (LM_RECENT_PUTS - 1));
}

static int lm_session_put(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	struct lm_buf b = {0};
	size_t klen;

	lm_key_session(&b, rec->client_id);
	klen = b.len;
	lm_buf_reserve(&b, 64 + (rec->has_will ? rec->will_payload_len : 0));
	lm_val_session(&b, rec);
	return lm_stage(st, LM_OP_PUT, LM_SESSIONS, &b, klen);
}

static int lm_session_delete(struct cairn_store *st, const char *client_id)
{
	struct lm_buf b = {0};

	lm_key_session(&b, client_id);
	return lm_stage(st, LM_OP_DEL_SESSION, LM_SESSIONS, &b, b.len);
}

static int lm_sub_put(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	struct lm_buf b = {0};
	size_t klen;

	lm_key_sub(&b, rec->client_id, rec->filter);
	klen = b.len;
	lm_val_sub(&b, rec);
	return lm_stage(st, LM_OP_PUT, LM_SUBS, &b, klen);
}

static int lm_sub_delete(struct cairn_store *st, const char *client_id, const char *filter)
{
	struct lm_buf b = {0};

	lm_key_sub(&b, client_id, filter);
	return lm_stage(st, LM_OP_DEL, LM_SUBS, &b, b.len);
}

static int lm_msg_put(struct cairn_store *st, enum lm_db db, const struct cairn_msg_rec *rec)
{
	struct lm_buf b = {0};
	size_t klen;

	if (db == LM_MESSAGES)
		lm_key_message(&b, rec->msg_id);
	else
		lm_key_retained(&b, rec->topic);
	klen = b.len;
	lm_buf_reserve(&b, 48 + strlen(rec->topic) + rec->payload_len + rec->props_len);
	lm_val_msg(&b, rec);
	return lm_stage(st, LM_OP_PUT, db, &b, klen);
}

static int lm_message_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return lm_msg_put(st, LM_MESSAGES, rec);
}

static int lm_message_delete(struct cairn_store *st, uint64_t msg_id)
{
	struct lm_buf b = {0};

	lm_key_message(&b, msg_id);
	return lm_stage(st, LM_OP_DEL, LM_MESSAGES, &b, b.len);
}

static int lm_delivery_put(struct cairn_store *st, const struct cairn_delivery_rec *rec)
{
	struct lm_buf b = {0};
	size_t klen, slot = lm_recent_slot(rec->client_id, rec->seq);
	int rc;

	lm_key_delivery(&b, rec->client_id, rec->seq);
	klen = b.len;
	lm_val_delivery(&b, rec);
	rc = lm_stage(st, LM_OP_PUT, LM_DELIVERIES, &b, klen);
	st->recent[slot] = st->tail;
	if (st->nrecent < LM_RECENT_USED)
		st->recent_used[st->nrecent] = (uint16_t)slot;
	st->nrecent++;
	return rc;
}

/*
 * A delivery's "sent" put and the delete of its PUBACK usually meet in one
 * batch (a drain stages both within a round trip): the put, still the last
 * write of that key in the batch being staged, becomes the delete in place
 * of a new op. The batch ends in the same state (ops on other keys do not
 * care about the order, and only a session delete, which removes the key
 * too, can come between), and the drain stages one op per delivery instead
 * of two.
 */
static int lm_delivery_delete(struct cairn_store *st, const char *client_id, uint64_t seq)
{
	struct lm_buf b = {0};
	size_t slot = lm_recent_slot(client_id, seq);
	struct lm_op *put = st->recent[slot];

	lm_key_delivery(&b, client_id, seq);
	if (put != NULL && put->klen == b.len && memcmp(put->data, b.p, b.len) == 0) {
		put->kind = LM_OP_DEL;
		put->vlen = 0;
		st->recent[slot] = NULL;
		free(b.p);
		return 0;
	}
	return lm_stage(st, LM_OP_DEL, LM_DELIVERIES, &b, b.len);
}

static int lm_inflight_in_put(struct cairn_store *st, const struct cairn_inflight_in_rec *rec)
{
	struct lm_buf b = {0};
	size_t klen;

	lm_key_inflight(&b, rec->client_id, rec->packet_id);
	klen = b.len;
	lm_val_inflight(&b, rec);
	return lm_stage(st, LM_OP_PUT, LM_INFLIGHT, &b, klen);
}

static int lm_inflight_in_delete(struct cairn_store *st, const char *client_id, uint16_t packet_id)
{
	struct lm_buf b = {0};

	lm_key_inflight(&b, client_id, packet_id);
	return lm_stage(st, LM_OP_DEL, LM_INFLIGHT, &b, b.len);
}

static int lm_retained_put(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	return lm_msg_put(st, LM_RETAINED, rec);
}

static int lm_retained_delete(struct cairn_store *st, const char *topic)
{
	struct lm_buf b = {0};

	lm_key_retained(&b, topic);
	return lm_stage(st, LM_OP_DEL, LM_RETAINED, &b, b.len);
}

/* ---- write transactions ---- */

static int lm_del(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen)
{
	MDB_val key = {klen, (void *)k};
	int rc = mdb_del(txn, dbi, &key, NULL);

	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Delete every key of dbi that starts with the n bytes at prefix. */
static int lm_del_prefix(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t n)
{
	MDB_cursor *cur;
	MDB_val k = {n, (void *)prefix}, d;
	int rc = mdb_cursor_open(txn, dbi, &cur);

	if (rc != 0)
		return rc;
	rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size >= n && memcmp(k.mv_data, prefix, n) == 0) {
		rc = mdb_cursor_del(cur, 0);
		/* After a delete the cursor already sits on the next key;
		 * MDB_NEXT returns it without moving. */
		if (rc == 0)
			rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int lm_apply(struct cairn_store *st, MDB_txn *txn, const struct lm_op *op)
{
	MDB_val k = {op->klen, (void *)op->data};
	MDB_val d = {op->vlen, (void *)(op->data + op->klen)};
	int rc;

	switch (op->kind) {
	case LM_OP_PUT:
		return mdb_put(txn, st->dbi[op->db], &k, &d, 0);
	case LM_OP_DEL:
		return lm_del(txn, st->dbi[op->db], op->data, op->klen);
	case LM_OP_DEL_SESSION:
		rc = lm_del(txn, st->dbi[LM_SESSIONS], op->data, op->klen);
		if (rc == 0)
			rc = lm_del_prefix(txn, st->dbi[LM_SUBS], op->data, op->klen);
		if (rc == 0)
			rc = lm_del_prefix(txn, st->dbi[LM_DELIVERIES], op->data, op->klen);
		if (rc == 0)
			rc = lm_del_prefix(txn, st->dbi[LM_INFLIGHT], op->data, op->klen);
		return rc;
	}
	return EINVAL;
}

/* Records read between two releases of the map. A load reads them in key
 * order, many to a page, so a few dozen pages stay resident at most. */
#define LM_RELEASE_EVERY 2048
/* What a write applied counts against LM_RELEASE_EVERY past the first
 * LM_SMALL_COMMIT writes of a commit: each may touch a page of its own (a
 * drain of a thousand sessions deletes one delivery per leaf page), so the
 * map is released every 256 writes. The first ones count 1: an online
 * flow's commits are small and write at the ends of a few trees, the same
 * pages each time, which a release at every commit would only make the
 * next commit map again. */
#define LM_WRITE_WEIGHT 8
#define LM_SMALL_COMMIT 256

static void lm_release_map(struct cairn_store *st);

/* arg: the first op of the batch. */
static int lm_apply_batch(struct cairn_store *st, MDB_txn *txn, void *arg)
{
	size_t n = 0;
	int rc = 0;

	for (const struct lm_op *op = arg; rc == 0 && op != NULL; op = op->next) {
		rc = lm_apply(st, txn, op);
		st->touched += ++n <= LM_SMALL_COMMIT ? 1 : LM_WRITE_WEIGHT;
		lm_release_map(st);
	}
	return rc;
}

/* Find where data.mdb is mapped now: LMDB does not say (mdb_env_info's
 * me_mapaddr is the fixed address of MDB_FIXEDMAP only), and a map that
 * grows moves. Its shared mapping is found by inode in /proc/self/maps
 * once per map size. */
static void lm_find_map(struct cairn_store *st, size_t mapsize)
{
	st->map_at = NULL;
	st->map_len = 0;
	st->map_seen = mapsize;
#ifdef __linux__
	struct stat sb;
	char line[PATH_MAX + 128];
	FILE *f;

	if (stat(st->data_path, &sb) != 0 || (f = fopen("/proc/self/maps", "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi, ino;
		unsigned dmaj, dmin;
		char perms[8];

		/* The shared, read-only mapping of data.mdb: its device and inode. */
		if (sscanf(line, "%lx-%lx %7s %*s %x:%x %lu", &lo, &hi, perms, &dmaj, &dmin,
			   &ino) == 6 &&
		    perms[1] == '-' && perms[3] == 's' && ino == (unsigned long)sb.st_ino &&
		    dmaj == major(sb.st_dev) && dmin == minor(sb.st_dev)) {
			st->map_at = (void *)lo;
			st->map_len = hi - lo;
			break;
		}
	}
	fclose(f);
#endif
}

/*
 * Unmap the pages of data.mdb this process has touched (they stay in the
 * page cache, and a later read maps them again): a load, or a drain that
 * deletes its way through the whole file, would otherwise keep every page
 * it read in the broker's resident set, on top of what it allocates (a
 * million queued messages: about 140 MiB). The map is shared and read
 * only (LMDB writes through the file), so nothing is lost and a pointer
 * into it stays valid. Called once LM_RELEASE_EVERY records were read (a
 * write applied counts 1 or LM_WRITE_WEIGHT) since the last time, from the
 * thread that touched them, never while another thread uses the store.
 */
static void lm_release_map(struct cairn_store *st)
{
	MDB_envinfo info;

	if (st->touched < LM_RELEASE_EVERY)
		return;
	st->touched = 0;
	if (mdb_env_info(st->env, &info) != 0)
		return;
	if (info.me_mapsize != st->map_seen)
		lm_find_map(st, info.me_mapsize);
	if (st->map_at != NULL)
		(void)madvise(st->map_at, st->map_len, MADV_DONTNEED);
}

/* Parse a size in bytes, with an optional k, m or g (binary) suffix. */
static int lm_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case 'k':
	case 'K':
		mul = (uint64_t)1 << 10;
		p++;
		break;
	case 'm':
	case 'M':
		mul = (uint64_t)1 << 20;
		p++;
		break;
	case 'g':
	case 'G':
		mul = (uint64_t)1 << 30;
		p++;
		break;
	}
	if (*p != '\0' || v == 0 || v > UINT64_MAX / mul || v * mul > SIZE_MAX)
		return -1;
	*out = v * mul;
	return 0;
}

/* Double the map (up to map_max) after MDB_MAP_FULL. Only called between
 * transactions. Returns 0, MDB_MAP_FULL at the cap, or LMDB's error. */
static int lm_grow(struct cairn_store *st)
{
	MDB_envinfo info;
	const char *knob;
	uint64_t cur, next, max;
	int rc;

	if (st->get != NULL && (knob = st->get(st->get_arg, "lmdb_map_size_max")) != NULL &&
	    lm_parse_size(knob, &max) == 0)
		st->map_max = max;
	rc = mdb_env_info(st->env, &info);
	if (rc != 0)
		return rc;
	cur = info.me_mapsize;
	if (cur >= st->map_max)
		return MDB_MAP_FULL;
	next = cur > st->map_max / 2 ? st->map_max : cur * 2;
	return mdb_env_set_mapsize(st->env, (size_t)next);
}

static int lm_txn_begin(struct cairn_store *st, unsigned int flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(st->env, NULL, flags, txn);

	if (rc == MDB_MAP_RESIZED) {
		/* Another process grew the map: adopt its size. */
		rc = mdb_env_set_mapsize(st->env, 0);
		if (rc == 0)
			rc = mdb_txn_begin(st->env, NULL, flags, txn);
	}
	return rc;
}

/*
 * Run fn in a write transaction and commit it. When the map fills up the
 * transaction is aborted, the map grown and fn run again from the start;
 * past lmdb_map_size_max the result is MDB_MAP_FULL. Returns an LMDB
 * code, an errno value or whatever CAIRN_E* code fn returned.
 */
static int lm_write(struct cairn_store *st,
		    int (*fn)(struct cairn_store *st, MDB_txn *txn, void *arg), void *arg)
{
	for (;;) {
		MDB_txn *txn;
		int rc = lm_txn_begin(st, 0, &txn);

		if (rc != 0)
			return rc;
		rc = fn(st, txn, arg);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
		if (rc == 0)
			lm_release_map(st);
		if (rc != MDB_MAP_FULL)
			return rc;
		rc = lm_grow(st);
		if (rc != 0)
			return rc;
	}
}

/* On the commit thread: the loop's thread only stages (into st->head)
 * until lm_commit_finish runs. */
static int lm_commit_job(void *arg)
{
	struct cairn_store *st = arg;

	return lm_map(lm_write(st, lm_apply_batch, st->committing));
}

/* Back on the loop's thread: a failed batch goes in front of what was
 * staged meanwhile, so the next commit retries it with them, in order. */
static void lm_commit_finish(void *arg, int rc)
{
	struct cairn_store *st = arg;
	struct lm_op *last;

	if (rc == 0) {
		lm_ops_free(st->committing);
	} else {
		for (last = st->committing; last->next != NULL; last = last->next)
			;
		last->next = st->head;
		if (st->head == NULL)
			st->tail = last;
		st->head = st->committing;
	}
	st->committing = NULL;
	st->done(st->done_arg, rc);
}

/* Applies the whole batch in one write transaction, on the commit thread
 * while the loop stages the next batch; done() follows. A failed commit
 * leaves nothing of the batch on disk and keeps the batch for the next
 * commit() to retry. */
static int lm_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	int rc;

	if (st->head == NULL)
		return 0;
	if (st->worker == NULL) {
		/* Applied or kept for a retry, the batch takes no more
		 * conversions: its puts may be on the disk by now. */
		lm_recent_clear(st);
		rc = lm_write(st, lm_apply_batch, st->head);
		if (rc != 0)
			return lm_map(rc);
		lm_log_clear(st);
		return 0;
	}
	st->committing = st->head;
	st->head = st->tail = NULL;
	lm_recent_clear(st); /* the commit thread owns those ops now */
	st->done = done;
	st->done_arg = arg;
	bk_worker_run(st->worker, lm_commit_job, lm_commit_finish, st);
	return CAIRN_EINPROGRESS;
}

/* ---- load ---- */

static bool lm_wanted(const struct cairn_store_visitor *v, enum lm_db db)
{
	switch (db) {
	case LM_SESSIONS:
		return v->session != NULL;
	case LM_SUBS:
		return v->subscription != NULL;
	case LM_MESSAGES:
		return v->message != NULL;
	case LM_DELIVERIES:
		return v->delivery != NULL;
	case LM_INFLIGHT:
		return v->inflight_in != NULL;
	case LM_RETAINED:
		return v->retained != NULL;
	default:
		return false;
	}
}

static int lm_visit(const struct cairn_store_visitor *v, enum lm_db db, const union lm_rec *r)
{
	switch (db) {
	case LM_SESSIONS:
		return v->session(v->arg, &r->session);
	case LM_SUBS:
		return v->subscription(v->arg, &r->sub);
	case LM_MESSAGES:
		return v->message(v->arg, &r->msg);
	case LM_DELIVERIES:
		return v->delivery(v->arg, &r->delivery);
	case LM_INFLIGHT:
		return v->inflight_in(v->arg, &r->inflight);
	case LM_RETAINED:
		return v->retained(v->arg, &r->msg);
	default:
		return 0;
	}
}

/*
 * Walk the six record databases in load order inside txn, decoding every
 * record and checking that it sits under the key it encodes to. With v,
 * hand each record of a database v wants to it; without, only check
 * (open does this, so that damage is found while it can be quarantined).
 */
static int lm_scan(struct cairn_store *st, MDB_txn *txn, const struct cairn_store_visitor *v,
		   bool *stopped)
{
	*stopped = false;
	for (int db = 0; db < LM_META; db++) {
		MDB_cursor *cur;
		MDB_val k, d;
		union lm_rec rec;
		int rc;

		if (v != NULL && !lm_wanted(v, (enum lm_db)db))
			continue;
		rc = mdb_cursor_open(txn, st->dbi[db], &cur);
		if (rc != 0)
			return rc;
		for (MDB_cursor_op op = MDB_FIRST; (rc = mdb_cursor_get(cur, &k, &d, op)) == 0;
		     op = MDB_NEXT) {
			/* The visitor keeps no pointer into the map past its
			 * return: pages read so far may be released. */
			st->touched++;
			lm_release_map(st);
			rc = lm_decode((enum lm_db)db, &d, &rec, &st->scratch, &st->ids);
			if (rc == 0 && (st->scratch.len != k.mv_size ||
					memcmp(st->scratch.p, k.mv_data, k.mv_size) != 0))
				rc = CAIRN_ECORRUPT;
			if (rc == 0 && v != NULL) {
				rc = lm_visit(v, (enum lm_db)db, &rec);
				*stopped = rc != 0;
			}
			if (rc != 0)
				break;
		}
		mdb_cursor_close(cur);
		if (rc != MDB_NOTFOUND)
			return rc;
	}
	return 0;
}

/* Streams from one read transaction, so the records form one snapshot;
 * what the visitor gets points into the map and lives until it returns. */
static int lm_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	MDB_txn *txn;
	bool stopped;
	int rc = lm_txn_begin(st, MDB_RDONLY, &txn);

	if (rc != 0)
		return lm_map(rc);
	rc = lm_scan(st, txn, v, &stopped);
	mdb_txn_abort(txn);
	st->touched = LM_RELEASE_EVERY; /* what the load read is not needed now */
	lm_release_map(st);
	/* A visitor's own return value goes back unchanged. */
	return stopped ? rc : lm_map(rc);
}

/* ---- open and close ---- */

static void lm_env_close(struct cairn_store *st)
{
	if (st->env != NULL)
		mdb_env_close(st->env);
	st->env = NULL;
}

static void lm_free(struct cairn_store *st)
{
	/* The core closes with no commit in flight: the thread is idle. */
	bk_worker_free(st->worker);
	lm_ops_free(st->committing);
	lm_env_close(st);
	lm_log_clear(st);
	free(st->scratch.p);
	free(st->ids.p);
	free(st->dir);
	free(st->data_path);
	free(st);
}

static void lm_close(struct cairn_store *st)
{
	if (st == NULL)
		return;
	/* Uncommitted staged writes never reached LMDB: dropping the log
	 * discards them. With durability os, a clean shutdown still leaves
	 * the committed data on the disk. */
	if (st->env_flags & MDB_NOSYNC)
		mdb_env_sync(st->env, 1);
	lm_free(st);
}

/* What the setup transaction found. */
struct lm_setup {
	uint32_t version; /* schema_version on disk; 0 when the env was new */
};

/* Open (creating) every database and check or write schema_version. */
static int lm_setup_dbs(struct cairn_store *st, MDB_txn *txn, void *arg)
{
	struct lm_setup *su = arg;
	MDB_val k = {sizeof(lm_version_key) - 1, (void *)lm_version_key}, d;
	uint8_t ver[4];
	int rc;

	for (int i = 0; i < LM_NDB; i++) {
		rc = mdb_dbi_open(txn, lm_db_names[i], MDB_CREATE, &st->dbi[i]);
		if (rc != 0)
			return rc;
	}
	rc = mdb_get(txn, st->dbi[LM_META], &k, &d);
	if (rc == 0) {
		const uint8_t *p = d.mv_data;

		if (d.mv_size != 4)
			return CAIRN_ECORRUPT;
		su->version =
		    (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		if (su->version == 0)
			return CAIRN_ECORRUPT;
		if (su->version > LM_SCHEMA_VERSION)
			return CAIRN_EVERSION;
		if (su->version == LM_SCHEMA_VERSION)
			return 0;
		/* An older layout: its records are valid in this one. */
	} else if (rc != MDB_NOTFOUND) {
		return rc;
	} else {
		su->version = 0;
	}
	for (int i = 0; i < 4; i++)
		ver[i] = (uint8_t)(LM_SCHEMA_VERSION >> (8 * (3 - i)));
	d.mv_size = sizeof(ver);
	d.mv_data = ver;
	return mdb_put(txn, st->dbi[LM_META], &k, &d, 0);
}

/* A data file shorter than the pages its meta page claims is truncated:
 * LMDB would fault on the missing pages instead of reporting an error. */
static int lm_check_size(struct cairn_store *st)
{
	MDB_envinfo info;
	MDB_stat ms;
	struct stat sb;
	int rc;

	if ((rc = mdb_env_info(st->env, &info)) != 0 || (rc = mdb_env_stat(st->env, &ms)) != 0)
		return rc;
	if (stat(st->data_path, &sb) != 0)
		return errno;
	if ((uint64_t)sb.st_size < ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize)
		return MDB_CORRUPTED;
	return 0;
}

/* Open the environment and check it. On failure returns a code and a
 * reason (without the path) in why. */
static int lm_open_env(struct cairn_store *st, const struct cairn_store_options *opts, char *why,
		       size_t whylen)
{
	struct lm_setup su = {0};
	MDB_txn *txn;
	int rc, dead;

	rc = mdb_env_create(&st->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(st->env, LM_NDB);
	if (rc == 0)
		rc = mdb_env_set_mapsize(st->env, (size_t)st->map_size);
	if (rc == 0)
		rc = mdb_env_open(st->env, st->dir, st->env_flags, 0600);
	if (rc == 0)
		rc = mdb_reader_check(st->env, &dead);
	if (rc == 0)
		rc = lm_check_size(st);
	if (rc != 0) {
		snprintf(why, whylen, "%s", lm_reason(rc));
		return rc;
	}
	rc = lm_write(st, lm_setup_dbs, &su);
	if (rc == CAIRN_EVERSION) {
		snprintf(why, whylen, "schema version %u is newer than version %d this cairn knows",
			 su.version, LM_SCHEMA_VERSION);
		return rc;
	}
	if (rc == CAIRN_ECORRUPT) {
		snprintf(why, whylen, "bad schema_version record in database meta");
		return rc;
	}
	if (rc == 0 && (rc = lm_txn_begin(st, MDB_RDONLY, &txn)) == 0) {
		bool stopped;

		rc = lm_scan(st, txn, NULL, &stopped);
		mdb_txn_abort(txn);
		if (rc == CAIRN_ECORRUPT) {
			snprintf(why, whylen, "a record does not decode or sits under a wrong key");
			return rc;
		}
	}
	if (rc != 0) {
		snprintf(why, whylen, "%s", lm_reason(rc));
		return rc;
	}
	if (su.version == 0) {
		/* LMDB created data.mdb and lock.mdb but never syncs the
		 * directory: without this, a power cut may lose the names,
		 * and with them the whole store, on a strict filesystem. */
		if (bk_fsync_dir(st->dir) != 0) {
			snprintf(why, whylen, "cannot make the new store's files durable: %s",
				 strerror(errno));
			return CAIRN_EIO;
		}
		bk_logf(opts->log, opts->log_arg, CAIRN_LOG_NOTICE,
			"lmdb: %s: created at schema version %d", st->dir, LM_SCHEMA_VERSION);
	} else if (su.version < LM_SCHEMA_VERSION) {
		bk_logf(opts->log, opts->log_arg, CAIRN_LOG_NOTICE,
			"lmdb: %s: migrated from schema version %u to %d", st->dir, su.version,
			LM_SCHEMA_VERSION);
	}
	return 0;
}

/* Move data.mdb and lock.mdb aside as <name>.corrupt-<unix time>[.N],
 * never overwriting an earlier one; the new data file name goes to
 * newpath. */
static int lm_quarantine(struct cairn_store *st, char *newpath, size_t newlen)
{
	char from[4200], to[4200], sfx[48];

	if (bk_quarantine_suffix(st->data_path, sfx, sizeof(sfx)) != 0)
		return -1;
	snprintf(newpath, newlen, "%s%s", st->data_path, sfx);
	if (rename(st->data_path, newpath) != 0 && errno != ENOENT)
		return -1;
	snprintf(from, sizeof(from), "%s/lock.mdb", st->dir);
	snprintf(to, sizeof(to), "%s/lock.mdb%s", st->dir, sfx);
	if (rename(from, to) != 0 && errno != ENOENT)
		return -1;
	return 0;
}

static int lm_opt_size(const struct cairn_store_options *opts, const char *key, uint64_t def,
		       uint64_t *out, char *err, size_t errlen)
{
	const char *s = opts->get != NULL ? opts->get(opts->get_arg, key) : NULL;

	*out = def > SIZE_MAX ? SIZE_MAX : def;
	if (s == NULL)
		return 0;
	if (lm_parse_size(s, out) != 0) {
		bk_errf(err, errlen, "lmdb: bad %s \"%s\" (want a positive byte count)", key, s);
		return CAIRN_EINVAL;
	}
	return 0;
}

static bool lm_is_corrupt(int rc)
{
	return lm_map(rc) == CAIRN_ECORRUPT;
}

static int lm_open(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		   size_t errlen)
{
	struct cairn_store *st;
	mode_t old_umask;
	size_t n;
	char why[256], newpath[4200];
	int rc;

	*out = NULL;
	if (opts->location == NULL || opts->location[0] == '\0') {
		bk_errf(err, errlen, "lmdb: persistence_location is not set");
		return CAIRN_EINVAL;
	}
	st = bk_xcalloc(1, sizeof(*st));
	rc = lm_opt_size(opts, "lmdb_map_size", LM_MAP_SIZE_DEFAULT, &st->map_size, err, errlen);
	if (rc == 0)
		rc = lm_opt_size(opts, "lmdb_map_size_max", LM_MAP_SIZE_MAX_DEFAULT, &st->map_max,
				 err, errlen);
	if (rc == 0 && st->map_size > st->map_max) {
		bk_errf(err, errlen,
			"lmdb: lmdb_map_size %llu is larger than lmdb_map_size_max %llu",
			(unsigned long long)st->map_size, (unsigned long long)st->map_max);
		rc = CAIRN_EINVAL;
	}
	if (rc != 0) {
		lm_free(st);
		return rc;
	}
	st->dir = bk_xstrdup(opts->location);
	n = strlen(st->dir) + sizeof("/data.mdb");
	st->data_path = bk_xmalloc(n);
	snprintf(st->data_path, n, "%s/data.mdb", st->dir);
	/* MDB_NOTLS ties a reader slot to its transaction, not the thread:
	 * another handle on the same directory in this process (a test's
	 * second look) cannot then invalidate a slot this one cached. */
	st->env_flags = MDB_NOTLS | (opts->durability == CAIRN_DURABILITY_OS ? MDB_NOSYNC : 0);
	st->get = opts->get;
	st->get_arg = opts->get_arg;

	old_umask = umask(077);
	rc = bk_location_dir(st->dir, "lmdb", err, errlen);
	if (rc != 0)
		goto out;
	for (int attempt = 0;; attempt++) {
		rc = lm_open_env(st, opts, why, sizeof(why));
		if (rc == 0)
			break;
		lm_env_close(st);
		if (!lm_is_corrupt(rc) || opts->on_corrupt != CAIRN_ON_CORRUPT_QUARANTINE ||
		    attempt > 0) {
			bk_errf(err, errlen, "lmdb: %s: %s", st->data_path, why);
			rc = lm_map(rc);
			goto out;
		}
		if (lm_quarantine(st, newpath, sizeof(newpath)) != 0) {
			bk_errf(err, errlen, "lmdb: %s is corrupt (%s) and cannot be moved: %s",
				st->data_path, why, strerror(errno));
			rc = CAIRN_ECORRUPT;
			goto out;
		}
		bk_logf(opts->log, opts->log_arg, CAIRN_LOG_WARNING,
			"lmdb: %s is corrupt (%s); moved to %s, starting with an empty store",
			st->data_path, why, newpath);
	}
out:
	umask(old_umask);
	if (rc == 0 && opts->base != NULL && (st->worker = bk_worker_new(opts->base)) == NULL) {
		bk_errf(err, errlen, "lmdb: %s: cannot start the commit thread: %s", st->dir,
			strerror(errno));
		rc = CAIRN_ENOMEM;
	}
	if (rc != 0) {
		lm_free(st);
		return rc;
	}
	*out = st;
	return 0;
}

const struct cairn_store_ops cairn_store_lmdb = {
    .version = 7, /* the shared-store slots stay NULL: not shareable */
    .name = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .load = lm_load,
    .session_put = lm_session_put,
    .session_delete = lm_session_delete,
    .sub_put = lm_sub_put,
    .sub_delete = lm_sub_delete,
    .message_put = lm_message_put,
    .message_delete = lm_message_delete,
    .delivery_put = lm_delivery_put,
    .delivery_delete = lm_delivery_delete,
    .inflight_in_put = lm_inflight_in_put,
    .inflight_in_delete = lm_inflight_in_delete,
    .retained_put = lm_retained_put,
    .retained_delete = lm_retained_delete,
    .commit = lm_commit,
    .flags = CAIRN_STORE_LOCAL_FILES | CAIRN_STORE_ASYNC_COMMIT,
};
