"""What every response of both apps goes through: security headers, error pages, quiet logs.

- Security headers are set in an `on_response_prepare` hook rather than a middleware, because
  only that hook also sees 404/405 for unmatched routes, raised `HTTPException`s, redirects and
  streamed responses.
- The error middleware turns every failure into a calm templated page in the request's language
  and never shows a traceback. Unexpected exceptions are logged as type, route pattern and code
  locations only: exception messages, bodies, queries, headers and addresses can all carry what
  a whistleblower typed or who they are.
- aiohttp's access log records the client address and User-Agent; `run_kwargs()` replaces it
  with one that records method, route pattern and status (caseworker app), or only counts 5xx
  (whistleblower app: no timestamped line per visit, see events.py). aiohttp's own server logging (e.g.
  "Error handling request from <peer>" for malformed HTTP, with the raw request line in the
  exception) is rewritten by a logging filter so no client data survives.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web, web_response
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from dropbox.blobs import DiskLow, StorageFull, UploadsBusy
from dropbox.storage import StorageUnavailable
from dropbox.web.events import REQUEST_TALLY, install_diversion
from dropbox.web.i18n import N_, render, translate
from dropbox.web.sessions import CsrfError

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("dropbox.web.access")  # a stable name for operators' log filters

#: The whole Server header; no product version to fingerprint.
SERVER_HEADER = "dropbox"

BASE_CSP: Mapping[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "style-src": ("'self'",),
    "img-src": ("'self'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
    "base-uri": ("'none'",),
}

PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "autoplay",
        "browsing-topics", "camera", "display-capture", "encrypted-media", "fullscreen",
        "geolocation", "gyroscope", "hid", "idle-detection", "interest-cohort", "magnetometer",
        "microphone", "midi", "payment", "picture-in-picture", "publickey-credentials-get",
        "screen-wake-lock", "serial", "usb", "xr-spatial-tracking",
    )
)

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]

#: Set on a response (`response[CACHE_FOR_SESSION] = True`) that is the same for everyone and
#: may stay in the browser's cache: only the stylesheet. Every other response is `no-store`.
CACHE_FOR_SESSION: web.ResponseKey[bool] = web.ResponseKey("cache_for_session", bool)

#: Over Tor every request is a round trip of a second or more, and the stylesheet is the only
#: subresource of every page, so it is cached instead of fetched again per page. `private`: no
#: shared cache keeps it; `immutable` with the content hash in its URL (web/base.py): a new version
#: gets a new URL, so no stale copy is ever used. It is safe to keep: identical for every
#: visitor, no ETag or Last-Modified to tell visitors apart, and Tor Browser keeps it in memory
#: only (disk cache off), per onion site (first-party isolation, so no other site can probe
#: it), dropped on New Identity or when the browser closes; the "session" it lives for.
SESSION_CACHE_CONTROL = "private, max-age=86400, immutable"


def content_security_policy() -> str:
    """BASE_CSP as the header value. Both apps send the same policy: nothing they serve needs
    more (the QR code is a same-origin PNG, covered by img-src 'self')."""
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in BASE_CSP.items())


def security_headers() -> ResponseHook:
    """An on_response_prepare hook that sets the headers below on every response.

    They overwrite whatever a handler set: one place decides caching and framing for all. The
    one exception is a successful response marked `CACHE_FOR_SESSION` (the stylesheet).
    """
    headers = {
        "Content-Security-Policy": content_security_policy(),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Permissions-Policy": PERMISSIONS_POLICY,
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Server": SERVER_HEADER,
    }

    async def set_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)
        if response.status == 200 and response.get(CACHE_FOR_SESSION):
            response.headers["Cache-Control"] = SESSION_CACHE_CONTROL

    return set_headers


def hide_server_software() -> None:
    """Make aiohttp's default Server header versionless, also where no app hook runs.

    aiohttp answers malformed HTTP itself, before any app is involved, with
    "Server: Python/3.x aiohttp/3.x". Its only source is this module global, so it is replaced
    (tests/test_web.py checks a raw malformed request, so an aiohttp change cannot slip by).
    """
    web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]


# -- error pages -------------------------------------------------------------------------------


class UserError(Exception):
    """Raise from a handler to show the error page with `status` and a message for the user.

    `message` is a msgid (translated into the request's language at render) or text already
    translated; it is shown escaped, never as HTML.
    """

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        if not 400 <= status <= 599:
            raise ValueError("UserError status must be 4xx or 5xx")
        super().__init__(status)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


#: Title and explanation per status; other 4xx use 400's, other 5xx use 500's.
ERROR_TEXTS: Mapping[int, tuple[str, str]] = {
    400: (N_("Something was wrong with that request"),
          N_("Please go back and try again.")),
    403: (N_("Not allowed"),
          N_("This page is not available to you.")),
    404: (N_("Page not found"),
          N_("The address may be mistyped, or the page no longer exists.")),
    405: (N_("That is not possible here"),
          N_("This page does not accept that kind of request. Please go back and try again.")),
    413: (N_("Too large"),
          N_("What you sent is larger than this site accepts. "
             "Please try again with fewer or smaller files.")),
    429: (N_("Too many attempts"),
          N_("Please wait a few minutes and try again.")),
    500: (N_("Something went wrong"),
          N_("An error occurred on our side. It was not caused by anything you did. "
             "Please try again later.")),
    503: (N_("Temporarily unavailable"),
          N_("The site is busy right now. Please try again in a few minutes.")),
    507: (N_("Out of storage space"),
          N_("The site cannot store anything more right now. Please try again later.")),
}

CSRF_TITLE = N_("The form has expired")
CSRF_MESSAGE = N_(
    "For your safety, forms stop working after a while without activity. Go back, copy "
    "anything you typed, reload the page and try again."
)

CROSS_SITE_TITLE = N_("This form came from another site")
CROSS_SITE_MESSAGE = N_(
    "For your safety, this site only accepts forms sent from its own pages, so nothing was sent "
    "or changed. Type this site's address yourself, or use your own bookmark, and try again."
)

#: Headers of a raised HTTPException that still mean something on the error page.
_CARRIED_HEADERS = ("Allow", "Retry-After")

ROUTE_LABEL: web.RequestKey[str] = web.RequestKey("route_label", str)

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(request: web.Request) -> str:
    """The matched route as its pattern (and name), never the concrete path with its ids."""
    resource = request.match_info.route.resource
    if resource is None:
        return "<unmatched>"
    return f"{resource.canonical} ({resource.name})" if resource.name else resource.canonical


def _safe_method(method: str) -> str:
    """A client may send any token as a method; log only the standard ones verbatim."""
    return method if method in _KNOWN_METHODS else "OTHER"


def _code_locations(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    return " > ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames)


def error_page(
    request: web.Request,
    status: int,
    *,
    title: str | None = None,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The templated error page; falls back to plain text if even rendering fails."""
    default_title, explanation = ERROR_TEXTS.get(status) or ERROR_TEXTS[500 if status >= 500 else 400]
    try:
        context = {
            "status": status,
            "title": translate(request, title or default_title),
            "message": translate(request, message or explanation),
        }
        return render(request, "error.html", context, status, headers=headers)
    except Exception as exc:  # the error page itself must never fail
        logger.error("rendering the %d page failed: %s", status, type(exc).__qualname__)
        return web.Response(status=status, text=f"Error {status}", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every HTTP error and unexpected exception into the friendly page for its status."""
    request[ROUTE_LABEL] = route_label(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors go out as they are
        carried = {h: exc.headers[h] for h in _CARRIED_HEADERS if h in exc.headers}
        return error_page(request, exc.status, headers=carried)
    except UserError as exc:
        return error_page(request, exc.status, message=exc.message, headers=exc.headers)
    except CsrfError:
        return error_page(request, 403, title=CSRF_TITLE, message=CSRF_MESSAGE)
    except (UploadsBusy, DiskLow):
        return error_page(request, 503, headers={"Retry-After": "60"})
    except (StorageFull, StorageUnavailable):
        # The disk refused a write (full, read-only, failing) on a path whose view did not say
        # more itself: nothing was kept, and the person is told so instead of seeing a 500.
        logger.error("storage refused a write in %s %s", _safe_method(request.method), request[ROUTE_LABEL])
        return error_page(request, 507)
    except ConnectionError:
        raise  # the client went away; aiohttp handles that quietly
    except Exception as exc:  # the point of this middleware
        logger.error(
            "unhandled %s in %s %s at %s",
            type(exc).__qualname__,
            _safe_method(request.method),
            request[ROUTE_LABEL],
            _code_locations(exc),
        )
        if request.writer.output_size > 0:
            raise  # headers already sent; aiohttp can only drop the connection
        return error_page(request, 500)


#: `Sec-Fetch-Site` values a state-changing request may carry: sent from one of this app's own
#: pages ("same-origin"), or started by the person themselves ("none": typed, bookmarked).
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})


@web.middleware
async def cross_site_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a POST (or other unsafe method) that another site's page made the browser send.

    The session cookies are SameSite=Strict, but the submission and the two logins carry none,
    so without this a foreign page could post a report or log a visitor into someone else's
    mailbox. `Origin` cannot decide it: with `Referrer-Policy: no-referrer` Firefox and Chromium
    send `Origin: null` on every form POST, ours included. `Sec-Fetch-Site` is sent by Tor
    Browser, Firefox >= 90 and Chromium, and no page can set or forge it.

    Refused: "cross-site", and also "same-site". Our forms only ever post to their own origin
    (CSP form-action 'self'), so nothing legitimate is same-site-but-not-same-origin; in
    production the two apps are on different onions and so cross-site to each other anyway, but
    where both run on one host (127.0.0.1 without tor, or names under one domain behind a proxy)
    they are "same-site", and one app's pages must not post to the other. Allowed: "same-origin",
    "none", and a missing header (older browsers, curl, scripts: they carry no victim's
    ambient authority). The body is not read before refusing, so nothing of it is stored.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if request.method not in _SAFE_METHODS and site is not None and site.lower() not in _OWN_FETCH_SITES:
        return error_page(request, 403, title=CROSS_SITE_TITLE, message=CROSS_SITE_MESSAGE)
    return await handler(request)


# -- logging -----------------------------------------------------------------------------------


class RouteAccessLogger(AbstractAccessLogger):
    """Access log of method, route pattern and status: no path, address, User-Agent or timing.

    Caseworker app: 2xx-4xx at DEBUG (off unless asked for), 5xx at WARNING. Whistleblower app:
    no line at all; a 5xx is counted in the app's EventTally, logged once a day.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # Only server faults are worth an operator's attention by default. Every line gets a
        # timestamp from whatever collects the log (journald), and a line per submission would
        # record its time to the second where the database keeps only the day: on the
        # whistleblower app a 5xx is only counted (events.py) and nothing else is logged.
        line = f"{_safe_method(request.method)} {request.get(ROUTE_LABEL, '-')} {response.status}"
        tally = request.get(REQUEST_TALLY)
        if tally is not None:
            if response.status >= 500:
                tally.note(f"access: {line}")
            return
        self.logger.log(logging.WARNING if response.status >= 500 else logging.DEBUG, "%s", line)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.WARNING)  # DEBUG enabled implies WARNING enabled


def run_kwargs() -> dict[str, Any]:
    """Keyword arguments for `web.run_app(app, **run_kwargs())` or `web.AppRunner(app, ...)`.

    Without them aiohttp logs every request with the client address and User-Agent.
    (aiohttp.test_utils.TestServer drops constructor kwargs; pass these to `start_server`.)
    """
    return {"access_log_class": RouteAccessLogger, "access_log": access_logger}


_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[hlL]?[diouxXeEfFgGcrsa]")


class ClientDataFilter(logging.Filter):
    """Rewrite aiohttp's own log records so they keep their wording but no client data.

    Arguments (the peer address, header values) are dropped, and a traceback is reduced to the
    exception type: a parser error's message quotes the raw request line and headers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        message = _PLACEHOLDER.sub("<withheld>", template).replace("%%", "%")
        if record.exc_info and record.exc_info[0] is not None:
            message = f"{message} [{record.exc_info[0].__qualname__}]"
        record.msg = message
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


class DropAllFilter(logging.Filter):
    """Drops every record; on aiohttp's default access log in case an app is run without
    `run_kwargs()`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_SANITISED_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "aiohttp.websocket")


def install_log_filters() -> None:
    """Attach the filters to aiohttp's loggers; safe to call more than once."""
    for name in _SANITISED_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, ClientDataFilter) for f in target.filters):
            target.addFilter(ClientDataFilter())
    # aiosqlite logs every statement with its parameters at DEBUG; keep it quiet even then.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    install_diversion()  # whistleblower requests: records become counts (events.py)
    default_access = logging.getLogger("aiohttp.access")
    if not any(isinstance(f, DropAllFilter) for f in default_access.filters):
        default_access.addFilter(DropAllFilter())
