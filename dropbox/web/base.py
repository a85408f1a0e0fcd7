"""The common skeleton of both apps; the whistleblower and caseworker apps add their routes to it.

`make_base_app` wires what must be identical on both sides (headers, error pages, cross-site
refusal, quiet logs, languages, sessions, the failure budget), and on the whistleblower side the
diversion of every log record into daily counts (events.py) so a route added later cannot forget any of it.
Page routes are registered under a language prefix with `i18n.localized`:

    app = make_base_app(config, kind="whistleblower")
    app.router.add_get(localized("/submit"), show_form, name="submit")
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from dropbox.config import LANGUAGES, Config
from dropbox.web.appkeys import APP_KIND, CONFIG, LANDING_PAGES, SERVICES, AppKind
from dropbox.web.events import EVENTS, EventTally, divert_logs_middleware, install_diversion
from dropbox.web.i18n import (
    BASE_TEMPLATES,
    LANG_SEGMENT,
    PACKAGE_DIR,
    TEMPLATES,
    Templates,
    localized,
    render,
    request_language,
)
from dropbox.web.middleware import (
    CACHE_FOR_SESSION,
    cross_site_middleware,
    error_middleware,
    hide_server_software,
    install_log_filters,
    security_headers,
)
from dropbox.web.sessions import SESSIONS, SessionStore
from dropbox.web.throttle import FAILURE_BUDGET, FailureBudget

logger = logging.getLogger(__name__)

#: Cookies ignore ports and both apps sit on 127.0.0.1, so the names must differ.
SESSION_COOKIE_NAMES: Mapping[str, str] = {"whistleblower": "wb_session", "caseworker": "cw_session"}

STYLESHEET_PATH = PACKAGE_DIR / "static" / "style.css"


def default_client_max_size(config: Config) -> int:
    """Largest non-streamed body `request.post()` accepts: the biggest url-encoded text form.

    A character takes up to 4 UTF-8 bytes, each sent as %XX, hence 12 bytes. File uploads must
    be read with `request.multipart()`, which streams and is bounded by the upload limits in
    Config instead.
    """
    form_chars = config.max_text_chars + 8 * config.max_field_chars
    return 12 * form_chars + 64 * 1024


def make_base_app(
    config: Config,
    *,
    kind: AppKind,
    client_max_size: int | None = None,
) -> web.Application:
    """A ready `web.Application` for one side, to which that side adds its routes.

    `config.organisation_name` names who runs the channel (header and landing page).
    """
    if kind not in BASE_TEMPLATES:
        raise ValueError(f"unknown app kind {kind!r}")
    if config.default_language not in LANGUAGES:
        raise ValueError(f"default_language must be one of {LANGUAGES}")
    install_log_filters()
    hide_server_software()

    # error_middleware outside the cross-site check, so a refusal is a page with its route label.
    middlewares: list[Middleware] = [error_middleware, cross_site_middleware]
    tally = EventTally() if kind == "whistleblower" else None
    if tally is not None:
        # Outermost: what anything logs while a whistleblower request is handled becomes a count.
        middlewares.insert(0, divert_logs_middleware(tally))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=client_max_size or default_client_max_size(config),
    )
    if tally is not None:
        app[EVENTS] = tally
        app.cleanup_ctx.append(tally.run)
        app.on_startup.append(_divert_late_loggers)
    app[CONFIG] = config
    app[APP_KIND] = kind
    app[LANDING_PAGES] = {}
    templates = Templates(organisation=config.organisation_name)
    app[TEMPLATES] = templates

    wb = kind == "whistleblower"
    store: SessionStore[Any] = SessionStore(
        cookie_name=SESSION_COOKIE_NAMES[kind], max_sessions=config.max_sessions,
        idle_seconds=config.whistleblower_idle_seconds if wb else config.caseworker_idle_seconds,
        absolute_seconds=config.whistleblower_absolute_seconds if wb else config.caseworker_absolute_seconds,
        max_per_group=config.sessions_per_report if wb else config.sessions_per_caseworker,
    )
    store.install(app)
    app[SESSIONS] = store
    templates.context_processors.append(_csrf_context)

    per_minute = (
        config.failed_receipt_budget_per_minute
        if kind == "whistleblower"
        else config.failed_login_budget_per_minute
    )
    app[FAILURE_BUDGET] = FailureBudget(per_minute, config.slowdown_seconds)

    app.on_response_prepare.append(security_headers())
    _add_common_routes(app, kind)
    templates.context_processors.append(_stylesheet_context(app))
    return app


async def _divert_late_loggers(app: web.Application) -> None:
    """Loggers of modules imported after the app was made get the diversion filter too."""
    install_diversion()


def _csrf_context(request: web.Request) -> Mapping[str, object]:
    session = request.config_dict[SESSIONS].peek(request)
    return {"csrf_token": session.csrf_token} if session is not None else {}


def _stylesheet_context(app: web.Application) -> Callable[[web.Request], Mapping[str, object]]:
    """`stylesheet_url` for the layouts: the stylesheet's path with its content hash as `?v=`.

    The stylesheet is cached by browsers (web.SESSION_CACHE_CONTROL); a new version of it
    comes with a new URL, so a cached old one is never applied to new pages.
    """
    version = hashlib.sha256(STYLESHEET_PATH.read_bytes()).hexdigest()[:16]
    context = {"stylesheet_url": str(app.router["stylesheet"].url_for().with_query(v=version))}
    return lambda _request: context


def _add_common_routes(app: web.Application, kind: AppKind) -> None:
    stylesheet_bytes = STYLESHEET_PATH.read_bytes()

    async def stylesheet(request: web.Request) -> web.Response:
        """Served from memory: one file, no directory to traverse, no mtime in headers; the
        same bytes whatever `?v=` says, cacheable for the browser session (see middleware.py)."""
        response = web.Response(body=stylesheet_bytes, content_type="text/css", charset="utf-8")
        response[CACHE_FOR_SESSION] = True
        return response

    app.router.add_get("/", _redirect_to_default_language, name="root")
    app.router.add_get("/" + LANG_SEGMENT, _add_trailing_slash, name="language_root")
    app.router.add_get("/static/style.css", stylesheet, name="stylesheet")
    if kind == "whistleblower":
        app.router.add_get(localized("/"), _landing, name="landing")


async def _redirect_to_default_language(request: web.Request) -> web.StreamResponse:
    """`/` has no language; send the visitor to the operator's default one."""
    raise web.HTTPFound(f"/{request.config_dict[CONFIG].default_language}/")


async def _add_trailing_slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"/{request.match_info['lang']}/")


async def _landing(request: web.Request) -> web.Response:
    lang = request_language(request)
    pages = request.app[LANDING_PAGES]
    if lang not in pages:
        services = request.config_dict.get(SERVICES)  # a bare app (tests of the plumbing) has none
        signer = services.signer if services is not None else None
        pages[lang] = render(request, "landing.html", {"signer": signer}).body  # type: ignore[assignment]
    response = web.Response(body=pages[lang], content_type="text/html", charset="utf-8")
    response.headers["Content-Language"] = lang
    return response
