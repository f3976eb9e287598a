/*
 * libFuzzer target for the packet decoder: parses a fixed header, decodes
 * the body, and checks that whatever decodes walks and re-encodes to the
 * same body bytes. Not built by default. From the source root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I include -I src \
 *       src/codec.c tests/fuzz_codec.c -o fuzz_codec
 *   mkdir -p /tmp/codec-corpus && ./fuzz_codec /tmp/codec-corpus tests/corpus/codec
 *
 * (The first directory collects new inputs; the seed corpus stays as it is.
 * `-max_total_time=60` bounds a run.) The seeds also replay in check_codec.
 */
#include "codec.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_list(uint8_t type, const struct codec_list *l)
{
	struct codec_str f;
	uint32_t pos = 0, n = 0;
	uint8_t q;

	while (codec_list_next(type, l, &pos, &f, &q)) {
		if (f.len > 0 && (f.ptr < (const char *)l->data ||
				  f.ptr + f.len > (const char *)l->data + l->data_len))
			abort();
		n++;
	}
	if (n != l->count || pos != l->data_len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct codec_header h;
	struct codec_packet p;
	const uint8_t *body;
	uint8_t *again;
	size_t len;

	if (codec_parse_header(data, size, CODEC_MAX_REMAINING, &h) != CODEC_OK)
		return 0;
	if (size - h.header_len < h.remaining)
		return 0;
	body = data + h.header_len;
	if (codec_decode(data[0], body, h.remaining, &p) != CODEC_OK)
		return 0;
	if (p.type == CODEC_SUBSCRIBE || p.type == CODEC_UNSUBSCRIBE || p.type == CODEC_SUBACK)
		walk_list(p.type, &p.u.list);

	/* The decoder only accepts canonical bodies: re-encoding must give
	 * back the same bytes (the header may differ only in a non-minimal
	 * remaining length). */
	len = codec_encoded_len(&p);
	if (len == 0 || len - h.remaining < 2 || len - h.remaining > 5)
		abort();
	again = malloc(len);
	if (again == NULL)
		return 0;
	if (codec_encode(&p, again, len) != (int)len || again[0] != data[0])
		abort();
	if (h.remaining > 0 && memcmp(again + len - h.remaining, body, h.remaining) != 0)
		abort();
	free(again);
	return 0;
}
