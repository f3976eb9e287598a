"""Configured limits (queue bounds), the config checker, and a smoke test
with the mosquitto command-line clients."""

import os
import re
import signal
import socket
import subprocess
import time

from harness import (HOST, Paho, RawClient, broker_command, check, require_cairn,
                     ack_packet, PUBACK)


def test_max_queued_messages_bounds_offline_queue(ctx):
    b = ctx.broker(max_queued_messages=5, max_inflight_messages=1)
    s = RawClient(b.port)
    s.connect("bounded", clean=False)
    s.subscribe(1, [("mq/t", 1)])
    s.disconnect()
    p = RawClient(b.port)
    p.connect("bounded-pub")
    for i in range(20):
        p.publish("mq/t", b"%d" % i, qos=1, pid=i + 1)
    s = RawClient(b.port)
    sp, _ = s.connect("bounded", clean=False)
    check(sp == 1, "session present %d" % sp)
    got = []
    end = time.monotonic() + 3
    while time.monotonic() < end:
        if s.expect_silence(0.5) if got else False:
            break
        try:
            m = s.read_publish(1.0)
        except socket.timeout:
            break  # the queue is drained; a close or another packet fails
        got.append(m["payload"])
        s.send(ack_packet(PUBACK, m["pid"]))
    check(1 <= len(got) <= 6, "offline session got %d of 20 with max_queued_messages 5 "
          "(+1 in flight)" % len(got))
    check(got == sorted(got, key=int), "queued messages out of order: %r" % got)
    check(re.search(r"drop", b.log_text(), re.I),
          "no log line mentions the dropped messages")


# covers: MQTT-7.0.0-2 MQTT-7.1.1-1
def test_smoke_mosquitto_clients_round_trip(ctx):
    b = ctx.broker()
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(b.port), "-t", "smoke/#",
                            "-C", "1", "-v", "-q", "1", "-W", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 8
        while sub.poll() is None and time.monotonic() < end:
            subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-t", "smoke/t",
                            "-m", "hello", "-q", "1"], timeout=5, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                sub.wait(0.3)
            except subprocess.TimeoutExpired:
                pass
        out, err = sub.communicate(timeout=5) if sub.poll() is not None else (b"", b"")
        check(sub.returncode == 0, "mosquitto_sub exit %s: %r" % (sub.returncode, err))
        check(out.strip() == b"smoke/t hello", "mosquitto_sub printed %r" % out)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_config_check_mode(ctx):
    require_cairn("-t is cairn's config checker")
    good = os.path.join(ctx.workdir, "good.conf")
    with open(good, "w") as f:
        f.write("listener 1883 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n")
    r = subprocess.run([broker_command(), "-t", "-c", good], capture_output=True, timeout=10)
    check(r.returncode == 0, "-t on a good config: exit %d %r" % (r.returncode, r.stderr))
    bad = os.path.join(ctx.workdir, "bad.conf")
    with open(bad, "w") as f:
        f.write("listener 1883 127.0.0.1\n# comment\nmax_inflight_messages lots\n")
    r = subprocess.run([broker_command(), "-t", "-c", bad], capture_output=True, timeout=10)
    check(r.returncode == 1, "-t on a bad config: exit %d" % r.returncode)
    err = r.stderr.decode("utf-8", "replace")
    check(re.search(re.escape(bad) + r":3: max_inflight_messages: \S", err),
          "stderr %r lacks 'FILE:3: max_inflight_messages: reason'" % err)


def test_paho_round_trip_all_qos(ctx):
    b = ctx.broker()
    s = Paho(b.port, "paho-s", ctx=ctx)
    s.connect()
    check(s.subscribe("pp/#", 2) == [2], "granted")
    p = Paho(b.port, "paho-p", ctx=ctx)
    p.connect()
    for q in (0, 1, 2):
        p.publish("pp/%d" % q, b"q%d" % q, qos=q)
        m = s.get(3)
        check(m.topic == "pp/%d" % q and m.qos == q, "QoS %d round trip: %s %d" %
              (q, m.topic, m.qos))


def _wait_for(path, needle, timeout=3.0, times=1):
    """True once needle stands at least `times` times in the file."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path, errors="replace") as f:
                if f.read().count(needle) >= times:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def test_sighup_reopens_log_and_reloads_log_type(ctx):
    # Log rotation: the file is renamed, SIGHUP makes the broker write to a
    # new one; log_type is re-read; a config broken meanwhile is refused and
    # the running settings are kept.
    require_cairn("SIGHUP reload of log_type and log_dest file is cairn's")
    logfile = os.path.join(ctx.workdir, "cairn-file.log")
    b = ctx.broker(log_dest="file " + logfile, log_type="notice")
    c = Paho(b.port, "hup-1", ctx=ctx)
    c.connect()
    check(_wait_for(logfile, "client hup-1 connected from"), "no connect line in the log file")
    os.rename(logfile, logfile + ".1")
    b.options["log_type"] = "debug"
    b._write_conf()
    os.kill(b.proc.pid, signal.SIGHUP)
    check(_wait_for(logfile + ".1", "SIGHUP: reopening the log"), "SIGHUP not logged")
    raw = RawClient(b.port)
    raw.connect("hup-2")
    check(_wait_for(logfile, "debug: new connection from"),
          "after SIGHUP the new log file lacks debug lines (log_type not reloaded)")
    with open(b.conf_path, "a") as f:
        f.write("max_inflight_messages lots\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    time.sleep(0.3)
    check(b.alive(), "a broken config on SIGHUP stopped the broker")
    again = RawClient(b.port)
    sp, rc = again.connect("hup-3")
    check(rc == 0, "broker refused a client after a failed reload")
    check(_wait_for(logfile, "debug: new connection from", times=2),
          "log_type lost after a failed reload")
