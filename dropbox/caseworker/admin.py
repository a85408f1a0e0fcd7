"""The admin role's pages: channels, caseworker accounts, the audit log.

Every handler requires an admin (others get a 404, as for a page that does not exist), and the
domain functions in dropbox.channels check the role again against the stored account. Nothing
here opens a report that exists; what an admin controls is who reads new ones, and
dropbox/channels.py says how that is made visible (notices, audit, a second admin).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from multidict import MultiDictProxy

from dropbox import channels
from dropbox.caseworker import forms, labels
from dropbox.caseworker.staff import Staff, page, require, require_form, services
from dropbox.retention import default_retention_days, max_retention_days
from dropbox.web.i18n import N_, url_for
from dropbox.web.middleware import UserError

AUDIT_PAGE_SIZE = 100


def _channel_form(form: Mapping[str, object], member_ids: set[str]) -> channels.ChannelForm:
    return channels.ChannelForm(
        name=forms.text(form, "name", max_chars=channels.MAX_NAME_CHARS),
        description=forms.text(form, "description", max_chars=channels.MAX_DESCRIPTION_CHARS),
        questions=forms.text(form, "questions", max_chars=channels.MAX_QUESTIONS_CHARS),
        retention_days=forms.integer(form, "retention_days") or 0,
        make_default=forms.checkbox(form, "default"),
        member_ids=frozenset(member_ids),
        cleaning_policy=forms.text(form, "cleaning_policy", max_chars=32) or "remove",
    )


def _members(form: MultiDictProxy[str]) -> set[str]:
    return {v for v in form.getall("members", []) if isinstance(v, str) and len(v) <= 32}


async def _channels_context(request: web.Request) -> dict[str, object]:
    store = services(request).store
    everyone = await store.caseworkers()
    return {"channels": await store.channels(), "caseworkers": everyone,
            "memberships": await store.channel_memberships(), "pending": await store.pending_memberships(),
            "names": {c.id: c.name for c in everyone},
            "default_retention": default_retention_days(services(request).config)}


AWAITING = N_("Your own membership change waits for another admin's approval. The other changes were saved.")


async def channels_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, admin=True)
    return page(request, staff, "caseworker/admin_channels.html", await _channels_context(request),
                section="channels")


async def channel_add(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request, admin=True)
    channel_id = forms.text(form, "id", max_chars=40).strip()
    try:
        saved = await channels.add_channel(store=services(request).store, actor_id=staff.caseworker.id,
                                           channel_id=channel_id, form=_channel_form(form, _members(form)),
                                           max_retention_days=max_retention_days(services(request).config))
    except channels.InvalidChannel:
        staff.flash("error", N_("Check the fields: the id is lowercase letters, digits and dashes, a name is "
                                "required, and retention is 1 to 3650 days."))
    except channels.ChannelExists:
        staff.flash("error", N_("A channel with that id exists already."))
    except channels.InvalidQuestionList as e:
        staff.flash("error", N_("The questions could not be saved: %(detail)s"), detail=str(e))
    except channels.UnknownAccount as e:
        raise UserError(400, forms.BAD_FORM) from e
    else:
        staff.flash("notice", AWAITING if saved.awaiting_approval else N_("The channel was added."))
    raise web.HTTPSeeOther(url_for(request, "admin_channels"))


async def channel_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, admin=True)
    channel_id = forms.channel_id(request.match_info["channel_id"])
    context = await _channels_context(request)
    found = [c for c in context["channels"] if c.id == channel_id]  # type: ignore[attr-defined]
    if not found:
        raise web.HTTPNotFound()
    questions = channels.questions_for_editing(found[0])
    return page(request, staff, "caseworker/admin_channel.html",
                {**context, "channel": found[0], "questions": questions}, section="channels")


async def channel_update(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request, admin=True)
    channel_id = forms.channel_id(request.match_info["channel_id"])
    try:
        saved = await channels.update_channel(store=services(request).store, actor_id=staff.caseworker.id,
                                              channel_id=channel_id, form=_channel_form(form, _members(form)),
                                              max_retention_days=max_retention_days(services(request).config))
    except channels.UnknownChannel as e:
        raise web.HTTPNotFound() from e
    except channels.InvalidChannel:
        staff.flash("error", N_("Check the fields: a name is required, and retention is 1 to 3650 days."))
        raise web.HTTPSeeOther(url_for(request, "admin_channel", channel_id=channel_id)) from None
    except channels.InvalidQuestionList as e:
        staff.flash("error", N_("The questions could not be saved: %(detail)s"), detail=str(e))
        raise web.HTTPSeeOther(url_for(request, "admin_channel", channel_id=channel_id)) from None
    except channels.UnknownAccount as e:
        raise UserError(400, forms.BAD_FORM) from e
    staff.flash("notice", AWAITING if saved.awaiting_approval else N_("The channel was saved."))
    raise web.HTTPSeeOther(url_for(request, "admin_channels"))


async def membership_settle(request: web.Request) -> web.StreamResponse:
    """Approve or reject an admin's pending change of their own membership (the requester may
    only withdraw it)."""
    staff, form = await require_form(request, admin=True)
    pending_id = forms.hex_id(request.match_info["pending_id"])
    action = forms.text(form, "action", max_chars=10)
    if action not in ("approve", "reject"):
        raise UserError(400, forms.BAD_FORM)
    try:
        await channels.settle_pending(store=services(request).store, actor_id=staff.caseworker.id,
                                      pending_id=pending_id, approve=action == "approve")
    except channels.UnknownPending as e:
        raise web.HTTPNotFound() from e
    except channels.OwnRequest:
        staff.flash("error", N_("Another admin must approve a change of your own membership."))
    else:
        staff.flash("notice", N_("The change was approved and made.") if action == "approve"
                    else N_("The change was rejected."))
    raise web.HTTPSeeOther(url_for(request, "admin_channels"))


# --- accounts ------------------------------------------------------------------------------------


async def _caseworkers_context(request: web.Request) -> dict[str, object]:
    store = services(request).store
    memberships = await store.channel_memberships()
    return {"caseworkers": await store.caseworkers(), "channels": await store.channels(),
            "member_of": {cid: {ch for ch, ids in memberships.items() if cid in ids}
                          for ids in memberships.values() for cid in ids}}


async def caseworkers_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, admin=True)
    return page(request, staff, "caseworker/admin_caseworkers.html", await _caseworkers_context(request),
                section="caseworkers")


async def caseworker_add(request: web.Request) -> web.StreamResponse:
    """Shows the generated passphrase once, on this response only (pages are never cached)."""
    staff, form = await require_form(request, admin=True)
    svc = services(request)
    name = forms.text(form, "name", max_chars=64).strip()
    channel_ids = [v for v in form.getall("channels", []) if isinstance(v, str)]
    try:
        added, passphrase = await channels.add_account(
            store=svc.store, kdf=svc.staff_kdf, config=svc.config, actor_id=staff.caseworker.id, name=name,
            is_admin=forms.checkbox(form, "admin"), channel_ids=channel_ids)
    except channels.InvalidAccountName:
        staff.flash("error", N_("A name is 1 to 64 letters, digits, dots, dashes or underscores."))
    except channels.AccountExists:
        staff.flash("error", N_("A caseworker with that name exists already."))
    except channels.UnknownChannel as e:
        raise UserError(400, forms.BAD_FORM) from e
    else:
        return page(request, staff, "caseworker/admin_caseworker_added.html",
                    {"added": added, "passphrase": passphrase}, section="caseworkers")
    raise web.HTTPSeeOther(url_for(request, "admin_caseworkers"))


_ACCOUNT_ACTIONS = {
    "disable": N_("The account was disabled."),
    "enable": N_("The account was enabled."),
    "make_admin": N_("The caseworker is now an admin."),
    "remove_admin": N_("The caseworker is no longer an admin."),
    "reset_totp": N_("Two-step login was turned off for this caseworker."),
}


async def _apply(staff: Staff, request: web.Request, action: str, target: str) -> None:
    store, actor = services(request).store, staff.caseworker.id
    if action in ("disable", "enable"):
        await channels.set_disabled(store=store, actor_id=actor, caseworker_id=target, disabled=action == "disable")
    elif action in ("make_admin", "remove_admin"):
        await channels.set_admin(store=store, actor_id=actor, caseworker_id=target, is_admin=action == "make_admin")
    else:
        await channels.reset_totp(store=store, actor_id=actor, caseworker_id=target)


async def caseworker_change(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request, admin=True)
    target = forms.hex_id(request.match_info["caseworker_id"])
    action = forms.text(form, "action", max_chars=20)
    if action not in _ACCOUNT_ACTIONS:
        raise UserError(400, forms.BAD_FORM)
    try:
        await _apply(staff, request, action, target)
    except channels.UnknownAccount as e:
        raise web.HTTPNotFound() from e
    except channels.SelfLockout:
        staff.flash("error", N_("You cannot disable your own account or remove your own admin role."))
    else:
        staff.flash("notice", _ACCOUNT_ACTIONS[action])
    raise web.HTTPSeeOther(url_for(request, "admin_caseworkers"))


# --- audit log -----------------------------------------------------------------------------------


async def audit_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, admin=True)
    store = services(request).store
    number = min(max(forms.integer(request.query, "page") or 1, 1), forms.MAX_PAGE)
    total = await store.audit_count()
    entries = await store.audit_log(limit=AUDIT_PAGE_SIZE, offset=(number - 1) * AUDIT_PAGE_SIZE)
    names = {c.id: c.name for c in await store.caseworkers()}
    rows = [{"hour": e.hour, "who": labels.actor(request, e, names), "what": labels.audit_action(request, e, names),
             "report": (e.report_id or "")[:8]} for e in entries]
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    return page(request, staff, "caseworker/audit.html", {
        "rows": rows, "page_number": number, "pages": pages,
        "page_url": lambda n: url_for(request, "audit", query={"page": str(n)}),
    }, section="audit")
