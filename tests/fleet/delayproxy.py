"""A delay line on every link of the fleet, for a kernel without netem.

This kernel has tc's tbf (rates) but no netem (delay), so the fleet harness
delays links in user space, the way tests/integration/faultproxy.py does for
the integration tests, but as one process for the whole LAN and as a real
delay line (each chunk is held for the link's delay from the moment it was
read, so a link carries its full rate; faultproxy's "delay" mode sleeps
before each chunk, which also caps the rate).

Addressing (fleet.py sets it up; nothing here routes by itself):

    LAN      L.i      node i's interface on the bridge (L = 10.214.1)
    virtual  V.i      node i as the other nodes know it (V = 10.214.101)
    router   L.254    the bridge's own namespace, where this runs

Every node routes V.0/24 via L.254, and the router's namespace treats the
whole of V.0/24 as local (ip route add local V.0/24 dev lo).  A daemon
listens on 0.0.0.0:PORT and is given seeds at V addresses, so every
connection it dials reaches this proxy, which reads the destination from
the address dialled (getsockname) and the source from the peer address,
then connects from V.src to L.dst:PORT.  The daemon on the far side sees
the dialler at V.src and passes that address on in peer exchange, so every
connection of the fleet runs through here, one per pair and direction.

Each direction of a connection is a queue of (due time, bytes): bytes read
at t are sent at t + delay(src, dst).  A queue holds at most CAP bytes;
beyond that the proxy stops reading, and TCP's flow control does the rest.

Commands on stdin, one a line:
    split I J ...   a partition: nothing is forwarded between the nodes
                    numbered I, J, ... and the others (bytes wait in the
                    queues and in the sockets, as in a real silent
                    partition nothing is reset; new connections across
                    are accepted but carry nothing)
    heal            forwarding resumes (queued bytes go at once)
    stats           prints "stats conns=N bytes=B" on stdout
    quit            exits
It prints "ready" on stdout once it listens.

    nsenter --net=/run/netns/SW python3 delayproxy.py --port 7400 \
        --lan 10.214.1 --virtual 10.214.101 --delay-ms 20-200 --seed 1 --tag DIR
"""
import argparse
import collections
import errno
import hashlib
import os
import selectors
import socket
import sys
import time

CAP = 4 << 20                   # bytes queued per direction at most
CHUNK = 65536


def parse_delay(spec):
    """"N" or "LO-HI" (milliseconds) -> (lo, hi) in seconds."""
    if spec is None or spec == "":
        return (0.0, 0.0)
    parts = spec.split("-")
    if len(parts) == 1:
        lo = hi = float(parts[0])
    elif len(parts) == 2:
        lo, hi = float(parts[0]), float(parts[1])
    else:
        raise ValueError("delay: N or LO-HI milliseconds, not %r" % spec)
    if lo < 0 or hi < lo:
        raise ValueError("delay: need 0 <= LO <= HI, not %r" % spec)
    return (lo / 1000.0, hi / 1000.0)


def link_delay(lo, hi, seed, i, j):
    """The one-way delay (s) of the link between nodes i and j: the same
    both ways, fixed for a seed, uniform in [lo, hi]."""
    if hi == lo:
        return lo
    a, b = min(i, j), max(i, j)
    h = hashlib.sha256(b"%d:%d:%d" % (seed, a, b)).digest()
    u = int.from_bytes(h[:8], "big") / float(1 << 64)
    return lo + (hi - lo) * u


class Pipe:
    """One direction of a connection: read from src, sent to dst."""

    def __init__(self, conn, src, dst, delay, a, b):
        self.conn = conn
        self.src, self.dst = src, dst
        self.delay = delay
        self.a, self.b = a, b           # node numbers: from a to b
        self.q = collections.deque()    # [due, bytes]
        self.queued = 0
        self.eof = False
        self.blocked_write = False      # dst said EAGAIN


class Conn:
    def __init__(self, proxy, down, up, src, dst, delay):
        self.proxy = proxy
        self.down, self.up = down, up   # the dialler's socket, the target's
        self.connected = False
        self.closed = False
        self.ab = Pipe(self, down, up, delay, src, dst)
        self.ba = Pipe(self, up, down, delay, dst, src)
        self.masks = {down: 0, up: 0}


class Proxy:
    def __init__(self, args):
        self.port = args.port
        self.lan = args.lan
        self.virtual = args.virtual
        self.lo, self.hi = parse_delay(args.delay_ms)
        self.seed = args.seed
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        self.cut = set()                # node numbers cut off
        self.pending = set()            # pipes with bytes queued
        self.forwarded = 0
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("0.0.0.0", self.port))
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.sel.register(self.lsock, selectors.EVENT_READ, ("listen", None))
        os.set_blocking(0, False)
        self.sel.register(0, selectors.EVENT_READ, ("stdin", None))
        self.inbuf = b""
        self.running = True

    def node_of(self, addr, prefix):
        parts = addr.rsplit(".", 1)
        if len(parts) != 2 or parts[0] != prefix:
            return None
        return int(parts[1])

    def blocked(self, p):
        return bool(self.cut) and ((p.a in self.cut) != (p.b in self.cut))

    # --- sockets ---

    def accept(self):
        while True:
            try:
                c, peer = self.lsock.accept()
            except BlockingIOError:
                return
            except OSError:
                return
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            dst_addr = c.getsockname()[0]
            src = self.node_of(peer[0], self.lan)
            dst = self.node_of(dst_addr, self.virtual)
            if src is None or dst is None:
                c.close()
                continue
            up = socket.socket()
            up.setblocking(False)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                up.bind(("%s.%d" % (self.virtual, src), 0))
                up.connect_ex(("%s.%d" % (self.lan, dst), self.port))
            except OSError:
                up.close()
                c.close()
                continue
            conn = Conn(self, c, up, src, dst,
                        link_delay(self.lo, self.hi, self.seed, src, dst))
            self.conns.add(conn)
            self.sel.register(c, 0 or selectors.EVENT_READ, ("sock", conn))
            conn.masks[c] = selectors.EVENT_READ
            self.sel.register(up, selectors.EVENT_WRITE, ("sock", conn))
            conn.masks[up] = selectors.EVENT_WRITE

    def close(self, conn):
        if conn.closed:
            return
        conn.closed = True
        for s in (conn.down, conn.up):
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.pending.discard(conn.ab)
        self.pending.discard(conn.ba)
        self.conns.discard(conn)

    def update(self, conn):
        """Re-registers both sockets for what they wait for now."""
        if conn.closed:
            return
        for s in (conn.down, conn.up):
            if s is conn.up and not conn.connected:
                m = selectors.EVENT_WRITE
            else:
                out = conn.ab if s is conn.down else conn.ba   # s reads
                inn = conn.ba if s is conn.down else conn.ab   # s is written
                m = 0
                if not out.eof and out.queued < CAP:
                    m |= selectors.EVENT_READ
                if inn.blocked_write:
                    m |= selectors.EVENT_WRITE
            if m != conn.masks[s]:
                if conn.masks[s] == 0:
                    self.sel.register(s, m, ("sock", conn))
                elif m == 0:
                    self.sel.unregister(s)
                else:
                    self.sel.modify(s, m, ("sock", conn))
                conn.masks[s] = m

    def on_sock(self, conn, s, ev, now):
        if conn.closed:
            return
        if s is conn.up and not conn.connected:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.close(conn)
                return
            conn.connected = True
            self.flush(conn.ab, now)
        if ev & selectors.EVENT_READ:
            p = conn.ab if s is conn.down else conn.ba
            try:
                data = s.recv(CHUNK)
            except BlockingIOError:
                data = None
            except OSError:
                self.close(conn)
                return
            if data == b"":
                p.eof = True
                if self.blocked(p):
                    # lost in the partition: nothing of it will arrive
                    self.close(conn)
                    return
            elif data:
                p.q.append([now + p.delay, data])
                p.queued += len(data)
            self.pending.add(p)
            self.flush(p, now)
        if not conn.closed and ev & selectors.EVENT_WRITE and conn.connected:
            p = conn.ba if s is conn.down else conn.ab
            p.blocked_write = False
            self.flush(p, now)
        self.update(conn)

    def flush(self, p, now):
        conn = p.conn
        if conn.closed or not conn.connected or self.blocked(p):
            return
        while p.q and p.q[0][0] <= now:
            data = p.q[0][1]
            try:
                n = p.dst.send(data)
            except BlockingIOError:
                p.blocked_write = True
                break
            except OSError:
                self.close(conn)
                return
            self.forwarded += n
            p.queued -= n
            if n < len(data):
                p.q[0][1] = data[n:]
                p.blocked_write = True
                break
            p.q.popleft()
        if not p.q:
            self.pending.discard(p)
            if p.eof:
                # the other side closed and everything it sent is through
                self.close(conn)
                return
        self.update(conn)

    # --- control ---

    def on_stdin(self):
        try:
            data = os.read(0, 4096)
        except BlockingIOError:
            return
        if not data:
            self.running = False
            return
        self.inbuf += data
        while b"\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\n", 1)
            words = line.decode().split()
            if not words:
                continue
            if words[0] == "split":
                self.cut = set(int(w) for w in words[1:])
            elif words[0] == "heal":
                self.cut = set()
                now = time.monotonic()
                for p in list(self.pending):
                    self.flush(p, now)
            elif words[0] == "stats":
                print("stats conns=%d bytes=%d" % (len(self.conns),
                                                   self.forwarded), flush=True)
            elif words[0] == "quit":
                self.running = False

    def run(self):
        print("ready", flush=True)
        while self.running:
            now = time.monotonic()
            timeout = 0.5
            for p in self.pending:
                if p.q and not self.blocked(p) and p.conn.connected:
                    timeout = min(timeout, max(0.0, p.q[0][0] - now))
            for key, ev in self.sel.select(timeout):
                kind, conn = key.data
                now = time.monotonic()
                if kind == "listen":
                    self.accept()
                elif kind == "stdin":
                    self.on_stdin()
                else:
                    self.on_sock(conn, key.fileobj, ev, now)
            now = time.monotonic()
            for p in list(self.pending):
                if p.q and p.q[0][0] <= now and not p.blocked_write:
                    self.flush(p, now)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--lan", required=True, help="three octets, e.g. 10.214.1")
    ap.add_argument("--virtual", required=True, help="e.g. 10.214.101")
    ap.add_argument("--delay-ms", default="0", help="N or LO-HI")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tag", default="", help="ignored (names the run)")
    args = ap.parse_args()
    try:
        Proxy(args).run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
