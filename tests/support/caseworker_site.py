"""The caseworker app for a test: served on loopback over one install, a signed-in client per caseworker.

`site` (the fixture) is the app over a fresh install with STAFF (alice the admin, bob, carol);
`serve_site(config)` serves any install. Reports to work on are handed in with
tests/support/domain.py.
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

from dropbox.config import Config
from dropbox.ids import today as utc_today
from dropbox.services import Services
from dropbox.web.apps import create_caseworker_app, create_whistleblower_app
from tests.support.forms import csrf_in, hrefs
from tests.support.installs import PASSPHRASES, STAFF, new_install
from tests.support.live_server import started_server


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
            "csrf_token": csrf_in(page), "name": name,
            "passphrase": PASSPHRASES[name] if passphrase is None else passphrase, "totp": totp})
        if response.status == 303:
            self.name = name
            # (a generated passphrase leads on to the settings page: its change form has the token too)
            landing = await self.client.get(f"/{lang}/reports")
            assert landing.status == 200, landing.status
            self.landing = await landing.text()
            self.csrf = csrf_in(self.landing)
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
        server = await started_server(app)
        site = Site(config=config, services=services, app=app, server=server)
        try:
            yield site
        finally:
            await site.close()
            await server.close()


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Site]:
    """alice (admin), bob and carol, all members of the default channel, the app on loopback."""
    config = await new_install(tmp_path / "data", STAFF)
    async with serve_site(config) as served:
        yield served


#: A file link on a caseworker's report page: (its URL, the file's name as shown).
_FILE_LINK = re.compile(r'href="(/en/reports/[0-9a-f]{32}/files/[0-9a-f]{32})"[^>]*>([^<]+)</a>')


async def downloads(staff: Site, report_url: str) -> dict[str, bytes]:
    """Every file linked from the report page, downloaded as a caseworker does, by name."""
    agent = await staff.signed_in("alice")
    page = await agent.text(report_url)
    files = {}
    for url, name in _FILE_LINK.findall(page):
        response = await agent.get(url)
        assert response.status == 200, url
        files[name] = await response.read()
    return files


async def only_report_url(staff: Site) -> str:
    agent = await staff.signed_in("alice")
    listing = await agent.text("/en/reports")
    urls = set(hrefs(listing, r"/en/reports/[0-9a-f]{32}"))
    assert len(urls) == 1, urls
    return urls.pop()


@contextlib.asynccontextmanager
async def whistleblower_client(site: Site) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The whistleblower app over the caseworker site's own services (one install, both apps)."""
    client = TestClient(await started_server(create_whistleblower_app(site.config, services=site.services)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
