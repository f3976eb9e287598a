/*
 * The security context a connection is held to: whether it may connect
 * without a username, the password checker, and the ACL. The server builds
 * one set at start: one broker-wide context, plus one per listener when
 * per_listener_settings is true.
 *
 * Reload (SIGHUP): every password file and ACL file is read again. A file
 * that cannot be read (or an ACL with a bad line) leaves the version
 * loaded before in force and is logged; one that loads replaces it. A new
 * ACL gets a new generation number, so a delivery checked under the old
 * one is checked again before it is sent. The replaced checker stays as `retired` until
 * security_set_reload_done(), so the server can ask, for each connected
 * client, whether its credentials were removed or changed
 * (security_revoked()) and close that connection.
 */
#ifndef CAIRN_SECURITY_H
#define CAIRN_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "auth.h"
#include "config.h"
#include "log.h"

struct codec_connect;

struct security {
	const struct config_listener *listener; /* NULL: the broker-wide context */
	bool allow_anonymous;                   /* config_allow_anonymous() at start */
	char *password_file;                    /* owned copy of the path; NULL: none */
	struct auth *auth;                      /* NULL without a password file */
	struct auth *retired;                   /* replaced by the reload in progress */
	char *acl_file;                         /* owned copy of the path; NULL: none */
	struct acl *acl;                        /* NULL: no acl_file, everything allowed */
	uint32_t acl_gen; /* set-wide unique number of the ACL loaded last (0: never) */
};

struct security_set {
	struct security *items; /* [0] broker-wide, then one per listener */
	size_t count;
	/* For a session whose listener is unknown (restored, not connected
	 * since the start) when listeners have ACLs of their own: an empty
	 * ACL, which denies everything. */
	struct security unknown;
	bool per_listener_acl;
	uint32_t next_acl_gen;
};

/*
 * Build the contexts cfg asks for and load their password files; errors
 * are logged to lg. *bad_lines (may be NULL) counts malformed password
 * file lines (logged; their users cannot log in). Returns 0, or -1 when a
 * password file cannot be read; set must be released with
 * security_set_cleanup() either way.
 */
int security_set_init(struct security_set *set, const struct config *cfg, struct log *lg,
		      unsigned *bad_lines);
void security_set_cleanup(struct security_set *set);

/* The context in force for connections accepted by l (NULL: a socket not
 * from a listener, held to the broker-wide context). Never NULL. */
const struct security *security_for(const struct security_set *set,
				    const struct config_listener *l);

/* The context for a session whose listener is not known (its will fires
 * after a restart before it reconnected): the broker-wide one, or, when
 * listeners carry ACLs of their own, one that denies every access (fail
 * closed). Never NULL. */
const struct security *security_for_unknown(const struct security_set *set);

/* Whether client_id (with username, NULL when it gave none) may read or
 * write topic under s: true without an ACL. Inline: it runs for every
 * PUBLISH and delivery, and most brokers have no ACL. */
static inline bool security_allows(const struct security *s, const char *client_id,
				   const char *username, const char *topic, size_t len,
				   enum acl_access access)
{
	return !s->acl || acl_check(s->acl, client_id, username, topic, len, access);
}

/* The CONNACK return codes security_login() gives (MQTT 3.1.1, 3.2.2.3). */
#define SECURITY_LOGIN_OK             0
#define SECURITY_LOGIN_BAD_AUTH       4
#define SECURITY_LOGIN_NOT_AUTHORIZED 5

/*
 * Whether the CONNECT p may log in under s: SECURITY_LOGIN_OK, or the
 * refusing return code and a static reason for the log in *why (never the
 * password). No username: allowed when allow_anonymous, else 5. A
 * username with a password file: its password must verify, else 4. A
 * username without a password file: taken as given when allow_anonymous
 * (as Mosquitto does), else 4.
 */
int security_login(const struct security *s, const struct codec_connect *p, const char **why);

/*
 * SIGHUP: read every password file and ACL file again (see the top of
 * this file). Returns how many password checkers were replaced; when it is
 * not 0, ask security_revoked() about each connected client, then call
 * security_set_reload_done().
 */
size_t security_set_reload(struct security_set *set, struct log *lg);
/* True if the reload in progress removed or changed username's
 * credentials in s: its connections must close. */
bool security_revoked(const struct security *s, const char *username, size_t len);
/* Free the checkers the reload replaced. */
void security_set_reload_done(struct security_set *set);

/* Copy len bytes of s into out (cap bytes, NUL-terminated) for a log
 * line: control characters and '\' become \xHH, and a long name is cut
 * with "...". */
void security_printable(char *out, size_t cap, const char *s, size_t len);

#endif
