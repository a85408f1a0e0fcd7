"""Upgrades are explicit: `run.py migrate` changes the schema, everything else refuses an old one."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from dropbox.migrations import _MIGRATIONS, SCHEMA_VERSION
from dropbox.storage import schema_version
from tests.support.server_process import run_cli


def set_version(db: Path, version: int) -> None:
    with contextlib.closing(sqlite3.connect(db)) as raw:
        raw.execute(f"PRAGMA user_version = {version}")
        raw.commit()


@pytest.fixture
def old_install(cli_initialised: Path) -> Path:
    """A real install (`run.py init`'s) whose database says it is at the previous schema."""
    data = cli_initialised
    assert schema_version(data / "dropbox.sqlite3") == SCHEMA_VERSION  # init creates at the latest
    set_version(data / "dropbox.sqlite3", SCHEMA_VERSION - 1)
    return data


def test_serve_refuses_a_database_that_needs_migrating_and_names_the_commands(old_install: Path) -> None:
    before = (old_install / "dropbox.sqlite3").read_bytes()
    done = run_cli("serve", "--no-tor", data=old_install, check=False)
    assert done.returncode == 2, done
    (line,) = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "python run.py migrate" in line and "python run.py backup" in line and str(old_install) in line
    assert (old_install / "dropbox.sqlite3").read_bytes() == before
    assert schema_version(old_install / "dropbox.sqlite3") == SCHEMA_VERSION - 1


@pytest.mark.parametrize("args", [("caseworker", "list"), ("caseworker", "add", "bob", "--passphrase-stdin"),
                                  ("purge",), ("caseworker", "disable", "bob")])
def test_every_other_command_refuses_instead_of_migrating(old_install: Path, args: tuple[str, ...]) -> None:
    done = run_cli(*args, data=old_install, check=False, stdin="ochre tram kettle ferry basalt lantern\n")
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
    done = run_cli("migrate", data=data, check=False)
    # Then it is at the latest schema, whole, and commands open it
    assert done.returncode == 0, done.stderr
    assert f"from schema 1 to {SCHEMA_VERSION}" in done.stdout
    assert schema_version(data / "dropbox.sqlite3") == SCHEMA_VERSION
    with contextlib.closing(sqlite3.connect(data / "dropbox.sqlite3")) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert run_cli("caseworker", "list", data=data, check=False).returncode == 0
    again = run_cli("migrate", data=data, check=False)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_migrate_refuses_a_newer_database_and_a_missing_install(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("migrate", data=data, check=False).returncode == 2
    assert not data.exists()
    assert run_cli("init", data=data, check=False).returncode == 0
    set_version(data / "dropbox.sqlite3", SCHEMA_VERSION + 1)
    done = run_cli("migrate", data=data, check=False)
    assert done.returncode == 2 and "newer" in done.stderr


@pytest.mark.parametrize("args", [("serve", "--no-tor"), ("caseworker", "list"), ("purge",), ("channel", "list"),
                                  ("statistics", "--year", "2026")])
def test_a_newer_database_is_refused_in_one_line_and_status_2_not_a_traceback(
        cli_initialised: Path, args: tuple[str, ...]) -> None:
    # Given a rollback whose restore was forgotten: old code on a database a newer version wrote
    set_version(cli_initialised / "dropbox.sqlite3", SCHEMA_VERSION + 1)
    # When serve or a command opens it
    done = run_cli(*args, data=cli_initialised, check=False)
    # Then it is refused the way docs/OPERATIONS.md says: one line and status 2 (which the
    # unit does not restart), naming the way back, and the database is left as it was
    assert done.returncode == 2, done
    (line,) = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "newer than this code" in line and "restore" in line and "Traceback" not in done.stderr
    assert schema_version(cli_initialised / "dropbox.sqlite3") == SCHEMA_VERSION + 1


@pytest.mark.parametrize("args", [("serve", "--no-tor"), ("caseworker", "list"), ("purge",), ("migrate",),
                                  ("backup", "BACKUP"), ("status",)])
def test_a_damaged_database_file_is_named_in_one_line_not_a_traceback(
        cli_initialised: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    # Given a database file that is not a database any more (a disk fault, a bad copy)
    damaged = os.urandom(200_000)
    (cli_initialised / "dropbox.sqlite3").write_bytes(damaged)
    # When serve or a command opens it
    argv = [str(tmp_path / "backup.tar") if a == "BACKUP" else a for a in args]
    done = run_cli(*argv, data=cli_initialised, check=False)
    # Then it says so in one line that names the way back, without a traceback, and touches nothing
    assert "Traceback" not in done.stderr, done.stderr
    assert "damaged" in done.stdout + done.stderr and "restore" in done.stdout + done.stderr
    if args != ("status",):  # status lists every check, the database among them
        assert done.returncode == 2, done
        assert len([ln for ln in done.stderr.splitlines() if ln.strip()]) == 1, done.stderr
    else:
        assert done.returncode != 0
    assert (cli_initialised / "dropbox.sqlite3").read_bytes() == damaged
    assert not (tmp_path / "backup.tar").exists()
