"""Diceware passphrases for caseworkers, from the EFF long word list that xkcdpass ships."""

from __future__ import annotations

from functools import cache

from xkcdpass import xkcd_password

from dropbox.sealing import Passphrase, generate_passphrase

WORDS_PER_PASSPHRASE = 7


@cache
def eff_long_words() -> list[str]:
    return list(xkcd_password.generate_wordlist(
        wordfile=xkcd_password.locate_wordfile("eff-long"), min_length=1, max_length=20))


def new_passphrase() -> tuple[Passphrase, float]:
    """A fresh passphrase and its entropy in bits (7 words of 7,776: ~90 bits)."""
    return generate_passphrase(eff_long_words(), count=WORDS_PER_PASSPHRASE)
