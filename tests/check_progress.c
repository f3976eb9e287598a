/*
 * The progress visitor (src/progress.c): every record reaches the inner
 * visitor and is counted by kind; reports come at most once an interval
 * of its clock (a fake one here: no test waits), and once at the end.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "progress.h"

static double fake_now;

static double fake_clock(void)
{
	return fake_now;
}

struct seen {
	int sessions, subs, messages, deliveries, inflight_in, retained;
	int reports, finals;
	uint64_t total_at_report[64];
};

static int s_session(void *arg, const struct cairn_session_rec *r)
{
	(void)r;
	((struct seen *)arg)->sessions++;
	return 0;
}

static int s_message(void *arg, const struct cairn_msg_rec *r)
{
	(void)r;
	((struct seen *)arg)->messages++;
	return 0;
}

static int s_delivery(void *arg, const struct cairn_delivery_rec *r)
{
	(void)r;
	((struct seen *)arg)->deliveries++;
	return r->seq == 99 ? -7 : 0; /* an error passes back unchanged */
}

static void report(void *arg, const struct progress *p, bool final)
{
	struct seen *s = arg;
	if (final)
		s->finals++;
	else if (s->reports < 64)
		s->total_at_report[s->reports++] = p->total;
}

static void fake_start(struct progress *p)
{
	fake_now = 1000.0;
	p->now = fake_clock;
	p->start = p->last = fake_now;
}

START_TEST(test_counts_and_passes_on)
{
	struct seen s = {0};
	struct cairn_store_visitor inner = {
	    .arg = &s, .session = s_session, .message = s_message, .delivery = s_delivery};
	struct progress p;
	struct cairn_store_visitor v = progress_init(&p, &inner, 1.0, report, &s);
	struct cairn_session_rec sess = {0};
	struct cairn_msg_rec msg = {0};
	struct cairn_delivery_rec del = {0};
	struct cairn_sub_rec sub = {0};

	fake_start(&p);
	ck_assert_ptr_eq(v.arg, &p);
	ck_assert_int_eq(v.session(v.arg, &sess), 0);
	ck_assert_int_eq(v.message(v.arg, &msg), 0);
	ck_assert_int_eq(v.message(v.arg, &msg), 0);
	ck_assert_int_eq(v.delivery(v.arg, &del), 0);
	del.seq = 99;
	ck_assert_int_eq(v.delivery(v.arg, &del), -7);
	/* No inner callback for subscriptions: counted, and 0. */
	ck_assert_int_eq(v.subscription(v.arg, &sub), 0);
	ck_assert_int_eq(s.sessions, 1);
	ck_assert_int_eq(s.messages, 2);
	ck_assert_int_eq(s.deliveries, 2);
	ck_assert_uint_eq(p.n[PROGRESS_SESSION], 1);
	ck_assert_uint_eq(p.n[PROGRESS_MESSAGE], 2);
	ck_assert_uint_eq(p.n[PROGRESS_DELIVERY], 2);
	ck_assert_uint_eq(p.n[PROGRESS_SUB], 1);
	ck_assert_uint_eq(p.total, 6);
	ck_assert_int_eq(s.reports, 0);
	fake_now += 2.0;
	progress_finish(&p);
	ck_assert_int_eq(s.finals, 1);

	char line[400];
	progress_format(&p, line, sizeof(line));
	ck_assert_str_eq(line, "1 sessions, 1 subscriptions, 2 messages, 2 deliveries, "
			       "0 inbound QoS 2 ids, 0 retained; 6 records in 2.0 s (3/s)");
}
END_TEST

/* The clock advances 0.01 s a record: with a 1 s interval, one report
 * for about every 100 records, never two within an interval. */
START_TEST(test_reports_at_most_once_an_interval)
{
	struct seen s = {0};
	struct cairn_store_visitor inner = {.arg = &s, .message = s_message};
	struct progress p;
	struct cairn_store_visitor v = progress_init(&p, &inner, 1.0, report, &s);
	struct cairn_msg_rec msg = {0};

	fake_start(&p);
	for (int i = 0; i < 1000; i++) {
		fake_now += 0.01;
		v.message(v.arg, &msg);
	}
	ck_assert_int_ge(s.reports, 5);
	ck_assert_int_le(s.reports, 10);
	for (int i = 1; i < s.reports; i++)
		ck_assert_uint_ge(s.total_at_report[i] - s.total_at_report[i - 1], 100);
	ck_assert_int_eq(s.finals, 0);

	/* A load faster than an interval: no report until the final one. */
	struct seen q = {0};
	inner.arg = &q;
	v = progress_init(&p, &inner, 1.0, report, &q);
	fake_start(&p);
	for (int i = 0; i < 100000; i++)
		v.message(v.arg, &msg);
	ck_assert_int_eq(q.reports, 0);
	progress_finish(&p);
	ck_assert_int_eq(q.finals, 1);
	ck_assert_int_eq(q.messages, 100000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("progress");
	TCase *tc = tcase_create("progress");
	tcase_add_test(tc, test_counts_and_passes_on);
	tcase_add_test(tc, test_reports_at_most_once_an_interval);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
