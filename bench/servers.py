"""Starting and stopping the servers under test, each as its own process on 127.0.0.1.

Each server runs as a subprocess so that its memory is its own (the RSS sampler reads it from
/proc) and so the client in this process competes with it for the CPU the way a browser would.
Every wait is bounded; a server that dies before answering takes its log tail into the error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerFailed(Exception):
    """A server did not start, or a setup command failed; the message ends with its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    """A running server process and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, ports: Sequence[int] = (), timeout: float = START_TIMEOUT_S) -> None:
        """Until every port in `ports` (default: `port`) accepts connections."""
        deadline = time.monotonic() + timeout
        pending = list(ports or [self.port])
        while pending:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log)}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"{self.name} did not open port(s) {pending} within {timeout:.0f} s:\n"
                                   f"{_tail(self.log)}")
            if port_open(pending[0]):
                pending.pop(0)
            else:
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGINT (a clean shutdown), then SIGTERM, then SIGKILL, each with a bounded wait."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc.wait(timeout=STOP_TIMEOUT_S)


def spawn(name: str, argv: Sequence[str], *, log: Path, port: int, cwd: Path = REPO,
          env: dict[str, str] | None = None) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own argv
            list(argv), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    return Server(name=name, proc=proc, port=port, log=log)


def run_checked(argv: Sequence[str], *, log: Path, stdin: bytes | None = None, timeout: float = 300) -> None:
    """A setup command (init, caseworker add); its output goes to `log`, a failure raises."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        done = subprocess.run(list(argv), cwd=REPO, input=stdin, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                              timeout=timeout, check=False)
    if done.returncode != 0:
        raise ServerFailed(f"{' '.join(argv[1:3])} failed with {done.returncode}:\n{_tail(log)}")


@contextlib.contextmanager
def running(server: Server, ports: Sequence[int] = ()) -> Iterator[Server]:
    try:
        server.wait_ready(ports)
        yield server
    finally:
        server.stop()


# --- the raw baseline ------------------------------------------------------------------------


def start_raw(upload_dir: Path, *, log: Path, fsync: bool = True, threaded: bool = False) -> Server:
    upload_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [PYTHON, "-m", "bench.raw_server", "--port", str(port), "--dir", str(upload_dir)]
    argv += [] if fsync else ["--no-fsync"]
    argv += ["--threaded"] if threaded else []
    return spawn("raw aiohttp", argv, log=log, port=port)


# --- the drop box ----------------------------------------------------------------------------


@dataclass
class Dropbox:
    """A fresh install of the drop box with one caseworker, served with `run.py serve --no-tor`."""

    data_dir: Path
    server: Server
    admin_port: int
    caseworker: str
    passphrase: str

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def admin_base(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


CASEWORKER = "alice"
PASSPHRASE = "benchmark passphrase of alice"  # noqa: S105 - a throwaway install's only account


def install_dropbox(data_dir: Path, *, log: Path) -> None:
    """`run.py init` (production Argon2id cost) and one caseworker in the default channel."""
    run_checked([PYTHON, "run.py", "init", "--data", str(data_dir)], log=log)
    run_checked([PYTHON, "run.py", "caseworker", "add", CASEWORKER, "--passphrase-stdin", "--data", str(data_dir)],
                log=log, stdin=(PASSPHRASE + "\n").encode())


def start_dropbox(data_dir: Path, *, log: Path) -> Dropbox:
    port, admin_port = free_port(), free_port()
    argv = [PYTHON, "run.py", "serve", "--no-tor", "--port", str(port), "--admin-port", str(admin_port),
            "--data", str(data_dir)]
    server = spawn("drop box", argv, log=log, port=port)
    return Dropbox(data_dir=data_dir, server=server, admin_port=admin_port, caseworker=CASEWORKER,
                   passphrase=PASSPHRASE)


@contextlib.contextmanager
def dropbox_running(data_dir: Path, *, log: Path, install: bool = True,
                    setup: Callable[[Path], None] | None = None) -> Iterator[Dropbox]:
    """A served install; `setup(data_dir)` runs after the install and before the server starts."""
    if install:
        install_dropbox(data_dir, log=log)
    if setup is not None:
        setup(data_dir)
    box = start_dropbox(data_dir, log=log)
    with running(box.server, [box.server.port, box.admin_port]):
        yield box
