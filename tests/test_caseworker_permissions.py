"""Permission boundaries of the caseworker app, over real HTTP.

A report granted only to alice: bob cannot open it, download from it or act on it, whatever URL
he tries, and every refusal looks exactly like a report that never existed. The admin role reads
no report it was not granted. Every POST form is refused without the session's CSRF token.
"""

from __future__ import annotations

import re

import aiohttp
import pytest

from dropbox.ids import new_id
from dropbox.storage import PendingMembership
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.data_checks import leftover_staged
from tests.support.domain import only_for, submit  # noqa: F401

REPORT_POSTS = {
    "notes": {"text": "note"}, "status": {"status": "closed"}, "deadline": {"deadline": "acknowledgement"},
    "grant": {"caseworker": "0" * 32}, "retention": {"days": "5"}, "delete": {"confirm": "yes"},
}


def _without_tokens(page: str) -> str:
    return re.sub(r'value="[^"]*"', "", page)


async def _snapshot(site: Site, report_id: str) -> tuple[object, ...]:
    store = site.services.store
    return (await store.report(report_id), await store.notes(report_id), await store.messages(report_id),
            sorted(await store.granted_caseworkers(report_id)), [f.id for f in await store.files(report_id)])


async def _reply(agent: object, path: str, token: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("csrf_token", token)
    form.add_field("text", "a reply")
    form.add_field("files", b"file bytes", filename="f.txt", content_type="text/plain")
    return await agent.client.post(path, data=form, allow_redirects=False)  # type: ignore[attr-defined,no-any-return]


async def test_a_colleague_cannot_open_download_or_act_on_an_ungranted_report(site: Site) -> None:
    svc = site.services
    unit = await only_for(svc, "alice")
    secret = await submit(svc, channel_id=unit, text="only-for-alice-canary", files={"a.txt": b"alice's file"})
    own = await submit(svc, text="bob may read this")  # default channel: bob is a member
    secret_file = (await svc.store.files(secret.report_id))[0].id
    bob = await site.signed_in("bob")
    before = await _snapshot(site, secret.report_id)
    unknown = "0123456789abcdef" * 2

    async def seen(path: str) -> str:
        response = await bob.get(path)
        assert response.status == 404, path
        return _without_tokens((await response.text()).replace(secret.report_id, unknown))

    for suffix in ("", "/delete", f"/files/{secret_file}"):
        # No difference between ungranted and unknown: the same 404 page, byte for byte.
        assert await seen(f"/en/reports/{secret.report_id}{suffix}") == await seen(f"/en/reports/{unknown}{suffix}")
    for report_id in (secret.report_id, unknown):
        for action, data in REPORT_POSTS.items():
            response = await bob.post(f"/en/reports/{report_id}/{action}", data)
            assert response.status == 404, action
        assert (await _reply(bob, f"/en/reports/{report_id}/reply", bob.csrf)).status == 404

    # alice's file asked for under the report bob may read
    response = await bob.get(f"/en/reports/{own.report_id}/files/{secret_file}")
    assert response.status == 404
    assert "only-for-alice-canary" not in await (await bob.get(f"/en/reports/{own.report_id}")).text()
    listing = await bob.text("/en/reports")
    assert secret.report_id[:8] not in listing and own.report_id[:8] in listing
    assert await _snapshot(site, secret.report_id) == before
    assert leftover_staged(site.config) == []


async def test_malformed_ids_are_plain_404s(site: Site) -> None:
    bob = await site.signed_in("bob")
    for path in ("/en/reports/..%2F..%2Fetc", "/en/reports/ABCDEF0123456789ABCDEF0123456789",
                 "/en/reports/" + "a" * 33, "/en/reports/" + "a" * 32 + "/files/..%2Fx"):
        assert (await bob.get(path)).status == 404, path


async def test_the_admin_role_reads_no_report_it_was_not_granted(site: Site) -> None:
    svc = site.services
    unit = await only_for(svc, "bob")
    report = await submit(svc, channel_id=unit, text="bob-only-canary", files={"b.txt": b"b"})
    file_id = (await svc.store.files(report.report_id))[0].id
    alice = await site.signed_in("alice")  # the admin
    assert (await site.services.store.caseworker_by_name("alice")).is_admin

    assert (await alice.get(f"/en/reports/{report.report_id}")).status == 404
    assert (await alice.get(f"/en/reports/{report.report_id}/files/{file_id}")).status == 404
    assert (await alice.post(f"/en/reports/{report.report_id}/grant",
                             {"caseworker": (await svc.store.caseworker_by_name("alice")).id})).status == 404
    for path in ("/en/reports", "/en/admin/audit", "/en/admin/channels", "/en/admin/caseworkers"):
        assert "bob-only-canary" not in await alice.text(path)
    assert report.report_id[:8] not in await alice.text("/en/reports")


async def test_admin_pages_do_not_exist_for_other_caseworkers(site: Site) -> None:
    bob = await site.signed_in("bob")
    carol_id = (await site.services.store.caseworker_by_name("carol")).id
    for path in ("/en/admin/channels", "/en/admin/channels/default", "/en/admin/caseworkers", "/en/admin/audit"):
        assert (await bob.get(path)).status == 404, path
    for path, data in (("/en/admin/channels", {"id": "x", "name": "x", "retention_days": "5"}),
                       ("/en/admin/channels/default", {"name": "taken over", "retention_days": "5"}),
                       ("/en/admin/caseworkers", {"name": "mallory"}),
                       (f"/en/admin/caseworkers/{carol_id}", {"action": "disable"})):
        assert (await bob.post(path, data)).status == 404, path
    assert "Audit log" not in await bob.text("/en/reports")
    assert (await site.services.store.channel("default")).name != "taken over"
    assert not (await site.services.store.caseworker(carol_id)).disabled


async def test_signed_out_visitors_are_sent_to_the_login_page_everywhere(site: Site) -> None:
    report = await submit(site.services)
    anonymous = await site.agent()
    for path in ("/en/reports", f"/en/reports/{report.report_id}", "/en/settings", "/en/settings/totp",
                 "/en/settings/totp/qr.png", "/en/admin/audit"):
        response = await anonymous.get(path)
        assert response.status == 303 and response.headers["Location"] == "/en/login", path
    response = await anonymous.post(f"/en/reports/{report.report_id}/status", {"status": "closed"}, csrf=False)
    assert response.status == 303 and (await site.services.store.report(report.report_id)).status == "new"


def _post_routes(site: Site) -> list[str]:
    """Every POST route of the app, as a concrete path: none can be added without being checked."""
    paths = []
    for route in site.app.router.routes():
        if route.method != "POST":
            continue
        pattern = route.resource.canonical  # type: ignore[union-attr]
        paths.append(pattern)
    return sorted(set(paths))


@pytest.mark.parametrize("token", [None, "", "forged-token-" + "x" * 30])
async def test_every_post_form_is_refused_without_the_session_token(site: Site, token: str | None) -> None:
    report = await submit(site.services, files={"a.txt": b"a"})
    alice = await site.signed_in("alice")
    carol_id = (await site.services.store.caseworker_by_name("carol")).id
    pending = PendingMembership(id=new_id(), channel_id="default", caseworker_id=carol_id, member=False,
                                requested_by=carol_id, requested_day="2026-01-01")
    await site.services.store.add_pending_membership(pending)
    values = {"lang": "en", "report_id": report.report_id, "channel_id": "default", "caseworker_id": carol_id,
              "pending_id": pending.id}
    before = await _snapshot(site, report.report_id)
    audit_before = await site.services.store.audit_count()
    checked = []
    for pattern in _post_routes(site):
        if pattern.endswith("/login"):
            continue  # the login form has its own pre-session token (test_caseworker_login)
        path = re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values[m.group(1)], pattern)
        form = {"text": "x", "status": "closed", "deadline": "feedback", "caseworker": carol_id, "days": "3",
                "confirm": "yes", "name": "mallory", "id": "evil", "retention_days": "3", "action": "disable",
                "current": "x", "new": "y" * 20, "repeat": "y" * 20, "email": "a@b.cd", "code": "123456"}
        if token is not None:
            form["csrf_token"] = token
        if pattern.endswith(("/reply", "/oral")):  # the multipart forms (token as the first part)
            response = await _reply(alice, path, token or "")
        else:
            response = await alice.post(path, form, csrf=False)
        assert response.status == 403, path
        assert "The form has expired" in await response.text()
        checked.append(pattern)
    assert len(checked) >= 17
    assert await _snapshot(site, report.report_id) == before
    assert await site.services.store.audit_count() == audit_before
    assert not (await site.services.store.caseworker(carol_id)).disabled
    assert [c.id for c in await site.services.store.channels()] == ["default"]
    assert await site.services.store.pending_memberships() == [pending]
    assert (await alice.get("/en/reports")).status == 200  # still signed in: logout was refused too

