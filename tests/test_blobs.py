"""dropbox/blobs.py on its own: sealed file contents in a real SQLite file, and the upload limits.

Through its public calls only (stage, add, settle, read, promote, discard, forget, sweep,
recover, check_reserve), with real secretstream sealing; the apps' use of it is tested in the
submission, mailbox and upload-limit tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dropbox.blobs import MIN_BUCKET, BlobStore, DiskLow, FileTooLarge, UploadsBusy, size_bucket
from dropbox.config import Config
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.sealing import TamperedData, sealed_size
from dropbox.storage import Store
from tests.support.data_checks import chunk_files, leftover_staged, stored_lengths
from tests.support.domain import chunks_of, hand_in

KiB = 1024
MiB = 1024 * KiB
CHUNK = 16 * KiB


def blob_store(store: Store, config: Config, *, free_bytes: int | None = None, **changes: object) -> BlobStore:
    """A BlobStore over the fixture's database with 16 KiB chunks and the given limits."""
    limited = config.replace(file_chunk_bytes=CHUNK, **changes)
    return BlobStore(store, limited, free_bytes=None if free_bytes is None else (lambda: free_bytes))


async def read_back(blobs: BlobStore, file_id: str, file_key: bytes, size: int) -> bytes:
    return b"".join(await asyncio.to_thread(lambda: list(blobs.read(file_id, file_key=file_key, size=size))))


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_sizes_are_padded_to_powers_of_two_then_whole_mebibytes() -> None:
    assert [size_bucket(n) for n in (0, 1, 1000, 1900, 4096, 4097, 700 * KiB, MiB)] == [
        MIN_BUCKET, MIN_BUCKET, MIN_BUCKET, MIN_BUCKET, MIN_BUCKET, 8 * KiB, MiB, MiB]
    assert [size_bucket(n) for n in (MiB + 1, 5 * MiB - 1, 5 * MiB, 1024 * MiB - 3)] == [
        2 * MiB, 5 * MiB, 5 * MiB, 1024 * MiB]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, MIN_BUCKET + 1, 70_001])
@pytest.mark.parametrize("arrives_in", [1, 1000, CHUNK])
async def test_a_file_reads_back_byte_for_byte_however_its_upload_arrived(
    store: Store, config: Config, size: int, arrives_in: int
) -> None:
    # Given a file sent in pieces of any size (a browser's upload does not arrive in even chunks)
    blobs = blob_store(store, config)
    data = bytes((i * 7 + size) % 251 for i in range(size))
    upload = blobs.stage(byte_budget=MiB, public=False)
    staged = await upload.add("f.bin", pieces(data, arrives_in), max_file_bytes=MiB)
    await upload.settle()
    # Then it reads back exactly, without its padding, and is stored as its bucket: the rows hold
    # the sealed bucket, one frame a row (how they split depends on the bucket only, see
    # test_two_sizes_in_one_bucket_are_stored_alike)
    assert staged.size == size
    assert await read_back(blobs, staged.id, staged.file_key, size) == data
    lengths = stored_lengths(config, staged.id)
    assert sum(lengths) == sealed_size(staged.bucket, chunk_bytes=blobs.chunk_bytes), lengths
    assert len(lengths) == -(-staged.bucket // blobs.chunk_bytes) + 1, lengths  # the data frames and the final one
    await upload.discard()


async def test_two_sizes_in_one_bucket_are_stored_alike(store: Store, config: Config) -> None:
    blobs = blob_store(store, config)
    upload = blobs.stage(byte_budget=MiB, public=False)
    small = await upload.add("a", chunks_of(b"a" * 40_000), max_file_bytes=MiB)
    large = await upload.add("b", chunks_of(b"b" * 65_000), max_file_bytes=MiB)
    await upload.settle()
    assert stored_lengths(config, small.id) == stored_lengths(config, large.id)
    await upload.discard()


async def test_a_flipped_byte_or_a_missing_last_row_never_reads_as_complete(store: Store, config: Config) -> None:
    # Given a stored file of three rows and more
    blobs = blob_store(store, config)
    data = b"x" * (3 * CHUNK)
    upload = blobs.stage(byte_budget=MiB, public=False)
    staged = await upload.add("f", chunks_of(data), max_file_bytes=MiB)
    await upload.settle()
    rows = list(store.read_chunks(staged.id))
    # When one byte of a middle row is flipped
    flipped = bytearray(rows[1])
    flipped[len(flipped) // 2] ^= 1
    await store.delete_chunks([staged.id])
    await store.put_chunks([(staged.id, i, bytes(flipped) if i == 1 else r) for i, r in enumerate(rows)])
    # Then reading fails, and does not stop quietly at the damage
    with pytest.raises(TamperedData):
        await read_back(blobs, staged.id, staged.file_key, len(data))
    # And when the last row (the final frame) is lost, the shorter file is not taken for the whole
    await store.delete_chunks([staged.id])
    await store.put_chunks([(staged.id, i, r) for i, r in enumerate(rows[:-1])])
    with pytest.raises(TamperedData):
        await read_back(blobs, staged.id, staged.file_key, len(data))
    # And another file's key does not open it
    await store.delete_chunks([staged.id])
    await store.put_chunks([(staged.id, i, r) for i, r in enumerate(rows)])
    with pytest.raises(TamperedData):
        await read_back(blobs, staged.id, bytes(32), len(data))
    await upload.discard()


@pytest.mark.parametrize(("max_file", "budget"), [(50 * KiB, MiB), (MiB, 50 * KiB)])
async def test_over_the_file_or_submission_limit_is_refused_and_discard_leaves_nothing(
    store: Store, config: Config, max_file: int, budget: int
) -> None:
    blobs = blob_store(store, config)
    upload = blobs.stage(byte_budget=budget)
    await upload.add("first", chunks_of(b"1" * 20 * KiB), max_file_bytes=max_file)
    with pytest.raises(FileTooLarge) as refused:
        await upload.add("second", chunks_of(b"2" * 60 * KiB, CHUNK), max_file_bytes=max_file)
    assert refused.value.limit == 50 * KiB
    await upload.discard()
    assert chunk_files(config) == set()
    assert (blobs.in_flight, blobs.staged_bytes, blobs.no_uploads.is_set()) == (0, 0, True)


async def test_public_uploads_are_capped_in_flight_and_in_staged_bytes_caseworkers_are_not(
    store: Store, config: Config
) -> None:
    blobs = blob_store(store, config, max_uploads_in_flight=1, max_staged_bytes=40 * KiB)
    # Given one public upload in flight
    first = blobs.stage(byte_budget=MiB)
    assert not blobs.no_uploads.is_set()
    # Then a second is refused at once, and a caseworker's is not
    with pytest.raises(UploadsBusy):
        blobs.stage(byte_budget=MiB)
    staff = blobs.stage(byte_budget=MiB, public=False)
    await staff.add("big", chunks_of(b"s" * 100 * KiB), max_file_bytes=MiB)
    # And the public one may not stage more than the install-wide byte cap
    with pytest.raises(UploadsBusy):
        await first.add("big", chunks_of(b"p" * 100 * KiB, CHUNK), max_file_bytes=MiB)
    await first.discard()
    # Once it is gone, the next public upload is taken again
    again = blobs.stage(byte_budget=MiB)
    await again.add("small", chunks_of(b"ok"), max_file_bytes=MiB)
    await again.settle()
    again.promote()
    await staff.discard()
    assert (blobs.in_flight, blobs.staged_bytes, blobs.no_uploads.is_set()) == (0, 0, True)


async def test_below_the_disk_reserve_public_uploads_are_refused_and_caseworkers_still_write(
    store: Store, config: Config
) -> None:
    # Given a disk with less free space than the reserve
    blobs = blob_store(store, config, free_bytes=10 * MiB, disk_reserve_bytes=64 * MiB)
    # Then a public upload is refused before any of it is read
    with pytest.raises(DiskLow):
        blobs.stage(byte_budget=MiB)
    assert blobs.in_flight == 0
    # And a caseworker's upload is written all the same
    staff = blobs.stage(byte_budget=MiB, public=False)
    staged = await staff.add("reply.txt", chunks_of(b"reply"), max_file_bytes=MiB)
    await staff.settle()
    assert await read_back(blobs, staged.id, staged.file_key, 5) == b"reply"
    await staff.discard()


async def test_a_public_upload_that_would_eat_into_the_reserve_stops(store: Store, config: Config) -> None:
    # Given 1 MiB free above the reserve when the upload starts
    free = {"bytes": 65 * MiB}
    blobs = BlobStore(store, config.replace(file_chunk_bytes=CHUNK, disk_reserve_bytes=64 * MiB),
                      free_bytes=lambda: free["bytes"])
    upload = blobs.stage(byte_budget=64 * MiB)
    # When the disk fills meanwhile, a batch that would go below the reserve is refused
    free["bytes"] = 64 * MiB + KiB
    with pytest.raises(DiskLow):
        await upload.add("big", chunks_of(b"z" * 5 * MiB, CHUNK), max_file_bytes=64 * MiB)
        await upload.settle()
    await upload.discard()
    assert chunk_files(config) == set()


async def test_forget_drops_one_file_and_keeps_the_others(store: Store, config: Config) -> None:
    blobs = blob_store(store, config)
    upload = blobs.stage(byte_budget=MiB, public=False)
    original = await upload.add("original.jpg", chunks_of(b"o" * 5000), max_file_bytes=MiB)
    cleaned = await upload.add("cleaned.jpg", chunks_of(b"c" * 4000), max_file_bytes=MiB)
    await upload.forget(original)
    assert upload.files == [cleaned]
    assert chunk_files(config) == {cleaned.id}
    await upload.discard()
    assert chunk_files(config) == set()


async def test_sweep_deletes_what_nothing_refers_to_but_not_an_upload_in_progress(
    store: Store, config: Config
) -> None:
    blobs = blob_store(store, config)
    # Given an upload in progress, and chunks a dead process left behind
    upload = blobs.stage(byte_budget=MiB)
    staged = await upload.add("f", chunks_of(b"in progress"), max_file_bytes=MiB)
    await upload.settle()
    await store.put_chunks([("d" * 32, 0, b"left behind")])
    # When the sweep runs (at start-up and with every retention run)
    assert await blobs.sweep() == 1
    # Then only the abandoned chunks are gone
    assert chunk_files(config) == {staged.id}
    await upload.discard()


async def test_recovery_deletes_staged_chunks_no_row_refers_to_and_keeps_committed_files(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: object
) -> None:
    # Given a committed file, and the chunks of an upload the process died in the middle of
    await hand_in(store, kdf, install, blobs, config, files={"kept.txt": b"kept"})
    (kept,) = chunk_files(config)
    await store.put_chunks([("b" * 32, 0, b"sealed"), ("b" * 32, 1, b"sealed")])
    # When recovery runs at the next start
    counts = await BlobStore(store, config).recover()
    # Then the abandoned chunks are gone and the committed file is untouched
    assert counts == {"moved_in": 0, "discarded": 1}
    assert chunk_files(config) == {kept}
    assert leftover_staged(config) == []
