#!/usr/bin/python3
"""Runs the integration tests: every `def test_*(ctx)` in
tests/integration/test_*.py, each with a hard timeout and its own brokers,
printing PASS, FAIL or SKIP per test and one summary line,
"integration: N passed, N failed, N skipped". A test that does not apply
to the broker under test raises harness.Skip: it is counted skipped, never
passed. The exit status is 1 when a test failed, else 0.

Usage: run.py [--only WORD]... [--list] [--timeout SECONDS] [-v]
  --only persistence   only the persistence tests (module test_persistence)
  --only WORD          tests whose module or function name contains WORD
The broker is $CAIRN_BIN (default ./cairn relative to the source root).
"""

import argparse
import glob
import importlib
import inspect
import os
import shutil
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

DEFAULT_TIMEOUT = 30


class HardTimeout(BaseException):
    pass


class Interrupted(BaseException):
    pass


def _alarm(signum, frame):
    raise HardTimeout()


def _interrupt(signum, frame):
    raise Interrupted()


def discover():
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        modname = os.path.splitext(os.path.basename(path))[0]
        mod = importlib.import_module(modname)
        fns = [f for n, f in vars(mod).items()
               if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == modname]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in fns:
            tests.append((modname, f))
    return tests


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
    status, reason = "PASS", ""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(getattr(fn, "timeout", timeout))
    try:
        fn(ctx)
    except harness.Skip as e:
        status, reason = "SKIP", str(e)
    except HardTimeout:
        status, reason = "FAIL", "timed out after %ds" % getattr(fn, "timeout", timeout)
    except Interrupted:
        signal.alarm(0)
        ctx.close(check_exit=False)  # stop this test's brokers by PID, then give up
        print("FAIL %s: interrupted" % fn.__name__, flush=True)
        raise
    except AssertionError as e:
        status, reason = "FAIL", str(e) or traceback.format_exc().splitlines()[-2].strip()
    except Exception as e:
        where = [fr for fr in traceback.extract_tb(e.__traceback__)
                 if os.path.basename(fr.filename).startswith("test_")]
        at = " at %s:%d" % (os.path.basename(where[-1].filename), where[-1].lineno) \
            if where else ""
        status, reason = "FAIL", "%s: %s%s" % (type(e).__name__, e, at)
        if verbose:
            traceback.print_exc()
    finally:
        signal.alarm(0)
    try:
        signal.alarm(15)
        err = ctx.close(check_exit=(status == "PASS"))
    except HardTimeout:
        err = "cleanup timed out"
    finally:
        signal.alarm(0)
    if err and status == "PASS":
        status, reason = "FAIL", err
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

    tests = [(m, f) for m, f in discover() if selected(m, f, args.only)]
    if args.list:
        for m, f in tests:
            print("%s.%s" % (m, f.__name__))
        return 0
    bin_ = harness.broker_command()
    if not os.access(bin_, os.X_OK) and os.sep in bin_:
        print("FAIL setup: broker %s not found or not executable" % bin_)
        print("integration: 0 passed, 1 failed, 0 skipped")
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
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
    except Interrupted:
        print("integration: interrupted")
        sys.exit(130)
