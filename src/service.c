/*
 * Running as a service: systemd's notifications and watchdog (through
 * libsystemd's sd_notify, when configure found it), -d, pid_file and the
 * drop to the configured user. Without libsystemd, or outside systemd (no
 * NOTIFY_SOCKET), every notification is a no-op and the broker runs the same.
 */
#include "service.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CAIRN_ASAN_CLANG 1
#endif
#endif

#include "util.h"

void service_init(struct service *svc)
{
	memset(svc, 0, sizeof(*svc));
	svc->ready_fd = -1;
}

/* One notification; the caller's string is a "KEY=value" list, one a line. */
static void service_notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
	/* 0: NOTIFY_SOCKET is left in the environment for later calls. */
	(void)sd_notify(0, state);
#else
	(void)state;
#endif
}

void service_status(struct service *svc, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "STATUS=");

	(void)svc;
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	service_notify(buf);
}

void service_progress(const char *status)
{
	char buf[600];

	snprintf(buf, sizeof(buf), "WATCHDOG=1\nEXTEND_TIMEOUT_USEC=10000000\nSTATUS=%s", status);
	service_notify(buf);
}

int service_daemonize(struct service *svc, bool keep_stdout, bool keep_stderr)
{
	int fds[2], null;
	pid_t pid;

	if (pipe(fds) != 0) {
		fprintf(stderr, "cairn: -d: pipe: %s\n", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "cairn: -d: fork: %s\n", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid > 0) {
		/* The first process: wait for the daemon to serve, or to die
		 * (end of file: every write end is closed). */
		char b;
		ssize_t n;

		close(fds[1]);
		do
			n = read(fds[0], &b, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 ? 0 : 1);
	}
	close(fds[0]);
	if (setsid() < 0)
		_exit(1);
	/* The second fork: the daemon is no session leader, so no terminal it
	 * opens can become its controlling terminal. */
	pid = fork();
	if (pid < 0)
		_exit(1);
	if (pid > 0)
		_exit(0);
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		if (!keep_stdout)
			dup2(null, STDOUT_FILENO);
		if (!keep_stderr)
			dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	svc->ready_fd = fds[1];
	return 0;
}

#ifdef HAVE_LIBSYSTEMD
static void service_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	service_notify("WATCHDOG=1");
}
#endif

void service_ready(struct service *svc, struct event_base *base, struct log *lg, const char *status)
{
	char buf[600];

	svc->log = lg;
	snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s", status);
	service_notify(buf);
#ifdef HAVE_LIBSYSTEMD
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		/* Half the interval, so one late turn of a busy loop is no
		 * restart; a loop stuck for the whole interval is. */
		struct timeval tv = {.tv_sec = (time_t)(usec / 2 / 1000000),
				     .tv_usec = (suseconds_t)(usec / 2 % 1000000)};
		svc->watchdog = event_new(base, -1, EV_PERSIST, service_watchdog_cb, svc);
		event_add(svc->watchdog, &tv);
		service_notify("WATCHDOG=1");
		log_write(lg, LOG_LEVEL_INFO, "systemd watchdog: every %.3f s from the event loop",
			  (double)usec / 2e6);
	}
#endif
	if (svc->ready_fd >= 0) {
		ssize_t n;
		do
			n = write(svc->ready_fd, "r", 1);
		while (n < 0 && errno == EINTR);
		close(svc->ready_fd);
		svc->ready_fd = -1;
	}
}

void service_reloading(struct service *svc)
{
	(void)svc;
	service_notify("RELOADING=1\nSTATUS=reloading (SIGHUP)");
}

void service_reloaded(struct service *svc)
{
	(void)svc;
	service_notify("READY=1\nSTATUS=serving");
}

void service_stopping(struct service *svc)
{
	service_notify("STOPPING=1\nSTATUS=shutting down");
	if (svc->watchdog) {
		event_free(svc->watchdog);
		svc->watchdog = NULL;
	}
}

int service_write_pid(struct service *svc, struct log *lg, const char *path)
{
	FILE *f = fopen(path, "w");

	svc->log = lg;
	if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "pid_file %s: %s", path, strerror(errno));
		if (f)
			(void)unlink(path);
		return -1;
	}
	svc->pid_file = xstrdup(path);
	return 0;
}

int service_user_prepare(struct service *svc, struct log *lg, const char *user)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if (!user) {
		log_write(lg, LOG_LEVEL_WARNING,
			  "running as root: set user in the config to drop privileges");
		return 0;
	}
	if (strcmp(user, "root") == 0)
		return 0;
	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		log_write(lg, LOG_LEVEL_ERROR, "user %s: %s", user,
			  errno ? strerror(errno) : "no such user");
		return -1;
	}
	svc->user = xstrdup(pw->pw_name);
	svc->uid = pw->pw_uid;
	svc->gid = pw->pw_gid;
	/* Groups first: after the drop the process may no longer change them.
	 * setfsuid and setfsgid return the previous id, never an error: the
	 * second call of each tells whether it took. */
	if (initgroups(svc->user, (gid_t)svc->gid) != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "user %s: cannot take its groups: %s", svc->user,
			  strerror(errno));
		return -1;
	}
	setfsgid((gid_t)svc->gid);
	setfsuid((uid_t)svc->uid);
	if ((unsigned long)setfsgid((gid_t)-1) != svc->gid ||
	    (unsigned long)setfsuid((uid_t)-1) != svc->uid) {
		log_write(lg, LOG_LEVEL_ERROR, "user %s: cannot reach files with its rights",
			  svc->user);
		return -1;
	}
	return 0;
}

int service_drop_privileges(struct service *svc, struct log *lg)
{
	if (!svc->user)
		return 0;
	if (setgid((gid_t)svc->gid) != 0 || setuid((uid_t)svc->uid) != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "cannot become user %s: %s", svc->user,
			  strerror(errno));
		return -1;
	}
	if (svc->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		log_write(lg, LOG_LEVEL_ERROR, "user %s: root could be regained", svc->user);
		return -1;
	}
#if defined(__SANITIZE_ADDRESS__) || defined(CAIRN_ASAN_CLANG)
	/* setuid made the process non-dumpable, and LeakSanitizer reads the
	 * threads at exit through ptrace, which that forbids. Sanitizer
	 * builds only: a production broker stays non-dumpable. */
	(void)prctl(PR_SET_DUMPABLE, 1);
#endif
	log_write(lg, LOG_LEVEL_NOTICE, "running as user %s (uid %lu, gid %lu)", svc->user,
		  svc->uid, svc->gid);
	free(svc->user);
	svc->user = NULL;
	return 0;
}

void service_cleanup(struct service *svc)
{
	if (svc->watchdog)
		event_free(svc->watchdog);
	if (svc->pid_file) {
		if (unlink(svc->pid_file) != 0 && errno != ENOENT && svc->log)
			log_write(svc->log, LOG_LEVEL_WARNING, "pid_file %s: cannot remove it: %s",
				  svc->pid_file, strerror(errno));
		free(svc->pid_file);
	}
	if (svc->ready_fd >= 0)
		close(svc->ready_fd);
	free(svc->user);
	memset(svc, 0, sizeof(*svc));
	svc->ready_fd = -1;
}
