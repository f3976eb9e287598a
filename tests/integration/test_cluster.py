"""Cluster mode, phase 1 (cairn.conf(5): cluster, cluster_node_id,
message_retention; one standalone redis-server): two or three cairn nodes
on one private redis-server and one key prefix behave, for every client,
like one durable broker. Messages published on one node reach persistent
subscribers on another, in order per topic; a persistent session resumes
on any node with session present 1; a node killed with kill -9 loses
nothing its clients saw acknowledged and doubles no QoS 2 message; one
client id is served by one connection in the whole cluster; retained
messages and wills cross nodes, and the will of a dead node's client is
published once; a shared subscription group spans the nodes (each
message to one member in the cluster); a node that loses Redis
acknowledges nothing and sends its clients elsewhere; with
redis_wait_replicas nothing is acknowledged that no replica holds; the
shared log is trimmed to message_retention.

Every test is tagged "cluster" (run.py --only cluster), starts its own
redis-server and nodes on free loopback ports (harness Context.cluster) and
stops them by PID.

Under tests/with-redis-cluster.sh (./dev cluster-test, CAIRN_REDIS_CLUSTER=1)
the Redis is a three-master Redis Cluster on loopback and the same cases
run on it, but for those that kill or restart their Redis or follow one
primary with a replica of their own (they skip, saying so);
test_cluster_redis_cluster_without_cluster_mode_is_refused checks that the
single-node Redis backend refuses a Redis Cluster at start-up. Under
CAIRN_REDIS_CLUSTER_REPLICAS=1 (./dev cluster-test runs them so at its end)
the failover cases run: on a private Redis Cluster with a replica per
master and redis_wait_replicas 1, kill -9 of the master of the log's slot,
or of the sessions' slots, loses nothing acknowledged.
"""

import os
import signal
import socket
import struct
import subprocess
import threading
import time

import harness
from harness import (CONNACK, DISCONNECT, DISCONNECT_PKT, PINGREQ_PKT, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC,
                     PUBREL, SUBACK, UNSUBACK, Closed, DurablePublisher, DurableSubscriber, HOST, Paho,
                     RawClient, Skip, TestFailure, ack_packet, broker_command, check,
                     connect_packet, free_port, parse_publish, publish_packet, redis_cli,
                     subscribe_packet, wait_until)
from mqtt5 import (CONTENT_TYPE, MESSAGE_EXPIRY, SESSION_EXPIRY, SHARED_AVAILABLE,
                   SUBSCRIPTION_ID, USER,
                   WILL_DELAY, ack5, disconnect5, do_connect,
                   expect_disconnect, parse_props, props, read_publish5, read_suback5,
                   subscribe5)
from test_http import _metrics, _value


def _tag(*tags):
    def deco(fn):
        fn.tags = ("cluster", "redis") + tags
        return fn
    return deco


def _timeout(seconds):
    def deco(fn):
        fn.timeout = seconds
        return fn
    return deco


# On a Redis Cluster (tests/with-redis-cluster.sh, ./dev cluster-test) the
# cases run on three masters instead of one redis-server: Context.cluster
# puts the nodes on the cluster the script started (a key prefix of the
# test's own). A case that kills, stops or restarts its Redis skips there,
# and so does one that gives one primary a replica of its own.
REDIS_CLUSTER = os.environ.get("CAIRN_REDIS_CLUSTER") == "1"


def _cli(cl, *args):
    """redis-cli on the cluster's Redis, following a Redis Cluster's
    redirections (-c) there."""
    return redis_cli(cl.redis.port, *((("-c",) if REDIS_CLUSTER else ()) + args))


if REDIS_CLUSTER:
    class _RedisCluster:
        """cl.redis on a Redis Cluster: its first master's port."""

        def __init__(self):
            self.port = int(os.environ["CAIRN_REDIS_CLUSTER_PORTS"].split(",")[0])

        def _not_here(self, *args, **kwargs):
            raise Skip("on a Redis Cluster (CAIRN_REDIS_CLUSTER=1): the case stops, kills or "
                       "restarts its redis-server, which the shared three masters do not")

        kill = start = stop = _not_here

        def log_tail(self, n=15):
            return ""

    def _ctx_redis_cluster(self, n, start=True, **options):
        harness.require_cairn("cairn's cluster mode")
        if options.get("redis_wait_replicas"):
            raise Skip("on a Redis Cluster (CAIRN_REDIS_CLUSTER=1): the case gives one "
                       "primary a replica of its own, and stops or kills it; the failover "
                       "cases cover redis_wait_replicas there")
        k = getattr(self, "_clusters", 0)
        self._clusters = k + 1
        rs = _RedisCluster()
        prefix = "cairn-it:%s:%d:%d:" % (self.name, os.getpid(), k)
        nodes = []
        for i in range(n):
            name = "node%d" % (i + 1) if k == 0 else "c%d-node%d" % (k, i + 1)
            opts = dict(persistence_backend="redis", redis_host=HOST, redis_port=rs.port,
                        redis_key_prefix=prefix, cluster=True, cluster_node_id=name)
            opts.update(options)
            b = harness.Broker(self.workdir, name, **opts)
            b.backend = "redis"
            self.brokers.append(b)
            nodes.append(b)
        if start:
            for b in nodes:
                b.start()
        return harness.Cluster(rs, prefix, nodes)

    harness.Context.cluster = _ctx_redis_cluster


# CAIRN_CLUSTER_PARTITIONS=P (./dev cluster-test runs the suite with 4 too):
# every node of every case gets cluster_log_partitions P, unless the case
# sets it.
PARTITIONS = int(os.environ.get("CAIRN_CLUSTER_PARTITIONS") or "1")
if PARTITIONS != 1:
    _ctx_cluster_one = harness.Context.cluster

    def _ctx_cluster_partitions(self, n, start=True, **options):
        options.setdefault("cluster_log_partitions", PARTITIONS)
        return _ctx_cluster_one(self, n, start=start, **options)

    harness.Context.cluster = _ctx_cluster_partitions


def _partition(topic, partitions=None):
    """The log partition of topic (harness.partition), of PARTITIONS unless
    partitions is given."""
    return harness.partition(topic, PARTITIONS if partitions is None else partitions)


def _log_key(cl, topic, partitions=None):
    """The stream that holds topic's messages (cairn-redis(5))."""
    return "%s{L:%d}:log" % (cl.prefix, _partition(topic, partitions))


# ---------------------------------------------------------------- helpers

def _reload_acl(cl, acl, rules):
    """Write rules to the ACL file every node of cl reads, send each a
    SIGHUP and wait until each has logged the reload."""
    with open(acl, "w") as f:
        f.write(rules)
    for b in cl.nodes:
        os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: all("SIGHUP" in b.log_text() and
                                 "rules" in b.log_text().split("SIGHUP")[-1]
                                 for b in cl.nodes), 3),
          "no ACL reload logged by every node%s" % cl.excerpt())


class _Mover(DurableSubscriber):
    """A DurableSubscriber that can take its session over on another node
    (_takeover) while its first connection is still open. Like a client
    that has moved, it ignores whatever the first connection still brings
    once it has opened the second: what it did not acknowledge there, the
    new owner resends (same packet id, DUP) or delivers from the log."""

    def _handle(self, c, t, f, body):
        if c is self.c:
            super()._handle(c, t, f, body)


def _subscriber(ctx, node, client_id, filters):
    """A persistent (clean_session 0) raw subscriber on node, fresh
    (session present 0), subscribed to filters [(filter, qos)]."""
    s = _Mover(node.port, client_id)
    ctx.add_cleanup(s.close)
    sp = s.connect()
    check(sp == 0, "%s: fresh session, CONNACK session present %d" % (client_id, sp))
    granted = s.subscribe(1, filters)
    check(granted == [q for _, q in filters], "%s: SUBACK %r for %r" % (client_id, granted,
                                                                        filters))
    return s


def _counts(sub):
    with sub.lock:
        out = {}
        for payload, _, _, _ in sub.received:
            out[payload] = out.get(payload, 0) + 1
        return out


def _delivery_problems(sub, acked, what, qos2=lambda p: p.endswith(b"q2"), timeout=10):
    """Everything in acked arrived at sub, and no QoS 2 payload (qos2(p))
    twice. Waits up to timeout seconds for the first and lets deliveries
    settle."""
    problems = []
    missing = sub.wait_for(acked, timeout)
    sub.settle(0.4, 3)
    if missing:
        problems.append("%s: %d of %d acknowledged messages never arrived, e.g. %r" %
                        (what, len(missing), len(acked), sorted(missing)[:5]))
    doubled = sorted(p for p, n in _counts(sub).items() if n > 1 and qos2(p))
    if doubled:
        with sub.lock:
            how = [(pid, "dup" if dup else "new") for p, _, dup, pid in sub.received
                   if p == doubled[0]]
        problems.append("%s: %d QoS 2 messages delivered more than once, e.g. %r (%r arrived "
                        "as packet ids %r)" % (what, len(doubled), doubled[:5], doubled[0], how))
    problems += ["%s: %s" % (what, e) for e in sub.errors[:3]]
    return problems


def _order_problems(sub, what, seq_of):
    """Per topic, the first arrival of each message follows publish order
    (MQTT-4.6.0-6): seq_of(payload) -> (topic key, sequence number) or
    None for payloads not checked."""
    per = {}
    seen = set()
    with sub.lock:
        received = [r[0] for r in sub.received]
    for p in received:
        k = seq_of(p)
        if k is None or p in seen:
            continue
        seen.add(p)
        per.setdefault(k[0], []).append(k[1])
    problems = []
    for topic, seq in sorted(per.items()):
        if seq != sorted(seq):
            bad = next(i for i in range(1, len(seq)) if seq[i] < seq[i - 1])
            problems.append("%s: topic %s out of publish order: ...%r..." %
                            (what, topic, seq[max(0, bad - 3):bad + 3]))
    return problems


def _seq(payload):
    """Payloads are b"<tag>-<topic key>-<n>-q<qos>"."""
    parts = payload.split(b"-")
    if len(parts) < 4:
        return None
    return parts[1].decode(), int(parts[2])


def _takeover(sub, port):
    """Opens a second connection for sub's client id (a _Mover) on port
    while the first is up, and moves sub's reader onto it. Returns
    (session present, True if the broker closed the first connection
    within 3 s)."""
    old_c, old_thread = sub.c, sub.thread
    c = RawClient(port)
    with sub.lock:  # from here on the first connection is ignored
        sub.c, sub.port = c, port
    sp, _ = c.connect(sub.client_id, clean=False)
    t = threading.Thread(target=sub._reader, args=(c,), daemon=True)
    with sub.lock:
        sub.thread = t
    t.start()
    closed = True
    if old_thread is not None:
        old_thread.join(3)
        closed = not old_thread.is_alive()
    if old_c is not None:
        old_c.close()
    return sp, closed


class _PahoPublisher:
    """A persistent (clean_session 0) paho 3.1.1 publisher that can be moved
    to another node: paho resends its unacknowledged PUBLISHes (DUP) and
    PUBRELs itself on the new connection (MQTT-4.4.0-1). acked() is the set
    of payloads whose exchange paho saw complete (PUBACK for QoS 1, PUBCOMP
    for QoS 2)."""

    def __init__(self, ctx, client_id, max_inflight=20):
        import paho.mqtt.client as mqtt
        self.c = mqtt.Client(client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        self.c.max_inflight_messages_set(max_inflight)
        self.c.reconnect_delay_set(1, 1)
        self.lock = threading.Lock()
        self.mid_payload = {}
        self.acked_mids = set()
        self.sent = []
        self.connack = threading.Event()
        self.session_present = None
        self.rc = None
        self.running = False
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        ctx.add_cleanup(self.close)

    def _on_connect(self, c, u, flags, rc):
        self.session_present = flags.get("session present", 0)
        self.rc = rc
        self.connack.set()

    def _on_publish(self, c, u, mid):
        with self.lock:
            self.acked_mids.add(mid)

    def connect(self, port, timeout=5.0):
        """(Re)connects to port; returns session present."""
        if self.running:
            self.c.loop_stop()
            self.running = False
        self.connack.clear()
        self.c.connect(HOST, port, 60)
        self.c.loop_start()
        self.running = True
        check(self.connack.wait(timeout), "paho publisher: no CONNACK from port %d" % port)
        check(self.rc == 0, "paho publisher: CONNACK rc %r" % self.rc)
        return self.session_present

    def publish(self, topic, payload, qos):
        info = self.c.publish(topic, payload, qos)
        with self.lock:
            self.mid_payload[info.mid] = payload
            self.sent.append(payload)

    def acked(self):
        with self.lock:
            return {self.mid_payload[m] for m in self.acked_mids if m in self.mid_payload}

    def open_count(self):
        with self.lock:
            return len(self.sent) - len(self.acked_mids)

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        if self.running:
            self.c.loop_stop()
            self.running = False


def _paho_traffic(pub, tag, stop, max_open=60):
    """QoS 1 and QoS 2 alternately on two topics, unique numbered payloads,
    at most max_open exchanges open (the rest waits), until stop."""
    i = 0
    while not stop.is_set():
        if pub.open_count() >= max_open:
            time.sleep(0.002)
            continue
        qos = 1 + i % 2
        pub.publish("cl/%s/%d" % (tag, qos), b"%s-%s%d-%d-q%d" % (tag.encode(), tag.encode(),
                                                                  qos, i, qos), qos)
        i += 1
        if i % 20 == 0:
            time.sleep(0.002)


def _paho_flow(ctx, cl, case, key):
    """A persistent subscriber on node 2 to cl/KEY/# at QoS 2, and a fresh
    paho publisher on node 1 sending _paho_traffic in a thread of its own:
    (subscriber, publisher, stop event, thread)."""
    sub = _subscriber(ctx, cl[1], "%s-sub" % case, [("cl/%s/#" % key, 2)])
    pub = _PahoPublisher(ctx, "%s-pub" % case)
    check(pub.connect(cl[0].port) == 0, "fresh paho publisher: session present 1")
    stop = threading.Event()
    th = threading.Thread(target=_paho_traffic, args=(pub, key, stop), daemon=True)
    th.start()
    return sub, pub, stop, th


def _raw_traffic(pub, tag, stop, counter):
    """As _paho_traffic with a harness DurablePublisher (its window bounds
    what is open), until stop or its connection is gone."""
    while not stop.is_set():
        i = counter[0]
        qos = 1 + i % 2
        if not pub.publish("cl/%s/%d" % (tag, qos), b"%s-%s%d-%d-q%d" % (tag.encode(),
                                                                         tag.encode(), qos, i,
                                                                         qos), qos, timeout=0.2):
            if not pub.connected:
                return
            continue
        counter[0] += 1
        if counter[0] % 20 == 0:
            time.sleep(0.002)


# ---------------------------------------------------------------- routing

# covers: MQTT-3.1.2-5 MQTT-4.6.0-6 MQTT-4.3.3-2
@_tag()
def test_cluster_publish_reaches_subscribers_on_another_node(ctx):
    """A publisher on node 1, QoS 0/1/2 on two topics; on node 2 a
    persistent QoS 1 subscriber, a persistent QoS 2 subscriber and a clean
    QoS 0 one: every message arrives at each, at the subscription's QoS
    (the lower of the two), in publish order per topic, QoS 2 once."""
    cl = ctx.cluster(2)
    n1, n2 = cl[0], cl[1]
    s1 = _subscriber(ctx, n2, "c1-sub-q1", [("c1/#", 1)])
    s2 = _subscriber(ctx, n2, "c1-sub-q2", [("c1/#", 2)])
    s0 = Paho(n2.port, "c1-sub-q0", ctx=ctx)
    s0.connect()
    s0.subscribe("c1/#", 0)
    pub = DurablePublisher(n1.port, "c1-pub", window=32)
    ctx.add_cleanup(pub.close)
    pub.connect(clean=True)
    sent = []
    for i in range(240):
        qos = i % 3
        topic = "c1/%s" % ("ab"[i % 2])
        payload = b"c1-%s%d-%d-q%d" % (topic[-1].encode(), qos, i, qos)
        if qos == 0:
            with pub.lock:
                pub.c.try_send(publish_packet(topic, payload, qos=0))
        else:
            check(pub.publish(topic, payload, qos, timeout=10),
                  "publisher: window stayed full 10s%s" % cl.excerpt())
        sent.append((topic, payload, qos))
    check(pub.wait_idle(10), "publisher: %d exchanges open 10s after the last PUBLISH%s" %
          (len(pub.inflight), cl.excerpt()))
    problems = []
    for s, granted in ((s1, 1), (s2, 2)):
        want = [p for _, p, _ in sent]
        missing = s.wait_for(want, 10)
        s.settle(0.3)
        if missing:
            problems.append("%s: %d of %d messages never arrived, e.g. %r" %
                            (s.client_id, len(missing), len(want), sorted(missing)[:5]))
        with s.lock:
            got = list(s.received)
        qos_of = {p: q for _, p, q in sent}
        wrong = [(p, q) for p, q, _, _ in got if q != min(qos_of.get(p, -1), granted)]
        if wrong:
            problems.append("%s (granted %d): delivered at the wrong QoS, e.g. %r" %
                            (s.client_id, granted, wrong[:5]))
        doubled = [p for p, n in _counts(s).items() if n > 1 and qos_of.get(p) == 2 and
                   granted == 2]
        if doubled:
            problems.append("%s: QoS 2 messages delivered twice: %r" % (s.client_id,
                                                                        doubled[:5]))
        problems += _order_problems(s, s.client_id, _seq)
        problems += ["%s: %s" % (s.client_id, e) for e in s.errors[:3]]
    got0 = []
    try:
        got0 = [m.payload for m in s0.get_n(len(sent), 5)]
    except TestFailure:
        while not s0.msgs.empty():
            got0.append(s0.msgs.get().payload)
    if sorted(got0) != sorted(p for _, p, _ in sent):
        problems.append("clean QoS 0 subscriber on node 2: %d of %d messages, e.g. missing %r" %
                        (len(got0), len(sent), sorted({p for _, p, _ in sent} - set(got0))[:5]))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-4 MQTT-3.1.2-5 MQTT-4.4.0-1 MQTT-4.3.3-2
@_tag()
def test_cluster_session_resumes_on_a_third_node(ctx):
    """Subscribers on node 2 leave (one with DISCONNECT, one dropping its
    socket with a QoS 1 PUBLISH unacknowledged and a QoS 2 exchange at
    PUBREL); messages are published on node 1 meanwhile; both come back on
    node 3: session present 1, the open exchanges resent with their packet
    ids (DUP on the PUBLISH), every queued message in order, no QoS 2 twice,
    and the subscriptions still deliver."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    q = _subscriber(ctx, n2, "c2-queue", [("c2/#", 2)])
    q.disconnect()
    inf = RawClient(n2.port)
    sp, _ = inf.connect("c2-inflight", clean=False)
    check(inf.subscribe(1, [("c2inf/#", 2)]) == [2], "SUBACK for c2inf/#")

    pub = RawClient(n1.port)
    pub.connect("c2-pub")
    pub.publish("c2inf/1", b"unacked-q1", qos=1, pid=1)
    pub.publish("c2inf/2", b"at-pubrel-q2", qos=2, pid=2)
    first = {}
    for _ in range(2):
        m = inf.read_publish(5)
        first[m["payload"]] = m
    check(set(first) == {b"unacked-q1", b"at-pubrel-q2"}, "in-flight client got %r%s" %
          (sorted(first), cl.excerpt()))
    q2 = first[b"at-pubrel-q2"]
    inf.send(ack_packet(PUBREC, q2["pid"]))
    _, body = inf.expect(PUBREL, 5)
    check(struct.unpack("!H", body[:2])[0] == q2["pid"], "PUBREL id")
    inf.abort()  # no PUBACK for the QoS 1 PUBLISH, no PUBCOMP

    sent = []
    for i in range(60):
        qos = 1 + i % 2
        topic = "c2/%s" % "xy"[i % 2]
        payload = b"c2-%s-%d-q%d" % (topic[-1].encode(), i, qos)
        pub.publish(topic, payload, qos=qos, pid=10 + i)
        sent.append(payload)

    problems = []
    # The in-flight client on node 3.
    inf = RawClient(n3.port)
    sp, _ = inf.connect("c2-inflight", clean=False)
    if sp != 1:
        problems.append("c2-inflight: session present %d on node 3" % sp)
    seen = {}
    end = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < end:
        try:
            t, f, body = inf.read_packet(end - time.monotonic())
        except (Closed, socket.timeout, OSError) as e:
            problems.append("c2-inflight: %s before both resends arrived (got %r)" % (e, seen))
            break
        if t == PUBLISH:
            m = parse_publish(f, body)
            seen["publish"] = m
            inf.send(ack_packet(PUBACK if m["qos"] == 1 else PUBREC, m["pid"]))
        elif t == PUBREL:
            seen["pubrel"] = struct.unpack("!H", body[:2])[0]
            inf.send(ack_packet(PUBCOMP, seen["pubrel"]))
    m = seen.get("publish")
    want_pid = first[b"unacked-q1"]["pid"]
    if not m or m["payload"] != b"unacked-q1" or m["pid"] != want_pid or not m["dup"]:
        problems.append("unacknowledged QoS 1 not resent on node 3 with DUP and id %d: %r" %
                        (want_pid, m))
    if seen.get("pubrel") != q2["pid"]:
        problems.append("PUBREL not resent on node 3 with id %d: %r" % (q2["pid"],
                                                                        seen.get("pubrel")))
    if inf.expect_silence(0.3) is False:
        problems.append("c2-inflight: more than the two resends arrived on node 3 (the QoS 2 "
                        "message again?)")

    # The queue client on node 3.
    sp = q.connect(n3.port)
    if sp != 1:
        problems.append("c2-queue: session present %d on node 3" % sp)
    problems += _delivery_problems(q, set(sent), "c2-queue")
    problems += _order_problems(q, "c2-queue", _seq)
    # Subscriptions survived the move.
    pub.publish("c2/x", b"c2-after", qos=1, pid=200)
    pub.publish("c2inf/1", b"c2inf-after", qos=1, pid=201)
    if q.wait_for({b"c2-after"}, 3):
        problems.append("c2-queue: subscription lost on node 3")
    try:
        m = inf.read_publish(3)
        if m["payload"] != b"c2inf-after":
            problems.append("c2-inflight: got %r after the move" % m["payload"])
    except (TestFailure, Closed, socket.timeout) as e:
        problems.append("c2-inflight: subscription lost on node 3 (%s)" % e)
    inf.close()
    pub.close()
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-5 MQTT-3.8.4-1
@_tag()
def test_cluster_subscribe_during_catch_up_matches_only_later_entries(ctx):
    """A persistent session subscribed to c13a/# (QoS 1) leaves node 2;
    node 1 publishes to c13a/x and, in between, to c13b/x; the session
    comes back on node 3 with a SUBSCRIBE to c13b/# in the same write as
    its CONNECT, so that node 3 subscribes it while it catches it up from
    the log. Every c13a message arrives, none of the c13b ones published
    before the SUBSCRIBE (a subscription does not deliver what was
    published before it existed, as on one broker), and a c13b message
    published after the SUBACK does."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    s = _subscriber(ctx, n2, "c13-late", [("c13a/#", 1)])
    s.disconnect()
    pub = RawClient(n1.port)
    pub.connect("c13-pub")
    queued, before = set(), set()
    for i in range(400):
        if i % 100 == 0:
            p = b"c13-before-%d" % i
            pub.publish("c13b/x", p, qos=1, pid=1 + i % 60000)
            before.add(p)
        p = b"c13-queued-%d" % i
        pub.publish("c13a/x", p, qos=1, pid=1 + i % 60000)
        queued.add(p)
    time.sleep(0.5)  # node 3 has routed them: they reach the session by its catch-up
    c = RawClient(n3.port)
    c.send(connect_packet("c13-late", clean=False) + subscribe_packet(7, [("c13b/#", 1)]))
    _, body = c.expect(CONNACK)
    problems = []
    if body[0] & 1 != 1:
        problems.append("c13-late: session present %d on node 3" % (body[0] & 1))
    t = threading.Thread(target=s._reader, args=(c,), daemon=True)
    with s.lock:
        s.c, s.port, s.thread = c, n3.port, t
    t.start()
    with s.lock:
        ok = s.lock.wait_for(lambda: 7 in s.subacks, 5)
    check(ok and s.subacks.get(7) == [1], "c13-late: SUBACK for c13b/# %r%s" %
          (s.subacks.get(7), cl.excerpt()))
    pub.publish("c13b/x", b"c13-after", qos=1, pid=60001)
    missing = s.wait_for(queued | {b"c13-after"}, 15)
    s.settle(0.5, 5)
    if missing:
        problems.append("c13-late: %d messages never arrived, e.g. %r" %
                        (len(missing), sorted(missing)[:5]))
    early = sorted(p for p in s.payloads() if p in before)
    if early:
        problems.append("c13-late: messages on c13b/x published before its SUBSCRIBE to c13b/# "
                        "were delivered through the catch-up: %r" % early)
    problems += ["c13-late: %s" % e for e in s.errors[:3]]
    pub.close()
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT5-3.1.2-5 MQTT5-3.2.2-3 MQTT5-3.1.2-23 MQTT5-4.1.0-2
@_tag("mqtt5")
def test_cluster_50_session_expiry_across_nodes(ctx):
    """MQTT 5.0: a session with a Session Expiry Interval of 300 s leaves
    node 1 (DISCONNECT) and comes back on node 3 (Clean Start 0): session
    present 1 and the QoS 1 messages published on node 2 meanwhile, in
    order. A session with expiry 0 is gone for a reconnect on another node
    (session present 0, nothing delivered), and so is one whose expiry of 1
    s ran out before it came back."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    for cid, expiry in (("c17-keep", 300), ("c17-zero", 0), ("c17-short", 1)):
        c = RawClient(n1.port)
        do_connect(c, cid, clean=True, properties=props((SESSION_EXPIRY, expiry)))
        c.send(subscribe5(1, [("c17/t", 1)]))
        check(read_suback5(c, 1) == [1], "%s: SUBACK" % cid)
        c.send(disconnect5(0))
        check(c.expect_closed(3), "%s: still open after DISCONNECT" % cid)
        c.close()
    gone_at = time.monotonic()
    p = RawClient(n2.port)
    p.connect("c17-pub")
    want = [b"c17-t-%d-q1" % i for i in range(5)]
    for i, payload in enumerate(want):
        p.publish("c17/t", payload, qos=1, pid=i + 1)
    problems = []
    c = RawClient(n3.port)
    sp, _, _ = do_connect(c, "c17-keep", clean=False, properties=props((SESSION_EXPIRY, 300)))
    if sp != 1:
        problems.append("c17-keep (expiry 300): session present %d on node 3" % sp)
    got = []
    try:
        while len(got) < len(want):
            m = read_publish5(c, 5)
            got.append(m["payload"])
            c.send(ack5(PUBACK, m["pid"]))
    except (TestFailure, Closed, socket.timeout) as e:
        problems.append("c17-keep: %s after %d messages" % (e, len(got)))
    if got != want:
        problems.append("c17-keep on node 3: got %r, want %r" % (got, want))
    c.close()
    time.sleep(max(0, gone_at + 2.0 - time.monotonic()))  # past c17-short's expiry of 1 s
    for cid in ("c17-zero", "c17-short"):
        c = RawClient(n3.port)
        sp, _, _ = do_connect(c, cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        if sp != 0:
            problems.append("%s: session present %d on node 3 after its session ended" %
                            (cid, sp))
        try:
            m = read_publish5(c, 0.5)
            problems.append("%s: a message of an ended session arrived: %r" % (cid, m))
        except socket.timeout:
            pass
        c.close()
    p.close()
    check(not problems, "\n".join(problems) + cl.excerpt())


# ---------------------------------------------------------------- node crashes

# covers: MQTT-4.3.3-2 MQTT-3.1.2-5 MQTT-4.6.0-6
@_tag("kill9")
@_timeout(45)
def test_cluster_kill9_subscriber_node(ctx):
    """QoS 1/2 traffic from a paho publisher on node 1 to a persistent
    subscriber on node 2; node 2 is killed with kill -9 mid-stream while
    the publisher goes on; the subscriber reconnects to node 3: session
    present 1, every message whose PUBACK/PUBCOMP paho saw arrives, no QoS 2
    message twice, per-topic order kept. The subscriber's queue has no
    limit (max_queued_messages 0): the flood outruns its catch-up, and a
    bounded queue would drop messages by design."""
    cl = ctx.cluster(3, max_queued_messages=0)
    n2, n3 = cl[1], cl[2]
    sub, pub, stop, th = _paho_flow(ctx, cl, "c3", "k3")
    ok = wait_until(lambda: len(sub.received) >= 150 and len(pub.acked()) >= 200, 10)
    check(ok, "no steady traffic before the kill (%d acked, %d received)%s" %
          (len(pub.acked()), len(sub.received), cl.excerpt()))
    n2.kill9()
    acked_at_kill = pub.acked()
    time.sleep(0.5)  # the publisher goes on while the subscriber is away
    problems = []
    sub.close()
    sp = sub.connect(n3.port)
    if sp != 1:
        problems.append("subscriber: session present %d on node 3 after kill -9 of node 2" % sp)
    time.sleep(0.5)
    stop.set()
    th.join(5)
    if not wait_until(lambda: pub.open_count() == 0, 10):
        problems.append("publisher: %d exchanges still open 10s after it stopped" %
                        pub.open_count())
    acked = pub.acked()
    problems += _delivery_problems(sub, acked, "subscriber")
    lost_before = acked_at_kill - set(sub.payloads())
    if lost_before:
        problems.insert(0, "%d of them were acknowledged before the kill" % len(lost_before))
    problems += _order_problems(sub, "subscriber", _seq)
    check(not problems, "%d acknowledged (%d before the kill), %d distinct delivered:\n%s%s" %
          (len(acked), len(acked_at_kill), len(_counts(sub)), "\n".join(problems),
           cl.excerpt()))


# covers: MQTT-4.3.3-2 MQTT-4.4.0-1 MQTT-3.1.2-5
@_tag("kill9")
@_timeout(45)
def test_cluster_kill9_publisher_node(ctx):
    """A persistent paho publisher on node 1 sends QoS 1/2 to a persistent
    subscriber on node 2; node 1 is killed with kill -9 mid-stream; paho
    reconnects to node 3 (session present 1) and resends what was open.
    Every message it saw acknowledged arrives; once the resends complete
    every message published arrives; no QoS 2 message twice (a QoS 2
    PUBLISH resent to another node is appended once)."""
    cl = ctx.cluster(3, max_queued_messages=0)
    n1, n3 = cl[0], cl[2]
    sub, pub, stop, th = _paho_flow(ctx, cl, "c4", "k4")
    ok = wait_until(lambda: len(pub.acked()) >= 200 and pub.open_count() > 0, 10, step=0.001)
    check(ok, "no steady traffic before the kill (%d acked)%s" % (len(pub.acked()),
                                                                  cl.excerpt()))
    n1.kill9()
    acked_at_kill = pub.acked()
    open_at_kill = pub.open_count()
    time.sleep(0.2)
    stop.set()
    th.join(5)
    problems = []
    sp = pub.connect(n3.port)
    if sp != 1:
        problems.append("publisher: session present %d on node 3 after kill -9 of node 1" % sp)
    if not wait_until(lambda: pub.open_count() == 0, 10):
        problems.append("publisher: %d exchanges still open 10s after the reconnect" %
                        pub.open_count())
    acked = pub.acked()
    problems += _delivery_problems(sub, acked, "subscriber")
    lost_before = acked_at_kill - set(sub.payloads())
    if lost_before:
        problems.insert(0, "%d of them were acknowledged before the kill" % len(lost_before))
    with pub.lock:
        never = set(pub.sent) - acked
    if never:
        problems.append("publisher: %d messages never acknowledged after the resend, e.g. %r" %
                        (len(never), sorted(never)[:5]))
    if open_at_kill == 0:
        problems.append("no exchange open at the kill: the test proves little")
    problems += _order_problems(sub, "subscriber", _seq)
    check(not problems, "%d acknowledged (%d before the kill, %d open at it), %d distinct "
          "delivered:\n%s%s" % (len(acked), len(acked_at_kill), open_at_kill, len(_counts(sub)),
                                "\n".join(problems), cl.excerpt()))


# covers: MQTT-3.1.4-2 MQTT-3.1.2-5 MQTT-4.3.3-2
@_tag("kill9", "takeover")
@_timeout(45)
def test_cluster_kill9_uninvolved_node_during_takeovers(ctx):
    """A publisher on node 1 and a persistent subscriber on node 2 exchange
    QoS 1/2 traffic while four other persistent subscribers of the same
    topics are taken over from node to node (each takeover: session present
    1 and the old connection closed); node 3 is killed with kill -9 in the
    middle, the clients it served reconnect to node 1. Nothing acknowledged
    is lost for any of the five subscribers and no QoS 2 message doubles."""
    cl = ctx.cluster(3, max_queued_messages=0)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    sub = _subscriber(ctx, n2, "c5-sub", [("cl/k5/#", 2)])
    movers = [_subscriber(ctx, (n3, n1, n2, n3)[i], "c5-mover%d" % i, [("cl/k5/#", 2)])
              for i in range(4)]
    pub = DurablePublisher(n1.port, "c5-pub", window=32)
    ctx.add_cleanup(pub.close)
    pub.connect()
    stop = threading.Event()
    counter = [0]
    th = threading.Thread(target=_raw_traffic, args=(pub, "k5", stop, counter), daemon=True)
    th.start()
    problems = []
    ring = [n1, n2, n3]
    killed = False
    moves = 0
    t_end = time.monotonic() + 3
    k = 0
    while time.monotonic() < t_end:
        if not killed and time.monotonic() > t_end - 1.8:
            n3.kill9()
            killed = True
        m = movers[k % 4]
        k += 1
        if not m.connected:  # its node was killed: reconnect elsewhere
            sp = m.connect(n1.port)
            if sp != 1:
                problems.append("%s: session present %d after its node died" %
                                (m.client_id, sp))
            continue
        here = m.port
        nxt = [b for b in ring if b.alive() and b.port != here]
        if not nxt:
            continue
        target = nxt[k % len(nxt)]
        sp, closed = _takeover(m, target.port)
        moves += 1
        if sp != 1:
            problems.append("%s: takeover on %s: session present %d" % (m.client_id,
                                                                        target.name, sp))
        if not closed:
            problems.append("%s: the connection on port %d stayed open 3s after a takeover on "
                            "%s" % (m.client_id, here, target.name))
        time.sleep(0.05)
    stop.set()
    th.join(5)
    for m in movers:
        if not m.connected:
            sp = m.connect(n1.port)
            if sp != 1:
                problems.append("%s: session present %d at the end" % (m.client_id, sp))
    if not pub.connected:
        problems.append("publisher on node 1 lost its connection")
    elif not pub.wait_idle(10):
        problems.append("publisher: %d exchanges open 10s after it stopped" %
                        len(pub.inflight))
    acked = set(pub.acked)
    if len(acked) < 100:
        problems.append("only %d messages acknowledged: the test proves little" % len(acked))
    for i, s in enumerate([sub] + movers):
        problems += _delivery_problems(s, acked, s.client_id, timeout=10 if i == 0 else 3)
    check(not problems, "%d acknowledged, %d takeovers:\n%s%s" %
          (len(acked), moves, "\n".join(problems[:20]), cl.excerpt()))


# covers: MQTT-4.3.3-2 MQTT-4.4.0-1 MQTT-3.1.2-5
@_tag("qos2", "kill9")
def test_cluster_qos2_resent_to_another_node_is_delivered_once(ctx):
    """Two persistent publishers on node 1 each have three QoS 2 messages
    answered with PUBREC there (one also completed with PUBREL/PUBCOMP).
    One moves to node 3 by a takeover, the other after kill -9 of node 1;
    on node 3 each resends its open PUBLISHes (DUP, same packet ids; the
    broker answers PUBREC and must not append them again) and then every
    PUBREL (PUBCOMP). A persistent subscriber on node 2 receives each of
    the six messages exactly once."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    sub = _subscriber(ctx, n2, "c15-sub", [("c15/#", 2)])
    pubs = {}
    for who in ("moved", "killed"):
        c = RawClient(n1.port)
        c.connect("c15-%s" % who, clean=False)
        for pid in (1, 2, 3):
            c.send(publish_packet("c15/%s" % who, b"c15-%s-%d" % (who.encode(), pid), qos=2,
                                  pid=pid))
            _, body = c.expect(PUBREC)
            check(body[:2] == struct.pack("!H", pid), "PUBREC %r, want id %d" % (body, pid))
        c.send(ack_packet(PUBREL, 1))
        _, body = c.expect(PUBCOMP)
        check(body[:2] == struct.pack("!H", 1), "PUBCOMP %r, want id 1" % body)
        pubs[who] = c
    want = {b"c15-%s-%d" % (w, i) for w in (b"moved", b"killed") for i in (1, 2, 3)}
    problems = []

    def resume(who):
        c = RawClient(n3.port)
        sp, _ = c.connect("c15-%s" % who, clean=False)
        if sp != 1:
            problems.append("c15-%s: session present %d on node 3" % (who, sp))
        for pid in (2, 3):  # MQTT-4.4.0-1: the unacknowledged PUBLISH again
            c.send(publish_packet("c15/%s" % who, b"c15-%s-%d" % (who.encode(), pid), qos=2,
                                  pid=pid, dup=True))
            t, _, body = c.read_packet(5)
            if (t, body[:2]) != (PUBREC, struct.pack("!H", pid)):
                problems.append("c15-%s: resent PUBLISH %d on node 3 answered with packet type "
                                "%d %r" % (who, pid, t, body))
        for pid in (2, 3):
            c.send(ack_packet(PUBREL, pid))
            t, _, body = c.read_packet(5)
            if (t, body[:2]) != (PUBCOMP, struct.pack("!H", pid)):
                problems.append("c15-%s: PUBREL %d on node 3 answered with packet type %d %r" %
                                (who, pid, t, body))
        return c

    moved = resume("moved")
    if not pubs["moved"].expect_closed(3):
        problems.append("node 1 kept c15-moved's first connection open after the takeover")
    n1.kill9()
    pubs["killed"].close()
    killed = resume("killed")
    missing = sub.wait_for(want, 5)
    sub.settle(0.5)
    if missing:
        problems.append("never delivered: %r" % sorted(missing))
    twice = sorted(p for p, n in _counts(sub).items() if n > 1)
    if twice:
        problems.append("QoS 2 delivered more than once: %r" % twice)
    problems += sub.errors[:3]
    for c in (moved, killed):
        c.close()
    check(not problems, "\n".join(problems) + cl.excerpt())


# ---------------------------------------------------------------- takeover

# covers: MQTT-3.1.4-2 MQTT-3.1.2-4
@_tag("takeover")
def test_cluster_takeover_across_nodes_311(ctx):
    """3.1.1: a persistent client on node 1 is taken over by the same client
    id on node 2: node 1 closes the first connection, the second gets
    session present 1 and the subscription; a clean-session client id is
    unique across nodes too."""
    cl = ctx.cluster(2)
    n1, n2 = cl[0], cl[1]
    a = RawClient(n1.port)
    sp, _ = a.connect("c6-twin", clean=False)
    check(sp == 0, "fresh session: session present %d" % sp)
    check(a.subscribe(1, [("c6/t", 1)]) == [1], "SUBACK for c6/t")
    b = RawClient(n2.port)
    sp, _ = b.connect("c6-twin", clean=False)
    check(sp == 1, "takeover on node 2: session present %d%s" % (sp, cl.excerpt()))
    check(a.expect_closed(3), "node 1 kept the first connection open 3s after the takeover "
          "on node 2%s" % cl.excerpt())
    p = RawClient(n1.port)
    p.connect("c6-pub")
    p.publish("c6/t", b"to-the-new-one", qos=1, pid=1)
    m = b.read_publish(5)
    check(m["payload"] == b"to-the-new-one", "the taken-over session lost its subscription")
    b.send(ack_packet(PUBACK, m["pid"]))
    b.send(PINGREQ_PKT)
    b.expect(PINGRESP)
    # Clean sessions: the id is still one connection cluster-wide.
    c1 = RawClient(n1.port)
    sp, _ = c1.connect("c6-clean", clean=True)
    c2 = RawClient(n2.port)
    sp, _ = c2.connect("c6-clean", clean=True)
    check(sp == 0, "clean session: session present %d" % sp)
    check(c1.expect_closed(3), "clean-session client id connected on two nodes at once%s" %
          cl.excerpt())
    c2.send(PINGREQ_PKT)
    c2.expect(PINGRESP)
    for c in (b, c2, p):
        c.close()


# covers: MQTT5-3.1.4-3 MQTT5-3.1.2-5
@_tag("takeover", "mqtt5")
def test_cluster_takeover_across_nodes_50(ctx):
    """5.0: a client with a session expiry on node 1 is taken over by the
    same client id (Clean Start 0) on node 2: node 1 sends DISCONNECT 0x8E
    (Session taken over) and closes; node 2 answers session present 1."""
    cl = ctx.cluster(2)
    n1, n2 = cl[0], cl[1]
    a = RawClient(n1.port)
    sp, _, _ = do_connect(a, "c6-five", clean=False, properties=props((SESSION_EXPIRY, 300)))
    check(sp == 0, "fresh 5.0 session: session present %d" % sp)
    a.send(subscribe5(1, [("c6/five", 1)]))
    check(read_suback5(a, 1) == [1], "SUBACK for c6/five")
    b = RawClient(n2.port)
    sp, _, _ = do_connect(b, "c6-five", clean=False, properties=props((SESSION_EXPIRY, 300)))
    check(sp == 1, "5.0 takeover on node 2: session present %d%s" % (sp, cl.excerpt()))
    try:
        expect_disconnect(a, 0x8E, 3)
    except (TestFailure, Closed, socket.timeout) as e:
        raise TestFailure("node 1 on a takeover by node 2: %s%s" % (e, cl.excerpt()))
    b.send(PINGREQ_PKT)
    b.expect(PINGRESP)
    b.close()


# covers: MQTT-3.1.2-5 MQTT-3.1.4-2
@_tag("takeover")
def test_cluster_takeover_racing_a_delivery_loses_nothing(ctx):
    """30 fresh persistent QoS 1 subscribers on node 3, the first 15
    subscribed while the log is still empty, the others just before their
    message. For each: a QoS 1 PUBLISH to it on node 1 and a takeover of
    the subscriber on node 2, at once (every other time) or as soon as the
    PUBACK arrives (plus 0 to 4 ms), while node 3 or node 2 may be routing
    the message. Every message reaches its subscriber on one of its two
    connections: the new owner resends what node 3 committed and reads the
    log from the session's position (its SUBSCRIBE) for the rest."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    subs = []
    for i in range(30):
        s = _Mover(n3.port, "c12-sub%d" % i)
        ctx.add_cleanup(s.close)
        subs.append(s)
        if i < 15:
            s.connect()
            s.subscribe(1, [("c12/%d" % i, 1)])
    pub = RawClient(n1.port)
    pub.connect("c12-pub")
    problems = []
    for i, s in enumerate(subs):
        if i >= 15:
            s.connect()
            s.subscribe(1, [("c12/%d" % i, 1)])
        if i % 2:
            pub.publish("c12/%d" % i, b"c12-%d" % i, qos=1, pid=i + 1)
            time.sleep((i % 5) * 0.001)
            sp, closed = _takeover(s, n2.port)
        else:  # the PUBLISH and the takeover at once, the PUBACK read after
            pub.send(publish_packet("c12/%d" % i, b"c12-%d" % i, qos=1, pid=i + 1))
            sp, closed = _takeover(s, n2.port)
            _, body = pub.expect(PUBACK)
            check(body == struct.pack("!H", i + 1), "PUBACK %r, want id %d" % (body, i + 1))
        if sp != 1 or not closed:
            problems.append("c12-sub%d: takeover on node 2: session present %d, first "
                            "connection %s" % (i, sp, "closed" if closed else "still open"))
    end = time.monotonic() + 5
    lost = [i for i, s in enumerate(subs)
            if s.wait_for({b"c12-%d" % i}, max(0.05, end - time.monotonic()))]
    if lost:
        problems.append("%d of 30 acknowledged messages never reached their subscriber after a "
                        "takeover racing the delivery: subscribers %r (0-14 subscribed while the "
                        "log was empty)" % (len(lost), lost))
    pub.close()
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.4-2
@_tag("takeover")
@_timeout(40)
def test_cluster_racing_connects_leave_one_connection(ctx):
    """100 CONNECTs of one client id, alternately to node 1 and node 2, from
    100 threads released together: after a settle time exactly one of the
    sockets is open (it answers PINGREQ), every other one is closed; a later
    connect takes over from it normally."""
    cl = ctx.cluster(2)
    ports = [cl[0].port, cl[1].port]
    n = 100
    barrier = threading.Barrier(n)
    socks = [None] * n
    errors = []

    def one(i):
        try:
            c = RawClient(ports[i % 2], timeout=10)
        except OSError as e:
            errors.append("connect %d: %s" % (i, e))
            barrier.abort()
            return
        socks[i] = c
        try:
            barrier.wait(10)
            c.send(connect_packet("c7-race", clean=(i % 3 == 0)))
        except (OSError, threading.BrokenBarrierError) as e:
            errors.append("CONNECT %d: %s" % (i, e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    check(not errors, "racing connects could not be sent: %r" % errors[:5])

    def drain(c):
        """The packets c received so far, and whether it is closed."""
        got = []
        try:
            while True:
                got.append(c.read_packet(0.01)[0])
        except socket.timeout:
            return got, False
        except (Closed, OSError):
            return got, True

    # Settle: wait until at most one socket is left open (bounded).
    state = [None] * n
    end = time.monotonic() + 6
    while True:
        for i, c in enumerate(socks):
            if state[i] is None or not state[i][1]:
                got, closed = drain(c)
                prev = state[i][0] if state[i] else []
                state[i] = (prev + got, closed)
        if sum(1 for s in state if not s[1]) <= 1 or time.monotonic() > end:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # a straggler close or kick may still be on its way
    live = []
    for i, c in enumerate(socks):
        if state[i][1]:
            continue
        try:
            c.send(PINGREQ_PKT)
            end = time.monotonic() + 2
            while True:
                t, _, _ = c.read_packet(max(0.01, end - time.monotonic()))
                state[i][0].append(t)
                if t == PINGRESP:
                    live.append(i)
                    break
        except (Closed, OSError, socket.timeout):
            pass
    connacked = sum(1 for s in state if s and CONNACK in s[0])
    check(len(live) == 1, "%d connections of one client id answer PINGREQ after 100 racing "
          "connects across two nodes (ids %r; %d got a CONNACK)%s" %
          (len(live), live[:10], connacked, cl.excerpt()))
    check(CONNACK in state[live[0]][0], "the surviving connection never got a CONNACK")
    # Ownership is not wedged: a new connect takes over from the survivor.
    late = RawClient(ports[(live[0] + 1) % 2])
    late.connect("c7-race", clean=False)
    check(socks[live[0]].expect_closed(3), "the survivor of the race stayed open after a "
          "later takeover on the other node%s" % cl.excerpt())
    late.send(PINGREQ_PKT)
    late.expect(PINGRESP)
    for c in socks + [late]:
        c.close()


# ---------------------------------------------------------------- retention

@_tag("retention")
def test_cluster_message_retention_trims_the_log(ctx):
    """message_retention 1: 300 QoS 1 messages published on node 1 all
    reach a persistent subscriber on node 2 and stay in the shared log
    (cairn-redis(5): PREFIX{L:p}:log, p the topic's partition) while they
    are younger than a second;
    one more append 1.5 s later trims the older ones (XTRIM MINID ~, whole
    stream nodes at a time, hence the 300)."""
    cl = ctx.cluster(2, message_retention=1)
    n1, n2 = cl[0], cl[1]
    sub = _subscriber(ctx, n2, "c14-sub", [("c14/#", 1)])
    pub = DurablePublisher(n1.port, "c14-pub", window=64)
    ctx.add_cleanup(pub.close)
    pub.connect(clean=True)
    want = [b"c14-t-%d-q1" % i for i in range(300)]
    for p in want:
        check(pub.publish("c14/t", p, 1), "publisher: window stayed full%s" % cl.excerpt())
    check(pub.wait_idle(10), "publisher: exchanges still open 10s after the last PUBLISH")
    key = _log_key(cl, "c14/t")
    xlen = int(_cli(cl, "XLEN", key)[0])
    check(xlen >= 300, "the log %s holds %d entries right after 300 appends" % (key, xlen))
    problems = _delivery_problems(sub, set(want), "subscriber", qos2=lambda p: False)
    time.sleep(1.5)
    check(pub.publish("c14/t", b"c14-t-300-q1", 1) and pub.wait_idle(5),
          "no PUBACK for the append after the pause")
    after = int(_cli(cl, "XLEN", key)[0])
    if after >= xlen:
        problems.append("message_retention 1: the log still holds %d entries (%d before) after "
                        "an append 1.5s later" % (after, xlen))
    if sub.wait_for({b"c14-t-300-q1"}, 5):
        problems.append("subscriber: the message after the pause never arrived")
    check(not problems, "\n".join(problems) + cl.excerpt())


def _park_on_an_empty_log(ctx, cl, client_id, filt):
    """A persistent subscriber of node 1 that parks its session there
    (DISCONNECT) while the shared log is still empty."""
    n1 = cl[0]
    sub = _subscriber(ctx, n1, client_id, [(filt, 1)])
    sub.disconnect()
    check(wait_until(lambda: "client %s: session parked" % client_id in n1.log_text(), 5),
          "node 1 did not park %s within 5 s%s" % (client_id, cl.excerpt()))
    return sub


# covers: MQTT-3.1.2-5
@_tag("retention")
@_timeout(40)
def test_cluster_session_parked_on_an_empty_log_is_not_trimmed(ctx):
    """A persistent session parked on node 1 while the log was empty, whose
    client comes back on node 2 after a message was published there, gets
    the message (caught up from the log's start) and is not counted as
    having lost messages to the log's trim (cairn.conf(5):
    message_retention; cairn(8): cairn_cluster_cursor_trimmed_total),
    since it left a moment ago. With message_retention 1 and 300 messages
    trimmed from the log (one more append 1.5 s later) while it was away,
    it is counted and logged."""
    cl = ctx.cluster(2)
    n2 = cl[1]
    sub = _park_on_an_empty_log(ctx, cl, "c15-sub", "c15/#")
    pub = RawClient(n2.port)
    ctx.add_cleanup(pub.close)
    pub.connect("c15-pub")
    pub.publish("c15/t", b"c15-after", qos=1, pid=1)
    problems = []
    if sub.connect(n2.port) != 1:
        problems.append("c15-sub: session present 0 on node 2")
    if sub.wait_for({b"c15-after"}, 5):
        problems.append("c15-sub: the message published while it was away never arrived")
    if "older than message_retention" in n2.log_text():
        problems.append("node 2 counted a session parked a moment ago, on an empty log, as "
                        "having lost messages to the log's trim")
    cl2 = ctx.cluster(2, message_retention=1)
    m2 = cl2[1]
    _park_on_an_empty_log(ctx, cl2, "c15-away", "c15/#")
    pub = DurablePublisher(m2.port, "c15-pub2", window=64)
    ctx.add_cleanup(pub.close)
    pub.connect(clean=True)
    for i in range(300):
        check(pub.publish("c15/t", b"c15-t-%d" % i, 1), "publisher: window stayed full")
    check(pub.wait_idle(10), "publisher: exchanges still open 10s after the last PUBLISH")
    time.sleep(1.5)
    check(pub.publish("c15/t", b"c15-t-300", 1) and pub.wait_idle(5),
          "no PUBACK for the append after the pause")
    away = RawClient(m2.port)
    ctx.add_cleanup(away.close)
    if away.connect("c15-away", clean=False)[0] != 1:
        problems.append("c15-away: session present 0 on node 2")
    if not wait_until(lambda: "client c15-away: its log cursor" in m2.log_text(), 5):
        problems.append("a session away longer than message_retention 1, while 300 messages "
                        "were trimmed from the log, was not logged as having lost some")
    check(not problems, "\n".join(problems) + cl.excerpt() + cl2.excerpt())


# ---------------------------------------------------------------- retained, wills, $share

# covers: MQTT-3.3.1-5 MQTT-3.3.1-6 MQTT-3.3.1-8 MQTT-3.3.1-9 MQTT-3.3.1-10 MQTT-3.3.1-11
@_tag("retain")
def test_cluster_retained_across_nodes(ctx):
    """A retained message set on node 1 is sent (RETAIN 1) to a later
    subscriber on node 2; replaced on node 2 (that subscriber gets the live
    copy, RETAIN 0), a subscriber on node 3 gets only the new one; cleared
    on node 3, a subscriber on node 1 gets nothing."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    pubs = []
    for b in cl.nodes:
        p = RawClient(b.port)
        p.connect("c8-rpub-%s" % b.name)
        pubs.append(p)
    pubs[0].publish("c8/r", b"v1", qos=1, pid=1, retain=True)
    s = RawClient(n2.port)
    s.connect("c8-rsub2")
    s.subscribe(1, [("c8/#", 1)])
    m = s.read_publish(5)
    check((m["payload"], m["retain"]) == (b"v1", True),
          "node 2 subscriber: %r, want the retained v1%s" % (m, cl.excerpt()))
    s.send(ack_packet(PUBACK, m["pid"]))
    pubs[1].publish("c8/r", b"v2", qos=1, pid=2, retain=True)
    live = s.read_publish(5)
    check((live["payload"], live["retain"]) == (b"v2", False),
          "node 2 subscriber, live copy of v2: %r" % live)
    s.send(ack_packet(PUBACK, live["pid"]))
    s3 = RawClient(n3.port)
    s3.connect("c8-rsub3")
    s3.subscribe(1, [("c8/#", 1)])
    m = s3.read_publish(5)
    check((m["payload"], m["retain"]) == (b"v2", True),
          "node 3 subscriber after the replace on node 2: %r%s" % (m, cl.excerpt()))
    s3.send(ack_packet(PUBACK, m["pid"]))
    check(s3.expect_silence(0.3), "node 3 subscriber got a second retained message (v1 too?)")
    pubs[2].publish("c8/r", b"", qos=1, pid=3, retain=True)
    s1 = RawClient(n1.port)
    s1.connect("c8-rsub1")
    s1.subscribe(1, [("c8/#", 1)])
    try:
        m = s1.read_publish(0.5)
        raise TestFailure("node 1 subscriber got %r after the retained message was cleared on "
                          "node 3%s" % (m, cl.excerpt()))
    except socket.timeout:
        pass
    s1.send(PINGREQ_PKT)
    s1.expect(PINGRESP)
    for c in pubs + [s, s3, s1]:
        c.close()


# covers: MQTT-3.1.2-8 MQTT-3.1.2-10
@_tag("will")
def test_cluster_will_reaches_another_node(ctx):
    """A client on node 1 with a QoS 1 will vanishes (RST): a subscriber on
    node 2 receives the will; a client that sends DISCONNECT leaves none."""
    cl = ctx.cluster(2)
    n1, n2 = cl[0], cl[1]
    w = DurableSubscriber(n2.port, "c8-watch")
    ctx.add_cleanup(w.close)
    w.connect(clean=True)
    w.subscribe(1, [("c8/will/#", 1)])
    polite = RawClient(n1.port)
    polite.connect("c8-polite", will=("c8/will/polite", b"should-not", 1, False))
    c = RawClient(n1.port)
    c.connect("c8-dies", will=("c8/will/dies", b"gone", 1, False))
    polite.disconnect()
    c.abort()
    missing = w.wait_for({b"gone"}, 5)
    check(not missing, "the will of a client of node 1 never reached node 2%s" % cl.excerpt())
    w.settle(0.3)
    check(b"should-not" not in w.payloads(), "a will published after a DISCONNECT")


@_tag("share", "mqtt5")
def test_cluster_shared_subscriptions_available(ctx):
    """Cluster mode takes $share (the Redis store reads each group for the
    nodes): 3.1.1 SUBACK grants the shared filter beside the plain one; 5.0
    CONNACK says Shared Subscription Available 1 and SUBACK grants it."""
    cl = ctx.cluster(2)
    c = RawClient(cl[0].port)
    c.connect("c8-share311")
    got = c.subscribe(1, [("$share/g/c8/s", 1), ("c8/plain", 1)])
    check(got == [1, 1], "3.1.1 SUBACK %r for [$share/g/c8/s, c8/plain], want [1, 1]%s" %
          (got, cl.excerpt()))
    c.close()
    c5 = RawClient(cl[1].port)
    _, _, pr = do_connect(c5, "c8-share50")
    check(pr.get(SHARED_AVAILABLE, 1) == 1, "5.0 CONNACK in cluster mode: Shared Subscription "
          "Available %r, want 1 (properties %r)" % (pr.get(SHARED_AVAILABLE), pr))
    c5.send(subscribe5(2, [("$share/g/c8/s", 1), ("c8/plain", 1)]))
    got = read_suback5(c5, 2)
    check(got == [1, 1], "5.0 SUBACK %r, want [1, 1]" % got)
    c5.close()


# ---------------------------------------------------------------- Redis unreachable

@_tag("outage")
def test_cluster_node_without_redis_exits_at_startup(ctx):
    """A cluster node whose Redis does not answer retries for about
    redis_connect_timeout, then exits non-zero naming host:port, as the
    single-node Redis backend does."""
    cl = ctx.cluster(1, start=False, redis_connect_timeout=1500)
    b = cl[0]
    port = free_port()
    b.options["redis_port"] = port
    b._write_conf()
    cl.redis.stop()
    t0 = time.monotonic()
    with open(b.log_path, "ab") as log:
        p = subprocess.Popen([broker_command(), "-c", b.conf_path], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, cwd=b.workdir)
    try:
        rc = p.wait(8)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise TestFailure("cluster node still running 8s after start with Redis unreachable"
                          "\n%s" % b.log_tail())
    dt = time.monotonic() - t0
    check(rc != 0, "cluster node exited 0 with Redis unreachable\n%s" % b.log_tail())
    check("127.0.0.1:%d" % port in b.log_text(), "start-up error does not name 127.0.0.1:%d\n%s"
          % (port, b.log_tail()))
    check(1.0 <= dt <= 5.0, "gave up after %.2fs with redis_connect_timeout 1500ms" % dt)


def _master_of_slot(cl, slot):
    """On a Redis Cluster: the port of the master serving slot."""
    for line in _cli(cl, "CLUSTER", "NODES"):
        f = line.split()
        if "master" not in f[2] or "fail" in f[2]:
            continue
        for r in f[8:]:
            lo, _, hi = r.partition("-")
            if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                return int(f[1].split("@")[0].rsplit(":", 1)[1])
    return None


# First levels whose topics fall in partitions 2, 1, 0 and 3 of 4.
_P4_LEVELS = ("k30a", "k30b", "k30c", "k30d")


# covers: MQTT-4.6.0-6 MQTT-3.1.2-5 MQTT-4.3.3-2
@_tag("partitions")
@_timeout(40)
def test_cluster_partitions_order_across_a_takeover(ctx):
    """cluster_log_partitions 4, three nodes: a persistent QoS 2 subscriber
    to '#' on node 2 while a publisher on node 1 sends QoS 1 and 2 messages
    round robin to four topics whose first levels fall in the four
    partitions; halfway the subscriber's session is taken over on node 3
    (catch-up from its cursor in each partition). Every partition's stream
    holds its topic's messages (and none of another's), the '#' subscriber
    gets every acknowledged message of every partition, per topic in
    publish order, and no QoS 2 message twice."""
    check(sorted(_partition(lv + "/x", 4) for lv in _P4_LEVELS) == [0, 1, 2, 3],
          "the test's topics do not cover the four partitions")
    cl = ctx.cluster(3, cluster_log_partitions=4)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    sub = _subscriber(ctx, n2, "k30-sub", [("#", 2)])
    pub = DurablePublisher(n1.port, "k30-pub", window=32)
    ctx.add_cleanup(pub.close)
    pub.connect(clean=True)
    acked, problems = set(), []
    total = 400
    for i in range(total):
        if i == total // 2:
            sp, closed = _takeover(sub, n3.port)
            if sp != 1 or not closed:
                problems.append("takeover on node 3: session present %d, first connection %s"
                                % (sp, "closed" if closed else "still open"))
        lv = _P4_LEVELS[i % 4]
        qos = 1 + (i // 4) % 2
        payload = b"k30-%s-%d-q%d" % (lv.encode(), i, qos)
        check(pub.publish("%s/t" % lv, payload, qos), "publisher: window stayed full%s"
              % cl.excerpt())
        acked.add(payload)
    check(pub.wait_idle(10), "publisher: exchanges still open 10 s after the last PUBLISH")
    for lv in _P4_LEVELS:
        key = _log_key(cl, lv + "/t", 4)
        n = int(_cli(cl, "XLEN", key)[0])
        if n != total // 4:
            problems.append("%s (topic %s/t) holds %d entries, want %d" % (key, lv, n,
                                                                          total // 4))
    problems += _delivery_problems(sub, acked, "'#' subscriber")
    problems += _order_problems(sub, "'#' subscriber", _seq)
    check(not problems, "\n".join(problems) + cl.excerpt())


@_tag("partitions", "redis-cluster")
def test_cluster_partitions_spread_over_masters(ctx):
    """On a Redis Cluster (three masters, CAIRN_REDIS_CLUSTER=1) with
    cluster_log_partitions 4, the messages of topics in the four partitions
    land in four streams ({L:0} to {L:3}) whose slots (CLUSTER KEYSLOT) are
    served by more than one master (CLUSTER NODES): the log's traffic is no
    longer on one master. Every message reaches a subscriber on another
    node."""
    if not REDIS_CLUSTER:
        raise Skip("needs a Redis Cluster: ./dev cluster-test (tests/with-redis-cluster.sh)")
    cl = ctx.cluster(2, cluster_log_partitions=4)
    sub = _subscriber(ctx, cl[1], "k31-sub", [("#", 1)])
    pub = DurablePublisher(cl[0].port, "k31-pub", window=32)
    ctx.add_cleanup(pub.close)
    pub.connect(clean=True)
    acked = set()
    for i in range(40):
        lv = _P4_LEVELS[i % 4]
        payload = b"k31-%s-%d-q1" % (lv.encode(), i)
        check(pub.publish("%s/t" % lv, payload, 1), "publisher: window stayed full")
        acked.add(payload)
    check(pub.wait_idle(10), "publisher: exchanges still open 10 s after the last PUBLISH")
    masters = {}
    for lv in _P4_LEVELS:
        key = _log_key(cl, lv + "/t", 4)
        n = int(_cli(cl, "XLEN", key)[0])
        check(n == 10, "%s holds %d entries, want 10" % (key, n))
        slot = int(_cli(cl, "CLUSTER", "KEYSLOT", key)[0])
        masters.setdefault(_master_of_slot(cl, slot), []).append(key)
    check(len(masters) >= 2, "the four partitions' streams are on one master: %r" % masters)
    problems = _delivery_problems(sub, acked, "'#' subscriber", qos2=lambda p: False)
    check(not problems, "\n".join(problems) + cl.excerpt())


def _start_refused(b, within=8):
    """Start node b by hand, expecting it to exit at start-up: its exit
    code, or a TestFailure if it still runs after within seconds."""
    b._write_conf()
    with open(b.log_path, "ab") as log:
        p = subprocess.Popen([broker_command(), "-c", b.conf_path], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, cwd=b.workdir)
    try:
        return p.wait(within)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise TestFailure("%s still running %ds after start, expected a refusal\n%s"
                          % (b.name, within, b.log_tail()))


@_tag("partitions")
def test_cluster_log_partitions_must_agree(ctx):
    """cluster_log_partitions (cairn.conf(5)): the first node records the
    number of the log's partitions in PREFIX{L:0}:partitions; a node whose
    number differs from the recorded one exits non-zero at start-up with an
    error naming both numbers, and leaves the record as it was; a node with
    the same number joins, and the running node goes on serving."""
    cl = ctx.cluster(3, start=False)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    n1.start()
    key = cl.prefix + "{L:0}:partitions"
    got = _cli(cl, "GET", key)
    check(got == [str(PARTITIONS)], "%s holds %r after the first start, expected %d%s"
          % (key, got, PARTITIONS, cl.excerpt()))
    other = 2 if PARTITIONS == 4 else 4
    n2.options["cluster_log_partitions"] = other
    rc = _start_refused(n2)
    check(rc != 0, "a node with cluster_log_partitions %d started on a log of %d partitions%s"
          % (other, PARTITIONS, cl.excerpt()))
    want = "cluster_log_partitions %d but the cluster's log has %d partitions" % (other,
                                                                                 PARTITIONS)
    check(want in n2.log_text(), "the refusal does not say '%s'\n%s" % (want, n2.log_tail()))
    check(_cli(cl, "GET", key) == [str(PARTITIONS)], "the refused node changed %s" % key)
    n3.start()
    check(n1.alive() and n3.alive(), "a node stopped%s" % cl.excerpt())
    c = Paho(n3.port, "cp-alive", ctx=ctx)
    c.connect()


@_tag("redis-cluster")
def test_cluster_redis_cluster_without_cluster_mode_is_refused(ctx):
    """On a Redis Cluster (three masters, CAIRN_REDIS_CLUSTER=1) the
    single-node Redis backend (no cluster true), whose commits span hash
    slots, exits non-zero at start-up with a message that names the server
    a Redis Cluster and its masters: it never starts and then fails every
    commit with CROSSSLOT."""
    if not REDIS_CLUSTER:
        raise Skip("needs a Redis Cluster: ./dev cluster-test (tests/with-redis-cluster.sh)")
    harness.require_cairn("cairn's Redis backend")
    port = int(os.environ["CAIRN_REDIS_PORT"])
    b = harness.Broker(ctx.workdir, "single", persistence_backend="redis", redis_host=HOST,
                       redis_port=port, redis_key_prefix="cairn-it:refused:%d:" % os.getpid(),
                       redis_connect_timeout=2000)
    with open(b.log_path, "ab") as log:
        p = subprocess.Popen([broker_command(), "-c", b.conf_path], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, cwd=b.workdir)
    try:
        rc = p.wait(8)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise TestFailure("the node still runs 8 s after start on a Redis Cluster\n%s" %
                          b.log_tail())
    check(rc != 0, "exited 0 on a Redis Cluster\n%s" % b.log_tail())
    check("127.0.0.1:%d is a Redis Cluster (3 masters" % port in b.log_text(),
          "the start-up error does not name the Redis Cluster at 127.0.0.1:%d and its 3 "
          "masters\n%s" % (port, b.log_tail()))


@_tag("outage")
@_timeout(40)
def test_cluster_redis_outage_acknowledges_nothing(ctx):
    """kill -9 of the shared redis-server: a QoS 1 PUBLISH to node 1 gets no
    PUBACK while it is down (nothing can be committed) and reaches no
    subscriber; once redis-server is back on the same port and directory,
    it is acknowledged and reaches the persistent subscriber on node 2, as
    does everything acknowledged before."""
    cl = ctx.cluster(2, redis_connect_timeout=5000)
    n1, n2 = cl[0], cl[1]
    sub = _subscriber(ctx, n2, "c9-sub", [("c9/#", 1)])
    pub = DurablePublisher(n1.port, "c9-pub", window=8)
    ctx.add_cleanup(pub.close)
    pub.connect()
    for i in range(10):
        pub.publish("c9/t", b"c9-t-%d-q1" % i, 1)
    check(pub.wait_idle(5), "no PUBACK before the outage%s" % cl.excerpt())
    before = set(pub.acked)
    check(not sub.wait_for(before, 5), "messages before the outage did not arrive%s" %
          cl.excerpt())
    cl.redis.kill()
    killed_at = time.monotonic()
    time.sleep(0.2)
    if not pub.connected:
        raise TestFailure("node 1 closed the publisher at once when Redis died%s" %
                          cl.excerpt())
    pub.publish("c9/t", b"c9-t-100-q1", 1)
    time.sleep(1.0)
    problems = []
    with pub.lock:
        early = [p for p, t in pub.acked.items() if t > killed_at]
    if early:
        problems.append("acknowledged while redis-server was down: %r" % early)
    if b"c9-t-100-q1" in sub.payloads():
        problems.append("a message sent while redis-server was down reached the subscriber")
    cl.redis.start()
    if not pub.connected:  # the node may close its clients after a while
        sp = pub.connect(n1.port)
        if sp != 1:
            problems.append("publisher: session present %d after the outage" % sp)
        pub.resend()
    if not pub.wait_idle(10):
        problems.append("no PUBACK within 10s of redis-server's restart")
    if not sub.connected:
        sp = sub.connect(n2.port)
        if sp != 1:
            problems.append("subscriber: session present %d after the outage" % sp)
    problems += _delivery_problems(sub, set(pub.acked), "subscriber", qos2=lambda p: False)
    check(not problems, "\n".join(problems) + cl.excerpt())


@_tag("outage", "mqtt5")
@_timeout(40)
def test_cluster_node_without_redis_sends_its_clients_elsewhere(ctx):
    """redis-server killed for longer than redis_connect_timeout (1500 ms):
    the nodes disconnect their clients (5.0: DISCONNECT 0x9C, use another
    server; 3.1.1: the socket closed), not before about that long; a QoS 1
    PUBLISH sent meanwhile is never acknowledged. Once redis-server is back
    the clients reconnect (to the other node), resume their sessions, and
    the publisher's resend reaches the subscriber."""
    cl = ctx.cluster(2, redis_connect_timeout=1500)
    n1, n2 = cl[0], cl[1]
    sub = _subscriber(ctx, n2, "c13-sub", [("c13/#", 1)])
    five = RawClient(n1.port)
    do_connect(five, "c13-five", clean=False, properties=props((SESSION_EXPIRY, 300)))
    pub = DurablePublisher(n1.port, "c13-pub", window=8)
    ctx.add_cleanup(pub.close)
    pub.connect()
    check(pub.publish("c13/t", b"c13-t-0-q1", 1) and pub.wait_idle(5),
          "no PUBACK before the outage%s" % cl.excerpt())
    cl.redis.kill()
    killed_at = time.monotonic()
    pub.publish("c13/t", b"c13-t-1-q1", 1)
    problems = []
    try:
        expect_disconnect(five, 0x9C, 6)
        dt = time.monotonic() - killed_at
        if dt < 1.0:
            problems.append("5.0 client disconnected %.2fs after Redis died, before "
                            "redis_connect_timeout 1500 ms" % dt)
    except (TestFailure, Closed, socket.timeout) as e:
        problems.append("5.0 client on node 1, Redis down: %s" % e)
    if not wait_until(lambda: not pub.connected and not sub.connected, 6):
        problems.append("3.1.1 clients still connected %.1fs after Redis died (publisher %s, "
                        "subscriber %s)" % (time.monotonic() - killed_at, pub.connected,
                                            sub.connected))
    with pub.lock:
        if b"c13-t-1-q1" in pub.acked:
            problems.append("a PUBLISH sent while Redis was down was acknowledged")
    cl.redis.start()
    time.sleep(0.3)

    def reconnect(client, node, what):
        end = time.monotonic() + 8
        while True:
            try:
                return client.connect(node.port)
            except (TestFailure, OSError, Closed, socket.timeout) as e:
                if time.monotonic() > end:
                    problems.append("%s: no session on %s 8s after Redis came back: %s" %
                                    (what, node.name, e))
                    return None
                time.sleep(0.2)
    # Each moves to the other node.
    for client, node in ((pub, n2), (sub, n1)):
        client.close()
        sp = reconnect(client, node, client.client_id)
        if sp is not None and sp != 1:
            problems.append("%s: session present %d on %s after the outage" %
                            (client.client_id, sp, node.name))
    if pub.connected:
        pub.resend()
        if not pub.wait_idle(8):
            problems.append("publisher: the resend was not acknowledged on node 2")
        problems += _delivery_problems(sub, set(pub.acked), "subscriber", qos2=lambda p: False)
    check(not problems, "\n".join(problems) + cl.excerpt())


def _replica_of(ctx, primary_port):
    """A private redis-server replicating 127.0.0.1:primary_port, once its
    link is up (bounded)."""
    rep = ctx.redis()
    _follow(rep, primary_port)
    return rep


def _follow(rep, primary_port):
    # Redis 7 waits 5 s for more replicas before a diskless full sync.
    redis_cli(primary_port, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
    redis_cli(rep.port, "REPLICAOF", HOST, primary_port)
    ok = wait_until(lambda: "master_link_status:up" in
                    redis_cli(rep.port, "INFO", "replication"), 10, step=0.05)
    check(ok, "the replica on port %d never linked to the primary on %d" % (rep.port,
                                                                           primary_port))


@_tag("outage", "replicas")
@_timeout(40)
def test_cluster_wait_replicas_acknowledges_only_what_a_replica_holds(ctx):
    """redis_wait_replicas 1 (cairn.conf(5), cairn-redis(5)): with the
    replica up, QoS 1 from node 1 reaches node 2's persistent subscriber;
    with it killed, a QoS 1 PUBLISH gets no PUBACK (each WAIT finds no
    replica, the commit is retried); once a new replica follows the
    primary the PUBACK comes and the message arrives, once."""
    cl = ctx.cluster(2, start=False, redis_wait_replicas=1)
    n1, n2 = cl[0], cl[1]
    rep = _replica_of(ctx, cl.redis.port)
    for b in cl.nodes:
        b.start()
    sub = _subscriber(ctx, n2, "c16-sub", [("c16/#", 1)])
    pub = DurablePublisher(n1.port, "c16-pub", window=8)
    ctx.add_cleanup(pub.close)
    pub.connect()
    for i in range(5):
        check(pub.publish("c16/t", b"c16-t-%d-q1" % i, 1), "publisher window full")
    check(pub.wait_idle(5), "no PUBACK with the replica up%s" % cl.excerpt())
    rep.kill()
    killed_at = time.monotonic()
    pub.publish("c16/t", b"c16-t-5-q1", 1)
    time.sleep(1.5)  # a commit's WAIT gives up after 1 s and is retried
    problems = []
    with pub.lock:
        early = sorted(p for p, t in pub.acked.items() if t > killed_at)
    if early:
        problems.append("acknowledged with no replica to hold it: %r" % early)
    if b"c16-t-5-q1" in sub.payloads():
        problems.append("delivered before any replica held it")
    _replica_of(ctx, cl.redis.port)  # a new one: WAIT counts any replica
    if not pub.connected:
        problems.append("publisher disconnected while the replica was down")
    elif not pub.wait_idle(10):
        problems.append("no PUBACK within 10s of the replica following again")
    problems += _delivery_problems(sub, {b"c16-t-%d-q1" % i for i in range(6)}, "subscriber",
                                   qos2=lambda p: False)
    check(not problems, "\n".join(problems) + cl.excerpt())


# ---------------------------------------------------------------- a dead node's wills

# covers: MQTT-3.1.2-8 MQTT-3.1.2-10
@_tag("will", "kill9", "janitor")
@_timeout(40)
def test_cluster_will_of_a_dead_nodes_client_published_once(ctx):
    """kill -9 of node 1 while two of its clients have wills: the one whose
    client never comes back is published once by the janitor of a
    surviving node (cairn.conf(5): a node's liveness lapses 5 s after its
    last beat, the janitor runs every second), QoS 1 to a persistent
    watcher on node 2; the one whose client reconnects to node 3 first
    (will delay 30 s, 5.0) is not published. Two surviving nodes, one
    publication."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _subscriber(ctx, n2, "c10-watch", [("c10/will/#", 1)])
    c = RawClient(n1.port)
    c.connect("c10-orphan", clean=False, will=("c10/will/orphan", b"orphaned", 1, False))
    back = RawClient(n1.port)
    do_connect(back, "c10-back", clean=False, properties=props((SESSION_EXPIRY, 300)),
               will=("c10/will/back", b"came-back", 1, False),
               will_properties=props((WILL_DELAY, 30)))
    n1.kill9()
    killed_at = time.monotonic()
    c.close()
    back.close()
    problems = []
    back = RawClient(n3.port)
    sp, _, _ = do_connect(back, "c10-back", clean=False, properties=props((SESSION_EXPIRY, 300)))
    if sp != 1:
        problems.append("c10-back (session expiry 300, CONNACK received from node 1 just before "
                        "the kill): session present %d on node 3" % sp)
    missing = w.wait_for({b"orphaned"}, 15)
    if missing:
        problems.append("no surviving node published the will of node 1's client within %.0fs" %
                        (time.monotonic() - killed_at))
    w.settle(1.5, 5)
    got = w.payloads()
    if got.count(b"orphaned") > 1:
        problems.append("the will of node 1's client was published %d times" %
                        got.count(b"orphaned"))
    if b"came-back" in got:
        problems.append("a will published although its client reconnected to node 3 within the "
                        "will delay")
    back.close()
    check(not problems, "\n".join(problems) + cl.excerpt())


class _Watcher5:
    """A clean 5.0 subscriber (RawClient) that acknowledges each QoS 1
    PUBLISH and keeps (arrival time, publish) of each in a thread."""

    def __init__(self, ctx, port, client_id, filt):
        self.c = RawClient(port)
        ctx.add_cleanup(self.c.close)
        do_connect(self.c, client_id)
        self.c.send(subscribe5(1, [(filt, 1)]))
        check(read_suback5(self.c, 1) == [1], "%s: SUBACK for %s" % (client_id, filt))
        self.got = []
        self.lock = threading.Lock()
        t = threading.Thread(target=self._read, daemon=True)
        t.start()

    def _read(self):
        try:
            while True:
                m = read_publish5(self.c, 120)
                if m["qos"]:
                    self.c.try_send(ack5(4, m["pid"]))
                with self.lock:
                    self.got.append((time.monotonic(), m))
        except Exception:
            pass

    def first(self, payload):
        with self.lock:
            return next(((t, m) for t, m in self.got if m["payload"] == payload), (None, None))

    def count(self, payload):
        with self.lock:
            return sum(1 for _, m in self.got if m["payload"] == payload)

    def wait_for(self, payloads, until):
        while time.monotonic() < until:
            if all(self.first(p)[0] is not None for p in payloads):
                return True
            time.sleep(0.1)
        return False


# covers: MQTT5-3.1.2-8 MQTT5-3.3.2-5 MQTT5-3.3.2-6 MQTT5-3.1.2-15
@_tag("will", "kill9", "janitor", "mqtt5")
@_timeout(60)
def test_cluster_janitor_will_keeps_expiry_delay_and_retain(ctx):
    """kill -9 of node 1 with four 5.0 clients whose wills the janitor of a
    surviving node publishes: a retained will with a Message Expiry
    Interval of 2 s reaches a watcher with the interval left (its other
    properties kept) and is no longer retained 3 s later, while a
    retained will without one still is (RETAIN 1 to a later subscriber on
    node 3); a will with a Will Delay Interval of 8 s does not go out
    before 8 s have passed, and one whose session (expiry 2 s) ends before
    its delay (60 s) goes out when the session ends."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n2.port, "c13w-watch", "c13w/#")
    clients = []

    def client(cid, will, will_props, expiry=0):
        c = RawClient(n1.port)
        clients.append(c)
        do_connect(c, cid, clean=expiry == 0, properties=props((SESSION_EXPIRY, expiry)),
                   will=will, will_properties=will_props)

    client("c13w-kept", ("c13w/kept", b"kept", 1, True), props((CONTENT_TYPE, "text/k")))
    client("c13w-exp", ("c13w/expiring", b"expiring", 1, True),
           props((CONTENT_TYPE, "text/e"), (MESSAGE_EXPIRY, 2), (USER, ("k", "v"))))
    client("c13w-delay", ("c13w/delayed", b"delayed", 1, False), props((WILL_DELAY, 8)), 300)
    client("c13w-ends", ("c13w/ends", b"ends", 1, False), props((WILL_DELAY, 60)), 2)
    n1.kill9()
    killed = time.monotonic()
    for c in clients:
        c.close()
    problems = []
    if not w.wait_for([b"kept", b"expiring", b"ends"], killed + 20):
        problems.append("wills missing 20 s after the kill: kept %r, expiring %r, ends %r" %
                        tuple(w.first(p)[0] is not None for p in (b"kept", b"expiring",
                                                                    b"ends")))
    t_exp, m = w.first(b"expiring")
    if m is not None:
        pr = m["props"]
        # The interval left is rounded up to whole seconds from the
        # expiry time the Redis server's clock set and the delivering
        # node's cached clock, a few ms apart: 3 is within that rounding.
        if not 0 < pr.get(MESSAGE_EXPIRY, 0) <= 3:
            problems.append("the will with a Message Expiry Interval of 2 s arrived with %r "
                            "(MQTT5-3.3.2-6: the interval left)" % pr.get(MESSAGE_EXPIRY))
        if pr.get(CONTENT_TYPE) != "text/e" or pr.get(USER) != [("k", "v")]:
            problems.append("the expiring will lost its other properties: %r" % pr)
    _, m = w.first(b"kept")
    if m is not None and (MESSAGE_EXPIRY in m["props"] or
                          m["props"].get(CONTENT_TYPE) != "text/k"):
        problems.append("the will without an expiry arrived with properties %r" % m["props"])
    t_ends, _ = w.first(b"ends")
    if t_ends is not None and t_ends - killed > 20:
        problems.append("the will whose session ended (2 s) before its delay went out %.1f s "
                        "after the kill" % (t_ends - killed))
    if t_exp is not None:
        time.sleep(max(0.0, t_exp + 3.0 - time.monotonic()))
        late = RawClient(n3.port)
        ctx.add_cleanup(late.close)
        do_connect(late, "c13w-late")
        late.send(subscribe5(1, [("c13w/#", 1)]))
        check(read_suback5(late, 1) == [1], "c13w-late: SUBACK")
        retained = {}
        try:
            while True:
                m = read_publish5(late, 1.0)
                retained[m["payload"]] = m
                if m["qos"]:
                    late.send(ack5(4, m["pid"]))
        except socket.timeout:
            pass
        if b"expiring" in retained:
            problems.append("the retained will with a Message Expiry Interval of 2 s was still "
                            "sent to a subscriber 3 s after it was published: %r" %
                            retained[b"expiring"])
        if b"kept" not in retained or not retained[b"kept"]["retain"]:
            problems.append("the retained will (no expiry) was not sent with RETAIN 1 to a later "
                            "subscriber on node 3: %r" % retained.get(b"kept"))
    if not w.wait_for([b"delayed"], killed + 30):
        problems.append("the will with a delay of 8 s never went out (30 s)")
    t_d, _ = w.first(b"delayed")
    if t_d is not None and t_d - killed < 8:
        problems.append("the will with a Will Delay Interval of 8 s went out %.1f s after its "
                        "client's node died (MQTT5-3.1.2-8)" % (t_d - killed))
    for p in (b"kept", b"expiring", b"delayed", b"ends"):
        if w.count(p) > 1:
            problems.append("the will %r was published %d times" % (p, w.count(p)))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-8 MQTT-3.1.2-10
@_tag("will", "kill9", "janitor", "acl")
@_timeout(40)
def test_cluster_janitor_will_obeys_the_acl_in_force(ctx):
    """ACL (acl_file on every node): a will to a topic the client may not
    write is refused at CONNECT on a cluster node (CONNACK 5), before its
    session is claimed; the write right of an accepted will is revoked
    (the file rewritten, SIGHUP to every node) before node 1 is killed: the
    janitor of a surviving node drops the will and says so, as one broker
    drops a will the ACL no longer allows when it fires."""
    acl = os.path.join(ctx.workdir, "acl")
    with open(acl, "w") as f:
        f.write("topic read #\ntopic write c13a/will/#\n")
    cl = ctx.cluster(3, acl_file=acl)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = DurableSubscriber(n2.port, "c13a-watch")
    ctx.add_cleanup(w.close)
    w.connect(clean=True)
    w.subscribe(1, [("c13a/#", 1)])
    bad = RawClient(n1.port)
    _, rc = bad.connect("c13a-bad", expect_rc=None, will=("c13a/other", b"x", 1, False))
    check(rc == 5, "a will to a topic the client may not write got CONNACK %d" % rc)
    check(bad.expect_closed(2), "refused connection left open")
    c = RawClient(n1.port)
    c.connect("c13a-dies", will=("c13a/will/dies", b"revoked", 1, False))
    _reload_acl(cl, acl, "topic read #\n")
    n1.kill9()
    c.close()
    dropped = wait_until(lambda: any("will to 'c13a/will/dies' dropped" in b.log_text()
                                     for b in (n2, n3)), 15)
    w.settle(0.5, 2)
    problems = []
    if b"revoked" in w.payloads():
        problems.append("the janitor published a will whose topic the ACL no longer lets its "
                        "client write")
    if not dropped:
        problems.append("no surviving node logged the dropped will within 15 s")
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-8 MQTT-3.1.2-10 MQTT5-3.1.2-8 MQTT5-3.3.2-5
@_tag("will", "kill9", "acl", "mqtt5")
@_timeout(40)
def test_cluster_claimed_will_obeys_the_acl_and_its_expiry(ctx):
    """Two 5.0 clients of node 1 have wills (no delay) and node 1 is killed;
    each reconnects to node 2 once node 1's liveness has lapsed, before a
    janitor parks its sessions (the test holds the janitor's lease), so
    that node 2's claim finds the will their lost connection left and
    leaves it to node 1 (a record under its incarnation), and the janitor,
    let run then, publishes it, as one broker does when a connection
    drops: the one whose topic the ACL no longer lets its client
    write (acl_file rewritten, SIGHUP to every node before the kill) is
    dropped and logged; the other, retained with a Message Expiry Interval
    of 2 s, reaches a watcher on node 3 and is no longer retained 3 s
    later."""
    acl = os.path.join(ctx.workdir, "acl")
    with open(acl, "w") as f:
        f.write("topic read #\ntopic write c13c/will/#\n")
    cl = ctx.cluster(3, acl_file=acl)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c13c-watch", "c13c/#")
    wills = {"c13c-revoked": (("c13c/will/revoked", b"revoked", 1, False), props()),
             "c13c-exp": (("c13c/will/exp", b"exp", 1, True), props((MESSAGE_EXPIRY, 2)))}
    first = []
    for cid, (will, wp) in sorted(wills.items()):
        c = RawClient(n1.port)
        first.append(c)
        do_connect(c, cid, clean=False, properties=props((SESSION_EXPIRY, 300)), will=will,
                   will_properties=wp)
    _reload_acl(cl, acl, "topic read #\ntopic write c13c/will/exp\n")
    # The janitor parks the node's sessions as soon as its liveness has
    # lapsed (5 s): its lease is held here meanwhile, by no node, so that
    # the claims find the wills.
    jkey = cl.prefix + ("{L:0}:cluster:janitor" if REDIS_CLUSTER else "cluster:janitor")
    _cli(cl, "SET", jkey, "0", "PX", "20000")
    n1.kill9()
    for c in first:
        c.close()
    time.sleep(6.5)
    problems = []
    for cid in sorted(wills):
        c = RawClient(n2.port)
        ctx.add_cleanup(c.close)
        sp, _, _ = do_connect(c, cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        if sp != 1:
            problems.append("%s: session present %d on node 2" % (cid, sp))
    _cli(cl, "DEL", jkey)
    if not w.wait_for([b"exp"], time.monotonic() + 10):
        problems.append("the will the claim on node 2 found (its client's node died) was not "
                        "published")
    dropped = wait_until(lambda: any("will to 'c13c/will/revoked' dropped" in n.log_text()
                                     for n in (n2, n3)), 5)
    if w.count(b"revoked"):
        problems.append("a will whose topic the ACL no longer lets its client write was "
                        "published")
    if not dropped:
        problems.append("no node (the janitor's) logged the dropped will")
    t_exp, _ = w.first(b"exp")
    if t_exp is not None:
        time.sleep(max(0.0, t_exp + 3.0 - time.monotonic()))
        late = RawClient(n3.port)
        ctx.add_cleanup(late.close)
        do_connect(late, "c13c-late")
        late.send(subscribe5(1, [("c13c/#", 1)]))
        check(read_suback5(late, 1) == [1], "c13c-late: SUBACK")
        try:
            m = read_publish5(late, 1.0)
            problems.append("3 s after a retained will with a Message Expiry Interval of 2 s "
                            "went out, a new subscriber got %r" % m)
        except socket.timeout:
            pass
    if w.count(b"exp") > 1:
        problems.append("the will was published %d times" % w.count(b"exp"))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-8 MQTT-3.1.2-10 MQTT5-3.1.2-8
@_tag("will", "kill9", "mqtt5")
@_timeout(40)
def test_cluster_will_of_a_client_back_at_once_after_its_node_died(ctx):
    """kill -9 of node 1 while three of its clients have wills (no delay):
    a 3.1.1 persistent one, a 3.1.1 clean one and a 5.0 one; each client
    reconnects to node 2 within a second, long before node 1's liveness
    lapses. As on one broker, whose will goes out when a connection breaks
    without DISCONNECT even if its client is back at once, the will the
    dead connection left goes out: node 2's claim leaves it to node 1 (which
    may have had a DISCONNECT the claim overtook), and the janitor publishes
    it once node 1's liveness has lapsed: a watcher on node 3 gets each will
    once (and nothing more after a janitor has been through node 1's
    sessions)."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c14k-watch", "c14k/#")
    first = []
    c = RawClient(n1.port)
    first.append(c)
    c.connect("c14k-p311", clean=False, will=("c14k/will/p311", b"p311", 1, False))
    c = RawClient(n1.port)
    first.append(c)
    c.connect("c14k-c311", clean=True, will=("c14k/will/c311", b"c311", 1, False))
    c = RawClient(n1.port)
    first.append(c)
    do_connect(c, "c14k-v5", clean=False, properties=props((SESSION_EXPIRY, 300)),
               will=("c14k/will/v5", b"v5", 1, False))
    n1.kill9()
    killed = time.monotonic()
    for c in first:
        c.close()
    problems = []
    back = RawClient(n2.port)
    ctx.add_cleanup(back.close)
    sp, _ = back.connect("c14k-p311", clean=False)
    if sp != 1:
        problems.append("c14k-p311: session present %d on node 2" % sp)
    back = RawClient(n2.port)
    ctx.add_cleanup(back.close)
    back.connect("c14k-c311", clean=True)
    back = RawClient(n2.port)
    ctx.add_cleanup(back.close)
    sp, _, _ = do_connect(back, "c14k-v5", clean=False, properties=props((SESSION_EXPIRY, 300)))
    if sp != 1:
        problems.append("c14k-v5: session present %d on node 2" % sp)
    if time.monotonic() - killed > 2:
        problems.append("the reconnects took %.1f s (the case needs them well inside node 1's "
                        "liveness of 5 s)" % (time.monotonic() - killed))
    wills = [b"p311", b"c311", b"v5"]
    # Node 1's liveness lapses 5 s after its last beat; the janitor runs
    # every second.
    if not w.wait_for(wills, killed + 12):
        problems.append("wills missing 12 s after node 1's kill: %r" %
                        [p for p in wills if w.first(p)[0] is None])
    time.sleep(max(0.0, killed + 13 - time.monotonic()))
    for p in wills:
        if w.count(p) > 1:
            problems.append("the will %r was published %d times" % (p, w.count(p)))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-8 MQTT-3.1.2-10
@_tag("will", "kill9", "janitor")
@_timeout(40)
def test_cluster_will_a_claim_took_survives_the_claiming_node_dying(ctx):
    """kill -9 of node 1 while its client has a will; a node that then
    claims the session dies before its next commit (the claim is made here
    by hand, with the store's claim function, for a node that never
    commits and whose liveness never beats). The will its claim took was
    not lost with it: the janitor of a surviving node, finding that node
    gone, publishes it, once, to a watcher on node 2 (the janitor's lease
    is held by no node until the claim is made, so that it does not park
    node 1's sessions first)."""
    cl = ctx.cluster(2)
    n1, n2 = cl[0], cl[1]
    w = _subscriber(ctx, n2, "c14g-watch", [("c14g/#", 1)])
    c = RawClient(n1.port)
    c.connect("c14g-dies", clean=False, will=("c14g/will/dies", b"handed-over", 1, False))
    g = cl.prefix + ("{L:0}:" if REDIS_CLUSTER else "")
    _cli(cl, "SET", g + "cluster:janitor", "0", "PX", "30000")
    n1.kill9()
    c.close()
    # Node 1's liveness lapses 5 s after its last beat.
    time.sleep(6)
    ghost = "999999"
    tok = ghost + ":1"
    _cli(cl, "SADD", g + "cluster:nodes", ghost)
    cid = "c14g-dies"
    if REDIS_CLUSTER:
        own = "%s{c:%s}:own" % (cl.prefix, cid)
        r = _cli(cl, "FCALL", "cairn_claim_s", "1", own, cl.prefix, cid, tok, own)
        old = r[0] if r else ""
        r += _cli(cl, "FCALL", "cairn_claim_g", "1", g + "log", g, cid, ghost,
                  old.split(":")[0], old)
    else:
        r = _cli(cl, "FCALL", "cairn_claim", "0", cl.prefix, cid, tok)
    check(r and not any(x.startswith("ERR") for x in r), "the claim by hand: %r" % r)
    _cli(cl, "DEL", g + "cluster:janitor")
    problems = []
    missing = w.wait_for({b"handed-over"}, 15)
    if missing:
        problems.append("the will a claim took was lost with the claiming node (no janitor "
                        "published it within 15 s)")
    w.settle(1.5, 5)
    if w.payloads().count(b"handed-over") > 1:
        problems.append("the will was published %d times" %
                        w.payloads().count(b"handed-over"))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-8 MQTT-3.1.4-2 MQTT5-3.1.2-8 MQTT5-3.1.4-3
@_tag("will", "mqtt5")
@_timeout(30)
def test_cluster_takeover_from_a_live_node_publishes_the_will_once(ctx):
    """Clients of node 1 with wills are taken over by a new connection of
    the same client id on node 2 while node 1 is alive and their first
    connection open: node 1 closes it (5.0: DISCONNECT 0x8E) and the will
    of a 3.1.1 client and of a 5.0 client with Will Delay 0 goes out once,
    as at a takeover on one broker, to a watcher on node 3; that of a 5.0
    client with a Will Delay of 30 s does not (the new connection came
    before the delay passed)."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c14t-watch", "c14t/#")
    old311 = RawClient(n1.port)
    ctx.add_cleanup(old311.close)
    old311.connect("c14t-311", clean=False, will=("c14t/will/311", b"t311", 1, False))
    old5 = RawClient(n1.port)
    ctx.add_cleanup(old5.close)
    do_connect(old5, "c14t-v5", clean=False, properties=props((SESSION_EXPIRY, 300)),
               will=("c14t/will/v5", b"t5", 1, False))
    old5d = RawClient(n1.port)
    ctx.add_cleanup(old5d.close)
    do_connect(old5d, "c14t-v5d", clean=False, properties=props((SESSION_EXPIRY, 300)),
               will=("c14t/will/v5d", b"t5d", 1, False), will_properties=props((WILL_DELAY, 30)))
    problems = []
    new = RawClient(n2.port)
    ctx.add_cleanup(new.close)
    if new.connect("c14t-311", clean=False)[0] != 1:
        problems.append("c14t-311: session present 0 at the takeover on node 2")
    for cid in ("c14t-v5", "c14t-v5d"):
        new = RawClient(n2.port)
        ctx.add_cleanup(new.close)
        sp, _, _ = do_connect(new, cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        if sp != 1:
            problems.append("%s: session present 0 at the takeover on node 2" % cid)
    if not old311.expect_closed(5):
        problems.append("node 1 left the 3.1.1 connection taken over on node 2 open")
    for c in (old5, old5d):
        try:
            expect_disconnect(c, 0x8E, 5)
        except TestFailure as e:
            problems.append("the 5.0 connection taken over on node 2: %s" % e)
    if not w.wait_for([b"t311", b"t5"], time.monotonic() + 10):
        problems.append("wills missing 10 s after the takeover: 3.1.1 %r, 5.0 %r" %
                        (w.first(b"t311")[0] is not None, w.first(b"t5")[0] is not None))
    time.sleep(1.5)
    for p in (b"t311", b"t5"):
        if w.count(p) > 1:
            problems.append("the will %r was published %d times" % (p, w.count(p)))
    if w.count(b"t5d"):
        problems.append("the will with a Will Delay of 30 s went out at the takeover "
                        "(MQTT5-3.1.2-8: a new connection came before the delay passed)")
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT5-3.1.2-8 MQTT5-3.1.2-4
@_tag("will", "kill9", "mqtt5")
@_timeout(40)
def test_cluster_clean_start_on_another_node_publishes_a_delayed_will(ctx):
    """5.0 clients with a Will Delay of 30 s and a Session Expiry Interval
    of 60 s, each taken over on node 2 by a new connection of its client
    id. As on one broker, a takeover with Clean Start 1 ends the old
    session, so its delayed will goes out at once (once, to a watcher on
    node 3); with Clean Start 0 the session goes on and the will does not
    go out (the new connection came before the delay passed). The old
    connections: on node 1, killed with kill -9 (the claim on node 2 lands
    long before node 1's liveness lapses); on node 3, alive and open; on
    node 3, closed without DISCONNECT (its session parked in the store,
    its will waiting for the delay)."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c14c-watch", "c14c/#")
    olds = []
    where = {"dc": n1, "dk": n1, "lc": n3, "lk": n3, "pc": n3, "pk": n3}
    for k, node in sorted(where.items()):
        c = RawClient(node.port)
        ctx.add_cleanup(c.close)
        olds.append(c)
        do_connect(c, "c14c-" + k, clean=False, properties=props((SESSION_EXPIRY, 60)),
                   will=("c14c/will/" + k, k.encode(), 1, False),
                   will_properties=props((WILL_DELAY, 30)))
    for c, k in zip(olds, sorted(where)):
        if k.startswith("p"):
            c.close()  # no DISCONNECT: the will waits for its delay
    time.sleep(1)  # the parks are committed
    n1.kill9()
    killed = time.monotonic()
    problems = []
    for k in sorted(where):
        new = RawClient(n2.port)
        ctx.add_cleanup(new.close)
        clean = k.endswith("c")
        sp, _, _ = do_connect(new, "c14c-" + k, clean=clean,
                              properties=props((SESSION_EXPIRY, 60)))
        if sp != (0 if clean else 1):
            problems.append("c14c-%s: session present %d on node 2 (Clean Start %d)" %
                            (k, sp, clean))
    if time.monotonic() - killed > 2:
        problems.append("the reconnects took %.1f s (the case needs them well inside node 1's "
                        "liveness of 5 s)" % (time.monotonic() - killed))
    due = [b"dc", b"lc", b"pc"]
    # The will of the dead node's connection (dc) is left to that node by
    # the claim (it may have had a DISCONNECT the claim overtook): the
    # janitor publishes it once node 1's liveness has lapsed (5 s).
    if not w.wait_for(due, killed + 12):
        problems.append("delayed wills missing 12 s after node 1's kill (a Clean Start 1 on "
                        "node 2 ended their sessions): %r" % [p for p in due
                                                              if w.first(p)[0] is None])
    # Node 1's liveness lapses 5 s after its last beat; the janitor runs
    # every second: give it time to go through node 1's sessions.
    time.sleep(max(0.0, killed + 13 - time.monotonic()))
    for p in due:
        if w.count(p) > 1:
            problems.append("the will %r was published %d times" % (p, w.count(p)))
    for p in (b"dk", b"lk", b"pk"):
        if w.count(p):
            problems.append("the will %r of a session that went on with Clean Start 0 went out "
                            "before its delay (MQTT5-3.1.2-8)" % p)
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.1.2-10 MQTT-3.14.4-3 MQTT5-3.1.2-10 MQTT5-3.14.4-3
@_tag("will", "mqtt5")
@_timeout(40)
def test_cluster_disconnect_then_reconnect_elsewhere_leaves_no_will(ctx):
    """Persistent clients of node 1 with wills (30 of 3.1.1, 10 of 5.0
    with no Will Delay) each send DISCONNECT (5.0: reason 0x00) and at
    once, without waiting for node 1 to close, connect again with the same
    client id (Clean Start 0) to node 2. DISCONNECT discards the will, so
    a watcher on node 3 must get none of them, however the claim on node 2
    races node 1's commit of the disconnected session (the claim must not
    publish a will the live previous node discarded)."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c14d-watch", "c14d/#")
    olds = []
    for i in range(40):
        cid = "c14d-%02d" % i
        c = RawClient(n1.port)
        ctx.add_cleanup(c.close)
        if i < 30:
            c.connect(cid, clean=False, will=("c14d/will/" + cid, cid.encode(), 1, False))
        else:
            do_connect(c, cid, clean=False, properties=props((SESSION_EXPIRY, 300)),
                       will=("c14d/will/" + cid, cid.encode(), 1, False))
        olds.append((cid, c))
    problems = []
    for i, (cid, c) in enumerate(olds):
        c.send(DISCONNECT_PKT if i < 30 else disconnect5(0))
        new = RawClient(n2.port)
        ctx.add_cleanup(new.close)
        if i < 30:
            sp, _ = new.connect(cid, clean=False)
        else:
            sp, _, _ = do_connect(new, cid, clean=False, properties=props((SESSION_EXPIRY, 300)))
        if sp != 1:
            problems.append("%s: session present %d on node 2" % (cid, sp))
    time.sleep(3)
    sent = sorted(cid for cid, _ in olds if w.count(cid.encode()))
    if sent:
        problems.append("%d of 40 wills published after DISCONNECT (MQTT-3.14.4-3, "
                        "MQTT5-3.14.4-3): %s" % (len(sent), ", ".join(sent)))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT-3.14.4-3 MQTT5-3.14.4-3
@_tag("will")
@_timeout(60)
def test_cluster_takeover_reads_a_disconnect_behind_a_full_output(ctx):
    """Persistent 3.1.1 clients of node 1 with wills subscribe to a topic
    and read nothing: node 1's output to them fills (megabytes published)
    and it stops reading them. Each then sends 512 KiB of QoS 0 PUBLISHes
    (more than one read takes), one of them a DISCONNECT after those, and
    connects again (Clean Start 0) on node 2. The claim leaves node 1 the
    wills; node 1 reads what each connection holds, however full its
    output, to its end: the will of the client that sent DISCONNECT must
    not reach a watcher on node 3 (MQTT-3.14.4-3), the other's must, once."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c3f-watch", "c3f/will/#")
    stuck = {}
    for k in ("d", "k"):
        c = RawClient(n1.port)
        ctx.add_cleanup(c.close)
        c.connect("c3f-" + k, clean=False, will=("c3f/will/" + k, k.encode(), 1, False))
        check(c.subscribe(1, [("c3f/big", 0)]) == [0], "c3f-%s: SUBACK" % k)
        stuck[k] = c
    # A reader of the same topic on node 1: once it has every message,
    # node 1 has routed them to the others too.
    r = RawClient(n1.port, timeout=30)
    ctx.add_cleanup(r.close)
    r.connect("c3f-r", clean=True)
    check(r.subscribe(1, [("c3f/big", 0)]) == [0], "c3f-r: SUBACK")
    p = RawClient(n2.port, timeout=30)
    ctx.add_cleanup(p.close)
    p.connect("c3f-p", clean=True)
    big, count = b"x" * (1 << 20), 12
    for i in range(count):
        p.send(publish_packet("c3f/big", big, qos=1, pid=i + 1))
        p.expect(PUBACK)
    got = 0
    while got < count:
        t, _, _ = r.read_packet()
        got += t == PUBLISH
    # 12 MB for each of the two, which read nothing: the sockets hold a
    # few, node 1's output the rest, far over its mark.
    junk = publish_packet("c3f/junk", b"j" * 1000) * 512
    stuck["d"].send(junk + DISCONNECT_PKT)
    stuck["k"].send(junk)
    problems = []
    for k in ("d", "k"):
        new = RawClient(n2.port)
        ctx.add_cleanup(new.close)
        sp, _ = new.connect("c3f-" + k, clean=False)
        if sp != 1:
            problems.append("c3f-%s: session present %d on node 2" % (k, sp))
    if not w.wait_for([b"k"], time.monotonic() + 10):
        problems.append("the will of the client that sent no DISCONNECT is missing 10 s after "
                        "its takeover")
    time.sleep(2)
    if w.count(b"d"):
        problems.append("the will of a client whose DISCONNECT node 1 had not read (its output "
                        "full, 512 KiB before it) went out (MQTT-3.14.4-3)")
    if w.count(b"k") > 1:
        problems.append("the will of c3f-k went out %d times" % w.count(b"k"))
    check(not problems, "\n".join(problems) + cl.excerpt())


@_tag("will")
@_timeout(40)
def test_cluster_will_kept_when_the_client_comes_back_before_the_kick(ctx):
    """A 3.1.1 client of node 1 with a will connects again (Clean Start 0)
    on node 2 while its first connection stays open, then at once on node
    1 again. The claim on node 2 leaves node 1 the first connection's will
    (due: a takeover), but its kick is lost (node 1's control link to
    Redis was just cut; it comes back after a second), so node 1's own
    claim comes before node 1 hears of it: the will of the first
    connection, taken over without DISCONNECT, must still go out, once, to
    a watcher on node 3."""
    cl = ctx.cluster(3)
    n1, n2, n3 = cl[0], cl[1], cl[2]
    w = _Watcher5(ctx, n3.port, "c6b-watch", "c6b/#")
    first = RawClient(n1.port)
    ctx.add_cleanup(first.close)
    first.connect("c6b", clean=False, will=("c6b/will", b"w1", 1, False))
    # Every node's control link goes (it subscribes again after 1 s).
    out = _cli(cl, "CLIENT", "KILL", "TYPE", "pubsub")
    check(out and out[0] != "0", "CLIENT KILL TYPE pubsub: %r" % out)
    problems = []
    t0 = time.monotonic()
    for node in (n2, n1):
        c = RawClient(node.port)
        ctx.add_cleanup(c.close)
        sp, _ = c.connect("c6b", clean=False)
        if sp != 1:
            problems.append("session present %d on node %s" % (sp, node.name))
    if time.monotonic() - t0 > 0.8:
        raise Skip("the two connects took %.1f s: node 1's control link may be back"
                   % (time.monotonic() - t0))
    if not w.wait_for([b"w1"], time.monotonic() + 10):
        problems.append("the will of the first connection (taken over on node 2 without "
                        "DISCONNECT) never went out")
    time.sleep(1.5)
    if w.count(b"w1") > 1:
        problems.append("the will went out %d times" % w.count(b"w1"))
    check(not problems, "\n".join(problems) + cl.excerpt())


# ---------------------------------------------------------------- shared subscriptions

# A group's messages cross nodes through the store: each group reads the log
# once for the whole cluster (a Redis consumer group per partition), and the
# node that reads an entry gives it to one of its online members.

class _Member(_Mover):
    """A member that can also leave: unsubscribe() waits for UNSUBACK."""

    def _handle(self, c, t, f, body):
        if t == UNSUBACK and c is self.c:
            self.subacks[("un", struct.unpack("!H", body[:2])[0])] = True
        else:
            super()._handle(c, t, f, body)

    def unsubscribe(self, pid, filters, timeout=5.0):
        with self.lock:
            self.c.send(harness.unsubscribe_packet(pid, filters))
            ok = self.lock.wait_for(lambda: ("un", pid) in self.subacks, timeout)
        check(ok, "%s: no UNSUBACK" % self.client_id)


def _share_members(ctx, cl, tag, where, filt, qos=2):
    """Persistent raw members of filt (a "$share/..." filter) at qos, the
    i-th on node where[i], as "TAG-mI"."""
    out = []
    for i, n in enumerate(where):
        s = _Member(cl[n].port, "%s-m%d" % (tag, i))
        ctx.add_cleanup(s.close)
        sp = s.connect()
        check(sp == 0, "%s: fresh session, CONNACK session present %d" % (s.client_id, sp))
        granted = s.subscribe(1, [(filt, qos)])
        check(granted == [qos], "%s: SUBACK %r for %s" % (s.client_id, granted, filt))
        out.append(s)
    return out


def _share_counts(members):
    """payload -> deliveries, over every member."""
    out = {}
    for m in members:
        for p, n in _counts(m).items():
            out[p] = out.get(p, 0) + n
    return out


def _share_wait(members, want, timeout=15):
    """Waits until every payload in want reached some member, then for the
    deliveries to settle. Returns the payloads still missing."""
    want = set(want)
    end = time.monotonic() + timeout
    while time.monotonic() < end and want - set(_share_counts(members)):
        time.sleep(0.05)
    for m in members:
        m.settle(0.4, 3)
    return want - set(_share_counts(members))


def _group_pending(cl, topic, key):
    """The entries of shared group key ("GROUP/FILTER") in topic's log
    stream read and not yet acknowledged (-1: no such group)."""
    out = _cli(cl, "XPENDING", _log_key(cl, topic), key)
    return int(out[0]) if out else -1


def _xinfo_groups(cl, topic):
    """The consumer groups of topic's log stream, by name."""
    out = _cli(cl, "XINFO", "GROUPS", _log_key(cl, topic))
    return [out[i + 1] for i in range(0, len(out) - 1) if out[i] == "name"]


# covers: MQTT5-4.8.2-1
@_tag("share")
def test_cluster_shared_subscription_across_nodes(ctx):
    """Members of one share group on node 1 and node 2: each message
    published on node 3 reaches exactly one member."""
    cl = ctx.cluster(3)
    members = []
    for i, b in enumerate((cl[0], cl[1])):
        s = _subscriber(ctx, b, "c11-member%d" % i, [("$share/g/c11/#", 1)])
        members.append(s)
    p = RawClient(cl[2].port)
    p.connect("c11-pub")
    want = [b"c11-t-%d-q1" % i for i in range(40)]
    for i, payload in enumerate(want):
        p.publish("c11/t", payload, qos=1, pid=i + 1)
    end = time.monotonic() + 10
    while time.monotonic() < end and sum(len(m.payloads()) for m in members) < len(want):
        time.sleep(0.05)
    got = sorted(sum((m.payloads() for m in members), []))
    check(got == sorted(want), "share group across nodes: %d deliveries for %d messages%s" %
          (len(got), len(want), cl.excerpt()))
    p.close()


# covers: MQTT5-4.8.2-3
@_tag("share", "qos2")
@_timeout(45)
def test_cluster_shared_qos1_qos2_once_each(ctx):
    """Members of $share/gq/+/t on node 1 and node 2 (QoS 2 granted; the
    filter's first level is a wildcard, so the group reads every partition),
    a publisher on node 3: QoS 1 and QoS 2 on four topics, with messages on
    topics the filter does not match among them. While no node dies every
    acknowledged message reaches exactly one member once, at the QoS it was
    published with, and nothing unmatched reaches a member."""
    cl = ctx.cluster(3)
    members = _share_members(ctx, cl, "c13q", [0, 1], "$share/gq/+/t")
    pub = DurablePublisher(cl[2].port, "c13q-pub", window=32)
    ctx.add_cleanup(pub.close)
    pub.connect(clean=True)
    for i in range(240):
        qos = 1 + i % 2
        if i % 10 == 9:
            check(pub.publish("c13q%d/other" % (i % 4), b"c13q-x-%d" % i, qos),
                  "publisher: window stayed full%s" % cl.excerpt())
            continue
        check(pub.publish("c13q%d/t" % (i % 4), b"c13q-%d-q%d" % (i, qos), qos),
              "publisher: window stayed full%s" % cl.excerpt())
    check(pub.wait_idle(10), "publisher: exchanges still open 10s after the last PUBLISH")
    acked = {p for p in pub.acked if not p.startswith(b"c13q-x")}
    missing = _share_wait(members, acked)
    counts = _share_counts(members)
    problems = []
    if missing:
        problems.append("%d of %d acknowledged messages reached no member, e.g. %r" %
                        (len(missing), len(acked), sorted(missing)[:5]))
    twice = sorted(p for p, n in counts.items() if n > 1)
    if twice:
        problems.append("%d messages reached the group more than once, e.g. %r" %
                        (len(twice), twice[:5]))
    stray = sorted(p for p in counts if p.startswith(b"c13q-x"))
    if stray:
        problems.append("%d messages on unmatched topics delivered, e.g. %r" %
                        (len(stray), stray[:3]))
    for m in members:
        with m.lock:
            wrong = [(p, q) for p, q, _, _ in m.received if int(p[-1:]) != q]
        if wrong:
            problems.append("%s: delivered at another QoS than published: %r" %
                            (m.client_id, wrong[:3]))
        problems += ["%s: %s" % (m.client_id, e) for e in m.errors[:3]]
    check(not problems, "%d acknowledged, per member %r:\n%s%s" %
          (len(acked), [len(m.received) for m in members], "\n".join(problems), cl.excerpt()))


def _share_member_node_lost(ctx, tag, filt, traffic, lose, event, after, pause=0.0):
    """Members TAG-m0 on node 1 and TAG-m1 on node 2 of filt, a paho
    publisher TAG-pub on node 3 sending QoS 1/2 (_paho_traffic(traffic));
    once traffic is steady to both, node 2 is lost by lose(node 2) (event:
    "the kill", for a message), then after pause seconds its member
    reconnects to node 3 (after: "kill -9 of node 2", for a message) and
    the publisher stops. Returns the cluster, the members, the payloads
    acknowledged to paho in the end and when node 2 was lost, when that was
    (time.monotonic()), those acknowledged that reached no member
    (_share_wait, 20 s), and the problems found so far."""
    cl = ctx.cluster(3, max_queued_messages=0)
    n2, n3 = cl[1], cl[2]
    members = _share_members(ctx, cl, tag, [0, 1], filt)
    pub = _PahoPublisher(ctx, "%s-pub" % tag)
    check(pub.connect(n3.port) == 0, "fresh paho publisher: session present 1")
    stop = threading.Event()
    th = threading.Thread(target=_paho_traffic, args=(pub, traffic, stop), daemon=True)
    th.start()
    ok = wait_until(lambda: len(members[1].received) >= 50 and len(pub.acked()) >= 200, 10)
    check(ok, "no steady traffic to both members before %s (%d acked, %r received)%s" %
          (event, len(pub.acked()), [len(m.received) for m in members], cl.excerpt()))
    lose(n2)
    lost_at = time.monotonic()
    acked_at_loss = pub.acked()
    time.sleep(pause)
    problems = []
    members[1].close()
    sp = members[1].connect(n3.port)
    if sp != 1:
        problems.append("member 1: session present %d on node 3 after %s" % (sp, after))
    time.sleep(0.5)
    stop.set()
    th.join(5)
    if not wait_until(lambda: pub.open_count() == 0, 10):
        problems.append("publisher: %d exchanges still open 10s after it stopped" %
                        pub.open_count())
    acked = pub.acked()
    missing = _share_wait(members, acked, timeout=20)
    return cl, members, acked, acked_at_loss, lost_at, missing, problems


# covers: MQTT5-4.8.2-4
@_tag("share", "kill9")
@_timeout(60)
def test_cluster_shared_member_node_kill9(ctx):
    """Members on node 1 and node 2, a paho publisher on node 3 sending QoS
    1/2; node 2 is killed with kill -9 mid-stream and its member reconnects
    to node 3. Every message paho saw acknowledged reaches some member:
    what node 2 had read and not acknowledged is taken over by another
    member's node after the idle time, but what node 2's commits had given
    its member stays that member's: no QoS 1 or 2 message reaches both
    members (test_cluster_share has the kill at the worst moment). A
    member may get a message twice itself (QoS 1 resent): counted, shown."""
    cl, members, acked, acked_at_kill, lost_at, missing, problems = _share_member_node_lost(
        ctx, "c13k", "$share/gk/cl/k13/#", "k13", lambda n: n.kill9(), "the kill",
        "kill -9 of node 2", pause=0.5)
    # Past the idle time and a claim round: a takeover would have come.
    time.sleep(max(0.0, lost_at + 8.0 - time.monotonic()))
    for m in members:
        m.settle(0.4, 3)
    if missing:
        missing = set(acked) - set(_share_counts(members))
    if missing:
        problems.append("%d of %d acknowledged messages reached no member (%d acknowledged "
                        "before the kill), e.g. %r" % (len(missing), len(acked),
                                                       len(acked_at_kill & missing),
                                                       sorted(missing)[:5]))
    both = sorted(set(_counts(members[0])) & set(_counts(members[1])))
    q2 = [p for p in both if p.endswith(b"q2")]
    if q2:
        problems.append("%d QoS 2 messages reached both members, e.g. %r" % (len(q2), q2[:5]))
    if len(both) > len(q2):
        problems.append("%d QoS 1 messages reached both members, e.g. %r" %
                        (len(both) - len(q2), [p for p in both if p not in q2][:5]))
    counts = _share_counts(members)
    twice = sorted(p for p, n in counts.items() if n > 1)
    for m in members:
        problems += ["%s: %s" % (m.client_id, e) for e in m.errors[:3]]
    print("kill -9 of a member's node: %d acknowledged, %d delivered more than once "
          "(to one member), per member %r" % (len(acked), len(twice),
                                              [len(m.received) for m in members]))
    check(not problems, "\n".join(problems) + cl.excerpt())


# covers: MQTT5-4.8.2-3 MQTT5-4.8.2-1
@_tag("share", "mqtt5")
def test_cluster_shared_mixed_versions(ctx):
    """A 3.1.1 member on node 1 and a 5.0 member (Subscription Identifier
    7) on node 2 in one group, the publisher on node 3: each message
    reaches one of them once; the 5.0 copies carry identifier 7, at the
    QoS granted (1, lower than the published 2); the retained message
    published before the SUBSCRIBEs reaches neither."""
    cl = ctx.cluster(3)
    p = RawClient(cl[2].port)
    p.connect("c13v-pub")
    p.publish("c13v/r", b"c13v-retained", qos=1, pid=1, retain=True)
    m3 = _subscriber(ctx, cl[0], "c13v-m311", [("$share/gv/c13v/#", 1)])
    m5 = RawClient(cl[1].port)
    ctx.add_cleanup(m5.close)
    _, _, pr = do_connect(m5, "c13v-m5", clean=False, properties=props((SESSION_EXPIRY, 300)))
    check(pr.get(SHARED_AVAILABLE, 1) == 1, "5.0 CONNACK in cluster mode: Shared Subscription "
          "Available %r, want 1" % pr.get(SHARED_AVAILABLE))
    m5.send(subscribe5(1, [("$share/gv/c13v/#", 1)], props((SUBSCRIPTION_ID, 7))))
    check(read_suback5(m5, 1) == [1], "5.0 member: SUBACK")
    got5 = []
    lock = threading.Lock()

    def read5():
        try:
            while True:
                m = read_publish5(m5, 3)
                with lock:
                    got5.append(m)
                if m["qos"]:
                    m5.send(ack5(PUBACK, m["pid"]))
        except (Closed, socket.timeout, OSError, TestFailure):
            pass

    th = threading.Thread(target=read5, daemon=True)
    th.start()
    want = [b"c13v-%d" % i for i in range(60)]
    for i, payload in enumerate(want):
        p.publish("c13v/t/%d" % (i % 3), payload, qos=2, pid=i + 2)
    end = time.monotonic() + 10
    while time.monotonic() < end and len(m3.payloads()) + len(got5) < len(want):
        time.sleep(0.05)
    m3.settle(0.5, 3)
    th.join(6)
    problems = []
    with lock:
        p5 = [m["payload"] for m in got5]
        bad_id = [m["payload"] for m in got5 if m["props"].get(SUBSCRIPTION_ID) != [7]]
        bad_q5 = [m["payload"] for m in got5 if m["qos"] != 1]
    got = sorted(m3.payloads() + p5)
    if got != sorted(want):
        problems.append("%d deliveries for %d messages (3.1.1 member %d, 5.0 member %d)" %
                        (len(got), len(want), len(m3.payloads()), len(p5)))
    if b"c13v-retained" in got:
        problems.append("the retained message was sent on a shared SUBSCRIBE")
    if bad_id:
        problems.append("5.0 copies without Subscription Identifier 7: %r" % bad_id[:3])
    if bad_q5 or any(q != 1 for _, q, _, _ in m3.received):
        problems.append("a copy above the granted QoS 1")
    check(not problems, "\n".join(problems) + cl.excerpt())
    p.close()


# covers: MQTT5-4.8.2-3
@_tag("share")
@_timeout(45)
def test_cluster_shared_waits_offline_and_takes_over_a_dead_reader(ctx):
    """A group whose only member is offline (its persistent session parked)
    is read by no node: 20 QoS 1 messages wait in its consumer group. Ten
    of them are then read as a node that died would have left them
    (XREADGROUP as consumer "dead", never acknowledged). The member
    reconnects on node 2: the ten others arrive at once, the ten left
    pending after the takeover idle time (XAUTOCLAIM), and every entry is
    acknowledged in the end (nothing pending). Node 2's /metrics counts
    them (cairn(8): cairn_cluster_share_delivered_total, ..._taken_over_total,
    ..._acks_total)."""
    cl = ctx.cluster(3, start=False)
    hp = free_port()
    cl[1].options["http_listener"] = "%d 127.0.0.1" % hp
    cl[1]._write_conf()
    for b in cl.nodes:
        b.start()
    m = _share_members(ctx, cl, "c13w", [0], "$share/gw/c13w/#", qos=1)[0]
    m.disconnect()
    p = RawClient(cl[2].port)
    p.connect("c13w-pub")
    want = [b"c13w-%d" % i for i in range(20)]
    for i, payload in enumerate(want):
        p.publish("c13w/t", payload, qos=1, pid=i + 1)
    key = _log_key(cl, "c13w/t")
    stolen = _cli(cl, "XREADGROUP", "GROUP", "gw/c13w/#", "dead", "COUNT", "10", "STREAMS", key,
                  ">")
    taken = {x.encode() for x in stolen if x.startswith("c13w-") and x[5:].isdigit()}
    check(len(taken) == 10,
          "XREADGROUP as a dead reader: want the first 10 entries waiting for the group, got "
          "%r (groups %r, XINFO %r)%s" % (stolen, _xinfo_groups(cl, "c13w/t"),
                                          _cli(cl, "XINFO", "GROUPS", key), cl.excerpt()))
    t0 = time.monotonic()
    check(m.connect(cl[1].port) == 1, "member: session present 0 on node 2")
    rest = set(want) - taken
    check(not m.wait_for(rest, 5), "member on node 2: the entries nobody read did not arrive "
          "(%d of 10)%s" % (len(rest & set(m.payloads())), cl.excerpt()))
    missing = m.wait_for(taken, 15)
    check(not missing, "the dead reader's %d entries were not taken over in 15s (%d arrived)%s"
          % (len(taken), len(taken) - len(missing), cl.excerpt()))
    check(time.monotonic() - t0 >= 2, "the dead reader's entries were taken over before the "
          "idle time")
    m.settle(0.5, 3)
    counts = _counts(m)
    twice = sorted(x for x, n in counts.items() if n > 1)
    check(not twice, "delivered twice to the one member: %r" % twice[:5])

    check(wait_until(lambda: _group_pending(cl, "c13w/t", "gw/c13w/#") == 0, 5),
          "entries still pending in the group: %d" % _group_pending(cl, "c13w/t", "gw/c13w/#"))

    def readers():
        out = _cli(cl, "XINFO", "CONSUMERS", key, "gw/c13w/#")
        return [out[i + 1] for i in range(len(out) - 1) if out[i] == "name"]

    check(wait_until(lambda: "dead" not in readers(), 5),
          "the dead reader is still a consumer of the group after its entries were taken "
          "over: %r" % readers())
    p.close()
    got = {}

    def counted():
        f = _metrics(hp)
        got.update((name, _value(f, name)) for name in ("cairn_cluster_share_delivered_total",
                                                        "cairn_cluster_share_taken_over_total",
                                                        "cairn_cluster_share_acks_total"))
        return (got["cairn_cluster_share_delivered_total"] == 20 and
                got["cairn_cluster_share_taken_over_total"] == 10 and
                got["cairn_cluster_share_acks_total"] == 20)

    check(wait_until(counted, 5), "node 2's /metrics after 20 entries given out, 10 of them "
          "taken over, all acknowledged: %r" % got)


@_tag("share")
def test_cluster_shared_unsubscribe_leaves(ctx):
    """Members on node 1 and node 2; member 0 unsubscribes (UNSUBACK): from
    then on every message goes to member 1 alone. Once member 1 leaves too,
    the group's consumer group is gone from the log's stream."""
    cl = ctx.cluster(3)
    filt = "$share/gu/c13u/#"
    members = _share_members(ctx, cl, "c13u", [0, 1], filt, qos=1)
    p = RawClient(cl[2].port)
    p.connect("c13u-pub")
    first = [b"c13u-a-%d" % i for i in range(20)]
    for i, payload in enumerate(first):
        p.publish("c13u/t", payload, qos=1, pid=i + 1)
    check(not _share_wait(members, first), "before the UNSUBSCRIBE: %r%s" %
          (_share_counts(members), cl.excerpt()))
    check("gu/c13u/#" in _xinfo_groups(cl, "c13u/t"), "no consumer group gu/c13u/# on the "
          "log's stream: %r" % _xinfo_groups(cl, "c13u/t"))
    before = len(members[0].received)
    members[0].unsubscribe(9, [filt])
    then = [b"c13u-b-%d" % i for i in range(20)]
    for i, payload in enumerate(then):
        p.publish("c13u/t", payload, qos=1, pid=i + 30)
    check(not members[1].wait_for(then, 10), "after member 0 left: member 1 got %d of %d%s" %
          (len(set(then) & set(members[1].payloads())), len(then), cl.excerpt()))
    members[0].settle(0.5, 3)
    late = [x for x in members[0].payloads()[before:] if x in then]
    check(not late, "member 0 got %d messages after its UNSUBSCRIBE: %r" % (len(late), late[:3]))
    members[1].unsubscribe(9, [filt])
    check(wait_until(lambda: "gu/c13u/#" not in _xinfo_groups(cl, "c13u/t"), 5),
          "the consumer group outlived its last member: %r" % _xinfo_groups(cl, "c13u/t"))
    p.close()



# covers: MQTT5-4.8.2-4
@_tag("share", "qos2")
@_timeout(60)
def test_cluster_shared_member_node_sigterm(ctx):
    """Members on node 1 and node 2, a paho publisher on node 3 sending QoS
    1/2; node 2 is stopped with SIGTERM mid-stream and its member moves to
    node 3. A graceful stop acknowledges to the store what its last commits
    gave out before its Redis link closes, so nothing is taken over after
    the idle time: no message reaches both members, no QoS 2 message
    arrives twice, and every message paho saw acknowledged reaches a
    member (what node 2 read and did not give out is taken over)."""
    cl, members, acked, _, stopped_at, missing, problems = _share_member_node_lost(
        ctx, "c13s", "$share/gs/cl/s13/#", "s13", lambda n: n.stop(), "the stop",
        "node 2's stop")
    # Past the idle time and a claim round: a takeover would have come.
    time.sleep(max(0.0, stopped_at + 8.0 - time.monotonic()))
    for m in members:
        m.settle(0.4, 3)
    if missing:
        missing = set(acked) - set(_share_counts(members))
    if missing:
        problems.append("%d of %d acknowledged messages reached no member, e.g. %r" %
                        (len(missing), len(acked), sorted(missing)[:5]))
    both = sorted(set(_counts(members[0])) & set(_counts(members[1])))
    if both:
        problems.append("%d messages reached both members (taken over after the stop), "
                        "e.g. %r" % (len(both), both[:5]))
    counts = _share_counts(members)
    twice = sorted(p for p, n in counts.items() if n > 1 and p.endswith(b"q2"))
    if twice:
        problems.append("%d QoS 2 messages delivered more than once, e.g. %r" %
                        (len(twice), twice[:5]))
    for m in members:
        problems += ["%s: %s" % (m.client_id, e) for e in m.errors[:3]]
    print("SIGTERM of a member's node: %d acknowledged, per member %r" %
          (len(acked), [len(m.received) for m in members]))
    check(not problems, "\n".join(problems) + cl.excerpt())


def _share_member_ids(cl, topic, key):
    """The member set of shared group key ("GROUP/FILTER") in topic's
    partition (cairn-redis(5))."""
    return set(_cli(cl, "SMEMBERS", "%s{L:%d}:share:%s" % (cl.prefix, _partition(topic), key)))


@_tag("share", "outage")
@_timeout(50)
def test_cluster_shared_join_while_redis_is_down(ctx):
    """A member that joins a group while redis-server is down (its join
    fails) is joined once Redis is back: it is in the group's member set,
    so the group outlives the other member's UNSUBSCRIBE and gets what is
    published then."""
    cl = ctx.cluster(2, redis_connect_timeout=20000)
    n1, n2 = cl[0], cl[1]
    filt = "$share/gj/c13j/#"
    a = _share_members(ctx, cl, "c13j", [0], filt, qos=1)[0]
    b = _Member(n2.port, "c13j-m1")
    ctx.add_cleanup(b.close)
    check(b.connect() == 0, "c13j-m1: fresh session, session present 1")
    check(_share_member_ids(cl, "c13j/t", "gj/c13j/#") == {"c13j-m0"},
          "member set before the outage: %r" % _share_member_ids(cl, "c13j/t", "gj/c13j/#"))
    cl.redis.kill()
    time.sleep(0.3)
    with b.lock:
        b.c.send(harness.subscribe_packet(1, [(filt, 1)]))
    wait_until(lambda: "joining it in the store" in n2.log_text(), 2)
    cl.redis.start()
    problems = []
    with b.lock:
        if not b.lock.wait_for(lambda: 1 in b.subacks, 10):
            problems.append("c13j-m1: no SUBACK within 10 s of redis-server's restart")
    if not wait_until(lambda: "c13j-m1" in _share_member_ids(cl, "c13j/t", "gj/c13j/#"), 5):
        problems.append("the member that joined while redis-server was down is not in the "
                        "member set 5 s after it came back: %r" %
                        _share_member_ids(cl, "c13j/t", "gj/c13j/#"))
    if not problems:
        if not a.connected:
            a.connect(n1.port)
        a.unsubscribe(9, [filt])
        p = RawClient(n1.port)
        ctx.add_cleanup(p.close)
        p.connect("c13j-pub")
        want = [b"c13j-%d" % i for i in range(10)]
        for i, payload in enumerate(want):
            p.publish("c13j/t", payload, qos=1, pid=i + 1)
        if b.wait_for(want, 10):
            problems.append("after the other member left, c13j-m1 got %d of %d" %
                            (len(set(want) & set(b.payloads())), len(want)))
    check(not problems, "\n".join(problems) + cl.excerpt())


class _Stalled(_Member):
    """A member that does not acknowledge its QoS 1 messages while stalled
    is true: its window fills, then its queue."""

    stalled = True

    def _on_publish(self, c, m):
        if self.stalled and m["qos"] == 1:
            self.received.append((m["payload"], m["qos"], m["dup"], m["pid"]))
            return
        super()._on_publish(c, m)


@_tag("share")
@_timeout(60)
def test_cluster_shared_backlog_waits_for_room_in_a_small_queue(ctx):
    """max_queued_messages 20: 300 QoS 1 messages wait in the store for a
    group whose only member is offline; when it reconnects, each reaches
    it (the node reads only what the member has room for, and never
    acknowledges an entry whose delivery was dropped for a full queue), in
    publish order, and nothing is left pending."""
    cl = ctx.cluster(3, max_queued_messages=20)
    m = _share_members(ctx, cl, "c13q", [0], "$share/gq/c13q/#", qos=1)[0]
    m.disconnect()
    p = RawClient(cl[2].port)
    ctx.add_cleanup(p.close)
    p.connect("c13q-pub")
    want = [b"c13q-%d" % i for i in range(300)]
    for i, payload in enumerate(want):
        p.publish("c13q/t", payload, qos=1, pid=i + 1)
    check(wait_until(lambda: _group_pending(cl, "c13q/t", "gq/c13q/#") == 0, 5),
          "the group read while its only member is offline")
    check(m.connect(cl[1].port) == 1, "member: session present 0 on node 2")
    missing = m.wait_for(want, 30)
    m.settle(0.5, 3)
    check(not missing, "%d of %d messages never reached the group's member, e.g. %r "
          "(pending in the group: %d)%s" % (len(missing), len(want), sorted(missing)[:5],
                                            _group_pending(cl, "c13q/t", "gq/c13q/#"),
                                            cl.excerpt()))
    with m.lock:
        first = []
        for payload, _, _, _ in m.received:
            if payload not in first:
                first.append(payload)
    check(first == want, "the member got the group's messages out of order: %r..." %
          [x for x, y in zip(first, want) if x != y][:5])
    check(wait_until(lambda: _group_pending(cl, "c13q/t", "gq/c13q/#") == 0, 5),
          "entries still pending in the group: %d" % _group_pending(cl, "c13q/t", "gq/c13q/#"))


@_tag("share")
@_timeout(60)
def test_cluster_shared_stalled_member_loses_nothing(ctx):
    """max_queued_messages 10: a member on node 1 that never acknowledges
    and a fast member on node 2 share 200 QoS 1 messages. The stalled
    member fills its window and queue; what node 1 read beyond that stays
    in the store and reaches the fast member (taken over), none is
    acknowledged undelivered. When the stalled member reconnects and
    acknowledges, it gets what its session holds: every message reached a
    member."""
    cl = ctx.cluster(3, max_queued_messages=10)
    filt = "$share/gs/c13s/#"
    slow = _Stalled(cl[0].port, "c13s-slow")
    ctx.add_cleanup(slow.close)
    check(slow.connect() == 0, "c13s-slow: fresh session")
    check(slow.subscribe(1, [(filt, 1)]) == [1], "c13s-slow: SUBACK")
    fast = _share_members(ctx, cl, "c13s", [1], filt, qos=1)[0]
    p = RawClient(cl[2].port)
    ctx.add_cleanup(p.close)
    p.connect("c13s-pub")
    want = [b"c13s-%d" % i for i in range(200)]
    for i, payload in enumerate(want):
        p.publish("c13s/t", payload, qos=1, pid=i + 1)
    got = lambda: set(fast.payloads()) | set(slow.payloads())  # noqa: E731
    end = time.monotonic() + 25
    while time.monotonic() < end and len(set(want) - got()) > 40:
        time.sleep(0.1)
    fast.settle(1.0, 8)
    slow.stalled = False
    slow.disconnect()
    check(slow.connect() == 1, "c13s-slow: session present 0 at its reconnection")
    missing = set(want) - got()
    end = time.monotonic() + 10
    while time.monotonic() < end and missing:
        time.sleep(0.1)
        missing = set(want) - got()
    fast.settle(0.5, 3)
    slow.settle(0.5, 3)
    check(not missing, "%d of %d messages reached no member, e.g. %r (fast %d, stalled %d, "
          "pending in the group: %d)%s" %
          (len(missing), len(want), sorted(missing)[:5], len(set(fast.payloads())),
           len(set(slow.payloads())), _group_pending(cl, "c13s/t", "gs/c13s/#"), cl.excerpt()))
    check(wait_until(lambda: _group_pending(cl, "c13s/t", "gs/c13s/#") == 0, 8),
          "entries still pending in the group: %d" % _group_pending(cl, "c13s/t", "gs/c13s/#"))


def _xreadgroup_calls(cl):
    """XREADGROUP calls the cluster's Redis has served (every master's on a
    Redis Cluster), from INFO commandstats."""
    ports = ([int(x) for x in os.environ["CAIRN_REDIS_CLUSTER_PORTS"].split(",")]
             if REDIS_CLUSTER else [cl.redis.port])
    total = 0
    for port in ports:
        for line in redis_cli(port, "INFO", "commandstats"):
            if line.startswith("cmdstat_xreadgroup:"):
                total += int(line.split("calls=")[1].split(",")[0])
    return total


@_tag("share")
@_timeout(60)
def test_cluster_shared_member_full_by_bytes_is_not_read_in_a_loop(ctx):
    """max_queued_bytes 200 and a window of 5: a group's only member never
    acknowledges, so its window fills and then its queue reaches the byte
    limit while its count limit leaves room. The node then leaves the
    group's entries in the store (none acknowledged undelivered) and reads
    them again at its tick, not in a loop: over 2 s of a full member the
    Redis serves fewer than 100 XREADGROUP calls (a node that read again
    as soon as a read gave nothing out made thousands); once the member
    acknowledges, every message reaches it."""
    cl = ctx.cluster(2, max_queued_bytes=200, max_inflight_messages=5)
    filt = "$share/gb/c13b/#"
    slow = _Stalled(cl[0].port, "c13b-slow")
    ctx.add_cleanup(slow.close)
    check(slow.connect() == 0, "c13b-slow: fresh session")
    check(slow.subscribe(1, [(filt, 1)]) == [1], "c13b-slow: SUBACK")
    p = RawClient(cl[1].port)
    ctx.add_cleanup(p.close)
    p.connect("c13b-pub")
    want = [b"c13b-%03d-" % i + b"x" * 60 for i in range(60)]
    for i, payload in enumerate(want):
        p.publish("c13b/t", payload, qos=1, pid=i + 1)
    check(wait_until(lambda: len(set(slow.payloads())) >= 5, 10),
          "the stalled member got %d messages, want its window of 5%s" %
          (len(set(slow.payloads())), cl.excerpt()))
    time.sleep(1.0)
    before = _xreadgroup_calls(cl)
    time.sleep(2.0)
    calls = _xreadgroup_calls(cl) - before
    check(calls < 100, "%d XREADGROUP calls in 2 s for a group whose only member is full "
          "(read again in a loop)%s" % (calls, cl.excerpt()))
    # Nothing was acknowledged undelivered: once the member acknowledges,
    # every message reaches it.
    slow.stalled = False
    slow.disconnect()
    check(slow.connect() == 1, "c13b-slow: session present 0 at its reconnection")
    missing = slow.wait_for(want, 20)
    check(not missing, "%d of %d messages never reached the group's only member, e.g. %r%s" %
          (len(missing), len(want), sorted(missing)[:3], cl.excerpt()))


@_tag("share", "sys")
@_timeout(30)
def test_cluster_shared_sys_topics_reach_a_member_on_each_node(ctx):
    """$SYS messages are each node's own (not in the log): a group on
    $SYS/broker/uptime gets each node's at one of that node's members
    (cairn(8)). Two members on node 1, one on node 2: each gets some, and
    node 1's two members together get no more than a plain subscriber of
    node 1 that subscribed before them (one copy per publication)."""
    cl = ctx.cluster(2, sys_interval=1)
    plain = _subscriber(ctx, cl[0], "c13y-plain", [("$SYS/broker/uptime", 0)])
    ms = _share_members(ctx, cl, "c13y", [0, 0, 1], "$share/gy/$SYS/broker/uptime", qos=0)
    end = time.monotonic() + 8
    while time.monotonic() < end and not all(m.payloads() for m in ms):
        time.sleep(0.1)
    check(all(m.payloads() for m in ms), "a member of $share/gy/$SYS/broker/uptime got "
          "nothing in 8 s: %r%s" % ([len(m.payloads()) for m in ms], cl.excerpt()))
    time.sleep(3)
    shared = len(ms[0].payloads()) + len(ms[1].payloads())
    ref = len(plain.payloads())
    check(shared <= ref, "node 1's members got %d copies of $SYS/broker/uptime, its plain "
          "subscriber %d: a publication reached both members" % (shared, ref))


# ---------------------------------------------------------------- Redis Cluster failover

# With CAIRN_REDIS_CLUSTER_REPLICAS=1 (./dev cluster-test runs them so after
# the other cluster cases; --replicas runs every case on a Redis Cluster
# with replicas) the failover cases start a private Redis Cluster with a
# replica per master (tests/redis-cluster.sh), since they kill a master;
# they skip on any other run.
REDIS_CLUSTER_REPLICAS = int(os.environ.get("CAIRN_REDIS_CLUSTER_REPLICAS") or "0")
_CLUSTER_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "redis-cluster.sh")


class _FailoverCluster:
    """A private three-master Redis Cluster with one replica per master
    (tests/redis-cluster.sh, node timeout 1000 ms). kill9(port) kills a
    node by its PID; restart(port) starts it again with its command line
    (it comes back as a replica of the master that took over). Appended to
    ctx.brokers after the cairn nodes, so it is stopped after them, by PID,
    and its directory removed."""

    name = "redis-cluster"

    def __init__(self, workdir):
        self.log_path = os.path.join(workdir, "redis-cluster.log")
        env = dict(os.environ, CAIRN_REDIS_CLUSTER_REPLICAS="1")
        r = subprocess.run(["bash", _CLUSTER_SH, "start"], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL, env=env)
        if r.returncode != 0:
            raise TestFailure("tests/redis-cluster.sh start (1 replica per master) failed: %s"
                              % r.stderr.decode(errors="replace").strip())
        ports, pids, self.dir = r.stdout.decode().split()
        self.pids = dict(zip([int(p) for p in ports.split(",")],
                             [int(p) for p in pids.split(",")]))
        self.port = int(ports.split(",")[0])
        self.restarted = {}  # port -> Popen of a node started again here
        self.start_lines = {}
        with open(os.path.join(self.dir, "START")) as f:
            for line in f:
                port, argv = line.split(" ", 1)
                self.start_lines[int(port)] = argv.strip()

    def master_of(self, tag):
        """The port of the master serving the slot of hash tag tag."""
        slot = int(self._cli("CLUSTER", "KEYSLOT", "{%s}" % tag)[0])
        for line in self._cli("CLUSTER", "NODES"):
            f = line.split()
            if "master" not in f[2] or "fail" in f[2]:
                continue
            for r in f[8:]:
                lo, _, hi = r.partition("-")
                if not lo.isdigit():
                    continue
                if int(lo) <= slot <= int(hi or lo):
                    return int(f[1].split("@")[0].rsplit(":", 1)[1])
        raise TestFailure("no master serves slot %d:\n%s" % (slot,
                                                            "\n".join(self._cli("CLUSTER",
                                                                                "NODES"))))

    def _alive_port(self):
        for p in self.pids:
            if p not in self.killed():
                return p
        raise TestFailure("no node of the Redis Cluster is up")

    def killed(self):
        return {p for p, pid in self.pids.items() if pid is None}

    def _cli(self, *args, port=None):
        return redis_cli(port or self._alive_port(), *args)

    def kill9(self, port=None):
        if port is None:  # as a stopper: every node
            return self.stop()
        pid = self.pids[port]
        os.kill(pid, 9)
        self.pids[port] = None
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # started by the script: not our child
        wait_until(lambda: not os.path.exists("/proc/%d" % pid), 5)

    def restart(self, port):
        """Start the killed node on port again, as the script did."""
        import shlex
        argv = shlex.split(self.start_lines[port])
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.restarted[port] = p
        self.pids[port] = p.pid
        ok = wait_until(lambda: self._answers(port), 10, step=0.05)
        check(ok, "the Redis Cluster node on port %d did not come back" % port)

    def _answers(self, port):
        try:
            return bool(redis_cli(port, "PING"))
        except Exception:
            return False

    def failed_over(self, port):
        """Whether a replica serves the slots port's master had: port is
        not a master with slots in the surviving nodes' view."""
        try:
            nodes = self._cli("CLUSTER", "NODES")
            info = self._cli("CLUSTER", "INFO")
        except Exception:
            return False
        if "cluster_state:ok" not in info:
            return False
        for line in nodes:
            f = line.split()
            if f[1].split("@")[0].endswith(":%d" % port):
                return "master" not in f[2] or len(f) <= 8
        return False

    def in_sync(self, port):
        try:
            return "master_link_status:up" in redis_cli(port, "INFO", "replication")
        except Exception:
            return False

    def stop(self, timeout=5.0, check_exit=True):
        try:  # kept in the test's directory, which a failure keeps
            with open(self.log_path, "w") as f:
                f.write(self.log_tail(200))
        except OSError:
            pass
        # The nodes started here are children of this process: stopped and
        # reaped here (the script would wait on their zombies).
        for port, p in self.restarted.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.pids[port] = None
        live = [str(pid) for pid in self.pids.values() if pid is not None]
        subprocess.run(["bash", _CLUSTER_SH, "stop", ",".join(live) or "0", self.dir],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        self.pids = {p: None for p in self.pids}

    def log_tail(self, n=8):
        out = []
        for port in sorted(self.pids):
            path = os.path.join(self.dir, "redis-%d.log" % port)
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
            except OSError:
                continue
            out.extend("[%d] %s" % (port, x) for x in lines)
        return "\n".join(out)


def _failover_cluster(ctx, n, **options):
    """n cairn nodes with cluster true on a private Redis Cluster with a
    replica per master: (harness.Cluster, _FailoverCluster)."""
    if REDIS_CLUSTER_REPLICAS < 1:
        raise Skip("needs a Redis Cluster with replicas (CAIRN_REDIS_CLUSTER_REPLICAS=1): "
                   "./dev cluster-test runs it after the other cluster cases")
    harness.require_cairn("cairn's cluster mode")
    rc = _FailoverCluster(ctx.workdir)
    prefix = "cairn-it:%s:%d:" % (ctx.name, os.getpid())
    nodes = []
    try:
        for i in range(n):
            name = "node%d" % (i + 1)
            opts = dict(persistence_backend="redis", redis_host=HOST, redis_port=rc.port,
                        redis_key_prefix=prefix, cluster=True, cluster_node_id=name)
            opts.update(options)
            b = harness.Broker(ctx.workdir, name, **opts)
            b.backend = "redis"
            ctx.brokers.append(b)
            nodes.append(b)
    finally:
        ctx.brokers.append(rc)  # stopped after the nodes
    for b in nodes:
        b.start()
    return harness.Cluster(rc, prefix, nodes), rc


def _failover_case(ctx, key, pick, victim, held):
    """The failover cases: redis_wait_replicas 1 on two nodes, _paho_flow's
    traffic (a persistent QoS 2 subscriber on node 2, a paho publisher on
    node 1), then kill -9 of the master victim(rc, case) names mid-stream.
    The replica takes over; the killed node is started again once it has
    (it follows the new master, so that WAIT 1 is met again); the nodes
    follow the new map. Every message acknowledged before, during and after
    arrives, no QoS 2 message twice, per-topic order kept. pick(rc) names
    the case (its client ids), victim(rc, case) the master's port. For 1.5 s
    after the failover, before the killed node is back, the new master has
    no replica: WAIT 1 finds none, and no message held(payload) says
    writes there may be acknowledged."""
    cl, rc = _failover_cluster(ctx, 2, max_queued_messages=0, redis_wait_replicas=1)
    case = pick(rc)
    port = victim(rc, case)
    sub, pub, stop, th = _paho_flow(ctx, cl, case, key)
    problems = []
    try:
        ok = wait_until(lambda: len(sub.received) >= 100 and len(pub.acked()) >= 150, 15)
        check(ok, "no steady traffic before the failover (%d acked, %d received)%s" %
              (len(pub.acked()), len(sub.received), cl.excerpt()))
        acked_at_kill = pub.acked()
        rc.kill9(port)
        if not wait_until(lambda: rc.failed_over(port), 15, step=0.1):
            raise TestFailure("no replica took over the master on port %d within 15 s\n%s" %
                              (port, rc.log_tail()))
        # Exchanges answered in the moment the failover completed are
        # let through; then nothing the new master alone holds may be.
        time.sleep(0.3)
        before = pub.acked()
        time.sleep(1.5)
        early = sorted(p for p in pub.acked() - before if held(p))
        if early:
            problems.append("%d messages acknowledged while the new master had no replica "
                            "(redis_wait_replicas 1), e.g. %r" % (len(early), early[:3]))
        rc.restart(port)
        if not wait_until(lambda: rc.in_sync(port), 10, step=0.05):
            problems.append("the restarted node on port %d never followed the new master" %
                            port)
        acked_after = len(pub.acked())
        if not wait_until(lambda: len(pub.acked()) >= acked_after + 50, 15):
            problems.append("no traffic acknowledged after the failover (%d acked)" %
                            len(pub.acked()))
    finally:
        stop.set()
        th.join(5)
    if not wait_until(lambda: pub.open_count() == 0, 15):
        problems.append("publisher: %d exchanges still open 15 s after it stopped" %
                        pub.open_count())
    acked = pub.acked()
    problems += _delivery_problems(sub, acked, "subscriber", timeout=15)
    lost_before = acked_at_kill - set(sub.payloads())
    if lost_before:
        problems.insert(0, "%d of them were acknowledged before the kill" % len(lost_before))
    problems += _order_problems(sub, "subscriber", _seq)
    check(not problems, "%d acknowledged (%d before the kill of the master on port %d), %d "
          "distinct delivered:\n%s%s\n--- Redis Cluster ---\n%s" %
          (len(acked), len(acked_at_kill), port, len(_counts(sub)), "\n".join(problems),
           cl.excerpt(), rc.log_tail()))


# covers: MQTT-4.3.3-2 MQTT-4.4.0-1
@_tag("redis-cluster", "failover", "kill9", "replicas")
@_timeout(75)
def test_cluster_failover_of_the_logs_master(ctx):
    """On a Redis Cluster with a replica per master and redis_wait_replicas
    1: kill -9 of the master serving the log's slot (the {L:0} hash tag)
    mid-stream; its replica takes over, the nodes follow, and nothing
    acknowledged is lost or doubled (_failover_case). While the new master
    has no replica, nothing is acknowledged (every message is appended
    there)."""
    _failover_case(ctx, "k20", lambda rc: "c20", lambda rc, case: rc.master_of("L:0"),
                   lambda p: True)


def _sessions_master(rc, case):
    """The master serving both the subscriber's and the publisher's session
    slots ({c:ID}), and not the log's: the client ids are chosen so (the
    case's ids get a suffix until they are)."""
    log = rc.master_of("L:0")
    sub = rc.master_of("c:%s-sub" % case)
    pub = rc.master_of("c:%s-pub" % case)
    check(sub == pub and sub != log,
          "%s: the session keys of %s-sub and %s-pub are not on one master other than the "
          "log's" % (case, case, case))
    return sub


def _case_on_one_master(rc, base):
    """A case name base-N whose -sub and -pub sessions share a master other
    than the log's."""
    log = rc.master_of("L:0")
    for i in range(200):
        case = "%s-%d" % (base, i)
        s = rc.master_of("c:%s-sub" % case)
        if s != log and rc.master_of("c:%s-pub" % case) == s:
            return case
    raise TestFailure("no client ids found whose sessions share a master")


# covers: MQTT-4.3.3-2 MQTT-4.4.0-1 MQTT-3.1.2-5
@_tag("redis-cluster", "failover", "kill9", "replicas")
@_timeout(75)
def test_cluster_failover_of_the_sessions_master(ctx):
    """As test_cluster_failover_of_the_logs_master, killing instead the
    master that holds the subscriber's and the publisher's sessions (their
    claims, cursors, in-flight windows and inbound QoS 2 ids), not the
    log's. While the new master has no replica, no QoS 2 exchange
    completes (its inbound id is written there); QoS 1 may."""
    _failover_case(ctx, "k21", lambda rc: _case_on_one_master(rc, "c21"), _sessions_master,
                   lambda p: p.endswith(b"q2"))
