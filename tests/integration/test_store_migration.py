"""Stores written by cairn 0.1 (SQLite and LMDB schema 1, Redis schema 1;
tests/fixtures/store-0.1, made by its make_fixtures.py), and copies of them
turned into schema 2 stores (and SQLite schema 3 ones), open with this
cairn: the migration to the current schema is logged and written (one
transaction, so a 0.1 broker would refuse the store as newer), every
record comes back with the values 0.1 stored and the defaults of the MQTT
5.0 fields, and a broker started on the migrated store restores the
sessions: the queue, the in-flight QoS 1 and QoS 2 exchanges, the inbound
QoS 2 id, the due will and the retained messages. A migrated SQLite
store's deliveries table is WITHOUT ROWID (schema 4), its rows stored in
(client_id, seq) order whatever order the old table held them in."""

import base64
import json
import os
import shutil
import socket
import subprocess
import time

from harness import (PUBCOMP, PUBLISH, PUBREC, PUBREL, ROOT, RawClient, _redis_shared,
                     ack_packet, check, lmdb_dump, parse_publish, publish_packet, sqlite_query)
from test_cairn_store import _tool

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "store-0.1")
NEVER = 4294967295


def _dump(tool, store):
    r = subprocess.run([tool, "dump", store], capture_output=True, timeout=30)
    check(r.returncode == 0, "dump %s: exit %d: %s" % (store, r.returncode, r.stderr))
    return [json.loads(line) for line in r.stdout.decode().splitlines()], r.stderr.decode()


def _b64(b):
    return base64.b64encode(b).decode()


def _session(cid, username=None, connected=False, will=None):
    return {"type": "session", "client_id": cid, "username": username, "next_packet_id": 0,
            "connected": connected, "dropped": 0, "will": will, "protocol_level": 0,
            "expiry_interval": NEVER, "expires_at": 0, "will_delay": 0, "will_at": 0}


def _msg(kind, mid, topic, payload, qos, retain=False):
    return {"type": kind, "msg_id": mid, "topic": topic, "payload": _b64(payload), "qos": qos,
            "retain": retain, "expires_at": 0, "props": ""}


def _delivery(cid, seq, mid, pid, qos, state):
    return {"type": "delivery", "client_id": cid, "seq": seq, "msg_id": mid, "packet_id": pid,
            "qos": qos, "state": state, "retain": False, "sub_ids": []}


def _sub(cid, filt, qos):
    return {"type": "subscription", "client_id": cid, "filter": filt, "qos": qos, "options": 0,
            "sub_id": 0}


# What make_fixtures.py's scenario left in every 0.1 store, as this
# cairn-store dumps it.
WANT = [
    _session("fx-q2pub"),
    _session("fx-sub"),
    _session("fx-will", "fx-user", True, {"topic": "fx/will", "payload": _b64(b"\x00gone"),
                                          "qos": 1, "retain": True, "props": ""}),
    _sub("fx-sub", "fx/one", 1),
    _sub("fx-sub", "fx/q/#", 2),
    _sub("fx-will", "fx/f", 2),
    _msg("message", 1, "fx/q/a", b"a0", 1),
    _msg("message", 2, "fx/q/b", b"b\x00", 2),
    _msg("message", 3, "fx/one", b"one", 1),
    _msg("message", 4, "fx/f", b"two", 2),
    _msg("message", 5, "fx/f", b"one", 1),
    _delivery("fx-sub", 1, 1, 0, 1, "queued"),
    _delivery("fx-sub", 2, 2, 0, 2, "queued"),
    _delivery("fx-sub", 3, 3, 0, 1, "queued"),
    _delivery("fx-will", 1, 4, 1, 2, "pubrec"),
    _delivery("fx-will", 2, 5, 2, 1, "sent"),
    {"type": "inflight_in", "client_id": "fx-q2pub", "packet_id": 77},
    _msg("retained", 0, "fx/ret/1", b"r1", 1, True),
    _msg("retained", 0, "fx/ret/2", b"r2", 0, True),
]


def _resp(port, *args):
    """One Redis command (binary-safe) over a fresh connection; raises on an
    error reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        s.sendall(out)
        line = s.makefile("rb").readline()
        check(not line.startswith(b"-"), "redis %r: %r" % (args[0], line))
        return line
    finally:
        s.close()


def _unreadable(v):
    return base64.b64decode(v["base64"]) if isinstance(v, dict) else v.encode("utf-8")


def _load_redis_fixture(port, prefix):
    """Write every key of redis.json under prefix, as 0.1 left them."""
    with open(os.path.join(FIXTURES, "redis.json")) as f:
        keys = json.load(f)
    for k in keys:
        key = prefix.encode() + _unreadable(k["key"])
        _resp(port, "DEL", key)
        if k["type"] == "string":
            _resp(port, "SET", key, _unreadable(k["value"]))
        elif k["type"] == "hash":
            args = []
            for f, v in k["value"].items():
                args += [_unreadable(f), _unreadable(v)]
            _resp(port, "HSET", key, *args)
        else:
            _resp(port, "SADD", key, *[_unreadable(m) for m in k["value"]])
    return len(keys)


def _drop_redis_keys(port, prefix):
    subprocess.run("redis-cli -p %d --scan --pattern '%s*' | xargs -r redis-cli -p %d DEL" %
                   (port, prefix, port), shell=True, capture_output=True, timeout=10)


def _copy_file(src, d):
    """A writable copy (the source tree may be read-only, as in distcheck)."""
    dst = os.path.join(d, os.path.basename(src))
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)


def _copy_fixture(ctx, backend):
    """STORE argument, broker options and a function returning the schema
    version the store holds, for a fresh copy of one fixture."""
    if backend == "redis":
        port = _redis_shared(ctx)
        prefix = "mig01-%d-%d:" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
        ctx.add_cleanup(lambda: _drop_redis_keys(port, prefix))
        check(_load_redis_fixture(port, prefix) > 10, "redis.json holds too few keys")

        def version():
            r = subprocess.run(["redis-cli", "-p", str(port), "GET", prefix + "schema_version"],
                               capture_output=True, timeout=10)
            return int(r.stdout.decode().strip())
        return ("redis://127.0.0.1:%d/0?prefix=%s" % (port, prefix),
                dict(persistence="true", persistence_backend="redis", redis_host="127.0.0.1",
                     redis_port=port, redis_key_prefix=prefix,
                     persistence_location=os.path.join(ctx.workdir, "unused")), version)
    d = os.path.join(ctx.workdir, backend + "-0.1")
    os.makedirs(d)
    if backend == "sqlite":
        _copy_file(os.path.join(FIXTURES, "cairn.db"), d)

        def version():
            return int(sqlite_query(os.path.join(d, "cairn.db"),
                                    "SELECT version FROM schema_version")[0][0])
    else:
        _copy_file(os.path.join(FIXTURES, "lmdb", "data.mdb"), d)

        def version():
            # mdb_dump -p prints the key, then the value: the 4-byte
            # big-endian number as \00\00\00\03.
            lines = [x.strip() for x in lmdb_dump(d, "meta").splitlines()]
            value = lines[lines.index("schema_version") + 1]
            return int(value.replace("\\", ""), 16)
    return (backend + ":" + d, dict(persistence="true", persistence_backend=backend,
                                    persistence_location=d), version)


def _to_schema_2(backend, store):
    """Turn a copy of a 0.1 fixture into what a schema 2 cairn (the one
    before the MQTT 5.0 fields) would have left: SQLite gains the dropped
    column (fx-sub lost 5 messages), LMDB only its version number (schema
    2 wrote the same records)."""
    d = store.split(":", 1)[1]
    if backend == "sqlite":
        r = subprocess.run(["sqlite3", os.path.join(d, "cairn.db"),
                            "ALTER TABLE sessions ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;"
                            "UPDATE sessions SET dropped = 5 WHERE client_id = 'fx-sub';"
                            "UPDATE schema_version SET version = 2"],
                           capture_output=True, timeout=10)
    else:
        r = subprocess.run(["mdb_load", "-T", "-s", "meta", d],
                           input=b"schema_version\n\\00\\00\\00\\02\n",
                           capture_output=True, timeout=10)
    check(r.returncode == 0, "making a schema 2 %s store: %s" % (backend, r.stderr))


# The columns schema 3 (MQTT 5.0) added, as a schema 3 cairn left them.
_SQLITE_SCHEMA_3 = (
    "ALTER TABLE sessions ADD COLUMN protocol_level INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN expiry_interval INTEGER;"
    "ALTER TABLE sessions ADD COLUMN expires_at_ms INTEGER;"
    "ALTER TABLE sessions ADD COLUMN will_delay INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE sessions ADD COLUMN will_at_ms INTEGER;"
    "ALTER TABLE sessions ADD COLUMN will_props BLOB;"
    "ALTER TABLE subscriptions ADD COLUMN options INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE subscriptions ADD COLUMN sub_id INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN expires_at_ms INTEGER;"
    "ALTER TABLE messages ADD COLUMN props BLOB;"
    "ALTER TABLE deliveries ADD COLUMN retain INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deliveries ADD COLUMN sub_ids TEXT;"
    "ALTER TABLE retained ADD COLUMN expires_at_ms INTEGER;"
    "ALTER TABLE retained ADD COLUMN props BLOB;")


def _to_sqlite_schema_3(store):
    """Turn a schema 2 SQLite copy into what a schema 3 cairn would have
    left: the MQTT 5.0 columns, fx-sub's second delivery retained with
    subscription identifiers 1 and 7, and the deliveries rewritten in
    reverse key order, so that the old table's rowid order (what a scan
    without ORDER BY returns) is not the key order the copy must keep."""
    db = os.path.join(store.split(":", 1)[1], "cairn.db")
    r = subprocess.run(["sqlite3", db, _SQLITE_SCHEMA_3 +
                        "UPDATE deliveries SET retain = 1, sub_ids = '1,7'"
                        " WHERE client_id = 'fx-sub' AND seq = 2;"
                        "CREATE TEMP TABLE d AS SELECT * FROM deliveries;"
                        "DELETE FROM deliveries;"
                        "INSERT INTO deliveries SELECT * FROM d ORDER BY client_id DESC, seq DESC;"
                        "UPDATE schema_version SET version = 3"],
                       capture_output=True, timeout=10)
    check(r.returncode == 0, "making a schema 3 sqlite store: %s" % r.stderr)
    rows = sqlite_query(db, "SELECT client_id, seq FROM deliveries ORDER BY rowid")
    check(rows[0] == ["fx-will", "2"], "the schema 3 copy holds its rows in key order: %r" % rows)


def _check_sqlite_deliveries(store):
    """Schema 4: deliveries WITHOUT ROWID, no table left from the copy,
    and a scan without ORDER BY in (client_id, seq) order."""
    db = os.path.join(store.split(":", 1)[1], "cairn.db")
    sql = sqlite_query(db, "SELECT sql FROM sqlite_master WHERE name = 'deliveries'")
    check(len(sql) == 1 and sql[0][0].rstrip().upper().endswith("WITHOUT ROWID"),
          "sqlite: deliveries is not WITHOUT ROWID: %r" % sql)
    names = sqlite_query(db, "SELECT name FROM sqlite_master WHERE name LIKE 'deliveries%'")
    check(names == [["deliveries"]], "sqlite: tables left by the migration: %r" % names)
    rows = [r[:2] for r in sqlite_query(db, "SELECT client_id, seq, msg_id FROM deliveries")]
    want = [["fx-sub", "1"], ["fx-sub", "2"], ["fx-sub", "3"], ["fx-will", "1"], ["fx-will", "2"]]
    check(rows == want, "sqlite: deliveries scan as %r, want %r" % (rows, want))


def _check_migration(ctx, backend, old, new):
    tool = _tool()
    store, opts, version = _copy_fixture(ctx, backend)
    want = [dict(r) for r in WANT]
    if old >= 2:
        _to_schema_2(backend, store)
        if backend == "sqlite":
            want[1]["dropped"] = 5
    if old == 3:
        _to_sqlite_schema_3(store)
        i = want.index(_delivery("fx-sub", 2, 2, 0, 2, "queued"))
        want[i] = dict(want[i], retain=True, sub_ids=[1, 7])
    check(version() == old, "the %s fixture is not at schema %d" % (backend, old))
    recs, err = _dump(tool, store)
    check("migrated from schema version %d to %d" % (old, new) in err,
          "%s: the migration is not logged: %r" % (backend, err))
    check(version() == new, "%s: schema version %r after the migration, want %d" %
          (backend, version(), new))
    if backend == "sqlite":
        _check_sqlite_deliveries(store)
    for got, w in zip(recs, want):
        check(got == w, "%s: record\n%r\nwant\n%r" % (backend, got, w))
    check(len(recs) == len(want), "%s: %d records, want %d" % (backend, len(recs), len(want)))
    recs2, err = _dump(tool, store)
    check(recs2 == recs and "migrated" not in err,
          "%s: a second open migrated again or read otherwise: %r" % (backend, err))
    _check_broker_restores(ctx, opts, backend)


def _read_publishes(c, n, timeout=5.0):
    got, end = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        t, fl, body = c.read_packet(end - time.monotonic())
        if t == PUBLISH:
            got.append(parse_publish(fl, body))
        elif t == PUBREL:
            got.append({"pubrel": int.from_bytes(body[:2], "big")})
    return got


def _check_broker_restores(ctx, opts, backend):
    b = ctx.broker(**opts)
    try:
        # fx-will was connected when 0.1 died: its will is due, retained.
        r = RawClient(b.port)
        r.connect("mig-check")
        r.subscribe(1, [("fx/will", 1), ("fx/ret/#", 1)])
        got = sorted((m["topic"], m["payload"]) for m in _read_publishes(r, 3))
        r.close()
        check(got == [("fx/ret/1", b"r1"), ("fx/ret/2", b"r2"), ("fx/will", b"\x00gone")],
              "%s: retained messages and the due will: %r" % (backend, got))

        s = RawClient(b.port)
        sp, _ = s.connect("fx-sub", clean=False)
        check(sp == 1, "%s: fx-sub session not present" % backend)
        got = _read_publishes(s, 3)
        check([(m["topic"], m["payload"], m["qos"]) for m in got] ==
              [("fx/q/a", b"a0", 1), ("fx/q/b", b"b\x00", 2), ("fx/one", b"one", 1)],
              "%s: fx-sub's queue: %r" % (backend, got))
        s.close()

        # The QoS 2 exchange at PUBREC goes on with PUBREL, the QoS 1 one
        # is sent again with DUP, each under its 0.1 packet id.
        w = RawClient(b.port)
        sp, _ = w.connect("fx-will", clean=False, username="fx-user")
        check(sp == 1, "%s: fx-will session not present" % backend)
        got = _read_publishes(w, 2)
        check(len(got) == 2 and got[0] == {"pubrel": 1} and got[1]["pid"] == 2 and
              got[1]["dup"] and got[1]["payload"] == b"one",
              "%s: fx-will's in-flight exchanges: %r" % (backend, got))
        w.send(ack_packet(PUBCOMP, 1))
        w.send(ack_packet(4, 2))
        w.close()

        # Packet id 77 is still an inbound QoS 2 exchange: the resent
        # PUBLISH is acknowledged, not delivered a second time.
        q = RawClient(b.port)
        sp, _ = q.connect("fx-q2pub", clean=False)
        check(sp == 1, "%s: fx-q2pub session not present" % backend)
        q.send(publish_packet("fx/q2", b"once", qos=2, pid=77, dup=True))
        q.expect(PUBREC)
        q.send(ack_packet(PUBREL, 77))
        q.expect(PUBCOMP)
        q.close()
    finally:
        b.stop()


def test_store_0_1_sqlite_migrates(ctx):
    _check_migration(ctx, "sqlite", 1, 4)


test_store_0_1_sqlite_migrates.timeout = 40


def test_store_0_1_lmdb_migrates(ctx):
    _check_migration(ctx, "lmdb", 1, 3)


test_store_0_1_lmdb_migrates.timeout = 40


def test_store_schema_2_sqlite_migrates(ctx):
    _check_migration(ctx, "sqlite", 2, 4)


test_store_schema_2_sqlite_migrates.timeout = 40


def test_store_schema_3_sqlite_migrates(ctx):
    _check_migration(ctx, "sqlite", 3, 4)


test_store_schema_3_sqlite_migrates.timeout = 40


def test_store_schema_2_lmdb_migrates(ctx):
    _check_migration(ctx, "lmdb", 2, 3)


test_store_schema_2_lmdb_migrates.timeout = 40


def test_store_0_1_redis_migrates(ctx):
    _check_migration(ctx, "redis", 1, 2)


test_store_0_1_redis_migrates.timeout = 40
