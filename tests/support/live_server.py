"""The apps served for a test, started the way `serve` starts them, on loopback.

Three shapes, one way of starting: `started_server(app)` is an aiohttp TestServer started with
production's `run_kwargs()` (TestServer drops its constructor's), which both single-app sites
(tests/support/caseworker_site.py, whistleblower_site.py) and `start()` use; `serve_apps(config)`
runs both apps as `serve` does (dropbox.web.server.start_apps) on free loopback ports, for a real
browser or a real client; and the `live` fixture is that over a fresh install with alice. For the
server as a separate process (kill -9, restarts, its log), see tests/support/server_process.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dropbox.config import Config
from dropbox.services import Services
from dropbox.web.middleware import run_kwargs
from dropbox.web.server import start_apps, stop_apps
from tests.support.installs import new_install

#: pytest-aiohttp's `aiohttp_client` fixture.
AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def started_server(app: web.Application) -> TestServer:
    """`app` on a loopback port, started with production's `run_kwargs()`; the caller closes it."""
    server = TestServer(app)
    await server.start_server(**run_kwargs())
    return server


async def start(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[web.Request, web.Application]:
    """A test client (closed by the fixture) on `app` served by `started_server`."""
    return await aiohttp_client(await started_server(app))


@dataclass(frozen=True)
class LiveApps:
    """Both apps serving on real loopback ports, sharing one install."""

    config: Config
    services: Services
    whistleblower_url: str
    caseworker_url: str
    #: The whistleblower's runner, then the caseworker's (tests read what each server received).
    runners: tuple[object, ...] = ()


@contextlib.asynccontextmanager
async def serve_apps(config: Config) -> AsyncIterator[LiveApps]:
    """Start both apps as `serve` does (dropbox.web.server.start_apps) on free loopback ports."""
    async with Services.open(config) as services:
        runners = await start_apps(services, ports=(0, 0))
        try:
            urls = [f"http://127.0.0.1:{runner.addresses[0][1]}" for runner in runners]
            yield LiveApps(config=config, services=services, whistleblower_url=urls[0], caseworker_url=urls[1],
                           runners=tuple(runners))
        finally:
            await stop_apps(runners)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveApps]:
    """Both apps on a fresh install with alice (admin)."""
    config = await new_install(tmp_path / "data")
    async with serve_apps(config) as apps:
        yield apps
