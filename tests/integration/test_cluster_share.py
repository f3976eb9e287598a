"""Cluster mode: a shared subscription group gives each message to one
member in the whole cluster, also when the node that read it dies or
stalls between the commit that gave it to a member and its
acknowledgement (issue 13; src/cluster_share.c, backends/redis/share.c,
cairn-redis(5): the {c:ID}:shared marks). The commit records each QoS 1
and 2 entry it gives in the member's session; a takeover asks every member
of the group first, acknowledges what one of them holds (that member gets
it from its session, wherever it resumes) and marks the rest taken, so
that a late commit of the stalled reader is fenced instead of doubling it
(MQTT5-4.8.2-4, MQTT5-4.8.2-5).

Tagged "cluster" and "share" (run.py --only cluster, --only share); each
test starts its own redis-server and nodes on loopback (or uses the Redis
Cluster of tests/with-redis-cluster.sh) and stops them by PID. The kill at
the worst moment needs a build configured with --enable-fault-injection
(the test-only key share_test_kill_after); elsewhere it skips.
"""

import os
import re
import signal
import subprocess
import time

from harness import Skip, broker_command, check, require_cairn, wait_until
from test_cluster import (_PahoPublisher, _cli, _counts, _group_pending, _log_key, _share_counts,
                          _share_members, _share_wait, _tag as _cluster_tag, _timeout)


def _tag(*tags):
    return _cluster_tag("share", *tags)


def _require_fault_injection(ctx):
    """Skip unless this build accepts the test-only share_test_kill_after."""
    require_cairn("share_test_kill_after is a key of cairn's fault-injection builds")
    probe = os.path.join(ctx.workdir, "shareprobe.conf")
    with open(probe, "w") as f:
        f.write("share_test_kill_after 1\n")
    r = subprocess.run([broker_command(), "-c", probe, "-t"], capture_output=True, timeout=10)
    if r.returncode != 0:
        raise Skip("built without --enable-fault-injection: no share_test_kill_after")


def _publish(pub, tag, n, qos_of):
    """n messages on TAG/t/0..2, payload "TAG-I-qQ", QoS qos_of(i); returns
    the payloads in publish order."""
    out = []
    for i in range(n):
        q = qos_of(i)
        p = b"%s-%d-q%d" % (tag.encode(), i, q)
        while pub.open_count() >= 40:
            time.sleep(0.002)
        pub.publish("%s/t/%d" % (tag, i % 3), p, q)
        out.append(p)
    return out


def _both(members):
    """Payloads that reached more than one member."""
    seen = {}
    for m in members:
        for p in _counts(m):
            seen[p] = seen.get(p, 0) + 1
    return sorted(p for p, n in seen.items() if n > 1)

def _once_problems(members, sent, acked):
    """What is wrong with a group's deliveries after a reader was lost:
    a message sent but not acknowledged to the publisher, one acknowledged
    that reached no member, one (QoS 1 or 2) that reached both members.
    Returns the problems and the payloads that reached both."""
    problems = []
    if len(acked) != len(sent):
        problems.append("%d of %d messages acknowledged to the publisher" % (len(acked), len(sent)))
    missing = set(acked) - set(_share_counts(members))
    if missing:
        problems.append("%d acknowledged messages reached no member, e.g. %r" %
                        (len(missing), sorted(missing)[:5]))
    both = _both(members)
    q2 = [p for p in both if p.endswith(b"q2")]
    if q2:
        problems.append("%d QoS 2 messages reached both members, e.g. %r" % (len(q2), q2[:5]))
    if len(both) > len(q2):
        problems.append("%d QoS 1 messages reached both members, e.g. %r" %
                        (len(both) - len(q2), [p for p in both if not p.endswith(b"q2")][:5]))
    return problems, both


# covers: MQTT5-4.8.2-4
@_tag("kill9")
@_timeout(90)
def test_cluster_share_reader_killed_after_commit_gives_once(ctx):
    """Members c24k-m0 on node 1 and c24k-m1 on node 2 of one group; node 2
    kills itself (share_test_kill_after 40: SIGKILL after the commit that
    gives its 40th entry, before that entry's acknowledgement) while a
    publisher on node 3 sends 300 QoS 1 and 2 messages. Node 1 takes over
    what node 2 left unacknowledged: the entries node 2 had given to m1 are
    acknowledged, not given again, and m1, resuming on node 3, gets them
    from its session. Every message reaches a member, none reaches both,
    and nothing is left pending in the group."""
    _require_fault_injection(ctx)
    cl = ctx.cluster(3, start=False, max_queued_messages=0)
    cl[1].options["share_test_kill_after"] = "40"
    cl[1]._write_conf()
    for b in cl.nodes:
        b.start()
    n2 = cl[1]
    members = _share_members(ctx, cl, "c24k", [0, 1], "$share/gk24/c24k/#")
    pub = _PahoPublisher(ctx, "c24k-pub")
    check(pub.connect(cl[2].port) == 0, "fresh paho publisher: session present 1")
    sent = _publish(pub, "c24k", 300, lambda i: 1 + i % 2)
    died = wait_until(lambda: n2.proc.poll() is not None, 20)
    check(died, "node 2 did not kill itself after giving out 40 entries (m1 got %d)%s" %
          (len(members[1].received), cl.excerpt()))
    check(n2.proc.returncode == -signal.SIGKILL,
          "node 2 ended with status %r, want SIGKILL%s" % (n2.proc.returncode, cl.excerpt()))
    lost_at = time.monotonic()
    n2.kill9()  # reaps it
    members[1].close()
    check(members[1].connect(cl[2].port) == 1, "c24k-m1: session present 0 on node 3")
    check(wait_until(lambda: pub.open_count() == 0, 20),
          "publisher: %d exchanges still open" % pub.open_count())
    acked = pub.acked()
    _share_wait(members, acked, timeout=30)
    # Past the idle time and a claim round: a takeover would have come.
    time.sleep(max(0.0, lost_at + 9.0 - time.monotonic()))
    for m in members:
        m.settle(0.5, 3)
    problems, both = _once_problems(members, sent, acked)
    taken = "given to a member already" in cl[0].log_text() + cl[2].log_text()
    if not taken:
        problems.append("no takeover found entries given to a member already (node 2 died "
                        "after the commit of its 40th entry)")
    pending = [_group_pending(cl, "c24k/t/%d" % i, "gk24/c24k/#") for i in range(3)]
    if any(n > 0 for n in pending):
        problems.append("entries still pending in the group: %r" % pending)
    for m in members:
        problems += ["%s: %s" % (m.client_id, e) for e in m.errors[:3]]
    print("kill after the commit: %d acknowledged, per member %r, %d at both" %
          (len(acked), [len(m.received) for m in members], len(both)))
    check(not problems, "\n".join(problems) + cl.excerpt())


def _stopped(pid):
    """Whether process pid is stopped (SIGSTOP): state T in /proc."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


def _incarnation(node):
    """The incarnation node's log says it joined the cluster as."""
    m = re.search(r"joined the cluster as incarnation (\d+)", node.log_text())
    check(m is not None, "%s: no incarnation in its log" % node.name)
    return m.group(1)


def _pending_of(cl, topic, key, consumer):
    """How many entries of shared group key in topic's stream consumer
    (an incarnation) holds unacknowledged."""
    out = _cli(cl, "XPENDING", _log_key(cl, topic), key, "-", "+", "1000", consumer)
    return len([x for x in out if "-" in x]) if out else 0


# covers: MQTT5-4.8.2-4
@_tag("stall")
@_timeout(90)
def test_cluster_share_stalled_reader_commit_is_fenced(ctx):
    """Members c24s-m0 on node 1 and c24s-m1 on node 2 of one group; node 2
    stops itself (share_test_stop_before_commit 30: SIGSTOP once it has
    staged 30 entries for m1, before the commit that holds them) while a
    publisher on node 3 sends 300 QoS 1 and 2 messages on one topic. Node
    1 takes over every entry node 2 held (none is left pending to node 2);
    then node 2 is continued (SIGCONT): its commit is fenced, by the
    entries marked taken in m1's session or, when the janitor parked node
    2's sessions during the stop (its alive key lapses after 5 s too), by
    m1's token, and m1 never gets what node 2 held back for it (m1's
    connection closes; it resumes on node 3). Every message reaches a
    member, none reaches both. (The fence by the marks alone, with the
    token still valid, is check_cluster's t_share_given_once.)"""
    _require_fault_injection(ctx)
    cl = ctx.cluster(3, start=False, max_queued_messages=0)
    n2 = cl[1]
    n2.options["share_test_stop_before_commit"] = "30"
    n2._write_conf()
    for b in cl.nodes:
        b.start()
    members = _share_members(ctx, cl, "c24s", [0, 1], "$share/gs24/c24s/#")
    inc2 = _incarnation(n2)
    pub = _PahoPublisher(ctx, "c24s-pub")
    check(pub.connect(cl[2].port) == 0, "fresh paho publisher: session present 1")
    sent = []
    for i in range(300):
        q = 1 + i % 2
        p = b"c24s-%d-q%d" % (i, q)
        while pub.open_count() >= 40:
            time.sleep(0.002)
        pub.publish("c24s/t", p, q)
        sent.append(p)
    check(wait_until(lambda: _stopped(n2.proc.pid), 20),
          "node 2 did not stop itself after staging 30 entries (m1 got %d)%s" %
          (len(members[1].received), cl.excerpt()))
    try:
        held = _pending_of(cl, "c24s/t", "gs24/c24s/#", inc2)
        taken = wait_until(lambda: _pending_of(cl, "c24s/t", "gs24/c24s/#", inc2) == 0, 30, 0.2)
    finally:
        os.kill(n2.proc.pid, signal.SIGCONT)
    check(held > 0, "node 2 stopped holding no entry of the group")
    check(taken, "node 1 did not take over the %d entries node 2 held%s" % (held, cl.excerpt()))
    # Node 2's late commit is fenced: m1's connection there closes.
    gone = wait_until(lambda: not members[1].connected, 15)
    check(gone, "m1 still connected to node 2 after its late commit%s" % cl.excerpt())
    check(members[1].connect(cl[2].port) == 1, "c24s-m1: session present 0 on node 3")
    check(wait_until(lambda: pub.open_count() == 0, 20),
          "publisher: %d exchanges still open" % pub.open_count())
    acked = pub.acked()
    _share_wait(members, acked, timeout=30)
    for m in members:
        m.settle(0.5, 3)
    problems, both = _once_problems(members, sent, acked)
    for m in members:
        problems += ["%s: %s" % (m.client_id, e) for e in m.errors[:3]]
    print("stalled reader: %d acknowledged, node 2 held %d, per member %r, %d at both" %
          (len(acked), held, [len(m.received) for m in members], len(both)))
    check(not problems, "\n".join(problems) + cl.excerpt())
