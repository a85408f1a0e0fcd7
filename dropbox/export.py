"""Case export: one ZIP an authority can file in its records system, and anyone can check.

    report.html     the case to read, in any browser, offline: inline CSS, no script, nothing fetched
    report.json     the same, for machines: report, answers, messages, (notes), statuses, deadlines, history
    files/          each file as caseworkers work on it (the cleaned copy where one was made),
    files/originals/  and, when asked for, the originals a channel keeps as evidence
    manifest.json   every member above with its size and SHA-256
    manifest.sig    the install's Ed25519 signature of manifest.json's exact bytes (64 raw bytes)

The ZIP is written as it is sent (`stream_export`): members go out with data descriptors, a
file's contents are decrypted one chunk at a time and hashed on the way, and the manifest comes
last, when every digest is known. Memory stays flat whatever the size of the files, and nothing
is written to the server's disk. The format is in docs/PROTOCOL.md ("Case export"); how to check
one with standard tools is in docs/PROOF.md ("Verifying an export").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2

from dropbox import accounts, audit, casework
from dropbox.audit import AuditAction
from dropbox.blobs import BlobStore
from dropbox.casework import CaseView
from dropbox.catalogues import LOCALE_DIR, PACKAGE_DIR, load_translations
from dropbox.deadlines import Deadline
from dropbox.ids import today
from dropbox.reports import FileView, intact, open_file_key, open_file_size
from dropbox.sealing import verify_detached
from dropbox.signing import decode_public_key, encode_public_key, fingerprint
from dropbox.storage import AuditEntry, NotFound, Store, StoredFile

EXPORT_FORMAT = "dropbox-case-export/1"
MANIFEST_FORMAT = "dropbox-export-manifest/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
#: Audit actions. The export is one entry; notes and originals, when included, one more each,
#: so the log says in words what left the system. A forward's detail is the recipient's fingerprint.
#: Most audit entries of one report put into an export (the report page shows 100).
MAX_HISTORY = 100_000
#: Longest manifest a verifier reads into memory (a manifest lists members, it holds no content).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_READ_BYTES = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MEMBER_NAME_CHARS = 80


class Signer(Protocol):
    """What signs the manifest: dropbox.signing.InstallSigner."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class Wording:
    """Words for stored values in report.html, in its language: the caseworker app passes its
    own labels (dropbox/caseworker/labels.py); the machine values are the fallback."""

    lang: str = "en"
    status: Callable[[str], str] = str
    action: Callable[[AuditEntry], str] = lambda entry: entry.action
    actor: Callable[[AuditEntry], str] = lambda entry: entry.actor or ""


@dataclass(frozen=True)
class ExportFile:
    """One file to put in the ZIP: `open()` yields its plaintext (blocking, chunk by chunk)."""

    member: str
    size: int
    open: Callable[[], Iterator[bytes]] = field(repr=False)


@dataclass(frozen=True)
class CaseExport:
    """Everything an export holds but the file contents, which are read as they are sent."""

    report_id: str
    day: str
    documents: list[tuple[str, bytes]]
    files: list[ExportFile]
    signer: Signer = field(repr=False)


# --- gathering ---------------------------------------------------------------------------------


def member_name(index: int, name: str, *, original: bool = False) -> str:
    """`files/003-report_2024.pdf`: numbered (names may repeat), ASCII letters, digits, `._-`
    only (no folders, nothing a records system or an old unzip could misread), extension kept.
    The name as sent is in report.json."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem, dot, ext = ascii_name.rpartition(".")
    if not dot or not ext.isalnum() or len(ext) > 16:
        stem, ext = ascii_name, ""
    stem = _UNSAFE.sub("_", stem).strip("._-")[: _MEMBER_NAME_CHARS] or "file"
    return f"files/{'originals/' if original else ''}{index:03d}-{stem}{'.' + ext if ext else ''}"


@dataclass
class _Files:
    """Numbers the files of a case in the order they are shown, and keeps how to open each."""

    blobs: BlobStore
    report_key: bytes
    stored: dict[str, StoredFile]
    originals: bool
    entries: list[ExportFile] = field(default_factory=list)
    count: int = 0

    def add(self, view: FileView) -> dict[str, Any]:
        """The file's entry in report.json; its contents (and its original's) queued for the ZIP."""
        self.count += 1
        row: dict[str, Any] = {"name": view.name, "size": view.size,
                               "member": self._entry(self.count, view.name, self.stored[view.id], view.size)}
        if view.cleaning is not None:
            row["cleaning"] = {"outcome": view.cleaning.outcome.value,
                               "removed": sorted({f.kind.value for f in view.cleaning.found})}
        if view.original_id:
            row["original_kept"] = True
            if self.originals:
                original = self.stored[view.original_id]
                size = open_file_size(original, report_key=self.report_key)
                row["original"] = self._entry(self.count, view.name, original, size, original=True)
        return row

    def _entry(self, index: int, name: str, stored: StoredFile, size: int, *, original: bool = False) -> str:
        member = member_name(index, name, original=original)
        key = open_file_key(stored, report_key=self.report_key)
        self.entries.append(ExportFile(member=member, size=size, open=functools.partial(
            self.blobs.read, stored.id, file_key=key, size=size)))
        return member


def _deadline(d: Deadline) -> dict[str, Any]:
    return {"due": d.due.isoformat(), "done": d.done.isoformat() if d.done else None, "overdue": d.overdue,
            "waived": d.waived, "extended": d.extended}


def _case_json(view: CaseView, *, day: str, names: dict[str, str], files: _Files, history: list[AuditEntry],
               include_notes: bool, lang: str, default_lang: str) -> dict[str, Any]:
    """report.json: plain values as stored (statuses, actions as their machine names), people as
    the names caseworkers know each other by, oldest history first."""
    r = view.report
    body = intact(view.body)  # (prepare_export refused a damaged report already)

    def name(caseworker_id: str | None) -> str | None:
        return names.get(caseworker_id or "")

    report_files = [files.add(intact(f)) for f in view.files]
    messages = [{"id": m.id, "author": m.author, "caseworker": name(view.message_authors.get(m.id)),
                 "day": m.day, "read": m.read, "text": intact(m.text), "files": [files.add(intact(f)) for f in m.files]}
                for m in view.messages]
    ordered = list(reversed(history))
    case: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_day": day,
        "report": {
            "id": r.id, "channel": {"id": view.channel.id, "name": view.channel.name},
            "status": r.status, "outcome": r.outcome, "received_day": r.received_day,
            "closed_day": r.closed_day, "last_activity_day": r.last_activity_day,
            "acknowledged_day": r.acknowledged_day, "feedback_day": r.feedback_day,
            "disclosure_notice_day": r.disclosure_notice_day,
            "meeting_request": r.meeting_request, "meeting_request_day": r.meeting_request_day,
            "retention_days": r.retention_days, "deletion_day": r.expires_day if r.closed_day else None,
            "legal_hold": bool(r.legal_hold),
        },
        "text": body.text,
        "contact": body.contact,
        "answers": [{"question_id": a.question_id, "question": a.label(lang, default_lang), "answer": a.answer}
                    for a in view.answers],
        "files": report_files,
        "messages": messages,
        "deadlines": {"acknowledgement": _deadline(view.deadlines.acknowledgement),
                      "feedback": _deadline(view.deadlines.feedback),
                      "reasons": [{"kind": x.kind, "day": x.day, "caseworker": name(x.author_id),
                                   "text": intact(x.text)} for x in view.reasons]},
        "statuses": [{"hour": e.hour, "status": e.detail if e.action == AuditAction.STATUS_CHANGED else "closed"}
                     for e in ordered if e.action in (AuditAction.STATUS_CHANGED, AuditAction.CLOSED)],
        "history": [{"hour": e.hour, "caseworker": name(e.actor), "action": e.action, "detail": e.detail}
                    for e in ordered],
        "notes_included": include_notes,
    }
    if include_notes:
        case["notes"] = [{"day": n.day, "caseworker": name(n.author_id), "text": intact(n.text)} for n in view.notes]
    return case


@functools.cache
def _environment(lang: str) -> jinja2.Environment:
    """report.html's templates in one language (the catalogues the apps use, no web code)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates" / "export"), autoescape=True,
                             undefined=jinja2.StrictUndefined, extensions=["jinja2.ext.i18n"], trim_blocks=True,
                             lstrip_blocks=True, auto_reload=False)
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(load_translations(LOCALE_DIR, lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def render_html(case: dict[str, Any], *, wording: Wording, history: list[AuditEntry], signing_key: bytes) -> bytes:
    """report.html: everything in report.json, for a person. Self-contained on purpose: a
    records system may keep it for decades, offline, and open it in whatever browser it has."""
    template = _environment(wording.lang).get_template("report.html")
    return template.render(
        lang=wording.lang, case=case, status=wording.status(case["report"]["status"]),
        history=[{"hour": e.hour, "who": wording.actor(e), "what": wording.action(e)} for e in reversed(history)],
        fingerprint=fingerprint(signing_key),
    ).encode()


class ReportDamaged(Exception):
    """A sealed part of the report does not open (the report page names it): a signed export
    would be incomplete while looking whole, so none is made."""


async def prepare_export(*, store: Store, blobs: BlobStore, session: accounts.CaseworkerSession, report_id: str,
                         signer: Signer, include_notes: bool = False, include_originals: bool = False,
                         wording: Wording = Wording(), default_lang: str = "en",
                         forwarded_to: bytes | None = None) -> CaseExport:
    """Open a granted report and make everything of its export but the file contents.

    Audited first (the export, and as their own entries the notes and the originals when asked
    for; a forward with the recipient's fingerprint), so the export's own history shows it and
    an export cut short still counts as one. Then opening it is reading it (casework.read_report:
    a new report becomes "opened", the whistleblower's messages count as read, the view is
    audited). NotGranted, KeyUnavailable as for reading it; ReportDamaged if a part does not open.
    """
    await casework.check_access(store=store, session=session, report_id=report_id)
    actions = [(AuditAction.FORWARDED, fingerprint(forwarded_to)) if forwarded_to is not None
               else (AuditAction.EXPORTED, "")]
    actions += [(AuditAction.EXPORTED_NOTES, "")] * include_notes
    actions += [(AuditAction.EXPORTED_ORIGINALS, "")] * include_originals
    for action, detail in actions:
        await audit.record(store, actor_id=session.caseworker.id, action=action, report_id=report_id, detail=detail)
    view = await casework.read_report(store=store, session=session, report_id=report_id)
    if view.damaged:
        raise ReportDamaged()
    try:
        keys = await accounts.report_keys(store=store, session=session, report_id=report_id)
    except NotFound as e:  # the grant was withdrawn a moment ago
        raise casework.NotGranted() from e
    day = today().isoformat()
    names = {c.id: c.name for c in await store.caseworkers()}
    history = await store.report_audit(report_id, limit=MAX_HISTORY)
    files = _Files(blobs=blobs, report_key=keys.report_key, stored={f.id: f for f in await store.files(report_id)},
                   originals=include_originals)
    case = _case_json(view, day=day, names=names, files=files, history=history, include_notes=include_notes,
                      lang=wording.lang, default_lang=default_lang)
    documents = [(REPORT_HTML, render_html(case, wording=wording, history=history, signing_key=signer.public_key)),
                 (REPORT_JSON, _json_bytes(case))]
    return CaseExport(report_id=report_id, day=day, documents=documents, files=files.entries, signer=signer)


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


# --- streaming the ZIP -------------------------------------------------------------------------


class _Sink:
    """Where zipfile writes: kept until taken. No tell() or seek(), so zipfile streams (data
    descriptors after each member) instead of going back to patch headers."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def _info(name: str, day: str, size: int, *, level: int = 6) -> zipfile.ZipInfo:
    """A member's header: the export's day (never an hour), no owner or permission bits.

    Every member is deflated, files at the fastest level (they are mostly compressed already):
    a member streamed with a data descriptor must be, for readers that go through a ZIP from
    the front (Java's ZipInputStream refuses a stored one), as a records system may.
    """
    info = zipfile.ZipInfo(name, date_time=(*dt.date.fromisoformat(day).timetuple()[:3], 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = level  # type: ignore[attr-defined]  # (what ZipFile.open sets for a name)
    info.file_size = size  # lets zipfile choose ZIP64 up front for a member over 4 GiB
    info.external_attr = 0o644 << 16
    return info


class ExportDamaged(Exception):
    """A file's contents did not come out at the size its row records (the stream ends here)."""


def stream_export(export: CaseExport) -> Iterator[bytes]:
    """The ZIP's bytes as they are made. Blocking (it decrypts and reads the database): advance
    it in a worker thread. Holds one file chunk at a time. sealing.TamperedData (or
    ExportDamaged) part way means the output is unusable: the caller must cut the transfer."""
    sink = _Sink()
    listed: list[dict[str, Any]] = []
    with zipfile.ZipFile(sink, "w") as archive:  # type: ignore[arg-type]
        for name, data in export.documents:
            with archive.open(_info(name, export.day, len(data)), "w") as out:
                out.write(data)
            listed.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            yield sink.take()
        for f in export.files:
            digest, size = hashlib.sha256(), 0
            with archive.open(_info(f.member, export.day, f.size, level=1), "w") as out, \
                    contextlib.closing(f.open()) as chunks:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                    yield sink.take()
            if size != f.size:
                raise ExportDamaged(f"{f.member}: {size} bytes, expected {f.size}")
            listed.append({"name": f.member, "size": size, "sha256": digest.hexdigest()})
        manifest = _json_bytes({"format": MANIFEST_FORMAT, "report": export.report_id, "exported_day": export.day,
                                "signing_key": encode_public_key(export.signer.public_key),
                                "fingerprint": fingerprint(export.signer.public_key), "members": listed})
        for name, data in ((MANIFEST, manifest), (SIGNATURE, export.signer.sign(manifest))):
            with archive.open(_info(name, export.day, len(data)), "w") as out:
                out.write(data)
    yield sink.take()


def export_file_name(export: CaseExport, *, sealed: bool = False) -> str:
    return f"report-{export.report_id[:8]}-{export.day}.{'dbxexport' if sealed else 'zip'}"


# --- verifying ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportCheck:
    """What checking an export found: valid, or the first reason it is not."""

    valid: bool
    reason: str = ""
    report_id: str = ""
    exported_day: str = ""
    fingerprint: str = ""
    #: (name, size, sha256) of every member the signature covers.
    members: list[tuple[str, int, str]] = field(default_factory=list)
    #: The key that signed is this install's current one (else: a retired one).
    current_key: bool = True


def _invalid(reason: str) -> ExportCheck:
    return ExportCheck(valid=False, reason=reason)


def _digest(archive: zipfile.ZipFile, name: str, *, most: int) -> tuple[int, str]:
    """Size and SHA-256 of a member, read in pieces; stops past `most` bytes (the size the
    manifest lists), so a member that inflates without end costs no more than a genuine one."""
    digest, size = hashlib.sha256(), 0
    with archive.open(name) as member:
        while size <= most and (chunk := member.read(_READ_BYTES)):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _manifest(archive: zipfile.ZipFile) -> tuple[bytes, bytes]:
    infos = {i.filename: i for i in archive.infolist()}
    for name in (MANIFEST, SIGNATURE):
        if name not in infos:
            raise ValueError(f"{name} is missing: this is not a signed export")
        if infos[name].file_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"{name} is too large to be a manifest")
    return archive.read(MANIFEST), archive.read(SIGNATURE)


def check_export(path: Path, *, public_keys: list[bytes]) -> ExportCheck:
    """Check an export ZIP against an install's public keys (current first, then retired):
    the signature over manifest.json, then every member's size and SHA-256, and that the ZIP
    holds nothing the manifest does not list. Reads each member in chunks."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _check(archive, public_keys)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as e:
        return _invalid(f"not a readable ZIP file ({e})")


def _check(archive: zipfile.ZipFile, public_keys: list[bytes]) -> ExportCheck:
    names = archive.namelist()
    if len(names) != len(set(names)):
        return _invalid("the ZIP holds two members with the same name")
    try:
        manifest_bytes, signature = _manifest(archive)
        manifest = json.loads(manifest_bytes)
        if manifest.get("format") != MANIFEST_FORMAT:
            return _invalid(f"manifest.json is not a {MANIFEST_FORMAT} manifest")
        signing_key = _manifest_key(manifest["signing_key"])
        members = [(str(m["name"]), int(m["size"]), str(m["sha256"])) for m in manifest["members"]]
    except (ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        return _invalid(f"manifest: {e}")
    if signing_key not in public_keys:
        return _invalid(f"signature: made with the key {fingerprint(signing_key)}, which is not one of this "
                        "install's signing keys")
    if not verify_detached(signing_key, manifest_bytes, signature):
        return _invalid("signature: does not match manifest.json (the manifest or the signature was changed)")
    listed = {name for name, _size, _digest in members}
    for name in names:
        if name not in listed and name not in (MANIFEST, SIGNATURE):
            return _invalid(f"member {name}: not in the signed manifest")
    for name, size, expected in members:
        if name not in names:
            return _invalid(f"member {name}: missing")
        try:
            got_size, got = _digest(archive, name, most=size)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError):
            return _invalid(f"member {name}: digest does not match (the ZIP member is damaged)")
        if got != expected or got_size != size:
            return _invalid(f"member {name}: digest does not match")
    return ExportCheck(valid=True, report_id=str(manifest.get("report", "")),
                       exported_day=str(manifest.get("exported_day", "")), fingerprint=fingerprint(signing_key),
                       members=members, current_key=signing_key == public_keys[0])


def _manifest_key(text: object) -> bytes:
    """The manifest's `signing_key` (base64, as `run.py signing-key` prints it)."""
    if not isinstance(text, str):
        raise ValueError("signing_key is not text")
    return decode_public_key(text)


def describe(check: ExportCheck) -> list[str]:
    """What a valid export proves, in plain words, for `run.py verify`."""
    key = "the current signing key" if check.current_key else "a retired signing key"
    lines = [f"Valid export of report {check.report_id}, made on {check.exported_day}.",
             f"Signed by this install with {key}, fingerprint {check.fingerprint}.",
             f"Its {len(check.members)} members are exactly as exported (size and SHA-256 each):"]
    lines += [f"  {digest}  {size:>12}  {name}" for name, size, digest in check.members]
    return lines
