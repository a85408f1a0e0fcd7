"""Stalled, slow, many or huge uploads (issue 10, M5): every public upload is bounded in number, in
staged bytes, in rate and by a disk reserve, each refused with a clear page and nothing kept, while
the caseworker app keeps storing replies."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dropbox.blobs import DiskLow, UploadsBusy
from dropbox.services import Services
from dropbox.web.uploads import RateGuard, TooSlow
from tests.support.caseworker_site import serve_site
from tests.support.clock import FakeClock
from tests.support.data_checks import chunk_files
from tests.support.domain import submit
from tests.support.forms import report_form
from tests.support.installs import STAFF, new_install
from tests.support.live_server import AiohttpClient
from tests.support.whistleblower_site import KiB, Site, make_install, open_site

BUSY_TEXT = "The site is very busy right now, so your report was not read or saved"
TOO_SLOW_TEXT = "Your upload arrived too slowly"


@pytest.fixture
async def site_with(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[object]:
    """`await site_with(**config_changes)`: the whistleblower app on a fresh install with those changes."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**changes: object) -> Site:
            config = await make_install(tmp_path / "data", **changes)
            return await stack.enter_async_context(open_site(aiohttp_client, config))

        yield make


def _released(site: Site) -> bool:
    """Every upload's share of the limits was given back."""
    blobs = site.services.blobs
    return blobs.in_flight == 0 and blobs.staged_bytes == 0 and not blobs.staging_ids


# -- the minimum rate ---------------------------------------------------------------------------


def test_the_rate_is_averaged_over_each_window_of_an_injected_clock() -> None:
    clock = FakeClock()
    guard = RateGuard(min_bytes_per_second=1024, window_seconds=60, clock=clock)
    # 60 KiB in the first minute is enough (1 KiB/s), however bursty: all of it at the 59th second
    clock.advance(59)
    guard.note(60 * KiB)
    clock.advance(1)
    guard.note(0)  # the window closes here, and a new one starts
    # but 59 KiB over the next minute is not
    clock.advance(30)
    guard.note(30 * KiB)
    clock.advance(30)
    with pytest.raises(TooSlow):
        guard.note(29 * KiB)


async def _stalling_body(first: bytes, release: asyncio.Event) -> AsyncIterator[bytes]:
    yield first
    await release.wait()  # the client goes quiet, connection open


async def test_a_stalled_upload_is_aborted_with_408_and_nothing_kept(site_with: object) -> None:
    site: Site = await site_with(upload_rate_window_seconds=1)  # type: ignore[operator]
    boundary = "stall0boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nstalled\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + os.urandom(20 * KiB)
    release = asyncio.Event()
    try:
        # Given a client that sends the start of a file and then nothing more
        response = await asyncio.wait_for(site.client.post(
            "/en/submit", data=_stalling_body(head, release),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}), timeout=60)
        # Then, a window later, the server answers 408 with a clear page, and keeps nothing
        assert response.status == 408
        assert TOO_SLOW_TEXT in await response.text()
    finally:
        release.set()
    assert chunk_files(site.config) == set() and _released(site)


# -- uploads in flight and staged bytes ---------------------------------------------------------


async def test_uploads_over_the_in_flight_cap_are_refused_at_once_with_503(site_with: object) -> None:
    site: Site = await site_with(max_uploads_in_flight=1)  # type: ignore[operator]
    # Given one upload in flight
    holding = site.services.blobs.stage(byte_budget=KiB)
    # When another arrives, it is refused at once (nothing of it read), with Retry-After
    response = await site.client.post("/en/submit", data=report_form("wait", files={"a.bin": b"a"}))
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    page = await response.text()
    assert BUSY_TEXT in page and "Back button" in page and 'id="receipt"' not in page
    # and once the first is done, the next one goes through
    await holding.discard()
    assert (await site.client.post("/en/submit", data=report_form("now", files={"a.bin": b"a"}))).status == 200
    assert _released(site)
    with pytest.raises(UploadsBusy):
        site.services.blobs.stage(byte_budget=KiB), site.services.blobs.stage(byte_budget=KiB)


async def test_uploads_over_the_staged_bytes_cap_are_refused_with_503_and_leave_nothing(site_with: object) -> None:
    site: Site = await site_with(max_staged_bytes=48 * KiB)  # type: ignore[operator]
    response = await site.client.post("/en/submit", data=report_form("big", files={"a.bin": os.urandom(60 * KiB)}))
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    assert "The site is very busy right now" in await response.text()
    assert chunk_files(site.config) == set() and _released(site)
    # A file within the cap (padded to its bucket, 32 KiB) is stored
    assert (await site.client.post("/en/submit", data=report_form("ok", files={"a.bin": os.urandom(20 * KiB)}))
            ).status == 200
    assert _released(site)


# -- the disk reserve ---------------------------------------------------------------------------


async def test_below_the_reserve_whistleblowers_are_refused_before_any_read_and_caseworkers_still_reply(
    site_with: object, tmp_path: Path
) -> None:
    # Given more reserve than the disk has free (the real free space, from statvfs)
    site: Site = await site_with(disk_reserve_bytes=2**62)  # type: ignore[operator]
    # When a whistleblower submits, the body is refused at once
    response = await site.client.post("/en/submit", data=report_form("full", files={"a.bin": b"a"}))
    assert response.status == 503 and response.headers["Retry-After"] == "60"
    assert BUSY_TEXT in await response.text()
    assert chunk_files(site.config) == set() and _released(site)
    with pytest.raises(DiskLow):
        site.services.blobs.stage(byte_budget=KiB)
    # While the caseworker app, on an install with the same reserve, still stores a reply with a file
    config = await new_install(tmp_path / "staff", STAFF)
    async with Services.open(config) as services:
        report = await submit(services)
    async with serve_site(config.replace(disk_reserve_bytes=2**62)) as staff_site:
        alice = await staff_site.signed_in("alice")
        body = aiohttp.FormData(default_to_multipart=True)
        body.add_field("csrf_token", alice.csrf)
        body.add_field("text", "reply")
        body.add_field("files", b"attached", filename="r.txt", content_type="application/octet-stream")
        answer = await alice.client.post(f"/en/reports/{report.report_id}/reply", data=body, allow_redirects=False)
        assert answer.status == 303
        assert len(await staff_site.services.store.files(report.report_id)) == 1
