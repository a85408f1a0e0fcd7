"""The install's Ed25519 signing key: what signs proofs of reporting and case exports.

Kept beside the onion keys, in the same 0700/0600 regime, and carried by `backup`/`restore`::

    keys/signing/                 0700
      secret_key                  0600  the 32-byte Ed25519 seed; the public key derives from it
      retired/                    0700
        <n>.pub                   0600  base64 public key of the n-th key rotated out (1, 2, ...)

Rotation never deletes a public key: a proof a whistleblower downloaded years ago must still
verify on this install, and the retired public keys are all it needs for that. The retired
secret seeds are overwritten: nothing new can be signed with them.

The seed is a plain file, as the onion keys are (whoever can read DATA/keys/ can impersonate the
onion already); it is not sealed under a caseworker passphrase because the whistleblower side
signs proofs with no caseworker present.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dropbox.sealing import (
    SIGNING_PUBLIC_BYTES,
    SIGNING_SEED_BYTES,
    new_signing_key,
    sign_detached,
    signing_public_key,
)

log = logging.getLogger(__name__)

SIGNING_DIR = "signing"
SECRET_FILE = "secret_key"  # noqa: S105 - a file name
RETIRED_DIR = "retired"
_RETIRED_NAME = re.compile(r"([1-9][0-9]{0,8})\.pub")
#: DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the raw key follows.
_SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")
#: Fingerprint: the first 20 bytes of SHA-256(public key), as 10 groups of 4 hex digits.
FINGERPRINT_BYTES = 20


class SigningKeyError(Exception):
    """The signing key is missing or its file is damaged; the message says which file."""


def fingerprint(public_key: bytes) -> str:
    """The one human-checkable spelling of a public key, used on every page, proof and command.

    SHA-256 of the raw 32-byte key, first 20 bytes, upper-case hex in groups of four
    ("3A1F 09C2 ..."): short enough to read out over the phone, long enough (160 bits) that
    nobody can make a second key with the same fingerprint.
    """
    digest = hashlib.sha256(public_key).hexdigest()[: FINGERPRINT_BYTES * 2].upper()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def encode_public_key(public_key: bytes) -> str:
    """The textual form of a public key in proofs, pages and `signing-key`: standard base64."""
    return base64.b64encode(public_key).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """Inverse of encode_public_key; ValueError unless it is a 32-byte key in base64."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("not base64") from e
    if len(raw) != SIGNING_PUBLIC_BYTES:
        raise ValueError(f"an Ed25519 public key is {SIGNING_PUBLIC_BYTES} bytes, not {len(raw)}")
    return raw


def public_key_pem(public_key: bytes) -> str:
    """The key as a PEM "PUBLIC KEY" (RFC 8410), the form `openssl pkeyutl -verify -pubin` reads."""
    body = base64.b64encode(_SPKI_ED25519 + public_key).decode("ascii")
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n"


@dataclass(frozen=True)
class InstallSigner:
    """The install's current signing key, loaded once; `sign` makes a detached Ed25519 signature."""

    _seed: bytes = field(repr=False)
    public_key: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @property
    def public_key_text(self) -> str:
        return encode_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return sign_detached(self._seed, message)


def _signing_dir(data_dir: Path) -> Path:
    return data_dir / "keys" / SIGNING_DIR


def _private_dir(path: Path) -> None:
    """Make `path` 0700 (narrowing it if it was wider); its parent must exist."""
    path.mkdir(mode=0o700, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)


def _write_new(path: Path, data: bytes, *, replace: bool) -> None:
    """Write `data` to `path` at 0600 through a synced temp file, so a crash leaves the old file or
    the whole new one; without `replace` an existing file wins (FileExistsError), so two
    processes making the key at once end with one key."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp_name, path)
        else:
            os.link(temp_name, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        Path(temp_name).unlink(missing_ok=True)


def _read_seed(data_dir: Path) -> bytes:
    path = _signing_dir(data_dir) / SECRET_FILE
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("%s was readable by others; narrowing it to 0600", path)
            os.chmod(path, 0o600)
        seed = path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"{path} is missing; run `python run.py migrate` or `init`") from None
    except OSError as e:
        raise SigningKeyError(f"cannot read {path}: {e.strerror}") from e
    if len(seed) != SIGNING_SEED_BYTES:
        raise SigningKeyError(f"{path} is not a signing key ({len(seed)} bytes, expected {SIGNING_SEED_BYTES})")
    return seed


def ensure_signing_key(data_dir: Path) -> bool:
    """Make the install's signing key if there is none; True if this call made it.

    Called by `init`, `migrate` and at `serve` start, so an install from before proofs gets one.
    A damaged key file is never replaced silently (SigningKeyError): proofs signed with it would
    stop verifying without anyone deciding so.
    """
    folder = _signing_dir(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (folder.parent, folder):
        _private_dir(path)
    if (folder / SECRET_FILE).exists():
        _read_seed(data_dir)
        return False
    seed, _public = new_signing_key()
    try:
        _write_new(folder / SECRET_FILE, seed, replace=False)
    except FileExistsError:  # another process made it between our look and our write
        _read_seed(data_dir)
        return False
    return True  # the caller says so (init and migrate print it; serve logs it)


def load_signer(data_dir: Path) -> InstallSigner:
    """The current signing key; SigningKeyError if it is missing or damaged."""
    seed = _read_seed(data_dir)
    return InstallSigner(seed, signing_public_key(seed))


def _retired(data_dir: Path) -> list[tuple[int, Path]]:
    folder = _signing_dir(data_dir) / RETIRED_DIR
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _RETIRED_NAME.fullmatch(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def known_public_keys(data_dir: Path) -> list[bytes]:
    """Every public key this install has signed with: the current one first, then the retired
    ones, newest first. A damaged retired key file is skipped with a warning (it cannot make a
    forged proof verify, only an old genuine one fail)."""
    keys = [load_signer(data_dir).public_key]
    for _number, path in _retired(data_dir):
        try:
            key = decode_public_key(path.read_text(encoding="ascii"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            log.warning("skipping the retired signing key %s: %s", path, e)
            continue
        if key not in keys:
            keys.append(key)
    return keys


def rotate_signing_key(data_dir: Path) -> None:
    """Retire the current key (its public half is kept for verifying) and make a new one.

    Order for crashes: the public half is written to retired/ and synced before the seed is
    replaced, so at every instant every key that signed something is known.
    """
    old = load_signer(data_dir)
    retired_dir = _signing_dir(data_dir) / RETIRED_DIR
    _private_dir(retired_dir)
    if old.public_key not in known_public_keys(data_dir)[1:]:
        number = max((n for n, _path in _retired(data_dir)), default=0) + 1
        _write_new(retired_dir / f"{number}.pub", (old.public_key_text + "\n").encode("ascii"), replace=False)
    seed, public = new_signing_key()
    _write_new(_signing_dir(data_dir) / SECRET_FILE, seed, replace=True)
    log.warning("rotated the install signing key: %s retired, %s current", old.fingerprint, fingerprint(public))
