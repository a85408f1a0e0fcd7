"""In-memory sessions: cookie flags, rotation, idle expiry, wiping, CSRF and the sweep task."""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import make_mocked_request

from dropbox.web.i18n import localized, template_context
from dropbox.web.sessions import (
    CSRF_FIELD,
    SESSIONS,
    CsrfError,
    SessionStore,
)
from tests.support.base_app import build_app
from tests.support.clock import FakeClock
from tests.support.live_server import AiohttpClient, start

COOKIE = "wb_session"


class WipeRecorder:
    """A session payload that records whether it was wiped."""

    def __init__(self, secret: bytes = b"key material") -> None:
        self.secret = bytearray(secret)
        self.wiped = False

    def wipe(self) -> None:
        for i in range(len(self.secret)):
            self.secret[i] = 0
        self.wiped = True


def _session_app(tmp_path: Path, payloads: list[WipeRecorder], **config: object) -> web.Application:
    """A base app with login/me/act/logout routes the way the domain's handlers will use them."""
    app = build_app(tmp_path, **config)  # type: ignore[arg-type]

    async def login(request: web.Request) -> web.Response:
        payloads.append(WipeRecorder())
        request.config_dict[SESSIONS].create(request, payloads[-1])
        raise web.HTTPSeeOther("/en/me")

    async def me(request: web.Request) -> web.Response:
        session = request.config_dict[SESSIONS].get(request)
        if session is None:
            return web.Response(text="none")
        return web.Response(text=f"csrf={template_context(request)['csrf_token']}")

    async def act(request: web.Request) -> web.Response:
        store: SessionStore[WipeRecorder] = request.config_dict[SESSIONS]
        session = store.get(request)
        if session is None:
            raise web.HTTPForbidden()
        form = await request.post()
        submitted = form.get(CSRF_FIELD)
        store.verify_csrf(session, submitted if isinstance(submitted, str) else None)
        return web.Response(text="done")

    async def logout(request: web.Request) -> web.Response:
        request.config_dict[SESSIONS].destroy(request)
        raise web.HTTPSeeOther("/en/")

    app.router.add_post(localized("/login"), login, name="login")
    app.router.add_get(localized("/me"), me, name="me")
    app.router.add_post(localized("/act"), act, name="act")
    app.router.add_post(localized("/logout"), logout, name="logout")
    return app


def _set_cookie_headers(response: ClientResponse) -> list[str]:
    return list(response.headers.getall("Set-Cookie", []))


def _cookie_value(header: str) -> str:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(header)
    return parsed[COOKIE].value


async def test_login_sets_a_browser_session_cookie(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, _session_app(tmp_path, []))
    # When a session is created
    response = await client.post("/en/login", allow_redirects=False)
    # Then exactly one cookie is set, with a 256-bit random id and the safe flags
    (header,) = _set_cookie_headers(response)
    assert header.startswith(f"{COOKIE}=")
    assert len(_cookie_value(header)) == 43
    attributes = [a.strip().lower() for a in header.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert not [a for a in attributes if a.startswith(("expires", "max-age", "secure", "domain"))]
    # And the session works on the next request
    assert (await (await client.get("/en/me")).text()).startswith("csrf=")


async def test_caseworker_app_uses_its_own_cookie(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    app = build_app(tmp_path, kind="caseworker")
    assert app[SESSIONS].cookie_name != COOKIE
    assert app[SESSIONS].idle_seconds == 30 * 60
    assert app[SESSIONS].absolute_seconds == 12 * 3600
    assert build_app(tmp_path / "wb")[SESSIONS].idle_seconds == 20 * 60
    assert build_app(tmp_path / "wb2")[SESSIONS].absolute_seconds == 4 * 3600


async def test_login_rotates_the_id_and_wipes_the_old_session(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    payloads: list[WipeRecorder] = []
    client = await start(aiohttp_client, _session_app(tmp_path, payloads))
    first = _cookie_value(_set_cookie_headers(await client.post("/en/login", allow_redirects=False))[0])
    # When the same browser logs in again
    second = _cookie_value(_set_cookie_headers(await client.post("/en/login", allow_redirects=False))[0])
    # Then it gets a new id, and the old id and its payload are gone
    assert first != second
    assert payloads[0].wiped and not payloads[1].wiped
    client.session.cookie_jar.clear()
    response = await client.get("/en/me", headers={"Cookie": f"{COOKIE}={first}"})
    assert await response.text() == "none"


async def test_logout_wipes_the_payload_and_clears_the_cookie(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    payloads: list[WipeRecorder] = []
    client = await start(aiohttp_client, _session_app(tmp_path, payloads))
    session_id = _cookie_value(_set_cookie_headers(await client.post("/en/login", allow_redirects=False))[0])
    # When the user logs out
    response = await client.post("/en/logout", allow_redirects=False)
    # Then the payload was wiped and the browser told to drop the cookie
    assert payloads[0].wiped and payloads[0].secret == bytearray(len(payloads[0].secret))
    (header,) = _set_cookie_headers(response)
    assert header.startswith(f'{COOKIE}=""') and "max-age=0" in header.lower()
    # And the old id no longer opens anything
    client.session.cookie_jar.clear()
    response = await client.get("/en/me", headers={"Cookie": f"{COOKIE}={session_id}"})
    assert await response.text() == "none"


async def test_unknown_id_is_told_to_go_away(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, _session_app(tmp_path, []))
    response = await client.get("/en/me", headers={"Cookie": f"{COOKIE}={'A' * 43}"})
    assert await response.text() == "none"
    assert "max-age=0" in _set_cookie_headers(response)[0].lower()


async def test_idle_session_expires_over_http(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    payloads: list[WipeRecorder] = []
    client = await start(aiohttp_client, _session_app(tmp_path, payloads, whistleblower_idle_seconds=1))
    await client.post("/en/login")
    # When the browser stays idle longer than the timeout
    await asyncio.sleep(1.1)
    # Then the session is gone and its payload wiped
    assert await (await client.get("/en/me")).text() == "none"
    assert payloads[0].wiped


@pytest.mark.parametrize("submitted", [None, "", "wrong-token", "æøå-not-ascii"])
async def test_csrf_mismatch_is_refused_with_the_expired_form_page(
    aiohttp_client: AiohttpClient, tmp_path: Path, submitted: str | None
) -> None:
    client = await start(aiohttp_client, _session_app(tmp_path, []))
    await client.post("/en/login")
    data = {} if submitted is None else {CSRF_FIELD: submitted}
    response = await client.post("/da/act", data=data)
    assert response.status == 403
    assert "Formularen er udløbet" in await response.text()


async def test_csrf_token_of_the_session_is_accepted(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await start(aiohttp_client, _session_app(tmp_path, []))
    await client.post("/en/login")
    token = (await (await client.get("/en/me")).text()).removeprefix("csrf=")
    assert len(token) == 43
    response = await client.post("/en/act", data={CSRF_FIELD: token})
    assert response.status == 200 and await response.text() == "done"


async def test_sweeper_runs_with_the_app_and_wipes_everything_on_cleanup(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    payloads: list[WipeRecorder] = []
    app = _session_app(tmp_path, payloads)
    client = await start(aiohttp_client, app)
    store = app[SESSIONS]
    await client.post("/en/login")
    assert store.sweeping and len(store) == 1
    # When the app shuts down
    await client.close()
    # Then the sweep task has ended and no session (or key material) is left
    assert not store.sweeping
    assert len(store) == 0 and payloads[0].wiped


# -- the store on its own, with a clock the test moves ------------------------------------------


def _request(session_id: str | None = None) -> web.Request:
    headers = {"Cookie": f"{COOKIE}={session_id}"} if session_id else {}
    return make_mocked_request("GET", "/en/", headers=headers)


def _store(clock: FakeClock, **kwargs: object) -> SessionStore[WipeRecorder]:
    return SessionStore(cookie_name=COOKIE, idle_seconds=60, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_get_touches_and_idle_timeout_expires() -> None:
    clock = FakeClock()
    store = _store(clock)
    payload = WipeRecorder()
    session = store.create(_request(), payload)
    # Activity within the timeout keeps the session alive
    for _ in range(3):
        clock.advance(59)
        assert store.get(_request(session.id)) is session
    # A full timeout without activity ends it and wipes the payload
    clock.advance(60)
    assert store.get(_request(session.id)) is None
    assert payload.wiped and len(store) == 0


def test_sweep_removes_only_idle_sessions() -> None:
    clock = FakeClock()
    store = _store(clock)
    old, fresh = WipeRecorder(), WipeRecorder()
    store.create(_request(), old)
    clock.advance(30)
    store.create(_request(), fresh)
    clock.advance(31)
    assert store.sweep() == 1
    assert old.wiped and not fresh.wiped and len(store) == 1


def test_create_then_get_in_the_same_request_sees_the_new_session() -> None:
    store = _store(FakeClock())
    request = _request()
    session = store.create(request, WipeRecorder())
    assert store.get(request) is session


def test_a_full_store_evicts_its_least_recently_used_session() -> None:
    # Given a store with room for two, both used
    clock = FakeClock()
    store = _store(clock, max_sessions=2)
    first, second = WipeRecorder(), WipeRecorder()
    old = store.create(_request(), first)
    store.create(_request(), second)
    clock.advance(1)
    assert store.get(_request(old.id)) is old  # the older one was used last
    # When a third logs in, nobody is refused: the least recently used session goes, wiped
    third = store.create(_request(), WipeRecorder())
    assert len(store) == 2 and second.wiped and not first.wiped
    assert store.get(_request(old.id)) is old and store.get(_request(third.id)) is third


def test_a_group_keeps_at_most_its_cap_and_loses_the_oldest_first() -> None:
    # Given sessions of one report (a receipt logged in three times) and one of another report
    store = _store(FakeClock(), max_per_group=3)
    mine = [WipeRecorder() for _ in range(3)]
    ids = [store.create(_request(), p, group="report-a").id for p in mine]
    other = store.create(_request(), WipeRecorder(), group="report-b")
    # When the same receipt logs in a fourth time, kept alive all along
    for sid in ids:
        store.get(_request(sid))
    newest = store.create(_request(), WipeRecorder(), group="report-a")
    # Then its oldest session ended (wiped), the other report's session is untouched
    assert mine[0].wiped and not mine[1].wiped and not mine[2].wiped
    assert store.get(_request(ids[0])) is None
    assert store.get(_request(other.id)) is other and store.get(_request(newest.id)) is newest
    assert len(store) == 4


def test_one_group_cannot_push_out_the_sessions_of_others() -> None:
    # Given a store of 10 with 7 people logged in and one receipt's sessions
    store = _store(FakeClock(), max_sessions=10, max_per_group=3)
    others = [store.create(_request(), WipeRecorder(), group=f"r{i}") for i in range(7)]
    # When one receipt logs in a thousand times
    for _ in range(1000):
        store.create(_request(), WipeRecorder(), group="flood")
    # Then everyone else is still logged in
    assert all(store.get(_request(s.id)) is s for s in others)
    assert len(store) == 10


def test_end_group_ends_every_session_of_an_account_but_the_one_kept() -> None:
    store = _store(FakeClock(), max_per_group=5)
    payloads = [WipeRecorder() for _ in range(3)]
    sessions = [store.create(_request(), p, group="alice") for p in payloads]
    bob = store.create(_request(), WipeRecorder(), group="bob")
    assert store.end_group("alice", keep=sessions[1]) == 2
    assert payloads[0].wiped and payloads[2].wiped and not payloads[1].wiped
    assert store.get(_request(sessions[1].id)) is sessions[1] and store.get(_request(bob.id)) is bob
    assert store.end_group("nobody") == 0


def test_absolute_lifetime_ends_a_session_however_active() -> None:
    # Given a session with a 60 s idle timeout and a 300 s lifetime
    clock = FakeClock()
    store = _store(clock, absolute_seconds=300)
    payload = WipeRecorder()
    session = store.create(_request(), payload)
    # When it is used every 50 s, it lives until its lifetime is over, and not a moment longer
    for _ in range(5):
        clock.advance(50)
        assert store.get(_request(session.id)) is session
    clock.advance(50)
    assert store.get(_request(session.id)) is None and payload.wiped


def test_absolute_lifetime_is_swept_too() -> None:
    clock = FakeClock()
    store = _store(clock, absolute_seconds=100)
    session = store.create(_request(), WipeRecorder())
    for _ in range(3):
        clock.advance(30)
        assert store.get(_request(session.id)) is session
    clock.advance(15)  # used 15 s ago, but 105 s old
    assert store.sweep() == 1 and len(store) == 0


@pytest.mark.parametrize("cookie", ["short", "x" * 43 + "y", "!" * 43])
def test_malformed_cookie_values_are_ignored(cookie: str) -> None:
    store = _store(FakeClock())
    assert store.get(_request(cookie)) is None


def test_verify_csrf_compares_the_whole_token() -> None:
    store = _store(FakeClock())
    session = store.create(_request(), WipeRecorder())
    store.verify_csrf(session, session.csrf_token)
    with pytest.raises(CsrfError):
        store.verify_csrf(session, session.csrf_token[:-1])
    with pytest.raises(CsrfError):
        store.verify_csrf(session, session.csrf_token + "x")


def test_session_repr_keeps_secrets_out_of_logs() -> None:
    store = _store(FakeClock())
    session = store.create(_request(), WipeRecorder(b"very-secret-key"))
    text = repr(session)
    assert session.id not in text and session.csrf_token not in text and "very-secret" not in text


def test_a_failing_wipe_does_not_stop_the_sweep() -> None:
    class Broken(WipeRecorder):
        def wipe(self) -> None:
            raise RuntimeError("boom")

    clock = FakeClock()
    store = _store(clock)
    store.create(_request(), Broken())
    fine = WipeRecorder()
    store.create(_request(), fine)
    clock.advance(61)
    assert store.sweep() == 2
    assert fine.wiped and len(store) == 0
