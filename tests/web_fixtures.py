"""Helpers for the web-foundation tests: a real base app with the routes the landing page links to.

Kept out of conftest.py so each test file says what it uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dropbox.config import config_for_tests
from dropbox.web.appkeys import AppKind
from dropbox.web.base import make_base_app
from dropbox.web.i18n import localized
from dropbox.web.middleware import run_kwargs

#: Client data that must never reach a log line.
DISTINCTIVE_UA = "Zebra-Unicorn-UA/9.9 (leak-canary)"
DISTINCTIVE_XFF = "203.0.113.77"

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def until(condition: Callable[[], bool], *, timeout: float = 60) -> None:
    """Wait for background work (a derivation at cheap test cost, a part on its way in) to reach a
    state; the timeout is generous, a bound against hanging rather than a speed requirement."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


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


async def start(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[web.Request, web.Application]:
    """A test client on a server started the way production starts it (run_kwargs()).

    TestServer drops its constructor kwargs, so the server is started here first.
    """
    server = TestServer(app)
    await server.start_server(**run_kwargs())
    return await aiohttp_client(server)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WipeRecorder:
    """A session payload that records whether it was wiped."""

    def __init__(self, secret: bytes = b"key material") -> None:
        self.secret = bytearray(secret)
        self.wiped = False

    def wipe(self) -> None:
        for i in range(len(self.secret)):
            self.secret[i] = 0
        self.wiped = True
