"""Identifiers and the coarse clocks: the only ways the drop box names a row or notes a time.

A leaf module (standard library only) so every layer, storage included, can use it. Times are a
UTC day for anything people did, and an hour only for the caseworkers' audit log (docs/SECURITY.md:
no time finer than a day is stored about a whistleblower).
"""

from __future__ import annotations

import datetime as dt
import secrets


def new_id() -> str:
    """A random 128-bit identifier, used for every row and file (no counts leak through ids)."""
    return secrets.token_hex(16)


def today() -> dt.date:
    """UTC day: the finest time the drop box stores about what people did."""
    return dt.datetime.now(dt.UTC).date()


def this_hour() -> str:
    """Hour precision, only for the caseworkers' audit log."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:00")
