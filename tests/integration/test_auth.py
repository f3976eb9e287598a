"""Authentication with real clients: password files written by Debian's
mosquitto_passwd used by cairn and files written by cairn-passwd used by
Debian's mosquitto, the CONNACK codes a refused client gets, the log line
of a refused login, -t, per-listener settings, and SIGHUP reloads that keep
the old file when the new one cannot be read and close removed users."""

import os
import signal
import socket
import subprocess

from harness import (HOST, Closed, Paho, RawClient, broker_command, check,
                     connect_packet, free_port, publish_packet, require_cairn, wait_until)

MOSQUITTO = "/usr/sbin/mosquitto"


def _tool(name):
    """cairn-passwd beside the broker binary under test."""
    return os.path.join(os.path.dirname(broker_command()), name)


def _cairn_passwd(*args, stdin=None):
    return subprocess.run([_tool("cairn-passwd")] + list(args), capture_output=True,
                          input=stdin, timeout=10)


def _mosquitto_passwd(*args):
    r = subprocess.run(["mosquitto_passwd"] + list(args), capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "mosquitto_passwd %r: %s" % (args, r.stderr.decode()))


def _pwfile(ctx, name, users, tool="cairn"):
    """A password file of users {name: password}, written by either tool."""
    path = os.path.join(ctx.workdir, name)
    first = True
    for u, p in users.items():
        args = (["-c"] if first else []) + ["-b", path, u, p]
        if tool == "cairn":
            r = _cairn_passwd(*args)
            check(r.returncode == 0, "cairn-passwd %r: %s" % (args, r.stderr.decode()))
        else:
            _mosquitto_passwd(*args)
        first = False
    return path


def _auth_broker(ctx, path, allow_anonymous="false", **options):
    require_cairn("cairn's password_file")
    return ctx.broker(password_file=path, allow_anonymous=allow_anonymous, **options)


def _connack(port, client_id, **kw):
    """CONNACK return code of one CONNECT; a refused client must be closed."""
    c = RawClient(port)
    try:
        sp, rc = c.connect(client_id, expect_rc=None, **kw)
        if rc != 0:
            check(sp == 0, "session present set on a refused CONNECT")
            check(c.expect_closed(2), "connection left open after CONNACK %d" % rc)
        return rc
    finally:
        c.close()


def _pub(port, user, password, topic="t/auth", msg="m"):
    r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-i", "pub-" + user,
                        "-u", user, "-P", password, "-t", topic, "-m", msg, "-q", "1"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    return r.returncode, r.stderr.decode("utf-8", "replace")


# covers: MQTT-3.1.2-19 MQTT-3.1.2-21 MQTT-3.2.2-4 MQTT-3.2.2-5
def test_mosquitto_passwd_file_with_cairn(ctx):
    """A file written by mosquitto_passwd, both hash kinds and a UTF-8 name
    and password, works with cairn; every wrong login gets CONNACK 4."""
    path = _pwfile(ctx, "mosq.pw", {"alice": "secret", "bøb é": "pässwörd:x"}, tool="mosq")
    _mosquitto_passwd("-H", "sha512", "-b", path, "carol", "pw6")
    b = _auth_broker(ctx, path)
    check(_connack(b.port, "a1", username="alice", password="secret") == 0,
          "alice refused")
    check(_connack(b.port, "b1", username="bøb é", password="pässwörd:x") == 0,
          "UTF-8 user refused")
    check(_connack(b.port, "c1", username="carol", password="pw6") == 0, "$6$ user refused")
    check(_connack(b.port, "a2", username="alice", password="Secret") == 4,
          "wrong password not refused with 4")
    check(_connack(b.port, "a3", username="alice") == 4, "missing password not refused with 4")
    check(_connack(b.port, "z1", username="zed", password="secret") == 4,
          "unknown user not refused with 4")
    check(_connack(b.port, "anon") == 5, "anonymous client not refused with 5")
    # Real clients: mosquitto_pub and paho.
    rc, err = _pub(b.port, "alice", "secret")
    check(rc == 0, "mosquitto_pub -u alice failed: %s" % err)
    rc, err = _pub(b.port, "alice", "nope")
    check(rc != 0, "mosquitto_pub with a wrong password succeeded")
    sub = Paho(b.port, "paho-sub", username="bøb é", password="pässwörd:x", ctx=ctx)
    sub.connect()
    sub.subscribe("t/auth", 1)
    rc, err = _pub(b.port, "carol", "pw6", msg="hello")
    check(rc == 0, "mosquitto_pub -u carol failed: %s" % err)
    check(sub.get().payload == b"hello", "paho subscriber missed the message")
    bad = Paho(b.port, "paho-bad", username="carol", password="pw7", ctx=ctx)
    bad.connect(expect_rc=4)


def test_refused_login_is_logged_without_the_password(ctx):
    path = _pwfile(ctx, "p.pw", {"alice": "secret"})
    b = _auth_broker(ctx, path)
    check(_connack(b.port, "cid-42", username="alice", password="hunter2-typo") == 4,
          "wrong password accepted")
    check(_connack(b.port, "cid-43", username="evil\nuser", password="x") == 4,
          "unknown user accepted")
    check(_connack(b.port, "cid-44") == 5, "anonymous accepted")
    log = b.log_text()
    lines = [ln for ln in log.splitlines() if "login refused" in ln]
    check(any("cid-42" in ln and "'alice'" in ln and HOST in ln for ln in lines),
          "no log line with client id, username and address:\n%s" % "\n".join(lines))
    check(any("cid-43" in ln and "evil\\x0auser" in ln for ln in lines),
          "a control character in a username not escaped in the log")
    check(any("cid-44" in ln and "(none)" in ln for ln in lines), "anonymous refusal not logged")
    check("hunter2" not in log, "the password appears in the log")
    check(not any(ln.startswith("user") for ln in log.splitlines()),
          "a username split the log line")
    b.stop()
    check("3 logins refused" in b.log_text(), "refused logins not counted at exit")


# covers: MQTT-3.1.4-5
def test_nothing_after_a_refused_connect_is_processed(ctx):
    """A PUBLISH sent right behind a refused CONNECT never reaches anyone."""
    path = _pwfile(ctx, "p.pw", {"alice": "secret"})
    b = _auth_broker(ctx, path)
    sub = RawClient(b.port)
    sub.connect("watcher", username="alice", password="secret")
    sub.subscribe(1, [("t/#", 0)])
    c = RawClient(b.port)
    c.send(connect_packet("intruder", username="alice", password="guess") +
           publish_packet("t/x", b"sneaked in"))
    _, body = c.expect(2)  # CONNACK
    check(body[1] == 4, "CONNACK %d, want 4" % body[1])
    check(c.expect_closed(2), "refused connection left open")
    check(sub.expect_silence(0.5), "a PUBLISH behind a refused CONNECT was delivered")
    c.close()
    sub.close()


# covers: MQTT-3.1.2-22
def test_password_without_username_is_a_protocol_error(ctx):
    path = _pwfile(ctx, "p.pw", {"alice": "secret"})
    b = _auth_broker(ctx, path, allow_anonymous="true")
    c = RawClient(b.port)
    c.send(connect_packet("pw-only", password="secret"))
    try:
        t, _, _ = c.read_packet(2)
        raise AssertionError("packet type %d answered a password without username" % t)
    except Closed:
        pass
    c.close()
    b.assert_serves("a password without a username")


def test_allow_anonymous_with_password_file(ctx):
    """Anonymous clients come in; a username must still carry its password."""
    path = _pwfile(ctx, "p.pw", {"alice": "secret"})
    b = _auth_broker(ctx, path, allow_anonymous="true")
    check(_connack(b.port, "anon") == 0, "anonymous refused with allow_anonymous true")
    check(_connack(b.port, "a", username="alice", password="secret") == 0, "alice refused")
    check(_connack(b.port, "b", username="alice", password="bad") == 4,
          "a wrong password let in because anonymous clients are allowed")
    check(_connack(b.port, "c", username="zed") == 4, "an unknown username let in")


def test_cairn_passwd_file_with_mosquitto(ctx):
    """Debian's mosquitto accepts a file cairn-passwd wrote, both hashes."""
    require_cairn("needs cairn-passwd")
    if not os.path.exists(MOSQUITTO):
        raise AssertionError("%s is not installed" % MOSQUITTO)
    path = _pwfile(ctx, "cairn.pw", {"alice": "secret", "bøb": "p:w ö"})
    r = _cairn_passwd("-H", "sha512", "-b", path, "carol", "pw6")
    check(r.returncode == 0, "cairn-passwd -H sha512: %s" % r.stderr.decode())
    r = _cairn_passwd(path, "dave", stdin=b"typed pw\ntyped pw\n")
    check(r.returncode == 0, "cairn-passwd with a piped password: %s" % r.stderr.decode())
    port = free_port()
    conf = os.path.join(ctx.workdir, "mosquitto.conf")
    lines = ["listener %d %s" % (port, HOST), "allow_anonymous false",
             "password_file %s" % path, "log_dest stderr"]
    if os.geteuid() == 0:
        lines.append("user root")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    ctx.spawn([MOSQUITTO, "-c", conf], "mosquitto.log")

    def listening():
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return True
        except OSError:
            return False
    check(wait_until(listening, 5), "mosquitto did not listen")
    for user, pw in (("alice", "secret"), ("bøb", "p:w ö"), ("carol", "pw6"),
                     ("dave", "typed pw")):
        rc, err = _pub(port, user, pw)
        check(rc == 0, "mosquitto refused %s from a cairn-passwd file: %s" % (user, err))
    rc, _ = _pub(port, "alice", "wrong")
    check(rc != 0, "mosquitto accepted a wrong password")


def test_cairn_passwd_edits(ctx):
    """Update, delete and -U keep every other line (comments too), and a
    file mosquitto_passwd edits afterwards still works with cairn."""
    require_cairn("needs cairn-passwd")
    path = os.path.join(ctx.workdir, "e.pw")
    with open(path, "w") as f:
        f.write("# the team\nalice:plain-a\nbob:plain-b\n")
    os.chmod(path, 0o640)
    check(_cairn_passwd("-U", path).returncode == 0, "-U failed")
    check(_cairn_passwd("-b", path, "bob", "new-b").returncode == 0, "update failed")
    check(_cairn_passwd("-b", path, "carol", "c").returncode == 0, "add failed")
    check(_cairn_passwd("-D", path, "nobody").returncode == 1, "deleting a missing user worked")
    check(_cairn_passwd("-b", path, "a:b", "x").returncode == 1, "a ':' in a name accepted")
    r = _cairn_passwd(path, "erin", stdin=b"one\ntwo\n")
    check(r.returncode == 1, "mismatched passwords accepted")
    text = open(path).read()
    check(text.startswith("# the team\nalice:$7$101$"), "comment or order lost:\n" + text)
    check("plain" not in text, "-U left a plain text password")
    check(len(text.splitlines()) == 4, "unexpected lines:\n" + text)
    check(os.stat(path).st_mode & 0o777 == 0o640, "file mode not kept")
    check(not [n for n in os.listdir(ctx.workdir) if n.startswith("e.pw.")],
          "a temporary file was left behind")
    b = _auth_broker(ctx, path)
    for user, pw in (("alice", "plain-a"), ("bob", "new-b"), ("carol", "c")):
        check(_connack(b.port, "c-" + user, username=user, password=pw) == 0,
              "%s refused after the edits" % user)
    # mosquitto_passwd 2.0.11 calls a comment line corrupt (and keeps only
    # the user it was adding): it gets the file without its comment.
    with open(path, "w") as f:
        f.write(text.split("\n", 1)[1])
    _mosquitto_passwd("-b", path, "dave", "d")
    b.stop()
    b.start()
    for user, pw in (("alice", "plain-a"), ("bob", "new-b"), ("carol", "c"), ("dave", "d")):
        check(_connack(b.port, "d-" + user, username=user, password=pw) == 0,
              "%s refused after mosquitto_passwd's edit" % user)
    check(_cairn_passwd("-D", path, "bob").returncode == 0, "delete failed")
    check("bob:" not in open(path).read(), "bob still in the file")


def _alive(c):
    """The connection still answers a PINGREQ."""
    try:
        c.send(b"\xc0\x00")
        t, _, _ = c.read_packet(2)
        return t == 13
    except (Closed, OSError):
        return False


def test_reload_keeps_old_file_and_closes_removed_users(ctx):
    path = _pwfile(ctx, "r.pw", {"alice": "a", "bob": "b", "carol": "c", "dave": "d"})
    b = _auth_broker(ctx, path)
    conns = {}
    for u in ("alice", "bob", "carol", "dave"):
        conns[u] = RawClient(b.port)
        will = ("will/" + u, "gone", 0, False) if u == "carol" else None
        conns[u].connect("c-" + u, username=u, password=u[0], will=will)
    conns["alice"].subscribe(1, [("will/#", 0)])
    anon_ok = _connack(b.port, "anon")
    check(anon_ok == 5, "anonymous not refused")

    # 1. The file cannot be read: the old one stays in force, nobody is closed.
    os.rename(path, path + ".away")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "keeping the password_file" in b.log_text(), 3),
          "no log line for the unreadable file")
    for u, c in conns.items():
        check(_alive(c), "%s closed by a reload that failed" % u)
    check(_connack(b.port, "x-bob", username="bob", password="b") == 0,
          "old file not in force after a failed reload")
    os.rename(path + ".away", path)

    # 2. bob removed, carol's password changed, dave's line broken by an
    # edit, alice untouched: bob, carol and dave are closed, alice stays.
    check(_cairn_passwd("-D", path, "bob").returncode == 0, "delete failed")
    check(_cairn_passwd("-b", path, "carol", "c2").returncode == 0, "update failed")
    text = open(path).read().replace("dave:$7$101$", "dave:$7$x$")
    with open(path, "w") as f:
        f.write(text)
    dave_line = [i + 1 for i, ln in enumerate(text.splitlines()) if ln.startswith("dave:")][0]
    os.kill(b.proc.pid, signal.SIGHUP)
    for u in ("bob", "carol", "dave"):
        check(conns[u].expect_closed(3), "%s still connected after the reload" % u)
    # The close is no DISCONNECT: carol's will is published.
    m = conns["alice"].read_publish(3)
    check(m["topic"] == "will/carol" and m["payload"] == b"gone", "will not published: %r" % m)
    check(_alive(conns["alice"]), "alice closed though her password did not change")
    log = b.log_text()
    check("credentials removed or changed by a reload" in log, "no reason logged")
    check("%s:%d:" % (path, dave_line) in log, "the broken line not logged with FILE:LINE")
    check("$7$x$" not in log, "a hash appears in the log")
    check(_connack(b.port, "y-bob", username="bob", password="b") == 4, "bob still logs in")
    check(_connack(b.port, "y-carol", username="carol", password="c") == 4,
          "carol's old password still works")
    check(_connack(b.port, "z-carol", username="carol", password="c2") == 0,
          "carol's new password refused")
    check(_connack(b.port, "y-dave", username="dave", password="d") == 4,
          "a user whose line is broken still logs in")
    for c in conns.values():
        c.close()


def _run_cairn_t(ctx, lines):
    conf = os.path.join(ctx.workdir, "t.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return subprocess.run([broker_command(), "-t", "-c", conf], capture_output=True,
                          timeout=10, stdin=subprocess.DEVNULL)


def test_config_check_reads_password_files(ctx):
    require_cairn("cairn -t")
    good = _pwfile(ctx, "good.pw", {"alice": "a"})
    r = _run_cairn_t(ctx, ["listener %d" % free_port(), "password_file %s" % good])
    check(r.returncode == 0, "-t refused a good file: %s" % r.stderr.decode())
    missing = os.path.join(ctx.workdir, "missing.pw")
    r = _run_cairn_t(ctx, ["password_file %s" % missing])
    check(r.returncode == 1 and missing in r.stderr.decode(),
          "-t passed a missing password file: %r" % r.stderr)
    broken = os.path.join(ctx.workdir, "broken.pw")
    with open(broken, "w") as f:
        f.write(open(good).read() + "bob:cleartext-pw\n")
    r = _run_cairn_t(ctx, ["per_listener_settings true", "listener %d" % free_port(),
                           "password_file %s" % broken])
    err = r.stderr.decode()
    check(r.returncode == 1 and "%s:2:" % broken in err and "cleartext-pw" not in err,
          "-t did not report the malformed line 2: %r" % err)


def test_per_listener_password_files(ctx):
    """per_listener_settings: each listener checks its own file."""
    require_cairn("cairn's per-listener password_file")
    pa = _pwfile(ctx, "a.pw", {"alice": "a"})
    pb = _pwfile(ctx, "b.pw", {"bob": "b"})
    p1, p2 = free_port(), free_port()
    b = ctx.broker(start=False)
    with open(b.conf_path, "w") as f:
        f.write("\n".join(["per_listener_settings true",
                           "log_dest stderr", "log_type all",
                           "listener %d %s" % (p1, HOST), "password_file %s" % pa,
                           "listener %d %s" % (p2, HOST), "password_file %s" % pb,
                           "allow_anonymous true"]) + "\n")
    b.port = p1
    b.start()
    check(_connack(p1, "a1", username="alice", password="a") == 0, "alice refused on 1")
    check(_connack(p1, "b1", username="bob", password="b") == 4, "bob let in on 1")
    check(_connack(p1, "n1") == 5, "anonymous let in on 1")
    check(_connack(p2, "b2", username="bob", password="b") == 0, "bob refused on 2")
    check(_connack(p2, "a2", username="alice", password="a") == 4, "alice let in on 2")
    check(_connack(p2, "n2") == 0, "anonymous refused on 2")
