"""Proof of reporting: a small signed text file a whistleblower can keep to show that they reported.

What it proves, and no more: that this install (its signing key, whose fingerprint the channel
publishes) received, on the day given, a report whose canonical digest is the one given, and
later messages with theirs. A person who still has their text and files can show that these are
what they sent; with the optional contents the file carries them itself. It holds no receipt code
and nothing that opens the mailbox: someone who finds it learns that a report was made, and that
is said on the page before the download (whistleblower/proof.py).

The format and the canonical digest are written down in docs/PROTOCOL.md and docs/PROOF.md; in
short the file is UTF-8 text of `Key: value` lines, user text in blocks of lines that begin with
"  | ", and the last line is `Signature: <base64>`, an Ed25519 signature over every byte before it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dropbox.reports import Damaged, FileView, intact, open_body, open_file_sent, thread
from dropbox.sealing import TamperedData, verify_detached
from dropbox.signing import InstallSigner, decode_public_key, fingerprint
from dropbox.storage import Store

FORMAT_LINE = "PROOF OF REPORTING (dropbox-proof/1)"
REPORT_KIND = "dropbox-report/1"
MESSAGE_KIND = "dropbox-message/1"
#: What a file stored before migration 9 has instead of a digest.
NOT_RECORDED = "not recorded (sent before the drop box recorded digests, database schema 9)"
_BLOCK = "  | "
_SIGNATURE = "Signature: "


class ProofError(Exception):
    """Root of this module's errors; the message is the reason `verify` prints."""


class MalformedProof(ProofError):
    """Not a proof in this format (or damaged beyond reading); the message says where."""


class BadSignature(ProofError):
    """The signature does not match the signed bytes, or was made by a key this install never had."""


class ReportDamaged(ProofError):
    """A sealed part of the report does not open (its stored copy is damaged): a proof states
    everything or nothing, so none is made."""


# --- the canonical digest -------------------------------------------------------------------


@dataclass(frozen=True)
class SentFileEntry:
    """One file as the proof names it: size and SHA-256 of the bytes as sent (None if not recorded)."""

    name: str
    size: int | None
    sha256: str | None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Submission:
    """The report as submitted, or one later message: what a digest is computed over."""

    kind: str
    day: str
    text: str
    files: tuple[SentFileEntry, ...]
    answers: Mapping[str, str] = field(default_factory=dict)

    def canonical(self) -> bytes:
        """The bytes the digest is over: JSON with sorted keys, no spaces, UTF-8 unescaped (for
        these values the same bytes as RFC 8785). The report's contact details are not in it."""
        value: dict[str, object] = {"files": [f.to_json() for f in self.files], "kind": self.kind, "text": self.text}
        if self.kind == REPORT_KIND:
            value["answers"] = dict(self.answers)
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


# --- gathering what a proof says ------------------------------------------------------------


@dataclass(frozen=True)
class ProofFacts:
    """Everything a proof states. `contents` (the report, then the messages) only when included;
    the digests are always there."""

    organisation: str
    channel: str
    received_day: str
    made_day: str
    report_digest: str
    #: The report's files: size and SHA-256 (names only with the contents).
    report_files: tuple[SentFileEntry, ...]
    #: Messages the whistleblower sent later: (day, digest).
    messages: tuple[tuple[str, str], ...] = ()
    contents: tuple[Submission, ...] | None = None

    @classmethod
    def of(cls, *, organisation: str, channel: str, made_day: str, report: Submission,
           messages: Sequence[Submission], include_contents: bool) -> ProofFacts:
        return cls(organisation=organisation, channel=channel, received_day=report.day, made_day=made_day,
                   report_digest=report.digest, report_files=report.files,
                   messages=tuple((m.day, m.digest) for m in messages),
                   contents=(report, *messages) if include_contents else None)


async def gather(*, store: Store, report_id: str, report_key: bytes, organisation: str, include_contents: bool,
                 include_messages: bool, today: dt.date) -> ProofFacts:
    """What a proof of `report_id` states, opened with the whistleblower's report key."""
    report = await store.report(report_id)
    body = open_body(report.sealed_body, report_key=report_key, report_id=report.id)
    sent = {f.id: open_file_sent(f, report_key=report_key) for f in await store.files(report_id)}
    files, messages = await thread(store, report_id=report_id, report_key=report_key)

    # A proof states everything or nothing: a damaged part fails it (TamperedData), as before.
    def entries(views: Sequence[FileView | Damaged]) -> tuple[SentFileEntry, ...]:
        records = [(v.name, sent.get(v.id)) for v in map(intact, views)]
        return tuple(SentFileEntry(name=name, size=r.size if r else None, sha256=r.sha256 if r else None)
                     for name, r in records)

    later = [Submission(kind=MESSAGE_KIND, day=m.day, text=intact(m.text), files=entries(m.files))
             for m in messages if m.author == "whistleblower"] if include_messages else []
    channel = await store.channel(report.channel_id)
    return ProofFacts.of(organisation=organisation, channel=channel.name, made_day=today.isoformat(),
                         report=Submission(kind=REPORT_KIND, day=report.received_day, text=body.text,
                                           answers=body.answers, files=entries(files)),
                         messages=later, include_contents=include_contents)


# --- writing -------------------------------------------------------------------------------


def _one_line(value: str) -> str:
    """Operator-set names go on one line (they are shown, not digested)."""
    return " ".join(value.split())


def _block(value: str, indent: str = "") -> list[str]:
    """User text as lines that each begin with "  | ": split on "\\n" only, so joining them back
    with "\\n" gives the exact text (carriage returns, trailing newlines and all)."""
    return [indent + _BLOCK + line for line in value.split("\n")]


def _file_lines(number: int, f: SentFileEntry, *, with_name: bool) -> list[str]:
    lines = [f"File {number}:"]
    if with_name:
        lines += ["  Name:", *_block(f.name, "  ")]
    lines.append(f"  Size: {f.size} bytes" if f.size is not None else "  Size: " + NOT_RECORDED)
    lines.append(f"  SHA-256: {f.sha256}" if f.sha256 is not None else "  SHA-256: " + NOT_RECORDED)
    return lines


def _section_title(number: int) -> str:
    return "--- Report ---" if number == 0 else f"--- Message {number} ---"


def _contents(number: int, s: Submission) -> list[str]:
    lines = ["", _section_title(number), "Text:", *_block(s.text)]
    for question, answer in s.answers.items():
        lines += [f"Answer {_one_line(question)}:", *_block(answer)]
    for file_number, f in enumerate(s.files, start=1):
        lines += _file_lines(file_number, f, with_name=True)
    return lines


def render(facts: ProofFacts, *, signer: InstallSigner, intro: Sequence[str]) -> bytes:
    """The signed proof file. `intro` is a few lines in the reader's language (signed, not parsed)."""
    lines = [FORMAT_LINE, *(line for line in map(_one_line, intro) if line), "",
             f"Organisation: {_one_line(facts.organisation)}",
             f"Channel: {_one_line(facts.channel)}",
             f"Report received: {facts.received_day}",
             f"Proof made: {facts.made_day}",
             f"Report digest: sha256:{facts.report_digest}",
             f"Report files: {len(facts.report_files)}"]
    for number, f in enumerate(facts.report_files, start=1):
        lines += _file_lines(number, f, with_name=False)
    lines.append(f"Messages sent later: {len(facts.messages)}")
    for number, (day, digest) in enumerate(facts.messages, start=1):
        lines += [f"Message {number} sent: {day}", f"Message {number} digest: sha256:{digest}"]
    lines.append(f"Contents included: {'yes' if facts.contents is not None else 'no'}")
    for number, s in enumerate(facts.contents or ()):
        lines += _contents(number, s)
    lines += ["", f"Signing key fingerprint: {signer.fingerprint}", f"Signing key: {signer.public_key_text}"]
    signed = ("\n".join(lines) + "\n").encode("utf-8")
    return signed + f"{_SIGNATURE}{base64.b64encode(signer.sign(signed)).decode('ascii')}\n".encode("ascii")


# --- reading and verifying ------------------------------------------------------------------


_BOM = b"\xef\xbb\xbf"


def looks_like_proof(head: bytes) -> bool:
    """Whether a file's first bytes are this format's first line (the `verify` dispatcher asks)."""
    return head.removeprefix(_BOM).startswith((FORMAT_LINE.encode("ascii") + b"\n",
                                               FORMAT_LINE.encode("ascii") + b"\r\n"))


def _as_written(data: bytes) -> bytes:
    """Undo what an editor does to a text file it saves (Windows Notepad: a byte-order mark, CRLF
    line endings). A proof as written has neither: its texts reach it with CRLF already turned
    into LF (the form reader), so turning every CRLF back gives the signed bytes (unless a file
    name held a CRLF of its own; such a proof verifies only as downloaded)."""
    data = data.removeprefix(_BOM)
    if data.startswith(FORMAT_LINE.encode("ascii") + b"\r\n"):
        data = data.replace(b"\r\n", b"\n")
    return data


@dataclass(frozen=True)
class VerifiedProof:
    """A proof whose signature matched one of the install's keys, and what it states."""

    facts: ProofFacts
    fingerprint: str
    #: True if the key is the install's current one, False if a retired one.
    current_key: bool


class _Lines:
    """The proof's lines with a cursor; every read says what it expected when it fails."""

    def __init__(self, lines: list[str]) -> None:
        self._lines, self.at = lines, 0

    def peek(self) -> str | None:
        return self._lines[self.at] if self.at < len(self._lines) else None

    def take(self, key: str) -> str:
        line = self.peek()
        if line is None or not line.startswith(key + ": "):
            raise MalformedProof(f"line {self.at + 1}: expected \"{key.strip()}: ...\"")
        self.at += 1
        return line[len(key) + 2:]

    def take_exact(self, text: str) -> None:
        if self.peek() != text:
            raise MalformedProof(f"line {self.at + 1}: expected \"{text}\"")
        self.at += 1

    def block(self, indent: str = "") -> str:
        """A text block; a line of it may have lost its trailing space ("  |") to an editor."""
        marker, parts = indent + _BLOCK, []
        while (line := self.peek()) is not None and (line.startswith(marker) or line == marker.rstrip(" ")):
            parts.append(line[len(marker):])
            self.at += 1
        if not parts:
            raise MalformedProof(f"line {self.at + 1}: expected a block of \"{marker}\" lines")
        return "\n".join(parts)


def _day(value: str, what: str) -> str:
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise MalformedProof(f"{what} is not a day (YYYY-MM-DD)")


def _digest(value: str, what: str) -> str:
    hex_part = value.removeprefix("sha256:")
    if not value.startswith("sha256:") or len(hex_part) != 64 or hex_part.strip("0123456789abcdef"):
        raise MalformedProof(f"{what} is not sha256:<64 lower-case hex digits>")
    return hex_part


def _count(value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise MalformedProof(f"{what} is not a count")
    return int(value)


def _read_file(lines: _Lines, number: int, *, with_name: bool) -> SentFileEntry:
    lines.take_exact(f"File {number}:")
    name = ""
    if with_name:
        lines.take_exact("  Name:")
        name = lines.block("  ")
    size_text, sha_text = lines.take("  Size"), lines.take("  SHA-256")
    if size_text == NOT_RECORDED and sha_text == NOT_RECORDED:
        return SentFileEntry(name=name, size=None, sha256=None)
    if not size_text.endswith(" bytes"):
        raise MalformedProof(f"file {number}: the size is not \"N bytes\"")
    return SentFileEntry(name=name, size=_count(size_text.removesuffix(" bytes"), f"file {number}'s size"),
                         sha256=_digest("sha256:" + sha_text, f"file {number}'s SHA-256"))


def _read_contents(lines: _Lines, number: int, *, kind: str, day: str) -> Submission:
    lines.take_exact("")
    lines.take_exact(_section_title(number))
    lines.take_exact("Text:")
    text = lines.block()
    answers: dict[str, str] = {}
    while (line := lines.peek()) is not None and line.startswith("Answer ") and line.endswith(":"):
        lines.at += 1
        answers[line[len("Answer "):-1]] = lines.block()
    files: list[SentFileEntry] = []
    while lines.peek() == f"File {len(files) + 1}:":
        files.append(_read_file(lines, len(files) + 1, with_name=True))
    return Submission(kind=kind, day=day, text=text, answers=answers, files=tuple(files))


def _check_contents(facts: ProofFacts) -> None:
    """With the contents included, they must give exactly the digests the proof states."""
    if facts.contents is None:
        return
    report, *messages = facts.contents
    if [(f.size, f.sha256) for f in report.files] != [(f.size, f.sha256) for f in facts.report_files]:
        raise MalformedProof("the report's file list does not match the files listed above it")
    if report.digest != facts.report_digest:
        raise MalformedProof("the report's text, answers and files do not match the report digest")
    for number, (m, (_day_sent, digest)) in enumerate(zip(messages, facts.messages, strict=True), start=1):
        if m.digest != digest:
            raise MalformedProof(f"message {number}'s text and files do not match its digest")


def parse(data: bytes) -> tuple[ProofFacts, bytes, bytes, bytes]:
    """(facts, signed bytes, public key named in it, signature); MalformedProof if it is not one."""
    data = _as_written(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedProof(f"not UTF-8 text (byte {e.start})") from None
    if not looks_like_proof(data):
        raise MalformedProof(f"the first line is not \"{FORMAT_LINE}\"")
    body, _, last = text.removesuffix("\n").rpartition("\n")
    if not last.startswith(_SIGNATURE):
        raise MalformedProof(f"the last line is not \"{_SIGNATURE}<base64>\"")
    try:
        signature = base64.b64decode(last[len(_SIGNATURE):], validate=True)
    except (binascii.Error, ValueError):
        raise MalformedProof("the signature is not base64") from None
    lines = _Lines(body.split("\n"))
    lines.take_exact(FORMAT_LINE)
    while lines.peek() not in ("", None):  # the intro, in the reader's language: signed, not read
        lines.at += 1
    lines.take_exact("")
    organisation, channel = lines.take("Organisation"), lines.take("Channel")
    received = _day(lines.take("Report received"), "the day received")
    made = _day(lines.take("Proof made"), "the day the proof was made")
    report_digest = _digest(lines.take("Report digest"), "the report digest")
    files = _count(lines.take("Report files"), "the number of files")
    report_files = tuple(_read_file(lines, n, with_name=False) for n in range(1, files + 1))
    messages = []
    for n in range(1, _count(lines.take("Messages sent later"), "the number of messages") + 1):
        messages.append((_day(lines.take(f"Message {n} sent"), f"message {n}'s day"),
                         _digest(lines.take(f"Message {n} digest"), f"message {n}'s digest")))
    included = lines.take("Contents included")
    if included not in ("yes", "no"):
        raise MalformedProof("\"Contents included\" is neither yes nor no")
    contents = None
    if included == "yes":
        contents = (_read_contents(lines, 0, kind=REPORT_KIND, day=received),
                    *(_read_contents(lines, n, kind=MESSAGE_KIND, day=day)
                      for n, (day, _) in enumerate(messages, start=1)))
    lines.take_exact("")
    stated = lines.take("Signing key fingerprint")
    try:
        public_key = decode_public_key(lines.take("Signing key"))
    except ValueError as e:
        raise MalformedProof(f"the signing key: {e}") from None
    if fingerprint(public_key) != stated:
        raise MalformedProof("the fingerprint is not the signing key's")
    if lines.peek() is not None:
        raise MalformedProof(f"line {lines.at + 1}: unexpected text before the signature")
    facts = ProofFacts(organisation=organisation, channel=channel, received_day=received, made_day=made,
                       report_digest=report_digest, report_files=report_files, messages=tuple(messages),
                       contents=contents)
    _check_contents(facts)
    return facts, (body + "\n").encode("utf-8"), public_key, signature


def verify(data: bytes, *, known_keys: Sequence[bytes]) -> VerifiedProof:
    """Check a proof against this install's public keys (current first). MalformedProof or
    BadSignature with the reason otherwise.

    The key named in the proof is only a hint: what counts is that it is one of `known_keys`
    (whoever makes a proof with their own key can name it too)."""
    facts, signed, public_key, signature = parse(data)
    if public_key not in known_keys:
        raise BadSignature(f"signed by a key this install does not know ({fingerprint(public_key)})")
    if not verify_detached(public_key, signed, signature):
        raise BadSignature("signature does not match: the proof was changed after it was signed")
    return VerifiedProof(facts=facts, fingerprint=fingerprint(public_key), current_key=public_key == known_keys[0])


def describe(proof: VerifiedProof) -> list[str]:
    """What a valid proof proves, as `verify` prints it."""
    facts = proof.facts
    key = "the install's current signing key" if proof.current_key else "a retired signing key of this install"
    lines = [f"VALID proof of reporting, signed by {key} ({proof.fingerprint}).",
             f"It proves that {facts.organisation}, channel \"{facts.channel}\", received on {facts.received_day} "
             f"a report with the digest sha256:{facts.report_digest} ({len(facts.report_files)} file(s)),",
             f"and that this proof was made on {facts.made_day}."]
    for number, (day, digest) in enumerate(facts.messages, start=1):
        lines.append(f"Message {number}, sent later on {day}: sha256:{digest}")
    if facts.contents is not None:
        lines.append("The report's text, answers and file list are included and match the digests.")
    else:
        lines.append("The contents are not included: the digest can be compared with the report's text and "
                     "files (docs/PROOF.md says how).")
    return lines


async def make_proof(*, store: Store, report_id: str, report_key: bytes, signer: InstallSigner, organisation: str,
                     include_contents: bool, include_messages: bool, intro: Sequence[str], today: dt.date) -> bytes:
    """The signed proof file of a report, as the whistleblower downloads it from the mailbox;
    ReportDamaged if a part of it does not open."""
    try:
        facts = await gather(store=store, report_id=report_id, report_key=report_key, organisation=organisation,
                             include_contents=include_contents, include_messages=include_messages, today=today)
    except TamperedData as e:
        raise ReportDamaged("a part of the report does not open") from e
    return render(facts, signer=signer, intro=intro)
