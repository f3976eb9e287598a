"""cairn-store: stats and dump of a store a real broker filled, copies
between every ordered pair of durable backends (sqlite, lmdb, redis), and a
broker started on each copy restoring the same sessions, queues and
retained messages. Selected with `run.py --only cairn_store`."""

import base64
import json
import os
import shutil
import socket
import subprocess
import time

from harness import (PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient, _redis_shared, ack_packet,
                     broker_command, check, parse_publish, publish_packet, require_cairn)

SUB = "cs-sub-\u00fc"  # a non-ASCII client identifier
RET_TOPIC = 'cs/ret/"q"\\\u00e9'  # quote, backslash, non-ASCII
BIN = b"\x00\x01\xfe\xff\n\"x"
# What SUB is owed, in publish order: (topic, payload, qos).
QUEUE = [("cs/q/a", b"a0", 1), ("cs/q/b", b"b0", 2), ("cs/q/a", b"a1", 1),
         ("cs/q/b", b"b1", 2), ("cs/q/a", BIN, 1), ("cs/q/b", b"b2", 2),
         ("cs/one", b"one", 1)]
ONCE = ("cs/q/x", b"once", 2)  # published by cs-q2pub, PUBREL withheld


def _tool():
    require_cairn("cairn-store reads cairn's stores")
    path = os.path.join(os.path.dirname(broker_command()), "cairn-store")
    check(os.access(path, os.X_OK), "no cairn-store beside %s" % broker_command())
    return path


def _run(tool, *args, want=0):
    r = subprocess.run([tool] + list(args), capture_output=True, timeout=30)
    out, err = r.stdout.decode("utf-8"), r.stderr.decode("utf-8", "replace")
    check(r.returncode == want, "cairn-store %s: exit %d, want %d\nstdout: %s\nstderr: %s" %
          (" ".join(args), r.returncode, want, out, err))
    return out, err


def _stats(tool, store, drops=None):
    """The counts of `stats` as a dict; its per-session drop lines
    (dropped_by "ID" N) go into the dict drops when one is given."""
    out, _ = _run(tool, "stats", store)
    counts = {}
    for line in out.splitlines():
        if line.startswith("dropped_by "):
            cid, n = line[len("dropped_by "):].rsplit(" ", 1)
            if drops is not None:
                drops[json.loads(cid)] = int(n)
            continue
        k, v = line.split()
        counts[k] = int(v)
    return counts


def _dump(tool, store):
    r = subprocess.run([tool, "dump", store], capture_output=True, timeout=30)
    check(r.returncode == 0, "dump %s: exit %d: %s" % (store, r.returncode, r.stderr))
    return r.stdout


class Stores:
    """STORE arguments and broker options for one backend instance each."""

    def __init__(self, ctx, rport):
        self.ctx = ctx
        self.rport = rport
        self.tag = "cstore-%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
        self.prefixes = []

    def sqlite(self, name):
        d = os.path.join(self.ctx.workdir, name)
        return "sqlite:" + d, dict(persistence="true", persistence_backend="sqlite",
                                   persistence_location=d)

    def lmdb(self, name):
        d = os.path.join(self.ctx.workdir, name)
        return "lmdb:" + d, dict(persistence="true", persistence_backend="lmdb",
                                 persistence_location=d)

    def redis(self, name):
        prefix = "%s-%s:" % (self.tag, name)
        self.prefixes.append(prefix)
        return ("redis://127.0.0.1:%d/0?prefix=%s" % (self.rport, prefix),
                dict(persistence="true", persistence_backend="redis",
                     redis_host="127.0.0.1", redis_port=self.rport, redis_key_prefix=prefix,
                     persistence_location=os.path.join(self.ctx.workdir, name)))

    def drop_redis_keys(self):
        for p in self.prefixes:
            subprocess.run("redis-cli -p %d --scan --pattern '%s*' | "
                           "xargs -r redis-cli -p %d DEL" % (self.rport, p, self.rport),
                           shell=True, capture_output=True, timeout=10)


def _populate(port):
    """Sessions, queues for an offline subscriber, a message in flight, an
    inbound QoS 2 id and a retained message."""
    s = RawClient(port)
    s.connect(SUB, clean=False)
    s.subscribe(1, [("cs/q/#", 2), ("cs/one", 1)])
    s.disconnect()

    f = RawClient(port)
    f.connect("cs-inflight", clean=False)
    f.subscribe(1, [("cs/f", 1)])

    p = RawClient(port)
    p.connect("cs-pub")
    for i, (topic, payload, qos) in enumerate(QUEUE):
        p.publish(topic, payload, qos=qos, pid=i + 1)
    p.publish(RET_TOPIC, b"kept", qos=1, pid=50, retain=True)
    p.publish("cs/f", b"unacked", qos=1, pid=51)
    m = f.read_publish()
    check(m["payload"] == b"unacked", "cs-inflight got %r" % m)
    f.abort()  # never acknowledged: the delivery stays in flight
    p.close()

    q = RawClient(port)
    q.connect("cs-q2pub", clean=False)
    q.send(publish_packet(ONCE[0], ONCE[1], qos=2, pid=77))
    q.expect(PUBREC)
    q.abort()  # PUBREL withheld: packet id 77 stays in inflight_in
    time.sleep(0.2)  # let the broker see the aborts before it is stopped


def _read_all(c, want, timeout=5.0, grace=0.3):
    """PUBLISHes on c (acknowledged as they come) until want arrived and
    grace seconds passed quietly."""
    got = []
    end = time.monotonic() + timeout
    quiet_end = time.monotonic() + grace
    while True:
        left = (end if len(got) < want else min(end, quiet_end)) - time.monotonic()
        if left <= 0:
            return got
        try:
            t, fl, body = c.read_packet(left)
        except socket.timeout:
            return got  # a close is not the end of a queue: it raises
        if t == PUBLISH:
            m = parse_publish(fl, body)
            got.append(m)
            if m["qos"] == 1:
                c.send(ack_packet(4, m["pid"]))
            elif m["qos"] == 2:
                c.send(ack_packet(PUBREC, m["pid"]))
        elif t == PUBREL:
            c.send(ack_packet(PUBCOMP, int.from_bytes(body[:2], "big")))
        quiet_end = time.monotonic() + grace


def _check_restored(ctx, opts, what):
    """Start a broker on a copy: every session is back with its state."""
    b = ctx.broker(**opts)
    try:
        q = RawClient(b.port)
        sp, _ = q.connect("cs-q2pub", clean=False)
        check(sp == 1, "%s: cs-q2pub session present %d" % (what, sp))
        q.send(publish_packet(ONCE[0], ONCE[1], qos=2, pid=77, dup=True))
        q.expect(PUBREC)
        q.send(ack_packet(PUBREL, 77))
        q.expect(PUBCOMP)
        q.close()

        s = RawClient(b.port)
        sp, _ = s.connect(SUB, clean=False)
        check(sp == 1, "%s: %s session present %d" % (what, SUB, sp))
        got = _read_all(s, len(QUEUE) + 1)
        s.close()
        want = [(t, p) for t, p, _ in QUEUE] + [ONCE[:2]]
        have = [(m["topic"], m["payload"]) for m in got]
        check(have == want, "%s: queue after restore %r, want %r" % (what, have, want))
        check([m["qos"] for m in got] == [q for _, _, q in QUEUE] + [2],
              "%s: QoS after restore %r" % (what, [m["qos"] for m in got]))

        f = RawClient(b.port)
        sp, _ = f.connect("cs-inflight", clean=False)
        check(sp == 1, "%s: cs-inflight session present %d" % (what, sp))
        got = _read_all(f, 1)
        f.close()
        check(len(got) == 1 and got[0]["payload"] == b"unacked" and got[0]["dup"],
              "%s: in-flight message not resent with DUP: %r" % (what, got))

        r = RawClient(b.port)
        r.connect("cs-ret-check")
        r.subscribe(1, [("cs/ret/#", 1)])
        m = r.read_publish(3)
        r.close()
        check(m["retain"] and m["topic"] == RET_TOPIC and m["payload"] == b"kept",
              "%s: retained message not restored: %r" % (what, m))
    finally:
        b.stop()


def _check_dump(raw):
    check(("\"" + SUB + "\"").encode("utf-8") in raw,
          "non-ASCII client id not passed through as UTF-8")
    recs = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    order = ["session", "subscription", "message", "delivery", "inflight_in", "retained"]
    kinds = [r["type"] for r in recs]
    check(kinds == sorted(kinds, key=order.index), "dump not in load order: %r" % kinds)
    sessions = {r["client_id"]: r for r in recs if r["type"] == "session"}
    check(set(sessions) == {SUB, "cs-inflight", "cs-q2pub"}, "sessions %r" % list(sessions))
    check(all(r["will"] is None and r["connected"] is False for r in sessions.values()),
          "sessions: %r" % sessions)
    subs = {(r["client_id"], r["filter"], r["qos"]) for r in recs if r["type"] == "subscription"}
    check(subs == {(SUB, "cs/q/#", 2), (SUB, "cs/one", 1), ("cs-inflight", "cs/f", 1)},
          "subscriptions %r" % subs)
    msgs = {r["msg_id"]: r for r in recs if r["type"] == "message"}
    dels = [r for r in recs if r["type"] == "delivery"]
    queued = [(msgs[d["msg_id"]]["topic"], base64.b64decode(msgs[d["msg_id"]]["payload"]))
              for d in dels if d["client_id"] == SUB]
    check(queued == [(t, p) for t, p, _ in QUEUE] + [ONCE[:2]],
          "deliveries of %s: %r" % (SUB, queued))
    check(all(d["state"] == "queued" and d["packet_id"] == 0
              for d in dels if d["client_id"] == SUB), "queued deliveries: %r" % dels)
    fl = [d for d in dels if d["client_id"] == "cs-inflight"]
    check(len(fl) == 1 and fl[0]["state"] == "sent" and fl[0]["packet_id"] != 0,
          "in-flight delivery: %r" % fl)
    inb = [r for r in recs if r["type"] == "inflight_in"]
    check(inb == [{"type": "inflight_in", "client_id": "cs-q2pub", "packet_id": 77}],
          "inflight_in: %r" % inb)
    ret = [r for r in recs if r["type"] == "retained"]
    check(len(ret) == 1 and ret[0]["topic"] == RET_TOPIC and
          base64.b64decode(ret[0]["payload"]) == b"kept" and ret[0]["qos"] == 1,
          "retained: %r" % ret)
    # Escapes as JSON writes them, not only as a parser reads them.
    check(b'"cs/ret/\\"q\\"\\\\\xc3\xa9"' in raw, "retained topic escaped wrongly")


def test_cairn_store_stats_dump_copy_every_backend_pair(ctx):
    tool = _tool()
    st = Stores(ctx, _redis_shared(ctx))
    ctx.add_cleanup(st.drop_redis_keys)

    s0, s0opts = st.sqlite("s0")
    b = ctx.broker(**s0opts)
    _populate(b.port)
    live = _stats(tool, s0)  # reading a live WAL database is allowed
    check(live["sessions"] == 3, "stats of the live store: %r" % live)
    b.stop()

    want = dict(sessions=3, subscriptions=3, queued=len(QUEUE) + 1, inflight=1,
                messages=len(QUEUE) + 2, inflight_in=1, retained=1, dropped=0)
    got = _stats(tool, s0)
    check(got == want, "stats %r, want %r" % (got, want))
    raw = _dump(tool, s0)
    _check_dump(raw)
    # sqlite:DIR/cairn.db names the same store.
    check(_dump(tool, s0 + "/cairn.db") == raw, "sqlite:DIR/cairn.db is another store")

    # Copies from the broker's store, then from the copies: every ordered
    # pair of durable backends, each compared record by record.
    l1, l1opts = st.lmdb("l1")
    r1, r1opts = st.redis("r1")
    s2, s2opts = st.sqlite("s2")
    r2, r2opts = st.redis("r2")
    s3, s3opts = st.sqlite("s3")
    l3, l3opts = st.lmdb("l3")
    ref = sorted(raw.splitlines())
    for frm, to in [(s0, l1), (s0, r1), (l1, s2), (l1, r2), (r1, s3), (r1, l3)]:
        out, _ = _run(tool, "copy", frm, to)
        check(out.startswith("copied %d records" % sum(want.values())),
              "copy %s -> %s: %r" % (frm, to, out))
        check(sorted(_dump(tool, to).splitlines()) == ref,
              "copy %s -> %s differs from the original" % (frm, to))

    for opts, name in [(l1opts, "lmdb (from sqlite)"), (r1opts, "redis (from sqlite)"),
                       (s2opts, "sqlite (from lmdb)"), (r2opts, "redis (from lmdb)"),
                       (s3opts, "sqlite (from redis)"), (l3opts, "lmdb (from redis)")]:
        _check_restored(ctx, opts, name)


test_cairn_store_stats_dump_copy_every_backend_pair.timeout = 60


def test_cairn_store_copies_a_due_will(ctx):
    """A session stored as connected (the broker was killed) keeps its will
    through a copy, and the broker started on the copy publishes it."""
    tool = _tool()
    st = Stores(ctx, _redis_shared(ctx))
    ctx.add_cleanup(st.drop_redis_keys)
    src, srcopts = st.sqlite("w0")
    b = ctx.broker(**srcopts)
    c = RawClient(b.port)
    c.connect("cs-will", clean=False, username='u"1', will=("cs/will\tx", b"\x00bye", 1, True))
    c.subscribe(1, [("cs/w", 1)])
    time.sleep(0.2)
    b.kill9()  # SIGTERM would close the connection and publish the will now
    c.close()
    raw = _dump(tool, src)
    check(b'{"type":"session","client_id":"cs-will","username":"u\\"1",' in raw and
          b'"connected":true,"dropped":0,"will":{"topic":"cs/will\\tx","payload":"AGJ5ZQ==",'
          b'"qos":1,"retain":true,"props":""},' in raw, "session with a will: %r" % raw)
    for to, opts in [st.lmdb("w1"), st.redis("w2")]:
        _run(tool, "copy", src, to)
        check(_dump(tool, to) == raw, "will session differs in %s" % to)
        b = ctx.broker(**opts)
        r = RawClient(b.port)
        r.connect("cs-will-check")
        r.subscribe(1, [("cs/will\tx", 1)])
        m = r.read_publish(3)
        r.close()
        b.stop()
        check(m["retain"] and m["payload"] == b"\x00bye",
              "will not published from the copy in %s: %r" % (to, m))


def test_cairn_store_refuses_non_empty_target(ctx):
    tool = _tool()
    src = os.path.join(ctx.workdir, "src")
    b = ctx.broker(persistence="true", persistence_backend="sqlite", persistence_location=src)
    c = RawClient(b.port)
    c.connect("cs-one", clean=False)
    c.subscribe(1, [("cs/t", 1)])
    c.close()
    b.stop()

    dst = "lmdb:" + os.path.join(ctx.workdir, "dst")
    _run(tool, "copy", "sqlite:" + src, dst)
    _, err = _run(tool, "copy", "sqlite:" + src, dst, want=1)
    check("not empty" in err and "--force" in err and dst in err,
          "refusal does not say why: %r" % err)
    out, _ = _run(tool, "copy", "sqlite:" + src, dst, "--force")
    check(_stats(tool, dst) == _stats(tool, "sqlite:" + src), "--force copy differs")

    # Usage errors exit 2, store errors 1, and both name the problem.
    _, err = _run(tool, "stats", "memory:", want=2)
    check("memory" in err, "memory: refused without a reason: %r" % err)
    _run(tool, "stats", "nonsense", want=2)
    _run(tool, "frobnicate", "sqlite:" + src, want=2)
    _run(tool, "copy", "sqlite:" + src, "sqlite:" + src + "/cairn.db", "--force", want=2)
    missing = "sqlite:" + os.path.join(ctx.workdir, "nowhere")
    _, err = _run(tool, "stats", missing, want=1)
    check(missing in err, "error does not name the store: %r" % err)
    check(not os.path.exists(os.path.join(ctx.workdir, "nowhere")),
          "reading a missing store created it")
    out, _ = _run(tool, "--help")
    check("copy FROM TO" in out, "--help: %r" % out)
    shutil.rmtree(src, ignore_errors=True)


def test_cairn_store_queue_drops_are_visible(ctx):
    """A persistent subscriber offline past max_queued_messages loses the
    newest QoS 1 messages although each publish was acknowledged (as in
    Mosquitto); the drops are never silent: the log names the client, the
    count is stored with the session and shown by `cairn-store stats`, and
    the client's next connect line says how many it lost."""
    tool = _tool()
    b = ctx.broker(persistence=True, max_queued_messages=3)
    sid = "drop-sub \u00e9"
    sub = RawClient(b.port)
    sub.connect(sid, clean=False)
    sub.subscribe(1, [("cs/drop", 1)])
    sub.disconnect()
    pub = RawClient(b.port)
    pub.connect("drop-pub")
    for i in range(8):
        pub.publish("cs/drop", b"m%d" % i, qos=1, pid=i + 1)  # each one PUBACKed
    pub.disconnect()
    log = b.log_text()
    check("client %s: queue full" % sid in log, "no queue-full warning naming the client:\n%s"
          % b.log_tail())
    b.stop()
    drops = {}
    got = _stats(tool, "sqlite:" + b.db_dir, drops)
    check(got["dropped"] == 5 and got["queued"] == 3, "stats after 5 drops: %r" % got)
    check(drops == {sid: 5}, "per-session drop lines: %r" % drops)
    rec = [json.loads(line) for line in _dump(tool, "sqlite:" + b.db_dir).splitlines()]
    check([r["dropped"] for r in rec if r["type"] == "session" and r["client_id"] == sid] == [5],
          "dump of the session record: %r" % rec[:2])
    b.start()
    sub = RawClient(b.port)
    present, _ = sub.connect(sid, clean=False)
    check(present == 1, "session not resumed")
    got = [sub.read_publish()["payload"] for _ in range(3)]
    check(got == [b"m0", b"m1", b"m2"], "queued messages after the restart: %r" % got)
    sub.disconnect()
    check("5 messages dropped from its queue so far" in b.log_text(),
          "the connect line does not report the drops:\n%s" % b.log_tail())
test_cairn_store_queue_drops_are_visible.timeout = 30


def test_cairn_store_copies_mqtt5_fields(ctx):
    """The MQTT 5.0 fields of every record (set here with the sqlite3 shell,
    as an operator could) survive copies sqlite -> lmdb -> redis -> sqlite
    byte for byte, and dump prints them: deadlines at the ends of int64,
    property blocks with NUL bytes as base64, subscription options and
    identifiers, a delivery's retain flag and subscription ids."""
    tool = _tool()
    st = Stores(ctx, _redis_shared(ctx))
    ctx.add_cleanup(st.drop_redis_keys)
    src, srcopts = st.sqlite("v0")
    b = ctx.broker(**srcopts)
    c = RawClient(b.port)
    c.connect("cs-v5", clean=False, will=("cs/w", b"w", 1, False))
    c.subscribe(1, [("cs/v5/#", 1), ("cs/v5/a", 2)])
    p = RawClient(b.port)
    p.connect("cs-v5pub")
    p.publish("cs/v5/a", b"m\x00", qos=1, pid=1)
    p.publish("cs/v5/r", b"r", qos=1, pid=2, retain=True)
    p.disconnect()
    time.sleep(0.2)
    b.kill9()  # cs-v5 still connected: its will stays stored
    c.close()
    props = "X'2600016b00017609000200'"  # a user property and correlation data
    db = os.path.join(src[len("sqlite:"):], "cairn.db")
    r = subprocess.run(["sqlite3", db,
                        "UPDATE sessions SET protocol_level = 5, expiry_interval = 4294967294,"
                        " expires_at_ms = 9223372036854775807, will_delay = 7,"
                        " will_at_ms = -9223372036854775808, will_props = %s;"
                        "UPDATE subscriptions SET options = 44, sub_id = 268435455"
                        " WHERE filter = 'cs/v5/#';"
                        "UPDATE messages SET expires_at_ms = 1767225600123, props = %s;"
                        "UPDATE deliveries SET retain = 1, sub_ids = '1,268435455,4294967295';"
                        "UPDATE retained SET expires_at_ms = -1, props = X'00';" % (props, props)],
                       capture_output=True, timeout=10)
    check(r.returncode == 0, "sqlite3: %s" % r.stderr.decode())
    raw = _dump(tool, src)
    recs = [json.loads(line) for line in raw.decode().splitlines()]
    pb64 = base64.b64encode(bytes.fromhex("2600016b00017609000200")).decode()
    sess = [x for x in recs if x["type"] == "session"]
    check(len(sess) == 1 and sess[0]["protocol_level"] == 5 and
          sess[0]["expiry_interval"] == 4294967294 and
          sess[0]["expires_at"] == 9223372036854775807 and sess[0]["will_delay"] == 7 and
          sess[0]["will_at"] == -9223372036854775808 and sess[0]["will"]["props"] == pb64,
          "session: %r" % sess)
    subs = {x["filter"]: (x["options"], x["sub_id"]) for x in recs if x["type"] == "subscription"}
    check(subs == {"cs/v5/#": (44, 268435455), "cs/v5/a": (0, 0)}, "subscriptions: %r" % subs)
    msgs = [x for x in recs if x["type"] == "message"]
    check(msgs and all(m["expires_at"] == 1767225600123 and m["props"] == pb64 for m in msgs),
          "messages: %r" % msgs)
    dels = [x for x in recs if x["type"] == "delivery"]
    check(dels and all(d["retain"] is True and d["sub_ids"] == [1, 268435455, 4294967295]
                       for d in dels), "deliveries: %r" % dels)
    ret = [x for x in recs if x["type"] == "retained"]
    check(len(ret) == 1 and ret[0]["expires_at"] == -1 and ret[0]["props"] == "AA==",
          "retained: %r" % ret)

    l1, _ = st.lmdb("v1")
    r2, _ = st.redis("v2")
    s3, _ = st.sqlite("v3")
    for frm, to in [(src, l1), (l1, r2), (r2, s3)]:
        _run(tool, "copy", frm, to)
        check(_dump(tool, to) == raw, "copy %s -> %s lost a field:\n%s\nwant\n%s" %
              (frm, to, _dump(tool, to).decode(), raw.decode()))
