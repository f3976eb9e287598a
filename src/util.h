/*
 * Small helpers shared by every module: allocation that aborts on
 * out-of-memory (for small internal allocations only; sizes a peer
 * controls are checked against limits first).
 */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
