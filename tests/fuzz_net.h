/*
 * The network fuzzer's inputs (tests/fuzz_net_input.c), shared with its
 * driver (tests/fuzz_net.c): byte buffers, the seeded random source, MQTT
 * framing of its own, the seed corpus, and the plan of one iteration with
 * its text form (inputs.txt, repro.txt).
 */
#ifndef CAIRN_TESTS_FUZZ_NET_H
#define CAIRN_TESTS_FUZZ_NET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_CONNS  6
#define MAX_CHUNKS 64
#define MAX_STREAM (256 * 1024)

struct buf {
	uint8_t *p;
	size_t len, cap;
};

/* splitmix64: small, and the same sequence on every platform. */
struct rng {
	uint64_t s;
};

struct pkt {
	uint8_t *p;
	size_t len;
};

struct session {
	struct pkt *v;
	size_t n;
};

struct corpus {
	struct session *s;
	size_t n;
};

/*
 * How a connection ends: FIN, RST (SO_LINGER 0), half-closed (shutdown of
 * our side, then read until the broker closes), or left open past the
 * iteration (the broker may be restarted under it: a persistent session
 * connected at a SIGKILL owes its will on restore).
 */
enum close_how { CLOSE_FIN, CLOSE_RST, CLOSE_HALF, CLOSE_LINGER, CLOSE_COUNT };
extern const char *const close_names[CLOSE_COUNT];

enum ack_mode { ACK_NONE, ACK_RIGHT, ACK_WRONG, ACK_COUNT };
extern const char *const ack_names[ACK_COUNT];

struct chunk {
	size_t end;   /* offset in the stream where this write ends */
	int delay_ms; /* wait before it */
};

struct conn_plan {
	struct buf stream;
	size_t *bounds; /* packet boundaries: where an ack may be slipped in */
	size_t nbounds;
	struct chunk chunks[MAX_CHUNKS];
	int nchunks;
	int start_ms;
	int tail_ms; /* how long to keep reading after the last write */
	enum close_how close;
	enum ack_mode ack;
};

struct plan {
	struct conn_plan c[MAX_CONNS];
	int n;
	int restart; /* after this iteration: 0 none, SIGTERM or SIGKILL */
	int hup;     /* or SIGHUP, */
	int bounce;  /* redis-server stopped for this iteration, then restarted */
	int acl;     /* with this ACL file in force after it (fuzz_net.c) */
};

void *xrealloc(void *p, size_t n);
void buf_add(struct buf *b, const void *p, size_t n);
void buf_byte(struct buf *b, uint8_t c);
void buf_u16(struct buf *b, unsigned v);
void buf_str(struct buf *b, const char *s);
void buf_free(struct buf *b);
long long now_ms(void);
void sleep_ms(int ms);
uint64_t rng_next(struct rng *r);
unsigned rnd(struct rng *r, unsigned n);
int chance(struct rng *r, unsigned percent);
void put_remaining(struct buf *b, size_t n);
size_t packet_len(const uint8_t *p, size_t n, size_t *hlen);
void session_free(struct session *s);
int corpus_load(struct corpus *c, const char *dir);
void plan_free(struct plan *pl);
void plan_make(struct plan *pl, const struct corpus *c, struct rng *r);
void plan_write(FILE *f, long iter, const struct plan *pl);
int plan_read(FILE *f, struct plan *pl, long *iter);
void corpus_free(struct corpus *c);

#endif
