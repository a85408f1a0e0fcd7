"""`scripts/install` run twice leaves the same state, in a throwaway root (no container runtime runs
here): a mount namespace with an overlay of this machine's / (writes land in a tmpfs) and chroot.
The host's /etc, /opt and /var are never touched. The unit file passes `systemd-analyze verify`."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from dropbox.cleaning import settings_from
from dropbox.config import Config
from tests.support.server_process import REPO_ROOT

#: Inside the chroot: every path the installer owns, as (path, type, mode, owner, content hash).
SNAPSHOT = textwrap.dedent("""
    import hashlib, os, pwd, grp, stat, sys
    out = []
    def one(p):
        st = os.lstat(p)
        digest = hashlib.sha256(open(p, 'rb').read()).hexdigest() if stat.S_ISREG(st.st_mode) else ''
        out.append(f"{p} {stat.S_IFMT(st.st_mode)} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid} {digest}")
    for root in ('/opt/dropbox', '/var/lib/dropbox', '/etc/tor', '/etc/systemd/system/dropbox.service',
                 '/etc/systemd/system/dropbox-cleaner.service', '/etc/systemd/system/dropbox-cleaner.socket'):
        if os.path.isfile(root):
            one(root); continue
        for d, dirs, files in os.walk(root):
            dirs.sort()
            one(d)
            for f in sorted(files):
                one(os.path.join(d, f))
    out += [l for l in open('/etc/passwd') if l.startswith('dropbox:')]
    out += [l for l in open('/etc/group') if 'dropbox' in l]
    print('\\n'.join(out))
""")


def in_throwaway_root(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inner.sh").write_text(script)
    outer = f"""set -euo pipefail
T={tmp_path}/root
mkdir -p "$T" && mount -t tmpfs tmpfs "$T" && mkdir -p "$T/upper" "$T/work" "$T/merged"
mount -t overlay overlay -o lowerdir=/,upperdir="$T/upper",workdir="$T/work" "$T/merged"
for m in proc sys dev dev/pts; do mount --rbind /$m "$T/merged/$m"; done
mkdir -p "$T/merged/inner" && mount --bind {tmp_path} "$T/merged/inner"
chroot "$T/merged" bash /inner/inner.sh
"""
    return subprocess.run(["unshare", "--mount", "--fork", "bash", "-c", outer], capture_output=True, text=True,
                          timeout=1800, check=False)


def _can_make_throwaway_roots() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--fork", "true"], capture_output=True, timeout=60, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_make_throwaway_roots(), reason="needs root and mount namespaces (unshare)")
def test_install_twice_leaves_the_same_state(tmp_path: Path) -> None:
    (tmp_path / "snapshot.py").write_text(SNAPSHOT)
    # Given a root where no dropbox user, /opt/dropbox or /var/lib/dropbox exist yet
    done = in_throwaway_root(tmp_path, f"""set -euo pipefail
! id dropbox 2>/dev/null
test ! -e /opt/dropbox && test ! -e /var/lib/dropbox
cd {REPO_ROOT}
# When scripts/install runs twice
scripts/install > /inner/first.log 2>&1
python3 /inner/snapshot.py > /inner/first.state
scripts/install > /inner/second.log 2>&1
python3 /inner/snapshot.py > /inner/second.state
# and the installed code answers as the service user
runuser -u dropbox -- /opt/dropbox/.venv/bin/python /opt/dropbox/run.py channel list --data /var/lib/dropbox \
    > /inner/channels.txt
cp /var/lib/dropbox/config.toml /inner/config.toml
""")
    assert done.returncode == 0, done.stderr + "\n" + _read(tmp_path / "first.log") + _read(tmp_path / "second.log")
    first, second = _read(tmp_path / "first.state"), _read(tmp_path / "second.state")
    # Then the second run changed nothing and said so
    assert first == second
    assert "install: done" in _read(tmp_path / "second.log")
    assert [ln for ln in _read(tmp_path / "second.log").splitlines()
            if ln.startswith("install:") and "done" not in ln and "systemd is not running" not in ln] == []
    # And the state is the one the docs describe
    assert "/var/lib/dropbox 16384 700" in first and "/var/lib/dropbox/dropbox.sqlite3 32768 600" in first
    for unit in ("dropbox.service", "dropbox-cleaner.service", "dropbox-cleaner.socket"):
        assert f"/etc/systemd/system/{unit} 32768 644" in first
    settings = _read(tmp_path / "config.toml")
    assert 'tor_mode = "system"' in settings and 'tor_control = "/run/tor/control"' in settings
    assert 'cleaner_socket = "/run/dropbox-cleaner.sock"' in settings
    assert _read(tmp_path / "channels.txt").startswith("default")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else f"({path.name} missing)\n"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_pass_systemd_analyze_verify_and_keep_their_documented_exposure(tmp_path: Path) -> None:
    # The units name /opt/dropbox's python; point them at this checkout's for the check.
    python = REPO_ROOT / ".venv" / "bin" / "python"
    for unit in (REPO_ROOT / "deploy").iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/dropbox/.venv/bin/python", str(python)))
    units = ["dropbox.service", "dropbox-cleaner.service", "dropbox-cleaner.socket"]
    verified = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=120,
                              check=False, cwd=tmp_path)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr
    # The figures docs/SECURITY.md and docs/PROTOCOL.md give (lower is stricter)
    for unit, documented in (("dropbox.service", 1.4), ("dropbox-cleaner.service", 1.5)):
        security = subprocess.run(["systemd-analyze", "security", "--offline=yes", unit], capture_output=True,
                                  text=True, timeout=120, check=False, cwd=tmp_path)
        (line,) = [ln for ln in security.stdout.splitlines() if "Overall exposure level" in ln]
        assert float(line.split(":")[1].split()[0]) <= documented, line
    # and what docs/SECURITY.md says the app's unit holds it to
    app = (tmp_path / "dropbox.service").read_text().splitlines()
    for line in ("User=dropbox", "ProtectSystem=strict", "ReadWritePaths=/var/lib/dropbox", "CapabilityBoundingSet=",
                 "IPAddressDeny=any", "IPAddressAllow=localhost", "SystemCallFilter=@system-service",
                 "MemoryDenyWriteExecute=yes", "MemorySwapMax=0", "LimitCORE=0"):
        assert line in app, line
    assert [ln for ln in app if ln.startswith("ReadWritePaths=")] == ["ReadWritePaths=/var/lib/dropbox"]


def test_only_the_cleaner_may_create_namespaces_and_it_reaches_nothing() -> None:
    # The app keeps the strict profile; the sandbox's namespaces are the cleaner's alone, and the
    # cleaner has no network, no data folder, and a user of its own.
    app = (REPO_ROOT / "deploy" / "dropbox.service").read_text().splitlines()
    cleaner = (REPO_ROOT / "deploy" / "dropbox-cleaner.service").read_text().splitlines()
    assert "RestrictNamespaces=yes" in app and "SystemCallFilter=~@privileged" in app
    for line in ("PrivateNetwork=yes", "IPAddressDeny=any", "RestrictAddressFamilies=AF_UNIX AF_NETLINK",
                 "DynamicUser=yes", "CapabilityBoundingSet=", "MemorySwapMax=0"):
        assert line in cleaner, line
    (hidden,) = [ln for ln in cleaner if ln.startswith("InaccessiblePaths=")]
    assert "-/var/lib/dropbox" in hidden.split("=", 1)[1].split()
    socket_unit = (REPO_ROOT / "deploy" / "dropbox-cleaner.socket").read_text().splitlines()
    assert "SocketGroup=dropbox" in socket_unit and "SocketMode=0660" in socket_unit


def _unit_bytes(lines: list[str], key: str) -> int:
    (value,) = [ln.split("=", 1)[1] for ln in lines if ln.startswith(f"{key}=")]
    return int(float(value[:-1]) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[value[-1]])


def test_each_units_memory_cap_covers_what_its_default_settings_let_it_hold_at_once() -> None:
    # The cleaner: `--concurrency` sandboxes at once, each up to clean_memory_bytes of address space
    # plus its tmpfs (file and cleaned copy), which is charged to the unit too (docs/OPERATIONS.md)
    cleaner = (REPO_ROOT / "deploy" / "dropbox-cleaner.service").read_text().splitlines()
    (start,) = [ln for ln in cleaner if ln.startswith("ExecStart=")]
    concurrency = int(start.split("--concurrency", 1)[1].split()[0])
    limits = settings_from(Config()).limits
    assert _unit_bytes(cleaner, "MemoryMax") > concurrency * (limits.memory_bytes + limits.tmpfs_bytes)
    # The app: every Argon2id run both apps may have in flight, with room for the app itself
    app = (REPO_ROOT / "deploy" / "dropbox.service").read_text().splitlines()
    defaults = Config()
    argon2 = (defaults.kdf_concurrency + defaults.staff_kdf_concurrency) * defaults.kdf_mem
    assert _unit_bytes(app, "MemoryMax") > argon2
