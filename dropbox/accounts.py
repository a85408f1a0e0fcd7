"""Caseworker accounts: creating them, logging in, changing passphrases, granting reports.

A caseworker's identity *is* their key pair: logging in means unwrapping the private key with the
passphrase, and access to a report means holding a grant sealed to that key. An account that is
added later therefore sees nothing until someone who can already read a report re-grants it.

A passphrase change makes a new key pair and re-seals every grant (and the TOTP state) to it, so
a backup taken before the change plus the old passphrase opens only a retired key. A chosen
passphrase must be at least as strong as the floor of generated ones (`MIN_PASSPHRASE_BITS`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dropbox import totp
from dropbox.config import Config
from dropbox.ids import new_id, today
from dropbox.kdf_pool import KdfPool
from dropbox.sealing import (
    CaseworkerKey,
    InvalidSecret,
    KdfParams,
    Passphrase,
    ReportKeys,
    TamperedData,
    WrappedPrivateKey,
    WrongSecret,
    check_passphrase_shape,
    create_caseworker_key,
    replace_caseworker_key,
    unwrap_caseworker_key,
)
from dropbox.storage import Caseworker, Conflict, NotFound, Store

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Shorter passphrases are refused outright; generated ones are 7 words (~90 bits).
MIN_PASSPHRASE_CHARS = 12
#: A chosen passphrase must be estimated at least this strong (zxcvbn's guess count, in bits):
#: under the ~90 bits of a generated one, and above what an offline attacker with a database
#: copy gets through at one Argon2id run per guess.
MIN_PASSPHRASE_BITS = 60
#: zxcvbn refuses longer input; a longer passphrase is judged by its first this many characters.
_ESTIMATE_CHARS = 72
#: How often a passphrase change is retried when a grant arrives or goes while it runs.
_CHANGE_ATTEMPTS = 3


class AccountError(Exception):
    """Root of the errors of this module."""


class InvalidName(AccountError):
    """A caseworker name must be 1–64 letters, digits, dot, dash or underscore."""


class WeakPassphrase(AccountError):
    """The passphrase is too short, too easy to guess, or too long to be accepted."""


class ChangeConflict(AccountError):
    """The account's grants kept changing while its passphrase was being changed; nothing changed."""


class KeyUnavailable(AccountError):
    """The session's private key is gone (wiped at logout or idle timeout): nothing can be opened."""


class LoginFailed(AccountError):
    """Unknown name, wrong passphrase or disabled account: never told apart."""


class MalformedLogin(LoginFailed):
    """A passphrase no key could have (empty, too long), refused before any Argon2id work.

    Shown like every LoginFailed, but not counted as a guess: it cost nothing to check, so
    counting it would let anyone spend the failure budget, and slow everyone, for free.
    """


@dataclass
class CaseworkerSession:
    """What a logged-in caseworker's server-side session holds."""

    caseworker: Caseworker
    key: CaseworkerKey

    def wipe(self) -> None:
        self.key.wipe()


def key_usable(session: CaseworkerSession) -> bool:
    """False once `wipe()` dropped the private key (logout, idle timeout)."""
    return not session.key.wiped and session.key.public_key == session.caseworker.public_key


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidName(name)
    return name


def strength_bits(passphrase: str, *, user_inputs: Sequence[str] = ()) -> float:
    """zxcvbn's estimate of the guesses needed, in bits: dictionary words, names, keyboard walks,
    repeats and `user_inputs` (the account name) count for what they are worth, not per character.

    zxcvbn is imported here, on first use: its word lists are 13 MiB of Python objects, and the
    server, which needs them only when a caseworker chooses a passphrase, would otherwise carry
    them from its start (a sixth of its memory at rest)."""
    from zxcvbn import zxcvbn  # noqa: PLC0415 (see above)

    guesses_log10 = zxcvbn(passphrase[:_ESTIMATE_CHARS], user_inputs=list(user_inputs))["guesses_log10"]
    return float(guesses_log10) * math.log2(10)


def check_passphrase(passphrase: str, *, user_inputs: Sequence[str] = ()) -> Passphrase:
    stripped = passphrase.strip()
    if len(stripped) < MIN_PASSPHRASE_CHARS or len(stripped.encode()) > 1024:
        raise WeakPassphrase()
    if strength_bits(stripped, user_inputs=user_inputs) < MIN_PASSPHRASE_BITS:
        raise WeakPassphrase()
    return Passphrase(stripped)


def _wrapped(cw: Caseworker) -> WrappedPrivateKey:
    return WrappedPrivateKey(public_key=cw.public_key, wrapped=cw.wrapped_key,
                             kdf=KdfParams(salt=cw.kdf_salt, ops=cw.kdf_ops, mem=cw.kdf_mem))


async def add_caseworker(
    *, store: Store, kdf: KdfPool, config: Config, name: str, passphrase: str,
    is_admin: bool = False, channel_ids: list[str] | None = None, generated: bool = False,
) -> Caseworker:
    """A new account. Without `channel_ids` it joins the default channel, so a fresh install works.
    A `generated` passphrase was seen by whoever added the account: it must be changed at first login."""
    check_name(name)
    secret = check_passphrase(passphrase, user_inputs=(name,))
    wrapped = await kdf.run(create_caseworker_key, passphrase=secret, ops=config.kdf_ops, mem=config.kdf_mem)
    if channel_ids is None:
        channel_ids = [c.id for c in await store.channels() if c.is_default]
    cw = Caseworker(
        id=new_id(), name=name, public_key=wrapped.public_key, wrapped_key=wrapped.wrapped,
        kdf_salt=wrapped.kdf.salt, kdf_ops=wrapped.kdf.ops, kdf_mem=wrapped.kdf.mem, is_admin=is_admin,
        disabled=False, totp_sealed=None, email=None, created_day=today().isoformat(),
        must_change_passphrase=generated,
    )
    await store.add_caseworker(cw, channel_ids=channel_ids)
    return cw


async def login(*, store: Store, kdf: KdfPool, config: Config, name: str, passphrase: str) -> CaseworkerSession:
    """Unwrap the caseworker's key. Every failure is LoginFailed, after the same Argon2id work:
    an unknown name costs one run at the install's cost too, so timing does not reveal names."""
    try:
        check_passphrase_shape(Passphrase(passphrase))  # before the name lookup: says nothing about names
    except InvalidSecret as e:
        raise MalformedLogin() from e
    try:
        cw = await store.caseworker_by_name(name)
    except NotFound:
        cw = None
    wrapped = _wrapped(cw) if cw else WrappedPrivateKey(
        public_key=bytes(32), wrapped=bytes(80), kdf=KdfParams(salt=bytes(16), ops=config.kdf_ops, mem=config.kdf_mem))
    try:
        key = await kdf.run(unwrap_caseworker_key, wrapped, passphrase=Passphrase(passphrase))
    except (WrongSecret, InvalidSecret, TamperedData) as e:
        raise LoginFailed() from e
    if cw is None or cw.disabled:
        key.wipe()
        raise LoginFailed()
    return CaseworkerSession(caseworker=cw, key=key)


async def change_passphrase(
    *, store: Store, kdf: KdfPool, config: Config, name: str, old: str, new: str, generated: bool = False,
) -> CaseworkerSession:
    """A new key pair under the new passphrase, every grant and the TOTP state re-sealed to it in
    one transaction; returns a session holding the new key (the caller ends every other session).

    LoginFailed if `old` is wrong, WeakPassphrase if `new` is weak, ChangeConflict if grants kept
    changing meanwhile. A `generated` new passphrase (shown to whoever ran the command) must be
    changed again at the next login. A grant that does not open with the old key (sealed to a key
    retired by an earlier change) is kept as it is: it was unreadable before and stays so.
    """
    secret = check_passphrase(new, user_inputs=(name,))
    current = await login(store=store, kdf=kdf, config=config, name=name, passphrase=old)
    try:
        wrapped, key = await kdf.run(replace_caseworker_key, passphrase=secret, ops=config.kdf_ops,
                                     mem=config.kdf_mem)
    except BaseException:
        current.wipe()
        raise
    try:
        for _ in range(_CHANGE_ATTEMPTS):
            cw = await store.caseworker(current.caseworker.id)
            if cw.public_key != current.key.public_key:
                raise LoginFailed()  # changed by someone else a moment ago: the old passphrase is gone
            renewed = CaseworkerSession(caseworker=dataclasses.replace(
                cw, public_key=wrapped.public_key, wrapped_key=wrapped.wrapped, kdf_salt=wrapped.kdf.salt,
                kdf_ops=wrapped.kdf.ops, kdf_mem=wrapped.kdf.mem, must_change_passphrase=generated), key=key)
            grants = [(report_id, _reseal(sealed, current, renewed))
                      for report_id, sealed in await store.grants_of(cw.id)]
            own = totp.reseal_state(cw.totp_sealed, old=CaseworkerSession(caseworker=cw, key=current.key),
                                    new=renewed)
            try:
                await store.replace_caseworker_key(
                    cw.id, expected_public_key=cw.public_key, expected_totp=cw.totp_sealed,
                    public_key=wrapped.public_key, wrapped_key=wrapped.wrapped, kdf_salt=wrapped.kdf.salt,
                    kdf_ops=wrapped.kdf.ops, kdf_mem=wrapped.kdf.mem, totp_sealed=own, must_change=generated,
                    grants=grants)
            except Conflict:
                continue
            return CaseworkerSession(caseworker=await store.caseworker(cw.id), key=key)
        raise ChangeConflict()
    except BaseException:
        key.wipe()
        raise
    finally:
        current.wipe()


def _reseal(sealed: bytes, old: CaseworkerSession, new: CaseworkerSession) -> bytes:
    try:
        keys = old.key.open_report_keys(sealed)
    except TamperedData:
        return sealed
    return keys.seal_for(new.key.public_key)


async def set_disabled(*, store: Store, name: str, disabled: bool) -> None:
    cw = await store.caseworker_by_name(name)
    await store.update_caseworker(cw.id, disabled=int(disabled))


async def report_keys(*, store: Store, session: CaseworkerSession, report_id: str) -> ReportKeys:
    """The keys of a report this caseworker was granted; NotFound for any other report."""
    sealed = await store.grant(report_id=report_id, caseworker_id=session.caseworker.id)
    return session.key.open_report_keys(sealed)


async def grant_all(*, store: Store, granter: CaseworkerSession, grantee_name: str) -> int:
    """Re-seal every report the granter can read to the grantee. Returns how many were new."""
    grantee = await store.caseworker_by_name(grantee_name)
    rows = []
    for report_id, sealed in await store.grants_of(granter.caseworker.id):
        keys = granter.key.open_report_keys(sealed)
        rows.append((report_id, grantee.id, keys.seal_for(grantee.public_key)))
    return await store.add_grants(rows)


async def grant_report(*, store: Store, granter: CaseworkerSession, report_id: str, grantee_id: str) -> bool:
    keys = await report_keys(store=store, session=granter, report_id=report_id)
    grantee = await store.caseworker(grantee_id)
    return await store.add_grants([(report_id, grantee.id, keys.seal_for(grantee.public_key))]) == 1
