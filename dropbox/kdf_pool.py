"""Runs Argon2id derivations off the event loop, a few at a time.

Each derivation takes ~0.5 s of a core and kdf_mem (256 MiB) of RAM. Without a bound, a flood of
receipt guesses would either block the event loop (if run inline) or exhaust memory (if all run
at once). With one, the flood queues here while every other page keeps answering; once the queue
itself is full, new attempts are refused at once with `KdfBusy` rather than queued forever.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class KdfBusy(Exception):
    """Too many key derivations are already waiting; the caller should ask the person to retry."""


class KdfPool:
    def __init__(self, *, concurrency: int, queue_limit: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kdf")
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
            async with self._slots:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
