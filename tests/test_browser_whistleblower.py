"""The whistleblower's whole journey in Debian's Chromium with JavaScript disabled, in each language.

Submit a report with two files, read the receipt off the page, type it back, open the mailbox,
read a caseworker's reply and download its file, answer with a file, log out. The browser must
hold no cookie after submitting and none after logging out. Every page is photographed at desktop
and phone width into ./screenshots/, and on Danish and Swedish pages no visible text may be an
English message that has a translation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dropbox.config import LANGUAGES
from tests.support.chromium import Camera, UntranslatedCheck, browser, new_context, screenshot  # noqa: F401
from tests.support.domain import add_channel_with_question, caseworker_reply
from tests.support.live_server import LiveApps, live, serve_apps  # noqa: F401
from tests.support.whistleblower_site import KiB, make_install

#: What the person types and attaches, in the page's language (never an English message id).
CONTENT: dict[str, dict[str, Any]] = {
    "en": {"text": "On 3 May the invoices were altered before the audit.", "reply": "It began in March 2024."},
    "da": {"text": "Den 3. maj blev fakturaerne ændret før revisionen.", "reply": "Det begyndte i marts 2024."},
    "sv": {"text": "Den 3 maj ändrades fakturorna före revisionen.", "reply": "Det började i mars 2024."},
}
CASEWORKER = {"en": "Thank you. Who else knew about it?", "da": "Tak. Hvem vidste ellers besked?",
              "sv": "Tack. Vem mer kände till det?"}
FILES = [
    {"name": "faktura-2024.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 " + b"0" * 4000},
    {"name": "foto æøå.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff" + b"1" * 1200},
]
CASEWORKER_FILE = b"questions for you " * 100


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_whole_journey_without_javascript(live: LiveApps, browser: Any, lang: str,  # noqa: F811
                                                    tmp_path: Path) -> None:
    context: Any = await new_context(browser)
    page = await context.new_page()
    camera = Camera(page, lang)
    base = live.whistleblower_url
    content = CONTENT[lang]

    # The start page leads to the form
    await page.goto(f"{base}/{lang}/")
    await camera("landing")
    await page.click(f"main a[href='/{lang}/submit'] >> nth=0")
    await camera("submit-form")

    # An empty report is refused by the server with the form still there
    await page.click("form.report-form button[type=submit]")
    assert await page.locator(".error-summary").count() == 1
    await camera("submit-empty")

    # A report with two files
    await page.fill("#text", content["text"])
    await page.set_input_files("#files", FILES)
    await page.click("form.report-form button[type=submit]")
    receipt = (await page.inner_text("#receipt")).strip()
    assert re.fullmatch(r"\d{4}( \d{4}){5}", receipt), receipt
    assert await context.cookies() == []
    links = [await a.get_attribute("href") for a in await page.query_selector_all("a[href]")]
    assert links == ["#main"], "the receipt page offers no way away but its form"
    await camera("receipt")

    # Typing it back wrong shows it again; typing it right lets the person go
    await page.fill("#receipt-typed", "1234 1234 1234 1234" if receipt != "1234 1234 1234 1234" else "0")
    await page.click("form.confirm-form button")
    assert (await page.inner_text("#receipt")).strip() == receipt
    await camera("receipt-mistyped")
    await page.fill("#receipt-typed", receipt)
    await page.click("form.confirm-form button")
    assert await page.locator("#receipt").count() == 0
    assert await context.cookies() == []
    await camera("submitted")

    # A caseworker answers with a file
    await caseworker_reply(live.services, receipt, CASEWORKER[lang], {"spørgsmål.txt": CASEWORKER_FILE})

    # The mailbox: a wrong code first, then the right one
    await page.click(f"main a[href='/{lang}/mailbox']")
    await camera("mailbox-login")
    await page.fill("#receipt", "0000 0000 0000 0000")
    await page.click("form.login-form button")
    assert await page.locator(".field-error").count() == 1
    await camera("mailbox-wrong-code")
    await page.fill("#receipt", receipt)
    await page.click("form.login-form button")
    (cookie,) = await context.cookies()
    assert cookie["name"] == "wb_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["expires"] == -1  # a browser-session cookie
    inbox = await camera("inbox")
    assert content["text"] in inbox and CASEWORKER[lang] in inbox
    assert "faktura-2024.pdf" in inbox and "foto æøå.jpg" in inbox

    # The caseworker's file downloads intact
    async with page.expect_download() as download_info:
        await page.click("a[download]")
    download = await download_info.value
    assert download.suggested_filename == "spørgsmål.txt"
    saved = tmp_path / "download"
    await download.save_as(saved)
    assert saved.read_bytes() == CASEWORKER_FILE

    # An answer with a file
    await page.fill("#reply-text", content["reply"])
    await page.set_input_files("#reply-files", [{"name": "tillæg.txt", "mimeType": "text/plain",
                                                 "buffer": b"more detail"}])
    await page.click("form.reply-form button")
    sent = await camera("inbox-sent")
    assert content["reply"] in sent and "tillæg.txt" in sent
    assert await page.locator(".notice").count() == 1

    # Logging out leaves nothing behind
    await page.click(".mailbox-head form.logout-form button")
    assert page.url == f"{base}/{lang}/"
    assert await context.cookies() == []
    await page.goto(f"{base}/{lang}/mailbox/inbox")
    assert page.url == f"{base}/{lang}/mailbox"
    await context.close()
    assert all(path.stat().st_size > 0 for path in camera.taken)


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_other_pages_and_errors_without_javascript(browser: Any, lang: str,  # noqa: F811
                                                            tmp_path: Path) -> None:
    # Given an install with small upload limits and a second channel that asks a question
    config = await make_install(tmp_path / "data")
    async with serve_apps(config) as apps:
        await add_channel_with_question(apps.services.store)
        context: Any = await new_context(browser)
        page = await context.new_page()
        camera = Camera(page, lang)
        base = apps.whistleblower_url

        # The choice of channel, then that channel's form with its question
        await page.goto(f"{base}/{lang}/submit")
        await camera("channels")
        await page.check("#channel-2")
        await page.click("form.channel-form button")
        assert page.url.endswith("?channel=hr")
        await camera("submit-with-question")

        # Files over the limit: a clear 413 page, the text still there
        await page.fill("#text", CONTENT[lang]["text"])
        await page.fill("#answer_where", "B2")
        await page.set_input_files("#files", [{"name": "stor.bin", "mimeType": "application/octet-stream",
                                               "buffer": b"\0" * (65 * KiB)}])
        async with page.expect_response(f"{base}/{lang}/submit") as response_info:
            await page.click("form.report-form button[type=submit]")
        assert (await response_info.value).status == 413
        assert await page.input_value("#text") == CONTENT[lang]["text"]
        await camera("submit-too-large")

        # A confirmation form that comes back unusable (as after a restart) explains what to do
        await page.set_input_files("#files", [])
        await page.click("form.report-form button[type=submit]")
        receipt = (await page.inner_text("#receipt")).strip()

        async def forged_token(route: Any) -> None:
            await route.continue_(post_data=f"receipt_token=stale&receipt={receipt.replace(' ', '')}")

        await page.route(f"{base}/{lang}/submit/confirm", forged_token)
        await page.fill("#receipt-typed", receipt)
        await page.click("form.confirm-form button")
        assert await page.locator("#receipt").count() == 0
        await camera("receipt-unusable")
        await page.unroute(f"{base}/{lang}/submit/confirm")

        # The login page after a session ended, and a page that does not exist
        await page.goto(f"{base}/{lang}/mailbox?ended=1")
        assert await page.locator(".notice").count() == 1
        await camera("mailbox-ended")
        await page.goto(f"{base}/{lang}/mailbox/nothing-here")
        await camera("not-found")
        assert await context.cookies() == []
        await context.close()


def test_the_untranslated_check_catches_an_english_message_on_a_danish_page() -> None:
    check = UntranslatedCheck("da")
    assert list(check.offenders("Din indberetning er sendt. Send report")) == ["Send report"]
    assert list(check.offenders("Each file can be at most 5 MB, and all files together at most 9 MB. "
                                "Remember to remove hidden information from files first."))
    assert not list(check.offenders("Hver fil må højst fylde 5 MB. Status: Ny"))
