"""SPEC §1 and §10: the command line and the configuration.

Every bad invocation fails before anything is mounted, with one line on
stderr that names the problem, and a non-zero exit status.
"""
import os
import socket
import subprocess

import pytest

from conftest import ODOFS, ROOT, is_live_mount, is_mounted, read_file, sh, wait_for


def run(args, timeout=20):
    return subprocess.run([ODOFS] + args, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def env(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "node.pem", "node.key"):
        (certs / name).write_text("placeholder\n")
    return tmp_path


def write_conf(env, text):
    p = env / "odofs.conf"
    p.write_text(text)
    return str(p)


def assert_refused(r, env, *needles):
    assert r.returncode != 0
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("odofs: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, r.stderr)
    assert not is_mounted(str(env / "mnt"))


BAD_CONFIGS = [
    # (config text, words the error line must hold)
    ("peering: { tick_msx = 5; };\n", [":1:", "peering.tick_msx", "unknown"]),
    ("bogus = 1;\n", [":1:", "bogus", "unknown"]),
    ("log: { level = \"info\"; };\npeering: { tick_ms = \"fast\"; };\n",
     [":2:", "peering.tick_ms"]),
    ("limits: { max_event_bytes = 1.5; };\n", [":1:", "limits.max_event_bytes"]),
    ("durability: { sync = 1; };\n", [":1:", "durability.sync"]),
    ("peering: { tick_ms = 0; };\n", [":1:", "peering.tick_ms"]),
    ("peering: { heartbeat_ms = 99999999999L; };\n", [":1:", "peering.heartbeat_ms"]),
    ("limits: { max_event_bytes = 0; };\n", [":1:", "limits.max_event_bytes"]),
    ("log: { level = \"chatty\"; };\n", [":1:", "log.level"]),
    ("listen = \"no-port-here\";\n", ["listen"]),
    ("node: { id = \".hidden\"; };\n", ["node.id"]),
    ("peering: { tick_ms = 5 \n", ["syntax error"]),
    ("peering: { backoff_ms = [ ]; };\n", ["peering.backoff_ms"]),
]


@pytest.mark.parametrize("text,needles", BAD_CONFIGS)
def test_bad_config_refused(env, text, needles):
    conf = write_conf(env, text)
    r = run(["-f", "-c", conf, "--data", str(env / "data"), str(env / "mnt")])
    assert_refused(r, env, conf, *needles)
    # nothing was created either
    assert not (env / "data").exists()


def test_missing_config_file(env):
    r = run(["-f", "-c", str(env / "nope.conf"), str(env / "mnt")])
    assert_refused(r, env, "nope.conf")


def test_peering_needs_tls(env):
    conf = write_conf(env, 'listen = "127.0.0.1:7400";\n')
    r = run(["-f", "-c", conf, "--data", str(env / "data"), str(env / "mnt")])
    assert_refused(r, env, "tls.cert")
    r = run(["-f", "--peer", "127.0.0.1:7401", "--data", str(env / "data"),
             str(env / "mnt")])
    assert_refused(r, env, "tls")


def test_missing_cert_file(env):
    c = env / "certs"
    conf = write_conf(env, 'listen = "127.0.0.1:7400";\n'
                      'tls: { cert = "%s/missing.pem"; key = "%s/node.key"; ca = "%s/ca.pem"; };\n'
                      % (c, c, c))
    r = run(["-f", "-c", conf, "--data", str(env / "data"), str(env / "mnt")])
    assert_refused(r, env, "tls.cert", "missing.pem")


def tls_args(env):
    c = env / "certs"
    return ["--cert", str(c / "node.pem"), "--key", str(c / "node.key"),
            "--ca", str(c / "ca.pem")]


def test_port_in_use(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run(["-f", "--listen", "127.0.0.1:%d" % port, "--data",
                 str(env / "data"), *tls_args(env), str(env / "mnt")])
        assert_refused(r, env, "127.0.0.1:%d" % port, "in use")


def test_port_in_use_background(env):
    """Without -f the parent still reports the child's failure."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = run(["--listen", "127.0.0.1:%d" % port, "--data",
                 str(env / "data"), *tls_args(env), str(env / "mnt")])
        assert_refused(r, env, "in use")


def test_missing_mountpoint(env):
    r = run(["-f", "--data", str(env / "data"), str(env / "nowhere")])
    assert_refused(r, env, "nowhere", "No such file or directory")
    r = run(["-f", "--data", str(env / "data")])
    assert_refused(r, env, "MOUNTPOINT")
    f = env / "plainfile"
    f.write_text("")
    r = run(["-f", "--data", str(env / "data"), str(f)])
    assert_refused(r, env, "not a directory")


def test_bad_options(env):
    r = run(["-f", "--frobnicate", str(env / "mnt")])
    assert_refused(r, env, "--frobnicate")
    r = run(["-f", "--id", "bad id", "--data", str(env / "data"), str(env / "mnt")])
    assert_refused(r, env, "node.id")
    r = run(["-f", "--data", str(env / "data"), str(env / "mnt"), "extra"])
    assert_refused(r, env, "extra")
    r = run(["-f", "-o", "no_such_fuse_option", "--data", str(env / "data"),
             str(env / "mnt")])
    assert_refused(r, env, "no_such_fuse_option")


@pytest.mark.parametrize("opts,line", [
    (["-o", "nonsenseopt"], "odofs: unknown mount option: nonsenseopt"),
    # among good ones, in the second group: still named alone
    (["-o", "ro", "-o", "default_permissions,nonsenseopt,allow_other"],
     "odofs: unknown mount option: nonsenseopt"),
    (["-o", "max_read=abc"], "odofs: bad mount option: max_read=abc"),
    (["-o", "ro,,allow_other"], "odofs: empty mount option in -o 'ro,,allow_other'"),
], ids=["unknown", "among-good", "bad-value", "empty"])
@pytest.mark.parametrize("fg", [["-f"], []], ids=["fg", "bg"])
def test_bad_fuse_option(env, opts, line, fg):
    """libfuse prints an unknown option in four pieces; odofs names it in
    one line of its own, before the data directory is made."""
    r = run(fg + opts + ["--data", str(env / "data"), str(env / "mnt")])
    assert_refused(r, env)
    assert r.stderr == line + "\n"
    assert not (env / "data").exists()


def test_data_dir_in_use(env, nodes):
    n = nodes("a").start()
    r = run(["-f", "--id", "a", "--data", n.data, str(env / "mnt")])
    assert_refused(r, env, n.data)


def test_check_config_and_version(env):
    r = run(["--check-config", "-c", os.path.join(ROOT, "etc", "odofs.conf")])
    assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stderr
    r = run(["--check-config", "-c", write_conf(env, "peering: { tick_ms = -1; };\n")])
    assert r.returncode != 0 and "peering.tick_ms" in r.stderr
    # a quorum of peers on a node that has none: one line, before mounting
    r = run(["--check-config", "-c", write_conf(
        env, "durability: { replicas = 1; };\n")])
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "durability.replicas" in r.stderr
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("odofs ")
    r = run(["--help"])
    assert r.returncode == 0 and "MOUNTPOINT" in r.stdout


def test_config_applies_and_cli_overrides(env):
    data = env / "from-conf"
    conf = write_conf(env, 'node: { id = "conf-node"; data_dir = "%s"; };\n' % data)
    mnt = str(env / "mnt")
    p = subprocess.Popen([ODOFS, "-f", "-c", conf, mnt],
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: is_live_mount(mnt), what="mount")
        assert '"node":"conf-node"' in read_file(os.path.join(mnt, ".status"))
        assert (data / "CURRENT").exists()
    finally:
        p.terminate()
        p.wait(10)
        subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
    p = subprocess.Popen([ODOFS, "-f", "-c", conf, "--id", "cli-node", mnt],
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: is_live_mount(mnt), what="mount")
        assert '"node":"cli-node"' in read_file(os.path.join(mnt, ".status"))
    finally:
        p.terminate()
        p.wait(10)
        subprocess.call(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)


def test_background_default_data_dir(env):
    """odofs MOUNTPOINT alone: forks, mounts on the default data directory."""
    mnt = str(env / "mnt")
    e = dict(os.environ, XDG_DATA_HOME=str(env / "xdg"))
    r = subprocess.run([ODOFS, "--id", "solo", mnt], capture_output=True,
                       text=True, env=e, timeout=20)
    try:
        assert r.returncode == 0, r.stderr
        assert is_mounted(mnt)
        os.mkdir(os.path.join(mnt, "dev"))
        sh("echo hi >> %s/dev/events" % mnt)
        assert read_file(os.path.join(mnt, "dev", "events")) == "hi\n"
        assert (env / "xdg" / "odofs" / "solo" / "CURRENT").exists()
    finally:
        subprocess.call(["fusermount3", "-u", mnt])
    # the daemon exits on unmount and logged into its data directory
    wait_for(lambda: "unmounting" in read_file(str(env / "xdg" / "odofs" / "solo" / "odofs.log")),
             what="daemon exit")
