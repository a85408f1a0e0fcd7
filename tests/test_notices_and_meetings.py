"""Written notice before disclosure (art. 16(3), DK § 26) and a meeting or call on request
(art. 9(2)), driven over HTTP through both apps on one install."""

from __future__ import annotations

from dropbox.ids import today
from tests.support.caseworker_site import Site, site_fixture, whistleblower_client  # noqa: F401
from tests.support.data_checks import all_bytes_under
from tests.support.domain import submit  # noqa: F401
from tests.support.forms import csrf_in
from tests.support.whistleblower_site import log_in

NOTICE_CANARY = "CANARY-disclosure-notice-41aa"


async def test_a_disclosure_notice_reaches_the_mailbox_and_its_day_is_recorded(site: Site) -> None:
    report = await submit(site.services)
    alice = await site.signed_in("alice")
    path = f"/en/reports/{report.report_id}"
    assert (await alice.post(f"{path}/disclosure", {"text": "  "})).status == 303
    assert "Write the notice." in await alice.text(path)
    assert (await alice.post(f"{path}/disclosure", {"text": f"We must name you to the court. {NOTICE_CANARY}"})
            ).status == 303
    page = await alice.text(path)
    assert "Disclosure notice sent" in page and "Sent a notice before disclosing the reporter" in page
    assert (await site.services.store.report(report.report_id)).disclosure_notice_day == today().isoformat()
    async with whistleblower_client(site) as client:
        inbox = await log_in(client, report.receipt)
        assert NOTICE_CANARY in inbox
    assert not any(NOTICE_CANARY.encode() in data for data in all_bytes_under(site.config.data_dir).values())


async def test_a_whistleblower_asks_for_a_call_and_the_report_is_flagged(site: Site) -> None:
    report = await submit(site.services)
    async with whistleblower_client(site) as client:
        inbox = await log_in(client, report.receipt)
        assert "Talk to a caseworker" in inbox
        csrf = csrf_in(inbox)
        bad = await client.post("/en/mailbox/meeting", data={"csrf_token": csrf, "kind": "dinner"},
                                allow_redirects=False)
        assert bad.status == 400
        asked = await client.post("/en/mailbox/meeting", data={"csrf_token": csrf, "kind": "call"},
                                  allow_redirects=False)
        assert asked.status == 303
        page = await (await client.get(asked.headers["Location"])).text()
        assert "Your request was sent." in page and "You asked for a phone call on" in page
        forged = await client.post("/en/mailbox/meeting", data={"csrf_token": "x" * 40, "kind": "meeting"},
                                   allow_redirects=False)
        assert forged.status in (400, 403)
    stored = await site.services.store.report(report.report_id)
    assert (stored.meeting_request, stored.meeting_request_day) == ("call", today().isoformat())
    alice = await site.signed_in("alice")
    assert "A phone call" in await alice.text(f"/en/reports/{report.report_id}")
