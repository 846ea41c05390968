"""SPEC §2 and §10: the tree enforces the modes it shows.

With -o allow_other, other users can read but not append, mkdir or install
a snapshot (default_permissions); fs.group names a group that may also
append and mkdir (modes 0664/0775, that group as the owner group). Other
users are `nobody`, by setpriv; the mountpoint lives in a directory they can
traverse (pytest's own temporary directories are 0700).
"""
import grp
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import ODOFS, Node, read_file, sh, unmount

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup"]


def as_nobody(cmd, groups=None):
    """Runs a shell command line as nobody (primary group nogroup, and the
    supplementary groups given, else none)."""
    prefix = NOBODY + (["--groups=" + ",".join(str(g) for g in groups)]
                       if groups else ["--clear-groups"])
    return subprocess.run(prefix + ["bash", "-c", cmd], capture_output=True,
                          text=True, cwd="/", timeout=20)


@pytest.fixture
def open_nodes():
    """Like the nodes fixture, in a world-traversable directory."""
    base = tempfile.mkdtemp(prefix="odofs-perm-")
    os.chmod(base, 0o755)
    made = []

    def make(name="a"):
        n = Node(base, name)
        os.chmod(n.mnt, 0o755)
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()
        unmount(n.mnt)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def group():
    """A group made for the test (nobody is not in /etc/group's list of it),
    removed at teardown."""
    name = "odofs-t" + uuid.uuid4().hex[:8]
    subprocess.run(["groupadd", name], check=True)
    try:
        yield name, grp.getgrnam(name).gr_gid
    finally:
        subprocess.call(["groupdel", name])


def mode(path):
    return os.stat(path).st_mode & 0o7777


def test_others_read_but_cannot_write(open_nodes):
    n = open_nodes().start("-o", "allow_other")
    os.mkdir(n.path("dev"))
    assert sh("echo one >> %s" % n.path("dev", "events")).returncode == 0
    ev = n.path("dev", "events")

    r = as_nobody("echo x >> %s" % ev)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = as_nobody("mkdir %s" % n.path("other"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = as_nobody("echo state > %s" % n.path("dev", "snapshot"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = as_nobody("mkdir %s" % n.path("dev", "inside"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r

    # reading works
    r = as_nobody("cat %s && cat %s && cat %s" % (ev, n.path("dev", "info"),
                                                 n.path(".status")))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("one\n")
    assert read_file(ev) == "one\n"
    assert not os.path.exists(n.path("other"))
    assert read_file(n.path("dev", "snapshot")) == ""

    # the tree belongs to the daemon's user, with the modes of SPEC §3
    st = os.stat(n.mnt)
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert (os.stat(ev).st_uid, os.stat(ev).st_gid) == (os.getuid(), os.getgid())
    assert mode(n.mnt) == 0o755
    assert mode(n.path("dev")) == 0o755
    assert mode(ev) == 0o644
    assert mode(n.path("dev", "snapshot")) == 0o644
    assert mode(n.path("dev", "info")) == 0o444
    assert mode(n.path("dev", "from")) == 0o555
    assert mode(n.path("dev", "live")) == 0o444
    assert mode(n.path(".status")) == 0o444
    assert mode(n.path(".live")) == 0o444


def test_group_may_append_and_mkdir(open_nodes, group):
    name, gid = group
    n = open_nodes().start("-o", "allow_other",
                           config='fs: { group = "%s"; };\n' % name)
    os.mkdir(n.path("dev"))
    ev = n.path("dev", "events")

    r = as_nobody("echo from-member >> %s && mkdir %s" % (ev, n.path("made")),
                  groups=[gid])
    assert r.returncode == 0, r.stderr
    assert read_file(ev) == "from-member\n"
    assert os.path.isdir(n.path("made"))
    assert n.info("made")["source"] == "a"

    # not a member: still read-only
    r = as_nobody("echo x >> %s" % ev)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r
    r = as_nobody("mkdir %s" % n.path("other"))
    assert r.returncode != 0 and "Permission denied" in r.stderr, r

    for p in (n.mnt, n.path("dev"), ev):
        assert (os.stat(p).st_uid, os.stat(p).st_gid) == (os.getuid(), gid)
    assert mode(n.mnt) == 0o775
    assert mode(n.path("dev")) == 0o775
    assert mode(ev) == 0o664
    assert mode(n.path("dev", "snapshot")) == 0o664
    assert mode(n.path("dev", "info")) == 0o444
    assert mode(n.path("dev", "from")) == 0o555
    assert mode(n.path(".status")) == 0o444


def test_unknown_group_is_a_config_error(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    conf = tmp_path / "odofs.conf"
    conf.write_text('fs: { group = "no-such-group-odofs"; };\n')
    r = subprocess.run([ODOFS, "-f", "-c", str(conf), "--data",
                        str(tmp_path / "data"), str(mnt)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1, r.stderr
    assert "fs.group" in lines[0] and "no-such-group-odofs" in lines[0]
    assert not os.path.exists(tmp_path / "data")
    r = subprocess.run([ODOFS, "--check-config", "-c", str(conf)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "fs.group" in r.stderr
