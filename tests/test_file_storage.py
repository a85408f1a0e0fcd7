"""What the disk keeps of an upload (issue 10, M1 and I1): no file or timestamp of its own, no exact
size, no insert order; old installs carried forward; nothing of a deleted report left behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData

from dropbox.blobs import BlobStore
from dropbox.config import Config, config_for_tests
from dropbox.install import init_install, make_private_dir
from dropbox.migrations import _MIGRATIONS, SCHEMA_VERSION
from dropbox.reports import open_file_key, open_file_name, open_file_size, open_message, open_note
from dropbox.retention import purge_expired
from dropbox.sealing import FileSealer, KdfParams, new_file_key, seal
from dropbox.services import Services
from dropbox.storage import Store
from dropbox.submissions import open_mailbox
from tests.support.caseworker_site import Site as CaseworkerSite
from tests.support.caseworker_site import serve_site
from tests.support.data_checks import chunk_files, files_of_their_own, stored_lengths
from tests.support.domain import (
    caseworker_reply,  # noqa: F401
    submit,
)
from tests.support.forms import csrf_in, report_form  # noqa: F401
from tests.support.installs import STAFF, new_install
from tests.support.whistleblower_site import Site, log_in, site_fixture, submit_report  # noqa: F401

KiB, MiB = 1024, 1024 * 1024


def _rows(config: Config, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        return db.execute(sql, params).fetchall()


async def test_a_full_flow_leaves_no_upload_file_and_no_timestamp_under_data(site: Site) -> None:
    # Given a report with files, a reply with a file from each side
    receipt = await submit_report(site.client, files={"a.pdf": os.urandom(1000), "b.pdf": os.urandom(30 * KiB)})
    await caseworker_reply(site.services, receipt, "answer", {"c.txt": b"from the caseworker"})
    inbox = await log_in(site.client, receipt)
    data = FormData({"csrf_token": csrf_in(inbox), "text": "more"})
    data.add_field("files", os.urandom(5000), filename="d.bin", content_type="application/octet-stream")
    assert (await site.client.post("/en/mailbox/reply", data=data, allow_redirects=False)).status == 303
    # Then every file's contents are in the database, and no file of its own exists under data/
    assert len(chunk_files(site.config)) == 4
    assert files_of_their_own(site.config) == []
    assert not site.config.blobs_dir.exists() and not site.config.tmp_dir.exists()
    # and what stays is the database (and its WAL), whose times say only when it was last written
    names = {p.name for p in site.config.data_dir.iterdir()}
    assert names <= {"dropbox.sqlite3", "dropbox.sqlite3-wal", "dropbox.sqlite3-shm", "keys"}, names


async def test_the_stored_size_is_a_bucket_and_the_stored_bytes_do_not_tell_the_exact_size(site: Site) -> None:
    # Given two files of 1000 and 1900 bytes, and two of 20 and 30 KiB
    sizes = {"a.bin": 1000, "b.bin": 1900, "c.bin": 20 * KiB}
    receipt = await submit_report(site.client, files={n: os.urandom(s) for n, s in sizes.items()})
    other = await submit_report(site.client, files={"d.bin": os.urandom(30 * KiB)})
    services = site.services
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    stored = {open_file_name(f, report_key=access.report_key): f for f in await services.store.files(access.report_id)}
    # Then files.size holds the bucket, and the exact size opens only with the report key
    assert {n: f.size for n, f in stored.items()} == {"a.bin": 4 * KiB, "b.bin": 4 * KiB, "c.bin": 32 * KiB}
    assert {n: open_file_size(f, report_key=access.report_key) for n, f in stored.items()} == sizes
    # and the bytes on disk are the same length, row for row, for sizes in the same bucket
    assert stored_lengths(site.config, stored["a.bin"].id) == stored_lengths(site.config, stored["b.bin"].id)
    other_access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                      receipt_text=other)
    (d,) = await services.store.files(other_access.report_id)
    assert stored_lengths(site.config, stored["c.bin"].id) == stored_lengths(site.config, d.id)
    # while people are still shown the exact size, not the bucket
    page = await log_in(site.client, receipt)
    assert "(1000\u00a0B)" in page and "(1.9\u00a0kB)" in page and "(4\u00a0kB)" not in page


async def test_tables_that_could_date_an_action_have_no_rowid_or_a_random_one_and_keep_their_indexes(
        site: Site) -> None:
    await submit_report(site.client, files={"a.bin": b"a", "b.bin": os.urandom(60 * KiB)})
    sql = dict(_rows(site.config, "SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    for table in ("reports", "report_grants", "messages", "notes", "files"):
        assert str(sql[table]).rstrip().endswith("WITHOUT ROWID"), table
        with pytest.raises(sqlite3.OperationalError):
            _rows(site.config, f"SELECT rowid FROM {table}")  # noqa: S608
    # file_chunks has a rowid (a frame's bytes must sit in overflow pages, migration 10), drawn at
    # random from 63 bits, not counted up from 1 in the order the rows were written (the order itself
    # is checked on a larger file in test_upload_pipeline.py)
    ids = [int(r[0]) for r in _rows(site.config, "SELECT rowid FROM file_chunks")]
    assert len(ids) == 2 + 5 and min(ids) >= 2**32
    indexes = {r[0] for r in _rows(site.config, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"reports_listing", "reports_by_received", "reports_by_expiry", "files_by_report",
            "audit_by_report", "file_chunks_by_file"} <= indexes


async def test_a_failed_upload_leaves_no_chunk(site: Site) -> None:
    # Given a submission whose second file is over the limit, after a first one was stored
    files = {"ok.bin": os.urandom(60 * KiB), "big.bin": os.urandom(65 * KiB)}
    response = await site.client.post("/en/submit", data=report_form("x", files=files))
    # Then it is refused and nothing of either file stays
    assert response.status == 413
    assert chunk_files(site.config) == set()


# -- migration 4 --------------------------------------------------------------------------------


def _old_blob(path: Path, data: bytes, *, file_key: bytes, file_id: str) -> None:
    """A blob file exactly as installs before schema 4 wrote them (whole file, same format)."""
    sealer = FileSealer(file_key=file_key, file_id=file_id)
    path.write_bytes(sealer.push(data) + sealer.finish())


async def test_migration_4_moves_old_blob_files_into_the_database_and_old_rows_keep_opening(tmp_path: Path) -> None:
    # Given an install at schema 2: a report, a message, a note and two files, one of them still
    # tmp/<id>.part (committed just before a crash), plus an orphan blob and an abandoned .part
    config = config_for_tests(tmp_path / "data")
    for folder in (config.data_dir, config.blobs_dir, config.tmp_dir, config.keys_dir):
        make_private_dir(folder)
    db = sqlite3.connect(config.db_path)
    for version in (1, 2):
        db.executescript(str(_MIGRATIONS[version]))
    db.execute("PRAGMA user_version = 2")
    key, staff = os.urandom(32), os.urandom(32)
    report, message, note, f1, f2 = "r" * 32, "m" * 32, "n" * 32, "1" * 32, "2" * 32
    db.execute("INSERT INTO meta VALUES ('receipt_salt', ?), ('receipt_kdf', ?)",
               (KdfParams.fresh(ops=1, mem=8192).salt, json.dumps({"ops": 1, "mem": 8192}).encode()))
    db.execute("INSERT INTO channels (id, name, retention_days, is_default) VALUES ('default', 'D', 90, 1)")
    db.execute("INSERT INTO reports (id, lookup_id, channel_id, received_day, last_activity_day, retention_days,"
               " expires_day, whistleblower_key, sealed_body) VALUES (?, x'00', 'default', '2026-01-01',"
               " '2026-01-01', 90, '2026-04-01', x'00', x'00')", (report,))
    db.execute("INSERT INTO messages (id, report_id, seq, author, sealed_body, sent_day) VALUES"
               " (?, ?, 1, 'whistleblower', ?, '2026-01-02')",
               (message, report, seal(b"old message", key=key, context=f"message:{report}:{message}:whistleblower")))
    db.execute("INSERT INTO notes (id, report_id, seq, caseworker_id, sealed_body, written_day) VALUES"
               " (?, ?, 1, NULL, ?, '2026-01-02')", (note, report, seal(b"old note", key=staff,
                                                                        context=f"note:{report}:{note}")))
    contents = {f1: os.urandom(3 * MiB + 5), f2: b"second file"}
    for file_id, message_id, folder, suffix in ((f1, None, config.blobs_dir, ""),
                                                (f2, message, config.tmp_dir, ".part")):
        file_key = new_file_key()
        _old_blob(folder / (file_id + suffix), contents[file_id], file_key=file_key, file_id=file_id)
        db.execute("INSERT INTO files (id, report_id, message_id, sealed_name, sealed_file_key, size)"
                   " VALUES (?, ?, ?, ?, ?, ?)",
                   (file_id, report, message_id, seal(f"{file_id[0]}.bin".encode(), key=key,
                                                      context=f"file-name:{report}:{file_id}"),
                    seal(file_key, key=key, context=f"file-key:{report}:{file_id}"), len(contents[file_id])))
    (config.blobs_dir / ("o" * 32)).write_bytes(b"orphan")
    (config.tmp_dir / (("p" * 32) + ".part")).write_bytes(b"abandoned")
    db.commit()
    db.close()

    # When the new code opens it (migration 4, then recovery at start-up)
    store = await Store.open(config.db_path, migrate=True)
    try:
        counts = await BlobStore(store, config).recover()
        # Then both files moved into the database, the rest was dropped, and the folders are gone
        assert counts == {"moved_in": 2, "discarded": 2}
        assert not config.blobs_dir.exists() and not config.tmp_dir.exists()
        assert (await store._one("PRAGMA user_version"))[0] == SCHEMA_VERSION
        assert await store.integrity_check() == "ok"
        # and every old row still opens, with the contexts it was sealed with
        (m,) = await store.messages(report)
        assert (m.ad_version, open_message(m, report_key=key)) == (1, "old message")
        (n,) = await store.notes(report)
        assert open_note(n, staff_key=staff) == "old note"
        blobs = BlobStore(store, config)
        for f in await store.files(report):
            size = open_file_size(f, report_key=key)
            data = b"".join(blobs.read(f.id, file_key=open_file_key(f, report_key=key), size=size))
            assert (open_file_name(f, report_key=key), data) == (f"{f.id[0]}.bin", contents[f.id])
        # and a second start finds nothing left to do
        assert await BlobStore(store, config).recover() == {"moved_in": 0, "discarded": 0}
    finally:
        await store.close()


# -- migration 10 -------------------------------------------------------------------------------


def _back_to_schema_9(config: Config) -> None:
    """file_chunks as schema 9 kept it: WITHOUT ROWID, every frame cut into rows of 16,320 bytes."""
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        frames = db.execute("SELECT file_id, seq, data FROM file_chunks ORDER BY file_id, seq").fetchall()
        db.execute("DROP TABLE file_chunks")
        db.execute("CREATE TABLE file_chunks (file_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
                   " PRIMARY KEY (file_id, seq)) WITHOUT ROWID")
        seqs: dict[str, int] = {}
        for file_id, _, frame in frames:
            for at in range(0, len(frame), 16_320):
                seq = seqs[file_id] = seqs.get(file_id, -1) + 1
                db.execute("INSERT INTO file_chunks VALUES (?, ?, ?)", (file_id, seq, frame[at : at + 16_320]))
        db.execute("PRAGMA user_version = 9")
        db.commit()


async def test_migration_10_keeps_every_file_of_a_schema_9_install_and_new_uploads_are_one_frame_a_row(
        tmp_path: Path) -> None:
    # Given a schema 9 install with a report of three files, stored in 16 KiB rows
    config = await new_install(tmp_path / "data", file_chunk_bytes=64 * KiB)
    contents = {"a.bin": os.urandom(300 * KiB + 7), "b.bin": b"", "c.bin": os.urandom(5000)}
    async with Services.open(config) as services:
        sent = await submit(services, files=contents)
    _back_to_schema_9(config)
    assert max(int(r[0]) for r in _rows(config, "SELECT length(data) FROM file_chunks")) == 16_320
    # When it is migrated (run.py migrate opens the store this way)
    store = await Store.open(config.db_path, migrate=True)
    await store.close()
    # Then every file opens whole from its old rows, and the database is sound
    assert _rows(config, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _rows(config, "PRAGMA integrity_check") == [("ok",)]
    async with Services.open(config) as services:
        access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                    receipt_text=sent.receipt)
        files = await services.store.files(sent.report_id)
        stored = {open_file_name(f, report_key=access.report_key): f for f in files}
        for name, data in contents.items():
            f = stored[name]
            key = open_file_key(f, report_key=access.report_key)
            assert b"".join(services.blobs.read(f.id, file_key=key, size=len(data))) == data, name
        # and a new upload is stored one frame a row beside them
        later = await submit(services, files={"d.bin": os.urandom(200 * KiB)})
        (d,) = await services.store.files(later.report_id)
        assert len(stored_lengths(config, d.id)) == 256 // 64 + 1


# -- I1: a deleted report leaves no byte behind ---------------------------------------------------


def _every_byte(config: Config) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(config.data_dir.rglob("*")) if p.is_file())


async def _sealed_canaries(config: Config, report_id: str) -> list[bytes]:
    """Distinctive ciphertext of the report: its sealed body, the receipt's wrap, a file chunk."""
    body, wrapped = _rows(config, "SELECT sealed_body, whistleblower_key FROM reports WHERE id = ?", (report_id,))[0]
    chunks = _rows(config, "SELECT data FROM file_chunks WHERE file_id IN (SELECT id FROM files"
                           " WHERE report_id = ?)", (report_id,))
    values = [bytes(v) for v in (body, wrapped, *(c[0] for c in chunks))]  # type: ignore[call-overload]
    return [v[len(v) // 2 - 16 : len(v) // 2 + 16] for v in values if len(v) >= 64]


@contextlib.asynccontextmanager
async def _caseworker_site(tmp_path: Path) -> AsyncIterator[CaseworkerSite]:
    config = await new_install(tmp_path / "data", STAFF)
    async with serve_site(config) as served:
        yield served


async def test_a_deleted_report_leaves_no_byte_of_it_under_data(tmp_path: Path) -> None:
    async with _caseworker_site(tmp_path) as site:
        # Given a report with a file, and one that stays
        gone = await submit(site.services, text="delete me", files={"f.bin": os.urandom(40 * KiB)})
        await submit(site.services, text="keep me", files={"k.bin": os.urandom(10 * KiB)})
        canaries = await _sealed_canaries(site.config, gone.report_id)
        assert all(c in _every_byte(site.config) for c in canaries)
        # When a caseworker deletes it (the server keeps running)
        alice = await site.signed_in("alice")
        done = await alice.post(f"/en/reports/{gone.report_id}/delete", {"confirm": "yes"})
        assert done.status == 303
        # Then no byte of its ciphertext is left in the database, the WAL or anywhere under data/
        everything = _every_byte(site.config)
        assert [c for c in canaries if c in everything] == []


async def test_a_purged_report_leaves_no_byte_of_it_under_data(tmp_path: Path) -> None:
    config = await new_install(tmp_path / "data", STAFF)
    async with Services.open(config) as services:
        gone = await submit(services, text="expire me", files={"f.bin": os.urandom(40 * KiB)})
        canaries = await _sealed_canaries(config, gone.report_id)
        later = dt.date.today() + dt.timedelta(days=config.default_retention_days + 1)
        await services.store.update_report(gone.report_id, status="closed", closed_day=dt.date.today().isoformat(),
                                           expires_day=(later - dt.timedelta(days=1)).isoformat())
        assert await purge_expired(store=services.store, on=later) == 1
        everything = _every_byte(config)
        assert [c for c in canaries if c in everything] == []


async def test_init_makes_no_blob_folders(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path / "data")
    await init_install(config)
    assert sorted(p.name for p in config.data_dir.iterdir()) == ["dropbox.sqlite3", "keys"]
