#!/usr/bin/env python3
"""Writes the seed sessions of the network fuzzer (tests/fuzz_net.c): each
NAME.bin is one client's session, valid MQTT 3.1.1 packets back to back,
built with the integration harness's packet builders.
The fuzzer rewrites client identifiers from its own small pool, so the ids
here only need to be valid. Topics share the fz/ tree so that sessions
meet: one publishes what another subscribed to, queues fill for offline
persistent sessions, retained messages and wills reach subscribers.

    python3 tests/corpus/net/seeds.py   # rewrites the .bin files beside it
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

from harness import DISCONNECT_PKT as DISCONNECT  # noqa: E402
from harness import PINGREQ_PKT as PINGREQ  # noqa: E402
from harness import PUBACK, PUBCOMP, PUBREC, PUBREL, ack_packet  # noqa: E402
from harness import connect_packet as connect  # noqa: E402
from harness import publish_packet as publish  # noqa: E402
from harness import subscribe_packet as subscribe  # noqa: E402
from harness import unsubscribe_packet as unsubscribe  # noqa: E402

ACK = {"puback": PUBACK, "pubrec": PUBREC, "pubrel": PUBREL, "pubcomp": PUBCOMP}


def ack(kind, pid):
    return ack_packet(ACK[kind], pid)


SEEDS = {
    "clean-pubsub-q0": [connect("fz0"), subscribe(1, [("fz/#", 0)]),
                        publish("fz/a", b"hello"), unsubscribe(2, ["fz/#"]), DISCONNECT],
    "persist-sub-q1": [connect("fz1", clean=False), subscribe(1, [("fz/+/q", 1)]),
                       publish("fz/x/q", b"q1 to self", qos=1, pid=3), ack("puback", 1),
                       DISCONNECT],
    "persist-q2-full": [connect("fz2", clean=False), subscribe(5, [("fz/#", 2)]),
                        publish("fz/b/c", b"exactly once", qos=2, pid=7), ack("pubrel", 7),
                        ack("pubrec", 1), ack("pubcomp", 1), DISCONNECT],
    "q2-half-open": [connect("fz3", clean=False), publish("fz/a", b"no pubrel", qos=2, pid=9),
                     publish("fz/b/c", b"second", qos=2, pid=10), ack("pubrel", 10)],
    "retained": [connect("fz0"), publish("fz/r/x", b"kept", qos=1, pid=1, retain=True),
                 publish("fz/r/y", b"q0 kept", retain=True),
                 publish("fz/r/y", b"", qos=1, pid=2, retain=True),
                 subscribe(3, [("fz/r/#", 1)]), ack("puback", 1), DISCONNECT],
    "will-persist": [connect("fz1", clean=False, keepalive=5,
                             will=("fz/will/1", b"gone", 1, True)),
                     subscribe(1, [("fz/will/#", 2), ("fz/a", 1)]), PINGREQ],
    "will-clean-q2": [connect("fz2", will=("fz/a", b"last", 2, False)),
                      publish("fz/a", b"before", qos=1, pid=4)],
    "multi-sub": [connect("fz3", clean=False),
                  subscribe(1, [("fz/a", 0), ("fz/+", 1), ("fz/#", 2), ("$SYS/#", 1),
                                ("+/+/c", 2)]),
                  unsubscribe(2, ["fz/+", "not/there"]), subscribe(3, [("fz/a", 2)]),
                  publish("fz/a", b"overlap", qos=2, pid=4), ack("pubrel", 4), DISCONNECT],
    "publisher-burst": [connect("fz0")] +
                       [publish("fz/b/c" if i % 2 else "fz/a", b"burst %d" % i,
                                qos=1 + i % 2, pid=20 + i) for i in range(12)] +
                       [ack("pubrel", 20 + i) for i in range(12) if i % 2] + [DISCONNECT],
    "user-password": [connect("fz1", username="alice", password=b"secret"), PINGREQ,
                      publish("fz/a", b"from alice", qos=1, pid=1), DISCONNECT],
    "mqtt31": [connect("fz2", clean=False, proto_name="MQIsdp", level=3),
               subscribe(1, [("fz/a", 1)]),
               publish("fz/a", b"3.1", qos=1, pid=2), DISCONNECT],
    "resume-acks": [connect("fz3", clean=False)] +
                   [ack("puback", i) for i in range(1, 4)] +
                   [ack("pubrec", i) for i in range(4, 7)] +
                   [ack("pubcomp", i) for i in range(4, 7)] + [PINGREQ, DISCONNECT],
    "unsubscribe-all": [connect("fz1", clean=False), unsubscribe(1, ["fz/+/q", "fz/#", "fz/a"]),
                        publish("fz/b/c", b"nobody", qos=1, pid=2), DISCONNECT],
    "utf8-topics": [connect("fz0", clean=False),
                    subscribe(1, [("fz/\u00e9t\u00e9/#", 1), ("fz/+/\u6771\u4eac", 2)]),
                    publish("fz/\u00e9t\u00e9/\U0001F600", "\u00e9".encode(), qos=1, pid=2),
                    publish("fz/x/\u6771\u4eac", b"tokyo", qos=2, pid=3, retain=True),
                    ack("pubrel", 3), DISCONNECT],
    "deep-topics": [connect("fz1", clean=False),
                    subscribe(1, [("fz/" + "/" * 3000 + "#", 1), ("fz/" + "+/" * 300 + "#", 2)]),
                    publish("fz/" + "/" * 600 + "x", b"deep", qos=1, pid=2),
                    publish("fz/" + "a/" * 250 + "b", b"levels", qos=2, pid=3, retain=True),
                    ack("pubrel", 3), DISCONNECT],
    "dollar-topics": [connect("fz3"), subscribe(1, [("#", 1), ("$foo/#", 2), ("+/a", 0)]),
                      publish("$foo/bar", b"dollar", qos=1, pid=2),
                      publish("$SYS/broker/x", b"sys", qos=2, pid=3, retain=True),
                      ack("pubrel", 3), publish("fz/a", b"plain", qos=1, pid=4), DISCONNECT],
    "clean-takes-persistent": [connect("fz2", clean=True), subscribe(1, [("fz/b/#", 1)]),
                               publish("fz/b/c", b"clean", qos=2, pid=1), ack("pubrel", 1),
                               DISCONNECT],
}


def main():
    for name, packets in SEEDS.items():
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(b"".join(packets))


if __name__ == "__main__":
    main()
