"""The law's clocks with their exceptions: "no acknowledgement (reason)" stops the 7-day alarm
(art. 9(1)(b); SE: where it would reveal the reporter or they declined), and an extension of the
feedback deadline to 6 months needs a written reason (art. 11(2)(d)), sealed under the staff key,
shown on the report and recorded in the audit log."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dropbox.deadlines import deadlines, feedback_cut, feedback_due
from dropbox.ids import today
from tests.support.caseworker_site import Site, serve_site
from tests.support.data_checks import all_bytes_under
from tests.support.domain import submit
from tests.support.installs import STAFF, new_install

D = dt.date
#: The day the report list counts its deadlines on in these tests, whatever the real date.
ON = D(2026, 3, 2)
NO_ACK_CANARY = "CANARY-no-ack-reason-5c1e"
EXTENSION_CANARY = "CANARY-extension-reason-9b7d"


def test_an_extension_moves_the_feedback_deadline_to_six_months_and_a_waiver_stops_the_alarm() -> None:
    on = D(2026, 6, 1)
    late = deadlines(received="2026-01-20", acknowledged=None, feedback=None, status="opened", on=on)
    assert late.acknowledgement.overdue and late.feedback.overdue
    excused = deadlines(received="2026-01-20", acknowledged=None, feedback=None, status="opened", on=on,
                        no_ack=True, extended=True)
    assert not excused.acknowledgement.overdue and excused.acknowledgement.waived
    assert excused.feedback.due == D(2026, 7, 20) and not excused.feedback.overdue
    assert feedback_due(D(2026, 8, 31), extended=True) == D(2027, 2, 28)
    for back in range(0, 400, 7):
        received = on - dt.timedelta(days=back)
        assert (received < feedback_cut(on, extended=True)) == (feedback_due(received, extended=True) < on)


@pytest.fixture(name="site")
async def fixed_day_site(tmp_path: Path) -> AsyncIterator[Site]:
    """The caseworker site whose list counts deadlines on ON: no test depends on today's date."""
    config = await new_install(tmp_path / "data", STAFF)
    async with serve_site(config, today=lambda: ON) as served:
        yield served


async def _backdate(site: Site, report_id: str, days: int) -> None:
    """Received `days` before ON."""
    async with site.services.store.transaction() as db:
        await db.execute("UPDATE reports SET received_day = ? WHERE id = ?",
                         ((ON - dt.timedelta(days=days)).isoformat(), report_id))


async def test_no_acknowledgement_with_a_reason_stops_the_alarm(site: Site) -> None:
    report = await submit(site.services)
    await _backdate(site, report.report_id, 10)
    alice = await site.signed_in("alice")
    assert "Receipt not acknowledged within 7 days: 1" in await alice.text("/en/reports")
    path = f"/en/reports/{report.report_id}"
    # An empty reason is refused
    assert (await alice.post(f"{path}/reason", {"kind": "no_acknowledgement", "reason": "  "})).status == 303
    assert "Write the reason." in await alice.text(path)
    assert (await alice.post(f"{path}/reason", {"kind": "bogus", "reason": "x"})).status == 400
    # With one, the alarm stops, the reason shows on the report, the audit log says so
    assert (await alice.post(f"{path}/reason", {"kind": "no_acknowledgement",
                                                "reason": f"The reporter declined it. {NO_ACK_CANARY}"})).status == 303
    assert "Receipt not acknowledged within 7 days" not in await alice.text("/en/reports")
    page = await alice.text(path)
    assert NO_ACK_CANARY in page and "No acknowledgement (reason recorded)" in page
    assert "Recorded that no acknowledgement is sent, with a reason" in page
    # Recorded once: a second reason does not replace the first
    await alice.post(f"{path}/reason", {"kind": "no_acknowledgement", "reason": "another"})
    assert len(await site.services.store.reasons(report.report_id)) == 1
    # Sealed: the reason is nowhere on disk in the clear
    assert not any(NO_ACK_CANARY.encode() in data for data in all_bytes_under(site.config.data_dir).values())


async def test_an_extension_needs_a_reason_and_shows_on_the_report_and_in_the_audit_log(site: Site) -> None:
    report = await submit(site.services)
    await _backdate(site, report.report_id, 100)  # past 3 months, within 6
    alice = await site.signed_in("alice")
    assert "No feedback given within 3 months: 1" in await alice.text("/en/reports")
    path = f"/en/reports/{report.report_id}"
    reason = {"kind": "extension", "reason": f"Waiting for the auditors. {EXTENSION_CANARY}"}
    assert (await alice.post(f"{path}/reason", reason)).status == 303
    assert "No feedback given within 3 months" not in await alice.text("/en/reports")
    page = await alice.text(path)
    received = ON - dt.timedelta(days=100)
    assert feedback_due(received, extended=True).isoformat() in page and "extended to 6 months" in page
    assert EXTENSION_CANARY in page
    assert "Extended the feedback deadline to 6 months, with a reason" in await alice.text("/en/admin/audit")
    assert (await site.services.store.report(report.report_id)).extended_day == today().isoformat()
    assert not any(EXTENSION_CANARY.encode() in data for data in all_bytes_under(site.config.data_dir).values())
    # A colleague without the report cannot record one
    carol = await site.signed_in("carol")
    from tests.support.domain import only_for

    hidden = await submit(site.services, channel_id=await only_for(site.services, "alice"))
    assert (await carol.post(f"/en/reports/{hidden.report_id}/reason",
                             {"kind": "extension", "reason": "x"})).status == 404
