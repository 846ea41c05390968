#!/usr/bin/env python3
"""What readers of one device cost appends to another.

For each odofs binary given (say the one before a change and the one
after), and with 0 and then 200 `cat live` readers parked on device y,
mounts a fresh node and has one writer append to device x, one write()
per 100-byte event, as fast as it goes, in 8 turns of 0.25 s.  Prints the
median rate of the turns and the daemon's CPU per append.  Binaries and
reader counts alternate, round after round (4 rounds), so that the
machine's drift hits them alike.

    /usr/bin/python3 tests/bench/other_device.py BIN [BIN ...]

Everything goes under one temporary directory, removed at the end; every
daemon is stopped by PID and unmounted.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench import mount_metric, proc_cpu

READERS = 200
ROUNDS = 4
TURNS = 8
TURN_S = 0.25


def one(top, binary, readers):
    """(median events/s of the turns, daemon CPU µs per append)."""
    d = tempfile.mkdtemp(dir=top)
    mnt, data = os.path.join(d, "mnt"), os.path.join(d, "data")
    os.mkdir(mnt)
    daemon = subprocess.Popen([binary, "-f", "--id", "x", "--data", data, mnt],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cats = []
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("%s did not mount" % binary)
            time.sleep(0.01)
        os.mkdir(os.path.join(mnt, "x"))
        os.mkdir(os.path.join(mnt, "y"))
        cats = [subprocess.Popen(["cat", os.path.join(mnt, "y", "live")],
                                 stdout=subprocess.DEVNULL) for _ in range(readers)]
        while mount_metric(mnt, "odofs_live_parked_reads") != readers:
            time.sleep(0.01)
        fd = os.open(os.path.join(mnt, "x", "events"), os.O_WRONLY | os.O_APPEND)
        line = b"x" * 99 + b"\n"
        rates, total = [], 0
        c0 = proc_cpu(daemon.pid)
        for _ in range(TURNS):
            n, t0 = 0, time.monotonic()
            stop = t0 + TURN_S
            while time.monotonic() < stop:
                for _ in range(50):
                    os.write(fd, line)
                n += 50
            rates.append(n / (time.monotonic() - t0))
            total += n
        cpu = (proc_cpu(daemon.pid) - c0) * 1e6 / total
        os.close(fd)
        return statistics.median(rates), cpu
    finally:
        for c in cats:
            c.kill()
        for c in cats:
            c.wait()
        if subprocess.call(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL):
            subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def main(argv):
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    top = tempfile.mkdtemp(prefix="odofs-otherdev-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    res = {}
    try:
        for _ in range(ROUNDS):
            for b in argv:
                for readers in (0, READERS):
                    res.setdefault((b, readers), []).append(one(top, b, readers))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    for b in argv:
        for readers in (0, READERS):
            v = res[(b, readers)]
            print("%s, %3d readers on another device: %6.0f appends/s, daemon CPU "
                  "%5.1f us an append (medians of %d)" % (
                      b, readers, statistics.median(x[0] for x in v),
                      statistics.median(x[1] for x in v), len(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
