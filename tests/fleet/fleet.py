#!/usr/bin/env python3
"""The odofs fleet harness (issue 12): N nodes, each in its own network
namespace on one LAN (a bridge), with mutual TLS, peer exchange and one or
two seeds each; M devices per node appended to at a fixed rate; figures
printed as a table; invariants and issue 12's thresholds checked.

    python3 tests/fleet/fleet.py --nodes 50 --devices 2 --rate 5 \\
        --duration 120 --max-peers 8 [--link-rate BYTES] [--delay-ms N|LO-HI] \\
        [--partition]
    python3 tests/fleet/fleet.py --ci       # 12 nodes, max_peers 4, ~2 min

Exit status 0 when every invariant holds and every threshold is met; 1
otherwise, with one line "fleet: FAIL: ..." per failure; 2 for bad usage
or a machine that cannot run it.  Needs root (namespaces), iproute2 and
fuse3.  See tests/fleet/README.md for what each figure means.
"""
import argparse
import collections
import json
import os
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
import netns           # noqa: E402
import delayproxy      # noqa: E402

ODOFS = os.environ.get("ODOFS_BIN", os.path.join(ROOT, "build", "fs", "odofs"))
PORT = 7400
NET_PREFIX = "10.214"           # netns.py's own tests use 10.213
VIRTUAL_OFFSET = 100            # the delay line's addresses: 10.214.(100+K).i
RUN_PREFIX = "odofs-fleet-"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# issue 12's targets (SPEC §7, §8.2, §8.6)
WIRE_RATIO_MAX = 2.0            # frame bytes in per event byte applied
HEAL_MAX_S = 5.0                # every event everywhere after a heal
LATE_S = 2.0                    # latency: events of the window's last 2 s
                                # are not counted (they may be in flight)


class Fail(Exception):
    pass


def log(msg):
    sys.stdout.write("fleet: %s\n" % msg)
    sys.stdout.flush()


def now():
    return time.monotonic()


# ---------------------------------------------------------------- nodes

class Node:
    """One odofs daemon (odofs -f) in its namespace, with its mount point,
    data directory, configuration and log under the run directory."""

    def __init__(self, run_dir, i, name):
        self.i = i
        self.id = name
        self.mnt = os.path.join(run_dir, name + "-mnt")
        self.data = os.path.join(run_dir, name + "-data")
        self.conf = os.path.join(run_dir, name + ".conf")
        self.log_path = os.path.join(run_dir, "logs", name + ".log")
        self.proc = None
        self.addr = None        # on the LAN
        self.dial = None        # what the others dial: LAN or virtual
        os.makedirs(self.mnt)

    def start(self, wrap, certs, listen, seeds):
        c = certs
        cmd = wrap + [ODOFS, "-f", "--id", self.id, "--data", self.data,
                      "-c", self.conf,
                      "--cert", os.path.join(c, self.id + ".pem"),
                      "--key", os.path.join(c, self.id + ".key"),
                      "--ca", os.path.join(c, "ca.pem"),
                      "--listen", listen]
        for s in seeds:
            cmd += ["--peer", s]
        cmd.append(self.mnt)
        with open(self.log_path, "ab") as f:
            # its own session: a Ctrl-C at the terminal reaches the
            # harness, which stops the daemons in order
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def path(self, *p):
        return os.path.join(self.mnt, *p)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read().decode(errors="replace")

    def metrics(self):
        return parse_metrics(self.read(".metrics"))

    def status(self):
        return json.loads(self.read(".status"))

    def info(self, dev):
        return json.loads(self.read(os.path.join(dev, "info")))

    def cpu_ticks(self):
        """utime + stime of every thread, in clock ticks."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                s = f.read()
        except (OSError, AttributeError):
            return None
        fields = s[s.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def parse_metrics(text):
    """-> (plain {name: value}, heads {device: head},
           peers {peer: {name: value}})."""
    plain, heads, peers = {}, {}, {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, val = line.rpartition(" ")
        try:
            v = int(val)
        except ValueError:
            continue
        b = name.find("{")
        if b < 0:
            plain[name] = v
            continue
        base = name[:b]
        key, _, lab = name[b + 1:-1].partition("=")
        lab = lab.strip('"')
        if base == "odofs_device_head":
            heads[lab] = v
        elif key == "peer":
            peers.setdefault(lab, {})[base] = v
    return plain, heads, peers


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            if line.split()[1].replace("\\040", " ") == path:
                return True
    return False


def mounts_under(d):
    d = os.path.realpath(d) + "/"
    out = []
    with open("/proc/self/mounts") as f:
        for line in f:
            t = line.split()[1].replace("\\040", " ")
            if t.startswith(d):
                out.append(t)
    return out


def unmount(path, dead=False):
    if not is_mounted(path):
        return
    if dead or subprocess.call(["fusermount3", "-u", path],
                               stderr=subprocess.DEVNULL) != 0:
        subprocess.call(["fusermount3", "-uz", path], stderr=subprocess.DEVNULL)


def pid_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def kill_ours(pidfile, run_dir, sig):
    """Signals every process listed in pidfile whose command line names
    run_dir (so a PID reused by something else is never touched)."""
    try:
        with open(pidfile) as f:
            pids = [int(x) for x in f.read().split()]
    except OSError:
        return []
    hit = []
    for pid in pids:
        cl = pid_cmdline(pid)
        if cl is not None and run_dir in cl:
            try:
                os.kill(pid, sig)
                hit.append(pid)
            except OSError:
                pass
    return hit


def reap_stale_runs():
    """Stops what a fleet run killed outright (harness and watchdog both)
    left: its daemons (by the PIDs it listed, checked against their
    command lines), its mounts, its namespaces, its directory.  A run that
    cleaned up after itself and kept its logs (a failure, --keep) left a
    file "cleaned" there: that directory stays for whoever reads it."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        m = re.match(re.escape(RUN_PREFIX) + r"(\d+)-", name)
        if not m:
            continue
        pid = int(m.group(1))
        if os.path.exists("/proc/%d" % pid):
            continue
        d = os.path.join(base, name)
        if os.path.exists(os.path.join(d, "cleaned")):
            continue
        kill_ours(os.path.join(d, "pids"), d, signal.SIGKILL)
        for mnt in mounts_under(d):
            unmount(mnt, dead=True)
        shutil.rmtree(d, ignore_errors=True)
    netns.reap_stale()


# ---------------------------------------------------------------- writer

class Writer(threading.Thread):
    """Appends to every device at `rate` events/s each, round robin, one
    write() per event, each event "<revision> <monotonic ns> xxx...\\n"
    of `size` bytes.  counts[d] is the head device d has on its source."""

    def __init__(self, fds, rate, size):
        super().__init__(daemon=True)
        self.fds = fds
        self.rate = rate
        self.size = size
        self.counts = [0] * len(fds)
        self.errors = 0
        self.last_error = ""
        self.behind = 0         # most events it ever was behind schedule
        self.halt = threading.Event()
        self.t0 = None

    def run(self):
        n = len(self.fds)
        total = self.rate * n
        self.t0 = now()
        k = 0
        while not self.halt.is_set():
            due = int((now() - self.t0) * total)
            self.behind = max(self.behind, due - k)
            while k < due and not self.halt.is_set():
                d = k % n
                head = self.counts[d] + 1
                line = b"%d %d " % (head, time.monotonic_ns())
                line += b"x" * max(0, self.size - 1 - len(line)) + b"\n"
                try:
                    os.write(self.fds[d], line)
                    self.counts[d] = head
                except OSError as ex:
                    self.errors += 1
                    self.last_error = str(ex)
                k += 1
            nxt = self.t0 + (k + 1) / total
            self.halt.wait(min(0.05, max(0.001, nxt - now())))

    def stop(self):
        self.halt.set()
        self.join()
        self.t_stop = now()

    def achieved(self):
        """Events per second actually appended."""
        return sum(self.counts) / max(1e-9, self.t_stop - self.t0)


# ---------------------------------------------------------------- watchdog

def watchdog_main(argv):
    """fleet.py --_watchdog HARNESS_PID DEADLINE RUN_DIR: a process of its
    own (its own session) that, when the harness is past DEADLINE
    (time.time()), SIGKILLs the harness's daemons (listed in RUN_DIR/pids),
    lazily unmounts their mounts so that any blocked read returns, and
    SIGTERMs the harness; and that cleans everything up when the harness
    dies without saying "done" on the pipe (kill -9, a crash)."""
    hpid, deadline, run_dir = int(argv[0]), float(argv[1]), argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pidfile = os.path.join(run_dir, "pids")
    buf = b""
    fired = None
    while True:
        r, _, _ = select.select([0], [], [], 1.0)
        if r:
            data = os.read(0, 64)
            if data:
                buf += data
                continue
            if b"done" in buf:
                return 0
            break       # the harness is gone without saying so
        if fired is None and time.time() > deadline:
            sys.stderr.write("fleet: FAIL: hard timeout: the run took longer "
                             "than its limit; stopping every daemon\n")
            fired = time.time()
            with open(os.path.join(run_dir, "timeout"), "w") as f:
                f.write("%.0f\n" % (deadline - float(argv[3])))
            kill_ours(pidfile, run_dir, signal.SIGKILL)
            for m in mounts_under(run_dir):
                unmount(m, dead=True)
            try:
                os.kill(hpid, signal.SIGTERM)
            except OSError:
                pass
        elif fired is not None and time.time() > fired + 30:
            try:
                os.kill(hpid, signal.SIGKILL)
            except OSError:
                pass
            break
    # the harness died: clean up after it
    deadline2 = time.time() + 10
    while os.path.exists("/proc/%d" % hpid) and time.time() < deadline2:
        time.sleep(0.2)
    kill_ours(pidfile, run_dir, signal.SIGKILL)
    time.sleep(0.5)
    for m in mounts_under(run_dir):
        unmount(m, dead=True)
    netns.reap_stale()
    shutil.rmtree(run_dir, ignore_errors=True)
    return 1


# ---------------------------------------------------------------- the run

class Acc:
    """Per (node, peer) counters that restart at 0 on a new connection,
    summed across restarts (a counter that went down counts from 0)."""

    WATCH = ("odofs_peer_wire_bytes_in_total", "odofs_peer_bytes_in_total")

    def __init__(self):
        self.last = {}
        self.total = collections.Counter()      # (node, metric) -> sum
        self.resets = 0

    def feed(self, node, peers):
        for p, d in peers.items():
            for k in self.WATCH:
                v = d.get(k, 0)
                key = (node, p, k)
                last = self.last.get(key)
                if last is None or v < last:
                    inc = v
                    if last is not None:
                        self.resets += 1
                else:
                    inc = v - last
                self.last[key] = v
                self.total[(node, k)] += inc


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


class Fleet:
    def __init__(self, a):
        self.a = a
        self.nodes = []
        self.net = None
        self.lan = None
        self.proxy = None
        self.reader = None
        self.writer = None
        self.watchdog = None
        self.fds = []
        self.failures = []
        self.figures = {}
        self.marks = {}                 # phase -> (time, [log sizes])
        self.acc = Acc()
        self.max_active = 0
        self.max_active_at = None
        self.t0 = None
        self.kept = None
        self.lat_r_to = None

    def timed_out(self):
        rd = getattr(self, "run_dir", None)
        return rd is not None and os.path.exists(os.path.join(rd, "timeout"))

    def deadline_s(self):
        a = self.a
        return a.timeout or (120 + a.nodes * 2 + a.overlay_timeout + a.duration +
                             a.hold_timeout + a.heal_timeout + a.drain_timeout +
                             a.idle_seconds)

    # --- bookkeeping ---

    def fail(self, msg):
        self.failures.append(msg)
        log("FAIL: " + msg)

    def mark(self, phase, snap=None):
        """The start of a phase: the time and every node's log size, so
        that log lines can be placed in phases.  With snap (a scrape), the
        log sizes read with each node's metrics, so that the log and the
        counters put every subscription in the same phase."""
        if snap is None:
            self.marks[phase] = (now(), [n.log_size() for n in self.nodes])
        else:
            self.marks[phase] = (min(v[2] for v in snap.values()),
                                 [snap[n.id][4] for n in self.nodes])

    def add_pid(self, pid):
        with open(os.path.join(self.run_dir, "pids"), "a") as f:
            f.write("%d\n" % pid)

    def check_alive(self):
        dead = [n for n in self.nodes if n.proc is not None and not n.alive()]
        if dead:
            raise Fail("daemon %s exited with status %d (log: %s); last lines:\n%s"
                       % (dead[0].id, dead[0].proc.returncode, dead[0].log_path,
                          "\n".join(dead[0].log_text().splitlines()[-8:])))

    def scrape(self):
        """Every node's .metrics: feeds the counters; returns {node id:
        (plain, heads, time, (frame bytes in, event bytes applied) summed
        over every peer and connection so far)}."""
        out = {}
        w, e = Acc.WATCH
        for n in self.nodes:
            t = now()
            plain, heads, peers = n.metrics()
            size = n.log_size()
            self.acc.feed(n.id, peers)
            out[n.id] = (plain, heads, t,
                         (self.acc.total[(n.id, w)], self.acc.total[(n.id, e)]),
                         size)
        return out

    def link_rx(self):
        """Ethernet bytes every node has received on its LAN port."""
        return {n.id: self.lan.stats(n.id)["rx_bytes"] for n in self.nodes}

    def statuses(self):
        out = {}
        for n in self.nodes:
            st = n.status()
            act = [p["id"] for p in st.get("peers", []) if p.get("state") == "active"]
            if len(act) > self.max_active:
                self.max_active = len(act)
                self.max_active_at = n.id
            out[n.id] = st
        return out

    # --- set-up ---

    def setup(self):
        a = self.a
        self.run_dir = tempfile.mkdtemp(prefix="%s%d-" % (RUN_PREFIX, os.getpid()))
        os.makedirs(os.path.join(self.run_dir, "logs"))
        limit = self.deadline_s()
        self.watchdog = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--_watchdog",
             str(os.getpid()), "%.3f" % (time.time() + limit), self.run_dir,
             "%.3f" % time.time()],
            stdin=subprocess.PIPE, start_new_session=True)
        width = max(2, len(str(a.nodes - 1)))
        names = ["n%0*d" % (width, i) for i in range(a.nodes)]
        # certificates: one CA for the run, one certificate per node
        certs = os.path.join(self.run_dir, "certs")
        subprocess.run(["bash", os.path.join(ROOT, "etc", "gen-certs.sh"), certs]
                       + names, check=True)
        self.certs = certs
        # network: one namespace per node on one bridge, shaped both ways
        self.net = netns.SlowNet(prefix=NET_PREFIX)
        addrs = self.net.lan(names, rate=a.link_rate)
        self.lan = self.net.lans[-1]
        k = self.lan.k
        self.lan_prefix = "%s.%d" % (NET_PREFIX, k)
        for i, name in enumerate(names):
            n = Node(self.run_dir, i, name)
            n.addr = addrs[name]
            n.dial = n.addr
            self.nodes.append(n)
        if a.delay_ms:
            self.setup_delay(k)
        conf = self.config()
        for n in self.nodes:
            with open(n.conf, "w") as f:
                f.write(conf)
        # seeds: every node knows the first one or two, as a fleet
        # installed from one image would
        seeds = [m.dial for m in self.nodes[:a.seeds]]
        t_start = now()
        first = self.nodes[:a.seeds]
        for n in first:
            self.start_node(n, [s for s in seeds if s != n.dial])
        self.wait_mounted(first)
        for n in self.nodes[a.seeds:]:
            self.start_node(n, seeds)
        self.wait_mounted(self.nodes)
        self.figures["start_s"] = now() - t_start
        self.scrape()           # counters from zero before anything flows

    def config(self):
        a = self.a
        peering = ["max_peers = %d;" % a.max_peers]
        sync = []
        for key, val, grp in (("tick_ms", a.tick_ms, peering),
                              ("heartbeat_ms", a.heartbeat_ms, peering),
                              ("evaluate_ms", a.evaluate_ms, sync),
                              ("stall_ms", a.stall_ms, sync)):
            if val is not None:
                grp.append("%s = %d;" % (key, val))
        if a.backoff_ms:
            peering.append("backoff_ms = [ %s ];" % ", ".join(
                str(int(x)) for x in a.backoff_ms.split(",")))
        text = "# odofs fleet harness\npeering: { %s };\n" % " ".join(peering)
        if sync:
            text += "sync: { %s };\n" % " ".join(sync)
        if a.config_extra:
            text += a.config_extra + "\n"
        return text

    def setup_delay(self, k):
        """The delay line (delayproxy.py) in the bridge's namespace, which
        becomes a host on the LAN (.254) owning the whole virtual /24."""
        a = self.a
        virt = "%s.%d" % (NET_PREFIX, VIRTUAL_OFFSET + k)
        sw = self.lan.sw
        netns._run("ip", "-n", sw, "addr", "add", "%s.254/24" % self.lan_prefix,
                   "dev", "br0")
        netns._run("ip", "-n", sw, "route", "add", "local", virt + ".0/24",
                   "dev", "lo")
        for n in self.nodes:
            netns._run("ip", "-n", self.net.ns(n.id), "route", "add",
                       virt + ".0/24", "via", "%s.254" % self.lan_prefix)
            n.dial = "%s.%d" % (virt, n.i + 1)
        cmd = (["nsenter", "--net=/run/netns/" + sw, sys.executable,
                os.path.join(HERE, "delayproxy.py"), "--port", str(PORT),
                "--lan", self.lan_prefix, "--virtual", virt,
                "--delay-ms", a.delay_ms, "--seed", str(a.seed),
                "--tag", self.run_dir])
        self.proxy = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
        self.add_pid(self.proxy.pid)
        line = self.proxy.stdout.readline()
        if line.strip() != "ready":
            raise Fail("the delay line did not start: %r" % line)
        lo, hi = delayproxy.parse_delay(a.delay_ms)
        ds = [delayproxy.link_delay(lo, hi, a.seed, i + 1, j + 1)
              for i in range(len(self.nodes)) for j in range(i + 1, len(self.nodes))]
        self.delays = ds

    def start_node(self, n, seeds):
        listen = ("0.0.0.0:%d" % PORT) if self.a.delay_ms else "%s:%d" % (n.addr, PORT)
        pid = n.start(self.net.wrap(n.id), self.certs, listen,
                      ["%s:%d" % (s, PORT) for s in seeds])
        self.add_pid(pid)

    def wait_mounted(self, ns, timeout=60):
        end = now() + timeout
        for n in ns:
            while not is_mounted(n.mnt):
                if not n.alive():
                    raise Fail("%s did not start (status %s): %s" % (
                        n.id, n.proc.returncode, n.log_text().strip()[-600:]))
                if now() > end:
                    raise Fail("%s not mounted within %d s" % (n.id, timeout))
                time.sleep(0.05)

    def wait_overlay(self):
        """Until every node has an active peer and the overlay (active
        connections) is connected."""
        a = self.a
        t = now()
        end = t + a.overlay_timeout
        while True:
            self.check_alive()
            st = self.statuses()
            g = self.graph(st)
            if all(g[x] for x in g) and connected(g):
                break
            if now() > end:
                lonely = sorted(x for x in g if not g[x])
                raise Fail("the overlay did not form within %d s: %d nodes "
                           "without a peer (%s), %s" % (
                               a.overlay_timeout, len(lonely),
                               ",".join(lonely[:8]),
                               "connected" if connected(g) else "not connected"))
            time.sleep(0.5)
        self.figures["overlay_s"] = now() - t

    def graph(self, st):
        g = {x: set() for x in st}
        for x, s in st.items():
            for p in s.get("peers", []):
                if p.get("state") == "active" and p.get("id") in g:
                    g[x].add(p["id"])
                    g[p["id"]].add(x)
        return g

    # --- the workload ---

    def make_devices(self):
        a = self.a
        self.devices = []
        for n in self.nodes:
            for k in range(a.devices):
                d = "%s-d%d" % (n.id, k)
                os.mkdir(n.path(d))
                self.fds.append(os.open(n.path(d, "events"),
                                        os.O_WRONLY | os.O_APPEND))
                self.devices.append((d, n))
        self.devset = set(d for d, _ in self.devices)

    def run(self):
        a = self.a
        self.setup()
        log("%d nodes up in %.1f s; run directory %s" % (
            a.nodes, self.figures["start_s"], self.run_dir))
        self.wait_overlay()
        log("overlay connected after %.1f s" % self.figures["overlay_s"])
        self.make_devices()
        self.writer = Writer(self.fds, a.rate, a.event_bytes)
        self.mark("t0")
        cpu0 = self.cpu()
        self.writer.start()
        while self.writer.t0 is None:
            time.sleep(0.001)
        self.t0 = self.writer.t0
        t_end = self.t0 + a.duration
        if a.partition:
            t_steady_end = t_end - a.partition_seconds - a.after_heal
        else:
            t_steady_end = t_end

        # 1. every node holds every device
        t_hold = self.wait_hold(min(t_steady_end, self.t0 + a.hold_timeout))
        if t_hold is None:
            self.fail("not every node held every device within %.0f s of the "
                      "first append" % min(t_steady_end - self.t0, a.hold_timeout))
        else:
            self.figures["hold_s"] = t_hold - self.t0
            log("every node holds every device %.1f s after the first append" %
                self.figures["hold_s"])
            self.steady(t_steady_end)
        if a.partition and t_hold is not None:
            self.partition(t_end)
        # 2. appends stop; every node must then hold every event
        while now() < t_end:
            self.check_alive()
            time.sleep(min(1.0, max(0.01, t_end - now())))
            self.statuses()
        self.writer.stop()
        self.mark("stop")
        cpu_run = self.cpu()
        self.figures["busy_cpu"] = self.cpu_rate(cpu0, cpu_run, self.marks["t0"][0],
                                                 self.marks["stop"][0])
        self.drain()
        # 3. invariants at rest
        self.final_checks()
        # 4. idle CPU: nothing appended, nothing read from the mounts
        self.idle()

    def cpu(self):
        return [n.cpu_ticks() for n in self.nodes]

    def cpu_rate(self, c0, c1, t0, t1):
        tot = sum((b or 0) - (x or 0) for x, b in zip(c0, c1)) / CLK_TCK
        return tot / max(1e-9, t1 - t0)

    def holds_all(self, heads):
        return self.devset.issubset(heads)

    def wait_hold(self, limit):
        first = {}
        while True:
            self.check_alive()
            for n in self.nodes:
                if n.id in first:
                    continue
                plain, heads, peers = n.metrics()
                self.acc.feed(n.id, peers)
                if self.holds_all(heads):
                    first[n.id] = now()
            if len(first) == len(self.nodes):
                return max(first.values())
            if now() > limit:
                missing = collections.Counter()
                for n in self.nodes:
                    if n.id not in first:
                        _, heads, _ = n.metrics()
                        missing[n.id] = len(self.devset - set(heads))
                log("nodes still missing devices: %s" % ", ".join(
                    "%s:%d" % kv for kv in sorted(missing.items())[:12]))
                return None
            self.statuses()
            time.sleep(0.3)

    def steady(self, t_end):
        """The steady window [hold, t_end): switches, wire bytes, latency."""
        a = self.a
        t_start = now()
        if t_end - t_start < a.min_half * 2:
            self.fail("the steady window is %.1f s, too short to show zero switches "
                      "(each half must be at least %.0f s, > one sync.evaluate_ms "
                      "pass); give a longer --duration" % (t_end - t_start, a.min_half))
        t_mid = t_start + (t_end - t_start) / 2
        s0 = self.scrape()
        self.mark("hold", s0)
        rx0 = self.link_rx()
        mid = None
        while now() < t_end:
            self.check_alive()
            if mid is None:
                nxt = min(t_mid, t_end)
            elif self.reader is not None and self.lat_r_to is None:
                nxt = t_end - LATE_S
            else:
                nxt = t_end
            time.sleep(min(a.poll, max(0.01, nxt - now())))
            if self.reader is not None and self.lat_r_to is None and \
                    now() >= t_end - LATE_S:
                # events written from here on may still be on their way
                # when the window closes: they are not counted
                self.lat_r_to = self.writer.counts[self.lat_idx]
            if mid is None and now() >= t_mid:
                mid = self.scrape()
                self.mark("mid", mid)
                # the second half is where nothing may switch: the
                # farthest replica now stays the farthest
                self.start_reader(self.statuses())
            else:
                self.scrape()
                self.statuses()
        s1 = self.scrape()
        rx1 = self.link_rx()
        self.figures["link_bytes"] = sum(rx1[x] - rx0[x] for x in rx0)
        if self.reader is not None and self.lat_r_to is None:
            self.lat_r_to = self.writer.counts[self.lat_idx]
        self.mark("steady_end", s1)
        if mid is None:
            mid = s1
            self.mark("mid", s1)
        self.steady_figures(s0, mid, s1)
        if self.reader is not None:
            self.stop_reader()
        else:
            self.fail("live latency not measured: no replica with a path to its "
                      "source in .status")
        self.end_status = self.statuses()

    def start_reader(self, st):
        far = self.farthest(st)
        if far is None:
            return
        dev, node, hops = far
        self.lat_dev, self.lat_node, self.lat_hops = dev, node, hops
        self.lat_idx = [d for d, _ in self.devices].index(dev)
        out = os.path.join(self.run_dir, "logs", "latency.txt")
        self.reader = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "latency.py"),
             node.path(dev, "live"), out], start_new_session=True)
        self.add_pid(self.reader.pid)
        self.lat_out = out
        # every event written once the pipe is open reaches the reader
        # (the harness opens no other live pipe)
        end = now() + 10
        while node.metrics()[0].get("odofs_live_pipes", 0) < 1:
            if now() > end or self.reader.poll() is not None:
                raise Fail("the latency reader did not open %s" % node.path(dev, "live"))
            time.sleep(0.02)
        self.lat_r_from = self.writer.counts[self.lat_idx] + 1

    def farthest(self, st):
        """(device, node, hops) of the replica with the most hops from its
        source, by following every node's upstream (.status)."""
        ups = self.upstreams(st)
        best = None
        byid = {n.id: n for n in self.nodes}
        for d, src in self.devices:
            for n in self.nodes:
                h = hops_of(ups.get(d, {}), n.id, src.id)
                if h is not None and (best is None or h > best[2]):
                    best = (d, byid[n.id], h)
        return best

    def upstreams(self, st):
        """{device: {node: upstream id or None}} from .status."""
        ups = collections.defaultdict(dict)
        for x, s in st.items():
            for sub in s.get("subscriptions", []):
                ups[sub["device"]][x] = sub.get("upstream")
        return ups

    def steady_figures(self, s0, mid, s1):
        a = self.a
        m0, mm, m1 = self.marks["hold"], self.marks["mid"], self.marks["steady_end"]
        # switches: subscriptions started, minus the first of each device
        # on each node (from the log: "following" of a device not followed
        # before)
        firsts = self.first_follows()

        def switches(sa, sb, ta, tb):
            tot = sum(sb[x][0].get("odofs_subscriptions_total", 0) -
                      sa[x][0].get("odofs_subscriptions_total", 0) for x in sa)
            return tot - sum(1 for ts in firsts.values() for t in ts if ta <= t < tb)
        sw_all = switches(s0, s1, m0[0], m1[0])
        sw_2 = switches(mid, s1, mm[0], m1[0])
        self.figures["switches_after_hold"] = sw_all
        self.figures["switches_second_half"] = sw_2
        # the barrier: every node chose its upstreams again in the half
        no_eval = [x for x in mid if s1[x][0].get("odofs_upstream_evaluations_total", 0)
                   <= mid[x][0].get("odofs_upstream_evaluations_total", 0)]
        self.figures["second_half_s"] = m1[0] - mm[0]
        self.figures["evaluations_second_half_min"] = min(
            s1[x][0].get("odofs_upstream_evaluations_total", 0) -
            mid[x][0].get("odofs_upstream_evaluations_total", 0) for x in mid)
        if no_eval:
            self.fail("no upstream evaluation pass on %d node(s) (%s) during the "
                      "steady second half (%.1f s): the window does not show that "
                      "nothing switched" % (len(no_eval), ",".join(no_eval[:6]),
                                            m1[0] - mm[0]))
        if sw_2 != 0:
            seen = self.switch_lines("mid")
            self.fail("%d upstream switch(es) in the steady second half (want 0)%s"
                      % (sw_2, "; in the logs: " + "; ".join(seen[:6]) if seen else ""))
        # wire bytes per event byte, over the whole steady window
        wire = sum(self.acc_at(s1, x, 0) - self.acc_at(s0, x, 0) for x in s0)
        ev = sum(self.acc_at(s1, x, 1) - self.acc_at(s0, x, 1) for x in s0)
        ratios = [(self.acc_at(s1, x, 0) - self.acc_at(s0, x, 0)) /
                  max(1, self.acc_at(s1, x, 1) - self.acc_at(s0, x, 1)) for x in s0]
        self.figures["wire_bytes"] = wire
        self.figures["event_bytes"] = ev
        self.figures["wire_ratio"] = wire / max(1, ev)
        self.figures["wire_ratio_nodes"] = (min(ratios), statistics.median(ratios),
                                            max(ratios))
        want = sum((s1[x][1].get(d, 0) - s0[x][1].get(d, 0)) * a.event_bytes
                   for x in s0 for d, src in self.devices if src.id != x)
        self.figures["event_bytes_expected"] = want
        if self.figures["wire_ratio"] > WIRE_RATIO_MAX:
            self.fail("wire bytes %.2fx the event bytes each node must receive "
                      "(want <= %.1fx)" % (self.figures["wire_ratio"], WIRE_RATIO_MAX))
        # Ethernet bytes on each node's LAN port, for comparison
        self.figures["steady_s"] = m1[0] - m0[0]

    def acc_at(self, snap, node, which):
        return snap[node][3][which]

    def first_follows(self):
        """{(node, device): [monotonic times]} of the first "following"
        line of each device in each node's log, placed in time by the log
        offsets at the marks (to the mark before it)."""
        out = {}
        marks = sorted(self.marks.values(), key=lambda m: m[0])
        for i, n in enumerate(self.nodes):
            seen = set()
            text = n.log_text().encode()
            pos = 0
            for line in text.split(b"\n"):
                start = pos
                pos += len(line) + 1
                m = RE_FOLLOW.search(line.decode(errors="replace"))
                if not m or m.group(1) in seen:
                    continue
                seen.add(m.group(1))
                t = None
                for mt, sizes in marks:
                    if sizes[i] <= start:
                        t = mt
                out[(n.id, m.group(1))] = [t if t is not None else 0.0]
        return out

    def switch_lines(self, phase):
        """"node: device old -> new (rev R)" for every switch the logs put
        in phase."""
        order = sorted(self.marks.items(), key=lambda kv: kv[1][0])
        out = []
        for i, n in enumerate(self.nodes):
            last = {}
            pos = 0
            for line in n.log_text().encode().split(b"\n"):
                start = pos
                pos += len(line) + 1
                m = RE_FOLLOW.search(line.decode(errors="replace"))
                if not m:
                    continue
                ph = "setup"
                for name, (_, sizes) in order:
                    if sizes[i] <= start:
                        ph = name
                d = m.group(1)
                if ph == phase and d in last:
                    out.append("%s: %s %s -> %s (rev %s)" % (
                        n.id, d, last[d], m.group(2), m.group(3)))
                last[d] = m.group(2)
        return out

    def stop_reader(self):
        try:
            self.reader.terminate()
            self.reader.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.reader.kill()
            self.reader.wait()
        seen = {}
        try:
            with open(self.lat_out) as f:
                for line in f:
                    t, rev, sent = (int(x) for x in line.split())
                    if self.lat_r_from <= rev <= self.lat_r_to:
                        seen[rev] = (t - sent) / 1e6
        except (OSError, ValueError):
            pass
        want = self.lat_r_to - self.lat_r_from + 1
        late = max(0, want - len(seen))
        # an event not seen by the end of the window was at least LATE_S
        # late: it counts as infinitely late, so it can only raise p99
        self.figures["latency_ms"] = list(seen.values()) + [float("inf")] * late
        self.figures["latency_late"] = late
        self.reader = None

    # --- partition ---

    def partition(self, t_end):
        a = self.a
        half = self.nodes[len(self.nodes) // 2:]
        self.mark("partition")
        log("partition: %d | %d nodes for %.0f s" % (
            len(self.nodes) - len(half), len(half), a.partition_seconds))
        if self.proxy is not None:
            self.proxy.stdin.write("split %s\n" % " ".join(str(n.i + 1) for n in half))
            self.proxy.stdin.flush()
        else:
            self.lan.split([n.id for n in half])
        t_heal = now() + a.partition_seconds
        while now() < t_heal:
            self.check_alive()
            time.sleep(min(1.0, max(0.01, t_heal - now())))
            self.scrape()
            self.statuses()
        if self.proxy is not None:
            self.proxy.stdin.write("heal\n")
            self.proxy.stdin.flush()
        else:
            self.lan.heal()
        t_h = now()
        want = dict(zip((d for d, _ in self.devices), list(self.writer.counts)))
        self.mark("heal")
        limit = t_h + a.heal_timeout
        behind = None
        done = {}
        while True:
            self.check_alive()
            behind = []
            for n in self.nodes:
                if n.id in done:
                    continue
                _, heads, peers = n.metrics()
                self.acc.feed(n.id, peers)
                b = sum(1 for d, h in want.items() if heads.get(d, 0) < h)
                if b:
                    behind.append((n.id, b))
                else:
                    done[n.id] = now() - t_h
            if not behind:
                self.figures["heal_s"] = max(done.values())
                ts = sorted(done.values())
                self.figures["heal_nodes"] = (ts[0], statistics.median(ts), ts[-1])
                self.figures["heal_last"] = max(done, key=done.get)
                break
            if now() > limit:
                break
            time.sleep(0.1)
        self.mark("healed")
        if "heal_s" not in self.figures:
            self.fail("after the partition healed, %d node(s) still lacked events "
                      "written before the heal after %.0f s (%s)" % (
                          len(behind), a.heal_timeout,
                          ", ".join("%s:%d devices" % x for x in behind[:8])))
        else:
            log("every node holds every event written before the heal %.2f s "
                "after it" % self.figures["heal_s"])
            if self.figures["heal_s"] > HEAL_MAX_S and self.a.heal_report_only:
                log("MISSED, reported only (--heal-report-only): every event "
                    "everywhere %.2f s after the partition healed (want <= %.0f s)"
                    % (self.figures["heal_s"], HEAL_MAX_S))
            elif self.figures["heal_s"] > HEAL_MAX_S:
                self.fail("every event everywhere %.2f s after the partition healed "
                          "(want <= %.0f s)" % (self.figures["heal_s"], HEAL_MAX_S))

    # --- the end ---

    def drain(self):
        want = dict(zip((d for d, _ in self.devices), list(self.writer.counts)))
        self.want = want
        t = now()
        limit = t + self.a.drain_timeout
        while True:
            self.check_alive()
            behind = {}
            for n in self.nodes:
                _, heads, peers = n.metrics()
                self.acc.feed(n.id, peers)
                b = [d for d, h in want.items() if heads.get(d, -1) != h]
                if b:
                    behind[n.id] = (b, heads)
            if not behind:
                self.figures["drain_s"] = now() - t
                break
            if now() > limit:
                x, (b, heads) = sorted(behind.items())[0]
                self.fail("%d node(s) do not hold every event %.0f s after the "
                          "appends stopped; e.g. %s: %d devices behind, %s head %s of %d"
                          % (len(behind), self.a.drain_timeout, x, len(b), b[0],
                             heads.get(b[0]), want[b[0]]))
                break
            time.sleep(0.2)
        self.mark("drained")

    def final_checks(self):
        a = self.a
        st = self.statuses()
        self.final_status = st
        g = self.graph(st)
        act = [sum(1 for p in s.get("peers", []) if p.get("state") == "active")
               for s in st.values()]
        self.figures["active_end"] = (min(act), statistics.median(act), max(act))
        if not connected(g):
            self.fail("the overlay is not connected at the end")
        if self.max_active > a.max_peers:
            self.fail("%s had %d active peers (max_peers %d)" % (
                self.max_active_at, self.max_active, a.max_peers))
        self.log_max_active = self.replay_active()
        lm = max(self.log_max_active.values()) if self.log_max_active else 0
        if lm > a.max_peers:
            worst = max(self.log_max_active, key=self.log_max_active.get)
            self.fail("%s's log shows %d peers active at once (max_peers %d)" % (
                worst, lm, a.max_peers))
        # no cycle in any device's upstream graph; hops as info says
        ups = self.upstreams(st)
        cycles = []
        for d, src in self.devices:
            c = find_cycle(ups.get(d, {}))
            if c:
                cycles.append((d, c))
        self.figures["cycles"] = len(cycles)
        if cycles:
            self.fail("upstream cycle in %d device(s); e.g. %s: %s" % (
                len(cycles), cycles[0][0], " -> ".join(cycles[0][1])))
        no_up = [(x, d) for d, m in ups.items() for x, u in m.items() if not u]
        if no_up:
            self.fail("%d replica(s) follow nobody at rest; e.g. %s on %s" % (
                len(no_up), no_up[0][1], no_up[0][0]))
        hops = [hops_of(ups.get(d, {}), n.id, src.id)
                for d, src in self.devices for n in self.nodes if n is not src]
        hops = [h for h in hops if h is not None]
        self.figures["hops"] = (min(hops), statistics.median(hops), max(hops)) \
            if hops else None
        if getattr(self, "lat_node", None) is not None:
            try:
                self.figures["lat_hops_info_end"] = self.lat_node.info(self.lat_dev).get("hops")
            except (OSError, ValueError):
                pass

    def replay_active(self):
        """The most peers each node's log shows active at once (every state
        change is logged: "peer X (addr): A -> B")."""
        out = {}
        for n in self.nodes:
            cur = best = 0
            for m in RE_STATE.finditer(n.log_text()):
                if m.group(4) == "active" and m.group(3) != "active":
                    cur += 1
                elif m.group(3) == "active" and m.group(4) != "active":
                    cur -= 1
                best = max(best, cur)
            out[n.id] = best
        return out

    def idle(self):
        a = self.a
        c0 = self.cpu()
        t0 = now()
        time.sleep(a.idle_seconds)
        c1 = self.cpu()
        t1 = now()
        self.check_alive()
        self.figures["idle_cpu"] = self.cpu_rate(c0, c1, t0, t1)
        self.figures["idle_s"] = t1 - t0
        self.mark("idle_end")

    def harness_cpu(self):
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    # --- the logs ---

    def log_summary(self):
        """Per phase: upstream switches (a "following" line of a device
        the node followed before), stall moves, disconnections."""
        order = sorted(self.marks.items(), key=lambda kv: kv[1][0])
        phases = collections.OrderedDict(
            [("setup", collections.Counter())] +
            [(name, collections.Counter()) for name, _ in order])
        examples = collections.defaultdict(list)
        for i, n in enumerate(self.nodes):
            seen = set()
            text = n.log_text().encode()
            pos = 0
            for line in text.split(b"\n"):
                start = pos
                pos += len(line) + 1
                ph = "setup"
                for name, (_, sizes) in order:
                    if sizes[i] <= start:
                        ph = name
                s = line.decode(errors="replace")
                c = phases.setdefault(ph, collections.Counter())
                m = RE_FOLLOW.search(s)
                if m:
                    if m.group(1) in seen:
                        c["switches"] += 1
                        if len(examples[ph]) < 4:
                            examples[ph].append("%s: %s -> %s (rev %s)" % (
                                n.id, m.group(1), m.group(2), m.group(3)))
                    seen.add(m.group(1))
                elif "no progress from" in s:
                    c["stall moves"] += 1
                elif "-> lifesupport" in s:
                    c["to lifesupport"] += 1
                elif ": warn: " in s or ": error: " in s:
                    c["warnings"] += 1
                    if len(examples[ph]) < 4:
                        examples[ph].append("%s: %s" % (n.id, s.split(": ", 2)[-1][:100]))
        return phases, examples


PHASES = {"setup": "start-up", "t0": "appends, to hold", "hold": "steady, 1st half",
          "mid": "steady, 2nd half", "steady_end": "(end of steady)",
          "partition": "partition", "heal": "after the heal",
          "healed": "healed, appending", "stop": "appends stopped",
          "drained": "idle", "idle_end": "shutdown"}
RE_FOLLOW = re.compile(r"device (\S+): following (\S+) from revision (\d+)")
RE_STATE = re.compile(r"peer (\S+) \(([^)]*)\): (\w+) -> (\w+)")


def hops_of(ups, node, src):
    """Hops from src to node following ups ({node: upstream}); None when
    the chain breaks or loops."""
    h, cur, seen = 0, node, set()
    while cur != src:
        if cur in seen or cur not in ups or not ups[cur]:
            return None
        seen.add(cur)
        cur = ups[cur]
        h += 1
    return h


def find_cycle(ups):
    for start in ups:
        seen, path, cur = set(), [], start
        while cur is not None and cur in ups:
            if cur in seen:
                return path[path.index(cur):] + [cur]
            seen.add(cur)
            path.append(cur)
            cur = ups[cur]
    return None


def connected(g):
    if not g:
        return True
    seen, todo = set(), [next(iter(g))]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        todo.extend(g.get(v, ()))
    return seen == set(g)


# ---------------------------------------------------------------- output

def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return "%.*f" % (nd, x)
    return str(x)


def report(f):
    a = f.a
    F = f.figures
    ndev = a.nodes * a.devices
    rows = []
    rows.append(("nodes up (daemons started, mounted)", fmt(F.get("start_s")), "s"))
    rows.append(("overlay connected", fmt(F.get("overlay_s")), "s after the mounts"))
    rows.append(("every node holds every device", fmt(F.get("hold_s")),
                 "s after the first append (%d devices on %d nodes)" % (ndev, a.nodes)))
    act = F.get("active_end")
    rows.append(("active peers per node, min/median/max", "%g/%g/%g" % act if act else "-",
                 "peers at the end (max_peers %d)" % a.max_peers))
    lm = max(f.log_max_active.values()) if getattr(f, "log_max_active", None) else None
    rows.append(("most active peers on one node, all run", "%s (%s)" % (
        f.max_active, fmt(lm)), "peers: polled .status (log replay)"))
    h = F.get("hops")
    rows.append(("hops from source, min/median/max", "%g/%g/%g" % h if h else "-",
                 "over every replica at the end"))
    rows.append(("upstream switches after first convergence",
                 fmt(F.get("switches_after_hold")),
                 "subscriptions started, not a device's first (%.0f s)" % F.get("steady_s", 0)))
    rows.append(("upstream switches, steady second half",
                 fmt(F.get("switches_second_half")),
                 "want 0 (%.0f s; >= %s evaluation passes on every node)" % (
                     F.get("second_half_s", 0), F.get("evaluations_second_half_min", "-"))))
    wr = F.get("wire_ratio")
    wn = F.get("wire_ratio_nodes")
    lb = F.get("link_bytes")
    rows.append(("wire bytes per event byte received", fmt(wr, 2),
                 "x, all nodes (want <= %.1f): %s frame bytes in / %s event bytes applied"
                 % (WIRE_RATIO_MAX, fmt(F.get("wire_bytes")), fmt(F.get("event_bytes")))))
    if wn:
        rows.append(("  same, per node min/median/max", "%.2f/%.2f/%.2f" % wn, "x"))
    if lb is not None and F.get("event_bytes"):
        rows.append(("  Ethernet bytes per event byte received", fmt(lb / F["event_bytes"], 2),
                     "x (every node's LAN port: TCP/IP, TLS and frames)"))
    lat = F.get("latency_ms")
    if lat:
        rows.append(("live latency at the farthest node, p50/p99",
                     "%.1f/%.1f" % (pct(lat, 50), pct(lat, 99)),
                     "ms: %s at %s, %s hops (%s at the end), %d events of the 2nd half, "
                     "max %.1f ms%s" % (
                         f.lat_dev, f.lat_node.id, f.lat_hops,
                         F.get("lat_hops_info_end", "?"), len(lat), max(lat),
                         ", %d not seen within %.0f s" % (F["latency_late"], LATE_S)
                         if F.get("latency_late") else "")))
    else:
        rows.append(("live latency at the farthest node", "-", "not measured"))
    if a.partition:
        rows.append(("partition healed: every event everywhere", fmt(F.get("heal_s"), 2),
                     "s after the heal (want <= %.0f; %d|%d nodes cut %.0f s, %s)" % (
                         HEAL_MAX_S, a.nodes - a.nodes // 2, a.nodes // 2,
                         a.partition_seconds,
                         "delay line stalls" if a.delay_ms else "bridge drops packets")))
        hn = F.get("heal_nodes")
        if hn:
            rows.append(("  same, per node min/median/max", "%.2f/%.2f/%.2f" % hn,
                         "s (last: %s)" % F.get("heal_last")))
    rows.append(("appends stopped: every event everywhere", fmt(F.get("drain_s"), 2), "s"))
    rows.append(("daemon CPU while appending", fmt(F.get("busy_cpu"), 3),
                 "CPU s per s, all %d daemons" % a.nodes))
    ic = F.get("idle_cpu")
    rows.append(("idle CPU", fmt(ic, 4), "CPU s per s, all daemons (%s ms/s per node, %.0f s)"
                 % (fmt(ic * 1000 / a.nodes, 2) if ic is not None else "-",
                    F.get("idle_s", 0))))
    if f.writer is not None and getattr(f.writer, "t_stop", None):
        want = a.rate * a.nodes * a.devices
        got = f.writer.achieved()
        rows.append(("appended", "%.0f" % got, "events/s over the run (asked: %g%s)" % (
            want, "; THE WRITER COULD NOT KEEP THE RATE: the machine is saturated"
            if got < 0.97 * want else "")))
    rows.append(("harness CPU", fmt(F.get("harness_cpu"), 1),
                 "CPU s (writer behind schedule at most %s events, %d write errors)" % (
                     f.writer.behind if f.writer else "-",
                     f.writer.errors if f.writer else 0)))
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print()
    print("%-*s  %*s  %s" % (w1, "figure", w2, "value", "unit, notes"))
    print("%s  %s  %s" % ("-" * w1, "-" * w2, "-" * 30))
    for r in rows:
        print("%-*s  %*s  %s" % (w1, r[0], w2, r[1], r[2]))
    print()


def describe(a):
    if a.delay_ms:
        d = "one-way delay %s ms per link via a user-space delay line" % a.delay_ms
    else:
        d = "no added delay (no netem on this kernel; --delay-ms uses a delay line)"
    timers = ", ".join("%s %s" % (k, v) for k, v in (
        ("tick_ms", a.tick_ms), ("heartbeat_ms", a.heartbeat_ms),
        ("evaluate_ms", a.evaluate_ms), ("stall_ms", a.stall_ms),
        ("backoff_ms", a.backoff_ms)) if v is not None) or "every timer at its default"
    return ("%d nodes x %d devices (%d), %g events/s each (%g events/s, %d B each), "
            "%g s of appends; max_peers %d, %d seed(s); link %s; %s; %s%s" % (
                a.nodes, a.devices, a.nodes * a.devices, a.rate,
                a.rate * a.nodes * a.devices, a.event_bytes, a.duration,
                a.max_peers, a.seeds,
                "%d B/s each way per node (tbf)" % a.link_rate if a.link_rate else "unshaped",
                d, timers,
                "; partition %.0f s" % a.partition_seconds if a.partition else ""))


# ---------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="fleet.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs a fleet of odofs nodes in network namespaces and "
        "prints replication figures (issue 12).",
        epilog="Exit 0: every invariant and threshold held; 1: a failure "
        "(one 'fleet: FAIL:' line each); 2: bad usage or this machine "
        "cannot run it.  See tests/fleet/README.md.")
    g = ap.add_argument_group("the fleet")
    g.add_argument("--nodes", type=int, default=50, help="nodes (default 50)")
    g.add_argument("--devices", type=int, default=2, help="devices per node (default 2)")
    g.add_argument("--rate", type=float, default=5,
                   help="events per second per device (default 5)")
    g.add_argument("--event-bytes", type=int, default=100,
                   help="bytes per event, newline included (default 100)")
    g.add_argument("--duration", type=float, default=120,
                   help="seconds of appends, from the first (default 120)")
    g.add_argument("--max-peers", type=int, default=8, help="peering.max_peers (default 8)")
    g.add_argument("--seeds", type=int, default=2, choices=(1, 2),
                   help="seeds every node is given: the first 1 or 2 nodes (default 2)")
    g = ap.add_argument_group("the network")
    g.add_argument("--link-rate", type=int, default=None, metavar="BYTES/S",
                   help="shape every node's LAN port to this many bytes/s each way "
                   "(tc tbf; Ethernet bytes); default unshaped")
    g.add_argument("--delay-ms", default=None, metavar="N|LO-HI",
                   help="one-way delay of every link, or a random one in LO-HI per "
                   "pair of nodes, through a user-space delay line (this kernel has "
                   "no netem); default none")
    g.add_argument("--seed", type=int, default=1, help="seed of the per-link delays")
    g.add_argument("--partition", action="store_true",
                   help="cut the LAN in two halves near the end, keep appending, heal, "
                   "and time until every node holds every event again")
    g.add_argument("--partition-seconds", type=float, default=15,
                   help="how long the partition lasts (default 15)")
    g.add_argument("--after-heal", type=float, default=15,
                   help="seconds of appends after the heal (default 15)")
    g = ap.add_argument_group("the daemons (default: odofs's own defaults)")
    g.add_argument("--tick-ms", type=int)
    g.add_argument("--heartbeat-ms", type=int)
    g.add_argument("--evaluate-ms", type=int)
    g.add_argument("--stall-ms", type=int)
    g.add_argument("--backoff-ms", help="comma-separated, e.g. 1000,2000,5000")
    g.add_argument("--config-extra", default="", help="libconfig text appended")
    g = ap.add_argument_group("the run")
    g.add_argument("--ci", action="store_true",
                   help="the CI run: 12 nodes, 2 devices each at 5/s, max_peers 4, "
                   "75 s of appends with a 15 s partition, about 2 minutes in all")
    g.add_argument("--timeout", type=float, default=None,
                   help="hard limit for the whole run, s (default: the schedule + "
                   "generous margins; CI: 200)")
    g.add_argument("--hold-timeout", type=float, default=60)
    g.add_argument("--overlay-timeout", type=float, default=None)
    g.add_argument("--heal-timeout", type=float, default=60)
    g.add_argument("--heal-report-only", action="store_true",
                   help="print the time to converge after the partition heals "
                        "against its 5 s target without failing on it (CI: its "
                        "margin is thin on a loaded machine; every other check "
                        "still fails the run)")
    g.add_argument("--drain-timeout", type=float, default=60)
    g.add_argument("--idle-seconds", type=float, default=15,
                   help="the idle CPU window (default 15)")
    g.add_argument("--poll", type=float, default=1.0,
                   help="seconds between scrapes of every node in the steady window")
    g.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    g.add_argument("--keep", action="store_true",
                   help="keep the run directory (logs, data) even on success")
    a = ap.parse_args(argv)
    if a.ci:
        # a 2-minute budget: 1-15 s set-up, 75 s of appends (hold ~7 s,
        # a steady window of ~43 s in two halves of ~21 s: two default
        # evaluate_ms passes each; a 15 s partition; 10 s after the heal),
        # drain, 10 s idle, clean-up: 95-110 s.  The partition's length is
        # not chosen to land between two of TCP's retransmissions (with
        # 10 s the sixth comes ~4 s after the heal, with 8 s ~6 s after,
        # with 15 s ~12 s after): see README.md
        a.nodes, a.devices, a.rate, a.max_peers, a.seeds = 12, 2, 5, 4, 2
        a.duration, a.partition, a.partition_seconds, a.after_heal = 75, True, 15, 10
        a.hold_timeout, a.heal_timeout, a.drain_timeout = 30, 20, 20
        a.idle_seconds = 10
        a.link_rate = a.delay_ms = None
        if a.timeout is None:
            a.timeout = 200
    if a.nodes < 2 or a.nodes > 250:
        ap.error("--nodes: 2 to 250")
    if a.devices < 1 or a.rate <= 0 or a.event_bytes < 48:
        ap.error("--devices >= 1, --rate > 0, --event-bytes >= 48")
    if a.delay_ms:
        try:
            delayproxy.parse_delay(a.delay_ms)
        except ValueError as ex:
            ap.error(str(ex))
    if a.overlay_timeout is None:
        a.overlay_timeout = 30 + a.nodes
    # each half of the steady window must hold a periodic evaluation pass
    a.min_half = (a.evaluate_ms or 10000) / 1000.0 + 2
    return a


def main(argv):
    if argv[:1] == ["--_watchdog"]:
        return watchdog_main(argv[1:])
    a = parse_args(argv)
    ok, why = netns.available()
    if not ok:
        if a.ci:
            # as the integration suite's slow-link tests do
            print("fleet: SKIPPED: network namespaces unavailable: %s" % why)
            return 0
        print("fleet: cannot run here: %s" % why)
        return 2
    if not os.access(ODOFS, os.X_OK):
        print("fleet: cannot run here: no odofs at %s (ninja -C build)" % ODOFS)
        return 2
    need = a.nodes * a.devices + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    reap_stale_runs()
    f = Fleet(a)

    def on_term(sig, frame):
        raise KeyboardInterrupt("signal %d" % sig)
    signal.signal(signal.SIGTERM, on_term)
    log(describe(a))
    t_begin = now()
    try:
        f.run()
    except Fail as ex:
        if f.timed_out():
            f.fail("hard timeout: the run took more than %.0f s (then: %s)" % (
                f.deadline_s(), str(ex).splitlines()[0]))
        else:
            f.fail(str(ex))
    except KeyboardInterrupt as ex:
        if f.timed_out():
            f.fail("hard timeout: the run took more than %.0f s" % f.deadline_s())
        else:
            f.fail("interrupted (%s)" % (str(ex) or "Ctrl-C"))
    except Exception as ex:     # a harness bug, or the watchdog's doing
        if f.timed_out():
            f.fail("hard timeout: the run took more than %.0f s (daemons killed "
                   "while the harness was at: %r)" % (f.deadline_s(), ex))
        else:
            import traceback
            traceback.print_exc()
            f.fail("harness error: %r" % ex)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        f.figures["harness_cpu"] = f.harness_cpu()
        try:
            summary = f.log_summary() if f.nodes else None
        except Exception:       # noqa: BLE001 - the logs are only a help
            summary = None
        cleanup(f)
    f.figures["total_s"] = now() - t_begin
    report(f)
    if summary:
        phases, examples = summary
        print("log lines by phase (switch = a 'following' line for a device the node "
              "followed before):")
        if not any(phases.values()):
            print("  nothing of note")
        for ph, c in phases.items():
            if not c:
                continue
            print("  %-20s %s%s" % (PHASES.get(ph, ph), ", ".join(
                "%s %d" % kv for kv in sorted(c.items())) or "-",
                ("   e.g. " + "; ".join(examples[ph])) if examples.get(ph) else ""))
        print()
    if a.json:
        with open(a.json, "w") as fh:
            F = dict(f.figures)
            lat = F.pop("latency_ms", None) or []
            F["latency_p50_ms"] = pct(lat, 50)
            F["latency_p99_ms"] = pct(lat, 99)
            F["latency_samples"] = len(lat)
            json.dump({"args": vars(a), "figures": F, "failures": f.failures},
                      fh, indent=1, default=str)
    print("fleet: total %.0f s" % f.figures["total_s"])
    if f.failures:
        for m in f.failures:
            print("fleet: FAIL: " + m)
        if f.kept:
            print("fleet: logs kept in %s" % f.kept)
        return 1
    print("fleet: OK: every node holds every event; no upstream cycle; active peers "
          "<= max_peers; thresholds met")
    if f.kept:
        print("fleet: run directory kept: %s" % f.kept)
    return 0


def cleanup(f):
    """Stops everything this run started, by PID, and unmounts: on success,
    failure, Ctrl-C or SIGTERM (the watchdog covers SIGKILL)."""
    if f.reader is not None:
        try:
            f.reader.kill()
            f.reader.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if f.writer is not None and f.writer.is_alive():
        f.writer.halt.set()
        f.writer.join(10)
    for fd in f.fds:
        try:
            os.close(fd)
        except OSError:
            pass
    f.fds = []
    for n in f.nodes:
        if n.alive():
            n.proc.send_signal(signal.SIGTERM)
    end = now() + 15
    for n in f.nodes:
        if n.proc is None:
            continue
        try:
            n.proc.wait(max(0.1, end - now()))
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait()
    for n in f.nodes:
        unmount(n.mnt, dead=n.proc is not None and n.proc.returncode not in (0,))
    if f.proxy is not None:
        try:
            f.proxy.stdin.write("quit\n")
            f.proxy.stdin.flush()
            f.proxy.wait(5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            f.proxy.kill()
            f.proxy.wait()
    if f.net is not None:
        f.net.close()
    f.kept = None
    rd = getattr(f, "run_dir", None)
    if rd:
        for m in mounts_under(rd):
            unmount(m, dead=True)
        if f.failures or f.a.keep:
            # the logs (and with --keep, the data) for whoever looks next
            if not f.a.keep:
                for n in f.nodes:
                    shutil.rmtree(n.data, ignore_errors=True)
                    try:
                        os.rmdir(n.mnt)
                    except OSError:
                        pass
            f.kept = rd
            with open(os.path.join(rd, "cleaned"), "w") as fh:
                fh.write("every daemon stopped, every mount unmounted\n")
        else:
            shutil.rmtree(rd, ignore_errors=True)
    if f.watchdog is not None:
        try:
            f.watchdog.stdin.write(b"done")
            f.watchdog.stdin.close()
            f.watchdog.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
