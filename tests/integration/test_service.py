"""Running as a service: systemd's notify protocol and watchdog (spoken to a
datagram socket of the test's own, no systemd needed), the unit file
(systemd-analyze verify), user, pid_file and -d."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time

from harness import (HOST, RawClient, Skip, broker_command, check, connect_packet,
                     free_port, require_cairn, wait_until, CONNACK, ROOT)


def _built_with_libsystemd():
    try:
        out = subprocess.run(["ldd", broker_command()], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libsystemd" in out


def _write_conf(ctx, port, extra=(), name="svc.conf"):
    path = os.path.join(ctx.workdir, name)
    with open(path, "w") as f:
        f.write("\n".join(["listener %d %s" % (port, HOST), "allow_anonymous true",
                           "log_type all"] + list(extra)) + "\n")
    return path


def _serves(port):
    try:
        c = RawClient(port, timeout=2)
    except OSError:
        return False
    try:
        c.send(connect_packet("svc-probe-%d" % os.getpid()))
        t, _, body = c.read_packet()
        return t == CONNACK and body[1] == 0
    finally:
        c.close()


class Notify:
    """The service manager's end: a unix datagram socket; every message
    kept with the time it arrived."""

    def __init__(self, workdir):
        self.path = os.path.join(workdir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.msgs = []

    def poll(self, timeout):
        """Read what arrives within timeout seconds; returns the new ones."""
        new = []
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            m = (time.monotonic(), data.decode())
            self.msgs.append(m)
            new.append(m)
        return new

    def wait_for(self, line, timeout):
        """Read until a message with line arrives; returns everything read
        up to and including it, or None."""
        got = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in self.poll(min(0.05, max(0.0, end - time.monotonic()))):
                got.append(m)
                if line in m[1].split("\n"):
                    return got
        return None

    def close(self):
        self.sock.close()


def _lines(msgs):
    return [ln for _, text in msgs for ln in text.split("\n")]


def test_sd_notify_ready_reload_watchdog_stopping(ctx):
    """READY=1 only once the listener accepts; RELOADING=1 then READY=1
    around SIGHUP; WATCHDOG=1 every half interval from the event loop,
    none while the process is stopped; STOPPING=1 at SIGTERM."""
    require_cairn("cairn's systemd notifications")
    if not _built_with_libsystemd():
        raise Skip("cairn was built without libsystemd")
    n = Notify(ctx.workdir)
    ctx.add_cleanup(n.close)
    port = free_port()
    conf = _write_conf(ctx, port, ["persistence true", "persistence_backend sqlite",
                                   "persistence_location %s/db" % ctx.workdir])
    env = dict(os.environ, NOTIFY_SOCKET=n.path, WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    proc, log = ctx.spawn([broker_command(), "-c", conf], "notify.log", env=env)

    got = n.wait_for("READY=1", 10)
    check(got is not None, "no READY=1 within 10 s; got %r" % _lines(n.msgs))
    # The listener must accept at the moment READY=1 is read.
    s = socket.create_connection((HOST, port), timeout=1)
    s.close()
    before = _lines(got[:-1])
    check("READY=1" not in before, "READY=1 twice at start-up")
    check(any(ln.startswith("STATUS=") for ln in _lines(got)), "no STATUS= line at start-up")

    # The watchdog: every 100 ms.
    pings = [m for m in n.poll(1.0) if "WATCHDOG=1" in m[1].split("\n")]
    check(len(pings) >= 5, "%d WATCHDOG=1 in 1 s with WATCHDOG_USEC=200000" % len(pings))

    # A stopped loop feeds no watchdog.
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        n.poll(0.15)  # what was sent before the stop
        stopped = [m for m in n.poll(0.6) if "WATCHDOG=1" in m[1].split("\n")]
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    check(not stopped, "%d WATCHDOG=1 while the broker was stopped" % len(stopped))
    pings = [m for m in n.poll(0.6) if "WATCHDOG=1" in m[1].split("\n")]
    check(len(pings) >= 2, "the watchdog did not resume after SIGCONT")

    # SIGHUP: RELOADING=1, then READY=1.
    os.kill(proc.pid, signal.SIGHUP)
    got = n.wait_for("READY=1", 5)
    check(got is not None, "no READY=1 after SIGHUP; got %r" % _lines(n.msgs[-20:]))
    lines = [ln for ln in _lines(got) if ln != "WATCHDOG=1"]
    check("RELOADING=1" in lines and lines.index("RELOADING=1") < lines.index("READY=1"),
          "SIGHUP: expected RELOADING=1 before READY=1, got %r" % lines)
    check(_serves(port), "the broker does not serve after SIGHUP")

    # SIGTERM: STOPPING=1, then a clean exit.
    os.kill(proc.pid, signal.SIGTERM)
    got = n.wait_for("STOPPING=1", 5)
    check(got is not None, "no STOPPING=1 after SIGTERM")
    proc.wait(10)
    check(proc.returncode == 0, "exit status %s after SIGTERM" % proc.returncode)


def test_no_notify_socket_runs_the_same(ctx):
    """Without NOTIFY_SOCKET the broker serves and stops as ever."""
    require_cairn("cairn's systemd notifications")
    port = free_port()
    conf = _write_conf(ctx, port)
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    proc, log = ctx.spawn([broker_command(), "-c", conf], "plain.log", env=env)
    check(wait_until(lambda: _serves(port), 5), "the broker does not serve")
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)
    check(proc.returncode == 0, "exit status %s" % proc.returncode)


def test_unit_file_verifies(ctx):
    """contrib/cairn.service passes systemd-analyze verify."""
    src = os.environ.get("CAIRN_SRCDIR", ROOT)
    unit = os.path.join(src, "contrib", "cairn.service")
    check(os.path.exists(unit), "no %s" % unit)
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise Skip("no systemd-analyze on this machine")
    # The unit names /usr/sbin/cairn; verify looks for the ExecStart binary,
    # so a copy with the binary under test stands in.
    with open(unit) as f:
        text = f.read()
    check("Type=notify" in text and "WatchdogSec=" in text, "the unit is not Type=notify "
          "with a watchdog")
    # Its Documentation= man pages are not installed here: verify would run
    # man on them.
    copy = os.path.join(ctx.workdir, "cairn.service")
    with open(copy, "w") as f:
        f.write("\n".join(ln for ln in text.replace("/usr/sbin/cairn", broker_command())
                          .splitlines() if not ln.startswith("Documentation=")) + "\n")
    r = subprocess.run([tool, "verify", copy], capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).strip()
    # Lines about other units of this machine (not ours) are not our concern.
    ours = [ln for ln in out.splitlines() if "cairn.service" in ln]
    check(r.returncode == 0 and not ours,
          "systemd-analyze verify: status %d:\n%s" % (r.returncode, out))


def test_pid_file_written_and_removed(ctx):
    require_cairn("cairn's pid_file")
    port = free_port()
    pidf = os.path.join(ctx.workdir, "cairn.pid")
    conf = _write_conf(ctx, port, ["pid_file %s" % pidf])
    proc, log = ctx.spawn([broker_command(), "-c", conf], "pid.log")
    check(wait_until(lambda: _serves(port), 5), "the broker does not serve")
    with open(pidf) as f:
        text = f.read()
    check(text == "%d\n" % proc.pid, "pid_file holds %r, the broker is %d" % (text, proc.pid))
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)
    check(proc.returncode == 0, "exit status %s" % proc.returncode)
    check(not os.path.exists(pidf), "pid_file still there after exit")


def test_pid_file_unwritable_fails_start(ctx):
    require_cairn("cairn's pid_file")
    port = free_port()
    conf = _write_conf(ctx, port, ["pid_file %s/no/such/dir/cairn.pid" % ctx.workdir])
    r = subprocess.run([broker_command(), "-c", conf], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    check(r.returncode == 1, "status %d with an unwritable pid_file" % r.returncode)
    check("pid_file" in r.stderr and "no/such/dir" in r.stderr,
          "the error does not name the pid_file:\n%s" % r.stderr)


def _ids(pid):
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = v.split()
    return ids


def _nobody(ctx):
    require_cairn("cairn's user key")
    if os.geteuid() != 0:
        raise Skip("not root: nothing to drop")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        raise Skip("no user nobody")
    os.chmod(ctx.workdir, 0o755)  # nobody must reach what it is given below
    return pw


def test_user_drops_privileges(ctx):
    """Started as root with user nobody: every uid and gid of the process
    is nobody's, no supplementary group is root's, the store's files and
    the pid file were made with nobody's rights, the broker serves on the
    listener opened before the drop, and the pid file goes at exit."""
    pw = _nobody(ctx)
    port = free_port()
    db = os.path.join(ctx.workdir, "db")
    run = os.path.join(ctx.workdir, "run")
    for d in (db, run):
        os.mkdir(d)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    pidf = os.path.join(run, "cairn.pid")
    conf = _write_conf(ctx, port, ["user nobody", "persistence true",
                                   "persistence_backend sqlite",
                                   "persistence_location %s" % db, "pid_file %s" % pidf])
    proc, log = ctx.spawn([broker_command(), "-c", conf], "user.log")
    check(wait_until(lambda: _serves(port), 5), "the broker does not serve")
    ids = _ids(proc.pid)
    check(ids["Uid"] == [str(pw.pw_uid)] * 4, "Uid %r, want nobody's %d" % (ids["Uid"],
                                                                            pw.pw_uid))
    check(ids["Gid"] == [str(pw.pw_gid)] * 4, "Gid %r, want %d" % (ids["Gid"], pw.pw_gid))
    check("0" not in ids["Groups"], "still in group 0: %r" % ids["Groups"])
    owners = {f: os.stat(os.path.join(db, f)).st_uid for f in os.listdir(db)}
    owners["pid_file"] = os.stat(pidf).st_uid
    check(owners and all(u == pw.pw_uid for u in owners.values()),
          "files not made as nobody: %r" % owners)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(10)
    with open(log) as f:
        text = f.read()
    check("running as user nobody" in text, "no log line about the drop:\n%s" % text)
    check(proc.returncode == 0, "exit status %s after SIGTERM:\n%s" % (proc.returncode, text))
    check(not os.path.exists(pidf), "pid_file left after exit:\n%s" % text)
    check(os.listdir(db) == ["cairn.db"], "the store did not close cleanly: %r"
          % os.listdir(db))


def test_user_store_not_writable_fails_start(ctx):
    """The store is opened with the user's rights: a store directory the
    user cannot write stops the start-up, rather than a store that works
    only as long as the broker is started as root."""
    _nobody(ctx)
    port = free_port()
    db = os.path.join(ctx.workdir, "rootdb")
    os.mkdir(db, 0o755)
    conf = _write_conf(ctx, port, ["user nobody", "persistence true",
                                   "persistence_backend sqlite",
                                   "persistence_location %s" % db])
    r = subprocess.run([broker_command(), "-c", conf], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    check(r.returncode == 1, "status %d with a store nobody cannot write:\n%s"
          % (r.returncode, r.stderr))
    check("store" in r.stderr, "the error does not name the store:\n%s" % r.stderr)


def test_unknown_user_fails_start(ctx):
    require_cairn("cairn's user key")
    if os.geteuid() != 0:
        raise Skip("not root: user is not looked up")
    port = free_port()
    conf = _write_conf(ctx, port, ["user no-such-user-cairn"])
    r = subprocess.run([broker_command(), "-c", conf], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    check(r.returncode == 1, "status %d with an unknown user" % r.returncode)
    check("no-such-user-cairn" in r.stderr, "the error does not name the user:\n%s" % r.stderr)


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_daemon_returns_once_serving(ctx):
    """cairn -d returns 0 once the daemon serves (a client connects at
    once), the daemon is another process in its own session, and SIGTERM
    stops it and removes its pid file."""
    require_cairn("cairn's -d")
    port = free_port()
    pidf = os.path.join(ctx.workdir, "daemon.pid")
    logf = os.path.join(ctx.workdir, "daemon.log")
    conf = _write_conf(ctx, port, ["pid_file %s" % pidf, "log_dest file %s" % logf])
    p = subprocess.Popen([broker_command(), "-d", "-c", conf], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=20)
    daemon = None
    try:
        with open(pidf) as f:
            daemon = int(f.read())
    except (OSError, ValueError):
        pass

    def stop():
        if daemon and _pid_alive(daemon):
            os.kill(daemon, signal.SIGKILL)
    ctx.add_cleanup(stop)
    check(p.returncode == 0, "cairn -d exited %d: %s" % (p.returncode, err))
    check(out == b"" and err == b"", "cairn -d wrote %r %r" % (out, err))
    check(_serves(port), "no client served right after cairn -d returned")
    check(daemon and daemon != p.pid and _pid_alive(daemon), "no daemon pid in the pid file")
    check(os.getsid(daemon) != os.getsid(0), "the daemon is still in the caller's session")
    os.kill(daemon, signal.SIGTERM)
    check(wait_until(lambda: not _pid_alive(daemon), 10), "the daemon outlived SIGTERM")
    check(not os.path.exists(pidf), "pid_file left after the daemon stopped")
    with open(logf) as f:
        check("shutting down" in f.read(), "the daemon's log has no shutdown line")


def test_daemon_start_failure_is_reported(ctx):
    """cairn -d whose daemon cannot start (its port is taken) exits 1."""
    require_cairn("cairn's -d")
    busy = socket.socket()
    busy.bind((HOST, 0))
    busy.listen(1)
    ctx.add_cleanup(busy.close)
    port = busy.getsockname()[1]
    logf = os.path.join(ctx.workdir, "daemon.log")
    conf = _write_conf(ctx, port, ["log_dest file %s" % logf])
    r = subprocess.run([broker_command(), "-d", "-c", conf], capture_output=True,
                       timeout=20, stdin=subprocess.DEVNULL)
    check(r.returncode == 1, "cairn -d exited %d with its port taken" % r.returncode)
