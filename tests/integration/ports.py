"""Listening ports for daemons that tests start later."""

import os
import random
import socket
import time


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out = set()


def free_port():
    """A port for a daemon to listen on later, below the kernel's ephemeral
    range: a port from bind(0) is ephemeral, and between the moment it is
    released and the moment the daemon binds it, any outgoing connection
    (a peer's dial, a proxy's connect) may be given it as its local port.
    A port below the range is only ever taken by an explicit bind."""
    low = min(_ephemeral_low(), 32768)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(1000):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise AssertionError("no free port below %d" % low)
