"""Oral reports (art. 9(2), 18(2)-(4)), driven over HTTP through both apps on one install: a
caseworker registers one with a recording, hands over the receipt, the reporter reads the minutes,
proposes a correction, approves the corrected version; an approval is never changed."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from dropbox import accounts, oral, statistics, storage
from dropbox.audit import AuditAction
from dropbox.ids import today
from dropbox.retention import purge_expired
from dropbox.sealing import TamperedData, parse_receipt
from dropbox.services import Services
from dropbox.storage import migrate_database, schema_version
from tests.support.caseworker_site import Agent, Site, serve_site, site_fixture, whistleblower_client  # noqa: F401
from tests.support.data_checks import all_bytes_under
from tests.support.domain import submit  # noqa: F401
from tests.support.forms import OrderedPart, csrf_in, ordered_form, visible_text
from tests.support.installs import STAFF, login, new_install  # noqa: F401
from tests.support.whistleblower_site import log_in

MINUTES_CANARY = "CANARY-oral-minutes-7f3e"
CORRECTION_CANARY = "CANARY-oral-correction-19bd"
VERSION2_CANARY = "CANARY-oral-version2-c4a0"
RECORDING = b"OggS\x00recorded-voice-" + b"\x01" * 5000
RECEIPT = re.compile(r'<p class="receipt-code" id="receipt">(.*?)</p>', re.S)


async def register(agent: Agent, *, minutes: str = f"The reporter said: {MINUTES_CANARY}", consent: str = "yes",
                   recording: bytes | None = RECORDING, medium: str = "phone",
                   consent_day: str | None = None) -> aiohttp.ClientResponse:
    fields: list[OrderedPart] = [
        ("csrf_token", agent.csrf), ("channel", "default"), ("medium", medium), ("minutes", minutes),
        ("consent", consent), ("consent_day", consent_day or today().isoformat())]
    if recording is not None:
        fields.append(("recording", ("call.ogg", recording)))
    return await agent.client.post("/en/oral", data=ordered_form(fields), allow_redirects=False)


def receipt_on(page: str) -> str:
    match = RECEIPT.search(page)
    assert match, "no receipt on the page"
    return re.sub(r"<[^>]+>|\s", "", match.group(1))


async def test_the_oral_flow_from_registration_to_an_approval_that_cannot_change(site: Site) -> None:
    alice = await site.signed_in("alice")
    assert "Register an oral report" in await alice.text("/en/reports")
    form = await alice.text("/en/oral")
    assert 'name="recording"' in form and "<script" not in form

    # Registered with a recording: the receipt is the POST's own page, shown once
    response = await register(alice)
    assert response.status == 200
    page = await response.text()
    receipt = receipt_on(page)
    report_id = report_on(page)
    assert parse_receipt(receipt) == receipt and len(receipt) == 24  # the web receipt's format
    assert "It is shown only this once" in page
    store = site.services.store
    assert response.headers.get("Location") is None and receipt not in str(response.url)
    # Nothing the caseworker can reach shows it again
    report_page = await alice.text(f"/en/reports/{report_id}")
    assert receipt not in report_page and receipt not in await alice.text("/en/reports")
    assert MINUTES_CANARY in report_page and "call.ogg" in report_page
    assert "Yes (answered on" in report_page and "Phone call" in report_page
    assert "Registered an oral report (Phone call)" in report_page
    assert "Published version 1 of the minutes" in report_page
    record = await store.oral_record(report_id)
    assert (record.medium, record.recording_consent, record.consent_day) == ("phone", True, today().isoformat())
    # The recording went the way of every caseworker file: sealed, downloadable by staff only
    (recording,) = await store.files(report_id)
    download = await alice.get(f"/en/reports/{report_id}/files/{recording.id}")
    assert download.status == 200 and await download.read() == RECORDING

    async with whistleblower_client(site) as client:
        inbox = await log_in(client, receipt)
        assert "Minutes of your oral report" in inbox
        assert (await client.get(f"/en/mailbox/files/{recording.id}", allow_redirects=False)).status == 404
        minutes = await (await client.get("/en/mailbox/minutes")).text()
        assert MINUTES_CANARY in minutes and "I have checked these minutes and agree" in minutes
        assert "<script" not in minutes
        csrf = csrf_in(minutes)

        # A correction of version 1 goes to the caseworkers, marked as such
        sent = await client.post("/en/mailbox/minutes/correct", allow_redirects=False, data={
            "csrf_token": csrf, "version": "1", "text": f"I said Tuesday, not Monday. {CORRECTION_CANARY}"})
        assert sent.status == 303
        assert "Your correction was sent" in await (await client.get(sent.headers["Location"])).text()
        report_page = await alice.text(f"/en/reports/{report_id}")
        assert CORRECTION_CANARY in report_page and "Correction of the minutes, version 1" in report_page

        # A forged token approves nothing
        forged = await client.post("/en/mailbox/minutes/approve",
                                   data={"csrf_token": "x" * 40, "version": "1", "agree": "yes"})
        assert forged.status in (400, 403)
        assert (await store.minutes_versions(report_id))[0].approved_day is None
        # Approving without ticking the box is refused; a bad version number too
        unticked = await client.post("/en/mailbox/minutes/approve", data={"csrf_token": csrf, "version": "1"})
        assert unticked.status == 400 and "Tick the box" in await unticked.text()
        nonsense = await client.post("/en/mailbox/minutes/approve",
                                     data={"csrf_token": csrf, "version": "x", "agree": "yes"})
        assert nonsense.status == 400

        # The caseworker publishes version 2; version 1 can no longer be approved or corrected
        published = await alice.post(f"/en/reports/{report_id}/minutes",
                                     {"after": "1", "text": f"The reporter said Tuesday. {VERSION2_CANARY}"})
        assert published.status == 303
        assert "Version 2 of the minutes was published" in await alice.text(f"/en/reports/{report_id}")
        stale = await alice.post(f"/en/reports/{report_id}/minutes", {"after": "1", "text": "another"})
        assert stale.status == 303
        assert "A colleague published another version meanwhile" in await alice.text(f"/en/reports/{report_id}")
        old = await client.post("/en/mailbox/minutes/approve",
                                data={"csrf_token": csrf, "version": "1", "agree": "yes"})
        assert old.status == 409 and "can no longer be changed" in await old.text()

        # The reporter approves version 2: the day is recorded, and shown on both sides
        minutes = await (await client.get("/en/mailbox/minutes")).text()
        assert VERSION2_CANARY in minutes and "Version 2 (the latest)" in minutes
        approved = await client.post("/en/mailbox/minutes/approve", allow_redirects=False,
                                     data={"csrf_token": csrf, "version": "2", "agree": "yes"})
        assert approved.status == 303
        after = visible_text(await (await client.get(approved.headers["Location"])).text())
        assert "Your approval was recorded" in after and "You approved this version on" in after
        assert "Approve version 2" not in after  # no form for an approved version

        # A second approval or a correction of the approved version: a clear refusal, nothing changes
        again = await client.post("/en/mailbox/minutes/approve",
                                  data={"csrf_token": csrf, "version": "2", "agree": "yes"})
        assert again.status == 409 and "can no longer be changed" in await again.text()
        late = await client.post("/en/mailbox/minutes/correct",
                                 data={"csrf_token": csrf, "version": "2", "text": "one more thing"})
        assert late.status == 409 and "can no longer be changed" in await late.text()
        assert "You approved the latest version of the minutes." in await (
            await client.get("/en/mailbox/inbox")).text()

    versions = await store.minutes_versions(report_id)
    assert [(v.version, v.approved_day) for v in versions] == [(1, None), (2, today().isoformat())]
    assert len(await store.minutes_corrections(report_id)) == 1
    report_page = visible_text(await alice.text(f"/en/reports/{report_id}"))
    assert f"Version 2, on {today().isoformat()}" in report_page
    assert f"The reporter: Approved version 2 of the minutes, on {today().isoformat()}" in report_page
    # The audit entry is written once, at the caseworker's view, never at the reporter's hour
    await alice.text(f"/en/reports/{report_id}")
    assert [e.action for e in await store.report_audit(report_id)].count(AuditAction.MINUTES_APPROVED) == 1

    # The database itself refuses to change an approval or a version's text
    with sqlite3.connect(site.config.db_path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE oral_minutes SET approved_day = '2000-01-01' WHERE version = 2")
    with sqlite3.connect(site.config.db_path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE oral_minutes SET sealed_text = x'00' WHERE version = 1")

    # Minutes, corrections and versions are sealed: no canary anywhere on disk in the clear
    on_disk = all_bytes_under(site.config.data_dir)
    for canary in (MINUTES_CANARY, CORRECTION_CANARY, VERSION2_CANARY):
        assert not any(canary.encode() in data for data in on_disk.values()), canary
    assert not any(receipt.encode() in data for data in on_disk.values())


async def test_registration_refuses_a_recording_without_consent_and_keeps_what_was_typed(site: Site) -> None:
    alice = await site.signed_in("alice")
    refused = await register(alice, consent="no", minutes="Typed at length, not to be lost")
    assert refused.status == 400
    page = await refused.text()
    assert "only be kept if the reporter consented" in page and "Typed at length, not to be lost" in page
    empty = await register(alice, minutes="   ", recording=None)
    assert empty.status == 400 and "Write the minutes or the transcript." in await empty.text()
    future = await register(alice, recording=None, consent_day="2999-01-01")
    assert future.status == 400 and "not in the future" in await future.text()
    odd = await register(alice, recording=None, medium="telepathy")
    assert odd.status == 400
    forged = await alice.client.post("/en/oral", allow_redirects=False, data=ordered_form([
        ("csrf_token", "x" * 40), ("channel", "default"), ("medium", "phone"), ("minutes", "x")]))
    assert forged.status in (400, 403)
    # Nothing was stored by any of them
    assert await site.services.store.report_facts(year=today().year) == []
    # Without a recording, no consent is needed
    assert (await register(alice, consent="no", recording=None)).status == 200


async def test_only_a_member_of_the_channel_can_register_into_it(site: Site) -> None:
    carol = await site.signed_in("carol")
    store = site.services.store
    carol_id = (await store.caseworker_by_name("carol")).id
    await store.set_channel_member(channel_id="default", caseworker_id=carol_id, member=False)
    assert "default" not in await carol.text("/en/oral")
    refused = await register(carol, recording=None)
    assert refused.status == 400 and "Choose a channel you belong to" in await refused.text()


async def test_an_oral_report_counts_as_oral_also_after_deletion(site: Site) -> None:
    alice = await site.signed_in("alice")
    registered = await register(alice, recording=None)
    assert registered.status == 200
    web = await submit(site.services)
    store = site.services.store
    rows = await statistics.records(store=store, year=today().year)
    assert sorted(r.oral for r in rows) == [False, True]
    for report_id in (report_on(await registered.text()), web.report_id):
        await alice.post(f"/en/reports/{report_id}/retention", {"days": "1"})
        await alice.post(f"/en/reports/{report_id}/close", {"outcome": "No grounds"})
    assert await purge_expired(store=store, on=today() + dt.timedelta(days=2)) == 2
    kept = await statistics.records(store=store, year=today().year)
    assert sorted(r.oral for r in kept) == [False, True]
    assert await store.report_facts(year=today().year) == []  # both deleted: these are the kept records
    header, *lines = statistics.to_csv(kept).splitlines()
    assert header.endswith(",oral") and sorted(line.rsplit(",", 1)[1] for line in lines) == ["no", "yes"]


def report_on(page: str) -> str:
    """The report id from the receipt page's link to the report."""
    match = re.search(r'href="/en/reports/([0-9a-f]{32})"', page)
    assert match, "no link to the report"
    return match.group(1)


async def test_migration_8_keeps_every_report_and_adds_oral_reports(tmp_path: Path) -> None:
    # Given an install at schema 7 (the one before oral reports), with a web report that has a
    # message: made with today's code and taken back to what schema 7 had (no oral tables, and no
    # digest column of migration 9), since the code that wrote schema 7 is gone
    config = await new_install(tmp_path / "data", STAFF)
    async with Services.open(config) as services:
        before = await submit(services, text="from before the upgrade")
        await services.store.update_report(before.report_id, status="closed", closed_day="2026-01-05",
                                           outcome="No grounds")
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        for table in ("minutes_corrections", "oral_minutes", "oral_reports"):
            db.execute(f"DROP TABLE {table}")
        db.execute("ALTER TABLE files DROP COLUMN sealed_sent")
        db.execute("PRAGMA user_version = 7")
        db.commit()
    assert schema_version(config.db_path) == 7
    # When it is migrated
    assert await migrate_database(config.db_path) == (7, storage.SCHEMA_VERSION)
    # Then the report is all there, counts as a web report, and oral reports can be registered
    async with serve_site(config) as site:
        alice = await site.signed_in("alice")
        assert "from before the upgrade" in await alice.text(f"/en/reports/{before.report_id}")
        (record,) = await statistics.records(store=site.services.store, year=today().year)
        assert record.oral is False and record.outcome == "No grounds"
        registered = await register(alice, recording=None)
        assert registered.status == 200
        assert (await site.services.store.oral_record(report_on(await registered.text()))).medium == "phone"
    with contextlib.closing(sqlite3.connect(config.db_path)) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    assert {"oral_reports", "oral_minutes", "minutes_corrections", "oral_minutes_as_written"} <= tables


async def test_minutes_are_bound_to_their_report_and_version(site: Site) -> None:
    # Given an oral report with its minutes, and another report
    alice = await site.signed_in("alice")
    registered = await register(alice, recording=None)
    report_id = report_on(await registered.text())
    other = await submit(site.services)
    # When someone who can write to the database copies version 1's sealed text to version 2 of the
    # same report, and to the other report (a correction the caseworkers never published)
    with contextlib.closing(sqlite3.connect(site.config.db_path)) as raw, raw:
        raw.execute("INSERT INTO oral_minutes (report_id, version, caseworker_id, sealed_text, written_day)"
                    " SELECT report_id, 2, caseworker_id, sealed_text, written_day FROM oral_minutes")
        raw.execute("INSERT INTO oral_reports SELECT ?, medium, recording_consent, consent_day, caseworker_id"
                    " FROM oral_reports", (other.report_id,))
        raw.execute("INSERT INTO oral_minutes (report_id, version, caseworker_id, sealed_text, written_day)"
                    " SELECT ?, 1, caseworker_id, sealed_text, written_day FROM oral_minutes WHERE version = 1",
                    (other.report_id,))
    # Then neither opens under its new place; the original still does
    store = site.services.store
    versions = await store.minutes_versions(report_id)
    keys = await _report_key(site, report_id)
    assert oral.open_minutes(versions[0], report_key=keys) == f"The reporter said: {MINUTES_CANARY}"
    with pytest.raises(TamperedData):
        oral.open_minutes(versions[1], report_key=keys)
    (moved,) = await store.minutes_versions(other.report_id)
    with pytest.raises(TamperedData):
        oral.open_minutes(moved, report_key=await _report_key(site, other.report_id))


async def _report_key(site: Site, report_id: str) -> bytes:
    svc = site.services
    session = await login(svc.store, svc.staff_kdf, svc.config, "alice")
    return (await accounts.report_keys(store=svc.store, session=session, report_id=report_id)).report_key
