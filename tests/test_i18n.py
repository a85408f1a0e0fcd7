"""Languages by path prefix, complete da/sv catalogues, the switcher and the url helper."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from aiohttp import web
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg

from dropbox.catalogues import LOCALE_DIR, load_translations, read_catalog
from dropbox.config import LANGUAGES
from dropbox.web.i18n import (
    UnknownRoute,
    localized,
    render,
    template_context,
    translate,
    url_for,
)
from tests.support.base_app import build_app
from tests.support.live_server import AiohttpClient, start

REPO = Path(__file__).resolve().parent.parent
#: The same keywords babel.cfg tells pybabel to use.
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None, "translate": (2,)}
_PLACEHOLDERS = re.compile(r"%\(\w+\)s")


def _extracted_msgids() -> set[str]:
    with (REPO / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)  # type: ignore[no-untyped-call]
    msgids: set[str] = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map, keywords=KEYWORDS
    ):
        msgids.update(message if isinstance(message, tuple) else (message,))
    return {m for m in msgids if m}


def _catalog(lang: str) -> Catalog:
    return read_catalog(LOCALE_DIR, lang)


@pytest.mark.parametrize("lang", ["da", "sv"])
def test_every_extracted_msgid_has_a_reviewed_translation(lang: str) -> None:
    catalog = _catalog(lang)
    missing = []
    for msgid in sorted(_extracted_msgids()):
        message = catalog.get(msgid)
        if message is None or not message.string or message.fuzzy:
            missing.append(msgid)
    assert not missing, f"untranslated in {lang}: {missing}"


@pytest.mark.parametrize("lang", ["da", "sv"])
def test_translations_keep_their_placeholders(lang: str) -> None:
    for message in _catalog(lang):
        if message.id and message.string:
            assert sorted(_PLACEHOLDERS.findall(str(message.id))) == sorted(
                _PLACEHOLDERS.findall(str(message.string))
            ), message.id


def test_catalogues_compile_and_no_mo_files_are_kept() -> None:
    for lang in LANGUAGES:
        load_translations(LOCALE_DIR, lang)
    assert not list(LOCALE_DIR.rglob("*.mo"))


async def test_root_redirects_to_the_default_language(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, build_app(tmp_path, default_language="da"))
    response = await client.get("/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/da/"


async def test_language_without_trailing_slash_redirects(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, build_app(tmp_path))
    response = await client.get("/sv", allow_redirects=False)
    assert response.headers["Location"] == "/sv/"


def test_unknown_default_language_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_app(tmp_path, default_language="de")


@pytest.mark.parametrize(
    ("lang", "heading"),
    [
        ("en", "Report wrongdoing safely"),
        ("da", "Indberet alvorlige forhold sikkert"),
        ("sv", "Rapportera missförhållanden säkert"),
    ],
)
async def test_landing_in_each_language_with_switcher(
    aiohttp_client: AiohttpClient, tmp_path: Path, lang: str, heading: str
) -> None:
    client = await start(aiohttp_client, build_app(tmp_path))
    response = await client.get(f"/{lang}/")
    text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Language"] == lang
    assert f'<html lang="{lang}">' in text
    assert f"<h1>{heading}</h1>" in text
    # Links stay in the page's language
    assert f'href="/{lang}/submit"' in text
    assert f'href="/{lang}/mailbox"' in text
    # The switcher links to this page in the other languages and marks the current one
    for other in LANGUAGES:
        if other == lang:
            assert f'<span aria-current="page" lang="{lang}">' in text
        else:
            assert f'<a href="/{other}/" hreflang="{other}" lang="{other}">' in text


async def test_landing_names_the_organisation(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, build_app(tmp_path, organisation="Acme <A/S>"))
    text = await (await client.get("/sv/")).text()
    assert "handläggare hos Acme &lt;A/S&gt;." in text
    assert "Acme &lt;A/S&gt;: Visselblåsarkanal" in text


async def _thing(request: web.Request) -> web.Response:
    return render(request, "error.html", {"status": 200, "title": "t", "message": "m"})


async def test_switcher_links_to_the_same_page_with_its_path_parameters(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    app = build_app(tmp_path)
    app.router.add_get(localized("/thing/{thing_id}"), _thing, name="thing")
    client = await start(aiohttp_client, app)
    text = await (await client.get("/da/thing/abc?secret=1")).text()
    assert 'href="/en/thing/abc"' in text and 'href="/sv/thing/abc"' in text
    assert "secret" not in text


async def _url_probe(request: web.Request) -> web.Response:
    parts = [
        url_for(request, "submit"),
        url_for(request, "submit", lang="sv"),
        url_for(request, "stylesheet"),
        url_for(request, "submit", query={"step": "2"}),
        translate(request, "Page not found"),
        translate(request, "Error %(status)s", status=404),
    ]
    try:
        url_for(request, "no_such_route")
    except UnknownRoute:
        parts.append("unknown-route-raised")
    try:
        render(request, "error.html", {"lang": "xx"})
    except ValueError:
        parts.append("reserved-refused")
    parts.append(str(sorted(template_context(request))))
    return web.Response(text="\n".join(parts))


async def test_url_translate_and_render_helpers(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    app = build_app(tmp_path)
    app.router.add_get(localized("/probe"), _url_probe, name="probe")
    client = await start(aiohttp_client, app)
    lines = (await (await client.get("/da/probe")).text()).splitlines()
    assert lines[:6] == [
        "/da/submit",
        "/sv/submit",
        "/static/style.css",
        "/da/submit?step=2",
        "Siden blev ikke fundet",
        "Fejl 404",
    ]
    assert "unknown-route-raised" in lines and "reserved-refused" in lines
    assert "'csrf_token'" in lines[-1] and "'languages'" in lines[-1]


def _visible_text(page: str) -> str:
    without_tags = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(without_tags).split())


def _english_fragments() -> set[str]:
    """Pieces of English msgids long enough to be recognisable, placeholders cut out."""
    fragments = set()
    for msgid in _extracted_msgids():
        for piece in _PLACEHOLDERS.split(msgid):
            if len(piece.strip()) >= 8:
                fragments.add(piece.strip())
    return fragments


@pytest.mark.parametrize("lang", ["da", "sv"])
async def test_no_rendered_page_contains_untranslated_english(
    aiohttp_client: AiohttpClient, tmp_path: Path, lang: str
) -> None:
    # Given every page this package renders, with and without an organisation name
    pages = []
    for organisation in (None, "Acme"):
        for kind in ("whistleblower", "caseworker"):
            app = build_app(tmp_path / f"{kind}{organisation}", kind=kind, organisation=organisation)
            client = await start(aiohttp_client, app)
            paths = [f"/{lang}/missing"] + ([f"/{lang}/"] if kind == "whistleblower" else [])
            for path in paths:
                pages.append(_visible_text(await (await client.get(path)).text()))
    # Then no English msgid shows through, except where the translation uses the same words
    translated = " ".join(str(m.string) for m in _catalog(lang) if m.id)
    leaks = {
        fragment
        for fragment in _english_fragments()
        if any(fragment in page for page in pages) and fragment not in translated
    }
    assert not leaks
