"""Whistleblower-side problems: counted, and logged once a day instead of when they happen.

Whatever collects the server's output (journald, a log shipper) stamps every line with the
second it arrived. One line logged while a submission fails would date that submission to the
second, where the database keeps only the day. So while the whistleblower app handles a request,
nothing it logs reaches the log: `DivertToTally` turns each record into a count of its kind
(level, logger, message; our messages carry only exception types and route patterns), and the
access log counts the request's 5xx the same way and drops every other line.

`EventTally.tick()` runs on a fixed schedule that no request triggers (every `TICK_SECONDS`) and
logs one line per finished UTC day that had events: "what kind, how many", no time finer than
the day. At shutdown the current day's counts are logged too, so nothing is lost; that line dates
the events to between the process start (or the last daily line) and a shutdown the operator
chose, not to a whistleblower's visit. The operator still sees every kind of problem, a day late
at most; the caseworker side keeps logging at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from dropbox.ids import today

log = logging.getLogger(__name__)

#: How often the schedule checks whether a UTC day has ended.
TICK_SECONDS = 60.0

#: Distinct kinds kept per day; more are counted as one "other kinds" entry (memory stays bounded).
MAX_KINDS = 100
OTHER_KINDS = "other kinds"


class EventTally:
    """Counts of whistleblower-side events per UTC day, logged only by `tick()` and `flush_all()`.

    `clock` gives today's UTC date, `sleep` waits between ticks (both injected in tests).
    Thread-safe: records logged in worker threads (asyncio.to_thread) are counted too.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], dt.date] = today,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self._sleep = sleep
        self._days: dict[dt.date, Counter[str]] = {}
        self._lock = threading.Lock()

    def note(self, kind: str) -> None:
        """Count one event of `kind` under today's date. Never logs."""
        with self._lock:
            counts = self._days.setdefault(self.clock(), Counter())
            if kind not in counts and len(counts) >= MAX_KINDS:
                kind = OTHER_KINDS
            counts[kind] += 1

    def pending(self) -> dict[dt.date, dict[str, int]]:
        """What has been counted and not yet logged."""
        with self._lock:
            return {day: dict(counts) for day, counts in self._days.items()}

    def tick(self) -> None:
        """Log the counts of every finished day (one line each) and forget them."""
        today = self.clock()
        with self._lock:
            done = sorted(day for day in self._days if day < today)
            finished = [(day, self._days.pop(day)) for day in done]
        for day, counts in finished:
            _log_counts(day.isoformat(), counts)

    def flush_all(self) -> None:
        """At shutdown: log everything still counted, the current day's counts included."""
        with self._lock:
            everything = sorted(self._days.items())
            self._days.clear()
        for day, counts in everything:
            label = day.isoformat() if day < self.clock() else f"{day.isoformat()} until shutdown"
            _log_counts(label, counts)

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: tick on the fixed schedule while the app runs; flush at shutdown."""
        task = asyncio.create_task(self._schedule())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.flush_all()

    async def _schedule(self) -> None:
        while True:
            await self._sleep(TICK_SECONDS)
            self.tick()


def _log_counts(label: str, counts: Counter[str]) -> None:
    listed = "; ".join(f"{n} x {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    log.warning("whistleblower side, %s (counted, logged once a day): %s", label, listed)


# -- routing log records into the tally ---------------------------------------------------------

#: The tally a request's access-log line goes to (set on whistleblower requests only).
REQUEST_TALLY: web.RequestKey[EventTally] = web.RequestKey("event_tally", EventTally)

_CURRENT: contextvars.ContextVar[EventTally | None] = contextvars.ContextVar("whistleblower_tally", default=None)


def divert_logs_middleware(tally: EventTally) -> Middleware:
    """A middleware that makes every record logged while a request is handled (in its task, the
    tasks and threads it starts) a count in `tally` instead of a log line. Put it outermost, so
    the error middleware's lines are counted too."""

    @web.middleware
    async def divert_logs(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[REQUEST_TALLY] = tally  # for the access log, which runs after this has returned
        # Not reset on the way out, on purpose: aiohttp runs each request in a task of its own,
        # whose context ends with it, and the rest of that task (aiohttp's "Error handling
        # request" when a response fails after streaming began) must be counted too. The server
        # serves only this app, so nothing of the caseworker side runs in that context.
        _CURRENT.set(tally)
        return await handler(request)

    return divert_logs


class DivertToTally(logging.Filter):
    """On a logger: inside a whistleblower request, count the record (WARNING and up) or drop it
    (below: debug output would be a timestamped line per visit too); elsewhere, pass it."""

    def filter(self, record: logging.LogRecord) -> bool:
        tally = _CURRENT.get()
        if tally is None:
            return True
        if record.levelno >= logging.WARNING:
            tally.note(f"{record.levelname} {record.name}: {record.getMessage()}")
        return False


#: Loggers whose records a whistleblower request can cause: ours, and aiohttp's in-request ones.
DIVERTED_PREFIXES = ("dropbox", "aiohttp.web", "aiohttp.server")


def install_diversion() -> None:
    """Attach DivertToTally to every logger under DIVERTED_PREFIXES that exists now.

    A logger filter sees only records logged on that very logger (not its children's), so each
    one is attached; call again once every module is imported (web/base.py does, at startup).
    """
    names = [name for name in logging.root.manager.loggerDict
             if any(name == p or name.startswith(p + ".") for p in DIVERTED_PREFIXES)]
    for name in [*DIVERTED_PREFIXES, *names]:
        target = logging.getLogger(name)
        if not any(isinstance(f, DivertToTally) for f in target.filters):
            target.addFilter(DivertToTally())


def current_tally() -> EventTally | None:
    """The tally of the whistleblower request being handled, if any."""
    return _CURRENT.get()


#: The whistleblower app's count of problems, logged once a day (events.py); absent on the caseworker app.
EVENTS: Final[web.AppKey[EventTally]] = web.AppKey("events")
