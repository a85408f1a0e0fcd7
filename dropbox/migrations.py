"""The database schema, as the numbered steps that build it; with storage.py, the only SQL.

`SCHEMA_VERSION` is the schema this code needs; `_MIGRATIONS[n]` takes a database from n - 1 to n
(a script, or a function for what a script cannot do). `init` runs them all on an empty file;
`run.py migrate` runs the missing ones on an existing install, each in its own transaction, so an
interrupted run resumes where it stopped. storage.Store.open decides whether it may migrate at
all; this module only knows how. A migration carries existing data forward and never deletes
what a person sent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import aiosqlite


class MigrationFailed(Exception):
    """A migration found the database in a state it cannot carry forward; nothing of it was kept
    (Store.open raises it as storage.StoreError)."""


SCHEMA_VERSION = 10

#: Database page size. File contents live in the database (1 MiB chunks); with SQLite's default
#: 4 KiB pages each chunk is a chain of 257 overflow pages, each written to the WAL and again at
#: the checkpoint with its own header and checksum. 64 KiB pages cut that work by 16: writing
#: 512 MiB of chunks here went from 136 to 350 MiB/s (docs/BENCHMARKS.md).
PAGE_BYTES = 65536

_MIGRATIONS: dict[int, str | Callable[[aiosqlite.Connection], Awaitable[None]]] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        questions TEXT NOT NULL DEFAULT '[]',
        retention_days INTEGER NOT NULL CHECK (retention_days > 0),
        is_default INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE caseworkers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        public_key BLOB NOT NULL,
        wrapped_key BLOB NOT NULL,
        kdf_salt BLOB NOT NULL,
        kdf_ops INTEGER NOT NULL,
        kdf_mem INTEGER NOT NULL,
        is_admin INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        totp_sealed BLOB,
        email TEXT,
        created_day TEXT NOT NULL
    );
    CREATE TABLE channel_members (
        channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        caseworker_id TEXT NOT NULL REFERENCES caseworkers(id) ON DELETE CASCADE,
        PRIMARY KEY (channel_id, caseworker_id)
    );
    CREATE TABLE reports (
        id TEXT PRIMARY KEY,
        lookup_id BLOB NOT NULL UNIQUE,
        channel_id TEXT NOT NULL REFERENCES channels(id),
        status TEXT NOT NULL DEFAULT 'new'
            CHECK (status IN ('new', 'opened', 'in_progress', 'closed')),
        received_day TEXT NOT NULL,
        last_activity_day TEXT NOT NULL,
        retention_days INTEGER NOT NULL CHECK (retention_days > 0),
        expires_day TEXT NOT NULL,
        acknowledged_day TEXT,
        feedback_day TEXT,
        whistleblower_seen_day TEXT,
        whistleblower_key BLOB NOT NULL,
        sealed_body BLOB NOT NULL
    );
    CREATE INDEX reports_by_received ON reports (received_day DESC, id);
    CREATE INDEX reports_by_expiry ON reports (expires_day);
    CREATE TABLE report_grants (
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        caseworker_id TEXT NOT NULL REFERENCES caseworkers(id) ON DELETE CASCADE,
        sealed_keys BLOB NOT NULL,
        PRIMARY KEY (report_id, caseworker_id)
    );
    CREATE INDEX grants_by_caseworker ON report_grants (caseworker_id, report_id);
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        author TEXT NOT NULL CHECK (author IN ('whistleblower', 'caseworker')),
        caseworker_id TEXT REFERENCES caseworkers(id) ON DELETE SET NULL,
        sealed_body BLOB NOT NULL,
        sent_day TEXT NOT NULL,
        read INTEGER NOT NULL DEFAULT 0,
        UNIQUE (report_id, seq)
    );
    CREATE TABLE notes (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        caseworker_id TEXT REFERENCES caseworkers(id) ON DELETE SET NULL,
        sealed_body BLOB NOT NULL,
        written_day TEXT NOT NULL,
        UNIQUE (report_id, seq)
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        message_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
        sealed_name BLOB NOT NULL,
        sealed_file_key BLOB NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE INDEX files_by_report ON files (report_id);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        hour TEXT NOT NULL,
        actor TEXT,
        action TEXT NOT NULL,
        report_id TEXT,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2 (caseworker app). The report page shows each report's history and records a view at most
    # once per hour and caseworker: both look the audit log up by report. The report list reads
    # only these small plaintext columns; covering them keeps it off the table's pages, which
    # also hold every report's sealed body (at 10,000 reports: ~5 ms instead of ~25 ms a query).
    2: """
    CREATE INDEX audit_by_report ON audit (report_id, hour);
    CREATE INDEX reports_listing ON reports
        (id, channel_id, status, received_day, acknowledged_day, feedback_day, expires_day);
    """,
    # 3 (receipts). A new receipt is a clear 6-digit locator, which finds the report, and an
    # 18-digit secret hashed under the report's own salt, so a copy of the database offers no
    # multi-target guessing. Reports made before keep working through lookup_id (their locator and
    # salt stay NULL); new ones fill the NOT NULL UNIQUE lookup_id with random bytes.
    3: """
    ALTER TABLE reports ADD COLUMN locator TEXT CHECK (locator IS NULL OR length(locator) = 6);
    ALTER TABLE reports ADD COLUMN receipt_salt BLOB;
    CREATE UNIQUE INDEX reports_by_locator ON reports (locator);
    """,
    # 5 (accounts). A generated passphrase (seen by whoever created the account) must be changed
    # at first login. Wrong TOTP codes after a right passphrase back off per account, kept here so
    # a restart does not reset them (unix seconds: a caseworker's timing, never a whistleblower's).
    # Membership changes leave a notice for the channel's members, shown once at their next login;
    # an admin's change of their own membership waits for a second admin.
    5: """
    ALTER TABLE caseworkers ADD COLUMN must_change_passphrase INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE caseworkers ADD COLUMN totp_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE caseworkers ADD COLUMN totp_next_try INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE membership_notices (
        id INTEGER PRIMARY KEY,
        caseworker_id TEXT NOT NULL REFERENCES caseworkers(id) ON DELETE CASCADE,
        actor_id TEXT,
        channel_id TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        member INTEGER NOT NULL,
        day TEXT NOT NULL
    );
    CREATE INDEX membership_notices_by_caseworker ON membership_notices (caseworker_id);
    CREATE TABLE pending_memberships (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        caseworker_id TEXT NOT NULL REFERENCES caseworkers(id) ON DELETE CASCADE,
        member INTEGER NOT NULL,
        requested_by TEXT NOT NULL REFERENCES caseworkers(id) ON DELETE CASCADE,
        requested_day TEXT NOT NULL,
        UNIQUE (channel_id, caseworker_id)
    );
    """,
    # 6 (cleaning). Each channel says what happens to the metadata of files sent to it
    # (dropbox/cleaning.py Policy; existing channels get the default, remove). Each file row may
    # carry what cleaning found and did, sealed under the report key like its name; a kept
    # original names the cleaned copy it is the original of, so lists show the copy and the
    # original is opened only on purpose. Rows from before have neither: they were not cleaned.
    6: """
    ALTER TABLE channels ADD COLUMN cleaning_policy TEXT NOT NULL DEFAULT 'remove';
    ALTER TABLE files ADD COLUMN sealed_cleaning BLOB;
    ALTER TABLE files ADD COLUMN original_of TEXT;
    """,
    # 7 (legal). `report_stats`: the content-free record a deleted report leaves for the yearly
    # figures (dropbox/statistics.py): months, yes/no and an outcome category, no text, no name,
    # no report id (a random id, WITHOUT ROWID, so neither the id nor the row order ties it to the
    # audit log or to when it was deleted). Retention by state (docs/LEGAL.md): open reports are never deleted
    # automatically; a closed one is deleted `retention_days` after `closed_day` (that day is
    # `expires_day`), unless a caseworker put a legal hold on it. Closed reports of an existing
    # install count as closed on their last activity, the day the old rule counted from, and are
    # kept at least 14 days past the upgrade, so the upgrade itself deletes nothing and each shows
    # on the list as due for deletion first. Open ones simply stop expiring.
    7: """
    ALTER TABLE reports ADD COLUMN closed_day TEXT;
    ALTER TABLE reports ADD COLUMN legal_hold INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1));
    ALTER TABLE reports ADD COLUMN outcome TEXT;
    ALTER TABLE reports ADD COLUMN no_ack_day TEXT;
    ALTER TABLE reports ADD COLUMN extended_day TEXT;
    ALTER TABLE reports ADD COLUMN disclosure_notice_day TEXT;
    ALTER TABLE reports ADD COLUMN meeting_request TEXT CHECK (meeting_request IN ('meeting', 'call'));
    ALTER TABLE reports ADD COLUMN meeting_request_day TEXT;
    CREATE TABLE report_reasons (
        id TEXT PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('no_acknowledgement', 'extension')),
        caseworker_id TEXT REFERENCES caseworkers(id) ON DELETE SET NULL,
        sealed_body BLOB NOT NULL,
        written_day TEXT NOT NULL,
        UNIQUE (report_id, kind)
    ) WITHOUT ROWID;
    UPDATE reports SET closed_day = last_activity_day, expires_day = max(expires_day, date('now', '+14 days'))
        WHERE status = 'closed';
    DROP INDEX reports_listing;
    CREATE INDEX reports_listing ON reports
        (id, channel_id, status, received_day, acknowledged_day, feedback_day, expires_day, legal_hold, no_ack_day,
         extended_day);
    CREATE TABLE report_stats (
        id TEXT PRIMARY KEY,
        channel_id TEXT NOT NULL,
        received_month TEXT NOT NULL CHECK (length(received_month) = 7),
        acknowledged_on_time INTEGER CHECK (acknowledged_on_time IN (0, 1)),
        feedback_on_time INTEGER CHECK (feedback_on_time IN (0, 1)),
        extended INTEGER NOT NULL DEFAULT 0 CHECK (extended IN (0, 1)),
        outcome TEXT NOT NULL DEFAULT '',
        closed_month TEXT CHECK (closed_month IS NULL OR length(closed_month) = 7),
        oral INTEGER NOT NULL DEFAULT 0 CHECK (oral IN (0, 1))
    ) WITHOUT ROWID;
    CREATE INDEX report_stats_by_month ON report_stats (received_month);
    """,
}

#: Tables whose rowid order, set against the hourly audit rows, would date what a whistleblower
#: did to within the hour (report_grants: its rows are written with each new report). Migration 4
#: rebuilds them WITHOUT ROWID: rows are then ordered by their keys (random ids) only.
_UNORDERED_TABLES = ("reports", "report_grants", "messages", "notes", "files")


async def _migration_4(db: aiosqlite.Connection) -> None:
    """Sealed file contents move into the database; row order stops telling time (docs/PROTOCOL.md).

    * `file_chunks`: a file's sealed bytes as rows keyed (file id, seq), WITHOUT ROWID, so there
      is no per-upload file, and so no per-upload mtime, ctime or birth time, and no insert order.
    * files gain `seq` (order within its submission or message, which used to be rowid order),
      `sealed_size` (the exact size, sealed; `size` becomes the padded bucket) and `ad_version`;
      messages and notes gain `ad_version`. Rows written before keep version 1 and their old
      associated data; new rows are written as version 2 (dropbox/reports.py).
    * reports, report_grants, messages, notes, files are rebuilt WITHOUT ROWID, from their own stored CREATE
      statement, so columns another migration added are carried along, and their indexes too.

    The blob files of an existing install are moved in afterwards, file by file, by
    `blobs.BlobStore.recover` (one short transaction per file; safe to interrupt and rerun).
    """
    await db.execute(
        "CREATE TABLE file_chunks (file_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (file_id, seq)) WITHOUT ROWID"
    )
    await db.execute("ALTER TABLE files ADD COLUMN seq INTEGER NOT NULL DEFAULT 0")
    await db.execute("ALTER TABLE files ADD COLUMN sealed_size BLOB")
    for table in ("files", "messages", "notes"):
        await db.execute(f"ALTER TABLE {table} ADD COLUMN ad_version INTEGER NOT NULL DEFAULT 1")  # noqa: S608
    # The order files were handed in, within each submission or message, is worth keeping.
    await db.execute(
        "UPDATE files SET seq = (SELECT count(*) FROM files f WHERE f.report_id = files.report_id"
        " AND f.message_id IS files.message_id AND f.rowid < files.rowid)"
    )
    for table in _UNORDERED_TABLES:
        await _rebuild_without_rowid(db, table)
    async with db.execute("PRAGMA foreign_key_check") as cur:
        broken = await cur.fetchall()
    if broken:
        raise MigrationFailed(f"migration 4 would break {len(broken)} foreign key(s)")


async def _rebuild_without_rowid(db: aiosqlite.Connection, table: str) -> None:
    """SQLite's documented table rebuild (foreign keys are off during migrations)."""
    async with db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)) as cur:
        row = await cur.fetchone()
    async with db.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                          " AND sql IS NOT NULL", (table,)) as cur:
        indexes = [r[0] for r in await cur.fetchall()]
    if row is None:
        raise MigrationFailed(f"no table {table}")
    create, count = re.subn(rf"^CREATE TABLE \"?{table}\"?", f"CREATE TABLE {table}_rebuilt", row[0])
    if count != 1:
        raise MigrationFailed(f"cannot read the definition of {table}")
    await db.execute(create + " WITHOUT ROWID")
    await db.execute(f"INSERT INTO {table}_rebuilt SELECT * FROM {table}")  # noqa: S608
    await db.execute(f"DROP TABLE {table}")
    await db.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
    for index in indexes:
        await db.execute(index)


_MIGRATIONS[4] = _migration_4


# 8 (oral reports, Directive art. 9(2), 18(2)-(4)). A report a caseworker registered from a call,
# a voice message or a meeting has an `oral_reports` row: how it was made, and whether the reporter
# consented to a recording (yes/no and the day they answered). Its minutes are versions, each sealed
# under the report key (the reporter reads them in the mailbox); the reporter approves one version,
# on a day, and a trigger keeps an approved version and every version's text as written. A
# correction the reporter proposes is a message of theirs (sealed like every message) marked with
# the version it corrects. WITHOUT ROWID throughout: row order says nothing about when.
_ORAL_STATEMENTS = (
    """CREATE TABLE oral_reports (
        report_id TEXT PRIMARY KEY REFERENCES reports(id) ON DELETE CASCADE,
        medium TEXT NOT NULL CHECK (medium IN ('phone', 'voice_message', 'meeting')),
        recording_consent INTEGER NOT NULL CHECK (recording_consent IN (0, 1)),
        consent_day TEXT NOT NULL,
        caseworker_id TEXT REFERENCES caseworkers(id) ON DELETE SET NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE oral_minutes (
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        version INTEGER NOT NULL CHECK (version >= 1),
        caseworker_id TEXT REFERENCES caseworkers(id) ON DELETE SET NULL,
        sealed_text BLOB NOT NULL,
        written_day TEXT NOT NULL,
        approved_day TEXT,
        approval_audited INTEGER NOT NULL DEFAULT 0 CHECK (approval_audited IN (0, 1)),
        PRIMARY KEY (report_id, version)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER oral_minutes_as_written BEFORE UPDATE ON oral_minutes
        WHEN NEW.sealed_text IS NOT OLD.sealed_text OR NEW.version IS NOT OLD.version
          OR NEW.report_id IS NOT OLD.report_id OR NEW.written_day IS NOT OLD.written_day
          OR (OLD.approved_day IS NOT NULL AND NEW.approved_day IS NOT OLD.approved_day)
        BEGIN SELECT RAISE(ABORT, 'minutes are kept as written and approved'); END""",
    """CREATE TABLE minutes_corrections (
        message_id TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        report_id TEXT NOT NULL REFERENCES reports(id) ON DELETE CASCADE,
        version INTEGER NOT NULL CHECK (version >= 1)
    ) WITHOUT ROWID""",
    "CREATE INDEX minutes_corrections_by_report ON minutes_corrections (report_id)",
)


async def _migration_8(db: aiosqlite.Connection) -> None:
    """Statement by statement: the trigger's body has a semicolon of its own."""
    for statement in _ORAL_STATEMENTS:
        await db.execute(statement)


_MIGRATIONS[8] = _migration_8

# 9 (proof). Each file row may carry the size and SHA-256 of the bytes the whistleblower sent,
# computed while the upload streamed and before any cleaning, sealed under the report key like
# its name (reports.py), for the proof of reporting (dropbox/proof.py). Rows from before have
# none: a proof lists them as "digest not recorded".
_MIGRATIONS[9] = "ALTER TABLE files ADD COLUMN sealed_sent BLOB;"

# 10 (issue 16, upload speed). `file_chunks` becomes a rowid table with one sealed frame (about
# 1 MiB) per row, and a unique index on (file_id, seq). In the WITHOUT ROWID table a row had to
# stay inside its page (SQLite reads a cell's whole record, overflow and all, to compare keys),
# so frames were cut into 16 KiB rows, four to a page, and every insert split and rebalanced
# leaf pages full of file contents: the database thread spent 2 to 4 CPU-s per GiB there. In a
# rowid table the key is the integer alone, a frame's bytes go to overflow pages written once,
# and the leaf and index cells are small. The rowids of new rows are random (storage.put_chunks),
# so, as before, the order of the rows says nothing about when a file arrived; rows carried over
# here are numbered in the old table's order, which is that of the random file ids. Readers join
# a file's rows in seq order whatever their lengths, so files stored before keep opening.
_MIGRATIONS[10] = """
ALTER TABLE file_chunks RENAME TO file_chunks_before_10;
CREATE TABLE file_chunks (id INTEGER PRIMARY KEY, file_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL);
INSERT INTO file_chunks (file_id, seq, data) SELECT file_id, seq, data FROM file_chunks_before_10 ORDER BY file_id, seq;
DROP TABLE file_chunks_before_10;
CREATE UNIQUE INDEX file_chunks_by_file ON file_chunks (file_id, seq);
"""


async def repage(db: aiosqlite.Connection) -> None:
    """Rewrite an older install's database with PAGE_BYTES pages (VACUUM), right after migration 4
    and before its blob files move in, so it is still small. VACUUM also writes every table out in
    key order, so the order in which pages were allocated (docs/PROTOCOL.md) is gone too."""
    await db.execute_fetchall("PRAGMA journal_mode = DELETE")  # the page size cannot change in WAL mode
    await db.execute(f"PRAGMA page_size = {PAGE_BYTES}")
    await db.execute("VACUUM")
    await db.execute_fetchall("PRAGMA journal_mode = WAL")


async def apply(db: aiosqlite.Connection, *, start: int) -> None:
    """Run the migrations after `start` up to SCHEMA_VERSION, each committed on its own."""
    # Off while migrating: a table rebuild drops the old table, which with foreign keys on would
    # cascade into every row that references it. Each rebuild checks the keys before it commits.
    await db.execute("PRAGMA foreign_keys = OFF")
    try:
        for target in range(start + 1, SCHEMA_VERSION + 1):
            migration = _MIGRATIONS[target]
            await db.execute("BEGIN IMMEDIATE")
            try:
                if isinstance(migration, str):
                    for statement in migration.split(";"):
                        if statement.strip():
                            await db.execute(statement)
                else:
                    await migration(db)
                await db.execute(f"PRAGMA user_version = {target}")
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")
    finally:
        await db.execute("PRAGMA foreign_keys = ON")
