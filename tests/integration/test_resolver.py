"""Issue 12, "nothing blocks the net thread": a slow resolver (a DNS server
that answers after 5 s) delays neither the mount nor the peers already
connected, and its answer is acted on when it comes.

Node a runs in a network namespace of its own (netns.py), linked to b's
and to c's.  /etc/resolv.conf names 10.255.255.53, so the namespace has
that address on its loopback and SlowDNS answers there: every DNS query
the daemon makes stays inside the namespace (nothing leaves the machine).
SlowDNS answers each question DELAY seconds after it first arrived
(glibc asking again meanwhile gets the same answer at the same time):
A questions for the names it knows with their address, anything else
with NXDOMAIN.  It records when each question came and when it was
answered: those records are the barriers ("a lookup is under way now")
that the tests rely on instead of sleeps.

  - a, with the seeds slow.odofs.test (c) and b's address, answers `ls`
    and .status within 1 s of starting, is active with b while the name
    is still unanswered, and stops within 2 s with the lookup still
    under way.
  - a, connected to b, redials a seed whose name fails (after 5 s, every
    time): while a lookup is under way, events from b reach a within 1 s
    each (no gap of 1 s or more).
  - once the slow name is answered, a connects to c, the peer it names,
    and the name's entry is replaced by c's address.

Before the resolver thread, the first and last failed (the mount and every
peer waited ~5 s for the name: getaddrinfo ran before the FUSE loop
served) and so did the second (each redial held the net thread ~5 s).
"""
import ctypes
import heapq
import os
import select
import socket
import struct
import subprocess
import threading
import time

import pytest

import netns
from conftest import is_mounted, wait_for

PORT = 7400
DNS_ADDR = "10.255.255.53"      # /etc/resolv.conf's nameserver
DELAY = 5.0                     # seconds before SlowDNS answers
SLOW = "slow.odofs.test"        # answers with c's address
NX = "nx.odofs.test"            # answers NXDOMAIN
MOUNT_MARGIN = 1.0              # the mount answers within this of the start
GAP = 1.0                       # no replication gap this long
GRACE = 0.3                     # a question this soon after its answer:
                                # answered at once (a resolver's retry)

QTYPE_A = 1
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# what a user has, but redials of a failing seed name every second
CONF = "peering: { backoff_ms = [ 1000 ]; };\n"


def socket_in(ns, family, kind):
    """A socket made inside network namespace ns (a thread of its own
    enters it, so this process stays where it is)."""
    out = {}

    def make():
        fd = os.open("/run/netns/" + ns, os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
            out["s"] = socket.socket(family, kind)
        except Exception as ex:     # reported in the caller's thread
            out["e"] = ex
        finally:
            os.close(fd)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["s"]


def parse_question(data):
    """(id, flags, name, qtype, question bytes) of a DNS query, or None."""
    if len(data) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    i, labels = 12, []
    while True:
        if i >= len(data):
            return None
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(data):
            return None
        labels.append(data[i:i + n].decode("ascii", "replace").lower())
        i += n
    if i + 4 > len(data):
        return None
    qtype, = struct.unpack("!H", data[i:i + 2])
    return qid, flags, ".".join(labels), qtype, data[12:i + 4]


class SlowDNS:
    """A DNS server on DNS_ADDR:53 (UDP) in namespace ns, answering each
    question (name and type) `delay` seconds after it first arrived.
    glibc's own timeout is 5 s as well, and its retry comes on a new
    socket: a question asked again while the first waits is answered with
    it, and one asked again within GRACE of the answer at once, so one
    lookup takes `delay` and no more.  self.queries records each first
    question: name, qtype, asked and answered (monotonic times)."""

    def __init__(self, ns, names, delay=DELAY):
        self.names = dict(names)        # name -> IPv4 address
        self.delay = delay
        self.cond = threading.Condition()
        self.queries = []               # {"name", "qtype", "asked", "answered"}
        self.sock = socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((DNS_ADDR, 53))
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _reply(self, raw):
        qid, flags, name, qtype, question = raw
        addr = self.names.get(name)
        answers = b""
        if addr is not None and qtype == QTYPE_A:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 0, 4) + \
                socket.inet_aton(addr)
        rcode = 0 if addr is not None else 3        # NXDOMAIN
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
        return struct.pack("!HHHHHH", qid, rflags, 1, 1 if answers else 0,
                           0, 0) + question + answers

    def _send(self, raw, peer):
        try:
            self.sock.sendto(self._reply(raw), peer)
        except OSError:
            pass

    def _run(self):
        due = []                        # (time, seq, key)
        pending = {}                    # (name, qtype) -> record
        recent = {}                     # (name, qtype) -> answered record
        seq = 0
        while True:
            timeout = None
            if due:
                timeout = max(0.0, due[0][0] - time.monotonic())
            r, _, _ = select.select([self.sock, self.stop_r], [], [], timeout)
            if self.stop_r in r:
                return
            now = time.monotonic()
            if self.sock in r:
                data, peer = self.sock.recvfrom(4096)
                q = parse_question(data)
                key = q and (q[2], q[3])
                rec = recent.get(key)
                if q is None:
                    pass
                elif key in pending:
                    # glibc asking again (its own timeout is 5 s too):
                    # answered with the first question
                    pending[key]["askers"].append((q, peer))
                elif rec is not None and now - rec["answered"] < GRACE:
                    self._send(q, peer)     # the same, just answered
                else:
                    rec = {"name": q[2], "qtype": q[3], "asked": now,
                           "answered": None, "askers": [(q, peer)]}
                    pending[key] = rec
                    seq += 1
                    heapq.heappush(due, (now + self.delay, seq, key))
                    with self.cond:
                        self.queries.append(rec)
                        self.cond.notify_all()
            while due and due[0][0] <= time.monotonic():
                _, _, key = heapq.heappop(due)
                rec = pending.pop(key)
                for q, peer in rec["askers"]:
                    self._send(q, peer)
                recent[key] = rec
                with self.cond:
                    rec["answered"] = time.monotonic()
                    self.cond.notify_all()

    def wait_query(self, name, after=0.0, timeout=20.0):
        """The first A question for name asked at or after `after`."""
        def find():
            for q in self.queries:
                if q["name"] == name and q["qtype"] == QTYPE_A and \
                        q["asked"] >= after:
                    return q
            return None
        with self.cond:
            if not self.cond.wait_for(find, timeout):
                raise AssertionError("no DNS question for %s" % name)
            return find()

    def answered(self, q):
        """When q was answered (monotonic), or None."""
        with self.cond:
            return q["answered"]

    def wait_answered(self, q, timeout=20.0):
        with self.cond:
            if not self.cond.wait_for(lambda: q["answered"] is not None,
                                      timeout):
                raise AssertionError("%s never answered" % q["name"])
            return q["answered"]

    def close(self):
        os.write(self.stop_w, b"x")
        self.thread.join(5)
        self.sock.close()
        os.close(self.stop_r)
        os.close(self.stop_w)


class World:
    pass


@pytest.fixture
def world(nodes, certs):
    """Namespaces a, b, c; a linked to b and to c; SlowDNS in a, where
    SLOW names c's address; b and c running.  Teardown stops the nodes,
    the server, then every namespace."""
    ok, why = netns.available()
    if not ok:
        pytest.skip("the slow resolver needs network namespaces: " + why)
    net = netns.SlowNet()
    w = World()
    w.net, w.dns, w.started, w.deaths = net, None, [], []
    try:
        w.ab = net.pair("a", "b")
        w.ac = net.pair("a", "c")
        net.run("a", "ip", "addr", "add", DNS_ADDR + "/32", "dev", "lo")
        w.dns = SlowDNS(net.ns("a"), {SLOW: w.ac.addr("c")})

        def start(name, host, seeds=(), wait=True):
            n = nodes(name)
            n.wrap = net.wrap(name)
            w.started.append(n)
            return n.start_peer(certs, PORT, list(seeds), config=CONF,
                                wait=wait, host=host)
        w.start = start
        w.b = start("b", w.ab.addr("b"))
        w.c = start("c", w.ac.addr("c"))
        yield w
    finally:
        for n in w.started:
            if n.proc is not None and n.proc.poll() is not None:
                w.deaths.append("%s died with status %d" % (n.name,
                                                            n.proc.returncode))
            n.stop()
        if w.dns is not None:
            w.dns.close()
        net.close()
    left = [l for l in subprocess.run(["ip", "netns", "list"],
                                      capture_output=True, text=True)
            .stdout.splitlines() if l.startswith(net.tag)]
    assert not left, "namespaces left behind: %s" % left
    assert not w.deaths, "\n".join(w.deaths)


def start_a(w, seeds):
    """Starts a without waiting for its mount; returns (a, t0), t0 the
    monotonic time just before the daemon was started."""
    t0 = time.monotonic()
    a = w.start("a", w.ab.addr("a"), seeds, wait=False)
    return a, t0


def served(a, t0):
    """Waits for a's mount to appear, then lists it and reads .status (both
    wait for the FUSE loop); returns the seconds from t0 until answered."""
    wait_for(lambda: is_mounted(a.mnt) or a.proc.poll() is not None,
             timeout=10, interval=0.005, what="a's mount")
    assert a.proc.poll() is None, a.log()
    os.listdir(a.mnt)
    a.status()
    return time.monotonic() - t0


def entry(a, address):
    for p in a.peers():
        if p["address"] == address:
            return p
    return None


def test_mount_and_numeric_peer_do_not_wait_for_a_slow_name(world):
    w = world
    slow_seed = "%s:%d" % (SLOW, PORT)
    a, t0 = start_a(w, [slow_seed, "%s:%d" % (w.ab.addr("b"), PORT)])
    took = served(a, t0)
    q = w.dns.wait_query(SLOW)
    assert took < MOUNT_MARGIN, \
        "the mount answered %.2f s after the start (margin %.1f s)" % (
            took, MOUNT_MARGIN)
    # the name's entry waits, connecting, while the lookup is under way
    e = entry(a, slow_seed)
    assert e is not None and e["state"] == "connecting" and \
        e["reason"] == "resolving" and e["seed"], a.peers()
    wait_for(lambda: "b" in a.active(), timeout=DELAY, interval=0.01,
             what="a active with b")
    t_b = time.monotonic()
    answered = w.dns.answered(q)
    assert answered is None or answered > t_b, \
        "b became active only after the name was answered"
    # shutting down does not wait for the lookup either
    t = time.monotonic()
    assert a.stop() == 0
    took_stop = time.monotonic() - t
    answered = w.dns.answered(q)
    assert answered is None or answered > t + took_stop, \
        "the lookup ended before the daemon did"
    assert took_stop < 2.0, "stopping took %.2f s" % took_stop
    print("mount answered after %.3f s; b active after %.3f s; name asked "
          "%.3f s after the start; stop took %.3f s" % (
              took, t_b - t0, q["asked"] - t0, took_stop))


def test_connected_peer_does_not_wait_for_a_failing_name(world):
    w = world
    os.mkdir(w.b.path("d"))
    events = os.open(w.b.path("d", "events"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(events, b"0\n")
        a, _ = start_a(w, ["%s:%d" % (NX, PORT),
                           "%s:%d" % (w.ab.addr("b"), PORT)])
        wait_for(lambda: is_mounted(a.mnt), timeout=10, what="a's mount")

        def head():
            try:
                return a.info("d")["head"]
            except (OSError, ValueError, KeyError):
                return 0
        wait_for(lambda: head() >= 1, timeout=30, interval=0.01,
                 what="a follows b's device")
        # barrier: a new lookup of the failing name is under way from here
        q = w.dns.wait_query(NX, after=time.monotonic())
        end = q["asked"] + DELAY - 0.5
        n, worst = 1, 0.0
        while time.monotonic() < end:
            n += 1
            t = time.monotonic()
            os.write(events, b"%d\n" % n)
            wait_for(lambda: head() >= n, timeout=3 * DELAY, interval=0.002,
                     what="event %d on a" % n)
            worst = max(worst, time.monotonic() - t)
        assert worst < GAP, \
            "an event took %.2f s from b to a while the name was being " \
            "resolved" % worst
        answered = w.dns.answered(q)
        assert answered is None or answered >= end, \
            "the lookup was answered during the measurement"
        assert n >= 10, "only %d round trips" % n
        # the name's entry is retried with backoff, not dialled
        e = entry(a, "%s:%d" % (NX, PORT))
        assert e is not None and e["seed"] and e["state"] in (
            "connecting", "lifesupport"), a.peers()
        print("%d events from b to a while a lookup was under way; the "
              "slowest took %.3f s" % (n - 1, worst))
    finally:
        os.close(events)


def test_slow_name_connects_once_answered(world):
    w = world
    slow_seed = "%s:%d" % (SLOW, PORT)
    c_addr = "%s:%d" % (w.ac.addr("c"), PORT)
    a, t0 = start_a(w, [slow_seed, "%s:%d" % (w.ab.addr("b"), PORT)])
    q = w.dns.wait_query(SLOW)
    wait_for(lambda: is_mounted(a.mnt), timeout=10, what="a's mount")
    wait_for(lambda: "b" in a.active(), timeout=2 * DELAY, interval=0.01,
             what="a active with b")
    t_b = time.monotonic()
    answered = w.dns.answered(q)
    assert answered is None or answered > t_b, \
        "b became active only after the name was answered"
    assert "c" not in a.active()
    answered = w.dns.wait_answered(q)
    wait_for(lambda: "c" in a.active(), timeout=2 * DELAY, interval=0.01,
             what="a active with c")
    took = time.monotonic() - answered
    assert took < 2.0, "c active %.2f s after the answer" % took
    e = entry(a, c_addr)
    assert e is not None and e["id"] == "c" and e["seed"], a.peers()
    assert entry(a, slow_seed) is None, a.peers()
    assert "peer ? (%s) from seed %s" % (c_addr, SLOW) in a.log()
    print("b active %.3f s after the start; the name answered %.3f s after "
          "it; c active %.3f s after the answer" % (t_b - t0,
                                                    answered - t0, took))
