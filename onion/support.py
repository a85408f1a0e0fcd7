"""What the installed or running tor can do: version, the PoW module, client auth via ADD_ONION.

Checked before use rather than discovered by failure, so `onion show` can explain what is
missing without tor running, and `OnionServices` can log one clear reason instead of a refusal.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import stem.version
from stem.version import Version

#: ADD_ONION gained PoWDefensesEnabled= in 0.4.9.2-alpha (the PoW defence itself is 0.4.8.1).
POW_VIA_ADD_ONION = Version("0.4.9.2-alpha")
#: ADD_ONION's ClientAuthV3 works from 0.4.6.3-rc on (tor bug 40378 made it a no-op before).
CLIENT_AUTH_VIA_ADD_ONION = Version("0.4.6.3-rc")
UPGRADE_HINT = "install a newer tor from deb.torproject.org"


@dataclass(frozen=True)
class InstalledTor:
    """The tor binary on this machine, as `tor --version` and `tor --list-modules` describe it."""

    path: str
    version: Version
    #: None when this tor does not list its modules (older than 0.4.5).
    pow_module: bool | None

    @property
    def version_text(self) -> str:
        return str(self.version).split(" ")[0]


def _run(args: list[str]) -> str | None:
    try:
        # args[0] is the tor found on PATH by shutil.which; no shell, no user input
        done = subprocess.run(  # noqa: S603
            args, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def installed_tor(tor_cmd: str = "tor") -> InstalledTor | None:
    """The installed tor, or None if there is none on PATH."""
    path = shutil.which(tor_cmd)
    if path is None:
        return None
    try:
        version = stem.version.get_system_tor_version(path)
    except OSError:
        return None
    modules = _run([path, "--list-modules"]) or ""
    pow_module = None
    for line in modules.splitlines():
        name, _, state = line.partition(":")
        if name.strip() == "pow":
            pow_module = state.strip() == "yes"
    return InstalledTor(path=path, version=version, pow_module=pow_module)


def pow_support(version: Version | str, *, pow_module: bool | None = None) -> tuple[bool, str]:
    """Whether we can turn the PoW DoS defence on through ADD_ONION, and if not, why not."""
    version = Version(version) if isinstance(version, str) else version
    if pow_module is False:
        return False, "this tor was built without the pow module; " + UPGRADE_HINT
    if version < POW_VIA_ADD_ONION:
        return False, (
            f"tor {str(version).split(' ')[0]} cannot enable PoW through ADD_ONION "
            f"(needs {POW_VIA_ADD_ONION}); {UPGRADE_HINT}, or serve the onions from torrc "
            "with HiddenServicePoWDefensesEnabled 1 (see torrc.example)"
        )
    return True, "supported"


def client_auth_support(version: Version | str) -> tuple[bool, str]:
    """Whether ADD_ONION honours ClientAuthV3 on this tor, and if not, why not."""
    version = Version(version) if isinstance(version, str) else version
    if version < CLIENT_AUTH_VIA_ADD_ONION:
        return False, (
            f"tor {str(version).split(' ')[0]} ignores ClientAuthV3 in ADD_ONION (needs "
            f"{CLIENT_AUTH_VIA_ADD_ONION}); {UPGRADE_HINT}"
        )
    return True, "supported"
