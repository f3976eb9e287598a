/*
 * Running as a service: the service manager's notifications (systemd's
 * sd_notify when built with libsystemd), the watchdog fed from the event
 * loop, -d (daemon), pid_file and the drop to the configured user.
 */
#ifndef CAIRN_SERVICE_H
#define CAIRN_SERVICE_H

#include <stdbool.h>

#include "log.h"

struct event;
struct event_base;

struct service {
	struct log *log;
	struct event *watchdog; /* WATCHDOG=1 every half interval, or NULL */
	char *pid_file;         /* written by service_write_pid; removed at cleanup */
	int ready_fd;           /* -d: the pipe the waiting parent reads; else -1 */
	char *user;             /* service_user_prepare's user, until the drop */
	unsigned long uid, gid;
};

/* Prepare svc (nothing is sent yet). */
void service_init(struct service *svc);

/*
 * -d: detach from the terminal (fork, setsid, fork). The first process
 * waits until the daemon calls service_ready (it then exits 0) or dies
 * before that (it exits 1), so "cairn -d" returns once the broker serves.
 * stdin goes to /dev/null, and so do stdout and stderr unless the log
 * is written there (keep_stdout, keep_stderr). The working directory
 * stays, so relative paths in the config mean the same.
 * Returns 0 in the daemon, -1 (with a message on stderr) when it could not
 * fork; never returns in the first process.
 */
int service_daemonize(struct service *svc, bool keep_stdout, bool keep_stderr);

/* Tell the service manager a status line (STATUS=...); nothing without
 * libsystemd or NOTIFY_SOCKET. */
void service_status(struct service *svc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * The broker serves: READY=1 with status, the watchdog timer started when
 * the manager asked for one (WATCHDOG_USEC), and the -d parent released.
 * base is the broker's loop, which feeds the watchdog: a loop that stops
 * turning stops feeding it.
 */
void service_ready(struct service *svc, struct event_base *base, struct log *lg,
		   const char *status);

/*
 * A long start-up (the restore of a large store) is progressing: a status
 * line, a watchdog ping and ten more seconds of start-up timeout
 * (EXTEND_TIMEOUT_USEC), so systemd waits for a restore that advances and
 * not for one that is stuck. Needs no struct service: the restore runs
 * before the broker has one to hand.
 */
void service_progress(const char *status);

/* Around a reload (SIGHUP): RELOADING=1 before, READY=1 after. */
void service_reloading(struct service *svc);
void service_reloaded(struct service *svc);

/* Shutdown has begun: STOPPING=1; the watchdog stops. */
void service_stopping(struct service *svc);

/*
 * Write the pid file (the pid and a newline, replacing what was there).
 * Returns 0, or -1 after logging why.
 */
int service_write_pid(struct service *svc, struct log *lg, const char *path);

/*
 * When running as root with user set (and not "root"): look the user up,
 * take its supplementary groups, and reach files with its rights from now
 * on (setfsuid, setfsgid: the store's files are created as the user and
 * must be readable and writable by it, as they must for every later
 * start), while the effective ids stay root's, so listeners may still
 * bind ports below 1024. Without user, when root, logs a warning. Does
 * nothing when not root. Returns 0, or -1 after logging why (unknown
 * user, a failed call).
 */
int service_user_prepare(struct service *svc, struct log *lg, const char *user);

/*
 * Become the prepared user for good (setgid, setuid: every id, in every
 * thread), after the listeners are open. Does nothing when
 * service_user_prepare had nothing to do. Returns 0, or -1 after logging
 * why: the broker must then not go on as root.
 */
int service_drop_privileges(struct service *svc, struct log *lg);

/* Remove the pid file, stop the watchdog, close the -d pipe. */
void service_cleanup(struct service *svc);

#endif
