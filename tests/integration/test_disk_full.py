"""SPEC §4: a full disk.  The data dir lives on a small file system (a
tmpfs of 24 MiB, mounted and removed by the test); a ballast file fills
it.  Appends then fail with ENOSPC (not EIO), each failed write stores
nothing, reads keep working and .status and .metrics say what is wrong.
Once the ballast is removed appends resume by themselves, without a
restart; after a restart every acknowledged event is there, exactly once,
and nothing else."""
import contextlib
import errno
import json
import re
import os
import subprocess
import threading
import time

import pytest

from conftest import ODOFS, free_port, wait_for

FAULT = os.path.join(os.path.dirname(os.path.dirname(ODOFS)), "tests",
                     "libodofs-fault.so")


def tmpfs(d, opts):
    """A tmpfs mounted on d for the test, removed after it."""
    os.makedirs(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts + ",mode=0700",
                    "tmpfs", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)


@pytest.fixture
def small_fs(tmp_path):
    yield from tmpfs(str(tmp_path / "small"), "size=24m")


@pytest.fixture
def few_inodes_fs(tmp_path):
    """Space enough, but few inodes: another program can take them all."""
    yield from tmpfs(str(tmp_path / "inodes"), "size=96m,nr_inodes=400")


def fill(path):
    """Writes to path until the file system is full."""
    chunk = b"\0" * (256 << 10)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                if os.write(fd, chunk) < len(chunk):
                    chunk = chunk[:4096]
            except OSError as ex:
                if ex.errno != errno.ENOSPC:
                    raise
                if len(chunk) > 1:
                    chunk = chunk[:len(chunk) // 2]
                    continue
                return
    finally:
        os.close(fd)


def append(node, line):
    """One write of one event; the errno on failure, else 0."""
    fd = os.open(node.path("dev", "events"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (line + "\n").encode())
        return 0
    except OSError as ex:
        return ex.errno
    finally:
        os.close(fd)


def resumed(node, after):
    """Appends "resumed" until it is taken: within 5 s (the issue's bound;
    the store looks for room every 0.1-2 s, and a refused try stores
    nothing)."""
    t0 = time.monotonic()
    wait_for(lambda: append(node, "resumed") == 0, timeout=30, interval=0.1,
             what="appends to resume after " + after)
    took = time.monotonic() - t0
    print("appends resumed %.2f s after %s" % (took, after))
    assert took <= 5.0, took


@contextlib.contextmanager
def readers_all_along(node, count=2):
    """Threads that read dev's events and .status until the block ends;
    yields the list of what failed them (empty: every read worked)."""
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                with open(node.path("dev", "events"), "rb") as f:
                    while f.read(1 << 20):
                        pass
                with open(node.path(".status")) as f:
                    json.load(f)
            except (OSError, ValueError) as ex:
                errors.append(repr(ex))
    threads = [threading.Thread(target=reader) for _ in range(count)]
    for t in threads:
        t.start()
    try:
        yield errors
    finally:
        stop.set()
        for t in threads:
            t.join()


def status(node):
    with open(node.path(".status")) as f:
        return json.load(f)


def test_full_disk_gives_enospc_and_appends_resume(small_fs, nodes):
    a = nodes("a")
    a.data = os.path.join(small_fs, "data")
    a.start()
    os.mkdir(a.path("dev"))
    acked = []
    for i in range(100):
        assert append(a, "before-%d" % i) == 0
        acked.append("before-%d" % i)
    assert status(a)["store"]["state"] == "ok"
    # readers all along: the reopen swaps the database under them
    with readers_all_along(a) as read_errors:
        _full_then_freed(a, small_fs, acked)
    assert not read_errors, read_errors[:3]
    assert a.stop() == 0
    a.start()
    with open(a.path("dev", "events")) as f:
        assert f.read().splitlines() == acked
    assert os.path.isdir(a.path("dev2"))


def _full_then_freed(a, small_fs, acked):
    ballast = os.path.join(small_fs, "ballast")
    fill(ballast)
    # appends until the store says the disk is full; each either stored
    # and acknowledged, or refused with ENOSPC
    errs = []
    for i in range(5000):
        line = "full-%d-%s" % (i, "z" * 200)
        rc = append(a, line)
        if rc == 0:
            acked.append(line)
        else:
            errs.append(rc)
            if len(errs) >= 3:
                break
    assert errs, "the disk never filled"
    assert set(errs) == {errno.ENOSPC}, errs
    st = status(a)["store"]
    assert st["state"] == "full" and "No space" in st["error"], st
    assert st["since"].endswith("Z"), st
    with open(a.path(".metrics")) as f:
        assert "odofs_store_writable 0\n" in f.read()
    # reads keep working and show exactly what was acknowledged
    with open(a.path("dev", "events")) as f:
        assert f.read().splitlines() == acked
    # what was acknowledged can still be made durable
    fd = os.open(a.path("dev", "events"), os.O_WRONLY | os.O_APPEND)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    # mkdir needs the store too
    with pytest.raises(OSError) as ex:
        os.mkdir(a.path("dev2"))
    assert ex.value.errno == errno.ENOSPC

    os.unlink(ballast)
    # no restart: the next appends go through once the store has room
    # (a failed try stores nothing: each is checked below)
    resumed(a, "the space was freed")
    acked.append("resumed")
    st = status(a)["store"]
    assert st["state"] == "ok" and st["failures"] >= 1, st
    os.mkdir(a.path("dev2"))
    with open(a.path("dev", "events")) as f:
        assert f.read().splitlines() == acked


def test_replica_with_a_full_disk_catches_up_once_freed(small_fs, nodes, certs):
    """A replica whose disk fills stops taking events without asking for
    them again and again, and catches up by itself once space is freed."""
    from test_replication import conf, wait_converged
    a = nodes("a")
    a.start_peer(certs, free_port(), config=conf())
    os.mkdir(a.path("dev"))
    b = nodes("b")
    b.data = os.path.join(small_fs, "data")
    b.start_peer(certs, free_port(), [a.port], config=conf())
    wait_for(lambda: os.path.isdir(b.path("dev")), what="the replica")
    ballast = os.path.join(small_fs, "ballast")
    fill(ballast)
    line = "r" * 1000
    with open(a.path("dev", "events"), "a") as f:
        for i in range(4000):
            f.write("%05d %s\n" % (i, line))
    wait_for(lambda: status(b)["store"]["state"] == "full", timeout=30,
             what="the replica's disk to fill")
    # while full, the replica holds the device and asks again every 2 s,
    # not at once: over 6 s, at most 4 subscriptions (each logs "following")
    n0 = b.log().count("dev: following")
    time.sleep(6)
    tries = b.log().count("dev: following") - n0
    assert tries <= 4, "%d subscriptions in 6 s" % tries
    assert b.info("dev")["head"] < 4000
    os.unlink(ballast)
    wait_converged(a, "dev", b, timeout=60)
    assert status(b)["store"]["state"] == "ok"
    with open(a.path("dev", "events")) as fa, open(b.path("dev", "events")) as fb:
        assert fa.read() == fb.read()


def take_inodes(d):
    """Creates empty files in d until the file system has no inode left."""
    os.mkdir(d)
    n = 0
    while True:
        try:
            os.close(os.open(os.path.join(d, str(n)), os.O_CREAT | os.O_WRONLY,
                             0o600))
        except OSError as ex:
            if ex.errno != errno.ENOSPC:
                raise
            return n
        n += 1


def test_no_inode_left_gives_enospc_and_reads_go_on(few_inodes_fs, nodes):
    """Another program takes every inode of the data dir's file system: the
    store cannot make the files LevelDB needs (a new log every 8 MiB, a
    table, a manifest).  Appends fail with ENOSPC, reads keep working the
    whole time, .status says so, and appends resume by themselves once
    inodes are freed; after a restart exactly the acknowledged events are
    there."""
    a = nodes("a")
    a.data = os.path.join(few_inodes_fs, "data")
    a.start()
    os.mkdir(a.path("dev"))
    acked = []
    ballast = os.path.join(few_inodes_fs, "ballast")
    with readers_all_along(a) as read_errors:
        taken = take_inodes(ballast)
        assert taken > 0
        # 32 MiB in 64 KiB writes: far past the 8 MiB after which LevelDB
        # needs a new log file
        block = b"".join(b"%06d %s\n" % (i, b"i" * 1000) for i in range(64))
        errs = []
        fd = os.open(a.path("dev", "events"), os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(512):
                try:
                    assert os.write(fd, block) == len(block)
                    acked.append(block)
                except OSError as ex:
                    errs.append(ex.errno)
                    if len(errs) >= 3:
                        break
        finally:
            os.close(fd)
        assert errs, "the store never needed an inode"
        assert set(errs) == {errno.ENOSPC}, errs
        st = status(a)["store"]
        assert st["state"] != "ok" and "No space" in st["error"], st
        # the store keeps serving what it acknowledged while it is stuck
        # (the reader threads check this too): a second's worth of tries
        # to reopen it must not take reads away
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with open(a.path("dev", "events"), "rb") as f:
                assert f.read() == b"".join(acked)
        for n in range(taken):
            os.unlink(os.path.join(ballast, str(n)))
        resumed(a, "inodes were freed")
        acked.append(b"resumed\n")
        assert status(a)["store"]["state"] == "ok"
    assert not read_errors, read_errors[:3]
    assert a.stop() == 0
    a.start()
    with open(a.path("dev", "events"), "rb") as f:
        assert f.read() == b"".join(acked)


def metric(node, name):
    with open(node.path(".metrics")) as f:
        for line in f:
            if line.startswith(name + " "):
                return int(line.split()[1])
    raise AssertionError("no metric " + name)


def test_write_failed_by_leveldb_reopens_the_store(tmp_path, nodes):
    """The path the reserve keeps away from: LevelDB itself fails a write
    (a quota, a race with another program, a file system that refuses new
    files: tests/fault/fault.c makes the data dir fail so, with statvfs
    still showing room).  Appends fail with ENOSPC and store nothing, reads
    keep working while the store cannot be reopened, and once the fault is
    gone the store is reopened and appends go on, without a restart."""
    flag = str(tmp_path / "enospc")
    a = nodes("a")
    a.wrap = ["env", "LD_PRELOAD=" + FAULT, "ODOFS_FAULT_DIR=" + a.data,
              # the sanitizer runtime wants to come first; this goes first
              "ASAN_OPTIONS=verify_asan_link_order=0:" +
              os.environ.get("ASAN_OPTIONS", ""),
              "ODOFS_FAULT_FLAG=" + flag]
    a.start()
    os.mkdir(a.path("dev"))
    acked = ["before-%d" % i for i in range(100)]
    with open(a.path("dev", "events"), "a") as f:
        f.write("".join(x + "\n" for x in acked))
    assert metric(a, "odofs_store_reopens_total") == 0

    open(flag, "w").close()
    assert append(a, "refused") == errno.ENOSPC
    st = status(a)["store"]
    # ENOSPC shows as full, whether the reserve or LevelDB said it
    assert st["state"] == "full", st
    assert re.search(r"/\d+\.log: No space left", st["error"]), st
    assert metric(a, "odofs_store_writable") == 0
    # while the fault lasts (the store tries to reopen every 0.1-2 s), reads
    # serve exactly what was acknowledged and appends fail, storing nothing
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with open(a.path("dev", "events")) as f:
            assert f.read().splitlines() == acked
        assert append(a, "refused") == errno.ENOSPC
    # the probe in the data dir kept the store from reopening into the fault
    assert metric(a, "odofs_store_reopens_total") == 0
    assert "reopen failed" not in a.log()

    os.unlink(flag)
    resumed(a, "the fault")
    acked.append("resumed")
    assert metric(a, "odofs_store_reopens_total") == 1
    assert status(a)["store"]["state"] == "ok"
    assert "store: reopened after" in a.log()
    with open(a.path("dev", "events")) as f:
        assert f.read().splitlines() == acked
    assert a.stop() == 0
    a.wrap = []
    a.start()
    with open(a.path("dev", "events")) as f:
        assert f.read().splitlines() == acked
