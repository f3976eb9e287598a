"""Case 6: a large acl_file (issue 11). 6,000 literal first levels with a
read rule and a read pattern under each, and 5,000 deny patterns on the
client id. One SUBSCRIBE of 14,000 filters with `+` before literal levels
(`+/literal/xN`, which no rule grants: every one gets 0x80) must not make
the broker walk the 6,000 siblings for each filter, and a flood of
publishes, each checked at publish and again at delivery, must not pay
for every deny pattern. Measured as the broker's CPU time for each phase
and an unrelated client's round trip."""

import os
import struct
import time

from harness import (PUBLISH, SUBACK, RawClient, Skip, check, is_mosquitto, publish_packet,
                     subscribe_packet)
from stresslib import QUIET_LOG, Probe, cpu_s, uses_asan

SIBLINGS = 6000
DENY_PATTERNS = 5000
FILTERS = 14000
# Publishes in the flood; each is checked twice (write, then read). The
# same in both modes: delivered in some tens of ms, and enough for the
# broker's CPU time (counted in 10 ms ticks) to resolve 0.25 us each.
MESSAGES = 40000

# The broker's CPU time for the one SUBSCRIBE of 14,000 refused filters.
# bench/acl-bench times the ACL alone at about 3 ms for it (before the
# descendant index: 0.8 s against the rules, 4.5 s against the patterns,
# one walk of the 6,000 siblings per filter); decoding the packet and
# writing the SUBACK add some tens of ms. 1 s leaves room for a slow or
# shared machine and still fails a walk of every sibling.
SUBSCRIBE_CPU_MAX_S = 1.0

# The unrelated client's slowest PINGREQ -> PINGRESP meanwhile. The
# SUBSCRIBE is one packet handled in one go, so this is about its time.
PING_RTT_MAX_MS = 1000

# The broker's CPU time per message of the flood (a QoS 0 publish read,
# checked against the ACL, delivered to one subscriber and checked
# again). Some microseconds each on this machine; a check that compared
# the topic with every deny pattern cost 20-40 us, twice per message.
CPU_PER_MESSAGE_MAX_US = 25.0


def _acl(ctx):
    path = os.path.join(ctx.workdir, "large.acl")
    with open(path, "w") as f:
        # Nothing here meets `+/literal/...`.
        f.write("topic readwrite flood/t/+\ntopic readwrite secret7/acl-pub/x\n")
        for i in range(SIBLINGS):
            f.write("topic read dev%d/status/#\npattern read dev%d/%%c/#\n" % (i, i))
        for i in range(DENY_PATTERNS):
            f.write("pattern deny secret%d/%%c/#\n" % i)
    return path


def _drain(c, n, timeout=60.0):
    """Reads PUBLISH packets until n arrived; returns how many did."""
    got = 0
    end = time.monotonic() + timeout
    while got < n and time.monotonic() < end:
        t, _, _ = c.read_packet(timeout)
        if t == PUBLISH:
            got += 1
    return got


def case_acl_large(ctx, rec, short):
    if is_mosquitto():
        # Mosquitto's ACL does not decide subscriptions: nothing to compare.
        raise Skip("cairn's SUBSCRIBE decision only")
    b = ctx.broker(acl_file=_acl(ctx), log_type=QUIET_LOG)
    pid = b.proc.pid
    asan = uses_asan(pid)
    probe = Probe(b.port, pid, interval=0.02).start()
    time.sleep(0.3)
    probe.reset()

    c = RawClient(b.port, timeout=60)
    c.connect("acl-client")
    filters = [("+/literal/x%d" % i, 0) for i in range(FILTERS)]
    cpu0 = cpu_s(pid)
    t0 = time.monotonic()
    c.send(subscribe_packet(1, filters))
    _, body = c.expect(SUBACK, 60)
    took = time.monotonic() - t0
    cpu = cpu_s(pid) - cpu0
    codes = list(body[2:])
    check(struct.unpack("!H", body[:2])[0] == 1 and len(codes) == FILTERS,
          "SUBACK with %d codes" % len(codes))
    check(set(codes) == {0x80}, "codes other than 0x80: %r" % sorted(set(codes)))
    rec.note("one SUBSCRIBE of %d filters" % FILTERS, took, "s", "%.2f")
    if asan:
        rec.note("its CPU", "%.2f s (not bounded under ASan)" % cpu)
    else:
        rec.limit("its CPU", cpu, SUBSCRIBE_CPU_MAX_S, "s", "%.2f")
    rec.limit("rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")
    # A filter some rule grants, to show the decisions are not all 0x80.
    check(c.subscribe(2, [("+/acl-client/x", 0), ("+/status/y", 0), ("flood/#", 0)]) ==
          [0, 0, 0], "granted filters refused")

    # The flood: every publish checked for write, every delivery for read.
    n = MESSAGES
    p = RawClient(b.port, timeout=60)
    p.connect("acl-pub")
    flood = b"".join(publish_packet("flood/t/%d" % (i % 100), b"x", qos=0) for i in range(n))
    probe.reset()
    cpu0 = cpu_s(pid)
    t0 = time.monotonic()
    p.send(flood)
    got = _drain(c, n)
    took = time.monotonic() - t0
    cpu = cpu_s(pid) - cpu0
    check(got == n, "%d of %d messages delivered" % (got, n))
    per = cpu * 1e6 / n
    rec.note("%d messages" % n, took, "s", "%.2f")
    if asan:
        rec.note("CPU per message", "%.1f us (not bounded under ASan)" % per)
    else:
        rec.limit("CPU per message", per, CPU_PER_MESSAGE_MAX_US, "us", "%.1f")
    rec.limit("rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")
    # A deny pattern still denies.
    p.send(publish_packet("secret7/acl-pub/x", b"no", qos=0))
    p.send(publish_packet("flood/t/last", b"yes", qos=0))
    t, _, body = c.read_packet(10)
    check(t == PUBLISH and b"flood/t/last" in body, "after the denied publish: %r" % body)
    probe.stop()
    p.close()
    c.close()
    b.assert_serves("a large acl_file")


case_acl_large.timeout = 180
