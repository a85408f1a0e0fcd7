"""One control connection to tor: either to a system tor, or to a private tor we launch.

Everything that touches stem's connection objects is here. stem is synchronous and delivers
events on its own thread, so each blocking call runs in a worker thread and each event is
handed back to the event loop; callers see plain coroutines, typed errors from onion.errors,
and callbacks that run on the loop.

A private tor is started with `__OwningControllerProcess` and then owned by our controller
(stem sends TAKEOWNERSHIP on connect): it exits as soon as that connection closes or this
process dies, so it can never outlive the app. That is why one controller stays open for
tor's whole lifetime. A system tor is never owned (its __OwningControllerProcess is not our
pid), and we never change its configuration: with `Sandbox 1`, tor 0.4.9 serving onions from
its torrc exits on any SETCONF/RESETCONF or SIGHUP (it can no longer read its onion keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import stem
import stem.connection
import stem.control
import stem.process
import stem.response
import stem.socket
from stem.control import EventType

from onion.errors import (
    OnionError,
    TorConnectionLost,
    TorControlAuthFailed,
    TorControlUnreachable,
    TorLaunchFailed,
    TorNotInstalled,
)
from onion.files import make_private_dir

log = logging.getLogger(__name__)

T = TypeVar("T")
TorOptions = Mapping[str, str | Sequence[str]]

#: AF_UNIX paths longer than this do not fit in sockaddr_un on Linux (108 bytes with the NUL).
_MAX_SOCKET_PATH = 100
#: How long a launched tor gets to exit after its owning controller closes.
_EXIT_TIMEOUT = 10.0
INSTALL_HINT = "install it with `apt-get install tor`, or run `serve --no-tor`"


@dataclass(frozen=True)
class ControlAddress:
    """Where a system tor listens for controllers: a unix socket path, or a TCP host and port."""

    socket_path: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> ControlAddress:
        """Accept "/run/tor/control", "unix:/run/tor/control", "127.0.0.1:9051" or "9051"."""
        value = text.strip().removeprefix("unix:")
        if value.startswith("/"):
            return cls(socket_path=Path(value))
        host, _, port = value.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"tor control address {text!r} is neither a socket path nor a port")
        return cls(host=host or "127.0.0.1", port=int(port))

    def __str__(self) -> str:
        return str(self.socket_path) if self.socket_path else f"{self.host}:{self.port}"


@contextlib.contextmanager
def quiet_stem_threads() -> Iterator[None]:
    """Silence stem 1.8's own DeprecationWarning (Thread.setDaemon) while it starts threads.

    Only around constructing a Controller; under `filterwarnings = error` it would otherwise
    turn every connection into an exception. (warnings filters are process-wide; the window
    is one socket connect.)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"setDaemon\(\) is deprecated", category=DeprecationWarning
        )
        yield


def _to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run `callback(*args)` on `loop` from stem's thread; drop it if the loop is gone."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


@dataclass(eq=False)
class Tor:
    """An authenticated control connection, and the tor process behind it if we launched it."""

    controller: stem.control.Controller
    #: tor's version as it reports it, e.g. "0.4.9.11".
    version: str
    process: subprocess.Popen[bytes] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _listeners: list[tuple[Callable[[Any], None], tuple[str, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()

        def on_state(_controller: object, state: object, _timestamp: float) -> None:
            if state == stem.control.State.CLOSED:
                _to_loop(loop, self.closed.set)

        self.controller.add_status_listener(on_state, spawn=False)
        if not self.controller.is_alive():
            self.closed.set()

    @property
    def launched(self) -> bool:
        return self.process is not None

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking stem call in a worker thread; turn a dropped connection into ours."""
        try:
            return await asyncio.to_thread(functools.partial(function, *args, **kwargs))
        except stem.SocketClosed as exc:
            raise TorConnectionLost("the tor control connection closed") from exc
        except stem.SocketError as exc:
            raise TorConnectionLost(f"tor control connection failed: {exc}") from exc

    async def msg(self, command: str) -> stem.response.ControlMessage:
        """Send one raw control command; the reply is returned whatever its status code."""
        return await self.call(self.controller.msg, command)

    async def get_info(self, key: str) -> str | None:
        """GETINFO `key`, or None if tor does not know it (yet)."""
        return await self.call(self.controller.get_info, key, None)

    async def get_conf(self, key: str) -> str | None:
        """GETCONF `key` (first value), or None if unset."""
        return await self.call(self.controller.get_conf, key, None)

    async def listen(self, callback: Callable[[Any], None], *event_types: str) -> None:
        """Have `callback(event)` run on the event loop for each of these tor events."""
        loop = asyncio.get_running_loop()

        def relay(event: Any) -> None:
            _to_loop(loop, callback, event)

        await self.call(self.controller.add_event_listener, relay, *event_types)
        self._listeners.append((relay, event_types))

    async def close(self) -> None:
        """Close the control connection; a launched tor exits with it, and is reaped here."""
        for relay, _types in self._listeners:
            with contextlib.suppress(stem.ControllerError):
                self.controller.remove_event_listener(relay)
        self._listeners.clear()
        await asyncio.to_thread(self.controller.close)
        self.closed.set()
        if self.process is not None:
            await asyncio.to_thread(_reap, self.process)


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a tor that should be exiting; kill it if it does not."""
    try:
        process.wait(timeout=_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("tor (pid %s) did not exit with its controller; killing it", process.pid)
        process.kill()
        process.wait(timeout=_EXIT_TIMEOUT)


def _authenticate(controller: stem.control.Controller, *, password: str | None, where: str) -> None:
    try:
        controller.authenticate(password=password)
    except stem.connection.MissingPassword as exc:
        controller.close()
        raise TorControlAuthFailed(
            f"tor at {where} wants a control password; set one or use CookieAuthentication 1"
        ) from exc
    except stem.connection.UnreadableCookieFile as exc:
        controller.close()
        raise TorControlAuthFailed(
            f"cannot read tor's cookie file {exc.cookie_path}: add this user to tor's group "
            "(`adduser $USER debian-tor`) and set CookieAuthFileGroupReadable 1 in torrc"
        ) from exc
    except stem.connection.AuthenticationFailure as exc:
        controller.close()
        raise TorControlAuthFailed(f"tor at {where} refused our credentials: {exc}") from exc


def _probe(address: ControlAddress) -> None:
    """Connect once with a socket of our own, closed either way.

    stem leaks its socket when a connect fails, and a retry loop against a stopped tor would
    pile up file descriptors; so find out first whether anything answers.
    """
    family = socket.AF_UNIX if address.socket_path is not None else socket.AF_INET
    target: str | tuple[str, int] = (
        str(address.socket_path) if address.socket_path is not None
        else (address.host, address.port or 9051)
    )
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(10)
        probe.connect(target)


def _open_controller(address: ControlAddress) -> stem.control.Controller:
    try:
        _probe(address)
    except OSError as exc:
        raise TorControlUnreachable(
            f"nothing answers on tor's control {address} ({exc.strerror or exc}); is tor "
            "running, and does its torrc have that ControlSocket/ControlPort (see torrc.example)?"
        ) from exc
    try:
        with quiet_stem_threads():
            if address.socket_path is not None:
                return stem.control.Controller.from_socket_file(str(address.socket_path))
            return stem.control.Controller.from_port(address.host, address.port or 9051)
    except stem.SocketError as exc:
        raise TorControlUnreachable(
            f"nothing answers on tor's control {address} ({exc}); is tor running, and does its "
            "torrc have that ControlSocket/ControlPort (see torrc.example)?"
        ) from exc
    except ValueError as exc:  # stem rejects host names; it wants an IP address
        raise TorControlUnreachable(f"bad control address {address}: {exc}") from exc


def _connect(address: ControlAddress, password: str | None) -> tuple[stem.control.Controller, str]:
    """An authenticated controller and tor's version."""
    controller = _open_controller(address)
    _authenticate(controller, password=password, where=str(address))
    try:
        version = str(controller.get_version()).split(" ")[0]
    except (stem.ControllerError, ValueError) as exc:
        controller.close()
        raise TorConnectionLost(f"tor at {address} did not tell its version: {exc}") from exc
    return controller, version


async def connect_tor(*, control: str | ControlAddress, password: str | None = None) -> Tor:
    """Connect to a running (system) tor and authenticate with its cookie or `password`."""
    address = control if isinstance(control, ControlAddress) else ControlAddress.parse(control)
    controller, version = await asyncio.to_thread(_connect, address, password)
    log.info("connected to tor %s at %s", version, address)
    return Tor(controller=controller, version=version)


def find_tor(tor_cmd: str = "tor") -> str:
    """Absolute path of the tor executable, or TorNotInstalled."""
    path = shutil.which(tor_cmd)
    if path is None:
        raise TorNotInstalled(f"{tor_cmd!r} is not installed or not on PATH; {INSTALL_HINT}")
    return path


def private_tor_options(tor_dir: Path, overrides: TorOptions | None = None) -> dict[str, Any]:
    """The torrc of a private tor: a data folder of its own, no SOCKS, cookie-guarded control.

    `overrides` are added last and win: tests use them to join a private test network.
    """
    tor_dir = tor_dir.resolve()  # tor refuses relative unix-socket paths (and warns on the rest)
    socket_path = tor_dir / "control.sock"
    options: dict[str, Any] = {
        "DataDirectory": str(tor_dir),
        "SocksPort": "0",
        "CookieAuthentication": "1",
        "AvoidDiskWrites": "1",
        "NoExec": "1",  # never start helper programs (pluggable transports)
        "PidFile": str(tor_dir / "tor.pid"),
        "Log": "NOTICE stdout",  # stem reads bootstrap progress from stdout
    }
    if len(str(socket_path)) <= _MAX_SOCKET_PATH:
        options["ControlSocket"] = str(socket_path)
    else:  # an over-long data_dir: fall back to a loopback port, still cookie-guarded
        options["ControlPort"] = "127.0.0.1:auto"
        options["ControlPortWriteToFile"] = str(tor_dir / "control-port")
    for key, value in (overrides or {}).items():
        options[key] = value if isinstance(value, str) else list(value)
    return options


def _launched_control_address(options: Mapping[str, Any]) -> ControlAddress:
    if "ControlSocket" in options:
        return ControlAddress(socket_path=Path(options["ControlSocket"]))
    # ControlPortWriteToFile holds "PORT=127.0.0.1:NNNN"
    text = Path(options["ControlPortWriteToFile"]).read_text()
    host, _, port = text.strip().removeprefix("PORT=").rpartition(":")
    return ControlAddress(host=host, port=int(port))


def _launch(tor_path: str, options: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Start tor and return once it has read its config (Bootstrapped 0%)."""
    last_lines: list[str] = []

    def remember(line: str) -> None:
        last_lines[:] = [*last_lines[-4:], line]
        log.debug("tor: %s", line)

    try:
        process: subprocess.Popen[bytes] = stem.process.launch_tor_with_config(
            config=options, tor_cmd=tor_path, completion_percent=0,
            init_msg_handler=remember, take_ownership=True, timeout=None,
        )
    except OSError as exc:
        raise TorLaunchFailed(f"tor did not start: {exc}; last output: {last_lines}") from exc
    return process


async def launch_tor(
    *, tor_dir: Path, tor_cmd: str = "tor", overrides: TorOptions | None = None
) -> Tor:
    """Launch a private tor under `tor_dir` and connect to it; it lives as long as the `Tor`.

    If cancelled while tor starts, waits for the start to finish and stops that tor again,
    so a quick start/stop of the app cannot orphan it.
    """
    tor_path = find_tor(tor_cmd)
    make_private_dir(tor_dir)
    options = private_tor_options(tor_dir, overrides)
    launching = asyncio.ensure_future(asyncio.to_thread(_launch, tor_path, options))
    try:
        process = await asyncio.shield(launching)
    except asyncio.CancelledError:
        with contextlib.suppress(OnionError):
            started = await launching
            started.kill()
            await asyncio.to_thread(started.wait)
        raise
    try:
        controller, version = await asyncio.to_thread(
            _connect, _launched_control_address(options), None
        )
    except (OnionError, OSError) as exc:
        process.kill()
        await asyncio.to_thread(process.wait)
        raise TorLaunchFailed(f"launched tor but could not control it: {exc}") from exc
    log.info("launched a private tor %s (pid %s) in %s", version, process.pid, tor_dir)
    return Tor(controller=controller, version=version, process=process)


def bootstrap_progress(event_or_phase: Any) -> tuple[int, str]:
    """(percent, summary) from a STATUS_CLIENT BOOTSTRAP event or a status/bootstrap-phase line."""
    if isinstance(event_or_phase, str):
        fields = dict(
            part.split("=", 1) for part in event_or_phase.split() if "=" in part
        )
    else:
        fields = dict(event_or_phase.arguments)
    try:
        percent = int(fields.get("PROGRESS", "0"))
    except ValueError:
        percent = 0
    summary = fields.get("WARNING") or fields.get("SUMMARY") or ""
    return percent, summary.strip('"')


__all__ = [
    "ControlAddress",
    "EventType",
    "Tor",
    "bootstrap_progress",
    "connect_tor",
    "find_tor",
    "launch_tor",
    "private_tor_options",
]
