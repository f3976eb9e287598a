"""Listener settings: who may connect anonymously by default, and
max_connections per listener."""

import os
import time

from harness import (Closed, RawClient, broker_command, check, free_port, require_cairn,
                     wait_until)


def _connack_rc(port, client_id, username=None):
    c = RawClient(port)
    try:
        _, rc = c.connect(client_id, expect_rc=None, username=username)
        if rc != 0:
            check(c.expect_closed(2), "connection left open after CONNACK %d" % rc)
        return rc
    finally:
        c.close()


# covers: MQTT-3.2.2-5
def test_listener_in_file_refuses_anonymous_by_default(ctx):
    """Mosquitto 2.0's default: a config that names a listener must say
    allow_anonymous true to let clients in without a username."""
    b = ctx.broker(start=False)
    del b.options["allow_anonymous"]
    b._write_conf()
    b.start()
    check(_connack_rc(b.port, "anon") == 5, "anonymous client not refused with CONNACK 5")
    require_cairn("without a password file cairn answers a username with CONNACK 4")
    check(_connack_rc(b.port, "named", username="u") == 4,
          "client with a username not refused with CONNACK 4")


def _run_without_listener(ctx, conf_lines):
    """cairn -p PORT with a config that names no listener; stopped by PID."""
    require_cairn("runs the cairn binary with -p")
    port = free_port()
    conf = os.path.join(ctx.workdir, "nolistener.conf")
    with open(conf, "w") as f:
        f.write("\n".join(["log_dest stderr", "log_type all"] + conf_lines) + "\n")
    ctx.spawn([broker_command(), "-c", conf, "-p", str(port)], "nolistener.log")

    def listening():
        try:
            RawClient(port, timeout=0.2).close()
            return True
        except OSError:
            return False
    check(wait_until(listening, 5), "cairn -p %d did not listen" % port)
    return port


def test_no_listener_in_file_allows_anonymous_on_loopback(ctx):
    port = _run_without_listener(ctx, [])
    check(_connack_rc(port, "anon") == 0, "anonymous client refused on the loopback default")


def test_no_listener_honours_explicit_allow_anonymous_false(ctx):
    """Mosquitto's local-only mode lets anonymous clients in even when the
    file says false; cairn does what the file says."""
    port = _run_without_listener(ctx, ["allow_anonymous false"])
    check(_connack_rc(port, "anon") == 5, "allow_anonymous false ignored without a listener")


def test_max_connections_per_listener(ctx):
    b = ctx.broker(max_connections=2)
    time.sleep(0.3)  # the start-up probe's connection is gone
    a = RawClient(b.port)
    a.connect("mc-a")
    c = RawClient(b.port)
    c.connect("mc-b")
    extra = RawClient(b.port)
    try:
        extra.connect("mc-c")
        refused = False
    except (Closed, OSError):
        refused = True
    check(refused, "a third connection was accepted with max_connections 2")
    extra.close()
    a.close()

    def third_fits():
        d = RawClient(b.port)
        try:
            d.connect("mc-d")
            return True
        except (Closed, OSError):
            return False
        finally:
            d.close()
    check(wait_until(third_fits, 3), "a freed place is not given to a new connection")
    c.close()
    require_cairn("cairn logs the refusal")
    check("max_connections 2 reached" in b.log_text(), "the refusal is not logged")
