"""The drop box's one entry point: parse the command line, build the Config, hand over."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from dropbox.config import Config
from dropbox.storage import DatabaseDamaged
from keys.commands import CommandError
from onion.cli import add_onion_commands, run_onion_command

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """Misuse prints one clear line and exits 2 (argparse would print the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see --help)\n")


def _port(text: str) -> int:
    """A TCP port, held to the settings file's bounds (1-65535): a flag is no way around them."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1-65535)")
    return port


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data"), metavar="DIR",
                        help="the install's data folder (default: ./data)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="settings file to use instead of DIR/config.toml")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py", description="Anonymous whistleblowing drop box.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    _data_option(commands.add_parser("init", help="create the data folder, database and keys"))

    serve = commands.add_parser("serve", help="run the whistleblower and caseworker apps")
    _data_option(serve)
    serve.add_argument("--no-tor", action="store_true", help="serve on loopback only, without onion services")
    serve.add_argument("--port", type=_port, help="whistleblower app port (default: the settings file's, 8080)")
    serve.add_argument("--admin-port", type=_port, help="caseworker app port (default: the settings file's, 8081)")
    serve.add_argument("--host", help="bind address; loopback unless you also pass "
                       "--i-understand-this-exposes-the-server")
    serve.add_argument("--i-understand-this-exposes-the-server", dest="expose", action="store_true",
                       help="allow a non-loopback --host (the apps must normally be reachable only through tor)")
    serve.add_argument("--tor-control", metavar="SOCKET_OR_PORT",
                       help="use a running tor's ControlSocket path or ControlPort instead of launching one")

    _data_option(commands.add_parser("purge", help="delete reports past their retention"))
    _data_option(commands.add_parser("status", help="health checks for an operator or a monitor; exit 1 if any "
                                      "fails"))
    stats = commands.add_parser("statistics", help="the year's content-free figures as CSV (deleted reports "
                                "included)")
    stats.add_argument("--year", type=int, required=True, metavar="YYYY", help="reports received in this year")
    stats.add_argument("--channel", metavar="ID", help="only this channel")
    _data_option(stats)
    channel = commands.add_parser("channel", help="whistleblower channels (managed in the caseworker web admin)")
    channel_commands = channel.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    _data_option(channel_commands.add_parser("list", help="list channels with retention and caseworker count"))
    backup = commands.add_parser("backup", help="write one archive of the install (safe while serving)")
    backup.add_argument("file", type=Path, metavar="FILE", help="the archive to write (must not exist)")
    _data_option(backup)
    restore = commands.add_parser("restore", help="restore an archive into a new or empty --data folder")
    restore.add_argument("file", type=Path, metavar="FILE", help="an archive written by backup")
    _data_option(restore)
    signing_key = commands.add_parser("signing-key", help="show the install's signing key (proofs of reporting "
                                      "are checked against it)")
    signing_key.add_argument("--rotate", action="store_true", help="retire the key and make a new one (server "
                             "stopped; old proofs keep verifying)")
    signing_key.add_argument("--pem", action="store_true", help="print the public key as PEM (for openssl)")
    _data_option(signing_key)
    verify = commands.add_parser("verify", help="check a proof of reporting or a case export against the install's "
                                 "signing keys; exit 0 valid, 1 not")
    verify.add_argument("file", type=Path, metavar="FILE", help="the proof or the export ZIP")
    _data_option(verify)
    recipient = commands.add_parser("recipient-key", help="make a key pair for an authority that receives "
                                    "forwarded cases (needs no install)")
    recipient.add_argument("--out", type=Path, required=True, metavar="KEYFILE",
                           help="where to write the secret key (must not exist; made 0600)")
    opener = commands.add_parser("open-export", help="open a forwarded export with the recipient's key file "
                                 "(needs no install); exit 1 if the key does not open it")
    opener.add_argument("file", type=Path, metavar="FILE", help="the forwarded export (.dbxexport)")
    opener.add_argument("--key", type=Path, required=True, metavar="KEYFILE", help="written by recipient-key")
    opener.add_argument("--out", type=Path, metavar="ZIP", help="where to write the export (default: FILE as .zip)")
    _data_option(commands.add_parser("migrate", help="upgrade the database to this version's schema "
                                     "(take a backup first)"))

    cleaner = commands.add_parser("cleaner", help="run the metadata cleaner service (deploy/dropbox-cleaner.service "
                                  "starts it; it reads no data folder)")
    cleaner.add_argument("--socket", type=Path, metavar="PATH",
                         help="Unix socket to listen on (not needed under systemd socket activation)")
    cleaner.add_argument("--concurrency", type=int, default=2, metavar="N",
                         help="files cleaned at once, each in its own sandbox (default 2)")

    cw = commands.add_parser("caseworker", help="manage caseworker accounts")
    cw_commands = cw.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    add = cw_commands.add_parser("add", help="add a caseworker (prints a generated passphrase once)")
    add.add_argument("name")
    add.add_argument("--passphrase-stdin", action="store_true", help="read the passphrase from stdin instead")
    add.add_argument("--admin", action="store_true", help="may manage channels and accounts, read the audit log")
    add.add_argument("--channel", action="append", dest="channels", metavar="ID",
                     help="join this channel instead of the default one (repeatable)")
    _data_option(add)
    _data_option(cw_commands.add_parser("list", help="list caseworkers"))
    for action, text in (("disable", "stop a caseworker from logging in"), ("enable", "allow logins again")):
        p = cw_commands.add_parser(action, help=text)
        p.add_argument("name")
        _data_option(p)
    passwd = cw_commands.add_parser("passwd", help="change a passphrase (needs the current one)")
    passwd.add_argument("name")
    passwd.add_argument("--passphrase-stdin", action="store_true",
                        help="read the current, then the new passphrase from stdin (one per line)")
    _data_option(passwd)
    grant = cw_commands.add_parser("grant", help="let a caseworker read reports another one can read")
    grant.add_argument("name")
    grant.add_argument("--all", action="store_true", required=True, help="every report the granter can read")
    grant.add_argument("--by", required=True, metavar="GRANTER", help="an existing caseworker (passphrase asked)")
    grant.add_argument("--passphrase-stdin", action="store_true", help="read the granter's passphrase from stdin")
    _data_option(grant)

    add_onion_commands(commands)
    return parser


def _dispatch(args: argparse.Namespace, config: Config, settings_problems: list[str]) -> Coroutine[Any, Any, int] | int:
    from keys import commands as k

    if args.command == "status":
        return k.status(config, settings_problems=settings_problems)
    if args.command == "channel":
        return k.channel_list(config)
    if args.command == "statistics":
        return k.statistics_csv(config, year=args.year, channel_id=args.channel)

    if args.command == "init":
        return k.init(config)
    if args.command == "purge":
        return k.purge(config)
    if args.command == "migrate":
        return k.migrate(config)
    if args.command == "verify":
        return k.verify(config, path=args.file)
    if args.command == "signing-key":
        return k.signing_key(config, rotate=args.rotate, pem=args.pem)
    if args.command == "backup":
        return k.backup(config, target=args.file)
    if args.command == "restore":
        return k.restore(config, archive=args.file)
    if args.command == "serve":
        from dropbox.web.server import serve

        return serve(config, tor=config.tor_mode != "off" and not args.no_tor,
                     tor_control=args.tor_control or config.tor_control)
    if args.command == "onion":
        return run_onion_command(args, config)
    match args.action:
        case "add":
            return k.caseworker_add(config, name=args.name, passphrase_stdin=args.passphrase_stdin,
                                    admin=args.admin, channels=args.channels)
        case "list":
            return k.caseworker_list(config)
        case "disable" | "enable":
            return k.caseworker_disable(config, name=args.name, enable=args.action == "enable")
        case "passwd":
            return k.caseworker_passwd(config, name=args.name, passphrase_stdin=args.passphrase_stdin)
        case "grant":
            return k.caseworker_grant(config, name=args.name, by=args.by, passphrase_stdin=args.passphrase_stdin)
    raise AssertionError(f"unhandled command {args}")


def _recipient_command(args: argparse.Namespace) -> int:
    """The receiving authority's commands: no install, so no Config."""
    from keys import exports

    try:
        if args.command == "recipient-key":
            return exports.recipient_key(out=args.out)
        return exports.open_export(source=args.file, key=args.key, out=args.out)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR


def _config(args: argparse.Namespace) -> Config:
    """Defaults, then the settings file (DATA/config.toml or --config), then command-line flags."""
    from dropbox.settings import FILE_NAME, settings_for

    data = args.data.resolve()
    path = args.config if args.config is not None else data / FILE_NAME
    if args.config is not None and not path.is_file():
        raise CommandError(f"--config {path}: no such file")
    config = settings_for(Config(data_dir=data), path.resolve())
    flags = {name: getattr(args, name, None) for name in ("host", "port", "admin_port")}
    return config.replace(**{name: value for name, value in flags.items() if value is not None})


def _cleaner(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from dropbox.cleaner_service import CannotListen
    from dropbox.cleaner_service import main as cleaner_main

    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    try:
        return cleaner_main(socket_path=args.socket, concurrency=args.concurrency)
    except (CannotListen, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "cleaner":  # no data folder and no settings file: the service may read neither
        return _cleaner(parser, args)
    from dropbox.settings import SettingsError

    if args.command in ("recipient-key", "open-export"):
        return _recipient_command(args)
    problems: list[str] = []
    try:
        config = _config(args)
    except SettingsError as e:
        if args.command != "status":  # status reports them among its checks
            for problem in e.problems:
                print(f"error: {problem}", file=sys.stderr)
            return USAGE_ERROR
        config, problems = Config(data_dir=args.data.resolve()), e.problems
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    if config.host not in ("127.0.0.1", "localhost", "::1") and not getattr(args, "expose", False):
        parser.error(f"refusing to bind to {config.host}: the apps must only be reachable through tor. "
                     "Add --i-understand-this-exposes-the-server if you really mean it")
    try:
        outcome = _dispatch(args, config, problems)
        return asyncio.run(outcome) if not isinstance(outcome, int) else outcome
    except (CommandError, DatabaseDamaged) as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
