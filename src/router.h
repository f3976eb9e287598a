/*
 * Routing: the subscription trie, the retained messages, and the fan-out of
 * one published message (from a client, or a will) to every matching
 * session, behind one commit gate when anything had to be stored.
 */
#ifndef CAIRN_ROUTER_H
#define CAIRN_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct gate;
struct message;
struct router;
struct store;
struct sub;

/* A router writing retained messages to st (borrowed; it outlives the
 * router's use of it). */
struct router *router_new(struct store *st);
/* Frees the trie and the retained messages; every session must have been
 * unsubscribed (router_unsubscribe) before. */
void router_free(struct router *r);

/* Add s (a subscription of s->owner: client_add_sub_opts()) to the trie,
 * or update it there (its QoS, its 5.0 options No Local and Retain As
 * Published, its identifier), or remove it. A filter "$share/GROUP/FILTER"
 * (valid: topic_subfilter_parse()) makes the session a member of that
 * shared group instead (share.c), or ends it. */
void router_subscribe(struct router *r, struct sub *s);
void router_unsubscribe(struct router *r, struct sub *s);

/*
 * Deliver msg to every matching session and update the retained message of
 * its topic. When anything had to be stored, the deliveries wait behind a
 * gate that opens once the batch commits, and the function returns true:
 * the caller must then defer the publisher's PUBACK/PUBREC the same way
 * (client_send_ordered with defer).
 */
bool router_publish(struct router *r, struct message *msg);
/* Set (or with an empty payload clear) the retained message of msg's topic
 * in memory only (cluster mode: the store write travels with the log
 * append, and this node sees it at once, before its own reader does). */
void router_retain_local(struct router *r, struct message *msg);

/* router_publish for one session alone (a session catching up with the
 * cluster's log): no retained update, no shared subscription, no log floor. */
bool router_publish_to(struct router *r, struct message *msg, struct client *only);

/* Cluster mode (cluster_share.c): router_publish leaves shared
 * subscriptions out from now on for a message read from the log
 * (from_log; a node-local one, $SYS, still goes to this node's groups),
 * and each message of the log for a group is given to
 * the member the caller picked from router_shares() with
 * router_deliver_pick() (as router_publish gives it; true when the
 * delivery is stored and sent once the batch commits). */
struct share_pick;
struct share_set;
void router_shares_apart(struct router *r);
struct share_set *router_shares(struct router *r);
bool router_deliver_pick(struct router *r, struct message *msg, const struct share_pick *p);

/* What the last router_publish did: the sessions it matched, and how many
 * of them dropped the message because their queue was full (5.0: PUBACK
 * 0x10 No matching subscribers, 0x97 Quota exceeded). */
void router_last_result(const struct router *r, size_t *matched, size_t *full);

/* Queue the retained messages matching filter to c at up to qos, with the
 * subscription identifier sub_id alone (0: none), behind gate (may be
 * NULL). */
void router_send_retained(struct router *r, struct client *c, const char *filter, size_t len,
			  uint8_t qos, uint32_t sub_id, struct gate *gate);

/* Restore: set a retained message without storing it (takes a reference). */
void router_load_retained(struct router *r, struct message *msg);

/* Retained messages held now. */
size_t router_retained_count(const struct router *r);

/* Clear the retained message of topic, as an empty retained PUBLISH
 * would, without delivering anything. Returns true if there was one. */
bool router_clear_retained(struct router *r, const char *topic, size_t len);
/* This node's retained message of topic (borrowed), or NULL; and setting
 * it in memory only (cluster mode), msg NULL to clear (takes a reference). */
struct message *router_retained_get(struct router *r, const char *topic, size_t len);
void router_retained_put(struct router *r, const char *topic, size_t len, struct message *msg);
/* Whether topic has a retained message. */
bool router_has_retained(const struct router *r, const char *topic, size_t len);

#endif
