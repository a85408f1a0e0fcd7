"""The minutes of an oral report in the mailbox (dropbox/oral.py): read, correct, approve.

    GET  /{lang}/mailbox/minutes             the versions, the approval and the correction forms
    POST /{lang}/mailbox/minutes/approve     CSRF, version, agree → recorded with the day, 303 back
    POST /{lang}/mailbox/minutes/correct     CSRF, version, text → sent to the caseworkers, 303 back

A version that is approved, or replaced by a newer one, refuses both with a page that says so
(409): an approval is never changed, and a correction always names the version it corrects.
"""

from __future__ import annotations

from aiohttp import web

from dropbox import oral
from dropbox.reports import Damaged
from dropbox.submissions import MailboxAccess
from dropbox.web.appkeys import SERVICES
from dropbox.web.i18n import N_, render, request_language, translate, url_for
from dropbox.web.middleware import UserError
from dropbox.web.sessions import CSRF_FIELD
from dropbox.whistleblower.display import damaged_line, format_day
from dropbox.whistleblower.mailbox import mailbox_sessions, require_session, small_form
from dropbox.whistleblower.submit import MALFORMED_SMALL

CLOSED = N_("This version of the minutes can no longer be changed: you approved it already, or the caseworkers "
            "replaced it with a newer version. Nothing was changed. Read the latest version below.")
NOT_AGREED = N_("Tick the box to confirm that you have checked the minutes and agree with them.")
TOO_LONG = N_("Your correction is too long. Please shorten it, or send the rest in a message.")
EMPTY = N_("Your correction is empty. Please write what should be changed.")
DAMAGED_VERSION = N_("This version of the minutes could not be opened, so it cannot be approved. Nothing was "
                     "recorded. Please tell the caseworkers in a correction or a message.")


async def minutes_page(request: web.Request) -> web.Response:
    access = require_session(request).payload
    return await _page(request, access, approved="approved" in request.query,
                       corrected="corrected" in request.query)


async def approve(request: web.Request) -> web.StreamResponse:
    access, form, version = await _posted(request)
    if form.get("agree") != "yes":
        return await _page(request, access, problem=NOT_AGREED, status=400)
    try:
        await oral.approve(store=request.config_dict[SERVICES].store, access=access, version=version)
    except oral.VersionClosed:
        return await _page(request, access, problem=CLOSED, status=409)
    except oral.VersionDamaged:
        return await _page(request, access, problem=DAMAGED_VERSION, status=409)
    raise web.HTTPSeeOther(url_for(request, "mailbox_minutes", query={"approved": "1"}))


async def correct(request: web.Request) -> web.StreamResponse:
    access, form, version = await _posted(request)
    text = form.get("text", "")
    if len(text) > request.config_dict[SERVICES].config.max_text_chars:
        raise UserError(413, TOO_LONG)
    try:
        await oral.propose_correction(store=request.config_dict[SERVICES].store, access=access, version=version,
                                      text=text)
    except oral.EmptyText:
        return await _page(request, access, problem=EMPTY, status=400)
    except oral.VersionClosed:
        return await _page(request, access, problem=CLOSED, status=409, correction_text=text)
    raise web.HTTPSeeOther(url_for(request, "mailbox_minutes", query={"corrected": "1"}))


async def _posted(request: web.Request) -> tuple[MailboxAccess, dict[str, str], int]:
    """The session, the CSRF-checked form and the version it is about (400 if not a number)."""
    session = require_session(request)
    form = await small_form(request)
    mailbox_sessions(request).verify_csrf(session, form.get(CSRF_FIELD))
    version = form.get("version", "")
    if not (version.isascii() and version.isdigit() and len(version) <= 6):
        raise UserError(400, MALFORMED_SMALL)
    return session.payload, form, int(version)


async def _page(request: web.Request, access: MailboxAccess, *, approved: bool = False, corrected: bool = False,
                problem: str | None = None, status: int = 200, correction_text: str = "") -> web.Response:
    view = await oral.for_reporter(store=request.config_dict[SERVICES].store, access=access)
    if view is None:  # a report handed in on the web has no minutes
        raise web.HTTPSeeOther(url_for(request, "mailbox_inbox"))
    lang = request_language(request)
    return render(request, "whistleblower/minutes.html", {
        "view": view,
        "versions": [{"version": v.version, "text": "" if isinstance(v.text, Damaged) else v.text,
                      "damaged": damaged_line(request, v.text), "day": format_day(v.written_day, lang),
                      "approved": format_day(v.approved_day, lang) if v.approved_day else None}
                     for v in reversed(view.versions)],
        "approved": approved, "corrected": corrected, "correction_text": correction_text,
        "problem": translate(request, problem) if problem else None,
    }, status)
