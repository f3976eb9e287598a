/*
 * Start-up restore: rebuild sessions, subscriptions, queued and in-flight
 * deliveries, inbound QoS 2 ids and retained messages from the store, then
 * publish the wills of sessions whose connection the last run left open.
 */
#ifndef CAIRN_RESTORE_H
#define CAIRN_RESTORE_H

#include <stdbool.h>

#include "cairn/store.h"

struct client;
struct message;
struct server;

/* What start-up restore and a cluster claim share: add a stored
 * subscription to c (false, and nothing added, for a damaged record), and
 * a stored message as a new message whose id is still unset (NULL for a
 * damaged record). */
bool restore_add_sub(struct client *c, const struct cairn_sub_rec *r);
/* A stored session as a new client (not yet in the server's map): its
 * packet id, drops, username and protocol level; the caller owns the
 * reference. */
struct client *restore_client_new(struct server *srv, const struct cairn_session_rec *r);
struct message *restore_message_new(const struct cairn_msg_rec *r);

/* Load srv->store into srv (its router and client map must exist). Logs
 * what was restored, or why loading failed; returns 0 or -1. */
int restore_run(struct server *srv);

#endif
