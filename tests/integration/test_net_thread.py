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
            c.sendall(wp.hello("x"))
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
