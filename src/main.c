/*
 * cairn's entry point: the command line, the config, the start-up order
 * (log, store and restore, listeners), the event loop, and a clean exit.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "security.h"
#include "server.h"
#include "service.h"
#include "tls.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

static void usage(FILE *out)
{
	fputs("usage: cairn [-c FILE] [-p PORT] [-d] [-v] [-t] [-h] [--version]\n"
	      "  -c FILE    read the configuration from FILE\n"
	      "  -d         run in the background (returns once the broker serves)\n"
	      "  -p PORT    also listen on 127.0.0.1:PORT\n"
	      "  -v         verbose: log everything, debug included\n"
	      "  -t         test the configuration and exit\n"
	      "  -h         show this help\n"
	      "  --version  show the version\n",
	      out);
}

/* -t reads what the broker would read at start-up besides the config:
 * every TLS listener's certificate, key, CA and CRL files. */
static int main_check_files(const struct config *cfg, const char *conf_path)
{
	int rc = 0;
	for (const struct config_listener *l = cfg->listeners; l; l = l->next) {
		if (!l->tls.certfile)
			continue;
		char err[512];
		SSL_CTX *ctx = tls_context_new(&l->tls, err, sizeof(err));
		if (!ctx) {
			fprintf(stderr, "cairn: %s:%lu: listener %u: %s\n", conf_path, l->line,
				l->port, err);
			rc = -1;
		}
		SSL_CTX_free(ctx);
	}
	return rc;
}

/*
 * -t: besides the config itself, read every password file the way the
 * broker would and report each problem on stderr. A malformed line fails
 * the check even though the broker would start (that user alone could not
 * log in): the point of -t is to find such lines before a reload.
 */
static int main_check_config(struct config *cfg, const char *conf_path)
{
	struct log lg;
	struct security_set sec = {0};
	unsigned bad = 0;
	int rc;

	log_init(&lg);
	rc = security_set_init(&sec, cfg, &lg, &bad);
	if (main_check_files(cfg, conf_path) != 0)
		rc = -1;
	security_set_cleanup(&sec);
	log_cleanup(&lg);
	if (rc == 0 && bad == 0)
		printf("cairn: the configuration %s is valid\n", conf_path ? conf_path : "(none)");
	else if (rc == 0)
		fprintf(stderr, "cairn: %s: %u malformed password file line%s\n",
			conf_path ? conf_path : "(none)", bad, bad == 1 ? "" : "s");
	config_cleanup(cfg);
	return rc == 0 && bad == 0 ? 0 : 1;
}

static int parse_port(const char *s, uint16_t *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

int main(int argc, char **argv)
{
	const char *conf_path = NULL;
	uint16_t port = 0;
	bool verbose = false, test_only = false, daemonize = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-c") == 0 && i + 1 < argc) {
			conf_path = argv[++i];
		} else if (strcmp(a, "-p") == 0 && i + 1 < argc) {
			if (parse_port(argv[++i], &port) != 0) {
				fprintf(stderr, "cairn: -p: not a port number: '%s'\n", argv[i]);
				return 1;
			}
		} else if (strcmp(a, "-d") == 0) {
			daemonize = true;
		} else if (strcmp(a, "-v") == 0) {
			verbose = true;
		} else if (strcmp(a, "-t") == 0) {
			test_only = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			printf("cairn %s\n", PACKAGE_VERSION);
			return 0;
		} else {
			fprintf(stderr, "cairn: unknown or incomplete option '%s'\n", a);
			usage(stderr);
			return 1;
		}
	}

	struct config cfg;
	config_init(&cfg);
	char err[1024];
	if (conf_path && config_load(&cfg, conf_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "cairn: %s\n", err);
		config_cleanup(&cfg);
		return 1;
	}
	if (test_only)
		return main_check_config(&cfg, conf_path);
	if (port) /* a quick start: in addition to the configured listeners */
		config_add_listener(&cfg, "127.0.0.1", port);
	if (!cfg.listeners)
		config_add_listener(&cfg, "127.0.0.1", 1883);

	/* -d before anything is opened: the daemon opens the log, the store
	 * and the listeners itself. */
	struct service svc;
	service_init(&svc);
	if (daemonize && service_daemonize(&svc, cfg.log_dests & LOG_DEST_STDOUT,
					   cfg.log_dests & LOG_DEST_STDERR) != 0) {
		config_cleanup(&cfg);
		return 1;
	}

	struct log lg;
	log_init(&lg);
	lg.dests = cfg.log_dests;
	cfg.verbose = verbose;
	lg.mask = verbose ? (LOG_LEVEL_DEFAULT_MASK | LOG_LEVEL_DEBUG) : cfg.log_mask;
	if (cfg.log_file)
		lg.path = xstrdup(cfg.log_file);
	if (log_open(&lg) != 0)
		fprintf(stderr, "cairn: cannot open log file %s, logging to stderr\n",
			lg.path ? lg.path : "");

	signal(SIGPIPE, SIG_IGN);
	struct event_config *ec = event_config_new();
	struct event_base *base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (!base) {
		log_write(&lg, LOG_LEVEL_ERROR, "cannot create the event loop");
		return 1;
	}

	struct server srv = {0}; /* server_cleanup may run without server_init */
	int rc = 0;
	log_write(&lg, LOG_LEVEL_NOTICE, "cairn %s starting%s%s", PACKAGE_VERSION,
		  conf_path ? " with " : "", conf_path ? conf_path : "");
	service_status(&svc, "restoring the store and opening the listeners");
	/* Start-up order: the log, opened with the rights cairn was started
	 * with; then, started as root with user set, files are reached with
	 * the user's rights (the store, password, ACL and TLS files, the pid
	 * file) while listeners can still bind any port; the store restored,
	 * the listeners opened, the pid file written; the drop to user for
	 * good; READY=1 last. */
	if (service_user_prepare(&svc, &lg, cfg.user) != 0 ||
	    server_init(&srv, &cfg, &lg, base) != 0 ||
	    (cfg.pid_file && service_write_pid(&svc, &lg, cfg.pid_file) != 0) ||
	    service_drop_privileges(&svc, &lg) != 0) {
		rc = 1;
	} else {
		char status[200];
		snprintf(status, sizeof(status), "serving; %zu sessions restored",
			 srv.clients.count);
		srv.service = &svc;
		service_ready(&svc, base, &lg, status);
		event_base_dispatch(base);
		log_write(&lg, LOG_LEVEL_NOTICE,
			  "stopped: %llu messages received, %llu sent, %llu dropped, "
			  "%llu logins refused",
			  (unsigned long long)server_msgs_received(&srv.stats),
			  (unsigned long long)server_msgs_sent(&srv.stats),
			  (unsigned long long)server_msgs_dropped(&srv.stats),
			  (unsigned long long)srv.stats.auth_failures);
	}
	server_cleanup(&srv);
	service_cleanup(&svc);
	event_base_free(base);
	log_cleanup(&lg);
	config_cleanup(&cfg);
	return rc;
}
