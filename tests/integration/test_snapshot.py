"""SPEC §5 and the compaction parts of §4 and §6: snapshots and compaction."""
import errno
import os
import subprocess

import pytest

from conftest import read_file, sh, wait_for


def conf(**kw):
    """A snapshot group; strings are quoted, True/False and numbers are not."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')
        return str(v)
    items = "".join("%s = %s; " % (k, value(v)) for k, v in kw.items())
    return "snapshot: { %s};\n" % items


def bulk(node, dev, lines, chunk=2000):
    fd = os.open(node.path(dev, "events"), os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(0, len(lines), chunk):
            os.write(fd, "".join(l + "\n" for l in lines[i:i + chunk]).encode())
    finally:
        os.close(fd)


def du(path):
    """Bytes of the files under path; LevelDB deletes logs and tables while
    it runs, so a file gone between the listing and its stat counts 0."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except FileNotFoundError:
                pass
    return total


# snapshot = every event so far: the previous snapshot, then the new events
CONCAT = 'cat "$ODOFS_SNAPSHOT" -'


def test_automatic_snapshot_and_rebuild(nodes, tmp_path):
    n = nodes("a").start(config=conf(every_events=10, command=CONCAT))
    os.mkdir(n.path("d"))
    for i in range(1, 10):
        sh("echo ev-%d >> %s" % (i, n.path("d", "events")))
    # a barrier: the worker scans devices in the order they were made, so
    # once a later device's snapshot is made, d's 9 events have been weighed
    os.mkdir(n.path("later"))
    bulk(n, "later", ["x-%d" % i for i in range(10)])
    wait_for(lambda: n.info("later")["snapshot"] == 10, what="later's snapshot")
    assert n.info("d")["snapshot"] == 0      # 9 events: not yet
    sh("echo ev-10 >> %s" % n.path("d", "events"))
    wait_for(lambda: n.info("d")["snapshot"] == 10, what="first snapshot")
    bulk(n, "d", ["ev-%d" % i for i in range(11, 23)])
    wait_for(lambda: n.info("d")["snapshot"] == 22, what="second snapshot")
    bulk(n, "d", ["ev-%d" % i for i in range(23, 26)])
    info = n.info("d")
    snap = read_file(n.path("d", "snapshot"))
    assert snap == "".join("ev-%d\n" % i for i in range(1, info["snapshot"] + 1))
    assert os.stat(n.path("d", "snapshot")).st_size == len(snap)
    # snapshot, then from/<snapshot+1>: the whole sequence, nothing missed
    out = str(tmp_path / "rest")
    p = subprocess.Popen(["head", "-n", str(25 - info["snapshot"]),
                          n.path("d", "from", str(info["snapshot"] + 1))],
                         stdout=open(out, "w"))
    assert p.wait(10) == 0
    assert snap + read_file(out) == "".join("ev-%d\n" % i for i in range(1, 26))


def test_command_environment(nodes):
    cmd = 'echo "$ODOFS_DEVICE $ODOFS_FROM $ODOFS_TO $(wc -l)"; cat "$ODOFS_SNAPSHOT"'
    n = nodes("a").start(config=conf(every_events=3, command=cmd))
    os.mkdir(n.path("d"))
    with open(n.path("d", "events"), "a") as f:
        f.write("a\nb\nc\n")
    wait_for(lambda: n.info("d")["snapshot"] == 3, what="snapshot at 3")
    assert read_file(n.path("d", "snapshot")) == "d 1 3 3\n"
    with open(n.path("d", "events"), "a") as f:
        f.write("d\ne\nf\ng\n")
    wait_for(lambda: n.info("d")["snapshot"] == 7, what="snapshot at 7")
    assert read_file(n.path("d", "snapshot")) == "d 4 7 4\nd 1 3 3\n"


def test_every_seconds(nodes):
    n = nodes("a").start(config=conf(every_seconds=1, command="wc -l"))
    os.mkdir(n.path("d"))
    with open(n.path("d", "events"), "a") as f:
        f.write("1\n2\n")
    wait_for(lambda: n.info("d")["snapshot"] == 2, what="timed snapshot")
    assert read_file(n.path("d", "snapshot")).strip() == "2"


def test_failing_command_changes_nothing_and_is_retried(nodes, tmp_path):
    flag = tmp_path / "ok"
    cmd = "if [ -e %s ]; then cat; else echo broken reducer >&2; exit 3; fi" % flag
    n = nodes("a").start(config=conf(every_events=2, command=cmd, compact=True))
    os.mkdir(n.path("d"))
    with open(n.path("d", "events"), "a") as f:
        f.write("x1\nx2\nx3\n")
    wait_for(lambda: "exit status 3: broken reducer" in n.log(), what="failure logged")
    assert n.info("d")["snapshot"] == 0 and n.info("d")["first"] == 1
    assert read_file(n.path("d", "events")) == "x1\nx2\nx3\n"
    assert read_file(n.path("d", "snapshot")) == ""
    flag.write_text("")
    wait_for(lambda: n.info("d")["snapshot"] == 3, timeout=15, what="retry succeeded")
    assert read_file(n.path("d", "snapshot")) == "x1\nx2\nx3\n"


def test_timed_out_command_is_killed(nodes, tmp_path):
    flag = tmp_path / "fast"
    pidfile = tmp_path / "pid"
    cmd = "echo $$ > %s; if [ -e %s ]; then cat; else sleep 30; fi" % (pidfile, flag)
    n = nodes("a").start(config=conf(every_events=1, command=cmd, timeout_seconds=1))
    os.mkdir(n.path("d"))
    sh("echo only >> %s" % n.path("d", "events"))
    wait_for(lambda: "timed out after 1 s" in n.log(), what="timeout logged")
    # the whole process group is gone, the sleep included
    pid = int(read_file(str(pidfile)))
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), what="command killed")
    assert n.info("d")["snapshot"] == 0
    assert read_file(n.path("d", "events")) == "only\n"
    flag.write_text("")
    wait_for(lambda: n.info("d")["snapshot"] == 1, timeout=15, what="retry")


def test_manual_snapshot(node, tmp_path):
    os.mkdir(node.path("d"))
    sh("printf 'a\\nb\\n' >> %s" % node.path("d", "events"))
    state = tmp_path / "state"
    state.write_text("state after b\n")
    # head at open is what it covers, even if more comes before close
    fd = os.open(node.path("d", "snapshot"), os.O_WRONLY | os.O_TRUNC)
    sh("echo c >> %s" % node.path("d", "events"))
    os.write(fd, b"state after b\n")
    os.close(fd)
    wait_for(lambda: node.info("d")["snapshot"] == 2, what="manual snapshot")
    assert read_file(node.path("d", "snapshot")) == "state after b\n"
    r = sh("cat %s > %s" % (state, node.path("d", "snapshot")))
    assert r.returncode == 0, r.stderr
    wait_for(lambda: node.info("d")["snapshot"] == 3, what="second manual snapshot")
    for flags in (os.O_WRONLY, os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_APPEND | os.O_TRUNC,
                  os.O_RDWR | os.O_TRUNC):
        with pytest.raises(OSError) as ei:
            os.open(node.path("d", "snapshot"), flags)
        assert ei.value.errno == errno.EPERM
    assert read_file(node.path("d", "events")) == "a\nb\nc\n"


def test_compaction_of_100000_events(nodes):
    n = nodes("a").start(config=conf(compact=True, keep_events=1000))
    os.mkdir(n.path("d"))
    lines = ["event-%06d %s" % (i, "p" * 60) for i in range(1, 100001)]
    bulk(n, "d", lines)
    ev = n.path("d", "events")
    size = os.stat(ev).st_size
    # settle LevelDB before measuring: write the manual snapshot of state
    before = du(n.data)
    with open(n.path("d", "snapshot"), "w") as f:
        f.write("state-at-100000\n")
    wait_for(lambda: n.info("d")["first"] == 99001, what="compaction")
    info = n.info("d")
    assert info["snapshot"] == 100000 and info["head"] == 100000
    retained = "".join(l + "\n" for l in lines[99000:])
    assert info["bytes"] == len(retained)
    assert info["first_offset"] == size - len(retained)
    assert os.stat(ev).st_size == size
    assert read_file(ev) == retained
    assert sh("tail -n 5 %s" % ev).stdout == "".join(l + "\n" for l in lines[-5:])
    fd = os.open(ev, os.O_RDONLY)
    try:
        off = info["first_offset"] + 100
        assert os.pread(fd, 50, off) == retained.encode()[100:150]
    finally:
        os.close(fd)
    wait_for(lambda: du(n.data) < before / 3, timeout=20,
             what="store shrinks (%d bytes before)" % before)
    with pytest.raises(OSError) as ei:
        open(n.path("d", "from", "99000"))
    assert ei.value.errno == errno.ERANGE
    with open(n.path("d", "from", "99001")) as f:
        assert f.readline() == lines[99000] + "\n"
    # survives a restart
    n.stop()
    n.start()
    again = n.info("d")
    assert (again["first"], again["head"], again["snapshot"], again["first_offset"]) == \
        (99001, 100000, 100000, info["first_offset"])
    assert read_file(ev) == retained
    assert read_file(n.path("d", "snapshot")) == "state-at-100000\n"
    sh("echo after >> %s" % ev)
    assert n.info("d")["head"] == 100001


def test_paused_reader_across_compaction(nodes):
    n = nodes("a").start(config=conf(compact=True))
    os.mkdir(n.path("d"))
    lines = ["line-%05d" % i for i in range(1, 20001)]
    bulk(n, "d", lines)
    want = "".join(l + "\n" for l in lines).encode()
    fd = os.open(n.path("d", "events"), os.O_RDONLY)
    try:
        half = os.read(fd, len(want) // 2)
        while len(half) < len(want) // 2:
            half += os.read(fd, len(want) // 2 - len(half))
        with open(n.path("d", "snapshot"), "w") as f:
            f.write("s\n")
        # compaction runs, but stops where this reader is
        wait_for(lambda: n.info("d")["first"] > 1, what="partial compaction")
        assert n.info("d")["first_offset"] <= len(half)
        rest = b""
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            rest += b
        assert half + rest == want
    finally:
        os.close(fd)
    # once the reader is gone, compaction completes
    wait_for(lambda: n.info("d")["first"] == 20001, what="full compaction")


def test_tail_f_across_three_compactions(nodes, tmp_path):
    n = nodes("a").start(config=conf(compact=True, keep_events=5))
    os.mkdir(n.path("d"))
    ev = n.path("d", "events")
    out = str(tmp_path / "tail")
    bulk(n, "d", ["r0-%d" % i for i in range(50)])
    p = subprocess.Popen(["stdbuf", "-oL", "tail", "-n", "+1", "-f", ev],
                         stdout=open(out, "w"), stderr=subprocess.STDOUT)
    want = ["r0-%d" % i for i in range(50)]
    try:
        wait_for(lambda: read_file(out).count("\n") == 50, what="first batch")
        for round_ in range(1, 4):
            first_before = n.info("d")["first"]
            with open(n.path("d", "snapshot"), "w") as f:
                f.write("snap %d\n" % round_)
            wait_for(lambda: n.info("d")["first"] > first_before, what="compaction %d" % round_)
            batch = ["r%d-%d" % (round_, i) for i in range(50)]
            bulk(n, "d", batch)
            want += batch
            wait_for(lambda: read_file(out).count("\n") == len(want), what="round %d" % round_)
        # a barrier: one more event, which tail shows only after what
        # came before; nothing else (no repeat, no gap) may be in between
        bulk(n, "d", ["end"])
        want.append("end")
        wait_for(lambda: read_file(out).endswith("end\n"), what="the last event")
        assert read_file(out) == "".join(l + "\n" for l in want)
    finally:
        p.kill()
        p.wait()
    assert "truncated" not in read_file(out)


def test_live_reader_across_compaction(nodes, tmp_path):
    n = nodes("a").start(config=conf(compact=True))
    os.mkdir(n.path("d"))
    out = str(tmp_path / "live")
    bulk(n, "d", ["old-%d" % i for i in range(10)])
    p = subprocess.Popen(["cat", n.path("d", "from", "5")], stdout=open(out, "w"))
    try:
        wait_for(lambda: read_file(out) == "".join("old-%d\n" % i for i in range(4, 10)),
                 what="from/5 caught up")
        with open(n.path("d", "snapshot"), "w") as f:
            f.write("s\n")
        wait_for(lambda: n.info("d")["first"] == 11, what="compaction")
        bulk(n, "d", ["new-%d" % i for i in range(3)])
        wait_for(lambda: read_file(out).endswith("new-0\nnew-1\nnew-2\n"), what="live after")
        assert read_file(out) == "".join("old-%d\n" % i for i in range(4, 10)) + \
            "new-0\nnew-1\nnew-2\n"
    finally:
        p.kill()
        p.wait()


def test_firehose_reader_holds_compaction(nodes):
    """.live readers pin like the other pipes: compaction stops at the
    first event the slowest .live reader has not read (SPEC §6)."""
    n = nodes("a").start(config=conf(compact=True))
    os.mkdir(n.path("d"))
    os.mkdir(n.path("e"))
    fd = os.open(n.path(".live"), os.O_RDONLY)
    try:
        bulk(n, "d", ["d-%d" % i for i in range(1, 11)])      # one commit each
        bulk(n, "e", ["e-%d" % i for i in range(1, 6)])
        bulk(n, "d", ["d-%d" % i for i in range(11, 21)])
        first = "".join("d\t%d\td-%d\n" % (i, i) for i in range(1, 11)) + \
            "".join("e\t%d\te-%d\n" % (i, i) for i in range(1, 6))
        rest = "".join("d\t%d\td-%d\n" % (i, i) for i in range(11, 21))
        got = b""
        while len(got) < len(first):                          # exactly the first two
            got += os.read(fd, len(first) - len(got))
        assert got.decode() == first
        with open(n.path("d", "snapshot"), "w") as f:
            f.write("s\n")
        # compaction runs, but stops where this reader is: at d's revision 11
        wait_for(lambda: n.info("d")["first"] == 11, what="compaction up to the reader")
        got = b""
        while len(got) < len(rest):
            got += os.read(fd, len(rest) - len(got))
        assert got.decode() == rest
    finally:
        os.close(fd)
    # once the reader is gone, compaction completes
    wait_for(lambda: n.info("d")["first"] == 21, what="full compaction")
