/*
 * The config file: Mosquitto-compatible keys plus cairn's own. Parsing
 * stops at the first bad line with file:line, the key and why.
 */
#ifndef CAIRN_CONFIG_H
#define CAIRN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/store.h"
#include "log.h"

/* Who may connect and what they may do: one set for the whole broker, or
 * one per listener when per_listener_settings is true. */
struct config_security {
	int allow_anonymous; /* -1 not set (see config_allow_anonymous), 0 or 1 */
	char *password_file;
	char *acl_file;
};

/* A listener's TLS settings, with Mosquitto's key names. certfile (with
 * keyfile) makes the listener speak TLS only. */
struct config_tls {
	char *cafile;
	char *capath;
	char *certfile;
	char *keyfile;
	char *crlfile;
	char *dhparamfile;
	char *ciphers;      /* TLS 1.2 and below, OpenSSL's cipher list syntax */
	char *ciphersuites; /* TLS 1.3 (ciphers_tls1.3 or ciphersuites) */
	char *tls_version;  /* the minimum: "tlsv1.2" (default) or "tlsv1.3" */
	bool require_certificate;
	bool use_identity_as_username;
	bool use_subject_as_username;
};

struct config_listener {
	char *address; /* NULL: all addresses */
	uint16_t port;
	uint32_t max_connections;   /* 0: no limit */
	unsigned long line;         /* of its listener line; 0 when not from a file */
	struct config_security sec; /* in force when per_listener_settings */
	struct config_tls tls;
	struct config_listener *next;
};

/* A key the core does not interpret itself (backend options such as
 * redis_host), kept for cairn_store_options.get(). */
struct config_option {
	char *key;
	char *value;
	struct config_option *next;
};

struct config {
	char *path;                            /* file it was read from, or NULL */
	struct config_listener *listeners;     /* in file order */
	bool per_listener_settings;            /* security keys belong to their listener */
	bool file_listeners;                   /* the file named at least one listener */
	struct config_security sec;            /* when per_listener_settings is false */
	uint32_t max_inflight_messages;        /* default 20; 0 = unlimited */
	uint32_t max_queued_messages;          /* default 1000; 0 = unlimited */
	uint32_t max_subscriptions;            /* per client; default 100000; 0 = unlimited */
	uint64_t max_queued_bytes;             /* default 0 = unlimited */
	uint32_t max_packet_size;              /* default 268435455 + 5 (no limit) */
	uint16_t max_keepalive;                /* default 65535 */
	uint16_t max_topic_alias;              /* 5.0 topic aliases a client may set; default 10 */
	uint32_t persistent_client_expiration; /* seconds a disconnected 3.1.1 persistent
						* session lives; CAIRN_EXPIRY_NEVER (default) */
	uint32_t connect_timeout;              /* seconds to wait for CONNECT; default 10 */
	uint16_t http_port;                    /* http_listener; 0: no HTTP listener (default) */
	char *http_address;                    /* NULL: loopback */
	bool http_admin;                       /* the admin API; default false */
	char *http_admin_token_file;           /* its bearer token */
	unsigned long http_admin_line;         /* of http_admin, for the start-up check */
	uint32_t http_max_connections;         /* open HTTP connections; 0: no cap; default 64 */
	uint32_t sys_interval;                 /* seconds between $SYS updates; 0 off; default 10 */
	bool cluster;                          /* share the (Redis) store with other nodes */
	unsigned long cluster_line;            /* of cluster, for the start-up check */
	char *cluster_node_id;                 /* default: HOSTNAME:PORT of the first listener */
	uint32_t message_retention;            /* seconds the shared log keeps; default 86400 */
	uint32_t cluster_log_partitions;       /* the shared log's partitions; default 1 */
	bool persistence;                      /* default false */
	char *persistence_location;            /* default "." */
	char *persistence_backend;             /* default "sqlite" when persistence, else "memory";
						* NULL after config_init alone: treat as "memory";
						* config_load always sets it */
	enum cairn_durability durability;      /* default fsync */
	enum cairn_on_corrupt on_corrupt;      /* persistence_on_corrupt; default fail */
	int log_dests;                         /* enum log_dest_kind bits; default stderr */
	char *log_file;                        /* for "log_dest file PATH" */
	int log_mask;                          /* log_type bits; default LOG_LEVEL_DEFAULT_MASK */
	bool verbose;                          /* -v on the command line: debug lines too */
	struct config_option *options;         /* other recognised keys, in file order */
	char *user;     /* started as root: become this user once the listeners are open */
	char *pid_file; /* written at start-up, removed at exit; NULL: none */
};

void config_init(struct config *c);

/* Seconds in a Mosquitto duration ("1h", "2d", "1w", "3m", "1y"), or -1. */
int64_t config_parse_duration(const char *s);
void config_cleanup(struct config *c);

/*
 * Read path into c (which config_init prepared). On error returns -1 and
 * writes "FILE:LINE: KEY: reason" (or "FILE: reason") into err; c may then
 * hold part of the file and must still be released with config_cleanup.
 */
int config_load(struct config *c, const char *path, char *err, size_t errlen);

/* Value of a backend option (last one wins), or NULL. Fits
 * cairn_store_options.get. */
const char *config_get_option(void *config, const char *key);

/* Add a listener (used by -p). */
void config_add_listener(struct config *c, const char *address, uint16_t port);

/* The security settings in force for connections on l. */
const struct config_security *config_security_for(const struct config *c,
						  const struct config_listener *l);

/* Whether s lets clients connect without a username. When the file did
 * not say, Mosquitto 2.0's rule holds: anonymous clients are allowed only
 * when the config declares no listener (the broker then listens on the
 * loopback interface alone); a config that names a listener must say
 * allow_anonymous true to allow them. */
bool config_allow_anonymous(const struct config *c, const struct config_security *s);

#endif
