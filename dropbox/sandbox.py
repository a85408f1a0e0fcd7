"""Runs the metadata cleaner (dropbox/sandbox_driver.py: libmat2 + exiftool) in a bubblewrap sandbox.

The parsers behind mat2 (poppler, gdk-pixbuf, mutagen, zipfile) read hostile files, so they get
a process of their own with nothing worth taking and nothing to break:

* namespaces: a new user (uid/gid 65534, no capabilities), PID, IPC, UTS, cgroup and network
  namespace; the network namespace has only its own loopback, so nothing can be sent anywhere;
* files: /usr read-only (the programs), a private tmpfs of bounded size at /tmp as the only
  writable place and a minimal /dev, no /proc; the data folder, /etc (beyond the linker cache),
  /home, /root and /work are simply not there;
* limits set before bwrap starts and inherited by everything inside: address space
  (RLIMIT_AS), CPU seconds (RLIMIT_CPU), largest file (RLIMIT_FSIZE), no core dumps; a wall
  clock deadline after which the whole process group is killed (bwrap's PID namespace takes
  every child with it, and --die-with-parent covers our own death).

The plaintext goes in through a pipe, lands on the sandbox's tmpfs (memory) and the cleaned copy
comes back through a pipe; the caller seals it as it arrives. Nothing here writes to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import shutil
import signal
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DRIVER = Path(__file__).with_name("sandbox_driver.py")
#: The interpreter Debian's libmat2 is installed for (not the venv's).
SYSTEM_PYTHON = "/usr/bin/python3"
_HEADER_LEN = struct.Struct(">I")
#: The driver's JSON header is bounded (values and entries are cut short); past this it is lying.
MAX_HEADER_BYTES = 1024 * 1024
_PIPE_CHUNK = 1024 * 1024


class SandboxError(Exception):
    """The sandboxed cleaner gave no usable answer. The file is never passed off as cleaned."""

    reason = "failed"


class SandboxUnavailable(SandboxError):
    """bwrap, mat2 or exiftool is not installed here, or bwrap cannot create its namespaces."""

    reason = "unavailable"


class SandboxTimeout(SandboxError):
    """The cleaner ran past its wall-clock deadline and was killed."""

    reason = "timeout"


class SandboxLimitHit(SandboxError):
    """The cleaner died of a resource limit (memory, CPU seconds, file size) or a crash."""

    reason = "limit"


#: Each error by the reason it travels under (the cleaner service sends the reason, see
#: dropbox/cleaner_service.py); an unknown reason is the plain SandboxError.
ERRORS: dict[str, type[SandboxError]] = {
    cls.reason: cls for cls in (SandboxError, SandboxUnavailable, SandboxTimeout, SandboxLimitHit)}


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int
    cpu_seconds: int
    wall_seconds: float
    tmpfs_bytes: int


def bwrap_argv(*, suffix: str, tmpfs_bytes: int) -> list[str]:
    """The full command line; written out once so tests and docs/SECURITY.md can check it."""
    argv = [
        "bwrap",
        "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
        "--cap-drop", "ALL", "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
        "--ro-bind-try", "/etc/mime.types", "/etc/mime.types",
        "--dev", "/dev",
        "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",  # noqa: S108 - the sandbox's own private tmpfs
        "--ro-bind", str(DRIVER), "/driver.py",
        "--chdir", "/tmp", "--clearenv",  # noqa: S108 - the sandbox's own private tmpfs
        "--setenv", "PATH", "/usr/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",  # noqa: S108 - the sandbox's own private tmpfs
        "--",
        SYSTEM_PYTHON, "-I", "/driver.py", suffix,
    ]
    return argv


def available() -> bool:
    """Whether every tool the cleaner needs is installed (scripts/test and scripts/run install them)."""
    return bool(shutil.which("bwrap")) and Path(SYSTEM_PYTHON).exists() and bool(shutil.which("exiftool")) \
        and Path("/usr/lib/python3/dist-packages/libmat2").is_dir()


def probe() -> str | None:
    """Start one empty sandbox, as the server does at start-up: None if it works, else why not.
    Under a service manager that forbids namespaces or setrlimit (deploy/dropbox.service must
    allow them), every file would otherwise be kept as sent, flagged "checker not available"."""
    if not available():
        return "bwrap, mat2 or exiftool is missing"
    argv = bwrap_argv(suffix="", tmpfs_bytes=1024 * 1024)
    try:
        done = subprocess.run([*argv[: argv.index("--") + 1], "/usr/bin/true"], capture_output=True,  # noqa: S603
                              timeout=30, check=False,
                              preexec_fn=_limiter(SandboxLimits(1 << 30, 10, 30, 1024 * 1024)))  # noqa: PLW1509
    except (OSError, subprocess.SubprocessError) as e:
        return type(e).__name__
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip()[:200] or f"exit {done.returncode}"
    return None


def _limiter(limits: SandboxLimits) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.tmpfs_bytes, limits.tmpfs_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


async def run_cleaner(
    *,
    source: AsyncIterator[bytes],
    suffix: str,
    limits: SandboxLimits,
    sink: Callable[[bytes], Awaitable[None]],
    on_header: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Feed `source` to the sandboxed driver; hand the cleaned bytes to `sink` as they come.

    Returns the driver's header. When its status is "cleaned", `sink` has received exactly the
    cleaned file (length checked against the header and the exit status); when it raises, or the
    status is anything else, whatever `sink` received must be thrown away by the caller.
    `on_header` sees the (checked) header before the first cleaned byte: the cleaner service
    forwards it that way, so its client reads the same framing as this reads from the driver.
    """
    if not available():
        raise SandboxUnavailable("bwrap, mat2 or exiftool is missing")
    try:
        async with asyncio.timeout(limits.wall_seconds):
            return await _run(source=source, suffix=suffix, limits=limits, sink=sink, on_header=on_header)
    except TimeoutError as e:
        raise SandboxTimeout(f"no answer within {limits.wall_seconds} s") from e


async def _run(*, source: AsyncIterator[bytes], suffix: str, limits: SandboxLimits,
               sink: Callable[[bytes], Awaitable[None]],
               on_header: Callable[[dict[str, Any]], Awaitable[None]] | None) -> dict[str, Any]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *bwrap_argv(suffix=suffix, tmpfs_bytes=limits.tmpfs_bytes),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_limiter(limits), start_new_session=True, limit=_PIPE_CHUNK,
        )
    except (OSError, subprocess.SubprocessError) as e:
        # No bwrap, or the limits could not be set (a seccomp filter without setrlimit): never
        # run the parsers unconfined; the file is kept as sent and flagged.
        raise SandboxUnavailable(type(e).__name__) from e
    assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - PIPE was asked for
    feeder = asyncio.create_task(_feed(proc.stdin, source))
    try:
        header = await read_header(proc.stdout)
        if on_header is not None:
            await on_header(header)
        received = 0
        while chunk := await proc.stdout.read(_PIPE_CHUNK):
            received += len(chunk)
            await sink(chunk)
        await feeder
        code = await proc.wait()
    except BaseException:
        feeder.cancel()
        _kill(proc)
        with contextlib.suppress(ProcessLookupError, asyncio.CancelledError):
            await asyncio.shield(proc.wait())
        raise
    if code != 0:
        raise SandboxLimitHit(f"cleaner exited with {code}")
    if header.get("status") == "cleaned" and received != header.get("size"):
        raise SandboxLimitHit("cleaned copy came back truncated")
    return header


async def _feed(stdin: asyncio.StreamWriter, source: AsyncIterator[bytes]) -> None:
    """Write the plaintext in; a sandbox that stops reading (it died, or refused) ends the feed."""
    try:
        async for chunk in source:
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()


# --- framing: 4-byte big-endian length || JSON (the driver's header, the cleaner service's messages)


def encode_frame(value: dict[str, Any]) -> bytes:
    raw = json.dumps(value, ensure_ascii=False).encode()
    return _HEADER_LEN.pack(len(raw)) + raw


def decode_frame(raw: bytes) -> dict[str, Any] | None:
    """Exactly one whole frame read by a blocking socket (a probe's answer), or None."""
    if len(raw) < _HEADER_LEN.size or _HEADER_LEN.unpack_from(raw)[0] != len(raw) - _HEADER_LEN.size:
        return None
    try:
        value = json.loads(raw[_HEADER_LEN.size:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def read_frame(stream: asyncio.StreamReader, *, died: type[SandboxError] = SandboxLimitHit) -> dict[str, Any]:
    """One framed JSON object. A stream that ends first raises `died`; garbage raises SandboxLimitHit."""
    try:
        (length,) = _HEADER_LEN.unpack(await stream.readexactly(_HEADER_LEN.size))
        if length > MAX_HEADER_BYTES:
            raise SandboxLimitHit("cleaner header too long")
        value = json.loads(await stream.readexactly(length))
    except asyncio.IncompleteReadError as e:
        raise died("cleaner died before answering") from e
    except ValueError as e:
        raise SandboxLimitHit("cleaner answered garbage") from e
    if not isinstance(value, dict):
        raise SandboxLimitHit("cleaner answered garbage")
    return value


async def read_header(stream: asyncio.StreamReader, *,
                      died: type[SandboxError] = SandboxLimitHit) -> dict[str, Any]:
    """The driver's header, checked. {"status": "error", "reason": r} (only the cleaner service
    sends it) raises the error of that reason."""
    header = await read_frame(stream, died=died)
    status = header.get("status")
    if status == "error":
        raise ERRORS.get(str(header.get("reason")), SandboxError)("the cleaner service says: "
                                                                  f"{str(header.get('reason'))[:40]}")
    if status not in ("cleaned", "unsupported", "failed"):
        raise SandboxLimitHit("cleaner answered garbage")
    if status == "cleaned" and (not isinstance(header.get("size"), int) or header["size"] < 0):
        raise SandboxLimitHit("cleaner answered garbage")
    return header


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
