"""What each sealed value is bound to (issue 10, L2): whoever can edit the database can delete rows,
but relabelling, moving or reordering one makes it fail to open (TamperedData), and a new row
cannot be passed off as an old one to escape the stronger binding."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator

import pytest

from dropbox import accounts, casework, oral
from dropbox.reports import open_file_key, open_file_name, open_file_size, open_message, open_note, open_reason
from dropbox.sealing import TamperedData
from tests.support.caseworker_site import Site
from tests.support.caseworker_site import site_fixture as site_fixture
from tests.support.domain import caseworker_reply, submit
from tests.support.installs import PASSPHRASES


@contextlib.contextmanager
def _edit(site: Site) -> Iterator[sqlite3.Connection]:
    """The attacker's tool: a plain connection to the database file, committing on the way out."""
    db = sqlite3.connect(site.config.db_path)
    try:
        with db:
            yield db
    finally:
        db.close()


async def _thread(site: Site) -> tuple[str, bytes, bytes]:
    """A report with a file, a whistleblower message and a caseworker reply with a file, a note."""
    report = await submit(site.services, files={"report.pdf": b"handed in"})
    await caseworker_reply(site.services, report.receipt, "first reply", {"reply.pdf": b"from us"})
    await caseworker_reply(site.services, report.receipt, "second reply", {"later.pdf": b"later"})
    session = await accounts.login(store=site.services.store, kdf=site.services.staff_kdf, config=site.config,
                                   name="alice", passphrase=PASSPHRASES["alice"])
    await casework.add_note(store=site.services.store, session=session, report_id=report.report_id, text="a note")
    keys = await accounts.report_keys(store=site.services.store, session=session, report_id=report.report_id)
    return report.report_id, keys.report_key, keys.staff_key


async def test_every_untouched_value_opens(site: Site) -> None:
    report_id, key, staff = await _thread(site)
    store = site.services.store
    assert [open_message(m, report_key=key) for m in await store.messages(report_id)] == ["first reply",
                                                                                        "second reply"]
    assert [open_note(n, staff_key=staff) for n in await store.notes(report_id)] == ["a note"]
    for f in await store.files(report_id):
        open_file_name(f, report_key=key), open_file_key(f, report_key=key), open_file_size(f, report_key=key)


async def test_a_message_relabelled_as_the_whistleblowers_does_not_open(site: Site) -> None:
    report_id, key, _ = await _thread(site)
    with _edit(site) as db:
        db.execute("UPDATE messages SET author = 'whistleblower' WHERE report_id = ? AND seq = 1", (report_id,))
    first = (await site.services.store.messages(report_id))[0]
    with pytest.raises(TamperedData):
        open_message(first, report_key=key)


async def test_messages_swapped_in_order_do_not_open(site: Site) -> None:
    report_id, key, _ = await _thread(site)
    with _edit(site) as db:  # swap the sequence numbers of the two replies (through negatives: UNIQUE)
        db.execute("UPDATE messages SET seq = -seq WHERE report_id = ?", (report_id,))
        db.execute("UPDATE messages SET seq = 3 + seq WHERE report_id = ?", (report_id,))
    for m in await site.services.store.messages(report_id):
        with pytest.raises(TamperedData):
            open_message(m, report_key=key)


async def test_a_file_moved_to_another_message_does_not_open(site: Site) -> None:
    report_id, key, _ = await _thread(site)
    first, second = await site.services.store.messages(report_id)
    with _edit(site) as db:
        db.execute("UPDATE files SET message_id = ? WHERE message_id = ?", (second.id, first.id))
    moved = [f for f in await site.services.store.files(report_id) if f.message_id == second.id]
    failures = 0
    for f in moved:
        with contextlib.suppress(TamperedData):
            open_file_name(f, report_key=key)
            continue
        failures += 1
    assert failures == 1  # the moved file; the second reply's own file still opens


async def test_a_file_moved_into_the_report_itself_does_not_open(site: Site) -> None:
    report_id, key, _ = await _thread(site)
    with _edit(site) as db:
        db.execute("UPDATE files SET message_id = NULL WHERE report_id = ? AND message_id IS NOT NULL",
                   (report_id,))
    files = await site.services.store.files(report_id)
    opened = [f for f in files if _opens(lambda f=f: open_file_key(f, report_key=key))]
    assert len(files) == 3 and len(opened) == 1  # only the file handed in with the report


async def test_a_changed_bucket_does_not_open(site: Site) -> None:
    report_id, key, _ = await _thread(site)
    with _edit(site) as db:
        db.execute("UPDATE files SET size = size * 2 WHERE report_id = ?", (report_id,))
    for f in await site.services.store.files(report_id):
        for opener in (open_file_name, open_file_key, open_file_size):
            with pytest.raises(TamperedData):
                opener(f, report_key=key)


async def test_a_note_given_to_another_author_does_not_open(site: Site) -> None:
    report_id, _, staff = await _thread(site)
    bob = await site.services.store.caseworker_by_name("bob")
    with _edit(site) as db:
        db.execute("UPDATE notes SET caseworker_id = ? WHERE report_id = ?", (bob.id, report_id))
    (note,) = await site.services.store.notes(report_id)
    with pytest.raises(TamperedData):
        open_note(note, staff_key=staff)


@pytest.mark.parametrize("table", ["messages", "notes", "files"])
async def test_a_new_row_passed_off_as_an_old_one_does_not_open(site: Site, table: str) -> None:
    """Version 1 (rows from before migration 4) binds less; a version-2 row relabelled as version 1
    is opened with version 1's associated data, which it was not sealed with."""
    report_id, key, staff = await _thread(site)
    with _edit(site) as db:
        db.execute(f"UPDATE {table} SET ad_version = 1 WHERE report_id = ?", (report_id,))  # noqa: S608
    store = site.services.store
    if table == "messages":
        rows = [lambda m=m: open_message(m, report_key=key) for m in await store.messages(report_id)]
    elif table == "notes":
        rows = [lambda n=n: open_note(n, staff_key=staff) for n in await store.notes(report_id)]
    else:
        rows = [lambda f=f: open_file_name(f, report_key=key) for f in await store.files(report_id)]
    assert rows and not any(_opens(open_row) for open_row in rows)


def _opens(opener: object) -> bool:
    try:
        opener()  # type: ignore[operator]
    except TamperedData:
        return False
    return True


async def _login(site: Site, name: str) -> accounts.CaseworkerSession:
    return await accounts.login(store=site.services.store, kdf=site.services.staff_kdf, config=site.config,
                                name=name, passphrase=PASSPHRASES[name])


async def test_a_reason_given_another_kind_or_author_does_not_open(site: Site) -> None:
    """A reason is bound to its report, id, kind and author (reports.seal_reason)."""
    report = await submit(site.services)
    session = await _login(site, "alice")
    store = site.services.store
    assert await casework.record_reason(store=store, session=session, report_id=report.report_id,
                                        kind="no_acknowledgement", text="the reporter declined it")
    keys = await accounts.report_keys(store=store, session=session, report_id=report.report_id)
    (reason,) = await store.reasons(report.report_id)
    assert open_reason(reason, staff_key=keys.staff_key) == "the reporter declined it"
    bob = await store.caseworker_by_name("bob")
    for column, value in (("kind", "extension"), ("caseworker_id", bob.id)):
        with _edit(site) as db:
            db.execute(f"UPDATE report_reasons SET {column} = ? WHERE id = ?", (value, reason.id))  # noqa: S608
        (changed,) = await store.reasons(report.report_id)
        with pytest.raises(TamperedData):
            open_reason(changed, staff_key=keys.staff_key)
        with _edit(site) as db:
            db.execute(f"UPDATE report_reasons SET {column} = ? WHERE id = ?",  # noqa: S608
                       (getattr(reason, column), reason.id))


async def test_minutes_passed_off_as_another_version_or_report_do_not_open(site: Site) -> None:
    """Each version's text is bound to its report and number (oral.seal_minutes); the trigger that
    keeps them as written is no defence against whoever can edit the file, the binding is."""
    session = await _login(site, "alice")
    services = site.services
    registration = oral.Registration(channel_id="default", medium="phone", minutes="version one",
                                     recording_consent=False, consent_day=dt.date(2026, 1, 1))
    made = [(await oral.register(store=services.store, kdf=services.staff_kdf, install=services.install,
                                 session=session, registration=registration,
                                 staged=services.blobs.stage(byte_budget=1, public=False))).report_id
            for _ in range(2)]
    first, other = made
    assert await oral.publish_version(store=services.store, session=session, report_id=first, after=1,
                                      text="version two") == 2
    keys = await accounts.report_keys(store=services.store, session=session, report_id=first)
    assert [oral.open_minutes(v, report_key=keys.report_key)
            for v in await services.store.minutes_versions(first)] == ["version one", "version two"]
    with _edit(site) as db:
        db.execute("DROP TRIGGER oral_minutes_as_written")
        # version 1's text put in as version 2 (and 2's as 1), and another report's version 1 moved in
        db.execute("UPDATE oral_minutes SET version = 10 + version WHERE report_id = ?", (first,))  # (UNIQUE)
        db.execute("UPDATE oral_minutes SET version = 13 - version WHERE report_id = ?", (first,))
        db.execute("UPDATE oral_minutes SET report_id = ?, version = 3 WHERE report_id = ?", (first, other))
    versions = await services.store.minutes_versions(first)
    assert len(versions) == 3
    for version in versions:
        with pytest.raises(TamperedData):
            oral.open_minutes(version, report_key=keys.report_key)
