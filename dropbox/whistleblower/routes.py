"""The whistleblower app's URL map. Views live in submit.py, mailbox.py and minutes.py.

    GET  /{lang}/submit                  submit           the form (or the channel choice first)
    POST /{lang}/submit                  submit           multipart upload → the receipt page
    POST /{lang}/submit/confirm          submit_confirm   the receipt typed back → "what happens next"
    GET  /{lang}/mailbox                 mailbox_login    receipt login form
    POST /{lang}/mailbox/login           mailbox_login_submit   → session, 303 to the inbox
    GET  /{lang}/mailbox/inbox           mailbox_inbox    the report, the thread, the reply form
    POST /{lang}/mailbox/reply           mailbox_reply    multipart, CSRF token first → 303 inbox
    GET  /{lang}/mailbox/files/{file_id} mailbox_file     a caseworker's file, as an attachment
    POST /{lang}/mailbox/meeting         mailbox_meeting  CSRF, kind=meeting|call → flagged on the report, 303 inbox
    GET  /{lang}/mailbox/minutes         mailbox_minutes  an oral report's minutes (minutes.py)
    POST /{lang}/mailbox/minutes/approve mailbox_minutes_approve  CSRF, version, agree → the day recorded, 303
    POST /{lang}/mailbox/minutes/correct mailbox_minutes_correct  CSRF, version, text → to the caseworkers, 303
    POST /{lang}/mailbox/logout          mailbox_logout   CSRF → session ended, 303 to the landing page
    GET  /{lang}/mailbox/proof           mailbox_proof    warning page before the proof of reporting
    POST /{lang}/mailbox/proof           mailbox_proof    CSRF, options → the signed proof (proof.py)

The landing page (GET /{lang}/) comes with make_base_app.
"""

from __future__ import annotations

from aiohttp import web

from dropbox.receipt_tokens import ReceiptTokens
from dropbox.web.i18n import localized
from dropbox.whistleblower import mailbox, minutes, proof, submit

#: File ids are 32 lowercase hex characters; nothing else reaches the view.
_FILE_ID = "{file_id:[0-9a-f]{32}}"


def add_whistleblower_routes(app: web.Application) -> None:
    app[submit.RECEIPT_TOKENS] = ReceiptTokens()
    router = app.router
    router.add_get(localized("/submit"), submit.show_form, name="submit")
    router.add_post(localized("/submit"), submit.submit, name="submit")
    router.add_post(localized("/submit/confirm"), submit.confirm, name="submit_confirm")
    router.add_get(localized("/mailbox"), mailbox.login_form, name="mailbox_login")
    router.add_post(localized("/mailbox/login"), mailbox.login, name="mailbox_login_submit")
    router.add_get(localized("/mailbox/inbox"), mailbox.inbox, name="mailbox_inbox")
    router.add_post(localized("/mailbox/reply"), mailbox.reply, name="mailbox_reply")
    # No HEAD: aiohttp would send the streamed (decrypted) body after the headers anyway.
    router.add_get(localized("/mailbox/files/" + _FILE_ID), mailbox.download, name="mailbox_file", allow_head=False)
    router.add_post(localized("/mailbox/meeting"), mailbox.meeting, name="mailbox_meeting")
    router.add_get(localized("/mailbox/minutes"), minutes.minutes_page, name="mailbox_minutes")
    router.add_post(localized("/mailbox/minutes/approve"), minutes.approve, name="mailbox_minutes_approve")
    router.add_post(localized("/mailbox/minutes/correct"), minutes.correct, name="mailbox_minutes_correct")
    router.add_post(localized("/mailbox/logout"), mailbox.logout, name="mailbox_logout")
    router.add_get(localized("/mailbox/proof"), proof.warning, name="mailbox_proof")
    router.add_post(localized("/mailbox/proof"), proof.download, name="mailbox_proof")
