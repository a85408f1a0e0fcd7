"""onion/publish.py on its own: OnionServices' status, failures and what it asks tor for, without a Tor network.

A private tor with `DisableNetwork 1` is real tor taking our ADD_ONION commands (keys, client
auth, PoW) and starting and stopping, in a second and with no network; it can never upload a
descriptor, so the publish deadline is what ends each run. Publishing on a private Tor network,
reaching the onions and client authorisation end to end are in test_onion_tor.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dropbox.config import Config, config_for_tests
from onion.controller import launch_tor
from onion.keys import WHISTLEBLOWER, add_client, ensure_service_keys
from onion.publish import OnionServices, OnionStatus

OFFLINE = {"DisableNetwork": "1"}
#: Generous: starting tor on a busy shared machine; a bound against hanging, not a speed figure.
STATUS_TIMEOUT = 120.0

needs_tor = pytest.mark.skipif(shutil.which("tor") is None, reason="tor is not installed")


def not_running(status: OnionStatus) -> bool:
    return status.state.startswith("failed")


async def test_missing_tor_is_reported_with_the_fix(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path / "data")
    services = OnionServices(config, tor_cmd="no-such-tor-here", retry_max_seconds=1)
    await services.start()
    try:
        status = await services.wait_for(not_running, timeout=30)
    finally:
        await services.stop()
    assert "apt-get install tor" in status.detail
    # the addresses are known all the same, from the keys
    assert status.public_address == ensure_service_keys(config)[WHISTLEBLOWER].address
    assert services.status.state == "stopped"


async def test_unreachable_system_tor_is_reported(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path / "data")
    services = OnionServices(config, tor_control=str(tmp_path / "no.sock"), retry_max_seconds=1)
    await services.start()
    try:
        status = await services.wait_for(not_running, timeout=30)
    finally:
        await services.stop()
    assert "nothing answers" in status.detail and "torrc" in status.detail


async def test_stop_right_after_start_leaves_no_tor_behind(tmp_path: Path) -> None:
    if shutil.which("tor") is None:
        pytest.skip("tor is not installed")
    config = config_for_tests(tmp_path / "data")
    offline = {"DisableNetwork": "1"}  # no network needed to start and stop
    # When the app stops while its tor is still starting (or just started)
    services = OnionServices(config, tor_config_overrides=offline)
    await services.start()
    # (the addresses are set just before tor is launched)
    await services.wait_for(lambda status: status.public_address is not None, timeout=30)
    await services.stop()
    # Then that tor is gone: another one can take the same data folder at once
    tor = await launch_tor(tor_dir=config.tor_dir, overrides=offline)
    await tor.close()
    assert tor.process is not None and tor.process.returncode is not None


async def offline_run(config: Config) -> OnionStatus:
    """Start OnionServices on an offline private tor and return the status its first run fails
    with (tor takes the onions but cannot upload their descriptors, so the deadline ends it)."""
    services = OnionServices(config, tor_config_overrides=OFFLINE, publish_timeout=3, retry_max_seconds=60)
    await services.start()
    try:
        return await services.wait_for(not_running, timeout=STATUS_TIMEOUT)
    finally:
        await services.stop()


@needs_tor
async def test_without_an_authorized_client_the_caseworker_onion_is_withheld(tmp_path: Path) -> None:
    # Given an install with no caseworker client key yet
    config = config_for_tests(tmp_path / "data")
    # When the onions are published on a real (offline) tor
    status = await offline_run(config)
    # Then tor took the whistleblower onion under our key (a refusal or another address would be
    # a different failure), and the caseworker onion was not added without client auth
    assert status.state.startswith("failed: tor did not publish within 3 s"), status
    assert status.public_address == ensure_service_keys(config)[WHISTLEBLOWER].address
    assert (status.authorized_clients, status.client_auth_on, status.caseworker_published) == (0, False, False)


@needs_tor
async def test_the_caseworker_onion_is_added_with_client_auth_for_each_client(tmp_path: Path) -> None:
    # Given two authorized caseworker clients
    config = config_for_tests(tmp_path / "data")
    add_client(config, name="alice-laptop")
    add_client(config, name="bob-laptop")
    # When the onions are published on a real (offline) tor
    status = await offline_run(config)
    # Then tor took the caseworker onion with ClientAuthV3 for both keys (it refuses a bad key)
    assert status.state.startswith("failed: tor did not publish within 3 s"), status
    assert (status.authorized_clients, status.client_auth_on) == (2, True)


async def test_waiting_for_publication_names_the_state_it_ended_in(tmp_path: Path) -> None:
    config = config_for_tests(tmp_path / "data")
    services = OnionServices(config, tor_cmd="no-such-tor-here", retry_max_seconds=60)
    assert services.status.state == "stopped"
    await services.start()
    try:
        with pytest.raises(TimeoutError, match="failed: "):
            await services.wait_for(not_running, timeout=STATUS_TIMEOUT)
            await services.wait_until_published(timeout=1)
    finally:
        await services.stop()
    assert (services.status.state, services.status.public_published) == ("stopped", False)
