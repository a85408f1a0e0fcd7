"""Retention by state (dropbox/retention.py): open reports stay, closed ones go N days after
closing, capped by the country profile, and a legal hold blocks deletion. Driven over HTTP as a
caseworker; time moves by handing the purge the day it runs on, never by sleeping."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dropbox import channels, migrations, retention, storage
from dropbox.blobs import BlobStore
from dropbox.config import Config
from dropbox.ids import today
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.retention import purge_expired
from dropbox.services import Services
from dropbox.storage import Store, migrate_database, schema_version
from tests.support.caseworker_site import Agent, Site, serve_site, site_fixture  # noqa: F401
from tests.support.data_checks import chunk_files
from tests.support.domain import (
    hand_in,
    submit,  # noqa: F401
)
from tests.support.installs import STAFF, new_install  # noqa: F401


def days(n: int) -> dt.date:
    return today() + dt.timedelta(days=n)


@contextlib.asynccontextmanager
async def swedish_site(tmp_path: Path) -> AsyncIterator[Site]:
    config = await new_install(tmp_path / "data", STAFF, country="se")
    async with serve_site(config) as served:
        yield served


async def close(agent: Agent, report_id: str) -> None:
    assert (await agent.post(f"/en/reports/{report_id}/close", {"outcome": "No grounds"})).status == 303


async def exists(site: Site, report_id: str) -> bool:
    try:
        await site.services.store.report(report_id)
    except storage.NotFound:
        return False
    return True


async def test_an_open_report_idle_for_a_year_is_still_there(site: Site) -> None:
    # Given a report a caseworker opened and then left alone
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    await alice.text(f"/en/reports/{report.report_id}")
    # When the purge runs a year later, and ten years later
    assert await purge_expired(store=site.services.store, on=days(365)) == 0
    assert await purge_expired(store=site.services.store, on=days(3650)) == 0
    # Then it is still there, and the page says it is kept while open
    page = await alice.text(f"/en/reports/{report.report_id}")
    assert "Not while open; 90 days after closing." in page


async def test_a_closed_report_goes_retention_days_after_closing_and_reopening_stops_the_clock(site: Site) -> None:
    kept, closed = await submit(site.services), await submit(site.services)
    alice = await site.signed_in("alice")
    # A report closed and reopened counts as open again
    await close(alice, kept.report_id)
    assert (await alice.post(f"/en/reports/{kept.report_id}/status", {"status": "in_progress"})).status == 303
    assert (await site.services.store.report(kept.report_id)).closed_day is None
    await close(alice, closed.report_id)
    assert (await site.services.store.report(closed.report_id)).closed_day == today().isoformat()
    assert f"Deleted automatically on {days(90).isoformat()}." in await alice.text(f"/en/reports/{closed.report_id}")
    assert await purge_expired(store=site.services.store, on=days(90)) == 0
    assert await purge_expired(store=site.services.store, on=days(91)) == 1
    assert not await exists(site, closed.report_id) and await exists(site, kept.report_id)
    assert (await alice.get(f"/en/reports/{closed.report_id}")).status == 404


async def test_a_closed_swedish_report_is_gone_after_730_days(tmp_path: Path) -> None:
    async with swedish_site(tmp_path) as site:
        # Given a Swedish install whose channel still says ten years (set before the profile)
        await site.services.store.update_channel(storage.Channel(
            id="default", name="Default", description="", questions="[]", retention_days=3650, is_default=True))
        report = await submit(site.services)
        alice = await site.signed_in("alice")
        # A caseworker cannot set more than 730 days on a report
        assert (await alice.post(f"/en/reports/{report.report_id}/retention", {"days": "731"})).status == 303
        assert "between 1 and 730" in await alice.text(f"/en/reports/{report.report_id}")
        # When the report is closed, its deletion day is capped at 730 days
        await close(alice, report.report_id)
        assert (await site.services.store.report(report.report_id)).expires_day == days(730).isoformat()
        assert await purge_expired(store=site.services.store, on=days(730)) == 0
        # Then it is gone after 730 days
        assert await purge_expired(store=site.services.store, on=days(731)) == 1
        assert not await exists(site, report.report_id)


async def test_a_swedish_channel_cannot_keep_reports_longer_than_730_days(tmp_path: Path) -> None:
    async with swedish_site(tmp_path) as site:
        alice = await site.signed_in("alice")
        await alice.post("/en/admin/channels", {"id": "long", "name": "Long", "retention_days": "731"})
        await alice.post("/en/admin/channels", {"id": "ok", "name": "Ok", "retention_days": "730"})
        assert {c.id for c in await site.services.store.channels()} == {"default", "ok"}
    form = channels.ChannelForm(name="x", description="", questions="", retention_days=731, make_default=False,
                                member_ids=frozenset())
    with pytest.raises(channels.InvalidChannel):
        channels._checked("x", form, (), False, 730)


async def test_a_held_report_stays_until_the_hold_is_lifted(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    path = f"/en/reports/{report.report_id}"
    await close(alice, report.report_id)
    # When a caseworker puts a legal hold on it
    assert (await alice.post(f"{path}/hold", {"hold": "1"})).status == 303
    page = await alice.text(path)
    assert "Never automatically: legal hold" in page and "Put a legal hold on the report" in page
    # Then no purge deletes it, however late
    assert await purge_expired(store=site.services.store, on=days(3650)) == 0
    assert await exists(site, report.report_id)
    # Until the hold is lifted (audited too)
    assert (await alice.post(f"{path}/hold", {"hold": "0"})).status == 303
    assert "Lifted the legal hold" in await alice.text(path)
    assert await purge_expired(store=site.services.store, on=days(3650)) == 1
    assert (await alice.post(f"{path}/hold", {"hold": "x"})).status in (400, 404)


async def test_reports_due_for_deletion_within_14_days_show_on_the_list_and_in_the_notice(site: Site) -> None:
    soon, later, held = [await submit(site.services) for _ in range(3)]
    alice = await site.signed_in("alice")
    for report, keep in ((soon, "14"), (later, "15"), (held, "1")):
        assert (await alice.post(f"/en/reports/{report.report_id}/retention", {"days": keep})).status == 303
        await close(alice, report.report_id)
    await alice.post(f"/en/reports/{held.report_id}/hold", {"hold": "1"})
    listing = await alice.text("/en/reports")
    assert "Closed reports deleted within 14 days: 1" in listing
    assert f"Deleted on {days(14).isoformat()}" in listing
    assert f"Deleted on {days(15).isoformat()}" not in listing
    # The e-mail notice counts the one due soon as something new for its caseworkers
    alice_id = (await site.services.store.caseworker_by_name("alice")).id
    await site.services.store.update_caseworker(alice_id, email="alice@example.org")
    tokens = await site.services.store.notice_tokens(deletion_cut=(today() + dt.timedelta(days=15)).isoformat())
    assert [t for cw, _, t in tokens if cw == alice_id and t.startswith("deletion:")] == [f"deletion:{soon.report_id}"]


async def test_a_whistleblower_reply_does_not_move_a_closed_reports_deletion(site: Site) -> None:
    from dropbox.submissions import open_mailbox, post_whistleblower_message

    report = await submit(site.services)
    alice = await site.signed_in("alice")
    await close(alice, report.report_id)
    before = (await site.services.store.report(report.report_id)).expires_day
    access = await open_mailbox(store=site.services.store, kdf=site.services.public_kdf,
                                install=site.services.install, receipt_text=report.receipt)
    staged = site.services.blobs.stage(byte_budget=site.services.config.max_submission_bytes)
    await post_whistleblower_message(store=site.services.store, access=access, text="one more thing", staged=staged)
    assert (await site.services.store.report(report.report_id)).expires_day == before


async def test_migration_7_deletes_nothing_and_turns_expiry_into_the_state_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an install made at schema 6 (the one before), with an open and a closed report both
    # past the old 90-days-after-activity expiry
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", 6)
    config = await new_install(tmp_path / "data", STAFF)
    async with Services.open(config) as services:
        idle, closed = await submit(services), await submit(services)
    db_path = config.db_path
    assert schema_version(db_path) == 6
    with contextlib.closing(sqlite3.connect(db_path)) as raw, raw:
        raw.execute("UPDATE reports SET last_activity_day = '2024-01-01', expires_day = '2024-03-31'")
        raw.execute("UPDATE reports SET status = 'closed' WHERE id = ?", (closed.report_id,))
    monkeypatch.undo()
    # When it is migrated and the purge runs on the day of the upgrade
    await migrate_database(db_path)
    store = await Store.open(db_path)
    try:
        assert await purge_expired(store=store) == 0
        # Then the open report never expires, and the closed one counts as closed on its last
        # activity but is kept at least 14 days past the upgrade
        assert (await store.report(idle.report_id)).closed_day is None
        old = await store.report(closed.report_id)
        assert old.closed_day == "2024-01-01" and old.expires_day == days(14).isoformat()
        assert not old.legal_hold
        assert await purge_expired(store=store, on=days(14)) == 0
        assert await purge_expired(store=store, on=days(3650)) == 1
        assert await store.report(idle.report_id)
    finally:
        await store.close()


async def test_the_purge_command_keeps_open_reports(tmp_path: Path) -> None:
    from tests.support.server_process import run_cli

    config = await new_install(tmp_path / "data", STAFF)
    async with Services.open(config) as services:
        report = await submit(services)
        await services.store.update_report(report.report_id, last_activity_day="2020-01-01", expires_day="2020-03-31")
    done = run_cli("purge", data=config.data_dir, check=False)
    assert done.returncode == 0, done.stderr
    assert "Purged 0 expired report(s)." in done.stdout


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


async def test_a_wal_checkpoint_held_up_after_a_purge_is_finished_by_the_next_purge_run(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: object
) -> None:
    # The checkpoint after a delete truncates the WAL, which still holds the images of the
    # deleted pages. A reader can hold it up; it used to be tried again only with the next
    # delete, which may never come. Now the next purge run tries again, deleting or not (and
    # the server runs it a minute later while it is owed).
    await hand_in(store, kdf, install, blobs, config, files={"a": b"1"})
    later = today() + dt.timedelta(days=config.default_retention_days + 1)
    async with store.transaction() as db:
        await db.execute("UPDATE reports SET status = 'closed', closed_day = ?, expires_day = ?",
                         (today().isoformat(), (later - dt.timedelta(days=1)).isoformat()))
    wal = Path(f"{config.db_path}-wal")
    reader = sqlite3.connect(config.db_path)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM reports").fetchall()  # a read snapshot held open
        assert await purge_expired(store=store, on=later) == 1  # its checkpoint waits out the busy timeout
        assert store.wal_holds_deleted and wal.stat().st_size > 0
    finally:
        reader.close()
    assert await purge_expired(store=store, on=later) == 0
    assert not store.wal_holds_deleted
    assert wal.stat().st_size == 0


# -- the rules themselves -------------------------------------------------------------------


def test_the_deletion_day_counts_from_closing_and_is_capped_by_the_country() -> None:
    closed = dt.date(2026, 1, 31)
    assert retention.deletion_day(closed, 30, max_days=3650) == "2026-03-02"
    assert retention.deletion_day(closed, 3650, max_days=730) == "2028-01-31"  # Sweden: at most 730
    assert retention.on_close(_report(retention_days=90), closed, max_days=730) == {
        "closed_day": "2026-01-31", "expires_day": "2026-05-01"}
    assert retention.on_reopen() == {"closed_day": None}


@pytest.mark.parametrize(("status", "held", "expires_in", "due"), [
    ("closed", False, 14, True),
    ("closed", False, 0, True),
    ("closed", False, 15, False),
    ("closed", True, 1, False),  # a legal hold
    ("open", False, 1, False),  # an open report never expires, whatever its row says
    ("in_progress", False, 1, False),
])
def test_due_soon_is_a_closed_unheld_report_deleted_within_14_days(
    status: str, held: bool, expires_in: int, due: bool
) -> None:
    on = dt.date(2026, 6, 1)
    expires = (on + dt.timedelta(days=expires_in)).isoformat()
    assert retention.due_soon(status, held, expires, on=on) is due


def test_a_configured_default_above_the_country_cap_keeps_the_cap(tmp_path: Path) -> None:
    from dropbox.config import config_for_tests

    swedish = config_for_tests(tmp_path, country="se", default_retention_days=3650)
    assert retention.max_retention_days(swedish) == 730
    assert retention.default_retention_days(swedish) == 730
    danish = config_for_tests(tmp_path, default_retention_days=100)
    assert retention.default_retention_days(danish) == 100


def _report(*, retention_days: int) -> storage.Report:
    return storage.Report(id="r" * 32, channel_id="default", status="open", received_day="2026-01-02",
                          last_activity_day="2026-01-02", retention_days=retention_days, expires_day="",
                          acknowledged_day=None, feedback_day=None, whistleblower_seen_day=None,
                          whistleblower_key=b"", sealed_body=b"")
