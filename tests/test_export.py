"""Case export (dropbox/export.py): a real install, a report with files, an original kept as
evidence, messages both ways, a note and a reason; the ZIP made by the domain function, written
to a real file, checked by the verifier; then tampered with, made by another install, checked
after a key rotation, and a 200 MB one streamed under tracemalloc.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dropbox import accounts, casework, export
from dropbox.audit import AuditAction
from dropbox.cleaning import CleanedUpload, FileCleaning, Outcome
from dropbox.config import Config, MiB
from dropbox.reports import ReportBody
from dropbox.sealing import ReportKeys
from dropbox.services import Services
from dropbox.signing import known_public_keys, rotate_signing_key
from dropbox.submissions import open_mailbox, post_whistleblower_message, submit_report
from tests.support.domain import chunks_of
from tests.support.installs import PASSPHRASES, new_install

EVIDENCE = b"%PDF-1.4 cleaned evidence " + os.urandom(5000)
ORIGINAL = b"%PDF-1.4 original with Author=Jane " + os.urandom(3000)
LATER = b"a later file from the whistleblower"
REPLY_FILE = b"the caseworker's questions"


@dataclass
class Case:
    config: Config
    services: Services
    session: accounts.CaseworkerSession
    report_id: str


async def _submit_with_original(services: Services) -> str:
    """A report whose file was cleaned on a channel that keeps originals: two stored files."""
    staged = services.blobs.stage(byte_budget=services.config.max_submission_bytes)
    copy = await staged.add("Évidence 1/2.pdf", chunks_of(EVIDENCE), max_file_bytes=services.config.max_file_bytes)
    original = await staged.add("Évidence 1/2.pdf", chunks_of(ORIGINAL), max_file_bytes=services.config.max_file_bytes)
    cleaned = CleanedUpload(by_file={copy.id: FileCleaning(outcome=Outcome.CLEANED, original_kept=True)},
                            originals={original.id: copy.id})
    receipt = await submit_report(store=services.store, kdf=services.public_kdf, install=services.install,
                                  channel_id="default", keys=ReportKeys.generate(), staged=staged, cleaned=cleaned,
                                  body=ReportBody(text="The minister's budget was moved.", answers={},
                                                  contact="signal: +45 0000"))
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    later = services.blobs.stage(byte_budget=services.config.max_submission_bytes)
    await later.add("later.txt", chunks_of(LATER), max_file_bytes=services.config.max_file_bytes)
    await post_whistleblower_message(store=services.store, access=access, text="One more thing.", staged=later)
    return access.report_id


@pytest.fixture(name="case")
async def case_fixture(tmp_path: Path) -> AsyncIterator[Case]:
    config = await new_install(tmp_path / "data")
    async with Services.open(config) as services:
        report_id = await _submit_with_original(services)
        session = await accounts.login(store=services.store, kdf=services.staff_kdf, config=config, name="alice",
                                       passphrase=PASSPHRASES["alice"])
        staged = services.blobs.stage(byte_budget=config.max_submission_bytes, public=False)
        await staged.add("questions.txt", chunks_of(REPLY_FILE), max_file_bytes=config.max_file_bytes)
        await casework.post_reply(store=services.store, session=session, report_id=report_id,
                                  text="Thank you. Who else knew?", staged=staged)
        await casework.add_note(store=services.store, session=session, report_id=report_id,
                                text="Internal: check the ledger first.")
        await casework.record_reason(store=services.store, session=session, report_id=report_id, kind="extension",
                                     text="Needs an audit of two years.")
        yield Case(config=config, services=services, session=session, report_id=report_id)


async def _export(case: Case, **options: object) -> bytes:
    prepared = await export.prepare_export(store=case.services.store, blobs=case.services.blobs,
                                           session=case.session, report_id=case.report_id,
                                           signer=case.services.signer, **options)  # type: ignore[arg-type]
    return b"".join(export.stream_export(prepared))


def _write(tmp_path: Path, data: bytes, name: str = "export.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _rewrite(source: Path, target: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of the ZIP with members replaced (bytes), removed (None) or added (a new name):
    a well-formed ZIP, CRCs right, as a careful forger would make it."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename in change:
                data = change[info.filename]
                if data is not None:
                    new.writestr(info.filename, data)
            else:
                new.writestr(info.filename, old.read(info.filename))
        for name, data in change.items():
            if name not in old.namelist() and data is not None:
                new.writestr(name, data)
    return target


async def test_an_export_with_files_messages_and_notes_verifies(case: Case, tmp_path: Path) -> None:
    # Given a report with a cleaned file and its original, messages both ways with files, a note
    # When a caseworker exports it with the notes and the originals
    path = _write(tmp_path, await _export(case, include_notes=True, include_originals=True))
    # Then it verifies against the install's keys, every member listed
    check = export.check_export(path, public_keys=known_public_keys(case.config.data_dir))
    assert check.valid, check.reason
    assert check.report_id == case.report_id
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[:2] == ["report.html", "report.json"] and names[-2:] == ["manifest.json", "manifest.sig"]
        assert archive.read("files/001-Evidence_1_2.pdf") == EVIDENCE
        assert archive.read("files/originals/001-Evidence_1_2.pdf") == ORIGINAL
        assert archive.read("files/002-later.txt") == LATER
        assert archive.read("files/003-questions.txt") == REPLY_FILE
        listed = {m["name"]: m for m in json.loads(archive.read("manifest.json"))["members"]}
        assert set(listed) == set(names) - {"manifest.json", "manifest.sig"}
        for name in listed:
            assert listed[name]["sha256"] == hashlib.sha256(archive.read(name)).hexdigest()
        case_json = json.loads(archive.read("report.json"))
        html = archive.read("report.html").decode()
    assert case_json["text"] == "The minister's budget was moved." and case_json["contact"] == "signal: +45 0000"
    assert case_json["files"][0]["name"] == "Évidence 1/2.pdf"
    assert case_json["files"][0]["original"] == "files/originals/001-Evidence_1_2.pdf"
    assert [m["text"] for m in case_json["messages"]] == ["One more thing.", "Thank you. Who else knew?"]
    assert case_json["notes"][0]["text"] == "Internal: check the ledger first."
    assert case_json["deadlines"]["reasons"][0]["text"] == "Needs an audit of two years."
    assert case_json["deadlines"]["feedback"]["extended"] is True
    assert {"status": "in_progress"}.items() <= case_json["statuses"][-1].items()
    actions = [e["action"] for e in case_json["history"]]
    assert {AuditAction.EXPORTED, AuditAction.EXPORTED_NOTES, AuditAction.EXPORTED_ORIGINALS} <= set(actions)
    # and the page shows the same, escaped, with nothing it would fetch
    assert "The minister&#39;s budget was moved." in html and "check the ledger first" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html and "src=" not in html
    # and Info-ZIP's unzip (as a records system would use) reads the streamed ZIP without error
    if shutil.which("unzip"):
        tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
        assert tested.returncode == 0, tested.stdout + tested.stderr


async def test_the_export_is_audited_with_what_it_included(case: Case) -> None:
    await _export(case)
    await _export(case, include_notes=True)
    entries = [(e.actor, e.action) for e in await case.services.store.report_audit(case.report_id)]
    me = case.session.caseworker.id
    assert entries.count((me, AuditAction.EXPORTED)) == 2
    assert entries.count((me, AuditAction.EXPORTED_NOTES)) == 1
    assert (me, AuditAction.EXPORTED_ORIGINALS) not in entries


async def test_without_the_checkbox_no_note_and_no_original_leaves(case: Case, tmp_path: Path) -> None:
    data = await _export(case)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        everything = b"".join(archive.read(n) for n in archive.namelist())
        assert not any(n.startswith("files/originals/") for n in archive.namelist())
        case_json = json.loads(archive.read("report.json"))
    assert b"check the ledger" not in everything and ORIGINAL not in everything
    assert "notes" not in case_json and case_json["notes_included"] is False
    assert case_json["files"][0]["original_kept"] is True and "original" not in case_json["files"][0]


@pytest.mark.parametrize(("change", "reason"), [
    ({"files/002-later.txt": b"a forged file"}, "member files/002-later.txt: digest does not match"),
    ({"report.json": b"{}"}, "member report.json: digest does not match"),
    ({"files/002-later.txt": None}, "member files/002-later.txt: missing"),
    ({"files/extra.exe": b"MZ"}, "member files/extra.exe: not in the signed manifest"),
    ({"manifest.sig": bytes(64)}, "signature: does not match manifest.json"),
    ({"manifest.sig": None}, "manifest.sig is missing"),
])
async def test_a_tampered_export_fails_with_the_reason(case: Case, tmp_path: Path, change: dict[str, bytes | None],
                                                       reason: str) -> None:
    good = _write(tmp_path, await _export(case))
    bad = _rewrite(good, tmp_path / "tampered.zip", change)
    check = export.check_export(bad, public_keys=known_public_keys(case.config.data_dir))
    assert not check.valid and reason in check.reason, check.reason


async def test_a_manifest_changed_to_match_a_forged_file_fails_the_signature(case: Case, tmp_path: Path) -> None:
    good = _write(tmp_path, await _export(case))
    with zipfile.ZipFile(good) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    forged = b"a forged file"
    for member in manifest["members"]:
        if member["name"] == "files/002-later.txt":
            member.update(size=len(forged), sha256=hashlib.sha256(forged).hexdigest())
    bad = _rewrite(good, tmp_path / "forged.zip", {"files/002-later.txt": forged,
                                                    "manifest.json": json.dumps(manifest).encode()})
    check = export.check_export(bad, public_keys=known_public_keys(case.config.data_dir))
    assert not check.valid and check.reason.startswith("signature: does not match"), check.reason


async def test_a_flipped_byte_in_the_zip_fails(case: Case, tmp_path: Path) -> None:
    data = bytearray(await _export(case))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("files/002-later.txt")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 2] ^= 0x01  # in its deflated bytes
    check = export.check_export(_write(tmp_path, bytes(data)), public_keys=known_public_keys(case.config.data_dir))
    assert not check.valid and "member files/002-later.txt: digest does not match" in check.reason


async def test_an_export_from_another_install_fails_and_an_old_one_verifies_after_rotation(
        case: Case, tmp_path: Path) -> None:
    path = _write(tmp_path, await _export(case))
    other = await new_install(tmp_path / "other")
    async with Services.open(other):  # makes its signing key
        pass
    check = export.check_export(path, public_keys=known_public_keys(other.data_dir))
    assert not check.valid and "is not one of this install's signing keys" in check.reason
    # Given the install's key rotated since the export was made, it still verifies (a retired key)
    rotate_signing_key(case.config.data_dir)
    check = export.check_export(path, public_keys=known_public_keys(case.config.data_dir))
    assert check.valid and not check.current_key, check.reason
    assert "a retired signing key" in "\n".join(export.describe(check))


def test_member_names_are_flat_ascii_and_numbered() -> None:
    assert export.member_name(1, "../../etc/passwd") == "files/001-etc_passwd"
    assert export.member_name(2, "/home/x/.bashrc") == "files/002-home_x.bashrc"
    assert export.member_name(12, "C:\\Users\\x\\Rapport ø.docx") == "files/012-C_Users_x_Rapport.docx"
    assert export.member_name(3, "....", original=True) == "files/originals/003-file"
    assert export.member_name(4, "名前.pdf") == "files/004-file.pdf"


# --- constant memory -------------------------------------------------------------------------

BIG = 200 * MiB


async def _big_chunks() -> AsyncIterator[bytes]:
    block = os.urandom(MiB)
    for i in range(BIG // MiB):
        yield block[:8] + i.to_bytes(8, "big") + block[16:]


def _drain(chunks: Iterator[bytes]) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


async def test_a_200_mb_export_streams_in_constant_memory(tmp_path: Path) -> None:
    # Given a report with a 200 MB file
    config = await new_install(tmp_path / "data", max_file_bytes=BIG, max_submission_bytes=BIG)
    async with Services.open(config) as services:
        staged = services.blobs.stage(byte_budget=BIG)
        await staged.add("big.bin", _big_chunks(), max_file_bytes=BIG)
        receipt = await submit_report(store=services.store, kdf=services.public_kdf, install=services.install,
                                      channel_id="default", keys=ReportKeys.generate(), staged=staged,
                                      body=ReportBody(text="big", answers={}))
        access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                    receipt_text=receipt)
        session = await accounts.login(store=services.store, kdf=services.staff_kdf, config=config, name="alice",
                                       passphrase=PASSPHRASES["alice"])
        prepared = await export.prepare_export(store=services.store, blobs=services.blobs, session=session,
                                               report_id=access.report_id, signer=services.signer)
        # When the whole ZIP is streamed (hashed and dropped, as a response would send it)
        tracemalloc.start()
        try:
            size, _digest = _drain(export.stream_export(prepared))
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # Then all of it went through, and never more than a few chunks were held at once
    assert size > BIG
    assert peak < 32 * MiB, f"peak {peak / MiB:.1f} MiB while streaming a {size / MiB:.0f} MiB export"
