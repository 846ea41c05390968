"""SPEC §2: every Unix tool over the whole tree (issue 14).

Recursive tools walk a mount of 1,000 devices and finish, because the live
pipes (`live`, `.live`, `from/<rev>`) are opened by name and never listed;
they copy exactly the journal, because the generated files (`info`,
`.status`, `.peers`, `.metrics`) report their real size; `df` shows the
data directory's file system.  Every tool is the real one, every run has a
timeout: a tool that opens a live pipe would wait for ever.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import read_file, wait_for

NDEV = 1000
SNAP_DEV = "dev-0007"
SNAPSHOT = "state of dev-0007\nsecond line\n"
# ASan builds and a loaded machine: every tool here finishes in a few
# seconds on 2 cores; a tool that reads a live pipe never finishes
TOOL_TIMEOUT = 180


def events_of(dev):
    return "first of %s\nneedle %s\n" % (dev, dev)


def devices(n=NDEV):
    return ["dev-%04d" % i for i in range(n)]


@pytest.fixture
def big(nodes):
    """A node with NDEV devices of two events each and one snapshot."""
    node = nodes("a").start()
    for dev in devices():
        os.mkdir(node.path(dev))
        with open(node.path(dev, "events"), "a") as f:
            f.write(events_of(dev))
    with open(node.path(SNAP_DEV, "snapshot"), "w") as f:
        f.write(SNAPSHOT)
    # installed at the release, which comes after close() returns
    wait_for(lambda: node.info(SNAP_DEV)["snapshot"] == 2, what="snapshot")
    return node


def tool(args, cwd=None):
    """Runs a real tool; fails the test if it does not finish in time."""
    try:
        return subprocess.run(args, capture_output=True, cwd=cwd,
                              timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("%s did not finish in %d s" % (" ".join(args), TOOL_TIMEOUT))


def tree(root):
    """Every path under root: a file's bytes, or None for a directory
    (its path ends in '/')."""
    out = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        rel = "" if rel == "." else rel + "/"
        for x in dirs:
            out[rel + x + "/"] = None
        for x in files:
            with open(os.path.join(d, x), "rb") as f:
                out[rel + x] = f.read()
    return out


def device_tree(node, dev, prefix=""):
    """What a copy of a device directory must hold: the journal files with
    their contents (info read from the mount now: nothing changes it) and
    from/ as an empty directory; no live pipe."""
    return {
        prefix + "events": events_of(dev).encode(),
        prefix + "snapshot": SNAPSHOT.encode() if dev == SNAP_DEV else b"",
        prefix + "info": read_file(node.path(dev, "info"), "rb"),
        prefix + "from/": None,
    }


def check_mount_copy(node, got):
    """got (a tree()) is a copy of the whole mount: every device's journal
    files, the node's own generated files whole, and no live pipe."""
    want = {}
    for dev in devices():
        want[dev + "/"] = None
        want.update(device_tree(node, dev, dev + "/"))
    own = {k: got.pop(k, None) for k in (".status", ".metrics", ".peers")}
    assert sorted(set(got) - set(want)) == []       # .live, live: not there
    assert sorted(set(want) - set(got)) == []
    for k in want:
        assert got[k] == want[k], k
    status = json.loads(own[".status"])             # whole JSON
    assert status["devices"] == NDEV and status["events"] == 2 * NDEV
    assert re.search(rb"^odofs_devices %d\n" % NDEV, own[".metrics"], re.M)
    assert own[".metrics"].endswith(b"\n")
    assert own[".peers"] == read_file(node.path(".peers"), "rb")


def test_listings_leave_out_the_live_pipes(node):
    os.mkdir(node.path("d"))
    for ls in (["ls", "-a"], ["ls", "-la"]):       # readdir, readdirplus
        r = tool(ls + [node.path("d")])
        assert r.returncode == 0, r.stderr
        names = [l.split()[-1] for l in r.stdout.decode().splitlines()
                 if not l.startswith("total")]
        assert sorted(names) == [".", "..", "events", "from", "info", "snapshot"]
        r = tool(ls + [node.mnt])
        names = [l.split()[-1] for l in r.stdout.decode().splitlines()
                 if not l.startswith("total")]
        assert sorted(names) == [".", "..", ".metrics", ".peers", ".status", "d"]
    assert sorted(os.listdir(node.path("d"))) == ["events", "from", "info", "snapshot"]
    assert os.listdir(node.path("d", "from")) == []
    # opened by name they are still there
    for p in (node.path("d", "live"), node.path(".live"), node.path("d", "from", "1")):
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(BlockingIOError):
                os.read(fd, 100)
        finally:
            os.close(fd)
    assert os.path.isfile(node.path("d", "live"))


def test_cp_a_of_a_device(big, tmp_path):
    dst = tmp_path / "backup"
    dst.mkdir()
    r = tool(["cp", "-a", big.path(SNAP_DEV), str(dst) + "/"])
    assert r.returncode == 0, r.stderr
    assert tree(str(dst / SNAP_DEV)) == device_tree(big, SNAP_DEV)
    assert os.stat(dst / SNAP_DEV / "info").st_mode & 0o777 == 0o444


@pytest.mark.parametrize("flags", ["-a", "-r"])
def test_cp_of_the_mount(big, tmp_path, flags):
    dst = str(tmp_path / "copy")
    r = tool(["cp", flags, big.mnt + "/.", dst])
    assert r.returncode == 0, r.stderr
    check_mount_copy(big, tree(dst))


def test_tar_of_the_mount(big, tmp_path):
    tarball = str(tmp_path / "m.tar")
    r = tool(["tar", "cf", tarball, "-C", big.mnt, "."])
    assert r.returncode == 0, r.stderr
    r = tool(["tar", "tf", tarball])
    assert r.returncode == 0, r.stderr
    names = sorted(r.stdout.decode().splitlines())
    want = ["./", "./.metrics", "./.peers", "./.status"]
    for dev in devices():
        want += ["./%s/" % dev] + ["./%s/%s" % (dev, f)
                                  for f in ("events", "from/", "info", "snapshot")]
    assert names == sorted(want)
    out = tmp_path / "x"
    out.mkdir()
    r = tool(["tar", "xf", tarball, "-C", str(out)])
    assert r.returncode == 0, r.stderr
    check_mount_copy(big, tree(str(out)))


def test_rsync_of_the_mount(big, tmp_path):
    dst = str(tmp_path / "r")
    r = tool(["rsync", "-a", big.mnt + "/", dst + "/"])
    assert r.returncode == 0, r.stderr
    check_mount_copy(big, tree(dst))


def test_grep_r_over_the_mount(big):
    r = tool(["grep", "-r", "needle", big.mnt])
    assert r.returncode == 0, r.stderr
    got = sorted(r.stdout.decode().splitlines())
    assert got == sorted("%s:needle %s" % (big.path(d, "events"), d)
                         for d in devices())


def test_tools_on_star_in_a_device(big):
    """A glob in a device directory matches events, from, info, snapshot:
    every tool finishes; the only complaint is that from is a directory."""
    d = big.path(SNAP_DEV)
    info = read_file(os.path.join(d, "info"))
    cases = {
        "wc -l *": None,
        "md5sum *": None,
        "grep needle *": None,
    }
    for cmd in cases:
        r = tool(["bash", "-c", cmd], cwd=d)
        err = r.stderr.decode().splitlines()
        assert all("from: Is a directory" in l for l in err), r.stderr
        cases[cmd] = r.stdout.decode()
    assert "2 events\n" in cases["wc -l *"]
    assert "1 info\n" in cases["wc -l *"]
    assert "2 snapshot\n" in cases["wc -l *"]
    assert "%d total\n" % (2 + 1 + 2) in cases["wc -l *"]
    for name, data in (("events", events_of(SNAP_DEV)), ("info", info),
                       ("snapshot", SNAPSHOT)):
        assert "%s  %s\n" % (hashlib.md5(data.encode()).hexdigest(), name) \
            in cases["md5sum *"]
    assert cases["grep needle *"] == "events:needle %s\n" % SNAP_DEV


# --- the generated files report their real size ------------------------------

GENERATED = [("d", "info"), (".status",), (".peers",), (".metrics",)]


@pytest.fixture
def one(node):
    os.mkdir(node.path("d"))
    with open(node.path("d", "events"), "a") as f:
        f.write("one\ntwo\n")
    return node


@pytest.mark.parametrize("parts", GENERATED)
def test_fstat_and_seek_end_match_the_bytes_read(one, parts):
    fd = os.open(one.path(*parts), os.O_RDONLY)
    try:
        data = b""
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            data += b
        assert len(data) > 0
        assert os.fstat(fd).st_size == len(data)
        assert os.lseek(fd, 0, os.SEEK_END) == len(data)
    finally:
        os.close(fd)


def test_stat_and_ls_l_show_real_sizes(one):
    info = read_file(one.path("d", "info"), "rb")
    assert os.stat(one.path("d", "info")).st_size == len(info)
    assert os.stat(one.path(".peers")).st_size == len(read_file(one.path(".peers"), "rb"))
    r = tool(["ls", "-l", one.path("d")])
    sizes = {l.split()[-1]: int(l.split()[4]) for l in r.stdout.decode().splitlines()
             if not l.startswith("total")}
    assert sizes["info"] == len(info)
    assert sizes["events"] == len("one\ntwo\n")
    r = tool(["ls", "-la", one.mnt])
    sizes = {l.split()[-1]: int(l.split()[4]) for l in r.stdout.decode().splitlines()
             if not l.startswith("total")}
    for name in (".status", ".peers", ".metrics"):
        assert sizes[name] > 0, name


def test_shutil_copies_get_the_whole_text(one, tmp_path):
    info = read_file(one.path("d", "info"))
    shutil.copyfile(one.path("d", "info"), str(tmp_path / "info"))
    assert read_file(str(tmp_path / "info")) == info
    assert json.loads(info)["head"] == 2
    shutil.copyfile(one.path(".status"), str(tmp_path / "status"))
    assert json.loads(read_file(str(tmp_path / "status")))["devices"] == 1
    shutil.copytree(one.path("d"), str(tmp_path / "d"))
    assert sorted(os.listdir(str(tmp_path / "d"))) == ["events", "from", "info", "snapshot"]
    assert json.loads(read_file(str(tmp_path / "d" / "info"))) == json.loads(info)
    assert read_file(str(tmp_path / "d" / "events")) == "one\ntwo\n"


@pytest.mark.parametrize("parts", GENERATED)
def test_sqlite_readfile_gets_the_whole_text(one, parts):
    path = one.path(*parts)
    r = tool(["sqlite3", ":memory:", "select hex(readfile('%s'))" % path])
    assert r.returncode == 0, r.stderr
    got = bytes.fromhex(r.stdout.decode().strip())
    if parts[0] == ".metrics":
        # counters move between two readings; the text is whole
        assert got.startswith(b"# HELP odofs_devices") and got.endswith(b"\n")
        assert b"\nodofs_devices 1\n" in got
    else:
        assert got == read_file(path, "rb")


# --- statvfs -----------------------------------------------------------------

def test_df_shows_the_data_directorys_file_system(node):
    before = os.statvfs(node.data)
    m = os.statvfs(node.mnt)
    after = os.statvfs(node.data)
    assert m.f_blocks > 0
    # totals are the data directory's exactly
    assert m.f_blocks * m.f_frsize == before.f_blocks * before.f_frsize
    assert m.f_files == before.f_files
    assert m.f_namemax == 255
    # free space is a moving figure: bracketed by two readings of the data
    # directory, with 64 MiB and 1,000 inodes of margin for other writers
    # on that file system during the three calls
    margin = 64 << 20
    lo = min(before.f_bfree, after.f_bfree) * before.f_frsize - margin
    hi = max(before.f_bfree, after.f_bfree) * before.f_frsize + margin
    assert lo <= m.f_bfree * m.f_frsize <= hi
    lo = min(before.f_bavail, after.f_bavail) * before.f_frsize - margin
    hi = max(before.f_bavail, after.f_bavail) * before.f_frsize + margin
    assert lo <= m.f_bavail * m.f_frsize <= hi
    assert min(before.f_ffree, after.f_ffree) - 1000 <= m.f_ffree <= \
        max(before.f_ffree, after.f_ffree) + 1000
    # df shows the same total
    r = tool(["df", "-B1", "--output=size", node.mnt])
    assert r.returncode == 0, r.stderr
    r2 = tool(["df", "-B1", "--output=size", node.data])
    assert int(r.stdout.split()[-1]) == int(r2.stdout.split()[-1]) > 0
