"""The report list, the report page and everything done from it.

Each handler: who is signed in (and, for a POST, the CSRF token), the ids from the path, one call
into dropbox.casework, then a page or a redirect (POST/redirect/GET). `NotGranted` becomes a 404
in routes.py, the same page an id that never existed gets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from dropbox import casework, oral, outcomes
from dropbox.caseworker import forms, labels
from dropbox.caseworker import oral as oral_views
from dropbox.caseworker.staff import Staff, page, require, require_form, services
from dropbox.cleaning import KIND_LABEL, STAFF_OUTCOME_TEXT
from dropbox.reports import Damaged, FileUnreadable, FileView, Part
from dropbox.retention import max_retention_days
from dropbox.web import uploads
from dropbox.web.appkeys import TODAY
from dropbox.web.downloads import stream_download
from dropbox.web.formats import format_size
from dropbox.web.i18n import N_, request_language, translate, url_for
from dropbox.web.middleware import UserError
from dropbox.web.sessions import CSRF_FIELD, SessionStore

log = logging.getLogger(__name__)


def _report_url(request: web.Request, report_id: str, anchor: str = "") -> str:
    return url_for(request, "report", report_id=report_id) + (f"#{anchor}" if anchor else "")


FILE_UNREADABLE = N_("This file could not be opened: its stored copy is damaged. Please tell the operator.")
#: Shown in place of each sealed part that did not open (reports.Damaged); the rest of the page shows as usual.
DAMAGED: Mapping[Part, str] = {
    Part.REPORT: N_("The report's own text and answers could not be opened: their stored copy is damaged. "
                    "Please tell the operator."),
    Part.MESSAGE: N_("This message could not be opened: its stored copy is damaged. Please tell the operator."),
    Part.NOTE: N_("This note could not be opened: its stored copy is damaged. Please tell the operator."),
    Part.REASON: N_("This reason could not be opened: its stored copy is damaged. Please tell the operator."),
    Part.MINUTES: N_("This version of the minutes could not be opened: its stored copy is damaged. "
                     "Please tell the operator."),
    Part.FILE: FILE_UNREADABLE,
}


def damaged_line(request: web.Request, value: object) -> str | None:
    """The line shown in place of a part that did not open; None for one that did."""
    return translate(request, DAMAGED[value.part]) if isinstance(value, Damaged) else None



def cleaning_note(request: web.Request, file: FileView) -> str | None:
    """What cleaning did to a file, for the caseworker: the outcome and the kinds removed (never
    the values: those are what the whistleblower asked to keep from them)."""
    if file.cleaning is None:
        return None
    kinds = list(dict.fromkeys(translate(request, KIND_LABEL[f.kind]) for f in file.cleaning.found))
    note = translate(request, STAFF_OUTCOME_TEXT[file.cleaning.outcome])
    if kinds and file.cleaning.cleaned:
        note += " (" + translate(request, N_("removed: %(kinds)s"), kinds=", ".join(kinds)) + ")"
    return note


# --- the list ----------------------------------------------------------------------------------


async def report_list(request: web.Request) -> web.StreamResponse:
    staff = await require(request)
    store = services(request).store
    channels = await store.channels()
    filters = forms.report_filter(request.query, {c.id for c in channels})
    listing = await casework.list_reports(store=store, session=staff.account, filters=filters,
                                          on=request.config_dict[TODAY]())

    def page_url(number: int) -> str:
        query = {"status": filters.status or "", "channel": filters.channel_id or "", "sort": filters.sort,
                 "overdue": "1" if filters.overdue_only else "", "page": str(number)}
        return url_for(request, "reports", query={k: v for k, v in query.items() if v})

    return page(request, staff, "caseworker/reports.html", {
        "listing": listing, "filters": filters, "channels": channels,
        "channel_names": {c.id: c.name for c in channels},
        "status_labels": {k: labels.status(request, k) for k in labels.STATUS_LABELS},
        "status_options": labels.statuses(request, tuple(labels.STATUS_LABELS)),
        "sort_options": labels.sorts(request),
        "page_url": page_url,
    }, section="reports")


# --- one report --------------------------------------------------------------------------------


async def report_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request)
    report_id = forms.hex_id(request.match_info["report_id"])
    store = services(request).store
    # First: it writes the audit entries of new approvals, which the history below then shows.
    spoken = await oral.for_caseworker(store=store, session=staff.account, report_id=report_id)
    view = await casework.read_report(store=store, session=staff.account, report_id=report_id,
                                      on=request.config_dict[TODAY]())
    names = {c.id: c.name for c in await store.caseworkers()}
    history = [{"hour": e.hour, "who": labels.actor(request, e, names), "what": labels.audit_action(request, e, names)}
               for e in view.history]
    every_file = [*view.files, *(f for message in view.messages for f in message.files)]
    return page(request, staff, "caseworker/report.html", {
        "view": view, "report": view.report, "names": names, "history": history,
        "status_label": labels.status(request, view.report.status),
        "status_options": labels.statuses(request, casework.SETTABLE_STATUSES),
        "filesize": lambda size: format_size(size, request_language(request)),
        "cleaning_note": lambda file: cleaning_note(request, file),
        "max_retention": max_retention_days(services(request).config),
        "outcomes": [(label, translate(request, label)) for label in await outcomes.categories(store=store)],
        "outcome_shown": translate(request, view.report.outcome) if view.report.outcome else "",
        "max_files": services(request).config.max_files_per_submission,
        "default_lang": services(request).config.default_language,
        "oral": spoken, "oral_medium": oral_views.medium_label(request, spoken.record.medium) if spoken else "",
        "oral_consent": oral_views.consent_label(request, spoken.record) if spoken else "",
        "damaged": lambda value: damaged_line(request, value),
        "has_originals": any(isinstance(f, FileView) and f.original_id for f in every_file),
    }, section="reports")


async def download_original(request: web.Request) -> web.StreamResponse:
    """The original of a cleaned file, kept as evidence: a separate link and audit action."""
    return await download(request, original=True)


async def download(request: web.Request, *, original: bool = False) -> web.StreamResponse:
    """Decrypt and stream a file (web/downloads.py: a damaged blob never looks complete)."""
    staff = await require(request)
    report_id = forms.hex_id(request.match_info["report_id"])
    file_id = forms.hex_id(request.match_info["file_id"])
    svc = services(request)
    try:
        opened = await casework.open_download(store=svc.store, blobs=svc.blobs, session=staff.account,
                                              report_id=report_id, file_id=file_id, original=original)
    except FileUnreadable as e:
        raise UserError(409, FILE_UNREADABLE) from e
    return await stream_download(request, opened, unreadable=FILE_UNREADABLE)


async def reply(request: web.Request) -> web.StreamResponse:
    """A reply with files, read by the upload reader both apps share (web/uploads.py): the CSRF
    token must be the first part, then the grant is checked, and only then are files sealed to
    disk as they stream; every limit of a whistleblower's upload holds here too."""
    staff = await require(request)
    report_id = forms.hex_id(request.match_info["report_id"])
    svc = services(request)

    async def token_then_grant(token: str) -> None:
        SessionStore.verify_csrf(staff.session, token)
        await casework.check_access(store=svc.store, session=staff.account, report_id=report_id)

    spec = uploads.FormSpec(fields={"text": svc.config.max_text_chars, "feedback": 8},
                            first=(CSRF_FIELD, token_then_grant))
    try:
        form = await uploads.read_form(request, spec=spec, limits=uploads.UploadLimits.from_config(svc.config),
                                       blobs=svc.blobs, public=False)
    except uploads.FormError as e:
        raise forms.upload_error(e) from e
    try:
        await casework.post_reply(store=svc.store, session=staff.account, report_id=report_id,
                                  text=form.fields.get("text", ""), staged=form.staged,
                                  gives_feedback=forms.checkbox(form.fields, "feedback"), cleaner=svc.cleaner)
    except casework.EmptyText:
        staff.flash("error", N_("Write a reply or choose a file before sending."))
        raise web.HTTPSeeOther(_report_url(request, report_id, "reply")) from None
    staff.flash("notice", N_("Your reply was sent. The whistleblower sees it the next time they sign in."))
    raise web.HTTPSeeOther(_report_url(request, report_id, "thread"))


async def _action(request: web.Request) -> tuple[Staff, dict[str, str], str]:
    staff, form = await require_form(request)
    report_id = forms.hex_id(request.match_info["report_id"])
    return staff, form, report_id  # type: ignore[return-value]


async def add_note(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    text = forms.text(form, "text", max_chars=services(request).config.max_text_chars)
    try:
        await casework.add_note(store=services(request).store, session=staff.account, report_id=report_id, text=text)
    except casework.EmptyText:
        staff.flash("error", N_("The note is empty."))
    else:
        staff.flash("notice", N_("Your note was saved. Only caseworkers can read it."))
    raise web.HTTPSeeOther(_report_url(request, report_id, "notes"))


async def change_status(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    status = forms.text(form, "status", max_chars=20)
    try:
        changed = await casework.set_status(store=services(request).store, session=staff.account,
                                            report_id=report_id, status=status)
    except casework.InvalidChoice as e:
        raise UserError(400, forms.BAD_FORM) from e
    if changed:
        staff.flash("notice", N_("The status is now: %(status)s"), status=labels.status(request, status))
    raise web.HTTPSeeOther(_report_url(request, report_id))


async def close_report(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    svc = services(request)
    outcome = forms.text(form, "outcome", max_chars=outcomes.MAX_LABEL_CHARS)
    message = forms.text(form, "message", max_chars=svc.config.max_text_chars)
    try:
        closed = await casework.close_report(
            store=svc.store, session=staff.account, report_id=report_id, outcome=outcome, message=message,
            categories=await outcomes.categories(store=svc.store),
            max_retention_days=max_retention_days(svc.config))
    except casework.InvalidChoice:
        staff.flash("error", N_("Choose the outcome to close the report with."))
        raise web.HTTPSeeOther(_report_url(request, report_id, "close")) from None
    if closed:
        staff.flash("notice", N_("The report is closed with the outcome: %(outcome)s"),
                    outcome=translate(request, outcome))
    raise web.HTTPSeeOther(_report_url(request, report_id))


async def disclosure_notice(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    text = forms.text(form, "text", max_chars=services(request).config.max_text_chars)
    try:
        await casework.send_disclosure_notice(store=services(request).store, session=staff.account,
                                              report_id=report_id, text=text)
    except casework.EmptyText:
        staff.flash("error", N_("Write the notice."))
        raise web.HTTPSeeOther(_report_url(request, report_id, "disclosure")) from None
    staff.flash("notice", N_("The notice was sent to the whistleblower's mailbox, and today's date recorded."))
    raise web.HTTPSeeOther(_report_url(request, report_id, "disclosure"))


async def record_reason(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    kind = forms.text(form, "kind", max_chars=20)
    text = forms.text(form, "reason", max_chars=casework.MAX_REASON_CHARS)
    try:
        recorded = await casework.record_reason(store=services(request).store, session=staff.account,
                                                report_id=report_id, kind=kind, text=text)
    except casework.InvalidChoice as e:
        raise UserError(400, forms.BAD_FORM) from e
    except casework.EmptyText:
        staff.flash("error", N_("Write the reason."))
    else:
        if recorded:
            staff.flash("notice", N_("The reason was recorded. Only caseworkers can read it."))
    raise web.HTTPSeeOther(_report_url(request, report_id, "reasons"))


async def record_deadline(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    which = forms.text(form, "deadline", max_chars=20)
    try:
        await casework.record_deadline(store=services(request).store, session=staff.account, report_id=report_id,
                                       which=which)
    except casework.InvalidChoice as e:
        raise UserError(400, forms.BAD_FORM) from e
    staff.flash("notice", N_("Recorded."))
    raise web.HTTPSeeOther(_report_url(request, report_id))


async def grant(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    grantee = forms.text(form, "caseworker", max_chars=32)
    try:
        added = await casework.grant(store=services(request).store, session=staff.account, report_id=report_id,
                                     grantee_id=grantee)
    except casework.UnknownColleague:
        staff.flash("error", N_("Choose a colleague from the list."))
    else:
        if added:
            staff.flash("notice", N_("Your colleague can now read this report."))
    raise web.HTTPSeeOther(_report_url(request, report_id, "access"))


async def set_retention(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    days = forms.integer(form, "days")
    most = max_retention_days(services(request).config)
    try:
        expires = await casework.set_retention(store=services(request).store, session=staff.account,
                                               report_id=report_id, days=days or 0, max_retention_days=most)
    except casework.InvalidChoice:
        staff.flash("error", N_("Enter a number of days between 1 and %(most)s."), most=str(most))
    else:
        if expires is None:
            staff.flash("notice", N_("The report is kept while it is open, and %(days)s days after it is closed."),
                        days=str(days))
        else:
            staff.flash("notice", N_("The report will be deleted on %(day)s."), day=expires)
    raise web.HTTPSeeOther(_report_url(request, report_id, "retention"))


async def legal_hold(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    hold = forms.text(form, "hold", max_chars=1)
    if hold not in ("0", "1"):
        raise UserError(400, forms.BAD_FORM)
    changed = await casework.set_legal_hold(store=services(request).store, session=staff.account,
                                            report_id=report_id, hold=hold == "1")
    if changed:
        staff.flash("notice", N_("The legal hold is on: the report is not deleted automatically.") if hold == "1"
                    else N_("The legal hold is lifted."))
    raise web.HTTPSeeOther(_report_url(request, report_id, "retention"))


async def delete_form(request: web.Request) -> web.StreamResponse:
    staff = await require(request)
    report_id = forms.hex_id(request.match_info["report_id"])
    await casework.check_access(store=services(request).store, session=staff.account, report_id=report_id)
    return page(request, staff, "caseworker/delete.html", {"report_id": report_id}, section="reports")


async def delete(request: web.Request) -> web.StreamResponse:
    staff, form, report_id = await _action(request)
    svc = services(request)
    if not forms.checkbox(form, "confirm"):
        await casework.check_access(store=svc.store, session=staff.account, report_id=report_id)
        staff.flash("error", N_("Tick the box to confirm that the report should be deleted."))
        raise web.HTTPSeeOther(url_for(request, "delete", report_id=report_id))
    await casework.delete_report(store=svc.store, session=staff.account, report_id=report_id)
    staff.flash("notice", N_("The report was deleted."))
    raise web.HTTPSeeOther(url_for(request, "reports"))
