"""The sealed token that brings the receipt code back for the type-it-back check."""

from __future__ import annotations

import base64

import pytest

from dropbox.receipt_tokens import ReceiptTokens, TokenUnusable, typed_matches
from dropbox.sealing import ReceiptCode
from tests.support.clock import FakeClock

CODE = ReceiptCode("1234567890123456")


def test_a_token_opens_to_its_code_and_hides_it() -> None:
    tokens = ReceiptTokens()
    token = tokens.issue(CODE)
    assert tokens.open(token) == CODE
    assert CODE not in token and CODE not in base64.urlsafe_b64decode(token).decode("latin-1")
    assert tokens.issue(CODE) != token  # a fresh nonce each time


def test_another_process_cannot_open_it() -> None:
    with pytest.raises(TokenUnusable):
        ReceiptTokens().open(ReceiptTokens().issue(CODE))


@pytest.mark.parametrize("token", ["", "not base64 !", "AAAA", "x" * 2000, "ÿÿÿÿ"])
def test_garbage_is_unusable(token: str) -> None:
    with pytest.raises(TokenUnusable):
        ReceiptTokens().open(token)


def test_a_flipped_byte_is_unusable() -> None:
    tokens = ReceiptTokens()
    raw = bytearray(base64.urlsafe_b64decode(tokens.issue(CODE)))
    raw[-1] ^= 1
    with pytest.raises(TokenUnusable):
        tokens.open(base64.urlsafe_b64encode(bytes(raw)).decode())


def test_a_token_expires() -> None:
    clock = FakeClock()
    tokens = ReceiptTokens(lifetime_seconds=100, clock=clock)
    token = tokens.issue(CODE)
    clock.advance(100)
    assert tokens.open(token) == CODE
    clock.advance(1)
    with pytest.raises(TokenUnusable):
        tokens.open(token)


@pytest.mark.parametrize(
    ("typed", "matches"),
    [("1234567890123456", True), ("1234 5678 9012 3456", True), (" 1234-5678-9012-3456 ", True),
     ("1234 5678 9012 3457", False), ("1234 5678 9012 345", False), ("", False), ("x" * 100, False),
     ("１２３４５６７８９０１２３４５６", False)],
)
def test_what_the_person_typed_is_compared_ignoring_spaces_and_dashes(typed: str, matches: bool) -> None:
    assert typed_matches(typed, CODE) is matches
