"""A caseworker's own settings over HTTP: passphrase, two-step login (TOTP), notice address."""

from __future__ import annotations

import html
import re

import pyotp

from dropbox.totp import TotpSeed, code_at, current_step
from tests.support.caseworker_site import Agent, Site, site_fixture  # noqa: F401
from tests.support.installs import PASSPHRASES, STAFF

NEW_PASSPHRASE = "a brand new passphrase for alice"


async def test_passphrase_change_needs_the_current_one_and_a_matching_repeat(site: Site) -> None:
    alice = await site.signed_in("alice")
    page = await alice.text("/en/settings")
    assert 'autocomplete="new-password"' in page and "<script" not in page

    wrong = await alice.post("/en/settings/passphrase", {"current": "not it at all", "new": NEW_PASSPHRASE,
                                                          "repeat": NEW_PASSPHRASE})
    assert wrong.status == 303 and wrong.headers["Location"] == "/en/settings#passphrase"
    assert "current passphrase was not right" in await alice.text("/en/settings")
    await alice.post("/en/settings/passphrase", {"current": PASSPHRASES["alice"], "new": NEW_PASSPHRASE,
                                                 "repeat": NEW_PASSPHRASE + "x"})
    assert "not the same" in await alice.text("/en/settings")
    await alice.post("/en/settings/passphrase", {"current": PASSPHRASES["alice"], "new": "short",
                                                 "repeat": "short"})
    assert "too short" in await alice.text("/en/settings")

    done = await alice.post("/en/settings/passphrase", {"current": PASSPHRASES["alice"], "new": NEW_PASSPHRASE,
                                                         "repeat": NEW_PASSPHRASE})
    assert done.status == 303 and "Your passphrase was changed" in await alice.text("/en/settings")
    assert (await alice.get("/en/reports")).status == 200  # this session goes on
    other = await site.agent()
    assert (await other.login("alice")).status == 400
    assert (await other.login("alice", passphrase=NEW_PASSPHRASE)).status == 303
    assert "passphrase_changed" in [e.action for e in await site.services.store.audit_log()]


async def _enrol(site: Site, agent: Agent) -> TotpSeed:
    """Set up two-step login the way a person does: start, read the key off the page, confirm."""
    start = await agent.post("/en/settings/totp/start")
    assert start.status == 303 and start.headers["Location"] == "/en/settings/totp"
    page = await agent.text("/en/settings/totp")
    seed = TotpSeed(html.unescape(re.search(r'<code class="secret">([^<]+)</code>', page).group(1)).replace(" ", ""))  # type: ignore[union-attr]
    assert 'src="/en/settings/totp/qr.png"' in page and "<script" not in page

    qr = await agent.get("/en/settings/totp/qr.png")
    assert qr.status == 200 and qr.headers["Content-Type"] == "image/png"
    assert (await qr.read()).startswith(b"\x89PNG\r\n\x1a\n")

    wrong = await agent.post("/en/settings/totp/confirm", {"code": _other_code(seed)})
    assert wrong.headers["Location"] == "/en/settings/totp"
    assert "did not match" in await agent.text("/en/settings/totp")
    assert (await site.services.store.caseworker_by_name(agent.name)).totp_sealed is None

    confirmed = await agent.post("/en/settings/totp/confirm", {"code": pyotp.TOTP(seed).now()})
    assert confirmed.status == 303
    assert "Two-step login is on" in await agent.text("/en/settings")
    return seed


def _other_code(seed: TotpSeed) -> str:
    valid = {code_at(seed, current_step() + d) for d in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


async def test_totp_enrolment_then_login_with_and_without_the_code(site: Site) -> None:
    alice = await site.signed_in("alice")
    seed = await _enrol(site, alice)
    stored = await site.services.store.caseworker_by_name("alice")
    assert stored.totp_sealed is not None and seed.encode() not in stored.totp_sealed
    assert (await alice.get("/en/settings/totp/qr.png")).status == 404  # the pending seed is gone

    agent = await site.agent()
    assert (await agent.login("alice")).status == 400  # passphrase alone is no longer enough
    assert (await agent.login("alice", totp="000000" if pyotp.TOTP(seed).now() != "000000" else "111111")).status \
        == 400
    # Enrolment spent the current code, so the app's next one signs in (it is within the drift window).
    step = current_step() + 1
    code = code_at(seed, step)
    assert (await agent.login("alice", totp=code)).status == 303
    # The same code does not work twice, not even a moment later in another browser.
    replay = await site.agent()
    assert (await replay.login("alice", totp=code)).status == 400
    # A wrong passphrase with a right code is the same generic failure.
    assert (await replay.login("alice", passphrase="wrong passphrase!", totp=code_at(seed, step + 1))).status == 400


async def test_totp_can_be_turned_off_only_with_a_current_code(site: Site) -> None:
    bob = await site.signed_in("bob")
    seed = await _enrol(site, bob)
    refused = await bob.post("/en/settings/totp/disable", {"passphrase": PASSPHRASES["bob"],
                                                             "code": _other_code(seed)})
    assert refused.status == 303 and "still on" in await bob.text("/en/settings")
    # The code used to confirm enrolment is spent; the next step's code works, but only with the
    # passphrase: a borrowed session alone cannot turn two-step login off (M7).
    next_code = code_at(seed, current_step() + 1)
    await bob.post("/en/settings/totp/disable", {"code": next_code})
    assert "Your passphrase was not right. Two-step login is still on." in await bob.text("/en/settings")
    await bob.post("/en/settings/totp/disable", {"passphrase": "not bob's passphrase", "code": next_code})
    assert "Your passphrase was not right" in await bob.text("/en/settings")
    assert (await site.services.store.caseworker_by_name("bob")).totp_sealed is not None
    await bob.post("/en/settings/totp/disable", {"passphrase": PASSPHRASES["bob"], "code": next_code})
    assert "Two-step login is off" in await bob.text("/en/settings")
    assert (await site.services.store.caseworker_by_name("bob")).totp_sealed is None
    assert (await (await site.agent()).login("bob")).status == 303
    actions = [e.action for e in await site.services.store.audit_log()]
    assert "totp_enabled" in actions and "totp_disabled" in actions


async def test_totp_pages_without_a_pending_seed_go_back_to_settings(site: Site) -> None:
    carol = await site.signed_in("carol")
    assert (await carol.get("/en/settings/totp")).headers["Location"] == "/en/settings#totp"
    assert (await carol.get("/en/settings/totp/qr.png")).status == 404
    assert (await carol.post("/en/settings/totp/confirm", {"code": "123456"})).status == 303
    assert (await site.services.store.caseworker_by_name("carol")).totp_sealed is None


async def test_notice_address_is_kept_and_checked(tmp_path: object) -> None:
    from tests.support.caseworker_site import serve_site
    from tests.support.installs import new_install

    config = await new_install(tmp_path / "data", STAFF, smtp_host="127.0.0.1", smtp_port=9)  # type: ignore[operator]
    async with serve_site(config) as served:
        alice = await served.signed_in("alice")
        await alice.post("/en/settings/email", {"email": "not an address"})
        assert "does not look like an e-mail address" in await alice.text("/en/settings")
        await alice.post("/en/settings/email", {"email": "alice@example.org"})
        page = await alice.text("/en/settings")
        assert 'value="alice@example.org"' in page
        assert (await served.services.store.caseworker_by_name("alice")).email == "alice@example.org"
        await alice.post("/en/settings/email", {"email": ""})
        assert (await served.services.store.caseworker_by_name("alice")).email is None
        assert "example.org" not in repr(await served.services.store.audit_log())


async def test_settings_say_when_notices_are_not_set_up(site: Site) -> None:
    alice = await site.signed_in("alice")
    assert "E-mail notices are not set up on this server." in await alice.text("/en/settings")
