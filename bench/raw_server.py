"""The ceiling for this stack: a bare aiohttp handler that streams a multipart upload to disk.

No sealing, no database, no sessions: each file part is read with `read_chunk(1 MiB)` and written
as it arrives, and every file (and the folder) is fsynced before the reply, because a receipt
shown for an upload must survive a power cut; without the fsync the comparison would flatter it.

Run on its own (the benchmark starts it as a subprocess so its memory can be sampled alone):

    python -m bench.raw_server --port 8090 --dir /tmp/raw-uploads
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
from pathlib import Path
from typing import BinaryIO

from aiohttp import BodyPartReader, web

from dropbox.config import MiB

CHUNK_BYTES = 1 * MiB
READY_LINE = "raw server ready"

_UPLOAD_DIR: web.AppKey[Path] = web.AppKey("upload_dir", Path)
_FSYNC: web.AppKey[bool] = web.AppKey("fsync", bool)
_THREADED: web.AppKey[bool] = web.AppKey("threaded", bool)


def _create(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb", buffering=0)


def _close(handle: BinaryIO, fsync: bool) -> None:
    if fsync:
        os.fsync(handle.fileno())
    handle.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def receive(request: web.Request) -> web.Response:
    """Store every file part under a random name; answer with what was stored."""
    folder, fsync, threaded = request.app[_UPLOAD_DIR], request.app[_FSYNC], request.app[_THREADED]
    reader = await request.multipart()
    files, total = 0, 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.filename is None:
            if isinstance(part, BodyPartReader):
                await part.release()
            continue
        handle = _create(folder / secrets.token_hex(16))
        try:
            while chunk := await part.read_chunk(CHUNK_BYTES):
                if threaded:
                    await asyncio.to_thread(handle.write, chunk)
                else:
                    handle.write(chunk)
                total += len(chunk)
        finally:
            await asyncio.to_thread(_close, handle, fsync)
        files += 1
    if fsync and files:
        await asyncio.to_thread(_fsync_dir, folder)
    return web.json_response({"files": files, "bytes": total})


def make_app(upload_dir: Path, *, fsync: bool = True, threaded: bool = False) -> web.Application:
    app = web.Application()
    app[_UPLOAD_DIR] = upload_dir
    app[_FSYNC] = fsync
    app[_THREADED] = threaded
    app.router.add_post("/upload", receive)
    app.router.add_get("/", index)
    return app


async def index(request: web.Request) -> web.Response:
    return web.Response(text="raw upload server")


async def _serve(upload_dir: Path, port: int, *, fsync: bool, threaded: bool) -> None:
    runner = web.AppRunner(make_app(upload_dir, fsync=fsync, threaded=threaded), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(READY_LINE, flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="where uploads are written")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false", help="skip the fsync before replying")
    parser.add_argument("--threaded", action="store_true", help="write in a worker thread, as the drop box does")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.dir, args.port, fsync=args.fsync, threaded=args.threaded))


if __name__ == "__main__":
    main()
