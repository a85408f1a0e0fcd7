"""The admin role over HTTP: channels, accounts, the audit log (dropbox.channels itself: test_channels.py)."""

from __future__ import annotations

import re

from dropbox import channels
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.domain import submit  # noqa: F401

CANARY = "CANARY-admin-9e2f"


async def test_admin_adds_and_edits_a_channel_with_members_and_questions(site: Site) -> None:
    alice = await site.signed_in("alice")
    store = site.services.store
    bob_id = (await store.caseworker_by_name("bob")).id
    carol_id = (await store.caseworker_by_name("carol")).id
    page = await alice.text("/en/admin/channels")
    assert "Add a channel" in page and "<script" not in page

    added = await alice.post("/en/admin/channels", {
        "id": "health-agency", "name": "Health agency", "description": "Reports about the health agency",
        "questions": "Which unit?\n\nWhen did it happen?\n", "retention_days": "120", "members": bob_id})
    assert added.status == 303 and "The channel was added." in await alice.text("/en/admin/channels")
    channel = await store.channel("health-agency")
    assert (channel.name, channel.retention_days, channel.is_default) == ("Health agency", 120, False)
    first = channels.questions_of(channel)
    assert [q.labels[""] for q in first] == ["Which unit?", "When did it happen?"]
    assert (await store.channel_memberships())["health-agency"] == {bob_id}

    edit = await alice.text("/en/admin/channels/health-agency")
    assert "Which unit?\nWhen did it happen?</textarea>" in edit
    await alice.post("/en/admin/channels/health-agency", {
        "name": "Health agency", "description": "", "questions": "When did it happen?\nWho else knows?",
        "retention_days": "60", "members": [bob_id, carol_id]})
    changed = await store.channel("health-agency")
    second = channels.questions_of(changed)
    # The unchanged question keeps its id, so earlier answers keep their label.
    assert second[0] == first[1] and second[1].labels[""] == "Who else knows?"
    assert second[1].id not in {q.id for q in first}
    assert changed.retention_days == 60
    assert (await store.channel_memberships())["health-agency"] == {bob_id, carol_id}

    for bad in ({"id": "Bad Id", "name": "x", "retention_days": "5"}, {"id": "ok", "name": "", "retention_days": "5"},
                {"id": "ok", "name": "x", "retention_days": "0"}, {"id": "health-agency", "name": "x",
                                                                    "retention_days": "5"}):
        response = await alice.post("/en/admin/channels", bad)
        assert response.status == 303
        assert 'class="error-message flash"' in await alice.text("/en/admin/channels"), bad
    assert (await alice.get("/en/admin/channels/nope")).status == 404
    assert (await alice.post("/en/admin/channels/nope", {"name": "x", "retention_days": "5"})).status == 404


async def test_making_a_channel_default_moves_the_default(site: Site) -> None:
    alice = await site.signed_in("alice")
    await alice.post("/en/admin/channels", {"id": "second", "name": "Second", "retention_days": "30",
                                            "default": "1"})
    by_id = {c.id: c for c in await site.services.store.channels()}
    assert by_id["second"].is_default and not by_id["default"].is_default
    # Saving the default channel without the box keeps it the default.
    await alice.post("/en/admin/channels/second", {"name": "Second", "retention_days": "30"})
    assert (await site.services.store.channel("second")).is_default


async def test_admin_adds_a_caseworker_who_sees_nothing_until_granted(site: Site) -> None:
    report = await submit(site.services, text="existing report")
    alice = await site.signed_in("alice")
    response = await alice.post("/en/admin/caseworkers", {"name": "dave", "channels": "default"})
    page = await response.text()
    assert response.status == 200 and "shown only this once" in page
    passphrase = re.search(r'<code class="receipt-code">([^<]+)</code>', page).group(1)  # type: ignore[union-attr]
    assert len(passphrase.split()) == 7
    assert passphrase not in repr(await site.services.store.audit_log())

    dave = await site.agent()
    assert (await dave.login("dave", passphrase=passphrase)).status == 303  # type: ignore[arg-type]
    # The admin saw that passphrase: until dave chose his own, every page leads to the change form (M3)
    for path in ("/en/reports", f"/en/reports/{report.report_id}", "/en/settings/totp", "/en/admin/audit"):
        assert (await dave.get(path)).headers["Location"] == "/en/settings#passphrase", path
    form = await dave.text("/en/settings")
    assert "Choose your own before you continue" in form and 'id="totp"' not in form
    refused = await dave.post("/en/settings/email", {"email": "dave@example.org"})
    assert refused.headers["Location"] == "/en/settings#passphrase"
    own = "dave picks seven unrelated words like velvet"
    changed = await dave.post("/en/settings/passphrase", {"current": passphrase, "new": own, "repeat": own})
    assert changed.headers["Location"] == "/en/reports"
    assert not (await site.services.store.caseworker_by_name("dave")).must_change_passphrase
    assert report.report_id[:8] not in await dave.text("/en/reports")
    assert (await dave.get(f"/en/reports/{report.report_id}")).status == 404
    assert (await dave.get("/en/admin/audit")).status == 404  # not an admin
    # New reports in the default channel are sealed to dave as well.
    later = await submit(site.services, text="new report")
    assert "new report" in await dave.text(f"/en/reports/{later.report_id}")

    for bad in ({"name": "dave"}, {"name": "not a name!"}):
        await alice.post("/en/admin/caseworkers", bad)
        assert 'class="error-message flash"' in await alice.text("/en/admin/caseworkers")
    assert (await alice.post("/en/admin/caseworkers", {"name": "erin", "channels": "nope"})).status == 400


async def test_account_actions_and_the_self_lockout_guard(site: Site) -> None:
    alice = await site.signed_in("alice")
    store = site.services.store
    bob = await store.caseworker_by_name("bob")
    alice_id = (await store.caseworker_by_name("alice")).id
    path = f"/en/admin/caseworkers/{bob.id}"

    await alice.post(path, {"action": "disable"})
    assert (await store.caseworker(bob.id)).disabled
    assert (await (await site.agent()).login("bob")).status == 400
    await alice.post(path, {"action": "enable"})
    assert (await (await site.agent()).login("bob")).status == 303
    await alice.post(path, {"action": "make_admin"})
    assert (await store.caseworker(bob.id)).is_admin
    await alice.post(path, {"action": "remove_admin"})
    assert not (await store.caseworker(bob.id)).is_admin
    await store.update_caseworker(bob.id, totp_sealed=b"sealed state")
    await alice.post(path, {"action": "reset_totp"})
    assert (await store.caseworker(bob.id)).totp_sealed is None

    for action in ("disable", "remove_admin"):
        await alice.post(f"/en/admin/caseworkers/{alice_id}", {"action": action})
        assert "You cannot disable your own account" in await alice.text("/en/admin/caseworkers")
    me = await store.caseworker(alice_id)
    assert me.is_admin and not me.disabled
    assert (await alice.post(path, {"action": "explode"})).status == 400
    assert (await alice.post(f"/en/admin/caseworkers/{'e' * 32}", {"action": "disable"})).status == 404


async def test_a_revoked_admin_loses_the_admin_pages_at_the_next_request(site: Site) -> None:
    alice = await site.signed_in("alice")
    bob = await site.signed_in("bob")
    bob_id = (await site.services.store.caseworker_by_name("bob")).id
    await alice.post(f"/en/admin/caseworkers/{bob_id}", {"action": "make_admin"})
    assert (await bob.get("/en/admin/audit")).status == 200
    await alice.post(f"/en/admin/caseworkers/{bob_id}", {"action": "remove_admin"})
    assert (await bob.get("/en/admin/audit")).status == 404


async def test_audit_log_says_who_did_what_to_which_report_and_nothing_more(site: Site) -> None:
    report = await submit(site.services, text=CANARY, files={f"{CANARY}.txt": b"x"})
    bob = await site.signed_in("bob")
    await bob.text(f"/en/reports/{report.report_id}")
    await bob.post(f"/en/reports/{report.report_id}/notes", {"text": CANARY})
    await bob.post(f"/en/reports/{report.report_id}/status", {"status": "in_progress"})
    await bob.post("/en/settings/email", {"email": "bob@example.org"})
    alice = await site.signed_in("alice")

    page = await alice.text("/en/admin/audit")
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td><code>([^<]*)</code>", page)
    assert ("bob", "Added an internal note", report.report_id[:8]) in [(r[1], r[2], r[3]) for r in rows]
    assert ("bob", "Set the status to In progress", report.report_id[:8]) in [(r[1], r[2], r[3]) for r in rows]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00", r[0]) for r in rows)
    assert CANARY not in page and "example.org" not in page
    danish = await alice.text("/da/admin/audit")
    assert "Satte status til I gang" in danish
