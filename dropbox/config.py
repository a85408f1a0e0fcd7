"""One frozen description of an install: where its files live and what it allows.

Everything that varies between production, development and tests is a field here, so a test
builds a fresh Config under its own temp folder (with cheap Argon2 costs) instead of patching
module globals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import nacl.pwhash.argon2id as _argon2id

MiB = 1024 * 1024
GiB = 1024 * MiB

#: libsodium's MODERATE cost: t=3, m=256 MiB. The floor for production (see docs/PROTOCOL.md).
PRODUCTION_KDF_OPS = _argon2id.OPSLIMIT_MODERATE
PRODUCTION_KDF_MEM = _argon2id.MEMLIMIT_MODERATE

#: The cheapest cost libsodium accepts; only test configs use it.
TEST_KDF_OPS = _argon2id.OPSLIMIT_MIN
TEST_KDF_MEM = _argon2id.MEMLIMIT_MIN

LANGUAGES = ("en", "da", "sv")


@dataclass(frozen=True)
class Config:
    """Settings of one install. Paths are derived from `data_dir` so they can never disagree."""

    data_dir: Path = Path("data")

    # Network: both apps bind to loopback only; tor (or a reverse proxy) reaches them there.
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081

    # Argon2id cost for new passphrase wraps and, at `init`, for the install's receipt scheme.
    kdf_ops: int = PRODUCTION_KDF_OPS
    kdf_mem: int = PRODUCTION_KDF_MEM
    #: How many Argon2id runs may be in flight at once (each takes kdf_mem of RAM).
    kdf_concurrency: int = 2
    #: How many more may queue behind them before new logins are told to come back later.
    kdf_queue_limit: int = 64

    # Uploads.
    max_submission_bytes: int = 1 * GiB
    max_file_bytes: int = 1 * GiB
    max_files_per_submission: int = 100
    max_text_chars: int = 100_000
    max_field_chars: int = 2_000
    #: Plaintext bytes per secretstream chunk; upload reads use the same size.
    file_chunk_bytes: int = 1 * MiB
    max_uploads_in_flight: int = field(default=64, metadata={
        "section": "uploads",
        "doc": "Public uploads (submissions, mailbox replies) read at once; more are refused with 503 at once."})
    max_staged_bytes: int = field(default=4 * GiB, metadata={
        "section": "uploads",
        "doc": "Bytes all public uploads in progress may hold staged together; past it, 503."})
    min_upload_bytes_per_second: int = field(default=1024, metadata={
        "section": "uploads",
        "doc": "An upload sending less than this, averaged over the window below, is aborted (stalled or hostile)."})
    upload_rate_window_seconds: float = field(default=60.0, metadata={
        "section": "uploads",
        "doc": "Window over which the minimum upload rate is averaged; also the longest a read may stall."})
    disk_reserve_bytes: int = field(default=512 * MiB, metadata={
        "section": "uploads",
        "doc": "Free space on the data folder public uploads may not use, so the caseworker app keeps working."})

    # Sessions (memory only; cookies die with the browser).
    whistleblower_idle_seconds: int = 20 * 60
    caseworker_idle_seconds: int = 30 * 60

    #: Failed receipt logins per minute, install-wide, before every further attempt is slowed.
    failed_receipt_budget_per_minute: int = 30
    #: Failed caseworker logins per minute before further attempts are slowed.
    failed_login_budget_per_minute: int = 10
    #: Extra wait imposed on each attempt once a budget is spent.
    slowdown_seconds: float = 5.0

    #: Who receives reports, shown on every page ("Ministry of ..."); None shows a neutral name.
    organisation_name: str | None = None
    #: Live sessions per app; past it, new logins get a "busy" page instead of growing memory.
    max_sessions: int = 10_000

    default_language: str = "en"
    default_retention_days: int = 90

    # Optional e-mail notices to caseworkers ("something new arrived", no content).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "dropbox@localhost"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "dropbox.sqlite3"

    @property
    def blobs_dir(self) -> Path:
        """Where installs before schema 4 kept sealed file contents; moved into the database at start."""
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Where installs before schema 4 staged uploads; emptied and removed at start."""
        return self.data_dir / "tmp"

    @property
    def keys_dir(self) -> Path:
        """Onion service keys and client-auth keys (0700 folder, 0600 files)."""
        return self.data_dir / "keys"

    @property
    def tor_dir(self) -> Path:
        """Data directory of the private tor process that `serve` launches."""
        return self.data_dir / "tor"

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def config_for_tests(data_dir: Path, **changes: object) -> Config:
    """A Config for tests: real files under `data_dir`, the cheapest Argon2id cost, and no disk
    reserve (the full-disk tests run on a 48 MiB filesystem; the reserve's own tests set one)."""
    return Config(data_dir=data_dir, kdf_ops=TEST_KDF_OPS, kdf_mem=TEST_KDF_MEM,
                  disk_reserve_bytes=0).replace(**changes)
