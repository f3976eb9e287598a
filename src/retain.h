/*
 * Retained messages: one value per topic name, found by filter. The values
 * are opaque pointers owned by the caller.
 */
#ifndef CAIRN_RETAIN_H
#define CAIRN_RETAIN_H

#include <stddef.h>

struct retain_tree;

struct retain_tree *retain_tree_new(void);
/* Frees the tree; values are not touched (drain them with retain_tree_foreach first). */
void retain_tree_free(struct retain_tree *t);

/* Set the value of topic (a valid name). value NULL removes it. Returns the
 * previous value (NULL if none) for the caller to release. */
void *retain_tree_set(struct retain_tree *t, const char *topic, size_t len, void *value);

/* Value stored for exactly this topic, or NULL. */
void *retain_tree_get(struct retain_tree *t, const char *topic, size_t len);

typedef void (*retain_fn)(void *arg, void *value);

/* Call fn for every retained value whose topic matches the (valid) filter,
 * honouring the '$' rule of topic_matches(). No recursion per level. */
void retain_tree_match(struct retain_tree *t, const char *filter, size_t len, retain_fn fn,
		       void *arg);

/* Call fn for every value. */
void retain_tree_foreach(struct retain_tree *t, retain_fn fn, void *arg);

size_t retain_tree_count(const struct retain_tree *t);

#endif
