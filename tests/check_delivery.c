/*
 * The deliveries' containers: the window's packet id map (src/pidmap.c:
 * open addressing, removal by backward shift) and the block allocator
 * (src/dpool.c: indexes, reuse, slabs and pages given back).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "dpool.h"
#include "pidmap.h"

/* Every delivery of ds[0..n) is found under its pid; pids in absent[]
 * are not. */
static void expect_all(const struct pid_map *m, struct delivery *ds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_ptr_eq(pidmap_find(m, ds[i].pid), &ds[i]);
}

START_TEST(test_pidmap_wraps_around_the_ids_and_the_slots)
{
	struct pid_map m = {0};
	ck_assert_ptr_null(pidmap_find(&m, 1));
	/* Ids 65530..65535 then 1..6, as client_next_pid wraps: their home
	 * slots wrap around the end of the table too. */
	struct delivery ds[12];
	memset(ds, 0, sizeof(ds));
	for (int i = 0; i < 12; i++) {
		ds[i].pid = (uint16_t)(i < 6 ? 65530 + i : i - 5);
		pidmap_add(&m, &ds[i]);
	}
	ck_assert_uint_eq(m.count, 12);
	ck_assert_uint_eq(m.cap, 16);
	expect_all(&m, ds, 12);
	ck_assert_ptr_null(pidmap_find(&m, 0));
	ck_assert_ptr_null(pidmap_find(&m, 7));
	ck_assert_ptr_null(pidmap_find(&m, 65529));
	/* Ids that share home slots (pid & 15) with those in the map. */
	struct delivery far[4];
	memset(far, 0, sizeof(far));
	for (int i = 0; i < 4; i++) {
		far[i].pid =
		    (uint16_t)(65530 + 16 * (i + 1) - 65535 * (65530 + 16 * (i + 1) > 65535));
		ck_assert_ptr_null(pidmap_find(&m, far[i].pid));
		pidmap_add(&m, &far[i]);
	}
	ck_assert_uint_eq(m.cap, 32); /* grew past 7/8 */
	expect_all(&m, ds, 12);
	expect_all(&m, far, 4);
	pidmap_cleanup(&m);
	ck_assert_ptr_null(m.slots);
	ck_assert_uint_eq(m.count, 0);
}
END_TEST

START_TEST(test_pidmap_delete_and_reinsert_keep_every_probe_chain)
{
	struct pid_map m = {0};
	/* 14 deliveries in a table of 16, all in one run: every removal
	 * shifts entries back across the table's end. */
	struct delivery ds[14];
	memset(ds, 0, sizeof(ds));
	for (int i = 0; i < 14; i++) {
		/* homes 12, 13, 14, 15, 12, 13, ... collide and wrap */
		ds[i].pid = (uint16_t)(12 + (i % 4) + 16 * (i / 4 + 1));
		pidmap_add(&m, &ds[i]);
	}
	ck_assert_uint_eq(m.cap, 16);
	expect_all(&m, ds, 14);
	for (int k = 0; k < 14; k++) {
		/* Remove one, check the others, put it back. */
		pidmap_remove(&m, &ds[k]);
		ck_assert_uint_eq(m.count, 13);
		ck_assert_ptr_null(pidmap_find(&m, ds[k].pid));
		for (int i = 0; i < 14; i++)
			if (i != k)
				ck_assert_ptr_eq(pidmap_find(&m, ds[i].pid), &ds[i]);
		pidmap_add(&m, &ds[k]);
		expect_all(&m, ds, 14);
	}
	/* Remove every other one, then the rest. */
	for (int i = 0; i < 14; i += 2)
		pidmap_remove(&m, &ds[i]);
	for (int i = 1; i < 14; i += 2)
		ck_assert_ptr_eq(pidmap_find(&m, ds[i].pid), &ds[i]);
	for (int i = 1; i < 14; i += 2)
		pidmap_remove(&m, &ds[i]);
	ck_assert_uint_eq(m.count, 0);
	for (uint32_t i = 0; i < m.cap; i++)
		ck_assert_ptr_null(m.slots[i]);
	pidmap_cleanup(&m);
}
END_TEST

START_TEST(test_pidmap_two_under_one_id)
{
	/* A damaged store may restore two deliveries under one id: removing
	 * one leaves the other. */
	struct pid_map m = {0};
	struct delivery a = {.pid = 9}, b = {.pid = 9}, c = {.pid = 10};
	pidmap_add(&m, &a);
	pidmap_add(&m, &b);
	pidmap_add(&m, &c);
	ck_assert_ptr_eq(pidmap_find(&m, 9), &a);
	pidmap_remove(&m, &a);
	ck_assert_ptr_eq(pidmap_find(&m, 9), &b);
	ck_assert_ptr_eq(pidmap_find(&m, 10), &c);
	pidmap_remove(&m, &b);
	ck_assert_ptr_null(pidmap_find(&m, 9));
	ck_assert_ptr_eq(pidmap_find(&m, 10), &c);
	pidmap_cleanup(&m);
}
END_TEST

START_TEST(test_pidmap_full_window)
{
	/* Every id of a window of 65,535 in flight, removed in a scattered
	 * order and reinserted. */
	struct pid_map m = {0};
	struct delivery *ds = calloc(65535, sizeof(*ds));
	ck_assert_ptr_nonnull(ds);
	for (uint32_t i = 0; i < 65535; i++) {
		ds[i].pid = (uint16_t)(i + 1);
		pidmap_add(&m, &ds[i]);
	}
	ck_assert_uint_eq(m.count, 65535);
	ck_assert_uint_eq(m.cap, 131072);
	expect_all(&m, ds, 65535);
	ck_assert_ptr_null(pidmap_find(&m, 0));
	/* 7919 is prime to 65535: every index once. */
	for (uint32_t k = 0, i = 0; k < 65535; k++, i = (i + 7919) % 65535)
		if (k % 2)
			pidmap_remove(&m, &ds[i]);
	ck_assert_uint_eq(m.count, 65535 - 32767);
	for (uint32_t k = 0, i = 0; k < 65535; k++, i = (i + 7919) % 65535)
		ck_assert_ptr_eq(pidmap_find(&m, ds[i].pid), k % 2 ? NULL : &ds[i]);
	for (uint32_t k = 0, i = 0; k < 65535; k++, i = (i + 7919) % 65535)
		if (k % 2)
			pidmap_add(&m, &ds[i]);
	expect_all(&m, ds, 65535);
	for (uint32_t i = 0; i < 65535; i++)
		pidmap_remove(&m, &ds[i]);
	ck_assert_uint_eq(m.count, 0);
	pidmap_cleanup(&m);
	free(ds);
}
END_TEST

START_TEST(test_dpool_indexes_and_reuse)
{
	struct dpool p = {0};
	ck_assert_ptr_null(dpool_at(&p, 0));
	/* More than one 256 KiB slab's worth. */
	enum { N = 20000 };
	void **bs = calloc(N, sizeof(*bs));
	ck_assert_ptr_nonnull(bs);
	for (uint32_t i = 0; i < N; i++) {
		bs[i] = dpool_alloc(&p);
		ck_assert_uint_eq((uintptr_t)bs[i] % 8, 0);
		const unsigned char *z = bs[i];
		for (int k = 0; k < DPOOL_BLOCK; k++)
			ck_assert_uint_eq(z[k], 0);
		memset(bs[i], (int)(i & 0xff) | 1, DPOOL_BLOCK);
		uint32_t idx = dpool_index(&p, bs[i]);
		ck_assert_uint_ne(idx, 0);
		ck_assert_ptr_eq(dpool_at(&p, idx), bs[i]);
	}
	ck_assert_uint_eq(p.live, N);
	ck_assert_uint_ge(p.nslab_live, 4);
	/* Nothing overlaps: every block still holds its own bytes. */
	for (uint32_t i = 0; i < N; i++) {
		const unsigned char *b = bs[i];
		for (int k = 0; k < DPOOL_BLOCK; k++)
			ck_assert_uint_eq(b[k], (i & 0xff) | 1);
	}
	/* Free every other block: they come back, zeroed, under the same
	 * indexes. */
	for (uint32_t i = 0; i < N; i += 2)
		dpool_free(&p, bs[i]);
	ck_assert_uint_eq(p.live, N / 2);
	for (uint32_t i = 0; i < N; i += 2) {
		bs[i] = dpool_alloc(&p);
		const unsigned char *z = bs[i];
		for (int k = 0; k < DPOOL_BLOCK; k++)
			ck_assert_uint_eq(z[k], 0);
		memset(bs[i], 0xee, DPOOL_BLOCK);
	}
	for (uint32_t i = 1; i < N; i += 2) {
		const unsigned char *b = bs[i];
		ck_assert_uint_eq(b[0], (i & 0xff) | 1);
		ck_assert_uint_eq(b[DPOOL_BLOCK - 1], (i & 0xff) | 1);
	}
	/* Free all in order: the slabs go back but one, and the pool ends
	 * empty. */
	for (uint32_t i = 0; i < N; i++)
		dpool_free(&p, bs[i]);
	ck_assert_uint_eq(p.live, 0);
	ck_assert_uint_le(p.nslab_live, 1);
	ck_assert_uint_eq(dpool_cleanup(&p), 0);
	ck_assert_ptr_null(p.slabs);
	ck_assert_uint_eq(p.nslab_live, 0);
	free(bs);
}
END_TEST

START_TEST(test_dpool_gives_back_empty_pages)
{
	struct dpool p = {0};
	enum { N = 50000 };
	void **bs = calloc(N, sizeof(*bs));
	ck_assert_ptr_nonnull(bs);
	for (uint32_t i = 0; i < N; i++) {
		bs[i] = dpool_alloc(&p);
		memset(bs[i], 0x5a, DPOOL_BLOCK);
	}
	size_t slabs = p.nslab_live;
	/* The first half freed, as a queue drains: its pages (far more than
	 * the 256 kept) are given back; the slabs stay while blocks remain. */
	for (uint32_t i = 0; i < N / 2; i++)
		dpool_free(&p, bs[i]);
	ck_assert_uint_le(p.empty_pages, 256);
	ck_assert_uint_le(p.nslab_live, slabs);
	/* Blocks in given-back pages are used again, zeroed. */
	for (uint32_t i = 0; i < N / 2; i++) {
		bs[i] = dpool_alloc(&p);
		const unsigned char *z = bs[i];
		ck_assert_uint_eq(z[0], 0);
		ck_assert_uint_eq(z[DPOOL_BLOCK - 1], 0);
		memset(bs[i], 0x5a, DPOOL_BLOCK);
	}
	ck_assert_uint_eq(p.nslab_live, slabs);
	/* Scattered frees: one block in 100 kept. */
	for (uint32_t i = 0; i < N; i++)
		if (i % 100)
			dpool_free(&p, bs[i]);
	for (uint32_t i = 0; i < N; i += 100) {
		const unsigned char *b = bs[i];
		ck_assert_uint_eq(b[0], 0x5a);
		ck_assert_ptr_eq(dpool_at(&p, dpool_index(&p, bs[i])), bs[i]);
	}
	for (uint32_t i = 0; i < N; i += 100)
		dpool_free(&p, bs[i]);
	ck_assert_uint_eq(p.live, 0);
	ck_assert_uint_eq(dpool_cleanup(&p), 0);
	free(bs);
}
END_TEST

START_TEST(test_dpool_cleanup_keeps_a_leak_mapped)
{
	struct dpool p = {0};
	void *a = dpool_alloc(&p);
	void *b = dpool_alloc(&p);
	dpool_free(&p, a);
	ck_assert_uint_eq(dpool_cleanup(&p), 1);
	memset(b, 1, DPOOL_BLOCK); /* still mapped */
	dpool_free(&p, b);
	ck_assert_uint_eq(dpool_cleanup(&p), 0);
	ck_assert_ptr_null(p.slabs);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("delivery");
	TCase *tc = tcase_create("pidmap");
	tcase_add_test(tc, test_pidmap_wraps_around_the_ids_and_the_slots);
	tcase_add_test(tc, test_pidmap_delete_and_reinsert_keep_every_probe_chain);
	tcase_add_test(tc, test_pidmap_two_under_one_id);
	tcase_add_test(tc, test_pidmap_full_window);
	suite_add_tcase(s, tc);
	tc = tcase_create("dpool");
	tcase_add_test(tc, test_dpool_indexes_and_reuse);
	tcase_add_test(tc, test_dpool_gives_back_empty_pages);
	tcase_add_test(tc, test_dpool_cleanup_keeps_a_leak_mapped);
	/* Check's 4 s default was too short under ASan on a busy two-core
	 * machine (test_dpool_indexes_and_reuse timed out once in CI). */
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
