"""Issue 8: continuous appends from several writers while the daemon is
SIGKILLed and restarted 20 times; every acknowledged event is there
afterwards, once, in its writer's order."""
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import is_live_mount, wait_for

WRITER = r"""
import os, signal, sys, time
path, wid, do_sync = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
stop = [False]
signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__(0, True))
fd, seq = None, 0
while not stop[0]:
    try:
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"w%d-%07d\n" % (wid, seq))
        if do_sync:
            os.fsync(fd)
        sys.stdout.write("%d\n" % seq)       # acknowledged
        sys.stdout.flush()
    except OSError:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            fd = None
        time.sleep(0.02)
    seq += 1                                  # a failed seq is never retried
"""


def start_writers(ev, count, do_sync):
    return [subprocess.Popen(["/usr/bin/python3", "-c", WRITER, ev, str(w),
                              "1" if do_sync else "0"],
                             stdout=subprocess.PIPE, text=True)
            for w in range(count)]


def stop_writers(writers):
    """Stops them; what each was told was acknowledged: {writer: [seq]}."""
    for w in writers:
        w.send_signal(signal.SIGTERM)
    acked = {}
    for i, w in enumerate(writers):
        out, _ = w.communicate(timeout=30)
        acked[i] = [int(x) for x in out.split()]
    return acked


@pytest.mark.parametrize("do_sync", [False, True], ids=["write", "fsync"])
def test_sigkill_20_times(nodes, do_sync):
    n = nodes("a").start()
    os.mkdir(n.path("dev"))
    ev = n.path("dev", "events")
    writers = start_writers(ev, 4, do_sync)
    rnd = random.Random(20)
    kills = 0
    try:
        for _ in range(20):
            time.sleep(rnd.uniform(0.2, 0.5))
            n.kill()
            kills += 1
            time.sleep(rnd.uniform(0.0, 0.1))
            n.start()
        time.sleep(0.5)
    finally:
        acked = stop_writers(writers)
    wait_for(lambda: is_live_mount(n.mnt), what="mount")
    lines = open(ev).read().splitlines()
    total = 0
    for i in range(4):
        mine = [int(l.split("-")[1]) for l in lines if l.startswith("w%d-" % i)]
        assert mine == sorted(set(mine)), "writer %d: out of order or duplicated" % i
        missing = set(acked[i]) - set(mine)
        assert not missing, "writer %d: %d acknowledged events lost" % (i, len(missing))
        total += len(acked[i])
    info = n.info("dev")
    assert info["head"] == len(lines) and info["first"] == 1
    print("%d kills, %d events acknowledged, %d present" % (kills, total, len(lines)))
    assert total > 200


def test_quorum_fsync_survives_kills(nodes, certs):
    """Issue 15: writers on A fsync with durability.replicas = 1 while A, B
    and C are SIGKILLed at random and restarted.  Afterwards, with A gone
    for good, B's and C's own disks (read by each alone, peering off) hold
    every event whose fsync returned 0."""
    from test_replication import conf, start
    dur = "durability: { replicas = 1; replica_timeout_ms = 2000; };\n"
    a = start(nodes, certs, "a", config=conf(extra=dur))
    b = start(nodes, certs, "b", [a.port])
    c = start(nodes, certs, "c", [a.port])
    os.mkdir(a.path("dev"))
    wait_for(lambda: os.path.isdir(b.path("dev")) and
             os.path.isdir(c.path("dev")), what="the replicas")
    ev = a.path("dev", "events")
    writers = start_writers(ev, 3, True)
    rnd = random.Random(15)
    confs = {"a": conf(extra=dur), "b": conf(), "c": conf()}
    seeds = {"a": [], "b": [a.port], "c": [a.port]}
    kills = 0
    try:
        for _ in range(12):
            time.sleep(rnd.uniform(0.3, 0.8))
            victim = rnd.choice([a, b, c])
            victim.kill()
            kills += 1
            time.sleep(rnd.uniform(0.0, 0.3))
            victim.start_peer(certs, victim.port, seeds[victim.name],
                              config=confs[victim.name])
        time.sleep(1.0)
    finally:
        acked = stop_writers(writers)
    # the source goes for good; each replica is read alone
    a.kill()
    held = set()
    for r in (b, c):
        r.kill()
        r.start()
        with open(r.path("dev", "events")) as f:
            held |= set(f.read().splitlines())
    total = 0
    for i in range(3):
        missing = {s for s in acked[i] if "w%d-%07d" % (i, s) not in held}
        assert not missing, "writer %d: %d fsynced events on no replica: %s" % (
            i, len(missing), sorted(missing)[:5])
        total += len(acked[i])
    print("%d kills, %d events fsynced, all on a replica's disk" % (kills, total))
    assert total > 50
