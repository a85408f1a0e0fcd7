"""A whistleblower's and a caseworker's HTTP moves, as the robustness tests make them.

Written against the apps' contracts (see issue 3 and 4): the submit form, the receipt shown in
the element with id="receipt", the mailbox login, inbox and reply, the caseworker login. Bodies
are encoded here by hand (not with aiohttp's FormData) so a test controls field order, can stream
a body slowly, and can send the exact bytes a browser would.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser

import aiohttp

RECEIPT_DIGITS = re.compile(r"^\d{24}$")
Field = tuple[str, str | bytes, str | None]
"""(name, value, filename): a file part when filename is not None."""


def new_client(*, local_addr: str | None = None, limit: int = 100) -> aiohttp.ClientSession:
    """A client with its own cookie jar (unsafe=True: the apps live on an IP address, not a name).

    `local_addr` binds the client's end of every connection to that loopback address, so a test
    can then look for it in the server's logs.
    """
    connector = aiohttp.TCPConnector(limit=limit, local_addr=(local_addr, 0) if local_addr else None,
                                     force_close=False)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 timeout=aiohttp.ClientTimeout(total=120))


def multipart(fields: Sequence[Field], *, boundary: str | None = None) -> tuple[bytes, str]:
    """multipart/form-data as a browser sends it; returns (body, Content-Type)."""
    boundary = boundary or "----robust" + secrets.token_hex(12)
    out = bytearray()
    for name, value, filename in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n"
        out += value.encode("utf-8") if isinstance(value, str) else value
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


async def _slowly(body: bytes, *, pieces: int, delay: float) -> AsyncIterator[bytes]:
    step = max(1, len(body) // pieces)
    for i in range(0, len(body), step):
        yield body[i : i + step]
        await asyncio.sleep(delay)


def submission_fields(*, text: str, contact: str | None = None, answers: dict[str, str] | None = None,
                      files: Sequence[tuple[str, bytes]] = (), channel: str = "default") -> list[Field]:
    fields: list[Field] = [("channel", channel, None), ("text", text, None)]
    if contact is not None:
        fields.append(("contact", contact, None))
    for key, value in (answers or {}).items():
        fields.append((f"answer_{key}", value, None))
    fields += [("files", data, name) for name, data in files]
    return fields


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str]
    location: str | None


async def post_body(client: aiohttp.ClientSession, url: str, body: bytes, content_type: str, *,
                    slow: tuple[int, float] | None = None, headers: dict[str, str] | None = None) -> Answer:
    """POST without following redirects; `slow=(pieces, delay)` streams the body in pieces."""
    data: io.BytesIO | AsyncIterator[bytes] = (io.BytesIO(body) if slow is None
                                               else _slowly(body, pieces=slow[0], delay=slow[1]))
    all_headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
    async with client.post(url, data=data, headers=all_headers, allow_redirects=False) as response:
        text = await response.text(errors="replace")
        return Answer(response.status, text, dict(response.headers), response.headers.get("Location"))


async def get(client: aiohttp.ClientSession, url: str, **kwargs: object) -> Answer:
    async with client.get(url, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        text = await response.text(errors="replace")
        return Answer(response.status, text, dict(response.headers), response.headers.get("Location"))


@dataclass(frozen=True)
class Submitted:
    answer: Answer
    receipt: str | None


async def submit(client: aiohttp.ClientSession, base: str, *, text: str, contact: str | None = None,
                 answers: dict[str, str] | None = None, files: Sequence[tuple[str, bytes]] = (),
                 slow: tuple[int, float] | None = None, lang: str = "en") -> Submitted:
    body, content_type = multipart(submission_fields(text=text, contact=contact, answers=answers, files=files))
    answer = await post_body(client, f"{base}/{lang}/submit", body, content_type, slow=slow)
    return Submitted(answer, receipt_in(answer.body) if answer.status == 200 else None)


class _ElementText(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.element_id = element_id
        self.depth = 0
        self.found = False
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == self.element_id and not self.found:
            self.found = True
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def element_text(html: str, element_id: str) -> str | None:
    parser = _ElementText(element_id)
    parser.feed(html)
    parser.close()
    return "".join(parser.parts) if parser.found else None


def receipt_in(html: str) -> str | None:
    """The 24 digits shown in id="receipt" (groups of four), or None if there is none."""
    text = element_text(html, "receipt")
    if text is None:
        return None
    digits = "".join(ch for ch in text if not ch.isspace() and ch != "-")
    return digits if RECEIPT_DIGITS.match(digits) else None


_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)


def csrf_token(html: str) -> str | None:
    for tag in _INPUT.findall(html):
        if re.search(r'name\s*=\s*"csrf_token"', tag):
            value = re.search(r'value\s*=\s*"([^"]*)"', tag)
            if value:
                return value.group(1)
    return None


async def mailbox_login(client: aiohttp.ClientSession, base: str, receipt: str, *, lang: str = "en") -> Answer:
    """POST the receipt; on success a 303 to the inbox with the wb_session cookie in `client`'s jar."""
    async with client.post(f"{base}/{lang}/mailbox/login", data={"receipt": receipt},
                           allow_redirects=False) as response:
        text = await response.text(errors="replace")
        return Answer(response.status, text, dict(response.headers), response.headers.get("Location"))


async def open_inbox(client: aiohttp.ClientSession, base: str, receipt: str) -> str:
    """Log in with a fresh cookie jar and return the inbox page; AssertionError if that fails."""
    client.cookie_jar.clear()
    login = await mailbox_login(client, base, receipt)
    assert login.status == 303 and login.location and login.location.endswith("/mailbox/inbox"), \
        f"mailbox login answered {login.status} {login.location}"
    inbox = await get(client, f"{base}/en/mailbox/inbox")
    assert inbox.status == 200, f"inbox answered {inbox.status}"
    return inbox.body


async def reply(client: aiohttp.ClientSession, base: str, *, csrf: str, text: str,
                files: Sequence[tuple[str, bytes]] = (), slow: tuple[int, float] | None = None) -> Answer:
    fields: list[Field] = [("csrf_token", csrf, None), ("text", text, None)]
    fields += [("files", data, name) for name, data in files]
    body, content_type = multipart(fields)
    return await post_body(client, f"{base}/en/mailbox/reply", body, content_type, slow=slow)


async def caseworker_login(client: aiohttp.ClientSession, admin_base: str, name: str, passphrase: str,
                           *, totp: str = "") -> Answer:
    """The login page first (it sets the double-submit cookie and token), then POST the credentials.

    On success: 303 to the report list, the cw_session cookie in `client`'s jar.
    """
    page = await get(client, f"{admin_base}/en/login")
    token = csrf_token(page.body) or ""
    form = {"csrf_token": token, "name": name, "passphrase": passphrase, "totp": totp}
    async with client.post(f"{admin_base}/en/login", data=form, allow_redirects=False) as response:
        text = await response.text(errors="replace")
        return Answer(response.status, text, dict(response.headers), response.headers.get("Location"))
