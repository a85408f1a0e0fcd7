"""Runs Argon2id derivations off the event loop, a few at a time.

Each derivation takes ~0.5 s of a core and kdf_mem (256 MiB) of RAM. Without a bound, a flood of
receipt guesses would either block the event loop (if run inline) or exhaust memory (if all run
at once). With one, the flood queues here while every other page keeps answering; once the queue
itself is full, new attempts are refused at once with `KdfBusy` rather than queued forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class KdfBusy(Exception):
    """Too many key derivations are already waiting; the caller should ask the person to retry."""


class KdfPool:
    def __init__(self, *, concurrency: int, queue_limit: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kdf",
                                            initializer=_lower_priority)
        self._slots = asyncio.Semaphore(concurrency)
        self._queue_limit = queue_limit
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._waiting >= self._queue_limit:
            raise KdfBusy()
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        loop = asyncio.get_running_loop()
        try:
            job = self._executor.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            self._slots.release()
            raise
        # The slot is freed when the thread is done, not when the caller stops waiting: a caller
        # cancelled mid-derivation (a client gone) must not let another 256 MiB run start beside it.
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._slots.release))
        return await asyncio.wrap_future(job)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


#: Niceness of the derivation threads. They saturate the cores during a login flood; at equal
#: priority the event loop (every other page) would wait behind them.
KDF_NICENESS = 10


def _lower_priority() -> None:
    """Runs in each new worker thread: Linux applies setpriority per thread (by its TID)."""
    # Not permitted or not Linux: still correct, only less responsive under a flood.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), KDF_NICENESS)
