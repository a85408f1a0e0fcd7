"""Oral reports on the caseworker side (dropbox/oral.py): register one, hand over its receipt,
publish a corrected version of its minutes.

    GET  /{lang}/oral                       the registration form
    POST /{lang}/oral                       multipart, CSRF token first → the receipt page, shown once
    POST /{lang}/reports/{id}/minutes       a corrected version of the minutes → 303 to the report

The receipt page is the POST's own response (no redirect): the code is in no URL, session or
flash, so it cannot be shown again, exactly like a web receipt.
"""

from __future__ import annotations

from aiohttp import web

from dropbox import oral
from dropbox.caseworker import forms, labels
from dropbox.caseworker.staff import Staff, page, require, require_form, services
from dropbox.config import Config
from dropbox.ids import today
from dropbox.reports import owning
from dropbox.web import uploads
from dropbox.web.i18n import N_, translate, url_for
from dropbox.web.middleware import UserError
from dropbox.web.sessions import CSRF_FIELD, SessionStore

EMPTY_MINUTES = N_("Write the minutes or the transcript.")
NO_CONSENT = N_("A recording can only be kept if the reporter consented to it. Record their consent, or leave "
                "the recording out.")
BAD_CHOICE = N_("Choose a channel you belong to, how the report was made, and the day of the consent answer "
                "(not in the future).")
VERSION_CLOSED = N_("A colleague published another version meanwhile. Nothing was saved: read the latest "
                    "version and try again.")


def _form_spec(config: Config, staff: Staff) -> uploads.FormSpec:
    """The registration form: the CSRF token first, the minutes, four short choices, a recording."""
    def token(value: str) -> None:
        SessionStore.verify_csrf(staff.session, value)
    short = {name: 64 for name in ("channel", "medium", "consent", "consent_day")}
    return uploads.FormSpec(fields={"minutes": config.max_text_chars, **short}, file_field="recording",
                            first=(CSRF_FIELD, token))


async def _my_channels(request: web.Request, staff: Staff) -> list[tuple[str, str]]:
    store = services(request).store
    memberships = await store.channel_memberships()
    return [(c.id, c.name) for c in await store.channels() if staff.caseworker.id in memberships.get(c.id, set())]


async def _form_page(request: web.Request, staff: Staff, *, values: dict[str, str] | None = None,
                     error: str | None = None, status: int = 200) -> web.Response:
    return page(request, staff, "caseworker/oral_new.html", {
        "channels": await _my_channels(request, staff),
        "media": [(k, translate(request, v)) for k, v in labels.MEDIUM_LABELS.items()],
        "values": {"consent_day": today().isoformat(), **(values or {})},
        "error": translate(request, error) if error else None,
        "max_files": services(request).config.max_files_per_submission,
    }, status, section="reports")


async def new_form(request: web.Request) -> web.StreamResponse:
    staff = await require(request)
    return await _form_page(request, staff)


async def register(request: web.Request) -> web.StreamResponse:
    """Read the form, make the report, and answer with the receipt page (status 200, shown once)."""
    staff = await require(request)
    svc = services(request)
    try:
        form = await uploads.read_form(request, spec=_form_spec(svc.config, staff),
                                       limits=uploads.UploadLimits.from_config(svc.config), blobs=svc.blobs,
                                       public=False)
    except uploads.FormError as e:
        raise forms.upload_error(e) from e
    values = form.fields
    async with owning(form.staged) as staged:
        try:
            registration = oral.Registration(
                channel_id=values.get("channel", ""), medium=values.get("medium", ""),
                minutes=values.get("minutes", ""), recording_consent=values.get("consent") == "yes",
                consent_day=oral.consent_day(values.get("consent_day", "")))
            registered = await oral.register(store=svc.store, kdf=svc.staff_kdf, install=svc.install,
                                             session=staff.account, registration=registration, staged=staged)
        except oral.EmptyText:
            return await _form_page(request, staff, values=values, error=EMPTY_MINUTES, status=400)
        except oral.RecordingWithoutConsent:
            return await _form_page(request, staff, values=values, error=NO_CONSENT, status=400)
        except oral.InvalidRegistration:
            return await _form_page(request, staff, values=values, error=BAD_CHOICE, status=400)
    return page(request, staff, "caseworker/oral_receipt.html", {
        "receipt": registered.grouped, "report_id": registered.report_id,
    }, section="reports")


async def publish(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request)
    report_id = forms.hex_id(request.match_info["report_id"])
    after = forms.integer(form, "after")
    text = forms.text(form, "text", max_chars=services(request).config.max_text_chars)
    target = url_for(request, "report", report_id=report_id) + "#minutes"
    if after is None:
        raise UserError(400, forms.BAD_FORM)
    try:
        version = await oral.publish_version(store=services(request).store, session=staff.account,
                                             report_id=report_id, after=after, text=text)
    except oral.EmptyText:
        staff.flash("error", EMPTY_MINUTES)
    except oral.VersionClosed:
        staff.flash("error", VERSION_CLOSED)
    except oral.NotOral as e:  # a report handed in on the web has no minutes
        raise UserError(400, forms.BAD_FORM) from e
    else:
        staff.flash("notice", N_("Version %(version)s of the minutes was published. The reporter is asked to "
                                 "approve it in their mailbox."), version=str(version))
    raise web.HTTPSeeOther(target)


def medium_label(request: web.Request, medium: str) -> str:
    return translate(request, labels.MEDIUM_LABELS.get(medium, medium))


def consent_label(request: web.Request, record: oral.OralRecord) -> str:
    """"Yes, on D" / "No, on D": the reporter's answer to the question about a recording."""
    message = N_("Yes (answered on %(day)s)") if record.recording_consent else N_("No (answered on %(day)s)")
    return translate(request, message, day=record.consent_day)
