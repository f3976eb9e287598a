/*
 * Unit tests for topic.c (validation, matching, the subscription trie) and
 * retain.c (the retained-message trie). The tries are cross-checked against
 * brute-force topic_matches() over random filters and topics.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "retain.h"
#include "topic.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- helpers ---- */

struct hit {
	void *sub;
	uint8_t qos;
};

struct hits {
	struct hit *v;
	size_t n;
	size_t cap;
};

static void hits_add(void *arg, void *sub, uint8_t qos)
{
	struct hits *h = arg;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 16;
		h->v = realloc(h->v, h->cap * sizeof(*h->v));
		ck_assert_ptr_nonnull(h->v);
	}
	h->v[h->n].sub = sub;
	h->v[h->n].qos = qos;
	h->n++;
}

static int hit_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	if (x->sub != y->sub)
		return (uintptr_t)x->sub < (uintptr_t)y->sub ? -1 : 1;
	return (int)x->qos - (int)y->qos;
}

static void hits_sort(struct hits *h)
{
	if (h->n > 1)
		qsort(h->v, h->n, sizeof(*h->v), hit_cmp);
}

static struct hits match(struct topic_tree *t, const char *topic)
{
	struct hits h = {0};

	topic_tree_match(t, topic, strlen(topic), hits_add, &h);
	hits_sort(&h);
	return h;
}

#define SUB(n) ((void *)(uintptr_t)(n))

/* Deterministic xorshift so property tests repeat exactly. */
static uint32_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

/* A string of n copies of c (n + 1 bytes allocated). */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* "x/x/.../x" with the given number of levels. */
static char *levels(const char *lvl, size_t count)
{
	size_t l = strlen(lvl);
	char *s = malloc(count * (l + 1));
	char *p = s;

	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < count; i++) {
		memcpy(p, lvl, l);
		p += l;
		*p++ = '/';
	}
	p[-1] = '\0';
	return s;
}

/* ---- topic_matches ---- */

static const struct {
	const char *filter;
	const char *topic;
	bool match;
} match_rows[] = {
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b", false},
    {"a/b", "a/b/c", false},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a/b/d", false},
    {"a/+", "a/b/c", false},
    {"a/#", "a", true},
    {"a/#", "a/b", true},
    {"a/#", "a/b/c", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"a/b/#", "a/b", true},
    {"a/b/#", "a", false},
    {"#", "a", true},
    {"#", "/", true},
    {"#", "a/$b", true},
    /* [MQTT-4.7.2-1] '$' topics */
    {"#", "$SYS/x", false},
    {"#", "$SYS", false},
    {"#", "$", false},
    {"+/x", "$SYS/x", false},
    {"+", "$SYS", false},
    {"+/+", "$SYS/x", false},
    {"+/#", "$SYS/x", false},
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/#", "$SYS/x/y", true},
    {"$SYS/+", "$SYS/x", true},
    {"$SYS/+", "$SYS/x/y", false},
    {"$SYS/x", "$SYS/x", true},
    {"$SYS/#", "$sys/x", false},
    {"+/$SYS", "a/$SYS", true},
    {"$foo/#", "$foo/bar", true},
    /* '+' on empty levels, '/' and '//' topics */
    {"a/+/c", "a//c", true},
    {"a/+", "a/", true},
    {"a/+", "a", false},
    {"a/#", "a/", true},
    {"+", "a", true},
    {"+", "/", false},
    {"+/+", "/", true},
    {"/+", "/", true},
    {"+/", "/", true},
    {"/", "/", true},
    {"//", "//", true},
    {"/", "//", false},
    {"//", "/", false},
    {"+/+/+", "//", true},
    {"/#", "/", true},
    {"/#", "a", false},
    {"+/#", "a", true},
    {"sport/+", "sport/", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"a/b", "a/b/", false},
    {"a/b/", "a/b", false},
    /* exact bytes: case, spaces, U+FEFF are significant [MQTT-4.7.3-4] */
    {"A/b", "a/b", false},
    {"a/B", "a/b", false},
    {"ACCOUNTS", "Accounts", false},
    {"a b", "a b", true},
    {"a b", "ab", false},
    {"\xEF\xBB\xBF"
     "a",
     "a", false},
    {"a",
     "\xEF\xBB\xBF"
     "a",
     false},
    {"\xEF\xBB\xBF"
     "a",
     "\xEF\xBB\xBF"
     "a",
     true},
    {"+/b", "\xEF\xBB\xBF/b", true},
    {"caf\xC3\xA9", "cafe\xCC\x81", false},
};

/* covers: MQTT-4.7.2-1 MQTT-4.7.3-4 MQTT-1.5.3-3 */
START_TEST(test_matches_table)
{
	const char *f = match_rows[_i].filter, *t = match_rows[_i].topic;

	ck_assert_msg(topic_filter_validate(f, strlen(f)) == TOPIC_OK, "filter %s invalid", f);
	ck_assert_msg(topic_name_validate(t, strlen(t)) == TOPIC_OK, "topic %s invalid", t);
	ck_assert_msg(topic_matches(f, strlen(f), t, strlen(t)) == match_rows[_i].match,
		      "filter '%s' topic '%s': expected %d", f, t, match_rows[_i].match);
}
END_TEST

/* ---- validation ---- */

static const struct {
	const char *s;
	size_t len;
	int expect;
} name_rows[] = {
    {S("a"), TOPIC_OK},
    {S("/"), TOPIC_OK},
    {S("//"), TOPIC_OK},
    {S("a/b/c"), TOPIC_OK},
    {S("$SYS/x"), TOPIC_OK},
    {S("a b"), TOPIC_OK},
    {S("\xEF\xBB\xBF"
       "a"),
     TOPIC_OK},
    {S("\xF0\x9F\x98\x80"), TOPIC_OK},
    {S(""), TOPIC_EINVAL},
    {S("+"), TOPIC_EINVAL},
    {S("#"), TOPIC_EINVAL},
    {S("a+"), TOPIC_EINVAL},
    {S("a/+/b"), TOPIC_EINVAL},
    {S("a/#"), TOPIC_EINVAL},
    {S("a#b"), TOPIC_EINVAL},
    {S("a\0b"), TOPIC_EINVAL},
    {S("\0"), TOPIC_EINVAL},
    {S("\xC0\x80"), TOPIC_EINVAL}, /* overlong U+0000 */
    {S("\xFF"), TOPIC_EINVAL},
    {S("a\x80"), TOPIC_EINVAL},
    {S("\xE2\x82"), TOPIC_EINVAL},         /* truncated */
    {S("\xED\xA0\x80"), TOPIC_EINVAL},     /* surrogate U+D800 */
    {S("\xF4\x90\x80\x80"), TOPIC_EINVAL}, /* above U+10FFFF */
};

/* covers: MQTT-4.7.1-1 MQTT-3.3.2-2 MQTT-4.7.3-1 MQTT-4.7.3-2 MQTT-1.5.3-1 MQTT-1.5.3-2 */
START_TEST(test_name_table)
{
	ck_assert_msg(topic_name_validate(name_rows[_i].s, name_rows[_i].len) ==
			  name_rows[_i].expect,
		      "row %d", _i);
}
END_TEST

static const struct {
	const char *s;
	size_t len;
	int expect;
} filter_rows[] = {
    {S("a"), TOPIC_OK},
    {S("#"), TOPIC_OK},
    {S("+"), TOPIC_OK},
    {S("a/#"), TOPIC_OK},
    {S("a/+"), TOPIC_OK},
    {S("+/+"), TOPIC_OK},
    {S("/+"), TOPIC_OK},
    {S("+/"), TOPIC_OK},
    {S("/#"), TOPIC_OK},
    {S("+/#"), TOPIC_OK},
    {S("a/+/b"), TOPIC_OK},
    {S("$SYS/#"), TOPIC_OK},
    {S("/"), TOPIC_OK},
    {S("//"), TOPIC_OK},
    {S("\xEF\xBB\xBF/+"), TOPIC_OK},
    {S(""), TOPIC_EINVAL},
    {S("a/#/b"), TOPIC_EINVAL},
    {S("#/"), TOPIC_EINVAL},
    {S("#/a"), TOPIC_EINVAL},
    {S("a+"), TOPIC_EINVAL},
    {S("+a"), TOPIC_EINVAL},
    {S("a/+b"), TOPIC_EINVAL},
    {S("a/b+/c"), TOPIC_EINVAL},
    {S("++"), TOPIC_EINVAL},
    {S("#a"), TOPIC_EINVAL},
    {S("a#"), TOPIC_EINVAL},
    {S("a/b#"), TOPIC_EINVAL},
    {S("a/#b"), TOPIC_EINVAL},
    {S("##"), TOPIC_EINVAL},
    {S("+#"), TOPIC_EINVAL},
    {S("a/\0"), TOPIC_EINVAL},
    {S("\xC0\x80"), TOPIC_EINVAL},
    {S("a/\xFE"), TOPIC_EINVAL},
    {S("\xED\xBF\xBF/#"), TOPIC_EINVAL},
};

/* covers: MQTT-4.7.1-2 MQTT-4.7.1-3 MQTT-4.7.3-1 MQTT-4.7.3-2 MQTT-3.8.3-1 */
START_TEST(test_filter_table)
{
	ck_assert_msg(topic_filter_validate(filter_rows[_i].s, filter_rows[_i].len) ==
			  filter_rows[_i].expect,
		      "row %d", _i);
}
END_TEST

/* covers: MQTT-4.7.3-3 */
START_TEST(test_validate_length)
{
	char *s = repeat('a', TOPIC_MAX_LEN + 1);

	ck_assert_int_eq(topic_name_validate(s, TOPIC_MAX_LEN), TOPIC_OK);
	ck_assert_int_eq(topic_filter_validate(s, TOPIC_MAX_LEN), TOPIC_OK);
	ck_assert_int_eq(topic_name_validate(s, TOPIC_MAX_LEN + 1), TOPIC_EINVAL);
	ck_assert_int_eq(topic_filter_validate(s, TOPIC_MAX_LEN + 1), TOPIC_EINVAL);
	s[TOPIC_MAX_LEN - 1] = '#';
	s[TOPIC_MAX_LEN - 2] = '/';
	ck_assert_int_eq(topic_filter_validate(s, TOPIC_MAX_LEN), TOPIC_OK);
	free(s);
}
END_TEST

START_TEST(test_validate_levels)
{
	char *name = levels("ab", TOPIC_MAX_LEVELS);
	char *name2 = levels("ab", TOPIC_MAX_LEVELS + 1);
	char *filt = levels("+", TOPIC_MAX_LEVELS);
	char *filt2 = levels("+", TOPIC_MAX_LEVELS + 1);
	char *empty = repeat('/', TOPIC_MAX_LEVELS - 1);
	char *slashes = repeat('/', TOPIC_MAX_LEN);

	ck_assert_int_eq(topic_name_validate(name, strlen(name)), TOPIC_OK);
	ck_assert_int_eq(topic_filter_validate(name, strlen(name)), TOPIC_OK);
	ck_assert_int_eq(topic_name_validate(name2, strlen(name2)), TOPIC_EINVAL);
	ck_assert_int_eq(topic_filter_validate(name2, strlen(name2)), TOPIC_EINVAL);
	ck_assert_int_eq(topic_filter_validate(filt, strlen(filt)), TOPIC_OK);
	ck_assert_int_eq(topic_filter_validate(filt2, strlen(filt2)), TOPIC_EINVAL);
	/* TOPIC_MAX_LEVELS - 1 separators is exactly the limit; one more is not. */
	ck_assert_int_eq(topic_name_validate(empty, strlen(empty)), TOPIC_OK);
	ck_assert_int_eq(topic_filter_validate(empty, strlen(empty)), TOPIC_OK);
	ck_assert_int_eq(topic_name_validate(slashes, TOPIC_MAX_LEVELS), TOPIC_EINVAL);
	/* The CVE-2019-11779 shape: a 65,535-byte filter of only '/'. */
	ck_assert_int_eq(topic_name_validate(slashes, TOPIC_MAX_LEN), TOPIC_EINVAL);
	ck_assert_int_eq(topic_filter_validate(slashes, TOPIC_MAX_LEN), TOPIC_EINVAL);
	free(name);
	free(name2);
	free(filt);
	free(filt2);
	free(empty);
	free(slashes);
}
END_TEST

/* ---- shared subscription filters ---- */

/* One filter for topic_subfilter_parse(): the result, and for a valid one
 * its group (NULL: plain) and the filter matched against topics. */
static const struct {
	const char *s;
	size_t len;
	int expect;
	const char *group;
	const char *filter;
} subfilter_rows[] = {
    {S("$share/g/a/b"), TOPIC_OK, "g", "a/b"},
    {S("$share/group1/#"), TOPIC_OK, "group1", "#"},
    {S("$share/g/+/x/#"), TOPIC_OK, "g", "+/x/#"},
    {S("$share/g/+"), TOPIC_OK, "g", "+"},
    {S("$share/g//"), TOPIC_OK, "g", "/"},
    {S("$share/g/$SYS/#"), TOPIC_OK, "g", "$SYS/#"},
    {S("$share/g\xC3\xA9/x"), TOPIC_OK, "g\xC3\xA9", "x"},
    {S("$share/$share/x"), TOPIC_OK, "$share", "x"},
    /* not shared: plain filters, checked as such */
    {S("$share"), TOPIC_OK, NULL, "$share"},
    {S("$shared/x"), TOPIC_OK, NULL, "$shared/x"},
    {S("$SHARE/g/x"), TOPIC_OK, NULL, "$SHARE/g/x"},
    {S("a/$share/g/b"), TOPIC_OK, NULL, "a/$share/g/b"},
    {S("a/+b"), TOPIC_EINVAL, NULL, NULL},
    {S(""), TOPIC_EINVAL, NULL, NULL},
    /* MQTT5-4.8.2-1: a ShareName of at least one character */
    {S("$share/"), TOPIC_EINVAL, NULL, NULL},
    {S("$share//x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share//"), TOPIC_EINVAL, NULL, NULL},
    /* MQTT5-4.8.2-2: no '/', '+', '#' in it; then '/' and a filter */
    {S("$share/g"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g/"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/+/x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/#/x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/#"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g+/x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g#/x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g\0h/x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/\xFF/x"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g/a+"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g/#/a"), TOPIC_EINVAL, NULL, NULL},
    {S("$share/g/a\0b"), TOPIC_EINVAL, NULL, NULL},
};

/* covers: MQTT5-4.8.2-1 MQTT5-4.8.2-2 */
START_TEST(test_subfilter_table)
{
	struct topic_subfilter sf = {(const char *)1, 99, NULL, 0};
	int rc = topic_subfilter_parse(subfilter_rows[_i].s, subfilter_rows[_i].len, &sf);

	ck_assert_msg(rc == subfilter_rows[_i].expect, "row %d: rc %d", _i, rc);
	ck_assert_int_eq(topic_is_shared(subfilter_rows[_i].s, subfilter_rows[_i].len),
			 subfilter_rows[_i].len >= 7 &&
			     memcmp(subfilter_rows[_i].s, "$share/", 7) == 0);
	if (rc != TOPIC_OK) {
		ck_assert_msg(sf.group == (const char *)1 && sf.group_len == 99,
			      "row %d: out written on failure", _i);
		ck_assert_int_eq(
		    topic_subfilter_parse(subfilter_rows[_i].s, subfilter_rows[_i].len, NULL),
		    TOPIC_EINVAL);
		return;
	}
	if (subfilter_rows[_i].group == NULL) {
		ck_assert_msg(sf.group == NULL, "row %d: plain filter given a group", _i);
	} else {
		ck_assert_msg(sf.group != NULL, "row %d: no group", _i);
		ck_assert_uint_eq(sf.group_len, strlen(subfilter_rows[_i].group));
		ck_assert(memcmp(sf.group, subfilter_rows[_i].group, sf.group_len) == 0);
		/* The group and filter lie in the parsed string, in order. */
		ck_assert_ptr_eq(sf.group, subfilter_rows[_i].s + 7);
		ck_assert_ptr_eq(sf.filter, sf.group + sf.group_len + 1);
	}
	ck_assert_uint_eq(sf.filter_len, strlen(subfilter_rows[_i].filter));
	ck_assert(memcmp(sf.filter, subfilter_rows[_i].filter, sf.filter_len) == 0);
}
END_TEST

/* The filter of a shared subscription is held to the filter limits on its
 * own: the prefix and group do not count against its levels. */
START_TEST(test_subfilter_levels)
{
	char *filt = levels("+", TOPIC_MAX_LEVELS);
	char *filt2 = levels("+", TOPIC_MAX_LEVELS + 1);
	size_t n = strlen(filt), n2 = strlen(filt2);
	char *s = malloc(n + 16), *s2 = malloc(n2 + 16);
	struct topic_subfilter sf;

	memcpy(s, "$share/g/", 9);
	memcpy(s + 9, filt, n);
	memcpy(s2, "$share/g/", 9);
	memcpy(s2 + 9, filt2, n2);
	ck_assert_int_eq(topic_subfilter_parse(s, n + 9, &sf), TOPIC_OK);
	ck_assert_uint_eq(sf.filter_len, n);
	ck_assert_int_eq(topic_subfilter_parse(s2, n2 + 9, &sf), TOPIC_EINVAL);
	free(filt);
	free(filt2);
	free(s);
	free(s2);
}
END_TEST

/* ---- the subscription trie ---- */

START_TEST(test_tree_insert_replace_remove)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;

	ck_assert_uint_eq(topic_tree_count(t), 0);
	ck_assert_int_eq(topic_tree_insert(t, S("a/b"), SUB(1), 1), 1);
	ck_assert_int_eq(topic_tree_insert(t, S("a/b"), SUB(2), 0), 1);
	ck_assert_uint_eq(topic_tree_count(t), 2);
	ck_assert_int_eq(topic_tree_insert(t, S("a/b"), SUB(1), 2), 0);
	ck_assert_uint_eq(topic_tree_count(t), 2);

	h = match(t, "a/b");
	ck_assert_uint_eq(h.n, 2);
	ck_assert_ptr_eq(h.v[0].sub, SUB(1));
	ck_assert_uint_eq(h.v[0].qos, 2);
	ck_assert_ptr_eq(h.v[1].sub, SUB(2));
	ck_assert_uint_eq(h.v[1].qos, 0);
	free(h.v);

	ck_assert_int_eq(topic_tree_remove(t, S("a/b"), SUB(3)), TOPIC_ENOENT);
	ck_assert_int_eq(topic_tree_remove(t, S("a"), SUB(1)), TOPIC_ENOENT);
	ck_assert_int_eq(topic_tree_remove(t, S("a/b/c"), SUB(1)), TOPIC_ENOENT);
	ck_assert_int_eq(topic_tree_remove(t, S("a/+"), SUB(1)), TOPIC_ENOENT);
	ck_assert_int_eq(topic_tree_remove(t, S("a/b"), SUB(1)), TOPIC_OK);
	ck_assert_int_eq(topic_tree_remove(t, S("a/b"), SUB(1)), TOPIC_ENOENT);
	ck_assert_uint_eq(topic_tree_count(t), 1);
	h = match(t, "a/b");
	ck_assert_uint_eq(h.n, 1);
	ck_assert_ptr_eq(h.v[0].sub, SUB(2));
	free(h.v);

	ck_assert_int_eq(topic_tree_remove(t, S("a/b"), SUB(2)), TOPIC_OK);
	ck_assert_uint_eq(topic_tree_count(t), 0);
	h = match(t, "a/b");
	ck_assert_uint_eq(h.n, 0);

	/* The emptied path can be rebuilt after its nodes were freed. */
	ck_assert_int_eq(topic_tree_insert(t, S("a/b"), SUB(1), 1), 1);
	ck_assert_int_eq(topic_tree_insert(t, S("a/+"), SUB(1), 0), 1);
	ck_assert_int_eq(topic_tree_insert(t, S("a/#"), SUB(1), 0), 1);
	ck_assert_int_eq(topic_tree_remove(t, S("a/#"), SUB(1)), TOPIC_OK);
	ck_assert_int_eq(topic_tree_remove(t, S("a/+"), SUB(1)), TOPIC_OK);
	h = match(t, "a/b");
	ck_assert_uint_eq(h.n, 1);
	free(h.v);
	topic_tree_free(t);
}
END_TEST

/* covers: MQTT-4.7.2-1 */
START_TEST(test_tree_overlap_and_dollar)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;

	topic_tree_insert(t, S("a/+"), SUB(1), 1);
	topic_tree_insert(t, S("a/#"), SUB(1), 2);
	topic_tree_insert(t, S("#"), SUB(1), 0);
	topic_tree_insert(t, S("a/b"), SUB(2), 1);
	topic_tree_insert(t, S("+/x"), SUB(3), 1);
	topic_tree_insert(t, S("$SYS/#"), SUB(4), 0);
	topic_tree_insert(t, S("$SYS/+"), SUB(5), 1);
	topic_tree_insert(t, S("+"), SUB(6), 1);

	/* One subscriber, three matching filters: reported three times. */
	h = match(t, "a/b");
	ck_assert_uint_eq(h.n, 4);
	ck_assert_ptr_eq(h.v[0].sub, SUB(1));
	ck_assert_uint_eq(h.v[0].qos, 0);
	ck_assert_ptr_eq(h.v[1].sub, SUB(1));
	ck_assert_uint_eq(h.v[1].qos, 1);
	ck_assert_ptr_eq(h.v[2].sub, SUB(1));
	ck_assert_uint_eq(h.v[2].qos, 2);
	ck_assert_ptr_eq(h.v[3].sub, SUB(2));
	free(h.v);

	/* 'a/#' and '#' match 'a'; so does '+'; 'a/+' does not. */
	h = match(t, "a");
	ck_assert_uint_eq(h.n, 3);
	ck_assert_ptr_eq(h.v[0].sub, SUB(1));
	ck_assert_uint_eq(h.v[0].qos, 0);
	ck_assert_ptr_eq(h.v[1].sub, SUB(1));
	ck_assert_uint_eq(h.v[1].qos, 2);
	ck_assert_ptr_eq(h.v[2].sub, SUB(6));
	free(h.v);

	/* '#', '+/x' and '+' never see '$SYS/x' or '$SYS'. */
	h = match(t, "$SYS/x");
	ck_assert_uint_eq(h.n, 2);
	ck_assert_ptr_eq(h.v[0].sub, SUB(4));
	ck_assert_ptr_eq(h.v[1].sub, SUB(5));
	free(h.v);
	h = match(t, "$SYS");
	ck_assert_uint_eq(h.n, 1);
	ck_assert_ptr_eq(h.v[0].sub, SUB(4));
	free(h.v);
	h = match(t, "$foo/x");
	ck_assert_uint_eq(h.n, 0);
	h = match(t, "q/x");
	ck_assert_uint_eq(h.n, 2);
	ck_assert_ptr_eq(h.v[0].sub, SUB(1));
	ck_assert_ptr_eq(h.v[1].sub, SUB(3));
	free(h.v);
	topic_tree_free(t);
}
END_TEST

START_TEST(test_tree_empty_levels)
{
	struct topic_tree *t = topic_tree_new();
	struct hits h;

	topic_tree_insert(t, S("/"), SUB(1), 0);
	topic_tree_insert(t, S("//"), SUB(2), 0);
	topic_tree_insert(t, S("+/+"), SUB(3), 0);
	topic_tree_insert(t, S("a/+/c"), SUB(4), 0);
	topic_tree_insert(t, S("/#"), SUB(5), 0);
	h = match(t, "/");
	ck_assert_uint_eq(h.n, 3);
	ck_assert_ptr_eq(h.v[0].sub, SUB(1));
	ck_assert_ptr_eq(h.v[1].sub, SUB(3));
	ck_assert_ptr_eq(h.v[2].sub, SUB(5));
	free(h.v);
	h = match(t, "//");
	ck_assert_uint_eq(h.n, 2);
	ck_assert_ptr_eq(h.v[0].sub, SUB(2));
	ck_assert_ptr_eq(h.v[1].sub, SUB(5));
	free(h.v);
	h = match(t, "a//c");
	ck_assert_uint_eq(h.n, 1);
	ck_assert_ptr_eq(h.v[0].sub, SUB(4));
	free(h.v);
	topic_tree_free(t);
}
END_TEST

struct one_hit {
	void *sub;
	size_t n;
};

static void one_hit_add(void *arg, void *sub, uint8_t qos)
{
	struct one_hit *o = arg;

	(void)qos;
	o->sub = sub;
	o->n++;
}

START_TEST(test_tree_many_children)
{
	enum { N = 10000 };
	struct topic_tree *t = topic_tree_new();
	char buf[64];

	for (int i = 0; i < N; i++) {
		int n = snprintf(buf, sizeof(buf), "clients/%d/in", i);

		ck_assert_int_eq(topic_tree_insert(t, buf, (size_t)n, SUB(i + 1), 1), 1);
	}
	ck_assert_uint_eq(topic_tree_count(t), N);
	for (int i = 0; i < N; i++) {
		int n = snprintf(buf, sizeof(buf), "clients/%d/in", i);
		struct one_hit o = {0};

		topic_tree_match(t, buf, (size_t)n, one_hit_add, &o);
		ck_assert_uint_eq(o.n, 1);
		ck_assert_ptr_eq(o.sub, SUB(i + 1));
	}
	/* Remove every other one, then check both halves. */
	for (int i = 0; i < N; i += 2) {
		int n = snprintf(buf, sizeof(buf), "clients/%d/in", i);

		ck_assert_int_eq(topic_tree_remove(t, buf, (size_t)n, SUB(i + 1)), TOPIC_OK);
	}
	ck_assert_uint_eq(topic_tree_count(t), N / 2);
	for (int i = 0; i < N; i++) {
		int n = snprintf(buf, sizeof(buf), "clients/%d/in", i);
		struct one_hit o = {0};

		topic_tree_match(t, buf, (size_t)n, one_hit_add, &o);
		ck_assert_uint_eq(o.n, (size_t)(i % 2));
	}
	topic_tree_free(t);
}
END_TEST

/* A 65,535-byte filter of '/' bypassing validation: no recursion anywhere. */
START_TEST(test_tree_deep)
{
	struct topic_tree *t = topic_tree_new();
	char *s = repeat('/', TOPIC_MAX_LEN);
	struct one_hit o = {0};

	ck_assert(topic_matches(s, TOPIC_MAX_LEN, s, TOPIC_MAX_LEN));
	ck_assert(!topic_matches(s, TOPIC_MAX_LEN, s, TOPIC_MAX_LEN - 1));
	ck_assert_int_eq(topic_tree_insert(t, s, TOPIC_MAX_LEN, SUB(1), 0), 1);
	ck_assert_int_eq(topic_tree_insert(t, s, TOPIC_MAX_LEN - 1, SUB(2), 0), 1);
	topic_tree_match(t, s, TOPIC_MAX_LEN, one_hit_add, &o);
	ck_assert_uint_eq(o.n, 1);
	ck_assert_ptr_eq(o.sub, SUB(1));
	ck_assert_int_eq(topic_tree_remove(t, s, TOPIC_MAX_LEN, SUB(1)), TOPIC_OK);
	o.n = 0;
	topic_tree_match(t, s, TOPIC_MAX_LEN, one_hit_add, &o);
	ck_assert_uint_eq(o.n, 0);
	/* Free a tree that is still 65,535 levels deep. */
	topic_tree_free(t);

	/* Many '+' levels: the worklist stays one node wide. */
	t = topic_tree_new();
	free(s);
	s = levels("+", 30000);
	topic_tree_insert(t, s, strlen(s), SUB(3), 0);
	free(s);
	s = repeat('/', 29999);
	o.n = 0;
	topic_tree_match(t, s, strlen(s), one_hit_add, &o);
	ck_assert_uint_eq(o.n, 1);
	topic_tree_free(t);
	free(s);
}
END_TEST

/* Random filters and topics over a small alphabet so that many match. */
static const char *const alphabet[] = {"a", "b", "", "$s", "c"};
#define NALPHA (sizeof(alphabet) / sizeof(alphabet[0]))

static size_t rand_topic(uint64_t *seed, char *buf)
{
	int nl = 1 + (int)(rnd(seed) % 4);
	size_t len = 0;

	for (int i = 0; i < nl; i++) {
		const char *l = alphabet[rnd(seed) % NALPHA];

		if (i > 0)
			buf[len++] = '/';
		memcpy(buf + len, l, strlen(l));
		len += strlen(l);
	}
	if (len == 0) /* a lone empty level is not a valid name */
		buf[len++] = 'a';
	buf[len] = '\0';
	return len;
}

static size_t rand_filter(uint64_t *seed, char *buf)
{
	int nl = 1 + (int)(rnd(seed) % 4);
	size_t len = 0;

	for (int i = 0; i < nl; i++) {
		uint32_t r = rnd(seed) % 10;
		const char *l = r < 2 ? "+" : (r == 2 && i == nl - 1) ? "#" : alphabet[r % NALPHA];

		if (i > 0)
			buf[len++] = '/';
		memcpy(buf + len, l, strlen(l));
		len += strlen(l);
	}
	if (len == 0)
		buf[len++] = '+';
	buf[len] = '\0';
	return len;
}

struct entry {
	char filter[32];
	void *sub;
	uint8_t qos;
	bool live;
};

/* covers: MQTT-4.7.2-1 */
START_TEST(test_tree_crosscheck)
{
	enum { NE = 400, NSUB = 12, NTOPIC = 600 };
	struct entry *e = calloc(NE, sizeof(*e));
	struct topic_tree *t = topic_tree_new();
	uint64_t seed = 0x9E3779B97F4A7C15ull;
	size_t live = 0;

	ck_assert_ptr_nonnull(e);
	for (int i = 0; i < NE; i++) {
		size_t fl = rand_filter(&seed, e[i].filter);
		int r, dup = 0;

		ck_assert_int_eq(topic_filter_validate(e[i].filter, fl), TOPIC_OK);
		e[i].sub = SUB(1 + rnd(&seed) % NSUB);
		e[i].qos = (uint8_t)(rnd(&seed) % 3);
		r = topic_tree_insert(t, e[i].filter, fl, e[i].sub, e[i].qos);
		/* An earlier identical (filter, subscriber) is replaced. */
		for (int j = 0; j < i; j++) {
			if (e[j].live && e[j].sub == e[i].sub &&
			    strcmp(e[j].filter, e[i].filter) == 0) {
				e[j].live = false;
				dup = 1;
			}
		}
		ck_assert_int_eq(r, !dup);
		e[i].live = true;
		live += !dup;
		/* Remove a random live entry now and then. */
		if (rnd(&seed) % 4 == 0) {
			int k = (int)(rnd(&seed) % (uint32_t)(i + 1));

			if (e[k].live) {
				ck_assert_int_eq(topic_tree_remove(t, e[k].filter,
								   strlen(e[k].filter), e[k].sub),
						 TOPIC_OK);
				e[k].live = false;
				live--;
			}
		}
	}
	ck_assert_uint_eq(topic_tree_count(t), live);

	for (int n = 0; n < NTOPIC; n++) {
		char topic[32];
		size_t tl = rand_topic(&seed, topic);
		struct hits want = {0}, got = {0};

		ck_assert_int_eq(topic_name_validate(topic, tl), TOPIC_OK);
		for (int i = 0; i < NE; i++)
			if (e[i].live && topic_matches(e[i].filter, strlen(e[i].filter), topic, tl))
				hits_add(&want, e[i].sub, e[i].qos);
		topic_tree_match(t, topic, tl, hits_add, &got);
		hits_sort(&want);
		hits_sort(&got);
		ck_assert_msg(want.n == got.n, "topic '%s': %zu vs %zu", topic, want.n, got.n);
		for (size_t i = 0; i < want.n; i++)
			ck_assert(hit_cmp(&want.v[i], &got.v[i]) == 0);
		free(want.v);
		free(got.v);
	}

	/* Removing everything leaves an empty tree. */
	for (int i = 0; i < NE; i++)
		if (e[i].live)
			ck_assert_int_eq(
			    topic_tree_remove(t, e[i].filter, strlen(e[i].filter), e[i].sub),
			    TOPIC_OK);
	ck_assert_uint_eq(topic_tree_count(t), 0);
	topic_tree_free(t);
	free(e);
}
END_TEST

/* ---- retained messages ---- */

static void collect_str(void *arg, void *value)
{
	struct hits *h = arg;

	hits_add(h, value, 0);
}

static int str_cmp(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	return strcmp(x->sub, y->sub);
}

/* The retained values (strings) that match filter, sorted, joined by ' '. */
static char *rmatch(struct retain_tree *t, const char *filter)
{
	struct hits h = {0};
	size_t len = 1;
	char *out;

	retain_tree_match(t, filter, strlen(filter), collect_str, &h);
	if (h.n > 1)
		qsort(h.v, h.n, sizeof(*h.v), str_cmp);
	for (size_t i = 0; i < h.n; i++)
		len += strlen(h.v[i].sub) + 1;
	out = calloc(1, len);
	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < h.n; i++) {
		if (i > 0)
			strcat(out, " ");
		strcat(out, h.v[i].sub);
	}
	free(h.v);
	return out;
}

#define ck_rmatch(t, filter, expect)                                                               \
	do {                                                                                       \
		char *got_ = rmatch((t), (filter));                                                \
		ck_assert_msg(strcmp(got_, (expect)) == 0, "filter '%s': got '%s' want '%s'",      \
			      (filter), got_, (expect));                                           \
		free(got_);                                                                        \
	} while (0)

START_TEST(test_retain_set_get)
{
	struct retain_tree *t = retain_tree_new();
	char v1[] = "1", v2[] = "2", v3[] = "3";

	ck_assert_uint_eq(retain_tree_count(t), 0);
	ck_assert_ptr_null(retain_tree_set(t, S("a/b"), v1));
	ck_assert_ptr_null(retain_tree_set(t, S("a"), v3));
	ck_assert_uint_eq(retain_tree_count(t), 2);
	ck_assert_ptr_eq(retain_tree_get(t, S("a/b")), v1);
	ck_assert_ptr_eq(retain_tree_get(t, S("a")), v3);
	ck_assert_ptr_null(retain_tree_get(t, S("a/b/c")));
	ck_assert_ptr_null(retain_tree_get(t, S("b")));

	/* Replace returns the old value; count unchanged. */
	ck_assert_ptr_eq(retain_tree_set(t, S("a/b"), v2), v1);
	ck_assert_uint_eq(retain_tree_count(t), 2);
	ck_assert_ptr_eq(retain_tree_get(t, S("a/b")), v2);

	/* NULL deletes. */
	ck_assert_ptr_null(retain_tree_set(t, S("x/y"), NULL));
	ck_assert_ptr_eq(retain_tree_set(t, S("a"), NULL), v3);
	ck_assert_uint_eq(retain_tree_count(t), 1);
	ck_assert_ptr_null(retain_tree_get(t, S("a")));
	ck_assert_ptr_eq(retain_tree_get(t, S("a/b")), v2);
	ck_assert_ptr_eq(retain_tree_set(t, S("a/b"), NULL), v2);
	ck_assert_ptr_null(retain_tree_set(t, S("a/b"), NULL));
	ck_assert_uint_eq(retain_tree_count(t), 0);
	ck_assert_ptr_null(retain_tree_get(t, S("a/b")));
	ck_rmatch(t, "#", "");

	/* Byte-exact keys. */
	retain_tree_set(t, S("A"), v1);
	retain_tree_set(t,
			S("\xEF\xBB\xBF"
			  "A"),
			v2);
	ck_assert_ptr_eq(retain_tree_get(t, S("A")), v1);
	ck_assert_ptr_null(retain_tree_get(t, S("a")));
	ck_assert_ptr_eq(retain_tree_get(t, S("\xEF\xBB\xBF"
					      "A")),
			 v2);
	retain_tree_free(t);
}
END_TEST

static void count_fn(void *arg, void *value)
{
	(void)value;
	(*(size_t *)arg)++;
}

/* covers: MQTT-4.7.2-1 */
START_TEST(test_retain_match)
{
	static const char *const topics[] = {
	    "a", "a/b", "a/c", "a/b/c", "/", "//", "a//c", "b", "$SYS/x", "$SYS", "$foo/b",
	};
	struct retain_tree *t = retain_tree_new();
	size_t n = 0;

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		retain_tree_set(t, topics[i], strlen(topics[i]), (void *)topics[i]);
	ck_assert_uint_eq(retain_tree_count(t), 11);
	retain_tree_foreach(t, count_fn, &n);
	ck_assert_uint_eq(n, 11);

	ck_rmatch(t, "#", "/ // a a//c a/b a/b/c a/c b");
	ck_rmatch(t, "+", "a b");
	ck_rmatch(t, "+/+", "/ a/b a/c");
	ck_rmatch(t, "a/#", "a a//c a/b a/b/c a/c");
	ck_rmatch(t, "a/+", "a/b a/c");
	ck_rmatch(t, "a/+/c", "a//c a/b/c");
	ck_rmatch(t, "a/b/#", "a/b a/b/c");
	ck_rmatch(t, "/#", "/ //");
	ck_rmatch(t, "/+", "/");
	ck_rmatch(t, "+/+/+", "// a//c a/b/c");
	ck_rmatch(t, "a/b", "a/b");
	ck_rmatch(t, "a/x", "");
	ck_rmatch(t, "+/x", "");
	ck_rmatch(t, "+/#", "/ // a a//c a/b a/b/c a/c b");
	ck_rmatch(t, "$SYS/#", "$SYS $SYS/x");
	ck_rmatch(t, "$SYS/+", "$SYS/x");
	ck_rmatch(t, "$foo/+", "$foo/b");
	ck_rmatch(t, "$SYS", "$SYS");
	retain_tree_free(t);
}
END_TEST

/* covers: MQTT-4.7.2-1 */
START_TEST(test_retain_crosscheck)
{
	enum { NT = 300, NF = 400 };
	char(*topics)[32] = calloc(NT, sizeof(*topics));
	struct retain_tree *t = retain_tree_new();
	uint64_t seed = 12345;

	ck_assert_ptr_nonnull(topics);
	for (int i = 0; i < NT; i++) {
		rand_topic(&seed, topics[i]);
		retain_tree_set(t, topics[i], strlen(topics[i]), topics[i]);
		if (rnd(&seed) % 5 == 0) {
			int k = (int)(rnd(&seed) % (uint32_t)(i + 1));

			retain_tree_set(t, topics[k], strlen(topics[k]), NULL);
		}
	}
	for (int n = 0; n < NF; n++) {
		char filter[32];
		size_t fl = rand_filter(&seed, filter);
		struct hits want = {0}, got = {0};
		size_t count = 0;

		/* Brute force over the distinct stored topics. */
		for (int i = 0; i < NT; i++) {
			void *v = retain_tree_get(t, topics[i], strlen(topics[i]));

			if (v != topics[i])
				continue; /* deleted, or a later duplicate owns it */
			count++;
			if (topic_matches(filter, fl, topics[i], strlen(topics[i])))
				hits_add(&want, v, 0);
		}
		ck_assert_uint_eq(retain_tree_count(t), count);
		retain_tree_match(t, filter, fl, collect_str, &got);
		hits_sort(&want);
		hits_sort(&got);
		ck_assert_msg(want.n == got.n, "filter '%s': %zu vs %zu", filter, want.n, got.n);
		for (size_t i = 0; i < want.n; i++)
			ck_assert_ptr_eq(want.v[i].sub, got.v[i].sub);
		free(want.v);
		free(got.v);
	}
	retain_tree_free(t);
	free(topics);
}
END_TEST

START_TEST(test_retain_deep)
{
	struct retain_tree *t = retain_tree_new();
	char *s = repeat('/', TOPIC_MAX_LEN);
	char v[] = "v";
	size_t n = 0;

	ck_assert_ptr_null(retain_tree_set(t, s, TOPIC_MAX_LEN, v));
	ck_assert_ptr_eq(retain_tree_get(t, s, TOPIC_MAX_LEN), v);
	retain_tree_match(t, "#", 1, count_fn, &n);
	ck_assert_uint_eq(n, 1);
	n = 0;
	retain_tree_match(t, s, TOPIC_MAX_LEN, count_fn, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_ptr_eq(retain_tree_set(t, s, TOPIC_MAX_LEN, NULL), v);
	ck_assert_uint_eq(retain_tree_count(t), 0);
	/* And a deep tree freed while still populated. */
	retain_tree_set(t, s, TOPIC_MAX_LEN, v);
	retain_tree_free(t);
	free(s);
}
END_TEST

static Suite *topic_suite(void)
{
	Suite *s = suite_create("topic");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_matches_table, 0,
			    (int)(sizeof(match_rows) / sizeof(match_rows[0])));
	tcase_add_loop_test(tc, test_name_table, 0,
			    (int)(sizeof(name_rows) / sizeof(name_rows[0])));
	tcase_add_loop_test(tc, test_filter_table, 0,
			    (int)(sizeof(filter_rows) / sizeof(filter_rows[0])));
	tcase_add_test(tc, test_validate_length);
	tcase_add_test(tc, test_validate_levels);
	tcase_add_loop_test(tc, test_subfilter_table, 0,
			    (int)(sizeof(subfilter_rows) / sizeof(subfilter_rows[0])));
	tcase_add_test(tc, test_subfilter_levels);
	tcase_add_test(tc, test_tree_insert_replace_remove);
	tcase_add_test(tc, test_tree_overlap_and_dollar);
	tcase_add_test(tc, test_tree_empty_levels);
	tcase_add_test(tc, test_tree_many_children);
	tcase_add_test(tc, test_tree_deep);
	tcase_add_test(tc, test_tree_crosscheck);
	tcase_add_test(tc, test_retain_set_get);
	tcase_add_test(tc, test_retain_match);
	tcase_add_test(tc, test_retain_crosscheck);
	tcase_add_test(tc, test_retain_deep);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(topic_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
