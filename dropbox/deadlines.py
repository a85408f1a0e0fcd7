"""The Directive's two clocks (2019/1937 art. 9(1)(b) and (f)): acknowledge within 7 days, give
feedback within 3 months (6 when a caseworker extended it, with a written reason). Plain date
arithmetic, shared by casework (the list's alarms) and statistics (on time or not), so both count
the same way."""

from __future__ import annotations

import calendar
import datetime as dt

ACK_DAYS = 7
FEEDBACK_MONTHS = 3
#: External channels may take up to 6 months "in duly justified cases" (art. 11(2)(d)).
EXTENDED_FEEDBACK_MONTHS = 6


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day `months` later, clamped to the month's end (30 Nov + 3 months = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def ack_due(received: dt.date) -> dt.date:
    return received + dt.timedelta(days=ACK_DAYS)


def feedback_due(received: dt.date, *, extended: bool = False) -> dt.date:
    return add_months(received, EXTENDED_FEEDBACK_MONTHS if extended else FEEDBACK_MONTHS)
