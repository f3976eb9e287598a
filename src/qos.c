/*
 * The QoS 1 and QoS 2 state machines, kept apart from the I/O and storage
 * that carry out their decisions (client.c) so every transition can be
 * tested on its own.
 */
#include "qos.h"

#include <assert.h>
#include <stdlib.h>

#include "cairn/store.h"
#include "util.h"

enum qos_out_action qos_out_step(uint8_t qos, uint8_t *state, enum qos_out_event event)
{
	assert(qos == 1 || qos == 2);
	assert(*state == CAIRN_DELIVERY_SENT || *state == CAIRN_DELIVERY_PUBREC);
	switch (event) {
	case QOS_OUT_PUBACK:
		return qos == 1 ? QOS_OUT_COMPLETE : QOS_OUT_IGNORE;
	case QOS_OUT_PUBREC:
		if (qos != 2)
			return QOS_OUT_IGNORE;
		if (*state == CAIRN_DELIVERY_PUBREC)
			return QOS_OUT_RELEASE_AGAIN;
		*state = CAIRN_DELIVERY_PUBREC;
		return QOS_OUT_RELEASE;
	case QOS_OUT_PUBCOMP:
		return qos == 2 && *state == CAIRN_DELIVERY_PUBREC ? QOS_OUT_COMPLETE
								   : QOS_OUT_IGNORE;
	}
	assert(!"unknown QoS event");
	return QOS_OUT_IGNORE;
}

bool qos_in_has(const struct qos_in *q, uint16_t pid)
{
	return q->bits && (q->bits[pid >> 3] & (1u << (pid & 7)));
}

bool qos_in_add(struct qos_in *q, uint16_t pid)
{
	if (qos_in_has(q, pid))
		return false;
	if (!q->bits)
		q->bits = xcalloc(65536 / 8, 1);
	q->bits[pid >> 3] |= (uint8_t)(1u << (pid & 7));
	q->count++;
	return true;
}

bool qos_in_remove(struct qos_in *q, uint16_t pid)
{
	if (!qos_in_has(q, pid))
		return false;
	q->bits[pid >> 3] &= (uint8_t) ~(1u << (pid & 7));
	if (--q->count == 0)
		qos_in_cleanup(q);
	return true;
}

void qos_in_cleanup(struct qos_in *q)
{
	free(q->bits);
	q->bits = NULL;
	q->count = 0;
}
