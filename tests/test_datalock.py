"""One server (or writing command) per data folder: DATA/lock, against real server processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.data_checks import Sent, assert_receipts_open, digest
from tests.support.forms import find_receipt_digits, multipart, submission_fields
from tests.support.http_client import new_client
from tests.support.installs import new_install
from tests.support.server_process import REPO_ROOT, free_port, running_server


async def run_cli(*args: str, stdin: bytes = b"") -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", *args, cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(stdin), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_second_serve_is_refused_and_the_first_keeps_every_upload(tmp_path: Path) -> None:
    # Given a serving install with an upload half-way through its body
    config = await new_install(tmp_path / "data")
    content = b"in flight " * 300_000  # 3 MB
    body, content_type = multipart(submission_fields(text="half sent", files=[("half.bin", content)]))
    resume = asyncio.Event()

    async def halves() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        await resume.wait()
        yield body[len(body) // 2:]

    with running_server(config.data_dir, tmp_path / "server.log") as server:
        async with new_client() as client:
            headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
            upload = asyncio.create_task(client.post(f"{server.url}/en/submit", data=halves(), headers=headers))
            await asyncio.sleep(0)  # let the request start (the refusal below does not depend on it)

            # When a second serve starts on the same folder (other ports), and a writing command runs
            status, err = await run_cli("serve", "--no-tor", "--data", str(config.data_dir),
                                        "--port", str(free_port()), "--admin-port", str(free_port()))
            # Then it is refused with one line naming the first process, exit 2
            assert status == 2, err
            assert f"process {server.pid}" in err and "in use" in err, err
            status, err = await run_cli("caseworker", "add", "mallory", "--passphrase-stdin", "--data",
                                        str(config.data_dir), stdin=b"ochre tram kettle ferry basalt lantern\n")
            assert status == 2 and f"process {server.pid}" in err, err
            # while a reading command works beside the server
            status, err = await run_cli("caseworker", "list", "--data", str(config.data_dir))
            assert status == 0, err

            # And the first server finishes the upload and its receipt opens the file
            resume.set()
            async with await upload as response:
                assert response.status == 200
                receipt = find_receipt_digits(await response.text())
            assert receipt is not None
    await assert_receipts_open(config, [Sent(receipt=receipt, text="half sent",
                                             files={"half.bin": digest(content)})])


async def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    # A server killed with SIGKILL leaves the lock file behind, but not the lock: a restart works.
    config = await new_install(tmp_path / "data")
    with running_server(config.data_dir, tmp_path / "server.log") as server:
        server.restart()
        assert server.running
    status, err = await run_cli("caseworker", "disable", "alice", "--data", str(config.data_dir))
    assert status == 0, err
