"""Every POST of the whistleblower app refuses a request another site's page made the browser send.

The routes come from the app's route table, so a POST added later without a form here fails
`test_every_post_route_is_tried`. The caseworker app's POSTs are tried the same way in
tests/test_authz_matrix.py; the header values themselves in tests/test_web.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from contextlib import closing

from aiohttp import FormData

from tests.support.data_checks import files_of_their_own
from tests.support.forms import csrf_in, receipt_in, report_form, token_in  # noqa: F401
from tests.support.routes import app_routes
from tests.support.whistleblower_site import Site, log_in, site_fixture  # noqa: F401

CROSS_SITE = {"Sec-Fetch-Site": "cross-site"}
POSTS = [r for r in app_routes("whistleblower") if r.method == "POST"]


def _reply(csrf: str) -> FormData:
    form = FormData(quote_fields=False)
    form.add_field("csrf_token", csrf)
    form.add_field("text", "a reply")
    form.add_field("files", b"a file", filename="f.txt", content_type="application/octet-stream")
    return form


#: For each POST, a request that succeeds when sent from the site's own page (receipt, token, csrf).
FORMS: Mapping[str, Callable[[str, str, str], object]] = {
    "/{lang}/submit": lambda receipt, token, csrf: report_form("another report", files={"a.txt": b"a"}),
    "/{lang}/submit/confirm": lambda receipt, token, csrf: {"receipt_token": token, "receipt": receipt},
    "/{lang}/mailbox/login": lambda receipt, token, csrf: {"receipt": receipt},
    "/{lang}/mailbox/reply": lambda receipt, token, csrf: _reply(csrf),
    "/{lang}/mailbox/meeting": lambda receipt, token, csrf: {"csrf_token": csrf, "kind": "meeting"},
    "/{lang}/mailbox/minutes/approve": lambda receipt, token, csrf: {"csrf_token": csrf, "version": "1",
                                                                      "agree": "yes"},
    "/{lang}/mailbox/minutes/correct": lambda receipt, token, csrf: {"csrf_token": csrf, "version": "1",
                                                                      "text": "a correction"},
    "/{lang}/mailbox/logout": lambda receipt, token, csrf: {"csrf_token": csrf},
    "/{lang}/mailbox/proof": lambda receipt, token, csrf: {"csrf_token": csrf, "contents": "1"},
}


def test_every_post_route_is_tried() -> None:
    assert {r.pattern for r in POSTS} == set(FORMS)


def _dump(site: Site) -> tuple[list[str], list[str]]:
    with closing(sqlite3.connect(site.config.db_path)) as db:
        rows = list(db.iterdump())
    return rows, [str(p) for p in files_of_their_own(site.config)]


async def test_every_post_refuses_a_cross_site_request_and_changes_nothing(site: Site) -> None:
    # Given a report, its confirmation form, and an open mailbox
    page = await (await site.client.post("/en/submit", data=report_form("the report"))).text()
    receipt, token = receipt_in(page), token_in(page)
    csrf = csrf_in(await log_in(site.client, receipt))
    before = _dump(site)
    cookies = {c.key: c.value for c in site.client.session.cookie_jar}
    for route in POSTS:
        # When a foreign page makes the browser send the form that would otherwise work
        response = await site.client.post(route.path({}), data=FORMS[route.pattern](receipt, token, csrf),
                                          headers=CROSS_SITE, allow_redirects=False)
        # Then it is refused with a page that says why, and no cookie is set
        page = await response.text()
        assert response.status == 403, f"{route.pattern}: {response.status}"
        assert "This form came from another site" in page and receipt not in page
        assert "Set-Cookie" not in response.headers
    # And nothing was stored, and the mailbox is still open (no logout went through)
    assert _dump(site) == before
    assert {c.key: c.value for c in site.client.session.cookie_jar} == cookies
    inbox = await site.client.get("/en/mailbox/inbox", allow_redirects=False)
    assert inbox.status == 200 and "a reply" not in await inbox.text()
    # And the same requests from the site's own pages still work (the refusal was the header's doing)
    response = await site.client.post("/en/mailbox/reply", data=_reply(csrf), allow_redirects=False,
                                      headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status == 303
