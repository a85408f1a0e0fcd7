"""What cleaning tells the whistleblower, in Debian's Chromium with JavaScript disabled, per language.

A photo with a GPS position, camera serial and artist, and a PDF with an author, go in through
the form; the receipt page names what was found in each and that it was removed; the mailbox says
so again per file (the kinds, not the values). Screenshots at desktop and phone width go to
./screenshots/ (cleaning_<lang>_...), and the Danish and Swedish pages are checked for English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dropbox.config import LANGUAGES
from tests.support.chromium import Camera, browser, new_context  # noqa: F401
from tests.support.live_server import LiveApps, live  # noqa: F401
from tests.support.metadata_files import BUILDERS

#: The words each language uses (msgstr of "Author", "GPS position", "Camera", the cleaned line).
WORDS = {
    "en": ("Author: Artist PLANTzq", "GPS position", "Camera: Cam PLANTzq",
           "Cleaned: identifying metadata was removed."),
    "da": ("Forfatter: Artist PLANTzq", "GPS-position", "Kamera: Cam PLANTzq",
           "Renset: identificerende metadata blev fjernet."),
    "sv": ("Författare: Artist PLANTzq", "GPS-position", "Kamera: Cam PLANTzq",
           "Rensad: identifierande metadata togs bort."),
}


class CleaningCamera(Camera):
    async def __call__(self, name: str) -> str:
        return await super().__call__("cleaning-" + name)


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_findings_on_the_receipt_page_and_in_the_mailbox(live: LiveApps, browser: Any,  # noqa: F811
                                                                   lang: str, tmp_path: Path) -> None:
    photo_name, photo, _ = BUILDERS["jpeg"](tmp_path)
    pdf_name, pdf, _ = BUILDERS["pdf"](tmp_path)
    context: Any = await new_context(browser)
    page = await context.new_page()
    camera = CleaningCamera(page, lang)
    base = live.whistleblower_url

    # The form says that hidden information is removed
    await page.goto(f"{base}/{lang}/submit")
    await page.fill("#text", "x")
    await page.set_input_files("#files", [
        {"name": photo_name, "mimeType": "image/jpeg", "buffer": photo},
        {"name": pdf_name, "mimeType": "application/pdf", "buffer": pdf},
    ])
    await page.click("form.report-form button[type=submit]")

    # The receipt page lists, per file, what was found and that it was removed
    receipt = (await page.inner_text("#receipt")).strip()
    shown = await camera("receipt")
    author, gps, camera_word, cleaned = WORDS[lang]
    assert author in shown and gps in shown and camera_word in shown
    assert shown.count(cleaned) == 2
    assert await page.locator(".cleaning-list > li").count() == 2

    # The mailbox says it again per file, with the values (sealed under the whistleblower's own key)
    await page.fill("#receipt-typed", receipt)
    await page.click("form.confirm-form button")
    await page.goto(f"{base}/{lang}/mailbox")
    await page.fill("#receipt", receipt)
    await page.click("form.login-form button")
    inbox = await camera("inbox")
    assert inbox.count(cleaned) == 2 and gps in inbox
    assert author in inbox and camera_word in inbox
    await context.close()
    assert all(path.stat().st_size > 0 for path in camera.taken)
