"""A private Tor network on 127.0.0.1, built from Debian's `tor` and `tor-gencert`, for tests.

Tests that need tor start real tor (see docs/STYLE): the public Tor network is out of bounds for
tests, and a stub would not show whether descriptors, client auth and SOCKS really work. So this
module builds a small network of its own: directory authorities with keys from `tor-gencert`,
a few relays, and client tors that join it. Everything listens on 127.0.0.1 only; the options in
`TEST_NETWORK_OPTIONS` keep the consensus cycle short so the network is usable within seconds.

It is synchronous on purpose (plain threads, stem's blocking controller): session fixtures build
it once, outside any event loop. Run `python -m tests.support.tor_network` to bring one up and time it.

Every tor is started with `__OwningControllerProcess` and then owned by its stem controller
(TAKEOWNERSHIP), so it exits when its controller closes or when this process dies: a crashed test
run leaves no tor behind.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stem
import stem.control
import stem.process
from stem.control import EventType

from onion.controller import quiet_stem_threads

TorOptions = Mapping[str, str | Sequence[str]]

#: Authorities vote every 10 s (the first round after 5 s), so a relay that starts late is
#: listed within one round.
AUTHORITY_OPTIONS: dict[str, str] = {
    "AuthoritativeDirectory": "1",
    "V3AuthoritativeDirectory": "1",
    "TestingV3AuthInitialVotingInterval": "5",
    "TestingV3AuthInitialVoteDelay": "2",
    "TestingV3AuthInitialDistDelay": "2",
    "V3AuthVotingInterval": "10",
    "V3AuthVoteDelay": "2",
    "V3AuthDistDelay": "2",
    "V3AuthNIntervalsValid": "2",
    "TestingV3AuthVotingStartOffset": "0",
    "TestingAuthDirTimeToLearnReachability": "0",
}

#: Every node of the network, relay or not, flags relays so small networks build every circuit.
TEST_NETWORK_OPTIONS: dict[str, str] = {
    "TestingTorNetwork": "1",
    "TestingDirAuthVoteExit": "*",
    "TestingDirAuthVoteHSDir": "*",
    "TestingDirAuthVoteGuard": "*",
    "TestingMinExitFlagThreshold": "0",
    "AssumeReachable": "1",
    "ShutdownWaitLength": "0",
    "SafeLogging": "0",
    "ProtocolWarnings": "0",
    # Parsing the GeoIP tables costs each tor half a second of CPU, and nobody here needs them.
    "GeoIPFile": "/dev/null",
    "GeoIPv6File": "/dev/null",
    # Fetch a handful of missing descriptors at once instead of batching them for 5 s.
    "TestingClientMaxIntervalWithoutRequest": "1",
}

#: Client and onion-service tors only. Vanguards-lite and entry guards pick a few fixed relays,
#: which in a network this small often stalls bootstrap at "95% circuit_create" for a minute.
CLIENT_OPTIONS: dict[str, str] = {
    "VanguardsLiteEnabled": "0",
    "UseEntryGuards": "0",
}


class TorNetworkError(Exception):
    """The private test network could not be built or did not become usable before a deadline."""


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that were free a moment ago (all held at once, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]


def torrc_text(options: TorOptions) -> str:
    """Render options the way a torrc spells them: one line per value."""
    lines = []
    for key, values in options.items():
        for value in [values] if isinstance(values, str) else values:
            lines.append(f"{key} {value}")
    return "\n".join(lines) + "\n"


@dataclass
class TorNode:
    """One running tor of the network, with the controller that owns it."""

    name: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    controller: stem.control.Controller
    or_port: int | None = None
    dir_port: int | None = None
    socks_port: int | None = None
    fingerprint: str | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "notice.log"

    def log_tail(self, lines: int = 25) -> str:
        """The end of this tor's notice log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"  {self.name}| {line}" for line in text.splitlines()[-lines:])

    def bootstrap_progress(self) -> int:
        phase = self.controller.get_info("status/bootstrap-phase", "")
        for part in phase.split():
            if part.startswith("PROGRESS="):
                return int(part.split("=", 1)[1])
        return 0

    def wait_for_bootstrap(self, *, deadline: float) -> None:
        """Block until this tor reports 100 %, woken by its STATUS_CLIENT events."""
        wake: queue.Queue[object] = queue.Queue()
        listener = wake.put
        self.controller.add_event_listener(listener, EventType.STATUS_CLIENT)
        try:
            while self.bootstrap_progress() < 100:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TorNetworkError(
                        f"{self.name} stuck at {self.bootstrap_progress()} %:\n{self.log_tail()}"
                    )
                with contextlib.suppress(queue.Empty):
                    wake.get(timeout=min(remaining, 1.0))
        finally:
            self.controller.remove_event_listener(listener)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Close the owning controller (tor exits at once) and reap the process."""
        self.controller.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def launch_node(
    *, name: str, data_dir: Path, options: TorOptions, tor_cmd: str = "tor"
) -> TorNode:
    """Start one tor with a torrc written into its data folder; return once it is controllable.

    The torrc stays on disk next to the notice log so a failed run can be inspected.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    port_file = data_dir / "control-port"
    full: dict[str, str | Sequence[str]] = {
        "DataDirectory": str(data_dir),
        "Nickname": name,
        # tor picks the port itself: no race with other tests for a "free" one
        "ControlPort": "127.0.0.1:auto",
        "ControlPortWriteToFile": str(port_file),
        "CookieAuthentication": "1",
        "Log": [f"notice file {data_dir / 'notice.log'}", "notice stdout"],
        **options,
    }
    torrc = data_dir / "torrc"
    torrc.write_text(torrc_text(full))
    try:
        process = stem.process.launch_tor(
            tor_cmd,
            torrc_path=str(torrc),
            completion_percent=0,
            take_ownership=True,
            timeout=None,
        )
    except OSError as exc:
        raise TorNetworkError(f"{name} did not start: {exc}") from exc
    if process.stdin is not None:  # stem leaves the stdin pipe open when it has no torrc to send
        process.stdin.close()
    try:
        # "PORT=127.0.0.1:NNNN", written before tor reports Bootstrapped 0%
        control_port = int(port_file.read_text().strip().rpartition(":")[2])
        with quiet_stem_threads():
            controller = stem.control.Controller.from_port("127.0.0.1", control_port)
        controller.authenticate()
    except (OSError, ValueError, stem.SocketError, stem.connection.AuthenticationFailure) as exc:
        process.kill()
        process.wait()
        raise TorNetworkError(f"cannot control {name}: {exc}") from exc
    except BaseException:
        process.kill()
        process.wait()
        raise
    return TorNode(name=name, data_dir=data_dir, process=process, controller=controller)


@dataclass
class _Authority:
    name: str
    data_dir: Path
    or_port: int
    dir_port: int
    v3ident: str = ""
    fingerprint: str = ""

    @property
    def dir_authority_line(self) -> str:
        return (
            f"{self.name} orport={self.or_port} no-v2 v3ident={self.v3ident} "
            f"127.0.0.1:{self.dir_port} {self.fingerprint}"
        )


@dataclass
class TorNetwork:
    """Directory authorities and relays on 127.0.0.1, plus any client tors started on it.

    Use as a context manager, or call `start()` and `stop()`.
    """

    base_dir: Path
    authorities: int = 3
    relays: int = 3
    tor_cmd: str = "tor"
    gencert_cmd: str = "tor-gencert"
    nodes: list[TorNode] = field(default_factory=list)
    clients: list[TorNode] = field(default_factory=list)
    _authorities: list[_Authority] = field(default_factory=list)
    #: Seconds from `start()` until clients could use the network.
    startup_seconds: float = 0.0
    #: Seconds from `start()` to the end of each phase, for the bring-up report.
    phases: dict[str, float] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------

    def _make_authority_keys(self, authority: _Authority) -> None:
        """RSA identity + signing keys from tor-gencert, relay keys from `--list-fingerprint`."""
        keys = authority.data_dir / "keys"
        keys.mkdir(mode=0o700, parents=True, exist_ok=True)
        gencert = subprocess.run(
            [
                self.gencert_cmd, "--create-identity-key", "--passphrase-fd", "0", "-m", "12",
                "-a", f"127.0.0.1:{authority.dir_port}",
                "-i", str(keys / "authority_identity_key"),
                "-s", str(keys / "authority_signing_key"),
                "-c", str(keys / "authority_certificate"),
            ],
            input=b"\n", capture_output=True, timeout=120, check=False,
        )
        if gencert.returncode != 0:
            raise TorNetworkError(f"tor-gencert failed: {gencert.stderr.decode(errors='replace')}")
        certificate = (keys / "authority_certificate").read_text()
        authority.v3ident = next(
            line.split()[1] for line in certificate.splitlines() if line.startswith("fingerprint ")
        )
        listing = subprocess.run(
            [
                self.tor_cmd, "--list-fingerprint", "--DataDirectory", str(authority.data_dir),
                "--ORPort", str(authority.or_port), "--Nickname", authority.name,
                "--DirAuthority", "placeholder 127.0.0.1:1 " + "f" * 40,
            ],
            capture_output=True, timeout=120, check=False,
        )
        if listing.returncode != 0:
            raise TorNetworkError(f"tor --list-fingerprint failed: {listing.stdout!r}")
        authority.fingerprint = (authority.data_dir / "fingerprint").read_text().split()[1]

    def _network_options(self) -> dict[str, str | Sequence[str]]:
        return {
            **TEST_NETWORK_OPTIONS,
            "DirAuthority": [authority.dir_authority_line for authority in self._authorities],
        }

    def client_options(self) -> dict[str, str | Sequence[str]]:
        """What a client or onion-service tor needs in its torrc to use this network."""
        return {**self._network_options(), **CLIENT_OPTIONS}

    def start(self, *, timeout: float = 120.0) -> None:
        """Build keys, start authorities and relays together, wait for a full consensus."""
        started = time.monotonic()
        deadline = started + timeout
        ports = iter(free_ports(2 * self.authorities + self.relays))
        self._authorities = [
            _Authority(
                name=f"auth{i}", data_dir=self.base_dir / f"auth{i}",
                or_port=next(ports), dir_port=next(ports),
            )
            for i in range(self.authorities)
        ]
        relay_ports = [next(ports) for _ in range(self.relays)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._make_authority_keys, self._authorities))
            self.phases["keys"] = time.monotonic() - started
            common = {**self._network_options(), "SocksPort": "0", "Address": "127.0.0.1",
                      "ExitPolicy": "reject *:*", "ContactInfo": "test@example.invalid"}
            launches = [
                pool.submit(
                    launch_node, name=authority.name, data_dir=authority.data_dir,
                    tor_cmd=self.tor_cmd,
                    options={**common, **AUTHORITY_OPTIONS,
                             "ORPort": f"127.0.0.1:{authority.or_port}",
                             "DirPort": f"127.0.0.1:{authority.dir_port}"},
                )
                for authority in self._authorities
            ] + [
                pool.submit(
                    launch_node, name=f"relay{i}", data_dir=self.base_dir / f"relay{i}",
                    tor_cmd=self.tor_cmd,
                    options={**common, "ORPort": f"127.0.0.1:{port}"},
                )
                for i, port in enumerate(relay_ports)
            ]
            failures = []
            for launch in launches:  # collect every result, so no started tor goes unowned
                try:
                    self.nodes.append(launch.result())
                except Exception as exc:  # noqa: BLE001 - re-raised below after cleanup
                    failures.append(exc)
            if failures:
                self.stop()
                raise failures[0]
        self.phases["launched"] = time.monotonic() - started
        for node, authority in zip(self.nodes[: self.authorities], self._authorities, strict=True):
            node.or_port, node.dir_port = authority.or_port, authority.dir_port
            node.fingerprint = authority.fingerprint
        try:
            self._wait_for_consensus(deadline=deadline, started=started)
        except TorNetworkError:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _listed_relays(self, controller: stem.control.Controller) -> int:
        """How many relays the newest consensus lists as running HSDirs."""
        try:
            entries = list(controller.get_network_statuses())
        except stem.ControllerError:
            return 0
        return sum(1 for entry in entries if {"HSDir", "Running", "Valid"} <= set(entry.flags))

    def _cached_microdescriptors(self, controller: stem.control.Controller) -> int:
        try:
            return len(controller.get_info("md/all", "").split("\nonion-key")) - 1
        except stem.ControllerError:
            return 0

    def _ready(self, wanted: int) -> str | None:
        """What the network still lacks, or None once clients can use it."""
        listed = self._listed_relays(self.nodes[0].controller)
        if listed < wanted:
            return f"consensus lists {listed}/{wanted} relays as running HSDirs"
        # A new client asks any directory cache for microdescriptors; a cache that has not
        # fetched them yet answers 404 and the client waits 10 s before asking again.
        # (A relay does not cache its own microdescriptor, hence the - 1.)
        for node in self.nodes[self.authorities:]:
            cached = self._cached_microdescriptors(node.controller)
            if cached < wanted - 1:
                return f"{node.name} caches {cached}/{wanted - 1} microdescriptors"
        return None

    def _wait_for_consensus(self, *, deadline: float, started: float) -> None:
        """Block until the consensus lists every relay and every cache serves it, woken by
        NEWCONSENSUS events on the nodes (polled each second as well)."""
        wanted = self.authorities + self.relays
        wake: queue.Queue[object] = queue.Queue()
        for node in self.nodes:
            node.controller.add_event_listener(wake.put, EventType.NEWCONSENSUS)
        try:
            while (missing := self._ready(wanted)) is not None:
                if missing.startswith(self.nodes[self.authorities].name):
                    self.phases.setdefault("consensus", time.monotonic() - started)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tails = "\n".join(node.log_tail(10) for node in self.nodes)
                    raise TorNetworkError(f"network not ready: {missing}\n{tails}")
                with contextlib.suppress(queue.Empty):
                    wake.get(timeout=min(remaining, 1.0))
        finally:
            for node in self.nodes:
                node.controller.remove_event_listener(wake.put)

    # -- clients ----------------------------------------------------------------------------

    def start_client(
        self, name: str, *, socks: bool = True, extra: TorOptions | None = None,
        timeout: float = 90.0,
    ) -> TorNode:
        """Start a client tor on this network and wait until it has bootstrapped."""
        options: dict[str, str | Sequence[str]] = {
            **self.client_options(),
            # ExtendedErrors: onion failures as SOCKS codes 0xF0-0xF7 (0xF4: needs client auth).
            "SocksPort": "127.0.0.1:auto ExtendedErrors" if socks else "0",
            **(extra or {}),
        }
        node = launch_node(
            name=name, data_dir=self.base_dir / name, options=options, tor_cmd=self.tor_cmd
        )
        self.clients.append(node)
        if socks:  # e.g. '"127.0.0.1:43717"'
            listener = node.controller.get_info("net/listeners/socks").split()[0]
            node.socks_port = int(listener.strip('"').rpartition(":")[2])
        node.wait_for_bootstrap(deadline=time.monotonic() + timeout)
        return node

    # -- teardown ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every tor of the network (clients first), leaving no process behind."""
        for node in [*self.clients, *self.nodes]:
            node.stop()
        self.clients.clear()
        self.nodes.clear()

    def __enter__(self) -> TorNetwork:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


@contextlib.contextmanager
def owner_sentinel() -> Iterator[int]:
    """A child process that lives exactly as long as this one; yields its pid.

    For a tor that must not be owned through its control connection (stem's TAKEOWNERSHIP
    also sends RESETCONF, which kills a sandboxed tor serving onions): pass the pid as
    `__OwningControllerProcess`, and tor exits once the sentinel does, i.e. when we exit.
    """
    sentinel = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield sentinel.pid
    finally:
        if sentinel.stdin is not None:
            sentinel.stdin.close()  # EOF: the sentinel exits
        sentinel.wait(timeout=10)


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGINT (tor's "exit now"), then SIGKILL if it lingers; always reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=timeout)


@contextlib.contextmanager
def running_network(base_dir: Path, **kwargs: Any) -> Iterator[TorNetwork]:
    """A started TorNetwork that is always stopped afterwards."""
    network = TorNetwork(base_dir=base_dir, **kwargs)
    network.start()
    try:
        yield network
    finally:
        network.stop()


def tools_missing() -> str | None:
    """Why the network cannot be built here, or None: for pytest.skip."""
    for tool in ("tor", "tor-gencert"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install tor)"
    return None


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tornet-") as tmp:
        began = time.monotonic()
        with running_network(Path(tmp)) as net:
            client = net.start_client("client")
            print(
                f"network up in {net.startup_seconds:.1f} s, client bootstrapped after "
                f"{time.monotonic() - began:.1f} s (SOCKS 127.0.0.1:{client.socks_port})",
                file=sys.stderr,
            )
