/*
 * Start-up restore: rebuild sessions, subscriptions, queued and in-flight
 * deliveries, inbound QoS 2 ids and retained messages from the store, then
 * publish the wills of sessions whose connection the last run left open.
 */
#ifndef CAIRN_RESTORE_H
#define CAIRN_RESTORE_H

struct server;

/* Load srv->store into srv (its router and client map must exist). Logs
 * what was restored, or why loading failed; returns 0 or -1. */
int restore_run(struct server *srv);

#endif
