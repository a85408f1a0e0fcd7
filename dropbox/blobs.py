"""Sealed file contents, kept inside the database, and the limits on uploads in progress.

A file is padded to a size bucket (`size_bucket`), sealed chunk by chunk as it arrives, and its
sealed bytes are written as rows of `file_chunks` (storage.py), a few MiB per short transaction.
Only the transaction that stores the report or message also stores the file's row; until then
the chunks are *staged*: nothing refers to them, and their file key exists only in memory. So at
any crash point one of these holds, and `recover()` at start-up settles it:

* chunks, no file row   → an upload that never got its receipt or answer: delete the chunks;
* chunks and a file row → done.

No upload has a file of its own, so no file system timestamp records when one arrived, and the
length of what is stored depends only on the bucket, never on the exact size (docs/PROTOCOL.md
says what the database file itself still shows). Installs from before keep working: `recover()`
moves their blob files into the database, one file per transaction, and removes the folders.

Uploads from the public app are bounded here too (docs/SECURITY.md): how many may be in flight,
how many bytes all of them may hold staged, and a reserve of free disk space they may not eat
into, so the caseworker app keeps working when whistleblowers fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dropbox.config import Config
from dropbox.sealing import FileSealer, new_file_key, open_file
from dropbox.storage import StorageUnavailable, Store

log = logging.getLogger(__name__)

_PART = ".part"
MiB = 1024 * 1024
#: The smallest bucket: every file up to 4 KiB is stored as 4 KiB.
MIN_BUCKET = 4096
#: Sealed bytes gathered before they are written in one transaction. Larger batches write faster;
#: each one holds the database's write lock for as long as it takes to write it.
BATCH_BYTES = 4 * MiB


class BlobError(Exception):
    """Root of the errors of this module."""


class FileTooLarge(BlobError):
    """A file, or the submission it belongs to, went over its configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over the limit of {limit} bytes")
        self.limit = limit


class StorageFull(BlobError):
    """The disk refused the write (full, read-only, or failing). Nothing was kept."""


class UploadsBusy(BlobError):
    """Too many uploads in flight, or too many bytes staged by all of them: come back later."""


class DiskLow(BlobError):
    """Free space on the data folder is down to the reserve public uploads may not use."""


def new_id() -> str:
    """A random 128-bit identifier, used for every row and file (no counts leak through ids)."""
    return secrets.token_hex(16)


def size_bucket(size: int) -> int:
    """What a file of `size` bytes is padded to before it is sealed: the next power of two up to
    1 MiB (at least MIN_BUCKET), the next whole MiB above. The stored bytes reveal only this."""
    if size <= MIN_BUCKET:
        return MIN_BUCKET
    if size <= MiB:
        return 1 << (size - 1).bit_length()
    return -(-size // MiB) * MiB


@dataclass
class StagedFile:
    """A sealed upload in file_chunks, waiting for the row that will reference it."""

    id: str
    name: str
    file_key: bytes
    #: The exact size in bytes (sealed in the row; never stored in the clear).
    size: int = 0
    #: SHA-256 of the plaintext, updated as it streams in (for proofs of reporting, dropbox/proof.py).
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)
    #: (size, SHA-256 hex) of the bytes the person sent, on a file that is not them (a cleaned copy).
    sent_as: tuple[int, str] | None = None

    @property
    def bucket(self) -> int:
        return size_bucket(self.size)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes this file holds (complete once `add` returned)."""
        return self.hasher.hexdigest()

    def as_sent(self) -> tuple[int, str]:
        """(size, SHA-256 hex) of what the person sent, before any cleaning."""
        return self.sent_as or (self.size, self.sha256)


@dataclass
class StagedFiles:
    """The files of one submission or message, all kept or all thrown away.

    Once made, exactly one of `promote()` (after the commit that stores their rows) or
    `discard()` must follow: both release the upload's share of the limits.
    """

    blobs: BlobStore
    byte_budget: int
    public: bool
    files: list[StagedFile] = field(default_factory=list)
    _finished: bool = False
    _counted_bytes: int = 0
    #: Sealed rows not yet handed to the database (of this file and of earlier small ones).
    _rows: list[tuple[str, int, bytes]] = field(default_factory=list)
    _row_bytes: int = 0
    _pending: asyncio.Task[None] | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    async def add(self, name: str, chunks: AsyncIterator[bytes], *, max_file_bytes: int) -> StagedFile:
        """Seal a file as its chunks arrive. FileTooLarge, StorageFull, UploadsBusy or DiskLow
        end it; the caller then discards, which deletes whatever was written."""
        staged = StagedFile(id=new_id(), name=name, file_key=new_file_key())
        self.files.append(staged)
        self.blobs.staging_ids.add(staged.id)
        writer = _ChunkWriter(self, staged.id, FileSealer(file_key=staged.file_key, file_id=staged.id))
        async for piece in chunks:
            staged.size += len(piece)
            staged.hasher.update(piece)
            if staged.size > max_file_bytes:
                raise FileTooLarge(max_file_bytes)
            if self.total_bytes > self.byte_budget:
                raise FileTooLarge(self.byte_budget)
            self._count(len(piece))
            await writer.write(piece)
        padding = staged.bucket - staged.size
        self._count(padding)
        await writer.finish(padding)
        return staged

    def _count(self, n: int) -> None:
        """Charge `n` staged bytes to the install-wide cap (public uploads only)."""
        if not self.public:
            return
        if self.blobs.staged_bytes + n > self.blobs.max_staged_bytes:
            raise UploadsBusy("staged bytes")
        self.blobs.staged_bytes += n
        self._counted_bytes += n

    async def _queue(self, row: tuple[str, int, bytes]) -> None:
        """Gather sealed rows, several small files' together, into batches of BATCH_BYTES."""
        self._rows.append(row)
        self._row_bytes += len(row[2])
        if self._row_bytes >= BATCH_BYTES:
            await self._write()

    async def _write(self) -> None:
        """Hand the gathered rows to the database in the background; the previous batch must be
        done first, so at most two batches are in memory and their order is kept."""
        await self._wait()
        rows, self._rows, self._row_bytes = self._rows, [], 0
        if rows:
            if self.public:
                self.blobs.check_reserve(sum(len(r[2]) for r in rows))
            self._pending = asyncio.ensure_future(self.blobs.store.put_chunks(rows))

    async def settle(self) -> None:
        """Write what is gathered and wait until it is written; StorageFull if the disk refused
        it. The domain functions that commit file rows call it first: a row must never refer to
        a file whose contents the disk refused."""
        await self._write()
        await self._wait()

    async def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except StorageUnavailable as e:
                raise StorageFull(str(e)) from e

    async def forget(self, staged: StagedFile) -> None:
        """Drop one staged file of this upload now (its chunks are deleted; its key, held only
        here, goes with it). The cleaning step uses it for the original a cleaned copy replaces,
        and for a cleaned copy that did not come out whole. A refused delete is left to the
        sweep (nothing refers to those chunks, and their key is gone); a refused write of this
        upload's own rows raises StorageFull from settle(), as it would at the commit."""
        await self.settle()
        self.files.remove(staged)
        try:
            await self.blobs.store.delete_chunks([staged.id])
        except StorageUnavailable as e:
            log.error("could not delete a replaced upload (%s); the next sweep will", type(e).__name__)
        finally:
            self.blobs.staging_ids.discard(staged.id)

    def promote(self) -> None:
        """After the commit that stored their rows: the files are kept; release the limits."""
        if not self._finished:
            self._finished = True
            self._release()

    async def discard(self) -> None:
        """Nothing was committed: delete whatever was written. Safe to call more than once.

        Never raises: it runs while another error (often the disk's own) is on its way out, and
        chunks the database will not delete now are deleted by `BlobStore.sweep` (at start-up
        and with every retention run). Shielded, so a cancelled request still cleans up.
        """
        if self._finished:
            return
        self._finished = True
        self._release()
        task = asyncio.ensure_future(self.blobs.drop([f.id for f in self.files], self._pending))
        self._pending, self._rows, self._row_bytes = None, [], 0
        self.blobs.keep_until_done(task)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    def _release(self) -> None:
        for f in self.files:
            self.blobs.staging_ids.discard(f.id)
        if self.public:
            self.blobs.in_flight -= 1
            self.blobs.staged_bytes -= self._counted_bytes
            self._counted_bytes = 0
            if self.blobs.in_flight == 0:
                self.blobs.no_uploads.set()


class _ChunkWriter:
    """Evens a file's bytes into chunks of exactly `file_chunk_bytes`, seals each in a worker
    thread, and hands the sealed bytes to the database in batches.

    Even chunks keep the stored rows uniform, so their lengths tell nothing about how the upload
    arrived, and (with the padding) nothing but the bucket about its size.
    """

    def __init__(self, staged: StagedFiles, file_id: str, sealer: FileSealer) -> None:
        self._staged = staged
        self._file_id = file_id
        self._sealer = sealer
        self._chunk = staged.blobs.chunk_bytes
        self._buffer = bytearray()
        self._seq = 0

    async def write(self, data: bytes) -> None:
        if not self._buffer and len(data) == self._chunk:  # already even (forms.py reads it so): no copy
            await self._add(await asyncio.to_thread(self._sealer.push, data))
            return
        self._buffer += data
        while len(self._buffer) >= self._chunk:
            with memoryview(self._buffer) as view:
                piece = bytes(view[: self._chunk])
            del self._buffer[: self._chunk]
            await self._add(await asyncio.to_thread(self._sealer.push, piece))

    async def finish(self, padding: int) -> None:
        """Pad with zeros (in chunks, so memory stays flat), seal the rest and the final frame.
        Its last rows may still be gathered or on their way: `StagedFiles.settle()` writes and
        waits for them, and must be awaited before the commit that stores the file rows (so the
        next file of the same form is read meanwhile, and small files share a transaction)."""
        while padding > 0:
            n = min(padding, self._chunk)
            await self.write(bytes(n))
            padding -= n
        if self._buffer:
            await self._add(await asyncio.to_thread(self._sealer.push, bytes(self._buffer)))
            self._buffer.clear()
        await self._add(self._sealer.finish())

    async def _add(self, sealed: bytes) -> None:
        await self._staged._queue((self._file_id, self._seq, sealed))
        self._seq += 1


class BlobStore:
    """File contents of an install (in its database), and the limits on public uploads."""

    def __init__(self, store: Store, config: Config, *, free_bytes: Callable[[], int] | None = None) -> None:
        self.store = store
        self.chunk_bytes = config.file_chunk_bytes
        self.max_in_flight = config.max_uploads_in_flight
        self.max_staged_bytes = config.max_staged_bytes
        self.reserve_bytes = config.disk_reserve_bytes
        self._data_dir = config.data_dir
        self._legacy_dirs = (config.blobs_dir, config.tmp_dir)
        self._free_bytes = free_bytes or self._statvfs_free
        #: Public uploads in flight, and the bytes they have staged.
        self.in_flight = 0
        self.staged_bytes = 0
        #: Set while no public upload is in flight (the receipt stock refills only then).
        self.no_uploads = asyncio.Event()
        self.no_uploads.set()
        #: Ids of files being staged now: `sweep` must leave their chunks alone.
        self.staging_ids: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _statvfs_free(self) -> int:
        st = os.statvfs(self._data_dir)
        return st.f_bavail * st.f_frsize

    def check_reserve(self, more: int = 0) -> None:
        """DiskLow if writing `more` bytes would leave less free space than the reserve."""
        if self._free_bytes() - more < self.reserve_bytes:
            raise DiskLow("free space is down to the reserve")

    def stage(self, *, byte_budget: int, public: bool = True) -> StagedFiles:
        """A new upload. A public one is refused at once (before any of its body is read) when
        the in-flight cap is reached (UploadsBusy) or free space is down to the reserve (DiskLow).
        Caseworkers' uploads are not limited by either: the reserve is what keeps them working."""
        if public:
            if self.in_flight >= self.max_in_flight:
                raise UploadsBusy("uploads in flight")
            self.check_reserve()
            self.in_flight += 1
            self.no_uploads.clear()
        return StagedFiles(blobs=self, byte_budget=byte_budget, public=public)

    def keep_until_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drop(self, file_ids: list[str], pending: asyncio.Task[None] | None) -> None:
        """Delete the chunks of files that were never committed (after their last batch landed)."""
        if pending is not None:
            await asyncio.wait([pending])
            if not pending.cancelled() and pending.exception() is not None:
                log.info("a staged batch had failed (%s)", type(pending.exception()).__name__)
        try:
            await self.store.delete_chunks(file_ids)
        except StorageUnavailable as e:
            log.error("could not delete an unfinished upload (%s); the next sweep will", type(e).__name__)

    def read(self, file_id: str, *, file_key: bytes, size: int) -> Iterator[bytes]:
        """Plaintext chunks of a stored file, cut to its exact `size` (the padding is read and
        authenticated, never returned). Blocking: run it in a thread. TamperedData on damage."""
        rows = self.store.read_chunks(file_id)
        try:
            remaining = size
            for chunk in open_file(_RowReader(rows), file_key=file_key, file_id=file_id):
                if remaining > 0:
                    yield chunk[:remaining]
                    remaining -= len(chunk)
        finally:
            rows.close()

    async def sweep(self) -> int:
        """Delete chunks no file row refers to and no upload in progress is writing."""
        orphans = await self.store.unreferenced_chunk_files() - self.staging_ids
        await self.store.delete_chunks(sorted(orphans))
        return len(orphans)

    async def recover(self) -> dict[str, int]:
        """Settle what a crash left behind and move in an older install's blob files. Run
        before serving. A crash during it is safe: each file moves in one transaction, and the
        blob file goes only after that commit."""
        known = await self.store.all_file_ids()
        counts = {"moved_in": 0, "discarded": 0}
        blobs_dir, tmp_dir = self._legacy_dirs
        # An older install: blobs/<id>, or tmp/<id>.part whose row was committed before a crash.
        for folder, suffix in ((blobs_dir, ""), (tmp_dir, _PART)):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                file_id = path.name.removesuffix(suffix) if path.name.endswith(suffix) else ""
                if file_id in known and not await self.store.has_chunks(file_id):
                    await self.store.import_file(file_id, _file_pieces(path, self.chunk_bytes))
                    counts["moved_in"] += 1
                else:
                    counts["discarded"] += file_id not in known
                path.unlink()
            folder.rmdir()
        counts["discarded"] += await self.sweep()
        if any(counts.values()):
            log.info("file recovery: %s", counts)
        return counts


class _RowReader:
    """The concatenated rows of a file as a readable stream, for `sealing.open_file`."""

    def __init__(self, rows: Iterator[bytes]) -> None:
        self._rows = rows
        self._buffer = bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            row = next(self._rows, None)
            if row is None:
                break
            self._buffer += row
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


def _file_pieces(path: Path, size: int) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while piece := source.read(size):
            yield piece
