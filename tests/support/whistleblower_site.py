"""The whistleblower app for a test: a real install with small limits, the real app over HTTP.

Limits are small so every "too large" path runs in milliseconds; the failure budget slows with a
wait of zero seconds, so the "slowed" notice is exercised without sleeping.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dropbox.config import Config
from dropbox.services import Services
from dropbox.web.apps import create_whistleblower_app
from dropbox.web.events import EVENTS
from tests.support.forms import receipt_in, report_form
from tests.support.installs import ALICE, Account, new_install
from tests.support.live_server import AiohttpClient, start

KiB = 1024

#: Small limits for fast tests.
LIMITS: Mapping[str, Any] = {
    "max_file_bytes": 64 * KiB,
    "max_submission_bytes": 100 * KiB,
    "max_files_per_submission": 3,
    "max_text_chars": 1000,
    "max_field_chars": 100,
    "file_chunk_bytes": 16 * KiB,
    "failed_receipt_budget_per_minute": 2,
    "slowdown_seconds": 0.0,
}


Client = TestClient[web.Request, web.Application]


async def make_install(data_dir: Path, *, caseworkers: tuple[Account, ...] = (ALICE,), **changes: Any) -> Config:
    """A fresh install with the small LIMITS (overridable) and the given caseworkers."""
    return await new_install(data_dir, caseworkers, **{**LIMITS, **changes})


@dataclass
class Site:
    client: Client
    services: Services
    app: web.Application

    @property
    def config(self) -> Config:
        return self.services.config


@asynccontextmanager
async def open_site(aiohttp_client: AiohttpClient, config: Config) -> AsyncIterator[Site]:
    """The whistleblower app over HTTP on `config`: `async with open_site(...) as site:`.

    A context manager, not an async generator driven by `async for`: when the test body fails
    inside `async for`, the generator is left suspended with its services (and their threads)
    open, and pytest never exits; `async with` closes them on the way out of every failure.
    """
    async with Services.open(config) as services:
        app = create_whistleblower_app(config, services=services)
        yield Site(client=await start(aiohttp_client, app), services=services, app=app)


@pytest.fixture(name="site")
async def site_fixture(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Site]:
    """The whistleblower app on a fresh install with LIMITS and one caseworker (alice)."""
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config) as opened:
        yield opened


def logged_at_the_next_day(site: Site, caplog: pytest.LogCaptureFixture) -> str:
    """What the whistleblower app's daily count logs once its clock is moved to the next UTC day.

    Asserts first that nothing of the whistleblower side was logged before (a line at the time
    of a request would date it to the second).
    """
    assert not [r for r in caplog.records if r.name.startswith("dropbox")], caplog.text
    tally = site.app[EVENTS]
    day = tally.clock()
    tally.clock = lambda: day + dt.timedelta(days=1)
    tally.tick()
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "dropbox.web.events")


async def submit_report(client: Client, text: str = "what happened", *, files: Mapping[str, bytes] | None = None,
                        lang: str = "en") -> str:
    """Submit through the app and return the receipt code shown."""
    response = await client.post(f"/{lang}/submit", data=report_form(text, files=files))
    assert response.status == 200, await response.text()
    return receipt_in(await response.text())


async def log_in(client: Client, receipt: str, *, lang: str = "en") -> str:
    """Log into the mailbox; returns the inbox page."""
    response = await client.post(f"/{lang}/mailbox/login", data={"receipt": receipt}, allow_redirects=False)
    assert response.status == 303, await response.text()
    inbox = await client.get(response.headers["Location"])
    assert inbox.status == 200
    return await inbox.text()
