#!/usr/bin/python3
"""The stress suite: hostile and heavy clients against a real broker, each
case with its limits stated as named constants in its module and checked.
Every `def case_*(ctx, rec, short)` in tests/stress/stress_*.py runs with
its own brokers and a hard timeout; the runner prints PASS, FAIL or SKIP
per case with the values measured, and ends with "N passed, N failed, N
skipped". Exit status 1 when a case failed, else 0.

Usage: run.py [--short] [--only WORD]... [--list] [--mosquitto] [-v]
  --short      the CI mode: smaller counts and shorter floods where a case
               says so (each case's module names them), under two minutes
  --only WORD  cases whose module or function name contains WORD
  --mosquitto  also run each case that applies against Debian's mosquitto
               and print its numbers on INFO lines (never asserted)
  --list       print the selected cases' names and exit
  -v           print a failure's traceback
The broker is $CAIRN_BIN (default ./cairn relative to the source root),
the load generator $CAIRN_BENCH (default bench/cairn-bench beside it).
Run by `./dev stress` (full) and `./dev stress --short` (CI).
"""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
import runner  # noqa: E402
import stresslib  # noqa: E402

DEFAULT_TIMEOUT = 120
MOSQUITTO = "/usr/sbin/mosquitto"


def case_name(fn):
    return fn.__name__[len("case_"):]


def run_one(fn, short, against_mosquitto, verbose):
    name = case_name(fn)
    ctx = harness.Context("stress-" + name)
    rec = stresslib.Record(name, assert_limits=not against_mosquitto)
    status, reason = runner.run_guarded(
        ctx, lambda: fn(ctx, rec, short), getattr(fn, "timeout", DEFAULT_TIMEOUT), 30,
        "stress", verbose)
    if status == "PASS" and rec.over and rec.assert_limits:
        status = "FAIL"
        reason = "over its limit: " + "; ".join(rec.over)
    if status != "FAIL" or against_mosquitto:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    elif ctx.logs():
        reason += "\n    (broker logs: %s)" % " ".join(ctx.logs())
    return status, reason.strip().replace("\n", "\n    "), rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--mosquitto", action="store_true")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()

    cases = [(m, f) for m, f in runner.discover(HERE, "stress_*.py", "case_")
             if not args.only or any(w in m or w in f.__name__ for w in args.only)]
    if args.list:
        for m, f in cases:
            print("%s.%s" % (m, case_name(f)))
        return 0
    bin_ = harness.broker_command()
    if not os.access(bin_, os.X_OK):
        print("FAIL setup: broker %s not found or not executable" % bin_)
        print("0 passed, 1 failed, 0 skipped")
        return 1
    os.environ["CAIRN_BIN"] = bin_
    os.environ.setdefault("CAIRN_BENCH", os.path.join(os.path.dirname(bin_), "bench",
                                                      "cairn-bench"))
    runner.catch_interrupts()
    print("stress: %s mode, broker %s" % ("short" if args.short else "full",
                                          os.path.basename(bin_)), flush=True)
    passed = failed = skipped = 0
    t0 = time.monotonic()
    for m, f in cases:
        t = time.monotonic()
        status, reason, rec = run_one(f, args.short, False, args.v)
        dt = time.monotonic() - t
        name = case_name(f)
        if status == "PASS":
            passed += 1
            print("PASS %s (%.0fs): %s" % (name, dt, rec.summary()), flush=True)
        elif status == "SKIP":
            skipped += 1
            print("SKIP %s: %s" % (name, reason), flush=True)
        else:
            failed += 1
            print("FAIL %s (%.0fs): %s" % (name, dt, reason), flush=True)
            if rec.items:
                print("    measured: %s" % rec.summary(), flush=True)
        if args.mosquitto and getattr(f, "mosquitto", True):
            if not os.access(MOSQUITTO, os.X_OK):
                print("INFO mosquitto %s: %s not installed" % (name, MOSQUITTO), flush=True)
                continue
            os.environ["CAIRN_BIN"] = MOSQUITTO
            try:
                st, why, mrec = run_one(f, args.short, True, args.v)
            finally:
                os.environ["CAIRN_BIN"] = bin_
            print("INFO mosquitto %s: %s%s" % (
                name, mrec.summary() or "-",
                "" if st == "PASS" else " (%s: %s)" % (st, why.splitlines()[0] if why else "")),
                flush=True)
    print("stress: %.0fs" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except runner.Interrupted:
        print("stress: interrupted")
        sys.exit(130)
