"""A whistleblower's and a caseworker's HTTP moves, as the robustness tests make them.

Over a real aiohttp ClientSession with its own cookie jar, against a server on loopback (the real
server process, or both apps in-process): the submit form, the receipt shown, the mailbox login,
inbox and reply, the caseworker login. Bodies are encoded with `tests.support.forms.multipart`,
so a test controls field order and can stream a body slowly.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp

from tests.support.forms import Field, find_csrf, find_receipt_digits, multipart, submission_fields


def new_client(*, local_addr: str | None = None, limit: int = 100) -> aiohttp.ClientSession:
    """A client with its own cookie jar (unsafe=True: the apps live on an IP address, not a name).

    `local_addr` binds the client's end of every connection to that loopback address, so a test
    can then look for it in the server's logs.
    """
    connector = aiohttp.TCPConnector(limit=limit, local_addr=(local_addr, 0) if local_addr else None,
                                     force_close=False)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 timeout=aiohttp.ClientTimeout(total=120))


async def _slowly(body: bytes, *, pieces: int, delay: float) -> AsyncIterator[bytes]:
    step = max(1, len(body) // pieces)
    for i in range(0, len(body), step):
        yield body[i : i + step]
        await asyncio.sleep(delay)


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
                 slow: tuple[int, float] | None = None, lang: str = "en", clean: bool = False) -> Submitted:
    body, content_type = multipart(submission_fields(text=text, contact=contact, answers=answers, files=files,
                                                     clean=clean))
    answer = await post_body(client, f"{base}/{lang}/submit", body, content_type, slow=slow)
    return Submitted(answer, find_receipt_digits(answer.body) if answer.status == 200 else None)


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
    token = find_csrf(page.body) or ""
    form = {"csrf_token": token, "name": name, "passphrase": passphrase, "totp": totp}
    async with client.post(f"{admin_base}/en/login", data=form, allow_redirects=False) as response:
        text = await response.text(errors="replace")
        return Answer(response.status, text, dict(response.headers), response.headers.get("Location"))
