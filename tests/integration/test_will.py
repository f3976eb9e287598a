"""Keep-alive and Last Will: when a will is published, with which QoS and
retain flag, and when it must not be."""

import socket
import struct
import time

from harness import (DISCONNECT_PKT, PINGREQ_PKT, PINGRESP, Paho, RawClient, check,
                     connect_packet, publish_packet)


def _watcher(ctx, b, topic="will/#", qos=2):
    w = Paho(b.port, "watcher-%s" % topic.replace("/", "_").replace("#", "H"), ctx=ctx)
    w.connect()
    w.subscribe(topic, qos)
    return w


# covers: MQTT-3.1.2-24 MQTT-3.1.2-8
def test_keepalive_expiry_disconnects_and_publishes_will(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b)
    c = RawClient(b.port)
    c.connect("sleepy", keepalive=1, will=("will/sleepy", b"gone", 1, False))
    t0 = time.monotonic()
    check(c.expect_closed(6), "silent keepalive=1 client not disconnected within 6s")
    dt = time.monotonic() - t0
    check(1.0 <= dt <= 2.8, "disconnected after %.2fs, want about 1.5s (1.0-2.8)" % dt)
    m = w.get(3)
    check(m.topic == "will/sleepy" and m.payload == b"gone", "wrong will %r" % m.payload)


# covers: MQTT-3.12.4-1 MQTT-4.1.0-2
def test_pingreq_answered_and_keeps_alive(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("pinger", keepalive=1)
    c.subscribe(1, [("ping/t", 0)])
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        c.send(PINGREQ_PKT)
        f, body = c.expect(PINGRESP)
        check(f == 0 and body == b"", "malformed PINGRESP")
        time.sleep(0.5)
    # The clean session lasted as long as the connection: its subscription still works.
    p = RawClient(b.port)
    p.connect("pinger-pub")
    p.send(publish_packet("ping/t", b"still here"))
    m = c.read_publish()
    check(m["payload"] == b"still here", "subscription lost while the connection lived")


# covers: MQTT-3.1.2-9 MQTT-3.1.2-17 MQTT-3.1.2-16 MQTT-3.1.2-8
def test_will_qos_and_retain_honoured(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b)
    c = RawClient(b.port)
    c.connect("w-ret", will=("will/ret", b"R", 1, True))
    c.abort()
    m = w.get(3)
    check(m.topic == "will/ret" and m.qos == 1, "will qos %d, want 1" % m.qos)
    check(not m.retain, "live subscriber got the will with retain=1")
    c = RawClient(b.port)
    c.connect("w-noret", will=("will/noret", b"N", 2, False))
    c.abort()
    m = w.get(3)
    check(m.topic == "will/noret" and m.qos == 2, "will qos %d, want 2" % m.qos)
    # A later subscriber finds only the retained will.
    late = Paho(b.port, "late", ctx=ctx)
    late.connect()
    late.subscribe("will/#", 2)
    m = late.get(3)
    check(m.topic == "will/ret" and m.retain and m.payload == b"R",
          "retained will not stored (%s retain=%s)" % (m.topic, m.retain))
    extra = late.none(0.5)
    check(extra is None, "non-retained will was stored as retained: %r" %
          (extra and extra.topic))


# covers: MQTT-3.1.2-8 MQTT-4.8.0-1
def test_will_published_on_protocol_error(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b)
    c = RawClient(b.port)
    c.connect("w-bad", will=("will/bad", b"B", 0, False))
    c.send(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3
    check(c.expect_closed(2), "QoS 3 PUBLISH did not close")
    m = w.get(3)
    check(m.topic == "will/bad", "will not published after a protocol error")


# covers: MQTT-4.8.0-2 MQTT-3.1.2-8
def test_connection_reset_closes_and_publishes_will(ctx):
    # A transient network error (the peer resets the TCP connection) ends
    # that one connection: the will goes out and the broker serves on.
    b = ctx.broker()
    w = _watcher(ctx, b)
    c = RawClient(b.port)
    c.connect("w-reset", will=("will/reset", b"R", 1, False))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()
    m = w.get(3)
    check(m.topic == "will/reset" and m.payload == b"R", "will not published after a reset")
    again = RawClient(b.port)
    sp, rc = again.connect("w-reset")
    check(rc == 0, "broker did not accept the client again after the reset")


# covers: MQTT-3.14.4-3 MQTT-3.1.2-10
def test_no_will_after_disconnect(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b)
    c = RawClient(b.port)
    c.connect("w-clean", will=("will/clean", b"C", 1, True))
    c.send(DISCONNECT_PKT)
    check(c.expect_closed(2), "broker did not close after DISCONNECT")
    check(w.none(1.0) is None, "will published after DISCONNECT")
    late = Paho(b.port, "late2", ctx=ctx)
    late.connect()
    late.subscribe("will/#", 1)
    check(late.none(0.5) is None, "will retained after DISCONNECT")


# covers: MQTT-3.1.2-12
def test_no_will_without_will_flag(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b, "#")
    c = RawClient(b.port)
    c.connect("w-none")
    c.abort()
    check(w.none(1.0) is None, "something was published for a client without a will")


# covers: MQTT-3.14.1-1
def test_disconnect_with_reserved_flags_is_a_violation(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b)
    c = RawClient(b.port)
    c.connect("w-dflag", will=("will/dflag", b"D", 0, False))
    c.send(b"\xe1\x00")
    check(c.expect_closed(2), "DISCONNECT with flags 0001 did not close")
    m = w.get(3)
    check(m.topic == "will/dflag", "malformed DISCONNECT treated as a clean DISCONNECT")


# covers: MQTT-3.1.4-2
def test_takeover_closes_first_connection(ctx):
    b = ctx.broker()
    w = _watcher(ctx, b)
    a = RawClient(b.port)
    a.connect("twin", clean=False, will=("will/twin", b"old", 0, False))
    a.subscribe(1, [("take/t", 1)])
    n = RawClient(b.port)
    sp, _ = n.connect("twin", clean=False)
    check(a.expect_closed(2), "first connection not closed by takeover")
    check(sp == 1, "takeover with clean_session=0: session present %d" % sp)
    # The new connection owns the old subscriptions.
    p = RawClient(b.port)
    p.connect("take-pub")
    p.send(publish_packet("take/t", b"to-new", qos=0))
    m = n.read_publish(3)
    check(m["payload"] == b"to-new", "takeover lost the subscription")
    w.none(0.2)


# covers: MQTT-3.1.4-2
def test_takeover_storm_leaves_one_session(ctx):
    b = ctx.broker()
    socks = []
    for i in range(30):
        c = RawClient(b.port)
        c.send(connect_packet("storm", clean=(i % 2 == 0)))
        socks.append(c)
    last = RawClient(b.port)
    last.connect("storm", clean=False)
    last.subscribe(1, [("storm/t", 0)])
    for c in socks:
        check(c.expect_closed(3), "an older 'storm' connection stayed open")
        c.close()
    last.send(PINGREQ_PKT)
    last.expect(PINGRESP)
    b.assert_serves("takeover storm")
