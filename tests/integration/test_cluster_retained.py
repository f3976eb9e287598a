"""Cluster mode: a node's own copy of the retained messages it publishes.

A node sets its copy of a retained message when the PUBLISH comes in (so
a SUBSCRIBE that follows it on the same node, even in the same write,
finds it), and its log reader sets it again from the shared log; a later
retained message published on another node wins on every node, even when
the first node's commit is still waiting for a replica (src/cluster.c,
cluster_publish). Tagged "cluster" (run.py --only cluster); each test
starts its own redis-server and nodes on loopback and stops them by PID.
"""

import os
import signal
import time

from harness import (PUBACK, SUBACK, RawClient, ack_packet, check, publish_packet, redis_cli,
                     subscribe_packet)
from test_cluster import _log_key, _replica_of, _tag as _cluster_tag, _timeout


def _tag(*tags):
    return _cluster_tag("retained", *tags)


def _retained_on(port, client_id, topic, wait=5):
    """What a new subscriber on port gets for topic: (payload, retain)."""
    s = RawClient(port)
    try:
        s.connect(client_id)
        s.subscribe(1, [(topic, 1)])
        m = s.read_publish(wait)
        if m["qos"]:
            s.send(ack_packet(PUBACK, m["pid"]))
        return m["payload"], m["retain"]
    finally:
        s.close()


# covers: MQTT-3.3.1-6
@_tag()
@_timeout(30)
def test_cluster_retained_qos0_then_subscribe_in_one_write(ctx):
    """A QoS 0 retained PUBLISH and a SUBSCRIBE to its topic in one write
    on the same node: the SUBSCRIBE gets the message as retained (RETAIN
    1), whatever the pace of the node's commit and log reader. 20 times,
    each on a topic of its own."""
    cl = ctx.cluster(2)
    bad = []
    for i in range(20):
        c = RawClient(cl[0].port)
        c.connect("cr-q0-%d" % i)
        topic = "cr/q0/%d" % i
        c.send(publish_packet(topic, b"v%d" % i, qos=0, retain=True) +
               subscribe_packet(1, [(topic, 0)]))
        c.expect(SUBACK, timeout=5)
        m = c.read_publish(5)
        if (m["payload"], m["retain"]) != (b"v%d" % i, True):
            bad.append((i, m["payload"], m["retain"]))
        c.close()
    check(not bad, "SUBSCRIBE in the PUBLISH's write did not get the retained copy "
          "(round, payload, retain): %r%s" % (bad[:5], cl.excerpt()))


@_tag("replicas")
@_timeout(40)
def test_cluster_later_retained_wins_while_a_commit_waits(ctx):
    """redis_wait_replicas 1 with the replica stopped (SIGSTOP): node 1
    publishes R1 retained (its commit waits for the replica), node 2
    publishes R2 on the same topic 0.2 s later. Once the replica runs again
    and both are acknowledged, a new subscriber on either node gets the
    later of the two in the log, R2 when R1 was appended first: node 1's
    late commit does not put R1 back over the R2 its reader brought."""
    cl = ctx.cluster(2, start=False, redis_wait_replicas=1)
    rep = _replica_of(ctx, cl.redis.port)
    for b in cl.nodes:
        b.start()
    p1, p2 = RawClient(cl[0].port), RawClient(cl[1].port)
    p1.connect("cr-p1")
    p2.connect("cr-p2")
    # The commits the connects left (a claim's trailing writes) end before
    # the replica stops: one still waiting for it would hold R1's commit
    # behind it, and R2 would reach the log first.
    time.sleep(0.5)
    os.kill(rep.pid, signal.SIGSTOP)
    try:
        p1.send(publish_packet("cr/w", b"R1", qos=1, retain=True, pid=1))
        time.sleep(0.2)
        p2.send(publish_packet("cr/w", b"R2", qos=1, retain=True, pid=1))
        time.sleep(1.5)
    finally:
        os.kill(rep.pid, signal.SIGCONT)
    for p in (p1, p2):
        p.expect(PUBACK, timeout=10)
    time.sleep(1.0)  # both readers have brought both entries
    # The later entry of the log wins. R1's commit, sent 0.2 s before R2's,
    # is nearly always appended first (the case named); should a commit of
    # node 1's still have held it, R2 came first and R1 must win.
    order = [x for x in redis_cli(cl.redis.port, "XRANGE", _log_key(cl, "cr/w"), "-", "+")
             if x in ("R1", "R2")]
    check(sorted(order) == ["R1", "R2"], "the log holds %r%s" % (order, cl.excerpt()))
    want = order[-1].encode()
    got = [_retained_on(b.port, "cr-s-%s" % b.name, "cr/w") for b in cl.nodes]
    check(got == [(want, True)] * 2,
          "retained copies of cr/w on nodes 1 and 2: %r, want %s (the log's later) on both%s" %
          (got, want.decode(), cl.excerpt()))
    p1.close()
    p2.close()
