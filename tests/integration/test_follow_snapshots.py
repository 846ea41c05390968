"""SPEC §8.6: a live follower installs newer snapshots as they come,
without disconnecting, and keeps its events unless its own configuration
compacts (snapshot.compact applies on replicas too)."""
import os
import time

from conftest import read_file, wait_for
from test_replication import conf, events, start, wait_converged


def since(node, peer):
    """When node's connection to peer became active (its .status)."""
    for p in node.peers():
        if p["id"] == peer and p["state"] == "active":
            return p["since"]
    return None


def test_snapshots_while_following_live(nodes, certs):
    # a: snapshot every 1,000 events (the last event is the state) and
    # compact; b: no compaction; c: compacts what it follows
    a = start(nodes, certs, "a", config=conf(extra=(
        'snapshot: { every_events = 1000; command = "tail -n 1"; '
        'compact = true; };\n')))
    b = start(nodes, certs, "b", [a.port], config=conf(exchange=False))
    c = start(nodes, certs, "c", [a.port], config=conf(
        exchange=False, extra="snapshot: { compact = true; };\n"))
    os.mkdir(a.path("dev"))
    with open(a.path("dev", "events"), "ab", buffering=0) as f:
        f.write(b"ev-00000\n")
    wait_converged(a, "dev", b, c)
    b_since, c_since = since(b, "a"), since(c, "a")
    assert b_since is not None and c_since is not None
    # 10,000 events in batches of 100, about 4,000 a second: b and c
    # follow live while a snapshots ten times and compacts after each
    with open(a.path("dev", "events"), "ab", buffering=0) as f:
        for k in range(100):
            f.write(b"".join(b"ev-%05d\n" % (k * 100 + i + 1) for i in range(100)))
            time.sleep(0.025)
    # the last snapshot by hand, at a's head, so every node ends at one
    # known state.  First no automatic one may be due: the worker takes one
    # within a second once 1,000 events passed since the last; if it took
    # the head itself, one more event makes the hand-written one newer (a
    # replica installs only a newer snapshot than its own)
    wait_for(lambda: a.info("dev")["snapshot"] > 10001 - 1000, timeout=30,
             what="a's automatic snapshots to settle")
    if a.info("dev")["snapshot"] == 10001:
        with open(a.path("dev", "events"), "ab", buffering=0) as f:
            f.write(b"ev-10001\n")
    head = a.info("dev")["head"]
    for n in (b, c):
        wait_for(lambda n=n: n.info("dev")["head"] == head, timeout=30,
                 what="%s at a's head" % n.name)
    with open(a.path("dev", "snapshot"), "w") as f:
        f.write("final\n")
    wait_for(lambda: a.info("dev")["snapshot"] == head and
             a.info("dev")["first"] == head + 1, timeout=30,
             what="a's last snapshot and compaction")
    wait_for(lambda: b.info("dev")["snapshot"] == head, timeout=30,
             what="b has a's last snapshot")
    # b installed snapshots as they came and kept every event
    assert b.log().count("snapshot installed: device dev") >= 5
    assert b.info("dev")["first"] == 1 and b.info("dev")["head"] == head
    assert events(b, "dev") == b"".join(b"ev-%05d\n" % i for i in range(head))
    assert read_file(b.path("dev", "snapshot")) == "final\n"
    # c compacts after each snapshot it installs, as its configuration says
    wait_for(lambda: c.info("dev")["snapshot"] == head and
             c.info("dev")["first"] == head + 1, timeout=30,
             what="c compacted after the snapshots it installed")
    assert c.log().count("compacted: device dev") >= 5
    assert events(c, "dev") == b""
    # neither connection to a was ever dropped
    for n, was in ((b, b_since), (c, c_since)):
        assert since(n, "a") == was, n.log()[-2000:]
        assert "bad snapshot frame" not in n.log()
        assert n.metric("odofs_subscriptions_total") == 1
