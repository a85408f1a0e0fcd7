"""Shared by the cleaning tests: the caseworker's view of what arrived, and the cleaner service
(dropbox/cleaner_service.py) started as the separate process deploy/dropbox-cleaner.service runs."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from dropbox.cleaner_service import probe_remote
from dropbox.cleaning import Policy
from tests.support.caseworker_site import Site as StaffSite
from tests.support.caseworker_site import downloads, only_report_url
from tests.support.metadata_files import MARKER, exiftool_values, unpacked

ROOT = Path(__file__).resolve().parent.parent.parent


async def assert_downloads_clean(staff: StaffSite, files: dict[str, bytes], folder: Path) -> None:
    """The caseworker downloads every file of the install's one report (the names sent, no more),
    and none carries the planted MARKER: not in its bytes (unpacked, for ZIP-based formats), not
    in what exiftool reads from a copy written under `folder`."""
    got = await downloads(staff, await only_report_url(staff))
    assert sorted(got) == sorted(files)
    for name, data in got.items():
        assert MARKER.encode() not in unpacked(data), name
        copy = folder / f"downloaded-{name}"
        copy.write_bytes(data)
        assert MARKER not in exiftool_values(copy), name


async def set_policy(staff: StaffSite, policy: Policy) -> None:
    """Give the default channel `policy`, as an admin would in the channel form."""
    store = staff.services.store
    channel = await store.channel("default")
    await store.update_channel(dataclasses.replace(channel, cleaning_policy=policy.value))


@dataclass
class CleanerProcess:
    """`python run.py cleaner --socket PATH`, running on its own (its own session, so killing it
    takes nothing else with it)."""

    socket: Path
    process: asyncio.subprocess.Process

    def children(self) -> list[int]:
        """The processes it started (its bwrap sandboxes), from /proc."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def kill(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)


@asynccontextmanager
async def cleaner_process() -> AsyncIterator[CleanerProcess]:
    """A cleaner service on a socket in a short temp folder (a Unix socket path has ~107 bytes),
    answering probes before this yields; killed on the way out."""
    with tempfile.TemporaryDirectory(prefix="cleaner-") as folder:
        path = Path(folder) / "cleaner.sock"
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "run.py"), "cleaner", "--socket", str(path), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        worker = CleanerProcess(socket=path, process=process)
        try:
            async with asyncio.timeout(120):
                while (problem := await asyncio.to_thread(probe_remote, path)) is not None:
                    assert process.returncode is None, f"the cleaner service exited: {problem}"
                    await asyncio.sleep(0.1)
            yield worker
        finally:
            worker.kill()
            await process.wait()
