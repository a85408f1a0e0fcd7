"""kill -9 in the middle of 50 concurrent submissions and mailbox replies, then restart.

Once a receipt was shown (or a reply answered 303), what it stands for must survive any crash:
after a restart every receipt opens its own report with all its files and messages, over HTTP
and through the domain functions. What was interrupted leaves nothing: the database is sound,
stored file contents and file rows match exactly, no staged chunk is left, and no upload has a
file of its own under data/. Several kill points, one install: each round also re-checks
everything confirmed in the rounds before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from dropbox.config import Config
from tests.support.data_checks import (
    Sent,
    assert_every_report_opens,
    assert_receipts_open,
    assert_settled,
    digest,
    leftover_staged,
)
from tests.support.forms import find_csrf
from tests.support.http_client import new_client, open_inbox, reply, submit
from tests.support.installs import ALICE, new_install
from tests.support.server_process import ALL_LOGINS_ADMITTED, ServerProcess

CLIENTS = 50


@dataclass
class Round:
    """Shared state of one round: what was confirmed, and when to pull the plug."""

    name: str
    kill_when: Callable[[Round], bool]
    #: Freeze the process (SIGSTOP) now and then and kill it only once the database holds staged
    #: chunks, committed but with no file row yet: the upload's bytes are durable, its report not.
    with_staged_chunks: bool = False
    receipts: int = 0
    replies: int = 0
    confirmed: list[Sent] = field(default_factory=list)
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    parts_at_kill: int = 0
    caught_in_window: bool = False


def _staged_chunks_committed(config: Config) -> int:
    """While the server is frozen: how many uploads have committed chunks but no file row."""
    try:
        return len(leftover_staged(config))
    except sqlite3.Error:
        return 0


def _payload(rng: random.Random) -> bytes:
    size = rng.choice([0, 1, 700, 4096, 40_000, 150_000])
    return os.urandom(size)


async def _whistleblower(client_no: int, base: str, state: Round, rng: random.Random) -> None:
    """Submit, then log in and reply with a file, over and over, until the server dies."""
    async with new_client() as client:
        n = 0
        while not state.killed.is_set():
            n += 1
            token = f"{state.name}-{client_no}-{n}-{secrets.token_hex(4)}"
            files = [(f"f-{token}-{i}.bin", _payload(rng)) for i in range(rng.randint(0, 2))]
            try:
                result = await submit(client, base, text=f"report {token}", contact=f"contact {token}",
                                      files=files, slow=(8, rng.uniform(0.005, 0.03)))
            except (TimeoutError, aiohttp.ClientError):
                return  # the server died under us: outcome unknown, nothing was promised
            if result.receipt is None:
                assert result.answer.status != 200 or state.killed.is_set(), "200 without a receipt"
                assert result.answer.status < 500, f"submission answered {result.answer.status}"
                return
            sent = Sent(receipt=result.receipt, text=f"report {token}",
                        files={name: digest(data) for name, data in files})
            state.confirmed.append(sent)
            state.receipts += 1
            try:
                inbox = await open_inbox(client, base, result.receipt)
                csrf = find_csrf(inbox)
                assert csrf, "inbox has no csrf_token field"
                for k in range(rng.randint(1, 2)):
                    reply_text = f"reply {token} {k}"
                    reply_files = [(f"r-{token}-{k}.bin", _payload(rng))]
                    answer = await reply(client, base, csrf=csrf, text=reply_text, files=reply_files,
                                         slow=(4, rng.uniform(0.005, 0.02)))
                    if answer.status != 303:
                        assert answer.status < 500, f"reply answered {answer.status}"
                        return
                    sent.replies.append((reply_text, {name: digest(data) for name, data in reply_files}))
                    state.replies += 1
            except (TimeoutError, aiohttp.ClientError, AssertionError):
                if state.killed.is_set():
                    return
                raise


async def _run_round(server: ServerProcess, config: Config, state: Round, seed: int) -> None:
    async def killer() -> None:
        while not state.kill_when(state):
            await asyncio.sleep(0.005)
        os.kill(server.pid, signal.SIGSTOP)
        if state.with_staged_chunks:
            for _ in range(400):
                if _staged_chunks_committed(config):
                    state.caught_in_window = True
                    break
                os.kill(server.pid, signal.SIGCONT)
                await asyncio.sleep(0.01)
                os.kill(server.pid, signal.SIGSTOP)
        state.parts_at_kill = await asyncio.to_thread(_staged_chunks_committed, config)
        server.kill()
        state.killed.set()

    kill_task = asyncio.create_task(killer())
    clients = [asyncio.create_task(_whistleblower(i, server.url, state, random.Random(seed * 1000 + i)))
               for i in range(CLIENTS)]
    try:
        async with asyncio.timeout(90):
            await kill_task
            await asyncio.gather(*clients)
    finally:
        for task in (kill_task, *clients):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(kill_task, *clients, return_exceptions=True)


async def _check_over_http(base: str, confirmed: list[Sent]) -> None:
    """Each receipt logs in to its own mailbox, which shows its text, file names and replies."""
    tokens = {s.text for s in confirmed}
    semaphore = asyncio.Semaphore(20)

    async def one(sent: Sent) -> None:
        async with semaphore, new_client() as client:
            inbox = await open_inbox(client, base, sent.receipt)
        assert sent.text in inbox, "the mailbox does not show the report's text"
        for name in sent.files:
            assert name in inbox, "the mailbox does not list a file of the report"
        for text, files in sent.replies:
            assert text in inbox, "a confirmed reply is missing from the mailbox"
            for name in files:
                assert name in inbox, "a confirmed reply's file is missing from the mailbox"
        others = [t for t in tokens if t != sent.text and t in inbox]
        assert not others, "a mailbox shows another report's text"

    await asyncio.gather(*(one(s) for s in confirmed))


@pytest.fixture
async def crash_server(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, Config]]:
    config = await new_install(tmp_path / "data")
    server = ServerProcess(data_dir=config.data_dir, log_path=tmp_path / "server.log",
                           config_changes=ALL_LOGINS_ADMITTED)
    try:
        await asyncio.to_thread(server.start)
        yield server, config
    finally:
        server.kill()


KILL_POINTS: list[tuple[str, Callable[[Round], bool], bool]] = [
    ("first-receipts", lambda s: s.receipts >= 2, False),
    ("mid-stream", lambda s: s.receipts >= 25, False),
    ("during-replies", lambda s: s.replies >= 20, False),
    ("late", lambda s: s.receipts >= 60 and s.replies >= 40, False),
    ("staged-chunks-without-row", lambda s: s.receipts >= 5, True),
]


async def test_kill_9_at_several_points_loses_nothing_confirmed_and_leaves_nothing_half_written(
    crash_server: tuple[ServerProcess, Config],
) -> None:
    server, config = crash_server
    everything: list[Sent] = []
    parts_seen = 0
    caught_in_window = 0
    for seed, (name, kill_when, in_window) in enumerate(KILL_POINTS):
        # Given 50 whistleblowers submitting and replying with files, streamed slowly
        state = Round(name=name, kill_when=kill_when, with_staged_chunks=in_window)
        # When the server is killed with SIGKILL at this point, then started again
        await _run_round(server, config, state, seed)
        parts_seen += state.parts_at_kill
        caught_in_window += state.caught_in_window
        everything += state.confirmed
        await asyncio.to_thread(server.start)

        # Then recovery left a sound database, contents matching rows exactly, nothing staged
        assert_settled(config)
        # and every receipt shown so far (this round and earlier ones) opens its own complete mailbox
        await _check_over_http(server.url, everything)
        assert "Traceback" not in server.log_text()

    # Uploads really were cut mid-stream with chunks already committed (so recovery had staged
    # chunks to settle) ...
    assert parts_seen > 0, "no kill point caught a staged upload; the test proved nothing about recovery"
    # ... and recovery deleted them (its log line counts them).
    discarded = [int(n) for n in re.findall(r"'discarded': (\d+)", server.log_text())]
    assert sum(discarded) > 0, "staged chunks were in the database at a kill but recovery deleted none"
    print(f"\ncrash: {len(everything)} receipts confirmed over {len(KILL_POINTS)} kills; "
          f"{parts_seen} uploads cut mid-stream with committed chunks; staged window caught: "
          f"{bool(caught_in_window)}; staged uploads deleted by recovery: {sum(discarded)}")
    server.kill()
    # Through the domain functions: exact file bytes and replies, one report per receipt ...
    await assert_receipts_open(config, everything)
    # ... and every stored report, including those whose receipt never reached anyone, opens whole.
    reports = await assert_every_report_opens(config, caseworker=ALICE.name, passphrase=ALICE.passphrase)
    assert reports >= len(everything)
