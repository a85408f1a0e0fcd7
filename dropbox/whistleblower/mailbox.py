"""The anonymous mailbox: log in with the receipt, read the thread, reply, download, log out.

A login puts the report id and report key in an in-memory session (web/sessions.py: HttpOnly,
SameSite=Strict cookie that dies with the browser, idle timeout); logout, expiry and shutdown
zero the session's copy of the key (what that does and does not erase: submissions.MailboxAccess).
Every state-changing form carries the session's CSRF token; the reply form sends it as its first
part so a forged upload is refused before a byte of it is stored.

Receipt guessing is met with one generic message for every failure, the install-wide failure
budget (web/throttle.py: slow everyone down a little, lock no one out, say so on the page) and the
bounded KDF pool (busy → 503). The person may download only files a caseworker sent: someone who
gets hold of a receipt code can read the conversation, but cannot pull the original documents.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from dropbox import oral
from dropbox.cleaning import Policy
from dropbox.ids import today
from dropbox.kdf_pool import KdfBusy
from dropbox.questions import InvalidQuestions, parse_questions
from dropbox.reports import Damaged, FileUnreadable, FileView, MessageView
from dropbox.submissions import (
    InvalidMeetingRequest,
    MailboxAccess,
    MailboxView,
    MalformedReceipt,
    NotFound,
    StorageUnavailable,
    WrongReceipt,
    clean_files,
    mailbox_channel,
    open_download,
    open_mailbox,
    owning,
    post_whistleblower_message,
    read_mailbox,
    request_meeting,
)
from dropbox.web.appkeys import SERVICES
from dropbox.web.downloads import stream_download
from dropbox.web.formats import format_number, format_size
from dropbox.web.i18n import N_, render, request_language, translate, url_for
from dropbox.web.middleware import UserError
from dropbox.web.sessions import CSRF_FIELD, SESSIONS, Session, SessionStore
from dropbox.web.throttle import FAILURE_BUDGET, SLOWED_NOTICE
from dropbox.web.uploads import (
    FieldTooLong,
    FormError,
    FormSpec,
    MalformedForm,
    NoSpace,
    TooManyFiles,
    TooSlow,
    TryLater,
    UploadLimits,
    UploadTooLarge,
    read_form,
    read_small_form,
)
from dropbox.whistleblower.display import (
    CleaningLine,
    channel_name,
    cleaning_line,
    damaged_line,
    format_day,
    status_words,
)
from dropbox.whistleblower.submit import CLEAN_FIELD, FILES_AGAIN, MALFORMED_SMALL, TOO_SLOW

log = logging.getLogger(__name__)

WRONG_RECEIPT = N_("That receipt code did not open a mailbox. Please check the code and try again.")
BUSY = N_("The site is very busy right now. Please wait a minute and try again.")
ENDED = N_("Your mailbox was closed, either because you logged out or after some time without "
           "activity. Enter your receipt code to open it again.")
NOT_SENT = N_("Your mailbox was closed after some time without activity, before your message arrived, "
              "so it was not sent. Copy your text from the box below, open your mailbox again and "
              "paste it into a new message. Files have to be chosen again.")
EMPTY_REPLY = N_("Your message is empty. Please write something or attach a file.")
REPLY_TOO_LONG = N_("Your message is longer than %(limit)s characters. Only the first %(limit)s characters "
                    "are shown below; the rest was not kept. Please shorten it, or save the full text as "
                    "a file and attach that instead.")
REPLY_MALFORMED = N_("Your browser sent the message in a way we could not read, so nothing was sent. "
                     "Please try again.")
REPLY_TOO_LARGE = N_("The files are too large, so nothing was sent. Each file can be at most "
                     "%(file_limit)s, and all files together at most %(total_limit)s.")
REPLY_TOO_MANY_FILES = N_("You chose too many files, so nothing was sent. You can send at most %(count)s "
                          "files at a time.")
REPLY_NO_SPACE = N_("We could not store your message right now because the site is out of storage "
                    "space. Nothing was sent. Please try again later.")
FILE_UNREADABLE = N_("This file could not be opened. Please ask the caseworker to send it again.")
AUTHORS = {"caseworker": N_("Caseworker"), "whistleblower": N_("You")}


@dataclass
class MailboxSession(MailboxAccess):
    """The session payload: which report and its key, plus the visit this login started from.

    `previous_visit_day` is the day the mailbox was last opened *before* this login, read at the
    first inbox view and kept, so the page does not report today's own visit back to the person.
    """

    previous_visit_day: str | None = None
    visit_recorded: bool = False


# -- views -------------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request, notice=ENDED if "ended" in request.query else None)


async def login(request: web.Request) -> web.Response:
    """POST the receipt: a session and 303 to the inbox, or one generic failure."""
    form = await small_form(request)
    services = request.config_dict[SERVICES]
    budget = request.config_dict[FAILURE_BUDGET]
    slowed = await budget.before_attempt()
    try:
        access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                    receipt_text=form.get("receipt", ""))
    except WrongReceipt as e:
        if not isinstance(e, MalformedReceipt):  # refused before any Argon2id work: no guess was made
            budget.record_failure()
        return _login_page(request, 403, error=WRONG_RECEIPT, slowed=SLOWED_NOTICE if slowed else None)
    except KdfBusy:
        raise UserError(503, BUSY, headers={"Retry-After": "60"}) from None
    payload = MailboxSession(report_id=access.report_id, key=bytearray(access.key), own_key=bytearray(access.own_key))
    access.wipe()
    mailbox_sessions(request).create(request, payload, group=payload.report_id)
    raise web.HTTPSeeOther(url_for(request, "mailbox_inbox"))


async def inbox(request: web.Request) -> web.Response:
    payload = require_session(request).payload
    return await _inbox_page(request, payload, record_visit=True, sent="sent" in request.query)


async def reply(request: web.Request) -> web.Response:
    """POST multipart: CSRF token first, then `text` and `files`. 303 back to the inbox.

    If the session ended while the person was writing (the idle timeout does not see typing),
    the login page comes back with their text in it, so a long message is not lost.
    """
    session = mailbox_sessions(request).get(request)
    if session is None:
        return await _not_sent(request)
    services = request.config_dict[SERVICES]
    config = services.config

    def check_csrf(token: str) -> None:
        mailbox_sessions(request).verify_csrf(session, token)

    spec = FormSpec(fields={"text": config.max_text_chars, CLEAN_FIELD: 8}, first=(CSRF_FIELD, check_csrf))
    try:
        parsed = await read_form(request, spec=spec, limits=UploadLimits.from_config(config), blobs=services.blobs)
    except FormError as e:
        return await _reply_failed(request, session.payload, e)
    text = parsed.fields.get("text", "")
    async with owning(parsed.staged) as staged:
        try:
            if not text.strip() and not staged.files:
                return await _inbox_page(request, session.payload, reply_text=text, status=400,
                                         problem=translate(request, EMPTY_REPLY))
            cleaned = await clean_files(cleaner=services.cleaner, store=services.store, staged=staged,
                                        channel_id=await mailbox_channel(store=services.store,
                                                                         access=session.payload),
                                        wanted=bool(parsed.fields.get(CLEAN_FIELD)))
            await post_whistleblower_message(store=services.store, access=session.payload, text=text,
                                             staged=staged, cleaned=cleaned)
        except StorageUnavailable as e:
            log.error("the database refused to store a reply (%s)", type(e).__name__)
            return await _inbox_page(request, session.payload, reply_text=text, status=507,
                                     problem=translate(request, REPLY_NO_SPACE),
                                     files_again=translate(request, FILES_AGAIN) if staged.files else None)
    raise web.HTTPSeeOther(url_for(request, "mailbox_inbox", query={"sent": "1"}))


async def download(request: web.Request) -> web.StreamResponse:
    """A file a caseworker sent, decrypted as it streams, always as an attachment."""
    access = require_session(request).payload
    services = request.config_dict[SERVICES]
    try:
        download = await open_download(store=services.store, blobs=services.blobs, access=access,
                                       file_id=request.match_info["file_id"])
    except NotFound:
        raise web.HTTPNotFound() from None
    except FileUnreadable as e:
        raise UserError(409, FILE_UNREADABLE) from e
    return await stream_download(request, download, unreadable=FILE_UNREADABLE)


async def meeting(request: web.Request) -> web.StreamResponse:
    """POST with the CSRF token: ask for a meeting or a call (flagged on the report)."""
    session = require_session(request)
    form = await small_form(request)
    mailbox_sessions(request).verify_csrf(session, form.get(CSRF_FIELD))
    try:
        await request_meeting(store=request.config_dict[SERVICES].store, access=session.payload,
                              kind=form.get("kind", ""))
    except InvalidMeetingRequest as e:
        raise UserError(400, MALFORMED_SMALL) from e
    except NotFound:
        raise _to_login(request) from None
    raise web.HTTPSeeOther(url_for(request, "mailbox_inbox", query={"meeting": "1"}))


async def logout(request: web.Request) -> web.StreamResponse:
    """POST with the CSRF token: forget the session and the cookie, back to the start page."""
    form = await small_form(request)
    sessions = mailbox_sessions(request)
    session = sessions.get(request)
    if session is not None:
        sessions.verify_csrf(session, form.get(CSRF_FIELD))
    sessions.destroy(request)
    raise web.HTTPSeeOther(url_for(request, "landing"))


# -- helpers -----------------------------------------------------------------------------------


def _login_page(request: web.Request, status: int = 200, *, notice: str | None = None, error: str | None = None,
                slowed: str | None = None, not_sent: str | None = None, unsent_text: str = "") -> web.Response:
    """The receipt login page; the messages are msgids, translated here."""
    def text(msgid: str | None) -> str | None:
        return translate(request, msgid) if msgid else None

    context = {"notice": text(notice), "error": text(error), "slowed": text(slowed), "not_sent": text(not_sent),
               "unsent_text": unsent_text}
    return render(request, "whistleblower/mailbox_login.html", context, status)


async def _not_sent(request: web.Request) -> web.Response:
    """The login page with the text of a reply that arrived without a live session.

    Only the text is read back (from the part after the token, whatever the token says); files
    are never read, so nothing of an unauthenticated upload reaches the disk.
    """
    services = request.config_dict[SERVICES]
    spec = FormSpec(fields={"text": services.config.max_text_chars}, file_field=None,
                    first=(CSRF_FIELD, lambda token: None))
    try:
        text = (await read_form(request, spec=spec, limits=UploadLimits.from_config(services.config),
                                blobs=services.blobs)).fields.get("text", "")
    except FormError as e:
        text = e.fields.get("text", "")
    if not text.strip():
        raise _to_login(request)
    return _login_page(request, 403, not_sent=NOT_SENT, unsent_text=text)


async def small_form(request: web.Request) -> Mapping[str, str]:
    try:
        return await read_small_form(request)
    except MalformedForm:
        raise UserError(400, MALFORMED_SMALL) from None


def mailbox_sessions(request: web.Request) -> SessionStore[MailboxSession]:
    return request.config_dict[SESSIONS]


def require_session(request: web.Request) -> Session[MailboxSession]:
    """The live session, or a redirect to the login page (saying it ended, if there was one)."""
    session = mailbox_sessions(request).get(request)
    if session is None:
        raise _to_login(request)
    return session


def _to_login(request: web.Request) -> web.HTTPSeeOther:
    """To the login page; saying the mailbox was closed if the browser still had a session cookie."""
    had_cookie = mailbox_sessions(request).cookie_name in request.cookies
    return web.HTTPSeeOther(url_for(request, "mailbox_login", query={"ended": "1"} if had_cookie else None))


async def _reply_failed(request: web.Request, payload: MailboxSession, e: FormError) -> web.Response:
    config = request.config_dict[SERVICES].config
    lang = request_language(request)
    text = e.fields.get("text", "")
    status = 400
    if isinstance(e, FieldTooLong):
        message = translate(request, REPLY_TOO_LONG, limit=format_number(e.limit, lang))
    elif isinstance(e, UploadTooLarge):
        status = 413
        message = translate(request, REPLY_TOO_LARGE, file_limit=format_size(config.max_file_bytes, lang),
                            total_limit=format_size(config.max_submission_bytes, lang))
    elif isinstance(e, TooManyFiles):
        status = 413
        message = translate(request, REPLY_TOO_MANY_FILES, count=config.max_files_per_submission)
    elif isinstance(e, NoSpace):
        log.error("out of storage space while receiving a reply")
        status = 507
        message = translate(request, REPLY_NO_SPACE)
    elif isinstance(e, TryLater):
        status = 503
        message = translate(request, BUSY)
    elif isinstance(e, TooSlow):
        status = 408
        message = translate(request, TOO_SLOW)
    else:
        message = translate(request, REPLY_MALFORMED)
    page = await _inbox_page(request, payload, reply_text=text, status=status, problem=message,
                             files_again=translate(request, FILES_AGAIN))
    if status == 503:
        page.headers["Retry-After"] = "60"
    return page


async def _inbox_page(
    request: web.Request,
    payload: MailboxSession,
    *,
    record_visit: bool = False,
    sent: bool = False,
    reply_text: str = "",
    status: int = 200,
    problem: str | None = None,
    files_again: str | None = None,
) -> web.Response:
    services = request.config_dict[SERVICES]
    try:
        try:
            view = await read_mailbox(store=services.store, access=payload, record_visit=record_visit)
        except StorageUnavailable:
            # A disk that refuses writes must not lock the person out of reading: skip the visit stamp.
            view = await read_mailbox(store=services.store, access=payload, record_visit=False)
        channels = await services.store.channels()
        channel_id = (await services.store.report(payload.report_id)).channel_id
        minutes = await oral.for_reporter(store=services.store, access=payload)
    except NotFound:
        # The report was deleted (retention) while the session was open.
        mailbox_sessions(request).destroy(request)
        raise web.HTTPSeeOther(url_for(request, "mailbox_login", query={"ended": "1"})) from None
    if not payload.visit_recorded:
        payload.previous_visit_day = view.previous_visit_day
        payload.visit_recorded = record_visit
    lang = request_language(request)
    label, explanation = status_words(view.status)
    context = {
        "status_label": translate(request, label),
        "status_text": translate(request, explanation),
        "received": format_day(view.received_day, lang),
        "previous_visit": _previous_visit(payload.previous_visit_day, lang),
        "previous_visit_today": payload.previous_visit_day == today().isoformat(),
        "channel_name": channel_name(request, view.channel_name) if len(channels) > 1 else None,
        "report": _report(request, view, next((c.questions for c in channels if c.id == channel_id), "[]"),
                          lang),
        "messages": [_message(request, m, lang) for m in view.messages],
        "sent": sent,
        "meeting_request": view.meeting_request,
        "meeting_request_day": format_day(view.meeting_request_day, lang) if view.meeting_request_day else None,
        "meeting_asked": "meeting" in request.query,
        "minutes": minutes,
        "problem": problem,
        "files_again": files_again,
        "reply_text": reply_text,
        "max_file_size": format_size(services.config.max_file_bytes, lang),
        "max_total_size": format_size(services.config.max_submission_bytes, lang),
        "clean_choice": next((c.cleaning_policy for c in channels if c.id == channel_id), None) == Policy.CHOOSE,
    }
    return render(request, "whistleblower/inbox.html", context, status)


def _previous_visit(day: str | None, lang: str) -> str | None:
    return format_day(day, lang) if day else None


@dataclass(frozen=True)
class _FileLine:
    name: str
    size: str
    url: str | None
    cleaning: CleaningLine | None = None
    #: In place of a file whose row did not open: the line saying so (name and size are empty).
    damaged: str | None = None


def _file_lines(request: web.Request, files: list[FileView | Damaged], lang: str, *,
                downloadable: bool) -> list[_FileLine]:
    return [_FileLine(name="", size="", url=None, damaged=damaged_line(request, f)) if isinstance(f, Damaged)
            else _FileLine(name=f.name, size=format_size(f.size, lang),
                           url=url_for(request, "mailbox_file", file_id=f.id) if downloadable else None,
                           cleaning=cleaning_line(request, f.name, f.cleaning) if f.cleaning else None)
            for f in files]


def _report(request: web.Request, view: MailboxView, questions_json: str, lang: str) -> Mapping[str, object]:
    """What the person sent. Answers are labelled with the channel's current questions (the id,
    if the operator has since removed a question)."""
    files = _file_lines(request, view.files, lang, downloadable=False)
    if isinstance(view.body, Damaged):
        return {"damaged": damaged_line(request, view.body), "text": "", "answers": [], "contact": "", "files": files}
    default_lang = request.config_dict[SERVICES].config.default_language
    try:
        labels = {q.id: q.label(lang, default_lang) for q in parse_questions(questions_json)}
    except InvalidQuestions:
        labels = {}
    return {
        "damaged": None,
        "text": view.body.text,
        "answers": [(labels.get(qid, qid), answer) for qid, answer in view.body.answers.items()],
        "contact": view.body.contact,
        "files": files,
    }


def _message(request: web.Request, m: MessageView, lang: str) -> Mapping[str, object]:
    from_caseworker = m.author == "caseworker"
    return {
        "from_caseworker": from_caseworker,
        "author": translate(request, AUTHORS.get(m.author, AUTHORS["caseworker"])),
        "day": format_day(m.day, lang),
        "damaged": damaged_line(request, m.text),
        "text": "" if isinstance(m.text, Damaged) else m.text,
        "new": from_caseworker and not m.read,
        "files": _file_lines(request, m.files, lang, downloadable=from_caseworker),
    }
