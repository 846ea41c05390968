"""SPEC §8.10: acknowledgements, quorum fsync, and compaction that waits for
an archive.  Real nodes over real TLS on 127.0.0.1; a line A <- B <- C where
C reaches A only through B (peer exchange off), so what A learns of C comes
relayed by B."""
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from test_replication import bulk as append, conf, start, wait_converged

DUR = "durability: { replicas = %d; replica_timeout_ms = %d; };\n"


def fsync_events(node, dev, lines=()):
    """Appends lines, then fsyncs the same descriptor: 0, or the errno."""
    fd = os.open(node.path(dev, "events"), os.O_WRONLY | os.O_APPEND)
    try:
        if lines:
            os.write(fd, "".join(l + "\n" for l in lines).encode())
        os.fsync(fd)
        return 0
    except OSError as ex:
        return ex.errno
    finally:
        os.close(fd)


def replicas(node, dev):
    return {r["peer"]: r for r in node.info(dev)["replicas"]}


@pytest.fixture
def line(nodes, certs):
    """A <- B <- C, A with durability.replicas = 2 and a 3 s timeout."""
    a = start(nodes, certs, "a", config=conf(exchange=False,
                                              extra=DUR % (2, 3000)))
    b = start(nodes, certs, "b", [a.port], config=conf(exchange=False))
    c = start(nodes, certs, "c", [b.port], config=conf(exchange=False))
    os.mkdir(a.path("dev"))
    append(a, "dev", ["ev-0"])
    wait_converged(a, "dev", b, c)
    return a, b, c


def test_line_relays_acks_and_fsync_waits_for_two(line):
    a, b, c = line
    # c is not a's peer: what a knows of c, b told it
    assert [p["id"] for p in a.status()["peers"]] == ["b"]
    assert fsync_events(a, "dev", ["ev-%d" % i for i in range(1, 50)]) == 0
    got = replicas(a, "dev")
    assert set(got) == {"b", "c"}, got
    for r in got.values():
        assert r["durable"] >= 50 and r["head"] >= 50, got
        assert r["at"].endswith("Z")
    # b (a relay) knows c too; c knows nobody behind it
    assert set(replicas(b, "dev")) == {"c"}
    assert replicas(c, "dev") == {}
    st = a.status()
    assert st["fsync"] == {"replicas": 2, "waiting": 0, "met": 1,
                           "timeouts": 0, "interrupted": 0}, st["fsync"]
    assert any(d["device"] == "dev" for d in st["replicas"])
    assert c.metric("odofs_ack_bytes_sent_total") > 0


def test_stopped_replica_times_out_then_counts_again(line):
    a, b, c = line
    assert fsync_events(a, "dev", ["ev-1"]) == 0
    os.kill(c.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        rc = fsync_events(a, "dev", ["while-c-stopped"])
        took = time.monotonic() - t0
        assert rc == errno.ETIMEDOUT, rc
        # the timeout is 3 s; the margin covers a slow machine
        assert 2.9 <= took <= 10, took
        # the event stays, and b has it
        assert a.info("dev")["head"] == 3
        wait_for(lambda: b.info("dev")["head"] == 3, what="b has it")
        assert a.status()["fsync"]["timeouts"] == 1
    finally:
        os.kill(c.proc.pid, signal.SIGCONT)
    assert fsync_events(a, "dev", ["after-c-back"]) == 0
    assert replicas(a, "dev")["c"]["durable"] >= 4
    wait_converged(a, "dev", b, c)


FSYNC_CHILD = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, b"from-the-child\\n")
os.fsync(fd)
print("fsync returned")
"""


def test_signal_ends_a_waiting_fsync_at_once(nodes, certs):
    """A process killed in a quorum fsync ends at once, not after the
    timeout: for a fatal signal the kernel waits, uninterruptibly, until
    the request is answered, so the daemon answers the interrupt with
    EINTR (FUSE-NOTES §3).  The timeout here is 30 s; the process must be
    gone within 2 s (15x margin; it takes milliseconds)."""
    a = start(nodes, certs, "a", config=conf(exchange=False, extra=DUR % (1, 30000)))
    b = start(nodes, certs, "b", [a.port], config=conf(exchange=False))
    os.mkdir(a.path("dev"))
    append(a, "dev", ["ev-1"])
    wait_converged(a, "dev", b)
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL), start=1):
            child = subprocess.Popen([sys.executable, "-c", FSYNC_CHILD,
                                      a.path("dev", "events")],
                                     stdout=subprocess.PIPE)
            try:
                # the barrier: its fsync waits in the daemon
                wait_for(lambda: a.status()["fsync"]["waiting"] == 1,
                         what="the child's fsync waiting")
                t0 = time.monotonic()
                child.send_signal(sig)
                rc = child.wait(10)
                took = time.monotonic() - t0
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            assert rc == -sig and took < 2.0, (rc, took)
            assert child.stdout.read() == b""
            st = a.status()["fsync"]
            assert st["waiting"] == 0 and st["interrupted"] == n, st
            assert st["timeouts"] == 0, st
            # the event stays
            assert a.info("dev")["head"] == 1 + n
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    assert fsync_events(a, "dev", ["after-b-back"]) == 0
    assert a.metric('odofs_fsync_quorum_total{result="interrupted"}') == 2
    wait_converged(a, "dev", b)


def test_quorum_fsync_off_and_replica_fsync_is_local(line):
    """fsync on a replica's events is the local sync; a source's device with
    no event needs nobody."""
    a, b, c = line
    os.mkdir(a.path("empty"))
    assert fsync_events(a, "empty") == 0
    wait_for(lambda: os.path.isdir(b.path("dev")), what="dev on b")
    fd = os.open(b.path("dev", "events"), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# d is the archive (the certificates name nodes a-e, x, n00-n15)
ARCHIVE = ('snapshot: { every_events = 100; command = "tail -n 1"; '
           'compact = true; retain_for = [ "d*" ]; };\n')


def test_compaction_waits_for_the_archive(nodes, certs):
    a_conf = conf(exchange=False, extra=ARCHIVE)
    a = start(nodes, certs, "a", config=a_conf)
    d = start(nodes, certs, "d", [a.port], config=conf(exchange=False))
    os.mkdir(a.path("dev"))
    append(a, "dev", ["ev-1"])
    wait_converged(a, "dev", d)	# d holds the device from here on
    append(a, "dev", ["ev-%d" % i for i in range(2, 101)])
    wait_converged(a, "dev", d)
    wait_for(lambda: replicas(a, "dev").get("d", {}).get("durable")
             == 100, what="the archive's acknowledgement")
    # a snapshots and compacts past what the archive holds: fine
    wait_for(lambda: a.info("dev")["first"] > 1, what="a compaction")
    d_durable = replicas(a, "dev")["d"]["durable"]
    assert d.info("dev")["first"] == 1
    d.kill()
    # 1,000 more while the archive is away, across a restart of a
    for k in range(10):
        append(a, "dev", ["ev-%d" % (101 + k * 100 + i) for i in range(100)])
        if k == 4:
            assert a.stop() == 0
            a.start_peer(certs, a.port, config=a_conf)
        wait_for(lambda: a.info("dev")["snapshot"] >= 100 * (k + 2),
                 what="a's snapshot")
        assert a.info("dev")["first"] <= d_durable + 1
    st = a.status()
    kept = [r for r in st["retained"] if r["device"] == "dev"]
    assert kept and kept[0]["for"]["peer"] == "d", st["retained"]
    assert kept[0]["for"]["durable"] == d_durable
    assert kept[0]["for"]["events"] > 0 and not kept[0]["for"]["dropped"]
    # back: it catches up with events, not a snapshot that resets it
    d.start_peer(certs, d.port, [a.port], config=conf(exchange=False))
    # (a may compact as soon as d acknowledged: compare heads, not files)
    wait_for(lambda: d.info("dev")["head"] == 1100, timeout=60,
             what="the archive's catch-up")
    assert d.info("dev")["first"] == 1
    with open(d.path("dev", "events")) as f:
        assert f.read().splitlines() == ["ev-%d" % i for i in range(1, 1101)]
    # and once it acknowledged them, a compacts
    wait_for(lambda: a.info("dev")["first"] > d_durable + 1, timeout=30,
             what="a's compaction after the archive caught up")


def test_retain_max_bytes_lets_compaction_go_on(nodes, certs):
    """An archive away for longer than snapshot.retain_max_bytes allows:
    compaction goes on without it, logged once and shown as dropped."""
    a = start(nodes, certs, "a", config=conf(exchange=False, extra=(
        'snapshot: { every_events = 100; command = "tail -n 1"; '
        'compact = true; retain_for = [ "d" ]; retain_max_bytes = 4000; };\n')))
    d = start(nodes, certs, "d", [a.port], config=conf(exchange=False))
    os.mkdir(a.path("dev"))
    append(a, "dev", ["ev-1"])
    wait_converged(a, "dev", d)
    wait_for(lambda: replicas(a, "dev").get("d", {}).get("durable") == 1,
             what="d's acknowledgement")
    d.kill()
    # 100 events of 10 bytes: under the limit, kept for d
    append(a, "dev", ["ev-%06d" % i for i in range(2, 101)])
    wait_for(lambda: a.info("dev")["snapshot"] == 100, what="a's snapshot")
    wait_for(lambda: (a.info("dev")["retained"] or {}).get("events") == 99,
             what="events kept for d")
    assert a.info("dev")["first"] == 2
    # 500 more: past 4,000 bytes, compaction goes on without d
    append(a, "dev", ["ev-%06d" % i for i in range(101, 601)])
    wait_for(lambda: a.info("dev")["first"] == 601, what="a compaction")
    kept = a.info("dev")["retained"]
    assert kept["peer"] == "d" and kept["dropped"] is True, kept
    assert kept["bytes"] > 4000
    assert a.log().count("reached snapshot.retain_max_bytes") == 1
    assert a.metric('odofs_replica_lag_events{device="dev",peer="d",'
                    'of="durable"}') == 599
