"""`run.py backup FILE` and `run.py restore FILE`: one archive of an install, taken while it serves.

What goes in: a snapshot of the database made with SQLite's online backup API (consistent while
the server commits), `keys/` (onion keys and client-auth public keys, with their 0600/0700 modes),
`config.toml`, and the sealed file contents of the rows in that snapshot (`blobs/`, only while
file contents live in blob files). Not in: the private tor's state (remade at start), the lock.

What that means for a thief of the archive: everything people wrote or sent is ciphertext in
it, openable only with a caseworker's passphrase or a whistleblower's receipt, exactly as on the
server's disk. The onion service keys are in it as they are on disk (whoever holds them can run
the onion addresses): keep the archive as you keep the server's disk.

The archive is a plain tar (ciphertext does not compress) with MANIFEST.json last: the format,
the schema, the day, and a SHA-256 per member. `restore` refuses a non-empty data folder,
unpacks into a staging folder beside it (or inside an existing empty one), and only after
every member matches the manifest, the database passes `PRAGMA integrity_check`, its schema is
one this code knows and every file row has its contents (chunk rows in the database, or a blob
file for an install from before schema 4), renames the staging folder (or its members, the
database last) into place. A failed restore leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from dropbox.config import Config
from dropbox.datalock import LOCK_NAME
from dropbox.ids import today
from dropbox.install import make_private_dir
from dropbox.storage import SCHEMA_VERSION, check_database_file, schema_version, snapshot_database

FORMAT = "dropbox-backup-1"
MANIFEST = "MANIFEST.json"
DB_NAME = "dropbox.sqlite3"
_CHUNK = 1024 * 1024

#: What an archive may hold: names are checked against this before anything is written.
_ALLOWED = re.compile(r"^(dropbox\.sqlite3|config\.toml|keys(/[A-Za-z0-9_.-]+)*|blobs(/[A-Za-z0-9_-]+)?|tmp)$")


class BackupError(Exception):
    """The backup could not be made; nothing was left at the target."""


class RestoreError(Exception):
    """The archive cannot be restored (damaged, foreign, or the target is not empty); nothing changed."""


class _Hashing:
    """A read-only file wrapper that hashes what tarfile reads from it."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        return data


def _add(tar: tarfile.TarFile, name: str, source: BinaryIO, digests: dict[str, str], *, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size = os.fstat(source.fileno()).st_size
    info.mode = mode
    info.mtime = 0  # no time finer than the manifest's day
    hashing = _Hashing(source)
    tar.addfile(info, hashing)  # type: ignore[arg-type]
    digests[name] = hashing.sha256.hexdigest()


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o700
    tar.addfile(info)


def create_backup(config: Config, target: Path) -> dict[str, object]:
    """Write the archive of `config`'s install to `target` (refused if it exists); returns the manifest.

    Needs no lock: it reads beside a running server."""
    if not config.db_path.exists():
        raise BackupError(f"no install in {config.data_dir}")
    if target.exists():
        raise BackupError(f"{target} exists; choose a new name (a backup never overwrites a file)")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder; make it first (readable only by the service user)")
    part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    snapshot = target.with_name(f".{target.name}.{secrets.token_hex(4)}.db")
    try:
        snapshot_database(config.db_path, snapshot)
        _integrity, version, file_ids = check_database_file(snapshot)
        digests: dict[str, str] = {}
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            with snapshot.open("rb") as db:
                _add(tar, DB_NAME, db, digests)
            settings = config.data_dir / "config.toml"
            if settings.is_file():
                with settings.open("rb") as f:
                    _add(tar, "config.toml", f, digests)
            _add_tree(tar, config.keys_dir, "keys", digests)
            _add_blobs(tar, config, file_ids, digests)
            manifest: dict[str, object] = {"format": FORMAT, "schema": version, "day": today().isoformat(),
                                           "files": digests}
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, _BytesReader(data))  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        _place(part, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            snapshot.unlink()
    return manifest


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk, self._at = self._data[self._at:end], min(end, len(self._data))
        return chunk


def _add_tree(tar: tarfile.TarFile, root: Path, name: str, digests: dict[str, str]) -> None:
    if not root.is_dir():
        return
    _add_dir(tar, name)
    for path in sorted(root.iterdir()):
        member = f"{name}/{path.name}"
        if path.is_dir() and not path.is_symlink():
            _add_tree(tar, path, member, digests)
        elif path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                _add(tar, member, f, digests, mode=path.stat().st_mode & 0o700)


def _add_blobs(tar: tarfile.TarFile, config: Config, file_ids: set[str], digests: dict[str, str]) -> None:
    """Sealed contents of the snapshot's file rows, while they live in blob files (goes away with them)."""
    blobs_dir = config.blobs_dir
    if not blobs_dir.is_dir():
        return
    _add_dir(tar, "blobs")
    _add_dir(tar, "tmp")
    for file_id in sorted(file_ids):
        with _open_blob(config, file_id) as f:
            _add(tar, f"blobs/{file_id}", f, digests)


@contextlib.contextmanager
def _open_blob(config: Config, file_id: str) -> Iterator[IO[bytes]]:
    """A committed file's contents: in blobs/, or still in tmp/ between commit and rename (the
    rename may happen between two looks, hence blobs/ twice). Once open, a rename cannot hurt."""
    for path in (config.blobs_dir / file_id, config.tmp_dir / f"{file_id}.part", config.blobs_dir / file_id):
        try:
            f = path.open("rb")
        except FileNotFoundError:
            continue
        with f:
            yield f
        return
    raise BackupError("a file was deleted while the backup ran (a retention purge?); run the backup again")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(part: Path, target: Path) -> None:
    """Give the finished archive its name without replacing a file that took the name meanwhile:
    a hard link fails if the name exists, where a rename would overwrite. On a file system
    without hard links (FAT media), a rename after one more look."""
    taken = BackupError(f"{target} exists; choose a new name (a backup never overwrites a file)")
    try:
        os.link(part, target)
    except FileExistsError:
        raise taken from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if target.exists():
            raise taken from None
        os.rename(part, target)
        return
    part.unlink()


def restore_backup(archive: Path, config: Config) -> dict[str, object]:
    """Unpack `archive` into `config.data_dir`, which must be empty (but for the restoring command's
    own lock file) or absent; checked before placed.

    An absent folder is staged beside it and renamed into place. An existing one is staged inside
    it and its members moved up, the database last: the service user may own an empty folder an
    operator made for it without being allowed to create folders beside it (/var/lib)."""
    data = config.data_dir
    if data.exists() and (not data.is_dir() or any(p.name != LOCK_NAME for p in data.iterdir())):
        raise RestoreError(f"{data} is not empty; restore only into a new or empty folder")
    if not archive.is_file():
        raise RestoreError(f"{archive}: no such file")
    inside = data.is_dir()
    if not inside:
        data.parent.mkdir(parents=True, exist_ok=True)
    staging = (data / f".restoring-{secrets.token_hex(4)}" if inside
               else data.parent / f".{data.name}.restoring-{secrets.token_hex(4)}")
    make_private_dir(staging)
    try:
        manifest = _unpack(archive, staging)
        _check(staging, manifest)
        if inside:
            # The database last: a folder left half-moved by a crash holds no install to serve.
            for member in sorted(staging.iterdir(), key=lambda p: p.name == DB_NAME):
                os.rename(member, data / member.name)
            staging.rmdir()
            _fsync_dir(data)
        else:
            os.rename(staging, data)
            _fsync_dir(data.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _unpack(archive: Path, staging: Path) -> dict[str, object]:
    digests: dict[str, str] = {}
    manifest: dict[str, object] | None = None
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                if member.name == MANIFEST and member.isfile():
                    manifest = _read_manifest(tar, member)
                    continue
                if not _ALLOWED.match(member.name) or not (member.isfile() or member.isdir()):
                    raise RestoreError(f"{archive}: unexpected member {member.name!r}; not a backup of this app")
                target = staging / member.name
                if member.isdir():
                    make_private_dir(target)
                    continue
                make_private_dir(target.parent)
                digests[member.name] = _extract(tar, member, target)
    except (tarfile.TarError, EOFError) as e:
        raise RestoreError(f"{archive}: not a readable backup archive ({e})") from e
    if manifest is None:
        raise RestoreError(f"{archive}: no manifest; not a complete backup")
    if manifest.get("files") != digests:
        raise RestoreError(f"{archive}: contents do not match the manifest (damaged or altered)")
    return manifest


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, object]:
    source = tar.extractfile(member)
    if source is None or member.size > 64 * 1024 * 1024:
        raise RestoreError("the manifest is unreadable")
    try:
        manifest = json.loads(source.read())
    except ValueError as e:
        raise RestoreError("the manifest is not valid JSON") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RestoreError(f"not a {FORMAT} archive")
    return manifest


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    source = tar.extractfile(member)
    assert source is not None  # a regular file, checked by the caller
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _check(staging: Path, manifest: dict[str, object]) -> None:
    db = staging / DB_NAME
    if not db.is_file():
        raise RestoreError("the archive holds no database")
    integrity, version, file_ids = check_database_file(db)
    if integrity != "ok":
        raise RestoreError(f"the database in the archive fails its integrity check: {integrity}")
    if version > SCHEMA_VERSION:
        raise RestoreError(f"the archive's database is at schema {version}, newer than this code ({SCHEMA_VERSION})")
    if version != manifest.get("schema"):
        raise RestoreError("the database's schema differs from the manifest's")
    blobs = staging / "blobs"
    missing = file_ids - ({p.name for p in blobs.iterdir()} if blobs.is_dir() else set())
    if missing:
        raise RestoreError(f"{len(missing)} file(s) of the database are missing from the archive")
    os.chmod(db, 0o600)


def needs_migration_after_restore(config: Config) -> bool:
    return schema_version(config.db_path) < SCHEMA_VERSION
