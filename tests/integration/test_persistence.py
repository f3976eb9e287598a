"""Durability with persistence on: sessions, queues and half-finished QoS 2
exchanges survive SIGTERM and kill -9. Selected with `run.py --only
persistence`."""

import os
import socket
import subprocess
import threading
import time

from harness import (PUBACK, PUBCOMP, PUBREC, PUBREL, Paho, RawClient, ack_packet,
                     broker_command, check, parse_publish, publish_packet, require_cairn)

PERSIST = dict(persistence="true", persistence_backend="sqlite")


def _drain(port, client_id, want, timeout=10):
    """Reconnect clean_session=0 and acknowledge everything. Returns
    (session_present, publishes, quiet): quiet is False if more than want
    PUBLISHes arrived within half a second after the wanted ones."""
    c = RawClient(port)
    sp, _ = c.connect(client_id, clean=False)
    got = []
    end = time.monotonic() + timeout
    grace_end = None
    while True:
        now = time.monotonic()
        if len(got) >= want and grace_end is None:
            grace_end = now + 0.5
        stop = grace_end if grace_end is not None else end
        if now >= stop:
            break
        try:
            t, f, body = c.read_packet(min(2.0, stop - now))
        except socket.timeout:
            break  # a close is not the end of a queue: it raises
        if t == 3:
            m = parse_publish(f, body)
            got.append(m)
            if m["qos"] == 1:
                c.send(ack_packet(PUBACK, m["pid"]))
            elif m["qos"] == 2:
                c.send(ack_packet(PUBREC, m["pid"]))
        elif t == 6:
            c.send(ack_packet(PUBCOMP, int.from_bytes(body[:2], "big")))
    c.close()
    return sp, got, len(got) <= want


# covers: MQTT-3.1.2-4 MQTT-3.1.2-5 MQTT-4.1.0-1 MQTT-3.1.2-7
def test_persistence_queue_survives_sigterm_restart(ctx):
    b = ctx.broker(**PERSIST)
    s = RawClient(b.port)
    s.connect("durable", clean=False)
    s.subscribe(1, [("dur/#", 2)])
    s.disconnect()
    p = RawClient(b.port)
    p.connect("dur-pub")
    for i in range(5):
        p.publish("dur/1", b"a%d" % i, qos=1, pid=i + 1)
        p.publish("dur/2", b"b%d" % i, qos=2, pid=100 + i)
    p.publish("dur/ret", b"kept", qos=1, pid=200, retain=True)
    p.close()
    b.restart()
    sp, got, quiet = _drain(b.port, "durable", 11)
    check(sp == 1, "session present %d after restart" % sp)
    pay = [m["payload"] for m in got]
    check([x for x in pay if x[:1] == b"a"] == [b"a%d" % i for i in range(5)],
          "QoS 1 after restart: %r" % pay)
    check([x for x in pay if x[:1] == b"b"] == [b"b%d" % i for i in range(5)],
          "QoS 2 after restart: %r" % pay)
    check(b"kept" in pay, "retained message lost in restart")
    check(quiet, "duplicates after restart")
    r = Paho(b.port, "ret-check", ctx=ctx)
    r.connect()
    r.subscribe("dur/ret", 1)
    m = r.get(3)
    check(m.retain and m.payload == b"kept", "retained message not restored")


def _inbound_qos2(ctx, b, crash):
    """A QoS 2 PUBLISH answered with PUBREC, the publisher gone before
    PUBREL, the broker restarted (SIGTERM, or kill -9 when crash): the
    publisher's resend with DUP=1 is recognised, the subscriber gets the
    message once."""
    s = RawClient(b.port)
    s.connect("q2-sub", clean=False)
    s.subscribe(1, [("q2/t", 2)])
    s.disconnect()
    p = RawClient(b.port)
    p.connect("q2-pub", clean=False)
    p.send(publish_packet("q2/t", b"exactly-once", qos=2, pid=77))
    p.expect(PUBREC)
    p.abort()
    if crash:
        b.kill9()
        b.start()
    else:
        b.restart()
    p = RawClient(b.port)
    sp, _ = p.connect("q2-pub", clean=False)
    check(sp == 1, "publisher session present %d" % sp)
    p.send(publish_packet("q2/t", b"exactly-once", qos=2, pid=77, dup=True))
    p.expect(PUBREC)
    p.send(ack_packet(PUBREL, 77))
    p.expect(PUBCOMP)
    sp, got, quiet = _drain(b.port, "q2-sub", 1)
    check(len(got) == 1 and got[0]["payload"] == b"exactly-once", "got %r" % got)
    check(quiet, "QoS 2 message delivered twice across a %s" %
          ("kill -9" if crash else "restart"))


# covers: MQTT-4.3.3-2
def test_persistence_inbound_qos2_survives_restart(ctx):
    _inbound_qos2(ctx, ctx.broker(**PERSIST), crash=False)


# covers: MQTT-4.3.3-2
def test_persistence_inbound_qos2_survives_kill9_sqlite(ctx):
    _inbound_qos2(ctx, ctx.durable_broker("sqlite", durability="os"), crash=True)


# covers: MQTT-4.3.3-2
def test_persistence_inbound_qos2_survives_kill9_lmdb(ctx):
    _inbound_qos2(ctx, ctx.durable_broker("lmdb", durability="os"), crash=True)


# covers: MQTT-4.3.3-2
def test_persistence_inbound_qos2_survives_kill9_redis(ctx):
    _inbound_qos2(ctx, ctx.durable_broker("redis"), crash=True)


def test_persistence_kill9_keeps_every_acked_message(ctx):
    require_cairn("mosquitto only saves its database on a clean shutdown")
    b = ctx.broker(max_queued_messages=0, **PERSIST)
    s = RawClient(b.port)
    s.connect("k9-sub", clean=False)
    s.subscribe(1, [("k9/t", 1)])
    s.disconnect()
    p = RawClient(b.port)
    p.connect("k9-pub")
    acked = []
    n = 5000

    def reader():
        try:
            while True:
                t, _, body = p.read_packet(5)
                if t == 4:
                    acked.append(int.from_bytes(body[:2], "big"))
        except Exception:
            pass

    stop = threading.Event()

    def sender():
        for i in range(n):
            if stop.is_set():
                return
            if not p.try_send(publish_packet("k9/t", b"%d" % (i + 1), qos=1, pid=i + 1)):
                return
            if i % 20 == 19:
                time.sleep(0.002)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    ts = threading.Thread(target=sender, daemon=True)
    ts.start()
    end = time.monotonic() + 5
    while len(acked) < 300 and time.monotonic() < end:
        time.sleep(0.002)
    b.kill9()  # while the sender is still publishing
    stop.set()
    ts.join(6)
    th.join(6)
    sent_all = len(acked) >= n
    check(not sent_all, "all %d messages acknowledged before the kill; test proves nothing" % n)
    check(len(acked) > 0, "no PUBACK before the kill")
    b.start()
    sp, got, _ = _drain(b.port, "k9-sub", n, timeout=15)
    check(sp == 1, "session present %d after kill -9" % sp)
    have = {int(m["payload"]) for m in got}
    missing = sorted(set(acked) - have)
    check(not missing, "%d acknowledged messages lost by kill -9 (first %r), %d acked" %
          (len(missing), missing[:5], len(acked)))


def test_persistence_sqlite_sessions_table_live(ctx):
    require_cairn("cairn's SQLite schema")
    b = ctx.broker(**PERSIST)
    c = RawClient(b.port)
    c.connect("in-db", clean=False)
    c.subscribe(1, [("db/t", 1)])
    db = os.path.join(b.db_dir, "cairn.db")
    check(os.path.exists(db), "no %s" % db)
    out = ""
    end = time.monotonic() + 3
    while time.monotonic() < end:
        r = subprocess.run(["sqlite3", db, "select count(*) from sessions"],
                           capture_output=True, timeout=5)
        out = r.stdout.decode().strip()
        if r.returncode == 0 and out.isdigit() and int(out) >= 1:
            break
        time.sleep(0.1)
    check(out.isdigit() and int(out) >= 1, "sessions count %r (stderr %r)" % (out, r.stderr))
    mode = os.stat(db).st_mode & 0o777
    check(mode & 0o077 == 0, "cairn.db mode %o is readable by others" % mode)


def test_corrupt_store_stops_startup_or_is_quarantined(ctx):
    # A damaged database never makes the broker start empty silently: it
    # refuses to start and names the file, unless persistence_on_corrupt
    # quarantine asks it to move the file aside (and log where to).
    require_cairn("persistence_on_corrupt is cairn's")
    for backend, fname in (("sqlite", "cairn.db"), ("lmdb", "data.mdb")):
        b = ctx.broker(start=False, persistence="true",
                       persistence_backend=backend)
        os.makedirs(b.db_dir, exist_ok=True)
        path = os.path.join(b.db_dir, fname)
        with open(path, "wb") as f:
            f.write(b"this is not a database " * 400)
        r = subprocess.run([broker_command(), "-c", b.conf_path], capture_output=True,
                           timeout=20, cwd=ctx.workdir)
        err = r.stderr.decode("utf-8", "replace")
        check(r.returncode != 0, "%s: started on a corrupt store" % backend)
        check(fname in err, "%s: the error does not name the file: %r" % (backend, err[-400:]))
        b.options["persistence_on_corrupt"] = "quarantine"
        b._write_conf()
        b.start()
        moved = [n for n in os.listdir(b.db_dir) if n.startswith(fname + ".corrupt-")]
        check(moved, "%s: no %s.corrupt-* file in %r" % (backend, fname, os.listdir(b.db_dir)))
        with open(b.log_path, errors="replace") as f:
            log = f.read()
        check(moved[0] in log, "%s: the log does not name %s" % (backend, moved[0]))
        b.assert_serves("started empty after quarantine")
