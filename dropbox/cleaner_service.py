"""The metadata cleaner as a service of its own, so the app keeps its strict systemd profile.

bubblewrap needs user, mount and PID namespaces and the mount system calls; the app's unit
(deploy/dropbox.service) forbids them, and should. So in production the sandbox is started by a
separate, small process (deploy/dropbox-cleaner.socket + .service): its own user, no network, no
data folder, allowed only what bwrap needs. It never parses a file itself: it passes the bytes
to the same sandbox (dropbox/sandbox.py) the app would run in-process, and passes the answer back.

The app talks to it over a Unix socket, one connection per file, in the framing the driver uses
(4-byte big-endian length || JSON, see sandbox.encode_frame):

    app → service:  {"op": "clean", "suffix", "size", "limits"} || exactly `size` plaintext bytes
                    {"op": "probe"}
    service → app:  the driver's header || header["size"] cleaned bytes (status "cleaned" only)
                    || {"status": "done"} or {"status": "error", "reason"}
                    {"status": "error", "reason"} alone when it failed before the header
                    {"status": "probe", "problem": str | None} for a probe

The plaintext exists only in the two processes' memory, the socket and the sandbox's tmpfs; the
app seals the cleaned copy as it arrives. A connection that ends before the last frame is an
answer too: SandboxUnavailable, so the caller keeps the file as sent and flags it. The service
logs nothing per file (journald would stamp each line with the second of a submission).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from dropbox.sandbox import (
    ERRORS,
    SandboxError,
    SandboxLimitHit,
    SandboxLimits,
    SandboxTimeout,
    SandboxUnavailable,
    decode_frame,
    encode_frame,
    probe,
    read_frame,
    read_header,
    run_cleaner,
)

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
#: How much longer than the sandbox's own deadline the app waits for the service's answer (the
#: service kills the sandbox at the deadline and says so; this only covers a service that hangs).
GRACE_SECONDS = 30.0
#: What systemd's socket activation hands over: the listening socket as fd 3 (sd_listen_fds(3)).
_LISTEN_FD = 3
#: Largest limits the service accepts from a request (the app's Config caps them lower).
_MAX_LIMITS = SandboxLimits(memory_bytes=64 << 30, cpu_seconds=3600, wall_seconds=3600.0, tmpfs_bytes=16 << 30)


class BadRequest(Exception):
    """A request the service does not understand; it answers with an error and closes."""


class CannotListen(Exception):
    """The service has nowhere to listen: no socket handed over or given, or the path is taken."""


# --- the app's side ---------------------------------------------------------------------------


async def clean_remote(
    *,
    socket_path: Path,
    source: AsyncIterator[bytes],
    size: int,
    suffix: str,
    limits: SandboxLimits,
    sink: Callable[[bytes], Awaitable[None]],
) -> dict[str, Any]:
    """Like sandbox.run_cleaner, through the cleaner service at `socket_path`: same contract
    (the header back; `sink` has exactly the cleaned file only when its status is "cleaned";
    every failure a SandboxError)."""
    try:
        async with asyncio.timeout(limits.wall_seconds + GRACE_SECONDS):
            return await _clean_remote(socket_path=socket_path, source=source, size=size, suffix=suffix,
                                       limits=limits, sink=sink)
    except TimeoutError as e:
        raise SandboxTimeout("the cleaner service did not answer in time") from e


async def _clean_remote(*, socket_path: Path, source: AsyncIterator[bytes], size: int, suffix: str,
                        limits: SandboxLimits, sink: Callable[[bytes], Awaitable[None]]) -> dict[str, Any]:
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=_CHUNK)
    except OSError as e:
        raise SandboxUnavailable(f"cleaner service: {type(e).__name__}") from e
    feeder: asyncio.Task[None] | None = None
    try:
        writer.write(encode_frame({"op": "clean", "suffix": suffix, "size": size,
                                   "limits": dataclasses.asdict(limits)}))
        feeder = asyncio.create_task(_send(writer, source, size))
        header = await read_header(reader, died=SandboxUnavailable)
        left = header["size"] if header["status"] == "cleaned" else 0
        while left:
            try:
                chunk = await reader.readexactly(min(_CHUNK, left))
            except asyncio.IncompleteReadError as e:
                raise SandboxUnavailable("the cleaner service stopped answering") from e
            left -= len(chunk)
            await sink(chunk)
        trailer = await read_frame(reader, died=SandboxUnavailable)
        if trailer.get("status") != "done":
            raise ERRORS.get(str(trailer.get("reason")), SandboxLimitHit)("the cleaner service says: "
                                                                         f"{str(trailer.get('reason'))[:40]}")
        await feeder
        return header
    except (ConnectionError, OSError) as e:
        raise SandboxUnavailable(f"cleaner service: {type(e).__name__}") from e
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError, SandboxError):
                await feeder
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _send(writer: asyncio.StreamWriter, source: AsyncIterator[bytes], size: int) -> None:
    """Write exactly `size` bytes of plaintext; a service that stops reading ends the feed (its
    answer, or its silence, says what happened)."""
    sent = 0
    try:
        async for chunk in source:
            sent += len(chunk)
            if sent > size:
                raise SandboxLimitHit("the file is longer than announced")
            writer.write(chunk)
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        return


def probe_cleaner(socket_path: Path | None) -> str | None:
    """Whether files can be cleaned: by the service at `socket_path`, or (None) in this process."""
    return probe() if socket_path is None else probe_remote(socket_path)


def probe_remote(socket_path: Path, *, timeout: float = 60.0) -> str | None:
    """Ask the cleaner service to start one empty sandbox: None if it works, else why not. The
    server asks at start-up (in a thread) and puts the answer in status.json for `run.py status`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            conn.sendall(encode_frame({"op": "probe"}))
            conn.shutdown(socket.SHUT_WR)
            raw = b""
            while chunk := conn.recv(65536):
                raw += chunk
                if len(raw) > 65536:
                    break
    except OSError as e:
        return f"the cleaner service at {socket_path} does not answer ({type(e).__name__})"
    answer = decode_frame(raw)
    if answer is None or answer.get("status") != "probe":
        return f"the cleaner service at {socket_path} answered garbage"
    problem = answer.get("problem")
    return None if problem is None else f"the cleaner service's sandbox: {str(problem)[:200]}"


# --- the service's side ------------------------------------------------------------------------


def listening_socket(path: Path | None) -> socket.socket:
    """The socket systemd handed over (socket activation), else a new one bound at `path`."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        return socket.socket(fileno=_LISTEN_FD)
    if path is None:
        raise CannotListen("no socket: pass --socket PATH, or start it through deploy/dropbox-cleaner.socket")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise CannotListen(f"{path} exists and is not a socket")
        path.unlink()  # a socket left by a previous run; binding needs the name free
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    return listener


async def serve(listener: socket.socket, *, concurrency: int, stop: asyncio.Event | None = None) -> None:
    """Answer connections until `stop` (or forever). At most `concurrency` sandboxes run at
    once; the others wait, as in the app (which bounds them too)."""
    slots = asyncio.Semaphore(concurrency)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer(reader, writer, slots)
        except (BadRequest, SandboxError, ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            log.debug("connection ended: %s", type(e).__name__)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, sock=listener, limit=_CHUNK)
    async with server:
        log.info("the metadata cleaner is listening")
        await (stop.wait() if stop is not None else asyncio.Event().wait())


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slots: asyncio.Semaphore) -> None:
    request = await read_frame(reader)
    if request.get("op") == "probe":
        writer.write(encode_frame({"status": "probe", "problem": await asyncio.to_thread(probe)}))
        await writer.drain()
        return
    suffix, size, limits = _clean_request(request)
    async with slots:
        await _clean(reader, writer, suffix=suffix, size=size, limits=limits)


def _clean_request(request: dict[str, Any]) -> tuple[str, int, SandboxLimits]:
    suffix, size, raw = request.get("suffix"), request.get("size"), request.get("limits")
    if request.get("op") != "clean" or not isinstance(suffix, str) or len(suffix) > 16 \
            or not isinstance(size, int) or size < 0 or not isinstance(raw, dict):
        raise BadRequest("not a cleaning request")
    try:
        limits = SandboxLimits(memory_bytes=int(raw["memory_bytes"]), cpu_seconds=int(raw["cpu_seconds"]),
                               wall_seconds=float(raw["wall_seconds"]), tmpfs_bytes=int(raw["tmpfs_bytes"]))
    except (KeyError, TypeError, ValueError) as e:
        raise BadRequest("bad limits") from e
    capped = {f.name: min(getattr(limits, f.name), getattr(_MAX_LIMITS, f.name)) for f in dataclasses.fields(limits)}
    if min(capped.values()) <= 0:
        raise BadRequest("bad limits")
    return suffix, size, SandboxLimits(**capped)


async def _clean(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, suffix: str, size: int,
                 limits: SandboxLimits) -> None:
    """Run one file through the sandbox, forwarding the header and the cleaned bytes as they come."""
    announced: list[int] = []
    forwarded = 0

    async def source() -> AsyncIterator[bytes]:
        left = size
        while left:
            chunk = await reader.read(min(_CHUNK, left))
            if not chunk:
                raise ConnectionResetError("the app went away")
            left -= len(chunk)
            yield chunk

    async def on_header(header: dict[str, Any]) -> None:
        announced.append(header["size"] if header["status"] == "cleaned" else 0)
        writer.write(encode_frame(header))
        await writer.drain()

    async def sink(chunk: bytes) -> None:
        nonlocal forwarded
        forwarded += len(chunk)
        if forwarded > announced[0]:
            raise SandboxLimitHit("the cleaned copy is longer than announced")
        writer.write(chunk)
        await writer.drain()

    try:
        await run_cleaner(source=source(), suffix=suffix, limits=limits, sink=sink, on_header=on_header)
    except SandboxError as e:
        if announced and forwarded != announced[0]:
            return  # mid-copy: no frame can follow; closing says it (the app keeps the file as sent)
        writer.write(encode_frame({"status": "error", "reason": e.reason}))
    else:
        writer.write(encode_frame({"status": "done"}))
    await writer.drain()


def main(*, socket_path: Path | None, concurrency: int) -> int:
    """`run.py cleaner`: what deploy/dropbox-cleaner.service starts (and tests start by hand)."""
    listener = listening_socket(socket_path)
    problem = probe()
    if problem:
        log.error("the cleaning sandbox cannot start here (%s): every file will be kept as sent", problem)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listener, concurrency=concurrency))
    return 0
