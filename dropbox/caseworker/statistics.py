"""Admin views of the yearly figures (dropbox/statistics.py): a page per year and channel, and the
same records as a CSV download. Read-only; nothing here is audited because nothing here names a
report or a person."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from dropbox import statistics
from dropbox.caseworker import forms
from dropbox.caseworker.staff import page, require, services
from dropbox.ids import today
from dropbox.web.downloads import content_disposition
from dropbox.web.i18n import url_for
from dropbox.web.middleware import UserError


async def _chosen(request: web.Request) -> tuple[int, str | None, list[statistics.StatRecord]]:
    """The year and channel asked for (this year and every channel by default), and their records."""
    year = forms.integer(request.query, "year") or today().year
    channel = forms.text(request.query, "channel", max_chars=40) or None
    store = services(request).store
    if channel is not None and channel not in {c.id for c in await store.channels()}:
        raise UserError(400, forms.BAD_FORM)
    try:
        rows = await statistics.records(store=store, year=year, channel_id=channel)
    except statistics.InvalidYear as e:
        raise UserError(400, forms.BAD_FORM) from e
    return year, channel, rows


def _query(year: int, channel: str | None) -> Mapping[str, str]:
    return {"year": str(year), **({"channel": channel} if channel else {})}


async def statistics_page(request: web.Request) -> web.StreamResponse:
    staff = await require(request, admin=True)
    year, channel, rows = await _chosen(request)
    channels = await services(request).store.channels()
    return page(request, staff, "caseworker/admin_statistics.html", {
        "year": year, "channel": channel, "channels": channels, "channel_names": {c.id: c.name for c in channels},
        "figures": statistics.figures(rows),
        "csv_url": url_for(request, "admin_statistics_csv", query=_query(year, channel)),
    }, section="statistics")


async def statistics_csv(request: web.Request) -> web.StreamResponse:
    await require(request, admin=True)
    year, channel, rows = await _chosen(request)
    name = f"statistics-{year}{'-' + channel if channel else ''}.csv"
    return web.Response(text=statistics.to_csv(rows), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": content_disposition(name)})
