"""The optional second factor: time-based one-time codes (RFC 6238) from an authenticator app.

The seed is sealed under a key only the caseworker's own private key derives
(`CaseworkerKey.subkey`), so the database alone never yields it and a code can only be checked
after the passphrase has unwrapped that key. The sealed value also records the last time step
used, and logins replace it by compare-and-swap, so each code works once: a code seen over
someone's shoulder, or two logins racing with the same code, get no second session.

Whoever has the passphrase could otherwise guess codes (one in 10^6 per try, three steps
accepted): wrong codes back off per account, 1 s after the third and doubling up to
`Config.totp_backoff_max_seconds` (15 min), stored in the account's row so a restart does not
reset it. Each attempt is charged before its code is checked (compare-and-swap), so parallel
logins get no extra tries; a right code refunds it and resets the count. The wait is bounded, so
someone who knows the passphrase can slow the real person down but never lock them out: at the
cap that is ~100 tries a day, a 0.03 % chance a day of hitting a code.

Enrolment shows the seed as a QR code rendered on the server (a PNG served as an image, no
script) and as text for typing in; it is kept only in the session until a first code confirms it.
"""

from __future__ import annotations

import hmac
import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NewType

import pyotp
import segno

from dropbox.sealing import TamperedData, open_json, seal_json
from dropbox.storage import Store

if TYPE_CHECKING:  # accounts imports this module to re-seal the state at a passphrase change
    from dropbox.accounts import CaseworkerSession

TotpSeed = NewType("TotpSeed", str)
"""Base32 seed shared with the authenticator app (160 bits)."""

STEP_SECONDS = 30
DIGITS = 6
#: Codes of one step before and after the current one are accepted (clock drift).
DRIFT_STEPS = 1
_SUBKEY_PURPOSE = b"dbx.totp"
#: Wrong codes in a row that cost no wait (a typo, a code that changed while typing).
FREE_TRIES = 2


class TotpError(Exception):
    """Root of the errors of this module."""


class TotpRejected(TotpError):
    """The code is missing, malformed, wrong, or was used already."""


class AlreadyEnrolled(TotpError):
    """The caseworker has a second factor already; it must be turned off before a new one."""


class NotEnrolled(TotpError):
    """There is no second factor to turn off."""


class TotpWait(TotpError):
    """Too many wrong codes in a row: no code is checked for `seconds` more."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"wait {seconds} s")
        self.seconds = seconds


def backoff_seconds(failures: int, *, cap: int) -> int:
    """The wait after `failures` wrong codes in a row: none for the first FREE_TRIES (typos),
    then 1 s doubling, at most `cap`."""
    if failures <= FREE_TRIES:
        return 0
    return min(cap, 2 ** min(failures - FREE_TRIES - 1, 40))


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


def well_formed(code: str) -> str:
    """The code without spaces; TotpRejected unless it is six ASCII digits."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        raise TotpRejected()
    return code


def matching_step(seed: TotpSeed, code: str, *, after: int, now: float | None = None) -> int:
    """The time step `code` belongs to, if it is within the drift window and later than `after`."""
    code = well_formed(code)
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


def reseal_state(sealed: bytes | None, *, old: CaseworkerSession, new: CaseworkerSession) -> bytes | None:
    """The sealed state moved from `old`'s key to `new`'s (a passphrase change makes a new key)."""
    if sealed is None:
        return None
    return seal_state(open_state(sealed, session=old), session=new)


async def _charge(store: Store, caseworker_id: str, *, now: float, cap: int) -> int:
    """Charge one attempt, or TotpWait if a wait is due. Returns the wrong codes before it."""
    cw = await store.caseworker(caseworker_id)
    second = int(now)
    if cw.totp_next_try > second:
        raise TotpWait(cw.totp_next_try - second)
    charged = await store.claim_totp_attempt(cw.id, failures=cw.totp_failures, now=second,
                                             next_try=second + backoff_seconds(cw.totp_failures + 1, cap=cap))
    if not charged:  # another attempt was charged a moment ago, and with it a wait of at least 1 s
        raise TotpWait(max(1, (await store.caseworker(caseworker_id)).totp_next_try - second))
    return cw.totp_failures


async def _checked(store: Store, session: CaseworkerSession, code: str, *, now: float | None,
                   cap: int) -> tuple[bytes, TotpState, int, int]:
    """The stored sealed state, its contents, the step `code` matches and the wrong codes before
    it, with the attempt charged first and refunded once the code is right. NotEnrolled without
    a second factor. A malformed code (empty: forgotten) is refused without being charged: it
    cannot be a guess."""
    if (await store.caseworker(session.caseworker.id)).totp_sealed is None:
        raise NotEnrolled()
    well_formed(code)
    moment = time.time() if now is None else now
    failures = await _charge(store, session.caseworker.id, now=moment, cap=cap)
    current = await store.caseworker(session.caseworker.id)
    if current.totp_sealed is None:
        raise NotEnrolled()
    state = open_state(current.totp_sealed, session=session)
    step = matching_step(state.seed, code, after=state.last_step, now=moment)
    await store.update_caseworker(current.id, totp_failures=0, totp_next_try=0)
    return current.totp_sealed, state, step, failures


async def check_login(*, store: Store, session: CaseworkerSession, code: str, cap: int,
                      now: float | None = None) -> int:
    """After the passphrase: nothing to do without a second factor; otherwise the code must match.
    Returns how many wrong codes were tried since the last right one (to tell the person).

    The account is read afresh; a concurrent login that consumed the same code makes the swap,
    and so this login, fail.
    """
    try:
        sealed, state, step, failures = await _checked(store, session, code, now=now, cap=cap)
    except NotEnrolled:
        return 0
    used = seal_state(TotpState(state.seed, step), session=session)
    if not await store.swap_totp(session.caseworker.id, expected=sealed, new=used):
        raise TotpRejected()
    return failures


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


async def disable(*, store: Store, session: CaseworkerSession, code: str, cap: int, now: float | None = None) -> None:
    """Turn the second factor off; a current code is required (and the passphrase, checked by the
    caller), with the same backoff as at login, so a borrowed session cannot try its way through."""
    sealed, _state, _step, _failures = await _checked(store, session, code, now=now, cap=cap)
    if not await store.swap_totp(session.caseworker.id, expected=sealed, new=None):
        raise TotpRejected()


def enrolled(sealed: bytes | None) -> bool:
    return sealed is not None
