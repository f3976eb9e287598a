/*
 * The network fuzzer's inputs: the seed sessions of tests/corpus/net/, the
 * mutations drawn from one seed that make an iteration's plan out of them,
 * and the plan's text form, written to inputs.txt and read back by --replay.
 */
#include "fuzz_net.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

/* ---- small helpers ---- */

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL) {
		fprintf(stderr, "fuzz_net: out of memory\n");
		exit(2);
	}
	return p;
}

void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = xrealloc(b->p, b->cap);
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

void buf_byte(struct buf *b, uint8_t c)
{
	buf_add(b, &c, 1);
}

void buf_u16(struct buf *b, unsigned v)
{
	buf_byte(b, (uint8_t)(v >> 8));
	buf_byte(b, (uint8_t)v);
}

void buf_str(struct buf *b, const char *s)
{
	buf_u16(b, (unsigned)strlen(s));
	buf_add(b, s, strlen(s));
}

void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

unsigned rnd(struct rng *r, unsigned n)
{
	return n ? (unsigned)(rng_next(r) % n) : 0;
}

int chance(struct rng *r, unsigned percent)
{
	return rnd(r, 100) < percent;
}

/* ---- MQTT framing, the fuzzer's own (it must not share the codec's bugs) ---- */

void put_remaining(struct buf *b, size_t n)
{
	do {
		uint8_t c = n % 128;

		n /= 128;
		buf_byte(b, c | (n ? 0x80 : 0));
	} while (n);
}

/*
 * Splits a whole packet at p: returns the total length and sets *hlen to
 * the fixed header's, or 0 when p does not hold a whole packet (yet).
 */
size_t packet_len(const uint8_t *p, size_t n, size_t *hlen)
{
	size_t rem = 0, mult = 1, i;

	for (i = 1; i < n && i <= 4; i++) {
		rem += (p[i] & 0x7f) * mult;
		mult *= 128;
		if (!(p[i] & 0x80)) {
			if (n - i - 1 < rem)
				return 0;
			*hlen = i + 1;
			return i + 1 + rem;
		}
	}
	return 0;
}

/* ---- the seed corpus: sessions as lists of packets ---- */

static void session_add(struct session *s, const uint8_t *p, size_t len)
{
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n].p = xrealloc(NULL, len);
	memcpy(s->v[s->n].p, p, len);
	s->v[s->n].len = len;
	s->n++;
}

static void session_insert(struct session *s, size_t at, const uint8_t *p, size_t len)
{
	session_add(s, p, len);
	if (at < s->n - 1) {
		struct pkt t = s->v[s->n - 1];

		memmove(&s->v[at + 1], &s->v[at], (s->n - 1 - at) * sizeof(*s->v));
		s->v[at] = t;
	}
}

static void session_remove(struct session *s, size_t at)
{
	free(s->v[at].p);
	memmove(&s->v[at], &s->v[at + 1], (s->n - 1 - at) * sizeof(*s->v));
	s->n--;
}

void session_free(struct session *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].p);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

int corpus_load(struct corpus *c, const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);

	if (n < 0) {
		fprintf(stderr, "fuzz_net: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const char *nm = names[i]->d_name;
		size_t l = strlen(nm), hlen, plen;
		char path[4096];
		struct session s = {0};
		struct buf data = {0};
		uint8_t tmp[4096];
		size_t got, off;
		FILE *f;

		if (l < 5 || strcmp(nm + l - 4, ".bin") != 0)
			goto next;
		snprintf(path, sizeof(path), "%s/%s", dir, nm);
		f = fopen(path, "rb");
		if (f == NULL)
			goto next;
		while ((got = fread(tmp, 1, sizeof(tmp), f)) > 0)
			buf_add(&data, tmp, got);
		fclose(f);
		for (off = 0; off < data.len; off += plen) {
			plen = packet_len(data.p + off, data.len - off, &hlen);
			if (plen == 0) {
				/* A seed that does not frame: the rest is one blob. */
				plen = data.len - off;
			}
			session_add(&s, data.p + off, plen);
		}
		buf_free(&data);
		if (s.n > 0) {
			c->s = xrealloc(c->s, (c->n + 1) * sizeof(*c->s));
			c->s[c->n++] = s;
		}
	next:
		free(names[i]);
	}
	free(names);
	if (c->n == 0) {
		fprintf(stderr, "fuzz_net: no seed sessions (*.bin) in %s\n", dir);
		return -1;
	}
	return 0;
}

/* ---- one iteration's inputs: what each connection sends, and how it ends ---- */

const char *const close_names[CLOSE_COUNT] = {"fin", "rst", "half", "linger"};
const char *const ack_names[ACK_COUNT] = {"none", "right", "wrong"};

void plan_free(struct plan *pl)
{
	for (int i = 0; i < pl->n; i++) {
		buf_free(&pl->c[i].stream);
		free(pl->c[i].bounds);
	}
	memset(pl, 0, sizeof(*pl));
}

/* The client identifiers of the fuzzed sessions: few, so that they meet. */
static const char *const client_ids[] = {"fz0", "fz1", "fz2", "fz3", "fz-x", ""};

/*
 * Rewrites a well-formed CONNECT's client id (and maybe its clean flag):
 * id, or one drawn from the pool when id is NULL.
 */
static void mutate_connect(struct pkt *k, const char *id, struct rng *r)
{
	size_t hlen, plen = packet_len(k->p, k->len, &hlen);
	const uint8_t *b = k->p + hlen;
	size_t blen, nl, off, idl;
	struct buf out = {0}, body = {0};

	if (plen != k->len || (k->p[0] & 0xf0) != 0x10)
		return;
	blen = plen - hlen;
	if (blen < 2)
		return;
	nl = (size_t)b[0] << 8 | b[1];
	off = 2 + nl + 4; /* name, level, flags, keep-alive */
	if (blen < off + 2)
		return;
	idl = (size_t)b[off] << 8 | b[off + 1];
	if (blen < off + 2 + idl)
		return;
	if (id == NULL)
		id = client_ids[rnd(r, sizeof(client_ids) / sizeof(client_ids[0]))];
	buf_add(&body, b, off);
	if (chance(r, 20))
		body.p[2 + nl + 1] ^= 0x02; /* clean session */
	if (chance(r, 5))
		body.p[2 + nl + 3] = (uint8_t)rnd(r, 3); /* keep-alive 0..2 s */
	buf_str(&body, id);
	buf_add(&body, b + off + 2 + idl, blen - off - 2 - idl);
	buf_byte(&out, k->p[0]);
	put_remaining(&out, body.len);
	buf_add(&out, body.p, body.len);
	free(k->p);
	k->p = out.p;
	k->len = out.len;
	buf_free(&body);
}

/* Offset of a packet id in a well-formed packet, or 0 when it has none. */
static size_t pid_offset(const struct pkt *k)
{
	size_t hlen, plen = packet_len(k->p, k->len, &hlen);
	unsigned type;

	if (plen == 0 || plen > k->len)
		return 0;
	type = k->p[0] >> 4;
	switch (type) {
	case 3:
		if (((k->p[0] >> 1) & 3) == 0 || plen < hlen + 2)
			return 0;
		{
			size_t tl = (size_t)k->p[hlen] << 8 | k->p[hlen + 1];

			return hlen + 2 + tl + 2 <= plen ? hlen + 2 + tl : 0;
		}
	case 4:
	case 5:
	case 6:
	case 7:
	case 8:
	case 10:
		return hlen + 2 <= plen ? hlen : 0;
	default:
		return 0;
	}
}

/* Byte-level damage to one packet. */
static void mutate_bytes(struct pkt *k, struct rng *r)
{
	size_t hlen = 0, plen = packet_len(k->p, k->len, &hlen), i;
	struct buf out = {0};

	switch (rnd(r, 8)) {
	case 0: /* bit flips */
		for (int n = 1 + (int)rnd(r, 3); n > 0 && k->len > 0; n--)
			k->p[rnd(r, (unsigned)k->len)] ^= (uint8_t)(1u << rnd(r, 8));
		return;
	case 1: /* a random byte */
		if (k->len > 0)
			k->p[rnd(r, (unsigned)k->len)] = (uint8_t)rnd(r, 256);
		return;
	case 2: /* truncation (the length field still says the old size) */
		if (k->len > 1)
			k->len = 1 + rnd(r, (unsigned)k->len - 1);
		return;
	case 3: /* the remaining length off by a little, or anything, or 5 bytes */
		if (plen == 0)
			return;
		buf_byte(&out, k->p[0]);
		i = plen - hlen;
		switch (rnd(r, 5)) {
		case 0:
			put_remaining(&out, i + 1);
			break;
		case 1:
			put_remaining(&out, i ? i - 1 : 0);
			break;
		case 2:
			put_remaining(&out, rnd(r, 300000000));
			break;
		case 3: /* non-minimal encoding */
			buf_byte(&out, (uint8_t)(0x80 | (i & 0x7f)));
			buf_byte(&out, (uint8_t)(0x80 | ((i >> 7) & 0x7f)));
			buf_byte(&out, (uint8_t)((i >> 14) & 0x7f));
			break;
		default: /* five bytes */
			for (int n = 0; n < 4; n++)
				buf_byte(&out, 0xff);
			buf_byte(&out, 0x7f);
			break;
		}
		buf_add(&out, k->p + hlen, k->len - hlen);
		break;
	case 4: /* bytes inserted inside, length fixed up or not */
	{
		size_t at = hlen + rnd(r, (unsigned)(k->len - hlen + 1));
		size_t n = 1 + rnd(r, 8);
		uint8_t junk[8];

		for (i = 0; i < n; i++)
			junk[i] = (uint8_t)rnd(r, 256);
		if (plen == k->len && chance(r, 50)) {
			buf_byte(&out, k->p[0]);
			put_remaining(&out, plen - hlen + n);
			buf_add(&out, k->p + hlen, at - hlen);
		} else {
			buf_add(&out, k->p, at);
		}
		buf_add(&out, junk, n);
		buf_add(&out, k->p + at, k->len - at);
		break;
	}
	case 5: /* a flag bit of the fixed header: QoS, retain, dup, reserved */
		k->p[0] ^= (uint8_t)(1u << rnd(r, 4));
		return;
	case 6: /* another packet type with the same body */
		k->p[0] = (uint8_t)((rnd(r, 16) << 4) | (k->p[0] & 0x0f));
		return;
	default: /* a packet id of 0, 1, 2 or 65535 */
	{
		size_t at = pid_offset(k);
		static const unsigned ids[] = {0, 1, 2, 65535};
		unsigned v = ids[rnd(r, 4)];

		if (at) {
			k->p[at] = (uint8_t)(v >> 8);
			k->p[at + 1] = (uint8_t)v;
		}
		return;
	}
	}
	free(k->p);
	k->p = out.p;
	k->len = out.len;
}

/*
 * Grows a well-formed PUBLISH's payload to n bytes: past the queue's byte
 * bound, and near and past max_packet_size (64 KiB in the fuzzer's config).
 */
static void inflate_publish(struct pkt *k, size_t n)
{
	size_t hlen, plen = packet_len(k->p, k->len, &hlen);
	struct buf out = {0};

	if (plen != k->len || (k->p[0] & 0xf0) != 0x30)
		return;
	buf_byte(&out, k->p[0]);
	put_remaining(&out, plen - hlen + n);
	buf_add(&out, k->p + hlen, plen - hlen);
	for (size_t i = 0; i < n; i++)
		buf_byte(&out, (uint8_t)('a' + i % 26));
	free(k->p);
	k->p = out.p;
	k->len = out.len;
}

/* Packet-level changes to a session, with packets spliced from the others. */
static void mutate_session(struct session *s, const struct corpus *c, struct rng *r)
{
	int n = (int)rnd(r, 6);

	for (int m = 0; m < n && s->n > 0; m++) {
		size_t at = rnd(r, (unsigned)s->n);

		switch (rnd(r, 9)) {
		case 0: /* drop one */
			if (s->n > 1)
				session_remove(s, at);
			break;
		case 1: /* send one twice */
			session_insert(s, at, s->v[at].p, s->v[at].len);
			break;
		case 2: /* swap two neighbours */
			if (at + 1 < s->n) {
				struct pkt t = s->v[at];

				s->v[at] = s->v[at + 1];
				s->v[at + 1] = t;
			}
			break;
		case 3: /* splice in a packet from another seed */
		case 4: {
			const struct session *o = &c->s[rnd(r, (unsigned)c->n)];
			const struct pkt *k = &o->v[rnd(r, (unsigned)o->n)];

			session_insert(s, at + (s->n > 1), k->p, k->len);
			break;
		}
		case 5: /* repeat a packet many times: fills queues and windows */
			if (s->v[at].len < 512)
				for (int i = 1 + (int)rnd(r, 40); i > 0 && s->n < 200; i--)
					session_insert(s, at, s->v[at].p, s->v[at].len);
			break;
		case 7: {
			static const size_t sizes[] = {1000, 5000, 65000, 65536, 70000};

			inflate_publish(&s->v[at], sizes[rnd(r, 5)]);
			break;
		}
		case 6: { /* a random small packet id */
			size_t o = pid_offset(&s->v[at]);

			if (o) {
				s->v[at].p[o] = 0;
				s->v[at].p[o + 1] = (uint8_t)(1 + rnd(r, 12));
			}
			break;
		}
		default:
			mutate_bytes(&s->v[at], r);
			break;
		}
	}
}

void plan_make(struct plan *pl, const struct corpus *c, struct rng *r)
{
	/* One iteration in ten is a takeover storm: every connection CONNECTs
	 * with the same client id, all at about the same time. */
	const char *storm = chance(r, 10) ? client_ids[rnd(r, 4)] : NULL;

	memset(pl, 0, sizeof(*pl));
	pl->n = storm ? MAX_CONNS : 1 + (int)rnd(r, MAX_CONNS);
	for (int i = 0; i < pl->n; i++) {
		struct conn_plan *cp = &pl->c[i];
		struct session s = {0};
		const struct session *seed = &c->s[rnd(r, (unsigned)c->n)];

		for (size_t k = 0; k < seed->n; k++)
			session_add(&s, seed->v[k].p, seed->v[k].len);
		if (s.n > 0 && (storm || chance(r, 90)))
			mutate_connect(&s.v[0], storm, r);
		if (chance(r, 75))
			mutate_session(&s, c, r);
		switch (rnd(r, 20)) {
		case 0:
		case 1:
		case 2:
			cp->close = CLOSE_LINGER;
			break;
		case 3:
		case 4:
			cp->close = CLOSE_HALF;
			break;
		case 5:
		case 6:
		case 7:
		case 8:
		case 9:
			cp->close = CLOSE_RST;
			break;
		default:
			cp->close = CLOSE_FIN;
			break;
		}
		/* A client left open has not said DISCONNECT: at a SIGKILL its
		 * session is connected, and restore owes its will. */
		if (cp->close == CLOSE_LINGER && s.n > 1 && s.v[s.n - 1].len == 2 &&
		    s.v[s.n - 1].p[0] == 0xe0)
			session_remove(&s, s.n - 1);
		cp->bounds = xrealloc(NULL, (s.n + 1) * sizeof(*cp->bounds));
		for (size_t k = 0; k < s.n; k++) {
			if (cp->stream.len + s.v[k].len > MAX_STREAM)
				break;
			buf_add(&cp->stream, s.v[k].p, s.v[k].len);
			cp->bounds[cp->nbounds++] = cp->stream.len;
		}
		session_free(&s);

		/* How the stream is cut into writes. */
		switch (rnd(r, 4)) {
		case 0: /* all at once */
			cp->chunks[cp->nchunks++] = (struct chunk){cp->stream.len, 0};
			break;
		case 1: /* one write per packet, a little apart */
			for (size_t k = 0; k < cp->nbounds && cp->nchunks < MAX_CHUNKS; k++)
				cp->chunks[cp->nchunks++] = (struct chunk){
				    cp->bounds[k], chance(r, 50) ? (int)rnd(r, 15) : 0};
			break;
		default: /* random cuts: partial packets, framing across reads */
		{
			size_t pos = 0;

			while (pos < cp->stream.len && cp->nchunks < MAX_CHUNKS - 1) {
				pos += 1 + rnd(r, 64);
				if (pos > cp->stream.len)
					pos = cp->stream.len;
				cp->chunks[cp->nchunks++] =
				    (struct chunk){pos, chance(r, 30) ? (int)rnd(r, 10) : 0};
			}
			if (pos < cp->stream.len)
				cp->chunks[cp->nchunks++] = (struct chunk){cp->stream.len, 0};
			break;
		}
		}
		if (cp->stream.len == 0)
			cp->nchunks = 0;
		cp->start_ms = storm ? (int)rnd(r, 4) : chance(r, 50) ? 0 : (int)rnd(r, 60);
		cp->tail_ms = (int)rnd(r, 80);
		cp->ack = chance(r, 70) ? ACK_RIGHT : chance(r, 50) ? ACK_NONE : ACK_WRONG;
	}
}

/* ---- the reproducer: a text form of the plans, written and read back ---- */

void plan_write(FILE *f, long iter, const struct plan *pl)
{
	fprintf(f, "iteration %ld\n", iter);
	for (int i = 0; i < pl->n; i++) {
		const struct conn_plan *cp = &pl->c[i];
		size_t from = 0;

		fprintf(f, "conn start %d tail %d close %s ack %s\n", cp->start_ms, cp->tail_ms,
			close_names[cp->close], ack_names[cp->ack]);
		fprintf(f, "bounds");
		for (size_t k = 0; k < cp->nbounds; k++)
			fprintf(f, " %zu", cp->bounds[k]);
		fprintf(f, "\n");
		for (int k = 0; k < cp->nchunks; k++) {
			fprintf(f, "chunk %d ", cp->chunks[k].delay_ms);
			for (size_t b = from; b < cp->chunks[k].end; b++)
				fprintf(f, "%02x", cp->stream.p[b]);
			fprintf(f, "\n");
			from = cp->chunks[k].end;
		}
	}
	if (pl->bounce)
		fprintf(f, "bounce redis\n");
	if (pl->restart)
		fprintf(f, "restart %s acl %d\n", pl->restart == SIGKILL ? "kill" : "term",
			pl->acl);
	else if (pl->hup)
		fprintf(f, "hup acl %d\n", pl->acl);
	fflush(f);
}

static int lookup(const char *const *names, int n, const char *w)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], w) == 0)
			return i;
	return -1;
}

/*
 * Reads the next iteration from a reproducer. Returns 1 with *pl filled,
 * 0 at the end of the file, -1 on a malformed line.
 */
int plan_read(FILE *f, struct plan *pl, long *iter)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	int started = 0, rc = 0;
	long pos;

	memset(pl, 0, sizeof(*pl));
	for (;;) {
		pos = ftell(f);
		got = getline(&line, &cap, f);
		if (got < 0)
			break;
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (strncmp(line, "iteration ", 10) == 0) {
			if (started) {
				fseek(f, pos, SEEK_SET);
				break;
			}
			started = 1;
			*iter = atol(line + 10);
		} else if (!started) {
			continue; /* the header */
		} else if (strncmp(line, "conn ", 5) == 0) {
			struct conn_plan *cp;
			char cl[16], ak[16];
			int c, a;

			if (pl->n == MAX_CONNS)
				goto bad;
			cp = &pl->c[pl->n++];
			if (sscanf(line, "conn start %d tail %d close %15s ack %15s", &cp->start_ms,
				   &cp->tail_ms, cl, ak) != 4)
				goto bad;
			c = lookup(close_names, CLOSE_COUNT, cl);
			a = lookup(ack_names, ACK_COUNT, ak);
			if (c < 0 || a < 0)
				goto bad;
			cp->close = (enum close_how)c;
			cp->ack = (enum ack_mode)a;
		} else if (strncmp(line, "bounds", 6) == 0 && pl->n > 0) {
			struct conn_plan *cp = &pl->c[pl->n - 1];
			char *p = line + 6, *e;

			for (;;) {
				unsigned long v = strtoul(p, &e, 10);

				if (e == p)
					break;
				cp->bounds =
				    xrealloc(cp->bounds, (cp->nbounds + 1) * sizeof(size_t));
				cp->bounds[cp->nbounds++] = v;
				p = e;
			}
		} else if (strncmp(line, "chunk ", 6) == 0 && pl->n > 0) {
			struct conn_plan *cp = &pl->c[pl->n - 1];
			char *p = line + 6, *e;
			long d = strtol(p, &e, 10);

			if (e == p || *e != ' ' || cp->nchunks == MAX_CHUNKS)
				goto bad;
			for (p = e + 1; p[0] && p[1]; p += 2) {
				unsigned v;

				if (sscanf(p, "%2x", &v) != 1)
					goto bad;
				buf_byte(&cp->stream, (uint8_t)v);
			}
			cp->chunks[cp->nchunks++] = (struct chunk){cp->stream.len, (int)d};
		} else if (sscanf(line, "restart term acl %d", &pl->acl) == 1) {
			pl->restart = SIGTERM;
		} else if (sscanf(line, "restart kill acl %d", &pl->acl) == 1) {
			pl->restart = SIGKILL;
		} else if (strcmp(line, "bounce redis") == 0) {
			pl->bounce = 1;
		} else if (sscanf(line, "hup acl %d", &pl->acl) == 1) {
			pl->hup = 1;
		} else {
			goto bad;
		}
	}
	rc = started;
	goto out;
bad:
	fprintf(stderr, "fuzz_net: bad reproducer line: %s\n", line);
	rc = -1;
out:
	free(line);
	return rc;
}

/* Frees every session of the corpus. */
void corpus_free(struct corpus *c)
{
	for (size_t i = 0; i < c->n; i++)
		session_free(&c->s[i]);
	free(c->s);
	memset(c, 0, sizeof(*c));
}
