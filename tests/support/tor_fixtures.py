"""Session fixtures for tests that need real tor: a private Tor network and a client on it.

Loaded from tests/conftest.py with `pytest_plugins = ["tests.support.tor_fixtures"]`. The network is
built once per session (the first test that asks for it pays ~10-30 s) and torn down at the
end; every tor in it is owned by its controller, so none outlives the test run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from tests.support.tor_network import TorNetwork, TorNetworkError, TorNode, tools_missing


def _report(config: pytest.Config, line: str) -> None:
    """Show a line in the terminal even with output capture on (and under -q)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(line, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="session")
def tor_network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TorNetwork]:
    """3 directory authorities and 3 relays on 127.0.0.1, usable by the time this returns."""
    missing = tools_missing()
    if missing:
        pytest.skip(missing)
    network = TorNetwork(base_dir=tmp_path_factory.mktemp("tor-network"))
    try:
        network.start()
    except TorNetworkError as exc:
        pytest.fail(f"could not build the private Tor network: {exc}", pytrace=False)
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in network.phases.items())
    _report(request.config, f"\nprivate Tor network up in {network.startup_seconds:.1f} s "
                            f"({phases})")
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="session")
def tor_client(request: pytest.FixtureRequest, tor_network: TorNetwork) -> TorNode:
    """A client tor on the private network, SOCKS on 127.0.0.1:tor_client.socks_port.

    Shared by the session: tests that give it client-auth keys must remove them again.
    """
    started = time.monotonic()
    try:
        client = tor_network.start_client("client")
    except TorNetworkError as exc:
        pytest.fail(f"client tor did not bootstrap: {exc}", pytrace=False)
    _report(request.config, f"client tor bootstrapped in {time.monotonic() - started:.1f} s")
    return client
