"""`run.py onion sync`: the app's onion keys and caseworker clients into a system tor's HiddenServiceDirs.

Under Debian's tor (tor_mode = "system", see torrc.example) tor serves both onions from its own
torrc, so the keys in DATA/keys/ and every change of caseworker clients must reach tor's
HiddenServiceDirs, owned by tor's user with the modes tor demands (0700 folders, 0600 files).
Before copying anything, the torrc is read back: each configured HiddenServiceDir must be
declared, with a HiddenServicePort that points at the port the app serves on; a mismatch would
publish an onion that leads nowhere (or to the wrong app).

The caseworker onion is never left public: with no authorized client, tor turns client
authorization off for a HiddenServiceDir. So sync refuses to empty `authorized_clients/` and says
what to do instead (comment out the caseworker block of the torrc).

Tor must then be restarted (not reloaded: with Sandbox 1 a reload makes tor exit, see torrc.example).
"""

from __future__ import annotations

import errno
import glob
import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

from onion.errors import OnionError
from onion.files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from onion.keys import CASEWORKER, CLIENTS_DIR, WHISTLEBLOWER, clients_dir, list_clients, service_dir
from onion.settings import OnionSettings

#: Files of a HiddenServiceDir the app owns the truth of.
_KEY_FILES = ("hs_ed25519_secret_key", "hs_ed25519_public_key", "hostname")


class TorrcMismatch(OnionError):
    """The torrc does not serve the onions the way the settings say; nothing was copied."""


@dataclass(frozen=True)
class HiddenService:
    directory: Path
    ports: tuple[str, ...]  # each "VIRTPORT TARGET" as written in the torrc


#: tor's own limit on nested %include (MAX_INCLUDE_RECURSION_LEVEL).
_MAX_INCLUDE_DEPTH = 31


def torrc_lines(torrc: Path, *, depth: int = 0) -> list[str]:
    """The torrc's lines with every `%include` expanded as tor does it: a file, every file of a
    folder (not those starting with "."), or a glob, each in sorted order. scripts/install puts the
    onion services in /etc/tor/torrc.d/dropbox.conf, which /etc/tor/torrc includes."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise OSError(errno.ELOOP, "%include nested too deeply", str(torrc))
    lines: list[str] = []
    for raw in torrc.read_text().splitlines():
        key, _, value = raw.split("#", 1)[0].strip().partition(" ")
        if key.lower() != "%include":
            lines.append(raw)
            continue
        pattern = Path(value.strip()) if Path(value.strip()).is_absolute() else torrc.parent / value.strip()
        for match in sorted(Path(m) for m in glob.glob(str(pattern))):
            files = sorted(f for f in match.iterdir() if not f.name.startswith(".") and f.is_file()) \
                if match.is_dir() else [match]
            for included in files:
                lines += torrc_lines(included, depth=depth + 1)
    return lines


def parse_hidden_services(torrc: Path) -> list[HiddenService]:
    """HiddenServiceDir blocks with their HiddenServicePort lines (later options belong to the
    last HiddenServiceDir, as tor reads them), %include followed."""
    services: list[tuple[Path, list[str]]] = []
    for raw in torrc_lines(torrc):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip()
        if key == "hiddenservicedir":
            services.append((Path(value.rstrip("/")), []))
        elif key == "hiddenserviceport" and services:
            services[-1][1].append(" ".join(value.split()))
    return [HiddenService(directory=d, ports=tuple(p)) for d, p in services]


def check_torrc(config: OnionSettings) -> list[str]:
    """One line per way the torrc disagrees with the settings; empty if it serves both onions right."""
    try:
        declared = {s.directory: s for s in parse_hidden_services(config.tor_torrc)}
    except OSError as e:
        return [f"cannot read the torrc {config.tor_torrc}: {e.strerror}"]
    problems = []
    for service, directory, port in ((WHISTLEBLOWER, config.tor_whistleblower_dir, config.port),
                                     (CASEWORKER, config.tor_caseworker_dir, config.admin_port)):
        found = declared.get(Path(str(directory).rstrip("/")))
        wanted = f"80 {config.host}:{port}"
        if found is None:
            problems.append(f"{config.tor_torrc} has no HiddenServiceDir {directory} for the {service} onion "
                            "(see torrc.example)")
        elif wanted not in found.ports:
            problems.append(f"{config.tor_torrc}: HiddenServiceDir {directory} has HiddenServicePort "
                            f"{', '.join(found.ports) or 'none'}, but the {service} app serves on "
                            f"{config.host}:{port}: expected HiddenServicePort {wanted}")
    return problems


def sync_to_system_tor(config: OnionSettings) -> tuple[int, int]:
    """Copy both keys and the caseworker clients into tor's HiddenServiceDirs; (services, clients).

    Raises TorrcMismatch (nothing copied) if the torrc disagrees or there is no client."""
    problems = check_torrc(config)
    clients = list_clients(config)
    if not clients:
        problems.append("no authorized caseworker client: tor would serve the caseworker onion to anyone. "
                        "Add one (onion add-client NAME), or comment out the caseworker block in the torrc")
    if problems:
        raise TorrcMismatch("; ".join(problems))
    try:
        owner = pwd.getpwnam(config.tor_user)
    except KeyError:
        raise TorrcMismatch(f"no user {config.tor_user!r} (the tor_user setting)") from None
    ids = (owner.pw_uid, owner.pw_gid)
    for service, target in ((WHISTLEBLOWER, config.tor_whistleblower_dir),
                            (CASEWORKER, config.tor_caseworker_dir)):
        _private_dir(target, ids)
        for name in _KEY_FILES:
            _copy(service_dir(config, service) / name, target / name, ids)
    auth = config.tor_caseworker_dir / CLIENTS_DIR
    _private_dir(auth, ids)
    wanted = {f"{c.name}.auth" for c in clients}
    for name in sorted(wanted):
        _copy(clients_dir(config) / name, auth / name, ids)
    for stale in auth.iterdir():  # removed clients: their keys go, after the new ones are in place
        if stale.name not in wanted:
            stale.unlink()
    return 2, len(clients)


def _private_dir(path: Path, ids: tuple[int, int]) -> None:
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chown(path, *ids)
    os.chmod(path, PRIVATE_DIR_MODE)


def _copy(source: Path, target: Path, ids: tuple[int, int]) -> None:
    """Write `target` whole or not at all (temp + rename), tor's owner and 0600 before it appears."""
    temp = target.with_name(f".{target.name}.sync")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fchown(out.fileno(), *ids)
            os.fchmod(out.fileno(), PRIVATE_FILE_MODE)
            os.fsync(out.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
