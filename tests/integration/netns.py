"""Slow links for the integration tests: Linux network namespaces joined by
veth pairs, shaped on egress by the kernel's token bucket filter (tc tbf).

    net = SlowNet()                       # unique names: pid + counter
    try:
        link = net.pair("a", "b", rate=20000)     # bytes/s, each way
        node.wrap = net.wrap("a")                 # nsenter --net=...
        node.start_peer(certs, 7400, host=link.addr("a"))
        ...
        link.tx_bytes("a")                # bytes a put on the wire
    finally:
        net.close()                       # every namespace and veth

Each namespace has its loopback up and one veth per link; an address is
10.213.K.1 (the first end) or 10.213.K.2 (the second) on 10.213.K.0/30,
K counting links within one SlowNet.  A namespace only reaches the
namespaces it is linked to: nothing here routes, and nothing reaches the
host's interfaces.  net.lan(...) joins any number of namespaces through a
bridge in a namespace of its own, each shaped both ways, on 10.213.K.0/24.

The `wrap` is `nsenter --net=/run/netns/NAME`: only the network namespace
changes, so a FUSE daemon started with it mounts where the test process
sees it.  Rates are in bytes per second on the wire (Ethernet frames, so
IP, TCP and TLS overheads count); tc's "bps" is bytes per second.
No netem: this kernel has none, so there is no added delay or loss beyond
tbf's own queue (latency_ms of queueing at the rate, at least six full
frames, then drops; see _tbf).

Namespaces are named odofs<pid>-<n>-<name>; SlowNet() first deletes those
left by test processes that no longer exist (a run killed mid-test).

SlowNet(prefix="10.214") puts its addresses on 10.214.K.0 instead (the
fleet harness, tests/fleet/, uses it so that it never meets a test's
addresses).  Every lan() is also kept as a Lan in net.lans, which can cut
the bridge in two and join it again (a partition that drops packets, as
a real one does: nothing is reset) and read an end's counters:

    addrs = net.lan(["n0", "n1", "n2", "n3"])
    lan = net.lans[-1]
    lan.split(["n2", "n3"])           # n0,n1 | n2,n3
    lan.heal()
    lan.stats("n0")                   # n0's interface: tx/rx bytes, packets
"""
import itertools
import json
import os
import re
import shutil
import subprocess

PREFIX = "odofs"
_counter = itertools.count(1)
_probe = None


def _run(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode,
                                                r.stderr.strip()))
    return r


def _netns_list():
    r = _run("ip", "netns", "list", check=False)
    return [l.split()[0] for l in r.stdout.splitlines() if l.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale():
    """Deletes the namespaces of test processes that are gone."""
    for name in _netns_list():
        m = re.match(r"%s(\d+)-" % PREFIX, name)
        if m and not _pid_alive(int(m.group(1))):
            _delete_ns(name)


def _delete_ns(name):
    # the veths first: a process still inside would keep the namespace
    # (and so its interfaces) alive after "ip netns del"
    r = _run("ip", "-n", name, "-j", "link", "show", check=False)
    try:
        for l in json.loads(r.stdout or "[]"):
            if l.get("ifname") != "lo":
                _run("ip", "-n", name, "link", "del", l["ifname"], check=False)
    except ValueError:
        pass
    _run("ip", "netns", "del", name, check=False)


def available():
    """(True, "") when namespaces, veths and tbf work here; else (False,
    why).  Probed once per process."""
    global _probe
    if _probe is not None:
        return _probe
    for tool in ("ip", "tc", "nsenter"):
        if shutil.which(tool) is None:
            _probe = (False, "%s not installed (apt-get install iproute2 "
                             "util-linux)" % tool)
            return _probe
    if os.geteuid() != 0:
        _probe = (False, "network namespaces need root")
        return _probe
    net = None
    try:
        net = SlowNet(reap=False)
        net.pair("p", "q", rate=100000)
        _probe = (True, "")
    except Exception as ex:     # any failure means "cannot here"
        _probe = (False, "cannot build a shaped veth pair: %s" % ex)
    finally:
        if net is not None:
            net.close()
    return _probe


MIN_QUEUE = 6 * 1514             # bytes: a queue of fewer frames than this
                                # makes TCP lose a quarter of a slow link


def _tbf(ns, ifn, rate, latency_ms, burst=None):
    """A token bucket on ifn's egress: rate bytes/s, a bucket of burst
    bytes (small: max(1600, rate/50), so the rate holds over ~20 ms), and
    a queue of latency_ms at the rate but never under MIN_QUEUE bytes.
    Measured at 20 KB/s: with a 2-frame queue (100 ms) a TCP stream got
    76% of the rate through, with 6+ frames 95-96%."""
    burst = burst or max(1600, rate // 50)
    limit = burst + max(rate * latency_ms // 1000, MIN_QUEUE)
    _run("tc", "-n", ns, "qdisc", "replace", "dev", ifn, "root", "tbf",
         "rate", "%dbps" % rate, "burst", str(burst), "limit", str(limit))


def _batch(ns, lines):
    """Runs `ip` commands (one a line, without "ip") in namespace ns in one
    process: quicker than one process each, and all of them take effect
    within a millisecond or so of each other."""
    r = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="".join(
        l + "\n" for l in lines), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("ip -n %s -batch: exit %d: %s" % (
            ns, r.returncode, r.stderr.strip()))


def _link_stats(ns, ifn):
    r = _run("ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifn)
    s = json.loads(r.stdout)[0]["stats64"]
    return {"tx_bytes": s["tx"]["bytes"], "rx_bytes": s["rx"]["bytes"],
            "tx_packets": s["tx"]["packets"],
            "rx_packets": s["rx"]["packets"]}


class Link:
    """A veth pair between two namespaces, each end shaped on egress."""

    def __init__(self, net, k, a, b, ifa, ifb):
        self.net = net
        self.k = k
        self.ends = {a: (ifa, "%s.%d.1" % (net.prefix, k)),
                     b: (ifb, "%s.%d.2" % (net.prefix, k))}
        self.rates = {}

    def addr(self, name):
        """The address of name's end."""
        return self.ends[name][1]

    def ifname(self, name):
        return self.ends[name][0]

    def set_rate(self, name, rate, latency_ms=100, burst=None):
        """Shapes what name sends on this link to rate bytes/s; rate None
        removes the shaping."""
        ns = self.net.ns(name)
        ifn = self.ifname(name)
        if rate is None:
            _run("tc", "-n", ns, "qdisc", "del", "dev", ifn, "root", check=False)
            self.rates.pop(name, None)
            return
        _tbf(ns, ifn, rate, latency_ms, burst)
        self.rates[name] = rate

    def stats(self, name):
        """name's end: {"tx_bytes", "rx_bytes", "tx_packets", "rx_packets"}."""
        return _link_stats(self.net.ns(name), self.ifname(name))

    def tx_bytes(self, name):
        """Bytes name has sent over this link (Ethernet frames)."""
        return self.stats(name)["tx_bytes"]

    def rx_bytes(self, name):
        return self.stats(name)["rx_bytes"]

    def qdisc(self, name):
        """tc's statistics of name's shaper: bytes, packets, drops,
        overlimits, backlog (bytes queued now)."""
        r = _run("tc", "-n", self.net.ns(name), "-s", "-j", "qdisc", "show",
                 "dev", self.ifname(name))
        for q in json.loads(r.stdout or "[]"):
            if q.get("kind") == "tbf":
                return {k: q.get(k) for k in ("bytes", "packets", "drops",
                                              "overlimits", "backlog")}
        return None


class Lan:
    """A bridge made by SlowNet.lan(): the namespace sw holds br0, with a
    port per member (ports[name]); each member's end is ifname."""

    def __init__(self, net, k, sw, ifname, ports, addrs):
        self.net = net
        self.k = k
        self.sw = sw
        self.ifname = ifname
        self.ports = ports
        self.addrs = addrs
        self.cut = []
        self.br1 = False

    def split(self, names):
        """Moves the ports of names to a second bridge, br1: the LAN is
        two halves that cannot reach each other (packets are dropped at
        the bridge, connections are not reset); each half keeps working."""
        if self.cut:
            raise ValueError("already split")
        lines = []
        if not self.br1:
            lines += ["link add br1 type bridge", "link set br1 up"]
        lines += ["link set %s master br1" % self.ports[n] for n in names]
        _batch(self.sw, lines)
        self.br1 = True
        self.cut = list(names)

    def heal(self):
        """Puts every port back on br0."""
        if self.cut:
            _batch(self.sw, ["link set %s master br0" % self.ports[n]
                             for n in self.cut])
        self.cut = []

    def stats(self, name):
        """name's end of the LAN: {"tx_bytes", "rx_bytes", "tx_packets",
        "rx_packets"} (Ethernet frames)."""
        return _link_stats(self.net.ns(name), self.ifname)


class SlowNet:
    """A set of namespaces and shaped links; close() deletes them all."""

    def __init__(self, reap=True, prefix="10.213"):
        if not re.fullmatch(r"(25[0-5]|2[0-4]\d|1?\d?\d)\."
                            r"(25[0-5]|2[0-4]\d|1?\d?\d)", prefix):
            raise ValueError("prefix is two octets, as 10.213: %r" % prefix)
        if reap:
            reap_stale()
        self.tag = "%s%d-%d" % (PREFIX, os.getpid(), next(_counter))
        self.prefix = prefix
        self.names = {}         # our name -> namespace name
        self.links = []
        self.lans = []
        self.nlinks = 0

    def ns(self, name):
        return self.names[name]

    def namespace(self, name):
        """The namespace called name, created (loopback up) on first use."""
        if name not in self.names:
            full = "%s-%s" % (self.tag, name)
            if len(full) > 200 or "/" in full:
                raise ValueError("bad namespace name %r" % full)
            _run("ip", "netns", "add", full)
            self.names[name] = full
            _run("ip", "-n", full, "link", "set", "lo", "up")
            # no IPv6 chatter (router solicitations, MLD) in the counters
            _run("ip", "netns", "exec", full, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1", check=False)
        return self.names[name]

    def wrap(self, name):
        """A command prefix that runs a command in name's namespace."""
        return ["nsenter", "--net=/run/netns/" + self.ns(name)]

    def run(self, name, *cmd, check=True):
        """Runs cmd in name's namespace; CompletedProcess (text)."""
        return _run(*(self.wrap(name) + list(cmd)), check=check)

    def _next_k(self):
        self.nlinks += 1
        if self.nlinks > 250:
            raise ValueError("too many links")
        return self.nlinks

    def pair(self, a, b, rate=None, rate_back=None, latency_ms=100):
        """A link between namespaces a and b (created as needed); what a
        sends is shaped to rate bytes/s, what b sends to rate_back
        (default: rate); None: not shaped."""
        k = self._next_k()
        nsa, nsb = self.namespace(a), self.namespace(b)
        ifa, ifb = ("l%d-%s" % (k, b))[:15], ("l%d-%s" % (k, a))[:15]
        # created in place: no name is ever taken in the host's namespace
        _run("ip", "link", "add", ifa, "netns", nsa, "type", "veth",
             "peer", "name", ifb, "netns", nsb)
        link = Link(self, k, a, b, ifa, ifb)
        self.links.append(link)
        _run("ip", "-n", nsa, "addr", "add", link.addr(a) + "/30", "dev", ifa)
        _run("ip", "-n", nsb, "addr", "add", link.addr(b) + "/30", "dev", ifb)
        _run("ip", "-n", nsa, "link", "set", ifa, "up")
        _run("ip", "-n", nsb, "link", "set", ifb, "up")
        if rate is not None:
            link.set_rate(a, rate, latency_ms)
        if (rate_back or rate) is not None:
            link.set_rate(b, rate_back or rate, latency_ms)
        return link

    def lan(self, names, rate=None, rate_in=None, latency_ms=100):
        """Joins every namespace in names through a bridge (in a namespace
        of its own): each sends at most rate bytes/s and receives at most
        rate_in (default: rate).  Returns {name: address}, on
        10.213.K.0/24 (the SlowNet's prefix); net.lans[-1] is its Lan."""
        k = self._next_k()
        sw = self.namespace("sw%d" % k)
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        addrs = {}
        ports = {}
        if len(names) > 253:
            raise ValueError("at most 253 members on a LAN")
        for i, name in enumerate(names, start=1):
            ns = self.namespace(name)
            port = "p%d" % i
            ports[name] = port
            _run("ip", "link", "add", "lan%d" % k, "netns", ns, "type", "veth",
                 "peer", "name", port, "netns", sw)
            _run("ip", "-n", sw, "link", "set", port, "master", "br0")
            _run("ip", "-n", sw, "link", "set", port, "up")
            addrs[name] = "%s.%d.%d" % (self.prefix, k, i)
            _run("ip", "-n", ns, "addr", "add", addrs[name] + "/24", "dev",
                 "lan%d" % k)
            _run("ip", "-n", ns, "link", "set", "lan%d" % k, "up")
            for where, ifn, r in ((ns, "lan%d" % k, rate),
                                  (sw, port, rate_in or rate)):
                if r is not None:
                    _tbf(where, ifn, r, latency_ms)
        self.lans.append(Lan(self, k, sw, "lan%d" % k, ports, addrs))
        return addrs

    def close(self):
        """Deletes every namespace and veth made here; safe to repeat."""
        for name in list(self.names.values()):
            _delete_ns(name)
        self.names.clear()
        self.links.clear()
        self.lans.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
