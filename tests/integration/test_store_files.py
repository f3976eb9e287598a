"""The file backends make the names they create durable: a directory they
create is fsynced in its parent, and LMDB's new data.mdb and lock.mdb are
fsynced in theirs (LMDB itself never syncs the directory), so a power cut
on a filesystem that needs a directory fsync cannot lose the store. Seen
with strace on the real broker."""

import os
import re
import shutil
import signal
import subprocess

from harness import Skip, broker_command, check, free_port, require_cairn, wait_until, RawClient


def _traced_start(ctx, backend):
    require_cairn("cairn's file backends")
    if not shutil.which("strace"):
        raise Skip("strace is not installed")
    store = os.path.join(ctx.workdir, "new-parent", "store")
    os.makedirs(os.path.dirname(store))
    port = free_port()
    conf = os.path.join(ctx.workdir, "traced.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence_backend %s\n"
                "persistence_location %s\n" % (port, backend, store))
    trace = os.path.join(ctx.workdir, "strace.txt")
    proc = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=mkdir,openat,fsync,fdatasync",
                             "-o", trace, broker_command(), "-c", conf],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def traced_pids():
        """cairn's PID: strace's child (a signal to strace itself would only
        make it detach and leave cairn running)."""
        try:
            with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def stop():
        if proc.poll() is not None:
            return
        for pid in traced_pids():
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(10)  # strace exits with the process it traces
        except subprocess.TimeoutExpired:
            for pid in traced_pids():
                os.kill(pid, signal.SIGKILL)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    ctx.add_cleanup(stop)

    def serving():
        try:
            RawClient(port, timeout=0.3).close()
            return True
        except OSError:
            return False
    check(wait_until(serving, 10), "cairn under strace did not listen")
    stop()
    with open(trace) as f:
        return store, f.read()


def _fsynced_dirs(trace):
    """The directories opened with O_DIRECTORY and then fsynced."""
    fds, synced = {}, []
    for line in trace.splitlines():
        m = re.search(r'openat\(AT_FDCWD, "([^"]+)", [^)]*O_DIRECTORY[^)]*\) = (\d+)', line)
        if m:
            fds[m.group(2)] = os.path.normpath(m.group(1))
            continue
        m = re.search(r"fsync\((\d+)\) += 0", line)
        if m and m.group(1) in fds:
            synced.append(fds.pop(m.group(1)))
    return synced


def test_lmdb_new_store_fsyncs_its_directories(ctx):
    store, trace = _traced_start(ctx, "lmdb")
    synced = _fsynced_dirs(trace)
    check(os.path.dirname(store) in synced,
          "the parent of the created persistence_location was not fsynced: %r" % synced)
    check(store in synced, "the LMDB directory was not fsynced after data.mdb was created: %r"
          % synced)


def test_sqlite_new_store_fsyncs_the_parent_it_created_in(ctx):
    store, trace = _traced_start(ctx, "sqlite")
    synced = _fsynced_dirs(trace)
    check(os.path.dirname(store) in synced,
          "the parent of the created persistence_location was not fsynced: %r" % synced)
