"""The whistleblower's real browser: Debian's Firefox ESR at Tor Browser's "Safest", over Marionette.

Tor Browser is Firefox ESR (Gecko) with JavaScript off at "Safest". `start_gecko()` runs
`firefox-esr --headless --marionette -remote-allow-system-access` on a fresh profile whose
user.js holds those prefs, an optional SOCKS proxy (a tor client, remote DNS, .onion allowed)
and a per-test download folder. `-remote-allow-system-access` lets Marionette use the chrome
context, which is where cookies and network events are read.

Marionette acts like a person (navigate, type, click, attach files) through WebDriver commands.
Its scripts only *read* state (the network log below); nothing here runs script in the page,
which has JavaScript off anyway. Every call goes through a thread: the Marionette client is
blocking and the apps under test share this event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.chromium import SCREENSHOT_DIR

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
STARTUP_TIMEOUT = 120.0
DESKTOP = (1280, 900)
NARROW = (500, 900)  # the narrowest headless Firefox goes
PAGE_TIMEOUT_MS = 180_000  # a page over a fresh private Tor circuit on a busy 2-core machine
DOWNLOAD_TIMEOUT = 120.0

#: Tor Browser's "Safest" security level, as far as it maps onto plain Firefox prefs.
SAFEST_PREFS: Mapping[str, object] = {
    "javascript.enabled": False,
    "svg.disabled": True,
    "gfx.downloadable_fonts.enabled": False,
    "webgl.disabled": True,
    "media.autoplay.default": 5,
    "privacy.resistFingerprinting": True,
    "network.http.referer.XOriginPolicy": 2,
    "browser.cache.disk.enable": False,
}

#: Quiet, self-contained test browser: no first-run pages, updates, telemetry or background
#: fetches (over the private Tor network they would only queue up behind the test's requests).
QUIET_PREFS: Mapping[str, object] = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "app.update.auto": False,
    "app.update.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.places.speculativeConnect.enabled": False,
    "dom.security.https_only_mode": False,
    "marionette.port": 0,  # Firefox picks a free port and writes it to MarionetteActivePort
}


def download_prefs(folder: Path) -> dict[str, object]:
    """Files the page offers as attachments land in `folder`, without a dialog."""
    return {
        "browser.download.folderList": 2,
        "browser.download.dir": str(folder),
        "browser.download.useDownloadDir": True,
        "browser.download.always_ask_before_handling_new_types": False,
        "browser.download.alwaysOpenPanel": False,
        "browser.download.start_downloads_in_tmp_dir": False,
    }


def socks_prefs(port: int) -> dict[str, object]:
    """Everything through a tor client's SOCKS port, names resolved by tor (as Tor Browser)."""
    return {
        "network.proxy.type": 1,
        "network.proxy.socks": "127.0.0.1",
        "network.proxy.socks_port": port,
        "network.proxy.socks_version": 5,
        "network.proxy.socks_remote_dns": True,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": True,
        "network.dns.blockDotOnion": False,
    }


def user_js(prefs: Mapping[str, object]) -> str:
    return "".join(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n" for name, value in prefs.items())


#: Chrome-context script that starts recording every HTTP response the browser gets (URL, status,
#: length, and whether it came from the browser's cache rather than the network). Read-only
#: observation of the network, like the devtools network panel.
_RECORD_RESPONSES = """
if (!globalThis.__dropboxResponses) {
  const seen = [];
  const observer = {observe(subject, topic) {
    const channel = subject.QueryInterface(Ci.nsIHttpChannel);
    const cached = topic === "http-on-examine-cached-response";
    seen.push([channel.URI.spec, channel.responseStatus, channel.contentLength, cached]);
  }};
  Services.obs.addObserver(observer, "http-on-examine-response");
  Services.obs.addObserver(observer, "http-on-examine-cached-response");
  globalThis.__dropboxResponses = seen;
}
return globalThis.__dropboxResponses.length;
"""
_READ_RESPONSES = "return globalThis.__dropboxResponses.slice(arguments[0]);"

T = TypeVar("T")


class StepFailed(AssertionError):
    """A step of a browser flow failed; names the step and the screenshot taken at that moment."""


@dataclass
class Gecko:
    """One running Firefox ESR and its Marionette session; all methods act like a person would."""

    client: Any
    process: subprocess.Popen[bytes]
    profile: Path
    downloads: Path
    name: str
    screenshots: list[Path] = field(default_factory=list)

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.to_thread(call)

    # -- acting as a person -----------------------------------------------------------------

    async def open(self, url: str) -> None:
        await self._run(lambda: self.client.navigate(url))

    async def click(self, css: str) -> None:
        await self._run(lambda: self.client.find_element("css selector", css).click())

    async def click_link(self, text: str) -> None:
        """Click the first link whose visible text contains `text` (e.g. a file name)."""
        await self._run(lambda: self.client.find_element("partial link text", text).click())

    async def fill(self, css: str, text: str) -> None:
        def typed() -> None:
            element = self.client.find_element("css selector", css)
            element.clear()
            element.send_keys(text)
        await self._run(typed)

    async def attach(self, css: str, *paths: Path) -> None:
        """Choose files in a file input, as the file picker would (one path per line)."""
        await self._run(lambda: self.client.find_element("css selector", css).send_keys(
            "\n".join(str(path) for path in paths)))

    # -- reading state ------------------------------------------------------------------------

    async def url(self) -> str:
        return str(await self._run(lambda: self.client.get_url()))

    async def text(self, css: str = "body") -> str:
        return str(await self._run(lambda: self.client.find_element("css selector", css).text))

    async def count(self, css: str) -> int:
        return len(await self._run(lambda: self.client.find_elements("css selector", css)))

    async def attribute(self, css: str, name: str) -> list[str | None]:
        def read() -> list[str | None]:
            return [element.get_attribute(name) for element in self.client.find_elements("css selector", css)]
        return await self._run(read)

    async def scrolls_sideways(self) -> bool:
        """Whether the page is wider than the window (WCAG 1.4.10: content must reflow)."""
        script = "return document.documentElement.scrollWidth > document.documentElement.clientWidth;"
        return bool(await self._run(lambda: self.client.execute_script(script, sandbox="dropbox-read")))

    async def cookies(self) -> list[dict[str, Any]]:
        """Every cookie the browser holds, from the cookie service (all sites, not just this page)."""
        script = ("return Services.cookies.cookies.map(c => "
                  "({name: c.name, host: c.host, session: c.isSession, httpOnly: c.isHttpOnly}));")
        return list(await self._run(lambda: self._in_chrome(script)))

    async def record_responses(self) -> int:
        """Start (once) recording responses; returns a mark to pass to `responses_since`."""
        return int(await self._run(lambda: self._in_chrome(_RECORD_RESPONSES)))

    async def responses_since(self, mark: int) -> list[tuple[str, int, int, bool]]:
        """(URL, status, Content-Length, from cache) of every HTTP response since `mark`, in order."""
        return [tuple(pair) for pair in await self._run(lambda: self._in_chrome(_READ_RESPONSES, [mark]))]

    def _in_chrome(self, script: str, args: list[object] | None = None) -> Any:
        with self.client.using_context("chrome"):
            return self.client.execute_script(script, script_args=args or [], sandbox="dropbox", new_sandbox=False)

    async def screenshot(self, name: str) -> Path:
        """Full-page PNG under ./screenshots/, beside Chromium's (prefix `firefox_`)."""
        png = base64.b64decode(await self._run(lambda: self.client.screenshot(full=True)))
        SCREENSHOT_DIR.mkdir(exist_ok=True)
        path = SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
        path.write_bytes(png)
        self.screenshots.append(path)
        return path

    async def resize(self, width: int, height: int) -> None:
        """The window's size (headless Firefox will not go narrower than 500 px)."""
        await self._run(lambda: self.client.set_window_rect(width=width, height=height))

    async def download(self, name: str, *, timeout: float = DOWNLOAD_TIMEOUT) -> bytes:
        """The bytes of `name` once Firefox has finished saving it into the download folder.

        Firefox writes `name.part` (or an empty placeholder) and renames or fills it when done;
        the file system is polled until the finished file is there, up to a deadline.
        """
        target = self.downloads / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            finished = target.exists() and not any(self.downloads.glob("*.part"))
            if finished and target.stat().st_size > 0:
                return target.read_bytes()
            await asyncio.sleep(0.2)  # polling a folder; the deadline bounds the wait
        present = sorted(path.name for path in self.downloads.iterdir())
        raise AssertionError(f"{name} was not downloaded within {timeout} s; the folder holds {present}")

    # -- failing well --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def step(self, what: str) -> AsyncIterator[None]:
        """Run one step of a flow; if it fails, say which and keep a screenshot of that moment."""
        try:
            yield
        except Exception as exc:  # any failure: report the step, keep the evidence, re-raise
            try:
                shot = await self.screenshot(f"{self.name}_FAILED_{what}")
            except Exception as shot_error:  # the browser may be the thing that broke
                shot = f"no screenshot ({type(shot_error).__name__})"  # type: ignore[assignment]
            raise StepFailed(f"step {what!r} failed: {type(exc).__name__}: {exc} (screenshot: {shot})") from exc


def _marionette_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """Firefox writes the port Marionette listens on into the profile once it listens."""
    active = profile / "MarionetteActivePort"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"firefox-esr exited with {process.returncode} while starting")
        if active.exists() and active.read_text().strip():
            return int(active.read_text().strip())
        time.sleep(0.1)  # waiting on another process's file; the deadline bounds the wait
    raise RuntimeError(f"Marionette did not start within {STARTUP_TIMEOUT} s")


def _connect(port: int) -> Any:
    with warnings.catch_warnings():  # mozinfo warns about a deprecated distro call on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from marionette_driver.marionette import Marionette
    client = Marionette(host="127.0.0.1", port=port, socket_timeout=PAGE_TIMEOUT_MS / 1000)
    client.start_session(timeout=STARTUP_TIMEOUT)
    client.timeout.page_load = PAGE_TIMEOUT_MS / 1000
    client.timeout.implicit = 0
    return client


@contextlib.asynccontextmanager
async def start_gecko(folder: Path, *, name: str, socks_port: int | None = None,
                      width: int = DESKTOP[0], height: int = DESKTOP[1]) -> AsyncIterator[Gecko]:
    """A headless Firefox ESR on a fresh profile under `folder`; closed and reaped afterwards."""
    if not Path(FIREFOX).exists():
        pytest.fail(f"Firefox ESR not found at {FIREFOX}: run the tests through scripts/test, which installs it")
    profile = folder / "profile"
    downloads = folder / "downloads"
    profile.mkdir(parents=True)
    downloads.mkdir()
    prefs = {**SAFEST_PREFS, **QUIET_PREFS, **download_prefs(downloads)}
    if socks_port is not None:
        prefs.update(socks_prefs(socks_port))
    (profile / "user.js").write_text(user_js(prefs))
    log = folder / "firefox.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - a fixed binary and our own arguments
            [FIREFOX, "--headless", "--marionette", "-remote-allow-system-access", "--profile", str(profile),
             "--no-remote", "--width", str(width), "--height", str(height)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "MOZ_HEADLESS": "1",
                 "MOZ_CRASHREPORTER_DISABLE": "1", "LANG": "C.UTF-8"},
        )
    try:
        port = await asyncio.to_thread(_marionette_port, profile, process)
        client = await asyncio.to_thread(_connect, port)
    except Exception as exc:
        process.kill()
        process.wait(timeout=30)
        raise RuntimeError(f"Firefox ESR did not start: {exc}; its output: {log.read_text()[-2000:]}") from exc
    gecko = Gecko(client=client, process=process, profile=profile, downloads=downloads, name=name)
    try:
        yield gecko
    finally:
        with contextlib.suppress(Exception):  # closing a browser that already died
            await asyncio.to_thread(client.delete_session)
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 30)
