/*
 * Progress of a long store load: a visitor that counts every record on its
 * way to the real one and calls a report function at most once an
 * interval, then once at the end. cairn-store draws it on a terminal; the
 * broker logs restore progress with it.
 */
#ifndef CAIRN_PROGRESS_H
#define CAIRN_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/store.h"

enum progress_kind {
	PROGRESS_SESSION,
	PROGRESS_SUB,
	PROGRESS_MESSAGE,
	PROGRESS_DELIVERY,
	PROGRESS_INFLIGHT_IN,
	PROGRESS_RETAINED,
	PROGRESS_KINDS
};

struct progress;

/* Called with the counts so far; final is true once, from progress_finish. */
typedef void (*progress_report_fn)(void *arg, const struct progress *p, bool final);

struct progress {
	struct cairn_store_visitor inner; /* where every record goes */
	uint64_t n[PROGRESS_KINDS];
	uint64_t total;
	double start, last; /* seconds of now(): the load's start, the last report */
	double interval;    /* seconds between reports */
	unsigned countdown; /* records until the clock is read again */
	progress_report_fn report;
	void *arg;
	double (*now)(void); /* monotonic seconds; a test may set its own clock */
};

/*
 * Prepare p to count the records bound for inner and report every
 * interval seconds. Returns the visitor to give store_load instead of
 * inner; it refers to p, which must outlive the load.
 */
struct cairn_store_visitor progress_init(struct progress *p,
					 const struct cairn_store_visitor *inner, double interval,
					 progress_report_fn report, void *arg);

/* The load is over: the final report. */
void progress_finish(struct progress *p);

/*
 * "N sessions, N subscriptions, N messages, N deliveries, N inbound QoS 2
 * ids, N retained; N records in S s (R/s)" into buf (truncated to len).
 */
void progress_format(const struct progress *p, char *buf, size_t len);

#endif
