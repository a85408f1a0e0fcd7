"""Security headers, error pages and quiet logging, over real HTTP against make_base_app."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from pathlib import Path

import pytest
from aiohttp import ClientPayloadError, web

from dropbox.blobs import UploadsBusy
from dropbox.web.appkeys import LANDING_PAGES, AppKind
from dropbox.web.events import EVENTS
from dropbox.web.i18n import LOCALE_DIR, PACKAGE_DIR, TEMPLATE_DIR, localized
from dropbox.web.middleware import (
    SESSION_CACHE_CONTROL,
    ClientDataFilter,
    RouteAccessLogger,
    UserError,
    run_kwargs,
)
from tests.support.base_app import DISTINCTIVE_UA, DISTINCTIVE_XFF, build_app
from tests.support.headers import assert_security_headers
from tests.support.live_server import AiohttpClient, start

SECRET_DETAIL = "secret-detail-in-exception-message"  # noqa: S105 - a canary, not a password


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError(SECRET_DETAIL)


async def _read_body(request: web.Request) -> web.Response:
    await request.post()
    return web.Response(text="read")


async def _user_error(request: web.Request) -> web.Response:
    raise UserError(400, request.query.get("msg", "Page not found"))


async def _forbidden_with_text(request: web.Request) -> web.Response:
    raise web.HTTPForbidden(text="internal detail for developers")


async def _see_other(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/en/")


async def _store_full(request: web.Request) -> web.Response:
    raise UploadsBusy("full")


async def _streamed(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "text/plain"
    await response.prepare(request)
    await response.write(b"streamed")
    return response


async def _fails_mid_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"first part of a file " * 10)
    raise ValueError(SECRET_DETAIL)


async def _too_many(request: web.Request) -> web.Response:
    raise UserError(429, "Too many attempts", headers={"Retry-After": "60"})


def _app_with_test_routes(tmp_path: Path, **kwargs: object) -> web.Application:
    app = build_app(tmp_path, **kwargs)  # type: ignore[arg-type]
    app.router.add_get(localized("/boom/{report_id}"), _boom, name="boom")
    app.router.add_post(localized("/upload"), _read_body, name="upload")
    app.router.add_get(localized("/user-error"), _user_error, name="user_error")
    app.router.add_get(localized("/forbidden"), _forbidden_with_text, name="forbidden")
    app.router.add_post(localized("/done"), _see_other, name="done")
    app.router.add_get(localized("/full"), _store_full, name="full")
    app.router.add_get(localized("/streamed"), _streamed, name="streamed")
    app.router.add_get(localized("/half"), _fails_mid_stream, name="half")
    app.router.add_get(localized("/too-many"), _too_many, name="too_many")
    return app


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/en/", 200, None),
        ("GET", "/", 302, None),
        ("GET", "/en/no-such-page", 404, None),
        ("GET", "/not-even-a-language", 404, None),
        ("POST", "/en/", 405, None),
        ("POST", "/en/upload", 413, {"text": "x" * 4096}),
        ("GET", "/en/boom/123", 500, None),
        ("GET", "/static/style.css", 200, None),
        ("HEAD", "/static/style.css", 200, None),
        ("POST", "/en/done", 303, None),
        ("GET", "/en/streamed", 200, None),
    ],
)
async def test_security_headers_on_every_kind_of_response(
    aiohttp_client: AiohttpClient, tmp_path: Path, method: str, path: str, status: int,
    body: dict[str, str] | None,
) -> None:
    # Given a base app with a small body limit
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path, client_max_size=1024))
    # When any kind of response goes out
    response = await client.request(method, path, data=body, allow_redirects=False)
    # Then it carries every security header and a versionless Server header
    assert response.status == status
    assert_security_headers(response.headers, cacheable=path.startswith("/static/") and status == 200)


async def test_stylesheet_is_served_as_css(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, build_app(tmp_path))
    response = await client.get("/static/style.css")
    assert response.content_type == "text/css"
    assert await response.read() == (PACKAGE_DIR / "static" / "style.css").read_bytes()


async def test_only_the_stylesheet_is_cacheable_and_its_url_changes_with_its_content(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, build_app(tmp_path))
    # Given a page, which must never be stored
    page = await client.get("/en/")
    assert page.headers["Cache-Control"] == "no-store"
    # Then the stylesheet it links to carries the hash of the stylesheet's bytes
    (href,) = re.findall(r'<link rel="stylesheet" href="([^"]+)"', await page.text())
    digest = hashlib.sha256((PACKAGE_DIR / "static" / "style.css").read_bytes()).hexdigest()
    assert href == f"/static/style.css?v={digest[:16]}"
    # and it may be kept by the browser for the session (one request less per page over Tor)
    style = await client.get(href)
    assert style.headers["Cache-Control"] == SESSION_CACHE_CONTROL == "private, max-age=86400, immutable"
    assert "ETag" not in style.headers and "Last-Modified" not in style.headers
    # but an error at the same path is not
    refused = await client.post(href)
    assert refused.status == 405 and refused.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("kind", ["caseworker", "whistleblower"])
async def test_500_page_has_no_traceback_and_log_has_type_and_route_only(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: AppKind
) -> None:
    caplog.set_level(logging.DEBUG)
    app = _app_with_test_routes(tmp_path, kind=kind)
    client = await start(aiohttp_client, app)
    # When a handler raises with a sensitive message, for a path with an id and a query
    response = await client.get("/en/boom/4711?receipt=abc123")
    text = await response.text()
    # Then the page is the friendly 500 page
    assert response.status == 500
    assert "Something went wrong" in text
    for leak in ("Traceback", SECRET_DETAIL, "RuntimeError", "File \""):
        assert leak not in text
    # And the log names the exception type and the route pattern, nothing from the request:
    # at once on the caseworker side, in the daily count on the whistleblower side
    if kind == "whistleblower":
        assert not [r for r in caplog.records if r.name.startswith("dropbox")]
        app[EVENTS].flush_all()
        errors = [r for r in caplog.records if r.name == "dropbox.web.events"]
    else:
        errors = [r for r in caplog.records if r.name == "dropbox.web.middleware" and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "RuntimeError" in message and "/{lang}/boom/{report_id}" in message
    assert errors[0].exc_info is None
    for leak in (SECRET_DETAIL, "4711", "abc123"):
        assert leak not in caplog.text


@pytest.mark.parametrize(
    ("path", "lang", "title"),
    [
        ("/en/missing", "en", "Page not found"),
        ("/da/missing", "da", "Siden blev ikke fundet"),
        ("/sv/missing", "sv", "Sidan hittades inte"),
    ],
)
async def test_error_page_in_the_language_of_the_path(
    aiohttp_client: AiohttpClient, tmp_path: Path, path: str, lang: str, title: str
) -> None:
    client = await start(aiohttp_client, build_app(tmp_path))
    response = await client.get(path)
    text = await response.text()
    assert response.status == 404
    assert f'<html lang="{lang}">' in text
    assert title in text
    assert response.headers["Content-Language"] == lang


@pytest.mark.parametrize(
    ("path", "status", "danish"),
    [
        ("/da/boom/1", 500, "Noget gik galt"),
        ("/da/upload", 405, "Det er ikke muligt her"),
        ("/da/forbidden", 403, "Ikke tilladt"),
        ("/da/full", 503, "Midlertidigt utilgængelig"),
    ],
)
async def test_each_error_status_has_a_translated_page(
    aiohttp_client: AiohttpClient, tmp_path: Path, path: str, status: int, danish: str
) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    response = await client.get(path)
    assert response.status == status
    assert danish in await response.text()


async def test_paths_outside_the_language_tree_use_the_default_language(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, build_app(tmp_path, default_language="sv"))
    response = await client.get("/xx/missing")
    assert "Sidan hittades inte" in await response.text()


async def test_405_keeps_the_allow_header(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    response = await client.get("/en/upload")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_413_page_when_body_exceeds_client_max_size(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path, client_max_size=1024))
    response = await client.post("/da/upload", data={"text": "x" * 4096})
    assert response.status == 413
    assert "For stort" in await response.text()


async def test_user_error_message_is_translated_and_escaped(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    # A msgid is translated into the request's language
    response = await client.get("/sv/user-error")
    assert response.status == 400
    assert "Sidan hittades inte" in await response.text()
    # Text that is not a msgid is shown as plain, escaped text
    response = await client.get("/en/user-error", params={"msg": "<b>bold</b>"})
    text = await response.text()
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "<b>bold</b>" not in text


async def test_http_exception_text_is_not_shown(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    # aiohttp's own texts are English and may carry internals; the generic page is shown instead
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    response = await client.get("/en/forbidden")
    text = await response.text()
    assert response.status == 403
    assert "internal detail" not in text and "Not allowed" in text


async def test_user_error_headers_reach_the_page(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    response = await client.get("/sv/too-many")
    assert response.status == 429
    assert response.headers["Retry-After"] == "60"
    assert "För många försök" in await response.text()


async def test_failure_after_streaming_began_cuts_the_response_and_leaks_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    # When a handler fails after the headers and part of the body went out
    with pytest.raises(ClientPayloadError):
        await (await client.get("/en/half")).read()
    # Then the client sees a broken transfer (never a truncated file that looks complete),
    # nothing is logged at the time (not even aiohttp's own line), the daily count names the
    # type only, and the server keeps serving
    assert not [r.getMessage() for r in caplog.records if r.name.startswith(("dropbox", "aiohttp"))]
    client.app[EVENTS].flush_all()
    assert SECRET_DETAIL not in caplog.text and "ValueError" in caplog.text
    assert (await client.get("/en/")).status == 200


def test_user_error_rejects_non_error_status() -> None:
    with pytest.raises(ValueError):
        UserError(302, "Page not found")


async def test_redirects_pass_through_untouched(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    response = await client.post("/en/done", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/en/"


async def test_logs_never_contain_client_data(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    headers = {"User-Agent": DISTINCTIVE_UA, "X-Forwarded-For": DISTINCTIVE_XFF}
    # When requests of every outcome arrive with distinctive client data
    for path in ("/en/?q=query-canary", "/en/missing-canary", "/en/boom/id-canary", "/static/style.css"):
        await client.get(path, headers=headers)
    await client.request("DELETE", "/en/", headers=headers)
    await client.request("FROBNICATE", "/en/", headers=headers)
    # Then the whistleblower app's access log says nothing at the time (a line would time a visit);
    # only aiohttp's refusal of a malformed request, which never reaches the app, has a DEBUG line
    access = [r.getMessage() for r in caplog.records if r.name == "dropbox.web.access"]
    assert access == ["OTHER - 400"]
    # And only the server fault is counted, method, route pattern and status only
    client.app[EVENTS].flush_all()
    (daily,) = [r.getMessage() for r in caplog.records if r.name == "dropbox.web.events"]
    assert "1 x access: GET /{lang}/boom/{report_id} (boom) 500" in daily and " 404" not in daily
    # And no record anywhere carries the client's data
    for leak in (DISTINCTIVE_UA, "Zebra", DISTINCTIVE_XFF, "127.0.0.1", "canary", "FROBNICATE"):
        assert leak not in caplog.text


async def test_the_caseworker_access_log_has_route_and_status_only(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path, kind="caseworker"))
    headers = {"User-Agent": DISTINCTIVE_UA, "X-Forwarded-For": DISTINCTIVE_XFF}
    # When requests of every outcome arrive with distinctive client data
    for path in ("/static/style.css?q=query-canary", "/en/missing-canary", "/en/boom/id-canary"):
        await client.get(path, headers=headers)
    await client.request("DELETE", "/static/style.css", headers=headers)
    await client.request("FROBNICATE", "/en/", headers=headers)
    # Then the access log has method, route pattern and status only
    access = [r.getMessage() for r in caplog.records if r.name == "dropbox.web.access"]
    assert "GET /static/style.css (stylesheet) 200" in access
    assert "GET <unmatched> 404" in access
    assert "GET /{lang}/boom/{report_id} (boom) 500" in access
    assert "DELETE <unmatched> 405" in access
    assert "OTHER - 400" in access  # aiohttp refuses unknown methods before routing
    # and only the server fault is above DEBUG (a line per request would time every submission)
    loud = [r.getMessage() for r in caplog.records if r.name == "dropbox.web.access" and r.levelno > logging.DEBUG]
    assert loud == ["GET /{lang}/boom/{report_id} (boom) 500"]
    # And no record anywhere carries the client's data
    for leak in (DISTINCTIVE_UA, "Zebra", DISTINCTIVE_XFF, "127.0.0.1", "canary", "FROBNICATE"):
        assert leak not in caplog.text


async def test_default_aiohttp_access_log_is_silenced(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an app started without run_kwargs(), i.e. with aiohttp's default access log
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(build_app(tmp_path))
    await client.get("/en/", headers={"User-Agent": DISTINCTIVE_UA})
    # Then its records (address, User-Agent) are dropped
    assert DISTINCTIVE_UA not in caplog.text
    assert not [r for r in caplog.records if r.name == "aiohttp.access"]


def test_run_kwargs_replace_the_access_log() -> None:
    kwargs = run_kwargs()
    assert kwargs["access_log_class"] is RouteAccessLogger
    assert kwargs["access_log"].name != "aiohttp.access"


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nUser-Agent: Zebra-Unicorn-UA\r\nBad Header Zebra\r\n\r\n",
        b"ZEBRA\x00\x01 /en/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /en/ HTTP/1.1\r\nHost: x\r\nContent-Length: zebra\r\n\r\n",
    ],
)
async def test_malformed_requests_leave_no_client_data_in_logs(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start(aiohttp_client, build_app(tmp_path))
    # When a malformed request arrives, which aiohttp answers itself before any app code runs
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    # Then it is refused without naming aiohttp or its version
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.0 400")
    assert re.search(r"^Server: dropbox$", head, re.MULTILINE)
    assert "aiohttp" not in head and "Python" not in head
    # And aiohttp's log line keeps its wording but neither the peer nor the request bytes
    server_records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert server_records
    assert all("<withheld>" in r.getMessage() for r in server_records)
    for leak in ("Zebra", "ZEBRA", "127.0.0.1", "zebra"):
        assert leak not in caplog.text


def test_client_data_filter_strips_arguments_and_tracebacks() -> None:
    try:
        raise ValueError("GET /en/secret-path HTTP/1.1")
    except ValueError as exc:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
            ("198.51.100.9",), (type(exc), exc, exc.__traceback__),
        )
    assert ClientDataFilter().filter(record)
    assert record.getMessage() == "Error handling request from <withheld> [ValueError]"
    assert record.exc_info is None and record.args == ()


def _site_files() -> list[Path]:
    return [*TEMPLATE_DIR.rglob("*.html"), *(PACKAGE_DIR / "static").rglob("*"), *LOCALE_DIR.rglob("*.po")]


@pytest.mark.parametrize("path", _site_files(), ids=lambda p: p.name)
def test_no_javascript_and_no_other_origins(path: Path) -> None:
    text = path.read_text(encoding="utf-8").lower()
    assert "<script" not in text
    assert "javascript:" not in text
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), "reference to another origin"
    assert "@import" not in text and "@font-face" not in text


async def test_landing_page_is_rendered_once_per_language(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """It is what a flood of visitors hits while Argon2id runs use the cores: cached per language."""
    app = build_app(tmp_path)
    client = await start(aiohttp_client, app)
    first = await client.get("/da/")
    second = await client.get("/da/")
    assert first.status == second.status == 200
    assert await first.read() == await second.read()
    assert second.headers["Content-Language"] == "da"
    assert "default-src 'none'" in second.headers["Content-Security-Policy"]
    assert set(app[LANDING_PAGES]) == {"da"}


@pytest.mark.parametrize(
    ("method", "fetch_site", "status"),
    [
        ("POST", "cross-site", 403),  # a foreign page's form
        ("POST", "CROSS-SITE", 403),
        ("POST", "same-site", 403),  # a sibling origin: the other app on the same host without tor
        ("POST", "something-new", 403),  # not a value a browser sends: not our own page either
        ("POST", "same-origin", 303),  # our own form
        ("POST", "none", 303),  # started by the person (typed, bookmarked)
        ("POST", None, 303),  # older browsers, curl: no header, no victim's browser to abuse
        ("GET", "cross-site", 200),  # following a link from elsewhere is fine
    ],
)
async def test_unsafe_requests_sent_by_another_site_are_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path, method: str, fetch_site: str | None, status: int
) -> None:
    client = await start(aiohttp_client, _app_with_test_routes(tmp_path))
    path = "/da/done" if method == "POST" else "/da/"
    headers = {"Sec-Fetch-Site": fetch_site} if fetch_site is not None else {}
    response = await client.request(method, path, headers=headers, allow_redirects=False)
    assert response.status == status
    assert_security_headers(response.headers)
    if status == 403:
        page = await response.text()
        assert "Denne formular kom fra et andet websted" in page and "intet blev sendt eller ændret" in page
