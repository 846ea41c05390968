#!/usr/bin/env python3
"""A writer spread over many devices, each with one live reader, for several
odofs binaries side by side.

Mounts one node per binary given (the same binary twice is the control).
Each node has D devices with one count-only `livereader` each and D devices
nobody reads; with --hot N, the D readers stay idle and one more device has
N readers, and the writer appends to that one device instead.  One writer
appends, one write() per event, as fast as it goes, round-robin over a set
of devices, in turns of 0.25 s: every cycle takes one turn on each (node,
read / unread) pair in a shuffled order, so every binary sees the same
host.  After a turn on read devices the node's readers settle (none behind,
all parked again).  Prints for each binary the median rates, their ratio,
the median of the cycles' ratios and the daemon's CPU per event in the
turns on read devices (utime + stime of the process, /proc).  At the end
every reader must have every event of its device, in order (livereader
checks them), and the idle ones none.

    /usr/bin/python3 tests/bench/devices_paired.py BIN [BIN ...]
        [--devices D] [--cycles N] [--hot N]

Every event to a different reader cannot coalesce: this measures what a
delivery round costs beyond its answers.  Every daemon is stopped by PID
and unmounted; everything is under one temporary directory, removed at the
end.
"""
import argparse
import os
import random
import statistics
import sys
import time

import bench as B


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def turn(fds, seq, secs):
    """Appends round-robin over fds for secs, then to the end of the lap, so
    every device stands at the same count.  Returns (seq, events, rate)."""
    w, n, s0 = os.write, len(fds), seq
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        for _ in range(50):
            w(fds[seq % n], B.lat_line(seq // n))
            seq += 1
    while seq % n:
        w(fds[seq % n], B.lat_line(seq // n))
        seq += 1
    return seq, seq - s0, (seq - s0) / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bins", nargs="+", help="odofs binaries")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--cycles", type=int, default=12)
    ap.add_argument("--hot", type=int, default=0,
                    help="readers of one written device; the others idle")
    ap.add_argument("--turn", type=float, default=0.25, help="seconds a turn")
    a = ap.parse_args()

    class Args:
        quick, runs, keep = True, 1, False

    hz = os.sysconf("SC_CLK_TCK")
    d = a.devices
    readers = d + a.hot
    b = B.Bench(Args())
    nodes = []
    try:
        for i, path in enumerate(a.bins):
            B.BIN["odofs"] = os.path.abspath(path)
            n = B.odofs(b, "devices%d" % i)
            for k in range(d):
                os.mkdir(n.p("r%d" % k))
                os.mkdir(n.p("q%d" % k))
            procs = []
            for k in range(d):
                procs += B.start_readers(b, n.p("r%d" % k, "live"), 0, 1,
                                         timeout=900, count_only=True)
            hot = []
            if a.hot:
                os.mkdir(n.p("h"))
                hot = B.start_readers(b, n.p("h", "live"), 0, a.hot,
                                      timeout=900, count_only=True)
            nodes.append({"node": n, "procs": procs, "hot": hot, "fds": {},
                          "seq": {"r": 0, "q": 0}})
        # the writer's files are opened after every reader is spawned: a
        # child would otherwise inherit them, and flush each when it exits
        for x in nodes:
            n = x["node"]
            read = ["h"] if a.hot else ["r%d" % k for k in range(d)]
            unread = ["q0"] if a.hot else ["q%d" % k for k in range(d)]
            for key, names in (("r", read), ("q", unread)):
                x["fds"][key] = [os.open(n.p(name, "events"), os.O_WRONLY | os.O_APPEND)
                                 for name in names]
            B.quiet_pipes(n, readers, timeout=120)
        rates = {(i, k): [] for i in range(len(nodes)) for k in "rq"}
        cpu = {i: [] for i in range(len(nodes))}
        for _ in range(a.cycles):
            order = [(i, k) for i in range(len(nodes)) for k in "rq"]
            random.shuffle(order)
            for i, k in order:
                x = nodes[i]
                c0 = cpu_ticks(x["node"].pid)
                x["seq"][k], events, rate = turn(x["fds"][k], x["seq"][k], a.turn)
                rates[(i, k)].append(rate)
                if k == "r":
                    B.quiet_pipes(x["node"], readers, timeout=120)
                    cpu[i].append((cpu_ticks(x["node"].pid) - c0) * 1e6 / hz / events)
        for i, path in enumerate(a.bins):
            r, q = rates[(i, "r")], rates[(i, "q")]
            pairs = sorted(x / y for x, y in zip(r, q))
            print("%d %-32s devices %d%s: read %6.0f /s, unread %6.0f /s, ratio %.2f "
                  "(cycles: median %.2f); daemon CPU per event read %.1f us"
                  % (i, path, d, " hot %d" % a.hot if a.hot else "",
                     statistics.median(r), statistics.median(q),
                     statistics.median(r) / statistics.median(q),
                     statistics.median(pairs), statistics.median(cpu[i])), flush=True)
        # every reader got every event of its device, in order, and no more
        for x in nodes:
            n, seq = x["node"], x["seq"]["r"]
            if a.hot:
                os.write(x["fds"]["r"][0], B.lat_line(seq, end=True))
                B.collect_readers(b, x["hot"], timeout=300, expect=seq)
                for k in range(d):
                    with open(n.p("r%d" % k, "events"), "ab") as f:
                        f.write(B.lat_line(0, end=True))
                B.collect_readers(b, x["procs"], timeout=300, expect=0)
            else:
                for fd in x["fds"]["r"]:
                    os.write(fd, B.lat_line(seq // d, end=True))
                B.collect_readers(b, x["procs"], timeout=300, expect=seq // d)
        print("every reader got every event of its device", flush=True)
    finally:
        for x in nodes:
            for p in x["procs"] + x["hot"]:
                b.kill(p)
            for fds in x["fds"].values():
                for fd in fds:
                    os.close(fd)
        b.cleanup()
        b.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
