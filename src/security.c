/*
 * Security contexts: built from the config at start (one broker-wide, one
 * per listener with per_listener_settings), asked at CONNECT whether a
 * client may log in, and refreshed on SIGHUP without ever falling back to
 * something more open than the files say.
 */
#include "security.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "util.h"

/* Load s's password file into *out. Returns 0 or -1 (logged). */
static int security_load_auth(const struct security *s, struct log *lg, struct auth **out,
			      unsigned *bad_lines, const char *when)
{
	unsigned bad = 0;
	int rc = auth_pwfile_load(out, s->password_file, lg, &bad);
	if (rc != 0) {
		log_write(lg, LOG_LEVEL_ERROR, "%scannot read password_file %s: %s", when,
			  s->password_file, rc == AUTH_EIO ? strerror(errno) : auth_strerror(rc));
		return -1;
	}
	if (bad_lines)
		*bad_lines += bad;
	return 0;
}

/* Load s's ACL file into *out. Returns 0 or -1 (logged with FILE:LINE). */
static int security_load_acl(const struct security *s, struct log *lg, struct acl **out,
			     const char *when)
{
	char err[512];
	if (acl_load(s->acl_file, out, err, sizeof(err)) != ACL_OK) {
		log_write(lg, LOG_LEVEL_ERROR, "%scannot load acl_file: %s", when, err);
		return -1;
	}
	log_write(lg, LOG_LEVEL_INFO, "%sacl_file %s: %zu rules", when, s->acl_file,
		  acl_rule_count(*out));
	return 0;
}

static int security_init_one(struct security_set *set, struct security *s, const struct config *cfg,
			     const struct config_listener *l, const struct config_security *cs,
			     struct log *lg, unsigned *bad_lines)
{
	int rc = 0;
	s->listener = l;
	s->allow_anonymous = config_allow_anonymous(cfg, cs);
	s->acl_gen = ++set->next_acl_gen;
	if (cs->acl_file) {
		s->acl_file = xstrdup(cs->acl_file);
		if (security_load_acl(s, lg, &s->acl, "") != 0)
			rc = -1;
		if (l)
			set->per_listener_acl = true;
	}
	if (cs->password_file) {
		s->password_file = xstrdup(cs->password_file);
		if (security_load_auth(s, lg, &s->auth, bad_lines, "") != 0)
			rc = -1;
	}
	return rc;
}

int security_set_init(struct security_set *set, const struct config *cfg, struct log *lg,
		      unsigned *bad_lines)
{
	size_t n = 1;
	int rc = 0;

	if (bad_lines)
		*bad_lines = 0;
	if (cfg->per_listener_settings)
		for (const struct config_listener *l = cfg->listeners; l; l = l->next)
			n++;
	set->items = xcalloc(n, sizeof(*set->items));
	set->count = n;
	/* Every file is tried, so one run reports every problem. */
	if (security_init_one(set, &set->items[0], cfg, NULL, &cfg->sec, lg, bad_lines) != 0)
		rc = -1;
	size_t i = 1;
	for (const struct config_listener *l = cfg->listeners; l && i < n; l = l->next, i++)
		if (security_init_one(set, &set->items[i], cfg, l, &l->sec, lg, bad_lines) != 0)
			rc = -1;
	/* An empty ACL denies everything: what an unknown listener gets. */
	char err[128];
	set->unknown.acl_gen = ++set->next_acl_gen;
	if (acl_parse("(unknown listener)", "", 0, &set->unknown.acl, err, sizeof(err)) != 0)
		rc = -1;
	return rc;
}

void security_set_cleanup(struct security_set *set)
{
	for (size_t i = 0; i < set->count; i++) {
		struct security *s = &set->items[i];
		auth_free(s->auth);
		auth_free(s->retired);
		free(s->password_file);
		acl_free(s->acl);
		free(s->acl_file);
	}
	acl_free(set->unknown.acl);
	set->unknown.acl = NULL;
	free(set->items);
	set->items = NULL;
	set->count = 0;
}

const struct security *security_for(const struct security_set *set, const struct config_listener *l)
{
	for (size_t i = 1; l && i < set->count; i++)
		if (set->items[i].listener == l)
			return &set->items[i];
	return &set->items[0];
}

const struct security *security_for_unknown(const struct security_set *set)
{
	return set->per_listener_acl ? &set->unknown : &set->items[0];
}

int security_login(const struct security *s, const struct codec_connect *p, const char **why)
{
	if (!p->has_username) {
		*why = "no username and anonymous clients are not allowed";
		return s->allow_anonymous ? SECURITY_LOGIN_OK : SECURITY_LOGIN_NOT_AUTHORIZED;
	}
	if (!s->auth) {
		/* Nothing to check a username against: Mosquitto takes it as
		 * given when anonymous clients are allowed anyway. */
		*why = "a username but no password_file to check it against";
		return s->allow_anonymous ? SECURITY_LOGIN_OK : SECURITY_LOGIN_BAD_AUTH;
	}
	if (!p->has_password) {
		*why = "no password";
		return SECURITY_LOGIN_BAD_AUTH;
	}
	int rc =
	    auth_check(s->auth, p->username.ptr, p->username.len, p->password.ptr, p->password.len);
	if (rc == 0)
		return SECURITY_LOGIN_OK;
	*why = rc == AUTH_EDENIED ? "unknown user or wrong password" : auth_strerror(rc);
	return SECURITY_LOGIN_BAD_AUTH;
}

size_t security_set_reload(struct security_set *set, struct log *lg)
{
	size_t replaced = 0;
	for (size_t i = 0; i < set->count; i++) {
		struct security *s = &set->items[i];
		struct auth *fresh = NULL;
		unsigned bad = 0;
		if (s->acl_file) {
			struct acl *acl = NULL;
			if (security_load_acl(s, lg, &acl, "reload: ") == 0) {
				acl_free(s->acl);
				s->acl = acl;
				s->acl_gen = ++set->next_acl_gen;
			} else {
				log_write(lg, LOG_LEVEL_ERROR,
					  "reload: keeping the acl_file %s loaded before",
					  s->acl_file);
			}
		}
		if (!s->password_file)
			continue;
		if (security_load_auth(s, lg, &fresh, &bad, "reload: ") != 0) {
			log_write(lg, LOG_LEVEL_ERROR,
				  "reload: keeping the password_file %s loaded before",
				  s->password_file);
			continue;
		}
		auth_free(s->retired);
		s->retired = s->auth;
		s->auth = fresh;
		replaced++;
		log_write(lg, bad ? LOG_LEVEL_WARNING : LOG_LEVEL_NOTICE,
			  "reload: password_file %s reloaded (%u malformed line%s)",
			  s->password_file, bad, bad == 1 ? "" : "s");
	}
	return replaced;
}

bool security_revoked(const struct security *s, const char *username, size_t len)
{
	if (!s->retired || !s->auth)
		return false;
	return auth_changed(s->auth, s->retired, username, len);
}

void security_set_reload_done(struct security_set *set)
{
	for (size_t i = 0; i < set->count; i++) {
		auth_free(set->items[i].retired);
		set->items[i].retired = NULL;
	}
}

void security_printable(char *out, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (cap == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool plain = ch >= 0x20 && ch != 0x7f && ch != '\\';
		if (o + (plain ? 1 : 4) + 4 > cap) {
			if (o + 4 <= cap)
				memcpy(out + o, "...", 3), o += 3;
			break;
		}
		if (plain) {
			out[o++] = (char)ch;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
}
