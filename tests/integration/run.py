#!/usr/bin/python3
"""Runs the integration tests: every `def test_*(ctx)` in
tests/integration/test_*.py, each with a hard timeout and its own brokers,
printing PASS, FAIL or SKIP per test and one summary line,
"integration: N passed, N failed, N skipped". A test that does not apply
to the broker under test raises harness.Skip: it is counted skipped, never
passed. The exit status is 1 when a test failed, else 0.

Usage: run.py [--only WORD]... [--list] [--timeout SECONDS] [-v]
  --only WORD          tests whose module or function name contains WORD,
                       or that carry WORD as a tag
  --only persistence   the persistence tests: module test_persistence and
                       the tests tagged persistence (test_backends,
                       test_powerloss)
  --only cluster       the cluster-mode tests (test_cluster: several nodes
                       on one private redis-server)
  --list               print the selected tests' names and exit
  --timeout SECONDS    a test's hard timeout unless it sets its own
                       (default 30)
  -v                   print each test's time and a failure's traceback
Without --only, the words of $CAIRN_RUN_ONLY (separated by spaces), if set,
select as --only would (.ci/run's make distcheck runs a few modules so).
The broker is $CAIRN_BIN (default ./cairn relative to the source root).
"""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import runner  # noqa: E402

DEFAULT_TIMEOUT = 30


def selected(modname, fn, only):
    if not only:
        return True
    tags = getattr(fn, "tags", ())
    for w in only:
        if w in modname or w in fn.__name__ or w in tags:
            return True
    return False


def run_one(modname, fn, timeout, verbose):
    ctx = harness.Context(fn.__name__)
    status, reason = runner.run_guarded(
        ctx, lambda: fn(ctx), getattr(fn, "timeout", timeout), 15, "test_", verbose,
        on_interrupt="FAIL %s: interrupted" % fn.__name__)
    if status != "FAIL":
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    else:
        reason = reason.strip().replace("\n", "\n    ")
        reason += "\n    (broker logs: %s)" % " ".join(ctx.logs()) if ctx.logs() else ""
    return status, reason


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT)
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    if not args.only and os.environ.get("CAIRN_RUN_ONLY", "").split():
        args.only = os.environ["CAIRN_RUN_ONLY"].split()
        print("integration: only %s (CAIRN_RUN_ONLY)" % " ".join(args.only))

    tests = [(m, f) for m, f in runner.discover(HERE, "test_*.py", "test_")
             if selected(m, f, args.only)]
    if args.list:
        for m, f in tests:
            print("%s.%s" % (m, f.__name__))
        return 0
    bin_ = harness.broker_command()
    if not os.access(bin_, os.X_OK) and os.sep in bin_:
        print("FAIL setup: broker %s not found or not executable" % bin_)
        print("integration: 0 passed, 1 failed, 0 skipped")
        return 1
    runner.catch_interrupts()
    passed = failed = skipped = 0
    t0 = time.monotonic()
    for m, f in tests:
        t = time.monotonic()
        status, reason = run_one(m, f, args.timeout, args.v)
        dt = time.monotonic() - t
        name = f.__name__
        if status == "PASS":
            passed += 1
            print("PASS %s%s" % (name, " (%.1fs)" % dt if args.v else ""), flush=True)
        elif status == "SKIP":
            skipped += 1
            print("SKIP %s: %s" % (name, reason), flush=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (name, reason), flush=True)
    if args.v:
        print("(%.1fs)" % (time.monotonic() - t0))
    print("integration: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except runner.Interrupted:
        print("integration: interrupted")
        sys.exit(130)
