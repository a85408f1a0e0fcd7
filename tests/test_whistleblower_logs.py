"""Nothing about the whistleblower reaches a log or stdout: no address, no User-Agent, no content.

One test runs every page and error path of this side with all logging captured at DEBUG on the
root logger, and with stdout/stderr captured too, then looks for what must never be there; the
app itself logs nothing at the time of a visit (events.py counts problems, logged once a day).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import FormData

from tests.support.base_app import DISTINCTIVE_UA, DISTINCTIVE_XFF
from tests.support.domain import caseworker_reply  # noqa: F401
from tests.support.forms import csrf_in, hrefs, receipt_in, report_form, token_in  # noqa: F401
from tests.support.whistleblower_site import KiB, Site, site_fixture  # noqa: F401

CANARY = "CANARY-wb-5d1e"
HEADERS = {"User-Agent": DISTINCTIVE_UA, "X-Forwarded-For": DISTINCTIVE_XFF, "X-Real-IP": DISTINCTIVE_XFF,
           "Forwarded": f"for={DISTINCTIVE_XFF}", "Referer": f"http://{CANARY}.example/"}


async def test_a_full_flow_with_every_error_leaves_no_client_data_and_no_content_in_logs(
    site: Site, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger, and so every logger of the app and of aiohttp
    client = site.client
    statuses = []

    async def call(method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None) -> str:
        response = await client.request(method, path, data=data, headers={**HEADERS, **(headers or {})},
                                         allow_redirects=False)
        statuses.append(response.status)
        return await response.text()

    # The submission path, with its errors
    await call("GET", "/en/submit")
    await call("POST", "/en/submit", data=report_form(""))  # empty
    await call("POST", "/en/submit", data=report_form(CANARY * 200))  # too long
    await call("POST", "/en/submit", data=report_form(CANARY, files={f"{CANARY}.bin": b"\0" * (65 * KiB)}))
    await call("POST", "/en/submit", data=b"--x\r\n" + CANARY.encode(),
               headers={"Content-Type": "multipart/form-data; boundary=x"})
    page = await call("POST", "/en/submit", data=report_form(f"{CANARY} text", contact=f"{CANARY} contact",
                                                             files={f"{CANARY}-1.pdf": CANARY.encode() * 100,
                                                                    f"{CANARY}-2.jpg": b"jpg"}))
    receipt, token = receipt_in(page), token_in(page)
    await call("POST", "/en/submit/confirm", data={"receipt_token": token, "receipt": "0000"})
    await call("POST", "/en/submit/confirm", data={"receipt_token": CANARY, "receipt": receipt})
    await call("POST", "/en/submit/confirm", data={"receipt_token": token, "receipt": receipt})
    # The mailbox, with its errors
    await caseworker_reply(site.services, receipt, f"{CANARY} reply", {f"{CANARY}-cw.txt": b"cw file"})
    await call("GET", "/en/mailbox")
    await call("POST", "/en/mailbox/login", data={"receipt": "9999 9999 9999 9999"})
    await call("GET", "/en/mailbox/inbox")  # no session yet
    await call("POST", "/en/mailbox/login", data={"receipt": receipt})
    inbox = await call("GET", "/en/mailbox/inbox")
    (download,) = hrefs(inbox, r"/en/mailbox/files/[0-9a-f]{32}")
    await call("GET", download)
    csrf = csrf_in(inbox)
    reply = FormData(quote_fields=False)
    reply.add_field("csrf_token", csrf)
    reply.add_field("text", f"{CANARY} answer")
    reply.add_field("files", b"more", filename=f"{CANARY}-more.txt")
    await call("POST", "/en/mailbox/reply", data=reply)
    forged = FormData(default_to_multipart=True)
    forged.add_field("csrf_token", CANARY)
    forged.add_field("text", CANARY)
    await call("POST", "/en/mailbox/reply", data=forged)
    await call("GET", f"/en/mailbox/files/{CANARY}")
    await call("GET", f"/en/{CANARY}")
    await call("POST", "/en/mailbox/logout", data={"csrf_token": csrf})

    assert statuses == [200, 400, 400, 413, 400, 200, 400, 400, 200, 200, 403, 303, 303, 200, 200, 303, 403,
                        404, 404, 303]
    captured = capfd.readouterr()
    everything = "\n".join([caplog.text, captured.out, captured.err,
                            *(str(r.args) for r in caplog.records), *(r.exc_text or "" for r in caplog.records)])
    # Nothing of the app is logged at the time of a visit, not even at DEBUG (a line would date it);
    # problems are counted and logged once a day (tests/test_events.py shows that capture works)
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("dropbox")]
    for secret in (DISTINCTIVE_XFF, "127.0.0.1", DISTINCTIVE_UA, "Zebra-Unicorn", CANARY, receipt,
                   receipt.replace(" ", ""), csrf, token[:40]):
        assert secret not in everything, secret
