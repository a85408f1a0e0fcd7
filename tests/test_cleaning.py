"""The cleaning engine (dropbox/cleaning.py over dropbox/sandbox.py) on real files and real tools.

No HTTP here: these pin what the sandbox does with each kind of file, what it refuses, and that
its limits hold. tests/test_cleaning_flow.py sends the same files through the real app.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dropbox.cleaning import Cleaner, CleaningSettings, Kind, Outcome, kind_of, suffix_of, summarise
from dropbox.config import MiB
from dropbox.sandbox import SandboxLimits, bwrap_argv
from tests.support.metadata_files import BUILDERS, MARKER, exiftool_values, unpacked
from tests.support.metadata_files import SANDBOX_LIMITS as LIMITS


def cleaner(**changes: object) -> Cleaner:
    limits = SandboxLimits(**{**LIMITS.__dict__, **{k: v for k, v in changes.items() if k in LIMITS.__dict__}})
    return Cleaner(CleaningSettings(max_bytes=int(changes.get("max_bytes", 32 * MiB)),  # type: ignore[arg-type]
                                    concurrency=int(changes.get("concurrency", 2)),  # type: ignore[arg-type]
                                    limits=limits))


async def run(c: Cleaner, name: str, data: bytes) -> tuple[object, bytes]:
    out = bytearray()

    async def source() -> AsyncIterator[bytes]:
        for start in range(0, len(data), MiB):
            yield data[start:start + MiB]

    async def sink(chunk: bytes) -> None:
        out.extend(chunk)

    result = await c.clean(name=name, size=len(data), source=source, sink=sink)
    return result, bytes(out)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
async def test_planted_metadata_is_found_and_removed(kind: str, tmp_path: Path) -> None:
    # Given a real file of each kind with identifying values planted in it
    name, data, planted = BUILDERS[kind](tmp_path)
    assert MARKER.encode() in data
    # When it goes through the sandbox
    result, cleaned = await run(cleaner(), name, data)
    # Then it comes back cleaned, the findings name what was planted, and no planted value is left:
    # not in the bytes, not in what exiftool reads
    assert result.outcome is Outcome.CLEANED, result  # type: ignore[attr-defined]
    shown = " ".join(f.value or "" for f in result.found)  # type: ignore[attr-defined]
    assert planted[0] in shown
    assert MARKER.encode() not in unpacked(cleaned)
    copy = tmp_path / ("cleaned-" + name)
    copy.write_bytes(cleaned)
    assert MARKER not in exiftool_values(copy)


async def test_gps_and_camera_are_named_in_a_photo(tmp_path: Path) -> None:
    name, data, _ = BUILDERS["jpeg"](tmp_path)
    result, _ = await run(cleaner(), name, data)
    kinds = {f.kind for f in result.found}  # type: ignore[attr-defined]
    assert {Kind.AUTHOR, Kind.GPS, Kind.CAMERA} <= kinds


async def test_a_truncated_pdf_is_failed_not_cleaned(tmp_path: Path) -> None:
    _, data, _ = BUILDERS["pdf"](tmp_path)
    result, _ = await run(cleaner(), "cut.pdf", data[: len(data) // 3])
    assert result.outcome is not Outcome.CLEANED  # type: ignore[attr-defined]


async def test_an_unknown_format_is_unsupported() -> None:
    result, _ = await run(cleaner(), "notes.xyz", b"my name is " + MARKER.encode())
    assert result.outcome is Outcome.UNSUPPORTED  # type: ignore[attr-defined]


async def test_zeros_named_jpg_is_not_cleaned() -> None:
    result, _ = await run(cleaner(), "zeros.jpg", bytes(2 * MiB))
    assert result.outcome is Outcome.FAILED  # type: ignore[attr-defined]


async def test_over_the_cap_is_too_large_without_starting_a_sandbox() -> None:
    # Given a 1 GiB file of zeros named .jpg (never built: the cap is decided on the size alone)
    def source() -> AsyncIterator[bytes]:
        raise AssertionError("a file over the cap must not be read")

    async def sink(_: bytes) -> None:
        raise AssertionError("nothing may come back")

    result = await cleaner(max_bytes=256 * MiB).clean(name="big.jpg", size=1024 * MiB, source=source, sink=sink)
    assert result.outcome is Outcome.TOO_LARGE


async def test_a_zip_bomb_hits_the_sandbox_disk_limit(tmp_path: Path) -> None:
    # Given a 300 KiB zip that unpacks to 256 MiB, and a sandbox whose tmpfs holds 16 MiB
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("zeros.txt", "w",
                                                                                   force_zip64=True) as member:
        for _ in range(256):
            member.write(bytes(MiB))
    data = bomb.read_bytes()
    assert len(data) < MiB
    # When it is cleaned, Then the limit stops it and the answer is "not cleaned"
    result, _ = await run(cleaner(tmpfs_bytes=16 * MiB), "bomb.zip", data)
    assert result.outcome in (Outcome.FAILED, Outcome.LIMIT, Outcome.TOO_LARGE)  # type: ignore[attr-defined]


async def test_a_file_larger_than_the_sandbox_tmpfs_is_refused_inside() -> None:
    # The cap check in Cleaner is bypassed (max_bytes high) so the sandbox's own tmpfs limit answers
    result, _ = await run(cleaner(max_bytes=64 * MiB, tmpfs_bytes=4 * MiB), "zeros.jpg", bytes(16 * MiB))
    assert result.outcome is Outcome.TOO_LARGE  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["png", "mp4"])
async def test_the_memory_limit_holds(kind: str, tmp_path: Path) -> None:
    # Given a sandbox allowed 32 MiB of address space (too little for Python with libmat2's bindings)
    name, data, _ = BUILDERS[kind](tmp_path)
    # When a real PNG (or video, which mat2 hands to ffmpeg) is cleaned in it, Then the process
    # dies of the limit and the answer is LIMIT
    result, _ = await run(cleaner(memory_bytes=32 * MiB), name, data)
    assert result.outcome is Outcome.LIMIT  # type: ignore[attr-defined]


async def test_the_wall_clock_limit_kills_a_stuck_cleaning() -> None:
    # Given a source that never ends (a stalled upload), When the deadline passes, Then TIMEOUT
    stop = asyncio.Event()

    async def forever() -> AsyncIterator[bytes]:
        yield b"x"
        await stop.wait()

    async def sink(_: bytes) -> None:
        return None

    result = await cleaner(wall_seconds=1.0).clean(name="slow.pdf", size=1, source=forever, sink=sink)
    assert result.outcome is Outcome.TIMEOUT


async def test_concurrency_is_bounded() -> None:
    # Given one slot, and a first cleaning holding it (its upload has not finished)
    c = cleaner(concurrency=1)
    release = asyncio.Event()
    started: list[str] = []

    def source_of(label: str) -> object:
        async def source() -> AsyncIterator[bytes]:
            started.append(label)
            yield b"hello"
            await release.wait()
        return source

    async def sink(_: bytes) -> None:
        return None

    first = asyncio.create_task(c.clean(name="a.txt", size=5, source=source_of("a"), sink=sink))  # type: ignore[arg-type]
    second = asyncio.create_task(c.clean(name="b.txt", size=5, source=source_of("b"), sink=sink))  # type: ignore[arg-type]
    while not started:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    # Then the second has not started reading: it waits for the slot
    assert started == ["a"]
    release.set()
    await asyncio.gather(first, second)
    assert started == ["a", "b"]


def _inside(command: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    argv = bwrap_argv(suffix="", tmpfs_bytes=4 * MiB)
    return subprocess.run([*argv[: argv.index("--") + 1], "/bin/sh", "-c", command], capture_output=True,
                          timeout=60, check=False, cwd=tmp_path)


def test_the_sandbox_has_no_network_and_no_data(tmp_path: Path) -> None:
    # Given a listener on the host's loopback and a data folder with a secret in it
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    secret = tmp_path / "data" / "secret"
    secret.parent.mkdir()
    secret.write_text("x")
    try:
        # When code inside the sandbox tries to reach either
        done = _inside(f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)' "
                       f"&& echo NET; cat {secret} && echo DATA; touch /usr/x && echo WROTE; id -u", tmp_path)
    finally:
        listener.close()
    out = done.stdout.decode()
    # Then none of it works, and it runs as nobody
    assert "NET" not in out and "DATA" not in out and "WROTE" not in out
    assert out.strip().endswith("65534")


def test_kinds_and_suffixes() -> None:
    assert kind_of("docProps/core.xml › dc:creator") is Kind.AUTHOR
    assert kind_of("GPSLatitude") is Kind.GPS
    assert kind_of("SerialNumber") is Kind.CAMERA
    assert kind_of("Company") is Kind.ORGANISATION
    assert summarise({"a › dc:creator": "Jo", "Creator": "Jo"}) == summarise({"Creator": "Jo"})
    assert suffix_of("Report.DOCX") == ".docx"
    assert suffix_of("../../etc/passwd") == ""
    assert suffix_of(".bashrc") == ""
    assert suffix_of("x.a b") == ""
