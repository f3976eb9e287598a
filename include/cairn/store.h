/*
 * cairn persistence interface: the versioned vtable every storage backend
 * fills, and the record types it carries. A backend author needs this file
 * alone.
 *
 * Caveats:
 *  - Writes are staged: a backend buffers (or opens a transaction for) every
 *    *_put or *_delete call and makes them durable, all or nothing, in commit().
 *  - The core owns every record it passes in; records and their strings are
 *    borrowed for the duration of the call only. A backend copies what it
 *    keeps.
 *  - Records handed to a load() visitor are owned by the backend and valid
 *    only until the visitor returns.
 *  - A backend never prints and never exits; it reports failures with a
 *    negative CAIRN_E* code and, from open(), a message in the caller's
 *    buffer.
 *  - All calls come from the thread that runs the broker's event loop.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Version of struct cairn_store_ops described by this header. Slots are only
 * ever added at the end; a backend sets .version to the version it fills. */
#define CAIRN_STORE_OPS_VERSION 1

/* Error codes. 0 means success. */
enum {
	CAIRN_OK = 0,
	CAIRN_ENOMEM = -1,      /* out of memory */
	CAIRN_EIO = -2,         /* I/O error, the store may recover (retry) */
	CAIRN_ECORRUPT = -3,    /* the stored data is unreadable or damaged */
	CAIRN_EFULL = -4,       /* disk or map full: retry later */
	CAIRN_EVERSION = -5,    /* the store was written by a newer schema */
	CAIRN_EINVAL = -6,      /* bad argument or option */
	CAIRN_EINPROGRESS = -7, /* commit(): accepted, done() will be called */
	CAIRN_ENOTFOUND = -8,   /* no such backend, record or file */
	CAIRN_EUNAVAILABLE = -9 /* the server behind the store is unreachable */
};

/* Returns a static English description of a CAIRN_E* code. */
const char *cairn_strerror(int err);

/* What a commit waits for. */
enum cairn_durability {
	CAIRN_DURABILITY_OS = 0,   /* the data reached the operating system */
	CAIRN_DURABILITY_FSYNC = 1 /* the data reached the disk */
};

/* What open() does with a store it cannot read. */
enum cairn_on_corrupt {
	CAIRN_ON_CORRUPT_FAIL = 0,      /* return CAIRN_ECORRUPT */
	CAIRN_ON_CORRUPT_QUARANTINE = 1 /* move it aside, start empty */
};

/* Delivery state of an outbound message for one session. */
enum cairn_delivery_state {
	CAIRN_DELIVERY_QUEUED = 0, /* not sent yet */
	CAIRN_DELIVERY_SENT = 1,   /* PUBLISH sent, waiting for PUBACK/PUBREC */
	CAIRN_DELIVERY_PUBREC = 2  /* QoS 2: PUBREC received, PUBREL sent */
};

/* A session of a clean_session=0 client. */
struct cairn_session_rec {
	const char *client_id;
	const char *username; /* NULL when none */
	uint16_t next_packet_id;
	bool has_will;
	const char *will_topic; /* when has_will */
	const uint8_t *will_payload;
	uint32_t will_payload_len;
	uint8_t will_qos;
	bool will_retain;
	/* True while a network connection is open; a session found connected
	 * at load time lost its connection in a crash and its will is due. */
	bool connected;
};

struct cairn_sub_rec {
	const char *client_id;
	const char *filter;
	uint8_t qos;
};

/* A message, stored once and referenced by deliveries (msg_id), or a
 * retained message (keyed by topic; msg_id is informational). */
struct cairn_msg_rec {
	uint64_t msg_id;
	const char *topic;
	const uint8_t *payload;
	uint32_t payload_len;
	uint8_t qos;
	bool retain;
};

/* One message owed to one session. seq orders a session's deliveries and
 * is unique per client; packet_id is 0 while queued. */
struct cairn_delivery_rec {
	const char *client_id;
	uint64_t seq;
	uint64_t msg_id;
	uint16_t packet_id;
	uint8_t qos;   /* the QoS of this delivery: min(published, granted) */
	uint8_t state; /* enum cairn_delivery_state */
};

/* An inbound QoS 2 packet id whose PUBREL has not arrived yet. */
struct cairn_inflight_in_rec {
	const char *client_id;
	uint16_t packet_id;
};

/* Called by load() once per record; a non-zero return stops the load and
 * load() returns it. */
struct cairn_store_visitor {
	void *arg;
	int (*session)(void *arg, const struct cairn_session_rec *rec);
	int (*subscription)(void *arg, const struct cairn_sub_rec *rec);
	int (*message)(void *arg, const struct cairn_msg_rec *rec);
	int (*delivery)(void *arg, const struct cairn_delivery_rec *rec);
	int (*inflight_in)(void *arg, const struct cairn_inflight_in_rec *rec);
	int (*retained)(void *arg, const struct cairn_msg_rec *rec);
};

/* Options a backend is opened with. get() looks up any other key of the
 * config file (e.g. "redis_host"); it returns NULL when the key is unset. */
struct cairn_store_options {
	const char *location; /* persistence_location; may be NULL */
	enum cairn_durability durability;
	enum cairn_on_corrupt on_corrupt;
	struct event_base *base; /* the broker's loop, for async backends */
	const char *(*get)(void *arg, const char *key);
	void *get_arg;
	/* A backend may report what it did at open (quarantine, migration)
	 * through this; NULL means nobody listens. level: 0 error, 1 warning,
	 * 2 notice, 3 info. */
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
};

/* Opaque; each backend defines it. */
struct cairn_store;

/* Completion of an asynchronous commit. status is 0 or a CAIRN_E* code. */
typedef void (*cairn_store_done_fn)(void *arg, int status);

/*
 * The vtable. Every slot is required unless its comment says what NULL
 * means. Ordering rules the core relies on:
 *  - message records are put before any delivery that references them;
 *  - deliveries of one client are returned by load() in seq order;
 *  - session_delete removes the session with its subscriptions, deliveries
 *    and inbound QoS 2 ids; messages no longer referenced are deleted by
 *    the core with message_delete.
 */
struct cairn_store_ops {
	/* ---- version 1 ---- */
	int version;
	const char *name;

	/* Open (creating if needed) the store. On failure returns a CAIRN_E*
	 * code and writes a one-line reason naming the file or server into
	 * err (errlen bytes). */
	int (*open)(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		    size_t errlen);
	/* Close and free. Uncommitted staged writes are discarded. */
	void (*close)(struct cairn_store *st);
	/* Stream every record to the visitor: sessions, subscriptions,
	 * messages, deliveries (per client in seq order), inbound QoS 2 ids,
	 * retained messages, in that order. */
	int (*load)(struct cairn_store *st, const struct cairn_store_visitor *v);

	/* Staged writes (upserts keyed as the record comments say). */
	int (*session_put)(struct cairn_store *st, const struct cairn_session_rec *rec);
	int (*session_delete)(struct cairn_store *st, const char *client_id);
	int (*sub_put)(struct cairn_store *st, const struct cairn_sub_rec *rec);
	int (*sub_delete)(struct cairn_store *st, const char *client_id, const char *filter);
	int (*message_put)(struct cairn_store *st, const struct cairn_msg_rec *rec);
	int (*message_delete)(struct cairn_store *st, uint64_t msg_id);
	int (*delivery_put)(struct cairn_store *st, const struct cairn_delivery_rec *rec);
	int (*delivery_delete)(struct cairn_store *st, const char *client_id, uint64_t seq);
	int (*inflight_in_put)(struct cairn_store *st, const struct cairn_inflight_in_rec *rec);
	int (*inflight_in_delete)(struct cairn_store *st, const char *client_id,
				  uint16_t packet_id);
	int (*retained_put)(struct cairn_store *st, const struct cairn_msg_rec *rec);
	int (*retained_delete)(struct cairn_store *st, const char *topic);

	/* Make every staged write durable as one atomic batch. Returns 0 when
	 * the batch is durable on return, a CAIRN_E* code when it failed (the
	 * batch is kept and a later commit() retries it), or
	 * CAIRN_EINPROGRESS when done(arg, status) will be called later from
	 * the event loop. A backend that returns anything but
	 * CAIRN_EINPROGRESS never calls done. */
	int (*commit)(struct cairn_store *st, cairn_store_done_fn done, void *arg);
	/* ---- end of version 1 ---- */
};

/* Backends compiled into this build (each exists only when configure
 * enabled it: HAVE_SQLITE, HAVE_LMDB, HAVE_REDIS). */
extern const struct cairn_store_ops cairn_store_memory;
extern const struct cairn_store_ops cairn_store_sqlite;
extern const struct cairn_store_ops cairn_store_lmdb;
extern const struct cairn_store_ops cairn_store_redis;

#endif
