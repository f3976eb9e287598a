/*
 * Unit tests for acl.c: the acl_file parser (every rule kind, strict errors
 * with FILE:LINE), the per-message check (deny precedence, anonymous and
 * user blocks, %c/%u with hostile ids, '$' topics) and the SUBSCRIBE
 * decision, which is cross-checked against acl_check() over a small
 * universe of topics. A benchmark prints the cost of one check.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "topic.h"

#define R ACL_READ
#define W ACL_WRITE

/* ---- helpers ---- */

static struct acl *load(const char *text)
{
	struct acl *a = NULL;
	char err[256] = "";
	int rc = acl_parse("t.acl", text, strlen(text), &a, err, sizeof(err));

	ck_assert_msg(rc == ACL_OK, "parse failed: %s", err);
	ck_assert_ptr_nonnull(a);
	return a;
}

static bool chk(const struct acl *a, const char *cid, const char *user, const char *topic,
		enum acl_access acc)
{
	return acl_check(a, cid, user, topic, strlen(topic), acc);
}

static bool sub(const struct acl *a, const char *cid, const char *user, const char *filter)
{
	ck_assert_int_eq(topic_filter_validate(filter, strlen(filter)), TOPIC_OK);
	return acl_may_subscribe(a, cid, user, filter, strlen(filter));
}

/* ---- rule kinds ---- */

START_TEST(test_rule_kinds)
{
	struct acl *a = load("topic read r/#\n"
			     "topic write w/#\n"
			     "topic readwrite rw/+\n"
			     "topic plain\n");

	ck_assert(chk(a, "c", NULL, "r/x", R));
	ck_assert(!chk(a, "c", NULL, "r/x", W));
	ck_assert(chk(a, "c", NULL, "w/x/y", W));
	ck_assert(!chk(a, "c", NULL, "w/x/y", R));
	ck_assert(chk(a, "c", NULL, "rw/1", R));
	ck_assert(chk(a, "c", NULL, "rw/1", W));
	ck_assert(!chk(a, "c", NULL, "rw/1/2", R));
	ck_assert(chk(a, "c", NULL, "plain", R)); /* no access type: readwrite */
	ck_assert(chk(a, "c", NULL, "plain", W));
	ck_assert(!chk(a, "c", NULL, "other", R));
	ck_assert(chk(a, "c", NULL, "r", R)); /* 'r/#' matches its parent */
	ck_assert_uint_eq(acl_rule_count(a), 4);
	acl_free(a);
}
END_TEST

START_TEST(test_deny_precedence)
{
	/* Deny wins whether it comes before or after the grant, and from a
	 * pattern over a user's own grant (stricter than Mosquitto). */
	struct acl *a = load("topic deny a/secret\n"
			     "topic readwrite a/#\n"
			     "topic readwrite b/#\n"
			     "topic deny b/+/x\n"
			     "user alice\n"
			     "topic readwrite #\n"
			     "topic deny alice/private/#\n"
			     "user bob\n"
			     "topic deny bob/#\n"
			     "pattern read bob/%u\n"
			     "pattern deny shared/%c/locked\n");

	ck_assert(!chk(a, "c", NULL, "a/secret", R));
	ck_assert(!chk(a, "c", NULL, "a/secret", W));
	ck_assert(chk(a, "c", NULL, "a/open", R));
	ck_assert(!chk(a, "c", NULL, "b/1/x", W));
	ck_assert(chk(a, "c", NULL, "b/1/y", W));
	ck_assert(!chk(a, "c", "alice", "alice/private", R));
	ck_assert(!chk(a, "c", "alice", "alice/private/deep", W));
	ck_assert(chk(a, "c", "alice", "alice/public", R));
	/* A pattern's deny beats alice's own 'topic readwrite #'. */
	ck_assert(!chk(a, "dev1", "alice", "shared/dev1/locked", R));
	ck_assert(chk(a, "dev1", "alice", "shared/dev2/locked", R));
	/* bob's block deny beats the pattern that would grant bob/bob. */
	ck_assert(!chk(a, "c", "bob", "bob/bob", R));
	acl_free(a);
}
END_TEST

START_TEST(test_anonymous_and_user_blocks)
{
	struct acl *a = load("# anonymous clients\n"
			     "topic read public/#\n"
			     "user alice\n"
			     "topic readwrite alice/#\n"
			     "user bob\n"
			     "topic read bob/#\n"
			     "user alice\n" /* a second block for alice adds to the first */
			     "topic read extra/alice\n"
			     "pattern read everyone/%c\n");

	ck_assert(chk(a, "c", NULL, "public/x", R));
	ck_assert(!chk(a, "c", NULL, "alice/x", R));
	/* Rules before the first user line are for anonymous clients only. */
	ck_assert(!chk(a, "c", "alice", "public/x", R));
	ck_assert(chk(a, "c", "alice", "alice/x", W));
	ck_assert(chk(a, "c", "alice", "extra/alice", R));
	ck_assert(!chk(a, "c", "alice", "bob/x", R));
	ck_assert(chk(a, "c", "bob", "bob/x", R));
	ck_assert(!chk(a, "c", "bob", "bob/x", W));
	/* A username without a block gets the patterns only. */
	ck_assert(!chk(a, "c", "carol", "public/x", R));
	ck_assert(chk(a, "c", "carol", "everyone/c", R));
	/* Patterns apply to anonymous clients too, wherever they are written. */
	ck_assert(chk(a, "c", NULL, "everyone/c", R));
	ck_assert(!chk(a, "c", NULL, "everyone/d", R));
	/* The empty username is a username, not anonymous. */
	ck_assert(!chk(a, "c", "", "public/x", R));
	acl_free(a);
}
END_TEST

START_TEST(test_spaces_comments_and_layout)
{
	struct acl *a = load("  # an indented comment\n"
			     "\n"
			     "   \t\n"
			     "topic read a topic/with spaces\r\n"
			     "user John Smith\n"
			     "\ttopic   readwrite  \tjohn/#   \n"
			     "user  Jane Doe  \r\n"
			     "topic write jane doe/+\n");

	ck_assert(chk(a, "c", NULL, "a topic/with spaces", R));
	ck_assert(!chk(a, "c", NULL, "a topic/with", R));
	ck_assert(chk(a, "c", "John Smith", "john/x", W));
	ck_assert(!chk(a, "c", "John", "john/x", W));
	ck_assert(chk(a, "c", "Jane Doe", "jane doe/1", W));
	ck_assert(!chk(a, "c", "Jane Doe", "jane doe/1", R));
	ck_assert(!chk(a, "c", "Jane Doe ", "jane doe/1", W));
	acl_free(a);
}
END_TEST

/* Row 16 of negative-tests.md: an empty or comment-only file denies all. */
START_TEST(test_empty_file_denies_all)
{
	const char *texts[] = {"", "# nothing\n\n#topic readwrite #\n", "user alice\n"};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct acl *a = load(texts[i]);

		ck_assert(!chk(a, "c", NULL, "a", R));
		ck_assert(!chk(a, "c", NULL, "a", W));
		ck_assert(!chk(a, "c", "alice", "a", R));
		ck_assert(!sub(a, "c", NULL, "#"));
		ck_assert(!sub(a, "c", "alice", "a"));
		ck_assert_uint_eq(acl_rule_count(a), 0);
		acl_free(a);
	}
}
END_TEST

/* ---- patterns ---- */

START_TEST(test_pattern_substitution)
{
	struct acl *a = load("pattern readwrite dev/%c/#\n"
			     "pattern read users/%u/inbox\n"
			     "pattern write both/%u-%c/x\n"
			     "pattern read literal/%x/100%\n"
			     "pattern read twice/%c%c\n");

	ck_assert(chk(a, "d1", NULL, "dev/d1", W));
	ck_assert(chk(a, "d1", NULL, "dev/d1/t", R));
	ck_assert(!chk(a, "d1", NULL, "dev/d2/t", R));
	ck_assert(!chk(a, "d1", NULL, "dev/d1x/t", R));
	ck_assert(chk(a, "d1", "u", "users/u/inbox", R));
	ck_assert(!chk(a, "d1", "u", "users/v/inbox", R));
	ck_assert(chk(a, "d1", "u", "both/u-d1/x", W));
	ck_assert(!chk(a, "d1", "u", "both/d1-u/x", W));
	ck_assert(chk(a, "d1", NULL, "literal/%x/100%", R));
	ck_assert(chk(a, "ab", NULL, "twice/abab", R));
	ck_assert(!chk(a, "ab", NULL, "twice/ab", R));
	acl_free(a);
}
END_TEST

/* Row 14 of negative-tests.md (CVE-2017-7650): wildcards or '/' in a client
 * id or username never widen a pattern. */
START_TEST(test_pattern_hostile_ids)
{
	struct acl *a = load("pattern readwrite dev/%c/#\n"
			     "pattern readwrite home/%u/#\n");
	const char *bad[] = {"#", "+", "a/+", "a/#", "x/y", "/", "+/+", ""};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *id = bad[i];

		ck_assert_msg(!chk(a, id, NULL, "dev/x", R), "id %s", id);
		ck_assert_msg(!chk(a, id, NULL, "dev/x/y", W), "id %s", id);
		ck_assert_msg(!chk(a, id, NULL, "dev/a/+", W), "id %s", id);
		ck_assert_msg(!chk(a, id, NULL, "dev/x/y/z", R), "id %s", id);
		ck_assert_msg(!sub(a, id, NULL, "dev/#"), "id %s", id);
		ck_assert_msg(!sub(a, id, NULL, "#"), "id %s", id);
		ck_assert_msg(!chk(a, "ok", id, "home/x/y", R), "user %s", id);
		ck_assert_msg(!sub(a, "ok", id, "home/+/#"), "user %s", id);
	}
	/* A sane client still works, and the hostile one keeps other rules. */
	ck_assert(chk(a, "ok", "u", "dev/ok/1", R));
	ck_assert(chk(a, "a/#", "u", "home/u/1", R));
	acl_free(a);
}
END_TEST

/* A hostile value in a deny pattern fails closed: it denies everything. */
START_TEST(test_pattern_hostile_ids_deny)
{
	struct acl *a = load("topic readwrite #\n"
			     "pattern deny dev/%c/secret\n");

	ck_assert(chk(a, "ok", NULL, "dev/x/secret", R));
	ck_assert(!chk(a, "ok", NULL, "dev/ok/secret", R));
	ck_assert(!chk(a, "x/y", NULL, "anything", R));
	ck_assert(!chk(a, "#", NULL, "anything", W));
	ck_assert(!sub(a, "#", NULL, "anything"));
	ck_assert(sub(a, "ok", NULL, "#"));
	ck_assert(!sub(a, "ok", NULL, "dev/ok/secret"));
	acl_free(a);
}
END_TEST

/* Row 15: substitution is literal, never a regular expression. */
START_TEST(test_pattern_literal_values)
{
	struct acl *a = load("pattern read dev/%c\n");

	ck_assert(chk(a, ".*", NULL, "dev/.*", R));
	ck_assert(!chk(a, ".*", NULL, "dev/abc", R));
	ck_assert(chk(a, "(a|b)\\", NULL, "dev/(a|b)\\", R));
	ck_assert(!chk(a, "(a|b)\\", NULL, "dev/a", R));
	ck_assert(!chk(a, "%c", NULL, "dev/x", R));
	ck_assert(chk(a, "%c", NULL, "dev/%c", R));
	acl_free(a);
}
END_TEST

START_TEST(test_pattern_username_absent)
{
	/* No username: %u patterns neither grant nor deny. */
	struct acl *a = load("topic readwrite open/#\n"
			     "pattern read u/%u\n"
			     "pattern deny open/%u\n"
			     "pattern read c/%c\n");

	ck_assert(!chk(a, "c", NULL, "u/", R));
	ck_assert(!chk(a, "c", NULL, "u/%u", R));
	ck_assert(chk(a, "c", NULL, "open/x", R));
	ck_assert(chk(a, "c", NULL, "c/c", R));
	ck_assert(!sub(a, "c", NULL, "u/+"));
	/* The empty username cannot be substituted: grants nothing, and the
	 * deny pattern then denies everything. */
	ck_assert(!chk(a, "c", "", "u/", R));
	ck_assert(!chk(a, "c", "", "c/c", R));
	acl_free(a);
}
END_TEST

START_TEST(test_pattern_dollar_lead)
{
	/* A client id that begins the rule must not make it a '$' rule. */
	struct acl *a = load("pattern read %c/#\n"
			     "pattern read in/%c/#\n");

	ck_assert(chk(a, "dev", NULL, "dev/x", R));
	ck_assert(!chk(a, "$SYS", NULL, "$SYS/broker/uptime", R));
	ck_assert(!sub(a, "$SYS", NULL, "$SYS/#"));
	ck_assert(chk(a, "$x", NULL, "in/$x/y", R));
	acl_free(a);
}
END_TEST

/*
 * Patterns against a reference that substitutes into a string and calls
 * topic_matches(): random patterns (placeholders alone, inside a level,
 * leading, after a literal '$'), hostile and ordinary ids, random topics.
 * This checks the shape index, the odd list and the matcher that
 * substitutes as it goes.
 */
struct ref_rule {
	char filter[64];
	uint8_t access; /* 1 read, 2 write, 4 deny */
};

static bool ref_value_ok(const char *v)
{
	return v != NULL && v[0] != '\0' && strpbrk(v, "+#/") == NULL;
}

static void ref_expand(const char *f, const char *cid, const char *user, char *out, size_t cap)
{
	size_t n = 0;

	for (; *f && n + 1 < cap; f++) {
		if (f[0] == '%' && (f[1] == 'c' || f[1] == 'u')) {
			const char *v = f[1] == 'c' ? cid : user;

			n += (size_t)snprintf(out + n, cap - n, "%s", v);
			f++;
		} else {
			out[n++] = *f;
		}
	}
	out[n] = '\0';
}

static bool ref_check(const struct ref_rule *rules, int n, const char *cid, const char *user,
		      const char *topic, uint8_t access)
{
	bool granted = false;

	for (int i = 0; i < n; i++) {
		const char *f = rules[i].filter;
		bool uses_c = strstr(f, "%c") != NULL, uses_u = strstr(f, "%u") != NULL;
		bool usable = true;
		char x[256];

		if (uses_u && user == NULL)
			continue;
		if ((uses_c && !ref_value_ok(cid)) || (uses_u && !ref_value_ok(user)))
			usable = false;
		if ((strncmp(f, "%c", 2) == 0 && cid[0] == '$') ||
		    (strncmp(f, "%u", 2) == 0 && user[0] == '$'))
			usable = false;
		if (usable)
			ref_expand(f, cid, user, x, sizeof(x));
		if (rules[i].access == 4) {
			if (!usable || topic_matches(x, strlen(x), topic, strlen(topic)))
				return false;
		} else if (usable && (rules[i].access & access) &&
			   topic_matches(x, strlen(x), topic, strlen(topic))) {
			granted = true;
		}
	}
	return granted;
}

START_TEST(test_pattern_crosscheck)
{
	static const char *const plevels[] = {"a", "%c", "x%u", "+", "%u", "$%c", "#", "b%c%c"};
	static const char *const ids[] = {"a", "b", "$a", "a/b", "+", "", "#", "ab"};
	static const char *const users[] = {NULL, "a", "b", "$b", "", "a/+"};
	static const char *const tlevels[] = {"a", "b", "xa", "xb", "$a", "$b", "bab", "$ab"};
	const char *kinds[] = {"read", "write", "readwrite", "deny"};
	const uint8_t kind_bits[] = {1, 2, 3, 4};

	int grants = 0, denials = 0;

	srand(11);
	for (int round = 0; round < 3000; round++) {
		struct ref_rule rules[5];
		int nrules = 1 + rand() % 5;
		char text[1024];
		size_t tn = 0;

		for (int i = 0; i < nrules; i++) {
			int levels = 1 + rand() % 3, k = rand() % 4;
			size_t n = 0;

			if (k == 3 && rand() % 2)
				k = rand() % 3; /* fewer denies, so grants get exercised */
			for (int j = 0; j < levels; j++) {
				const char *l = plevels[rand() % 8];

				if (l[0] == '#' && j + 1 < levels)
					l = "+";
				if (l[0] == '$' && j > 0)
					l = "%c";
				n += (size_t)snprintf(rules[i].filter + n,
						      sizeof(rules[i].filter) - n, "%s%s",
						      j ? "/" : "", l);
			}
			rules[i].access = kind_bits[k];
			tn += (size_t)snprintf(text + tn, sizeof(text) - tn, "pattern %s %s\n",
					       kinds[k], rules[i].filter);
		}
		struct acl *a = load(text);

		for (int t = 0; t < 40; t++) {
			const char *cid = ids[rand() % 8], *user = users[rand() % 6];
			char topic[64];
			int levels = 1 + rand() % 3;
			size_t n = 0;

			for (int j = 0; j < levels; j++) {
				const char *l = tlevels[rand() % 8];

				if (l[0] == '$' && j > 0)
					l = "a";
				n += (size_t)snprintf(topic + n, sizeof(topic) - n, "%s%s",
						      j ? "/" : "", l);
			}
			for (uint8_t acc = 1; acc <= 2; acc++) {
				bool got = chk(a, cid, user, topic, acc);

				ck_assert_msg(got ==
						  ref_check(rules, nrules, cid, user, topic, acc),
					      "%s| cid '%s' user '%s' topic '%s' access %d", text,
					      cid, user ? user : "(none)", topic, acc);
				if (got)
					grants++;
				else
					denials++;
			}
		}
		acl_free(a);
	}
	/* Both answers were exercised, not just the easy one. */
	ck_assert_int_gt(grants, 5000);
	ck_assert_int_gt(denials, 5000);
}
END_TEST

/* A long client id in a pattern with many placeholders: longer than any
 * topic, so it matches nothing, and nothing huge is built. */
START_TEST(test_pattern_long_expansion)
{
	struct acl *a = load("topic read y/#\n"
			     "pattern read x/%c%c%c%c/#\n"
			     "pattern deny y/%c%c%c%c\n");
	char *id = malloc(20001), *topic = malloc(20010);

	memset(id, 'i', 20000);
	id[20000] = '\0';
	snprintf(topic, 20010, "x/%s", id);
	ck_assert(!chk(a, id, NULL, topic, R));
	ck_assert(!sub(a, id, NULL, "x/#"));
	ck_assert(sub(a, id, NULL, "y/+"));
	ck_assert(chk(a, id, NULL, "y/z", R));
	ck_assert(chk(a, "ab", NULL, "x/abababab/q", R));
	ck_assert(!chk(a, "ab", NULL, "y/abababab", R));
	free(id);
	free(topic);
	acl_free(a);
}
END_TEST

/* ---- '$' topics ---- */

START_TEST(test_dollar_topics)
{
	struct acl *a = load("topic readwrite #\n"
			     "topic read +/uptime\n"
			     "user admin\n"
			     "topic read $SYS/#\n"
			     "topic readwrite #\n"
			     "topic deny #\n" /* a leading '#' never meets '$' topics */
			     "user ops\n"
			     "topic read $SYS/broker/+\n");

	ck_assert(!chk(a, "c", NULL, "$SYS/broker/uptime", R));
	ck_assert(!chk(a, "c", NULL, "$SYS/uptime", R));
	ck_assert(!chk(a, "c", NULL, "$foo", W));
	ck_assert(chk(a, "c", NULL, "foo", W));
	ck_assert(!sub(a, "c", NULL, "$SYS/#"));
	ck_assert(!sub(a, "c", NULL, "$SYS/broker/uptime"));
	ck_assert(sub(a, "c", NULL, "#"));

	ck_assert(chk(a, "c", "admin", "$SYS/broker/uptime", R));
	ck_assert(!chk(a, "c", "admin", "$SYS/broker/uptime", W));
	ck_assert(!chk(a, "c", "admin", "foo", R));
	ck_assert(sub(a, "c", "admin", "$SYS/#"));
	ck_assert(!sub(a, "c", "admin", "#"));

	ck_assert(chk(a, "c", "ops", "$SYS/broker/load", R));
	ck_assert(!chk(a, "c", "ops", "$SYS/broker/load/1", R));
	ck_assert(sub(a, "c", "ops", "$SYS/#"));
	ck_assert(sub(a, "c", "ops", "$SYS/+/load"));
	ck_assert(!sub(a, "c", "ops", "$SYS/other/#"));
	ck_assert(!sub(a, "c", "ops", "#"));
	ck_assert(!sub(a, "c", "ops", "+/broker/load"));
	acl_free(a);
}
END_TEST

/* ---- the subscribe decision ---- */

struct sub_row {
	const char *acl;
	const char *filter;
	bool granted;
};

static const struct sub_row sub_rows[] = {
    /* exact, wildcards on either side */
    {"topic read a/b\n", "a/b", true},
    {"topic read a/b\n", "a/c", false},
    {"topic read a/b\n", "a/+", true},
    {"topic read a/b\n", "#", true},
    {"topic read a/b\n", "+/+/+", false},
    {"topic read a/+\n", "a/b", true},
    {"topic read a/+\n", "a/b/c", false},
    {"topic read a/+/c\n", "a/b/+", true},
    {"topic read a/#\n", "a", true},
    {"topic read a/#\n", "a/b/c/d", true},
    {"topic read a/#\n", "b/#", false},
    {"topic read a\n", "a/#", true},
    {"topic read a/b/c\n", "a/#", true},
    {"topic read +/+\n", "a/#", true},
    {"topic read #\n", "+/+/+", true},
    {"topic read a/b\n", "a/b/#", true},
    {"topic read a/b/#\n", "a/+", true},
    /* write-only grants make nothing readable */
    {"topic write a/#\n", "a/b", false},
    {"topic readwrite a/#\n", "a/b", true},
    /* wholly denied filters get 0x80 */
    {"topic read #\ntopic deny secret/#\n", "secret/x", false},
    {"topic read #\ntopic deny secret/#\n", "secret/#", false},
    {"topic read #\ntopic deny secret/#\n", "secret", false},
    {"topic read #\ntopic deny secret/+\n", "secret/+", false},
    {"topic read #\ntopic deny secret/+\n", "secret/#", true}, /* 'secret' is readable */
    {"topic read #\ntopic deny +/x\n", "a/x", false},
    {"topic read a/#\ntopic deny a/b\n", "a/b", false},
    {"topic read a/#\ntopic deny a/b\n", "a/+", true}, /* partially readable */
    {"topic read a/b\ntopic read a/c\ntopic deny a/b\n", "a/+", true},
    {"topic read a/b\ntopic read c/d\ntopic deny a/#\n", "+/+", true},
    {"topic read a/b\ntopic deny a/#\n", "+/+", false},
    /* Coverage by two denies together is not attempted: granted, and each
     * delivery is checked (conservative, never a wrong refusal). */
    {"topic read a/#\ntopic deny a\ntopic deny a/+/#\n", "a/#", true},
    /* patterns grant and deny in the decision too */
    {"pattern read dev/%c/#\n", "dev/cid/status", true},
    {"pattern read dev/%c/#\n", "dev/+/status", true},
    {"pattern read dev/%c/#\n", "dev/other/status", false},
    {"topic read #\npattern deny dev/%c/#\n", "dev/cid/x", false},
    {"topic read #\npattern deny dev/%c/#\n", "dev/+/x", true},
};

START_TEST(test_subscribe_table)
{
	const struct sub_row *r = &sub_rows[_i];
	struct acl *a = load(r->acl);

	ck_assert_msg(sub(a, "cid", NULL, r->filter) == r->granted, "%s| %s: expected %s", r->acl,
		      r->filter, r->granted ? "granted" : "0x80");
	acl_free(a);
}
END_TEST

/*
 * Every topic of a small universe against random ACLs and filters: a refused
 * filter must match no readable topic (refusals are exact), and when the ACL
 * has no deny rule, a granted filter must match some readable topic.
 */
static const char *const universe_levels[] = {"a", "b", "$s"};

static void random_filter(char *buf, size_t cap, bool allow_dollar)
{
	int levels = 1 + rand() % 3;
	size_t n = 0;

	for (int i = 0; i < levels; i++) {
		int k = rand() % 6;
		const char *l;

		if (k == 5 && i + 1 == levels)
			l = "#";
		else if (k >= 3)
			l = "+";
		else
			l = universe_levels[k];
		if (l[0] == '$' && (i > 0 || !allow_dollar))
			l = "a";
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "/" : "", l);
	}
}

static bool any_readable(const struct acl *a, const char *cid, const char *filter)
{
	char topic[64];

	for (int levels = 1; levels <= 4; levels++) {
		int combos = 1;

		for (int i = 0; i < levels; i++)
			combos *= 3;
		for (int c = 0; c < combos; c++) {
			size_t n = 0;
			int x = c;

			for (int i = 0; i < levels; i++, x /= 3) {
				const char *l = universe_levels[x % 3];

				n += (size_t)snprintf(topic + n, sizeof(topic) - n, "%s%s",
						      i ? "/" : "", l);
			}
			if (topic_matches(filter, strlen(filter), topic, n) &&
			    acl_check(a, cid, NULL, topic, n, ACL_READ))
				return true;
		}
	}
	return false;
}

START_TEST(test_subscribe_crosscheck)
{
	int granted_n = 0, refused_n = 0;

	srand(7);
	for (int round = 0; round < 3000; round++) {
		char text[512], filter[64];
		size_t n = 0;
		int rules = 1 + rand() % 4;
		bool with_deny = round % 2 == 0;
		/* Patterns put the client id where a 'b' level would be. */
		static const char *const cids[] = {"b", "b", "a", "a/b", "+", "$s"};
		const char *cid = cids[rand() % 6];

		for (int i = 0; i < rules; i++) {
			char f[64], g[64];
			const char *kind = "read";
			bool pattern = rand() % 3 == 0;

			random_filter(f, sizeof(f), true);
			if (with_deny && rand() % 3 == 0)
				kind = "deny";
			else if (rand() % 4 == 0)
				kind = "write";
			if (pattern) {
				size_t gn = 0;

				for (const char *c = f; *c; c++) {
					bool lone_b = *c == 'b' && (c == f || c[-1] == '/') &&
						      (c[1] == '/' || c[1] == '\0');

					gn += (size_t)snprintf(g + gn, sizeof(g) - gn, "%s",
							       lone_b ? "%c" : (char[2]){*c, 0});
				}
				n += (size_t)snprintf(text + n, sizeof(text) - n, "pattern %s %s\n",
						      kind, g);
			} else {
				n += (size_t)snprintf(text + n, sizeof(text) - n, "topic %s %s\n",
						      kind, f);
			}
		}
		random_filter(filter, sizeof(filter), true);

		struct acl *a = load(text);
		bool granted = sub(a, cid, NULL, filter);
		bool readable = any_readable(a, cid, filter);

		if (!granted)
			ck_assert_msg(!readable, "refused but readable: %s| %s (cid %s)", text,
				      filter, cid);
		if (!with_deny)
			ck_assert_msg(granted == readable,
				      "%s| %s (cid %s): granted %d readable %d", text, filter, cid,
				      granted, readable);
		if (granted)
			granted_n++;
		else
			refused_n++;
		acl_free(a);
	}
	ck_assert_int_gt(granted_n, 500);
	ck_assert_int_gt(refused_n, 500);
}
END_TEST

/*
 * The SUBSCRIBE decision against the algorithm it replaced, kept here as
 * the oracle: for each filter, gather every deny that applies to the
 * client (a hostile value in a deny pattern refuses everything), expand
 * every granting pattern, and grant when the filter's intersection with
 * some read grant is not wholly inside a single deny. It works on the rules
 * as the generator wrote them, not on anything acl.c built.
 */
struct orule {
	char filter[80];
	int block;      /* -1: a pattern; 0: the anonymous block; k: user ublocks[k - 1] */
	uint8_t access; /* 1 read, 2 write, 3 readwrite, 4 deny */
};

static const char *const ublocks[] = {"a", "b", "u1"};

struct ospan {
	const char *s;
	size_t n;
};

static bool ospan_is(const struct ospan *sp, char c)
{
	return sp->n == 1 && sp->s[0] == c;
}

static bool ospan_dollar(const struct ospan *sp)
{
	return sp->n > 0 && sp->s[0] == '$' && !ospan_is(sp, '+') && !ospan_is(sp, '#');
}

static int osplit(const char *s, struct ospan *out)
{
	int n = 0;

	for (;;) {
		const char *e = strchr(s, '/');

		out[n].s = s;
		out[n].n = e ? (size_t)(e - s) : strlen(s);
		n++;
		if (e == NULL)
			return n;
		s = e + 1;
	}
}

static int ointersect(const struct ospan *f, int nf, const struct ospan *g, int ng,
		      struct ospan *out)
{
	int n = 0;

	for (int i = 0;; i++) {
		if (i == nf || i == ng) {
			if (i == nf && i == ng)
				return n;
			if ((i < nf && ospan_is(&f[i], '#')) || (i < ng && ospan_is(&g[i], '#')))
				return n;
			return 0;
		}
		if (ospan_is(&f[i], '#') || ospan_is(&g[i], '#')) {
			const struct ospan *rest = ospan_is(&f[i], '#') ? g : f;
			int nrest = rest == g ? ng : nf;

			if (i == 0 && ospan_dollar(&rest[0]))
				return 0;
			for (int k = i; k < nrest; k++)
				out[n++] = rest[k];
			return n;
		}
		if (ospan_is(&f[i], '+')) {
			if (i == 0 && ospan_dollar(&g[i]))
				return 0;
			out[n++] = g[i];
		} else if (ospan_is(&g[i], '+')) {
			if (i == 0 && ospan_dollar(&f[i]))
				return 0;
			out[n++] = f[i];
		} else if (f[i].n == g[i].n && memcmp(f[i].s, g[i].s, f[i].n) == 0) {
			out[n++] = f[i];
		} else {
			return 0;
		}
	}
}

static bool ocontained(const struct ospan *x, int nx, const struct ospan *d, int nd)
{
	if ((ospan_is(&d[0], '+') || ospan_is(&d[0], '#')) && ospan_dollar(&x[0]))
		return false;
	for (int i = 0; i < nd; i++) {
		if (ospan_is(&d[i], '#'))
			return true;
		if (i == nx || ospan_is(&x[i], '#'))
			return false;
		if (ospan_is(&d[i], '+'))
			continue;
		if (ospan_is(&x[i], '+') || x[i].n != d[i].n || memcmp(x[i].s, d[i].s, d[i].n) != 0)
			return false;
	}
	return nx == nd;
}

/* What a pattern is for the client: -1 skipped, 0 unusable, 1 usable
 * (then expanded into out). */
static int ofit(const char *f, const char *cid, const char *user, char *out, size_t cap)
{
	bool uses_c = strstr(f, "%c") != NULL, uses_u = strstr(f, "%u") != NULL;

	if (uses_u && user == NULL)
		return -1;
	if ((uses_c && !ref_value_ok(cid)) || (uses_u && !ref_value_ok(user)))
		return 0;
	if ((strncmp(f, "%c", 2) == 0 && cid[0] == '$') ||
	    (strncmp(f, "%u", 2) == 0 && user[0] == '$'))
		return 0;
	ref_expand(f, cid, user, out, cap);
	return 1;
}

static bool oapplies(const struct orule *r, const char *user)
{
	if (r->block < 0)
		return true;
	if (user == NULL)
		return r->block == 0;
	return r->block > 0 && strcmp(ublocks[r->block - 1], user) == 0;
}

/* The decision of the old algorithm; with_denies false leaves every deny
 * rule out (to count the filters a deny cut). */
static bool oracle_decide(const struct orule *rules, int n, const char *cid, const char *user,
			  const char *filter, bool with_denies)
{
	char(*denies)[200] = malloc((size_t)n * sizeof(*denies));
	struct ospan f[64], g[64], x[64], d[64];
	int nf = osplit(filter, f), nd = 0;
	bool ok = false;

	for (int i = 0; i < n; i++) {
		if (!with_denies || rules[i].access != 4 || !oapplies(&rules[i], user))
			continue;
		if (rules[i].block >= 0) {
			snprintf(denies[nd++], sizeof(denies[0]), "%s", rules[i].filter);
			continue;
		}
		int fit = ofit(rules[i].filter, cid, user, denies[nd], sizeof(denies[0]));

		if (fit == 0)
			goto out;
		if (fit == 1)
			nd++;
	}
	for (int i = 0; i < n && !ok; i++) {
		char gbuf[200];
		const char *gs = rules[i].filter;

		if (!(rules[i].access & 1) || !oapplies(&rules[i], user))
			continue;
		if (rules[i].block < 0) {
			if (ofit(rules[i].filter, cid, user, gbuf, sizeof(gbuf)) != 1)
				continue;
			gs = gbuf;
		}
		int ng = osplit(gs, g), nx = ointersect(f, nf, g, ng, x);
		bool denied = false;

		if (nx == 0)
			continue;
		for (int k = 0; k < nd && !denied; k++)
			denied = ocontained(x, nx, d, osplit(denies[k], d));
		ok = !denied;
	}
out:
	free(denies);
	return ok;
}

static bool oracle_may_subscribe(const struct orule *rules, int n, const char *cid,
				 const char *user, const char *filter)
{
	return oracle_decide(rules, n, cid, user, filter, true);
}

/* The per-message check of the rules as written: a rule that applies and
 * matches the topic denies (as does a deny pattern with a value the client
 * cannot give) or grants its access. */
static bool oracle_check(const struct orule *rules, int n, const char *cid, const char *user,
			 const char *topic, uint8_t access)
{
	bool granted = false;

	for (int i = 0; i < n; i++) {
		const struct orule *r = &rules[i];
		char buf[200];
		const char *x = r->filter;

		if (!oapplies(r, user))
			continue;
		if (r->block < 0) {
			int fit = ofit(r->filter, cid, user, buf, sizeof(buf));

			if (fit < 0)
				continue;
			if (fit == 0) {
				if (r->access == 4)
					return false;
				continue;
			}
			x = buf;
		}
		if (!topic_matches(x, strlen(x), topic, strlen(topic)))
			continue;
		if (r->access == 4)
			return false;
		if (r->access & access)
			granted = true;
	}
	return granted;
}

/* The index's subscribe decision on filter, asserted to be the
 * oracle's; text (the ACL) is printed when it is not. */
static bool sub_as_oracle(const struct acl *a, const struct orule *rules, int nrules,
			  const char *text, const char *cid, const char *user, const char *filter)
{
	bool want = oracle_may_subscribe(rules, nrules, cid, user, filter);
	bool got = sub(a, cid, user, filter);

	ck_assert_msg(got == want, "%.600s| cid '%s' user '%s' filter '%s': %s, oracle %s", text,
		      cid, user ? user : "(none)", filter, got ? "granted" : "0x80",
		      want ? "granted" : "0x80");
	return got;
}

/* The per-message check of topic for each access, asserted to be the
 * oracle's; counts the answers in *allowed and *denied. */
static void chk_as_oracle(const struct acl *a, const struct orule *rules, int nrules,
			  const char *text, const char *cid, const char *user, const char *topic,
			  int *allowed, int *denied)
{
	for (uint8_t acc = 1; acc <= 2; acc++) {
		bool ok = chk(a, cid, user, topic, acc);

		ck_assert_msg(ok == oracle_check(rules, nrules, cid, user, topic, acc),
			      "%.600s| cid '%s' user '%s' topic '%s' access %d: %s", text, cid,
			      user ? user : "(none)", topic, acc, ok ? "allowed" : "denied");
		*allowed += ok;
		*denied += !ok;
	}
}

/* A random filter of 1-4 levels from vocab; '#' only last. */
static void olevels(char *buf, size_t cap, const char *const *vocab, int nvocab)
{
	int levels = 1 + rand() % 4;
	size_t n = 0;

	for (int i = 0; i < levels; i++) {
		const char *l = vocab[rand() % nvocab];

		if (l[0] == '#' && i + 1 < levels)
			l = "+";
		n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "/" : "", l);
	}
}

/*
 * Random ACLs (anonymous and user blocks, patterns with %c and %u inside,
 * alone and leading a level, denies, wildcards, '$' levels), random
 * clients (hostile ids and usernames among them) and random filters: the
 * indexed decision gives exactly the oracle's answer. Some ACLs are large,
 * so that the indexes share nodes.
 */
START_TEST(test_subscribe_oracle)
{
	static const char *const tlevels[] = {"a", "b", "ab", "$a", "xa", "+", "#", "%c"};
	static const char *const plevels[] = {"a", "b", "%c",  "%u",  "x%u",
					      "+", "#", "$%c", "b%c", "%c%u"};
	static const char *const flevels[] = {"a", "b", "ab", "xa", "$a", "$b",
					      "+", "#", "xb", "bb", "ba", "%c"};
	static const char *const ids[] = {"a", "b", "ab", "c", "a", "b", "$a", "a/b", "+", "", "#"};
	static const char *const users[] = {NULL, "a", "b", "u1", "$b", "", "a/+", "zz"};
	static const char *const kinds[] = {"", "read", "write", "readwrite", "deny"};
	int granted = 0, refused = 0, cut = 0, checked_ok = 0, checked_no = 0;

	srand(2026);
	for (int round = 0; round < 2500; round++) {
		int nrules = round % 50 == 0 ? 150 + rand() % 100 : 1 + rand() % 10;
		struct orule *rules = calloc((size_t)nrules, sizeof(*rules));
		size_t cap = 64 + (size_t)nrules * 120, tn = 0;
		char *text = malloc(cap);
		int cur = 0;

		for (int i = 0; i < nrules; i++) {
			struct orule *r = &rules[i];
			bool pattern = rand() % 3 == 0;
			int block = rand() % 4;

			int k = rand() % 20;

			/* read, readwrite, write, deny: 8, 5, 3 and 4 in 20 */
			r->access = k < 8 ? 1 : k < 13 ? 3 : k < 16 ? 2 : 4;
			/* A deny pattern with a hostile value refuses everything:
			 * fewer of them, so that grants get exercised. */
			if (pattern && r->access == 4 && rand() % 3)
				r->access = 1;
			if (pattern) {
				r->block = -1;
				olevels(r->filter, sizeof(r->filter), plevels, 10);
				tn += (size_t)snprintf(text + tn, cap - tn, "pattern %s %s\n",
						       kinds[r->access], r->filter);
				continue;
			}
			/* Blocks in any order; the anonymous block only before the
			 * first `user` line. */
			if (block == 0 && cur != 0)
				block = cur;
			if (block != cur)
				tn += (size_t)snprintf(text + tn, cap - tn, "user %s\n",
						       ublocks[block - 1]);
			cur = block;
			r->block = block;
			olevels(r->filter, sizeof(r->filter), tlevels, 8);
			tn += (size_t)snprintf(text + tn, cap - tn, "topic %s %s\n",
					       kinds[r->access], r->filter);
		}
		struct acl *a = load(text);

		for (int q = 0; q < 40; q++) {
			const char *cid = ids[rand() % 11], *user = users[rand() % 8];
			char filter[80];
			bool got;

			/* Half the filters are a rule's own, with the client's
			 * values in, so that many meet a rule. */
			olevels(filter, sizeof(filter), flevels, 12);
			if (rand() % 2) {
				ref_expand(rules[rand() % nrules].filter, cid, user ? user : "u",
					   filter, sizeof(filter));
				if (topic_filter_validate(filter, strlen(filter)) != TOPIC_OK)
					olevels(filter, sizeof(filter), flevels, 12);
			}
			got = sub_as_oracle(a, rules, nrules, text, cid, user, filter);
			/* A view decides the same, and so does its memory. */
			struct acl_view *v = acl_view_new(a, cid, user);
			struct acl_sub_cost vc = {0};

			ck_assert(acl_view_may_subscribe(v, filter, strlen(filter), &vc) == got);
			ck_assert(acl_view_may_subscribe(v, filter, strlen(filter), &vc) == got);
			ck_assert_uint_eq(vc.reused, 1);
			acl_view_free(v);
			if (got)
				granted++;
			else
				refused++;
			if (!got && oracle_decide(rules, nrules, cid, user, filter, false))
				cut++;
			/* The per-message check of a topic: the filter's own levels,
			 * or a rule's, wildcards made literal. */
			for (char *c = filter; *c; c++)
				if (*c == '+' || *c == '#')
					*c = rand() % 2 ? 'a' : 'b';
			chk_as_oracle(a, rules, nrules, text, cid, user, filter, &checked_ok,
				      &checked_no);
		}
		acl_free(a);
		free(text);
		free(rules);
	}
	/* Both answers were exercised, not just the easy one. */
	printf("acl subscribe oracle: %d granted, %d refused, %d of them by a deny\n", granted,
	       refused, cut);
	ck_assert_int_gt(granted, 15000);
	ck_assert_int_gt(refused, 50000);
	ck_assert_int_gt(cut, 1500);
	printf("acl check oracle: %d allowed, %d denied\n", checked_ok, checked_no);
	ck_assert_int_gt(checked_ok, 10000);
	ck_assert_int_gt(checked_no, 50000);
}
END_TEST

/*
 * The shapes that the grandchild index and the deny pattern index serve,
 * against the oracle: many literal first levels (more than it takes to get
 * a grandchild index) each with a random rest of wildcards, placeholders
 * and literals, as `topic` and `pattern` rules, read, write and deny, in
 * the anonymous and user blocks; filters with `+` before literal levels
 * (the client's values among them), and topics, some under `$`.
 */
START_TEST(test_oracle_siblings)
{
	static const char *const rest[] = {"a", "b", "%c", "%u", "x%c", "+", "#", "$a"};
	static const char *const flevels[] = {"a", "b", "+", "#", "c1", "u1", "xc1", "s1", "$a"};
	static const char *const ids[] = {"c1", "a", "b", "$a", "a/b", ""};
	static const char *const users[] = {NULL, "u1", "a", "b", "$b", "a/+"};
	static const char *const kinds[] = {"", "read", "write", "readwrite", "deny"};
	int granted = 0, refused = 0, allowed = 0, denied = 0;

	srand(4711);
	for (int round = 0; round < 400; round++) {
		int nrules = 10 + rand() % 80, nsib = 8 + rand() % 16, cur = 0;
		struct orule *rules = calloc((size_t)nrules, sizeof(*rules));
		size_t cap = 64 + (size_t)nrules * 120, tn = 0;
		char *text = malloc(cap);

		for (int i = 0; i < nrules; i++) {
			struct orule *r = &rules[i];
			int levels = rand() % 4, k = rand() % 20;
			size_t n;

			r->access = k < 8 ? 1 : k < 12 ? 3 : k < 15 ? 2 : 4;
			r->block = rand() % 3 == 0 ? -1 : rand() % 3;
			if (r->block > 0 && r->block < cur)
				r->block = cur;
			/* Mostly a sibling first level; a few wildcards and '$'. */
			n = (size_t)snprintf(r->filter, sizeof(r->filter), "%s%d",
					     rand() % 10 ? "s" : "$s", rand() % nsib);
			if (rand() % 12 == 0)
				n = (size_t)snprintf(r->filter, sizeof(r->filter), "%s",
						     rand() % 2 ? "+" : "%c");
			for (int j = 0; j < levels; j++) {
				const char *l = rest[rand() % 8];

				if (l[0] == '#' && j + 1 < levels)
					l = "a";
				if (r->block >= 0 && strchr(l, '%') != NULL)
					l = "b";
				n += (size_t)snprintf(r->filter + n, sizeof(r->filter) - n, "/%s",
						      l);
			}
			if (r->block >= 0 && strchr(r->filter, '%') != NULL)
				r->filter[0] = 'z';
			if (r->block < 0 && r->access == 4 && rand() % 4)
				r->access = 1; /* fewer hostile denies */
			if (r->block < 0) {
				tn += (size_t)snprintf(text + tn, cap - tn, "pattern %s %s\n",
						       kinds[r->access], r->filter);
				continue;
			}
			if (r->block == 0 && cur != 0)
				r->block = cur;
			if (r->block != cur)
				tn += (size_t)snprintf(text + tn, cap - tn, "user %s\n",
						       ublocks[r->block - 1]);
			cur = r->block;
			tn += (size_t)snprintf(text + tn, cap - tn, "topic %s %s\n",
					       kinds[r->access], r->filter);
		}
		struct acl *a = load(text);

		for (int q = 0; q < 60; q++) {
			const char *cid = ids[rand() % 6], *user = users[rand() % 6];
			char filter[80], topic[80];
			int levels = 1 + rand() % 3;
			size_t n;

			/* '+' first, or a sibling; then literal levels mostly. */
			n = (size_t)snprintf(filter, sizeof(filter), "%s",
					     rand() % 3   ? "+"
					     : rand() % 2 ? "s1"
							  : "$s1");
			for (int j = 0; j < levels; j++) {
				const char *l = flevels[rand() % 9];

				if (l[0] == '#' && j + 1 < levels)
					l = "+";
				if (l[0] == '$' && rand() % 2)
					l = "a";
				n += (size_t)snprintf(filter + n, sizeof(filter) - n, "/%s", l);
			}
			bool got = sub_as_oracle(a, rules, nrules, text, cid, user, filter);

			granted += got;
			refused += !got;
			/* A topic under a sibling, from the filter's levels. */
			snprintf(topic, sizeof(topic), "%s%d%s", rand() % 8 ? "s" : "$s",
				 rand() % nsib, strchr(filter, '/'));
			for (char *c = topic; *c; c++)
				if (*c == '+' || *c == '#')
					*c = rand() % 2 ? 'a' : 'b';
			chk_as_oracle(a, rules, nrules, text, cid, user, topic, &allowed, &denied);
		}
		acl_free(a);
		free(text);
		free(rules);
	}
	printf("acl sibling oracle: %d granted, %d refused, %d allowed, %d denied\n", granted,
	       refused, allowed, denied);
	ck_assert_int_gt(granted, 2000);
	ck_assert_int_gt(refused, 2000);
	ck_assert_int_gt(allowed, 2000);
	ck_assert_int_gt(denied, 2000);
}
END_TEST

/*
 * The work of a SUBSCRIBE does not grow with the rules: 6,000 rules
 * (read rules, read patterns and denies, with distinct first levels) and
 * 14,000 filters, some granted, some cut by a deny, some meeting no rule,
 * cost a few rule comparisons per filter where the algorithm this replaced
 * made 6,000 (and expanded 2,000 patterns) for each. Counted, not timed.
 * A sample of the answers is checked against the oracle.
 */
static void cost_case_max(const char *text, struct orule *rules, int nrules, char **filters,
			  int nfilters, const char *cid, const char *user, size_t max_nodes)
{
	struct acl *a = load(text);
	struct acl_sub_cost cost = {0};
	int granted = 0;

	for (int i = 0; i < nfilters; i++) {
		bool got =
		    acl_may_subscribe_counted(a, cid, user, filters[i], strlen(filters[i]), &cost);

		granted += got;
		if (i % 97 == 0)
			ck_assert_msg(
			    got == oracle_may_subscribe(rules, nrules, cid, user, filters[i]), "%s",
			    filters[i]);
	}
	printf("acl subscribe cost: %d rules, %d filters (%d granted): %zu nodes, %zu grant "
	       "and %zu deny comparisons\n",
	       nrules, nfilters, granted, cost.nodes, cost.grants, cost.denies);
	ck_assert_int_gt(granted, nfilters / 4);
	ck_assert_int_lt(granted, nfilters);
	/* The old algorithm: nrules x nfilters comparisons, 84,000,000 here. */
	ck_assert_uint_le(cost.grants, 2 * (size_t)nfilters);
	ck_assert_uint_le(cost.denies, 2 * (size_t)nfilters);
	ck_assert_uint_le(cost.nodes, max_nodes * (size_t)nfilters);
	acl_free(a);
}

static void cost_case(const char *text, struct orule *rules, int nrules, char **filters,
		      int nfilters, const char *cid, const char *user)
{
	cost_case_max(text, rules, nrules, filters, nfilters, cid, user, 12);
}

START_TEST(test_subscribe_cost)
{
	enum { NRULES = 6000, NFILTERS = 14000 };
	struct orule *rules = calloc(NRULES, sizeof(*rules));
	char **filters = calloc(NFILTERS, sizeof(*filters));
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);

	/* Distinct first levels: 3,000 read rules, 1,000 denies cutting a
	 * third of them, 2,000 read patterns on the client id. */
	for (int i = 0; i < NRULES; i++) {
		struct orule *r = &rules[i];

		if (i < 3000)
			snprintf(r->filter, sizeof(r->filter), "r%d/+/state", i), r->access = 1;
		else if (i < 4000)
			snprintf(r->filter, sizeof(r->filter), "r%d/secret/state", (i - 3000) * 3),
			    r->access = 4;
		else
			snprintf(r->filter, sizeof(r->filter), "p%d/%%c/#", i - 4000),
			    r->access = 1, r->block = -1;
		n += (size_t)snprintf(text + n, cap - n, "%s %s %s\n",
				      r->block < 0 ? "pattern" : "topic",
				      r->access == 4 ? "deny" : "read", r->filter);
	}
	for (int i = 0; i < NFILTERS; i++) {
		filters[i] = malloc(64);
		switch (i % 5) {
		case 0:
			snprintf(filters[i], 64, "r%d/dev/state", i % 3000);
			break;
		case 1:
			snprintf(filters[i], 64, "r%d/secret/state", i % 3000);
			break;
		case 2:
			snprintf(filters[i], 64, "p%d/dev1/x/+", i % 2000);
			break;
		case 3:
			snprintf(filters[i], 64, "p%d/other/#", i % 2000);
			break;
		default:
			snprintf(filters[i], 64, "none%d/+/state", i);
			break;
		}
	}
	cost_case(text, rules, NRULES, filters, NFILTERS, "dev1", NULL);

	/* One shared first level (site/N/+/temp), as in the benchmark below:
	 * an index of first levels alone would not help here. */
	n = 0;
	for (int i = 0; i < NRULES; i++) {
		snprintf(rules[i].filter, sizeof(rules[i].filter), i ? "site/%d/+/temp" : "site/#",
			 i);
		rules[i].access = i % 10 == 9 ? 4 : 1;
		rules[i].block = 0;
		n += (size_t)snprintf(text + n, cap - n, "topic %s %s\n",
				      rules[i].access == 4 ? "deny" : "read", rules[i].filter);
	}
	for (int i = 0; i < NFILTERS; i++)
		snprintf(filters[i], 64, "site/%d/%s/%s", i % 7000, i % 3 ? "k" : "+",
			 i % 4 ? "temp" : "hum");
	cost_case(text, rules, NRULES, filters, NFILTERS, "dev1", NULL);

	/* Filters that meet every grant, where one deny cuts each meeting:
	 * the walk sees that the deny covers all it would find below. */
	n = 0;
	for (int i = 0; i < NRULES; i++) {
		snprintf(rules[i].filter, sizeof(rules[i].filter), i ? "a/%d/#" : "a/+/secret", i);
		rules[i].access = i ? 1 : 4;
		n += (size_t)snprintf(text + n, cap - n, "topic %s %s\n", i ? "read" : "deny",
				      rules[i].filter);
	}
	for (int i = 0; i < NFILTERS; i++) {
		static const char *const cut[] = {"+/+/secret", "a/+/secret", "a/+/x/#"};

		if (i % 4 < 3)
			snprintf(filters[i], 64, "%s", cut[i % 4]);
		else
			snprintf(filters[i], 64, "a/%d/x", 1 + i % 5000);
	}
	cost_case(text, rules, NRULES, filters, NFILTERS, "dev1", NULL);

	for (int i = 0; i < NFILTERS; i++)
		free(filters[i]);
	free(filters);
	free(rules);
	free(text);
}
END_TEST

/*
 * Many distinct levels with %c and %u at one node (enough for a template
 * index: literal runs before, between and after the placeholders), in
 * read, write and deny patterns beside topic rules, against the oracle:
 * filters and topics made of such levels with the client's values in, or
 * near misses, or wildcards.
 */
START_TEST(test_oracle_templates)
{
	static const char *const pre[] = {"", "a", "ab", "x", "a-", ""};
	static const char *const ph[] = {"%c", "%u", "%c%u", "%u-%c"};
	static const char *const post[] = {"", "1", "-1", "b", "ab", "%c"};
	static const char *const ids[] = {"c1", "a", "ab", "$a", "a/b", "", "1"};
	static const char *const users[] = {NULL, "u1", "a", "b", "$b", "a/+"};
	static const char *const kinds[] = {"", "read", "write", "readwrite", "deny"};
	int granted = 0, refused = 0, allowed = 0, denied = 0;

	srand(99);
	for (int round = 0; round < 300; round++) {
		int nrules = 40 + rand() % 80;
		struct orule *rules = calloc((size_t)nrules, sizeof(*rules));
		size_t cap = 64 + (size_t)nrules * 120, tn = 0;
		char *text = malloc(cap);
		char lv[16][40];

		/* This round's levels with placeholders. */
		for (int j = 0; j < 16; j++)
			snprintf(lv[j], sizeof(lv[j]), "%s%s%s", pre[rand() % 6], ph[rand() % 4],
				 post[rand() % 6]);
		for (int i = 0; i < nrules; i++) {
			struct orule *r = &rules[i];
			int k = rand() % 20;

			r->access = k < 8 ? 1 : k < 12 ? 3 : k < 15 ? 2 : 4;
			r->block = rand() % 5 ? -1 : 0;
			if (r->block < 0) {
				/* t/<template>[/<rest>] or <template>/<rest> */
				const char *rest = rand() % 3 ? "#" : rand() % 2 ? "y" : "+";

				if (rand() % 4 == 0)
					snprintf(r->filter, sizeof(r->filter), "%s/%s",
						 lv[rand() % 16], rest);
				else if (rand() % 2)
					snprintf(r->filter, sizeof(r->filter), "t/%s/%s",
						 lv[rand() % 16], rest);
				else
					snprintf(r->filter, sizeof(r->filter), "t/%s",
						 lv[rand() % 16]);
				if (r->access == 4 && rand() % 3)
					r->access = 1;
				tn += (size_t)snprintf(text + tn, cap - tn, "pattern %s %s\n",
						       kinds[r->access], r->filter);
			} else {
				snprintf(r->filter, sizeof(r->filter), "t/%s/#",
					 rand() % 2 ? "a" : "+");
				tn += (size_t)snprintf(text + tn, cap - tn, "topic %s %s\n",
						       kinds[r->access], r->filter);
			}
		}
		struct acl *a = load(text);

		for (int q = 0; q < 60; q++) {
			const char *cid = ids[rand() % 7], *user = users[rand() % 6];
			char level[80], filter[120], topic[120];

			/* A level: one of the templates for this client, or for
			 * another, or a wildcard. */
			ref_expand(lv[rand() % 16], rand() % 4 ? cid : "c2",
				   user != NULL && rand() % 4 ? user : "u2", level, sizeof(level));
			if (strpbrk(level, "+#/") != NULL || level[0] == '\0')
				snprintf(level, sizeof(level), "a");
			switch (rand() % 4) {
			case 0:
				snprintf(filter, sizeof(filter), "t/%s", level);
				break;
			case 1:
				snprintf(filter, sizeof(filter), "t/%s/y", level);
				break;
			case 2:
				snprintf(filter, sizeof(filter), "%s/+", level);
				break;
			default:
				snprintf(filter, sizeof(filter), "+/%s/#", level);
				break;
			}
			if (filter[0] == '$' && rand() % 2)
				filter[0] = 'z';
			bool got = sub_as_oracle(a, rules, nrules, text, cid, user, filter);

			granted += got;
			refused += !got;
			snprintf(topic, sizeof(topic), "%s", filter);
			for (char *c = topic; *c; c++)
				if (*c == '+' || *c == '#')
					*c = rand() % 2 ? 't' : 'y';
			chk_as_oracle(a, rules, nrules, text, cid, user, topic, &allowed, &denied);
		}
		acl_free(a);
		free(text);
		free(rules);
	}
	printf("acl template oracle: %d granted, %d refused, %d allowed, %d denied\n", granted,
	       refused, allowed, denied);
	ck_assert_int_gt(granted, 1500);
	ck_assert_int_gt(refused, 1500);
	ck_assert_int_gt(allowed, 1500);
	ck_assert_int_gt(denied, 1500);
}
END_TEST

/*
 * 5,000 deny patterns and 5,000 read patterns that differ only in the
 * literal runs around %c at one level: a check and a SUBSCRIBE compare
 * the level with the few templates whose longest run it holds (through
 * the template index), not with all 5,000.
 */
START_TEST(test_cost_templates)
{
	enum { N = 5000, NQ = 20000 };
	struct orule *rules = calloc(2 * N + 1, sizeof(*rules));
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	struct acl_sub_cost cost = {0}, scost = {0};
	int allowed = 0, granted = 0;
	struct acl *a;

	for (int i = 0; i < 2 * N + 1; i++) {
		struct orule *r = &rules[i];

		if (i < N)
			snprintf(r->filter, sizeof(r->filter), "d%%c-%d/#", i), r->access = 4;
		else if (i < 2 * N)
			snprintf(r->filter, sizeof(r->filter), "r/%d%%u/x", i - N), r->access = 1;
		else
			snprintf(r->filter, sizeof(r->filter), "#"), r->access = 2;
		r->block = -1;
		n += (size_t)snprintf(text + n, cap - n, "pattern %s %s\n",
				      r->access == 4   ? "deny"
				      : r->access == 1 ? "read"
						       : "write",
				      r->filter);
	}
	a = load(text);
	for (int i = 0; i < NQ; i++) {
		char t[64];
		bool got;

		snprintf(t, sizeof(t), i % 2 ? "dc1-%d/x" : "dc2-%d/x", i % N);
		got = acl_check_counted(a, "c1", "alice", t, strlen(t), W, &cost);
		allowed += got;
		if (i % 97 == 0)
			ck_assert_msg(got == oracle_check(rules, 2 * N + 1, "c1", "alice", t, W),
				      "%s", t);
		snprintf(t, sizeof(t), i % 2 ? "r/%dalice/x" : "r/%dbob/+", i % N);
		got = acl_may_subscribe_counted(a, "c1", "alice", t, strlen(t), &scost);
		granted += got;
		if (i % 97 == 0)
			ck_assert_msg(got ==
					  oracle_may_subscribe(rules, 2 * N + 1, "c1", "alice", t),
				      "%s", t);
	}
	printf("acl template cost: %d checks (%d allowed): %zu nodes, %zu template levels; "
	       "%d filters (%d granted): %zu nodes, %zu template levels\n",
	       NQ, allowed, cost.nodes, cost.tmpls, NQ, granted, scost.nodes, scost.tmpls);
	ck_assert_int_eq(allowed, NQ / 2);
	ck_assert_int_eq(granted, NQ / 2);
	/* At most one template per shape (4 here: runs "-N" of 2-5 bytes)
	 * holds the run; before the template index, 5,000 per check. */
	ck_assert_uint_le(cost.tmpls, 4 * (size_t)NQ);
	ck_assert_uint_le(scost.tmpls, 4 * (size_t)NQ);
	acl_free(a);
	free(rules);
	free(text);
}
END_TEST

/*
 * A `+` followed by literal levels against 6,000 literal first levels
 * (`topic read devN/status/#`, `pattern read devN/%c/#`, and
 * `topic read devN/#`; runs of `+` against `devN/status/set`): the walk
 * takes, from the descendant index, only what can meet the level after the
 * run, where it used to visit all 6,000 siblings (and their children) for
 * each filter that nothing grants (84,000,000 nodes in the first case).
 */
START_TEST(test_subscribe_cost_siblings)
{
	enum { NSIB = 6000, NFILTERS = 14000 };
	struct orule *rules = calloc(2 * NSIB, sizeof(*rules));
	char **filters = calloc(NFILTERS, sizeof(*filters));
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);

	for (int i = 0; i < 2 * NSIB; i++) {
		struct orule *r = &rules[i];

		if (i < NSIB)
			snprintf(r->filter, sizeof(r->filter), "dev%d/status/#", i);
		else
			snprintf(r->filter, sizeof(r->filter), "dev%d/%%c/#", i - NSIB),
			    r->block = -1;
		r->access = 1;
		n += (size_t)snprintf(text + n, cap - n, "%s read %s\n",
				      r->block < 0 ? "pattern" : "topic", r->filter);
	}
	for (int i = 0; i < NFILTERS; i++) {
		static const char *const mid[] = {"literal", "status", "c1", "other"};

		filters[i] = malloc(64);
		snprintf(filters[i], 64, "+/%s/x%d%s", mid[i % 4], i, i % 8 < 4 ? "" : "/+");
	}
	cost_case_max(text, rules, 2 * NSIB, filters, NFILTERS, "c1", NULL, 3);

	/* Every sibling grants below: the first one taken answers. */
	n = 0;
	for (int i = 0; i < NSIB; i++) {
		snprintf(rules[i].filter, sizeof(rules[i].filter), "dev%d/#", i);
		rules[i].block = 0;
		n += (size_t)snprintf(text + n, cap - n, "topic read %s\n", rules[i].filter);
	}
	snprintf(rules[NSIB].filter, sizeof(rules[NSIB].filter), "+/literal/#");
	rules[NSIB].access = 4;
	rules[NSIB].block = 0;
	n += (size_t)snprintf(text + n, cap - n, "topic deny +/literal/#\n");
	cost_case_max(text, rules, NSIB + 1, filters, NFILTERS, "c1", NULL, 6);

	/* Runs of `+`: `+/+/L`, `+/+` and `+/+/+` against devN/status/set. */
	n = 0;
	for (int i = 0; i < NSIB; i++) {
		snprintf(rules[i].filter, sizeof(rules[i].filter), "dev%d/status/set", i);
		rules[i].access = 1;
		n += (size_t)snprintf(text + n, cap - n, "topic read %s\n", rules[i].filter);
	}
	for (int i = 0; i < NFILTERS; i++) {
		static const char *const runs[] = {"+/+/temp", "+/+/set", "+/+",
						   "+/+/+",    "+/+/x/y", "+/+/+"};

		snprintf(filters[i], 64, "%s", runs[i % 6]);
	}
	cost_case_max(text, rules, NSIB, filters, NFILTERS, "c1", NULL, 3);

	for (int i = 0; i < NFILTERS; i++)
		free(filters[i]);
	free(filters);
	free(rules);
	free(text);
}
END_TEST

/*
 * The per-message check against 10,000 deny patterns (on the client id
 * and on the username) and a pattern that grants everything: each topic
 * costs a few nodes of the deny index, where every check used to compare
 * the topic with all 10,000. A sample of the answers is checked against the
 * oracle.
 */
START_TEST(test_check_cost_denies)
{
	enum { NDENY = 5000, NTOPICS = 20000 };
	struct orule *rules = calloc(2 * NDENY + 1, sizeof(*rules));
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	struct acl_sub_cost cost = {0};
	int allowed = 0;
	struct acl *a;

	for (int i = 0; i < 2 * NDENY + 1; i++) {
		struct orule *r = &rules[i];

		if (i < NDENY)
			snprintf(r->filter, sizeof(r->filter), "secret%d/%%c/#", i);
		else if (i < 2 * NDENY)
			snprintf(r->filter, sizeof(r->filter), "%%u/%d/+", i - NDENY);
		else
			snprintf(r->filter, sizeof(r->filter), "#");
		r->access = i < 2 * NDENY ? 4 : 3;
		r->block = -1;
		n += (size_t)snprintf(text + n, cap - n, "pattern %s %s\n",
				      r->access == 4 ? "deny" : "readwrite", r->filter);
	}
	a = load(text);
	for (int i = 0; i < NTOPICS; i++) {
		char topic[64];
		bool got;

		switch (i % 4) {
		case 0:
			snprintf(topic, sizeof(topic), "secret%d/c1/x", i % NDENY);
			break;
		case 1:
			snprintf(topic, sizeof(topic), "secret%d/c2/x", i % NDENY);
			break;
		case 2:
			snprintf(topic, sizeof(topic), "alice/%d/%s", i % NDENY,
				 i % 8 < 4 ? "y" : "y/z");
			break;
		default:
			snprintf(topic, sizeof(topic), "data/%d/x", i);
			break;
		}
		got = acl_check_counted(a, "c1", "alice", topic, strlen(topic), W, &cost);
		allowed += got;
		if (i % 97 == 0)
			ck_assert_msg(
			    got == oracle_check(rules, 2 * NDENY + 1, "c1", "alice", topic, W),
			    "%s", topic);
	}
	printf("acl check cost: %d deny patterns, %d topics (%d allowed): %zu nodes\n", 2 * NDENY,
	       NTOPICS, allowed, cost.nodes);
	ck_assert_int_eq(allowed, NTOPICS / 2 + NTOPICS / 8);
	ck_assert_uint_le(cost.nodes, 6 * (size_t)NTOPICS);
	/* An anonymous client: the %u patterns do not apply to it. */
	ck_assert(chk(a, "c1", NULL, "alice/7/y", W));
	ck_assert(!chk(a, "c1", NULL, "secret7/c1", W));
	/* A client id that cannot be substituted: denied everything. */
	ck_assert(!chk(a, "c/1", NULL, "data/1", W));
	acl_free(a);
	free(rules);
	free(text);
}
END_TEST

/*
 * Filters a client chooses to make a walk take every child: '#' and '+'
 * against 6,000 '$' first levels (a wildcard never meets them) and 6,000
 * patterns on the client id, from a client whose id cannot be substituted
 * (so no pattern grants it anything). Neither is visited.
 */
START_TEST(test_subscribe_cost_wildcards)
{
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	struct acl_sub_cost cost = {0};
	static const char *const filters[] = {"#", "+", "+/y", "+/+/#"};

	for (int i = 0; i < 6000; i++)
		n += (size_t)snprintf(text + n, cap - n,
				      "topic read $dev%d/y\npattern read p%d/%%c/#\n", i, i);
	struct acl *a = load(text);

	for (int i = 0; i < 14000; i++) {
		const char *f = filters[i % 4];

		ck_assert(!acl_may_subscribe_counted(a, "a/b", NULL, f, strlen(f), &cost));
	}
	printf("acl subscribe cost: %s, 14000 wildcard filters: %zu nodes, %zu grant and %zu "
	       "deny comparisons\n",
	       "6000 '$' rules and 6000 patterns", cost.nodes, cost.grants, cost.denies);
	ck_assert_uint_le(cost.nodes, 14000);
	ck_assert_uint_eq(cost.grants, 0);
	/* The same client id, usable: the first pattern met grants. */
	ck_assert(sub(a, "ab", NULL, "#"));
	ck_assert(sub(a, "ab", NULL, "+/ab/+"));
	ck_assert(!sub(a, "ab", NULL, "+/y"));
	ck_assert(sub(a, "ab", NULL, "$dev7/+"));
	acl_free(a);
	free(text);
}
END_TEST

/*
 * A SUBSCRIBE that repeats the one filter that meets every grant, each cut
 * by a deny of its own: one decision costs a comparison per grant (what
 * stays linear), and the view of the packet makes it once.
 */
START_TEST(test_subscribe_view_repeats)
{
	size_t cap = 1 << 20, n = 0;
	char *text = malloc(cap);
	struct acl_sub_cost cost = {0};
	struct acl_view *v;
	struct acl *a;

	for (int i = 0; i < 3000; i++)
		n += (size_t)snprintf(text + n, cap - n,
				      "topic read a/%d/#\ntopic deny a/%d/secret\n", i, i);
	a = load(text);
	v = acl_view_new(a, "dev1", NULL);
	for (int i = 0; i < 14000; i++) {
		const char *f = i % 2 ? "a/+/secret" : "+/+/secret";

		ck_assert(!acl_view_may_subscribe(v, f, strlen(f), &cost));
	}
	ck_assert(acl_view_may_subscribe(v, "a/+/public", 10, &cost));
	printf("acl subscribe cost: 3000 grants each cut by a deny of its own, 14000 filters "
	       "through a view: %zu grant comparisons, %zu decisions remembered\n",
	       cost.grants, cost.reused);
	ck_assert_uint_le(cost.grants, 2 * 3000 + 1);
	ck_assert_uint_eq(cost.reused, 14000 - 2);
	acl_view_free(v);
	ck_assert_ptr_null(acl_view_new(NULL, "dev1", NULL));
	ck_assert(!acl_view_may_subscribe(NULL, "a", 1, NULL));
	acl_view_free(NULL);
	acl_free(a);
	free(text);
}
END_TEST

/* ---- parse errors ---- */

struct err_row {
	const char *text;
	const char *message;
};

static const struct err_row err_rows[] = {
    {"topic read a\nbogus line\n", "t.acl:2: unknown keyword \"bogus\""},
    {"topic\n", "t.acl:1: missing topic"},
    {"# c\npattern   \n", "t.acl:2: missing topic"},
    {"topic reed a/b\n", "t.acl:1: unknown access type \"reed\""},
    {"topic a b\n", "t.acl:1: unknown access type \"a\""},
    {"topic READ a\n", "t.acl:1: unknown access type \"READ\""},
    {"\n\ntopic read a/#/b\n", "t.acl:3: invalid topic filter \"a/#/b\""},
    {"topic read a+\n", "t.acl:1: invalid topic filter \"a+\""},
    {"topic read a # comment\n", "t.acl:1: invalid topic filter \"a # comment\""},
    {"pattern read dev/%c#\n", "t.acl:1: invalid topic filter \"dev/%c#\""},
    {"user\n", "t.acl:1: user without a name"},
    {"user   \t\n", "t.acl:1: user without a name"},
    {"topic read \xff\n", "t.acl:1: invalid UTF-8"},
    {"Topic read a\n", "t.acl:1: unknown keyword \"Topic\""},
    {"users alice\n", "t.acl:1: unknown keyword \"users\""},
};

START_TEST(test_parse_errors)
{
	const struct err_row *r = &err_rows[_i];
	struct acl *a = (struct acl *)(uintptr_t)1;
	char err[256] = "";

	ck_assert_int_eq(acl_parse("t.acl", r->text, strlen(r->text), &a, err, sizeof(err)),
			 ACL_EPARSE);
	ck_assert_ptr_eq(a, (struct acl *)(uintptr_t)1); /* untouched */
	ck_assert_str_eq(err, r->message);
}
END_TEST

START_TEST(test_parse_error_details)
{
	static const char nul[] = "topic read a\ntopic read b\0c\n";
	char err[256] = "", small[12];
	struct acl *a = NULL;
	char *long_topic = malloc(200);

	ck_assert_int_eq(acl_parse("t.acl", nul, sizeof(nul) - 1, &a, err, sizeof(err)),
			 ACL_EPARSE);
	ck_assert_str_eq(err, "t.acl:2: NUL byte in line");
	/* A long bad token is quoted in part. */
	memset(long_topic, 'x', 199);
	long_topic[0] = '+';
	long_topic[199] = '\0';
	char text[300];
	snprintf(text, sizeof(text), "topic read %s\n", long_topic);
	ck_assert_int_eq(acl_parse("t.acl", text, strlen(text), &a, err, sizeof(err)), ACL_EPARSE);
	ck_assert_int_lt(strlen(err), 120);
	ck_assert_ptr_nonnull(strstr(err, "...\""));
	/* A short buffer is truncated, never overrun; NULL is allowed. */
	ck_assert_int_eq(acl_parse("t.acl", "x\n", 2, &a, small, sizeof(small)), ACL_EPARSE);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(acl_parse("t.acl", "x\n", 2, &a, NULL, 0), ACL_EPARSE);
	free(long_topic);
}
END_TEST

/* Random lines from the file's own vocabulary, blanks and bytes: every
 * file loads or fails with "t.acl:LINE: ", and a loaded one answers. */
START_TEST(test_parse_random)
{
	static const char *const words[] = {"topic",     "pattern", "user", "read",     "write",
					    "readwrite", "deny",    "#",    "+",        "a/b",
					    "%c",        "%u",      " ",    "\t",       "\r",
					    "/",         "$SYS",    "x",    "\xc3\xa9", "\xff"};
	int loaded = 0, failed = 0;

	srand(3);
	for (int round = 0; round < 5000; round++) {
		char text[512], err[256];
		size_t n = 0;
		int lines = 1 + rand() % 6;
		struct acl *a = NULL;

		for (int l = 0; l < lines; l++) {
			int nw = rand() % 5;

			for (int k = 0; k < nw; k++)
				n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s",
						      k ? " " : "", words[rand() % 20]);
			text[n++] = '\n';
		}
		if (acl_parse("t.acl", text, n, &a, err, sizeof(err)) == ACL_OK) {
			loaded++;
			(void)chk(a, "c", NULL, "a/b", R);
			(void)chk(a, "c", "x", "$SYS/x", W);
			(void)sub(a, "c", "x", "#");
			acl_free(a);
		} else {
			failed++;
			ck_assert_msg(strncmp(err, "t.acl:", 6) == 0, "%s", err);
		}
	}
	ck_assert_int_gt(loaded, 100);
	ck_assert_int_gt(failed, 100);
}
END_TEST

START_TEST(test_load_file)
{
	char path[] = "/tmp/check_acl_XXXXXX";
	char err[512] = "";
	struct acl *a = NULL;
	int fd = mkstemp(path);
	FILE *f;

	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs("topic read a/#\nuser bob\ntopic write b\n", f);
	fclose(f);
	ck_assert_int_eq(acl_load(path, &a, err, sizeof(err)), ACL_OK);
	ck_assert(chk(a, "c", NULL, "a/x", R));
	ck_assert(chk(a, "c", "bob", "b", W));
	acl_free(a);

	f = fopen(path, "w");
	fputs("topic read a/#\n\ntopic nonsense here\n", f);
	fclose(f);
	a = NULL;
	ck_assert_int_eq(acl_load(path, &a, err, sizeof(err)), ACL_EPARSE);
	ck_assert_ptr_null(a);
	char want[600];
	snprintf(want, sizeof(want), "%s:3: unknown access type \"nonsense\"", path);
	ck_assert_str_eq(err, want);

	unlink(path);
	ck_assert_int_eq(acl_load(path, &a, err, sizeof(err)), ACL_EIO);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	ck_assert_str_eq(err, want);
	ck_assert_ptr_null(a);
	acl_free(NULL);
}
END_TEST

/* The example of cairn-acl(5) does what the page says it does. */
START_TEST(test_man_page_example)
{
	struct acl *a = load("# Anonymous clients may read the public tree and nothing else.\n"
			     "topic read public/#\n"
			     "\n"
			     "# A user whose name contains a space.\n"
			     "user Jane Doe\n"
			     "topic readwrite home/jane/#\n"
			     "topic deny home/jane/secrets/#\n"
			     "topic read $SYS/broker/clients/+\n"
			     "\n"
			     "user monitor\n"
			     "topic read #\n"
			     "topic read $SYS/#\n"
			     "\n"
			     "pattern write devices/%c/telemetry/#\n"
			     "pattern read devices/%c/commands\n"
			     "pattern readwrite users/%u/inbox/#\n"
			     "pattern deny users/+/drafts\n");

	ck_assert(sub(a, "d1", NULL, "#"));
	ck_assert(chk(a, "d1", NULL, "public/news", R));
	ck_assert(chk(a, "d1", NULL, "devices/d1/commands", R));
	ck_assert(!chk(a, "d1", NULL, "devices/d2/commands", R));
	ck_assert(!chk(a, "d1", NULL, "home/jane/x", R));
	ck_assert(!sub(a, "d1", NULL, "home/#"));
	ck_assert(chk(a, "m", "monitor", "$SYS/broker/uptime", R));
	ck_assert(chk(a, "m", "monitor", "anything/at/all", R));
	ck_assert(!chk(a, "m", "monitor", "users/jane/drafts", R));
	ck_assert(!chk(a, "m", "monitor", "anything", W));
	ck_assert(chk(a, "j", "Jane Doe", "home/jane/photos", W));
	ck_assert(!chk(a, "j", "Jane Doe", "home/jane/secrets/pin", R));
	ck_assert(chk(a, "j", "Jane Doe", "$SYS/broker/clients/connected", R));
	ck_assert(chk(a, "j", "Jane Doe", "users/Jane Doe/inbox/1", W));
	ck_assert(!chk(a, "+", NULL, "devices/+/telemetry/t", W));
	ck_assert(!chk(a, "a/#", NULL, "devices/a/telemetry/t", W));
	ck_assert(chk(a, "ok", NULL, "devices/ok/telemetry/t", W));
	acl_free(a);
}
END_TEST

/* ---- the Paho interoperability ACL ---- */

START_TEST(test_conformance_acl)
{
	const char *src = getenv("CAIRN_SRCDIR");
	const char *topics[] = {"TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA"};
	const char *wild[] = {"TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#"};
	char path[4096], err[512] = "";
	struct acl *a = NULL;

	snprintf(path, sizeof(path), "%s/tests/conformance/acl", src != NULL && *src ? src : ".");
	ck_assert_msg(acl_load(path, &a, err, sizeof(err)) == ACL_OK, "%s", err);
	ck_assert(!sub(a, "myclientid", NULL, "test/nosubscribe"));
	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		ck_assert(chk(a, "myclientid", NULL, topics[i], R));
		ck_assert(chk(a, "myclientid", NULL, topics[i], W));
		ck_assert(sub(a, "myclientid", NULL, topics[i]));
	}
	for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++)
		ck_assert(sub(a, "clean retained", NULL, wild[i]));
	ck_assert(chk(a, "myclientid2", NULL, "$TopicA/B", W));
	ck_assert(chk(a, "c", NULL, "fromb/qos 1", W));
	ck_assert(!chk(a, "c", NULL, "test/nosubscribe", R));
	acl_free(a);
}
END_TEST

/* ---- cost of one check ---- */

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void bench(const char *label, const char *text, const char *cid, const char *user,
		  const char *topic, bool expect)
{
	struct acl *a = load(text);
	size_t tlen = strlen(topic);
	int iters = 200000, hits = 0;
	double t0, t1;

	ck_assert(acl_check(a, cid, user, topic, tlen, ACL_READ) == expect);
	t0 = now_ns();
	for (int i = 0; i < iters; i++)
		hits += acl_check(a, cid, user, topic, tlen, ACL_READ);
	t1 = now_ns();
	ck_assert_int_eq(hits, expect ? iters : 0);
	printf("acl bench: %-44s %7.1f ns/check\n", label, (t1 - t0) / iters);
	acl_free(a);
}

START_TEST(test_bench)
{
	size_t cap = 1 << 20, n;
	char *text = malloc(cap);

	/* 1,000 users with one rule each, and 5 patterns. */
	n = 0;
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(text + n, cap - n, "user user%d\ntopic readwrite home/%d/#\n",
				      i, i);
	for (int i = 0; i < 5; i++)
		n += (size_t)snprintf(text + n, cap - n, "pattern read p%d/%%c/#\n", i);
	bench("1,000 users x 1 rule + 5 patterns (grant)", text, "dev", "user500",
	      "home/500/kitchen/temp", true);
	bench("1,000 users x 1 rule + 5 patterns (deny)", text, "dev", "user500",
	      "home/501/kitchen/temp", false);

	/* One block of 1,000 rules. */
	n = 0;
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(text + n, cap - n, "topic read site/%d/+/temp\n", i);
	bench("anonymous block of 1,000 rules (grant)", text, "dev", NULL, "site/999/k/temp", true);
	bench("anonymous block of 1,000 rules (deny)", text, "dev", NULL, "site/999/k/hum", false);

	/* 1,000 patterns: the linear worst case. */
	n = 0;
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(text + n, cap - n, "pattern read s%d/%%c/#\n", i);
	bench("1,000 patterns (last one grants)", text, "dev", NULL, "s999/dev/x", true);
	n += (size_t)snprintf(text + n, cap - n, "pattern deny s0/%%c/never\n");
	bench("1,000 patterns + 1 deny pattern (deny)", text, "dev", NULL, "s999/other/x", false);
	free(text);
}
END_TEST

static Suite *acl_suite(void)
{
	Suite *s = suite_create("acl");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_rule_kinds);
	tcase_add_test(tc, test_deny_precedence);
	tcase_add_test(tc, test_anonymous_and_user_blocks);
	tcase_add_test(tc, test_spaces_comments_and_layout);
	tcase_add_test(tc, test_empty_file_denies_all);
	tcase_add_test(tc, test_pattern_substitution);
	tcase_add_test(tc, test_pattern_hostile_ids);
	tcase_add_test(tc, test_pattern_hostile_ids_deny);
	tcase_add_test(tc, test_pattern_literal_values);
	tcase_add_test(tc, test_pattern_username_absent);
	tcase_add_test(tc, test_pattern_dollar_lead);
	tcase_add_test(tc, test_pattern_crosscheck);
	tcase_add_test(tc, test_pattern_long_expansion);
	tcase_add_test(tc, test_dollar_topics);
	tcase_add_loop_test(tc, test_subscribe_table, 0,
			    (int)(sizeof(sub_rows) / sizeof(sub_rows[0])));
	tcase_add_test(tc, test_subscribe_crosscheck);
	tcase_add_test(tc, test_subscribe_oracle);
	tcase_add_test(tc, test_oracle_siblings);
	tcase_add_test(tc, test_oracle_templates);
	tcase_add_test(tc, test_cost_templates);
	tcase_add_test(tc, test_subscribe_cost);
	tcase_add_test(tc, test_subscribe_cost_wildcards);
	tcase_add_test(tc, test_subscribe_cost_siblings);
	tcase_add_test(tc, test_check_cost_denies);
	tcase_add_test(tc, test_subscribe_view_repeats);
	tcase_add_loop_test(tc, test_parse_errors, 0,
			    (int)(sizeof(err_rows) / sizeof(err_rows[0])));
	tcase_add_test(tc, test_parse_error_details);
	tcase_add_test(tc, test_parse_random);
	tcase_add_test(tc, test_load_file);
	tcase_add_test(tc, test_man_page_example);
	tcase_add_test(tc, test_conformance_acl);
	tcase_add_test(tc, test_bench);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(acl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
