"""One frozen description of an install: where its files live and what it allows.

Everything that varies between production, development and tests is a field here, so a test
builds a fresh Config under its own temp folder (with cheap Argon2 costs) instead of patching
module globals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropbox import sealing

MiB = 1024 * 1024
GiB = 1024 * MiB

#: libsodium's MODERATE cost: t=3, m=256 MiB. The floor for production (see docs/PROTOCOL.md).
PRODUCTION_KDF_OPS = sealing.KDF_OPS_MODERATE
PRODUCTION_KDF_MEM = sealing.KDF_MEM_MODERATE

#: The cheapest cost libsodium accepts; only test configs use it.
TEST_KDF_OPS = sealing.KDF_OPS_MIN
TEST_KDF_MEM = sealing.KDF_MEM_MIN

LANGUAGES = ("en", "da", "sv")

#: Country profiles: the longest a closed report may be kept (dropbox/retention.py). Sweden: at
#: most two years after the follow-up case is closed (2021:890 7 kap. 4 §). Denmark: no fixed
#: period (lov 1436/2021 § 22), so only the ten-year ceiling every channel has.
COUNTRY_MAX_RETENTION_DAYS = {"dk": 3650, "se": 730}


def setting(default: Any, section: str, doc: str, **limits: Any) -> Any:
    """A Config field that is an operator setting: it appears in DATA/config.toml under `section`
    with `doc` as its comment. Optional limits checked when the file is read: `min`, `max`,
    `choices`. A field declared without this metadata is internal and cannot be set from the file."""
    return field(default=default, metadata={"section": section, "doc": doc, **limits})


@dataclass(frozen=True)
class Config:
    """Settings of one install. Paths are derived from `data_dir` so they can never disagree.

    Fields with `section`/`doc` metadata are the operator's settings (dropbox/settings.py builds
    DATA/config.toml and its validation from that metadata); the others are fixed by the code.
    """

    data_dir: Path = Path("data")

    # Network: both apps bind to loopback only; tor (or a reverse proxy) reaches them there.
    host: str = setting("127.0.0.1", "network", "Bind address of both apps. Keep it on loopback: tor reaches them "
                        "there "
                        "(serve refuses anything else without --i-understand-this-exposes-the-server).")
    port: int = setting(8080, "network", "Port of the whistleblower app (tor's HiddenServicePort must point here).",
                        min=1, max=65535)
    admin_port: int = setting(8081, "network", "Port of the caseworker app (the client-authorised onion points here).",
                              min=1, max=65535)

    # Argon2id cost for new passphrase wraps and, at `init`, for the install's receipt scheme.
    kdf_ops: int = setting(PRODUCTION_KDF_OPS, "kdf", "Argon2id passes for passphrases set from now on "
                           "(and, at init, for receipts). Existing passphrases keep the cost they were made with.",
                           min=sealing.KDF_OPS_MIN, max=sealing.KDF_OPS_MAX)
    kdf_mem: int = setting(PRODUCTION_KDF_MEM, "kdf", "Argon2id memory in bytes for passphrases set from now on; "
                           "each login in flight takes this much RAM (the service's MemoryMax must cover "
                           "kdf_concurrency + staff_kdf_concurrency times this).",
                           min=sealing.KDF_MEM_MIN, max=sealing.KDF_MEM_MAX)
    #: The whistleblower app's pool; the caseworker app has its own (staff_kdf_concurrency), so both
    #: together hold at most (kdf_concurrency + staff_kdf_concurrency) × kdf_mem.
    kdf_concurrency: int = setting(2, "kdf", "Argon2id runs the whistleblower app may have in flight at once "
                                   "(each takes kdf_mem of RAM).", min=1, max=64)
    #: How many more may queue behind them before new logins are told to come back later.
    kdf_queue_limit: int = setting(64, "kdf", "Logins that may wait behind those before new ones are told to "
                                   "come back later.", min=0, max=10_000)
    submission_kdf_reserve: int = setting(1, "kdf", "Of the whistleblower app's kdf_concurrency, slots only a "
                                          "submission may use (when the receipt stock is empty), so it never waits "
                                          "for a login's Argon2id run; at most kdf_concurrency - 1.", min=0, max=63)
    staff_kdf_concurrency: int = setting(1, "kdf", "Argon2id runs the caseworker app may have in flight at once: its "
                                         "own pool, so no flood on the public app can delay a caseworker login.",
                                         min=1, max=64)
    staff_kdf_queue_limit: int = setting(16, "kdf", "Caseworker logins that may wait for the caseworker pool before "
                                         "'busy'.", min=0, max=10_000)
    max_receipt_logins_in_flight: int = setting(8, "kdf", "Receipt logins waiting or running at once; more are "
                                                "refused at once with 'busy', so a flood cannot queue without bound "
                                                "or crowd out submissions.", min=1, max=10_000)
    receipt_stock: int = setting(4, "kdf", "Receipts derived ahead while the public pool is idle (memory only), so "
                                 "a submission does not wait for Argon2id.", min=0, max=64)

    # Uploads.
    max_submission_bytes: int = setting(1 * GiB, "uploads", "Largest submission (all files together), in bytes; "
                                        "the form shows it.", min=1 * MiB, max=64 * GiB)
    max_file_bytes: int = setting(1 * GiB, "uploads", "Largest single file, in bytes.", min=1 * MiB, max=64 * GiB)
    max_files_per_submission: int = setting(100, "uploads", "Most files in one submission.", min=1, max=10_000)
    max_text_chars: int = setting(100_000, "uploads", "Longest text a whistleblower may write, in characters.",
                                  min=1_000, max=10_000_000)
    max_field_chars: int = setting(2_000, "uploads", "Longest answer to a short question, in characters.",
                                   min=100, max=100_000)
    clean_max_bytes: int = setting(256 * MiB, "uploads", "Largest file whose metadata is cleaned; a larger one is "
                                   "stored as sent and flagged to both sides.", min=1 * MiB, max=4 * GiB)
    clean_concurrency: int = setting(2, "uploads", "Files cleaned at once (each in its own sandbox); more wait "
                                     "their turn, so a flood cannot exhaust memory or CPU.", min=1, max=64)
    clean_memory_bytes: int = setting(1 * GiB, "uploads", "Address space one cleaning sandbox may use (RLIMIT_AS).",
                                      min=256 * MiB, max=64 * GiB)
    clean_cpu_seconds: int = setting(120, "uploads", "CPU seconds one cleaning may use before it is killed.",
                                     min=1, max=3600)
    clean_wall_seconds: float = setting(300.0, "uploads", "Seconds one cleaning may take before it is killed "
                                        "and the file kept as sent.", min=1.0, max=3600.0)
    cleaner_socket: Path | None = setting(None, "uploads", "Unix socket of the metadata cleaner service "
                                          "(deploy/dropbox-cleaner.socket: the sandbox runs there, so this "
                                          "service needs no namespaces); unset: the app starts the sandbox "
                                          "itself (development and tests).")
    #: Plaintext bytes per secretstream chunk; upload reads use the same size.
    file_chunk_bytes: int = 1 * MiB
    max_uploads_in_flight: int = setting(64, "uploads", "Public uploads (submissions, mailbox replies) read at "
                                         "once; more are refused with 503 at once.", min=1, max=10_000)
    max_staged_bytes: int = setting(4 * GiB, "uploads", "Bytes all public uploads in progress may hold staged "
                                    "together; past it, 503.", min=1 * MiB, max=1024 * GiB)
    min_upload_bytes_per_second: int = setting(1024, "uploads", "An upload sending less than this, averaged over "
                                               "the window below, is aborted (stalled or hostile).",
                                               min=0, max=1 * MiB)
    upload_rate_window_seconds: float = setting(60.0, "uploads", "Window over which the minimum upload rate is "
                                                "averaged; also the longest a read may stall.", min=1.0, max=3600.0)
    disk_reserve_bytes: int = setting(512 * MiB, "uploads", "Free space on the data folder public uploads may not "
                                      "use, so the caseworker app keeps working.", min=0, max=1024 * GiB)

    # Sessions (memory only; cookies die with the browser).
    whistleblower_idle_seconds: int = setting(20 * 60, "sessions", "A whistleblower's mailbox closes after this "
                                              "many idle seconds.", min=60, max=24 * 3600)
    caseworker_idle_seconds: int = setting(30 * 60, "sessions", "A caseworker is signed out after this many idle "
                                           "seconds.", min=60, max=24 * 3600)
    whistleblower_absolute_seconds: int = setting(4 * 3600, "sessions", "A mailbox session ends this long after "
                                                   "login however active, so a stolen cookie expires.",
                                                   min=300, max=7 * 24 * 3600)
    caseworker_absolute_seconds: int = setting(12 * 3600, "sessions", "A caseworker session ends this long after "
                                               "login: a working day.", min=300, max=7 * 24 * 3600)
    sessions_per_report: int = setting(3, "sessions", "Live mailbox sessions per report; a new login ends the oldest, "
                                       "so one receipt cannot fill the store.", min=1, max=100)
    sessions_per_caseworker: int = setting(3, "sessions", "Live sessions per caseworker account; a new login ends the "
                                           "oldest.", min=1, max=100)

    #: Failed receipt logins per minute, install-wide, before every further attempt is slowed.
    failed_receipt_budget_per_minute: int = setting(30, "throttle", "Failed receipt logins per minute, "
                                                    "install-wide, before every further attempt is slowed.",
                                                    min=1, max=100_000)
    #: Failed caseworker logins per minute before further attempts are slowed.
    failed_login_budget_per_minute: int = setting(10, "throttle", "Failed caseworker logins per minute before "
                                                  "further attempts are slowed.", min=1, max=100_000)
    #: Extra wait imposed on each attempt once a budget is spent.
    slowdown_seconds: float = setting(5.0, "throttle", "Extra wait, in seconds, on each attempt once a budget is "
                                      "spent.", min=0.0, max=600.0)
    totp_backoff_max_seconds: int = setting(15 * 60, "throttle", "Longest wait after wrong two-step codes (doubling "
                                            "from 1 s); bounded, so nobody is locked out.", min=1, max=24 * 3600)

    #: Who receives reports, shown on every page ("Ministry of ..."); None shows a neutral name.
    organisation_name: str | None = setting(None, "organisation", "Who receives reports, shown on every page "
                                            "(e.g. \"Ministry of Justice\"); unset shows a neutral name.")
    #: Live sessions per app; past it, a new login ends the least recently used session.
    max_sessions: int = setting(10_000, "sessions", "Live sessions per app; past it a new login ends the least "
                                "recently used session, so memory stays bounded.", min=10, max=1_000_000)

    default_language: str = setting("en", "organisation", "Language of a page when the browser asks for none "
                                     "we have, and of e-mail notices.", choices=LANGUAGES)
    default_retention_days: int = setting(90, "retention", "Days a closed report is kept after it was closed (open "
                                          "reports are never deleted automatically), for the channel made at init "
                                          "and as the form's default for new channels; capped by the country "
                                          "profile. Retention set per channel in the web admin wins.",
                                          min=1, max=max(COUNTRY_MAX_RETENTION_DAYS.values()))
    country: str = setting("dk", "retention", "Country profile for keeping closed reports: dk (no fixed period; "
                           "the retention above) or se (at most 730 days after closing, enforced).",
                           choices=tuple(COUNTRY_MAX_RETENTION_DAYS))

    # Optional e-mail notices to caseworkers ("something new arrived", no content).
    smtp_host: str | None = setting(None, "smtp", "Mail server for the content-free \"something new\" notices; "
                                    "unset: no notices.")
    smtp_port: int = setting(25, "smtp", "Its port (25 or 587 for starttls, 465 for tls).", min=1, max=65535)
    smtp_security: str = setting("none", "smtp", "none, starttls (upgrade after connecting) or tls (implicit TLS). "
                                 "Use starttls or tls whenever the server is not on this machine.",
                                 choices=("none", "starttls", "tls"))
    smtp_user: str | None = setting(None, "smtp", "Login name, if the server needs a login (needs "
                                    "smtp_password_file and TLS).")
    smtp_password_file: Path | None = setting(None, "smtp", "File holding the login's password (first line), "
                                              "readable by the service only: the password is not kept here.")
    smtp_ca_file: Path | None = setting(None, "smtp", "CA bundle (PEM) to check the server's certificate against; "
                                        "unset: the system's.")
    smtp_sender: str = setting("dropbox@localhost", "smtp", "From: address of the notices.")

    # Tor.
    tor_mode: str = setting("launch", "tor", "launch: serve starts its own tor under DATA/tor. system: use the "
                            "machine's tor (Debian's), via tor_control; publish with `run.py onion sync`. "
                            "off: no onion services (development only).", choices=("launch", "system", "off"))
    tor_control: str | None = setting(None, "tor", "For tor_mode = \"system\": tor's ControlSocket path or "
                                      "ControlPort number (serve --tor-control overrides).")
    tor_torrc: Path = setting(Path("/etc/tor/torrc"), "tor", "For tor_mode = \"system\": the torrc `run.py onion sync` "
                              "checks (its HiddenServicePort lines must point at port and admin_port).")
    tor_user: str = setting("debian-tor", "tor", "The system tor's user: `onion sync` gives it the keys it copies "
                            "(0700 folders, 0600 files).")
    tor_whistleblower_dir: Path = setting(Path("/var/lib/tor/dropbox-whistleblower"), "tor", "The torrc's "
                                          "HiddenServiceDir of the public (whistleblower) onion.")
    tor_caseworker_dir: Path = setting(Path("/var/lib/tor/dropbox-caseworker"), "tor", "The torrc's "
                                       "HiddenServiceDir of the caseworker onion (client authorization).")

    @property
    def max_retention_days(self) -> int:
        """The country profile's cap on keeping a closed report, in days."""
        return COUNTRY_MAX_RETENTION_DAYS[self.country]

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
