"""Debian's Chromium driven by Playwright, JavaScript off in every context made here.

The whistleblower side must work without JavaScript, and the caseworker pages too. Screenshots
go to ./screenshots/ (git-ignored). `Camera` photographs each page at desktop and phone width and
checks that no visible text on a Danish or Swedish page is an English message with a translation.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dropbox.catalogues import LOCALE_DIR, read_catalog

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


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
    return await browser.new_context(java_script_enabled=False, viewport=PHONE if mobile else DESKTOP)  # type: ignore[attr-defined]


async def screenshot(page: object, name: str) -> Path:
    """Full-page PNG under ./screenshots/, for people to look at (and for the message-id check)."""
    SCREENSHOT_DIR.mkdir(exist_ok=True)
    path = SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    await page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def _placeholder_free(msgid: str) -> str:
    return re.sub(r"<[^>]+>", "", msgid)


@dataclass
class UntranslatedCheck:
    """English msgids that have a different translation in `lang`, as patterns over visible text."""

    lang: str
    patterns: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        english = read_catalog(LOCALE_DIR, "en")
        translated = read_catalog(LOCALE_DIR, self.lang)
        for message in english:
            msgid = message.id
            if not msgid or not isinstance(msgid, str):
                continue
            target = translated.get(msgid)
            if target is None or not target.string or target.string == msgid:
                continue
            literal = [re.escape(" ".join(part.split())) for part in
                       re.split(r"%\(\w+\)s", _placeholder_free(msgid))]
            body = r".+?".join(literal).replace(r"\ ", r"\s+")
            self.patterns.append((msgid, re.compile(r"(?<!\w)" + body + r"(?!\w)")))

    def offenders(self, visible_text: str) -> Iterator[str]:
        for msgid, pattern in self.patterns:
            if pattern.search(visible_text):
                yield msgid

    def found(self, visible_text: str) -> list[str]:
        return list(self.offenders(visible_text))


class Camera:
    """Photographs each page at desktop and phone width into ./screenshots/
    (<app>_<lang>_<nn>_<page>_<desktop|phone>.png) and fails on visible English left untranslated.

    `untranslated(text)` names what is left; by default, on da and sv pages, every message id of
    the catalogues that the language translates differently (UntranslatedCheck).
    """

    def __init__(self, page: Any, lang: str, *, app: str = "whistleblower",
                 untranslated: Callable[[str], list[str]] | None = None) -> None:
        self.page = page
        self.lang = lang
        self.app = app
        if untranslated is None:
            untranslated = UntranslatedCheck(lang).found if lang != "en" else (lambda text: [])
        self.untranslated = untranslated
        self.count = 0
        self.taken: list[Path] = []

    async def __call__(self, name: str) -> str:
        self.count += 1
        stem = f"{self.app}_{self.lang}_{self.count:02d}_{name}"
        self.taken.append(await screenshot(self.page, stem + "_desktop"))
        await self.page.set_viewport_size(PHONE)
        self.taken.append(await screenshot(self.page, stem + "_phone"))
        await self.page.set_viewport_size(DESKTOP)
        text: str = await self.page.inner_text("body")
        left = self.untranslated(text)
        assert not left, f"untranslated on {stem}: {left}"
        return text
