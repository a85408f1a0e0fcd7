"""What onion/ reads from the application's settings, declared here so onion/ never imports them.

onion/ is a library the drop box uses, not the other way round: its functions take any object
with these attributes. The drop box passes its `dropbox.config.Config`, which has all of them
(tests/test_layers.py checks both that onion/ does not import the app and that Config fits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class OnionSettings(Protocol):
    """The install the onion services belong to, the app's two ports, and how tor is run."""

    @property
    def data_dir(self) -> Path:
        """The install's data folder (named in messages)."""

    @property
    def db_path(self) -> Path:
        """Exists once the install was initialised: the commands make no keys before that."""

    @property
    def keys_dir(self) -> Path:
        """Onion service keys and client-auth keys (0700 folder, 0600 files)."""

    @property
    def tor_dir(self) -> Path:
        """Data directory of a private tor launched by OnionServices."""

    @property
    def host(self) -> str:
        """Where the two apps listen; the onions point there."""

    @property
    def port(self) -> int:
        """The whistleblower app's port (the public onion)."""

    @property
    def admin_port(self) -> int:
        """The caseworker app's port (the caseworker onion)."""

    @property
    def tor_mode(self) -> str:
        """"launch" (a private tor), "system" (the machine's tor) or "off"."""

    @property
    def tor_control(self) -> str | None:
        """A system tor's control socket path or port."""

    @property
    def tor_torrc(self) -> Path:
        """The system tor's torrc, whose HiddenService lines `onion sync` checks."""

    @property
    def tor_user(self) -> str:
        """The system tor's user, who gets the keys `onion sync` copies."""

    @property
    def tor_whistleblower_dir(self) -> Path:
        """The system torrc's HiddenServiceDir of the public onion."""

    @property
    def tor_caseworker_dir(self) -> Path:
        """The system torrc's HiddenServiceDir of the caseworker onion."""
