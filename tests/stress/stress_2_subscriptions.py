"""Case 2: one client with 50,000 subscriptions, made in several SUBSCRIBE
packets, dropped with UNSUBSCRIBE, made again in one big packet, kept
across a restart by the SQLite store, and dropped at once by a
clean_session=1 CONNECT (gone from the store too). An unrelated client's round trip
stays prompt while the broker works through them, the broker's RSS stays
bounded, and the restart that restores them is bounded in time."""

import re
import struct
import time

from harness import (PUBLISH, SUBACK, UNSUBACK, RawClient, check, is_mosquitto, mstr, packet,
                     publish_packet)
from stresslib import QUIET_LOG, Probe, rss_kb, uses_asan

# The same count in both modes: 50,000 is what issue 11 asks for, and the
# whole case takes a few seconds.
SUBSCRIPTIONS = 50000
# "Several packets": 50 SUBSCRIBEs of 1,000 filters each, sent back to back.
PER_PACKET = 1000

# A subscription is a node in the topic trie plus an entry in the client's
# own list: some hundreds of bytes. 1 KiB each (49 MiB for 50,000) leaves
# room for allocator slack and SQLite's page cache, and is still well
# below what a per-subscription copy of anything sizable would cost.
RSS_PER_SUBSCRIPTION_MAX_BYTES = 1024

# The unrelated client's slowest PINGREQ -> PINGRESP while the broker
# handles 50,000 filters. One SUBSCRIBE of 50,000 filters is one packet
# the broker handles in one go, so this is the time it spends on the
# whole packet; the broker handles one in about a tenth of a second on
# this machine (and commits its subscription records to the store in one
# batch). 2 s leaves room for shared cores, and fails a broker whose work
# per filter grows with the filters already held (minutes).
PING_RTT_MAX_MS = 2000

# From exec to accepting connections, with 50,000 subscriptions to
# restore from SQLite (the broker logs its restore in some 100 ms on this
# machine). 10 s leaves room for shared cores and a cold page cache.
RESTART_MAX_S = 10.0


def _filters(n):
    return ["stress/many/%d/+" % i for i in range(n)]


def _subscribe_packet(pid, filters, qos=1):
    body = struct.pack("!H", pid) + b"".join(mstr(f) + bytes([qos]) for f in filters)
    return packet(0x82, body)


def _unsubscribe_packet(pid, filters):
    return packet(0xA2, struct.pack("!H", pid) + b"".join(mstr(f) for f in filters))


def _expect_acks(c, kind, pids, timeout=60.0):
    """Reads one SUBACK or UNSUBACK per packet id, in order; returns every
    SUBACK return code."""
    codes = []
    for pid in pids:
        _, body = c.expect(kind, timeout)
        check(struct.unpack("!H", body[:2])[0] == pid, "ack for packet id %d out of order" % pid)
        codes += list(body[2:])
    return codes


def _delivered(port, sub, topic):
    """A PUBLISH to topic from another client reaches sub."""
    p = RawClient(port)
    p.connect("many-pub")
    p.send(publish_packet(topic, b"hit", qos=0))
    t, f, body = sub.read_packet(10)
    p.close()
    return t == PUBLISH


def case_subscriptions_50000(ctx, rec, short):
    b = ctx.broker(persistence="true", persistence_backend="sqlite", log_type=QUIET_LOG)
    pid = b.proc.pid
    n = SUBSCRIPTIONS
    filters = _filters(n)
    asan = uses_asan(pid)

    probe = Probe(b.port, pid, interval=0.02).start()  # phases take ~0.1 s
    time.sleep(0.3)
    rss0 = rss_kb(pid)
    probe.reset()

    c = RawClient(b.port, timeout=60)
    c.connect("many-subs", clean=False)
    # Several packets, sent back to back.
    t0 = time.monotonic()
    pids = list(range(1, n // PER_PACKET + 1))
    c.send(b"".join(_subscribe_packet(p, filters[(p - 1) * PER_PACKET:p * PER_PACKET])
                    for p in pids))
    codes = _expect_acks(c, SUBACK, pids)
    t_sub = time.monotonic() - t0
    check(len(codes) == n and set(codes) == {1},
          "%d SUBACK codes for %d filters, codes %r" % (len(codes), n, sorted(set(codes))))
    rss_subs = max(rss_kb(pid), probe.rss_max)
    rec.note("%d SUBSCRIBEs" % len(pids), t_sub, "s", "%.2f")
    rec.limit("rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")
    per = (rss_subs - rss0) * 1024.0 / n
    if asan:
        rec.note("RSS per subscription", "%.0f bytes (not bounded under ASan)" % per)
    else:
        rec.limit("RSS per subscription", per, RSS_PER_SUBSCRIPTION_MAX_BYTES, "bytes", "%.0f")
    check(_delivered(b.port, c, "stress/many/%d/x" % (n - 1)), "no delivery to the last filter")

    # Unsubscribe them all, in the same several packets.
    probe.reset()
    t0 = time.monotonic()
    upids = [p + 100 for p in pids]
    c.send(b"".join(_unsubscribe_packet(p + 100, filters[(p - 1) * PER_PACKET:p * PER_PACKET])
                    for p in pids))
    _expect_acks(c, UNSUBACK, upids)
    rec.note("UNSUBSCRIBEs", time.monotonic() - t0, "s", "%.2f")
    rec.limit("rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")

    # All of them again, in one packet.
    probe.reset()
    t0 = time.monotonic()
    big = _subscribe_packet(7, filters)
    c.send(big)
    codes = _expect_acks(c, SUBACK, [7])
    t_big = time.monotonic() - t0
    check(len(codes) == n and set(codes) == {1}, "one big SUBSCRIBE: %d codes" % len(codes))
    rec.note("one SUBSCRIBE of %d KiB" % (len(big) // 1024), t_big, "s", "%.2f")
    rec.limit("rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")
    rss_big = max(rss_kb(pid), probe.rss_max)
    per = (rss_big - rss0) * 1024.0 / n
    if not asan:
        rec.limit("RSS per subscription", per, RSS_PER_SUBSCRIPTION_MAX_BYTES, "bytes", "%.0f")
    probe.stop()
    c.close()

    # The restart: SQLite holds the 50,000.
    b.stop()
    t0 = time.monotonic()
    b.start(timeout=RESTART_MAX_S + 20)
    t_start = time.monotonic() - t0
    rec.limit("restart", t_start, RESTART_MAX_S, "s", "%.2f")
    if not is_mosquitto():
        restored = re.findall(r"restored \d+ sessions, (\d+) subscriptions.* in ([0-9.]+) ms",
                              b.log_text())
        check(restored and int(restored[-1][0]) >= n, "restore line: %r" % restored)
        rec.note("restore (log)", float(restored[-1][1]), "ms", "%.0f")
    c = RawClient(b.port, timeout=60)
    sp, _ = c.connect("many-subs", clean=False)
    check(sp == 1, "the session was not restored")
    check(_delivered(b.port, c, "stress/many/0/x"), "no delivery after the restart")
    c.close()

    # A clean_session=1 CONNECT ends the session: its 50,000 subscriptions
    # go at once, from memory and from the store.
    probe = Probe(b.port, b.proc.pid, interval=0.02).start()
    t0 = time.monotonic()
    c = RawClient(b.port, timeout=60)
    sp, _ = c.connect("many-subs")
    rec.note("clean CONNACK", time.monotonic() - t0, "s", "%.2f")
    check(sp == 0, "clean_session=1 got session present")
    rec.limit("rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")
    probe.stop()
    c.send(b"\xe0\x00")
    c.close()
    b.stop()
    b.start(timeout=RESTART_MAX_S + 20)
    if not is_mosquitto():
        restored = re.findall(r"restored \d+ sessions, (\d+) subscriptions", b.log_text())
        check(restored and int(restored[-1]) == 0,
              "subscriptions restored after the session ended: %r" % restored[-1:])
    c = RawClient(b.port)
    sp, _ = c.connect("many-subs", clean=False)
    check(sp == 0, "the ended session is back after a restart")
    c.close()
    b.assert_serves("50,000 subscriptions")


case_subscriptions_50000.timeout = 240
