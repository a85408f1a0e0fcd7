"""Content-free yearly figures (dropbox/statistics.py) that outlive deletion: the admin page, its
CSV download and `run.py statistics` print the same records, deleted reports included."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3

from dropbox.ids import today
from dropbox.retention import purge_expired
from dropbox.statistics import record_of
from dropbox.storage import ReportFacts
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.domain import submit  # noqa: F401
from tests.support.server_process import run_cli

D = dt.date


def test_a_record_holds_months_and_yes_no_only() -> None:
    facts = ReportFacts(channel_id="default", status="closed", received_day="2026-01-30",
                        acknowledged_day="2026-02-07", feedback_day="2026-05-01", closed_day="2026-05-02",
                        outcome="No grounds", no_ack_day=None, extended_day=None)
    record = record_of(facts, on=D(2026, 6, 1))
    assert (record.received_month, record.closed_month) == ("2026-01", "2026-05")
    # 30 Jan + 7 days = 6 Feb: the 7th is late; 30 Jan + 3 months = 30 Apr: 1 May is late
    assert (record.acknowledged_on_time, record.feedback_on_time) == (False, False)
    pending = record_of(ReportFacts(channel_id="default", status="new", received_day="2026-05-30",
                                    acknowledged_day=None, feedback_day=None, closed_day=None, outcome=None,
                                    no_ack_day="2026-05-31", extended_day="2026-05-31"),
                         on=D(2026, 6, 1))
    assert (pending.acknowledged_on_time, pending.feedback_on_time, pending.closed_month) == (None, None, None)
    # Not acknowledged for a recorded reason counts as neither on time nor late, even when long past
    # the 7 days; an extended deadline is 6 months and says "extended"
    waived = record_of(ReportFacts(channel_id="default", status="in_progress", received_day="2026-01-10",
                                   acknowledged_day=None, feedback_day="2026-06-01", closed_day=None, outcome=None,
                                   no_ack_day="2026-01-12", extended_day="2026-04-01"), on=D(2026, 8, 1))
    assert (waived.acknowledged_on_time, waived.feedback_on_time, waived.extended) == (None, True, True)


async def test_statistics_count_a_deleted_report_on_the_page_in_the_csv_and_from_the_cli(site: Site) -> None:
    # Given three reports this year: one acknowledged, closed and deleted by a caseworker, one
    # purged by retention after closing, one still open
    deleted, purged, _live = [await submit(site.services, text=f"secret text {n}") for n in range(3)]
    alice = await site.signed_in("alice")
    path = f"/en/reports/{deleted.report_id}"
    assert (await alice.post(f"{path}/deadline", {"deadline": "acknowledgement"})).status == 303
    assert (await alice.post(f"{path}/close", {"outcome": "No grounds"})).status == 303
    assert (await alice.post(f"{path}/delete", {"confirm": "yes"})).status == 303
    for form in ({"deadline": "acknowledgement"}, {"deadline": "feedback"}):
        assert (await alice.post(f"/en/reports/{purged.report_id}/deadline", form)).status == 303
    assert (await alice.post(f"/en/reports/{purged.report_id}/close", {"outcome": "No grounds"})).status == 303
    assert await purge_expired(store=site.services.store, on=today() + dt.timedelta(days=91)) == 1
    year, month = today().year, today().isoformat()[:7]
    # Then the CSV download still has a record of each of the three
    response = await alice.get(f"/en/admin/statistics.csv?year={year}")
    assert response.status == 200 and response.content_type == "text/csv"
    csv = await response.text()
    lines = csv.splitlines()
    assert lines[0] == "channel,month_received,acknowledged_on_time,feedback_on_time,extended,outcome,month_closed,oral"
    assert sorted(lines[1:]) == sorted([
        f"default,{month},yes,,no,No grounds,{month},no",   # acknowledged today, closed, deleted
        f"default,{month},yes,yes,no,No grounds,{month},no",  # acknowledged, feedback given, closed, purged
        f"default,{month},,,no,,,no",             # still open, nothing due yet
    ])
    # The page shows the counts; the CLI prints the very same CSV
    page = await alice.text(f"/en/admin/statistics?year={year}")
    assert "Statistics" in page and "secret text" not in page
    done = run_cli("statistics", "--year", str(year), data=site.config.data_dir, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == csv
    assert run_cli("statistics", "--year", str(year), "--channel", "default", data=site.config.data_dir,
                   check=False).stdout == csv
    # And the records hold no text, and no day finer than a month
    with contextlib.closing(sqlite3.connect(site.config.db_path)) as raw:
        stored = raw.execute("SELECT * FROM report_stats").fetchall()
    assert len(stored) == 2
    assert all(len(m) == 7 for row in stored for m in (row[2], row[7]) if m)
    assert deleted.report_id not in repr(stored) and purged.report_id not in repr(stored)


async def test_bad_years_and_channels_are_refused_with_a_clear_answer(site: Site) -> None:
    alice = await site.signed_in("alice")
    assert (await alice.get("/en/admin/statistics?year=1999")).status == 400
    assert (await alice.get("/en/admin/statistics.csv?channel=nope")).status == 400
    bob = await site.signed_in("bob")
    assert (await bob.get("/en/admin/statistics.csv")).status in (403, 404)
    bad = run_cli("statistics", "--year", "99999", data=site.config.data_dir, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert run_cli("statistics", "--year", "2026", "--channel", "nope", data=site.config.data_dir,
                   check=False).returncode == 2
    assert run_cli("statistics", data=site.config.data_dir, check=False).returncode == 2
