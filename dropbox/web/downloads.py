"""The one download path of both apps: a stored file, decrypted as it streams, as an attachment.

What a damaged or cut blob does (one answer for both apps): each chunk goes out only once the one
after it (or the end, with its final tag) has been read and authenticated, and the response
declares the file's exact Content-Length. Damage in the first two chunks gets a page saying so
(409, as every known and named damage: caseworker/routes.py says why not 5xx) before any byte
of the file goes out; later damage cuts the connection short of the
Content-Length, so every client marks the download failed instead of keeping a silently
truncated file.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote

from aiohttp import web

from dropbox.blobs import BlobError
from dropbox.reports import Download
from dropbox.sealing import TamperedData
from dropbox.web.middleware import UserError
from dropbox.web.uploads import clean_filename

log = logging.getLogger(__name__)

#: Letters that NFKD does not reduce to ASCII, spelt as Danish and Swedish writers would.
_LETTERS = str.maketrans({"æ": "ae", "Æ": "Ae", "ø": "oe", "Ø": "Oe", "ß": "ss"})


def content_disposition(name: str) -> str:
    """`attachment` with a name that is safe in the header and on the person's disk.

    An ASCII fallback for old clients and the exact (cleaned) name in RFC 6266 / RFC 8187 form.
    Quotes, backslashes, path separators and control characters never reach the header.
    """
    cleaned = clean_filename(name)
    ascii_name = unicodedata.normalize("NFKD", cleaned.translate(_LETTERS)).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()-]+", "_", ascii_name).strip(" ._") or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


async def stream_download(request: web.Request, download: Download, *, unreadable: str) -> web.StreamResponse:
    """Send `download` (see the module docstring for damage). `unreadable`: the msgid of the page
    (409) when the blob is found damaged or missing before the first byte goes out.

    The blob's iterator is closed on the way out, also on damage or when the client went away,
    so no database cursor outlives the request."""
    chunks = download.chunks
    try:
        try:
            held = await _next(chunks)
            ahead = await _next(chunks) if held else b""
        except (TamperedData, OSError, BlobError) as e:
            log.error("a stored file could not be opened for download (%s)", type(e).__name__)
            raise UserError(409, unreadable) from e
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                               "Content-Disposition": content_disposition(download.name)})
        response.content_length = download.size
        await response.prepare(request)
        while held:
            await response.write(held)
            held, ahead = ahead, (await _next(chunks) if ahead else b"")
        await response.write_eof()
        return response
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def _next(chunks: Iterator[bytes]) -> bytes:
    """The next plaintext chunk of a blob (read and authenticated in a worker thread), b"" at the end."""
    return await asyncio.to_thread(next, chunks, b"")
