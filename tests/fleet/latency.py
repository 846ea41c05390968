"""Follows one `live` pipe for the fleet harness and writes, for every event
it reads, "<read time ns> <revision> <write time ns>" to a file.

    python3 latency.py MOUNT/DEVICE/live OUTFILE

The harness's events start with "<revision> <monotonic ns when written> ",
so the difference of the two is the event's delay from the write on its
source to this reader; CLOCK_MONOTONIC is one clock for every process of
the machine, whatever network namespace it is in.  Runs until killed
(SIGTERM: a blocked FUSE read is interrupted at once).
"""
import os
import sys
import time


def main():
    path, out = sys.argv[1], sys.argv[2]
    fd = os.open(path, os.O_RDONLY)
    with open(out, "w", buffering=1) as f:
        rest = b""
        while True:
            data = os.read(fd, 1 << 20)
            now = time.monotonic_ns()
            if not data:
                return 0
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            f.write("".join("%d %s\n" % (now, b" ".join(l.split(b" ", 2)[:2]).decode())
                            for l in lines if l.count(b" ") >= 2))


if __name__ == "__main__":
    sys.exit(main())
