/*
 * Shared subscriptions across the nodes of a cluster (cluster mode with a
 * store of vtable version 6): see cluster_share.c.
 */
#ifndef CAIRN_CLUSTER_SHARE_H
#define CAIRN_CLUSTER_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/store.h"

struct client;
struct server;
struct sub;
struct cluster_shares;

/* Start reading the groups of this node's members (cluster_start, once the
 * node has joined). routed: the node's mark, nparts positions, borrowed
 * until cluster_share_free. NULL when the store cannot share groups: then
 * shared subscriptions are refused in cluster mode. */
struct cluster_shares *cluster_share_new(struct server *srv, uint32_t nparts,
					 const struct cairn_log_pos *routed);
void cluster_share_stop(struct cluster_shares *sh);
void cluster_share_free(struct cluster_shares *sh);

/* Whether $share subscriptions are taken in cluster mode. */
bool cluster_share_available(const struct server *srv);

/* s (a "$share/..." subscription of a session held here) is new: its
 * session joins the group in the store, and the group reads the log from
 * this node's mark on (what the node routes later matches it). */
void cluster_share_subscribed(struct cluster_shares *sh, const struct sub *s);

/* Client c left the group of filter (UNSUBSCRIBE), or, filter NULL, its
 * session ended (every group it is a member of). */
void cluster_share_left(struct server *srv, const struct client *c, const char *filter, size_t len);

/* New log entries of partition part reached this node: the groups read it. */
void cluster_share_wake(struct cluster_shares *sh, uint32_t part);

#endif
