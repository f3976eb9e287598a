"""Shared subscriptions ($share/GROUP/FILTER) with 3.1.1 clients (paho,
mosquitto_sub, raw sockets): each message to exactly one member of each
matching group, online members in turn, a persistent member's session
when none is online; members that leave; durability across a restart;
malformed shared filters refused; no retained messages on subscribing; the
ACL read against FILTER."""

import os
import socket
import struct
import time

from harness import (HOST, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, UNSUBACK, Paho,
                     RawClient, ack_packet, check, parse_publish, publish_packet,
                     require_cairn, sqlite_query, unsubscribe_packet, wait_until)

PROBE = "shared-probe"


def _drain(c, quiet=0.8, limit=10000):
    """Every PUBLISH c receives until it is silent for quiet seconds, each
    acknowledged as its QoS asks (a QoS 2 one through PUBCOMP). Returns the
    messages as parse_publish() gives them."""
    got = []
    while len(got) < limit:
        try:
            t, f, body = c.read_packet(quiet)
        except socket.timeout:
            return got
        if t == PUBREL:
            c.send(ack_packet(PUBCOMP, struct.unpack("!H", body[:2])[0]))
            continue
        check(t == PUBLISH, "unexpected packet type %d" % t)
        m = parse_publish(f, body)
        if m["qos"] == 1:
            c.send(ack_packet(PUBACK, m["pid"]))
        elif m["qos"] == 2:
            c.send(ack_packet(PUBREC, m["pid"]))
        got.append(m)
    return got


def _raw(port, cid, **kw):
    c = RawClient(port)
    c.connect(cid, **kw)
    return c


def _paho(ctx, port, cid, filt, qos, clean=True):
    p = Paho(port, cid, clean=clean, ctx=ctx)
    p.connect()
    check(p.subscribe(filt, qos) == [qos], "%s: SUBACK for %s" % (cid, filt))
    return p


def _paho_all(p, quiet=0.6):
    """Every message p has or gets until it is quiet for that long."""
    out = []
    while True:
        m = p.none(quiet)
        if m is None:
            return out
        out.append(m)


def _wait_disconnected(b, cid, timeout=5.0):
    check(wait_until(lambda: ("client %s disconnected" % cid) in b.log_text(), timeout),
          "the broker did not see %s go" % cid)


class MosqSub:
    """mosquitto_sub (3.1.1) as a group member: it also subscribes to
    PROBE, so the test can tell when its subscriptions are in place."""

    def __init__(self, ctx, port, cid, filt, qos):
        argv = ["mosquitto_sub", "-h", HOST, "-p", str(port), "-i", cid, "-q", str(qos),
                "-v", "-t", PROBE, "-t", filt]
        self.proc, self.path = ctx.spawn(argv, cid + ".out")
        self.port = port

    def _lines(self):
        try:
            with open(self.path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def wait_ready(self, pub, timeout=8.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            check(self.proc.poll() is None, "mosquitto_sub exited: %r" % self._lines())
            pub.send(publish_packet(PROBE, b"ping"))
            if wait_until(lambda: any(x.startswith(PROBE + " ") for x in self._lines()), 0.3):
                return
        raise AssertionError("mosquitto_sub not subscribed within %.0fs" % timeout)

    def payloads(self):
        """The payloads of every message it printed, probes left out."""
        return [x.split(" ", 1)[1] for x in self._lines()
                if " " in x and not x.startswith(PROBE + " ")]


def _publish_all(p, topic, per_qos):
    """per_qos messages at each QoS 0, 1, 2; returns their payloads."""
    sent = []
    pid = 1
    for qos in (0, 1, 2):
        for i in range(per_qos):
            payload = "q%d-%d" % (qos, i)
            p.publish(topic, payload.encode(), qos=qos, pid=pid)
            pid += 1
            sent.append(payload)
    return sent


# covers: MQTT5-4.8.2-3 MQTT5-4.8.2-1
def test_shared_three_members_split_every_message(ctx):
    """Three members (paho granted QoS 2, paho granted QoS 1, mosquitto_sub
    granted QoS 0) of one group: every message at QoS 0, 1 and 2 reaches
    exactly one of them, at the QoS its subscription allows, and online
    members take turns (round robin), so each gets a third."""
    b = ctx.broker()
    pub = _raw(b.port, "sh-pub")
    m2 = _paho(ctx, b.port, "sh-m2", "$share/work/jobs/#", 2)
    m1 = _paho(ctx, b.port, "sh-m1", "$share/work/jobs/#", 1)
    m0 = MosqSub(ctx, b.port, "sh-m0", "$share/work/jobs/#", 0)
    m0.wait_ready(pub)
    sent = _publish_all(pub, "jobs/a", 30)
    check(wait_until(lambda: m2.msgs.qsize() + m1.msgs.qsize() + len(m0.payloads()) >= 90,
                     10), "the members got %d, %d, %d of 90" %
          (m2.msgs.qsize(), m1.msgs.qsize(), len(m0.payloads())))
    got2, got1 = _paho_all(m2), _paho_all(m1)
    got0 = m0.payloads()
    for m in got2:
        want = int(m.payload.decode()[1])
        check(m.qos == want, "QoS 2 member got %r at QoS %d" % (m.payload, m.qos))
    for m in got1:
        want = min(int(m.payload.decode()[1]), 1)
        check(m.qos == want, "QoS 1 member got %r at QoS %d" % (m.payload, m.qos))
    p2 = [m.payload.decode() for m in got2]
    p1 = [m.payload.decode() for m in got1]
    every = p2 + p1 + got0
    check(sorted(every) == sorted(sent),
          "not every message exactly once: %d delivered, %d distinct, of %d; missing %r" %
          (len(every), len(set(every)), len(sent), sorted(set(sent) - set(every))[:5]))
    check(len(p2) == len(p1) == len(got0) == 30,
          "shares %d/%d/%d, round robin gives 30 each" % (len(p2), len(p1), len(got0)))


def test_shared_groups_each_get_everything(ctx):
    """Two groups on one filter and a plain subscriber: each group gets
    every message once (split among its members), and so does the plain
    subscriber."""
    b = ctx.broker()
    a1 = _paho(ctx, b.port, "ga-1", "$share/a/t/+", 1)
    a2 = _paho(ctx, b.port, "ga-2", "$share/a/t/+", 1)
    g = _paho(ctx, b.port, "gb-1", "$share/b/t/#", 1)
    plain = _paho(ctx, b.port, "plain", "t/+", 1)
    pub = _raw(b.port, "g-pub")
    sent = _publish_all(pub, "t/x", 10)
    pa = [m.payload.decode() for m in a1.get_n(15) + a2.get_n(15)]
    pb = [m.payload.decode() for m in g.get_n(30)]
    pp = [m.payload.decode() for m in plain.get_n(30)]
    extra = _paho_all(a1, 0.4) + _paho_all(a2, 0.2) + _paho_all(g, 0.2) + _paho_all(plain, 0.2)
    check(not extra, "extra copies: %r" % [m.payload for m in extra])
    check(sorted(pa) == sorted(sent), "group a: %r" % sorted(pa))
    check(sorted(pb) == sorted(sent), "group b: %r" % sorted(pb))
    check(sorted(pp) == sorted(sent), "plain subscriber: %r" % sorted(pp))


def test_shared_member_that_leaves_stops_getting_shares(ctx):
    """Members that disconnect (DISCONNECT, or a reset socket) or
    unsubscribe get nothing more; the members left get every message."""
    b = ctx.broker()
    m1 = _paho(ctx, b.port, "lv-1", "$share/g/lv/t", 1)
    m2 = _paho(ctx, b.port, "lv-2", "$share/g/lv/t", 1)
    m3 = _raw(b.port, "lv-3")
    check(m3.subscribe(1, [("$share/g/lv/t", 1)]) == [1], "SUBACK")
    m4 = _raw(b.port, "lv-4")
    check(m4.subscribe(1, [("$share/g/lv/t", 0), ("lv/t", 0)]) == [0, 0], "SUBACK")
    pub = _raw(b.port, "lv-pub")
    for i in range(8):
        pub.publish("lv/t", b"a%d" % i, qos=1, pid=i + 1)
    got3 = _drain(m3)
    check(len(got3) == 2, "member 3 got %d of 8 in turn" % len(got3))
    got4 = _drain(m4, 0.3)
    check(len(got4) == 8 + 2, "member 4 got %d (8 plain + 2 shared)" % len(got4))
    m1.get_n(2)
    m2.get_n(2)
    # m2 sends DISCONNECT, m3 vanishes with a reset, m4 unsubscribes the
    # shared filter but keeps its plain one.
    m2.disconnect()
    m3.abort()
    _wait_disconnected(b, "lv-2")
    _wait_disconnected(b, "lv-3")
    m4.send(unsubscribe_packet(9, ["$share/g/lv/t"]))
    m4.expect(UNSUBACK)
    for i in range(6):
        pub.publish("lv/t", b"b%d" % i, qos=1, pid=100 + i)
    got1 = sorted(m.payload for m in m1.get_n(6))
    check(got1 == [b"b%d" % i for i in range(6)], "the member left got %r" % got1)
    got4 = sorted(m["payload"] for m in _drain(m4, 0.5))
    check(got4 == [b"b%d" % i for i in range(6)],
          "after UNSUBSCRIBE of the shared filter, member 4 got %r (plain copies only)" % got4)
    check(_paho_all(m1, 0.3) == [], "extra copies")


def test_shared_persistent_member_queues_when_none_online(ctx):
    """A persistent member offline and alone in its group: the messages
    queue in its session and reach it when it returns. With an online
    member beside it, the online one gets them and nothing queues."""
    b = ctx.broker()
    p = _raw(b.port, "pq-p", clean=False)
    check(p.subscribe(1, [("$share/g/pq/#", 1)]) == [1], "SUBACK")
    p.disconnect()
    pub = _raw(b.port, "pq-pub")
    for i in range(5):
        pub.publish("pq/t", b"a%d" % i, qos=1, pid=i + 1)
    p = _raw(b.port, "pq-p", clean=False)
    got = [m["payload"] for m in _drain(p)]
    check(got == [b"a%d" % i for i in range(5)], "the persistent member got %r" % got)
    m = _paho(ctx, b.port, "pq-m", "$share/g/pq/#", 1)
    p.disconnect()
    for i in range(4):
        pub.publish("pq/t", b"b%d" % i, qos=1, pid=10 + i)
    got = sorted(x.payload for x in m.get_n(4))
    check(got == [b"b%d" % i for i in range(4)], "the online member got %r" % got)
    p = _raw(b.port, "pq-p", clean=False)
    check(_drain(p, 0.6) == [], "a message went to the offline member beside an online one")


# covers: MQTT5-4.8.2-5
def test_shared_message_stays_with_its_member_session(ctx):
    """A message queued for a persistent member goes to nobody else: when
    that session ends before it returns, the message is gone, not handed
    to another member."""
    b = ctx.broker()
    p = _raw(b.port, "ss-p", clean=False)
    check(p.subscribe(1, [("$share/g/ss", 1)]) == [1], "SUBACK")
    p.disconnect()
    pub = _raw(b.port, "ss-pub")
    pub.publish("ss", b"orphan", qos=1, pid=1)
    m = _paho(ctx, b.port, "ss-m", "$share/g/ss", 1)
    p = _raw(b.port, "ss-p", clean=True)  # ends the persistent session
    check(_drain(p, 0.3) == [], "a clean session got the old session's message")
    got = m.none(1.0)
    check(got is None, "the message of an ended session went to another member: %r" %
          (got and got.payload))
    pub.publish("ss", b"next", qos=1, pid=2)
    check(m.get().payload == b"next", "the member left does not get new messages")


# covers: MQTT5-4.8.2-4
def test_shared_qos2_finishes_with_the_same_member(ctx):
    """A QoS 2 message sent to a member whose connection breaks before the
    exchange ends goes out again to that member when it reconnects (DUP,
    same packet id), never to another member."""
    b = ctx.broker()
    p = _raw(b.port, "q2-p", clean=False)
    check(p.subscribe(1, [("$share/g/q2", 2)]) == [2], "SUBACK")
    pub = _raw(b.port, "q2-pub")
    pub.publish("q2", b"once", qos=2, pid=1)
    first = p.read_publish()
    check(first["qos"] == 2 and first["payload"] == b"once", "got %r" % first)
    p.abort()
    _wait_disconnected(b, "q2-p")
    m = _paho(ctx, b.port, "q2-m", "$share/g/q2", 2)
    p = _raw(b.port, "q2-p", clean=False)
    again = p.read_publish()
    check(again["payload"] == b"once" and again["dup"] and again["pid"] == first["pid"],
          "resent %r" % again)
    p.send(ack_packet(PUBREC, again["pid"]))
    f, body = p.expect(PUBREL)
    p.send(ack_packet(PUBCOMP, struct.unpack("!H", body[:2])[0]))
    check(m.none(0.8) is None, "the QoS 2 message also went to another member")


# covers: MQTT5-4.8.2-1 MQTT5-4.8.2-2
def test_shared_malformed_filters_refused(ctx):
    """A filter starting $share/ without a group of its own (empty, or
    holding + or #) or without a filter after it is refused with 0x80,
    beside valid ones granted in the same SUBSCRIBE; the valid shared
    filter works."""
    b = ctx.broker()
    c = _raw(b.port, "bad-share")
    filters = [("$share/g", 1), ("$share//x", 1), ("$share/g/", 1), ("$share/+/x", 1),
               ("$share/#", 1), ("$share/g#/x", 1), ("$share/g/a+", 1), ("$share/g/ok", 1),
               ("$share", 1)]
    codes = c.subscribe(3, filters)
    check(codes == [0x80] * 7 + [1, 1], "SUBACK %r" % codes)
    pub = _raw(b.port, "bad-pub")
    pub.publish("g/ok", b"no", qos=1, pid=1)   # the malformed ones match nothing
    pub.publish("ok", b"yes", qos=1, pid=2)
    pub.publish("$share", b"plain", qos=1, pid=3)
    got = sorted(m["payload"] for m in _drain(c, 0.5))
    check(got == [b"plain", b"yes"], "got %r" % got)


def test_shared_no_retained_on_subscribe(ctx):
    """Subscribing to a shared subscription sends no retained message; a
    plain subscription of the same session still gets it; live messages
    published with RETAIN reach the group."""
    b = ctx.broker()
    pub = _raw(b.port, "rt-pub")
    pub.publish("rt/a", b"kept", qos=1, pid=1, retain=True)
    c = _raw(b.port, "rt-sub")
    check(c.subscribe(1, [("$share/g/rt/#", 1)]) == [1], "SUBACK")
    check(_drain(c, 0.6) == [], "a retained message was sent on a shared subscription")
    check(c.subscribe(2, [("rt/#", 1)]) == [1], "SUBACK")
    got = _drain(c, 0.5)
    check([(m["payload"], m["retain"]) for m in got] == [(b"kept", True)],
          "plain subscription: %r" % got)
    pub.publish("rt/a", b"live", qos=1, pid=2, retain=True)
    got = sorted(m["payload"] for m in _drain(c, 0.5))
    check(got == [b"live", b"live"], "one copy per subscription kind, got %r" % got)


def test_shared_and_plain_overlap_one_copy_each(ctx):
    """A session with a plain and a shared subscription matching one message
    gets one copy for the plain one and one when its group chooses it;
    overlapping plain subscriptions still give one copy."""
    b = ctx.broker()
    c = _raw(b.port, "ov")
    check(c.subscribe(1, [("ov/t", 1), ("ov/#", 0), ("$share/g/ov/t", 1), ("$share/h/+/t", 0)])
          == [1, 0, 1, 0], "SUBACK")
    pub = _raw(b.port, "ov-pub")
    pub.publish("ov/t", b"m", qos=1, pid=1)
    got = sorted((m["payload"], m["qos"]) for m in _drain(c, 0.5))
    check(got == [(b"m", 0), (b"m", 1), (b"m", 1)],
          "want one plain copy (QoS 1) and one per group (QoS 1, 0); got %r" % got)


def _durable(ctx, backend):
    """The membership is stored like any subscription and restored: after a
    restart an offline persistent member's session queues its messages,
    and once back online it gets its share beside another member; its
    UNSUBSCRIBE leaves the group for good."""
    require_cairn("cairn's persistence backends")
    b = ctx.durable_broker(backend)
    db = os.path.join(b.db_dir or "", "cairn.db")
    p = _raw(b.port, "du-p", clean=False)
    check(p.subscribe(1, [("$share/dg/du/#", 2)]) == [2], "SUBACK")
    p.disconnect()
    if backend == "sqlite":
        rows = sqlite_query(db, "SELECT filter, qos FROM subscriptions WHERE client_id = 'du-p'")
        check(rows == [["$share/dg/du/#", "2"]], "stored subscription rows %r" % rows)
    b.restart()
    pub = _raw(b.port, "du-pub")
    for i in range(3):
        pub.publish("du/t", b"q%d" % i, qos=1 + i % 2, pid=i + 1)
    p = _raw(b.port, "du-p", clean=False)
    got = [(m["payload"], m["qos"]) for m in _drain(p)]
    check(got == [(b"q0", 1), (b"q1", 2), (b"q2", 1)],
          "after the restart the member's session got %r" % got)
    m = _paho(ctx, b.port, "du-m", "$share/dg/du/#", 1)
    for i in range(10):
        pub.publish("du/t", b"s%d" % i, qos=1, pid=10 + i)
    mine = [x["payload"] for x in _drain(p, 0.6)]
    theirs = [x.payload for x in _paho_all(m, 0.3)]
    check(sorted(mine + theirs) == sorted(b"s%d" % i for i in range(10)),
          "not every message once: %r + %r" % (mine, theirs))
    check(len(mine) == 5 and len(theirs) == 5, "shares %d/%d" % (len(mine), len(theirs)))
    p.send(unsubscribe_packet(2, ["$share/dg/du/#"]))
    p.expect(UNSUBACK)
    p.disconnect()
    m.disconnect()
    if backend == "sqlite":
        rows = sqlite_query(db, "SELECT filter FROM subscriptions WHERE client_id = 'du-p'")
        check(rows == [], "UNSUBSCRIBE left %r in the store" % rows)
    b.restart()
    pub = _raw(b.port, "du-pub")
    pub.publish("du/t", b"gone", qos=1, pid=1)
    p = _raw(b.port, "du-p", clean=False)
    check(_drain(p, 0.6) == [], "the membership came back after UNSUBSCRIBE and a restart")


# covers: MQTT5-4.8.2-3
def test_shared_durable_across_restart_sqlite(ctx):
    _durable(ctx, "sqlite")


def test_shared_durable_across_restart_lmdb(ctx):
    _durable(ctx, "lmdb")


def test_shared_durable_across_restart_redis(ctx):
    _durable(ctx, "redis")


def test_shared_acl_reads_the_filter(ctx):
    """The ACL checks a shared subscription by its filter, the part after
    the group: granted where the client may read, 0x80 where it may read
    nothing; the group name is not part of any topic."""
    require_cairn("cairn's SUBSCRIBE-time ACL check")
    path = os.path.join(ctx.workdir, "acl")
    with open(path, "w") as f:
        f.write("topic read jobs/#\ntopic write #\n")
    b = ctx.broker(acl_file=path)
    c = _raw(b.port, "acl-m")
    codes = c.subscribe(1, [("$share/w/jobs/#", 1), ("$share/jobs/secret/#", 1),
                            ("$share/w/#", 1)])
    check(codes == [1, 0x80, 1], "SUBACK %r" % codes)
    pub = _raw(b.port, "acl-pub")
    pub.publish("jobs/1", b"j", qos=1, pid=1)
    pub.publish("secret/1", b"s", qos=1, pid=2)
    got = sorted(m["payload"] for m in _drain(c, 0.5))
    check(got == [b"j", b"j"], "got %r (jobs/1 once per group, secret/1 never)" % got)
