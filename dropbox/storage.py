"""Every SQL statement of the drop box, over aiosqlite (the schema and its migrations are
dropbox/migrations.py: together the two are the only modules that speak SQL).

Only what the server must know is stored in the clear: ids, channel, status, day-precision dates,
expiry, size buckets. Everything a person wrote or sent arrives here already sealed (see
sealing.py), file contents included (`file_chunks`), and is stored as an opaque BLOB.

One writer connection, serialised by a lock and always inside `BEGIN IMMEDIATE`, and one reader
connection. WAL lets the reader run beside the writer without seeing half a transaction, and the
lock keeps two coroutines from interleaving statements inside one transaction.
`synchronous=FULL`: a commit that returned is on disk, so a receipt shown after it survives a
power cut, not just a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from dropbox import migrations
from dropbox.ids import new_id
from dropbox.migrations import PAGE_BYTES, SCHEMA_VERSION  # noqa: F401 - the schema and page size this store speaks, for its callers

log = logging.getLogger(__name__)

#: Sealed bytes of file_chunks fetched per query when a file is read: a row is one frame (about
#: 1 MiB) since migration 10, 16 KiB in files stored before it; the query asks for as many rows as
#: fit in this many bytes, by the length of the rows it has seen.
_READ_BYTES = 4 * 1024 * 1024
#: Pages of WAL after which the writer checkpoints at its own commit (SQLite's wal_autocheckpoint):
#: the bound on the WAL (256 MiB of 64 KiB pages). While uploads stream, a connection of its own
#: checkpoints in the background (`Store._checkpoint_soon`) long before, so the writer rarely does.
_WAL_PAGES_MAX = 4096
#: Bytes of chunks written between two background checkpoints.
_CHECKPOINT_EVERY = 16 * 1024 * 1024


#: Rows of file_chunks in one INSERT statement: 800 parameters, under the 999 of older SQLites.
_ROWS_PER_INSERT = 200


class StoreError(Exception):
    """Root of the errors this module raises."""


class NotFound(StoreError):
    """No such row (or not one this caller may see: the two are never told apart)."""


class Conflict(StoreError):
    """A unique value already exists (a caseworker name, a channel id)."""


class StorageUnavailable(StoreError):
    """The disk refused a database write (full, read-only or failing); nothing of it was kept."""


#: SQLite's primary result codes for a disk that refuses writes: IOERR, FULL, READONLY, CANTOPEN.
_DISK_ERRORS = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
                          sqlite3.SQLITE_CANTOPEN})


class NotInitialised(StoreError):
    """The data folder has no database yet: run `python run.py init`."""


class DatabaseDamaged(StoreError):
    """The database file is not a SQLite database, or SQLite finds it corrupt where it must read
    it to open it (serve, every command, a backup). The way back is the last backup."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the database {path} is damaged ({reason}). Restore the last backup into a "
                         "new folder: python run.py restore FILE --data NEWDIR")


@contextlib.contextmanager
def _damage_named(path: Path) -> Iterator[None]:
    """SQLite's "not a database" and "malformed" while opening become DatabaseDamaged."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            raise DatabaseDamaged(path, getattr(e, "sqlite_errorname", "SQLITE_CORRUPT")) from e
        raise


class NewerSchema(StoreError):
    """The database was written by a newer version of this code (a rollback whose restore was
    forgotten). Old code cannot know what the new schema means, so it refuses instead of guessing."""

    def __init__(self, version: int, latest: int) -> None:
        super().__init__(f"database schema {version} is newer than this code ({latest})")
        self.version = version
        self.latest = latest


class NeedsMigration(StoreError):
    """The database is at an older schema than this code; upgrades are explicit (`run.py migrate`),
    so opening it for use is refused instead of changing it behind the operator's back."""

    def __init__(self, version: int, latest: int) -> None:
        super().__init__(f"database schema {version} is older than this code's {latest}")
        self.version = version
        self.latest = latest


# --- rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    description: str
    questions: str
    retention_days: int
    is_default: bool
    #: What happens to the metadata of files sent to it: a dropbox.cleaning.Policy value.
    cleaning_policy: str = "remove"


@dataclass(frozen=True)
class Caseworker:
    id: str
    name: str
    public_key: bytes
    wrapped_key: bytes
    kdf_salt: bytes
    kdf_ops: int
    kdf_mem: int
    is_admin: bool
    disabled: bool
    totp_sealed: bytes | None
    email: str | None
    created_day: str
    #: The passphrase was generated (someone else saw it): only a change of it is allowed.
    must_change_passphrase: bool = False
    #: Wrong TOTP codes since the last right one, and the earliest next try (unix seconds).
    totp_failures: int = 0
    totp_next_try: int = 0


@dataclass(frozen=True)
class MembershipNotice:
    """A change of a channel's members, for a member to see once (names and channel only)."""

    id: int
    caseworker_id: str
    actor_id: str | None
    channel_id: str
    subject_id: str
    member: bool
    day: str


@dataclass(frozen=True)
class PendingMembership:
    """An admin's change of their own membership, waiting for another admin's approval."""

    id: str
    channel_id: str
    caseworker_id: str
    member: bool
    requested_by: str
    requested_day: str


class Status(StrEnum):
    """Where a report stands (the reports.status column; its CHECK lists the same values)."""

    NEW = "new"
    OPENED = "opened"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"


class Author(StrEnum):
    """Who wrote a message (the messages.author column; sealed messages are bound to it)."""

    WHISTLEBLOWER = "whistleblower"
    CASEWORKER = "caseworker"


@dataclass(frozen=True)
class Report:
    id: str
    channel_id: str
    status: str
    received_day: str
    last_activity_day: str
    retention_days: int
    expires_day: str
    acknowledged_day: str | None
    feedback_day: str | None
    whistleblower_seen_day: str | None
    whistleblower_key: bytes
    sealed_body: bytes
    #: The day it was last closed (None while open): a closed report is deleted `retention_days`
    #: later (expires_day), an open one never automatically.
    closed_day: str | None = None
    #: A legal hold blocks every automatic deletion, whatever the state.
    legal_hold: bool = False
    #: The outcome category it was last closed with (dropbox/outcomes.py); an admin's label.
    outcome: str | None = None
    #: The day a caseworker recorded that no acknowledgement is sent (reason in report_reasons).
    no_ack_day: str | None = None
    #: The day the feedback deadline was extended to 6 months (reason in report_reasons).
    extended_day: str | None = None
    #: The day the last written notice before disclosing the reporter's identity was sent.
    disclosure_notice_day: str | None = None
    #: The whistleblower asked for a physical meeting or a call (art. 9(2)), and the day.
    meeting_request: str | None = None
    meeting_request_day: str | None = None


@dataclass(frozen=True)
class Reason:
    """A caseworker's written reason for not acknowledging or for extending the feedback
    deadline, sealed under the staff key (dropbox/reports.py)."""

    id: str
    report_id: str
    kind: str
    caseworker_id: str | None
    sealed_body: bytes
    written_day: str


@dataclass(frozen=True)
class ReportFacts:
    """The plaintext dates and state of a report: what its statistics record is made from."""

    channel_id: str
    status: str
    received_day: str
    acknowledged_day: str | None
    feedback_day: str | None
    closed_day: str | None
    outcome: str | None
    no_ack_day: str | None
    extended_day: str | None
    #: Registered by a caseworker from a call, a voice message or a meeting (dropbox/oral.py).
    oral: bool = False


@dataclass(frozen=True)
class StatRecord:
    """One report in the yearly figures (dropbox/statistics.py). None: not yet known."""

    channel_id: str
    received_month: str
    acknowledged_on_time: bool | None
    feedback_on_time: bool | None
    extended: bool
    outcome: str
    closed_month: str | None
    oral: bool


_FACT_COLUMNS = ("channel_id, status, received_day, acknowledged_day, feedback_day, closed_day, outcome, no_ack_day,"
                 " extended_day, EXISTS (SELECT 1 FROM oral_reports o WHERE o.report_id = reports.id)")


@dataclass(frozen=True)
class ReportSummary:
    """One line of a caseworker's list: nothing sealed, so it renders without any key."""

    id: str
    channel_id: str
    status: str
    received_day: str
    acknowledged_day: str | None
    feedback_day: str | None
    expires_day: str
    legal_hold: bool
    no_ack_day: str | None
    extended_day: str | None
    unread: int


@dataclass(frozen=True)
class Message:
    id: str
    report_id: str
    seq: int
    author: str
    caseworker_id: str | None
    sealed_body: bytes
    sent_day: str
    read: bool
    #: Which associated data the sealed body is bound to (dropbox/reports.py); stored, never guessed.
    ad_version: int = 2


@dataclass(frozen=True)
class Note:
    id: str
    report_id: str
    seq: int
    caseworker_id: str | None
    sealed_body: bytes
    written_day: str
    ad_version: int = 2


@dataclass(frozen=True)
class StoredFile:
    id: str
    report_id: str
    message_id: str | None
    sealed_name: bytes
    sealed_file_key: bytes
    #: The padded size (a bucket, see blobs.size_bucket); before migration 4, the exact size.
    size: int
    #: Position within its submission or message.
    seq: int = 0
    #: The exact size, sealed (None on rows from before migration 4).
    sealed_size: bytes | None = None
    ad_version: int = 2
    #: What cleaning found and did, sealed (None on rows from before migration 6).
    sealed_cleaning: bytes | None = None
    #: For a kept original: the id of the cleaned copy made from it.
    original_of: str | None = None
    #: Size and SHA-256 of the bytes as sent, sealed (None on rows from before migration 9).
    sealed_sent: bytes | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    hour: str
    actor: str | None
    action: str
    report_id: str | None
    detail: str


@dataclass(frozen=True)
class NewFile:
    """A file row to insert along with the report or message it belongs to."""

    id: str
    sealed_name: bytes
    sealed_file_key: bytes
    size: int
    sealed_size: bytes
    seq: int
    sealed_cleaning: bytes | None = None
    original_of: str | None = None
    sealed_sent: bytes | None = None


@dataclass(frozen=True)
class OralRecord:
    """How an oral report was made (dropbox/oral.py): nothing the reporter said, only the medium,
    whether they consented to a recording and the day they answered, and who registered it."""

    report_id: str
    medium: str
    recording_consent: bool
    consent_day: str
    caseworker_id: str | None


@dataclass(frozen=True)
class MinutesVersion:
    """One version of an oral report's minutes, sealed under the report key; `approved_day` is
    the day the reporter agreed to this version (None: not approved)."""

    report_id: str
    version: int
    caseworker_id: str | None
    sealed_text: bytes
    written_day: str
    approved_day: str | None = None
    #: The approval has its audit entry (written at a caseworker's next view, see dropbox/oral.py).
    approval_audited: bool = False


def _day(day: dt.date) -> str:
    return day.isoformat()


def _chunk_id() -> int:
    """A random rowid for a row of file_chunks: the rows' order must not follow the order of writes."""
    return secrets.randbits(63)


def _row(cls: type, row: aiosqlite.Row | None) -> Any:
    if row is None:
        raise NotFound(cls.__name__)
    return cls(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (a Row iterates values)


# --- the store -----------------------------------------------------------------------------


@contextlib.contextmanager
def _disk_errors(also: frozenset[int] = frozenset()) -> Iterator[None]:
    """A disk that refuses a write (full, read-only, failing), or one of the codes in `also`,
    raises StorageUnavailable."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if (e.sqlite_errorcode & 0xFF) in _DISK_ERRORS | also:
            raise StorageUnavailable(e.sqlite_errorname) from e
        raise


async def _connect(path: Path, *, cache_kib: int = 8192) -> aiosqlite.Connection:
    """A connection with the store's settings; `cache_kib` bounds its page cache (8 MiB: 128 of
    the 64 KiB pages, for the reader's lists and searches). Closed again if a setting fails (a
    file that is not a database fails at the first): its thread would keep the process alive."""
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA busy_timeout = 10000")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA secure_delete = ON")
        # SQLite's own temporary files (statement journals, sorts, transient indices) would otherwise
        # go to TMPDIR, outside the data folder (seen in test_leaks as an open etilqs_* file).
        await db.execute("PRAGMA temp_store = MEMORY")
        await db.execute(f"PRAGMA cache_size = -{cache_kib}")
    except BaseException:
        await db.close()
        raise
    return db


class Store:
    """The database of one install. Open with `Store.open(path)`; close with `close()`."""

    # --- the connections: open, close, one transaction at a time, reads ---------------------------

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, path: Path,
                 checkpointer: aiosqlite.Connection) -> None:
        self._path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        #: The writer's PRAGMA synchronous as last set ("FULL", "NORMAL"), None when not known.
        self._synchronous: str | None = None
        #: Copies the WAL into the database on its own thread while uploads stream (put_chunks).
        self._checkpointer = checkpointer
        #: Held by whoever checkpoints: SQLite lets one checkpoint run at a time and answers a
        #: second with SQLITE_BUSY, which forget_deleted must not take for a failure.
        self._checkpoint_lock = asyncio.Lock()
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._unchecked_bytes = 0
        #: True while a delete's page images may still be in the WAL: the checkpoint after it was
        #: held up by a reader or refused by the disk, and must be tried again (retention.py).
        self.wal_holds_deleted = False

    @classmethod
    async def open(cls, path: Path, *, create: bool = False, migrate: bool = False) -> Store:
        """Open for use. `create` makes a new database at the latest schema (init); an existing
        one at an older schema raises NeedsMigration unless `migrate` (only `run.py migrate`)."""
        existed = path.exists()
        if not create and not existed:
            raise NotInitialised(str(path))
        with _damage_named(path):
            return await cls._open(path, create=create, migrate=migrate, existed=existed)

    @classmethod
    async def _open(cls, path: Path, *, create: bool, migrate: bool, existed: bool) -> Store:
        async with contextlib.AsyncExitStack() as opened:  # closes what was opened if any step fails
            # The writer's cache small: what passes through it is mostly the overflow pages of file
            # chunks, each written once and never read again by this connection (2 MiB: 32 pages,
            # the B-tree pages its commits touch stay in it).
            writer = await _connect(path, cache_kib=2048)
            opened.push_async_callback(writer.close)
            if not existed:
                await writer.execute(f"PRAGMA page_size = {migrations.PAGE_BYTES}")
            await writer.execute_fetchall("PRAGMA journal_mode = WAL")  # fetched: no statement left open
            await writer.execute_fetchall(f"PRAGMA wal_autocheckpoint = {_WAL_PAGES_MAX}")
            if await _migrate(writer, allowed=create or migrate) < 4 and existed:
                await migrations.repage(writer)
            reader = await _connect(path)
            opened.push_async_callback(reader.close)
            checkpointer = await _connect(path, cache_kib=1024)  # a checkpoint copies frames past the cache
            opened.pop_all()
        return cls(writer, reader, path, checkpointer)

    async def close(self) -> None:
        if self._checkpoint_task is not None:
            await asyncio.wait([self._checkpoint_task])
        await self._checkpointer.close()
        await self._reader.close()
        await self._writer.close()

    @contextlib.asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """Everything inside commits together or not at all.

        A disk that refuses the write (full, read-only, failing) raises StorageUnavailable, also
        when it is the COMMIT that fails; the transaction is then rolled back, so the connection
        is ready for the next one once the disk is back.

        `durable=False` (staged upload chunks only) commits with synchronous=NORMAL: no fsync of
        the WAL at this commit, but still before and after every checkpoint. The chunks become
        durable with the next durable commit, which fsyncs the same WAL, and nothing refers to
        them before that commit (the one that stores their file row) anyway.
        """
        async with self._lock:
            with _disk_errors():
                await self._set_synchronous(durable=durable)
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    await self._rollback()
                    raise
                try:
                    await self._writer.execute("COMMIT")
                except BaseException:
                    await self._rollback()
                    raise

    async def _set_synchronous(self, *, durable: bool) -> None:
        """Under the lock: FULL (fsync at commit) or NORMAL for the next commit, never restored
        afterwards (a restore that failed would leave later commits silently without their fsync).

        Every statement is a round trip to SQLite's thread, so an unchanged setting is not sent
        again. While a change is on its way, and after one that failed or was cancelled, the
        setting counts as unknown: the next commit sends it rather than trust it."""
        wanted = "FULL" if durable else "NORMAL"
        if self._synchronous != wanted:
            self._synchronous = None
            await self._writer.execute(f"PRAGMA synchronous = {wanted}")
            self._synchronous = wanted

    async def _rollback(self) -> None:
        """Roll back if a transaction is still open (SQLite ends some on its own after an I/O error)."""
        if self._writer.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("ROLLBACK")

    # Each read runs to its end in one call on the reader's thread. With execute() and fetch as
    # two awaits, another coroutine's query could start between them and run inside the first
    # one's still-open read snapshot, missing a commit that had already returned (a receipt just
    # shown would then open nothing), and overlapping reads could hold a snapshot for ever.
    async def _one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        rows = await self._reader.execute_fetchall(sql, params)
        return next(iter(rows), None)  # type: ignore[arg-type]

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._reader.execute_fetchall(sql, params))  # type: ignore[arg-type]

    # --- the database file: integrity, the WAL after a delete -------------------------------------

    async def integrity_check(self) -> str:
        row = await self._one("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"

    async def forget_deleted(self) -> bool:
        """After a delete: copy the WAL into the database and truncate it to zero bytes.

        With secure_delete on, a deleted row's pages are overwritten with zeros, but the WAL
        still holds the images of those pages from before the delete until it is checkpointed
        and truncated. True if the checkpoint completed (False: a reader held it up; the next
        one finishes it). Blocks other writers for the length of the checkpoint.
        """
        self.wal_holds_deleted = True  # until a checkpoint says otherwise
        async with self._lock, self._checkpoint_lock:
            with _disk_errors(also=frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})):
                rows = await self._writer.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        row = next(iter(rows), None)
        self.wal_holds_deleted = not (row is not None and int(row[0]) == 0)
        return not self.wal_holds_deleted

    # --- meta: install-wide values (receipt salt, KDF cost, outcome categories) -------------------

    async def get_meta(self, key: str) -> bytes:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        if row is None:
            raise NotFound(f"meta {key}")
        return bytes(row[0]) if isinstance(row[0], bytes | memoryview) else str(row[0]).encode()

    async def set_meta(self, values: dict[str, bytes]) -> None:
        async with self.transaction() as db:
            await db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    # --- channels ---------------------------------------------------------------------------------

    async def add_channel(self, channel: Channel) -> None:
        async with self.transaction() as db:
            if channel.is_default:
                await db.execute("UPDATE channels SET is_default = 0")
            try:
                await db.execute(
                    "INSERT INTO channels (id, name, description, questions, retention_days, is_default,"
                    " cleaning_policy) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (channel.id, channel.name, channel.description, channel.questions,
                     channel.retention_days, int(channel.is_default), channel.cleaning_policy),
                )
            except aiosqlite.IntegrityError as e:
                raise Conflict(f"channel {channel.id}") from e

    async def update_channel(self, channel: Channel) -> None:
        async with self.transaction() as db:
            if channel.is_default:
                await db.execute("UPDATE channels SET is_default = 0")
            cur = await db.execute(
                "UPDATE channels SET name = ?, description = ?, questions = ?, retention_days = ?,"
                " is_default = ?, cleaning_policy = ? WHERE id = ?",
                (channel.name, channel.description, channel.questions, channel.retention_days,
                 int(channel.is_default), channel.cleaning_policy, channel.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"channel {channel.id}")

    async def channels(self) -> list[Channel]:
        rows = await self._all("SELECT * FROM channels ORDER BY is_default DESC, name")
        return [_row(Channel, r) for r in rows]

    async def channel(self, channel_id: str) -> Channel:
        row = await self._one("SELECT * FROM channels WHERE id = ?", (channel_id,))
        return _row(Channel, row)  # type: ignore[no-any-return]

    # --- channel_members, membership_notices, pending_memberships ---------------------------------

    async def channel_members(self, channel_id: str) -> list[Caseworker]:
        rows = await self._all(
            "SELECT c.* FROM caseworkers c JOIN channel_members m ON m.caseworker_id = c.id"
            " WHERE m.channel_id = ? AND c.disabled = 0 ORDER BY c.name",
            (channel_id,),
        )
        return [_row(Caseworker, r) for r in rows]

    async def channel_memberships(self) -> dict[str, set[str]]:
        """Channel id -> ids of its members, disabled accounts included (for the admin pages)."""
        members: dict[str, set[str]] = {c.id: set() for c in await self.channels()}
        for row in await self._all("SELECT channel_id, caseworker_id FROM channel_members"):
            members.setdefault(row[0], set()).add(row[1])
        return members

    async def set_channel_member(self, *, channel_id: str, caseworker_id: str, member: bool) -> None:
        async with self.transaction() as db:
            if member:
                await db.execute(
                    "INSERT OR IGNORE INTO channel_members (channel_id, caseworker_id) VALUES (?, ?)",
                    (channel_id, caseworker_id),
                )
            else:
                await db.execute(
                    "DELETE FROM channel_members WHERE channel_id = ? AND caseworker_id = ?",
                    (channel_id, caseworker_id),
                )

    async def change_membership(self, *, channel_id: str, caseworker_id: str, member: bool, notify: Iterable[str],
                                actor_id: str | None, day: str, hour: str, action: str) -> bool:
        """Add or remove a member, leave a notice for each of `notify` and write the audit entry,
        together. False (and nothing written) if the membership was already so."""
        async with self.transaction() as db:
            if member:
                cur = await db.execute(
                    "INSERT OR IGNORE INTO channel_members (channel_id, caseworker_id) VALUES (?, ?)",
                    (channel_id, caseworker_id))
            else:
                cur = await db.execute(
                    "DELETE FROM channel_members WHERE channel_id = ? AND caseworker_id = ?",
                    (channel_id, caseworker_id))
            if cur.rowcount != 1:
                return False
            await db.executemany(
                "INSERT INTO membership_notices (caseworker_id, actor_id, channel_id, subject_id, member, day)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(cw, actor_id, channel_id, caseworker_id, int(member), day) for cw in sorted(set(notify))])
            await db.execute("INSERT INTO audit (hour, actor, action, report_id, detail) VALUES (?, ?, ?, NULL, ?)",
                             (hour, actor_id, action, f"{channel_id}/{caseworker_id}"))
            return True

    async def take_membership_notices(self, caseworker_id: str) -> list[MembershipNotice]:
        """The caseworker's notices, removed as they are read: each is shown once."""
        async with self.transaction() as db:
            async with db.execute("SELECT * FROM membership_notices WHERE caseworker_id = ? ORDER BY id",
                                  (caseworker_id,)) as cur:
                rows = [_row(MembershipNotice, r) for r in await cur.fetchall()]
            await db.execute("DELETE FROM membership_notices WHERE caseworker_id = ?", (caseworker_id,))
        return rows

    async def add_pending_membership(self, pending: PendingMembership) -> None:
        """Replaces an earlier pending change of the same membership."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT OR REPLACE INTO pending_memberships"
                " (id, channel_id, caseworker_id, member, requested_by, requested_day) VALUES (?, ?, ?, ?, ?, ?)",
                (pending.id, pending.channel_id, pending.caseworker_id, int(pending.member), pending.requested_by,
                 pending.requested_day))

    async def pending_memberships(self) -> list[PendingMembership]:
        rows = await self._all("SELECT * FROM pending_memberships ORDER BY requested_day, channel_id, id")
        return [_row(PendingMembership, r) for r in rows]

    async def take_pending_membership(self, pending_id: str) -> PendingMembership:
        """Remove a pending change and return it (NotFound if another admin settled it first)."""
        async with self.transaction() as db:
            async with db.execute("SELECT * FROM pending_memberships WHERE id = ?", (pending_id,)) as cur:
                pending: PendingMembership = _row(PendingMembership, await cur.fetchone())
            await db.execute("DELETE FROM pending_memberships WHERE id = ?", (pending_id,))
        return pending

    # --- caseworkers: accounts, their keys, two-step login ----------------------------------------

    async def add_caseworker(self, cw: Caseworker, *, channel_ids: Iterable[str] = ()) -> None:
        async with self.transaction() as db:
            try:
                await db.execute(
                    "INSERT INTO caseworkers (id, name, public_key, wrapped_key, kdf_salt, kdf_ops, kdf_mem,"
                    " is_admin, disabled, totp_sealed, email, created_day, must_change_passphrase)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cw.id, cw.name, cw.public_key, cw.wrapped_key, cw.kdf_salt, cw.kdf_ops, cw.kdf_mem,
                     int(cw.is_admin), int(cw.disabled), cw.totp_sealed, cw.email, cw.created_day,
                     int(cw.must_change_passphrase)),
                )
            except aiosqlite.IntegrityError as e:
                raise Conflict(f"caseworker {cw.name}") from e
            await db.executemany(
                "INSERT INTO channel_members (channel_id, caseworker_id) VALUES (?, ?)",
                [(c, cw.id) for c in channel_ids],
            )

    async def caseworker_by_name(self, name: str) -> Caseworker:
        return _row(Caseworker, await self._one("SELECT * FROM caseworkers WHERE name = ?", (name,)))  # type: ignore[no-any-return]

    async def caseworker(self, caseworker_id: str) -> Caseworker:
        return _row(Caseworker, await self._one("SELECT * FROM caseworkers WHERE id = ?", (caseworker_id,)))  # type: ignore[no-any-return]

    async def caseworkers(self) -> list[Caseworker]:
        return [_row(Caseworker, r) for r in await self._all("SELECT * FROM caseworkers ORDER BY name")]

    async def update_caseworker(self, caseworker_id: str, **fields: Any) -> None:
        async with self.transaction() as db:
            await _update_row(db, "caseworkers", caseworker_id, fields)

    async def replace_caseworker_key(
        self, caseworker_id: str, *, expected_public_key: bytes, expected_totp: bytes | None, public_key: bytes,
        wrapped_key: bytes, kdf_salt: bytes, kdf_ops: int, kdf_mem: int, totp_sealed: bytes | None,
        must_change: bool, grants: Sequence[tuple[str, bytes]],
    ) -> None:
        """Swap in a new key pair with every grant and the TOTP state re-sealed to it, all in one
        transaction. Conflict (nothing written) if the account's key or TOTP state changed since
        they were read, or its grants are no longer exactly `grants`' reports (one was added or
        deleted meanwhile): the caller re-reads and tries again."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE caseworkers SET public_key = ?, wrapped_key = ?, kdf_salt = ?, kdf_ops = ?, kdf_mem = ?,"
                " totp_sealed = ?, must_change_passphrase = ?"
                " WHERE id = ? AND public_key = ? AND totp_sealed IS ?",
                (public_key, wrapped_key, kdf_salt, kdf_ops, kdf_mem, totp_sealed, int(must_change), caseworker_id,
                 expected_public_key, expected_totp),
            )
            if cur.rowcount != 1:
                raise Conflict("the key or the TOTP state changed meanwhile")
            async with db.execute("SELECT report_id FROM report_grants WHERE caseworker_id = ?",
                                  (caseworker_id,)) as rows:
                current = {r[0] for r in await rows.fetchall()}
            if current != {report_id for report_id, _ in grants} or len(grants) != len(current):
                raise Conflict("grants changed meanwhile")
            await db.executemany(
                "UPDATE report_grants SET sealed_keys = ? WHERE report_id = ? AND caseworker_id = ?",
                [(sealed, report_id, caseworker_id) for report_id, sealed in grants],
            )

    async def claim_totp_attempt(self, caseworker_id: str, *, failures: int, now: int, next_try: int) -> bool:
        """Charge one code attempt before the code is checked (compare-and-swap on the failure
        count): true only if no wait is due and no other attempt was charged since `failures`
        was read, so parallel logins cannot try codes faster than the backoff allows."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE caseworkers SET totp_failures = totp_failures + 1, totp_next_try = ?"
                " WHERE id = ? AND totp_failures = ? AND totp_next_try <= ?",
                (next_try, caseworker_id, failures, now),
            )
            return cur.rowcount == 1

    async def swap_totp(self, caseworker_id: str, *, expected: bytes | None, new: bytes | None) -> bool:
        """Replace the sealed TOTP state only if it is still `expected` (compare-and-swap), so two
        logins racing with the same code cannot both succeed. True if replaced."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE caseworkers SET totp_sealed = ? WHERE id = ? AND totp_sealed IS ?",
                (new, caseworker_id, expected),
            )
            return cur.rowcount == 1

    # --- reports ----------------------------------------------------------------------------------

    async def insert_report(
        self, report: Report, *, locator: str, receipt_salt: bytes, grants: dict[str, bytes],
        files: Sequence[NewFile],
    ) -> None:
        """A new report with its key grants and files, atomically. Conflict on a locator clash.

        lookup_id (only legacy receipts use it) gets random bytes: unique, and matching no code.
        """
        async with self.transaction() as db:
            await _insert_report(db, report, locator=locator, receipt_salt=receipt_salt, grants=grants, files=files)

    async def report(self, report_id: str) -> Report:
        row = await self._one("SELECT * FROM reports WHERE id = ?", (report_id,))
        return _report(row)

    async def report_by_lookup(self, lookup_id: bytes) -> Report:
        """A report made before schema 3, by the lookup id its whole receipt derives."""
        row = await self._one("SELECT * FROM reports WHERE lookup_id = ? AND locator IS NULL", (lookup_id,))
        return _report(row)

    async def report_by_locator(self, locator: str) -> tuple[Report, bytes]:
        """A report by its receipt's clear locator, with the salt its receipt's secret is hashed under."""
        row = await self._one("SELECT * FROM reports WHERE locator = ?", (locator,))
        return _report(row), bytes(row["receipt_salt"])  # type: ignore[index]

    async def update_report(self, report_id: str, **fields: Any) -> None:
        async with self.transaction() as db:
            await _update_row(db, "reports", report_id, fields)

    async def advance_status(self, report_id: str, *, to: str, only_from: Sequence[str]) -> bool:
        """Set the status only if it is one of `only_from` (atomic); True if it changed."""
        marks = ", ".join("?" for _ in only_from)
        async with self.transaction() as db:
            cur = await db.execute(
                f"UPDATE reports SET status = ? WHERE id = ? AND status IN ({marks})",  # noqa: S608
                (to, report_id, *only_from),
            )
            return cur.rowcount == 1

    async def set_day_once(self, report_id: str, *, field: str, day: str) -> bool:
        """Record `acknowledged_day` or `feedback_day` unless already recorded; True if recorded now."""
        if field not in ("acknowledged_day", "feedback_day"):
            raise ValueError(f"not a once-only day: {field!r}")
        async with self.transaction() as db:
            cur = await db.execute(
                f"UPDATE reports SET {field} = ? WHERE id = ? AND {field} IS NULL",  # noqa: S608
                (day, report_id),
            )
            return cur.rowcount == 1

    async def delete_report(self, report_id: str, *, record: Callable[[ReportFacts], StatRecord]) -> list[str]:
        """Delete a report and everything under it, file contents included; returns its file ids.

        In the same transaction, `record(facts)` makes the content-free statistics record the
        report leaves behind (report_stats), so no deletion can skip the yearly figures.
        """
        async with self.transaction() as db:
            async with db.execute(f"SELECT {_FACT_COLUMNS} FROM reports WHERE id = ?",  # noqa: S608
                                  (report_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                raise NotFound(f"report {report_id}")
            kept = record(ReportFacts(*row))
            await db.execute(
                "INSERT INTO report_stats (id, channel_id, received_month, acknowledged_on_time, feedback_on_time,"
                " extended, outcome, closed_month, oral) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (new_id(), kept.channel_id, kept.received_month, _flag(kept.acknowledged_on_time),
                 _flag(kept.feedback_on_time), int(kept.extended), kept.outcome, kept.closed_month, int(kept.oral)),
            )
            async with db.execute("SELECT id FROM files WHERE report_id = ?", (report_id,)) as cur:
                file_ids = [r[0] for r in await cur.fetchall()]
            await db.executemany("DELETE FROM file_chunks WHERE file_id = ?", [(f,) for f in file_ids])
            cur = await db.execute("DELETE FROM reports WHERE id = ?", (report_id,))
            if cur.rowcount == 0:
                raise NotFound(f"report {report_id}")
        return file_ids

    async def expired_reports(self, *, today: dt.date) -> list[str]:
        """Closed reports without a legal hold whose deletion day is before `today`."""
        rows = await self._all("SELECT id FROM reports WHERE status = 'closed' AND legal_hold = 0"
                               " AND expires_day < ?", (_day(today),))
        return [r[0] for r in rows]

    #: Overdue conditions (parameter: the cut-off day from deadlines.ack_cut / feedback_cut).
    _ACK_OVERDUE = ("(r.status != 'closed' AND r.acknowledged_day IS NULL AND r.no_ack_day IS NULL"
                    " AND r.received_day < ?)")
    #: Parameters: the feedback cut, then the cut for a deadline extended to 6 months.
    _FEEDBACK_OVERDUE = ("(r.status != 'closed' AND r.feedback_day IS NULL"
                         " AND r.received_day < (CASE WHEN r.extended_day IS NULL THEN ? ELSE ? END))")
    #: Closed, not held, and deleted before the given day (retention.py: due for deletion soon).
    _DELETION_DUE = "(r.status = 'closed' AND r.legal_hold = 0 AND r.expires_day < ?)"
    #: ORDER BY per sort, for the table alias `{t}`.
    _REPORT_SORTS: ClassVar[dict[str, str]] = {
        "newest": "{t}.received_day DESC, {t}.id DESC",
        "oldest": "{t}.received_day ASC, {t}.id ASC",
        # Open before closed; overdue acknowledgements, then overdue feedback, then pending ones;
        # within each, the oldest (nearest deadline) first. Parameters: ack cut, feedback cut.
        "urgent": (
            "({t}.status = 'closed'),"
            " CASE WHEN {t}.acknowledged_day IS NULL AND {t}.no_ack_day IS NULL AND {t}.received_day < ? THEN 0"
            " WHEN {t}.feedback_day IS NULL"
            " AND {t}.received_day < (CASE WHEN {t}.extended_day IS NULL THEN ? ELSE ? END) THEN 1"
            " WHEN {t}.acknowledged_day IS NULL THEN 2 WHEN {t}.feedback_day IS NULL THEN 3 ELSE 4 END,"
            " {t}.received_day ASC, {t}.id ASC"
        ),
    }

    async def caseworker_report_page(
        self, *, caseworker_id: str, ack_cut: str, feedback_cut: str, extended_cut: str, deletion_cut: str,
        status: str | None = None, channel_id: str | None = None, overdue_only: bool = False,
        sort: str = "newest", limit: int = 50, offset: int = 0,
    ) -> tuple[list[ReportSummary], int, int, int, int]:
        """One page of the reports granted to a caseworker; how many match the filters; how
        many of all their reports are past the acknowledgement and the feedback deadline; and how
        many are due for deletion before `deletion_cut`.

        `ack_cut` / `feedback_cut`: reports received before these days and not yet acknowledged /
        given feedback are overdue (casework.py computes them). `sort` is "newest", "oldest" or
        "urgent" (overdue first, then the nearest open deadline). Only plaintext columns are read,
        in two queries: one pass for the three counts, one for the page. Both read the covering
        index reports_listing (migration 2) and never the table with the sealed bodies; SQLite
        would otherwise look each report up by its unique id index and then in the table.
        """
        if sort not in self._REPORT_SORTS:
            raise ValueError(f"unknown sort {sort!r}")
        conditions: list[str] = []
        params: list[Any] = []
        if status:
            conditions.append("r.status = ?")
            params.append(status)
        if channel_id:
            conditions.append("r.channel_id = ?")
            params.append(channel_id)
        if overdue_only:
            conditions.append(f"({self._ACK_OVERDUE} OR {self._FEEDBACK_OVERDUE})")
            params.extend((ack_cut, feedback_cut, extended_cut))
        # Every piece of SQL below comes from the constants of this class, never from input.
        matches = " AND ".join(conditions) or "1"
        counts = await self._one(
            f"SELECT coalesce(sum(CASE WHEN {matches} THEN 1 ELSE 0 END), 0),"  # noqa: S608
            f" coalesce(sum({self._ACK_OVERDUE}), 0), coalesce(sum({self._FEEDBACK_OVERDUE}), 0),"
            f" coalesce(sum({self._DELETION_DUE}), 0)"
            " FROM reports r INDEXED BY reports_listing JOIN report_grants g ON g.report_id = r.id"
            " WHERE g.caseworker_id = ?",
            (*params, ack_cut, feedback_cut, extended_cut, deletion_cut, caseworker_id),
        )
        # The page is chosen first and only its rows get the unread count: counting for every
        # granted report before sorting would run the subquery 10,000 times for 50 rows.
        inner_order, outer_order = (self._REPORT_SORTS[sort].format(t=t) for t in ("r", "p"))
        order_params: list[Any] = [ack_cut, feedback_cut, extended_cut] if sort == "urgent" else []
        query = (
            "SELECT p.*, (SELECT count(*) FROM messages m WHERE m.report_id = p.id"  # noqa: S608
            "   AND m.author = 'whistleblower' AND m.read = 0) AS unread FROM ("
            "SELECT r.id, r.channel_id, r.status, r.received_day, r.acknowledged_day, r.feedback_day,"
            " r.expires_day, r.legal_hold, r.no_ack_day, r.extended_day"
            " FROM reports r INDEXED BY reports_listing JOIN report_grants g ON g.report_id = r.id"
            f" WHERE g.caseworker_id = ? AND {matches}"
            f" ORDER BY {inner_order} LIMIT ? OFFSET ?) p"
            f" ORDER BY {outer_order}"
        )
        rows = await self._all(query, (caseworker_id, *params, *order_params, limit, offset, *order_params))
        total, ack_overdue, feedback_overdue, deletion_due = (int(v) for v in counts) if counts else (0, 0, 0, 0)
        return [_row(ReportSummary, r) for r in rows], total, ack_overdue, feedback_overdue, deletion_due

    # --- report_grants ----------------------------------------------------------------------------

    async def grant(self, *, report_id: str, caseworker_id: str) -> bytes:
        """The caseworker's sealed keys for the report; NotFound when not granted."""
        row = await self._one(
            "SELECT sealed_keys FROM report_grants WHERE report_id = ? AND caseworker_id = ?",
            (report_id, caseworker_id),
        )
        if row is None:
            raise NotFound("grant")
        return bytes(row[0])

    async def add_grants(self, grants: Iterable[tuple[str, str, bytes]]) -> int:
        """(report_id, caseworker_id, sealed_keys) rows; existing grants are left as they are."""
        async with self.transaction() as db:
            before = db.total_changes
            await db.executemany(
                "INSERT OR IGNORE INTO report_grants (report_id, caseworker_id, sealed_keys) VALUES (?, ?, ?)",
                list(grants),
            )
            return db.total_changes - before

    async def grants_of(self, caseworker_id: str) -> list[tuple[str, bytes]]:
        rows = await self._all(
            "SELECT report_id, sealed_keys FROM report_grants WHERE caseworker_id = ?", (caseworker_id,)
        )
        return [(r[0], bytes(r[1])) for r in rows]

    async def granted_caseworkers(self, report_id: str) -> list[str]:
        rows = await self._all("SELECT caseworker_id FROM report_grants WHERE report_id = ?", (report_id,))
        return [r[0] for r in rows]

    # --- report_stats: what a deleted report leaves for the yearly figures ------------------------

    async def report_facts(self, *, year: int, channel_id: str | None = None) -> list[ReportFacts]:
        """The facts of every report received in `year` (optionally in one channel)."""
        rows = await self._all(
            f"SELECT {_FACT_COLUMNS} FROM reports WHERE received_day >= ? AND received_day < ?"  # noqa: S608
            " AND (? IS NULL OR channel_id = ?)",
            (f"{year:04d}-01-01", f"{year + 1:04d}-01-01", channel_id, channel_id))
        return [ReportFacts(*r) for r in rows]

    async def stat_records(self, *, year: int, channel_id: str | None = None) -> list[StatRecord]:
        """The records deleted reports left, received in `year` (optionally in one channel)."""
        rows = await self._all(
            "SELECT channel_id, received_month, acknowledged_on_time, feedback_on_time, extended, outcome,"
            " closed_month, oral FROM report_stats WHERE received_month >= ? AND received_month < ?"
            " AND (? IS NULL OR channel_id = ?)",
            (f"{year:04d}-01", f"{year + 1:04d}-01", channel_id, channel_id))
        return [StatRecord(channel_id=r[0], received_month=r[1], acknowledged_on_time=_unflag(r[2]),
                           feedback_on_time=_unflag(r[3]), extended=bool(r[4]), outcome=r[5], closed_month=r[6],
                           oral=bool(r[7])) for r in rows]

    # --- messages ---------------------------------------------------------------------------------

    async def add_message(self, message: Message, *, seal_body: Callable[[int], bytes],
                          files: Sequence[NewFile] = (), activity: dict[str, Any]) -> None:
        """A message with its files; `activity` updates the report row in the same transaction.

        The body is sealed by `seal_body(seq)` once its sequence number is known inside the
        transaction, so the number is bound into the body's associated data (ad_version 2).
        """
        async with self.transaction() as db:
            await _insert_message(db, message, seal_body=seal_body, files=files, activity=activity)

    async def messages(self, report_id: str) -> list[Message]:
        rows = await self._all("SELECT * FROM messages WHERE report_id = ? ORDER BY seq", (report_id,))
        return [_row(Message, r) for r in rows]

    async def mark_messages_read(self, report_id: str, message_ids: Sequence[str]) -> None:
        """Mark exactly these messages read (those the reader was shown and could open), not any
        that arrived since."""
        async with self.transaction() as db:
            await db.executemany("UPDATE messages SET read = 1 WHERE report_id = ? AND id = ? AND read = 0",
                                 [(report_id, m) for m in message_ids])

    # --- notes ------------------------------------------------------------------------------------

    async def add_note(self, note: Note) -> None:
        async with self.transaction() as db:
            seq = await _next_seq(db, "notes", note.report_id)
            await db.execute(
                "INSERT INTO notes (id, report_id, seq, caseworker_id, sealed_body, written_day, ad_version)"
                " VALUES (?, ?, ?, ?, ?, ?, 2)",
                (note.id, note.report_id, seq, note.caseworker_id, note.sealed_body, note.written_day),
            )

    async def notes(self, report_id: str) -> list[Note]:
        rows = await self._all("SELECT * FROM notes WHERE report_id = ? ORDER BY seq", (report_id,))
        return [_row(Note, r) for r in rows]

    # --- report_reasons ---------------------------------------------------------------------------

    async def add_reason(self, reason: Reason) -> bool:
        """Record a reason and stamp its day on the report (no_ack_day or extended_day), once:
        False if one of this kind was recorded before (the first stands, like the audit log)."""
        field = {"no_acknowledgement": "no_ack_day", "extension": "extended_day"}[reason.kind]
        async with self.transaction() as db:
            cur = await db.execute(
                f"UPDATE reports SET {field} = ? WHERE id = ? AND {field} IS NULL",  # noqa: S608
                (reason.written_day, reason.report_id))
            if cur.rowcount == 0:
                async with db.execute("SELECT 1 FROM reports WHERE id = ?", (reason.report_id,)) as found:
                    if await found.fetchone() is None:
                        raise NotFound(f"report {reason.report_id}")
                return False
            await db.execute(
                "INSERT INTO report_reasons (id, report_id, kind, caseworker_id, sealed_body, written_day)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (reason.id, reason.report_id, reason.kind, reason.caseworker_id, reason.sealed_body,
                 reason.written_day))
            return True

    async def reasons(self, report_id: str) -> list[Reason]:
        rows = await self._all("SELECT * FROM report_reasons WHERE report_id = ? ORDER BY written_day, kind",
                               (report_id,))
        return [_row(Reason, r) for r in rows]

    # --- files ------------------------------------------------------------------------------------

    async def files(self, report_id: str) -> list[StoredFile]:
        rows = await self._all("SELECT * FROM files WHERE report_id = ? ORDER BY seq, id", (report_id,))
        return [_row(StoredFile, r) for r in rows]

    async def file(self, *, report_id: str, file_id: str) -> StoredFile:
        row = await self._one("SELECT * FROM files WHERE id = ? AND report_id = ?", (file_id, report_id))
        return _row(StoredFile, row)  # type: ignore[no-any-return]

    async def all_file_ids(self) -> set[str]:
        return {r[0] for r in await self._all("SELECT id FROM files")}

    # --- file_chunks: the sealed contents of files ------------------------------------------------

    # A file's sealed bytes are rows (random id, file id, seq, frame) of file_chunks (migration 10):
    # the order of the rows is that of their random ids, and no upload has a file (or a timestamp)
    # of its own.

    async def put_chunks(self, rows: Sequence[tuple[str, int, bytes | memoryview]]) -> None:
        """Staged chunks (file id, seq, sealed bytes) of uploads in progress, written as one
        INSERT statement (of up to _ROWS_PER_INSERT rows) that commits by itself, with
        synchronous=NORMAL (see `transaction`).

        A batch used to be BEGIN, INSERT and COMMIT: three round trips to SQLite's thread, and
        between them the writer waited for the event loop, busy reading the upload, to send the
        next; a statement on its own is all or nothing anyway. Each row gets a random 63-bit
        rowid. Two equal ones among millions of rows are about as likely as guessing a key, but
        the insert would then fail, so the statement is tried again with new ids (a duplicate
        (file id, seq) fails every time and is raised)."""
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[start : start + _ROWS_PER_INSERT]
            sql = "INSERT INTO file_chunks (id, file_id, seq, data) VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(part))  # noqa: S608 - placeholders only
            for attempt in range(3):
                try:
                    async with self._lock:
                        with _disk_errors():
                            await self._set_synchronous(durable=False)
                            await self._writer.execute(sql, [v for row in part for v in (_chunk_id(), *row)])
                    break
                except sqlite3.IntegrityError:
                    if attempt == 2:
                        raise
        self._unchecked_bytes += sum(len(row[2]) for row in rows)
        if self._unchecked_bytes >= _CHECKPOINT_EVERY:
            self._checkpoint_soon()

    def _checkpoint_soon(self) -> None:
        """Start a background checkpoint unless one is running.

        Left to the writer, a checkpoint runs inside the commit that crossed the threshold, and
        the upload behind it waits while the WAL is copied into the database (every byte of a
        file is written twice in WAL mode). On its own connection and thread it overlaps the next
        batches. PASSIVE: it never waits for, or blocks, a reader or the writer; what it cannot
        copy yet, the next one does, and the writer's own checkpoint at _WAL_PAGES_MAX bounds the
        WAL whatever happens here."""
        if self._checkpoint_task is None or self._checkpoint_task.done():
            self._unchecked_bytes = 0
            self._checkpoint_task = asyncio.ensure_future(self._checkpoint())

    async def _checkpoint(self) -> None:
        async with self._checkpoint_lock:
            try:
                await self._checkpointer.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.OperationalError as e:  # busy, or the disk: the writer's commits say so
                log.info("background checkpoint: %s", e.sqlite_errorname)

    async def delete_chunks(self, file_ids: Sequence[str]) -> None:
        """Delete the chunks of files no row refers to (a failed or abandoned upload)."""
        if not file_ids:
            return
        async with self.transaction(durable=False) as db:
            await db.executemany(
                "DELETE FROM file_chunks WHERE file_id = ? AND NOT EXISTS (SELECT 1 FROM files WHERE id = ?)",
                [(f, f) for f in file_ids])

    async def unreferenced_chunk_files(self) -> set[str]:
        """Ids of files with chunks but no file row: staged uploads, or what a crash left."""
        rows = await self._all("SELECT DISTINCT file_id FROM file_chunks"
                               " WHERE NOT EXISTS (SELECT 1 FROM files WHERE id = file_id)")
        return {r[0] for r in rows}

    async def import_file(self, file_id: str, chunks: Iterable[bytes]) -> None:
        """Move a blob file of an older install in, as one transaction (start-up only, nothing
        else is writing then). `chunks` is consumed lazily on the database thread, so a file of
        any size costs one chunk of memory."""
        async with self.transaction() as db:
            await db.executemany("INSERT INTO file_chunks (id, file_id, seq, data) VALUES (?, ?, ?, ?)",
                                 ((_chunk_id(), file_id, seq, data) for seq, data in enumerate(chunks)))

    async def has_chunks(self, file_id: str) -> bool:
        return await self._one("SELECT 1 FROM file_chunks WHERE file_id = ? LIMIT 1", (file_id,)) is not None

    def read_chunks(self, file_id: str) -> Generator[bytes, None, None]:
        """A stored file's sealed bytes, chunk by chunk (blocking: advance it in a worker thread).

        Its own connection, one short query per _READ_BYTES: no read transaction stays open while a
        slow client downloads, so checkpoints are never held up for the length of a download.
        Committed chunks never change, so reading them in separate snapshots is consistent.
        """
        db = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=10)
        try:
            seq, limit = 0, 1
            while True:
                rows = db.execute("SELECT seq, CAST(data AS BLOB) FROM file_chunks WHERE file_id = ? AND seq >= ?"
                                  " ORDER BY seq LIMIT ?", (file_id, seq, limit)).fetchall()
                for got, data in rows:
                    if got != seq:
                        return  # a missing row ends the file here: the reader sees it truncated
                    yield bytes(data)
                    seq += 1
                if len(rows) < limit:
                    return
                limit = max(1, _READ_BYTES // max(len(data) for _, data in rows))
        finally:
            db.close()

    # --- audit ------------------------------------------------------------------------------------

    async def audit(self, *, hour: str, actor: str | None, action: str, report_id: str | None = None,
                    detail: str = "") -> None:
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO audit (hour, actor, action, report_id, detail) VALUES (?, ?, ?, ?, ?)",
                (hour, actor, action, report_id, detail),
            )

    async def audit_once(self, *, hour: str, actor: str, action: str, report_id: str) -> None:
        """An audit entry, unless the same one exists for this hour (page views, reloads)."""
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO audit (hour, actor, action, report_id, detail) SELECT ?, ?, ?, ?, ''"
                " WHERE NOT EXISTS (SELECT 1 FROM audit WHERE report_id = ? AND hour = ? AND actor = ?"
                " AND action = ?)",
                (hour, actor, action, report_id, report_id, hour, actor, action),
            )

    async def audit_log(self, *, limit: int = 200, offset: int = 0) -> list[AuditEntry]:
        rows = await self._all("SELECT * FROM audit ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
        return [_row(AuditEntry, r) for r in rows]

    async def report_audit(self, report_id: str, *, limit: int = 100) -> list[AuditEntry]:
        rows = await self._all("SELECT * FROM audit WHERE report_id = ? ORDER BY id DESC LIMIT ?",
                               (report_id, limit))
        return [_row(AuditEntry, r) for r in rows]

    async def audit_count(self) -> int:
        row = await self._one("SELECT count(*) FROM audit")
        return int(row[0]) if row else 0

    # --- notices: what waits for each caseworker (notify.py), across caseworkers, reports and messages ---

    async def notice_tokens(self, *, deletion_cut: str) -> list[tuple[str, str, str]]:
        """(caseworker id, e-mail, token) for everything waiting for an active caseworker with an
        address: a token per new report, per unread whistleblower message, and per closed report
        without a legal hold that is deleted before `deletion_cut`."""
        rows = await self._all(
            "SELECT c.id, c.email, 'report:' || r.id FROM caseworkers c"
            " JOIN report_grants g ON g.caseworker_id = c.id JOIN reports r ON r.id = g.report_id"
            " WHERE c.disabled = 0 AND coalesce(c.email, '') != '' AND r.status = 'new'"
            " UNION ALL"
            " SELECT c.id, c.email, 'message:' || m.id FROM caseworkers c"
            " JOIN report_grants g ON g.caseworker_id = c.id"
            " JOIN messages m ON m.report_id = g.report_id"
            " WHERE c.disabled = 0 AND coalesce(c.email, '') != '' AND m.author = 'whistleblower' AND m.read = 0"
            " UNION ALL"
            " SELECT c.id, c.email, 'deletion:' || r.id FROM caseworkers c"
            " JOIN report_grants g ON g.caseworker_id = c.id JOIN reports r ON r.id = g.report_id"
            " WHERE c.disabled = 0 AND coalesce(c.email, '') != '' AND r.status = 'closed' AND r.legal_hold = 0"
            " AND r.expires_day < ?",
            (deletion_cut,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # --- oral reports (dropbox/oral.py) ----------------------------------------------------------

    async def insert_oral_report(
        self, report: Report, *, locator: str, receipt_salt: bytes, grants: dict[str, bytes],
        files: Sequence[NewFile], oral: OralRecord, seal_minutes: Callable[[int], bytes], caseworker_id: str,
    ) -> None:
        """A report registered by a caseworker, with its oral record and the first version of its
        minutes, all in one transaction (Conflict on a locator clash, like insert_report)."""
        async with self.transaction() as db:
            await _insert_report(db, report, locator=locator, receipt_salt=receipt_salt, grants=grants, files=files)
            await db.execute(
                "INSERT INTO oral_reports (report_id, medium, recording_consent, consent_day, caseworker_id)"
                " VALUES (?, ?, ?, ?, ?)",
                (report.id, oral.medium, int(oral.recording_consent), oral.consent_day, oral.caseworker_id))
            await db.execute(
                "INSERT INTO oral_minutes (report_id, version, caseworker_id, sealed_text, written_day)"
                " VALUES (?, 1, ?, ?, ?)", (report.id, caseworker_id, seal_minutes(1), report.received_day))

    async def oral_record(self, report_id: str) -> OralRecord:
        """NotFound for a report handed in through the web (or one that does not exist)."""
        row = await self._one("SELECT * FROM oral_reports WHERE report_id = ?", (report_id,))
        if row is None:
            raise NotFound("oral report")
        return OralRecord(report_id=row["report_id"], medium=row["medium"],
                          recording_consent=bool(row["recording_consent"]), consent_day=row["consent_day"],
                          caseworker_id=row["caseworker_id"])

    async def minutes_versions(self, report_id: str) -> list[MinutesVersion]:
        rows = await self._all("SELECT * FROM oral_minutes WHERE report_id = ? ORDER BY version", (report_id,))
        return [MinutesVersion(report_id=r["report_id"], version=r["version"], caseworker_id=r["caseworker_id"],
                               sealed_text=bytes(r["sealed_text"]), written_day=r["written_day"],
                               approved_day=r["approved_day"], approval_audited=bool(r["approval_audited"]))
                for r in rows]

    async def add_minutes_version(self, report_id: str, *, after: int, caseworker_id: str, day: str,
                                  seal_text: Callable[[int], bytes]) -> int:
        """Publish version `after` + 1, sealed by `seal_text(version)`; Conflict if `after` is not
        the latest version any more (a colleague published meanwhile), NotFound for no minutes."""
        async with self.transaction() as db:
            async with db.execute("SELECT max(version) FROM oral_minutes WHERE report_id = ?", (report_id,)) as cur:
                row = await cur.fetchone()
            latest = row[0] if row else None
            if latest is None:
                raise NotFound(f"minutes of {report_id}")
            if latest != after:
                raise Conflict("a newer version of the minutes exists")
            version = latest + 1
            await db.execute(
                "INSERT INTO oral_minutes (report_id, version, caseworker_id, sealed_text, written_day)"
                " VALUES (?, ?, ?, ?, ?)", (report_id, version, caseworker_id, seal_text(version), day))
            await _update_row(db, "reports", report_id, {"last_activity_day": day})
        return version

    async def approve_minutes(self, report_id: str, *, version: int, day: str) -> bool:
        """Stamp the reporter's approval on `version`, once, and only while it is the latest:
        False otherwise (already approved, or a newer version exists)."""
        async with self.transaction() as db:
            cur = await db.execute(
                "UPDATE oral_minutes SET approved_day = ? WHERE report_id = ? AND version = ?"
                " AND approved_day IS NULL"
                " AND version = (SELECT max(version) FROM oral_minutes WHERE report_id = ?)",
                (day, report_id, version, report_id))
            if cur.rowcount != 1:
                return False
            await _update_row(db, "reports", report_id, {"last_activity_day": day})
        return True

    async def add_minutes_correction(self, message: Message, *, version: int,
                                     seal_body: Callable[[int], bytes]) -> bool:
        """The reporter's proposed correction of `version`: a message of theirs, marked with the
        version, in one transaction; False (nothing stored) unless `version` is the latest and not
        yet approved."""
        async with self.transaction() as db:
            async with db.execute(
                    "SELECT 1 FROM oral_minutes WHERE report_id = ? AND version = ? AND approved_day IS NULL"
                    " AND version = (SELECT max(version) FROM oral_minutes WHERE report_id = ?)",
                    (message.report_id, version, message.report_id)) as cur:
                if await cur.fetchone() is None:
                    return False
            await _insert_message(db, message, seal_body=seal_body, files=(),
                                  activity={"last_activity_day": message.sent_day})
            await db.execute("INSERT INTO minutes_corrections (message_id, report_id, version) VALUES (?, ?, ?)",
                             (message.id, message.report_id, version))
        return True

    async def minutes_corrections(self, report_id: str) -> dict[str, int]:
        """Message id -> the version of the minutes it proposes to correct."""
        rows = await self._all("SELECT message_id, version FROM minutes_corrections WHERE report_id = ?",
                               (report_id,))
        return {r[0]: int(r[1]) for r in rows}

    async def audit_approvals(self, report_id: str, *, hour: str, action: str) -> int:
        """Write the audit entry of each approval not yet in the log (actor: none, the reporter;
        detail: the version and the day approved), in one transaction with marking them done.
        Called at a caseworker's view, so the entry's hour and place in the log date that view,
        never the reporter's approval. Returns how many."""
        async with self.transaction() as db:
            async with db.execute(
                    "SELECT version, approved_day FROM oral_minutes WHERE report_id = ? AND approved_day IS NOT NULL"
                    " AND approval_audited = 0 ORDER BY version", (report_id,)) as cur:
                rows = list(await cur.fetchall())
            await db.executemany(
                "INSERT INTO audit (hour, actor, action, report_id, detail) VALUES (?, NULL, ?, ?, ?)",
                [(hour, action, report_id, f"{r[0]} {r[1]}") for r in rows])
            await db.execute("UPDATE oral_minutes SET approval_audited = 1 WHERE report_id = ?"
                             " AND approved_day IS NOT NULL AND approval_audited = 0", (report_id,))
        return len(rows)


_CASEWORKER_FIELDS = frozenset(
    {"is_admin", "disabled", "totp_sealed", "email", "must_change_passphrase", "totp_failures", "totp_next_try"}
)
_REPORT_FIELDS = frozenset(
    {"status", "acknowledged_day", "feedback_day", "whistleblower_seen_day", "retention_days", "expires_day",
     "last_activity_day", "closed_day", "legal_hold", "outcome", "disclosure_notice_day", "meeting_request",
     "meeting_request_day"}
)


#: The columns an UPDATE may set, per table; everything else is written once, at insert.
_UPDATABLE = {"caseworkers": _CASEWORKER_FIELDS, "reports": _REPORT_FIELDS}


async def _update_row(db: aiosqlite.Connection, table: str, row_id: str, fields: dict[str, Any]) -> None:
    """UPDATE one row by id. Table and column names come only from _UPDATABLE, never from input."""
    allowed = _UPDATABLE[table]
    if not fields or not set(fields) <= allowed:
        raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
    assignments = ", ".join(f"{name} = ?" for name in fields)
    cur = await db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?",  # noqa: S608
                           (*fields.values(), row_id))
    if cur.rowcount == 0:
        raise NotFound(f"{table} {row_id}")


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _unflag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _report(row: aiosqlite.Row | None) -> Report:
    if row is None:
        raise NotFound("report")
    fields = {k: row[k] for k in row.keys() if k not in _RECEIPT_COLUMNS}  # noqa: SIM118 (a Row iterates values)
    fields["legal_hold"] = bool(fields.get("legal_hold", 0))
    return Report(**fields)  # noqa: SIM118 (a Row iterates values)


#: How a receipt finds its report; only the receipt login reads them, never a Report.
_RECEIPT_COLUMNS = frozenset({"lookup_id", "locator", "receipt_salt"})


async def _insert_report(db: aiosqlite.Connection, report: Report, *, locator: str, receipt_salt: bytes,
                         grants: dict[str, bytes], files: Sequence[NewFile]) -> None:
    """The rows of a new report (inside the caller's transaction); Conflict on a locator clash."""
    try:
        await db.execute(
            "INSERT INTO reports (id, lookup_id, locator, receipt_salt, channel_id, status, received_day,"
            " last_activity_day, retention_days, expires_day, whistleblower_key, sealed_body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (report.id, secrets.token_bytes(32), locator, receipt_salt, report.channel_id, report.status,
             report.received_day, report.last_activity_day, report.retention_days, report.expires_day,
             report.whistleblower_key, report.sealed_body),
        )
    except aiosqlite.IntegrityError as e:
        raise Conflict("report id or locator") from e
    await db.executemany(
        "INSERT INTO report_grants (report_id, caseworker_id, sealed_keys) VALUES (?, ?, ?)",
        [(report.id, cw, sealed) for cw, sealed in grants.items()],
    )
    await _insert_files(db, report.id, None, files)


async def _insert_message(db: aiosqlite.Connection, message: Message, *, seal_body: Callable[[int], bytes],
                          files: Sequence[NewFile], activity: dict[str, Any]) -> None:
    """A message row with its files (inside the caller's transaction), sealed at its sequence number."""
    seq = await _next_seq(db, "messages", message.report_id)
    await db.execute(
        "INSERT INTO messages (id, report_id, seq, author, caseworker_id, sealed_body, sent_day, read,"
        " ad_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2)",
        (message.id, message.report_id, seq, message.author, message.caseworker_id,
         seal_body(seq), message.sent_day, int(message.read)),
    )
    await _insert_files(db, message.report_id, message.id, files)
    if activity:
        await _update_row(db, "reports", message.report_id, activity)


async def _insert_files(db: aiosqlite.Connection, report_id: str, message_id: str | None,
                        files: Sequence[NewFile]) -> None:
    if not files:
        return  # most reports and messages come without files: no statement to prepare
    await db.executemany(
        "INSERT INTO files (id, report_id, message_id, sealed_name, sealed_file_key, size, seq, sealed_size,"
        " ad_version, sealed_cleaning, original_of, sealed_sent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2, ?, ?, ?)",
        [(f.id, report_id, message_id, f.sealed_name, f.sealed_file_key, f.size, f.seq, f.sealed_size,
          f.sealed_cleaning, f.original_of, f.sealed_sent) for f in files],
    )


async def _next_seq(db: aiosqlite.Connection, table: str, report_id: str) -> int:
    async with db.execute(f"SELECT coalesce(max(seq), 0) + 1 FROM {table} WHERE report_id = ?",  # noqa: S608
                          (report_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 1


def schema_version(path: Path) -> int:
    """The schema of the database at `path`, read without changing anything (status, checks)."""
    if not path.exists():
        raise NotInitialised(str(path))
    with _damage_named(path), contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def snapshot_database(source: Path, target: Path) -> None:
    """A consistent copy of a live database (SQLite's online backup API): writers may go on
    committing meanwhile; the copy is one committed state, WAL content included."""
    with _damage_named(source), contextlib.closing(sqlite3.connect(source, timeout=30)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst, pages=1024)
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it


def check_database_file(path: Path) -> tuple[str, int, set[str]]:
    """(integrity_check result, schema version, ids of the file rows whose contents are not in the
    database) of a database file that is not in use, read-only: what a restore checks before it
    puts the file in place. Before schema 4 every file's contents were a blob file beside it; since
    then they are rows of file_chunks (an install migrated but not yet started still has blob files
    to move in)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "files" not in tables:
            ids: set[str] = set()
        elif "file_chunks" in tables:
            ids = {str(r[0]) for r in db.execute(
                "SELECT id FROM files f WHERE NOT EXISTS (SELECT 1 FROM file_chunks c WHERE c.file_id = f.id)")}
        else:
            ids = {str(r[0]) for r in db.execute("SELECT id FROM files")}
    return integrity, version, ids


async def migrate_database(path: Path) -> tuple[int, int]:
    """Bring the database at `path` to the latest schema; returns (from, to). Each migration
    commits on its own, so an interrupted run resumes where it stopped."""
    before = schema_version(path)
    store = await Store.open(path, migrate=True)
    await store.close()
    return before, migrations.SCHEMA_VERSION


async def _migrate(db: aiosqlite.Connection, *, allowed: bool) -> int:
    """Bring the schema up to SCHEMA_VERSION when `allowed`; returns the version it started from."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > migrations.SCHEMA_VERSION:
        raise NewerSchema(version, migrations.SCHEMA_VERSION)
    if version == 0 and not allowed:
        raise NotInitialised("the database has no schema: was `init` interrupted?")
    if version < migrations.SCHEMA_VERSION and not allowed:
        raise NeedsMigration(version, migrations.SCHEMA_VERSION)
    try:
        await migrations.apply(db, start=version)
    except migrations.MigrationFailed as e:
        raise StoreError(str(e)) from e
    return version
