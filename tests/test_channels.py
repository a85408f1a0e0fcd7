"""dropbox/channels.py on its own: the admin role's domain functions over a real SQLite file.

The same functions behind the admin pages are tested over HTTP in test_caseworker_admin.py and
test_caseworker_membership.py; here each promise of the module is held to directly.
"""

from __future__ import annotations

import json

import pytest

from dropbox import accounts, channels
from dropbox.config import Config
from dropbox.kdf_pool import KdfPool
from dropbox.storage import Caseworker, Channel, Store
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.installs import STAFF


@pytest.fixture
async def staff(store: Store, kdf: KdfPool, config: Config) -> dict[str, Caseworker]:
    """alice (admin), bob and carol, members of the default channel."""
    return {a.name: await accounts.add_caseworker(store=store, kdf=kdf, config=config, name=a.name,
                                                  passphrase=a.passphrase, is_admin=a.admin)
            for a in STAFF}


def form(**changes: object) -> channels.ChannelForm:
    fields: dict[str, object] = {"name": "Unit", "description": "", "questions": "", "retention_days": 30,
                                 "make_default": False, "member_ids": frozenset()}
    return channels.ChannelForm(**{**fields, **changes})  # type: ignore[arg-type]


async def actions(store: Store) -> list[str]:
    return [e.action for e in reversed(await store.audit_log())]


async def test_channel_domain_refuses_non_admins_and_bad_input(site: Site) -> None:
    store = site.services.store
    bob = await store.caseworker_by_name("bob")
    form = channels.ChannelForm(name="x", description="", questions="", retention_days=5, make_default=False,
                                member_ids=frozenset())
    with pytest.raises(channels.NotAdmin):
        await channels.add_channel(store=store, actor_id=bob.id, channel_id="x", form=form)
    with pytest.raises(channels.NotAdmin):
        await channels.set_disabled(store=store, actor_id=bob.id, caseworker_id=bob.id, disabled=True)
    alice = await store.caseworker_by_name("alice")
    with pytest.raises(channels.InvalidQuestionList):
        await channels.add_channel(store=store, actor_id=alice.id, channel_id="x",
                                   form=form.__class__(**{**form.__dict__, "questions": "q\n" * 31}))
    with pytest.raises(channels.InvalidChannel):
        await channels.add_channel(store=store, actor_id=alice.id, channel_id="x",
                                   form=form.__class__(**{**form.__dict__, "retention_days": 0}))
    with pytest.raises(channels.UnknownAccount):
        await channels.add_channel(store=store, actor_id=alice.id, channel_id="y",
                                   form=form.__class__(**{**form.__dict__, "member_ids": frozenset({"z" * 32})}))


def test_questions_are_edited_as_lines_or_as_json() -> None:
    def channel(questions: str) -> Channel:
        return Channel(id="c", name="c", description="", questions=questions, retention_days=1, is_default=False)

    assert channels.questions_of(channel("not json")) == []
    assert channels.questions_of(channel('[{"id": "x", "text": "wrong key"}]')) == []
    lines = channels.questions_json("Plain?\n\nPlain?\n")
    made = json.loads(lines)
    assert [q["label"] for q in made] == ["Plain?", "Plain?"] and made[0]["id"] != made[1]["id"]
    assert channels.questions_for_editing(channel(lines)) == "Plain?\nPlain?"
    rich = '[{"id": "when", "label": {"en": "When?", "da": "Hvornår?"}, "required": true, "kind": "textarea"}]'
    assert json.loads(channels.questions_json(rich)) == json.loads(rich)
    assert json.loads(channels.questions_for_editing(channel(rich))) == json.loads(rich)  # shown as JSON
    assert channels.questions_json("[]") == "[]"
    with pytest.raises(channels.InvalidQuestionList, match="unknown keys"):
        channels.questions_json('[{"id": "a", "label": "x", "colour": "red"}]')


async def test_a_question_kept_in_an_edit_keeps_its_id_so_given_answers_keep_their_label(
    store: Store, staff: dict[str, Caseworker]
) -> None:
    # Given a channel asking two questions
    alice = staff["alice"].id
    await channels.add_channel(store=store, actor_id=alice, channel_id="unit", form=form(questions="Where?\nWhen?"))
    before = {q.labels[""]: q.id for q in channels.questions_of(await store.channel("unit"))}
    # When the admin drops one, keeps one and adds one
    await channels.update_channel(store=store, actor_id=alice, channel_id="unit",
                                  form=form(questions="When?\nWho?"))
    after = {q.labels[""]: q.id for q in channels.questions_of(await store.channel("unit"))}
    # Then the kept question has the id the answers already given refer to, the new one a new id
    assert after["When?"] == before["When?"]
    assert after["Who?"] not in before.values() and set(after) == {"When?", "Who?"}


@pytest.mark.parametrize(("channel_id", "changes", "error"), [
    ("Unit One", {}, channels.InvalidChannel),  # not a lower-case slug
    ("-unit", {}, channels.InvalidChannel),
    ("x" * 41, {}, channels.InvalidChannel),
    ("unit", {"name": "   "}, channels.InvalidChannel),
    ("unit", {"retention_days": 3651}, channels.InvalidChannel),
    ("unit", {"cleaning_policy": "shred"}, channels.InvalidChannel),
    ("default", {}, channels.ChannelExists),
])
async def test_a_bad_channel_is_refused_and_nothing_is_stored(
    store: Store, staff: dict[str, Caseworker], channel_id: str, changes: dict[str, object], error: type[Exception]
) -> None:
    before = await store.channels()
    with pytest.raises(error):
        await channels.add_channel(store=store, actor_id=staff["alice"].id, channel_id=channel_id, form=form(**changes))
    assert await store.channels() == before
    assert "channel_added" not in await actions(store)


async def test_the_country_cap_on_retention_holds_for_new_and_changed_channels(
    store: Store, staff: dict[str, Caseworker]
) -> None:
    alice = staff["alice"].id
    with pytest.raises(channels.InvalidChannel):
        await channels.add_channel(store=store, actor_id=alice, channel_id="se", form=form(retention_days=731),
                                   max_retention_days=730)
    await channels.add_channel(store=store, actor_id=alice, channel_id="se", form=form(retention_days=730),
                               max_retention_days=730)
    with pytest.raises(channels.InvalidChannel):
        await channels.update_channel(store=store, actor_id=alice, channel_id="se", form=form(retention_days=800),
                                      max_retention_days=730)
    assert (await store.channel("se")).retention_days == 730


async def test_the_default_channel_stays_default_until_another_is_made_default(
    store: Store, staff: dict[str, Caseworker]
) -> None:
    alice = staff["alice"].id
    await channels.update_channel(store=store, actor_id=alice, channel_id="default", form=form(make_default=False))
    assert (await store.channel("default")).is_default
    await channels.add_channel(store=store, actor_id=alice, channel_id="unit", form=form(make_default=True))
    assert [c.id for c in await store.channels() if c.is_default] == ["unit"]
    with pytest.raises(channels.UnknownChannel):
        await channels.update_channel(store=store, actor_id=alice, channel_id="gone", form=form())


async def test_a_role_removed_a_moment_ago_no_longer_counts(store: Store, staff: dict[str, Caseworker]) -> None:
    # Given a second admin, disabled by the first
    alice, bob = staff["alice"].id, staff["bob"].id
    await channels.set_admin(store=store, actor_id=alice, caseworker_id=bob, is_admin=True)
    await channels.set_disabled(store=store, actor_id=alice, caseworker_id=bob, disabled=True)
    # Then bob can do nothing of an admin's any more, and an unknown actor neither
    for actor in (bob, "0" * 32):
        with pytest.raises(channels.NotAdmin):
            await channels.add_channel(store=store, actor_id=actor, channel_id="unit", form=form())
        with pytest.raises(channels.NotAdmin):
            await channels.set_disabled(store=store, actor_id=actor, caseworker_id=alice, disabled=True)
    assert await actions(store) == ["admin_granted", "caseworker_disabled"]


async def test_an_admin_cannot_lock_themselves_out(store: Store, staff: dict[str, Caseworker]) -> None:
    alice = staff["alice"].id
    with pytest.raises(channels.SelfLockout):
        await channels.set_disabled(store=store, actor_id=alice, caseworker_id=alice, disabled=True)
    with pytest.raises(channels.SelfLockout):
        await channels.set_admin(store=store, actor_id=alice, caseworker_id=alice, is_admin=False)
    with pytest.raises(channels.UnknownAccount):
        await channels.set_admin(store=store, actor_id=alice, caseworker_id="0" * 32, is_admin=True)
    me = await store.caseworker(alice)
    assert me.is_admin and not me.disabled
    assert await actions(store) == []


async def test_members_change_audited_and_told_to_everyone_involved_but_the_actor(
    store: Store, staff: dict[str, Caseworker]
) -> None:
    alice, bob, carol = (staff[n].id for n in ("alice", "bob", "carol"))
    # Given a unit whose only member is bob
    await channels.add_channel(store=store, actor_id=alice, channel_id="unit", form=form(member_ids=frozenset({bob})))
    assert [m.id for m in await store.channel_members("unit")] == [bob]
    # When alice puts carol in instead
    await channels.update_channel(store=store, actor_id=alice, channel_id="unit",
                                  form=form(member_ids=frozenset({carol})))
    # Then both changes are in the audit log, and bob and carol are each told of both; alice is told nothing
    assert [m.id for m in await store.channel_members("unit")] == [carol]
    assert sorted((await actions(store))[-2:]) == ["member_added", "member_removed"]  # one change, in no set order
    for person in (bob, carol):
        told = {(n.subject_id, n.member) for n in await store.take_membership_notices(person)
                if n.channel_id == "unit" and n.subject_id in (bob, carol) and n.actor_id == alice}
        assert {(carol, True), (bob, False)} <= told, person
    assert [n for n in await store.take_membership_notices(alice) if n.channel_id == "unit"] == []


async def test_an_admins_own_membership_waits_for_a_second_admin_who_alone_may_approve_it(
    store: Store, staff: dict[str, Caseworker]
) -> None:
    alice, bob = staff["alice"].id, staff["bob"].id
    await channels.set_admin(store=store, actor_id=alice, caseworker_id=bob, is_admin=True)
    await channels.add_channel(store=store, actor_id=alice, channel_id="unit", form=form())
    # When alice puts herself in the unit
    saved = await channels.update_channel(store=store, actor_id=alice, channel_id="unit",
                                          form=form(member_ids=frozenset({alice})))
    # Then it waits, and she cannot approve it herself
    assert saved.awaiting_approval
    assert await store.channel_members("unit") == []
    (pending,) = await store.pending_memberships()
    with pytest.raises(channels.OwnRequest):
        await channels.settle_pending(store=store, actor_id=alice, pending_id=pending.id, approve=True)
    with pytest.raises(channels.UnknownPending):
        await channels.settle_pending(store=store, actor_id=bob, pending_id="0" * 32, approve=True)
    # And when bob approves it, it is made, as alice's change
    await channels.settle_pending(store=store, actor_id=bob, pending_id=pending.id, approve=True)
    assert [m.id for m in await store.channel_members("unit")] == [alice]
    assert await store.pending_memberships() == []
    assert (await actions(store))[-3:] == ["membership_requested", "member_added", "membership_approved"]


async def test_a_new_account_has_a_generated_passphrase_it_must_change_and_only_the_channels_given(
    store: Store, kdf: KdfPool, config: Config, staff: dict[str, Caseworker]
) -> None:
    alice = staff["alice"].id
    await channels.add_channel(store=store, actor_id=alice, channel_id="unit", form=form())
    cw, passphrase = await channels.add_account(store=store, kdf=kdf, config=config, actor_id=alice, name="dave",
                                                is_admin=False, channel_ids=["unit"])
    session = await accounts.login(store=store, kdf=kdf, config=config, name="dave", passphrase=passphrase)
    assert session.caseworker.id == cw.id and session.caseworker.must_change_passphrase
    assert {c for c, members in (await store.channel_memberships()).items() if cw.id in members} == {"unit"}
    with pytest.raises(channels.AccountExists):
        await channels.add_account(store=store, kdf=kdf, config=config, actor_id=alice, name="dave", is_admin=False,
                                   channel_ids=[])
    with pytest.raises(channels.UnknownChannel):
        await channels.add_account(store=store, kdf=kdf, config=config, actor_id=alice, name="erin", is_admin=False,
                                   channel_ids=["nope"])
    with pytest.raises(channels.InvalidAccountName):
        await channels.add_account(store=store, kdf=kdf, config=config, actor_id=alice, name="no spaces please",
                                   is_admin=False, channel_ids=[])
    assert [c.name for c in await store.caseworkers()].count("dave") == 1
    assert "erin" not in [c.name for c in await store.caseworkers()]
