"""The store's own promises: schema, durability settings, migrations, deletion."""

from __future__ import annotations

import sqlite3

import pytest

from dropbox.config import Config
from dropbox.statistics import recorder
from dropbox.storage import SCHEMA_VERSION, NotFound, Store, StoreError


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


async def test_tables_of_reports_and_what_they_record_keep_no_time_ordered_rowid(store: Store, config: Config) -> None:
    """docs/PROTOCOL.md, "What the disk still shows": rows about reports sit in the order of their
    random keys, so their order does not date them; `audit` and `membership_notices` (caseworker
    actions) and the settings tables are the only ones with a rowid, and file_chunks' is random."""
    with sqlite3.connect(config.db_path) as db:
        sql = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    without_rowid = {name for name, create in sql.items() if create.rstrip().upper().endswith("WITHOUT ROWID")}
    assert without_rowid == {"reports", "report_grants", "messages", "notes", "files", "report_reasons",
                             "report_stats", "oral_reports", "oral_minutes", "minutes_corrections"}
    assert set(sql) - without_rowid == {"meta", "channels", "caseworkers", "channel_members", "audit",
                                        "membership_notices", "pending_memberships", "file_chunks"}
