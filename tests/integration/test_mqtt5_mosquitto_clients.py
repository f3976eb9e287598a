"""Debian's mosquitto_pub and mosquitto_sub speaking MQTT 5.0 (-V 5) to the
broker: properties set with -D reach a 5.0 subscriber, and a persistent
5.0 session set up by mosquitto_sub gets what was published while away."""

import shutil
import subprocess
import time

from harness import Skip, check, wait_until


def _tools():
    if not shutil.which("mosquitto_sub") or not shutil.which("mosquitto_pub"):
        raise Skip("mosquitto-clients not installed")


def _sub(ctx, b, args, log):
    proc, path = ctx.spawn(["mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", str(b.port)] +
                           args, log)
    return proc, path


def _pub(b, args):
    r = subprocess.run(["mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", str(b.port)] + args,
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "mosquitto_pub %r: %s" % (args, r.stderr.decode()))


def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def test_mqtt5_mosquitto_pub_sub_properties(ctx):
    _tools()
    b = ctx.broker()
    proc, out = _sub(ctx, b, ["-t", "mc/#", "-q", "1", "-C", "1", "-F", "%t|%p|%P|%C|%E",
                              "-D", "subscribe", "subscription-identifier", "5"], "sub.log")
    check(wait_until(lambda: "mosquitto_sub" in b.log_text() or
                     "connected from" in b.log_text(), 5), "mosquitto_sub did not connect")
    time.sleep(0.3)
    _pub(b, ["-t", "mc/x", "-m", "hello5", "-q", "1",
             "-D", "publish", "user-property", "origin", "test",
             "-D", "publish", "content-type", "text/plain",
             "-D", "publish", "message-expiry-interval", "120"])
    proc.wait(5)
    line = _read(out).strip()
    fields = line.split("|")
    check(len(fields) == 5, "mosquitto_sub printed %r" % line)
    topic, payload, users, ctype, expiry = fields
    check(topic == "mc/x" and payload == "hello5", "message %r" % line)
    check("origin:test" in users, "user property %r" % users)
    check(ctype == "text/plain", "content type %r" % ctype)
    check(expiry.isdigit() and 100 < int(expiry) <= 120, "message expiry %r" % expiry)
    check("protocol 5.0" in b.log_text(), "broker does not log the 5.0 connections")


def test_mqtt5_mosquitto_sub_persistent_session(ctx):
    _tools()
    b = ctx.broker()
    common = ["-t", "mp/#", "-q", "1", "-i", "mosq5-persist", "-c", "-x", "300"]
    proc, _ = _sub(ctx, b, common + ["-W", "1"], "sub1.log")
    proc.wait(5)  # exits after its 1 s timeout; the session stays (expiry 300)
    _pub(b, ["-t", "mp/a", "-m", "while-away", "-q", "1"])
    proc, out = _sub(ctx, b, common + ["-C", "1"], "sub2.log")
    proc.wait(5)
    check(_read(out).strip() == "while-away", "queued message: %r" % _read(out))
