/*
 * The ACL's indexes of rules by level (struct acl_inode), which choose the
 * few rules a SUBSCRIBE filter, or a topic for the deny patterns, can
 * meet: building them at load (with a descendant index for runs of `+` and
 * a template index for pattern levels), freeing them, and walking them.
 * Each rule a subscribe walk reaches is decided for real in acl.c
 * (acl_grant_reaches(), acl_deny_contains()).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acl_priv.h"
#include "levelmap.h"
#include "topic.h"
#include "util.h"

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

/* ---- building and freeing ---- */

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
void acl_index_finish(const struct acl *a, struct acl_inode *root, bool gc)
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

void acl_index_free(struct acl_inode *root)
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
void acl_index_add(struct acl_inode **root, const char *filter, size_t len, size_t id,
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

/* ---- a node's children for one level ---- */

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

/* ---- the subscribe decision's walks ---- */

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
bool acl_denied(const struct acl_walk *k, const struct acl_span *x, int nx)
{
	return (k->b != NULL && acl_denied_in(k, k->b->sdenies, false, x, nx)) ||
	       acl_denied_in(k, k->a->sdenies, true, x, nx);
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

/* Whether a rule ending at one of the nodes listed in l grants part of f. */
static bool acl_grant_any_of(const struct acl_walk *k, bool patterns, const struct acl_glist *l,
			     const struct acl_span *f, int nf)
{
	for (uint32_t x = 0; x < l->n; x++)
		if (acl_grant_any(k, patterns, l->v[x], f, nf))
			return true;
	return false;
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

		if (acl_grant_any_of(k, patterns, lv->hashes, f, nf)) {
			*ok = true;
			return true;
		}
		if (ends && j == r) {
			*ok = acl_grant_any_of(k, patterns, lv->ends, f, nf);
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
bool acl_granted_in(const struct acl_walk *k, struct acl_inode *root, bool patterns,
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

/* ---- the per-message check's deny walk ---- */

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
bool acl_topic_denied(const struct acl *a, const struct acl_who *w, const struct acl_span *t,
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
