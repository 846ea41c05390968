"""meson install puts the binary, the example configuration, the systemd
unit and the man page in place."""
import os
import subprocess

from conftest import ROOT


def test_meson_install(tmp_path):
    build = os.path.join(ROOT, "build")
    r = subprocess.run(["meson", "install", "-C", build, "--destdir", str(tmp_path),
                        "--no-rebuild"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    found = {os.path.relpath(os.path.join(d, f), tmp_path)
             for d, _, fs in os.walk(tmp_path) for f in fs}
    for want in ("bin/odofs", "etc/odofs/odofs.conf", "lib/systemd/system/odofs@.service",
                 "share/man/man1/odofs.1"):
        assert any(p.endswith(want) for p in found), (want, sorted(found))
    binary = [p for p in found if p.endswith("bin/odofs")][0]
    r = subprocess.run([os.path.join(tmp_path, binary), "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("odofs ")
    conf = [p for p in found if p.endswith("odofs.conf")][0]
    r = subprocess.run([os.path.join(tmp_path, binary), "--check-config", "-c",
                        os.path.join(tmp_path, conf)], capture_output=True, text=True)
    assert r.stdout == "configuration OK\n", r.stderr
    r = subprocess.run(["man", "-l", "-Tutf8", os.path.join(
        tmp_path, [p for p in found if p.endswith("odofs.1")][0])],
        capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
    assert r.returncode == 0 and "--check-config" in r.stdout
