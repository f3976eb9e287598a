"""MQTT 5.0 helpers for the integration tests: raw 5.0 packets with
property blocks (built and parsed here, independently of the broker's
codec), and a paho client speaking protocol=MQTTv5 with bounded waits.
Not a test module itself (no test_ prefix)."""

import struct

from harness import (CONNACK, DISCONNECT, HOST, PUBLISH, SUBACK, UNSUBACK, Paho, check,
                     connect_packet, mstr, packet, parse_publish_head, varint)

# Property identifiers (MQTT 5.0 section 2.2.2.2) and their types.
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION_DATA = \
    0x01, 0x02, 0x03, 0x08, 0x09
SUBSCRIPTION_ID, SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEPALIVE = 0x0B, 0x11, 0x12, 0x13
AUTH_METHOD, AUTH_DATA, REQUEST_PROBLEM_INFO, WILL_DELAY = 0x15, 0x16, 0x17, 0x18
REQUEST_RESPONSE_INFO, REASON_STRING = 0x19, 0x1F
RECEIVE_MAX, TOPIC_ALIAS_MAX, TOPIC_ALIAS, MAX_QOS, RETAIN_AVAILABLE, USER = \
    0x21, 0x22, 0x23, 0x24, 0x25, 0x26
MAX_PACKET_SIZE, WILDCARD_AVAILABLE, SUB_ID_AVAILABLE, SHARED_AVAILABLE = 0x27, 0x28, 0x29, 0x2A

_BYTE = {PAYLOAD_FORMAT, REQUEST_PROBLEM_INFO, REQUEST_RESPONSE_INFO, MAX_QOS, RETAIN_AVAILABLE,
         WILDCARD_AVAILABLE, SUB_ID_AVAILABLE, SHARED_AVAILABLE}
_TWO = {SERVER_KEEPALIVE, RECEIVE_MAX, TOPIC_ALIAS_MAX, TOPIC_ALIAS}
_FOUR = {MESSAGE_EXPIRY, SESSION_EXPIRY, WILL_DELAY, MAX_PACKET_SIZE}
_VBI = {SUBSCRIPTION_ID}
_BIN = {CORRELATION_DATA, AUTH_DATA}


def props(*items):
    """Encode a property block with its length: items are (id, value);
    a User Property's value is a (name, value) pair."""
    body = b""
    for pid, v in items:
        body += bytes([pid])
        if pid in _BYTE:
            body += bytes([v])
        elif pid in _TWO:
            body += struct.pack("!H", v)
        elif pid in _FOUR:
            body += struct.pack("!I", v)
        elif pid in _VBI:
            body += varint(v)
        elif pid == USER:
            body += mstr(v[0]) + mstr(v[1])
        else:
            body += mstr(v)
    return varint(len(body)) + body


def _read_varint(b, off):
    n, mult = 0, 1
    while True:
        x = b[off]
        off += 1
        n += (x & 0x7F) * mult
        mult *= 128
        if not x & 0x80:
            return n, off


def parse_props(b, off=0):
    """Returns (dict id -> value or list for USER / SUBSCRIPTION_ID, new offset)."""
    n, off = _read_varint(b, off)
    end = off + n
    out = {}
    while off < end:
        pid = b[off]
        off += 1
        if pid in _BYTE:
            v = b[off]
            off += 1
        elif pid in _TWO:
            v = struct.unpack("!H", b[off:off + 2])[0]
            off += 2
        elif pid in _FOUR:
            v = struct.unpack("!I", b[off:off + 4])[0]
            off += 4
        elif pid in _VBI:
            v, off = _read_varint(b, off)
        else:
            ln = struct.unpack("!H", b[off:off + 2])[0]
            v = bytes(b[off + 2:off + 2 + ln])
            off += 2 + ln
            if pid == USER:
                ln2 = struct.unpack("!H", b[off:off + 2])[0]
                v = (v.decode(), bytes(b[off + 2:off + 2 + ln2]).decode())
                off += 2 + ln2
            elif pid not in _BIN:
                v = v.decode()
        if pid in (USER, SUBSCRIPTION_ID):
            out.setdefault(pid, []).append(v)
        else:
            out[pid] = v
    return out, end


def connect5(client_id, clean=True, keepalive=60, properties=b"\x00", will=None,
             will_properties=b"\x00", username=None, password=None):
    """A 5.0 CONNECT; will = (topic, payload, qos, retain)."""
    return connect_packet(client_id, clean, keepalive, will, username, password, level=5,
                          properties=properties, will_properties=will_properties)


def publish5(topic, payload=b"", qos=0, retain=False, pid=1, properties=b"\x00", dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    fb = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = mstr(topic)
    if qos:
        body += struct.pack("!H", pid)
    return packet(fb, body + properties + payload)


def subscribe5(pid, filters, properties=b"\x00"):
    """filters: list of (filter, options byte)."""
    body = struct.pack("!H", pid) + properties
    for f, o in filters:
        body += mstr(f) + bytes([o])
    return packet(0x82, body)


def unsubscribe5(pid, filters):
    body = struct.pack("!H", pid) + b"\x00"
    for f in filters:
        body += mstr(f)
    return packet(0xA2, body)


def ack5(kind, pid, reason=None):
    fb = {4: 0x40, 5: 0x50, 6: 0x62, 7: 0x70}[kind]
    body = struct.pack("!H", pid)
    if reason is not None:
        body += bytes([reason])
    return packet(fb, body)


def disconnect5(reason=0, properties=None):
    body = bytes([reason])
    if properties is not None:
        body += properties
    return packet(0xE0, body)


def do_connect(c, client_id, expect_reason=0, **kw):
    """Send a 5.0 CONNECT on RawClient c; returns (session_present, reason, props)."""
    c.send(connect5(client_id, **kw))
    _, body = c.expect(CONNACK)
    pr, _ = parse_props(body, 2)
    if expect_reason is not None:
        check(body[1] == expect_reason,
              "CONNACK reason 0x%02x, want 0x%02x" % (body[1], expect_reason))
    return body[0] & 1, body[1], pr


def parse_publish5(flags, body):
    topic, qos, pid, off = parse_publish_head(flags, body)
    pr, off = parse_props(body, off)
    return dict(topic=topic, payload=bytes(body[off:]), qos=qos, retain=bool(flags & 1),
                dup=bool(flags & 8), pid=pid, props=pr)


def read_publish5(c, timeout=None):
    f, body = c.expect(PUBLISH, timeout)
    return parse_publish5(f, body)


def read_suback5(c, pid, kind=SUBACK):
    _, body = c.expect(kind)
    check(struct.unpack("!H", body[:2])[0] == pid, "SUBACK/UNSUBACK packet id mismatch")
    _, off = parse_props(body, 2)
    return list(body[off:])


def read_unsuback5(c, pid):
    return read_suback5(c, pid, UNSUBACK)


def read_ack5(c, kind):
    """Returns (pid, reason) of the next packet, which must be of type kind."""
    _, body = c.expect(kind)
    pid = struct.unpack("!H", body[:2])[0]
    return pid, (body[2] if len(body) > 2 else 0)


def expect_disconnect(c, reason, timeout=3.0):
    """The broker sends DISCONNECT with reason and closes."""
    t, _, body = c.read_packet(timeout)
    check(t == DISCONNECT, "expected DISCONNECT 0x%02x, got packet type %d %r" %
          (reason, t, body[:20]))
    got = body[0] if body else 0
    check(got == reason, "DISCONNECT reason 0x%02x, want 0x%02x" % (got, reason))
    check(c.expect_closed(timeout), "socket left open after DISCONNECT 0x%02x" % reason)


# ---------------------------------------------------------------- paho v5

def _paho():
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
    return mqtt, Properties, PacketTypes, SubscribeOptions


class Paho5(Paho):
    """A paho client speaking MQTT 5.0 with a message queue and bounded waits:
    harness.Paho with 5.0 properties, subscription options and reason
    codes."""

    name = "paho5"

    def __init__(self, port, client_id="", keepalive=60, ctx=None):
        mqtt, self.Properties, self.PacketTypes, self.SubscribeOptions = _paho()
        self.disconnect_reason = None
        super().__init__(port, client_id, keepalive=keepalive, ctx=ctx)

    def _new_client(self, mqtt, client_id, clean):
        return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)

    def _on_connect(self, c, u, flags, rc, properties=None):
        self.connack = (flags.get("session present", 0), rc.value if hasattr(rc, "value")
                        else rc, properties)
        self.connected.set()

    def _on_disconnect(self, c, u, rc, properties=None):
        self.disconnect_reason = rc.value if hasattr(rc, "value") else rc
        self.disconnected.set()

    def _on_subscribe(self, c, u, mid, codes, properties=None):
        with self.lock:
            self.subacks[mid] = [x.value if hasattr(x, "value") else x for x in codes]

    def props(self, ptype, **kw):
        p = self.Properties(getattr(self.PacketTypes, ptype))
        for k, v in kw.items():
            setattr(p, k, v)
        return p

    def will_set(self, topic, payload, qos=0, retain=False, **props):
        self.c.will_set(topic, payload, qos, retain,
                        properties=self.props("WILLMESSAGE", **props) if props else None)

    def connect(self, timeout=5.0, expect_rc=0, clean_start=True, **props):
        self.c.connect(HOST, self.port, self.keepalive, clean_start=clean_start,
                       properties=self.props("CONNECT", **props) if props else None)
        return self._await_connack(timeout, expect_rc)

    def subscribe(self, topic, qos=0, no_local=False, retain_as_published=False,
                  retain_handling=0, sub_id=None, timeout=5.0):
        o = self.SubscribeOptions(qos=qos, noLocal=no_local,
                                  retainAsPublished=retain_as_published,
                                  retainHandling=retain_handling)
        p = self.props("SUBSCRIBE", SubscriptionIdentifier=sub_id) if sub_id else None
        rc, mid = self.c.subscribe(topic, options=o, properties=p)
        return self._await_suback(rc, mid, topic, timeout)

    def publish(self, topic, payload, qos=0, retain=False, timeout=5.0, wait=True, **props):
        p = self.props("PUBLISH", **props) if props else None
        return self._publish(topic, payload, qos, retain, timeout, wait, properties=p)

    def disconnect(self, reason=0, **props):
        from paho.mqtt.reasoncodes import ReasonCodes
        rc = ReasonCodes(self.PacketTypes.DISCONNECT, identifier=reason)
        self.c.disconnect(reasoncode=rc,
                          properties=self.props("DISCONNECT", **props) if props else None)
        self.disconnected.wait(2.0)
        self.c.loop_stop()
