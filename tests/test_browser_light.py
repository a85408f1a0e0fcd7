"""Light over Tor, in Chromium: each page costs the server one document and the stylesheet once.

Counted where it matters, at the server: browsers ask for /favicon.ico on their own, which a
page's network events do not show. The caseworker app's access log names each request (method,
route, status); the whistleblower app logs no line per request (dropbox/web/events.py), so there the
server's own request counter is compared with the responses the page saw. The pages link an
empty icon (`data:,`), so no browser asks, and nothing answers 404. The Firefox side of the same
checks, with the byte budget, is in tests/test_browser_gecko.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.support.chromium import browser, new_context  # noqa: F401
from tests.support.live_server import LiveApps, live  # noqa: F401


async def test_chromium_asks_for_the_page_and_once_for_the_stylesheet(
    live: LiveApps, browser: Any, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG, logger="dropbox.web.access")
    context = await new_context(browser)
    page = await context.new_page()
    seen: list[str] = []
    page.on("response", lambda response: seen.append(f"{response.status} {response.url}")
            if response.request.resource_type == "document" else None)
    for path in ("/en/", "/en/submit", "/da/mailbox", "/sv/"):
        await page.goto(live.whistleblower_url + path)
    whistleblower_seen = list(seen)
    await page.goto(live.caseworker_url + "/en/login")
    await context.close()
    wb = live.whistleblower_url
    assert whistleblower_seen == [f"200 {wb}/en/", f"200 {wb}/en/submit", f"200 {wb}/da/mailbox",
                                  f"200 {wb}/sv/"], whistleblower_seen
    # The server received those four and one more, the stylesheet (then from the browser's cache;
    # Playwright reports cache hits as responses too, hence the server's count): no icon request
    whistleblower_server = live.runners[0].server  # type: ignore[attr-defined]
    assert whistleblower_server.requests_count == 5
    requests = [record.getMessage() for record in caplog.records if record.name == "dropbox.web.access"]
    assert requests == [
        "GET /{lang}/login (login) 200",
        "GET /static/style.css (stylesheet) 200",  # another site (port), its own cache entry
    ], requests
