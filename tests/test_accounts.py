"""Caseworker accounts: a passphrase change recovers from its compromise (M3), chosen passphrases
are as strong as generated ones (I3), and a migration carries old installs forward."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox import accounts, totp
from dropbox.accounts import CaseworkerSession
from dropbox.blobs import BlobStore
from dropbox.config import Config
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.passphrases import new_passphrase
from dropbox.sealing import KdfParams, Passphrase, TamperedData, WrappedPrivateKey, unwrap_caseworker_key
from dropbox.storage import SCHEMA_VERSION, Caseworker, Conflict, NotFound, Store
from dropbox.submissions import open_mailbox
from dropbox.web.sessions import SESSIONS
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.clock import FakeClock
from tests.support.domain import (
    hand_in,
    submit,  # noqa: F401
)
from tests.support.installs import PASSPHRASES, login

NEW = "alice moves to a quiet flat near the harbour"


def _backup(config: Config, to: Path) -> Path:
    """What a backup taken now holds: a consistent copy of the database (WAL included)."""
    source = sqlite3.connect(config.db_path)
    target = sqlite3.connect(to)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return to


def _key_in(db: Path, name: str, passphrase: str) -> CaseworkerSession:
    """The private key an attacker unwraps from `db` with `passphrase` (as a session, for totp)."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM caseworkers WHERE name = ?", (name,)).fetchone()
    wrapped = WrappedPrivateKey(public_key=row["public_key"], wrapped=row["wrapped_key"],
                                kdf=KdfParams(salt=row["kdf_salt"], ops=row["kdf_ops"], mem=row["kdf_mem"]))
    key = unwrap_caseworker_key(wrapped, passphrase=Passphrase(passphrase))
    return CaseworkerSession(caseworker=Caseworker(**{k: row[k] for k in row.keys()}), key=key)  # noqa: SIM118


async def _enrol(site: Site, name: str) -> None:
    svc = site.services
    session = await accounts.login(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name=name,
                                   passphrase=PASSPHRASES[name])
    seed = totp.new_seed()
    await totp.enrol(store=svc.store, session=session, seed=seed, code=totp.code_at(seed, totp.current_step()))


async def test_an_old_backup_and_the_old_passphrase_open_nothing_after_a_change(site: Site, tmp_path: Path) -> None:
    # Given alice with two reports and two-step login, and a backup taken now
    svc = site.services
    reports = [await submit(svc, text=f"report {i}") for i in range(2)]
    await _enrol(site, "alice")
    backup = _backup(svc.config, tmp_path / "backup.sqlite3")
    old = _key_in(backup, "alice", PASSPHRASES["alice"])
    store = svc.store
    for _report_id, sealed in await store.grants_of(old.caseworker.id):  # the backup's key works today
        old.key.open_report_keys(sealed)
    # When alice changes her passphrase in the web app
    alice = await site.signed_in("alice", totp=totp.code_at(await _seed(site, old), totp.current_step() + 1))
    done = await alice.post("/en/settings/passphrase", {"current": PASSPHRASES["alice"], "new": NEW, "repeat": NEW})
    assert done.status == 303
    # Then the key from the backup opens no grant and not the TOTP state of the current database
    grants = await store.grants_of(old.caseworker.id)
    assert {r for r, _ in grants} == {r.report_id for r in reports}
    for _report_id, sealed in grants:
        with pytest.raises(TamperedData):
            old.key.open_report_keys(sealed)
    current = await store.caseworker(old.caseworker.id)
    assert current.public_key != old.caseworker.public_key
    with pytest.raises(TamperedData):
        totp.open_state(current.totp_sealed, session=old)  # type: ignore[arg-type]
    # And the reports still open, in this session and with the new passphrase elsewhere
    for report in reports:
        assert "report" in await alice.text(f"/en/reports/{report.report_id}")
    fresh = _key_in(Path(svc.config.db_path), "alice", NEW)
    assert len({fresh.key.open_report_keys(s).report_key for _, s in grants}) == 2
    assert totp.open_state(current.totp_sealed, session=fresh).last_step >= 0  # type: ignore[arg-type]
    with pytest.raises(accounts.LoginFailed):
        await accounts.login(store=store, kdf=svc.staff_kdf, config=svc.config, name="alice",
                             passphrase=PASSPHRASES["alice"])


async def _seed(site: Site, session: CaseworkerSession) -> totp.TotpSeed:
    stored = (await site.services.store.caseworker(session.caseworker.id)).totp_sealed
    return totp.open_state(stored, session=session).seed  # type: ignore[arg-type]


async def test_a_change_ends_the_accounts_other_sessions_only(site: Site) -> None:
    # Given alice signed in in two browsers, and bob in one
    here, there = await site.signed_in("alice"), await site.signed_in("alice")
    bob = await site.signed_in("bob")
    # When she changes her passphrase in one
    await here.post("/en/settings/passphrase", {"current": PASSPHRASES["alice"], "new": NEW, "repeat": NEW})
    # Then that one goes on, the other is signed out, bob is not
    page = await here.text("/en/reports")
    assert "You were signed out everywhere else" in page
    assert (await there.get("/en/reports")).headers["Location"] == "/en/login"
    assert (await bob.get("/en/reports")).status == 200


async def test_a_change_made_elsewhere_ends_sessions_holding_the_retired_key(site: Site) -> None:
    # Given alice signed in, when her passphrase is changed outside this app (the CLI's path)
    alice = await site.signed_in("alice")
    svc = site.services
    renewed = await accounts.change_passphrase(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name="alice",
                                               old=PASSPHRASES["alice"], new=NEW)
    renewed.wipe()
    # Then her session, which holds the retired key, ends at its next request
    assert (await alice.get("/en/reports")).headers["Location"] == "/en/login"


async def test_a_generated_new_passphrase_must_be_changed_again(site: Site) -> None:
    svc = site.services
    generated, _bits = new_passphrase()
    renewed = await accounts.change_passphrase(store=svc.store, kdf=svc.staff_kdf, config=svc.config, name="bob",
                                               old=PASSPHRASES["bob"], new=generated, generated=True)
    renewed.wipe()
    bob = await site.signed_in("bob", passphrase=generated)
    assert (await bob.get("/en/reports")).headers["Location"] == "/en/settings#passphrase"


async def test_caseworker_sessions_end_after_their_absolute_lifetime(site: Site) -> None:
    clock = FakeClock()
    site.app[SESSIONS]._clock = clock  # white-box: move the session store's clock instead of sleeping
    alice = await site.signed_in("alice")
    for _ in range(12 * 4):  # busy all day, a click every 15 minutes
        assert (await alice.get("/en/reports")).status == 200
        clock.advance(15 * 60)
    assert (await alice.get("/en/reports")).headers["Location"] == "/en/login"


async def test_the_key_swap_refuses_when_grants_changed_meanwhile_and_writes_nothing(site: Site) -> None:
    # Given alice with one report, when a second arrives between reading her grants and the swap
    svc = site.services
    await submit(svc, text="first")
    alice = await svc.store.caseworker_by_name("alice")
    seen = await svc.store.grants_of(alice.id)
    await submit(svc, text="second")
    # Then the swap is refused as a whole: the key and every grant stay as they were
    with pytest.raises(Conflict):
        await svc.store.replace_caseworker_key(
            alice.id, expected_public_key=alice.public_key, expected_totp=None, public_key=b"n" * 32,
            wrapped_key=b"w", kdf_salt=b"s" * 16, kdf_ops=1, kdf_mem=8192, totp_sealed=None, must_change=False,
            grants=[(report_id, b"resealed") for report_id, _ in seen])
    assert (await svc.store.caseworker(alice.id)).public_key == alice.public_key
    assert b"resealed" not in {sealed for _, sealed in await svc.store.grants_of(alice.id)}


# --- I3: chosen passphrases ----------------------------------------------------------------------


@pytest.mark.parametrize("weak", ["password1234", "correcthorsebatterystaple", "qwertyuiopasdfgh",
                                  "alice alice alice alice", "Copenhagen2024!", "aaaaaaaaaaaaaaaaaaaaaaaa"])
def test_guessable_passphrases_are_refused_however_long(weak: str) -> None:
    with pytest.raises(accounts.WeakPassphrase):
        accounts.check_passphrase(weak, user_inputs=("alice",))


def test_generated_passphrases_pass_the_floor() -> None:
    for _ in range(50):
        passphrase, bits = new_passphrase()
        assert bits > 90 and accounts.strength_bits(passphrase) >= accounts.MIN_PASSPHRASE_BITS
        accounts.check_passphrase(passphrase)


async def test_a_weak_new_passphrase_is_refused_over_http(site: Site) -> None:
    alice = await site.signed_in("alice")
    weak = "passwordpassword1"
    await alice.post("/en/settings/passphrase", {"current": PASSPHRASES["alice"], "new": weak, "repeat": weak})
    assert "too easy to guess" in await alice.text("/en/settings")
    assert (await (await site.agent()).login("alice")).status == 303  # nothing changed


# --- migration -------------------------------------------------------------------------------------


async def test_migration_5_carries_an_old_install_forward(tmp_path: Path) -> None:
    """A database at schema 2 (today's main) keeps its accounts and gains the new columns."""
    from dropbox.migrations import _MIGRATIONS

    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:
        for n in (1, 2):
            conn.executescript(_MIGRATIONS[n])
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO caseworkers (id, name, public_key, wrapped_key, kdf_salt, kdf_ops, kdf_mem,"
                     " created_day) VALUES ('c1', 'old', x'00', x'00', x'00', 1, 8192, '2026-01-01')")
    store = await Store.open(db, migrate=True)
    try:
        cw = await store.caseworker("c1")
        assert cw.name == "old" and not cw.must_change_passphrase and cw.totp_failures == 0
        assert await store.take_membership_notices("c1") == [] and await store.pending_memberships() == []
    finally:
        await store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- through the domain functions, on the conftest install ---------------------------------------


async def test_caseworker_not_granted_cannot_open_until_granted(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    # Given bob joins after the report arrived
    await accounts.add_caseworker(store=store, kdf=kdf, config=config, name="bob", passphrase=PASSPHRASES["bob"])
    bob = await login(store, kdf, config, "bob")
    with pytest.raises(NotFound):
        await accounts.report_keys(store=store, session=bob, report_id=access.report_id)
    # Even if someone copies alice's grant row to bob, bob's key does not open it.
    cur = sqlite3.connect(config.db_path)
    with cur:
        cur.execute("INSERT INTO report_grants SELECT report_id, ?, sealed_keys FROM report_grants",
                    (bob.caseworker.id,))
    cur.close()
    with pytest.raises(TamperedData):
        await accounts.report_keys(store=store, session=bob, report_id=access.report_id)
    await store._writer.execute("DELETE FROM report_grants WHERE caseworker_id = ?", (bob.caseworker.id,))
    # When alice grants everything she can read to bob
    granted = await accounts.grant_all(store=store, granter=await login(store, kdf, config, "alice"),
                                       grantee_name="bob")
    assert granted == 1
    keys = await accounts.report_keys(store=store, session=bob, report_id=access.report_id)
    assert keys.report_key == access.report_key


async def test_passphrase_change_keeps_access(
    store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, alice: Caseworker
) -> None:
    receipt = await hand_in(store, kdf, install, blobs, config)
    access = await open_mailbox(store=store, kdf=kdf, install=install, receipt_text=receipt)
    renewed = await accounts.change_passphrase(store=store, kdf=kdf, config=config, name="alice",
                                               old=PASSPHRASES["alice"], new="a brand new passphrase for alice")
    renewed.wipe()
    with pytest.raises(accounts.LoginFailed):
        await login(store, kdf, config, "alice")
    session = await accounts.login(store=store, kdf=kdf, config=config, name="alice",
                                   passphrase="a brand new passphrase for alice")
    assert (await accounts.report_keys(store=store, session=session, report_id=access.report_id)).report_key \
        == access.report_key


async def test_disabled_and_unknown_caseworkers_cannot_log_in(store: Store, kdf: KdfPool, config: Config,
                                                              alice: Caseworker) -> None:
    await accounts.set_disabled(store=store, name="alice", disabled=True)
    for name, passphrase in (("alice", PASSPHRASES["alice"]), ("nobody", "whatever passphrase")):
        with pytest.raises(accounts.LoginFailed):
            await accounts.login(store=store, kdf=kdf, config=config, name=name, passphrase=passphrase)


def test_the_server_loads_the_passphrase_estimator_only_when_a_passphrase_is_judged() -> None:
    # zxcvbn's word lists are 13 MiB of Python objects: a server at rest must not carry them
    # (issue 16: the server's memory during an upload), yet a passphrase is still judged by them
    script = ("import sys, run, dropbox.web.server, dropbox.web.apps, dropbox.caseworker.routes\n"
              "from dropbox import accounts\n"
              "assert 'zxcvbn' not in sys.modules, 'loaded at start'\n"
              "assert accounts.strength_bits('password1234') < accounts.MIN_PASSPHRASE_BITS\n"
              "assert 'zxcvbn' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent.parent, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
