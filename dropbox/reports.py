"""The sealed parts of a report, as both sides read and write them.

Each sealed field is bound to its place (report, row id; for messages the author and sequence
number, for notes the author, for files the message and the padded size), so whoever edits the
database can delete rows but cannot move, swap, reorder or re-attribute what people wrote. This
module is the one place that names those contexts; submissions.py and casework.py use it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from dropbox.blobs import BlobStore, StagedFile, StagedFiles
from dropbox.cleaning import CleanedUpload, FileCleaning, findings_from_json
from dropbox.sealing import TamperedData, open_json, open_sealed, seal, seal_json
from dropbox.storage import Message, NewFile, Note, Reason, Report, Status, Store, StoredFile

log = logging.getLogger(__name__)

#: Every status, in the order a report moves through them.
STATUSES = tuple(Status)

T = TypeVar("T")


# --- damaged rows --------------------------------------------------------------------------------


class Part(StrEnum):
    """The kinds of sealed part a report is shown from, each opened on its own."""

    REPORT = "report text"  # what the whistleblower wrote when submitting: text, answers, contact
    MESSAGE = "message"  # a minutes correction is a message too
    NOTE = "note"
    REASON = "reason"
    MINUTES = "minutes"
    FILE = "file"  # its sealed name, size or cleaning record


@dataclass(frozen=True)
class Damaged:
    """In place of a sealed part that did not open (TamperedData: damaged on disk, or tampered
    with): which kind of part, its position among its kind (1 = the oldest; a version number for
    minutes) and its day where the row has one. Never any of its bytes. A page shows a line
    saying the part is damaged, so nothing is shown as if complete and nothing silently dropped."""

    part: Part
    position: int
    day: str | None = None


def intact(value: T | Damaged) -> T:
    """For what must be whole (a signed proof, an export): the value, or TamperedData."""
    if isinstance(value, Damaged):
        raise TamperedData(f"a {value.part} of the report is damaged")
    return value


@dataclass
class PartReader:
    """Opens a report's sealed rows one at a time for display, so one damaged row costs only
    itself: each that does not open becomes a `Damaged` and one ERROR line with its kind and,
    where `log_report_id`, the report's id (nothing of its content). `damaged` lists them all.

    The whistleblower side leaves the id out: its lines are counted into a daily tally
    (web/events.py), and a line naming the report would tie it to a mailbox visit on that day in
    a log that outlives the report's deletion. The caseworkers' page names it at their next view."""

    report_id: str
    log_report_id: bool = True
    damaged: list[Damaged] = field(default_factory=list)

    def open(self, part: Part, position: int, day: str | None, opener: Callable[[], T]) -> T | Damaged:
        try:
            return opener()
        except TamperedData:
            if self.log_report_id:
                log.error("a sealed %s of report %s did not open: its stored copy is damaged", part, self.report_id)
            else:
                log.error("a sealed %s of a report did not open: its stored copy is damaged", part)
            placeholder = Damaged(part=part, position=position, day=day)
            self.damaged.append(placeholder)
            return placeholder


@dataclass(frozen=True)
class ReportBody:
    """What the whistleblower wrote when submitting. Everything here is sealed."""

    text: str
    answers: dict[str, str]
    contact: str = ""

    def to_json(self) -> dict[str, object]:
        return {"text": self.text, "answers": self.answers, "contact": self.contact}

    @classmethod
    def from_json(cls, value: object) -> ReportBody:
        if not isinstance(value, dict):
            raise ValueError("report body is not an object")
        answers = value.get("answers") or {}
        return cls(text=str(value.get("text", "")), answers={str(k): str(v) for k, v in answers.items()},
                   contact=str(value.get("contact", "")))


@dataclass(frozen=True)
class FileView:
    id: str
    name: str
    size: int
    message_id: str | None
    #: What cleaning did (values only when opened with the whistleblower's own key); None before migration 6.
    cleaning: FileCleaning | None = None
    #: The id of the original kept as evidence, on the cleaned copy made from it.
    original_id: str | None = None


@dataclass(frozen=True)
class MessageView:
    id: str
    author: str
    #: Damaged when the sealed text did not open (its day, author and files are still shown).
    text: str | Damaged
    day: str
    read: bool
    files: list[FileView | Damaged]


def seal_body(body: ReportBody, *, report_key: bytes, report_id: str) -> bytes:
    return seal_json(body.to_json(), key=report_key, context=f"report-body:{report_id}")


def open_body(sealed: bytes, *, report_key: bytes, report_id: str) -> ReportBody:
    return ReportBody.from_json(open_json(sealed, key=report_key, context=f"report-body:{report_id}"))


def read_body(report: Report, *, reader: PartReader, report_key: bytes) -> ReportBody | Damaged:
    """The report's own text, answers and contact, or a `Damaged` (the rest still shows)."""
    return reader.open(Part.REPORT, 1, report.received_day,
                       functools.partial(open_body, report.sealed_body, report_key=report_key, report_id=report.id))


# Associated data, by `ad_version` as stored in the row. Version 1 is what rows written before
# migration 4 carry; new rows are version 2, which binds more of the row. The version is read
# from the row, never found by trying both: a version-2 value relabelled as version 1 is opened
# with version 1's associated data, which it was not sealed with, and fails (TamperedData).


def _versioned(version: int, v1: str, v2: str) -> str:
    if version == 1:
        return v1
    if version == 2:
        return v2
    raise TamperedData(f"unknown associated-data version {version}")


def _message_context(*, report_id: str, message_id: str, author: str, seq: int, version: int) -> str:
    return _versioned(version, f"message:{report_id}:{message_id}:{author}",
                      f"message/2:{report_id}:{message_id}:{author}:{seq}")


def message_sealer(text: str, *, report_key: bytes, report_id: str, message_id: str,
                   author: str) -> Callable[[int], bytes]:
    """What Store.add_message calls with the message's sequence number, once it is known."""
    def seal_at(seq: int) -> bytes:
        return seal(text.encode(), key=report_key, context=_message_context(
            report_id=report_id, message_id=message_id, author=author, seq=seq, version=2))
    return seal_at


def open_message(m: Message, *, report_key: bytes) -> str:
    return open_sealed(m.sealed_body, key=report_key, context=_message_context(
        report_id=m.report_id, message_id=m.id, author=m.author, seq=m.seq, version=m.ad_version)).decode()


def _note_context(*, report_id: str, note_id: str, caseworker_id: str | None, version: int) -> str:
    return _versioned(version, f"note:{report_id}:{note_id}", f"note/2:{report_id}:{note_id}:{caseworker_id or ''}")


def _reason_context(*, report_id: str, reason_id: str, kind: str, caseworker_id: str | None) -> str:
    return f"reason/1:{report_id}:{reason_id}:{kind}:{caseworker_id or ''}"


def seal_reason(text: str, *, staff_key: bytes, report_id: str, reason_id: str, kind: str,
                caseworker_id: str) -> bytes:
    """A caseworker's reason (no acknowledgement, extension), under the staff key like a note:
    the whistleblower's receipt never opens it. Bound to its report, id, kind and author."""
    return seal(text.encode(), key=staff_key, context=_reason_context(
        report_id=report_id, reason_id=reason_id, kind=kind, caseworker_id=caseworker_id))


def open_reason(r: Reason, *, staff_key: bytes) -> str:
    return open_sealed(r.sealed_body, key=staff_key, context=_reason_context(
        report_id=r.report_id, reason_id=r.id, kind=r.kind, caseworker_id=r.caseworker_id)).decode()


def seal_note(text: str, *, staff_key: bytes, report_id: str, note_id: str, caseworker_id: str) -> bytes:
    return seal(text.encode(), key=staff_key,
                context=_note_context(report_id=report_id, note_id=note_id, caseworker_id=caseworker_id, version=2))


def open_note(n: Note, *, staff_key: bytes) -> str:
    return open_sealed(n.sealed_body, key=staff_key, context=_note_context(
        report_id=n.report_id, note_id=n.id, caseworker_id=n.caseworker_id, version=n.ad_version)).decode()


def _file_context(kind: str, *, report_id: str, file_id: str, message_id: str | None, bucket: int,
                  version: int) -> str:
    return _versioned(version, f"{kind}:{report_id}:{file_id}",
                      f"{kind}/2:{report_id}:{file_id}:{message_id or '-'}:{bucket}")


def _stored_context(kind: str, f: StoredFile) -> str:
    return _file_context(kind, report_id=f.report_id, file_id=f.id, message_id=f.message_id, bucket=f.size,
                         version=f.ad_version)


def sealed_file_rows(staged: StagedFiles, *, report_key: bytes, report_id: str,
                     message_id: str | None, cleaned: CleanedUpload | None = None,
                     sender_key: bytes | None = None) -> list[NewFile]:
    """Rows for staged files: name, per-file key and exact size sealed under the report key,
    each bound to the report, the file, the message it came with and its padded size; with
    `cleaned`, also what cleaning did (without the values found) and which copy an original is of.
    With `sender_key` (the whistleblower's own key) the values found are sealed under it inside
    that record, for the mailbox: the caseworkers, who open the record, cannot open them."""
    rows = []
    for seq, f in enumerate(staged.files):
        def context(kind: str, f: StagedFile = f) -> str:
            return _file_context(kind, report_id=report_id, file_id=f.id, message_id=message_id, bucket=f.bucket,
                                 version=2)
        cleaning = cleaned.by_file.get(f.id) if cleaned else None
        rows.append(NewFile(
            id=f.id, seq=seq, size=f.bucket,
            sealed_name=seal(f.name.encode(), key=report_key, context=context("file-name")),
            sealed_file_key=seal(f.file_key, key=report_key, context=context("file-key")),
            sealed_size=seal(str(f.size).encode(), key=report_key, context=context("file-size")),
            sealed_cleaning=None if cleaning is None else seal_json(
                _cleaning_record(cleaning, sender_key=sender_key, context=context("file-values")),
                key=report_key, context=context("file-cleaning")),
            original_of=cleaned.originals.get(f.id) if cleaned else None,
            sealed_sent=seal_json(dict(zip(("size", "sha256"), f.as_sent(), strict=True)), key=report_key,
                                  context=context("file-sent")),
        ))
    return rows


@asynccontextmanager
async def owning(staged: StagedFiles) -> AsyncIterator[StagedFiles]:
    """Own an upload's staged files for a block: on the way out, by return or by any error, they
    are discarded unless something kept them first (`promote`, once a report or message that
    refers to them is committed). The one place that decides, so no path can leave them behind."""
    try:
        yield staged
    finally:
        await staged.discard()  # a no-op once promoted


def _cleaning_record(cleaning: FileCleaning, *, sender_key: bytes | None, context: str) -> dict[str, object]:
    """What is kept of a file's cleaning: outcome and kinds for everyone who holds the report key;
    the values found only sealed under the whistleblower's own key (`values`, base64)."""
    record = cleaning.stored().to_json()
    if sender_key is not None and any(f.value for f in cleaning.found):
        sealed = seal_json([f.to_json() for f in cleaning.found], key=sender_key, context=context)
        record["values"] = base64.b64encode(sealed).decode()
    return record


@dataclass(frozen=True)
class SentFile:
    """What the person sent as one file: its exact size and SHA-256, before any cleaning."""

    size: int
    sha256: str


def open_file_sent(f: StoredFile, *, report_key: bytes) -> SentFile | None:
    """Size and SHA-256 of the bytes as sent; None for a file stored before migration 9."""
    if f.sealed_sent is None:
        return None
    value = open_json(f.sealed_sent, key=report_key, context=_stored_context("file-sent", f))
    if not (isinstance(value, dict) and isinstance(value.get("size"), int)
            and isinstance(value.get("sha256"), str)):
        raise TamperedData("file digest record is malformed")
    return SentFile(size=value["size"], sha256=value["sha256"])


def open_file_cleaning(f: StoredFile, *, report_key: bytes, sender_key: bytes | None = None) -> FileCleaning | None:
    """What cleaning did to a stored file; None for a file stored before cleaning existed. With
    the whistleblower's own key, the findings carry the values found (where they were stored)."""
    if f.sealed_cleaning is None:
        return None
    value = open_json(f.sealed_cleaning, key=report_key, context=_stored_context("file-cleaning", f))
    if not isinstance(value, dict):
        raise TamperedData("file cleaning record is malformed")
    try:
        cleaning = FileCleaning.from_json(value)
        if sender_key is None or "values" not in value:
            return cleaning
        sealed = base64.b64decode(str(value["values"]), validate=True)
        found = open_json(sealed, key=sender_key, context=_stored_context("file-values", f))
        return dataclasses.replace(cleaning, found=findings_from_json(found))
    except (KeyError, ValueError, TypeError) as e:  # binascii.Error is a ValueError
        raise TamperedData("file cleaning record is malformed") from e


def open_file_name(f: StoredFile, *, report_key: bytes) -> str:
    return open_sealed(f.sealed_name, key=report_key, context=_stored_context("file-name", f)).decode()


def open_file_key(f: StoredFile, *, report_key: bytes) -> bytes:
    return open_sealed(f.sealed_file_key, key=report_key, context=_stored_context("file-key", f))


def open_file_size(f: StoredFile, *, report_key: bytes) -> int:
    """The exact size. Rows from before migration 4 stored it in the clear (their stored bytes
    reveal it anyway: they were not padded)."""
    if f.ad_version == 1:
        return f.size
    if f.sealed_size is None:
        raise TamperedData("file row has no sealed size")
    try:
        return int(open_sealed(f.sealed_size, key=report_key, context=_stored_context("file-size", f)))
    except ValueError as e:
        raise TamperedData("file size is not a number") from e


def file_view(f: StoredFile, *, report_key: bytes, sender_key: bytes | None = None,
              original_id: str | None = None) -> FileView:
    """One stored file opened (TamperedData if its name, size or cleaning record does not open)."""
    return FileView(id=f.id, name=open_file_name(f, report_key=report_key),
                    size=open_file_size(f, report_key=report_key), message_id=f.message_id,
                    cleaning=open_file_cleaning(f, report_key=report_key, sender_key=sender_key),
                    original_id=original_id)


def file_views(files: Sequence[StoredFile], *, reader: PartReader, report_key: bytes,
               sender_key: bytes | None = None) -> dict[str | None, list[FileView | Damaged]]:
    """The files people work with, by the message they came with (None: with the report): a
    kept original is not listed on its own but named on the cleaned copy (`original_id`), so
    opening it is always a separate, deliberate step. A file whose row does not open is a
    `Damaged` in its place. `sender_key`: the whistleblower's own key, so their mailbox shows
    the values found."""
    originals = {f.original_of: f.id for f in files if f.original_of}
    by_message: dict[str | None, list[FileView | Damaged]] = {}
    for f in files:
        if f.original_of:
            continue
        listed = by_message.setdefault(f.message_id, [])
        listed.append(reader.open(Part.FILE, len(listed) + 1, None, functools.partial(
            file_view, f, report_key=report_key, sender_key=sender_key, original_id=originals.get(f.id))))
    return by_message


async def thread(store: Store, *, report_id: str, report_key: bytes, sender_key: bytes | None = None,
                 reader: PartReader | None = None) -> tuple[list[FileView | Damaged], list[MessageView]]:
    """The files handed in with the report, and the message thread with each message's files;
    every row opened on its own (by `reader`, which collects what did not open), so a damaged one
    is a `Damaged` in its place. What must be whole takes each value through `intact`."""
    reader = reader or PartReader(report_id)
    by_message = file_views(await store.files(report_id), reader=reader, report_key=report_key,
                            sender_key=sender_key)
    messages = [
        MessageView(id=m.id, author=m.author, day=m.sent_day, read=m.read, files=by_message.get(m.id, []),
                    text=reader.open(Part.MESSAGE, n, m.sent_day,
                                     functools.partial(open_message, m, report_key=report_key)))
        for n, m in enumerate(await store.messages(report_id), start=1)
    ]
    return by_message.get(None, []), messages


# --- downloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A file ready to stream. `chunks` is a blocking iterator: advance it in a worker thread
    (web/downloads.py does, and closes it). TamperedData from it means the blob is damaged."""

    name: str
    size: int
    chunks: Iterator[bytes]


class FileUnreadable(Exception):
    """A stored file's sealed name, key or size does not open under the report key: the row was
    damaged or tampered with. Nothing of the file can be sent."""


def stored_download(blobs: BlobStore, f: StoredFile, *, report_key: bytes) -> Download:
    """Open a stored file's row for streaming, for whichever side may read it (the caller checks that)."""
    try:
        name = open_file_name(f, report_key=report_key)
        file_key = open_file_key(f, report_key=report_key)
        size = open_file_size(f, report_key=report_key)
    except TamperedData as e:
        log.error("a stored file's name or key could not be opened (%s)", type(e).__name__)
        raise FileUnreadable() from e
    return Download(name=name, size=size, chunks=blobs.read(f.id, file_key=file_key, size=size))
