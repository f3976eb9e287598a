/*
 * The MQTT control packets a client sends, CONNECT to DISCONNECT: what each
 * one does to the session, the router and the store, and what is answered.
 * Plugged into the connection layer as its hooks.
 */
#ifndef CAIRN_PROTOCOL_H
#define CAIRN_PROTOCOL_H

#include "conn.h"

/* The hooks a server's connection set runs; their argument is the struct
 * server. */
extern const struct conn_hooks protocol_hooks;

#endif
