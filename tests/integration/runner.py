"""What tests/integration/run.py and tests/stress/run.py share: finding the
test functions in a directory's modules, and running one under a hard
timeout (SIGALRM) with its brokers closed afterwards, by PID, under a
second timeout. SIGTERM and SIGINT raise Interrupted out of the test being
run, so the runner can stop that test's brokers and give up."""

import glob
import importlib
import inspect
import os
import signal
import traceback

import harness


class HardTimeout(BaseException):
    pass


class Interrupted(BaseException):
    pass


def _alarm(signum, frame):
    raise HardTimeout()


def _interrupt(signum, frame):
    raise Interrupted()


def catch_interrupts():
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def discover(directory, module_glob, fn_prefix):
    """[(module name, function)] for every function named fn_prefix* defined
    in directory/module_glob, modules in name order, functions in source
    order. The directory must be on sys.path."""
    found = []
    for path in sorted(glob.glob(os.path.join(directory, module_glob))):
        modname = os.path.splitext(os.path.basename(path))[0]
        mod = importlib.import_module(modname)
        fns = [f for n, f in vars(mod).items()
               if n.startswith(fn_prefix) and inspect.isfunction(f) and f.__module__ == modname]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        found += [(modname, f) for f in fns]
    return found


def run_guarded(ctx, call, timeout, cleanup_timeout, source_prefix, verbose, on_interrupt=None):
    """Runs call() with at most timeout seconds, then ctx.close() with at
    most cleanup_timeout. Returns (status, reason): PASS, SKIP (the test
    raised harness.Skip) or FAIL (an assertion, an exception, the timeout,
    or the close reporting a broker that died or exited badly after a
    pass). An exception's reason names the deepest frame in a file whose
    name starts with source_prefix. On Interrupted the brokers are stopped,
    on_interrupt (if given) is printed, and Interrupted propagates."""
    status, reason = "PASS", ""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        call()
    except harness.Skip as e:
        status, reason = "SKIP", str(e)
    except HardTimeout:
        status, reason = "FAIL", "timed out after %ds" % timeout
    except Interrupted:
        signal.alarm(0)
        ctx.close(check_exit=False)  # stop this test's brokers by PID, then give up
        if on_interrupt:
            print(on_interrupt, flush=True)
        raise
    except AssertionError as e:
        # A bare assert's reason is its source line.
        status, reason = "FAIL", str(e) or (traceback.extract_tb(e.__traceback__)[-1].line or "")
        if verbose:
            traceback.print_exc()
    except Exception as e:
        where = [fr for fr in traceback.extract_tb(e.__traceback__)
                 if os.path.basename(fr.filename).startswith(source_prefix)]
        at = " at %s:%d" % (os.path.basename(where[-1].filename), where[-1].lineno) \
            if where else ""
        status, reason = "FAIL", "%s: %s%s" % (type(e).__name__, e, at)
        if verbose:
            traceback.print_exc()
    finally:
        signal.alarm(0)
    try:
        signal.alarm(cleanup_timeout)
        err = ctx.close(check_exit=(status == "PASS"))
    except HardTimeout:
        err = "cleanup timed out"
    finally:
        signal.alarm(0)
    if err and status == "PASS":
        status, reason = "FAIL", err
    return status, reason
