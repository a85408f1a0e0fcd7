"""What the admin role does: channels (receiving units), who is in them, and caseworker accounts.

One install can run schemes for several agencies; each channel has its own name, description,
questions, retention and caseworkers. A new report is sealed to the active members of its channel
(see submissions.py), so membership decides who can read what arrives *from now on*; reports that
already exist are handed over per report (casework.grant), never by changing a channel.

What an admin can and cannot do. Being admin opens no report that exists: reports are read only
where granted, like everyone else. But membership decides who can read what arrives *from now
on*, so an admin controls future access, and the safeguards are about making that visible:

- every change of a channel's members is written to the audit log and leaves a notice for each
  active member of that channel (and the person added or removed), shown once at their next
  login: "bob was added to Unit X by alice";
- an admin's change of their *own* membership waits for another active admin's approval, where
  there is one (with no other active admin it applies at once, audited and noticed as above);
- an admin can still add an account they control (a new account's generated passphrase must be
  changed at first login, but the admin who made it can do that): the channel's members see it.

Every function re-reads the actor's account, so a role removed a moment ago no longer counts, and
refuses what would lock the last way in: an admin cannot disable themselves or drop their own
admin role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dropbox import accounts, audit
from dropbox.audit import AuditAction
from dropbox.cleaning import Policy
from dropbox.config import Config
from dropbox.ids import new_id, this_hour, today
from dropbox.kdf_pool import KdfPool
from dropbox.passphrases import new_passphrase
from dropbox.questions import InvalidQuestions, Question, parse_questions
from dropbox.sealing import Passphrase
from dropbox.storage import Caseworker, Channel, Conflict, NotFound, PendingMembership, Store

CHANNEL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 4000
MAX_RETENTION_DAYS = 3650
#: Longest questions text accepted from the form (JSON with labels in several languages).
MAX_QUESTIONS_CHARS = 64_000

class AdminError(Exception):
    """Root of the errors of this module."""


class NotAdmin(AdminError):
    """The acting account is not (or no longer) an active admin."""


class InvalidChannel(AdminError):
    """A channel id, name, description or retention outside the allowed shape."""


class InvalidQuestionList(AdminError):
    """The questions are not in the documented shape; the message says what is wrong."""


class ChannelExists(AdminError):
    """A channel with this id exists already."""


class InvalidAccountName(AdminError):
    """A caseworker name must be 1-64 letters, digits, dot, dash or underscore."""


class AccountExists(AdminError):
    """A caseworker with this name exists already."""


class UnknownAccount(AdminError):
    """No caseworker with this id."""


class UnknownChannel(AdminError):
    """No channel with this id."""


class SelfLockout(AdminError):
    """An admin may not disable their own account or remove their own admin role."""


class UnknownPending(AdminError):
    """No such pending membership change (another admin settled it already)."""


class OwnRequest(AdminError):
    """An admin cannot approve a change of their own membership: that takes a second admin."""


def questions_of(channel: Channel) -> list[Question]:
    """The channel's questions (format: dropbox/questions.py); none if malformed."""
    try:
        return parse_questions(channel.questions)
    except InvalidQuestions:
        return []


def _plain(questions: Sequence[Question]) -> bool:
    return all(set(q.labels) == {""} and not q.required and q.kind == "text" for q in questions)


def questions_for_editing(channel: Channel) -> str:
    """One question per line while that says everything; otherwise the JSON itself (labels in
    several languages, required questions and multi-line answers need it)."""
    questions = questions_of(channel)
    if _plain(questions):
        return "\n".join(q.labels[""] for q in questions)
    try:
        return json.dumps(json.loads(channel.questions), ensure_ascii=False, indent=2)
    except ValueError:
        return channel.questions


def questions_json(text: str, *, existing: Sequence[Question] = ()) -> str:
    """The `questions` column for what the admin typed: a JSON list as documented in
    dropbox/questions.py, or one question per line. A line equal to an existing
    question keeps that question's id, so answers already given keep their label."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            parse_questions(stripped)
            return json.dumps(json.loads(stripped), ensure_ascii=False)
        except InvalidQuestions as e:
            raise InvalidQuestionList(str(e)) from e
    known = {q.labels[""]: q.id for q in existing if "" in q.labels}
    used: set[str] = set()
    questions = []
    for line in (line.strip() for line in stripped.splitlines()):
        if not line:
            continue
        qid = known.get(line)
        if qid is None or qid in used:
            qid = "q" + new_id()[:12]
        used.add(qid)
        questions.append({"id": qid, "label": line})
    result = json.dumps(questions, ensure_ascii=False)
    try:
        parse_questions(result)
    except InvalidQuestions as e:
        raise InvalidQuestionList(str(e)) from e
    return result


async def _require_admin(store: Store, actor_id: str) -> Caseworker:
    try:
        actor = await store.caseworker(actor_id)
    except NotFound as e:
        raise NotAdmin() from e
    if not actor.is_admin or actor.disabled:
        raise NotAdmin()
    return actor


async def _audit(store: Store, actor: Caseworker, action: AuditAction, detail: str = "") -> None:
    await audit.record(store, actor_id=actor.id, action=action, detail=detail)


# --- channels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelForm:
    """What the admin typed for a channel."""

    name: str
    description: str
    questions: str
    retention_days: int
    make_default: bool
    member_ids: frozenset[str]
    #: A cleaning.Policy value: what happens to the metadata of files sent to the channel.
    cleaning_policy: str = Policy.REMOVE.value


def _checked(channel_id: str, form: ChannelForm, existing: Sequence[Question], is_default: bool,
             max_retention_days: int) -> Channel:
    name, description = form.name.strip(), form.description.strip()
    if not name or len(name) > MAX_NAME_CHARS or len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidChannel("name or description")
    if not 1 <= form.retention_days <= min(MAX_RETENTION_DAYS, max_retention_days):
        raise InvalidChannel("retention")
    if form.cleaning_policy not in set(Policy):
        raise InvalidChannel("cleaning policy")
    return Channel(id=channel_id, name=name, description=description,
                   questions=questions_json(form.questions, existing=existing),
                   retention_days=form.retention_days, is_default=is_default, cleaning_policy=form.cleaning_policy)


async def _change_member(store: Store, *, actor_id: str | None, channel_id: str, caseworker_id: str,
                         member: bool, also_notify: Iterable[str] = (), new_account: bool = False) -> None:
    """Apply one change, audited, with a notice for the channel's active members, the person
    concerned and `also_notify` (not for whoever made it, who knows, nor for an account that
    does not exist yet)."""
    notify = {m.id for m in await store.channel_members(channel_id)} | {caseworker_id} | set(also_notify)
    if new_account:
        notify.discard(caseworker_id)
    action = AuditAction.MEMBER_ADDED if member else AuditAction.MEMBER_REMOVED
    await store.change_membership(channel_id=channel_id, caseworker_id=caseworker_id, member=member,
                                  notify=notify - {actor_id}, actor_id=actor_id, day=today().isoformat(),
                                  hour=this_hour(), action=audit.checked(action))


async def join_channels(*, store: Store, actor_id: str | None, caseworker_id: str, channel_ids: Sequence[str]) -> None:
    """A new account joins channels (from the admin page, or from the CLI with no actor), told to
    each channel's members like any other change."""
    for channel_id in channel_ids:
        await _change_member(store, actor_id=actor_id, channel_id=channel_id, caseworker_id=caseworker_id,
                             member=True, new_account=True)


async def _set_members(store: Store, actor: Caseworker, channel_id: str, member_ids: frozenset[str]) -> bool:
    """Make the members `member_ids`. True if the actor's own change waits for another admin."""
    everyone = await store.caseworkers()
    if not member_ids <= {c.id for c in everyone}:
        raise UnknownAccount()
    second_admin = any(c.is_admin and not c.disabled and c.id != actor.id for c in everyone)
    current = (await store.channel_memberships()).get(channel_id, set())
    # Everyone in the channel before or after this save hears of every change in it.
    involved = {c.id for c in everyone if not c.disabled and c.id in current | member_ids}
    waiting = False
    for cw_id in sorted(member_ids ^ current):
        member = cw_id in member_ids
        if cw_id == actor.id and second_admin:
            await store.add_pending_membership(PendingMembership(
                id=new_id(), channel_id=channel_id, caseworker_id=cw_id, member=member, requested_by=actor.id,
                requested_day=today().isoformat()))
            await _audit(store, actor, AuditAction.MEMBERSHIP_REQUESTED, f"{channel_id}/{cw_id}")
            waiting = True
        else:
            await _change_member(store, actor_id=actor.id, channel_id=channel_id, caseworker_id=cw_id, member=member,
                                 also_notify=involved)
    return waiting


@dataclass(frozen=True)
class Saved:
    channel: Channel
    #: The admin's change of their own membership waits for another admin's approval.
    awaiting_approval: bool


async def add_channel(*, store: Store, actor_id: str, channel_id: str, form: ChannelForm,
                      max_retention_days: int = MAX_RETENTION_DAYS) -> Saved:
    """A new channel; its retention may not exceed the country profile's cap (retention.py)."""
    actor = await _require_admin(store, actor_id)
    if not CHANNEL_ID.match(channel_id):
        raise InvalidChannel("id")
    channel = _checked(channel_id, form, (), form.make_default, max_retention_days)
    try:
        await store.add_channel(channel)
    except Conflict as e:
        raise ChannelExists() from e
    await _audit(store, actor, AuditAction.CHANNEL_ADDED, channel.id)
    return Saved(channel, await _set_members(store, actor, channel.id, form.member_ids))


async def update_channel(*, store: Store, actor_id: str, channel_id: str, form: ChannelForm,
                         max_retention_days: int = MAX_RETENTION_DAYS) -> Saved:
    """Change a channel. The default channel stays default until another one is made default."""
    actor = await _require_admin(store, actor_id)
    try:
        current = await store.channel(channel_id)
    except NotFound as e:
        raise UnknownChannel() from e
    channel = _checked(channel_id, form, questions_of(current), current.is_default or form.make_default,
                       max_retention_days)
    await store.update_channel(channel)
    await _audit(store, actor, AuditAction.CHANNEL_CHANGED, channel.id)
    return Saved(channel, await _set_members(store, actor, channel.id, form.member_ids))


async def settle_pending(*, store: Store, actor_id: str, pending_id: str, approve: bool) -> PendingMembership:
    """Another admin approves (the change is applied, audited and noticed as the requester's) or
    rejects a pending change; the requester may only withdraw it (reject)."""
    actor = await _require_admin(store, actor_id)
    found = [p for p in await store.pending_memberships() if p.id == pending_id]
    if not found:
        raise UnknownPending()
    if approve and found[0].requested_by == actor.id:
        raise OwnRequest()
    try:
        pending = await store.take_pending_membership(pending_id)
    except NotFound as e:
        raise UnknownPending() from e
    detail = f"{pending.channel_id}/{pending.caseworker_id}"
    if approve:
        await _change_member(store, actor_id=pending.requested_by, channel_id=pending.channel_id,
                             caseworker_id=pending.caseworker_id, member=pending.member)
    await _audit(store, actor, AuditAction.MEMBERSHIP_APPROVED if approve else AuditAction.MEMBERSHIP_REJECTED, detail)
    return pending


# --- caseworker accounts -----------------------------------------------------------------------


async def add_account(*, store: Store, kdf: KdfPool, config: Config, actor_id: str, name: str, is_admin: bool,
                      channel_ids: Sequence[str]) -> tuple[Caseworker, Passphrase]:
    """A new account with a generated passphrase, returned once to be handed over in person.

    The new caseworker reads nothing that already exists until someone grants it to them.
    """
    actor = await _require_admin(store, actor_id)
    try:
        accounts.check_name(name)
    except accounts.InvalidName as e:
        raise InvalidAccountName() from e
    known = {c.id for c in await store.channels()}
    if not set(channel_ids) <= known:
        raise UnknownChannel()
    passphrase, _bits = new_passphrase()
    try:
        cw = await accounts.add_caseworker(store=store, kdf=kdf, config=config, name=name, passphrase=passphrase,
                                           is_admin=is_admin, channel_ids=[], generated=True)
    except Conflict as e:
        raise AccountExists() from e
    await _audit(store, actor, AuditAction.ACCOUNT_ADDED, cw.id)
    await join_channels(store=store, actor_id=actor.id, caseworker_id=cw.id, channel_ids=channel_ids)
    return cw, passphrase


async def _account(store: Store, caseworker_id: str) -> Caseworker:
    try:
        return await store.caseworker(caseworker_id)
    except NotFound as e:
        raise UnknownAccount() from e


async def set_disabled(*, store: Store, actor_id: str, caseworker_id: str, disabled: bool) -> None:
    """A disabled caseworker cannot log in, and their open sessions end at their next request."""
    actor = await _require_admin(store, actor_id)
    target = await _account(store, caseworker_id)
    if target.id == actor.id and disabled:
        raise SelfLockout()
    await store.update_caseworker(target.id, disabled=int(disabled))
    await _audit(store, actor, AuditAction.ACCOUNT_DISABLED if disabled else AuditAction.ACCOUNT_ENABLED, target.id)


async def set_admin(*, store: Store, actor_id: str, caseworker_id: str, is_admin: bool) -> None:
    actor = await _require_admin(store, actor_id)
    target = await _account(store, caseworker_id)
    if target.id == actor.id and not is_admin:
        raise SelfLockout()
    await store.update_caseworker(target.id, is_admin=int(is_admin))
    await _audit(store, actor, AuditAction.ADMIN_GRANTED if is_admin else AuditAction.ADMIN_REVOKED, target.id)


async def reset_totp(*, store: Store, actor_id: str, caseworker_id: str) -> None:
    """For a caseworker who lost their authenticator: they log in with the passphrase alone again."""
    actor = await _require_admin(store, actor_id)
    target = await _account(store, caseworker_id)
    await store.update_caseworker(target.id, totp_sealed=None, totp_failures=0, totp_next_try=0)
    await _audit(store, actor, AuditAction.TOTP_RESET, target.id)
