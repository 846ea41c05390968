"""SPEC §1: signals and logs.

SIGHUP reopens the background daemon's log file (as logrotate's postrotate
`kill -HUP` expects) and changes nothing else; in the foreground it changes
nothing at all. Lines in the log file carry an ISO 8601 UTC time. The
background daemon works from "/".
"""
import datetime
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (ODOFS, SANITIZER_MARKS, is_live_mount, is_mounted, read_file,
                      sh, unmount, wait_for)

ISO_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z odofs\[(\d+)\]: "
                      r"(\w+): (.*)$", re.M)


def daemon_pid(mnt):
    """The pid of the odofs process mounted on mnt (found by its command line)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == ODOFS.encode() and mnt.encode() in argv:
            return int(pid)
    return None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(") ")[-1][0] != "Z"


@pytest.fixture
def background(tmp_path):
    """Starts odofs without -f, from tmp_path with relative paths; yields
    (pid, mountpoint, log path). Unmounts at teardown and waits for the
    daemon, which exits on unmount (SIGTERM by pid if it did not), and
    scans its log files for sanitizer reports."""
    started = []

    def start():
        r = subprocess.run([ODOFS, "--id", "bg", "--data", "data", "mnt"],
                           cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=30)
        mnt = str(tmp_path / "mnt")
        assert r.returncode == 0, r.stderr
        assert is_live_mount(mnt)
        pid = daemon_pid("mnt")
        assert pid is not None
        started.append((pid, mnt))
        return pid, mnt, str(tmp_path / "data" / "odofs.log")

    (tmp_path / "mnt").mkdir()
    yield start
    for pid, mnt in started:
        unmount(mnt)
        try:
            wait_for(lambda: not alive(pid), timeout=10, what="daemon exit")
        except AssertionError:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), timeout=10, what="daemon exit")
    for name in os.listdir(str(tmp_path / "data")) if started else ():
        if name.startswith("odofs.log"):
            text = read_file(str(tmp_path / "data" / name))
            assert not any(m in text for m in SANITIZER_MARKS), text[-4000:]


def logged(path, text):
    """The ISO-timed lines of the log file at path whose message has text."""
    try:
        body = read_file(path)
    except FileNotFoundError:
        return []
    return [m for m in ISO_LINE.finditer(body) if text in m.group(4)]


def test_sighup_reopens_the_background_log(background):
    pid, mnt, log = background()
    # the daemon left the directory it was started in
    assert os.readlink("/proc/%d/cwd" % pid) == "/"

    os.mkdir(os.path.join(mnt, "before"))
    lines = wait_for(lambda: logged(log, "device created: before"), what="log line")
    t = datetime.datetime.strptime(lines[0].group(1), "%Y-%m-%dT%H:%M:%S.%f")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - t).total_seconds()) < 60, (now, t)
    assert int(lines[0].group(2)) == pid
    # every line of the file has the time
    body = read_file(log)
    assert all(ISO_LINE.match(l) for l in body.splitlines() if l), body

    os.rename(log, log + ".1")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: os.path.exists(log), what="the log file reopened")
    os.mkdir(os.path.join(mnt, "after"))
    wait_for(lambda: logged(log, "device created: after"), what="log line in the new file")
    assert not logged(log + ".1", "device created: after")

    # nothing else changed: still mounted and serving
    assert alive(pid) and is_live_mount(mnt)
    ev = os.path.join(mnt, "after", "events")
    assert sh("echo one >> %s" % ev).returncode == 0
    assert read_file(ev) == "one\n"
    assert sorted(os.listdir(mnt)) == [".metrics", ".peers", ".status", "after", "before"]

    # a second HUP with the file in place appends to it
    os.kill(pid, signal.SIGHUP)
    os.mkdir(os.path.join(mnt, "again"))
    wait_for(lambda: logged(log, "device created: again"), what="log line after a second HUP")
    assert logged(log, "device created: after")
    assert is_live_mount(mnt)


def test_sighup_in_the_foreground_changes_nothing(nodes):
    n = nodes("a").start()
    os.mkdir(n.path("dev"))
    n.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)     # give a wrong reaction (an unmount) its chance
    assert n.proc.poll() is None
    assert is_live_mount(n.mnt)
    assert sh("echo one >> %s" % n.path("dev", "events")).returncode == 0
    assert read_file(n.path("dev", "events")) == "one\n"
    # foreground lines keep their shape
    assert re.search(r"^odofs\[%d\]: info: device created: dev$" % n.pid(), n.log(), re.M)
    assert n.stop() == 0
    assert not is_mounted(n.mnt)
