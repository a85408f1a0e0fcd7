"""Helpers for the whistleblower tests: a real install, the real app over HTTP, and small parsers.

Limits are small so every "too large" path runs in milliseconds; the failure budget slows with a
wait of zero seconds, so the "slowed" notice is exercised without sleeping.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer

from dropbox.config import Config
from dropbox.ids import new_id, today
from dropbox.reports import message_sealer, sealed_file_rows
from dropbox.services import Services
from dropbox.storage import Channel, Message, Store
from dropbox.submissions import open_mailbox
from dropbox.web.apps import create_whistleblower_app
from dropbox.web.events import EVENTS
from dropbox.web.middleware import run_kwargs
from tests.browser_fixtures import fresh_install
from tests.web_fixtures import AiohttpClient

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

#: Every response must carry these (see dropbox/web/middleware.py).
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Server": "dropbox",
}

Client = TestClient[web.Request, web.Application]


def assert_security_headers(headers: Mapping[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "camera=()" in headers.get("Permissions-Policy", "")


async def make_install(data_dir: Path, *, caseworkers: tuple[str, ...] = ("alice",), **changes: Any) -> Config:
    """A fresh install with the small LIMITS (overridable) and the given caseworkers."""
    return await fresh_install(data_dir, caseworkers=caseworkers, **{**LIMITS, **changes})


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
        server = TestServer(app)
        await server.start_server(**run_kwargs())
        client = await aiohttp_client(server)
        yield Site(client=client, services=services, app=app)


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


def report_form(text: str = "", *, files: Mapping[str, bytes] | None = None, channel: str | None = "default",
                answers: Mapping[str, str] | None = None, contact: str = "") -> FormData:
    """The submission form as a browser sends it: in document order, file names as raw UTF-8, and
    an empty file part when no file is chosen."""
    form = FormData(quote_fields=False)
    if channel is not None:
        form.add_field("channel", channel)
    form.add_field("text", text)
    for question_id, answer in (answers or {}).items():
        form.add_field(f"answer_{question_id}", answer)
    if files:
        for name, data in files.items():
            form.add_field("files", data, filename=name, content_type="application/octet-stream")
    else:
        form.add_field("files", b"", filename="", content_type="application/octet-stream")
    form.add_field("contact", contact)
    return form


_RECEIPT = re.compile(r'id="receipt">(.*?)</p>', re.S)
_TOKEN = re.compile(r'name="receipt_token" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def receipt_in(page: str) -> str:
    """The receipt code as shown, six groups of four digits: '1234 5678 9012 3456 7890 1234'."""
    match = _RECEIPT.search(page)
    assert match, "no receipt on the page"
    shown = re.sub(r"<[^>]+>", "", match.group(1))
    assert re.fullmatch(r"\d{4}( \d{4}){5}", shown), f"not six groups of four digits: {shown!r}"
    return shown


def token_in(page: str) -> str:
    match = _TOKEN.search(page)
    assert match
    return html.unescape(match.group(1))


def csrf_in(page: str) -> str:
    match = _CSRF.search(page)
    assert match
    return html.unescape(match.group(1))


def visible_text(page: str) -> str:
    """Roughly what a person reads: tags dropped, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


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


async def add_channel_with_question(store: Store) -> None:
    """A second channel, "hr", whose form asks a required question; alice is its member.

    With two channels the whistleblower first chooses one (the channel-choice page).
    """
    await store.add_channel(Channel(
        id="hr", name="HR", description="Harassment and working conditions",
        questions='[{"id": "where", "label": {"en": "Where?", "da": "Hvor?", "sv": "Var?"}, "required": true}]',
        retention_days=30, is_default=False))
    alice = await store.caseworker_by_name("alice")
    await store.set_channel_member(channel_id="hr", caseworker_id=alice.id, member=True)


async def caseworker_reply(services: Services, receipt: str, text: str,
                           files: Mapping[str, bytes] | None = None) -> str:
    """A caseworker's message with files, stored as the caseworker side stores it."""
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    staged = services.blobs.stage(byte_budget=services.config.max_submission_bytes)
    for name, data in (files or {}).items():
        await staged.add(name, _one_chunk(data), max_file_bytes=services.config.max_file_bytes)
    await staged.settle()
    message_id = new_id()
    day = today().isoformat()
    message = Message(id=message_id, report_id=access.report_id, seq=0, author="caseworker", caseworker_id=None,
                      sealed_body=b"", sent_day=day, read=False)
    rows = sealed_file_rows(staged, report_key=access.report_key, report_id=access.report_id, message_id=message_id)
    await services.store.add_message(message, files=rows, activity={"last_activity_day": day}, seal_body=message_sealer(
        text, report_key=access.report_key, report_id=access.report_id, message_id=message_id, author="caseworker"))
    staged.promote()
    return message_id


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
