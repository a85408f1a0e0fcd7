"""Reading what a caseworker's browser sends: ids in paths, form fields.

Nothing here trusts its input: ids must have our own shape before they reach a query, and text
is length-capped. Bodies are read by web/uploads.py, the reader both apps share: a form without
files only as url-encoded (`small_form`), the reply with files streamed and sealed with the CSRF
token required as its very first part (cases.reply).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web
from multidict import MultiDictProxy

from dropbox.casework import SORTS, ReportFilter
from dropbox.reports import STATUSES
from dropbox.web import uploads
from dropbox.web.i18n import N_
from dropbox.web.middleware import UserError
from dropbox.web.uploads import MalformedForm, read_small_form

_HEX_ID = re.compile(r"[0-9a-f]{32}")
_CHANNEL_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
MAX_PAGE = 100_000

TOO_LONG = N_("What you typed is too long.")
BAD_FORM = N_("The form could not be read. Please go back and try again.")

#: Why a reply's form could not be read, and the status of the page that says so.
_FORM_ERRORS: dict[type[uploads.FormError], tuple[int, str]] = {
    uploads.FieldTooLong: (413, TOO_LONG),
    uploads.UploadTooLarge: (413, N_("The files are larger than this site accepts.")),
    uploads.TooManyFiles: (413, N_("Too many files at once.")),
    uploads.NoSpace: (507, N_("The server cannot store files right now. Please tell the operator.")),
    uploads.TryLater: (503, N_("The server is busy. Please try again in a minute.")),
    uploads.TooSlow: (408, N_("The upload arrived too slowly and was stopped.")),
}


def upload_error(error: uploads.FormError) -> UserError:
    """The page for a form with files that could not be read (web/uploads.py's typed errors)."""
    status, message = _FORM_ERRORS.get(type(error), (400, BAD_FORM))
    return UserError(status, message, headers={"Retry-After": "60"} if status == 503 else None)


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


async def small_form(request: web.Request) -> MultiDictProxy[str]:
    """A POST of a form without files. Multipart (or anything else not url-encoded) is refused
    with a clear 400, never parsed: `request.post()` would spool its file parts, unencrypted, to
    a temporary file on disk."""
    try:
        return await read_small_form(request)
    except MalformedForm as e:
        raise UserError(400, BAD_FORM) from e
