"""Issue 12: nothing blocks the net thread.  Replicated events and
snapshots are written to the store by a job thread, so a node whose disk
stops answering still answers its peers: pings, introductions, catalogues.

The disk that stops answering is real: b's data dir is an ext4 file
system on a loop device, frozen with fsfreeze(8) (every write to it
blocks until it is thawed)."""
import os
import socket
import struct
import subprocess

import pytest

import wireproto as wp
from conftest import free_port, wait_for
from test_replication import bulk, conf, start, wait_converged


@pytest.fixture
def disk(tmp_path):
    """An ext4 file system of its own on a loop device: (mountpoint, freeze,
    thaw).  Thawed and unmounted at teardown (lazily, if a daemon that the
    test failed to stop still holds it)."""
    img, mnt = tmp_path / "disk.img", tmp_path / "disk"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    r = subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("mkfs.ext4: " + r.stderr.strip())
    r = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no loop mount here: " + r.stderr.strip())
    state = {"frozen": False}

    def freeze():
        subprocess.run(["fsfreeze", "-f", str(mnt)], check=True)
        state["frozen"] = True

    def thaw():
        if state["frozen"]:
            subprocess.run(["fsfreeze", "-u", str(mnt)], check=True)
            state["frozen"] = False
    yield str(mnt), freeze, thaw
    thaw()
    if subprocess.call(["umount", str(mnt)], stderr=subprocess.DEVNULL) != 0:
        subprocess.call(["umount", "-l", str(mnt)])


def test_frozen_disk_does_not_stop_the_peering(nodes, certs, disk):
    mnt, freeze, thaw = disk
    a = start(nodes, certs, "a")
    b = nodes("b")
    b.data = os.path.join(mnt, "b-data")
    b.start_peer(certs, free_port(), [a.port], config=conf())
    os.mkdir(a.path("dev"))
    bulk(a, "dev", ["before-%d" % i for i in range(1000)])
    wait_converged(a, "dev", b)
    try:
        freeze()
        # b receives these and its job thread blocks writing them
        bulk(a, "dev", ["during-%d" % i for i in range(1000)])
        wait_for(lambda: a.metric('odofs_peer_events_out_total{peer="b"}') >= 2000,
                 what="a sent the new events to b")
        # the net thread still answers: a new peer is introduced, and a
        # ping gets its pong (with the writes on the net thread, the TLS
        # handshake itself would wait for the disk)
        c = None
        try:
            c = wp.client(str(certs), "x", b.port, timeout=5)
            # with a listen address, so b records it in its peer history:
            # a store write too
            c.sendall(wp.hello("x", listen="127.0.0.1:%d" % free_port()))
            r = wp.Reader(c)
            assert r.until(wp.HELLO, timeout=5) is not None, "no introduction"
            c.sendall(wp.ping(77))
            f = r.until(wp.PONG, timeout=5)
            assert f is not None and struct.unpack(">Q", f[1])[0] == 77
        except socket.timeout:
            pytest.fail("b's net thread did not answer within 5 s while its "
                        "disk was frozen")
        finally:
            if c is not None:
                c.close()
        assert "a" in b.active()
        assert b.info("dev")["head"] == 1000     # nothing written yet
    finally:
        thaw()
    wait_converged(a, "dev", b)
    assert b.info("dev")["head"] == 2000
    b.stop()


def test_events_of_any_size_up_to_the_limit(nodes, certs):
    """An event larger than a frame's budget travels whole in a frame of
    its own, up to the 4 MiB bound of limits.max_event_bytes; a replica
    keeps what its source took even when its own limit is lower; an event
    over the bound from a peer is refused with a reason in the log, and
    the replica holds what came before."""
    big = conf(extra="limits: { max_event_bytes = 4194304; };\n")
    small = conf(extra="limits: { max_event_bytes = 65536; };\n")
    a = start(nodes, certs, "a", config=big)
    b = start(nodes, certs, "b", [a.port], config=big)
    c = start(nodes, certs, "c", [a.port], config=small)
    os.mkdir(a.path("dev"))
    bulk(a, "dev", ["small-%d" % i for i in range(100)])
    wait_converged(a, "dev", b, c)
    with open(a.path("dev", "events"), "ab") as f:
        f.write(b"B" * (3 << 20) + b"\n")
        f.write(b"after\n")
    wait_converged(a, "dev", b, c)
    assert b.info("dev")["head"] == 102 and c.info("dev")["head"] == 102
    # x, a source of its own, sends b an event of 5 MiB (a frame may be 8)
    c_, r = wp.client(str(certs), "x", b.port), None
    try:
        c_.sendall(wp.hello("x"))
        r = wp.Reader(c_)
        assert r.until(wp.HELLO) is not None
        c_.sendall(wp.catalogue([{"device": "huge", "epoch": 5, "source": "x",
                                   "head": 2, "role": 0}]))
        f = r.until(wp.SUBSCRIBE, timeout=15)
        assert f is not None
        dev, epoch, from_rev, sub = wp.parse_subscribe(f[1])
        c_.sendall(wp.events("huge", sub, 1, [b"one"], head=2))
        c_.sendall(wp.events("huge", sub, 2, [b"H" * (5 << 20)]))
        wait_for(lambda: "over the limit of %d" % (4 << 20) in b.log(),
                 what="b's refusal")
        wp.barrier(c_, r)
        assert b.info("huge")["head"] == 1
        assert "x" in b.active()      # refused the event, kept the peer
    finally:
        c_.close()
