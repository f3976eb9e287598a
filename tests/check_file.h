/*
 * Files the Check suites write: shared by check_auth, check_config and
 * check_qos.
 */
#ifndef CAIRN_CHECK_FILE_H
#define CAIRN_CHECK_FILE_H

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Write text to path, replacing what was there. */
__attribute__((unused)) static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

#endif
