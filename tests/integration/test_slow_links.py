"""SPEC §8.6 (issue 12): links of any speed make progress.

Real nodes in two network namespaces joined by a veth pair that the
kernel's token bucket filter shapes (netns.py); nothing of odofs is
mocked, and the TCP and TLS stacks see a genuinely slow link.

  - A backlog crosses a 20 KB/s link at close to the link's rate, without
    the subscription being declared stalled, the peer declared silent, or
    the transfer restarting.
  - One device's backlog on a 100 KB/s link does not hold up another
    device's new event by more than about one frame's transmission time:
    the new event arrives within 2 s.
  - Controls: the shaped link itself carries its rate, and a new device
    arrives within the same 2 s over the same link when it is idle, so a
    failure above is the backlog's doing, not the link's or the timers'.

Sizes: an event is a 99-byte line plus its newline, so applied event
bytes are b's head x 100.  Rates are bytes per second on the wire
(Ethernet frames): TCP/IP headers take ~4.5% of it, so a perfect sender
gets ~95% of the rate through as event bytes.
"""
import os
import re
import subprocess
import time

import pytest

import netns
from conftest import wait_for

PORT = 7400
LINE = 100                      # bytes per event, "\n" included

# What a user has, except the two timers that decide whether a slow link
# looks dead, shortened so that they fire within the test: at 20 KB/s a
# 1 MiB frame would take ~52 s on the wire (before frames were sized to
# the link they reached 4 MiB, the event buffer's size: ~210 s), far beyond
# stall_ms (5 s) and three heartbeats (9 s).  SPEC §8.6 says progress and
# liveness count bytes, so neither timer may fire while bytes flow.
SLOW_CONF = ("peering: { heartbeat_ms = 3000; backoff_ms = [ 1000, 2000, 4000 ]; };\n"
             "sync: { stall_ms = 5000; };\n")

# Every default (evaluate 10 s, heartbeat 30 s, stall 30 s) but the tick.
# The tick (1 s by default) paces catalogues and the settling of new ids:
# with it a new device takes 2.0 s to reach a peer over an idle link
# (measured), the whole of the 2 s target; at 100 ms it takes 1.1 s.
DEFAULT_CONF = "peering: { tick_ms = 100; };\n"


@pytest.fixture
def slownet(nodes):
    """A SlowNet; at teardown the nodes started in it stop first (so no
    daemon keeps a namespace alive), then every namespace and veth goes."""
    ok, why = netns.available()
    if not ok:
        pytest.skip("slow links need network namespaces and tc tbf: " + why)
    net = netns.SlowNet()
    net.nodes = []
    net.deaths = []
    yield net
    for n in net.nodes:
        if n.proc is not None and n.proc.poll() is not None:
            net.deaths.append("%s died with status %d" % (n.name, n.proc.returncode))
        n.stop()
    net.close()
    left = [l for l in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                      text=True).stdout.splitlines()
            if l.startswith(net.tag)]
    assert not left, "namespaces left behind: %s" % left
    assert not net.deaths, "\n".join(net.deaths)


def start_in(net, nodes, certs, name, link, seeds=(), config=DEFAULT_CONF):
    """A node in namespace `name`, listening on its end of link."""
    n = nodes(name)
    n.wrap = net.wrap(name)
    net.nodes.append(n)
    n.start_peer(certs, PORT, ["%s:%d" % s for s in seeds], config=config,
                 host=link.addr(name))
    return n


def backlog(node, dev, count, tag="x"):
    """Appends count events of LINE bytes to dev (created if needed)."""
    if not os.path.isdir(node.path(dev)):
        os.mkdir(node.path(dev))
    pad = "p" * (LINE - 1 - len(tag) - 12)
    fd = os.open(node.path(dev, "events"), os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(0, count, 5000):
            n = min(5000, count - i)
            os.write(fd, "".join("%s %10d %s\n" % (tag, i + j, pad)
                                 for j in range(n)).encode())
    finally:
        os.close(fd)
    wait_for(lambda: node.info(dev)["head"] >= count, what="%s's backlog" % dev)


def head(node, dev):
    try:
        return node.info(dev)["head"]
    except (FileNotFoundError, OSError, ValueError):
        return 0


def has_metric(node, name):
    with open(node.path(".metrics")) as f:
        return any(l.startswith(name + " ") for l in f)


def subscriptions(node, dev=None, up="a"):
    """Subscriptions node started (to up, for dev when given): the
    odofs_subscriptions_total counter when the node has one and no dev is
    asked for, else its "following" log lines."""
    if dev is None and has_metric(node, "odofs_subscriptions_total"):
        return node.metric("odofs_subscriptions_total")
    pat = r"device %s: following %s from revision" % (
        re.escape(dev) if dev else r"\S+", re.escape(up))
    return len(re.findall(pat, node.log()))


def lifesupport_lines(node, peer):
    """The log lines where node took peer from active to another state."""
    return [l for l in node.log().splitlines()
            if re.search(r"peer %s \([^)]*\): active -> " % re.escape(peer), l)]


def stall_lines(node):
    return [l for l in node.log().splitlines() if "no progress from" in l]


def socket_queue(net, name, peer_addr):
    """What name's kernel holds unsent and unacknowledged on its TCP
    connections to peer_addr: "Send-Q bytes (notsent N)" per connection."""
    r = net.run(name, "ss", "-tni", "dst", peer_addr, check=False)
    out, lines = [], r.stdout.splitlines()
    for i, l in enumerate(lines):
        f = l.split()
        if len(f) >= 5 and f[0] == "ESTAB":
            info = lines[i + 1] if i + 1 < len(lines) else ""
            m = re.search(r"notsent:(\d+)", info)
            out.append("%s (notsent %s)" % (f[2], m.group(1) if m else 0))
    return ", ".join(out) or "none"


@pytest.mark.parametrize("rate", [20_000, 100_000])
def test_shaped_link_carries_its_rate(slownet, rate):
    """The control for everything below: a plain TCP stream over the
    shaped link moves ~95% of its rate as payload (headers take the rest),
    and the link's counters see the bytes."""
    link = slownet.pair("a", "b", rate=rate)
    size = 8 * rate             # ~8 s: past TCP's start-up losses
    srv = subprocess.Popen(slownet.wrap("b") + [
        "python3", "-c",
        "import socket,time\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('%s',9000)); s.listen(1); c,_=s.accept(); n=0; t0=None\n"
        "while True:\n"
        "    d=c.recv(65536)\n"
        "    if not d: break\n"
        "    t0=t0 or time.monotonic(); n+=len(d)\n"
        "print(n, time.monotonic()-t0)\n" % link.addr("b")],
        stdout=subprocess.PIPE, text=True)
    try:
        tx0 = link.tx_bytes("a")
        slownet.run("a", "python3", "-c",
                    "import socket,time,sys\n"
                    "for i in range(50):\n"
                    "    try: s=socket.create_connection(('%s',9000)); break\n"
                    "    except OSError: time.sleep(0.1)\n"
                    "s.sendall(b'x'*%d); s.close()\n" % (link.addr("b"), size))
        out, _ = srv.communicate(timeout=30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    n, secs = out.split()
    n, secs = int(n), float(secs)
    wire = link.tx_bytes("a") - tx0
    print("\nshaped link: %d payload bytes in %.2f s = %.0f B/s (%.0f%% of %d); "
          "%d bytes on the wire; tbf %s" % (n, secs, n / secs, 100 * n / secs / rate,
                                            rate, wire, link.qdisc("a")))
    assert n == size
    assert 0.85 * rate <= n / secs <= 1.05 * rate
    assert n <= wire <= 1.1 * n


@pytest.mark.skipif(os.environ.get("ODOFS_SANITIZED") == "1", reason=(
    "a 40 s rate measurement, run on the normal build; its code paths "
    "(frames sized to the link, liveness by bytes) run under the sanitizers "
    "in the shaped-link and 100 KB/s backlog tests"))
def test_20kbps_link_backlog_makes_progress(slownet, nodes, certs):
    """SPEC §8.6: "a 10 KB/s link carries close to 10 KB/s of events and is
    never declared stalled while bytes flow".  A 3 MB backlog over a
    20 KB/s link: over 40 s from b's first applied event, b applies event
    bytes at >= 80% of the link's rate, the subscription never restarts,
    a never leaves b's active peers, and nothing is called stalled."""
    rate = 20_000
    window = 40.0
    first_within = 15.0         # 300 KB of link time: any sane frame fits
    count = 30_000              # 3 MB: more than the window can carry
    link = slownet.pair("a", "b", rate=rate)
    a = start_in(slownet, nodes, certs, "a", link, config=SLOW_CONF)
    backlog(a, "dev", count)
    b = start_in(slownet, nodes, certs, "b", link, seeds=[(link.addr("a"), PORT)],
                 config=SLOW_CONF)
    wait_for(lambda: subscriptions(b, "dev") >= 1, timeout=30,
             what="b subscribing to dev")
    t_sub = time.monotonic()
    subs0 = subscriptions(b)

    samples = []                # (t, head, a active on b, subscriptions)
    t_first = None
    end = t_sub + first_within + window
    tx0 = None
    while True:
        now = time.monotonic()
        h = head(b, "dev")
        samples.append((now, h, "a" in b.active(), subscriptions(b)))
        if t_first is None and (h > 0 or now >= t_sub + first_within):
            t_first = now
            h_first = h
            tx0 = link.tx_bytes("a")
            end = t_first + window
        if now >= end:
            break
        time.sleep(0.25)
    t_end, h_end = samples[-1][0], samples[-1][1]
    tx = link.tx_bytes("a") - tx0
    span = t_end - t_first
    applied = (h_end - h_first) * LINE
    first_at = next((s[0] - t_sub for s in samples if s[1] > 0), None)
    inactive = [round(s[0] - t_sub, 1) for s in samples if not s[2]]
    subs = subscriptions(b)
    left = lifesupport_lines(b, "a")
    stalls = stall_lines(b)
    print("\n20 KB/s link: first event applied %s after subscribing; over "
          "%.1f s: %d event bytes applied = %.0f B/s = %.0f%% of the link; "
          "%d bytes crossed a->b (%.0f B/s, events/wire %.2f); "
          "b's head %d of %d; subscriptions %d (at subscribing %d); "
          "a not active on b at %d samples %s; a left active on b %d times; "
          "'no progress' lines %d; a's queue to b %d bytes; tbf %s"
          % ("%.1f s" % first_at if first_at is not None else "never",
             span, applied, applied / span, 100 * applied / span / rate,
             tx, tx / span, applied / tx if tx else 0, h_end, count, subs, subs0,
             len(inactive), inactive[:8], len(left), len(stalls),
             a.metric('odofs_peer_send_queued_bytes{peer="b"}'), link.qdisc("a")))
    for l in (left + stalls)[:6]:
        print("  b: " + l)
    problems = []
    if first_at is None or first_at > first_within:
        problems.append("no event applied within %.0f s of subscribing" % first_within)
    if applied / span < 0.8 * rate:
        problems.append("%.0f event B/s applied, under 80%% of %d" % (applied / span, rate))
    if subs != 1:
        problems.append("%d subscriptions, not 1 (restarted)" % subs)
    if inactive or left:
        problems.append("a left b's active peers: %s" % (left[:2] or inactive[:4]))
    if stalls:
        problems.append("declared stalled: %s" % stalls[0])
    assert not problems, "; ".join(problems)


def test_100kbps_backlog_does_not_block_a_new_device(slownet, nodes, certs):
    """SPEC §8.6: "one device's backlog delays another's new event by at
    most one frame's transmission time".  While 10 MB of "bulk" crosses a
    100 KB/s link, a new device's first event reaches b within 2 s, and
    bulk keeps flowing."""
    rate = 100_000
    count = 100_000             # 10 MB: ~105 s of link time
    link = slownet.pair("a", "b", rate=rate)
    a = start_in(slownet, nodes, certs, "a", link)
    backlog(a, "bulk", count)
    tx0 = link.tx_bytes("a")
    b = start_in(slownet, nodes, certs, "b", link, seeds=[(link.addr("a"), PORT)])
    # b is receiving bulk: subscribed, and 1 s of link time of it has
    # crossed (bytes on the wire, not events applied: how soon those show
    # depends on the frame size, which the first test is about; a 4 MiB
    # frame, as before frames were sized to the link, takes 42 s here)
    wait_for(lambda: subscriptions(b, "bulk") >= 1, timeout=20,
             what="b subscribing to bulk")
    wait_for(lambda: link.tx_bytes("a") - tx0 >= rate, timeout=20, interval=0.1,
             what="bulk crossing the link")
    bulk0 = head(b, "bulk")
    queued = a.metric('odofs_peer_send_queued_bytes{peer="b"}')
    kernel = socket_queue(slownet, "a", link.addr("b"))
    os.mkdir(a.path("new"))
    with open(a.path("new", "events"), "a") as f:
        f.write("the new device's first event\n")
    t0 = time.monotonic()
    # The target, 2 s, is the ("within 2 s"; SPEC: at most one
    # frame's transmission time of delay).  Over the idle link it takes
    # about 0.1 s (test_new_device_on_an_idle_slow_link: the tick, the
    # catalogue, the subscription's round trip; a new id needs no settling
    # once every peer has been connected for a second); with the backlog
    # about 0.9 s was measured: the rest of one bulk frame (a quarter
    # second of link) and the socket's unsent bytes (16 KiB) ahead of the
    # catalogue entry, then again ahead of new's frame, and tbf's queue
    # (~12 KB).  Waiting longer is only to report how long.
    try:
        wait_for(lambda: head(b, "new") >= 1, timeout=25, interval=0.05,
                 what="new's event on b")
        delay = time.monotonic() - t0
    except AssertionError:
        delay = None
    bulk1 = head(b, "bulk")
    print("\n100 KB/s link: bulk on b at %d of %d events when new was written; "
          "a's queue to b then %d bytes (%.1f s of link), a's kernel send "
          "queue %s; new's event on b after %s; bulk head then %d (+%d events)"
          % (bulk0, count, queued, queued / rate, kernel,
             "%.2f s" % delay if delay is not None else "more than 25 s",
             bulk1, bulk1 - bulk0))
    assert delay is not None and delay < 2.0, \
        "new device's event took %s (target 2 s); %d bytes were queued ahead" % (
            "%.2f s" % delay if delay is not None else "more than 25 s", queued)
    # bulk continued: it is still subscribed once and goes on advancing
    wait_for(lambda: head(b, "bulk") > bulk0, timeout=15,
             what="bulk advancing on b after new's event")
    assert subscriptions(b, "bulk") == 1
    assert not stall_lines(b) and not lifesupport_lines(b, "a")


def test_new_device_on_an_idle_slow_link(slownet, nodes, certs):
    """Control for the test above: on the same 100 KB/s link with the same
    timers but no backlog, a new device's first event reaches b well
    within 2 s.  So a failure there is the backlog's doing."""
    rate = 100_000
    link = slownet.pair("a", "b", rate=rate)
    a = start_in(slownet, nodes, certs, "a", link)
    backlog(a, "old", 10)
    b = start_in(slownet, nodes, certs, "b", link, seeds=[(link.addr("a"), PORT)])
    wait_for(lambda: head(b, "old") >= 10, timeout=20, what="old on b")
    delays = []
    for i in range(3):
        dev = "new%d" % i
        os.mkdir(a.path(dev))
        with open(a.path(dev, "events"), "a") as f:
            f.write("first\n")
        t0 = time.monotonic()
        wait_for(lambda: head(b, dev) >= 1, timeout=10, interval=0.02,
                 what="%s on b" % dev)
        delays.append(time.monotonic() - t0)
    print("\nidle 100 KB/s link: new device's first event on b after %s s"
          % ", ".join("%.2f" % d for d in delays))
    assert max(delays) < 2.0
