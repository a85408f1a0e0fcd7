"""Light over Tor, in Chromium: each page costs the server one document and the stylesheet once.

Counted where it matters, at the server (its access log of method, route and status): browsers
ask for /favicon.ico on their own, which a page's network events do not show. The pages link an
empty icon (`data:,`), so no browser asks, and nothing answers 404. The Firefox side of the same
checks, with the byte budget, is in tests/test_browser_gecko.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.browser_fixtures import LiveApps, browser, live, new_context  # noqa: F401


async def test_chromium_asks_for_the_page_and_once_for_the_stylesheet(
    live: LiveApps, browser: Any, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG, logger="dropbox.web.access")
    context = await new_context(browser)
    page = await context.new_page()
    for path in ("/en/", "/en/submit", "/da/mailbox", "/sv/"):
        await page.goto(live.whistleblower_url + path)
    await page.goto(live.caseworker_url + "/en/login")
    await context.close()
    requests = [record.getMessage() for record in caplog.records if record.name == "dropbox.web.access"]
    assert requests == [
        "GET /{lang}/ (landing) 200",
        "GET /static/style.css (stylesheet) 200",  # then from the browser's cache
        "GET /{lang}/submit (submit) 200",
        "GET /{lang}/mailbox (mailbox_login) 200",
        "GET /{lang}/ (landing) 200",
        "GET /{lang}/login (login) 200",
        "GET /static/style.css (stylesheet) 200",  # another site (port), its own cache entry
    ], requests
