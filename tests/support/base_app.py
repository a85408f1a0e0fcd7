"""The base app alone (dropbox.web.base.make_base_app): middleware, headers, pages, without the views.

For the web-foundation tests: a fresh test Config, the real base app, and stubs for the routes
the landing page links to. Serve it with `tests.support.live_server.start`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from dropbox.config import config_for_tests
from dropbox.web.appkeys import AppKind
from dropbox.web.base import make_base_app
from dropbox.web.i18n import localized

#: Client data that must never reach a log line.
DISTINCTIVE_UA = "Zebra-Unicorn-UA/9.9 (leak-canary)"
DISTINCTIVE_XFF = "203.0.113.77"


async def _stub(request: web.Request) -> web.Response:
    return web.Response(text="stub")


def build_app(
    tmp_path: Path,
    *,
    kind: AppKind = "whistleblower",
    organisation: str | None = None,
    client_max_size: int | None = None,
    **config_changes: Any,
) -> web.Application:
    """make_base_app on a fresh test Config, plus stubs for the routes other engineers own."""
    config = config_for_tests(tmp_path, organisation_name=organisation, **config_changes)
    app = make_base_app(
        config,
        kind=kind,
        client_max_size=client_max_size,
    )
    if kind == "whistleblower":
        app.router.add_get(localized("/submit"), _stub, name="submit")
        app.router.add_get(localized("/mailbox"), _stub, name="mailbox_login")
    return app
