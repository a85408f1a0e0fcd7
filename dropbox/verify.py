"""`python run.py verify FILE`: what kind of signed file it is, and the check for that kind.

Each format is recognised by its first bytes and checked by its own module; this one only picks.
Add a format by adding a branch to `check` (exports, ZIP files, come from dropbox/export.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dropbox import export, proof
from dropbox.sealing import FORWARD_MAGIC
from dropbox.signing import SigningKeyError, known_public_keys

#: Read at most this much of a proof: a proof is a few KiB plus the report's text; anything far
#: larger is not one, and must not be read into memory whole.
MAX_PROOF_BYTES = 16 * 1024 * 1024
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
            f.seek(0)
            if proof.looks_like_proof(head):
                data = f.read(MAX_PROOF_BYTES + 1)
                if len(data) > MAX_PROOF_BYTES:
                    raise VerifyError("malformed: far too large for a proof of reporting")
                return _proof(data, keys)
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


def _proof(data: bytes, keys: list[bytes]) -> Verified:
    try:
        verified = proof.verify(data, known_keys=keys)
    except proof.MalformedProof as e:
        raise VerifyError(f"malformed: {e}") from None
    except proof.BadSignature as e:
        raise VerifyError(str(e)) from None
    return Verified(kind="proof", lines=proof.describe(verified))
