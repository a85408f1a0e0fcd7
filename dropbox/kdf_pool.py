"""Runs Argon2id derivations off the event loop, a few at a time, most urgent first.

Each derivation takes ~0.5 s of a core and kdf_mem (256 MiB) of RAM. Without a bound, a flood of
receipt guesses would either block the event loop (if run inline) or exhaust memory (if all run
at once). With one, the flood queues here while every other page keeps answering; once the queue
itself is full, new attempts are refused at once with `KdfBusy` rather than queued forever.

Waiting callers are served by `Priority`, so the one derivation a submission may still need
(when the receipt stock is empty) runs before any queued login, and the stock is refilled only
when nobody else waits. Logins can also be capped in flight (`normal_cap`): waiting plus running,
counted until their thread ends, so a flood of logins can never fill the queue for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import IntEnum
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: How much nicer than the process the derivation threads run. They saturate the cores during a
#: login flood; at equal priority the event loop (every other page) would wait behind them.
KDF_NICENESS = 10
#: The same for URGENT runs (a submission's receipt when the stock is empty): still below the event
#: loop, above a flood's logins, so a person waiting for their receipt is not slowed by them.
URGENT_NICENESS = 5


class KdfBusy(Exception):
    """Too many key derivations are already waiting; the caller should ask the person to retry."""


class Priority(IntEnum):
    """Who is served first when a slot frees up (lower first; equal ones in arrival order)."""

    #: A submission whose receipt the stock could not supply: a person waits for their receipt.
    URGENT = 0
    #: Logins (receipt codes, caseworker passphrases) and passphrase changes.
    NORMAL = 1
    #: Work ahead of need (the receipt stock): only when nobody else waits.
    IDLE = 2


class KdfPool:
    """At most `concurrency` derivations at once; `urgent_reserve` of those slots only URGENT
    jobs may use, so a submission never waits for a login's run to end, only for other
    submissions. URGENT jobs run in threads at `urgent_niceness`, the rest at `niceness`."""

    def __init__(self, *, concurrency: int, queue_limit: int, normal_cap: int | None = None,
                 urgent_reserve: int = 0, niceness: int = KDF_NICENESS,
                 urgent_niceness: int = URGENT_NICENESS) -> None:
        if not 0 <= urgent_reserve < concurrency:
            raise ValueError("urgent_reserve must leave at least one slot for everything else")
        self._executors = {
            urgent: ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kdf",
                                       initializer=functools.partial(_lower_priority, nice))
            for urgent, nice in ((False, niceness), (True, urgent_niceness))
        }
        self._concurrency = concurrency
        self._shared_slots = concurrency - urgent_reserve
        self._busy = 0
        self._busy_shared = 0
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._queue_limit = queue_limit
        self._normal_cap = normal_cap
        self._normal_in_flight = 0
        self._started = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def started(self) -> int:
        """Derivations handed to a thread since the pool opened (tests use it to see that none was)."""
        return self._started

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in a worker thread at NORMAL priority."""
        return await self.call(functools.partial(fn, *args, **kwargs), priority=Priority.NORMAL)

    async def call(self, job: Callable[[], T], *, priority: Priority) -> T:
        """`job()` in a worker thread once a slot is free; KdfBusy at once if the queue is full."""
        if len(self._queue) >= self._queue_limit:
            raise KdfBusy()
        counted = priority == Priority.NORMAL and self._normal_cap is not None
        if counted:
            if self._normal_in_flight >= (self._normal_cap or 0):
                raise KdfBusy()
            self._normal_in_flight += 1
        try:
            await self._acquire(priority)
        except BaseException:
            if counted:
                self._normal_in_flight -= 1
            raise
        loop = asyncio.get_running_loop()

        def done() -> None:
            if counted:
                self._normal_in_flight -= 1
            self._release(priority)

        try:
            work = self._executors[priority == Priority.URGENT].submit(job)
        except BaseException:
            done()
            raise
        self._started += 1
        # The slot is freed when the thread is done, not when the caller stops waiting: a caller
        # cancelled mid-derivation (a client gone) must not let another 256 MiB run start beside it.
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(done))
        return await asyncio.wrap_future(work)

    def _can_start(self, priority: int) -> bool:
        if self._busy >= self._concurrency:
            return False
        return priority == Priority.URGENT or self._busy_shared < self._shared_slots

    def _take(self, priority: int) -> None:
        self._busy += 1
        if priority != Priority.URGENT:
            self._busy_shared += 1

    async def _acquire(self, priority: Priority) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (int(priority), next(self._order), turn)
        heapq.heappush(self._queue, entry)
        self._dispatch()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(priority)  # handed the slot just as the caller went away: pass it on
            else:
                self._queue.remove(entry)  # at most queue_limit entries; keeps the queue exact
                heapq.heapify(self._queue)
            raise

    def _release(self, priority: int) -> None:
        self._busy -= 1
        if priority != Priority.URGENT:
            self._busy_shared -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Start waiters, most urgent first. Only the head need be looked at: if it cannot start,
        nothing behind it can (an URGENT waiter would be the head; the rest share one limit)."""
        while self._queue and self._can_start(self._queue[0][0]):
            priority, _, turn = heapq.heappop(self._queue)
            self._take(priority)
            turn.set_result(None)

    def close(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=True, cancel_futures=True)


def _lower_priority(niceness: int) -> None:
    """Runs in each new worker thread: `niceness` below the process (so below the event loop,
    whatever niceness the server was started with). Linux applies setpriority per thread (TID)."""
    # Not permitted or not Linux: still correct, only less responsive under a flood.
    with contextlib.suppress(OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + niceness)
