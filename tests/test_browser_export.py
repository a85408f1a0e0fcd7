"""Export in a real Chromium with JavaScript off: a caseworker ticks "include internal notes" on
the report page and presses Export (en, da, sv); the downloaded ZIP verifies, and its
report.html, opened from disk in a fresh browser, shows the case in that language while the
browser makes no request but the one for the file itself (Playwright's request events)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from playwright.async_api import expect

from dropbox import accounts, casework, export
from dropbox.signing import known_public_keys
from tests.support.chromium import browser, new_context, screenshot  # noqa: F401
from tests.support.domain import submit
from tests.support.installs import PASSPHRASES
from tests.support.live_server import LiveApps, live  # noqa: F401

REPORT_TEXT = "The depot signs for deliveries that never arrive."
NOTE_TEXT = "Ask the depot for the delivery notes of March."
#: A heading of report.html in each language (the caseworker app's own words for it).
NOTES_HEADING = {"en": "Internal notes", "da": "Interne notater", "sv": "Interna anteckningar"}
#: And a sentence only report.html has.
EXPORTED_ON = {"en": "Exported on", "da": "Eksporteret", "sv": "Exporterad"}


async def test_an_exported_report_renders_offline_and_fetches_nothing(
        live: LiveApps, browser: object, tmp_path: Path) -> None:  # noqa: F811 - the fixtures imported above
    # Given a report with a file and an internal note
    sent = await submit(live.services, text=REPORT_TEXT, files={"delivery <notes>.txt": b"18 pallets"})
    session = await accounts.login(store=live.services.store, kdf=live.services.staff_kdf, config=live.config,
                                   name="alice", passphrase=PASSPHRASES["alice"])
    await casework.add_note(store=live.services.store, session=session, report_id=sent.report_id, text=NOTE_TEXT)
    context = await new_context(browser)
    page = await context.new_page()  # type: ignore[attr-defined]
    await page.goto(f"{live.caseworker_url}/en/login")
    await page.fill("#name", "alice")
    await page.fill("#passphrase", PASSPHRASES["alice"])
    await page.click("main button[type=submit]")
    await expect(page).to_have_url(f"{live.caseworker_url}/en/reports")

    for lang in ("en", "da", "sv"):
        # When the caseworker exports it from the report page, with the internal notes
        await page.goto(f"{live.caseworker_url}/{lang}/reports/{sent.report_id}")
        await page.check("#export-notes")
        await screenshot(page, f"export_{lang}_01_report_page")
        async with page.expect_download() as download_info:
            await page.click("#export button[type=submit] >> nth=0")
        download = await download_info.value
        assert download.suggested_filename.startswith(f"report-{sent.report_id[:8]}-")
        saved = tmp_path / f"{lang}.zip"
        await download.save_as(saved)
        # Then the ZIP verifies against the install's keys
        check = export.check_export(saved, public_keys=known_public_keys(live.config.data_dir))
        assert check.valid, check.reason
        folder = tmp_path / lang
        with zipfile.ZipFile(saved) as archive:
            archive.extractall(folder)
        # and its page, opened from disk with JavaScript off, shows the case and asks for nothing
        viewer = await new_context(browser)
        offline = await viewer.new_page()  # type: ignore[attr-defined]
        requests: list[str] = []
        offline.on("request", lambda request, seen=requests: seen.append(request.url))
        url = (folder / "report.html").as_uri()
        await offline.goto(url)
        await offline.wait_for_load_state("networkidle")
        text = await offline.inner_text("body")
        assert REPORT_TEXT in text and NOTE_TEXT in text and "delivery <notes>.txt" in text
        assert NOTES_HEADING[lang] in text and EXPORTED_ON[lang] in text
        assert await offline.get_attribute("html", "lang") == lang
        assert requests == [url], requests
        await screenshot(offline, f"export_{lang}_02_report_html")
        await viewer.close()  # type: ignore[attr-defined]
    await context.close()  # type: ignore[attr-defined]
