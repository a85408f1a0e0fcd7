"""What a whistleblower can do: hand in a report, and use the mailbox behind a receipt code.

These are plain async functions over a Store; the web views only parse forms and render pages.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dropbox.blobs import BlobStore, StagedFiles
from dropbox.cleaning import CleanedUpload, Cleaner, Policy, clean_upload
from dropbox.ids import new_id, today
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool, Priority
from dropbox.reports import (
    Damaged,
    Download,
    FileView,
    MessageView,
    PartReader,
    ReportBody,
    message_sealer,
    owning,
    read_body,
    seal_body,
    sealed_file_rows,
    stored_download,
    thread,
)
from dropbox.sealing import (
    InvalidSecret,
    KdfParams,
    KeyWiped,
    ReceiptCode,
    ReceiptSecret,
    ReportKeys,
    TamperedData,
    derive_receipt_keys,
    draw_receipt_secret,
    new_locator,
    parse_receipt,
    receipt_code,
    split_receipt,
    unwrap_for_whistleblower,
    wrap_for_whistleblower,
)
from dropbox.sealing import format_receipt as format_receipt
from dropbox.storage import Author, Conflict, Message, NewFile, NotFound, Report, Status, Store
from dropbox.storage import Channel as Channel
from dropbox.storage import StorageUnavailable as StorageUnavailable

# `X as X` above: re-exported for the whistleblower's views, so they import nothing below the
# domain (tests/test_web_layer.py): the typed errors they turn into pages, the Channel they
# render, and how a receipt code is written out. `owning` (reports.py) is theirs to use too.

log = logging.getLogger(__name__)


class InsertReport(Protocol):
    """What stores a new report atomically: Store.insert_report, or an oral report's (oral.py)."""

    def __call__(self, report: Report, *, locator: str, receipt_salt: bytes, grants: dict[str, bytes],
                 files: Sequence[NewFile]) -> Awaitable[None]: ...


class SubmissionError(Exception):
    """Root of the errors a whistleblower's action can end in."""


class NoRecipients(SubmissionError):
    """The channel has no active caseworker, so nobody could ever read a report: refuse it."""


class UnknownChannel(SubmissionError):
    """The form named a channel that does not exist."""


class WrongReceipt(SubmissionError):
    """The receipt code is malformed or opens no report. Deliberately one error for both."""


class MalformedReceipt(WrongReceipt):
    """Not the shape of any receipt code (too long, not 16 digits), refused before any Argon2id
    work. Shown like WrongReceipt, but not a guess: counting it against the failure budget would
    let anyone slow everyone down for free."""


@dataclass
class MailboxAccess:
    """What a logged-in whistleblower's session holds: which report, and its report key.

    What `wipe()` can and cannot do in Python: the key is kept in a `bytearray` we own, and
    wipe() overwrites it with zeros in place, so the long-lived copy (the one a session holds
    for up to its idle timeout) is gone from memory at logout, expiry and shutdown. It cannot
    reach the short-lived immutable `bytes` copies libsodium's bindings need: the one the
    unwrap returned at login and the one `report_key` makes for each use. Python frees those
    when the call ends but does not zero them, so their bytes stay in freed heap memory until
    reused. A root shell on the running server is out of scope anyway (docs/SECURITY.md).
    """

    report_id: str
    key: bytearray = field(repr=False)
    #: The whistleblower's own key (ReceiptKeys.own_key), wiped with the report key; empty when
    #: the session was not opened with a receipt.
    own_key: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def report_key(self) -> bytes:
        """A `bytes` copy of the key for one call (the bindings accept nothing else); KeyWiped after wipe()."""
        if self.wiped:
            raise KeyWiped()
        return bytes(self.key)

    @property
    def sender_key(self) -> bytes | None:
        """A `bytes` copy of the own key for one call, or None if there is none (or it was wiped)."""
        return bytes(self.own_key) if any(self.own_key) else None

    @property
    def wiped(self) -> bool:
        return not any(self.key)

    def wipe(self) -> None:
        """Overwrite the keys with zeros in place (same length, so no reallocation leaves a copy)."""
        self.key[:] = bytes(len(self.key))
        self.own_key[:] = bytes(len(self.own_key))


@dataclass(frozen=True)
class MailboxView:
    """What the mailbox shows; a sealed part that did not open is a `Damaged` in its place."""

    body: ReportBody | Damaged
    channel_name: str
    status: str
    received_day: str
    previous_visit_day: str | None
    files: list[FileView | Damaged]
    messages: list[MessageView]
    #: A meeting or call the whistleblower asked for ("meeting" / "call"), and the day.
    meeting_request: str | None = None
    meeting_request_day: str | None = None


def expiry(day: dt.date, retention_days: int) -> str:
    """A new report's deletion day as if it were closed on `day`: the column is never empty, but it
    only counts once the report is closed (retention.py recomputes it then from the closing day)."""
    return (day + dt.timedelta(days=retention_days)).isoformat()


#: Tries at a free locator before giving up. Each clash has odds reports/10^6 (1 % at 10,000
#: reports), and a retry costs one insert, not an Argon2id run: the locator is not derived.
LOCATOR_ATTEMPTS = 20


async def draw_receipt(*, kdf: KdfPool, install: Install, priority: Priority = Priority.URGENT) -> ReceiptSecret:
    """A fresh receipt secret at the install's receipt cost. By default ahead of every waiting
    login: that is for a submission the stock (receipt_stock.py) could not serve."""
    return await kdf.call(functools.partial(draw_receipt_secret, ops=install.receipt_kdf.ops,
                                            mem=install.receipt_kdf.mem), priority=priority)


async def submit_report(
    *,
    store: Store,
    kdf: KdfPool,
    install: Install,
    channel_id: str,
    body: ReportBody,
    staged: StagedFiles,
    keys: ReportKeys | None = None,
    take_receipt: Callable[[], Awaitable[ReceiptSecret]] | None = None,
    cleaned: CleanedUpload | None = None,
    insert: InsertReport | None = None,
) -> ReceiptCode:
    """Seal and store a report with its staged files; the receipt is returned only once it is durable.

    `take_receipt` supplies the receipt secret (the stock's `take`), asked only once the report
    is known to be acceptable, so a refused one uses up nothing; without it, one is derived now.
    `keys`: the report's keys, fresh ones unless given. `insert` stores the rows (default
    Store.insert_report; an oral report adds its minutes in the same transaction). On any failure
    the staged files are discarded and no row remains.
    """
    async with owning(staged):
        keys = keys or ReportKeys.generate()
        try:
            channel = await store.channel(channel_id)
        except NotFound as e:
            raise UnknownChannel(channel_id) from e
        members = await store.channel_members(channel.id)
        if not members:
            raise NoRecipients(channel.id)
        await staged.settle()
        drawn = await take_receipt() if take_receipt else await draw_receipt(kdf=kdf, install=install)
        report_id = new_id()
        day = today()
        report = Report(
            id=report_id, channel_id=channel.id, status=Status.NEW, received_day=day.isoformat(),
            last_activity_day=day.isoformat(), retention_days=channel.retention_days,
            expires_day=expiry(day, channel.retention_days), acknowledged_day=None, feedback_day=None,
            whistleblower_seen_day=None,
            whistleblower_key=wrap_for_whistleblower(keys, receipt_keys=drawn.keys, report_id=report_id),
            sealed_body=seal_body(body, report_key=keys.report_key, report_id=report_id),
        )
        files = sealed_file_rows(staged, report_key=keys.report_key, report_id=report_id, message_id=None,
                                 cleaned=cleaned, sender_key=drawn.keys.own_key)
        grants = {cw.id: keys.seal_for(cw.public_key) for cw in members}
        for _attempt in range(LOCATOR_ATTEMPTS):
            locator = new_locator()
            try:
                await (insert or store.insert_report)(report, locator=locator, receipt_salt=drawn.salt,
                                                      grants=grants, files=files)
                break
            except Conflict:
                continue
        else:
            raise SubmissionError("could not find a free receipt locator")
        receipt = receipt_code(locator=locator, secret=drawn.secret)
        staged.promote()
    return receipt


async def mailbox_channel(*, store: Store, access: MailboxAccess) -> str:
    """The channel of the mailbox's report: its cleaning policy applies to files sent later."""
    return (await store.report(access.report_id)).channel_id


async def clean_files(*, cleaner: Cleaner, store: Store, staged: StagedFiles, channel_id: str,
                      wanted: bool) -> CleanedUpload:
    """Clean a whistleblower's files as the channel's policy says (see cleaning.clean_upload).
    An unknown channel (or one whose policy reads wrong) gets the default, remove."""
    try:
        policy = Policy((await store.channel(channel_id)).cleaning_policy)
    except (NotFound, ValueError):
        policy = Policy.REMOVE
    return await clean_upload(cleaner=cleaner, staged=staged, policy=policy, wanted=wanted)


async def open_mailbox(*, store: Store, kdf: KdfPool, install: Install, receipt_text: str) -> MailboxAccess:
    """Receipt login: one Argon2id run. Any failure is WrongReceipt, whatever the cause.

    A 24-digit code's locator finds the report and its salt; an unknown locator still costs one
    run (on a fresh salt), so time tells nothing. A 16-digit code is a report from before schema 3:
    hashed under the install salt, found by the lookup id that yields.
    """
    try:
        locator, secret = split_receipt(parse_receipt(receipt_text))
    except InvalidSecret as e:
        raise MalformedReceipt() from e
    cost = install.receipt_kdf
    report: Report | None = None
    try:
        if locator is None:
            receipt_keys = await kdf.run(derive_receipt_keys, secret, kdf=cost)
            report = await store.report_by_lookup(receipt_keys.lookup_id)
        else:
            try:
                report, salt = await store.report_by_locator(locator)
                kdf_params = KdfParams(salt=salt, ops=cost.ops, mem=cost.mem)
            except NotFound:
                kdf_params = KdfParams.fresh(ops=cost.ops, mem=cost.mem)
            receipt_keys = await kdf.run(derive_receipt_keys, secret, kdf=kdf_params)
            if report is None:
                raise NotFound("report")
        report_key = unwrap_for_whistleblower(report.whistleblower_key, receipt_keys=receipt_keys,
                                              report_id=report.id)
    except (NotFound, TamperedData) as e:
        raise WrongReceipt() from e
    return MailboxAccess(report_id=report.id, key=bytearray(report_key), own_key=bytearray(receipt_keys.own_key))


async def read_mailbox(*, store: Store, access: MailboxAccess, record_visit: bool) -> MailboxView:
    """Everything the whistleblower may see. `record_visit` stamps today's day as last seen,
    and returns the day stamped before it, so the person can tell whether someone else used their code."""
    report = await store.report(access.report_id)
    # Each row opened on its own: a damaged one is shown as damaged, the rest as usual.
    reader = PartReader(report.id, log_report_id=False)
    body = read_body(report, reader=reader, report_key=access.report_key)
    files, messages = await thread(store, report_id=report.id, report_key=access.report_key,
                                   sender_key=access.sender_key, reader=reader)
    channel = await store.channel(report.channel_id)
    if record_visit:
        await store.update_report(report.id, whistleblower_seen_day=today().isoformat())
        # Read means read: a caseworker's message whose text did not open stays unread on their page.
        await store.mark_messages_read(report.id, [m.id for m in messages if m.author == Author.CASEWORKER
                                                   and not m.read and not isinstance(m.text, Damaged)])
    return MailboxView(body=body, channel_name=channel.name, status=report.status,
                       received_day=report.received_day, previous_visit_day=report.whistleblower_seen_day,
                       files=files, messages=messages, meeting_request=report.meeting_request,
                       meeting_request_day=report.meeting_request_day)


MEETING_KINDS = ("meeting", "call")


class InvalidMeetingRequest(ValueError):
    """Neither a meeting nor a call."""


async def request_meeting(*, store: Store, access: MailboxAccess, kind: str) -> None:
    """The whistleblower asks for a physical meeting or a call (art. 9(2)); the report is flagged
    with the kind and the day, which the caseworker sees. Asking again replaces the request."""
    if kind not in MEETING_KINDS:
        raise InvalidMeetingRequest(kind)
    day = today().isoformat()
    await store.update_report(access.report_id, meeting_request=kind, meeting_request_day=day,
                              last_activity_day=day)


async def post_whistleblower_message(
    *, store: Store, access: MailboxAccess, text: str, staged: StagedFiles, cleaned: CleanedUpload | None = None
) -> str:
    """A reply from the whistleblower, with files. It is activity, but it does not move the deletion
    day: retention counts from the report's closing (retention.py)."""
    async with owning(staged):
        await staged.settle()
        report = await store.report(access.report_id)
        message_id = new_id()
        day = today()
        message = Message(id=message_id, report_id=report.id, seq=0, author=Author.WHISTLEBLOWER, caseworker_id=None,
                          sealed_body=b"", sent_day=day.isoformat(), read=False)
        files = sealed_file_rows(staged, report_key=access.report_key, report_id=report.id, message_id=message_id,
                                 cleaned=cleaned, sender_key=access.sender_key)
        await store.add_message(message, files=files, seal_body=message_sealer(
            text, report_key=access.report_key, report_id=report.id, message_id=message_id,
            author=Author.WHISTLEBLOWER),
            activity={"last_activity_day": day.isoformat()})
        staged.promote()
    return message_id


async def open_download(*, store: Store, blobs: BlobStore, access: MailboxAccess, file_id: str) -> Download:
    """A file a caseworker sent, ready to stream. NotFound for any other file, even one of this
    report: someone who gets hold of a receipt code can read the conversation, but cannot pull
    the original documents. FileUnreadable (reports.py) when its row does not open."""
    stored = await store.file(report_id=access.report_id, file_id=file_id)
    authors = {m.id: m.author for m in await store.messages(access.report_id)}
    if stored.message_id is None or authors.get(stored.message_id) != "caseworker":
        raise NotFound("file")
    return stored_download(blobs, stored, report_key=access.report_key)
