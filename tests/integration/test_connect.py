"""CONNECT / CONNACK: return codes, session present, client id rules, and
CONNECTs the broker must refuse by closing the socket."""

import socket
import time

from harness import (CONNACK, SUBACK, Closed, RawClient, TestFailure, check, connect_packet,
                     mstr, publish_packet, require_cairn, subscribe_packet)


# covers: MQTT-3.1.2-2 MQTT-3.2.2-4 MQTT-3.2.2-5
def test_connack_unsupported_protocol_level(ctx):
    b = ctx.broker()
    for level in (2, 7, 255):
        c = RawClient(b.port)
        c.send(connect_packet("lvl%d" % level, level=level))
        c.expect_refused(1, "level %d" % level)
        c.close()
    b.assert_serves()


# covers: MQTT-3.1.3-8 MQTT-3.1.3-9 MQTT-3.2.2-4 MQTT-3.2.2-5
def test_connack_zero_length_id_persistent_rejected(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect_packet("", clean=False))
    c.expect_refused(2, "empty id, clean session 0")
    b.assert_serves()


# covers: MQTT-3.2.2-4 MQTT-3.2.2-5 MQTT-3.1.4-5
def test_connack_not_authorized(ctx):
    b = ctx.broker(allow_anonymous="false")
    c = RawClient(b.port)
    # A PUBLISH right behind the rejected CONNECT must not be processed.
    c.send(connect_packet("anon") + publish_packet("leak/t", b"x", retain=True))
    c.expect_refused(5, "anonymous")


# covers: MQTT-3.1.3-6 MQTT-3.2.2-1 MQTT-3.1.4-4 MQTT-3.2.0-1
def test_zero_length_id_with_clean_session_accepted(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect_packet("", clean=True))
    t, _, body = c.read_packet()
    check(t == CONNACK, "first packet from server is type %d, not CONNACK" % t)
    check(body == b"\x00\x00", "CONNACK %r, want 00 00" % body)
    check(c.subscribe(1, [("z/t", 1)]) == [1], "SUBACK for assigned-id client")
    c2 = RawClient(b.port)
    c2.connect("", clean=True)  # a second anonymous id must not take over the first
    c2.send(publish_packet("z/t", b"hi", qos=0))
    m = c.read_publish()
    check(m["payload"] == b"hi", "assigned-id client lost its subscription")


# covers: MQTT-3.2.2-1 MQTT-3.2.2-2 MQTT-3.2.2-3 MQTT-3.1.2-4 MQTT-3.1.2-6 MQTT-3.1.4-3 MQTT-3.1.3-2
def test_session_present_flag(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    sp, _ = c.connect("sp-client", clean=False)
    check(sp == 0, "first clean_session=0 connect: session present %d" % sp)
    c.subscribe(1, [("sp/t", 1)])
    c.disconnect()
    c = RawClient(b.port)
    sp, _ = c.connect("sp-client", clean=False)
    check(sp == 1, "reconnect clean_session=0: session present %d, want 1" % sp)
    c.disconnect()
    c = RawClient(b.port)
    sp, _ = c.connect("sp-client", clean=True)
    check(sp == 0, "clean_session=1: session present %d, want 0" % sp)
    c.disconnect()
    c = RawClient(b.port)
    sp, _ = c.connect("sp-client", clean=False)
    check(sp == 0, "session discarded by clean_session=1 came back (session present 1)")


# covers: MQTT-3.1.0-2 MQTT-4.8.0-1
def test_second_connect_closes(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("twice")
    c.send(connect_packet("twice"))
    check(c.expect_closed(2), "second CONNECT did not close the connection")
    b.assert_serves()


# covers: MQTT-3.1.0-1
def test_first_packet_not_connect_closes(ctx):
    b = ctx.broker()
    for first in (publish_packet("a/b", b"x"), b"\xc0\x00",
                  b"\x82\xff\xff\xff\x7f" + b"\x00" * 16):
        c = RawClient(b.port)
        c.send(first)
        c.assert_closed_without_reply("first packet %r" % first[:6])
        c.close()
    b.assert_serves()


def test_connect_timeout_closes_silent_socket(ctx):
    require_cairn("connect_timeout is a cairn-only key")
    b = ctx.broker(connect_timeout=1)
    c = RawClient(b.port)
    t0 = time.monotonic()
    check(c.expect_closed(4), "silent socket still open after 4s with connect_timeout 1")
    dt = time.monotonic() - t0
    check(dt >= 0.5, "silent socket closed after only %.2fs" % dt)
    b.assert_serves()


# covers: MQTT-3.1.3-5
def test_mqisdp_level3_and_long_ids_accepted(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("mqisdp-client", proto_name="MQIsdp", level=3)
    check(c.subscribe(3, [("old/t", 1)]) == [1], "MQIsdp client SUBACK")
    c2 = RawClient(b.port)
    c2.connect("abcdefghijklmnopqrstuvW")  # 23 characters, all allowed


# covers: MQTT-3.1.2-1 MQTT-3.1.4-1 MQTT-3.2.2-6
def test_wrong_protocol_name_closes_without_connack(ctx):
    b = ctx.broker()
    for name, level in (("MQTX", 4), ("mqtt", 4), ("MQTT\u00e9", 4)):
        c = RawClient(b.port)
        c.send(connect_packet("pn", proto_name=name, level=level))
        c.assert_closed_without_reply("protocol name %r" % name)
        c.close()
    b.assert_serves()


# covers: MQTT-3.1.2-3
def test_connect_reserved_flag_closes(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect_packet("resv", flags_extra=0x01))
    c.assert_closed_without_reply("CONNECT with the reserved flag set")
    b.assert_serves()


# covers: MQTT-3.1.2-13 MQTT-3.1.2-14 MQTT-3.1.2-15 MQTT-3.1.2-22 MQTT-3.1.2-11
def test_inconsistent_connect_flags_close(ctx):
    b = ctx.broker()
    cases = [
        ("will qos without will flag", connect_packet("f1", flags_extra=0x08)),
        ("will retain without will flag", connect_packet("f2", flags_extra=0x20)),
        ("will qos 3", connect_packet("f3", will=("w/t", b"x", 3, False))),
        ("password without username", connect_packet("f4", password=b"pw")),
    ]
    for what, pkt in cases:
        c = RawClient(b.port)
        c.send(pkt)
        # The broker must close the socket (EOF or reset) within 3 s and
        # answer nothing: a broker that ignored the CONNECT and left the
        # socket open fails here, it does not pass on the read timeout.
        c.assert_closed_without_reply(what, 3)
        c.close()
    b.assert_serves()


# covers: MQTT-1.5.3-1 MQTT-1.5.3-2 MQTT-3.1.3-4
def test_invalid_utf8_client_id_closes(ctx):
    b = ctx.broker()
    for raw in (b"ab\xc3\x28", b"a\x00b", b"x\xed\xa0\x80y", b"\xff\xfe"):
        c = RawClient(b.port)
        c.send(connect_packet(None, raw_client_id=mstr(raw)))
        # Refused with a CONNACK or closed without one; then closed.
        try:
            t, _, body = c.read_packet(3)
            check(t == CONNACK and body[1] != 0,
                  "client id %r accepted (type %d %r)" % (raw, t, body))
        except Closed:
            pass
        except socket.timeout:
            raise TestFailure("client id %r: neither refused nor closed within 3s" % raw)
        c.assert_closed("client id %r" % raw, 2)
        c.close()
    b.assert_serves()


# covers: MQTT-1.5.3-3
def test_bom_in_client_id_kept(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect_packet(None, raw_client_id=mstr(b"\xef\xbb\xbfid"), clean=False))
    _, body = c.expect(CONNACK)
    check(body[1] == 0, "client id with U+FEFF rejected: %r" % body)
    c.disconnect()
    # The BOM is part of the id: "id" alone is a different, new session.
    c = RawClient(b.port)
    sp, _ = c.connect("id", clean=False)
    check(sp == 0, "client id 'id' found the session of '\\ufeffid'")


def test_will_to_broker_topics_refused(ctx):
    # A will may not be used to publish into $SYS or $CONTROL: the CONNECT
    # is refused with 0x05, and nothing reaches a subscriber of those.
    require_cairn("cairn refuses wills to $SYS/$CONTROL")
    # No $SYS of the broker's own: the watcher must hear nothing.
    b = ctx.broker(sys_interval=0)
    watch = RawClient(b.port)
    watch.connect("will-watch")
    watch.send(subscribe_packet(1, [("$SYS/#", 0), ("$CONTROL/#", 0)]))
    watch.expect(SUBACK)
    for topic in ("$SYS/broker/fake", "$CONTROL/dynamic-security/v1"):
        c = RawClient(b.port)
        c.send(connect_packet("will-sys", will=(topic, b"x", 0, True)))
        c.expect_refused(5, "will to %s" % topic)
    # Silence, not a close: a watcher the broker dropped would see no will
    # either.
    check(watch.expect_silence(0.5), "a will reached a $SYS/$CONTROL subscriber, "
          "or the subscriber was disconnected")
    b.assert_serves()
