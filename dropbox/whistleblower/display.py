"""Plain formatting for the whistleblower's pages: days, status words, cleaning lines (sizes and
download names are web/formats.py and web/downloads.py, shared with the caseworker app)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from babel.dates import format_date

from dropbox.cleaning import KIND_LABEL, MAX_LISTED, OUTCOME_TEXT, FileCleaning
from dropbox.reports import Damaged, Part
from dropbox.web.formats import babel_locale
from dropbox.web.i18n import N_, translate

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


#: Shown in place of each sealed part that did not open (reports.Damaged): the person learns
#: that something is missing, and whom to tell (the caseworkers see the same on their page).
DAMAGED: Mapping[Part, str] = {
    Part.REPORT: N_("The text of your report could not be opened: its stored copy is damaged. "
                    "You can tell the caseworkers in a message."),
    Part.MESSAGE: N_("This message could not be opened: its stored copy is damaged. "
                     "You can tell the caseworkers in a message."),
    Part.MINUTES: N_("This version of the minutes could not be opened: its stored copy is damaged. "
                     "Do not approve it; tell the caseworkers in a correction or a message."),
    Part.FILE: N_("A file here could not be opened: its stored copy is damaged. "
                  "You can tell the caseworkers in a message."),
}


def damaged_line(request: web.Request, value: object) -> str | None:
    """The line shown in place of a part that did not open; None for one that did."""
    return translate(request, DAMAGED[value.part]) if isinstance(value, Damaged) else None


def channel_name(request: web.Request, name: str) -> str:
    """A channel's name for the page. `init` names the default channel with a catalogue message
    ("Whistleblower channel"), which is shown in the page's language; names an operator typed
    have no catalogue entry and are shown as typed."""
    return translate(request, name)


def format_day(day: str, lang: str) -> str:
    """An ISO day ("2026-11-03") as the page's language writes it ("3 November 2026")."""
    return format_date(dt.date.fromisoformat(day), format="long", locale=babel_locale(lang))


def status_words(status: str) -> tuple[str, str]:
    """Msgids of the label and explanation for a report status (unknown ones read as "new")."""
    return STATUS_WORDS.get(status, STATUS_WORDS["new"])


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
