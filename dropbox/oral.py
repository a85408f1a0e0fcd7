"""Oral reports: a call, a voice message or a meeting, registered by a caseworker, and minutes the
reporter checks, corrects and approves in the mailbox (Directive 2019/1937 art. 9(2), 18(2)-(4),
and the Danish and Swedish acts' rules on oral reporting; docs/LEGAL.md).

A caseworker registers the report with its minutes (or transcript) and, if the reporter consented
to it, the recording as a file. That makes an ordinary report, granted to the channel's members,
with a receipt code drawn at the same cost and in the same format as a web receipt: the caseworker
hands it over in person, and it is shown once and stored nowhere readable. The minutes are
versions, each sealed under the report key so the reporter reads them in the mailbox. The reporter
proposes corrections (a message of theirs, marked with the version it corrects) and approves a
version ("I have checked these minutes and agree"), recorded with the day only and never changed
afterwards; a caseworker's corrected version needs a new approval.

The approval's audit entry is not written when the reporter approves: its hour and its place in
the log would date what a whistleblower did finer than a day. It is written at the next view of
the report by a caseworker, so it dates only that view (Store.audit_approvals).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from dropbox import accounts, audit, casework, ids
from dropbox.accounts import CaseworkerSession
from dropbox.audit import AuditAction
from dropbox.blobs import StagedFiles
from dropbox.ids import new_id, today
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.reports import Damaged, Part, PartReader, ReportBody, message_sealer
from dropbox.sealing import ReceiptCode, ReportKeys, format_receipt, open_sealed, seal
from dropbox.storage import Conflict, Message, MinutesVersion, NewFile, NotFound, OralRecord, Report, Store
from dropbox.submissions import MailboxAccess, submit_report

#: How the report was made: art. 18(2) a recorded line or voice message system, (3) an
#: unrecorded phone line, (4) a meeting in person.
MEDIA = ("phone", "voice_message", "meeting")

#: Earliest consent day accepted (anything before is a typing error).
FIRST_DAY = dt.date(2000, 1, 1)


class OralError(Exception):
    """Root of the errors of oral reports."""


class InvalidRegistration(OralError):
    """A medium, channel or consent day that is not one of the allowed values."""


class RecordingWithoutConsent(InvalidRegistration):
    """A recording was attached, but the reporter's consent to it was not recorded as given."""


class EmptyText(OralError):
    """Minutes or a correction without any text."""


class NotOral(OralError):
    """The report was handed in on the web: it has no minutes."""


class VersionClosed(OralError):
    """The version was approved already, or a newer one replaced it: nothing may change it now."""


class VersionDamaged(OralError):
    """The version's sealed text does not open (damaged on disk, or tampered with): it cannot be approved."""


def _context(report_id: str, version: int) -> str:
    return f"oral-minutes/1:{report_id}:{version}"


def seal_minutes(text: str, *, report_key: bytes, report_id: str, version: int) -> bytes:
    """Minutes under the report key (the reporter must read them), bound to the report and the
    version, so no version's text can be moved to another report or passed off as another version."""
    return seal(text.encode(), key=report_key, context=_context(report_id, version))


def open_minutes(v: MinutesVersion, *, report_key: bytes) -> str:
    return open_sealed(v.sealed_text, key=report_key, context=_context(v.report_id, v.version)).decode()


def consent_day(text: str, *, on: dt.date | None = None) -> dt.date:
    """The day the reporter answered the question about a recording (YYYY-MM-DD, not in the future)."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError as e:
        raise InvalidRegistration("consent day") from e
    if not FIRST_DAY <= day <= (on or today()):
        raise InvalidRegistration("consent day")
    return day


@dataclass(frozen=True)
class Registration:
    """What the caseworker's form says about an oral report."""

    channel_id: str
    medium: str
    minutes: str
    recording_consent: bool
    consent_day: dt.date


@dataclass(frozen=True)
class Registered:
    """The new report, and its receipt for the caseworker to hand over in person."""

    report_id: str
    #: Shown once, on the page the caseworker prints or copies for the reporter; never stored.
    receipt: ReceiptCode

    @property
    def grouped(self) -> str:
        """The code in groups of four, as a web receipt is shown."""
        return format_receipt(self.receipt)


async def register(*, store: Store, kdf: KdfPool, install: Install, session: CaseworkerSession,
                   registration: Registration, staged: StagedFiles) -> Registered:
    """Make the report, its oral record and version 1 of its minutes in one transaction, and the
    receipt the reporter will log in with. Only into a channel the caseworker is a member of.
    The staged files (the recording) are discarded on any failure, as for a web report."""
    try:
        if not accounts.key_usable(session):
            raise accounts.KeyUnavailable()
        minutes = registration.minutes.strip()
        if registration.medium not in MEDIA:
            raise InvalidRegistration("medium")
        if not minutes:
            raise EmptyText()
        if staged.files and not registration.recording_consent:
            raise RecordingWithoutConsent()
        members = await store.channel_members(registration.channel_id)
        if session.caseworker.id not in {cw.id for cw in members}:
            raise InvalidRegistration("channel")
    except BaseException:
        await staged.discard()
        raise
    keys = ReportKeys.generate()
    made: list[str] = []  # submit_report draws the report's id; its insert hands it back here

    async def insert(report: Report, *, locator: str, receipt_salt: bytes, grants: dict[str, bytes],
                     files: Sequence[NewFile]) -> None:
        await store.insert_oral_report(
            report, locator=locator, receipt_salt=receipt_salt, grants=grants, files=files,
            oral=OralRecord(report_id=report.id, medium=registration.medium,
                            recording_consent=registration.recording_consent,
                            consent_day=registration.consent_day.isoformat(), caseworker_id=session.caseworker.id),
            seal_minutes=lambda version: seal_minutes(minutes, report_key=keys.report_key, report_id=report.id,
                                                      version=version),
            caseworker_id=session.caseworker.id)
        made.append(report.id)

    # The caseworkers' own KDF pool: a flood on the public side does not hold up a registration.
    receipt = await submit_report(store=store, kdf=kdf, install=install, channel_id=registration.channel_id,
                                  body=ReportBody(text="", answers={}), keys=keys, staged=staged, insert=insert)
    report_id = made[-1]
    await _audit(store, session, AuditAction.ORAL_REGISTERED, report_id, registration.medium)
    await _audit(store, session, AuditAction.MINUTES_PUBLISHED, report_id, "1")
    return Registered(report_id=report_id, receipt=receipt)


async def _audit(store: Store, session: CaseworkerSession, action: AuditAction, report_id: str, detail: str) -> None:
    """The audit entries of oral reports carry only the medium, or a version number (and a day)."""
    await audit.record(store, actor_id=session.caseworker.id, action=action, report_id=report_id, detail=detail)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionView:
    version: int
    #: Damaged when the sealed text did not open (never approvable then: see `approve`).
    text: str | Damaged
    written_day: str
    approved_day: str | None
    author_id: str | None


@dataclass(frozen=True)
class OralView:
    """An oral report's record and its minutes, opened; what both sides show."""

    record: OralRecord
    versions: list[VersionView]
    #: Message id -> the version of the minutes that message proposes to correct.
    corrections: dict[str, int]
    #: An approval without its audit entry yet (written at the next caseworker's view).
    unaudited: bool = False

    @property
    def latest(self) -> VersionView:
        return self.versions[-1]

    @property
    def approved(self) -> VersionView | None:
        """The newest approved version (an older approval stays recorded on its version)."""
        return next((v for v in reversed(self.versions) if v.approved_day), None)

    @property
    def open_version(self) -> int | None:
        """The version the reporter may still correct or approve: the latest, unless approved."""
        return None if self.latest.approved_day else self.latest.version


async def _view(store: Store, report_id: str, report_key: bytes, *, log_report_id: bool) -> OralView | None:
    """Each version opened on its own: one that does not open is a `Damaged` (reports.PartReader)."""
    try:
        record = await store.oral_record(report_id)
    except NotFound:
        return None
    stored = await store.minutes_versions(report_id)
    if not stored:
        return None
    reader = PartReader(report_id, log_report_id=log_report_id)
    versions = [VersionView(version=v.version, written_day=v.written_day, approved_day=v.approved_day,
                            author_id=v.caseworker_id,
                            text=reader.open(Part.MINUTES, v.version, v.written_day,
                                             functools.partial(open_minutes, v, report_key=report_key)))
                for v in stored]
    return OralView(record=record, versions=versions, corrections=await store.minutes_corrections(report_id),
                    unaudited=any(v.approved_day and not v.approval_audited for v in stored))


async def _staff_keys(store: Store, session: CaseworkerSession, report_id: str) -> ReportKeys:
    """The report's keys, with casework's NotGranted / KeyUnavailable for everything else."""
    await casework.check_access(store=store, session=session, report_id=report_id)
    return await accounts.report_keys(store=store, session=session, report_id=report_id)


async def for_caseworker(*, store: Store, session: CaseworkerSession, report_id: str) -> OralView | None:
    """The oral part of a granted report (None for a web report). Writes the audit entries of
    approvals made since the last view (see the module's docstring)."""
    keys = await _staff_keys(store, session, report_id)
    view = await _view(store, report_id, keys.report_key, log_report_id=True)
    if view is not None and view.unaudited:
        await store.audit_approvals(report_id, hour=ids.this_hour(), action=AuditAction.MINUTES_APPROVED)
    return view


async def for_reporter(*, store: Store, access: MailboxAccess) -> OralView | None:
    """The minutes as the reporter sees them (None for a web report). The log names no report:
    see reports.PartReader."""
    return await _view(store, access.report_id, access.report_key, log_report_id=False)


# --- writing ---------------------------------------------------------------------------------


async def publish_version(*, store: Store, session: CaseworkerSession, report_id: str, after: int,
                          text: str) -> int:
    """A corrected version of the minutes, after version `after` (VersionClosed if a colleague
    published another meanwhile, NotOral for a web report). It needs a new approval."""
    keys = await _staff_keys(store, session, report_id)
    text = text.strip()
    if not text:
        raise EmptyText()
    try:
        version = await store.add_minutes_version(
            report_id, after=after, caseworker_id=session.caseworker.id, day=today().isoformat(),
            seal_text=lambda v: seal_minutes(text, report_key=keys.report_key, report_id=report_id, version=v))
    except NotFound as e:
        raise NotOral() from e
    except Conflict as e:
        raise VersionClosed() from e
    await _audit(store, session, AuditAction.MINUTES_PUBLISHED, report_id, str(version))
    return version


async def approve(*, store: Store, access: MailboxAccess, version: int) -> None:
    """The reporter agrees to `version`, recorded with today's day, once: VersionClosed if it is
    approved already or no longer the latest; VersionDamaged if its text does not open (nobody
    may agree to minutes they could not read)."""
    view = await for_reporter(store=store, access=access)
    if view is not None and any(v.version == version and isinstance(v.text, Damaged) for v in view.versions):
        raise VersionDamaged()
    if not await store.approve_minutes(access.report_id, version=version, day=today().isoformat()):
        raise VersionClosed()


async def propose_correction(*, store: Store, access: MailboxAccess, version: int, text: str) -> str:
    """The reporter's correction of `version`, sent to the caseworkers like a message (sealed
    like one) and marked with the version. VersionClosed if the version is approved or replaced."""
    text = text.strip()
    if not text:
        raise EmptyText()
    message_id = new_id()
    message = Message(id=message_id, report_id=access.report_id, seq=0, author="whistleblower", caseworker_id=None,
                      sealed_body=b"", sent_day=today().isoformat(), read=False)
    stored = await store.add_minutes_correction(message, version=version, seal_body=message_sealer(
        text, report_key=access.report_key, report_id=access.report_id, message_id=message_id,
        author="whistleblower"))
    if not stored:
        raise VersionClosed()
    return message_id
