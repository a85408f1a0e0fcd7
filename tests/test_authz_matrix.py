"""Who may do what on the caseworker app: every route × every kind of visitor, generated from the route table.

The routes come from `create_caseworker_app(...).router.routes()`; `EXPECTED` says, for each
(method, pattern), what each of five visitors gets. A route added to the app without a line here
fails `test_every_route_has_an_expectation`, so it cannot be forgotten. Visitors:

* anonymous: no session;
* other: a caseworker not granted the report (and no admin);
* disabled: a caseworker granted the report who signed in, then was disabled by an admin;
* admin: an admin not granted the report;
* granted: a caseworker granted the report (not an admin).

Outcomes: "login" (303 to the login page), "hidden" (404: the same answer as for an id that does
not exist), "ok" (the page, or a 303 after doing it), "refused" (400). HEAD routes get their GET's
expectation. Each route gets a fresh install with one report (with a file) so actions cannot
leak into one another; the granted visitor goes last, so a deletion is done only by them.
A second generated test checks that every state-changing POST refuses a wrong CSRF token.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from dropbox import accounts
from dropbox.forwarding import new_key_file
from dropbox.ids import new_id
from dropbox.install import load_install
from dropbox.reports import ReportBody
from dropbox.sealing import ReportKeys
from dropbox.storage import PendingMembership, Store
from dropbox.submissions import submit_report
from tests.support.forms import find_csrf, multipart
from tests.support.http_client import caseworker_login, get, new_client
from tests.support.installs import Account, new_install
from tests.support.live_server import serve_apps
from tests.support.routes import Route, app_routes

ANON, OTHER, DISABLED, ADMIN, GRANTED = "anonymous", "other", "disabled", "admin", "granted"
ROLES = (ANON, OTHER, DISABLED, ADMIN, GRANTED)  # GRANTED last: it may delete the report

ACCOUNTS = {
    OTHER: Account("bob", "bob's long enough passphrase", channels=()),
    DISABLED: Account("carol", "carol also has a passphrase"),
    ADMIN: Account("dave", "dave administers but reads nothing", admin=True, channels=()),
    GRANTED: Account("erin", "erin reads the reports of the channel"),
}

# Typical rows of the table.
REPORT = {ANON: "login", DISABLED: "login", OTHER: "hidden", ADMIN: "hidden", GRANTED: "ok"}
SELF = {ANON: "login", DISABLED: "login", OTHER: "ok", ADMIN: "ok", GRANTED: "ok"}
ADMIN_ONLY = {ANON: "login", DISABLED: "login", OTHER: "hidden", ADMIN: "ok", GRANTED: "hidden"}


@dataclass(frozen=True)
class Expect:
    outcomes: Mapping[str, str]
    #: Form fields of a request that would succeed for a visitor allowed to make it.
    form: Mapping[str, str] | None = None
    multipart: bool = False
    #: POST this route first (with the visitor's session) so the page under test has something to show.
    before: str | None = None


EVERYONE = {role: "ok" for role in ROLES}
#: A receiving authority's public key, for the forward form.
RECIPIENT_KEY = new_key_file()[1]

EXPECTED: dict[tuple[str, str], Expect] = {
    ("GET", "/"): Expect(EVERYONE),  # redirect to the default language
    ("GET", "/{lang}"): Expect(EVERYONE),  # redirect to /{lang}/
    ("GET", "/static/style.css"): Expect(EVERYONE),
    ("GET", "/{lang}/"): Expect({ANON: "login", DISABLED: "login", OTHER: "ok", ADMIN: "ok", GRANTED: "ok"}),
    ("GET", "/{lang}/login"): Expect(EVERYONE),
    # Wrong credentials: refused. A signed-in visitor is sent from the login page to the list, so
    # has no login token to post: forbidden.
    ("POST", "/{lang}/login"): Expect({ANON: "refused", DISABLED: "refused", OTHER: "forbidden", ADMIN: "forbidden",
                                       GRANTED: "forbidden"},
                                      form={"name": "erin", "passphrase": "not erin's passphrase at all"}),
    ("POST", "/{lang}/logout"): Expect({role: "login" for role in ROLES}, form={}),
    ("GET", "/{lang}/reports"): Expect(SELF),
    ("GET", "/{lang}/reports/{report_id}"): Expect(REPORT),
    ("GET", "/{lang}/reports/{report_id}/files/{file_id}"): Expect(REPORT),
    # The world's file is not a kept original, so this link opens it for nobody, the granted
    # caseworker included (tests/test_cleaning_flow.py opens a real original).
    ("GET", "/{lang}/reports/{report_id}/files/{file_id}/original"): Expect(
        {ANON: "login", DISABLED: "login", OTHER: "hidden", ADMIN: "hidden", GRANTED: "hidden"}),
    ("POST", "/{lang}/reports/{report_id}/reply"): Expect(REPORT, form={"text": "matrix reply"}, multipart=True),
    ("POST", "/{lang}/reports/{report_id}/notes"): Expect(REPORT, form={"text": "matrix note"}),
    ("POST", "/{lang}/reports/{report_id}/status"): Expect(REPORT, form={"status": "in_progress"}),
    ("POST", "/{lang}/reports/{report_id}/deadline"): Expect(REPORT, form={"deadline": "acknowledgement"}),
    ("POST", "/{lang}/reports/{report_id}/grant"): Expect(REPORT, form={"caseworker": "{other_id}"}),
    ("POST", "/{lang}/reports/{report_id}/retention"): Expect(REPORT, form={"days": "30"}),
    ("POST", "/{lang}/reports/{report_id}/hold"): Expect(REPORT, form={"hold": "1"}),
    ("POST", "/{lang}/reports/{report_id}/disclosure"): Expect(REPORT, form={"text": "matrix notice"}),
    ("POST", "/{lang}/reports/{report_id}/reason"): Expect(REPORT, form={"kind": "extension",
                                                                         "reason": "matrix reason"}),
    ("POST", "/{lang}/reports/{report_id}/close"): Expect(REPORT, form={"outcome": "No grounds",
                                                                        "message": "matrix closing"}),
    # The world's report was handed in on the web: it has no minutes to correct, so even the
    # granted caseworker is refused (tests/test_oral.py publishes versions of real minutes).
    ("POST", "/{lang}/reports/{report_id}/minutes"): Expect(
        {ANON: "login", DISABLED: "login", OTHER: "hidden", ADMIN: "hidden", GRANTED: "refused"},
        form={"after": "1", "text": "matrix minutes"}),
    ("GET", "/{lang}/oral"): Expect(SELF),
    # Only into a channel of one's own: the other caseworker and the admin belong to none.
    ("POST", "/{lang}/oral"): Expect(
        {ANON: "login", DISABLED: "login", OTHER: "refused", ADMIN: "refused", GRANTED: "ok"},
        form={"channel": "default", "medium": "phone", "minutes": "matrix minutes", "consent": "no",
              "consent_day": "2026-01-01"}, multipart=True),
    ("POST", "/{lang}/reports/{report_id}/export"): Expect(REPORT, form={"notes": "1"}),
    ("POST", "/{lang}/reports/{report_id}/forward"): Expect(REPORT, form={"recipient": RECIPIENT_KEY}),
    ("GET", "/{lang}/reports/{report_id}/delete"): Expect(REPORT),
    ("POST", "/{lang}/reports/{report_id}/delete"): Expect(REPORT, form={"confirm": "on"}),
    ("GET", "/{lang}/settings"): Expect(SELF),
    ("POST", "/{lang}/settings/passphrase"): Expect(SELF, form={"current": "{passphrase}",
                                                                "new": "a brand new long passphrase",
                                                                "repeat": "a brand new long passphrase"}),
    ("POST", "/{lang}/settings/email"): Expect(SELF, form={"email": "someone@example.org"}),
    ("POST", "/{lang}/settings/totp/start"): Expect(SELF, form={}),
    ("GET", "/{lang}/settings/totp"): Expect(SELF, before="/en/settings/totp/start"),
    ("GET", "/{lang}/settings/totp/qr.png"): Expect(SELF, before="/en/settings/totp/start"),
    ("POST", "/{lang}/settings/totp/confirm"): Expect(SELF, form={"code": "000000"}),
    ("POST", "/{lang}/settings/totp/disable"): Expect(SELF, form={"code": "000000"}),
    ("GET", "/{lang}/admin/channels"): Expect(ADMIN_ONLY),
    ("GET", "/{lang}/admin/outcomes"): Expect(ADMIN_ONLY),
    ("POST", "/{lang}/admin/outcomes"): Expect(ADMIN_ONLY, form={"categories": "No grounds\nOther"}),
    ("GET", "/{lang}/admin/statistics"): Expect(ADMIN_ONLY),
    ("GET", "/{lang}/admin/statistics.csv"): Expect(ADMIN_ONLY),
    ("POST", "/{lang}/admin/channels"): Expect(ADMIN_ONLY, form={
        "id": "matrix", "name": "Matrix", "description": "", "questions": "[]", "retention_days": "30"}),
    ("GET", "/{lang}/admin/channels/{channel_id}"): Expect(ADMIN_ONLY),
    ("POST", "/{lang}/admin/channels/{channel_id}"): Expect(ADMIN_ONLY, form={
        "name": "Renamed", "description": "", "questions": "[]", "retention_days": "60", "default": "on"}),
    ("POST", "/{lang}/admin/memberships/{pending_id}"): Expect(ADMIN_ONLY, form={"action": "reject"}),
    ("GET", "/{lang}/admin/caseworkers"): Expect(ADMIN_ONLY),
    ("POST", "/{lang}/admin/caseworkers"): Expect(ADMIN_ONLY, form={"name": "frank", "channels": "default"}),
    ("POST", "/{lang}/admin/caseworkers/{caseworker_id}"): Expect(ADMIN_ONLY, form={"action": "make_admin"}),
    ("GET", "/{lang}/admin/audit"): Expect(ADMIN_ONLY),
}

ROUTES = [r for r in app_routes("caseworker") if r.method != "HEAD"]
HEAD_ROUTES = [r for r in app_routes("caseworker") if r.method == "HEAD"]


def expectation(route: Route) -> Expect:
    key = ("GET" if route.method == "HEAD" else route.method, route.pattern)
    return EXPECTED[key]


def test_every_route_has_an_expectation() -> None:
    """A route added to the app without a line in EXPECTED fails here; so does a stale line."""
    in_app = {r.key for r in ROUTES}
    missing = sorted(in_app - set(EXPECTED))
    stale = sorted(set(EXPECTED) - in_app)
    assert not missing, f"routes without an authorization expectation: {missing}"
    assert not stale, f"expectations for routes the app no longer has: {stale}"
    assert {r.pattern for r in HEAD_ROUTES} <= {r.pattern for r in ROUTES if r.method == "GET"}
    for key, expect in EXPECTED.items():
        assert set(expect.outcomes) == set(ROLES), f"{key} does not say what every visitor gets"


# -- the install each route is tried on ---------------------------------------------------------


@dataclass
class World:
    admin_url: str
    report_id: str
    file_id: str
    file_bytes: bytes
    ids: dict[str, str]  # role -> caseworker id
    pending_id: str  # a membership change another admin asked for
    clients: dict[str, aiohttp.ClientSession]
    csrf: dict[str, str]
    store: Store


@contextlib.asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config = await new_install(tmp_path / "data", tuple(ACCOUNTS.values()))
    async with serve_apps(config) as live:
        store = live.services.store
        staged = live.services.blobs.stage(byte_budget=config.max_submission_bytes)
        file_bytes = os.urandom(5000)

        async def chunks() -> AsyncIterator[bytes]:
            yield file_bytes

        await staged.add("evidence.bin", chunks(), max_file_bytes=config.max_file_bytes)
        await submit_report(store=store, kdf=live.services.public_kdf, install=await load_install(store),
                            channel_id="default", body=ReportBody(text="the report", answers={}),
                            keys=ReportKeys.generate(), staged=staged)
        ids = {role: (await store.caseworker_by_name(a.name)).id for role, a in ACCOUNTS.items()}
        pending = PendingMembership(id=new_id(), channel_id="default", caseworker_id=ids[OTHER], member=True,
                                    requested_by=ids[OTHER], requested_day="2026-01-01")
        await store.add_pending_membership(pending)
        [(report_id, _)] = await store.grants_of(ids[GRANTED])
        clients = {role: new_client() for role in ROLES}
        try:
            csrf: dict[str, str] = {}
            for role, account in ACCOUNTS.items():
                login = await caseworker_login(clients[role], live.caseworker_url, account.name, account.passphrase)
                assert login.status == 303, f"{role} could not sign in: {login.status}"
                page = await get(clients[role], f"{live.caseworker_url}/en/reports")
                csrf[role] = find_csrf(page.body) or ""
                assert csrf[role], f"no CSRF token on {role}'s report list"
            # The disabled visitor signed in while enabled; an admin disables them afterwards.
            await accounts.set_disabled(store=store, name=ACCOUNTS[DISABLED].name, disabled=True)
            yield World(admin_url=live.caseworker_url, report_id=report_id, file_id=staged.files[0].id,
                        file_bytes=file_bytes, ids=ids, pending_id=pending.id, clients=clients, csrf=csrf,
                        store=store)
        finally:
            for client in clients.values():
                await client.close()


def _fill(value: str, w: World, role: str) -> str:
    passphrase = ACCOUNTS[role].passphrase if role in ACCOUNTS else "x" * 20
    return value.replace("{other_id}", w.ids[OTHER]).replace("{passphrase}", passphrase)


async def _request(w: World, route: Route, role: str, *, csrf: str | None = None,
                   headers: Mapping[str, str] | None = None) -> tuple[int, str | None, bytes]:
    expect = expectation(route)
    path = route.path({"report_id": w.report_id, "file_id": w.file_id, "channel_id": "default",
                       "caseworker_id": w.ids[OTHER], "pending_id": w.pending_id})
    url = w.admin_url + path
    client = w.clients[role]
    if role == ANON:
        client.cookie_jar.clear()
    token = w.csrf.get(role, "") if csrf is None else csrf
    if expect.before and role != ANON:
        async with client.post(w.admin_url + expect.before, data={"csrf_token": token}, allow_redirects=False):
            pass
    if route.method in ("GET", "HEAD"):
        async with client.request(route.method, url, allow_redirects=False) as response:
            return response.status, response.headers.get("Location"), await response.read()
    fields = {k: _fill(v, w, role) for k, v in (expect.form or {}).items()}
    if route.pattern == "/{lang}/login":
        # The login form's own double-submit token: from the login page's cookie and form.
        page = await get(client, w.admin_url + "/en/login")
        token = (find_csrf(page.body) or "") if csrf is None else csrf
    if expect.multipart:
        body, content_type = multipart([("csrf_token", token, None), *[(k, v, None) for k, v in fields.items()]])
        async with client.post(url, data=body, headers={"Content-Type": content_type, **(headers or {})},
                               allow_redirects=False) as response:
            return response.status, response.headers.get("Location"), await response.read()
    async with client.post(url, data={"csrf_token": token, **fields}, headers=headers,
                           allow_redirects=False) as response:
        return response.status, response.headers.get("Location"), await response.read()


def classify(status: int, location: str | None) -> str:
    if status in (302, 303) and location is not None:
        return "login" if re.fullmatch(r"/[a-z]{2}/login", urlsplit(location).path) else "ok"
    return {200: "ok", 404: "hidden", 400: "refused", 403: "forbidden"}.get(status, f"status {status}")


#: Known bugs, each marked so the test flips to a failure (strict xfail) the day it is fixed.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _with_known_bugs(routes: list[Route]) -> list[object]:
    return [pytest.param(r, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[r.key]))
            if r.key in KNOWN_BUGS else r for r in routes]


@pytest.mark.parametrize("route", _with_known_bugs(ROUTES + HEAD_ROUTES), ids=lambda r: f"{r.method} {r.pattern}")
async def test_route_answers_each_visitor_as_expected(route: Route, tmp_path: Path) -> None:
    expect = expectation(route)
    async with world(tmp_path) as w:
        got: dict[str, str] = {}
        for role in ROLES:
            status, location, body = await _request(w, route, role)
            got[role] = classify(status, location)
            if route.pattern == "/{lang}/reports/{report_id}/files/{file_id}" and got[role] == "ok" \
                    and route.method == "GET":
                assert body == w.file_bytes, "the granted caseworker's download is not the file"
            if route.pattern == "/{lang}/reports" and route.method == "GET" and got[role] == "ok":
                listed = w.report_id in body.decode("utf-8", "replace")
                assert listed == (role == GRANTED), f"{role}'s report list {'shows' if listed else 'hides'} the report"
        wanted = dict(expect.outcomes)
        assert got == wanted, f"{route.method} {route.pattern}: got {got}, expected {wanted}"
        if route.pattern == "/{lang}/logout":
            for role in (OTHER, ADMIN, GRANTED):  # signed out for real: the old cookie opens nothing
                status, location, _ = await _request(w, Route("caseworker", "GET", "/{lang}/reports", None), role)
                assert classify(status, location) == "login", f"{role} still signed in after logout"


CSRF_ROUTES = [r for r in ROUTES if r.method == "POST"]


@pytest.mark.parametrize("route", CSRF_ROUTES, ids=lambda r: f"{r.method} {r.pattern}")
async def test_every_post_refuses_a_wrong_csrf_token(route: Route, tmp_path: Path) -> None:
    """For the visitor the route is meant for, the same request with a forged token is a 403."""
    expect = expectation(route)
    role = next(r for r in (GRANTED, ADMIN, OTHER, ANON) if expect.outcomes[r] in ("ok", "refused", "login"))
    async with world(tmp_path) as w:
        before = await w.store.audit_log(limit=1000)
        status, location, _ = await _request(w, route, role, csrf="forged-" + "A" * 36)
        assert status == 403, f"{route.method} {route.pattern} as {role} with a forged token: {status} {location}"
        assert await w.store.audit_log(limit=1000) == before, "a refused request still changed something"


async def test_every_post_refuses_a_cross_site_request_and_changes_nothing(tmp_path: Path) -> None:
    """Each POST, as the visitor it is meant for with the right token and form, but sent by a
    foreign page (the browser says `Sec-Fetch-Site: cross-site`): 403 and nothing changes."""
    async with world(tmp_path) as w:
        before = _dump(tmp_path / "data" / "dropbox.sqlite3")
        for route in CSRF_ROUTES:
            expect = expectation(route)
            role = next(r for r in (GRANTED, ADMIN, OTHER, ANON) if expect.outcomes[r] in ("ok", "refused", "login"))
            status, _, body = await _request(w, route, role, headers={"Sec-Fetch-Site": "cross-site"})
            assert status == 403, f"{route.method} {route.pattern} as {role} from another site: {status}"
            assert b"This form came from another site" in body
        assert _dump(tmp_path / "data" / "dropbox.sqlite3") == before, "a refused request still changed something"
        assert w.report_id in {r for r, _ in await w.store.grants_of(w.ids[GRANTED])}, "the report went"
        for role in (OTHER, ADMIN, GRANTED):  # no logout went through: each is still signed in
            status, location, _ = await _request(w, Route("caseworker", "GET", "/{lang}/reports", None), role)
            assert classify(status, location) == "ok", f"{role} was signed out by a cross-site POST"


def _dump(db_path: Path) -> list[str]:
    """Every row of every table (the server's WAL included): what "nothing changed" compares."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return list(db.iterdump())
