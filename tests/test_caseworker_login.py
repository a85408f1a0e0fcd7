"""Signing in and out of the caseworker app over real HTTP: cookies, key lifetime, slowing, refusals."""

from __future__ import annotations

import re
from pathlib import Path

from dropbox.accounts import key_usable
from dropbox.caseworker.staff import StaffSession
from dropbox.web.sessions import SESSIONS, Session
from dropbox.web.throttle import FAILURE_BUDGET
from tests.support.caseworker_site import Agent, Site, serve_site, site_fixture  # noqa: F401
from tests.support.domain import submit  # noqa: F401
from tests.support.forms import csrf_in  # noqa: F401
from tests.support.installs import (
    PASSPHRASES,
    STAFF,
    new_install,  # noqa: F401
)

GENERIC = "That did not work. Check your name, passphrase and code, and try again."


def live_sessions(site: Site) -> list[Session[StaffSession]]:
    """White-box: the sessions held in the app's memory."""
    return list(site.app[SESSIONS]._sessions.values())


def _cookie(response: object, name: str) -> str:
    for header in response.headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        if header.startswith(f"{name}="):
            return str(header)
    raise AssertionError(f"no {name} cookie set")


async def test_login_page_sets_a_browser_session_token_cookie_and_strict_headers(site: Site) -> None:
    agent = await site.agent()
    response = await agent.get("/en/login")
    page = await response.text()
    assert response.status == 200
    cookie = _cookie(response, "cw_login")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age" not in cookie and "expires" not in cookie.lower()
    assert csrf_in(page) in cookie
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "<script" not in page
    assert len(live_sessions(site)) == 0  # looking at the login page creates no server state


async def test_login_rotates_the_session_and_lands_on_the_list(site: Site) -> None:
    agent = await site.agent()
    first = await agent.login("alice")
    assert first.status == 303 and first.headers["Location"] == "/en/reports"
    first_id = re.search(r"cw_session=([^;]+)", _cookie(first, "cw_session")).group(1)  # type: ignore[union-attr]
    assert "HttpOnly" in _cookie(first, "cw_session") and "SameSite=Strict" in _cookie(first, "cw_session")

    # Signing in again, even over a live session, gives a new id and ends the old one.
    page = await agent.client.get("/en/reports")
    again = await agent.client.post("/en/login", allow_redirects=False, data={
        "csrf_token": agent.client.session.cookie_jar.filter_cookies(agent.client.make_url("/"))["cw_login"].value,
        "name": "alice", "passphrase": PASSPHRASES["alice"]})
    assert page.status == 200 and again.status == 303
    second_id = re.search(r"cw_session=([^;]+)", _cookie(again, "cw_session")).group(1)  # type: ignore[union-attr]
    assert second_id != first_id
    stale = await site.agent()
    stale.client.session.cookie_jar.update_cookies({"cw_session": first_id})
    response = await stale.get("/en/reports")
    assert response.status == 303 and response.headers["Location"] == "/en/login"
    assert len(live_sessions(site)) == 1


async def test_every_failure_is_the_same_generic_answer(site: Site) -> None:
    await site.services.store.update_caseworker(
        (await site.services.store.caseworker_by_name("carol")).id, disabled=1)
    answers = []
    for name, passphrase in (("alice", "wrong passphrase here"), ("nobody", PASSPHRASES["alice"]),
                             ("carol", PASSPHRASES["carol"]), ("alice", "x" * 1500), ("", "")):
        agent = await site.agent()
        response = await agent.login(name, passphrase=passphrase)
        body = await response.text()
        assert response.status == 400 and GENERIC in body, name
        assert "cw_session=" not in response.headers.get("Set-Cookie", "")
        answers.append(re.sub(r'value="[^"]*"', "", body))
    assert len(set(answers)) == 1  # nothing tells a disabled or unknown account from a wrong passphrase
    assert len(live_sessions(site)) == 0


async def test_login_form_needs_its_token_cookie_and_field(site: Site) -> None:
    agent = await site.agent()
    page = await agent.text("/en/login")
    data = {"name": "alice", "passphrase": PASSPHRASES["alice"]}
    for form in (data, {**data, "csrf_token": "A" * 43}, {**data, "csrf_token": ""}):
        response = await agent.client.post("/en/login", data=form, allow_redirects=False)
        assert response.status == 403, form
    # The right field but no cookie (a cross-site post carries no SameSite=Strict cookie).
    other = await site.agent()
    response = await other.client.post("/en/login", data={**data, "csrf_token": csrf_in(page)},
                                       allow_redirects=False)
    assert response.status == 403
    assert len(live_sessions(site)) == 0


async def test_failures_slow_logins_down_but_never_lock_anyone_out(tmp_path: Path) -> None:
    config = await new_install(tmp_path / "data", STAFF, failed_login_budget_per_minute=1, slowdown_seconds=0)
    async with serve_site(config) as served:
        agent = await served.agent()
        first = await agent.login("alice", passphrase="not the passphrase")
        assert "slowed down" not in await first.text()
        second = await agent.login("alice", passphrase="still not the passphrase")
        assert second.status == 400 and "slowed down" in await second.text()
        right = await agent.login("alice")
        assert right.status == 303


async def test_a_passphrase_no_key_could_have_does_not_spend_the_failure_budget(tmp_path: Path) -> None:
    # Given a budget of one failure a minute
    config = await new_install(tmp_path / "data", STAFF, failed_login_budget_per_minute=1, slowdown_seconds=0)
    async with serve_site(config) as served:
        agent = await served.agent()
        derivations = served.services.staff_kdf.started
        # When passphrases no key could have are sent (empty, over the byte cap)
        for passphrase in ("", "   ", "x" * 1025, "\u00e9" * 600):
            response = await agent.login("alice", passphrase=passphrase)
            assert response.status == 400 and GENERIC in await response.text()
        # Then no Argon2id run was started for them, and none was counted: the first real wrong
        # guess is not slowed
        assert served.services.staff_kdf.started == derivations
        assert not served.app[FAILURE_BUDGET].spent()
        first = await agent.login("alice", passphrase="not the passphrase")
        assert first.status == 400 and "slowed down" not in await first.text()


async def test_logout_wipes_the_key_and_needs_the_csrf_token(site: Site) -> None:
    alice = await site.signed_in("alice")
    (session,) = live_sessions(site)
    refused = await alice.post("/en/logout", csrf=False)
    assert refused.status == 403 and len(live_sessions(site)) == 1

    response = await alice.post("/en/logout")
    assert response.status == 303 and response.headers["Location"] == "/en/login?signed_out=1"
    assert live_sessions(site) == []
    assert not key_usable(session.payload.account)
    assert (await alice.get("/en/reports")).headers["Location"] == "/en/login"
    assert "You are signed out" in await alice.text("/en/login?signed_out=1")
    actions = [e.action for e in await site.services.store.audit_log()]
    assert actions[:2] == ["logout", "login"]


async def test_idle_timeout_wipes_the_key(site: Site) -> None:
    alice = await site.signed_in("alice")
    (session,) = live_sessions(site)
    session.last_seen -= site.config.caseworker_idle_seconds + 1  # thirty minutes pass

    response = await alice.get("/en/reports")
    assert response.status == 303 and response.headers["Location"] == "/en/login"
    assert not key_usable(session.payload.account)
    assert live_sessions(site) == []


async def test_a_session_whose_key_is_gone_cannot_decrypt(site: Site) -> None:
    report = await submit(site.services, text="decrypt-me-canary")
    alice = await site.signed_in("alice")
    assert "decrypt-me-canary" in await alice.text(f"/en/reports/{report.report_id}")
    (session,) = live_sessions(site)
    session.payload.account.key.wipe()  # key material gone while the session id still exists

    response = await alice.get(f"/en/reports/{report.report_id}")
    assert response.status == 303 and response.headers["Location"] == "/en/login"
    assert "decrypt-me-canary" not in await response.text()
    assert live_sessions(site) == []


async def test_disabling_an_account_ends_its_open_session(site: Site) -> None:
    bob = await site.signed_in("bob")
    assert (await bob.get("/en/reports")).status == 200
    await site.services.store.update_caseworker((await site.services.store.caseworker_by_name("bob")).id,
                                                disabled=1)
    response = await bob.get("/en/reports")
    assert response.status == 303 and response.headers["Location"] == "/en/login"
    assert (await bob.login("bob")).status == 400


async def test_root_and_login_page_redirect_by_sign_in_state(site: Site) -> None:
    agent = await site.agent()
    assert (await agent.get("/da/")).headers["Location"] == "/da/login"
    await agent.login("alice", lang="da")
    assert (await agent.get("/da/")).headers["Location"] == "/da/reports"
    assert (await agent.get("/sv/login")).headers["Location"] == "/sv/reports"
