"""Retention: reports are deleted, rows and blobs, once their expiry day has passed."""

from __future__ import annotations

import datetime as dt
import logging

from dropbox.blobs import BlobStore
from dropbox.install import this_hour, today
from dropbox.storage import NotFound, Store

log = logging.getLogger(__name__)


async def purge_expired(*, store: Store, blobs: BlobStore, on: dt.date | None = None) -> int:
    """Delete every report whose expiry day is before `on` (default today). Returns how many."""
    day = on or today()
    purged = 0
    for report_id in await store.expired_reports(today=day):
        try:
            file_ids = await store.delete_report(report_id)
        except NotFound:
            continue  # deleted meanwhile by a caseworker
        blobs.delete(file_ids)
        await store.audit(hour=this_hour(), actor=None, action="purged", report_id=report_id)
        purged += 1
    if purged:
        log.info("retention purge deleted %d report(s)", purged)
    return purged
