"""Proof of reporting, from the mailbox: a warning page first, then the signed file (dropbox/proof.py).

    GET  /{lang}/mailbox/proof   mailbox_proof           what the file is and who can learn what from it
    POST /{lang}/mailbox/proof   mailbox_proof_download  CSRF, options → the proof as a text attachment

Opt-in and never automatic: a file on the person's device that says they reported can hurt them,
so the page that says so in plain words is the only way to the download (the download is a POST
from its form; there is no link that fetches the file directly). No JavaScript.
"""

from __future__ import annotations

from aiohttp import web

from dropbox.ids import today
from dropbox.proof import ReportDamaged, make_proof
from dropbox.submissions import NotFound
from dropbox.web.appkeys import SERVICES
from dropbox.web.i18n import N_, render, translate, url_for
from dropbox.web.middleware import UserError
from dropbox.web.sessions import CSRF_FIELD
from dropbox.whistleblower.mailbox import mailbox_sessions, require_session, small_form

#: The proof's first lines, in the reader's language (signed with the rest, not parsed).
INTRO = (
    N_("This file proves that the report described below was received through this whistleblowing channel."),
    N_("Anyone who finds this file learns that a report was made: keep it where only you can reach it."),
    N_("It does not contain your receipt code and cannot open your mailbox."),
    N_("To check that it is genuine, compare the signing key's fingerprint below with the one on the "
       "channel's front page, and see docs/PROOF.md of the drop box software."),
)
#: What the proof says when the operator did not name the organisation.
UNNAMED = "(not named by the operator)"
FILE_NAME = "proof-of-reporting.txt"
DAMAGED = N_("No proof can be made right now: a part of your report or your messages could not be opened, "
             "because its stored copy is damaged. Your mailbox shows which. You can tell the caseworkers "
             "in a message.")


async def warning(request: web.Request) -> web.Response:
    """What the file is, what it reveals, and the form that downloads it."""
    require_session(request)
    return render(request, "whistleblower/proof.html")


async def download(request: web.Request) -> web.StreamResponse:
    """POST from the warning page (CSRF): the signed proof, as an attachment."""
    session = require_session(request)
    form = await small_form(request)
    mailbox_sessions(request).verify_csrf(session, form.get(CSRF_FIELD))
    services = request.config_dict[SERVICES]
    try:
        body = await make_proof(
            store=services.store, report_id=session.payload.report_id, report_key=session.payload.report_key,
            signer=services.signer, organisation=services.config.organisation_name or UNNAMED,
            include_contents=form.get("contents") == "1", include_messages=form.get("messages") == "1",
            intro=[translate(request, line) for line in INTRO], today=today())
    except NotFound:  # deleted (retention) while the session was open
        mailbox_sessions(request).destroy(request)
        raise web.HTTPSeeOther(url_for(request, "mailbox_login", query={"ended": "1"})) from None
    except ReportDamaged as e:  # 409 as for an export: the request is right, the stored report is not whole
        raise UserError(409, DAMAGED) from e
    return web.Response(body=body, headers={
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Disposition": f"attachment; filename=\"{FILE_NAME}\"",
    })
