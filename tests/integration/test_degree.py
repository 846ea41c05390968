"""SPEC §7: peering.max_peers bounds the active connections, dialled and
accepted alike; a full node's goodbye names other peers, so a fleet forms
one connected overlay of bounded degree, and data reaches nodes that are
not connected to its source by relay (§8.2)."""
import os
import threading
import time

from conftest import free_port, wait_for
from test_replication import CONF, start
from test_upstreams import assert_no_cycle


def overlay(ns):
    """{id: set of active peer ids}."""
    return {n.id: set(n.active()) for n in ns}


def connected(graph):
    seen, todo = set(), [next(iter(graph))]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        todo.extend(graph.get(v, ()))
    return seen == set(graph)


def test_twelve_nodes_with_max_peers_4(nodes, certs):
    n = 12
    cfg = CONF % ("max_peers = 4;", "")
    ports = [free_port() for _ in range(n)]
    ns = []
    # everyone knows one seed, as a fleet installed from one image would
    for i in range(n):
        ns.append(start(nodes, certs, "n%02d" % i, [] if i == 0 else [ports[0]],
                        config=cfg, port=ports[i]))
    worst = [0]
    stop = threading.Event()

    def watch():
        # the bound holds all along, not just at the end
        while not stop.is_set():
            for x in ns:
                try:
                    worst[0] = max(worst[0], len(x.active()))
                except (OSError, ValueError):
                    pass
            stop.wait(0.05)
    t = threading.Thread(target=watch)
    t.start()
    try:
        for x in ns:
            os.mkdir(x.path("dev-" + x.id))
            with open(x.path("dev-" + x.id, "events"), "a") as f:
                f.write("".join("%s-%d\n" % (x.id, k) for k in range(10)))
        devs = ["dev-" + x.id for x in ns]

        def everywhere():
            for x in ns:
                for d in devs:
                    try:
                        if x.info(d)["head"] != 10:
                            return False
                    except (FileNotFoundError, ValueError):
                        return False
            return True
        wait_for(everywhere, timeout=90, interval=0.2,
                 what="every device on every node")
    finally:
        stop.set()
        t.join()
    g = overlay(ns)
    print("overlay:", {k: sorted(v) for k, v in g.items()})
    assert worst[0] <= 4, "a node had %d active peers" % worst[0]
    assert all(len(v) <= 4 for v in g.values())
    assert connected(g)
    # the seed did not take everyone: most nodes reach most sources by relay
    far = sum(1 for x in ns for y in ns if y.id != x.id and y.id not in g[x.id])
    assert far >= n * (n - 1) // 2
    for d in devs:
        assert_no_cycle(ns, d)
    for x in ns:
        for d in devs:
            with open(x.path(d, "events")) as f:
                assert f.read() == "".join("%s-%d\n" % (d[4:], k) for k in range(10))


def test_full_node_names_its_peers(nodes, certs):
    """a takes one peer; c, which knows only a, is turned away with a's
    peer b named, connects to b instead, and gets a's device through b."""
    a = start(nodes, certs, "a", config=CONF % ("max_peers = 1;", ""))
    b = start(nodes, certs, "b", [a.port])
    wait_for(lambda: a.active() == ["b"], what="a-b active")
    os.mkdir(a.path("dev"))
    with open(a.path("dev", "events"), "a") as f:
        f.write("from-a\n")
    c = start(nodes, certs, "c", [a.port])
    wait_for(lambda: c.active() == ["b"], what="c connected to b")
    wait_for(lambda: os.path.isdir(c.path("dev")) and c.info("dev")["head"] == 1,
             what="a's device on c")
    assert c.info("dev")["subscribed_to"] == "b" and c.info("dev")["hops"] == 2
    assert a.active() == ["b"]
    assert "at max_peers (1)" in c.log()
    assert "peer b (127.0.0.1:%d) learnt from a" % b.port in c.log()


def test_peers_learnt_together_are_all_tried_soon(nodes, certs):
    """A leaf dials a hub and learns the hub's eight peers (all full) from
    one PEERS frame while one of its two dial slots is the hub's.  The
    eight wait for the other slot; each must be tried soon, not one each
    peering.backoff_ms[0].  Seen in a fleet: a leaf knew the one node with
    room but dialled it a minute later, because all its waiting entries
    fired together on one timer, one took the slot and the rest waited
    again.

    The old code tried them one a backoff_ms[0] (1 s here): the last after
    7 s.  Now each waits its own turn, spread over [0.5, 1.5] s, and one
    whose turn finds the slot held by a dial under way (a refusal takes
    milliseconds) looks again 50 - 150 ms later: all are tried within
    1.5 s and a little (0.95 - 1.49 s measured, under ASan too).  The
    bound is twice the longest turn."""
    k = 8
    b = 1000
    hub = start(nodes, certs, "n00", config=CONF % ("max_peers = %d;" % (k + 1), ""))
    full = [start(nodes, certs, "n%02d" % (1 + i), [hub.port],
                  config=CONF % ("max_peers = 1;", "")) for i in range(k)]
    wait_for(lambda: hub.active() == sorted(f.id for f in full), what="the hub's peers")
    cfg = ("peering: { tick_ms = 100; heartbeat_ms = 60000; handshake_ms = 3000; "
           "backoff_ms = [ %d, 60000 ]; max_peers = 4; };\n" % b)
    leaf = start(nodes, certs, "n%02d" % (1 + k), [hub.port], config=cfg)
    # a learnt entry has no id until it is introduced: known by address
    fulls = set("127.0.0.1:%d" % f.port for f in full)

    def learnt():
        return fulls <= set(p["address"] for p in leaf.peers())
    wait_for(learnt, interval=0.02, what="the leaf learnt the hub's peers")
    t0 = time.monotonic()

    def tried():
        # a learnt entry is forgotten at its third refusal, which the
        # second step of backoff_ms puts 60 s on: all are still listed
        seen = {p["address"]: p["attempt"] for p in leaf.peers()
                if p["address"] in fulls}
        return len(seen) == k and min(seen.values()) >= 1
    wait_for(tried, timeout=30, interval=0.02, what="every learnt peer tried")
    took = time.monotonic() - t0
    print("all %d learnt peers tried after %.2f s" % (k, took))
    assert took <= 2 * 1.5 * b / 1000, "the last learnt peer was tried after %.2f s" % took
    assert leaf.active() == [hub.id]
    for f in full:
        assert "at max_peers (1)" in f.log()
