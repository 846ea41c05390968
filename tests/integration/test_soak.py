"""Issue 8: the chaos soak.  Four nodes, each the source of its own device
and a replica of the others', continuous appends, random SIGKILL/restart of
nodes and random cuts of links through fault proxies; at the end every
node's copy of every device is byte-identical to the source's, with no gap
and no duplicate.  ODOFS_SOAK_SECONDS sets the duration (default 30; CI
runs 120).  `bash tests/soak/run.sh SECONDS` runs it alone."""
import os
import random
import threading
import time

from conftest import free_port, is_live_mount, wait_for
from faultproxy import FaultProxy

CONF = ("peering: { tick_ms = 100; heartbeat_ms = 1000; handshake_ms = 2000; "
        "backoff_ms = [ 200, 400, 800 ]; exchange = false; };\n"
        "sync: { evaluate_ms = 500; stall_ms = 2000; };\n")


def test_chaos_soak(nodes, certs):
    seconds = float(os.environ.get("ODOFS_SOAK_SECONDS", "30"))
    names = ["a", "b", "c", "d"]
    ports = {n: free_port() for n in names}
    proxies = {(x, y): FaultProxy(ports[y]) for x in names for y in names if x < y}
    seeds = {n: [proxies[(n, y)].port for y in names if n < y] for n in names}
    ns = {}
    rnd = random.Random(int(os.environ.get("ODOFS_SOAK_SEED", "8")))
    acked = {n: [] for n in names}
    up = {n: threading.Event() for n in names}
    stop = threading.Event()
    figures = {"kills": 0, "cuts": 0}

    def boot(n):
        ns[n].start_peer(certs, ports[n], seeds[n], config=CONF)
        up[n].set()

    def writer(n):
        seq = 0
        fd = None
        path = ns[n].path("dev-" + n, "events")
        while not stop.is_set():
            if not up[n].is_set():
                time.sleep(0.05)
                continue
            k = rnd.randint(1, 20)
            try:
                if fd is None:
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                os.write(fd, "".join("%s-%08d\n" % (n, seq + i) for i in range(k)).encode())
                acked[n].extend(range(seq, seq + k))
            except OSError:
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                    fd = None
                time.sleep(0.05)
            seq += k
            time.sleep(0.005)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    try:
        for n in names:
            ns[n] = nodes(n)
            boot(n)
            os.mkdir(ns[n].path("dev-" + n))
        threads = [threading.Thread(target=writer, args=(n,)) for n in names]
        for t in threads:
            t.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rnd.uniform(0.5, 2.0))
            if rnd.random() < 0.5:
                victim = rnd.choice(names)
                up[victim].clear()
                ns[victim].kill()
                figures["kills"] += 1
                time.sleep(rnd.uniform(0.2, 1.5))
                boot(victim)
            else:
                link = rnd.choice(list(proxies))
                proxies[link].set("cut")
                figures["cuts"] += 1
                time.sleep(rnd.uniform(0.5, 2.0))
                proxies[link].set("pass")
        stop.set()
        for t in threads:
            t.join()
        for p in proxies.values():
            p.set("pass")
        t0 = time.monotonic()

        def converged():
            for src in names:
                want = open(ns[src].path("dev-" + src, "events"), "rb").read()
                for other in names:
                    try:
                        got = open(ns[other].path("dev-" + src, "events"), "rb").read()
                    except OSError:
                        return False
                    if got != want:
                        return False
            return True
        wait_for(converged, timeout=90, interval=0.2, what="convergence after the chaos")
        took = time.monotonic() - t0
        total = 0
        for n in names:
            lines = open(ns[n].path("dev-" + n, "events")).read().splitlines()
            seqs = [int(l.split("-")[1]) for l in lines]
            assert seqs == sorted(set(seqs)), "%s: a gap in order or a duplicate" % n
            missing = set(acked[n]) - set(seqs)
            assert not missing, "%s: %d acknowledged events lost" % (n, len(missing))
            assert ns[n].info("dev-" + n)["head"] == len(lines)
            total += len(lines)
        print("soak %.0f s: %d events appended, %d kills, %d cuts, converged in %.1f s"
              % (seconds, total, figures["kills"], figures["cuts"], took))
    finally:
        stop.set()
        for p in proxies.values():
            p.close()
