"""The control-protocol lines we build and read ourselves, as pure functions.

stem's `create_ephemeral_hidden_service` takes a single ClientAuthV3 key and knows nothing of
PoWDefensesEnabled, so ADD_ONION is written here; keeping it free of I/O lets the unit tests
check every line without tor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import stem.response

from onion.keys import AuthorizedClient, ServiceKey

#: Both onions answer on the standard HTTP port; Tor Browser users type only the address.
VIRTUAL_PORT = 80
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - recognised, not bound to


def onion_target(host: str, port: int) -> str:
    """Where tor forwards onion connections: the app's listener, loopback if it binds to all."""
    if host in _WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


#: Simultaneous streams (connections) one rendezvous circuit may hold; one more closes the whole
#: circuit (MaxStreamsCloseCircuit), so a flood over one circuit costs the client a new circuit
#: (and, under load, a new proof of work). Tor Browser keeps at most 6 connections per site.
MAX_STREAMS_PER_CIRCUIT = 20


def add_onion_command(
    key: ServiceKey, *, target: str, clients: Sequence[AuthorizedClient] = (), pow_on: bool
) -> str:
    """The ADD_ONION line for one service (stem's helper takes only one ClientAuthV3)."""
    flags = ["DiscardPK", "MaxStreamsCloseCircuit"]
    if clients:
        flags.append("V3Auth")
    parts = [f"ADD_ONION {key.add_onion_key()}", "Flags=" + ",".join(flags),
             f"MaxStreams={MAX_STREAMS_PER_CIRCUIT}"]
    if pow_on:
        parts.append("PoWDefensesEnabled=1")
    parts.append(f"Port={VIRTUAL_PORT},{target}")
    parts.extend(f"ClientAuthV3={client.public_key_b32}" for client in clients)
    return " ".join(parts)


def reply(response: stem.response.ControlMessage) -> tuple[str, str]:
    """(status code, first line): ADD_ONION's first line holds the ServiceID or the error."""
    lines = response.content()
    return lines[-1][0], lines[0][2]


def torrc_services_have_pow(options: Iterable[str]) -> bool:
    """From GETCONF HiddenServiceOptions lines: does every HiddenServiceDir turn PoW on?"""
    services = 0
    with_pow = 0
    for line in options:
        name, _, value = line.partition("=")
        if name == "HiddenServiceDir":
            services += 1
        elif name == "HiddenServicePoWDefensesEnabled" and value.strip() == "1":
            with_pow += 1
    return services > 0 and with_pow == services
