"""Who is signed in: the session payload, and the check every caseworker page starts with.

The payload holds the caseworker's unwrapped private key (inside `CaseworkerSession`) and lives
only in server memory; `wipe()` runs at logout, at idle timeout and at shutdown and drops the
references to the key (it cannot zero it: see sealing.CaseworkerKey.wipe). On every request
the account row is read again, so an account disabled by an admin stops working at its next
click, and a role taken away no longer counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from multidict import MultiDictProxy

from dropbox import casework
from dropbox.accounts import CaseworkerSession
from dropbox.appkeys import SERVICES, SESSIONS
from dropbox.i18n import render, translate, url_for
from dropbox.services import Services
from dropbox.sessions import CSRF_FIELD, Session, SessionStore
from dropbox.storage import Caseworker, NotFound
from dropbox.totp import TotpSeed


@dataclass(frozen=True)
class Flash:
    """A one-time message for the next page: `message` is a msgid, translated when shown."""

    kind: str  # "notice" or "error"
    message: str
    values: tuple[tuple[str, str], ...] = ()


@dataclass(eq=False)
class StaffSession:
    """A signed-in caseworker's session payload."""

    account: CaseworkerSession
    #: A TOTP seed shown for enrolment and not yet confirmed with a code.
    pending_totp: TotpSeed | None = field(default=None, repr=False)
    flashes: list[Flash] = field(default_factory=list)

    def wipe(self) -> None:
        self.account.wipe()
        self.pending_totp = None
        self.flashes.clear()


@dataclass(frozen=True)
class Staff:
    """The current request's caseworker: their session and their account as stored right now."""

    session: Session[StaffSession]
    caseworker: Caseworker

    @property
    def payload(self) -> StaffSession:
        return self.session.payload

    @property
    def account(self) -> CaseworkerSession:
        return self.session.payload.account

    def flash(self, kind: str, message: str, **values: str) -> None:
        self.payload.flashes.append(Flash(kind, message, tuple(values.items())))


def sessions(request: web.Request) -> SessionStore[StaffSession]:
    return request.config_dict[SESSIONS]


def services(request: web.Request) -> Services:
    return request.config_dict[SERVICES]


async def signed_in(request: web.Request) -> Staff | None:
    """The signed-in caseworker, or None (and the session ended) if the account was disabled,
    removed, or the session's key is gone."""
    store = sessions(request)
    session = store.get(request)
    if session is None:
        return None
    account = session.payload.account
    try:
        current: Caseworker | None = await services(request).store.caseworker(account.caseworker.id)
    except NotFound:
        current = None
    if current is None or current.disabled or not casework.key_usable(account):
        store.destroy(request)
        return None
    return Staff(session=session, caseworker=current)


def to_login(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(url_for(request, "login"))


async def require(request: web.Request, *, admin: bool = False) -> Staff:
    """The signed-in caseworker, or a redirect to the login page. Admin pages answer 404 to
    everyone else, as if they did not exist."""
    staff = await signed_in(request)
    if staff is None:
        raise to_login(request)
    if admin and not staff.caseworker.is_admin:
        raise web.HTTPNotFound()
    return staff


async def require_form(request: web.Request, *, admin: bool = False) -> tuple[Staff, MultiDictProxy[str]]:
    """For a url-encoded POST: the caseworker and the form, after the CSRF token was checked."""
    staff = await require(request, admin=admin)
    form = await request.post()
    token = form.get(CSRF_FIELD)
    SessionStore.verify_csrf(staff.session, token if isinstance(token, str) else None)
    return staff, form  # type: ignore[return-value]


def page(request: web.Request, staff: Staff | None, template: str, context: dict[str, object] | None = None,
         status: int = 200, *, section: str = "") -> web.Response:
    """Render a caseworker page with the menu and any flashed messages (shown once)."""
    flashes = []
    if staff is not None:
        flashes = [{"kind": f.kind, "text": translate(request, f.message, **dict(f.values))}
                   for f in staff.payload.flashes]
        staff.payload.flashes.clear()
    full: dict[str, object] = {"me": staff.caseworker if staff else None, "flashes": flashes, "section": section}
    full.update(context or {})
    return render(request, template, full, status)
