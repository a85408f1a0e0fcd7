"""The report list, the report page and every action on it, over real HTTP."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import urllib.parse
from pathlib import Path

from dropbox.ids import today
from dropbox.submissions import open_mailbox, post_whistleblower_message, read_mailbox
from tests.support.caseworker_site import Agent, Site, serve_site, site_fixture  # noqa: F401
from tests.support.data_checks import chunk_files, leftover_staged
from tests.support.domain import chunks_of, submit  # noqa: F401
from tests.support.forms import ordered_form
from tests.support.installs import STAFF, new_install  # noqa: F401

CANARY = "CANARY-3c1d-caseworker"


async def _mailbox(site: Site, receipt: str) -> object:
    svc = site.services
    access = await open_mailbox(store=svc.store, kdf=svc.public_kdf, install=svc.install, receipt_text=receipt)
    return await read_mailbox(store=svc.store, access=access, record_visit=True)


async def test_list_shows_status_dates_unread_and_deadlines(tmp_path: Path) -> None:
    # Given a list that counts deadlines on 2 March 2026, whatever today's date
    on = dt.date(2026, 3, 2)
    async with serve_site(await new_install(tmp_path / "data", STAFF), today=lambda: on) as site:
        await _list_shows_status_dates_unread_and_deadlines(site, on)


async def test_the_report_page_counts_its_deadlines_on_the_apps_day(tmp_path: Path) -> None:
    # Given an app that counts deadlines on 2 March 2026 and a report received 10 days before
    on = dt.date(2026, 3, 2)
    async with serve_site(await new_install(tmp_path / "data", STAFF), today=lambda: on) as site:
        report = await submit(site.services)
        async with site.services.store.transaction() as db:
            await db.execute("UPDATE reports SET received_day = ? WHERE id = ?",
                             ((on - dt.timedelta(days=10)).isoformat(), report.report_id))
        alice = await site.signed_in("alice")
        # Then its page says so on that day, whatever the date the test runs on
        page = await alice.text(f"/en/reports/{report.report_id}")
        assert "10 days ago" in page


async def _list_shows_status_dates_unread_and_deadlines(site: Site, on: dt.date) -> None:
    svc = site.services
    fresh = await submit(svc)
    old = await submit(svc)
    async with svc.store.transaction() as db:
        for report, days in ((fresh, 0), (old, 10)):
            await db.execute("UPDATE reports SET received_day = ? WHERE id = ?",
                             ((on - dt.timedelta(days=days)).isoformat(), report.report_id))
    access = await open_mailbox(store=svc.store, kdf=svc.public_kdf, install=svc.install, receipt_text=old.receipt)
    await post_whistleblower_message(store=svc.store, access=access, text="more",
                                     staged=svc.blobs.stage(byte_budget=1000))
    alice = await site.signed_in("alice")

    page = await alice.text("/en/reports")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)[1:]
    assert fresh.report_id[:8] in rows[0] and old.report_id[:8] in rows[1]
    assert "New" in rows[0] and on.isoformat() in rows[0]
    assert "Overdue" in rows[1] and '<span class="badge unread">1</span>' in rows[1]
    assert ">10<" in rows[1]  # days since receipt
    assert "Receipt not acknowledged within 7 days: 1" in page
    assert "<script" not in page

    overdue = await alice.text("/en/reports?overdue=1&sort=urgent")
    assert old.report_id[:8] in overdue and fresh.report_id[:8] not in overdue
    opened = await alice.text("/en/reports?status=opened")
    assert "No reports match." in opened
    nonsense = await alice.get("/en/reports?status=%3Cx%3E&sort=drop&page=-4&channel=zz")
    assert nonsense.status == 200  # unknown filters fall back to the defaults


async def test_list_pages_through_many_reports(site: Site) -> None:
    for _ in range(51):
        await submit(site.services)
    alice = await site.signed_in("alice")
    first = await alice.text("/en/reports")
    assert "Page 1 of 2" in first and 'href="/en/reports?sort=newest&amp;page=2"' in first
    second = await alice.text("/en/reports?page=2")
    assert len(re.findall(r'class="report-link"', second)) == 1


async def test_report_page_shows_everything_decrypted_and_opens_the_report(site: Site) -> None:
    svc = site.services
    await svc.store.update_channel(await _channel_with_question(site))
    report = await submit(svc, text=f"{CANARY} <b>not markup</b>\nsecond line", files={"evidence.pdf": b"%PDF"},
                          answers={"q-when": "last Tuesday"}, contact="signal: +45 0000")
    alice = await site.signed_in("alice")

    page = await alice.text(f"/en/reports/{report.report_id}")
    assert f"{CANARY} &lt;b&gt;not markup&lt;/b&gt;\nsecond line" in page
    assert "When did it happen?" in page and "last Tuesday" in page
    assert "signal: +45 0000" in page
    assert "evidence.pdf" in page and "4\u00a0B" in page  # one size formatter for both apps (web/formats.py)
    assert (await svc.store.report(report.report_id)).status == "opened"
    assert "Read the report" in page  # its history
    assert "Hvornår skete det?" in await alice.text(f"/da/reports/{report.report_id}")


async def _channel_with_question(site: Site) -> object:
    from dropbox.storage import Channel

    channel = await site.services.store.channel("default")
    questions = [{"id": "q-when", "label": {"en": "When did it happen?", "da": "Hvornår skete det?"}}]
    return Channel(**{**channel.__dict__, "questions": json.dumps(questions)})


async def test_download_streams_the_decrypted_file_as_a_safe_attachment(site: Site) -> None:
    data = bytes(range(256)) * 5000  # more than one chunk of the test config
    name = "Ærlig \u202eexe.txt \"quoted\"; name\\..\\/../rapport.pdf"
    report = await submit(site.services, files={name: data})
    file_id = (await site.services.store.files(report.report_id))[0].id
    alice = await site.signed_in("alice")

    response = await alice.get(f"/en/reports/{report.report_id}/files/{file_id}")
    assert response.status == 200
    assert await response.read() == data
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    fallback = re.search(r'filename="([^"]*)"', disposition).group(1)  # type: ignore[union-attr]
    assert fallback.isascii() and "/" not in fallback and "\\" not in fallback
    encoded = re.search(r"filename\*=UTF-8''(\S+)$", disposition).group(1)  # type: ignore[union-attr]
    assert urllib.parse.unquote(encoded) == "rapport.pdf"
    audit = [e.action for e in await site.services.store.audit_log()]
    assert "file_downloaded" in audit


async def test_download_name_keeps_unicode_and_drops_bidi_controls(site: Site) -> None:
    report = await submit(site.services, files={"Ærlig \u202egnp.exe": b"x"})
    file_id = (await site.services.store.files(report.report_id))[0].id
    alice = await site.signed_in("alice")
    response = await alice.get(f"/en/reports/{report.report_id}/files/{file_id}")
    encoded = re.search(r"filename\*=UTF-8''(\S+)$", response.headers["Content-Disposition"]).group(1)  # type: ignore[union-attr]
    assert urllib.parse.unquote(encoded) == "Ærlig gnp.exe"


async def test_reply_with_files_reaches_the_mailbox_and_acknowledges(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    body = ordered_form([("csrf_token", alice.csrf), ("text", "Thank you, we are looking into it."),
                       ("feedback", "1"), ("files", ("reply.txt", b"attached reply")), ("files", ("", b""))])
    response = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=body, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/en/reports/{report.report_id}#thread"
    page = await alice.text(f"/en/reports/{report.report_id}")
    assert "Your reply was sent." in page and "Thank you, we are looking into it." in page

    mailbox = await _mailbox(site, report.receipt)
    (message,) = mailbox.messages  # type: ignore[attr-defined]
    assert message.text == "Thank you, we are looking into it."
    assert [f.name for f in message.files] == ["reply.txt"]
    stored = await site.services.store.report(report.report_id)
    assert stored.acknowledged_day == stored.feedback_day == today().isoformat()
    assert stored.status == "in_progress"


async def test_reply_refuses_a_token_that_is_not_the_first_part_before_storing_anything(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    body = ordered_form([("files", ("early.bin", b"x" * 100_000)), ("csrf_token", alice.csrf), ("text", "hi")])
    response = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=body, allow_redirects=False)
    assert response.status == 403
    assert leftover_staged(site.config) == [] and await site.services.store.messages(report.report_id) == []
    urlencoded = await alice.post(f"/en/reports/{report.report_id}/reply", {"text": "hi"})
    assert urlencoded.status == 400


async def test_empty_reply_is_refused_with_a_message(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    body = ordered_form([("csrf_token", alice.csrf), ("text", "   ")])
    response = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=body, allow_redirects=False)
    assert response.status == 303
    assert "Write a reply or choose a file" in await alice.text(f"/en/reports/{report.report_id}")
    assert leftover_staged(site.config) == []


async def test_too_large_reply_file_is_refused_and_discarded(tmp_path: object) -> None:
    from tests.support.caseworker_site import serve_site
    from tests.support.installs import STAFF, new_install

    config = await new_install(tmp_path / "data", STAFF, max_file_bytes=1000)  # type: ignore[operator]
    async with serve_site(config) as served:
        report = await submit(served.services)
        alice = await served.signed_in("alice")
        body = ordered_form([("csrf_token", alice.csrf), ("text", "x"), ("files", ("big.bin", b"x" * 5000))])
        response = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=body,
                                           allow_redirects=False)
        assert response.status == 413
        assert chunk_files(config) == set()
        assert await served.services.store.messages(report.report_id) == []


async def test_notes_are_shown_to_caseworkers_and_never_to_the_whistleblower(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    response = await alice.post(f"/en/reports/{report.report_id}/notes", {"text": CANARY})
    assert response.status == 303 and response.headers["Location"].endswith("#notes")
    assert CANARY in await alice.text(f"/en/reports/{report.report_id}")
    assert CANARY not in repr(await _mailbox(site, report.receipt))


async def test_status_deadline_and_retention_forms(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    path = f"/en/reports/{report.report_id}"
    assert (await alice.post(f"{path}/status", {"status": "in_progress"})).status == 303
    assert "The status is now: In progress" in await alice.text(path)
    assert (await alice.post(f"{path}/close", {"outcome": "No grounds"})).status == 303
    assert "The report is closed with the outcome: No grounds" in await alice.text(path)
    assert (await alice.post(f"{path}/status", {"status": "bogus"})).status == 400
    assert (await alice.post(f"{path}/status", {"status": "closed"})).status == 400
    assert (await alice.post(f"{path}/deadline", {"deadline": "acknowledgement"})).status == 303
    assert (await alice.post(f"{path}/retention", {"days": "10"})).status == 303
    page = await alice.text(path)
    expected = (today() + dt.timedelta(days=10)).isoformat()
    assert f"The report will be deleted on {expected}" in page
    assert (await alice.post(f"{path}/retention", {"days": "0"})).status == 303
    assert "between 1 and 3650" in await alice.text(path)
    stored = await site.services.store.report(report.report_id)
    assert (stored.status, stored.acknowledged_day, stored.expires_day) == ("closed", today().isoformat(), expected)


async def test_grant_offers_colleagues_and_hands_the_report_over(site: Site) -> None:
    from tests.support.domain import only_for

    channel = await only_for(site.services, "alice")
    report = await submit(site.services, channel_id=channel, text="handed over")
    alice = await site.signed_in("alice")
    bob = await site.signed_in("bob")
    assert (await bob.get(f"/en/reports/{report.report_id}")).status == 404

    page = await alice.text(f"/en/reports/{report.report_id}")
    bob_id = (await site.services.store.caseworker_by_name("bob")).id
    assert f'<option value="{bob_id}">bob</option>' in page
    assert (await alice.post(f"/en/reports/{report.report_id}/grant", {"caseworker": bob_id})).status == 303
    assert "handed over" in await bob.text(f"/en/reports/{report.report_id}")
    assert (await alice.post(f"/en/reports/{report.report_id}/grant", {"caseworker": "f" * 32})).status == 303
    assert "Choose a colleague from the list." in await alice.text(f"/en/reports/{report.report_id}")


async def test_delete_needs_confirmation_then_removes_rows_and_file_contents(site: Site) -> None:
    report = await submit(site.services, files={"a.txt": b"a"})
    alice = await site.signed_in("alice")
    path = f"/en/reports/{report.report_id}/delete"
    confirm = await alice.text(path)
    assert "This cannot be undone." in confirm and 'name="confirm"' in confirm

    unconfirmed = await alice.post(path)
    assert unconfirmed.status == 303 and unconfirmed.headers["Location"] == path
    assert len(chunk_files(site.config)) == 1

    done = await alice.post(path, {"confirm": "yes"})
    assert done.status == 303 and done.headers["Location"] == "/en/reports"
    assert "The report was deleted." in await alice.text("/en/reports")
    assert chunk_files(site.config) == set()
    assert (await alice.get(f"/en/reports/{report.report_id}")).status == 404
    assert (await site.services.store._one("SELECT count(*) FROM files"))[0] == 0  # type: ignore[index]


async def test_pages_render_in_danish_and_swedish(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    for lang, word in (("da", "Indberetninger"), ("sv", "Rapporter")):
        for path in ("/reports", f"/reports/{report.report_id}", "/settings"):
            response = await alice.get(f"/{lang}{path}")
            text = await response.text()
            assert response.status == 200 and response.headers["Content-Language"] == lang, path
            assert html.escape(word) in text
