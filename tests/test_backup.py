"""`run.py backup` while the real server takes submissions, `run.py restore` into a fresh folder."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from dropbox import backup as backup_module
from dropbox.config import config_for_tests
from dropbox.services import Services
from tests.support.data_checks import Sent, assert_every_report_opens, assert_receipts_open, digest
from tests.support.domain import submit as hand_in_report
from tests.support.http_client import new_client, submit
from tests.support.installs import ALICE, new_install
from tests.support.server_process import REPO_ROOT, running_server


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "run.py", *args, cwd=REPO_ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_backup_taken_during_20_submissions_restores_every_receipt_shown(tmp_path: Path) -> None:
    # Given a serving install and 20 whistleblowers submitting at once, their bodies streamed slowly
    config = await new_install(tmp_path / "data")
    archive = tmp_path / "backup.tar"
    planted: list[bytes] = []  # a piece of each file's contents, looked for in the archive
    with running_server(config.data_dir, tmp_path / "server.log") as server:
        async with new_client() as client:

            async def one(i: int) -> tuple[Sent, float] | None:
                files = {f"f{i}.bin": os.urandom(200_000 + i)}
                planted.extend(d[100_000:100_064] for d in files.values())
                done = await submit(client, server.url, text=f"report {i}", files=list(files.items()),
                                    slow=(10, 0.05 * (i % 5)))
                if done.receipt is None:
                    return None
                return Sent(done.receipt, f"report {i}", {n: digest(d) for n, d in files.items()}), \
                    asyncio.get_running_loop().time()

            tasks = [asyncio.create_task(one(i)) for i in range(20)]
            # When the backup runs while they are in flight (once the first few have their receipts)
            for finished, next_done in enumerate(asyncio.as_completed(tasks), start=1):
                await next_done
                if finished == 3:
                    break
            backup_started = asyncio.get_running_loop().time()
            status, out, err = await run_cli("backup", str(archive), "--data", str(config.data_dir))
            results = await asyncio.gather(*tasks)
    assert status == 0, err
    sent = [r for r in results if r is not None]
    assert len(sent) == 20  # every submission got its receipt (the backup slowed nobody into failure)
    shown_before = [s for s, at in sent if at <= backup_started]
    assert len(shown_before) >= 3

    # Then the archive holds no plaintext of what was sent, no receipt and no passphrase
    raw = archive.read_bytes()
    assert b"report 1" not in raw and all(r.receipt.encode() not in raw for r, _ in sent)
    assert len(planted) == 20 and not any(piece in raw for piece in planted)
    assert ALICE.passphrase.encode() not in raw

    # And restored into a fresh folder, every receipt shown before the backup opens its report with
    # its files, and every report in the archive opens whole
    restored = tmp_path / "restored"
    status, out, err = await run_cli("restore", str(archive), "--data", str(restored))
    assert status == 0, err
    restored_config = config_for_tests(restored)
    await assert_receipts_open(restored_config, shown_before)
    assert await assert_every_report_opens(restored_config, caseworker=ALICE.name,
                                           passphrase=ALICE.passphrase) >= len(shown_before)
    assert (restored / "keys").stat().st_mode & 0o077 == 0
    # and the restored install serves
    with running_server(restored, tmp_path / "restored.log"):
        pass


def _tamper(archive: Path, target: Path, change: str) -> None:
    with tarfile.open(archive) as src, tarfile.open(target, "w") as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if change == "flip" and member.name == "dropbox.sqlite3":
                assert data is not None
                data = data[:-10] + bytes(b ^ 1 for b in data[-10:])
            if change == "traversal" and member.name == "dropbox.sqlite3":
                evil = tarfile.TarInfo("../escaped")
                evil.size = 4
                dst.addfile(evil, io.BytesIO(b"evil"))
            if change == "no-manifest" and member.name == "MANIFEST.json":
                continue
            if change == "foreign-manifest" and member.name == "MANIFEST.json":
                assert data is not None
                data = json.dumps({**json.loads(data), "format": "other"}).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)


@pytest.mark.parametrize("change", ["flip", "traversal", "no-manifest", "foreign-manifest"])
async def test_a_damaged_or_foreign_archive_is_refused_and_leaves_nothing(tmp_path: Path, change: str) -> None:
    config = await new_install(tmp_path / "data")
    archive, bad = tmp_path / "b.tar", tmp_path / "bad.tar"
    assert (await run_cli("backup", str(archive), "--data", str(config.data_dir)))[0] == 0
    _tamper(archive, bad, change)
    target = tmp_path / "restored"
    status, _, err = await run_cli("restore", str(bad), "--data", str(target))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert not target.exists() and not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b.tar", "bad.tar", "data"])


async def test_restore_refuses_a_folder_that_is_not_empty_and_backup_never_overwrites(tmp_path: Path) -> None:
    config = await new_install(tmp_path / "data")
    archive = tmp_path / "b.tar"
    assert (await run_cli("backup", str(archive), "--data", str(config.data_dir)))[0] == 0
    before = archive.read_bytes()
    status, _, err = await run_cli("backup", str(archive), "--data", str(config.data_dir))
    assert status == 2 and "exists" in err and archive.read_bytes() == before
    status, _, err = await run_cli("restore", str(archive), "--data", str(config.data_dir))
    assert status == 2 and "not empty" in err


async def test_restore_into_an_existing_empty_folder_as_the_operator_makes_it(tmp_path: Path) -> None:
    # Given an archive, and the empty 0700 folder an operator makes for the service user to restore
    # into (`install -d -m 0700 -o dropbox /var/lib/dropbox-restored`: the user cannot create it)
    config = await new_install(tmp_path / "data")
    archive = tmp_path / "b.tar"
    assert (await run_cli("backup", str(archive), "--data", str(config.data_dir)))[0] == 0
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    # When it is restored there
    status, _, err = await run_cli("restore", str(archive), "--data", str(restored))
    # Then it is: "a new or empty folder" (the command's own lock file does not make it "not empty")
    assert status == 0, err
    assert (restored / "dropbox.sqlite3").read_bytes() != b"" and (restored / "keys").is_dir()
    assert [p.name for p in restored.iterdir() if p.name.startswith(".")] == []
    assert (restored / "keys").stat().st_mode & 0o077 == 0 and restored.stat().st_mode & 0o077 == 0
    await assert_every_report_opens(config_for_tests(restored), caseworker=ALICE.name, passphrase=ALICE.passphrase)


async def test_a_backup_or_restore_path_that_cannot_be_written_is_one_line_and_status_2(tmp_path: Path) -> None:
    config = await new_install(tmp_path / "data")
    status, _, err = await run_cli("backup", str(tmp_path / "no-such-folder" / "b.tar"), "--data", str(config.data_dir))
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    archive = tmp_path / "b.tar"
    assert (await run_cli("backup", str(archive), "--data", str(config.data_dir)))[0] == 0
    (tmp_path / "file").write_text("not a folder")
    status, _, err = await run_cli("restore", str(archive), "--data", str(tmp_path / "file" / "restored"))
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


async def test_the_backup_says_what_it_holds_files_included(tmp_path: Path) -> None:
    # Given an install holding a report with a file (its sealed contents are rows of the database)
    config = await new_install(tmp_path / "data")
    async with Services.open(config) as services:
        await hand_in_report(services, files={"a.pdf": os.urandom(5000)})
    # When it is backed up
    status, out, err = await run_cli("backup", str(tmp_path / "b.tar"), "--data", str(config.data_dir))
    # Then the operator is not told the archive holds no file
    assert status == 0, err
    assert "0 sealed file(s)" not in out and "sealed file contents" in out, out


async def test_a_file_that_appears_at_the_target_while_the_backup_runs_is_not_overwritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a backup whose target name is taken while it runs (another backup, another program)
    config = await new_install(tmp_path / "data")
    target = tmp_path / "b.tar"
    snapshot = backup_module.snapshot_database

    def meanwhile(source: Path, copy: Path) -> None:
        target.write_bytes(b"someone else's file")
        snapshot(source, copy)

    monkeypatch.setattr(backup_module, "snapshot_database", meanwhile)
    # When it finishes, then "a backup never overwrites a file" holds: it is refused, and the
    # other file and the folder are as they were
    with pytest.raises(backup_module.BackupError):
        backup_module.create_backup(config, target)
    assert target.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "data"]
