"""Signing in and out.

The login form is protected against cross-site posting before any session exists by a
double-submit token: a random value in an HttpOnly, SameSite=Strict cookie and the same value in
the form. No server state is created for someone who only looks at the login page, so fetching
it many times cannot fill the session store and lock caseworkers out.
"""

from __future__ import annotations

import hmac
import re
import secrets

from aiohttp import web

from dropbox import account_actions, totp
from dropbox.accounts import LoginFailed, MalformedLogin
from dropbox.caseworker import forms, labels
from dropbox.caseworker.staff import Flash, StaffSession, page, require_form, services, sessions, signed_in
from dropbox.services import Services
from dropbox.web.i18n import N_, translate, url_for
from dropbox.web.sessions import CSRF_FIELD, CsrfError
from dropbox.web.throttle import FAILURE_BUDGET, SLOWED_NOTICE

LOGIN_COOKIE = "cw_login"
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def _login_token(request: web.Request) -> str:
    existing = request.cookies.get(LOGIN_COOKIE, "")
    return existing if _TOKEN_SHAPE.fullmatch(existing) else secrets.token_urlsafe(32)


ADDED = N_("%(who)s was added to the channel %(channel)s by %(actor)s (%(day)s).")
REMOVED = N_("%(who)s was removed from the channel %(channel)s by %(actor)s (%(day)s).")
WRONG_CODES = N_("%(count)s wrong two-step codes were tried for your account since you last signed in. "
                 "If that was not you, someone knows your passphrase: change it now.")
WAIT = N_("Too many wrong codes in a row. Wait %(minutes)s minutes, then sign in with a new code.")


def _login_page(request: web.Request, *, error: bool = False, slowed: bool = False, wait_seconds: int = 0,
                status: int = 200) -> web.Response:
    token = _login_token(request)
    response = page(request, None, "caseworker/login.html", {
        "login_token": token, "failed": error,
        "wait_notice": translate(request, WAIT, minutes=str(-(-wait_seconds // 60))) if wait_seconds else "",
        "slowed_notice": translate(request, SLOWED_NOTICE) if slowed else "",
        "signed_out": request.method == "GET" and request.query.get("signed_out") == "1",
        "idle_minutes": services(request).config.caseworker_idle_seconds // 60,
        "lifetime_hours": services(request).config.caseworker_absolute_seconds // 3600,
    }, status)
    # A browser-session cookie (no Max-Age), like the session cookie itself.
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


async def home(request: web.Request) -> web.StreamResponse:
    target = "reports" if await signed_in(request) else "login"
    raise web.HTTPSeeOther(url_for(request, target))


async def login_form(request: web.Request) -> web.StreamResponse:
    if await signed_in(request):
        raise web.HTTPSeeOther(url_for(request, "reports"))
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await forms.small_form(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    submitted = forms.text(form, CSRF_FIELD, max_chars=64)
    if not _TOKEN_SHAPE.fullmatch(cookie) or not hmac.compare_digest(cookie, submitted):
        raise CsrfError("login token missing or wrong")
    name = forms.text(form, "name", max_chars=200).strip()
    passphrase = forms.text(form, "passphrase", max_chars=4096)
    code = forms.text(form, "totp", max_chars=32)

    budget = request.config_dict[FAILURE_BUDGET]
    slowed = await budget.before_attempt()
    svc = services(request)
    try:
        signed = await account_actions.sign_in(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name=name,
                                        passphrase=passphrase, code=code)
    except LoginFailed as e:
        if not isinstance(e, MalformedLogin):  # refused before any Argon2id work: no guess was made
            budget.record_failure()
        return _login_page(request, error=True, slowed=slowed, status=400)
    except totp.TotpWait as e:
        return _login_page(request, wait_seconds=e.seconds, status=429)
    account = signed.session
    payload = StaffSession(account=account, flashes=await _told_once(request, svc, signed))
    sessions(request).create(request, payload, group=account.caseworker.id)
    raise web.HTTPSeeOther(url_for(request, "reports"))


async def _told_once(request: web.Request, svc: Services, signed: account_actions.SignedIn) -> list[Flash]:
    """What this login must tell: wrong codes tried meanwhile, changes of channel members."""
    store = svc.store
    told = []
    if signed.wrong_codes:
        told.append(Flash("error", WRONG_CODES, (("count", str(signed.wrong_codes)),)))
    if signed.notices:
        names = {c.id: c.name for c in await store.caseworkers()}
        channel_names = {c.id: c.name for c in await store.channels()}
        for n in signed.notices:
            told.append(Flash("notice", ADDED if n.member else REMOVED, (
                ("who", names.get(n.subject_id, "?")), ("channel", channel_names.get(n.channel_id, n.channel_id)),
                ("actor", names.get(n.actor_id, "?") if n.actor_id else translate(request, labels.SYSTEM)),
                ("day", n.day))))
    return told


async def logout(request: web.Request) -> web.StreamResponse:
    staff, _form = await require_form(request, before_change=True)
    await account_actions.sign_out(store=services(request).store, session=staff.account)
    sessions(request).destroy(request)
    raise web.HTTPSeeOther(url_for(request, "login", query={"signed_out": "1"}))
