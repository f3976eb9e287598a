"""Shared subscriptions seen by MQTT 5.0 clients: the rules 5.0 adds on top
of the routing test_shared.py checks with 3.1.1 clients (No Local refused,
a refused delivery not offered to another member, the shared copy's
subscription identifier)."""

from harness import PUBACK, PUBLISH, RawClient, check
from mqtt5 import (SUBSCRIPTION_ID, ack5, do_connect, expect_disconnect, parse_publish5, props,
                   publish5, read_ack5, read_suback5, subscribe5)


def _member(b, client_id, filt, sub_id=None):
    c = RawClient(b.port)
    do_connect(c, client_id)
    pr = props((SUBSCRIPTION_ID, sub_id)) if sub_id else b"\x00"
    c.send(subscribe5(1, [(filt, 1)], properties=pr))
    check(read_suback5(c, 1) == [1], "SUBACK of %s" % filt)
    return c


# covers: MQTT5-3.8.3-4
def test_mqtt5_shared_no_local_is_protocol_error(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "sh-nl")
    c.send(subscribe5(1, [("$share/g/t", 0x04 | 1)]))
    expect_disconnect(c, 0x82)


# covers: MQTT5-4.8.2-6 MQTT5-4.8.2-3 MQTT5-3.3.4-5
def test_mqtt5_shared_refused_delivery_not_offered_again(ctx):
    b = ctx.broker()
    m1 = _member(b, "sh-m1", "$share/g/sh/t", sub_id=5)
    m2 = _member(b, "sh-m2", "$share/g/sh/t", sub_id=6)
    pub = RawClient(b.port)
    do_connect(pub, "sh-pub")
    pub.send(publish5("sh/t", b"once", qos=1, pid=1))
    check(read_ack5(pub, PUBACK) == (1, 0), "PUBACK of a message with shared subscribers")
    got = None
    for who, other, want_id in ((m1, m2, 5), (m2, m1, 6)):
        try:
            t, f, body = who.read_packet(1.0)
        except Exception:
            continue
        check(t == PUBLISH, "a member got packet type %d" % t)
        got = parse_publish5(f, body)
        check(got["payload"] == b"once" and got["qos"] == 1, "the share: %r" % got)
        check(got["props"].get(SUBSCRIPTION_ID) == [want_id],
              "the shared copy carries its subscription's identifier: %r" % got["props"])
        who.send(ack5(PUBACK, got["pid"], 0x80))  # the member refuses it
        check(other.expect_silence(1.0), "a refused share was offered to another member")
        check(who.expect_silence(0.5), "a refused share was sent again")
        break
    check(got is not None, "no member got the message")
