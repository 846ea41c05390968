#!/usr/bin/python3
"""The odofs benchmark: workloads 1-12 of issue 7, each next to a floor
measured in the same run, printed as one table.

    /usr/bin/python3 tests/bench/bench.py [--quick] [--only N,M] [--runs R]

--quick     small sizes and one run (CI's smoke test: well under a minute)
--only      run only these workloads (e.g. --only 1,6,12); a workload whose
            floor is another workload (2 -> 1) measures that one as well
--runs R    runs per figure (default 3; --quick: 1); every figure is the
            median of its R runs
--keep      keep the temporary directory (logs, data) for a post-mortem

The exit status is 0 when every workload ran, 1 when one of them failed
(a daemon died, a reader saw a wrong or missing event, a file differed):
never because a figure missed its target.  "met"/"MISSED" in the table is
for people.  2: the build is missing; 130: interrupted (after clean-up).

Needs the build (`ninja -C build`: build/fs/odofs and the floor programs
of tests/bench/meson.build); ODOFS_BUILD=DIR uses another build directory.
Everything it creates lives under one temporary directory in /var/tmp
(TMPDIR overrides), every daemon is stopped by PID and unmounted in a
finally block, and the directory is removed at the end.  docs/BENCHMARKS.md
describes the workloads and what bounds each figure.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from ports import free_port  # noqa: E402
BUILD = os.environ.get("ODOFS_BUILD", os.path.join(ROOT, "build"))
BIN = {
    "odofs": os.environ.get("ODOFS_BIN", os.path.join(BUILD, "fs", "odofs")),
    "nullfs": os.path.join(BUILD, "tests", "bench", "nullfs"),
    "ldbfloor": os.path.join(BUILD, "tests", "bench", "ldbfloor"),
    "livereader": os.path.join(BUILD, "tests", "bench", "livereader"),
}
PY = sys.executable or "/usr/bin/python3"
ME = os.path.abspath(__file__)
MiB = 1 << 20

# ---------------------------------------------------------------------------
# Event payloads.  Line i is "<10-digit i> <88 random [A-Za-z0-9]>\n", 100
# bytes, like ldbfloor's (Snappy cannot shrink them much).  Bulk writes are
# chunks of 655 whole lines (65,500 bytes: the largest whole-line write of
# at most 64 KiB); a pool of 64 distinct chunks is cycled, so the expected
# bytes of any bulk stream are known without keeping them.

LINE = 100
CHUNK_LINES = 655
POOL_CHUNKS = 64
_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_rng = random.Random(7)
TAILS = [bytes(_rng.choices(_ALNUM, k=LINE - 12)) for _ in range(4096)]
_POOL = None


def line(i):
    return b"%010d " % (i % 10000000000) + TAILS[i & 4095] + b"\n"


def pool():
    global _POOL
    if _POOL is None:
        _POOL = [b"".join(line(k * CHUNK_LINES + t) for t in range(CHUNK_LINES))
                 for k in range(POOL_CHUNKS)]
    return _POOL


def bulk_chunks(nlines, skew=0):
    """The writes of a bulk stream of nlines lines: 65,500-byte chunks."""
    p = pool()
    j = 0
    while nlines > 0:
        k = min(nlines, CHUNK_LINES)
        c = p[(j + skew) % POOL_CHUNKS]
        yield c if k == CHUNK_LINES else c[:k * LINE]
        nlines -= k
        j += 1


def digest_lines(first, count):
    h = hashlib.sha256()
    for i in range(first, first + count):
        h.update(line(i))
    return h.hexdigest()


def digest_bulk(nlines, skew=0):
    h = hashlib.sha256()
    for c in bulk_chunks(nlines, skew):
        h.update(c)
    return h.hexdigest()


def digest_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def lat_line(seq, pad_to=LINE, end=False):
    """A latency event: "<seq> <CLOCK_MONOTONIC ns> x..x\\n" (livereader.c);
    with end, the end marker (time stamp 0)."""
    head = b"%d %d " % (seq, 0 if end else time.monotonic_ns())
    return head + b"x" * (pad_to - 1 - len(head)) + b"\n"


# ---------------------------------------------------------------------------
# Workers: this file run as a child process (`bench.py --worker ...`), so
# that writers and readers are processes of their own, as users are.

def worker(argv):
    kind = argv[0]
    if kind == "write":
        # write PATH MODE FIRST COUNT [SKEW]: MODE each | sync | bulk
        path, mode, first, count = argv[1], argv[2], int(argv[3]), int(argv[4])
        skew = int(argv[5]) if len(argv) > 5 else 0
        flags = os.O_WRONLY | os.O_APPEND
        if not path.startswith("/"):
            raise SystemExit("bad path")
        fd = os.open(path, flags | (os.O_CREAT if mode.startswith("plain") else 0), 0o644)
        if mode == "bulk":
            chunks = list(bulk_chunks(count, skew)) if count < 200000 else None
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()
        w = os.write
        c0 = time.process_time()
        t0 = time.monotonic()
        if mode in ("each", "plain"):
            for i in range(first, first + count):
                b = line(i)
                if w(fd, b) != LINE:
                    raise SystemExit("short write")
        elif mode in ("sync", "plainsync"):
            for i in range(first, first + count):
                if w(fd, line(i)) != LINE:
                    raise SystemExit("short write")
                os.fdatasync(fd)
        elif mode == "bulk":
            for c in (chunks if chunks is not None else bulk_chunks(count, skew)):
                if w(fd, c) != len(c):
                    raise SystemExit("short write")
        else:
            raise SystemExit("bad mode " + mode)
        t1 = time.monotonic()
        c1 = time.process_time()
        os.close(fd)
        sys.stdout.write("%.9f %.9f %.9f\n" % (t0, t1, c1 - c0))
        return 0
    if kind == "loadmany":
        # loadmany MNT NDEV PERDEV: bulk lines into dev-0..dev-(NDEV-1), one
        # 65,500-byte write per device in turn
        mnt, ndev, per = argv[1], int(argv[2]), int(argv[3])
        fds = [os.open(os.path.join(mnt, "dev-%d" % d, "events"),
                       os.O_WRONLY | os.O_APPEND) for d in range(ndev)]
        chunks = pool()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.readline()
        t0 = time.monotonic()
        done, j = 0, 0
        while done < per:
            k = min(CHUNK_LINES, per - done)
            for d, fd in enumerate(fds):
                c = chunks[(j + d) % POOL_CHUNKS]
                c = c if k == CHUNK_LINES else c[:k * LINE]
                if os.write(fd, c) != len(c):
                    raise SystemExit("short write")
            done += k
            j += 1
        t1 = time.monotonic()
        sys.stdout.write("%.9f %.9f\n" % (t0, t1))
        return 0
    if kind == "stall":
        # stall PATH: a live reader that takes one read and then never reads
        fd = os.open(argv[1], os.O_RDONLY)
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        os.read(fd, 65536)
        sys.stdout.write("stalled\n")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    raise SystemExit("unknown worker " + kind)


# ---------------------------------------------------------------------------
# Processes, mounts and clean-up.

class BenchError(Exception):
    """A workload failed (not a figure: wrong data, a crash, a time-out)."""


class Interrupted(BaseException):
    pass


def _on_term(signum, frame):
    raise Interrupted("signal %d" % signum)


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for ln in f:
            if ln.split()[1].replace("\\040", " ") == path:
                return True
    return False


def unmount(path):
    if mounted(path):
        if subprocess.call(["fusermount3", "-u", path], stderr=subprocess.DEVNULL) != 0:
            subprocess.call(["fusermount3", "-uz", path], stderr=subprocess.DEVNULL)


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.runs = args.runs
        base = os.environ.get("TMPDIR", "/var/tmp")
        self.base = tempfile.mkdtemp(prefix="odofs-bench-", dir=base)
        self.daemons = []       # every Daemon started, stopped at the end
        self.procs = []         # every helper process, killed at the end
        self.cache = {}         # shared floors: ("ldb", run), ("pipe", run)
        self.certs = None
        self.seq = 0
        self.last_reads = 0
        self.writer_cpu = 0.0

    def path(self, *parts):
        return os.path.join(self.base, *parts)

    def fresh(self, name):
        self.seq += 1
        p = self.path("%s-%d" % (name, self.seq))
        os.makedirs(p)
        return p

    def popen(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def kill(self, p):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            except ProcessLookupError:
                pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for f in (p.stdin, p.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self):
        for d in list(self.daemons):
            d.stop()
        for p in list(self.procs):
            self.kill(p)

    def remove(self):
        for root, dirs, _ in os.walk(self.base):
            for d in dirs:
                if mounted(os.path.join(root, d)):
                    print("bench: %s is still mounted; keeping %s" %
                          (os.path.join(root, d), self.base), file=sys.stderr)
                    return
        shutil.rmtree(self.base, ignore_errors=True)

    def gen_certs(self, ids):
        if self.certs is None:
            self.certs = self.path("certs")
        subprocess.run(["bash", os.path.join(ROOT, "etc", "gen-certs.sh"),
                        self.certs] + list(ids), check=True,
                       stdout=subprocess.DEVNULL)
        return self.certs


def wait_for(pred, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for " + what)
        time.sleep(interval)


class Daemon:
    """odofs or nullfs in the foreground on its own mountpoint."""

    def __init__(self, b, name, argv, mnt, env=None):
        self.b, self.name, self.argv, self.mnt = b, name, argv, mnt
        self.env = env
        self.proc = None
        self.log = b.path(name + ".log")
        os.makedirs(mnt, exist_ok=True)

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env=dict(os.environ, **(self.env or {})))
        self.b.daemons.append(self)
        wait_for(lambda: self.proc.poll() is not None or
                 subprocess.call(["mountpoint", "-q", self.mnt]) == 0,
                 20, "the mount of " + self.name)
        self.check()
        return self

    def check(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError("%s exited with status %s: %s" %
                             (self.name, self.proc.returncode, self.tail()))

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def p(self, *parts):
        return os.path.join(self.mnt, *parts)

    def stop(self):
        """SIGTERM by PID, then unmount; True when it had not died before."""
        alive = True
        if self.proc is not None:
            alive = self.proc.poll() is None
            if alive:
                try:
                    os.kill(self.proc.pid, signal.SIGCONT)
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            unmount(self.mnt)
        if self in self.b.daemons:
            self.b.daemons.remove(self)
        return alive


def odofs(b, name, data=None, extra=(), env=None):
    mnt = b.fresh(name + "-mnt")
    data = data or b.fresh(name + "-data")
    argv = [BIN["odofs"], "-f", "--id", name, "--data", data] + list(extra) + [mnt]
    d = Daemon(b, name, argv, mnt, env).start()
    d.data = data
    return d


def nullfs(b, name="nullfs", extra=()):
    mnt = b.fresh(name + "-mnt")
    return Daemon(b, name, [BIN["nullfs"]] + list(extra) + [mnt], mnt).start()


def peer_args(b, node_id, port, seeds=(), listen=True):
    c = b.certs
    a = ["--cert", os.path.join(c, node_id + ".pem"), "--key",
         os.path.join(c, node_id + ".key"), "--ca", os.path.join(c, "ca.pem")]
    if listen:
        a += ["--listen", "127.0.0.1:%d" % port]
    for s in seeds:
        a += ["--peer", "127.0.0.1:%d" % s]
    return a




def status(d):
    with open(d.p(".status")) as f:
        return json.load(f)


def active_peers(d):
    return sorted(p["id"] for p in status(d)["peers"] if p["state"] == "active")


def proc_cpu(pid):
    """CPU seconds (user + system) of process pid and its threads so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_mark(d):
    return proc_cpu(d.pid)


def cpu_per(b, d, mark, n):
    """(daemon, writers) CPU µs per event: the daemon's since mark, the
    writers' of the last run_writers()."""
    return ((proc_cpu(d.pid) - mark) * 1e6 / n, b.writer_cpu * 1e6 / n)


def rss_kib(pid, field="VmRSS"):
    """VmRSS (or RssAnon, RssFile) of pid, KiB."""
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1])
    raise BenchError("no %s for %d" % (field, pid))


def rss_all(pid):
    """(VmRSS, RssAnon, RssFile) of pid, KiB."""
    got = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k = ln.split(":")[0]
            if k in ("VmRSS", "RssAnon", "RssFile"):
                got[k] = int(ln.split()[1])
    return got["VmRSS"], got["RssAnon"], got["RssFile"]


# ---------------------------------------------------------------------------
# Writers and readers.

def run_writers(b, jobs, timeout=600):
    """Starts one writer process per job (path, mode, first, count[, skew]),
    lets them go together, and returns (seconds from the first start to the
    last end, [per-writer (t0, t1)]).  b.writer_cpu: the writers' CPU
    seconds, from go to done."""
    procs = []
    b.writer_cpu = 0.0
    try:
        for j in jobs:
            p = b.popen([PY, ME, "--worker", "write"] + [str(x) for x in j],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
            procs.append(p)
        for p in procs:
            if p.stdout.readline() != b"ready\n":
                raise BenchError("writer did not start: %s" %
                                 p.stderr.read().decode(errors="replace")[-300:])
        for p in procs:
            p.stdin.write(b"go\n")
            p.stdin.flush()
        times = []
        for p in procs:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BenchError("writer timed out")
            if p.returncode != 0:
                raise BenchError("writer failed: %s" %
                                 err.decode(errors="replace").strip()[-300:])
            t0, t1, cpu = map(float, out.split())
            times.append((t0, t1))
            b.writer_cpu += cpu
        return max(t[1] for t in times) - min(t[0] for t in times), times
    finally:
        for p in procs:
            b.kill(p)


def start_readers(b, path, count, n, timeout=120, rsize=None, count_only=False):
    """n livereader processes on path (or "-" with stdin pipes); returns them
    once every one has opened its file."""
    procs = []
    for _ in range(n):
        kw = {}
        if path == "-":
            kw["stdin"] = subprocess.PIPE
        procs.append(b.popen([BIN["livereader"], "--timeout", str(timeout), "--linger"] +
                             (["--read", str(rsize)] if rsize else []) +
                             (["--count"] if count_only else []) +
                             [path, str(count)], stdout=subprocess.PIPE, **kw))
    for p in procs:
        ln = p.stdout.readline()
        if ln != b"ready\n":
            raise BenchError("live reader did not start: %r" % ln)
    return procs


def collect_readers(b, procs, timeout=120, expect=None):
    """Waits for the readers; checks each got every event (expect of them,
    when given); returns the merged latency histogram {µs: count}."""
    hist = {}
    errors = []
    reads = [0]
    deadline = time.monotonic() + timeout
    # the readers linger once done: none exits while others still read
    outs = []
    for p in procs:
        ln = readline_timeout(p, max(0.0, deadline - time.monotonic()))
        lines = [ln.decode(errors="replace").rstrip("\n")]
        if lines[0].startswith("ok"):
            # written with the first, in one flush (and select() cannot
            # see what the first readline() has buffered already)
            lines.append(p.stdout.readline().decode(errors="replace").rstrip("\n"))
        outs.append(lines)
    for p in procs:
        b.kill(p)
    for lines in outs:
        if not lines[0]:
            errors.append("a reader timed out or died")
            continue
        if not lines[0].startswith("ok") or len(lines) < 2:
            errors.append(lines[0])
            continue
        if expect is not None and lines[0].split()[1] != str(expect):
            errors.append("%s of %d events" % (lines[0], expect))
            continue
        reads[0] += int(lines[0].split()[2])
        for kv in lines[1].split()[1:]:
            k, v = kv.split(":")
            hist[int(k)] = hist.get(int(k), 0) + int(v)
    if errors:
        raise BenchError("%d of %d readers failed: %s" % (len(errors), len(procs), errors[0]))
    b.last_reads = reads[0]
    return hist


def readline_timeout(p, secs):
    """A line of p's stdout, or b"" after secs."""
    import select
    r, _, _ = select.select([p.stdout], [], [], secs)
    return p.stdout.readline() if r else b""


def percentile(hist, q):
    if not hist:                  # readers that take no latencies (--count)
        return float("nan")
    total = sum(hist.values())
    rank = max(1, int(round(q * total)))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return float(k)
    return float(max(hist))


def latency_run(b, reader_path, count, open_writer, interval=0.0003):
    """One blocked reader, count events written one at a time with a pause;
    returns (median µs, p99 µs)."""
    procs = start_readers(b, reader_path, count, 1, timeout=60 + count // 500)
    r = procs[0]
    wfd = None
    try:
        time.sleep(0.2)                     # the reader is blocked in read()
        wfd = open_writer(r)
        w = os.write
        for i in range(count):
            w(wfd, lat_line(i))
            time.sleep(interval)
        hist = collect_readers(b, procs, timeout=60)
    finally:
        if wfd is not None:
            os.close(wfd)
        b.kill(r)
    return percentile(hist, 0.5), percentile(hist, 0.99)


def pipe_baseline(b, run, count):
    """write() -> a blocked reader over pipe(2), same processes: cached per run."""
    key = ("pipe", run)
    if key not in b.cache:
        def opener(r):
            return os.dup(r.stdin.fileno())
        b.cache[key] = latency_run(b, "-", count, opener)
    return b.cache[key]


def nullfs_live_floor(b, run, count):
    """write() to nullfs -> a blocked reader of nullfs's live file (two FUSE
    round trips and nothing else): cached per run."""
    key = ("nlive", run)
    if key not in b.cache:
        nf = nullfs(b, "nullfs-live")
        try:
            f = nf.p("file")
            b.cache[key] = latency_run(b, nf.p("live"), count,
                                       lambda r: os.open(f, os.O_WRONLY | os.O_APPEND))
            nf.check()
        finally:
            nf.stop()
    return b.cache[key]


def ldb_floor(b, run, events):
    """ldbfloor ingest + scan of `events` 100-byte events, batches of 655:
    cached per (run, events)."""
    key = ("ldb", run, events)
    if key not in b.cache:
        d = b.fresh("ldbfloor")
        try:
            out = subprocess.run([BIN["ldbfloor"], "--dir", os.path.join(d, "db"),
                                  "--events", str(events), "--batch", str(CHUNK_LINES)],
                                 capture_output=True, text=True, timeout=900)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        if out.returncode != 0:
            raise BenchError("ldbfloor failed: " + out.stderr.strip())
        res = {}
        for ln in out.stdout.splitlines():
            kind, *kvs = ln.split()
            res[kind] = {k: float(v) for k, v in (kv.split("=") for kv in kvs)}
        b.cache[key] = res
    return b.cache[key]


def timed(argv, **kw):
    t = time.perf_counter()
    r = subprocess.run(argv, **kw)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise BenchError("%s exited %d" % (" ".join(argv[:2]), r.returncode))
    return dt, r


C_ENV = dict(os.environ, LC_ALL="C")

# ---------------------------------------------------------------------------
# Rows of the table.


class Row:
    def __init__(self, num, name, unit, kind=None, target=None, floor_name="",
                 floor_unit=None, fmt=None, ref=False):
        self.num, self.name, self.unit = num, name, unit
        self.kind, self.target = kind, target   # kind: "ratio>=", "<=", ">="
        self.floor_name, self.floor_unit = floor_name, floor_unit or unit
        self.values, self.floors = [], []
        self.error = None
        self.ref = ref
        self.note = ""

    def add(self, value, floor=None):
        self.values.append(value)
        if floor is not None:
            self.floors.append(floor)

    @property
    def value(self):
        return statistics.median(self.values) if self.values else None

    @property
    def floor(self):
        return statistics.median(self.floors) if self.floors else None

    @property
    def ratio(self):
        if self.value is None or not self.floor:
            return None
        return self.value / self.floor

    def met(self):
        if self.kind is None or self.value is None:
            return None
        if self.kind == "ratio>=":
            return self.ratio is not None and self.ratio >= self.target
        if self.kind == "<=":
            return self.value <= self.target
        return self.value >= self.target

    def target_text(self):
        if self.kind is None:
            return "-"
        if self.kind == "ratio>=":
            return ">= %gx floor" % self.target
        sign = "<=" if self.kind == "<=" else ">="
        return "%s %s" % (sign, fmt_value(self.target, self.unit))


def fmt_value(v, unit):
    if v is None:
        return "-"
    if unit in ("ev/s", "writes/s", "events/s"):
        return "{:,.0f} {}".format(v, unit)
    if unit == "MB/s":
        return "%.1f MB/s" % v
    if unit == "us":
        return "%.0f us" % v if v >= 10 else "%.1f us" % v
    if unit == "ms":
        return "%.1f ms" % v if v < 100 else "%.0f ms" % v
    if unit == "s":
        return "%.2f s" % v
    if unit == "MiB":
        return "%.1f MiB" % v
    return "%g %s" % (v, unit)


def print_table(rows, out=sys.stdout):
    hdr = ["#", "workload", "figure", "floor", "floor figure", "ratio", "target", "result"]
    body = []
    for r in rows:
        if r.error:
            body.append([r.num, r.name, "ERROR", r.floor_name, "-", "-",
                         r.target_text(), "ERROR: " + r.error[:200]])
            continue
        m = r.met()
        ratio = r.ratio
        body.append([r.num, r.name, fmt_value(r.value, r.unit), r.floor_name or "-",
                     fmt_value(r.floor, r.floor_unit) if r.floor_name else "-",
                     "%.2f" % ratio if ratio is not None else "-",
                     r.target_text(),
                     "-" if m is None else ("met" if m else "MISSED")])
    widths = [max(len(str(x[i])) for x in body + [hdr]) for i in range(len(hdr))]
    def fmt(cols):
        return "  ".join(str(c).ljust(widths[i]) if i not in (2, 4, 5) else
                         str(c).rjust(widths[i]) for i, c in enumerate(cols)).rstrip()
    out.write(fmt(hdr) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for x in body:
        out.write(fmt(x) + "\n")
    out.flush()


def n_(full, quick, b):
    return quick if b.quick else full


# ---------------------------------------------------------------------------
# The workloads.  Each takes the Bench and returns its rows.  A workload
# runs its floor and itself in the same run, interleaved, R times.

def w_writes(b):
    """1, 2: one writer and eight writers, one write() per event."""
    n = n_(200000, 20000, b)
    r1 = Row("1", "1 writer, 1 write()/event, %s events" % f"{n:,}", "writes/s",
             "ratio>=", 0.8, "nullfs, same writer")
    r1p = Row("1r", "  ref: plain file on /var/tmp, same writer", "writes/s", ref=True)
    r2 = Row("2", "8 writers (own device each), 1 write()/event", "writes/s",
             "ratio>=", 1.5, "workload 1")
    r2n = Row("2r", "  ref: nullfs, 8 writers (own file each)", "writes/s",
              floor_name="nullfs, 1 writer", ref=True)
    per = n // 8
    nf = nullfs(b, extra=["--files", "8"])
    node = odofs(b, "w1")
    try:
        # warm-up, untimed: the first writes after a mount are slower
        os.mkdir(node.p("warm"))
        run_writers(b, [(nf.p("file"), "each", 0, 5000)])
        run_writers(b, [(node.p("warm", "events"), "each", 0, 5000)])
        for run in range(b.runs):
            # the floors and the workloads, interleaved
            c0 = cpu_mark(nf)
            t, _ = run_writers(b, [(nf.p("file"), "each", 0, n)])
            null1, cn1 = n / t, cpu_per(b, nf, c0, n)
            dev = "w1-%d" % run
            os.mkdir(node.p(dev))
            c0 = cpu_mark(node)
            t, _ = run_writers(b, [(node.p(dev, "events"), "each", 0, n)])
            w1, co1 = n / t, cpu_per(b, node, c0, n)
            r1.add(w1, null1)
            plain = b.fresh("plain")
            t, _ = run_writers(b, [(os.path.join(plain, "f"), "plain", 0, n)])
            r1p.add(n / t)
            shutil.rmtree(plain)
            if digest_file(node.p(dev, "events")) != digest_lines(0, n):
                raise BenchError("workload 1: events differ from what was written")
            jobs = []
            for i in range(8):
                d = "w2-%d-%d" % (run, i)
                os.mkdir(node.p(d))
                jobs.append((node.p(d, "events"), "each", i * per, per))
            c0 = cpu_mark(node)
            t, _ = run_writers(b, jobs)
            r2.add(8 * per / t, w1)
            co8 = cpu_per(b, node, c0, 8 * per)
            for i in range(8):
                if digest_file(jobs[i][0]) != digest_lines(i * per, per):
                    raise BenchError("workload 2: events of writer %d differ" % i)
            files = [nf.p("file")] + [nf.p("file%d" % i) for i in range(1, 8)]
            c0 = cpu_mark(nf)
            t, _ = run_writers(b, [(files[i], "each", 0, per) for i in range(8)])
            r2n.add(8 * per / t, null1)
            cn8 = cpu_per(b, nf, c0, 8 * per)
            r1.note = ("CPU per write (daemon + writer): odofs %.1f + %.1f us, "
                       "nullfs %.1f + %.1f us" % (co1 + cn1))
            r2.note = ("CPU per write (daemon + writers): odofs %.1f + %.1f us, "
                       "nullfs %.1f + %.1f us" % (co8 + cn8))
            nf.check()
            node.check()
    finally:
        nf.stop()
        node.stop()
    return [r1, r1p, r2, r2n]


def w_bulk(b):
    """3: bulk 64 KiB writes of whole lines vs LevelDB batch ingest."""
    total = n_(1 << 30, 32 * MiB, b)
    nlines = total // LINE
    r3 = Row("3", "bulk: 64 KiB writes of whole lines, %d MiB" % (total // MiB), "MB/s",
             "ratio>=", 0.5, "ldbfloor ingest, 655/batch")
    for run in range(b.runs):
        fl = ldb_floor(b, ("bulk", run), nlines)
        node = odofs(b, "w3")
        try:
            os.mkdir(node.p("bulk"))
            t, _ = run_writers(b, [(node.p("bulk", "events"), "bulk", 0, nlines)])
            ev = node.p("bulk", "events")
            size = os.stat(ev).st_size
            if size != nlines * LINE:
                raise BenchError("workload 3: events holds %d bytes, %d written" %
                                 (size, nlines * LINE))
            # the first, a middle and the last chunk are the ones written
            chunks = pool()
            nch = (nlines + CHUNK_LINES - 1) // CHUNK_LINES
            with open(ev, "rb", buffering=0) as f:
                for j in (0, nch // 2, nch - 2):
                    if j < 0:
                        continue
                    f.seek(j * CHUNK_LINES * LINE)
                    if f.read(CHUNK_LINES * LINE) != chunks[j % POOL_CHUNKS]:
                        raise BenchError("workload 3: chunk %d differs" % j)
            r3.add(nlines * LINE / t / 1e6, fl["ingest"]["mbps"])
            node.check()
        finally:
            node.stop()
            shutil.rmtree(node.data, ignore_errors=True)
    return [r3]


def w_read(b):
    """4: cat events, tail -n 10."""
    n = n_(1000000, 50000, b)
    r4 = Row("4", "cat events, %s events (%d MB)" % (f"{n:,}", n * LINE // 1000000),
             "MB/s", "ratio>=", 0.5, "ldbfloor scan")
    r4n = Row("4r", "  ref: cat of a nullfs file, same size", "MB/s",
              floor_name="", ref=True)
    r4t = Row("4t", "tail -n 10 events", "ms", "<=", 10.0, "tail of nullfs file")
    nf = nullfs(b, extra=["--size", str(n * LINE)])
    node = odofs(b, "w4")
    try:
        os.mkdir(node.p("r"))
        ev = node.p("r", "events")
        run_writers(b, [(ev, "bulk", 0, n)])
        want = digest_bulk(n)
        if digest_file(ev) != want:
            raise BenchError("workload 4: events differ from what was written")
        tail_want = b"".join(list(bulk_chunks(n)))[-10 * LINE:] if n <= 100000 else None
        for run in range(b.runs):
            fl = ldb_floor(b, run, n)
            t, _ = timed(["cat", nf.p("file")], stdout=subprocess.DEVNULL)
            r4n.add(n * LINE / t / 1e6)
            t, _ = timed(["cat", ev], stdout=subprocess.DEVNULL)
            r4.add(n * LINE / t / 1e6, fl["scan"]["mbps"])
            ts, tn = [], []
            for _ in range(5):
                dt, _ = timed(["tail", "-n", "10", nf.p("file")],
                              stdout=subprocess.DEVNULL, env=C_ENV)
                tn.append(dt * 1000)
                dt, out = timed(["tail", "-n", "10", ev], stdout=subprocess.PIPE, env=C_ENV)
                ts.append(dt * 1000)
                if out.stdout.count(b"\n") != 10 or (tail_want and out.stdout != tail_want):
                    raise BenchError("workload 4: tail -n 10 gave the wrong lines")
            r4t.add(statistics.median(ts), statistics.median(tn))
        nf.check()
        node.check()
    finally:
        nf.stop()
        node.stop()
    return [r4, r4n, r4t]


def ldb_sync(b, threads, n):
    """ldbfloor --sync-threads: events/s of `threads` threads each doing one
    put and one store_sync() per event (the storage floor of workload 5)."""
    d = b.fresh("ldbsync")
    try:
        out = subprocess.run([BIN["ldbfloor"], "--dir", os.path.join(d, "db"),
                              "--sync-threads", str(threads), "--events", str(n)],
                             capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if out.returncode != 0:
        raise BenchError("ldbfloor failed: " + out.stderr.strip())
    return float(re.search(r"eps=(\S+)", out.stdout).group(1))


def w_sync(b):
    """5: fdatasync() after every event: 8 writers vs 1 (group commit)."""
    n1 = n_(1000, 200, b)
    per = n_(500, 100, b)
    r5 = Row("5", "8 writers, fdatasync() after every event", "ev/s",
             "ratio>=", 4.0, "1 writer, same")
    r5r = Row("5r", "  ref: plain file, 1 writer, fdatasync() each", "ev/s", ref=True)
    r5p = Row("5p", "  ref: plain files, 8 writers (own file each), same", "ev/s",
              floor_name="plain file, 1 writer", ref=True)
    r5l = Row("5l", "  ref: LevelDB alone, 8 threads put + sync each", "ev/s",
              floor_name="LevelDB alone, 1 thread", ref=True)
    node = odofs(b, "w5")
    try:
        for run in range(b.runs):
            d = "s1-%d" % run
            os.mkdir(node.p(d))
            t, _ = run_writers(b, [(node.p(d, "events"), "sync", 0, n1)])
            one = n1 / t
            jobs = []
            for i in range(8):
                d = "s8-%d-%d" % (run, i)
                os.mkdir(node.p(d))
                jobs.append((node.p(d, "events"), "sync", 0, per))
            t, _ = run_writers(b, jobs)
            r5.add(8 * per / t, one)
            for j in jobs:
                if digest_file(j[0]) != digest_lines(0, per):
                    raise BenchError("workload 5: events differ")
            plain = b.fresh("plain")
            t, _ = run_writers(b, [(os.path.join(plain, "f"), "plainsync", 0, n1)])
            p1 = n1 / t
            r5r.add(p1)
            t, _ = run_writers(b, [(os.path.join(plain, "f%d" % i), "plainsync", 0, per)
                                   for i in range(8)])
            r5p.add(8 * per / t, p1)
            shutil.rmtree(plain)
            r5l.add(ldb_sync(b, 8, per), ldb_sync(b, 1, n1))
        node.check()
    finally:
        node.stop()
    return [r5, r5r, r5p, r5l]


def w_live_local(b):
    """6: write() -> a blocked live reader, same node."""
    n = n_(10000, 1000, b)
    r6 = Row("6a", "write() -> blocked live reader: median", "us", "<=", 100.0,
             "nullfs live, same")
    r6p = Row("6b", "write() -> blocked live reader: p99", "us", "<=", 1000.0,
              "nullfs live, same")
    r6r = Row("6r", "  ref: pipe(2), same processes: median", "us", ref=True)
    r6s = Row("6s", "  ref: pipe(2), same processes: p99", "us", ref=True)
    node = odofs(b, "w6")
    try:
        for run in range(b.runs):
            nm, np_ = nullfs_live_floor(b, run, n)
            pm, pp = pipe_baseline(b, run, n)
            d = "l-%d" % run
            os.mkdir(node.p(d))
            ev = node.p(d, "events")
            m, p = latency_run(b, node.p(d, "live"), n,
                               lambda r: os.open(ev, os.O_WRONLY | os.O_APPEND))
            r6.add(m, nm)
            r6p.add(p, np_)
            r6r.add(pm)
            r6s.add(pp)
            node.check()
    finally:
        node.stop()
    return [r6, r6p, r6r, r6s]


def fanout_run(b, live, events, readers, rate, secs, daemon=None, rsize=None):
    """`readers` livereader processes on live; one write() per event to
    events on a schedule of `rate` a second for `secs`; then the end
    marker.  Checks every reader got every event; returns (median µs,
    p99 µs, events/s the writer achieved, CPU µs per read that gave data:
    the daemon's, the readers')."""
    procs = start_readers(b, live, 0, readers, timeout=300, rsize=rsize)
    fd = None
    cpu_d0, cpu_r0 = proc_cpu(daemon.pid), children_cpu()
    try:
        time.sleep(0.5)               # every reader is parked
        fd = os.open(events, os.O_WRONLY | os.O_APPEND)
        w = os.write
        mono = time.monotonic_ns
        t0 = mono()
        stop = t0 + int(secs * 1e9)
        sent = 0
        # a writer that falls behind catches up, and stops at the end
        while True:
            now = mono()
            if now >= stop:
                break
            due = (now - t0) * rate // 1000000000
            if sent >= due:
                time.sleep(0.00005)
                continue
            while sent < due and mono() < stop:
                w(fd, lat_line(sent))
                sent += 1
        achieved = sent / ((mono() - t0) / 1e9)
        w(fd, lat_line(sent, end=True))
        hist = collect_readers(b, procs, timeout=300, expect=sent)
        reads = max(1, b.last_reads)
        cpu = ((proc_cpu(daemon.pid) - cpu_d0) * 1e6 / reads,
               (children_cpu() - cpu_r0) * 1e6 / reads)
    finally:
        if fd is not None:
            os.close(fd)
        for p in procs:
            b.kill(p)
    return percentile(hist, 0.5), percentile(hist, 0.99), achieved, cpu


def quiet_pipes(d, readers, timeout=30):
    """Waits until d's live readers have taken everything written: none is
    behind, and all `readers` are parked again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (metric(d, "odofs_live_readers_behind") == 0 and
                metric(d, "odofs_live_parked_reads") == readers):
            return
        time.sleep(0.01)
    raise BenchError("live readers did not settle")


def writer_turn(fd, seq, secs):
    """One writer's turn: latency events from seq on, one write() each, to
    fd as fast as they go for secs.  Returns (the next seq, events/s)."""
    w = os.write
    mono = time.monotonic_ns
    n = seq
    t0 = mono()
    stop = t0 + int(secs * 1e9)
    while mono() < stop:
        for _ in range(50):
            w(fd, lat_line(n))
            n += 1
    return n, (n - seq) / ((mono() - t0) / 1e9)


def alone_vs_readers(b, node, d, readers, secs, turns):
    """7a/7b: one writer as fast as it goes, in `turns` turns each way of
    secs / turns, alternately (ABBA) to device d-a (no reader) and to d-m
    (`readers` blocked live readers as cheap as cat).  After a turn with
    the readers, they settle (none is behind, all are parked again), so a
    turn alone never pays for their backlog.  Turns side by side share the
    machine's drift, and the medians of the turns' rates leave out the
    turns a noisy neighbour spoiled.  Checks every reader got every
    event; returns (median events/s alone, median with the readers)."""
    os.mkdir(node.p(d + "-a"))
    os.mkdir(node.p(d + "-m"))
    procs = start_readers(b, node.p(d + "-m", "live"), 0, readers, timeout=300,
                          count_only=True)
    fds = {}
    sent = {"a": 0, "m": 0}
    rates = {"a": [], "m": []}
    try:
        for k in ("a", "m"):
            fds[k] = os.open(node.p("%s-%s" % (d, k), "events"),
                             os.O_WRONLY | os.O_APPEND)
        quiet_pipes(node, readers)
        for turn in range(2 * turns):
            k = "am"[turn % 2] if (turn // 2) % 2 == 0 else "ma"[turn % 2]
            sent[k], rate = writer_turn(fds[k], sent[k], secs / turns)
            rates[k].append(rate)
            if k == "m":
                quiet_pipes(node, readers)
        os.write(fds["m"], lat_line(sent["m"], end=True))
        collect_readers(b, procs, timeout=300, expect=sent["m"])
    finally:
        for fd in fds.values():
            os.close(fd)
        for p in procs:
            b.kill(p)
    return statistics.median(rates["a"]), statistics.median(rates["m"])


def w_fanout(b):
    """7: a writer as fast as it goes alone and with 200 blocked live
    readers, side by side; then 200 live readers at 10,000 events/s."""
    readers = 200
    rate = 10000
    secs = n_(3.0, 1.0, b)
    r7a = Row("7a", "1 writer as fast as it goes, alone (median of turns)", "ev/s", ref=True)
    r7b = Row("7b", "  same, turns between, %d blocked live readers (cat)" % readers, "ev/s",
              "ratio>=", 0.8, "7a: the writer alone")
    r7 = Row("7", "%d live readers, %s ev/s for %g s: p99" % (readers, f"{rate:,}", secs),
             "us", "<=", 50000.0, "nullfs live, same")
    r7m = Row("7m", "  same: median", "us", floor_name="nullfs live, same", ref=True)
    r7w = Row("7w", "  same: events/s the writer achieved", "ev/s", ">=", 0.95 * rate,
              "nullfs live, same")
    r7c = Row("7c", "  same: CPU per read that gave data (all)", "us",
              floor_name="nullfs live, same", ref=True)
    node = odofs(b, "w7")
    try:
        for run in range(b.runs):
            alone, with_readers = alone_vs_readers(b, node, "m-%d" % run, readers,
                                                   n_(3.0, 2.0, b), n_(12, 8, b))
            r7a.add(alone)
            r7b.add(with_readers, alone)
            nf = nullfs(b, "nullfs-fan")
            try:
                fm, fp, fa, fc = fanout_run(b, nf.p("live"), nf.p("file"), readers,
                                            rate, secs, nf)
                nf.check()
            finally:
                nf.stop()
            d = "f-%d" % run
            os.mkdir(node.p(d))
            m, p, a, c = fanout_run(b, node.p(d, "live"), node.p(d, "events"), readers,
                                    rate, secs, node)
            r7c.add(c[0] + c[1], fc[0] + fc[1])
            r7.note = ("CPU per read that gave data (daemon + readers): odofs %.0f + %.0f us, "
                       "nullfs %.0f + %.0f us" % (c[0], c[1], fc[0], fc[1]))
            r7.add(p, fp)
            r7m.add(m, fm)
            r7w.add(a, fa)
            if alone < rate:
                r7w.note = ("the writer alone (7a) went %s ev/s in this run: %s ev/s "
                            "was beyond it even without readers"
                            % (f"{alone:,.0f}", f"{rate:,}"))
            node.check()
    finally:
        node.stop()
    return [r7a, r7b, r7, r7m, r7w, r7c]


def start_pair(b, a_name="rep-a", b_name="rep-b"):
    """Two peered nodes over mutual TLS; B dials A."""
    b.gen_certs([a_name, b_name])
    pa, pb = free_port(), free_port()
    A = odofs(b, a_name, extra=peer_args(b, a_name, pa))
    A.port = pa
    B = odofs(b, b_name, extra=peer_args(b, b_name, pb, seeds=[pa]))
    wait_for(lambda: a_name in active_peers(B) and b_name in active_peers(A),
             20, "peers %s and %s to be active" % (a_name, b_name))
    return A, B


def wait_replica(B, dev, timeout=20):
    wait_for(lambda: os.path.isdir(B.p(dev)), timeout, "the replica of " + dev)


def w_replication(b):
    """8, 9: replication A -> B of bulk appends; write on A -> live reader on B."""
    n = n_(1000000, 50000, b)
    lat_n = n_(10000, 1000, b)
    r8 = Row("8", "replication A->B over TLS, %s events in bulk" % f"{n:,}", "ev/s",
             ">=", 350000.0, "ldbfloor ingest", floor_unit="ev/s")
    r8a = Row("8r", "  ref: A's ingest, same run (bulk writes returned)", "ev/s", ref=True)
    r9 = Row("9a", "write() on A -> live reader on B: median", "us", "<=", 250.0,
             "nullfs live, 1 node")
    r9p = Row("9b", "write() on A -> live reader on B: p99", "us", "<=", 2000.0,
              "nullfs live, 1 node")
    A, B = start_pair(b)
    try:
        want = digest_bulk(n)
        for run in range(b.runs):
            fl = ldb_floor(b, run, 1000000 if not b.quick else n)
            dev = "rep-%d" % run
            os.mkdir(A.p(dev))
            wait_replica(B, dev)
            bev = B.p(dev, "events")
            total = n * LINE
            # the writer runs in its own process; this one watches B
            p = b.popen([PY, ME, "--worker", "write", A.p(dev, "events"), "bulk", "0", str(n)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                if p.stdout.readline() != b"ready\n":
                    raise BenchError("writer did not start")
                t0 = time.monotonic()
                p.stdin.write(b"go\n")
                p.stdin.flush()
                deadline = t0 + 600
                while os.stat(bev).st_size < total:
                    if time.monotonic() > deadline:
                        raise BenchError("workload 8: B did not catch up")
                    time.sleep(0.002)
                t1 = time.monotonic()
                out, _ = p.communicate(timeout=600)
                w0, w1, _ = map(float, out.split())
            finally:
                b.kill(p)
            if os.stat(bev).st_size != total or digest_file(bev) != want or \
                    digest_file(A.p(dev, "events")) != want:
                raise BenchError("workload 8: B's events differ from A's")
            r8.add(n / (t1 - t0), fl["ingest"]["eps"])
            r8a.add(n / (w1 - w0))
            # 9: a blocked live reader on B, written on A
            pm, pp = nullfs_live_floor(b, run, lat_n)
            ldev = "lat-%d" % run
            os.mkdir(A.p(ldev))
            wait_replica(B, ldev)
            aev = A.p(ldev, "events")
            m, p99 = latency_run(b, B.p(ldev, "live"), lat_n,
                                 lambda r: os.open(aev, os.O_WRONLY | os.O_APPEND))
            r9.add(m, pm)
            r9p.add(p99, pp)
            A.check()
            B.check()
    finally:
        B.stop()
        A.stop()
    return [r8, r8a, r9, r9p]


def w_catchup(b):
    """10: a fresh node catching up from A."""
    n = n_(1000000, 50000, b)
    r10 = Row("10", "fresh node catching up %s events from A" % f"{n:,}", "ev/s",
              ">=", 300000.0, "ldbfloor ingest", floor_unit="ev/s")
    r10s = Row("10r", "  ref: from the fresh node's start, mount and settle included",
               "ev/s", ref=True)
    b.gen_certs(["cu-a"] + ["cu-c%d" % i for i in range(b.runs)])
    pa = free_port()
    A = odofs(b, "cu-a", extra=peer_args(b, "cu-a", pa))
    try:
        os.mkdir(A.p("big"))
        run_writers(b, [(A.p("big", "events"), "bulk", 0, n)])
        want = digest_bulk(n)
        total = n * LINE
        for run in range(b.runs):
            fl = ldb_floor(b, run, 1000000 if not b.quick else n)
            name = "cu-c%d" % run
            t_start = time.monotonic()
            C = odofs(b, name, extra=peer_args(b, name, free_port(), seeds=[pa]))
            try:
                ev = C.p("big", "events")
                t_first, at_first = None, 0
                deadline = time.monotonic() + 600
                while True:
                    try:
                        size = os.stat(ev).st_size
                    except FileNotFoundError:
                        size = -1
                    now = time.monotonic()
                    if size > 0 and t_first is None:
                        t_first, at_first = now, size
                    if size >= total:
                        break
                    if now > deadline:
                        raise BenchError("workload 10: no catch-up")
                    time.sleep(0.002)
                t_done = time.monotonic()
                if digest_file(ev) != want:
                    raise BenchError("workload 10: the fresh node's events differ")
                moved = (total - at_first) / LINE
                if t_done > t_first:
                    r10.add(moved / (t_done - t_first), fl["ingest"]["eps"])
                r10s.add(n / (t_done - t_start))
                C.check()
            finally:
                C.stop()
                shutil.rmtree(C.data, ignore_errors=True)
        A.check()
    finally:
        A.stop()
    return [r10, r10s]


class StallProxy:
    """A TCP proxy on 127.0.0.1 that forwards until stall() and then stops
    reading either side (the connections stay open)."""

    def __init__(self, target_port):
        self.target = target_port
        self.flowing = threading.Event()
        self.flowing.set()
        self.closing = False
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while not self.closing:
                self.flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass

    def stall(self):
        self.flowing.clear()

    def close(self):
        self.closing = True
        self.flowing.set()
        for s in [self.lsock] + self.socks:
            try:
                s.close()
            except OSError:
                pass


def w_memory(b):
    """11: RSS with many events and devices, a stalled reader and peer."""
    ndev = n_(1000, 100, b)
    # quick: 200,000 events (20 MB) were too few for 11f, LevelDB's write
    # buffers were still filling at 2/3 of the load (7.2 - 18.6 MiB read
    # as growth); a million cycle them several times (-0.6 - 1.9 MiB)
    nev = n_(10000000, 1000000, b)
    per = nev // ndev
    allowance = 8 + 2 * 8          # MiB: block cache + 2 write buffers
    r11 = Row("11", "anon RSS growth beyond LevelDB (%d MiB), %s ev in %d devs" %
              (allowance, f"{nev:,}", ndev), "MiB", "<=", 64.0,
              "anon RSS before the load")
    r11f = Row("11f", "  flat: anon RSS after 2/3 of the load -> end of idle", "MiB",
               "<=", 8.0)
    r11p = Row("11r", "  ref: peak VmRSS (with LevelDB's mmapped tables)", "MiB",
               floor_name="VmRSS before the load", ref=True)
    r11q = Row("11q", "  ref: peak RssFile (mmapped table files: page cache)", "MiB",
               ref=True)
    runs = b.runs
    b.gen_certs(["mem-a", "mem-b"])
    for run in range(runs):
        pa = free_port()
        A = odofs(b, "mem-a", extra=peer_args(b, "mem-a", pa))
        proxy = StallProxy(pa)
        B = None
        stall = None
        samples = []
        stop = threading.Event()
        try:
            # B has no listen address: the proxied connection is the only one
            B = odofs(b, "mem-b", extra=peer_args(b, "mem-b", 0, seeds=[proxy.port],
                                                  listen=False))
            wait_for(lambda: "mem-b" in active_peers(A), 20, "B to be active")
            for d in range(ndev):
                os.mkdir(A.p("dev-%d" % d))
            wait_for(lambda: all(os.path.isdir(B.p("dev-%d" % d)) for d in
                                 (0, ndev // 2, ndev - 1)), 60, "B's replicas")
            wait_for(lambda: len([x for x in os.listdir(B.mnt) if x.startswith("dev-")])
                     == ndev, 60, "all of B's replicas")
            stall = b.popen([PY, ME, "--worker", "stall", A.p("dev-0", "live")],
                            stdout=subprocess.PIPE)
            if stall.stdout.readline() != b"ready\n":
                raise BenchError("the stalled reader did not start")
            time.sleep(0.3)
            proxy.stall()
            time.sleep(0.3)
            base_all = rss_all(A.pid)
            base = base_all[1]

            def sample():
                while not stop.is_set():
                    try:
                        samples.append((time.monotonic(),) + rss_all(A.pid))
                    except (OSError, BenchError):
                        return
                    stop.wait(0.2)
            th = threading.Thread(target=sample, daemon=True)
            th.start()
            p = b.popen([PY, ME, "--worker", "loadmany", A.mnt, str(ndev), str(per)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                if p.stdout.readline() != b"ready\n":
                    raise BenchError("loader did not start")
                p.stdin.write(b"go\n")
                p.stdin.flush()
                out, _ = p.communicate(timeout=1800)
                if p.returncode != 0:
                    raise BenchError("loader failed")
                l0, l1 = map(float, out.split())
            finally:
                b.kill(p)
            time.sleep(n_(5.0, 1.5, b))          # idle: does it stay flat?
            stop.set()
            th.join()
            if readline_timeout(stall, 10) != b"stalled\n":
                raise BenchError("the stalled reader got nothing")
            # every device holds its events
            for d in (0, ndev - 1):
                if os.stat(A.p("dev-%d" % d, "events")).st_size != per * LINE:
                    raise BenchError("workload 11: dev-%d is short" % d)
            peak = max(s[2] for s in samples)
            at = l0 + (l1 - l0) * 2 / 3
            mid = [s[2] for s in samples if s[0] <= at]
            r11.add((peak - base) / 1024 - allowance, base / 1024)
            r11f.add((samples[-1][2] - (mid[-1] if mid else base)) / 1024)
            r11p.add(max(s[1] for s in samples) / 1024, base_all[0] / 1024)
            r11q.add(max(s[3] for s in samples) / 1024)
            A.check()
            B.check()
        finally:
            stop.set()
            if stall is not None:
                b.kill(stall)
            if B is not None:
                B.stop()
            A.stop()
            proxy.close()
            shutil.rmtree(A.data, ignore_errors=True)
    return [r11, r11f, r11p, r11q]


def w_ls(b):
    """12: ls -l of a root with many devices, cold."""
    m = n_(100000, 2000, b)
    r12 = Row("12", "ls -l of a root with %s devices (cold)" % f"{m:,}", "s", "<=", 2.0,
              "nullfs readdirplus, same")
    r12p = Row("12r", "  ref: nullfs, plain readdir (a LOOKUP per entry)", "s", ref=True)
    r12w = Row("12w", "  ref: odofs ls -l again (warm dentries)", "s", ref=True)
    data = b.fresh("ls-data")
    node = odofs(b, "w12", data=data)
    try:
        for i in range(m):
            os.mkdir(node.p("d%06d" % i))
        node.check()
    finally:
        node.stop()
    for run in range(b.runs):
        nf = nullfs(b, extra=["--entries", str(m), "--readdirplus"])
        try:
            fl, _ = timed(["ls", "-l", nf.mnt], stdout=subprocess.DEVNULL, env=C_ENV)
        finally:
            nf.stop()
        nf = nullfs(b, extra=["--entries", str(m)])
        try:
            t, _ = timed(["ls", "-l", nf.mnt], stdout=subprocess.DEVNULL, env=C_ENV)
            r12p.add(t)
        finally:
            nf.stop()
        node = odofs(b, "w12", data=data)
        try:
            t, _ = timed(["ls", "-l", node.mnt], stdout=subprocess.DEVNULL, env=C_ENV)
            r12.add(t, fl)
            t, out = timed(["ls", "-l", node.mnt], stdout=subprocess.PIPE, env=C_ENV)
            r12w.add(t)
            n = sum(1 for ln in out.stdout.splitlines() if re.search(rb" d\d{6}$", ln))
            if n != m:
                raise BenchError("workload 12: ls -l listed %d devices of %d" % (n, m))
            node.check()
        finally:
            node.stop()
    return [r12, r12p, r12w]


def mount_metric(mnt, name):
    """One sample of the .metrics of the odofs mounted on mnt, by name and
    labels; 0 when absent."""
    with open(os.path.join(mnt, ".metrics")) as f:
        for line in f:
            if line.startswith(name + " "):
                return int(line.split()[1])
    return 0


def metric(d, name):
    """One sample of daemon d's .metrics (mount_metric())."""
    return mount_metric(d.mnt, name)


def w_mesh(b):
    """13: three nodes in a full mesh with every timer at its default
    (issue 12): A writes 100 events/s; the latency to a live reader on C,
    and whether B or C ever switch upstream while it runs."""
    n = n_(3000, 300, b)
    r13 = Row("13a", "3-node mesh, 100 ev/s on A -> live reader on C: median", "us",
              "<=", 2000.0, "nullfs live, 1 node")
    r13p = Row("13b", "  same: p99", "us", "<=", 20000.0, "nullfs live, 1 node")
    r13s = Row("13s", "  same: upstream switches on B and C meanwhile", "", "<=", 0.0)
    names = ["mesh-a", "mesh-b", "mesh-c"]
    b.gen_certs(names)
    ports = [free_port() for _ in names]
    nodes = []
    try:
        for i, name in enumerate(names):
            d = odofs(b, name, extra=peer_args(b, name, ports[i], seeds=ports[:i]))
            nodes.append(d)
        A, B, C = nodes
        wait_for(lambda: all(len(active_peers(d)) == 2 for d in nodes), 30,
                 "a full mesh of three")
        for run in range(b.runs):
            pm, pp = nullfs_live_floor(b, run, n)
            dev = "mesh-%d" % run
            os.mkdir(A.p(dev))
            for d in (B, C):
                wait_replica(d, dev)

            def follows_a():
                for d in (B, C):
                    with open(d.p(dev, "info")) as f:
                        if json.load(f).get("subscribed_to") != "mesh-a":
                            return False
                return True
            wait_for(follows_a, 30, "B and C following A")
            subs = [metric(d, "odofs_subscriptions_total") for d in (B, C)]
            aev = A.p(dev, "events")
            m, p99 = latency_run(b, C.p(dev, "live"), n,
                                 lambda r: os.open(aev, os.O_WRONLY | os.O_APPEND),
                                 interval=0.01)
            r13.add(m, pm)
            r13p.add(p99, pp)
            r13s.add(sum(metric(d, "odofs_subscriptions_total") for d in (B, C)) -
                     sum(subs))
            for d in nodes:
                d.check()
    finally:
        for d in reversed(nodes):
            d.stop()
    return [r13, r13p, r13s]


def w_quorum(b):
    """14: fsync() of a source's events with durability.replicas = 0, 1, 2
    (issue 15): three nodes over loopback, B and C following A; one event
    and one fsync() at a time.  The floor is the same fsync() with
    replicas = 0 in the same run; 14w is what the replicas' ACK frames cost
    the wire, per event."""
    n = n_(400, 100, b)
    rows = {}
    for k in (0, 1, 2):
        rows[k] = (Row("14%s" % "abc"[k], "fsync() with durability.replicas "
                       "= %d: median" % k, "us", ref=True,
                       floor_name="replicas = 0" if k else ""),
                   Row("14%sp" % "abc"[k], "  same: p99", "us", ref=True,
                       floor_name="replicas = 0" if k else ""))
    r14w = Row("14w", "ACK bytes sent per event (B and C, replicas = 2)",
               "B", ref=True)
    names = ["quorum-a", "quorum-b", "quorum-c"]
    b.gen_certs(names)
    ports = [free_port() for _ in names]
    nodes = []
    try:
        for i, name in enumerate(names):
            extra = peer_args(b, name, ports[i], seeds=ports[:1] if i else ())
            nodes.append(odofs(b, name, extra=extra))
        A, B, C = nodes
        wait_for(lambda: len(active_peers(A)) == 2, 30, "B and C on A")
        A.stop()
        for run in range(b.runs):
            lat = {}
            for k in (0, 1, 2):
                conf = b.path("quorum-%d-%d.conf" % (run, k))
                with open(conf, "w") as f:
                    f.write("durability: { replicas = %d; "
                            "replica_timeout_ms = 10000; };\n" % k)
                A = odofs(b, names[0], data=b.path("quorum-a-data"),
                          extra=["-c", conf] + peer_args(b, names[0], ports[0]))
                nodes[0] = A
                wait_for(lambda: len(active_peers(A)) == 2, 30, "B and C on A")
                dev = "q-%d-%d" % (run, k)
                os.mkdir(A.p(dev))
                with open(A.p(dev, "events"), "ab", buffering=0) as f:
                    f.write(b"first\n")
                for d in (B, C):
                    wait_replica(d, dev)
                acks0 = sum(metric(d, "odofs_ack_bytes_sent_total")
                            for d in (B, C))
                fd = os.open(A.p(dev, "events"), os.O_WRONLY | os.O_APPEND)
                try:
                    t = []
                    for i in range(n):
                        os.write(fd, line(i))
                        t0 = time.perf_counter()
                        os.fdatasync(fd)
                        t.append((time.perf_counter() - t0) * 1e6)
                finally:
                    os.close(fd)
                t.sort()
                lat[k] = (statistics.median(t), t[int(len(t) * 0.99) - 1])
                if k == 2:
                    acks = sum(metric(d, "odofs_ack_bytes_sent_total")
                               for d in (B, C)) - acks0
                    r14w.add(acks / n)
                A.check()
                A.stop()
            for k in (0, 1, 2):
                rows[k][0].add(lat[k][0], lat[0][0] if k else None)
                rows[k][1].add(lat[k][1], lat[0][1] if k else None)
        for d in (B, C):
            d.check()
    finally:
        for d in nodes:
            d.stop()
    return [r for k in (0, 1, 2) for r in rows[k]] + [r14w]


WORKLOADS = [
    ({1, 2}, w_writes),
    ({3}, w_bulk),
    ({4}, w_read),
    ({5}, w_sync),
    ({6}, w_live_local),
    ({7}, w_fanout),
    ({8, 9}, w_replication),
    ({10}, w_catchup),
    ({11}, w_memory),
    ({12}, w_ls),
    ({13}, w_mesh),
    ({14}, w_quorum),
]
NAMES = {1: "one writer", 2: "eight writers", 3: "bulk", 4: "cat/tail", 5: "fdatasync",
         6: "live latency", 7: "200 live readers", 8: "replication",
         9: "replicated live latency", 10: "catch-up", 11: "memory", 12: "ls -l",
         13: "3-node mesh", 14: "quorum fsync"}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def check_build():
    missing = [p for p in BIN.values() if not os.access(p, os.X_OK)]
    if missing:
        print("bench: the build is missing %s\nbench: build it first: "
              "ninja -C %s (or set ODOFS_BUILD to a build directory)" %
              (", ".join(missing), BUILD), file=sys.stderr)
        return False
    for tool in ("fusermount3", "mountpoint", "openssl"):
        if shutil.which(tool) is None:
            print("bench: %s is not installed" % tool, file=sys.stderr)
            return False
    return True


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if a.runs is None:
        a.runs = 1 if a.quick else 3
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    only = set()
    if a.only:
        try:
            only = {int(x) for x in a.only.split(",") if x.strip()}
        except ValueError:
            ap.error("--only takes workload numbers, e.g. --only 1,6")
        if not only <= set(NAMES):
            ap.error("workloads are 1 to %d" % max(NAMES))
    if not check_build():
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    b = Bench(a)
    rows, failed = [], []
    started = time.monotonic()
    print("odofs bench: %s, %d run%s per figure, %d cores, load average %s, in %s" %
          ("quick" if a.quick else "full", a.runs, "" if a.runs == 1 else "s",
           os.cpu_count(), loadavg(), b.base), flush=True)
    try:
        for nums, fn in WORKLOADS:
            if only and not (nums & only):
                continue
            t = time.monotonic()
            try:
                got = fn(b)
            except Exception as e:      # any failure of a workload is its error
                msg = "%s: %s" % (type(e).__name__, e) if not isinstance(e, BenchError) else str(e)
                failed.append((sorted(nums), msg))
                got = []
                for n in sorted(nums):
                    r = Row(str(n), NAMES[n], "")
                    r.error = msg
                    got.append(r)
            finally:
                b.cleanup()
            keep = [r for r in got if not only or int(re.match(r"\d+", r.num).group()) in only]
            rows += keep
            print("  workload %s: %.1f s%s" % (",".join(map(str, sorted(nums))),
                                              time.monotonic() - t,
                                              "  FAILED" if got and got[0].error else ""),
                  file=sys.stderr, flush=True)
    except (KeyboardInterrupt, Interrupted):
        print("bench: interrupted", file=sys.stderr)
        b.cleanup()
        if not a.keep:
            b.remove()
        return 130
    finally:
        b.cleanup()
    print()
    print_table(rows)
    notes = [(r.num, r.note) for r in rows if r.note]
    for num, note in notes:
        print("note %s: %s" % (num, note))
    print("\nload average at the end: %s" % loadavg())
    ngroups = len([1 for nums, _ in WORKLOADS if not only or nums & only])
    print("%d workload group%s in %.0f s%s" %
          (ngroups, "" if ngroups == 1 else "s", time.monotonic() - started,
           "; FAILED: " + "; ".join("%s: %s" % (n, m) for n, m in failed) if failed else ""))
    if a.keep or failed:
        print("bench: kept %s" % b.base)
    else:
        b.remove()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
