"""The cleaner as a service of its own (dropbox/cleaner_service.py, deploy/dropbox-cleaner.*).

The service runs here as the separate process its unit starts (`python run.py cleaner --socket
PATH`); the app is pointed at it with `cleaner_socket` and files go in over HTTP, as in production
where the app's own unit forbids the namespaces bwrap needs.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dropbox.cleaner_service import probe_remote
from dropbox.config import Config, MiB
from dropbox.sandbox import encode_frame
from tests.support.caseworker_site import Site as StaffSite
from tests.support.caseworker_site import downloads, only_report_url, serve_site
from tests.support.cleaning import CleanerProcess, assert_downloads_clean, cleaner_process
from tests.support.forms import receipt_in, report_form, visible_text
from tests.support.installs import STAFF, new_install
from tests.support.live_server import AiohttpClient
from tests.support.metadata_files import BUILDERS, MARKER, pdf_bytes
from tests.support.whistleblower_site import Site, open_site

UNAVAILABLE = "Not cleaned: the checker is not available right now. The file was kept as sent."


@pytest.fixture(name="worker")
async def worker_fixture() -> AsyncIterator[CleanerProcess]:
    async with cleaner_process() as worker:
        yield worker


@pytest.fixture(name="sites")
async def sites_fixture(aiohttp_client: AiohttpClient, tmp_path: Path,
                        worker: CleanerProcess) -> AsyncIterator[tuple[Site, StaffSite]]:
    config: Config = await new_install(tmp_path / "data", STAFF, max_file_bytes=8 * MiB, max_submission_bytes=32 * MiB,
                                       cleaner_socket=worker.socket)
    async with open_site(aiohttp_client, config) as site, serve_site(config) as staff:
        yield site, staff


def many_pages_pdf(pages: int) -> bytes:
    """A PDF of `pages` pages with the author planted: mat2 renders every page anew, so cleaning it
    takes seconds (long enough to kill the service while it is at it)."""
    content = b"BT /F1 18 Tf 40 100 Td (Budget 2026) Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % (6 + i) for i in range(pages)),
                                                             pages),
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Author (Writer {MARKER}) >>".encode()]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 3 0 R "
                b"/Resources << /Font << /F1 4 0 R >> >> >>"] * pages
    return pdf_bytes(objects, info=5)


async def test_the_app_cleans_through_the_cleaner_service(sites: tuple[Site, StaffSite], tmp_path: Path) -> None:
    # Given the app pointed at a cleaner service running as a process of its own
    site, staff = sites
    assert staff.services.cleaning_problem is None
    built = [BUILDERS["jpeg"](tmp_path), BUILDERS["docx"](tmp_path)]
    files = {name: data for name, data, _ in built}
    # When a JPEG and a DOCX with planted names, serials and a GPS position are sent over HTTP
    response = await site.client.post("/en/submit", data=report_form("see files", files=files))
    page = await response.text()
    assert response.status == 200, page
    receipt_in(page)
    # Then the receipt page says both were cleaned, and the caseworker's downloads carry none of it
    assert visible_text(page).count("Cleaned: identifying metadata was removed.") == 2
    await assert_downloads_clean(staff, files, tmp_path)


async def test_killing_the_service_mid_clean_keeps_the_upload_as_sent(
        sites: tuple[Site, StaffSite], worker: CleanerProcess) -> None:
    site, staff = sites
    pdf = many_pages_pdf(200)
    # Given a submission whose file the service is cleaning (its sandbox has started)
    sending = asyncio.create_task(site.client.post("/en/submit", data=report_form("x", files={"long.pdf": pdf})))
    async with asyncio.timeout(120):
        while not worker.children():
            assert not sending.done(), await (await sending).text()
            await asyncio.sleep(0.01)
    # When the service is killed (its sandbox dies with it)
    worker.kill()
    response = await sending
    page = await response.text()
    # Then the whistleblower gets a receipt, the file is flagged, not lost, and never a 500
    assert response.status == 200, page
    receipt_in(page)
    assert UNAVAILABLE in visible_text(page)
    got = await downloads(staff, await only_report_url(staff))
    assert got == {"long.pdf": pdf}
    # And with the service gone, the next upload is kept and flagged the same way
    response = await site.client.post("/en/submit", data=report_form("y", files={"a.pdf": pdf[:100]}))
    assert response.status == 200 and UNAVAILABLE in visible_text(await response.text())


def _ask(path: Path, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(60)
        conn.connect(str(path))
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


async def test_garbage_on_the_socket_starts_no_sandbox_and_it_keeps_serving(worker: CleanerProcess) -> None:
    # Given requests that are not cleaning requests, or lie about their limits
    bad = [encode_frame({"op": "clean", "suffix": ".pdf", "size": 1, "limits": {"memory_bytes": "lots"}}),
           encode_frame({"op": "nonsense"}), b"\xff\xff\xff\xffnot a frame"]
    for request in bad:
        # When each is sent, Then the connection is closed with no answer (no sandbox was started)
        assert await asyncio.to_thread(_ask, worker.socket, request) == b""
    # And the service still answers
    assert await asyncio.to_thread(probe_remote, worker.socket) is None


async def test_a_socket_nobody_listens_on_is_reported(tmp_path: Path) -> None:
    problem = await asyncio.to_thread(probe_remote, tmp_path / "nothing.sock")
    assert problem is not None and "does not answer" in problem
