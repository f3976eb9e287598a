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
 *  - A staging call (*_put, *_delete) that returns an error has not staged
 *    its write. The core keeps the write, fails the batch and stages it
 *    again before it retries the commit, so nothing acknowledged is lost;
 *    a backend need not (and must not) keep a write it refused.
 *  - All calls come from the thread that runs the broker's event loop.
 */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/* Version of struct cairn_store_ops described by this header. Slots are only
 * ever added at the end; a backend sets .version to the version it fills,
 * and the core reads no slot past that version. */
#define CAIRN_STORE_OPS_VERSION 7

/*
 * Records grow at the end, and only with a new vtable version: the fields
 * after a "version 3" mark exist for a backend whose .version is 3 or more.
 * For an older backend, the core copies each record its load() hands the
 * visitor, up to the first version 3 field, into a full record whose
 * version 3 fields hold the defaults of a record stored before they
 * existed (expiry_interval CAIRN_EXPIRY_NEVER, every other one 0); an
 * older backend never reads them from the records it is handed.
 * Growing the records (rather than adding a second set of record types)
 * keeps one record per kind for backends, cairn-store and the core alike.
 *
 * Times that must survive a restart (session expiry, delayed wills,
 * message expiry) are stored as deadlines in milliseconds of the wall
 * clock (Unix epoch), 0 meaning "none".
 */

/* A session expiry interval or will delay that never ends (MQTT 5.0). */
#define CAIRN_EXPIRY_NEVER UINT32_MAX

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
	/* Messages dropped for this session because its queue was full
	 * (max_queued_messages, max_queued_bytes), since it was created. A
	 * backend that predates the field loads it as 0. */
	uint64_t dropped;

	/* ---- version 3 ---- */
	/* Protocol level of the connection that last wrote the session: 3
	 * (MQTT 3.1), 4 (3.1.1) or 5 (5.0); 0 when a version 2 store did not
	 * know it (read as 4). */
	uint8_t protocol_level;
	/* Session expiry interval in seconds (5.0), CAIRN_EXPIRY_NEVER for a
	 * session that never expires (a 3.1.1 persistent session without
	 * persistent_client_expiration). */
	uint32_t expiry_interval;
	/* When the session expires (wall-clock ms), set when its connection
	 * ends; 0 while connected or when it never expires. */
	int64_t expires_at;
	/* 5.0 will delay interval in seconds, and when the delayed will is due
	 * (wall-clock ms; 0: none pending). A will still pending at a crash
	 * is published once its deadline passes after the restart. */
	uint32_t will_delay;
	int64_t will_at;
	/* The will's 5.0 properties, encoded as in CONNECT, without the will
	 * delay interval (it has its own field); NULL/0 when none. */
	const uint8_t *will_props;
	uint32_t will_props_len;
};

struct cairn_sub_rec {
	const char *client_id;
	const char *filter; /* "$share/GROUP/FILTER" for a shared subscription */
	uint8_t qos;

	/* ---- version 3 ---- */
	/* The 5.0 subscription options other than the QoS, as bits 2-5 of the
	 * SUBSCRIBE options byte: CAIRN_SUB_NO_LOCAL, CAIRN_SUB_RETAIN_AS_PUBLISHED,
	 * retain handling in CAIRN_SUB_RETAIN_HANDLING. 0 for 3.1.1. */
	uint8_t options;
	/* Subscription identifier (5.0), 0 for none. */
	uint32_t sub_id;

	/* ---- version 5 (cluster mode) ---- */
	/* The shared log's position (cairn_log_pos) when the subscription was
	 * made: it matches only the entries after it, also when a node catches
	 * the session up from an older cursor. 0-0: every entry (any other
	 * store keeps it as 0-0). */
	uint64_t since_ms, since_seq;
};

enum {
	CAIRN_SUB_NO_LOCAL = 0x04,
	CAIRN_SUB_RETAIN_AS_PUBLISHED = 0x08,
	CAIRN_SUB_RETAIN_HANDLING = 0x30 /* (options & this) >> 4: 0, 1 or 2 */
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

	/* ---- version 3 ---- */
	/* When the message expires (wall-clock ms), from its 5.0 message
	 * expiry interval; 0: never. An expired message is never delivered. */
	int64_t expires_at;
	/* The 5.0 properties forwarded with the message, encoded as in
	 * PUBLISH: payload format indicator, content type, response topic,
	 * correlation data, user properties (never the message expiry
	 * interval, a topic alias or a subscription identifier). NULL/0: none. */
	const uint8_t *props;
	uint32_t props_len;

	/* ---- version 6 ---- */
	/* Read by log_append only (other writes ignore it). Not 0: the
	 * message is the will of its publisher's connection, which this node
	 * holds (or held, until the claim of its client's next connection
	 * here) under the claim of this serial. A shared store appends it at
	 * most once per connection, whichever comes first of this append and
	 * the append of the same will by a node whose claim took it
	 * (cairn_claim_result.will): the two can race where the log is
	 * outside the session's fence (a Redis Cluster). The core sets it in
	 * what it hands log_append and never reads it from a loaded record,
	 * so an older backend simply leaves it unread. */
	uint64_t will_serial;
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

	/* ---- version 3 ---- */
	/* The RETAIN flag it goes out with (a retained message sent on
	 * subscribe, or retain as published). A version 2 store loads it
	 * as false. */
	bool retain;
	/* The subscription identifiers (5.0) of the subscriptions it matched,
	 * sent with it; NULL/0: none. */
	const uint32_t *sub_ids;
	uint32_t n_sub_ids;
};

/* An inbound QoS 2 packet id whose PUBREL has not arrived yet. */
struct cairn_inflight_in_rec {
	const char *client_id;
	uint16_t packet_id;
};

/* Called by load() once per record; a non-zero return stops the load and
 * load() returns it unchanged. A NULL slot means the caller does not want
 * that kind of record: the backend skips it (and may skip reading it). */
struct cairn_store_visitor {
	void *arg;
	int (*session)(void *arg, const struct cairn_session_rec *rec);
	int (*subscription)(void *arg, const struct cairn_sub_rec *rec);
	int (*message)(void *arg, const struct cairn_msg_rec *rec);
	int (*delivery)(void *arg, const struct cairn_delivery_rec *rec);
	int (*inflight_in)(void *arg, const struct cairn_inflight_in_rec *rec);
	int (*retained)(void *arg, const struct cairn_msg_rec *rec);
};

/* Severity of a message a backend hands to cairn_store_options.log. */
enum cairn_log_level {
	CAIRN_LOG_ERROR = 0,   /* something failed */
	CAIRN_LOG_WARNING = 1, /* worked, but not as configured (quarantine, ...) */
	CAIRN_LOG_NOTICE = 2,  /* a normal but significant event (schema created) */
	CAIRN_LOG_INFO = 3     /* for the curious */
};

/* Options a backend is opened with. get() looks up any other key of the
 * config file (e.g. "redis_host"); it returns NULL when the key is unset. */
struct cairn_store_options {
	const char *location; /* persistence_location; may be NULL */
	enum cairn_durability durability;
	enum cairn_on_corrupt on_corrupt;
	/* The broker's loop, for async backends (Redis's link; the commit
	 * thread of SQLite and LMDB reports back through it). Without one,
	 * SQLite and LMDB commit on the caller's thread. */
	struct event_base *base;
	const char *(*get)(void *arg, const char *key);
	void *get_arg;
	/* A backend may report what it did (quarantine, migration, a lost
	 * server) through this; NULL means nobody listens. level is an enum
	 * cairn_log_level; msg is one line without a newline, borrowed for the
	 * call. */
	void (*log)(void *arg, int level, const char *msg);
	void *log_arg;
};

/* Opaque; each backend defines it. */
struct cairn_store;

/* Completion of an asynchronous commit. status is 0 or a CAIRN_E* code. */
typedef void (*cairn_store_done_fn)(void *arg, int status);

/*
 * ---- version 4: one store shared by several brokers (cluster mode) ----
 * A backend that can be shared fills the version 4 and 5 slots of the
 * vtable; the core refuses `cluster true` with any other. In cluster mode:
 *  - every broker is a node with its own incarnation (a number the store
 *    gives each start); message ids begin with it, so they never collide;
 *  - a session belongs to the node its client is connected to: claim()
 *    takes it (and returns its records), and every later write of that
 *    session is checked against the claim in the same atomic step as the
 *    write: a write of a session another node has claimed since is
 *    dropped and reported to the core (fenced) before the commit's done();
 *  - every PUBLISH is appended to one shared message log; each node reads
 *    the log and routes each entry to its own sessions, so nothing but the
 *    store connects the nodes;
 *  - (version 5) the log is kept in P partitions (cluster_log_partitions,
 *    which the backend reads through opts->get as the core does): every
 *    message of one topic goes to one partition, in order, and a position
 *    in the log (a node's mark, a session's cursor) is one position per
 *    partition, an array of P; entries of different partitions are not
 *    ordered against each other;
 *  - retained messages are written by the node that appends them, in the
 *    same step, and kept in memory by every node from the log.
 */

/* share_read's claim_idle_ms for this reader's own unacknowledged entries. */
#define CAIRN_SHARE_READ_MINE UINT64_MAX

/* The most partitions the shared message log may have
 * (cluster_log_partitions). */
#define CAIRN_LOG_PARTITIONS_MAX 64

/* A position in one partition of the shared message log: its entries are
 * ordered by (ms, seq). */
struct cairn_log_pos {
	uint64_t ms, seq;
};

/* One entry of the shared message log. */
struct cairn_log_entry {
	struct cairn_log_pos pos;
	/* The client that published it ("" for none), for No Local. */
	const char *publisher;
	/* The message (msg_id is 0). A retained message with an empty payload
	 * clears the topic's retained message. */
	struct cairn_msg_rec msg;
	/* ---- version 5 ---- */
	/* The partition it was read from (below P). */
	uint32_t partition;
};

/* What the core hears from a shared store, always from the event loop. */
struct cairn_cluster_hooks {
	void *arg;
	/* New log entries, in log order, from the position cluster_start()
	 * returned on; the entries of one call are of one partition. */
	void (*entries)(void *arg, const struct cairn_log_entry *e, size_t n);
	/* Another node claimed client_id's session, which this node holds
	 * under serial. */
	void (*kicked)(void *arg, const char *client_id, uint64_t serial);
	/* A commit dropped the writes of client_id's session (held here under
	 * serial): another node claimed it. Reported before that commit's
	 * done(). */
	void (*fenced)(void *arg, const char *client_id, uint64_t serial);
	/* Whether the will of client_id (logged in as username, NULL for
	 * none), whose node is gone, may be published to topic under the
	 * access rules in force on this node now (a will is checked again
	 * when it fires, as on one broker). NULL: every will may. */
	bool (*will_allowed)(void *arg, const char *client_id, const char *username,
			     const char *topic);
};

/*
 * A flag in claim()'s serial (never set in a serial itself): the connection
 * that claims asks for a clean start (MQTT 5.0 Clean Start 1, 3.1.1 Clean
 * Session 1), so the session of the previous connection on another node
 * ends with this takeover, and a will it left with a Will Delay, still
 * waiting, is due now (MQTT 5.0 3.1.2.5): the claim takes it, as any will
 * due at a takeover. A backend that does not know it sees a serial still
 * unique per connection.
 */
#define CAIRN_CLAIM_CLEAN ((uint64_t)1 << 63)

/*
 * A flag in kicked()'s serial (never set in a serial itself): the claim
 * found the will of the connection this node holds under serial due (a
 * takeover), and left it to this node, which may have discarded it (a
 * DISCONNECT whose commit the claim overtook). The core publishes the will
 * if it still holds it, then drops the session; a shared store appends it
 * at most once (if this node dies first, its janitor publishes it). A
 * backend that never sets it leaves the will to the claim.
 */
#define CAIRN_KICK_WILL ((uint64_t)1 << 63)

/* What a claim found. */
struct cairn_claim_result {
	/* The session was held by this incarnation under prev_serial (a
	 * takeover on the same node). */
	bool prev_local;
	uint64_t prev_serial;
	/* The log position up to which the claimed session's stored queue
	 * holds every matching entry (its own cursor, or its previous
	 * holder's mark), when has_cursor; without one no node had routed for
	 * it. */
	bool has_cursor;
	struct cairn_log_pos cursor;
	/* Stream the session's records (session, subscriptions, messages,
	 * deliveries, inbound QoS 2 ids) to v; callable during done() only.
	 * The caller skips it when it holds the session in memory already. */
	int (*visit)(void *ctx, const struct cairn_store_visitor *v);
	void *visit_ctx;
	/* The will the session's previous connection left, due now at this
	 * takeover (no will delay, a session that ended with it, or a clean
	 * start: CAIRN_CLAIM_CLEAN), when no node holds that connection (a
	 * parked session; a will of a connection another node holds is left
	 * to that node: CAIRN_KICK_WILL): the claim took it, and the store
	 * removes it with the claiming node's next commit (a node that dies
	 * first leaves it to the janitor); the
	 * claiming node publishes it, if the ACL in force lets the client
	 * (will_username, NULL for none) write its topic, once, whether or
	 * not the claim stands. will.props are as in the CONNECT (the Message
	 * Expiry Interval among them, which starts when it is published);
	 * will.expires_at is 0. Borrowed during done(). */
	bool has_will;
	struct cairn_msg_rec will;
	const char *will_username;
	/* ---- version 5 ---- */
	/* When has_cursor: the cursor in every partition (P of them; cursor
	 * is the first). Borrowed during done(). */
	const struct cairn_log_pos *cursors;
};

/* Completion of claim(): status 0 or a CAIRN_E* code. */
typedef void (*cairn_claim_fn)(void *arg, int status, const struct cairn_claim_result *r);

/* Completion of log_read(): up to max entries after the position asked,
 * in order; status 0 or a CAIRN_E* code. */
typedef void (*cairn_log_read_fn)(void *arg, int status, const struct cairn_log_entry *e, size_t n);

/* Capabilities, in cairn_store_ops.flags (version 2). */
enum {
	/* commit() returns CAIRN_EINPROGRESS and calls done() later from the
	 * event loop (Redis; SQLite and LMDB, whose commit thread writes the
	 * batch while the loop stages the next), or finishes at once when
	 * there is nothing to write; without the flag commit() always
	 * finishes before returning. */
	CAIRN_STORE_ASYNC_COMMIT = 1 << 0,
	/* location names a directory of files the backend owns (SQLite,
	 * LMDB); without it location is at most a name (memory) or unused. */
	CAIRN_STORE_LOCAL_FILES = 1 << 1
};

/*
 * The vtable. Every slot is required unless its comment says what NULL
 * means. Ordering rules the core relies on:
 *  - message records are put before any delivery that references them;
 *  - deliveries of one client are returned by load() in seq order;
 *  - session_delete removes the session with its subscriptions, deliveries
 *    and inbound QoS 2 ids; messages no longer referenced are deleted by
 *    the core with message_delete.
 * Every error a slot lists is a negative CAIRN_E* code. A backend returns
 * no other; the core handles any other code as it handles CAIRN_EIO.
 */
struct cairn_store_ops {
	/* ---- version 1 ---- */
	int version;
	const char *name;

	/*
	 * Open (creating if needed) the store. On failure returns a CAIRN_E*
	 * code and writes a one-line reason naming the file or server into
	 * err (errlen bytes), and *out is NULL.
	 * @return 0; CAIRN_EINVAL (a bad or missing option), CAIRN_ENOMEM,
	 * CAIRN_EIO (the location cannot be created or read),
	 * CAIRN_ECORRUPT (unreadable and on_corrupt is FAIL, or it cannot be
	 * moved aside), CAIRN_EVERSION (written by a newer schema),
	 * CAIRN_EFULL, CAIRN_EUNAVAILABLE (the server cannot be reached).
	 */
	int (*open)(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		    size_t errlen);
	/* Close and free. Uncommitted staged writes are discarded; a commit
	 * in flight is abandoned and its done() never called. */
	void (*close)(struct cairn_store *st);
	/*
	 * Stream every committed record to the visitor: sessions,
	 * subscriptions, messages, deliveries (per client in seq order),
	 * inbound QoS 2 ids, retained messages, in that order.
	 * @return 0; whatever a visitor returned; CAIRN_ECORRUPT (a record
	 * does not decode), CAIRN_EIO, CAIRN_ENOMEM, CAIRN_EUNAVAILABLE.
	 */
	int (*load)(struct cairn_store *st, const struct cairn_store_visitor *v);

	/*
	 * Staged writes (upserts keyed as the record comments say; deleting
	 * what does not exist is not an error). A staged write becomes
	 * durable only through commit(). A staging call may run while an
	 * asynchronous commit is in flight: the write joins the next batch.
	 * @return 0 when the write is staged; CAIRN_ENOMEM, CAIRN_EIO,
	 * CAIRN_EFULL or CAIRN_EUNAVAILABLE when it is not (see the caveats:
	 * the core keeps the write and stages it again before the retried
	 * commit); CAIRN_EINVAL for a record outside the ranges its comments
	 * give (a QoS above 2, an unknown delivery state), which the core
	 * asserts before it calls. The memory, SQLite, LMDB and Redis
	 * backends never fail a staging call for a valid record: they report
	 * every error at commit.
	 */
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

	/*
	 * Make every staged write durable as one atomic batch. A batch that
	 * fails is kept whole: a later commit() retries it together with
	 * what was staged meanwhile. Never more than one commit in flight.
	 * @param done called once, later, from the event loop, only when
	 * commit() returned CAIRN_EINPROGRESS; never from inside commit().
	 * @return 0 when the batch is durable on return; CAIRN_EINPROGRESS
	 * when done(arg, status) will report it; CAIRN_EIO, CAIRN_EFULL,
	 * CAIRN_ENOMEM, CAIRN_ECORRUPT or CAIRN_EUNAVAILABLE when it failed
	 * (the same codes may come as done()'s status); CAIRN_EINVAL when
	 * called while a commit is in flight or without done from an
	 * asynchronous backend, or for a record the store cannot hold.
	 */
	int (*commit)(struct cairn_store *st, cairn_store_done_fn done, void *arg);
	/* ---- end of version 1 ---- */

	/* ---- version 2 ---- */
	/* CAIRN_STORE_* capability bits. Read as 0 for a version 1 backend. */
	unsigned int flags;
	/* ---- end of version 2 ---- */

	/* ---- version 3 ---- */
	/* No new slots: the records grew (see the top of this file). */

	/* ---- version 4: a shared store (cluster mode); all NULL or all set ---- */
	/*
	 * Join the cluster: the store was opened with `cluster true` (the
	 * backend reads the cluster keys itself through opts->get) and
	 * load() has run (in cluster mode it loads retained messages only:
	 * sessions are loaded when claimed). Starts reading the log after
	 * tail, the end of the log now (version 5: an array of P, the end of
	 * each partition), and reporting through h (borrowed until close).
	 * *id_base is the first message id this node may use.
	 * @return 0; CAIRN_EINVAL (not opened in cluster mode), CAIRN_EIO,
	 * CAIRN_EUNAVAILABLE.
	 */
	int (*cluster_start)(struct cairn_store *st, const struct cairn_cluster_hooks *h,
			     struct cairn_log_pos *tail, uint64_t *id_base);
	/*
	 * Claim client_id's session for this node under serial (unique per
	 * connection on this node), telling its previous holder (kicked()).
	 * done() gets the session's records (r->visit). From done() on, the
	 * session's writes are checked against the claim; the writes staged
	 * for it before a claim that took it from another node are dropped.
	 * serial may carry CAIRN_CLAIM_CLEAN (not part of the serial).
	 * @return CAIRN_EINPROGRESS (done() follows from the loop, never from
	 * inside this call) or CAIRN_EUNAVAILABLE.
	 */
	int (*claim)(struct cairn_store *st, const char *client_id, uint64_t serial,
		     cairn_claim_fn done, void *arg);
	/* Stop holding client_id's session (it was kicked or fenced, or its
	 * claim was abandoned): its later writes are dropped. */
	void (*release)(struct cairn_store *st, const char *client_id);
	/* Stage the append of a message to the log (with the retained write
	 * when rec->retain), by publisher (a client id, or ""). A staged write
	 * like the others: it is in the log once the commit holding it is
	 * done, exactly once however often the batch is retried. */
	int (*log_append)(struct cairn_store *st, const char *publisher,
			  const struct cairn_msg_rec *rec);
	/*
	 * Stage where routing stands. client_id NULL: this node has routed the
	 * log up to pos into the queues of the sessions it holds (every write
	 * of that routing was staged before). Else the cursor of that one
	 * session (held here): its queue holds every matching entry up to pos
	 * and none after, whatever this node's mark says (a claim sets it;
	 * the claiming node moves it while it catches the session up); pos
	 * {UINT64_MAX, UINT64_MAX} removes it, once the node's mark speaks for
	 * the session.
	 * A claim returns the session's cursor, or else its previous holder's
	 * mark.
	 */
	int (*log_routed)(struct cairn_store *st, const char *client_id, struct cairn_log_pos pos);
	/* Read up to max entries after `after` (a session catching up).
	 * @return CAIRN_EINPROGRESS or CAIRN_EUNAVAILABLE. */
	int (*log_read)(struct cairn_store *st, struct cairn_log_pos after, size_t max,
			cairn_log_read_fn done, void *arg);

	/* ---- version 5: the log in partitions; set by a shared store, which
	 * leaves log_routed and log_read NULL (the core calls these instead
	 * and refuses a shared store below version 5) ---- */
	/* log_routed with a position in every partition (pos: P of them), or
	 * pos NULL to remove the session's cursor (client_id not NULL). */
	int (*log_routed_p)(struct cairn_store *st, const char *client_id,
			    const struct cairn_log_pos *pos);
	/* log_read in partition part (below P); the entries say it. */
	int (*log_read_p)(struct cairn_store *st, uint32_t part, struct cairn_log_pos after,
			  size_t max, cairn_log_read_fn done, void *arg);

	/* ---- version 6: shared subscriptions across nodes; a shared store
	 * sets all four or none (NULL: the core refuses $share in cluster
	 * mode). A group is named by group ("GROUP/FILTER"); in each
	 * partition of the log it reads the entries once for all the nodes:
	 * each entry goes to one node (a reader), which acknowledges it once
	 * it has given it to a member, and an entry left unacknowledged is
	 * taken over by another reader after an idle time. ---- */
	/*
	 * Make member (a client id) a member of group in partition part, and
	 * make the group read that partition from after `at` unless it reads
	 * it already. member NULL: only make sure the group reads the
	 * partition (from after `at` when it did not). done(arg, status) is
	 * called once, later, from the loop; status 0 or a CAIRN_E* code.
	 * @return CAIRN_EINPROGRESS, CAIRN_EUNAVAILABLE, or 0 at once (done is
	 * not called) when the group's filter can match no topic the
	 * partition holds (its first level literal, its topics in another
	 * partition): the core then never reads the group there, and a
	 * share_leave there is 0 at once too.
	 */
	int (*share_join)(struct cairn_store *st, uint32_t part, const char *group,
			  const char *member, struct cairn_log_pos at, cairn_store_done_fn done,
			  void *arg);
	/* End member's membership of group in partition part; the group stops
	 * reading the partition (its unacknowledged entries with it) when it
	 * has no member left there. Best effort: a failure is logged.
	 * @return 0 or CAIRN_EUNAVAILABLE. */
	int (*share_leave)(struct cairn_store *st, uint32_t part, const char *group,
			   const char *member);
	/*
	 * Read up to max entries of partition part for group, as this node's
	 * reader: claim_idle_ms 0, entries no reader got yet; else entries
	 * another reader (or this one) got and left unacknowledged for at
	 * least claim_idle_ms, which become this reader's; claim_idle_ms
	 * CAIRN_SHARE_READ_MINE: the entries this reader got and has not
	 * acknowledged yet, oldest first (read again, their idle time starts
	 * over). Status CAIRN_ENOTFOUND: the group does not read that
	 * partition (share_join it again).
	 * @return CAIRN_EINPROGRESS or CAIRN_EUNAVAILABLE.
	 */
	int (*share_read)(struct cairn_store *st, uint32_t part, const char *group, size_t max,
			  uint64_t claim_idle_ms, cairn_log_read_fn done, void *arg);
	/* Acknowledge n entries of partition part read for group: they are
	 * done with. Best effort (an entry left unacknowledged is read again
	 * by a takeover). @return 0 or CAIRN_EUNAVAILABLE. */
	int (*share_ack)(struct cairn_store *st, uint32_t part, const char *group,
			 const struct cairn_log_pos *pos, size_t n);

	/* ---- version 7: a shared group's entries given out once; a store
	 * with share_join may set it (NULL: at least once, as version 6) ---- */
	/*
	 * A staging call, as delivery_put: entry pos of partition part, read
	 * for group, is given to member (a client id) in this batch. The
	 * commit records it in member's session, and fences member's session
	 * (its writes are dropped, the core hears of it as of a claim
	 * elsewhere) when a takeover elsewhere marked the entry taken there
	 * first. A takeover (share_read with an idle time) then asks each
	 * member of the group whether the entry was given to it: such an
	 * entry is acknowledged, never read again, and the others are marked
	 * taken in every member's session before they are returned.
	 * @return 0 or a CAIRN_E* code.
	 */
	int (*share_given)(struct cairn_store *st, uint32_t part, const char *group,
			   const char *member, struct cairn_log_pos pos);
};

/* Backends compiled into this build (none and memory always; each of the
 * others only when configure enabled it: HAVE_SQLITE, HAVE_LMDB,
 * HAVE_HIREDIS). */
extern const struct cairn_store_ops cairn_store_none;
extern const struct cairn_store_ops cairn_store_memory;
extern const struct cairn_store_ops cairn_store_sqlite;
extern const struct cairn_store_ops cairn_store_lmdb;
extern const struct cairn_store_ops cairn_store_redis;

#endif
