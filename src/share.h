/*
 * Shared subscriptions ("$share/GROUP/FILTER"): the groups, their members,
 * and the choice of the one member that gets each matching message.
 *
 * Caveats: a member is a (group, session) pair; sessions are opaque
 * pointers owned by the caller, who tells the set when a session comes
 * online (share_session_online()) and removes every membership of a
 * session before it frees it. Nothing here stores anything: the caller
 * keeps the "$share/..." filter with the session's other subscriptions.
 */
#ifndef CAIRN_SHARE_H
#define CAIRN_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct share_set;
struct share_member;
struct topic_subfilter;

/* Whether session is connected now: asked of the member a message is about
 * to go to, so one whose connection ended unannounced is passed over. */
typedef bool (*share_online_fn)(void *session);

/* One chosen delivery of the current share_route(): session at qos (the
 * member's granted QoS; the caller caps it by the message's). */
struct share_pick {
	void *session;
	uint8_t qos;     /* as share_join() was given it */
	uint32_t sub_id; /* the member's subscription identifier; 0: none */
};

/* An empty set; online is asked as share_online_fn says. */
struct share_set *share_set_new(share_online_fn online);
/* Free the set and every group and member still in it (each member is
 * unlinked from its session's list first). NULL is a no-op. */
void share_set_free(struct share_set *s);

/*
 * Make session a member of sf's group on sf's filter at qos, or, when it
 * is one already, change its QoS. The member starts online when the
 * online function says so.
 * @param sf          a shared filter from topic_subfilter_parse() (group
 *                    not NULL; group and filter contiguous, as parsed)
 * @param list        the head of session's list of memberships, which the
 *                    set keeps linked (share_session_online() walks it)
 * @param persistent  the session outlives its connection: while offline
 *                    it is still offered messages when no member is
 *                    online, and they queue for it
 */
void share_join(struct share_set *s, const struct topic_subfilter *sf, void *session,
		struct share_member **list, uint8_t qos, uint32_t sub_id, bool persistent);

/* End session's membership of sf's group; false when it had none. The
 * group goes when its last member leaves. */
bool share_leave(struct share_set *s, const struct topic_subfilter *sf, void *session);

/* Every membership in list (a session's, as share_join() keeps it) is now
 * online or not: an online member is chosen before any offline one. */
void share_session_online(struct share_member *list, bool online);

/*
 * Choose one member in each group whose filter matches the (valid) topic
 * name: the next online member in turn (round robin), else, when none is
 * online, the next persistent offline member in turn, else nobody. Each
 * choice costs O(1) amortised: a member found offline is moved aside once
 * per disconnection. *picks points at an array of the choices, owned by
 * the set and valid until the next call; at most one per group.
 * @return the number of picks
 */
size_t share_route(struct share_set *s, const char *topic, size_t len,
		   const struct share_pick **picks);

/* Cluster mode (cluster_share.c), where the store hands each matching
 * message to one node, which gives it to one of its members: choose the
 * member of the group named key ("GROUP/FILTER", len bytes) that gets the
 * next message, as share_route() chooses in each group. False when the
 * group is not in the set or has no member to choose. */
bool share_pick_group(struct share_set *s, const char *key, size_t len, struct share_pick *out);

/* How many more messages session can take now without one being dropped
 * for a full queue (0: none). */
typedef uint32_t (*share_room_fn)(void *session);
/* As share_pick_group(), but only an online member with room (room() not
 * 0), the next such in turn: a member whose queue is full is passed over.
 * False when no online member has room. */
bool share_pick_group_room(struct share_set *s, const char *key, size_t len, share_room_fn room,
			   struct share_pick *out);
/* The room of the group's online members, summed (0: none online, or all
 * full). */
uint64_t share_group_room(const struct share_set *s, const char *key, size_t len,
			  share_room_fn room);

/* Whether the group named key has a member online (as far as the set
 * knows: a connection that ended unannounced is found at the next pick). */
bool share_group_online(const struct share_set *s, const char *key, size_t len);

/* Call fn for each group in the set: its key ("GROUP/FILTER", len bytes,
 * the filter from key + group_len + 1) and whether a member is online.
 * fn must not change the set. */
typedef void (*share_group_fn)(void *arg, const char *key, size_t len, size_t group_len,
			       bool online);
void share_foreach_group(const struct share_set *s, share_group_fn fn, void *arg);

/* Groups in the set, and members in all of them. */
size_t share_group_count(const struct share_set *s);
size_t share_member_count(const struct share_set *s);

#endif
