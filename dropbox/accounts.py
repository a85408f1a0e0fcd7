"""Caseworker accounts: creating them, logging in, changing passphrases, granting reports.

A caseworker's identity *is* their key pair: logging in means unwrapping the private key with the
passphrase, and access to a report means holding a grant sealed to that key. An account that is
added later therefore sees nothing until someone who can already read a report re-grants it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dropbox.blobs import new_id
from dropbox.config import Config
from dropbox.install import today
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
    rewrap_caseworker_key,
    unwrap_caseworker_key,
)
from dropbox.storage import Caseworker, NotFound, Store

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Shorter passphrases are refused outright; generated ones are 7 words (~90 bits).
MIN_PASSPHRASE_CHARS = 12


class AccountError(Exception):
    """Root of the errors of this module."""


class InvalidName(AccountError):
    """A caseworker name must be 1–64 letters, digits, dot, dash or underscore."""


class WeakPassphrase(AccountError):
    """The passphrase is too short (or too long) to be accepted."""


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


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidName(name)
    return name


def check_passphrase(passphrase: str) -> Passphrase:
    stripped = passphrase.strip()
    if len(stripped) < MIN_PASSPHRASE_CHARS or len(stripped.encode()) > 1024:
        raise WeakPassphrase()
    return Passphrase(stripped)


def _wrapped(cw: Caseworker) -> WrappedPrivateKey:
    return WrappedPrivateKey(public_key=cw.public_key, wrapped=cw.wrapped_key,
                             kdf=KdfParams(salt=cw.kdf_salt, ops=cw.kdf_ops, mem=cw.kdf_mem))


async def add_caseworker(
    *, store: Store, kdf: KdfPool, config: Config, name: str, passphrase: str,
    is_admin: bool = False, channel_ids: list[str] | None = None,
) -> Caseworker:
    """A new account. Without `channel_ids` it joins the default channel, so a fresh install works."""
    check_name(name)
    secret = check_passphrase(passphrase)
    wrapped = await kdf.run(create_caseworker_key, passphrase=secret, ops=config.kdf_ops, mem=config.kdf_mem)
    if channel_ids is None:
        channel_ids = [c.id for c in await store.channels() if c.is_default]
    cw = Caseworker(
        id=new_id(), name=name, public_key=wrapped.public_key, wrapped_key=wrapped.wrapped,
        kdf_salt=wrapped.kdf.salt, kdf_ops=wrapped.kdf.ops, kdf_mem=wrapped.kdf.mem, is_admin=is_admin,
        disabled=False, totp_sealed=None, email=None, created_day=today().isoformat(),
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
    *, store: Store, kdf: KdfPool, config: Config, name: str, old: str, new: str
) -> None:
    """Re-wrap only the private key: grants stay valid, nothing else is touched."""
    secret = check_passphrase(new)
    session = await login(store=store, kdf=kdf, config=config, name=name, passphrase=old)
    wrapped = await kdf.run(rewrap_caseworker_key, session.key, new_passphrase=secret,
                            ops=config.kdf_ops, mem=config.kdf_mem)
    session.wipe()
    await store.update_caseworker(session.caseworker.id, wrapped_key=wrapped.wrapped, kdf_salt=wrapped.kdf.salt,
                                  kdf_ops=wrapped.kdf.ops, kdf_mem=wrapped.kdf.mem)


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
