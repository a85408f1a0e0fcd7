"""A caseworker's own settings: passphrase, two-step login (TOTP), notice address."""

from __future__ import annotations

from aiohttp import web

from dropbox import account_actions, totp
from dropbox.accounts import MIN_PASSPHRASE_CHARS, ChangeConflict, LoginFailed, WeakPassphrase
from dropbox.caseworker import forms
from dropbox.caseworker.staff import page, require, require_form, services, sessions
from dropbox.web.i18n import CASEWORKER_SITE_NAME, N_, translate, url_for
from dropbox.web.throttle import FAILURE_BUDGET


def _to(request: web.Request, name: str, anchor: str = "") -> web.HTTPSeeOther:
    return web.HTTPSeeOther(url_for(request, name) + (f"#{anchor}" if anchor else ""))


WEAK = N_("The new passphrase is too short or too easy to guess. Nothing was changed. "
          "Five or more random words make a good one.")


async def settings_page(request: web.Request) -> web.StreamResponse:
    """Until a generated passphrase is changed, this page shows only the change form."""
    staff = await require(request, before_change=True)
    return page(request, staff, "caseworker/settings.html", {
        "must_change": staff.caseworker.must_change_passphrase,
        "totp_enrolled": totp.enrolled(staff.caseworker.totp_sealed),
        "notices_on": bool(services(request).config.smtp_host),
        "min_passphrase": MIN_PASSPHRASE_CHARS,
        "signer": services(request).signer,
    }, section="settings")


async def change_passphrase(request: web.Request) -> web.StreamResponse:
    """A new key pair: this session goes on with it, every other session of the account ends."""
    staff, form = await require_form(request, before_change=True)
    current = forms.text(form, "current", max_chars=2048)
    new = forms.text(form, "new", max_chars=2048)
    if new != forms.text(form, "repeat", max_chars=2048):
        staff.flash("error", N_("The two new passphrases are not the same."))
        raise _to(request, "settings", "passphrase")
    budget = request.config_dict[FAILURE_BUDGET]
    await budget.before_attempt()
    svc = services(request)
    try:
        renewed = await account_actions.change_passphrase(store=svc.store, kdf=svc.staff_kdf, config=svc.config,
                                                   session=staff.account, current=current, new=new)
    except LoginFailed:
        budget.record_failure()
        staff.flash("error", N_("Your current passphrase was not right. Nothing was changed."))
    except WeakPassphrase:
        staff.flash("error", WEAK)
    except ChangeConflict:
        staff.flash("error", N_("Reports were being shared with you at the same moment. Nothing was changed. "
                                "Please try again."))
    else:
        staff.payload.account = renewed
        sessions(request).end_group(renewed.caseworker.id, keep=staff.session)
        staff.flash("notice", N_("Your passphrase was changed. Use the new one from now on. "
                                 "You were signed out everywhere else."))
        raise _to(request, "reports")
    raise _to(request, "settings", "passphrase")


async def set_notice_address(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request)
    address = forms.text(form, "email", max_chars=254)
    try:
        await account_actions.set_notice_address(store=services(request).store, session=staff.account, address=address)
    except account_actions.InvalidAddress:
        staff.flash("error", N_("That does not look like an e-mail address."))
    else:
        staff.flash("notice", N_("Saved."))
    raise _to(request, "settings", "notices")


# --- two-step login ------------------------------------------------------------------------------


async def totp_start(request: web.Request) -> web.StreamResponse:
    """Make a seed and keep it in the session until a first code confirms it."""
    staff, _form = await require_form(request)
    if totp.enrolled(staff.caseworker.totp_sealed):
        raise _to(request, "settings", "totp")
    staff.payload.pending_totp = totp.new_seed()
    raise _to(request, "totp")


async def totp_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request)
    seed = staff.payload.pending_totp
    if seed is None or totp.enrolled(staff.caseworker.totp_sealed):
        raise _to(request, "settings", "totp")
    return page(request, staff, "caseworker/totp.html", {"seed": totp.grouped(seed)}, section="settings")


async def totp_qr(request: web.Request) -> web.StreamResponse:
    """The pending seed as a PNG QR code; served as an image so no script is needed to show it."""
    staff = await require(request)
    seed = staff.payload.pending_totp
    if seed is None:
        raise web.HTTPNotFound()
    config = services(request).config
    issuer = config.organisation_name or translate(request, CASEWORKER_SITE_NAME)
    uri = totp.provisioning_uri(seed, account=staff.caseworker.name, issuer=issuer)
    return web.Response(body=totp.qr_png(uri), content_type="image/png")


async def totp_confirm(request: web.Request) -> web.StreamResponse:
    staff, form = await require_form(request)
    seed = staff.payload.pending_totp
    if seed is None:
        raise _to(request, "settings", "totp")
    try:
        await account_actions.enrol_totp(store=services(request).store, session=staff.account, seed=seed,
                                  code=forms.text(form, "code", max_chars=32))
    except totp.TotpRejected:
        staff.flash("error", N_("That code did not match. Check the time on your phone and try the next code."))
        raise _to(request, "totp") from None
    except totp.AlreadyEnrolled:
        pass
    staff.payload.pending_totp = None
    staff.flash("notice", N_("Two-step login is on. From now on you need a code from your app to sign in."))
    raise _to(request, "settings", "totp")


async def totp_disable(request: web.Request) -> web.StreamResponse:
    """Needs the passphrase and a current code. A wrong passphrase counts against the
    failed-login budget; wrong codes back off as at login (see totp.py)."""
    staff, form = await require_form(request)
    budget = request.config_dict[FAILURE_BUDGET]
    await budget.before_attempt()
    svc = services(request)
    try:
        await account_actions.disable_totp(store=svc.store, kdf=svc.staff_kdf, config=svc.config, session=staff.account,
                                    passphrase=forms.text(form, "passphrase", max_chars=2048),
                                    code=forms.text(form, "code", max_chars=32))
    except LoginFailed:
        budget.record_failure()
        staff.flash("error", N_("Your passphrase was not right. Two-step login is still on."))
    except totp.TotpRejected:
        budget.record_failure()
        staff.flash("error", N_("That code did not match. Two-step login is still on."))
    except totp.TotpWait as e:
        staff.flash("error", N_("Too many wrong codes in a row. Wait %(minutes)s minutes, then try a new code."),
                    minutes=str(-(-e.seconds // 60)))
    except totp.NotEnrolled:
        pass
    else:
        staff.flash("notice", N_("Two-step login is off."))
    raise _to(request, "settings", "totp")
