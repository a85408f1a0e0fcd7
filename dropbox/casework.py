"""What a logged-in caseworker does with reports: list, read, answer, note, triage, hand over, delete.

Plain async functions over a Store, testable without HTTP; the caseworker views only parse forms
and render pages. Every function that touches a report first opens the caseworker's grant for it:
a report that does not exist and one that was not granted both end in `NotGranted`, so neither
the admin role nor a colleague can tell them apart, let alone read either.

Deadlines follow the EU Whistleblower Directive (dropbox/deadlines.py). A caseworker's own account
(signing in, passphrase, two-step login) is dropbox/account_actions.py.

Every action writes an audit entry (dropbox/audit.py): who (caseworker id), what, which report, to the hour. Never
content, file names or addresses; `detail` holds only values this module chose (a status, a
number of days, a colleague's id).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass

from dropbox import accounts, audit, retention, statistics
from dropbox.accounts import CaseworkerSession, KeyUnavailable, key_usable
from dropbox.audit import AuditAction
from dropbox.blobs import BlobStore, StagedFiles
from dropbox.channels import questions_of
from dropbox.cleaning import Cleaner, Policy, clean_upload
from dropbox.deadlines import Deadlines, ack_cut, deadlines, feedback_cut
from dropbox.ids import new_id, today
from dropbox.questions import Question
from dropbox.reports import (
    STATUSES,
    Damaged,
    Download,
    FileView,
    MessageView,
    Part,
    PartReader,
    ReportBody,
    message_sealer,
    open_note,
    open_reason,
    owning,
    read_body,
    seal_note,
    seal_reason,
    sealed_file_rows,
    stored_download,
    thread,
)
from dropbox.retention import forget_deleted
from dropbox.sealing import ReportKeys, TamperedData
from dropbox.storage import (
    AuditEntry,
    Author,
    Caseworker,
    Channel,
    Message,
    Note,
    NotFound,
    Reason,
    Report,
    ReportSummary,
    Status,
    Store,
)

log = logging.getLogger(__name__)

#: Longest retention a caseworker may set on one report (ten years; a country profile may cap it lower).
MAX_RETENTION_DAYS = 3650
PAGE_SIZE = 50
#: Statuses a caseworker may set; "new" is only ever the state of a report nobody has opened, and
#: "closed" is reached only through `close_report`, which needs an outcome category.
SETTABLE_STATUSES = tuple(s for s in Status if s not in (Status.NEW, Status.CLOSED))
SORTS = ("newest", "oldest", "urgent")


class CaseworkError(Exception):
    """Root of the errors a caseworker's action can end in."""


class NotGranted(CaseworkError):
    """No such report, or one this caseworker was not granted: never told apart."""


class EmptyText(CaseworkError):
    """A reply without text or files, or an empty note."""


class InvalidChoice(CaseworkError):
    """A status, deadline, retention or sort that is not one of the allowed values."""


class UnknownColleague(CaseworkError):
    """The caseworker to grant a report to does not exist or is disabled."""


class ReportUnreadable(CaseworkError):
    """The report's keys, sealed to this caseworker, do not open: the grant row is damaged or was
    tampered with, so nothing of the report can be opened by them (a colleague's may still be)."""


async def _audit(store: Store, actor: CaseworkerSession, action: AuditAction, report_id: str | None = None,
                 detail: str = "") -> None:
    await audit.record(store, actor_id=actor.caseworker.id, action=action, report_id=report_id, detail=detail)


async def _keys(store: Store, session: CaseworkerSession, report_id: str) -> ReportKeys:
    if not key_usable(session):
        raise KeyUnavailable()
    try:
        return await accounts.report_keys(store=store, session=session, report_id=report_id)
    except NotFound as e:
        raise NotGranted() from e
    except TamperedData as e:
        log.error("the sealed keys of report %s did not open: its stored grant is damaged", report_id)
        raise ReportUnreadable() from e


async def _report(store: Store, report_id: str) -> Report:
    try:
        return await store.report(report_id)
    except NotFound as e:  # deleted by a colleague since the grant was read
        raise NotGranted() from e


async def check_access(*, store: Store, session: CaseworkerSession, report_id: str) -> None:
    """NotGranted unless this caseworker can open the report (before reading an upload for it)."""
    await _keys(store, session, report_id)


# --- the list ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFilter:
    status: str | None = None
    channel_id: str | None = None
    overdue_only: bool = False
    sort: str = "newest"
    page: int = 1


@dataclass(frozen=True)
class ListedReport:
    summary: ReportSummary
    deadlines: Deadlines
    #: Closed, not held, and deleted within retention.DUE_SOON_DAYS.
    deletion_due: bool


@dataclass(frozen=True)
class ReportPage:
    rows: list[ListedReport]
    total: int
    page: int
    pages: int
    ack_overdue: int
    feedback_overdue: int
    #: Of all the caseworker's reports, how many are deleted within retention.DUE_SOON_DAYS.
    deletion_due: int


async def list_reports(*, store: Store, session: CaseworkerSession, filters: ReportFilter,
                       on: dt.date | None = None, page_size: int = PAGE_SIZE) -> ReportPage:
    """One page of the caseworker's reports. Reads only plaintext columns: no key is used."""
    if filters.status is not None and filters.status not in STATUSES or filters.sort not in SORTS:
        raise InvalidChoice()
    day = on or today()
    cuts = {"ack_cut": ack_cut(day).isoformat(), "feedback_cut": feedback_cut(day).isoformat(),
            "extended_cut": feedback_cut(day, extended=True).isoformat(),
            "deletion_cut": retention.deletion_cut(day)}
    page = max(1, filters.page)
    summaries, total, ack_overdue, feedback_overdue, deletion_due = await store.caseworker_report_page(
        caseworker_id=session.caseworker.id, status=filters.status, channel_id=filters.channel_id,
        overdue_only=filters.overdue_only, sort=filters.sort, limit=page_size, offset=(page - 1) * page_size,
        **cuts,
    )
    rows = [ListedReport(summary=s, deadlines=deadlines(received=s.received_day, acknowledged=s.acknowledged_day,
                                                        feedback=s.feedback_day, status=s.status, on=day,
                                                        no_ack=s.no_ack_day is not None,
                                                        extended=s.extended_day is not None),
                        deletion_due=retention.due_soon(s.status, s.legal_hold, s.expires_day, on=day))
            for s in summaries]
    return ReportPage(rows=rows, total=total, page=page, pages=max(1, -(-total // page_size)),
                      ack_overdue=ack_overdue, feedback_overdue=feedback_overdue, deletion_due=deletion_due)


# --- reading a report --------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteView:
    id: str
    author_id: str | None
    text: str | Damaged
    day: str


@dataclass(frozen=True)
class ReasonView:
    kind: str
    author_id: str | None
    day: str
    text: str | Damaged


@dataclass(frozen=True)
class Answer:
    """An answer and the question it was given to (None if the channel no longer asks it)."""

    question_id: str
    question: Question | None
    answer: str

    def label(self, lang: str, default_lang: str) -> str:
        return self.question.label(lang, default_lang) if self.question else self.question_id


@dataclass(frozen=True)
class CaseView:
    """Everything the report page shows, decrypted: each sealed part opened on its own, and one
    that does not open is a `Damaged` in its place (`damaged` lists them all)."""

    report: Report
    channel: Channel
    body: ReportBody | Damaged
    answers: list[Answer]
    files: list[FileView | Damaged]
    messages: list[MessageView]
    #: message id -> the caseworker who wrote it (None for the whistleblower's, or a removed account)
    message_authors: dict[str, str | None]
    notes: list[NoteView]
    deadlines: Deadlines
    #: Reasons recorded for no acknowledgement or an extension, opened with the staff key.
    reasons: list[ReasonView]
    granted: list[Caseworker]
    #: Active caseworkers not yet granted: whom the report can be handed to.
    colleagues: list[Caseworker]
    history: list[AuditEntry]
    damaged: list[Damaged]


async def read_report(*, store: Store, session: CaseworkerSession, report_id: str,
                      on: dt.date | None = None) -> CaseView:
    """Open a report, its deadlines counted on the day `on` (today unless given). Side effects: a
    new report becomes "opened", the whistleblower's messages count as read, and the view is
    audited (once per hour and caseworker).

    A sealed row that does not open (damaged on disk, or tampered with) costs only itself: it is
    a `Damaged` in the view and one ERROR line (reports.PartReader); everything else is shown.
    Only keys that do not open make the whole report unreadable (ReportUnreadable)."""
    keys = await _keys(store, session, report_id)
    report = await _report(store, report_id)
    reader = PartReader(report.id)
    body = read_body(report, reader=reader, report_key=keys.report_key)
    files, messages = await thread(store, report_id=report.id, report_key=keys.report_key, reader=reader)
    notes = [NoteView(id=n.id, author_id=n.caseworker_id, day=n.written_day,
                      text=reader.open(Part.NOTE, number, n.written_day,
                                       functools.partial(open_note, n, staff_key=keys.staff_key)))
             for number, n in enumerate(await store.notes(report.id), start=1)]
    channel = await store.channel(report.channel_id)
    if await store.advance_status(report.id, to=Status.OPENED, only_from=(Status.NEW,)):
        await _audit(store, session, AuditAction.STATUS_CHANGED, report.id, Status.OPENED)
        report = await store.report(report.id)
    # Read means read: a message whose text did not open stays unread (and keeps its badge).
    unread = [m.id for m in messages
              if m.author == Author.WHISTLEBLOWER and not m.read and not isinstance(m.text, Damaged)]
    if unread:
        await store.mark_messages_read(report.id, unread)
    await audit.record_once(store, actor_id=session.caseworker.id, action=AuditAction.VIEWED, report_id=report.id)

    granted_ids = set(await store.granted_caseworkers(report.id))
    everyone = await store.caseworkers()
    return CaseView(
        report=report, channel=channel, body=body, answers=_answers(channel, body), files=files,
        messages=messages, message_authors={m.id: m.caseworker_id for m in await store.messages(report.id)},
        notes=notes,
        deadlines=deadlines(received=report.received_day, acknowledged=report.acknowledged_day,
                            feedback=report.feedback_day, status=report.status, on=on or today(),
                            no_ack=report.no_ack_day is not None, extended=report.extended_day is not None),
        reasons=[ReasonView(kind=r.kind, author_id=r.caseworker_id, day=r.written_day,
                            text=reader.open(Part.REASON, number, r.written_day,
                                             functools.partial(open_reason, r, staff_key=keys.staff_key)))
                 for number, r in enumerate(await store.reasons(report.id), start=1)],
        granted=[c for c in everyone if c.id in granted_ids],
        colleagues=[c for c in everyone if c.id not in granted_ids and not c.disabled],
        history=await store.report_audit(report.id),
        damaged=reader.damaged,
    )


def _answers(channel: Channel, body: ReportBody | Damaged) -> list[Answer]:
    """In the order of the channel's questions, then answers to questions it no longer asks
    (none when the report's own text is damaged: the page says so in their place)."""
    if isinstance(body, Damaged):
        return []
    questions = {q.id: q for q in questions_of(channel)}
    ordered = [Answer(qid, q, body.answers[qid]) for qid, q in questions.items() if body.answers.get(qid)]
    rest = [Answer(qid, None, text) for qid, text in body.answers.items() if qid not in questions and text]
    return ordered + rest


# --- files -------------------------------------------------------------------------------------


async def open_download(*, store: Store, blobs: BlobStore, session: CaseworkerSession, report_id: str,
                        file_id: str, original: bool = False) -> Download:
    """A file of a granted report; NotGranted for a file of any other report, even a real one.

    An original kept as evidence (see cleaning.Policy.KEEP_ORIGINAL) opens only with `original`,
    which is audited as its own action; `original` on any other file is NotGranted too."""
    keys = await _keys(store, session, report_id)
    try:
        stored = await store.file(report_id=report_id, file_id=file_id)
    except NotFound as e:
        raise NotGranted() from e
    if bool(stored.original_of) != original:
        raise NotGranted()
    download = stored_download(blobs, stored, report_key=keys.report_key)
    await _audit(store, session, AuditAction.ORIGINAL_OPENED if original else AuditAction.FILE_DOWNLOADED, report_id)
    return download


# --- writing -----------------------------------------------------------------------------------


def _activity(day: dt.date) -> dict[str, str]:
    """A caseworker's action is activity. It no longer moves the deletion day: retention counts
    from closing (retention.py), so activity neither deletes an open case nor keeps a closed one."""
    return {"last_activity_day": day.isoformat()}


async def post_reply(*, store: Store, session: CaseworkerSession, report_id: str, text: str,
                     staged: StagedFiles, gives_feedback: bool = False, cleaner: Cleaner | None = None) -> str:
    """A reply to the whistleblower, with files. The first reply records the acknowledgement;
    `gives_feedback` records the feedback deadline as met. On any failure the files are discarded.

    With `cleaner`, the files are cleaned first, always with the policy *remove*: a caseworker's
    name in a reply's PDF identifies them to whoever reads the mailbox."""
    async with owning(staged):
        keys = await _keys(store, session, report_id)
        text = text.strip()
        if not text and not staged.files:
            raise EmptyText()
        cleaned = None if cleaner is None else await clean_upload(cleaner=cleaner, staged=staged,
                                                                   policy=Policy.REMOVE, wanted=True)
        await staged.settle()
        report = await _report(store, report_id)
        message_id = new_id()
        day = today()
        message = Message(id=message_id, report_id=report.id, seq=0, author=Author.CASEWORKER,
                          caseworker_id=session.caseworker.id, sealed_body=b"", sent_day=day.isoformat(), read=False)
        activity = _activity(day)
        if report.acknowledged_day is None:
            activity["acknowledged_day"] = day.isoformat()
        if gives_feedback and report.feedback_day is None:
            activity["feedback_day"] = day.isoformat()
        files = sealed_file_rows(staged, report_key=keys.report_key, report_id=report.id, message_id=message_id,
                                 cleaned=cleaned)
        await store.add_message(message, files=files, activity=activity, seal_body=message_sealer(
            text, report_key=keys.report_key, report_id=report.id, message_id=message_id, author=Author.CASEWORKER))
        staged.promote()
    await _audit(store, session, AuditAction.REPLIED, report.id)
    if "acknowledged_day" in activity:
        await _audit(store, session, AuditAction.ACKNOWLEDGED, report.id)
    if "feedback_day" in activity:
        await _audit(store, session, AuditAction.FEEDBACK_GIVEN, report.id)
    if await store.advance_status(report.id, to=Status.IN_PROGRESS, only_from=(Status.NEW, Status.OPENED)):
        await _audit(store, session, AuditAction.STATUS_CHANGED, report.id, Status.IN_PROGRESS)
    return message_id


async def add_note(*, store: Store, session: CaseworkerSession, report_id: str, text: str) -> str:
    """An internal note, sealed under the staff key: the whistleblower's receipt never opens it."""
    keys = await _keys(store, session, report_id)
    text = text.strip()
    if not text:
        raise EmptyText()
    report = await _report(store, report_id)
    note_id = new_id()
    day = today()
    await store.add_note(Note(id=note_id, report_id=report.id, seq=0, caseworker_id=session.caseworker.id,
                              sealed_body=seal_note(text, staff_key=keys.staff_key, report_id=report.id,
                                                    note_id=note_id, caseworker_id=session.caseworker.id),
                              written_day=day.isoformat()))
    await store.update_report(report.id, **_activity(day))
    await _audit(store, session, AuditAction.NOTE_ADDED, report.id)
    return note_id


async def set_status(*, store: Store, session: CaseworkerSession, report_id: str, status: str) -> bool:
    """Move a report to opened or in progress (reopening a closed one stops its deletion clock).
    True if it changed. Closing is `close_report`."""
    await _keys(store, session, report_id)
    if status not in SETTABLE_STATUSES:
        raise InvalidChoice()
    report = await _report(store, report_id)
    if report.status == status:
        return False
    day = today()
    clock = retention.on_reopen() if report.status == Status.CLOSED else {}
    await store.update_report(report.id, status=status, **_activity(day), **clock)
    await _audit(store, session, AuditAction.STATUS_CHANGED, report.id, status)
    return True


DEADLINE_FIELDS = {"acknowledgement": ("acknowledged_day", AuditAction.ACKNOWLEDGED),
                   "feedback": ("feedback_day", AuditAction.FEEDBACK_GIVEN)}


async def close_report(*, store: Store, session: CaseworkerSession, report_id: str, outcome: str,
                       categories: list[str], message: str = "",
                       max_retention_days: int = MAX_RETENTION_DAYS) -> bool:
    """Close a report with an outcome category (one of `categories`; InvalidChoice otherwise) and,
    if `message` is not blank, a closing message to the whistleblower's mailbox (art. 11(2)(e):
    the final outcome), sealed under the report key like every reply and written in the same
    transaction as the closing. The deletion clock starts (retention.py). False if already closed."""
    keys = await _keys(store, session, report_id)
    if outcome not in categories:
        raise InvalidChoice()
    report = await _report(store, report_id)
    if report.status == Status.CLOSED:
        return False
    day = today()
    closing: dict[str, str | None] = {"status": Status.CLOSED, "outcome": outcome, **_activity(day),
                                      **retention.on_close(report, day, max_days=max_retention_days)}
    text = message.strip()
    if text:
        message_id = new_id()
        if report.acknowledged_day is None:
            closing["acknowledged_day"] = day.isoformat()
        if report.feedback_day is None:
            closing["feedback_day"] = day.isoformat()
        await store.add_message(
            Message(id=message_id, report_id=report.id, seq=0, author=Author.CASEWORKER,
                    caseworker_id=session.caseworker.id, sealed_body=b"", sent_day=day.isoformat(), read=False),
            activity=closing, seal_body=message_sealer(text, report_key=keys.report_key, report_id=report.id,
                                                       message_id=message_id, author=Author.CASEWORKER))
    else:
        await store.update_report(report.id, **closing)
    await _audit(store, session, AuditAction.CLOSED, report.id)
    if text:
        await _audit(store, session, AuditAction.REPLIED, report.id)
    if "acknowledged_day" in closing:
        await _audit(store, session, AuditAction.ACKNOWLEDGED, report.id)
    if "feedback_day" in closing:
        await _audit(store, session, AuditAction.FEEDBACK_GIVEN, report.id)
    return True


async def send_disclosure_notice(*, store: Store, session: CaseworkerSession, report_id: str, text: str) -> str:
    """The written notice to the reporter before their identity is disclosed (art. 16(3); DK § 26):
    it goes to the mailbox as a message sealed under the report key, in the same transaction that
    records the day on the report. Returns the message id."""
    keys = await _keys(store, session, report_id)
    text = text.strip()
    if not text:
        raise EmptyText()
    report = await _report(store, report_id)
    message_id = new_id()
    day = today()
    await store.add_message(
        Message(id=message_id, report_id=report.id, seq=0, author=Author.CASEWORKER,
                caseworker_id=session.caseworker.id, sealed_body=b"", sent_day=day.isoformat(), read=False),
        activity={"disclosure_notice_day": day.isoformat(), **_activity(day)},
        seal_body=message_sealer(text, report_key=keys.report_key, report_id=report.id, message_id=message_id,
                                 author=Author.CASEWORKER))
    await _audit(store, session, AuditAction.DISCLOSURE_NOTICE_SENT, report.id)
    return message_id


#: Longest reason accepted (a paragraph or two; it is shown on the report page).
MAX_REASON_CHARS = 4000
REASON_KINDS = {"no_acknowledgement": AuditAction.NO_ACK_RECORDED, "extension": AuditAction.FEEDBACK_EXTENDED}


async def record_reason(*, store: Store, session: CaseworkerSession, report_id: str, kind: str, text: str) -> bool:
    """Record, with a written reason sealed under the staff key, that no acknowledgement is sent
    (art. 9(1)(b); SE: where it would reveal the reporter or they declined; the 7-day alarm stops)
    or that the feedback deadline is extended to 6 months (art. 11(2)(d), "duly justified cases").
    Once per kind: False if already recorded, or if the acknowledgement or feedback was already
    given. The reason shows on the report page; the audit log records that it was given."""
    keys = await _keys(store, session, report_id)
    if kind not in REASON_KINDS:
        raise InvalidChoice()
    text = text.strip()
    if not text:
        raise EmptyText()
    report = await _report(store, report_id)
    if (report.acknowledged_day if kind == "no_acknowledgement" else report.feedback_day) is not None:
        return False
    reason_id = new_id()
    recorded = await store.add_reason(Reason(
        id=reason_id, report_id=report.id, kind=kind, caseworker_id=session.caseworker.id,
        sealed_body=seal_reason(text, staff_key=keys.staff_key, report_id=report.id, reason_id=reason_id, kind=kind,
                                caseworker_id=session.caseworker.id),
        written_day=today().isoformat()))
    if recorded:
        await _audit(store, session, REASON_KINDS[kind], report.id)
    return recorded


async def record_deadline(*, store: Store, session: CaseworkerSession, report_id: str, which: str) -> bool:
    """Record that the acknowledgement or feedback was given (e.g. by phone). True if recorded now."""
    await _keys(store, session, report_id)
    if which not in DEADLINE_FIELDS:
        raise InvalidChoice()
    field, action = DEADLINE_FIELDS[which]
    recorded = await store.set_day_once(report_id, field=field, day=today().isoformat())
    if recorded:
        await _audit(store, session, action, report_id)
    return recorded


async def grant(*, store: Store, session: CaseworkerSession, report_id: str, grantee_id: str) -> bool:
    """Seal the report's keys to a colleague. True if they did not have it already."""
    await _keys(store, session, report_id)
    try:
        grantee = await store.caseworker(grantee_id)
    except NotFound as e:
        raise UnknownColleague() from e
    if grantee.disabled:
        raise UnknownColleague()
    added = await accounts.grant_report(store=store, granter=session, report_id=report_id, grantee_id=grantee.id)
    if added:
        await _audit(store, session, AuditAction.GRANTED, report_id, grantee.id)
    return added


async def set_retention(*, store: Store, session: CaseworkerSession, report_id: str, days: int,
                        max_retention_days: int = MAX_RETENTION_DAYS) -> str | None:
    """Keep the report `days` after it is closed (at most the country profile's cap). Returns the
    deletion day of a closed report, None for an open one (it is kept while open).

    A shorter period may put a closed report's deletion day in the past; the next purge deletes it.
    """
    await _keys(store, session, report_id)
    if not 1 <= days <= min(MAX_RETENTION_DAYS, max_retention_days):
        raise InvalidChoice()
    report = await _report(store, report_id)
    changes: dict[str, str | int | None] = {"retention_days": days, **_activity(today())}
    expires = None
    if report.status == Status.CLOSED and report.closed_day:
        expires = retention.deletion_day(dt.date.fromisoformat(report.closed_day), days, max_days=max_retention_days)
        changes["expires_day"] = expires
    await store.update_report(report_id, **changes)
    await _audit(store, session, AuditAction.RETENTION_CHANGED, report_id, str(days))
    return expires


async def set_legal_hold(*, store: Store, session: CaseworkerSession, report_id: str, hold: bool) -> bool:
    """Put a legal hold on a report (no automatic deletion, whatever its state) or lift it.
    True if it changed. A caseworker can still delete a held report by hand, deliberately."""
    await _keys(store, session, report_id)
    report = await _report(store, report_id)
    if report.legal_hold == hold:
        return False
    await store.update_report(report_id, legal_hold=int(hold))
    await _audit(store, session, AuditAction.LEGAL_HOLD_SET if hold else AuditAction.LEGAL_HOLD_LIFTED, report_id)
    return True


async def delete_report(*, store: Store, session: CaseworkerSession, report_id: str) -> None:
    """Delete the report: every row under it (messages, notes, files and their contents, grants),
    then checkpoint and truncate the WAL so the deleted pages' old images go too."""
    await _keys(store, session, report_id)
    try:
        await store.delete_report(report_id, record=statistics.recorder())
    except NotFound as e:  # a colleague deleted it a moment ago
        raise NotGranted() from e
    await _audit(store, session, AuditAction.DELETED, report_id)
    await forget_deleted(store)
