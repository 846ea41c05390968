"""SPEC §3 and §4 on one node: devices, the append-only events file."""
import errno
import json
import os
import subprocess

import pytest

from conftest import read_file, sh, wait_for


def mkdev(node, dev="sensor-7"):
    os.mkdir(node.path(dev))
    return node.path(dev, "events")


def test_echo_append_and_cat(node):
    ev = mkdev(node)
    r = sh("echo '{\"t\":21.5}' >> %s && echo second >> %s" % (ev, ev))
    assert r.returncode == 0, r.stderr
    assert read_file(ev) == '{"t":21.5}\nsecond\n'
    assert os.stat(ev).st_size == len('{"t":21.5}\nsecond\n')
    info = node.info("sensor-7")
    assert info["head"] == 2 and info["first"] == 1
    assert info["source"] == "a" and info["local"] is True
    assert len(info["epoch"]) == 16


def test_printf_tee_python_append(node):
    ev = mkdev(node)
    assert sh("printf 'no-newline' >> %s" % ev).returncode == 0
    # a partial line is committed when the file is closed (the release,
    # which the kernel sends just after close() returns)
    wait_for(lambda: read_file(ev) == "no-newline\n", what="partial line at close")
    assert sh("echo teed | tee -a %s > /dev/null" % ev).returncode == 0
    with open(ev, "a") as f:
        f.write("py-1\npy-2\n")
    assert read_file(ev) == "no-newline\nteed\npy-1\npy-2\n"
    assert node.info("sensor-7")["head"] == 4


def test_line_written_in_pieces_is_one_event(node):
    ev = mkdev(node)
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"hel")
        os.write(fd, b"lo wor")
        os.write(fd, b"ld\nnext-")
        # the partial line is not an event yet
        assert node.info("sensor-7")["head"] == 1
        os.write(fd, b"line\n")
    finally:
        os.close(fd)
    assert read_file(ev) == "hello world\nnext-line\n"
    assert node.info("sensor-7")["head"] == 2


def test_partial_line_committed_on_close(node):
    ev = mkdev(node)
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"a\nunfinished")
    assert read_file(ev) == "a\n"
    # a child closing its copy of the descriptor commits nothing
    pid = os.fork()
    if pid == 0:
        os.close(fd)
        os._exit(0)
    os.waitpid(pid, 0)
    os.write(fd, b"-line")
    assert read_file(ev) == "a\n"
    os.close(fd)
    wait_for(lambda: read_file(ev) == "a\nunfinished-line\n", what="commit at close")


def test_shell_group_partial_lines_join(node):
    """{ echo -n aaa; echo bbb; } >> events is one event, as on a file."""
    ev = mkdev(node)
    r = sh("{ /bin/echo -n aaa; /bin/echo bbb; } >> %s" % ev)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: node.info("sensor-7")["head"] == 1, what="one event")
    assert read_file(ev) == "aaabbb\n"


def test_truncating_writes_refused(node):
    ev = mkdev(node)
    sh("echo keep >> %s" % ev)
    r = sh("echo bad > %s" % ev)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    r = sh("truncate -s 0 %s" % ev)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND | os.O_TRUNC):
        with pytest.raises(OSError) as ei:
            os.open(ev, flags)
        assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.truncate(ev, 0)
    assert ei.value.errno == errno.EPERM
    assert read_file(ev) == "keep\n"


def test_other_operations_refused(node):
    ev = mkdev(node)
    sh("echo x >> %s" % ev)
    cases = [
        lambda: os.rmdir(node.path("sensor-7")),
        lambda: os.unlink(ev),
        lambda: os.rename(ev, node.path("sensor-7", "renamed")),
        lambda: os.rename(node.path("sensor-7"), node.path("other")),
        lambda: open(node.path("sensor-7", "newfile"), "w"),
        lambda: os.chmod(ev, 0o600),
        lambda: os.chown(ev, 1, 1),
        lambda: os.symlink("events", node.path("sensor-7", "ln")),
        lambda: os.link(ev, node.path("sensor-7", "hard")),
    ]
    for case in cases:
        with pytest.raises(OSError) as ei:
            case()
        assert ei.value.errno == errno.EPERM, case
    # touch: a time-only setattr succeeds and changes nothing
    assert sh("touch %s" % ev).returncode == 0
    assert read_file(ev) == "x\n"
    # the live pipe is opened by name, never listed (SPEC §2)
    assert sorted(os.listdir(node.path("sensor-7"))) == ["events", "from", "info", "snapshot"]


def test_modes_and_listing(node):
    mkdev(node, "d1")
    mkdev(node, "d2")
    assert sorted(os.listdir(node.mnt)) == [".metrics", ".peers", ".status", "d1", "d2"]
    assert os.stat(node.path("d1", "events")).st_mode & 0o777 == 0o644
    assert os.stat(node.path("d1", "info")).st_mode & 0o777 == 0o444
    assert os.stat(node.path(".status")).st_mode & 0o777 == 0o444
    with pytest.raises(OSError) as ei:
        open(node.path("d1", "info"), "a")
    assert ei.value.errno == errno.EACCES


def test_invalid_device_names(node):
    bad = [".x", "...", "a b", "x" * 129, "tab\there", "star*", "semi;colon"]
    for name in bad:
        with pytest.raises(OSError) as ei:
            os.mkdir(node.path(name))
        assert ei.value.errno == errno.EINVAL, name
    # binary (NUL-free) bytes are not an id either
    for raw in (b"\x01dev", b"dev\xff", b"\xc3\xa9t\xc3\xa9", b"a\x7fb"):
        with pytest.raises(OSError) as ei:
            os.mkdir(os.path.join(node.mnt.encode(), raw))
        assert ei.value.errno == errno.EINVAL, raw
    # ".." never reaches the daemon: the kernel answers it
    with pytest.raises(OSError) as ei:
        os.mkdir(node.path(".."))
    assert ei.value.errno == errno.EEXIST
    os.mkdir(node.path("a"))
    with pytest.raises(OSError) as ei:
        os.mkdir(node.path("a", "b"))   # a/b: an id with a slash
    assert ei.value.errno == errno.EINVAL
    ok = "x" * 128
    os.mkdir(node.path(ok))
    os.mkdir(node.path("A-z_0.9:dev@site"))
    with pytest.raises(OSError) as ei:
        os.mkdir(node.path("a"))
    assert ei.value.errno == errno.EEXIST
    assert sorted(os.listdir(node.mnt)) == sorted(
        [".metrics", ".peers", ".status", "a", ok, "A-z_0.9:dev@site"])
    assert node.status()["devices"] == 3


def write_all(fd, data):
    """Writes like any careful program: retries short writes."""
    while data:
        data = data[os.write(fd, data):]


def test_over_long_event_efbig_then_usable(node):
    ev = mkdev(node)
    sh("echo before >> %s" % ev)
    line = b"y" * (1024 * 1024 + 1) + b"\n"
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    try:
        # The kernel cuts a write over 1 MiB into pieces; the piece that
        # makes the line too long fails with EFBIG.
        with pytest.raises(OSError) as ei:
            write_all(fd, line)
        assert ei.value.errno == errno.EFBIG
        write_all(fd, b"after\n")
    finally:
        os.close(fd)
    assert read_file(ev) == "before\nafter\n"
    # exactly the limit is accepted
    with open(ev, "ab", buffering=0) as f:
        f.write(b"z" * (1024 * 1024) + b"\n")
    assert node.info("sensor-7")["head"] == 3
    # a shell writer gets the error too
    r = sh("head -c 1100000 /dev/zero | tr '\\0' q >> %s" % ev)
    assert r.returncode != 0 and "File too large" in r.stderr
    assert node.info("sensor-7")["head"] == 3


def test_refused_write_keeps_earlier_partial_line(nodes):
    n = nodes("a").start(config="limits: { max_event_bytes = 100; };\n")
    ev = mkdev(n)
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"ccc")
        with pytest.raises(OSError) as ei:
            os.write(fd, b"ddd\n" + b"x" * 200 + b"\n")
        assert ei.value.errno == errno.EFBIG
        # the refused write took nothing, not even the line it would end
        os.write(fd, b"ddd\n")
        # an over-long write that began nothing earlier is simply refused
        with pytest.raises(OSError) as ei:
            os.write(fd, b"y" * 200)
        assert ei.value.errno == errno.EFBIG
        os.write(fd, b"fresh\n")
    finally:
        os.close(fd)
    assert read_file(ev) == "cccddd\nfresh\n"


def test_max_event_bytes_config(nodes):
    n = nodes("a").start(config="limits: { max_event_bytes = 10; };\n")
    ev = mkdev(n)
    with open(ev, "ab", buffering=0) as f:
        f.write(b"0123456789\n")
        with pytest.raises(OSError) as ei:
            f.write(b"0123456789A\n")
        assert ei.value.errno == errno.EFBIG
        # nothing of a write with one over-long line is stored
        with pytest.raises(OSError) as ei:
            f.write(b"ok\n0123456789AB\nok2\n")
        assert ei.value.errno == errno.EFBIG
    assert read_file(ev) == "0123456789\n"


def test_pread_and_tail_at_any_offset(node):
    ev = mkdev(node)
    lines = ["event-%05d %s" % (i, "p" * (i % 37)) for i in range(5000)]
    with open(ev, "a") as f:
        f.write("".join(l + "\n" for l in lines))
    want = "".join(l + "\n" for l in lines).encode()
    assert os.stat(ev).st_size == len(want)
    fd = os.open(ev, os.O_RDONLY)
    try:
        for off in (0, 1, 17, 4095, 4096, 65535, len(want) // 2, len(want) - 1):
            assert os.pread(fd, 300, off) == want[off:off + 300]
        assert os.pread(fd, 100, len(want)) == b""
    finally:
        os.close(fd)
    r = sh("tail -n 3 %s" % ev)
    assert r.stdout == "".join(l + "\n" for l in lines[-3:])
    assert read_file(ev, "rb") == want


def test_fsync_and_sync_config(nodes):
    """fsync and fdatasync sync the store; durability.sync syncs every
    commit, and without it an append does not.  Observed through the
    store's own sync counter: writes return after their commit, so the
    counter read after a write() or fsync() includes what they did."""
    syncs = "odofs_store_syncs_total"
    plain = nodes("a").start()
    ev = mkdev(plain)
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    try:
        before = plain.metric(syncs)
        os.write(fd, b"not synced\n")
        assert plain.metric(syncs) == before      # nothing else writes here
        os.fsync(fd)
        assert plain.metric(syncs) >= before + 1
        after_fsync = plain.metric(syncs)
        os.fdatasync(fd)
        assert plain.metric(syncs) >= after_fsync + 1
    finally:
        os.close(fd)
    assert read_file(ev) == "not synced\n"

    synced = nodes("b").start(config="durability: { sync = true; };\n")
    ev = mkdev(synced)
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    try:
        before = synced.metric(syncs)
        for i in range(3):
            os.write(fd, b"durable %d\n" % i)
        assert synced.metric(syncs) >= before + 3
        os.fsync(fd)
    finally:
        os.close(fd)
    assert read_file(ev) == "durable 0\ndurable 1\ndurable 2\n"


WRITER = r"""
import os, sys
path, wid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
for i in range(n):
    line = ("w%d-%06d-" % (wid, i)) + "x" * ((i * 7 + wid) % 50) + "\n"
    b = line.encode()
    while b:
        b = b[os.write(fd, b):]
os.close(fd)
"""


def test_concurrent_writers(node):
    ev = mkdev(node)
    writers, per = 8, 20000
    procs = [subprocess.Popen(["/usr/bin/python3", "-c", WRITER, ev, str(w), str(per)])
             for w in range(writers)]
    for p in procs:
        assert p.wait(300) == 0
    data = read_file(ev).split("\n")
    assert data[-1] == ""
    data = data[:-1]
    assert len(data) == writers * per
    seen = {w: 0 for w in range(writers)}
    for line in data:
        head, _, tail = line.partition("-")
        w = int(head[1:])
        num, _, pad = tail.partition("-")
        assert int(num) == seen[w], "writer %d out of order" % w
        assert pad == "x" * ((int(num) * 7 + w) % 50), "torn line %r" % line
        seen[w] += 1
    info = node.info("sensor-7")
    assert info["first"] == 1 and info["head"] == writers * per
    assert info["end_offset"] == os.stat(ev).st_size


def test_sigkill_keeps_acknowledged_events(nodes):
    n = nodes("a").start()
    ev = mkdev(n)
    fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
    for i in range(3000):
        os.write(fd, b"ack-%d\n" % i)
    # every write above returned: kill the daemon without warning
    n.kill()
    try:
        os.close(fd)
    except OSError:
        pass
    n.start()
    assert read_file(ev) == "".join("ack-%d\n" % i for i in range(3000))
    info = n.info("sensor-7")
    assert info["head"] == 3000
    sh("echo after-restart >> %s" % ev)
    assert n.info("sensor-7")["head"] == 3001
    assert read_file(ev).endswith("ack-2999\nafter-restart\n")


def test_restart_keeps_devices_and_epochs(nodes):
    n = nodes("a").start()
    mkdev(n, "d1")
    sh("echo one >> %s" % n.path("d1", "events"))
    epoch = n.info("d1")["epoch"]
    assert n.stop() == 0
    n.start()
    assert n.info("d1")["epoch"] == epoch
    assert read_file(n.path("d1", "events")) == "one\n"


def test_status_and_metrics(node):
    ev = mkdev(node)
    sh("echo a >> %s; echo b >> %s" % (ev, ev))
    try:
        os.mkdir(node.path(".bad"))
    except OSError:
        pass
    st = node.status()
    assert st["node"] == "a" and st["devices"] == 1 and st["events"] == 2
    m = read_file(node.path(".metrics"))
    assert "odofs_events_appended_total 2\n" in m
    assert "odofs_bytes_appended_total 4\n" in m
    assert 'odofs_errors_total{errno="EINVAL"} 1\n' in m
    assert "# TYPE odofs_reads_total counter" in m
