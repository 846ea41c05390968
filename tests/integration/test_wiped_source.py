"""SPEC §8.9: a node that lost its data directory and restarts under the
same id finds its old devices on its peers and holds them as read-only
replicas (visible, readable, EROFS on write); .status lists them as
sourced here but not held; it never appends to them under the old epoch."""
import errno
import os
import subprocess

import pytest

from conftest import read_file, wait_for
from test_replication import bulk, conf, events, start, wait_converged


def test_wiped_source_holds_its_old_devices_read_only(nodes, certs):
    a = start(nodes, certs, "a", config=conf(exchange=False))
    b = start(nodes, certs, "b", [a.port], config=conf(exchange=False))
    os.mkdir(a.path("dev"))
    bulk(a, "dev", ["first-life-%d" % i for i in range(500)])
    wait_converged(a, "dev", b)
    want, epoch = events(b, "dev"), b.info("dev")["epoch"]
    a.stop()
    subprocess.run(["rm", "-rf", a.data], check=True)
    a.start_peer(certs, a.port, [b.port], config=conf(exchange=False))
    wait_for(lambda: os.path.isdir(a.path("dev")) and a.info("dev")["head"] == 500,
             timeout=30, what="a holding its old device again")
    info = a.info("dev")
    assert info["epoch"] == epoch and info["source"] == "a"
    assert info["held"] is True and info["local"] is False
    assert events(a, "dev") == want
    assert "dev" in a.status()["sourced_here_not_held"]
    # read-only: no append under the old epoch, no new journal in its place
    with pytest.raises(OSError) as ei:
        with open(a.path("dev", "events"), "a") as f:
            f.write("second-life\n")
    assert ei.value.errno == errno.EROFS
    with pytest.raises(OSError) as ei:
        os.mkdir(a.path("dev"))
    assert ei.value.errno == errno.EEXIST
    assert os.stat(a.path("dev", "events")).st_mode & 0o777 == 0o444
    # it stays so across a restart, and b still follows nothing new
    a.stop()
    a.start_peer(certs, a.port, [b.port], config=conf(exchange=False))
    assert a.info("dev")["held"] is True and events(a, "dev") == want
    assert b.info("dev")["epoch"] == epoch and not b.status()["conflicts"]
    assert "a replica of ourselves" not in read_file(a.log_path)
