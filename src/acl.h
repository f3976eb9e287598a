/*
 * The ACL engine: Mosquitto's acl_file format loaded into an immutable
 * object that answers "may this client read or write this topic?" and "may
 * this SUBSCRIBE filter be granted?". Pure: no I/O after acl_load(), no
 * logging, no globals; the core decides what to do with an answer.
 *
 * Caveats:
 * - An ACL object is never modified after it is loaded. A reload loads a new
 *   one and swaps the pointer only when the load succeeded; the old one stays
 *   in force otherwise. Nothing here ever fails open: with an ACL loaded,
 *   whatever no rule grants is denied, and an empty or comment-only file
 *   denies everything.
 * - Rules written before the first `user` line apply to anonymous clients
 *   only (no username in CONNECT), as in Mosquitto. A client with a username
 *   gets the rules of its `user` block (none if the file has no such block)
 *   and the `pattern` rules. `pattern` rules apply to every client, wherever
 *   they appear in the file.
 * - `deny` wins over any grant, wherever the two come from (the client's
 *   block or a pattern) and in whatever order they are written. This is
 *   stricter than Mosquitto, where a user's own grant is found before a
 *   pattern's deny.
 * - A rule whose first level is `+` or `#` never matches a topic starting
 *   with `$` (the MQTT filter rule, also for deny rules): `$SYS/...` is
 *   readable only where a rule names a `$` level.
 * - Substitution of `%c` (client id) and `%u` (username) in `pattern` rules
 *   is literal and never widens a rule. A value is unusable when it is
 *   empty, contains `+`, `#` or `/`, or starts with `$` where the
 *   substitution begins the rule. A pattern that needs an unusable value
 *   matches nothing when it grants and everything when it denies (fail
 *   closed). An anonymous client has no username: every pattern that uses
 *   `%u` is skipped for it, grant or deny. Clients are not refused for such
 *   ids; they simply gain nothing from those patterns.
 *
 * Every function is called from the event loop's thread; an ACL object is
 * read-only after acl_load() and could be shared between threads.
 */
#ifndef CAIRN_ACL_H
#define CAIRN_ACL_H

#include <stdbool.h>
#include <stddef.h>

enum acl_err {
	ACL_OK = 0,
	ACL_EIO = -1,    /* the file could not be opened or read */
	ACL_EPARSE = -2, /* a line is not valid ACL syntax */
};

/* What a client does with a topic. */
enum acl_access {
	ACL_READ = 1,  /* a message delivered to the client */
	ACL_WRITE = 2, /* a PUBLISH from the client, or its will */
};

struct acl;
struct acl_view;
struct acl_sub_cost;

/*
 * Load and check the ACL file at path. Parsing is strict: the first bad
 * line fails the whole load (an unknown keyword, a missing or unknown
 * access type, an invalid topic filter, a `user` line without a name,
 * invalid UTF-8 or a NUL byte).
 * @param out  set to the new ACL on success (release with acl_free());
 *             untouched on failure
 * @param err  on failure, a NUL-terminated message: "FILE:LINE: reason"
 *             for ACL_EPARSE, "FILE: strerror" for ACL_EIO; may be NULL
 * @return ACL_OK, ACL_EIO or ACL_EPARSE
 */
int acl_load(const char *path, struct acl **out, char *err, size_t errlen);

/*
 * As acl_load(), from len bytes of text in memory; name stands for the
 * file name in messages. Used by acl_load() itself, the tests and fuzzing.
 * @return ACL_OK or ACL_EPARSE
 */
int acl_parse(const char *name, const char *text, size_t len, struct acl **out, char *err,
	      size_t errlen);

/* Release an ACL; NULL is a no-op. */
void acl_free(struct acl *a);

/* The number of topic and pattern rules loaded (for a log line). */
size_t acl_rule_count(const struct acl *a);

/*
 * May the client read (receive) or write (publish) topic? True only when
 * some rule that applies to the client grants that access and no deny rule
 * that applies to it matches. This is the per-message check: it costs a
 * hash lookup of the username, a walk of that user's rule trie, of the
 * index of deny patterns (with the client's values compared in place, so
 * only the branches that match the topic are taken) and of the trie of
 * granting patterns: the topic's depth times the rules that match it,
 * whatever the number of rules (about 50-160 ns with 1,000 rules or with
 * 5,000 deny patterns). Levels with %c or %u are found by their longest
 * literal run, so N patterns that differ only in the text around a
 * placeholder (`a1%c/x`, `a2%c/x`, ...) cost a hash probe per distinct
 * placeholder shape, not N comparisons. It allocates nothing unless a
 * topic meets more than 32 branches of deny patterns at once. A NULL ACL
 * denies.
 * @param client_id  NUL-terminated; the id the broker uses for the session
 *                   (the assigned one for an empty CONNECT id)
 * @param username   NUL-terminated, or NULL for an anonymous client
 * @param topic      a valid topic name (no wildcards), topic_len bytes
 */
bool acl_check(const struct acl *a, const char *client_id, const char *username, const char *topic,
	       size_t topic_len, enum acl_access access);

/*
 * As acl_check(), adding the index nodes its deny patterns' walk visited
 * to cost->nodes and the levels with %c or %u it compared to cost->tmpls
 * (cost: zeroed once by the caller; may be NULL).
 */
bool acl_check_counted(const struct acl *a, const char *client_id, const char *username,
		       const char *topic, size_t topic_len, enum acl_access access,
		       struct acl_sub_cost *cost);

/*
 * May a SUBSCRIBE to filter be granted (true) or must it get 0x80 (false)?
 * True when the filter intersects the topics of some rule granting the
 * client read access and that intersection is not wholly inside a single
 * deny rule that applies to the client. A grant is conservative: topics of
 * a granted filter may still be denied, so every delivery on it must go
 * through acl_check(). A refusal is exact: a refused filter can never
 * match a topic the client may read. Not on the per-message path; may
 * allocate (a pattern expanded for the client, freed before it returns).
 *
 * Cost: nothing is gathered or expanded per call. The rules are indexed at
 * load by level, so a filter visits only the rules it can meet: a filter
 * of literal levels costs a few hash probes per level and a comparison
 * with each rule that matches it, whatever the number of rules. A `+` or
 * `#` in the filter visits the rules it can meet until one grants, and
 * none of those a single deny wholly covers; the children of a level are
 * taken one at a time, so the first that grants ends the walk. A run of
 * up to two `+` followed by a literal level (`+/L`, `+/+/L`), or of up to
 * three ending the filter, under a level with many literal children goes
 * through a descendant index to the rules that can meet the level after
 * the run, not through every child. What remains linear: a filter that
 * meets N grants each cut by a deny of its own (2N rules written that
 * way), N comparisons; a `+` whose run is longer, or followed by `#`, or
 * whose next levels N branches meet before a mismatch (`+/L/+/M` against
 * N rules `x/L/y/z`), over N children when nothing below them grants;
 * and N levels of placeholders alone (`%c`, `%u`, `%c%u`, ...) at one
 * level, which have no literal run to be found by.
 * @param filter  a valid topic filter (topic_filter_validate()), len bytes
 */
bool acl_may_subscribe(const struct acl *a, const char *client_id, const char *username,
		       const char *filter, size_t len);

/* The work of subscribe decisions, counted for tests: it does not depend
 * on the number of rules except where a filter meets that many of them. */
struct acl_sub_cost {
	size_t nodes;  /* index nodes visited */
	size_t grants; /* read rules intersected with a filter */
	size_t denies; /* deny rules compared with an intersection */
	size_t reused; /* decisions a view remembered (acl_view_may_subscribe()) */
	size_t tmpls;  /* levels with %c or %u compared with a level */
};

/*
 * As acl_may_subscribe(), adding the work done to *cost (which the caller
 * zeroes once; may be NULL).
 */
bool acl_may_subscribe_counted(const struct acl *a, const char *client_id, const char *username,
			       const char *filter, size_t len, struct acl_sub_cost *cost);

/*
 * The subscribe decisions of one client for one SUBSCRIBE packet: what they
 * need of the client (its block, whether a deny pattern refuses it
 * everything) is found once, and each decision is remembered by filter,
 * so a packet that repeats a filter pays for it once. Decisions are those
 * of acl_may_subscribe().
 * @param a          NULL gives NULL, which refuses every filter
 * @param client_id  borrowed, NUL-terminated; must outlive the view
 * @param username   borrowed, NUL-terminated or NULL; must outlive the view
 * @return a view to release with acl_view_free() before a is freed
 */
struct acl_view *acl_view_new(const struct acl *a, const char *client_id, const char *username);

/* Release a view; NULL is a no-op. */
void acl_view_free(struct acl_view *v);

/*
 * acl_may_subscribe() for the view's client, remembered: at most 65,536
 * filters are kept (copied), then decisions are made without keeping them.
 * @param cost  work added to it, as acl_may_subscribe_counted(); may be NULL
 */
bool acl_view_may_subscribe(struct acl_view *v, const char *filter, size_t len,
			    struct acl_sub_cost *cost);

#endif
