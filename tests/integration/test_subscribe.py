"""SUBSCRIBE / UNSUBSCRIBE and retained messages: granted QoS, invalid
filters, replacement, overlapping matches, '$' topics, and the retained
store's lifecycle."""

import struct

from harness import (PUBACK, UNSUBACK, Paho, RawClient, check, publish_packet,
                     unsubscribe_packet)


# covers: MQTT-3.8.4-1 MQTT-3.8.4-2 MQTT-3.8.4-4 MQTT-3.9.3-1 MQTT-3.9.3-2 MQTT-2.3.1-7
def test_suback_grants_requested_qos_in_order(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("granter")
    codes = c.subscribe(0x4242, [("g/a", 2), ("g/b", 0), ("g/+/c", 1), ("#", 2), ("g/d", 1)])
    check(codes == [2, 0, 1, 2, 1], "SUBACK codes %r" % codes)


# covers: MQTT-3.8.4-5 MQTT-3.9.3-1 MQTT-4.7.1-2 MQTT-4.7.1-3
def test_suback_failure_for_invalid_filter(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("badfilter")
    codes = c.subscribe(5, [("ok/1", 1), ("a/#/b", 2), ("ok/2", 2), ("a+", 0), ("#a", 1),
                            ("ok/3", 0)])
    check(codes == [1, 0x80, 2, 0x80, 0x80, 0], "SUBACK codes %r, want [1,128,2,128,128,0]"
          % codes)
    p = RawClient(b.port)
    p.connect("badfilter-pub")
    p.send(publish_packet("ok/2", b"fine", qos=0))
    m = c.read_publish()
    check(m["payload"] == b"fine", "valid filters in a mixed SUBSCRIBE not installed")


# covers: MQTT-3.8.4-3
def test_repeated_subscription_replaces_and_resends_retained(ctx):
    b = ctx.broker()
    p = RawClient(b.port)
    p.connect("rs-pub")
    p.send(publish_packet("rs/t", b"kept", qos=1, pid=1, retain=True))
    p.expect(PUBACK)
    c = RawClient(b.port)
    c.connect("resub")
    check(c.subscribe(1, [("rs/t", 0)]) == [0], "first SUBACK")
    m = c.read_publish()
    check(m["retain"] and m["payload"] == b"kept" and m["qos"] == 0, "retained %r" % m)
    check(c.subscribe(2, [("rs/t", 1)]) == [1], "second SUBACK")
    m = c.read_publish()
    check(m["retain"] and m["payload"] == b"kept" and m["qos"] == 1,
          "retained not re-sent on repeated SUBSCRIBE: %r" % m)
    c.send(b"\x40\x02" + struct.pack("!H", m["pid"]))
    p.publish("rs/t", b"live", qos=2, pid=2)
    m = c.read_publish()
    check(m["qos"] == 1 and m["payload"] == b"live" and not m["retain"], "live %r" % m)
    c.send(b"\x40\x02" + struct.pack("!H", m["pid"]))
    check(c.expect_silence(0.5), "repeated subscription was added, not replaced")


# covers: MQTT-3.10.4-4 MQTT-3.10.4-5 MQTT-3.10.4-6 MQTT-3.10.4-1 MQTT-3.10.4-2
def test_unsubscribe(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("unsub")
    c.send(unsubscribe_packet(0x0102, ["never/subscribed"]))
    f, body = c.expect(UNSUBACK)
    check(body == b"\x01\x02", "UNSUBACK %r for a filter never subscribed" % body)
    c.subscribe(2, [("u/+", 0)])
    c.send(unsubscribe_packet(3, ["u/x"]))  # not character-for-character equal
    c.expect(UNSUBACK)
    p = RawClient(b.port)
    p.connect("unsub-pub")
    p.send(publish_packet("u/x", b"1"))
    check(c.read_publish()["payload"] == b"1", "UNSUBSCRIBE u/x removed u/+")
    c.send(unsubscribe_packet(4, ["zzz", "u/+", "yyy"]))
    f, body = c.expect(UNSUBACK)
    check(body == b"\x00\x04", "UNSUBACK %r" % body)
    check(c.expect_silence(0.3), "more than one UNSUBACK")
    p.send(publish_packet("u/x", b"2"))
    check(c.expect_silence(0.5), "delivered after UNSUBSCRIBE")


# covers: MQTT-3.3.5-1
def test_overlapping_subscriptions_deliver_once_at_highest_qos(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    c.connect("overlap")
    c.subscribe(1, [("ov/#", 0), ("ov/+", 2), ("ov/t", 1)])
    p = RawClient(b.port)
    p.connect("overlap-pub")
    p.publish("ov/t", b"x", qos=2, pid=9)
    m = c.read_publish()
    check(m["qos"] == 2, "delivered at QoS %d, want 2" % m["qos"])
    check(c.expect_silence(0.5), "overlapping subscriptions delivered more than once")


# covers: MQTT-3.8.4-6
def test_delivered_qos_is_min_of_published_and_granted(ctx):
    b = ctx.broker()
    c = Paho(b.port, "minq", ctx=ctx)
    c.connect()
    c.subscribe("mq/1", 1)
    c.subscribe("mq/0", 0)
    p = Paho(b.port, "minq-pub", ctx=ctx)
    p.connect()
    for topic, q, want in (("mq/1", 2, 1), ("mq/1", 0, 0), ("mq/1", 1, 1), ("mq/0", 2, 0)):
        p.publish(topic, b"x", qos=q)
        m = c.get(3)
        check(m.qos == want, "%s published QoS %d delivered at %d, want %d" %
              (topic, q, m.qos, want))


# covers: MQTT-4.7.2-1
def test_dollar_topics_not_matched_by_leading_wildcards(ctx):
    b = ctx.broker()
    allc = Paho(b.port, "dollar-all", ctx=ctx)
    allc.connect()
    allc.subscribe("#", 0)
    allc.subscribe("+/x", 0)
    allc.subscribe("+/+", 0)
    exact = Paho(b.port, "dollar-exact", ctx=ctx)
    exact.connect()
    exact.subscribe("$foo/#", 0)
    exact.subscribe("$foo/+", 0)
    p = RawClient(b.port)
    p.connect("dollar-pub")
    p.send(publish_packet("$foo/x", b"d"))
    m = exact.get(3)
    check(m.topic == "$foo/x", "$foo/# subscriber missed $foo/x")
    check(exact.none(0.3) is None, "$foo/x delivered twice to overlapping $ filters")
    leak = allc.none(0.5)
    check(leak is None, "'#' or '+/x' matched %r" % (leak and leak.topic))


# covers: MQTT-4.7.3-4 MQTT-3.3.2-3 MQTT-4.7.1-3
def test_matching_is_literal(ctx):
    b = ctx.broker()
    c = Paho(b.port, "literal", ctx=ctx)
    c.connect()
    c.subscribe("lit/a", 0)
    c.subscribe("lit/+/z", 0)
    p = Paho(b.port, "literal-pub", ctx=ctx)
    p.connect()
    for t in ("Lit/a", "lit/a/", "lit//a", "lit/A", "lit/a/b/z", "lit/a "):
        p.publish(t, b"no")
    for t in ("lit/a", "lit//z", "lit/q/z"):
        p.publish(t, b"yes")
    got = c.get_n(3, 3)
    check([m.topic for m in got] == ["lit/a", "lit//z", "lit/q/z"],
          "got topics %r" % [m.topic for m in got])
    extra = c.none(0.4)
    check(extra is None, "normalized match for %r" % (extra and extra.topic))


# covers: MQTT-3.3.1-5 MQTT-3.3.1-6 MQTT-3.3.1-7 MQTT-3.3.1-8 MQTT-3.3.1-9 MQTT-3.3.1-10 MQTT-3.3.1-11 MQTT-3.3.1-12 MQTT-3.1.2-7
def test_retained_lifecycle(ctx):
    b = ctx.broker()

    def fresh(name, filt="ret/#"):
        c = Paho(b.port, name, ctx=ctx)
        c.connect()
        c.subscribe(filt, 2)
        return c

    p = Paho(b.port, "ret-pub", ctx=ctx)
    p.connect()
    p.publish("ret/a", b"first", qos=1, retain=True)
    p.publish("ret/b", b"other", qos=2, retain=True)
    p.disconnect()  # retained messages outlive the publisher's session
    s1 = fresh("ret-s1")
    got = sorted(s1.get_n(2, 3), key=lambda m: m.topic)
    check([(m.topic, m.payload, m.retain, m.qos) for m in got] ==
          [("ret/a", b"first", True, 1), ("ret/b", b"other", True, 2)],
          "retained on subscribe: %r" % [(m.topic, m.payload, m.retain, m.qos) for m in got])
    p = Paho(b.port, "ret-pub2", ctx=ctx)
    p.connect()
    p.publish("ret/a", b"second", qos=0, retain=True)
    m = s1.get(3)
    check(m.payload == b"second" and not m.retain, "live forward of retained: retain=%s" %
          m.retain)
    p.publish("ret/a", b"plain", qos=1, retain=False)
    m = s1.get(3)
    check(m.payload == b"plain" and not m.retain, "live non-retained")
    s2 = fresh("ret-s2", "ret/a")
    m = s2.get(3)
    check(m.payload == b"second" and m.retain, "retained after replace: %r" % m.payload)
    check(s2.none(0.3) is None, "more than one retained message per topic")
    p.publish("ret/a", b"", qos=1, retain=True)
    m = s1.get(3)
    check(m.payload == b"" and m.topic == "ret/a", "empty retained not delivered normally")
    s3 = fresh("ret-s3")
    got = s3.get_n(1, 3)
    check(got[0].topic == "ret/b", "got %r" % got[0].topic)
    leak = s3.none(0.5)
    check(leak is None, "empty retained payload was stored (%r)" % (leak and leak.payload))
