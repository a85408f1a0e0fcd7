"""The two apps' route tables, read from `app.router.routes()` so no route can be left out of a test."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dropbox.config import config_for_tests

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    app: str  # "whistleblower" or "caseworker"
    method: str
    pattern: str  # the resource's canonical form, e.g. /{lang}/reports/{id}
    name: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.pattern)

    @property
    def placeholders(self) -> list[str]:
        return _PLACEHOLDER.findall(self.pattern)

    def path(self, values: Mapping[str, str]) -> str:
        """The pattern with each {name} replaced by values[name] (percent-encoded), "en" for {lang}."""
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            value = values.get(name, "en" if name == "lang" else "x")
            return quote(value, safe="")
        return _PLACEHOLDER.sub(fill, self.pattern)


def app_routes(kind: str) -> list[Route]:
    """Every (method, pattern) the app answers, HEAD included, without starting it."""
    from dropbox.web.apps import create_caseworker_app, create_whistleblower_app

    config = config_for_tests(Path(tempfile.gettempdir()) / "robust-routes-never-opened")
    app = (create_whistleblower_app if kind == "whistleblower" else create_caseworker_app)(config)
    routes = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        routes.append(Route(kind, route.method, resource.canonical, resource.name))
    return sorted(set(routes), key=lambda r: (r.pattern, r.method))
