"""MQTT 5.0 sessions and wills: Clean Start with Session Expiry Interval,
expiry changed on DISCONNECT, DISCONNECT 0x04, the will delay interval and
its cancellation, and persistent_client_expiration for 3.1.1 sessions."""

import subprocess
import time

from harness import Paho, RawClient, broker_command, check, require_cairn, wait_until
from mqtt5 import (SESSION_EXPIRY, WILL_DELAY, USER, CONTENT_TYPE, Paho5, disconnect5,
                   do_connect, expect_disconnect, props, read_publish5, subscribe5,
                   read_suback5)


def _watch(ctx, b, topic="w5/#"):
    w = Paho5(b.port, "watch-" + topic.replace("/", "_").replace("#", "H"), ctx=ctx)
    w.connect()
    w.subscribe(topic, 1)
    return w


# covers: MQTT5-3.1.2-4 MQTT5-3.1.2-5 MQTT5-3.1.2-6 MQTT5-3.2.2-2 MQTT5-3.2.2-3 MQTT5-3.1.4-4
def test_mqtt5_clean_start_and_session_present(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "cs", clean=False, properties=props((SESSION_EXPIRY, 60)))
    check(sp == 0, "new session reported present")
    c.send(subscribe5(1, [("cs/t", 1)]))
    read_suback5(c, 1)
    c.send(disconnect5())
    c.expect_closed(2)
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "cs", clean=False, properties=props((SESSION_EXPIRY, 60)))
    check(sp == 1, "clean start 0: stored session not present")
    c.send(disconnect5())
    c.expect_closed(2)
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "cs", clean=True, properties=props((SESSION_EXPIRY, 60)))
    check(sp == 0, "clean start 1: session reported present")


# covers: MQTT5-3.1.2-23 MQTT5-4.1.0-1 MQTT5-4.1.0-2
def test_mqtt5_session_expires_after_interval(ctx):
    b = ctx.broker()
    c = RawClient(b.port)
    do_connect(c, "exp2", clean=False, properties=props((SESSION_EXPIRY, 1)))
    c.send(subscribe5(1, [("e/t", 1)]))
    read_suback5(c, 1)
    c.send(disconnect5())
    c.expect_closed(2)
    # Within the interval the session and its queue are kept.
    p = Paho5(b.port, "exp-pub", ctx=ctx)
    p.connect()
    p.publish("e/t", b"kept", 1)
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "exp2", clean=False, properties=props((SESSION_EXPIRY, 1)))
    check(sp == 1, "session gone within its expiry interval")
    m = read_publish5(c)
    check(m["payload"] == b"kept", "queued message %r" % m)
    c.send(disconnect5())
    c.expect_closed(2)
    check(wait_until(lambda: "session expired" in b.log_text(), 4), "expiry not logged")
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "exp2", clean=False, properties=props((SESSION_EXPIRY, 1)))
    check(sp == 0, "session present after its expiry interval")


# covers: MQTT5-3.14.2-2
def test_mqtt5_disconnect_expiry_changes(ctx):
    b = ctx.broker()
    # From 0 to non-zero: a protocol error.
    c = RawClient(b.port)
    do_connect(c, "dz")
    c.send(disconnect5(0, props((SESSION_EXPIRY, 30))))
    expect_disconnect(c, 0x82)
    # From 30 to 0: the session ends with the connection.
    c = RawClient(b.port)
    do_connect(c, "dn", clean=False, properties=props((SESSION_EXPIRY, 30)))
    c.send(disconnect5(0, props((SESSION_EXPIRY, 0))))
    c.expect_closed(2)
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "dn", clean=False, properties=props((SESSION_EXPIRY, 30)))
    check(sp == 0, "DISCONNECT with expiry 0 left the session")


# covers: MQTT5-3.1.2-10 MQTT5-3.14.4-3
def test_mqtt5_disconnect_0x04_publishes_will_0x00_does_not(ctx):
    b = ctx.broker()
    w = _watch(ctx, b)
    c = RawClient(b.port)
    do_connect(c, "w04", will=("w5/a", b"with-will", 1, False))
    c.send(disconnect5(0x04))
    m = w.get(3)
    check(m.payload == b"with-will", "will after DISCONNECT 0x04: %r" % m.payload)
    c = RawClient(b.port)
    do_connect(c, "w80", will=("w5/e", b"client-error", 1, False))
    c.send(disconnect5(0x80))  # the client reports an error: the will stays due
    m = w.get(3)
    check(m.payload == b"client-error", "will after DISCONNECT 0x80: %r" % m.payload)
    c = RawClient(b.port)
    do_connect(c, "w00", will=("w5/b", b"no", 1, False))
    c.send(disconnect5(0x00))
    check(w.none(1.0) is None, "will published after DISCONNECT 0x00")


# covers: MQTT5-3.1.2-8 MQTT5-3.1.3-10 MQTT5-3.1.2-7 MQTT5-3.1.2-14
def test_mqtt5_will_delay_and_properties(ctx):
    b = ctx.broker()
    w = _watch(ctx, b)
    c = RawClient(b.port)
    wp = props((WILL_DELAY, 1), (USER, ("a", "1")), (USER, ("b", "2")),
               (CONTENT_TYPE, "text/plain"))
    do_connect(c, "wd", clean=False, properties=props((SESSION_EXPIRY, 60)),
               will=("w5/d", b"late", 1, False), will_properties=wp)
    t0 = time.monotonic()
    c.abort()
    check(w.none(0.6) is None, "delayed will published before its delay")
    m = w.get(3)
    dt = time.monotonic() - t0
    check(m.payload == b"late", "will payload %r" % m.payload)
    check(0.9 <= dt <= 3.0, "will after %.2fs, want about 1 s" % dt)
    users = [(k, v) for k, v in (m.properties.UserProperty or [])]
    check(users == [("a", "1"), ("b", "2")], "will user properties %r" % users)
    check(m.properties.ContentType == "text/plain", "content type %r" %
          getattr(m.properties, "ContentType", None))


# covers: MQTT5-3.1.3-9
def test_mqtt5_reconnect_within_will_delay_cancels_will(ctx):
    b = ctx.broker()
    w = _watch(ctx, b)
    c = RawClient(b.port)
    do_connect(c, "wc", clean=False, properties=props((SESSION_EXPIRY, 60)),
               will=("w5/c", b"cancelled", 1, False), will_properties=props((WILL_DELAY, 2)))
    c.abort()
    time.sleep(0.3)
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "wc", clean=False, properties=props((SESSION_EXPIRY, 60)))
    check(sp == 1, "session not resumed")
    check(w.none(2.8) is None, "will published although the client came back in time")


def test_mqtt5_will_goes_out_when_session_ends_before_delay(ctx):
    b = ctx.broker()
    w = _watch(ctx, b)
    c = RawClient(b.port)
    do_connect(c, "we", clean=False, properties=props((SESSION_EXPIRY, 1)),
               will=("w5/e", b"ended", 0, False), will_properties=props((WILL_DELAY, 600)))
    c.abort()
    m = w.get(4)
    check(m.payload == b"ended", "will at session end: %r" % m.payload)


def test_persistent_client_expiration_bad_value_refused(ctx):
    require_cairn("cairn's config parser")
    b = ctx.broker(start=False, persistent_client_expiration="10x")
    r = subprocess.run([broker_command(), "-t", "-c", b.conf_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10, stdin=subprocess.DEVNULL)
    check(r.returncode != 0, "config with persistent_client_expiration 10x accepted")
    check(b"persistent_client_expiration" in r.stderr, "error does not name the key: %r" %
          r.stderr)
    b.options["persistent_client_expiration"] = "2d"
    b._write_conf()
    r = subprocess.run([broker_command(), "-t", "-c", b.conf_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "persistent_client_expiration 2d refused: %r" % r.stderr)


def test_mqtt5_paho_session_resume(ctx):
    b = ctx.broker()
    s = Paho5(b.port, "paho5-sess", ctx=ctx)
    s.connect(clean_start=False, SessionExpiryInterval=30)
    s.subscribe("ps/#", 1)
    s.disconnect()
    p = Paho(b.port, "p311-pub", ctx=ctx)
    p.connect()
    p.publish("ps/x", b"while-away", 1)
    s = Paho5(b.port, "paho5-sess", ctx=ctx)
    s.connect(clean_start=False, SessionExpiryInterval=30)
    check(s.connack[0] == 1, "paho: session not present")
    m = s.get(3)
    check(m.payload == b"while-away", "queued message %r" % m.payload)


def test_mqtt5_clean_start_ends_session_and_its_delayed_will(ctx):
    """A reconnect with Clean Start 1 ends the old session: a will still
    waiting for its delay goes out then, not never."""
    b = ctx.broker()
    w = _watch(ctx, b)
    c = RawClient(b.port)
    do_connect(c, "wcs", clean=False, properties=props((SESSION_EXPIRY, 60)),
               will=("w5/cs", b"ended-by-clean-start", 0, False),
               will_properties=props((WILL_DELAY, 600)))
    c.abort()
    check(w.none(0.4) is None, "will published before the session ended")
    c = RawClient(b.port)
    sp, _, _ = do_connect(c, "wcs", clean=True)
    check(sp == 0, "clean start resumed the session")
    m = w.get(3)
    check(m.payload == b"ended-by-clean-start", "will %r" % m.payload)
