/*
 * The authentication interface's wrappers and its first implementation:
 * Mosquitto's password file, read whole into a sorted array and checked
 * with OpenSSL (PBKDF2-HMAC-SHA512 or salted SHA-512, base64 decoding,
 * constant-time comparison). The hash text format lives here too, so
 * cairn-passwd writes exactly what the broker reads.
 */
#include "auth.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "codec.h"
#include "log.h"
#include "util.h"

/* ---- the interface ---- */

int auth_check(const struct auth *a, const char *username, size_t username_len,
	       const void *password, size_t password_len)
{
	return a->ops->check(a, username, username_len, password, password_len);
}

bool auth_changed(const struct auth *a, const struct auth *old, const char *username,
		  size_t username_len)
{
	/* Credentials moved to another kind of checker: nothing vouches
	 * for the old logins any more. */
	if (old->ops != a->ops)
		return true;
	return a->ops->changed ? a->ops->changed(a, old, username, username_len) : false;
}

void auth_free(struct auth *a)
{
	if (a)
		a->ops->free(a);
}

const char *auth_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case AUTH_EDENIED:
		return "bad username or password";
	case AUTH_EIO:
		return "cannot read the file";
	case AUTH_EINVAL:
		return "invalid argument";
	case AUTH_ECRYPTO:
		return "cryptography failed";
	default:
		return "unknown error";
	}
}

/* ---- hashes ---- */

bool auth_username_ok(const char *name, size_t len)
{
	if (len == 0 || len > 65535 || !codec_utf8_valid(name, len))
		return false;
	/* Blanks at either end are trimmed when the file is read: such a
	 * name could never log in. */
	if (name[0] == ' ' || name[0] == '\t' || name[len - 1] == ' ' || name[len - 1] == '\t')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch == ':' || ch < 0x20 || ch == 0x7f)
			return false;
	}
	return true;
}

static bool auth_b64_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/' || ch == '=';
}

/*
 * Decode padded base64 with OpenSSL into out (cap bytes). The alphabet is
 * checked first because EVP's decoder skips blanks and line breaks, which
 * a password file field must not contain.
 */
static int auth_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
	uint8_t buf[128];
	int n = 0, m = 0, rc = AUTH_EINVAL;
	EVP_ENCODE_CTX *ctx = NULL;

	if (len == 0 || len % 4 != 0 || len > 4 * (sizeof(buf) / 3))
		goto out;
	for (size_t i = 0; i < len; i++)
		if (!auth_b64_char(in[i]))
			goto out;
	ctx = EVP_ENCODE_CTX_new();
	if (!ctx) {
		rc = AUTH_ECRYPTO;
		goto out;
	}
	EVP_DecodeInit(ctx);
	if (EVP_DecodeUpdate(ctx, buf, &n, (const unsigned char *)in, (int)len) < 0)
		goto out;
	if (EVP_DecodeFinal(ctx, buf + n, &m) < 0)
		goto out;
	if ((size_t)(n + m) > cap)
		goto out;
	memcpy(out, buf, (size_t)(n + m));
	*outlen = (size_t)(n + m);
	rc = 0;
out:
	EVP_ENCODE_CTX_free(ctx);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

/* Fields of "$K$A$B[$C]" split at '$'; returns how many (at most max). */
static size_t auth_split(const char *text, size_t len, const char **f, size_t *flen, size_t max)
{
	size_t n = 0, start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || text[i] == '$') {
			if (n == max)
				return max + 1;
			f[n] = text + start;
			flen[n++] = i - start;
			start = i + 1;
		}
	}
	return n;
}

int auth_hash_parse(struct auth_hash *h, const char *text, size_t len, const char **why)
{
	const char *f[6];
	size_t fl[6], hash_len = 0;
	const char *reason = "not a $6$ or $7$ hash (a plain text password?)";
	size_t n = auth_split(text, len, f, fl, 5);

	memset(h, 0, sizeof(*h));
	if (n < 4 || fl[0] != 0 || fl[1] != 1)
		goto bad;
	const char *salt, *hash;
	size_t salt_len, hl;
	if (f[1][0] == '7' && n == 5) {
		long it = 0;
		reason = "bad iteration count";
		if (fl[2] == 0 || fl[2] > 10)
			goto bad;
		for (size_t i = 0; i < fl[2]; i++) {
			if (f[2][i] < '0' || f[2][i] > '9')
				goto bad;
			it = it * 10 + (f[2][i] - '0');
		}
		if (it < 1 || it > AUTH_PBKDF2_ITERATIONS_MAX) {
			reason =
			    "iteration count above 1,000,000 (each login would stall the broker)";
			goto bad;
		}
		h->kind = AUTH_HASH_PBKDF2_SHA512;
		h->iterations = (int)it;
		salt = f[3], salt_len = fl[3], hash = f[4], hl = fl[4];
	} else if (f[1][0] == '6' && n == 4) {
		h->kind = AUTH_HASH_SHA512;
		salt = f[2], salt_len = fl[2], hash = f[3], hl = fl[3];
	} else {
		goto bad;
	}
	reason = "salt is not base64 of 1 to 64 bytes";
	if (auth_b64_decode(salt, salt_len, h->salt, sizeof(h->salt), &h->salt_len) != 0 ||
	    h->salt_len == 0)
		goto bad;
	reason = "hash is not base64 of 64 bytes";
	if (auth_b64_decode(hash, hl, h->hash, sizeof(h->hash), &hash_len) != 0 ||
	    hash_len != AUTH_HASH_LEN)
		goto bad;
	return 0;
bad:
	if (why)
		*why = reason;
	return AUTH_EINVAL;
}

/* The digest a password gives under h's kind, parameters and salt. */
static int auth_hash_compute(const struct auth_hash *h, const void *password, size_t password_len,
			     uint8_t out[AUTH_HASH_LEN])
{
	if (h->kind == AUTH_HASH_PBKDF2_SHA512) {
		if (password_len > INT_MAX)
			return AUTH_EINVAL;
		if (PKCS5_PBKDF2_HMAC(password_len ? password : "", (int)password_len, h->salt,
				      (int)h->salt_len, h->iterations, EVP_sha512(), AUTH_HASH_LEN,
				      out) != 1)
			return AUTH_ECRYPTO;
		return 0;
	}
	int rc = AUTH_ECRYPTO;
	unsigned int n = 0;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md && EVP_DigestInit_ex(md, EVP_sha512(), NULL) == 1 &&
	    EVP_DigestUpdate(md, password, password_len) == 1 &&
	    EVP_DigestUpdate(md, h->salt, h->salt_len) == 1 &&
	    EVP_DigestFinal_ex(md, out, &n) == 1 && n == AUTH_HASH_LEN)
		rc = 0;
	EVP_MD_CTX_free(md);
	return rc;
}

int auth_hash_verify(const struct auth_hash *h, const void *password, size_t password_len)
{
	uint8_t got[AUTH_HASH_LEN];
	int rc = auth_hash_compute(h, password, password_len, got);
	if (rc == 0 && CRYPTO_memcmp(got, h->hash, AUTH_HASH_LEN) != 0)
		rc = AUTH_EDENIED;
	OPENSSL_cleanse(got, sizeof(got));
	return rc;
}

int auth_hash_make(enum auth_hash_kind kind, int iterations, const void *password,
		   size_t password_len, char *out, size_t outlen)
{
	struct auth_hash h = {.kind = kind, .iterations = iterations, .salt_len = AUTH_SALT_LEN};
	char salt_b64[4 * ((AUTH_SALT_MAX + 2) / 3) + 1];
	char hash_b64[4 * ((AUTH_HASH_LEN + 2) / 3) + 1];
	int rc = AUTH_EINVAL, n;

	if ((kind != AUTH_HASH_SHA512 && kind != AUTH_HASH_PBKDF2_SHA512) ||
	    (kind == AUTH_HASH_PBKDF2_SHA512 && iterations < 1))
		goto out;
	rc = AUTH_ECRYPTO;
	if (RAND_bytes(h.salt, (int)h.salt_len) != 1)
		goto out;
	rc = auth_hash_compute(&h, password, password_len, h.hash);
	if (rc != 0)
		goto out;
	EVP_EncodeBlock((unsigned char *)salt_b64, h.salt, (int)h.salt_len);
	EVP_EncodeBlock((unsigned char *)hash_b64, h.hash, AUTH_HASH_LEN);
	if (kind == AUTH_HASH_PBKDF2_SHA512)
		n = snprintf(out, outlen, "$7$%d$%s$%s", iterations, salt_b64, hash_b64);
	else
		n = snprintf(out, outlen, "$6$%s$%s", salt_b64, hash_b64);
	rc = n > 0 && (size_t)n < outlen ? 0 : AUTH_EINVAL;
out:
	OPENSSL_cleanse(&h, sizeof(h));
	return rc;
}

/* ---- the password file ---- */

struct auth_pwfile_user {
	char *name;
	size_t name_len;
	unsigned long line;
	bool bad; /* a malformed or repeated line: this user cannot log in */
	struct auth_hash hash;
};

struct auth_pwfile {
	struct auth base;               /* first: a struct auth * is a struct auth_pwfile * */
	struct auth_pwfile_user *users; /* sorted by name, then line */
	size_t count;
};

static int auth_pwfile_cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int auth_pwfile_cmp_user(const void *pa, const void *pb)
{
	const struct auth_pwfile_user *a = pa, *b = pb;
	int c = auth_pwfile_cmp_name(a->name, a->name_len, b->name, b->name_len);
	if (c != 0)
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

static const struct auth_pwfile_user *auth_pwfile_find(const struct auth_pwfile *pf,
						       const char *name, size_t len)
{
	size_t lo = 0, hi = pf->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct auth_pwfile_user *u = &pf->users[mid];
		int c = auth_pwfile_cmp_name(name, len, u->name, u->name_len);
		if (c == 0)
			return u;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static int auth_pwfile_check(const struct auth *a, const char *username, size_t username_len,
			     const void *password, size_t password_len)
{
	const struct auth_pwfile *pf = (const struct auth_pwfile *)a;
	const struct auth_pwfile_user *u = auth_pwfile_find(pf, username, username_len);
	if (u && !u->bad)
		return auth_hash_verify(&u->hash, password, password_len) == 0 ? 0 : AUTH_EDENIED;
	/* An unknown user costs what a known one does, so the time a refusal
	 * takes does not tell which names exist. */
	static const struct auth_hash dummy = {.kind = AUTH_HASH_PBKDF2_SHA512,
					       .iterations = AUTH_PBKDF2_ITERATIONS,
					       .salt_len = AUTH_SALT_LEN};
	(void)auth_hash_verify(&dummy, password, password_len);
	return AUTH_EDENIED;
}

static bool auth_pwfile_changed(const struct auth *a, const struct auth *old, const char *username,
				size_t username_len)
{
	const struct auth_pwfile_user *n =
	    auth_pwfile_find((const struct auth_pwfile *)a, username, username_len);
	const struct auth_pwfile_user *o =
	    auth_pwfile_find((const struct auth_pwfile *)old, username, username_len);
	/* Anything but the same good hash (kind, rounds, salt, digest) on
	 * both sides counts as a change: removed, broken, or a new password. */
	if (!n || !o || n->bad || o->bad)
		return true;
	return n->hash.kind != o->hash.kind || n->hash.iterations != o->hash.iterations ||
	       n->hash.salt_len != o->hash.salt_len ||
	       memcmp(n->hash.salt, o->hash.salt, n->hash.salt_len) != 0 ||
	       memcmp(n->hash.hash, o->hash.hash, AUTH_HASH_LEN) != 0;
}

static void auth_pwfile_free(struct auth *a)
{
	struct auth_pwfile *pf = (struct auth_pwfile *)a;
	for (size_t i = 0; i < pf->count; i++)
		free(pf->users[i].name);
	if (pf->users)
		OPENSSL_cleanse(pf->users, pf->count * sizeof(*pf->users));
	free(pf->users);
	free(pf);
}

static const struct auth_ops auth_pwfile_ops = {
    .name = "password file",
    .check = auth_pwfile_check,
    .changed = auth_pwfile_changed,
    .free = auth_pwfile_free,
};

static bool auth_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Trim blanks from both ends of [*s, *s + *len). */
static void auth_trim(const char **s, size_t *len)
{
	while (*len && auth_blank(**s))
		(*s)++, (*len)--;
	while (*len && auth_blank((*s)[*len - 1]))
		(*len)--;
}

static void auth_pwfile_add(struct auth_pwfile *pf, size_t *cap, const char *name, size_t len,
			    unsigned long line, bool bad, const struct auth_hash *h)
{
	if (pf->count == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		pf->users = xrealloc(pf->users, *cap * sizeof(*pf->users));
	}
	struct auth_pwfile_user *u = &pf->users[pf->count++];
	memset(u, 0, sizeof(*u));
	u->name = xstrndup(name, len);
	u->name_len = len;
	u->line = line;
	u->bad = bad;
	if (h)
		u->hash = *h;
}

/* One line, without its line break. Returns true if it was malformed. */
static bool auth_pwfile_line(struct auth_pwfile *pf, size_t *cap, const char *path,
			     unsigned long lineno, const char *s, size_t len, struct log *lg)
{
	const char *why = NULL;
	auth_trim(&s, &len);
	if (len == 0 || s[0] == '#')
		return false;
	const char *colon = memchr(s, ':', len);
	if (!colon) {
		log_write(lg, LOG_LEVEL_ERROR, "%s:%lu: not USER:HASH, ignored", path, lineno);
		return true;
	}
	const char *name = s, *hash = colon + 1;
	size_t name_len = (size_t)(colon - s), hash_len = len - name_len - 1;
	auth_trim(&name, &name_len);
	auth_trim(&hash, &hash_len);
	if (!auth_username_ok(name, name_len)) {
		log_write(lg, LOG_LEVEL_ERROR,
			  "%s:%lu: the username is empty, not UTF-8 or has a control "
			  "character, ignored",
			  path, lineno);
		return true;
	}
	struct auth_hash h;
	if (auth_hash_parse(&h, hash, hash_len, &why) != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "%s:%lu: user '%.*s': %s; this user cannot log in",
			  path, lineno, (int)name_len, name, why);
		auth_pwfile_add(pf, cap, name, name_len, lineno, true, NULL);
		OPENSSL_cleanse(&h, sizeof(h));
		return true;
	}
	auth_pwfile_add(pf, cap, name, name_len, lineno, false, &h);
	OPENSSL_cleanse(&h, sizeof(h));
	return false;
}

/* After sorting: a name on several lines is refused on all of them. */
static unsigned auth_pwfile_mark_repeats(struct auth_pwfile *pf, const char *path, struct log *lg)
{
	unsigned bad = 0;
	for (size_t i = 1; i < pf->count; i++) {
		struct auth_pwfile_user *p = &pf->users[i - 1], *u = &pf->users[i];
		if (auth_pwfile_cmp_name(p->name, p->name_len, u->name, u->name_len) != 0)
			continue;
		log_write(lg, LOG_LEVEL_ERROR,
			  "%s:%lu: user '%s' is also on line %lu; this user cannot log in", path,
			  u->line, u->name, p->line);
		p->bad = u->bad = true;
		bad++;
	}
	return bad;
}

int auth_pwfile_load(struct auth **out, const char *path, struct log *lg, unsigned *bad_lines)
{
	struct auth_pwfile *pf = xcalloc(1, sizeof(*pf));
	size_t cap = 0, bufcap = 0;
	char *buf = NULL;
	unsigned long lineno = 0;
	unsigned bad = 0;
	ssize_t n;
	int rc = AUTH_EIO;
	FILE *f = fopen(path, "r");

	pf->base.ops = &auth_pwfile_ops;
	*out = NULL;
	if (!f)
		goto out;
	while ((n = getline(&buf, &bufcap, f)) >= 0) {
		size_t len = (size_t)n;
		lineno++;
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			len--;
		if (memchr(buf, '\0', len)) {
			log_write(lg, LOG_LEVEL_ERROR, "%s:%lu: a NUL byte, ignored", path, lineno);
			bad++;
			continue;
		}
		if (auth_pwfile_line(pf, &cap, path, lineno, buf, len, lg))
			bad++;
	}
	if (ferror(f))
		goto out;
	if (pf->count)
		qsort(pf->users, pf->count, sizeof(*pf->users), auth_pwfile_cmp_user);
	bad += auth_pwfile_mark_repeats(pf, path, lg);
	if (bad_lines)
		*bad_lines = bad;
	*out = &pf->base;
	pf = NULL;
	rc = 0;
out:
	if (buf) {
		OPENSSL_cleanse(buf, bufcap);
		free(buf);
	}
	if (f) {
		int saved = errno;
		fclose(f);
		errno = saved;
	}
	if (pf)
		auth_pwfile_free(&pf->base);
	return rc;
}
