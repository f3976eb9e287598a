/*
 * Stateful network fuzzer: drives a real cairn process over loopback with
 * the seed sessions of tests/corpus/net/, mutated, on several connections at
 * once, with session takeovers, abrupt closes and restarts of the broker on
 * a persistent store, and checks after every iteration that the broker is
 * alive and still delivers. Usage: tests/fuzz_net --help.
 *
 * Every input is drawn from one seed (printed at start; --seed N draws the
 * same inputs again). What the broker sends back, and so the timing, is not
 * under the fuzzer's control: a finding is kept with the inputs of every
 * iteration since the store was last emptied (inputs.txt; every 1000
 * iterations the store starts empty again), which --replay plays again in
 * order.
 */
#include "fuzz_net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_LINGER       6
#define ITER_LIMIT_MS    1500
#define CHECK_TIMEOUT_MS 10000
#define START_TIMEOUT_MS 60000
#define STOP_TIMEOUT_MS  60000
#ifndef EPOCH_ITERATIONS
#define EPOCH_ITERATIONS 1000 /* -DEPOCH_ITERATIONS=N to try epochs quickly */
#endif

/*
 * SIGINT or SIGTERM to the fuzzer (Ctrl-C in ./dev fuzz) ends the run: the
 * broker and redis-server it started are stopped and nothing is reported
 * (a terminal's SIGINT reaches the broker too, and its exit is no finding).
 */
static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	interrupted = sig;
}

/* ---- processes we start: the broker, and redis-server ---- */

struct fuzz {
	/* options */
	const char *cairn, *corpus_dir, *out_dir, *backend, *replay;
	const char *redis_server;
	uint64_t seed;
	long iterations;
	long seconds;
	int verbose;
	int keep;
	/* one backend's run */
	struct corpus corpus;
	char work[2048];
	char log_path[4096];
	FILE *inputs;
	pid_t broker;
	int port;
	int starts;
	off_t scanned;
	pid_t redis;
	int redis_port;
	long iter;
	struct rng rng;
	unsigned nonce;
	char why[1024];
	int lingering[MAX_LINGER]; /* connections left open by CLOSE_LINGER */
	int nlinger;
	int acl;       /* the ACL file in force */
	int fd_base;   /* the broker's descriptors after start-up, or -1 */
	unsigned kept; /* the keeper's messages deposited */
	int durable;   /* the backend keeps sessions across a restart */
	/* totals */
	long restarts_term, restarts_kill, hups, bounces;
};

static void fail(struct fuzz *fz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fz->why, sizeof(fz->why), fmt, ap);
	va_end(ap);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

static int tcp_connect(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (s < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(s);
		return -1;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s;
}

/* Waits up to ms for pid to exit; returns its status, or -1 if it did not. */
static int wait_exit(pid_t pid, int ms)
{
	long long end = now_ms() + ms;
	int st;

	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			return st;
		if (w < 0 || now_ms() >= end)
			return -1;
		sleep_ms(10);
	}
}

static pid_t spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDONLY);

		if (fd < 0 || nul < 0)
			_exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], argv);
		fprintf(stderr, "fuzz_net: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/*
 * Starts redis-server on a free port, or again on its old port (and data)
 * when same_port: the broker's config names that port.
 */
static int redis_start(struct fuzz *fz, int same_port)
{
	char dir[4200], log[4200], port[16];
	long long end = now_ms() + 10000;

	snprintf(dir, sizeof(dir), "%s/redis", fz->work);
	snprintf(log, sizeof(log), "%s/redis.log", fz->work);
	mkdir(dir, 0700);
	for (int tries = 0; tries < 5; tries++) {
		if (!same_port)
			fz->redis_port = free_port();
		else if (tries > 0)
			sleep_ms(200); /* the old server's socket may linger */
		snprintf(port, sizeof(port), "%d", fz->redis_port);
		char *argv[] = {(char *)fz->redis_server,
				"--port",
				port,
				"--bind",
				"127.0.0.1",
				"--dir",
				dir,
				"--appendonly",
				"yes",
				"--appendfsync",
				"no",
				"--save",
				"",
				"--daemonize",
				"no",
				"--protected-mode",
				"yes",
				NULL};

		fz->redis = spawn(argv, log);
		if (fz->redis < 0)
			break;
		while (now_ms() < end) {
			int s = tcp_connect(fz->redis_port), st;
			char rep[16] = {0};

			if (s >= 0) {
				ssize_t n = -1;

				if (write(s, "PING\r\n", 6) == 6)
					n = read(s, rep, sizeof(rep) - 1);
				close(s);
				if (n > 0 && strncmp(rep, "+PONG", 5) == 0)
					return 0;
			}
			if (waitpid(fz->redis, &st, WNOHANG) == fz->redis) {
				fz->redis = 0;
				break;
			}
			sleep_ms(50);
		}
		if (fz->redis > 0) {
			kill(fz->redis, SIGKILL);
			wait_exit(fz->redis, 5000);
			fz->redis = 0;
		}
	}
	fprintf(stderr, "fuzz_net: cannot start %s (see %s)\n", fz->redis_server, log);
	return -1;
}

static void redis_stop(struct fuzz *fz)
{
	if (fz->redis <= 0)
		return;
	kill(fz->redis, SIGTERM);
	if (wait_exit(fz->redis, 5000) < 0) {
		kill(fz->redis, SIGKILL);
		wait_exit(fz->redis, 5000);
	}
	fz->redis = 0;
}

/*
 * Two ACL files the broker is restarted or reloaded with, so that restored
 * subscriptions, queued messages and wills meet rules that changed while
 * they were stored. Both let the sentinel (anonymous) use fz-sentinel/#.
 */
static const char *const acl_files[] = {
    "topic readwrite fz/#\n"
    "topic read $SYS/#\n"
    "topic readwrite fz-sentinel/#\n"
    "topic readwrite fz-keeper/#\n"
    "pattern readwrite fz/%c/#\n"
    "user alice\n"
    "topic readwrite fz/#\n",

    "topic readwrite fz-sentinel/#\n"
    "topic readwrite fz-keeper/#\n"
    "topic readwrite fz/a\n"
    "topic read fz/#\n"
    "topic deny fz/b/#\n"
    "pattern write fz/%c/#\n"
    "pattern read fz/%u/#\n"
    "user alice\n"
    "topic read fz/#\n"
    "topic deny fz/r/#\n",
};

/* alice's password is "secret" (the user-password seed sends it). */
static const char password_file[] =
    "alice:$6$AEBlyPARxR2rdZ3m$SyA6oZvDWUcjgjJvq7H7FIZ14kxWX2b7f2+k45odbpb7Q8cXaQ4XU0kaS7txX6U"
    "UWWQvS8yTmq0LItX2bJarNQ==\n";

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int write_acl(struct fuzz *fz, int which)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/acl", fz->work);
	fz->acl = which;
	return write_file(path, acl_files[which % 2]);
}

static int write_conf(struct fuzz *fz, const char *path)
{
	char pw[4200];
	FILE *f;

	snprintf(pw, sizeof(pw), "%s/passwd", fz->work);
	if (write_file(pw, password_file) != 0 || write_acl(fz, fz->acl) != 0)
		return -1;
	f = fopen(path, "w");
	if (f == NULL)
		return -1;
	fprintf(f,
		"listener %d 127.0.0.1\n"
		"allow_anonymous true\n"
		"persistence true\n"
		"persistence_backend %s\n"
		"persistence_location %s/store\n"
		"durability %s\n"
		"max_inflight_messages 4\n"
		"max_queued_messages 40\n"
		"max_queued_bytes 4096\n"
		"max_subscriptions 16\n"
		"max_packet_size 65536\n"
		"max_keepalive 30\n"
		"connect_timeout 2\n"
		"password_file %s/passwd\n"
		"acl_file %s/acl\n"
		"log_dest stderr\n"
		"log_type error\n"
		"log_type warning\n",
		fz->port, fz->backend, fz->work,
		/* Every third start waits for the disk: the backends' sync paths. */
		fz->starts % 3 == 2 ? "fsync" : "os", fz->work, fz->work);
	if (strcmp(fz->backend, "redis") == 0)
		fprintf(f, "redis_port %d\nredis_connect_timeout 5000\n", fz->redis_port);
	if (strcmp(fz->backend, "lmdb") == 0)
		fprintf(f, "lmdb_map_size 1m\nlmdb_map_size_max 64m\n");
	return fclose(f);
}

/* Scans the part of the broker log not yet read for a sanitizer report. */
static int log_has_report(struct fuzz *fz)
{
	FILE *f = fopen(fz->log_path, "r");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (f == NULL)
		return 0;
	fseeko(f, fz->scanned, SEEK_SET);
	while (getline(&line, &cap, f) > 0) {
		if (strstr(line, "Sanitizer") || strstr(line, "runtime error:")) {
			found = 1;
			break;
		}
	}
	if (!found)
		fz->scanned = ftello(f);
	free(line);
	fclose(f);
	return found;
}

/* The broker's open descriptors (Linux /proc), or -1. */
static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static int broker_start(struct fuzz *fz)
{
	char conf[4200], store[4200];
	long long end = now_ms() + START_TIMEOUT_MS;

	snprintf(store, sizeof(store), "%s/store", fz->work);
	mkdir(store, 0700);
	fz->port = free_port();
	snprintf(conf, sizeof(conf), "%s/cairn.conf", fz->work);
	if (fz->port < 0 || write_conf(fz, conf) != 0) {
		fail(fz, "cannot write %s", conf);
		return -1;
	}
	fz->starts++;
	/* One log per run of the broker; the one before was clean. */
	if (fz->starts > 1)
		unlink(fz->log_path);
	snprintf(fz->log_path, sizeof(fz->log_path), "%s/broker-%d.log", fz->work, fz->starts);
	fz->scanned = 0;
	char *argv[] = {(char *)fz->cairn, "-c", conf, NULL};
	fz->broker = spawn(argv, fz->log_path);
	if (fz->broker < 0) {
		fail(fz, "fork: %s", strerror(errno));
		return -1;
	}
	while (now_ms() < end) {
		int s = tcp_connect(fz->port), st;

		if (s >= 0) {
			close(s);
			/* Our probe may still count: one over is in the slack. */
			fz->fd_base = count_fds(fz->broker);
			return 0;
		}
		if (waitpid(fz->broker, &st, WNOHANG) == fz->broker) {
			fz->broker = 0;
			fail(fz, "the broker exited at start-up (status %d): restore failed?", st);
			return -1;
		}
		sleep_ms(20);
	}
	fail(fz, "the broker did not listen within %d ms", START_TIMEOUT_MS);
	return -1;
}

/*
 * Stops the broker with sig. SIGTERM must end in exit status 0 with no
 * sanitizer report: the clean shutdown, leak check included.
 */
static int broker_stop(struct fuzz *fz, int sig)
{
	int st;

	if (fz->broker <= 0)
		return 0;
	kill(fz->broker, sig);
	st = wait_exit(fz->broker, STOP_TIMEOUT_MS);
	if (st < 0) {
		kill(fz->broker, SIGKILL);
		wait_exit(fz->broker, 10000);
		fz->broker = 0;
		fail(fz, "the broker did not exit within %d ms of signal %d", STOP_TIMEOUT_MS, sig);
		return -1;
	}
	fz->broker = 0;
	if (log_has_report(fz)) {
		fail(fz, "sanitizer report in the broker log");
		return -1;
	}
	if (sig == SIGTERM && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		if (WIFSIGNALED(st))
			fail(fz, "the broker died of signal %d after SIGTERM", WTERMSIG(st));
		else
			fail(fz, "the broker exited with status %d after SIGTERM", WEXITSTATUS(st));
		return -1;
	}
	return 0;
}

/* ---- running one iteration ---- */

struct live {
	int fd;
	int opened, done, wr_shut, peer_closed;
	size_t sent;   /* bytes of the stream written */
	int next;      /* next chunk */
	long long due; /* when the next chunk may go */
	long long close_at;
	struct buf rx, acks;
	size_t acks_sent;
};

/* Answers what the broker sends, as a client that follows the protocol. */
static void react(struct live *lv, const struct conn_plan *cp, struct rng *r)
{
	size_t off = 0, hlen, plen;

	while ((plen = packet_len(lv->rx.p + off, lv->rx.len - off, &hlen)) > 0) {
		const uint8_t *p = lv->rx.p + off;
		unsigned type = p[0] >> 4, qos = (p[0] >> 1) & 3, pid = 0;
		uint8_t reply = 0;

		if (type == 3 && qos > 0 && plen >= hlen + 2) {
			size_t tl = (size_t)p[hlen] << 8 | p[hlen + 1];

			if (hlen + 2 + tl + 2 <= plen)
				pid = (unsigned)p[hlen + 2 + tl] << 8 | p[hlen + 3 + tl];
			reply = qos == 1 ? 0x40 : 0x50;
		} else if (type == 6 && plen >= hlen + 2) {
			pid = (unsigned)p[hlen] << 8 | p[hlen + 1];
			reply = 0x70;
		} else if (type == 5 && plen >= hlen + 2) {
			/* A PUBREC answers our own QoS 2 PUBLISH. */
			pid = (unsigned)p[hlen] << 8 | p[hlen + 1];
			reply = 0x62;
		}
		if (reply && cp->ack != ACK_NONE) {
			if (cp->ack == ACK_WRONG && chance(r, 50))
				pid = rnd(r, 4) ? (pid + 1) & 0xffff : 0;
			buf_byte(&lv->acks, reply);
			buf_byte(&lv->acks, 2);
			buf_u16(&lv->acks, pid);
		}
		off += plen;
	}
	memmove(lv->rx.p, lv->rx.p + off, lv->rx.len - off);
	lv->rx.len -= off;
	/* A broker that sends more than a client reads is bounded by it. */
	if (lv->rx.len > (1u << 20))
		lv->rx.len = 0;
}

static int at_boundary(const struct conn_plan *cp, size_t pos)
{
	if (pos == 0 || pos == cp->stream.len)
		return 1;
	for (size_t k = 0; k < cp->nbounds; k++)
		if (cp->bounds[k] == pos)
			return 1;
	return 0;
}

/* Closes every connection left open, with RST: the broker sees them drop. */
static void linger_close(struct fuzz *fz)
{
	struct linger lg = {1, 0};

	for (int i = 0; i < fz->nlinger; i++) {
		setsockopt(fz->lingering[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fz->lingering[i]);
	}
	fz->nlinger = 0;
}

static void close_now(struct fuzz *fz, struct live *lv, const struct conn_plan *cp)
{
	if (lv->fd >= 0 && cp->close == CLOSE_LINGER && !lv->peer_closed) {
		if (fz->nlinger == MAX_LINGER)
			linger_close(fz);
		fz->lingering[fz->nlinger++] = lv->fd;
		lv->fd = -1;
	}
	if (lv->fd >= 0) {
		if (cp->close == CLOSE_RST) {
			struct linger lg = {1, 0};

			setsockopt(lv->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(lv->fd);
	}
	lv->fd = -1;
	lv->done = 1;
}

/* Writes what is due on one connection: its acks, then its chunks. */
static void pump_writes(struct live *lv, const struct conn_plan *cp, long long now)
{
	for (;;) {
		const uint8_t *p;
		size_t n;
		ssize_t w;

		if (lv->peer_closed || lv->wr_shut)
			return;
		/* Acks first, but only between two packets of the stream. */
		if (lv->acks_sent < lv->acks.len && at_boundary(cp, lv->sent)) {
			p = lv->acks.p + lv->acks_sent;
			n = lv->acks.len - lv->acks_sent;
			w = send(lv->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0) {
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					lv->peer_closed = 1;
				return;
			}
			lv->acks_sent += (size_t)w;
			if (lv->acks_sent == lv->acks.len)
				lv->acks_sent = lv->acks.len = 0;
			continue;
		}
		if (lv->next >= cp->nchunks || now < lv->due)
			return;
		p = cp->stream.p + lv->sent;
		n = cp->chunks[lv->next].end - lv->sent;
		w = n ? send(lv->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				lv->peer_closed = 1;
			return;
		}
		lv->sent += (size_t)w;
		if (lv->sent == cp->chunks[lv->next].end) {
			lv->next++;
			if (lv->next < cp->nchunks)
				lv->due = now + cp->chunks[lv->next].delay_ms;
		} else {
			return;
		}
	}
}

static void run_iteration(struct fuzz *fz, const struct plan *pl, struct rng *r)
{
	struct live lv[MAX_CONNS];
	long long t0 = now_ms(), limit = t0 + ITER_LIMIT_MS;
	int left = pl->n;

	memset(lv, 0, sizeof(lv));
	for (int i = 0; i < pl->n; i++)
		lv[i].fd = -1;
	while (left > 0) {
		struct pollfd pfd[MAX_CONNS];
		int map[MAX_CONNS], np = 0, timeout = 5;
		long long now = now_ms();

		for (int i = 0; i < pl->n; i++) {
			const struct conn_plan *cp = &pl->c[i];
			struct live *l = &lv[i];

			if (l->done)
				continue;
			if (!l->opened) {
				if (now < t0 + cp->start_ms)
					continue;
				l->opened = 1;
				l->fd = tcp_connect(fz->port);
				if (l->fd < 0) {
					l->done = 1;
					left--;
					continue;
				}
				l->due = now + (cp->nchunks ? cp->chunks[0].delay_ms : 0);
			}
			pump_writes(l, cp, now);
			if (l->close_at == 0 && (l->next >= cp->nchunks || l->peer_closed) &&
			    l->acks_sent == l->acks.len) {
				l->close_at = now + cp->tail_ms;
				if (cp->close == CLOSE_HALF) {
					shutdown(l->fd, SHUT_WR);
					l->wr_shut = 1;
					l->close_at = now + 100 + cp->tail_ms;
				}
			}
			if ((l->close_at && now >= l->close_at) || now >= limit) {
				close_now(fz, l, cp);
				left--;
				continue;
			}
			pfd[np].fd = l->fd;
			pfd[np].events = POLLIN;
			if (l->acks_sent < l->acks.len || (l->next < cp->nchunks && now >= l->due))
				pfd[np].events |= POLLOUT;
			map[np++] = i;
		}
		if (left == 0)
			break;
		if (poll(pfd, (nfds_t)np, timeout) <= 0)
			continue;
		for (int k = 0; k < np; k++) {
			struct live *l = &lv[map[k]];
			uint8_t tmp[16384];
			ssize_t got;

			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = recv(l->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
			if (got > 0) {
				buf_add(&l->rx, tmp, (size_t)got);
				react(l, &pl->c[map[k]], r);
			} else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				/* The broker closed it: nothing more to do there. */
				l->peer_closed = 1;
				close_now(fz, l, &pl->c[map[k]]);
				left--;
			}
		}
	}
	for (int i = 0; i < pl->n; i++) {
		if (lv[i].fd >= 0)
			close(lv[i].fd);
		buf_free(&lv[i].rx);
		buf_free(&lv[i].acks);
	}
}

/* ---- the sentinel: is the broker alive, and does it still deliver? ---- */

/* Reads one whole packet into *pkt within the deadline; 0 or -1. */
static int read_packet(int fd, struct buf *rx, struct buf *pkt, long long deadline)
{
	for (;;) {
		size_t hlen, plen = packet_len(rx->p, rx->len, &hlen);
		struct pollfd p = {fd, POLLIN, 0};
		uint8_t tmp[4096];
		ssize_t got;
		long long left = deadline - now_ms();

		if (plen > 0) {
			pkt->len = 0;
			buf_add(pkt, rx->p, plen);
			memmove(rx->p, rx->p + plen, rx->len - plen);
			rx->len -= plen;
			return 0;
		}
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return -1;
		got = recv(fd, tmp, sizeof(tmp), 0);
		if (got <= 0)
			return -1;
		buf_add(rx, tmp, (size_t)got);
	}
}

static int send_all(int fd, const struct buf *b)
{
	return send(fd, b->p, b->len, MSG_NOSIGNAL) == (ssize_t)b->len ? 0 : -1;
}

/* Sends the packet of first byte first with body; 0 or -1. */
static int send_packet(int fd, uint8_t first, const struct buf *body)
{
	struct buf out = {0};
	int rc;

	buf_byte(&out, first);
	put_remaining(&out, body->len);
	buf_add(&out, body->p, body->len);
	rc = send_all(fd, &out);
	buf_free(&out);
	return rc;
}

/*
 * Connects as id and reads CONNACK 0. Returns the socket, or -1 (with the
 * reason set); *present gets the session-present flag.
 */
static int client_open(struct fuzz *fz, const char *id, int clean, struct buf *rx,
		       long long deadline, int *present)
{
	struct buf body = {0}, pk = {0};
	int fd = tcp_connect(fz->port);

	if (fd < 0) {
		fail(fz, "%s: cannot connect: %s", id, strerror(errno));
		return -1;
	}
	buf_str(&body, "MQTT");
	buf_byte(&body, 4);
	buf_byte(&body, clean ? 0x02 : 0);
	buf_u16(&body, 30);
	buf_str(&body, id);
	if (send_packet(fd, 0x10, &body) != 0 || read_packet(fd, rx, &pk, deadline) != 0 ||
	    pk.len != 4 || pk.p[0] != 0x20 || pk.p[3] != 0) {
		fail(fz, "%s: no CONNACK 0", id);
		close(fd);
		fd = -1;
	} else {
		*present = pk.p[2] & 1;
	}
	buf_free(&body);
	buf_free(&pk);
	return fd;
}

static void client_close(int fd)
{
	static const uint8_t disconnect[2] = {0xe0, 0};

	send(fd, disconnect, 2, MSG_NOSIGNAL);
	close(fd);
}

/* SUBSCRIBE to topic at QoS 1 (packet id 1) and a SUBACK granting QoS 1;
 * 0, or -1 with the reason set. */
static int subscribe_q1(struct fuzz *fz, const char *who, int fd, struct buf *rx, const char *topic,
			long long deadline)
{
	struct buf body = {0}, pk = {0};
	int rc = 0;

	buf_u16(&body, 1);
	buf_str(&body, topic);
	buf_byte(&body, 1);
	if (send_packet(fd, 0x82, &body) != 0 || read_packet(fd, rx, &pk, deadline) != 0 ||
	    pk.len != 5 || pk.p[0] != 0x90 || pk.p[4] != 1) {
		fail(fz, "%s: no SUBACK granting QoS 1", who);
		rc = -1;
	}
	buf_free(&body);
	buf_free(&pk);
	return rc;
}

/* PUBLISH payload to topic at QoS 1 with packet id pid; 0 or -1. */
static int publish_q1(int fd, const char *topic, unsigned pid, const char *payload)
{
	struct buf body = {0};
	int rc;

	buf_str(&body, topic);
	buf_u16(&body, pid);
	buf_add(&body, payload, strlen(payload));
	rc = send_packet(fd, 0x32, &body);
	buf_free(&body);
	return rc;
}

/*
 * pk, if a QoS 1 PUBLISH long enough to be to topic, is acknowledged
 * (PUBACK); returns 1 when its payload is payload, else 0.
 */
static int ack_delivery(int fd, const struct buf *pk, const char *topic, const char *payload)
{
	size_t hlen, tl = strlen(topic), pl;
	const uint8_t *b;
	uint8_t ack[4] = {0x40, 2, 0, 0};

	if ((pk->p[0] & 0xf6) != 0x32 || packet_len(pk->p, pk->len, &hlen) != pk->len ||
	    pk->len < hlen + 2 + tl + 2)
		return 0;
	b = pk->p + hlen + 2 + tl;
	ack[2] = b[0];
	ack[3] = b[1];
	send(fd, ack, 4, MSG_NOSIGNAL);
	pl = pk->len - hlen - 2 - tl - 2;
	return pl == strlen(payload) && memcmp(b + 2, payload, pl) == 0;
}

static int sentinel_check(struct fuzz *fz)
{
	long long deadline = now_ms() + CHECK_TIMEOUT_MS;
	static const uint8_t pingreq[2] = {0xc0, 0};
	struct buf rx = {0}, pk = {0};
	char topic[64], payload[64];
	int present, fd, rc = -1, got_ack = 0, got_msg = 0;

	snprintf(topic, sizeof(topic), "fz-sentinel/%u", ++fz->nonce);
	snprintf(payload, sizeof(payload), "alive %u", fz->nonce);
	fd = client_open(fz, "fz-sentinel", 1, &rx, deadline, &present);
	if (fd < 0)
		goto out;
	if (send(fd, pingreq, 2, MSG_NOSIGNAL) != 2 || read_packet(fd, &rx, &pk, deadline) != 0 ||
	    pk.len != 2 || pk.p[0] != 0xd0) {
		fail(fz, "sentinel: no PINGRESP");
		goto out;
	}
	if (subscribe_q1(fz, "sentinel", fd, &rx, topic, deadline) != 0)
		goto out;
	if (publish_q1(fd, topic, 2, payload) != 0) {
		fail(fz, "sentinel: cannot publish");
		goto out;
	}
	while (!(got_ack && got_msg)) {
		if (read_packet(fd, &rx, &pk, deadline) != 0) {
			fail(fz, "sentinel: QoS 1 round trip incomplete (PUBACK %d, delivery %d)",
			     got_ack, got_msg);
			goto out;
		}
		if (pk.p[0] == 0x40 && pk.len == 4 && pk.p[3] == 2)
			got_ack = 1;
		else if (ack_delivery(fd, &pk, topic, payload))
			got_msg = 1;
	}
	client_close(fd);
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	buf_free(&rx);
	buf_free(&pk);
	return rc;
}

/* ---- the keeper: what was acknowledged survives a restart ---- */

/* The keeper's persistent session, subscribed at QoS 1; before any fuzzing. */
static int keeper_subscribe(struct fuzz *fz)
{
	long long deadline = now_ms() + CHECK_TIMEOUT_MS;
	struct buf rx = {0};
	int present, fd = client_open(fz, "fz-keeper", 0, &rx, deadline, &present), rc = -1;

	if (fd < 0)
		goto out;
	if (subscribe_q1(fz, "keeper", fd, &rx, "fz-keeper/in", deadline) != 0) {
		close(fd);
		goto out;
	}
	client_close(fd);
	rc = 0;
out:
	buf_free(&rx);
	return rc;
}

/* Before a restart: a QoS 1 message for the keeper, acknowledged (stored). */
static int keeper_deposit(struct fuzz *fz)
{
	long long deadline = now_ms() + CHECK_TIMEOUT_MS;
	struct buf rx = {0}, pk = {0};
	char payload[64];
	int present, fd = client_open(fz, "fz-depositor", 1, &rx, deadline, &present), rc = -1;

	if (fd < 0)
		goto out;
	snprintf(payload, sizeof(payload), "kept %u", ++fz->kept);
	if (publish_q1(fd, "fz-keeper/in", 7, payload) != 0 ||
	    read_packet(fd, &rx, &pk, deadline) != 0 || pk.len != 4 || pk.p[0] != 0x40 ||
	    pk.p[3] != 7) {
		fail(fz, "keeper: no PUBACK for '%s'", payload);
		close(fd);
		goto out;
	}
	client_close(fd);
	rc = 0;
out:
	buf_free(&rx);
	buf_free(&pk);
	return rc;
}

/*
 * After the restart: the keeper's session is back (session present) and
 * the message acknowledged before it arrives, whatever state the fuzzing
 * left in the store around it.
 */
static int keeper_collect(struct fuzz *fz)
{
	long long deadline = now_ms() + CHECK_TIMEOUT_MS;
	struct buf rx = {0}, pk = {0};
	char payload[64];
	int present = 0, fd = client_open(fz, "fz-keeper", 0, &rx, deadline, &present), rc = -1;

	snprintf(payload, sizeof(payload), "kept %u", fz->kept);
	if (fd < 0)
		goto out;
	if (!present) {
		fail(fz, "keeper: its persistent session did not survive the restart");
		close(fd);
		goto out;
	}
	do {
		if (read_packet(fd, &rx, &pk, deadline) != 0) {
			fail(fz, "keeper: '%s', acknowledged before the restart, never came",
			     payload);
			close(fd);
			goto out;
		}
	} while (!ack_delivery(fd, &pk, "fz-keeper/in", payload));
	client_close(fd);
	rc = 0;
out:
	buf_free(&rx);
	buf_free(&pk);
	return rc;
}

/* ---- one backend's run ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int broker_alive(struct fuzz *fz)
{
	int st;

	if (fz->broker <= 0)
		return 0;
	if (waitpid(fz->broker, &st, WNOHANG) == fz->broker) {
		fz->broker = 0;
		if (WIFSIGNALED(st))
			fail(fz, "the broker died of signal %d", WTERMSIG(st));
		else
			fail(fz, "the broker exited with status %d", WEXITSTATUS(st));
		return 0;
	}
	return 1;
}

/*
 * Every connection of an iteration is closed by its end, so the broker's
 * descriptors come back to what it held after start-up, give or take the
 * connections left open and those whose close it has not read yet. A leak
 * on some close path grows past that slack.
 */
static int fds_bounded(struct fuzz *fz)
{
	int slack = fz->nlinger + 2 * MAX_CONNS + 8, n = -1;

	if (fz->fd_base < 0)
		return 1;
	for (int tries = 0; tries < 20; tries++) {
		n = count_fds(fz->broker);
		if (n < 0 || n <= fz->fd_base + slack)
			return 1;
		sleep_ms(100);
	}
	fail(fz, "the broker holds %d descriptors, %d after start-up: a descriptor leak?", n,
	     fz->fd_base);
	return 0;
}

static void report(struct fuzz *fz, const struct plan *pl)
{
	char path[4200];
	FILE *f;

	if (interrupted)
		return;
	snprintf(path, sizeof(path), "%s/repro.txt", fz->work);
	f = fopen(path, "w");
	if (f != NULL) {
		fprintf(f, "# fuzz_net reproducer: %s\n", fz->why);
		fprintf(f, "# backend %s seed %llu iteration %ld\n", fz->backend,
			(unsigned long long)fz->seed, fz->iter);
		fprintf(f,
			"# every input since the store was empty: inputs.txt beside this file;\n");
		fprintf(f, "#   fuzz_net --backend %s --replay inputs.txt\n", fz->backend);
		fprintf(f, "# or the same draw again:\n");
		fprintf(f, "#   fuzz_net --backend %s --seed %llu --iterations %ld\n", fz->backend,
			(unsigned long long)fz->seed, fz->iter + 1);
		if (pl != NULL)
			plan_write(f, fz->iter, pl);
		fclose(f);
	}
	fprintf(stderr,
		"fuzz_net: FAIL [%s] iteration %ld: %s\n"
		"fuzz_net:   broker log: %s\n"
		"fuzz_net:   this iteration's input: %s\n"
		"fuzz_net:   every input since the store was empty: %s/inputs.txt (--replay)\n"
		"fuzz_net:   reproduce: --backend %s --seed %llu --iterations %ld\n",
		fz->backend, fz->iter, fz->why, fz->log_path, path, fz->work, fz->backend,
		(unsigned long long)fz->seed, fz->iter + 1);
}

/*
 * Starts an epoch: an empty store, and an inputs.txt that begins there, so
 * that a replay of it from an empty store meets the same states. Without
 * epochs a long run's inputs.txt would grow without bound (about 13 MB a
 * minute). The broker is stopped with SIGTERM (and checked) first.
 */
static int epoch_start(struct fuzz *fz)
{
	char path[4200];

	if (broker_stop(fz, SIGTERM) != 0)
		return -1;
	linger_close(fz);
	snprintf(path, sizeof(path), "%s/store", fz->work);
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (fz->redis > 0) {
		redis_stop(fz);
		snprintf(path, sizeof(path), "%s/redis", fz->work);
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		if (redis_start(fz, 1) != 0) {
			fail(fz, "cannot restart redis-server on port %d", fz->redis_port);
			return -1;
		}
	}
	snprintf(path, sizeof(path), "%s/inputs.txt", fz->work);
	if (freopen(path, "w", fz->inputs) == NULL) {
		fail(fz, "%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(fz->inputs,
		"# fuzz_net inputs: backend %s seed %llu, from iteration %ld on an empty store\n",
		fz->backend, (unsigned long long)fz->seed, fz->iter);
	if (broker_start(fz) != 0 || sentinel_check(fz) != 0 ||
	    (fz->durable && keeper_subscribe(fz) != 0))
		return -1;
	return 0;
}

/* Runs the iterations on one backend: 0 clean, 1 a finding, 2 set-up. */
static int run_backend(struct fuzz *fz, long seconds, long iterations)
{
	long long end = now_ms() + seconds * 1000;
	FILE *replay = NULL;
	struct plan pl = {0};
	int rc = 2, more;
	char path[4200];
	long long t_start;

	snprintf(fz->work, sizeof(fz->work), "%s/%s-%llu", fz->out_dir, fz->backend,
		 (unsigned long long)fz->seed);
	nftw(fz->work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (mkdir(fz->out_dir, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "fuzz_net: %s: %s\n", fz->out_dir, strerror(errno));
		return 2;
	}
	if (mkdir(fz->work, 0700) != 0) {
		fprintf(stderr, "fuzz_net: %s: %s\n", fz->work, strerror(errno));
		return 2;
	}
	snprintf(path, sizeof(path), "%s/inputs.txt", fz->work);
	fz->inputs = fopen(path, "w");
	if (fz->inputs == NULL)
		return 2;
	fprintf(fz->inputs, "# fuzz_net inputs: backend %s seed %llu\n", fz->backend,
		(unsigned long long)fz->seed);
	if (fz->replay) {
		replay = fopen(fz->replay, "r");
		if (replay == NULL) {
			fprintf(stderr, "fuzz_net: %s: %s\n", fz->replay, strerror(errno));
			goto out;
		}
	}
	fz->rng.s = fz->seed ^ (uint64_t)(unsigned char)fz->backend[0] << 56;
	fz->starts = 0;
	fz->iter = 0;
	fz->acl = 0;
	fz->fd_base = -1;
	fz->why[0] = '\0';
	if (strcmp(fz->backend, "redis") == 0 && redis_start(fz, 0) != 0)
		goto out;
	rc = 1;
	if (broker_start(fz) != 0) {
		report(fz, NULL);
		goto out;
	}
	fz->durable = strcmp(fz->backend, "memory") != 0 && strcmp(fz->backend, "none") != 0;
	if (sentinel_check(fz) != 0 || (fz->durable && keeper_subscribe(fz) != 0)) {
		report(fz, NULL);
		goto out;
	}
	t_start = now_ms();
	for (;; fz->iter++) {
		struct rng r;

		if (interrupted)
			goto out;

		if (replay) {
			more = plan_read(replay, &pl, &fz->iter);
			if (more < 0) {
				rc = 2;
				goto out;
			}
			if (more == 0)
				break;
		} else {
			if (iterations > 0 ? fz->iter >= iterations : now_ms() >= end)
				break;
			if (fz->iter > 0 && fz->iter % EPOCH_ITERATIONS == 0 &&
			    epoch_start(fz) != 0) {
				report(fz, NULL);
				goto out;
			}
			plan_make(&pl, &fz->corpus, &fz->rng);
			if (chance(&fz->rng, 8))
				pl.restart = chance(&fz->rng, 65) ? SIGTERM : SIGKILL;
			else if (chance(&fz->rng, 4))
				pl.hup = 1;
			pl.acl = (int)rnd(&fz->rng, 2);
			pl.bounce = chance(&fz->rng, 3) && strcmp(fz->backend, "redis") == 0;
		}
		plan_write(fz->inputs, fz->iter, &pl);
		/* The acks' damage is drawn apart from the inputs: they follow the
		 * broker's timing, which the seed does not fix. */
		r.s = fz->seed + (uint64_t)fz->iter * 7919;
		/* A Redis outage under the iteration: the broker must ride it out
		 * (redis-server is stopped with SIGTERM, so nothing it acknowledged
		 * is lost: the keeper check stays fair). */
		if (pl.bounce && fz->redis > 0) {
			fz->bounces++;
			redis_stop(fz);
		}
		run_iteration(fz, &pl, &r);
		if (pl.bounce && fz->redis == 0 && redis_start(fz, 1) != 0) {
			fail(fz, "cannot restart redis-server on port %d", fz->redis_port);
			report(fz, &pl);
			rc = 2;
			goto out;
		}
		if (!broker_alive(fz) || log_has_report(fz) || sentinel_check(fz) != 0 ||
		    !fds_bounded(fz)) {
			if (fz->why[0] == '\0')
				fail(fz, "sanitizer report in the broker log");
			/* A broker that hangs is stopped so its stacks reach the log. */
			if (fz->broker > 0) {
				kill(fz->broker, SIGABRT);
				wait_exit(fz->broker, 10000);
				fz->broker = 0;
			}
			report(fz, &pl);
			goto out;
		}
		if (pl.restart) {
			if (pl.restart == SIGTERM)
				fz->restarts_term++;
			else
				fz->restarts_kill++;
			if ((fz->durable && keeper_deposit(fz) != 0) ||
			    broker_stop(fz, pl.restart) != 0) {
				report(fz, &pl);
				goto out;
			}
			/* Those left open saw the broker go: now they drop too. */
			linger_close(fz);
			fz->acl = pl.acl;
			if (broker_start(fz) != 0 || sentinel_check(fz) != 0 ||
			    (fz->durable && keeper_collect(fz) != 0)) {
				report(fz, &pl);
				goto out;
			}
		} else if (pl.hup) {
			fz->hups++;
			if (write_acl(fz, pl.acl) != 0 || kill(fz->broker, SIGHUP) != 0 ||
			    sentinel_check(fz) != 0 || !broker_alive(fz)) {
				if (fz->why[0] == '\0')
					fail(fz, "the broker did not survive SIGHUP");
				report(fz, &pl);
				goto out;
			}
		}
		if (fz->verbose)
			fprintf(stderr,
				"fuzz_net: [%s] iteration %ld: %d connections, %d left open, "
				"broker descriptors %d (%d at start)%s\n",
				fz->backend, fz->iter, pl.n, fz->nlinger,
				fz->broker > 0 ? count_fds(fz->broker) : -1, fz->fd_base,
				pl.restart == SIGTERM   ? ", then SIGTERM"
				: pl.restart == SIGKILL ? ", then SIGKILL"
				: pl.hup                ? ", then SIGHUP"
							: "");
		plan_free(&pl);
	}
	if (broker_stop(fz, SIGTERM) != 0) {
		report(fz, NULL);
		goto out;
	}
	linger_close(fz);
	{
		double secs = (double)(now_ms() - t_start) / 1000.0;

		printf("fuzz_net: [%s] seed %llu: %ld iterations in %.1f s (%.1f/s), %d broker "
		       "starts, clean\n",
		       fz->backend, (unsigned long long)fz->seed, fz->iter, secs,
		       secs > 0 ? (double)fz->iter / secs : 0.0, fz->starts);
		fflush(stdout);
	}
	rc = 0;
out:
	plan_free(&pl);
	if (replay)
		fclose(replay);
	if (fz->broker > 0) {
		kill(fz->broker, SIGKILL);
		wait_exit(fz->broker, 10000);
		fz->broker = 0;
	}
	linger_close(fz);
	redis_stop(fz);
	fclose(fz->inputs);
	fz->inputs = NULL;
	if (rc == 0 && !fz->keep)
		nftw(fz->work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fuzz_net [options]\n"
		"  --cairn PATH       the broker to fuzz (default ./cairn; build it with "
		"--enable-asan)\n"
		"  --corpus DIR       seed sessions (default $CAIRN_SRCDIR/tests/corpus/net, else\n"
		"                     tests/corpus/net)\n"
		"  --backend NAME     sqlite, lmdb, redis or memory (default: each in turn); none\n"
		"                     also works\n"
		"  --seed N           draw the inputs from N (default: from the clock; printed)\n"
		"  --time SECONDS     run this long in all (default 60; split between backends)\n"
		"  --iterations N     or this many iterations per backend\n"
		"  --replay FILE      play the iterations of an inputs.txt or repro.txt again\n"
		"  --out DIR          where each run keeps its store and logs (default fuzz-net);\n"
		"                     a clean run removes its own, a finding keeps it\n"
		"  --keep             keep it after a clean run too\n"
		"  --redis-server P   the redis-server binary (default redis-server)\n"
		"  -v                 one line per iteration\n"
		"Exit status: 0 clean, 1 a finding (kept in --out), 2 a usage or set-up error,\n"
		"130 interrupted (SIGINT or SIGTERM; what it started is stopped).\n");
}

int main(int argc, char **argv)
{
	static const char *const all[] = {"sqlite", "lmdb", "redis", "memory"};
	struct fuzz fz = {0};
	char corpus[4096];
	const char *src = getenv("CAIRN_SRCDIR");
	int seeded = 0, rc = 0, nb = 0;
	const char *backends[4];

	fz.cairn = "./cairn";
	fz.out_dir = "fuzz-net";
	fz.redis_server = "redis-server";
	fz.seconds = 60;
	snprintf(corpus, sizeof(corpus), "%s/tests/corpus/net", src ? src : ".");
	fz.corpus_dir = corpus;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-v") == 0) {
			fz.verbose = 1;
			continue;
		}
		if (strcmp(a, "--keep") == 0) {
			fz.keep = 1;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (v == NULL) {
			usage(stderr);
			return 2;
		}
		i++;
		if (strcmp(a, "--cairn") == 0) {
			fz.cairn = v;
		} else if (strcmp(a, "--corpus") == 0) {
			fz.corpus_dir = v;
		} else if (strcmp(a, "--backend") == 0) {
			fz.backend = v;
		} else if (strcmp(a, "--seed") == 0) {
			fz.seed = strtoull(v, NULL, 10);
			seeded = 1;
		} else if (strcmp(a, "--time") == 0) {
			fz.seconds = atol(v);
		} else if (strcmp(a, "--iterations") == 0) {
			fz.iterations = atol(v);
		} else if (strcmp(a, "--replay") == 0) {
			fz.replay = v;
		} else if (strcmp(a, "--out") == 0) {
			fz.out_dir = v;
		} else if (strcmp(a, "--redis-server") == 0) {
			fz.redis_server = v;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (fz.backend != NULL) {
		backends[nb++] = fz.backend;
	} else {
		for (int i = 0; i < 4; i++)
			backends[nb++] = all[i];
	}
	if (fz.replay && nb != 1) {
		fprintf(stderr, "fuzz_net: --replay needs --backend\n");
		return 2;
	}
	if (!seeded) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		fz.seed =
		    ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
		fz.seed %= 1000000000u;
	}
	if (access(fz.cairn, X_OK) != 0) {
		fprintf(stderr, "fuzz_net: %s: not an executable broker\n", fz.cairn);
		return 2;
	}
	if (corpus_load(&fz.corpus, fz.corpus_dir) != 0)
		return 2;
	/* Sanitizer reports go to the broker's stderr, which is its log. */
	setenv("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1:handle_abort=1", 0);
	setenv("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1", 0);
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa = {.sa_handler = on_interrupt};

		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	printf("fuzz_net: seed %llu (--seed %llu reproduces), %d seed sessions, %s\n",
	       (unsigned long long)fz.seed, (unsigned long long)fz.seed, (int)fz.corpus.n,
	       fz.replay           ? "replay"
	       : fz.iterations > 0 ? "by iterations"
				   : "by time");
	fflush(stdout);
	for (int b = 0; b < nb && rc == 0 && !interrupted; b++) {
		long secs = fz.seconds / nb + (b < fz.seconds % nb);

		fz.backend = backends[b];
		rc = run_backend(&fz, secs > 0 ? secs : 1, fz.iterations);
	}
	if (interrupted)
		rc = 130;
	printf("fuzz_net: %s (%ld SIGTERM and %ld SIGKILL restarts, %ld SIGHUP, %ld Redis "
	       "outages)\n",
	       rc == 0     ? "no findings"
	       : rc == 1   ? "FINDING"
	       : rc == 130 ? "interrupted"
			   : "set-up error",
	       fz.restarts_term, fz.restarts_kill, fz.hups, fz.bounces);
	corpus_free(&fz.corpus);
	return rc;
}
