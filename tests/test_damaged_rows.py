"""One damaged sealed row costs only itself (non-negotiable 5): the report page and the mailbox
show everything that opens and, in place of the damaged part, a line that names it; never the
calm 500 page, never the part shown as if whole, never the part silently left out.

Real install, real SQLite file, real crypto: a row is damaged by flipping one byte of its sealed
column with sqlite3 while the apps run, as a failing disk or someone with the database file would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
from pathlib import Path

import pytest

from dropbox import oral
from dropbox.catalogues import LOCALE_DIR, load_translations
from dropbox.submissions import open_mailbox, post_whistleblower_message
from dropbox.web.events import EVENTS
from tests.support.caseworker_site import Agent, Site, site_fixture, whistleblower_client  # noqa: F401
from tests.support.domain import caseworker_reply, submit
from tests.support.forms import csrf_in, visible_text
from tests.support.installs import login
from tests.support.whistleblower_site import log_in

MESSAGE_DAMAGED = "This message could not be opened: its stored copy is damaged. Please tell the operator."
NOTE_DAMAGED = "This note could not be opened: its stored copy is damaged. Please tell the operator."
MINUTES_DAMAGED = ("This version of the minutes could not be opened: its stored copy is damaged. "
                   "Please tell the operator.")
REPORT_DAMAGED = ("The report's own text and answers could not be opened: their stored copy is damaged. "
                  "Please tell the operator.")
FILE_DAMAGED = "This file could not be opened: its stored copy is damaged. Please tell the operator."
WB_MESSAGE_DAMAGED = ("This message could not be opened: its stored copy is damaged. "
                      "You can tell the caseworkers in a message.")
WB_MINUTES_DAMAGED = ("This version of the minutes could not be opened: its stored copy is damaged. "
                      "Do not approve it; tell the caseworkers in a correction or a message.")
WB_REPORT_DAMAGED = ("The text of your report could not be opened: its stored copy is damaged. "
                     "You can tell the caseworkers in a message.")
WB_FILE_DAMAGED = ("A file here could not be opened: its stored copy is damaged. "
                   "You can tell the caseworkers in a message.")


def damage(db: Path, table: str, column: str, where: str, *params: object) -> None:
    """Flip one bit in the middle of one row's sealed column, straight in the database file. The
    table's triggers (minutes are kept as written) are set aside for it, as a failing disk or
    someone with the file would: they guard the app's own writes, not the bytes on disk."""
    with contextlib.closing(sqlite3.connect(db)) as raw, raw:
        rows = raw.execute(f"SELECT {column} FROM {table} WHERE {where}", params).fetchall()
        assert len(rows) == 1, len(rows)  # exactly the one row meant
        broken = bytearray(rows[0][0])
        broken[len(broken) // 2] ^= 0x01
        triggers = raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                               (table,)).fetchall()
        for name, _sql in triggers:
            raw.execute(f'DROP TRIGGER "{name}"')
        raw.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (bytes(broken), *params))
        for _name, sql in triggers:
            raw.execute(sql)


async def oral_report(site: Site, minutes: str) -> oral.Registered:
    """An oral report registered by alice (a meeting, no recording), as the caseworker app does."""
    svc = site.services
    session = await login(svc.store, svc.staff_kdf, svc.config, "alice")
    return await oral.register(
        store=svc.store, kdf=svc.staff_kdf, install=svc.install, session=session,
        registration=oral.Registration(channel_id="default", medium="meeting", minutes=minutes,
                                       recording_consent=False, consent_day=dt.date(2026, 1, 5)),
        staged=svc.blobs.stage(byte_budget=svc.config.max_submission_bytes))


async def report_page(agent: Agent, report_id: str, lang: str = "en") -> str:
    """The caseworker's report page: shown (200), never the crash page."""
    response = await agent.get(f"/{lang}/reports/{report_id}")
    assert response.status == 200, response.status
    return visible_text(await response.text())


def damage_logged(caplog: pytest.LogCaptureFixture, part: str) -> list[str]:
    """The ERROR lines logged (at once, not counted) about a sealed `part` that did not open."""
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.ERROR and f"sealed {part} " in r.getMessage()]


# --- the caseworker's report page ----------------------------------------------------------------


async def test_a_damaged_message_is_named_and_the_rest_of_the_report_is_shown(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    # Given a report, two replies to it, and the first reply's sealed text damaged on disk
    report = await submit(site.services, text="REPORT-TEXT-canary", files={"evidence.txt": b"evidence"})
    await caseworker_reply(site.services, report.receipt, "FIRST-REPLY-canary")
    await caseworker_reply(site.services, report.receipt, "SECOND-REPLY-canary")
    damage(site.config.db_path, "messages", "sealed_body", "report_id = ? AND seq = 1", report.report_id)
    caplog.set_level(logging.INFO)
    alice = await site.signed_in("alice")

    # When a caseworker opens the report
    page = await report_page(alice, report.report_id)

    # Then everything that opens is there, and the damaged message is named in its place, once
    assert "REPORT-TEXT-canary" in page and "SECOND-REPLY-canary" in page and "evidence.txt" in page
    assert "FIRST-REPLY-canary" not in page
    assert page.count(MESSAGE_DAMAGED) == 1
    assert page.index(MESSAGE_DAMAGED) < page.index("SECOND-REPLY-canary")  # in its place in the thread
    # And one ERROR line names the kind of part and the report, nothing of its content
    (line,) = damage_logged(caplog, "message")
    assert report.report_id in line and "canary" not in caplog.text


async def test_a_damaged_message_from_the_whistleblower_is_not_marked_read(site: Site) -> None:
    # Given two messages from the whistleblower, the second damaged
    svc = site.services
    report = await submit(svc)
    access = await open_mailbox(store=svc.store, kdf=svc.public_kdf, install=svc.install, receipt_text=report.receipt)
    for text in ("FIRST-canary", "SECOND-canary"):
        await post_whistleblower_message(store=svc.store, access=access, text=text,
                                         staged=svc.blobs.stage(byte_budget=svc.config.max_submission_bytes))
    damage(site.config.db_path, "messages", "sealed_body", "report_id = ? AND seq = 2", report.report_id)
    alice = await site.signed_in("alice")

    # When a caseworker opens the report: the one that opened counts as read, the damaged one does not
    page = await report_page(alice, report.report_id)
    assert "FIRST-canary" in page and page.count(MESSAGE_DAMAGED) == 1
    assert [m.read for m in await svc.store.messages(report.report_id)] == [True, False]


async def test_a_damaged_note_is_named_and_the_other_notes_are_shown(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    for text in ("NOTE-ONE-canary", "NOTE-TWO-canary"):
        response = await alice.post(f"/en/reports/{report.report_id}/notes", {"text": text})
        assert response.status == 303
    damage(site.config.db_path, "notes", "sealed_body", "report_id = ? AND seq = 2", report.report_id)

    page = await report_page(alice, report.report_id)

    assert "NOTE-ONE-canary" in page and "what happened" in page
    assert "NOTE-TWO-canary" not in page
    assert page.count(NOTE_DAMAGED) == 1


async def test_damaged_minutes_are_named_and_the_other_version_is_shown(site: Site) -> None:
    # Given an oral report with two versions of its minutes, version 1 damaged
    registered = await oral_report(site, "MINUTES-ONE-canary")
    session = await login(site.services.store, site.services.staff_kdf, site.config, "alice")
    await oral.publish_version(store=site.services.store, session=session, report_id=registered.report_id, after=1,
                               text="MINUTES-TWO-canary")
    damage(site.config.db_path, "oral_minutes", "sealed_text", "report_id = ? AND version = 1", registered.report_id)
    alice = await site.signed_in("alice")

    page = await report_page(alice, registered.report_id)

    assert "MINUTES-TWO-canary" in page and "MINUTES-ONE-canary" not in page
    assert page.count(MINUTES_DAMAGED) == 1
    assert page.index("Version 2") < page.index("MINUTES-TWO-canary") < page.index("Version 1") \
        < page.index(MINUTES_DAMAGED)

    # And when the latest version is the damaged one, the correction form is not filled with anything
    damage(site.config.db_path, "oral_minutes", "sealed_text", "report_id = ? AND version = 2", registered.report_id)
    response = await alice.get(f"/en/reports/{registered.report_id}")
    assert response.status == 200
    html = await response.text()
    assert "canary" not in html and html.count(MINUTES_DAMAGED) == 2
    assert '<textarea id="minutes-text" name="text" rows="8" required></textarea>' in html


async def test_the_reports_own_text_damaged_still_shows_messages_files_and_status(site: Site) -> None:
    # Given a report with an answer and a file, a reply, and the report's own sealed text damaged
    report = await submit(site.services, text="REPORT-TEXT-canary", contact="CONTACT-canary",
                          files={"evidence.txt": b"evidence"})
    await caseworker_reply(site.services, report.receipt, "REPLY-canary")
    damage(site.config.db_path, "reports", "sealed_body", "id = ?", report.report_id)
    alice = await site.signed_in("alice")

    page = await report_page(alice, report.report_id)

    assert "REPORT-TEXT-canary" not in page and "CONTACT-canary" not in page
    assert page.count(REPORT_DAMAGED) == 1
    assert "REPLY-canary" in page and "evidence.txt" in page and "Status" in page and "Opened" in page


async def test_a_damaged_file_row_is_named_and_the_other_file_is_listed(site: Site) -> None:
    report = await submit(site.services, files={"first.txt": b"one", "second.txt": b"two"})
    damage(site.config.db_path, "files", "sealed_name", "report_id = ? AND seq = 0", report.report_id)
    alice = await site.signed_in("alice")

    page = await report_page(alice, report.report_id)

    assert "second.txt" in page and "first.txt" not in page
    assert page.count(FILE_DAMAGED) == 1


@pytest.mark.parametrize("lang", ["da", "sv"])
async def test_the_damaged_line_is_in_the_pages_language(site: Site, lang: str) -> None:
    report = await submit(site.services)
    await caseworker_reply(site.services, report.receipt, "REPLY-canary")
    damage(site.config.db_path, "messages", "sealed_body", "report_id = ?", report.report_id)
    alice = await site.signed_in("alice", lang=lang)

    page = await report_page(alice, report.report_id, lang)

    translated = load_translations(LOCALE_DIR, lang).gettext(MESSAGE_DAMAGED)
    assert translated != MESSAGE_DAMAGED and translated in page and MESSAGE_DAMAGED not in page


async def test_report_keys_that_do_not_open_get_a_page_saying_so_not_the_500(site: Site) -> None:
    # Given a report whose keys, sealed to alice, are damaged (bob's copy is whole)
    report = await submit(site.services, text="REPORT-TEXT-canary")
    alice_id = (await site.services.store.caseworker_by_name("alice")).id
    damage(site.config.db_path, "report_grants", "sealed_keys", "report_id = ? AND caseworker_id = ?",
           report.report_id, alice_id)
    alice = await site.signed_in("alice")

    # When alice opens it, or acts on it: a page that says what happened, 409 (see caseworker/routes.py)
    response = await alice.get(f"/en/reports/{report.report_id}")
    page = visible_text(await response.text())
    assert response.status == 409
    assert "This report could not be opened" in page and "canary" not in page
    note = await alice.post(f"/en/reports/{report.report_id}/notes", {"text": "a note"})
    assert note.status == 409

    # And a colleague whose copy of the keys is whole still reads it
    bob = await site.signed_in("bob")
    assert "REPORT-TEXT-canary" in await report_page(bob, report.report_id)


async def test_a_report_with_a_damaged_part_is_not_exported_as_if_whole(site: Site) -> None:
    report = await submit(site.services)
    await caseworker_reply(site.services, report.receipt, "REPLY-canary")
    damage(site.config.db_path, "messages", "sealed_body", "report_id = ?", report.report_id)
    alice = await site.signed_in("alice")

    response = await alice.post(f"/en/reports/{report.report_id}/export")

    assert response.status == 409
    assert response.headers["Content-Type"].startswith("text/html")
    assert "This report cannot be exported" in visible_text(await response.text())


# --- the whistleblower's mailbox -------------------------------------------------------------------


async def test_a_damaged_message_in_the_mailbox_is_named_and_the_rest_shown(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    report = await submit(site.services, text="REPORT-TEXT-canary")
    await caseworker_reply(site.services, report.receipt, "FIRST-REPLY-canary")
    await caseworker_reply(site.services, report.receipt, "SECOND-REPLY-canary")
    damage(site.config.db_path, "messages", "sealed_body", "report_id = ? AND seq = 2", report.report_id)
    caplog.set_level(logging.INFO)

    async with whistleblower_client(site) as client:
        page = visible_text(await log_in(client, report.receipt))  # (log_in checks the 200)

        assert "REPORT-TEXT-canary" in page and "FIRST-REPLY-canary" in page
        assert "SECOND-REPLY-canary" not in page
        assert page.count(WB_MESSAGE_DAMAGED) == 1
        # Nothing logged at the time of the visit; the day's count names the kind, not the report
        assert not damage_logged(caplog, "message")
        tally = client.server.app[EVENTS]
        day = tally.clock()
        tally.clock = lambda: day + dt.timedelta(days=1)
        tally.tick()
    daily = "\n".join(r.getMessage() for r in caplog.records if r.name == "dropbox.web.events")
    assert "1 x ERROR dropbox.reports: a sealed message of a report did not open" in daily
    assert report.report_id not in caplog.text and "canary" not in caplog.text
    # And only the message that opened counts as read by the whistleblower on the caseworkers' side
    read = [m.read for m in await site.services.store.messages(report.report_id)]
    assert read == [True, False]


async def test_the_reports_own_text_damaged_in_the_mailbox_still_shows_the_replies(site: Site) -> None:
    report = await submit(site.services, text="REPORT-TEXT-canary", files={"evidence.txt": b"evidence"})
    await caseworker_reply(site.services, report.receipt, "REPLY-canary", files={"answer.txt": b"answer"})
    damage(site.config.db_path, "reports", "sealed_body", "id = ?", report.report_id)
    damage(site.config.db_path, "files", "sealed_name", "report_id = ? AND message_id IS NULL", report.report_id)

    async with whistleblower_client(site) as client:
        page = visible_text(await log_in(client, report.receipt))

    assert "REPORT-TEXT-canary" not in page and "evidence.txt" not in page
    assert page.count(WB_REPORT_DAMAGED) == 1 and page.count(WB_FILE_DAMAGED) == 1
    assert "REPLY-canary" in page and "answer.txt" in page


async def test_damaged_minutes_in_the_mailbox_are_named_and_cannot_be_approved(site: Site) -> None:
    # Given an oral report whose only version of the minutes is damaged
    svc = site.services
    registered = await oral_report(site, "MINUTES-canary")
    damage(site.config.db_path, "oral_minutes", "sealed_text", "report_id = ?", registered.report_id)

    async with whistleblower_client(site) as client:
        inbox = await log_in(client, registered.receipt)
        # When the reporter reads the minutes
        response = await client.get("/en/mailbox/minutes")
        page = visible_text(await response.text())
        # Then the page names the damaged version, with no approval form, and a correction can be sent
        assert response.status == 200
        assert "canary" not in page and page.count(WB_MINUTES_DAMAGED) == 1
        assert "Approve the minutes" not in page and "Send the correction" in page
        # And approving it anyway is refused, and nothing is recorded
        refused = await client.post("/en/mailbox/minutes/approve", allow_redirects=False,
                                    data={"csrf_token": csrf_in(inbox), "version": "1", "agree": "yes"})
        assert refused.status == 409
        assert "could not be opened, so it cannot be approved" in visible_text(await refused.text())
    assert (await svc.store.minutes_versions(registered.report_id))[0].approved_day is None


async def test_no_proof_is_made_of_a_report_with_a_damaged_part(site: Site) -> None:
    # Given a whistleblower's later message damaged on disk
    svc = site.services
    report = await submit(svc)
    access = await open_mailbox(store=svc.store, kdf=svc.public_kdf, install=svc.install, receipt_text=report.receipt)
    await post_whistleblower_message(store=svc.store, access=access, text="LATER-canary",
                                     staged=svc.blobs.stage(byte_budget=svc.config.max_submission_bytes))
    damage(site.config.db_path, "messages", "sealed_body", "report_id = ?", report.report_id)
    async with whistleblower_client(site) as client:
        inbox = await log_in(client, report.receipt)
        # When they ask for a proof that includes their messages: refused with a page, no file
        response = await client.post("/en/mailbox/proof", allow_redirects=False,
                                     data={"csrf_token": csrf_in(inbox), "messages": "1", "contents": "1"})
        assert response.status == 409
        assert "Content-Disposition" not in response.headers
        assert "No proof can be made right now" in visible_text(await response.text())
