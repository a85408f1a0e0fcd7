"""Helpers for the caseworker-app tests: a fresh install, the app on a real loopback server, a
signed-in client per caseworker, and reports handed in through the whistleblower's domain code.

Kept out of conftest.py so each test file says what it uses.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dropbox import accounts
from dropbox.config import Config, config_for_tests
from dropbox.ids import today as utc_today
from dropbox.install import init_install
from dropbox.reports import ReportBody
from dropbox.sealing import ReportKeys
from dropbox.services import Services
from dropbox.storage import Channel
from dropbox.submissions import open_mailbox, submit_report
from dropbox.web.apps import create_caseworker_app
from dropbox.web.middleware import run_kwargs
from tests.conftest import PASSPHRASES

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


async def new_install(data_dir: Path, *, admins: tuple[str, ...] = ("alice",),
                      others: tuple[str, ...] = ("bob", "carol"), **changes: Any) -> Config:
    config = config_for_tests(data_dir, **changes)
    await init_install(config)
    async with Services.open(config) as services:
        for name in (*admins, *others):
            await accounts.add_caseworker(store=services.store, kdf=services.staff_kdf, config=config, name=name,
                                          passphrase=PASSPHRASES[name], is_admin=name in admins)
    return config


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@dataclass(frozen=True)
class Submitted:
    receipt: str
    report_id: str


async def submit(services: Services, *, text: str = "what happened", files: dict[str, bytes] | None = None,
                 channel_id: str = "default", answers: dict[str, str] | None = None,
                 contact: str = "") -> Submitted:
    """A report handed in as the whistleblower app does it: sealed to the channel's members."""
    staged = services.blobs.stage(byte_budget=services.config.max_submission_bytes)
    for name, data in (files or {}).items():
        await staged.add(name, chunks_of(data), max_file_bytes=services.config.max_file_bytes)
    receipt = await submit_report(store=services.store, kdf=services.public_kdf, install=services.install,
                                  channel_id=channel_id, body=ReportBody(text=text, answers=answers or {},
                                                                         contact=contact),
                                  keys=ReportKeys.generate(), staged=staged)
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    return Submitted(receipt=receipt, report_id=access.report_id)


def csrf_of(page: str) -> str:
    match = CSRF_INPUT.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1)


@dataclass
class Agent:
    """One browser: its own cookie jar; after `login`, the session's CSRF token."""

    client: TestClient[web.Request, web.Application]
    csrf: str = ""
    name: str = ""
    #: The first page after signing in (it shows what the login had to tell, once).
    landing: str = ""

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.client.get(path, allow_redirects=False, **kwargs)

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
                   **kwargs: Any) -> aiohttp.ClientResponse:
        form = dict(data or {})
        if csrf:
            form = {"csrf_token": self.csrf, **form}
        return await self.client.post(path, data=form, allow_redirects=False, **kwargs)

    async def text(self, path: str) -> str:
        response = await self.get(path)
        assert response.status == 200, (path, response.status)
        return await response.text()

    async def login(self, name: str, *, passphrase: str | None = None, totp: str = "",
                    lang: str = "en") -> aiohttp.ClientResponse:
        page = await self.text(f"/{lang}/login")
        response = await self.client.post(f"/{lang}/login", allow_redirects=False, data={
            "csrf_token": csrf_of(page), "name": name,
            "passphrase": PASSPHRASES[name] if passphrase is None else passphrase, "totp": totp})
        if response.status == 303:
            self.name = name
            # (a generated passphrase leads on to the settings page: its change form has the token too)
            landing = await self.client.get(f"/{lang}/reports")
            assert landing.status == 200, landing.status
            self.landing = await landing.text()
            self.csrf = csrf_of(self.landing)
        return response


@dataclass
class Site:
    """The caseworker app served on a loopback port, over one install's Services."""

    config: Config
    services: Services
    app: web.Application
    server: TestServer
    _clients: list[TestClient[web.Request, web.Application]] = field(default_factory=list)

    async def agent(self) -> Agent:
        client: TestClient[web.Request, web.Application] = TestClient(
            self.server, cookie_jar=aiohttp.CookieJar(unsafe=True))
        await client.start_server()
        self._clients.append(client)
        return Agent(client)

    async def signed_in(self, name: str, **kwargs: Any) -> Agent:
        agent = await self.agent()
        response = await agent.login(name, **kwargs)
        assert response.status == 303, response.status
        return agent

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


@contextlib.asynccontextmanager
async def serve_site(config: Config, *, today: Callable[[], dt.date] = utc_today) -> AsyncIterator[Site]:
    """`today`: the day the report list counts deadlines on (a fixed one makes a test date-proof)."""
    async with Services.open(config) as services:
        app = create_caseworker_app(config, services=services, today=today)
        server = TestServer(app)
        await server.start_server(**run_kwargs())
        site = Site(config=config, services=services, app=app, server=server)
        try:
            yield site
        finally:
            await site.close()
            await server.close()


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Site]:
    """alice (admin), bob and carol, all members of the default channel, the app on loopback."""
    config = await new_install(tmp_path / "data")
    async with serve_site(config) as served:
        yield served


async def only_for(services: Services, *names: str, channel_id: str = "unit") -> str:
    """A channel whose only members are `names`, so its reports are granted to them alone."""
    members = [await services.store.caseworker_by_name(n) for n in names]
    await services.store.add_channel(Channel(id=channel_id, name=f"Unit {channel_id}", description="",
                                             questions="[]", retention_days=30, is_default=False))
    for cw in members:
        await services.store.set_channel_member(channel_id=channel_id, caseworker_id=cw.id, member=True)
    return channel_id
