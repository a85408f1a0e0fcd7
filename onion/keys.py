"""Onion service keys and caseworker client-auth keys, kept under `config.keys_dir`.

Layout: each service has a folder in exactly the layout tor uses for a HiddenServiceDir, so the
same files serve a private tor (through ADD_ONION) and a system tor (copied into its
HiddenServiceDir, see torrc.example), and an existing HiddenServiceDir can be copied in here::

    keys/                           0700
      whistleblower/                0700  public service
        hs_ed25519_secret_key       0600  the only secret; the address derives from it
        hs_ed25519_public_key       0600  derived, rewritten if missing or stale
        hostname                    0600  derived, "<56 chars>.onion"
      caseworker/                   0700  same files, plus:
        authorized_clients/         0700
          <name>.auth               0600  "descriptor:x25519:<base32 public key>"

Only public halves of client keys are stored: `add_client` hands the private half back once.
The onion address is derived here (rend-spec v3: base32(pubkey | checksum | version)) so
`onion show` works without tor; the tests check it against the address tor reports.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import nacl.bindings
import nacl.public
import nacl.utils

from onion.errors import ClientExists, ClientNameInvalid, ClientNotFound, KeyFileError
from onion.files import make_private_dir, read_private_file, write_private_file
from onion.settings import OnionSettings

log = logging.getLogger(__name__)

WHISTLEBLOWER = "whistleblower"
CASEWORKER = "caseworker"
SERVICES = (WHISTLEBLOWER, CASEWORKER)

SECRET_KEY_FILE = "hs_ed25519_secret_key"  # noqa: S105 - a file name, not a secret
PUBLIC_KEY_FILE = "hs_ed25519_public_key"
HOSTNAME_FILE = "hostname"
CLIENTS_DIR = "authorized_clients"

# tor's tagged key files: a 32-byte NUL-padded header, then the raw key.
_SECRET_HEADER = b"== ed25519v1-secret: type0 ==".ljust(32, b"\0")
_PUBLIC_HEADER = b"== ed25519v1-public: type0 ==".ljust(32, b"\0")
_VERSION = b"\x03"
_CHECKSUM_PREFIX = b".onion checksum"

CLIENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


# -- service keys ---------------------------------------------------------------------------


def expand_seed(seed: bytes) -> bytes:
    """The 64-byte "expanded" ed25519 secret key tor stores and ADD_ONION takes.

    tor never sees the 32-byte seed: it wants SHA-512(seed) with the scalar half clamped.
    """
    if len(seed) != 32:
        raise ValueError("an ed25519 seed is 32 bytes")
    expanded = bytearray(hashlib.sha512(seed).digest())
    expanded[0] &= 248
    expanded[31] &= 127
    expanded[31] |= 64
    return bytes(expanded)


def _is_clamped(scalar: bytes) -> bool:
    return scalar[0] & 7 == 0 and scalar[31] & 128 == 0 and scalar[31] & 64 == 64


def public_key_of(expanded_secret: bytes) -> bytes:
    """The ed25519 public key of an expanded secret key (scalar * base point)."""
    return nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(expanded_secret[:32])


def onion_address(public_key: bytes) -> str:
    """The v3 address "<56 chars>.onion" of an ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an ed25519 public key is 32 bytes")
    checksum = hashlib.sha3_256(_CHECKSUM_PREFIX + public_key + _VERSION).digest()[:2]
    return base64.b32encode(public_key + checksum + _VERSION).decode("ascii").lower() + ".onion"


def public_key_from_address(address: str) -> bytes:
    """Decode and check a v3 address (with or without ".onion"); ValueError if it is not one."""
    service_id = address.lower().removesuffix(".onion")
    if len(service_id) != 56:
        raise ValueError("a v3 onion address has 56 characters before .onion")
    try:
        raw = base64.b32decode(service_id.upper())
    except ValueError as exc:
        raise ValueError("not base32") from exc
    public_key = raw[:32]
    if onion_address(public_key) != service_id + ".onion":
        raise ValueError("bad checksum or version")
    return public_key


@dataclass(frozen=True)
class ServiceKey:
    """The identity of one onion service. `repr` leaves the secret out so logs cannot leak it."""

    expanded_secret: bytes = field(repr=False)
    public_key: bytes

    @classmethod
    def generate(cls) -> ServiceKey:
        expanded = expand_seed(nacl.utils.random(32))
        return cls(expanded_secret=expanded, public_key=public_key_of(expanded))

    @classmethod
    def from_expanded(cls, expanded_secret: bytes) -> ServiceKey:
        """A key tor made (ADD_ONION NEW, a HiddenServiceDir): ValueError if not one."""
        if len(expanded_secret) != 64 or not _is_clamped(expanded_secret[:32]):
            raise ValueError("not an expanded ed25519 secret key")
        return cls(expanded_secret=expanded_secret, public_key=public_key_of(expanded_secret))

    @property
    def address(self) -> str:
        """"<56 chars>.onion"."""
        return onion_address(self.public_key)

    @property
    def service_id(self) -> str:
        """The address without ".onion", as tor's control port spells it."""
        return self.address.removesuffix(".onion")

    def add_onion_key(self) -> str:
        """The KeyType:KeyBlob argument of ADD_ONION."""
        return "ED25519-V3:" + base64.b64encode(self.expanded_secret).decode("ascii")


def service_dir(config: OnionSettings, service: str) -> Path:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return config.keys_dir / service


def _parse_secret_file(path: Path, data: bytes) -> ServiceKey:
    if len(data) != 96 or not data.startswith(_SECRET_HEADER):
        raise KeyFileError(f"{path} is not a tor ed25519 secret key file")
    try:
        return ServiceKey.from_expanded(data[32:])
    except ValueError as exc:
        raise KeyFileError(f"{path} holds an invalid ed25519 key") from exc


def _write_derived_files(folder: Path, key: ServiceKey) -> None:
    """Write hs_ed25519_public_key and hostname if missing or not matching the secret key."""
    for name, data in (
        (PUBLIC_KEY_FILE, _PUBLIC_HEADER + key.public_key),
        (HOSTNAME_FILE, (key.address + "\n").encode("ascii")),
    ):
        path = folder / name
        try:
            current = read_private_file(path)
        except FileNotFoundError:
            current = None
        if current != data:
            if current is not None:
                log.warning("%s did not match %s; rewrote it", path, SECRET_KEY_FILE)
            write_private_file(path, data, replace=True)


def load_service_key(config: OnionSettings, service: str) -> ServiceKey:
    """Read one service's key; FileNotFoundError if none was made yet, KeyFileError if broken."""
    folder = service_dir(config, service)
    path = folder / SECRET_KEY_FILE
    try:
        data = read_private_file(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from exc
    key = _parse_secret_file(path, data)
    _write_derived_files(folder, key)
    return key


def _create_service_key(config: OnionSettings, service: str, *, replace: bool) -> ServiceKey:
    folder = service_dir(config, service)
    make_private_dir(config.keys_dir)
    make_private_dir(folder)
    key = ServiceKey.generate()
    write_private_file(folder / SECRET_KEY_FILE, _SECRET_HEADER + key.expanded_secret,
                       replace=replace)
    _write_derived_files(folder, key)
    return key


def ensure_service_keys(config: OnionSettings) -> dict[str, ServiceKey]:
    """Both services' keys, generating whichever is missing. Safe to call on every start.

    A broken key file raises KeyFileError instead of being replaced: a new key means a new
    address, and whistleblowers who wrote the old one down would silently lose the drop box.
    """
    keys = {}
    for service in SERVICES:
        try:
            keys[service] = load_service_key(config, service)
        except FileNotFoundError:
            try:
                keys[service] = _create_service_key(config, service, replace=False)
                log.info("generated a new %s onion key", service)
            except FileExistsError:  # another process made it between our read and our write
                keys[service] = load_service_key(config, service)
    return keys


def rotate_service_key(config: OnionSettings, *, service: str = WHISTLEBLOWER) -> ServiceKey:
    """Replace a service's key (a new address); the old secret key is overwritten, not kept."""
    key = _create_service_key(config, service, replace=True)
    log.warning("rotated the %s onion key; its address is now %s", service, key.address)
    return key


# -- caseworker client authorization --------------------------------------------------------


def _b32(raw: bytes) -> str:
    """base32 without padding, the spelling of ClientAuthV3, .auth and .auth_private files."""
    return base64.b32encode(raw).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class AuthorizedClient:
    """A caseworker device allowed to reach the caseworker onion: a name and a public key."""

    name: str
    public_key: bytes

    @property
    def public_key_b32(self) -> str:
        """The ClientAuthV3= argument of ADD_ONION."""
        return _b32(self.public_key)

    @property
    def auth_line(self) -> str:
        """The content of authorized_clients/<name>.auth in a HiddenServiceDir."""
        return f"descriptor:x25519:{self.public_key_b32}"


@dataclass(frozen=True)
class NewClient:
    """A freshly made client key pair. The private half lives only in this object."""

    client: AuthorizedClient
    private_key: bytes = field(repr=False)

    def auth_private_line(self, service_address: str) -> str:
        """What Tor Browser asks for, and the line of a ClientOnionAuthDir `.auth_private` file."""
        service_id = service_address.removesuffix(".onion")
        return f"{service_id}:descriptor:x25519:{_b32(self.private_key)}"

    def onion_client_auth_add_key(self) -> str:
        """The x25519:<base64> argument of ONION_CLIENT_AUTH_ADD (base64 there, not base32)."""
        return "x25519:" + base64.b64encode(self.private_key).decode("ascii")


def _check_name(name: str) -> str:
    if not CLIENT_NAME.fullmatch(name):
        raise ClientNameInvalid(
            f"client name {name!r} must be 1-32 letters, digits, '-' or '_'"
        )
    return name


def clients_dir(config: OnionSettings) -> Path:
    return service_dir(config, CASEWORKER) / CLIENTS_DIR


def _parse_auth_file(path: Path) -> AuthorizedClient:
    text = read_private_file(path).decode("ascii", errors="replace").strip()
    parts = text.split(":")
    try:
        if len(parts) != 3 or parts[:2] != ["descriptor", "x25519"]:
            raise ValueError("not descriptor:x25519:<key>")
        padded = parts[2].upper() + "=" * (-len(parts[2]) % 8)
        public_key = base64.b32decode(padded)
        if len(public_key) != 32:
            raise ValueError("key is not 32 bytes")
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a client auth file: {exc}") from exc
    return AuthorizedClient(name=path.name.removesuffix(".auth"), public_key=public_key)


def list_clients(config: OnionSettings) -> list[AuthorizedClient]:
    """Authorized caseworker clients, by name. A malformed .auth file raises KeyFileError.

    tor itself skips malformed files; we refuse instead, so a typo cannot quietly lock out, or
    a half-copied file cannot quietly fail to revoke, anyone.
    """
    folder = clients_dir(config)
    if not folder.is_dir():
        return []
    return [_parse_auth_file(path) for path in sorted(folder.glob("*.auth"))]


def add_client(config: OnionSettings, *, name: str) -> NewClient:
    """Authorize a new caseworker client; store its public key, return the pair once."""
    _check_name(name)
    ensure_service_keys(config)
    folder = clients_dir(config)
    make_private_dir(folder)
    private = nacl.public.PrivateKey.generate()
    client = AuthorizedClient(name=name, public_key=bytes(private.public_key))
    try:
        write_private_file(folder / f"{name}.auth", (client.auth_line + "\n").encode("ascii"),
                           replace=False)
    except FileExistsError as exc:
        raise ClientExists(f"client {name!r} already exists; remove it first") from exc
    log.info("authorized caseworker client %s", name)
    return NewClient(client=client, private_key=bytes(private))


def remove_client(config: OnionSettings, *, name: str) -> None:
    """Revoke a caseworker client. A running `serve` republishes without it (see publish.py)."""
    _check_name(name)
    try:
        (clients_dir(config) / f"{name}.auth").unlink()
    except FileNotFoundError as exc:
        raise ClientNotFound(f"no client named {name!r}") from exc
    log.info("revoked caseworker client %s", name)
