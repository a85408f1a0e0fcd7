"""Private files and folders for key material: 0700 folders, 0600 files, atomic replacement.

Kept apart from the key logic so every writer of secrets goes through the same three functions
and none of them can forget the mode or leave a half-written key behind after a crash.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create `path` (and parents) and force it to 0700, even if it already existed wider."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    tighten(path, mode=PRIVATE_DIR_MODE)


def tighten(path: Path, *, mode: int) -> None:
    """Narrow `path`'s permissions to `mode` if anyone else could read it; say so in the log.

    Tor refuses a HiddenServiceDir readable by others, and a key readable by others may already
    be copied, so this is worth a warning rather than silence.
    """
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        log.warning("%s had mode %o; narrowing it to %o", path, current, mode)
        os.chmod(path, mode)


def write_private_file(path: Path, data: bytes, *, replace: bool) -> None:
    """Write `data` to `path` with mode 0600 via a temp file + rename, so readers never see half.

    With `replace=False` an existing file is left alone and FileExistsError is raised: two
    processes racing to create the same key cannot both win.
    """
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temp = Path(temp_name)
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails with FileExistsError instead of overwriting
    finally:
        temp.unlink(missing_ok=True)


def read_private_file(path: Path) -> bytes:
    """Read a key file, first narrowing its mode to 0600 if it had become wider."""
    tighten(path, mode=PRIVATE_FILE_MODE)
    return path.read_bytes()
