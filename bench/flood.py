"""Part "flood": submissions and caseworker logins while anonymous loops flood receipt logins.

`loops` clients post random receipts (shaped like the real ones) to /en/mailbox/login as fast as
the server answers, for the whole part. Meanwhile, one after another, a whistleblower submits a
2 KiB report and a caseworker logs in with the right passphrase, `rounds` times; their latencies
are the figures (the issue's bound: each within 10 s). Loopback only; every count is bounded.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import aiohttp

from bench.client import form_fields, receipt_from, report_text, upload
from bench.load import Tally, browser, hidden_inputs
from bench.servers import Dropbox

#: How long to wait for the flood to fill the receipt logins' cap before measuring anyway.
SATURATE_S = 30.0


async def _attacker(box: Dropbox, digits: int, stop: asyncio.Event, outcomes: dict[str, int]) -> None:
    async with browser(keep_cookies=False) as session:
        while not stop.is_set():
            guess = f"{secrets.randbelow(10**digits):0{digits}d}"
            try:
                async with session.post(f"{box.base}/en/mailbox/login", data={"receipt": guess},
                                        allow_redirects=False) as response:
                    await response.read()
                    key = f"HTTP {response.status}"
            except (TimeoutError, aiohttp.ClientError) as e:
                key = type(e).__name__
            outcomes[key] = outcomes.get(key, 0) + 1


async def _submit(box: Dropbox, seed: int, tally: Tally) -> str | None:
    async with browser() as session:
        hidden = await hidden_inputs(session, f"{box.base}/en/submit")
        fields = form_fields(hidden, {"channel": "default", "text": report_text(2048, seed)})
        result = await upload(session, f"{box.base}/en/submit", fields=fields, files=[])
    receipt = receipt_from(result.body) if result.status == 200 else None
    if receipt is None:
        tally.fail(f"HTTP {result.status}")
    else:
        tally.seconds.append(result.seconds)
    return receipt


async def _caseworker_login(box: Dropbox, tally: Tally) -> None:
    async with browser() as session:
        started = time.perf_counter()
        hidden = await hidden_inputs(session, f"{box.admin_base}/en/login", "/en/login")
        form = {**hidden, "name": box.caseworker, "passphrase": box.passphrase, "totp": ""}
        async with session.post(f"{box.admin_base}/en/login", data=form, allow_redirects=False) as response:
            await response.read()
        if response.status == 303 and response.headers.get("Location", "").endswith("/reports"):
            tally.seconds.append(time.perf_counter() - started)
        else:
            tally.fail(f"HTTP {response.status}")


async def during_flood(box: Dropbox, *, loops: int, rounds: int) -> dict[str, object]:
    """Submission and caseworker-login latency with `loops` receipt-guessing loops running."""
    submissions, logins = Tally(), Tally()
    first = await _submit(box, 0, Tally())
    if first is None:
        return {"ok": False, "error": "the first submission got no receipt"}
    stop, outcomes = asyncio.Event(), dict[str, int]()
    attackers = [asyncio.create_task(_attacker(box, len(first), stop, outcomes)) for _ in range(loops)]
    try:
        deadline = time.monotonic() + SATURATE_S
        while "HTTP 503" not in outcomes and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        started = time.perf_counter()
        for round_ in range(rounds):
            await _submit(box, round_ + 1, submissions)
            await _caseworker_login(box, logins)
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.gather(*attackers)
    return {"ok": True, "loops": loops, "rounds": rounds, "seconds": seconds, "attacker_outcomes": outcomes,
            "submissions": submissions.summary(), "caseworker_logins": logins.summary()}
