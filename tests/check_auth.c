/*
 * Unit tests for authentication (src/auth.c) and the security contexts
 * built on it (src/security.c): both hash kinds against lines written by
 * Debian's mosquitto_passwd 2.0.11, malformed and repeated lines, UTF-8
 * names, hashes made here, what a reload counts as changed, and the
 * CONNACK code each kind of login gets; the enhanced authentication
 * method table and exchange (src/authmeth.c), with the test method of
 * fault-injection builds.
 */
#include <check.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_file.h"
#include "auth.h"
#include "authmeth.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "security.h"
#include "util.h"

/* Written by mosquitto_passwd 2.0.11: alice / secret (PBKDF2, 101 rounds),
 * "bøb é" / "pässwörd:x", carol / pw6 (-H sha512). */
#define LINE_ALICE                                                                                 \
	"alice:$7$101$iAfbRKyrmKSZfZjU$WO5bFrQ3UYLh2s2mUZr/"                                       \
	"7MOii6sCcYohejLwt7LxSspR3XfhOzydU7HPyyS"                                                  \
	"pb98Ciz438JL+5By0/b1DLQjiVA=="
#define LINE_BOB                                                                                   \
	"b\xc3\xb8"                                                                                \
	"b \xc3\xa9:$7$101$BfKcbdH+Gh5WYNL2$DeiMTuQpDALL6Bd8xZHWJpVHXHsw1THp6QfrxslkLs526vDof9EFg" \
	"xkL1lvYiQXJLjxcVkzpZnyEJVv4NdJlhw=="
#define LINE_CAROL                                                                                 \
	"carol:$6$/"                                                                               \
	"XMgZ1sYMaIWcRed$9mURae6glp327gkx2M+p9jMG58gWeO3qjST8gEfyjojaGhNSHH9r121N8U05q5Y"          \
	"a+BPDitL1Nu7PwIALVnmZqg=="
#define BOB                                                                                        \
	"b\xc3\xb8"                                                                                \
	"b \xc3\xa9"
#define BOB_PASS "p\xc3\xa4ssw\xc3\xb6rd:x"

static char tmpdir[64];
static char pw_path[128];
static char log_path[128];

static void tmpdir_setup(void)
{
	strcpy(tmpdir, "/tmp/check_auth.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	snprintf(pw_path, sizeof(pw_path), "%s/passwd", tmpdir);
	snprintf(log_path, sizeof(log_path), "%s/log", tmpdir);
}

static void tmpdir_teardown(void)
{
	unlink(pw_path);
	unlink(log_path);
	rmdir(tmpdir);
}

static char *read_file(const char *path)
{
	static char buf[16384];
	FILE *f = fopen(path, "r");
	size_t n = 0;

	buf[0] = '\0';
	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

/* A log that writes to log_path, truncated first. */
static void file_log(struct log *lg)
{
	unlink(log_path);
	log_init(lg);
	lg->dests = LOG_DEST_FILE;
	lg->path = xstrdup(log_path);
	ck_assert_int_eq(log_open(lg), 0);
}

/* Load text as the password file; logs go to log_path. */
static struct auth *load_text(const char *text, unsigned *bad)
{
	struct log lg;
	struct auth *a = NULL;

	write_file(pw_path, text);
	file_log(&lg);
	ck_assert_int_eq(auth_pwfile_load(&a, pw_path, &lg, bad), 0);
	log_cleanup(&lg);
	ck_assert_ptr_nonnull(a);
	return a;
}

static int check(const struct auth *a, const char *user, const char *pass)
{
	return auth_check(a, user, strlen(user), pass, strlen(pass));
}

START_TEST(test_mosquitto_passwd_lines)
{
	unsigned bad = 99;
	struct auth *a = load_text(LINE_ALICE "\n" LINE_BOB "\n" LINE_CAROL "\n", &bad);

	ck_assert_uint_eq(bad, 0);
	ck_assert_str_eq(a->ops->name, "password file");
	ck_assert_int_eq(check(a, "alice", "secret"), 0);
	ck_assert_int_eq(check(a, "alice", "Secret"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "alice", ""), AUTH_EDENIED);
	ck_assert_int_eq(check(a, BOB, BOB_PASS), 0);
	ck_assert_int_eq(check(a, BOB, "p\xc3\xa4ssw\xc3\xb6rd"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "carol", "pw6"), 0); /* $6$: salted SHA-512 */
	ck_assert_int_eq(check(a, "carol", "pw7"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "dave", "secret"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "Alice", "secret"), AUTH_EDENIED); /* names are exact bytes */
	ck_assert_int_eq(check(a, "alic", "secret"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "alice ", "secret"), AUTH_EDENIED);
	ck_assert_str_eq(read_file(log_path), "");
	auth_free(a);
}
END_TEST

START_TEST(test_comments_blanks_crlf)
{
	unsigned bad = 99;
	struct auth *a = load_text("# users\n\n   \n\t# indented comment\r\n"
				   "  " LINE_ALICE "  \r\n" LINE_CAROL,
				   &bad);

	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(check(a, "alice", "secret"), 0);
	ck_assert_int_eq(check(a, "carol", "pw6"), 0); /* last line without a newline */
	auth_free(a);
}
END_TEST

START_TEST(test_blanks_around_the_colon)
{
	unsigned bad = 99;
	/* Mosquitto ignores blanks around the name and the hash. */
	struct auth *a = load_text("alice : $7$101$iAfbRKyrmKSZfZjU$WO5bFrQ3UYLh2s2mUZr/7MOii6sCc"
				   "YohejLwt7LxSspR3XfhOzydU7HPyySpb98Ciz438JL+5By0/b1DLQjiVA==\n",
				   &bad);
	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(check(a, "alice", "secret"), 0);
	auth_free(a);
}
END_TEST

START_TEST(test_malformed_lines)
{
	unsigned bad = 0;
	const char *text = LINE_ALICE "\n"                      /* 1 */
				      "no colon here\n"         /* 2 */
				      "dave:plaintext\n"        /* 3 */
				      "erin:$7$x1$AAAA$AAAA\n"  /* 4 */
				      "frank:$6$!!!!$AAAA\n"    /* 5 */
				      ":$6$AAAA$AAAA\n"         /* 6 */
				      "gina:$7$101$AAAA$AAAA\n" /* 7: hash too short */
				      "\xff\xfe:$6$AAAA$AAAA\n" /* 8: not UTF-8 */
				      "hank:$5$AAAA$AAAA\n"     /* 9 */
				      "ivy:$7$0$AAAA$AAAA\n"    /* 10 */
				      "jo:" LINE_CAROL "\n"     /* 11: "carol:" inside the hash */
	    LINE_CAROL "\n";                                    /* 12 */
	struct auth *a = load_text(text, &bad);
	char want[256];

	ck_assert_uint_eq(bad, 10);
	/* Every other line still works. */
	ck_assert_int_eq(check(a, "alice", "secret"), 0);
	ck_assert_int_eq(check(a, "carol", "pw6"), 0);
	/* A plain text password is not a password. */
	ck_assert_int_eq(check(a, "dave", "plaintext"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "erin", ""), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "jo", "pw6"), AUTH_EDENIED);
	const char *log = read_file(log_path);
	for (int line = 2; line <= 11; line++) {
		snprintf(want, sizeof(want), "%s:%d: ", pw_path, line);
		ck_assert_msg(strstr(log, want) != NULL, "no '%s' in:\n%s", want, log);
	}
	ck_assert_ptr_nonnull(strstr(log, "user 'dave'"));
	ck_assert_ptr_nonnull(strstr(log, "cannot log in"));
	/* Never the hash, nor a plain text password. */
	ck_assert_ptr_null(strstr(log, "plaintext"));
	ck_assert_ptr_null(strstr(log, "AAAA"));
	ck_assert_ptr_null(strstr(log, "/XMgZ1sYMaIWcRed"));
	snprintf(want, sizeof(want), "%s:1:", pw_path);
	ck_assert_ptr_null(strstr(log, want));
	snprintf(want, sizeof(want), "%s:12:", pw_path);
	ck_assert_ptr_null(strstr(log, want));
	auth_free(a);
}
END_TEST

START_TEST(test_repeated_user_cannot_log_in)
{
	unsigned bad = 0;
	struct auth *a = load_text(LINE_ALICE "\n" LINE_CAROL "\n" LINE_ALICE "\n", &bad);

	ck_assert_uint_eq(bad, 1);
	ck_assert_int_eq(check(a, "alice", "secret"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "carol", "pw6"), 0);
	char want[256];
	snprintf(want, sizeof(want), "%s:3: user 'alice' is also on line 1", pw_path);
	ck_assert_ptr_nonnull(strstr(read_file(log_path), want));
	auth_free(a);
}
END_TEST

START_TEST(test_unreadable_file)
{
	struct log lg;
	struct auth *a = (struct auth *)1;
	char missing[160];

	log_init(&lg);
	snprintf(missing, sizeof(missing), "%s/none", tmpdir);
	ck_assert_int_eq(auth_pwfile_load(&a, missing, &lg, NULL), AUTH_EIO);
	ck_assert_ptr_null(a);
	ck_assert_int_eq(errno, ENOENT);
	/* A directory opens but cannot be read. */
	ck_assert_int_eq(auth_pwfile_load(&a, tmpdir, &lg, NULL), AUTH_EIO);
	ck_assert_ptr_null(a);
	log_cleanup(&lg);
}
END_TEST

START_TEST(test_empty_file)
{
	unsigned bad = 99;
	struct auth *a = load_text("", &bad);

	ck_assert_uint_eq(bad, 0);
	ck_assert_int_eq(check(a, "alice", "secret"), AUTH_EDENIED);
	ck_assert_int_eq(check(a, "", ""), AUTH_EDENIED);
	auth_free(a);
}
END_TEST

START_TEST(test_hash_make_roundtrip)
{
	char text[AUTH_HASH_TEXT_MAX], text2[AUTH_HASH_TEXT_MAX];
	struct auth_hash h;
	regex_t re;

	ck_assert_int_eq(auth_hash_make(AUTH_HASH_PBKDF2_SHA512, AUTH_PBKDF2_ITERATIONS, "s3cr:t",
					6, text, sizeof(text)),
			 0);
	/* mosquitto_passwd's shape: 101 rounds, 12 bytes of salt, 64 of hash. */
	ck_assert_int_eq(regcomp(&re, "^\\$7\\$101\\$[A-Za-z0-9+/]{16}\\$[A-Za-z0-9+/]{86}==$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "%s", text);
	regfree(&re);
	ck_assert_int_eq(auth_hash_parse(&h, text, strlen(text), NULL), 0);
	ck_assert_int_eq(h.kind, AUTH_HASH_PBKDF2_SHA512);
	ck_assert_int_eq(h.iterations, 101);
	ck_assert_uint_eq(h.salt_len, AUTH_SALT_LEN);
	ck_assert_int_eq(auth_hash_verify(&h, "s3cr:t", 6), 0);
	ck_assert_int_eq(auth_hash_verify(&h, "s3cr:", 5), AUTH_EDENIED);
	/* A fresh salt each time. */
	ck_assert_int_eq(auth_hash_make(AUTH_HASH_PBKDF2_SHA512, AUTH_PBKDF2_ITERATIONS, "s3cr:t",
					6, text2, sizeof(text2)),
			 0);
	ck_assert_str_ne(text, text2);

	ck_assert_int_eq(auth_hash_make(AUTH_HASH_SHA512, 0, "\0bin", 4, text, sizeof(text)), 0);
	ck_assert_int_eq(regcomp(&re, "^\\$6\\$[A-Za-z0-9+/]{16}\\$[A-Za-z0-9+/]{86}==$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "%s", text);
	regfree(&re);
	ck_assert_int_eq(auth_hash_parse(&h, text, strlen(text), NULL), 0);
	ck_assert_int_eq(auth_hash_verify(&h, "\0bin", 4), 0); /* passwords are bytes */
	ck_assert_int_eq(auth_hash_verify(&h, "\0bin", 3), AUTH_EDENIED);

	ck_assert_int_eq(auth_hash_make(AUTH_HASH_PBKDF2_SHA512, 0, "x", 1, text, sizeof(text)),
			 AUTH_EINVAL);
	ck_assert_int_eq(auth_hash_make(AUTH_HASH_PBKDF2_SHA512, 101, "x", 1, text, 20),
			 AUTH_EINVAL);
}
END_TEST

static const char *bad_hashes[] = {
    "",
    "plain",
    "$7$",
    "$7$101$",
    "$7$101$iAfbRKyrmKSZfZjU$",
    "$7$$iAfbRKyrmKSZfZjU$AAAA",
    "$7$-1$iAfbRKyrmKSZfZjU$AAAA",
    "$7$99999999999$iAfbRKyrmKSZfZjU$AAAA",
    /* a login at this count would stall the broker's loop for seconds */
    ("$7$1000001$iAfbRKyrmKSZfZjU$WO5bFrQ3UYLh2s2mUZr/7MOii6sCcUrLPOTJk0Y4d1mY1j/ZzG1bUfVXxxTc"
     "ivpo9Q9xqS9Se7kq6M6n5CxIQg=="),
    "$6$iAfbRKyrmKSZfZjU",
    "$6$$AAAA",
    "$6$iAfb RKyrmKSZfZjU$AAAA",
    "$6$iAfbRKyrmKSZfZj$AAAA", /* not a multiple of 4 */
    "$6$iAfbRKyrmKSZfZjU$AAAA$extra",
    "$8$iAfbRKyrmKSZfZjU$AAAA",
    "$77$101$iAfbRKyrmKSZfZjU$AAAA",
    "7$101$iAfbRKyrmKSZfZjU$AAAA",
    /* the right shape with a hash one byte short */
    ("$6$/XMgZ1sYMaIWcRed$9mURae6glp327gkx2M+p9jMG58gWeO3qjST8gEfyjojaGhNSHH9r121N8U05q5Ya+"
     "BPDitL1Nu7PwIALVnmZg=="),
};

START_TEST(test_hash_parse_rejects)
{
	struct auth_hash h;
	const char *why = NULL;
	const char *t = bad_hashes[_i];

	ck_assert_msg(auth_hash_parse(&h, t, strlen(t), &why) == AUTH_EINVAL, "accepted '%s'", t);
	ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(test_username_ok)
{
	ck_assert(auth_username_ok("alice", 5));
	ck_assert(auth_username_ok(BOB, strlen(BOB)));
	ck_assert(auth_username_ok("a b", 3));
	ck_assert(auth_username_ok("\xe6\x97\xa5\xe6\x9c\xac", 6));
	ck_assert(!auth_username_ok("", 0));
	ck_assert(!auth_username_ok("a:b", 3));
	ck_assert(!auth_username_ok(" a", 2));
	ck_assert(!auth_username_ok("a\t", 2));
	ck_assert(!auth_username_ok("a\nb", 3));
	ck_assert(!auth_username_ok("a\x7f", 2));
	ck_assert(!auth_username_ok("\xff", 1));
	ck_assert(!auth_username_ok("\xc3", 1)); /* cut in the middle of a character */
	ck_assert(!auth_username_ok("a\0b", 3));
}
END_TEST

START_TEST(test_changed_on_reload)
{
	struct auth *old = load_text(LINE_ALICE "\n" LINE_BOB "\n" LINE_CAROL "\n", NULL);
	/* alice unchanged, bob removed, carol with a new password, dave new. */
	char carol2[AUTH_HASH_TEXT_MAX + 16], dave[AUTH_HASH_TEXT_MAX + 16];
	char h[AUTH_HASH_TEXT_MAX];
	ck_assert_int_eq(auth_hash_make(AUTH_HASH_PBKDF2_SHA512, 101, "new", 3, h, sizeof(h)), 0);
	snprintf(carol2, sizeof(carol2), "carol:%s\n", h);
	snprintf(dave, sizeof(dave), "dave:%s\n", h);
	char text[2048];
	snprintf(text, sizeof(text), "%s\n%s%s", LINE_ALICE, carol2, dave);
	struct auth *fresh = load_text(text, NULL);

	ck_assert(!auth_changed(fresh, old, "alice", 5));
	ck_assert(auth_changed(fresh, old, BOB, strlen(BOB)));
	ck_assert(auth_changed(fresh, old, "carol", 5));
	ck_assert(auth_changed(fresh, old, "dave", 4));
	ck_assert(auth_changed(fresh, old, "nobody", 6));
	ck_assert(!auth_changed(old, old, "alice", 5));
	auth_free(fresh);

	/* A line broken by an edit counts as a change too. */
	fresh = load_text("alice:$7$101$broken\n" LINE_CAROL "\n", NULL);
	ck_assert(auth_changed(fresh, old, "alice", 5));
	ck_assert(!auth_changed(fresh, old, "carol", 5));
	auth_free(fresh);
	auth_free(old);
	auth_free(NULL);
}
END_TEST

/* A CONNECT as the codec leaves it. */
static struct codec_connect connect_with(const char *user, const char *pass)
{
	struct codec_connect p;
	memset(&p, 0, sizeof(p));
	p.protocol_level = 4;
	if (user) {
		p.has_username = true;
		p.username.ptr = user;
		p.username.len = (uint32_t)strlen(user);
	}
	if (pass) {
		p.has_password = true;
		p.password.ptr = pass;
		p.password.len = (uint32_t)strlen(pass);
	}
	return p;
}

static int login(const struct security *s, const char *user, const char *pass)
{
	struct codec_connect p = connect_with(user, pass);
	const char *why = NULL;
	int rc = security_login(s, &p, &why);
	if (rc != SECURITY_LOGIN_OK)
		ck_assert_ptr_nonnull(why);
	return rc;
}

START_TEST(test_security_login_codes)
{
	struct config cfg;
	struct security_set set;
	struct log lg;
	unsigned bad = 99;

	write_file(pw_path, LINE_ALICE "\n" LINE_CAROL "\n");
	log_init(&lg);
	config_init(&cfg);
	cfg.sec.password_file = xstrdup(pw_path);
	cfg.sec.allow_anonymous = 0;
	ck_assert_int_eq(security_set_init(&set, &cfg, &lg, &bad), 0);
	ck_assert_uint_eq(bad, 0);
	const struct security *s = security_for(&set, NULL);
	ck_assert_ptr_null(s->acl);
	ck_assert_int_eq(login(s, "alice", "secret"), SECURITY_LOGIN_OK);
	ck_assert_int_eq(login(s, "alice", "wrong"), SECURITY_LOGIN_BAD_AUTH);
	ck_assert_int_eq(login(s, "alice", NULL), SECURITY_LOGIN_BAD_AUTH);
	ck_assert_int_eq(login(s, "zed", "secret"), SECURITY_LOGIN_BAD_AUTH);
	ck_assert_int_eq(login(s, NULL, NULL), SECURITY_LOGIN_NOT_AUTHORIZED);
	security_set_cleanup(&set);

	/* Anonymous allowed: no username is fine, a wrong password is not. */
	cfg.sec.allow_anonymous = 1;
	ck_assert_int_eq(security_set_init(&set, &cfg, &lg, NULL), 0);
	s = security_for(&set, NULL);
	ck_assert_int_eq(login(s, NULL, NULL), SECURITY_LOGIN_OK);
	ck_assert_int_eq(login(s, "alice", "wrong"), SECURITY_LOGIN_BAD_AUTH);
	ck_assert_int_eq(login(s, "carol", "pw6"), SECURITY_LOGIN_OK);
	security_set_cleanup(&set);

	/* No password file: a username is taken as given when anonymous
	 * clients are allowed, refused with 4 when they are not. */
	free(cfg.sec.password_file);
	cfg.sec.password_file = NULL;
	ck_assert_int_eq(security_set_init(&set, &cfg, &lg, NULL), 0);
	ck_assert_int_eq(login(security_for(&set, NULL), "who", "ever"), SECURITY_LOGIN_OK);
	security_set_cleanup(&set);
	cfg.sec.allow_anonymous = 0;
	ck_assert_int_eq(security_set_init(&set, &cfg, &lg, NULL), 0);
	ck_assert_int_eq(login(security_for(&set, NULL), "who", "ever"), SECURITY_LOGIN_BAD_AUTH);
	ck_assert_int_eq(login(security_for(&set, NULL), NULL, NULL),
			 SECURITY_LOGIN_NOT_AUTHORIZED);
	security_set_cleanup(&set);
	config_cleanup(&cfg);
	log_cleanup(&lg);
}
END_TEST

START_TEST(test_security_per_listener_and_reload)
{
	struct config cfg;
	struct security_set set;
	struct log lg;
	char other[160];

	snprintf(other, sizeof(other), "%s/other", tmpdir);
	write_file(pw_path, LINE_ALICE "\n" LINE_CAROL "\n");
	config_init(&cfg);
	cfg.per_listener_settings = true;
	cfg.file_listeners = true; /* as if read from a file: anonymous is opt-in */
	config_add_listener(&cfg, "127.0.0.1", 1);
	config_add_listener(&cfg, "127.0.0.1", 2);
	struct config_listener *l1 = cfg.listeners, *l2 = l1->next;
	l1->sec.password_file = xstrdup(pw_path);
	l2->sec.allow_anonymous = 1;
	file_log(&lg);
	ck_assert_int_eq(security_set_init(&set, &cfg, &lg, NULL), 0);
	ck_assert_ptr_eq(security_for(&set, l1)->listener, l1);
	ck_assert_ptr_eq(security_for(&set, l2)->listener, l2);
	ck_assert_ptr_null(security_for(&set, NULL)->listener);
	ck_assert_int_eq(login(security_for(&set, l1), "alice", "secret"), SECURITY_LOGIN_OK);
	ck_assert_int_eq(login(security_for(&set, l1), NULL, NULL), SECURITY_LOGIN_NOT_AUTHORIZED);
	ck_assert_int_eq(login(security_for(&set, l2), NULL, NULL), SECURITY_LOGIN_OK);

	/* A reload that cannot read the file keeps the old one. */
	unlink(pw_path);
	ck_assert_uint_eq(security_set_reload(&set, &lg), 0);
	ck_assert_int_eq(login(security_for(&set, l1), "alice", "secret"), SECURITY_LOGIN_OK);
	ck_assert(!security_revoked(security_for(&set, l1), "alice", 5));
	char want[256];
	snprintf(want, sizeof(want), "keeping the password_file %s loaded before", pw_path);
	ck_assert_ptr_nonnull(strstr(read_file(log_path), want));

	/* One that loads replaces it; carol is gone. */
	write_file(pw_path, LINE_ALICE "\n");
	ck_assert_uint_eq(security_set_reload(&set, &lg), 1);
	ck_assert(!security_revoked(security_for(&set, l1), "alice", 5));
	ck_assert(security_revoked(security_for(&set, l1), "carol", 5));
	ck_assert(!security_revoked(security_for(&set, l2), "carol", 5));
	security_set_reload_done(&set);
	ck_assert(!security_revoked(security_for(&set, l1), "carol", 5));
	ck_assert_int_eq(login(security_for(&set, l1), "carol", "pw6"), SECURITY_LOGIN_BAD_AUTH);
	security_set_cleanup(&set);

	/* Start-up with an unreadable file fails, naming it. */
	l2->sec.password_file = xstrdup(other);
	ck_assert_int_eq(security_set_init(&set, &cfg, &lg, NULL), -1);
	security_set_cleanup(&set);
	snprintf(want, sizeof(want), "cannot read password_file %s", other);
	ck_assert_ptr_nonnull(strstr(read_file(log_path), want));
	log_cleanup(&lg);
	config_cleanup(&cfg);
}
END_TEST

START_TEST(test_printable)
{
	char out[16];

	security_printable(out, sizeof(out), "plain", 5);
	ck_assert_str_eq(out, "plain");
	security_printable(out, sizeof(out), "a\nb\\", 4);
	ck_assert_str_eq(out, "a\\x0ab\\x5c");
	security_printable(out, sizeof(out), "0123456789abcdefghij", 20);
	ck_assert_str_eq(out, "0123456789ab...");
	security_printable(out, sizeof(out), "", 0);
	ck_assert_str_eq(out, "");
}
END_TEST

/* ---- enhanced authentication methods ---- */

START_TEST(test_authmeth_unknown_names)
{
	ck_assert_ptr_null(authmeth_find("SCRAM-SHA-1", 11));
	ck_assert_ptr_null(authmeth_find("", 0));
	ck_assert_ptr_null(authmeth_find("cairn-test", 10)); /* a prefix is no name */
	ck_assert_ptr_null(authmeth_find("cairn-test-challengeX", 21));
#ifndef CAIRN_FAULT_INJECTION
	/* A production build carries no method at all. */
	ck_assert_ptr_null(authmeth_find("cairn-test-challenge", 20));
#endif
}
END_TEST

#ifdef CAIRN_FAULT_INJECTION
#include <openssl/evp.h>
#include <openssl/hmac.h>

static void mac(const char *key, const uint8_t *msg, size_t len, uint8_t out[32])
{
	unsigned int n = 0;
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), key, (int)strlen(key), msg, len, out, &n));
	ck_assert_uint_eq(n, 32);
}

/* A config whose only option is auth_test_secret alice:pw (and a
 * different one for alice before it, which the last line overrides). */
struct cfg_alice {
	struct config cfg;
	struct config_option o1, o2;
	char k1[32], v1[32], k2[32], v2[32];
};

static void cfg_alice_init(struct cfg_alice *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->k1, "auth_test_secret");
	strcpy(c->v1, "alice:old");
	strcpy(c->k2, "auth_test_secret");
	strcpy(c->v2, "alice:pw");
	c->o1 = (struct config_option){c->k1, c->v1, &c->o2};
	c->o2 = (struct config_option){c->k2, c->v2, NULL};
	c->cfg.options = &c->o1;
}

/* Run one step; returns the result and copies the data out. */
static enum authmeth_result step(struct authmeth_session *s, const struct config *cfg,
				 const uint8_t *data, size_t len, uint8_t *got, size_t *got_len,
				 uint8_t *reason, char **user)
{
	struct authmeth_out out = {0};
	enum authmeth_result r = authmeth_session_step(s, cfg, data, len, &out);
	*got_len = out.data_len;
	if (out.data_len)
		memcpy(got, out.data, out.data_len);
	*reason = out.reason;
	if (user)
		*user = out.username ? xstrdup(out.username) : NULL;
	authmeth_out_cleanup(&out);
	return r;
}

START_TEST(test_authmeth_test_challenge)
{
	struct cfg_alice c;
	cfg_alice_init(&c);
	const struct authmeth *m = authmeth_find("cairn-test-challenge", 20);
	ck_assert_ptr_nonnull(m);
	struct authmeth_session *s = authmeth_session_new(m, "alice", 5);
	uint8_t n1[64], n2[64], fin[64], ans[32], both[64];
	size_t l1, l2, lf;
	uint8_t reason;
	char *user = NULL;
	for (int round = 0; round < 2; round++) { /* the second run: re-authentication */
		ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n1, &l1, &reason, NULL),
				 AUTHMETH_CONTINUE);
		ck_assert_uint_eq(l1, 32);
		ck_assert(s->in_progress);
		mac("pw", n1, 32, ans);
		ck_assert_int_eq(step(s, &c.cfg, ans, 32, n2, &l2, &reason, NULL),
				 AUTHMETH_CONTINUE);
		ck_assert_uint_eq(l2, 32);
		ck_assert(memcmp(n1, n2, 32) != 0);
		mac("pw", n2, 32, ans);
		ck_assert_int_eq(step(s, &c.cfg, ans, 32, fin, &lf, &reason, &user),
				 AUTHMETH_SUCCESS);
		ck_assert(!s->in_progress);
		ck_assert_str_eq(user, "alice");
		free(user);
		memcpy(both, n1, 32);
		memcpy(both + 32, n2, 32);
		mac("pw", both, 64, ans);
		ck_assert_uint_eq(lf, 32);
		ck_assert_mem_eq(fin, ans, 32);
		s->connected = true;
	}
	authmeth_session_free(s);
}
END_TEST

START_TEST(test_authmeth_test_challenge_refusals)
{
	struct cfg_alice c;
	cfg_alice_init(&c);
	const struct authmeth *m = authmeth_find("cairn-test-challenge", 20);
	uint8_t n[64], ans[32];
	size_t l;
	uint8_t reason;

	/* The old secret, overridden by the later line: 0x86. */
	struct authmeth_session *s = authmeth_session_new(m, "alice", 5);
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_CONTINUE);
	mac("old", n, 32, ans);
	ck_assert_int_eq(step(s, &c.cfg, ans, 32, n, &l, &reason, NULL), AUTHMETH_FAILURE);
	ck_assert_uint_eq(reason, 0x86);
	ck_assert(!s->in_progress);
	/* A short answer, then no answer at all. */
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_CONTINUE);
	ck_assert_int_eq(step(s, &c.cfg, ans, 31, n, &l, &reason, NULL), AUTHMETH_FAILURE);
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_CONTINUE);
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_FAILURE);
	/* Left mid-exchange: freed with the session (ASan checks the rest). */
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_CONTINUE);
	authmeth_session_free(s);

	/* An unknown user is challenged like a known one, then refused. */
	s = authmeth_session_new(m, "mallory", 7);
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_CONTINUE);
	ck_assert_uint_eq(l, 32);
	mac("", n, 32, ans);
	ck_assert_int_eq(step(s, &c.cfg, ans, 32, n, &l, &reason, NULL), AUTHMETH_FAILURE);
	ck_assert_uint_eq(reason, 0x86);
	authmeth_session_free(s);

	/* No username: nobody to authenticate. */
	s = authmeth_session_new(m, NULL, 0);
	ck_assert_int_eq(step(s, &c.cfg, NULL, 0, n, &l, &reason, NULL), AUTHMETH_FAILURE);
	ck_assert_uint_eq(reason, 0x87);
	authmeth_session_free(s);
	authmeth_session_free(NULL);
}
END_TEST
#endif

static Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("pwfile");
	TCase *ts = tcase_create("security");

	tcase_add_unchecked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_add_test(tc, test_mosquitto_passwd_lines);
	tcase_add_test(tc, test_comments_blanks_crlf);
	tcase_add_test(tc, test_blanks_around_the_colon);
	tcase_add_test(tc, test_malformed_lines);
	tcase_add_test(tc, test_repeated_user_cannot_log_in);
	tcase_add_test(tc, test_unreadable_file);
	tcase_add_test(tc, test_empty_file);
	tcase_add_test(tc, test_hash_make_roundtrip);
	tcase_add_loop_test(tc, test_hash_parse_rejects, 0,
			    (int)(sizeof(bad_hashes) / sizeof(bad_hashes[0])));
	tcase_add_test(tc, test_username_ok);
	tcase_add_test(tc, test_changed_on_reload);
	suite_add_tcase(s, tc);

	tcase_add_unchecked_fixture(ts, tmpdir_setup, tmpdir_teardown);
	tcase_add_test(ts, test_security_login_codes);
	tcase_add_test(ts, test_security_per_listener_and_reload);
	tcase_add_test(ts, test_printable);
	suite_add_tcase(s, ts);

	TCase *tm = tcase_create("methods");
	tcase_add_test(tm, test_authmeth_unknown_names);
#ifdef CAIRN_FAULT_INJECTION
	tcase_add_test(tm, test_authmeth_test_challenge);
	tcase_add_test(tm, test_authmeth_test_challenge_refusals);
#endif
	suite_add_tcase(s, tm);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
