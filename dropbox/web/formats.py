"""Numbers and sizes as each page language writes them, for both apps: one formatter, so a file
shows the same size to the whistleblower who sent it and to the caseworker who reads it."""

from __future__ import annotations

from collections.abc import Mapping

from babel.numbers import format_decimal

#: Babel locale per page language. English pages use British conventions ("3 November 2026").
BABEL_LOCALES: Mapping[str, str] = {"en": "en_GB", "da": "da_DK", "sv": "sv_SE"}

_UNITS = ("kB", "MB", "GB", "TB")


def babel_locale(lang: str) -> str:
    return BABEL_LOCALES.get(lang, lang)


def format_number(value: int, lang: str) -> str:
    """A whole number with the language's grouping ("10,000" / "10.000")."""
    return format_decimal(value, locale=babel_locale(lang))


def format_size(size: int, lang: str) -> str:
    """Bytes in the units file managers show (1 kB = 1024 bytes), with the language's decimal mark."""
    if size < 1024:
        return f"{size}\u00a0B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    number = format_decimal(value, format="#,##0.#" if value < 100 else "#,##0", locale=babel_locale(lang))
    return f"{number}\u00a0{unit}"  # a no-break space: "1 GB" never splits over two lines
