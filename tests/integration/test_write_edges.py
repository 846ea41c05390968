"""SPEC §4 at the edges of write(): a partial line is visible once close()
returns, and an over-long line fails its write() with EFBIG, whole."""
import errno
import os

import pytest

from conftest import read_file

MIB = 1024 * 1024
SMALL = 4096
SMALL_CONF = "limits: { max_event_bytes = %d; };\n" % SMALL


def mkdev(node, dev="edge"):
    os.mkdir(node.path(dev))
    return node.path(dev, "events")


def appender(ev):
    return os.open(ev, os.O_WRONLY | os.O_APPEND)


def read_from(ev, off):
    with open(ev, "rb") as f:
        f.seek(off)
        return f.read()


def test_partial_line_visible_when_close_returns(node):
    """(a) close() waits for FLUSH, and the partial line is committed there:
    stat and a read right after close() see it, every time."""
    ev = mkdev(node)
    size = 0
    misses = []
    for i in range(1000):
        line = b"x-%d" % i
        fd = appender(ev)
        os.write(fd, line)
        os.close(fd)
        st = os.stat(ev)
        got = read_from(ev, size)
        if st.st_size != size + len(line) + 1 or got != line + b"\n":
            misses.append((i, st.st_size - size, got))
        size += len(line) + 1
    assert not misses, "%d of 1000 missed, first: %r" % (len(misses), misses[:3])
    assert node.info("edge")["head"] == 1000


def test_which_close_commits(node):
    """The opener's close of any of its descriptors (a dup too) commits the
    partial line, visible when close() returns; a forked child closing its
    inherited copy does not end the line, as with a plain file (so
    `{ echo -n a; echo b; } >> events` stays one event)."""
    ev = mkdev(node)
    fd = appender(ev)
    try:
        os.write(fd, b"a\nfirst")
        assert read_file(ev) == "a\n"
        os.close(os.dup(fd))
        assert read_file(ev) == "a\nfirst\n"
        os.write(fd, b"second")
        pid = os.fork()
        if pid == 0:
            os.close(fd)
            os._exit(0)
        os.waitpid(pid, 0)
        os.write(fd, b"-more")
        assert read_file(ev) == "a\nfirst\n"
    finally:
        os.close(fd)
    assert read_file(ev) == "a\nfirst\nsecond-more\n"


def test_over_long_unfinished_write_efbig(nodes):
    """(b) one write() of max + 1 bytes without newline: EFBIG, and closing
    stores nothing."""
    n = nodes("a").start(config=SMALL_CONF)
    ev = mkdev(n)
    with open(ev, "ab") as f:
        f.write(b"before\n")
    fd = appender(ev)
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, b"x" * (SMALL + 1))
        assert ei.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    assert read_file(ev) == "before\n"
    assert n.info("edge")["head"] == 1


def test_over_long_write_at_default_limit(node):
    """(b) at the default 1 MiB, the case of the issue.  The kernel carries a
    write() of more than 1 MiB in pieces of at most 1 MiB (one page less when
    the buffer is not page-aligned), so when the piece that makes the line
    too long is not the first, the kernel returns the earlier pieces' count
    and only the next write() can get EFBIG.  What the kernel acknowledged is
    not dropped."""
    ev = mkdev(node)
    data = b"x" * (MIB + 1)

    # the writer closes after the short count: exactly what it was told
    # was written is stored
    fd = appender(ev)
    try:
        try:
            n = os.write(fd, data)
        except OSError as e:
            assert e.errno == errno.EFBIG
            n = 0
        assert n < len(data)
    finally:
        os.close(fd)
    want = b"x" * n + b"\n" if n else b""
    assert read_file(ev, "rb") == want
    base = len(want)

    # a careful writer sends the rest: that write() gets EFBIG, and nothing
    # of the line is stored, not even at close
    fd = appender(ev)
    try:
        with pytest.raises(OSError) as ei:
            rest = data
            while rest:
                rest = rest[os.write(fd, rest):]
        assert ei.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    assert os.stat(ev).st_size == base
    with open(ev, "ab", buffering=0) as f:
        f.write(b"after\n")
    assert read_from(ev, base) == b"after\n"

    # exactly the limit is an event
    with open(ev, "ab", buffering=0) as f:
        f.write(b"z" * MIB + b"\n")
    assert read_from(ev, base + 6) == b"z" * MIB + b"\n"


def test_over_long_line_inside_write_stores_nothing(nodes):
    """(c) pre, an over-long line and post in one write(): EFBIG, neither
    pre nor post is stored, and the descriptor stays usable."""
    n = nodes("a").start(config=SMALL_CONF)
    ev = mkdev(n)
    fd = appender(ev)
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, b"pre\n" + b"y" * (SMALL + 1) + b"\npost\n")
        assert ei.value.errno == errno.EFBIG
        assert read_file(ev) == ""
        assert os.write(fd, b"ok\n") == 3
    finally:
        os.close(fd)
    assert read_file(ev) == "ok\n"


def test_refused_write_keeps_the_partial_line_before_it(nodes):
    """A refused write() whose over-long line is its own leaves the pending
    partial line as it was."""
    n = nodes("a").start(config=SMALL_CONF)
    ev = mkdev(n)
    fd = appender(ev)
    try:
        os.write(fd, b"head-")
        with pytest.raises(OSError) as ei:
            os.write(fd, b"tail\n" + b"y" * (SMALL + 1) + b"\n")
        assert ei.value.errno == errno.EFBIG
        with pytest.raises(OSError) as ei:
            os.write(fd, b"tail\n" + b"y" * (SMALL + 1))
        assert ei.value.errno == errno.EFBIG
        assert read_file(ev) == ""
        os.write(fd, b"tail\n")
    finally:
        os.close(fd)
    assert read_file(ev) == "head-tail\n"


def test_partial_line_grown_past_the_limit(nodes):
    """(d) a line written in pieces: the write() that makes it too long gets
    EFBIG; what earlier writes held of it is not stored as a truncated event,
    nor is the rest of it; the next line is stored."""
    n = nodes("a").start(config=SMALL_CONF)
    ev = mkdev(n)
    fd = appender(ev)
    try:
        os.write(fd, b"a" * 3000)
        os.write(fd, b"b" * 1000)
        size = os.stat(ev).st_size
        with pytest.raises(OSError) as ei:
            os.write(fd, b"c" * 200)
        assert ei.value.errno == errno.EFBIG
        assert os.stat(ev).st_size == size == 0
        # the rest of the refused line, up to its newline, is refused too
        with pytest.raises(OSError) as ei:
            os.write(fd, b"c" * 10 + b"\n")
        assert ei.value.errno == errno.EFBIG
        # the same write sent again (a buffered writer's flush at close)
        # is refused again: the end of the line is not an event
        with pytest.raises(OSError) as ei:
            os.write(fd, b"c" * 10 + b"\n")
        assert ei.value.errno == errno.EFBIG
        os.write(fd, b"next\n")
        os.write(fd, b"tail")
    finally:
        os.close(fd)
    assert read_file(ev) == "next\ntail\n"
    # closing right after the refusal stores nothing of the line either
    fd = appender(ev)
    try:
        os.write(fd, b"d" * 4000)
        with pytest.raises(OSError) as ei:
            os.write(fd, b"d" * 200)
        assert ei.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    with open(ev, "ab", buffering=0) as f:
        f.write(b"fresh\n")
    assert read_file(ev) == "next\ntail\nfresh\n"


def test_buffered_over_long_line_at_default_limit(node):
    """The issue's second case: a buffered write of pre, a line of 1 MiB + 1
    and post, at the default limit.  The kernel carries the write() in
    pieces; the first holds pre and less than the limit of the long line,
    so pre is stored (README: "otherwise stores `pre`"), the retry of the
    rest gets EFBIG, and nothing of the long line nor post is stored."""
    ev = mkdev(node)
    f = open(ev, "ab")
    try:
        with pytest.raises(OSError) as ei:
            f.write(b"pre\n" + b"y" * (MIB + 1) + b"\npost\n")
            f.flush()
        assert ei.value.errno == errno.EFBIG
    finally:
        try:
            f.close()
        except OSError as e:
            # close() flushes what the buffer still holds: the same EFBIG
            assert e.errno == errno.EFBIG
    assert read_file(ev, "rb") == b"pre\n"
    with open(ev, "ab") as f:
        f.write(b"after\n")
    assert read_file(ev, "rb") == b"pre\nafter\n"
