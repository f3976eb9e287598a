"""MQTT 5.0 state across kill -9 and a restart, on every durable backend:
a session with an expiry interval keeps its queue (with the messages'
properties, remaining expiry, subscription identifiers and retain flags),
a session whose expiry passed while the broker was down is gone, and a
will whose delay was running at the crash still fires after the restart."""

import time

from harness import DURABLE_BACKENDS, PUBACK, RawClient, check
from mqtt5 import (MESSAGE_EXPIRY, SESSION_EXPIRY, SUBSCRIPTION_ID, USER, WILL_DELAY, ack5,
                   disconnect5, do_connect, props, publish5, read_ack5, read_publish5,
                   read_suback5, subscribe5)


def _crash_and_restore(ctx, backend):
    b = ctx.durable_broker(backend)
    # A persistent 5.0 subscriber with identifiers and retain as published.
    s = RawClient(b.port)
    do_connect(s, "d5-sub", clean=False, properties=props((SESSION_EXPIRY, 3600)))
    s.send(subscribe5(1, [("d5/#", 1 | 0x08)], properties=props((SUBSCRIPTION_ID, 99))))
    read_suback5(s, 1)
    s.send(disconnect5())
    s.expect_closed(2)
    # A session that expires while the broker is down.
    e = RawClient(b.port)
    do_connect(e, "d5-short", clean=False, properties=props((SESSION_EXPIRY, 1)))
    e.send(disconnect5())
    e.expect_closed(2)
    # A client whose will delay is running when the broker dies.
    w = RawClient(b.port)
    do_connect(w, "d5-will", clean=False, properties=props((SESSION_EXPIRY, 3600)),
               will=("d5/will", b"after-crash", 1, False), will_properties=props((WILL_DELAY, 2)))
    w.abort()
    p = RawClient(b.port)
    do_connect(p, "d5-pub")
    p.send(publish5("d5/m", b"stored", qos=1, pid=1, retain=True,
                    properties=props((MESSAGE_EXPIRY, 600), (USER, ("trace", "42")))))
    check(read_ack5(p, PUBACK) == (1, 0), "PUBACK")
    p.send(publish5("d5/gone", b"expiring", qos=1, pid=2, properties=props((MESSAGE_EXPIRY, 1))))
    read_ack5(p, PUBACK)
    time.sleep(0.3)
    b.kill9()
    time.sleep(1.2)  # the short session and message expire while it is down
    b.start()
    s = RawClient(b.port)
    sp, _, _ = do_connect(s, "d5-sub", clean=False, properties=props((SESSION_EXPIRY, 3600)))
    check(sp == 1, "%s: 5.0 session lost in the crash" % backend)
    got = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(m["payload"] == b"after-crash" for m in got):
        try:
            m = read_publish5(s, timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            break
        got.append(m)
        if m["qos"]:
            s.send(ack5(4, m["pid"]))
    stored = [m for m in got if m["payload"] == b"stored"]
    check(stored, "%s: queued message lost: %r" % (backend, [m["payload"] for m in got]))
    m = stored[0]
    check(m["retain"], "%s: retain as published lost" % backend)
    check(m["props"].get(SUBSCRIPTION_ID) == [99], "%s: sub id %r" % (backend, m["props"]))
    check(m["props"].get(USER) == [("trace", "42")], "%s: user property %r" % (backend,
                                                                               m["props"]))
    left = m["props"].get(MESSAGE_EXPIRY)
    check(left is not None and 500 < left < 600, "%s: remaining expiry %r" % (backend, left))
    check(not [m for m in got if m["payload"] == b"expiring"],
          "%s: a message expired during the outage was delivered" % backend)
    check([m for m in got if m["payload"] == b"after-crash"],
          "%s: the delayed will did not fire after the restart" % backend)
    e = RawClient(b.port)
    sp, _, _ = do_connect(e, "d5-short", clean=False, properties=props((SESSION_EXPIRY, 1)))
    check(sp == 0, "%s: a session expired during the outage was restored" % backend)


def test_mqtt5_durable_sqlite(ctx):
    _crash_and_restore(ctx, "sqlite")


def test_mqtt5_durable_lmdb(ctx):
    _crash_and_restore(ctx, "lmdb")


def test_mqtt5_durable_redis(ctx):
    _crash_and_restore(ctx, "redis")


assert set(DURABLE_BACKENDS) == {"sqlite", "lmdb", "redis"}
