/*
 * Logging: one timestamped line per message ("2026-11-25T23:59:01.123Z
 * notice: text", UTC), written to every configured destination, filtered
 * by the log_type mask. Reopening the file supports log rotation.
 */
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "util.h"

#define LOG_LEVEL_ALL                                                                              \
	(LOG_LEVEL_ERROR | LOG_LEVEL_WARNING | LOG_LEVEL_NOTICE | LOG_LEVEL_INFO | LOG_LEVEL_DEBUG)

static const struct {
	const char *name;
	int mask;
} log_type_names[] = {
    {"error", LOG_LEVEL_ERROR},
    {"warning", LOG_LEVEL_WARNING},
    {"notice", LOG_LEVEL_NOTICE},
    {"information", LOG_LEVEL_INFO},
    {"debug", LOG_LEVEL_DEBUG},
    {"all", LOG_LEVEL_ALL},
    {"none", 0},
};

static const char *level_word(enum log_level level)
{
	if (level & LOG_LEVEL_ERROR)
		return "error";
	if (level & LOG_LEVEL_WARNING)
		return "warning";
	if (level & LOG_LEVEL_NOTICE)
		return "notice";
	if (level & LOG_LEVEL_INFO)
		return "info";
	return "debug";
}

static int syslog_priority(enum log_level level)
{
	if (level & LOG_LEVEL_ERROR)
		return LOG_ERR;
	if (level & LOG_LEVEL_WARNING)
		return LOG_WARNING;
	if (level & LOG_LEVEL_NOTICE)
		return LOG_NOTICE;
	if (level & LOG_LEVEL_INFO)
		return LOG_INFO;
	return LOG_DEBUG;
}

void log_init(struct log *lg)
{
	lg->mask = LOG_LEVEL_DEFAULT_MASK;
	lg->dests = LOG_DEST_STDERR;
	lg->path = NULL;
	lg->file = NULL;
}

int log_open(struct log *lg)
{
	if ((lg->dests & LOG_DEST_SYSLOG) && !(lg->dests & LOG_DEST_NONE))
		openlog("cairn", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	if (!(lg->dests & LOG_DEST_FILE) || lg->path == NULL || lg->file != NULL)
		return 0;
	lg->file = fopen(lg->path, "a");
	if (lg->file == NULL)
		return -errno;
	/* One line per write, so a crash loses nothing already logged and
	 * "tail -f" sees every line as it happens. */
	setvbuf(lg->file, NULL, _IOLBF, 0);
	return 0;
}

int log_reopen(struct log *lg)
{
	if (lg->file) {
		fclose(lg->file);
		lg->file = NULL;
	}
	return log_open(lg);
}

void log_cleanup(struct log *lg)
{
	if (lg->file)
		fclose(lg->file);
	if (lg->dests & LOG_DEST_SYSLOG)
		closelog();
	free(lg->path);
	lg->path = NULL;
	lg->file = NULL;
}

/* A copy of msg with every control character written as \xHH, or NULL
 * when it has none (the usual case costs one scan). */
static char *log_escape_controls(const char *msg)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, len = 0;
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++, len++)
		n += *p < 0x20 || *p == 0x7f;
	if (n == 0)
		return NULL;
	char *out = xmalloc(len + 3 * n + 1), *o = out;
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		} else {
			*o++ = (char)*p;
		}
	}
	*o = '\0';
	return out;
}

void log_vwrite(struct log *lg, enum log_level level, const char *fmt, va_list ap)
{
	char stamp[40], buf[1024];
	char *msg = buf;
	struct timespec ts;
	struct tm tm;
	va_list ap2;
	int n;

	if (!(lg->mask & (int)level) || (lg->dests & LOG_DEST_NONE))
		return;

	va_copy(ap2, ap);
	n = vsnprintf(buf, sizeof(buf), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(buf)) {
		msg = xmalloc((size_t)n + 1);
		va_copy(ap2, ap);
		vsnprintf(msg, (size_t)n + 1, fmt, ap2);
		va_end(ap2);
	}

	/* Client ids, usernames, topics and certificate names reach log lines;
	 * a newline in one would forge a line of its own. */
	char *clean = log_escape_controls(msg);
	if (clean) {
		if (msg != buf)
			free(msg);
		msg = clean;
	}

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = (int)strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - (size_t)n, ".%03ldZ", ts.tv_nsec / 1000000L);

	if (lg->dests & LOG_DEST_STDERR)
		fprintf(stderr, "%s %s: %s\n", stamp, level_word(level), msg);
	if (lg->dests & LOG_DEST_STDOUT) {
		fprintf(stdout, "%s %s: %s\n", stamp, level_word(level), msg);
		fflush(stdout);
	}
	if (lg->dests & LOG_DEST_FILE) {
		/* Until the file is open (or after a failed reopen) the line goes
		 * to stderr rather than nowhere. */
		FILE *f = lg->file ? lg->file : stderr;

		if (!(f == stderr && (lg->dests & LOG_DEST_STDERR)))
			fprintf(f, "%s %s: %s\n", stamp, level_word(level), msg);
	}
	if (lg->dests & LOG_DEST_SYSLOG)
		syslog(syslog_priority(level), "%s", msg);

	if (msg != buf)
		free(msg);
}

void log_write(struct log *lg, enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(lg, level, fmt, ap);
	va_end(ap);
}

int log_type_parse(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(log_type_names) / sizeof(log_type_names[0]); i++) {
		if (strcmp(name, log_type_names[i].name) == 0)
			return log_type_names[i].mask;
	}
	return -1;
}
