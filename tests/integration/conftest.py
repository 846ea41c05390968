"""Fixtures for the odofs integration tests.

Every test gets private temporary directories, real `odofs -f` daemons on
real mountpoints, and a teardown that unmounts and stops each daemon by PID
even when the test failed. Each daemon's log is scanned at teardown for
sanitizer reports.
"""
import json
import os
import signal
import subprocess
import time

import pytest

from ports import free_port  # noqa: F401 (tests import it from here)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ODOFS = os.environ.get("ODOFS_BIN", os.path.join(ROOT, "build", "fs", "odofs"))

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "WARNING: ThreadSanitizer")


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(interval)


def is_mounted(path):
    """Whether path is a mount point, dead FUSE mounts included."""
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == path:
                return True
    return False


def is_live_mount(path):
    """Whether path is a mounted filesystem that answers."""
    return subprocess.call(["mountpoint", "-q", path]) == 0


def unmount(path):
    if is_mounted(path):
        if subprocess.call(["fusermount3", "-u", path],
                           stderr=subprocess.DEVNULL) != 0:
            subprocess.call(["fusermount3", "-uz", path],
                            stderr=subprocess.DEVNULL)


class Node:
    """One odofs daemon in the foreground, with its mountpoint and data dir."""

    def __init__(self, base, name, node_id=None):
        self.base = base
        self.name = name
        self.id = node_id or name
        self.mnt = os.path.join(base, name + "-mnt")
        self.data = os.path.join(base, name + "-data")
        self.log_path = os.path.join(base, name + ".log")
        self.proc = None
        self.logs = []
        self.wrap = []          # a command prefix (e.g. a private namespace)
        os.makedirs(self.mnt, exist_ok=True)

    def command(self, *extra):
        return self.wrap + [ODOFS, "-f", "--id", self.id, "--data", self.data,
                            *extra, self.mnt]

    def start(self, *extra, config=None, wait=True):
        args = list(extra)
        if config is not None:
            cpath = os.path.join(self.base, self.name + ".conf")
            with open(cpath, "w") as f:
                f.write(config)
            args = ["-c", cpath] + args
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(*args), stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_for(lambda: is_live_mount(self.mnt) or self.proc.poll() is not None,
                     what="mount of " + self.mnt)
            if self.proc.poll() is not None:
                raise AssertionError("odofs exited with %d: %s" %
                                     (self.proc.returncode, self.log()))
        return self

    def path(self, *parts):
        return os.path.join(self.mnt, *parts)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, timeout=10):
        """Clean shutdown, as a user would: unmount, then wait for the PID."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unmount(self.mnt)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL, then clear the dead mount."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        subprocess.call(["fusermount3", "-uz", self.mnt],
                        stderr=subprocess.DEVNULL)

    def start_peer(self, certs, port, seeds=(), config=None, wait=True,
                   host="127.0.0.1"):
        """Starts with mutual TLS, listening on host:port, dialling seeds
        ("host:port" strings, or ports on 127.0.0.1)."""
        self.port = port
        self.host = host
        args = tls_args(certs, self.id) + ["--listen", "%s:%d" % (host, port)]
        for s in seeds:
            args += ["--peer", s if isinstance(s, str) else "127.0.0.1:%d" % s]
        return self.start(*args, config=config, wait=wait)

    def peers(self):
        """The peer entries of .status."""
        return self.status()["peers"]

    def active(self):
        """Ids of the active peers, sorted."""
        return sorted(p["id"] for p in self.peers() if p["state"] == "active")

    def info(self, dev):
        with open(self.path(dev, "info")) as f:
            return json.load(f)

    def status(self):
        with open(self.path(".status")) as f:
            return json.load(f)

    def metric(self, name):
        """One sample of .metrics by name and labels, e.g.
        'odofs_peer_streams{peer="b"}'; 0 when the node shows none."""
        with open(self.path(".metrics")) as f:
            for line in f:
                if line.startswith(name + " "):
                    return int(line.split()[1])
        return 0

    def pid(self):
        return self.proc.pid


CERT_IDS = ["a", "b", "c", "d", "e", "x"] + ["n%02d" % i for i in range(16)]


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A test CA made once per session, with a certificate per node id, and a
    second, unrelated CA with a certificate for "a" (for refusal tests)."""
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", os.path.join(ROOT, "etc", "gen-certs.sh"), str(d / "ca1")]
                   + CERT_IDS, check=True)
    subprocess.run(["bash", os.path.join(ROOT, "etc", "gen-certs.sh"), str(d / "ca2"),
                    "a"], check=True)
    return d


def tls_args(certs, node_id, ca="ca1"):
    c = os.path.join(str(certs), ca)
    return ["--cert", os.path.join(c, node_id + ".pem"),
            "--key", os.path.join(c, node_id + ".key"),
            "--ca", os.path.join(c, "ca.pem")]


@pytest.fixture
def nodes(tmp_path):
    """A factory of nodes; every node is stopped and unmounted at teardown."""
    made = []

    def make(name="a", node_id=None):
        n = Node(str(tmp_path), name, node_id)
        made.append(n)
        return n

    yield make
    failures = []
    for n in made:
        if n.proc is not None and n.proc.poll() is not None:
            failures.append("%s died with status %d" % (n.name, n.proc.returncode))
        n.stop()
        unmount(n.mnt)
        text = n.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                failures.append("%s: sanitizer report in log:\n%s" % (n.name, text[-4000:]))
                break
    assert not failures, "\n".join(failures)


@pytest.fixture
def node(nodes):
    """One standalone node, mounted."""
    return nodes("a").start()


def read_file(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def anon_rss_kb(pid):
    """The process's anonymous resident memory (heap, stacks), in KiB.
    VmRSS also counts file pages mapped in, and LevelDB maps its table
    files: reading a journal would look like growth."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/%d/status" % pid)


def sh(cmd, **kw):
    """Runs a shell command line; returns CompletedProcess (text)."""
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, **kw)
