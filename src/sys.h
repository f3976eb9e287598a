/*
 * $SYS/broker/... topics, with Mosquitto's names and meanings where it has
 * them, published every sys_interval seconds through the router as
 * retained QoS 0 messages (kept in memory, never in the store), so that a
 * subscriber's ACL read check applies as to any other message.
 */
#ifndef CAIRN_SYS_H
#define CAIRN_SYS_H

struct server;
struct sys_pub;

/* Publishes the first values at once, then every cfg->sys_interval
 * seconds (which must not be 0). */
struct sys_pub *sys_pub_new(struct server *srv);
/* cfg->sys_interval changed (SIGHUP): the next update comes that many
 * seconds from now, and every that many after. */
void sys_pub_rearm(struct sys_pub *p);
void sys_pub_free(struct sys_pub *p);

#endif
