"""The odofs wire format in Python, for hostile-peer tests (SPEC §9).

Only what the tests need: frame encoding and reading, and the messages a
peer sends. Mirrors net/wire.h; kept small on purpose.
"""
import os
import socket
import ssl
import struct

HELLO, PING, PONG, BYE, PEERS = 1, 2, 3, 4, 5
CATALOGUE, SUBSCRIBE, UNSUBSCRIBE, EVENTS, SNAPSHOT, REJECT = 16, 17, 18, 19, 20, 21


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def frame(type_, body=b""):
    return struct.pack(">IB", len(body) + 1, type_) + body


VERSION = 2


def hello(node_id, listen="", version=VERSION):
    return frame(HELLO, struct.pack(">H", version) + s(node_id) + s(listen) + struct.pack(">Q", 1))


def catalogue(entries, full=True):
    """entries: dicts with device, epoch, source, created, first, head, snapshot, role, upstream, hops."""
    body = struct.pack(">BH", 1 if full else 0, len(entries))
    for e in entries:
        body += s(e["device"]) + struct.pack(">Q", e["epoch"]) + s(e["source"])
        body += struct.pack(">QQQQB", e.get("created", 1), e.get("first", 1), e["head"],
                            e.get("snapshot", 0), e.get("role", 0))
        body += s(e.get("upstream", "")) + struct.pack(">B", e.get("hops", 0 if e.get("role", 0) == 0 else 255))
    return frame(CATALOGUE, body)


def ping(token):
    return frame(PING, struct.pack(">Q", token))


def subscribe(device, epoch, from_rev, sub):
    return frame(SUBSCRIBE, s(device) + struct.pack(">QQI", epoch, from_rev, sub))


def events(device, sub, first, lines, head=None):
    blob = b"".join(l + b"\n" for l in lines)
    if head is None:
        head = first + len(lines) - 1
    return frame(EVENTS, s(device) + struct.pack(">IQIQI", sub, first, len(lines), head,
                                                 len(blob)) + blob)


def client(certs_dir, node_id, port, ca="ca1", timeout=10):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(certs_dir, "ca1", "ca.pem"))
    d = os.path.join(certs_dir, ca)
    ctx.load_cert_chain(os.path.join(d, node_id + ".pem"), os.path.join(d, node_id + ".key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw)


class Reader:
    """Reads whole frames from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def next(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    t, body = self.buf[4], self.buf[5:4 + n]
                    self.buf = self.buf[4 + n:]
                    return t, body
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.buf += data

    def until(self, type_, timeout=10):
        while True:
            f = self.next(timeout)
            if f is None or f[0] == type_:
                return f


def barrier(sock, reader, token=0x0d0f5):
    """A PING/PONG round trip: a node handles one connection's frames in
    order, each to its end, so once the PONG for this token is back every
    frame sent before the PING has been processed."""
    sock.sendall(ping(token))
    while True:
        f = reader.next()
        assert f is not None, "connection closed before the pong"
        if f[0] == PONG and struct.unpack(">Q", f[1])[0] == token:
            return


def parse_subscribe(body):
    n = struct.unpack(">H", body[:2])[0]
    device = body[2:2 + n].decode()
    epoch, from_rev, sub = struct.unpack(">QQI", body[2 + n:2 + n + 20])
    return device, epoch, from_rev, sub
