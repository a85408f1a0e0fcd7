"""Real browser, real servers: Debian's Chromium driven by Playwright against both apps on loopback.

Usage in a test module: import the fixtures `live` and `browser` from here.
JavaScript is off in every context made here (the whistleblower side must work without it, and
the caseworker pages too). Screenshots go to ./screenshots/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropbox import accounts
from dropbox.config import Config, config_for_tests
from dropbox.install import init_install
from dropbox.services import Services
from dropbox.web.server import start_apps, stop_apps
from tests.conftest import PASSPHRASES

SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


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


async def fresh_install(data_dir: Path, *, caseworkers: tuple[str, ...] = ("alice",), **changes: object) -> Config:
    """init + `caseworker add` for each name (passphrases from tests.conftest.PASSPHRASES)."""
    config = config_for_tests(data_dir, **changes)
    await init_install(config)
    async with Services.open(config) as services:
        for name in caseworkers:
            await accounts.add_caseworker(store=services.store, kdf=services.staff_kdf, config=config, name=name,
                                          passphrase=PASSPHRASES[name], is_admin=(name == "alice"))
    return config


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveApps]:
    config = await fresh_install(tmp_path / "data")
    async with serve_apps(config) as apps:
        yield apps


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """A headless Chromium (Debian's), new per test; contexts come from `new_context(browser)`."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run the tests through scripts/test, which installs it")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def new_context(browser: object, *, mobile: bool = False) -> object:
    """A fresh profile with JavaScript disabled, desktop or phone sized."""
    viewport = {"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900}
    return await browser.new_context(java_script_enabled=False, viewport=viewport)  # type: ignore[attr-defined]


async def screenshot(page: object, name: str) -> Path:
    """Full-page PNG under ./screenshots/, for people to look at (and for the message-id check)."""
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    path = SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    await page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
