"""The receiving authority's commands: `python run.py recipient-key` and `open-export`.

They need no install: an authority that receives forwarded cases runs them on its own machine
with only this code and its key file. Misuse (a missing or existing file, a file that is not a
key) is one line on stderr and status 2; an export this key does not open, or one that was
altered, is status 1 with the reason, and leaves no output file behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from dropbox import forwarding
from dropbox.sealing import FORWARD_MAGIC, TamperedData, WrongRecipient
from keys.commands import CommandError

OK, NOT_OPENED = 0, 1


def _create_private(path: Path, data: bytes) -> None:
    """Write a new 0600 file; never replaces one (a key file is never overwritten)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists; a key file is never overwritten, choose another name") from None
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def recipient_key(*, out: Path) -> int:
    """Make a receiving authority's key pair: the secret in `out` (0600), the public key printed."""
    secret_text, public_line = forwarding.new_key_file()
    _create_private(out, secret_text.encode())
    print(f"The secret key is in {out} (readable only by you). Keep it safe: it opens every export sent to it,\n"
          "and without it none can be opened. Give the caseworkers who forward cases to you this public key:\n")
    print(public_line)
    return OK


def _default_out(source: Path) -> Path:
    return source.with_name(source.stem + ".zip") if source.suffix != ".zip" else source.with_name(
        source.name + ".opened.zip")


def open_export(*, source: Path, key: Path, out: Path | None) -> int:
    """Open a forwarded export into a ZIP; written to a temporary file beside it and moved into
    place only once the whole stream authenticated, so a wrong key or a damaged file leaves nothing."""
    try:
        secret = forwarding.read_secret(key)
    except forwarding.RecipientKeyError as e:
        raise CommandError(str(e)) from None
    target = out if out is not None else _default_out(source)
    if target.exists():
        raise CommandError(f"{target} exists; choose another --out")
    try:
        with source.open("rb") as reader:
            if reader.read(len(FORWARD_MAGIC)) != FORWARD_MAGIC:
                raise CommandError(f"{source} is not a forwarded export (a .dbxexport file from the Forward button)")
            reader.seek(0)
            _write_opened(reader, secret=secret, target=target)
    except WrongRecipient:
        print(f"NOT OPENED: {key} does not open {source}: it was sealed to another recipient key", file=sys.stderr)
        return NOT_OPENED
    except TamperedData as e:
        print(f"NOT OPENED: {source} is damaged or was altered ({e}); nothing was written", file=sys.stderr)
        return NOT_OPENED
    except FileExistsError:
        raise CommandError(f"{target} exists; choose another --out") from None
    except OSError as e:
        raise CommandError(f"{e.filename or target}: {e.strerror}") from None
    print(f"Opened into {target}. Check its signature and contents with the sending channel's public key "
          "(docs/PROOF.md, \"Verifying an export\").")
    return OK


def _write_opened(reader: BinaryIO, *, secret: bytes, target: Path) -> None:
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as written:
            for chunk in forwarding.opened(reader, secret_key=secret):
                written.write(chunk)
            written.flush()
            os.fsync(written.fileno())
        os.link(temp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
