"""The real server as a separate process, for the crash, load, disk, leak and flood tests.

`ServerProcess` starts `serve --no-tor` on two free loopback ports, waits until both apps answer,
and can `kill()` it with SIGKILL (no clean-up of any kind runs) and start it again on the same
data folder and ports. Everything the process prints (stdout and stderr: every log line) is
appended to one file outside the data folder, so a test can read what production would log.

Two ways to start it:

* `launcher="tests"` (default): `python -m tests.support.server_main`, which builds the Config with
  `config_for_tests` (cheap Argon2id unless the install was made with another cost), so tests
  can run thousands of submissions. Pair it with `tests.support.installs.new_install()`.
* `launcher="cli"`: exactly `python run.py serve --no-tor ...`, the operator's command, with
  production cost. Pair it with `cli_install()` (`run.py init` + `caseworker add --passphrase-stdin`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.installs import ALICE, Account

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


#: Config changes for tests of losing nothing under many concurrent whistleblowers (at cheap
#: Argon2id cost): admit all their receipt logins at once, so the "busy" answer a flood rightly
#: gets past the logins-in-flight cap (see test_flood_availability.py) does not stand in for what
#: they check.
ALL_LOGINS_ADMITTED: Mapping[str, object] = {"max_receipt_logins_in_flight": 64}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, data: Path | None = None, stdin: str = "", timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python run.py ARGS [--data DATA]` from the repository root, its output captured.

    `check`: raise with its output if it fails; without, the test reads the exit status itself.
    """
    argv = [*args, "--data", str(data)] if data is not None else list(args)
    done = subprocess.run([sys.executable, "run.py", *argv], cwd=REPO_ROOT, input=stdin, text=True,
                          capture_output=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"run.py {' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def cli_install(data_dir: Path, accounts_: Sequence[Account] = (ALICE,)) -> None:
    """The operator's way, at production cost: `run.py init`, then `caseworker add` per account."""
    run_cli("init", "--data", str(data_dir))
    for account in accounts_:
        extra = ["--admin"] if account.admin else []
        for channel in account.channels or ():
            extra += ["--channel", channel]
        run_cli("caseworker", "add", account.name, "--passphrase-stdin", *extra, "--data", str(data_dir),
                stdin=account.passphrase + "\n")


@dataclass
class ServerProcess:
    """One `serve` process over a data folder; start, kill -9 and restart it on the same ports."""

    data_dir: Path
    log_path: Path
    launcher: str = "tests"
    config_changes: Mapping[str, object] = field(default_factory=dict)
    env_changes: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not running"
        return self.proc.pid

    def command(self) -> list[str]:
        if self.launcher == "cli":
            return [sys.executable, "run.py", "serve", "--no-tor", "--port", str(self.port),
                    "--admin-port", str(self.admin_port), "--data", str(self.data_dir)]
        if self.launcher == "tests":
            return [sys.executable, "-m", "tests.support.server_main", "--data", str(self.data_dir),
                    "--port", str(self.port), "--admin-port", str(self.admin_port),
                    "--config", json.dumps(dict(self.config_changes))]
        raise ValueError(f"unknown launcher {self.launcher!r}")

    def start(self, *, timeout: float = 60) -> None:
        """Start the process and return once both apps answer; fail with its log if it dies."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env_changes}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.wait_ready(timeout=timeout)

    def wait_ready(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [self.url, self.admin_url]
        while pending:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode} before answering:\n"
                                     f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not answer within {timeout} s:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(pending[0] + "/static/style.css", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        pending.pop(0)
                        continue
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no finally-block, no atexit, no flush runs. Waits until the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, *, timeout: float = 30) -> int:
        """SIGTERM, as an operator stops it; returns the exit status (killed if it hangs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"server did not stop on SIGTERM within {timeout} s") from None
        return int(self.proc.returncode)

    def restart(self, *, timeout: float = 60) -> None:
        self.kill()
        self.start(timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def status_kib(self, field_name: str) -> int:
        """A field of /proc/<pid>/status in KiB, e.g. VmRSS (now) or VmHWM (peak resident)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise KeyError(field_name)


@contextlib.contextmanager
def running_server(data_dir: Path, log_path: Path, **kwargs: object) -> Iterator[ServerProcess]:
    """A started ServerProcess that is killed on the way out, whatever happened."""
    server = ServerProcess(data_dir=data_dir, log_path=log_path, **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.kill()
