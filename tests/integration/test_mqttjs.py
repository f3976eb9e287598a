"""Interoperability with MQTT.js (npm `mqtt`, the version
tests/integration/mqttjs/package.json pins, installed by the test set-up):
the client most browser and Node.js applications use, speaking 3.1.1 here
(its 5.0 tests are in test_mqttjs5.py)."""

from harness import MqttJs, Paho, check


def _connected(ctx, b, client_id, clean=True, version=4, **opts):
    c = MqttJs(ctx, b.port, protocol_version=version, client_id=client_id, clean=clean, **opts)
    ack = c.connack()
    return c, ack


def test_mqttjs_311_qos_flows(ctx):
    b = ctx.broker()
    sub, _ = _connected(ctx, b, "js-sub")
    s = sub.subscribe("js/#", qos=2)
    check(s["error"] is None and [g["qos"] for g in s["granted"]] == [2], "SUBACK %r" % s)
    pub, _ = _connected(ctx, b, "js-pub")
    for q in (0, 1, 2):
        r = pub.publish("js/%d" % q, b"payload-%d" % q, qos=q, tag=q)
        check(r["error"] is None, "publish at QoS %d: %r" % (q, r))
    got = sorted((m["topic"], m["payload"], m["qos"]) for m in sub.messages(3))
    check(got == [("js/0", b"payload-0", 0), ("js/1", b"payload-1", 1),
                  ("js/2", b"payload-2", 2)], "delivered %r" % got)


def test_mqttjs_311_persistent_session_and_retained(ctx):
    b = ctx.broker()
    sub, ack = _connected(ctx, b, "js-durable", clean=False)
    check(not ack["sessionPresent"], "a new session is not present: %r" % ack)
    sub.subscribe("jsq/+", qos=1)
    sub.end()
    p = Paho(b.port, "js-paho-pub", ctx=ctx)
    p.connect()
    for i in range(5):
        p.publish("jsq/%d" % i, b"queued-%d" % i, qos=1)
    p.publish("jsq/keep", b"kept", qos=1, retain=True)
    p.disconnect()

    sub2, ack = _connected(ctx, b, "js-durable", clean=False)
    check(ack["sessionPresent"], "the stored session is present: %r" % ack)
    got = [(m["topic"], m["payload"]) for m in sub2.messages(6)]
    check(got == [("jsq/%d" % i, b"queued-%d" % i) for i in range(5)] + [("jsq/keep", b"kept")],
          "queued messages in order: %r" % got)
    fresh, _ = _connected(ctx, b, "js-fresh")
    fresh.subscribe("jsq/#", qos=1)
    m = fresh.wait("message")
    check(m["topic"] == "jsq/keep" and m["retain"] and m["payload"] == b"kept",
          "retained message on subscribe: %r" % m)
