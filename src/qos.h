/*
 * The QoS 1 and QoS 2 state machines: the transition function of an
 * outbound delivery in the in-flight window, and the set of inbound QoS 2
 * packet ids that wait for their PUBREL. Pure: the caller stores, sends
 * and frees as the returned action says.
 */
#ifndef CAIRN_QOS_H
#define CAIRN_QOS_H

#include <stdbool.h>
#include <stdint.h>

/* An acknowledgement from the subscriber for a delivery in flight. */
enum qos_out_event { QOS_OUT_PUBACK, QOS_OUT_PUBREC, QOS_OUT_PUBCOMP };

enum qos_out_action {
	QOS_OUT_IGNORE,       /* not for this delivery's QoS or state: drop it */
	QOS_OUT_COMPLETE,     /* the delivery is finished: forget it */
	QOS_OUT_RELEASE,      /* QoS 2 received: store the new state, then PUBREL */
	QOS_OUT_RELEASE_AGAIN /* a repeated PUBREC: send PUBREL again */
};

/*
 * Advance a delivery of the given QoS (1 or 2) from *state (an
 * enum cairn_delivery_state other than queued: only deliveries in flight
 * receive acknowledgements) on event, and say what the caller must do.
 * QoS 1: sent --PUBACK--> complete. QoS 2: sent --PUBREC--> pubrec
 * --PUBCOMP--> complete; a PUBREC in pubrec releases again. Anything else
 * is ignored and leaves *state alone.
 */
enum qos_out_action qos_out_step(uint8_t qos, uint8_t *state, enum qos_out_event event);

/* Inbound QoS 2 packet ids between PUBLISH and PUBREL. The set costs
 * nothing while empty and a fixed 8 KiB bitmap otherwise, however many
 * PUBLISHes a client sends without releasing them. */
struct qos_in {
	uint8_t *bits;
	uint32_t count;
};

bool qos_in_has(const struct qos_in *q, uint16_t pid);
/* Add pid; returns false when it was already there (a resent PUBLISH). */
bool qos_in_add(struct qos_in *q, uint16_t pid);
/* Remove pid; returns false when it was not there. */
bool qos_in_remove(struct qos_in *q, uint16_t pid);
void qos_in_cleanup(struct qos_in *q);

#endif
