/*
 * Allocation wrappers that abort on out-of-memory. A broker that cannot
 * allocate a few bytes of bookkeeping has no safe way to carry on. And
 * the one loopback test the config and the HTTP server share, and the
 * accept rest the MQTT and HTTP listeners share.
 */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"

static void *check(void *p)
{
	if (p == NULL) {
		fputs("cairn: out of memory\n", stderr);
		abort();
	}
	return p;
}

void *xmalloc(size_t n)
{
	return check(malloc(n ? n : 1));
}

void *xcalloc(size_t count, size_t n)
{
	return check(calloc(count ? count : 1, n ? n : 1));
}

void *xrealloc(void *p, size_t n)
{
	return check(realloc(p, n ? n : 1));
}

char *xstrdup(const char *s)
{
	return check(strdup(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *r = xmalloc(n + 1);
	memcpy(r, s, n);
	r[n] = '\0';
	return r;
}

void *xmemdup(const void *p, size_t n)
{
	void *r = xmalloc(n);
	if (n)
		memcpy(r, p, n);
	return r;
}

bool util_sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

bool util_name_is_loopback(const char *name, size_t n)
{
	if (n == 9 && strncasecmp(name, "localhost", 9) == 0)
		return true;
	if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
		name++;
		n -= 2;
	}
	char buf[INET6_ADDRSTRLEN];
	if (n >= sizeof(buf))
		return false;
	memcpy(buf, name, n);
	buf[n] = '\0';
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, buf, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

/* ---- the accept rest ---- */

static void util_accept_rest_end(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct util_accept_rest *r = arg;
	r->resting = false;
	r->set_enabled(r->arg, true);
}

int util_accept_rest_init(struct util_accept_rest *r, struct event_base *base, struct log *lg,
			  const char *what, int rest_ms, void (*set_enabled)(void *, bool),
			  void *arg)
{
	*r = (struct util_accept_rest){
	    .log = lg, .what = what, .rest_ms = rest_ms, .set_enabled = set_enabled, .arg = arg};
	r->ev = evtimer_new(base, util_accept_rest_end, r);
	return r->ev ? 0 : -1;
}

void util_accept_rest_failed(struct util_accept_rest *r)
{
	int err = EVUTIL_SOCKET_ERROR();
	bool exhausted = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
	if (!exhausted) {
		log_write(r->log, LOG_LEVEL_WARNING, "%s listener: accept failed: %s", r->what,
			  evutil_socket_error_to_string(err));
		return;
	}
	if (r->resting)
		return;
	r->resting = true;
	r->set_enabled(r->arg, false);
	log_write(r->log, LOG_LEVEL_ERROR,
		  "%s listener: accept failed: %s; not accepting connections for %d ms", r->what,
		  evutil_socket_error_to_string(err), r->rest_ms);
	struct timeval tv = {r->rest_ms / 1000, (r->rest_ms % 1000) * 1000};
	evtimer_add(r->ev, &tv);
}

void util_accept_rest_cleanup(struct util_accept_rest *r)
{
	if (r->ev)
		event_free(r->ev);
	r->ev = NULL;
	r->resting = false;
}
