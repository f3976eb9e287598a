"""MQTT 5.0 subscriptions: options (No Local, Retain As Published, Retain
Handling), subscription identifiers, and SUBACK / UNSUBACK reason codes
per filter."""

from harness import PUBACK, RawClient, check
from mqtt5 import (SUBSCRIPTION_ID, Paho5, do_connect, expect_disconnect, parse_publish5, props,
                   publish5,
                   read_ack5, read_publish5, read_suback5, read_unsuback5, subscribe5,
                   unsubscribe5)

NO_LOCAL, RAP = 0x04, 0x08


def _rh(n):
    return n << 4


# covers: MQTT5-3.8.3-3
def test_mqtt5_no_local(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "nl")
    c.send(subscribe5(1, [("nl/own", 1 | NO_LOCAL), ("nl/all", 1)]))
    check(read_suback5(c, 1) == [1, 1], "SUBACK")
    c.send(publish5("nl/own", b"mine", qos=1, pid=10))
    read_ack5(c, PUBACK)
    c.send(publish5("nl/all", b"echo", qos=1, pid=11))
    # The PUBACK and the message itself, in either order.
    m = None
    for _ in range(2):
        t, f, body = c.read_packet()
        if t == 3:
            m = parse_publish5(f, body)
        else:
            check(t == PUBACK, "unexpected packet type %d" % t)
    check(m and m["payload"] == b"echo", "message without No Local did not come back: %r" % m)
    c.send(b"\x40\x02" + m["pid"].to_bytes(2, "big"))
    check(c.expect_silence(0.4), "own message on a No Local subscription delivered")
    o = RawClient(b.port)
    do_connect(o, "nl-other")
    o.send(publish5("nl/own", b"other", qos=0))
    m = read_publish5(c)
    check(m["payload"] == b"other", "another client's message not delivered: %r" % m)


# covers: MQTT5-3.3.1-12 MQTT5-3.3.1-13
def test_mqtt5_retain_as_published(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "rap")
    c.send(subscribe5(1, [("rap/keep", 0 | RAP), ("rap/clear", 0)]))
    read_suback5(c, 1)
    p = RawClient(b.port)
    do_connect(p, "rap-p")
    p.send(publish5("rap/keep", b"k", retain=True))
    p.send(publish5("rap/clear", b"c", retain=True))
    m1, m2 = read_publish5(c), read_publish5(c)
    check(m1["payload"] == b"k" and m1["retain"], "retain as published lost the flag: %r" % m1)
    check(m2["payload"] == b"c" and not m2["retain"], "flag kept without the option: %r" % m2)


# covers: MQTT5-3.3.1-9 MQTT5-3.3.1-10 MQTT5-3.3.1-11 MQTT5-3.8.4-4
def test_mqtt5_retain_handling(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    do_connect(p, "rh-p")
    p.send(publish5("rh/t", b"retained", qos=1, pid=1, retain=True))
    read_ack5(p, PUBACK)
    c = RawClient(b.port)
    do_connect(c, "rh")
    c.send(subscribe5(1, [("rh/#", _rh(0))]))
    read_suback5(c, 1)
    m = read_publish5(c)
    check(m["retain"] and m["payload"] == b"retained", "handling 0: %r" % m)
    c.send(subscribe5(2, [("rh/#", _rh(0))]))
    read_suback5(c, 2)
    check(read_publish5(c)["payload"] == b"retained", "handling 0 again: not resent")
    c.send(subscribe5(3, [("rh/+", _rh(1))]))
    read_suback5(c, 3)
    check(read_publish5(c)["payload"] == b"retained", "handling 1, new subscription: not sent")
    c.send(subscribe5(4, [("rh/+", _rh(1))]))
    read_suback5(c, 4)
    check(c.expect_silence(0.4), "handling 1, existing subscription: retained resent")
    c.send(subscribe5(5, [("rh/t", _rh(2))]))
    read_suback5(c, 5)
    check(c.expect_silence(0.4), "handling 2: retained sent")


# covers: MQTT5-3.3.4-3 MQTT5-3.3.4-4 MQTT5-3.8.4-4
def test_mqtt5_subscription_identifiers(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "sid")
    c.send(subscribe5(1, [("sid/#", 1)], properties=props((SUBSCRIPTION_ID, 7))))
    read_suback5(c, 1)
    c.send(subscribe5(2, [("sid/+/x", 1)], properties=props((SUBSCRIPTION_ID, 268435455))))
    read_suback5(c, 2)
    c.send(subscribe5(3, [("sid/a/#", 0)]))  # no identifier
    read_suback5(c, 3)
    p = RawClient(b.port)
    do_connect(p, "sid-p")
    p.send(publish5("sid/a/x", b"both", qos=1, pid=1))
    read_ack5(p, PUBACK)
    m = read_publish5(c)
    ids = sorted(m["props"].get(SUBSCRIPTION_ID, []))
    check(ids == [7, 268435455], "identifiers %r, want [7, 268435455]" % ids)
    check(m["qos"] == 1, "one copy at the highest QoS: %r" % m)
    c.send(b"\x40\x02" + m["pid"].to_bytes(2, "big"))
    p.send(publish5("sid/b", b"one", qos=0))
    m = read_publish5(c)
    check(m["props"].get(SUBSCRIPTION_ID) == [7], "identifiers %r" % m["props"])
    check(c.expect_silence(0.3), "more than one copy")
    # Replacing a subscription without an identifier removes it.
    c.send(subscribe5(4, [("sid/#", 0)]))
    read_suback5(c, 4)
    p.send(publish5("sid/c", b"none"))
    m = read_publish5(c)
    check(SUBSCRIPTION_ID not in m["props"], "identifier kept: %r" % m["props"])


def test_mqtt5_subscription_id_with_retained(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    do_connect(p, "sr-p")
    p.send(publish5("sr/t", b"r", qos=1, pid=1, retain=True))
    read_ack5(p, PUBACK)
    c = RawClient(b.port)
    do_connect(c, "sr")
    c.send(subscribe5(1, [("sr/#", 0)], properties=props((SUBSCRIPTION_ID, 3))))
    read_suback5(c, 1)
    a = read_publish5(c)
    c.send(subscribe5(2, [("sr/t", 0)], properties=props((SUBSCRIPTION_ID, 4))))
    read_suback5(c, 2)
    bb = read_publish5(c)
    check(a["props"].get(SUBSCRIPTION_ID) == [3], "retained for sub 3: %r" % a["props"])
    check(bb["props"].get(SUBSCRIPTION_ID) == [4], "retained for sub 4: %r" % bb["props"])


def test_mqtt5_subscription_id_zero_is_protocol_error(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "sid0")
    c.send(subscribe5(1, [("z/#", 0)], properties=props((SUBSCRIPTION_ID, 0))))
    expect_disconnect(c, 0x82)


# covers: MQTT5-3.9.3-2 MQTT5-3.11.3-2 MQTT5-2.2.1-6
def test_mqtt5_suback_unsuback_reason_codes(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "codes")
    c.send(subscribe5(9, [("ok/#", 2), ("bad/#/x", 1), ("$share/g+/t", 1), ("q1", 1)]))
    codes = read_suback5(c, 9)
    check(codes == [2, 0x8F, 0x8F, 1], "SUBACK codes %r" % codes)
    c.send(unsubscribe5(10, ["ok/#", "never/subscribed"]))
    codes = read_unsuback5(c, 10)
    check(codes == [0x00, 0x11], "UNSUBACK codes %r" % codes)


def test_mqtt5_retain_handling_3_is_protocol_error(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "rh3")
    c.send(subscribe5(1, [("a", _rh(3))]))
    expect_disconnect(c, 0x82)


def test_mqtt5_paho_subscribe_options(ctx):
    b = ctx.broker()
    c = Paho5(b.port, "paho-opts", ctx=ctx)
    c.connect()
    check(c.subscribe("po/#", 1, no_local=True, sub_id=11) == [1], "paho SUBACK")
    o = Paho5(b.port, "paho-other", ctx=ctx)
    o.connect()
    c.publish("po/self", b"self", 1)
    o.publish("po/x", b"other", 1)
    m = c.get(3)
    check(m.payload == b"other", "no local: got %r" % m.payload)
    check(list(m.properties.SubscriptionIdentifier) == [11],
          "paho: subscription identifier %r" % m.properties.SubscriptionIdentifier)
    check(c.none(0.4) is None, "own message delivered despite No Local")
