"""What cleaning leaves on disk: no plaintext anywhere (a canary scan), and migration 6 carrying an
existing install forward."""

from __future__ import annotations

import secrets
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from dropbox.cleaning import Cleaner, CleaningSettings, Kind, Outcome
from dropbox.config import MiB
from dropbox.migrations import _MIGRATIONS, SCHEMA_VERSION
from dropbox.reports import open_file_cleaning
from dropbox.sealing import KdfParams, TamperedData, WrappedPrivateKey, unwrap_caseworker_key
from dropbox.storage import Store
from tests.support.caseworker_site import downloads, only_report_url, serve_site
from tests.support.data_checks import files_containing
from tests.support.forms import receipt_in, report_form, visible_text
from tests.support.installs import PASSPHRASES, STAFF, new_install
from tests.support.live_server import AiohttpClient
from tests.support.metadata_files import BUILDERS, MARKER, SANDBOX_LIMITS
from tests.support.whistleblower_site import log_in, open_site


def disk_holding(canary: bytes, *roots: Path, changed_since: float | None = None) -> list[Path]:
    """Every regular file under `roots` whose bytes contain `canary` (with `changed_since`, among
    those written since: see files_containing)."""
    return [path for root in roots for path, _ in files_containing(root, [canary], newer_than=changed_since)]


def _canary_pdf(tmp_path: Path, canary: str) -> bytes:
    """The test PDF with the canary for its author (same length, so the PDF's offsets hold)."""
    _, data, planted = BUILDERS["pdf"](tmp_path)
    return data.replace(planted[0].encode(), canary.encode().ljust(len(planted[0]), b" "))


HOST_TEMP = [Path(tempfile.gettempdir()), Path("/var/tmp"), Path("/dev/shm")]  # noqa: S108 - scanned, not used


async def test_no_plaintext_reaches_the_disk_while_the_sandbox_holds_it(tmp_path: Path) -> None:
    # Given a file carrying a canary that exists nowhere else (its bytes are built in memory only)
    started = time.time()
    canary = "CNRY" + secrets.token_hex(5)  # 14 characters: shorter than the planted author
    data = _canary_pdf(tmp_path / "build", canary)
    assert canary.encode() in data
    assert not disk_holding(canary.encode(), *HOST_TEMP, changed_since=started)
    cleaner = Cleaner(CleaningSettings(max_bytes=32 * MiB, concurrency=1, limits=SANDBOX_LIMITS))
    seen_during: list[list[Path]] = []

    async def source() -> AsyncIterator[bytes]:
        yield data

    async def sink(_chunk: bytes) -> None:
        # When the sandbox is streaming the cleaned copy back (input and output still on its tmpfs),
        # Then no file on the host's temporary folders holds the plaintext
        if not seen_during:
            seen_during.append(disk_holding(canary.encode(), *HOST_TEMP, changed_since=started))

    result = await cleaner.clean(name="budget.pdf", size=len(data), source=source, sink=sink)
    assert result.outcome is Outcome.CLEANED
    assert seen_during == [[]]


async def test_no_plaintext_in_the_data_folder_after_a_cleaned_submission(aiohttp_client: AiohttpClient,
                                                                          tmp_path: Path) -> None:
    # Given an install, and a report with files carrying a canary in their content and metadata
    config = await new_install(tmp_path / "data", STAFF, max_file_bytes=8 * MiB, max_submission_bytes=16 * MiB)
    started = time.time()
    canary = "CNRY" + secrets.token_hex(5)  # 14 characters: shorter than the planted author
    files = {"budget.pdf": _canary_pdf(tmp_path / "build", canary), "notes.txt": f"body {canary}\n".encode()}
    async with open_site(aiohttp_client, config) as site, serve_site(config) as staff:
        response = await site.client.post("/en/submit", data=report_form("x", files=files))
        assert response.status == 200
        # When the caseworker downloads them (the text file's content is the canary: it must arrive)
        got = await downloads(staff, await only_report_url(staff))
        assert canary.encode() in got["notes.txt"]
        # Then neither the data folder (database, WAL) nor the host's temporary folders hold it
        assert disk_holding(canary.encode(), config.data_dir, *HOST_TEMP, changed_since=started) == []


async def test_the_values_found_open_for_the_whistleblower_and_no_caseworker(aiohttp_client: AiohttpClient,
                                                                             tmp_path: Path) -> None:
    # Given a report whose DOCX carried a creator, a modifier and a company, granted to three caseworkers
    config = await new_install(tmp_path / "data", STAFF, max_file_bytes=8 * MiB, max_submission_bytes=16 * MiB)
    name, data, planted = BUILDERS["docx"](tmp_path)
    async with open_site(aiohttp_client, config) as site, serve_site(config) as staff:
        response = await site.client.post("/en/submit", data=report_form("x", files={name: data}))
        receipt = receipt_in(await response.text())
        # When the whistleblower opens the mailbox later, Then it shows the values found again
        inbox = visible_text(await log_in(site.client, receipt))
        assert f"Author: {planted[0]}" in inbox and f"Organisation: {planted[2]}" in inbox
        # And the caseworker's page names the kinds only
        report_url = await only_report_url(staff)
        page = visible_text(await (await staff.signed_in("alice")).text(report_url))
        assert "Author" in page and MARKER not in page
        store = staff.services.store
        report_id = report_url.rsplit("/", 1)[1]
        (stored,) = await store.files(report_id)
        # And with every key a caseworker holds (the report key, the staff key, a key derived
        # from their own private key) the stored values do not open; without one, kinds only
        caseworkers = await store.caseworkers()
        assert {cw.name for cw in caseworkers} == {"alice", "bob", "carol"}
        for cw in caseworkers:
            own = unwrap_caseworker_key(WrappedPrivateKey(
                public_key=cw.public_key, wrapped=cw.wrapped_key,
                kdf=KdfParams(salt=cw.kdf_salt, ops=cw.kdf_ops, mem=cw.kdf_mem)), passphrase=PASSPHRASES[cw.name])
            keys = own.open_report_keys(await store.grant(report_id=report_id, caseworker_id=cw.id))
            kinds_only = open_file_cleaning(stored, report_key=keys.report_key)
            assert kinds_only is not None and Kind.AUTHOR in {f.kind for f in kinds_only.found}
            assert all(f.value is None for f in kinds_only.found)
            for attempt in (keys.report_key, keys.staff_key, own.subkey(b"dbx.wb-own")):
                with pytest.raises(TamperedData):
                    open_file_cleaning(stored, report_key=keys.report_key, sender_key=attempt)
    # And no value is in the clear anywhere in the data folder
    assert disk_holding(MARKER.encode(), config.data_dir) == []


async def test_migration_6_gives_existing_channels_the_default_policy(tmp_path: Path) -> None:
    # Given a database at schema 5 with a channel
    db_path = tmp_path / "old.sqlite3"
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        for n in range(1, 6):
            migration = _MIGRATIONS[n]
            if isinstance(migration, str):
                await db.executescript(migration)
            else:
                await migration(db)
        await db.execute("PRAGMA user_version = 5")
        await db.execute("INSERT INTO channels (id, name, retention_days, is_default) VALUES ('c', 'C', 30, 1)")
    # When it is opened with migration allowed
    store = await Store.open(db_path, migrate=True)
    try:
        channel = await store.channel("c")
        # Then the channel keeps its data and gets the default policy
        assert channel.name == "C" and channel.cleaning_policy == "remove"
    finally:
        await store.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in conn.execute("PRAGMA table_info(files)")}
        assert {"sealed_cleaning", "original_of"} <= columns
