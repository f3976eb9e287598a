/*
 * Authentication: may this username log in with this password? One small
 * interface (struct auth_ops) so the protocol never knows where credentials
 * live, and its first implementation, Mosquitto's password file.
 *
 * Caveats
 * - Every call runs on the broker's one thread; a check blocks the loop for
 *   as long as it takes (a PBKDF2 hash of 101 rounds: tens of microseconds).
 *   An implementation that asks a slow service needs an asynchronous
 *   interface first.
 * - A password is bytes, not a C string: MQTT carries it as binary data.
 * - The password file is read once; a reload builds a new checker and
 *   swaps it in (security.c), so a checker never changes under its users.
 */
#ifndef CAIRN_AUTH_H
#define CAIRN_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct log;

/* Error codes: 0 is success, these are negative. */
#define AUTH_EDENIED (-1) /* unknown user, wrong password, or a user whose line is malformed */
#define AUTH_EIO     (-2) /* the file cannot be opened or read (errno is left set) */
#define AUTH_EINVAL  (-3) /* a hash, username or password that is not acceptable */
#define AUTH_ECRYPTO (-4) /* OpenSSL failed (out of memory, no random bytes) */

/* What cairn-passwd and mosquitto_passwd (2.0) write by default. */
#define AUTH_PBKDF2_ITERATIONS 101
/* Every login is verified on the broker's only loop: a count above this
 * would let one CONNECT with a known username stall every client for
 * seconds, so such a line is malformed (its user cannot log in). */
#define AUTH_PBKDF2_ITERATIONS_MAX 1000000
#define AUTH_SALT_LEN              12
#define AUTH_HASH_LEN              64 /* SHA-512 */
#define AUTH_SALT_MAX              64

struct auth;

/*
 * One way of checking credentials. A new implementation fills one of these
 * and a constructor returning a struct auth whose first member is the
 * struct auth below; nothing else needs to change.
 */
struct auth_ops {
	const char *name; /* for log lines: "password file", "users table" */
	/* 0 if username may log in with password, AUTH_EDENIED if not, or
	 * another negative AUTH_E* code when the check itself failed (the
	 * caller refuses the login then too). username is valid UTF-8 and
	 * not NUL-terminated; both are borrowed for the call. */
	int (*check)(const struct auth *a, const char *username, size_t username_len,
		     const void *password, size_t password_len);
	/* Called after a reload on the new checker with the one it replaces
	 * (same ops): true if username's credentials are gone or differ, so
	 * its connections must be closed. NULL: a reload closes nobody. */
	bool (*changed)(const struct auth *a, const struct auth *old, const char *username,
			size_t username_len);
	/* Release everything a holds. Never NULL. */
	void (*free)(struct auth *a);
};

struct auth {
	const struct auth_ops *ops;
};

/* Thin wrappers over the ops, so callers never test for NULL slots. */
int auth_check(const struct auth *a, const char *username, size_t username_len,
	       const void *password, size_t password_len);
bool auth_changed(const struct auth *a, const struct auth *old, const char *username,
		  size_t username_len);
/* NULL is allowed and does nothing. */
void auth_free(struct auth *a);
/* A short English description of an AUTH_E* code. */
const char *auth_strerror(int err);

/* ---- the password file ---- */

/*
 * Load Mosquitto's password file at path: one "USER:HASH" per line, HASH
 * being "$7$ITERATIONS$SALT$HASH" (PBKDF2-HMAC-SHA512) or "$6$SALT$HASH"
 * (SHA-512 of the password then the salt), salt and hash in base64. Blank
 * lines and lines starting with '#' are skipped; blanks around USER and
 * HASH are ignored, as Mosquitto does.
 *
 * A malformed line is logged to lg as "PATH:LINE: why" (never the hash)
 * and its user, when the line names one, cannot log in; a username on two
 * lines cannot log in either (which one was meant is not knowable). Every
 * other line works. *bad_lines (may be NULL) counts the lines logged.
 *
 * Returns 0 and *out (free it with auth_free), or AUTH_EIO when the file
 * cannot be opened or read: then *out is NULL and nothing is in force.
 */
int auth_pwfile_load(struct auth **out, const char *path, struct log *lg, unsigned *bad_lines);

/* One decoded hash from a password file line. */
enum auth_hash_kind { AUTH_HASH_SHA512 = 6, AUTH_HASH_PBKDF2_SHA512 = 7 };
struct auth_hash {
	enum auth_hash_kind kind;
	int iterations; /* PBKDF2 only */
	uint8_t salt[AUTH_SALT_MAX];
	size_t salt_len;
	uint8_t hash[AUTH_HASH_LEN];
};

/* Decode "$7$..." or "$6$..." (len bytes, no newline). Returns 0, or
 * AUTH_EINVAL and a static reason in *why (may be NULL). */
int auth_hash_parse(struct auth_hash *h, const char *text, size_t len, const char **why);
/* 0 if password matches h, AUTH_EDENIED if not, AUTH_ECRYPTO. The
 * comparison takes the same time wherever the bytes differ. */
int auth_hash_verify(const struct auth_hash *h, const void *password, size_t password_len);
/*
 * Hash password with a fresh random salt of AUTH_SALT_LEN bytes and write
 * its text form, NUL-terminated, into out (AUTH_HASH_TEXT_MAX bytes is
 * always enough). iterations is used for PBKDF2 only. Returns 0,
 * AUTH_EINVAL (iterations < 1, out too small) or AUTH_ECRYPTO.
 */
#define AUTH_HASH_TEXT_MAX 256
int auth_hash_make(enum auth_hash_kind kind, int iterations, const void *password,
		   size_t password_len, char *out, size_t outlen);

/* Whether name can be a password file username: non-empty, valid UTF-8,
 * no ':', no control character, at most 65535 bytes. */
bool auth_username_ok(const char *name, size_t len);

#endif
