"""The submission path over real HTTP on a real install: form, receipt, confirmation, every error.

Every response is checked for the security headers and for the absence of any Set-Cookie.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse, FormData

from dropbox.questions import MAX_QUESTIONS
from dropbox.storage import Channel
from dropbox.submissions import open_mailbox, read_mailbox
from tests.support.clock import until
from tests.support.data_checks import chunk_files
from tests.support.forms import receipt_in, report_form, token_in  # noqa: F401
from tests.support.full_disk import database_full
from tests.support.headers import assert_security_headers  # noqa: F401
from tests.support.live_server import AiohttpClient
from tests.support.whistleblower_site import KiB, Site, logged_at_the_next_day, make_install, open_site, site_fixture  # noqa: F401

RECEIPT_SHAPE = re.compile(r"\d{4}( \d{4}){5}")
QUESTIONS = [
    {"id": "dept", "label": {"en": "Which department?", "da": "Hvilken afdeling?", "sv": "Vilken avdelning?"},
     "required": True},
    {"id": "when", "label": "When?", "kind": "textarea"},
]


async def _page(response: ClientResponse, status: int) -> str:
    """The page, after checking its status, the security headers and that no cookie is set."""
    text = await response.text()
    assert response.status == status, text
    assert_security_headers(response.headers)
    assert "Set-Cookie" not in response.headers
    return text


def _stored(site: Site) -> tuple[int, list[str]]:
    """Report rows, and every file with contents stored: what a failed submission must not leave."""
    with sqlite3.connect(site.config.db_path) as db:
        reports = db.execute("SELECT count(*) FROM reports").fetchone()[0]
    db.close()
    return reports, sorted(chunk_files(site.config))


def _nothing_stored(site: Site) -> bool:
    return _stored(site) == (0, [])


async def _with_channel(site: Site, channel_id: str, *, questions: object = QUESTIONS, members: bool = True) -> None:
    await site.services.store.add_channel(Channel(
        id=channel_id, name=f"Channel {channel_id}", description="About things", questions=json.dumps(questions),
        retention_days=30, is_default=False))
    if members:
        alice = await site.services.store.caseworker_by_name("alice")
        await site.services.store.set_channel_member(channel_id=channel_id, caseworker_id=alice.id, member=True)


@pytest.fixture
async def questions_site(aiohttp_client: AiohttpClient, tmp_path: Path) -> AsyncIterator[Site]:
    """An install whose only channel asks QUESTIONS."""
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config) as opened:
        default = await opened.services.store.channel("default")
        await opened.services.store.update_channel(Channel(**{**default.__dict__, "questions": json.dumps(QUESTIONS)}))
        yield opened


# -- the form ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "heading"), [("en", "Submit a report"), ("da", "Indsend en indberetning"),
                                               ("sv", "Skicka en rapport")])
async def test_the_form_in_each_language(site: Site, lang: str, heading: str) -> None:
    page = await _page(await site.client.get(f"/{lang}/submit"), 200)
    assert f'<html lang="{lang}">' in page and f"<h1>{heading}</h1>" in page
    assert f'action="/{lang}/submit" enctype="multipart/form-data"' in page
    assert '<input type="file" id="files" name="files" multiple' in page
    assert '<input type="hidden" name="channel" value="default">' in page
    assert 'type="radio"' not in page  # one channel: no choice to make
    assert 'name="contact"' in page and 'name="text"' in page
    assert "csrf" not in page


async def test_the_contact_field_is_optional_and_says_it_weakens_anonymity(site: Site) -> None:
    page = await _page(await site.client.get("/en/submit"), 200)
    contact = page[page.index('id="field-contact"'):page.index('name="contact"')]
    assert "(optional)" in contact and "Leave this empty to stay anonymous" in contact


async def test_several_channels_are_chosen_first_then_the_chosen_ones_questions_are_asked(site: Site) -> None:
    # Given a second channel with questions
    await _with_channel(site, "hr")
    # When the form is opened, the person chooses where to send first
    choice = await _page(await site.client.get("/da/submit"), 200)
    assert choice.count('type="radio" name="channel"') == 2 and 'method="get"' in choice
    # and an unknown choice leads back to it
    assert 'type="radio"' in await _page(await site.client.get("/da/submit?channel=nope"), 200)
    # Then the chosen channel's form asks its questions, in the page's language
    form = await _page(await site.client.get("/da/submit?channel=hr"), 200)
    assert '<input type="hidden" name="channel" value="hr">' in form
    assert "Hvilken afdeling?" in form and "When?" in form
    assert re.search(r'name="answer_dept"[^>]*required', form)
    assert 'href="/da/submit">' in form  # "choose another"


async def test_a_broken_question_configuration_does_not_stop_reports(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    default = await site.services.store.channel("default")
    await site.services.store.update_channel(Channel(**{**default.__dict__, "questions": '[{"id": "Bad Id"}]'}))
    await _page(await site.client.get("/en/submit"), 200)
    assert "invalid questions" in logged_at_the_next_day(site, caplog)
    receipt = receipt_in(await _page(await site.client.post("/en/submit", data=report_form("text")), 200))
    assert RECEIPT_SHAPE.fullmatch(receipt)


# -- a successful submission -------------------------------------------------------------------


async def test_a_report_with_files_answers_and_contact_is_stored_and_the_receipt_shown_once(
    questions_site: Site,
) -> None:
    site = questions_site
    # When a report is sent with two files, answers (one to a question the channel lacks) and contact
    form = report_form("What happened, in detail.", files={"a.txt": b"alpha", "b.pdf": b"%PDF" + b"\0" * 40_000},
                       answers={"dept": "Finance", "when": "", "ghost": "dropped"}, contact="  jane@example  ")
    page = await _page(await site.client.post("/en/submit", data=form), 200)
    # Then the receipt is shown in groups of four, with the warning and the confirm form
    receipt = receipt_in(page)
    assert RECEIPT_SHAPE.fullmatch(receipt)
    assert "shown only once" in page and "cannot send it to you or make a new one" in page
    # and the page offers no way away but the confirmation form
    assert re.findall(r'href="([^"?]*)[^"]*"', page) == ["/static/style.css", "data:,", "#main"]
    assert re.findall(r"<form [^>]*>", page) == [
        '<form method="post" action="/en/submit/confirm" class="confirm-form" autocomplete="off">']
    # And the report is stored, sealed, exactly as sent
    services = site.services
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    view = await read_mailbox(store=services.store, access=access, record_visit=False)
    assert view.body.text == "What happened, in detail."
    assert view.body.answers == {"dept": "Finance"}
    assert view.body.contact == "jane@example"
    assert [(f.name, f.size) for f in view.files] == [("a.txt", 5), ("b.pdf", 40_004)]
    assert site.client.session.cookie_jar.filter_cookies(site.client.make_url("/")) == {}


async def test_files_alone_are_a_report(site: Site) -> None:
    page = await _page(await site.client.post("/en/submit", data=report_form("", files={"x.jpg": b"img"})), 200)
    assert RECEIPT_SHAPE.fullmatch(receipt_in(page))


async def test_the_receipt_page_is_in_the_language_of_the_form(site: Site) -> None:
    page = await _page(await site.client.post("/sv/submit", data=report_form("Det hände")), 200)
    assert '<html lang="sv">' in page and "Din kvittokod" in page and 'action="/sv/submit/confirm"' in page


async def test_a_form_without_a_channel_goes_to_the_default_one(site: Site) -> None:
    await _page(await site.client.post("/en/submit", data=report_form("text", channel=None)), 200)
    assert _stored(site)[0] == 1


# -- confirming the receipt ----------------------------------------------------------------------


async def _receipt_and_token(site: Site, lang: str = "en") -> tuple[str, str]:
    page = await _page(await site.client.post(f"/{lang}/submit", data=report_form("text")), 200)
    return receipt_in(page), token_in(page)


@pytest.mark.parametrize("typed", ["{code}", "{bare}", " {dashed} "])
async def test_typing_the_receipt_back_leads_to_what_happens_next(site: Site, typed: str) -> None:
    receipt, token = await _receipt_and_token(site)
    typed = typed.format(code=receipt, bare=receipt.replace(" ", ""), dashed=receipt.replace(" ", "-"))
    page = await _page(await site.client.post("/en/submit/confirm", data={"receipt_token": token, "receipt": typed}),
                       200)
    assert "What happens next" in page and "How to come back" in page
    assert 'href="/en/mailbox"' in page
    assert receipt not in page


async def test_a_mistyped_receipt_shows_the_same_code_again_with_an_error(site: Site) -> None:
    receipt, token = await _receipt_and_token(site, "da")
    wrong = ("1" if receipt[0] != "1" else "2") + receipt[1:]
    page = await _page(await site.client.post("/da/submit/confirm", data={"receipt_token": token, "receipt": wrong}),
                       400)
    assert receipt_in(page) == receipt
    assert "Det er ikke den samme kode" in page
    assert token_in(page) == token
    assert re.findall(r'href="([^"?]*)[^"]*"', page) == ["/static/style.css", "data:,", "#main"]


@pytest.mark.parametrize("token", ["", "garbage", "QUFBQQ=="])
async def test_a_token_that_does_not_open_explains_how_to_check_the_code(site: Site, token: str) -> None:
    page = await _page(await site.client.post("/en/submit/confirm", data={"receipt_token": token, "receipt": "1"}),
                       400)
    assert "We cannot show your receipt code again" in page
    assert 'href="/en/mailbox"' in page


async def test_after_a_restart_the_old_confirmation_form_cannot_show_the_code(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config) as before:
        receipt, token = await _receipt_and_token(before)
    async with open_site(aiohttp_client, config) as after:
        page = await _page(await after.client.post("/en/submit/confirm",
                                                   data={"receipt_token": token, "receipt": "0"}), 400)
        assert "We cannot show your receipt code again" in page and receipt not in page


async def test_the_confirmation_url_only_takes_the_form(site: Site) -> None:
    await _page(await site.client.get("/en/submit/confirm"), 405)


# -- refused submissions -------------------------------------------------------------------------


async def test_an_empty_report_is_refused_and_the_form_filled_in_again(questions_site: Site) -> None:
    site = questions_site
    form = report_form("   ", answers={"dept": ""}, contact="call me")
    page = await _page(await site.client.post("/en/submit", data=form), 400)
    assert "There is a problem" in page and "Your report is empty" in page
    assert 'value="call me"' in page
    assert _nothing_stored(site)


async def test_a_missing_required_answer_is_refused_and_files_must_be_chosen_again(questions_site: Site) -> None:
    site = questions_site
    form = report_form("my account <b>as typed</b>", files={"a.txt": b"data"}, answers={"when": "Monday"})
    page = await _page(await site.client.post("/en/submit", data=form), 400)
    assert '<a href="#field-answer_dept">Please answer this question.</a>' in page
    assert re.search(r'id="field-answer_dept">\s*<label[^>]*>Which department\?</label>\s*'
                     r'<p class="field-error">Please answer this question.</p>', page)
    assert "\nmy account &lt;b&gt;as typed&lt;/b&gt;</textarea>" in page
    assert "\nMonday</textarea>" in page
    assert "Please choose them again" in page
    assert _nothing_stored(site)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"big.bin": b"\0" * (64 * KiB + 1)}, "Each file can be at most 64\u00a0kB", id="per file"),
        pytest.param({"a.bin": b"\0" * (60 * KiB), "b.bin": b"\0" * (41 * KiB)},
                     "all files together at most 100\u00a0kB", id="per submission"),
        pytest.param({f"{i}.txt": b"x" for i in range(4)}, "You can send at most 3 files at a time",
                     id="too many files"),
    ],
)
async def test_uploads_over_the_limits_get_a_clear_413_and_nothing_is_stored(
    site: Site, files: dict[str, bytes], message: str
) -> None:
    page = await _page(await site.client.post("/en/submit", data=report_form("kept text", files=files)), 413)
    assert message in page and "nothing was saved" in page
    assert "\nkept text</textarea>" in page
    assert _nothing_stored(site)


async def test_an_overlong_account_is_refused_with_its_beginning_filled_in(site: Site) -> None:
    text = "å" * 1000 + "THE END"
    page = await _page(await site.client.post("/en/submit", data=report_form(text)), 400)
    assert "longer than 1,000 characters" in page
    assert "\n" + "å" * 1000 + "</textarea>" in page and "THE END" not in page
    assert _nothing_stored(site)


async def test_an_overlong_answer_is_refused_at_its_field(questions_site: Site) -> None:
    site = questions_site
    page = await _page(await site.client.post("/en/submit", data=report_form("t", answers={"dept": "d" * 101})), 400)
    assert "This answer is longer than 100 characters" in page
    assert 'value="' + "d" * 100 + '"' in page
    assert _nothing_stored(site)


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        pytest.param({"text": "urlencoded"}, None, id="not multipart"),
        pytest.param(b"--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nno end",
                     {"Content-Type": "multipart/form-data; boundary=b"}, id="broken framing"),
        pytest.param(b"garbage", {"Content-Type": "multipart/form-data; boundary=b"}, id="garbage"),
    ],
)
async def test_malformed_bodies_get_a_clear_400(site: Site, data: object, headers: dict[str, str] | None) -> None:
    page = await _page(await site.client.post("/en/submit", data=data, headers=headers), 400)
    assert "Your browser sent the form in a way we could not read" in page
    assert '<form class="report-form"' in page
    assert _nothing_stored(site)


async def test_a_malformed_form_keeps_what_was_read_before_the_problem(site: Site) -> None:
    form = FormData()
    form.add_field("channel", "default")
    form.add_field("text", "read before the problem")
    form.add_field("unexpected", "x")
    form.add_field("files", b"never stored", filename="a.txt")
    page = await _page(await site.client.post("/en/submit", data=form), 400)
    assert "\nread before the problem</textarea>" in page
    assert _nothing_stored(site)


async def test_a_form_naming_an_unknown_channel_is_refused_and_refilled(site: Site) -> None:
    page = await _page(await site.client.post("/en/submit", data=report_form("mine", channel="gone")), 400)
    assert "no longer exists" in page and "\nmine</textarea>" in page
    assert _nothing_stored(site)


async def test_a_full_disk_gets_a_calm_507_and_no_receipt(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    async with database_full(site.services.store):  # every write fails, as on a full disk
        page = await _page(await site.client.post("/en/submit", data=report_form(
            "keep me", files={"a": b"1" * 60 * KiB})), 507)
    assert "out of storage space" in page and "no receipt code was made" in page
    assert 'id="receipt"' not in page and "\nkeep me</textarea>" in page
    assert _nothing_stored(site)
    assert "out of storage space" in logged_at_the_next_day(site, caplog)


async def test_a_channel_nobody_reads_refuses_reports(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    config = await make_install(tmp_path / "data", caseworkers=())
    async with open_site(aiohttp_client, config) as site:
        response = await site.client.post("/en/submit", data=report_form("nobody reads this", files={"a": b"1"}))
        page = await _page(response, 503)
        assert "nobody is assigned to read them" in page and response.headers["Retry-After"] == "60"
        assert 'id="receipt"' not in page
        assert _nothing_stored(site)


async def test_a_busy_key_derivation_pool_asks_to_come_back(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config.replace(kdf_queue_limit=0)) as site:
        response = await site.client.post("/en/submit", data=report_form("busy", files={"a": b"1"}))
        page = await _page(response, 503)
        assert "Please wait a minute" in page and "\nbusy</textarea>" in page
        assert _nothing_stored(site)


def test_every_question_can_be_answered_within_the_form_limits() -> None:
    from dropbox.whistleblower.submit import submit_spec

    spec = submit_spec(100, 10)
    assert spec.max_prefixed == MAX_QUESTIONS and "answer_" in spec.prefixed


async def test_the_confirmation_takes_only_a_url_encoded_form(site: Site) -> None:
    _receipt, token = await _receipt_and_token(site)
    form = FormData({"receipt_token": token}, default_to_multipart=True)
    form.add_field("receipt", b"would be spooled to disk", filename="x.txt")
    page = await _page(await site.client.post("/en/submit/confirm", data=form), 400)
    assert "Your browser sent the form in a way we could not read" in page


async def _refuse_database_writes(site: Site) -> None:
    """White-box: make the store's writer connection read-only, as a full or failing disk would."""
    await site.services.store._writer.execute("PRAGMA query_only = 1")


async def test_a_database_that_refuses_writes_gets_the_calm_507_and_no_receipt(site: Site) -> None:
    await _refuse_database_writes(site)
    page = await _page(await site.client.post("/en/submit", data=report_form("keep me", files={"a": b"1"})), 507)
    assert "out of storage space" in page and 'id="receipt"' not in page
    assert "\nkeep me</textarea>" in page and "Please choose them again" in page
    assert _nothing_stored(site)


def _stalled_upload(site: Site, release: asyncio.Event) -> asyncio.Task[ClientResponse]:
    """A submission whose file part stops after 20 KiB until `release` is set (the server is then
    sealing and staging it); the task ends with the server's answer."""
    boundary = "stalled-upload-boundary"

    async def body() -> AsyncIterator[bytes]:
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="channel"\r\n\r\ndefault\r\n'
               f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\nstalled\r\n'
               f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.bin"\r\n'
               "Content-Type: application/octet-stream\r\n\r\n").encode() + b"x" * (20 * KiB)
        await release.wait()
        yield f"\r\n--{boundary}--\r\n".encode()

    return asyncio.create_task(site.client.post(
        "/en/submit", data=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))


async def test_a_stalled_upload_holds_no_receipt_and_starts_no_derivation(site: Site) -> None:
    services, config = site.services, site.config
    await until(lambda: services.receipts.ready == config.receipt_stock)
    derivations = services.public_kdf.started
    release = asyncio.Event()
    # Given an upload that stalls halfway through its file (the server is sealing and staging it)
    post = _stalled_upload(site, release)
    await until(lambda: services.blobs.staged_bytes > 0)
    # Then it has taken no receipt from the stock and started no Argon2id run
    assert services.receipts.ready == config.receipt_stock and services.public_kdf.started == derivations
    # And once the body arrives, the report gets a receipt, and the stock fills up again
    release.set()
    assert RECEIPT_SHAPE.fullmatch(receipt_in(await _page(await post, 200)))
    await until(lambda: services.receipts.ready == config.receipt_stock)


async def test_the_receipt_stock_refills_only_once_no_upload_is_in_flight(site: Site) -> None:
    """No Argon2id working set (256 MiB at production cost) is added while a body streams."""
    services, config = site.services, site.config
    await until(lambda: services.receipts.ready == config.receipt_stock)
    release = asyncio.Event()
    # Given an upload whose body is still streaming
    slow = _stalled_upload(site, release)
    await until(lambda: services.blobs.staged_bytes > 0)
    derivations = services.public_kdf.started
    # When another report is handed in meanwhile (it takes a receipt from the stock)
    assert RECEIPT_SHAPE.fullmatch(receipt_in(await _page(await site.client.post(
        "/en/submit", data=report_form(text="quick one")), 200)))
    # Then the stock waits for the streaming body instead of deriving beside it
    await until(lambda: services.receipts.held_back)
    assert services.receipts.ready == config.receipt_stock - 1 and services.public_kdf.started == derivations
    # And once the body has arrived and the upload is over, it fills up again
    release.set()
    assert RECEIPT_SHAPE.fullmatch(receipt_in(await _page(await slow, 200)))
    await until(lambda: services.receipts.ready == config.receipt_stock)
