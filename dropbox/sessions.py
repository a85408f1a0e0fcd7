"""Server-side sessions held only in memory, behind a cookie that dies with the browser.

The payload is the domain's (a whistleblower's report key, a caseworker's private key), so
nothing about a session is ever written to disk, and a restart logs everyone out. The cookie
carries only a random 256-bit id: HttpOnly, SameSite=Strict, Path=/, no Expires/Max-Age (a
browser-session cookie; Tor Browser drops it when closed) and no Secure flag, because onion
services are served over plain http and the onion itself provides transport security.

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

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
    """A session payload. `wipe()` zeroes key material best-effort before the payload is dropped."""

    def wipe(self) -> None: ...


P = TypeVar("P", bound=Wipeable)


class SessionError(Exception):
    """Root of the session errors."""


class CsrfError(SessionError):
    """A POST carried no CSRF token, or not the one of its session (forged, or a stale form)."""


class SessionLimitReached(SessionError):
    """The store holds `max_sessions` live sessions; new ones are refused until some expire."""


@dataclass(eq=False)
class Session(Generic[P]):
    """One live session. Secrets are kept out of repr so they never reach a log line."""

    id: str = field(repr=False)
    payload: P = field(repr=False)
    csrf_token: str = field(repr=False)
    last_seen: float


@dataclass
class _CookieAction:
    """What the response must do with the cookie: set it to `value`, or delete it (None)."""

    value: str | None


_COOKIE_ACTION: web.RequestKey[_CookieAction] = web.RequestKey("session_cookie_action", _CookieAction)
_NEW_SESSION: web.RequestKey[Session[Any]] = web.RequestKey("session_created", Session)


class SessionStore(Generic[P]):
    """Live sessions of one app, keyed by their random id, with an idle timeout.

    Both apps run on the same host behind tor, and cookies ignore ports, so each app passes its
    own `cookie_name`.
    """

    def __init__(
        self,
        *,
        cookie_name: str,
        idle_seconds: float,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        if not _COOKIE_NAME.fullmatch(cookie_name):
            raise ValueError("cookie_name must be letters, digits, '_' or '-'")
        self.cookie_name = cookie_name
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session[P]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    # -- the request-facing API --------------------------------------------------------------

    def create(self, request: web.Request, payload: P) -> Session[P]:
        """Start a session under a fresh id, ending any session the request already had.

        Always a new id, never a reuse: a login must not inherit an id someone else may have
        planted or seen (session fixation).
        """
        self._end_current(request)
        self._make_room()
        session: Session[P] = Session(
            id=secrets.token_urlsafe(32),
            payload=payload,
            csrf_token=secrets.token_urlsafe(32),
            last_seen=self._clock(),
        )
        self._sessions[session.id] = session
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
        return session

    def destroy(self, request: web.Request) -> None:
        """Log out: wipe and forget the request's session and clear the cookie."""
        self._end_current(request)
        request[_COOKIE_ACTION] = _CookieAction(None)

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
        """Wipe and forget every session idle too long; returns how many went."""
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
        return now - session.last_seen >= self.idle_seconds

    def _end_current(self, request: web.Request) -> None:
        created = request.pop(_NEW_SESSION, None)
        if created is not None:
            self._discard(created.id)
        session_id = self._cookie_id(request)
        if session_id is not None:
            self._discard(session_id)

    def _make_room(self) -> None:
        if len(self._sessions) < self.max_sessions:
            return
        self.sweep()
        if len(self._sessions) >= self.max_sessions:
            logger.warning("session store full (%d sessions)", self.max_sessions)
            raise SessionLimitReached("too many live sessions")

    def _discard(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
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
