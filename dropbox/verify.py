"""`python run.py verify FILE`: what kind of signed file it is, and the check for that kind.

Each format is recognised by its first bytes and checked by its own module; this one only picks.
Add a format by adding a branch to `check` (exports, ZIP files, come from dropbox/export.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dropbox import export
from dropbox.sealing import FORWARD_MAGIC
from dropbox.signing import SigningKeyError, known_public_keys

#: The first bytes of a ZIP file (a local file header): a case export.
ZIP_MAGIC = b"PK\x03\x04"


class VerifyError(Exception):
    """The file is not valid; the message is the reason printed to the operator."""


class CannotVerify(Exception):
    """Nothing could be checked (no such file, no install keys): a usage problem, not an invalid file."""


@dataclass(frozen=True)
class Verified:
    """A valid file: the lines that say what it proves."""

    kind: str
    lines: list[str]


def check(path: Path, *, data_dir: Path) -> Verified:
    """Verify the file at `path` against the install in `data_dir`; VerifyError if invalid."""
    try:
        keys = known_public_keys(data_dir)
    except SigningKeyError as e:
        raise CannotVerify(f"no signing key in {data_dir} to check against ({e})") from None
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise CannotVerify(f"{path}: {e.strerror}") from None
    if head.startswith(ZIP_MAGIC):
        return _export(path, keys)
    if head.startswith(FORWARD_MAGIC):
        raise VerifyError("sealed: this is a forwarded export; open it first with "
                          "`python run.py open-export FILE --key KEYFILE`, then verify the ZIP")
    raise VerifyError("malformed: not a file this drop box signs (neither a proof of reporting nor an export)")


def _export(path: Path, keys: list[bytes]) -> Verified:
    checked = export.check_export(path, public_keys=keys)
    if not checked.valid:
        raise VerifyError(checked.reason)
    return Verified(kind="export", lines=export.describe(checked))
