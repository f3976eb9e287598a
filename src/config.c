/*
 * The config file parser: one "key value..." per line in Mosquitto's
 * format, strict about every value, and stopping at the first bad line
 * with "FILE:LINE: KEY: reason" so an operator can fix it at once.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The largest MQTT packet: fixed header byte, 4-byte remaining length and
 * the largest remaining length the encoding allows. */
#define CONFIG_PACKET_SIZE_MAX (268435455u + 5u)
#define CONFIG_PACKET_SIZE_MIN 20u

/* Enough for "key v1 v2" plus one more to detect an extra value. */
#define CONFIG_MAX_TOKENS 4

struct parse {
	struct config *c;
	struct config_listener *listener; /* the last listener line, or NULL */
	const char *file;
	unsigned long line;
	const char *key;
	char *err;
	size_t errlen;
};

struct config_key {
	const char *name;
	int min_values;
	int max_values;
	int (*handle)(struct parse *p, char **v, int n);
};

static const char *const backend_names[] = {"none", "memory", "sqlite", "lmdb", "redis", NULL};

/* Keys the core keeps verbatim for the backends (config_get_option). */
static const char *const option_keys[] = {"redis_host",
					  "redis_port",
					  "redis_unix_socket",
					  "redis_db",
					  "redis_password",
					  "redis_key_prefix",
					  "redis_connect_timeout",
					  "redis_wait_replicas",
					  "lmdb_map_size",
					  "lmdb_map_size_max",
					  NULL};

__attribute__((format(printf, 2, 3))) static int fail(struct parse *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->errlen == 0)
		return -1;
	n = snprintf(p->err, p->errlen, "%s:%lu: %s: ", p->file, p->line, p->key);
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * Parse a whole decimal number in [min, max]. Only digits are accepted:
 * no sign, no whitespace, no trailing junk, so "-1" and "10k" are errors
 * rather than surprises.
 */
static int parse_number(struct parse *p, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	const char *q;
	char *end;

	if (*s == '\0')
		return fail(p, "expected a whole number, got '%s'", s);
	for (q = s; *q; q++) {
		if (!isdigit((unsigned char)*q))
			return fail(p, "expected a whole number, got '%s'", s);
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE || *end != '\0' || v < min || v > max)
		return fail(p, "'%s' is out of range (%" PRIu64 " to %" PRIu64 ")", s, min, max);
	*out = v;
	return 0;
}

static int parse_bool(struct parse *p, const char *s, bool *out)
{
	if (strcmp(s, "true") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0)
		*out = false;
	else
		return fail(p, "expected true or false, got '%s'", s);
	return 0;
}

static void set_string(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

static int key_listener(struct parse *p, char **v, int n)
{
	uint64_t port;

	if (parse_number(p, v[0], 1, 65535, &port) < 0)
		return -1;
	config_add_listener(p->c, n > 1 ? v[1] : NULL, (uint16_t)port);
	p->c->file_listeners = true;
	for (p->listener = p->c->listeners; p->listener->next; p->listener = p->listener->next)
		;
	p->listener->line = p->line;
	return 0;
}

/* The listener a per-listener key belongs to: the last listener line. */
static struct config_listener *current_listener(struct parse *p)
{
	if (!p->listener)
		fail(p, "must follow a listener line");
	return p->listener;
}

/* Where a security key goes: the global settings, or with
 * per_listener_settings the listener it follows. */
static struct config_security *current_security(struct parse *p)
{
	if (!p->c->per_listener_settings)
		return &p->c->sec;
	struct config_listener *l = current_listener(p);
	return l ? &l->sec : NULL;
}

static int key_per_listener_settings(struct parse *p, char **v, int n)
{
	(void)n;
	/* Keys already read went to the global settings: changing the rule
	 * afterwards would silently move or drop them. */
	if (p->listener || p->c->sec.allow_anonymous >= 0 || p->c->sec.password_file ||
	    p->c->sec.acl_file)
		return fail(p, "must come before every listener and security key");
	return parse_bool(p, v[0], &p->c->per_listener_settings);
}

static int key_allow_anonymous(struct parse *p, char **v, int n)
{
	struct config_security *s = current_security(p);
	bool allow = false;

	(void)n;
	if (!s || parse_bool(p, v[0], &allow) < 0)
		return -1;
	s->allow_anonymous = allow;
	return 0;
}

static int key_password_file(struct parse *p, char **v, int n)
{
	struct config_security *s = current_security(p);

	(void)n;
	if (!s)
		return -1;
	set_string(&s->password_file, v[0]);
	return 0;
}

static int key_acl_file(struct parse *p, char **v, int n)
{
	struct config_security *s = current_security(p);

	(void)n;
	if (!s)
		return -1;
	set_string(&s->acl_file, v[0]);
	return 0;
}

static int key_max_connections(struct parse *p, char **v, int n)
{
	struct config_listener *l = current_listener(p);
	uint64_t x;

	(void)n;
	if (!l)
		return -1;
	/* Mosquitto writes "no limit" as -1. */
	if (strcmp(v[0], "-1") == 0) {
		l->max_connections = 0;
		return 0;
	}
	if (parse_number(p, v[0], 0, UINT32_MAX, &x) < 0)
		return -1;
	l->max_connections = (uint32_t)x;
	return 0;
}

/* The TLS keys that name a file or a string, and where each goes. */
static char **tls_string_field(struct config_tls *t, const char *key)
{
	static const struct {
		const char *key;
		size_t off;
	} fields[] = {
	    {"cafile", offsetof(struct config_tls, cafile)},
	    {"capath", offsetof(struct config_tls, capath)},
	    {"certfile", offsetof(struct config_tls, certfile)},
	    {"keyfile", offsetof(struct config_tls, keyfile)},
	    {"crlfile", offsetof(struct config_tls, crlfile)},
	    {"dhparamfile", offsetof(struct config_tls, dhparamfile)},
	    {"ciphers", offsetof(struct config_tls, ciphers)},
	    {"ciphers_tls1.3", offsetof(struct config_tls, ciphersuites)},
	    {"ciphersuites", offsetof(struct config_tls, ciphersuites)},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strcmp(key, fields[i].key) == 0)
			return (char **)((char *)t + fields[i].off);
	return NULL;
}

static int key_tls_string(struct parse *p, char **v, int n)
{
	struct config_listener *l = current_listener(p);

	(void)n;
	if (!l)
		return -1;
	set_string(tls_string_field(&l->tls, p->key), v[0]);
	return 0;
}

static int key_tls_version(struct parse *p, char **v, int n)
{
	struct config_listener *l = current_listener(p);

	(void)n;
	if (!l)
		return -1;
	if (strcmp(v[0], "tlsv1.2") != 0 && strcmp(v[0], "tlsv1.3") != 0)
		return fail(p, "expected tlsv1.2 or tlsv1.3, got '%s'", v[0]);
	set_string(&l->tls.tls_version, v[0]);
	return 0;
}

static int key_tls_bool(struct parse *p, char **v, int n)
{
	struct config_listener *l = current_listener(p);
	bool *field;

	(void)n;
	if (!l)
		return -1;
	if (strcmp(p->key, "require_certificate") == 0)
		field = &l->tls.require_certificate;
	else if (strcmp(p->key, "use_identity_as_username") == 0)
		field = &l->tls.use_identity_as_username;
	else
		field = &l->tls.use_subject_as_username;
	return parse_bool(p, v[0], field);
}

/* What a listener's TLS keys need of each other, checked once the file is
 * read: a listener that cannot do what its keys ask must not start. */
static int check_listener_tls(struct parse *p, const struct config_listener *l)
{
	const struct config_tls *t = &l->tls;
	bool tls = t->certfile || t->keyfile;

	p->key = "listener";
	p->line = l->line;
	if (!t->certfile != !t->keyfile)
		return fail(p, "port %u: certfile and keyfile must be given together", l->port);
	if (!tls && (t->cafile || t->capath || t->crlfile || t->dhparamfile || t->ciphers ||
		     t->ciphersuites || t->tls_version || t->require_certificate ||
		     t->use_identity_as_username || t->use_subject_as_username))
		return fail(p, "port %u: TLS options without certfile and keyfile", l->port);
	if (t->require_certificate && !t->cafile && !t->capath)
		return fail(p, "port %u: require_certificate needs cafile or capath", l->port);
	if ((t->use_identity_as_username || t->use_subject_as_username) && !t->require_certificate)
		return fail(p,
			    "port %u: use_identity_as_username and use_subject_as_username "
			    "need require_certificate true",
			    l->port);
	return 0;
}

static int key_max_inflight_messages(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	/* Packet identifiers are 16 bits: more in flight cannot be told apart. */
	if (parse_number(p, v[0], 0, 65535, &x) < 0)
		return -1;
	p->c->max_inflight_messages = (uint32_t)x;
	return 0;
}

/* A count from 0 (unlimited) to UINT32_MAX. */
static int parse_count(struct parse *p, const char *s, uint32_t *out)
{
	uint64_t x;

	if (parse_number(p, s, 0, UINT32_MAX, &x) < 0)
		return -1;
	*out = (uint32_t)x;
	return 0;
}

static int key_max_queued_messages(struct parse *p, char **v, int n)
{
	(void)n;
	return parse_count(p, v[0], &p->c->max_queued_messages);
}

static int key_max_subscriptions(struct parse *p, char **v, int n)
{
	(void)n;
	return parse_count(p, v[0], &p->c->max_subscriptions);
}

static int key_max_queued_bytes(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 0, UINT64_MAX, &x) < 0)
		return -1;
	p->c->max_queued_bytes = x;
	return 0;
}

static int key_max_packet_size(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 0, CONFIG_PACKET_SIZE_MAX, &x) < 0)
		return -1;
	if (x == 0) {
		x = CONFIG_PACKET_SIZE_MAX;
	} else if (x < CONFIG_PACKET_SIZE_MIN) {
		return fail(p, "'%s' is too small (at least %u, or 0 for no limit)", v[0],
			    CONFIG_PACKET_SIZE_MIN);
	}
	p->c->max_packet_size = (uint32_t)x;
	return 0;
}

static int key_max_keepalive(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 1, 65535, &x) < 0)
		return -1;
	p->c->max_keepalive = (uint16_t)x;
	return 0;
}

static int key_max_topic_alias(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 0, 65535, &x) < 0)
		return -1;
	p->c->max_topic_alias = (uint16_t)x;
	return 0;
}

/*
 * A duration as Mosquitto writes persistent_client_expiration: a number
 * followed by h (hours), d (days), w (weeks), m (months of 30 days) or y
 * (years of 365 days). Returns seconds, or -1.
 */
int64_t config_parse_duration(const char *s)
{
	char *end;
	unsigned long long n;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || end[0] == '\0' || end[1] != '\0' || n > 1000000)
		return -1;
	switch (end[0]) {
	case 'h':
		return (int64_t)n * 3600;
	case 'd':
		return (int64_t)n * 86400;
	case 'w':
		return (int64_t)n * 7 * 86400;
	case 'm':
		return (int64_t)n * 30 * 86400;
	case 'y':
		return (int64_t)n * 365 * 86400;
	default:
		return -1;
	}
}

static int key_persistent_client_expiration(struct parse *p, char **v, int n)
{
	int64_t d = config_parse_duration(v[0]);

	(void)n;
	if (d <= 0 || d >= (int64_t)CAIRN_EXPIRY_NEVER)
		return fail(p, "'%s' is not a duration (a number and h, d, w, m or y: 1h, 2d, 1w)",
			    v[0]);
	p->c->persistent_client_expiration = (uint32_t)d;
	return 0;
}

static int key_connect_timeout(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 1, 3600, &x) < 0)
		return -1;
	p->c->connect_timeout = (uint32_t)x;
	return 0;
}

static int key_http_listener(struct parse *p, char **v, int n)
{
	uint64_t port;

	if (parse_number(p, v[0], 1, 65535, &port) < 0)
		return -1;
	p->c->http_port = (uint16_t)port;
	free(p->c->http_address);
	p->c->http_address = n > 1 ? xstrdup(v[1]) : NULL;
	return 0;
}

static int key_http_admin(struct parse *p, char **v, int n)
{
	(void)n;
	p->c->http_admin_line = p->line;
	return parse_bool(p, v[0], &p->c->http_admin);
}

static int key_http_admin_token_file(struct parse *p, char **v, int n)
{
	(void)n;
	set_string(&p->c->http_admin_token_file, v[0]);
	return 0;
}

static int key_http_max_connections(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 0, 1000000, &x) < 0)
		return -1;
	p->c->http_max_connections = (uint32_t)x;
	return 0;
}

static int key_sys_interval(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 0, 86400, &x) < 0)
		return -1;
	p->c->sys_interval = (uint32_t)x;
	return 0;
}

/* The admin API can end sessions: without a token it is served only on a
 * loopback address. */
static int check_http_admin(struct parse *p)
{
	const char *a = p->c->http_address;
	if (!p->c->http_admin || p->c->http_admin_token_file || !a ||
	    util_name_is_loopback(a, strlen(a)))
		return 0;
	p->line = p->c->http_admin_line;
	p->key = "http_admin";
	return fail(p, "the admin API on the non-loopback address %s needs http_admin_token_file",
		    a);
}

static int key_persistence(struct parse *p, char **v, int n)
{
	(void)n;
	return parse_bool(p, v[0], &p->c->persistence);
}

static int key_persistence_location(struct parse *p, char **v, int n)
{
	(void)n;
	set_string(&p->c->persistence_location, v[0]);
	return 0;
}

static int key_persistence_backend(struct parse *p, char **v, int n)
{
	int i;

	(void)n;
	for (i = 0; backend_names[i]; i++) {
		if (strcmp(v[0], backend_names[i]) == 0) {
			set_string(&p->c->persistence_backend, v[0]);
			return 0;
		}
	}
	return fail(p, "expected none, memory, sqlite, lmdb or redis, got '%s'", v[0]);
}

static int key_durability(struct parse *p, char **v, int n)
{
	(void)n;
	if (strcmp(v[0], "os") == 0)
		p->c->durability = CAIRN_DURABILITY_OS;
	else if (strcmp(v[0], "fsync") == 0)
		p->c->durability = CAIRN_DURABILITY_FSYNC;
	else
		return fail(p, "expected os or fsync, got '%s'", v[0]);
	return 0;
}

static int key_persistence_on_corrupt(struct parse *p, char **v, int n)
{
	(void)n;
	if (strcmp(v[0], "fail") == 0)
		p->c->on_corrupt = CAIRN_ON_CORRUPT_FAIL;
	else if (strcmp(v[0], "quarantine") == 0)
		p->c->on_corrupt = CAIRN_ON_CORRUPT_QUARANTINE;
	else
		return fail(p, "expected fail or quarantine, got '%s'", v[0]);
	return 0;
}

/*
 * The first log_dest of a file replaces the default (stderr); later ones
 * add destinations. "none" discards every destination named so far.
 */
static int key_log_dest(struct parse *p, char **v, int n, bool *seen)
{
	struct config *c = p->c;
	int bit;

	if (strcmp(v[0], "file") == 0) {
		if (n < 2)
			return fail(p, "file needs a path");
		bit = LOG_DEST_FILE;
	} else {
		if (n > 1)
			return fail(p, "unexpected extra value '%s'", v[1]);
		if (strcmp(v[0], "stderr") == 0)
			bit = LOG_DEST_STDERR;
		else if (strcmp(v[0], "stdout") == 0)
			bit = LOG_DEST_STDOUT;
		else if (strcmp(v[0], "syslog") == 0)
			bit = LOG_DEST_SYSLOG;
		else if (strcmp(v[0], "none") == 0)
			bit = LOG_DEST_NONE;
		else
			return fail(p,
				    "expected stderr, stdout, file PATH, syslog or none, "
				    "got '%s'",
				    v[0]);
	}
	if (!*seen || bit == LOG_DEST_NONE)
		c->log_dests = 0;
	*seen = true;
	if (bit != LOG_DEST_NONE)
		c->log_dests &= ~LOG_DEST_NONE;
	c->log_dests |= bit;
	if (bit == LOG_DEST_FILE)
		set_string(&c->log_file, v[1]);
	return 0;
}

/* The first log_type replaces the default mask; later ones add levels. */
static int key_log_type(struct parse *p, char **v, int n, bool *seen)
{
	int mask;

	(void)n;
	mask = log_type_parse(v[0]);
	if (mask < 0)
		return fail(p,
			    "expected error, warning, notice, information, debug, all or none, "
			    "got '%s'",
			    v[0]);
	if (!*seen)
		p->c->log_mask = 0;
	*seen = true;
	p->c->log_mask |= mask;
	return 0;
}

/* Cluster keys (cluster.c, and the Redis backend reads them). */
static int key_cluster(struct parse *p, char **v, int n)
{
	(void)n;
	p->c->cluster_line = p->line;
	return parse_bool(p, v[0], &p->c->cluster);
}

static int key_cluster_node_id(struct parse *p, char **v, int n)
{
	(void)n;
	if (strlen(v[0]) > 128 || strchr(v[0], ':') || strchr(v[0], '{') || strchr(v[0], '}'))
		return fail(p, "a node id has at most 128 characters and no ':', '{' or '}'");
	set_string(&p->c->cluster_node_id, v[0]);
	return 0;
}

static int key_message_retention(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 1, 100u * 365 * 86400, &x) < 0)
		return -1;
	p->c->message_retention = (uint32_t)x;
	return 0;
}

/* The shared log's partitions. Every node of a cluster must agree: the
 * Redis backend records the number at the first start and refuses another. */
static int key_cluster_log_partitions(struct parse *p, char **v, int n)
{
	uint64_t x;

	(void)n;
	if (parse_number(p, v[0], 1, CAIRN_LOG_PARTITIONS_MAX, &x) < 0)
		return -1;
	p->c->cluster_log_partitions = (uint32_t)x;
	return 0;
}

/* A cluster shares its store: only Redis can be shared. */
static int check_cluster(struct parse *p)
{
	if (!p->c->cluster || strcmp(p->c->persistence_backend, "redis") == 0)
		return 0;
	p->line = p->c->cluster_line;
	p->key = "cluster";
	return fail(p,
		    "cluster true needs persistence_backend redis (the %s store cannot be "
		    "shared)",
		    p->c->persistence_backend);
}

/* Service keys (service.c): who the broker runs as, and its pid file. */
static int key_user(struct parse *p, char **v, int n)
{
	(void)n;
	set_string(&p->c->user, v[0]);
	return 0;
}

static int key_pid_file(struct parse *p, char **v, int n)
{
	(void)n;
	set_string(&p->c->pid_file, v[0]);
	return 0;
}

static const struct config_key config_keys[] = {
    {"listener", 1, 2, key_listener},
    {"per_listener_settings", 1, 1, key_per_listener_settings},
    {"max_connections", 1, 1, key_max_connections},
    {"cafile", 1, 1, key_tls_string},
    {"capath", 1, 1, key_tls_string},
    {"certfile", 1, 1, key_tls_string},
    {"keyfile", 1, 1, key_tls_string},
    {"crlfile", 1, 1, key_tls_string},
    {"dhparamfile", 1, 1, key_tls_string},
    {"ciphers", 1, 1, key_tls_string},
    {"ciphers_tls1.3", 1, 1, key_tls_string},
    {"ciphersuites", 1, 1, key_tls_string},
    {"tls_version", 1, 1, key_tls_version},
    {"require_certificate", 1, 1, key_tls_bool},
    {"use_identity_as_username", 1, 1, key_tls_bool},
    {"use_subject_as_username", 1, 1, key_tls_bool},
    {"allow_anonymous", 1, 1, key_allow_anonymous},
    {"password_file", 1, 1, key_password_file},
    {"acl_file", 1, 1, key_acl_file},
    {"max_inflight_messages", 1, 1, key_max_inflight_messages},
    {"max_queued_messages", 1, 1, key_max_queued_messages},
    {"max_queued_bytes", 1, 1, key_max_queued_bytes},
    {"max_subscriptions", 1, 1, key_max_subscriptions},
    {"max_packet_size", 1, 1, key_max_packet_size},
    {"max_keepalive", 1, 1, key_max_keepalive},
    {"max_topic_alias", 1, 1, key_max_topic_alias},
    {"persistent_client_expiration", 1, 1, key_persistent_client_expiration},
    {"connect_timeout", 1, 1, key_connect_timeout},
    {"http_listener", 1, 2, key_http_listener},
    {"http_admin", 1, 1, key_http_admin},
    {"http_admin_token_file", 1, 1, key_http_admin_token_file},
    {"http_max_connections", 1, 1, key_http_max_connections},
    {"sys_interval", 1, 1, key_sys_interval},
    {"persistence", 1, 1, key_persistence},
    {"persistence_location", 1, 1, key_persistence_location},
    {"persistence_backend", 1, 1, key_persistence_backend},
    {"durability", 1, 1, key_durability},
    {"persistence_on_corrupt", 1, 1, key_persistence_on_corrupt},
    {"user", 1, 1, key_user},
    {"pid_file", 1, 1, key_pid_file},
    {"cluster", 1, 1, key_cluster},
    {"cluster_node_id", 1, 1, key_cluster_node_id},
    {"message_retention", 1, 1, key_message_retention},
    {"cluster_log_partitions", 1, 1, key_cluster_log_partitions},
    {NULL, 0, 0, NULL}};

static void add_option(struct config *c, const char *key, const char *value)
{
	struct config_option *o = xcalloc(1, sizeof(*o));
	struct config_option **tail = &c->options;

	o->key = xstrdup(key);
	o->value = xstrdup(value);
	while (*tail)
		tail = &(*tail)->next;
	*tail = o;
}

static bool is_option_key(const char *key)
{
	int i;

#ifdef CAIRN_FAULT_INJECTION
	/* Test builds only: "USER:SECRET" for the test authentication method
	 * cairn-test-challenge (authmeth.c). */
	if (strcmp(key, "auth_test_secret") == 0)
		return true;
	/* "N": the node kills itself (SIGKILL) once its shared groups gave
	 * out N entries, after their commit, before their acknowledgement
	 * (cluster_share.c). */
	if (strcmp(key, "share_test_kill_after") == 0)
		return true;
	/* "N": the node stops itself (SIGSTOP) once its shared groups staged
	 * N entries for their members, before the commit that holds them. */
	if (strcmp(key, "share_test_stop_before_commit") == 0)
		return true;
#endif

	for (i = 0; option_keys[i]; i++) {
		if (strcmp(key, option_keys[i]) == 0)
			return true;
	}
	return false;
}

/* Split s in place on spaces and tabs; returns the number of tokens found,
 * storing at most max of them. */
static int split(char *s, char **tok, int max)
{
	int n = 0;

	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			return n;
		if (n < max)
			tok[n] = s;
		n++;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = '\0';
	}
}

static int parse_line(struct parse *p, char *line, bool *dest_seen, bool *type_seen)
{
	char *tok[CONFIG_MAX_TOKENS];
	char *end;
	int n, nvalues, i;

	while (isspace((unsigned char)*line))
		line++;
	end = line + strlen(line);
	while (end > line && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (*line == '\0' || *line == '#')
		return 0;

	n = split(line, tok, CONFIG_MAX_TOKENS);
	p->key = tok[0];
	nvalues = n - 1;
	if (nvalues == 0) {
		bool known = is_option_key(tok[0]) || strcmp(tok[0], "log_dest") == 0 ||
			     strcmp(tok[0], "log_type") == 0;

		for (i = 0; config_keys[i].name && !known; i++)
			known = strcmp(tok[0], config_keys[i].name) == 0;
		return fail(p, known ? "missing value" : "unknown key");
	}

	if (strcmp(tok[0], "log_dest") == 0) {
		if (nvalues > 2)
			return fail(p, "unexpected extra value '%s'", tok[3]);
		return key_log_dest(p, tok + 1, nvalues, dest_seen);
	}
	if (strcmp(tok[0], "log_type") == 0) {
		if (nvalues > 1)
			return fail(p, "unexpected extra value '%s'", tok[2]);
		return key_log_type(p, tok + 1, nvalues, type_seen);
	}
	if (is_option_key(tok[0])) {
		if (nvalues > 1)
			return fail(p, "unexpected extra value '%s'", tok[2]);
		add_option(p->c, tok[0], tok[1]);
		return 0;
	}
	for (i = 0; config_keys[i].name; i++) {
		const struct config_key *k = &config_keys[i];

		if (strcmp(tok[0], k->name) != 0)
			continue;
		if (nvalues < k->min_values)
			return fail(p, "missing value");
		if (nvalues > k->max_values)
			return fail(p, "unexpected extra value '%s'", tok[k->max_values + 1]);
		return k->handle(p, tok + 1, nvalues);
	}
	return fail(p, "unknown key");
}

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->sec.allow_anonymous = -1;
	c->max_inflight_messages = 20;
	c->max_queued_messages = 1000;
	c->max_subscriptions = 100000;
	c->max_queued_bytes = 0;
	c->max_packet_size = CONFIG_PACKET_SIZE_MAX;
	c->max_keepalive = 65535;
	c->max_topic_alias = 10;
	c->persistent_client_expiration = CAIRN_EXPIRY_NEVER;
	c->connect_timeout = 10;
	c->sys_interval = 10;
	c->message_retention = 86400;
	c->cluster_log_partitions = 1;
	c->http_max_connections = 64;
	c->persistence = false;
	c->persistence_location = xstrdup(".");
	c->persistence_backend = NULL;
	c->durability = CAIRN_DURABILITY_FSYNC;
	c->on_corrupt = CAIRN_ON_CORRUPT_FAIL;
	c->log_dests = LOG_DEST_STDERR;
	c->log_mask = LOG_LEVEL_DEFAULT_MASK;
}

static void config_security_cleanup(struct config_security *s)
{
	free(s->password_file);
	free(s->acl_file);
}

static void config_tls_cleanup(struct config_tls *t)
{
	char **strings[] = {&t->cafile,  &t->capath,       &t->certfile,
			    &t->keyfile, &t->crlfile,      &t->dhparamfile,
			    &t->ciphers, &t->ciphersuites, &t->tls_version};
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		free(*strings[i]);
}

void config_cleanup(struct config *c)
{
	struct config_listener *l, *lnext;
	struct config_option *o, *onext;

	for (l = c->listeners; l; l = lnext) {
		lnext = l->next;
		config_security_cleanup(&l->sec);
		config_tls_cleanup(&l->tls);
		free(l->address);
		free(l);
	}
	for (o = c->options; o; o = onext) {
		onext = o->next;
		free(o->key);
		free(o->value);
		free(o);
	}
	free(c->path);
	config_security_cleanup(&c->sec);
	free(c->persistence_location);
	free(c->persistence_backend);
	free(c->cluster_node_id);
	free(c->log_file);
	free(c->http_address);
	free(c->http_admin_token_file);
	free(c->user);
	free(c->pid_file);
	memset(c, 0, sizeof(*c));
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	struct parse p = {.c = c, .file = path, .err = err, .errlen = errlen};
	bool dest_seen = false, type_seen = false;
	char *line = NULL;
	size_t cap = 0;
	FILE *f;
	int rc = 0;

	if (errlen > 0)
		err[0] = '\0';
	f = fopen(path, "r");
	if (f == NULL) {
		if (errlen > 0)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	set_string(&c->path, path);
	while (getline(&line, &cap, f) != -1) {
		p.line++;
		if (parse_line(&p, line, &dest_seen, &type_seen) < 0) {
			rc = -1;
			goto out;
		}
	}
	if (ferror(f)) {
		if (errlen > 0)
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		rc = -1;
		goto out;
	}
	if (c->persistence_backend == NULL)
		c->persistence_backend = xstrdup(c->persistence ? "sqlite" : "none");
	for (const struct config_listener *l = c->listeners; l; l = l->next) {
		if (check_listener_tls(&p, l) < 0) {
			rc = -1;
			goto out;
		}
	}
	if (check_http_admin(&p) < 0 || check_cluster(&p) < 0)
		rc = -1;
out:
	free(line);
	fclose(f);
	return rc;
}

const char *config_get_option(void *config, const char *key)
{
	const struct config *c = config;
	const struct config_option *o;
	const char *value = NULL;

	for (o = c->options; o; o = o->next) {
		if (strcmp(o->key, key) == 0)
			value = o->value;
	}
	return value;
}

void config_add_listener(struct config *c, const char *address, uint16_t port)
{
	struct config_listener *l = xcalloc(1, sizeof(*l));
	struct config_listener **tail = &c->listeners;

	l->address = address ? xstrdup(address) : NULL;
	l->port = port;
	l->sec.allow_anonymous = -1;
	while (*tail)
		tail = &(*tail)->next;
	*tail = l;
}

const struct config_security *config_security_for(const struct config *c,
						  const struct config_listener *l)
{
	return c->per_listener_settings && l ? &l->sec : &c->sec;
}

bool config_allow_anonymous(const struct config *c, const struct config_security *s)
{
	if (s->allow_anonymous >= 0)
		return s->allow_anonymous;
	return !c->file_listeners;
}
