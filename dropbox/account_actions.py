"""What a caseworker does with their own account: sign in and out, change the passphrase, turn
two-step login on or off, set the address notices go to. Each is audited (dropbox/audit.py).

accounts.py holds the key handling these build on (unwrapping, re-sealing grants); this module is
the caseworker-facing step around it: the second factor, the audit entry, wiping the old session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dropbox import accounts, audit, totp
from dropbox.accounts import AccountError, CaseworkerSession, KeyUnavailable, LoginFailed, key_usable
from dropbox.audit import AuditAction
from dropbox.config import Config
from dropbox.kdf_pool import KdfPool
from dropbox.storage import MembershipNotice, Store

_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}")


async def _audit(store: Store, session: CaseworkerSession, action: AuditAction) -> None:
    await audit.record(store, actor_id=session.caseworker.id, action=action)


@dataclass(frozen=True)
class SignedIn:
    """A new session's key, and what the caseworker must be told once, at this login."""

    session: CaseworkerSession
    #: Wrong two-step codes tried since the last right one (someone may hold the passphrase).
    wrong_codes: int
    #: Changes of the members of the caseworker's channels since their last login.
    notices: list[MembershipNotice]


async def sign_in(*, store: Store, kdf: KdfPool, config: Config, name: str, passphrase: str,
                  code: str, now: float | None = None) -> SignedIn:
    """Passphrase (unwraps the key), then the TOTP code if the caseworker enrolled one.

    Every failure is LoginFailed, whichever factor was wrong, except totp.TotpWait: after the
    right passphrase, too many wrong codes in a row make the next one wait (see totp.py). The
    TOTP seed is sealed under the caseworker's own key, so a code can only be checked after
    the passphrase was right.
    """
    session = await accounts.login(store=store, kdf=kdf, config=config, name=name, passphrase=passphrase)
    try:
        wrong_codes = await totp.check_login(store=store, session=session, code=code, now=now,
                                             cap=config.totp_backoff_max_seconds)
    except totp.TotpRejected as e:
        session.wipe()
        raise LoginFailed() from e
    except BaseException:
        session.wipe()
        raise
    await _audit(store, session, AuditAction.LOGIN)
    notices = await store.take_membership_notices(session.caseworker.id)
    return SignedIn(session=session, wrong_codes=wrong_codes, notices=notices)


async def sign_out(*, store: Store, session: CaseworkerSession) -> None:
    await _audit(store, session, AuditAction.LOGOUT)
    session.wipe()


# --- the account's settings ---------------------------------------------------------------------


class InvalidAddress(AccountError):
    """Not something that looks like an e-mail address."""


async def change_passphrase(*, store: Store, kdf: KdfPool, config: Config, session: CaseworkerSession,
                            current: str, new: str) -> CaseworkerSession:
    """A new key pair under a new passphrase, every grant re-sealed to it (LoginFailed if `current`
    is wrong, WeakPassphrase if `new` is weak). Returns the session with the new key, for the
    caller to keep in place of `session` (which is wiped) and to end every other session of the
    account: they hold the retired key, which opens nothing any more."""
    renewed = await accounts.change_passphrase(store=store, kdf=kdf, config=config, name=session.caseworker.name,
                                               old=current, new=new)
    session.wipe()
    await _audit(store, renewed, AuditAction.PASSPHRASE_CHANGED)
    return renewed


async def enrol_totp(*, store: Store, session: CaseworkerSession, seed: totp.TotpSeed, code: str) -> None:
    if not key_usable(session):
        raise KeyUnavailable()
    await totp.enrol(store=store, session=session, seed=seed, code=code)
    await _audit(store, session, AuditAction.TOTP_ENABLED)


async def disable_totp(*, store: Store, kdf: KdfPool, config: Config, session: CaseworkerSession, passphrase: str,
                       code: str) -> None:
    """Turn two-step login off: the passphrase (LoginFailed) and a current code are both needed,
    so a session left open or borrowed is not enough to weaken the account."""
    if not key_usable(session):
        raise KeyUnavailable()
    check = await accounts.login(store=store, kdf=kdf, config=config, name=session.caseworker.name,
                                 passphrase=passphrase)
    check.wipe()
    await totp.disable(store=store, session=session, code=code, cap=config.totp_backoff_max_seconds)
    await _audit(store, session, AuditAction.TOTP_DISABLED)


async def set_notice_address(*, store: Store, session: CaseworkerSession, address: str) -> None:
    """Where "something new arrived" notices go (empty: none). The audit log never holds it."""
    address = address.strip()
    if address and (len(address) > 254 or not _ADDRESS.fullmatch(address)):
        raise InvalidAddress()
    await store.update_caseworker(session.caseworker.id, email=address or None)
    await _audit(store, session, AuditAction.NOTICE_ADDRESS_CHANGED)
