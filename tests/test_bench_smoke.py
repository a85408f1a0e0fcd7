"""Keeps the benchmark harness (bench/) from rotting: the raw baseline and the measuring code on tiny sizes.

Not a benchmark: nothing here asserts a speed. It checks that the multipart client delivers the
bytes it claims to, that the RSS sampler reads the server's memory, and that the figures make it
into the targets and the printed table.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.measure import ensure_data_file, percentile
from bench.report import evaluate, table
from bench.servers import start_raw
from bench.upload import Case, raw_target, summarise, upload_once
from dropbox.config import MiB

KiB = 1024


async def test_raw_baseline_and_measuring_code_on_tiny_sizes(tmp_path: Path) -> None:
    # Given a small random data file and the raw baseline server in its own process
    data = ensure_data_file(tmp_path / "data.bin", 3 * MiB)
    uploads = tmp_path / "uploads"
    server = start_raw(uploads, log=tmp_path / "raw.log")
    try:
        await asyncio.to_thread(server.wait_ready)
        target = raw_target(server, uploads)

        # When one file, then several small files, are uploaded through the harness's client
        single = await upload_once(target, Case("1x2MiB", 1, 2 * MiB), data, sync=False)
        many = await upload_once(target, Case("4x256KiB", 4, 256 * KiB), data, sync=False)
    finally:
        server.stop()

    # Then both were stored whole, and the server's memory was sampled
    for run in (single, many):
        assert run.ok, run.error
        assert run.peak_rss_mib >= run.rss_before_mib > 0
    stored = sorted(p.read_bytes() for p in uploads.iterdir())
    expected = data.read_bytes()
    assert stored == sorted(expected[i * 256 * KiB:(i + 1) * 256 * KiB] for i in range(4))

    # And the figures flow into the targets and the table
    case = {"raw aiohttp + fsync": summarise([single])}
    rows = evaluate({"upload": {"1x2MiB": case}})
    assert {row["target"] for row in rows} >= {"upload_vs_raw", "list_first_page_p50_ms"}
    report = {"machine": {"nproc": 2, "memory_mib": 1, "cpu_model": "x", "python": "3"},
              "cpu_busy_before": 0.0, "results": {"upload": {"1x2MiB": case}}, "targets": rows}
    assert "raw aiohttp + fsync" in table(report)
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
