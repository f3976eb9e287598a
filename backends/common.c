/*
 * What every persistence backend would otherwise write for itself: aborting
 * allocators (so that no backend needs the core's util.h), the open()
 * error and log formatting, the stored names of delivery states, and the
 * log of owned record copies that the memory and SQLite backends stage
 * into and src/store.c keeps refused writes in.
 */
#include "common.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

/* ---- allocation ---- */

/* Out of memory in a small allocation leaves nothing sensible to do: the
 * message goes to stderr because no logger is reachable from here. */
static void bk_oom(void)
{
	fputs("cairn: out of memory\n", stderr);
	abort();
}

void *bk_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		bk_oom();
	return p;
}

void *bk_xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);

	if (p == NULL)
		bk_oom();
	return p;
}

void *bk_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		bk_oom();
	return q;
}

char *bk_xstrdup(const char *s)
{
	return bk_xmemdup(s, strlen(s) + 1);
}

char *bk_xstrndup(const char *s, size_t n)
{
	char *p = bk_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void *bk_xmemdup(const void *p, size_t n)
{
	void *q = bk_xmalloc(n);

	if (n > 0)
		memcpy(q, p, n);
	return q;
}

char *bk_xstrdup_or_null(const char *s)
{
	return s != NULL ? bk_xstrdup(s) : NULL;
}

char *bk_strf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	s = bk_xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* ---- messages ---- */

void bk_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void bk_vlogf(void (*log)(void *arg, int level, const char *msg), void *arg,
	      enum cairn_log_level level, const char *fmt, va_list ap)
{
	va_list ap2;
	char *msg;
	int n;

	if (log == NULL)
		return;
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	msg = bk_xmalloc((size_t)n + 1);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	log(arg, (int)level, msg);
	free(msg);
}

void bk_logf(void (*log)(void *arg, int level, const char *msg), void *arg,
	     enum cairn_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bk_vlogf(log, arg, level, fmt, ap);
	va_end(ap);
}

/* ---- files under persistence_location ---- */

int bk_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int bk_location_dir(const char *dir, const char *backend, char *err, size_t errlen)
{
	struct stat sb;
	bool created = mkdir(dir, 0700) == 0;

	if (!created && errno != EEXIST) {
		bk_errf(err, errlen, "%s: cannot create directory %s: %s", backend, dir,
			strerror(errno));
		return CAIRN_EIO;
	}
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		bk_errf(err, errlen, "%s: %s is not a directory", backend, dir);
		return CAIRN_EIO;
	}
	if (created) {
		char *parent = bk_strf("%s/..", dir);
		int rc = bk_fsync_dir(parent);
		int saved = errno;
		free(parent);
		if (rc != 0) {
			bk_errf(err, errlen, "%s: cannot make the new directory %s durable: %s",
				backend, dir, strerror(saved));
			return CAIRN_EIO;
		}
	}
	return 0;
}

int bk_quarantine_suffix(const char *path, char *sfx, size_t sfxlen)
{
	long now = (long)time(NULL);

	for (int n = 0; n < 100; n++) {
		char *candidate;
		bool taken;

		if (n == 0)
			snprintf(sfx, sfxlen, ".corrupt-%ld", now);
		else
			snprintf(sfx, sfxlen, ".corrupt-%ld.%d", now, n);
		candidate = bk_strf("%s%s", path, sfx);
		taken = access(candidate, F_OK) == 0;
		free(candidate);
		if (!taken)
			return 0;
	}
	errno = EEXIST;
	return -1;
}

/* ---- delivery states ---- */

/* The SQLite schema's CHECK constraint, cairn-redis(5) and cairn-store's
 * dump all spell the states this way: the names are part of the stored
 * format, never to be renamed. */
static const char *const bk_state_names[] = {
    [CAIRN_DELIVERY_QUEUED] = "queued",
    [CAIRN_DELIVERY_SENT] = "sent",
    [CAIRN_DELIVERY_PUBREC] = "pubrec",
};

#define BK_NSTATES (sizeof(bk_state_names) / sizeof(bk_state_names[0]))

const char *bk_state_name(uint8_t state)
{
	return state < BK_NSTATES ? bk_state_names[state] : NULL;
}

bool bk_state_parse(const char *s, size_t len, uint8_t *out)
{
	if (s == NULL)
		return false;
	for (size_t i = 0; i < BK_NSTATES; i++) {
		if (strlen(bk_state_names[i]) == len && memcmp(bk_state_names[i], s, len) == 0) {
			*out = (uint8_t)i;
			return true;
		}
	}
	return false;
}

/* ---- subscription ids as stored text ---- */

size_t bk_ids_format(char *out, const uint32_t *ids, uint32_t n)
{
	size_t len = 0;

	out[0] = '\0';
	for (uint32_t i = 0; i < n; i++)
		len += (size_t)sprintf(out + len, i == 0 ? "%lu" : ",%lu", (unsigned long)ids[i]);
	return len;
}

bool bk_ids_parse(const char *s, size_t len, uint32_t **ids, size_t *cap, uint32_t *n)
{
	const char *p = s, *end = s + len;

	*n = 0;
	if (len == 0)
		return true;
	for (;;) {
		const char *start = p;
		uint64_t v = 0;

		for (; p < end && *p >= '0' && *p <= '9'; p++) {
			v = v * 10 + (uint64_t)(*p - '0');
			if (v > UINT32_MAX)
				return false;
		}
		if (p == start || (p < end && *p != ','))
			return false;
		if (*n == *cap) {
			*cap = *cap > 0 ? *cap * 2 : 8;
			*ids = bk_xrealloc(*ids, *cap * sizeof(**ids));
		}
		(*ids)[(*n)++] = (uint32_t)v;
		if (p == end)
			return true;
		p++; /* the comma: an id must follow */
	}
}

/* ---- the staged-write log ---- */

/*
 * An op and every string and blob its record points to live in one
 * allocation: the header, then the uint32 arrays (a delivery's
 * subscription ids), then the bytes. bk_op_copy_into walks the record
 * twice, first only measuring (at NULL), then copying.
 */
struct bk_op_copy {
	uint8_t *at;  /* where the next copy goes; NULL while only measuring */
	size_t words; /* bytes of uint32 arrays */
	size_t bytes; /* bytes of strings and blobs */
};

/* Room for (or a copy of) n bytes at p: a payload, never NULL, even when
 * empty, so a loaded record never carries a NULL payload pointer. */
static const uint8_t *bk_copy_blob(struct bk_op_copy *c, const uint8_t *p, uint32_t len)
{
	uint8_t *q = c->at;

	if (q == NULL) {
		c->bytes += len;
		return NULL;
	}
	if (len > 0)
		memcpy(q, p, len);
	c->at += len;
	return q;
}

/* A string's copy, NULL for NULL. */
static const char *bk_copy_str(struct bk_op_copy *c, const char *s)
{
	size_t n;
	char *q = (char *)c->at;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	if (q == NULL) {
		c->bytes += n;
		return NULL;
	}
	memcpy(q, s, n);
	c->at += n;
	return q;
}

/* A copy of the *n items of size bytes at p, or NULL with *n set to 0 for
 * none: a version 3 blob (properties, subscription ids), where NULL/0
 * means none, unlike a payload. */
static const void *bk_copy_opt(struct bk_op_copy *c, const void *p, uint32_t *n, size_t size)
{
	size_t len = (size_t)*n * size;
	uint8_t *q = c->at;

	if (*n == 0 || p == NULL) {
		*n = 0;
		return NULL;
	}
	if (q == NULL) {
		if (size == 1)
			c->bytes += len;
		else
			c->words += len;
		return NULL;
	}
	memcpy(q, p, len);
	c->at += len;
	return q;
}

/* Point r's strings and blobs at copies of rec's (kind says which member
 * of r is set), or with c->at NULL only count the room they need. The
 * uint32 arrays come first, so that they stay aligned. */
static void bk_op_copy_into(struct bk_op_copy *c, enum bk_op_kind kind, union bk_rec *r,
			    const void *rec)
{
	switch (kind) {
	case BK_SESSION_PUT:
	case BK_SESSION_DEL: {
		const struct cairn_session_rec *s = rec;

		r->session = *s;
		r->session.client_id = bk_copy_str(c, s->client_id);
		r->session.username = bk_copy_str(c, s->username);
		if (s->has_will) {
			r->session.will_topic = bk_copy_str(c, s->will_topic);
			r->session.will_payload =
			    bk_copy_blob(c, s->will_payload, s->will_payload_len);
		} else {
			r->session.will_topic = NULL;
			r->session.will_payload = NULL;
			r->session.will_payload_len = 0;
			r->session.will_props_len = 0; /* the properties go with it */
		}
		r->session.will_props = bk_copy_opt(c, s->will_props, &r->session.will_props_len,
						    sizeof(*s->will_props));
		break;
	}
	case BK_SUB_PUT:
	case BK_SUB_DEL: {
		const struct cairn_sub_rec *s = rec;

		r->sub = *s;
		r->sub.client_id = bk_copy_str(c, s->client_id);
		r->sub.filter = bk_copy_str(c, s->filter);
		break;
	}
	case BK_MESSAGE_PUT:
	case BK_MESSAGE_DEL:
	case BK_RETAINED_PUT:
	case BK_RETAINED_DEL: {
		const struct cairn_msg_rec *m = rec;

		r->msg = *m;
		r->msg.topic = bk_copy_str(c, m->topic);
		r->msg.payload = bk_copy_blob(c, m->payload, m->payload_len);
		r->msg.props = bk_copy_opt(c, m->props, &r->msg.props_len, sizeof(*m->props));
		break;
	}
	case BK_DELIVERY_PUT:
	case BK_DELIVERY_DEL: {
		const struct cairn_delivery_rec *d = rec;

		r->delivery = *d;
		r->delivery.sub_ids =
		    bk_copy_opt(c, d->sub_ids, &r->delivery.n_sub_ids, sizeof(*d->sub_ids));
		r->delivery.client_id = bk_copy_str(c, d->client_id);
		break;
	}
	case BK_INFLIGHT_PUT:
	case BK_INFLIGHT_DEL: {
		const struct cairn_inflight_in_rec *i = rec;

		r->inflight = *i;
		r->inflight.client_id = bk_copy_str(c, i->client_id);
		break;
	}
	case BK_LOG_APPEND:
	case BK_LOG_ROUTED:
	case BK_SHARE_GIVEN: {
		const struct bk_log_rec *l = rec;

		r->log = *l;
		r->log.msg.topic = bk_copy_str(c, l->msg.topic);
		r->log.msg.payload = bk_copy_blob(c, l->msg.payload, l->msg.payload_len);
		r->log.msg.props =
		    bk_copy_opt(c, l->msg.props, &r->log.msg.props_len, sizeof(*l->msg.props));
		r->log.publisher = bk_copy_str(c, l->publisher);
		break;
	}
	}
}

/* The size of the member of union bk_rec that kind sets, rounded up to
 * 8 bytes (the copies that follow it hold uint32 arrays first). */
static size_t bk_rec_size(enum bk_op_kind kind)
{
	size_t n = sizeof(union bk_rec);

	switch (kind) {
	case BK_SESSION_PUT:
	case BK_SESSION_DEL:
		n = sizeof(struct cairn_session_rec);
		break;
	case BK_SUB_PUT:
	case BK_SUB_DEL:
		n = sizeof(struct cairn_sub_rec);
		break;
	case BK_MESSAGE_PUT:
	case BK_MESSAGE_DEL:
	case BK_RETAINED_PUT:
	case BK_RETAINED_DEL:
		n = sizeof(struct cairn_msg_rec);
		break;
	case BK_DELIVERY_PUT:
	case BK_DELIVERY_DEL:
		n = sizeof(struct cairn_delivery_rec);
		break;
	case BK_INFLIGHT_PUT:
	case BK_INFLIGHT_DEL:
		n = sizeof(struct cairn_inflight_in_rec);
		break;
	case BK_LOG_APPEND:
	case BK_LOG_ROUTED:
	case BK_SHARE_GIVEN:
		n = sizeof(struct bk_log_rec);
		break;
	}
	return (n + 7) & ~(size_t)7;
}

struct bk_op *bk_op_new(enum bk_op_kind kind, const void *rec)
{
	struct bk_op_copy c = {0};
	union bk_rec scratch;
	struct bk_op *op;
	size_t head = offsetof(struct bk_op, rec) + bk_rec_size(kind);
	uint8_t *tail;

	/* One pass to measure, one to copy: the second writes the same
	 * pointers the first counted room for. The op ends with the record
	 * kind names, not the whole union: a delivery's op is half the size
	 * of a session's, and a drain stages one or two per message. */
	bk_op_copy_into(&c, kind, &scratch, rec);
	op = bk_xmalloc(head + c.words + c.bytes);
	memset(op, 0, head);
	op->kind = kind;
	if (kind == BK_DELIVERY_DEL)
		op->hi = ((const struct cairn_delivery_rec *)rec)->seq;
	else if (kind == BK_MESSAGE_DEL)
		op->hi = ((const struct cairn_msg_rec *)rec)->msg_id;
	tail = (uint8_t *)op + head;
	c.at = tail;
	bk_op_copy_into(&c, kind, &op->rec, rec);
	assert(c.at == tail + c.words + c.bytes);
	return op;
}

void bk_op_free(struct bk_op *op)
{
	free(op);
}

void bk_log_push(struct bk_log *log, struct bk_op *op)
{
	op->next = NULL;
	if (log->tail != NULL)
		log->tail->next = op;
	else
		log->head = op;
	log->tail = op;
	log->n++;
}

static void bk_log_end_runs(struct bk_log *log)
{
	log->epoch++;
}

/* Whether run is open and of client_id (NULL: a message run, of no
 * client). */
static bool bk_run_of(const struct bk_log *log, const struct bk_run *run, const char *client_id)
{
	return run->op != NULL && run->epoch == log->epoch &&
	       (client_id == NULL || strcmp(run->op->rec.delivery.client_id, client_id) == 0);
}

/* Extend run by a delete of key (of client_id, as bk_run_of) when it is
 * the key after the run's range, short of the run's limit. */
static bool bk_run_extend(const struct bk_log *log, struct bk_run *run, const char *client_id,
			  uint64_t key)
{
	if (!bk_run_of(log, run, client_id) || key != run->op->hi + 1 || key >= run->limit)
		return false;
	run->op->hi = key;
	return true;
}

/* A put of key (of client_id, as bk_run_of) was staged: the run must stop
 * short of it. */
static void bk_run_limit(const struct bk_log *log, struct bk_run *run, const char *client_id,
			 uint64_t key)
{
	if (bk_run_of(log, run, client_id) && key < run->limit)
		run->limit = key;
}

/* The delete op starts a new run. */
static void bk_run_start(const struct bk_log *log, struct bk_run *run, struct bk_op *op)
{
	run->op = op;
	run->limit = UINT64_MAX;
	run->epoch = log->epoch;
}

/* FNV-1a of a client id. */
static uint32_t bk_id_hash(const char *client_id)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)client_id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* The delivery delete run slot of client_id. A run of another client in
 * it is simply no longer extended once this client's takes the slot. */
static struct bk_run *bk_dels_of(struct bk_log *log, const char *client_id)
{
	return &log->dels[bk_id_hash(client_id) & (BK_DELETE_RUNS - 1)];
}

/* Where bk_log_push_merge remembers the last delivery put of client_id's
 * seq (an index into bk_log.recent): the queues of many clients drain at
 * once, with the same seqs. */
static uint16_t bk_recent_slot(const char *client_id, uint64_t seq)
{
	return (uint16_t)((bk_id_hash(client_id) + seq) & (BK_RECENT_PUTS - 1));
}

/* A delete of client_id's seq was staged: the put of that delivery staged
 * last into log, if it is remembered, is dead. */
static void bk_recent_kill(struct bk_log *log, const char *client_id, uint64_t seq)
{
	struct bk_op **slot = &log->recent[bk_recent_slot(client_id, seq)];
	struct bk_op *put = *slot;

	if (put != NULL && put->rec.delivery.seq == seq &&
	    strcmp(put->rec.delivery.client_id, client_id) == 0) {
		put->dead = true;
		*slot = NULL;
	}
}

void bk_log_push_merge(struct bk_log *log, enum bk_op_kind kind, const void *rec)
{
	/* Which of the two rec is follows from kind. */
	const struct cairn_delivery_rec *d = rec;
	const struct cairn_msg_rec *m = rec;
	struct bk_op *op;

	switch (kind) {
	case BK_DELIVERY_DEL:
		bk_recent_kill(log, d->client_id, d->seq);
		if (bk_run_extend(log, bk_dels_of(log, d->client_id), d->client_id, d->seq))
			return; /* merged before any copy is made */
		break;
	case BK_MESSAGE_DEL:
		if (bk_run_extend(log, &log->msgs, NULL, m->msg_id))
			return;
		break;
	case BK_DELIVERY_PUT:
		bk_run_limit(log, bk_dels_of(log, d->client_id), d->client_id, d->seq);
		break;
	case BK_MESSAGE_PUT:
		bk_run_limit(log, &log->msgs, NULL, m->msg_id);
		break;
	case BK_SESSION_DEL: {
		/* It deletes the client's deliveries: a later delete must not
		 * move before it. Ending every delivery run (the message run
		 * with them) is the simple way. */
		bk_log_end_runs(log);
		break;
	}
	default:
		break;
	}
	op = bk_op_new(kind, rec);
	bk_log_push(log, op);
	if (kind == BK_DELIVERY_DEL)
		bk_run_start(log, bk_dels_of(log, d->client_id), op);
	else if (kind == BK_MESSAGE_DEL)
		bk_run_start(log, &log->msgs, op);
	else if (kind == BK_DELIVERY_PUT) {
		op->slot = bk_recent_slot(d->client_id, d->seq);
		log->recent[op->slot] = op;
	}
}

struct bk_op *bk_log_shift(struct bk_log *log)
{
	struct bk_op *op = log->head;

	bk_log_end_runs(log);
	if (op == NULL)
		return NULL;
	log->head = op->next;
	if (log->head == NULL)
		log->tail = NULL;
	log->n--;
	op->next = NULL;
	if (op->kind == BK_DELIVERY_PUT && log->recent[op->slot] == op)
		log->recent[op->slot] = NULL; /* it leaves the log */
	return op;
}

void bk_log_clear(struct bk_log *log)
{
	struct bk_op *op;

	while ((op = bk_log_shift(log)) != NULL)
		bk_op_free(op);
}

void bk_log_prepend(struct bk_log *log, struct bk_log *from)
{
	bk_log_end_runs(log);
	bk_log_end_runs(from);
	/* from's puts are log's now, and older than log's own: a delete
	 * staged from here on may kill only those it remembers. */
	memset(from->recent, 0, sizeof(from->recent));
	if (from->head == NULL)
		return;
	from->tail->next = log->head;
	if (log->tail == NULL)
		log->tail = from->tail;
	log->head = from->head;
	log->n += from->n;
	from->head = from->tail = NULL;
	from->n = 0;
}

/* ---- the commit thread ---- */

struct bk_worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	/* The job, set by the loop's thread; `ready` hands it over. */
	int (*job)(void *arg);
	void (*finish)(void *arg, int rc);
	void *arg;
	bool ready;
	int rc;
	int wake[2]; /* the worker writes a byte when a job is done */
	struct event *done_ev;
};

static void *bk_worker_main(void *p)
{
	struct bk_worker *w = p;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->ready && !w->stop)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		w->ready = false;
		pthread_mutex_unlock(&w->mu);
		int rc = w->job(w->arg);
		pthread_mutex_lock(&w->mu);
		w->rc = rc;
		/* A pipe of 64 KiB never fills: one byte per job, one job at
		 * a time. */
		while (write(w->wake[1], "", 1) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void bk_worker_done_cb(evutil_socket_t fd, short what, void *p)
{
	struct bk_worker *w = p;
	char b;
	int rc;

	(void)what;
	if (read(fd, &b, 1) != 1)
		return;
	pthread_mutex_lock(&w->mu);
	rc = w->rc;
	pthread_mutex_unlock(&w->mu);
	w->finish(w->arg, rc);
}

/* Free what bk_worker_new made, the thread excepted (never started, or
 * joined). */
static void bk_worker_release(struct bk_worker *w)
{
	if (w->done_ev != NULL)
		event_free(w->done_ev);
	close(w->wake[0]);
	close(w->wake[1]);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

struct bk_worker *bk_worker_new(struct event_base *base)
{
	struct bk_worker *w;
	int err;

	if (base == NULL) {
		errno = EINVAL;
		return NULL;
	}
	w = bk_xcalloc(1, sizeof(*w));
	if (pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(w);
		return NULL;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done_ev = event_new(base, w->wake[0], EV_READ | EV_PERSIST, bk_worker_done_cb, w);
	err = w->done_ev == NULL || event_add(w->done_ev, NULL) != 0
		  ? ENOMEM
		  : pthread_create(&w->thread, NULL, bk_worker_main, w);
	if (err != 0) {
		bk_worker_release(w);
		errno = err;
		return NULL;
	}
	return w;
}

void bk_worker_run(struct bk_worker *w, int (*job)(void *arg), void (*finish)(void *arg, int rc),
		   void *arg)
{
	pthread_mutex_lock(&w->mu);
	w->job = job;
	w->finish = finish;
	w->arg = arg;
	w->ready = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void bk_worker_free(struct bk_worker *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	bk_worker_release(w);
}
