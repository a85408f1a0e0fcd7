"""Forwarding a case to a competent authority: the export, sealed to the recipient's key.

The receiving authority makes its own X25519 key pair once (`python run.py recipient-key`),
keeps the secret file, and gives the caseworkers its public key, a line such as
`dbxr1:<64 hex digits of the key><8 hex digits of a checksum>`. The checksum catches a key
mangled on its way (a typo, a cut line) before anything is sealed to a key nobody holds.
What is sent is the export ZIP sealed as it is made (sealing.ForwardSealer): no readable copy
exists in transit, nor on the server. The recipient opens it with `python run.py open-export`.
The text forms and the file format are in docs/PROTOCOL.md ("Forwarding").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from dropbox.sealing import (
    KEY_BYTES,
    ForwardSealer,
    InvalidRecipientKey,
    Readable,
    new_recipient_key,
    open_forwarded,
)

PUBLIC_PREFIX = "dbxr1:"
SECRET_PREFIX = "dbxs1:"  # noqa: S105 - a prefix, not a secret
_CHECK_BYTES = 4
_PUBLIC = re.compile(r"dbxr1:([0-9a-f]{64})([0-9a-f]{8})")
_SECRET = re.compile(r"dbxs1:([0-9a-f]{64})")
#: The frames a forwarded export is sealed in: even sizes, so frame lengths say nothing about
#: where one member of the ZIP ends and the next begins.
FRAME_BYTES = 64 * 1024
#: A key file is a few lines; anything longer is not one (and is not read into memory).
MAX_KEY_FILE_BYTES = 4096


class RecipientKeyError(ValueError):
    """Text that is not a recipient key: the message says what is wrong, for a person to fix."""


def _check(public_key: bytes) -> str:
    return hashlib.blake2b(public_key, digest_size=_CHECK_BYTES, person=b"dbx.recipient").hexdigest()


def encode_public(public_key: bytes) -> str:
    """The line a receiving authority hands to caseworkers."""
    return PUBLIC_PREFIX + public_key.hex() + _check(public_key)


def parse_public(text: str) -> bytes:
    """A pasted public key: spaces and line breaks inside are forgiven, anything else is not."""
    compact = "".join(text.split()).lower()
    match = _PUBLIC.fullmatch(compact)
    if match is None:
        raise RecipientKeyError(f"a recipient key is '{PUBLIC_PREFIX}' and 72 hexadecimal digits")
    public_key = bytes.fromhex(match.group(1))
    if match.group(2) != _check(public_key):
        raise RecipientKeyError("the key's checksum does not match: it was changed or cut on its way")
    try:
        ForwardSealer(public_key)  # refuses a low-order point, to which nothing could be sealed
    except InvalidRecipientKey as e:
        raise RecipientKeyError("this is not a usable key") from e
    return public_key


def new_key_file() -> tuple[str, str]:
    """A new key pair as (secret key file text, public key line)."""
    secret, public = new_recipient_key()
    line = encode_public(public)
    text = ("# Drop box recipient key. Keep this file secret: it opens every export forwarded to it.\n"
            f"# public key: {line}\n"
            f"{SECRET_PREFIX}{secret.hex()}\n")
    return text, line


def read_secret(path: Path) -> bytes:
    """The secret key in a file written by `recipient-key`; RecipientKeyError if it is not one."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise RecipientKeyError(f"{path}: {e.strerror}") from e
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise RecipientKeyError(f"{path} is not a recipient key file (too long)")
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines()]
    found = [m.group(1) for m in map(_SECRET.fullmatch, lines) if m]
    if len(found) != 1:
        raise RecipientKeyError(f"{path} is not a recipient key file (no '{SECRET_PREFIX}' line)")
    return bytes.fromhex(found[0])


def sealed(chunks: Iterable[bytes], *, recipient: bytes) -> Iterator[bytes]:
    """`chunks` sealed to `recipient` as they come, in frames of FRAME_BYTES (the last shorter).
    Holds at most one frame and one incoming chunk."""
    sealer = ForwardSealer(recipient)
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= FRAME_BYTES:
            frame = bytes(buffer[:FRAME_BYTES])
            del buffer[:FRAME_BYTES]
            yield sealer.push(frame)
    if buffer:
        yield sealer.push(bytes(buffer))
    yield sealer.finish()


def opened(source: Readable, *, secret_key: bytes) -> Iterator[bytes]:
    """The export ZIP inside a forwarded file (sealing.WrongRecipient, sealing.TamperedData)."""
    if len(secret_key) != KEY_BYTES:
        raise RecipientKeyError("a recipient secret key is 32 bytes")
    return open_forwarded(source, secret_key=secret_key)
