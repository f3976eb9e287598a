"""MQTT 5.0 messages: PUBLISH properties forwarded (and dropped for 3.1.1
subscribers), payload format, message expiry, topic aliases both ways,
receive maximum and maximum packet size both ways, and the reason codes
on PUBACK / PUBREC / PUBCOMP."""

import os
import struct
import time

from harness import (PUBACK, PUBCOMP, PUBREC, RawClient, check, require_cairn, subscribe_packet,
                     wait_until)
from mqtt5 import (CONTENT_TYPE, CORRELATION_DATA, MAX_PACKET_SIZE, MESSAGE_EXPIRY,
                   PAYLOAD_FORMAT, RECEIVE_MAX, RESPONSE_TOPIC, SESSION_EXPIRY, SUBSCRIPTION_ID,
                   TOPIC_ALIAS, TOPIC_ALIAS_MAX, USER, ack5, disconnect5, do_connect,
                   expect_disconnect, props, publish5, read_ack5, read_publish5, read_suback5,
                   subscribe5)


def _sub(b, cid, filt, qos=1, conn_props=b"\x00", clean=True):
    c = RawClient(b.port)
    do_connect(c, cid, clean=clean, properties=conn_props)
    c.send(subscribe5(1, [(filt, qos)]))
    read_suback5(c, 1)
    return c


def _queue_filled(ctx, name):
    """A broker queueing one message per session; NAME-s's persistent
    session, subscribed to NAME/# at QoS 1, offline; and NAME-p, connected,
    whose QoS 1 message m1 on NAME/t filled that queue. Returns (broker,
    publisher)."""
    require_cairn("max_queued_messages drops are cairn's")
    b = ctx.broker(max_queued_messages=1)
    s = _sub(b, name + "-s", name + "/#", qos=1, conn_props=props((SESSION_EXPIRY, 300)),
             clean=False)
    s.send(disconnect5())
    s.expect_closed(2)
    p = RawClient(b.port)
    do_connect(p, name + "-p")
    p.send(publish5(name + "/t", b"m1", qos=1, pid=1))
    check(read_ack5(p, PUBACK) == (1, 0), "m1 queued")
    return b, p


# covers: MQTT5-3.3.2-4 MQTT5-3.3.2-15 MQTT5-3.3.2-16 MQTT5-3.3.2-17 MQTT5-3.3.2-18 MQTT5-3.3.2-20
def test_mqtt5_publish_properties_forwarded_in_order(ctx):
    b = ctx.broker()
    s5 = _sub(b, "s5", "pp/#")
    s3 = RawClient(b.port)
    s3.connect("s311")
    s3.subscribe(1, [("pp/#", 1)])
    p = RawClient(b.port)
    do_connect(p, "pub")
    pr = props((PAYLOAD_FORMAT, 1), (CONTENT_TYPE, "application/json"),
               (RESPONSE_TOPIC, "reply/here"), (CORRELATION_DATA, b"\x00\x01corr"),
               (USER, ("z", "1")), (USER, ("a", "2")), (USER, ("z", "3")))
    p.send(publish5("pp/x", b'{"v":1}', qos=1, pid=3, properties=pr))
    check(read_ack5(p, PUBACK) == (3, 0), "PUBACK")
    m = read_publish5(s5)
    got = m["props"]
    check(got.get(PAYLOAD_FORMAT) == 1, "payload format %r" % got)
    check(got.get(CONTENT_TYPE) == "application/json", "content type %r" % got)
    check(got.get(RESPONSE_TOPIC) == "reply/here", "response topic %r" % got)
    check(got.get(CORRELATION_DATA) == b"\x00\x01corr", "correlation data %r" % got)
    check(got.get(USER) == [("z", "1"), ("a", "2"), ("z", "3")], "user props %r" % got.get(USER))
    check(TOPIC_ALIAS not in got, "topic alias sent to a client that allows none")
    m3 = s3.read_publish()
    check(m3["payload"] == b'{"v":1}', "3.1.1 subscriber got %r" % m3)


# covers: MQTT5-3.4.2-1 MQTT5-3.5.2-1
def test_mqtt5_payload_format_invalid_0x99(ctx):
    b = ctx.broker()
    s = _sub(b, "pf-s", "pf/#")
    p = RawClient(b.port)
    do_connect(p, "pf-p")
    p.send(publish5("pf/a", b"\xff\xfe", qos=1, pid=1, properties=props((PAYLOAD_FORMAT, 1))))
    check(read_ack5(p, PUBACK) == (1, 0x99), "invalid UTF-8 with format 1 not refused")
    p.send(publish5("pf/a", b"\xff\xfe", qos=2, pid=2, properties=props((PAYLOAD_FORMAT, 1))))
    check(read_ack5(p, PUBREC) == (2, 0x99), "PUBREC for invalid payload")
    p.send(publish5("pf/a", b"\xff\xfe", qos=1, pid=4, properties=props((PAYLOAD_FORMAT, 0))))
    check(read_ack5(p, PUBACK) == (4, 0), "binary payload with format 0 refused")
    m = read_publish5(s)
    check(m["payload"] == b"\xff\xfe", "only the valid one is delivered: %r" % m)
    check(s.expect_silence(0.3), "a refused message was delivered")


# covers: MQTT5-3.3.2-14
def test_mqtt5_response_topic_with_wildcard_is_protocol_error(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    do_connect(p, "rt")
    p.send(publish5("rt/a", b"x", qos=1, pid=1, properties=props((RESPONSE_TOPIC, "r/#"))))
    expect_disconnect(p, 0x82)


# covers: MQTT5-3.3.2-5 MQTT5-3.3.2-6
def test_mqtt5_message_expiry(ctx):
    b = ctx.broker()
    s = _sub(b, "me-s", "me/#", conn_props=props((SESSION_EXPIRY, 60)), clean=False)
    s.send(disconnect5())
    s.expect_closed(2)
    p = RawClient(b.port)
    do_connect(p, "me-p")
    p.send(publish5("me/short", b"gone", qos=1, pid=1, properties=props((MESSAGE_EXPIRY, 1))))
    read_ack5(p, PUBACK)
    p.send(publish5("me/long", b"kept", qos=1, pid=2, properties=props((MESSAGE_EXPIRY, 30))))
    read_ack5(p, PUBACK)
    time.sleep(1.5)
    s = RawClient(b.port)
    do_connect(s, "me-s", clean=False, properties=props((SESSION_EXPIRY, 60)))
    m = read_publish5(s)
    check(m["payload"] == b"kept", "expired message delivered: %r" % m)
    left = m["props"].get(MESSAGE_EXPIRY)
    check(left is not None and 27 <= left <= 29, "forwarded expiry %r, want 28-29" % left)
    s.send(ack5(PUBACK, m["pid"]))
    check(s.expect_silence(0.5), "more than the unexpired message delivered")


# covers: MQTT5-3.3.2-12 MQTT5-3.3.2-7
def test_mqtt5_topic_alias_from_client(ctx):
    require_cairn("max_topic_alias is the broker's configured maximum")
    b = ctx.broker(max_topic_alias=3)
    s = _sub(b, "ta-s", "ta/#")
    p = RawClient(b.port)
    _, _, pr = do_connect(p, "ta-p")
    check(pr.get(TOPIC_ALIAS_MAX) == 3, "topic alias maximum %r" % pr.get(TOPIC_ALIAS_MAX))
    p.send(publish5("ta/one", b"1", properties=props((TOPIC_ALIAS, 3))))
    p.send(publish5("", b"2", properties=props((TOPIC_ALIAS, 3))))
    p.send(publish5("ta/two", b"3", properties=props((TOPIC_ALIAS, 3))))  # re-mapped
    p.send(publish5("", b"4", properties=props((TOPIC_ALIAS, 3))))
    got = [(m["topic"], m["payload"]) for m in (read_publish5(s) for _ in range(4))]
    check(got == [("ta/one", b"1"), ("ta/one", b"2"), ("ta/two", b"3"), ("ta/two", b"4")],
          "aliased topics %r" % got)
    # Aliases belong to the connection: a new one knows none.
    p.send(disconnect5())
    p.expect_closed(2)
    p = RawClient(b.port)
    do_connect(p, "ta-p")
    p.send(publish5("", b"5", properties=props((TOPIC_ALIAS, 3))))
    expect_disconnect(p, 0x82)


def test_mqtt5_topic_alias_out_of_range_0x94(ctx):
    b = ctx.broker(max_topic_alias=2)
    for alias in (0, 3):
        p = RawClient(b.port)
        do_connect(p, "tar%d" % alias)
        p.send(publish5("t/a", b"x", properties=props((TOPIC_ALIAS, alias))))
        expect_disconnect(p, 0x94)


# covers: MQTT5-3.1.2-26 MQTT5-3.1.2-27 MQTT5-3.3.2-11 MQTT5-3.3.2-8
def test_mqtt5_topic_alias_to_client_saves_bytes(ctx):
    """The broker assigns aliases first come, first served up to the
    client's Topic Alias Maximum; a hot topic's name goes out once."""
    b = ctx.broker()
    topic = "sensors/building-7/floor-3/room-42/temperature"
    n = 50
    s = _sub(b, "tao-s", "sensors/#", qos=0, conn_props=props((TOPIC_ALIAS_MAX, 2)))
    plain = _sub(b, "tao-p", "sensors/#", qos=0)
    p = RawClient(b.port)
    do_connect(p, "tao-pub")
    for i in range(n):
        p.send(publish5(topic, b"%d" % i))
    p.send(publish5("sensors/other", b"o1"))
    p.send(publish5("sensors/third", b"t1"))  # past the maximum of 2: full topic
    aliased = [read_publish5(s) for _ in range(n + 2)]
    full = [read_publish5(plain) for _ in range(n + 2)]
    check(aliased[0]["topic"] == topic and aliased[0]["props"].get(TOPIC_ALIAS) == 1,
          "first message: topic %r alias %r" % (aliased[0]["topic"], aliased[0]["props"]))
    for m in aliased[1:n]:
        check(m["topic"] == "" and m["props"].get(TOPIC_ALIAS) == 1, "later message %r" % m)
    check(aliased[n]["props"].get(TOPIC_ALIAS) == 2, "second topic alias %r" % aliased[n])
    check(TOPIC_ALIAS not in aliased[n + 1]["props"] and aliased[n + 1]["topic"] ==
          "sensors/third", "alias beyond the client's maximum: %r" % aliased[n + 1])
    for m in full:
        check(TOPIC_ALIAS not in m["props"], "alias sent to a client without a maximum")

    def wire(m):
        return len(m["topic"]) + 2 + (4 if TOPIC_ALIAS in m["props"] else 1)
    saved = sum(map(wire, full)) - sum(map(wire, aliased))
    # Each later message of the hot topic saves its name less 3 bytes of alias.
    check(saved >= (n - 1) * (len(topic) - 3) - 10, "saved only %d bytes" % saved)
    with open(os.path.join(ctx.workdir, "alias-bytes-saved"), "w") as f:
        f.write("%d messages, %d bytes saved\n" % (n, saved))


# covers: MQTT5-3.3.4-9 MQTT5-3.3.4-10 MQTT5-4.9.0-1 MQTT5-4.9.0-2
def test_mqtt5_client_receive_maximum_limits_inflight(ctx):
    b = ctx.broker()
    s = _sub(b, "rm-s", "rm/#", qos=1, conn_props=props((RECEIVE_MAX, 2)))
    p = RawClient(b.port)
    do_connect(p, "rm-p")
    for i in range(5):
        p.send(publish5("rm/t", b"%d" % i, qos=1, pid=i + 1))
        read_ack5(p, PUBACK)
    first = [read_publish5(s) for _ in range(2)]
    check(s.expect_silence(0.5), "more than receive maximum 2 unacknowledged")
    s.send(b"\xc0\x00")  # PINGREQ is never held back by the quota
    t, _, _ = s.read_packet(2)
    check(t == 13, "PINGRESP held back at the receive maximum")
    s.send(ack5(PUBACK, first[0]["pid"]))
    m = read_publish5(s)
    check(m["payload"] == b"2", "next after PUBACK %r" % m)
    check(s.expect_silence(0.3), "window grew past 2")


def test_mqtt5_receive_maximum_exceeded_0x93(ctx):
    require_cairn("the receive maximum is cairn's max_inflight_messages")
    b = ctx.broker(max_inflight_messages=2)
    p = RawClient(b.port)
    _, _, pr = do_connect(p, "rx")
    check(pr.get(RECEIVE_MAX) == 2, "receive maximum %r" % pr.get(RECEIVE_MAX))
    for i in range(2):
        p.send(publish5("rx/t", b"x", qos=2, pid=i + 1))
        read_ack5(p, PUBREC)
    p.send(publish5("rx/t", b"x", qos=2, pid=3))
    expect_disconnect(p, 0x93)
    # Releasing keeps it within the quota.
    p = RawClient(b.port)
    do_connect(p, "rx2")
    for i in range(6):
        p.send(publish5("rx/t", b"x", qos=2, pid=i + 1))
        read_ack5(p, PUBREC)
        p.send(ack5(6, i + 1))
        check(read_ack5(p, PUBCOMP) == (i + 1, 0), "PUBCOMP")


# covers: MQTT5-3.1.2-24 MQTT5-3.1.2-25
def test_mqtt5_client_maximum_packet_size(ctx):
    b = ctx.broker()
    s = _sub(b, "mp-s", "mp/#", qos=1, conn_props=props((MAX_PACKET_SIZE, 100)))
    p = RawClient(b.port)
    do_connect(p, "mp-p")
    p.send(publish5("mp/t", b"B" * 200, qos=1, pid=1))
    read_ack5(p, PUBACK)
    p.send(publish5("mp/t", b"small", qos=1, pid=2))
    read_ack5(p, PUBACK)
    m = read_publish5(s)
    check(m["payload"] == b"small", "got %r" % m["payload"][:20])
    check(wait_until(lambda: "larger than its maximum packet size" in b.log_text(), 2),
          "the dropped message is not logged")


# covers: MQTT5-3.4.2-1
def test_mqtt5_puback_no_matching_subscribers_0x10(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    do_connect(p, "nm")
    p.send(publish5("nobody/here", b"x", qos=1, pid=1))
    check(read_ack5(p, PUBACK) == (1, 0x10), "PUBACK without subscribers")
    p.send(publish5("nobody/here", b"x", qos=2, pid=2))
    check(read_ack5(p, PUBREC) == (2, 0x10), "PUBREC without subscribers")


def test_mqtt5_puback_quota_exceeded_0x97(ctx):
    _, p = _queue_filled(ctx, "qx")
    p.send(publish5("qx/t", b"2", qos=1, pid=2))
    check(read_ack5(p, PUBACK) == (2, 0x97), "queue full: PUBACK not 0x97")


def test_mqtt5_puback_not_authorized_0x87(ctx):
    require_cairn("cairn's acl_file")
    acl = os.path.join(ctx.workdir, "acl5")
    with open(acl, "w") as f:
        f.write("topic read open/#\n")
    b = ctx.broker(acl_file=acl)
    p = RawClient(b.port)
    do_connect(p, "na")
    p.send(publish5("open/x", b"x", qos=1, pid=1))
    check(read_ack5(p, PUBACK) == (1, 0x87), "PUBACK for a denied topic")


# covers: MQTT5-3.7.2-1
def test_mqtt5_pubrel_unknown_id_pubcomp_0x92(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    do_connect(p, "rel")
    p.send(ack5(6, 77))
    check(read_ack5(p, PUBCOMP) == (77, 0x92), "PUBCOMP for an unknown id")


# covers: MQTT5-3.3.4-6
def test_mqtt5_client_publish_with_subscription_id_is_protocol_error(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    do_connect(p, "sid")
    p.send(publish5("s/t", b"x", properties=props((SUBSCRIPTION_ID, 5))))
    expect_disconnect(p, 0x82)


def test_mqtt5_311_subscriber_gets_no_properties(ctx):
    b = ctx.broker()
    s3 = RawClient(b.port)
    s3.connect("plain311")
    s3.send(subscribe_packet(1, [("np/#", 1)]))
    s3.expect(9)
    p = RawClient(b.port)
    do_connect(p, "np-p")
    p.send(publish5("np/t", b"payload", qos=1, pid=1,
                    properties=props((USER, ("k", "v")), (MESSAGE_EXPIRY, 60))))
    read_ack5(p, PUBACK)
    f, body = s3.expect(3)
    # topic, packet id, payload: nothing else (a property block would
    # show up as extra bytes before the payload).
    check(body == struct.pack("!H", 4) + b"np/t" + body[6:8] + b"payload",
          "3.1.1 PUBLISH body %r" % body)


# covers: MQTT5-4.3.3-4
def test_mqtt5_failed_pubrec_frees_the_packet_id(ctx):
    b, p = _queue_filled(ctx, "fp")
    p.send(publish5("fp/t", b"m2", qos=2, pid=5))
    check(read_ack5(p, PUBREC) == (5, 0x97), "m2: queue full, PUBREC 0x97")
    s = RawClient(b.port)
    do_connect(s, "fp-s", clean=False, properties=props((SESSION_EXPIRY, 300)))
    m = read_publish5(s)
    check(m["payload"] == b"m1", "the queued message %r" % m)
    s.send(ack5(PUBACK, m["pid"]))
    # The failed PUBREC ended the exchange: id 5 is a new message now.
    p.send(publish5("fp/t", b"m3", qos=2, pid=5))
    check(read_ack5(p, PUBREC) == (5, 0), "m3 accepted under the reused id")
    m = read_publish5(s)
    check(m["payload"] == b"m3", "the message under the reused id delivered: %r" % m)


# covers: MQTT5-3.3.4-9
def test_mqtt5_receive_maximum_holds_for_a_resumed_window(ctx):
    b = ctx.broker()
    s = _sub(b, "rw-s", "rw/#", qos=1, conn_props=props((RECEIVE_MAX, 10), (SESSION_EXPIRY, 300)),
             clean=False)
    p = RawClient(b.port)
    do_connect(p, "rw-p")
    for i in range(6):
        p.send(publish5("rw/t", b"%d" % i, qos=1, pid=i + 1))
        read_ack5(p, PUBACK)
    for _ in range(6):
        read_publish5(s)  # six in flight, none acknowledged
    s.close()
    s = RawClient(b.port)
    do_connect(s, "rw-s", clean=False, properties=props((RECEIVE_MAX, 2), (SESSION_EXPIRY, 300)))
    first = [read_publish5(s) for _ in range(2)]
    check(all(m["dup"] for m in first), "resent with DUP: %r" % first)
    check(s.expect_silence(0.5), "a resumed window went past the new receive maximum 2")
    s.send(ack5(PUBACK, first[0]["pid"]))
    m = read_publish5(s)
    check(m["payload"] == b"2", "the next after a PUBACK: %r" % m)
    check(s.expect_silence(0.3), "window grew past 2 after one PUBACK")


def test_mqtt5_unknown_pubrel_frees_no_receive_quota(ctx):
    require_cairn("the receive maximum is cairn's max_inflight_messages")
    b = ctx.broker(max_inflight_messages=2)
    p = RawClient(b.port)
    do_connect(p, "uq")
    for i in range(2):
        p.send(publish5("uq/t", b"x", qos=2, pid=i + 1))
        read_ack5(p, PUBREC)
    for pid in range(900, 905):
        p.send(ack5(6, pid))
        check(read_ack5(p, PUBCOMP) == (pid, 0x92), "PUBCOMP 0x92 for unknown %d" % pid)
    p.send(publish5("uq/t", b"x", qos=2, pid=3))
    expect_disconnect(p, 0x93)
