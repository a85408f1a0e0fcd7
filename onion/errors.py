"""Errors of the onion package.

Each one says what went wrong in words an operator can act on; the CLI prints `str(error)` as
its one line, and `OnionServices` logs it with the fix. stem's own exceptions never leave this
package: `stem.SocketError` in particular is not an `OSError`, so callers could not catch it
without importing stem themselves.
"""

from __future__ import annotations


class OnionError(Exception):
    """Root of every error raised by the onion package."""


# -- keys -----------------------------------------------------------------------------------


class KeyFileError(OnionError):
    """A key file exists but is unreadable, malformed, or disagrees with its public half.

    Never repaired automatically: replacing a service key changes the onion address, which only
    `onion rotate` may do.
    """


class ClientNameInvalid(OnionError):
    """A caseworker client name is not 1-32 letters, digits, '-' or '_' (it becomes a file name)."""


class ClientExists(OnionError):
    """A client with this name is already authorized; remove it first to issue a new key."""


class ClientNotFound(OnionError):
    """No authorized client has this name."""


# -- tor ------------------------------------------------------------------------------------


class TorNotInstalled(OnionError):
    """The tor executable is not on PATH (fix: `apt-get install tor`)."""


class TorLaunchFailed(OnionError):
    """The private tor process exited or never became controllable."""


class TorControlUnreachable(OnionError):
    """Nothing answers on the configured control socket or port (is tor running? is the path right?)."""


class TorControlAuthFailed(OnionError):
    """Tor refused our control connection: unreadable cookie file or a wrong/missing password."""


class TorTooOld(OnionError):
    """The running tor lacks a feature we cannot do without (v3 client auth through ADD_ONION)."""


class TorConnectionLost(OnionError):
    """The control connection closed while we used it (tor exited or was restarted)."""


class PublishFailed(OnionError):
    """Tor refused to create an onion service, or could not upload its descriptor in time."""
