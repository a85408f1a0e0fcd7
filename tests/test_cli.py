"""The operator's contract, run as the operator runs it: `python run.py ...` in a subprocess."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from tests.support.server_process import free_port, run_cli


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_init_then_caseworker_add_gives_a_working_install(data: Path) -> None:
    result = run_cli("init", data=data, check=False)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "dropbox.sqlite3").stat().st_mode) == 0o600
    added = run_cli("caseworker", "add", "alice", data=data, check=False)
    assert added.returncode == 0, added.stderr
    words = [line.strip() for line in added.stdout.splitlines() if line.startswith("    ") and "run.py" not in line]
    assert len(words[0].split()) == 7 and "bits of entropy" in added.stdout
    listed = run_cli("caseworker", "list", data=data, check=False)
    assert "alice" in listed.stdout and "default" in listed.stdout
    assert _row(data, "alice")[1] == 1  # generated: to be replaced at first sign-in
    # the printed passphrase is the one that works; the change makes a new key pair (M3)
    before = _row(data, "alice")
    passwd = run_cli("caseworker", "passwd", "alice", "--passphrase-stdin", data=data, check=False,
                     stdin=f"{words[0]}\nmarble quietly orbits the kettle drum\n")
    assert passwd.returncode == 0, passwd.stderr
    after = _row(data, "alice")
    assert after[0] != before[0] and after[1] == 0


def _row(data: Path, name: str) -> tuple[bytes, int]:
    """(public key, must-change flag) of a caseworker, read straight from the database file."""
    with sqlite3.connect(data / "dropbox.sqlite3") as conn:
        return conn.execute("SELECT public_key, must_change_passphrase FROM caseworkers WHERE name = ?",
                            (name,)).fetchone()  # type: ignore[no-any-return]


def test_second_init_refuses_and_changes_nothing(data: Path) -> None:
    assert run_cli("init", data=data, check=False).returncode == 0
    before = (data / "dropbox.sqlite3").read_bytes()
    again = run_cli("init", data=data, check=False)
    assert again.returncode == 2 and "already" in again.stderr
    assert (data / "dropbox.sqlite3").read_bytes() == before


@pytest.mark.parametrize("args", [
    ("caseworker", "add", "bad name"),
    ("caseworker", "add"),
    ("caseworker", "frobnicate"),
    ("caseworker", "disable", "nobody"),
    ("caseworker", "add", "x", "--channel", "nope"),
    ("nonsense",),
    ("serve", "--no-tor", "--port", "70000"),
    ("serve", "--no-tor", "--admin-port", "0"),
])
def test_operator_mistakes_give_one_line_and_status_2(cli_initialised: Path, args: tuple[str, ...]) -> None:
    data = cli_initialised
    result = run_cli(*args, data=data, check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_init_where_the_data_folder_cannot_be_made_is_one_line_and_status_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    for data in (tmp_path / "a-file", tmp_path / "a-file" / "data"):
        result = run_cli("init", data=data, check=False)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr and str(data) in result.stderr


def test_commands_without_install_say_to_run_init(data: Path) -> None:
    result = run_cli("caseworker", "list", data=data, check=False)
    assert result.returncode == 2 and "run.py init" in result.stderr


def test_weak_stdin_passphrase_is_refused(cli_initialised: Path) -> None:
    data = cli_initialised
    result = run_cli("caseworker", "add", "alice", "--passphrase-stdin", data=data, check=False, stdin="short\n")
    assert result.returncode == 2 and "at least" in result.stderr
    # Long enough, but easy to guess: refused as well (I3)
    guessable = run_cli("caseworker", "add", "alice", "--passphrase-stdin", data=data, check=False,
                        stdin="password1234567\n")
    assert guessable.returncode == 2 and "hard to guess" in guessable.stderr


ALICE = "alice keeps seven ferrets in a blue barn\n"


def test_grant_all_needs_the_granters_passphrase(cli_initialised: Path) -> None:
    data = cli_initialised
    run_cli("caseworker", "add", "alice", "--passphrase-stdin", data=data, check=False, stdin=ALICE)
    run_cli("caseworker", "add", "bob", "--passphrase-stdin", data=data, check=False,
            stdin="bob paints lighthouses every winter\n")
    wrong = run_cli("caseworker", "grant", "bob", "--all", "--by", "alice", "--passphrase-stdin", data=data,
                    check=False, stdin="not alice's passphrase\n")
    assert wrong.returncode == 2
    ok = run_cli("caseworker", "grant", "bob", "--all", "--by", "alice", "--passphrase-stdin", data=data, check=False,
                 stdin=ALICE)
    assert ok.returncode == 0 and "Granted 0 report(s)" in ok.stdout


def test_every_command_has_help(data: Path) -> None:
    for args in (("init",), ("serve",), ("purge",), ("caseworker", "add"), ("caseworker", "grant")):
        result = run_cli(*args, "--help", timeout=60, check=False)
        assert result.returncode == 0 and "--data" in result.stdout


def test_channel_list_shows_the_default_channel_and_its_caseworkers(cli_initialised: Path) -> None:
    data = cli_initialised
    assert run_cli("caseworker", "add", "alice", "--passphrase-stdin", data=data, check=False,
                   stdin="ochre tram kettle ferry basalt lantern\n").returncode == 0
    listed = run_cli("channel", "list", data=data, check=False)
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert line.startswith("default") and "retention: 90 days" in line and "caseworkers: 1" in line
    assert "[default]" in line


def test_a_port_in_use_is_one_clear_line_not_a_traceback(cli_initialised: Path) -> None:
    import socket

    data = cli_initialised
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--no-tor", "--port", str(port), "--admin-port", str(free_port()), data=data,
                       check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if "ERROR" in ln]
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_the_exposure_override_is_in_help() -> None:
    done = run_cli("serve", "--help", timeout=60, check=False)
    # listed as an option of its own (not only named in --host's text)
    assert any(line.strip().startswith("--i-understand-this-exposes-the-server") for line in done.stdout.splitlines())
