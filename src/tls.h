/*
 * TLS for listeners, with OpenSSL: building a listener's server context
 * from its config keys (certificates, CA, CRL, protocol floor, ciphers),
 * and reading a verified peer's identity. The byte stream itself is driven
 * by conn.c on the broker's own loop; nothing above conn.c knows TLS.
 */
#ifndef CAIRN_TLS_H
#define CAIRN_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct config_tls;

/*
 * A server context for a listener whose keys are t (certfile and keyfile
 * set; config.c has checked the keys belong together). Every file is read
 * now, so a later change on disk does nothing until the next call (the
 * reload on SIGHUP). On failure returns NULL and writes the file and
 * OpenSSL's reason into err.
 */
SSL_CTX *tls_context_new(const struct config_tls *t, char *err, size_t errlen);

/* OpenSSL's reason for the last failure on this thread (and clears its
 * error queue), or fallback when it recorded none. */
const char *tls_error_reason(char *buf, size_t len, const char *fallback);

/*
 * The username a verified client certificate gives: its subject's common
 * name (use_identity_as_username), or the whole subject in RFC 2253 form
 * (use_subject_as_username). Returns a string to free, or NULL when the
 * peer presented no certificate or the name is missing or not UTF-8.
 */
char *tls_peer_username(SSL *ssl, bool whole_subject);

#endif
