"""An install-wide budget of failed attempts that slows guessing down without locking anyone out.

Whistleblowers arrive over Tor, so there is no client address to rate-limit on, and locking an
account (a receipt code, a caseworker) after failures would let anyone lock out anyone. Instead
all failures share one budget per minute; once it is spent, every further attempt waits
`slowdown_seconds` before it is checked. A legitimate user during an attack is slowed, never
refused, and the page can tell them why.

The wait does not bound an attacker who runs many attempts in parallel: what bounds throughput
is the Argon2id cost and the KDF pool's limits (Config.kdf_concurrency, kdf_queue_limit and
max_receipt_logins_in_flight).
The wait only keeps serial guessing slow and makes an attack visible.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from dropbox.catalogues import N_

logger = logging.getLogger(__name__)

#: The sliding window the budget applies to.
WINDOW_SECONDS = 60.0

#: What a page may show when `before_attempt()` returned True (translate with i18n.translate).
SLOWED_NOTICE = N_(
    "Many attempts are being made on this site right now, so yours was slowed down a little. "
    "This is a general safety measure and not about you."
)


class FailureBudget:
    """Failures per minute across the whole install; over budget, each attempt waits.

    Memory is bounded: only the times of the last `per_minute` failures are kept.
    """

    def __init__(
        self,
        per_minute: int,
        slowdown_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        if slowdown_seconds < 0:
            raise ValueError("slowdown_seconds must not be negative")
        self.per_minute = per_minute
        self.slowdown_seconds = slowdown_seconds
        self._clock = clock
        self._sleep = sleep
        self._failures: deque[float] = deque(maxlen=per_minute)
        self._was_spent = False

    def spent(self) -> bool:
        """True while `per_minute` failures fall inside the last minute."""
        if len(self._failures) < self.per_minute:
            return False
        return self._clock() - self._failures[0] < WINDOW_SECONDS

    async def before_attempt(self) -> bool:
        """Call before checking a receipt code or password; returns True if the call was slowed.

        Checks are not refused, only delayed, so an attacker can never lock a real user out.
        """
        if not self.spent():
            self._was_spent = False
            return False
        if not self._was_spent:
            # Once per episode, so an attack does not flood the log.
            logger.warning("failure budget of %d per minute spent; slowing attempts", self.per_minute)
            self._was_spent = True
        await self._sleep(self.slowdown_seconds)
        return True

    def record_failure(self) -> None:
        """Count one failed attempt (wrong receipt code, wrong password) against the budget."""
        self._failures.append(self._clock())


#: The install-wide failed-attempt budget: receipt codes (whistleblower) or logins (caseworker).
FAILURE_BUDGET: Final[web.AppKey[FailureBudget]] = web.AppKey("failure_budget")
