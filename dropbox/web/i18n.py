"""Languages, catalogues and template rendering: every page in the language of its URL.

The language is the first path segment (`/en/...`, `/da/...`, `/sv/...`): no cookie, no
Accept-Language sniffing, no JavaScript, and a link always opens in the language it was written
in. Each language gets its own Jinja environment with its catalogue installed, so rendering is
free of shared mutable state and safe under concurrency.

Catalogues are compiled in memory from the `.po` files at startup, so no binary `.mo` files are
committed. To add a string: wrap it in `_()` in a template, `translate(request, "...")` in a
handler, or `N_()` for a Python constant translated later; then extract and update the
catalogues as described in babel.cfg, and translate the new entries in da and sv.

Safety note: with newstyle gettext, `_()` in a template marks its *translation* as safe HTML.
Never call `_()` on a variable that may carry user input; translate such messages in Python
with `translate(request, ...)` and pass the plain result, which Jinja then escapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web
from babel.support import Translations

from dropbox.catalogues import LOCALE_DIR, N_, PACKAGE_DIR, load_translations
from dropbox.config import LANGUAGES
from dropbox.web.appkeys import APP_KIND, CONFIG

logger = logging.getLogger(__name__)

TEMPLATE_DIR = PACKAGE_DIR / "templates"

#: Each language named in itself, for the language switcher.
LANGUAGE_NAMES: Mapping[str, str] = {"en": "English", "da": "Dansk", "sv": "Svenska"}

#: Route pattern segment that matches exactly the supported languages.
LANG_SEGMENT = "{lang:" + "|".join(LANGUAGES) + "}"

#: Base layout per app, passed to every template as `base_template`.
BASE_TEMPLATES: Mapping[str, str] = {
    "whistleblower": "base.html",
    "caseworker": "caseworker_base.html",
}

#: Context names every render provides; a page's own context may not reuse them.
RESERVED_CONTEXT = frozenset(
    {"lang", "languages", "url", "home_url", "site_name", "organisation", "csrf_token",
     "base_template", "kind"}
)

ContextProcessor = Callable[[web.Request], Mapping[str, object]]


WHISTLEBLOWER_SITE_NAME = N_("Whistleblower channel")
CASEWORKER_SITE_NAME = N_("Whistleblower channel: caseworkers")


class UnknownRoute(LookupError):
    """A template or handler asked for a URL of a route nobody registered under that name."""


@dataclass(frozen=True)
class LanguageLink:
    """One entry of the language switcher."""

    code: str
    name: str
    url: str
    current: bool


def localized(path: str) -> str:
    """Route pattern for `path` under a language prefix: localized("/submit") -> "/{lang:..}/submit".

    Every page route is registered through this so `request_language` and `url` work.
    """
    if not path.startswith("/"):
        raise ValueError("path must start with '/'")
    return "/" + LANG_SEGMENT + path


class Templates:
    """One Jinja environment per language, each with its catalogue installed (newstyle gettext)."""

    def __init__(
        self,
        *,
        template_dir: Path = TEMPLATE_DIR,
        locale_dir: Path = LOCALE_DIR,
        languages: tuple[str, ...] = LANGUAGES,
        organisation: str | None = None,
    ) -> None:
        self.organisation = organisation
        self.context_processors: list[ContextProcessor] = []
        loader = jinja2.FileSystemLoader(template_dir)
        self._translations: dict[str, Translations] = {}
        self._environments: dict[str, jinja2.Environment] = {}
        for lang in languages:
            translations = load_translations(locale_dir, lang)
            env = jinja2.Environment(
                loader=loader,
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
                auto_reload=False,
            )
            env.policies["ext.i18n.trimmed"] = True
            env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
            self._translations[lang] = translations
            self._environments[lang] = env

    def environment(self, lang: str) -> jinja2.Environment:
        return self._environments[lang]

    def translations(self, lang: str) -> Translations:
        return self._translations[lang]


def _default_language(request: web.Request) -> str:
    return request.config_dict[CONFIG].default_language


def request_language(request: web.Request) -> str:
    """The language of the URL; for paths outside the language tree the operator's default.

    Falls back to the first path segment so a 404 under /da/ still answers in Danish.
    """
    lang = request.match_info.get("lang")
    if lang in LANGUAGES:
        return lang
    segments = request.path.split("/", 2)
    if len(segments) > 1 and segments[1] in LANGUAGES:
        return segments[1]
    return _default_language(request)


def translate(request: web.Request, message: str, **variables: object) -> str:
    """`message` translated into the request's language; `%(name)s` filled from variables.

    Extracted by pybabel with `-k translate:2` (see babel.cfg); a message defined elsewhere
    is marked with `N_()` where it is written.
    """
    lang = request_language(request)
    translated: str = request.config_dict[TEMPLATES].translations(lang).gettext(message)
    return translated % variables if variables else translated


def _is_localized(resource: web.AbstractResource) -> bool:
    return isinstance(resource, web.DynamicResource) and "{lang}" in resource.get_info().get(
        "formatter", ""
    )


def url_for(
    request: web.Request,
    name: str,
    *,
    lang: str | None = None,
    query: Mapping[str, str] | None = None,
    **parts: str,
) -> str:
    """Path of the route named `name`, in the request's language unless `lang` is given."""
    return _build_url(request, name, lang or request_language(request), query, parts)


def _build_url(
    request: web.Request,
    name: str,
    lang: str,
    query: Mapping[str, str] | None,
    parts: Mapping[str, str],
) -> str:
    try:
        resource = request.app.router[name]
    except KeyError as exc:
        raise UnknownRoute(f"no route named {name!r} is registered") from exc
    if _is_localized(resource):
        parts = {"lang": lang, **parts}
    url = resource.url_for(**parts)
    if query:
        url = url.with_query(dict(query))
    return str(url)


def language_links(request: web.Request) -> list[LanguageLink]:
    """The switcher: this same page in each language, or each language's start page.

    The query string is dropped on purpose; it is never needed to show a page again.
    """
    current = request_language(request)
    resource = request.match_info.route.resource
    same_page = (
        resource is not None
        and _is_localized(resource)
        and any(route.method in ("GET", "*") for route in resource)
    )
    links = []
    for code in LANGUAGES:
        if same_page and resource is not None:
            url = str(resource.url_for(**{**request.match_info, "lang": code}))
        else:
            url = f"/{code}/"
        links.append(LanguageLink(code, LANGUAGE_NAMES[code], url, code == current))
    return links


def template_context(request: web.Request, lang: str | None = None) -> dict[str, object]:
    """What every template gets: see RESERVED_CONTEXT. Public for rendering outside `render`."""
    lang = lang or request_language(request)
    templates = request.config_dict[TEMPLATES]
    kind = request.config_dict[APP_KIND]
    translations = templates.translations(lang)
    name_msgid = WHISTLEBLOWER_SITE_NAME if kind == "whistleblower" else CASEWORKER_SITE_NAME
    site_name = translations.gettext(name_msgid)
    if templates.organisation:
        site_name = f"{templates.organisation}: {site_name}"

    def url(name: str, query: Mapping[str, str] | None = None, **parts: str) -> str:
        return _build_url(request, name, lang, query, parts)

    context: dict[str, object] = {
        "lang": lang,
        "languages": language_links(request),
        "url": url,
        "home_url": f"/{lang}/",
        "site_name": site_name,
        "organisation": templates.organisation,
        "csrf_token": "",
        "base_template": BASE_TEMPLATES[kind],
        "kind": kind,
    }
    for processor in templates.context_processors:
        context.update(processor(request))
    return context


def render(
    request: web.Request,
    template_name: str,
    context: Mapping[str, object] | None = None,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Render `template_name` in the request's language as an HTML response."""
    lang = request_language(request)
    full_context = template_context(request, lang)
    if context:
        clash = RESERVED_CONTEXT.intersection(context)
        if clash:
            raise ValueError(f"context names reserved by render(): {sorted(clash)}")
        full_context.update(context)
    env = request.config_dict[TEMPLATES].environment(lang)
    html = env.get_template(template_name).render(full_context)
    response = web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=headers
    )
    response.headers["Content-Language"] = lang
    return response


#: Per-language Jinja environments and compiled catalogues.
TEMPLATES: Final[web.AppKey[Templates]] = web.AppKey("templates")
