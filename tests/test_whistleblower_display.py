"""Formatting for the whistleblower's pages: days, sizes, status words, download names."""

from __future__ import annotations

import pytest

from dropbox.reports import STATUSES
from dropbox.web.downloads import content_disposition
from dropbox.web.formats import format_size
from dropbox.whistleblower.display import STATUS_WORDS, format_day, status_words


@pytest.mark.parametrize(
    ("lang", "text"), [("en", "3 November 2026"), ("da", "3. november 2026"), ("sv", "3 november 2026")]
)
def test_days_are_written_the_way_each_language_writes_them(lang: str, text: str) -> None:
    assert format_day("2026-11-03", lang) == text


@pytest.mark.parametrize(
    ("size", "lang", "text"),
    [(0, "en", "0 B"), (1023, "en", "1023 B"), (1024, "en", "1 kB"), (1536, "da", "1,5 kB"),
     (5 * 1024 * 1024, "sv", "5 MB"), (1024**3, "en", "1 GB"), (150 * 1024**2, "en", "150 MB"),
     (3 * 1024**5, "en", "3,072 TB")],
)
def test_sizes(size: int, lang: str, text: str) -> None:
    number, unit = text.rsplit(" ", 1)
    assert format_size(size, lang) == f"{number}\u00a0{unit}"  # never split over two lines


def test_every_status_has_words_and_unknown_ones_read_as_new() -> None:
    assert set(STATUS_WORDS) == set(STATUSES)
    assert status_words("something-else") == STATUS_WORDS["new"]


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        ('a"b\\c.txt', "attachment; filename=\"c.txt\"; filename*=UTF-8''c.txt"),
        ('say "hi".txt', "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt"),
        ("bilag æøå.docx",
         "attachment; filename=\"bilag aeoea.docx\"; filename*=UTF-8''bilag%20%C3%A6%C3%B8%C3%A5.docx"),
        ("line\r\nbreak.txt", "attachment; filename=\"linebreak.txt\"; filename*=UTF-8''linebreak.txt"),
        ("日本.txt", "attachment; filename=\"txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"),
    ],
)
def test_download_names_are_safe_in_the_header(name: str, header: str) -> None:
    assert content_disposition(name) == header
