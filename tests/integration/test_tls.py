"""TLS listeners with real clients: mosquitto_pub/mosquitto_sub, paho and
openssl s_client, against certificates made with the openssl command at
test time (nothing that expires is kept in the tree)."""

import os
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (HOST, RawClient, broker_command, check, connect_packet, require_cairn,
                     wait_until)


def _openssl(cwd, *args):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    check(r.returncode == 0, "openssl %s failed: %s" % (args[0], r.stderr.decode()[-400:]))


class Pki:
    """A CA, a server certificate for 127.0.0.1, client certificates, a
    second CA nobody trusts, and a CRL; EC keys, so making them is fast."""

    def __init__(self, ctx):
        self.dir = os.path.join(ctx.workdir, "pki")
        os.makedirs(self.dir)
        d = self.dir
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = ca_default\n[ca_default]\ndatabase = index.txt\n"
                    "crlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n")
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "crlnumber"), "w") as f:
            f.write("01\n")
        self._ca("ca", "cairn test CA")
        self._ca("rogue", "rogue CA")
        self.server = self.leaf("server", "localhost", san="IP:127.0.0.1,DNS:localhost")
        self.crl = None

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        _openssl(self.dir, "genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-out", name + ".key")

    def _ca(self, name, cn):
        self._key(name)
        _openssl(self.dir, "req", "-x509", "-new", "-key", name + ".key", "-out", name + ".crt",
                 "-days", "2", "-subj", "/CN=" + cn)

    def leaf(self, name, cn, ca="ca", san=None):
        """Make name.key and name.crt signed by ca; returns (crt, key)."""
        self._key(name)
        _openssl(self.dir, "req", "-new", "-key", name + ".key", "-out", name + ".csr",
                 "-subj", "/O=cairn tests/CN=" + cn)
        args = ["x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2"]
        if san:
            with open(self.path(name + ".ext"), "w") as f:
                f.write("subjectAltName=%s\n" % san)
            args += ["-extfile", name + ".ext"]
        _openssl(self.dir, *args)
        return self.path(name + ".crt"), self.path(name + ".key")

    def revoke(self, name):
        """Revoke name.crt and (re)write crl.pem; returns its path."""
        _openssl(self.dir, "ca", "-config", "ca.cnf", "-revoke", name + ".crt",
                 "-keyfile", "ca.key", "-cert", "ca.crt")
        _openssl(self.dir, "ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ca.key",
                 "-cert", "ca.crt", "-out", "crl.pem")
        self.crl = self.path("crl.pem")
        return self.crl


def _tls_broker(ctx, pki, **options):
    opts = {"certfile": pki.server[0], "keyfile": pki.server[1]}
    opts.update(options)
    return ctx.broker(**opts)


def _mosq(tool, port, pki, *args, cert=None, timeout=10):
    cmd = [tool, "-h", "127.0.0.1", "-p", str(port), "--cafile", pki.path("ca.crt")]
    if cert:
        cmd += ["--cert", cert[0], "--key", cert[1]]
    return cmd + list(args)


def _round_trip(port, pki, cert=None, topic="tls/t", tls_version=None, qos=1):
    """mosquitto_sub receives what mosquitto_pub sends; returns (ok, pub stderr)."""
    extra = ["--tls-version", tls_version] if tls_version else []
    sub = subprocess.Popen(_mosq("mosquitto_sub", port, pki, "-t", topic, "-C", "1", "-q",
                                 str(qos), "-W", "8", *extra, cert=cert),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.4)
        pub = subprocess.run(_mosq("mosquitto_pub", port, pki, "-t", topic, "-m", "over tls",
                                   "-q", str(qos), *extra, cert=cert),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
        out, _ = sub.communicate(timeout=10)
        return out.strip() == b"over tls", pub.stderr.decode()
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def _s_client(port, pki, *args):
    """openssl s_client's handshake: (established, output)."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
                        pki.path("ca.crt"), "-verify_return_error", "-brief"] + list(args),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    out = r.stdout.decode("utf-8", "replace")
    return "CONNECTION ESTABLISHED" in out, out


def test_tls_round_trip_with_mosquitto_clients(ctx):
    pki = Pki(ctx)
    b = _tls_broker(ctx, pki)
    for version in (None, "tlsv1.2", "tlsv1.3"):
        ok, err = _round_trip(b.port, pki, tls_version=version, topic="tls/%s" % version)
        check(ok, "no round trip over TLS (%s): %s" % (version or "default", err))


def test_tls_paho_qos2_and_a_large_message(ctx):
    """paho over TLS, QoS 2, and a 1 MiB payload: records cut the packet,
    partial writes resume, decrypted bytes held by OpenSSL are read."""
    import paho.mqtt.client as mqtt
    pki = Pki(ctx)
    b = _tls_broker(ctx, pki)
    got = []
    done = threading.Event()

    def on_message(client, userdata, msg):
        got.append(msg.payload)
        if len(got) == 2:
            done.set()
    sub = mqtt.Client(client_id="tls-sub")
    sub.tls_set(ca_certs=pki.path("ca.crt"))
    sub.on_message = on_message
    sub.connect("127.0.0.1", b.port)
    sub.subscribe("tls/paho", qos=2)
    sub.loop_start()
    pub = mqtt.Client(client_id="tls-pub")
    pub.tls_set(ca_certs=pki.path("ca.crt"))
    pub.connect("127.0.0.1", b.port)
    pub.loop_start()
    try:
        time.sleep(0.5)
        big = bytes(range(256)) * 4096
        pub.publish("tls/paho", b"small", qos=2).wait_for_publish(10)
        pub.publish("tls/paho", big, qos=2).wait_for_publish(10)
        check(done.wait(10), "paho over TLS received %d of 2 messages" % len(got))
        check(got[0] == b"small" and got[1] == big, "payloads differ after TLS")
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()


def test_tls_require_certificate(ctx):
    pki = Pki(ctx)
    alice = pki.leaf("alice", "alice")
    mallory = pki.leaf("mallory", "mallory", ca="rogue")
    bob = pki.leaf("bob", "bob")
    crl = pki.revoke("bob")
    b = _tls_broker(ctx, pki, cafile=pki.path("ca.crt"), require_certificate="true",
                    crlfile=crl)
    ok, err = _round_trip(b.port, pki, cert=alice, topic="tls/alice")
    check(ok, "a client with a certificate from the CA was refused: %s" % err)
    for who, cert in (("no certificate", None), ("a certificate from another CA", mallory),
                      ("a revoked certificate", bob)):
        ok, _ = _round_trip(b.port, pki, cert=cert, topic="tls/refused")
        check(not ok, "a client with %s got through" % who)
    require_cairn("cairn's log line")
    check(wait_until(lambda: b.log_text().count("TLS handshake failed") >= 3, 3),
          "failed handshakes not logged:\n" + b.log_tail())
    check("127.0.0.1:" in b.log_text().split("TLS handshake failed")[0].splitlines()[-1],
          "the log line does not name the address")


def test_tls_plain_mqtt_on_a_tls_port_is_closed_at_once(ctx):
    pki = Pki(ctx)
    b = _tls_broker(ctx, pki)
    c = RawClient(b.port)
    t0 = time.monotonic()
    c.send(connect_packet("plain"))
    check(c.expect_closed(2), "plain MQTT on a TLS port was not closed")
    check(time.monotonic() - t0 < 1.5, "closing plain MQTT took %.1f s" %
          (time.monotonic() - t0))
    ok, err = _round_trip(b.port, pki)
    check(ok, "TLS broken after a plain client: %s" % err)


def test_tls_stalled_handshake_closed_on_time_without_delaying_others(ctx):
    pki = Pki(ctx)
    b = _tls_broker(ctx, pki, connect_timeout=2)
    stalled = [socket.create_connection((HOST, b.port)) for _ in range(20)]
    half = socket.create_connection((HOST, b.port))
    # Half a ClientHello, then nothing.
    tls = ssl.create_default_context(cafile=pki.path("ca.crt"))
    inc, outc = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls.wrap_bio(inc, outc, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outc.read()
    half.sendall(hello[:len(hello) // 2])
    t0 = time.monotonic()
    ok, err = _round_trip(b.port, pki)
    check(ok, "a TLS client waited behind stalled handshakes: %s" % err)
    check(time.monotonic() - t0 < 5, "round trip beside stalled handshakes took %.1f s" %
          (time.monotonic() - t0))
    for s in stalled + [half]:
        s.settimeout(max(0.1, 4.5 - (time.monotonic() - t0)))
        try:
            d = s.recv(1)
        except socket.timeout:
            d = None
        except OSError:
            d = b""
        check(d == b"", "a stalled handshake was not closed after connect_timeout 2")
        s.close()


def test_tls_version_floor(ctx):
    pki = Pki(ctx)
    b = _tls_broker(ctx, pki, tls_version="tlsv1.3")
    ok, out = _s_client(b.port, pki, "-tls1_2")
    check(not ok, "TLS 1.2 accepted with tls_version tlsv1.3:\n" + out)
    ok, out = _s_client(b.port, pki, "-tls1_3")
    check(ok, "TLS 1.3 refused:\n" + out)
    b2 = _tls_broker(ctx, pki)
    ok, out = _s_client(b2.port, pki, "-tls1_1")
    check(not ok, "TLS 1.1 accepted by default:\n" + out)
    ok, out = _s_client(b2.port, pki, "-tls1_2")
    check(ok, "TLS 1.2 refused by default:\n" + out)


def test_tls_sighup_reloads_certificates_and_keeps_them_on_a_bad_file(ctx):
    require_cairn("cairn's reload")
    pki = Pki(ctx)
    crt, key = pki.path("live.crt"), pki.path("live.key")
    os.rename(pki.server[0], crt)
    os.rename(pki.server[1], key)
    b = ctx.broker(certfile=crt, keyfile=key)
    ok, out = _s_client(b.port, pki)
    check(ok and "CN = localhost" in out, "first certificate not served:\n" + out)
    new_crt, new_key = pki.leaf("renewed", "renewed.localhost", san="IP:127.0.0.1")
    os.replace(new_crt, crt)
    os.replace(new_key, key)
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "reloaded " + crt in b.log_text(), 3), "no reload logged")
    ok, out = _s_client(b.port, pki)
    check(ok and "renewed.localhost" in out, "renewed certificate not served:\n" + out)
    with open(crt, "w") as f:
        f.write("not a certificate\n")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "keeping the previous certificates" in b.log_text(), 3),
          "a bad certificate file was not reported")
    check(crt in b.log_text().split("keeping the previous certificates")[1].splitlines()[0],
          "the reload failure does not name the file")
    ok, out = _s_client(b.port, pki)
    check(ok and "renewed.localhost" in out,
          "after a failed reload the previous certificate is not served:\n" + out)


def test_tls_config_check_reads_the_certificate_files(ctx):
    require_cairn("cairn -t")
    pki = Pki(ctx)
    b = _tls_broker(ctx, pki, start=False, keyfile=pki.path("missing.key"))
    r = subprocess.run([broker_command(), "-t", "-c", b.conf_path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    check(r.returncode != 0, "cairn -t accepted a missing keyfile")
    check(b"missing.key" in r.stderr, "cairn -t does not name the file: %r" % r.stderr)
    b2 = _tls_broker(ctx, pki, start=False)
    r = subprocess.run([broker_command(), "-t", "-c", b2.conf_path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    check(r.returncode == 0, "cairn -t refused good TLS files: %r" % r.stderr)


def test_tls_use_identity_as_username_feeds_the_acl(ctx):
    """The certificate's common name is the username the ACL sees; the
    username in CONNECT is ignored."""
    require_cairn("cairn's ACL")
    pki = Pki(ctx)
    alice = pki.leaf("alice", "alice")
    acl = os.path.join(ctx.workdir, "acl")
    with open(acl, "w") as f:
        f.write("pattern readwrite users/%u/#\n")
    b = _tls_broker(ctx, pki, cafile=pki.path("ca.crt"), require_certificate="true",
                    use_identity_as_username="true", acl_file=acl,
                    allow_anonymous="false")
    ok, err = _round_trip(b.port, pki, cert=alice, topic="users/alice/inbox")
    check(ok, "alice cannot use her own topic: %s" % err)
    # Claiming to be bob in CONNECT changes nothing: the certificate says alice.
    ok, _ = _round_trip(b.port, pki, cert=alice, topic="users/bob/inbox")
    check(not ok, "alice reached bob's topic")
    sub = subprocess.run(_mosq("mosquitto_sub", b.port, pki, "-t", "users/bob/#", "-u", "bob",
                               "-C", "1", "-W", "2", cert=alice),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    check(sub.stdout == b"", "a claimed username widened the ACL: %r" % sub.stdout)


def test_tls_certificate_login_survives_a_password_file_reload(ctx):
    """A client whose certificate is its login is not judged against the
    password file when SIGHUP reloads it (the usual moment: renewed
    certificates)."""
    require_cairn("cairn's reload")
    pki = Pki(ctx)
    dave = pki.leaf("dave", "dave")
    pw = os.path.join(ctx.workdir, "passwd")
    subprocess.run(["mosquitto_passwd", "-c", "-b", pw, "alice", "a"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    b = _tls_broker(ctx, pki, cafile=pki.path("ca.crt"), require_certificate="true",
                    use_identity_as_username="true", password_file=pw)
    ctx_ssl = ssl.create_default_context(cafile=pki.path("ca.crt"))
    ctx_ssl.load_cert_chain(dave[0], dave[1])
    s = ctx_ssl.wrap_socket(socket.create_connection((HOST, b.port)), server_hostname="localhost")
    s.sendall(connect_packet("dave-device"))
    check(s.recv(4)[:2] == b"\x20\x02", "no CONNACK for the certificate login")
    os.kill(b.proc.pid, signal.SIGHUP)
    check(wait_until(lambda: "password_file %s reloaded" % pw in b.log_text(), 3),
          "no password file reload logged")
    time.sleep(0.3)
    s.sendall(b"\xc0\x00")
    s.settimeout(3)
    check(s.recv(2) == b"\xd0\x00", "the certificate login was closed by a password reload")
    s.close()
