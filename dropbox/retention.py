"""Retention by state (EU Directive 2019/1937 art. 17–18; DK lov 1436/2021; SE 2021:890 7 kap.).

An open report is never deleted automatically, however long it sits idle: the investigation is
not over. Closing it starts the clock: it is deleted `retention_days` after the day it was closed
(its channel's retention, or a per-report value), unless a caseworker puts a legal hold on it.
Reopening stops the clock again. The country profile caps the period: Sweden allows at most two
years after the follow-up case is closed (730 days, enforced on every write of a deletion day and
every channel's retention); Denmark sets no fixed period (the default, 90 days, is a setting).

The deletion day is stored (`expires_day`) when the report is closed or its retention changed,
so the purge and the "due for deletion within 14 days" list read one plaintext column.
"""

from __future__ import annotations

import datetime as dt
import logging

from dropbox import audit
from dropbox.audit import AuditAction
from dropbox.config import Config
from dropbox.ids import today
from dropbox.statistics import recorder
from dropbox.storage import NotFound, Report, Status, StorageUnavailable, Store

log = logging.getLogger(__name__)

#: Reports due for deletion within this many days show on the caseworker list and in the notice.
DUE_SOON_DAYS = 14


def max_retention_days(config: Config) -> int:
    """The country profile's cap on keeping a closed report (config.COUNTRY_MAX_RETENTION_DAYS)."""
    return config.max_retention_days


def default_retention_days(config: Config) -> int:
    """The setting, capped by the profile (a Swedish install with 3650 configured keeps 730)."""
    return min(config.default_retention_days, config.max_retention_days)


def deletion_day(closed: dt.date, retention_days: int, *, max_days: int) -> str:
    """The day a report closed on `closed` is deleted after (the purge runs the day after)."""
    return (closed + dt.timedelta(days=min(retention_days, max_days))).isoformat()


def deletion_cut(on: dt.date) -> str:
    """Closed reports whose deletion day is before this day are due within DUE_SOON_DAYS of `on`."""
    return (on + dt.timedelta(days=DUE_SOON_DAYS + 1)).isoformat()


def due_soon(report_status: str, legal_hold: bool, expires_day: str, *, on: dt.date) -> bool:
    """True for a closed, unheld report that the purge deletes within DUE_SOON_DAYS of `on`."""
    return report_status == Status.CLOSED and not legal_hold and expires_day < deletion_cut(on)


def on_close(report: Report, day: dt.date, *, max_days: int) -> dict[str, str | None]:
    """The report row's change when it is closed on `day` (its deletion clock starts)."""
    return {"closed_day": day.isoformat(),
            "expires_day": deletion_day(day, report.retention_days, max_days=max_days)}


def on_reopen() -> dict[str, str | None]:
    """The report row's change when a closed report is reopened: no deletion day counts."""
    return {"closed_day": None}


async def forget_deleted(store: Store) -> None:
    """After a delete: truncate the WAL so the images of deleted pages go with it (secure_delete
    has already zeroed them in the database). A reader holding it up, or a disk error, leaves
    `store.wal_holds_deleted` set: the next purge run tries again (the server runs it a minute
    later while it is set, and every few hours otherwise), whether or not it deletes anything."""
    try:
        if not await store.forget_deleted():
            log.info("WAL checkpoint after a delete was held up by a reader; the next purge run finishes it")
    except StorageUnavailable as e:
        log.error("WAL checkpoint after a delete failed (%s)", type(e).__name__)


async def purge_expired(*, store: Store, on: dt.date | None = None) -> int:
    """Delete every closed report without a legal hold whose deletion day is before `on`
    (default today). Open and held reports are never touched. Returns how many."""
    day = on or today()
    purged = 0
    for report_id in await store.expired_reports(today=day):
        try:
            await store.delete_report(report_id, record=recorder(day))
        except NotFound:
            continue  # deleted meanwhile by a caseworker
        await audit.record(store, actor_id=None, action=AuditAction.PURGED, report_id=report_id)
        purged += 1
    if purged or store.wal_holds_deleted:
        await forget_deleted(store)
    if purged:
        log.info("retention purge deleted %d report(s)", purged)
    return purged
