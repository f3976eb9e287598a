/*
 * Topic names and filters: validation, matching, and the subscription
 * trie. Matching walks the trie with an explicit stack; nothing recurses
 * per topic level.
 */
#ifndef CAIRN_TOPIC_H
#define CAIRN_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOPIC_MAX_LEN    65535
#define TOPIC_MAX_LEVELS 200 /* levels (separators + 1) in a name or filter */

enum topic_err {
	TOPIC_OK = 0,
	TOPIC_EINVAL = -1, /* not a valid name / filter */
	TOPIC_ENOENT = -2, /* no such subscription */
	TOPIC_ENOMEM = -3
};

/* A topic name for PUBLISH: 1..65535 bytes, valid UTF-8, no '+' or '#',
 * at most TOPIC_MAX_LEVELS levels. Returns TOPIC_OK or TOPIC_EINVAL. */
int topic_name_validate(const char *s, size_t len);

/* True when s has at most TOPIC_MAX_LEVELS levels: the one rule of
 * topic_name_validate() a decoded PUBLISH topic has not been checked for. */
bool topic_levels_ok(const char *s, size_t len);

/* A topic filter: as a name, but '+' must fill a whole level and '#' must
 * be alone in the last level. Returns TOPIC_OK or TOPIC_EINVAL. */
int topic_filter_validate(const char *s, size_t len);

/* The prefix that makes a SUBSCRIBE filter a shared subscription. */
#define TOPIC_SHARE_PREFIX     "$share/"
#define TOPIC_SHARE_PREFIX_LEN 7

/* True when filter s starts with "$share/": a shared subscription, valid
 * or not (topic_subfilter_parse() tells). */
bool topic_is_shared(const char *s, size_t len);

/*
 * What one SUBSCRIBE (or stored) filter asks for. A shared subscription
 * "$share/GROUP/FILTER" [MQTT5-4.8.2-1, 4.8.2-2] names its group and the
 * filter its messages are matched against; a plain filter has no group and
 * is its own filter. The pointers point into the string parsed.
 */
struct topic_subfilter {
	const char *group; /* NULL: not shared */
	size_t group_len;
	const char *filter; /* matched against topics */
	size_t filter_len;
};

/*
 * Validate a subscription filter and split a shared one. A filter that
 * starts with "$share/" must go on with a group of at least one character
 * holding no '/', '+' or '#' (and no NUL), then '/', then a valid filter
 * (which may hold wildcards); anything else starting so is invalid, not a
 * plain filter. A filter not starting so is checked by
 * topic_filter_validate(). "$share" alone is a plain filter.
 * @param out  filled on success; may be NULL
 * @return TOPIC_OK or TOPIC_EINVAL
 */
int topic_subfilter_parse(const char *s, size_t len, struct topic_subfilter *out);

/* Does the (valid) filter match the (valid) topic name? A filter whose
 * first level is a wildcard never matches a topic starting with '$'. */
bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen);

/* The subscription trie: maps (filter, subscriber) to a QoS. Subscribers
 * are opaque pointers owned by the caller. */
struct topic_tree;

struct topic_tree *topic_tree_new(void);
void topic_tree_free(struct topic_tree *t);

/* Add or replace the subscription of subscriber to filter (validated by
 * the caller). Returns 1 if it was new, 0 if an existing one was replaced. */
int topic_tree_insert(struct topic_tree *t, const char *filter, size_t len, void *subscriber,
		      uint8_t qos);

/* Remove it. Returns TOPIC_OK or TOPIC_ENOENT. Empty trie nodes are freed. */
int topic_tree_remove(struct topic_tree *t, const char *filter, size_t len, void *subscriber);

/* Called once per matching (subscription, subscriber); one subscriber may
 * be reported more than once when several of its filters match. */
typedef void (*topic_match_fn)(void *arg, void *subscriber, uint8_t qos);

/* Report every subscription whose filter matches the topic name. */
void topic_tree_match(struct topic_tree *t, const char *topic, size_t len, topic_match_fn fn,
		      void *arg);

/* Number of (filter, subscriber) entries. */
size_t topic_tree_count(const struct topic_tree *t);

#endif
