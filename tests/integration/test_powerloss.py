"""Power loss under the file backends (sqlite, lmdb): the store lives on
powerfs (powerfs.py beside this file), a FUSE file system that forgets
every write not made durable by fsync at a simulated power cut. With
`durability fsync`, every message the broker acknowledged (PUBACK) before
the cut must reach its persistent subscriber after the restart
(duplicates are allowed at QoS 1, losses are not). `durability os` is run
once per backend and what it lost is reported, not asserted: see the
`os` entry under DURABILITY in cairn.conf(5).

One round: a persistent subscriber subscribes and goes offline; a paho
publisher sends QoS 1 messages as fast as its window allows; after a
random number of acknowledgements (plus a few random milliseconds) the
power is cut: powerfs writes its durable image and fails every later
operation, so nothing the broker does afterwards reaches the disk, and the
broker is killed -9 at once. The file system is unmounted (its page cache
goes with it) and mounted again from the durable image alone; the broker
restarts on it and the subscriber comes back for its queue.

Needs root, /dev/fuse, the fuse kernel module and python3-fusepy; where
any is missing the tests are skipped, saying which. The cut's timing comes
from a seeded RNG: the seed is in every failure message and
CAIRN_CRASH_SEED=N replays it.
"""

import importlib.util
import json
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import threading
import time

from harness import Paho, Skip, TestFailure, check, require_cairn, wait_until

POWERFS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "powerfs.py")


def _tag(*tags):
    def deco(fn):
        fn.tags = ("persistence", "powerloss") + tags
        return fn
    return deco


def _require_fuse():
    """Skips, with the reason, where FUSE cannot be mounted by this test."""
    require_cairn("cairn's persistence backends")
    if os.geteuid() != 0:
        raise Skip("powerloss: mounting FUSE needs root")
    if not os.path.exists("/dev/fuse"):
        raise Skip("powerloss: no /dev/fuse")
    try:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1:] == ["fuse"] for line in f):
                raise Skip("powerloss: the fuse kernel module is not loaded")
    except OSError:
        raise Skip("powerloss: cannot read /proc/filesystems")
    if importlib.util.find_spec("fusepy") is None:
        raise Skip("powerloss: python3-fusepy is not installed for %s" % sys.executable)


def _mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


class PowerMount:
    """One powerfs mount: its image directory, mount point and control
    socket under the test's workdir."""

    def __init__(self, ctx, name):
        self.ctx = ctx
        base = os.path.join(ctx.workdir, name)
        self.image, self.mnt = base + "-image", base + "-mnt"
        # An abstract socket: no path length limit, nothing to remove.
        self.sock = "@cairn-powerfs-%d-%s" % (os.getpid(), os.path.basename(ctx.workdir))
        os.makedirs(self.image)
        os.makedirs(self.mnt)
        self.proc = None
        self.mounts = 0
        ctx.add_cleanup(lambda: self.unmount(lazy=True))  # after a failure or timeout

    def mount(self):
        self.mounts += 1
        self.proc, log = self.ctx.spawn([sys.executable, POWERFS, self.image, self.mnt,
                                         self.sock], "powerfs-%d.log" % self.mounts)
        if not wait_until(lambda: _mounted(self.mnt) and self._answers()
                          or self.proc.poll() is not None, 10):
            raise TestFailure("powerfs did not mount within 10s")
        if self.proc.poll() is not None:
            with open(log, "rb") as f:
                why = f.read().decode("utf-8", "replace").strip()
            self.proc = None
            denied = [x for x in why.splitlines() if "ermission" in x or "not permitted" in x]
            if self.mounts == 1 and denied:  # no CAP_SYS_ADMIN, say, in a container
                raise Skip("powerloss: cannot mount FUSE here: %s" % denied[0].strip())
            raise TestFailure("powerfs exited at mount: %s" % why)
        check(self.control("ping") == "ok", "powerfs: no answer on its control socket")

    def _answers(self):
        try:
            return self.control("ping") == "ok"
        except OSError:
            return False

    def control(self, cmd):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect("\0" + self.sock[1:])
            s.sendall(cmd.encode() + b"\n")
            return s.makefile("r").readline().strip()
        finally:
            s.close()

    def cut(self):
        """The power cut: returns powerfs' account of what it forgot."""
        r = json.loads(self.control("cut"))
        check("error" not in r, "powerfs cut: %r" % r)
        return r

    def unmount(self, lazy=False):
        """Unmounts (lazily if asked or if a plain unmount fails) and waits
        for powerfs to exit."""
        if _mounted(self.mnt):
            fm = shutil.which("fusermount3") or shutil.which("fusermount")
            argv = [fm, "-u", self.mnt] if fm else ["umount", self.mnt]
            ok = not lazy and subprocess.run(argv, capture_output=True, timeout=10,
                                             stdin=subprocess.DEVNULL).returncode == 0
            if not ok:
                subprocess.run(["umount", "-l", self.mnt], capture_output=True, timeout=10,
                               stdin=subprocess.DEVNULL)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.stop()
            self.proc = None
        check(not _mounted(self.mnt), "powerfs still mounted on %s" % self.mnt)


class Publisher:
    """A paho QoS 1 publisher on its own thread, at most WINDOW messages
    unacknowledged; acked() is every payload whose PUBACK arrived. The
    payloads are "<tag>-<n>-" padded to 0 to 3 KiB, so that the stores
    grow (SQLite's WAL reaches its checkpoint, LMDB takes overflow pages)."""

    WINDOW = 20

    def __init__(self, ctx, port, tag):
        self.p = Paho(port, "pl-pub-" + tag, ctx=ctx)
        self.p.c.max_inflight_messages_set(self.WINDOW)
        self.tag = tag.encode()
        self.sent = {}  # mid -> payload
        self.stop = threading.Event()
        self.thread = None

    def start(self):
        self.p.connect()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        i = 0
        while not self.stop.is_set() and i < 60000:
            if not wait_until(lambda: self.stop.is_set() or
                              len(self.sent) - self.n_acked() < self.WINDOW, 5, step=0.001):
                return
            if self.stop.is_set():
                return
            payload = b"%s-%06d-" % (self.tag, i) + b"x" * (i * 997 % 3072)
            info = self.p.c.publish("pl/t", payload, 1)
            if info.rc != 0:
                return
            with self.p.lock:
                self.sent[info.mid] = payload
            i += 1

    def n_acked(self):
        with self.p.lock:
            return len(self.p.acked)

    def acked(self):
        with self.p.lock:
            return {self.sent[m] for m in self.p.acked if m in self.sent}

    def halt(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
        self.p.close()


def _short(payload):
    return payload.split(b"-x")[0].rstrip(b"-").decode()


def _drain(sub, into):
    while True:
        try:
            into.append(sub.msgs.get_nowait().payload)
        except queue.Empty:
            return


def _power_cuts(ctx, backend, durability, rng, online_plan, clean_restart_first=False):
    """Rounds of traffic and power cuts on one store (see the module's
    text); the subscriber is online during round r if online_plan[r].
    With clean_restart_first, the broker is restarted with SIGTERM after
    the subscription, before any traffic. Returns a dict: acked, every
    payload acknowledged; received, every delivery to the subscriber (a
    list, duplicates kept); problems, the sessions found missing; plans
    and forgot, per round, the cut's timing and powerfs' account of it;
    start_error, if the broker would not start on the durable image."""
    fs = PowerMount(ctx, "%s-%s-%d" % (backend, durability, len(ctx.brokers)))
    fs.mount()
    b = None
    out = {"acked": set(), "received": [], "problems": [], "plans": [], "forgot": [],
           "start_error": None}
    try:
        b = ctx.durable_broker(backend, durability=durability, max_queued_messages=0,
                               persistence_location=os.path.join(fs.mnt, "store"))
        sub = Paho(b.port, "pl-sub", clean=False, ctx=ctx)
        sub.connect()
        check(sub.subscribe("pl/#", 1) == [1], "SUBACK for pl/#")
        sub.disconnect()
        if clean_restart_first:
            b.restart()
        for rnd, online in enumerate(online_plan):
            sub = None
            if online:
                sub = Paho(b.port, "pl-sub", clean=False, ctx=ctx)
                if sub.connect()[0] != 1:
                    out["problems"].append("round %d: subscriber session present 0" % rnd)
            pub = Publisher(ctx, b.port, "r%d" % rnd)
            cut_after = rng.randrange(150, 450)
            delay = rng.uniform(0, 0.005)
            out["plans"].append("round %d: subscriber %s, cut after %d acks + %.1fms" %
                                (rnd, "online" if online else "offline", cut_after,
                                 delay * 1000))
            pub.start()
            ok = wait_until(lambda: pub.n_acked() >= cut_after, 20, step=0.001)
            check(ok, "%s %s round %d: only %d of %d messages acknowledged in 20s" %
                  (backend, durability, rnd, pub.n_acked(), cut_after))
            time.sleep(delay)
            out["forgot"].append(fs.cut())  # from here on nothing reaches the disk
            b.kill9()
            pub.halt()
            out["acked"] |= pub.acked()
            if sub is not None:
                sub.close()
                _drain(sub, out["received"])
            fs.unmount()
            fs.mount()  # the durable image, nothing else
            try:
                b.start()
            except TestFailure as e:
                out["start_error"] = "round %d: %s" % (rnd, e)
                return out
        sub = Paho(b.port, "pl-sub", clean=False, ctx=ctx)
        if sub.connect()[0] != 1:
            out["problems"].append("final: subscriber session present 0")
        else:
            # The restored queue comes at once: wait for what is missing
            # until nothing has arrived for `quiet` seconds.
            quiet = 3.0 if durability == "fsync" else 1.0
            end = time.monotonic() + 15
            last = time.monotonic()
            while time.monotonic() < end and time.monotonic() - last < quiet:
                m = sub.none(0.2)
                if m is not None:
                    out["received"].append(m.payload)
                    last = time.monotonic()
                elif not out["acked"] - set(out["received"]):
                    break
        sub.close()
        b.stop()
        return out
    finally:
        if b is not None:
            b.kill9()  # a no-op after stop(); must not hold files on the mount
        fs.unmount()


def _describe_forgot(forgot):
    files = ", ".join("%s (%d bytes, %d durable)" % tuple(f) for f in forgot["forgot"])
    return "%d fsyncs; unsynced at the cut: %s" % (forgot["fsyncs"], files or "nothing")


def _seed():
    return int(os.environ.get("CAIRN_CRASH_SEED", "0")) or random.randrange(1, 2 ** 31)


def _fsync_survives(ctx, backend):
    """Three cuts on one store: the subscriber offline, then online, then
    either; in the end every acknowledged message has been delivered."""
    seed = _seed()
    rng = random.Random(seed)
    r = _power_cuts(ctx, backend, "fsync", rng, [False, True, rng.random() < 0.5])
    where = "%s, durability fsync, seed %d (CAIRN_CRASH_SEED=%d replays it; %s)" % (
        backend, seed, seed, "; ".join(r["plans"]))
    detail = "\n".join("cut %d: %s" % (i, _describe_forgot(f))
                       for i, f in enumerate(r["forgot"]))
    check(r["start_error"] is None, "%s: the broker did not start on the durable image: "
          "%s\n%s" % (where, r["start_error"], detail))
    acked, got = r["acked"], r["received"]
    lost = sorted(acked - set(got))
    problems = list(r["problems"])
    if lost:
        problems.append("%d of %d acknowledged messages lost, e.g. %r" %
                        (len(lost), len(acked), [_short(x) for x in lost[:8]]))
    if not acked:
        problems.append("nothing was acknowledged before the cuts")
    check(not problems, "%s: %s\n%s" % (where, "; ".join(problems), detail))
    print("powerloss %s fsync: %d acknowledged across %d cuts, all delivered (%d deliveries)\n%s"
          % (backend, len(acked), len(r["forgot"]), len(got), detail), flush=True)


@_tag("sqlite")
def test_powerloss_sqlite_fsync_keeps_every_acknowledged_message(ctx):
    _require_fuse()
    _fsync_survives(ctx, "sqlite")


@_tag("lmdb")
def test_powerloss_lmdb_fsync_keeps_every_acknowledged_message(ctx):
    _require_fuse()
    _fsync_survives(ctx, "lmdb")


@_tag("sqlite", "lmdb")
def test_powerloss_durability_os_reports_what_it_loses(ctx):
    """One cut with durability os on each file backend, on a new store and
    on one the broker has closed cleanly once (which syncs it); prints what
    was lost. Only a harness failure fails it."""
    _require_fuse()
    seed = _seed()
    rng = random.Random(seed)
    for backend in ("sqlite", "lmdb"):
        for clean_first in (False, True):
            r = _power_cuts(ctx, backend, "os", rng, [False], clean_restart_first=clean_first)
            acked = r["acked"]
            if r["start_error"]:
                what = "the broker would not start on the durable image: %s" % \
                    r["start_error"].splitlines()[0]
            else:
                lost = acked - set(r["received"])
                what = "%d of %d acknowledged messages lost%s" % (
                    len(lost), len(acked),
                    "; " + "; ".join(r["problems"]) if r["problems"] else "")
            print("powerloss %s os, %s (seed %d, %s): %s; %s" % (
                backend, "after a clean restart" if clean_first else "new store", seed,
                r["plans"][0], what, _describe_forgot(r["forgot"][0])), flush=True)


test_powerloss_durability_os_reports_what_it_loses.timeout = 50
