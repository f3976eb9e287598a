"""PUBLISH in both directions: QoS 0/1/2 acknowledgement flows, duplicate
suppression, retransmission on reconnect, ordering, offline queueing."""

import socket
import struct

from harness import (DISCONNECT_PKT, PINGREQ_PKT, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
                     UNSUBACK, Paho, RawClient, ack_packet,
                     check, parse_publish, publish_packet, require_cairn, unsubscribe_packet)


def _pid(body):
    return struct.unpack("!H", body[:2])[0]


# covers: MQTT-3.3.4-1 MQTT-2.3.1-6 MQTT-4.3.1-1 MQTT-4.3.2-1 MQTT-4.3.3-1 MQTT-2.3.1-4 MQTT-2.3.1-5 MQTT-3.3.1-2 MQTT-4.5.0-1 MQTT-4.3.2-2
def test_qos_flows_both_directions(ctx):
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect("flow-sub")
    check(sub.subscribe(1, [("flow/#", 2)]) == [2], "SUBACK granted qos")
    pub = RawClient(b.port)
    pub.connect("flow-pub")

    pub.send(publish_packet("flow/0", b"zero", qos=0))
    m = sub.read_publish()
    check(m["qos"] == 0 and not m["dup"] and m["pid"] is None and m["payload"] == b"zero",
          "QoS 0 delivery %r" % m)
    check(pub.expect_silence(0.3), "broker answered a QoS 0 PUBLISH")

    pub.send(publish_packet("flow/1", b"one", qos=1, pid=11))
    f, body = pub.expect(PUBACK)
    check(body == b"\x00\x0b", "PUBACK %r, want packet id 11" % body)
    m = sub.read_publish()
    check(m["qos"] == 1 and not m["dup"] and m["pid"], "QoS 1 delivery %r" % m)
    sub.send(ack_packet(PUBACK, m["pid"]))

    pub.send(publish_packet("flow/2", b"two", qos=2, pid=12))
    f, body = pub.expect(PUBREC)
    check(f == 0 and body == b"\x00\x0c", "PUBREC %x %r, want id 12" % (f, body))
    pub.send(ack_packet(PUBREL, 12))
    f, body = pub.expect(PUBCOMP)
    check(body == b"\x00\x0c", "PUBCOMP %r" % body)
    m = sub.read_publish()
    check(m["qos"] == 2 and not m["dup"] and m["pid"], "QoS 2 delivery %r" % m)
    sub.send(ack_packet(PUBREC, m["pid"]))
    f, body = sub.expect(PUBREL)
    check(f == 2 and _pid(body) == m["pid"], "PUBREL flags %x id %d" % (f, _pid(body)))
    sub.send(ack_packet(PUBCOMP, m["pid"]))

    # The same QoS 1 id after its PUBACK is a new message.
    pub.send(publish_packet("flow/1", b"again", qos=1, pid=11))
    pub.expect(PUBACK)
    m = sub.read_publish()
    check(m["payload"] == b"again", "reused QoS 1 packet id not delivered as new")
    sub.send(ack_packet(PUBACK, m["pid"]))
    check(sub.expect_silence(0.3), "unexpected extra packet to subscriber")


# covers: MQTT-4.3.3-2
def test_inbound_qos2_duplicate_delivered_once(ctx):
    b = ctx.broker()
    sub = Paho(b.port, "dup-sub", ctx=ctx)
    sub.connect()
    sub.subscribe("dup/t", 2)
    pub = RawClient(b.port)
    pub.connect("dup-pub")
    pub.send(publish_packet("dup/t", b"once", qos=2, pid=7))
    pub.expect(PUBREC)
    pub.send(publish_packet("dup/t", b"once", qos=2, pid=7, dup=True))
    _, body = pub.expect(PUBREC)
    check(_pid(body) == 7, "PUBREC to the resent PUBLISH has id %d" % _pid(body))
    pub.send(ack_packet(PUBREL, 7))
    _, body = pub.expect(PUBCOMP)
    check(_pid(body) == 7, "PUBCOMP id %d" % _pid(body))
    got = [sub.get(3)]
    extra = sub.none(0.7)
    check(extra is None, "QoS 2 message with a resent PUBLISH delivered twice")
    check(got[0].payload == b"once", "wrong payload")
    # After PUBCOMP the id is free: the same id is a new message.
    pub.send(publish_packet("dup/t", b"twice", qos=2, pid=7))
    pub.expect(PUBREC)
    pub.send(ack_packet(PUBREL, 7))
    pub.expect(PUBCOMP)
    check(sub.get(3).payload == b"twice", "reused QoS 2 id after PUBCOMP not delivered")


# covers: MQTT-4.3.3-2
def test_unsolicited_pubrel_gets_pubcomp(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("unsol")
    c.send(ack_packet(PUBREL, 0x1234))
    f, body = c.expect(PUBCOMP)
    check(body == b"\x12\x34", "PUBCOMP %r, want 12 34" % body)
    # Stray PUBACK / PUBCOMP for ids never used are ignored, connection stays.
    c.send(ack_packet(PUBACK, 99) + ack_packet(PUBCOMP, 98) + b"\xc0\x00")
    t, _, _ = c.read_packet()
    while t != 13:
        t, _, _ = c.read_packet()
    b.assert_serves()


# covers: MQTT-4.4.0-1 MQTT-4.6.0-1 MQTT-3.3.1-1 MQTT-4.1.0-1
def test_outbound_qos1_resent_with_dup_in_order(ctx):
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect("lazy", clean=False)
    sub.subscribe(1, [("resend/t", 1)])
    pub = RawClient(b.port)
    pub.connect("resend-pub")
    for i in range(5):
        pub.send(publish_packet("resend/t", b"m%d" % i, qos=1, pid=i + 1))
        pub.expect(PUBACK)
    first = [sub.read_publish() for _ in range(5)]
    check([m["payload"] for m in first] == [b"m%d" % i for i in range(5)],
          "first delivery out of order: %r" % [m["payload"] for m in first])
    check(not any(m["dup"] for m in first), "first delivery had DUP=1")
    sub.abort()
    sub = RawClient(b.port)
    sp, _ = sub.connect("lazy", clean=False)
    check(sp == 1, "session present %d on reconnect" % sp)
    again = [sub.read_publish() for _ in range(5)]
    check([m["payload"] for m in again] == [m["payload"] for m in first],
          "resent out of order: %r" % [m["payload"] for m in again])
    check(all(m["dup"] for m in again), "resent PUBLISH without DUP=1")
    check([m["pid"] for m in again] == [m["pid"] for m in first],
          "resent with new packet ids")
    for m in again:
        sub.send(ack_packet(PUBACK, m["pid"]))
    check(sub.expect_silence(0.5), "more than the unacked messages resent")


# covers: MQTT-4.4.0-1
def test_outbound_pubrel_resent_on_reconnect(ctx):
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect("half", clean=False)
    sub.subscribe(1, [("half/t", 2)])
    pub = RawClient(b.port)
    pub.connect("half-pub")
    pub.send(publish_packet("half/t", b"q2", qos=2, pid=3))
    pub.expect(PUBREC)
    pub.send(ack_packet(PUBREL, 3))
    pub.expect(PUBCOMP)
    m = sub.read_publish()
    sub.send(ack_packet(PUBREC, m["pid"]))
    sub.expect(PUBREL)
    sub.abort()
    sub = RawClient(b.port)
    sp, _ = sub.connect("half", clean=False)
    check(sp == 1, "session present %d" % sp)
    t, f, body = sub.read_packet()
    check(t == 6 and f == 2 and _pid(body) == m["pid"],
          "after reconnect got type %d id %r, want PUBREL %d" % (t, body, m["pid"]))
    sub.send(ack_packet(PUBCOMP, m["pid"]))
    check(sub.expect_silence(0.5), "QoS 2 PUBLISH resent after PUBREL")


# covers: MQTT-4.6.0-6 MQTT-4.6.0-5 MQTT-4.6.0-2 MQTT-4.6.0-3
def test_ordering_of_many_messages(ctx):
    b = ctx.broker()
    sub = Paho(b.port, "order-sub", ctx=ctx)
    sub.connect()
    sub.subscribe("order/#", 2)
    pub = RawClient(b.port)
    pub.connect("order-pub")
    n = 300
    pub.send(b"".join(publish_packet("order/t", b"%d" % i, qos=1, pid=i + 1)
                      for i in range(n)))
    acks = [_pid(pub.expect(PUBACK)[1]) for _ in range(n)]
    check(acks == list(range(1, n + 1)), "PUBACKs out of order")
    got = sub.get_n(n, 10)
    check([m.payload for m in got] == [b"%d" % i for i in range(n)], "QoS 1 reordered")
    pub.send(b"".join(publish_packet("order/2", b"%d" % i, qos=2, pid=i + 1)
                      for i in range(50)))
    recs = [_pid(pub.expect(PUBREC)[1]) for _ in range(50)]
    check(recs == list(range(1, 51)), "PUBRECs out of order")
    pub.send(b"".join(ack_packet(PUBREL, i + 1) for i in range(50)))
    comps = [_pid(pub.expect(PUBCOMP)[1]) for _ in range(50)]
    check(comps == list(range(1, 51)), "PUBCOMPs out of order")
    got = sub.get_n(50, 10)
    check([m.payload for m in got] == [b"%d" % i for i in range(50)], "QoS 2 reordered")


# covers: MQTT-3.3.1-3
def test_incoming_dup_not_copied(ctx):
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect("dupcopy-sub")
    sub.subscribe(1, [("dc/t", 1)])
    pub = RawClient(b.port)
    pub.connect("dupcopy-pub")
    pub.send(publish_packet("dc/t", b"x", qos=1, pid=4, dup=True))
    pub.expect(PUBACK)
    m = sub.read_publish()
    check(not m["dup"], "DUP flag copied from the publisher")


# covers: MQTT-3.1.2-4 MQTT-3.1.2-5 MQTT-4.4.0-1 MQTT-3.2.2-2
def test_offline_queue_delivered_on_reconnect(ctx):
    b = ctx.broker()
    s = Paho(b.port, "offline", clean=False, ctx=ctx)
    s.connect()
    s.subscribe("off/#", 2)
    s.disconnect()
    p = Paho(b.port, "off-pub", ctx=ctx)
    p.connect()
    for i in range(5):
        p.publish("off/1", b"a%d" % i, qos=1)
        p.publish("off/2", b"b%d" % i, qos=2)
    s2 = Paho(b.port, "offline", clean=False, ctx=ctx)
    sp, _ = s2.connect()
    check(sp == 1, "session present %d" % sp)
    got = s2.get_n(10, 5)
    q1 = [m.payload for m in got if m.topic == "off/1"]
    q2 = [m.payload for m in got if m.topic == "off/2"]
    check(q1 == [b"a%d" % i for i in range(5)], "QoS 1 queue: %r" % q1)
    check(q2 == [b"b%d" % i for i in range(5)], "QoS 2 queue: %r" % q2)
    check(all(m.qos == 1 for m in got if m.topic == "off/1"), "QoS 1 downgraded")
    check(all(m.qos == 2 for m in got if m.topic == "off/2"), "QoS 2 downgraded")


# covers: MQTT-3.1.2-6
def test_clean_session_discards_queue(ctx):
    b = ctx.broker()
    s = Paho(b.port, "discard", clean=False, ctx=ctx)
    s.connect()
    s.subscribe("disc/#", 1)
    s.disconnect()
    p = Paho(b.port, "disc-pub", ctx=ctx)
    p.connect()
    p.publish("disc/a", b"lost", qos=1)
    c = Paho(b.port, "discard", clean=True, ctx=ctx)
    sp, _ = c.connect()
    check(sp == 0, "clean_session=1: session present %d" % sp)
    check(c.none(0.7) is None, "clean_session=1 client got the old queue")
    c.disconnect()
    p.publish("disc/a", b"after", qos=1)
    d = Paho(b.port, "discard", clean=False, ctx=ctx)
    sp, _ = d.connect()
    check(sp == 0, "old session survived clean_session=1")
    check(d.none(0.7) is None, "old subscription survived clean_session=1")


# covers: MQTT-4.3.2-1
def test_max_inflight_limits_unacked(ctx):
    b = ctx.broker(max_inflight_messages=2)
    sub = RawClient(b.port)
    sub.connect("inflight")
    sub.subscribe(1, [("inf/t", 1)])
    pub = RawClient(b.port)
    pub.connect("inflight-pub")
    for i in range(6):
        pub.send(publish_packet("inf/t", b"%d" % i, qos=1, pid=i + 1))
        pub.expect(PUBACK)
    a = sub.read_publish()
    bm = sub.read_publish()
    check(sub.expect_silence(0.5), "more than max_inflight_messages=2 unacked")
    pids = {a["pid"], bm["pid"]}
    check(len(pids) == 2, "two in-flight messages share a packet id")
    got = [a["payload"], bm["payload"]]
    sub.send(ack_packet(PUBACK, a["pid"]))
    sub.send(ack_packet(PUBACK, bm["pid"]))
    for _ in range(4):
        m = sub.read_publish()
        got.append(m["payload"])
        sub.send(ack_packet(PUBACK, m["pid"]))
    check(got == [b"%d" % i for i in range(6)], "order after the window: %r" % got)


# covers: MQTT-4.3.2-1 MQTT-4.6.0-6
def test_drain_acked_one_by_one_keeps_window(ctx):
    # A reconnected session drains its offline queue to a client that
    # acknowledges every message in a write of its own, as libmosquitto
    # does. However the broker takes those acknowledgements (it polls for
    # them without sleeping during a drain, conn_expect_input), no more
    # than max_inflight_messages PUBLISHes are ever unacknowledged, packet
    # ids in flight are distinct, and the queue arrives whole and in order.
    require_cairn("Mosquitto 2.0.11 sends past max_inflight_messages once a reconnected "
                  "session acknowledges: each PUBACK releases a whole window more")
    window, n = 10, 400
    b = ctx.broker(max_inflight_messages=window)
    s = RawClient(b.port)
    s.connect("drain-win", clean=False)
    s.subscribe(1, [("dw/t", 1)])
    s.disconnect()
    p = RawClient(b.port)
    p.connect("drain-win-pub")
    for i in range(n):
        p.publish("dw/t", b"%d" % i, qos=1, pid=i % 65535 + 1)
    s = RawClient(b.port)
    sp, _ = s.connect("drain-win", clean=False)
    check(sp == 1, "session present %d" % sp)
    got, unacked, most = [], {}, 0
    while len(got) < n:
        # Take everything that has arrived, then acknowledge it, one
        # PUBACK per write: what arrived before the acks is what the broker
        # had in flight.
        batch = [parse_publish(*s.expect(PUBLISH, 3.0))]
        while True:
            try:
                t, f, body = s.read_packet(0.02)
            except socket.timeout:
                break
            check(t == PUBLISH, "packet type %d during the drain" % t)
            batch.append(parse_publish(f, body))
        for m in batch:
            check(m["qos"] == 1, "QoS %d in the drain" % m["qos"])
            check(m["pid"] not in unacked, "packet id %d twice in flight" % m["pid"])
            unacked[m["pid"]] = m
            got.append(m["payload"])
        most = max(most, len(unacked))
        check(most <= window, "%d PUBLISHes unacknowledged, max_inflight_messages %d" %
              (most, window))
        for m in batch:
            s.send(ack_packet(PUBACK, m["pid"]))
            del unacked[m["pid"]]
    check(got == [b"%d" % i for i in range(n)], "drain out of order or incomplete: %d "
          "messages, first differences %r" %
          (len(got), [(i, g) for i, g in enumerate(got) if g != b"%d" % i][:3]))
    check(most == window, "the window never filled (%d of %d): the drain was not tested" %
          (most, window))
    check(s.expect_silence(0.3), "a PUBLISH after the queue was drained")


# covers: MQTT-4.6.0-4
def test_pubrels_follow_pubrec_order(ctx):
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect("relorder")
    sub.subscribe(1, [("ro/t", 2)])
    pub = RawClient(b.port)
    pub.connect("relorder-pub")
    for i in range(5):
        pub.publish("ro/t", b"%d" % i, qos=2, pid=i + 1)
    ms = [sub.read_publish() for _ in range(5)]
    order = [m["pid"] for m in reversed(ms)]
    sub.send(b"".join(ack_packet(PUBREC, pid) for pid in order))
    rels = []
    for _ in range(5):
        f, body = sub.expect(PUBREL)
        rels.append(_pid(body))
    check(rels == order, "PUBRELs %r, PUBRECs were sent in order %r" % (rels, order))
    sub.send(b"".join(ack_packet(PUBCOMP, pid) for pid in order))
    check(sub.expect_silence(0.3), "unexpected packet after PUBCOMPs")


# covers: MQTT-3.10.4-3 MQTT-3.10.4-2
def test_unsubscribe_finishes_started_deliveries(ctx):
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect("unsub-inflight")
    sub.subscribe(1, [("ui/1", 1), ("ui/2", 2)])
    pub = RawClient(b.port)
    pub.connect("unsub-inflight-pub")
    pub.publish("ui/1", b"one", qos=1, pid=1)
    pub.publish("ui/2", b"two", qos=2, pid=2)
    m1 = sub.read_publish()
    m2 = sub.read_publish()
    sub.send(unsubscribe_packet(9, ["ui/1", "ui/2"]))
    sub.expect(UNSUBACK)
    sub.send(ack_packet(PUBACK, m1["pid"]))
    sub.send(ack_packet(PUBREC, m2["pid"]))
    f, body = sub.expect(PUBREL)
    check(_pid(body) == m2["pid"], "PUBREL for the started QoS 2 delivery")
    sub.send(ack_packet(PUBCOMP, m2["pid"]))
    pub.publish("ui/1", b"late", qos=1, pid=3)
    check(sub.expect_silence(0.5), "delivered after UNSUBSCRIBE")


def _stream_then(ctx, name, tail):
    """A publisher writes a run of QoS 0 PUBLISHes in one write (the broker
    then rests its connection for a moment, src/conn.c
    conn_rest_if_streaming), then tail in a second write. Returns the
    subscriber, the publisher and the payloads sent."""
    b = ctx.broker()
    sub = RawClient(b.port)
    sub.connect(name + "-sub")
    sub.subscribe(1, [(name + "/#", 0)])
    pub = RawClient(b.port)
    pub.connect(name + "-pub", will=(name + "/will", b"gone", 0, False))
    first = [b"a%d" % i for i in range(64)]
    pub.send(b"".join(publish_packet(name + "/t", p) for p in first))
    more = [b"b%d" % i for i in range(10)]
    pub.send(b"".join(publish_packet(name + "/t", p) for p in more) + tail)
    return sub, pub, first + more


# covers: MQTT-4.6.0-6
def test_qos0_stream_then_pingreq_and_qos1_answered_in_order(ctx):
    """A stream of QoS 0 PUBLISHes rests its connection: whatever the
    publisher sends next is still read and answered, in order, and a QoS 1
    PUBLISH after the stream is acknowledged."""
    sub, pub, sent = _stream_then(ctx, "rest", PINGREQ_PKT)
    pub.expect(PINGRESP, timeout=3.0)
    pub.send(publish_packet("rest/t", b"q1", qos=1, pid=7))
    f, body = pub.expect(PUBACK, timeout=3.0)
    check(_pid(body) == 7, "PUBACK for the QoS 1 PUBLISH after the stream")
    got = [sub.read_publish(timeout=3.0)["payload"] for _ in range(len(sent) + 1)]
    check(got == sent + [b"q1"], "stream delivered out of order or incomplete: %r" % got[:8])
    pub.send(DISCONNECT_PKT)
    check(sub.expect_silence(0.3), "a will or an extra message after DISCONNECT")


def test_qos0_stream_then_close_publishes_the_will(ctx):
    """A publisher that closes its socket right after a stream of QoS 0
    PUBLISHes (while its connection rests) is seen to go: every message is
    delivered, then its will."""
    sub, pub, sent = _stream_then(ctx, "restclose", b"")
    pub.sock.close()
    got = [sub.read_publish(timeout=3.0) for _ in range(len(sent) + 1)]
    check([m["payload"] for m in got[:-1]] == sent, "stream delivered out of order or incomplete")
    check(got[-1]["topic"] == "restclose/will" and got[-1]["payload"] == b"gone",
          "the will after the stream, got %r" % got[-1])
