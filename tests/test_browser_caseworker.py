"""The caseworker app in a real Chromium with JavaScript off, against both apps on loopback.

The main test walks the issue's path: a whistleblower hands in a report with a file through the
whistleblower app; a caseworker signs in, finds it in the list, opens it, downloads the file
(bytes equal) and replies with a file; the whistleblower's mailbox then shows the reply. A second
test uses the list's filters, the report page's forms and the settings page (two-step login
set-up) in the browser, and saves a screenshot of every caseworker page in en, da and sv.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import pyotp
from babel.messages.pofile import read_po
from playwright.async_api import expect

from dropbox.ids import today
from dropbox.submissions import open_mailbox, read_mailbox
from tests.support.chromium import Camera, browser, new_context, screenshot  # noqa: F401
from tests.support.installs import PASSPHRASES
from tests.support.live_server import LiveApps, live  # noqa: F401

CATALOGUE = str(Path(__file__).resolve().parent.parent / "dropbox/locale/{lang}/LC_MESSAGES/caseworker.po")

def _catalogue(lang: str) -> dict[str, str]:
    with Path(CATALOGUE.format(lang=lang)).open("rb") as po:
        return {m.id: m.string for m in read_po(po) if isinstance(m.id, str) and m.id}


def _english_phrases(lang: str) -> list[str]:
    """English sentences of this app's catalogue that `lang` translates differently."""
    other = _catalogue(lang)
    return [msgid for msgid in _catalogue("en") if " " in msgid and "%(" not in msgid and "\n" not in msgid
            and other.get(msgid) and other[msgid] != msgid]


def _untranslated(lang: str) -> Callable[[str], list[str]]:
    """The English sentences of this app's catalogue left on a page in `lang` (none for en)."""
    english = _english_phrases(lang) if lang != "en" else []

    def left(text: str) -> list[str]:
        text = " ".join(text.split())
        return [phrase for phrase in english if phrase in text]
    return left


REPORT_TEXT = "The procurement unit splits contracts to stay under the tender threshold."
REPLY_TEXT = "Thank you. We have opened a case and will write again within three weeks."


async def _whistleblower_submits(page: object, apps: LiveApps, evidence: Path) -> str:
    await page.goto(f"{apps.whistleblower_url}/en/submit")  # type: ignore[attr-defined]
    await page.fill("textarea[name=text]", REPORT_TEXT)  # type: ignore[attr-defined]
    await page.set_input_files("input[type=file][name=files]", str(evidence))  # type: ignore[attr-defined]
    await page.click("form.report-form button[type=submit]")  # type: ignore[attr-defined]
    receipt = await page.inner_text("#receipt")  # type: ignore[attr-defined]
    return "".join(receipt.split())


async def _sign_in(page: object, apps: LiveApps, lang: str = "en", name: str = "alice") -> None:
    await page.goto(f"{apps.caseworker_url}/{lang}/login")  # type: ignore[attr-defined]
    await page.fill("#name", name)  # type: ignore[attr-defined]
    await page.fill("#passphrase", PASSPHRASES[name])  # type: ignore[attr-defined]
    await page.click("main button[type=submit]")  # type: ignore[attr-defined]
    await expect(page).to_have_url(f"{apps.caseworker_url}/{lang}/reports")  # type: ignore[arg-type]


async def test_caseworker_opens_downloads_and_answers_a_fresh_report(
    live: LiveApps, browser: object, tmp_path: Path  # noqa: F811 - the fixtures imported above
) -> None:
    evidence = tmp_path / "evidence.bin"
    evidence.write_bytes(os.urandom(300_000))
    attachment = tmp_path / "questions for you.txt"
    attachment.write_text("Could you say which year this started?\n")

    # Given a report a whistleblower just sent through the whistleblower app
    wb_context = await new_context(browser)
    wb = await wb_context.new_page()  # type: ignore[attr-defined]
    receipt = await _whistleblower_submits(wb, live, evidence)
    assert len(receipt) == 24 and receipt.isdigit()

    # When the caseworker signs in, the list shows it as new
    context = await new_context(browser)
    page = await context.new_page()  # type: ignore[attr-defined]
    await _sign_in(page, live)
    row = page.locator("table.reports tbody tr").first
    await expect(row).to_contain_text("New")
    await expect(page.locator("table.reports tbody tr")).to_have_count(1)

    # and opening it shows what was written, with the file
    await row.locator("a.report-link").click()
    await expect(page.locator("#h-report + .sealed-text")).to_have_text(REPORT_TEXT)
    await expect(page.locator(".facts")).to_contain_text("Opened")

    # Downloading the file gives back exactly the bytes handed in
    async with page.expect_download() as download_info:
        await page.click("text=evidence.bin")
    download = await download_info.value
    assert download.suggested_filename == "evidence.bin"
    assert Path(await download.path()).read_bytes() == evidence.read_bytes()

    # Replying with text and a file
    await page.fill("#reply-text", REPLY_TEXT)
    await page.set_input_files("#reply-files", str(attachment))
    await page.click("#reply button[type=submit]")
    await expect(page.locator(".flash")).to_contain_text("Your reply was sent.")
    await expect(page.locator("article.from-caseworker")).to_contain_text(REPLY_TEXT)
    await expect(page.locator(".facts")).to_contain_text("Done")  # acknowledged by the first reply

    # Then the whistleblower's mailbox shows the reply, in the app and in the store
    await wb.goto(f"{live.whistleblower_url}/en/mailbox")
    await wb.fill("#receipt", receipt)
    await wb.click("form.login-form button[type=submit]")
    await expect(wb.locator("main")).to_contain_text(REPLY_TEXT)
    await expect(wb.locator("main")).to_contain_text("questions for you.txt")
    svc = live.services
    access = await open_mailbox(store=svc.store, kdf=svc.public_kdf, install=svc.install, receipt_text=receipt)
    mailbox = await read_mailbox(store=svc.store, access=access, record_visit=False)
    assert [(m.author, m.text) for m in mailbox.messages] == [("caseworker", REPLY_TEXT)]
    assert [f.name for f in mailbox.messages[0].files] == ["questions for you.txt"]

    await screenshot(page, "caseworker_en_00_report-after-reply_desktop")
    await context.close()  # type: ignore[attr-defined]
    await wb_context.close()  # type: ignore[attr-defined]


PAGES = ("login", "reports", "report", "delete", "closed", "settings", "totp", "channels", "channel", "caseworkers",
         "caseworker_added", "audit", "outcomes", "statistics")


async def test_every_caseworker_page_works_without_javascript_in_each_language(
    live: LiveApps, browser: object, tmp_path: Path  # noqa: F811 - the fixtures imported above
) -> None:
    evidence = tmp_path / "Årsrapport 2025 (udkast).pdf"
    evidence.write_bytes(b"%PDF-1.4 draft")
    wb_context = await new_context(browser)
    wb = await wb_context.new_page()  # type: ignore[attr-defined]
    for _ in range(5):
        await _whistleblower_submits(wb, live, evidence)
    await wb_context.close()  # type: ignore[attr-defined]
    # Two of them arrived a while ago, so the list has deadlines to flag.
    async with live.services.store.transaction() as db:
        for days in (10, 100):
            await db.execute("UPDATE reports SET received_day = ? WHERE id = (SELECT id FROM reports"
                             " WHERE received_day = ? ORDER BY id LIMIT 1)",
                             ((today() - dt.timedelta(days=days)).isoformat(), today().isoformat()))
        # Three that stay fresh, one for each language to close
        async with db.execute("SELECT id FROM reports WHERE received_day = ? ORDER BY id LIMIT 3",
                              (today().isoformat(),)) as cur:
            to_close = [row[0] for row in await cur.fetchall()]
    taken: list[Path] = []

    for lang in ("en", "da", "sv"):
        context = await new_context(browser)
        page = await context.new_page()  # type: ignore[attr-defined]
        camera = Camera(page, lang, app="caseworker", untranslated=_untranslated(lang))
        await page.goto(f"{live.caseworker_url}/{lang}/login")
        await camera("login")
        await _sign_in(page, live, lang)

        # The list's filter form (a plain GET form)
        await page.select_option("#f-status", "new")
        await page.click("form.filters button[type=submit]")
        await expect(page).to_have_url(f"{live.caseworker_url}/{lang}/reports?status=new&sort=newest")
        await page.goto(f"{live.caseworker_url}/{lang}/reports")
        await expect(page.locator(".deadline-alert")).to_be_visible()
        await expect(page.locator("table.reports .badge.overdue")).to_have_count(3)
        await camera("reports")

        # The report page's forms: a note, a status change, retention
        await page.locator("a.report-link").first.click()
        await page.fill("#note-text", f"Internal note ({lang}): check the 2025 contracts.")
        await page.click("#notes button[type=submit]")
        await expect(page.locator("#notes article.note")).to_have_count(1 if lang == "en" else
                                                                         2 if lang == "da" else 3)
        await page.select_option("#status", "in_progress")
        await page.click("form[action$='/status'] button[type=submit]")
        await page.fill("#days", "120")
        await page.click("#retention button[type=submit]")
        await camera("report")
        report_url = page.url.split("#")[0]
        await page.goto(f"{report_url}/delete")
        await camera("delete")

        # Closing (art. 11(2)(e)): an outcome from the admin's list and a message to the mailbox;
        # each language closes another report
        await page.goto(f"{live.caseworker_url}/{lang}/reports/{to_close[('en', 'da', 'sv').index(lang)]}")
        await page.select_option("#outcome", index=1)
        await page.fill("#closing-message", f"Closing message ({lang}): the matter was referred.")
        await page.click("#close button[type=submit]")
        await expect(page.locator(".flash")).to_be_visible()
        await expect(page.locator("#close")).to_have_count(0)
        await expect(page.locator("article.from-caseworker").last).to_contain_text(f"Closing message ({lang})")
        await camera("closed")

        await page.goto(f"{live.caseworker_url}/{lang}/settings")
        await camera("settings")
        await page.click("form[action$='/settings/totp/start'] button[type=submit]")
        await expect(page.locator("img.qr")).to_be_visible()
        await camera("totp")
        if lang == "sv":  # set it up once (last: later sign-ins would need a code), from the key on the page
            seed = "".join((await page.inner_text("code.secret")).split())
            await page.fill("#code", pyotp.TOTP(seed).now())
            await page.click("main form button[type=submit]")
            await expect(page.locator(".flash")).to_contain_text("Tvåstegsinloggning är på")

        await page.goto(f"{live.caseworker_url}/{lang}/admin/channels")
        await camera("channels")
        await page.goto(f"{live.caseworker_url}/{lang}/admin/channels/default")
        await camera("channel")
        await page.goto(f"{live.caseworker_url}/{lang}/admin/caseworkers")
        await page.fill("#name", f"new-{lang}")
        await page.click("form[action$='/admin/caseworkers'] button.primary")
        await expect(page.locator("code.receipt-code")).to_be_visible()
        await camera("caseworker-added")
        await page.goto(f"{live.caseworker_url}/{lang}/admin/caseworkers")
        await camera("caseworkers")
        await page.goto(f"{live.caseworker_url}/{lang}/admin/audit")
        await camera("audit")
        await page.goto(f"{live.caseworker_url}/{lang}/admin/outcomes")
        await camera("outcomes")
        await page.goto(f"{live.caseworker_url}/{lang}/admin/statistics")
        await expect(page.locator("main table td.num").first).to_have_text("5")
        await camera("statistics")
        taken.extend(camera.taken)
        await context.close()  # type: ignore[attr-defined]

    assert len(taken) == 3 * 2 * len(PAGES)
    assert all(p.stat().st_size > 5000 for p in taken)
