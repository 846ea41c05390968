"""SPEC §1: the store never loses or invents data.  A data dir that holds
store files but is damaged is refused with one line naming the problem and
`odofs --repair DATA_DIR`; it is never re-created or silently trimmed.
--repair salvages what is intact, cuts each damaged journal at its first
bad revision, reports exactly what it dropped, and a replica cut this way
fetches the rest from its peers.  The damage is made the way accidents
make it: files removed or overwritten, or (with plyvel, LevelDB's Python
binding, while no daemon runs) keys gone from an otherwise sound store."""
import os
import shutil
import struct
import subprocess

import pytest

from conftest import ODOFS, tls_args, wait_for
from test_replication import start, conf, wait_converged

N = 1000


def fill(node, dev="dev", n=N, width=40):
    os.mkdir(node.path(dev))
    with open(node.path(dev, "events"), "a") as f:
        f.write("".join("%06d %s\n" % (i, "v" * width) for i in range(1, n + 1)))


def listing(d):
    """The store's files (LevelDB's own LOG is rotated by every open)."""
    return sorted(f for f in os.listdir(d) if f not in ("LOG", "LOG.old", "LOCK"))


def refused(node, *extra):
    """Starts node's daemon, which must exit 1 with one line on stderr
    (returned) before mounting."""
    p = subprocess.run(node.command(*extra), capture_output=True, text=True,
                       timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert len(lines) == 1, p.stderr
    assert not os.path.ismount(node.mnt)
    return lines[0]


def repair(node, *extra):
    p = subprocess.run([ODOFS, "--repair", node.data, "--id", node.id, *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def events(node, dev="dev"):
    with open(node.path(dev, "events")) as f:
        return f.read().splitlines()


def check_prefix(lines, upto):
    """lines are revisions 1..upto of fill(), each once, in order."""
    assert len(lines) == upto
    for i, l in enumerate(lines, start=1):
        assert l.startswith("%06d " % i), (i, l[:20])


def test_missing_current_is_refused_not_recreated(nodes):
    a = nodes("a")
    a.start()
    fill(a)
    assert a.stop() == 0
    before = listing(a.data)
    os.unlink(os.path.join(a.data, "CURRENT"))
    line = refused(a)
    assert "damaged" in line and "no CURRENT" in line, line
    assert "odofs --repair " + a.data in line, line
    # nothing was created over it, nothing deleted
    assert listing(a.data) == [f for f in before if f != "CURRENT"]
    out = repair(a)
    print(out)
    assert "0 cut" in out, out
    a.start()
    check_prefix(events(a), N)
    assert a.info("dev")["head"] == N


def test_current_and_manifest_gone_and_tables_in_an_empty_dir(nodes):
    a = nodes("a")
    a.start()
    fill(a)
    assert a.stop() == 0
    for f in os.listdir(a.data):
        if f == "CURRENT" or f.startswith("MANIFEST-"):
            os.unlink(os.path.join(a.data, f))
    line = refused(a)
    assert "damaged" in line and "--repair" in line, line
    # the store files copied into an empty dir: refused as well
    b = nodes("b", node_id="a")
    os.makedirs(b.data)
    for f in os.listdir(a.data):
        if f.endswith((".log", ".ldb", ".sst")):
            shutil.copy(os.path.join(a.data, f), b.data)
    line = refused(b)
    assert "damaged" in line and "--repair" in line, line
    repair(b)
    b.start()
    check_prefix(events(b), N)


def test_damaged_log_is_refused_then_repaired_and_reported(nodes):
    a = nodes("a")
    a.start()
    fill(a, n=20000)
    assert a.stop() == 0
    logs = [f for f in os.listdir(a.data) if f.endswith(".log")]
    assert len(logs) == 1
    path = os.path.join(a.data, logs[0])
    size = os.path.getsize(path)
    assert size > 500000, size      # the events are in the log, not tables
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xa5" * 256)
    line = refused(a)
    assert "damaged" in line and "--repair" in line, line
    out = repair(a)
    print(out)
    # the journal is cut at its first bad revision, and the report says
    # exactly which revisions went
    cut = [l for l in out.splitlines() if l.startswith("device dev (source)")]
    assert len(cut) == 1, out
    a.start()
    head = a.info("dev")["head"]
    assert 0 < head < 20000
    assert "cut at revision %d: dropped revisions %d-20000" % (head + 1, head + 1) in cut[0], cut
    lines = events(a)
    check_prefix(lines, head)
    # appends go on after the cut, as revision head + 1
    with open(a.path("dev", "events"), "a") as f:
        f.write("after\n")
    assert a.info("dev")["head"] == head + 1


def _devno(db, dev):
    rec = db.get(b"D" + dev.encode())
    return struct.unpack(">I", rec[1:5])[0]


def _event_keys(db, devno):
    pre = b"E" + struct.pack(">I", devno)
    return [(k, struct.unpack(">QQ", k[5:21])) for k, _ in db.iterator(prefix=pre)]


def drop_events(plyvel, node, first, last, dev="dev"):
    """Deletes the event keys of revisions first..last of dev from node's
    store (the daemon stopped): a journal with a gap."""
    db = plyvel.DB(node.data)
    try:
        devno = _devno(db, dev)
        for k, (off, rev) in _event_keys(db, devno):
            if first <= rev <= last:
                db.delete(k)
    finally:
        db.close()


@pytest.fixture
def plyvel():
    return pytest.importorskip("plyvel")


def test_gap_in_a_journal_is_named_and_cut_by_repair(nodes, plyvel):
    a = nodes("a")
    a.start()
    fill(a)
    assert a.stop() == 0
    drop_events(plyvel, a, 501, 600)
    line = refused(a)
    assert "device dev: revisions 501-600 missing" in line, line
    assert "--repair " + a.data in line, line
    out = repair(a)
    assert "device dev (source): revisions 501-600 missing" in out, out
    assert "dropped revisions 501-1000 (400 events in the store" in out, out
    # reported once, though its mark (1000) is above the cut too
    assert "repair done: 1 device, 1 cut (500 revisions dropped" in out, out
    assert "appends go on from the cut" in out, out
    a.start()
    assert a.info("dev")["head"] == 500
    check_prefix(events(a), 500)


def test_repeated_revision_is_refused(nodes, plyvel):
    a = nodes("a")
    a.start()
    fill(a)
    assert a.stop() == 0
    db = plyvel.DB(a.data)
    devno = _devno(db, "dev")
    keys = dict((rev, (k, off)) for k, (off, rev) in _event_keys(db, devno))
    k700, off700 = keys[700]
    # revision 699 once more, where 700 was
    db.put(b"E" + struct.pack(">IQQ", devno, off700, 699), db.get(keys[699][0]))
    db.delete(k700)
    db.close()
    line = refused(a)
    assert "device dev: revision 699 again" in line, line


def test_broken_revision_index_is_refused_and_rewritten(nodes, plyvel):
    a = nodes("a")
    a.start()
    fill(a)
    assert a.stop() == 0
    db = plyvel.DB(a.data)
    devno = _devno(db, "dev")
    db.delete(b"R" + struct.pack(">IQ", devno, 129))
    db.close()
    line = refused(a)
    assert "device dev: the revision index does not match" in line, line
    out = repair(a)
    assert "revision index written again, no event dropped" in out, out
    a.start()
    check_prefix(events(a), N)
    # reads by revision use the index
    with open(a.path("dev", "from", "130")) as f:
        assert f.readline().startswith("000130 ")


def test_cut_replica_fetches_the_rest_from_its_peer(nodes, certs, plyvel):
    a = start(nodes, certs, "a")
    fill(a)
    b = start(nodes, certs, "b", [a.port], config=conf())
    wait_converged(a, "dev", b)
    port = b.port
    assert b.stop() == 0
    drop_events(plyvel, b, 300, 300)
    line = refused(b)
    assert "device dev: revisions 300-300 missing" in line, line
    out = repair(b)
    assert "device dev (replica)" in out and "its peers send them again" in out, out
    b.start_peer(certs, port, [a.port], config=conf())
    wait_converged(a, "dev", b)
    assert events(b) == events(a)


def test_data_dir_in_use_names_the_other_daemon(nodes):
    a = nodes("a")
    a.start()
    b = nodes("b", node_id="a")
    b.data = a.data
    line = refused(b)
    assert line == "odofs: data dir %s in use by another odofs (pid %d)" % (
        a.data, a.proc.pid), line


def test_empty_or_missing_dir_is_created(nodes):
    a = nodes("a")
    os.makedirs(a.data)
    with open(os.path.join(a.data, "notes.txt"), "w") as f:
        f.write("not a store\n")
    a.start()
    os.mkdir(a.path("dev"))
    assert a.stop() == 0
    assert "CURRENT" in os.listdir(a.data)


def test_info_created_is_exact(nodes):
    """created_ns is above 2^53: a JSON string keeps every digit."""
    import json
    import time as _t
    a = nodes("a")
    a.start()
    t0 = _t.time_ns()
    os.mkdir(a.path("dev"))
    with open(a.path("dev", "info")) as f:
        info = json.load(f)
    assert isinstance(info["created_ns"], str) and info["created_ns"].isdigit()
    ns = int(info["created_ns"])
    assert ns > 2 ** 53 and abs(ns - t0) < 60 * 10 ** 9
    assert info["created"] == _t.strftime("%Y-%m-%dT%H:%M:%SZ", _t.gmtime(ns // 10 ** 9))


def test_log_overwritten_after_a_kill_names_device_and_revisions(nodes):
    """The issue's case: many small appends, SIGKILL, 256 bytes overwritten
    in the middle of the log.  The refusal names the device and the
    revisions lost (from a scratch copy of the store: the data dir is not
    touched); --repair keeps a journal with no revision missing or
    repeated, and its report covers exactly what is gone."""
    a = nodes("a")
    a.start()
    os.mkdir(a.path("dev"))
    fd = os.open(a.path("dev", "events"), os.O_WRONLY | os.O_APPEND)
    for w in range(2000):
        os.write(fd, "".join("%06d %s\n" % (w * 10 + k + 1, "q" * 40)
                             for k in range(10)).encode())
    os.close(fd)
    a.kill()
    logs = [f for f in os.listdir(a.data) if f.endswith(".log") and f[0].isdigit()]
    assert len(logs) == 1
    path = os.path.join(a.data, logs[0])
    before = listing(a.data)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\x5a" * 256)
    # a scratch copy a killed look left behind is cleared by the next one
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = os.path.join(a.data, ".odofs-scratch-%d" % dead.pid)
    os.mkdir(stale)
    shutil.copy(path, stale)
    line = refused(a)
    assert not os.path.exists(stale)
    print(line)
    assert line.startswith("odofs: device dev: revisions "), line
    assert "--repair " + a.data in line and "LevelDB: Corruption" in line, line
    assert listing(a.data) == before     # the scratch copy is gone
    out = repair(a)
    print(out)
    cut = [l for l in out.splitlines() if l.startswith("device dev (source)")]
    assert len(cut) == 1, out
    a.start()
    head = a.info("dev")["head"]
    assert 0 < head < 20000
    assert ("cut at revision %d: dropped revisions %d-20000 " % (head + 1, head + 1)
            in cut[0]), cut
    check_prefix(events(a), head)


def test_repair_refuses_a_data_dir_in_use(nodes):
    """LevelDB's repair takes no lock: run on a live store it would move
    the log away under the daemon; --repair takes LevelDB's lock first."""
    a = nodes("a")
    a.start()
    fill(a, n=200)
    p = subprocess.run([ODOFS, "--repair", a.data, "--id", "a"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "in use by another odofs (pid %d)" % a.proc.pid in p.stderr, p.stderr
    with open(a.path("dev", "events"), "a") as f:
        f.write("".join("after-%d\n" % i for i in range(100)))
    assert a.stop() == 0
    a.start()
    assert a.info("dev")["head"] == 300


def test_cut_source_with_peers_is_held_and_refetched(nodes, certs, plyvel):
    """A source cut by --repair on a node with peers would append new
    events at revisions its replicas hold already: it is held instead, a
    read-only replica of itself, and fetches the cut revisions back."""
    a = start(nodes, certs, "a")
    fill(a)
    b = start(nodes, certs, "b", [a.port], config=conf())
    wait_converged(a, "dev", b)
    port = a.port
    assert a.stop() == 0
    drop_events(plyvel, a, 300, 300)
    out = repair(a, "--listen", "127.0.0.1:%d" % port, *tls_args(certs, "a"))
    assert "device dev (source)" in out and "held read-only" in out, out
    a.start_peer(certs, port, [b.port], config=conf())
    info = a.info("dev")
    assert info["held"] and not info["local"], info
    wait_for(lambda: a.info("dev")["head"] == N, timeout=30,
             what="the cut revisions back from b")
    with open(a.path("dev", "events")) as fa, open(b.path("dev", "events")) as fb:
        assert fa.read() == fb.read()
    with pytest.raises(OSError):
        with open(a.path("dev", "events"), "a") as f:
            f.write("no\n")


def test_damaged_holder_records_are_refused_then_repaired(nodes, plyvel):
    """A damaged acknowledgement record (SPEC §8: who holds what) is
    refused at start like any damage, and --repair mends what it says to:
    a record that still names a device here and a holder is written again
    with nothing acknowledged (so it counts for no fsync and keeps
    everything a compaction holds for it), any other is deleted, and each
    is reported.  The journal is untouched."""
    a = nodes("a")
    a.start()
    fill(a)
    assert a.stop() == 0
    db = plyvel.DB(a.data)
    db.put(b"Hdev\x00b", b"\x01\x02\x03")         # a value cut short
    db.put(b"Hgone\x00c", b"\x00" * 5)            # and of no device here
    db.put(b"H\x00\x00", b"")                     # a key that names nothing
    db.close()
    line = refused(a)
    assert "a damaged holder record (run odofs --repair)" in line, line
    out = repair(a)
    assert ("holder record of device dev, holder b: damaged: written again with "
            "nothing acknowledged") in out, out
    assert "holder record of device gone, holder c: damaged, and no such device " \
           "here: deleted" in out, out
    assert "holder record (a key of 3 bytes): damaged: deleted" in out, out
    assert "0 cut" in out and "3 holder records repaired" in out, out
    db = plyvel.DB(a.data)
    try:
        assert db.get(b"Hgone\x00c") is None and db.get(b"H\x00\x00") is None
        v = db.get(b"Hdev\x00b")
        assert len(v) == 32 and v[8:] == b"\x00" * 24, v
    finally:
        db.close()
    assert "0 holder records repaired" in repair(a)
    a.start()
    check_prefix(events(a), N)
    # loaded with the device's epoch (another is ignored): b holds nothing
    reps = [r for r in a.info("dev")["replicas"] if r["peer"] == "b"]
    assert len(reps) == 1 and reps[0]["head"] == 0 and reps[0]["durable"] == 0, reps
