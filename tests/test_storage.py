"""The store's own promises: schema, durability settings, migrations, retention, deletion."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from dropbox.blobs import BlobStore
from dropbox.config import Config
from dropbox.install import Install, today
from dropbox.kdf_pool import KdfPool
from dropbox.retention import purge_expired
from dropbox.statistics import recorder
from dropbox.storage import SCHEMA_VERSION, NotFound, Store, StoreError
from tests.support.data_checks import chunk_files
from tests.support.domain import hand_in


async def test_database_runs_in_wal_with_foreign_keys_and_current_schema(store: Store, config: Config) -> None:
    mode = await store._one("PRAGMA journal_mode")
    fks = await store._one("PRAGMA foreign_keys")
    version = await store._one("PRAGMA user_version")
    assert (mode[0], fks[0], version[0]) == ("wal", 1, SCHEMA_VERSION)
    assert await store.integrity_check() == "ok"


async def test_newer_schema_is_refused(store: Store, config: Config) -> None:
    await store.close()
    raw = sqlite3.connect(config.db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError):
        await Store.open(config.db_path)


async def test_failed_transaction_leaves_no_rows(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as db:
            await db.execute("INSERT INTO audit (hour, action) VALUES ('h', 'x')")
            raise RuntimeError("boom")
    assert await store.audit_log() == []


async def test_purge_deletes_expired_reports_rows_and_file_contents(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: object
) -> None:
    await hand_in(store, kdf, install, blobs, config, files={"a": b"1"})
    keep = await hand_in(store, kdf, install, blobs, config, files={"b": b"2"})
    assert keep and len(chunk_files(config)) == 2
    assert await purge_expired(store=store) == 0
    # Open reports never expire; closed today, both go ninety days on (default retention),
    # file contents included.
    later = today() + dt.timedelta(days=config.default_retention_days + 1)
    assert await purge_expired(store=store, on=later) == 0
    async with store.transaction() as db:
        await db.execute("UPDATE reports SET status = 'closed', closed_day = ?, expires_day = ?",
                         (today().isoformat(), (later - dt.timedelta(days=1)).isoformat()))
    assert await purge_expired(store=store, on=later) == 2
    assert chunk_files(config) == set()
    for table in ("reports", "files", "report_grants", "messages", "file_chunks"):
        row = await store._one(f"SELECT count(*) FROM {table}")
        assert row[0] == 0, table
    assert [e.action for e in await store.audit_log()] == ["purged", "purged"]


async def test_delete_unknown_report_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.delete_report("0" * 32, record=recorder())


async def test_updates_touch_only_allow_listed_columns_of_existing_rows(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.update_report("0" * 32, lookup_id=b"x")  # written once, at insert
    with pytest.raises(ValueError):
        await store.update_caseworker("0" * 32, public_key=b"x")
    with pytest.raises(ValueError):
        await store.update_report("0" * 32)
    with pytest.raises(NotFound):
        await store.update_report("0" * 32, status="closed")
    with pytest.raises(NotFound):
        await store.update_caseworker("0" * 32, disabled=1)
