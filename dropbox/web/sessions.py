"""Server-side sessions held only in memory, behind a cookie that dies with the browser.

The payload is the domain's (a whistleblower's report key, a caseworker's private key), so
nothing about a session is ever written to disk, and a restart logs everyone out. The cookie
carries only a random 256-bit id: HttpOnly, SameSite=Strict, Path=/, no Expires/Max-Age (a
browser-session cookie; Tor Browser drops it when closed) and no Secure flag, because onion
services are served over plain http and the onion itself provides transport security.

A session ends when it has been idle too long, when it reaches its absolute lifetime (a stolen
cookie is not good for ever, however busy its thief keeps it), at logout, or when it is evicted:
each session may carry a group (the report a receipt opened, the caseworker account), a group
keeps at most `max_per_group` sessions (a new login evicts the oldest of its group), and a full
store evicts its least recently used session instead of refusing the login. So one receipt, or
one account, logged in again and again cannot fill the store and lock everybody else out.

Cookie changes (`create`, `destroy`, an expired id) are queued on the request and applied by an
`on_response_prepare` hook, so they reach whatever response goes out: a rendered page, a raised
`HTTPSeeOther`, or an error page.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

from aiohttp import web

logger = logging.getLogger(__name__)

#: Name of the hidden form field that carries the CSRF token.
CSRF_FIELD = "csrf_token"

#: No Expires/Max-Age (dies with the browser), no Secure (onion services are plain http).
_COOKIE_FLAGS = "HttpOnly; Path=/; SameSite=Strict"
_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"

#: token_urlsafe(32) yields 43 characters from this alphabet; anything else is not ours.
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
_COOKIE_NAME = re.compile(r"[A-Za-z0-9_-]+")


class Wipeable(Protocol):
    """A session payload. `wipe()` runs when the session ends: it zeroes key material the payload
    holds in a buffer of its own (the mailbox's report key) and drops references to the rest
    (a caseworker's PyNaCl key, which Python cannot zero; see docs/SECURITY.md)."""

    def wipe(self) -> None: ...


P = TypeVar("P", bound=Wipeable)


class SessionError(Exception):
    """Root of the session errors."""


class CsrfError(SessionError):
    """A POST carried no CSRF token, or not the one of its session (forged, or a stale form)."""


@dataclass(eq=False)
class Session(Generic[P]):
    """One live session. Secrets are kept out of repr so they never reach a log line."""

    id: str = field(repr=False)
    payload: P = field(repr=False)
    csrf_token: str = field(repr=False)
    last_seen: float
    #: When it was created, for the absolute lifetime.
    created: float = 0.0
    #: Sessions of one group (a report, an account) are capped together; None: no group.
    group: str | None = field(default=None, repr=False)


@dataclass
class _CookieAction:
    """What the response must do with the cookie: set it to `value`, or delete it (None)."""

    value: str | None


_COOKIE_ACTION: web.RequestKey[_CookieAction] = web.RequestKey("session_cookie_action", _CookieAction)
_NEW_SESSION: web.RequestKey[Session[Any]] = web.RequestKey("session_created", Session)


class SessionStore(Generic[P]):
    """Live sessions of one app, keyed by their random id, with an idle timeout, an optional
    absolute lifetime, a cap per group and least-recently-used eviction when full.

    Both apps run on the same host behind tor, and cookies ignore ports, so each app passes its
    own `cookie_name`.
    """

    def __init__(
        self,
        *,
        cookie_name: str,
        idle_seconds: float,
        max_sessions: int = 10_000,
        absolute_seconds: float | None = None,
        max_per_group: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0 or (absolute_seconds is not None and absolute_seconds <= 0):
            raise ValueError("idle_seconds and absolute_seconds must be positive")
        if max_sessions < 1 or max_per_group < 1:
            raise ValueError("max_sessions and max_per_group must be at least 1")
        if not _COOKIE_NAME.fullmatch(cookie_name):
            raise ValueError("cookie_name must be letters, digits, '_' or '-'")
        self.cookie_name = cookie_name
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.absolute_seconds = absolute_seconds
        self.max_per_group = max_per_group
        self._clock = clock
        #: Least recently used first: `get` moves a session to the end.
        self._sessions: OrderedDict[str, Session[P]] = OrderedDict()
        #: group -> ids of its sessions, oldest first.
        self._groups: dict[str, list[str]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    # -- the request-facing API --------------------------------------------------------------

    def create(self, request: web.Request, payload: P, *, group: str | None = None) -> Session[P]:
        """Start a session under a fresh id, ending any session the request already had.

        Always a new id, never a reuse: a login must not inherit an id someone else may have
        planted or seen (session fixation). With a `group`, the oldest sessions of that group
        are ended so that it keeps at most `max_per_group`; a full store ends its least
        recently used session. Either way the evicted payload is wiped.
        """
        self._end_current(request)
        if group is not None:
            members = self._groups.get(group, [])
            for oldest in members[: max(0, len(members) - self.max_per_group + 1)]:
                self._discard(oldest)
        while len(self._sessions) >= self.max_sessions:
            self._discard(next(iter(self._sessions)))
        now = self._clock()
        session: Session[P] = Session(
            id=secrets.token_urlsafe(32),
            payload=payload,
            csrf_token=secrets.token_urlsafe(32),
            last_seen=now,
            created=now,
            group=group,
        )
        self._sessions[session.id] = session
        if group is not None:
            self._groups.setdefault(group, []).append(session.id)
        request[_NEW_SESSION] = session
        request[_COOKIE_ACTION] = _CookieAction(session.id)
        return session

    def peek(self, request: web.Request) -> Session[P] | None:
        """The request's live session, if any, with no side effect: the idle timer is not reset
        and a stale cookie is not cleared. For rendering (the CSRF token of a page's forms), so
        that pages which use no session, the submission path above all, never send a Set-Cookie."""
        created = request.get(_NEW_SESSION)
        session_id = created.id if created is not None else self._cookie_id(request)
        session = self._sessions.get(session_id) if session_id else None
        if session is None or self._expired(session, self._clock()):
            return None
        return session

    def get(self, request: web.Request) -> Session[P] | None:
        """The request's live session, marked as just used; None if absent or idle too long."""
        created = request.get(_NEW_SESSION)
        if created is not None and created.id in self._sessions:
            return self._sessions[created.id]
        session_id = self._cookie_id(request)
        if session_id is None:
            return None
        session = self._sessions.get(session_id)
        now = self._clock()
        if session is None or self._expired(session, now):
            if session is not None:
                self._discard(session_id)
            # The browser holds an id we no longer know: tell it to forget it.
            request.setdefault(_COOKIE_ACTION, _CookieAction(None))
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def destroy(self, request: web.Request) -> None:
        """Log out: wipe and forget the request's session and clear the cookie."""
        self._end_current(request)
        request[_COOKIE_ACTION] = _CookieAction(None)

    def end_group(self, group: str, *, keep: Session[P] | None = None) -> int:
        """Wipe and forget every session of `group` but `keep` (after a passphrase change, the
        account's other browsers); returns how many ended. Their cookies are cleared at their
        next request, as for any unknown id."""
        ended = [sid for sid in self._groups.get(group, []) if keep is None or sid != keep.id]
        for sid in ended:
            self._discard(sid)
        return len(ended)

    @staticmethod
    def verify_csrf(session: Session[P], submitted: str | None) -> None:
        """Raise CsrfError unless `submitted` is the session's token (constant-time compare).

        Call on every state-changing POST with the value of the `CSRF_FIELD` form field.
        """
        if not submitted or not hmac.compare_digest(
            session.csrf_token.encode(), submitted.encode("utf-8", "replace")
        ):
            raise CsrfError("CSRF token missing or wrong")

    # -- housekeeping ----------------------------------------------------------------------

    def sweep(self) -> int:
        """Wipe and forget every session idle too long or past its lifetime; returns how many went."""
        now = self._clock()
        expired = [sid for sid, s in self._sessions.items() if self._expired(s, now)]
        for sid in expired:
            self._discard(sid)
        return len(expired)

    def wipe_all(self) -> None:
        """Wipe and forget every session (at shutdown)."""
        for sid in list(self._sessions):
            self._discard(sid)

    @property
    def sweeping(self) -> bool:
        """True while the background sweep task runs."""
        return self._sweeper is not None and not self._sweeper.done()

    def install(self, app: web.Application) -> None:
        """Hook cookie handling into responses and the sweep task into the app's lifetime."""
        app.on_response_prepare.append(self._apply_cookie)
        app.cleanup_ctx.append(self._run_sweeper)

    # -- internals ---------------------------------------------------------------------------

    def _cookie_id(self, request: web.Request) -> str | None:
        value = request.cookies.get(self.cookie_name)
        if value is None or not _ID_SHAPE.fullmatch(value):
            return None
        return value

    def _expired(self, session: Session[P], now: float) -> bool:
        if self.absolute_seconds is not None and now - session.created >= self.absolute_seconds:
            return True
        return now - session.last_seen >= self.idle_seconds

    def _end_current(self, request: web.Request) -> None:
        created = request.pop(_NEW_SESSION, None)
        if created is not None:
            self._discard(created.id)
        session_id = self._cookie_id(request)
        if session_id is not None:
            self._discard(session_id)

    def _discard(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        if session.group is not None:
            members = self._groups.get(session.group, [])
            if session_id in members:
                members.remove(session_id)
            if not members:
                self._groups.pop(session.group, None)
        try:
            session.payload.wipe()
        except Exception as exc:  # one bad payload must not stop a sweep
            logger.error("wiping a session payload failed: %s", type(exc).__name__)

    async def _apply_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        """Write the queued cookie change as a raw header.

        `response.set_cookie` cannot be used here: aiohttp serialises cookies into headers
        just before it calls the on_response_prepare hooks.
        """
        action = request.get(_COOKIE_ACTION)
        if action is None:
            return
        if action.value is None:
            cookie = f'{self.cookie_name}=""; expires={_EPOCH}; Max-Age=0; {_COOKIE_FLAGS}'
        else:
            cookie = f"{self.cookie_name}={action.value}; {_COOKIE_FLAGS}"
        response.headers.add("Set-Cookie", cookie)

    def _sweep_interval(self) -> float:
        return min(60.0, max(1.0, self.idle_seconds / 4))

    async def _sweep_forever(self) -> None:
        interval = self._sweep_interval()
        while True:
            await asyncio.sleep(interval)
            swept = self.sweep()
            if swept:
                logger.debug("swept %d idle sessions", swept)

    async def _run_sweeper(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: sweep while the app runs; at shutdown stop and wipe every session."""
        self._sweeper = asyncio.create_task(self._sweep_forever(), name=f"sweep {self.cookie_name}")
        try:
            yield
        finally:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self.wipe_all()


#: This app's in-memory sessions. The payload type is the domain's; narrow it at the use site:
#: `store: SessionStore[ReportSession] = request.config_dict[SESSIONS]`.
SESSIONS: Final[web.AppKey[SessionStore[Any]]] = web.AppKey("sessions")
