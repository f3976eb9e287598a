/*
 * Enhanced authentication methods: the compiled-in table, the
 * per-connection exchange, and the test method of fault-injection builds.
 */
#include "authmeth.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef CAIRN_FAULT_INJECTION
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "config.h"

/*
 * "cairn-test-challenge", for the tests only: the client names its user in
 * the CONNECT's User Name; the broker sends a random 32-byte challenge in
 * AUTH 0x18 and the client answers HMAC-SHA256(secret, challenge); a
 * second challenge follows, answered the same way; then the CONNACK (or
 * AUTH 0x00) carries HMAC-SHA256(secret, challenge1 || challenge2), which
 * shows the client that the broker knows the secret too. The secret is
 * the test-only config key "auth_test_secret USER:SECRET" (one per user).
 * An unknown user is challenged like a known one and refused at the end.
 */
#define TESTCH_NONCE 32
#define TESTCH_MAC   32
#define TESTCH_NAME  "cairn-test-challenge"

struct testch {
	int round; /* challenges sent */
	bool known;
	char *secret;
	uint8_t nonce[2][TESTCH_NONCE];
};

static const char *testch_secret(const struct config *cfg, const char *user)
{
	size_t ulen = strlen(user);
	const char *found = NULL;
	for (const struct config_option *o = cfg ? cfg->options : NULL; o; o = o->next)
		if (strcmp(o->key, "auth_test_secret") == 0 && strncmp(o->value, user, ulen) == 0 &&
		    o->value[ulen] == ':')
			found = o->value + ulen + 1;
	return found;
}

static bool testch_mac(const struct testch *t, const uint8_t *msg, size_t len,
		       uint8_t mac[TESTCH_MAC])
{
	unsigned int n = 0;
	return HMAC(EVP_sha256(), t->secret, (int)strlen(t->secret), msg, len, mac, &n) != NULL &&
	       n == TESTCH_MAC;
}

/* A fresh challenge for round t->round, sent in out. */
static enum authmeth_result testch_challenge(struct testch *t, struct authmeth_out *out)
{
	uint8_t *n = t->nonce[t->round];
	if (RAND_bytes(n, TESTCH_NONCE) != 1) {
		out->reason = 0x80; /* unspecified error */
		return AUTHMETH_FAILURE;
	}
	t->round++;
	out->data = xmalloc(TESTCH_NONCE);
	memcpy(out->data, n, TESTCH_NONCE);
	out->data_len = TESTCH_NONCE;
	return AUTHMETH_CONTINUE;
}

static enum authmeth_result testch_step(void **state, const struct authmeth_ctx *ctx,
					const uint8_t *data, size_t data_len,
					struct authmeth_out *out)
{
	struct testch *t = *state;
	if (!t) {
		if (!ctx->username) {
			out->reason = 0x87; /* nobody to authenticate */
			return AUTHMETH_FAILURE;
		}
		const char *secret = testch_secret(ctx->cfg, ctx->username);
		t = xcalloc(1, sizeof(*t));
		t->known = secret != NULL;
		t->secret = xstrdup(secret ? secret : "");
		*state = t;
		return testch_challenge(t, out);
	}
	uint8_t mac[TESTCH_MAC];
	if (!testch_mac(t, t->nonce[t->round - 1], TESTCH_NONCE, mac)) {
		out->reason = 0x80;
		return AUTHMETH_FAILURE;
	}
	if (!t->known || !data || data_len != TESTCH_MAC ||
	    CRYPTO_memcmp(mac, data, TESTCH_MAC) != 0) {
		out->reason = 0x86; /* bad user name or password */
		return AUTHMETH_FAILURE;
	}
	if (t->round < 2)
		return testch_challenge(t, out);
	if (!testch_mac(t, &t->nonce[0][0], sizeof(t->nonce), mac)) {
		out->reason = 0x80;
		return AUTHMETH_FAILURE;
	}
	out->data = xmalloc(TESTCH_MAC);
	memcpy(out->data, mac, TESTCH_MAC);
	out->data_len = TESTCH_MAC;
	out->username = xstrdup(ctx->username);
	return AUTHMETH_SUCCESS;
}

static void testch_end(void *state)
{
	struct testch *t = state;
	if (!t)
		return;
	OPENSSL_cleanse(t->secret, strlen(t->secret));
	free(t->secret);
	free(t);
}

static const struct authmeth authmeth_test_challenge = {
    .name = TESTCH_NAME,
    .step = testch_step,
    .end = testch_end,
};
#endif

/* Every method this build carries, NULL-terminated. */
static const struct authmeth *const authmeth_table[] = {
#ifdef CAIRN_FAULT_INJECTION
    &authmeth_test_challenge,
#endif
    NULL,
};

const struct authmeth *authmeth_find(const char *name, size_t len)
{
	for (size_t i = 0; authmeth_table[i]; i++) {
		const char *n = authmeth_table[i]->name;
		if (strlen(n) == len && memcmp(n, name, len) == 0)
			return authmeth_table[i];
	}
	return NULL;
}

struct authmeth_session *authmeth_session_new(const struct authmeth *m, const char *username,
					      size_t username_len)
{
	struct authmeth_session *s = xcalloc(1, sizeof(*s));
	s->m = m;
	if (username)
		s->username = xstrndup(username, username_len);
	return s;
}

void authmeth_session_keep_connect(struct authmeth_session *s, uint8_t hdr, const uint8_t *body,
				   size_t len)
{
	free(s->connect);
	s->connect = xmalloc(len ? len : 1);
	memcpy(s->connect, body, len);
	s->connect_len = len;
	s->connect_hdr = hdr;
}

enum authmeth_result authmeth_session_step(struct authmeth_session *s, const struct config *cfg,
					   const uint8_t *data, size_t data_len,
					   struct authmeth_out *out)
{
	struct authmeth_ctx ctx = {cfg, s->username, s->connected};
	if (!s->in_progress) {
		s->m->end(s->state);
		s->state = NULL;
	}
	enum authmeth_result r = s->m->step(&s->state, &ctx, data, data_len, out);
	s->in_progress = r == AUTHMETH_CONTINUE;
	if (!s->in_progress) {
		s->m->end(s->state);
		s->state = NULL;
	}
	return r;
}

void authmeth_out_cleanup(struct authmeth_out *out)
{
	free(out->data);
	free(out->username);
	out->data = NULL;
	out->username = NULL;
}

void authmeth_session_free(void *p)
{
	struct authmeth_session *s = p;
	if (!s)
		return;
	s->m->end(s->state);
	free(s->username);
	free(s->auth_user);
	free(s->connect);
	free(s);
}
