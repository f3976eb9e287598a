/*
 * Logging: timestamped lines with a level, to stderr, a file, or syslog,
 * filtered by log_type. One struct log lives in the server.
 */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <stdarg.h>
#include <stdio.h>

enum log_level {
	LOG_LEVEL_ERROR = 1 << 0,
	LOG_LEVEL_WARNING = 1 << 1,
	LOG_LEVEL_NOTICE = 1 << 2,
	LOG_LEVEL_INFO = 1 << 3,
	LOG_LEVEL_DEBUG = 1 << 4
};

#define LOG_LEVEL_DEFAULT_MASK                                                                     \
	(LOG_LEVEL_ERROR | LOG_LEVEL_WARNING | LOG_LEVEL_NOTICE | LOG_LEVEL_INFO)

enum log_dest_kind {
	LOG_DEST_STDERR = 1,
	LOG_DEST_STDOUT = 2,
	LOG_DEST_FILE = 4,
	LOG_DEST_SYSLOG = 8,
	LOG_DEST_NONE = 16
};

struct log {
	int mask;   /* enum log_level bits that are written */
	int dests;  /* enum log_dest_kind bits */
	char *path; /* for LOG_DEST_FILE; owned: log_cleanup frees it */
	FILE *file; /* open file for LOG_DEST_FILE */
};

/* Set defaults: stderr, LOG_LEVEL_DEFAULT_MASK. */
void log_init(struct log *lg);
/* Open the file destination if any. Returns 0 or -errno. */
int log_open(struct log *lg);
/* Close and reopen the file (SIGHUP, after log rotation). */
int log_reopen(struct log *lg);
void log_cleanup(struct log *lg);

void log_write(struct log *lg, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(struct log *lg, enum log_level level, const char *fmt, va_list ap);

/* Parse a log_type value ("error", "warning", "notice", "information",
 * "debug", "all", "none") into a level mask. Returns -1 if unknown. */
int log_type_parse(const char *name);

#endif
