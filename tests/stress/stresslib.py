"""Shared pieces of the stress suite: what is read from /proc about the
broker (RSS, CPU time, open descriptors), a probe client that measures an
unrelated client's PINGREQ -> PINGRESP round trip while a case runs, and
the record of a case's limits and measured values.

The brokers and the raw MQTT client come from tests/integration/harness.py.
"""

import os
import socket
import statistics
import threading
import time

import harness
from harness import PINGREQ_PKT, PINGRESP, RawClient

MIB = 1024 * 1024

# The broker's log: errors, warnings and notices (listening, restored,
# store health). Information lines are one per connection, which in a
# storm of thousands costs the broker more than the storm itself.
QUIET_LOG = "error\nlog_type warning\nlog_type notice"


class Failed(AssertionError):
    """A check that makes the rest of the case meaningless."""


def rss_kb(pid):
    return harness.rss_kb(pid)


def cpu_s(pid):
    """User plus system CPU time of process pid, in seconds (from
    /proc/PID/stat, in clock ticks)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def uses_asan(pid):
    return harness.uses_asan(pid)


class Probe:
    """An unrelated client on its own connection and thread: every interval
    seconds it sends PINGREQ and times the PINGRESP, and samples the
    broker's RSS. A round trip that takes longer than timeout counts as
    timeout seconds (and is an error), as does a closed connection."""

    def __init__(self, port, pid, client_id="stress-probe", interval=0.1, timeout=10.0):
        self.port = port
        self.pid = pid
        self.client_id = client_id
        self.interval = interval
        self.timeout = timeout
        self.rtts = []
        self.rss_max = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = None
        self.c = None

    def start(self):
        self.c = RawClient(self.port, timeout=self.timeout)
        self.c.connect(self.client_id, keepalive=0)
        self.rss_max = rss_kb(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                self.rss_max = max(self.rss_max, rss_kb(self.pid))
            except OSError:
                pass
            t0 = time.monotonic()
            try:
                self.c.send(PINGREQ_PKT)
                t, _, _ = self.c.read_packet(self.timeout)
                if t != PINGRESP:
                    self.errors.append("probe got packet type %d" % t)
                self.rtts.append((time.monotonic() - t0) * 1000)
            except (socket.timeout, OSError, harness.Closed) as e:
                self.errors.append("probe: %s" % (str(e) or type(e).__name__))
                self.rtts.append(self.timeout * 1000)
                return
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 2)
        if self.c is not None:
            self.c.close()
        return self

    def reset(self):
        """Forget the samples so far (the next ones belong to a new phase)."""
        self.rtts = []
        self.rss_max = rss_kb(self.pid)

    def wait_samples(self, n=3, timeout=15.0):
        """Waits until the phase has at least n round trips (so a phase
        shorter than the interval is still measured)."""
        end = time.monotonic() + timeout
        while len(self.rtts) < n and time.monotonic() < end and self._thread.is_alive():
            time.sleep(0.02)

    def rtt_max(self):
        self.wait_samples()
        return max(self.rtts) if self.rtts else float("inf")

    def rtt_median(self):
        return statistics.median(self.rtts) if self.rtts else float("inf")


class Record:
    """A case's limits and what was measured against them. limit() keeps
    going after a value over its limit, so one run reports every number;
    the case fails at the end if any was over. Against mosquitto nothing
    is asserted: the numbers are printed for comparison."""

    def __init__(self, name, assert_limits=True):
        self.name = name
        self.assert_limits = assert_limits
        self.items = []  # (label, text)
        self.over = []

    def limit(self, label, value, limit, unit, fmt="%.1f"):
        ok = value <= limit
        text = ("%s %s (limit %s)" % (fmt % value, unit, fmt % limit)).strip()
        self.items.append((label, text + ("" if ok else " OVER")))
        if not ok:
            self.over.append("%s: %s" % (label, text))
        return ok

    def note(self, label, value, unit="", fmt="%.1f"):
        """A value measured and printed, not bounded."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            v = str(value)
        elif isinstance(value, int):
            v = "%d" % value
        else:
            v = fmt % value
        self.items.append((label, ("%s %s" % (v, unit)).strip()))

    def summary(self):
        return "; ".join("%s %s" % (k, v) for k, v in self.items)
