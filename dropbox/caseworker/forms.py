"""Reading what a caseworker's browser sends: ids in paths, form fields, streamed uploads.

Nothing here trusts its input: ids must have our own shape before they reach a query, text is
length-capped, and an upload is streamed part by part with the CSRF token required as the very
first part, so a forged request is refused before a single file byte is written.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web

from dropbox.blobs import StagedFiles
from dropbox.casework import SORTS, ReportFilter
from dropbox.config import Config
from dropbox.reports import STATUSES
from dropbox.web.i18n import N_
from dropbox.web.middleware import UserError
from dropbox.web.sessions import CSRF_FIELD, CsrfError, Session, SessionStore

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_CHANNEL_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
MAX_PAGE = 100_000
#: Longest file name kept; longer ones are cut, keeping the extension.
MAX_FILENAME_CHARS = 200

TOO_LONG = N_("What you typed is too long.")
BAD_FORM = N_("The form could not be read. Please go back and try again.")


def hex_id(value: str) -> str:
    """A report, file or caseworker id from a URL; anything else is a 404 like an unknown id."""
    if not _HEX_ID.fullmatch(value):
        raise web.HTTPNotFound()
    return value


def channel_id(value: str) -> str:
    if not _CHANNEL_ID.fullmatch(value):
        raise web.HTTPNotFound()
    return value


def text(form: Mapping[str, object], name: str, *, max_chars: int) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    if len(value) > max_chars:
        raise UserError(413, TOO_LONG)
    return value


def integer(form: Mapping[str, object], name: str) -> int | None:
    value = text(form, name, max_chars=12).strip()
    return int(value) if value.isascii() and value.isdigit() else None


def checkbox(form: Mapping[str, object], name: str) -> bool:
    return form.get(name) in ("1", "on", "yes")


def report_filter(query: Mapping[str, str], channel_ids: set[str]) -> ReportFilter:
    """The list's query string; unknown values fall back to the defaults rather than failing."""
    status = query.get("status")
    channel = query.get("channel")
    sort = query.get("sort", "newest")
    page = integer(query, "page") or 1
    return ReportFilter(
        status=status if status in STATUSES else None,
        channel_id=channel if channel in channel_ids else None,
        overdue_only=query.get("overdue") == "1",
        sort=sort if sort in SORTS else "newest",
        page=min(max(page, 1), MAX_PAGE),
    )


# --- file names ------------------------------------------------------------------------------


def clean_filename(name: str) -> str:
    """A file name safe to store and show: no folders, no control or bidi characters (which can
    disguise "txt.exe" as "exe.txt"), no leading dots, at most MAX_FILENAME_CHARS."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(c) == "Zs" else c for c in name
                   if not unicodedata.category(c).startswith("C") and unicodedata.category(c) not in ("Zl", "Zp"))
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        keep = f".{ext}" if dot and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME_CHARS - len(keep)] + keep
    return name or "file"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback and the real name as RFC 6266 / RFC 8187 filename*."""
    safe = clean_filename(name)
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%;' else "_" for c in safe)
    encoded = urllib.parse.quote(safe, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


# --- streamed uploads ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyForm:
    text: str
    gives_feedback: bool


async def _next_part(reader: MultipartReader) -> BodyPartReader | None:
    part = await reader.next()
    if part is None or isinstance(part, BodyPartReader):
        return part
    raise UserError(400, BAD_FORM)  # a nested multipart: no browser sends one


async def _read_text(part: BodyPartReader, *, max_bytes: int) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(8192):
        data += chunk
        if len(data) > max_bytes:
            raise UserError(413, TOO_LONG)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(400, BAD_FORM) from e


async def csrf_first(reader: MultipartReader, session: Session[Any]) -> None:
    """The first part must be the session's CSRF token; nothing after it is read otherwise."""
    part = await _next_part(reader)
    if part is None or part.name != CSRF_FIELD:
        raise CsrfError("the CSRF token is not the first part")
    SessionStore.verify_csrf(session, await _read_text(part, max_bytes=256))


async def _chunks(part: BodyPartReader, size: int) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(size):
        yield chunk


async def read_reply(reader: MultipartReader, staged: StagedFiles, config: Config) -> ReplyForm:
    """The rest of a reply form after the token: text, the feedback box, and files, each file
    sealed into `staged` as it streams in (FileTooLarge / StorageFull from blobs.py)."""
    text_value = ""
    gives_feedback = False
    max_parts = config.max_files_per_submission + 8
    for _ in range(max_parts):
        part = await _next_part(reader)
        if part is None:
            return ReplyForm(text=text_value, gives_feedback=gives_feedback)
        if part.name == "text":
            text_value = await _read_text(part, max_bytes=4 * config.max_text_chars)
            if len(text_value) > config.max_text_chars:
                raise UserError(413, TOO_LONG)
        elif part.name == "feedback":
            gives_feedback = (await _read_text(part, max_bytes=8)) in ("1", "on", "yes")
        elif part.name == "files" and part.filename:
            if len(staged.files) >= config.max_files_per_submission:
                raise UserError(413, N_("Too many files at once."))
            await staged.add(clean_filename(part.filename), _chunks(part, config.file_chunk_bytes),
                             max_file_bytes=config.max_file_bytes)
        elif part.name == "files":
            await part.release()  # the empty part a browser sends when no file was chosen
        else:
            raise UserError(400, BAD_FORM)
    raise UserError(400, BAD_FORM)
