"""The optional second factor: time-based one-time codes (RFC 6238) from an authenticator app.

The seed is sealed under a key only the caseworker's own private key derives
(`CaseworkerKey.subkey`), so the database alone never yields it and a code can only be checked
after the passphrase has unwrapped that key. The sealed value also records the last time step
used, and logins replace it by compare-and-swap, so each code works once: a code seen over
someone's shoulder, or two logins racing with the same code, get no second session.

Enrolment shows the seed as a QR code rendered on the server (a PNG served as an image, no
script) and as text for typing in; it is kept only in the session until a first code confirms it.
"""

from __future__ import annotations

import hmac
import io
import time
from dataclasses import dataclass
from typing import NewType

import pyotp
import segno

from dropbox.accounts import CaseworkerSession
from dropbox.sealing import TamperedData, open_json, seal_json
from dropbox.storage import Store

TotpSeed = NewType("TotpSeed", str)
"""Base32 seed shared with the authenticator app (160 bits)."""

STEP_SECONDS = 30
DIGITS = 6
#: Codes of one step before and after the current one are accepted (clock drift).
DRIFT_STEPS = 1
_SUBKEY_PURPOSE = b"dbx.totp"


class TotpError(Exception):
    """Root of the errors of this module."""


class TotpRejected(TotpError):
    """The code is missing, malformed, wrong, or was used already."""


class AlreadyEnrolled(TotpError):
    """The caseworker has a second factor already; it must be turned off before a new one."""


class NotEnrolled(TotpError):
    """There is no second factor to turn off."""


@dataclass(frozen=True)
class TotpState:
    seed: TotpSeed
    last_step: int


def new_seed() -> TotpSeed:
    return TotpSeed(pyotp.random_base32(32))


def grouped(seed: TotpSeed) -> str:
    """The seed in groups of four for typing into an app by hand."""
    return " ".join(seed[i : i + 4] for i in range(0, len(seed), 4))


def provisioning_uri(seed: TotpSeed, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=issuer)


def qr_png(uri: str) -> bytes:
    """The otpauth:// URI as a PNG QR code (black on white, quiet zone included)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=6, border=4)
    return buffer.getvalue()


def code_at(seed: TotpSeed, step: int) -> str:
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(seed: TotpSeed, code: str, *, after: int, now: float | None = None) -> int:
    """The time step `code` belongs to, if it is within the drift window and later than `after`."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        raise TotpRejected()
    step = current_step(now)
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if candidate > after and hmac.compare_digest(code_at(seed, candidate), code):
            return candidate
    raise TotpRejected()


def _key(session: CaseworkerSession) -> bytes:
    return session.key.subkey(_SUBKEY_PURPOSE)


def _context(session: CaseworkerSession) -> str:
    return f"totp:{session.caseworker.id}"


def seal_state(state: TotpState, *, session: CaseworkerSession) -> bytes:
    return seal_json({"seed": state.seed, "last_step": state.last_step}, key=_key(session),
                     context=_context(session))


def open_state(sealed: bytes, *, session: CaseworkerSession) -> TotpState:
    value = open_json(sealed, key=_key(session), context=_context(session))
    if not isinstance(value, dict) or not isinstance(value.get("seed"), str) \
            or not isinstance(value.get("last_step"), int):
        raise TamperedData("TOTP state has the wrong shape")
    return TotpState(seed=TotpSeed(value["seed"]), last_step=value["last_step"])


async def check_login(*, store: Store, session: CaseworkerSession, code: str, now: float | None = None) -> None:
    """After the passphrase: nothing to do without a second factor; otherwise the code must match.

    `session.caseworker` was read by the login a moment ago, so its sealed state is current; a
    concurrent login that consumed the same code makes the swap, and so this login, fail.
    """
    sealed = session.caseworker.totp_sealed
    if sealed is None:
        return
    state = open_state(sealed, session=session)
    step = matching_step(state.seed, code, after=state.last_step, now=now)
    used = seal_state(TotpState(state.seed, step), session=session)
    if not await store.swap_totp(session.caseworker.id, expected=sealed, new=used):
        raise TotpRejected()


async def enrol(*, store: Store, session: CaseworkerSession, seed: TotpSeed, code: str,
                now: float | None = None) -> None:
    """Turn the second factor on once a first code from the app proves it was set up correctly."""
    current = await store.caseworker(session.caseworker.id)
    if current.totp_sealed is not None:
        raise AlreadyEnrolled()
    step = matching_step(seed, code, after=-1, now=now)
    sealed = seal_state(TotpState(seed, step), session=session)
    if not await store.swap_totp(current.id, expected=None, new=sealed):
        raise AlreadyEnrolled()


async def disable(*, store: Store, session: CaseworkerSession, code: str, now: float | None = None) -> None:
    """Turn the second factor off; a current code is required, so a borrowed session cannot."""
    current = await store.caseworker(session.caseworker.id)
    if current.totp_sealed is None:
        raise NotEnrolled()
    state = open_state(current.totp_sealed, session=session)
    matching_step(state.seed, code, after=state.last_step, now=now)
    if not await store.swap_totp(current.id, expected=current.totp_sealed, new=None):
        raise TotpRejected()


def enrolled(sealed: bytes | None) -> bool:
    return sealed is not None
