"""The install signing key: Ed25519 primitives, the key files, rotation, backup, `run.py signing-key`."""

from __future__ import annotations

import html
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dropbox import signing
from dropbox.audit import AuditAction
from dropbox.backup import create_backup, restore_backup
from dropbox.config import config_for_tests
from dropbox.sealing import new_signing_key, sign_detached, signing_public_key, verify_detached
from tests.support.caseworker_site import Site, site_fixture  # noqa: F401
from tests.support.installs import new_install
from tests.support.live_server import AiohttpClient
from tests.support.server_process import REPO_ROOT
from tests.support.whistleblower_site import make_install, open_site


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", *args, "--data", str(data)], cwd=REPO_ROOT, text=True,
                          capture_output=True, timeout=120, check=False)


# --- primitives ---------------------------------------------------------------------------------


def test_a_signature_verifies_and_any_flipped_byte_fails() -> None:
    seed, public = new_signing_key()
    assert len(seed) == 32 and len(public) == 32 and signing_public_key(seed) == public
    message = b"proof of reporting\n"
    signature = sign_detached(seed, message)
    assert len(signature) == 64 and verify_detached(public, message, signature)
    for i in range(len(message)):
        assert not verify_detached(public, message[:i] + bytes([message[i] ^ 1]) + message[i + 1:], signature)
    for i in (0, 31, 32, 63):
        assert not verify_detached(public, message, signature[:i] + bytes([signature[i] ^ 1]) + signature[i + 1:])
    assert not verify_detached(new_signing_key()[1], message, signature)


def test_an_rfc8032_vector_signs_as_the_standard_says() -> None:
    # RFC 8032, section 7.1, TEST 2: pure Ed25519, so standard tools agree with us.
    seed = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
    public = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    expected = bytes.fromhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                             "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
    assert signing_public_key(seed) == public
    assert sign_detached(seed, b"\x72") == expected


@pytest.mark.parametrize("public, signature", [(b"", b"x" * 64), (b"k" * 31, b"x" * 64), (b"k" * 32, b"x" * 63),
                                               (b"k" * 32, b"")])
def test_wrong_lengths_are_false_not_an_exception(public: bytes, signature: bytes) -> None:
    assert verify_detached(public, b"m", signature) is False


def test_the_fingerprint_is_ten_groups_of_four_hex_digits_of_sha256() -> None:
    public = bytes(32)
    # sha256(32 zero bytes) = 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925
    assert signing.fingerprint(public) == "6668 7AAD F862 BD77 6C8F C18B 8E9F 8E20 0897 1485"


# --- the key files ------------------------------------------------------------------------------


def test_init_makes_one_private_key_that_later_calls_keep(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert signing.ensure_signing_key(data) is True
    secret = data / "keys" / "signing" / "secret_key"
    assert _mode(secret) == 0o600 and _mode(secret.parent) == 0o700 and _mode(data / "keys") == 0o700
    first = signing.load_signer(data)
    assert signing.ensure_signing_key(data) is False
    assert signing.load_signer(data).public_key == first.public_key
    assert signing.known_public_keys(data) == [first.public_key]
    assert verify_detached(first.public_key, b"m", first.sign(b"m"))
    assert first.fingerprint == signing.fingerprint(first.public_key)
    assert "_seed" not in repr(first) and secret.read_bytes().hex() not in repr(first)


def test_a_damaged_key_is_refused_never_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    signing.ensure_signing_key(data)
    secret = data / "keys" / "signing" / "secret_key"
    secret.write_bytes(b"short")
    with pytest.raises(signing.SigningKeyError, match="not a signing key"):
        signing.ensure_signing_key(data)
    assert secret.read_bytes() == b"short"


def test_a_key_readable_by_others_is_narrowed_to_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    signing.ensure_signing_key(data)
    secret = data / "keys" / "signing" / "secret_key"
    secret.chmod(0o644)
    signing.load_signer(data)
    assert _mode(secret) == 0o600


def test_rotation_keeps_every_old_public_key_and_forgets_the_old_seed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    signing.ensure_signing_key(data)
    first = signing.load_signer(data)
    old_signature = first.sign(b"old proof")
    signing.rotate_signing_key(data)
    second = signing.load_signer(data)
    signing.rotate_signing_key(data)
    third = signing.load_signer(data)
    assert len({first.public_key, second.public_key, third.public_key}) == 3
    assert signing.known_public_keys(data) == [third.public_key, second.public_key, first.public_key]
    assert any(verify_detached(k, b"old proof", old_signature) for k in signing.known_public_keys(data))
    stored = b"".join(p.read_bytes() for p in (data / "keys" / "signing").rglob("*") if p.is_file())
    assert bytes(first._seed) not in stored and bytes(second._seed) not in stored
    for path in (data / "keys" / "signing" / "retired").iterdir():
        assert _mode(path) == 0o600


async def test_a_restored_backup_keeps_the_signing_keys_old_and_new(tmp_path: Path) -> None:
    config = await new_install(tmp_path / "data")
    old = signing.load_signer(config.data_dir)
    signing.rotate_signing_key(config.data_dir)
    current = signing.load_signer(config.data_dir)
    create_backup(config, tmp_path / "b.tar")
    restored = config_for_tests(tmp_path / "restored")
    restore_backup(tmp_path / "b.tar", restored)
    assert signing.load_signer(restored.data_dir).public_key == current.public_key
    assert signing.known_public_keys(restored.data_dir) == [current.public_key, old.public_key]
    assert _mode(restored.data_dir / "keys" / "signing" / "secret_key") == 0o600
    assert signing.ensure_signing_key(restored.data_dir) is False


# --- run.py signing-key -------------------------------------------------------------------------


def test_signing_key_prints_the_key_and_rotate_is_audited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run("init", data=data).returncode == 0
    first = signing.load_signer(data)
    shown = run("signing-key", data=data)
    assert shown.returncode == 0, shown.stderr
    assert first.public_key_text in shown.stdout and first.fingerprint in shown.stdout
    rotated = run("signing-key", "--rotate", data=data)
    assert rotated.returncode == 0, rotated.stderr
    second = signing.load_signer(data)
    assert second.public_key != first.public_key
    assert second.public_key_text in rotated.stdout and first.public_key_text in rotated.stdout  # retired, listed
    with sqlite3.connect(data / "dropbox.sqlite3") as db:
        rows = db.execute("SELECT actor, action, detail FROM audit WHERE action = ?",
                          (AuditAction.SIGNING_KEY_ROTATED,)).fetchall()
    assert rows == [(None, AuditAction.SIGNING_KEY_ROTATED, second.fingerprint)]
    pem = run("signing-key", "--pem", data=data)
    assert pem.stdout.startswith("-----BEGIN PUBLIC KEY-----\n") and pem.stdout.endswith("-----END PUBLIC KEY-----\n")


def test_signing_key_without_an_install_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = run("signing-key", data=tmp_path / "nothing")
    assert result.returncode == 2 and "run.py init" in result.stderr and len(result.stderr.splitlines()) == 1


# --- where people see the key ---------------------------------------------------------------


@pytest.mark.parametrize("lang, heading", [("en", "This install's signing key"),
                                           ("da", "Installationens signeringsnøgle"),
                                           ("sv", "Installationens signeringsnyckel")])
async def test_the_caseworker_settings_page_shows_the_key_and_fingerprint(site: Site, lang: str,
                                                                          heading: str) -> None:
    signer = signing.load_signer(site.services.config.data_dir)
    page = await (await site.signed_in("alice")).text(f"/{lang}/settings")
    assert heading in html.unescape(page)
    assert signer.fingerprint in page and signer.public_key_text in page


async def test_the_landing_page_shows_the_key_in_about_this_channel(aiohttp_client: AiohttpClient,
                                                                    tmp_path: Path) -> None:
    config = await make_install(tmp_path / "data")
    async with open_site(aiohttp_client, config) as wb:
        for lang, heading in (("en", "About this channel"), ("da", "Om denne ordning"), ("sv", "Om den här kanalen")):
            page = html.unescape(await (await wb.client.get(f"/{lang}/")).text())
            about = page.split(heading, 1)[1]
            assert wb.services.signer.fingerprint in about and wb.services.signer.public_key_text in about


async def test_a_rotation_shows_in_the_audit_log_in_words(site: Site) -> None:
    await site.services.store.audit(hour="2026-01-01 10:00", actor=None, action=AuditAction.SIGNING_KEY_ROTATED,
                                    detail="AAAA BBBB")
    page = html.unescape(await (await site.signed_in("alice")).text("/en/admin/audit"))
    assert "Replaced the install's signing key; the new fingerprint is AAAA BBBB" in page
