"""The data folder fills up, or turns read-only, while a whistleblower is uploading.

The data folder lives on a small ext4 filesystem of its own (tests/support/full_disk.py; needs root, as
CI has). Whatever the disk does: the whistleblower sees a clear error page (503 or 507, never a
500 or a traceback), no receipt is shown for a report that was not stored, nothing half-written
stays behind, earlier reports are intact, and once space returns the running server accepts
reports again without a restart (after a disk error, after the operator's repair and restart).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.data_checks import Sent, assert_receipts_open, assert_settled, db_snapshot, digest, leftover_staged
from tests.support.forms import find_csrf, multipart
from tests.support.full_disk import DiskUnavailable, LoopDisk, MiB, loop_disk
from tests.support.http_client import (
    Answer,
    caseworker_login,
    get,
    mailbox_login,
    new_client,
    open_inbox,
    post_body,
    reply,
    submit,
)
from tests.support.installs import ALICE, new_install
from tests.support.server_process import ServerProcess

DISK_ERRORS = (503, 507)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[LoopDisk]:
    try:
        with loop_disk(tmp_path / "disk", size_mib=48) as mounted:
            yield mounted
    except DiskUnavailable as e:
        pytest.fail(f"cannot run the disk-trouble tests here: {e}")


async def _eventually(condition: Callable[[], bool], *, timeout: float = 10, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.02)


def _assert_clear_error(answer: Answer, what: str) -> None:
    assert answer.status in DISK_ERRORS, f"{what}: answered {answer.status}, expected 503 or 507"
    assert "Traceback" not in answer.body and 'File "' not in answer.body
    assert 'id="receipt"' not in answer.body


async def test_full_disk_mid_upload_shows_an_error_keeps_earlier_reports_and_recovers_when_space_returns(
    disk: LoopDisk, tmp_path: Path
) -> None:
    config = await new_install(disk.mountpoint / "data")
    server = ServerProcess(data_dir=config.data_dir, log_path=tmp_path / "server.log")
    await asyncio.to_thread(server.start)
    try:
        async with new_client() as client:
            # Given an earlier report with a file
            first_file = os.urandom(200_000)
            earlier = await submit(client, server.url, text="earlier report", files=[("earlier.bin", first_file)])
            assert earlier.receipt, f"the earlier submission answered {earlier.answer.status}"
            stored = [Sent(earlier.receipt, "earlier report", {"earlier.bin": digest(first_file)})]

            # When the disk fills up while a 6 MiB file is streaming in
            disk.fill(leave_bytes=1 * MiB)
            before = db_snapshot(config)
            big = await submit(client, server.url, text="does not fit", files=[("big.bin", os.urandom(6 * MiB))],
                               slow=(24, 0.01))
            # Then a clear error page, no receipt, no row, and its partial ciphertext is gone
            _assert_clear_error(big.answer, "upload onto a full disk")
            assert big.receipt is None
            assert db_snapshot(config) == before
            await _eventually(lambda: leftover_staged(config) == [], what="no chunk left of the failed upload")
            # and the earlier report still opens (the mailbox needs no new space to be read)
            inbox = await open_inbox(client, server.url, earlier.receipt)
            assert "earlier report" in inbox

            # When the disk is completely full, so even the database cannot grow (a long text)
            csrf = find_csrf(inbox)
            assert csrf
            disk.fill(leave_bytes=0)
            before = db_snapshot(config)
            full = await submit(client, server.url, text="x" * 90_000)
            _assert_clear_error(full.answer, "text-only report onto a full disk")
            answered = await reply(client, server.url, csrf=csrf, text="y" * 90_000,
                                   files=[("more.bin", os.urandom(MiB))])
            _assert_clear_error(answered, "mailbox reply onto a full disk")
            assert db_snapshot(config) == before
            await _eventually(lambda: leftover_staged(config) == [], what="no chunk left of the failed reply")

            # When space returns, the same running server accepts reports and replies again
            disk.release()
            again_file = os.urandom(300_000)
            again = await submit(client, server.url, text="after space returned",
                                 files=[("again.bin", again_file)])
            assert again.receipt, f"after space returned the submission answered {again.answer.status}"
            stored.append(Sent(again.receipt, "after space returned", {"again.bin": digest(again_file)}))
            inbox = await open_inbox(client, server.url, again.receipt)
            answered = await reply(client, server.url, csrf=find_csrf(inbox) or "", text="reply after")
            assert answered.status == 303
            stored[-1].replies.append(("reply after", {}))
        assert "Traceback" not in server.log_text()
    finally:
        server.kill()
    assert_settled(config)
    await assert_receipts_open(config, stored)


async def test_disk_turning_read_only_mid_upload_shows_an_error_and_loses_nothing_stored(
    disk: LoopDisk, tmp_path: Path
) -> None:
    config = await new_install(disk.mountpoint / "data")
    server = ServerProcess(data_dir=config.data_dir, log_path=tmp_path / "server.log")
    await asyncio.to_thread(server.start)
    try:
        async with new_client() as client:
            # Given an earlier report
            first_file = os.urandom(100_000)
            earlier = await submit(client, server.url, text="earlier report", files=[("earlier.bin", first_file)])
            assert earlier.receipt
            before = db_snapshot(config)

            # When the disk turns read-only while a file is streaming in (larger than one batch of
            # staged chunks, so the first batch is in the database while the rest still arrives)
            upload = asyncio.create_task(submit(client, server.url, text="cut off",
                                                files=[("cut.bin", os.urandom(12 * MiB))], slow=(120, 0.02)))
            await _eventually(lambda: leftover_staged(config) != [], what="the upload reaching the database")
            disk.fail_read_only()
            cut = await upload
            # Then a clear error and no receipt
            _assert_clear_error(cut.answer, "upload when the disk turned read-only")
            assert cut.receipt is None
            # and a new submission is refused just as clearly
            refused = await submit(client, server.url, text="while read-only")
            _assert_clear_error(refused.answer, "submission while read-only")
            assert db_snapshot(config) == before
            # and the earlier report's mailbox does not crash (its page, or a clear error)
            login_then = await _mailbox_status(client, server.url, earlier.receipt)
            assert login_then in (200, *DISK_ERRORS), f"mailbox on a read-only disk answered {login_then}"
        assert "Traceback" not in server.log_text()
    finally:
        server.kill()

    # When the operator repairs the filesystem and starts the server again
    disk.repair()
    await asyncio.to_thread(server.start)
    try:
        # Then what was cut off left nothing, the earlier report is whole, and reports are accepted
        assert_settled(config)
        async with new_client() as client:
            inbox = await open_inbox(client, server.url, earlier.receipt)
            assert "earlier report" in inbox and "earlier.bin" in inbox
            after = await submit(client, server.url, text="after repair")
            assert after.receipt
    finally:
        server.kill()
    assert_settled(config)
    await assert_receipts_open(config, [Sent(earlier.receipt, "earlier report", {"earlier.bin": digest(first_file)}),
                                        Sent(after.receipt, "after repair", {})])


async def _mailbox_status(client: aiohttp.ClientSession, base: str, receipt: str) -> int:
    client.cookie_jar.clear()
    login = await mailbox_login(client, base, receipt)
    if login.status != 303:
        return login.status
    return (await get(client, f"{base}/en/mailbox/inbox")).status


async def test_below_the_reserve_whistleblowers_get_a_clear_503_and_caseworkers_still_reply(
    disk: LoopDisk, tmp_path: Path
) -> None:
    config = await new_install(disk.mountpoint / "data")
    server = ServerProcess(data_dir=config.data_dir, log_path=tmp_path / "server.log",
                           config_changes={"disk_reserve_bytes": 12 * MiB})
    await asyncio.to_thread(server.start)
    try:
        async with new_client() as client, new_client() as staff:
            # Given a report, and then a disk filled by whistleblowers down to the reserve
            earlier = await submit(client, server.url, text="earlier report", files=[("a.bin", os.urandom(1000))])
            assert earlier.receipt
            disk.fill(leave_bytes=8 * MiB)
            # When a whistleblower submits: refused at once, clearly, nothing stored
            before = db_snapshot(config)
            refused = await submit(client, server.url, text="no room", files=[("b.bin", os.urandom(MiB))])
            assert refused.answer.status == 503 and refused.answer.headers.get("Retry-After") == "60"
            _assert_clear_error(refused.answer, "submission below the reserve")
            assert db_snapshot(config) == before
            # Then a caseworker still signs in and replies with a file, stored in the reserve
            login = await caseworker_login(staff, server.admin_url, ALICE.name, ALICE.passphrase)
            assert login.status == 303
            listing = await get(staff, f"{server.admin_url}/en/reports")
            (report_id,) = set(re.findall(r"/en/reports/([0-9a-f]{32})", listing.body))
            page = await get(staff, f"{server.admin_url}/en/reports/{report_id}")
            body, content_type = multipart([("csrf_token", find_csrf(page.body) or "", None),
                                            ("text", "we are on it", None), ("files", os.urandom(MiB), "r.bin")])
            answered = await post_body(staff, f"{server.admin_url}/en/reports/{report_id}/reply", body, content_type)
            assert answered.status == 303, answered.status
            assert db_snapshot(config)["files"] == before["files"] + 1
            # and the whistleblower reads it
            inbox = await open_inbox(client, server.url, earlier.receipt)
            assert "we are on it" in inbox and "r.bin" in inbox
        assert "Traceback" not in server.log_text()
    finally:
        server.kill()
    assert_settled(config)
