#!/usr/bin/env python3
"""W7's writer ratio for several odofs binaries, measured side by side.

Mounts one node per binary given (the same binary twice is the control),
each with 200 count-only live readers parked on device m and none on
device a.  One writer appends to them, one write() per event, as fast as
it goes, in turns of 0.25 s: every cycle takes one turn on each (node,
device) pair, in a shuffled order, so that every binary sees the same
host.  After a turn on m the node's readers settle (none behind, all
parked again), as in W7.  Prints for each binary the median rates alone
and with the readers, their ratio, and the median and spread of the
cycle-by-cycle ratios.

    /usr/bin/python3 tests/bench/w7_paired.py BIN [BIN ...] [--cycles N]

`bench.py --only 7` measures one binary in one run; the same binary in
two such runs reads 0.6 to 1.0 on this machine, so a change to the
delivery thread cannot be judged by a few of them.  Every daemon is
stopped by PID and unmounted; everything is under one temporary
directory, removed at the end.
"""
import argparse
import os
import random
import statistics
import sys

import bench as B

READERS = 200


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bins", nargs="+", help="odofs binaries")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--turn", type=float, default=0.25, help="seconds a turn")
    a = ap.parse_args()

    class Args:
        quick, runs, keep = True, 1, False

    b = B.Bench(Args())
    nodes = []
    try:
        for i, path in enumerate(a.bins):
            B.BIN["odofs"] = os.path.abspath(path)
            n = B.odofs(b, "pair%d" % i)
            os.mkdir(n.p("a"))
            os.mkdir(n.p("m"))
            procs = B.start_readers(b, n.p("m", "live"), 0, READERS, timeout=600,
                                    count_only=True)
            fds = {k: os.open(n.p(k, "events"), os.O_WRONLY | os.O_APPEND) for k in "am"}
            nodes.append({"node": n, "procs": procs, "fds": fds, "sent": {"a": 0, "m": 0}})
        for x in nodes:
            B.quiet_pipes(x["node"], READERS)
        rates = {(i, k): [] for i in range(len(nodes)) for k in "am"}
        for _ in range(a.cycles):
            order = [(i, k) for i in range(len(nodes)) for k in "am"]
            random.shuffle(order)
            for i, k in order:
                x = nodes[i]
                x["sent"][k], rate = B.writer_turn(x["fds"][k], x["sent"][k], a.turn)
                rates[(i, k)].append(rate)
                if k == "m":
                    B.quiet_pipes(x["node"], READERS)
        for i, path in enumerate(a.bins):
            alone, with_r = rates[(i, "a")], rates[(i, "m")]
            pairs = sorted(m / s for m, s in zip(with_r, alone))
            print("%d %-40s alone %7.0f  with %7.0f  ratio %.2f  cycles: median %.2f, "
                  "%.2f - %.2f, >= 0.8 in %d of %d"
                  % (i, path, statistics.median(alone), statistics.median(with_r),
                     statistics.median(with_r) / statistics.median(alone),
                     statistics.median(pairs), pairs[0], pairs[-1],
                     sum(p >= 0.8 for p in pairs), len(pairs)), flush=True)
        for x in nodes:
            os.write(x["fds"]["m"], B.lat_line(x["sent"]["m"], end=True))
            B.collect_readers(b, x["procs"], timeout=300, expect=x["sent"]["m"])
    finally:
        for x in nodes:
            for fd in x["fds"].values():
                os.close(fd)
        b.cleanup()
        b.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
