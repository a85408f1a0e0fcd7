"""The Argon2id pool: bounded, off the event loop, and below the event loop's priority."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading

import pytest

from dropbox.kdf_pool import KDF_NICENESS, URGENT_NICENESS, KdfBusy, KdfPool, Priority


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def test_derivations_run_in_lower_priority_threads_and_leave_the_loop_alone() -> None:
    pool = KdfPool(concurrency=1, queue_limit=4)
    try:
        before = _niceness()
        assert await pool.run(_niceness) == before + KDF_NICENESS
        assert _niceness() == before
    finally:
        pool.close()


async def test_a_full_queue_refuses_at_once() -> None:
    pool = KdfPool(concurrency=1, queue_limit=2)
    release = threading.Event()
    try:
        # one derivation runs, two wait for its slot: the queue is full
        blocked = [asyncio.create_task(pool.run(release.wait, 30)) for _ in range(3)]
        await asyncio.sleep(0)  # let all three reach the pool
        with pytest.raises(KdfBusy):
            await pool.run(_niceness)
        release.set()
        assert await asyncio.gather(*blocked) == [True, True, True]
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_caller_keeps_its_slot_until_the_thread_is_done() -> None:
    pool = KdfPool(concurrency=1, queue_limit=4)
    release = threading.Event()
    started = threading.Event()

    def work() -> bool:
        started.set()
        return release.wait(30)

    try:
        first = asyncio.create_task(pool.run(work))
        while not started.is_set():
            await asyncio.sleep(0.01)
        first.cancel()
        second = asyncio.create_task(pool.run(_niceness))
        await asyncio.sleep(0.05)
        assert not second.done(), "a second derivation started while the first still ran"
        release.set()
        assert await second == KDF_NICENESS + _niceness()
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_caller_does_not_let_one_more_past_the_queue_limit() -> None:
    # Given one slot and room for one waiter, and a derivation whose caller has gone away
    pool = KdfPool(concurrency=1, queue_limit=1)
    release = threading.Event()
    try:
        first = asyncio.create_task(pool.run(release.wait, 30))
        await asyncio.sleep(0)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        # When a second caller comes: its thread has not ended, so the slot is still taken
        second = asyncio.create_task(pool.run(release.wait, 30))
        await asyncio.sleep(0)
        assert pool.waiting == 1
        # Then a third is refused at once: freeing the slot on cancel would have let it queue
        with pytest.raises(KdfBusy):
            await pool.run(_niceness)
        release.set()
        assert await second is True
    finally:
        release.set()
        pool.close()


async def test_waiting_callers_are_served_most_urgent_first() -> None:
    pool = KdfPool(concurrency=1, queue_limit=8)
    release = threading.Event()
    served: list[str] = []
    try:
        blocker = asyncio.create_task(pool.run(release.wait, 30))
        await asyncio.sleep(0)
        # Given a refill, two logins and then a submission waiting for the one slot
        waiting = [asyncio.create_task(pool.call(functools.partial(served.append, name), priority=priority))
                   for name, priority in (("refill", Priority.IDLE), ("login 1", Priority.NORMAL),
                                          ("login 2", Priority.NORMAL), ("submission", Priority.URGENT))]
        await asyncio.sleep(0)
        # When the slot frees up, the submission goes first, the refill last
        release.set()
        await asyncio.gather(blocker, *waiting)
        assert served == ["submission", "login 1", "login 2", "refill"]
    finally:
        release.set()
        pool.close()


async def test_logins_in_flight_are_capped_until_their_threads_end() -> None:
    # Given a cap of two logins in flight, one running and one waiting, the running one's caller gone
    pool = KdfPool(concurrency=1, queue_limit=8, normal_cap=2)
    release = threading.Event()
    try:
        first = asyncio.create_task(pool.run(release.wait, 30))
        second = asyncio.create_task(pool.run(release.wait, 30))
        await asyncio.sleep(0)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        # When a third login comes, it is refused at once (the first one's thread still runs)
        with pytest.raises(KdfBusy):
            await pool.run(_niceness)
        # Then a submission still gets in line: the cap is for logins only
        urgent = asyncio.create_task(pool.call(_niceness, priority=Priority.URGENT))
        release.set()
        assert await second is True
        assert await urgent == URGENT_NICENESS + _niceness()
        # And once they have all ended, logins are taken again
        assert await pool.run(_niceness) == KDF_NICENESS + _niceness()
    finally:
        release.set()
        pool.close()


async def test_a_submission_never_waits_for_a_login_run_with_a_slot_reserved() -> None:
    # Given two slots, one of them reserved for submissions, and logins that hold the other one
    pool = KdfPool(concurrency=2, queue_limit=8, urgent_reserve=1)
    release = threading.Event()
    try:
        logins = [asyncio.create_task(pool.run(release.wait, 30)) for _ in range(3)]
        await asyncio.sleep(0)
        assert pool.waiting == 2, "logins may use only the unreserved slot"
        # When a submission needs a derivation, it runs at once, above the logins' priority
        assert await pool.call(_niceness, priority=Priority.URGENT) == URGENT_NICENESS + _niceness()
        # And the reserved slot never goes to a login or a refill
        refill = asyncio.create_task(pool.call(_niceness, priority=Priority.IDLE))
        await asyncio.sleep(0)
        assert pool.waiting == 3
        release.set()
        assert await asyncio.gather(*logins) == [True, True, True]
        assert await refill == KDF_NICENESS + _niceness()
    finally:
        release.set()
        pool.close()
