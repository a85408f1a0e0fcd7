"""The two web apps: the public whistleblower side and the caseworkers' side.

Each factory returns a ready application. `serve` passes one `Services` to both, so they share a
store and a KDF pool; a test may pass none, and the app then opens its own for its lifetime.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from dropbox.caseworker.routes import add_caseworker_routes
from dropbox.config import Config
from dropbox.ids import today as utc_today
from dropbox.services import Services
from dropbox.web.appkeys import SERVICES, TODAY
from dropbox.web.base import make_base_app
from dropbox.whistleblower.routes import add_whistleblower_routes


def _with_services(app: web.Application, config: Config, services: Services | None) -> None:
    if services is not None:
        app[SERVICES] = services
        return

    async def own_services(app: web.Application) -> AsyncIterator[None]:
        async with Services.open(config) as opened:
            app[SERVICES] = opened
            yield

    app.cleanup_ctx.append(own_services)


def create_whistleblower_app(config: Config, *, services: Services | None = None) -> web.Application:
    app = make_base_app(config, kind="whistleblower")
    _with_services(app, config, services)
    add_whistleblower_routes(app)
    return app


def create_caseworker_app(config: Config, *, services: Services | None = None,
                          today: Callable[[], dt.date] = utc_today) -> web.Application:
    """`today` is the day the report list counts deadlines on (a test passes a fixed one)."""
    app = make_base_app(config, kind="caseworker")
    app[TODAY] = today
    _with_services(app, config, services)
    add_caseworker_routes(app)
    return app
