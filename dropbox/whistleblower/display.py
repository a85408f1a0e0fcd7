"""Plain formatting for the whistleblower's pages: days, sizes, status words, download names."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from babel.dates import format_date
from babel.numbers import format_decimal

from dropbox.cleaning import KIND_LABEL, MAX_LISTED, OUTCOME_TEXT, FileCleaning
from dropbox.web.i18n import N_, translate
from dropbox.whistleblower.forms import clean_filename

#: Babel locale per page language. English pages use British conventions ("3 November 2026").
BABEL_LOCALES: Mapping[str, str] = {"en": "en_GB", "da": "da_DK", "sv": "sv_SE"}

#: What each report status means to the person who sent it: a short label and a sentence.
STATUS_WORDS: Mapping[str, tuple[str, str]] = {
    "new": (N_("Received, not yet opened"),
            N_("Your report has arrived safely. A caseworker has not opened it yet.")),
    "opened": (N_("Read by a caseworker"),
               N_("A caseworker has opened and read your report.")),
    "in_progress": (N_("Being looked into"),
                    N_("A caseworker is looking into what you reported. They may write to you here "
                       "with questions.")),
    "closed": (N_("Closed"),
               N_("The caseworkers have finished handling your report. You can still read and write "
                  "messages here until the mailbox is deleted.")),
}

_UNITS = ("kB", "MB", "GB", "TB")
#: Letters that NFKD does not reduce to ASCII, spelt as Danish and Swedish writers would.
_LETTERS = str.maketrans({"æ": "ae", "Æ": "Ae", "ø": "oe", "Ø": "Oe", "ß": "ss"})


def channel_name(request: web.Request, name: str) -> str:
    """A channel's name for the page. `init` names the default channel with a catalogue message
    ("Whistleblower channel"), which is shown in the page's language; names an operator typed
    have no catalogue entry and are shown as typed."""
    return translate(request, name)


def babel_locale(lang: str) -> str:
    return BABEL_LOCALES.get(lang, lang)


def format_day(day: str, lang: str) -> str:
    """An ISO day ("2026-11-03") as the page's language writes it ("3 November 2026")."""
    return format_date(dt.date.fromisoformat(day), format="long", locale=babel_locale(lang))


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


def status_words(status: str) -> tuple[str, str]:
    """Msgids of the label and explanation for a report status (unknown ones read as "new")."""
    return STATUS_WORDS.get(status, STATUS_WORDS["new"])


def content_disposition(name: str) -> str:
    """`attachment` with a name that is safe in the header and on the person's disk.

    An ASCII fallback for old clients and the exact (cleaned) name in RFC 5987 form. Quotes,
    backslashes, path separators and control characters never reach the header.
    """
    cleaned = clean_filename(name)
    ascii_name = unicodedata.normalize("NFKD", cleaned.translate(_LETTERS)).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()-]+", "_", ascii_name).strip(" ._") or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(cleaned, safe='')}"


@dataclass(frozen=True)
class CleaningLine:
    """One file's cleaning, in the reader's language: what was found, and what came of it."""

    name: str
    cleaned: bool
    outcome: str
    found: list[str]
    more: int


def cleaning_line(request: web.Request, name: str, result: FileCleaning) -> CleaningLine:
    """"Author: Jane Doe", "GPS position", "Camera: Pixel 7"; each distinct finding once."""
    seen: list[str] = []
    for finding in result.found:
        label = translate(request, KIND_LABEL[finding.kind])
        text = f"{label}: {finding.value}" if finding.value else label
        if text not in seen:
            seen.append(text)
    return CleaningLine(name=name, cleaned=result.cleaned, outcome=translate(request, OUTCOME_TEXT[result.outcome]),
                        found=seen[:MAX_LISTED], more=max(0, len(seen) - MAX_LISTED))


def cleaning_lines(request: web.Request, shown: list[tuple[str, FileCleaning]]) -> list[CleaningLine]:
    return [cleaning_line(request, name, result) for name, result in shown]
