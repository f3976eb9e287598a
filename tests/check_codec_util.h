/*
 * What the codec's two Check suites share (tests/check_codec.c for 3.1.1,
 * tests/check_codec5.c for 5.0): byte-literal macros, decoding from an
 * exactly sized heap copy, sample packets, UTF-8 strings the codec must
 * refuse, and where the seed corpus lives. Included by those two files
 * only; each uses part of it, hence the unused attributes.
 */
#ifndef CAIRN_CHECK_CODEC_UTIL_H
#define CAIRN_CHECK_CODEC_UTIL_H

#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define CK_UNUSED __attribute__((unused))

#define B(...)          ((const uint8_t[]){__VA_ARGS__})
#define DEC(first, ...) decode_copy(first, B(__VA_ARGS__), sizeof(B(__VA_ARGS__)))

/*
 * Decode from a heap copy of exactly len bytes, so that ASan reports any
 * read past the end of the body. Decoded pointers are not used afterwards.
 */
CK_UNUSED static int decode_copy(uint8_t first, const uint8_t *body, size_t len)
{
	struct codec_packet p;
	uint8_t *copy = malloc(len);
	int rc;

	if (len > 0) {
		ck_assert_ptr_nonnull(copy);
		memcpy(copy, body, len);
	}
	rc = codec_decode(first, copy, (uint32_t)len, &p);
	free(copy);
	return rc;
}

/* Valid packets, written by hand from the specification's byte layouts.
 * Each has an empty payload and one list entry, so that every truncation of
 * its body is malformed. */
struct sample {
	const char *name;
	const uint8_t *bytes;
	size_t len;
};

#define SAMPLE(n, ...)                                                                             \
	{                                                                                          \
		n, B(__VA_ARGS__), sizeof(B(__VA_ARGS__))                                          \
	}

/* Decode a whole packet in place; the header must cover it exactly. */
CK_UNUSED static int decode_whole(const uint8_t *pkt, size_t len, struct codec_packet *out)
{
	struct codec_header h;
	int rc = codec_parse_header(pkt, len, CODEC_MAX_REMAINING, &h);

	if (rc != CODEC_OK)
		return rc;
	ck_assert_uint_eq(h.header_len + (size_t)h.remaining, len);
	return codec_decode(pkt[0], pkt + h.header_len, h.remaining, out);
}

CK_UNUSED static struct codec_str str(const char *s)
{
	struct codec_str r = {s, (uint16_t)strlen(s)};

	return r;
}

CK_UNUSED static void expect_str(struct codec_str s, const char *want)
{
	ck_assert_uint_eq(s.len, strlen(want));
	if (s.len > 0)
		ck_assert_mem_eq(s.ptr, want, s.len);
}

/* Strings codec_utf8_valid must refuse, grouped by the rule they break. */
struct bad_utf8 {
	const char *s;
	size_t len;
};

#define U(lit)                                                                                     \
	{                                                                                          \
		lit, sizeof(lit) - 1                                                               \
	}

CK_UNUSED static const struct bad_utf8 utf8_overlong[] = {
    U("\xC0\x80"),     U("\xC0\xAF"),         U("\xC1\xBF"),         U("\xE0\x80\x80"),
    U("\xE0\x9F\xBF"), U("\xF0\x80\x80\x80"), U("\xF0\x8F\xBF\xBF"),
};
CK_UNUSED static const struct bad_utf8 utf8_surrogate[] = {
    U("\xED\xA0\x80"),
    U("\xED\xAD\xBF"),
    U("\xED\xB0\x80"),
    U("\xED\xBF\xBF"),
    U("a\xED\xA0\x80\xED\xB0\x80"),
};
CK_UNUSED static const struct bad_utf8 utf8_nul[] = {U("\0"), U("a\0b"), U("abc\0")};
CK_UNUSED static const struct bad_utf8 utf8_truncated[] = {
    U("\xC3"),         U("\xE2\x82"), U("\xF0\x9F\x98"),     U("a\xE2"),
    U("\xE2\x82\x28"), U("\xC3\x28"), U("\xF0\x9F\x28\x80"),
};
CK_UNUSED static const struct bad_utf8 utf8_too_big[] = {
    U("\xF4\x90\x80\x80"),
    U("\xF4\xBF\xBF\xBF"),
    U("\xF5\x80\x80\x80"),
    U("\xF7\xBF\xBF\xBF"),
    U("\xF8\x88\x80\x80\x80"),
    U("\xFC\x84\x80\x80\x80\x80"),
    U("\xFE"),
    U("\xFF"),
};
CK_UNUSED static const struct bad_utf8 utf8_lone_continuation[] = {U("\x80"), U("\xBF"),
								   U("a\x80")};

/* One of each, for the per-field tests. */
CK_UNUSED static const struct bad_utf8 utf8_bad_mix[] = {
    U("\xC0\x80"), U("\xE0\x80\xAF"), U("\xED\xA0\x80"),     U("\xED\xBF\xBF"),
    U("a\0"),      U("\xE2\x82"),     U("\xF4\x90\x80\x80"), U("\x80"),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The source tree the corpus lives in: $CAIRN_SRCDIR (make check sets it),
 * else the one this binary was configured from, so a VPATH build's
 * tests/check_codec finds it when run by hand from the build directory.
 */
#ifndef CAIRN_TEST_SRCDIR
#define CAIRN_TEST_SRCDIR "."
#endif
CK_UNUSED static const char *corpus_srcdir(void)
{
	const char *src = getenv("CAIRN_SRCDIR");

	return src != NULL && *src ? src : CAIRN_TEST_SRCDIR;
}

/*
 * Replays the seeds of tests/corpus/codec/ through replay (which returns a
 * CODEC_ result): a file named ok_prefix* must give CODEC_OK, one named
 * bad_prefix* anything else, and each is counted in *ok or *bad. Other
 * files (not hidden ones) are replayed too, unchecked, when replay_others
 * is set. The callers assert the counts, so a corpus that went missing
 * fails.
 */
CK_UNUSED static void corpus_replay(int (*replay)(const uint8_t *, size_t), const char *ok_prefix,
				    const char *bad_prefix, bool replay_others, unsigned *ok,
				    unsigned *bad)
{
	char dir[4096], path[8192];
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/tests/corpus/codec", corpus_srcdir());
	d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		static uint8_t data[65536];
		bool is_ok = strncmp(e->d_name, ok_prefix, strlen(ok_prefix)) == 0;
		bool is_bad = strncmp(e->d_name, bad_prefix, strlen(bad_prefix)) == 0;
		size_t size;
		FILE *f;
		int rc;

		if (e->d_name[0] == '.' || (!is_ok && !is_bad && !replay_others))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		f = fopen(path, "rb");
		ck_assert_msg(f != NULL, "cannot open %s", path);
		size = fread(data, 1, sizeof(data), f);
		fclose(f);
		rc = replay(data, size);
		if (is_ok) {
			ck_assert_msg(rc == CODEC_OK, "%s: %d", e->d_name, rc);
			(*ok)++;
		} else if (is_bad) {
			ck_assert_msg(rc != CODEC_OK, "%s accepted", e->d_name);
			(*bad)++;
		}
	}
	closedir(d);
}

#endif
