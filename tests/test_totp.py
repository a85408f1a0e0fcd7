"""TOTP guessing (M7): wrong codes after a right passphrase back off per account, persisted in the
database, bounded, refunded by a right code; time comes from an injected `now`."""

from __future__ import annotations

import asyncio
import time

import pytest

from dropbox import account_actions, accounts, totp
from dropbox.accounts import CaseworkerSession
from dropbox.sealing import TamperedData
from dropbox.services import Services
from dropbox.storage import Store
from dropbox.totp import TotpRejected, TotpWait, code_at, current_step
from tests.support.caseworker_site import Site, serve_site, site_fixture  # noqa: F401
from tests.support.installs import (
    PASSPHRASES,
    new_install,  # noqa: F401
)

NOW = 1_900_000_000.0
CAP = 900


async def _session(services: Services, name: str = "carol") -> CaseworkerSession:
    return await accounts.login(store=services.store, kdf=services.staff_kdf, config=services.config, name=name,
                                passphrase=PASSPHRASES[name])


async def _enrolled(services: Services, name: str = "carol",
                    now: float = NOW) -> tuple[CaseworkerSession, totp.TotpSeed]:
    session = await _session(services, name)
    seed = totp.new_seed()
    await totp.enrol(store=services.store, session=session, seed=seed, code=code_at(seed, current_step(now)), now=now)
    return session, seed


def _wrong(seed: totp.TotpSeed, now: float) -> str:
    valid = {code_at(seed, current_step(now) + d) for d in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


async def _try(store: Store, session: CaseworkerSession, code: str, now: float) -> str:
    try:
        await totp.check_login(store=store, session=session, code=code, now=now, cap=CAP)
    except TotpRejected:
        return "wrong"
    except TotpWait as e:
        return f"wait {e.seconds}"
    return "ok"


def test_the_backoff_starts_after_two_typos_doubles_and_is_bounded() -> None:
    waits = [totp.backoff_seconds(n, cap=CAP) for n in range(0, 16)]
    assert waits[:3] == [0, 0, 0] and waits[3:8] == [1, 2, 4, 8, 16]
    assert max(waits) == CAP and waits[-1] == CAP
    assert totp.backoff_seconds(10_000, cap=CAP) == CAP


async def test_wrong_codes_make_the_next_one_wait_even_across_a_restart(site: Site) -> None:
    svc = site.services
    session, seed = await _enrolled(svc)
    now = NOW + 60
    # Given three wrong codes (two free, the third costs a second), then more
    results = []
    for _ in range(5):
        results.append(await _try(svc.store, session, _wrong(seed, now), now))
    assert results == ["wrong", "wrong", "wrong", "wait 1", "wait 1"]
    # When the server restarts (the store is reopened), the wait is still there
    reopened = await Store.open(svc.config.db_path)
    try:
        assert await _try(reopened, session, _wrong(seed, now), now) == "wait 1"
        stored = await reopened.caseworker(session.caseworker.id)
        assert stored.totp_failures == 3 and stored.totp_next_try == int(NOW + 60) + 1
    finally:
        await reopened.close()
    # And the waits grow; a right code within them is not even checked
    now = stored.totp_next_try
    assert await _try(svc.store, session, _wrong(seed, now), now) == "wrong"
    assert await _try(svc.store, session, code_at(seed, current_step(now)), now) == "wait 2"
    # A right code once the wait is over works, and resets the count (the person is told of 4 wrong codes)
    now += 2
    assert await totp.check_login(store=svc.store, session=session, code=code_at(seed, current_step(now) + 1),
                                  now=now, cap=CAP) == 4
    stored = await svc.store.caseworker(session.caseworker.id)
    assert stored.totp_failures == 0 and stored.totp_next_try == 0


async def test_guessing_all_day_gets_about_a_hundred_tries_and_never_locks_out_for_ever(site: Site) -> None:
    svc = site.services
    session, seed = await _enrolled(svc)
    now, tries = NOW + 60, 0
    while now < NOW + 60 + 24 * 3600:  # a guesser who knows the passphrase, trying as soon as allowed
        outcome = await _try(svc.store, session, _wrong(seed, now), now)
        if outcome == "wrong":
            tries += 1
        else:
            wait = int(outcome.split()[1])
            assert wait <= CAP  # bounded: the real person waits at most this long
            now += wait
    assert 90 <= tries <= 110  # 3 codes a try: ~0.03 % a day of hitting one, against ~55 % before
    # The real person, after at most one wait, signs in
    wait = (await svc.store.caseworker(session.caseworker.id)).totp_next_try - int(now)
    now += max(wait, 0)
    assert await _try(svc.store, session, code_at(seed, current_step(now) + 1), now) == "ok"


async def test_parallel_attempts_get_no_extra_tries(site: Site) -> None:
    svc = site.services
    session, seed = await _enrolled(svc)
    now = NOW + 60
    for _ in range(3):  # spend the free tries
        await _try(svc.store, session, _wrong(seed, now), now)
    outcomes = await asyncio.gather(*(_try(svc.store, session, _wrong(seed, now), now + 1) for _ in range(20)))
    assert outcomes.count("wrong") == 1 and all(o.startswith("wait") for o in outcomes if o != "wrong")


async def test_a_malformed_or_empty_code_costs_nothing(site: Site) -> None:
    svc = site.services
    session, seed = await _enrolled(svc)
    for code in ("", "12345", "abcdef") * 3:
        assert await _try(svc.store, session, code, NOW + 60) == "wrong"
    assert (await svc.store.caseworker(session.caseworker.id)).totp_failures == 0


async def test_the_login_page_says_to_wait_and_the_next_login_tells_of_wrong_codes(site: Site) -> None:
    svc = site.services
    session, seed = await _enrolled(svc, "alice", now=time.time())  # over HTTP the server's clock is real
    # Given a guesser who spent the free tries and more (white-box: as if it happened just now)
    await svc.store.update_caseworker(session.caseworker.id, totp_failures=7,
                                      totp_next_try=int(time.time()) + 600)
    agent = await site.agent()
    response = await agent.login("alice", totp=code_at(seed, current_step() + 1))
    assert response.status == 429
    assert "Wait 10 minutes, then sign in with a new code" in await response.text()
    # A wrong passphrase still gets only the generic answer, never the wait
    assert (await agent.login("alice", passphrase="not alice's passphrase", totp="123456")).status == 400
    # When the wait is over, the right code signs in and the person is told of the wrong codes
    await svc.store.update_caseworker(session.caseworker.id, totp_next_try=0)
    assert (await agent.login("alice", totp=code_at(seed, current_step() + 1))).status == 303
    page = agent.landing
    assert "7 wrong two-step codes were tried for your account since you last signed in" in page


async def test_turning_totp_off_needs_the_passphrase_and_backs_off_too(site: Site) -> None:
    svc = site.services
    session, seed = await _enrolled(svc, "bob", now=time.time())
    config = svc.config
    with pytest.raises(accounts.LoginFailed):
        await account_actions.disable_totp(store=svc.store, kdf=svc.staff_kdf, config=config, session=session,
                                    passphrase="not bob's passphrase", code=code_at(seed, current_step()))
    await svc.store.update_caseworker(session.caseworker.id, totp_failures=5,
                                      totp_next_try=int(time.time()) + 60)
    with pytest.raises(TotpWait):
        await account_actions.disable_totp(store=svc.store, kdf=svc.staff_kdf, config=config, session=session,
                                    passphrase=PASSPHRASES["bob"], code=code_at(seed, current_step()))
    assert (await svc.store.caseworker(session.caseworker.id)).totp_sealed is not None


async def test_totp_state_is_sealed_to_the_caseworker_and_consumed_atomically(site: Site) -> None:
    svc = site.services
    session = await accounts.login(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name="carol",
                          passphrase=PASSPHRASES["carol"])
    seed = totp.new_seed()
    now = 1_900_000_000.0
    await totp.enrol(store=svc.store, session=session, seed=seed, code=code_at(seed, current_step(now)), now=now)
    with pytest.raises(totp.AlreadyEnrolled):
        await totp.enrol(store=svc.store, session=session, seed=seed, code=code_at(seed, current_step(now)), now=now)

    # Two logins racing with the same fresh code: only one swap can win.
    first = await accounts.login(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name="carol",
                        passphrase=PASSPHRASES["carol"])
    second = await accounts.login(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name="carol",
                         passphrase=PASSPHRASES["carol"])
    code = code_at(seed, current_step(now) + 1)
    await totp.check_login(store=svc.store, session=first, code=code, now=now + 30, cap=900)
    with pytest.raises(TotpRejected):
        await totp.check_login(store=svc.store, session=second, code=code, now=now + 30, cap=900)
    # Another caseworker's key does not open carol's sealed state.
    bob = await accounts.login(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name="bob",
                               passphrase=PASSPHRASES["bob"])
    stored = (await svc.store.caseworker_by_name("carol")).totp_sealed
    with pytest.raises(Exception):  # noqa: B017 - TamperedData from the AEAD
        totp.open_state(stored, session=bob)  # type: ignore[arg-type]
    for code in ("", "12345", "1234567", "abcdef", "１２３４５６"):
        with pytest.raises(TotpRejected):
            totp.matching_step(seed, code, after=-1, now=now)


# -- the module's own pieces: codes, the drift window, the sealed state -----------------------

#: RFC 6238's SHA-1 secret ("12345678901234567890") in base32, and its test vectors cut to six digits.
RFC_SEED = totp.TotpSeed("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
RFC_VECTORS = {59: "287082", 1111111109: "081804", 1234567890: "005924", 2000000000: "279037"}


@pytest.mark.parametrize(("unix_time", "code"), RFC_VECTORS.items())
def test_codes_are_rfc_6238s(unix_time: int, code: str) -> None:
    assert code_at(RFC_SEED, current_step(unix_time)) == code


def test_a_code_is_taken_within_one_step_of_drift_once_and_in_any_spacing() -> None:
    step = current_step(NOW)
    for drift in (-1, 0, 1):
        code = code_at(RFC_SEED, step + drift)
        assert totp.matching_step(RFC_SEED, code, after=-1, now=NOW) == step + drift
        assert totp.matching_step(RFC_SEED, f" {code[:3]} {code[3:]} ", after=-1, now=NOW) == step + drift
        # a step already used (or an earlier one) is never taken again: no replay
        with pytest.raises(TotpRejected):
            totp.matching_step(RFC_SEED, code, after=step + drift, now=NOW)
    for far in (-3, -2, 2, 3):
        code = code_at(RFC_SEED, step + far)
        if code not in {code_at(RFC_SEED, step + d) for d in (-1, 0, 1)}:
            with pytest.raises(TotpRejected):
                totp.matching_step(RFC_SEED, code, after=-1, now=NOW)
    for malformed in ("٢٨٧٠٨٢", "28708", "2870822", "28708x"):
        with pytest.raises(TotpRejected):
            totp.well_formed(malformed)


async def test_a_flipped_byte_of_the_sealed_state_opens_nothing(site: Site) -> None:
    session, _seed = await _enrolled(site.services)
    sealed = bytearray((await site.services.store.caseworker(session.caseworker.id)).totp_sealed or b"")
    assert totp.enrolled(bytes(sealed))
    sealed[len(sealed) // 2] ^= 1
    with pytest.raises(TamperedData):
        totp.open_state(bytes(sealed), session=session)
