"""MQTT 5.0 connections: CONNECT and CONNACK with their properties and
reason codes, server-initiated DISCONNECT with the right reason, AUTH, and
5.0 beside 3.1.1 on one listener."""

import os
import signal
import time

from harness import (CONNACK, PINGREQ_PKT, PINGRESP, Paho, RawClient, check, connect_packet,
                     packet, require_cairn, wait_until)
from mqtt5 import (AUTH_METHOD, MAX_PACKET_SIZE, RECEIVE_MAX, RETAIN_AVAILABLE, SERVER_KEEPALIVE,
                   SESSION_EXPIRY, SHARED_AVAILABLE, SUB_ID_AVAILABLE, TOPIC_ALIAS_MAX,
                   WILDCARD_AVAILABLE, ASSIGNED_CLIENT_ID, MAX_QOS, Paho5, connect5, do_connect,
                   expect_disconnect, props, publish5)


# covers: MQTT5-3.1.4-5 MQTT5-3.2.2-1 MQTT5-3.2.2-2 MQTT5-3.2.0-1 MQTT5-2.2.2-1 MQTT5-3.2.2-22
def test_mqtt5_connack_properties(ctx):
    require_cairn("CONNACK property values are cairn's configuration")
    b = ctx.broker(max_inflight_messages=7, max_packet_size=4096, max_topic_alias=5)
    c = RawClient(b.port)
    sp, rc, pr = do_connect(c, "v5-props")
    check(sp == 0 and rc == 0, "CONNACK flags %d reason %d" % (sp, rc))
    check(pr.get(RECEIVE_MAX) == 7, "receive maximum %r, want 7" % pr.get(RECEIVE_MAX))
    check(pr.get(MAX_PACKET_SIZE) == 4096, "maximum packet size %r" % pr.get(MAX_PACKET_SIZE))
    check(pr.get(TOPIC_ALIAS_MAX) == 5, "topic alias maximum %r" % pr.get(TOPIC_ALIAS_MAX))
    check(pr.get(RETAIN_AVAILABLE) == 1, "retain available %r" % pr.get(RETAIN_AVAILABLE))
    check(pr.get(WILDCARD_AVAILABLE) == 1 and pr.get(SUB_ID_AVAILABLE) == 1,
          "wildcard / subscription id available: %r" % pr)
    check(pr.get(SHARED_AVAILABLE) == 1, "shared subscriptions not announced: %r" % pr)
    check(MAX_QOS not in pr, "maximum QoS sent although QoS 2 is supported")
    check(SERVER_KEEPALIVE not in pr, "server keep alive sent although nothing was capped")
    check(ASSIGNED_CLIENT_ID not in pr, "client id assigned although one was given")
    c.send(PINGREQ_PKT)
    c.expect(PINGRESP)
    check("protocol 5.0" in b.log_text(), "log does not say protocol 5.0")


# covers: MQTT5-3.1.3-6 MQTT5-3.1.3-7 MQTT5-3.2.2-16
def test_mqtt5_assigned_client_identifier(ctx):
    b = ctx.broker()
    ids = set()
    for clean in (True, False):
        c = RawClient(b.port)
        sp, rc, pr = do_connect(c, "", clean=clean, properties=props((SESSION_EXPIRY, 0)))
        aid = pr.get(ASSIGNED_CLIENT_ID)
        check(aid, "no Assigned Client Identifier for an empty id (clean %s)" % clean)
        ids.add(aid)
        c.close()
    check(len(ids) == 2, "assigned ids repeat: %r" % ids)


# covers: MQTT5-3.2.2-22
def test_mqtt5_server_keep_alive_when_capped(ctx):
    require_cairn("max_keepalive is cairn's and Mosquitto's, values differ")
    b = ctx.broker(max_keepalive=30)
    c = RawClient(b.port)
    _, _, pr = do_connect(c, "ka", keepalive=600)
    check(pr.get(SERVER_KEEPALIVE) == 30, "server keep alive %r, want 30" %
          pr.get(SERVER_KEEPALIVE))


# covers: MQTT5-3.1.2-2 MQTT5-3.1.2-1
def test_mqtt5_and_311_on_one_listener(ctx):
    b = ctx.broker()
    old = Paho(b.port, "old", ctx=ctx)
    old.connect()
    old.subscribe("mix/#", 1)
    new = Paho5(b.port, "new", ctx=ctx)
    new.connect()
    new.subscribe("mix/#", 1)
    new.publish("mix/a", b"from5", 1)
    old.publish("mix/b", b"from311", 1)
    got_old = sorted(m.payload for m in (old.get(), old.get()))
    got_new = sorted(m.payload for m in (new.get(), new.get()))
    check(got_old == [b"from311", b"from5"], "3.1.1 subscriber got %r" % got_old)
    check(got_new == [b"from311", b"from5"], "5.0 subscriber got %r" % got_new)
    # A level neither 3, 4 nor 5 is still refused with 3.1.1's code 1.
    c = RawClient(b.port)
    c.send(connect_packet("lvl6", level=6))
    c.expect_refused(1, "level 6")


# covers: MQTT5-4.12.0-1 MQTT5-4.12.0-4 MQTT5-3.1.4-2 MQTT5-3.2.2-6 MQTT5-3.2.2-7 MQTT5-3.2.2-8
def test_mqtt5_auth_method_refused_0x8c(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    sp, rc, _ = do_connect(c, "authm", expect_reason=None,
                           properties=props((AUTH_METHOD, "SCRAM-SHA-1")))
    check(rc == 0x8C and sp == 0, "CONNACK reason 0x%02x sp %d, want 0x8c 0" % (rc, sp))
    check(c.expect_closed(2), "socket left open after CONNACK 0x8C")


# covers: MQTT5-3.15.1-1 MQTT5-4.12.0-2
def test_mqtt5_auth_without_method_is_protocol_error(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "authp")
    c.send(packet(0xF0, b"\x18\x00"))  # AUTH continue authentication
    expect_disconnect(c, 0x82)


# covers: MQTT5-3.1.4-2 MQTT5-3.2.2-8
def test_mqtt5_bad_password_0x86_not_authorized_0x87(ctx):
    from test_auth import _pwfile
    pw = _pwfile(ctx, "pw5", {"alice": "secret"})
    b = ctx.broker(allow_anonymous="false", password_file=pw)
    c = RawClient(b.port)
    _, rc, _ = do_connect(c, "p1", expect_reason=None, username="alice", password="wrong")
    check(rc == 0x86, "bad password: CONNACK 0x%02x, want 0x86" % rc)
    check(c.expect_closed(2), "socket open after 0x86")
    c = RawClient(b.port)
    _, rc, _ = do_connect(c, "p2", expect_reason=None)
    check(rc in (0x86, 0x87), "anonymous: CONNACK 0x%02x, want 0x86/0x87" % rc)
    c = RawClient(b.port)
    do_connect(c, "p3", username="alice", password="secret")


# covers: MQTT5-1.5.4-2 MQTT5-3.1.4-1
def test_mqtt5_malformed_connect_gets_connack_0x81(ctx):
    """A 5.0 CONNECT that does not decode is answered with CONNACK 0x81
    before the close (an empty client id is assigned one in 5.0, so 0x85
    is never needed)."""
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect5("bad\u0000id"))
    t, _, body = c.read_packet(2)
    # U+0000 in a string is malformed: CONNACK 0x81, then the close.
    check(t == CONNACK and body[1] == 0x81, "id with U+0000: %d %r" % (t, body))
    check(c.expect_closed(2), "socket open after CONNACK 0x81")


# covers: MQTT5-3.1.4-3
def test_mqtt5_session_taken_over_0x8e(ctx):
    b = ctx.broker()
    a = RawClient(b.port)
    do_connect(a, "twin")
    c = RawClient(b.port)
    do_connect(c, "twin")
    expect_disconnect(a, 0x8E)
    c.send(PINGREQ_PKT)
    c.expect(PINGRESP)


# covers: MQTT5-3.1.2-22
def test_mqtt5_keep_alive_timeout_0x8d(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "sleepy5", keepalive=1)
    expect_disconnect(c, 0x8D, timeout=4)


# covers: MQTT5-3.1.0-2
def test_mqtt5_second_connect_0x82(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "twice")
    c.send(connect5("twice"))
    expect_disconnect(c, 0x82)


def test_mqtt5_packet_too_large_0x95(ctx):
    b = ctx.broker(max_packet_size=1024)
    c = RawClient(b.port)
    do_connect(c, "big")
    c.send(publish5("big/t", b"x" * 2000))
    expect_disconnect(c, 0x95)


# covers: MQTT5-1.5.5-1
def test_mqtt5_malformed_0x81(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "mal")
    # A property block that runs past the packet.
    c.send(packet(0x30, b"\x00\x01a\x05\x01"))
    expect_disconnect(c, 0x81)


def test_mqtt5_sigterm_sends_0x8b(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "bye")
    os.kill(b.proc.pid, signal.SIGTERM)
    expect_disconnect(c, 0x8B, timeout=5)
    b.proc.wait(5)
    b.proc = None


# covers: MQTT5-3.1.4-2
def test_mqtt5_store_unavailable_0x88(ctx):
    """While commits fail, a new 5.0 session with an expiry interval is
    refused with CONNACK 0x88; one with expiry 0 still connects."""
    require_cairn("store outages are cairn's")
    rs = ctx.redis()
    b = ctx.durable_broker("redis", redis_port=rs.port, redis_connect_timeout=500)
    rs.kill()
    s = RawClient(b.port)
    s.connect("outage5-first", clean=False)
    check(wait_until(lambda: "store commits failing" in b.log_text(), 5),
          "the outage was not noticed")
    c = RawClient(b.port)
    _, rc, _ = do_connect(c, "outage5-p", clean=False, properties=props((SESSION_EXPIRY, 60)),
                          expect_reason=None)
    check(rc == 0x88, "CONNACK 0x%02x, want 0x88" % rc)
    check(c.expect_closed(2), "refused connection left open")
    c = RawClient(b.port)
    do_connect(c, "outage5-clean")


test_mqtt5_store_unavailable_0x88.timeout = 40


def test_mqtt5_connect_time_is_quick(ctx):
    """A sanity bound: 50 5.0 connects on one broker finish promptly."""
    b = ctx.broker()
    t0 = time.monotonic()
    for i in range(50):
        c = RawClient(b.port)
        do_connect(c, "q%d" % i)
        c.close()
    check(time.monotonic() - t0 < 10, "50 connects took %.1fs" % (time.monotonic() - t0))


def test_mqtt5_reload_removing_user_disconnects_with_0x87(ctx):
    """A 5.0 client whose credentials a SIGHUP reload removed is told why:
    DISCONNECT 0x87 (a 3.1.1 client is just closed)."""
    require_cairn("cairn's password_file reload")
    from test_auth import _cairn_passwd, _pwfile
    pw = _pwfile(ctx, "rl5", {"erin": "e", "finn": "f"})
    b = ctx.broker(allow_anonymous="false", password_file=pw)
    erin, finn = RawClient(b.port), RawClient(b.port)
    do_connect(erin, "c-erin", username="erin", password="e")
    do_connect(finn, "c-finn", username="finn", password="f")
    check(_cairn_passwd("-D", pw, "erin").returncode == 0, "delete failed")
    os.kill(b.proc.pid, signal.SIGHUP)
    expect_disconnect(erin, 0x87)
    finn.send(PINGREQ_PKT)
    finn.expect(PINGRESP)


def test_mqtt5_will_payload_not_utf8_refused_0x99(ctx):
    """A will whose Payload Format Indicator says UTF-8 must carry UTF-8:
    CONNACK 0x99 (Payload format invalid) otherwise."""
    b = ctx.broker()
    c = RawClient(b.port)
    _, rc, _ = do_connect(c, "wpf", expect_reason=None, will=("w/t", b"\xff\xfe", 0, False),
                          will_properties=props((0x01, 1)))
    check(rc == 0x99, "CONNACK 0x%02x, want 0x99" % rc)
    check(c.expect_closed(2), "socket open after CONNACK 0x99")
    c = RawClient(b.port)
    do_connect(c, "wpf2", will=("w/t", "\u00e9t\u00e9".encode(), 0, False),
               will_properties=props((0x01, 1)))


def test_mqtt5_will_topic_with_too_many_levels_0x90(ctx):
    require_cairn("cairn's level limit")
    b = ctx.broker()
    c = RawClient(b.port)
    _, rc, _ = do_connect(c, "wtl", expect_reason=None, will=("/" * 250, b"x", 0, False))
    check(rc == 0x90, "CONNACK 0x%02x, want 0x90" % rc)
    check(c.expect_closed(2), "socket open after CONNACK 0x90")
