"""Nothing leaks: not to the disk, not to a log, not to a temp folder, not through a header or a cookie.

The main test runs the operator's own commands (`run.py init`, `caseworker add`, `run.py serve
--no-tor`, production Argon2id cost) and drives a full flow with a distinct canary in every field
a person can fill in: report text, contact, an answer, file names and contents, the
whistleblower's reply and its file, the caseworker's reply, file and internal note, the reasons for
no acknowledgement and for an extension, a disclosure notice and a closing message, plus the URL,
the User-Agent and the client's address (the client connects from 127.0.0.77, so that address in
a log can only be the client's); the caseworker also exports the case and forwards it. Afterwards
no canary, receipt or passphrase is in any file under the data folder, in anything the server
printed, in the server's TMPDIR or in new files in the system temp folder, and no upload, export
or forward was spooled to a temp file while it streamed.

The other tests check, on both apps: the security headers on every response (404, 405, 413,
redirects, errors included); no cookie on the submission path; a new session id at every login
(and a planted one never adopted); CSRF on the whistleblower's mailbox (the caseworker side is
covered route by route in test_authz_matrix.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import os
import re
import secrets
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from dropbox.forwarding import new_key_file
from dropbox.install import DEFAULT_CHANNEL_ID
from dropbox.storage import Store
from tests.support.data_checks import db_snapshot, files_containing
from tests.support.forms import find_csrf, hrefs, multipart, submission_fields
from tests.support.headers import headers_that_differ
from tests.support.http_client import (
    caseworker_login,
    get,
    mailbox_login,
    new_client,
    open_inbox,
    post_body,
    reply,
    submit,
)
from tests.support.installs import ALICE, Account, new_install
from tests.support.live_server import LiveApps, serve_apps
from tests.support.routes import app_routes
from tests.support.server_process import ServerProcess, cli_install

CLIENT_ADDRESS = "127.0.0.77"
QUESTIONS = '[{"id": "where", "label": "Where did it happen?"}]'


def _canaries() -> dict[str, str]:
    tag = secrets.token_hex(5)
    fields = ("text", "contact", "answer", "filename", "content", "reply", "replyfile", "replycontent",
              "cwreply", "cwfile", "cwcontent", "note", "noack", "extension", "notice", "closing", "query", "path",
              "useragent", "toolong", "malformed", "minutes", "recording", "recordingcontent", "correction",
              "version")
    return {f: f"Canary{f.capitalize()}{tag}" for f in fields}


def _open_fds(pid: int) -> list[str]:
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        if int(fd.name) <= 2:
            continue  # stdin, stdout and stderr: /dev/null and the test's log file
        try:
            targets.append(os.readlink(fd))
        except OSError:
            continue
    return targets


async def _watch_temp_files(pid: int, data_dir: Path, stop: asyncio.Event, seen: list[str]) -> None:
    """While uploads stream: any open file outside the data folder (a spooled plaintext copy)."""
    temp = tempfile.gettempdir()
    # The code and the Python it runs on are read (Babel's locale data, say), and may themselves
    # live under the temp folder when the repository was cloned there, as CI may do.
    own = (str(data_dir), "/dev/", str(Path(__file__).resolve().parent.parent), sys.prefix, sys.base_prefix)
    while not stop.is_set():
        for target in _open_fds(pid):
            outside = target.startswith("/") and not target.startswith(own)
            if outside and ("(deleted)" in target or target.startswith(temp)) and target not in seen:
                seen.append(target)
        await asyncio.sleep(0.01)


async def test_a_full_flow_leaves_no_canary_receipt_passphrase_or_address_anywhere(tmp_path: Path) -> None:
    started = time.time()
    c = _canaries()
    data_dir = tmp_path / "data"
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    # Given an install made with the operator's commands, at production cost, with one question
    await asyncio.to_thread(cli_install, data_dir, (ALICE,))
    store = await Store.open(data_dir / "dropbox.sqlite3")
    channel = await store.channel(DEFAULT_CHANNEL_ID)
    await store.update_channel(type(channel)(**{**channel.__dict__, "questions": QUESTIONS}))
    await store.close()
    server = ServerProcess(data_dir=data_dir, log_path=tmp_path / "server.log", launcher="cli",
                           env_changes={"TMPDIR": str(server_tmp)})
    await asyncio.to_thread(server.start)
    spooled: list[str] = []
    stop_watch = asyncio.Event()
    watcher = asyncio.create_task(_watch_temp_files(server.pid, data_dir, stop_watch, spooled))
    ua = {"User-Agent": f"Mozilla/5.0 {c['useragent']}"}
    try:
        async with new_client(local_addr=CLIENT_ADDRESS) as wb, new_client(local_addr=CLIENT_ADDRESS) as cw:
            wb.headers.update(ua)
            cw.headers.update(ua)
            # When a whistleblower reads the form (with a canary in the URL) and submits everything
            assert (await get(wb, f"{server.url}/en/submit?{c['query']}=1")).status == 200
            big = (c["content"].encode() + os.urandom(64)) * 40_000  # ~2.5 MB, streamed in 20 pieces
            sent = await submit(wb, server.url, text=c["text"], contact=c["contact"], answers={"where": c["answer"]},
                                files=[(f"{c['filename']}.txt", c["content"].encode() * 3),
                                       (f"big-{c['filename']}.bin", big)], slow=(20, 0.02))
            assert sent.receipt, f"submission answered {sent.answer.status}"
            receipt = sent.receipt
            # and two submissions that fail, one too long and one malformed, also carry canaries
            too_long = await submit(wb, server.url, text=c["toolong"] * 10_000)
            assert too_long.answer.status in (400, 413)
            body, ctype = multipart([("channel", "default", None), (c["malformed"], "x", None)])
            assert (await post_body(wb, f"{server.url}/en/submit", body, ctype)).status == 400
            # and uses the mailbox: a wrong code, then the right one, a reply with a file
            wrong = f"{(int(receipt) + 1) % 10**24:024d}"
            assert (await mailbox_login(wb, server.url, wrong)).status == 403
            inbox = await open_inbox(wb, server.url, receipt)
            assert c["text"] in inbox and c["answer"] in inbox and c["contact"] in inbox
            answered = await reply(wb, server.url, csrf=find_csrf(inbox) or "", text=c["reply"],
                                   files=[(f"{c['replyfile']}.txt", c["replycontent"].encode())])
            assert answered.status == 303

            # and a caseworker reads it, downloads the file, replies with a file and writes a note
            login = await caseworker_login(cw, server.admin_url, ALICE.name, ALICE.passphrase)
            assert login.status == 303, f"caseworker login answered {login.status}"
            listing = await get(cw, f"{server.admin_url}/en/reports")
            [report_id] = set(re.findall(r"/en/reports/([0-9a-f]{32})", listing.body))
            page = await get(cw, f"{server.admin_url}/en/reports/{report_id}")
            assert c["text"] in page.body and c["reply"] in page.body
            file_ids = re.findall(rf"/en/reports/{report_id}/files/([0-9a-f]{{32}})", page.body)
            assert file_ids
            for file_id in set(file_ids):
                assert (await get(cw, f"{server.admin_url}/en/reports/{report_id}/files/{file_id}")).status == 200
            token = find_csrf(page.body) or ""
            # reasons for no acknowledgement and for an extension (before the reply acknowledges)
            for form in ({"kind": "no_acknowledgement", "reason": c["noack"]},
                         {"kind": "extension", "reason": c["extension"]}):
                async with cw.post(f"{server.admin_url}/en/reports/{report_id}/reason",
                                   data={"csrf_token": token, **form}, allow_redirects=False) as done:
                    assert done.status == 303
            shown = (await get(cw, f"{server.admin_url}/en/reports/{report_id}")).body
            assert c["noack"] in shown and c["extension"] in shown  # stored (sealed), shown to caseworkers
            body, ctype = multipart([("csrf_token", token, None), ("text", c["cwreply"], None),
                                     ("files", c["cwcontent"].encode(), f"{c['cwfile']}.txt")])
            cw_reply = await post_body(cw, f"{server.admin_url}/en/reports/{report_id}/reply", body, ctype)
            assert cw_reply.status == 303
            async with cw.post(f"{server.admin_url}/en/reports/{report_id}/notes",
                               data={"csrf_token": token, "text": c["note"]}, allow_redirects=False) as noted:
                assert noted.status == 303
            # the law's records (docs/LEGAL.md): a disclosure notice and a closing message
            for action, form in (("disclosure", {"text": c["notice"]}),
                                 ("close", {"outcome": "No grounds", "message": c["closing"]})):
                async with cw.post(f"{server.admin_url}/en/reports/{report_id}/{action}",
                                   data={"csrf_token": token, **form}, allow_redirects=False) as done:
                    assert done.status == 303, action

            # and exports the case with its notes, and forwards it sealed to an authority's key: both
            # stream from the database to the response (the watcher above sees any spooled copy)
            recipient = new_key_file()[1]
            for action, form in (("export", {"notes": "1"}), ("forward", {"notes": "1", "recipient": recipient})):
                async with cw.post(f"{server.admin_url}/en/reports/{report_id}/{action}",
                                   data={"csrf_token": token, **form}, allow_redirects=False) as done:
                    assert done.status == 200, action
                    sent_out = await done.read()
                if action == "export":
                    with zipfile.ZipFile(io.BytesIO(sent_out)) as archive:
                        assert c["note"] in archive.read("report.json").decode()
                else:
                    assert c["text"].encode() not in sent_out and c["content"].encode() not in sent_out

            # and the whistleblower reads the answer and downloads the caseworker's file
            inbox = await open_inbox(wb, server.url, receipt)
            assert c["cwreply"] in inbox and c["note"] not in inbox
            assert c["notice"] in inbox and c["closing"] in inbox and c["noack"] not in inbox
            [download] = hrefs(inbox, r"/en/mailbox/files/[0-9a-f]{32}")
            got = await get(wb, server.url + download)
            assert got.status == 200 and got.body == c["cwcontent"]
            # and an oral report (art. 18): minutes and a recording registered by the caseworker, the
            # receipt handed over, a correction, a second version, the reporter's approval
            body, ctype = multipart([
                ("csrf_token", token, None), ("channel", "default", None), ("medium", "meeting", None),
                ("minutes", c["minutes"], None), ("consent", "yes", None),
                ("consent_day", dt.datetime.now(dt.UTC).date().isoformat(), None),
                ("recording", c["recordingcontent"].encode() * 50, f"{c['recording']}.ogg")])
            registered = await post_body(cw, f"{server.admin_url}/en/oral", body, ctype)
            assert registered.status == 200, registered.status
            oral_receipt = "".join(re.sub(r"<[^>]+>", "", re.findall(
                r'<p class="receipt-code" id="receipt">(.*?)</p>', registered.body, re.S)[0]).split())
            [oral_id] = set(re.findall(r"/en/reports/([0-9a-f]{32})", registered.body))
            await open_inbox(wb, server.url, oral_receipt)
            minutes = (await get(wb, f"{server.url}/en/mailbox/minutes")).body
            assert c["minutes"] in minutes
            async with wb.post(f"{server.url}/en/mailbox/minutes/correct", allow_redirects=False, data={
                    "csrf_token": find_csrf(minutes) or "", "version": "1", "text": c["correction"]}) as done:
                assert done.status == 303
            async with cw.post(f"{server.admin_url}/en/reports/{oral_id}/minutes", allow_redirects=False,
                               data={"csrf_token": token, "after": "1", "text": c["version"]}) as done:
                assert done.status == 303
            async with wb.post(f"{server.url}/en/mailbox/minutes/approve", allow_redirects=False, data={
                    "csrf_token": find_csrf(minutes) or "", "version": "2", "agree": "yes"}) as done:
                assert done.status == 303
            shown = (await get(cw, f"{server.admin_url}/en/reports/{oral_id}")).body
            assert c["correction"] in shown and c["version"] in shown and "Approved on" in shown

            # and some errors along the way, with canaries in the path
            assert (await get(wb, f"{server.url}/en/{c['path']}")).status == 404
            assert (await get(cw, f"{server.admin_url}/en/reports/{c['path']}")).status == 404
            async with wb.put(f"{server.url}/en/submit", data=c["path"]) as answer:
                assert answer.status == 405
            for client, base in ((wb, server.url), (cw, server.admin_url)):
                page = await get(client, f"{base}/en/mailbox/inbox" if client is wb else f"{base}/en/reports")
                async with client.post(f"{base}/en/{'mailbox/' if client is wb else ''}logout",
                                       data={"csrf_token": find_csrf(page.body) or ""},
                                       allow_redirects=False) as out:
                    assert out.status == 303
    finally:
        stop_watch.set()
        await watcher
        if server.running:
            server.stop()

    # Then nothing under the data folder holds a canary, the receipt or a passphrase
    secrets_ = [v.encode() for v in c.values()] + [receipt.encode(), " ".join(
        receipt[i:i + 4] for i in range(0, 16, 4)).encode(), ALICE.passphrase.encode(), oral_receipt.encode()]
    assert files_containing(data_dir, secrets_) == []
    # nor anything the server printed, which also has no client address or User-Agent
    log = server.log_text()
    for needle in [*c.values(), receipt, oral_receipt, ALICE.passphrase, CLIENT_ADDRESS, "Mozilla", wrong]:
        assert needle not in log, f"{needle!r} is in the server's log"
    assert "Traceback" not in log
    # nor its temp folder (empty), nor a new file in the system's temp folder
    assert list(server_tmp.iterdir()) == []
    assert files_containing(Path(tempfile.gettempdir()), secrets_, newer_than=started) == []
    # and no upload was copied to a temp file on its way in
    assert spooled == [], f"the server had these files open outside its data folder: {spooled}"


async def test_debug_logging_in_process_carries_no_canary_or_receipt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG (more than production's INFO), as the test process captures it."""
    caplog.set_level(logging.DEBUG)
    c = _canaries()
    config = await new_install(tmp_path / "data")
    async with serve_apps(config) as live, new_client() as client:
        client.headers.update({"User-Agent": c["useragent"]})
        sent = await submit(client, live.whistleblower_url, text=c["text"], contact=c["contact"],
                            files=[(c["filename"], c["content"].encode())])
        assert sent.receipt
        inbox = await open_inbox(client, live.whistleblower_url, sent.receipt)
        answered = await reply(client, live.whistleblower_url, csrf=find_csrf(inbox) or "", text=c["reply"])
        assert answered.status == 303
        login = await caseworker_login(client, live.caseworker_url, ALICE.name, ALICE.passphrase)
        assert login.status == 303
        await get(client, f"{live.whistleblower_url}/en/{c['path']}")
    text = caplog.text
    for needle in [*c.values(), sent.receipt, ALICE.passphrase]:
        assert needle not in text, f"{needle!r} reached a log record"


# -- headers, cookies, sessions, CSRF -------------------------------------------------------------


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveApps]:
    config = await new_install(tmp_path / "data", (ALICE, Account("bob", "bob's long enough passphrase")))
    async with serve_apps(config) as apps:
        yield apps


async def test_every_response_carries_the_security_headers(live: LiveApps) -> None:
    """Every route of both apps (from their route tables), anonymous and signed in, plus the errors."""
    requests: list[tuple[str, str, str, bytes | None]] = []
    for kind, base in (("whistleblower", live.whistleblower_url), ("caseworker", live.caseworker_url)):
        for route in app_routes(kind):
            path = route.path({"report_id": "0" * 32, "file_id": "0" * 32, "channel_id": "default",
                               "caseworker_id": "0" * 32})
            requests.append((route.method, base, path, b"" if route.method == "POST" else None))
        requests += [("GET", base, "/en/no-such-page", None), ("GET", base, "/zz/", None),
                     ("DELETE", base, "/en/", None), ("PATCH", base, "/static/style.css", None),
                     ("POST", base, "/en/mailbox/login" if kind == "whistleblower" else "/en/login",
                      b"x" * (3 * 1024 * 1024))]
    requests.append(("POST", live.whistleblower_url, "/en/submit", None))  # declared far too large below
    seen: set[int] = set()
    for signed_in in (False, True):
        async with new_client() as client:
            if signed_in:
                sent = await submit(client, live.whistleblower_url, text="headers")
                assert sent.receipt
                await open_inbox(client, live.whistleblower_url, sent.receipt)
                login = await caseworker_login(client, live.caseworker_url, ALICE.name, ALICE.passphrase)
                assert login.status == 303
            for method, base, path, body in requests:
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
                if body is None and method == "POST":
                    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(2**40)}
                    body = b"--x\r\n"
                async with client.request(method, base + path, data=io.BytesIO(body) if body else body,
                                          headers=headers,
                                          allow_redirects=False) as response:
                    await response.read()
                    seen.add(response.status)
                    missing = headers_that_differ(response.headers, cacheable=(
                        path.startswith("/static/") and response.status == 200))
                    assert not missing, f"{method} {path} ({response.status}) lacks {missing}"
    assert {200, 303, 302, 403, 404, 405, 413} <= seen, f"statuses covered: {sorted(seen)}"


async def test_no_cookie_is_ever_set_on_the_submission_path(live: LiveApps) -> None:
    async with new_client() as client:
        base = live.whistleblower_url
        answers = [await get(client, f"{base}/en/"), await get(client, f"{base}/en/submit"),
                   await get(client, f"{base}/static/style.css")]
        ok = await submit(client, base, text="no cookie please", files=[("a.txt", b"a")])
        assert ok.receipt
        answers += [ok.answer, (await submit(client, base, text="")).answer]
        body, ctype = multipart(submission_fields(text="t", files=[("big", os.urandom(1000))]))
        answers.append(await post_body(client, f"{base}/en/submit", body, ctype,
                                       headers={"Content-Length": str(len(body))}))
        async with client.post(f"{base}/en/submit/confirm", data={"receipt": ok.receipt, "receipt_token": "x"},
                               allow_redirects=False) as confirm:
            await confirm.read()
            assert "Set-Cookie" not in confirm.headers
        for answer in answers:
            assert "Set-Cookie" not in answer.headers, f"{answer.status} set a cookie on the submission path"
        assert len(client.cookie_jar) == 0


async def test_session_ids_rotate_at_every_login_and_a_planted_id_is_never_adopted(live: LiveApps) -> None:
    planted = "A" * 43
    async with new_client() as client:
        sent = await submit(client, live.whistleblower_url, text="rotation")
        assert sent.receipt
        # a planted id is never adopted ...
        client.cookie_jar.update_cookies({"wb_session": planted}, response_url=URL(live.whistleblower_url))
        first = await mailbox_login(client, live.whistleblower_url, sent.receipt)
        assert first.status == 303
        id1 = re.search(r"wb_session=([^;]+)", first.headers.get("Set-Cookie", ""))
        assert id1 and id1.group(1) != planted
        # ... and logging in again (carrying the live id) gives a new id and ends the old session
        second = await mailbox_login(client, live.whistleblower_url, sent.receipt)
        id2 = re.search(r"wb_session=([^;]+)", second.headers.get("Set-Cookie", ""))
        assert id2 and id2.group(1) != id1.group(1), "a second login reused the session id"
        client.cookie_jar.clear()
        client.cookie_jar.update_cookies({"wb_session": id1.group(1)}, response_url=URL(live.whistleblower_url))
        assert (await get(client, f"{live.whistleblower_url}/en/mailbox/inbox")).status == 303

        cw_ids = []
        for _ in range(2):
            client.cookie_jar.clear()  # a signed-in caseworker is not shown the login form at all
            client.cookie_jar.update_cookies({"cw_session": planted}, response_url=URL(live.caseworker_url))
            login = await caseworker_login(client, live.caseworker_url, ALICE.name, ALICE.passphrase)
            assert login.status == 303
            cookie = re.search(r"cw_session=([^;]+)", login.headers.get("Set-Cookie", ""))
            assert cookie and cookie.group(1) != planted
            cw_ids.append(cookie.group(1))
        assert cw_ids[0] != cw_ids[1]


async def test_mailbox_posts_need_the_session_csrf_token(live: LiveApps) -> None:
    base = live.whistleblower_url
    async with new_client() as mine, new_client() as theirs:
        receipts = []
        for client in (mine, theirs):
            sent = await submit(client, base, text="csrf")
            assert sent.receipt
            receipts.append(sent.receipt)
        my_inbox = await open_inbox(mine, base, receipts[0])
        their_token = find_csrf(await open_inbox(theirs, base, receipts[1])) or ""
        before = db_snapshot(live.config)["messages"]
        for token in ("", "forged", their_token):
            answer = await reply(mine, base, csrf=token, text="should not be stored")
            assert answer.status == 403, f"a reply with token {token!r} answered {answer.status}"
        body, ctype = multipart([("text", "token not first", None),
                                 ("csrf_token", find_csrf(my_inbox) or "", None)])
        assert (await post_body(mine, f"{base}/en/mailbox/reply", body, ctype)).status == 403
        assert db_snapshot(live.config)["messages"] == before
        async with mine.post(f"{base}/en/mailbox/logout", data={"csrf_token": their_token},
                             allow_redirects=False) as out:
            assert out.status == 403
        assert (await get(mine, f"{base}/en/mailbox/inbox")).status == 200, "a forged logout ended the session"


async def _download_urls(live: LiveApps, client: aiohttp.ClientSession) -> tuple[str, str]:
    """A report with a caseworker's reply carrying a file: the whistleblower's and the caseworker's URLs."""
    sent = await submit(client, live.whistleblower_url, text="head", files=[("w.txt", b"whistleblower file")])
    assert sent.receipt
    assert (await caseworker_login(client, live.caseworker_url, ALICE.name, ALICE.passphrase)).status == 303
    listing = await get(client, f"{live.caseworker_url}/en/reports")
    [report_id] = set(re.findall(r"/en/reports/([0-9a-f]{32})", listing.body))
    page = await get(client, f"{live.caseworker_url}/en/reports/{report_id}")
    body, ctype = multipart([("csrf_token", find_csrf(page.body) or "", None), ("text", "here", None),
                             ("files", b"caseworker file", "c.txt")])
    assert (await post_body(client, f"{live.caseworker_url}/en/reports/{report_id}/reply", body, ctype)).status == 303
    [cw_file] = re.findall(rf"/en/reports/{report_id}/files/[0-9a-f]{{32}}", page.body)
    inbox = await open_inbox(client, live.whistleblower_url, sent.receipt)
    [wb_file] = hrefs(inbox, r"/en/mailbox/files/[0-9a-f]{32}")
    return live.whistleblower_url + wb_file, live.caseworker_url + cw_file


async def _head_sends_no_body(url: str, client: aiohttp.ClientSession) -> None:
    # Downloads refuse HEAD: aiohttp sends what a StreamResponse writes even for HEAD, so the
    # decrypted body would follow the headers.
    async with client.head(url, allow_redirects=False) as response:
        assert response.status == 405
    # The same keep-alive connection must still be in step: a body sent after HEAD's headers
    # would be read as the start of the next response.
    assert (await get(client, url)).status == 200


@pytest.mark.parametrize("side", ["whistleblower", "caseworker"])
async def test_head_on_a_download_sends_no_body(live: LiveApps, side: str) -> None:
    async with new_client() as client:
        wb_url, cw_url = await _download_urls(live, client)
        if side == "caseworker":  # opening the inbox started a fresh cookie jar
            assert (await caseworker_login(client, live.caseworker_url, ALICE.name, ALICE.passphrase)).status == 303
        await _head_sends_no_body(wb_url if side == "whistleblower" else cw_url, client)


async def test_a_stale_session_cookie_gets_no_set_cookie_on_the_submission_path(live: LiveApps) -> None:
    """A browser still holding an old mailbox cookie gets no Set-Cookie, not even a clearing one."""
    async with new_client() as client:
        base = live.whistleblower_url
        client.cookie_jar.update_cookies({"wb_session": "B" * 43}, response_url=URL(base))
        answers = [await get(client, f"{base}/en/"), await get(client, f"{base}/en/submit")]
        sent = await submit(client, base, text="stale cookie")
        assert sent.receipt
        answers += [sent.answer, (await submit(client, base, text="")).answer]
        for answer in answers:
            assert "Set-Cookie" not in answer.headers, f"{answer.status} sent a Set-Cookie on the submission path"
