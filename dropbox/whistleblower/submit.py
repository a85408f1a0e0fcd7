"""The submission path: the form, the receipt page, and the check that the receipt was saved.

No cookie is read or set anywhere on this path, and so there is no session and no CSRF token.
That is acceptable because a forged submission gains an attacker nothing:

- there is no cookie, so a cross-site request carries no ambient authority to abuse, and
  SameSite has nothing to protect;
- our own pages can only post back to this site (CSP `form-action 'self'`);
- a forged cross-site POST makes a report in the victim's browser, and the receipt goes to that
  browser, where the same-origin policy keeps it from the attacker's page. The attacker ends up
  with a report they cannot read and that is tied to no one: no more than they could do by
  submitting one themselves, which anyone can. (The one thing a cross-site form could abuse, the
  confirmation page showing a code of the attacker's choosing, is closed in receipt_tokens.py.)

The views only parse, call `dropbox.submissions`, and render; limits live in web/uploads.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from dropbox.kdf_pool import KdfBusy
from dropbox.questions import (
    ANSWER_PREFIX,
    MAX_QUESTIONS,
    InvalidQuestions,
    Question,
    answers_for,
    parse_questions,
)
from dropbox.receipt_tokens import ReceiptTokens, TokenUnusable, typed_matches
from dropbox.reports import ReportBody
from dropbox.services import Services
from dropbox.submissions import (
    Channel,
    NoRecipients,
    StorageUnavailable,
    UnknownChannel,
    clean_files,
    format_receipt,
    owning,
    submit_report,
)
from dropbox.web.appkeys import SERVICES
from dropbox.web.formats import format_number, format_size
from dropbox.web.i18n import N_, render, request_language, translate
from dropbox.web.middleware import UserError
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
from dropbox.whistleblower.display import CleaningLine, channel_name, cleaning_lines

log = logging.getLogger(__name__)

RECEIPT_TOKENS: web.AppKey[ReceiptTokens] = web.AppKey("whistleblower_receipt_tokens", ReceiptTokens)

#: The checkbox "remove hidden information from my files" (read only where the channel lets the
#: whistleblower choose; ticked by default).
CLEAN_FIELD = "clean"

#: Longest channel id accepted from a form or query.
MAX_CHANNEL_ID_CHARS = 64

# Messages of the submission form (msgids; translated at render).
EMPTY = N_("Your report is empty. Please describe what happened, answer a question, or attach at least "
           "one file.")
MALFORMED = N_("Your browser sent the form in a way we could not read, so nothing was saved. Please "
               "check the form and send it again. Files have to be chosen again.")
TEXT_TOO_LONG = N_("This text is longer than %(limit)s characters. Only the first %(limit)s characters "
                   "are shown below; the rest was not kept. Please shorten it, or save the full text "
                   "as a file and attach that instead.")
FIELD_TOO_LONG = N_("This answer is longer than %(limit)s characters. Only the first %(limit)s "
                    "characters are shown below. Please shorten it.")
TOO_LARGE = N_("The files are too large, so nothing was saved. Each file can be at most %(file_limit)s, "
               "and all files together at most %(total_limit)s. Please choose fewer or smaller files.")
TOO_MANY_FILES = N_("You chose too many files, so nothing was saved. You can send at most %(count)s "
                    "files at a time. You can put several files into one archive (such as a ZIP file), "
                    "or send more later from your mailbox.")
FILES_AGAIN = N_("For your safety, files you chose are never kept after an error. Please choose them "
                 "again.")
REQUIRED = N_("Please answer this question.")
NO_SPACE = N_("We could not store your report right now because the site is out of storage space. "
              "Nothing was saved and no receipt code was made. Please try again later. What you "
              "wrote is still in the form below, so you can copy it.")
NO_RECIPIENTS = N_("Reports cannot be received on this channel right now, because nobody is assigned "
                   "to read them. Nothing was saved. Please try again later.")
UNKNOWN_CHANNEL = N_("The place you chose to send your report to no longer exists. Please check the "
                     "form and send it again.")
BUSY = N_("The site is very busy right now, so your report was not saved. Please wait a minute and "
          "send it again. What you wrote is still in the form below.")
MALFORMED_SMALL = N_("Your browser sent the form in a way we could not read. Please go back and try "
                     "again.")
TRY_LATER = N_("The site is very busy right now, so your report was not read or saved. Please go back with "
               "your browser's Back button to keep what you wrote, wait a minute and send it again.")
TOO_SLOW = N_("Your upload arrived too slowly and was stopped, so nothing was saved. Please try again, "
              "perhaps with fewer or smaller files.")
RECEIPT_MISMATCH = N_("That is not the same code. Please compare it digit by digit with the code "
                      "above and type it again.")

#: What the domain's refusals mean for the person, and the status of the page that says so.
_REFUSED: Mapping[type[Exception], tuple[str, int]] = {
    UnknownChannel: (UNKNOWN_CHANNEL, 400),
    NoRecipients: (NO_RECIPIENTS, 503),
    KdfBusy: (BUSY, 503),
    StorageUnavailable: (NO_SPACE, 507),
}


def submit_spec(config_max_text: int, config_max_field: int) -> FormSpec:
    """The fields of the submission form; answers are `answer_<question id>`."""
    return FormSpec(
        fields={"channel": MAX_CHANNEL_ID_CHARS, "text": config_max_text, "contact": config_max_field,
                CLEAN_FIELD: 8},
        prefixed={ANSWER_PREFIX: config_max_field},
        max_prefixed=MAX_QUESTIONS,
    )


@dataclass(frozen=True)
class FormProblem:
    """One thing wrong with a submitted form: `field` (None for the whole form) and the message,
    already translated (plain text; the template escapes it)."""

    field: str | None
    message: str


def _problem(request: web.Request, field: str | None, msgid: str, **variables: object) -> FormProblem:
    return FormProblem(field, translate(request, msgid, **variables))


# -- views -------------------------------------------------------------------------------------


async def show_form(request: web.Request) -> web.Response:
    """GET: with several channels and none chosen yet, the choice; otherwise the form."""
    services = request.config_dict[SERVICES]
    channels = await services.store.channels()
    chosen = _find(channels, request.query.get("channel"))
    if len(channels) > 1 and chosen is None:
        choices = [(c, channel_name(request, c.name)) for c in channels]
        return render(request, "whistleblower/channels.html", {"channels": choices})
    return await _form_page(request, services, chosen or _default(channels), {}, [], 200)


async def submit(request: web.Request) -> web.Response:
    """POST: read and seal the upload, store the report, show the receipt once.

    The receipt comes from the stock (receipt_stock.py) once the form is read: no Argon2id run
    happens while a body streams, so a stalled upload holds nothing of the KDF pool.
    """
    services = request.config_dict[SERVICES]
    config = services.config
    try:
        parsed = await read_form(request, spec=submit_spec(config.max_text_chars, config.max_field_chars),
                                 limits=UploadLimits.from_config(config), blobs=services.blobs)
    except FormError as e:
        problems, status = _form_error_problems(request, e)
        return await _form_page(request, services, None, e.fields, problems, status,
                                headers={"Retry-After": "60"} if status == 503 else None)
    fields = parsed.fields
    async with owning(parsed.staged) as staged:
        try:
            channels = await services.store.channels()
            channel = _find(channels, fields.get("channel")) if fields.get("channel") else _default(channels)
            if channel is None:
                return await _form_page(request, services, None, fields,
                                        [_problem(request, None, UNKNOWN_CHANNEL)], 400)
            questions = _questions(channel)
            answers, missing = answers_for(questions, fields)
            problems = [_problem(request, q.field_name, REQUIRED) for q in missing]
            text = fields.get("text", "")
            if not text.strip() and not answers and not staged.files:
                problems.insert(0, _problem(request, "text", EMPTY))
            if problems:
                if staged.files:
                    problems.append(_problem(request, "files", FILES_AGAIN))
                return await _form_page(request, services, channel, fields, problems, 400)
            body = ReportBody(text=text, answers=answers, contact=fields.get("contact", "").strip())
            cleaned = await clean_files(cleaner=services.cleaner, store=services.store, staged=staged,
                                        channel_id=channel.id, wanted=bool(fields.get(CLEAN_FIELD)))
            receipt = await submit_report(store=services.store, kdf=services.public_kdf, install=services.install,
                                          channel_id=channel.id, body=body, staged=staged,
                                          take_receipt=services.receipts.take, cleaned=cleaned)
        except (UnknownChannel, NoRecipients, KdfBusy, StorageUnavailable) as e:
            if isinstance(e, NoRecipients):
                log.error("a report was refused: channel %r has no active caseworker", e.args[0])
            elif isinstance(e, StorageUnavailable):
                log.error("the database refused to store a report (%s)", type(e).__name__)
            message, status = _REFUSED[type(e)]
            problems = [_problem(request, None, message)]
            if staged.files:
                problems.append(_problem(request, "files", FILES_AGAIN))
            return await _form_page(request, services, None, fields, problems, status,
                                    headers={"Retry-After": "60"} if status == 503 else None)
    tokens = request.config_dict[RECEIPT_TOKENS]
    return _receipt_page(request, format_receipt(receipt), tokens.issue(receipt), mismatch=False,
                         cleaning=cleaning_lines(request, cleaned.shown))


async def confirm(request: web.Request) -> web.Response:
    """POST: the person typed their code back. Match → what happens next; else show it again."""
    try:
        form = await read_small_form(request)
    except MalformedForm:
        raise UserError(400, MALFORMED_SMALL) from None
    token, typed = form.get("receipt_token", ""), form.get("receipt", "")
    try:
        code = request.config_dict[RECEIPT_TOKENS].open(token)
    except TokenUnusable:
        return render(request, "whistleblower/receipt_unusable.html", status=400)
    if not typed_matches(typed, code):
        return _receipt_page(request, format_receipt(code), token, mismatch=True)
    return render(request, "whistleblower/submitted.html")


# -- helpers -----------------------------------------------------------------------------------


def _receipt_page(request: web.Request, receipt: str, token: str, *, mismatch: bool,
                  cleaning: list[CleaningLine] | None = None) -> web.Response:
    context = {"receipt": receipt, "token": token, "cleaning": cleaning or [],
               "error": translate(request, RECEIPT_MISMATCH) if mismatch else None}
    return render(request, "whistleblower/receipt.html", context, 400 if mismatch else 200)


def _find(channels: list[Channel], channel_id: str | None) -> Channel | None:
    if not channel_id or len(channel_id) > MAX_CHANNEL_ID_CHARS:
        return None
    return next((c for c in channels if c.id == channel_id), None)


def _default(channels: list[Channel]) -> Channel | None:
    """The operator's default channel (channels() lists it first), or None on an empty install."""
    return channels[0] if channels else None


def _questions(channel: Channel) -> list[Question]:
    """The channel's questions; a broken configuration must not stop reports from coming in."""
    try:
        return parse_questions(channel.questions)
    except InvalidQuestions as e:
        log.error("channel %r has invalid questions (%s); showing the form without them", channel.id, e)
        return []


def _form_error_problems(request: web.Request, e: FormError) -> tuple[list[FormProblem], int]:
    """What to tell the person about an upload that could not be read, and the status to send."""
    config = request.config_dict[SERVICES].config
    lang = request_language(request)
    if isinstance(e, FieldTooLong):
        limit = format_number(e.limit, lang)
        if e.name == "text":
            return [_problem(request, "text", TEXT_TOO_LONG, limit=limit)], 400
        if e.name.startswith(ANSWER_PREFIX) or e.name == "contact":
            return [_problem(request, e.name, FIELD_TOO_LONG, limit=limit)], 400
    elif isinstance(e, UploadTooLarge):
        return [_problem(request, "files", TOO_LARGE, file_limit=format_size(config.max_file_bytes, lang),
                         total_limit=format_size(config.max_submission_bytes, lang))], 413
    elif isinstance(e, TooManyFiles):
        return [_problem(request, "files", TOO_MANY_FILES, count=config.max_files_per_submission)], 413
    elif isinstance(e, NoSpace):
        log.error("out of storage space while receiving a report")
        return [_problem(request, None, NO_SPACE), _problem(request, "files", FILES_AGAIN)], 507
    elif isinstance(e, TryLater):
        return [_problem(request, None, TRY_LATER)], 503
    elif isinstance(e, TooSlow):
        return [_problem(request, None, TOO_SLOW), _problem(request, "files", FILES_AGAIN)], 408
    return [_problem(request, None, MALFORMED)], 400


async def _form_page(
    request: web.Request,
    services: Services,
    channel: Channel | None,
    values: Mapping[str, str],
    problems: list[FormProblem],
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The form for `channel` (else the one named in `values`, else the default), filled with `values`."""
    channels = await services.store.channels()
    channel = channel or _find(channels, values.get("channel")) or _default(channels)
    if channel is None:
        raise web.HTTPServiceUnavailable()  # an install without channels cannot take reports
    lang = request_language(request)
    default_lang = services.config.default_language
    config = services.config
    context = {
        "channel": channel,
        "channel_name": channel_name(request, channel.name),
        "several_channels": len(channels) > 1,
        "questions": [(q, q.label(lang, default_lang)) for q in _questions(channel)],
        "values": values,
        "problems": problems,
        "field_errors": {p.field: p.message for p in problems if p.field},
        "max_file_size": format_size(config.max_file_bytes, lang),
        "max_total_size": format_size(config.max_submission_bytes, lang),
        "max_files": config.max_files_per_submission,
    }
    return render(request, "whistleblower/submit.html", context, status, headers=headers)
