"""`python run.py onion ...`: addresses, caseworker client keys, and rotating the public address.

Everything here works without tor running: addresses derive from the keys on disk. Output is
for the operator at a terminal. Misuse (a bad name, a missing --yes) is one line on stderr and
exit status 2, like argparse's own errors; a broken key file is exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

from onion.errors import ClientExists, ClientNameInvalid, ClientNotFound, OnionError
from onion.keys import (
    CASEWORKER,
    WHISTLEBLOWER,
    add_client,
    clients_dir,
    ensure_service_keys,
    list_clients,
    remove_client,
    rotate_service_key,
)
from onion.settings import OnionSettings
from onion.support import client_auth_support, installed_tor, pow_support
from onion.sync import TorrcMismatch, sync_to_system_tor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISUSE = 2

_MISUSE = (ClientNameInvalid, ClientExists, ClientNotFound, TorrcMismatch)


class _Misuse(Exception):
    """The operator asked for something we will not do as asked; the message says why."""


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make argparse report misuse as one line (no usage block), still with exit status 2."""

    def error(message: str) -> NoReturn:
        parser.exit(EXIT_MISUSE, f"{parser.prog}: {message} (see --help)\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def add_onion_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `onion` command group to the app's argparse subparsers.

    Each subcommand takes `--data DIR` like the app's other commands, so `args.data` exists.
    """
    onion = _one_line_errors(subparsers.add_parser(
        "onion", help="onion addresses and caseworker client keys",
        description="Onion addresses and caseworker client keys. Works without tor running.",
    ))
    commands = onion.add_subparsers(dest="onion_command", metavar="COMMAND", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser = _one_line_errors(commands.add_parser(name, help=text, description=text))
        parser.add_argument("--data", type=Path, default=Path("data"), metavar="DIR",
                            help="the install's data folder (default: ./data)")
        parser.add_argument("--config", type=Path, metavar="FILE",
                            help="settings file to use instead of DIR/config.toml")
        return parser

    command("show", "both addresses, tor version, client auth and PoW defence")
    add = command("add-client", "authorize a caseworker device; prints its key once")
    add.add_argument("name", metavar="NAME", help="1-32 letters, digits, '-' or '_'")
    remove = command("remove-client", "revoke a caseworker device")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--disable-caseworker-onion", action="store_true",
                        help="allow removing the last client (the caseworker onion is then withheld)")
    command("sync", "copy keys and clients into the system tor's HiddenServiceDirs (tor_mode = \"system\")")
    command("list-clients", "authorized caseworker devices")
    rotate = command("rotate", "give the public (whistleblower) onion a NEW address")
    rotate.add_argument("--yes", action="store_true", help="confirm: the old address dies")
    rotate.add_argument("--caseworker", action="store_true",
                        help="rotate the caseworker onion instead (every device needs its new line)")


def run_onion_command(args: argparse.Namespace, config: OnionSettings) -> int:
    """Run the `onion` subcommand in `args`; returns the exit status. Writes to the current
    sys.stdout and sys.stderr."""
    out, err = sys.stdout, sys.stderr
    handlers = {
        "show": _show,
        "add-client": _add_client,
        "remove-client": _remove_client,
        "list-clients": _list_clients,
        "rotate": _rotate,
        "sync": _sync,
    }
    handler = handlers.get(getattr(args, "onion_command", None) or "")
    if handler is None:
        print(f"onion: choose one of: {', '.join(handlers)}", file=err)
        return EXIT_MISUSE
    if not config.db_path.exists():
        # Never make fresh keys in a mistyped folder and print an address nobody serves.
        print(f"onion {args.onion_command}: no install in {config.data_dir}; check --data, "
              "or run `python run.py init` first", file=err)
        return EXIT_MISUSE
    # No data-folder lock: the key files are written atomically and a running server picks the
    # changes up within seconds (that is how clients are added and removed live).
    try:
        handler(args, config, out)
    except (_Misuse, *_MISUSE) as exc:
        print(f"onion {args.onion_command}: {exc}", file=err)
        return EXIT_MISUSE
    except OnionError as exc:
        print(f"onion {args.onion_command}: {exc}", file=err)
        return EXIT_FAILED
    except OSError as exc:
        print(f"onion {args.onion_command}: {exc.strerror}: {exc.filename}", file=err)
        return EXIT_FAILED
    return EXIT_OK


def _show(_args: argparse.Namespace, config: OnionSettings, out: TextIO) -> None:
    keys = ensure_service_keys(config)
    clients = list_clients(config)
    tor = installed_tor("tor")
    print(f"Whistleblower onion (public):  http://{keys[WHISTLEBLOWER].address}", file=out)
    print(f"Caseworker onion (client auth): http://{keys[CASEWORKER].address}", file=out)
    if clients:
        print(f"Client auth: on, {len(clients)} authorized client(s)", file=out)
    else:
        print("Client auth: no authorized clients, so the caseworker onion is NOT published; "
              "add one with `onion add-client NAME`", file=out)
    if tor is None:
        print("Tor: not installed; install it with `apt-get install tor`", file=out)
        print("PoW DoS defence: unknown until tor is installed", file=out)
        return
    print(f"Tor: {tor.version_text} ({tor.path})", file=out)
    auth_ok, auth_reason = client_auth_support(tor.version)
    if not auth_ok:
        print(f"Client auth: NOT possible with this tor: {auth_reason}", file=out)
    pow_ok, pow_reason = pow_support(tor.version, pow_module=tor.pow_module)
    if pow_ok:
        print("PoW DoS defence: supported; on for both onions when `serve` publishes them",
              file=out)
    else:
        print(f"PoW DoS defence: off: {pow_reason}", file=out)


def _add_client(args: argparse.Namespace, config: OnionSettings, out: TextIO) -> None:
    new = add_client(config, name=args.name)
    address = ensure_service_keys(config)[CASEWORKER].address
    line = new.auth_private_line(address)
    print(f'Authorized caseworker client "{args.name}" for http://{address}', file=out)
    print("", file=out)
    print("Give the caseworker this line, over a channel you trust. In Tor Browser, open the",
          file=out)
    print("address and paste the line when it asks for a key (or its last part, after the",
          file=out)
    print("final colon); for tor itself, save it as <name>.auth_private in ClientOnionAuthDir:",
          file=out)
    print("", file=out)
    print(f"    {line}", file=out)
    print("", file=out)
    print("This private key is shown once and not stored on the server; only its public half",
          file=out)
    print("is kept. If it is lost, remove the client and add it again. A running server",
          file=out)
    print("accepts the new client within seconds.", file=out)
    if config.tor_mode == "system":
        print("Under the system tor: run `python run.py onion sync`, then restart tor.", file=out)


def _remove_client(args: argparse.Namespace, config: OnionSettings, out: TextIO) -> None:
    system = config.tor_mode == "system"
    names = {c.name for c in list_clients(config)}
    if names == {args.name} and not args.disable_caseworker_onion:
        raise _Misuse(
            f'"{args.name}" is the last caseworker client; without one '
            + ("the system tor turns client authorization OFF for the caseworker onion and anyone who "
               "learns its address reaches the caseworker login. " if system else
               "serve withholds the caseworker onion and nobody can reach the caseworker site. ")
            + "Add the replacement first, or re-run with --disable-caseworker-onion"
        )
    remove_client(config, name=args.name)
    if system:
        print(f'Removed caseworker client "{args.name}" from {clients_dir(config)}. The system tor still '
              "accepts it until you run `python run.py onion sync` and restart tor.", file=out)
    else:
        print(f'Removed caseworker client "{args.name}". A running server refuses it within '
              "seconds (it republishes the caseworker onion without it).", file=out)
    if not list_clients(config):
        print("That was the last client: the caseworker onion is withheld by serve"
              + (". Under the system tor, comment out the caseworker HiddenServiceDir block in the torrc and "
                 "restart tor NOW: `onion sync` refuses to leave it without clients, and the old key "
                 "stays authorized there until you do." if system else
                 " until you add one with `onion add-client NAME`."), file=out)


def _sync(_args: argparse.Namespace, config: OnionSettings, out: TextIO) -> None:
    services, clients = sync_to_system_tor(config)
    print(f"Copied {services} onion keys and {clients} caseworker client key(s) into "
          f"{config.tor_whistleblower_dir} and {config.tor_caseworker_dir} (owner {config.tor_user}, "
          "0700/0600); the torrc's HiddenServicePort lines match the app's ports.", file=out)
    print("Now restart tor (not reload, see torrc.example): systemctl restart tor@default", file=out)


def _list_clients(_args: argparse.Namespace, config: OnionSettings, out: TextIO) -> None:
    clients = list_clients(config)
    if not clients:
        print("No authorized caseworker clients; the caseworker onion is not published. "
              "Add one with `onion add-client NAME`.", file=out)
        return
    for client in clients:
        print(client.name, file=out)
    print(f"({len(clients)} client(s), public keys in {clients_dir(config)})", file=out)


def _rotate(args: argparse.Namespace, config: OnionSettings, out: TextIO) -> None:
    service = CASEWORKER if args.caseworker else WHISTLEBLOWER
    old = ensure_service_keys(config)[service].address
    if not args.yes:
        who = ("every caseworker device must get a new key line (remove-client and add-client each)"
               if args.caseworker else
               "everyone who has it (whistleblowers, your website, printed material) must be told the new one")
        raise _Misuse(f"this gives the {service} onion a NEW address and {old} stops working for good; "
                      f"{who}. Re-run with --yes to do it.")
    new = rotate_service_key(config, service=service).address
    print(f"WARNING: the {service} onion address has changed. The old address is gone for good:", file=out)
    print(f"    old: {old}", file=out)
    print(f"    new: {new}", file=out)
    if args.caseworker:
        print("Give every caseworker device a new line: run remove-client and add-client for each.", file=out)
    else:
        print("Publish the new address everywhere the old one appeared.", file=out)
    print("A running server switches to it within seconds (under the system tor: run `onion sync` and "
          "restart tor); back up the keys again now.", file=out)
