"""`onion sync` into a system tor's HiddenServiceDirs: a temp folder stands in for /var/lib/tor and
the real `tor --verify-config` reads the result."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dropbox.config import Config, config_for_tests
from dropbox.install import init_install
from onion.cli import EXIT_MISUSE, EXIT_OK, run_onion_command
from onion.keys import CASEWORKER, WHISTLEBLOWER, service_dir
from run import build_parser

TOR = shutil.which("tor")


def run(config: Config, *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["onion", *argv])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = run_onion_command(args, config)
    return status, out.getvalue(), err.getvalue()


def torrc(tmp_path: Path, config: Config, *, port: int | None = None) -> Path:
    data_dir = tmp_path / "tor-data"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    path = tmp_path / "torrc"
    path.write_text(f"""SocksPort 0
DataDirectory {data_dir}
HiddenServiceDir {config.tor_whistleblower_dir}
HiddenServicePort 80 127.0.0.1:{port or config.port}
HiddenServicePoWDefensesEnabled 1
HiddenServiceDir {config.tor_caseworker_dir}
HiddenServicePort 80   127.0.0.1:{config.admin_port}
""")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    lib = tmp_path / "var-lib-tor"
    lib.mkdir(mode=0o700)
    config = config_for_tests(tmp_path / "data", tor_mode="system", tor_control="/run/tor/control",
                              tor_user=pwd.getpwuid(os.getuid()).pw_name, port=18080, admin_port=18081,
                              tor_whistleblower_dir=lib / "dropbox-whistleblower",
                              tor_caseworker_dir=lib / "dropbox-caseworker")
    asyncio.run(init_install(config))
    run(config, "show")  # makes the onion keys, as `init` does
    return config.replace(tor_torrc=torrc(tmp_path, config))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(TOR is None, reason="tor is not installed")
def test_sync_writes_keys_and_clients_with_tor_modes_and_tor_accepts_the_config(config: Config) -> None:
    # Given two caseworker devices
    assert run(config, "add-client", "laptop")[0] == EXIT_OK
    assert run(config, "add-client", "phone")[0] == EXIT_OK
    # When the operator syncs
    status, out, err = run(config, "sync")
    # Then both HiddenServiceDirs hold the app's keys, owned by tor's user, 0700/0600
    assert status == EXIT_OK, err
    assert "restart tor" in out
    for service, target in ((WHISTLEBLOWER, config.tor_whistleblower_dir), (CASEWORKER, config.tor_caseworker_dir)):
        assert mode(target) == 0o700 and target.stat().st_uid == os.getuid()
        for name in ("hs_ed25519_secret_key", "hs_ed25519_public_key", "hostname"):
            assert (target / name).read_bytes() == (service_dir(config, service) / name).read_bytes()
            assert mode(target / name) == 0o600
    auth = config.tor_caseworker_dir / "authorized_clients"
    assert sorted(p.name for p in auth.iterdir()) == ["laptop.auth", "phone.auth"] and mode(auth) == 0o700
    # and the real tor accepts the configuration with those folders
    verified = subprocess.run([TOR, "--verify-config", "-f", str(config.tor_torrc)],  # type: ignore[list-item]
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout
    # And a removed client disappears from tor's folder at the next sync
    assert run(config, "remove-client", "phone")[0] == EXIT_OK
    assert run(config, "sync")[0] == EXIT_OK
    assert [p.name for p in auth.iterdir()] == ["laptop.auth"]


def test_a_port_mismatch_is_one_line_and_nothing_is_copied(config: Config, tmp_path: Path) -> None:
    run(config, "add-client", "laptop")
    config = config.replace(tor_torrc=torrc(tmp_path, config, port=9999))
    status, out, err = run(config, "sync")
    assert status == EXIT_MISUSE and out == "" and len(err.strip().splitlines()) == 1
    assert "HiddenServicePort 80 127.0.0.1:9999" in err and "expected HiddenServicePort 80 127.0.0.1:18080" in err
    assert not config.tor_whistleblower_dir.exists() and not config.tor_caseworker_dir.exists()


def test_sync_never_leaves_the_caseworker_onion_without_clients(config: Config) -> None:
    status, _, err = run(config, "sync")
    assert status == EXIT_MISUSE and "no authorized caseworker client" in err
    assert not config.tor_caseworker_dir.exists()


def test_a_torrc_without_the_services_is_refused(config: Config, tmp_path: Path) -> None:
    run(config, "add-client", "laptop")
    (tmp_path / "empty-torrc").write_text("SocksPort 0\n")
    status, _, err = run(config.replace(tor_torrc=tmp_path / "empty-torrc"), "sync")
    assert status == EXIT_MISUSE and "has no HiddenServiceDir" in err


@pytest.mark.skipif(TOR is None, reason="tor is not installed")
def test_the_services_in_a_file_the_torrc_includes_are_found(config: Config, tmp_path: Path) -> None:
    # Given the layout scripts/install makes: the onion services in /etc/tor/torrc.d/dropbox.conf,
    # which the main torrc (the tor_torrc setting, /etc/tor/torrc) pulls in with %include
    run(config, "add-client", "laptop")
    snippets = tmp_path / "torrc.d"
    snippets.mkdir()
    whole = config.tor_torrc.read_text().splitlines()
    services_at = next(i for i, line in enumerate(whole) if line.startswith("HiddenServiceDir"))
    (snippets / "dropbox.conf").write_text("\n".join(whole[services_at:]) + "\n")
    main = tmp_path / "main-torrc"
    main.write_text("\n".join(whole[:services_at]) + f"\n%include {snippets}/*.conf\n")
    config = config.replace(tor_torrc=main)
    # When the operator syncs (OPERATIONS.md, section 3)
    status, _, err = run(config, "sync")
    # Then the services are found through the include, as tor finds them
    assert status == EXIT_OK, err
    assert (config.tor_caseworker_dir / "authorized_clients" / "laptop.auth").is_file()
    verified = subprocess.run([TOR, "--verify-config", "-f", str(main)],  # type: ignore[list-item]
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout
