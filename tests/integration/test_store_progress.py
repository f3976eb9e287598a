"""Progress of long loads: cairn-store copy and dump draw a progress line on
stderr when it is a terminal (a pty here) and write nothing extra when it
is not; the broker logs the totals of its restore."""

import os
import pty
import select
import subprocess

from harness import RawClient, check
from test_cairn_store import _tool

N = 300  # queued QoS 1 messages for one offline session


def _filled_store(ctx):
    """A stopped broker's SQLite store: one offline persistent session
    with N queued messages. Returns the store's directory."""
    b = ctx.broker(persistence="true", persistence_backend="sqlite")
    c = RawClient(b.port)
    c.connect("pg-sub", clean=False)
    c.subscribe(1, [("pg/#", 1)])
    c.disconnect()
    p = RawClient(b.port)
    p.connect("pg-pub")
    for i in range(N):
        p.publish("pg/%d" % (i % 7), b"m%d" % i, qos=1, pid=i % 60000 + 1)
    p.disconnect()
    b.stop()
    log = b.log_text()
    check("restored 0 sessions" in log, "no restore totals line at start-up:\n%s" % log)
    b.start()
    b.stop()
    check("restored 1 sessions, 1 subscriptions, %d queued" % N in b.log_text(),
          "the restore totals do not count the queue:\n%s" % b.log_tail())
    return b.db_dir


def _run_pty(argv, stdout_path):
    """Run argv with stderr on a pty (stdout to a file); returns (status,
    what the terminal received)."""
    master, slave = pty.openpty()
    with open(stdout_path, "wb") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
    os.close(slave)
    got = b""
    while True:
        r, _, _ = select.select([master], [], [], 30)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the pty
            break
        if not chunk:
            break
        got += chunk
    os.close(master)
    return p.wait(30), got.decode("utf-8", "replace")


def test_progress_on_a_terminal_only(ctx):
    tool = _tool()
    db = _filled_store(ctx)
    store = "sqlite:%s" % db
    out = os.path.join(ctx.workdir, "dump.out")

    # Not a terminal: the records on stdout, nothing on stderr.
    r = subprocess.run([tool, "dump", store], capture_output=True, timeout=30)
    check(r.returncode == 0, "dump failed: %r" % r.stderr)
    check(r.stderr == b"", "dump wrote to a non-terminal stderr: %r" % r.stderr[:300])
    lines = r.stdout.decode().splitlines()
    check(len(lines) >= 2 * N, "dump printed %d lines" % len(lines))
    dest = os.path.join(ctx.workdir, "copy-a")
    r = subprocess.run([tool, "copy", store, "lmdb:%s" % dest], capture_output=True,
                       timeout=60)
    check(r.returncode == 0, "copy failed: %r" % r.stderr)
    # (The backend's own notices may be there: a new LMDB store.)
    check(b"\r" not in r.stderr and b"records in" not in r.stderr,
          "copy drew progress on a non-terminal stderr: %r" % r.stderr[:300])

    # A terminal: a progress line, redrawn in place, that ends with the
    # totals; stdout is the same as without it.
    rc, term = _run_pty([tool, "dump", store], out)
    check(rc == 0, "dump on a pty failed: %r" % term)
    with open(out) as f:
        check(f.read().splitlines() == lines, "dump's records differ with a terminal")
    check("cairn-store: dump: " in term and "\r" in term,
          "no progress line on the terminal: %r" % term)
    last = term.replace("\r\n", "\n").split("\r")[-1]
    want = "1 sessions, 1 subscriptions, %d messages, %d deliveries" % (N, N)
    check(want in last and "records in" in last and "/s)" in last,
          "the final progress line lacks the totals (%s): %r" % (want, last))

    dest = os.path.join(ctx.workdir, "copy-b")
    rc, term = _run_pty([tool, "copy", store, "lmdb:%s" % dest],
                        os.path.join(ctx.workdir, "copy.out"))
    check(rc == 0, "copy on a pty failed: %r" % term)
    check("cairn-store: copy: " in term and want in term,
          "no copy progress on the terminal: %r" % term)
