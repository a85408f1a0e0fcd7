"""How the receipt code gets back to the server for the "type it back" step, with nothing stored.

The receipt page asks the person to type their code back before it lets them go. The server keeps
no trace of the code's secret (only a locator, a salt and a key wrapped under the Argon2id-derived
key), and the submission path has no cookie
or session, so the code has to travel with the confirmation form itself. It does, as a hidden
field holding the code *sealed* (XChaCha20-Poly1305, dropbox.sealing.seal) under a key that
exists only in this process's memory, together with when it was issued.

Why sealed rather than the plain code in a hidden field:

- Integrity. The confirmation form has no CSRF token (there is no session to bind one to), so
  any site can make a browser POST to it. With a plain hidden field, a page elsewhere could make
  this site display "your receipt code is …" with a code of the attacker's choosing (one for a
  report the attacker made), luring a person into writing into a mailbox the attacker reads.
  A sealed token only ever shows a code this process issued, and only for TOKEN_LIFETIME.
- Nothing new is exposed: the token leaves the server only in the page that already shows the
  code in the clear, and it is useless after a restart or TOKEN_LIFETIME.

What it costs: after a restart (new key) or once the token is too old, a mistyped confirmation
can no longer show the code again. The page then says so plainly and points the person to the
mailbox login, which is the real test of whether they saved the code. The report itself is
unaffected: it was stored before the receipt was shown.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time
from collections.abc import Callable

from dropbox.sealing import KEY_BYTES, InvalidSecret, ReceiptCode, TamperedData, open_sealed, parse_receipt, seal

#: How long after the receipt page a mistyped confirmation can still show the code again.
TOKEN_LIFETIME_SECONDS = 6 * 3600
#: A token is ~400 characters; anything much longer is not one of ours.
MAX_TOKEN_CHARS = 1024

_CONTEXT = "receipt-confirmation"


class TokenUnusable(Exception):
    """The token is forged, damaged, from before a restart, or too old. Deliberately one error."""


class ReceiptTokens:
    """Seals receipt codes for the confirmation form under a key held only in memory."""

    def __init__(self, *, lifetime_seconds: float = TOKEN_LIFETIME_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._key = secrets.token_bytes(KEY_BYTES)
        self._lifetime = lifetime_seconds
        self._clock = clock

    def issue(self, code: ReceiptCode) -> str:
        plaintext = f"{code}:{int(self._clock())}".encode("ascii")
        return base64.urlsafe_b64encode(seal(plaintext, key=self._key, context=_CONTEXT)).decode("ascii")

    def open(self, token: str) -> ReceiptCode:
        """The code sealed in `token`, or TokenUnusable."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise TokenUnusable()
        try:
            sealed = base64.urlsafe_b64decode(token.encode("ascii"))
            code_text, issued = open_sealed(sealed, key=self._key, context=_CONTEXT).decode("ascii").split(":")
            code = parse_receipt(code_text)
            age = self._clock() - int(issued)
        except (ValueError, UnicodeError, binascii.Error, TamperedData, InvalidSecret) as e:
            raise TokenUnusable() from e
        if not 0 <= age <= self._lifetime:
            raise TokenUnusable()
        return code


def typed_matches(typed: str, code: ReceiptCode) -> bool:
    """Whether what the person typed is the code, ignoring the spaces and dashes people add."""
    try:
        candidate = parse_receipt(typed)
    except InvalidSecret:
        return False
    return hmac.compare_digest(candidate.encode("ascii"), code.encode("ascii"))
