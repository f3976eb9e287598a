"""The ACL on every path a message takes: PUBLISH (write), SUBSCRIBE
(0x80 where nothing is readable), live, retained, queued and restored
deliveries (read), and the will at CONNECT and when it fires (write);
%c/%u never widened by hostile ids; a reload that never opens the door."""

import os
import signal
import socket
import time

from harness import PUBACK, RawClient, ack_packet, check, require_cairn, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _acl(ctx, text, name="acl"):
    path = os.path.join(ctx.workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _passwd(ctx, users):
    """A password file written by cairn-passwd's sibling, Debian's
    mosquitto_passwd (batch mode), for (user, password) pairs."""
    import subprocess
    path = os.path.join(ctx.workdir, "passwd")
    open(path, "w").close()
    for u, p in users:
        subprocess.run(["mosquitto_passwd", "-b", path, u, p], check=True, timeout=10,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def _received(c, timeout=0.8):
    """Every PUBLISH c receives until it is silent for timeout; acknowledges.
    Only silence ends it: a close or another packet fails the test, since an
    empty list is what most callers expect of a denied message."""
    got = []
    while True:
        try:
            m = c.read_publish(timeout)
        except socket.timeout:
            return got
        if m["qos"] == 1:
            c.send(ack_packet(PUBACK, m["pid"]))
        got.append((m["topic"], m["payload"]))


def _client(port, cid, user=None, password=None, **kw):
    c = RawClient(port)
    c.connect(cid, username=user, password=password, **kw)
    return c


# covers: MQTT-3.3.5-2
def test_acl_publish_denied_is_acknowledged_and_dropped(ctx):
    acl = _acl(ctx, "topic read #\ntopic write open/#\n")
    b = ctx.broker(acl_file=acl)
    s = _client(b.port, "reader")
    check(s.subscribe(1, [("#", 1)]) == [1], "subscription to # refused")
    p = _client(b.port, "writer")
    p.publish("closed/x", b"no", qos=1, pid=1)   # PUBACK comes all the same
    p.publish("open/x", b"yes", qos=1, pid=2)
    p.publish("closed/y", b"no", qos=0)
    got = _received(s)
    check(got == [("open/x", b"yes")], "reader got %r" % got)
    b.assert_serves("denied publishes")


def test_acl_subscribe_with_nothing_readable_gets_0x80(ctx):
    """tests/conformance/acl is what the Paho 3.1.1 suite's
    test_subscribe_failure needs: test/nosubscribe refused, the rest open."""
    b = ctx.broker(acl_file=os.path.join(ROOT, "tests", "conformance", "acl"))
    c = _client(b.port, "paho-like")
    codes = c.subscribe(1, [("test/nosubscribe", 2), ("TopicA", 2), ("Topic/C", 1)])
    check(codes == [0x80, 2, 1], "SUBACK codes %r" % codes)
    p = _client(b.port, "paho-like-pub")
    p.publish("TopicA", b"ok", qos=1, pid=3)
    check(_received(c) == [("TopicA", b"ok")], "the granted filter does not deliver")


def test_acl_read_checked_on_live_and_retained_deliveries(ctx):
    acl = _acl(ctx, "topic readwrite #\ntopic deny secret/#\n")
    b = ctx.broker(acl_file=acl)
    p = _client(b.port, "pub")
    p.publish("secret/r", b"hidden", qos=1, pid=1, retain=True)
    p.publish("plain/r", b"shown", qos=1, pid=2, retain=True)
    s = _client(b.port, "sub")
    check(s.subscribe(1, [("#", 1)]) == [1], "# refused though partly readable")
    got = _received(s)
    check(got == [("plain/r", b"shown")], "retained on SUBSCRIBE: %r" % got)
    p.publish("secret/live", b"hidden", qos=1, pid=3)
    p.publish("plain/live", b"shown", qos=1, pid=4)
    got = _received(s)
    check(got == [("plain/live", b"shown")], "live deliveries: %r" % got)


def test_acl_patterns_are_never_widened_by_hostile_ids(ctx):
    pw = _passwd(ctx, [("a/+", "x"), ("alice", "x")])
    acl = _acl(ctx, "pattern readwrite devices/%c/#\npattern readwrite users/%u/#\n")
    b = ctx.broker(acl_file=acl, password_file=pw, allow_anonymous="false")
    victim = _client(b.port, "b", "alice", "x")
    victim.publish("devices/b/state", b"b's", qos=1, pid=1, retain=True)
    victim.publish("users/alice/mail", b"alice's", qos=1, pid=2, retain=True)
    for cid, user in (("#", "a/+"), ("+", "a/+"), ("a/+", "a/+")):
        c = _client(b.port, cid, user, "x")
        codes = c.subscribe(1, [("devices/b/#", 1), ("users/alice/#", 1)])
        got = _received(c, 0.5)
        check(got == [], "client id %r, username %r read %r (SUBACK %r)" %
              (cid, user, got, codes))
        c.close()


def test_acl_will_checked_at_connect_and_again_when_it_fires(ctx):
    acl_text = "topic read #\ntopic write wills/#\n"
    acl = _acl(ctx, acl_text)
    b = ctx.broker(acl_file=acl)
    w = _client(b.port, "watcher")
    w.subscribe(1, [("#", 1)])
    bad = RawClient(b.port)
    _, rc = bad.connect("bad-will", expect_rc=None, will=("forbidden/w", b"x", 1, False))
    check(rc == 5, "a will to a topic the client may not write got CONNACK %d" % rc)
    check(bad.expect_closed(2), "refused connection left open")
    c = _client(b.port, "dies", will=("wills/dies", b"gone", 1, False))
    # The operator revokes the right before the will fires.
    _acl(ctx, "topic read #\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    # Only a line after the SIGHUP counts: the start-up line names the
    # rules too, and aborting before the reload would test nothing.
    check(wait_until(lambda: "SIGHUP" in b.log_text() and
                     ("reload: acl_file" in b.log_text() or
                      "rules" in b.log_text().split("SIGHUP")[-1]), 3),
          "no ACL reload logged")
    c.abort()
    time.sleep(0.5)
    got = _received(w)
    check(got == [], "a will published after the ACL revoked it: %r" % got)
    check(wait_until(lambda: "will to 'wills/dies' dropped" in b.log_text(), 2),
          "the dropped will is not logged")


def test_acl_reload_revokes_queued_messages_and_keeps_old_acl_on_a_bad_file(ctx):
    require_cairn("cairn's reload")
    acl = _acl(ctx, "topic readwrite #\n")
    b = ctx.durable_broker("sqlite", acl_file=acl)
    s = _client(b.port, "offline", clean=False)
    s.subscribe(1, [("q/#", 1)])
    s.close()
    time.sleep(0.2)
    p = _client(b.port, "pub")
    p.publish("q/kept", b"1", qos=1, pid=1)
    p.publish("q/revoked", b"2", qos=1, pid=2)
    # A bad line: the reload keeps the ACL in force, names FILE:LINE.
    _acl(ctx, "topic readwrite #\ntopic sometimes q/revoked\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "keeping the acl_file" in b.log_text(), 3),
          "a bad ACL on reload not reported")
    check(acl + ":2:" in b.log_text(), "the bad line is not named FILE:LINE")
    p.publish("q/after-bad-reload", b"3", qos=1, pid=3)
    # Now a good one that denies reading q/revoked: queued messages too.
    _acl(ctx, "topic readwrite #\ntopic deny q/revoked\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: b.log_text().count("acl_file %s: " % acl) >= 2, 3),
          "the good ACL was not reloaded")
    s = RawClient(b.port)
    sp, _ = s.connect("offline", clean=False)
    check(sp == 1, "session not resumed")
    got = sorted(_received(s))
    check(got == [("q/after-bad-reload", b"3"), ("q/kept", b"1")],
          "after the reloads the offline session got %r" % got)


def test_acl_restored_session_checked_against_the_acl_in_force_now(ctx):
    require_cairn("cairn's restore")
    acl = _acl(ctx, "topic readwrite #\n")
    b = ctx.durable_broker("lmdb", acl_file=acl)
    s = _client(b.port, "restored", clean=False)
    s.subscribe(1, [("r/#", 1)])
    s.close()
    time.sleep(0.2)
    p = _client(b.port, "pub")
    p.publish("r/a", b"a", qos=1, pid=1)
    p.publish("r/b", b"b", qos=1, pid=2)
    p.close()
    b.stop()
    _acl(ctx, "topic readwrite #\ntopic deny r/b\n")
    b.start()
    s = RawClient(b.port)
    sp, _ = s.connect("restored", clean=False)
    check(sp == 1, "session not restored")
    got = _received(s)
    check(got == [("r/a", b"a")], "restored deliveries under the new ACL: %r" % got)


def test_acl_bad_file_stops_start_and_config_check(ctx):
    require_cairn("cairn -t")
    import subprocess
    from harness import broker_command
    acl = _acl(ctx, "user bob\ntopic readwrite ok/#\ntopic bogus x\n")
    b = ctx.broker(start=False, acl_file=acl)
    r = subprocess.run([broker_command(), "-t", "-c", b.conf_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    check(r.returncode != 0, "cairn -t accepted a bad ACL")
    check((acl + ":3:").encode() in r.stderr, "cairn -t does not name FILE:LINE: %r" % r.stderr)
    r = subprocess.run([broker_command(), "-c", b.conf_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    check(r.returncode != 0, "cairn started with a bad ACL")


def test_acl_empty_or_comment_only_file_denies_everything(ctx):
    """negative-tests row 16: an empty ACL is no ACL-less broker."""
    for text in ("", "# nothing granted\n\n"):
        acl = _acl(ctx, text, "acl-%d" % len(text))
        b = ctx.broker(acl_file=acl)
        s = _client(b.port, "s")
        check(s.subscribe(1, [("#", 1)]) == [0x80], "an empty ACL granted a subscription")
        p = _client(b.port, "p")
        p.publish("any/t", b"x", qos=1, pid=1)
        check(_received(s, 0.5) == [], "an empty ACL let a message through")
        b.stop()


def test_acl_per_listener_files_each_enforced(ctx):
    """negative-tests row 18: with per_listener_settings every listener
    enforces its own ACL, and a client of one never gets the other's."""
    require_cairn("cairn's per-listener contexts")
    from harness import free_port
    acl_a = _acl(ctx, "topic readwrite a/#\n", "acl-a")
    acl_b = _acl(ctx, "topic readwrite b/#\n", "acl-b")
    port_b = free_port()
    b = ctx.broker(start=False)
    b.options = {"per_listener_settings": "true"}
    b._write_conf()
    with open(b.conf_path) as f:
        first = f.read().splitlines()
    lines = [first[0], "allow_anonymous true", "acl_file " + acl_a,
             "listener %d 127.0.0.1" % port_b, "allow_anonymous true", "acl_file " + acl_b,
             "log_dest stderr", "log_type all"]
    with open(b.conf_path, "w") as f:
        f.write("per_listener_settings true\n" + "\n".join(lines) + "\n")
    b.start()
    for port, mine, theirs in ((b.port, "a/x", "b/x"), (port_b, "b/x", "a/x")):
        c = _client(port, "c%d" % port)
        codes = c.subscribe(1, [(mine, 1), (theirs, 1)])
        check(codes == [1, 0x80], "listener %d: SUBACK %r" % (port, codes))
        p = _client(port, "p%d" % port)
        p.publish(mine, b"ok", qos=1, pid=1)
        p.publish(theirs, b"no", qos=1, pid=2)
        got = _received(c)
        check(got == [(mine, b"ok")], "listener %d: got %r" % (port, got))


def test_acl_reload_with_the_file_gone_keeps_the_acl(ctx):
    """negative-tests row 19: a reload that cannot read the file never falls
    back to no ACL."""
    require_cairn("cairn's reload")
    acl = _acl(ctx, "topic readwrite open/#\n")
    b = ctx.broker(acl_file=acl)
    os.rename(acl, acl + ".moved")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "keeping the acl_file" in b.log_text(), 3),
          "a missing ACL on reload not reported")
    s = _client(b.port, "s")
    check(s.subscribe(1, [("closed/#", 1)]) == [0x80], "the ACL fell open after a reload")


def test_acl_retained_message_dies_with_its_publishers_write_access(ctx):
    """negative-tests row 20: publish retained, revoke the publisher's
    write access, a new subscriber must not receive it."""
    pw = _passwd(ctx, [("pub", "p"), ("reader", "r")])
    acl = _acl(ctx, "user pub\ntopic write news/#\nuser reader\ntopic read news/#\n")
    b = ctx.broker(acl_file=acl, password_file=pw, allow_anonymous="false")
    p = _client(b.port, "publisher", "pub", "p")
    p.publish("news/a", b"kept", qos=1, pid=1, retain=True)
    p.publish("news/b", b"revoked", qos=1, pid=2, retain=True)
    s = _client(b.port, "r1", "reader", "r")
    s.subscribe(1, [("news/#", 1)])
    check(sorted(_received(s)) == [("news/a", b"kept"), ("news/b", b"revoked")],
          "retained messages not delivered before the revocation")
    _acl(ctx, "user pub\ntopic write news/a\nuser reader\ntopic read news/#\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: b.log_text().count("acl_file %s: " % acl) >= 2, 3),
          "the ACL was not reloaded")
    s2 = _client(b.port, "r2", "reader", "r")
    s2.subscribe(1, [("news/#", 1)])
    got = _received(s2)
    check(got == [("news/a", b"kept")], "after the publisher lost news/b: %r" % got)


def test_acl_takeover_by_another_identity_rechecks_queued_and_inflight(ctx):
    """A session taken over by another user (or an anonymous client) keeps
    its messages only where the new identity may read them: queued ones
    and ones already sent but not acknowledged alike."""
    pw = _passwd(ctx, [("alice", "a"), ("carol", "c"), ("admin", "x")])
    acl = _acl(ctx, "topic read public/#\n"
                    "user alice\ntopic readwrite alice/#\n"
                    "user carol\ntopic readwrite carol/#\n"
                    "user admin\ntopic readwrite #\n")
    b = ctx.durable_broker("sqlite", acl_file=acl, password_file=pw, allow_anonymous="true")
    for thief in (("carol", "c"), (None, None)):
        cid = "shared-id-%s" % thief[0]
        a = _client(b.port, cid, "alice", "a", clean=False)
        a.subscribe(1, [("alice/#", 1)])
        admin = _client(b.port, "admin-" + cid, "admin", "x")
        admin.publish("alice/inflight", b"sent-not-acked", qos=1, pid=1)
        m = a.read_publish(3)  # in flight to alice, never acknowledged
        check(m["payload"] == b"sent-not-acked", "alice did not get the first message")
        a.abort()
        time.sleep(0.3)
        admin.publish("alice/queued", b"queued-for-alice", qos=1, pid=2)
        t = RawClient(b.port)
        sp, _ = t.connect(cid, clean=False, username=thief[0], password=thief[1])
        check(sp == 1, "the session was not resumed")
        got = _received(t)
        check(got == [], "%s taking over alice's session read %r" %
              (thief[0] or "an anonymous client", got))
        t.close()
        admin.close()
