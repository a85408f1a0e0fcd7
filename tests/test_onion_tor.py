"""OnionServices against real tor on a private Tor network (see tests/support/tor_network.py).

Stand-in aiohttp apps answer on the two app ports; requests travel through a client tor's
SOCKS port to the onion addresses, exactly as from Tor Browser. Waits are deadlines on tor's
state (status changes, SOCKS replies), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import base64
import os
import pwd
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import stem.process
import stem.response.events
from aiohttp import web
from stem.control import EventType

from dropbox.config import Config, config_for_tests
from onion.controller import launch_tor
from onion.keys import (
    CASEWORKER,
    WHISTLEBLOWER,
    NewClient,
    ServiceKey,
    add_client,
    clients_dir,
    ensure_service_keys,
    list_clients,
    remove_client,
)
from onion.protocol import MAX_STREAMS_PER_CIRCUIT, add_onion_command, reply
from onion.publish import OnionServices, OnionStatus
from onion.support import installed_tor, pow_support
from onion.sync import sync_to_system_tor
from tests.support.tor_client import (
    BAD_CLIENT_AUTH,
    MISSING_CLIENT_AUTH,
    PUBLISH_TIMEOUT,
    client_auth_add,
    client_auth_remove,
    fetch,
    refusal,
)
from tests.support.tor_network import (
    TorNetwork,
    TorNode,
    owner_sentinel,
    stop_process,
    torrc_text,
)

TORRC_EXAMPLE = Path(__file__).resolve().parent.parent / "torrc.example"


# -- stand-in apps --------------------------------------------------------------------------


@dataclass(frozen=True)
class StandIns:
    port: int
    admin_port: int


async def _serve(text: str) -> tuple[web.AppRunner, int]:
    """A one-page app on 127.0.0.1, on a port the kernel picks; returns it and the port."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def stand_ins() -> AsyncIterator[StandIns]:
    """Tiny apps in place of the real whistleblower and caseworker apps."""
    public, port = await _serve("whistleblower stand-in")
    staff, admin_port = await _serve("caseworker stand-in")
    yield StandIns(port=port, admin_port=admin_port)
    for runner in (public, staff):
        await runner.cleanup()


@pytest.fixture
def config(tmp_path: Path, stand_ins: StandIns) -> Config:
    return config_for_tests(tmp_path / "data", port=stand_ins.port,
                            admin_port=stand_ins.admin_port)


StartServices = Callable[..., Awaitable[OnionServices]]


@pytest.fixture
async def start_services(tor_network: TorNetwork) -> AsyncIterator[StartServices]:
    """Start OnionServices with a private tor on the test network; all stopped afterwards."""
    started: list[OnionServices] = []

    async def start(config: Config, **kwargs: object) -> OnionServices:
        kwargs.setdefault("tor_config_overrides", tor_network.client_options())
        services = OnionServices(config, client_check_seconds=0.5, retry_max_seconds=2,
                                 **kwargs)  # type: ignore[arg-type]
        started.append(services)
        await services.start()
        await services.wait_until_published(timeout=PUBLISH_TIMEOUT)
        return services

    yield start
    for services in started:
        await services.stop()


@pytest.fixture
def client_keys(tor_client: TorNode) -> Iterator[list[str]]:
    """Addresses whose client-auth keys a test gave the shared client tor; removed after."""
    addresses: list[str] = []
    yield addresses
    for address in addresses:
        client_auth_remove(tor_client, address)


# -- the tests ------------------------------------------------------------------------------


async def test_public_onion_serves_the_app(
    config: Config, start_services: StartServices, tor_client: TorNode
) -> None:
    # Given a fresh install with no caseworker clients yet
    # When the onion services start on the private network
    services = await start_services(config)
    status = services.status

    # Then the public onion serves the whistleblower app through tor
    assert await fetch(tor_client, status.public_address or "") == "whistleblower stand-in"
    # and the status tells the truth about what is up and why
    keys = ensure_service_keys(config)
    assert status.public_address == keys[WHISTLEBLOWER].address
    assert status.public_published
    assert not status.caseworker_published  # withheld: without clients it would be public
    assert "add-client" in status.detail
    installed = installed_tor()
    assert installed is not None
    assert (status.pow_on, status.pow_reason) == pow_support(
        installed.version, pow_module=installed.pow_module)
    assert status.tor_version == installed.version_text


async def test_caseworker_onion_needs_a_client_key(
    config: Config, start_services: StartServices, tor_client: TorNode,
    client_keys: list[str],
) -> None:
    # Given an authorized caseworker device
    device = add_client(config, name="laptop")
    services = await start_services(config)
    address = services.status.caseworker_address or ""
    assert services.status.client_auth_on is True
    assert services.status.authorized_clients == 1

    # When a client without the key asks, tor refuses: the descriptor needs client auth
    assert await refusal(tor_client, address) == MISSING_CLIENT_AUTH

    # When the client gets the key (as Tor Browser does when the caseworker pastes it)
    client_keys.append(address)
    client_auth_add(tor_client, address, new_key := device.onion_client_auth_add_key())
    assert new_key.startswith("x25519:")

    # Then the caseworker app loads
    assert await fetch(tor_client, address) == "caseworker stand-in"


async def test_removed_client_is_refused_while_serving(
    config: Config, start_services: StartServices, tor_client: TorNode,
    client_keys: list[str],
) -> None:
    # Given two devices, and a client tor holding the first one's key
    laptop = add_client(config, name="laptop")
    add_client(config, name="phone")
    services = await start_services(config)
    address = services.status.caseworker_address or ""
    client_keys.append(address)
    client_auth_add(tor_client, address, laptop.onion_client_auth_add_key())
    assert await fetch(tor_client, address) == "caseworker stand-in"

    # When the laptop is revoked while the app keeps serving
    remove_client(config, name="laptop")
    await services.wait_for(
        lambda status: status.authorized_clients == 1 and status.caseworker_published,
        timeout=PUBLISH_TIMEOUT,
    )

    # Then the laptop's key no longer opens the caseworker onion (in a fresh client state,
    # as after a restart of its Tor Browser; the key itself is still there)
    await client_tor_forgets_onions(tor_client)
    client_auth_add(tor_client, address, laptop.onion_client_auth_add_key())
    assert await refusal(tor_client, address) == BAD_CLIENT_AUTH


async def test_a_broken_auth_file_withdraws_the_caseworker_onion(
    config: Config, start_services: StartServices,
) -> None:
    # Given a published caseworker onion
    add_client(config, name="laptop")
    services = await start_services(config)
    assert services.status.caseworker_published

    # When an .auth file is damaged (a bad copy, a typo): nobody knows who it lets in
    broken = clients_dir(config) / "typo.auth"
    broken.write_text("descriptor:x25519:not-a-key\n")

    # Then the caseworker onion is withdrawn (fail closed), saying why; the public one stays
    status = await services.wait_for(
        lambda status: not status.caseworker_published and "typo.auth" in status.detail,
        timeout=30)
    assert status.public_published

    # and once the file is fixed, it comes back
    broken.unlink()
    status = await services.wait_for(
        lambda status: status.caseworker_published and status.detail == "",
        timeout=PUBLISH_TIMEOUT)
    assert status.authorized_clients == 1


async def client_tor_forgets_onions(client: TorNode, *, timeout: float = 30.0) -> None:
    """NEWNYM, like Tor Browser's "New Identity": drops cached descriptors, circuits and
    client-auth keys added without Flags=Permanent. Waits for tor's SIGNAL event, since tor
    may postpone a NEWNYM by up to 10 s, and a late one would wipe keys added after it."""
    done = threading.Event()

    def on_signal(event: stem.response.events.SignalEvent) -> None:
        if event.signal == stem.Signal.NEWNYM:
            done.set()

    client.controller.add_event_listener(on_signal, EventType.SIGNAL)
    try:
        client.controller.signal(stem.Signal.NEWNYM)
        assert await asyncio.to_thread(done.wait, timeout), "tor did not act on NEWNYM"
    finally:
        client.controller.remove_event_listener(on_signal)


async def test_restart_keeps_both_addresses(
    config: Config, start_services: StartServices, tor_client: TorNode,
    client_keys: list[str],
) -> None:
    # Given published services with a caseworker device
    device = add_client(config, name="laptop")
    first = await start_services(config)
    before = (first.status.public_address, first.status.caseworker_address)

    # When the app stops and starts again
    await first.stop()
    assert first.status.state == "stopped"
    second = await start_services(config)

    # Then both addresses are the same, and both onions work again
    assert (second.status.public_address, second.status.caseworker_address) == before
    assert await fetch(tor_client, before[0] or "") == "whistleblower stand-in"
    client_keys.append(before[1] or "")
    client_auth_add(tor_client, before[1] or "", device.onion_client_auth_add_key())
    assert await fetch(tor_client, before[1] or "") == "caseworker stand-in"


def test_derived_address_matches_what_tor_reports(tor_client: TorNode) -> None:
    controller = tor_client.controller
    # Given a key we made: tor names its service by the address we derived
    ours = ServiceKey.generate()
    reply = controller.msg(f"ADD_ONION {ours.add_onion_key()} Port=80,127.0.0.1:9")
    assert reply.is_ok(), str(reply)
    assert reply.content()[0][2] == f"ServiceID={ours.service_id}"
    controller.msg(f"DEL_ONION {ours.service_id}")

    # Given a key tor made: we derive the same address from its expanded secret key
    made = controller.create_ephemeral_hidden_service(
        {80: "127.0.0.1:9"}, key_type="NEW", key_content="ED25519-V3")
    theirs = ServiceKey.from_expanded(base64.b64decode(made.private_key))
    assert theirs.address == f"{made.service_id}.onion"
    controller.remove_ephemeral_hidden_service(made.service_id)


# -- torrc.example --------------------------------------------------------------------------


def torrc_for_test(root: Path, stand_ins: StandIns) -> str:
    """torrc.example with its system paths moved under `root` and the app ports replaced."""
    text = TORRC_EXAMPLE.read_text()
    for system_path in ("/var/lib/tor", "/run/tor"):
        assert system_path in text
        text = text.replace(system_path, str(root / system_path.strip("/").replace("/", "-")))
    for port, real in (("8080", stand_ins.port), ("8081", stand_ins.admin_port)):
        assert f"127.0.0.1:{port}" in text
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{real}")
    return text


def install_keys_like_the_torrc_says(config: Config, root: Path, stand_ins: StandIns) -> None:
    """Step 4 of torrc.example: `onion sync` copies keys and clients into tor's HiddenServiceDirs
    (owned by tor's user, here the test's own), after checking the torrc's ports."""
    lib = root / "var-lib-tor"
    synced = config.replace(tor_mode="system", tor_torrc=root / "torrc", tor_user=pwd.getpwuid(os.getuid()).pw_name,
                            tor_whistleblower_dir=lib / f"dropbox-{WHISTLEBLOWER}",
                            tor_caseworker_dir=lib / f"dropbox-{CASEWORKER}",
                            port=stand_ins.port, admin_port=stand_ins.admin_port)
    assert sync_to_system_tor(synced) == (2, len(list_clients(config)))


def test_torrc_example_is_valid(tmp_path: Path, stand_ins: StandIns) -> None:
    torrc = tmp_path / "torrc"
    torrc.write_text(torrc_for_test(tmp_path, stand_ins))
    (tmp_path / "var-lib-tor").mkdir(mode=0o700)
    (tmp_path / "run-tor").mkdir(mode=0o700)
    tor = shutil.which("tor")
    if tor is None:
        pytest.skip("tor is not installed")
    done = subprocess.run([tor, "--verify-config", "-f", str(torrc)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Configuration was valid" in done.stdout


@dataclass
class SystemTor:
    control_socket: Path
    laptop: NewClient


@pytest.fixture
def system_tor(
    tmp_path: Path, config: Config, stand_ins: StandIns, tor_network: TorNetwork
) -> Iterator[SystemTor]:
    """A tor running torrc.example (sandbox and all) on the test network, keys installed.

    Like a system tor, nothing owns it through a control connection: owning means
    TAKEOWNERSHIP + RESETCONF, and any config change makes a sandboxed tor 0.4.9 serving
    onions exit. It is tied to this test process through a sentinel instead.
    """
    laptop = add_client(config, name="laptop")  # authorized_clients/ holds a real .auth file
    root = tmp_path / "sys"
    for folder in ("var-lib-tor", "run-tor"):
        (root / folder).mkdir(mode=0o700, parents=True)
    torrc = root / "torrc"
    # The network's options come last; they only add test-network settings.
    torrc.write_text(torrc_for_test(root, stand_ins) + torrc_text(tor_network.client_options()))
    ensure_service_keys(config)
    install_keys_like_the_torrc_says(config, root, stand_ins)
    with owner_sentinel() as owner_pid:
        process = stem.process.launch_tor(
            "tor", torrc_path=str(torrc), completion_percent=0, timeout=None,
            args=["--Log", f"notice file {root / 'notice.log'}", "--Log", "notice stdout",
                  "__OwningControllerProcess", str(owner_pid)],
        )
        if process.stdin is not None:
            process.stdin.close()
        try:
            yield SystemTor(control_socket=root / "run-tor" / "control", laptop=laptop)
        finally:
            stop_process(process)


async def test_torrc_example_serves_both_onions(
    config: Config, system_tor: SystemTor, tor_client: TorNode, client_keys: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a system tor started from torrc.example with the app's keys installed
    keys = ensure_service_keys(config)
    # When the app connects to its control socket instead of launching a tor
    services = OnionServices(config, tor_control=str(system_tor.control_socket),
                             client_check_seconds=0.5, retry_max_seconds=2)
    await services.start()
    try:
        status: OnionStatus = await services.wait_until_published(timeout=PUBLISH_TIMEOUT)
        # Then it finds both onions served by the torrc (not added by us), with PoW on
        assert status.public_published and status.caseworker_published
        assert status.client_auth_on is None  # lives in tor's HiddenServiceDir, not visible
        assert status.pow_on, status.pow_reason
        assert status.tor_mode == f"system tor at {system_tor.control_socket}"
        # and no false "the torrc does not serve it" on the way, however early it connected
        assert not [r for r in caplog.records if r.levelname == "ERROR" and r.name == "onion.publish"], caplog.text
    finally:
        await services.stop()

    # and clients reach the public onion (the app disconnecting did not stop tor)
    assert await fetch(tor_client, keys[WHISTLEBLOWER].address) == "whistleblower stand-in"
    # and the caseworker onion: refused without a key, or with one tor was not given,
    caseworker = keys[CASEWORKER].address
    assert await refusal(tor_client, caseworker) == MISSING_CLIENT_AUTH
    client_keys.append(caseworker)
    stranger = add_client(config, name="phone")  # added after the copy: tor never saw it
    await client_tor_forgets_onions(tor_client)
    client_auth_add(tor_client, caseworker, stranger.onion_client_auth_add_key())
    assert await refusal(tor_client, caseworker) == BAD_CLIENT_AUTH
    # and served with the key whose .auth file `onion add-client` wrote
    client_auth_add(tor_client, caseworker, system_tor.laptop.onion_client_auth_add_key())
    assert await fetch(tor_client, caseworker) == "caseworker stand-in"


async def test_a_dead_tor_is_restarted_and_republished(
    config: Config, start_services: StartServices, tor_client: TorNode,
) -> None:
    # Given published services on a private tor
    services = await start_services(config)
    pid = int((config.tor_dir / "tor.pid").read_text())

    # When that tor dies
    os.kill(pid, signal.SIGKILL)
    await services.wait_for(lambda status: status.state != "published", timeout=30)

    # Then a new tor publishes the same address again, and it serves
    status = await services.wait_until_published(timeout=PUBLISH_TIMEOUT)
    assert int((config.tor_dir / "tor.pid").read_text()) != pid
    assert await fetch(tor_client, status.public_address or "") == "whistleblower stand-in"


async def test_tor_takes_the_stream_cap_of_both_onions_and_checks_it(tmp_path: Path) -> None:
    if shutil.which("tor") is None:
        pytest.skip("tor is not installed")
    tor = await launch_tor(tor_dir=tmp_path / "tor", overrides={"DisableNetwork": "1"})
    try:
        # Given the ADD_ONION line the app sends for each onion (MaxStreams + MaxStreamsCloseCircuit)
        key = ServiceKey.generate()
        command = add_onion_command(key, target="127.0.0.1:8080", pow_on=False)
        # Then real tor takes it
        assert reply(await tor.msg(command)) == ("250", f"ServiceID={key.service_id}")
        # and it does read both: an out-of-range cap or a misspelt flag is refused, not ignored
        other = add_onion_command(ServiceKey.generate(), target="127.0.0.1:8080", pow_on=False)
        for broken in (other.replace(f"MaxStreams={MAX_STREAMS_PER_CIRCUIT}", "MaxStreams=70000"),
                       other.replace("MaxStreamsCloseCircuit", "MaxStreamsCloseCircuits")):
            assert reply(await tor.msg(broken))[0] == "512", broken
    finally:
        await tor.close()
