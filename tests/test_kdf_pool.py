"""The Argon2id pool: bounded, off the event loop, and below the event loop's priority."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from dropbox.kdf_pool import KDF_NICENESS, KdfBusy, KdfPool


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
