"""Proof of reporting in Debian's Chromium with JavaScript off, in each language: the landing page
shows the channel's key, the mailbox leads to the warning page, and only its form downloads the
proof, which then verifies. Pages are photographed into ./screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dropbox import proof, signing
from dropbox.config import LANGUAGES
from tests.support.chromium import browser, new_context, screenshot  # noqa: F401
from tests.support.live_server import LiveApps, live  # noqa: F401

WARNING = {
    "en": "Anyone who finds this file on your device learns that you made a report.",
    "da": "Alle, der finder denne fil på din enhed, kan se, at du har indgivet en indberetning.",
    "sv": "Den som hittar den här filen på din enhet får veta att du har lämnat en rapport.",
}
TEXT = {"en": "The tender was rigged.", "da": "Udbuddet var aftalt på forhånd.", "sv": "Upphandlingen var riggad."}


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_a_proof_downloads_after_the_warning_and_verifies(live: LiveApps, browser: Any,  # noqa: F811
                                                                lang: str, tmp_path: Path) -> None:
    context: Any = await new_context(browser)
    page = await context.new_page()
    base = live.whistleblower_url
    signer = live.services.signer

    # The landing page's "about this channel" shows the key's fingerprint
    await page.goto(f"{base}/{lang}/")
    assert signer.fingerprint in await page.inner_text("#about-channel + p + dl")
    await screenshot(page, f"proof_{lang}_01_landing")

    # A report with a file, then the mailbox
    await page.goto(f"{base}/{lang}/submit")
    await page.fill("#text", TEXT[lang])
    await page.set_input_files("#files", [{"name": "bilag.pdf", "mimeType": "application/pdf",
                                           "buffer": b"%PDF-1.4 " + b"7" * 3000}])
    await page.click("form.report-form button[type=submit]")
    receipt = (await page.inner_text("#receipt")).strip()
    await page.goto(f"{base}/{lang}/mailbox")
    await page.fill("#receipt", receipt)
    await page.click("form.login-form button")

    # The mailbox offers the proof only through the warning page
    await page.click(f"a[href='/{lang}/mailbox/proof']")
    assert page.url == f"{base}/{lang}/mailbox/proof"
    assert WARNING[lang] in " ".join((await page.inner_text("main")).split())
    await screenshot(page, f"proof_{lang}_02_warning")

    # Downloading it, with the report's text included
    await page.check("#proof-contents")
    async with page.expect_download() as download_info:
        await page.click("form.proof-form button[type=submit]")
    download = await download_info.value
    assert download.suggested_filename == "proof-of-reporting.txt"
    saved = tmp_path / "proof.txt"
    await download.save_as(saved)
    data = saved.read_bytes()
    verified = proof.verify(data, known_keys=signing.known_public_keys(live.config.data_dir))
    assert verified.facts.contents is not None and verified.facts.contents[0].text == TEXT[lang]
    assert re.sub(r"\D", "", receipt).encode() not in data
    await screenshot(page, f"proof_{lang}_03_after_download")
    await context.close()
