"""Upgrades are explicit: `run.py migrate` changes the schema, everything else refuses an old one."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox.migrations import _MIGRATIONS, SCHEMA_VERSION
from dropbox.storage import schema_version
from tests.server_process import REPO_ROOT


def run(*args: str, data: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args, "--data", str(data)], cwd=REPO_ROOT, input=stdin,
                          text=True, capture_output=True, timeout=120, check=False)


def set_version(db: Path, version: int) -> None:
    with contextlib.closing(sqlite3.connect(db)) as raw:
        raw.execute(f"PRAGMA user_version = {version}")
        raw.commit()


@pytest.fixture
def old_install(tmp_path: Path) -> Path:
    """A real install whose database says it is at the previous schema."""
    data = tmp_path / "data"
    assert run("init", data=data).returncode == 0
    assert schema_version(data / "dropbox.sqlite3") == SCHEMA_VERSION  # init creates at the latest
    set_version(data / "dropbox.sqlite3", SCHEMA_VERSION - 1)
    return data


def test_serve_refuses_a_database_that_needs_migrating_and_names_the_commands(old_install: Path) -> None:
    before = (old_install / "dropbox.sqlite3").read_bytes()
    done = run("serve", "--no-tor", data=old_install)
    assert done.returncode == 2, done
    (line,) = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "python run.py migrate" in line and "python run.py backup" in line and str(old_install) in line
    assert (old_install / "dropbox.sqlite3").read_bytes() == before
    assert schema_version(old_install / "dropbox.sqlite3") == SCHEMA_VERSION - 1


@pytest.mark.parametrize("args", [("caseworker", "list"), ("caseworker", "add", "bob", "--passphrase-stdin"),
                                  ("purge",), ("caseworker", "disable", "bob")])
def test_every_other_command_refuses_instead_of_migrating(old_install: Path, args: tuple[str, ...]) -> None:
    done = run(*args, data=old_install, stdin="ochre tram kettle ferry basalt lantern\n")
    assert done.returncode == 2, done
    assert "python run.py migrate" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert schema_version(old_install / "dropbox.sqlite3") == SCHEMA_VERSION - 1


def test_migrate_brings_a_schema_1_database_to_the_latest_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    # Given a database made by the first version (schema 1)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with contextlib.closing(sqlite3.connect(data / "dropbox.sqlite3")) as raw:
        raw.executescript(_MIGRATIONS[1] + "; PRAGMA user_version = 1;")
    # When the operator migrates
    done = run("migrate", data=data)
    # Then it is at the latest schema, whole, and commands open it
    assert done.returncode == 0, done.stderr
    assert f"from schema 1 to {SCHEMA_VERSION}" in done.stdout
    assert schema_version(data / "dropbox.sqlite3") == SCHEMA_VERSION
    with contextlib.closing(sqlite3.connect(data / "dropbox.sqlite3")) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert run("caseworker", "list", data=data).returncode == 0
    again = run("migrate", data=data)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_migrate_refuses_a_newer_database_and_a_missing_install(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("migrate", data=data).returncode == 2
    assert not data.exists()
    assert run("init", data=data).returncode == 0
    set_version(data / "dropbox.sqlite3", SCHEMA_VERSION + 1)
    done = run("migrate", data=data)
    assert done.returncode == 2 and "newer" in done.stderr
