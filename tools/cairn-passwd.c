/*
 * cairn-passwd: create and edit password files in Mosquitto's format, so a
 * file written here works with mosquitto and one written by
 * mosquitto_passwd works with cairn. Every change is written to a
 * temporary file beside the original and renamed over it: a crash leaves
 * the old file or the new one, never half of either.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "util.h"

#define PASSWD_MAX 65535 /* an MQTT password field holds at most this */

enum passwd_mode { PASSWD_ADD, PASSWD_DELETE, PASSWD_UPGRADE };

struct passwd_args {
	enum passwd_mode mode;
	bool create;
	bool batch;
	enum auth_hash_kind kind;
	const char *file;
	const char *user;
	const char *password;
};

/* The lines of the file, kept verbatim (comments and lines this tool does
 * not understand are written back unchanged). */
struct passwd_lines {
	char **v;
	size_t n, cap;
};

static void passwd_usage(FILE *out)
{
	fputs("usage: cairn-passwd [-H sha512-pbkdf2|sha512] [-c | -D] FILE USER\n"
	      "       cairn-passwd [-H sha512-pbkdf2|sha512] [-c] -b FILE USER PASSWORD\n"
	      "       cairn-passwd -U FILE\n"
	      "  -b  batch: take the password from the command line\n"
	      "  -c  create FILE, replacing any file of that name\n"
	      "  -D  delete USER\n"
	      "  -H  the hash: sha512-pbkdf2 (default) or sha512 (Mosquitto 1.6 and older)\n"
	      "  -U  hash every plain text password in FILE\n",
	      out);
}

static int passwd_parse_args(struct passwd_args *a, int argc, char **argv)
{
	int i = 1;
	memset(a, 0, sizeof(*a));
	a->kind = AUTH_HASH_PBKDF2_SHA512;
	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *o = argv[i];
		if (strcmp(o, "--") == 0) {
			i++; /* what follows is FILE USER..., even if it starts with '-' */
			break;
		} else if (strcmp(o, "-b") == 0) {
			a->batch = true;
		} else if (strcmp(o, "-c") == 0) {
			a->create = true;
		} else if (strcmp(o, "-D") == 0) {
			a->mode = PASSWD_DELETE;
		} else if (strcmp(o, "-U") == 0) {
			a->mode = PASSWD_UPGRADE;
		} else if (strcmp(o, "-H") == 0 && i + 1 < argc) {
			const char *h = argv[++i];
			if (strcmp(h, "sha512-pbkdf2") == 0)
				a->kind = AUTH_HASH_PBKDF2_SHA512;
			else if (strcmp(h, "sha512") == 0)
				a->kind = AUTH_HASH_SHA512;
			else {
				fprintf(stderr, "cairn-passwd: -H: unknown hash '%s'\n", h);
				return -1;
			}
		} else if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			passwd_usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "cairn-passwd: unknown or incomplete option '%s'\n", o);
			return -1;
		}
	}
	int left = argc - i;
	if (a->mode == PASSWD_UPGRADE) {
		if (left != 1 || a->create || a->batch) {
			fputs("cairn-passwd: -U takes one FILE and no other option\n", stderr);
			return -1;
		}
		a->file = argv[i];
		return 0;
	}
	if ((a->mode == PASSWD_DELETE && (a->create || a->batch)) || left != (a->batch ? 3 : 2)) {
		passwd_usage(stderr);
		return -1;
	}
	a->file = argv[i];
	a->user = argv[i + 1];
	a->password = a->batch ? argv[i + 2] : NULL;
	if (!auth_username_ok(a->user, strlen(a->user))) {
		fputs(
		    "cairn-passwd: a username must be valid UTF-8 without ':', control characters "
		    "or blanks at either end\n",
		    stderr);
		return -1;
	}
	return 0;
}

/* One line from the terminal without echo (or from a pipe as it comes).
 * Returns its length, or -1 at end of input. */
static long passwd_read_line(const char *prompt, char *buf, size_t cap)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	long len = -1;

	if (tty) {
		fputs(prompt, stderr);
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (fgets(buf, (int)cap, stdin)) {
		size_t n = strlen(buf);
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		len = (long)n;
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return len;
}

/* Ask twice, as every password tool does: a typo here locks the user out. */
static char *passwd_prompt(void)
{
	size_t cap = PASSWD_MAX + 3;
	char *a = xmalloc(cap), *b = xmalloc(cap), *out = NULL;
	long la = passwd_read_line("Password: ", a, cap);
	if (la < 0) {
		fputs("cairn-passwd: no password given\n", stderr);
		goto out;
	}
	if (la > PASSWD_MAX) {
		fputs("cairn-passwd: the password is longer than 65535 bytes\n", stderr);
		goto out;
	}
	long lb = passwd_read_line("Reenter password: ", b, cap);
	if (lb != la || strcmp(a, b) != 0) {
		fputs("cairn-passwd: the passwords do not match\n", stderr);
		goto out;
	}
	out = xstrdup(a);
out:
	OPENSSL_cleanse(a, cap);
	OPENSSL_cleanse(b, cap);
	free(a);
	free(b);
	return out;
}

static void passwd_lines_add(struct passwd_lines *l, char *line)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 32;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = line;
}

static void passwd_lines_free(struct passwd_lines *l)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i]) {
			OPENSSL_cleanse(l->v[i], strlen(l->v[i]));
			free(l->v[i]);
		}
	}
	free(l->v);
}

static int passwd_read_file(const char *path, struct passwd_lines *l, mode_t *mode)
{
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	struct stat st;
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "cairn-passwd: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0)
		*mode = st.st_mode & 07777;
	while ((n = getline(&buf, &cap, f)) >= 0) {
		size_t len = (size_t)n;
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			len--;
		passwd_lines_add(l, xstrndup(buf, len));
	}
	int rc = ferror(f) ? -1 : 0;
	if (rc)
		fprintf(stderr, "cairn-passwd: cannot read %s: %s\n", path, strerror(errno));
	if (buf)
		OPENSSL_cleanse(buf, cap);
	free(buf);
	fclose(f);
	return rc;
}

/* Where the username of a line ends and its password field starts, with
 * the broker's rules (blanks around the name ignored). False for blank,
 * comment and colon-less lines. */
static bool passwd_split(const char *line, const char **name, size_t *name_len, const char **rest)
{
	while (*line == ' ' || *line == '\t')
		line++;
	const char *colon = strchr(line, ':');
	if (*line == '#' || !colon)
		return false;
	size_t n = (size_t)(colon - line);
	while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	*name = line;
	*name_len = n;
	*rest = colon + 1;
	return true;
}

static bool passwd_is_user(const char *line, const char *user)
{
	const char *name, *rest;
	size_t len;
	return passwd_split(line, &name, &len, &rest) && len == strlen(user) &&
	       memcmp(name, user, len) == 0;
}

static char *passwd_hash_line(const struct passwd_args *a, const char *user, const char *password,
			      size_t password_len)
{
	char hash[AUTH_HASH_TEXT_MAX];
	int rc = auth_hash_make(a->kind, AUTH_PBKDF2_ITERATIONS, password, password_len, hash,
				sizeof(hash));
	if (rc != 0) {
		fprintf(stderr, "cairn-passwd: cannot hash the password: %s\n", auth_strerror(rc));
		return NULL;
	}
	size_t n = strlen(user) + 1 + strlen(hash) + 1;
	char *line = xmalloc(n);
	snprintf(line, n, "%s:%s", user, hash);
	return line;
}

/* Write l to a temporary file beside path, flush it to disk, and rename
 * it over path. */
static int passwd_write_file(const char *path, const struct passwd_lines *l, mode_t mode)
{
	size_t n = strlen(path) + 16;
	char *tmp = xmalloc(n);
	int fd = -1, rc = -1;
	FILE *f = NULL;

	snprintf(tmp, n, "%s.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		fprintf(stderr, "cairn-passwd: cannot create a file beside %s: %s\n", path,
			strerror(errno));
		free(tmp);
		return -1;
	}
	if (fchmod(fd, mode) != 0)
		goto fail;
	f = fdopen(fd, "w");
	if (!f)
		goto fail;
	fd = -1;
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i] && fprintf(f, "%s\n", l->v[i]) < 0)
			goto fail;
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		goto fail;
	if (fclose(f) != 0) {
		f = NULL;
		goto fail;
	}
	f = NULL;
	if (rename(tmp, path) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "cairn-passwd: cannot write %s: %s\n", path, strerror(errno));
	if (f)
		fclose(f);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	return rc;
}

static int passwd_add(const struct passwd_args *a, struct passwd_lines *l)
{
	char *typed = NULL;
	const char *pw = a->password;
	int rc = -1;

	if (!pw) {
		typed = passwd_prompt();
		if (!typed)
			goto out;
		pw = typed;
	}
	if (strlen(pw) > PASSWD_MAX) {
		fputs("cairn-passwd: the password is longer than 65535 bytes\n", stderr);
		goto out;
	}
	char *line = passwd_hash_line(a, a->user, pw, strlen(pw));
	if (!line)
		goto out;
	/* The first line of the user is replaced and any later one dropped:
	 * the broker refuses a name that appears twice. */
	bool placed = false;
	for (size_t i = 0; i < l->n; i++) {
		if (!l->v[i] || !passwd_is_user(l->v[i], a->user))
			continue;
		free(l->v[i]);
		l->v[i] = placed ? NULL : line;
		placed = true;
	}
	if (!placed)
		passwd_lines_add(l, line);
	rc = 0;
out:
	if (typed) {
		OPENSSL_cleanse(typed, strlen(typed));
		free(typed);
	}
	return rc;
}

static int passwd_delete(const struct passwd_args *a, struct passwd_lines *l)
{
	bool found = false;
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i] && passwd_is_user(l->v[i], a->user)) {
			free(l->v[i]);
			l->v[i] = NULL;
			found = true;
		}
	}
	if (!found)
		fprintf(stderr, "cairn-passwd: user %s is not in %s\n", a->user, a->file);
	return found ? 0 : -1;
}

/* -U: a line whose password field is not a hash holds a plain text
 * password; it is hashed. Hashed lines (written by either tool) stay. */
static int passwd_upgrade(const struct passwd_args *a, struct passwd_lines *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *name, *rest;
		size_t len;
		struct auth_hash h;
		if (!l->v[i] || !passwd_split(l->v[i], &name, &len, &rest))
			continue;
		if (auth_hash_parse(&h, rest, strlen(rest), NULL) == 0)
			continue;
		char *user = xstrndup(name, len);
		char *line = auth_username_ok(user, len)
				 ? passwd_hash_line(a, user, rest, strlen(rest))
				 : NULL;
		free(user);
		if (!line) {
			fprintf(stderr, "cairn-passwd: %s:%zu: cannot hash this line\n", a->file,
				i + 1);
			return -1;
		}
		OPENSSL_cleanse(l->v[i], strlen(l->v[i]));
		free(l->v[i]);
		l->v[i] = line;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct passwd_args a;
	struct passwd_lines lines = {0};
	mode_t mode = 0600; /* a new file: readable by its owner only */
	int rc = 1;

	if (passwd_parse_args(&a, argc, argv) != 0)
		return 1;
	if (!a.create && passwd_read_file(a.file, &lines, &mode) != 0)
		goto out;
	int r;
	switch (a.mode) {
	case PASSWD_ADD:
		r = passwd_add(&a, &lines);
		break;
	case PASSWD_DELETE:
		r = passwd_delete(&a, &lines);
		break;
	default:
		r = passwd_upgrade(&a, &lines);
		break;
	}
	if (r == 0 && passwd_write_file(a.file, &lines, mode) == 0)
		rc = 0;
out:
	passwd_lines_free(&lines);
	return rc;
}
