"""The Directive's two clocks (2019/1937 art. 9(1)(b) and (f)): acknowledge within 7 days, give
feedback within 3 months (6 when a caseworker extended it, with a written reason). Plain date
arithmetic, shared by casework (the list's alarms) and statistics (on time or not), so both count
the same way.

The Directive counts the 3 months from the acknowledgement (or from day 7 if none was sent);
counting them from receipt, as here, is never later, so a deadline shown here is never missed
under the Directive's rule.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from dropbox.reports import Status

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


def ack_cut(on: dt.date) -> dt.date:
    """Reports received before this day are past their acknowledgement deadline on `on`."""
    return on - dt.timedelta(days=ACK_DAYS)


def feedback_cut(on: dt.date, *, extended: bool = False) -> dt.date:
    """Reports received before this day are past their feedback deadline on `on` (the 6-month one
    when `extended`).

    The first receipt day whose deadline is not yet passed; feedback_due is monotonic, so a
    short walk from the naive guess finds it exactly despite month-end clamping.
    """
    day = add_months(on, -(EXTENDED_FEEDBACK_MONTHS if extended else FEEDBACK_MONTHS))
    while feedback_due(day, extended=extended) >= on:
        day -= dt.timedelta(days=1)
    while feedback_due(day, extended=extended) < on:
        day += dt.timedelta(days=1)
    return day


@dataclass(frozen=True)
class Deadline:
    due: dt.date
    done: dt.date | None
    overdue: bool
    #: Days until due (negative when past); only meaningful while not done.
    days_left: int
    #: No acknowledgement is sent, for a recorded reason (the alarm is off).
    waived: bool = False
    #: The feedback deadline was extended to 6 months, for a recorded reason.
    extended: bool = False


@dataclass(frozen=True)
class Deadlines:
    days_since: int
    acknowledgement: Deadline
    feedback: Deadline


def deadlines(*, received: str, acknowledged: str | None, feedback: str | None, status: str,
              on: dt.date, no_ack: bool = False, extended: bool = False) -> Deadlines:
    """Where a report stands against both deadlines on day `on`. A closed report is never overdue,
    nor an acknowledgement waived for a recorded reason; an extended feedback deadline is 6 months."""
    received_day = dt.date.fromisoformat(received)

    def one(due: dt.date, done: str | None, *, waived: bool = False, longer: bool = False) -> Deadline:
        done_day = dt.date.fromisoformat(done) if done else None
        return Deadline(due=due, done=done_day,
                        overdue=done_day is None and not waived and status != Status.CLOSED and on > due,
                        days_left=(due - on).days, waived=waived, extended=longer)

    return Deadlines(days_since=(on - received_day).days,
                     acknowledgement=one(ack_due(received_day), acknowledged, waived=no_ack),
                     feedback=one(feedback_due(received_day, extended=extended), feedback, longer=extended))
