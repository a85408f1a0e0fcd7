"""Admin views of the outcome categories reports are closed with (dropbox/outcomes.py)."""

from __future__ import annotations

from aiohttp import web

from dropbox import outcomes
from dropbox.caseworker import forms
from dropbox.caseworker.staff import page, require, require_form, services
from dropbox.web.i18n import N_, translate, url_for


async def outcomes_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, admin=True)
    svc = services(request)
    return page(request, staff, "caseworker/admin_outcomes.html", {
        "categories": [translate(request, label) for label in await outcomes.categories(store=svc.store)],
        "max_categories": outcomes.MAX_CATEGORIES, "max_chars": outcomes.MAX_LABEL_CHARS,
    }, section="outcomes")


async def outcomes_save(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request, admin=True)
    text = forms.text(form, "categories", max_chars=outcomes.MAX_CATEGORIES * (outcomes.MAX_LABEL_CHARS + 2))
    try:
        await outcomes.set_categories(store=services(request).store, actor_id=staff.caseworker.id, text=text)
    except outcomes.InvalidCategories:
        staff.flash("error", N_("Give one to %(most)s outcomes, one per line, each at most %(chars)s characters."),
                    most=str(outcomes.MAX_CATEGORIES), chars=str(outcomes.MAX_LABEL_CHARS))
    else:
        staff.flash("notice", N_("The outcomes were saved."))
    raise web.HTTPSeeOther(url_for(request, "admin_outcomes"))
