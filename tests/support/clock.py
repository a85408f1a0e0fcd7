"""Time in tests: a clock the test moves by hand, and a bounded wait for background work.

Time is moved by injecting a clock, never by sleeping; `until` only waits for work on other
threads (a derivation, a part on its way in) and its timeout is a bound against hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], *, timeout: float = 60) -> None:
    """Wait for background work (a derivation at cheap test cost, a part on its way in) to reach a
    state; the timeout is generous, a bound against hanging rather than a speed requirement."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
