"""SPEC §7 and §9: the mutual-TLS mesh and its state machine.

Real nodes over real TLS on 127.0.0.1, each on its own port; hostile
clients are Python sockets and ssl contexts speaking the wire format.
"""
import json
import os
import signal
import socket
import ssl
import struct
import time

import pytest

from conftest import free_port, read_file, tls_args, wait_for

FAST = "peering: { handshake_ms = 1500; heartbeat_ms = 400; backoff_ms = [ 200, 400, 800 ]; purgatory_ms = 60000; };\n"


def start(nodes, certs, name, seeds=(), config=FAST, port=None):
    n = nodes(name)
    n.start_peer(certs, port or free_port(), seeds, config=config)
    return n


def test_three_nodes_meet_through_exchange(nodes, certs):
    c = start(nodes, certs, "c")
    b = start(nodes, certs, "b", [c.port])
    a = start(nodes, certs, "a", [b.port])
    wait_for(lambda: a.active() == ["b", "c"] and c.active() == ["a", "b"],
             what="a and c active through b")
    assert b.active() == ["a", "c"]
    # each pair has exactly one active connection
    for n in (a, b, c):
        ids = [p["id"] for p in n.peers() if p["state"] == "active"]
        assert len(ids) == len(set(ids))
    entry = [p for p in a.peers() if p["id"] == "c" and p["state"] == "active"][0]
    assert entry["address"] == "127.0.0.1:%d" % c.port
    for key in ("since", "attempt", "reason", "state"):
        assert key in entry
    table = read_file(a.path(".peers"))
    assert table.splitlines()[0].split()[:5] == ["ID", "ADDRESS", "STATE", "SINCE", "ATTEMPT"]
    assert any(l.split()[:3] == ["c", "127.0.0.1:%d" % c.port, "active"]
               for l in table.splitlines()[1:])


def test_restart_redials_from_history(nodes, certs):
    c = start(nodes, certs, "c")
    b = start(nodes, certs, "b", [c.port])
    a = start(nodes, certs, "a", [b.port])
    wait_for(lambda: a.active() == ["b", "c"], what="a meets b and c")
    assert a.stop() == 0
    wait_for(lambda: "a" not in b.active() and "a" not in c.active(), what="a gone")
    # no seeds at all this time: the history brings both back
    a.start_peer(certs, a.port, (), config=FAST)
    wait_for(lambda: a.active() == ["b", "c"], what="a back with b and c")
    wait_for(lambda: "a" in c.active(), what="c sees a")


def test_self_seed_goes_to_purgatory(nodes, certs):
    port, dead = free_port(), free_port()
    dead_addr = "127.0.0.1:%d" % dead            # nobody listens there
    a = start(nodes, certs, "a", ["127.0.0.1:%d" % port, dead_addr], port=port)
    wait_for(lambda: any(p["state"] == "purgatory" for p in a.peers()), what="purgatory")
    p = [p for p in a.peers() if p["state"] == "purgatory"][0]
    assert p["reason"] == "connection to ourselves"
    assert p["address"] == "127.0.0.1:%d" % port
    seen = a.log().count("connection to ourselves")
    # a barrier on the daemon's own timers: the dead seed is redialled after
    # each step of backoff_ms (200, 400, 800); once it has been tried three
    # times (600 ms), a redial of the purgatory entry (200 ms) would have come
    wait_for(lambda: [q["attempt"] for q in a.peers() if q["address"] == dead_addr][0] >= 3,
             what="the dead seed redialled three times")
    assert [q["state"] for q in a.peers() if q["address"] != dead_addr] == ["purgatory"]
    assert a.log().count("connection to ourselves") == seen


def test_simultaneous_dial_keeps_one_connection(nodes, certs):
    pa, pb = free_port(), free_port()
    a = nodes("a")
    b = nodes("b")
    a.start_peer(certs, pa, [pb], config=FAST, wait=False)
    b.start_peer(certs, pb, [pa], config=FAST, wait=False)
    wait_for(lambda: os.path.ismount(a.mnt) and os.path.ismount(b.mnt), what="mounts")
    wait_for(lambda: a.active() == ["b"] and b.active() == ["a"], what="a-b active")
    # every connection either made has been decided on: none is still being
    # dialled, introduced or waiting for a redial
    wait_for(lambda: all(p["state"] in ("active", "purgatory") for n in (a, b)
                         for p in n.peers()), what="both dials decided")
    for n, other in ((a, "b"), (b, "a")):
        states = [p["state"] for p in n.peers() if p["id"] == other]
        assert states.count("active") == 1, n.peers()
    # both ends kept the same connection: the one a (the smaller id) dialled
    a_active = [p for p in a.peers() if p["state"] == "active"][0]
    b_active = [p for p in b.peers() if p["state"] == "active"][0]
    assert a_active["direction"] == "out" and b_active["direction"] == "in"


def test_lifesupport_and_heartbeat(nodes, certs):
    b = start(nodes, certs, "b")
    a = start(nodes, certs, "a", [b.port])
    wait_for(lambda: a.active() == ["b"], what="active")
    # a silent peer: stopped, not dead
    os.kill(b.pid(), signal.SIGSTOP)
    try:
        wait_for(lambda: any(p["state"] in ("lifesupport", "connecting") and
                             "silent" in p["reason"] for p in a.peers()),
                 what="silence noticed")
    finally:
        os.kill(b.pid(), signal.SIGCONT)
    wait_for(lambda: a.active() == ["b"], what="back after SIGCONT")
    # a dead peer: redialled with backoff, the attempts counted
    b.kill()
    wait_for(lambda: any(p["state"] == "lifesupport" and p["attempt"] >= 2
                         for p in a.peers()), what="backoff attempts")
    assert a.status()["node"] == "a"


def hello_frame(node_id, listen="", version=2):
    def s(x):
        x = x.encode()
        return struct.pack(">H", len(x)) + x
    body = bytes([1]) + struct.pack(">H", version) + s(node_id) + s(listen) + struct.pack(">Q", 7)
    return struct.pack(">I", len(body)) + body


def tls_client(certs, node_id, port, ca="ca1"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(os.path.join(str(certs), "ca1", "ca.pem"))
    d = os.path.join(str(certs), ca)
    ctx.load_cert_chain(os.path.join(d, node_id + ".pem"), os.path.join(d, node_id + ".key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw)


def read_frames(sock, timeout=5):
    """Frames until the peer closes; [(type, payload)]."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                break
            data += b
    except (ssl.SSLError, OSError):
        pass
    frames = []
    while len(data) >= 5:
        n = struct.unpack(">I", data[:4])[0]
        frames.append((data[4], data[5:4 + n]))
        data = data[4 + n:]
    return frames


@pytest.fixture
def pair(nodes, certs):
    b = start(nodes, certs, "b")
    a = start(nodes, certs, "a", [b.port])
    wait_for(lambda: a.active() == ["b"], what="a-b active")
    os.mkdir(a.path("dev"))
    return a, b


def still_serving(a):
    with open(a.path("dev", "events"), "a") as f:
        f.write("still here\n")
    assert read_file(a.path("dev", "events")).endswith("still here\n")
    assert a.active() == ["b"]


def test_refuses_certificate_from_another_ca(pair, certs):
    a, b = pair
    try:
        # TLS 1.3: the client finishes first; the node then refuses its
        # certificate, so it never sees the node's introduction
        s = tls_client(certs, "a", a.port, ca="ca2")
        s.sendall(hello_frame("a"))
        frames = read_frames(s)
        s.close()
    except (ssl.SSLError, OSError):
        frames = []
    assert frames == []
    wait_for(lambda: "certificate verify failed" in a.log(), what="logged")
    still_serving(a)


def test_refuses_claimed_id_other_than_certificate(pair, certs):
    a, b = pair
    s = tls_client(certs, "x", a.port)
    s.sendall(hello_frame("c"))
    frames = read_frames(s)
    s.close()
    byes = [f for f in frames if f[0] == 4]
    assert byes and b"certificate says x" in byes[0][1]
    wait_for(lambda: "introduced as c, certificate says x" in a.log(), what="logged")
    still_serving(a)


def test_refuses_unknown_version(pair, certs):
    a, b = pair
    s = tls_client(certs, "x", a.port)
    s.sendall(hello_frame("x", version=99))
    frames = read_frames(s)
    s.close()
    assert any(f[0] == 4 and b"version 99" in f[1] for f in frames)
    still_serving(a)


def test_plain_tcp_silent_client_times_out(pair):
    a, b = pair
    s = socket.create_connection(("127.0.0.1", a.port))
    t = time.monotonic()
    s.settimeout(10)
    assert s.recv(100) == b""          # closed by the node
    assert time.monotonic() - t < 5    # handshake_ms = 1500: a 3x margin
    s.close()
    wait_for(lambda: "handshake timeout" in a.log(), what="logged")
    still_serving(a)


def test_plain_tcp_garbage_client(pair):
    a, b = pair
    s = socket.create_connection(("127.0.0.1", a.port))
    s.sendall(os.urandom(3000))
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()
    still_serving(a)


def test_frame_before_hello_and_oversized_header(pair, certs):
    a, b = pair
    s = tls_client(certs, "x", a.port)
    s.sendall(struct.pack(">IBQ", 9, 2, 1))          # a PING before HELLO
    assert any(f[0] == 4 and b"before introduction" in f[1] for f in read_frames(s))
    s.close()
    s = tls_client(certs, "x", a.port)
    s.sendall(struct.pack(">I", 0xFFFFFFFF) + b"\x01")   # 4 GiB declared
    read_frames(s)
    s.close()
    wait_for(lambda: "frame too large" in a.log(), what="logged")
    still_serving(a)


def test_status_lists_peer_fields(pair):
    a, b = pair
    st = a.status()
    assert st["listen"] == "127.0.0.1:%d" % a.port
    p = st["peers"][0]
    assert set(p) >= {"id", "address", "state", "since", "attempt", "reason"}
    assert p["id"] == "b" and p["state"] == "active" and p["attempt"] == 0
    assert abs(p["since"] - time.time()) < 120


def test_id_must_match_certificate(nodes, certs, tmp_path):
    n = nodes("a")
    import subprocess
    from conftest import ODOFS
    r = subprocess.run([ODOFS, "-f", "--id", "a", "--data", str(tmp_path / "d"),
                        "--listen", "127.0.0.1:%d" % free_port()] + tls_args(certs, "b") + [n.mnt],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "does not match the CN b" in r.stderr


def test_seed_name_dials_every_address(nodes, certs, tmp_path):
    """A seed name that resolves to two addresses: both are dialled.

    The dialling node runs in a private mount namespace whose /etc/hosts
    maps one name to 127.0.0.1 and 127.0.0.2, where b and c listen on the
    same port; b and c (outside it) see it arrive.
    """
    port = free_port()
    b = nodes("b")
    b.start_peer(certs, port, config=FAST)
    c = nodes("c")
    c.start(*(tls_args(certs, "c") + ["--listen", "127.0.0.2:%d" % port]), config=FAST)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 journal.test\n127.0.0.2 journal.test\n")
    a = nodes("a")
    a.wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]
    a.start(*(tls_args(certs, "a") + ["--listen", "127.0.0.1:%d" % free_port(),
                                      "--peer", "journal.test:%d" % port]),
            config=FAST, wait=False)
    wait_for(lambda: "a" in b.active() and "a" in c.active(), timeout=15,
             what="a dialled both addresses of journal.test")


def test_tls_without_introduction_times_out(pair, certs):
    a, b = pair
    s = tls_client(certs, "x", a.port)     # TLS completes, then nothing
    t = time.monotonic()
    frames = read_frames(s, timeout=10)
    s.close()
    assert time.monotonic() - t < 5    # handshake_ms = 1500: a 3x margin
    assert any(f[0] == 4 and b"no introduction in time" in f[1] for f in frames)
    still_serving(a)


def test_learnt_peer_forgotten_seed_kept(nodes, certs):
    c = start(nodes, certs, "c")
    b = start(nodes, certs, "b", [c.port])
    a = start(nodes, certs, "a", [b.port])
    wait_for(lambda: a.active() == ["b", "c"], what="a knows c through b")
    c.kill()
    # c was learnt, not a seed: after the last backoff step it is forgotten
    # (a purgatory entry from the first, duplicate, connection may remain)
    wait_for(lambda: all(p["id"] != "c" or p["state"] == "purgatory"
                         for p in a.peers()), timeout=15, what="c forgotten")
    assert "peer c (127.0.0.1:%d) forgotten after 3 attempts" % c.port in a.log()
    b.kill()
    # b is a seed: it stays, redialled at the last step for ever
    wait_for(lambda: any(p["id"] == "b" and p["state"] == "lifesupport" and
                         p["attempt"] > 3 for p in a.peers()), timeout=15,
             what="b still dialled")
    assert [p["seed"] for p in a.peers() if p["id"] == "b"] == [True]


def test_purgatory_entry_expires(nodes, certs):
    port = free_port()
    conf = FAST.replace("purgatory_ms = 60000", "purgatory_ms = 700")
    a = start(nodes, certs, "a", ["127.0.0.1:%d" % port], config=conf, port=port)
    wait_for(lambda: any(p["state"] == "purgatory" for p in a.peers()), what="purgatory")
    wait_for(lambda: a.peers() == [], what="purgatory entry deleted")


def test_exchange_off(nodes, certs):
    conf = FAST.replace("purgatory_ms", "exchange = false; purgatory_ms")
    c = start(nodes, certs, "c", config=conf)
    b = start(nodes, certs, "b", [c.port], config=conf)
    dead = free_port()                           # nobody listens there
    a = start(nodes, certs, "a", [b.port, dead], config=conf)
    wait_for(lambda: a.active() == ["b"] and b.active() == ["a", "c"], what="line")
    # a barrier on a's own timers: b's peer list would have reached a right
    # after the introduction, and a would have dialled c at once; a dead seed
    # tried three times (at 0, 200 and 600 ms) shows that time has passed
    dead_addr = "127.0.0.1:%d" % dead
    wait_for(lambda: [p["attempt"] for p in a.peers() if p["address"] == dead_addr][0] >= 3,
             what="the dead seed redialled three times")
    assert a.active() == ["b"] and c.active() == ["b"]
