/*
 * Unit tests for share.c: shared subscription groups, their members, and
 * the choice of one member per group for each message (online members in
 * turn, persistent offline ones when none is online), with the work of a
 * choice counted.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "share.h"
#include "topic.h"

/* A session as the tests see one: whether it is connected, and the list
 * of memberships share.c keeps for it. */
struct fake {
	bool online;
	struct share_member *list;
	unsigned got; /* picks counted by route() */
};

/* Calls of the online function: the work of choosing. */
static size_t online_calls;

static bool fake_online(void *session)
{
	online_calls++;
	return ((struct fake *)session)->online;
}

static struct topic_subfilter parse(const char *s)
{
	struct topic_subfilter sf;

	ck_assert_int_eq(topic_subfilter_parse(s, strlen(s), &sf), TOPIC_OK);
	ck_assert_ptr_nonnull(sf.group);
	return sf;
}

static void join(struct share_set *s, const char *filter, struct fake *f, uint8_t qos,
		 bool persistent)
{
	struct topic_subfilter sf = parse(filter);

	share_join(s, &sf, f, &f->list, qos, 0, persistent);
}

static bool leave(struct share_set *s, const char *filter, struct fake *f)
{
	struct topic_subfilter sf = parse(filter);

	return share_leave(s, &sf, f);
}

/* Route one message on topic; count each pick on its session. Returns the
 * number of picks. */
static size_t route(struct share_set *s, const char *topic)
{
	const struct share_pick *p;
	size_t n = share_route(s, topic, strlen(topic), &p);

	for (size_t i = 0; i < n; i++)
		((struct fake *)p[i].session)->got++;
	return n;
}

static void set_online(struct fake *f, bool online)
{
	f->online = online;
	share_session_online(f->list, online);
}

/* ---- tests ---- */

/* Three online members share the messages in turn: each message to
 * exactly one, the same number to each. */
START_TEST(test_round_robin)
{
	struct share_set *s = share_set_new(fake_online);
	struct fake f[3] = {{.online = true}, {.online = true}, {.online = true}};
	const struct share_pick *p;

	for (int i = 0; i < 3; i++)
		join(s, "$share/g/a/+", &f[i], 1, false);
	ck_assert_uint_eq(share_group_count(s), 1);
	ck_assert_uint_eq(share_member_count(s), 3);
	void *prev = NULL;
	for (int i = 0; i < 30; i++) {
		ck_assert_uint_eq(share_route(s, "a/b", 3, &p), 1);
		ck_assert_ptr_ne(p[0].session, prev); /* never the same one twice running */
		prev = p[0].session;
		((struct fake *)p[0].session)->got++;
	}
	for (int i = 0; i < 3; i++)
		ck_assert_uint_eq(f[i].got, 10);
	/* A topic the filter does not match picks nobody. */
	ck_assert_uint_eq(route(s, "a/b/c"), 0);
	ck_assert_uint_eq(route(s, "b/b"), 0);
	share_set_free(s);
}
END_TEST

/* Each group on a matching filter picks its own member; many groups on one
 * filter each get every message. */
START_TEST(test_groups_independent)
{
	struct share_set *s = share_set_new(fake_online);
	struct fake f[100];
	char name[32];

	memset(f, 0, sizeof(f));
	for (int i = 0; i < 100; i++) {
		f[i].online = true;
		snprintf(name, sizeof(name), "$share/g%d/x/#", i);
		join(s, name, &f[i], 0, false);
	}
	ck_assert_uint_eq(share_group_count(s), 100);
	for (int k = 0; k < 5; k++)
		ck_assert_uint_eq(route(s, "x/y"), 100);
	for (int i = 0; i < 100; i++)
		ck_assert_uint_eq(f[i].got, 5);
	/* One session in two groups on different matching filters: a pick from
	 * each. */
	struct fake one = {.online = true};
	join(s, "$share/h/x/y", &one, 2, false);
	join(s, "$share/k/+/y", &one, 1, false);
	ck_assert_uint_eq(route(s, "x/y"), 102);
	ck_assert_uint_eq(one.got, 2);
	/* A '#' filter of a group does not reach '$' topics. */
	join(s, "$share/all/#", &one, 0, false);
	ck_assert_uint_eq(route(s, "$SYS/x"), 0);
	share_set_free(s);
	ck_assert_ptr_null(one.list);
	ck_assert_ptr_null(f[0].list);
}
END_TEST

/* A member that goes offline gets nothing while another is online; a
 * persistent one gets the messages when it is the only kind left; a
 * non-persistent offline one never does. */
START_TEST(test_online_first)
{
	struct share_set *s = share_set_new(fake_online);
	struct fake a = {.online = true}, b = {.online = true}, c = {.online = true};

	join(s, "$share/g/t", &a, 1, true);
	join(s, "$share/g/t", &b, 1, false);
	join(s, "$share/g/t", &c, 1, false);
	set_online(&a, false);
	for (int i = 0; i < 10; i++)
		ck_assert_uint_eq(route(s, "t"), 1);
	ck_assert_uint_eq(a.got, 0);
	ck_assert_uint_eq(b.got + c.got, 10);
	/* Nobody online: the persistent member's session takes it. */
	set_online(&b, false);
	set_online(&c, false);
	b.got = c.got = 0;
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(route(s, "t"), 1);
	ck_assert_uint_eq(a.got, 4);
	ck_assert_uint_eq(b.got + c.got, 0);
	/* Back online, the others come first again. */
	set_online(&c, true);
	a.got = 0;
	for (int i = 0; i < 4; i++)
		ck_assert_uint_eq(route(s, "t"), 1);
	ck_assert_uint_eq(c.got, 4);
	ck_assert_uint_eq(a.got, 0);
	/* Only non-persistent offline members: nobody gets it. */
	ck_assert(leave(s, "$share/g/t", &a));
	set_online(&c, false);
	ck_assert_uint_eq(route(s, "t"), 0);
	share_set_free(s);
}
END_TEST

/* A session whose connection ended before the set heard of it is passed
 * over when its turn comes, and moved aside once: the next messages do not
 * ask about it again. */
START_TEST(test_lazy_offline)
{
	struct share_set *s = share_set_new(fake_online);
	struct fake a = {.online = true}, b = {.online = true};

	join(s, "$share/g/t", &a, 1, true);
	join(s, "$share/g/t", &b, 1, true);
	a.online = false; /* not announced */
	online_calls = 0;
	for (int i = 0; i < 10; i++)
		ck_assert_uint_eq(route(s, "t"), 1);
	ck_assert_uint_eq(b.got, 10);
	ck_assert_uint_eq(a.got, 0);
	ck_assert_uint_le(online_calls, 11);
	/* a now waits among the offline persistent members. */
	b.online = false;
	set_online(&b, false);
	ck_assert_uint_eq(route(s, "t"), 1);
	ck_assert_uint_eq(a.got + b.got, 11);
	share_set_free(s);
}
END_TEST

/* Joining again changes the QoS, not the membership; leaving ends it, the
 * last member's leaving ends the group, and leaving what one never joined
 * is refused. */
/* covers: MQTT5-4.8.2-3 */
START_TEST(test_join_leave)
{
	struct share_set *s = share_set_new(fake_online);
	struct fake a = {.online = true}, b = {.online = true};
	const struct share_pick *p;

	join(s, "$share/g/t", &a, 0, false);
	join(s, "$share/g/t", &a, 2, false);
	ck_assert_uint_eq(share_member_count(s), 1);
	ck_assert_uint_eq(share_route(s, "t", 1, &p), 1);
	ck_assert_ptr_eq(p[0].session, &a);
	ck_assert_uint_eq(p[0].qos, 2);
	join(s, "$share/g/t", &b, 1, false);
	join(s, "$share/h/t", &b, 0, false);
	ck_assert_uint_eq(share_group_count(s), 2);
	ck_assert(!leave(s, "$share/h/t", &a));
	ck_assert(!leave(s, "$share/x/t", &a));
	ck_assert(!leave(s, "$share/g/u", &a));
	ck_assert(leave(s, "$share/g/t", &a));
	ck_assert(!leave(s, "$share/g/t", &a));
	ck_assert_ptr_null(a.list);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(share_route(s, "t", 1, &p), 2);
		ck_assert_ptr_eq(p[0].session, &b);
		ck_assert_ptr_eq(p[1].session, &b);
	}
	ck_assert(leave(s, "$share/g/t", &b));
	ck_assert_uint_eq(share_group_count(s), 1);
	ck_assert(leave(s, "$share/h/t", &b));
	ck_assert_uint_eq(share_group_count(s), 0);
	ck_assert_uint_eq(share_member_count(s), 0);
	ck_assert_ptr_null(b.list);
	ck_assert_uint_eq(route(s, "t"), 0);
	/* The same group name on another filter is another group. */
	join(s, "$share/g/t", &a, 0, false);
	join(s, "$share/g/u", &a, 0, false);
	ck_assert_uint_eq(share_group_count(s), 2);
	ck_assert_uint_eq(route(s, "u"), 1);
	share_set_free(s);
}
END_TEST

/* A session's memberships in many groups all follow its connection. */
START_TEST(test_session_list)
{
	struct share_set *s = share_set_new(fake_online);
	struct fake a = {.online = true}, b = {.online = true};
	char name[32];

	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "$share/g%d/t", i);
		join(s, name, &a, 1, true);
		join(s, name, &b, 1, true);
	}
	set_online(&a, false);
	ck_assert_uint_eq(route(s, "t"), 50);
	ck_assert_uint_eq(route(s, "t"), 50);
	ck_assert_uint_eq(a.got, 0);
	ck_assert_uint_eq(b.got, 100);
	/* Back online: a and b share each group's messages in turn again. */
	set_online(&a, true);
	ck_assert_uint_eq(route(s, "t"), 50);
	ck_assert_uint_eq(route(s, "t"), 50);
	ck_assert_uint_eq(a.got, 50);
	ck_assert_uint_eq(b.got, 150);
	for (int i = 0; i < 50; i += 2) {
		snprintf(name, sizeof(name), "$share/g%d/t", i);
		ck_assert(leave(s, name, &a));
	}
	ck_assert_uint_eq(share_member_count(s), 75);
	ck_assert_uint_eq(share_group_count(s), 50);
	/* The memberships a still has follow it offline. */
	set_online(&a, false);
	a.got = b.got = 0;
	ck_assert_uint_eq(route(s, "t"), 50);
	ck_assert_uint_eq(a.got, 0);
	ck_assert_uint_eq(b.got, 50);
	share_set_free(s);
	ck_assert_ptr_null(a.list);
	ck_assert_ptr_null(b.list);
}
END_TEST

/* The choice costs O(1) amortised whatever the group's size: with 10,000
 * members of which one is online, or all online, or all offline and
 * persistent, each message asks about at most a few of them. */
START_TEST(test_choice_cost)
{
	enum { N = 10000, MSGS = 20000 };
	struct share_set *s = share_set_new(fake_online);
	struct fake *f = calloc(N, sizeof(*f));

	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < N; i++) {
		f[i].online = true;
		join(s, "$share/big/t/#", &f[i], 1, true);
	}
	online_calls = 0;
	for (int i = 0; i < MSGS; i++)
		ck_assert_uint_eq(route(s, "t/x"), 1);
	ck_assert_uint_eq(online_calls, MSGS);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(f[i].got, 2);
	/* All but one go offline, announced: no scan for the one. */
	for (int i = 1; i < N; i++)
		set_online(&f[i], false);
	online_calls = 0;
	for (int i = 0; i < MSGS; i++)
		ck_assert_uint_eq(route(s, "t/x"), 1);
	ck_assert_uint_le(online_calls, MSGS);
	ck_assert_uint_eq(f[0].got, 2 + MSGS);
	/* Unannounced: each is passed over once, then never asked again. */
	set_online(&f[0], false);
	for (int i = 0; i < N; i++) {
		set_online(&f[i], true);
		f[i].online = i == N - 1;
	}
	online_calls = 0;
	for (int i = 0; i < MSGS; i++)
		ck_assert_uint_eq(route(s, "t/x"), 1);
	ck_assert_uint_le(online_calls, MSGS + N);
	ck_assert_uint_ge(f[N - 1].got, MSGS - N);
	/* Nobody online: the persistent members take turns, none asked. */
	f[N - 1].online = false;
	set_online(&f[N - 1], false);
	for (int i = 0; i < N; i++)
		f[i].got = 0;
	online_calls = 0;
	for (int i = 0; i < 2 * N; i++)
		ck_assert_uint_eq(route(s, "t/x"), 1);
	ck_assert_uint_eq(online_calls, 0);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(f[i].got, 2);
	share_set_free(s);
	free(f);
}
END_TEST

static Suite *share_suite(void)
{
	Suite *s = suite_create("share");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_round_robin);
	tcase_add_test(tc, test_groups_independent);
	tcase_add_test(tc, test_online_first);
	tcase_add_test(tc, test_lazy_offline);
	tcase_add_test(tc, test_join_leave);
	tcase_add_test(tc, test_session_list);
	tcase_add_test(tc, test_choice_cost);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(share_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
