"""The benchmarks' HTTP client side: streamed multipart uploads and small HTML scraping helpers.

Uploads are sent the way a browser sends a form: one multipart/form-data body with a
Content-Length, text fields first, then each file as a part with a filename. File bytes are read
from a slice of a data file in 1 MiB steps, so the client's memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
from aiohttp import hdrs, payload
from aiohttp.abc import AbstractStreamWriter

from dropbox.config import MiB

READ_BYTES = 1 * MiB


class FileSlice(payload.Payload):
    """`length` bytes of `path` from `offset`, read in 1 MiB steps off the event loop.

    `on_sent` is called with `time.perf_counter()` once the last byte was handed to the socket.
    """

    def __init__(self, path: Path, *, offset: int, length: int, on_sent: list[float] | None = None) -> None:
        super().__init__(path, content_type="application/octet-stream")
        self._path = path
        self._offset = offset
        self._size = length
        self._on_sent = on_sent

    async def write(self, writer: AbstractStreamWriter) -> None:
        fd = os.open(self._path, os.O_RDONLY)
        try:
            position, end = self._offset, self._offset + (self._size or 0)
            while position < end:
                chunk = await asyncio.to_thread(os.pread, fd, min(READ_BYTES, end - position), position)
                if not chunk:
                    raise OSError(f"{self._path} is shorter than the slice asked for")
                await writer.write(chunk)
                position += len(chunk)
        finally:
            os.close(fd)
        if self._on_sent is not None:
            self._on_sent.append(time.perf_counter())

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        await self.write(writer)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file slice is not text")


@dataclass(frozen=True)
class UploadFile:
    """One file part: which form field, the filename sent, and where its bytes come from."""

    field: str
    filename: str
    path: Path
    offset: int
    length: int


@dataclass
class UploadResult:
    status: int
    seconds: float
    #: Seconds from the start until the client had written the whole body.
    body_sent_seconds: float
    started: float
    body_sent_at: float
    finished: float
    body: str
    headers: dict[str, str]


def multipart_body(fields: Sequence[tuple[str, str]], files: Sequence[UploadFile],
                   on_sent: list[float]) -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    for name, value in fields:
        text = payload.StringPayload(value)
        text.headers.pop(hdrs.CONTENT_TYPE, None)  # as browsers send plain fields
        text.set_content_disposition("form-data", name=name)
        writer.append_payload(text)
    for index, f in enumerate(files):
        last = index == len(files) - 1
        part = FileSlice(f.path, offset=f.offset, length=f.length, on_sent=on_sent if last else None)
        part.set_content_disposition("form-data", name=f.field, filename=f.filename)
        writer.append_payload(part)
    return writer


async def upload(session: aiohttp.ClientSession, url: str, *, fields: Sequence[tuple[str, str]],
                 files: Sequence[UploadFile], timeout_s: float = 600) -> UploadResult:
    """POST one multipart form and read the whole answer; redirects are not followed."""
    on_sent: list[float] = []
    body = multipart_body(fields, files, on_sent)
    started = time.perf_counter()
    async with session.post(url, data=body, allow_redirects=False,
                            timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
        text = await response.text(errors="replace")
        finished = time.perf_counter()
        sent_at = on_sent[0] if on_sent else finished
        return UploadResult(status=response.status, seconds=finished - started,
                            body_sent_seconds=sent_at - started, started=started, body_sent_at=sent_at,
                            finished=finished, body=text, headers=dict(response.headers))


def slices(path: Path, *, count: int, size: int, field: str, prefix: str) -> list[UploadFile]:
    """`count` consecutive slices of `size` bytes of one data file, as separate files."""
    return [UploadFile(field=field, filename=f"{prefix}-{i:03d}.bin", path=path, offset=i * size, length=size)
            for i in range(count)]


# --- HTML helpers ----------------------------------------------------------------------------


class _HiddenInputs(HTMLParser):
    def __init__(self, action: str | None) -> None:
        super().__init__()
        self.action = action
        self.fields: dict[str, str] = {}
        self._in_wanted_form = action is None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and self.action is not None:
            self._in_wanted_form = (values.get("action") or "").split("?")[0] in ("", self.action)
        if tag != "input" or not self._in_wanted_form:
            return
        if (values.get("type") or "").lower() == "hidden" and values.get("name"):
            self.fields[values["name"] or ""] = values.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.action is not None:
            self._in_wanted_form = False


def hidden_fields(html: str, action: str | None = None) -> dict[str, str]:
    """The hidden inputs (a CSRF token, a preset channel) to send back with a POST.

    With `action`, only those of the form(s) posting to that path (or to the page itself).
    """
    parser = _HiddenInputs(action)
    parser.feed(html)
    return parser.fields


#: Hidden field a form must send first (the app checks it before reading any file).
CSRF_FIELD = "csrf_token"


def form_fields(hidden: dict[str, str], values: dict[str, str]) -> list[tuple[str, str]]:
    """A form's fields in the order a browser sends them, CSRF token first, each name once.

    `values` are what the person typed; a hidden input of the same name (a preset channel) wins.
    """
    ordered = sorted(hidden.items(), key=lambda item: item[0] != CSRF_FIELD)
    return ordered + [(name, value) for name, value in values.items() if name not in hidden]


_RECEIPT_ELEMENT = re.compile(r"""id=["']receipt["'][^>]*>(.{0,600})""", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_DIGITS = re.compile(r"(\d{4})" + r"\s*(\d{4})" * 5)


def receipt_from(html: str) -> str | None:
    """The 24 receipt digits shown in the element with id="receipt" (groups may be in child tags)."""
    element = _RECEIPT_ELEMENT.search(html)
    if element is None:
        return None
    digits = _DIGITS.search(_TAG.sub("", element.group(1)))
    return "".join(digits.groups()) if digits else None


def report_text(size: int, seed: int) -> str:
    """A plain-text account of exactly `size` ASCII characters, different for each seed."""
    line = f"Report {seed}: on the third floor the invoices were changed after approval. "
    return (line * (size // len(line) + 1))[:size]
