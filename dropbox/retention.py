"""Retention: reports are deleted, rows and file contents, once their expiry day has passed."""

from __future__ import annotations

import datetime as dt
import logging

from dropbox.install import this_hour, today
from dropbox.storage import NotFound, StorageUnavailable, Store

log = logging.getLogger(__name__)


async def forget_deleted(store: Store) -> None:
    """After a delete: truncate the WAL so the images of deleted pages go with it (secure_delete
    has already zeroed them in the database). A reader holding it up, or a disk error, only
    delays it to the next delete or purge."""
    try:
        if not await store.forget_deleted():
            log.info("WAL checkpoint after a delete was held up by a reader; the next one finishes it")
    except StorageUnavailable as e:
        log.error("WAL checkpoint after a delete failed (%s)", type(e).__name__)


async def purge_expired(*, store: Store, on: dt.date | None = None) -> int:
    """Delete every report whose expiry day is before `on` (default today). Returns how many."""
    day = on or today()
    purged = 0
    for report_id in await store.expired_reports(today=day):
        try:
            await store.delete_report(report_id)
        except NotFound:
            continue  # deleted meanwhile by a caseworker
        await store.audit(hour=this_hour(), actor=None, action="purged", report_id=report_id)
        purged += 1
    if purged:
        await forget_deleted(store)
        log.info("retention purge deleted %d report(s)", purged)
    return purged
