"""Every route of the caseworker app, and what turns domain errors into HTTP for all of them.

    GET  /{lang}/                         to the report list, or the login page
    GET  /{lang}/login, POST              sign in (name, passphrase, optional TOTP code)
    POST /{lang}/logout                   sign out: the session and its key are wiped
    GET  /{lang}/reports                  the list: ?status= &channel= &sort= &overdue=1 &page=
    GET  /{lang}/reports/{id}             the report page (opens a new report)
    GET  /{lang}/reports/{id}/files/{fid} a file, decrypted as a stream, as an attachment
    POST /{lang}/reports/{id}/reply       multipart: CSRF token first, text, feedback, files
    POST /{lang}/reports/{id}/export      the case as a signed ZIP, streamed (notes=1, originals=1)
    POST /{lang}/reports/{id}/forward     the same sealed to a recipient key (recipient=dbxr1:...)
    POST /{lang}/reports/{id}/notes | status | deadline | grant | reason | disclosure | close | retention | hold
    GET  /{lang}/reports/{id}/delete, POST    confirmation page, then deletion
    GET  /{lang}/oral, POST               register an oral report → its receipt, shown once (oral.py)
    POST /{lang}/reports/{id}/minutes     a corrected version of an oral report's minutes
    GET  /{lang}/settings                 passphrase, two-step login, notice address
    POST /{lang}/settings/passphrase | email | totp/start | totp/confirm | totp/disable
    GET  /{lang}/settings/totp, /{lang}/settings/totp/qr.png    enrolment page and its QR image
    GET  /{lang}/admin/channels, POST; GET /{lang}/admin/channels/{cid}, POST     (admin role)
    POST /{lang}/admin/memberships/{pid}  approve or reject an admin's own membership change (admin role)
    GET  /{lang}/admin/caseworkers, POST; POST /{lang}/admin/caseworkers/{cwid}   (admin role)
    GET  /{lang}/admin/audit              the audit log (admin role)
    GET  /{lang}/admin/outcomes, POST     the outcome categories reports are closed with (admin role)
    GET  /{lang}/admin/statistics, statistics.csv   yearly figures: ?year= &channel= (admin role)

The QR code is an ordinary same-origin PNG, so the base Content-Security-Policy (img-src 'self')
covers it. There is no JavaScript.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from dropbox import accounts, casework
from dropbox.caseworker import admin, cases, closing, export, login, oral, settings, statistics
from dropbox.caseworker.staff import sessions, to_login
from dropbox.kdf_pool import KdfBusy
from dropbox.notify import Notifier
from dropbox.web.appkeys import CONFIG, SERVICES
from dropbox.web.i18n import N_, localized
from dropbox.web.middleware import UserError, error_page

BUSY = N_("Many sign-ins are being processed right now. Please try again in a minute.")
UNREADABLE_TITLE = N_("This report could not be opened")
UNREADABLE = N_("The keys of this report, stored for you, are damaged, so nothing of it can be opened with "
                "them. Nothing was changed. Please tell the operator; a colleague with access may still "
                "be able to open it.")


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One place where casework's errors become HTTP, for every handler alike.

    NotGranted is a 404, the same page as for an id that never existed. A session whose key is
    gone is ended and sent to the login page.

    ReportUnreadable (the report's keys sealed to this caseworker do not open) is a page saying
    so, with 409 Conflict: the request is right, but the stored state of the report stands in
    its way, and repeating it will not help. Not 200 (nothing of the report was shown, and a
    monitor or script must not take the page for the report), not a 5xx (that says "our fault,
    try again later" and is the calm crash page every other failure gets; this one is known and
    named). Parts of a report that do not open are not this: the page shows the rest (200).
    """
    try:
        return await handler(request)
    except casework.NotGranted as e:
        raise web.HTTPNotFound() from e
    except casework.ReportUnreadable:
        return error_page(request, 409, title=UNREADABLE_TITLE, message=UNREADABLE)
    except accounts.KeyUnavailable as e:
        sessions(request).destroy(request)
        raise to_login(request) from e
    except KdfBusy as e:
        raise UserError(503, BUSY, headers={"Retry-After": "60"}) from e


async def _notices(app: web.Application) -> AsyncIterator[None]:
    """While the app runs, mail caseworkers when something new waits (only if SMTP is set up)."""
    notifier = Notifier(config=app[CONFIG], store=app[SERVICES].store)
    task = asyncio.create_task(notifier.run(), name="caseworker notices")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_caseworker_routes(app: web.Application) -> None:
    app.middlewares.append(domain_errors)
    if app[CONFIG].smtp_host:
        app.cleanup_ctx.append(_notices)
    r = app.router
    r.add_get(localized("/"), login.home, name="home")
    r.add_get(localized("/login"), login.login_form, name="login")
    r.add_post(localized("/login"), login.login)
    r.add_post(localized("/logout"), login.logout, name="logout")

    r.add_get(localized("/reports"), cases.report_list, name="reports")
    r.add_get(localized("/reports/{report_id}"), cases.report_page, name="report")
    # No HEAD: it would decrypt (and audit) a download whose body aiohttp then sends anyway.
    r.add_get(localized("/reports/{report_id}/files/{file_id}"), cases.download, name="file", allow_head=False)
    r.add_get(localized("/reports/{report_id}/files/{file_id}/original"), cases.download_original,
              name="file_original", allow_head=False)
    r.add_post(localized("/reports/{report_id}/reply"), cases.reply, name="reply")
    r.add_post(localized("/reports/{report_id}/notes"), cases.add_note, name="note")
    r.add_post(localized("/reports/{report_id}/status"), cases.change_status, name="status")
    r.add_post(localized("/reports/{report_id}/close"), cases.close_report, name="close")
    r.add_post(localized("/reports/{report_id}/deadline"), cases.record_deadline, name="deadline")
    r.add_post(localized("/reports/{report_id}/reason"), cases.record_reason, name="reason")
    r.add_post(localized("/reports/{report_id}/disclosure"), cases.disclosure_notice, name="disclosure")
    r.add_post(localized("/reports/{report_id}/grant"), cases.grant, name="grant")
    r.add_post(localized("/reports/{report_id}/retention"), cases.set_retention, name="retention")
    r.add_post(localized("/reports/{report_id}/hold"), cases.legal_hold, name="legal_hold")
    r.add_post(localized("/reports/{report_id}/minutes"), oral.publish, name="minutes")
    r.add_get(localized("/oral"), oral.new_form, name="oral_new")
    r.add_post(localized("/oral"), oral.register)
    r.add_post(localized("/reports/{report_id}/export"), export.export_case, name="export")
    r.add_post(localized("/reports/{report_id}/forward"), export.forward_case, name="forward")
    r.add_get(localized("/reports/{report_id}/delete"), cases.delete_form, name="delete")
    r.add_post(localized("/reports/{report_id}/delete"), cases.delete)

    r.add_get(localized("/settings"), settings.settings_page, name="settings")
    r.add_post(localized("/settings/passphrase"), settings.change_passphrase, name="passphrase")
    r.add_post(localized("/settings/email"), settings.set_notice_address, name="notice_address")
    r.add_post(localized("/settings/totp/start"), settings.totp_start, name="totp_start")
    r.add_get(localized("/settings/totp"), settings.totp_page, name="totp")
    r.add_get(localized("/settings/totp/qr.png"), settings.totp_qr, name="totp_qr")
    r.add_post(localized("/settings/totp/confirm"), settings.totp_confirm, name="totp_confirm")
    r.add_post(localized("/settings/totp/disable"), settings.totp_disable, name="totp_disable")

    r.add_get(localized("/admin/channels"), admin.channels_page, name="admin_channels")
    r.add_post(localized("/admin/channels"), admin.channel_add)
    r.add_get(localized("/admin/channels/{channel_id}"), admin.channel_page, name="admin_channel")
    r.add_post(localized("/admin/channels/{channel_id}"), admin.channel_update)
    r.add_post(localized("/admin/memberships/{pending_id}"), admin.membership_settle, name="admin_membership")
    r.add_get(localized("/admin/caseworkers"), admin.caseworkers_page, name="admin_caseworkers")
    r.add_post(localized("/admin/caseworkers"), admin.caseworker_add)
    r.add_post(localized("/admin/caseworkers/{caseworker_id}"), admin.caseworker_change, name="admin_caseworker")
    r.add_get(localized("/admin/audit"), admin.audit_page, name="audit")
    r.add_get(localized("/admin/outcomes"), closing.outcomes_page, name="admin_outcomes")
    r.add_post(localized("/admin/outcomes"), closing.outcomes_save)
    r.add_get(localized("/admin/statistics"), statistics.statistics_page, name="admin_statistics")
    r.add_get(localized("/admin/statistics.csv"), statistics.statistics_csv, name="admin_statistics_csv")
