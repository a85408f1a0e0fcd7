"""`run.py status` exit codes against real server processes: 0 healthy, 1 when something is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dropbox.config import Config
from dropbox.settings import render_settings
from dropbox.storage import SCHEMA_VERSION
from tests.support.cleaning import cleaner_process
from tests.support.installs import new_install
from tests.support.server_process import REPO_ROOT, ServerProcess, running_server


def status(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", "status", "--data", str(data)], cwd=REPO_ROOT, text=True,
                          capture_output=True, timeout=120, check=False)


def line(done: subprocess.CompletedProcess[str], name: str) -> str:
    (found,) = [ln for ln in done.stdout.splitlines() if ln.split()[1:2] == [name]]
    return found


async def install(tmp_path: Path, **changes: object) -> tuple[Config, ServerProcess]:
    """An install whose config.toml names the ports the server process will use."""
    config = await new_install(tmp_path / "data")
    server = ServerProcess(data_dir=config.data_dir, log_path=tmp_path / "server.log")
    config = config.replace(port=server.port, admin_port=server.admin_port, **changes)
    (config.data_dir / "config.toml").write_text(render_settings(config))
    return config, server


async def test_serving_healthy_install_exits_0(tmp_path: Path) -> None:
    config, server = await install(tmp_path, tor_mode="off")
    server.start()
    try:
        done = status(config.data_dir)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert line(done, "serving").startswith("ok") and line(done, "database").startswith("ok")
    assert line(done, "onions").startswith("warn")  # tor_mode off: said, not hidden
    assert line(done, "cleaning").startswith("ok")
    # and once stopped, it is not serving
    stopped = status(config.data_dir)
    assert stopped.returncode == 1 and line(stopped, "serving").startswith("FAIL")


async def test_a_server_that_cannot_start_the_cleaning_sandbox_exits_1(tmp_path: Path) -> None:
    # Given a server whose environment has no bwrap (as under a service manager that forbids it,
    # the server itself finds out at start-up; `status`, run by the operator, could not)
    config, server = await install(tmp_path, tor_mode="off")
    server.env_changes = {"PATH": str(tmp_path / "no-tools-here")}
    server.start()
    try:
        done = status(config.data_dir)
    finally:
        server.stop()
    # Then status fails on the cleaning line and says what happens to files meanwhile
    assert done.returncode == 1, done.stdout + done.stderr
    assert line(done, "serving").startswith("ok")
    assert line(done, "cleaning").startswith("FAIL") and "kept as sent" in line(done, "cleaning")


async def test_status_asks_the_cleaner_service_itself(tmp_path: Path) -> None:
    # Given a server whose files are cleaned by a cleaner service of its own (cleaner_socket)
    async with cleaner_process() as worker:
        config, server = await install(tmp_path, tor_mode="off", cleaner_socket=worker.socket)
        server.start()
        try:
            healthy = await asyncio.to_thread(status, config.data_dir)
            # When the cleaner stops while the server goes on
            worker.kill()
            await worker.process.wait()
            stopped = await asyncio.to_thread(status, config.data_dir)
        finally:
            server.stop()
    # Then status said the cleaner works, and now fails on the cleaning line, asked live
    assert line(healthy, "cleaning").startswith("ok") and "cleaner service" in line(healthy, "cleaning")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert stopped.returncode == 1 and line(stopped, "serving").startswith("ok")
    assert line(stopped, "cleaning").startswith("FAIL") and "does not answer" in line(stopped, "cleaning")


@dataclass
class ServeWithTor(ServerProcess):
    """`run.py serve` with tor: a private tor that cannot reach any relay here (loopback only)."""

    def command(self) -> list[str]:
        return [sys.executable, "run.py", "serve", "--data", str(self.data_dir)]


async def test_onions_down_exits_1_while_the_apps_answer(tmp_path: Path) -> None:
    # Given a server whose tor cannot publish (no network for it to bootstrap on)
    config, plain = await install(tmp_path, tor_mode="launch")
    server = ServeWithTor(data_dir=config.data_dir, log_path=tmp_path / "server.log", port=plain.port,
                          admin_port=plain.admin_port)
    server.start()
    try:
        # wait (on the file, not the clock) until the server has reported its onion state
        deadline = time.monotonic() + 120
        while not (config.data_dir / "status.json").exists():
            assert time.monotonic() < deadline and server.running, server.log_tail()
            time.sleep(0.1)
        assert json.loads((config.data_dir / "status.json").read_text())["onions"]["public_published"] is False
        done = status(config.data_dir)
    finally:
        server.stop()
    # Then status says the apps answer but the onions are not published, exit 1
    assert done.returncode == 1, done.stdout
    assert line(done, "serving").startswith("ok")
    assert line(done, "onions").startswith("FAIL") and "not published" in line(done, "onions")
    assert not (config.data_dir / "status.json").exists()  # removed on a clean stop


async def test_serving_without_tor_when_tor_is_configured_exits_1(tmp_path: Path) -> None:
    config, server = await install(tmp_path, tor_mode="launch")
    with running_server(config.data_dir, tmp_path / "s.log", port=server.port, admin_port=server.admin_port):
        done = status(config.data_dir)
    assert done.returncode == 1 and "--no-tor" in line(done, "onions")


async def test_pending_migration_exits_1(tmp_path: Path) -> None:
    config, _ = await install(tmp_path, tor_mode="off")
    with contextlib.closing(sqlite3.connect(config.db_path)) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
        raw.commit()
    done = status(config.data_dir)
    assert done.returncode == 1
    assert line(done, "database").startswith("FAIL") and "run.py migrate" in line(done, "database")


async def test_settings_mistakes_are_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    config, _ = await install(tmp_path, tor_mode="off")
    (config.data_dir / "config.toml").write_text("[uploads]\nmax_file_bytes = 'x'\n")
    done = status(config.data_dir)
    assert done.returncode == 1 and "max_file_bytes" in line(done, "settings")
