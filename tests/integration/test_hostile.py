"""Issue 8: hostile peers and a flood, each refused or disconnected with a
logged reason while the node keeps serving its mount and its other peers."""
import os
import random
import resource
import signal
import socket
import struct
import time

import pytest

import wireproto as wp
from conftest import anon_rss_kb, free_port, read_file, wait_for

CONF = ("peering: { tick_ms = 100; heartbeat_ms = 60000; handshake_ms = 1000; "
        "backoff_ms = [ 200, 400 ]; exchange = false; };\n"
        "sync: { evaluate_ms = 500; stall_ms = 60000; };\n")


@pytest.fixture
def pair(nodes, certs):
    a = nodes("a").start_peer(certs, free_port(), config=CONF)
    b = nodes("b").start_peer(certs, free_port(), [a.port], config=CONF)
    wait_for(lambda: b.active() == ["a"], what="a-b active")
    os.mkdir(a.path("dev"))
    with open(a.path("dev", "events"), "a") as f:
        f.write("".join("base-%d\n" % i for i in range(100)))
    wait_for(lambda: os.path.isdir(b.path("dev")) and b.info("dev")["head"] == 100,
             what="b follows dev")
    return a, b


def healthy(a, b):
    with open(a.path("dev", "events"), "a") as f:
        f.write("after\n")
    wait_for(lambda: read_file(b.path("dev", "events")).endswith("after\n"),
             what="replication still flows")
    assert "a" in b.active()


def discarded_frames(node):
    """Event frames the node discarded as of no current subscription."""
    assert "odofs_event_frames_discarded_total " in read_file(node.path(".metrics"))
    return node.metric("odofs_event_frames_discarded_total")


def introduce(certs, port, node_id="x"):
    c = wp.client(str(certs), node_id, port)
    c.sendall(wp.hello(node_id))
    r = wp.Reader(c)
    assert r.until(wp.HELLO)[0] == wp.HELLO
    return c, r


def test_random_frames_from_an_authenticated_peer(pair, certs):
    a, b = pair
    rnd = random.Random(7)
    closed = 0
    for i in range(30):
        c, r = introduce(certs, a.port)
        t = rnd.choice([wp.CATALOGUE, wp.SUBSCRIBE, wp.EVENTS, wp.SNAPSHOT, wp.REJECT,
                        wp.PEERS, wp.PING, 7, 40, 200])
        c.sendall(wp.frame(t, os.urandom(rnd.randrange(0, 300))))
        while True:
            f = r.next()
            if f is None:
                closed += 1
                break
            if f[0] == wp.BYE:
                assert b"bad" in f[1] or b"unexpected" in f[1]
        c.close()
    assert closed == 30
    assert "bad " in a.log() or "unexpected" in a.log()
    healthy(a, b)


def test_connection_flood(pair, certs):
    a, b = pair
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    base_fds = len(os.listdir("/proc/%d/fd" % a.pid()))
    socks = []
    try:
        for i in range(1000):
            try:
                socks.append(socket.create_connection(("127.0.0.1", a.port), timeout=5))
            except OSError:
                break
        # a refuses past its limit: it has accepted all it will keep
        wait_for(lambda: "too many peers or handshakes" in a.log(), what="flood refused")
        fds = len(os.listdir("/proc/%d/fd" % a.pid()))
        assert fds - base_fds <= 70, "%d descriptors for the flood" % (fds - base_fds)
        healthy(a, b)
        # the handshake timeout clears them
        wait_for(lambda: len(os.listdir("/proc/%d/fd" % a.pid())) <= base_fds + 2,
                 timeout=15, what="flood cleared")
    finally:
        for s_ in socks:
            s_.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    healthy(a, b)



def test_subscriber_that_never_reads(pair, certs):
    a, b = pair
    fd = os.open(a.path("dev", "events"), os.O_WRONLY | os.O_APPEND)
    line = b"x" * 99 + b"\n"
    for _ in range(128):
        os.write(fd, line * 5000)            # 64 MB in all
    os.close(fd)
    epoch = int(a.info("dev")["epoch"], 16)
    before = anon_rss_kb(a.pid())
    c, r = introduce(certs, a.port)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(wp.subscribe("dev", epoch, 1, 99))
    # a keeps at most one bulk frame queued, sized to what the link
    # carries: x reads nothing, so the link measures nothing and the frame
    # shrinks to its least (4 KiB), which also shows a tried again and again
    queued = 'odofs_peer_send_queued_bytes{peer="x"}'
    wait_for(lambda: a.metric('odofs_peer_frame_bytes{peer="x"}') == 4096 and
             a.metric(queued) > 0, timeout=30, what="a's frames to x at their least")
    grew = anon_rss_kb(a.pid()) - before
    print("rss grew %d KiB for a subscriber that never reads; %d bytes queued" %
          (grew, a.metric(queued)))
    # one frame (at most 1 MiB, or one event of up to 4 MiB) over the frame size
    assert a.metric(queued) <= (1 << 20) + (4 << 20) + 4096
    # LevelDB's block cache (8 MiB), the serving buffer (5 MiB) and the
    # queue (5 MiB at most) make 18 MiB; 24 MiB leaves 6 MiB for TLS, the
    # memtable and the allocator, and is far under the 64 MB backlog
    if not os.environ.get("ODOFS_SANITIZED"):   # ASan quarantines freed memory
        assert grew < 24 * 1024
    healthy(a, b)
    c.close()


def test_events_not_from_the_upstream_are_discarded(pair, certs):
    a, b = pair
    before = read_file(b.path("dev", "events"))
    c, r = introduce(certs, b.port)
    discarded = discarded_frames(b)
    for sub in (0, 1, 2, 3, 1000):
        c.sendall(wp.events("dev", sub, 101, [b"forged"]))
    wp.barrier(c, r)                   # b has handled all five
    assert discarded_frames(b) >= discarded + 5
    assert read_file(b.path("dev", "events")) == before
    healthy(a, b)
    assert "forged" not in read_file(b.path("dev", "events"))
    c.close()


def test_out_of_order_revisions_from_a_source(pair, certs):
    """x sources a device of its own and sends b revisions out of order."""
    a, b = pair
    c, r = introduce(certs, b.port)
    c.sendall(wp.catalogue([{"device": "evil", "epoch": 5, "source": "x",
                             "head": 3, "role": 0}]))
    f = r.until(wp.SUBSCRIBE, timeout=15)
    assert f is not None, "b never subscribed"
    dev, epoch, from_rev, sub = wp.parse_subscribe(f[1])
    assert (dev, epoch, from_rev) == ("evil", 5, 1)
    c.sendall(wp.events("evil", sub, 2, [b"two", b"three"]))      # a gap
    f = r.until(wp.SUBSCRIBE, timeout=15)                          # discarded: again
    dev, epoch, from_rev, sub2 = wp.parse_subscribe(f[1])
    assert from_rev == 1 and sub2 != sub
    wait_for(lambda: "events from x discarded" in b.log(), what="logged")
    c.sendall(wp.events("evil", sub, 1, [b"stale-sub"]))           # old subscription
    c.sendall(wp.events("evil", sub2, 1, [b"one", b"two", b"three"]))
    wait_for(lambda: read_file(b.path("evil", "events")) == "one\ntwo\nthree\n",
             what="in-order events applied")
    logged = b.log().count("events from x discarded")
    c.sendall(wp.events("evil", sub2, 2, [b"dup"]))                # a duplicate
    wp.barrier(c, r)
    assert b.log().count("events from x discarded") == logged + 1
    assert read_file(b.path("evil", "events")) == "one\ntwo\nthree\n"
    healthy(a, b)
    c.close()


def test_huge_snapshot_and_catalogue_claims(pair, certs):
    a, b = pair
    c, r = introduce(certs, b.port)
    # a claim of a much higher head for another epoch is a conflict, not a takeover
    c.sendall(wp.catalogue([{"device": "dev", "epoch": 1, "source": "x", "head": 1 << 62,
                             "role": 0}]))
    wait_for(lambda: b.status()["conflicts"], what="conflict shown")
    assert b.status()["conflicts"][0]["peer"] == "x"
    # a snapshot of a terabyte is refused before anything is allocated
    body = wp.s("dev") + struct.pack(">IBQQQQI", 1, 0, 5, 0, 1 << 40, 0, 0)
    c.sendall(wp.frame(wp.SNAPSHOT, body))
    f = r.until(wp.BYE)
    assert f is not None and b"bad snapshot frame" in f[1]
    c.close()
    assert b.info("dev")["source"] == "a" and b.info("dev")["subscribed_to"] == "a"
    healthy(a, b)


def test_stalled_subscription_moves_to_another_peer(nodes, certs):
    """x (the source) advertises revisions it never sends; e has them too.
    b gives up on x after sync.stall_ms and subscribes to e."""
    conf = CONF.replace("stall_ms = 60000", "stall_ms = 1500")
    b = nodes("b").start_peer(certs, free_port(), config=conf)
    entry = {"device": "evil", "epoch": 9, "source": "x", "head": 3, "created": 5}
    x, rx = introduce(certs, b.port, "x")
    x.sendall(wp.catalogue([dict(entry, role=0)]))
    f = rx.until(wp.SUBSCRIBE, timeout=15)
    assert f is not None and wp.parse_subscribe(f[1])[0] == "evil"
    t = time.monotonic()
    e, re_ = introduce(certs, b.port, "e")
    e.sendall(wp.catalogue([dict(entry, role=1, upstream="x")]))
    f = re_.until(wp.SUBSCRIBE, timeout=15)
    moved = time.monotonic() - t
    assert f is not None, "b never moved to e"
    dev, epoch, from_rev, sub = wp.parse_subscribe(f[1])
    assert (dev, epoch, from_rev) == ("evil", 9, 1)
    assert moved < 1.5 + 0.5 + 1.5
    assert "no progress from x" in b.log()
    e.sendall(wp.events("evil", sub, 1, [b"e1", b"e2", b"e3"]))
    wait_for(lambda: read_file(b.path("evil", "events")) == "e1\ne2\ne3\n",
             what="events from e applied")
    assert b.info("evil")["subscribed_to"] == "e"
    x.close()
    e.close()


def test_shutdown_with_a_duplicate_lingering(nodes, certs):
    """A duplicate connection in purgatory that never hangs up must not keep
    the daemon from exiting."""
    a = nodes("a").start_peer(certs, free_port(), config=CONF)
    c1, _ = introduce(certs, a.port, "b")
    wait_for(lambda: a.active() == ["b"], what="b active")
    c2 = wp.client(str(certs), "b", a.port)
    c2.sendall(wp.hello("b"))
    wait_for(lambda: any(p["state"] == "purgatory" for p in a.peers()), what="purgatory")
    a.proc.send_signal(signal.SIGTERM)
    c1.close()
    try:
        a.proc.wait(8)
    finally:
        c2.close()
    assert a.stop() == 0


def test_no_redial_cycle_after_duplicates(nodes, certs):
    conf = CONF.replace("exchange = false;", "exchange = false; purgatory_ms = 300;")
    pa, pb, dead = free_port(), free_port(), free_port()
    dead_addr = "127.0.0.1:%d" % dead            # nobody listens there
    a, b = nodes("a"), nodes("b")
    a.start_peer(certs, pa, [pb, dead], config=conf, wait=False)
    b.start_peer(certs, pb, [pa], config=conf, wait=False)
    wait_for(lambda: os.path.ismount(a.mnt) and os.path.ismount(b.mnt), what="mounts")
    wait_for(lambda: a.active() == ["b"] and b.active() == ["a"], what="active")
    # a barrier on a's own timers instead of a sleep: the dead seed is
    # redialled every 400 ms; after 10 tries a's purgatory entries (300 ms)
    # have expired and been redialled many times over, if they were to be
    wait_for(lambda: [p["attempt"] for p in a.peers() if p["address"] == dead_addr][0] >= 10,
             what="ten redials of the dead seed")
    dups = a.log().count("duplicate connection") + b.log().count("duplicate connection")
    assert dups <= 4, "%d duplicate connections: a redial cycle" % dups
    assert [p["seed"] for p in a.peers() if p["state"] == "active"] == [True]


def test_absurd_snapshot_reset_refused(nodes, certs):
    a = nodes("a").start_peer(certs, free_port(), config=CONF)
    c, r = introduce(certs, a.port, "b")
    c.sendall(wp.catalogue([{"device": "d1", "epoch": 7, "source": "b", "head": 10 ** 6}]))
    f = r.until(wp.SUBSCRIBE, timeout=15)
    dev, epoch, from_rev, sub = wp.parse_subscribe(f[1])
    body = wp.s("d1") + struct.pack(">IBQQQQI", sub, 0, 2 ** 64 - 1, 2 ** 64 - 10, 0, 0, 0)
    c.sendall(wp.frame(wp.SNAPSHOT, body))
    f = r.until(wp.BYE)
    assert f is not None and b"bad snapshot frame" in f[1]
    c.close()
    info = a.info("d1")
    assert info["head"] == 0 and info["first"] == 1
    # and the catalogue still reaches other peers whole
    c2, r2 = introduce(certs, a.port, "c")
    f = r2.until(wp.CATALOGUE, timeout=5)
    assert f is not None and b"d1" in f[1]
    c2.close()
