"""Resource bounds against clients that misbehave without breaking the
protocol: a client that never reads its replies, one with tens of
thousands of subscriptions, one with tens of thousands of messages in
flight. Each test states its limit; an unrelated client must still get
prompt service."""

import socket
import time

from harness import (PINGRESP, PUBACK, RawClient, ack_packet, check, packet, publish_packet,
                     require_cairn, subscribe_packet, unsubscribe_packet, UNSUBACK, SUBACK)

MIB = 1024 * 1024


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _flood_unread(port, client_id, chunk, limit_bytes, seconds):
    """Connect, then write chunk repeatedly without ever reading, until the
    kernel stops taking bytes for a while, limit_bytes went out, or seconds
    passed. Returns (client, bytes the kernel accepted)."""
    c = RawClient(port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.connect(client_id)
    c.sock.setblocking(False)
    sent = 0
    end = time.monotonic() + seconds
    idle_since = None
    off = 0  # a partial send leaves the rest of the chunk for the next one
    while sent < limit_bytes and time.monotonic() < end:
        try:
            n = c.sock.send(chunk[off:] if off else chunk)
        except BlockingIOError:
            n = 0
        if n:
            sent += n
            off = (off + n) % len(chunk)
            idle_since = None
            continue
        if idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since > 1.0:
            break  # the broker stopped reading: what we wanted
        time.sleep(0.01)
    return c, sent


def _round_trip_ms(port, name):
    """QoS 1 publish to a subscriber on another connection, in ms."""
    s = RawClient(port)
    s.connect(name + "-s")
    s.subscribe(1, [("bounds/" + name, 1)])
    p = RawClient(port)
    p.connect(name + "-p")
    t0 = time.monotonic()
    p.publish("bounds/" + name, b"x", qos=1, pid=7)
    m = s.read_publish(3.0)
    ms = (time.monotonic() - t0) * 1000
    check(m["payload"] == b"x", "round trip payload %r" % m["payload"])
    s.close()
    p.close()
    return ms


def _check_unread_flood(ctx, chunk, what):
    require_cairn("the output high-water mark is cairn's")
    b = ctx.broker()
    rss0 = _rss_kb(b.proc.pid)
    c, sent = _flood_unread(b.port, "unread-" + what, chunk, 128 * MIB, 8.0)
    grown = (_rss_kb(b.proc.pid) - rss0) / 1024
    # Socket buffers on both ends hold a few MiB; the broker itself keeps
    # at most one read's packets and its high-water mark of replies.
    check(sent < 48 * MIB, "%s: the broker kept reading: %d MiB taken from a client that "
          "reads nothing" % (what, sent // MIB))
    check(grown < 16, "%s: broker RSS grew %.1f MiB for a client that reads nothing" %
          (what, grown))
    ms = _round_trip_ms(b.port, what)
    check(ms < 1000, "%s: an unrelated client's round trip took %.0f ms" % (what, ms))
    # Once the flooder reads again, the broker answers what it kept.
    c.sock.setblocking(True)
    c.sock.settimeout(5.0)
    got = 0
    try:
        while got < 4096:
            d = c.sock.recv(65536)
            if not d:
                break
            got += len(d)
    except socket.timeout:
        pass
    check(got >= 4096, "%s: the stopped client got %d bytes of replies once it read" %
          (what, got))
    c.close()
    b.assert_serves(what)


def test_pingreq_flood_without_reading_is_bounded(ctx):
    _check_unread_flood(ctx, b"\xc0\x00" * 32768, "pingreq")


def test_qos1_flood_without_reading_pubacks_is_bounded(ctx):
    chunk = b"".join(publish_packet("bounds/sink", b"p", qos=1, pid=(i % 65535) + 1)
                     for i in range(4096))
    _check_unread_flood(ctx, chunk, "qos1")


def test_unread_output_stalled_past_bound_is_closed(ctx):
    """keepalive 0 disables the keep-alive close; a peer whose output has
    made no progress for 60 s is closed all the same."""
    require_cairn("the stall bound is cairn's")
    b = ctx.broker()
    c = RawClient(b.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.connect("stalled", keepalive=0)
    c.sock.setblocking(False)
    chunk = b"\xc0\x00" * 32768
    off = 0
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            off = (off + c.sock.send(chunk[off:] if off else chunk)) % len(chunk)
        except BlockingIOError:
            time.sleep(0.05)
    c.sock.setblocking(True)
    deadline = time.monotonic() + 75
    closed = False
    while time.monotonic() < deadline:
        if "stopped reading" in b.log_text():
            closed = True
            break
        time.sleep(0.5)
    check(closed, "a client that reads nothing for 75 s is still connected")
    c.close()
    b.assert_serves("stalled client")


test_unread_output_stalled_past_bound_is_closed.timeout = 100
