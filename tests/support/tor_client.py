"""Reaching an onion service as Tor Browser does: through a client tor's SOCKS port.

For the tests on the private Tor network (tests/support/tor_network.py): fetch a page, or the
SOCKS refusal tor gives instead (missing or wrong client-auth key), retrying the "not yet" answers
of a fresh network until a deadline; and give the client tor a client-auth key, or take it away.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from aiohttp_socks import ProxyConnector, ProxyError, ProxyTimeoutError

from tests.support.tor_network import TorNode

#: How long an onion service may take to publish its descriptor on the private network.
PUBLISH_TIMEOUT = 90.0
FETCH_TIMEOUT = 60.0

#: SOCKS replies that mean "not yet" on a fresh network: the descriptor is not on the HSDirs
#: yet (0xF0), an introduction or rendezvous failed or timed out (0xF2, 0xF3, 0xF7), or a
#: generic failure while circuits are still being built (0x01, 0x04, 0x06).
RETRYABLE = {0x01, 0x04, 0x06, 0xF0, 0xF2, 0xF3, 0xF7}
MISSING_CLIENT_AUTH = 0xF4
BAD_CLIENT_AUTH = 0xF5


async def _get_once(socks_port: int, address: str) -> str:
    connector = ProxyConnector.from_url(f"socks5://127.0.0.1:{socks_port}", rdns=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.get(f"http://{address}/") as response,
    ):
        response.raise_for_status()
        return await response.text()


def socks_code(exc: ProxyError) -> int | None:
    """The SOCKS5 reply code of a failed connect.

    python_socks only knows the RFC 1928 codes; tor's onion codes (0xF0-0xF7) arrive as
    "Invalid reply code: 0XF4" without an error_code, so read them from the message.
    """
    if exc.error_code is not None:
        return int(exc.error_code)
    match = re.search(r"reply code: 0X([0-9A-F]{2})", str(exc), re.IGNORECASE)
    return int(match.group(1), 16) if match else None


async def fetch(client: TorNode, address: str, *, timeout: float = FETCH_TIMEOUT) -> str:
    """GET http://address/ through the client tor, retrying "not yet" failures until a deadline."""
    assert client.socks_port is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await _get_once(client.socks_port, address)
        except ProxyError as exc:
            if socks_code(exc) not in RETRYABLE or time.monotonic() > deadline:
                raise
        except (ProxyTimeoutError, aiohttp.ClientError, TimeoutError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)  # back off between attempts; the deadline bounds the wait


async def refusal(client: TorNode, address: str, *, timeout: float = FETCH_TIMEOUT) -> int | None:
    """The first definite SOCKS error for address (after "not yet" ones); fails if it loads."""
    assert client.socks_port is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            page = await _get_once(client.socks_port, address)
        except ProxyError as exc:
            if socks_code(exc) not in RETRYABLE:
                return socks_code(exc)
        except (ProxyTimeoutError, aiohttp.ClientError, TimeoutError):
            pass
        else:
            pytest.fail(f"{address} served {page!r} but should have refused")
        await asyncio.sleep(0.5)  # back off between attempts; the deadline bounds the wait
    pytest.fail(f"{address} neither loaded nor refused within {timeout} s")


def client_auth_add(client: TorNode, address: str, private_key_b64: str) -> None:
    service_id = address.removesuffix(".onion")
    reply = client.controller.msg(f"ONION_CLIENT_AUTH_ADD {service_id} {private_key_b64}")
    # 250 added, 251 replaced an older key, 252 added and decrypted a cached descriptor
    assert reply.content()[0][0] in ("250", "251", "252"), str(reply)


def client_auth_remove(client: TorNode, address: str) -> None:
    client.controller.msg(f"ONION_CLIENT_AUTH_REMOVE {address.removesuffix('.onion')}")
