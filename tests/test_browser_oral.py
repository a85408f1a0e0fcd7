"""An oral report in a real Chromium with JavaScript off, in en, da and sv: the caseworker
registers it with a recording and reads the receipt off the page; the reporter logs in with that
receipt, reads the minutes, proposes a correction; the caseworker publishes version 2; the
reporter approves it, and both sides show the approval. Screenshots in ./screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from playwright.async_api import expect

from dropbox.ids import today
from tests.support.chromium import browser, new_context, screenshot  # noqa: F401
from tests.support.installs import PASSPHRASES
from tests.support.live_server import LiveApps, live  # noqa: F401

ORAL_CATALOGUE = Path(__file__).resolve().parent.parent / "dropbox/locale/{lang}/LC_MESSAGES/oral.po"
MINUTES = "Caller described invoices approved twice, first noticed on Monday."
CORRECTION = "It was Tuesday, and the invoices were approved three times."
VERSION_2 = "Caller described invoices approved three times, first noticed on Tuesday."


def _untranslated(lang: str, text: str) -> list[str]:
    """English sentences of the oral catalogue left on a da/sv page."""
    if lang == "en":
        return []
    with Path(str(ORAL_CATALOGUE).format(lang=lang)).open("rb") as po:
        catalogue = {m.id: m.string for m in read_po(po) if isinstance(m.id, str) and m.id}
    return [msgid for msgid, translated in catalogue.items()
            if " " in msgid and "%(" not in msgid and translated != msgid and msgid in text]


async def _look(page: object, lang: str, name: str) -> None:
    await screenshot(page, f"oral_{lang}_{name}")
    text = " ".join((await page.inner_text("body")).split())  # type: ignore[attr-defined]
    assert not _untranslated(lang, text), f"untranslated on {name}: {_untranslated(lang, text)}"


@pytest.mark.parametrize("lang", ["en", "da", "sv"])
async def test_the_reporter_corrects_and_approves_the_minutes_of_an_oral_report(
    live: LiveApps, browser: object, tmp_path: Path, lang: str  # noqa: F811 - the fixtures imported above
) -> None:
    recording = tmp_path / "call.ogg"
    recording.write_bytes(b"OggS" + bytes(20_000))

    # Given a caseworker who registers a phone report with its recording
    staff_context = await new_context(browser)
    staff = await staff_context.new_page()  # type: ignore[attr-defined]
    await staff.goto(f"{live.caseworker_url}/{lang}/login")
    await staff.fill("#name", "alice")
    await staff.fill("#passphrase", PASSPHRASES["alice"])
    await staff.click("main button[type=submit]")
    await staff.click(f"a[href='/{lang}/oral']")
    await staff.fill("#oral-minutes", MINUTES)
    await staff.check("#consent-yes")
    await staff.set_input_files("#oral-recording", str(recording))
    await _look(staff, lang, "01_register")
    await staff.click("#oral-form button[type=submit]")
    receipt = "".join((await staff.inner_text("#receipt")).split())
    assert len(receipt) == 24 and receipt.isdigit()
    await _look(staff, lang, "02_receipt")
    report_url = await staff.get_attribute("a.button[href*='/reports/']", "href")

    # When the reporter logs in with the receipt handed over, and reads the minutes
    wb_context = await new_context(browser)
    wb = await wb_context.new_page()  # type: ignore[attr-defined]
    await wb.goto(f"{live.whistleblower_url}/{lang}/mailbox")
    await wb.fill("#receipt", receipt)
    await wb.click("form.login-form button[type=submit]")
    await _look(wb, lang, "03_mailbox")
    await wb.click("#minutes a.button")
    await expect(wb.locator("main")).to_contain_text(MINUTES)
    await _look(wb, lang, "04_minutes")

    # and proposes a correction, which the caseworker sees marked and answers with version 2
    await wb.fill("#correction-text", CORRECTION)
    await wb.click("#correct button[type=submit]")
    await expect(wb.locator(".notice")).to_be_visible()
    await staff.goto(f"{live.caseworker_url}{report_url}")
    await expect(staff.locator("#thread")).to_contain_text(CORRECTION)
    await staff.fill("#minutes-text", VERSION_2)
    await staff.click("#minutes form button[type=submit]")
    await expect(staff.locator("#minutes-2")).to_contain_text(VERSION_2)

    # Then the reporter approves version 2, with the box ticked
    await wb.goto(f"{live.whistleblower_url}/{lang}/mailbox/minutes")
    await expect(wb.locator("#version-2")).to_contain_text(VERSION_2)
    await wb.check("#agree")
    await _look(wb, lang, "05_approve")
    await wb.click("#approve button[type=submit]")
    await expect(wb.locator(".notice")).to_be_visible()
    await expect(wb.locator("#approve")).to_have_count(0)  # nothing left to approve or correct
    await expect(wb.locator("#correct")).to_have_count(0)
    await _look(wb, lang, "06_approved")

    # and the caseworker's report page shows which version was approved, and on which day
    await staff.goto(f"{live.caseworker_url}{report_url}")
    await expect(staff.locator("#minutes .facts")).to_contain_text(today().isoformat())
    await expect(staff.locator("#minutes-2 .badge")).to_be_visible()
    await _look(staff, lang, "07_report")
    versions = await live.services.store.minutes_versions(report_url.rstrip("/").rsplit("/", 1)[1])
    assert [(v.version, v.approved_day) for v in versions] == [(1, None), (2, today().isoformat())]
    await staff_context.close()  # type: ignore[attr-defined]
    await wb_context.close()  # type: ignore[attr-defined]
