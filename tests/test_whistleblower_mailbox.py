"""The mailbox over real HTTP on a real install: receipt login, inbox, downloads, replies, logout.

Every response is checked for the security headers.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from aiohttp import ClientResponse, FormData

from dropbox.statistics import recorder
from dropbox.storage import Channel
from dropbox.submissions import open_mailbox
from dropbox.web.sessions import SESSIONS
from dropbox.web.throttle import FAILURE_BUDGET
from tests.support.clock import FakeClock, until
from tests.support.data_checks import chunk_files
from tests.support.domain import caseworker_reply  # noqa: F401
from tests.support.forms import csrf_in, receipt_in, report_form  # noqa: F401
from tests.support.headers import assert_security_headers  # noqa: F401
from tests.support.live_server import AiohttpClient
from tests.support.whistleblower_site import (  # noqa: F401
    Client,
    KiB,
    Site,
    log_in,
    logged_at_the_next_day,
    make_install,
    open_site,
    site_fixture,
    submit_report,
)

COOKIE = "wb_session"
GENERIC = "That receipt code did not open a mailbox. Please check the code and try again."


async def _page(response: ClientResponse, status: int) -> str:
    text = await response.text()
    assert response.status == status, text
    assert_security_headers(response.headers)
    return text


def _location(response: ClientResponse, status: int = 303) -> str:
    assert response.status == status
    assert_security_headers(response.headers)
    return response.headers["Location"]


def _rows(site: Site, table: str) -> int:
    with sqlite3.connect(site.config.db_path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _file_count(site: Site) -> int:
    return len(chunk_files(site.config))


def _reply(csrf: str | None, text: str = "", files: dict[str, bytes] | None = None, *,
           csrf_last: bool = False) -> FormData:
    form = FormData(quote_fields=False)
    if csrf is not None and not csrf_last:
        form.add_field("csrf_token", csrf)
    form.add_field("text", text)
    for name, data in (files or {}).items():
        form.add_field("files", data, filename=name, content_type="application/octet-stream")
    if not files:
        form.add_field("files", b"", filename="", content_type="application/octet-stream")
    if csrf is not None and csrf_last:
        form.add_field("csrf_token", csrf)
    return form


async def _report_id(site: Site) -> str:
    with sqlite3.connect(site.config.db_path) as db:
        return str(db.execute("SELECT id FROM reports").fetchone()[0])


# -- logging in ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "heading"), [("en", "Open your mailbox"), ("da", "Åbn din postkasse"),
                                               ("sv", "Öppna din brevlåda")])
async def test_the_login_page(site: Site, lang: str, heading: str) -> None:
    response = await site.client.get(f"/{lang}/mailbox")
    page = await _page(response, 200)
    assert f"<h1>{heading}</h1>" in page and f'action="/{lang}/mailbox/login"' in page
    assert re.search(r'<input type="text" id="receipt" name="receipt"[^>]*autocomplete="off"', page)
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("attempt", ["0000 0000 0000 0000", "12345", "", "x" * 5000, "１２３４"])
async def test_a_wrong_receipt_gets_one_generic_answer_and_no_session(site: Site, attempt: str) -> None:
    await submit_report(site.client)
    response = await site.client.post("/en/mailbox/login", data={"receipt": attempt})
    page = await _page(response, 403)
    assert GENERIC in page
    assert "Set-Cookie" not in response.headers
    if attempt:
        assert attempt not in page  # the attempt is never echoed back


async def test_guessing_spends_the_budget_and_slows_everyone_but_never_locks_out(site: Site) -> None:
    # Given a receipt and a budget of two failures a minute (LIMITS)
    receipt = await submit_report(site.client)
    slowed = "Many attempts are being made on this site right now"
    # When the budget is spent by wrong guesses
    for expect_slowed in (False, False, True):
        page = await _page(await site.client.post("/en/mailbox/login", data={"receipt": "1111222233334444"}), 403)
        assert (slowed in page) is expect_slowed
    # Then the right code still opens the mailbox (slowed, not refused)
    response = await site.client.post("/en/mailbox/login", data={"receipt": receipt}, allow_redirects=False)
    assert _location(response) == "/en/mailbox/inbox"


async def test_malformed_receipts_do_not_spend_the_failure_budget(site: Site) -> None:
    # Given a budget of two failures a minute (LIMITS), and the receipt stock full (so no refill runs)
    budget = site.app[FAILURE_BUDGET]
    services = site.services
    await until(lambda: services.receipts is not None and services.receipts.ready == site.config.receipt_stock)
    derivations = services.public_kdf.started
    # When many receipts that cannot be codes at all are sent
    for attempt in ("", "1234", "1" * 17, "x" * 65, "abcd efgh ijkl mnop", "1" * 10_000):
        page = await _page(await site.client.post("/en/mailbox/login", data={"receipt": attempt}), 403)
        assert GENERIC in page
    # Then no Argon2id run was started for them, none was counted, and the next well-formed guess
    # is neither slowed nor over budget
    assert services.public_kdf.started == derivations
    assert not budget.spent()
    page = await _page(await site.client.post("/en/mailbox/login", data={"receipt": "1111222233334444"}), 403)
    assert "Many attempts are being made" not in page


async def test_a_busy_key_derivation_pool_asks_to_come_back_in_a_minute(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config.replace(kdf_queue_limit=0)) as site:
        response = await site.client.post("/en/mailbox/login", data={"receipt": "1234 5678 9012 3456"})
        page = await _page(response, 503)
        assert "Please wait a minute and try again" in page and response.headers["Retry-After"] == "60"
        assert "Set-Cookie" not in response.headers


async def test_login_sets_a_browser_session_cookie_and_lands_in_the_inbox(site: Site) -> None:
    receipt = await submit_report(site.client)
    response = await site.client.post("/da/mailbox/login", data={"receipt": receipt.replace(" ", "")},
                                      allow_redirects=False)
    assert _location(response) == "/da/mailbox/inbox"
    (cookie,) = response.headers.getall("Set-Cookie")
    assert re.fullmatch(COOKIE + r"=[A-Za-z0-9_-]{43}; HttpOnly; Path=/; SameSite=Strict", cookie)
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()


# -- the inbox -----------------------------------------------------------------------------------


async def test_the_inbox_shows_what_was_sent_the_status_and_the_first_visit(site: Site) -> None:
    # Given a report with text that looks like markup, and two files
    text = "Line one\nLine <script>two</script> & more"
    receipt = await submit_report(site.client, text, files={"Budget 2025.xlsx": b"x" * 2048, "a.txt": b"abc"})
    # When the mailbox is opened
    page = await log_in(site.client, receipt)
    # Then it shows the text as typed (escaped), the files with sizes, the status in words and that
    # nobody opened it before
    assert "Line one\nLine &lt;script&gt;two&lt;/script&gt; &amp; more" in page
    assert "Budget 2025.xlsx</span> <span class=\"file-size\">(2\u00a0kB)" in page
    assert "a.txt</span> <span class=\"file-size\">(3\u00a0B)" in page
    assert "Status: Received, not yet opened" in page
    assert "Never: this is the first time" in page
    assert "No replies yet" in page
    # and its forms carry the session's CSRF token, first in the reply form
    assert re.search(r'enctype="multipart/form-data"[^>]*>\s*<input type="hidden" name="csrf_token" value="[^"]+">',
                     page)
    assert page.count('name="csrf_token"') == 4  # reply, meeting request, and logout twice


async def test_answers_and_contact_are_shown_with_their_question(site: Site) -> None:
    store = site.services.store
    default = await store.channel("default")
    await store.update_channel(Channel(**{**default.__dict__, "questions":
                                          '[{"id": "dept", "label": {"en": "Department?", "da": "Afdeling?"}}]'}))
    response = await site.client.post("/en/submit", data=report_form("t", answers={"dept": "Finance"},
                                                                      contact="Jane"))
    page = await log_in(site.client, receipt_in(await response.text()), lang="da")
    assert re.search(r"<dt>Afdeling\?</dt>\s*<dd class=\"wb-message-text\">Finance</dd>", page)
    assert "Jane" in page


@pytest.mark.parametrize(
    ("status", "words"),
    [("new", "Received, not yet opened"), ("opened", "Read by a caseworker"), ("in_progress", "Being looked into"),
     ("closed", "Closed")],
)
async def test_the_status_is_in_words_a_whistleblower_understands(site: Site, status: str, words: str) -> None:
    receipt = await submit_report(site.client)
    await site.services.store.update_report(await _report_id(site), status=status)
    assert f"Status: {words}" in await log_in(site.client, receipt)


async def test_the_inbox_tells_when_the_mailbox_was_last_opened_before_this_visit(site: Site) -> None:
    receipt = await submit_report(site.client)
    # The first visit: never before
    assert "Never: this is the first time" in await log_in(site.client, receipt)
    # A later login the same day
    page = await log_in(site.client, receipt)
    assert "Earlier today" in page and "someone else may have your receipt code" in page
    # A login after an earlier day's visit shows that day, and keeps showing it during this visit
    await site.services.store.update_report(await _report_id(site), whistleblower_seen_day="2025-03-04")
    assert "4 March 2025" in await log_in(site.client, receipt)
    assert "4 March 2025" in await _page(await site.client.get("/en/mailbox/inbox"), 200)


async def test_caseworker_replies_and_their_files_can_be_read_and_downloaded(site: Site) -> None:
    # Given a caseworker's reply with a file whose name needs care in a header
    receipt = await submit_report(site.client, files={"mine.txt": b"my own file"})
    content = b"%PDF-1.7 questions" * 1000
    await caseworker_reply(site.services, receipt, "Please tell us more.", {'Spørgsmål "1".pdf': content})
    # When the mailbox is opened
    page = await log_in(site.client, receipt, lang="da")
    # Then the reply is there, marked new, with its file as a download link
    assert "Please tell us more." in page and '<span class="wb-badge">Ny</span>' in page
    (link,) = re.findall(r'<a href="(/da/mailbox/files/[0-9a-f]{32})" download>', page)
    # And the file comes decrypted, as an attachment with a safe name, with every header
    response = await site.client.get(link)
    assert response.status == 200 and await response.read() == content
    assert_security_headers(response.headers)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Length"] == str(len(content))
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Spoergsmal _1_.pdf\"; filename*=UTF-8''Sp%C3%B8rgsm%C3%A5l%20%221%22.pdf")
    # And the whistleblower's own upload is listed but not downloadable
    assert "mine.txt" in page and "mine.txt</a>" not in page
    # And once seen, the reply is no longer new
    assert "wb-badge" not in await _page(await site.client.get("/da/mailbox/inbox"), 200)


async def test_only_caseworker_files_of_this_report_can_be_downloaded(site: Site) -> None:
    # Given two reports, each with a caseworker file, and the whistleblower's own file on the first
    first = await submit_report(site.client, files={"own.txt": b"own"})
    second = await submit_report(site.client)
    await caseworker_reply(site.services, second, "other", {"other.txt": b"not yours"})
    services = site.services
    others = [f.id for f in await services.store.files(await _report_of(site, second))]
    own = [f.id for f in await services.store.files(await _report_of(site, first))]
    # When logged into the first
    await log_in(site.client, first)
    # Then neither its own upload nor the other report's file can be fetched
    for file_id in own + others:
        await _page(await site.client.get(f"/en/mailbox/files/{file_id}"), 404)
    await _page(await site.client.get("/en/mailbox/files/not-an-id"), 404)
    await _page(await site.client.get("/en/mailbox/files/" + "0" * 32), 404)


async def test_a_file_the_whistleblower_attached_to_a_later_message_cannot_be_downloaded(site: Site) -> None:
    # Given a report whose thread has a caseworker file and a file the whistleblower attached to a reply
    receipt = await submit_report(site.client)
    await caseworker_reply(site.services, receipt, "please send more", {"theirs.txt": b"from the caseworker"})
    page = await log_in(site.client, receipt)
    response = await site.client.post("/en/mailbox/reply", allow_redirects=False,
                                      data=_reply(csrf_in(page), "here it is", {"later.txt": b"the original"}))
    assert _location(response) == "/en/mailbox/inbox?sent=1"
    (report_id,) = await _report_ids(site)
    files = {f.message_id: f.id for f in await site.services.store.files(report_id)}
    authors = {m.id: m.author for m in await site.services.store.messages(report_id)}
    (later,) = (file_id for message_id, file_id in files.items() if authors.get(message_id) == "whistleblower")
    (theirs,) = (file_id for message_id, file_id in files.items() if authors.get(message_id) == "caseworker")
    # When the mailbox asks for each (someone holding the receipt must not pull the originals)
    # Then the caseworker's file comes, and the whistleblower's own later file is not found
    assert (await site.client.get(f"/en/mailbox/files/{theirs}")).status == 200
    await _page(await site.client.get(f"/en/mailbox/files/{later}"), 404)
    # And the inbox lists it without a link
    page = await _page(await site.client.get("/en/mailbox/inbox"), 200)
    assert "later.txt" in page and f"/en/mailbox/files/{later}" not in page


async def _report_ids(site: Site) -> list[str]:
    with sqlite3.connect(site.config.db_path) as db:
        return [r[0] for r in db.execute("SELECT id FROM reports ORDER BY id")]


async def _report_of(site: Site, receipt: str) -> str:
    services = site.services
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    return access.report_id


async def test_a_damaged_file_gets_an_error_page_not_garbage(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    receipt = await submit_report(site.client)
    await caseworker_reply(site.services, receipt, "file", {"f.txt": b"content"})
    page = await log_in(site.client, receipt)
    (link,) = re.findall(r'href="(/en/mailbox/files/([0-9a-f]{32}))"', page)
    with sqlite3.connect(site.config.db_path) as db:  # the last byte of its first stored chunk
        db.execute("UPDATE file_chunks SET data = CAST(substr(data, 1, length(data) - 1) || x'00' AS BLOB)"
                   " WHERE file_id = ? AND seq = 0", (link[1],))
    db.close()
    # The only frame is damaged, so this is caught before any byte goes out
    page = await _page(await site.client.get(link[0]), 409)
    assert "This file could not be opened" in page
    assert "TamperedData" in logged_at_the_next_day(site, caplog)


# -- replying ------------------------------------------------------------------------------------


async def test_a_reply_with_a_file_is_stored_and_shown(site: Site) -> None:
    receipt = await submit_report(site.client)
    page = await log_in(site.client, receipt)
    response = await site.client.post("/en/mailbox/reply", allow_redirects=False,
                                      data=_reply(csrf_in(page), "It started in March.", {"more.pdf": b"m" * 3000}))
    assert _location(response) == "/en/mailbox/inbox?sent=1"
    page = await _page(await site.client.get("/en/mailbox/inbox?sent=1"), 200)
    assert "Your message was sent." in page
    assert re.search(r'<li class="wb-message wb-from-you">\s*<p class="wb-message-meta"><strong>You</strong>'
                     r'[^<]*</p>\s*<div class="wb-message-text">It started in March.</div>', page)
    assert "more.pdf</span> <span class=\"file-size\">(2.9\u00a0kB)" in page


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda csrf: _reply(None, "forged", {"f.txt": b"x"}), id="no token"),
        pytest.param(lambda csrf: _reply("forged-token", "forged", {"f.txt": b"x"}), id="wrong token"),
        pytest.param(lambda csrf: _reply(csrf, "late token", {"f.txt": b"x"}, csrf_last=True), id="token not first"),
    ],
)
async def test_a_reply_without_the_right_csrf_token_first_is_refused_and_stores_nothing(
    site: Site, form: object
) -> None:
    receipt = await submit_report(site.client)
    csrf = csrf_in(await log_in(site.client, receipt))
    before = (_rows(site, "messages"), _file_count(site))
    page = await _page(await site.client.post("/en/mailbox/reply", data=form(csrf)), 403)  # type: ignore[operator]
    assert "The form has expired" in page
    assert (_rows(site, "messages"), _file_count(site)) == before


@pytest.mark.parametrize(
    ("text", "files", "status", "message"),
    [
        ("  \n ", None, 400, "Your message is empty"),
        ("too big", {"big.bin": b"\0" * (64 * KiB + 1)}, 413, "Each file can be at most 64\u00a0kB"),
        ("many", {f"{i}": b"x" for i in range(4)}, 413, "You can send at most 3 files at a time"),
        ("x" * 1001, None, 400, "Your message is longer than 1,000 characters"),
    ],
)
async def test_refused_replies_explain_why_keep_the_text_and_store_nothing(
    site: Site, text: str, files: dict[str, bytes] | None, status: int, message: str
) -> None:
    receipt = await submit_report(site.client)
    csrf = csrf_in(await log_in(site.client, receipt))
    before = (_rows(site, "messages"), _file_count(site))
    page = await _page(await site.client.post("/en/mailbox/reply", data=_reply(csrf, text, files)), status)
    assert message in page
    assert "\n" + text[:1000] + "</textarea>" in page
    assert (_rows(site, "messages"), _file_count(site)) == before


async def test_a_malformed_reply_is_a_clear_400(site: Site) -> None:
    receipt = await submit_report(site.client)
    csrf = csrf_in(await log_in(site.client, receipt))
    body = (f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
            '--b\r\nContent-Disposition: form-data; name="text"\r\n\r\nno end').encode()
    page = await _page(await site.client.post("/en/mailbox/reply", data=body,
                                              headers={"Content-Type": "multipart/form-data; boundary=b"}), 400)
    assert "Your browser sent the message in a way we could not read" in page


# -- sessions ending -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/en/mailbox/inbox", "/en/mailbox/files/" + "a" * 32])
async def test_without_a_session_the_mailbox_pages_lead_to_the_login(site: Site, path: str) -> None:
    assert _location(await site.client.get(path, allow_redirects=False)) == "/en/mailbox"
    response = await site.client.post("/en/mailbox/reply", data=_reply("x", " "), allow_redirects=False)
    assert _location(response) == "/en/mailbox"


async def test_a_reply_that_arrives_after_the_session_ended_is_given_back_not_lost(site: Site) -> None:
    # Given a person who wrote for longer than the idle timeout
    receipt = await submit_report(site.client)
    clock = FakeClock()
    site.app[SESSIONS]._clock = clock  # white-box: move the session store's clock instead of sleeping
    csrf = csrf_in(await log_in(site.client, receipt))
    clock.advance(site.config.whistleblower_idle_seconds * 2)
    before = (_rows(site, "messages"), _file_count(site))
    # When they send their message with a file
    long_text = "A long and careful answer <with markup>.\nSecond paragraph."
    response = await site.client.post("/en/mailbox/reply", data=_reply(csrf, long_text, {"f.txt": b"file"}),
                                      allow_redirects=False)
    # Then nothing is stored, and the login page gives their text back to copy
    page = await _page(response, 403)
    assert "so it was not sent" in page
    assert "\nA long and careful answer &lt;with markup&gt;.\nSecond paragraph.</textarea>" in page
    assert 'action="/en/mailbox/login"' in page
    assert (_rows(site, "messages"), _file_count(site)) == before


async def test_logout_needs_the_token_then_ends_the_session_and_clears_the_cookie(site: Site) -> None:
    receipt = await submit_report(site.client)
    csrf = csrf_in(await log_in(site.client, receipt))
    # A forged logout does nothing
    await _page(await site.client.post("/en/mailbox/logout", data={"csrf_token": "forged"}), 403)
    await _page(await site.client.get("/en/mailbox/inbox"), 200)
    # The real one ends the session and clears the cookie
    response = await site.client.post("/en/mailbox/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert _location(response) == "/en/"
    assert re.match(COOKIE + r'=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly', response.headers[
        "Set-Cookie"])
    assert len(site.app[SESSIONS]) == 0
    assert not _cookies(site.client)
    assert _location(await site.client.get("/en/mailbox/inbox", allow_redirects=False)) == "/en/mailbox"


def _cookies(client: Client) -> dict[str, str]:
    return {c.key: c.value for c in client.session.cookie_jar}


async def test_an_idle_session_expires_and_the_login_page_says_so(site: Site) -> None:
    receipt = await submit_report(site.client)
    clock = FakeClock()
    site.app[SESSIONS]._clock = clock  # white-box: move the session store's clock instead of sleeping
    await log_in(site.client, receipt)
    clock.advance(site.config.whistleblower_idle_seconds)
    response = await site.client.get("/en/mailbox/inbox", allow_redirects=False)
    assert _location(response) == "/en/mailbox?ended=1"
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    page = await _page(await site.client.get("/en/mailbox?ended=1"), 200)
    assert "Your mailbox was closed" in page


async def _session_cookie(client: Client, receipt: str) -> str:
    """Log in as a fresh browser would (no cookie) and return the session id it was given."""
    client.session.cookie_jar.clear()
    response = await client.post("/en/mailbox/login", data={"receipt": receipt}, allow_redirects=False)
    assert _location(response) == "/en/mailbox/inbox"
    return re.match(COOKIE + r"=([^;]+);", response.headers["Set-Cookie"]).group(1)  # type: ignore[union-attr]


async def _opens(client: Client, session_id: str) -> bool:
    client.session.cookie_jar.clear()
    response = await client.get("/en/mailbox/inbox", headers={"Cookie": f"{COOKIE}={session_id}"},
                                allow_redirects=False)
    return response.status == 200


async def test_one_receipt_logged_in_again_and_again_cannot_lock_others_out(site: Site) -> None:
    # Given a store of four sessions (white-box: the test install's is 10,000), and someone else
    # reading their mailbox
    site.app[SESSIONS].max_sessions = 4
    theirs = await _session_cookie(site.client, await submit_report(site.client, "theirs"))
    # When one receipt logs in ten times, each session kept alive by a GET
    receipt = await submit_report(site.client, "flood")
    flood = []
    for _ in range(10):
        flood.append(await _session_cookie(site.client, receipt))
        assert await _opens(site.client, flood[-1])
    # Then the other person's session still works, and the receipt holds only its last three
    assert await _opens(site.client, theirs)
    assert [await _opens(site.client, sid) for sid in flood] == [False] * 7 + [True] * 3
    # And when the store is full, a new login ends the least recently used session instead of a 503
    for sid in (theirs, flood[-1], flood[-2]):  # flood[-3] is now the least recently used
        await _opens(site.client, sid)
    newcomer = await _session_cookie(site.client, await submit_report(site.client, "newcomer"))
    assert await _opens(site.client, newcomer) and len(site.app[SESSIONS]) == 4
    assert not await _opens(site.client, flood[-3])
    assert await _opens(site.client, theirs)

def _held_key(site: Site) -> bytearray:
    """White-box: the buffer the one live session keeps the report key in."""
    (session,) = site.app[SESSIONS]._sessions.values()
    key = session.payload.key
    assert isinstance(key, bytearray) and len(key) == 32 and any(key)
    return key


async def test_logout_expiry_and_shutdown_zero_the_report_key_the_session_held(site: Site) -> None:
    receipt = await submit_report(site.client)
    clock = FakeClock()
    site.app[SESSIONS]._clock = clock  # white-box: move the session store's clock instead of sleeping
    # Logout: the very buffer the session held is all zeros afterwards
    csrf = csrf_in(await log_in(site.client, receipt))
    key = _held_key(site)
    await site.client.post("/en/mailbox/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert key == bytearray(32)
    # Idle expiry
    await log_in(site.client, receipt)
    key = _held_key(site)
    clock.advance(site.config.whistleblower_idle_seconds)
    await site.client.get("/en/mailbox/inbox", allow_redirects=False)
    assert key == bytearray(32)
    # Shutdown: the app's own cleanup (what a stopping server runs) wipes every session
    await log_in(site.client, receipt)
    key = _held_key(site)
    await site.client.close()
    assert key == bytearray(32)


async def test_a_report_deleted_while_its_mailbox_is_open_ends_the_session(site: Site) -> None:
    receipt = await submit_report(site.client)
    await log_in(site.client, receipt)
    await site.services.store.delete_report(await _report_id(site), record=recorder())
    response = await site.client.get("/en/mailbox/inbox", allow_redirects=False)
    assert _location(response) == "/en/mailbox?ended=1"
    assert len(site.app[SESSIONS]) == 0


@pytest.mark.parametrize("path", ["/en/mailbox/login", "/en/mailbox/logout"])
async def test_login_and_logout_take_only_a_url_encoded_form(site: Site, path: str) -> None:
    form = FormData({"receipt": "1234 5678 9012 3456"}, default_to_multipart=True)
    form.add_field("file", b"would be spooled to disk", filename="x.txt")
    page = await _page(await site.client.post(path, data=form), 400)
    assert "Your browser sent the form in a way we could not read" in page


async def test_a_database_that_refuses_writes_still_lets_the_person_read_but_not_send(site: Site) -> None:
    receipt = await submit_report(site.client)
    await site.services.store._writer.execute("PRAGMA query_only = 1")  # white-box: as a full disk would
    page = await log_in(site.client, receipt)  # the visit cannot be stamped; reading still works
    assert "Status: Received, not yet opened" in page
    before = _file_count(site)
    response = await site.client.post("/en/mailbox/reply", data=_reply(csrf_in(page), "kept", {"f.txt": b"x"}))
    page = await _page(response, 507)
    assert "out of storage" in page and "\nkept</textarea>" in page and "Please choose them again" in page
    assert _file_count(site) == before
