"""Parts 2 and 3: many whistleblowers at once, and receipt logins flooding the Argon2id pool.

Every client is a closed loop (send, wait for the answer, send the next), as people are; each
whistleblower has its own cookie jar, as each has their own browser. All counts are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from bench.client import form_fields, hidden_fields, receipt_from, report_text, upload
from bench.measure import latency_summary, tree_cpu_seconds
from bench.servers import Dropbox

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=300)


@dataclass
class Tally:
    """Latencies of the successful requests and a count of each kind of failure."""

    seconds: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    def summary(self) -> dict[str, object]:
        return {**latency_summary(self.seconds), "failures": dict(self.failures)}


@contextlib.asynccontextmanager
async def browser(*, keep_cookies: bool = True, connections: int = 1) -> AsyncIterator[aiohttp.ClientSession]:
    jar: aiohttp.abc.AbstractCookieJar = aiohttp.CookieJar(unsafe=True) if keep_cookies \
        else aiohttp.DummyCookieJar()
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector, timeout=REQUEST_TIMEOUT) as session:
        yield session


async def hidden_inputs(session: aiohttp.ClientSession, url: str, action: str | None = None) -> dict[str, str]:
    """Hidden inputs (e.g. a CSRF token) of the form at `url` posting to `action` (default: `url`'s path).

    {} if the page is not there: the form may not need any.
    """
    async with session.get(url, allow_redirects=False) as response:
        page = await response.text()
    return hidden_fields(page, action or URL(url).path) if response.status == 200 else {}


# --- part 2: submissions ---------------------------------------------------------------------


async def _whistleblower(box: Dropbox, seed: int, rounds: int, tally: Tally, receipts: list[str]) -> None:
    async with browser() as session:
        for round_ in range(rounds):
            try:
                hidden = await hidden_inputs(session, f"{box.base}/en/submit")
                fields = form_fields(hidden, {"channel": "default", "text": report_text(2048, seed * 1000 + round_)})
                result = await upload(session, f"{box.base}/en/submit", fields=fields, files=[])
            except (TimeoutError, aiohttp.ClientError) as e:
                tally.fail(type(e).__name__)
                continue
            receipt = receipt_from(result.body) if result.status == 200 else None
            if receipt is None:
                tally.fail(f"HTTP {result.status}" if result.status != 200 else "no receipt")
                continue
            tally.seconds.append(result.seconds)
            receipts.append(receipt)


async def submissions(box: Dropbox, *, clients: int, rounds: int) -> tuple[dict[str, object], list[str]]:
    """`clients` whistleblowers at once, each submitting `rounds` 2 KiB reports one after another."""
    tally, receipts = Tally(), list[str]()
    started = time.perf_counter()
    await asyncio.gather(*(_whistleblower(box, i, rounds, tally, receipts) for i in range(clients)))
    wall = time.perf_counter() - started
    return {"clients": clients, "per_client": rounds, "submitted": len(receipts), "seconds": wall,
            "per_second": len(receipts) / wall if wall else 0.0, "latency": tally.summary()}, receipts


# --- part 3: receipt logins and the landing page ---------------------------------------------


async def _login(session: aiohttp.ClientSession, box: Dropbox, receipt: str, hidden: dict[str, str],
                 tally: Tally) -> None:
    started = time.perf_counter()
    try:
        async with session.post(f"{box.base}/en/mailbox/login", data={**hidden, "receipt": receipt},
                                allow_redirects=False) as response:
            await response.read()
    except (TimeoutError, aiohttp.ClientError) as e:
        tally.fail(type(e).__name__)
        return
    if response.status == 303 and "Set-Cookie" in response.headers:
        tally.seconds.append(time.perf_counter() - started)
    else:
        tally.fail(f"HTTP {response.status}")


async def logins_one_at_a_time(box: Dropbox, receipts: list[str], *, count: int) -> dict[str, object]:
    """Receipt logins with nothing else going on: the cost a whistleblower feels."""
    tally = Tally()
    async with browser(keep_cookies=False) as session:
        hidden = await hidden_inputs(session, f"{box.base}/en/mailbox", "/en/mailbox/login")
        for i in range(count):
            await _login(session, box, receipts[i % len(receipts)], hidden, tally)
    return tally.summary()


async def _login_loop(box: Dropbox, receipts: list[str], index: int, stop: asyncio.Event, tally: Tally,
                      limit: int) -> None:
    async with browser(keep_cookies=False) as session:
        hidden = await hidden_inputs(session, f"{box.base}/en/mailbox", "/en/mailbox/login")
        for i in range(limit):
            if stop.is_set():
                return
            await _login(session, box, receipts[(index + i) % len(receipts)], hidden, tally)


async def _landing_clients(box: Dropbox, *, clients: int, requests: int) -> Tally:
    tally = Tally()
    url = f"{box.base}/en/"

    async def one_client(session: aiohttp.ClientSession) -> None:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                async with session.get(url, allow_redirects=False) as response:
                    await response.read()
            except (TimeoutError, aiohttp.ClientError) as e:
                tally.fail(type(e).__name__)
                continue
            if response.status == 200:
                tally.seconds.append(time.perf_counter() - started)
            else:
                tally.fail(f"HTTP {response.status}")

    async with browser(keep_cookies=False, connections=clients) as session:
        await asyncio.gather(*(one_client(session) for _ in range(clients)))
    return tally


async def landing_under_login_flood(box: Dropbox, receipts: list[str], *, logins_in_flight: int,
                                    clients: int, requests: int) -> dict[str, object]:
    """Landing-page latency alone, then again while `logins_in_flight` receipt logins queue for Argon2id."""
    cpu_before = tree_cpu_seconds(box.server.pid)
    quiet = await _landing_clients(box, clients=clients, requests=requests)
    cpu_per_request = (tree_cpu_seconds(box.server.pid) - cpu_before) / max(1, len(quiet.seconds))
    stop, flood = asyncio.Event(), Tally()
    loops = [asyncio.create_task(_login_loop(box, receipts, i, stop, flood, limit=1000))
             for i in range(logins_in_flight)]
    await asyncio.sleep(1.0)  # let every login reach the server and queue before measuring
    flooded_started = time.perf_counter()
    busy = await _landing_clients(box, clients=clients, requests=requests)
    flooded_seconds = time.perf_counter() - flooded_started
    stop.set()
    await asyncio.gather(*loops)  # each loop ends after its login in flight; bounded by the pool
    return {
        "clients": clients, "requests_per_client": requests, "logins_in_flight": logins_in_flight,
        "landing_quiet": {**quiet.summary(), "server_cpu_ms_per_request": cpu_per_request * 1000},
        "landing_under_flood": busy.summary(),
        "flood_seconds": flooded_seconds, "logins_during_flood": flood.summary(),
    }
