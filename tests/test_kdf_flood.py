"""200 concurrent wrong receipts: server memory stays bounded and unrelated pages keep answering.

Each receipt check is one Argon2id run that needs `kdf_mem` of RAM. The server process runs at a
realistic-shaped cost (64 MiB, 3 passes: a quarter of production's memory, so the test stays
short on two cores) with production's concurrency (2) and queue (64). Were the derivations not
bounded, 200 of them would need 12.5 GiB at once; the test requires the process's peak resident
memory (VmHWM) to stay within its baseline + kdf_concurrency × kdf_mem + a margin for 200
connections, and the landing page, the submit form and the caseworker login page to answer while
the flood is still being worked through.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import aiohttp

from dropbox.config import Config, MiB
from tests.support.http_client import get, mailbox_login, new_client, open_inbox, submit
from tests.support.installs import new_install
from tests.support.server_process import ServerProcess

FLOOD = 200
KDF_MEM = 64 * MiB
KDF_OPS = 3
#: Python objects, 200 open connections and their buffers, allocator slack.
MARGIN = 96 * MiB
#: An unrelated page must answer within this while the flood runs (a deadline, not a benchmark).
PAGE_DEADLINE = 5.0


async def test_flood_of_wrong_receipts_keeps_memory_bounded_and_pages_answering(tmp_path: Path) -> None:
    config: Config = await new_install(tmp_path / "data", kdf_ops=KDF_OPS, kdf_mem=KDF_MEM)
    assert config.kdf_concurrency == 2 and config.kdf_queue_limit == 64  # production's bounds
    server = ServerProcess(data_dir=config.data_dir, log_path=tmp_path / "server.log",
                           config_changes={"kdf_ops": KDF_OPS, "kdf_mem": KDF_MEM})
    await asyncio.to_thread(server.start)
    try:
        async with new_client(limit=FLOOD + 20) as client:
            # Given a real report (its receipt derivation also warms up the allocator)
            real = await submit(client, server.url, text="the real report")
            assert real.receipt
            baseline = server.status_kib("VmRSS") * 1024
            wrong = [f"{(int(real.receipt) + 1 + i) % 10**24:024d}" for i in range(FLOOD)]

            # When 200 wrong receipts arrive at once, each on its own connection
            async def attempt(receipt: str) -> int:
                async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as own:
                    return (await mailbox_login(own, server.url, receipt)).status

            flood = [asyncio.create_task(attempt(r)) for r in wrong]
            peak_sampled = 0
            page_checks: list[tuple[str, int]] = []
            while not all(t.done() for t in flood):
                peak_sampled = max(peak_sampled, server.status_kib("VmRSS") * 1024)
                # Then unrelated pages answer within the deadline while the flood is still running
                for path, base in (("/en/", server.url), ("/en/submit", server.url),
                                   ("/en/login", server.admin_url)):
                    if all(t.done() for t in flood):
                        break
                    t0 = time.monotonic()
                    async with asyncio.timeout(PAGE_DEADLINE):
                        answer = await get(client, base + path)
                    page_checks.append((path, answer.status))
                    assert answer.status == 200, f"{path} answered {answer.status} during the flood"
                    assert time.monotonic() - t0 < PAGE_DEADLINE
                await asyncio.sleep(0.05)
            outcomes = collections.Counter(await asyncio.gather(*flood))

            # and memory stayed bounded by the KDF pool, not by the number of attempts
            peak = max(server.status_kib("VmHWM") * 1024, peak_sampled)
            bound = baseline + config.kdf_concurrency * KDF_MEM + MARGIN
            print(f"\nflood: baseline {baseline / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB, "
                  f"bound {bound / MiB:.0f} MiB, outcomes {dict(outcomes)}, {len(page_checks)} page checks")
            assert peak <= bound, f"peak RSS {peak / MiB:.0f} MiB over the bound {bound / MiB:.0f} MiB"
            assert page_checks, "the flood was over before any unrelated page was tried"
            # and every wrong attempt was refused in a 4xx (wrong code) or 503 (busy), never a 500 or a login
            assert all(400 <= code < 500 or code == 503 for code in outcomes), dict(outcomes)

            # and once it has passed, the real receipt still opens its mailbox
            inbox = await open_inbox(client, server.url, real.receipt)
            assert "the real report" in inbox
        assert "Traceback" not in server.log_text()
    finally:
        server.kill()
