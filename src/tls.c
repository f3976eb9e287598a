/*
 * Building a TLS listener's OpenSSL context from Mosquitto's keys, and
 * reading a client certificate's identity. Every failure names the key,
 * the file and OpenSSL's reason, since an operator fixes it from the log.
 */
#include "tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

/* OpenSSL 3 marks errno values it queues; 1.1.1 files them under the
 * system library. */
#ifdef ERR_SYSTEM_ERROR
#define TLS_IS_ERRNO(e) ERR_SYSTEM_ERROR(e)
#else
#define TLS_IS_ERRNO(e) (ERR_GET_LIB(e) == ERR_LIB_SYS)
#endif

const char *tls_error_reason(char *buf, size_t len, const char *fallback)
{
	/* The queue runs from the cause to the caller; a file that cannot be
	 * opened ends in "system lib", while its errno says what happened. */
	unsigned long e, last = 0, sys = 0;
	while ((e = ERR_get_error()) != 0) {
		if (!sys && TLS_IS_ERRNO(e))
			sys = e;
		last = e;
	}
	if (sys) {
		snprintf(buf, len, "%s", strerror(ERR_GET_REASON(sys)));
	} else if (last) {
		const char *reason = ERR_reason_error_string(last);
		if (reason)
			snprintf(buf, len, "%s", reason);
		else
			ERR_error_string_n(last, buf, len);
	} else {
		snprintf(buf, len, "%s", fallback);
	}
	return buf;
}

/* Write "KEY PATH: reason" into err; always returns NULL for the caller. */
static SSL_CTX *tls_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *key, const char *path)
{
	char reason[256];
	tls_error_reason(reason, sizeof(reason), "cannot be used");
	snprintf(err, errlen, "%s %s: %s", key, path ? path : "", reason);
	SSL_CTX_free(ctx);
	return NULL;
}

static int tls_load_crl(SSL_CTX *ctx, const char *path)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
	if (!lookup || X509_load_crl_file(lookup, path, X509_FILETYPE_PEM) <= 0)
		return -1;
	/* The client's own certificate is checked against the CRL; its
	 * issuers are checked by the chain. */
	X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	return 0;
}

static int tls_load_dhparams(SSL_CTX *ctx, const char *path)
{
	BIO *bio = BIO_new_file(path, "r");
	if (!bio)
		return -1;
	EVP_PKEY *dh = PEM_read_bio_Parameters(bio, NULL);
	BIO_free(bio);
	if (!dh)
		return -1;
	if (SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
		EVP_PKEY_free(dh);
		return -1;
	}
	return 0;
}

SSL_CTX *tls_context_new(const struct config_tls *t, char *err, size_t errlen)
{
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return tls_fail(NULL, err, errlen, "TLS", "context");
	bool v13 = t->tls_version && strcmp(t->tls_version, "tlsv1.3") == 0;
	SSL_CTX_set_min_proto_version(ctx, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Idle connections give their record buffers back; writes may be
	 * partial and resumed from an evbuffer whose chunk may have moved. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Resumed sessions of verified clients need a context id. */
	static const unsigned char sid[] = "cairn";
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	if (t->ciphers && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1)
		return tls_fail(ctx, err, errlen, "ciphers", t->ciphers);
	if (t->ciphersuites && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1)
		return tls_fail(ctx, err, errlen, "ciphers_tls1.3", t->ciphersuites);
	if (SSL_CTX_use_certificate_chain_file(ctx, t->certfile) != 1)
		return tls_fail(ctx, err, errlen, "certfile", t->certfile);
	if (SSL_CTX_use_PrivateKey_file(ctx, t->keyfile, SSL_FILETYPE_PEM) != 1)
		return tls_fail(ctx, err, errlen, "keyfile", t->keyfile);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return tls_fail(ctx, err, errlen, "keyfile", t->keyfile);
	if (t->cafile || t->capath) {
		if (SSL_CTX_load_verify_locations(ctx, t->cafile, t->capath) != 1)
			return tls_fail(ctx, err, errlen, t->cafile ? "cafile" : "capath",
					t->cafile ? t->cafile : t->capath);
		if (t->cafile) {
			/* Tell clients which CAs their certificate may come from. */
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->cafile);
			if (names)
				SSL_CTX_set_client_CA_list(ctx, names);
		}
	}
	if (t->crlfile && tls_load_crl(ctx, t->crlfile) != 0)
		return tls_fail(ctx, err, errlen, "crlfile", t->crlfile);
	if (t->dhparamfile) {
		if (tls_load_dhparams(ctx, t->dhparamfile) != 0)
			return tls_fail(ctx, err, errlen, "dhparamfile", t->dhparamfile);
	} else {
		SSL_CTX_set_dh_auto(ctx, 1);
	}
	SSL_CTX_set_verify(ctx,
			   t->require_certificate
			       ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
			       : SSL_VERIFY_NONE,
			   NULL);
	return ctx;
}

/* The subject's common name, as UTF-8, or NULL. */
static char *tls_common_name(X509_NAME *name)
{
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i < 0)
		return NULL;
	ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8, data);
	if (n <= 0)
		return NULL;
	/* A NUL inside the name would let "admin\0.evil" pass for "admin". */
	char *out = memchr(utf8, '\0', (size_t)n) ? NULL : xstrndup((const char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return out;
}

static char *tls_subject_rfc2253(X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio)
		return NULL;
	char *out = NULL;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
		char *p;
		long n = BIO_get_mem_data(bio, &p);
		if (n > 0)
			out = xstrndup(p, (size_t)n);
	}
	BIO_free(bio);
	return out;
}

char *tls_peer_username(SSL *ssl, bool whole_subject)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
		return NULL;
	X509_NAME *name = X509_get_subject_name(cert);
	return whole_subject ? tls_subject_rfc2253(name) : tls_common_name(name);
}
