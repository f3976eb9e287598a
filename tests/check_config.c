/*
 * Unit tests for the config parser (src/config.c) and the logger
 * (src/log.c): every key, the defaults, every error form, numeric edges,
 * and log lines written to a file.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_file.h"
#include "config.h"
#include "log.h"
#include "util.h"

/* Set by the unchecked fixture in the parent, inherited by each forked test. */
static char tmpdir[64];
static char conf_path[128];

static void tmpdir_setup(void)
{
	strcpy(tmpdir, "/tmp/check_config.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	snprintf(conf_path, sizeof(conf_path), "%s/cairn.conf", tmpdir);
}

static void tmpdir_teardown(void)
{
	char path[512];
	struct dirent *e;
	DIR *d = opendir(tmpdir);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
}

/* config_init c, write text to conf_path and load it. */
static int load(struct config *c, const char *text, char *err, size_t errlen)
{
	config_init(c);
	write_file(conf_path, text);
	return config_load(c, conf_path, err, errlen);
}

/* Load text expecting success; fails the test with the parser's message. */
static void load_ok(struct config *c, const char *text)
{
	char err[512];

	ck_assert_msg(load(c, text, err, sizeof(err)) == 0, "unexpected error: %s", err);
}

/* Load text expecting an error at line with key, whose reason contains
 * reason (when not NULL). */
static void load_fails(const char *text, unsigned line, const char *key, const char *reason)
{
	struct config c;
	char err[512], prefix[256];

	ck_assert_int_eq(load(&c, text, err, sizeof(err)), -1);
	snprintf(prefix, sizeof(prefix), "%s:%u: %s: ", conf_path, line, key);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'",
		      err, prefix);
	if (reason)
		ck_assert_msg(strstr(err + strlen(prefix), reason) != NULL,
			      "'%s' does not say '%s'", err, reason);
	config_cleanup(&c);
}

START_TEST(test_defaults)
{
	struct config c;

	config_init(&c);
	ck_assert_ptr_null(c.path);
	ck_assert_ptr_null(c.listeners);
	ck_assert_int_eq(c.sec.allow_anonymous, -1);
	ck_assert(config_allow_anonymous(&c, &c.sec)); /* no listener: loopback only */
	ck_assert_ptr_null(c.sec.password_file);
	ck_assert_ptr_null(c.sec.acl_file);
	ck_assert_uint_eq(c.max_inflight_messages, 20);
	ck_assert_uint_eq(c.max_queued_messages, 1000);
	ck_assert_uint_eq(c.max_queued_bytes, 0);
	ck_assert_uint_eq(c.max_subscriptions, 100000);
	ck_assert_uint_eq(c.max_packet_size, 268435455u + 5u);
	ck_assert_uint_eq(c.max_keepalive, 65535);
	ck_assert_uint_eq(c.connect_timeout, 10);
	ck_assert(!c.persistence);
	ck_assert_str_eq(c.persistence_location, ".");
	ck_assert_ptr_null(c.persistence_backend); /* the caller treats NULL as none */
	ck_assert_int_eq(c.durability, CAIRN_DURABILITY_FSYNC);
	ck_assert_int_eq(c.on_corrupt, CAIRN_ON_CORRUPT_FAIL);
	ck_assert_int_eq(c.log_dests, LOG_DEST_STDERR);
	ck_assert_ptr_null(c.log_file);
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_DEFAULT_MASK);
	ck_assert_ptr_null(c.options);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_empty_file)
{
	struct config c;

	load_ok(&c, "");
	ck_assert_str_eq(c.path, conf_path);
	ck_assert_ptr_null(c.listeners);
	ck_assert_str_eq(c.persistence_backend, "none");
	ck_assert_int_eq(c.log_dests, LOG_DEST_STDERR);
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_DEFAULT_MASK);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_backend_default)
{
	struct config c;

	load_ok(&c, "persistence true\n");
	ck_assert(c.persistence);
	ck_assert_str_eq(c.persistence_backend, "sqlite");
	config_cleanup(&c);

	load_ok(&c, "persistence false\n");
	ck_assert_str_eq(c.persistence_backend, "none");
	config_cleanup(&c);

	load_ok(&c, "persistence_backend lmdb\npersistence true\n");
	ck_assert_str_eq(c.persistence_backend, "lmdb");
	config_cleanup(&c);
}
END_TEST

START_TEST(test_every_key)
{
	struct config c;
	const struct config_listener *l;

	load_ok(&c, "listener 1884 0.0.0.0\n"
		    "allow_anonymous false\n"
		    "password_file /etc/cairn/passwd\n"
		    "acl_file /etc/cairn/acl\n"
		    "max_inflight_messages 5\n"
		    "max_queued_messages 77\n"
		    "max_queued_bytes 1048576\n"
		    "max_subscriptions 0\n"
		    "max_packet_size 4096\n"
		    "max_keepalive 600\n"
		    "connect_timeout 30\n"
		    "persistence true\n"
		    "persistence_location var/\n"
		    "persistence_backend redis\n"
		    "durability os\n"
		    "persistence_on_corrupt quarantine\n"
		    "log_dest file /var/log/cairn.log\n"
		    "log_type warning\n"
		    "redis_host 10.0.0.1\n"
		    "redis_port 6380\n"
		    "redis_unix_socket /run/redis.sock\n"
		    "redis_db 3\n"
		    "redis_password s3cret\n"
		    "redis_key_prefix cairn:\n"
		    "lmdb_map_size 1048576\n"
		    "lmdb_map_size_max 1073741824\n"
		    "redis_connect_timeout 2000\n");
	l = c.listeners;
	ck_assert_ptr_nonnull(l);
	ck_assert_uint_eq(l->port, 1884);
	ck_assert_str_eq(l->address, "0.0.0.0");
	ck_assert_ptr_null(l->next);
	ck_assert_int_eq(c.sec.allow_anonymous, 0);
	ck_assert(!config_allow_anonymous(&c, config_security_for(&c, l)));
	ck_assert_str_eq(c.sec.password_file, "/etc/cairn/passwd");
	ck_assert_str_eq(c.sec.acl_file, "/etc/cairn/acl");
	ck_assert_uint_eq(c.max_inflight_messages, 5);
	ck_assert_uint_eq(c.max_queued_messages, 77);
	ck_assert_uint_eq(c.max_queued_bytes, 1048576);
	ck_assert_uint_eq(c.max_subscriptions, 0);
	ck_assert_uint_eq(c.max_packet_size, 4096);
	ck_assert_uint_eq(c.max_keepalive, 600);
	ck_assert_uint_eq(c.connect_timeout, 30);
	ck_assert(c.persistence);
	ck_assert_str_eq(c.persistence_location, "var/");
	ck_assert_str_eq(c.persistence_backend, "redis");
	ck_assert_int_eq(c.durability, CAIRN_DURABILITY_OS);
	ck_assert_int_eq(c.on_corrupt, CAIRN_ON_CORRUPT_QUARANTINE);
	ck_assert_int_eq(c.log_dests, LOG_DEST_FILE);
	ck_assert_str_eq(c.log_file, "/var/log/cairn.log");
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_WARNING);
	ck_assert_str_eq(config_get_option(&c, "redis_host"), "10.0.0.1");
	ck_assert_str_eq(config_get_option(&c, "redis_port"), "6380");
	ck_assert_str_eq(config_get_option(&c, "redis_unix_socket"), "/run/redis.sock");
	ck_assert_str_eq(config_get_option(&c, "redis_db"), "3");
	ck_assert_str_eq(config_get_option(&c, "redis_password"), "s3cret");
	ck_assert_str_eq(config_get_option(&c, "redis_key_prefix"), "cairn:");
	ck_assert_str_eq(config_get_option(&c, "lmdb_map_size"), "1048576");
	ck_assert_str_eq(config_get_option(&c, "lmdb_map_size_max"), "1073741824");
	ck_assert_str_eq(config_get_option(&c, "redis_connect_timeout"), "2000");
	ck_assert_ptr_null(config_get_option(&c, "redis_nothing"));
	ck_assert_ptr_null(config_get_option(&c, "listener"));
	config_cleanup(&c);
}
END_TEST

/* The service keys: kept as written; unset means none. */
START_TEST(test_service_keys)
{
	struct config c;

	load_ok(&c, "listener 1883\n");
	ck_assert_ptr_null(c.user);
	ck_assert_ptr_null(c.pid_file);
	config_cleanup(&c);
	load_ok(&c, "user nobody\npid_file /run/cairn/cairn.pid\nuser cairn\n");
	ck_assert_str_eq(c.user, "cairn");
	ck_assert_str_eq(c.pid_file, "/run/cairn/cairn.pid");
	config_cleanup(&c);
}
END_TEST

START_TEST(test_enum_values)
{
	static const char *const backends[] = {"none", "memory", "sqlite", "lmdb", "redis"};
	struct config c;
	char text[64];
	size_t i;

	for (i = 0; i < 5; i++) {
		snprintf(text, sizeof(text), "persistence_backend %s\n", backends[i]);
		load_ok(&c, text);
		ck_assert_str_eq(c.persistence_backend, backends[i]);
		config_cleanup(&c);
	}
	load_ok(&c, "durability os\ndurability fsync\n");
	ck_assert_int_eq(c.durability, CAIRN_DURABILITY_FSYNC);
	config_cleanup(&c);
	load_ok(&c, "persistence_on_corrupt quarantine\npersistence_on_corrupt fail\n");
	ck_assert_int_eq(c.on_corrupt, CAIRN_ON_CORRUPT_FAIL);
	config_cleanup(&c);
	load_ok(&c, "allow_anonymous false\nallow_anonymous true\n");
	ck_assert_int_eq(c.sec.allow_anonymous, 1);
	config_cleanup(&c);
	/* A repeated path key replaces the earlier value. */
	load_ok(&c, "acl_file a\nacl_file b\npassword_file p\npassword_file q\n"
		    "persistence_location x\npersistence_location y\n");
	ck_assert_str_eq(c.sec.acl_file, "b");
	ck_assert_str_eq(c.sec.password_file, "q");
	ck_assert_str_eq(c.persistence_location, "y");
	config_cleanup(&c);
}
END_TEST

START_TEST(test_comments_blank_whitespace)
{
	struct config c;

	load_ok(&c, "# a comment\n"
		    "\n"
		    "   \n"
		    "\t# indented comment\n"
		    "  max_queued_messages   42  \n"
		    "\tmax_inflight_messages\t7\t\r\n"
		    "#max_keepalive 0\n"
		    "connect_timeout 5"); /* no final newline */
	ck_assert_uint_eq(c.max_queued_messages, 42);
	ck_assert_uint_eq(c.max_inflight_messages, 7);
	ck_assert_uint_eq(c.max_keepalive, 65535);
	ck_assert_uint_eq(c.connect_timeout, 5);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_listeners_in_order)
{
	struct config c;
	const struct config_listener *l;

	load_ok(&c, "listener 1883 127.0.0.1\nlistener 8883\nlistener 1884 ::1\n");
	config_add_listener(&c, "127.0.0.1", 2000);
	config_add_listener(&c, NULL, 2001);
	l = c.listeners;
	ck_assert_uint_eq(l->port, 1883);
	ck_assert_str_eq(l->address, "127.0.0.1");
	l = l->next;
	ck_assert_uint_eq(l->port, 8883);
	ck_assert_ptr_null(l->address);
	l = l->next;
	ck_assert_uint_eq(l->port, 1884);
	ck_assert_str_eq(l->address, "::1");
	l = l->next;
	ck_assert_uint_eq(l->port, 2000);
	ck_assert_str_eq(l->address, "127.0.0.1");
	l = l->next;
	ck_assert_uint_eq(l->port, 2001);
	ck_assert_ptr_null(l->address);
	ck_assert_ptr_null(l->next);
	config_cleanup(&c);
}
END_TEST

/* TLS and max_connections belong to the listener they follow; security
 * keys too once per_listener_settings is true, and the default of
 * allow_anonymous follows Mosquitto 2.0. */
START_TEST(test_per_listener_keys)
{
	struct config c;
	const struct config_listener *a, *b;

	load_ok(&c, "per_listener_settings true\n"
		    "listener 1883 127.0.0.1\n"
		    "allow_anonymous true\n"
		    "max_connections -1\n"
		    "listener 8883\n"
		    "password_file /etc/cairn/passwd\n"
		    "acl_file /etc/cairn/acl\n"
		    "max_connections 100\n"
		    "certfile /etc/cairn/server.pem\n"
		    "keyfile /etc/cairn/server.key\n"
		    "cafile /etc/cairn/ca.pem\n"
		    "capath /etc/ssl/certs\n"
		    "crlfile /etc/cairn/crl.pem\n"
		    "dhparamfile /etc/cairn/dh.pem\n"
		    "ciphers HIGH\n"
		    "ciphers_tls1.3 TLS_AES_256_GCM_SHA384\n"
		    "tls_version tlsv1.3\n"
		    "require_certificate true\n"
		    "use_identity_as_username true\n");
	ck_assert(c.per_listener_settings);
	a = c.listeners;
	b = a->next;
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_eq(a->max_connections, 0);
	ck_assert_uint_eq(b->max_connections, 100);
	ck_assert(config_allow_anonymous(&c, config_security_for(&c, a)));
	ck_assert(!config_allow_anonymous(&c, config_security_for(&c, b)));
	ck_assert_ptr_null(a->sec.password_file);
	ck_assert_str_eq(config_security_for(&c, b)->password_file, "/etc/cairn/passwd");
	ck_assert_str_eq(b->sec.acl_file, "/etc/cairn/acl");
	ck_assert_ptr_null(c.sec.password_file);
	ck_assert_ptr_null(a->tls.certfile);
	ck_assert_str_eq(b->tls.certfile, "/etc/cairn/server.pem");
	ck_assert_str_eq(b->tls.keyfile, "/etc/cairn/server.key");
	ck_assert_str_eq(b->tls.cafile, "/etc/cairn/ca.pem");
	ck_assert_str_eq(b->tls.capath, "/etc/ssl/certs");
	ck_assert_str_eq(b->tls.crlfile, "/etc/cairn/crl.pem");
	ck_assert_str_eq(b->tls.dhparamfile, "/etc/cairn/dh.pem");
	ck_assert_str_eq(b->tls.ciphers, "HIGH");
	ck_assert_str_eq(b->tls.ciphersuites, "TLS_AES_256_GCM_SHA384");
	ck_assert_str_eq(b->tls.tls_version, "tlsv1.3");
	ck_assert(b->tls.require_certificate);
	ck_assert(b->tls.use_identity_as_username);
	ck_assert(!b->tls.use_subject_as_username);
	config_cleanup(&c);

	/* Without per_listener_settings the security keys are global, wherever
	 * they stand; a listener in the file makes anonymous clients opt-in. */
	load_ok(&c, "listener 1883\npassword_file p\n");
	ck_assert_str_eq(c.sec.password_file, "p");
	ck_assert_ptr_null(c.listeners->sec.password_file);
	ck_assert_ptr_eq(config_security_for(&c, c.listeners), &c.sec);
	ck_assert(!config_allow_anonymous(&c, &c.sec));
	config_cleanup(&c);
	load_ok(&c, "listener 1883\nallow_anonymous true\n");
	ck_assert(config_allow_anonymous(&c, &c.sec));
	config_cleanup(&c);
	/* No listener in the file: the loopback default allows them, unless the
	 * file says otherwise. */
	load_ok(&c, "allow_anonymous false\n");
	ck_assert(!config_allow_anonymous(&c, &c.sec));
	config_cleanup(&c);
}
END_TEST

START_TEST(test_add_listener_without_file)
{
	struct config c;

	config_init(&c);
	config_add_listener(&c, "127.0.0.1", 1883);
	ck_assert_uint_eq(c.listeners->port, 1883);
	ck_assert_ptr_null(c.listeners->next);
	config_cleanup(&c);
}
END_TEST

/* Numeric edges: 0, 1, max and max+1 for every numeric option. */
struct num_case {
	const char *key;
	const char *value;
	int ok;
	uint64_t expect;    /* the stored value when ok */
	const char *reason; /* part of the message when not ok */
};

static const struct num_case num_cases[] = {
    {"listener", "0", 0, 0, "out of range (1 to 65535)"},
    {"listener", "1", 1, 1, NULL},
    {"listener", "65535", 1, 65535, NULL},
    {"listener", "65536", 0, 0, "out of range"},
    {"max_inflight_messages", "0", 1, 0, NULL},
    {"max_inflight_messages", "1", 1, 1, NULL},
    {"max_inflight_messages", "65535", 1, 65535, NULL},
    {"max_inflight_messages", "65536", 0, 0, "out of range (0 to 65535)"},
    {"max_queued_messages", "0", 1, 0, NULL},
    {"max_queued_messages", "1", 1, 1, NULL},
    {"max_queued_messages", "4294967295", 1, 4294967295u, NULL},
    {"max_queued_messages", "4294967296", 0, 0, "out of range"},
    {"max_queued_bytes", "0", 1, 0, NULL},
    {"max_queued_bytes", "1", 1, 1, NULL},
    {"max_queued_bytes", "18446744073709551615", 1, UINT64_MAX, NULL},
    {"max_queued_bytes", "18446744073709551616", 0, 0, "out of range"},
    {"max_packet_size", "0", 1, 268435460u, NULL},
    {"max_packet_size", "1", 0, 0, "too small"},
    {"max_packet_size", "19", 0, 0, "too small"},
    {"max_packet_size", "20", 1, 20, NULL},
    {"max_packet_size", "268435460", 1, 268435460u, NULL},
    {"max_packet_size", "268435461", 0, 0, "out of range"},
    {"max_keepalive", "0", 0, 0, "out of range (1 to 65535)"},
    {"max_keepalive", "1", 1, 1, NULL},
    {"max_keepalive", "65535", 1, 65535, NULL},
    {"max_keepalive", "65536", 0, 0, "out of range"},
    {"connect_timeout", "0", 0, 0, "out of range (1 to 3600)"},
    {"connect_timeout", "1", 1, 1, NULL},
    {"connect_timeout", "3600", 1, 3600, NULL},
    {"connect_timeout", "3601", 0, 0, "out of range"},
};

static uint64_t num_field(const struct config *c, const char *key)
{
	if (strcmp(key, "listener") == 0)
		return c->listeners->port;
	if (strcmp(key, "max_inflight_messages") == 0)
		return c->max_inflight_messages;
	if (strcmp(key, "max_queued_messages") == 0)
		return c->max_queued_messages;
	if (strcmp(key, "max_queued_bytes") == 0)
		return c->max_queued_bytes;
	if (strcmp(key, "max_packet_size") == 0)
		return c->max_packet_size;
	if (strcmp(key, "max_keepalive") == 0)
		return c->max_keepalive;
	if (strcmp(key, "connect_timeout") == 0)
		return c->connect_timeout;
	ck_abort_msg("unknown key %s", key);
	return 0;
}

START_TEST(test_numeric_edges)
{
	const struct num_case *t = &num_cases[_i];
	struct config c;
	char text[128];

	snprintf(text, sizeof(text), "# edge\n%s %s\n", t->key, t->value);
	if (t->ok) {
		load_ok(&c, text);
		ck_assert_msg(num_field(&c, t->key) == t->expect, "%s %s: got %" PRIu64, t->key,
			      t->value, num_field(&c, t->key));
		config_cleanup(&c);
	} else {
		load_fails(text, 2, t->key, t->reason);
	}
}
END_TEST

/* Every error form: the message starts "FILE:LINE: KEY: ". */
struct err_case {
	const char *text;
	unsigned line;
	const char *key;
	const char *reason;
};

static const struct err_case err_cases[] = {
    {"listener 1883\nbogus_key 1\n", 2, "bogus_key", "unknown key"},
    {"bogus_key\n", 1, "bogus_key", "unknown key"},
    {"cafile /etc/ca.pem\n", 1, "cafile", "must follow a listener line"},
    {"max_connections 5\n", 1, "max_connections", "must follow a listener line"},
    {"listener 1\nmax_connections -2\n", 2, "max_connections", "expected a whole number"},
    {"listener 1\ntls_version tlsv1.1\n", 2, "tls_version",
     "expected tlsv1.2 or tlsv1.3, got 'tlsv1.1'"},
    {"listener 1\nrequire_certificate maybe\n", 2, "require_certificate", "expected true or false"},
    {"per_listener_settings true\nallow_anonymous true\n", 2, "allow_anonymous",
     "must follow a listener line"},
    {"per_listener_settings true\npassword_file p\nlistener 1\n", 2, "password_file",
     "must follow a listener line"},
    {"listener 1\nper_listener_settings true\n", 2, "per_listener_settings",
     "must come before every listener and security key"},
    {"acl_file a\nper_listener_settings true\n", 2, "per_listener_settings",
     "must come before every listener and security key"},
    {"listener 8883\ncertfile c.pem\n", 1, "listener",
     "port 8883: certfile and keyfile must be given together"},
    {"listener 8883\ncafile ca.pem\n", 1, "listener",
     "port 8883: TLS options without certfile and keyfile"},
    {"listener 8883\ncertfile c\nkeyfile k\nrequire_certificate true\n", 1, "listener",
     "port 8883: require_certificate needs cafile or capath"},
    {"listener 8883\ncertfile c\nkeyfile k\ncafile a\nuse_identity_as_username true\n", 1,
     "listener", "need require_certificate true"},
    {"Listener 1883\n", 1, "Listener", "unknown key"},
    {"\n\nlistener\n", 3, "listener", "missing value"},
    {"max_keepalive\n", 1, "max_keepalive", "missing value"},
    {"redis_host\n", 1, "redis_host", "missing value"},
    {"log_dest\n", 1, "log_dest", "missing value"},
    {"log_type\n", 1, "log_type", "missing value"},
    {"listener 1883 127.0.0.1 extra\n", 1, "listener", "unexpected extra value 'extra'"},
    {"allow_anonymous true false\n", 1, "allow_anonymous", "unexpected extra value 'false'"},
    {"password_file a b\n", 1, "password_file", "extra value 'b'"},
    {"redis_host a b\n", 1, "redis_host", "extra value 'b'"},
    {"log_dest stderr stdout\n", 1, "log_dest", "extra value 'stdout'"},
    {"log_dest file /tmp/x y\n", 1, "log_dest", "extra value 'y'"},
    {"log_type error warning\n", 1, "log_type", "extra value 'warning'"},
    {"# c\n# c\n\n\n\n\n\n\n\n\n\nmax_queued_messages ten\n", 12, "max_queued_messages",
     "expected a whole number, got 'ten'"},
    {"max_queued_messages -1\n", 1, "max_queued_messages", "expected a whole number, got '-1'"},
    {"max_queued_messages +1\n", 1, "max_queued_messages", "expected a whole number"},
    {"max_queued_messages 10k\n", 1, "max_queued_messages", "got '10k'"},
    {"max_queued_messages 1.5\n", 1, "max_queued_messages", "got '1.5'"},
    {"max_queued_messages 0x10\n", 1, "max_queued_messages", "got '0x10'"},
    {"max_queued_bytes 99999999999999999999999\n", 1, "max_queued_bytes", "out of range"},
    {"listener http\n", 1, "listener", "expected a whole number, got 'http'"},
    {"connect_timeout 5s\n", 1, "connect_timeout", "expected a whole number"},
    {"allow_anonymous yes\n", 1, "allow_anonymous", "expected true or false, got 'yes'"},
    {"persistence 1\n", 1, "persistence", "expected true or false, got '1'"},
    {"persistence_backend mysql\n", 1, "persistence_backend", "got 'mysql'"},
    {"persistence_backend SQLite\n", 1, "persistence_backend", "got 'SQLite'"},
    {"durability sometimes\n", 1, "durability", "expected os or fsync, got 'sometimes'"},
    {"persistence_on_corrupt ignore\n", 1, "persistence_on_corrupt",
     "expected fail or quarantine, got 'ignore'"},
    {"log_dest file\n", 1, "log_dest", "file needs a path"},
    {"log_dest topic\n", 1, "log_dest", "got 'topic'"},
    {"log_type subscribe\n", 1, "log_type", "got 'subscribe'"},
    {"log_type info\n", 1, "log_type", "got 'info'"},
    {"listener 1883\nuser\n", 2, "user", "missing value"},
    {"user cairn extra\n", 1, "user", "unexpected extra value 'extra'"},
    {"pid_file a b\n", 1, "pid_file", "extra value 'b'"},
};

START_TEST(test_errors)
{
	const struct err_case *t = &err_cases[_i];

	load_fails(t->text, t->line, t->key, t->reason);
}
END_TEST

START_TEST(test_error_exact_message)
{
	struct config c;
	char err[256], expect[256];

	ck_assert_int_eq(load(&c, "listener 1883\n\nmax_queued_messages ten\n", err, sizeof(err)),
			 -1);
	snprintf(expect, sizeof(expect),
		 "%s:3: max_queued_messages: expected a whole number, got 'ten'", conf_path);
	ck_assert_str_eq(err, expect);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_unreadable_file)
{
	struct config c;
	char path[256], err[512], expect[512];

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	config_init(&c);
	ck_assert_int_eq(config_load(&c, path, err, sizeof(err)), -1);
	snprintf(expect, sizeof(expect), "%s: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err, expect);
	config_cleanup(&c);

	/* A directory opens but cannot be read as lines. */
	config_init(&c);
	ck_assert_int_eq(config_load(&c, tmpdir, err, sizeof(err)), -1);
	snprintf(expect, sizeof(expect), "%s: %s", tmpdir, strerror(EISDIR));
	ck_assert_str_eq(err, expect);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_small_err_buffer)
{
	struct config c;
	char err[8];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(load(&c, "nope 1\n", err, sizeof(err)), -1);
	ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
	config_cleanup(&c);
	ck_assert_int_eq(load(&c, "nope 1\n", NULL, 0), -1);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_get_option_last_wins)
{
	struct config c;
	const struct config_option *o;

	load_ok(&c, "redis_host a\nredis_port 1\nredis_host b\nredis_host c\n");
	ck_assert_str_eq(config_get_option(&c, "redis_host"), "c");
	ck_assert_str_eq(config_get_option(&c, "redis_port"), "1");
	ck_assert_ptr_null(config_get_option(&c, "redis_db"));
	/* Kept in file order, every occurrence. */
	o = c.options;
	ck_assert_str_eq(o->key, "redis_host");
	ck_assert_str_eq(o->value, "a");
	o = o->next;
	ck_assert_str_eq(o->key, "redis_port");
	o = o->next;
	ck_assert_str_eq(o->value, "b");
	o = o->next;
	ck_assert_str_eq(o->value, "c");
	ck_assert_ptr_null(o->next);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_log_dest)
{
	struct config c;

	load_ok(&c, "log_dest stdout\n");
	ck_assert_int_eq(c.log_dests, LOG_DEST_STDOUT);
	config_cleanup(&c);

	load_ok(&c, "log_dest syslog\nlog_dest stderr\nlog_dest file /tmp/a.log\n");
	ck_assert_int_eq(c.log_dests, LOG_DEST_SYSLOG | LOG_DEST_STDERR | LOG_DEST_FILE);
	ck_assert_str_eq(c.log_file, "/tmp/a.log");
	config_cleanup(&c);

	load_ok(&c, "log_dest file /tmp/a.log\nlog_dest file /tmp/b.log\n");
	ck_assert_int_eq(c.log_dests, LOG_DEST_FILE);
	ck_assert_str_eq(c.log_file, "/tmp/b.log");
	config_cleanup(&c);

	load_ok(&c, "log_dest stdout\nlog_dest none\n");
	ck_assert_int_eq(c.log_dests, LOG_DEST_NONE);
	config_cleanup(&c);

	load_ok(&c, "log_dest none\nlog_dest stdout\n");
	ck_assert_int_eq(c.log_dests, LOG_DEST_STDOUT);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_log_type)
{
	struct config c;

	load_ok(&c, "log_type error\n");
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_ERROR);
	config_cleanup(&c);

	load_ok(&c, "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_DEFAULT_MASK);
	config_cleanup(&c);

	load_ok(&c, "log_type debug\n");
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_DEBUG);
	config_cleanup(&c);

	load_ok(&c, "log_type none\n");
	ck_assert_int_eq(c.log_mask, 0);
	config_cleanup(&c);

	load_ok(&c, "log_type all\n");
	ck_assert_int_eq(c.log_mask, LOG_LEVEL_DEFAULT_MASK | LOG_LEVEL_DEBUG);
	config_cleanup(&c);
}
END_TEST

START_TEST(test_log_type_parse)
{
	ck_assert_int_eq(log_type_parse("error"), LOG_LEVEL_ERROR);
	ck_assert_int_eq(log_type_parse("warning"), LOG_LEVEL_WARNING);
	ck_assert_int_eq(log_type_parse("notice"), LOG_LEVEL_NOTICE);
	ck_assert_int_eq(log_type_parse("information"), LOG_LEVEL_INFO);
	ck_assert_int_eq(log_type_parse("debug"), LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_type_parse("all"), LOG_LEVEL_ERROR | LOG_LEVEL_WARNING |
						    LOG_LEVEL_NOTICE | LOG_LEVEL_INFO |
						    LOG_LEVEL_DEBUG);
	ck_assert_int_eq(log_type_parse("none"), 0);
	ck_assert_int_eq(log_type_parse("info"), -1);
	ck_assert_int_eq(log_type_parse(""), -1);
	ck_assert_int_eq(log_type_parse("ERROR"), -1);
}
END_TEST

/* Read a whole small file into a fresh string. */
static char *slurp(const char *path)
{
	char *buf = xcalloc(1, 65536);
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void assert_line(const char *line, const char *level_text)
{
	regex_t re;
	char pattern[256];

	snprintf(pattern, sizeof(pattern),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z %s$",
		 level_text);
	ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&re, line, 0, NULL, 0) == 0, "line '%s' does not match '%s'", line,
		      pattern);
	regfree(&re);
}

START_TEST(test_log_write_file)
{
	struct log lg;
	char path[256], big[3000];
	char *text, *line, *save = NULL;

	snprintf(path, sizeof(path), "%s/cairn.log", tmpdir);
	log_init(&lg);
	ck_assert_int_eq(lg.mask, LOG_LEVEL_DEFAULT_MASK);
	ck_assert_int_eq(lg.dests, LOG_DEST_STDERR);
	lg.dests = LOG_DEST_FILE;
	lg.path = xstrdup(path);
	lg.mask = LOG_LEVEL_ERROR | LOG_LEVEL_NOTICE | LOG_LEVEL_INFO;
	ck_assert_int_eq(log_open(&lg), 0);
	log_write(&lg, LOG_LEVEL_ERROR, "disk %s", "full");
	log_write(&lg, LOG_LEVEL_WARNING, "filtered out");
	log_write(&lg, LOG_LEVEL_NOTICE, "listening on %d", 1883);
	log_write(&lg, LOG_LEVEL_INFO, "client %s connected", "c1");
	log_write(&lg, LOG_LEVEL_DEBUG, "filtered too");
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_write(&lg, LOG_LEVEL_ERROR, "%s", big); /* longer than the stack buffer */
	log_cleanup(&lg);

	text = slurp(path);
	line = strtok_r(text, "\n", &save);
	assert_line(line, "error: disk full");
	line = strtok_r(NULL, "\n", &save);
	assert_line(line, "notice: listening on 1883");
	line = strtok_r(NULL, "\n", &save);
	assert_line(line, "info: client c1 connected");
	line = strtok_r(NULL, "\n", &save);
	ck_assert_uint_eq(strlen(line), 25 + strlen("error: ") + strlen(big));
	ck_assert_str_eq(line + 25 + strlen("error: "), big);
	ck_assert_ptr_null(strtok_r(NULL, "\n", &save));
	free(text);
}
END_TEST

START_TEST(test_log_all_levels_and_append)
{
	struct log lg;
	char path[256];
	char *text, *line, *save = NULL;

	snprintf(path, sizeof(path), "%s/levels.log", tmpdir);
	write_file(path, "old line\n");
	log_init(&lg);
	lg.dests = LOG_DEST_FILE;
	lg.path = xstrdup(path);
	lg.mask = log_type_parse("all");
	ck_assert_int_eq(log_open(&lg), 0);
	log_write(&lg, LOG_LEVEL_ERROR, "e");
	log_write(&lg, LOG_LEVEL_WARNING, "w");
	log_write(&lg, LOG_LEVEL_NOTICE, "n");
	log_write(&lg, LOG_LEVEL_INFO, "i");
	log_write(&lg, LOG_LEVEL_DEBUG, "d");
	lg.mask = 0;
	log_write(&lg, LOG_LEVEL_ERROR, "not written");
	log_cleanup(&lg);

	text = slurp(path);
	ck_assert_str_eq(strtok_r(text, "\n", &save), "old line");
	assert_line(strtok_r(NULL, "\n", &save), "error: e");
	assert_line(strtok_r(NULL, "\n", &save), "warning: w");
	assert_line(strtok_r(NULL, "\n", &save), "notice: n");
	assert_line(strtok_r(NULL, "\n", &save), "info: i");
	line = strtok_r(NULL, "\n", &save);
	assert_line(line, "debug: d");
	ck_assert_ptr_null(strtok_r(NULL, "\n", &save));
	free(text);
}
END_TEST

START_TEST(test_log_reopen)
{
	struct log lg;
	char path[256], rotated[256];
	char *text, *save = NULL;

	snprintf(path, sizeof(path), "%s/rot.log", tmpdir);
	snprintf(rotated, sizeof(rotated), "%s/rot.log.1", tmpdir);
	log_init(&lg);
	lg.dests = LOG_DEST_FILE;
	lg.path = xstrdup(path);
	ck_assert_int_eq(log_open(&lg), 0);
	log_write(&lg, LOG_LEVEL_NOTICE, "before");
	ck_assert_int_eq(rename(path, rotated), 0);
	ck_assert_int_eq(log_reopen(&lg), 0);
	log_write(&lg, LOG_LEVEL_NOTICE, "after");
	log_cleanup(&lg);

	text = slurp(rotated);
	assert_line(strtok_r(text, "\n", &save), "notice: before");
	ck_assert_ptr_null(strtok_r(NULL, "\n", &save));
	free(text);
	save = NULL;
	text = slurp(path);
	assert_line(strtok_r(text, "\n", &save), "notice: after");
	ck_assert_ptr_null(strtok_r(NULL, "\n", &save));
	free(text);
}
END_TEST

START_TEST(test_log_open_error)
{
	struct log lg;
	char path[256];

	snprintf(path, sizeof(path), "%s/no-such-dir/x.log", tmpdir);
	log_init(&lg);
	lg.dests = LOG_DEST_FILE;
	lg.path = xstrdup(path);
	ck_assert_int_eq(log_open(&lg), -ENOENT);
	log_cleanup(&lg);
}
END_TEST

/* The HTTP keys: http_listener with and without an address,
 * http_max_connections (64 by default, 0: no cap), sys_interval (0 turns
 * $SYS off), and the admin API, which on a non-loopback address needs a
 * token file: without one, an error naming http_admin's line. */
START_TEST(test_http_keys)
{
	struct config c;

	config_init(&c);
	ck_assert_uint_eq(c.http_port, 0);
	ck_assert_uint_eq(c.sys_interval, 10);
	ck_assert_uint_eq(c.http_max_connections, 64);
	ck_assert(!c.http_admin);
	config_cleanup(&c);

	load_ok(&c, "http_listener 9100\nsys_interval 0\nhttp_max_connections 5\n");
	ck_assert_uint_eq(c.http_port, 9100);
	ck_assert_ptr_null(c.http_address);
	ck_assert_uint_eq(c.sys_interval, 0);
	ck_assert_uint_eq(c.http_max_connections, 5);
	config_cleanup(&c);
	load_ok(&c, "http_max_connections 0\n");
	ck_assert_uint_eq(c.http_max_connections, 0);
	config_cleanup(&c);
	load_fails("http_max_connections 1000001\n", 1, "http_max_connections", "out of range");
	load_fails("http_max_connections -1\n", 1, "http_max_connections", "whole number");

	load_ok(&c, "http_listener 9100 127.0.0.2\nhttp_admin true\n");
	ck_assert_str_eq(c.http_address, "127.0.0.2");
	ck_assert(c.http_admin);
	config_cleanup(&c);

	load_ok(&c, "http_listener 9100 0.0.0.0\nhttp_admin true\nhttp_admin_token_file /t\n");
	ck_assert_str_eq(c.http_admin_token_file, "/t");
	config_cleanup(&c);

	load_ok(&c, "http_listener 9100 0.0.0.0\nhttp_admin false\n");
	config_cleanup(&c);

	load_fails("listener 1883\nhttp_listener 9100 0.0.0.0\nhttp_admin true\n", 3, "http_admin",
		   "needs http_admin_token_file");
	load_ok(&c, "http_listener 9100 ::1\nhttp_admin true\n");
	config_cleanup(&c);
	load_ok(&c, "http_listener 9100 LocalHost\nhttp_admin true\n");
	config_cleanup(&c);
	load_fails("http_listener 9100 127.example\nhttp_admin true\n", 2, "http_admin",
		   "needs http_admin_token_file");
	load_fails("http_listener 9100 ::2\nhttp_admin true\n", 2, "http_admin",
		   "needs http_admin_token_file");

	/* The one loopback test the config and the HTTP server share. */
	ck_assert(util_name_is_loopback("127.1.2.3", 9));
	ck_assert(util_name_is_loopback("[::1]", 5));
	ck_assert(util_name_is_loopback("localhost:80", 9));
	ck_assert(!util_name_is_loopback("localhost:80", 12));
	ck_assert(!util_name_is_loopback("128.0.0.1", 9));
	ck_assert(!util_name_is_loopback("[::1", 4));
	ck_assert(!util_name_is_loopback("", 0));
	load_fails("http_listener 0\n", 1, "http_listener", "out of range");
	load_fails("sys_interval -1\n", 1, "sys_interval", "whole number");
	load_fails("http_admin yes\n", 1, "http_admin", "true or false");
}
END_TEST

/* The cluster keys: off by default, a day of log retention; cluster true
 * needs the Redis store (an error naming cluster's line otherwise); a node
 * id has no ':', '{' or '}' (they would confuse the store's keys). */
START_TEST(test_cluster_keys)
{
	struct config c;

	config_init(&c);
	ck_assert(!c.cluster);
	ck_assert_ptr_null(c.cluster_node_id);
	ck_assert_uint_eq(c.message_retention, 86400);
	config_cleanup(&c);

	load_ok(&c, "persistence_backend redis\ncluster true\ncluster_node_id node-a\n"
		    "message_retention 3600\n");
	ck_assert(c.cluster);
	ck_assert_str_eq(c.cluster_node_id, "node-a");
	ck_assert_uint_eq(c.message_retention, 3600);
	config_cleanup(&c);

	load_ok(&c, "cluster false\n");
	ck_assert(!c.cluster);
	config_cleanup(&c);

	load_fails("listener 1883\ncluster true\n", 2, "cluster",
		   "needs persistence_backend redis");
	load_fails("persistence true\ncluster true\npersistence_backend lmdb\n", 2, "cluster",
		   "the lmdb store cannot be shared");
	load_fails("cluster yes\n", 1, "cluster", "true or false");
	load_fails("cluster_node_id a:b\n", 1, "cluster_node_id", "no ':'");
	load_fails("cluster_node_id {a}\n", 1, "cluster_node_id", "no ':'");
	load_fails("message_retention 0\n", 1, "message_retention", "out of range");
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	TCase *tl = tcase_create("log");

	tcase_add_unchecked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_empty_file);
	tcase_add_test(tc, test_backend_default);
	tcase_add_test(tc, test_service_keys);
	tcase_add_test(tc, test_every_key);
	tcase_add_test(tc, test_enum_values);
	tcase_add_test(tc, test_comments_blank_whitespace);
	tcase_add_test(tc, test_listeners_in_order);
	tcase_add_test(tc, test_add_listener_without_file);
	tcase_add_test(tc, test_per_listener_keys);
	tcase_add_loop_test(tc, test_numeric_edges, 0,
			    (int)(sizeof(num_cases) / sizeof(num_cases[0])));
	tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof(err_cases) / sizeof(err_cases[0])));
	tcase_add_test(tc, test_error_exact_message);
	tcase_add_test(tc, test_unreadable_file);
	tcase_add_test(tc, test_small_err_buffer);
	tcase_add_test(tc, test_get_option_last_wins);
	tcase_add_test(tc, test_log_dest);
	tcase_add_test(tc, test_log_type);
	tcase_add_test(tc, test_http_keys);
	tcase_add_test(tc, test_cluster_keys);
	suite_add_tcase(s, tc);

	tcase_add_unchecked_fixture(tl, tmpdir_setup, tmpdir_teardown);
	tcase_add_test(tl, test_log_type_parse);
	tcase_add_test(tl, test_log_write_file);
	tcase_add_test(tl, test_log_all_levels_and_append);
	tcase_add_test(tl, test_log_reopen);
	tcase_add_test(tl, test_log_open_error);
	suite_add_tcase(s, tl);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
