"""Export and Forward over HTTP (dropbox/caseworker/export.py) against the real caseworker app:
the forms on the report page, the streamed download, the audit entries, a garbage recipient key
getting a clear page in every language, and a forwarded case opening only with its key."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from dropbox import export, forwarding
from dropbox.audit import AuditAction
from dropbox.sealing import WrongRecipient, new_recipient_key
from dropbox.signing import fingerprint, known_public_keys
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.domain import only_for, submit  # noqa: F401

NOTE = "Internal: the supplier is the mayor's cousin."

BAD_KEY_WORDS = {"en": "This is not a recipient key", "da": "Dette er ikke en modtagernøgle",
                 "sv": "Det här är ingen mottagarnyckel"}


async def _report_with_note(site: Site) -> str:
    sent = await submit(site.services, text="Tender 17 was rigged.", files={"bid.txt": b"the winning bid"})
    agent = await site.signed_in("alice")
    response = await agent.post(f"/en/reports/{sent.report_id}/notes", {"text": NOTE})
    assert response.status == 303
    return sent.report_id


def _check(site: Site, data: bytes, tmp_path: Path) -> export.ExportCheck:
    path = tmp_path / "got.zip"
    path.write_bytes(data)
    return export.check_export(path, public_keys=known_public_keys(site.config.data_dir))


async def test_export_streams_a_verifiable_zip_and_is_audited(site: Site, tmp_path: Path) -> None:
    report_id = await _report_with_note(site)
    agent = await site.signed_in("bob")
    page = await agent.text(f"/en/reports/{report_id}")
    assert f'action="/en/reports/{report_id}/export"' in page and 'name="notes"' in page
    assert f'action="/en/reports/{report_id}/forward"' in page and 'name="recipient"' in page
    # When bob exports without the notes
    response = await agent.post(f"/en/reports/{report_id}/export", {})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="report-{report_id[:8]}-')
    assert "Content-Length" not in response.headers  # chunked: a cut transfer is a failed download
    body = await response.read()
    assert _check(site, body, tmp_path).valid
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("files/001-bid.txt") == b"the winning bid"
        assert NOTE.encode() not in archive.read("report.json")
    # and with them
    with_notes = await (await agent.post(f"/en/reports/{report_id}/export", {"notes": "1"})).read()
    with zipfile.ZipFile(io.BytesIO(with_notes)) as archive:
        assert NOTE in archive.read("report.html").decode().replace("&#39;", "'")
    # Then the audit log has both exports and the notes' inclusion, by bob
    bob = await site.services.store.caseworker_by_name("bob")
    entries = [(e.actor, e.action) for e in await site.services.store.report_audit(report_id)]
    assert entries.count((bob.id, AuditAction.EXPORTED)) == 2
    assert entries.count((bob.id, AuditAction.EXPORTED_NOTES)) == 1
    # and the report page says so in words
    history = await agent.text(f"/en/reports/{report_id}")
    assert "Exported the report" in history and "Included the internal notes in the export" in history


async def test_export_needs_the_csrf_token_and_a_grant(site: Site) -> None:
    report_id = await _report_with_note(site)
    agent = await site.signed_in("alice")
    forged = await agent.post(f"/en/reports/{report_id}/export", {"csrf_token": "forged"}, csrf=False)
    assert forged.status == 403
    hidden_id = (await submit(site.services, channel_id=await only_for(site.services, "carol"))).report_id
    assert (await agent.post(f"/en/reports/{hidden_id}/export", {})).status == 404
    before = await site.services.store.report_audit(report_id)
    assert not [e for e in before if e.action == AuditAction.EXPORTED]


@pytest.mark.parametrize("lang", ["en", "da", "sv"])
async def test_a_garbage_recipient_key_gets_a_clear_page_and_nothing_is_audited(site: Site, lang: str) -> None:
    report_id = await _report_with_note(site)
    agent = await site.signed_in("alice")
    line = forwarding.new_key_file()[1]
    for garbage in ("hello", line[:-1], line[:30] + ("1" if line[30] == "0" else "0") + line[31:], "x" * 5000):
        response = await agent.post(f"/{lang}/reports/{report_id}/forward", {"recipient": garbage})
        assert response.status in (400, 413), garbage
        page = await response.text()
        assert "Traceback" not in page
        if response.status == 400:
            assert BAD_KEY_WORDS[lang] in page
    audit = await site.services.store.report_audit(report_id)
    assert not [e for e in audit if e.action in (AuditAction.FORWARDED, AuditAction.EXPORTED)]


async def test_a_forwarded_case_opens_only_with_the_recipient_key(site: Site, tmp_path: Path) -> None:
    report_id = await _report_with_note(site)
    secret, public = new_recipient_key()
    agent = await site.signed_in("alice")
    response = await agent.post(f"/en/reports/{report_id}/forward",
                                {"recipient": forwarding.encode_public(public), "notes": "1"})
    assert response.status == 200 and response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].endswith('.dbxexport"')
    sealed = await response.read()
    assert b"Tender 17" not in sealed and b"the winning bid" not in sealed and NOTE.encode() not in sealed
    with pytest.raises(WrongRecipient):
        b"".join(forwarding.opened(io.BytesIO(sealed), secret_key=new_recipient_key()[0]))
    opened = b"".join(forwarding.opened(io.BytesIO(sealed), secret_key=secret))
    assert _check(site, opened, tmp_path).valid
    alice = await site.services.store.caseworker_by_name("alice")
    [forwarded] = [e for e in await site.services.store.report_audit(report_id) if e.action == AuditAction.FORWARDED]
    assert forwarded.actor == alice.id and forwarded.detail == fingerprint(public)
    page = await agent.text(f"/en/reports/{report_id}")
    assert re.search(r"Forwarded the report, sealed to the recipient key [0-9A-F ]{49}", page)
