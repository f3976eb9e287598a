/*
 * Progress of a store load: counting visitor callbacks that pass every
 * record on, read the clock once every few records (not per record: a
 * load of millions stays as fast) and report at most once an interval.
 */
#include "progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Records between two looks at the clock. */
#define PROGRESS_CLOCK_EVERY 64u

static double progress_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_count(struct progress *p, enum progress_kind k)
{
	p->n[k]++;
	p->total++;
	if (--p->countdown > 0)
		return;
	p->countdown = PROGRESS_CLOCK_EVERY;
	double t = p->now();
	if (t - p->last >= p->interval) {
		p->last = t;
		p->report(p->arg, p, false);
	}
}

/* Defines name, the callback for records of type: each is counted as kind
 * and passed on to the inner visitor's slot (0 when it has none). */
#define PROGRESS_PASS(name, type, kind, slot)                                                      \
	static int name(void *arg, const type *rec)                                                \
	{                                                                                          \
		struct progress *p = arg;                                                          \
		progress_count(p, kind);                                                           \
		return p->inner.slot ? p->inner.slot(p->inner.arg, rec) : 0;                       \
	}

PROGRESS_PASS(progress_session, struct cairn_session_rec, PROGRESS_SESSION, session)
PROGRESS_PASS(progress_sub, struct cairn_sub_rec, PROGRESS_SUB, subscription)
PROGRESS_PASS(progress_message, struct cairn_msg_rec, PROGRESS_MESSAGE, message)
PROGRESS_PASS(progress_delivery, struct cairn_delivery_rec, PROGRESS_DELIVERY, delivery)
PROGRESS_PASS(progress_inflight_in, struct cairn_inflight_in_rec, PROGRESS_INFLIGHT_IN, inflight_in)
PROGRESS_PASS(progress_retained, struct cairn_msg_rec, PROGRESS_RETAINED, retained)

struct cairn_store_visitor progress_init(struct progress *p,
					 const struct cairn_store_visitor *inner, double interval,
					 progress_report_fn report, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->inner = *inner;
	p->interval = interval;
	p->report = report;
	p->arg = arg;
	p->now = progress_monotonic;
	p->countdown = PROGRESS_CLOCK_EVERY;
	p->start = p->last = p->now();
	struct cairn_store_visitor v = {
	    .arg = p,
	    .session = progress_session,
	    .subscription = progress_sub,
	    .message = progress_message,
	    .delivery = progress_delivery,
	    .inflight_in = progress_inflight_in,
	    .retained = progress_retained,
	};
	return v;
}

void progress_finish(struct progress *p)
{
	p->last = p->now();
	p->report(p->arg, p, true);
}

void progress_format(const struct progress *p, char *buf, size_t len)
{
	double s = p->last - p->start; /* to the last report, by p's clock */
	snprintf(buf, len,
		 "%" PRIu64 " sessions, %" PRIu64 " subscriptions, %" PRIu64 " messages, %" PRIu64
		 " deliveries, %" PRIu64 " inbound QoS 2 ids, %" PRIu64 " retained; %" PRIu64
		 " records in %.1f s (%.0f/s)",
		 p->n[PROGRESS_SESSION], p->n[PROGRESS_SUB], p->n[PROGRESS_MESSAGE],
		 p->n[PROGRESS_DELIVERY], p->n[PROGRESS_INFLIGHT_IN], p->n[PROGRESS_RETAINED],
		 p->total, s, s > 0 ? (double)p->total / s : 0.0);
}
