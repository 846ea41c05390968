#!/usr/bin/env python3
"""Latency from write() of an event to its arrival at a blocked live reader.

Mounts a fresh node; a reader process blocks in read() on <dev>/live; the
writer appends N events one write() at a time, each carrying the
CLOCK_MONOTONIC time taken just before its write(); the reader notes the
time each arrives. Prints median and 99th percentile, next to the same
measurement over a plain pipe(2) in the same run (the cost of the two
Python processes and the wake-up, with no odofs in between).

    /usr/bin/python3 tests/bench/live_latency.py [--events N]
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

READER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY) if sys.argv[1] != "-" else 0
n = int(sys.argv[2])
out = []
buf = b""
os.write(1, b"ready\n")
while len(out) < n:
    chunk = os.read(fd, 65536)
    now = time.monotonic_ns()
    if not chunk:
        break
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for l in lines:
        out.append(now - int(l))
sys.stdout.write("\n".join(map(str, out)) + "\n")
"""


def measure(open_writer, reader_path, n, stdin=None):
    r = subprocess.Popen([sys.executable, "-c", READER, reader_path, str(n)],
                         stdin=stdin, stdout=subprocess.PIPE)
    assert r.stdout.readline() == b"ready\n"
    time.sleep(0.2)                      # the reader is blocked in read()
    fd = open_writer()
    for _ in range(n):
        os.write(fd, b"%d\n" % time.monotonic_ns())
        time.sleep(0.0005)               # one event at a time
    os.close(fd)
    lat = sorted(int(x) for x in r.stdout.read().split())
    r.wait()
    assert len(lat) == n, len(lat)
    return lat[len(lat) // 2] / 1000, lat[int(len(lat) * 0.99)] / 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10000)
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="odofs-bench-")
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
        o_med, o_p99 = measure(lambda: os.open(ev, os.O_WRONLY | os.O_APPEND),
                               os.path.join(mnt, "dev", "live"), a.events)
        rfd, wfd = os.pipe()
        b_med, b_p99 = measure(lambda: wfd, "-", a.events, stdin=rfd)
        os.close(rfd)
        print("%-40s %10s %10s" % ("write() -> blocked reader", "median us", "p99 us"))
        print("%-40s %10.1f %10.1f" % ("odofs live (%d events)" % a.events, o_med, o_p99))
        print("%-40s %10.1f %10.1f" % ("baseline: pipe(2), same processes", b_med, b_p99))
        print("%-40s %10.1f %10.1f" % ("odofs minus baseline", o_med - b_med, o_p99 - b_p99))
    finally:
        p.terminate()
        p.wait(30)
        subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
