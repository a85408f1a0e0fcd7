"""The crypto module on its own: round trips, fixed vectors, and every way a value can be damaged."""

from __future__ import annotations

import hashlib
import io

import pytest

from dropbox import sealing as s
from dropbox.config import TEST_KDF_MEM, TEST_KDF_OPS

CHEAP = {"ops": TEST_KDF_OPS, "mem": TEST_KDF_MEM}


def test_sealed_field_round_trips_and_is_padded() -> None:
    key = s.new_file_key()
    blob = s.seal(b"hello", key=key, context="report-body:r1")
    assert s.open_sealed(blob, key=key, context="report-body:r1") == b"hello"
    # Given two plaintexts of different length inside one pad block, ciphertexts are the same length.
    assert len(s.seal(b"x" * 200, key=key, context="c")) == len(blob)


@pytest.mark.parametrize("damage", ["flip", "context", "key", "truncate"])
def test_damaged_sealed_field_raises_tampered(damage: str) -> None:
    key = s.new_file_key()
    blob = bytearray(s.seal(b"secret", key=key, context="message:r1:m1:whistleblower"))
    context, use_key = "message:r1:m1:whistleblower", key
    if damage == "flip":
        blob[30] ^= 0x01
    elif damage == "context":  # moved to another row, or re-attributed to another author
        context = "message:r1:m1:caseworker"
    elif damage == "key":
        use_key = s.new_file_key()
    else:
        del blob[-5:]
    with pytest.raises(s.TamperedData):
        s.open_sealed(bytes(blob), key=use_key, context=context)


def test_receipt_derivation_matches_fixed_vector() -> None:
    """If this changes, every receipt already handed out stops working: change it only with a migration."""
    kdf = s.KdfParams(salt=bytes(range(16)), **CHEAP)
    keys = s.derive_receipt_keys(s.ReceiptCode("0123456789012345"), kdf=kdf)
    assert keys.lookup_id.hex() == LOOKUP_VECTOR
    assert keys.lookup_id != keys.wrap_key


LOOKUP_VECTOR = "d05bc3b3d7cc3428995be4a1970201fd7284f8a6f92b2ee21f298f6f3ef0c385"


def test_receipt_derivation_agrees_with_independent_implementations() -> None:
    """libsodium's Argon2id + keyed BLAKE2b, recomputed with argon2-cffi and hashlib."""
    from argon2.low_level import Type, hash_secret_raw

    kdf = s.KdfParams.fresh(**CHEAP)
    code = s.draw_receipt_secret(**CHEAP).secret
    master = hash_secret_raw(code.encode(), kdf.salt, time_cost=kdf.ops, memory_cost=kdf.mem // 1024,
                             parallelism=1, hash_len=32, type=Type.ID)
    expected = hashlib.blake2b(b"", key=master, person=b"dbx.lookup".ljust(16, b"\0"), digest_size=32).digest()
    assert s.derive_receipt_keys(code, kdf=kdf).lookup_id == expected


def test_receipts_are_24_digits_in_six_groups_and_parsed_back() -> None:
    drawn = s.draw_receipt_secret(**CHEAP)
    code = s.receipt_code(locator=s.new_locator(), secret=drawn.secret)
    assert len(code) == 24 and code.isdigit()
    shown = s.format_receipt(code)
    assert shown.count(" ") == 5 and shown.replace(" ", "") == code
    assert s.parse_receipt(f" {shown.replace(' ', '-')} ") == code
    assert s.split_receipt(code) == (code[:6], drawn.secret)
    assert len({s.draw_receipt_secret(**CHEAP).secret for _ in range(200)}) == 200


def test_drawn_receipts_have_their_own_salt_and_open_what_they_wrap() -> None:
    # Given two receipts drawn apart: no salt is shared, so no guess tests both at once
    first, second = s.draw_receipt_secret(**CHEAP), s.draw_receipt_secret(**CHEAP)
    assert first.salt != second.salt and len(first.salt) == s.SALT_BYTES
    # Then the keys drawn are exactly those the secret and salt derive at login
    again = s.derive_receipt_keys(first.secret, kdf=s.KdfParams(salt=first.salt, **CHEAP))
    assert again == first.keys


def test_legacy_16_digit_receipts_still_parse_and_have_no_locator() -> None:
    assert s.split_receipt(s.parse_receipt("1234 5678-9012 3456")) == (None, "1234567890123456")


@pytest.mark.parametrize("text", ["", "123", "1234 5678 9012 345x", "١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦", "1" * 17, "1" * 23,
                                  "1" * 25, "9" * 100])
def test_malformed_receipts_are_refused_before_any_hashing(text: str) -> None:
    with pytest.raises(s.InvalidSecret):
        s.parse_receipt(text)


def test_caseworker_key_unwraps_only_with_its_passphrase() -> None:
    wrapped = s.create_caseworker_key(passphrase=s.Passphrase("correct horse battery"), **CHEAP)
    key = s.unwrap_caseworker_key(wrapped, passphrase=s.Passphrase("correct horse battery"))
    assert key.public_key == wrapped.public_key
    assert bytes(key._private) not in wrapped.wrapped
    with pytest.raises(s.WrongSecret):
        s.unwrap_caseworker_key(wrapped, passphrase=s.Passphrase("correct horse battery!"))
    with pytest.raises(s.InvalidSecret):
        s.unwrap_caseworker_key(wrapped, passphrase=s.Passphrase("x" * 2000))


def test_a_replaced_key_is_a_new_pair_under_the_new_passphrase_only() -> None:
    wrapped = s.create_caseworker_key(passphrase=s.Passphrase("old passphrase here"), **CHEAP)
    old = s.unwrap_caseworker_key(wrapped, passphrase=s.Passphrase("old passphrase here"))
    keys = s.ReportKeys.generate()
    replaced, new = s.replace_caseworker_key(passphrase=s.Passphrase("new passphrase here"), **CHEAP)
    assert replaced.public_key != wrapped.public_key and new.public_key == replaced.public_key
    with pytest.raises(s.WrongSecret):
        s.unwrap_caseworker_key(replaced, passphrase=s.Passphrase("old passphrase here"))
    again = s.unwrap_caseworker_key(replaced, passphrase=s.Passphrase("new passphrase here"))
    resealed = keys.seal_for(new.public_key)
    assert again.open_report_keys(resealed) == keys
    with pytest.raises(s.TamperedData):
        old.open_report_keys(resealed)


def test_report_keys_open_only_for_the_granted_caseworker() -> None:
    a = s.unwrap_caseworker_key(s.create_caseworker_key(passphrase=s.Passphrase("aaaaaaaaaaaa"), **CHEAP),
                                passphrase=s.Passphrase("aaaaaaaaaaaa"))
    b = s.unwrap_caseworker_key(s.create_caseworker_key(passphrase=s.Passphrase("bbbbbbbbbbbb"), **CHEAP),
                                passphrase=s.Passphrase("bbbbbbbbbbbb"))
    keys = s.ReportKeys.generate()
    assert a.open_report_keys(keys.seal_for(a.public_key)) == keys
    with pytest.raises(s.TamperedData):
        b.open_report_keys(keys.seal_for(a.public_key))


def test_whistleblower_wrap_holds_the_report_key_but_never_the_staff_key() -> None:
    kdf = s.KdfParams.fresh(**CHEAP)
    keys = s.ReportKeys.generate()
    code = s.draw_receipt_secret(**CHEAP).secret
    wrapped = s.wrap_for_whistleblower(keys, receipt_keys=s.derive_receipt_keys(code, kdf=kdf), report_id="r1")
    opened = s.unwrap_for_whistleblower(wrapped, receipt_keys=s.derive_receipt_keys(code, kdf=kdf), report_id="r1")
    assert opened == keys.report_key and keys.staff_key not in opened
    other = s.derive_receipt_keys(s.draw_receipt_secret(**CHEAP).secret, kdf=kdf)
    with pytest.raises(s.TamperedData):
        s.unwrap_for_whistleblower(wrapped, receipt_keys=other, report_id="r1")


def _sealed_file(data: bytes, chunk: int, file_id: str = "f1") -> tuple[bytes, bytes]:
    key = s.new_file_key()
    sealer = s.FileSealer(file_key=key, file_id=file_id)
    out = b"".join(sealer.push(data[i : i + chunk]) for i in range(0, len(data), chunk)) + sealer.finish()
    return key, out


def test_file_stream_round_trips_with_exact_size() -> None:
    data = bytes(range(256)) * 1000
    key, blob = _sealed_file(data, 4096)
    assert len(blob) == s.sealed_size(len(data), chunk_bytes=4096)
    assert b"".join(s.open_file(io.BytesIO(blob), file_key=key, file_id="f1")) == data


def test_empty_file_round_trips() -> None:
    key, blob = _sealed_file(b"", 4096)
    assert b"".join(s.open_file(io.BytesIO(blob), file_key=key, file_id="f1")) == b""


@pytest.mark.parametrize("damage", ["truncate_end", "drop_final", "flip_middle", "reorder", "swap_id", "append",
                                    "huge_length", "no_header"])
def test_damaged_file_blob_fails_to_open(damage: str) -> None:
    data = b"A" * 10_000
    key, blob = _sealed_file(data, 1000)
    frame = 4 + 1000 + 17
    start = 6 + 24
    file_id = "f1"
    if damage == "truncate_end":
        blob = blob[:-3]
    elif damage == "drop_final":
        blob = blob[: -(4 + 17)]
    elif damage == "flip_middle":
        b = bytearray(blob)
        b[start + 3 * frame + 100] ^= 0x80
        blob = bytes(b)
    elif damage == "reorder":
        frames = [blob[start + i * frame : start + (i + 1) * frame] for i in range(10)]
        frames[2], frames[3] = frames[3], frames[2]
        blob = blob[:start] + b"".join(frames) + blob[start + 10 * frame :]
    elif damage == "swap_id":
        file_id = "f2"
    elif damage == "append":
        blob += b"x"
    elif damage == "huge_length":
        blob = blob[:start] + b"\xff\xff\xff\xff" + blob[start + 4 :]
    else:
        blob = blob[:10]
    with pytest.raises(s.TamperedData):
        b"".join(s.open_file(io.BytesIO(blob), file_key=key, file_id=file_id))


def test_generated_passphrase_has_the_promised_entropy() -> None:
    words = [f"w{i}" for i in range(7776)]
    phrase, bits = s.generate_passphrase(words, count=7)
    assert len(phrase.split()) == 7 and 90 < bits < 91


def test_a_wiped_caseworker_key_refuses_every_use() -> None:
    wrapped = s.create_caseworker_key(passphrase=s.Passphrase("aaaaaaaaaaaa"), **CHEAP)
    key = s.unwrap_caseworker_key(wrapped, passphrase=s.Passphrase("aaaaaaaaaaaa"))
    grant = s.ReportKeys.generate().seal_for(wrapped.public_key)
    key.wipe()
    assert key.wiped
    for use in (lambda: key.open_report_keys(grant), lambda: key.subkey(b"x"), lambda: key.public_key):
        with pytest.raises(s.KeyWiped):
            use()
