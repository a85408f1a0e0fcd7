"""What a whistleblower can do: hand in a report, and use the mailbox behind a receipt code.

These are plain async functions over a Store; the web views only parse forms and render pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass

from dropbox.blobs import StagedFiles, new_id
from dropbox.install import Install, today
from dropbox.kdf_pool import KdfPool
from dropbox.reports import (
    FileView,
    MessageView,
    ReportBody,
    message_sealer,
    open_body,
    seal_body,
    sealed_file_rows,
    thread,
)
from dropbox.sealing import (
    InvalidSecret,
    ReceiptCode,
    ReceiptKeys,
    ReportKeys,
    TamperedData,
    derive_receipt_keys,
    new_receipt,
    parse_receipt,
    unwrap_for_whistleblower,
    wrap_for_whistleblower,
)
from dropbox.storage import Conflict, Message, NotFound, Report, Store

log = logging.getLogger(__name__)


class SubmissionError(Exception):
    """Root of the errors a whistleblower's action can end in."""


class NoRecipients(SubmissionError):
    """The channel has no active caseworker, so nobody could ever read a report: refuse it."""


class UnknownChannel(SubmissionError):
    """The form named a channel that does not exist."""


class WrongReceipt(SubmissionError):
    """The receipt code is malformed or opens no report. Deliberately one error for both."""


@dataclass
class MailboxAccess:
    """What a logged-in whistleblower's session holds: which report, and its report key."""

    report_id: str
    report_key: bytes

    def wipe(self) -> None:
        self.report_key = b""


@dataclass(frozen=True)
class MailboxView:
    body: ReportBody
    channel_name: str
    status: str
    received_day: str
    previous_visit_day: str | None
    files: list[FileView]
    messages: list[MessageView]


def expiry(day: dt.date, retention_days: int) -> str:
    return (day + dt.timedelta(days=retention_days)).isoformat()


DrawnReceipt = tuple[ReceiptCode, ReceiptKeys]


async def draw_receipt(*, kdf: KdfPool, install: Install) -> DrawnReceipt:
    """A fresh receipt and its derived keys. Web views start this while the upload still streams,
    so the Argon2id run (~0.5 s) overlaps the transfer instead of following it."""
    code = new_receipt()
    return code, await kdf.run(derive_receipt_keys, code, kdf=install.receipt_kdf)


async def submit_report(
    *,
    store: Store,
    kdf: KdfPool,
    install: Install,
    channel_id: str,
    body: ReportBody,
    keys: ReportKeys,
    staged: StagedFiles,
    drawn: DrawnReceipt | None = None,
) -> ReceiptCode:
    """Seal and store a report with its staged files; the receipt is returned only once it is durable.

    `drawn` is a receipt from draw_receipt() to use first. On any failure the staged files are
    discarded and no row remains.
    """
    try:
        try:
            channel = await store.channel(channel_id)
        except NotFound as e:
            raise UnknownChannel(channel_id) from e
        members = await store.channel_members(channel.id)
        if not members:
            raise NoRecipients(channel.id)
        await staged.settle()
        report_id = new_id()
        day = today()
        report = Report(
            id=report_id, channel_id=channel.id, status="new", received_day=day.isoformat(),
            last_activity_day=day.isoformat(), retention_days=channel.retention_days,
            expires_day=expiry(day, channel.retention_days), acknowledged_day=None, feedback_day=None,
            whistleblower_seen_day=None, whistleblower_key=b"",
            sealed_body=seal_body(body, report_key=keys.report_key, report_id=report_id),
        )
        files = sealed_file_rows(staged, report_key=keys.report_key, report_id=report_id, message_id=None)
        grants = {cw.id: keys.seal_for(cw.public_key) for cw in members}
        for _attempt in range(3):  # a lookup-id clash needs two equal 53-bit receipts; retry anyway
            receipt, receipt_keys = drawn or await draw_receipt(kdf=kdf, install=install)
            drawn = None
            wrapped = wrap_for_whistleblower(keys, receipt_keys=receipt_keys, report_id=report_id)
            try:
                await store.insert_report(
                    dataclasses.replace(report, whistleblower_key=wrapped), lookup_id=receipt_keys.lookup_id,
                    grants=grants, files=files,
                )
                break
            except Conflict:
                continue
        else:
            raise SubmissionError("could not allocate a unique receipt")
    except BaseException:
        await staged.discard()
        raise
    staged.promote()
    return receipt


async def open_mailbox(*, store: Store, kdf: KdfPool, install: Install, receipt_text: str) -> MailboxAccess:
    """Receipt login: one Argon2id run. Any failure is WrongReceipt, whatever the cause."""
    try:
        code = parse_receipt(receipt_text)
    except InvalidSecret as e:
        raise WrongReceipt() from e
    receipt_keys = await kdf.run(derive_receipt_keys, code, kdf=install.receipt_kdf)
    try:
        report = await store.report_by_lookup(receipt_keys.lookup_id)
        report_key = unwrap_for_whistleblower(report.whistleblower_key, receipt_keys=receipt_keys,
                                              report_id=report.id)
    except (NotFound, TamperedData) as e:
        raise WrongReceipt() from e
    return MailboxAccess(report_id=report.id, report_key=report_key)


async def read_mailbox(*, store: Store, access: MailboxAccess, record_visit: bool) -> MailboxView:
    """Everything the whistleblower may see. `record_visit` stamps today's day as last seen,
    and returns the day stamped before it, so the person can tell whether someone else used their code."""
    report = await store.report(access.report_id)
    body = open_body(report.sealed_body, report_key=access.report_key, report_id=report.id)
    files, messages = await thread(store, report_id=report.id, report_key=access.report_key)
    channel = await store.channel(report.channel_id)
    if record_visit:
        await store.update_report(report.id, whistleblower_seen_day=today().isoformat())
        await store.mark_read(report.id, author="caseworker")
    return MailboxView(body=body, channel_name=channel.name, status=report.status,
                       received_day=report.received_day, previous_visit_day=report.whistleblower_seen_day,
                       files=files, messages=messages)


async def post_whistleblower_message(
    *, store: Store, access: MailboxAccess, text: str, staged: StagedFiles
) -> str:
    """A reply from the whistleblower, with files; extends the report's retention."""
    try:
        await staged.settle()
        report = await store.report(access.report_id)
        message_id = new_id()
        day = today()
        message = Message(id=message_id, report_id=report.id, seq=0, author="whistleblower", caseworker_id=None,
                          sealed_body=b"", sent_day=day.isoformat(), read=False)
        files = sealed_file_rows(staged, report_key=access.report_key, report_id=report.id, message_id=message_id)
        await store.add_message(message, files=files, seal_body=message_sealer(
            text, report_key=access.report_key, report_id=report.id, message_id=message_id, author="whistleblower"),
            activity={"last_activity_day": day.isoformat(), "expires_day": expiry(day, report.retention_days)})
    except BaseException:
        await staged.discard()
        raise
    staged.promote()
    return message_id
