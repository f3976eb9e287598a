"""Integration-test harness: starts a real broker process on a free
loopback port, builds and reads raw MQTT 3.1.1 packets, and wraps paho
clients with timeouts so no test can wait forever.

The broker command comes from CAIRN_BIN (default ./cairn relative to the
source root). Pointing CAIRN_BIN at Debian's mosquitto runs the same tests
against it; cairn-only config keys are then left out and cairn-only tests
are skipped.
"""

import collections
import os
import queue
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "127.0.0.1"

# Keys mosquitto does not know; dropped from its config.
CAIRN_ONLY_KEYS = {"connect_timeout", "persistence_backend"}


class Skip(Exception):
    """Raised by a test that does not apply to the broker under test."""


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def broker_command():
    b = os.environ.get("CAIRN_BIN", "./cairn")
    if not os.path.isabs(b) and os.sep in b:
        b = os.path.join(ROOT, b)
    return b


def is_mosquitto():
    return os.path.basename(broker_command()).startswith("mosquitto")


def require_cairn(why):
    if is_mosquitto():
        raise Skip(why)


# Ports free_port() handed out lately: the kernel may give a port again as
# soon as its probe socket is closed, and two nodes of one cluster given the
# same port would make the second's start wait on the first's listener.
_PORTS_GIVEN = collections.deque(maxlen=4096)


def free_port():
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _PORTS_GIVEN:
            break
    _PORTS_GIVEN.append(port)
    return port


def crc16(data):
    """CRC16/XMODEM of data (bytes): a Redis Cluster's key hash, and the
    hash of cairn's log partitions (cairn-redis(5))."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def partition(topic, partitions):
    """The log partition of topic when the log has partitions of them: the
    CRC16 of its first level modulo partitions."""
    return crc16(topic.split("/", 1)[0].encode()) % partitions


def rss_kb(pid):
    """Resident set size of process pid, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def uses_asan(pid):
    """True if process pid runs under AddressSanitizer. Its quarantine keeps
    freed memory resident (up to 256 MiB), so RSS bounds say nothing there;
    LeakSanitizer checks that build at exit instead."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def wait_until(pred, timeout, step=0.02):
    """Poll pred() until it is true or timeout seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Broker:
    """One broker process with its own temp dir, config and stderr log."""

    def __init__(self, workdir, name="broker", **options):
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.options = dict(options)
        self.options.setdefault("allow_anonymous", "true")
        self.options.setdefault("log_dest", "stderr")
        self.options.setdefault("log_type", "all")
        if self.options.get("persistence") in ("true", True) and \
                "persistence_location" not in self.options:
            d = os.path.join(workdir, name + "-db")
            os.makedirs(d, exist_ok=True)
            self.options["persistence_location"] = d
        self.conf_path = os.path.join(workdir, name + ".conf")
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.starts = 0
        self._write_conf()

    def _write_conf(self):
        lines = ["listener %d %s" % (self.port, HOST)]
        for k, v in self.options.items():
            if is_mosquitto() and k in CAIRN_ONLY_KEYS:
                continue
            if v is True:
                v = "true"
            elif v is False:
                v = "false"
            if k == "persistence_location" and is_mosquitto():
                v = v.rstrip("/") + "/"
            lines.append("%s %s" % (k, v))
        if is_mosquitto() and os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot save
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def db_dir(self):
        return self.options.get("persistence_location")

    def start(self, timeout=5.0):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(("==== start %d\n" % self.starts).encode())
        log.flush()
        self.proc = subprocess.Popen([broker_command(), "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, cwd=self.workdir)
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise TestFailure("%s exited with %s at start-up; log:\n%s" %
                                  (self.name, self.proc.returncode, self.log_tail()))
            try:
                s = socket.create_connection((HOST, self.port), timeout=0.2)
                s.close()
                return self
            except OSError:
                time.sleep(0.02)
        self.kill9()
        raise TestFailure("%s did not listen on port %d within %.1fs" %
                          (self.name, self.port, timeout))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=5.0, check_exit=True):
        """SIGTERM by PID; the broker must exit 0 within timeout."""
        if self.proc is None:
            return
        p = self.proc
        self.proc = None
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                raise TestFailure("%s did not exit within %.1fs of SIGTERM" %
                                  (self.name, timeout))
        if check_exit and p.returncode != 0:
            raise TestFailure("%s exited with status %s; log tail:\n%s" %
                              (self.name, p.returncode, self.log_tail()))

    def kill9(self):
        if self.proc is None:
            return
        p = self.proc
        self.proc = None
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()

    def restart(self, timeout=5.0):
        self.stop()
        return self.start(timeout)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def assert_serves(self, what="fresh client"):
        """A new client can still connect and ping: the broker survived."""
        check(self.alive(), "broker died (%s); log tail:\n%s" % (what, self.log_tail()))
        c = RawClient(self.port)
        try:
            c.send(connect_packet("survivor-%d" % os.getpid()))
            t, _, body = c.read_packet()
            check(t == CONNACK and body[1] == 0, "fresh client not accepted after %s" % what)
            c.send(PINGREQ_PKT)
            t, _, _ = c.read_packet()
            check(t == PINGRESP, "no PINGRESP for fresh client after %s" % what)
        finally:
            c.close()


class Context:
    """Everything one test starts, so the runner can stop it all by PID."""

    def __init__(self, name):
        self.name = name
        self.workdir = tempfile.mkdtemp(prefix="cairn-it-%s-" % name)
        self.brokers = []
        self.cleanups = []

    def broker(self, start=True, **options):
        b = Broker(self.workdir, "broker%d" % len(self.brokers), **options)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def add_cleanup(self, fn):
        self.cleanups.append(fn)

    def spawn(self, argv, log_name, **popen_kw):
        """Start a process of the test's own (a broker run by hand, a
        mosquitto) with stdout and stderr in workdir/log_name; it is
        stopped by its PID when the test ends (SIGTERM, SIGKILL after 5 s).
        Returns the Popen object and the log's path."""
        log_path = os.path.join(self.workdir, log_name)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    **popen_kw)

        def stop():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        proc.stop = stop
        self.add_cleanup(stop)
        return proc, log_path

    def close(self, check_exit=True):
        """Run cleanups, then stop every broker. Returns an error string or None."""
        err = None
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        for b in self.brokers:
            try:
                b.stop(check_exit=check_exit)
            except Exception as e:
                err = err or str(e)
                b.kill9()
        return err

    def logs(self):
        return [b.log_path for b in self.brokers]


# ---------------------------------------------------------------- raw MQTT

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = \
    8, 9, 10, 11, 12, 13, 14

PINGREQ_PKT = b"\xc0\x00"
DISCONNECT_PKT = b"\xe0\x00"


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def mstr(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack("!H", len(s)) + s


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(client_id, clean=True, keepalive=60, will=None, username=None,
                   password=None, proto_name="MQTT", level=4, flags_extra=0,
                   raw_client_id=None, properties=b"", will_properties=b""):
    """will = (topic, payload, qos, retain). properties and will_properties:
    5.0 property blocks (with their length), written where level 5 has
    them; empty for 3.1 and 3.1.1."""
    flags = flags_extra
    if clean:
        flags |= 0x02
    payload = raw_client_id if raw_client_id is not None else mstr(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += will_properties + mstr(topic) + mstr(msg)
    if username is not None:
        flags |= 0x80
        payload += mstr(username)
    if password is not None:
        flags |= 0x40
        payload += mstr(password)
    body = (mstr(proto_name) + bytes([level, flags]) + struct.pack("!H", keepalive) + properties +
            payload)
    return packet(0x10, body)


def publish_packet(topic, payload=b"", qos=0, retain=False, dup=False, pid=None):
    if isinstance(payload, str):
        payload = payload.encode()
    fb = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = mstr(topic)
    if qos:
        body += struct.pack("!H", pid if pid is not None else 1)
    return packet(fb, body + payload)


def subscribe_packet(pid, filters, first_byte=0x82):
    """filters: list of (filter, qos)."""
    body = struct.pack("!H", pid)
    for f, q in filters:
        body += mstr(f) + bytes([q])
    return packet(first_byte, body)


def unsubscribe_packet(pid, filters):
    body = struct.pack("!H", pid)
    for f in filters:
        body += mstr(f)
    return packet(0xA2, body)


def ack_packet(kind, pid):
    fb = {PUBACK: 0x40, PUBREC: 0x50, PUBREL: 0x62, PUBCOMP: 0x70}[kind]
    return bytes([fb, 2]) + struct.pack("!H", pid)


def parse_publish_head(flags, body):
    """The topic, QoS and packet id (None at QoS 0) of a PUBLISH body, and
    the offset after them (3.1.1: the payload; 5.0: the properties)."""
    tl = struct.unpack("!H", body[:2])[0]
    topic = body[2:2 + tl].decode("utf-8")
    qos = (flags >> 1) & 3
    off = 2 + tl
    pid = None
    if qos:
        pid = struct.unpack("!H", body[off:off + 2])[0]
        off += 2
    return topic, qos, pid, off


def parse_publish(flags, body):
    """Returns dict(topic, payload, qos, retain, dup, pid)."""
    topic, qos, pid, off = parse_publish_head(flags, body)
    return dict(topic=topic, payload=bytes(body[off:]), qos=qos, retain=bool(flags & 1),
                dup=bool(flags & 8), pid=pid)


class Closed(Exception):
    def __str__(self):
        return "connection closed by the broker"


class RawClient:
    """A plain TCP socket that speaks MQTT packet by packet."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(remaining)
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            raise Closed()
        self.buf += d

    def read_packet(self, timeout=None):
        """Returns (type, flags, body). Raises Closed on EOF, socket.timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 2:
                n, mult, i = 0, 1, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    b = self.buf[i]
                    n += (b & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not b & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= i + n:
                    fb = self.buf[0]
                    body = bytes(self.buf[i:i + n])
                    del self.buf[:i + n]
                    return fb >> 4, fb & 0x0F, body
            self._fill(deadline)

    def expect(self, ptype, timeout=None):
        t, f, body = self.read_packet(timeout)
        if t != ptype:
            raise TestFailure("expected packet type %d, got %d (flags %x body %r)" %
                              (ptype, t, f, body[:40]))
        return f, body

    def connect(self, client_id, expect_rc=0, **kw):
        self.send(connect_packet(client_id, **kw))
        _, body = self.expect(CONNACK)
        check(len(body) == 2, "CONNACK remaining length %d" % len(body))
        if expect_rc is not None:
            check(body[1] == expect_rc, "CONNACK rc %d, expected %d" % (body[1], expect_rc))
        return body[0] & 1, body[1]

    def subscribe(self, pid, filters):
        self.send(subscribe_packet(pid, filters))
        _, body = self.expect(SUBACK)
        check(struct.unpack("!H", body[:2])[0] == pid, "SUBACK packet id mismatch")
        return list(body[2:])

    def publish(self, topic, payload, qos=0, pid=1, retain=False, dup=False):
        """Publish and complete the acknowledgement flow for qos."""
        self.send(publish_packet(topic, payload, qos=qos, retain=retain, dup=dup, pid=pid))
        if qos == 1:
            _, body = self.expect(PUBACK)
            check(body == struct.pack("!H", pid), "PUBACK %r, want id %d" % (body, pid))
        elif qos == 2:
            _, body = self.expect(PUBREC)
            check(body == struct.pack("!H", pid), "PUBREC %r, want id %d" % (body, pid))
            self.send(ack_packet(PUBREL, pid))
            _, body = self.expect(PUBCOMP)
            check(body == struct.pack("!H", pid), "PUBCOMP %r, want id %d" % (body, pid))

    def read_publish(self, timeout=None):
        f, body = self.expect(PUBLISH, timeout)
        return parse_publish(f, body)

    def expect_closed(self, timeout=3.0):
        """True if the peer closes within timeout (packets before that are dropped)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                self.buf.clear()
        except Closed:
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def expect_refused(self, code, what):
        """The next packet is a 3.1.1 CONNACK refusing with return code
        code (session present 0), and then the broker closes the socket."""
        _, body = self.expect(CONNACK)
        check(body == bytes([0, code]), "%s: CONNACK %r, want 00 %02x" % (what, body, code))
        check(self.expect_closed(2), "%s: socket left open after CONNACK 0x%02x" % (what, code))

    def assert_closed(self, what, timeout=3.0):
        """The broker closes the connection (EOF or reset) within timeout;
        packets before that are dropped. Still open at the deadline fails
        the test: a broker that ignored what it was sent must not pass."""
        check(self.expect_closed(timeout),
              "%s: connection still open after %.1fs" % (what, timeout))

    def assert_closed_without_reply(self, what, timeout=3.0):
        """The broker closes the connection within timeout and sends
        nothing first. A packet fails the test, and so does a connection
        still open at the deadline."""
        try:
            t, _, body = self.read_packet(timeout)
        except Closed:
            return
        except socket.timeout:
            raise TestFailure("%s: connection neither answered nor closed within %.1fs" %
                              (what, timeout))
        raise TestFailure("%s: broker answered with packet type %d %r instead of closing" %
                          (what, t, body))

    def disconnect(self, timeout=2.0):
        """Sends DISCONNECT; the broker must close the connection."""
        self.send(DISCONNECT_PKT)
        self.assert_closed("DISCONNECT", timeout)
        self.close()

    def expect_silence(self, timeout=0.5):
        """True if nothing arrives and the socket stays open for timeout."""
        try:
            self.read_packet(timeout)
            return False
        except socket.timeout:
            return True
        except Closed:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with RST, the way a crashing client would vanish."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


# ---------------------------------------------------------------- paho

def _paho():
    import paho.mqtt.client as mqtt
    return mqtt


class Paho:
    """A paho client with a message queue and bounded waits (paho 1.x API).
    mqtt5.Paho5 is the same client speaking 5.0: it overrides _new_client,
    the callbacks that differ in 5.0, connect, subscribe, publish and
    disconnect, and names itself in failures through name."""

    name = "paho"

    def __init__(self, port, client_id="", clean=True, keepalive=60, will=None,
                 username=None, password=None, ctx=None):
        mqtt = _paho()
        self.port = port
        self.c = self._new_client(mqtt, client_id, clean)
        self.msgs = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None
        self.subacks = {}
        self.acked = set()
        self.lock = threading.Lock()
        self.keepalive = keepalive
        if will:
            t, p, q, r = will
            self.c.will_set(t, p, q, r)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = self._on_disconnect
        if ctx is not None:
            ctx.add_cleanup(self.close)

    def _new_client(self, mqtt, client_id, clean):
        return mqtt.Client(client_id=client_id, clean_session=clean, protocol=mqtt.MQTTv311)

    def _on_connect(self, c, u, flags, rc):
        self.connack = (flags.get("session present", 0), rc)
        self.connected.set()

    def _on_disconnect(self, c, u, rc):
        self.disconnected.set()

    def _on_subscribe(self, c, u, mid, granted):
        with self.lock:
            self.subacks[mid] = list(granted)

    def _on_publish(self, c, u, mid):
        with self.lock:
            self.acked.add(mid)

    def _await_connack(self, timeout, expect_rc):
        """After self.c.connect(): start the loop and wait for the CONNACK."""
        self.c.loop_start()
        check(self.connected.wait(timeout), "%s: no CONNACK within %.1fs" % (self.name, timeout))
        if expect_rc is not None:
            check(self.connack[1] == expect_rc,
                  "%s: CONNACK rc %r" % (self.name, self.connack[1]))
        return self.connack

    def _await_suback(self, rc, mid, topic, timeout):
        check(rc == 0, "%s subscribe rc %d" % (self.name, rc))
        ok = wait_until(lambda: mid in self.subacks, timeout)
        check(ok, "%s: no SUBACK for %r" % (self.name, topic))
        return self.subacks[mid]

    def _publish(self, topic, payload, qos, retain, timeout, wait, **kw):
        info = self.c.publish(topic, payload, qos, retain, **kw)
        if wait and qos > 0:
            ok = wait_until(lambda: info.mid in self.acked, timeout)
            check(ok, "%s: publish of %r qos %d not acknowledged" % (self.name, topic, qos))
        return info.mid

    def connect(self, timeout=5.0, expect_rc=0):
        self.c.connect(HOST, self.port, self.keepalive)
        return self._await_connack(timeout, expect_rc)

    def subscribe(self, topic, qos=0, timeout=5.0):
        rc, mid = self.c.subscribe(topic, qos)
        return self._await_suback(rc, mid, topic, timeout)

    def publish(self, topic, payload, qos=0, retain=False, timeout=5.0, wait=True):
        return self._publish(topic, payload, qos, retain, timeout, wait)

    def get(self, timeout=3.0):
        try:
            return self.msgs.get(timeout=timeout)
        except queue.Empty:
            raise TestFailure("%s: no message within %.1fs" % (self.name, timeout))

    def get_n(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = end - time.monotonic()
            if left <= 0:
                raise TestFailure("%s: got %d of %d messages" % (self.name, len(out), n))
            try:
                out.append(self.msgs.get(timeout=left))
            except queue.Empty:
                pass
        return out

    def none(self, timeout=0.5):
        """The next message if one arrives within timeout, else None. A
        client the broker disconnected fails here: its silence proves
        nothing."""
        try:
            m = self.msgs.get(timeout=timeout)
            return m
        except queue.Empty:
            check(not self.disconnected.is_set(),
                  "%s: disconnected by the broker while waiting for silence" % self.name)
            return None

    def disconnect(self):
        self.c.disconnect()
        self.disconnected.wait(2.0)
        self.c.loop_stop()

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        try:
            self.c.loop_stop()
        except Exception:
            pass


# ---------------------------------------------------------------- durable stores

# The backends whose state survives a restart, in the order the tests run.
DURABLE_BACKENDS = ("sqlite", "lmdb", "redis")
REDIS_SCRIPT = os.path.join(ROOT, "tests", "redis-server.sh")


class RedisServer:
    """A private redis-server started by tests/redis-server.sh (append-only
    file on), which a test may kill -9 and start again on the same port and
    directory."""

    def __init__(self):
        self.port = self.pid = self.dir = None

    def _script(self, *args):
        r = subprocess.run([REDIS_SCRIPT] + [str(a) for a in args], capture_output=True,
                           timeout=20, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise TestFailure("redis-server.sh %s failed: %s" %
                              (" ".join(map(str, args)), r.stderr.decode().strip()))
        return r.stdout.decode().split()

    def start(self):
        """Starts on a free port, or on the same port and dir after kill()."""
        if self.port is None:
            self.port, self.pid, self.dir = self._script("start")
        else:
            self.port, self.pid, self.dir = self._script("start", self.port, self.dir)
        self.port, self.pid = int(self.port), int(self.pid)
        return self

    def kill(self):
        """SIGKILL; the port and data directory are kept for start(). Returns
        once the process is dead (a zombie counts: it holds no socket), which
        the script's own kill may take a second or two longer to see."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return

        def dead():
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                return True
        check(wait_until(dead, 5, step=0.005), "redis-server %d survived SIGKILL" % pid)

    def stop(self):
        if self.pid is not None or self.dir is not None:
            args = ["stop", self.pid if self.pid is not None else 0]
            if self.dir:
                args.append(self.dir)
            try:
                self._script(*args)
            finally:
                self.pid = self.dir = None

    def log_tail(self, n=15):
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except (OSError, TypeError):
            return ""


def redis_cli(port, *args):
    """Runs redis-cli against 127.0.0.1:port; returns stdout lines."""
    r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port)] + [str(a) for a in args],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "redis-cli %s: %s" % (" ".join(map(str, args)),
                                                   r.stderr.decode().strip()))
    return [x for x in r.stdout.decode("utf-8", "replace").splitlines() if x != ""]


def redis_keys(port, prefix):
    """Every key under prefix, with SCAN (never KEYS)."""
    return set(redis_cli(port, "--scan", "--pattern", prefix + "*"))


def sqlite_query(db, sql):
    """Rows of a query run with the sqlite3 shell, as lists of strings."""
    r = subprocess.run(["sqlite3", "-separator", "\t", db, sql], capture_output=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "sqlite3 %r: %s" % (sql, r.stderr.decode().strip()))
    return [line.split("\t") for line in r.stdout.decode("utf-8", "replace").splitlines()]


def lmdb_dump(env_dir, db):
    """The printable dump (mdb_dump -p) of one named database: the raw text,
    in which client ids and topics appear as plain bytes."""
    r = subprocess.run(["mdb_dump", "-p", "-s", db, env_dir], capture_output=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    check(r.returncode == 0, "mdb_dump -s %s: %s" % (db, r.stderr.decode().strip()))
    return r.stdout.decode("utf-8", "replace")


def _redis_shared(ctx):
    """The port of a redis-server this test may share but must not kill:
    CAIRN_REDIS_PORT (./dev test starts one), else one of its own."""
    port = os.environ.get("CAIRN_REDIS_PORT")
    if port:
        return int(port)
    if getattr(ctx, "_own_redis", None) is None:
        ctx._own_redis = ctx.redis()
    return ctx._own_redis.port


def _redis_ctx_redis(self):
    """A private redis-server for this test, stopped (and its dir removed)
    when the test ends."""
    r = RedisServer().start()
    self.add_cleanup(r.stop)
    return r


def _ctx_durable_broker(self, backend, start=True, redis_port=None, **options):
    """A broker on one of DURABLE_BACKENDS (or memory). sqlite and lmdb get
    their own directory; redis gets a key prefix of its own on redis_port
    (default: the shared server), whose keys are deleted when the test ends."""
    require_cairn("cairn's persistence backends")
    n = len(self.brokers)
    opts = dict(persistence_backend=backend)
    if backend in ("sqlite", "lmdb"):
        d = os.path.join(self.workdir, "broker%d-%s" % (n, backend))
        opts["persistence_location"] = d
    elif backend == "redis":
        port = redis_port if redis_port is not None else _redis_shared(self)
        prefix = "cairn-it:%s:%d:%d:" % (self.name, os.getpid(), n)
        opts.update(redis_host=HOST, redis_port=port, redis_key_prefix=prefix)

        def drop_keys():
            keys = sorted(redis_keys(port, prefix))
            for i in range(0, len(keys), 200):
                redis_cli(port, "DEL", *keys[i:i + 200])
        self.add_cleanup(drop_keys)
    opts.update(options)
    b = self.broker(start=start, **opts)
    b.backend = backend
    return b


Context.redis = _redis_ctx_redis
Context.durable_broker = _ctx_durable_broker


def _exited(pid):
    """True once process pid is gone or a zombie (it holds no socket)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class _RedisProcess:
    """A private redis-server placed in Context.brokers after the cluster
    nodes that use it, so Context.close stops it after them: a node is
    asked to exit while its Redis still answers. Its log is copied into the
    test's directory first, which the runner keeps when the test fails."""

    def __init__(self, server, workdir, name):
        self.server = server
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")

    def _save_log(self):
        if self.server.dir:
            try:
                with open(os.path.join(self.server.dir, "redis.log"), "rb") as src, \
                        open(self.log_path, "wb") as dst:
                    dst.write(src.read())
            except OSError:
                pass

    def stop(self, check_exit=True):
        """SIGTERM, and done once the process has exited: a zombie counts
        (its orphaned parent may reap it a second or two later, which the
        script's own stop would wait for); then the script removes the
        directory."""
        self._save_log()
        pid = self.server.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                wait_until(lambda: _exited(pid), 10, step=0.01)
            if _exited(pid):
                self.server.pid = None
        self.server.stop()

    def kill9(self):
        self.server.kill()
        self.stop()

    def log_tail(self, n=30):
        return self.server.log_tail(n)


class Cluster:
    """N cairn nodes in cluster mode on one private redis-server and one
    key prefix (cairn.conf(5): cluster, cluster_node_id), made by
    Context.cluster. nodes[i] is a Broker named nodeI+1 (node1, node2, ...)
    whose cluster_node_id is that name; redis is the RedisServer, which a
    test may kill -9 and start again."""

    def __init__(self, redis, prefix, nodes):
        self.redis = redis
        self.prefix = prefix
        self.nodes = nodes

    def __getitem__(self, i):
        return self.nodes[i]

    def __len__(self):
        return len(self.nodes)

    def alive(self):
        return [b for b in self.nodes if b.alive()]

    def excerpt(self, n=20):
        """The last n lines of every node's log and of redis.log, for a
        failure message."""
        out = []
        for b in self.nodes:
            out.append("--- %s (%s)%s ---\n%s" % (b.name, b.log_path,
                                                  "" if b.alive() else ", not running",
                                                  b.log_tail(n)))
        out.append("--- redis.log ---\n%s" % self.redis.log_tail(8))
        return "\n" + "\n".join(out)


def _ctx_cluster(self, n, start=True, **options):
    """n cairn nodes with cluster true on a private redis-server (its own
    port and directory), sharing one key prefix unique to this test; each
    node has its own cluster_node_id. options go to every node's config
    and override the defaults. The nodes are stopped by PID before the
    redis-server when the test ends."""
    require_cairn("cairn's cluster mode")
    k = getattr(self, "_clusters", 0)
    self._clusters = k + 1
    rs = RedisServer().start()
    stopper = _RedisProcess(rs, self.workdir, "redis" if k == 0 else "c%d-redis" % k)
    prefix = "cairn-it:%s:%d:%d:" % (self.name, os.getpid(), k)
    nodes = []
    try:
        for i in range(n):
            name = "node%d" % (i + 1) if k == 0 else "c%d-node%d" % (k, i + 1)
            opts = dict(persistence_backend="redis", redis_host=HOST, redis_port=rs.port,
                        redis_key_prefix=prefix, cluster=True, cluster_node_id=name)
            opts.update(options)
            b = Broker(self.workdir, name, **opts)
            b.backend = "redis"
            self.brokers.append(b)
            nodes.append(b)
    finally:
        self.brokers.append(stopper)
    if start:
        for b in nodes:
            b.start()
    return Cluster(rs, prefix, nodes)


Context.cluster = _ctx_cluster


class _SessionClient:
    """A clean_session=0 raw-socket client whose protocol state outlives its
    connections: connect() (re)opens the socket and starts a reader thread
    that calls self._handle(c, type, flags, body) under self.lock."""

    def __init__(self, port, client_id):
        self.port = port
        self.client_id = client_id
        self.c = None
        self.thread = None
        self.lock = threading.Condition()
        self.errors = []

    @property
    def connected(self):
        return self.thread is not None and self.thread.is_alive()

    def connect(self, port=None, clean=False):
        """Connects (clean_session=0 by default); returns session present."""
        if port is not None:
            self.port = port
        self.close()
        self.c = RawClient(self.port)
        sp, _ = self.c.connect(self.client_id, clean=clean)
        self.thread = threading.Thread(target=self._reader, args=(self.c,), daemon=True)
        self.thread.start()
        return sp

    def _reader(self, c):
        try:
            while True:
                t, f, body = c.read_packet(60)
                with self.lock:
                    self._handle(c, t, f, body)
                    self.lock.notify_all()
        except Exception:
            pass
        with self.lock:
            self.lock.notify_all()

    def close(self):
        if self.c is not None:
            try:  # wakes the reader thread's recv, which close alone does not
                self.c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.c.close()
        if self.thread is not None:
            self.thread.join(3)
        self.c = self.thread = None


class DurableSubscriber(_SessionClient):
    """A clean_session=0 subscriber over a raw socket whose QoS 2 receiver
    state outlives its connections, as MQTT-4.3.3-2 asks of a client: a
    PUBLISH whose packet id it has answered with PUBREC, and whose PUBREL has
    not arrived, is a resend and is not delivered again. received lists the
    payloads delivered (once per QoS 2 exchange), in arrival order."""

    def __init__(self, port, client_id):
        super().__init__(port, client_id)
        self.pending_rel = set()  # QoS 2 ids answered with PUBREC, no PUBREL yet
        self.received = []  # (payload, qos, dup, pid)
        self.subacks = {}
        self.last_rx = time.monotonic()

    def _handle(self, c, t, f, body):
        self.last_rx = time.monotonic()
        if t == PUBLISH:
            self._on_publish(c, parse_publish(f, body))
        elif t == PUBREL:
            pid = struct.unpack("!H", body[:2])[0]
            self.pending_rel.discard(pid)
            c.try_send(ack_packet(PUBCOMP, pid))
        elif t == SUBACK:
            self.subacks[struct.unpack("!H", body[:2])[0]] = list(body[2:])
        else:
            self.errors.append("unexpected packet type %d" % t)

    def _on_publish(self, c, m):
        if m["qos"] == 2:
            if m["pid"] not in self.pending_rel:
                self.pending_rel.add(m["pid"])
                self.received.append((m["payload"], 2, m["dup"], m["pid"]))
            c.try_send(ack_packet(PUBREC, m["pid"]))
            return
        self.received.append((m["payload"], m["qos"], m["dup"], m["pid"]))
        if m["qos"] == 1:
            c.try_send(ack_packet(PUBACK, m["pid"]))

    def subscribe(self, pid, filters, timeout=5.0):
        with self.lock:
            self.c.send(subscribe_packet(pid, filters))
            ok = self.lock.wait_for(lambda: pid in self.subacks, timeout)
        check(ok, "%s: no SUBACK" % self.client_id)
        return self.subacks.pop(pid)

    def payloads(self):
        with self.lock:
            return [r[0] for r in self.received]

    def wait_for(self, want, timeout):
        """Waits until every payload in want was delivered; returns the
        payloads still missing."""
        want = set(want)
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                missing = want - {r[0] for r in self.received}
                left = end - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self.lock.wait(min(left, 0.2))

    def wait_count(self, n, timeout):
        with self.lock:
            self.lock.wait_for(lambda: len(self.received) >= n, timeout)
            return len(self.received)

    def settle(self, quiet=0.5, timeout=10.0):
        """Waits until nothing has arrived for quiet seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                idle = time.monotonic() - self.last_rx
            if idle >= quiet:
                return True
            time.sleep(min(quiet - idle, 0.1) + 0.01)
        return False

    def disconnect(self):
        """Sends DISCONNECT and waits for the broker to close."""
        if self.c is None:
            return
        with self.lock:
            self.c.try_send(DISCONNECT_PKT)
        self.thread.join(3)
        check(not self.thread.is_alive(),
              "%s: connection still open 3s after DISCONNECT" % self.client_id)
        self.close()

class DurablePublisher(_SessionClient):
    """A clean_session=0 publisher over a raw socket that keeps at most
    window QoS 1/2 exchanges open and, like a real client after a reconnect
    (MQTT-4.4.0-1), resends each unacknowledged PUBLISH with DUP=1 and each
    PUBREL, with their original packet ids.

    acked maps a payload to the time its PUBACK (QoS 1) or PUBREC (QoS 2)
    arrived: from then on the broker owns the message. done holds the
    payloads whose exchange is complete (PUBACK or PUBCOMP)."""

    def __init__(self, port, client_id, window=64):
        super().__init__(port, client_id)
        self.window = window
        self.inflight = {}  # pid -> [topic, payload, qos, state]; insertion = send order
        self.next_pid = 1
        self.acked = {}
        self.first_sent = {}
        self.done = set()

    def _handle(self, c, t, f, body):
        pid = struct.unpack("!H", body[:2])[0] if len(body) >= 2 else None
        now = time.monotonic()
        e = self.inflight.get(pid)
        if t == PUBACK and e and e[2] == 1:
            del self.inflight[pid]
            self.acked.setdefault(e[1], now)
            self.done.add(e[1])
        elif t == PUBREC and e and e[2] == 2:
            e[3] = "pubrec"
            self.acked.setdefault(e[1], now)
            c.try_send(ack_packet(PUBREL, pid))
        elif t == PUBCOMP and e and e[3] == "pubrec":
            del self.inflight[pid]
            self.done.add(e[1])
        else:
            self.errors.append("unexpected packet %d for id %r" % (t, pid))

    def resend(self):
        """After a reconnect: every open exchange again, in its order."""
        with self.lock:
            for pid, (topic, payload, qos, state) in list(self.inflight.items()):
                if state == "pubrec":
                    self.c.try_send(ack_packet(PUBREL, pid))
                else:
                    self.c.try_send(publish_packet(topic, payload, qos=qos, pid=pid, dup=True))

    def publish(self, topic, payload, qos, timeout=10.0):
        """Sends one PUBLISH once the window has room. Returns False if the
        connection is gone or the window stayed full for timeout seconds."""
        with self.lock:
            ok = self.lock.wait_for(lambda: len(self.inflight) < self.window or
                                    not self.connected, timeout)
            if not ok or not self.connected:
                return False
            while self.next_pid in self.inflight:
                self.next_pid = self.next_pid % 65535 + 1
            pid = self.next_pid
            self.next_pid = self.next_pid % 65535 + 1
            self.inflight[pid] = [topic, payload, qos, "sent"]
            self.first_sent.setdefault(payload, time.monotonic())
            return self.c.try_send(publish_packet(topic, payload, qos=qos, pid=pid))

    def wait_idle(self, timeout):
        """True once every exchange is complete."""
        with self.lock:
            return self.lock.wait_for(lambda: not self.inflight, timeout)


# ---------------------------------------------------------------- MQTT.js

MQTTJS_SRC = os.path.join(ROOT, "tests", "integration", "mqttjs")


def mqttjs_dir():
    """The directory holding MQTT.js at the version tests/integration/
    mqttjs/package.json pins, installed from the npm registry on first use
    ($CAIRN_MQTTJS_DIR, default ./mqttjs under the directory the tests run
    in, i.e. the build directory; never in the source tree). Installing is
    part of the test set-up: a failure is a failed test, not a skip."""
    import fcntl
    import json
    import shutil
    d = os.path.abspath(os.environ.get("CAIRN_MQTTJS_DIR", "mqttjs"))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(MQTTJS_SRC, "package.json")) as f:
        want = json.load(f)["dependencies"]["mqtt"]
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(os.path.join(d, "node_modules", "mqtt", "package.json")) as f:
                have = json.load(f).get("version")
        except OSError:
            have = None
        if have != want:
            if shutil.which("npm") is None:
                raise TestFailure("MQTT.js tests need node and npm (./dev test installs them)")
            shutil.copy(os.path.join(MQTTJS_SRC, "package.json"), d)
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
                                "--prefix", d], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
            if r.returncode != 0:
                raise TestFailure("npm install of MQTT.js %s failed:\n%s" %
                                  (want, r.stdout.decode(errors="replace")[-2000:]))
    return d


class MqttJs:
    """One MQTT.js client in its own node process (tests/integration/mqttjs/
    client.js), driven by JSON lines; every wait is bounded. Buffers in
    properties and payloads cross as {"$b64": ...} and come back as bytes."""

    def __init__(self, ctx, port, protocol_version=5, client_id=None, **opts):
        import json
        self._json = json
        d = mqttjs_dir()
        env = dict(os.environ, MQTTJS_DIR=d)
        self.proc = subprocess.Popen(["node", os.path.join(MQTTJS_SRC, "client.js")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

        def stop():
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
        self.stop = stop
        ctx.add_cleanup(stop)
        o = {"protocolVersion": protocol_version, "clean": opts.pop("clean", True)}
        if client_id is not None:
            o["clientId"] = client_id
        o.update(opts)
        self.port = port
        self.send({"op": "connect", "url": "mqtt://%s:%d" % (HOST, port), "opts": o})

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = self._json.loads(line)
            except ValueError:
                continue
            self.events.put(self._decode(ev))
        self.events.put({"ev": "exit"})

    def _decode(self, v):
        if isinstance(v, dict):
            if set(v) == {"$b64"}:
                import base64
                return base64.b64decode(v["$b64"])
            return {k: self._decode(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self._decode(x) for x in v]
        return v

    def _encode(self, v):
        if isinstance(v, (bytes, bytearray)):
            import base64
            return {"$b64": base64.b64encode(bytes(v)).decode()}
        if isinstance(v, dict):
            return {k: self._encode(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self._encode(x) for x in v]
        return v

    def send(self, cmd):
        self.proc.stdin.write((self._json.dumps(self._encode(cmd)) + "\n").encode())
        self.proc.stdin.flush()

    def wait(self, kind, timeout=5.0, pred=None):
        """The next event of kind (and matching pred); events of other kinds
        seen meanwhile are kept in self.seen. Fails the test on timeout."""
        ev = self.poll(kind, timeout, pred)
        if ev is None:
            raise TestFailure("MQTT.js: no %s event in %.1fs (seen: %r)" %
                              (kind, timeout, self.seen[-5:]))
        return ev

    def poll(self, kind, timeout, pred=None):
        """As wait, but None when no such event comes within timeout (for
        what must not arrive). The client exiting still fails the test."""
        deadline = time.time() + timeout
        for ev in list(self.seen):
            if ev["ev"] == kind and (pred is None or pred(ev)):
                self.seen.remove(ev)
                return ev
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["ev"] == kind and (pred is None or pred(ev)):
                return ev
            if ev["ev"] == "exit" and kind != "exit":
                raise TestFailure("MQTT.js client exited waiting for %s" % kind)
            self.seen.append(ev)

    def connack(self, timeout=5.0):
        return self.wait("connect", timeout)

    def subscribe(self, filt, qos=0, **opts):
        opts["qos"] = qos
        self.send({"op": "subscribe", "filter": filt, "opts": opts})
        return self.wait("suback")

    def unsubscribe(self, filt, **opts):
        self.send({"op": "unsubscribe", "filter": filt, "opts": opts})
        return self.wait("unsuback")

    def publish(self, topic, payload, qos=0, retain=False, wait=True, tag=None, **opts):
        opts.update(qos=qos, retain=retain)
        self.send({"op": "publish", "topic": topic, "payload": bytes(payload), "opts": opts,
                   "tag": tag})
        if wait:
            return self.wait("published", pred=lambda e: e.get("tag") == tag)
        return None

    def messages(self, n, timeout=5.0):
        return [self.wait("message", timeout) for _ in range(n)]

    def end(self, **opts):
        self.send({"op": "end", "opts": opts})
        return self.wait("ended")
