#!/usr/bin/env python3
"""Direct I/O or the page cache for readers of `events`: the measurement.

Runs the same workloads against a node with readers on direct I/O (the
default) and one with readers through the page cache
(ODOFS_EVENTS_PAGE_CACHE=1; size refreshed by attr_timeout 0 and the
kernel's auto_inval_data): cat of a 1,000,000-event journal twice (cold,
warm), tail -n 10, and cat of a journal that grows by one event between
reads (what a follower does). Also checks that each mode returns the
right bytes.

    /usr/bin/python3 tests/bench/events_cache.py [--events N]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ODOFS = os.environ.get("ODOFS_BIN", os.path.join(ROOT, "build", "fs", "odofs"))


def timed(f, runs=3):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2], out


def run_mode(base, name, env, n):
    mnt = os.path.join(base, name)
    os.mkdir(mnt)
    p = subprocess.Popen([ODOFS, "-f", "--id", "bench", "--data",
                          os.path.join(base, name + "-data"), mnt],
                         env=dict(os.environ, **env), stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if subprocess.call(["mountpoint", "-q", mnt]) == 0:
                break
            time.sleep(0.05)
        os.mkdir(os.path.join(mnt, "d"))
        ev = os.path.join(mnt, "d", "events")
        fd = os.open(ev, os.O_WRONLY | os.O_APPEND)
        want = b"".join(b"event-%09d %s\n" % (i, b"x" * 80) for i in range(n))
        chunk, off = 1 << 16, 0
        while off < len(want):
            end = want.rfind(b"\n", off, off + chunk) + 1
            os.write(fd, want[off:end])
            off = end
        cat = lambda: subprocess.run(["cat", ev], stdout=subprocess.DEVNULL, check=True)
        cold, _ = timed(cat, 1)
        warm, _ = timed(cat)
        with open(ev, "rb") as f:
            assert f.read() == want
        tail, out = timed(lambda: subprocess.run(["tail", "-n", "10", ev],
                                                 capture_output=True).stdout)
        assert out == b"".join(want.splitlines(True)[-10:])

        def grow_and_read():
            os.write(fd, b"more\n")
            cat()
        grow, _ = timed(grow_and_read)
        with open(ev, "rb") as f:
            assert f.read().endswith(b"more\nmore\nmore\n")
        os.close(fd)
        return {"cat cold": cold, "cat warm": warm, "tail -n 10": tail,
                "append 1 + cat": grow}, len(want)
    finally:
        p.terminate()
        p.wait(30)
        subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000000)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="odofs-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        dio, size = run_mode(base, "dio", {}, a.events)
        pc, _ = run_mode(base, "pc", {"ODOFS_EVENTS_PAGE_CACHE": "1"}, a.events)
        print("journal: %d events, %.1f MB" % (a.events, size / 1e6))
        print("%-18s %12s %12s %8s" % ("workload", "direct_io s", "pagecache s", "dio/pc"))
        for k in dio:
            print("%-18s %12.4f %12.4f %8.2f" % (k, dio[k], pc[k], dio[k] / pc[k]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
