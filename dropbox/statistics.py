"""Yearly figures on the reporting channel (Directive 2019/1937 art. 27; DK: public authorities
publish yearly figures on the scheme's activity), content-free and outliving deletion.

Each report counts as one record: channel, month received, acknowledged on time, feedback on
time, deadline extended, outcome category, month closed, oral report. No text, no name, no report
id and no day finer than a month. A live report's record is computed from its plaintext dates
when asked; a deleted report's is written in the deletion's own transaction (Store.delete_report),
so the figures for a year do not shrink when retention deletes its reports. A report counts as
oral when a caseworker registered it from a call, a voice message or a meeting (dropbox/oral.py).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dropbox.deadlines import ack_due, feedback_due
from dropbox.ids import today
from dropbox.storage import ReportFacts, StatRecord, Status, Store

#: The CSV's columns, in order (the header line of the download and of `run.py statistics`).
COLUMNS = ("channel", "month_received", "acknowledged_on_time", "feedback_on_time", "extended", "outcome",
           "month_closed", "oral")
#: Years a request may ask for (a wider value is refused as bad input, not looked up).
FIRST_YEAR, LAST_YEAR = 2000, 2999


class InvalidYear(ValueError):
    """A year outside FIRST_YEAR..LAST_YEAR."""


def _on_time(done: str | None, due: dt.date, on: dt.date) -> bool | None:
    """Done by the due day; not done and past it; or None while it can still be met."""
    if done is not None:
        return dt.date.fromisoformat(done) <= due
    return False if on > due else None


def record_of(facts: ReportFacts, *, on: dt.date) -> StatRecord:
    """The content-free record of a report as it stands on day `on`."""
    received = dt.date.fromisoformat(facts.received_day)
    closed = facts.closed_day if facts.status == Status.CLOSED else None
    extended = facts.extended_day is not None
    return StatRecord(
        channel_id=facts.channel_id, received_month=facts.received_day[:7],
        # Not acknowledged for a recorded reason: neither on time nor late.
        acknowledged_on_time=(None if facts.no_ack_day and not facts.acknowledged_day
                              else _on_time(facts.acknowledged_day, ack_due(received), on)),
        feedback_on_time=_on_time(facts.feedback_day, feedback_due(received, extended=extended), on),
        extended=extended, outcome=(facts.outcome or "") if closed else "", closed_month=closed[:7] if closed else None,
        oral=bool(facts.oral),
    )


def recorder(on: dt.date | None = None) -> Callable[[ReportFacts], StatRecord]:
    """What Store.delete_report calls to make a deleted report's record (on the day it runs)."""
    day = on or today()
    return lambda facts: record_of(facts, on=day)


def check_year(year: int) -> int:
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidYear(str(year))
    return year


async def records(*, store: Store, year: int, channel_id: str | None = None,
                  on: dt.date | None = None) -> list[StatRecord]:
    """Every report received in `year`: live ones as they stand `on`, and deleted ones. Sorted by
    value, so neither the order of rows nor of ids says which came first."""
    check_year(year)
    day = on or today()
    live = [record_of(f, on=day) for f in await store.report_facts(year=year, channel_id=channel_id)]
    kept = await store.stat_records(year=year, channel_id=channel_id)
    return sorted(live + kept, key=_sort_key)


def _sort_key(r: StatRecord) -> tuple[str, ...]:
    return tuple(_cell(v) for v in _values(r))


def _values(r: StatRecord) -> tuple[str | bool | None, ...]:
    return (r.channel_id, r.received_month, r.acknowledged_on_time, r.feedback_on_time, r.extended, r.outcome,
            r.closed_month, r.oral)


def _cell(value: str | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def to_csv(rows: Sequence[StatRecord]) -> str:
    """The records as CSV (header first); empty cells for what is not known yet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow([_cell(v) for v in _values(r)])
    return out.getvalue()


@dataclass(frozen=True)
class ChannelFigures:
    """One channel's figures for a year, as the admin page shows them."""

    channel_id: str
    received: int
    oral: int
    acknowledged_on_time: int
    acknowledged_late: int
    feedback_on_time: int
    feedback_late: int
    extended: int
    closed: int
    outcomes: dict[str, int]


def figures(rows: Sequence[StatRecord]) -> list[ChannelFigures]:
    """Counts per channel, in channel order."""
    by_channel: dict[str, list[StatRecord]] = {}
    for r in rows:
        by_channel.setdefault(r.channel_id, []).append(r)
    result = []
    for channel_id, mine in sorted(by_channel.items()):
        result.append(ChannelFigures(
            channel_id=channel_id, received=len(mine), oral=sum(r.oral for r in mine),
            acknowledged_on_time=sum(r.acknowledged_on_time is True for r in mine),
            acknowledged_late=sum(r.acknowledged_on_time is False for r in mine),
            feedback_on_time=sum(r.feedback_on_time is True for r in mine),
            feedback_late=sum(r.feedback_on_time is False for r in mine),
            extended=sum(r.extended for r in mine), closed=sum(r.closed_month is not None for r in mine),
            outcomes=dict(sorted(Counter(r.outcome for r in mine if r.closed_month and r.outcome).items())),
        ))
    return result
