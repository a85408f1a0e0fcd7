"""Who reads future reports (M4): every change of a channel's members is audited and shown once to
the channel's members at their next login, and an admin's change of their own membership needs a
second admin where there is one. Over HTTP, against the real app."""

from __future__ import annotations

import aiohttp

from tests.support.caseworker_site import Agent, Site, site_fixture  # noqa: F401
from tests.support.domain import only_for  # noqa: F401


async def _save_members(admin: Agent, channel_id: str, *names_ids: str) -> aiohttp.ClientResponse:
    form = [("csrf_token", admin.csrf), ("name", f"Unit {channel_id}"), ("retention_days", "30")]
    form += [("members", i) for i in names_ids]
    return await admin.client.post(f"/en/admin/channels/{channel_id}", data=form, allow_redirects=False)


async def _ids(site: Site, *names: str) -> list[str]:
    return [(await site.services.store.caseworker_by_name(n)).id for n in names]


async def _members(site: Site, channel_id: str) -> set[str]:
    return {c.name for c in await site.services.store.channel_members(channel_id)}


async def test_a_changed_membership_is_shown_once_to_every_member_and_audited(site: Site) -> None:
    # Given a unit whose only member is bob, and alice, an admin with no other admin beside her
    unit = await only_for(site.services, "bob")
    alice = await site.signed_in("alice")
    bob_id, carol_id = await _ids(site, "bob", "carol")
    # When alice puts carol in and takes bob out
    response = await _save_members(alice, unit, carol_id)
    assert response.status == 303 and await _members(site, unit) == {"carol"}
    # Then bob, at his next login, is told both, once
    bob = await site.signed_in("bob")
    assert "carol was added to the channel Unit unit by alice" in bob.landing
    assert "bob was removed from the channel Unit unit by alice" in bob.landing
    again = await site.signed_in("bob")
    assert "was added to the channel" not in again.landing
    # and carol is told she was added; the audit log has both changes
    carol = await site.signed_in("carol")
    assert "carol was added to the channel Unit unit by alice" in carol.landing
    audit = await alice.text("/en/admin/audit")
    assert "Added carol to the channel unit" in audit and "Removed bob from the channel unit" in audit
    # What is stored is names and a channel, nothing else
    assert {e.detail for e in await site.services.store.audit_log() if e.action.startswith("member_")} == {
        f"{unit}/{carol_id}", f"{unit}/{bob_id}"}


async def test_an_admins_own_membership_waits_for_a_second_admin(site: Site) -> None:
    # Given two admins, alice and bob, and a unit where only carol reads
    store = site.services.store
    alice_id, bob_id, carol_id = await _ids(site, "alice", "bob", "carol")
    await store.update_caseworker(bob_id, is_admin=1)
    unit = await only_for(site.services, "carol")
    alice = await site.signed_in("alice")
    # When alice adds herself
    await _save_members(alice, unit, carol_id, alice_id)
    # Then she is not a member yet: the change waits, and she cannot approve it herself
    assert await _members(site, unit) == {"carol"}
    page = await alice.text("/en/admin/channels")
    assert "waits for another admin" in page and "alice asks to join unit" in page
    assert 'value="approve"' not in page
    [pending] = await store.pending_memberships()
    await alice.post(f"/en/admin/memberships/{pending.id}", {"action": "approve"})
    assert "Another admin must approve" in await alice.text("/en/admin/channels")
    assert await _members(site, unit) == {"carol"}
    # When bob approves, she is in, carol is told at her next login, the audit log has it all
    bob = await site.signed_in("bob")
    assert 'value="approve"' in await bob.text("/en/admin/channels")
    done = await bob.post(f"/en/admin/memberships/{pending.id}", {"action": "approve"})
    assert done.status == 303 and await _members(site, unit) == {"alice", "carol"}
    assert "alice was added to the channel Unit unit by alice" in (await site.signed_in("carol")).landing
    actions = [e.action for e in await store.audit_log()]
    assert {"membership_requested", "membership_approved", "member_added"} <= set(actions)
    assert (await bob.post(f"/en/admin/memberships/{pending.id}", {"action": "approve"})).status == 404


async def test_a_rejected_change_is_not_made_and_a_lone_admins_change_applies_at_once(site: Site) -> None:
    store = site.services.store
    alice_id, bob_id, carol_id = await _ids(site, "alice", "bob", "carol")
    unit = await only_for(site.services, "carol")
    await store.update_caseworker(bob_id, is_admin=1)
    alice = await site.signed_in("alice")
    await _save_members(alice, unit, carol_id, alice_id)
    [pending] = await store.pending_memberships()
    bob = await site.signed_in("bob")
    await bob.post(f"/en/admin/memberships/{pending.id}", {"action": "reject"})
    assert await _members(site, unit) == {"carol"} and await store.pending_memberships() == []
    assert "membership_rejected" in [e.action for e in await store.audit_log()]
    # With no other active admin, the change applies at once, still audited and told to carol
    await store.update_caseworker(bob_id, is_admin=0)
    await _save_members(alice, unit, carol_id, alice_id)
    assert await _members(site, unit) == {"alice", "carol"}
    assert "alice was added to the channel Unit unit by alice" in (await site.signed_in("carol")).landing


async def test_a_new_account_put_in_a_channel_is_shown_to_its_members(site: Site) -> None:
    # An admin making an account they control (a puppet) and putting it in a channel is seen
    alice = await site.signed_in("alice")
    await alice.post("/en/admin/caseworkers", {"name": "mallory", "channels": "default"})
    assert "mallory was added to the channel" in (await site.signed_in("bob")).landing
    assert "Added mallory to the channel default" in await alice.text("/en/admin/audit")
