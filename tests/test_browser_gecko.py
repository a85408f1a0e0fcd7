"""The whistleblower's real browser: Firefox ESR at Tor Browser's "Safest" (JavaScript off).

- Over Tor: both apps are published as onion services on the private Tor network
  (tests/tor_network.py); Firefox's only way out is the network's client tor as SOCKS proxy with
  remote DNS. The whistleblower opens the public .onion, hands in a report with two files,
  confirms the receipt; a caseworker in a second Firefox reaches the caseworker .onion through
  client authorisation, reads the report, downloads its file and replies with one; the
  whistleblower opens the mailbox, downloads that file (byte for byte) and logs out, leaving no
  cookie behind.

  Client authorisation: Firefox has no notion of onion client auth; Tor Browser's prompt hands
  the key to its own tor with the control command ONION_CLIENT_AUTH_ADD. Plain Firefox ESR
  cannot, so the test does what that prompt does, on the client tor behind the SOCKS port.

- Over loopback, in en/da/sv: every whistleblower page of the journey, error pages included,
  photographed into ./screenshots/ as firefox_whistleblower_<lang>_<nn>_<page>_<desktop|narrow>.png
  beside Chromium's (narrow is 500 px, as narrow as headless Firefox goes), and each page checked
  to be light: the HTML document plus at most the one stylesheet, within a byte budget, with no
  favicon request and no 404.

A failing step is named in the failure, with a screenshot of that moment (…_FAILED_<step>.png).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dropbox.config import LANGUAGES
from onion.keys import add_client
from onion.publish import OnionServices
from tests.support.domain import caseworker_reply
from tests.support.gecko import DESKTOP, NARROW, Gecko, start_gecko
from tests.support.installs import PASSPHRASES, new_install
from tests.support.live_server import LiveApps, serve_apps
from tests.support.tor_client import PUBLISH_TIMEOUT, client_auth_add, client_auth_remove, fetch
from tests.support.tor_network import TorNetwork, TorNode

#: Budget per whistleblower page over Tor: one document and at most one stylesheet.
HTML_BUDGET = 20 * 1024
CSS_BUDGET = 25 * 1024

REPORT = {"en": "On 3 May the invoices were altered before the audit.",
          "da": "Den 3. maj blev fakturaerne ændret før revisionen.",
          "sv": "Den 3 maj ändrades fakturorna före revisionen."}
CASEWORKER_TEXT = "Thank you. Who else knew about it?"
CASEWORKER_FILE = os.urandom(3000) + "spørgsmål".encode()


def _evidence(folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    files = [(folder / "faktura-2024.pdf", b"%PDF-1.4 " + os.urandom(40_000)),
             (folder / "foto æøå.jpg", b"\xff\xd8\xff" + os.urandom(1200))]
    for path, data in files:
        path.write_bytes(data)
    return [path for path, _ in files]


def _receipt_digits(text: str) -> str:
    return "".join(text.split())


# -- the whistleblower's journey, shared by the Tor and the loopback tests ----------------------


PageCheck = Callable[[str], Awaitable[None]]
ReplyAsCaseworker = Callable[[str], Awaitable[None]]


@dataclass
class Journey:
    """One whistleblower's way through the app in Firefox; `seen(page)` runs after every page."""

    gecko: Gecko
    base: str
    lang: str
    evidence: list[Path]
    seen: PageCheck
    with_mistakes: bool = True

    async def run(self, reply_as_caseworker: ReplyAsCaseworker) -> None:
        g, base, lang = self.gecko, self.base, self.lang
        async with g.step("open the start page"):
            await g.open(f"{base}/{lang}/")
            await self.seen("landing")
        async with g.step("follow the link to the form"):
            await g.click(f"main a[href='/{lang}/submit']")
            await self.seen("submit-form")
        if self.with_mistakes:
            async with g.step("send an empty report"):
                await g.click("form.report-form button[type=submit]")
                assert await g.count(".error-summary") == 1
                await self.seen("submit-empty")
        async with g.step("send a report with two files"):
            await g.fill("#text", REPORT[lang])
            await g.attach("#files", *self.evidence)
            await g.click("form.report-form button[type=submit]")
            receipt = _receipt_digits(await g.text("#receipt"))
            assert receipt.isdigit(), receipt
            assert await g.cookies() == [], "a cookie on the submission path"
            await self.seen("receipt")
        if self.with_mistakes:
            async with g.step("type the receipt back wrong"):
                await g.fill("#receipt-typed", "1" if receipt != "1" else "2")
                await g.click("form.confirm-form button")
                assert _receipt_digits(await g.text("#receipt")) == receipt
                await self.seen("receipt-mistyped")
        async with g.step("confirm the receipt"):
            await g.fill("#receipt-typed", receipt)
            await g.click("form.confirm-form button")
            assert await g.count("#receipt") == 0
            assert await g.cookies() == []
            await self.seen("submitted")

        await reply_as_caseworker(receipt)

        async with g.step("open the mailbox login"):
            await g.click(f"main a[href='/{lang}/mailbox']")
            await self.seen("mailbox-login")
        if self.with_mistakes:
            async with g.step("log in with a wrong receipt"):
                await g.fill("#receipt", "0" * len(receipt))
                await g.click("form.login-form button")
                assert await g.count(".field-error") == 1
                await self.seen("mailbox-wrong-code")
        async with g.step("log in to the mailbox"):
            await g.fill("#receipt", receipt)
            await g.click("form.login-form button")
            inbox = await g.text("main")
            assert REPORT[lang] in inbox and CASEWORKER_TEXT in inbox, inbox
            cookies = await g.cookies()
            assert [(c["name"], c["session"], c["httpOnly"]) for c in cookies] == [("wb_session", True, True)]
            await self.seen("inbox")
        async with g.step("download the caseworker's file"):
            await g.click("a[download]")
            assert await g.download("spørgsmål.txt") == CASEWORKER_FILE
        async with g.step("log out"):
            await g.click(".mailbox-head form.logout-form button")
            assert await g.url() == f"{base}/{lang}/"
            assert await g.cookies() == [], "a cookie left after logout"
            await self.seen("logged-out")
        async with g.step("the mailbox is closed after logout"):
            await g.open(f"{base}/{lang}/mailbox/inbox")
            assert await g.url() == f"{base}/{lang}/mailbox"


# -- over the private Tor network ------------------------------------------------------------


@dataclass(frozen=True)
class OnionApps:
    apps: LiveApps
    public: str
    caseworker: str


@pytest.fixture
async def onion_apps(tmp_path: Path, tor_network: TorNetwork, tor_client: TorNode) -> AsyncIterator[OnionApps]:
    """Both real apps, published as onions on the private network; the client tor holds the
    caseworker onion's client-auth key (as Tor Browser's tor does once the key is pasted)."""
    config = await new_install(tmp_path / "data")
    async with serve_apps(config) as apps:
        ports = {name: int(url.rsplit(":", 1)[1]) for name, url in
                 (("port", apps.whistleblower_url), ("admin_port", apps.caseworker_url))}
        onion_config = dataclasses.replace(config, **ports)
        laptop = add_client(onion_config, name="laptop")
        services = OnionServices(onion_config, client_check_seconds=0.5, retry_max_seconds=2,
                                 tor_config_overrides=tor_network.client_options())
        await services.start()
        try:
            status = await services.wait_until_published(timeout=PUBLISH_TIMEOUT)
            public, caseworker = status.public_address or "", status.caseworker_address or ""
            client_auth_add(tor_client, caseworker, laptop.onion_client_auth_add_key())
            try:
                # Both onions answer through the client tor before a browser is pointed at them
                # (fetch retries tor's "not yet" replies until its deadline).
                await fetch(tor_client, public)
                await fetch(tor_client, caseworker)
                yield OnionApps(apps=apps, public=public, caseworker=caseworker)
            finally:
                client_auth_remove(tor_client, caseworker)
        finally:
            await services.stop()


async def _caseworker_reads_and_replies(gecko: Gecko, base: str, evidence: Path, attachment: Path) -> None:
    async with gecko.step("caseworker logs in over the caseworker onion"):
        await gecko.open(f"{base}/en/login")
        await gecko.fill("#name", "alice")
        await gecko.fill("#passphrase", PASSPHRASES["alice"])
        await gecko.click("main button[type=submit]")
        await gecko.open(f"{base}/en/reports")
        assert await gecko.count("table.reports tbody tr") == 1
    async with gecko.step("caseworker opens the report"):
        await gecko.click("a.report-link")
        assert REPORT["en"] in await gecko.text("main")
    async with gecko.step("caseworker downloads the whistleblower's file"):
        await gecko.click_link(evidence.name)
        assert await gecko.download(evidence.name) == evidence.read_bytes()
    async with gecko.step("caseworker replies with a file"):
        await gecko.fill("#reply-text", CASEWORKER_TEXT)
        await gecko.attach("#reply-files", attachment)
        await gecko.click("#reply button[type=submit]")
        assert CASEWORKER_TEXT in await gecko.text("article.from-caseworker")


async def test_the_whole_flow_in_firefox_at_safest_over_tor(onion_apps: OnionApps, tor_client: TorNode,
                                                            tmp_path: Path) -> None:
    assert tor_client.socks_port is not None
    evidence = _evidence(tmp_path / "evidence")
    attachment = tmp_path / "spørgsmål.txt"
    attachment.write_bytes(CASEWORKER_FILE)
    public, caseworker = f"http://{onion_apps.public}", f"http://{onion_apps.caseworker}"

    async def nothing_more(_page: str) -> None:
        return None

    async with (
        start_gecko(tmp_path / "wb", name="firefox_tor_whistleblower", socks_port=tor_client.socks_port) as wb,
        start_gecko(tmp_path / "cw", name="firefox_tor_caseworker", socks_port=tor_client.socks_port) as cw,
    ):
        async def reply(_receipt: str) -> None:
            await _caseworker_reads_and_replies(cw, caseworker, evidence[0], attachment)

        marks = (await wb.record_responses(), await cw.record_responses())
        journey = Journey(gecko=wb, base=public, lang="en", evidence=evidence, seen=nothing_more,
                          with_mistakes=False)
        await journey.run(reply)
        # Each browser only ever talked to its onion address (which only tor can resolve), never
        # to the apps' loopback ports or anywhere else.
        for gecko, mark, onion in ((wb, marks[0], onion_apps.public), (cw, marks[1], onion_apps.caseworker)):
            hosts = {urlsplit(url).hostname for url, *_rest in await gecko.responses_since(mark)}
            assert hosts == {onion}, hosts


# -- every page, in every language, over loopback --------------------------------------------


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveApps]:
    config = await new_install(tmp_path / "data")
    async with serve_apps(config) as apps:
        yield apps


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_every_whistleblower_page_in_firefox_is_light(live: LiveApps, lang: str, tmp_path: Path) -> None:
    evidence = _evidence(tmp_path / "evidence")
    base = live.whistleblower_url
    async with start_gecko(tmp_path / "firefox", name=f"firefox_whistleblower_{lang}") as gecko:
        mark = await gecko.record_responses()
        count = 0
        pages: list[str] = []
        fetched_styles: list[tuple[str, int, int, bool]] = []

        async def seen(page: str) -> None:
            # Each page is one HTML document (an error page may be a 4xx one) plus at most the
            # stylesheet, within budget, with no favicon request and no 404; and it is photographed.
            nonlocal mark, count
            responses = await gecko.responses_since(mark)
            mark += len(responses)
            responses = [r for r in responses if "/mailbox/files/" not in r[0]]  # a download asked for
            count += 1
            pages.append(page)
            stem = f"firefox_whistleblower_{lang}_{count:02d}_{page}"
            await gecko.screenshot(stem + "_desktop")
            await gecko.resize(*NARROW)
            await gecko.screenshot(stem + "_narrow")
            assert not await gecko.scrolls_sideways(), f"{page}: wider than a {NARROW[0]} px window"
            await gecko.resize(*DESKTOP)
            redirects = [r for r in responses if 300 <= r[1] < 400]  # POST, redirect, GET
            documents = [r for r in responses if "/static/" not in r[0] and r not in redirects]
            styles = [r for r in responses if r[0].split("?")[0].endswith("/static/style.css")]
            assert len(documents) == 1 and len(styles) <= 1, f"{page}: {responses}"
            assert len(responses) == len(redirects) + len(documents) + len(styles), f"{page}: {responses}"
            assert all(status == 200 for _url, status, _size, _cached in styles), f"{page}: {responses}"
            fetched_styles.extend(r for r in styles if not r[3])
            assert not [r for r in responses if r[1] == 404], f"{page}: {responses}"
            assert not [r for r in responses if "favicon" in r[0]], f"{page}: {responses}"
            ((_url, _status, html_bytes, _cached),) = documents
            assert 0 < html_bytes <= HTML_BUDGET, f"{page}: {html_bytes} bytes of HTML"
            for _url, _status, css_bytes, _cached in styles:
                assert 0 < css_bytes <= CSS_BUDGET, f"{page}: {css_bytes} bytes of CSS"

        async def reply(receipt: str) -> None:
            await caseworker_reply(live.services, receipt, CASEWORKER_TEXT, {"spørgsmål.txt": CASEWORKER_FILE})

        await Journey(gecko=gecko, base=base, lang=lang, evidence=evidence, seen=seen).run(reply)
        assert len(pages) == 10 and all(path.stat().st_size > 0 for path in gecko.screenshots)
        # The stylesheet came over the network once; every later page took it from the cache.
        assert len(fetched_styles) == 1, fetched_styles
