"""Submissions and the mailbox, on a real SQLite file holding the sealed file contents."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from dropbox import accounts
from dropbox.blobs import BlobStore, FileTooLarge, StorageFull
from dropbox.config import Config
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.reports import ReportBody, open_body, open_file_key, open_file_size, thread
from dropbox.sealing import KeyWiped, ReportKeys
from dropbox.storage import Caseworker, Store
from dropbox.submissions import (
    NoRecipients,
    UnknownChannel,
    WrongReceipt,
    open_mailbox,
    post_whistleblower_message,
    read_mailbox,
    submit_report,
)
from tests.support.data_checks import CANARY, all_bytes_under, chunk_files, leftover_staged
from tests.support.domain import chunks_of, hand_in
from tests.support.full_disk import database_full
from tests.support.installs import login


async def test_report_round_trips_for_whistleblower_and_caseworker(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config, text="the account", files={"a.txt": b"hello"},
                            answers={"q1": "answer"})
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    view = await read_mailbox(store=store, access=access, record_visit=True)
    assert view.body.text == "the account" and view.body.answers == {"q1": "answer"}
    assert [(f.name, f.size) for f in view.files] == [("a.txt", 5)]
    assert view.previous_visit_day is None
    again = await read_mailbox(store=store, access=access, record_visit=True)
    assert again.previous_visit_day == again.received_day

    session = await login(store, kdf, config, "alice")
    keys = await accounts.report_keys(store=store, session=session, report_id=access.report_id)
    report = await store.report(access.report_id)
    assert open_body(report.sealed_body, report_key=keys.report_key, report_id=report.id).text == "the account"
    stored = (await store.files(report.id))[0]
    data = b"".join(blobs.read(stored.id, file_key=open_file_key(stored, report_key=keys.report_key),
                               size=open_file_size(stored, report_key=keys.report_key)))
    assert data == b"hello"


async def test_wrong_or_malformed_receipt_is_one_typed_error(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    wrong = f"{(int(receipt) + 1) % 10**24:024d}"
    for attempt in (wrong, "", "abcd", "1" * 5000):
        with pytest.raises(WrongReceipt):
            await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=attempt)


async def test_a_wiped_mailbox_access_is_zeroed_in_place_and_opens_nothing(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    held, own = access.key, access.own_key
    assert isinstance(held, bytearray) and any(held) and access.report_key == bytes(held)
    assert isinstance(own, bytearray) and any(own) and access.sender_key == bytes(own)
    access.wipe()
    assert held is access.key and held == bytearray(32)  # the same buffer, overwritten, not replaced
    assert own is access.own_key and own == bytearray(32) and access.sender_key is None
    with pytest.raises(KeyWiped):
        await read_mailbox(store=store, access=access, record_visit=False)


async def test_whistleblower_message_with_file_reaches_caseworker(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    await staged.add("more.pdf", chunks_of(b"%PDF more"), max_file_bytes=config.max_file_bytes)
    await post_whistleblower_message(store=store, access=access, text="one more thing", staged=staged)
    session = await login(store, kdf, config, "alice")
    keys = await accounts.report_keys(store=store, session=session, report_id=access.report_id)
    files, messages = await thread(store, report_id=access.report_id, report_key=keys.report_key)
    assert files == [] and [m.text for m in messages] == ["one more thing"]
    assert [f.name for f in messages[0].files] == ["more.pdf"]
    summaries, total, *_ = await store.caseworker_report_page(caseworker_id=alice.id, ack_cut="0000-01-01",
                                                              feedback_cut="0000-01-01", extended_cut="0000-01-01",
                                                              deletion_cut="0000-01-01")
    assert total == 1 and summaries[0].unread == 1


async def test_channel_without_caseworkers_refuses_and_leaves_nothing(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config
) -> None:
    with pytest.raises(NoRecipients):
        await hand_in(store, kdf, install, blobs, config, files={"x.bin": b"data" * 100})
    staged = blobs.stage(byte_budget=10)
    with pytest.raises(UnknownChannel):
        await submit_report(store=store, kdf=kdf, install=install, channel_id="nope",
                            body=ReportBody(text="t", answers={}), keys=ReportKeys.generate(), staged=staged)
    assert chunk_files(config) == set()
    assert (await store._one("SELECT count(*) FROM reports"))[0] == 0


async def test_upload_over_the_limit_leaves_nothing(
    store: Store, kdf: KdfPool, blobs: BlobStore, config: Config
) -> None:
    staged = blobs.stage(byte_budget=1000)
    with pytest.raises(FileTooLarge):
        await staged.add("big", chunks_of(b"x" * 5000, 100), max_file_bytes=10_000)
    await staged.discard()
    assert chunk_files(config) == set()


async def test_write_failure_is_storage_full_and_leaves_nothing(
    store: Store, kdf: KdfPool, blobs: BlobStore, config: Config
) -> None:
    # Given an upload whose first batch was written
    staged = blobs.stage(byte_budget=64 * 1024 * 1024)
    written = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(1024 * 1024)
        written.set()
        async with database_full(store):  # SQLite's own "database or disk is full"
            for _ in range(12):
                yield os.urandom(1024 * 1024)

    # When the database refuses the next batch
    with pytest.raises(StorageFull):
        await staged.add("f", source(), max_file_bytes=64 * 1024 * 1024)
    assert written.is_set() and chunk_files(config)
    # Then discarding deletes what was written
    await staged.discard()
    assert chunk_files(config) == set()


async def test_an_upload_writes_in_short_transactions_other_writers_pass_between(
    store: Store, kdf: KdfPool, blobs: BlobStore, config: Config
) -> None:
    # Given an upload of 16 MiB in progress
    staged = blobs.stage(byte_budget=32 * 1024 * 1024)
    seen: list[list[str]] = []

    async def source() -> AsyncIterator[bytes]:
        for i in range(16):
            yield os.urandom(1024 * 1024)
            if i == 12:
                # When another writer commits in the middle of it (a caseworker's audit entry)
                await asyncio.wait_for(store.audit(hour="2026-01-01 00:00", actor=None, action="x"), 30)
                seen.append(leftover_staged(config))

    await staged.add("f", source(), max_file_bytes=32 * 1024 * 1024)
    # Then that write was not held up until the upload's end, and the chunks were already on disk
    assert len(seen) == 1 and seen[0] == [staged.files[0].id]
    await staged.discard()
    assert chunk_files(config) == set()


async def test_canary_appears_in_no_byte_on_disk(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    """A canary in the report, an answer, a message, a note, a file name and a 5 MB file."""
    canary = CANARY.encode()
    five_mb = (canary + b" ") * (5 * 1024 * 1024 // (len(canary) + 1))
    receipt = await hand_in(store, kdf, install, blobs, config, text=f"text {CANARY}",
                            files={f"{CANARY}.docx": five_mb})
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    await staged.add(f"reply-{CANARY}.txt", chunks_of(five_mb[:100_000]), max_file_bytes=config.max_file_bytes)
    await post_whistleblower_message(store=store, access=access, text=f"msg {CANARY}", staged=staged)
    from dropbox.reports import seal_note
    from dropbox.storage import Note

    session = await login(store, kdf, config, "alice")
    keys = await accounts.report_keys(store=store, session=session, report_id=access.report_id)
    await store.add_note(Note(id="n" * 32, report_id=access.report_id, seq=0, caseworker_id=alice.id,
                              sealed_body=seal_note(f"note {CANARY}", staff_key=keys.staff_key,
                                                    report_id=access.report_id, note_id="n" * 32,
                                                    caseworker_id=alice.id),
                              written_day="2026-01-01"))

    def assert_clean() -> None:
        files = all_bytes_under(config.data_dir)
        for path, data in files.items():
            for needle in (canary, canary.decode().encode("utf-16-le"), receipt.encode()):
                assert needle not in data, f"{needle!r} found in {path}"

    assert (config.data_dir / "dropbox.sqlite3-wal").exists()
    assert_clean()  # while the database is open, the WAL not yet checkpointed
    await store.close()
    assert_clean()  # after the checkpoint into the main file


async def test_200_mb_file_round_trips_in_constant_memory(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    size = 200 * 1024 * 1024
    chunk = config.file_chunk_bytes
    pattern = bytes(range(256)) * (chunk // 256)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(size // chunk):
            yield pattern

    tracemalloc.start()
    try:
        staged = blobs.stage(byte_budget=size)
        await staged.add("big.bin", source(), max_file_bytes=size)
        receipt = await submit_report(store=store, kdf=kdf, install=install, channel_id="default",
                                      body=ReportBody(text="big", answers={}), keys=ReportKeys.generate(),
                                      staged=staged)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
        stored = (await store.files(access.report_id))[0]
        total = 0
        for piece in blobs.read(stored.id, file_key=open_file_key(stored, report_key=access.report_key), size=size):
            assert piece == pattern
            total += len(piece)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert write_peak < 16 * 1024 * 1024, write_peak
    assert read_peak < 16 * 1024 * 1024, read_peak
