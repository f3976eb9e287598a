/*
 * The "none" backend: nothing is stored. It serves `persistence false`,
 * where no state is meant to outlive the process: every staging call is a
 * no-op that copies nothing, commit is complete at once, and load finds
 * nothing. The broker's own memory (sessions, queues, retained messages)
 * is the only copy, so nothing is mirrored.
 *
 * It keeps the store contract's ordering (completions run once the batch
 * they wait for is "committed", which is at the end of the loop pass) but
 * not its durability: a close and reopen finds an empty store. The
 * contract suite therefore runs on "memory", not on this.
 */
#include "cairn/store.h"

#include <stdlib.h>

/* There is nothing to keep; the handle only has to be distinct from NULL. */
struct cairn_store {
	char unused;
};

static int none_open(const struct cairn_store_options *opts, struct cairn_store **out, char *err,
		     size_t errlen)
{
	(void)opts;
	(void)err;
	(void)errlen;
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : CAIRN_ENOMEM;
}

static void none_close(struct cairn_store *st)
{
	free(st);
}

static int none_load(struct cairn_store *st, const struct cairn_store_visitor *v)
{
	(void)st;
	(void)v;
	return 0;
}

/* Every write is forgotten; each slot has its own signature, so one
 * function per shape of arguments. */
static int none_put_session(struct cairn_store *st, const struct cairn_session_rec *rec)
{
	(void)st;
	(void)rec;
	return 0;
}

static int none_put_sub(struct cairn_store *st, const struct cairn_sub_rec *rec)
{
	(void)st;
	(void)rec;
	return 0;
}

static int none_put_msg(struct cairn_store *st, const struct cairn_msg_rec *rec)
{
	(void)st;
	(void)rec;
	return 0;
}

static int none_put_delivery(struct cairn_store *st, const struct cairn_delivery_rec *rec)
{
	(void)st;
	(void)rec;
	return 0;
}

static int none_put_inflight(struct cairn_store *st, const struct cairn_inflight_in_rec *rec)
{
	(void)st;
	(void)rec;
	return 0;
}

static int none_del_name(struct cairn_store *st, const char *name)
{
	(void)st;
	(void)name;
	return 0;
}

static int none_del_sub(struct cairn_store *st, const char *client_id, const char *filter)
{
	(void)st;
	(void)client_id;
	(void)filter;
	return 0;
}

static int none_del_msg(struct cairn_store *st, uint64_t msg_id)
{
	(void)st;
	(void)msg_id;
	return 0;
}

static int none_del_delivery(struct cairn_store *st, const char *client_id, uint64_t seq)
{
	(void)st;
	(void)client_id;
	(void)seq;
	return 0;
}

static int none_del_inflight(struct cairn_store *st, const char *client_id, uint16_t packet_id)
{
	(void)st;
	(void)client_id;
	(void)packet_id;
	return 0;
}

static int none_commit(struct cairn_store *st, cairn_store_done_fn done, void *arg)
{
	(void)st;
	(void)done;
	(void)arg;
	return 0;
}

const struct cairn_store_ops cairn_store_none = {
    .version = 7, /* the shared-store slots stay NULL: not shareable */
    .name = "none",
    .open = none_open,
    .close = none_close,
    .load = none_load,
    .session_put = none_put_session,
    .session_delete = none_del_name,
    .sub_put = none_put_sub,
    .sub_delete = none_del_sub,
    .message_put = none_put_msg,
    .message_delete = none_del_msg,
    .delivery_put = none_put_delivery,
    .delivery_delete = none_del_delivery,
    .inflight_in_put = none_put_inflight,
    .inflight_in_delete = none_del_inflight,
    .retained_put = none_put_msg,
    .retained_delete = none_del_name,
    .commit = none_commit,
    .flags = 0,
};
