"""MQTT 5.0 versions of the broker's general duties, with raw 5.0 clients:
the QoS 1 and QoS 2 flows in both directions, redelivery on reconnect,
retained messages, SUBSCRIBE / UNSUBSCRIBE handling, ordering, matching,
and the packets a 5.0 client must never get (Reason Strings and User
Properties on acknowledgements, Response Information, AUTH)."""

import struct
import time

from harness import (PINGREQ_PKT, PINGRESP, PUBACK, PUBCOMP, PUBREC, PUBREL, RawClient, check,
                     packet)
from mqtt5 import (CONTENT_TYPE, MAX_PACKET_SIZE, MESSAGE_EXPIRY, REQUEST_PROBLEM_INFO,
                   REQUEST_RESPONSE_INFO, SESSION_EXPIRY, ack5, connect5, disconnect5,
                   do_connect, expect_disconnect, parse_props, props, publish5, read_ack5,
                   read_publish5, read_suback5, read_unsuback5, subscribe5, unsubscribe5)

RESPONSE_INFO, REASON_STRING, USER_PROPERTY = 0x1A, 0x1F, 0x26


def _persistent(b, cid, filters=None, expiry=300):
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, cid, clean=False, properties=props((SESSION_EXPIRY, expiry)))
    if filters:
        c.send(subscribe5(1, filters))
        read_suback5(c, 1)
    return c, sp


def _publisher(b, cid="flow-pub"):
    p = RawClient(b.port)
    do_connect(p, cid)
    return p


def _publish_qos2(p, topic, payload, pid, **kw):
    """The publisher's side of a whole QoS 2 exchange: PUBLISH, PUBREC,
    PUBREL, PUBCOMP."""
    p.send(publish5(topic, payload, qos=2, pid=pid, **kw))
    check(read_ack5(p, PUBREC)[0] == pid, "PUBREC for %d" % pid)
    p.send(ack5(PUBREL, pid))
    check(read_ack5(p, PUBCOMP) == (pid, 0), "PUBCOMP for %d" % pid)


# covers: MQTT5-4.3.2-1 MQTT5-4.3.2-2 MQTT5-4.3.2-3 MQTT5-4.3.2-4 MQTT5-2.2.1-4 MQTT5-2.2.1-5
# covers: MQTT5-3.3.4-1 MQTT5-4.3.1-1 MQTT5-4.2.0-1 MQTT5-4.5.0-1 MQTT5-3.12.4-1
def test_mqtt5_qos1_both_directions(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "q1s")
    s.send(subscribe5(1, [("q1/#", 1)]))
    read_suback5(s, 1)
    p = _publisher(b)
    p.send(publish5("q1/a", b"zero"))
    p.send(publish5("q1/a", b"one", qos=1, pid=5))
    check(read_ack5(p, PUBACK) == (5, 0), "PUBACK carries the PUBLISH's id")
    m0, m1 = read_publish5(s), read_publish5(s)
    check(m0["qos"] == 0 and m0["pid"] is None and not m0["dup"], "QoS 0 delivery %r" % m0)
    check(m1["qos"] == 1 and m1["pid"] and not m1["dup"], "QoS 1 delivery %r" % m1)
    p.send(publish5("q1/a", b"two", qos=1, pid=6))
    read_ack5(p, PUBACK)
    m2 = read_publish5(s)
    check(m2["pid"] != m1["pid"], "a new message reused an unacknowledged id")
    s.send(ack5(PUBACK, m1["pid"]))
    s.send(ack5(PUBACK, m2["pid"]))
    s.send(PINGREQ_PKT)
    s.expect(PINGRESP)


# covers: MQTT5-4.3.2-5 MQTT5-4.3.3-12 MQTT5-3.3.1-3
def test_mqtt5_same_id_after_ack_is_a_new_message(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "sid-s")
    s.send(subscribe5(1, [("sid/#", 0)]))
    read_suback5(s, 1)
    p = _publisher(b)
    for i in range(2):
        p.send(publish5("sid/1", b"q1-%d" % i, qos=1, pid=9, dup=(i == 1)))
        read_ack5(p, PUBACK)
        m = read_publish5(s)
        check(m["payload"] == b"q1-%d" % i and not m["dup"],
              "QoS 1 id reused after PUBACK: %r" % m)
    for i in range(2):
        _publish_qos2(p, "sid/2", b"q2-%d" % i, 9)
        m = read_publish5(s)
        check(m["payload"] == b"q2-%d" % i, "QoS 2 id reused after PUBCOMP: %r" % m)


# covers: MQTT5-4.3.3-8 MQTT5-4.3.3-10 MQTT5-4.3.3-11 MQTT5-4.3.3-13
def test_mqtt5_qos2_inbound_exactly_once(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "q2s")
    s.send(subscribe5(1, [("q2/#", 2)]))
    read_suback5(s, 1)
    p = _publisher(b)
    p.send(publish5("q2/a", b"once", qos=2, pid=3, properties=props((MESSAGE_EXPIRY, 1))))
    check(read_ack5(p, PUBREC) == (3, 0), "PUBREC")
    p.send(publish5("q2/a", b"once", qos=2, pid=3, dup=True))
    check(read_ack5(p, PUBREC) == (3, 0), "PUBREC for the resend")
    time.sleep(1.2)  # the message expired: the exchange still completes
    p.send(ack5(PUBREL, 3))
    check(read_ack5(p, PUBCOMP) == (3, 0), "PUBCOMP after the message expired")
    m = read_publish5(s)
    check(m["payload"] == b"once", "delivery %r" % m)
    s.send(ack5(PUBREC, m["pid"]))
    check(read_ack5(s, PUBREL)[0] == m["pid"], "PUBREL")
    s.send(ack5(PUBCOMP, m["pid"]))
    check(s.expect_silence(0.4), "QoS 2 message delivered twice")


# covers: MQTT5-4.3.3-1 MQTT5-4.3.3-2 MQTT5-4.3.3-3 MQTT5-4.3.3-4 MQTT5-4.3.3-5 MQTT5-4.3.3-6
# covers: MQTT5-3.3.1-1 MQTT5-4.4.0-1 MQTT5-4.3.3-7
def test_mqtt5_qos2_outbound_and_redelivery(ctx):
    b = ctx.broker()
    s, _ = _persistent(b, "q2o", [("q2o/#", 2)])
    p = _publisher(b)
    _publish_qos2(p, "q2o/a", b"A", 1, properties=props((MESSAGE_EXPIRY, 1)))
    _publish_qos2(p, "q2o/b", b"B", 2)
    a, bb = read_publish5(s), read_publish5(s)
    check(a["qos"] == 2 and not a["dup"] and a["pid"] != bb["pid"], "QoS 2 sends %r %r" % (a, bb))
    check(s.expect_silence(0.3), "resent before any reconnect")
    s.send(ack5(PUBREC, bb["pid"]))
    check(read_ack5(s, PUBREL)[0] == bb["pid"], "PUBREL after PUBREC")
    s.abort()
    time.sleep(1.3)  # A's expiry passes; its delivery has begun, so it is finished
    s, sp = _persistent(b, "q2o")
    check(sp == 1, "session lost")
    r1 = read_publish5(s)
    check(r1["payload"] == b"A" and r1["dup"] and r1["pid"] == a["pid"],
          "unacknowledged PUBLISH not resent with DUP and its id: %r" % r1)
    t, f, body = s.read_packet()
    check(t == PUBREL and struct.unpack("!H", body[:2])[0] == bb["pid"],
          "PUBREL not resent (got type %d); the PUBLISH must not be" % t)
    s.send(ack5(PUBCOMP, bb["pid"]))
    s.send(ack5(PUBREC, a["pid"]))
    read_ack5(s, PUBREL)
    s.send(ack5(PUBCOMP, a["pid"]))
    check(s.expect_silence(0.4), "more resent than was unacknowledged")


# covers: MQTT5-4.4.0-2 MQTT5-4.3.3-9
def test_mqtt5_failed_pubrec_counts_as_acknowledged(ctx):
    b = ctx.broker()
    s, _ = _persistent(b, "frc", [("frc/#", 2)])
    p = _publisher(b)
    _publish_qos2(p, "frc/a", b"x", 1)
    m = read_publish5(s)
    s.send(ack5(PUBREC, m["pid"], 0x80))  # the subscriber refuses it
    check(s.expect_silence(0.4), "PUBREL after a failed PUBREC")
    s.abort()
    s, _ = _persistent(b, "frc")
    check(s.expect_silence(0.5), "a message refused with PUBREC 0x80 was resent")
    # The broker as receiver: after its PUBREC 0x99 the id is free again.
    p.send(publish5("frc/b", b"\xff", qos=2, pid=4, properties=props((0x01, 1))))
    check(read_ack5(p, PUBREC) == (4, 0x99), "PUBREC 0x99")
    p.send(publish5("frc/b", b"ok", qos=2, pid=4))
    check(read_ack5(p, PUBREC) == (4, 0), "same id after a failed PUBREC")
    p.send(ack5(PUBREL, 4))
    read_ack5(p, PUBCOMP)
    check(read_publish5(s)["payload"] == b"ok", "new message under the same id not delivered")


# covers: MQTT5-3.3.1-5 MQTT5-3.3.1-6 MQTT5-3.3.1-7 MQTT5-3.3.1-8 MQTT5-3.1.2-15
def test_mqtt5_retained_messages(ctx):
    b = ctx.broker()
    p = _publisher(b)
    p.send(publish5("rt/a", b"old", qos=1, pid=1, retain=True))
    read_ack5(p, PUBACK)
    p.send(publish5("rt/a", b"new", qos=1, pid=2, retain=True))
    read_ack5(p, PUBACK)
    p.send(publish5("rt/a", b"plain", qos=1, pid=3))  # RETAIN 0 leaves it
    read_ack5(p, PUBACK)
    s = RawClient(b.port)
    do_connect(s, "rt-s")
    s.send(subscribe5(1, [("rt/#", 1)]))
    read_suback5(s, 1)
    m = read_publish5(s)
    check(m["payload"] == b"new" and m["retain"], "retained %r" % m)
    s.send(ack5(PUBACK, m["pid"]))
    p.send(publish5("rt/a", b"", qos=1, pid=4, retain=True))  # delete
    read_ack5(p, PUBACK)
    m = read_publish5(s)
    check(m["payload"] == b"", "the empty retained PUBLISH is delivered normally: %r" % m)
    s.send(ack5(PUBACK, m["pid"]))
    # A will with Will Retain 1 is published retained.
    w = RawClient(b.port)
    do_connect(w, "rt-will", will=("rt/will", b"w", 0, True))
    w.abort()
    m = read_publish5(s)
    check(m["payload"] == b"w", "will %r" % m)
    s2 = RawClient(b.port)
    do_connect(s2, "rt-s2")
    s2.send(subscribe5(1, [("rt/#", 0)]))
    read_suback5(s2, 1)
    m = read_publish5(s2)
    check(m["topic"] == "rt/will" and m["retain"], "only the retained will remains: %r" % m)
    check(s2.expect_silence(0.3), "an empty payload was kept as a retained message")


# covers: MQTT5-3.8.4-1 MQTT5-3.8.4-2 MQTT5-3.8.4-3 MQTT5-3.8.4-5 MQTT5-3.8.4-6 MQTT5-3.8.4-7
# covers: MQTT5-3.8.4-8 MQTT5-3.9.3-1 MQTT5-3.3.4-2 MQTT5-3.3.2-3
def test_mqtt5_subscribe_grants_and_replaces(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "sg")
    s.send(subscribe5(0x1234, [("sg/a", 2), ("sg/#/bad", 1), ("sg/+", 1), ("sg/c", 0)]))
    check(read_suback5(s, 0x1234) == [2, 0x8F, 1, 0], "codes in filter order")
    s.send(subscribe5(2, [("sg/a", 0)]))  # replaces QoS 2 by 0
    check(read_suback5(s, 2) == [0], "replacement")
    p = _publisher(b)
    _publish_qos2(p, "sg/a", b"x", 1)
    m = read_publish5(s)
    # sg/a now QoS 0 and sg/+ QoS 1 overlap: one copy at QoS 1.
    check(m["qos"] == 1 and m["topic"] == "sg/a", "overlap delivered at %r" % m)
    s.send(ack5(PUBACK, m["pid"]))
    check(s.expect_silence(0.3), "overlapping subscriptions delivered twice")
    p.send(publish5("sg/c", b"c", qos=1, pid=2))
    read_ack5(p, PUBACK)
    m = read_publish5(s)
    check(m["qos"] == 1, "min(published 1, granted max(0, 1)) %r" % m)


# covers: MQTT5-3.10.4-1 MQTT5-3.10.4-2 MQTT5-3.10.4-3 MQTT5-3.10.4-4 MQTT5-3.10.4-5
# covers: MQTT5-3.10.4-6 MQTT5-3.11.3-1
def test_mqtt5_unsubscribe(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "us")
    s.send(subscribe5(1, [("us/a", 1), ("us/+", 1)]))
    read_suback5(s, 1)
    p = _publisher(b)
    p.send(publish5("us/a", b"begun", qos=1, pid=1))
    read_ack5(p, PUBACK)
    begun = read_publish5(s)
    s.send(unsubscribe5(0x0707, ["us/A", "us/a", "us/+"]))
    check(read_unsuback5(s, 0x0707) == [0x11, 0x00, 0x00], "UNSUBACK codes in order")
    s.send(ack5(PUBACK, begun["pid"]))  # the delivery begun before still completes
    p.send(publish5("us/a", b"after", qos=1, pid=2))
    read_ack5(p, PUBACK)
    check(s.expect_silence(0.4), "delivered after UNSUBSCRIBE")
    s.send(unsubscribe5(9, ["nothing"]))
    check(read_unsuback5(s, 9) == [0x11], "UNSUBACK even when nothing matched")


# covers: MQTT5-4.6.0-5 MQTT5-4.6.0-6
def test_mqtt5_ordered_topic(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "ord")
    s.send(subscribe5(1, [("ord/t", 1)]))
    read_suback5(s, 1)
    p = _publisher(b)
    for i in range(30):
        p.send(publish5("ord/t", b"%02d" % i, qos=1, pid=i + 1))
    for i in range(30):
        read_ack5(p, PUBACK)
    got = []
    for _ in range(30):
        m = read_publish5(s)
        got.append(m["payload"])
        s.send(ack5(PUBACK, m["pid"]))
    check(got == [b"%02d" % i for i in range(30)], "order %r" % got)


# covers: MQTT5-4.7.1-1 MQTT5-4.7.1-2 MQTT5-4.7.2-1 MQTT5-4.7.3-4 MQTT5-1.5.4-3
def test_mqtt5_matching(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "mt")
    s.send(subscribe5(1, [("#", 0), ("+/x", 0), ("a/#", 0), ("a#", 0), ("a/+b", 0)]))
    check(read_suback5(s, 1) == [0, 0, 0, 0x8F, 0x8F], "wildcard validation")
    p = _publisher(b)
    p.send(publish5("$SYS/x", b"no"))
    p.send(publish5("\ufeffbom/x", b"bom"))
    m = read_publish5(s)
    check(m["topic"] == "\ufeffbom/x", "U+FEFF changed or the $ topic matched: %r" % m)
    check(s.expect_silence(0.3), "a # filter matched a $ topic or delivered twice")


# covers: MQTT5-3.1.2-28 MQTT5-3.1.2-29 MQTT5-4.12.0-6
def test_mqtt5_no_reason_strings_response_info_or_auth(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect5("np", properties=props((REQUEST_PROBLEM_INFO, 0),
                                           (REQUEST_RESPONSE_INFO, 1))))
    t, _, body = c.read_packet()
    check(t == 2, "CONNACK")
    pr, _ = parse_props(body, 2)
    check(RESPONSE_INFO not in pr, "Response Information sent: %r" % pr)
    check(0x15 not in pr and 0x16 not in pr, "authentication properties sent: %r" % pr)
    c.send(publish5("np/x", b"x", qos=1, pid=1))  # no subscriber: 0x10
    _, body = c.expect(PUBACK)
    check(body[2] == 0x10, "PUBACK reason")
    check(len(body) == 3 or body[3:] == b"\x00", "PUBACK with properties: %r" % body)
    c.send(subscribe5(2, [("a/#/b", 0)]))
    _, body = c.expect(9)
    pr, _ = parse_props(body, 2)
    check(not pr, "SUBACK with properties %r" % pr)
    c.send(ack5(PUBREL, 99))
    _, body = c.expect(PUBCOMP)
    check(len(body) <= 4 and (len(body) < 4 or body[3] == 0), "PUBCOMP with properties %r" % body)


# covers: MQTT5-3.2.2-19 MQTT5-3.2.2-20 MQTT5-3.4.2-2 MQTT5-3.4.2-3 MQTT5-3.5.2-2 MQTT5-3.5.2-3
# covers: MQTT5-3.6.2-2 MQTT5-3.6.2-3 MQTT5-3.7.2-2 MQTT5-3.7.2-3 MQTT5-3.9.2-1 MQTT5-3.9.2-2
# covers: MQTT5-3.11.2-1 MQTT5-3.11.2-2 MQTT5-3.14.2-3 MQTT5-3.14.2-4
def test_mqtt5_acks_fit_a_small_maximum_packet_size(ctx):
    """cairn puts no Reason String or User Property on CONNACK, the acks,
    SUBACK, UNSUBACK or DISCONNECT, so each fits a client whose Maximum
    Packet Size leaves room for nothing more."""
    b = ctx.broker()
    c = RawClient(b.port)
    c.send(connect5("tiny", properties=props((MAX_PACKET_SIZE, 64))))
    t, _, body = c.read_packet()
    check(t == 2 and len(body) + 2 <= 64, "CONNACK of %d bytes" % (len(body) + 2))
    pr, _ = parse_props(body, 2)
    check(REASON_STRING not in pr and USER_PROPERTY not in pr, "CONNACK props %r" % pr)
    c.send(subscribe5(1, [("tiny/#", 2), ("bad/#/x", 0)]))
    _, body = c.expect(9)
    check(parse_props(body, 2)[0] == {}, "SUBACK props")
    for qos, kinds in ((1, [PUBACK]), (2, [PUBREC])):
        c.send(publish5("tiny/x", b"x", qos=qos, pid=qos))
        for _ in range(2):  # the ack and the delivery, in either order
            t, f, body = c.read_packet()
            if t == 3:
                m = body
                pid = struct.unpack("!H", m[2 + 6:2 + 8])[0]
                c.send(ack5(PUBACK if qos == 1 else PUBREC, pid))
            else:
                check(t in kinds and len(body) <= 3, "ack %d %r" % (t, body))
    c.send(ack5(PUBREL, 2))
    for _ in range(2):  # PUBCOMP to us, PUBREL for our delivery
        t, _, body = c.read_packet()
        check(t in (PUBCOMP, PUBREL) and len(body) <= 3, "packet %d %r" % (t, body))
        if t == PUBREL:
            c.send(ack5(PUBCOMP, struct.unpack("!H", body[:2])[0]))
    c.send(unsubscribe5(3, ["tiny/#"]))
    _, body = c.expect(11)
    check(parse_props(body, 2)[0] == {}, "UNSUBACK props")
    c.send(b"\x30\x05\x00\x01a\x05\x01")  # malformed: DISCONNECT 0x81, no properties
    t, _, body = c.read_packet()
    check(t == 14 and body[0] == 0x81 and len(body) <= 2, "DISCONNECT %r" % body)


# covers: MQTT5-3.14.0-1 MQTT5-3.14.4-1 MQTT5-3.14.4-2 MQTT5-4.13.1-1 MQTT5-4.13.2-1
# covers: MQTT5-3.1.0-1 MQTT5-3.2.0-2 MQTT5-3.1.4-6
def test_mqtt5_disconnect_only_after_connack_and_last(ctx):
    b = ctx.broker()
    # Before CONNECT: a 5.0-looking PUBLISH is closed without a reply.
    c = RawClient(b.port)
    c.send(publish5("x", b"y"))
    c.assert_closed_without_reply("PUBLISH before CONNECT")
    # A refused CONNECT: CONNACK >= 0x80, nothing after it is acted on.
    s = RawClient(b.port)
    do_connect(s, "dl-watch")
    s.send(subscribe5(1, [("dl/#", 0)]))
    read_suback5(s, 1)
    c = RawClient(b.port)
    c.send(connect5("dl", properties=props((0x15, "X"))) + publish5("dl/t", b"after refusal"))
    t, _, body = c.read_packet()
    check(t == 2 and body[1] == 0x8C, "CONNACK %r" % body)
    check(c.expect_closed(2), "refused connection open")
    check(s.expect_silence(0.4), "a PUBLISH after a refused CONNECT was acted on")
    # After a DISCONNECT from the server nothing follows and the socket closes.
    c = RawClient(b.port)
    do_connect(c, "dl2")
    c.send(packet(0x30, b"\x00\x01a\x05\x01") + publish5("dl/t", b"ignored"))
    t, _, body = c.read_packet()
    check(t == 14 and body[0] == 0x81, "DISCONNECT 0x81: %r" % body)
    check(c.expect_closed(2), "socket open after DISCONNECT")
    check(s.expect_silence(0.3), "a PUBLISH after the broker's DISCONNECT was acted on")


# covers: MQTT5-3.1.3-2 MQTT5-3.1.3-5
def test_mqtt5_client_id_keys_the_session(ctx):
    b = ctx.broker()
    cid = "Az09" * 5 + "xyz"  # 23 characters of the basic set
    c, sp = _persistent(b, cid, [("ck/#", 1)])
    check(sp == 0, "fresh")
    c.send(disconnect5())
    c.expect_closed(2)
    other, sp = _persistent(b, cid[:-1])
    check(sp == 0, "another id found the session")
    c, sp = _persistent(b, cid)
    check(sp == 1, "the same id did not find its session")


# covers: MQTT5-3.3.2-19
def test_mqtt5_content_type_must_be_utf8(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "ctu")
    body = b"\x00\x01t" + b"\x06" + bytes([CONTENT_TYPE]) + b"\x00\x03\xff\xfe\xfd"
    c.send(packet(0x30, body))
    expect_disconnect(c, 0x81)


# covers: MQTT5-4.9.0-3
def test_mqtt5_quota_zero_still_answers_other_packets(ctx):
    b = ctx.broker(max_inflight_messages=1)
    c = RawClient(b.port)
    do_connect(c, "qz")
    c.send(publish5("qz/t", b"x", qos=2, pid=1))
    read_ack5(c, PUBREC)  # the one slot is taken until PUBCOMP
    c.send(subscribe5(2, [("qz/#", 0)]))
    check(read_suback5(c, 2) == [0], "SUBACK at quota 0")
    c.send(PINGREQ_PKT)
    c.expect(PINGRESP)
    c.send(ack5(PUBREL, 1))
    check(read_ack5(c, PUBCOMP) == (1, 0), "PUBCOMP")


# covers: MQTT5-4.7.3-1 MQTT5-4.7.3-2 MQTT5-4.7.3-3
def test_mqtt5_topic_length_and_characters(ctx):
    b = ctx.broker()
    s = RawClient(b.port)
    do_connect(s, "tl")
    long_topic = "l/" + "x" * 65533  # 65,535 bytes: the most a name may have
    s.send(subscribe5(1, [(long_topic, 0)]))
    check(read_suback5(s, 1) == [0], "a 65,535-byte filter refused")
    p = _publisher(b)
    p.send(publish5(long_topic, b"long"))
    m = read_publish5(s)
    check(m["topic"] == long_topic, "65,535-byte topic not delivered intact")
    for what, pkt in (("empty filter", subscribe5(2, [("", 0)])),
                      ("U+0000 in a filter", subscribe5(3, [("a\u0000b", 0)])),
                      ("U+0000 in a topic", publish5("a\u0000b", b"x"))):
        c = RawClient(b.port)
        do_connect(c, "tl-bad")
        c.send(pkt)
        t, _, body = c.read_packet()
        check(t == 14 and body[0] in (0x81, 0x82), "%s: got %d %r" % (what, t, body[:4]))
        check(c.expect_closed(2), "%s: socket left open" % what)
