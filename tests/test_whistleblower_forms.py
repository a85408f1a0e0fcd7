"""The streaming multipart reader: fields, sealed files, and every limit, over real HTTP and real files."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData, web
from hypothesis import given
from hypothesis import strategies as st

from dropbox.blobs import BlobStore, size_bucket
from dropbox.config import config_for_tests
from dropbox.install import make_private_dir
from dropbox.sealing import sealed_size
from dropbox.storage import Store
from dropbox.web.middleware import run_kwargs
from dropbox.web.uploads import (
    MAX_FILENAME_CHARS,
    FormError,
    FormSpec,
    UploadLimits,
    clean_filename,
    read_form,
)
from tests.support.data_checks import leftover_staged, stored_lengths
from tests.support.full_disk import database_full
from tests.support.live_server import AiohttpClient

KiB = 1024
LIMITS = UploadLimits(max_file_bytes=40 * KiB, max_total_bytes=64 * KiB, max_files=3, chunk_bytes=16 * KiB)
SPEC = FormSpec(fields={"channel": 64, "text": 50, "contact": 10}, prefixed={"answer_": 20}, max_prefixed=2)
BOUNDARY = "----testboundary7MA4YWxkTrZu0gW"


class Refused(Exception):
    """What the test's `first` check raises."""


class FormSite:
    """A bare app whose one route runs read_form and reports what came out, as JSON."""

    def __init__(self, tmp_path: Path, spec: FormSpec = SPEC, limits: UploadLimits = LIMITS) -> None:
        config = config_for_tests(tmp_path / "data")
        make_private_dir(config.data_dir)
        self.config = config
        self.store: Store
        self.blobs: BlobStore
        self.spec = spec
        self.limits = limits
        self.outcomes: list[str] = []
        self.done = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/form", self.handle)
        self.app.cleanup_ctx.append(self._database)

    async def _database(self, app: web.Application) -> AsyncIterator[None]:
        self.store = await Store.open(self.config.db_path, create=True)
        self.blobs = BlobStore(self.store, self.config)
        yield
        await self.store.close()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._read(request)
        except asyncio.CancelledError:
            self.outcomes.append("cancelled")
            raise
        finally:
            self.done.set()

    async def _read(self, request: web.Request) -> web.Response:
        try:
            parsed = await read_form(request, spec=self.spec, limits=self.limits, blobs=self.blobs)
        except (FormError, Refused) as e:
            self.outcomes.append(type(e).__name__)
            return web.json_response({"error": type(e).__name__, "fields": getattr(e, "fields", {})})
        parsed.staged.promote()
        files = []
        for f in parsed.staged.files:
            data = b"".join(self.blobs.read(f.id, file_key=f.file_key, size=f.size))
            stored = sum(stored_lengths(self.config, f.id))
            files.append({"name": f.name, "size": f.size, "sha256": hashlib.sha256(data).hexdigest(),
                          "uniform_frames": stored == sealed_size(size_bucket(f.size),
                                                                  chunk_bytes=self.blobs.chunk_bytes)})
        # This bare app stores no rows: what it read is deleted again, so leftovers() sees nothing.
        await self.store.delete_chunks([f.id for f in parsed.staged.files])
        self.outcomes.append("ok")
        return web.json_response({"fields": parsed.fields, "files": files})

    def leftovers(self) -> list[str]:
        return leftover_staged(self.config)


async def _post(aiohttp_client: AiohttpClient, site: FormSite, data: Any, **kwargs: Any) -> dict[str, Any]:
    client = await aiohttp_client(site.app)
    response = await client.post("/form", data=data, **kwargs)
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


def _raw(*parts: str, end: bool = True) -> bytes:
    body = "".join(f"--{BOUNDARY}\r\n{part}\r\n" for part in parts)
    return (body + (f"--{BOUNDARY}--\r\n" if end else "")).encode("utf-8", "surrogateescape")


RAW_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- what comes through --------------------------------------------------------------------------


async def test_fields_and_files_come_through_sealed_in_uniform_chunks(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # Given a form with text (browser CRLF line ends), an answer and two files, one spanning chunks
    site = FormSite(tmp_path)
    big = bytes(range(256)) * 130 + b"tail"  # 33,284 bytes: two full chunks and a short one
    form = FormData(quote_fields=False)  # as browsers send names: raw UTF-8, only '"' escaped
    form.add_field("channel", "default")
    form.add_field("text", "first line\r\nsecond: æøå ✓")
    form.add_field("answer_dept", "Finance")
    form.add_field("files", big, filename="C:\\Users\\me\\Scan 1.pdf")
    form.add_field("files", b"", filename="tom %22fil%22 æ.txt")
    # When it is read
    result = await _post(aiohttp_client, site, form)
    # Then the text is plain, the path is dropped from the name, the bytes are intact after
    # sealing, and the sealed frames have the configured size whatever the network did
    assert result["fields"] == {"channel": "default", "text": "first line\nsecond: æøå ✓", "answer_dept": "Finance"}
    assert result["files"] == [
        {"name": "Scan 1.pdf", "size": len(big), "sha256": _sha(big), "uniform_frames": True},
        {"name": 'tom "fil" æ.txt', "size": 0, "sha256": _sha(b""), "uniform_frames": True},
    ]
    assert site.leftovers() == []


async def test_an_unused_file_input_is_skipped(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    # Given a browser's empty part for a file input with nothing chosen
    site = FormSite(tmp_path)
    form = FormData()
    form.add_field("text", "hello")
    form.add_field("files", b"", filename="", content_type="application/octet-stream")
    # Then it stages nothing
    result = await _post(aiohttp_client, site, form)
    assert result == {"fields": {"text": "hello"}, "files": []}


async def test_text_at_its_limit_is_accepted_counting_characters_not_bytes(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    site = FormSite(tmp_path)
    form = FormData(default_to_multipart=True)
    form.add_field("text", "€" * 50)
    form.add_field("contact", "\r\n" * 10)
    result = await _post(aiohttp_client, site, form)
    assert result["fields"] == {"text": "€" * 50, "contact": "\n" * 10}


# -- limits ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "kept"),
    [
        ("text", "x" * 51, "x" * 50),
        ("text", "€" * 60, "€" * 50),
        ("text", "y" * 5000, "y" * 50),  # stops reading long before the end
        ("contact", "z" * 11, "z" * 10),
        ("answer_dept", "a" * 21, "a" * 20),
    ],
)
async def test_an_overlong_field_is_refused_and_its_beginning_kept_for_refilling(
    aiohttp_client: AiohttpClient, tmp_path: Path, field: str, value: str, kept: str
) -> None:
    site = FormSite(tmp_path)
    form = FormData()
    form.add_field("channel", "default")
    form.add_field(field, value)
    form.add_field("files", b"never read", filename="later.txt")
    result = await _post(aiohttp_client, site, form)
    assert result["error"] == "FieldTooLong"
    assert result["fields"] == {"channel": "default", field: kept}
    assert site.leftovers() == []


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([40 * KiB + 1], id="one file over the per-file limit"),
        pytest.param([30 * KiB, 30 * KiB, 5 * KiB], id="together over the submission limit"),
    ],
)
async def test_too_large_uploads_are_refused_and_leave_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path, sizes: list[int]
) -> None:
    # Given files over a limit, after a text field
    site = FormSite(tmp_path)
    form = FormData()
    form.add_field("text", "kept for refilling")
    for i, size in enumerate(sizes):
        form.add_field("files", b"\0" * size, filename=f"f{i}.bin")
    # When it is read
    result = await _post(aiohttp_client, site, form)
    # Then it is refused, the text is kept for the page, and no (partial) ciphertext remains
    assert result == {"error": "UploadTooLarge", "fields": {"text": "kept for refilling"}}
    assert site.leftovers() == []


async def test_files_exactly_at_the_limits_are_accepted(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    site = FormSite(tmp_path)
    form = FormData()
    form.add_field("files", b"\1" * (40 * KiB), filename="a.bin")
    form.add_field("files", b"\2" * (24 * KiB), filename="b.bin")
    result = await _post(aiohttp_client, site, form)
    assert [f["size"] for f in result["files"]] == [40 * KiB, 24 * KiB]


async def test_too_many_files_are_refused(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    site = FormSite(tmp_path)
    form = FormData()
    for i in range(4):
        form.add_field("files", b"x", filename=f"{i}.txt")
    result = await _post(aiohttp_client, site, form)
    assert result["error"] == "TooManyFiles"
    assert site.leftovers() == []


async def test_a_declared_length_beyond_every_limit_is_refused_before_reading(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    site = FormSite(tmp_path)
    body = _raw('Content-Disposition: form-data; name="text"\r\n\r\nhi')
    too_long = LIMITS.max_request_bytes(SPEC) + 1
    result = await _post(aiohttp_client, site, body + b"\0" * (too_long - len(body)), headers=RAW_HEADERS)
    assert result == {"error": "UploadTooLarge", "fields": {}}


def test_the_request_bound_covers_the_largest_acceptable_form() -> None:
    # files at the submission limit, every text field full of 4-byte characters, and framing
    bound = LIMITS.max_request_bytes(SPEC)
    assert bound >= LIMITS.max_total_bytes + 4 * (50 + 64 + 10 + 2 * 20)
    assert bound < LIMITS.max_total_bytes + 64 * KiB + (3 + 3 + 2) * 4096


# -- malformed input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_raw('Content-Disposition: form-data; name="surprise"\r\n\r\nx'), id="unknown field"),
        pytest.param(_raw('Content-Disposition: form-data; name="text"\r\n\r\na',
                          'Content-Disposition: form-data; name="text"\r\n\r\nb'), id="repeated field"),
        pytest.param(_raw('Content-Disposition: form-data; name="text"; filename="t.txt"\r\n\r\nx'),
                     id="text field sent as a file"),
        pytest.param(_raw('Content-Disposition: form-data; name="files"\r\n\r\nx'), id="file field without a name"),
        pytest.param(_raw("Content-Type: text/plain\r\n\r\nx"), id="part without a name"),
        pytest.param(_raw('Content-Disposition: form-data; name="text"\r\n\r\nBAD').replace(b"BAD", b"\xff\xfe"),
                     id="not UTF-8"),
        pytest.param(_raw(*[f'Content-Disposition: form-data; name="answer_q{i}"\r\n\r\nx' for i in range(3)]),
                     id="more answers than questions allowed"),
        pytest.param(_raw('Content-Disposition: form-data; name="text"\r\n\r\nunfinished', end=False)[:-2],
                     id="no closing boundary"),
        pytest.param(b"--not-the-boundary\r\n\r\n", id="wrong boundary"),
        pytest.param(b"", id="empty body"),
    ],
)
async def test_malformed_bodies_are_refused(aiohttp_client: AiohttpClient, tmp_path: Path, body: bytes) -> None:
    site = FormSite(tmp_path)
    result = await _post(aiohttp_client, site, body, headers=RAW_HEADERS)
    assert result["error"] == "MalformedForm"
    assert site.leftovers() == []


async def test_a_repeated_field_keeps_the_first_value_for_refilling(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    site = FormSite(tmp_path)
    body = _raw('Content-Disposition: form-data; name="text"\r\n\r\nfirst',
                'Content-Disposition: form-data; name="text"\r\n\r\nsecond')
    result = await _post(aiohttp_client, site, body, headers=RAW_HEADERS)
    assert result == {"error": "MalformedForm", "fields": {"text": "first"}}


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data"},  # no boundary
        {"Content-Type": "multipart/form-data; boundary=" + "b" * 71},
        {"Content-Type": "multipart/mixed; boundary=" + BOUNDARY},
    ],
)
async def test_bodies_that_are_not_form_data_are_refused(
    aiohttp_client: AiohttpClient, tmp_path: Path, headers: dict[str, str]
) -> None:
    site = FormSite(tmp_path)
    result = await _post(aiohttp_client, site, _raw('Content-Disposition: form-data; name="text"\r\n\r\nx'),
                         headers=headers)
    assert result["error"] == "MalformedForm"


async def _hang_up_mid_file(port: int) -> None:
    """Announce a large upload, send the start of a file, and close the connection."""
    partial = _raw('Content-Disposition: form-data; name="files"; filename="a.bin"\r\n\r\n' + "x" * 20_000,
                   end=False)
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                 f"Content-Length: {len(partial) + 30_000}\r\n\r\n".encode() + partial)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_a_dropped_connection_is_not_mistaken_for_a_full_disk(tmp_path: Path) -> None:
    # Given the app served as production serves it (handlers are not cancelled on disconnect)
    site = FormSite(tmp_path)
    runner = web.AppRunner(site.app, **run_kwargs())
    await runner.setup()
    try:
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        # When a client hangs up in the middle of a file
        await _hang_up_mid_file(runner.addresses[0][1])
        await asyncio.wait_for(site.done.wait(), timeout=10)
    finally:
        await runner.cleanup()
    # Then the upload ends as a client that went away (not NoSpace), and no ciphertext remains
    assert site.outcomes == ["ClientGone"]
    assert site.leftovers() == []


async def test_a_cancelled_upload_leaves_no_file_and_no_open_handle(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # Given a server that cancels the handler when the client goes away (aiohttp's test server
    # does; a ResourceWarning for an unclosed file would fail this test)
    site = FormSite(tmp_path)
    client = await aiohttp_client(site.app)
    assert client.server.port is not None
    # When a client hangs up in the middle of a file
    await _hang_up_mid_file(client.server.port)
    await asyncio.wait_for(site.done.wait(), timeout=10)
    # Then nothing is left behind
    assert site.outcomes == ["cancelled"]
    assert site.leftovers() == []


async def test_a_disk_that_refuses_writes_is_reported_with_the_fields(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    site = FormSite(tmp_path)
    client = await aiohttp_client(site.app)
    form = FormData()
    form.add_field("text", "still here")
    form.add_field("files", b"d" * 39 * KiB, filename="a.txt")  # 64 KiB stored: more than a page has free
    async with database_full(site.store):  # every write fails as on a full disk
        response = await client.post("/form", data=form)
        result = await response.json()
    assert result == {"error": "NoSpace", "fields": {"text": "still here"}}
    assert site.leftovers() == []


# -- the first field (CSRF token) ------------------------------------------------------------------


def _first_spec(seen: list[str]) -> FormSpec:
    def check(value: str) -> None:
        seen.append(value)
        if value != "good-token":
            raise Refused()

    return FormSpec(fields={"text": 50}, first=("csrf_token", check))


@pytest.mark.parametrize(
    ("first_name", "first_value", "outcome", "checked"),
    [
        ("csrf_token", "good-token", "ok", ["good-token"]),
        ("csrf_token", "forged", "Refused", ["forged"]),
        ("text", "hello", "Refused", [""]),
    ],
)
async def test_the_first_field_is_checked_before_anything_else_is_read(
    aiohttp_client: AiohttpClient, tmp_path: Path, first_name: str, first_value: str, outcome: str,
    checked: list[str],
) -> None:
    seen: list[str] = []
    site = FormSite(tmp_path, spec=_first_spec(seen))
    form = FormData()
    form.add_field(first_name, first_value)
    form.add_field("files", b"payload", filename="a.txt")
    result = await _post(aiohttp_client, site, form)
    assert site.outcomes == [outcome] and seen == checked
    if outcome == "ok":
        assert result["fields"] == {} and [f["name"] for f in result["files"]] == ["a.txt"]
    assert site.leftovers() == []


async def test_a_form_without_parts_still_fails_the_first_field_check(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    seen: list[str] = []
    site = FormSite(tmp_path, spec=_first_spec(seen))
    await _post(aiohttp_client, site, f"--{BOUNDARY}--\r\n".encode(), headers=RAW_HEADERS)
    assert site.outcomes == ["Refused"] and seen == [""]


async def test_a_check_that_lets_an_empty_value_through_still_stops_the_form(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    site = FormSite(tmp_path, spec=FormSpec(fields={"text": 50}, first=("csrf_token", lambda value: None)))
    result = await _post(aiohttp_client, site, FormData({"text": "no token"}, default_to_multipart=True))
    assert result["error"] == "MalformedForm"


# -- file names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\jane\\Desktop\\memo.docx", "memo.docx"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # a right-to-left override disguising .exe
        ("tab\tand\nnewline.txt", "tabandnewline.txt"),
        ("..", "file"),
        ("", "file"),
        ("e\u0301.txt", "é.txt"),  # NFC
        ("a" * 300 + ".pdf", "a" * (MAX_FILENAME_CHARS - 4) + ".pdf"),
    ],
)
def test_clean_filename(raw: str, clean: str) -> None:
    assert clean_filename(raw) == clean


@given(st.text(max_size=400))
def test_clean_filename_always_gives_a_short_plain_last_component(raw: str) -> None:
    name = clean_filename(raw)
    assert 0 < len(name) <= MAX_FILENAME_CHARS
    assert "/" not in name and "\\" not in name and name not in (".", "..")
    assert all(ch.isprintable() or ch == " " for ch in name)
