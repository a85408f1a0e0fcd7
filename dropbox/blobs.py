"""Sealed file contents, kept inside the database, and the limits on uploads in progress.

A file is padded to a size bucket (`size_bucket`), sealed chunk by chunk as it arrives, and its
sealed frames are written as rows of `file_chunks` (storage.py), one frame a row, a few MiB per
short transaction.
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
import functools
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from dropbox.config import Config
from dropbox.ids import new_id
from dropbox.sealing import FileSealer, new_file_key, open_file
from dropbox.storage import StorageUnavailable, Store

log = logging.getLogger(__name__)

_PART = ".part"
MiB = 1024 * 1024
#: The smallest bucket: every file up to 4 KiB is stored as 4 KiB.
MIN_BUCKET = 4096
#: Sealed bytes gathered before they are written (one INSERT statement, `Store.put_chunks`): about
#: one frame. Two batches are in memory, one written and one gathering, and SQLite copies the
#: rows of the one it writes; each holds the database's write lock while it is written.
BATCH_BYTES = 1 * MiB


#: (file id, seq, sealed frame) of one row of file_chunks.
Row = tuple[str, int, memoryview]


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
    #: SHA-256 of the file's plaintext (without the padding), computed on the sealing worker while
    #: it streamed in; set once the whole file is sealed (StagedFiles.settle).
    digest: bytes = b""
    #: (size, SHA-256 hex) of the bytes the person sent, on a file that is not them (a cleaned copy).
    sent_as: tuple[int, str] | None = None

    @property
    def bucket(self) -> int:
        return size_bucket(self.size)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes this file holds (complete once `StagedFiles.settle` returned)."""
        return self.digest.hex()

    def as_sent(self) -> tuple[int, str]:
        """(size, SHA-256 hex) of what the person sent, before any cleaning."""
        return self.sent_as or (self.size, self.sha256)


@dataclass
class StagedFiles:
    """The files of one submission or message, all kept or all thrown away.

    Once made, exactly one of `promote()` (after the commit that stores their rows) or
    `discard()` must follow: both release the upload's share of the limits.

    A file flows through three threads: the event loop reads it (and only gathers references
    to what arrived), a worker thread evens, hashes, seals and cuts it into rows (`_FileSink`),
    and the database's own thread writes the rows in short transactions. Each stage holds a
    bounded amount: one chunk gathering on the loop, one being sealed, one batch being gathered
    and one being written; a stage that is behind makes the one before it wait, so a slow disk
    slows the reader and never grows memory.
    """

    blobs: BlobStore
    byte_budget: int
    public: bool
    files: list[StagedFile] = field(default_factory=list)
    _finished: bool = False
    _counted_bytes: int = 0
    #: Sealed rows not yet handed to the database (of this file and of earlier small ones).
    _rows: list[Row] = field(default_factory=list)
    _row_bytes: int = 0
    _pending: asyncio.Task[None] | None = None
    #: The worker thread's job in flight (sealing the previous chunk), if any, and whose it is.
    _sealing: asyncio.Future[list[Row]] | None = None
    _sealing_for: StagedFile | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    async def add(self, name: str, chunks: AsyncIterator[bytes], *, max_file_bytes: int) -> StagedFile:
        """Seal a file as its chunks arrive. FileTooLarge, StorageFull, UploadsBusy or DiskLow
        end it; the caller then discards, which deletes whatever was written.

        `chunks` may come in any sizes: they are evened into `file_chunk_bytes` on the worker
        thread. While the worker seals one chunk, the loop already reads the next; and it returns
        while the file's last chunk is still being sealed, so the loop reads the next file (of
        many small ones, each is one chunk: waiting here took turns instead of overlapping). The
        file's `digest` is set when that seal is done: it is complete once `settle()` returned."""
        staged = StagedFile(id=new_id(), name=name, file_key=new_file_key())
        self.files.append(staged)
        self.blobs.staging_ids.add(staged.id)
        sink = _FileSink(staged.id, staged.file_key, self.blobs.chunk_bytes)
        try:
            await self._stream(staged, sink, chunks, max_file_bytes)
        except BaseException:
            # This file's seal in flight must not hand its rows to a later file's batch (the
            # cleaning step goes on with other files after one failed to stage). One of the file
            # before, still finishing, is left to be collected: that file is whole.
            if self._sealing is not None and self._sealing_for is staged:
                self._sealing.cancel()
                self._sealing = None
            raise
        return staged

    async def _stream(self, staged: StagedFile, sink: _FileSink, chunks: AsyncIterator[bytes],
                      max_file_bytes: int) -> None:
        gathered: list[bytes] = []
        held = 0
        async for piece in chunks:
            staged.size += len(piece)
            if staged.size > max_file_bytes:
                raise FileTooLarge(max_file_bytes)
            if self.total_bytes > self.byte_budget:
                raise FileTooLarge(self.byte_budget)
            self._count(len(piece))
            if held >= self.blobs.chunk_bytes:
                # Sealed only now that this piece shows the file goes on: a file that ends with a
                # full chunk (many small files of one chunk each) hands it to the worker together
                # with its final frame, in the one job `add` does not wait for.
                await self._seal(staged, sink.absorb, gathered)
                gathered, held = [], 0
            gathered.append(piece)
            held += len(piece)
        padding = staged.bucket - staged.size
        self._count(padding)
        await self._seal(staged, functools.partial(_finish, staged, sink, gathered, padding))

    async def _seal(self, owner: StagedFile, job: Callable[..., list[Row]], *args: object) -> None:
        """Hand `job` (for `owner`) to the worker thread once the previous one is done and its
        rows queued."""
        await self._collect()
        self._sealing = asyncio.get_running_loop().run_in_executor(self.blobs.executor, job, *args)
        self._sealing_for = owner

    async def _collect(self) -> None:
        """Wait for the worker's job in flight and queue the rows it sealed."""
        sealing, self._sealing = self._sealing, None
        if sealing is not None:
            for row in await sealing:
                await self._queue(row)

    def _count(self, n: int) -> None:
        """Charge `n` staged bytes to the install-wide cap (public uploads only)."""
        if not self.public:
            return
        if self.blobs.staged_bytes + n > self.blobs.max_staged_bytes:
            raise UploadsBusy("staged bytes")
        self.blobs.staged_bytes += n
        self._counted_bytes += n

    async def _queue(self, row: Row) -> None:
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
        """Finish sealing, write what is gathered and wait until it is written; StorageFull if the
        disk refused it. The domain functions that commit file rows call it first: a row must
        never refer to a file whose contents the disk refused."""
        await self._collect()
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
        and with every retention run). Shielded, so a cancelled request still cleans up. A seal
        still running on the worker thread writes nothing: only this object hands rows to the
        database, and it hands no more once discarded.
        """
        if self._finished:
            return
        self._finished = True
        self._release()
        if self._sealing is not None:
            self._sealing.cancel()  # stops it if it has not started; a running one ends unheard
        task = asyncio.ensure_future(self.blobs.drop([f.id for f in self.files], self._pending))
        self._pending, self._sealing, self._rows, self._row_bytes = None, None, [], 0
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


def _finish(staged: StagedFile, sink: _FileSink, pieces: list[bytes], padding: int) -> list[Row]:
    """The worker's last job for a file: its last rows, and its digest set on the StagedFile."""
    rows = sink.finish(pieces, padding)
    staged.digest = sink.sha256
    return rows


class _FileSink:
    """One file's way from plaintext to rows, run on a worker thread one call at a time (the
    loop waits for each call before it makes the next, so the secretstream state advances in
    order and the buffer is never shared).

    Evens the bytes into chunks of exactly `chunk_bytes` in one buffer allocated once per file,
    so the stored frames are uniform and their lengths tell nothing about how the upload arrived
    (and, with the padding, nothing but the bucket about its size); hashes the plaintext; seals
    each chunk straight from that buffer into its frame, which becomes one row (the first with
    the stream's header before it), so row lengths too depend on the bucket alone.
    """

    def __init__(self, file_id: str, file_key: bytes, chunk_bytes: int) -> None:
        self._file_id = file_id
        self._sealer = FileSealer(file_key=file_key, file_id=file_id)
        self._buffer = memoryview(bytearray(chunk_bytes))
        self._fill = 0
        self._seq = 0
        self._hash = hashlib.sha256()
        self.sha256 = b""

    def absorb(self, pieces: list[bytes]) -> list[Row]:
        """Take the next pieces of plaintext; return the rows of every chunk they completed."""
        rows: list[Row] = []
        for piece in pieces:
            self._hash.update(piece)
            self._even(memoryview(piece), rows)
        return rows

    def finish(self, pieces: list[bytes], padding: int) -> list[Row]:
        """The last pieces, `padding` zero bytes, the last short chunk and the final frame."""
        rows = self.absorb(pieces)
        self.sha256 = self._hash.digest()
        while padding > 0:
            n = min(padding, len(self._buffer) - self._fill)
            self._buffer[self._fill : self._fill + n] = bytes(n)
            self._fill += n
            padding -= n
            if self._fill == len(self._buffer):
                self._rows(self._sealer.push(self._buffer), rows)
                self._fill = 0
        if self._fill:
            self._rows(self._sealer.push(self._buffer[: self._fill]), rows)
            self._fill = 0
        self._rows(self._sealer.finish(), rows)
        return rows

    def _even(self, piece: memoryview, rows: list[Row]) -> None:
        size = len(self._buffer)
        while piece:
            if not self._fill and len(piece) >= size:  # already a whole chunk: seal it in place
                frame, piece = piece[:size], piece[size:]
                self._rows(self._sealer.push(frame), rows)
                continue
            n = min(len(piece), size - self._fill)
            self._buffer[self._fill : self._fill + n] = piece[:n]
            self._fill += n
            piece = piece[n:]
            if self._fill == size:
                self._rows(self._sealer.push(self._buffer), rows)
                self._fill = 0

    def _rows(self, frame: bytearray, rows: list[Row]) -> None:
        rows.append((self._file_id, self._seq, memoryview(frame)))
        self._seq += 1


class BlobStore:
    """File contents of an install (in its database), and the limits on public uploads."""

    def __init__(self, store: Store, config: Config, *, free_bytes: Callable[[], int] | None = None,
                 executor: Executor | None = None) -> None:
        self.store = store
        #: Where files are sealed (None: the loop's default thread pool).
        self.executor = executor
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
