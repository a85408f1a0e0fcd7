"""The install-wide failure budget: slows down once spent, never refuses, recovers by itself."""

from __future__ import annotations

import logging

import pytest

from dropbox.web.throttle import FailureBudget
from tests.support.clock import FakeClock


class SleepRecorder:
    """Stands in for asyncio.sleep and records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _budget(per_minute: int = 3, slowdown: float = 5.0) -> tuple[FailureBudget, FakeClock, SleepRecorder]:
    clock, sleep = FakeClock(), SleepRecorder()
    return FailureBudget(per_minute, slowdown, clock=clock, sleep=sleep), clock, sleep


async def test_attempts_within_budget_are_not_slowed() -> None:
    budget, _clock, sleep = _budget()
    for _ in range(2):
        assert await budget.before_attempt() is False
        budget.record_failure()
    assert await budget.before_attempt() is False
    assert sleep.waits == []


async def test_spent_budget_slows_every_attempt_but_refuses_none() -> None:
    budget, clock, sleep = _budget(per_minute=3, slowdown=5.0)
    for _ in range(3):
        budget.record_failure()
    # Every further attempt in the window waits, and is then let through
    for _ in range(4):
        assert await budget.before_attempt() is True
    assert sleep.waits == [5.0] * 4


async def test_budget_recovers_when_the_window_has_passed() -> None:
    budget, clock, _sleep = _budget(per_minute=3)
    for _ in range(3):
        budget.record_failure()
    assert budget.spent()
    clock.advance(60)
    assert not budget.spent()
    assert await budget.before_attempt() is False


async def test_window_slides_with_the_oldest_failure() -> None:
    budget, clock, _sleep = _budget(per_minute=3)
    budget.record_failure()
    clock.advance(40)
    budget.record_failure()
    budget.record_failure()
    assert budget.spent()
    # The first failure leaves the window after 60 s; the other two are still in it
    clock.advance(20)
    assert not budget.spent()
    budget.record_failure()
    assert budget.spent()


async def test_spent_budget_is_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dropbox.web.throttle")
    budget, clock, _sleep = _budget(per_minute=2)
    for _episode in range(2):
        budget.record_failure()
        budget.record_failure()
        for _ in range(3):
            await budget.before_attempt()
        clock.advance(61)
        await budget.before_attempt()
    assert len([r for r in caplog.records if r.name == "dropbox.web.throttle"]) == 2


@pytest.mark.parametrize(("per_minute", "slowdown"), [(0, 1.0), (-1, 1.0), (5, -0.5)])
def test_nonsense_settings_are_refused(per_minute: int, slowdown: float) -> None:
    with pytest.raises(ValueError):
        FailureBudget(per_minute, slowdown)


async def test_real_sleep_is_used_by_default() -> None:
    budget = FailureBudget(1, 0.01)
    budget.record_failure()
    assert await budget.before_attempt() is True
