#!/usr/bin/env python3
"""Quick figures for the single-node journal (issue 2's closing note).

Mounts a fresh odofs node, appends N one-line events with one write() each,
then cats them back; prints the times next to a baseline measured in the
same run: the same writes to a plain file on the same disk, and the same cat.

    /usr/bin/python3 tests/bench/quick.py [--events N]
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


def append(path, n):
    line = b"x" * 99 + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    t = time.perf_counter()
    for _ in range(n):
        os.write(fd, line)
    dt = time.perf_counter() - t
    os.close(fd)
    return dt


def cat(path):
    t = time.perf_counter()
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100000)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="odofs-bench-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    mnt = os.path.join(base, "mnt")
    os.mkdir(mnt)
    p = subprocess.Popen([ODOFS, "-f", "--id", "bench", "--data",
                          os.path.join(base, "data"), mnt], stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if subprocess.call(["mountpoint", "-q", mnt]) == 0:
                break
            time.sleep(0.05)
        os.mkdir(os.path.join(mnt, "dev"))
        ev = os.path.join(mnt, "dev", "events")
        plain = os.path.join(base, "plain")
        n = a.events
        rows = []
        t_odofs, t_plain = append(ev, n), append(plain, n)
        rows.append(("append %d x 100 B, one write() each" % n, t_odofs, t_plain))
        c_odofs, c_plain = cat(ev), cat(plain)
        rows.append(("cat %d events (%.1f MB)" % (n, n * 100 / 1e6), c_odofs, c_plain))
        assert os.path.getsize(ev) == os.path.getsize(plain) == n * 100
        print("%-44s %10s %10s %8s %12s" % ("workload", "odofs s", "file s", "ratio", "odofs ev/s"))
        for name, o, f in rows:
            print("%-44s %10.3f %10.3f %8.1f %12.0f" % (name, o, f, o / f, n / o))
    finally:
        p.terminate()
        p.wait(30)
        subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
