"""Case 1: a client that never reads while it floods one packet type
(PINGREQ, PUBLISH at QoS 0, 1 and 2, SUBSCRIBE, UNSUBSCRIBE). The flooder
subscribes to its own topic first, so every PUBLISH it sends also comes
back to it as a delivery it never reads, and every other packet type has a
reply it never reads. The broker's RSS must stay bounded, the broker must
stop reading a client whose replies pile up, and an unrelated client's
PINGREQ -> PINGRESP round trip must stay prompt throughout."""

import socket
import time

from harness import publish_packet, subscribe_packet, unsubscribe_packet, RawClient
from stresslib import MIB, QUIET_LOG, Probe, rss_kb, uses_asan

# How long each flood lasts. Short mode: 3 s, long enough for the broker
# to fill both socket buffers and stop reading (which takes well under a
# second), and for the probe to take some 20 samples in that state.
FLOOD_S = 10.0
FLOOD_S_SHORT = 3.0

# The broker keeps at most one read's worth of a client's packets, the
# replies up to its output high-water mark, and for deliveries the
# client's queue (max_queued_messages 1000 x 64-byte payloads here);
# socket buffers are kernel memory, not RSS. 32 MiB over the RSS before
# the flood leaves room for allocator slack and is far below what a broker
# that buffers everything reaches in seconds (hundreds of MiB).
RSS_GROWTH_MAX_MIB = 32

# A client that does not read its replies must not be read without end:
# once the replies it does not take pass the broker's output high-water
# mark (256 KiB) the broker stops reading it. What the replies it owes can
# then add up to is that mark, plus what the kernel buffers on loopback:
# the broker's send buffer (Linux's tcp_wmem maximum, 4 MiB by default,
# about twice that counted in small segments) and the flooder's receive
# buffer (set to 64 KiB). The replies owed are counted from the bytes the
# kernel took from the flooder, which include what still waits in the
# broker's receive buffer (so this over-counts, never under-counts): 2
# bytes per PINGREQ, 4 per QoS 1 or 2 PUBLISH (its PUBACK or PUBREC; the
# deliveries back to the flooder are bounded by its in-flight window and
# queue), 5 per SUBSCRIBE of one filter, 4 per UNSUBSCRIBE. Not applied
# to QoS 0, whose deliveries the broker may drop instead.
REPLIES_OWED_MAX_MIB = 16

# The unrelated client's slowest PINGREQ -> PINGRESP during the flood. On
# an idle machine it is well under 10 ms; 1 s leaves room for the two
# cores being shared with builds and other tests, and is still far below
# what a broker stuck serving the flooder produces (seconds, or never).
PING_RTT_MAX_MS = 1000

PAYLOAD = b"p" * 64


REPLY_BYTES = dict(pingreq=2, qos1=4, qos2=4, subscribe=5, unsubscribe=4)


def _chunk(kind, topic):
    """A run of packets of one kind; the flooder sends it again and again.
    Returns (bytes, number of packets)."""
    if kind == "pingreq":
        return b"\xc0\x00" * 32768, 32768
    if kind in ("qos0", "qos1", "qos2"):
        qos = int(kind[-1])
        # QoS 1 and 2 cycle through every packet id: the broker's inbound
        # QoS 2 state (PUBREL never comes) is bounded by the ids, not by
        # what it is sent.
        n = 65535 if qos else 4096
        return b"".join(publish_packet(topic, PAYLOAD, qos=qos, pid=(i % 65535) + 1)
                        for i in range(n)), n
    if kind == "subscribe":
        return b"".join(subscribe_packet((i % 65535) + 1, [("flood/sub/%d" % (i % 1000), 1)])
                        for i in range(8192)), 8192
    if kind == "unsubscribe":
        return b"".join(unsubscribe_packet((i % 65535) + 1, ["flood/sub/%d" % (i % 1000)])
                        for i in range(8192)), 8192
    raise ValueError(kind)


def _flood(ctx, rec, short, kind):
    b = ctx.broker(log_type=QUIET_LOG)
    pid = b.proc.pid
    seconds = FLOOD_S_SHORT if short else FLOOD_S
    topic = "flood/%s" % kind
    chunk, npackets = _chunk(kind, topic)

    c = RawClient(b.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.connect("flooder-" + kind, keepalive=0)
    if kind.startswith("qos"):
        c.subscribe(1, [(topic, int(kind[-1]))])
    probe = Probe(b.port, pid).start()
    time.sleep(0.3)
    rss0 = rss_kb(pid)
    probe.reset()

    c.sock.setblocking(False)
    view = memoryview(chunk)  # slices without copying
    sent = 0
    off = 0  # a partial send leaves the rest of the chunk for the next one
    stalled_at = None
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        try:
            n = c.sock.send(view[off:])
        except BlockingIOError:
            n = 0
        except OSError as e:
            rec.note("flooder", "closed by the broker after %.1f s (%s)" %
                     (time.monotonic() - t0, e.strerror or e))
            break
        if n:
            sent += n
            off = (off + n) % len(chunk)
            stalled_at = None
        else:
            if stalled_at is None:
                stalled_at = time.monotonic()
            time.sleep(0.01)
    probe.stop()
    rss_max = max(probe.rss_max, rss_kb(pid))

    asan = uses_asan(pid)
    growth = (rss_max - rss0) / 1024.0
    if asan:  # ASan's quarantine keeps freed memory resident
        rec.note("RSS growth", "%.1f MiB (not bounded under ASan)" % growth)
    else:
        rec.limit("RSS growth", growth, RSS_GROWTH_MAX_MIB, "MiB")
    rec.note("taken", sent / MIB, "MiB")
    if kind != "qos0":
        owed = sent * npackets // len(chunk) * REPLY_BYTES[kind]
        rec.limit("replies owed", owed / MIB, REPLIES_OWED_MAX_MIB, "MiB")
        # When the broker last took bytes: soon after the start if it stopped
        # reading the flooder, near the end if it kept reading.
        if stalled_at is not None and time.monotonic() - stalled_at >= 0.5:
            rec.note("reading stopped", "after %.1f s" % (stalled_at - t0))
        else:
            rec.note("reading stopped", "never")
    rec.limit("probe rtt max", probe.rtt_max(), PING_RTT_MAX_MS, "ms", "%.0f")
    rec.note("median", probe.rtt_median(), "ms")
    for e in probe.errors:
        rec.note("probe error", e)
        rec.over.append(e)
    c.close()
    b.assert_serves("a %s flood" % kind)


def case_flood_unread_pingreq(ctx, rec, short):
    _flood(ctx, rec, short, "pingreq")


def case_flood_unread_publish_qos0(ctx, rec, short):
    _flood(ctx, rec, short, "qos0")


def case_flood_unread_publish_qos1(ctx, rec, short):
    _flood(ctx, rec, short, "qos1")


def case_flood_unread_publish_qos2(ctx, rec, short):
    _flood(ctx, rec, short, "qos2")


def case_flood_unread_subscribe(ctx, rec, short):
    _flood(ctx, rec, short, "subscribe")


def case_flood_unread_unsubscribe(ctx, rec, short):
    _flood(ctx, rec, short, "unsubscribe")
