"""Part 4: the caseworker's report list with many reports in the database.

Seeding goes through `Store.insert_report` with rows sealed exactly as `submit_report` seals them
(body under the report key, keys granted to the caseworker, the whistleblower's copy wrapped),
except that each receipt's keys are random instead of derived with Argon2id: a list page never
touches a receipt, and 10,000 production-cost derivations would take hours. Days and statuses
are spread so the filtered page has something to filter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time

import aiohttp

from bench.load import Tally, browser, hidden_inputs
from bench.servers import Dropbox
from dropbox.config import Config
from dropbox.ids import new_id
from dropbox.install import DEFAULT_CHANNEL_ID
from dropbox.reports import STATUSES, ReportBody, seal_body
from dropbox.sealing import ReceiptKeys, ReportKeys, wrap_for_whistleblower
from dropbox.storage import Report, Store

RETENTION_DAYS = 90


def _report(index: int, today: dt.date) -> tuple[Report, ReportKeys]:
    keys = ReportKeys.generate()
    report_id = new_id()
    day = today - dt.timedelta(days=index % RETENTION_DAYS)
    receipt_keys = ReceiptKeys(lookup_id=secrets.token_bytes(32), wrap_key=secrets.token_bytes(32))
    body = ReportBody(text=f"Seeded report {index}. " * 40, answers={}, contact="")
    report = Report(
        id=report_id, channel_id=DEFAULT_CHANNEL_ID, status=STATUSES[index % len(STATUSES)],
        received_day=day.isoformat(), last_activity_day=day.isoformat(), retention_days=RETENTION_DAYS,
        expires_day=(day + dt.timedelta(days=RETENTION_DAYS)).isoformat(), acknowledged_day=None,
        feedback_day=None, whistleblower_seen_day=None,
        whistleblower_key=wrap_for_whistleblower(keys, receipt_keys=receipt_keys, report_id=report_id),
        sealed_body=seal_body(body, report_key=keys.report_key, report_id=report_id),
    )
    return report, keys


async def seed(config: Config, *, reports: int, caseworker: str) -> dict[str, float]:
    """Insert `reports` sealed reports granted to `caseworker`; the server must not be running."""
    store = await Store.open(config.db_path)
    try:
        cw = await store.caseworker_by_name(caseworker)
        today = dt.datetime.now(dt.UTC).date()
        started = time.perf_counter()
        for i in range(reports):
            report, keys = _report(i, today)
            await store.insert_report(report, locator=f"{i:06d}", receipt_salt=secrets.token_bytes(16),
                                      grants={cw.id: keys.seal_for(cw.public_key)}, files=[])
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    return {"reports": reports, "seconds": seconds}


async def _timed_get(session: aiohttp.ClientSession, url: str, tally: Tally) -> None:
    started = time.perf_counter()
    async with session.get(url, allow_redirects=False) as response:
        await response.read()
    if response.status == 200:
        tally.seconds.append(time.perf_counter() - started)
    else:
        tally.fail(f"HTTP {response.status}")


async def list_pages(box: Dropbox, *, repeat: int) -> dict[str, object]:
    """Log the caseworker in over HTTP, then time the first page and a filtered page, one at a time."""
    async with browser() as session:
        hidden = await hidden_inputs(session, f"{box.admin_base}/en/login")
        async with session.post(f"{box.admin_base}/en/login", allow_redirects=False,
                                data={**hidden, "name": box.caseworker, "passphrase": box.passphrase}) as response:
            await response.read()
        if response.status != 303:
            return {"ok": False, "error": f"caseworker login answered HTTP {response.status}"}
        pages = {"first_page": "/en/reports", "filtered_page": "/en/reports?status=new"}
        tallies = {name: Tally() for name in pages}
        await _timed_get(session, f"{box.admin_base}{pages['first_page']}", Tally())  # warm caches once
        for _ in range(repeat):
            for name, path in pages.items():
                await _timed_get(session, f"{box.admin_base}{path}", tallies[name])
    result: dict[str, object] = {"ok": True, "repeat": repeat}
    for name, tally in tallies.items():
        result[name] = {**tally.summary(), "path": pages[name]}
    return result


def seed_blocking(config: Config, *, reports: int, caseworker: str) -> dict[str, float]:
    return asyncio.run(seed(config, reports=reports, caseworker=caseworker))
