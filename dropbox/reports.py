"""The sealed parts of a report, as both sides read and write them.

Each sealed field is bound to its place (report, row id, and for messages the author), so whoever
edits the database can delete rows but cannot move, swap or re-attribute what people wrote. This
module is the one place that names those contexts; submissions.py and casework.py use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dropbox.blobs import StagedFiles
from dropbox.sealing import open_json, open_sealed, seal, seal_json
from dropbox.storage import Message, NewFile, Store, StoredFile

STATUSES = ("new", "opened", "in_progress", "closed")


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


@dataclass(frozen=True)
class MessageView:
    id: str
    author: str
    text: str
    day: str
    read: bool
    files: list[FileView]


def seal_body(body: ReportBody, *, report_key: bytes, report_id: str) -> bytes:
    return seal_json(body.to_json(), key=report_key, context=f"report-body:{report_id}")


def open_body(sealed: bytes, *, report_key: bytes, report_id: str) -> ReportBody:
    return ReportBody.from_json(open_json(sealed, key=report_key, context=f"report-body:{report_id}"))


def seal_message(text: str, *, report_key: bytes, report_id: str, message_id: str, author: str) -> bytes:
    return seal(text.encode(), key=report_key, context=f"message:{report_id}:{message_id}:{author}")


def open_message(m: Message, *, report_key: bytes) -> str:
    return open_sealed(m.sealed_body, key=report_key,
                       context=f"message:{m.report_id}:{m.id}:{m.author}").decode()


def seal_note(text: str, *, staff_key: bytes, report_id: str, note_id: str) -> bytes:
    return seal(text.encode(), key=staff_key, context=f"note:{report_id}:{note_id}")


def open_note(sealed: bytes, *, staff_key: bytes, report_id: str, note_id: str) -> str:
    return open_sealed(sealed, key=staff_key, context=f"note:{report_id}:{note_id}").decode()


def sealed_file_rows(staged: StagedFiles, *, report_key: bytes, report_id: str) -> list[NewFile]:
    """Rows for staged files: the name and the per-file key sealed under the report key."""
    return [
        NewFile(
            id=f.id,
            sealed_name=seal(f.name.encode(), key=report_key, context=f"file-name:{report_id}:{f.id}"),
            sealed_file_key=seal(f.file_key, key=report_key, context=f"file-key:{report_id}:{f.id}"),
            size=f.size,
        )
        for f in staged.files
    ]


def open_file_name(f: StoredFile, *, report_key: bytes) -> str:
    return open_sealed(f.sealed_name, key=report_key, context=f"file-name:{f.report_id}:{f.id}").decode()


def open_file_key(f: StoredFile, *, report_key: bytes) -> bytes:
    return open_sealed(f.sealed_file_key, key=report_key, context=f"file-key:{f.report_id}:{f.id}")


def file_views(files: Sequence[StoredFile], *, report_key: bytes) -> list[FileView]:
    return [FileView(id=f.id, name=open_file_name(f, report_key=report_key), size=f.size, message_id=f.message_id)
            for f in files]


async def thread(store: Store, *, report_id: str, report_key: bytes) -> tuple[list[FileView], list[MessageView]]:
    """The files handed in with the report, and the message thread with each message's files."""
    files = file_views(await store.files(report_id), report_key=report_key)
    by_message: dict[str | None, list[FileView]] = {}
    for f in files:
        by_message.setdefault(f.message_id, []).append(f)
    messages = [
        MessageView(id=m.id, author=m.author, text=open_message(m, report_key=report_key), day=m.sent_day,
                    read=m.read, files=by_message.get(m.id, []))
        for m in await store.messages(report_id)
    ]
    return by_message.get(None, []), messages
