"""Case 5: the store's disk fills up. The SQLite store (durability fsync)
lives on a small tmpfs that the test mounts and fills; publishers keep
publishing at QoS 1 and reconnecting their persistent sessions. While the
store cannot commit, the broker's RSS and CPU time stay bounded, new
persistent sessions are refused with CONNACK 3, and nothing is lost:
once space is freed commits resume, and every message the broker
acknowledged is delivered after a restart. A second case has publishers
give up during the outage and close their connections: the broker must
let go of them, not hold a descriptor for each until the store recovers.
Both need root (they mount the tmpfs) and are skipped otherwise; each
unmounts what it mounted."""

import os
import shutil
import socket
import subprocess
import threading
import time

from harness import (PUBACK, PUBLISH, DurablePublisher, RawClient, Skip, ack_packet,
                     check, parse_publish, publish_packet, require_cairn, wait_until)
from stresslib import cpu_s, fd_count, rss_kb, uses_asan

# The tmpfs: room for the database and its write-ahead log as this case
# grows them (some hundreds of KiB), small enough to fill in a moment.
TMPFS_SIZE = "16m"
# How long the outage lasts once the broker has noticed it. Short mode:
# 6 s, some twenty retries at the broker's longest retry delay (250 ms).
OUTAGE_S = 30.0
OUTAGE_S_SHORT = 6.0
# Publishers (persistent sessions), each with this many QoS 1 messages in
# flight at most, reconnecting (and resending what is unacknowledged, DUP
# set) every RECONNECT_S.
PUBLISHERS = 2
WINDOW = 32
RECONNECT_S = 1.0
# Each publisher sends at most this many messages a second, so that what
# the store holds stays far below the tmpfs: freeing the filler file must
# be what ends the outage.
PUBLISH_RATE = 100
# The disk is filled once this many messages were acknowledged.
ACKED_BEFORE = 50

# The outage must begin: the broker logs that commits fail within this
# long of the filesystem being full while the publishers write.
NOTICE_MAX_S = 20.0

# While commits fail the broker retries with a growing delay (10 ms up to
# 250 ms) and stops reading the publishers whose messages wait: it must
# not spin. 25% of one CPU on average over the outage leaves room for the
# retries, the reconnects and the refused CONNECTs, and fails a retry loop
# without a delay (100%).
OUTAGE_CPU_MAX = 0.25
# The writes that wait for the store stay staged: a few hundred messages
# and session records here. 16 MiB over the RSS before the outage fails a
# broker that keeps reading (and buffering) what publishers send.
OUTAGE_RSS_GROWTH_MAX_MIB = 16
# From the space being freed to "store recovered": the next retry, at most
# 250 ms later, succeeds. 10 s leaves room for shared cores.
RECOVER_MAX_S = 10.0
# After recovery every message is acknowledged within this long.
DRAIN_MAX_S = 30.0


def _mount(path):
    if os.geteuid() != 0:
        raise Skip("not root: cannot mount a tmpfs for the store")
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % TMPFS_SIZE,
                        "cairn-stress", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip("mount -t tmpfs failed: %s" % (r.stderr.strip() or r.returncode))


def _umount(path):
    r = subprocess.run(["umount", path], capture_output=True, text=True)
    if r.returncode != 0:  # still busy: detach it, it goes once the last user does
        subprocess.run(["umount", "-l", path], capture_output=True)


def _fill(path):
    """Writes a file until the filesystem is full; returns its size."""
    n = 0
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(block)
            except OSError:
                break
        while True:  # the last few pages
            try:
                n += f.write(b"\0" * 512)
            except OSError:
                break
    return n


def _drain(port, client_id, timeout=30.0, quiet=1.5):
    """Resumes a persistent session and acknowledges everything; returns
    the payloads delivered (once each)."""
    c = RawClient(port, timeout=timeout)
    sp, _ = c.connect(client_id, clean=False)
    check(sp == 1, "%s: session not present after the restart" % client_id)
    got = set()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            t, f, body = c.read_packet(quiet)
        except socket.timeout:
            break
        if t == PUBLISH:
            m = parse_publish(f, body)
            got.add(m["payload"])
            if m["qos"] == 1:
                c.send(ack_packet(PUBACK, m["pid"]))
    c.close()
    return got


def case_store_outage_full_tmpfs(ctx, rec, short):
    require_cairn("the store outage behaviour is cairn's")
    mnt = os.path.join(ctx.workdir, "tmpfs")
    _mount(mnt)
    b = None
    pubs = []
    stop = threading.Event()
    threads = []
    try:
        b = ctx.broker(persistence="true", persistence_backend="sqlite",
                       persistence_location=mnt, durability="fsync", max_queued_messages=0,
                       log_type="error\nlog_type warning\nlog_type notice")
        pid = b.proc.pid
        # The subscriber's session holds every message while it is away.
        s = RawClient(b.port)
        s.connect("outage-sub", clean=False)
        s.subscribe(1, [("outage/#", 1)])
        s.send(b"\xe0\x00")
        s.close()
        errors = []
        seq = [0]
        lock = threading.Lock()

        def publisher(p):
            while not stop.is_set():
                try:
                    p.connect()
                    p.resend()
                except Exception as e:
                    errors.append("%s reconnect: %s" % (p.client_id, e))
                    stop.wait(0.2)
                    continue
                t0 = time.monotonic()
                while not stop.is_set() and time.monotonic() - t0 < RECONNECT_S:
                    with lock:
                        k = seq[0]
                        seq[0] += 1
                    p.publish("outage/%s" % p.client_id, b"m-%07d" % k, 1, timeout=0.2)
                    stop.wait(1.0 / PUBLISH_RATE)
                p.close()

        for i in range(PUBLISHERS):
            p = DurablePublisher(b.port, "outage-pub-%d" % i, window=WINDOW)
            p.connect()
            p.close()
            pubs.append(p)
        threads = [threading.Thread(target=publisher, args=(p,), daemon=True) for p in pubs]
        for t in threads:
            t.start()
        check(wait_until(lambda: sum(len(p.acked) for p in pubs) >= ACKED_BEFORE, 10, 0.01),
              "fewer than %d messages acknowledged before the outage" % ACKED_BEFORE)

        filled = _fill(os.path.join(mnt, "filler"))
        t_full = time.monotonic()
        noticed = wait_until(lambda: "store commits failing" in b.log_text(), NOTICE_MAX_S, 0.1)
        check(noticed, "the broker did not notice the full filesystem within %.0f s "
              "(%d bytes filled, %d messages acknowledged)" %
              (NOTICE_MAX_S, filled, sum(len(p.acked) for p in pubs)))
        rec.note("noticed", time.monotonic() - t_full, "s after the disk filled", "%.1f")

        # The outage itself.
        seconds = OUTAGE_S_SHORT if short else OUTAGE_S
        cpu0, rss0, t0 = cpu_s(pid), rss_kb(pid), time.monotonic()
        acked0 = sum(len(p.acked) for p in pubs)
        rss_max = rss0
        refused = 0
        k = 0
        while time.monotonic() - t0 < seconds:
            c = RawClient(b.port)
            _, rc = c.connect("outage-new-%d" % k, clean=False, expect_rc=None)
            check(rc == 3, "a new persistent session during the outage got CONNACK %d" % rc)
            check(c.expect_closed(3), "a refused connection was left open")
            refused += 1
            k += 1
            c = RawClient(b.port)
            c.connect("outage-clean-%d" % k)  # clean sessions keep working
            c.close()
            rss_max = max(rss_max, rss_kb(pid))
            time.sleep(0.25)
        wall = time.monotonic() - t0
        cpu = (cpu_s(pid) - cpu0) / wall
        acked_during = sum(len(p.acked) for p in pubs) - acked0
        rec.note("outage", wall, "s", "%.1f")
        rec.limit("CPU", cpu * 100, OUTAGE_CPU_MAX * 100, "% of a CPU", "%.1f")
        growth = (rss_max - rss0) / 1024.0
        if uses_asan(pid):
            rec.note("RSS growth", "%.1f MiB (not bounded under ASan)" % growth)
        else:
            rec.limit("RSS growth", growth, OUTAGE_RSS_GROWTH_MAX_MIB, "MiB")
        rec.note("refused with CONNACK 3", refused)
        rec.note("acknowledged during the outage", acked_during)

        # Free the space: commits resume.
        os.unlink(os.path.join(mnt, "filler"))
        t_free = time.monotonic()
        log_len = len(b.log_text())
        recovered = wait_until(lambda: "store recovered" in b.log_text()[log_len:] or
                               "store recovered" in b.log_text(), RECOVER_MAX_S + 5, 0.05)
        check(recovered, "no 'store recovered' within %.0f s of freeing space" %
              (RECOVER_MAX_S + 5))
        rec.limit("recovered", time.monotonic() - t_free, RECOVER_MAX_S, "s", "%.2f")
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(10)
        for p in pubs:  # what is still unacknowledged, once more, and done
            p.connect()
            p.resend()
            check(p.wait_idle(DRAIN_MAX_S), "%s: %d exchanges open %.0f s after recovery" %
                  (p.client_id, len(p.inflight), DRAIN_MAX_S))
            p.close()
        c = RawClient(b.port)
        _, rc = c.connect("outage-new-after", clean=False, expect_rc=None)
        check(rc == 0, "a new persistent session after recovery got CONNACK %d" % rc)
        c.close()
        check(not errors, "publishers: %s" % "; ".join(errors[:3]))

        # Everything acknowledged is there after a restart.
        acked = set()
        for p in pubs:
            acked |= set(p.acked)
        b.restart(timeout=15)
        got = _drain(b.port, "outage-sub")
        missing = acked - got
        rec.note("acknowledged", len(acked))
        rec.note("delivered after the restart", len(got))
        check(not missing, "%d acknowledged messages missing after the restart, e.g. %r" %
              (len(missing), sorted(missing)[:5]))
        b.stop()
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for p in pubs:
            p.close()
        if b is not None and b.alive():
            b.stop(check_exit=False)
        _umount(mnt)
        shutil.rmtree(mnt, ignore_errors=True)


case_store_outage_full_tmpfs.timeout = 240
case_store_outage_full_tmpfs.mosquitto = False


# ------------------------------------------ publishers that give up

# Publishers that give up during the outage: each connects (clean
# session, keep-alive 60 s, what paho and mosquitto_pub ask for by
# default), publishes one QoS 1 message on a topic a persistent session
# subscribes to (so the message waits for the store and the broker stops
# reading the connection), waits GIVE_UP_WAIT_S for a PUBACK that cannot
# come, and closes its connection. A fleet of devices retrying does this
# again and again for as long as the outage lasts. Short mode: 200.
GIVE_UPS = 1000
GIVE_UPS_SHORT = 200
GIVE_UP_WAIT_S = 0.5
# They come GIVE_UP_BATCH at a time (each batch waits together).
GIVE_UP_BATCH = 50
# Within this long of the last close, the broker holds at most
# GIVE_UP_FD_GROWTH_MAX descriptors more than before the outage: a peer
# that closed its connection is let go, store outage or not. Descriptors
# are what lets clean sessions keep connecting during an outage
# (cairn.conf(5), "When the store fails"); held until the store recovers
# or the keep-alive runs out (90 s), a fleet retrying every few seconds
# runs the broker out of them. 64 leaves room for connections still
# closing.
GIVE_UP_RELEASE_S = 5.0
GIVE_UP_FD_GROWTH_MAX = 64


def case_store_outage_publishers_that_give_up(ctx, rec, short):
    require_cairn("the store outage behaviour is cairn's")
    n = GIVE_UPS_SHORT if short else GIVE_UPS
    mnt = os.path.join(ctx.workdir, "tmpfs")
    _mount(mnt)
    b = None
    try:
        b = ctx.broker(persistence="true", persistence_backend="sqlite",
                       persistence_location=mnt, durability="fsync", max_queued_messages=0,
                       log_type="error\nlog_type warning\nlog_type notice")
        pid = b.proc.pid
        s = RawClient(b.port)
        s.connect("giveup-sub", clean=False)
        s.subscribe(1, [("giveup/#", 1)])
        s.send(b"\xe0\x00")
        s.close()
        time.sleep(0.3)
        fd0, rss0 = fd_count(pid), rss_kb(pid)

        _fill(os.path.join(mnt, "filler"))
        c = RawClient(b.port)  # a message that needs the store makes it notice
        c.connect("giveup-first")
        c.send(publish_packet("giveup/first", b"first", qos=1, pid=1))
        check(wait_until(lambda: "store commits failing" in b.log_text(), NOTICE_MAX_S, 0.1),
              "the broker did not notice the full filesystem within %.0f s" % NOTICE_MAX_S)
        c.close()

        t0 = time.monotonic()
        acked = 0
        for first in range(0, n, GIVE_UP_BATCH):
            batch = []
            for i in range(first, min(n, first + GIVE_UP_BATCH)):
                c = RawClient(b.port)
                c.connect("giveup-%d" % i, keepalive=60)
                c.send(publish_packet("giveup/%d" % i, b"m-%d" % i, qos=1, pid=1))
                batch.append(c)
            time.sleep(GIVE_UP_WAIT_S)
            for c in batch:
                c.sock.setblocking(False)
                try:
                    if c.sock.recv(1):
                        acked += 1
                except OSError:
                    pass
                c.close()
        rec.note("gave up", "%d in %.1f s" % (n, time.monotonic() - t0))
        check(acked == 0, "%d publishers got an answer during the outage" % acked)
        wait_until(lambda: fd_count(pid) - fd0 <= GIVE_UP_FD_GROWTH_MAX, GIVE_UP_RELEASE_S, 0.1)
        fd1 = fd_count(pid)
        rec.limit("descriptors held %.0f s after" % GIVE_UP_RELEASE_S, fd1 - fd0,
                  GIVE_UP_FD_GROWTH_MAX, "over the %d before" % fd0, "%d")
        rec.note("RSS growth", (rss_kb(pid) - rss0) / 1024.0, "MiB")
        c = RawClient(b.port)
        c.connect("giveup-clean")  # clean sessions still connect
        c.close()

        os.unlink(os.path.join(mnt, "filler"))
        check(wait_until(lambda: "store recovered" in b.log_text(), RECOVER_MAX_S, 0.05),
              "no 'store recovered' within %.0f s of freeing space" % RECOVER_MAX_S)
        back = wait_until(lambda: fd_count(pid) <= fd0, 10, 0.1)
        rec.note("descriptors after recovery", "%d" % fd_count(pid))
        check(back, "descriptors after recovery: %d, before the outage: %d" %
              (fd_count(pid), fd0))
        b.stop()
    finally:
        if b is not None and b.alive():
            b.stop(check_exit=False)
        _umount(mnt)
        shutil.rmtree(mnt, ignore_errors=True)


case_store_outage_publishers_that_give_up.timeout = 180
case_store_outage_publishers_that_give_up.mosquitto = False
