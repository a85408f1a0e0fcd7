"""The receiving side, run as an authority runs it: `run.py recipient-key`, `run.py open-export`
and `run.py verify` in subprocesses, on exports made by a real install; and forwarding's
sealing on its own: only the recipient's key opens it, any change is caught."""

from __future__ import annotations

import io
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dropbox import forwarding
from dropbox.config import Config
from dropbox.sealing import TamperedData, WrongRecipient, new_recipient_key
from tests.support.export import exported_report

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)


def recipient(tmp_path: Path, name: str = "authority.key") -> tuple[Path, bytes]:
    made = run("recipient-key", "--out", tmp_path / name)
    assert made.returncode == 0, made.stderr
    [line] = [x for x in made.stdout.splitlines() if x.startswith("dbxr1:")]
    return tmp_path / name, forwarding.parse_public(line)


@pytest.fixture(name="install")
async def install_fixture(tmp_path: Path) -> tuple[Config, bytes]:
    """An install with one report, and that report's export ZIP."""
    made = await exported_report(tmp_path / "data", text="The tender was rigged.",
                                 files={"minutes.txt": b"the minutes"})
    return made.config, made.zip_bytes


async def test_a_forwarded_export_opens_with_the_recipient_key_only_and_then_verifies(
        install: tuple[Config, bytes], tmp_path: Path) -> None:
    config, zip_bytes = install
    # Given an authority's key pair made with recipient-key (secret file 0600)
    key_file, public = recipient(tmp_path)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    wrong_file, _ = recipient(tmp_path, "someone-else.key")
    # and the export forwarded to its public key
    sealed = tmp_path / "case.dbxexport"
    sealed.write_bytes(b"".join(forwarding.sealed([zip_bytes], recipient=public)))
    assert b"The tender was rigged" not in sealed.read_bytes() and b"the minutes" not in sealed.read_bytes()
    # When another key tries to open it: a clear refusal, status 1, nothing written
    wrong = run("open-export", sealed, "--key", wrong_file, "--out", tmp_path / "wrong.zip")
    assert wrong.returncode == 1 and "sealed to another recipient key" in wrong.stderr
    assert not (tmp_path / "wrong.zip").exists() and not list(tmp_path.glob(".*.part"))
    # and `verify` on the sealed file says to open it first
    sealed_check = run("verify", sealed, "--data", config.data_dir)
    assert sealed_check.returncode == 1 and "open-export" in sealed_check.stdout
    # When the recipient opens it, the ZIP is the export, byte for byte, and it verifies
    opened = run("open-export", sealed, "--key", key_file)
    assert opened.returncode == 0, opened.stderr
    assert (tmp_path / "case.zip").read_bytes() == zip_bytes
    verified = run("verify", tmp_path / "case.zip", "--data", config.data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Valid export of report" in verified.stdout and "files/001-minutes.txt" in verified.stdout


async def test_verify_names_the_tampered_member(install: tuple[Config, bytes], tmp_path: Path) -> None:
    config, zip_bytes = install
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as old, zipfile.ZipFile(tampered, "w") as new:
        for name in old.namelist():
            new.writestr(name, b"other minutes" if name == "files/001-minutes.txt" else old.read(name))
    result = run("verify", tampered, "--data", config.data_dir)
    assert result.returncode == 1
    assert result.stdout.strip() == "INVALID: member files/001-minutes.txt: digest does not match"


def test_a_changed_byte_anywhere_in_a_forwarded_export_fails_to_open() -> None:
    key, public = new_recipient_key()
    sealed = b"".join(forwarding.sealed([b"PK" + bytes(200_000)], recipient=public))
    assert b"".join(forwarding.opened(io.BytesIO(sealed), secret_key=key)) == b"PK" + bytes(200_000)
    for position in (0, 20, len(sealed) // 2, len(sealed) - 1):
        changed = bytearray(sealed)
        changed[position] ^= 0x40
        with pytest.raises((TamperedData, WrongRecipient)):
            b"".join(forwarding.opened(io.BytesIO(bytes(changed)), secret_key=key))
    with pytest.raises(TamperedData):  # cut short, even at a frame boundary
        b"".join(forwarding.opened(io.BytesIO(sealed[: -40]), secret_key=key))


@pytest.mark.parametrize("text", [
    "", "hello", "dbxr1:" + "0" * 72, "dbxr1:" + "g" * 72, "dbxs1:" + "1" * 64,
])
def test_garbage_recipient_keys_are_refused(text: str) -> None:
    with pytest.raises(forwarding.RecipientKeyError):
        forwarding.parse_public(text)


def test_a_mistyped_recipient_key_fails_its_checksum_and_a_pasted_one_is_forgiven_its_line_breaks() -> None:
    line = forwarding.new_key_file()[1]
    typo = line[:20] + ("0" if line[20] != "0" else "1") + line[21:]
    with pytest.raises(forwarding.RecipientKeyError, match="checksum"):
        forwarding.parse_public(typo)
    assert forwarding.parse_public(f"  {line[:40]}\n{line[40:]}  ") == forwarding.parse_public(line)


@pytest.mark.parametrize("args", [
    ("recipient-key",),
    ("open-export", "{missing}", "--key", "{key}"),
    ("open-export", "{key}", "--key", "{key}"),
    ("open-export", "{zip}", "--key", "{missing}"),
    ("open-export", "{zip}", "--key", "{zip}"),
    ("open-export", "{sealed}"),
    ("open-export", "{sealed}", "--key", "{key}", "--out", "{key}"),
    ("recipient-key", "--out", "{key}"),
    ("recipient-key", "--out", "{missing}/deeper/x.key"),
])
def test_misuse_is_one_line_and_status_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    key, public = recipient(tmp_path)
    (tmp_path / "export.zip").write_bytes(b"PK\x03\x04 not really")
    sealed = tmp_path / "x.dbxexport"
    sealed.write_bytes(b"".join(forwarding.sealed([b"data"], recipient=public)))
    paths = {"missing": tmp_path / "missing", "key": key, "zip": tmp_path / "export.zip", "sealed": sealed}
    result = run(*(a.format(**paths) for a in args))
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
