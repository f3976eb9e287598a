/*
 * acl-bench: times the ACL engine alone on large rule sets, the shapes that
 * used to cost a pass over every rule or every sibling: one SUBSCRIBE of
 * 14,000 filters with a `+` level followed by literal levels against 6,000
 * literal first levels, and PUBLISH checks against thousands of
 * `pattern deny` rules. Not part of `make check` (nothing here asserts on a
 * time); bench/README.md records its numbers. Build it against a build
 * directory's library and run it:
 *
 *   cc -O2 -D_GNU_SOURCE -Isrc -Iinclude -o BUILD/acl-bench bench/acl-bench.c \
 *      BUILD/libcairn.a
 *   BUILD/acl-bench
 *
 * Each line prints the answers it got (so that a faster wrong answer shows)
 * and the time of the whole batch.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "acl.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static struct acl *load(const char *text)
{
	struct acl *a = NULL;
	char err[256];

	if (acl_parse("bench.acl", text, strlen(text), &a, err, sizeof(err)) != ACL_OK) {
		fprintf(stderr, "acl-bench: %s\n", err);
		exit(1);
	}
	return a;
}

/* One SUBSCRIBE of nfilters filters made from fmt (with %d the index),
 * through a view as the broker decides a packet. */
static void subscribe_case(const char *label, const char *text, const char *cid, const char *fmt,
			   int nfilters)
{
	struct acl *a = load(text);
	struct acl_sub_cost cost = {0};
	struct acl_view *v = acl_view_new(a, cid, NULL);
	int granted = 0;
	char f[128];
	double t0 = now_ms(), t1;

	for (int i = 0; i < nfilters; i++) {
		snprintf(f, sizeof(f), fmt, i);
		granted += acl_view_may_subscribe(v, f, strlen(f), &cost);
	}
	t1 = now_ms();
	printf("subscribe  %-58s %6d/%d granted %9.2f ms  (%zu nodes)\n", label, granted, nfilters,
	       t1 - t0, cost.nodes);
	acl_view_free(v);
	acl_free(a);
}

/* nmsgs checks of topics made from fmt (with %d the index mod mod). */
static void check_case(const char *label, const char *text, const char *cid, const char *user,
		       const char *fmt, int mod, int nmsgs, enum acl_access acc)
{
	struct acl *a = load(text);
	int allowed = 0;
	char t[128];
	double t0 = now_ms(), t1;

	for (int i = 0; i < nmsgs; i++) {
		int n = snprintf(t, sizeof(t), fmt, i % mod);

		allowed += acl_check(a, cid, user, t, (size_t)n, acc);
	}
	t1 = now_ms();
	printf("check      %-58s %7d/%d allowed %8.2f ms  %7.1f ns/msg\n", label, allowed, nmsgs,
	       t1 - t0, (t1 - t0) * 1e6 / nmsgs);
	acl_free(a);
}

/* Append the rules fmt makes of from..to (its %d) at text + n; the new
 * length. */
static size_t rules(char *text, size_t cap, size_t n, const char *fmt, int from, int to)
{
	for (int i = from; i <= to; i++)
		n += (size_t)snprintf(text + n, cap - n, fmt, i);
	return n;
}

static long maxrss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* The load of a large file: time, and what the process grew by. */
static void load_case(const char *label, const char *text)
{
	long rss0 = maxrss_kb();
	double t0 = now_ms(), t1;
	struct acl *a = load(text);

	t1 = now_ms();
	printf("load       %-58s %8zu rules %9.2f ms  %6ld KiB\n", label, acl_rule_count(a),
	       t1 - t0, maxrss_kb() - rss0);
	acl_free(a);
}

int main(void)
{
	size_t cap = 1 << 23, n;
	char *text = malloc(cap);

	/* 6,000 literal first levels, each granting a subtree. */
	n = rules(text, cap, 0, "topic read dev%d/#\n", 1, 6000);
	subscribe_case("6000 x `topic read devN/#`, `+/literal/x`", text, "c1", "+/literal/x%d",
		       14000);
	/* The same with a deny that cuts every grant. */
	n += (size_t)snprintf(text + n, cap - n, "topic deny +/literal/#\n");
	subscribe_case("... + `topic deny +/literal/#`, `+/literal/x`", text, "c1", "+/literal/x%d",
		       14000);

	/* Literal siblings with nothing below them for the filter. */
	n = rules(text, cap, 0, "topic read dev%d/status/#\n", 1, 6000);
	subscribe_case("6000 x `topic read devN/status/#`, `+/literal/x` (refused)", text, "c1",
		       "+/literal/x%d", 14000);
	subscribe_case("6000 x `topic read devN/status/#`, `+/status/x` (granted)", text, "c1",
		       "+/status/x%d", 14000);
	n = rules(text, cap, 0, "topic read dev%d/status/set\n", 1, 6000);
	subscribe_case("6000 x `topic read devN/status/set`, `+/+/temp` (refused)", text, "c1",
		       "+/+/temp%d", 14000);

	/* Patterns on the client id below literal siblings. */
	n = rules(text, cap, 0, "pattern read dev%d/%%c/#\n", 1, 6000);
	subscribe_case("6000 x `pattern read devN/%c/#`, `+/literal/x` (refused)", text, "c1",
		       "+/literal/x%d", 14000);
	subscribe_case("6000 x `pattern read devN/%c/#`, `+/c1/x` (granted)", text, "c1",
		       "+/c1/x%d", 14000);

	/* The per-message check with thousands of deny patterns. */
	n = rules(text, cap, (size_t)snprintf(text, cap, "topic readwrite #\n"),
		  "pattern deny secret%d/%%c/#\n", 0, 4999);
	check_case("5000 x `pattern deny secretN/%c/#`, allowed", text, "c1", NULL, "data/%d/x",
		   1000, 200000, ACL_WRITE);
	check_case("5000 x `pattern deny secretN/%c/#`, denied", text, "c1", NULL, "secret%d/c1/x",
		   5000, 200000, ACL_WRITE);
	n = rules(text, cap, (size_t)snprintf(text, cap, "pattern readwrite #\n"),
		  "pattern deny %%u/%d/#\n", 0, 4999);
	check_case("5000 x `pattern deny %u/N/#`, allowed", text, "c1", "alice", "alice/x%d/y",
		   1000, 200000, ACL_READ);
	check_case("5000 x `pattern deny %u/N/#`, denied", text, "c1", "alice", "alice/%d/y", 5000,
		   200000, ACL_READ);
	n = rules(text, cap, (size_t)snprintf(text, cap, "pattern readwrite #\n"),
		  "pattern deny d%%c-%d/#\n", 0, 4999);
	check_case("5000 x `pattern deny d%c-N/#`, allowed", text, "c1", "alice", "dc2-%d/x", 5000,
		   200000, ACL_READ);
	check_case("5000 x `pattern deny d%c-N/#`, denied", text, "c1", "alice", "dc1-%d/x", 5000,
		   200000, ACL_READ);
	/* Last, so that the peak RSS it adds is its own. */
	n = 0;
	for (int i = 0; i < 100000; i++)
		n += (size_t)snprintf(text + n, cap - n, "topic read site%d/dev%d/status/#\n",
				      i % 1000, i);
	load_case("100,000 x `topic read siteM/devN/status/#`", text);
	free(text);
	return 0;
}
