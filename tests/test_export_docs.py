"""docs/PROOF.md, "Verifying an export", is exact: its shell lines (unzip, openssl, sha256sum) and
its Python lines, copied from the document as written, accept a real export and reject one with
a changed member or an added one."""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from dropbox.signing import public_key_pem
from tests.support.export import exported_report

DOC = Path(__file__).resolve().parent.parent / "docs" / "PROOF.md"


def _section() -> str:
    text = DOC.read_text()
    return text[text.index("## Verifying an export"):]


def _shell_lines() -> str:
    match = re.search(r"```sh\n# export\n(.*?)```", _section(), re.S)
    assert match, "the shell recipe is gone from docs/PROOF.md"
    return match.group(1)


def _python_lines(public_key: str) -> str:
    match = re.search(r"```python\n(.*?)```", _section(), re.S)
    assert match, "the Python recipe is gone from docs/PROOF.md"
    return match.group(1).replace("<the channel's public key, base64>", public_key)


@pytest.fixture(name="made")
async def made_fixture(tmp_path: Path) -> tuple[bytes, bytes]:
    """A real export, and the install's public key."""
    made = await exported_report(tmp_path / "data", text="Minutes were rewritten.",
                                 files={"minutes v2.pdf": b"%PDF-1.7 minutes"})
    return made.zip_bytes, made.public_key


def _run_recipe(tmp_path: Path, zip_bytes: bytes, public_key: bytes) -> subprocess.CompletedProcess[str]:
    (tmp_path / "export.zip").write_bytes(zip_bytes)
    folder = tmp_path / "check"
    folder.mkdir()
    (folder / "key.pem").write_text(public_key_pem(public_key))
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", _shell_lines()], cwd=folder, capture_output=True,
                          text=True, timeout=60, check=False)


def _tampered(zip_bytes: bytes, change: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as old, zipfile.ZipFile(out, "w") as new:
        for name in old.namelist():
            new.writestr(name, change.pop(name, old.read(name)))
        for name, data in change.items():
            new.writestr(name, data)
    return out.getvalue()


def test_the_documented_shell_lines_accept_a_real_export(made: tuple[bytes, bytes], tmp_path: Path) -> None:
    zip_bytes, public_key = made
    result = _run_recipe(tmp_path, zip_bytes, public_key)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Signature Verified Successfully" in result.stdout


@pytest.mark.parametrize("change", [{"files/001-minutes_v2.pdf": b"%PDF-1.7 other minutes"},
                                    {"files/002-extra.pdf": b"%PDF planted"}])
def test_the_documented_shell_lines_reject_a_changed_or_added_member(
        made: tuple[bytes, bytes], tmp_path: Path, change: dict[str, bytes]) -> None:
    zip_bytes, public_key = made
    result = _run_recipe(tmp_path, _tampered(zip_bytes, dict(change)), public_key)
    assert result.returncode != 0
    assert next(iter(change)) in result.stdout + result.stderr


def test_the_documented_python_lines_accept_a_real_export_and_reject_a_changed_member(
        made: tuple[bytes, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    zip_bytes, public_key = made
    code = _python_lines(base64.b64encode(public_key).decode())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "export.zip").write_bytes(zip_bytes)
    exec(compile(code, str(DOC), "exec"), {})  # noqa: S102 - the document's own lines
    (tmp_path / "export.zip").write_bytes(_tampered(zip_bytes, {"files/001-minutes_v2.pdf": b"forged"}))
    with pytest.raises(AssertionError, match="files/001-minutes_v2.pdf"):
        exec(compile(code, str(DOC), "exec"), {})  # noqa: S102
