"""The HTTP listener (http_listener): /metrics in the Prometheus text
format with counters that follow the traffic, /healthz and /readyz (503
while the store fails), $SYS topics through the router and the ACL, the
admin API (sessions, disconnect, delete, retained) behind its token, and
the status page rendered by headless Chromium.

Every test talks HTTP with urllib to 127.0.0.1 on a port from free_port.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import (CONNACK, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient, Skip,
                     TestFailure, ack_packet, broker_command, check, free_port, packet,
                     parse_publish, publish_packet, require_cairn, sqlite_query, wait_until)
import mqtt5


def _tag(*tags):
    def deco(fn):
        fn.tags = ("http",) + tags
        return fn
    return deco


def _get(port, path, method="GET", token=None, timeout=5):
    """(status, body bytes, headers) of one request; HTTP errors included."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def _json(port, path, method="GET", token=None, want=200):
    st, body, hdr = _get(port, path, method, token)
    check(st == want, "%s %s: status %d, want %d: %r" % (method, path, st, want, body[:300]))
    check(hdr.get("Content-Type") == "application/json",
          "%s %s: content type %r" % (method, path, hdr.get("Content-Type")))
    return json.loads(body)


# ---------------------------------------------------------------- exposition format

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(\{(.*)\})? (\S+)$" % _NAME)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_prometheus(text):
    """A strict reader of the text exposition format 0.0.4: returns
    {family: {"type": t, "help": h, "samples": [(name, {labels}, value)]}}.
    Raises TestFailure on a line that does not parse, a sample without its
    TYPE, a TYPE repeated, a counter not ending in _total, or a histogram
    whose buckets are not cumulative or whose +Inf bucket is not _count."""
    fams = {}
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            check(len(parts) == 4 and re.match("^%s$" % _NAME, parts[2]),
                  "line %d: bad comment %r" % (n, line))
            f = fams.setdefault(parts[2], {"type": None, "help": None, "samples": []})
            key = "help" if parts[1] == "HELP" else "type"
            check(f[key] is None, "line %d: %s repeated for %s" % (n, parts[1], parts[2]))
            if key == "type":
                check(parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"),
                      "line %d: type %r" % (n, parts[3]))
                check(not f["samples"], "line %d: TYPE after samples" % n)
            f[key] = parts[3]
            continue
        check(not line.startswith("#"), "line %d: stray comment %r" % (n, line))
        m = _SAMPLE.match(line)
        check(m, "line %d does not parse: %r" % (n, line))
        name, labels_s, value = m.group(1), m.group(3), m.group(4)
        labels = {}
        if labels_s:
            pos = 0
            while pos < len(labels_s):
                lm = _LABEL.match(labels_s, pos)
                check(lm, "line %d: bad labels %r" % (n, labels_s))
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        v = float(value)  # raises on junk
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in fams and \
                    fams[name[:-len(suffix)]]["type"] == "histogram":
                fam = name[:-len(suffix)]
        check(fam in fams and fams[fam]["type"], "line %d: sample %s without TYPE" % (n, name))
        fams[fam]["samples"].append((name, labels, v))
    for fam, f in fams.items():
        check(f["help"], "%s has no HELP" % fam)
        if f["type"] == "counter":
            check(fam.endswith("_total"), "counter %s does not end in _total" % fam)
        if f["type"] == "histogram":
            buckets = [(float(lb["le"]), v) for nm, lb, v in f["samples"]
                       if nm == fam + "_bucket"]
            check(buckets and math.isinf(buckets[-1][0]), "%s: no +Inf bucket" % fam)
            check(all(buckets[i][0] < buckets[i + 1][0] and buckets[i][1] <= buckets[i + 1][1]
                      for i in range(len(buckets) - 1)), "%s: buckets not cumulative" % fam)
            count = [v for nm, _, v in f["samples"] if nm == fam + "_count"]
            check(count == [buckets[-1][1]], "%s: _count %r != +Inf %r" %
                  (fam, count, buckets[-1][1]))
            check([1 for nm, _, _ in f["samples"] if nm == fam + "_sum"], "%s: no _sum" % fam)
    return fams


def _metrics(port):
    st, body, hdr = _get(port, "/metrics")
    check(st == 200, "/metrics status %d" % st)
    check(hdr.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          "/metrics content type %r" % hdr.get("Content-Type"))
    return parse_prometheus(body.decode())


def _value(fams, name, **labels):
    fam = fams.get(name) or fams.get(re.sub(r"_(bucket|sum|count)$", "", name))
    check(fam is not None, "no metric %s" % name)
    for nm, lb, v in fam["samples"]:
        if nm == name and all(lb.get(k) == str(x) for k, x in labels.items()):
            return v
    raise TestFailure("no sample %s%r" % (name, labels))


def _http_broker(ctx, **opts):
    require_cairn("the HTTP listener")
    hp = free_port()
    opts.setdefault("sys_interval", 0)
    b = ctx.durable_broker("sqlite", http_listener="%d 127.0.0.1" % hp, **opts)
    return b, hp


# ---------------------------------------------------------------- tests

@_tag()
def test_http_metrics_follow_traffic(ctx):
    """Counters move exactly as the traffic says: messages and payload
    bytes in and out by QoS, a refused CONNECT by reason, retained count,
    subscriptions, sessions connected and offline, the offline session's
    queue among the largest; the store committed (histograms with
    cumulative buckets, _count = +Inf); the whole page parses. GET / is
    src/http_page.html as it stands (src/http_page.h, which embeds it, is
    generated by tools/embed-page.py and committed: this catches a page
    edited without running the script)."""
    b, hp = _http_broker(ctx)
    st, page, hdr = _get(hp, "/")
    html = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src",
                        "http_page.html")
    with open(html, "rb") as fh:
        check(st == 200 and page == fh.read(),
              "GET / (status %d) is not src/http_page.html: run tools/embed-page.py" % st)
    f0 = _metrics(hp)
    check(_value(f0, "cairn_messages_received_total", qos=0) == 0, "fresh broker counts 0")
    check(_value(f0, "cairn_store_up", backend="sqlite") == 1, "store up")

    off = RawClient(b.port)
    off.connect("mt-offline", clean=False)
    off.subscribe(1, [("mt/#", 1)])
    off.disconnect()
    sub = RawClient(b.port)
    sub.connect("mt-sub", clean=False)
    check(sub.subscribe(1, [("mt/#", 2)]) == [2], "SUBACK")
    pub = RawClient(b.port)
    pub.connect("mt-pub")
    plan = [(0, 10)] * 5 + [(1, 20)] * 3 + [(2, 30)] * 2
    for i, (q, size) in enumerate(plan):
        pub.publish("mt/x", b"p" * size, qos=q, pid=i + 1)
    pub.publish("mt/keep", b"r" * 7, qos=0, retain=True)
    got = []
    while len(got) < len(plan) + 1:
        t, fl, body = sub.read_packet(5)
        if t == PUBREL:
            sub.send(ack_packet(PUBCOMP, int.from_bytes(body[:2], "big")))
            continue
        check(t == PUBLISH, "packet type %d to the subscriber" % t)
        m = parse_publish(fl, body)
        got.append(m)
        if m["qos"] == 1:
            sub.send(ack_packet(PUBACK, m["pid"]))
        elif m["qos"] == 2:
            sub.send(ack_packet(PUBREC, m["pid"]))
    # A CONNECT with protocol level 9: CONNACK 1 and the socket closes.
    bad = RawClient(b.port)
    body = b"\x00\x04MQTT\x09\x02\x00\x3c\x00\x02bx"
    bad.send(packet(0x10, body))
    t, _, cb = bad.read_packet(5)
    check(t == CONNACK and cb[1] == 1, "CONNACK 1 for level 9")
    bad.close()

    def settled():
        # The gauges from the walk of the sessions are up to 1 s old.
        f = _metrics(hp)
        return _value(f, "cairn_messages_sent_total", qos=2) >= 2 and \
            _value(f, "cairn_connections_refused_total", reason="protocol_version") == 1 and \
            _value(f, "cairn_connections") == 2 and \
            _value(f, "cairn_retained_messages") == 1 and \
            _value(f, "cairn_subscriptions") == 2 and \
            _value(f, "cairn_sessions_connected") == 2
    check(wait_until(settled, 5), "counters did not settle")
    f = _metrics(hp)
    want_in = {0: 5 * 10 + 7, 1: 3 * 20, 2: 2 * 30}
    for q, n in ((0, 6), (1, 3), (2, 2)):
        check(_value(f, "cairn_messages_received_total", qos=q) == n,
              "received qos %d = %s, want %d" % (q, _value(f, "cairn_messages_received_total",
                                                           qos=q), n))
        check(_value(f, "cairn_messages_sent_total", qos=q) == n,
              "sent qos %d = %s, want %d" % (q, _value(f, "cairn_messages_sent_total", qos=q), n))
        check(_value(f, "cairn_payload_received_bytes_total", qos=q) == want_in[q],
              "payload in qos %d" % q)
        check(_value(f, "cairn_payload_sent_bytes_total", qos=q) == want_in[q],
              "payload out qos %d" % q)
    check(_value(f, "cairn_retained_messages") == 1, "retained 1")
    check(_value(f, "cairn_subscriptions") == 2, "2 subscriptions")
    check(_value(f, "cairn_sessions_connected") == 2, "2 connected")
    check(_value(f, "cairn_sessions_offline") == 1, "1 offline")
    check(_value(f, "cairn_connections") == 2, "2 connections open")
    # Broker.start's probe is one more connection.
    accepted = _value(f, "cairn_connections_accepted_total") - \
        _value(f0, "cairn_connections_accepted_total")
    check(accepted == 4, "4 accepted since the first scrape, not %s" % accepted)
    check(_value(f, "cairn_clients_connected_total") == 3, "3 CONNECTs accepted")
    # mt-offline holds the 5 QoS 1/2 messages (QoS 0 is not queued offline).
    check(_value(f, "cairn_session_queued_messages", client_id="mt-offline") == 5,
          "largest queue: mt-offline with 5")
    # 3 QoS 1 of 20 bytes and 2 QoS 2 of 30 bytes, all waiting for it.
    check(_value(f, "cairn_session_queued_bytes", client_id="mt-offline") == 3 * 20 + 2 * 30,
          "largest queue's bytes")
    check(_value(f, "cairn_received_bytes_total") > 0 and
          _value(f, "cairn_sent_bytes_total") > 0, "wire bytes counted")
    commits = _value(f, "cairn_store_commits_total")
    check(commits >= 1, "the store committed")
    lat_count = _value(f, "cairn_store_commit_duration_seconds_count")
    check(lat_count == commits + _value(f, "cairn_store_commits_failed_total"),
          "one latency observation per commit")
    check(_value(f, "cairn_store_commit_batch_writes_sum") >= 5, "batch sizes summed")
    check(_value(f, "cairn_store_size_bytes") > 0, "the sqlite file's size")
    for c in (sub, pub):
        c.close()


@_tag()
def test_http_health_and_readiness(ctx):
    """/healthz answers 200 while the process serves; /readyz 200 while the
    store commits and every listener is open, 503 while commits to a dead
    redis-server fail, 200 again once it is back. Unknown paths 404."""
    require_cairn("the HTTP listener")
    if not shutil.which("redis-server"):
        raise Skip("redis-server is not installed")
    rs = ctx.redis()
    hp = free_port()
    b = ctx.durable_broker("redis", redis_port=rs.port, redis_connect_timeout=1000,
                           http_listener="%d" % hp, sys_interval=0)
    check(_get(hp, "/healthz")[0] == 200, "healthz 200")
    check(_get(hp, "/readyz")[0] == 200, "readyz 200 with the store up")
    check(_get(hp, "/nothing-here")[0] == 404, "unknown path 404")
    pub = RawClient(b.port)
    pub.connect("rz-pub", clean=False)
    rs.kill()
    pids = iter(range(1, 1000))

    def not_ready():
        # A retained message is a store write: each needs a commit.
        pub.send(publish_packet("rz/t", b"x", qos=1, pid=next(pids), retain=True))
        return _get(hp, "/readyz")[0] == 503
    check(wait_until(not_ready, 10, step=0.2),
          "readyz did not turn 503 with redis-server dead; log:\n" + b.log_tail())
    check(_get(hp, "/healthz")[0] == 200, "healthz still 200: the process serves")
    f = _metrics(hp)
    check(_value(f, "cairn_store_up", backend="redis") == 0, "cairn_store_up 0")
    check(_value(f, "cairn_store_commits_failed_total") >= 1, "failed commits counted")
    rs.start()
    check(wait_until(lambda: _get(hp, "/readyz")[0] == 200, 20),
          "readyz not back to 200 after redis-server restarted; log:\n" + b.log_tail())
    f = _metrics(hp)
    check(_value(f, "cairn_store_commits_retried_total") >= 1, "retries counted")
    pub.close()


def _sys_reader(port, client_id, topics, filt="$SYS/#", username=None, password=None):
    c = RawClient(port)
    c.connect(client_id, username=username, password=password)
    c.subscribe(1, [(filt, 0)])
    return c


def _collect_sys(c, until, timeout=5):
    """Read $SYS PUBLISHes into a dict until until(dict) or timeout."""
    seen = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end and not until(seen):
        try:
            m = c.read_publish(max(0.05, end - time.monotonic()))
        except Exception:
            break
        seen[m["topic"]] = m
    return seen


@_tag()
def test_sys_topics(ctx):
    """A client subscribed to $SYS/# gets Mosquitto's topics at once,
    retained (version, uptime, clients, messages, load, retained count,
    subscriptions) and cairn's store health; counts follow the traffic on
    the next interval; nothing of $SYS goes to the store."""
    require_cairn("$SYS")
    b = ctx.durable_broker("sqlite", sys_interval=1)
    c = _sys_reader(b.port, "sys-reader", None)
    want = ["$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
            "$SYS/broker/clients/total", "$SYS/broker/messages/received",
            "$SYS/broker/messages/sent", "$SYS/broker/bytes/received",
            "$SYS/broker/load/messages/received/1min", "$SYS/broker/retained messages/count",
            "$SYS/broker/subscriptions/count", "$SYS/broker/store/up",
            "$SYS/broker/store/commits"]
    seen = _collect_sys(c, lambda s: all(t in s for t in want))
    missing = [t for t in want if t not in seen]
    check(not missing, "missing $SYS topics %r" % missing)
    check(seen["$SYS/broker/version"]["payload"].startswith(b"cairn version "), "version")
    check(seen["$SYS/broker/version"]["retain"], "sent as retained on subscribe")
    check(seen["$SYS/broker/store/up"]["payload"] == b"1", "store up")
    pub = RawClient(b.port)
    pub.connect("sys-pub")
    for i in range(3):
        pub.publish("sys/t", b"m", qos=1, pid=i + 1)
    seen = _collect_sys(c, lambda s: s.get("$SYS/broker/messages/received", {}).get(
        "payload") == b"3", timeout=4)
    check(seen.get("$SYS/broker/messages/received", {}).get("payload") == b"3",
          "messages/received 3 on a later interval: %r" %
          seen.get("$SYS/broker/messages/received"))
    rows = sqlite_query(os.path.join(b.db_dir, "cairn.db"),
                        "SELECT count(*) FROM retained WHERE topic LIKE '$SYS%'")
    check(rows == [["0"]], "$SYS retained messages in the store: %r" % rows)
    c.close()
    pub.close()


@_tag()
def test_sys_topics_follow_the_acl(ctx):
    """$SYS goes through the ACL's read check: a user allowed only
    $SYS/broker/clients/# gets those and nothing else of $SYS/#."""
    require_cairn("$SYS")
    acl = os.path.join(ctx.workdir, "acl")
    with open(acl, "w") as f:
        f.write("user watcher\ntopic read $SYS/broker/clients/#\n")
    pw = os.path.join(ctx.workdir, "passwd")
    open(pw, "w").close()
    subprocess.run(["mosquitto_passwd", "-b", pw, "watcher", "pw"], check=True, timeout=10)
    b = ctx.broker(sys_interval=1, acl_file=acl, password_file=pw, allow_anonymous="false")
    c = _sys_reader(b.port, "sys-acl", None, username="watcher", password="pw")
    seen = _collect_sys(c, lambda s: False, timeout=2.5)
    check("$SYS/broker/clients/connected" in seen, "clients/connected allowed: %r" %
          sorted(seen))
    other = [t for t in seen if not t.startswith("$SYS/broker/clients/")]
    check(not other, "topics the ACL does not allow: %r" % other)
    c.close()


def _token(ctx, text="s3cret-token-0123456789"):
    path = os.path.join(ctx.workdir, "token")
    with open(path, "w") as f:
        f.write(text + "\n")
    return path, text


@_tag()
def test_admin_api(ctx):
    """The admin API: 404 while off; with http_admin and a token file, 401
    without or with a wrong token; sessions listed in id order and paged;
    one session with its subscriptions, queue and window; a 5.0 client
    disconnected with DISCONNECT 0x98 (its will published), a 3.1.1 one
    closed; an offline session deleted (gone from the store too, session
    present 0 after); a connected one refused 409; a retained message
    cleared in memory and in the store."""
    b0, hp0 = _http_broker(ctx)
    check(_get(hp0, "/api/sessions")[0] == 404, "admin API off by default")
    path, tok = _token(ctx)
    b, hp = _http_broker(ctx, http_admin="true", http_admin_token_file=path)
    check(_get(hp, "/api/sessions")[0] == 401, "no token: 401")
    check(_get(hp, "/api/sessions", token="wrong")[0] == 401, "wrong token: 401")
    check(_get(hp, "/api/sessions", token=tok + "x")[0] == 401, "longer token: 401")
    for i in range(5):
        c = RawClient(b.port)
        c.connect("adm-%d" % i, clean=False)
        c.subscribe(1, [("adm/%d/#" % i, 1)])
        c.disconnect()
    pub = RawClient(b.port)
    pub.connect("adm-pub")
    for i in range(3):
        pub.publish("adm/2/x", b"queued", qos=1, pid=i + 1)
    pub.publish("adm/keep", b"kept", qos=1, pid=10, retain=True)
    page = _json(hp, "/api/sessions?limit=2", token=tok)
    check(page["total"] == 6, "6 sessions: %r" % page)
    check([s["client_id"] for s in page["sessions"]] == ["adm-0", "adm-1"] and
          page["next"] == "adm-1", "page 1: %r" % page)
    page = _json(hp, "/api/sessions?after=%s&limit=2" % page["next"], token=tok)
    check([s["client_id"] for s in page["sessions"]] == ["adm-2", "adm-3"] and
          page["next"] == "adm-3", "page 2: %r" % page)
    page = _json(hp, "/api/sessions?after=adm-3&limit=2", token=tok)
    check([s["client_id"] for s in page["sessions"]] == ["adm-4", "adm-pub"] and
          page["next"] is None, "page 3, the last: %r" % page)
    check(_get(hp, "/api/sessions?offset=1", token=tok)[0] == 400,
          "offset (gone: it costs a sort of every session) is refused, not ignored")
    one = _json(hp, "/api/sessions/adm-2", token=tok)
    check(one["queued"] + one["inflight"] == 3 and not one["connected"],
          "adm-2 holds 3 offline: %r" % one)
    check(one["subscription_list"] == [{"filter": "adm/2/#", "qos": 1}],
          "its subscription: %r" % one["subscription_list"])
    check(one["inflight_window"] == 20, "window 20: %r" % one)
    check(_get(hp, "/api/sessions/nobody", token=tok)[0] == 404, "unknown session 404")

    # Disconnect: 5.0 with reason 0x98 and its will; 3.1.1 closed.
    watcher = RawClient(b.port)
    watcher.connect("adm-watch")
    watcher.subscribe(1, [("adm/will", 0)])
    v5 = RawClient(b.port)
    mqtt5.do_connect(v5, "adm-v5", will=("adm/will", b"gone", 0, False))
    _json(hp, "/api/sessions/adm-v5/disconnect", method="POST", token=tok)
    mqtt5.expect_disconnect(v5, 0x98)
    w = watcher.read_publish(5)
    check(w["payload"] == b"gone", "will published after the admin disconnect")
    v3 = RawClient(b.port)
    v3.connect("adm-v3")
    _json(hp, "/api/sessions/adm-v3/disconnect", method="POST", token=tok)
    check(v3.expect_closed(3), "3.1.1 client closed")
    # A connected session cannot be deleted; an offline one can.
    st, _, _ = _get(hp, "/api/sessions/adm-pub", method="DELETE", token=tok)
    check(st == 409, "deleting a connected session: %d" % st)
    _json(hp, "/api/sessions/adm-2", method="DELETE", token=tok)
    check(_get(hp, "/api/sessions/adm-2", token=tok)[0] == 404, "adm-2 gone")
    db = os.path.join(b.db_dir, "cairn.db")
    check(wait_until(lambda: sqlite_query(
        db, "SELECT count(*) FROM sessions WHERE client_id='adm-2'") == [["0"]], 3),
        "adm-2 still in the store")
    again = RawClient(b.port)
    sp, _ = again.connect("adm-2", clean=False)
    check(sp == 0, "session present 0 after the delete")
    again.close()
    # Retained.
    _json(hp, "/api/retained/adm%2Fkeep", method="DELETE", token=tok)
    check(_get(hp, "/api/retained/adm%2Fkeep", method="DELETE", token=tok)[0] == 404,
          "cleared once")
    check(wait_until(lambda: sqlite_query(db, "SELECT count(*) FROM retained") == [["0"]], 3),
          "retained row left in the store")
    fresh = RawClient(b.port)
    fresh.connect("adm-fresh")
    fresh.subscribe(1, [("adm/keep", 0)])
    fresh.expect_silence(0.5)
    for c in (watcher, pub, fresh):
        c.close()


def _raw_http(port, request):
    """Send request bytes as they are; returns the status code."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(request)
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else None


@_tag()
def test_admin_api_guards(ctx):
    """Without a token (loopback only), the admin API refuses a request a
    web page could make: one with an Origin, or under a Host that is not
    the loopback's (DNS rebinding). With a token, the scheme name is not
    case-sensitive, only the token file's first line is the token, and $
    topics cannot be cleared. Deleting an offline 5.0 session publishes its
    delayed will."""
    b, hp = _http_broker(ctx, http_admin="true")
    c = RawClient(b.port)
    c.connect("grd-1", clean=False)
    c.disconnect()
    path = "/api/sessions"
    ok = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (
        path.encode(), hp)
    check(_raw_http(hp, ok) == 200, "loopback Host without a token: 200")
    origin = b"POST /api/sessions/grd-1/disconnect HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" \
        b"Origin: http://attacker.example\r\nContent-Type: text/plain\r\n" \
        b"Content-Length: 0\r\nConnection: close\r\n\r\n" % hp
    check(_raw_http(hp, origin) == 401, "a request with an Origin is refused")
    rebound = b"GET /api/sessions HTTP/1.1\r\nHost: attacker.example:%d\r\n" \
        b"Connection: close\r\n\r\n" % hp
    check(_raw_http(hp, rebound) == 401, "a foreign Host is refused")

    tpath, tok = _token(ctx)
    with open(tpath, "a") as f:
        f.write("# a comment on the second line\n")
    b2, hp2 = _http_broker(ctx, http_admin="true", http_admin_token_file=tpath)
    lower = b"GET /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: bearer %s\r\n" \
        b"Connection: close\r\n\r\n" % tok.encode()
    check(_raw_http(hp2, lower) == 200, "the token is the first line; 'bearer' is accepted")
    st, _, _ = _get(hp2, "/api/retained/%24SYS%2Fbroker%2Fversion", method="DELETE", token=tok)
    check(st == 403, "clearing a $SYS topic: %d, want 403" % st)

    watcher = RawClient(b2.port)
    watcher.connect("grd-watch")
    watcher.subscribe(1, [("grd/will", 0)])
    v5 = RawClient(b2.port)
    mqtt5.do_connect(v5, "grd-v5", clean=False, will=("grd/will", b"ended", 0, False),
                     properties=mqtt5.props((mqtt5.SESSION_EXPIRY, 300)),
                     will_properties=mqtt5.props((mqtt5.WILL_DELAY, 60)))
    v5.close()  # no DISCONNECT: the will waits for its delay
    check(watcher.expect_silence(0.5), "the will went out before its delay")
    _json(hp2, "/api/sessions/grd-v5", method="DELETE", token=tok)
    w = watcher.read_publish(5)
    check(w["payload"] == b"ended", "deleting the session published its delayed will")
    for x in (watcher,):
        x.close()


def _basic(user, password):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def _get_auth(port, path, authorization, method="GET", origin=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method)
    req.add_header("Authorization", authorization)
    if origin:
        req.add_header("Origin", origin)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@_tag()
def test_admin_api_basic_auth(ctx):
    """An MQTT user of the password file may use the admin API with HTTP
    Basic credentials when the ACL lets it write $CAIRN/admin: allowed for
    such a user (reads and writes), 403 for a user the ACL only lets read
    it, 401 for a wrong password, an unknown user, malformed credentials,
    or a request with an Origin (a browser sends cached Basic credentials
    cross-site); the bearer token keeps working. Without an acl_file
    nobody gets in with Basic credentials (fail closed)."""
    pw = os.path.join(ctx.workdir, "passwd")
    open(pw, "w").close()
    for user, secret in (("boss", "boss-pw"), ("peon", "peon-pw")):
        subprocess.run(["mosquitto_passwd", "-b", pw, user, secret], check=True, timeout=10)
    acl = os.path.join(ctx.workdir, "acl")
    with open(acl, "w") as f:
        f.write("user boss\ntopic write $CAIRN/admin\ntopic readwrite ba/#\n"
                "user peon\ntopic read $CAIRN/admin\ntopic readwrite #\n")
    tpath, tok = _token(ctx)
    b, hp = _http_broker(ctx, http_admin="true", http_admin_token_file=tpath,
                         password_file=pw, acl_file=acl)
    c = RawClient(b.port)
    c.connect("ba-1", clean=False, username="boss", password="boss-pw")
    c.disconnect()
    st, body = _get_auth(hp, "/api/sessions", _basic("boss", "boss-pw"))
    check(st == 200 and json.loads(body)["total"] == 1, "boss: %d %r" % (st, body[:200]))
    st, _ = _get_auth(hp, "/api/sessions/ba-1", _basic("boss", "boss-pw"), method="DELETE")
    check(st == 200, "boss deletes a session: %d" % st)
    for who, auth, want in (("peon", _basic("peon", "peon-pw"), 403),
                            ("a wrong password", _basic("boss", "peon-pw"), 401),
                            ("an unknown user", _basic("nobody", "x"), 401),
                            ("no user", _basic("", "boss-pw"), 401),
                            ("bad base64", "Basic Ym9zczpib3NzLXB3!", 401),
                            ("no colon", "Basic Ym9zcw==", 401)):
        st, body = _get_auth(hp, "/api/sessions", auth)
        check(st == want, "%s: %d, want %d: %r" % (who, st, want, body[:200]))
    st, _ = _get_auth(hp, "/api/sessions", _basic("boss", "boss-pw"),
                      origin="http://attacker.example")
    check(st == 401, "Basic credentials with an Origin: %d" % st)
    check(_get(hp, "/api/sessions", token=tok)[0] == 200, "the bearer token still works")
    check("login of 'boss' refused" in b.log_text() and "'peon' refused" in b.log_text(),
          "refusals not logged")

    b2, hp2 = _http_broker(ctx, http_admin="true", http_admin_token_file=tpath,
                           password_file=pw)
    st, _ = _get_auth(hp2, "/api/sessions", _basic("boss", "boss-pw"))
    check(st == 401, "Basic without an acl_file: %d, want 401" % st)


@_tag()
def test_admin_api_refused_on_open_address_without_token(ctx):
    """http_admin true on a non-loopback address without a token file is a
    config error naming the file, line and key; the broker does not start."""
    require_cairn("the admin API")
    b = ctx.broker(start=False, http_listener="%d 0.0.0.0" % free_port(), http_admin="true")
    try:
        b.start(timeout=3)
    except TestFailure:
        pass
    else:
        raise TestFailure("the broker started with an open admin API")
    check(b.proc.returncode not in (0, None), "exit status %r" % b.proc.returncode)
    b.proc = None  # it exited, as it should
    text = b.log_text()
    check(re.search(r"%s:\d+: http_admin: " % re.escape(b.conf_path), text),
          "error names file:line: key: %r" % text[-400:])


def _cpu_ticks(pid):
    """User + system CPU of a process, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _closed_at_once(s, timeout=2):
    """True if the peer closes s (EOF or reset) within timeout, having sent
    nothing."""
    s.settimeout(timeout)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def _still_open(s, timeout=0.3):
    s.settimeout(timeout)
    try:
        s.recv(4096)
        return False
    except socket.timeout:
        return True
    except OSError:
        return False


@_tag()
def test_http_connection_cap(ctx):
    """http_max_connections 4: four idle TCP connections hold the listener;
    each one beyond is closed by the broker at once, before a byte of it
    is read (a request sent with it gets no answer), and counted in
    cairn_http_connections_refused_total. The broker stays idle (CPU)
    meanwhile. As soon as one idle connection closes, /healthz on a fresh
    connection works. A SIGHUP that raises the cap lets that many more in."""
    cap = 4
    b, hp = _http_broker(ctx, http_max_connections=cap)
    idle = [socket.create_connection(("127.0.0.1", hp), timeout=5) for _ in range(cap)]
    ticks0 = _cpu_ticks(b.proc.pid)
    t0 = time.monotonic()
    extra = []
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", hp), timeout=5)
        if i == 0:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        extra.append(s)
    for i, s in enumerate(extra):
        check(_closed_at_once(s), "connection %d beyond the cap not closed at once" % i)
        s.close()
    for i, s in enumerate(idle):
        check(_still_open(s), "idle connection %d within the cap was closed" % i)
    time.sleep(max(0, 2 - (time.monotonic() - t0)))
    ticks = _cpu_ticks(b.proc.pid) - ticks0
    check(ticks <= 20, "broker used %d CPU ticks in 2 s with its HTTP slots full" % ticks)
    check("http_max_connections (4) are open" in b.log_text(), "refusal not logged")
    check(b.log_text().count("HTTP connection refused") <= 3,
          "refusals logged more than once a second:\n" + b.log_tail())

    idle.pop(0).close()
    failed = [0]

    def healthz():
        try:
            return _get(hp, "/healthz", timeout=2)[0] == 200
        except OSError:
            failed[0] += 1
            return False
    check(wait_until(healthz, 3), "/healthz not served after an idle connection closed")
    f = _metrics(hp)
    check(_value(f, "cairn_http_connections_refused_total") == len(extra) + failed[0],
          "refused %s, want %d" % (_value(f, "cairn_http_connections_refused_total"),
                                   len(extra) + failed[0]))
    check(_value(f, "cairn_http_connections") == cap,
          "open %s: the 3 idle ones and this scrape" % _value(f, "cairn_http_connections"))

    # SIGHUP: with 3 idle connections open, a cap of 6 lets 3 more in, not 4.
    b.options["http_max_connections"] = 6
    b._write_conf()
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "reloaded http_max_connections: 6" in b.log_text(), 3),
          "reload not logged:\n" + b.log_tail())
    more = [socket.create_connection(("127.0.0.1", hp), timeout=5) for _ in range(4)]
    check(all(_still_open(s) for s in more[:3]), "the raised cap refused")
    check(_closed_at_once(more[3]), "the raised cap let a 7th connection in")
    for s in idle + more:
        s.close()


@_tag()
def test_http_accept_rests_out_of_descriptors(ctx):
    """Started with 64 descriptors and no HTTP cap, 80 idle HTTP
    connections exhaust them: the listener rests a second after each
    failed accept instead of retrying at once (the broker stays idle, one
    log line a second), and serves /healthz again once connections close."""
    require_cairn("the HTTP listener")
    import resource
    hp, mp = free_port(), free_port()
    conf = os.path.join(ctx.workdir, "emfile.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\nhttp_listener %d\n"
                "http_max_connections 0\nsys_interval 0\n" % (mp, hp))

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    proc, log = ctx.spawn([broker_command(), "-c", conf], "emfile.log", preexec_fn=limit)

    def healthz():
        try:
            return _get(hp, "/healthz", timeout=2)[0] == 200
        except OSError:
            return False
    check(wait_until(healthz, 5, step=0.1), "the broker did not start")
    conns = [socket.create_connection(("127.0.0.1", hp), timeout=5) for _ in range(80)]
    time.sleep(0.5)
    ticks0 = _cpu_ticks(proc.pid)
    lines0 = open(log).read().count("HTTP listener: accept failed")
    time.sleep(2)
    ticks = _cpu_ticks(proc.pid) - ticks0
    lines = open(log).read().count("HTTP listener: accept failed") - lines0
    check(lines >= 1, "no accept failure logged: the descriptors were not exhausted")
    check(ticks <= 20, "%d CPU ticks in 2 s out of descriptors" % ticks)
    check(lines <= 3, "%d accept failures logged in 2 s" % lines)
    for c in conns:
        c.close()
    check(wait_until(healthz, 5, step=0.2), "/healthz not served after the connections closed")
    proc.stop()
    check(proc.returncode == 0, "exit status %r" % proc.returncode)


@_tag()
def test_http_scrapes_share_a_walk(ctx):
    """/metrics and /api/status read the sessions from a snapshot walked at
    most once a second (cairn_scrape_walks_total), however many requests
    come; a new session shows in the gauges within about a second."""
    b, hp = _http_broker(ctx)
    w0 = _value(_metrics(hp), "cairn_scrape_walks_total")
    t0 = time.monotonic()
    for i in range(40):
        if i % 2:
            _metrics(hp)
        else:
            _json(hp, "/api/status")
    f = _metrics(hp)
    elapsed = time.monotonic() - t0
    walks = _value(f, "cairn_scrape_walks_total") - w0
    check(walks <= math.floor(elapsed) + 1,
          "%d walks for 41 requests in %.2f s" % (walks, elapsed))
    c = RawClient(b.port)
    c.connect("walk-1", clean=False)
    check(wait_until(lambda: _value(_metrics(hp), "cairn_sessions_connected") == 1, 3),
          "the new session not in the gauges")
    check(wait_until(lambda: _json(hp, "/api/status")["sessions_connected"] == 1, 3),
          "the new session not in /api/status")
    c.close()


@_tag()
def test_admin_api_session_cursor(ctx):
    """The session list pages with a cursor: walking it with after=next and
    limit=3 gives every session once, in id order (ids with '/', '+',
    spaces and non-ASCII, percent-encoded in the query), and the last page
    has next null; limit is capped at 1000."""
    b, hp = _http_broker(ctx, http_admin="true")
    ids = ["cur-%02d" % i for i in range(10)] + ["cur/a+b c", "cur-\u00e9t\u00e9", "Cur-upper"]
    for cid in ids:
        c = RawClient(b.port)
        c.connect(cid, clean=False)
        c.disconnect()
    seen, after, pages = [], None, 0
    while True:
        q = "/api/sessions?limit=3" + ("&after=" + urllib.parse.quote(after, safe="")
                                         if after is not None else "")
        page = _json(hp, q)
        pages += 1
        check(len(page["sessions"]) <= 3, "page longer than limit: %r" % page)
        check(page["total"] == len(ids), "total %r" % page["total"])
        seen += [s["client_id"] for s in page["sessions"]]
        after = page["next"]
        if after is None:
            break
        check(after == seen[-1], "next is the page's last id: %r" % page)
        check(pages < 20, "the cursor does not end")
    want = sorted(ids, key=lambda x: x.encode())
    check(seen == want, "walked %r, want %r" % (seen, want))
    check(pages == 5, "13 sessions in pages of 3: %d pages" % pages)
    check(_json(hp, "/api/sessions?limit=5000")["limit"] == 1000, "limit capped at 1000")


@_tag()
def test_sys_interval_reload(ctx):
    """SIGHUP reloads sys_interval: from 1 to 0 the $SYS updates stop
    ($SYS/broker/uptime, republished every interval, stops coming); from
    0 to 1 they start again at once, and the first load average is the
    rate since the start, not the count since the start over one second."""
    require_cairn("$SYS")
    b = ctx.broker(sys_interval=0)
    started = time.monotonic()  # the broker's uptime is at least the time since
    pub = RawClient(b.port)
    pub.connect("sys-hup-pub")
    for i in range(6):
        pub.publish("hup/t", b"m", qos=0)
    b.options["sys_interval"] = 1
    b._write_conf()
    time.sleep(2)
    uptime = time.monotonic() - started  # at most the broker's at its first tick
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "reloaded sys_interval: 1" in b.log_text(), 3),
          "reload not logged:\n" + b.log_tail())
    load = _sys_reader(b.port, "sys-hup-load", None,
                       filt="$SYS/broker/load/messages/received/1min")
    first = float(load.read_publish(3)["payload"])
    bound = 6 * 60 / uptime * 1.01  # 360 / 1 s before
    check(first <= bound, "first 1 min load %.2f, above the rate since the start %.2f" %
          (first, bound))
    load.close()
    pub.close()
    c = _sys_reader(b.port, "sys-hup", None, filt="$SYS/broker/uptime")
    c.read_publish(3)  # the retained value
    check(c.read_publish(3)["topic"] == "$SYS/broker/uptime", "updates every second")
    b.options["sys_interval"] = 0
    b._write_conf()
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "reloaded sys_interval: 0" in b.log_text(), 3),
          "reload not logged:\n" + b.log_tail())
    try:  # an update sent before the reload may still be on its way
        c.read_publish(0.3)
    except socket.timeout:
        pass
    check(c.expect_silence(2.5), "$SYS updates went on with sys_interval 0")
    b.options["sys_interval"] = 1
    b._write_conf()
    os.kill(b.proc.pid, signal.SIGHUP)
    check(c.read_publish(3)["topic"] == "$SYS/broker/uptime", "no update after sys_interval 1")
    check(c.read_publish(3)["topic"] == "$SYS/broker/uptime", "not every second again")
    c.close()


@_tag()
def test_status_page_in_chromium(ctx):
    """Headless Chromium renders / against a broker with traffic: the
    numbers it shows are the broker's, the chart and largest queues are
    drawn; the screenshot is kept as test-artifacts/status-page.png in the
    directory the tests run from (the build directory)."""
    require_cairn("the status page")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise Skip("chromium is not installed")
    b, hp = _http_broker(ctx)
    off = RawClient(b.port)
    off.connect("page-offline", clean=False)
    off.subscribe(1, [("page/#", 1)])
    off.disconnect()
    pub = RawClient(b.port)
    pub.connect("page-pub")
    for i in range(7):
        pub.publish("page/t", b"x" * 10, qos=1, pid=i + 1)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--user-data-dir=" + os.path.join(ctx.workdir, "chromium-profile"),
            "--virtual-time-budget=4000"]
    url = "http://127.0.0.1:%d/" % hp
    r = subprocess.run(args + ["--dump-dom", url], capture_output=True, timeout=60)
    dom = r.stdout.decode("utf-8", "replace")
    check('data-loaded="1"' in dom, "the page did not load its status: %r" % dom[-600:])

    def shown(i):
        m = re.search(r'id="%s">([^<]*)<' % i, dom)
        return m.group(1) if m else None
    check(shown("connections") == "1", "connections shown %r" % shown("connections"))
    check(shown("messages_received") == "7", "received shown %r" % shown("messages_received"))
    check(shown("sessions_offline") == "1", "offline shown %r" % shown("sessions_offline"))
    check(shown("store_up") == "sqlite up", "store shown %r" % shown("store_up"))
    check("<td>page-offline</td><td>7</td>" in dom, "largest queue row missing")
    # Kept after the test: the work directory goes when the test passes.
    art = os.path.join(os.getcwd(), "test-artifacts")
    os.makedirs(art, exist_ok=True)
    shot = os.path.join(art, "status-page.png")
    subprocess.run(args + ["--window-size=900,800", "--screenshot=" + shot, url],
                   capture_output=True, timeout=60)
    check(os.path.getsize(shot) > 5000, "screenshot too small")
    print("status page screenshot: %s" % shot)
    pub.close()
