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

static int progress_session(void *arg, const struct cairn_session_rec *rec)
{
	struct progress *p = arg;
	progress_count(p, PROGRESS_SESSION);
	return p->inner.session ? p->inner.session(p->inner.arg, rec) : 0;
}

static int progress_sub(void *arg, const struct cairn_sub_rec *rec)
{
	struct progress *p = arg;
	progress_count(p, PROGRESS_SUB);
	return p->inner.subscription ? p->inner.subscription(p->inner.arg, rec) : 0;
}

static int progress_message(void *arg, const struct cairn_msg_rec *rec)
{
	struct progress *p = arg;
	progress_count(p, PROGRESS_MESSAGE);
	return p->inner.message ? p->inner.message(p->inner.arg, rec) : 0;
}

static int progress_delivery(void *arg, const struct cairn_delivery_rec *rec)
{
	struct progress *p = arg;
	progress_count(p, PROGRESS_DELIVERY);
	return p->inner.delivery ? p->inner.delivery(p->inner.arg, rec) : 0;
}

static int progress_inflight_in(void *arg, const struct cairn_inflight_in_rec *rec)
{
	struct progress *p = arg;
	progress_count(p, PROGRESS_INFLIGHT_IN);
	return p->inner.inflight_in ? p->inner.inflight_in(p->inner.arg, rec) : 0;
}

static int progress_retained(void *arg, const struct cairn_msg_rec *rec)
{
	struct progress *p = arg;
	progress_count(p, PROGRESS_RETAINED);
	return p->inner.retained ? p->inner.retained(p->inner.arg, rec) : 0;
}

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

double progress_elapsed(const struct progress *p)
{
	return p->last - p->start;
}

void progress_format(const struct progress *p, char *buf, size_t len)
{
	double s = progress_elapsed(p);
	snprintf(buf, len,
		 "%" PRIu64 " sessions, %" PRIu64 " subscriptions, %" PRIu64 " messages, %" PRIu64
		 " deliveries, %" PRIu64 " inbound QoS 2 ids, %" PRIu64 " retained; %" PRIu64
		 " records in %.1f s (%.0f/s)",
		 p->n[PROGRESS_SESSION], p->n[PROGRESS_SUB], p->n[PROGRESS_MESSAGE],
		 p->n[PROGRESS_DELIVERY], p->n[PROGRESS_INFLIGHT_IN], p->n[PROGRESS_RETAINED],
		 p->total, s, s > 0 ? (double)p->total / s : 0.0);
}
