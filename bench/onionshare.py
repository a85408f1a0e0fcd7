"""OnionShare's receive mode as the peer to compare with, installed from PyPI into its own venv.

`onionshare-cli --receive --local-only` serves its Flask app through waitress on 127.0.0.1 and a
random port in 17600-17650, which it prints as `http://127.0.0.1:PORT`. Its upload form
(onionshare_cli/web/receive_mode.py, 2.7) posts multipart/form-data to `/upload` with the
message in `text` and the files as repeated `file[]` parts, and answers a plain (non-JS) post
with a 302 back to `/`. It writes each file as `<name>.part` under
`<data-dir>/<date>/<time>/` and renames it when done; it does not fsync.

waitress refuses a request body over `max_request_body_size` (1 GiB) with a 413 before reading
it, so a 1 GiB file plus the multipart framing is refused; the benchmark then sends the first
1023 MiB of the same file and says so.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from bench.servers import PYTHON, Server, ServerFailed, spawn

VERSION = "2.7"
UPLOAD_PATH = "/upload"
FILE_FIELD = "file[]"
TEXT_FIELD = "text"
_URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
INSTALL_TIMEOUT_S = 900


def ensure_installed(venv: Path, *, version: str = VERSION, log: Path) -> Path:
    """The onionshare-cli executable in `venv`, creating the venv and pip-installing it if needed."""
    exe = venv / "bin" / "onionshare-cli"
    if exe.exists():
        return exe
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        for argv in ([PYTHON, "-m", "venv", str(venv)],
                     [str(venv / "bin" / "pip"), "install", "--quiet", f"onionshare-cli=={version}"]):
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                  timeout=INSTALL_TIMEOUT_S, check=False)
            if done.returncode != 0:
                raise ServerFailed(f"installing onionshare-cli failed ({' '.join(argv[-2:])}); see {log}")
    return exe


def start(exe: Path, *, workdir: Path, log: Path, timeout: float = 60) -> Server:
    """Receive mode, local only, no private key; HOME and TMPDIR point into `workdir`."""
    home, data, tmp = workdir / "home", workdir / "received", workdir / "tmp"
    for folder in (home, data, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    server = spawn("OnionShare", [str(exe), "--receive", "--local-only", "--public", "--data-dir", str(data)],
                   log=log, port=0, env={"HOME": str(home), "TMPDIR": str(tmp)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = _URL.search(log.read_bytes()[offset:].decode(errors="replace"))
        if match:
            server.port = int(match.group(1))
            server.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
            return server
        if server.proc.poll() is not None:
            break
        time.sleep(0.2)
    server.stop()
    raise ServerFailed(f"OnionShare printed no local URL within {timeout:.0f} s; see {log}")


def received_bytes(workdir: Path) -> int:
    """Bytes of finished files OnionShare wrote (its `.part` files are still in progress)."""
    folder = workdir / "received"
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.endswith((".part",
                                                                                                   "-message.txt")))
