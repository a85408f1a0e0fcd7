"""`run.py status`: one look at whether the install is healthy, for an operator or a monitor.

Each check is ok, warn or fail; `status` exits 1 if any fails, else 0. Checked: the settings
file, the database's schema, whether both apps answer on their ports, whether tor has uploaded
both onion descriptors (tor's own HS_DESC UPLOADED events, as the serving process saw them and
wrote them to DATA/status.json), free disk space, swap (a warning: plaintext in memory can reach
an unencrypted swap) and whether the clock is synchronised (onion descriptors need it).

DATA/status.json is written by `serve` on every onion status change and removed when it stops.
It holds no time and nothing about anyone's activity: the pid, and the onion state tor reported.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dropbox.cleaner_service import probe_remote
from dropbox.config import Config, GiB
from dropbox.storage import SCHEMA_VERSION, DatabaseDamaged, NotInitialised, schema_version

if TYPE_CHECKING:
    from onion.publish import OnionStatus

STATUS_NAME = "status.json"
HTTP_TIMEOUT_SECONDS = 10


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    text: str


def write_server_status(config: Config, *, onions: OnionStatus | None, cleaning_problem: str | None = None) -> None:
    """Atomically replace DATA/status.json (0600); `onions` None: serving without tor.
    `cleaning_problem`: why the metadata cleaning sandbox cannot start in the serving process."""
    state: dict[str, Any] = {"pid": os.getpid(), "onions": None, "cleaning_problem": cleaning_problem}
    if onions is not None:
        state["onions"] = {"state": onions.state, "detail": onions.detail,
                           "bootstrap_percent": onions.bootstrap_percent,
                           "public_published": onions.public_published,
                           "caseworker_published": onions.caseworker_published,
                           "authorized_clients": onions.authorized_clients}
    path = config.data_dir / STATUS_NAME
    part = path.with_suffix(".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(part, path)


def remove_server_status(config: Config) -> None:
    with contextlib.suppress(FileNotFoundError):
        (config.data_dir / STATUS_NAME).unlink()


def check_all(config: Config, *, settings_problems: list[str]) -> list[Check]:
    checks = [_settings(settings_problems), _schema(config)]
    serving = _serving(config)
    checks.append(serving)
    checks.append(_onions(config) if serving.level is Level.OK else
                  Check("onions", Level.FAIL, "not serving, so not published"))
    if serving.level is Level.OK:
        checks.append(_cleaning(config))
    checks += [_disk(config), _swap(), _clock()]
    return checks


def _settings(problems: list[str]) -> Check:
    if problems:
        return Check("settings", Level.FAIL, "; ".join(problems))
    return Check("settings", Level.OK, "no mistakes")


def _schema(config: Config) -> Check:
    try:
        version = schema_version(config.db_path)
    except NotInitialised:
        return Check("database", Level.FAIL, f"no install in {config.data_dir}")
    except DatabaseDamaged as e:
        return Check("database", Level.FAIL, str(e))
    if version < SCHEMA_VERSION:
        return Check("database", Level.FAIL, f"schema {version} needs migrating to {SCHEMA_VERSION}: "
                     f"take a backup, then python run.py migrate --data {config.data_dir}")
    if version > SCHEMA_VERSION:
        return Check("database", Level.FAIL, f"schema {version} is newer than this code ({SCHEMA_VERSION})")
    return Check("database", Level.OK, f"schema {version}, no migration pending")


def _answers(host: str, port: int) -> bool:
    try:
        name = f"[{host}]" if ":" in host else host
        with urllib.request.urlopen(f"http://{name}:{port}/static/style.css",  # noqa: S310 (own loopback app)
                                    timeout=HTTP_TIMEOUT_SECONDS) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _serving(config: Config) -> Check:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host  # noqa: S104
    down = [f"{name} app on {host}:{port}" for name, port in (("whistleblower", config.port),
                                                               ("caseworker", config.admin_port))
            if not _answers(host, port)]
    if down:
        return Check("serving", Level.FAIL, "not answering: " + ", ".join(down))
    return Check("serving", Level.OK, f"both apps answer on {host}:{config.port} and {host}:{config.admin_port}")


def _read_status(config: Config) -> dict[str, Any] | None:
    try:
        state = json.loads((config.data_dir / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not Path(f"/proc/{state.get('pid')}").exists():
        return None  # left by a process that is gone
    return state


def _onions(config: Config) -> Check:
    state = _read_status(config)
    if state is None:
        return Check("onions", Level.FAIL, "the serving process reports no onion status (is it this install's?)")
    onions = state.get("onions")
    if onions is None:
        if config.tor_mode == "off":
            return Check("onions", Level.WARN, "tor_mode = \"off\": no onion services (development only)")
        return Check("onions", Level.FAIL, "serving without tor (--no-tor): no onion services")
    missing = [name for name, key in (("whistleblower", "public_published"), ("caseworker", "caseworker_published"))
               if not onions.get(key)]
    if missing:
        detail = onions.get("detail") or onions.get("state")
        return Check("onions", Level.FAIL, f"not published by tor: {', '.join(missing)} onion ({detail})")
    return Check("onions", Level.OK, f"both descriptors uploaded by tor; {onions.get('authorized_clients')} "
                 "authorized caseworker client(s)")


def _cleaning(config: Config) -> Check:
    """Whether files can be cleaned of metadata. With a cleaner service (cleaner_socket), ask it now:
    it runs on its own and may have stopped since the server started. Without one, ask the server,
    which tried at start-up: a service manager's restrictions apply there, not here."""
    if config.cleaner_socket is not None:
        problem = probe_remote(config.cleaner_socket)
        if problem:
            return Check("cleaning", Level.FAIL, f"{problem}: files are kept as sent and flagged as not cleaned; "
                         "see docs/OPERATIONS.md")
        return Check("cleaning", Level.OK, f"the cleaner service at {config.cleaner_socket} starts its sandbox")
    state = _read_status(config)
    if state is None:
        return Check("cleaning", Level.FAIL, "the serving process reports no status")
    problem = state.get("cleaning_problem")
    if problem:
        return Check("cleaning", Level.FAIL, f"the metadata cleaning sandbox cannot start ({problem}): files are "
                     "kept as sent and flagged as not cleaned; under systemd, use the cleaner service "
                     "(cleaner_socket, see docs/OPERATIONS.md)")
    return Check("cleaning", Level.OK, "the metadata cleaning sandbox starts in the serving process")


def _disk(config: Config) -> Check:
    usage = shutil.disk_usage(config.data_dir if config.data_dir.exists() else config.data_dir.parent)
    need = max(2 * config.max_submission_bytes, 1 * GiB)
    text = f"{usage.free / GiB:.1f} GiB free of {usage.total / GiB:.1f} GiB"
    if usage.free < need:
        return Check("disk", Level.FAIL, f"{text}; below {need / GiB:.1f} GiB (two of the largest submissions)")
    return Check("disk", Level.OK, text)


def _swap(swaps: Path = Path("/proc/swaps")) -> Check:
    try:
        lines = swaps.read_text().splitlines()[1:]
    except OSError:
        return Check("swap", Level.WARN, "cannot tell whether swap is on")
    if lines:
        devices = ", ".join(line.split()[0] for line in lines)
        return Check("swap", Level.WARN, f"swap is on ({devices}): plaintext in memory can reach it; "
                     "use encrypted swap or none")
    return Check("swap", Level.OK, "off")


def _clock() -> Check:
    try:
        done = subprocess.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"],  # noqa: S607
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return Check("clock", Level.WARN, "cannot tell whether the clock is synchronised (no timedatectl)")
    value = done.stdout.strip()
    if value == "yes":
        return Check("clock", Level.OK, "synchronised (NTP)")
    if value == "no":
        return Check("clock", Level.WARN, "not synchronised: tor refuses onion descriptors from a wrong clock; "
                     "enable systemd-timesyncd or chrony")
    return Check("clock", Level.WARN, "cannot tell whether the clock is synchronised")
