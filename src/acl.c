/*
 * The ACL engine: parses Mosquitto's acl_file syntax into per-user rule
 * tries and a list of compiled `pattern` rules, answers the per-message
 * read/write check without allocating, and decides SUBSCRIBE filters by
 * intersecting them with the rules. See acl.h for the semantics.
 */
#include "acl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "levelmap.h"
#include "topic.h"
#include "util.h"

/* A rule's access bits: enum acl_access, or this bit alone for `deny`. */
#define ACL_DENY_BIT 4

/* A rule of a user block (or the anonymous block), as written. */
struct acl_rule {
	char *filter;
	size_t len;
	uint8_t access;
};

/*
 * A node of a subscribe index: the filters of a set of rules in a trie by
 * level, walked with a SUBSCRIBE filter (or, for the denies, with the part
 * of it a grant reaches) to find the few rules that can matter to it.
 * Literal levels are children in the levelmap table; `+` and `#` have a
 * slot each; a pattern level with %c or %u is a template child, filed by
 * its text in the table of `tmpls` and compared with the client's values
 * substituted while walking, so one index serves every client.
 */
struct acl_inode {
	struct levelmap_node lm; /* first: the literal children by level bytes */
	struct acl_inode *plus;
	struct acl_inode *hash;  /* a leaf: the rules whose last level is '#' here */
	struct acl_inode *tmpls; /* holds the template children in its table */
	/* At the root: holds the literal children that start with '$', which
	 * a wildcard first level never meets, so a walk that takes every
	 * child of the root passes them over at once. */
	struct acl_inode *dollars;
	uint32_t depth;    /* levels above this node */
	uint32_t pat, lev; /* a template child: the pattern and level it stands for */
	uint32_t *ends;    /* the rules (indexes) whose last level is this node */
	uint32_t nends, capends;
	/* With many literal children: what lies below them, by level, so
	 * that a run of `+` in a filter skips the children that have nothing
	 * for the level after it (see struct acl_gc); else NULL. */
	struct acl_gc *gc;
	/* With many template children: those by their longest literal run
	 * (see struct acl_tindex); else NULL. */
	struct acl_tindex *tix;
	char kind; /* how it is reached: 0 a literal level, '+', '#' or 't' a template */
};

/* A list of index nodes, filed in a levelmap table by a level's text. */
struct acl_glist {
	struct levelmap_node lm;
	struct acl_inode **v;
	uint32_t n, cap;
};

/*
 * The descendant index of a node n, for a filter whose levels at n's level
 * and below are a run of `+`. P(j) is the set of nodes j levels below n
 * reached through literal levels only; level j-1 of the index describes
 * P(j): its nodes by level text (lits, from j = 2 on: P(1) is n's own
 * table), the `#`, `+` and template children of its nodes (templates by
 * text: one text is one level for the client, one test for all) and those
 * of its nodes where rules end. A run of r `+` followed by a literal level
 * L meets exactly: the `#` children of P(1)..P(r), the `+` and usable
 * template children of P(1)..P(r-1), the `+` children of P(r) and its
 * template children that are L for the client, and the nodes of P(r+1)
 * named L. The walk takes those lists instead of every child of every
 * child (and for a filter that ends with the run, the nodes of P(r) where
 * rules end). Each node is in the lists of at most ACL_GC_DEPTH ancestors.
 */
#define ACL_GC_DEPTH 3

struct acl_gclevel {
	struct acl_glist *lits;                   /* a holder: the nodes by level (NULL for P(1)) */
	struct acl_glist *tmpls;                  /* a holder: the template children by text */
	struct acl_glist *hashes, *pluses, *ends; /* lists (v only) */
};

struct acl_gc {
	struct acl_gclevel lv[ACL_GC_DEPTH];
};

/* A node gets a descendant index from this many literal children on, and
 * a template index from this many template children on. */
#define ACL_GC_MIN 8

/*
 * The template children of a node by their longest literal run: a
 * template level such as `a%c-17` is the level L of a topic or filter for
 * a client only if L holds the run "-17" at the offset the pieces before
 * it give (1 + the client id's length): so the templates are filed by
 * shape (the literal bytes and the %c and %u before the run, the run's
 * length) and, within a shape, by the run's text. A level then costs a
 * hash probe per shape and a comparison with each template whose run it
 * holds there, not one per template. Templates of placeholders alone
 * (`%c`, `%u%c`) are few and compared one by one.
 */
struct acl_tshape {
	uint32_t fixed;          /* literal bytes before the run */
	uint16_t nc, nu;         /* placeholders before the run */
	uint32_t len;            /* the run's length */
	struct acl_glist *texts; /* a holder: the templates by the run's text */
};

struct acl_tindex {
	struct acl_tshape *shapes;
	uint32_t nshapes;
	struct acl_glist *bare; /* placeholders only (v only) */
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

/* What the deny patterns need of a client: one that cannot be given makes
 * a deny pattern deny everything (acl_pattern_fit), and it is found from
 * these bits rather than by looking at every deny pattern again. */
#define ACL_NEEDS_C_ANON    0x01 /* a deny pattern uses %c but not %u */
#define ACL_NEEDS_C         0x02 /* a deny pattern uses %c */
#define ACL_NEEDS_U         0x04 /* a deny pattern uses %u */
#define ACL_NEEDS_LEAD_ANON 0x08 /* one starts with %c and does not use %u */
#define ACL_NEEDS_LEAD_C    0x10 /* one starts with %c */
#define ACL_NEEDS_LEAD_U    0x20 /* one starts with %u */

/* The client a check is for, measured once per check. */
struct acl_who {
	const char *cid;
	size_t clen;
	const char *user; /* NULL: anonymous */
	size_t ulen;
	bool c_ok, u_ok; /* non-empty and free of '+', '#' and '/' */
};

/* What a pattern is for one client. */
enum acl_fit {
	ACL_FIT_SKIP,     /* does not apply (%u for an anonymous client) */
	ACL_FIT_UNUSABLE, /* a hostile value: grants nothing, denies everything */
	ACL_FIT_OK,
};

/* A level of a filter: bytes and length, not NUL-terminated. */
struct acl_span {
	const char *s;
	size_t n;
};

/* ---- subscribe indexes ---- */

static struct acl_inode *acl_inode_new(struct acl_inode *parent, const char *seg, size_t len,
				       uint32_t hv)
{
	struct acl_inode *n =
	    levelmap_node_new(sizeof(*n), parent ? &parent->lm : NULL, seg, len, hv);

	n->depth = parent ? parent->depth + 1 : 0;
	return n;
}

static struct acl_glist *acl_glist_new(struct acl_glist *holder, const char *seg, size_t len,
				       uint32_t hv)
{
	return levelmap_node_new(sizeof(struct acl_glist), holder ? &holder->lm : NULL, seg, len,
				 hv);
}

static void acl_glist_push(struct acl_glist *l, struct acl_inode *n)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 2;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = n;
}

/* Add n to the list filed under its own level text in holder's table. */
static void acl_glist_file(struct acl_glist *holder, struct acl_inode *n)
{
	struct acl_glist *l =
	    (struct acl_glist *)levelmap_find(&holder->lm, n->lm.seg, n->lm.seglen, n->lm.hv);

	if (l == NULL) {
		l = acl_glist_new(holder, n->lm.seg, n->lm.seglen, n->lm.hv);
		levelmap_add(&holder->lm, &l->lm);
	}
	acl_glist_push(l, n);
}

static void acl_glist_free(struct levelmap_node *m, struct levelmap_vec *stack)
{
	struct acl_glist *l = (struct acl_glist *)m;

	(void)stack;
	free(l->v);
	levelmap_node_cleanup(&l->lm);
	free(l);
}

static void acl_gc_free(struct acl_gc *gc)
{
	if (gc == NULL)
		return;
	for (int j = 0; j < ACL_GC_DEPTH; j++) {
		struct acl_gclevel *lv = &gc->lv[j];

		if (lv->lits != NULL)
			levelmap_tree_free(&lv->lits->lm, acl_glist_free);
		levelmap_tree_free(&lv->tmpls->lm, acl_glist_free);
		acl_glist_free(&lv->hashes->lm, NULL);
		acl_glist_free(&lv->pluses->lm, NULL);
		acl_glist_free(&lv->ends->lm, NULL);
	}
	free(gc);
}

/* The descendant index of n (which has literal children). */
static struct acl_gc *acl_gc_build(struct acl_inode *n)
{
	struct acl_gc *gc = xcalloc(1, sizeof(*gc));
	struct levelmap_vec a, b, *cur = &a, *next = &b;

	levelmap_vec_init(&a);
	levelmap_vec_init(&b);
	levelmap_vec_push(cur, &n->lm);
	for (int j = 0; j < ACL_GC_DEPTH; j++) {
		struct acl_gclevel *lv = &gc->lv[j];

		/* cur holds P(j): its literal children make P(j + 1). */
		for (size_t x = 0; x < cur->n; x++)
			for (uint32_t y = 0; y < cur->v[x]->nslots; y++)
				if (cur->v[x]->slots[y] != NULL)
					levelmap_vec_push(next, cur->v[x]->slots[y]);
		levelmap_vec_swap(&cur, &next);
		if (j > 0)
			lv->lits = acl_glist_new(NULL, "", 0, 0);
		lv->tmpls = acl_glist_new(NULL, "", 0, 0);
		lv->hashes = acl_glist_new(NULL, "", 0, 0);
		lv->pluses = acl_glist_new(NULL, "", 0, 0);
		lv->ends = acl_glist_new(NULL, "", 0, 0);
		for (size_t x = 0; x < cur->n; x++) {
			struct acl_inode *c = (struct acl_inode *)cur->v[x];

			if (lv->lits != NULL)
				acl_glist_file(lv->lits, c);
			if (c->hash != NULL)
				acl_glist_push(lv->hashes, c->hash);
			if (c->plus != NULL)
				acl_glist_push(lv->pluses, c->plus);
			if (c->nends > 0)
				acl_glist_push(lv->ends, c);
			for (uint32_t y = 0; c->tmpls != NULL && y < c->tmpls->lm.nslots; y++)
				if (c->tmpls->lm.slots[y] != NULL)
					acl_glist_file(lv->tmpls,
						       (struct acl_inode *)c->tmpls->lm.slots[y]);
		}
	}
	levelmap_vec_cleanup(&a);
	levelmap_vec_cleanup(&b);
	return gc;
}

static void acl_tindex_free(struct acl_tindex *x)
{
	if (x == NULL)
		return;
	for (uint32_t i = 0; i < x->nshapes; i++)
		levelmap_tree_free(&x->shapes[i].texts->lm, acl_glist_free);
	free(x->shapes);
	acl_glist_free(&x->bare->lm, NULL);
	free(x);
}

/* Add template t to the list filed under key in holder's table. */
static void acl_glist_file_as(struct acl_glist *holder, const char *key, size_t len,
			      struct acl_inode *t)
{
	uint32_t hv = levelmap_hash(key, len);
	struct acl_glist *l = (struct acl_glist *)levelmap_find(&holder->lm, key, len, hv);

	if (l == NULL) {
		l = acl_glist_new(holder, key, len, hv);
		levelmap_add(&holder->lm, &l->lm);
	}
	acl_glist_push(l, t);
}

/* The template index of n's template children (patterns of a). */
static struct acl_tindex *acl_tindex_build(const struct acl *a, const struct acl_inode *n)
{
	struct acl_tindex *x = xcalloc(1, sizeof(*x));

	x->bare = acl_glist_new(NULL, "", 0, 0);
	for (uint32_t i = 0; i < n->tmpls->lm.nslots; i++) {
		struct acl_inode *t = (struct acl_inode *)n->tmpls->lm.slots[i];
		const struct acl_pattern *p;
		const struct acl_plevel *l;
		const struct acl_piece *run = NULL;
		struct acl_tshape sh = {0}, at = {0};
		uint32_t j;

		if (t == NULL)
			continue;
		p = &a->patterns[t->pat];
		l = &p->levels[t->lev];
		for (uint32_t k = 0; k < l->npieces; k++) {
			const struct acl_piece *pc = &p->pieces[l->first + k];

			if (pc->kind == ACL_PIECE_TEXT && (run == NULL || pc->len > run->len)) {
				run = pc;
				sh = at;
				sh.len = pc->len;
			}
			if (pc->kind == ACL_PIECE_TEXT)
				at.fixed += pc->len;
			else if (pc->kind == ACL_PIECE_CLIENT)
				at.nc++;
			else
				at.nu++;
		}
		if (run == NULL) {
			acl_glist_push(x->bare, t);
			continue;
		}
		for (j = 0; j < x->nshapes; j++)
			if (x->shapes[j].fixed == sh.fixed && x->shapes[j].nc == sh.nc &&
			    x->shapes[j].nu == sh.nu && x->shapes[j].len == sh.len)
				break;
		if (j == x->nshapes) {
			x->shapes = xrealloc(x->shapes, (x->nshapes + 1) * sizeof(*x->shapes));
			sh.texts = acl_glist_new(NULL, "", 0, 0);
			x->shapes[x->nshapes++] = sh;
		}
		acl_glist_file_as(x->shapes[j].texts, p->filter + run->off, run->len, t);
	}
	return x;
}

/*
 * Give every node of the index at root with at least ACL_GC_MIN literal
 * children its descendant index (with gc: only the read indexes need them,
 * a deny walk never takes every child), and every node with at least as
 * many template children its template index, once all the rules are in.
 */
static void acl_index_finish(const struct acl *a, struct acl_inode *root, bool gc)
{
	struct levelmap_vec st;

	if (root == NULL)
		return;
	levelmap_vec_init(&st);
	levelmap_vec_push(&st, &root->lm);
	while (st.n > 0) {
		struct acl_inode *n = (struct acl_inode *)st.v[--st.n];

		if (gc && n->lm.nchildren >= ACL_GC_MIN)
			n->gc = acl_gc_build(n);
		if (n->tmpls != NULL && n->tmpls->lm.nchildren >= ACL_GC_MIN)
			n->tix = acl_tindex_build(a, n);
		for (uint32_t i = 0; i < n->lm.nslots; i++)
			if (n->lm.slots[i] != NULL)
				levelmap_vec_push(&st, n->lm.slots[i]);
		if (n->plus != NULL)
			levelmap_vec_push(&st, &n->plus->lm);
		for (uint32_t i = 0; n->tmpls != NULL && i < n->tmpls->lm.nslots; i++)
			if (n->tmpls->lm.slots[i] != NULL)
				levelmap_vec_push(&st, n->tmpls->lm.slots[i]);
		for (uint32_t i = 0; n->dollars != NULL && i < n->dollars->lm.nslots; i++)
			if (n->dollars->lm.slots[i] != NULL)
				levelmap_vec_push(&st, n->dollars->lm.slots[i]);
	}
	levelmap_vec_cleanup(&st);
}

static void acl_inode_free(struct levelmap_node *m, struct levelmap_vec *stack)
{
	struct acl_inode *n = (struct acl_inode *)m;

	if (n->plus != NULL)
		levelmap_vec_push(stack, &n->plus->lm);
	if (n->hash != NULL)
		levelmap_vec_push(stack, &n->hash->lm);
	if (n->tmpls != NULL)
		levelmap_vec_push(stack, &n->tmpls->lm);
	if (n->dollars != NULL)
		levelmap_vec_push(stack, &n->dollars->lm);
	free(n->ends);
	acl_gc_free(n->gc);
	acl_tindex_free(n->tix);
	levelmap_node_cleanup(&n->lm);
	free(n);
}

static void acl_index_free(struct acl_inode *root)
{
	if (root != NULL)
		levelmap_tree_free(&root->lm, acl_inode_free);
}

/*
 * The child of n for one level of a rule, made if missing: kind is '+' or
 * '#' for a wildcard, 't' for a pattern level with a placeholder (filed by
 * its text, which fixes its pieces), 0 for literal bytes.
 */
static struct acl_inode *acl_inode_child(struct acl_inode *n, char kind, const char *seg,
					 size_t len)
{
	struct acl_inode *holder = n, *c;
	uint32_t hv;

	if (kind == '+' || kind == '#') {
		struct acl_inode **slot = kind == '+' ? &n->plus : &n->hash;

		if (*slot == NULL) {
			*slot = acl_inode_new(n, "", 0, 0);
			(*slot)->kind = kind;
		}
		return *slot;
	}
	if (kind == 't') {
		if (n->tmpls == NULL)
			n->tmpls = acl_inode_new(n, "", 0, 0);
		holder = n->tmpls;
	} else if (n->depth == 0 && len > 0 && seg[0] == '$') {
		if (n->dollars == NULL)
			n->dollars = acl_inode_new(n, "", 0, 0);
		holder = n->dollars;
	}
	hv = levelmap_hash(seg, len);
	c = (struct acl_inode *)levelmap_find(&holder->lm, seg, len, hv);
	if (c == NULL) {
		c = acl_inode_new(n, seg, len, hv);
		c->kind = kind;
		levelmap_add(&holder->lm, &c->lm);
	}
	return c;
}

/*
 * File rule number id, whose filter is filter[0..len), in the index at
 * *root (made if NULL). p is the compiled pattern when the rule is pattern
 * number id, NULL for a `topic` rule, whose `%c` is literal text.
 */
static void acl_index_add(struct acl_inode **root, const char *filter, size_t len, size_t id,
			  const struct acl_pattern *p)
{
	struct acl_inode *n;
	size_t i = 0;

	if (*root == NULL)
		*root = acl_inode_new(NULL, "", 0, 0);
	n = *root;
	for (uint32_t k = 0;; k++) {
		size_t e = levelmap_level_end(filter, len, i);
		char kind = 0;

		if (e - i == 1 && (filter[i] == '+' || filter[i] == '#'))
			kind = filter[i];
		else if (p != NULL && p->levels[k].nc + p->levels[k].nu > 0)
			kind = 't';
		n = acl_inode_child(n, kind, filter + i, e - i);
		if (kind == 't') {
			n->pat = (uint32_t)id;
			n->lev = k;
		}
		if (e == len)
			break;
		i = e + 1;
	}
	if (n->nends == n->capends) {
		n->capends = n->capends ? n->capends * 2 : 2;
		n->ends = xrealloc(n->ends, n->capends * sizeof(*n->ends));
	}
	n->ends[n->nends++] = (uint32_t)id;
}

/* ---- blocks and patterns ---- */

static struct acl_block *acl_block_new(struct acl_block *parent, const char *name, size_t len,
				       uint32_t hv)
{
	struct acl_block *b =
	    levelmap_node_new(sizeof(*b), parent ? &parent->lm : NULL, name, len, hv);

	b->tree = topic_tree_new();
	return b;
}

static void acl_block_free(struct levelmap_node *m, struct levelmap_vec *stack)
{
	struct acl_block *b = (struct acl_block *)m;

	(void)stack;
	for (size_t i = 0; i < b->nrules; i++)
		free(b->rules[i].filter);
	free(b->rules);
	topic_tree_free(b->tree);
	acl_index_free(b->sgrants);
	acl_index_free(b->sdenies);
	levelmap_node_cleanup(&b->lm);
	free(b);
}

static struct acl_block *acl_block_find(const struct acl *a, const char *name, size_t len)
{
	return (struct acl_block *)levelmap_find(&a->users->lm, name, len,
						 levelmap_hash(name, len));
}

/* The block of a `user` line; two blocks for one name are one block. */
static struct acl_block *acl_block_get(struct acl *a, const char *name, size_t len)
{
	struct acl_block *b = acl_block_find(a, name, len);

	if (b == NULL) {
		b = acl_block_new(a->users, name, len, levelmap_hash(name, len));
		levelmap_add(&a->users->lm, &b->lm);
	}
	return b;
}

static void acl_block_add(struct acl_block *b, const char *filter, size_t len, uint8_t access)
{
	struct acl_rule *r;

	if (b->nrules == b->caprules) {
		b->caprules = b->caprules ? b->caprules * 2 : 4;
		b->rules = xrealloc(b->rules, b->caprules * sizeof(*b->rules));
	}
	r = &b->rules[b->nrules++];
	r->filter = xstrndup(filter, len);
	r->len = len;
	r->access = access;
	/* The trie wants one identity per entry: the rule's index, never its
	 * address, which moves when the array grows. */
	topic_tree_insert(b->tree, filter, len, (void *)(uintptr_t)b->nrules, access);
	if (access & ACL_DENY_BIT)
		acl_index_add(&b->sdenies, filter, len, b->nrules - 1, NULL);
	else if (access & ACL_READ)
		acl_index_add(&b->sgrants, filter, len, b->nrules - 1, NULL);
}

static void acl_pattern_cleanup(struct acl_pattern *p)
{
	free(p->filter);
	free(p->levels);
	free(p->pieces);
}

static void acl_pattern_piece(struct acl_pattern *p, uint8_t kind, size_t off, size_t len)
{
	struct acl_plevel *l = &p->levels[p->nlevels - 1];
	struct acl_piece *pc;

	p->pieces = xrealloc(p->pieces, (p->npieces + 1) * sizeof(*p->pieces));
	pc = &p->pieces[p->npieces++];
	pc->kind = kind;
	pc->off = (uint32_t)off;
	pc->len = (uint32_t)len;
	l->npieces++;
	if (kind == ACL_PIECE_TEXT)
		l->fixed += (uint32_t)len;
	else if (kind == ACL_PIECE_CLIENT)
		l->nc++;
	else
		l->nu++;
	if (p->npieces == 1)
		p->lead = kind;
}

/*
 * Split a (valid) pattern filter into levels and each level into literal
 * runs and placeholders. A '%' not followed by 'c' or 'u' is literal, as in
 * Mosquitto.
 */
static void acl_pattern_compile(struct acl_pattern *p)
{
	size_t i = 0;

	for (;;) {
		size_t e = levelmap_level_end(p->filter, p->len, i);
		struct acl_plevel *l;
		size_t run = i;

		p->levels = xrealloc(p->levels, (p->nlevels + 1) * sizeof(*p->levels));
		l = &p->levels[p->nlevels++];
		memset(l, 0, sizeof(*l));
		l->first = p->npieces;
		if (e - i == 1 && (p->filter[i] == '+' || p->filter[i] == '#'))
			l->wild = p->filter[i];
		for (size_t k = i; l->wild == 0 && k + 1 < e; k++) {
			char c = p->filter[k + 1];

			if (p->filter[k] != '%' || (c != 'c' && c != 'u'))
				continue;
			if (k > run)
				acl_pattern_piece(p, ACL_PIECE_TEXT, run, k - run);
			acl_pattern_piece(p, c == 'c' ? ACL_PIECE_CLIENT : ACL_PIECE_USER, 0, 0);
			if (c == 'c')
				p->uses_c = true;
			else
				p->uses_u = true;
			run = k + 2;
			k++;
		}
		if (e > run || l->npieces == 0)
			acl_pattern_piece(p, ACL_PIECE_TEXT, run, e - run);
		if (e == p->len)
			break;
		i = e + 1;
	}
}

/* ---- parsing ---- */

/* Fill err with "NAME:LINE: reason". */
static int acl_fail(char *err, size_t errlen, const char *name, unsigned long line, const char *fmt,
		    ...)
{
	va_list ap;
	int n;

	if (err == NULL || errlen == 0)
		return ACL_EPARSE;
	n = snprintf(err, errlen, "%s:%lu: ", name, line);
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return ACL_EPARSE;
}

static bool acl_is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Advance *s past blanks. */
static void acl_skip_space(const char **s, const char *end)
{
	while (*s < end && acl_is_space(**s))
		(*s)++;
}

/* The word at *s (up to a blank or end); *s moves past it. */
static size_t acl_word(const char **s, const char *end, const char **word)
{
	const char *w = *s;

	while (*s < end && !acl_is_space(**s))
		(*s)++;
	*word = w;
	return (size_t)(*s - w);
}

static bool acl_word_is(const char *w, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* Quote at most this many bytes of a bad token in a message. */
#define ACL_QUOTE_MAX 64

/*
 * Parse the rest of a `topic` or `pattern` line: "[ACCESS] TOPIC", where
 * the access type is required when the topic contains a blank (the topic is
 * the rest of the line).
 */
static int acl_parse_rule(const char *s, const char *end, uint8_t *access, const char **topic,
			  size_t *tlen, const char **why, const char **tok, size_t *toklen)
{
	const char *w;
	size_t wn;

	acl_skip_space(&s, end);
	if (s == end) {
		*why = "missing topic";
		return -1;
	}
	wn = acl_word(&s, end, &w);
	acl_skip_space(&s, end);
	if (s == end) {
		*access = ACL_READ | ACL_WRITE;
		*topic = w;
		*tlen = wn;
	} else {
		if (acl_word_is(w, wn, "read"))
			*access = ACL_READ;
		else if (acl_word_is(w, wn, "write"))
			*access = ACL_WRITE;
		else if (acl_word_is(w, wn, "readwrite"))
			*access = ACL_READ | ACL_WRITE;
		else if (acl_word_is(w, wn, "deny"))
			*access = ACL_DENY_BIT;
		else {
			*why = "unknown access type";
			*tok = w;
			*toklen = wn;
			return -1;
		}
		*topic = s;
		*tlen = (size_t)(end - s);
	}
	if (topic_filter_validate(*topic, *tlen) != TOPIC_OK) {
		*why = "invalid topic filter";
		*tok = *topic;
		*toklen = *tlen;
		return -1;
	}
	return 0;
}

static struct acl *acl_new(void)
{
	struct acl *a = xcalloc(1, sizeof(*a));

	a->users = acl_block_new(NULL, "", 0, 0);
	a->anon = acl_block_new(NULL, "", 0, 0);
	return a;
}

/* Parse one line (without its newline) into a; cur is the block that
 * `topic` rules go to. */
static int acl_parse_line(struct acl *a, struct acl_block **cur, const char *s, const char *end,
			  const char **why, const char **tok, size_t *toklen)
{
	const char *kw, *topic;
	struct acl_pattern *p;
	size_t kwn, tlen;
	uint8_t access;

	if (memchr(s, '\0', (size_t)(end - s)) != NULL) {
		*why = "NUL byte in line";
		return -1;
	}
	while (end > s && (acl_is_space(end[-1]) || end[-1] == '\r'))
		end--;
	acl_skip_space(&s, end);
	if (s == end || *s == '#')
		return 0;
	if (!codec_utf8_valid(s, (size_t)(end - s))) {
		*why = "invalid UTF-8";
		return -1;
	}
	kwn = acl_word(&s, end, &kw);
	if (acl_word_is(kw, kwn, "user")) {
		acl_skip_space(&s, end);
		if (s == end) {
			*why = "user without a name";
			return -1;
		}
		if ((size_t)(end - s) > TOPIC_MAX_LEN) {
			*why = "user name longer than 65535 bytes";
			return -1;
		}
		*cur = acl_block_get(a, s, (size_t)(end - s));
		return 0;
	}
	if (!acl_word_is(kw, kwn, "topic") && !acl_word_is(kw, kwn, "pattern")) {
		*why = "unknown keyword";
		*tok = kw;
		*toklen = kwn;
		return -1;
	}
	if (acl_parse_rule(s, end, &access, &topic, &tlen, why, tok, toklen) != 0)
		return -1;
	a->nrules++;
	if (kw[0] == 't') {
		acl_block_add(*cur, topic, tlen, access);
		return 0;
	}
	if (a->npatterns == a->cappatterns) {
		a->cappatterns = a->cappatterns ? a->cappatterns * 2 : 4;
		a->patterns = xrealloc(a->patterns, a->cappatterns * sizeof(*a->patterns));
	}
	p = &a->patterns[a->npatterns++];
	memset(p, 0, sizeof(*p));
	p->filter = xstrndup(topic, tlen);
	p->len = tlen;
	p->access = access;
	acl_pattern_compile(p);
	return 0;
}

/* Note what deny pattern p needs of a client (ACL_NEEDS_*). */
static void acl_note_needs(struct acl *a, const struct acl_pattern *p)
{
	if (p->uses_c)
		a->deny_needs |= ACL_NEEDS_C | (p->uses_u ? 0 : ACL_NEEDS_C_ANON);
	if (p->uses_u)
		a->deny_needs |= ACL_NEEDS_U;
	if (p->lead == ACL_PIECE_CLIENT)
		a->deny_needs |= ACL_NEEDS_LEAD_C | (p->uses_u ? 0 : ACL_NEEDS_LEAD_ANON);
	if (p->lead == ACL_PIECE_USER)
		a->deny_needs |= ACL_NEEDS_LEAD_U;
}

/*
 * Index the granting patterns so that a check visits only those that can
 * match its topic. A pattern is filed in a trie under its shape: the
 * pattern with every level that holds a placeholder replaced by '+'. A
 * substituted value never contains '/', so such a level matches exactly one
 * topic level and the shape matches a superset of the pattern's topics;
 * each candidate is then matched for real. One case cannot be shaped: a
 * first level with a placeholder that starts with a literal '$' (`$%c/x`),
 * which a leading '+' would never let meet a '$' topic; those few are kept
 * apart. Deny patterns are indexed by pattern level rather than shape
 * (acl_index_add()), in the index the subscribe decision walks too: a
 * hostile value makes a deny pattern deny everything, whatever the topic,
 * which the bits noted here answer for a client at once (acl_denies_all()),
 * and otherwise a check walks the index with the topic
 * (acl_topic_denied()). The subscribe decision also gets indexes of the
 * read patterns by level, one per use of %c and %u.
 */
static void acl_index_patterns(struct acl *a)
{
	a->pgrants = topic_tree_new();
	for (size_t i = 0; i < a->npatterns; i++) {
		const struct acl_pattern *p = &a->patterns[i];
		const struct acl_plevel *l0 = &p->levels[0];
		char *shape, *o;

		if (p->access & ACL_DENY_BIT) {
			a->denies = xrealloc(a->denies, (a->ndenies + 1) * sizeof(*a->denies));
			a->denies[a->ndenies++] = i;
			acl_index_add(&a->sdenies, p->filter, p->len, i, p);
			acl_note_needs(a, p);
			continue;
		}
		if (p->access & ACL_READ)
			acl_index_add(&a->sgrants[p->uses_c | p->uses_u << 1], p->filter, p->len, i,
				      p);
		if (l0->nc + l0->nu > 0 && p->pieces[l0->first].kind == ACL_PIECE_TEXT &&
		    p->filter[p->pieces[l0->first].off] == '$') {
			a->odd = xrealloc(a->odd, (a->nodd + 1) * sizeof(*a->odd));
			a->odd[a->nodd++] = i;
			continue;
		}
		o = shape = xmalloc(p->len + 1);
		for (uint32_t k = 0; k < p->nlevels; k++) {
			const struct acl_plevel *l = &p->levels[k];

			if (k > 0)
				*o++ = '/';
			if (l->nc + l->nu > 0) {
				*o++ = '+';
				continue;
			}
			/* A level without placeholders is one text piece. */
			memcpy(o, p->filter + p->pieces[l->first].off, p->pieces[l->first].len);
			o += p->pieces[l->first].len;
		}
		topic_tree_insert(a->pgrants, shape, (size_t)(o - shape),
				  (void *)(uintptr_t)(i + 1), p->access);
		free(shape);
	}
}

int acl_parse(const char *name, const char *text, size_t len, struct acl **out, char *err,
	      size_t errlen)
{
	struct acl *a = acl_new();
	struct acl_block *cur = a->anon;
	const char *p = text, *end = text + len;
	unsigned long line = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *why = NULL, *tok = NULL;
		size_t toklen = 0;

		line++;
		if (acl_parse_line(a, &cur, p, le, &why, &tok, &toklen) != 0) {
			acl_free(a);
			if (tok == NULL)
				return acl_fail(err, errlen, name, line, "%s", why);
			return acl_fail(err, errlen, name, line, "%s \"%.*s%s\"", why,
					(int)(toklen > ACL_QUOTE_MAX ? ACL_QUOTE_MAX : toklen), tok,
					toklen > ACL_QUOTE_MAX ? "..." : "");
		}
		p = nl ? nl + 1 : end;
	}
	acl_index_patterns(a);
	acl_index_finish(a, a->anon->sgrants, true);
	for (uint32_t i = 0; i < a->users->lm.nslots; i++)
		if (a->users->lm.slots[i] != NULL)
			acl_index_finish(a, ((struct acl_block *)a->users->lm.slots[i])->sgrants,
					 true);
	for (int i = 0; i < 4; i++)
		acl_index_finish(a, a->sgrants[i], true);
	acl_index_finish(a, a->sdenies, false);
	*out = a;
	return ACL_OK;
}

int acl_load(const char *path, struct acl **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = ACL_EIO;

	if (f == NULL)
		goto out;
	for (;;) {
		size_t n;

		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = xrealloc(buf, cap);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f))
		goto out;
	rc = acl_parse(path, buf, len, out, err, errlen);
out:
	if (rc == ACL_EIO && err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
	if (f != NULL)
		fclose(f);
	free(buf);
	return rc;
}

void acl_free(struct acl *a)
{
	if (a == NULL)
		return;
	levelmap_tree_free(&a->users->lm, acl_block_free);
	acl_block_free(&a->anon->lm, NULL);
	for (size_t i = 0; i < a->npatterns; i++)
		acl_pattern_cleanup(&a->patterns[i]);
	free(a->patterns);
	topic_tree_free(a->pgrants);
	free(a->odd);
	free(a->denies);
	for (int i = 0; i < 4; i++)
		acl_index_free(a->sgrants[i]);
	acl_index_free(a->sdenies);
	free(a);
}

size_t acl_rule_count(const struct acl *a)
{
	return a ? a->nrules : 0;
}

/* ---- the per-message check ---- */

/* A value may be substituted only if it names exactly one level. */
static bool acl_value_ok(const char *s, size_t n)
{
	return n > 0 && strpbrk(s, "+#/") == NULL;
}

static void acl_who_init(struct acl_who *w, const char *client_id, const char *username)
{
	w->cid = client_id ? client_id : "";
	w->clen = strlen(w->cid);
	w->c_ok = acl_value_ok(w->cid, w->clen);
	w->user = username;
	w->ulen = username ? strlen(username) : 0;
	w->u_ok = username && acl_value_ok(username, w->ulen);
}

static enum acl_fit acl_pattern_fit(const struct acl_pattern *p, const struct acl_who *w)
{
	if (p->uses_u && w->user == NULL)
		return ACL_FIT_SKIP;
	if ((p->uses_c && !w->c_ok) || (p->uses_u && !w->u_ok))
		return ACL_FIT_UNUSABLE;
	/* A value that begins the rule must not turn it into a '$' rule. */
	if ((p->lead == ACL_PIECE_CLIENT && w->cid[0] == '$') ||
	    (p->lead == ACL_PIECE_USER && w->user[0] == '$'))
		return ACL_FIT_UNUSABLE;
	return ACL_FIT_OK;
}

static const struct acl_block *acl_block_of(const struct acl *a, const struct acl_who *w)
{
	if (w->user == NULL)
		return a->anon;
	return acl_block_find(a, w->user, w->ulen);
}

/* Does the substituted level l equal s[0..n)? */
static bool acl_level_equal(const struct acl_pattern *p, const struct acl_plevel *l,
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

/*
 * topic_matches() for a pattern, substituting as it goes so that nothing is
 * built or allocated. The pattern fits the client (ACL_FIT_OK).
 */
static bool acl_pattern_matches(const struct acl_pattern *p, const struct acl_who *w,
				const char *topic, size_t tlen)
{
	size_t ti = 0;
	bool topic_done = false;

	if (topic[0] == '$' && p->levels[0].wild != 0)
		return false;
	for (uint32_t k = 0; k < p->nlevels; k++) {
		const struct acl_plevel *l = &p->levels[k];
		size_t te;

		if (l->wild == '#')
			return true;
		if (topic_done)
			return false;
		te = levelmap_level_end(topic, tlen, ti);
		if (l->wild == 0 && !acl_level_equal(p, l, w, topic + ti, te - ti))
			return false;
		if (k + 1 == p->nlevels)
			return te == tlen;
		if (te == tlen)
			topic_done = true;
		else
			ti = te + 1;
	}
	return false;
}

static void acl_collect(void *arg, void *subscriber, uint8_t access)
{
	uint8_t *mask = arg;

	(void)subscriber;
	*mask |= access;
}

/* One check's question to the granting patterns. */
struct acl_query {
	const struct acl *a;
	const struct acl_who *w;
	const char *topic;
	size_t tlen;
	uint8_t access;
	bool granted;
};

static void acl_query_pattern(struct acl_query *q, size_t i)
{
	const struct acl_pattern *p = &q->a->patterns[i];

	if (q->granted || !(p->access & q->access))
		return;
	if (acl_pattern_fit(p, q->w) == ACL_FIT_OK &&
	    acl_pattern_matches(p, q->w, q->topic, q->tlen))
		q->granted = true;
}

/* A candidate from the shape trie: its identity is its index + 1. */
static void acl_query_visit(void *arg, void *subscriber, uint8_t access)
{
	(void)access;
	acl_query_pattern(arg, (size_t)(uintptr_t)subscriber - 1);
}

/* ---- the subscribe decision ---- */

static bool acl_span_is(const struct acl_span *sp, char c)
{
	return sp->n == 1 && sp->s[0] == c;
}

/* Split a filter into at most TOPIC_MAX_LEVELS levels; -1 if it has more. */
static int acl_split(const char *s, size_t len, struct acl_span *out)
{
	size_t i = 0;
	int n = 0;

	for (;;) {
		size_t e = levelmap_level_end(s, len, i);

		if (n == TOPIC_MAX_LEVELS)
			return -1;
		out[n].s = s + i;
		out[n].n = e - i;
		n++;
		if (e == len)
			return n;
		i = e + 1;
	}
}

static bool acl_span_dollar(const struct acl_span *sp)
{
	return sp->n > 0 && sp->s[0] == '$' && !acl_span_is(sp, '+') && !acl_span_is(sp, '#');
}

/*
 * The filter whose topics are exactly those matched by both f and g, level
 * by level, with the '$' rule applied at the first level (a wildcard there
 * never meets a '$' level). Returns its number of levels in out, 0 when the
 * two match no topic in common.
 */
static int acl_intersect(const struct acl_span *f, int nf, const struct acl_span *g, int ng,
			 struct acl_span *out)
{
	int n = 0;

	for (int i = 0;; i++) {
		if (i == nf || i == ng) {
			/* One side ended: the other matches its parent only through a '#'. */
			if (i == nf && i == ng)
				return n;
			if (i < nf && acl_span_is(&f[i], '#'))
				return n;
			if (i < ng && acl_span_is(&g[i], '#'))
				return n;
			return 0;
		}
		if (acl_span_is(&f[i], '#') || acl_span_is(&g[i], '#')) {
			const struct acl_span *rest = acl_span_is(&f[i], '#') ? g : f;
			int nrest = rest == g ? ng : nf;

			if (i == 0 && acl_span_dollar(&rest[0]))
				return 0;
			for (int k = i; k < nrest; k++)
				out[n++] = rest[k];
			return n;
		}
		if (acl_span_is(&f[i], '+')) {
			if (i == 0 && acl_span_dollar(&g[i]))
				return 0;
			out[n++] = g[i];
		} else if (acl_span_is(&g[i], '+')) {
			if (i == 0 && acl_span_dollar(&f[i]))
				return 0;
			out[n++] = f[i];
		} else if (f[i].n == g[i].n && memcmp(f[i].s, g[i].s, f[i].n) == 0) {
			out[n++] = f[i];
		} else {
			return 0;
		}
	}
}

/* Is every topic matched by the filter x[0..nx) also matched by d? */
static bool acl_contained(const struct acl_span *x, int nx, const struct acl_span *d, int nd)
{
	if ((acl_span_is(&d[0], '+') || acl_span_is(&d[0], '#')) && acl_span_dollar(&x[0]))
		return false;
	for (int i = 0; i < nd; i++) {
		if (acl_span_is(&d[i], '#'))
			return true;
		if (i == nx || acl_span_is(&x[i], '#'))
			return false;
		if (acl_span_is(&d[i], '+'))
			continue;
		if (acl_span_is(&x[i], '+') || x[i].n != d[i].n ||
		    memcmp(x[i].s, d[i].s, d[i].n) != 0)
			return false;
	}
	return nx == nd;
}

/*
 * A pattern with the client's values in place of %c and %u (it fits), or
 * NULL when that would be longer than any topic: then it matches nothing,
 * and a pattern with many placeholders and a long client id never makes a
 * SUBSCRIBE allocate gigabytes.
 */
static char *acl_expand(const struct acl_pattern *p, const struct acl_who *w, size_t *len)
{
	size_t n = p->nlevels - 1;
	char *s, *o;

	for (uint32_t k = 0; k < p->nlevels; k++)
		n += p->levels[k].fixed + p->levels[k].nc * w->clen + p->levels[k].nu * w->ulen;
	if (n > TOPIC_MAX_LEN)
		return NULL;
	o = s = xmalloc(n + 1);
	for (uint32_t k = 0; k < p->nlevels; k++) {
		const struct acl_plevel *l = &p->levels[k];

		if (k > 0)
			*o++ = '/';
		for (uint32_t j = 0; j < l->npieces; j++) {
			const struct acl_piece *pc = &p->pieces[l->first + j];

			if (pc->kind == ACL_PIECE_TEXT) {
				memcpy(o, p->filter + pc->off, pc->len);
				o += pc->len;
			} else if (pc->kind == ACL_PIECE_CLIENT) {
				memcpy(o, w->cid, w->clen);
				o += w->clen;
			} else {
				memcpy(o, w->user, w->ulen);
				o += w->ulen;
			}
		}
	}
	*o = '\0';
	*len = n;
	return s;
}

/* One subscribe decision: the client, its block and the work counters. */
struct acl_walk {
	const struct acl *a;
	const struct acl_who *w;
	const struct acl_block *b; /* NULL: a username without a block */
	struct acl_sub_cost *cost;
	const uint32_t *fh; /* the hash of each level of the filter */
	bool any_denies;    /* some deny rule may apply to the client */
};

/*
 * Does some deny pattern need a value this client cannot give? Then it
 * denies everything (acl_pattern_fit() is ACL_FIT_UNUSABLE for it), which
 * the bits gathered at load answer without looking at each pattern.
 */
static bool acl_denies_all(const struct acl *a, const struct acl_who *w)
{
	uint8_t n = a->deny_needs;

	if (w->user == NULL) /* patterns with %u do not apply */
		return ((n & ACL_NEEDS_C_ANON) && !w->c_ok) ||
		       ((n & ACL_NEEDS_LEAD_ANON) && w->cid[0] == '$');
	return ((n & ACL_NEEDS_C) && !w->c_ok) || ((n & ACL_NEEDS_U) && !w->u_ok) ||
	       ((n & ACL_NEEDS_LEAD_C) && w->cid[0] == '$') ||
	       ((n & ACL_NEEDS_LEAD_U) && w->user[0] == '$');
}

/* The literal child of n for the level sp (hashed to hv), or NULL. */
static struct levelmap_node *acl_inode_find(const struct acl_inode *n, const struct acl_span *sp,
					    uint32_t hv)
{
	const struct acl_inode *holder = n;

	if (n->depth == 0 && sp->n > 0 && sp->s[0] == '$')
		holder = n->dollars;
	if (holder == NULL)
		return NULL;
	return levelmap_find(&holder->lm, sp->s, sp->n, hv);
}

/* Is the template child t, with the client's values, the level sp? */
static bool acl_template_is(const struct acl_walk *k, const struct acl_inode *t,
			    const struct acl_span *sp)
{
	const struct acl_pattern *p = &k->a->patterns[t->pat];
	const struct acl_plevel *l = &p->levels[t->lev];

	k->cost->tmpls++;
	if (l->nu > 0 && k->w->user == NULL)
		return false; /* the pattern does not apply */
	return acl_level_equal(p, l, k->w, sp->s, sp->n);
}

/*
 * Can the template child t stand for a level of this client at all? Not
 * when it needs a username the client lacks or a value that cannot be
 * substituted, or would make a '$' first level of a value: then every
 * pattern below it grants nothing to this client (acl_pattern_fit()), and
 * a walk that takes every child leaves it out.
 */
static bool acl_template_usable(const struct acl_walk *k, const struct acl_inode *t)
{
	const struct acl_pattern *p = &k->a->patterns[t->pat];
	const struct acl_plevel *l = &p->levels[t->lev];
	const struct acl_who *w = k->w;

	if (l->nu > 0 && (w->user == NULL || !w->u_ok))
		return false;
	if (l->nc > 0 && !w->c_ok)
		return false;
	return t->lev > 0 || !((p->lead == ACL_PIECE_CLIENT && w->cid[0] == '$') ||
			       (p->lead == ACL_PIECE_USER && w->user[0] == '$'));
}

/* Push the templates of v[0..n) that are the level sp for this client. */
static void acl_push_some_templates(struct levelmap_vec *st, const struct acl_walk *k,
				    struct acl_inode *const *v, uint32_t n,
				    const struct acl_span *sp)
{
	for (uint32_t i = 0; i < n; i++)
		if (acl_template_is(k, v[i], sp))
			levelmap_vec_push(st, &v[i]->lm);
}

/* Push the templates of n that are the level sp for this client: through
 * its template index when it has one, else one by one. */
static void acl_push_templates(struct levelmap_vec *st, const struct acl_walk *k,
			       const struct acl_inode *n, const struct acl_span *sp)
{
	const struct acl_tindex *x = n->tix;

	if (x == NULL) {
		for (uint32_t i = 0; n->tmpls != NULL && i < n->tmpls->lm.nslots; i++) {
			struct levelmap_node *c = n->tmpls->lm.slots[i];

			if (c != NULL && acl_template_is(k, (const struct acl_inode *)c, sp))
				levelmap_vec_push(st, c);
		}
		return;
	}
	acl_push_some_templates(st, k, x->bare->v, x->bare->n, sp);
	for (uint32_t i = 0; i < x->nshapes; i++) {
		const struct acl_tshape *sh = &x->shapes[i];
		size_t off = sh->fixed + sh->nc * k->w->clen + sh->nu * k->w->ulen;
		const struct acl_glist *l;

		if (off + sh->len > sp->n)
			continue;
		l = (const struct acl_glist *)levelmap_find(&sh->texts->lm, sp->s + off, sh->len,
							    levelmap_hash(sp->s + off, sh->len));
		if (l != NULL)
			acl_push_some_templates(st, k, l->v, l->n, sp);
	}
}

/* Is x[0..nx) wholly inside the deny rule d (a block's rule or, with
 * patterns, a pattern expanded for the client)? */
static bool acl_deny_contains(const struct acl_walk *k, bool patterns, uint32_t id,
			      const struct acl_span *x, int nx)
{
	struct acl_span ds[TOPIC_MAX_LEVELS];
	const char *d;
	char *owned = NULL;
	size_t dlen;
	bool in;
	int nd;

	k->cost->denies++;
	if (!patterns) {
		d = k->b->rules[id].filter;
		dlen = k->b->rules[id].len;
	} else {
		const struct acl_pattern *p = &k->a->patterns[id];
		enum acl_fit fit = acl_pattern_fit(p, k->w);

		if (fit == ACL_FIT_SKIP)
			return false;
		if (fit == ACL_FIT_UNUSABLE)
			return true; /* never here: acl_denies_all() refused first */
		d = owned = acl_expand(p, k->w, &dlen);
		if (d == NULL)
			return false;
	}
	nd = acl_split(d, dlen, ds);
	in = nd > 0 && acl_contained(x, nx, ds, nd);
	free(owned);
	return in;
}

static bool acl_deny_any(const struct acl_walk *k, bool patterns, const struct acl_inode *n,
			 const struct acl_span *x, int nx)
{
	for (uint32_t i = 0; n != NULL && i < n->nends; i++)
		if (acl_deny_contains(k, patterns, n->ends[i], x, nx))
			return true;
	return false;
}

/*
 * Is x[0..nx) wholly inside one of the deny rules filed in the index at
 * root? The walk follows x level by level and visits only the rules that
 * could contain it: a `#` at any depth it reaches, `+` for any level of
 * x but `#`, the equal literal or template for a literal level, and at the
 * end the rules of x's length. Each is then compared for real.
 */
static bool acl_denied_in(const struct acl_walk *k, struct acl_inode *root, bool patterns,
			  const struct acl_span *x, int nx)
{
	struct levelmap_vec st;
	bool in = false;

	if (root == NULL)
		return false;
	levelmap_vec_init(&st);
	levelmap_vec_push(&st, &root->lm);
	while (!in && st.n > 0) {
		const struct acl_inode *n = (const struct acl_inode *)st.v[--st.n];
		int i = (int)n->depth;
		struct levelmap_node *c;

		k->cost->nodes++;
		if (acl_deny_any(k, patterns, n->hash, x, nx)) {
			in = true;
			break;
		}
		if (i == nx) {
			in = acl_deny_any(k, patterns, n, x, nx);
			continue;
		}
		if (acl_span_is(&x[i], '#'))
			continue;
		if (n->plus != NULL)
			levelmap_vec_push(&st, &n->plus->lm);
		if (acl_span_is(&x[i], '+'))
			continue;
		c = acl_inode_find(n, &x[i], levelmap_hash(x[i].s, x[i].n));
		if (c != NULL)
			levelmap_vec_push(&st, c);
		acl_push_templates(&st, k, n, &x[i]);
	}
	levelmap_vec_cleanup(&st);
	return in;
}

/* Is x[0..nx) (non-empty) wholly inside one deny rule for the client? */
static bool acl_denied(const struct acl_walk *k, const struct acl_span *x, int nx)
{
	return (k->b != NULL && acl_denied_in(k, k->b->sdenies, false, x, nx)) ||
	       acl_denied_in(k, k->a->sdenies, true, x, nx);
}

/* Does the read rule id (a block's or, with patterns, a pattern expanded
 * for the client) leave part of the filter f readable? */
static bool acl_grant_reaches(const struct acl_walk *k, bool patterns, uint32_t id,
			      const struct acl_span *f, int nf)
{
	struct acl_span gs[TOPIC_MAX_LEVELS], x[TOPIC_MAX_LEVELS];
	const char *g;
	char *owned = NULL;
	size_t glen;
	bool ok;
	int ng, nx;

	k->cost->grants++;
	if (!patterns) {
		g = k->b->rules[id].filter;
		glen = k->b->rules[id].len;
	} else {
		const struct acl_pattern *p = &k->a->patterns[id];

		if (acl_pattern_fit(p, k->w) != ACL_FIT_OK)
			return false;
		g = owned = acl_expand(p, k->w, &glen);
		if (g == NULL)
			return false;
	}
	ng = acl_split(g, glen, gs);
	nx = ng > 0 ? acl_intersect(f, nf, gs, ng, x) : 0;
	ok = nx > 0 && !acl_denied(k, x, nx);
	free(owned);
	return ok;
}

static bool acl_grant_any(const struct acl_walk *k, bool patterns, const struct acl_inode *n,
			  const struct acl_span *f, int nf)
{
	for (uint32_t i = 0; n != NULL && i < n->nends; i++)
		if (acl_grant_reaches(k, patterns, n->ends[i], f, nf))
			return true;
	return false;
}

/*
 * The filter y that every intersection of f with a rule below n refines:
 * the levels on the way to n as f meets them (f's own level where it is
 * literal, the node's where f has a wildcard, `+` for a node that is a
 * wildcard or a template), then the rest of f, or `#` past its end. A
 * filter inside one deny rule has every refinement of it inside that rule
 * too, so when y is denied nothing below n can grant.
 */
static int acl_walk_bound(const struct acl_inode *n, const struct acl_span *f, int nf,
			  struct acl_span *y)
{
	static const char wild[] = "+#";
	int i = (int)n->depth, ny = i;

	for (const struct acl_inode *m = n; m->depth > 0;
	     m = (const struct acl_inode *)m->lm.parent) {
		int j = (int)m->depth - 1;

		if (j < nf && !acl_span_is(&f[j], '+') && !acl_span_is(&f[j], '#'))
			y[j] = f[j];
		else if (m->kind == 0)
			y[j] = (struct acl_span){m->lm.seg, m->lm.seglen};
		else
			y[j] = (struct acl_span){wild, 1};
	}
	if (i >= nf) {
		y[ny++] = (struct acl_span){wild + 1, 1};
		return ny;
	}
	for (int j = i; j < nf; j++)
		y[ny++] = f[j];
	return ny;
}

/*
 * A step of a grant walk: a node to look at, or a run of nodes still to
 * take (the literal children of a node, or a list of a descendant index),
 * taken one at a time, so that a walk that finds a grant early has not
 * paid for the rest of a level with thousands of children.
 */
enum acl_step_kind {
	ACL_STEP_NODE, /* n */
	ACL_STEP_KIDS, /* the literal children of n, from slot pos */
	ACL_STEP_LIST, /* v[pos..end) */
};

struct acl_step {
	const struct acl_inode *n;
	struct acl_inode *const *v;
	uint32_t pos, end;
	uint8_t kind;
};

#define ACL_STEPS_INLINE 32

/* The walk's stack: in caller storage until it outgrows it. */
struct acl_steps {
	struct acl_step *v;
	size_t n, cap;
	struct acl_step inl[ACL_STEPS_INLINE];
};

static void acl_steps_init(struct acl_steps *st)
{
	st->v = st->inl;
	st->n = 0;
	st->cap = ACL_STEPS_INLINE;
}

static void acl_steps_cleanup(struct acl_steps *st)
{
	if (st->v != st->inl)
		free(st->v);
}

static void acl_steps_push(struct acl_steps *st, uint8_t kind, const struct acl_inode *n,
			   struct acl_inode *const *v, uint32_t end)
{
	if (st->n == st->cap) {
		size_t cap = st->cap * 2;
		struct acl_step *nv = xmalloc(cap * sizeof(*nv));

		memcpy(nv, st->v, st->n * sizeof(*nv));
		acl_steps_cleanup(st);
		st->v = nv;
		st->cap = cap;
	}
	st->v[st->n++] = (struct acl_step){.n = n, .v = v, .pos = 0, .end = end, .kind = kind};
}

static void acl_steps_node(struct acl_steps *st, const struct acl_inode *n)
{
	acl_steps_push(st, ACL_STEP_NODE, n, NULL, 0);
}

/* The next node the walk takes, or NULL when it is done. */
static const struct acl_inode *acl_steps_next(struct acl_steps *st)
{
	while (st->n > 0) {
		struct acl_step *s = &st->v[st->n - 1];

		if (s->kind == ACL_STEP_NODE) {
			st->n--;
			return s->n;
		}
		if (s->kind == ACL_STEP_LIST) {
			if (s->pos < s->end)
				return s->v[s->pos++];
			st->n--;
			continue;
		}
		while (s->pos < s->end) {
			const struct levelmap_node *c = s->n->lm.slots[s->pos++];

			if (c != NULL)
				return (const struct acl_inode *)c;
		}
		st->n--;
	}
	return NULL;
}

/* Take the children of n that are not literal and may lead to a grant,
 * for a wildcard level of the filter: `+` and the usable templates, but at
 * the root none that starts with '$'. */
static void acl_take_wild_children(struct acl_steps *st, const struct acl_walk *k,
				   const struct acl_inode *n)
{
	if (n->plus != NULL)
		acl_steps_node(st, n->plus);
	for (uint32_t i = 0; n->tmpls != NULL && i < n->tmpls->lm.nslots; i++) {
		struct levelmap_node *c = n->tmpls->lm.slots[i];

		if (c != NULL && (n->depth > 0 || c->seg[0] != '$') &&
		    acl_template_usable(k, (const struct acl_inode *)c))
			acl_steps_node(st, (const struct acl_inode *)c);
	}
}

/* Take every child of n that may lead to a grant, for a wildcard level of
 * the filter: as above, and the literal children (at the root, those that
 * start with '$' are apart and left out). */
static void acl_take_children(struct acl_steps *st, const struct acl_walk *k,
			      const struct acl_inode *n)
{
	acl_take_wild_children(st, k, n);
	if (n->lm.nchildren > 0)
		acl_steps_push(st, ACL_STEP_KIDS, n, NULL, n->lm.nslots);
}

/* Take the templates of n that are the level sp for this client. */
static void acl_take_templates(struct acl_steps *st, const struct acl_walk *k,
			       const struct acl_inode *n, const struct acl_span *sp)
{
	struct levelmap_vec v;

	if (n->tmpls == NULL)
		return;
	levelmap_vec_init(&v);
	acl_push_templates(&v, k, n, sp);
	for (size_t i = 0; i < v.n; i++)
		acl_steps_node(st, (const struct acl_inode *)v.v[i]);
	levelmap_vec_cleanup(&v);
}

/*
 * For a run of `+` in the filter from n's level i on: take what the walk
 * would meet below n's literal children from n's descendant index (struct
 * acl_gc) rather than child by child. Returns false, taking nothing, when
 * the run is longer than the index or ends in `#`; else true, with *ok set
 * when a `#` or a rule ending in it grants on the way. The bounds the walk
 * would check on the intermediate levels are only skipped: they prune, and
 * every grant is still intersected for real.
 */
static bool acl_take_below(struct acl_steps *st, const struct acl_walk *k,
			   const struct acl_inode *n, bool patterns, const struct acl_span *f,
			   int nf, int i, bool *ok)
{
	const struct acl_gc *gc = n->gc;
	const struct acl_glist *l;
	int r = 0, e;
	bool ends;

	while (i + r < nf && acl_span_is(&f[i + r], '+'))
		r++;
	e = i + r; /* the level after the run, or nf */
	ends = e == nf;
	if (ends ? r > ACL_GC_DEPTH : r >= ACL_GC_DEPTH || acl_span_is(&f[e], '#'))
		return false;
	acl_take_wild_children(st, k, n);
	for (int j = 1; j <= r; j++) {
		const struct acl_gclevel *lv = &gc->lv[j - 1];

		for (uint32_t x = 0; x < lv->hashes->n; x++)
			if (acl_grant_any(k, patterns, lv->hashes->v[x], f, nf)) {
				*ok = true;
				return true;
			}
		if (ends && j == r) {
			for (uint32_t x = 0; x < lv->ends->n; x++)
				if (acl_grant_any(k, patterns, lv->ends->v[x], f, nf)) {
					*ok = true;
					return true;
				}
			return true;
		}
		if (lv->pluses->n > 0)
			acl_steps_push(st, ACL_STEP_LIST, NULL, lv->pluses->v, lv->pluses->n);
		for (uint32_t x = 0; x < lv->tmpls->lm.nslots; x++) {
			l = (const struct acl_glist *)lv->tmpls->lm.slots[x];
			if (l != NULL && (j < r ? acl_template_usable(k, l->v[0])
						: acl_template_is(k, l->v[0], &f[e])))
				acl_steps_push(st, ACL_STEP_LIST, NULL, l->v, l->n);
		}
	}
	l = (const struct acl_glist *)levelmap_find(&gc->lv[r].lits->lm, f[e].s, f[e].n, k->fh[e]);
	if (l != NULL)
		acl_steps_push(st, ACL_STEP_LIST, NULL, l->v, l->n);
	return true;
}

/*
 * Does some read rule filed in the index at root leave part of the filter
 * f readable? The walk follows f level by level and visits only the rules
 * whose filter can intersect it: a `#` at any depth it reaches; for a
 * literal level of f, `+` and the equal literal or template; for a `+`,
 * every child (or, for a short run of `+` under a node with many
 * children, only what can meet the level after the run, from the node's
 * descendant index); at the end of f, the rules
 * of its length; from a trailing `#` of f on, everything below. Each is
 * then intersected for real.
 */
static bool acl_granted_in(const struct acl_walk *k, struct acl_inode *root, bool patterns,
			   const struct acl_span *f, int nf)
{
	bool tail = acl_span_is(&f[nf - 1], '#');
	const struct acl_inode *n;
	struct acl_steps st;
	bool ok = false;

	if (root == NULL)
		return false;
	acl_steps_init(&st);
	acl_steps_node(&st, root);
	while (!ok && (n = acl_steps_next(&st)) != NULL) {
		int i = (int)n->depth;
		struct levelmap_node *c;

		k->cost->nodes++;
		if (i > 0 && k->any_denies &&
		    ((tail && i >= nf - 1) || (i < nf && acl_span_is(&f[i], '+')))) {
			/* About to take every child: first, can any of them grant? */
			struct acl_span y[TOPIC_MAX_LEVELS + 1];
			int ny = acl_walk_bound(n, f, nf, y);

			if (acl_denied(k, y, ny))
				continue;
		}
		if (acl_grant_any(k, patterns, n->hash, f, nf)) {
			ok = true;
			break;
		}
		if (tail && i >= nf - 1) {
			ok = acl_grant_any(k, patterns, n, f, nf);
			acl_take_children(&st, k, n);
			continue;
		}
		if (i == nf) {
			ok = acl_grant_any(k, patterns, n, f, nf);
			continue;
		}
		if (acl_span_is(&f[i], '+')) {
			if (n->gc != NULL && acl_take_below(&st, k, n, patterns, f, nf, i, &ok))
				continue;
			acl_take_children(&st, k, n);
			continue;
		}
		if (n->plus != NULL)
			acl_steps_node(&st, n->plus);
		c = acl_inode_find(n, &f[i], k->fh[i]);
		if (c != NULL)
			acl_steps_node(&st, (const struct acl_inode *)c);
		acl_take_templates(&st, k, n, &f[i]);
	}
	acl_steps_cleanup(&st);
	return ok;
}

/* A decision a view already made, by filter. */
struct acl_memo {
	char *filter; /* a copy; NULL: a free slot */
	uint32_t len, hv;
	bool granted;
};

/* A view remembers at most this many decisions (each a copy of a filter
 * of the packet at hand); past it, it decides without remembering. */
#define ACL_VIEW_MEMO_MAX (1u << 16)

struct acl_view {
	const struct acl *a;
	struct acl_who w;
	const struct acl_block *b; /* NULL: a username without a block */
	bool denies_all;           /* a deny pattern the client cannot fit */
	bool any_denies;           /* some deny rule may apply */
	struct acl_memo *memo;     /* open addressing, linear probing */
	uint32_t cap, count;       /* cap a power of two, or 0 */
};

/* What a decision for this client needs, whatever the filter. */
static void acl_view_init(struct acl_view *v, const struct acl *a, const char *client_id,
			  const char *username)
{
	memset(v, 0, sizeof(*v));
	v->a = a;
	acl_who_init(&v->w, client_id, username);
	v->b = acl_block_of(a, &v->w);
	/* A hostile value in a deny pattern refuses everything. */
	v->denies_all = acl_denies_all(a, &v->w);
	v->any_denies = (v->b != NULL && v->b->sdenies != NULL) || a->sdenies != NULL;
}

static bool acl_view_decide(const struct acl_view *v, const char *filter, size_t len,
			    struct acl_sub_cost *cost)
{
	struct acl_span f[TOPIC_MAX_LEVELS];
	uint32_t fh[TOPIC_MAX_LEVELS];
	struct acl_walk k;
	int nf;

	if (v->denies_all)
		return false;
	nf = acl_split(filter, len, f);
	if (nf < 0)
		return false;
	/* Hashed once: a '+' of the filter may take it to many nodes. */
	for (int i = 0; i < nf; i++)
		fh[i] = levelmap_hash(f[i].s, f[i].n);
	k.fh = fh;
	k.a = v->a;
	k.w = &v->w;
	k.b = v->b;
	k.cost = cost;
	k.any_denies = v->any_denies;
	/* A filter inside one deny rule has every intersection inside it. */
	if (acl_denied(&k, f, nf))
		return false;
	if (k.b != NULL && acl_granted_in(&k, k.b->sgrants, false, f, nf))
		return true;
	for (int cls = 0; cls < 4; cls++) {
		/* Patterns that need a value the client cannot give grant it
		 * nothing (acl_pattern_fit()). */
		if (((cls & 1) && !v->w.c_ok) || ((cls & 2) && !v->w.u_ok))
			continue;
		if (acl_granted_in(&k, v->a->sgrants[cls], true, f, nf))
			return true;
	}
	return false;
}

bool acl_may_subscribe_counted(const struct acl *a, const char *client_id, const char *username,
			       const char *filter, size_t len, struct acl_sub_cost *cost)
{
	struct acl_sub_cost ignored = {0};
	struct acl_view v;

	if (a == NULL || filter == NULL || len == 0)
		return false;
	acl_view_init(&v, a, client_id, username);
	return acl_view_decide(&v, filter, len, cost != NULL ? cost : &ignored);
}

bool acl_may_subscribe(const struct acl *a, const char *client_id, const char *username,
		       const char *filter, size_t len)
{
	return acl_may_subscribe_counted(a, client_id, username, filter, len, NULL);
}

struct acl_view *acl_view_new(const struct acl *a, const char *client_id, const char *username)
{
	struct acl_view *v;

	if (a == NULL)
		return NULL;
	v = xmalloc(sizeof(*v));
	acl_view_init(v, a, client_id, username);
	return v;
}

void acl_view_free(struct acl_view *v)
{
	if (v == NULL)
		return;
	for (uint32_t i = 0; i < v->cap; i++)
		free(v->memo[i].filter);
	free(v->memo);
	free(v);
}

/* The slot of filter in v's memory: its entry, or the free slot for it. */
static struct acl_memo *acl_view_slot(const struct acl_view *v, const char *filter, size_t len,
				      uint32_t hv)
{
	uint32_t mask = v->cap - 1, i;

	for (i = hv & mask; v->memo[i].filter != NULL; i = (i + 1) & mask)
		if (v->memo[i].hv == hv && v->memo[i].len == len &&
		    memcmp(v->memo[i].filter, filter, len) == 0)
			break;
	return &v->memo[i];
}

static void acl_view_grow(struct acl_view *v)
{
	struct acl_memo *old = v->memo;
	uint32_t oldcap = v->cap;

	v->cap = v->cap ? v->cap * 2 : 64;
	v->memo = xcalloc(v->cap, sizeof(*v->memo));
	for (uint32_t i = 0; i < oldcap; i++)
		if (old[i].filter != NULL)
			*acl_view_slot(v, old[i].filter, old[i].len, old[i].hv) = old[i];
	free(old);
}

bool acl_view_may_subscribe(struct acl_view *v, const char *filter, size_t len,
			    struct acl_sub_cost *cost)
{
	struct acl_sub_cost ignored = {0};
	struct acl_memo *m = NULL;
	uint32_t hv;
	bool ok;

	if (v == NULL || filter == NULL || len == 0)
		return false;
	hv = levelmap_hash(filter, len);
	if (v->count > 0) {
		m = acl_view_slot(v, filter, len, hv);
		if (m->filter != NULL) {
			if (cost != NULL)
				cost->reused++;
			return m->granted;
		}
	}
	ok = acl_view_decide(v, filter, len, cost != NULL ? cost : &ignored);
	if (v->count >= ACL_VIEW_MEMO_MAX)
		return ok;
	if ((v->count + 1) * 4 > v->cap * 3)
		acl_view_grow(v);
	m = acl_view_slot(v, filter, len, hv);
	m->filter = xmalloc(len);
	memcpy(m->filter, filter, len);
	m->len = (uint32_t)len;
	m->hv = hv;
	m->granted = ok;
	v->count++;
	return ok;
}

/* ---- the per-message check's deny patterns ---- */

/* Does some deny pattern filed at node n apply to the client? Asked once
 * acl_denies_all() said no, so each fits the client or, using %u for an
 * anonymous client, skips it. */
static bool acl_deny_ends(const struct acl *a, const struct acl_who *w, const struct acl_inode *n)
{
	for (uint32_t i = 0; n != NULL && i < n->nends; i++)
		if (!(a->patterns[n->ends[i]].uses_u && w->user == NULL))
			return true;
	return false;
}

/*
 * Does a deny pattern match the topic t[0..nt)? The walk follows the topic
 * through the index of deny patterns, substituting the client's values in
 * the template levels as it compares them: `#` at any depth it reaches, `+`
 * and the equal literal or template at each level, the patterns of the
 * topic's length at its end. A wildcard first level never meets a '$'
 * topic. Every path the walk takes has matched the topic so far, so a
 * pattern it reaches the end of matches: nothing is compared again.
 */
static bool acl_topic_denied(const struct acl *a, const struct acl_who *w, const struct acl_span *t,
			     int nt, struct acl_sub_cost *cost)
{
	bool dollar = t[0].n > 0 && t[0].s[0] == '$', in = false;
	struct acl_walk k = {.a = a, .w = w, .cost = cost};
	uint32_t th[TOPIC_MAX_LEVELS];
	struct levelmap_vec st;

	for (int i = 0; i < nt; i++)
		th[i] = levelmap_hash(t[i].s, t[i].n);
	levelmap_vec_init(&st);
	levelmap_vec_push(&st, &a->sdenies->lm);
	while (!in && st.n > 0) {
		const struct acl_inode *n = (const struct acl_inode *)st.v[--st.n];
		int i = (int)n->depth;
		bool wild = i > 0 || !dollar;
		struct levelmap_node *c;

		cost->nodes++;
		if (wild && acl_deny_ends(a, w, n->hash)) {
			in = true;
			break;
		}
		if (i == nt) {
			in = acl_deny_ends(a, w, n);
			continue;
		}
		if (wild && n->plus != NULL)
			levelmap_vec_push(&st, &n->plus->lm);
		c = acl_inode_find(n, &t[i], th[i]);
		if (c != NULL)
			levelmap_vec_push(&st, c);
		acl_push_templates(&st, &k, n, &t[i]);
	}
	levelmap_vec_cleanup(&st);
	return in;
}

/* The same, one pattern at a time: only for a topic of more levels than a
 * valid one has (acl_split() fails), which the broker never asks about. */
static bool acl_topic_denied_slowly(const struct acl *a, const struct acl_who *w, const char *topic,
				    size_t topic_len)
{
	for (size_t i = 0; i < a->ndenies; i++) {
		const struct acl_pattern *p = &a->patterns[a->denies[i]];

		if (acl_pattern_fit(p, w) == ACL_FIT_OK &&
		    acl_pattern_matches(p, w, topic, topic_len))
			return true;
	}
	return false;
}

bool acl_check_counted(const struct acl *a, const char *client_id, const char *username,
		       const char *topic, size_t topic_len, enum acl_access access,
		       struct acl_sub_cost *cost)
{
	struct acl_sub_cost ignored = {0};
	const struct acl_block *b;
	struct acl_query q;
	struct acl_who w;
	uint8_t mask = 0;

	if (a == NULL || topic == NULL || topic_len == 0)
		return false;
	acl_who_init(&w, client_id, username);
	b = acl_block_of(a, &w);
	if (b != NULL)
		topic_tree_match(b->tree, topic, topic_len, acl_collect, &mask);
	if (mask & ACL_DENY_BIT)
		return false;
	if (a->sdenies != NULL) {
		struct acl_span t[TOPIC_MAX_LEVELS];
		int nt;

		/* A deny pattern that needs a value the client cannot give
		 * denies everything (acl_pattern_fit()). */
		if (acl_denies_all(a, &w))
			return false;
		nt = acl_split(topic, topic_len, t);
		if (nt > 0 ? acl_topic_denied(a, &w, t, nt, cost != NULL ? cost : &ignored)
			   : acl_topic_denied_slowly(a, &w, topic, topic_len))
			return false;
	}
	if (mask & access)
		return true;
	q.a = a;
	q.w = &w;
	q.topic = topic;
	q.tlen = topic_len;
	q.access = (uint8_t)access;
	q.granted = false;
	topic_tree_match(a->pgrants, topic, topic_len, acl_query_visit, &q);
	for (size_t i = 0; i < a->nodd; i++)
		acl_query_pattern(&q, a->odd[i]);
	return q.granted;
}

bool acl_check(const struct acl *a, const char *client_id, const char *username, const char *topic,
	       size_t topic_len, enum acl_access access)
{
	return acl_check_counted(a, client_id, username, topic, topic_len, access, NULL);
}
