"""No timestamped log line per whistleblower action: problems are counted and logged once a day.

journald stamps every line with the second it arrived, so a line logged while a submission fails
would date that submission. These tests drive failing whistleblower requests with every log record
captured at DEBUG, check that nothing is logged at the time, and that the counts (what kind, how
many, nothing else) appear when the injected clock reaches the next UTC day, or at shutdown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import pkgutil
from pathlib import Path

import pytest

import dropbox
from dropbox.web.events import (
    EVENTS,
    MAX_KINDS,
    OTHER_KINDS,
    TICK_SECONDS,
    DivertToTally,
    EventTally,
    install_diversion,
)
from tests.support.forms import report_form  # noqa: F401
from tests.support.live_server import AiohttpClient
from tests.support.whistleblower_site import (  # noqa: F401
    Site,
    logged_at_the_next_day,
    make_install,
    open_site,
    site_fixture,
    submit_report,
)

DAY = dt.date(2026, 3, 1)
CANARY = "CANARY-events-41c7"


def _daily(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dropbox.web.events"]


async def test_failing_whistleblower_requests_log_nothing_at_the_time_and_counts_the_next_day(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a channel nobody reads, a spent failure budget and a database that refuses writes
    config = await make_install(tmp_path / "data", caseworkers=())
    async with open_site(aiohttp_client, config) as site:
        tally = site.app[EVENTS]
        tally.clock = lambda: DAY
        # When reports are refused (503), wrong receipts overspend the budget, and a write fails (507)
        for _ in range(2):
            response = await site.client.post("/en/submit", data=report_form(CANARY, files={"a.txt": b"1"}))
            assert response.status == 503
        for _ in range(3):
            response = await site.client.post("/en/mailbox/login", data={"receipt": "1111 2222 3333 4444"})
            assert response.status == 403
        await site.services.store._writer.execute("PRAGMA query_only = 1")  # white-box: as a full disk would
        response = await site.client.post("/en/mailbox/login", data={"receipt": "1111 2222 3333 4445"})
        # Then no line of the app was logged at the time, and a tick on the same day logs none either
        assert not [r for r in caplog.records if r.name.startswith("dropbox")], caplog.text
        tally.tick()
        assert not _daily(caplog)
        # And at the next day one line gives the day and the counts per kind, and nothing else
        (line,) = logged_at_the_next_day(site, caplog).splitlines()
        assert line.startswith("whistleblower side, 2026-03-01 (counted, logged once a day): ")
        assert "2 x access: POST /{lang}/submit (submit) 503" in line
        assert "1 x WARNING dropbox.web.throttle: failure budget of 2 per minute spent; slowing attempts" in line
        assert CANARY not in line and "1111" not in line and "127.0.0.1" not in line
        # And once logged, the counts are gone: the next tick adds nothing
        tally.tick()
        assert len(_daily(caplog)) == 1


async def test_a_read_only_disk_during_a_submission_is_counted_not_logged(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receipt = await submit_report(site.client)
    await site.services.store._writer.execute("PRAGMA query_only = 1")  # white-box: as a read-only disk would
    response = await site.client.post("/en/submit", data=report_form("refused", files={"a.txt": b"1"}))
    assert response.status in (503, 507)
    logged = logged_at_the_next_day(site, caplog)
    assert f"1 x access: POST /{{lang}}/submit (submit) {response.status}" in logged
    assert "StorageUnavailable" in logged or "refused" in logged
    assert receipt not in logged and receipt.replace(" ", "") not in logged


async def test_what_is_still_counted_is_logged_at_shutdown(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = await make_install(tmp_path / "data", caseworkers=())
    async with open_site(aiohttp_client, config) as site:
        site.app[EVENTS].clock = lambda: DAY
        assert (await site.client.post("/en/submit", data=report_form("x"))).status == 503
        assert not _daily(caplog)
        await site.client.close()  # stops the server: the app's cleanup runs
    (line,) = _daily(caplog)
    assert line.startswith("whistleblower side, 2026-03-01 until shutdown (counted, logged once a day): ")
    assert "1 x access: POST /{lang}/submit (submit) 503" in line


async def test_the_schedule_ticks_on_its_own_clock_not_on_requests(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    today = [DAY]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            today[0] = DAY + dt.timedelta(days=1)
        if len(waits) == 4:
            raise asyncio.CancelledError

    tally = EventTally(clock=lambda: today[0], sleep=sleep)
    tally.note("a kind")
    tally.note("a kind")
    with pytest.raises(asyncio.CancelledError):
        await tally._schedule()
    assert waits == [TICK_SECONDS] * 4
    assert _daily(caplog) == ["whistleblower side, 2026-03-01 (counted, logged once a day): 2 x a kind"]


def test_kinds_are_bounded_and_days_kept_apart() -> None:
    today = [DAY]
    tally = EventTally(clock=lambda: today[0])
    for i in range(MAX_KINDS + 5):
        tally.note(f"kind {i}")
    today[0] = DAY + dt.timedelta(days=1)
    tally.note("kind 0")
    pending = tally.pending()
    assert len(pending[DAY]) == MAX_KINDS + 1 and pending[DAY][OTHER_KINDS] == 5
    assert pending[today[0]] == {"kind 0": 1}


async def test_caseworker_side_and_background_records_are_not_diverted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    install_diversion()
    logging.getLogger("dropbox.web").error("outside any whistleblower request")
    assert "outside any whistleblower request" in caplog.text


def test_every_module_logger_of_the_app_is_diverted() -> None:
    """A logger filter sees only its own logger's records, so each module's logger needs one."""
    for module in pkgutil.walk_packages(dropbox.__path__, "dropbox."):
        importlib.import_module(module.name)
    install_diversion()
    loggers = [name for name in logging.root.manager.loggerDict if name.startswith("dropbox.")]
    assert "dropbox.whistleblower.submit" in loggers and "dropbox.submissions" in loggers
    for name in loggers:
        assert any(isinstance(f, DivertToTally) for f in logging.getLogger(name).filters), name
