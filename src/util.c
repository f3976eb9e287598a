/*
 * Allocation wrappers that abort on out-of-memory. A broker that cannot
 * allocate a few bytes of bookkeeping has no safe way to carry on.
 */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
