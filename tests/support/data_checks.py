"""What "nothing lost, nothing half-written" means, checked on an install's files with the domain functions.

Used after a crash, a full disk or a flood of bad input: the database is sound, stored file
contents and file rows match exactly, no staged upload is left, no file of its own exists for any
upload, every report opens completely with a granted caseworker's key, and each receipt that was
shown opens its own report with everything sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from dropbox import accounts, datalock, health, settings
from dropbox.blobs import BlobStore, size_bucket
from dropbox.config import Config
from dropbox.install import load_install
from dropbox.kdf_pool import KdfPool
from dropbox.reports import open_body, open_file_key, open_file_name, open_file_size, open_message
from dropbox.storage import Store, StoredFile
from dropbox.submissions import open_mailbox, read_mailbox

#: A string a test writes as a whistleblower or caseworker would, then searches the disk for.
CANARY = "CANARY-7f3a9e-whistle"


def all_bytes_under(folder: Path) -> dict[Path, bytes]:
    """Every file below `folder`, read raw: what someone holding the disk would see."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Sent:
    """What one whistleblower sent and was confirmed (receipt shown, reply answered 303)."""

    receipt: str
    text: str
    files: dict[str, str]  # name -> sha256 of the content
    replies: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (text, {name: sha256})


def _read_only(config: Config, *, timeout: float = 30) -> contextlib.closing[sqlite3.Connection]:
    """A read-only connection that is closed on the way out (sqlite3's own `with` only commits)."""
    return contextlib.closing(sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True, timeout=timeout))


def db_snapshot(config: Config) -> dict[str, int]:
    """Row counts, read with a plain read-only sqlite3 connection (safe beside a running server)."""
    with _read_only(config) as db:
        return {table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
                for table in ("reports", "messages", "files", "report_grants")}


def chunk_files(config: Config) -> set[str]:
    """Ids of every file with contents in the database (committed or staged)."""
    with _read_only(config) as db:
        return {r[0] for r in db.execute("SELECT DISTINCT file_id FROM file_chunks")}


def leftover_staged(config: Config) -> list[str]:
    """Ids of files with chunks but no file row: uploads in progress, or left behind."""
    with _read_only(config) as db:
        return sorted(r[0] for r in db.execute("SELECT DISTINCT file_id FROM file_chunks"
                                               " WHERE NOT EXISTS (SELECT 1 FROM files WHERE id = file_id)"))


def stored_lengths(config: Config, file_id: str) -> list[int]:
    """The lengths of a file's stored rows, in order: everything its bytes on disk can tell."""
    with _read_only(config) as db:
        return [int(r[0]) for r in db.execute("SELECT length(data) FROM file_chunks WHERE file_id = ? ORDER BY seq",
                                              (file_id,))]


def files_of_their_own(config: Config) -> list[Path]:
    """Every file under data/ besides the database (and its WAL and shared memory), keys/ and the
    install's own files (settings, the lock `serve` holds, its status file): none of these is made
    or touched by what a whistleblower does."""
    ours = {config.db_path.name, config.db_path.name + "-wal", config.db_path.name + "-shm",
            settings.FILE_NAME, datalock.LOCK_NAME, health.STATUS_NAME}
    return sorted(p for p in config.data_dir.rglob("*")
                  if p.is_file() and p.name not in ours and config.keys_dir not in p.parents
                  and config.tor_dir not in p.parents)


def integrity(config: Config) -> tuple[str, list[tuple[object, ...]]]:
    with _read_only(config) as db:
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
        foreign = db.execute("PRAGMA foreign_key_check").fetchall()
    return str(check), foreign


def file_ids_in_db(config: Config) -> set[str]:
    with _read_only(config) as db:
        return {r[0] for r in db.execute("SELECT id FROM files")}


def assert_settled(config: Config) -> None:
    """After recovery: sound database, contents ↔ rows exactly, nothing staged, no upload files."""
    check, foreign = integrity(config)
    assert check == "ok", f"PRAGMA integrity_check: {check}"
    assert foreign == [], f"PRAGMA foreign_key_check: {foreign[:5]}"
    assert leftover_staged(config) == [], f"staged chunks left: {leftover_staged(config)[:5]}"
    contents = chunk_files(config)
    rows = file_ids_in_db(config)
    assert contents == rows, (f"contents without rows: {sorted(contents - rows)[:5]}; "
                              f"rows without contents: {sorted(rows - contents)[:5]}")
    assert files_of_their_own(config) == [], f"files beside the database: {files_of_their_own(config)[:5]}"


async def assert_every_report_opens(config: Config, *, caseworker: str, passphrase: str) -> int:
    """Every report row opens completely with `caseworker`'s grant: body, messages, names, file bytes.

    This covers the reports whose receipt never reached anyone (the process died after the commit):
    they must be whole too. Returns how many reports there are.
    """
    store = await Store.open(config.db_path)
    kdf = KdfPool(concurrency=1, queue_limit=4)
    try:
        session = await accounts.login(store=store, kdf=kdf, config=config, name=caseworker, passphrase=passphrase)
        blobs = BlobStore(store, config)
        grants = dict(await store.grants_of(session.caseworker.id))
        async with store._reader.execute("SELECT id FROM reports") as cur:  # test-only read of every id
            report_ids = [r[0] for r in await cur.fetchall()]
        assert set(report_ids) == set(grants), "a report without a grant to the channel's caseworker"
        for report_id in report_ids:
            keys = session.key.open_report_keys(grants[report_id])
            report = await store.report(report_id)
            open_body(report.sealed_body, report_key=keys.report_key, report_id=report_id)
            for message in await store.messages(report_id):
                open_message(message, report_key=keys.report_key)
            for stored in await store.files(report_id):
                open_file_name(stored, report_key=keys.report_key)
                file_key = open_file_key(stored, report_key=keys.report_key)
                exact = open_file_size(stored, report_key=keys.report_key)
                size = sum(len(c) for c in blobs.read(stored.id, file_key=file_key, size=stored.size))  # padded
                assert size == stored.size == size_bucket(exact), f"file {stored.id}: {size} bytes, row {stored.size}"
        return len(report_ids)
    finally:
        kdf.close()
        await store.close()


async def assert_receipts_open(config: Config, sent: list[Sent]) -> None:
    """Through the domain functions: each receipt opens its report with exactly what was confirmed."""
    store = await Store.open(config.db_path)
    kdf = KdfPool(concurrency=2, queue_limit=len(sent) + 4)
    try:
        install = await load_install(store)
        blobs = BlobStore(store, config)
        seen_reports: set[str] = set()
        for item in sent:
            access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=item.receipt)
            assert access.report_id not in seen_reports, "two receipts open the same report"
            seen_reports.add(access.report_id)
            view = await read_mailbox(store=store, access=access, record_visit=False)
            assert view.body.text == item.text
            by_id = {f.id: f for f in await store.files(access.report_id)}
            key = access.report_key
            assert _contents(blobs, by_id, [f.id for f in view.files], key) == item.files
            from_whistleblower = [m for m in view.messages if m.author == "whistleblower"]
            confirmed = {text: files for text, files in item.replies}
            stored = {m.text: _contents(blobs, by_id, [f.id for f in m.files], key) for m in from_whistleblower}
            for text, files in confirmed.items():
                assert text in stored, "a reply that was answered 303 is missing"
                assert stored[text] == files, "a confirmed reply lost or changed a file"
    finally:
        kdf.close()
        await store.close()


def _contents(blobs: BlobStore, by_id: dict[str, StoredFile], file_ids: list[str], key: bytes) -> dict[str, str]:
    """{file name: sha256 of its bytes} for the given stored files, opened with the report key."""
    return {
        open_file_name(by_id[i], report_key=key): digest(b"".join(
            blobs.read(i, file_key=open_file_key(by_id[i], report_key=key),
                       size=open_file_size(by_id[i], report_key=key))))
        for i in file_ids
    }


#: How far a file's ctime may lag a time.time() read before the write (the kernel stamps files
#: with a coarse clock).
CTIME_SLACK_SECONDS = 2.0


def files_containing(root: Path, needles: list[bytes], *, newer_than: float | None = None,
                     max_bytes: int = 256 * 1024 * 1024) -> list[tuple[Path, bytes]]:
    """(path, needle) for every regular file below `root` that contains a needle.

    `newer_than` (a time.time() read before the needles were made): only files written since are
    read. A file holding a fresh needle was written after it existed, and every write moves the
    ctime, which (unlike the mtime) no program can set back; a busy machine's temp folder holds
    gigabytes that need not be read."""
    hits = []
    # os.walk, not rglob: a folder that vanishes during the walk (another process's temp dir on a
    # shared machine) is skipped instead of ending the scan with FileNotFoundError.
    paths = (Path(folder, name) for folder, _dirs, names in os.walk(root) for name in names)
    for path in paths:
        try:
            if not path.is_file() or path.is_symlink():
                continue
            stat = path.stat()
            if newer_than is not None and stat.st_ctime < newer_than - CTIME_SLACK_SECONDS:
                continue
            if stat.st_size > max_bytes:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        hits += [(path, n) for n in needles if n in data]
    return hits
