"""The sealing sink as a pipeline (issue 16): the loop reads, a worker thread evens, hashes and
seals, SQLite's thread writes; each stage bounded, failures typed, rows that fit in a page.

Everything is real: a real install's SQLite file, libsodium, the loop's own thread pool. The
only stand-ins are the disk's pace (a gate before `put_chunks`) and the worker's start (an
executor that holds jobs until told), so the order of events can be checked without timing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dropbox.blobs import BATCH_BYTES, BlobStore, StagedFiles, StorageFull, size_bucket
from dropbox.config import Config
from dropbox.storage import Store
from tests.support.full_disk import database_full
from tests.support.live_server import AiohttpClient
from tests.support.whistleblower_site import make_install, open_site

MiB = 1024 * 1024
WAIT_S = 60  # generous: only ever reached when something is wrong


def _rows(config: Config, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        return db.execute(sql, params).fetchall()


async def _pieces(data: bytes, sizes: Sequence[int]) -> AsyncIterator[bytes]:
    """`data` in pieces of the given sizes, round and round, as a network delivers it."""
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        yield data[at : at + n]
        at, i = at + n, i + 1


def _read_back(blobs: BlobStore, staged: StagedFiles) -> list[bytes]:
    return [b"".join(blobs.read(f.id, file_key=f.file_key, size=f.size)) for f in staged.files]


async def test_one_frame_a_row_in_random_order_and_files_of_any_piece_sizes_read_back_whole(
        config: Config, blobs: BlobStore) -> None:
    # Frames were cut into 16 KiB rows of a WITHOUT ROWID table, and every insert rebalanced leaf
    # pages full of file contents; since migration 10 a frame is one row of a rowid table whose
    # rowids are random, so the rows' order still says nothing about when they were written.
    contents = [os.urandom(12 * MiB + 12_345), b"", os.urandom(5000), os.urandom(MiB)]
    staged = blobs.stage(byte_budget=64 * MiB)
    try:
        for i, data in enumerate(contents):
            await staged.add(f"f{i}", _pieces(data, [1, 65_536, 700_001, MiB, 3 * MiB]), max_file_bytes=16 * MiB)
        await staged.settle()
        assert _read_back(blobs, staged) == contents
        for f in staged.files:
            rows = _rows(config, "SELECT id, length(data) FROM file_chunks WHERE file_id = ? ORDER BY seq", (f.id,))
            assert len(rows) == -(-size_bucket(f.size) // blobs.chunk_bytes) + 1  # data frames, then the final one
        big = [int(r[0]) for r in _rows(config, "SELECT id FROM file_chunks WHERE file_id = ? ORDER BY seq",
                                          (staged.files[0].id,))]
        assert len(big) == 14 and big != sorted(big) and big != sorted(big, reverse=True)
        assert min(big) >= 2**32  # drawn from 63 bits, not counted up
    finally:
        await staged.discard()


async def test_each_staged_file_carries_the_sha256_of_its_plaintext(blobs: BlobStore) -> None:
    contents = [os.urandom(2 * MiB + 7), b"", b"x" * 4096]
    staged = blobs.stage(byte_budget=64 * MiB)
    try:
        added = [await staged.add(f"f{i}", _pieces(data, [100_000, MiB]), max_file_bytes=8 * MiB)
                 for i, data in enumerate(contents)]
        await staged.settle()  # the last chunk's seal, which sets the digest, may still be running before
        for f, data in zip(added, contents, strict=True):
            assert f.sha256 == hashlib.sha256(data).hexdigest()  # of the bytes sent, not the padding
    finally:
        await staged.discard()


async def _statements_on_the_writer(store: Store, action: Callable[[], Awaitable[object]]) -> list[str]:
    """The SQL the writer's connection ran during `action` (SQLite's own trace, on its thread)."""
    seen: list[str] = []
    await store._writer.set_trace_callback(seen.append)
    try:
        await action()
    finally:
        await store._writer.set_trace_callback(None)
    return seen


async def test_a_batch_of_chunks_is_one_statement_on_the_writer_and_durable_commits_still_fsync(
        config: Config, store: Store) -> None:
    # Each statement is a round trip to SQLite's thread. A batch was PRAGMA, BEGIN, INSERT and
    # COMMIT, and between them the writer waited for the loop (busy reading the upload) to send
    # the next: during a 512 MiB upload it was busy 80 % of the time at a quarter of a core.
    # Now a batch is one INSERT that commits by itself, and the fsync setting is sent only when
    # it changes, so the commit that stores a report after an upload must still send FULL.
    rows = [("f" * 32, seq, os.urandom(1000)) for seq in range(3)]
    await store.put_chunks(rows[:1])  # the setting for chunks is sent once
    seen = await _statements_on_the_writer(store, lambda: store.put_chunks(rows[1:]))
    assert len(seen) == 1 and seen[0].startswith("INSERT INTO file_chunks"), seen

    async def durable_then_chunks() -> None:
        async with store.transaction() as db:
            assert (await db.execute_fetchall("PRAGMA synchronous"))[0][0] == 2  # FULL
        await store.put_chunks([("e" * 32, 0, os.urandom(1000))])
        async with store.transaction(durable=False) as db:
            assert (await db.execute_fetchall("PRAGMA synchronous"))[0][0] == 1  # NORMAL
        async with store.transaction() as db:
            assert (await db.execute_fetchall("PRAGMA synchronous"))[0][0] == 2

    seen = await _statements_on_the_writer(store, durable_then_chunks)
    assert [s for s in seen if s.startswith("PRAGMA synchronous =")] == [
        "PRAGMA synchronous = FULL", "PRAGMA synchronous = NORMAL", "PRAGMA synchronous = FULL"]
    assert _rows(config, "SELECT count(*) FROM file_chunks")[0][0] == 4


async def test_a_batch_of_many_small_rows_is_split_into_statements_sqlite_accepts(
        config: Config, store: Store) -> None:
    # 4 parameters a row: a batch of tiny files' rows must stay under SQLite's parameter limit.
    rows = [(f"{n:032x}", 0, os.urandom(20)) for n in range(1001)]
    await store.put_chunks(rows)
    assert _rows(config, "SELECT count(*) FROM file_chunks")[0][0] == 1001


class _HeldExecutor(concurrent.futures.ThreadPoolExecutor):
    """A real thread pool whose jobs start only once `release` is set."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.release = threading.Event()
        #: Set (on the loop's thread, where run_in_executor submits) once a job was handed over.
        self.submitted = asyncio.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        def held() -> Any:
            self.release.wait(WAIT_S)
            return fn(*args, **kwargs)
        future = super().submit(held)
        self.submitted.set()
        return future


async def test_the_next_chunk_is_read_while_the_previous_one_is_being_sealed(config: Config, store: Store) -> None:
    # Before, each chunk was sealed (awaited) before the next was read: reading and sealing
    # never overlapped. The held executor is also the loop's default, so either way of handing
    # work to a thread is held.
    executor = _HeldExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    blobs = BlobStore(store, config)
    read = asyncio.Event()
    chunk = blobs.chunk_bytes

    async def source() -> AsyncIterator[bytes]:
        for i in range(4):
            if i == 1:
                read.set()  # the sink asks for the second chunk
            yield os.urandom(chunk)

    staged = blobs.stage(byte_budget=64 * MiB)
    adding = asyncio.ensure_future(staged.add("big", source(), max_file_bytes=8 * MiB))
    try:
        await asyncio.wait_for(executor.submitted.wait(), WAIT_S)  # chunk 1 handed over, held there
        await asyncio.wait_for(read.wait(), WAIT_S)  # ... and chunk 2 was read meanwhile
        assert not executor.release.is_set()
        executor.release.set()
        added = await asyncio.wait_for(adding, WAIT_S)
        await staged.settle()
        assert added.size == 4 * chunk
    finally:
        executor.release.set()
        adding.cancel()
        await staged.discard()
        executor.shutdown()


class _SlowDisk(Store):
    """The real store, but each batch of staged chunks waits at a gate first: a disk that writes
    only when the test lets it."""

    gate: asyncio.Event
    batches_done: int

    async def put_chunks(self, rows: Sequence[tuple[str, int, Any]]) -> None:
        await self.gate.wait()
        self.gate.clear()
        await super().put_chunks(rows)
        self.batches_done += 1


@pytest.mark.parametrize(("sizes", "piece"), [
    # Smaller than a chunk, read in 64 KiB pieces.
    ((300_000, 5000, MiB), 65_536),
    # Exactly one chunk (the benchmark's 100 files of 1 MiB), read as aiohttp hands them over.
    # Before, such a chunk was sealed as soon as it was full and `add` then waited for it to
    # hand over the final frame; now a full chunk is sealed once the next piece shows the file
    # goes on, and a file that ends there goes to the worker in one job with its final frame.
    ((MiB, MiB, 2 * MiB + 7), 262_144),
], ids=["smaller-than-a-chunk", "exactly-one-chunk"])
async def test_the_next_file_is_read_while_the_last_chunk_of_the_one_before_is_being_sealed(
        config: Config, store: Store, sizes: tuple[int, int, int], piece: int) -> None:
    # Before, `add` waited for its file's last seal: with many small files (one chunk each) the
    # loop and the worker took turns. Now the next file is read while the worker seals.
    executor = _HeldExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    blobs = BlobStore(store, config)
    assert blobs.chunk_bytes == MiB
    contents = [os.urandom(n) for n in sizes]
    staged = blobs.stage(byte_budget=64 * MiB)
    try:
        first = await asyncio.wait_for(staged.add("a", _pieces(contents[0], [piece]), max_file_bytes=8 * MiB), 20)
        assert not executor.release.is_set() and executor.submitted.is_set()  # its seal is held, not done
        assert first.digest == b""
        second = asyncio.ensure_future(staged.add("b", _pieces(contents[1], [piece]), max_file_bytes=8 * MiB))
        await asyncio.sleep(0)
        executor.release.set()
        await asyncio.wait_for(second, WAIT_S)
        await staged.add("c", _pieces(contents[2], [piece]), max_file_bytes=8 * MiB)
        await staged.settle()
        assert _read_back(blobs, staged) == contents
        assert [f.sha256 for f in staged.files] == [hashlib.sha256(c).hexdigest() for c in contents]
    finally:
        executor.release.set()
        await staged.discard()
        executor.shutdown()


async def test_a_slow_disk_slows_the_reader_and_never_lets_sealed_bytes_pile_up(config: Config, store: Store) -> None:
    await store.close()
    slow = await _SlowDisk.open(config.db_path)
    assert isinstance(slow, _SlowDisk)
    slow.gate, slow.batches_done = asyncio.Event(), 0
    blobs = BlobStore(slow, config)
    chunk = blobs.chunk_bytes
    # Held in memory at most: a batch being written, one gathering, a chunk being sealed and
    # one being read (plus a piece's worth of slack in each): the bound does not grow with the file.
    limit = 2 * BATCH_BYTES + 4 * chunk
    pulled = 0
    high = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal pulled, high
        for _ in range(24):
            held = pulled - slow.batches_done * BATCH_BYTES
            high = max(high, held)
            assert held <= limit, f"{held / MiB:.0f} MiB held while the disk was behind"
            yield os.urandom(chunk)
            pulled += chunk

    async def disk() -> None:
        """Let one batch through each time the reader has stopped: it waits for the disk."""
        while True:
            before = pulled
            # The reader made no progress for a while: it is waiting (opening early on a slow
            # machine only lets the disk keep up; the bound is checked either way).
            for _ in range(5):
                await asyncio.sleep(0.05)
                if pulled != before:
                    break
            else:
                slow.gate.set()

    staged = blobs.stage(byte_budget=64 * MiB)
    opener = asyncio.ensure_future(disk())
    try:
        await asyncio.wait_for(staged.add("big", source(), max_file_bytes=64 * MiB), WAIT_S * 5)
        slow.gate.set()
        opener.cancel()
        slow.gate = _AlwaysOpen()
        await staged.settle()
        assert _read_back(blobs, staged)[0][:16]  # all written, and it opens
        assert high > BATCH_BYTES  # the check above did see the reader run ahead of the disk
    finally:
        opener.cancel()
        await staged.discard()
        await slow.close()


class _AlwaysOpen(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self.set()

    def clear(self) -> None:
        pass


async def test_chunks_are_copied_into_the_database_file_in_the_background_while_the_upload_goes_on(
        config: Config, blobs: BlobStore) -> None:
    # In WAL mode every byte is written twice: to the WAL, then by a checkpoint into the database
    # file. Left to the writer, the checkpoint ran inside the commit that crossed 1000 pages, and the
    # upload waited for it; now a connection of its own copies what was written every 16 MiB, while
    # the next batches are written. So after 40 MiB, well under the writer's own threshold, most of
    # the file is already in the database file, and the WAL is not what holds it.
    staged = blobs.stage(byte_budget=64 * MiB)
    try:
        await staged.add("big", _pieces(os.urandom(40 * MiB), [MiB]), max_file_bytes=64 * MiB)
        await staged.settle()
        async with asyncio.timeout(WAIT_S):  # a checkpoint may still be copying: wait for it, not for a time
            while config.db_path.stat().st_size <= 16 * MiB:
                await asyncio.sleep(0.05)
    finally:
        await staged.discard()


async def test_a_write_refused_on_the_database_thread_mid_file_is_storage_full_and_leaves_nothing(
        config: Config, store: Store, blobs: BlobStore) -> None:
    chunk = blobs.chunk_bytes
    full = contextlib.AsyncExitStack()

    async def source() -> AsyncIterator[bytes]:
        for i in range(24):
            if i == 10:  # a few batches are written; from here on the disk is full
                await full.enter_async_context(database_full(store))
            yield os.urandom(chunk)

    staged = blobs.stage(byte_budget=64 * MiB)
    async with full:
        with pytest.raises(StorageFull):
            await staged.add("big", source(), max_file_bytes=64 * MiB)
            await staged.settle()
        await staged.discard()
    assert _rows(config, "SELECT count(*) FROM file_chunks") == [(0,)]
    assert not blobs.staging_ids and blobs.in_flight == 0 and blobs.staged_bytes == 0
    # and the next upload goes through once the disk is back
    again = blobs.stage(byte_budget=64 * MiB)
    try:
        await again.add("small", _pieces(b"y" * 5000, [5000]), max_file_bytes=MiB)
        await again.settle()
        assert _read_back(blobs, again) == [b"y" * 5000]
    finally:
        await again.discard()


async def test_the_site_answers_other_requests_while_a_large_upload_streams(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    # The loop only moves buffers: sealing and writing are on other threads, so a page is served
    # in the middle of a 16 MiB upload (which then completes with its receipt).
    config = await make_install(tmp_path / "data", max_file_bytes=64 * MiB, max_submission_bytes=64 * MiB,
                                file_chunk_bytes=MiB)
    async with open_site(aiohttp_client, config) as site:
        boundary = "pipeline0boundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"channel\"\r\n\r\ndefault\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nlarge upload\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        gate = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield head
            for _ in range(16):
                yield os.urandom(MiB)
            await gate.wait()  # the rest of the body comes once the page was served
            yield f"\r\n--{boundary}--\r\n".encode()

        upload = asyncio.ensure_future(site.client.post(
            "/en/submit", data=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        try:
            async with asyncio.timeout(WAIT_S):  # a condition awaited, not time moved
                while site.services.blobs.staged_bytes < 8 * MiB:
                    await asyncio.sleep(0.01)
            page = await asyncio.wait_for(site.client.get("/en/"), WAIT_S)
            assert page.status == 200
            assert not upload.done() and site.services.blobs.in_flight == 1
            gate.set()
            response = await asyncio.wait_for(upload, WAIT_S * 5)
            assert response.status == 200
        finally:
            gate.set()
            upload.cancel()
