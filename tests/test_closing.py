"""Closing a report (art. 11(2)(e)): it needs an outcome category from the admin's list, and may
send the whistleblower a closing message, which reaches their mailbox sealed like a reply."""

from __future__ import annotations

from dropbox.submissions import open_mailbox, read_mailbox
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.data_checks import all_bytes_under
from tests.support.domain import submit  # noqa: F401

CLOSING_CANARY = "CANARY-closing-message-5c1e"


async def test_closing_needs_an_outcome_and_sends_the_closing_message_to_the_mailbox(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    path = f"/en/reports/{report.report_id}"
    page = await alice.text(path)
    assert 'action="/en/reports/' in page and "Referred to the police" in page
    # Without an outcome (or with one not on the list) nothing is closed
    for form in ({"outcome": ""}, {"outcome": "Made up", "message": "bye"}):
        assert (await alice.post(f"{path}/close", form)).status == 303
        assert "Choose the outcome to close the report with." in await alice.text(path)
    assert (await site.services.store.report(report.report_id)).status == "opened"
    # With one, the report closes, and the message is the whistleblower's to read
    done = await alice.post(f"{path}/close", {"outcome": "Referred to the police",
                                              "message": f"We referred your report to the police. {CLOSING_CANARY}"})
    assert done.status == 303
    page = await alice.text(path)
    assert "Referred to the police" in page and "Closed the report with an outcome" in page
    stored = await site.services.store.report(report.report_id)
    assert (stored.status, stored.outcome, stored.closed_day is not None) == ("closed", "Referred to the police", True)
    assert stored.feedback_day is not None and stored.acknowledged_day is not None
    svc = site.services
    access = await open_mailbox(store=svc.store, kdf=svc.public_kdf, install=svc.install, receipt_text=report.receipt)
    mailbox = await read_mailbox(store=svc.store, access=access, record_visit=False)
    assert [m.text for m in mailbox.messages] == [f"We referred your report to the police. {CLOSING_CANARY}"]
    assert mailbox.status == "closed"
    # and it is sealed: not one byte of it in the clear anywhere under data/ (database, WAL)
    assert not any(CLOSING_CANARY.encode() in data for data in all_bytes_under(site.config.data_dir).values())


async def test_admins_edit_the_outcome_list_and_caseworkers_close_with_it(site: Site) -> None:
    alice, bob = await site.signed_in("alice"), await site.signed_in("bob")
    assert (await bob.get("/en/admin/outcomes")).status in (403, 404)
    assert (await alice.post("/en/admin/outcomes", {"categories": "Dismissed\n\n  Sent to  the auditors \nDismissed"})
            ).status == 303
    assert "Dismissed\nSent to the auditors</textarea>" in await alice.text("/en/admin/outcomes")
    assert (await alice.post("/en/admin/outcomes", {"categories": "  \n"})).status == 303
    assert "Give one to 30 outcomes" in await alice.text("/en/admin/outcomes")
    assert "Changed the outcome categories" in await alice.text("/en/admin/audit")
    report = await submit(site.services)
    path = f"/en/reports/{report.report_id}"
    await bob.post(f"{path}/close", {"outcome": "No grounds"})  # no longer on the list
    assert (await site.services.store.report(report.report_id)).status != "closed"
    await bob.post(f"{path}/close", {"outcome": "Sent to the auditors"})
    assert (await site.services.store.report(report.report_id)).outcome == "Sent to the auditors"
