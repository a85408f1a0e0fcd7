"""Receipt codes: 24 digits found by locator and hashed under the report's own salt; 16-digit codes
of reports made before schema 3 keep working; receipts derived ahead are handed out once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from dropbox import migrations
from dropbox.blobs import BlobStore
from dropbox.config import Config
from dropbox.install import Install, load_install
from dropbox.kdf_pool import KdfPool, Priority
from dropbox.receipt_stock import ReceiptStock
from dropbox.reports import ReportBody, seal_body
from dropbox.sealing import (
    KdfParams,
    ReceiptCode,
    ReportKeys,
    derive_receipt_keys,
    format_receipt,
    split_receipt,
    wrap_for_whistleblower,
)
from dropbox.storage import Caseworker, Store
from dropbox.submissions import NoRecipients, WrongReceipt, open_mailbox, read_mailbox, submit_report
from tests.support.clock import until

T = TypeVar("T")

LEGACY_RECEIPT = "1234 5678 9012 3456"


class CountingPool(KdfPool):
    """The real pool, counting the derivations it is asked for (the Argon2id runs stay real)."""

    def __init__(self) -> None:
        super().__init__(concurrency=2, queue_limit=64)
        self.calls: list[Priority] = []

    async def call(self, job: Callable[[], T], *, priority: Priority) -> T:
        self.calls.append(priority)
        return await super().call(job, priority=priority)


@pytest.fixture
def counting() -> Iterator[CountingPool]:
    pool = CountingPool()
    yield pool
    pool.close()


async def _submit(store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config,
                  text: str) -> ReceiptCode:
    return await submit_report(store=store, kdf=kdf, install=install, channel_id="default",
                               body=ReportBody(text=text, answers={}), keys=ReportKeys.generate(),
                               staged=blobs.stage(byte_budget=config.max_submission_bytes))


def _schema_2_install(db_path: Path, config: Config) -> None:
    """A database as schema 2 made it (the migrations as they were), with one report whose receipt
    is a 16-digit code hashed under the install-wide salt and found by its lookup id."""
    receipt_kdf = KdfParams.fresh(ops=config.kdf_ops, mem=config.kdf_mem)
    legacy = derive_receipt_keys(LEGACY_RECEIPT.replace(" ", ""), kdf=receipt_kdf)
    keys = ReportKeys.generate()
    db = sqlite3.connect(db_path)
    try:
        for version in (1, 2):
            db.executescript(migrations._MIGRATIONS[version])
        db.execute("PRAGMA user_version = 2")
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("receipt_salt", receipt_kdf.salt),
            ("receipt_kdf", json.dumps({"ops": receipt_kdf.ops, "mem": receipt_kdf.mem}).encode())])
        db.execute("INSERT INTO channels (id, name, retention_days, is_default) VALUES ('default', 'c', 90, 1)")
        db.execute(
            "INSERT INTO reports (id, lookup_id, channel_id, received_day, last_activity_day, retention_days,"
            " expires_day, whistleblower_key, sealed_body) VALUES (?, ?, 'default', '2026-01-02', '2026-01-02',"
            " 90, '2026-04-02', ?, ?)",
            ("r" * 32, legacy.lookup_id, wrap_for_whistleblower(keys, receipt_keys=legacy, report_id="r" * 32),
             seal_body(ReportBody(text="made at schema 2", answers={}), report_key=keys.report_key,
                       report_id="r" * 32)))
        db.commit()
    finally:
        db.close()


async def test_a_16_digit_receipt_made_at_schema_2_opens_after_migration_and_new_ones_have_24(
    config: Config, counting: CountingPool, alice: Caseworker, store: Store
) -> None:
    # Given a database made at schema 2 holding a report behind a 16-digit receipt
    legacy_db = config.data_dir / "legacy.sqlite3"
    _schema_2_install(legacy_db, config)
    # When it is opened by this code (migration 3)
    old = await Store.open(legacy_db, migrate=True)
    try:
        install = await load_install(old)
        # Then the old receipt, typed as people type it, still opens the mailbox: one Argon2id run
        for typed in (LEGACY_RECEIPT, LEGACY_RECEIPT.replace(" ", "-"), LEGACY_RECEIPT.replace(" ", "")):
            access = await open_mailbox(store=old, kdf=counting, install=install, receipt_text=typed)
            view = await read_mailbox(store=old, access=access, record_visit=False)
            assert view.body.text == "made at schema 2"
        assert len(counting.calls) == 3
        # And a report made now on the migrated database gets a 24-digit receipt that opens it
        await old.add_caseworker(await store.caseworker_by_name("alice"), channel_ids=["default"])
        blobs = BlobStore(old, config)
        receipt = await _submit(old, counting, install, blobs, config, "made at schema 3")
        assert len(receipt) == 24 and receipt.isdigit()
        access = await open_mailbox(store=old, kdf=counting, install=install, receipt_text=format_receipt(receipt))
        assert (await read_mailbox(store=old, access=access, record_visit=False)).body.text == "made at schema 3"
        # while the old one still opens only its own report
        access = await open_mailbox(store=old, kdf=counting, install=install, receipt_text=LEGACY_RECEIPT)
        assert access.report_id == "r" * 32
    finally:
        await old.close()
    with sqlite3.connect(legacy_db) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        rows = db.execute("SELECT locator, receipt_salt FROM reports ORDER BY locator IS NULL").fetchall()
    # The new report's locator is its receipt's first six digits; its salt is its own
    assert rows[0][0] == receipt[:6] and len(rows[0][1]) == 16 and rows[0][1] != install.receipt_kdf.salt
    assert rows[1] == (None, None)


async def test_each_report_has_its_own_salt(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipts = [await _submit(store, kdf, install, blobs, config, f"report {i}") for i in range(3)]
    with sqlite3.connect(config.db_path) as db:
        rows = db.execute("SELECT locator, receipt_salt FROM reports").fetchall()
    assert sorted(r[0] for r in rows) == sorted(r[:6] for r in receipts)
    salts = {r[1] for r in rows}
    assert len(salts) == 3 and install.receipt_kdf.salt not in salts


async def test_an_unknown_locator_costs_one_argon2id_run_and_the_same_error(
    store: Store, counting: CountingPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await _submit(store, counting, install, blobs, config, "the report")
    counting.calls.clear()
    locator, secret = split_receipt(receipt)
    assert locator is not None
    unknown = f"{(int(locator) + 1) % 10**6:06d}" + secret
    wrong_secret = locator + f"{(int(secret) + 1) % 10**18:018d}"
    for attempt in (unknown, wrong_secret):
        with pytest.raises(WrongReceipt):
            await open_mailbox(store=store, kdf=counting, install=install, receipt_text=attempt)
    assert counting.calls == [Priority.NORMAL, Priority.NORMAL]


async def test_a_locator_clash_draws_another_locator_without_another_derivation(
    store: Store, counting: CountingPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a report already holding a locator, and the next draws being that one twice, then 000007
    first = await _submit(store, counting, install, blobs, config, "first")
    taken = first[:6]
    draws = iter([taken, taken, "000007"])
    monkeypatch.setattr("dropbox.submissions.new_locator", lambda: next(draws))
    counting.calls.clear()
    # When another report is submitted
    second = await _submit(store, counting, install, blobs, config, "second")
    # Then it got the free locator, after one derivation only, and both receipts open their own report
    assert second.startswith("000007") and counting.calls == [Priority.URGENT]
    for receipt, text in ((first, "first"), (second, "second")):
        access = await open_mailbox(store=store, kdf=counting, install=install, receipt_text=receipt)
        assert (await read_mailbox(store=store, access=access, record_visit=False)).body.text == text


async def test_the_stock_hands_out_each_receipt_once_and_refills_at_idle_priority(
    store: Store, counting: CountingPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    # Given a stock of two, filled
    stock = ReceiptStock(kdf=counting, install=install, size=2)
    stock.start()
    try:
        await until(lambda: stock.ready == 2)
        assert counting.calls == [Priority.IDLE, Priority.IDLE]
        # When three are taken at once: two come from the stock, the third is derived urgently
        taken = await asyncio.gather(stock.take(), stock.take(), stock.take())
        assert Priority.URGENT in counting.calls
        assert len({t.secret for t in taken}) == 3 and len({t.salt for t in taken}) == 3
        # Then the stock fills up again, at idle priority
        await until(lambda: stock.ready == 2)
        assert counting.calls.count(Priority.IDLE) == 4
        # And a stocked receipt makes a working report without any derivation at submission
        counting.calls.clear()
        receipt = await submit_report(store=store, kdf=counting, install=install, channel_id="default",
                                      body=ReportBody(text="stocked", answers={}), keys=ReportKeys.generate(),
                                      staged=blobs.stage(byte_budget=1), take_receipt=stock.take)
        assert Priority.URGENT not in counting.calls
        access = await open_mailbox(store=store, kdf=counting, install=install, receipt_text=receipt)
        assert (await read_mailbox(store=store, access=access, record_visit=False)).body.text == "stocked"
    finally:
        await stock.close()


async def test_a_refused_submission_takes_nothing_from_the_stock(
    store: Store, counting: CountingPool, install: Install, blobs: BlobStore, config: Config
) -> None:
    # Given a filled stock and a channel nobody is assigned to (no caseworker at all)
    stock = ReceiptStock(kdf=counting, install=install, size=1)
    stock.start()
    try:
        await until(lambda: stock.ready == 1)
        # When a report is submitted there, it is refused
        with pytest.raises(NoRecipients):
            await submit_report(store=store, kdf=counting, install=install, channel_id="default",
                                body=ReportBody(text="nobody reads this", answers={}), keys=ReportKeys.generate(),
                                staged=blobs.stage(byte_budget=1), take_receipt=stock.take)
        # Then the stocked receipt is still there for the next person
        assert stock.ready == 1
    finally:
        await stock.close()
