"""The caseworker's domain (dropbox/casework.py) without HTTP: real SQLite file, real blobs."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropbox import account_actions, accounts, casework
from dropbox.accounts import KeyUnavailable
from dropbox.blobs import BlobStore
from dropbox.casework import NotGranted, ReportFilter
from dropbox.config import Config
from dropbox.deadlines import ack_cut, add_months, deadlines, feedback_cut, feedback_due
from dropbox.ids import today
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.reports import open_note, thread
from dropbox.sealing import TamperedData
from dropbox.storage import Caseworker, Store
from dropbox.submissions import open_mailbox, read_mailbox
from tests.support.data_checks import CANARY, all_bytes_under, chunk_files, leftover_staged
from tests.support.domain import chunks_of, hand_in
from tests.support.installs import PASSPHRASES, login

D = dt.date


# --- deadlines ---------------------------------------------------------------------------------


def test_months_are_added_with_the_end_of_month_clamped() -> None:
    assert add_months(D(2026, 11, 30), 3) == D(2027, 2, 28)
    assert add_months(D(2027, 11, 30), 3) == D(2028, 2, 29)
    assert add_months(D(2026, 1, 15), 3) == D(2026, 4, 15)
    assert add_months(D(2026, 10, 31), 3) == D(2027, 1, 31)
    assert add_months(D(2026, 3, 31), -1) == D(2026, 2, 28)


@given(on=st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 1, 1)), back=st.integers(0, 200))
def test_the_sql_cut_off_days_agree_with_the_deadlines_exactly(on: dt.date, back: int) -> None:
    received = on - dt.timedelta(days=back)
    # Given a report received `back` days before `on`, the list's SQL calls it overdue
    # (received < cut) exactly when its deadline has passed (due < on).
    assert (received < feedback_cut(on)) == (feedback_due(received) < on)
    assert (received < ack_cut(on)) == (received + dt.timedelta(days=7) < on)


def test_deadlines_flag_overdue_only_while_open_and_not_done() -> None:
    on = D(2026, 6, 1)
    late = deadlines(received="2026-05-20", acknowledged=None, feedback=None, status="opened", on=on)
    assert late.days_since == 12
    assert late.acknowledgement.due == D(2026, 5, 27) and late.acknowledgement.overdue
    assert late.feedback.due == D(2026, 8, 20) and not late.feedback.overdue
    assert late.feedback.days_left == 80
    done = deadlines(received="2026-05-20", acknowledged="2026-05-21", feedback=None, status="opened", on=on)
    assert not done.acknowledgement.overdue and done.acknowledgement.done == D(2026, 5, 21)
    closed = deadlines(received="2025-01-01", acknowledged=None, feedback=None, status="closed", on=on)
    assert not closed.acknowledgement.overdue and not closed.feedback.overdue
    on_the_day = deadlines(received="2026-05-25", acknowledged=None, feedback=None, status="new", on=on)
    assert on_the_day.acknowledgement.due == on and not on_the_day.acknowledgement.overdue


# --- reading and writing -----------------------------------------------------------------------


@pytest.fixture
async def bob(store: Store, kdf: KdfPool, config: Config) -> Caseworker:
    return await accounts.add_caseworker(store=store, kdf=kdf, config=config, name="bob",
                                         passphrase=PASSPHRASES["bob"], channel_ids=[])


async def _report_id(store: Store, kdf: KdfPool, install: Install, receipt: str) -> str:
    return (await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)).report_id


async def test_reading_opens_a_new_report_once_and_marks_messages_read(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config, text="the account", files={"a.txt": b"A"})
    report_id = await _report_id(store, kdf, install, receipt)
    session = await login(store, kdf, config, "alice")

    view = await casework.read_report(store=store, session=session, report_id=report_id)
    assert view.body.text == "the account" and view.report.status == "opened"
    assert [f.name for f in view.files] == ["a.txt"]
    assert [c.name for c in view.granted] == ["alice"] and view.colleagues == []
    again = await casework.read_report(store=store, session=session, report_id=report_id)
    assert again.report.status == "opened"
    actions = [e.action for e in await store.report_audit(report_id)]
    assert actions.count("status_changed") == 1 and actions.count("viewed") == 1  # one view per hour


async def test_first_reply_acknowledges_and_reaches_the_mailbox(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    report_id = await _report_id(store, kdf, install, receipt)
    session = await login(store, kdf, config, "alice")
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    await staged.add("answer.pdf", chunks_of(b"%PDF reply"), max_file_bytes=config.max_file_bytes)

    await casework.post_reply(store=store, session=session, report_id=report_id, text="We are on it.",
                              staged=staged, gives_feedback=True)

    report = await store.report(report_id)
    assert report.acknowledged_day == report.feedback_day == today().isoformat()
    assert report.status == "in_progress"
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    mailbox = await read_mailbox(store=store, access=access, record_visit=True)
    (message,) = mailbox.messages
    assert (message.author, message.text, [f.name for f in message.files]) == (
        "caseworker", "We are on it.", ["answer.pdf"])
    assert leftover_staged(config) == []


async def test_an_empty_reply_is_refused_and_leaves_no_file(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    report_id = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config))
    session = await login(store, kdf, config, "alice")
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    with pytest.raises(casework.EmptyText):
        await casework.post_reply(store=store, session=session, report_id=report_id, text="  ", staged=staged)
    assert await store.messages(report_id) == []


async def test_notes_are_sealed_under_the_staff_key_the_whistleblower_does_not_hold(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    report_id = await _report_id(store, kdf, install, receipt)
    session = await login(store, kdf, config, "alice")
    await casework.add_note(store=store, session=session, report_id=report_id, text=CANARY)

    view = await casework.read_report(store=store, session=session, report_id=report_id)
    assert [n.text for n in view.notes] == [CANARY]
    # The whistleblower's key (from the receipt) opens everything of theirs, but not the note.
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    (note,) = await store.notes(report_id)
    with pytest.raises(TamperedData):
        open_note(note, staff_key=access.report_key)
    assert CANARY not in str(await read_mailbox(store=store, access=access, record_visit=False))


async def test_ungranted_and_unknown_reports_and_foreign_files_are_the_same_error(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker,
    bob: Caseworker,
) -> None:
    mine = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config,
                                                                files={"x": b"secret"}))
    alice_session = await login(store, kdf, config, "alice")
    await accounts.grant_report(store=store, granter=alice_session, report_id=mine, grantee_id=bob.id)
    other = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config,
                                                                 files={"y": b"other"}))
    bob_session = await login(store, kdf, config, "bob")
    other_file = (await store.files(other))[0].id

    for report_id in (other, "0" * 32):
        with pytest.raises(NotGranted):
            await casework.read_report(store=store, session=bob_session, report_id=report_id)
        with pytest.raises(NotGranted):
            await casework.set_status(store=store, session=bob_session, report_id=report_id, status="in_progress")
        with pytest.raises(NotGranted):
            await casework.close_report(store=store, session=bob_session, report_id=report_id, outcome="x",
                                        categories=["x"])
    # A file id of another report, asked for under a report bob may read.
    with pytest.raises(NotGranted):
        await casework.open_download(store=store, blobs=blobs, session=bob_session, report_id=mine,
                                     file_id=other_file)
    assert (await store.report(other)).status == "new"


async def test_a_wiped_session_cannot_open_anything(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    report_id = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config))
    session = await login(store, kdf, config, "alice")
    assert accounts.key_usable(session)
    session.wipe()
    assert not accounts.key_usable(session)
    with pytest.raises(KeyUnavailable):
        await casework.read_report(store=store, session=session, report_id=report_id)
    with pytest.raises(KeyUnavailable):
        await casework.add_note(store=store, session=session, report_id=report_id, text="x")


async def test_grant_hands_the_report_to_an_active_colleague_only(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker,
    bob: Caseworker,
) -> None:
    report_id = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config))
    session = await login(store, kdf, config, "alice")
    assert await casework.grant(store=store, session=session, report_id=report_id, grantee_id=bob.id)
    assert not await casework.grant(store=store, session=session, report_id=report_id, grantee_id=bob.id)
    view = await casework.read_report(store=store, session=await login(store, kdf, config, "bob"),
                                      report_id=report_id)
    assert view.body.text == "report text"
    await store.update_caseworker(bob.id, disabled=1)
    with pytest.raises(casework.UnknownColleague):
        await casework.grant(store=store, session=session, report_id=report_id, grantee_id=bob.id)
    with pytest.raises(casework.UnknownColleague):
        await casework.grant(store=store, session=session, report_id=report_id, grantee_id="f" * 32)


async def test_status_deadlines_and_retention(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    report_id = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config))
    session = await login(store, kdf, config, "alice")
    close = {"store": store, "session": session, "report_id": report_id, "categories": ["No grounds"]}
    with pytest.raises(casework.InvalidChoice):  # closing needs one of the outcome categories
        await casework.close_report(**close, outcome="Something else")
    assert await casework.close_report(**close, outcome="No grounds")
    assert not await casework.close_report(**close, outcome="No grounds")
    for status in ("new", "closed"):
        with pytest.raises(casework.InvalidChoice):
            await casework.set_status(store=store, session=session, report_id=report_id, status=status)
    assert await casework.record_deadline(store=store, session=session, report_id=report_id, which="feedback")
    assert not await casework.record_deadline(store=store, session=session, report_id=report_id, which="feedback")
    with pytest.raises(casework.InvalidChoice):
        await casework.record_deadline(store=store, session=session, report_id=report_id, which="other")
    expires = await casework.set_retention(store=store, session=session, report_id=report_id, days=400)
    assert expires == (today() + dt.timedelta(days=400)).isoformat()
    report = await store.report(report_id)
    assert (report.status, report.retention_days, report.expires_day) == ("closed", 400, expires)
    for days in (0, 3651):
        with pytest.raises(casework.InvalidChoice):
            await casework.set_retention(store=store, session=session, report_id=report_id, days=days)


async def test_delete_removes_rows_and_file_contents(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config, files={"a": b"1", "b": b"2"})
    report_id = await _report_id(store, kdf, install, receipt)
    keep = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config,
                                                                files={"c": b"3"}))
    session = await login(store, kdf, config, "alice")
    await casework.add_note(store=store, session=session, report_id=report_id, text="note")

    await casework.delete_report(store=store, session=session, report_id=report_id)

    assert chunk_files(config) == {(await store.files(keep))[0].id}
    db = sqlite3.connect(config.db_path)
    for table in ("reports", "files", "report_grants", "messages", "notes"):
        assert db.execute(f"SELECT count(*) FROM {table} WHERE {'id' if table == 'reports' else 'report_id'} = ?",  # noqa: S608
                          (report_id,)).fetchone()[0] == 0, table
    db.close()
    with pytest.raises(NotGranted):
        await casework.delete_report(store=store, session=session, report_id=report_id)
    with pytest.raises(Exception):  # noqa: B017 - the receipt opens nothing any more
        await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)


async def test_audit_log_never_holds_content(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config, text=CANARY, files={CANARY: CANARY.encode()})
    report_id = await _report_id(store, kdf, install, receipt)
    session = await login(store, kdf, config, "alice")
    await casework.read_report(store=store, session=session, report_id=report_id)
    await casework.add_note(store=store, session=session, report_id=report_id, text=CANARY)
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    await casework.post_reply(store=store, session=session, report_id=report_id, text=CANARY, staged=staged)
    download = await casework.open_download(store=store, blobs=blobs, session=session, report_id=report_id,
                                            file_id=(await store.files(report_id))[0].id)
    assert b"".join(download.chunks) == CANARY.encode()
    await account_actions.set_notice_address(store=store, session=session, address="alice@example.org")

    entries = await store.audit_log()
    assert {e.action for e in entries} >= {"viewed", "note_added", "replied", "acknowledged", "file_downloaded",
                                           "notice_address_changed"}
    assert all(len(e.hour) == len("2026-01-01 10:00") and e.hour.endswith(":00") for e in entries)
    text = repr(entries)
    assert CANARY not in text and "example.org" not in text
    # Nor anywhere on disk in the clear.
    for path, data in all_bytes_under(config.data_dir).items():
        assert CANARY.encode() not in data, path


async def test_list_filters_sorts_and_counts_overdue_reports(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    ids = [await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config))
           for _ in range(4)]
    on = D(2026, 3, 2)  # the day the list counts on, passed in: nothing depends on today's date
    received = {ids[0]: on, ids[1]: on - dt.timedelta(days=8), ids[2]: on - dt.timedelta(days=100),
                ids[3]: on - dt.timedelta(days=200)}
    async with store.transaction() as db:
        for report_id, day in received.items():
            await db.execute("UPDATE reports SET received_day = ? WHERE id = ?", (day.isoformat(), report_id))
        await db.execute("UPDATE reports SET acknowledged_day = ?, status = 'closed' WHERE id = ?",
                         (on.isoformat(), ids[3]))
    session = await login(store, kdf, config, "alice")

    newest = await casework.list_reports(store=store, session=session, filters=ReportFilter(), on=on)
    assert [r.summary.id for r in newest.rows] == ids
    assert (newest.ack_overdue, newest.feedback_overdue) == (2, 1)  # the closed one is never overdue
    urgent = await casework.list_reports(store=store, session=session, filters=ReportFilter(sort="urgent"), on=on)
    assert [r.summary.id for r in urgent.rows] == [ids[2], ids[1], ids[0], ids[3]]
    overdue = await casework.list_reports(store=store, session=session, filters=ReportFilter(overdue_only=True),
                                          on=on)
    assert {r.summary.id for r in overdue.rows} == {ids[1], ids[2]}
    closed = await casework.list_reports(store=store, session=session, filters=ReportFilter(status="closed"), on=on)
    assert [r.summary.id for r in closed.rows] == [ids[3]]
    paged = await casework.list_reports(store=store, session=session, filters=ReportFilter(page=2), page_size=3,
                                        on=on)
    assert (paged.total, paged.pages, [r.summary.id for r in paged.rows]) == (4, 2, [ids[3]])
    flags = {r.summary.id: r.deadlines for r in newest.rows}
    assert flags[ids[1]].acknowledgement.overdue and not flags[ids[1]].feedback.overdue
    assert flags[ids[2]].feedback.overdue


async def test_thread_helper_still_reads_what_casework_wrote(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    report_id = await _report_id(store, kdf, install, await hand_in(store, kdf, install, blobs, config))
    session = await login(store, kdf, config, "alice")
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    await casework.post_reply(store=store, session=session, report_id=report_id, text="hi", staged=staged)
    keys = await accounts.report_keys(store=store, session=session, report_id=report_id)
    _files, messages = await thread(store, report_id=report_id, report_key=keys.report_key)
    assert [(m.author, m.text) for m in messages] == [("caseworker", "hi")]


async def test_migration_2_upgrades_an_existing_install(config: Config) -> None:
    """An install made before the caseworker app (schema 1) gains the indexes when migrated."""
    from dropbox.migrations import _MIGRATIONS, SCHEMA_VERSION

    config.data_dir.mkdir(parents=True)
    raw = sqlite3.connect(config.db_path)
    raw.executescript(_MIGRATIONS[1] + "; PRAGMA user_version = 1;")
    raw.close()
    store = await Store.open(config.db_path, migrate=True)
    try:
        version = await store._one("PRAGMA user_version")
        indexes = {r[0] for r in await store._all("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert version[0] == SCHEMA_VERSION >= 2  # type: ignore[index]
        assert {"audit_by_report", "reports_listing"} <= indexes
        assert await store.integrity_check() == "ok"
    finally:
        await store.close()


async def test_only_the_messages_shown_are_marked_read(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    from dropbox.submissions import post_whistleblower_message

    receipt = await hand_in(store, kdf, install, blobs, config)
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    shown = await post_whistleblower_message(store=store, access=access, text="first",
                                             staged=blobs.stage(byte_budget=10))
    await post_whistleblower_message(store=store, access=access, text="arrived meanwhile",
                                     staged=blobs.stage(byte_budget=10))
    await store.mark_messages_read(access.report_id, [shown])
    assert [m.read for m in await store.messages(access.report_id)] == [True, False]
