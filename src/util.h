/*
 * Small helpers shared by every module: allocation that aborts on
 * out-of-memory (for small internal allocations only; sizes a peer
 * controls are checked against limits first), the loopback tests, and the
 * rest every listener takes when accept() runs out of descriptors.
 */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stdbool.h>
#include <stddef.h>

struct event;
struct event_base;
struct log;
struct sockaddr;

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

/* Whether sa is a loopback address (127.0.0.0/8 or ::1). */
bool util_sockaddr_is_loopback(const struct sockaddr *sa);
/* Whether the n bytes at name name the loopback: "localhost" (in any
 * case), an IPv4 address in 127.0.0.0/8 or ::1, bare or in brackets. */
bool util_name_is_loopback(const char *name, size_t n);

/*
 * The rest a group of listeners takes after accept() failed for want of
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM). libevent's
 * listener calls its error callback and, while a connection waits in the
 * backlog, calls it again on the next loop pass, forever: a busy loop
 * that also floods the log. Instead the owner's listeners are disabled
 * for rest_ms, and the failure is logged once per rest. Any other accept
 * error is logged and changes nothing. Used by the MQTT listeners
 * (conn.c) and the HTTP listener (http.c).
 */
struct util_accept_rest {
	struct event *ev; /* ends the rest */
	struct log *log;
	const char *what; /* the listeners' name in the log: "MQTT", "HTTP" */
	int rest_ms;
	bool resting;
	/* Disables (false) or enables (true) every listener of the owner;
	 * the owner may refuse to enable (it is stopping). */
	void (*set_enabled)(void *arg, bool enabled);
	void *arg;
};

/* Returns 0, or -1 when the timer cannot be made (r is then cleaned up). */
int util_accept_rest_init(struct util_accept_rest *r, struct event_base *base, struct log *lg,
			  const char *what, int rest_ms, void (*set_enabled)(void *, bool),
			  void *arg);
/* From the listener's error callback, with the socket error still set. */
void util_accept_rest_failed(struct util_accept_rest *r);
void util_accept_rest_cleanup(struct util_accept_rest *r);

#endif
