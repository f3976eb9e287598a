/*
 * Shared subscription groups. A group is found by its "GROUP/FILTER" key
 * in a hash table and by its filter in a subscription trie of its own; its
 * members sit in two rings, online and persistent-offline, each served in
 * turn from a cursor, so choosing a member never scans the group.
 */
#include "share.h"

#include <stdlib.h>
#include <string.h>

#include "levelmap.h"
#include "topic.h"
#include "util.h"

/* The link both hash tables chain their entries by; first in each entry. */
struct share_hlink {
	struct share_hlink *next;
	uint32_t hv;
};

/* A chained hash table whose size follows its count (load factor <= 1). */
struct share_htab {
	struct share_hlink **slots;
	uint32_t cap; /* a power of two, or 0 while empty */
	uint32_t count;
};

/* A ring of members served in turn: cur is the next one to serve, and a
 * member joining goes just before it (last in the current round). */
struct share_ring {
	struct share_member *cur;
	uint32_t count;
};

struct share_group {
	struct share_hlink link;
	char *key;        /* "GROUP/FILTER", NUL-terminated */
	size_t key_len;   /* bytes in key */
	size_t group_len; /* the filter starts at key + group_len + 1 */
	struct share_ring online;
	struct share_ring offline; /* persistent members not connected */
	uint32_t members;
};

/* Where a member waits to be chosen. */
enum share_where {
	SHARE_IDLE,    /* in no ring: offline and not persistent */
	SHARE_ONLINE,  /* in the group's online ring */
	SHARE_OFFLINE, /* in the group's offline ring (persistent) */
};

struct share_member {
	struct share_hlink link; /* in the set's table by (group, session) */
	struct share_group *group;
	void *session;
	struct share_member **list;         /* the session's list head */
	struct share_member *snext, *sprev; /* in that list */
	struct share_member *rnext, *rprev; /* in the ring of where */
	uint8_t qos;
	uint8_t where;   /* enum share_where */
	uint32_t sub_id; /* the subscription identifier (5.0); 0: none */
	bool persistent;
};

struct share_set {
	share_online_fn online;
	struct topic_tree *tree; /* filter -> groups (QoS unused) */
	struct share_htab groups;
	struct share_htab members;
	struct share_pick *picks;
	size_t npicks, cap;
};

/* ---- the hash tables ---- */

static void share_htab_resize(struct share_htab *t, uint32_t cap)
{
	struct share_hlink **slots = xcalloc(cap, sizeof(*slots));

	for (uint32_t i = 0; i < t->cap; i++) {
		while (t->slots[i] != NULL) {
			struct share_hlink *l = t->slots[i];

			t->slots[i] = l->next;
			l->next = slots[l->hv & (cap - 1)];
			slots[l->hv & (cap - 1)] = l;
		}
	}
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
}

static void share_htab_add(struct share_htab *t, struct share_hlink *l)
{
	if (t->count >= t->cap)
		share_htab_resize(t, t->cap ? t->cap * 2 : 8);
	l->next = t->slots[l->hv & (t->cap - 1)];
	t->slots[l->hv & (t->cap - 1)] = l;
	t->count++;
}

/* Unlink l, which must be there; the table shrinks as it empties. */
static void share_htab_del(struct share_htab *t, struct share_hlink *l)
{
	struct share_hlink **pp = &t->slots[l->hv & (t->cap - 1)];

	while (*pp != l)
		pp = &(*pp)->next;
	*pp = l->next;
	t->count--;
	if (t->count == 0) {
		free(t->slots);
		t->slots = NULL;
		t->cap = 0;
	} else if (t->cap > 8 && t->count * 4 < t->cap) {
		share_htab_resize(t, t->cap / 2);
	}
}

/* The first entry of hv's chain, or NULL. */
static struct share_hlink *share_htab_chain(const struct share_htab *t, uint32_t hv)
{
	return t->cap ? t->slots[hv & (t->cap - 1)] : NULL;
}

static uint32_t share_pair_hash(const void *a, const void *b)
{
	uint64_t x = (uint64_t)(uintptr_t)a * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)b;

	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return (uint32_t)x;
}

/* ---- rings ---- */

static void share_ring_add(struct share_ring *r, struct share_member *m)
{
	if (r->cur == NULL) {
		m->rnext = m->rprev = m;
		r->cur = m;
	} else {
		m->rnext = r->cur;
		m->rprev = r->cur->rprev;
		m->rprev->rnext = m;
		r->cur->rprev = m;
	}
	r->count++;
}

static void share_ring_del(struct share_ring *r, struct share_member *m)
{
	if (m->rnext == m) {
		r->cur = NULL;
	} else {
		m->rprev->rnext = m->rnext;
		m->rnext->rprev = m->rprev;
		if (r->cur == m)
			r->cur = m->rnext;
	}
	m->rnext = m->rprev = NULL;
	r->count--;
}

/* The member whose turn it is; the cursor moves on. r must not be empty. */
static struct share_member *share_ring_take(struct share_ring *r)
{
	struct share_member *m = r->cur;

	r->cur = m->rnext;
	return m;
}

static struct share_ring *share_member_ring(struct share_member *m)
{
	switch (m->where) {
	case SHARE_ONLINE:
		return &m->group->online;
	case SHARE_OFFLINE:
		return &m->group->offline;
	default:
		return NULL;
	}
}

/* Move m to the ring its state calls for: online, else offline when
 * persistent, else none. */
static void share_member_place(struct share_member *m, bool online)
{
	uint8_t where = online ? SHARE_ONLINE : m->persistent ? SHARE_OFFLINE : SHARE_IDLE;
	struct share_ring *r;

	if (where == m->where)
		return;
	r = share_member_ring(m);
	if (r != NULL)
		share_ring_del(r, m);
	m->where = where;
	r = share_member_ring(m);
	if (r != NULL)
		share_ring_add(r, m);
}

/* ---- the set ---- */

struct share_set *share_set_new(share_online_fn online)
{
	struct share_set *s = xcalloc(1, sizeof(*s));

	s->online = online;
	s->tree = topic_tree_new();
	return s;
}

static void share_member_unlink_session(struct share_member *m)
{
	if (m->sprev != NULL)
		m->sprev->snext = m->snext;
	else
		*m->list = m->snext;
	if (m->snext != NULL)
		m->snext->sprev = m->sprev;
	m->snext = m->sprev = NULL;
}

void share_set_free(struct share_set *s)
{
	if (s == NULL)
		return;
	for (uint32_t i = 0; i < s->members.cap; i++) {
		while (s->members.slots[i] != NULL) {
			struct share_member *m = (struct share_member *)s->members.slots[i];

			s->members.slots[i] = m->link.next;
			share_member_unlink_session(m);
			free(m);
		}
	}
	for (uint32_t i = 0; i < s->groups.cap; i++) {
		while (s->groups.slots[i] != NULL) {
			struct share_group *g = (struct share_group *)s->groups.slots[i];

			s->groups.slots[i] = g->link.next;
			free(g->key);
			free(g);
		}
	}
	free(s->members.slots);
	free(s->groups.slots);
	topic_tree_free(s->tree);
	free(s->picks);
	free(s);
}

/* The key of sf's group, "GROUP/FILTER": contiguous in the parsed string. */
static size_t share_key(const struct topic_subfilter *sf, const char **key)
{
	*key = sf->group;
	return (size_t)(sf->filter + sf->filter_len - sf->group);
}

static struct share_group *share_group_find(const struct share_set *s, const char *key, size_t len,
					    uint32_t hv)
{
	for (struct share_hlink *l = share_htab_chain(&s->groups, hv); l; l = l->next) {
		struct share_group *g = (struct share_group *)l;

		if (l->hv == hv && g->key_len == len && memcmp(g->key, key, len) == 0)
			return g;
	}
	return NULL;
}

static struct share_member *share_member_find(const struct share_set *s,
					      const struct share_group *g, const void *session)
{
	uint32_t hv = share_pair_hash(g, session);

	for (struct share_hlink *l = share_htab_chain(&s->members, hv); l; l = l->next) {
		struct share_member *m = (struct share_member *)l;

		if (l->hv == hv && m->group == g && m->session == session)
			return m;
	}
	return NULL;
}

void share_join(struct share_set *s, const struct topic_subfilter *sf, void *session,
		struct share_member **list, uint8_t qos, uint32_t sub_id, bool persistent)
{
	const char *key;
	size_t klen = share_key(sf, &key);
	uint32_t hv = levelmap_hash(key, klen);
	struct share_group *g = share_group_find(s, key, klen, hv);
	struct share_member *m;

	if (g == NULL) {
		g = xcalloc(1, sizeof(*g));
		g->key = xstrndup(key, klen);
		g->key_len = klen;
		g->group_len = sf->group_len;
		g->link.hv = hv;
		share_htab_add(&s->groups, &g->link);
		topic_tree_insert(s->tree, g->key + g->group_len + 1, sf->filter_len, g, 0);
	}
	m = share_member_find(s, g, session);
	if (m != NULL) {
		m->qos = qos;
		m->sub_id = sub_id;
		return;
	}
	m = xcalloc(1, sizeof(*m));
	m->group = g;
	m->session = session;
	m->qos = qos;
	m->sub_id = sub_id;
	m->persistent = persistent;
	m->where = SHARE_IDLE;
	m->link.hv = share_pair_hash(g, session);
	share_htab_add(&s->members, &m->link);
	m->list = list;
	m->snext = *list;
	if (*list != NULL)
		(*list)->sprev = m;
	*list = m;
	g->members++;
	share_member_place(m, s->online(session));
}

bool share_leave(struct share_set *s, const struct topic_subfilter *sf, void *session)
{
	const char *key;
	size_t klen = share_key(sf, &key);
	struct share_group *g = share_group_find(s, key, klen, levelmap_hash(key, klen));
	struct share_member *m = g ? share_member_find(s, g, session) : NULL;
	struct share_ring *r;

	if (m == NULL)
		return false;
	r = share_member_ring(m);
	if (r != NULL)
		share_ring_del(r, m);
	share_member_unlink_session(m);
	share_htab_del(&s->members, &m->link);
	free(m);
	if (--g->members == 0) {
		topic_tree_remove(s->tree, g->key + g->group_len + 1, g->key_len - g->group_len - 1,
				  g);
		share_htab_del(&s->groups, &g->link);
		free(g->key);
		free(g);
	}
	return true;
}

void share_session_online(struct share_member *list, bool online)
{
	for (struct share_member *m = list; m != NULL; m = m->snext)
		share_member_place(m, online);
}

/* The member of g that gets the next message, or NULL. A member the
 * online ring holds but whose session is offline (its connection ended
 * before it was announced) moves aside on the way: that happens once per
 * disconnection, so the choice stays O(1) amortised. */
static struct share_member *share_choose(struct share_set *s, struct share_group *g)
{
	while (g->online.cur != NULL) {
		struct share_member *m = share_ring_take(&g->online);

		if (s->online(m->session))
			return m;
		share_member_place(m, false);
	}
	return g->offline.cur != NULL ? share_ring_take(&g->offline) : NULL;
}

static void share_match_cb(void *arg, void *subscriber, uint8_t qos)
{
	struct share_set *s = arg;
	struct share_member *m = share_choose(s, subscriber);

	(void)qos;
	if (m == NULL)
		return;
	if (s->npicks == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->picks = xrealloc(s->picks, s->cap * sizeof(*s->picks));
	}
	s->picks[s->npicks].session = m->session;
	s->picks[s->npicks].qos = m->qos;
	s->picks[s->npicks].sub_id = m->sub_id;
	s->npicks++;
}

size_t share_route(struct share_set *s, const char *topic, size_t len,
		   const struct share_pick **picks)
{
	s->npicks = 0;
	if (s->groups.count > 0)
		topic_tree_match(s->tree, topic, len, share_match_cb, s);
	*picks = s->picks;
	return s->npicks;
}

bool share_pick_group(struct share_set *s, const char *key, size_t len, struct share_pick *out)
{
	struct share_group *g = share_group_find(s, key, len, levelmap_hash(key, len));
	struct share_member *m = g ? share_choose(s, g) : NULL;

	if (m == NULL)
		return false;
	out->session = m->session;
	out->qos = m->qos;
	out->sub_id = m->sub_id;
	return true;
}

bool share_pick_group_room(struct share_set *s, const char *key, size_t len, share_room_fn room,
			   struct share_pick *out)
{
	struct share_group *g = share_group_find(s, key, len, levelmap_hash(key, len));

	if (g == NULL)
		return false;
	/* Each online member once at most, in turn from the cursor. */
	for (uint32_t tries = g->online.count; tries > 0 && g->online.cur != NULL; tries--) {
		struct share_member *m = share_ring_take(&g->online);

		if (!s->online(m->session)) {
			share_member_place(m, false);
			continue;
		}
		if (room(m->session) == 0)
			continue;
		out->session = m->session;
		out->qos = m->qos;
		out->sub_id = m->sub_id;
		return true;
	}
	return false;
}

uint64_t share_group_room(const struct share_set *s, const char *key, size_t len,
			  share_room_fn room)
{
	const struct share_group *g = share_group_find(s, key, len, levelmap_hash(key, len));
	const struct share_member *m = g ? g->online.cur : NULL;
	uint64_t sum = 0;

	for (uint32_t i = 0; m != NULL && i < g->online.count; i++, m = m->rnext)
		if (s->online(m->session))
			sum += room(m->session);
	return sum;
}

bool share_group_online(const struct share_set *s, const char *key, size_t len)
{
	const struct share_group *g = share_group_find(s, key, len, levelmap_hash(key, len));

	return g != NULL && g->online.count > 0;
}

void share_foreach_group(const struct share_set *s, share_group_fn fn, void *arg)
{
	for (uint32_t i = 0; i < s->groups.cap; i++)
		for (struct share_hlink *l = s->groups.slots[i]; l; l = l->next) {
			const struct share_group *g = (const struct share_group *)l;

			fn(arg, g->key, g->key_len, g->group_len, g->online.count > 0);
		}
}

size_t share_group_count(const struct share_set *s)
{
	return s->groups.count;
}

size_t share_member_count(const struct share_set *s)
{
	return s->members.count;
}
