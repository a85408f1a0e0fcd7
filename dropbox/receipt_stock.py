"""Receipts derived ahead of need, so a submission never waits for Argon2id, nor behind logins.

The stock is a few receipt secrets (secret, salt, wrap key) derived at IDLE priority, that is
while no login or submission waits for the public KDF pool, and kept only in this process's
memory: nothing unissued touches the disk, and a restart simply derives new ones. A submission
takes one after its form is read, never while the body streams, so a stalled upload holds
nothing of the pool. The stock also waits to refill until no upload is in flight (`quiet`), so
no Argon2id working set (kdf_mem, 256 MiB) is added to the server's memory while bodies stream;
under a steady stream of uploads the stock runs down and submissions derive their own. When the
stock is empty (a flood keeps the pool busy, or uploads keep it from refilling), the submission
derives its own at URGENT priority, ahead of every queued login: it waits for at most the runs
already under way, not for the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable

from dropbox.install import Install
from dropbox.kdf_pool import KdfBusy, KdfPool, Priority
from dropbox.sealing import ReceiptSecret
from dropbox.submissions import draw_receipt


class ReceiptStock:
    """At most `size` receipt secrets ready in memory, refilled by one background task."""

    def __init__(self, *, kdf: KdfPool, install: Install, size: int,
                 quiet: Callable[[], Awaitable[object]] | None = None) -> None:
        self._kdf = kdf
        self._install = install
        self._size = size
        self._quiet = quiet
        #: True while a refill waits for `quiet` (uploads in flight).
        self.held_back = False
        self._ready: collections.deque[ReceiptSecret] = collections.deque()
        self._wanted = asyncio.Event()
        self._filler: asyncio.Task[None] | None = None

    @property
    def ready(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        self._filler = asyncio.create_task(self._fill())

    async def close(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
        self._ready.clear()

    async def take(self) -> ReceiptSecret:
        """A stocked receipt secret (each is handed out once), or one derived now, urgently."""
        self._wanted.set()
        if self._ready:
            return self._ready.popleft()
        return await draw_receipt(kdf=self._kdf, install=self._install, priority=Priority.URGENT)

    async def _fill(self) -> None:
        while True:
            if len(self._ready) >= self._size:
                await self._next_take()
                continue
            if self._quiet is not None:
                self.held_back = True
                try:
                    await self._quiet()
                finally:
                    self.held_back = False
            try:
                drawn = await draw_receipt(kdf=self._kdf, install=self._install, priority=Priority.IDLE)
            except KdfBusy:  # the queue is full: try again after the next submission
                await self._next_take()
                continue
            self._ready.append(drawn)

    async def _next_take(self) -> None:
        self._wanted.clear()
        await self._wanted.wait()
