"""One writer per data folder: an exclusive `flock` on DATA/lock.

Two `serve`s on one folder are not just wasteful: the second's start-up recovery treats the
first's in-flight uploads as crash leftovers and deletes them, while the first goes on to show a
receipt. So `serve` and every command that writes take this lock for as long as they run, and a
second one is refused with the process that holds it. Commands that only read (`status`,
`backup`, `caseworker list`, `channel list`) do not take it and work beside a running server, and
neither do the `onion` commands (their key files are written atomically and picked up live).

The kernel drops a flock when its holder dies (kill -9 included), so a stale lock file never
blocks a restart; the pid written into the file is only there to name the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from dropbox.config import Config

LOCK_NAME = "lock"

#: Locks this process holds (path -> depth), so `serve` called from a command that already took
#: the lock does not lock itself out (flock conflicts between two descriptors of one process).
_held: dict[Path, int] = {}


class DataFolderBusy(Exception):
    """Another process holds the data folder's lock; the message names it."""


def _holder(path: Path) -> str:
    """'pid N (command line)' of the process named in the lock file, as well as it can be told."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another process"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmdline = ""
    return f"process {pid}" + (f" ({cmdline})" if cmdline else "")


@contextlib.contextmanager
def data_lock(config: Config) -> Iterator[None]:
    """Hold DATA/lock exclusively while the block runs; DataFolderBusy if someone else does.

    The data folder must exist (this never creates an install by accident)."""
    path = (config.data_dir / LOCK_NAME).resolve()
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if os.geteuid() == 0:  # root running a command must not leave a lock the service user cannot open
        owner = config.data_dir.stat()
        os.fchown(fd, owner.st_uid, owner.st_gid)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataFolderBusy(f"{config.data_dir} is in use by {_holder(path)}; stop it first "
                                 "(one server or writing command per data folder)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
    finally:
        os.close(fd)  # releases the flock
