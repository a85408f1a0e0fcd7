"""All of the drop box's cryptography, and nothing else.

No other module imports PyNaCl or argon2. The scheme is written down in docs/PROTOCOL.md; in short:

* A caseworker's Curve25519 private key is stored only wrapped under a key derived with Argon2id
  from their passphrase.
* Each report has two random keys: the *report key* (the whistleblower and the caseworkers have
  it; it seals the account, answers, messages and file keys) and the *staff key* (caseworkers
  only; it seals internal notes). Both are sealed (SealedBox) to every caseworker granted the
  report; the report key alone is wrapped once more for the whistleblower under a key derived
  from the receipt code.
* Every sealed field is bound to where it belongs (report id, message id, purpose) as AEAD
  associated data, so whoever can edit the database cannot move a ciphertext to another row
  without it failing to open.
* File contents go through libsodium's secretstream in chunks, so files of any size are sealed
  and opened in constant memory and a truncated or reordered blob fails to open.

Argon2id runs through libsodium (PyNaCl), not argon2-cffi: at the same parameters libsodium's
optimised implementation is markedly faster (bench/ prints both), and every millisecond saved is
a millisecond of cost we can add for an attacker at the same latency for users.
"""

from __future__ import annotations

import json
import math
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NewType, Protocol

import nacl.bindings as sodium
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.pwhash.argon2id as argon2id
import nacl.signing
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _sodium_lib
from nacl.public import PrivateKey, PublicKey, SealedBox

#: Argon2id's cost bounds, for the settings that choose a cost (config.py): libsodium's MODERATE
#: (t=3, m=256 MiB, the production floor), its cheapest (tests only) and its ceiling.
KDF_OPS_MODERATE = argon2id.OPSLIMIT_MODERATE
KDF_MEM_MODERATE = argon2id.MEMLIMIT_MODERATE
KDF_OPS_MIN = argon2id.OPSLIMIT_MIN
KDF_MEM_MIN = argon2id.MEMLIMIT_MIN
KDF_OPS_MAX = argon2id.OPSLIMIT_MAX
KDF_MEM_MAX = argon2id.MEMLIMIT_MAX

ReceiptCode = NewType("ReceiptCode", str)
"""The whistleblower's only credential, decimal digits without separators: 24 (a 6-digit locator,
then an 18-digit secret), or 16 for a report made before schema 3 (see docs/PROTOCOL.md)."""

Passphrase = NewType("Passphrase", str)
"""A caseworker's passphrase as typed."""

KEY_BYTES = 32
SALT_BYTES = argon2id.SALTBYTES
#: A receipt: the locator (stored in the clear, finds the report) and the secret (Argon2id input).
RECEIPT_DIGITS = 24
LOCATOR_DIGITS = 6
SECRET_DIGITS = RECEIPT_DIGITS - LOCATOR_DIGITS
#: Receipts of reports made before schema 3: all 16 digits hashed under the install-wide salt.
LEGACY_RECEIPT_DIGITS = 16
#: Longest passphrase or receipt input we hash; longer input is refused before any work (DoS).
MAX_SECRET_BYTES = 1024
#: Sealed fields are padded to a multiple of this so ciphertext length says little about content.
PAD_BLOCK = 256

_AEAD_NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_STREAM_HEADER_BYTES = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_STREAM_ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_FILE_MAGIC = b"dbxf1\n"
_FRAME_LEN = struct.Struct(">I")
#: What FileSealer.push seals from without a copy.
Buffer = bytes | bytearray | memoryview
#: A frame longer than this is refused unread, so a tampered length cannot exhaust memory.
MAX_FRAME_BYTES = 16 * 1024 * 1024


class SealingError(Exception):
    """Root of every error this module raises."""


class WrongSecret(SealingError):
    """The passphrase or receipt code does not open this key. Deliberately says no more."""


class TamperedData(SealingError):
    """A sealed value or file failed authentication: it was altered, truncated, or moved."""


class KeyWiped(SealingError):
    """A session's key was used after the session ended (logout, idle timeout, shutdown)."""


class InvalidSecret(SealingError):
    """Input that cannot be a passphrase or receipt code (empty, too long, wrong shape)."""


# --- key derivation ------------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost and salt, stored beside whatever they protect so costs can be raised later."""

    salt: bytes
    ops: int
    mem: int

    @classmethod
    def fresh(cls, *, ops: int, mem: int) -> KdfParams:
        return cls(salt=secrets.token_bytes(SALT_BYTES), ops=ops, mem=mem)


def _argon2id(secret: bytes, params: KdfParams) -> bytes:
    _check_secret(secret)
    return argon2id.kdf(KEY_BYTES, secret, params.salt, opslimit=params.ops, memlimit=params.mem)


def _check_secret(secret: bytes) -> None:
    if not secret or len(secret) > MAX_SECRET_BYTES:
        raise InvalidSecret("secret is empty or too long")


def check_passphrase_shape(passphrase: Passphrase) -> None:
    """Raise InvalidSecret for a passphrase no Argon2id run would accept (empty, too long),
    so a caller can refuse it before queueing any work or counting it as a guess."""
    _check_secret(_passphrase_bytes(passphrase))


def _subkey(master: bytes, purpose: bytes) -> bytes:
    """An independent 32-byte key for one purpose (BLAKE2b keyed, personalised)."""
    return nacl.hash.blake2b(
        b"", key=master, person=purpose.ljust(16, b"\0"), digest_size=KEY_BYTES, encoder=nacl.encoding.RawEncoder
    )


def _passphrase_bytes(passphrase: Passphrase) -> bytes:
    # NFC-free on purpose: we compare what the caseworker typed, byte for byte, as SecureDrop does.
    return passphrase.strip().encode("utf-8")


# --- sealed fields (AEAD) ------------------------------------------------------------------


def seal(plaintext: bytes, *, key: bytes, context: str) -> bytes:
    """Encrypt `plaintext` bound to `context`, padded to PAD_BLOCK. Output: nonce || ciphertext."""
    nonce = secrets.token_bytes(_AEAD_NONCE_BYTES)
    padded = sodium.sodium_pad(plaintext, PAD_BLOCK)
    return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, context.encode(), nonce, key)


def open_sealed(blob: bytes, *, key: bytes, context: str) -> bytes:
    """Decrypt what `seal` made for the same key and context, or raise TamperedData."""
    nonce, ciphertext = blob[:_AEAD_NONCE_BYTES], blob[_AEAD_NONCE_BYTES:]
    try:
        padded = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, context.encode(), nonce, key)
        return sodium.sodium_unpad(padded, PAD_BLOCK)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as e:
        raise TamperedData(f"sealed value for {context.split(':')[0]} did not open") from e


def seal_json(value: object, *, key: bytes, context: str) -> bytes:
    return seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), key=key, context=context)


def open_json(blob: bytes, *, key: bytes, context: str) -> object:
    return json.loads(open_sealed(blob, key=key, context=context))


# --- caseworker keys -----------------------------------------------------------------------


@dataclass(frozen=True)
class WrappedPrivateKey:
    """What the database keeps of a caseworker's key pair: nothing usable without the passphrase."""

    public_key: bytes
    wrapped: bytes
    kdf: KdfParams


class CaseworkerKey:
    """An unwrapped private key, held only in a logged-in caseworker's server-side session."""

    __slots__ = ("_private",)

    def __init__(self, private: PrivateKey) -> None:
        self._private: PrivateKey | None = private

    @property
    def wiped(self) -> bool:
        """True after logout or idle expiry: the key can no longer open anything."""
        return self._private is None

    def _key(self) -> PrivateKey:
        if self._private is None:
            raise KeyWiped()
        return self._private

    @property
    def public_key(self) -> bytes:
        return bytes(self._key().public_key)

    def open_report_keys(self, sealed: bytes) -> ReportKeys:
        try:
            raw = SealedBox(self._key()).decrypt(sealed)
        except nacl.exceptions.CryptoError as e:
            raise TamperedData("report keys did not open with this caseworker's key") from e
        if len(raw) != 2 * KEY_BYTES:
            raise TamperedData("report keys have the wrong length")
        return ReportKeys(report_key=raw[:KEY_BYTES], staff_key=raw[KEY_BYTES:])

    def subkey(self, purpose: bytes) -> bytes:
        """A key only this caseworker can derive (for their own secrets, e.g. a TOTP seed)."""
        return _subkey(bytes(self._key()), purpose)

    def wipe(self) -> None:
        """Drop our reference, and nothing more: PyNaCl keeps the key in immutable `bytes` we
        cannot overwrite, so once nothing refers to it Python frees that memory without zeroing
        it. Afterwards this object opens nothing (KeyWiped)."""
        self._private = None


def _wrap_private(private: PrivateKey, passphrase: Passphrase, kdf: KdfParams, public: bytes) -> WrappedPrivateKey:
    kek = _argon2id(_passphrase_bytes(passphrase), kdf)
    wrapped = seal(bytes(private), key=kek, context=f"caseworker-key:{public.hex()}")
    return WrappedPrivateKey(public_key=public, wrapped=wrapped, kdf=kdf)


def create_caseworker_key(*, passphrase: Passphrase, ops: int, mem: int) -> WrappedPrivateKey:
    """A new key pair, returned only in wrapped form."""
    private = PrivateKey.generate()
    return _wrap_private(private, passphrase, KdfParams.fresh(ops=ops, mem=mem), bytes(private.public_key))


def unwrap_caseworker_key(wrapped: WrappedPrivateKey, *, passphrase: Passphrase) -> CaseworkerKey:
    """Log in: one Argon2id run, then an authenticated decryption. Raises WrongSecret."""
    kek = _argon2id(_passphrase_bytes(passphrase), wrapped.kdf)
    try:
        raw = open_sealed(wrapped.wrapped, key=kek, context=f"caseworker-key:{wrapped.public_key.hex()}")
    except TamperedData as e:
        raise WrongSecret("passphrase does not open this key") from e
    private = PrivateKey(raw)
    if bytes(private.public_key) != wrapped.public_key:
        raise TamperedData("stored public key does not match the private key")
    return CaseworkerKey(private)


def replace_caseworker_key(*, passphrase: Passphrase, ops: int, mem: int) -> tuple[WrappedPrivateKey, CaseworkerKey]:
    """Passphrase change: a NEW key pair, wrapped under the new passphrase, and its private key
    unwrapped for re-sealing the account's grants to it. A new pair, not the old one re-wrapped:
    an old backup and the old passphrase then open only the retired key, which opens nothing."""
    private = PrivateKey.generate()
    wrapped = _wrap_private(private, passphrase, KdfParams.fresh(ops=ops, mem=mem), bytes(private.public_key))
    return wrapped, CaseworkerKey(private)


# --- report keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportKeys:
    """The two keys of one report. `staff_key` never reaches the whistleblower."""

    report_key: bytes
    staff_key: bytes

    @classmethod
    def generate(cls) -> ReportKeys:
        return cls(report_key=secrets.token_bytes(KEY_BYTES), staff_key=secrets.token_bytes(KEY_BYTES))

    def seal_for(self, public_key: bytes) -> bytes:
        """Grant: anyone can seal to a caseworker's public key; only they can open it."""
        return SealedBox(PublicKey(public_key)).encrypt(self.report_key + self.staff_key)


# --- receipt codes -------------------------------------------------------------------------


def _digits(count: int) -> str:
    """`count` uniformly random decimal digits from the OS CSPRNG."""
    return f"{secrets.randbelow(10**count):0{count}d}"


def new_locator() -> str:
    """A report's locator: 6 random digits, unique among reports (the store refuses a clash)."""
    return _digits(LOCATOR_DIGITS)


def receipt_code(*, locator: str, secret: str) -> ReceiptCode:
    return ReceiptCode(locator + secret)


def split_receipt(code: ReceiptCode) -> tuple[str | None, str]:
    """(locator, secret) of a code; a legacy 16-digit code has no locator and is all secret."""
    if len(code) == LEGACY_RECEIPT_DIGITS:
        return None, code
    return code[:LOCATOR_DIGITS], code[LOCATOR_DIGITS:]


def format_receipt(code: ReceiptCode) -> str:
    """Groups of four, as shown to the whistleblower: '1234 5678 9012 3456 7890 1234'."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def parse_receipt(text: str) -> ReceiptCode:
    """Accept what a person types (spaces, dashes) and return the bare code, or InvalidSecret."""
    if len(text) > 64:
        raise InvalidSecret("receipt too long")
    digits = "".join(ch for ch in text if ch not in " -\t")
    if len(digits) not in (RECEIPT_DIGITS, LEGACY_RECEIPT_DIGITS) or not digits.isascii() or not digits.isdigit():
        raise InvalidSecret("receipt must be 24 digits (16 for an older one)")
    return ReceiptCode(digits)


@dataclass(frozen=True)
class ReceiptKeys:
    """Both things a receipt's secret yields. Only a legacy report stores `lookup_id`."""

    lookup_id: bytes
    wrap_key: bytes

    @property
    def own_key(self) -> bytes:
        """A key only the whistleblower can derive (the caseworkers hold the report and staff keys,
        never the receipt): it seals what must not reach them, the metadata values cleaning removed
        from the whistleblower's files, so the mailbox can show them again."""
        return _subkey(self.wrap_key, b"dbx.wb-own")


def derive_receipt_keys(secret: str, *, kdf: KdfParams) -> ReceiptKeys:
    """One Argon2id run over the secret part (all of a legacy code) and the salt (the report's own,
    or for a legacy report the install's), split into two independent keys."""
    master = _argon2id(secret.encode("ascii"), kdf)
    return ReceiptKeys(lookup_id=_subkey(master, b"dbx.lookup"), wrap_key=_subkey(master, b"dbx.wb-wrap"))


@dataclass(frozen=True)
class ReceiptSecret:
    """A new receipt's secret, its report's salt, and the keys derived from both: everything of a
    receipt but the locator, which the store picks at insert (it is not part of the derivation)."""

    secret: str
    salt: bytes
    keys: ReceiptKeys


def draw_receipt_secret(*, ops: int, mem: int) -> ReceiptSecret:
    """An 18-digit secret (log2(10^18) ≈ 60 bits) under a fresh salt: one Argon2id run."""
    secret = _digits(SECRET_DIGITS)
    kdf = KdfParams.fresh(ops=ops, mem=mem)
    return ReceiptSecret(secret=secret, salt=kdf.salt, keys=derive_receipt_keys(secret, kdf=kdf))


def wrap_for_whistleblower(keys: ReportKeys, *, receipt_keys: ReceiptKeys, report_id: str) -> bytes:
    return seal(keys.report_key, key=receipt_keys.wrap_key, context=f"wb-key:{report_id}")


def unwrap_for_whistleblower(wrapped: bytes, *, receipt_keys: ReceiptKeys, report_id: str) -> bytes:
    """The report key (never the staff key). TamperedData here means the row was altered."""
    return open_sealed(wrapped, key=receipt_keys.wrap_key, context=f"wb-key:{report_id}")


# --- caseworker passphrases ----------------------------------------------------------------


def generate_passphrase(words: list[str], *, count: int = 7) -> tuple[Passphrase, float]:
    """A diceware passphrase from `words` (the EFF long list) and its entropy in bits."""
    unique = sorted(set(words))
    phrase = " ".join(secrets.choice(unique) for _ in range(count))
    return Passphrase(phrase), count * math.log2(len(unique))


# --- forwarding to a receiving authority (X25519) ------------------------------------------

#: A forwarded export: this magic, the stream key in a sealed box to the recipient, then the
#: sealed bytes in exactly the file format below (docs/PROTOCOL.md, "Forwarding").
FORWARD_MAGIC = b"dbxfwd1\n"
_SEALED_KEY_BYTES = KEY_BYTES + sodium.crypto_box_SEALBYTES
FORWARD_HEAD_BYTES = len(FORWARD_MAGIC) + _SEALED_KEY_BYTES


class InvalidRecipientKey(SealingError):
    """Bytes that cannot be an X25519 public key to seal to (wrong length, a low-order point)."""


class WrongRecipient(SealingError):
    """A forwarded export that this secret key does not open: sealed to someone else, or altered."""


def new_recipient_key() -> tuple[bytes, bytes]:
    """A receiving authority's X25519 key pair, as (secret key, public key), 32 bytes each."""
    private = PrivateKey.generate()
    return bytes(private), bytes(private.public_key)


def recipient_public_key(secret_key: bytes) -> bytes:
    if len(secret_key) != KEY_BYTES:
        raise InvalidRecipientKey("a recipient secret key is 32 bytes")
    return bytes(PrivateKey(secret_key).public_key)


def _forward_context(public_key: bytes) -> str:
    """The stream's associated data: the recipient's key, so a stream cannot be re-addressed."""
    return f"forwarded-export:{public_key.hex()}"


class ForwardSealer:
    """Seals a byte stream (an export ZIP, as it is made) so only one recipient can open it.

    A fresh stream key goes to the recipient in a sealed box (X25519, anonymous sender); the
    bytes go through the same secretstream framing as stored files, so a truncated, reordered
    or altered stream fails to open, at the end as anywhere else.
    """

    def __init__(self, recipient_public_key: bytes) -> None:
        if len(recipient_public_key) != KEY_BYTES:
            raise InvalidRecipientKey("a recipient public key is 32 bytes")
        stream_key = new_file_key()
        try:
            sealed_key = SealedBox(PublicKey(recipient_public_key)).encrypt(stream_key)
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as e:
            raise InvalidRecipientKey("not a usable X25519 public key") from e
        self._head: bytes | None = FORWARD_MAGIC + sealed_key
        self._stream = FileSealer(file_key=stream_key, file_id=_forward_context(recipient_public_key))

    def _with_head(self, data: bytes) -> bytes:
        if self._head is not None:
            data, self._head = self._head + data, None
        return data

    def push(self, chunk: bytes) -> bytes:
        """Seal one chunk (at most MAX_FRAME_BYTES - ABYTES); the bytes to send next."""
        return self._with_head(self._stream.push(chunk))

    def finish(self) -> bytes:
        return self._with_head(self._stream.finish())


def open_forwarded(source: Readable, *, secret_key: bytes) -> Iterator[bytes]:
    """Yield the plaintext of a forwarded export. WrongRecipient if `secret_key` does not open
    its key; TamperedData if it is not one, or was altered or cut anywhere (even at the end)."""
    head = source.read(FORWARD_HEAD_BYTES)
    if len(head) != FORWARD_HEAD_BYTES or not head.startswith(FORWARD_MAGIC):
        raise TamperedData("not a forwarded export")
    public_key = recipient_public_key(secret_key)
    try:
        stream_key = SealedBox(PrivateKey(secret_key)).decrypt(head[len(FORWARD_MAGIC):])
    except nacl.exceptions.CryptoError as e:
        raise WrongRecipient("this key does not open the export") from e
    yield from open_file(source, file_key=stream_key, file_id=_forward_context(public_key))


# --- files (secretstream) ------------------------------------------------------------------


def new_file_key() -> bytes:
    return sodium.crypto_secretstream_xchacha20poly1305_keygen()


class FileSealer:
    """Seals one file as a sequence of length-prefixed secretstream frames.

    The blob is MAGIC || header || (len || frame)*; the last frame carries TAG_FINAL. Every frame
    is bound to the file id as associated data, so a blob swapped between files fails to open.

    Each frame is sealed straight from the caller's buffer into the one `bytearray` it returns
    (libsodium through PyNaCl's own cffi handle: PyNaCl's binding takes only `bytes` and copies
    its output twice, which at 1 MiB a chunk was most of the sealing path's cost outside the
    cipher: 1.45 CPU-s per GiB through the public binding plus one copy into the frame, 0.8 this
    way, measured side by side in one process on the same 1 MiB chunks). Not thread-safe: one
    thread at a time, frames in order.
    """

    def __init__(self, *, file_key: bytes, file_id: str) -> None:
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, file_key)
        self._ad = f"file:{file_id}".encode()
        self._prefix: bytes = _FILE_MAGIC + header
        self._finished = False

    def _frame(self, chunk: Buffer, tag: int) -> bytearray:
        plain = memoryview(chunk).cast("B")
        if len(plain) > MAX_FRAME_BYTES - _STREAM_ABYTES:
            raise SealingError("chunk too large for one frame")
        head, self._prefix = self._prefix, b""
        start = len(head) + _FRAME_LEN.size
        out = bytearray(start + len(plain) + _STREAM_ABYTES)
        out[: len(head)] = head
        _FRAME_LEN.pack_into(out, len(head), len(plain) + _STREAM_ABYTES)
        rc = _sodium_lib.crypto_secretstream_xchacha20poly1305_push(
            self._state.statebuf, _ffi.from_buffer("unsigned char[]", out, require_writable=True) + start,
            _ffi.NULL, _ffi.from_buffer("unsigned char[]", plain), len(plain), self._ad, len(self._ad), tag)
        if rc != 0:
            raise SealingError("secretstream push failed")
        return out

    def push(self, chunk: Buffer) -> bytearray:
        """Seal one chunk (bytes, bytearray or memoryview; at most MAX_FRAME_BYTES - ABYTES) and
        return the bytes to append. The chunk's buffer may be reused as soon as this returns."""
        if self._finished:
            raise SealingError("file already finished")
        if not len(memoryview(chunk)):
            return bytearray()
        return self._frame(chunk, _TAG_MESSAGE)

    def finish(self) -> bytearray:
        """The closing frame; without it the blob counts as truncated."""
        if self._finished:
            raise SealingError("file already finished")
        self._finished = True
        return self._frame(b"", _TAG_FINAL)


def sealed_size(plain_size: int, *, chunk_bytes: int) -> int:
    """Exact blob size for a file sealed in chunks of `chunk_bytes`: the format's overhead,
    written down once (tests pin the format with it)."""
    frames = math.ceil(plain_size / chunk_bytes) + 1
    return len(_FILE_MAGIC) + _STREAM_HEADER_BYTES + frames * (_FRAME_LEN.size + _STREAM_ABYTES) + plain_size


class Readable(Protocol):
    """Where a sealed file is read from: a binary file, or the rows of one joined up (blobs.py)."""

    def read(self, n: int, /) -> bytes: ...


def open_file(source: Readable, *, file_key: bytes, file_id: str) -> Iterator[bytes]:
    """Yield plaintext chunks of a sealed blob; raise TamperedData on any damage, even at the end.

    A caller streaming to a client must treat TamperedData mid-way as fatal for that response.
    """
    head = source.read(len(_FILE_MAGIC) + _STREAM_HEADER_BYTES)
    if len(head) != len(_FILE_MAGIC) + _STREAM_HEADER_BYTES or not head.startswith(_FILE_MAGIC):
        raise TamperedData("file blob has no valid header")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    try:
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, head[len(_FILE_MAGIC) :], file_key)
    except nacl.exceptions.RuntimeError as e:
        raise TamperedData("file blob header is invalid") from e
    ad = f"file:{file_id}".encode()
    while True:
        raw_len = source.read(_FRAME_LEN.size)
        if len(raw_len) != _FRAME_LEN.size:
            raise TamperedData("file blob is truncated")
        (length,) = _FRAME_LEN.unpack(raw_len)
        if length < _STREAM_ABYTES or length > MAX_FRAME_BYTES:
            raise TamperedData("file blob frame has an impossible length")
        frame = source.read(length)
        if len(frame) != length:
            raise TamperedData("file blob is truncated")
        try:
            chunk, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, frame, ad)
        except nacl.exceptions.RuntimeError as e:
            raise TamperedData("file blob frame failed authentication") from e
        if tag == _TAG_FINAL:
            if source.read(1):
                raise TamperedData("file blob has data after its final frame")
            if chunk:
                yield chunk
            return
        yield chunk


# --- install signing key (Ed25519) ---------------------------------------------------------

SIGNING_SEED_BYTES = 32
SIGNING_PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64


def new_signing_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as (secret seed, public key), 32 bytes each.

    The seed is all that is stored: the public key derives from it, so the two cannot drift apart.
    """
    key = nacl.signing.SigningKey.generate()
    return bytes(key), bytes(key.verify_key)


def signing_public_key(seed: bytes) -> bytes:
    """The Ed25519 public key of a 32-byte seed."""
    if len(seed) != SIGNING_SEED_BYTES:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return bytes(nacl.signing.SigningKey(seed).verify_key)


def sign_detached(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature (RFC 8032, pure Ed25519) of `message` under `seed`.

    Pure Ed25519 over the exact bytes, so anyone can check it with standard tools
    (`openssl pkeyutl -verify -rawin`, PyNaCl, libsodium) without knowing this code.
    """
    if len(seed) != SIGNING_SEED_BYTES:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return nacl.signing.SigningKey(seed).sign(message).signature


def verify_detached(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if `signature` is `public_key`'s Ed25519 signature of `message`; False for anything else,
    including keys and signatures of the wrong length (so callers need no try around it)."""
    if len(public_key) != SIGNING_PUBLIC_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True
