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
    #: How many Argon2id runs the whistleblower app may have in flight at once (each takes kdf_mem
    #: of RAM). The caseworker app has its own pool, so the bound on both is
    #: (kdf_concurrency + staff_kdf_concurrency) × kdf_mem.
    kdf_concurrency: int = 2
    #: How many more may queue behind them before new attempts are told to come back later.
    kdf_queue_limit: int = 64
    submission_kdf_reserve: int = field(default=1, metadata={
        "section": "kdf",
        "doc": "of the whistleblower app's kdf_concurrency, slots only a submission may use (when the "
               "receipt stock is empty), so it never waits for a login's Argon2id run; at most "
               "kdf_concurrency - 1"})
    staff_kdf_concurrency: int = field(default=1, metadata={
        "section": "kdf",
        "doc": "Argon2id runs the caseworker app may have in flight at once; its own pool, so no "
               "flood on the public app can delay a caseworker login"})
    staff_kdf_queue_limit: int = field(default=16, metadata={
        "section": "kdf", "doc": "caseworker logins that may wait for the caseworker pool before 'busy'"})
    max_receipt_logins_in_flight: int = field(default=8, metadata={
        "section": "kdf",
        "doc": "receipt logins waiting or running at once; more are refused at once with 'busy', so a "
               "flood cannot queue without bound or crowd out submissions"})
    receipt_stock: int = field(default=4, metadata={
        "section": "kdf",
        "doc": "receipts derived ahead while the public pool is idle (memory only), so a submission "
               "does not wait for Argon2id"})

    # Uploads.
    max_submission_bytes: int = 1 * GiB
    max_file_bytes: int = 1 * GiB
    max_files_per_submission: int = 100
    max_text_chars: int = 100_000
    max_field_chars: int = 2_000
    #: Plaintext bytes per secretstream chunk; upload reads use the same size.
    file_chunk_bytes: int = 1 * MiB

    # Sessions (memory only; cookies die with the browser).
    whistleblower_idle_seconds: int = 20 * 60
    caseworker_idle_seconds: int = 30 * 60
    whistleblower_absolute_seconds: int = field(default=4 * 3600, metadata={
        "section": "sessions",
        "doc": "a mailbox session ends this long after login however active, so a stolen cookie expires"})
    caseworker_absolute_seconds: int = field(default=12 * 3600, metadata={
        "section": "sessions", "doc": "a caseworker session ends this long after login: a working day"})
    sessions_per_report: int = field(default=3, metadata={
        "section": "sessions",
        "doc": "live mailbox sessions per report; a new login ends the oldest, so one receipt cannot fill the store"})
    sessions_per_caseworker: int = field(default=3, metadata={
        "section": "sessions", "doc": "live sessions per caseworker account; a new login ends the oldest"})

    #: Failed receipt logins per minute, install-wide, before every further attempt is slowed.
    failed_receipt_budget_per_minute: int = 30
    #: Failed caseworker logins per minute before further attempts are slowed.
    failed_login_budget_per_minute: int = 10
    #: Extra wait imposed on each attempt once a budget is spent.
    slowdown_seconds: float = 5.0
    totp_backoff_max_seconds: int = field(default=15 * 60, metadata={
        "section": "throttle",
        "doc": "longest wait after wrong two-step codes (doubling from 1 s); bounded, so nobody is locked out"})

    #: Who receives reports, shown on every page ("Ministry of ..."); None shows a neutral name.
    organisation_name: str | None = None
    #: Live sessions per app; past it, a new login ends the least recently used session.
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
        """Sealed file contents, under random names, only after their rows are committed."""
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        """Sealed uploads in progress; on the same filesystem as blobs_dir so rename is atomic."""
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
    """A Config for tests: real files under `data_dir`, the cheapest Argon2id cost."""
    return Config(data_dir=data_dir, kdf_ops=TEST_KDF_OPS, kdf_mem=TEST_KDF_MEM).replace(**changes)
