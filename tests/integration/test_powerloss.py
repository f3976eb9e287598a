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
        self.image, self.mnt, self.sock = base + "-image", base + "-mnt", base + ".sock"
        os.makedirs(self.image)
        os.makedirs(self.mnt)
        self.proc = None
        self.mounts = 0
        ctx.add_cleanup(lambda: self.unmount(lazy=True))  # after a failure or timeout

    def mount(self):
        self.mounts += 1
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.proc, log = self.ctx.spawn([sys.executable, POWERFS, self.image, self.mnt,
                                         self.sock], "powerfs-%d.log" % self.mounts)
        if not wait_until(lambda: _mounted(self.mnt) and os.path.exists(self.sock)
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

    def control(self, cmd):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.sock)
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
    unacknowledged; acked() is every payload whose PUBACK arrived."""

    WINDOW = 20

    def __init__(self, ctx, port):
        self.p = Paho(port, "pl-pub", ctx=ctx)
        self.p.c.max_inflight_messages_set(self.WINDOW)
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
            payload = b"pl-%06d" % i
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


def _power_cut_round(ctx, backend, durability, rng):
    """One round (see the module's text). Returns a dict: acked, the
    payloads acknowledged before the cut; received, what the subscriber got
    after the restart (a list, duplicates kept); session_present; forgot,
    powerfs' account of the cut; started, False if the broker would not
    start on the durable image (its log tail in start_error)."""
    fs = PowerMount(ctx, "%s-%s" % (backend, durability))
    fs.mount()
    b = None
    out = {"started": True}
    try:
        b = ctx.durable_broker(backend, durability=durability, max_queued_messages=0,
                               persistence_location=os.path.join(fs.mnt, "store"))
        sub = Paho(b.port, "pl-sub", clean=False, ctx=ctx)
        sub.connect()
        check(sub.subscribe("pl/#", 1) == [1], "SUBACK for pl/#")
        sub.disconnect()

        pub = Publisher(ctx, b.port)
        cut_after = rng.randrange(150, 450)
        delay = rng.uniform(0, 0.005)
        out["plan"] = "cut after %d acks + %.1fms" % (cut_after, delay * 1000)
        pub.start()
        ok = wait_until(lambda: pub.n_acked() >= cut_after, 20, step=0.001)
        check(ok, "%s %s: only %d of %d messages acknowledged in 20s" %
              (backend, durability, pub.n_acked(), cut_after))
        time.sleep(delay)
        out["forgot"] = fs.cut()  # from here on nothing reaches the disk
        b.kill9()
        pub.halt()
        out["acked"] = pub.acked()
        fs.unmount()
        fs.mount()  # the durable image, nothing else
        try:
            b.start()
        except TestFailure as e:
            out.update(started=False, start_error=str(e))
            return out
        sub = Paho(b.port, "pl-sub", clean=False, ctx=ctx)
        out["session_present"] = sub.connect()[0]
        received = []
        end = time.monotonic() + 10
        while time.monotonic() < end:
            m = sub.none(0.5 if out["acked"] - set(received) else 0.3)
            if m is None:
                if not out["acked"] - set(received) or not out["session_present"]:
                    break
                continue
            received.append(m.payload)
        out["received"] = received
        sub.close()
        b.stop()
        return out
    finally:
        if b is not None:
            b.kill9()  # a no-op after stop(); must not hold files on the mount
        fs.unmount()


def _describe_forgot(forgot):
    files = ", ".join("%s (%d bytes, %d durable)" % tuple(f) for f in forgot["forgot"])
    return "%d fsyncs served; unsynced at the cut: %s" % (forgot["fsyncs"], files or "nothing")


def _fsync_survives(ctx, backend):
    seed = int(os.environ.get("CAIRN_CRASH_SEED", "0")) or random.randrange(1, 2 ** 31)
    r = _power_cut_round(ctx, backend, "fsync", random.Random(seed))
    where = "%s, durability fsync, seed %d (CAIRN_CRASH_SEED=%d replays it; %s)" % (
        backend, seed, seed, r["plan"])
    check(r["started"], "%s: the broker did not start on the durable image: %s" %
          (where, r.get("start_error")))
    acked, got = r["acked"], r["received"]
    lost = sorted(acked - set(got))
    problems = []
    if r["session_present"] != 1:
        problems.append("the subscriber's session is gone (session present 0)")
    if lost:
        problems.append("%d of %d acknowledged messages lost, e.g. %r" %
                        (len(lost), len(acked), [x.decode() for x in lost[:5]]))
    if not acked:
        problems.append("nothing was acknowledged before the cut")
    check(not problems, "%s: %s\n%s" % (where, "; ".join(problems),
                                         _describe_forgot(r["forgot"])))
    print("powerloss %s fsync: %d acknowledged before the cut, all delivered "
          "(%d deliveries); %s" % (backend, len(acked), len(got),
                                   _describe_forgot(r["forgot"])), flush=True)


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
    """Runs the same round with durability os on both file backends and
    prints what was lost; only a harness failure fails it."""
    _require_fuse()
    seed = int(os.environ.get("CAIRN_CRASH_SEED", "0")) or random.randrange(1, 2 ** 31)
    rng = random.Random(seed)
    for backend in ("sqlite", "lmdb"):
        r = _power_cut_round(ctx, backend, "os", rng)
        acked = r["acked"]
        if not r["started"]:
            what = "the broker would not start on the durable image: %s" % \
                r["start_error"].splitlines()[0]
        else:
            lost = acked - set(r["received"])
            what = "%d of %d acknowledged messages lost, session present %d" % (
                len(lost), len(acked), r["session_present"])
        print("powerloss %s os (seed %d, %s): %s; %s" % (
            backend, seed, r["plan"], what, _describe_forgot(r["forgot"])), flush=True)


test_powerloss_durability_os_reports_what_it_loses.timeout = 50
