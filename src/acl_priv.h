/*
 * What acl.c and acl_index.c share and nobody else sees: the loaded ACL
 * (blocks, compiled patterns, struct acl), a client and a filter as a check
 * sees them, and the entry points between the two files.
 */
#ifndef CAIRN_ACL_PRIV_H
#define CAIRN_ACL_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "acl.h"
#include "levelmap.h"

/* A node of a subscribe index (acl_index.c). */
struct acl_inode;

/* A rule's access bits: enum acl_access, or this bit alone for `deny`. */
#define ACL_DENY_BIT 4

/* A rule of a user block (or the anonymous block), as written. */
struct acl_rule {
	char *filter;
	size_t len;
	uint8_t access;
};

/*
 * The rules of one `user` block. Blocks are found by username in a levelmap
 * table, so the header comes first. The trie answers the per-message check;
 * the array keeps the rules in file order for the subscribe decision.
 */
struct acl_block {
	struct levelmap_node lm;
	struct topic_tree *tree;
	struct acl_rule *rules;
	size_t nrules;
	size_t caprules;
	/* The subscribe indexes of its read rules and its deny rules (NULL
	 * while there are none), by index in rules. */
	struct acl_inode *sgrants, *sdenies;
};

enum acl_piece_kind {
	ACL_PIECE_TEXT,
	ACL_PIECE_CLIENT, /* %c */
	ACL_PIECE_USER,   /* %u */
};

/* A run of a pattern level: literal bytes of the filter, or a placeholder. */
struct acl_piece {
	uint8_t kind;
	uint32_t off; /* ACL_PIECE_TEXT: where the bytes start in the filter */
	uint32_t len;
};

/*
 * One level of a compiled pattern. Substituted values never contain '/',
 * so a pattern has the same levels before and after substitution, and a
 * level's length after substitution is fixed + nc * |client id| +
 * nu * |username|: most mismatching levels are rejected on length alone.
 */
struct acl_plevel {
	uint32_t first; /* index of its first piece */
	uint32_t npieces;
	uint32_t fixed; /* literal bytes */
	uint16_t nc, nu;
	char wild; /* '+', '#' or 0 */
};

struct acl_pattern {
	char *filter;
	size_t len;
	uint8_t access;
	bool uses_c, uses_u;
	uint8_t lead; /* the kind of the very first piece */
	struct acl_plevel *levels;
	uint32_t nlevels;
	struct acl_piece *pieces;
	uint32_t npieces;
};

struct acl {
	struct acl_block *users; /* root of the username table; holds no rules */
	struct acl_block *anon;  /* rules before the first `user` line */
	struct acl_pattern *patterns;
	size_t npatterns;
	size_t cappatterns;
	/* The granting patterns indexed by shape (see acl_index_patterns()),
	 * and the few that cannot be: checked one by one. */
	struct topic_tree *pgrants;
	size_t *odd;
	size_t nodd;
	size_t *denies; /* the denying patterns, checked one by one */
	size_t ndenies;
	/* The subscribe indexes of the read patterns, one per use of %c
	 * (bit 0) and %u (bit 1), so that a client whose id or username
	 * cannot be substituted skips every pattern that needs it at once;
	 * of the deny patterns; and what makes some deny pattern unusable for
	 * a client (ACL_NEEDS_*). Rules by index in patterns; NULL while
	 * there are none. */
	struct acl_inode *sgrants[4], *sdenies;
	uint8_t deny_needs;
	size_t nrules;
};

/* The client a check is for, measured once per check. */
struct acl_who {
	const char *cid;
	size_t clen;
	const char *user; /* NULL: anonymous */
	size_t ulen;
	bool c_ok, u_ok; /* non-empty and free of '+', '#' and '/' */
};

/* A level of a filter: bytes and length, not NUL-terminated. */
struct acl_span {
	const char *s;
	size_t n;
};

/* One subscribe decision: the client, its block and the work counters. */
struct acl_walk {
	const struct acl *a;
	const struct acl_who *w;
	const struct acl_block *b; /* NULL: a username without a block */
	struct acl_sub_cost *cost;
	const uint32_t *fh; /* the hash of each level of the filter */
	bool any_denies;    /* some deny rule may apply to the client */
};

/* Is the level sp the one character c (a wildcard, with '+' or '#')? */
static inline bool acl_span_is(const struct acl_span *sp, char c)
{
	return sp->n == 1 && sp->s[0] == c;
}

/* Does the substituted level l equal s[0..n)? Here, inline, because both
 * files ask it per level on every check: the pattern match in acl.c and
 * the template walk in acl_index.c. */
static inline bool acl_level_equal(const struct acl_pattern *p, const struct acl_plevel *l,
				   const struct acl_who *w, const char *s, size_t n)
{
	if ((size_t)l->fixed + l->nc * w->clen + l->nu * w->ulen != n)
		return false;
	for (uint32_t k = 0; k < l->npieces; k++) {
		const struct acl_piece *pc = &p->pieces[l->first + k];
		const char *v;
		size_t vn;

		if (pc->kind == ACL_PIECE_TEXT) {
			v = p->filter + pc->off;
			vn = pc->len;
		} else if (pc->kind == ACL_PIECE_CLIENT) {
			v = w->cid;
			vn = w->clen;
		} else {
			v = w->user;
			vn = w->ulen;
		}
		if (memcmp(s, v, vn) != 0)
			return false;
		s += vn;
	}
	return true;
}

/* ---- acl_index.c: the subscribe indexes ---- */

/* File rule number id in the index at *root (made if NULL); p is the
 * compiled pattern for a pattern rule, NULL for a `topic` rule. */
void acl_index_add(struct acl_inode **root, const char *filter, size_t len, size_t id,
		   const struct acl_pattern *p);
/* Build the descendant (with gc) and template indexes of the index at root
 * once all the rules of a are in. */
void acl_index_finish(const struct acl *a, struct acl_inode *root, bool gc);
void acl_index_free(struct acl_inode *root);
/* Is the filter x[0..nx) wholly inside one deny rule for the client? */
bool acl_denied(const struct acl_walk *k, const struct acl_span *x, int nx);
/* Does some read rule filed in the index at root (patterns: of patterns)
 * leave part of the filter f[0..nf) readable? */
bool acl_granted_in(const struct acl_walk *k, struct acl_inode *root, bool patterns,
		    const struct acl_span *f, int nf);
/* Does a deny pattern match the topic t[0..nt) (a->sdenies not NULL)? */
bool acl_topic_denied(const struct acl *a, const struct acl_who *w, const struct acl_span *t,
		      int nt, struct acl_sub_cost *cost);

/* ---- acl.c: each rule a walk reaches, decided for real ---- */

/* Is x[0..nx) wholly inside deny rule id (a block's or a pattern)? */
bool acl_deny_contains(const struct acl_walk *k, bool patterns, uint32_t id,
		       const struct acl_span *x, int nx);
/* Does read rule id (a block's or a pattern) leave part of f readable? */
bool acl_grant_reaches(const struct acl_walk *k, bool patterns, uint32_t id,
		       const struct acl_span *f, int nf);

#endif
