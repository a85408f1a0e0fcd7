"""Proof of reporting: downloaded from the mailbox over HTTP, verified, tampered with, rotated past."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import FormData

from dropbox import proof, signing
from dropbox.cleaning import Outcome, Policy
from dropbox.config import Config, config_for_tests
from dropbox.install import init_install
from dropbox.reports import open_file_key, thread
from dropbox.storage import SCHEMA_VERSION, schema_version
from dropbox.submissions import open_mailbox
from tests.support.forms import csrf_in, report_form, visible_text  # noqa: F401
from tests.support.live_server import AiohttpClient
from tests.support.metadata_files import BUILDERS
from tests.support.server_process import REPO_ROOT
from tests.support.whistleblower_site import Site, log_in, make_install, open_site, site_fixture  # noqa: F401

#: The last one is larger than LIMITS' file_chunk_bytes: hashed over several pieces as it streams.
FILES = {"minutes.pdf": b"%PDF-1.4 the minutes of the meeting " * 40, "photo.jpg": b"\xff\xd8\xff" + bytes(5000),
         "ledger.bin": bytes(range(256)) * 200}
TEXT = "The director approved the invoices himself.\n  Twice.\n"


async def _submit(site: Site, *, text: str = TEXT, files: dict[str, bytes] | None = None) -> str:
    response = await site.client.post("/en/submit", data=report_form(text, files=FILES if files is None else files))
    page = await response.text()
    assert response.status == 200, page
    shown = re.search(r'id="receipt">(.*?)</p>', page, re.S)
    assert shown
    return re.sub(r"<[^>]+>", "", shown.group(1))


async def _download(site: Site, *, contents: bool = False, messages: bool = True, lang: str = "en") -> bytes:
    warning = await site.client.get(f"/{lang}/mailbox/proof")
    assert warning.status == 200
    form = {"csrf_token": csrf_in(await warning.text())}
    if contents:
        form["contents"] = "1"
    if messages:
        form["messages"] = "1"
    response = await site.client.post(f"/{lang}/mailbox/proof", data=form)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="proof-of-reporting.txt"'
    return await response.read()


def _verify(data: bytes, site: Site) -> proof.VerifiedProof:
    return proof.verify(data, known_keys=signing.known_public_keys(site.config.data_dir))


def _canonical_digest(value: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode()).hexdigest()


async def test_a_downloaded_proof_verifies_and_states_the_digest_of_what_was_sent(site: Site) -> None:
    # Given a report with text and two files, and the whistleblower in the mailbox
    receipt = await _submit(site)
    inbox = await log_in(site.client, receipt)
    assert "/en/mailbox/proof" in inbox
    # When they download a proof (without the contents)
    data = await _download(site)
    # Then it verifies against the install's key, and its digest is the documented canonical one,
    # computed over the files' bytes as sent (hashed while they streamed, before cleaning)
    verified = _verify(data, site)
    expected = _canonical_digest({
        "kind": "dropbox-report/1", "text": TEXT, "answers": {},
        "files": [{"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in FILES.items()]})
    assert verified.facts.report_digest == expected
    assert verified.current_key and verified.fingerprint == site.services.signer.fingerprint
    text = data.decode()
    assert text.startswith(proof.FORMAT_LINE + "\n")
    for name, content in FILES.items():
        assert f"SHA-256: {hashlib.sha256(content).hexdigest()}" in text
        assert name not in text  # without the contents, no names
    assert TEXT.splitlines()[0] not in text
    # And the receipt code, in no spelling, is anywhere in it (the canary)
    digits = receipt.replace(" ", "")
    for spelling in (receipt, digits, digits[:6], digits[6:]):
        assert spelling.encode() not in data
    # nor the report's id, which would find the report on the server
    access = await open_mailbox(store=site.services.store, kdf=site.services.public_kdf,
                                install=site.services.install, receipt_text=receipt)
    assert access.report_id.encode() not in data


async def test_with_the_contents_the_proof_carries_the_text_and_files_and_they_must_match(site: Site) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    data = await _download(site, contents=True)
    verified = _verify(data, site)
    assert verified.facts.contents is not None
    report = verified.facts.contents[0]
    assert report.text == TEXT and [f.name for f in report.files] == list(FILES)
    assert "The report's text, answers and file list are included" in "\n".join(proof.describe(verified))


async def test_later_messages_are_added_to_a_new_proof_each_with_its_day_and_digest(site: Site) -> None:
    receipt = await _submit(site)
    page = await log_in(site.client, receipt)
    first = _verify(await _download(site), site)
    assert first.facts.messages == ()
    form = FormData(quote_fields=False)
    form.add_field("csrf_token", csrf_in(page))
    form.add_field("text", "And a third time in May.")
    form.add_field("files", b"more evidence", filename="may.txt", content_type="text/plain")
    assert (await site.client.post("/en/mailbox/reply", data=form, allow_redirects=False)).status == 303
    second = _verify(await _download(site, contents=True), site)
    assert second.facts.report_digest == first.facts.report_digest
    ((day, digest),) = second.facts.messages
    assert day == second.facts.received_day
    assert digest == _canonical_digest({"kind": "dropbox-message/1", "text": "And a third time in May.", "files": [
        {"name": "may.txt", "size": 13, "sha256": hashlib.sha256(b"more evidence").hexdigest()}]})
    without = _verify(await _download(site, messages=False), site)
    assert without.facts.messages == ()


async def test_the_warning_page_comes_first_and_says_what_the_file_reveals(site: Site) -> None:
    receipt = await _submit(site)
    inbox = await log_in(site.client, receipt)
    # The inbox only links to the warning page; the download is that page's form
    assert 'href="/en/mailbox/proof"' in inbox and 'action="/en/mailbox/proof"' not in inbox
    warning = await site.client.get("/en/mailbox/proof")
    text = visible_text(await warning.text())
    assert "Anyone who finds this file on your device learns that you made a report." in text
    assert "It does not contain your receipt code" in text
    # A download without the page's token is refused
    refused = await site.client.post("/en/mailbox/proof", data={"contents": "1"})
    assert refused.status in (400, 403)
    assert proof.FORMAT_LINE not in await refused.text()


async def test_without_a_mailbox_session_there_is_no_proof(site: Site) -> None:
    for method in ("get", "post"):
        response = await getattr(site.client, method)("/en/mailbox/proof", allow_redirects=False)
        assert response.status == 303 and response.headers["Location"].startswith("/en/mailbox")


@pytest.mark.parametrize("lang, warning", [
    ("da", "Alle, der finder denne fil på din enhed, kan se, at du har indgivet en indberetning."),
    ("sv", "Den som hittar den här filen på din enhet får veta att du har lämnat en rapport."),
])
async def test_the_warning_and_the_proof_speak_the_persons_language(site: Site, lang: str, warning: str) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt, lang=lang)
    page = await (await site.client.get(f"/{lang}/mailbox/proof")).text()
    assert warning in visible_text(page)
    data = await _download(site, lang=lang)
    assert _verify(data, site).facts.report_digest
    assert data.decode().splitlines()[1] != "This file proves that the report described below was received " \
                                            "through this whistleblowing channel."


# --- tampering ------------------------------------------------------------------------------


def _replace_line(data: bytes, prefix: str, new: str) -> bytes:
    lines = data.decode().split("\n")
    (index,) = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    lines[index] = new
    return "\n".join(lines).encode()


async def test_changing_any_byte_fails_with_a_reason(site: Site) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    data = await _download(site, contents=True)
    verified = _verify(data, site)
    other_day = "2001-01-01"
    digest = verified.facts.report_digest
    cases = {
        "text": data.replace(b"Twice.", b"Thrice"),
        "day": _replace_line(data, "Report received: ", f"Report received: {other_day}"),
        "digest": data.replace(digest.encode(), digest[:-1].encode() + (b"0" if digest[-1] != "0" else b"1")),
        "organisation": _replace_line(data, "Organisation: ", "Organisation: Somebody else"),
    }
    for what, changed in cases.items():
        assert changed != data, what
        with pytest.raises(proof.ProofError) as failure:
            _verify(changed, site)
        # The included text no longer matches its digest, or the signature does not match
        assert ("signature does not match" in str(failure.value) or "do not match" in str(failure.value)), what
    # A day or organisation changed in a proof without the contents: the signature catches it
    bare = await _download(site)
    with pytest.raises(proof.BadSignature, match="signature does not match"):
        _verify(_replace_line(bare, "Report received: ", f"Report received: {other_day}"), site)
    signature_line = bare.decode().rstrip("\n").rsplit("\n", 1)[1]
    raw = bytearray(base64.b64decode(signature_line.removeprefix("Signature: ")))
    raw[10] ^= 1
    forged = bare.replace(signature_line.encode(), b"Signature: " + base64.b64encode(bytes(raw)))
    with pytest.raises(proof.BadSignature, match="signature does not match"):
        _verify(forged, site)
    # Every single flipped bit in the signed part fails too
    for index in range(0, len(bare) - len(signature_line) - 1, 7):
        flipped = bytearray(bare)
        flipped[index] ^= 0x01
        with pytest.raises(proof.ProofError):
            _verify(bytes(flipped), site)


async def test_a_proof_saved_by_a_windows_editor_still_verifies(site: Site) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    data = await _download(site, contents=True)
    notepad = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
    assert _verify(notepad, site).facts == _verify(data, site).facts
    with pytest.raises(proof.BadSignature, match="signature does not match"):
        _verify(notepad.replace(b"Organisation: ", b"Organisation: X"), site)


@pytest.mark.parametrize("damage, reason", [
    (lambda d: b"hello\n" + d, "the first line is not"),
    (lambda d: d.rsplit(b"Signature: ", 1)[0], "the last line is not"),
    (lambda d: d.replace(b"Signature: ", b"Signature: !!"), "not base64"),
    (lambda d: d.replace(b"Report files: 3", b"Report files: x"), "not a count"),
    (lambda d: b"\xff" + d, "not UTF-8"),
])
async def test_a_malformed_proof_says_what_is_wrong(site: Site, damage: object, reason: str) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    data = await _download(site)
    with pytest.raises(proof.MalformedProof, match=reason):
        _verify(damage(data), site)  # type: ignore[operator]


async def test_a_proof_from_another_install_fails(site: Site, tmp_path: Path) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    data = await _download(site)
    other = config_for_tests(tmp_path / "other")
    await init_install(other)
    with pytest.raises(proof.BadSignature, match="signed by a key this install does not know"):
        proof.verify(data, known_keys=signing.known_public_keys(other.data_dir))
    # Nor can the other install re-sign it under this install's name: the key line is its own
    other_signer = signing.load_signer(other.data_dir)
    body = data.decode().rsplit("\nSigning key fingerprint: ", 1)[0] + "\n"
    resigned = (body + f"Signing key fingerprint: {other_signer.fingerprint}\nSigning key: "
                f"{other_signer.public_key_text}\n").encode()
    resigned += b"Signature: " + base64.b64encode(other_signer.sign(resigned)) + b"\n"
    with pytest.raises(proof.BadSignature, match="does not know"):
        _verify(resigned, site)
    with pytest.raises(proof.BadSignature, match="signature does not match"):  # other key named, ours listed
        _verify(_replace_line(resigned, "Signing key: ", f"Signing key: {site.services.signer.public_key_text}")
                .replace(other_signer.fingerprint.encode(), site.services.signer.fingerprint.encode()), site)


async def test_an_old_proof_verifies_after_the_key_is_rotated(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config) as site:
        receipt = await _submit(site)
        await log_in(site.client, receipt)
        old = await _download(site)
    signing.rotate_signing_key(config.data_dir)
    async with open_site(aiohttp_client, config) as site:
        verified = _verify(old, site)
        assert not verified.current_key
        assert "a retired signing key" in proof.describe(verified)[0]
        await log_in(site.client, receipt)
        new = _verify(await _download(site), site)
        assert new.current_key and new.fingerprint != verified.fingerprint
        assert new.facts.report_digest == verified.facts.report_digest


# --- run.py verify --------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, text=True, capture_output=True,
                          timeout=120, check=False)


async def test_run_verify_exit_codes_and_reasons(site: Site, tmp_path: Path) -> None:
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    good = tmp_path / "proof.txt"
    good.write_bytes(await _download(site, contents=True))
    data = ("--data", str(site.config.data_dir))
    done = _run("verify", str(good), *data)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("VALID proof of reporting") and site.services.signer.fingerprint in done.stdout
    bad = tmp_path / "bad.txt"
    bad.write_bytes(_replace_line(good.read_bytes(), "Proof made: ", "Proof made: 2001-01-01"))
    done = _run("verify", str(bad), *data)
    assert done.returncode == 1 and done.stdout == "INVALID: signature does not match: the proof was changed " \
                                                   "after it was signed\n"
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"not a proof\n")
    done = _run("verify", str(junk), *data)
    assert done.returncode == 1 and done.stdout.startswith("INVALID: malformed: ")
    done = _run("verify", str(tmp_path / "missing.txt"), *data)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    done = _run("verify", *data)
    assert done.returncode == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_the_openssl_recipe_of_docs_proof_md_verifies_a_proof(site: Site, tmp_path: Path) -> None:
    # The recipe in docs/PROOF.md, step by step, with nothing of ours but the published key
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    proof_file = tmp_path / "proof-of-reporting.txt"
    proof_file.write_bytes(await _download(site))
    key = tmp_path / "key.pem"
    key.write_text(_run("signing-key", "--pem", "--data", str(site.config.data_dir)).stdout)
    recipe = (REPO_ROOT / "docs" / "PROOF.md").read_text()
    commands = re.search(r"```sh\n# openssl\n(.*?)```", recipe, re.S)
    assert commands, "docs/PROOF.md has no openssl recipe"
    script = commands.group(1)
    done = subprocess.run(["sh", "-e", "-c", script], cwd=tmp_path, text=True, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout, done.stdout + done.stderr
    proof_file.write_bytes(proof_file.read_bytes().replace(b"Proof made: ", b"Proof made:  "))
    done = subprocess.run(["sh", "-e", "-c", script], cwd=tmp_path, text=True, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode != 0


async def test_the_python_recipes_of_docs_proof_md_verify_a_proof_and_reproduce_its_digest(
        site: Site, tmp_path: Path) -> None:
    # The PyNaCl lines of docs/PROOF.md, run as written with the channel's key and a downloaded proof
    receipt = await _submit(site)
    await log_in(site.client, receipt)
    data = await _download(site)
    recipe = (REPO_ROOT / "docs" / "PROOF.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", recipe.split("## Verifying an export")[0], re.S)
    check, digest = blocks  # "With Python and PyNaCl", then "Matching the digest to what you sent"
    check = check.replace("<the channel's public key, base64>", site.services.signer.public_key_text)
    (tmp_path / "proof-of-reporting.txt").write_bytes(data)
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    (tmp_path / "proof-of-reporting.txt").write_bytes(data.replace(b"Proof made: ", b"Proof made:  "))
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0 and "BadSignatureError" in done.stderr
    # and the digest lines, given the report's text and its one file, print the proof's report digest
    name, content = "minutes.pdf", FILES["minutes.pdf"]
    (tmp_path / name).write_bytes(content)
    digest = digest.replace('"size": 1234', f'"size": {len(content)}').replace(
        '"<the text exactly as sent>"', repr(TEXT))
    assert f'"size": {len(content)}' in digest and repr(TEXT) in digest
    receipt = await _submit(site, files={name: content})
    await log_in(site.client, receipt)
    facts = _verify(await _download(site), site).facts
    done = subprocess.run([sys.executable, "-c", digest], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.stdout.strip() == facts.report_digest, done.stderr


# --- an install from before proofs (schema 8) -------------------------------------------------


def _back_to_schema_8(config: Config) -> None:
    """What an install made before migration 9 has: no digest column, no signing key."""
    with contextlib.closing(sqlite3.connect(config.db_path)) as db:
        db.execute("ALTER TABLE files DROP COLUMN sealed_sent")
        db.execute("PRAGMA user_version = 8")
        db.commit()
    shutil.rmtree(config.data_dir / "keys" / "signing")


async def test_migrating_a_schema_8_install_keeps_its_reports_and_proofs_say_digest_not_recorded(
        aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    # Given an install at schema 8 (the one before proofs) with a report and its files, and no signing key
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config) as site:
        receipt = await _submit(site)
    _back_to_schema_8(config)
    assert schema_version(config.db_path) == 8
    # When the operator migrates it
    done = _run("migrate", "--data", str(config.data_dir))
    assert done.returncode == 0, done.stderr
    assert "Made the install signing key" in done.stdout
    assert schema_version(config.db_path) == SCHEMA_VERSION
    # Then the report opens as before, and its proof verifies and says the old files' digests were
    # not recorded (rather than inventing them)
    async with open_site(aiohttp_client, config) as site:
        page = await log_in(site.client, receipt)
        assert "minutes.pdf" in page and "photo.jpg" in page
        data = await _download(site, contents=True)
        verified = _verify(data, site)
    assert [(f.name, f.size, f.sha256) for f in verified.facts.contents[0].files] == [  # type: ignore[index]
        ("minutes.pdf", None, None), ("photo.jpg", None, None), ("ledger.bin", None, None)]
    assert data.decode().count(f"SHA-256: {proof.NOT_RECORDED}") == 6  # in the summary and in the contents


# --- what was sent, not the cleaned copy ----------------------------------------------------


@pytest.mark.parametrize("policy", [Policy.REMOVE, Policy.KEEP_ORIGINAL])
async def test_the_digest_is_of_the_bytes_sent_not_of_the_cleaned_copy(site: Site, tmp_path: Path,
                                                                       policy: Policy) -> None:
    # Given a channel that cleans files, and a photo carrying its camera and GPS position
    channel = await site.services.store.channel("default")
    await site.services.store.update_channel(dataclasses.replace(channel, cleaning_policy=policy.value))
    name, data, _planted = BUILDERS["jpeg"](tmp_path)
    receipt = await _submit(site, files={name: data})
    # When the whistleblower downloads a proof
    await log_in(site.client, receipt)
    verified = _verify(await _download(site, contents=True), site)
    # Then it names one file, with the size and SHA-256 of the photo as sent ...
    ((listed,),) = [verified.facts.contents[0].files]  # type: ignore[index]
    assert (listed.name, listed.size, listed.sha256) == (name, len(data), hashlib.sha256(data).hexdigest())
    # ... while what the caseworkers read is the cleaned copy, whose bytes differ
    access = await open_mailbox(store=site.services.store, kdf=site.services.public_kdf,
                                install=site.services.install, receipt_text=receipt)
    files, _ = await thread(site.services.store, report_id=access.report_id, report_key=access.report_key)
    (shown,) = files
    assert shown.cleaning is not None and shown.cleaning.outcome is Outcome.CLEANED
    stored = await site.services.store.file(report_id=access.report_id, file_id=shown.id)
    copy = b"".join(site.services.blobs.read(stored.id, file_key=open_file_key(stored, report_key=access.report_key),
                                             size=shown.size))
    assert copy != data and hashlib.sha256(copy).hexdigest() != listed.sha256
