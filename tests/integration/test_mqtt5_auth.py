"""MQTT 5.0 enhanced authentication (5.0 sections 3.15 and 4.12): the AUTH
exchange before the CONNACK, re-authentication after it, the protocol
errors around both, the connect timeout over the whole exchange, and the
ACL held to a user the method authenticated exactly as to a password user.

The method is cairn-test-challenge, compiled only into builds configured
with --enable-fault-injection (./dev test): the broker sends a random
32-byte challenge in AUTH 0x18, the client answers HMAC-SHA256(secret,
challenge), twice; the success carries HMAC-SHA256(secret, challenge1 ||
challenge2). A build without it refuses the method with 0x8C, so these
tests skip there."""

import hashlib
import hmac
import os
import signal
import subprocess

from harness import (CONNACK, PINGREQ_PKT, PINGRESP, PUBACK, RawClient, Skip, broker_command,
                     check, packet, require_cairn, wait_until)
from mqtt5 import (AUTH_DATA, AUTH_METHOD, MAX_PACKET_SIZE, connect5, expect_disconnect, parse_props, props,
                   publish5, read_ack5, read_publish5, read_suback5, subscribe5)
from test_auth import _pwfile

AUTH = 15
METHOD = "cairn-test-challenge"
SECRET = "s3cret-of-alice"


def _broker(ctx, **options):
    """A broker whose test method knows alice (and whatever options add),
    or Skip when this build has no test method."""
    require_cairn("cairn-test-challenge is cairn's test-only method")
    options.setdefault("auth_test_secret", "alice:" + SECRET)
    probe = os.path.join(ctx.workdir, "authprobe.conf")
    with open(probe, "w") as f:
        f.write("auth_test_secret alice:x\n")
    r = subprocess.run([broker_command(), "-c", probe, "-t"], capture_output=True, timeout=10)
    if r.returncode != 0:
        raise Skip("built without --enable-fault-injection: no test authentication method")
    return ctx.broker(**options)


def _mac(secret, msg):
    return hmac.new(secret.encode(), msg, hashlib.sha256).digest()


def auth5(reason, method=METHOD, data=None):
    items = []
    if method is not None:
        items.append((AUTH_METHOD, method))
    if data is not None:
        items.append((AUTH_DATA, data))
    return packet(0xF0, bytes([reason]) + props(*items))


def read_auth(c, reason=0x18):
    """The next packet must be AUTH with reason and our method; returns its data."""
    t, f, body = c.read_packet()
    check(t == AUTH, "expected AUTH 0x%02x, got packet type %d %r" % (reason, t, body[:40]))
    check(f == 0, "AUTH flags %d" % f)
    check(body[0] == reason, "AUTH reason 0x%02x, want 0x%02x" % (body[0], reason))
    pr, _ = parse_props(body, 1)
    check(pr.get(AUTH_METHOD) == METHOD, "AUTH method %r, want %s" % (pr.get(AUTH_METHOD), METHOD))
    return pr.get(AUTH_DATA)


def start_auth(c, client_id, user="alice", **kw):
    """CONNECT naming the method; returns the first challenge."""
    c.send(connect5(client_id, username=user, properties=props((AUTH_METHOD, METHOD)), **kw))
    n1 = read_auth(c)
    check(n1 is not None and len(n1) == 32, "first challenge %r" % (n1,))
    return n1


def authenticate(c, client_id, user="alice", secret=SECRET, **kw):
    """The whole exchange, answered right; returns the CONNACK's properties."""
    n1 = start_auth(c, client_id, user, **kw)
    c.send(auth5(0x18, data=_mac(secret, n1)))
    n2 = read_auth(c)
    check(n2 is not None and len(n2) == 32 and n2 != n1, "second challenge %r" % (n2,))
    c.send(auth5(0x18, data=_mac(secret, n2)))
    _, body = c.expect(CONNACK)
    check(body[1] == 0, "CONNACK reason 0x%02x after a right exchange" % body[1])
    pr, _ = parse_props(body, 2)
    check(pr.get(AUTH_METHOD) == METHOD, "CONNACK method %r" % pr.get(AUTH_METHOD))
    check(pr.get(AUTH_DATA) == _mac(secret, n1 + n2),
          "CONNACK authentication data %r does not prove the secret" % pr.get(AUTH_DATA))
    return pr


def _password_login(port, client_id, user, password):
    """A 5.0 client logged in by the password file (CONNACK 0)."""
    c = RawClient(port)
    c.send(connect5(client_id, username=user, password=password))
    _, body = c.expect(CONNACK)
    check(body[1] == 0, "%s's password login: 0x%02x" % (user, body[1]))
    return c


def expect_connack(c, reason):
    _, body = c.expect(CONNACK)
    check(body[1] == reason, "CONNACK reason 0x%02x, want 0x%02x" % (body[1], reason))
    check(body[0] == 0, "session present with a refusal")
    check(c.expect_closed(3), "socket left open after CONNACK 0x%02x" % reason)


# covers: MQTT5-4.12.0-2 MQTT5-4.12.0-5 MQTT5-3.15.2-1 MQTT5-3.15.1-1
def test_mqtt5_auth_exchange_success(ctx):
    """CONNECT, AUTH 0x18 both ways twice, then CONNACK 0x00 with the method
    and the final data; the session starts only then, with the CONNECT's
    will kept across the exchange."""
    b = _broker(ctx)
    sub = RawClient(b.port)
    sub.send(connect5("watcher"))
    sub.expect(CONNACK)
    sub.send(subscribe5(1, [("will/alice", 1)]))
    check(read_suback5(sub, 1) == [1], "watcher SUBACK")
    c = RawClient(b.port)
    authenticate(c, "alice-1", will=("will/alice", b"gone", 1, False))
    check("client alice-1 connected" in b.log_text(), "no connect line after the exchange")
    c.send(PINGREQ_PKT)
    c.expect(PINGRESP)
    c.send(publish5("a/b", b"x", qos=1, pid=7))
    check(read_ack5(c, PUBACK)[0] == 7, "PUBACK after the exchange")
    c.abort()  # no DISCONNECT: the will goes out
    m = read_publish5(sub)
    check(m["topic"] == "will/alice" and m["payload"] == b"gone", "will %r" % m)


# covers: MQTT5-4.12.0-4
def test_mqtt5_auth_wrong_answer_refused(ctx):
    """A wrong answer at either round, or a user the method does not know,
    ends with CONNACK 0x86 and the close; nothing of the session starts."""
    b = _broker(ctx)
    c = RawClient(b.port)
    start_auth(c, "bad-1")
    c.send(auth5(0x18, data=b"\x00" * 32))
    expect_connack(c, 0x86)
    c = RawClient(b.port)
    n1 = start_auth(c, "bad-2")
    c.send(auth5(0x18, data=_mac(SECRET, n1)))
    read_auth(c)
    c.send(auth5(0x18, data=_mac(SECRET, n1)))  # answers the old challenge
    expect_connack(c, 0x86)
    c = RawClient(b.port)
    n1 = start_auth(c, "bad-3", user="mallory")
    c.send(auth5(0x18, data=_mac("", n1)))
    expect_connack(c, 0x86)
    c = RawClient(b.port)  # no username: nobody to challenge
    c.send(connect5("bad-4", properties=props((AUTH_METHOD, METHOD))))
    expect_connack(c, 0x87)
    log = b.log_text()
    check("client bad-" not in log,
          "a refused client got a session")
    check("authentication method cairn-test-challenge failed" in log, "refusal not logged")


# covers: MQTT5-4.12.0-5
def test_mqtt5_auth_other_method_is_protocol_error(ctx):
    """An AUTH naming another method, or none, before the CONNACK: CONNACK
    0x82 and the close."""
    b = _broker(ctx)
    for method in ("SCRAM-SHA-1", None):
        c = RawClient(b.port)
        n1 = start_auth(c, "m-%s" % method)
        c.send(auth5(0x18, method=method, data=_mac(SECRET, n1)))
        expect_connack(c, 0x82)


def test_mqtt5_auth_reason_other_than_0x18_before_connack(ctx):
    """Before the CONNACK a client's AUTH can only continue (0x18): 0x19 or
    0x00 there is a protocol error."""
    b = _broker(ctx)
    for reason in (0x19, 0x00):
        c = RawClient(b.port)
        n1 = start_auth(c, "r-%d" % reason)
        c.send(auth5(reason, data=_mac(SECRET, n1)))
        expect_connack(c, 0x82)


# covers: MQTT5-3.1.4-6
def test_mqtt5_auth_only_auth_while_authenticating(ctx):
    """While the exchange is under way nothing but AUTH is accepted: a
    PUBLISH, SUBSCRIBE, PINGREQ or second CONNECT gets CONNACK 0x82 and the
    close, and the PUBLISH reaches nobody; a DISCONNECT closes quietly."""
    b = _broker(ctx)
    sub = RawClient(b.port)
    sub.send(connect5("watcher"))
    sub.expect(CONNACK)
    sub.send(subscribe5(1, [("early/#", 0)]))
    read_suback5(sub, 1)
    for name, pkt in (("publish", publish5("early/x", b"sneak")),
                      ("subscribe", subscribe5(2, [("#", 0)])),
                      ("pingreq", PINGREQ_PKT),
                      ("connect", connect5("again"))):
        c = RawClient(b.port)
        start_auth(c, "only-" + name)
        c.send(pkt)
        expect_connack(c, 0x82)
    check(sub.expect_silence(0.5), "a PUBLISH sent during authentication was delivered")
    c = RawClient(b.port)
    start_auth(c, "only-disconnect")
    c.send(b"\xe0\x00")
    c.assert_closed_without_reply("DISCONNECT during authentication")


# covers: MQTT5-3.1.2-24
def test_mqtt5_auth_larger_than_client_maximum(ctx):
    """An AUTH the client's Maximum Packet Size cannot take is not sent: the
    CONNECT is refused with 0x95 instead."""
    b = _broker(ctx)
    c = RawClient(b.port)
    c.send(connect5("small", username="alice",
                    properties=props((AUTH_METHOD, METHOD), (MAX_PACKET_SIZE, 40))))
    expect_connack(c, 0x95)


def test_mqtt5_auth_stall_closed_by_connect_timeout(ctx):
    """connect_timeout bounds the whole exchange: a client that stops
    answering after the first challenge is closed, with no CONNACK."""
    b = _broker(ctx, connect_timeout=1)
    c = RawClient(b.port)
    start_auth(c, "staller")
    c.assert_closed_without_reply("stalled exchange", timeout=4)
    check(wait_until(lambda: "authentication not done within connect_timeout" in b.log_text(),
                     2), "timeout not logged")


def _reauth(c, secret=SECRET):
    c.send(auth5(0x19))
    n1 = read_auth(c)
    c.send(auth5(0x18, data=_mac(secret, n1)))
    n2 = read_auth(c)
    return n1, n2


# covers: MQTT5-4.12.0-5
def test_mqtt5_reauthentication(ctx):
    """AUTH 0x19 after the CONNACK runs the method again; packets keep
    flowing meanwhile; success is AUTH 0x00 with the method and data."""
    b = _broker(ctx)
    c = RawClient(b.port)
    authenticate(c, "re-1")
    for _ in range(2):
        n1, n2 = _reauth(c)
        c.send(publish5("x/y", b"during", qos=1, pid=3))  # the session goes on meanwhile
        check(read_ack5(c, PUBACK)[0] == 3, "PUBACK during re-authentication")
        c.send(auth5(0x18, data=_mac(SECRET, n2)))
        final = read_auth(c, 0x00)
        check(final == _mac(SECRET, n1 + n2), "AUTH 0x00 data %r" % final)
    c.send(PINGREQ_PKT)
    c.expect(PINGRESP)


# covers: MQTT5-4.12.1-2
def test_mqtt5_reauthentication_failure_disconnects(ctx):
    """A failed re-authentication: DISCONNECT 0x87 (0x86 is no DISCONNECT
    reason), then the close."""
    b = _broker(ctx)
    c = RawClient(b.port)
    authenticate(c, "re-2")
    _, _ = _reauth(c)
    c.send(auth5(0x18, data=b"\x01" * 32))
    expect_disconnect(c, 0x87)
    check("re-authentication refused" in b.log_text(), "failed re-authentication not logged")


def test_mqtt5_reauthentication_protocol_errors(ctx):
    """After the CONNACK: AUTH with another method, AUTH 0x18 with no
    exchange under way, AUTH 0x19 in the middle of one, and AUTH 0x00 from
    the client are protocol errors (DISCONNECT 0x82)."""
    b = _broker(ctx)
    cases = (("other method", [auth5(0x19, method="SCRAM-SHA-1")]),
             ("0x18 first", [auth5(0x18, data=b"x")]),
             ("0x19 twice", [auth5(0x19), auth5(0x19)]),
             ("0x00", [auth5(0x00)]))
    for i, (name, pkts) in enumerate(cases):
        c = RawClient(b.port)
        authenticate(c, "rp-%d" % i)
        for k, p in enumerate(pkts):
            c.send(p)
            if k < len(pkts) - 1:
                read_auth(c)
        expect_disconnect(c, 0x82)


def test_mqtt5_auth_acl_applies_to_method_user(ctx):
    """The ACL treats a user the method authenticated exactly as a user of
    the password file: same grants, same refusals (SUBACK 0x87, PUBACK
    0x87), %u substituted with the method's username."""
    acl = os.path.join(ctx.workdir, "acl")
    with open(acl, "w") as f:
        f.write("user alice\ntopic readwrite alice/#\n"
                "user bob\ntopic readwrite bob/#\n"
                "pattern readwrite home/%u/#\n")
    pw = _pwfile(ctx, "pw", {"bob": "bobpw"})
    b = _broker(ctx, acl_file=acl, password_file=pw, allow_anonymous="false")
    a = RawClient(b.port)
    authenticate(a, "acl-alice")
    o = _password_login(b.port, "acl-bob", "bob", "bobpw")
    for c, me, other in ((a, "alice", "bob"), (o, "bob", "alice")):
        c.send(subscribe5(1, [(me + "/#", 1), (other + "/#", 1), ("home/%s/#" % me, 1),
                              ("home/%s/#" % other, 1)]))
        codes = read_suback5(c, 1)
        check(codes == [1, 0x87, 1, 0x87], "%s: SUBACK %r" % (me, codes))
        c.send(publish5(other + "/t", b"no", qos=1, pid=2))
        check(read_ack5(c, PUBACK) == (2, 0x87), "%s: publish to %s/t not refused" % (me, other))
    a.send(publish5("bob/t", b"x", qos=0))
    o.send(publish5("home/alice/t", b"x", qos=0))
    a.send(publish5("home/alice/t", b"to-alice", qos=0))
    m = read_publish5(a)
    check(m["payload"] == b"to-alice" and m["topic"] == "home/alice/t", "alice got %r" % m)
    check(o.expect_silence(0.3), "bob received something he may not read")
    # Without the method (no password file entry) alice is refused.
    c = RawClient(b.port)
    c.send(connect5("acl-alice2", username="alice", password=SECRET))
    _, body = c.expect(CONNACK)
    check(body[1] == 0x86, "alice with a password: 0x%02x, want 0x86" % body[1])


def test_mqtt5_auth_method_user_survives_password_reload(ctx):
    """A reload that changes the password file closes the password users it
    revokes, never a user an enhanced authentication method logged in
    (whom the password file never vouched for)."""
    from test_auth import _cairn_passwd
    pw = _pwfile(ctx, "pw", {"bob": "bobpw"})
    b = _broker(ctx, password_file=pw, allow_anonymous="false")
    a = RawClient(b.port)
    authenticate(a, "rl-alice")
    o = _password_login(b.port, "rl-bob", "bob", "bobpw")
    check(_cairn_passwd("-b", pw, "bob", "newpw").returncode == 0, "cairn-passwd failed")
    os.kill(b.proc.pid, signal.SIGHUP)
    expect_disconnect(o, 0x87)
    a.send(PINGREQ_PKT)
    a.expect(PINGRESP)
    check(a.expect_silence(0.5), "alice closed by a reload of the password file")
