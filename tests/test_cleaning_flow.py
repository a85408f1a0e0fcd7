"""Files without fingerprints, end to end: real files with planted metadata go in over HTTP through
the whistleblower app; the receipt page says what was found; the caseworker's download over HTTP
carries none of it (checked with exiftool and by searching the bytes).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData

from dropbox.cleaning import Policy
from dropbox.config import Config, MiB
from tests.support.caseworker_site import Site as StaffSite
from tests.support.caseworker_site import downloads, only_report_url, serve_site
from tests.support.cleaning import assert_downloads_clean, set_policy
from tests.support.forms import receipt_in, report_form, visible_text
from tests.support.installs import STAFF, new_install
from tests.support.live_server import AiohttpClient
from tests.support.metadata_files import BUILDERS, MARKER, exiftool_values, unpacked
from tests.support.whistleblower_site import Site, log_in, open_site

#: Findings as each language names them (the receipt page's words, not ids).
FOUND_WORDS = {"en": ("Author", "GPS position", "Camera"), "da": ("Forfatter", "GPS-position", "Kamera"),
               "sv": ("Författare", "GPS-position", "Kamera")}


@pytest.fixture(name="config")
async def config_fixture(tmp_path: Path) -> Config:
    return await new_install(tmp_path / "data", STAFF, max_file_bytes=8 * MiB, max_submission_bytes=32 * MiB,
                             max_files_per_submission=10)


@pytest.fixture(name="sites")
async def sites_fixture(aiohttp_client: AiohttpClient, config: Config) -> AsyncIterator[tuple[Site, StaffSite]]:
    async with open_site(aiohttp_client, config) as site, serve_site(config) as staff:
        yield site, staff


async def test_every_planted_value_is_gone_from_what_caseworkers_download(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, staff = sites
    # Given six real files with names, places and serial numbers planted in them
    built = [BUILDERS[kind](tmp_path) for kind in sorted(BUILDERS)]
    files = {name: data for name, data, _ in built}
    # When they are sent with a report over HTTP
    response = await site.client.post("/en/submit", data=report_form("see files", files=files))
    page = await response.text()
    assert response.status == 200, page
    receipt_in(page)
    # Then the receipt page lists, per file, what was found (with the values) and that it was removed
    text = visible_text(page)
    for word in FOUND_WORDS["en"]:
        assert word in text
    assert "Author: Artist PLANTzq" in text and "Organisation: Company PLANTzq" in text
    assert text.count("Cleaned: identifying metadata was removed.") == len(built)
    # And the caseworker's downloads carry none of the planted values
    await assert_downloads_clean(staff, files, tmp_path)


async def test_findings_are_shown_in_each_language(sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, _ = sites
    name, data, _ = BUILDERS["jpeg"](tmp_path)
    for lang, words in FOUND_WORDS.items():
        response = await site.client.post(f"/{lang}/submit", data=report_form("x", files={name: data}))
        assert response.status == 200
        text = visible_text(await response.text())
        for word in words:
            assert word in text, (lang, word)


async def test_the_mailbox_shows_what_was_removed_with_the_values(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, _ = sites
    name, data, planted = BUILDERS["docx"](tmp_path)
    response = await site.client.post("/en/submit", data=report_form("x", files={name: data}))
    receipt = receipt_in(await response.text())
    inbox = visible_text(await log_in(site.client, receipt))
    assert "Cleaned: identifying metadata was removed." in inbox
    # sealed under the whistleblower's own key (test_cleaning_records: no caseworker key opens them)
    assert f"Author: {planted[0]}" in inbox and f"Organisation: {planted[2]}" in inbox


async def test_a_file_that_cannot_be_cleaned_is_kept_and_flagged(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, staff = sites
    _, pdf, _ = BUILDERS["pdf"](tmp_path)
    truncated, unknown = pdf[: len(pdf) // 3], b"notes of " + MARKER.encode()
    response = await site.client.post("/en/submit", data=report_form("x", files={
        "cut.pdf": truncated, "notes.xyz": unknown}))
    page = visible_text(await response.text())
    assert response.status == 200
    assert "Not cleaned: this file type cannot be checked." in page
    assert "Not cleaned: the file could not be read" in page
    got = await downloads(staff, await only_report_url(staff))
    # kept exactly as sent, never lost, never called cleaned
    assert got == {"cut.pdf": truncated, "notes.xyz": unknown}
    agent = await staff.signed_in("alice")
    report = visible_text(await agent.text(await only_report_url(staff)))
    assert report.count("Not cleaned") == 2


async def test_a_zip_bomb_and_a_gigabyte_of_zeros_get_an_answer(aiohttp_client: AiohttpClient,
                                                                 tmp_path: Path) -> None:
    # Given an install that takes 1 GiB files but cleans only up to 16 MiB
    config = await new_install(tmp_path / "data", STAFF, max_file_bytes=1100 * MiB, max_submission_bytes=1200 * MiB,
                               clean_max_bytes=16 * MiB, file_chunk_bytes=1 * MiB)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("zeros.txt", "w", force_zip64=True) as member:
        for _ in range(200):
            member.write(bytes(MiB))
    zeros = tmp_path / "zeros.jpg"
    with open(zeros, "wb") as sparse:
        sparse.truncate(1024 * MiB)  # sparse: a gigabyte of zeros that costs no disk to build
    async with open_site(aiohttp_client, config) as site, serve_site(config) as staff:
        for name, path in (("bomb.zip", bomb), ("zeros.jpg", zeros)):
            with open(path, "rb") as upload:
                form = report_form("x")
                form._fields = [f for f in form._fields if f[0].get("name") != "files"]  # noqa: SLF001
                form.add_field("files", upload, filename=name, content_type="application/octet-stream")
                response = await site.client.post("/en/submit", data=form)
                page = visible_text(await response.text())
            assert response.status == 200, page
            assert "Not cleaned" in page
        agent = await staff.signed_in("alice")
        listing = await agent.text("/en/reports")
        assert len(set(re.findall(r'href="(/en/reports/[0-9a-f]{32})"', listing))) == 2


async def test_keep_original_keeps_both_and_opening_the_original_is_audited(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, staff = sites
    await set_policy(staff, Policy.KEEP_ORIGINAL)
    name, data, planted = BUILDERS["jpeg"](tmp_path)
    await site.client.post("/en/submit", data=report_form("x", files={name: data}))
    report_url = await only_report_url(staff)
    got = await downloads(staff, report_url)
    assert MARKER.encode() not in got[name]  # the normal link is the cleaned copy
    agent = await staff.signed_in("alice")
    page = await agent.text(report_url)
    originals = re.findall(r'href="(/en/reports/[0-9a-f]{32}/files/[0-9a-f]{32}/original)"', page)
    assert len(originals) == 1
    response = await agent.get(originals[0])
    assert response.status == 200 and await response.read() == data
    history = visible_text(await agent.text(report_url))
    assert "original" in history.lower()
    assert planted[0] not in visible_text(page)


async def test_whistleblower_chooses_unticked_sends_the_file_as_it_is(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, staff = sites
    await set_policy(staff, Policy.CHOOSE)
    form_page = await (await site.client.get("/en/submit")).text()
    assert 'name="clean" value="1" checked' in form_page
    name, data, _ = BUILDERS["png"](tmp_path)
    response = await site.client.post("/en/submit", data=report_form("x", files={name: data}))  # box not sent
    assert "you asked to send the file as it is" in visible_text(await response.text())
    got = await downloads(staff, await only_report_url(staff))
    assert got[name] == data


async def test_a_caseworkers_reply_file_reaches_the_whistleblower_cleaned(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    # Given a report, and a caseworker replying with a PDF that carries their name
    site, staff = sites
    response = await site.client.post("/en/submit", data=report_form("x"))
    receipt = receipt_in(await response.text())
    report_url = await only_report_url(staff)
    name, pdf, _ = BUILDERS["pdf"](tmp_path)
    agent = await staff.signed_in("alice")
    await agent.text(report_url)
    form = FormData(default_to_multipart=True)
    form.add_field("csrf_token", agent.csrf)
    form.add_field("text", "see attached")
    form.add_field("files", pdf, filename=name, content_type="application/octet-stream")
    sent = await agent.client.post(f"{report_url}/reply", data=form, allow_redirects=False)
    assert sent.status == 303
    # When the whistleblower downloads it from the mailbox
    inbox = await log_in(site.client, receipt)
    (link,) = re.findall(r'href="(/en/mailbox/files/[0-9a-f]{32})"', inbox)
    download = await site.client.get(link)
    assert download.status == 200
    # Then it carries none of the planted values
    copy = tmp_path / "reply.pdf"
    copy.write_bytes(await download.read())
    assert MARKER.encode() not in copy.read_bytes() and MARKER not in exiftool_values(copy)


async def send_from_mailbox(site: Site, inbox: str, files: dict[str, bytes], *, clean: bool) -> str:
    """Send `files` with a message from the mailbox page `inbox`, the box ticked or not; the
    inbox page it leads to."""
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', inbox)
    assert csrf
    form = FormData(default_to_multipart=True)
    form.add_field("csrf_token", csrf.group(1))
    form.add_field("text", "one more")
    if clean:
        form.add_field("clean", "1")
    for name, data in files.items():
        form.add_field("files", data, filename=name, content_type="application/octet-stream")
    sent = await site.client.post("/en/mailbox/reply", data=form)
    assert sent.status == 200
    return await sent.text()


async def test_a_file_sent_later_from_the_mailbox_is_cleaned(sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    site, staff = sites
    response = await site.client.post("/en/submit", data=report_form("x"))
    inbox = await log_in(site.client, receipt_in(await response.text()))
    # (on a "remove" channel there is nothing to choose: the form says what is done)
    assert 'name="clean"' not in inbox and "We remove hidden information" in visible_text(inbox)
    name, data, _ = BUILDERS["docx"](tmp_path)
    page = await send_from_mailbox(site, inbox, {name: data}, clean=False)
    assert "Cleaned: identifying metadata was removed." in visible_text(page)
    got = await downloads(staff, await only_report_url(staff))
    assert MARKER.encode() not in unpacked(got[name])


async def test_whistleblower_chooses_for_files_sent_from_the_mailbox_too(
        sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    # Given a "whistleblower chooses" channel and a report in it
    site, staff = sites
    await set_policy(staff, Policy.CHOOSE)
    response = await site.client.post("/en/submit", data=report_form("x"))
    inbox = await log_in(site.client, receipt_in(await response.text()))
    # Then the mailbox's form has the same box as the submission form, ticked
    assert 'name="clean" value="1" checked' in inbox
    assert "Remove hidden information from my files (recommended)" in visible_text(inbox)
    # When a file is sent with the box ticked, it is cleaned; unticked, it arrives as it was
    name, data, _ = BUILDERS["jpeg"](tmp_path)
    ticked = await send_from_mailbox(site, inbox, {name: data}, clean=True)
    assert "Cleaned: identifying metadata was removed." in visible_text(ticked)
    other, raw, _ = BUILDERS["png"](tmp_path)
    unticked = await send_from_mailbox(site, ticked, {other: raw}, clean=False)
    assert "Not cleaned: you asked to send the file as it is." in visible_text(unticked)
    got = await downloads(staff, await only_report_url(staff))
    assert MARKER.encode() not in got[name] and got[other] == raw


async def test_an_admin_sets_the_policy_of_a_channel(sites: tuple[Site, StaffSite]) -> None:
    # Given the default channel (remove, the default for every channel)
    _, staff = sites
    store = staff.services.store
    assert (await store.channel("default")).cleaning_policy == "remove"
    alice = await staff.signed_in("alice")
    edit = await alice.text("/en/admin/channels/default")
    assert '<option value="remove" selected>' in edit
    current = await store.channel("default")
    form = {"name": current.name, "description": current.description, "questions": "",
            "retention_days": str(current.retention_days), "cleaning_policy": "keep_original"}
    # When the admin chooses "keep original", Then it is stored and shown
    assert (await alice.post("/en/admin/channels/default", form)).status == 303
    assert (await store.channel("default")).cleaning_policy == "keep_original"
    assert '<option value="keep_original" selected>' in await alice.text("/en/admin/channels/default")
    # And a policy that does not exist is refused with a message, changing nothing
    assert (await alice.post("/en/admin/channels/default", {**form, "cleaning_policy": "none"})).status == 303
    assert 'class="error-message flash"' in await alice.text("/en/admin/channels/default")
    assert (await store.channel("default")).cleaning_policy == "keep_original"
