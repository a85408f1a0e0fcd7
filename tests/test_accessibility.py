"""WCAG 2.1 AA, as Danish and Swedish public bodies must meet it (the EU web accessibility directive).

- axe-core (shipped inside the axe-playwright-python package; nothing is fetched at test time)
  scans every page of both apps in en, da and sv, error and confirmation pages included, in
  Debian's Chromium: zero violations.
- A keyboard-only walk of the submit and mailbox flow: on each page Tab reaches every control,
  in the order of the page, each with a visible focus indicator (its pixels change when it takes
  focus), and the whole flow is done with Tab, typing and Enter (files are chosen with the
  operating system's picker, which Playwright stands in for).

axe is JavaScript, so these contexts have JavaScript on. That changes nothing the pages do: they
carry no script and their Content-Security-Policy (default-src 'none') allows none. Scripts
evaluated here only read state (axe, document.activeElement); they never act on the page.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from dropbox.config import LANGUAGES
from tests.support.chromium import browser  # noqa: F401
from tests.support.domain import add_channel_with_question, caseworker_reply
from tests.support.installs import PASSPHRASES
from tests.support.live_server import LiveApps, serve_apps  # noqa: F401
from tests.support.whistleblower_site import KiB, make_install

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from axe_playwright_python.async_playwright import Axe

AXE = Axe()
TEXT = {"en": "The invoices were altered.", "da": "Fakturaerne blev ændret.", "sv": "Fakturorna ändrades."}


async def inspecting_context(chromium: Any) -> Any:
    """A Chromium context in which axe can run (see the module docstring)."""
    return await chromium.new_context(java_script_enabled=True, viewport={"width": 1280, "height": 900})


class Scanner:
    """Runs axe on the current page and keeps the names of the pages it scanned."""

    def __init__(self, page: Any, prefix: str) -> None:
        self.page = page
        self.prefix = prefix
        self.scanned: list[str] = []

    async def __call__(self, name: str) -> None:
        results = await AXE.run(self.page)
        assert results.violations_count == 0, f"{self.prefix} {name} ({self.page.url}): {results.generate_report()}"
        self.scanned.append(name)


@pytest.fixture
async def apps(tmp_path: Path) -> AsyncIterator[LiveApps]:
    """Small upload limits (a 413 page) and a second channel with a question (the channel choice)."""
    config = await make_install(tmp_path / "data")
    async with serve_apps(config) as live:
        await add_channel_with_question(live.services.store)
        yield live


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_every_whistleblower_page_passes_axe(apps: LiveApps, browser: Any, lang: str) -> None:  # noqa: F811
    context = await inspecting_context(browser)
    page = await context.new_page()
    scan = Scanner(page, f"whistleblower/{lang}")
    base = apps.whistleblower_url

    await page.goto(f"{base}/{lang}/")
    await scan("landing")
    await page.goto(f"{base}/{lang}/submit")
    await scan("channels")
    await page.check("#channel-2")
    await page.click("form.channel-form button")
    await scan("submit-form-with-question")
    await page.goto(f"{base}/{lang}/submit?channel=default")
    await page.click("form.report-form button[type=submit]")
    await expect(page.locator(".error-summary")).to_have_count(1)
    await scan("submit-errors")
    await page.fill("#text", TEXT[lang])
    await page.set_input_files("#files", [{"name": "big.bin", "mimeType": "application/octet-stream",
                                           "buffer": b"\0" * (65 * KiB)}])
    await page.click("form.report-form button[type=submit]")
    await scan("submit-too-large")
    await page.set_input_files("#files", [])
    await page.click("form.report-form button[type=submit]")
    receipt = "".join((await page.inner_text("#receipt")).split())
    await scan("receipt")
    await page.fill("#receipt-typed", "1")
    await page.click("form.confirm-form button")
    await scan("receipt-mistyped")

    async def stale_token(route: Any) -> None:  # as after a restart: the form can no longer be used
        await route.continue_(post_data=f"receipt_token=stale&receipt={receipt}")

    await page.route(f"{base}/{lang}/submit/confirm", stale_token)
    await page.click("form.confirm-form button")
    await scan("receipt-unusable")
    await page.unroute(f"{base}/{lang}/submit/confirm")

    await page.goto(f"{base}/{lang}/submit?channel=default")
    await page.fill("#text", TEXT[lang])
    await page.click("form.report-form button[type=submit]")
    receipt = "".join((await page.inner_text("#receipt")).split())
    await page.fill("#receipt-typed", receipt)
    await page.click("form.confirm-form button")
    await scan("submitted")

    await caseworker_reply(apps.services, receipt, "Thank you.", {"questions.txt": b"questions"})
    await page.goto(f"{base}/{lang}/mailbox")
    await scan("mailbox-login")
    await page.fill("#receipt", "0" * len(receipt))
    await page.click("form.login-form button")
    await scan("mailbox-wrong-receipt")
    await page.fill("#receipt", receipt)
    await page.click("form.login-form button")
    await scan("inbox")
    await page.click("form.reply-form button")
    await scan("inbox-empty-reply")
    await page.fill("#reply-text", TEXT[lang])
    await page.click("form.reply-form button")
    await expect(page.locator(".notice")).to_have_count(1)
    await scan("inbox-sent")
    await page.goto(f"{base}/{lang}/mailbox/proof")
    await scan("proof-warning")
    await page.goto(f"{base}/{lang}/mailbox/inbox")
    await page.click(".mailbox-head form.logout-form button")
    await page.goto(f"{base}/{lang}/mailbox?ended=1")
    await scan("mailbox-ended")
    await page.goto(f"{base}/{lang}/nothing-here")
    await scan("not-found")
    await context.close()
    assert len(scan.scanned) == 17


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_every_caseworker_page_passes_axe(apps: LiveApps, browser: Any, lang: str) -> None:  # noqa: F811
    # Given a report to look at
    context = await inspecting_context(browser)
    page = await context.new_page()
    await page.goto(f"{apps.whistleblower_url}/en/submit?channel=default")
    await page.fill("#text", TEXT[lang])
    await page.click("form.report-form button[type=submit]")

    scan = Scanner(page, f"caseworker/{lang}")
    base = f"{apps.caseworker_url}/{lang}"
    await page.goto(f"{base}/login")
    await scan("login")
    await page.fill("#name", "alice")
    await page.fill("#passphrase", "not the passphrase")
    await page.click("main button[type=submit]")
    await scan("login-failed")
    await page.fill("#name", "alice")
    await page.fill("#passphrase", PASSPHRASES["alice"])
    await page.click("main button[type=submit]")
    await page.goto(f"{base}/reports")
    await scan("reports")
    await page.locator("a.report-link").first.click()
    await scan("report")
    report_url = page.url.split("#")[0]
    await page.fill("#reply-text", "Thank you.")
    await page.click("#reply button[type=submit]")
    await scan("report-replied")
    await page.goto(f"{report_url}/delete")
    await scan("delete")
    await page.goto(f"{base}/settings")
    await scan("settings")
    await page.click("form[action$='/settings/totp/start'] button[type=submit]")
    await scan("totp")
    for path, name in (("admin/channels", "channels"), ("admin/channels/default", "channel"),
                       ("admin/caseworkers", "caseworkers"), ("admin/audit", "audit")):
        await page.goto(f"{base}/{path}")
        await scan(name)
    await page.goto(f"{base}/admin/caseworkers")
    await page.fill("#name", f"new-{lang}")
    await page.click("form[action$='/admin/caseworkers'] button.primary")
    await scan("caseworker-added")
    await page.goto(f"{base}/nothing-here")
    await scan("not-found")
    await context.close()
    assert len(scan.scanned) == 14


async def test_the_scan_finds_a_violation_when_there_is_one(browser: Any) -> None:  # noqa: F811
    # The scanner is not vacuous: an unlabelled field and an image without text are reported.
    context = await inspecting_context(browser)
    page = await context.new_page()
    await page.set_content('<!doctype html><html lang="en"><title>t</title><main>'
                           '<input type="text"><img src="data:," width="5" height="5"></main></html>')
    results = await AXE.run(page)
    assert {violation["id"] for violation in results.response["violations"]} >= {"label", "image-alt"}
    await context.close()


# -- keyboard only ------------------------------------------------------------------------------

#: What can take focus on these pages.
_CONTROLS = "a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]"

#: A path naming an element uniquely (tag and position under each ancestor).
_PATH_OF = """e => { const parts = [];
  for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
    let i = 1; for (let s = n.previousElementSibling; s; s = s.previousElementSibling) i++;
    parts.unshift(n.tagName.toLowerCase() + ':' + i);
  }
  return parts.join('>'); }"""


async def _focused(page: Any) -> str | None:
    return await page.evaluate(f"(() => {{ const e = document.activeElement;"
                               f" return e && e !== document.body ? ({_PATH_OF})(e) : null; }})()")


async def _controls(page: Any) -> list[str]:
    return await page.evaluate(f"Array.from(document.querySelectorAll({_CONTROLS!r}))"
                               f".filter(e => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length)"
                               f".map({_PATH_OF})")


async def _focus_ring(page: Any) -> dict[str, float]:
    """The focused element's box in page coordinates, with room for an outline around it."""
    box = await page.evaluate("(() => { const r = document.activeElement.getBoundingClientRect(); return"
                              " {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()")
    pad = 6
    return {"x": max(box["x"] - pad, 0), "y": max(box["y"] - pad, 0),
            "width": box["width"] + 2 * pad, "height": box["height"] + 2 * pad}


async def walk_tabs(page: Any, where: str) -> list[str]:
    """Press Tab from the top of the page until focus leaves it; each stop must show its focus.

    Focus is visible if the pixels around the element differ while it has focus and once focus
    has moved on (an outline, a colour change). Returns the stops in order.
    """
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    stops: list[str] = []
    previous: tuple[dict[str, float], bytes] | None = None
    for _ in range(60):
        await page.keyboard.press("Tab")
        if previous is not None:
            clip, focused_pixels = previous
            unchanged = await page.screenshot(clip=clip, full_page=True) == focused_pixels
            assert not unchanged, f"{where}: no visible focus on {stops[-1]}"
        current = await _focused(page)
        if current is None or current in stops:
            break
        stops.append(current)
        assert await page.evaluate("document.activeElement.matches(':focus-visible')"), f"{where}: {current}"
        clip = await _focus_ring(page)
        previous = (clip, await page.screenshot(clip=clip, full_page=True))
    assert stops, f"{where}: Tab reaches nothing"
    assert stops == await _controls(page), f"{where}: Tab order {stops} is not the page's controls in order"
    return stops


async def tab_to(page: Any, css: str) -> None:
    """Press Tab until the element matching `css` has focus (it must be reachable)."""
    target = await page.evaluate(f"({_PATH_OF})(document.querySelector({css!r}))")
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await _focused(page) == target:
            return
    raise AssertionError(f"Tab never reaches {css}")


async def test_submit_and_mailbox_by_keyboard_alone(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    config = await make_install(tmp_path / "data")
    async with serve_apps(config) as live:
        context = await inspecting_context(browser)
        page = await context.new_page()
        base = live.whistleblower_url
        await page.goto(f"{base}/en/")
        await walk_tabs(page, "landing")
        await tab_to(page, "main a[href='/en/submit']")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/en/submit")

        # The form: every control in order, then filled in and sent from the keyboard
        await walk_tabs(page, "submit form")
        await tab_to(page, "#text")
        await page.keyboard.type(TEXT["en"])
        await tab_to(page, "#files")
        await page.set_input_files("#files", [{"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"}])
        await tab_to(page, "form.report-form button[type=submit]")
        await page.keyboard.press("Enter")
        await expect(page.locator("#receipt")).to_have_count(1)
        receipt = "".join((await page.inner_text("#receipt")).split())

        # The receipt page, confirmed by typing the receipt back
        await walk_tabs(page, "receipt")
        await tab_to(page, "#receipt-typed")
        await page.keyboard.type(receipt)
        await page.keyboard.press("Enter")
        await expect(page.locator("#receipt")).to_have_count(0)
        await walk_tabs(page, "submitted")

        # The mailbox: log in, answer, log out
        await caseworker_reply(live.services, receipt, "Thank you.", {"questions.txt": b"questions"})
        await tab_to(page, "main a[href='/en/mailbox']")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/en/mailbox")
        await walk_tabs(page, "mailbox login")
        await tab_to(page, "#receipt")
        await page.keyboard.type(receipt)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/en/mailbox/inbox")
        await walk_tabs(page, "inbox")
        await tab_to(page, "#reply-text")
        await page.keyboard.type("It began in March.")
        await tab_to(page, "form.reply-form button")
        await page.keyboard.press("Enter")
        await expect(page.locator(".notice")).to_have_count(1)
        await tab_to(page, ".mailbox-head form.logout-form button")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/en/")
        assert await context.cookies() == []
        await context.close()
