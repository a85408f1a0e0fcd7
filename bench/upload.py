"""Part 1: sealed upload ingest, side by side with the raw aiohttp ceiling and OnionShare.

The same bytes go to every server in the same run, in interleaved repetitions (drop box, raw,
OnionShare, drop box, ...) so a noisy neighbour hurts all of them alike. Before each upload the
previous one's files are deleted and `os.sync()` flushes what is still dirty, so no run pays for
its predecessor's writeback.

Throughput is end to end, from the first byte sent until the answer was read: for the drop box
that includes the fsync of the sealed file, the database commit and the one Argon2id run that
derives the receipt's keys, since the receipt is only shown once it is durable.
Peak RSS is the server process tree's, sampled every 50 ms: during the body transfer (what must
not grow with the file) and over the whole request (which adds the Argon2id run's memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from bench import onionshare
from bench.client import UploadFile, form_fields, hidden_fields, receipt_from, report_text, slices, upload
from bench.core import secretstream_over_file
from bench.measure import RssSampler, median, mib_per_s, own_cpu_seconds, tree_cpu_seconds
from bench.servers import Dropbox, Server, dropbox_running, start_raw
from dropbox.config import Config, MiB
from dropbox.storage import Store

log = logging.getLogger(__name__)

#: waitress (OnionShare's web server) refuses bodies over 1 GiB; what is sent to it instead.
ONIONSHARE_FALLBACK_BYTES = 1023 * MiB


@dataclass(frozen=True)
class Case:
    name: str
    files: int
    file_bytes: int

    @property
    def total(self) -> int:
        return self.files * self.file_bytes


@dataclass
class Run:
    ok: bool
    status: int
    bytes: int
    seconds: float
    mib_s: float
    mib_s_body: float
    rss_before_mib: float
    peak_rss_stream_mib: float
    peak_rss_mib: float
    #: CPU seconds the server process tree and this client process spent on the upload.
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    error: str = ""


@dataclass
class Target:
    """One server under test and how to talk to it."""

    name: str
    server: Server
    url: str
    file_field: str
    ok_status: int
    prepare: Callable[[aiohttp.ClientSession], asyncio.Future[list[tuple[str, str]]]] | None = None
    #: Given the answer's body and the bytes sent, what is wrong with it ("" when nothing).
    check: Callable[[str, int], str] = lambda _body, _sent: ""
    clean: Callable[[], None] = lambda: None
    runs: dict[str, list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _empty(folder: Path) -> None:
    """Delete what a server stored, keeping the folder itself."""
    if not folder.exists():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


async def upload_once(target: Target, case: Case, data: Path, *, limit: int | None = None, sync: bool = True) -> Run:
    """One upload of `case` (at most `limit` bytes) to `target`, with the server's RSS sampled."""
    total = min(case.total, limit) if limit else case.total
    per_file = total // case.files
    files: list[UploadFile] = slices(data, count=case.files, size=per_file, field=target.file_field, prefix=case.name)
    target.clean()
    if sync:
        await asyncio.to_thread(os.sync)
    await _server_idle(target.server.pid)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        fields = [("text", report_text(2048, 0))]
        if target.prepare is not None:
            fields = await target.prepare(session)
        server_cpu, client_cpu = tree_cpu_seconds(target.server.pid), own_cpu_seconds()
        with RssSampler(target.server.pid) as rss:
            try:
                result = await upload(session, target.url, fields=fields, files=files)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                return Run(False, 0, total, 0, 0, 0, rss.first_mib(), rss.peak_mib(), rss.peak_mib(),
                           error=f"{type(e).__name__}: {e}")
        server_cpu = tree_cpu_seconds(target.server.pid) - server_cpu
        client_cpu = own_cpu_seconds() - client_cpu
    error = "" if result.status == target.ok_status else f"HTTP {result.status}"
    error = error or target.check(result.body, total)
    return Run(ok=not error, status=result.status, bytes=total, seconds=result.seconds,
               mib_s=mib_per_s(total, result.seconds), mib_s_body=mib_per_s(total, result.body_sent_seconds),
               rss_before_mib=rss.first_mib(), peak_rss_stream_mib=rss.peak_mib(until=result.body_sent_at),
               peak_rss_mib=rss.peak_mib(), server_cpu_s=server_cpu, client_cpu_s=client_cpu, error=error)


async def _server_idle(pid: int, *, share: float = 0.05, limit_s: float = 120) -> None:
    """Wait (at most `limit_s`) until the server's process tree uses under `share` of a core:
    the drop box derives its stock of receipts (Argon2id, 256 MiB each) after it starts and after
    each submission, and an upload sent meanwhile would be measured with that work beside it."""
    deadline = time.monotonic() + limit_s
    last = tree_cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        now = tree_cpu_seconds(pid)
        if now - last < share:
            return
        last = now


def summarise(runs: list[Run]) -> dict[str, object]:
    good = [r for r in runs if r.ok]
    if not good:
        return {"ok": False, "errors": sorted({r.error for r in runs}), "runs": [asdict(r) for r in runs]}
    return {
        "ok": True,
        "bytes": good[0].bytes,
        "mib_s": median(r.mib_s for r in good),
        "mib_s_body": median(r.mib_s_body for r in good),
        "seconds": median(r.seconds for r in good),
        "rss_before_mib": max(r.rss_before_mib for r in good),
        "peak_rss_stream_mib": max(r.peak_rss_stream_mib for r in good),
        "peak_rss_mib": max(r.peak_rss_mib for r in good),
        "server_cpu_s_per_gib": median(r.server_cpu_s / (r.bytes / 2**30) for r in good),
        "client_cpu_s_per_gib": median(r.client_cpu_s / (r.bytes / 2**30) for r in good),
        "runs": [asdict(r) for r in runs],
    }


# --- the three servers -----------------------------------------------------------------------


def dropbox_target(box: Dropbox) -> Target:
    async def prepare(session: aiohttp.ClientSession) -> list[tuple[str, str]]:
        async with session.get(f"{box.base}/en/submit") as response:
            page = await response.text()
        hidden = hidden_fields(page, "/en/submit") if response.status == 200 else {}
        return form_fields(hidden, {"channel": "default", "text": report_text(2048, 0)})

    def check(body: str, sent: int) -> str:
        return "" if receipt_from(body) else "no receipt on the page"

    # No clean step: file contents live in the database since schema 4, and reports are deleted
    # only through their retention, so the rounds accumulate there (about the upload's size each).
    return Target("drop box (sealed)", box.server, f"{box.base}/en/submit", "files", 200,
                  prepare=prepare, check=check)  # type: ignore[arg-type]


def raw_target(server: Server, folder: Path) -> Target:
    def check(body: str, sent: int) -> str:
        try:
            stored = json.loads(body)["bytes"]
        except (ValueError, KeyError, TypeError):
            return "not the raw server's answer"
        return "" if stored == sent else f"stored {stored} of {sent} bytes"

    return Target("raw aiohttp + fsync", server, f"{server.base}/upload", "files", 200, check=check,
                  clean=lambda: _empty(folder))


def onionshare_target(server: Server, workdir: Path) -> Target:
    def check(body: str, sent: int) -> str:
        stored = onionshare.received_bytes(workdir)
        return "" if stored == sent else f"stored {stored} of {sent} bytes"

    return Target(f"OnionShare {onionshare.VERSION}", server, f"{server.base}{onionshare.UPLOAD_PATH}",
                  onionshare.FILE_FIELD, 302, check=check, clean=lambda: _empty(workdir / "received"))


async def run_case(targets: list[Target], case: Case, data: Path, repeat: int) -> None:
    limits: dict[str, int | None] = {t.name: None for t in targets}
    for round_ in range(repeat):
        for target in targets:
            run = await upload_once(target, case, data, limit=limits[target.name])
            if run.status == 413 and target.file_field == onionshare.FILE_FIELD and limits[target.name] is None:
                limits[target.name] = ONIONSHARE_FALLBACK_BYTES
                target.notes.append(f"{case.name}: refused {case.total // MiB} MiB with 413 (waitress "
                                    f"max_request_body_size); sent the first {ONIONSHARE_FALLBACK_BYTES // MiB} MiB")
                run = await upload_once(target, case, data, limit=limits[target.name])
            target.runs.setdefault(case.name, []).append(run)
            log.info("upload %s %s round %d: %s", case.name, target.name, round_ + 1,
                     f"{run.mib_s:.0f} MiB/s, peak RSS {run.peak_rss_stream_mib:.0f}/{run.peak_rss_mib:.0f} MiB"
                     if run.ok else run.error)


def cleaning_not_requested(data_dir: Path) -> None:
    """Set the install's channels to let the whistleblower choose cleaning; the benchmark's form
    never ticks the box. This part measures the sealed upload path: cleaning runs every file
    through a sandbox (0.3 s or more each, `--parts cleaning` measures it), which the raw
    baseline and OnionShare do not do either."""
    async def go() -> None:
        store = await Store.open(Config(data_dir=data_dir).db_path)
        try:
            for channel in await store.channels():
                await store.update_channel(dataclasses.replace(channel, cleaning_policy="choose"))
        finally:
            await store.close()
    asyncio.run(go())


@contextlib.contextmanager
def _servers(workdir: Path, *, with_onionshare: bool, onionshare_venv: Path) -> Iterator[list[Target]]:
    logs = workdir / "logs"
    with contextlib.ExitStack() as stack:
        box = stack.enter_context(dropbox_running(workdir / "dropbox", log=logs / "dropbox-upload.log",
                                                  setup=cleaning_not_requested))
        targets = [dropbox_target(box)]
        raw_dir = workdir / "raw-uploads"
        raw = start_raw(raw_dir, log=logs / "raw.log")
        stack.callback(raw.stop)
        raw.wait_ready()
        targets.append(raw_target(raw, raw_dir))
        if with_onionshare:
            exe = onionshare.ensure_installed(onionshare_venv, log=logs / "onionshare-install.log")
            share = onionshare.start(exe, workdir=workdir / "onionshare", log=logs / "onionshare.log")
            stack.callback(share.stop)
            targets.append(onionshare_target(share, workdir / "onionshare"))
        try:
            yield targets
        finally:
            for t in targets:
                with contextlib.suppress(OSError):
                    t.clean()


def run(workdir: Path, data: Path, *, cases: list[Case], repeat: int, with_onionshare: bool,
        onionshare_venv: Path) -> dict[str, object]:
    """Every case against every server; returns the figures by case, then by server."""
    results: dict[str, object] = {}
    with _servers(workdir, with_onionshare=with_onionshare, onionshare_venv=onionshare_venv) as targets:
        for case in cases:
            asyncio.run(run_case(targets, case, data, repeat))
            by_target: dict[str, object] = {t.name: {**summarise(t.runs[case.name]),
                                                     "notes": [n for n in t.notes if n.startswith(case.name)]}
                                            for t in targets}
            by_target["secretstream alone"] = secretstream_over_file(data, length=case.total)
            results[case.name] = by_target
    return results
