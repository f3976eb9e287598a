/*
 * cairn-store: the operator's view of a persistence store through the
 * backend vtable alone. It counts records (stats), prints them as JSON
 * lines (dump) and copies a whole store from one backend to another (copy),
 * so a broker can move between SQLite, LMDB and Redis without losing state.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "cairn/store.h"
#include "progress.h"
#include "store.h"
#include "util.h"

#define TOOL "cairn-store"

/* Exit statuses: a store failed, or the command line was wrong. */
#define EXIT_STORE 1
#define EXIT_USAGE 2

/* Records staged in the target before each commit of a copy. */
#define COPY_BATCH_DEFAULT 1000

/* A parsed STORE argument: the backend and the options it is opened with. */
struct spec {
	const char *text; /* as the user wrote it, for messages */
	char *backend;
	char *location; /* sqlite, lmdb */
	char *host;     /* redis */
	char *port;
	char *db;
	char *prefix;
	char *password;
	char *timeout;
};

/* Counts of every record kind a store holds. */
struct counts {
	uint64_t sessions, subs, queued, inflight, messages, inflight_in, retained;
	uint64_t dropped; /* queue-full drops, summed over the sessions */
	FILE *drops;      /* when not NULL, one line per session with drops */
};

static void usage(FILE *out)
{
	fputs("usage: " TOOL " stats STORE\n"
	      "       " TOOL " dump STORE\n"
	      "       " TOOL " copy FROM TO [-f|--force] [--batch N]\n"
	      "       " TOOL " -h | --help\n"
	      "STORE is one of:\n"
	      "  sqlite:DIR                 the persistence_location of the sqlite backend\n"
	      "                             (sqlite:DIR/cairn.db is accepted too)\n"
	      "  lmdb:DIR                   the persistence_location of the lmdb backend\n"
	      "  redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P&timeout=MS]\n"
	      "                             a Redis server (default 127.0.0.1:6379, db 0,\n"
	      "                             prefix cairn:)\n"
	      "Stop the broker before copying into its store.\n",
	      out);
}

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs(TOOL ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n" TOOL ": see '" TOOL " --help'\n", stderr);
	exit(EXIT_USAGE);
}

static void spec_cleanup(struct spec *sp)
{
	free(sp->backend);
	free(sp->location);
	free(sp->host);
	free(sp->port);
	free(sp->db);
	free(sp->prefix);
	free(sp->password);
	free(sp->timeout);
}

/* Drop a trailing file name the backend keeps inside its directory, so that
 * "sqlite:var/cairn.db" names the same store as "sqlite:var". */
static char *strip_file(const char *dir, const char *file)
{
	size_t n = strlen(dir), f = strlen(file);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n >= f && memcmp(dir + n - f, file, f) == 0 && (n == f || dir[n - f - 1] == '/')) {
		n -= f;
		while (n > 1 && dir[n - 1] == '/')
			n--;
		if (n == 0)
			return xstrdup(".");
	}
	return xstrndup(dir, n);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode n bytes of s into a new string; NULL on a bad escape or
 * an encoded NUL. */
static char *pct_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *o = out;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

static bool all_digits(const char *s, size_t n)
{
	if (n == 0 || n > 9)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P&timeout=MS] */
static int spec_parse_redis(struct spec *sp, const char *u, char *err, size_t errlen)
{
	const char *end = u + strcspn(u, "/?"), *at, *hp = u, *colon;

	sp->backend = xstrdup("redis");
	at = memchr(u, '@', (size_t)(end - u));
	if (at != NULL) {
		if (u[0] != ':' ||
		    (sp->password = pct_decode(u + 1, (size_t)(at - u - 1))) == NULL) {
			snprintf(err, errlen, "the user part must be :PASSWORD (percent-encoded)");
			return -1;
		}
		hp = at + 1;
	}
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(end - hp));

		if (rb == NULL) {
			snprintf(err, errlen, "unterminated [ in the host");
			return -1;
		}
		sp->host = xstrndup(hp + 1, (size_t)(rb - hp - 1));
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
		if (colon == NULL && rb + 1 != end) {
			snprintf(err, errlen, "expected :PORT after ]");
			return -1;
		}
	} else {
		colon = memchr(hp, ':', (size_t)(end - hp));
		if (colon != NULL || end > hp)
			sp->host = xstrndup(hp, (size_t)((colon ? colon : end) - hp));
	}
	if (colon != NULL) {
		if (!all_digits(colon + 1, (size_t)(end - colon - 1)) || atol(colon + 1) < 1 ||
		    atol(colon + 1) > 65535) {
			snprintf(err, errlen, "the port must be a number from 1 to 65535");
			return -1;
		}
		sp->port = xstrndup(colon + 1, (size_t)(end - colon - 1));
	}
	if (*end == '/') {
		const char *d = end + 1;
		size_t dn = strcspn(d, "?");

		if (dn > 0) {
			if (!all_digits(d, dn)) {
				snprintf(err, errlen, "the database must be a number");
				return -1;
			}
			sp->db = xstrndup(d, dn);
		}
		end = d + dn;
	}
	if (*end == '?') {
		const char *q = end + 1;

		while (*q != '\0') {
			size_t n = strcspn(q, "&");
			const char *eq = memchr(q, '=', n);
			char **slot = NULL;

			if (eq != NULL && (size_t)(eq - q) == 6 && memcmp(q, "prefix", 6) == 0)
				slot = &sp->prefix;
			else if (eq != NULL && (size_t)(eq - q) == 7 &&
				 memcmp(q, "timeout", 7) == 0)
				slot = &sp->timeout;
			if (slot == NULL) {
				snprintf(err, errlen,
					 "unknown parameter '%.*s' (want prefix= or timeout=)",
					 (int)n, q);
				return -1;
			}
			free(*slot);
			*slot = pct_decode(eq + 1, n - (size_t)(eq + 1 - q));
			if (*slot == NULL) {
				snprintf(err, errlen, "bad percent escape in '%.*s'", (int)n, q);
				return -1;
			}
			q += n;
			if (*q == '&')
				q++;
		}
	}
	if (sp->timeout != NULL && !all_digits(sp->timeout, strlen(sp->timeout))) {
		snprintf(err, errlen, "timeout must be a number of milliseconds");
		return -1;
	}
	return 0;
}

/* Parse a STORE argument. Returns 0, or -1 with a reason in err. */
static int spec_parse(struct spec *sp, const char *arg, char *err, size_t errlen)
{
	memset(sp, 0, sizeof(*sp));
	sp->text = arg;
	if (strncmp(arg, "sqlite:", 7) == 0 || strncmp(arg, "lmdb:", 5) == 0) {
		bool sq = arg[0] == 's';
		const char *dir = arg + (sq ? 7 : 5);

		if (dir[0] == '\0') {
			snprintf(err, errlen, "%s: name the directory, e.g. %s:var", arg,
				 sq ? "sqlite" : "lmdb");
			return -1;
		}
		sp->backend = xstrdup(sq ? "sqlite" : "lmdb");
		sp->location = strip_file(dir, sq ? "cairn.db" : "data.mdb");
		return 0;
	}
	if (strncmp(arg, "redis://", 8) == 0) {
		char why[200];

		if (spec_parse_redis(sp, arg + 8, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s: %s", arg, why);
			return -1;
		}
		return 0;
	}
	if (strncmp(arg, "memory:", 7) == 0 || strcmp(arg, "memory") == 0) {
		snprintf(err, errlen,
			 "%s: the memory backend lives inside a running broker and vanishes "
			 "with it; there is nothing to read or write",
			 arg);
		return -1;
	}
	snprintf(err, errlen, "%s: not a store (want sqlite:DIR, lmdb:DIR or redis://HOST:PORT/DB)",
		 arg);
	return -1;
}

/* The get() callback of struct cairn_store_options. */
static const char *spec_get(void *arg, const char *key)
{
	const struct spec *sp = arg;

	if (strcmp(key, "redis_host") == 0)
		return sp->host;
	if (strcmp(key, "redis_port") == 0)
		return sp->port;
	if (strcmp(key, "redis_db") == 0)
		return sp->db;
	if (strcmp(key, "redis_key_prefix") == 0)
		return sp->prefix;
	if (strcmp(key, "redis_password") == 0)
		return sp->password;
	if (strcmp(key, "redis_connect_timeout") == 0)
		return sp->timeout;
	return NULL;
}

/* True when both name the same store (so a copy would read what it
 * writes). */
static bool spec_same(const struct spec *a, const struct spec *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];

	if (strcmp(a->backend, b->backend) != 0)
		return false;
	if (a->location != NULL) {
		if (realpath(a->location, ra) == NULL || realpath(b->location, rb) == NULL)
			return strcmp(a->location, b->location) == 0;
		return strcmp(ra, rb) == 0;
	}
#define SAME(f, def) (strcmp(a->f ? a->f : (def), b->f ? b->f : (def)) == 0)
	return SAME(host, "127.0.0.1") && SAME(port, "6379") && SAME(db, "0") &&
	       SAME(prefix, "cairn:");
#undef SAME
}

static void tool_log(void *arg, int level, const char *msg)
{
	const struct spec *sp = arg;

	if (level <= 2)
		fprintf(stderr, TOOL ": %s: %s\n", sp->text, msg);
}

/*
 * Open the store sp names. A store that is only read must already exist:
 * opening would otherwise create an empty one and report it as empty.
 * Prints the reason and returns -1 on failure.
 */
static int tool_open(struct spec *sp, struct event_base *base, bool write, struct store **out)
{
	struct cairn_store_options opts = {
	    .location = sp->location,
	    .durability = write ? CAIRN_DURABILITY_FSYNC : CAIRN_DURABILITY_OS,
	    .on_corrupt = CAIRN_ON_CORRUPT_FAIL,
	    .base = base,
	    .get = spec_get,
	    .get_arg = sp,
	    .log = tool_log,
	    .log_arg = sp,
	};
	char err[512] = "";
	int rc;

	if (sp->location != NULL) {
		const char *file = strcmp(sp->backend, "sqlite") == 0 ? "cairn.db" : "data.mdb";
		size_t n = strlen(sp->location) + strlen(file) + 2;
		char *path = xmalloc(n);
		struct stat sb;

		snprintf(path, n, "%s/%s", sp->location, file);
		if (write && mkdir(sp->location, 0700) != 0 && errno != EEXIST) {
			fprintf(stderr, TOOL ": %s: cannot create %s: %s\n", sp->text, sp->location,
				strerror(errno));
			free(path);
			return -1;
		}
		if (!write && stat(path, &sb) != 0) {
			fprintf(stderr, TOOL ": %s: no %s store here (%s: %s)\n", sp->text,
				sp->backend, path, strerror(errno));
			free(path);
			return -1;
		}
		free(path);
	}
	rc = store_open(out, sp->backend, &opts, base, 0, NULL, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, TOOL ": %s: cannot open: %s%s%s\n", sp->text, cairn_strerror(rc),
			err[0] ? ": " : "", err);
		return -1;
	}
	return 0;
}

/* ---- stats ---- */

static void json_str(FILE *out, const char *str);

static int count_session(void *arg, const struct cairn_session_rec *rec)
{
	struct counts *c = arg;

	c->sessions++;
	c->dropped += rec->dropped;
	if (c->drops != NULL && rec->dropped > 0) {
		fputs("dropped_by ", c->drops);
		json_str(c->drops, rec->client_id);
		fprintf(c->drops, " %" PRIu64 "\n", rec->dropped);
	}
	return 0;
}

static int count_sub(void *arg, const struct cairn_sub_rec *rec)
{
	(void)rec;
	((struct counts *)arg)->subs++;
	return 0;
}

static int count_message(void *arg, const struct cairn_msg_rec *rec)
{
	(void)rec;
	((struct counts *)arg)->messages++;
	return 0;
}

static int count_delivery(void *arg, const struct cairn_delivery_rec *rec)
{
	struct counts *c = arg;

	if (rec->state == CAIRN_DELIVERY_QUEUED)
		c->queued++;
	else
		c->inflight++;
	return 0;
}

static int count_inflight_in(void *arg, const struct cairn_inflight_in_rec *rec)
{
	(void)rec;
	((struct counts *)arg)->inflight_in++;
	return 0;
}

static int count_retained(void *arg, const struct cairn_msg_rec *rec)
{
	(void)rec;
	((struct counts *)arg)->retained++;
	return 0;
}

static const struct cairn_store_visitor count_visitor = {
    .session = count_session,
    .subscription = count_sub,
    .message = count_message,
    .delivery = count_delivery,
    .inflight_in = count_inflight_in,
    .retained = count_retained,
};

static uint64_t counts_total(const struct counts *c)
{
	return c->sessions + c->subs + c->queued + c->inflight + c->messages + c->inflight_in +
	       c->retained;
}

/* drops: where the per-session drop lines go, or NULL. */
static int load_counts(struct store *s, const struct spec *sp, struct counts *c, FILE *drops)
{
	struct cairn_store_visitor v = count_visitor;
	int rc;

	memset(c, 0, sizeof(*c));
	c->drops = drops;
	v.arg = c;
	rc = store_load(s, &v);
	if (rc != 0) {
		fprintf(stderr, TOOL ": %s: cannot read: %s\n", sp->text, cairn_strerror(rc));
		return -1;
	}
	return 0;
}

static void print_counts(FILE *out, const struct counts *c)
{
	fprintf(out,
		"sessions %" PRIu64 "\nsubscriptions %" PRIu64 "\nqueued %" PRIu64
		"\ninflight %" PRIu64 "\nmessages %" PRIu64 "\ninflight_in %" PRIu64
		"\nretained %" PRIu64 "\ndropped %" PRIu64 "\n",
		c->sessions, c->subs, c->queued, c->inflight, c->messages, c->inflight_in,
		c->retained, c->dropped);
}

/* ---- dump ---- */

/* Length of the well-formed UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* A JSON string: quotes, backslashes and control characters escaped,
 * UTF-8 passed through, and any byte that is not UTF-8 written as U+FFFD
 * so that every line stays valid JSON. NULL is written as null. */
static void json_str(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n;

	if (str == NULL) {
		fputs("null", out);
		return;
	}
	n = strlen(str);
	putc('"', out);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t l;

		switch (c) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\b':
			fputs("\\b", out);
			break;
		case '\f':
			fputs("\\f", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		default:
			if (c < 0x20) {
				fprintf(out, "\\u%04x", c);
				break;
			}
			l = utf8_len(s + i, n - i);
			if (l == 0) {
				fputs("\\ufffd", out);
				i++;
				continue;
			}
			fwrite(s + i, 1, l, out);
			i += l;
			continue;
		}
		i++;
	}
	putc('"', out);
}

static void json_base64(FILE *out, const uint8_t *p, uint32_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t i;

	putc('"', out);
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		putc(tab[v >> 18], out);
		putc(tab[(v >> 12) & 63], out);
		putc(tab[(v >> 6) & 63], out);
		putc(tab[v & 63], out);
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		putc(tab[v >> 18], out);
		putc(tab[(v >> 12) & 63], out);
		fputs("==", out);
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		putc(tab[v >> 18], out);
		putc(tab[(v >> 12) & 63], out);
		putc(tab[(v >> 6) & 63], out);
		putc('=', out);
	}
	putc('"', out);
}

static const char *bool_str(bool b)
{
	return b ? "true" : "false";
}

static const char *state_str(uint8_t state)
{
	switch (state) {
	case CAIRN_DELIVERY_QUEUED:
		return "queued";
	case CAIRN_DELIVERY_SENT:
		return "sent";
	case CAIRN_DELIVERY_PUBREC:
		return "pubrec";
	default:
		return "unknown";
	}
}

static int dump_session(void *arg, const struct cairn_session_rec *rec)
{
	FILE *out = arg;

	fputs("{\"type\":\"session\",\"client_id\":", out);
	json_str(out, rec->client_id);
	fputs(",\"username\":", out);
	json_str(out, rec->username);
	fprintf(out, ",\"next_packet_id\":%u,\"connected\":%s,\"dropped\":%" PRIu64 ",\"will\":",
		rec->next_packet_id, bool_str(rec->connected), rec->dropped);
	if (rec->has_will) {
		fputs("{\"topic\":", out);
		json_str(out, rec->will_topic);
		fputs(",\"payload\":", out);
		json_base64(out, rec->will_payload, rec->will_payload_len);
		fprintf(out, ",\"qos\":%u,\"retain\":%s,\"props\":", rec->will_qos,
			bool_str(rec->will_retain));
		json_base64(out, rec->will_props, rec->will_props_len);
		putc('}', out);
	} else {
		fputs("null", out);
	}
	fprintf(out,
		",\"protocol_level\":%u,\"expiry_interval\":%" PRIu32 ",\"expires_at\":%" PRId64
		",\"will_delay\":%" PRIu32 ",\"will_at\":%" PRId64 "}\n",
		rec->protocol_level, rec->expiry_interval, rec->expires_at, rec->will_delay,
		rec->will_at);
	return 0;
}

static int dump_sub(void *arg, const struct cairn_sub_rec *rec)
{
	FILE *out = arg;

	fputs("{\"type\":\"subscription\",\"client_id\":", out);
	json_str(out, rec->client_id);
	fputs(",\"filter\":", out);
	json_str(out, rec->filter);
	fprintf(out, ",\"qos\":%u,\"options\":%u,\"sub_id\":%" PRIu32 "}\n", rec->qos, rec->options,
		rec->sub_id);
	return 0;
}

static void dump_msg(FILE *out, const char *type, const struct cairn_msg_rec *rec)
{
	fprintf(out, "{\"type\":\"%s\",\"msg_id\":%" PRIu64 ",\"topic\":", type, rec->msg_id);
	json_str(out, rec->topic);
	fputs(",\"payload\":", out);
	json_base64(out, rec->payload, rec->payload_len);
	fprintf(out, ",\"qos\":%u,\"retain\":%s,\"expires_at\":%" PRId64 ",\"props\":", rec->qos,
		bool_str(rec->retain), rec->expires_at);
	json_base64(out, rec->props, rec->props_len);
	fputs("}\n", out);
}

static int dump_message(void *arg, const struct cairn_msg_rec *rec)
{
	dump_msg(arg, "message", rec);
	return 0;
}

static int dump_retained(void *arg, const struct cairn_msg_rec *rec)
{
	dump_msg(arg, "retained", rec);
	return 0;
}

static int dump_delivery(void *arg, const struct cairn_delivery_rec *rec)
{
	FILE *out = arg;

	fputs("{\"type\":\"delivery\",\"client_id\":", out);
	json_str(out, rec->client_id);
	fprintf(out,
		",\"seq\":%" PRIu64 ",\"msg_id\":%" PRIu64
		",\"packet_id\":%u,\"qos\":%u,\"state\":\"%s\",\"retain\":%s,\"sub_ids\":[",
		rec->seq, rec->msg_id, rec->packet_id, rec->qos, state_str(rec->state),
		bool_str(rec->retain));
	for (uint32_t i = 0; i < rec->n_sub_ids; i++)
		fprintf(out, "%s%" PRIu32, i > 0 ? "," : "", rec->sub_ids[i]);
	fputs("]}\n", out);
	return 0;
}

static int dump_inflight_in(void *arg, const struct cairn_inflight_in_rec *rec)
{
	FILE *out = arg;

	fputs("{\"type\":\"inflight_in\",\"client_id\":", out);
	json_str(out, rec->client_id);
	fprintf(out, ",\"packet_id\":%u}\n", rec->packet_id);
	return 0;
}

/* ---- progress ---- */

/* How often the progress line on a terminal is redrawn, in seconds. */
#define PROGRESS_INTERVAL 0.25

/* One line on stderr, redrawn in place ("\r", then erase to the end of
 * the line); the final one ends with a newline. */
static void tool_progress(void *arg, const struct progress *p, bool final)
{
	char line[400];

	progress_format(p, line, sizeof(line));
	fprintf(stderr, "\r" TOOL ": %s: %s\033[K%s", (const char *)arg, line, final ? "\n" : "");
	fflush(stderr);
}

/*
 * store_load with a progress line on stderr when stderr is a terminal and
 * tty_out allows (dump: not when its records go to the same terminal);
 * nothing is written otherwise, so logs and pipes stay clean.
 */
static int load_with_progress(struct store *s, const struct cairn_store_visitor *v,
			      const char *what, bool tty_out)
{
	struct progress prog;
	struct cairn_store_visitor pv;
	int rc;

	if (!isatty(STDERR_FILENO) || !tty_out)
		return store_load(s, v);
	pv = progress_init(&prog, v, PROGRESS_INTERVAL, tool_progress, (void *)what);
	rc = store_load(s, &pv);
	progress_finish(&prog);
	return rc;
}

/* ---- copy ---- */

struct copy {
	struct store *to;
	size_t batch;
	size_t staged;
	struct counts n;
	bool write_failed; /* the error came from the target */
};

/* Note one staged write; commit the batch once it is full. */
static int copy_staged(struct copy *cp, int rc)
{
	if (rc != 0) {
		cp->write_failed = true;
		return rc;
	}
	if (++cp->staged >= cp->batch) {
		cp->staged = 0;
		rc = store_flush(cp->to);
		if (rc != 0)
			cp->write_failed = true;
	}
	return rc;
}

static int copy_session(void *arg, const struct cairn_session_rec *rec)
{
	struct copy *cp = arg;

	cp->n.sessions++;
	cp->n.dropped += rec->dropped;
	return copy_staged(cp, store_session_put(cp->to, rec));
}

static int copy_sub(void *arg, const struct cairn_sub_rec *rec)
{
	struct copy *cp = arg;

	cp->n.subs++;
	return copy_staged(cp, store_sub_put(cp->to, rec));
}

static int copy_message(void *arg, const struct cairn_msg_rec *rec)
{
	struct copy *cp = arg;

	cp->n.messages++;
	return copy_staged(cp, store_message_put(cp->to, rec));
}

static int copy_delivery(void *arg, const struct cairn_delivery_rec *rec)
{
	struct copy *cp = arg;

	if (rec->state == CAIRN_DELIVERY_QUEUED)
		cp->n.queued++;
	else
		cp->n.inflight++;
	return copy_staged(cp, store_delivery_put(cp->to, rec));
}

static int copy_inflight_in(void *arg, const struct cairn_inflight_in_rec *rec)
{
	struct copy *cp = arg;

	cp->n.inflight_in++;
	return copy_staged(cp, store_inflight_in_put(cp->to, rec));
}

static int copy_retained(void *arg, const struct cairn_msg_rec *rec)
{
	struct copy *cp = arg;

	cp->n.retained++;
	return copy_staged(cp, store_retained_put(cp->to, rec));
}

/* The keys of every record in a store, collected to empty it (--force):
 * records cannot be deleted from inside the load that reports them. */
struct keys {
	struct key {
		int kind;
		char *a;
		uint64_t n;
	} * v;
	size_t len, cap;
};

enum { K_SESSION, K_SUB, K_MESSAGE, K_DELIVERY, K_INFLIGHT_IN, K_RETAINED };

static int keys_add(struct keys *k, int kind, const char *a, uint64_t n)
{
	if (k->len == k->cap) {
		k->cap = k->cap ? k->cap * 2 : 256;
		k->v = xrealloc(k->v, k->cap * sizeof(*k->v));
	}
	k->v[k->len].kind = kind;
	k->v[k->len].a = a != NULL ? xstrdup(a) : NULL;
	k->v[k->len].n = n;
	k->len++;
	return 0;
}

static void keys_cleanup(struct keys *k)
{
	for (size_t i = 0; i < k->len; i++)
		free(k->v[i].a);
	free(k->v);
}

static int key_session(void *arg, const struct cairn_session_rec *rec)
{
	return keys_add(arg, K_SESSION, rec->client_id, 0);
}

/* A subscription key is client_id NUL filter, kept in one allocation. */
static int key_sub(void *arg, const struct cairn_sub_rec *rec)
{
	struct keys *k = arg;
	size_t a = strlen(rec->client_id), f = strlen(rec->filter);
	char *buf = xmalloc(a + f + 2);

	memcpy(buf, rec->client_id, a + 1);
	memcpy(buf + a + 1, rec->filter, f + 1);
	keys_add(k, K_SUB, NULL, 0);
	k->v[k->len - 1].a = buf;
	return 0;
}

static int key_message(void *arg, const struct cairn_msg_rec *rec)
{
	return keys_add(arg, K_MESSAGE, NULL, rec->msg_id);
}

static int key_delivery(void *arg, const struct cairn_delivery_rec *rec)
{
	return keys_add(arg, K_DELIVERY, rec->client_id, rec->seq);
}

static int key_inflight_in(void *arg, const struct cairn_inflight_in_rec *rec)
{
	return keys_add(arg, K_INFLIGHT_IN, rec->client_id, rec->packet_id);
}

static int key_retained(void *arg, const struct cairn_msg_rec *rec)
{
	return keys_add(arg, K_RETAINED, rec->topic, 0);
}

/* Delete every record of s, dependants before what they depend on. */
static int store_empty(struct store *s, const struct spec *sp, size_t batch)
{
	struct cairn_store_visitor v = {
	    .session = key_session,
	    .subscription = key_sub,
	    .message = key_message,
	    .delivery = key_delivery,
	    .inflight_in = key_inflight_in,
	    .retained = key_retained,
	};
	struct keys k = {0};
	size_t staged = 0;
	int rc;

	v.arg = &k;
	rc = store_load(s, &v);
	if (rc != 0) {
		fprintf(stderr, TOOL ": %s: cannot read: %s\n", sp->text, cairn_strerror(rc));
		goto out;
	}
	/* Loaded in vtable order; deleting in reverse removes deliveries
	 * before their messages and sessions last. */
	for (size_t i = k.len; i-- > 0 && rc == 0;) {
		const struct key *e = &k.v[i];

		switch (e->kind) {
		case K_SESSION:
			rc = store_session_delete(s, e->a);
			break;
		case K_SUB:
			rc = store_sub_delete(s, e->a, e->a + strlen(e->a) + 1);
			break;
		case K_MESSAGE:
			rc = store_message_delete(s, e->n);
			break;
		case K_DELIVERY:
			rc = store_delivery_delete(s, e->a, e->n);
			break;
		case K_INFLIGHT_IN:
			rc = store_inflight_in_delete(s, e->a, (uint16_t)e->n);
			break;
		default:
			rc = store_retained_delete(s, e->a);
			break;
		}
		if (rc == 0 && ++staged >= batch) {
			staged = 0;
			rc = store_flush(s);
		}
	}
	if (rc == 0)
		rc = store_flush(s);
	if (rc != 0)
		fprintf(stderr, TOOL ": %s: cannot empty the store: %s\n", sp->text,
			cairn_strerror(rc));
out:
	keys_cleanup(&k);
	return rc != 0 ? -1 : 0;
}

static int cmd_copy(struct spec *from, struct spec *to, bool force, size_t batch,
		    struct event_base *base)
{
	struct store *src = NULL, *dst = NULL;
	struct cairn_store_visitor v = {
	    .session = copy_session,
	    .subscription = copy_sub,
	    .message = copy_message,
	    .delivery = copy_delivery,
	    .inflight_in = copy_inflight_in,
	    .retained = copy_retained,
	};
	struct copy cp = {.batch = batch};
	struct counts have, after;
	int rc, status = EXIT_STORE;

	if (spec_same(from, to)) {
		fprintf(stderr, TOOL ": %s and %s are the same store\n", from->text, to->text);
		return EXIT_USAGE;
	}
	if (tool_open(from, base, false, &src) != 0 || tool_open(to, base, true, &dst) != 0)
		goto out;
	if (load_counts(dst, to, &have, NULL) != 0)
		goto out;
	if (counts_total(&have) > 0) {
		if (!force) {
			fprintf(stderr,
				TOOL ": %s is not empty (%" PRIu64 " records); refusing to copy "
				     "into it without --force\n",
				to->text, counts_total(&have));
			goto out;
		}
		if (store_empty(dst, to, batch) != 0)
			goto out;
	}

	cp.to = dst;
	v.arg = &cp;
	rc = load_with_progress(src, &v, "copy", true);
	if (rc == 0) {
		rc = store_flush(dst);
		cp.write_failed = rc != 0;
	}
	if (rc != 0) {
		fprintf(stderr, TOOL ": %s: cannot %s: %s\n",
			cp.write_failed ? to->text : from->text, cp.write_failed ? "write" : "read",
			cairn_strerror(rc));
		goto out;
	}

	/* Read the copy back: a record the target did not keep is a failed
	 * copy, whatever the commits reported. */
	if (load_counts(dst, to, &after, NULL) != 0)
		goto out;
	if (memcmp(&after, &cp.n, sizeof(after)) != 0) {
		fprintf(stderr, TOOL ": %s does not read back what was copied; copied:\n",
			to->text);
		print_counts(stderr, &cp.n);
		fprintf(stderr, "read back:\n");
		print_counts(stderr, &after);
		goto out;
	}
	printf("copied %" PRIu64 " records from %s to %s\n", counts_total(&cp.n), from->text,
	       to->text);
	print_counts(stdout, &cp.n);
	status = 0;
out:
	/* After a failure the batches already committed stay in the target:
	 * the man page tells the operator to copy again with --force. */
	if (src != NULL)
		store_close(src);
	if (dst != NULL)
		store_close(dst);
	return status;
}

static int cmd_read(const char *cmd, struct spec *sp, struct event_base *base)
{
	struct store *s = NULL;
	struct counts c;
	int status = EXIT_STORE, rc;

	if (tool_open(sp, base, false, &s) != 0)
		return EXIT_STORE;
	if (strcmp(cmd, "stats") == 0) {
		char *drops = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&drops, &len);

		if (f == NULL || load_counts(s, sp, &c, f) != 0) {
			if (f != NULL)
				fclose(f);
			free(drops);
			goto out;
		}
		fclose(f);
		print_counts(stdout, &c);
		fputs(drops, stdout);
		free(drops);
	} else {
		struct cairn_store_visitor v = {
		    .arg = stdout,
		    .session = dump_session,
		    .subscription = dump_sub,
		    .message = dump_message,
		    .delivery = dump_delivery,
		    .inflight_in = dump_inflight_in,
		    .retained = dump_retained,
		};

		rc = load_with_progress(s, &v, "dump", !isatty(STDOUT_FILENO));
		if (rc != 0) {
			fprintf(stderr, TOOL ": %s: cannot read: %s\n", sp->text,
				cairn_strerror(rc));
			goto out;
		}
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, TOOL ": writing the output: %s\n", strerror(errno));
		goto out;
	}
	status = 0;
out:
	store_close(s);
	return status;
}

int main(int argc, char **argv)
{
	const char *pos[3];
	size_t npos = 0, batch = COPY_BATCH_DEFAULT;
	bool force = false, batch_given = false;
	struct spec a = {0}, b = {0};
	struct event_base *base;
	char err[512];
	int status;

	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(s, "--force") == 0 || strcmp(s, "-f") == 0) {
			force = true;
		} else if (strcmp(s, "--batch") == 0) {
			char *end;
			unsigned long v;

			if (i + 1 == argc)
				die_usage("--batch needs a number");
			errno = 0;
			v = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || v == 0 || v > 1000000 ||
			    argv[i][0] == '-')
				die_usage("--batch: want 1 to 1000000, got '%s'", argv[i]);
			batch = v;
			batch_given = true;
		} else if (s[0] == '-' && s[1] != '\0') {
			die_usage("unknown option '%s'", s);
		} else if (npos == 3) {
			die_usage("too many arguments");
		} else {
			pos[npos++] = s;
		}
	}
	if (npos == 0)
		die_usage("no command");
	if (strcmp(pos[0], "stats") == 0 || strcmp(pos[0], "dump") == 0) {
		if (npos != 2)
			die_usage("%s takes one STORE", pos[0]);
		if (force || batch_given)
			die_usage("%s is for copy", force ? "--force" : "--batch");
	} else if (strcmp(pos[0], "copy") == 0) {
		if (npos != 3)
			die_usage("copy takes FROM and TO");
	} else {
		die_usage("unknown command '%s'", pos[0]);
	}
	if (spec_parse(&a, pos[1], err, sizeof(err)) != 0 ||
	    (npos == 3 && spec_parse(&b, pos[2], err, sizeof(err)) != 0)) {
		spec_cleanup(&a);
		spec_cleanup(&b);
		die_usage("%s", err);
	}

	base = event_base_new();
	if (base == NULL) {
		fprintf(stderr, TOOL ": cannot create an event loop\n");
		return EXIT_STORE;
	}
	if (npos == 3)
		status = cmd_copy(&a, &b, force, batch, base);
	else
		status = cmd_read(pos[0], &a, base);
	event_base_free(base);
	spec_cleanup(&a);
	spec_cleanup(&b);
	return status;
}
