"""MQTT 5.0 with MQTT.js (npm `mqtt`, pinned in tests/integration/mqttjs/
package.json and installed by the test set-up): what a 5.0 application
sees of cairn, end to end. Each test but the last also passes against
Debian's Mosquitto 2.0.11 (CAIRN_BIN=/usr/sbin/mosquitto), which speaks
5.0; that one closes a taken-over connection without the DISCONNECT 0x8E
the standard asks for."""

import os
import signal
import time

from harness import MqttJs, Paho, check


def _client(ctx, b, client_id, **opts):
    c = MqttJs(ctx, b.port, protocol_version=5, client_id=client_id, **opts)
    ack = c.connack()
    check(ack["reasonCode"] in (0, None), "CONNACK %r" % ack)
    return c, ack


# covers: MQTT5-3.1.3-6 MQTT5-3.1.3-7 MQTT5-3.2.2-16 MQTT5-3.2.2-2
def test_mqttjs5_assigned_client_identifier(ctx):
    b = ctx.broker()
    c, ack = _client(ctx, b, "")
    assigned = ack["properties"].get("assignedClientIdentifier")
    check(isinstance(assigned, str) and assigned, "an assigned client id: %r" % ack)
    check(not ack["sessionPresent"], "clean start: session not present %r" % ack)
    c2, ack2 = _client(ctx, b, "")
    check(ack2["properties"].get("assignedClientIdentifier") not in (None, assigned),
          "two empty ids get distinct assigned ids: %r %r" % (ack, ack2))


# covers: MQTT5-3.3.2-4 MQTT5-3.3.2-15 MQTT5-3.3.2-16 MQTT5-3.3.2-17 MQTT5-3.3.2-18 MQTT5-3.3.2-20
def test_mqttjs5_publish_properties_forwarded_unchanged(ctx):
    b = ctx.broker()
    sub, _ = _client(ctx, b, "js5-props-sub")
    sub.subscribe("props/#", qos=1)
    old = Paho(b.port, "js5-props-311", ctx=ctx)
    old.connect()
    old.subscribe("props/#", 1)
    pub, _ = _client(ctx, b, "js5-props-pub")
    props = {"payloadFormatIndicator": True, "contentType": "text/plain; charset=utf-8",
             "responseTopic": "props/reply", "correlationData": b"\x00\x01corr\xff",
             "userProperties": {"b-first": "1", "a-second": ["x", "y"]}}
    r = pub.publish("props/t", "h\u00e9llo".encode(), qos=1, tag="p", properties=props)
    check(r["error"] is None, "publish %r" % r)
    m = sub.wait("message")
    p = m["properties"]
    check(m["payload"] == "h\u00e9llo".encode(), "payload %r" % m)
    check(p.get("payloadFormatIndicator") is True, "payload format indicator %r" % p)
    check(p.get("contentType") == props["contentType"], "content type %r" % p)
    check(p.get("responseTopic") == "props/reply", "response topic %r" % p)
    check(p.get("correlationData") == props["correlationData"], "correlation data %r" % p)
    up = p.get("userProperties", {})
    check(list(up.keys()) == ["b-first", "a-second"] and up["a-second"] == ["x", "y"],
          "user properties in order %r" % up)
    m311 = old.get()
    check(m311.payload == "h\u00e9llo".encode(), "a 3.1.1 subscriber gets the message")


# covers: MQTT5-3.3.2-5 MQTT5-3.3.2-6 MQTT5-3.1.2-23
def test_mqttjs5_message_expiry_while_queued(ctx):
    b = ctx.broker()
    sub, _ = _client(ctx, b, "js5-exp", clean=False,
                     properties={"sessionExpiryInterval": 300})
    sub.subscribe("exp/#", qos=1)
    sub.end()
    pub, _ = _client(ctx, b, "js5-exp-pub")
    pub.publish("exp/short", b"gone", qos=1, tag=1, properties={"messageExpiryInterval": 1})
    pub.publish("exp/long", b"kept", qos=1, tag=2, properties={"messageExpiryInterval": 100})
    time.sleep(2.2)
    sub2, ack = _client(ctx, b, "js5-exp", clean=False,
                        properties={"sessionExpiryInterval": 300})
    check(ack["sessionPresent"], "the session survived: %r" % ack)
    m = sub2.wait("message")
    check(m["topic"] == "exp/long", "the expired message is not delivered: %r" % m)
    left = m["properties"].get("messageExpiryInterval")
    check(left is not None and 90 <= left <= 98,
          "forwarded expiry is the time left (about 97 s): %r" % left)
    extra = sub2.poll("message", 0.5)
    check(extra is None, "nothing else delivered: %r" % extra)


# covers: MQTT5-3.8.3-3
def test_mqttjs5_no_local(ctx):
    b = ctx.broker()
    c, _ = _client(ctx, b, "js5-nl")
    c.subscribe("nl/t", qos=0, nl=True)
    other, _ = _client(ctx, b, "js5-nl-other")
    c.publish("nl/t", b"mine", qos=0, wait=False)
    other.publish("nl/t", b"theirs", qos=0, wait=False)
    m = c.wait("message")
    check(m["payload"] == b"theirs", "No Local: own message not returned: %r" % m)


# covers: MQTT5-3.3.1-9 MQTT5-3.3.1-10 MQTT5-3.3.1-11 MQTT5-3.3.1-12 MQTT5-3.3.1-13
def test_mqttjs5_retain_handling_and_retain_as_published(ctx):
    b = ctx.broker()
    pub, _ = _client(ctx, b, "js5-rh-pub")
    pub.publish("rh/t", b"kept", qos=1, retain=True, tag=1)

    def retained_on_subscribe(client, **opts):
        client.subscribe("rh/t", qos=1, **opts)
        return client.poll("message", 0.6)

    c, _ = _client(ctx, b, "js5-rh")
    check(retained_on_subscribe(c, rh=2) is None, "Retain Handling 2 sends nothing")
    c2, _ = _client(ctx, b, "js5-rh2")
    m = retained_on_subscribe(c2, rh=1)
    check(m is not None and m["retain"], "Retain Handling 1, new subscription: sent %r" % m)
    check(retained_on_subscribe(c2, rh=1) is None,
          "Retain Handling 1, existing subscription: not sent again")
    m = retained_on_subscribe(c2, rh=0)
    check(m is not None and m["retain"], "Retain Handling 0: sent %r" % m)

    rap, _ = _client(ctx, b, "js5-rap")
    rap.subscribe("rap/+", qos=0, rap=True)
    norap, _ = _client(ctx, b, "js5-norap")
    norap.subscribe("rap/+", qos=0, rap=False)
    pub.publish("rap/x", b"live", qos=1, retain=True, tag=2)
    m1, m2 = rap.wait("message"), norap.wait("message")
    check(m1["retain"], "Retain As Published 1 keeps RETAIN: %r" % m1)
    check(not m2["retain"], "Retain As Published 0 clears RETAIN: %r" % m2)


# covers: MQTT5-3.3.4-3 MQTT5-3.3.4-4 MQTT5-3.3.4-5
def test_mqttjs5_subscription_identifiers(ctx):
    b = ctx.broker()
    c, _ = _client(ctx, b, "js5-sid")
    c.subscribe("sid/+", qos=1, properties={"subscriptionIdentifier": 7})
    c.subscribe("sid/#", qos=0, properties={"subscriptionIdentifier": 300000})
    c.subscribe("sid/none", qos=0)
    pub, _ = _client(ctx, b, "js5-sid-pub")
    pub.publish("sid/a", b"1", qos=1, tag=1)
    copies = [m for m in (c.wait("message"), c.poll("message", 0.5)) if m is not None]

    def ids(m):
        v = m["properties"].get("subscriptionIdentifier")
        return sorted(v if isinstance(v, list) else [v] if v is not None else [])
    if len(copies) == 1:
        # One copy for both subscriptions: both ids, the highest QoS.
        check(ids(copies[0]) == [7, 300000], "both matching subscriptions' ids: %r" % copies)
        check(copies[0]["qos"] == 1, "the highest granted QoS: %r" % copies)
    else:
        # A copy per subscription, each with its own id and QoS.
        got = sorted((ids(m), m["qos"]) for m in copies)
        check(got == [([7], 1), ([300000], 0)], "one id per copy: %r" % copies)


# covers: MQTT5-3.1.2-23
def test_mqttjs5_session_expiry(ctx):
    b = ctx.broker()
    c, _ = _client(ctx, b, "js5-se", clean=False, properties={"sessionExpiryInterval": 2})
    c.subscribe("se/t", qos=1)
    c.end()
    c2, ack = _client(ctx, b, "js5-se", clean=False, properties={"sessionExpiryInterval": 2})
    check(ack["sessionPresent"], "within the interval the session is present: %r" % ack)
    c2.end()
    time.sleep(3.0)
    c3, ack = _client(ctx, b, "js5-se", clean=False, properties={"sessionExpiryInterval": 2})
    check(not ack["sessionPresent"], "after the interval the session is gone: %r" % ack)


# covers: MQTT5-3.3.2-12
def test_mqttjs5_topic_alias_from_client(ctx):
    b = ctx.broker()
    sub, _ = _client(ctx, b, "js5-ta-sub")
    sub.subscribe("ta/#", qos=1)
    pub, ack = _client(ctx, b, "js5-ta-pub")
    check((ack["properties"].get("topicAliasMaximum") or 0) >= 1,
          "the broker accepts topic aliases: %r" % ack)
    r = pub.publish("ta/long/topic/name", b"first", qos=1, tag=1, properties={"topicAlias": 1})
    check(r["error"] is None, "%r" % r)
    r = pub.publish("", b"second", qos=1, tag=2, properties={"topicAlias": 1})
    check(r["error"] is None, "%r" % r)
    got = [(m["topic"], m["payload"]) for m in sub.messages(2)]
    check(got == [("ta/long/topic/name", b"first"), ("ta/long/topic/name", b"second")],
          "an aliased PUBLISH goes to the aliased topic: %r" % got)


# covers: MQTT5-3.1.3-9
def test_mqttjs5_will_delay_and_cancel(ctx):
    b = ctx.broker()
    watcher, _ = _client(ctx, b, "js5-will-watch")
    watcher.subscribe("will/#", qos=1)
    will = {"topic": "will/w", "payload": b"gone", "qos": 1, "retain": False,
            "properties": {"willDelayInterval": 2, "userProperties": {"k": "v"}}}
    c, _ = _client(ctx, b, "js5-will", clean=False, will=will,
                   properties={"sessionExpiryInterval": 60})
    os.kill(c.proc.pid, signal.SIGKILL)
    t0 = time.time()
    m = watcher.wait("message", timeout=6)
    waited = time.time() - t0
    check(m["topic"] == "will/w" and m["payload"] == b"gone", "the will: %r" % m)
    check(waited >= 1.5, "the will waited for its delay (%.2fs)" % waited)
    check(m["properties"].get("userProperties") == {"k": "v"},
          "the will's user property: %r" % m)

    c2, _ = _client(ctx, b, "js5-will2", clean=False, will=dict(will, topic="will/w2"),
                    properties={"sessionExpiryInterval": 60})
    os.kill(c2.proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    c3, ack = _client(ctx, b, "js5-will2", clean=False, properties={"sessionExpiryInterval": 60})
    check(ack["sessionPresent"], "reconnected to the session: %r" % ack)
    m = watcher.poll("message", 3)
    check(m is None, "a reconnect within the delay cancels the will: %r" % m)


# covers: MQTT5-3.1.4-3
def test_mqttjs5_session_taken_over(ctx):
    b = ctx.broker()
    first, _ = _client(ctx, b, "js5-twice")
    second, _ = _client(ctx, b, "js5-twice")
    d = first.wait("disconnect")
    check(d["reasonCode"] == 0x8E, "DISCONNECT 0x8E session taken over: %r" % d)


# covers: MQTT5-4.8.2-3
def test_mqttjs5_shared_subscription(ctx):
    b = ctx.broker()
    members = []
    for i in range(2):
        m, ack = _client(ctx, b, "js5-share-%d" % i)
        check(ack["properties"].get("sharedSubscriptionAvailable", True) is not False,
              "shared subscriptions available: %r" % ack)
        s = m.subscribe("$share/workers/jobs/+", qos=1)
        check(s["error"] is None and [g["qos"] for g in s["granted"]] == [1], "SUBACK %r" % s)
        members.append(m)
    pub, _ = _client(ctx, b, "js5-share-pub")
    for i in range(10):
        pub.publish("jobs/%d" % i, b"job-%d" % i, qos=1, tag=i)
    got = []
    for m in members:
        while True:
            ev = m.poll("message", 1.0)
            if ev is None:
                break
            got.append((m, ev["payload"]))
    payloads = sorted(p for _, p in got)
    check(payloads == sorted(b"job-%d" % i for i in range(10)),
          "each job to exactly one worker: %r" % payloads)
    check(all(any(m is who for who, _ in got) for m in members),
          "both workers got a share: %r" % [(members.index(w), p) for w, p in got])
