"""Files without fingerprints: what identifying metadata a file carries, and a copy without it.

The commonest way a careful whistleblower is still identified is the file itself (the author in a
Word document, the GPS position and camera serial in a photo, the user name in a PDF). Every file
sent through the drop box goes through `Cleaner.clean`, which runs mat2 and exiftool in the
sandbox of dropbox/sandbox.py and says, per file, what it found and what came of it.

The rules that keep that honest:

* a copy is called cleaned only when the sandbox exited cleanly, returned exactly the bytes it
  announced, and its own second look found nothing identifying left; anything else (unknown
  format, crash, timeout, limit, too large) is an `Outcome` that says why, and the caller keeps
  the file as sent, flagged, never lost and never passed off as cleaned;
* findings carry the values found ("Author: …"), so they are as secret as the file: the caller
  seals them with the report and shows them only to the person who sent the file;
* at most `Config.clean_concurrency` sandboxes run at once; the rest wait their turn, so a flood
  of uploads costs queueing time, not the machine's memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropbox.blobs import BlobError, FileTooLarge, StagedFile, StagedFiles
from dropbox.catalogues import N_
from dropbox.cleaner_service import clean_remote
from dropbox.config import Config, MiB
from dropbox.sandbox import SandboxError, SandboxLimits, run_cleaner

log = logging.getLogger(__name__)


class Policy(enum.StrEnum):
    """What a channel does with the files sent to it (set by an admin)."""

    REMOVE = "remove"
    """Only the cleaned copy is kept; the original's sealed staging copy is thrown away."""
    CHOOSE = "choose"
    """The whistleblower decides with a checkbox on the form (ticked by default)."""
    KEEP_ORIGINAL = "keep_original"
    """The original is sealed too, as evidence; caseworkers work on the cleaned copy."""


class Outcome(enum.StrEnum):
    """What came of one file. Only CLEANED means the stored copy is the cleaned one."""

    CLEANED = "cleaned"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    LIMIT = "limit"
    UNAVAILABLE = "unavailable"
    NOT_REQUESTED = "not_requested"


#: Why a file was not cleaned, and what the person can do, in words for both sides.
OUTCOME_TEXT: dict[Outcome, str] = {
    Outcome.CLEANED: N_("Cleaned: identifying metadata was removed."),
    Outcome.UNSUPPORTED: N_("Not cleaned: this file type cannot be checked. It was kept as sent. "
                            "If it may carry your name, send it again as a PDF or a picture."),
    Outcome.FAILED: N_("Not cleaned: the file could not be read (damaged, encrypted or password "
                       "protected). It was kept as sent. Remove the protection and send it again."),
    Outcome.TOO_LARGE: N_("Not cleaned: the file is too large to check. It was kept as sent. "
                          "Split it or send a smaller copy."),
    Outcome.TIMEOUT: N_("Not cleaned: checking the file took too long. It was kept as sent. "
                        "Send a smaller or simpler copy."),
    Outcome.LIMIT: N_("Not cleaned: the file needs more than the checker may use. It was kept as "
                      "sent. Send a smaller or simpler copy."),
    Outcome.UNAVAILABLE: N_("Not cleaned: the checker is not available right now. The file was kept "
                            "as sent."),
    Outcome.NOT_REQUESTED: N_("Not cleaned: you asked to send the file as it is."),
}


#: The same, as caseworkers read it next to the file.
STAFF_OUTCOME_TEXT: dict[Outcome, str] = {
    Outcome.CLEANED: N_("Cleaned"),
    Outcome.UNSUPPORTED: N_("Not cleaned: unknown file type"),
    Outcome.FAILED: N_("Not cleaned: damaged, encrypted or unreadable file"),
    Outcome.TOO_LARGE: N_("Not cleaned: too large to check"),
    Outcome.TIMEOUT: N_("Not cleaned: checking took too long"),
    Outcome.LIMIT: N_("Not cleaned: needed more than the checker may use"),
    Outcome.UNAVAILABLE: N_("Not cleaned: the checker was not available"),
    Outcome.NOT_REQUESTED: N_("Not cleaned: the sender chose to send it as it was"),
}


class Kind(enum.StrEnum):
    """What a metadata entry tells about the sender."""

    AUTHOR = "author"
    ORGANISATION = "organisation"
    GPS = "gps"
    CAMERA = "camera"
    SOFTWARE = "software"
    TEXT = "text"
    DATE = "date"
    OTHER = "other"


KIND_LABEL: dict[Kind, str] = {
    Kind.AUTHOR: N_("Author"),
    Kind.ORGANISATION: N_("Organisation"),
    Kind.GPS: N_("GPS position"),
    Kind.CAMERA: N_("Camera"),
    Kind.SOFTWARE: N_("Software"),
    Kind.TEXT: N_("Title or comment"),
    Kind.DATE: N_("Date"),
    Kind.OTHER: N_("Other metadata"),
}

#: Lower-cased fragments of a metadata name, first match wins (so "gps" before "date").
_KIND_RULES: tuple[tuple[Kind, tuple[str, ...]], ...] = (
    (Kind.GPS, ("gps", "location", "latitude", "longitude")),
    (Kind.CAMERA, ("serial", "make", "model", "lens", "camera")),
    (Kind.AUTHOR, ("author", "creator", "artist", "lastmodifiedby", "owner", "copyright", "by-line",
                   "user", "band", "composer", "tpe", "tcom")),
    (Kind.ORGANISATION, ("company", "manager", "organi")),
    (Kind.SOFTWARE, ("producer", "software", "application", "tool", "encoder", "tsse")),
    (Kind.TEXT, ("comment", "title", "description", "subject", "keyword", "tit2", "comm")),
    (Kind.DATE, ("date", "time", "created", "modified")),
)


def kind_of(name: str) -> Kind:
    """The kind of a metadata entry from its name ("docProps/core.xml › dc:creator" → AUTHOR)."""
    lowered = name.rsplit("›", 1)[-1].lower()
    for kind, fragments in _KIND_RULES:
        if any(fragment in lowered for fragment in fragments):
            return kind
    return Kind.OTHER


#: Kinds whose value is shown; a GPS position is named, not repeated (it is a place, not a word).
_SHOW_VALUE = {Kind.AUTHOR, Kind.ORGANISATION, Kind.CAMERA, Kind.SOFTWARE, Kind.TEXT}
#: Entries listed per file at most; the rest are counted ("and 12 more").
MAX_LISTED = 12


@dataclass(frozen=True)
class Finding:
    kind: Kind
    value: str | None

    def to_json(self) -> list[str | None]:
        return [self.kind.value, self.value]


def summarise(found: dict[str, str]) -> list[Finding]:
    """Turn the sandbox's raw name → value entries into distinct findings, most telling first.

    The same author often appears three times (core.xml, app.xml, exiftool's view of both); the
    person wants to read it once. Dates and tool names matter less than names and places.
    """
    seen: set[tuple[Kind, str | None]] = set()
    findings: list[Finding] = []
    for name, value in found.items():
        kind = kind_of(name)
        shown = value.strip()[:120] if kind in _SHOW_VALUE and value.strip() else None
        if (kind, shown) in seen:
            continue
        seen.add((kind, shown))
        findings.append(Finding(kind=kind, value=shown))
    order = list(Kind)
    return sorted(findings, key=lambda f: order.index(f.kind))


@dataclass(frozen=True)
class FileCleaning:
    """What came of one file: sealed with the report, shown to the person who sent it."""

    outcome: Outcome
    found: list[Finding] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    original_kept: bool = False

    @property
    def cleaned(self) -> bool:
        return self.outcome is Outcome.CLEANED

    def stored(self) -> FileCleaning:
        """What everyone who holds the report key may read: the kinds found, not the values. The
        values (the very name or serial number cleaning removed) are kept only sealed under the
        whistleblower's own key (reports.sealed_file_rows), never where caseworkers could open them."""
        return dataclasses.replace(self, found=[Finding(kind=f.kind, value=None) for f in self.found],
                                   remaining=[Finding(kind=f.kind, value=None) for f in self.remaining])

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "found": [f.to_json() for f in self.found],
                "remaining": [f.to_json() for f in self.remaining], "original_kept": self.original_kept}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FileCleaning:
        return cls(outcome=Outcome(value["outcome"]), found=findings_from_json(value.get("found", [])),
                   remaining=findings_from_json(value.get("remaining", [])),
                   original_kept=bool(value.get("original_kept", False)))


def findings_from_json(rows: object) -> list[Finding]:
    """Findings as Finding.to_json wrote them; ValueError/TypeError for anything else."""
    if not isinstance(rows, list):
        raise TypeError("findings are not a list")
    return [Finding(kind=Kind(str(k)), value=None if v is None else str(v)) for k, v in rows]


@dataclass(frozen=True)
class CleaningSettings:
    """The limits of one install, taken from Config (see its `clean_*` fields)."""

    max_bytes: int
    concurrency: int
    limits: SandboxLimits
    #: Largest cleaned copy staged (the install's file cap; mat2 rarely makes a file larger).
    copy_max_bytes: int = 1 << 40
    #: The cleaner service's socket (deploy/dropbox-cleaner.socket); None: the sandbox runs here.
    socket: Path | None = None


def settings_from(config: Config) -> CleaningSettings:
    """The sandbox's tmpfs holds the file and its cleaned copy, with room for the tools' scratch."""
    return CleaningSettings(
        max_bytes=config.clean_max_bytes, concurrency=config.clean_concurrency, copy_max_bytes=config.max_file_bytes,
        socket=config.cleaner_socket,
        limits=SandboxLimits(memory_bytes=config.clean_memory_bytes, cpu_seconds=config.clean_cpu_seconds,
                             wall_seconds=config.clean_wall_seconds,
                             tmpfs_bytes=2 * config.clean_max_bytes + 64 * MiB))


class Cleaner:
    """The install's one gate to the sandbox: bounded concurrency, size cap, typed outcomes."""

    def __init__(self, settings: CleaningSettings) -> None:
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def clean(
        self,
        *,
        name: str,
        size: int,
        source: Callable[[], AsyncIterator[bytes]],
        sink: Callable[[bytes], Awaitable[None]],
    ) -> FileCleaning:
        """Clean one file of `size` bytes read from `source()`, cleaned bytes to `sink`.

        Only when the result is CLEANED does the sink hold the whole cleaned file; otherwise the
        caller throws away what the sink got and keeps the original. Never raises for anything
        the file or the sandbox does: every such case is an Outcome.
        """
        if size > self.settings.max_bytes:
            return FileCleaning(outcome=Outcome.TOO_LARGE)
        async with self._slots:
            try:
                if self.settings.socket is None:
                    header = await run_cleaner(source=source(), suffix=suffix_of(name),
                                               limits=self.settings.limits, sink=sink)
                else:
                    header = await clean_remote(socket_path=self.settings.socket, source=source(), size=size,
                                                suffix=suffix_of(name), limits=self.settings.limits, sink=sink)
            except SandboxError as e:
                log.warning("cleaning gave no answer (%s)", type(e).__name__)
                return FileCleaning(outcome=Outcome(e.reason))
        found = summarise(_entries(header.get("found")))
        remaining = summarise(_entries(header.get("remaining")))
        status = header.get("status")
        if status == "unsupported":
            return FileCleaning(outcome=Outcome.UNSUPPORTED, found=found, remaining=found)
        if status != "cleaned":
            detail = str(header.get("detail", ""))
            outcome = (Outcome.TOO_LARGE if detail == "too-large"
                       else Outcome.LIMIT if detail.endswith("MemoryError") else Outcome.FAILED)
            return FileCleaning(outcome=outcome, found=found, remaining=found)
        identifying = [f for f in remaining if f.kind in (Kind.AUTHOR, Kind.ORGANISATION, Kind.GPS, Kind.CAMERA)]
        if identifying:
            # mat2 said done but a second look still finds a name or a place: not cleaned.
            return FileCleaning(outcome=Outcome.FAILED, found=found, remaining=identifying)
        return FileCleaning(outcome=Outcome.CLEANED, found=found, remaining=remaining)


def _entries(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def suffix_of(name: str) -> str:
    """The file name's extension as mat2 needs it to pick a parser ("" if none or odd)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not ext.isascii() or not ext.isalnum() or len(ext) > 9:
        return ""
    return "." + ext.lower()


# --- an upload's files ------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanedUpload:
    """What cleaning did to the files of one upload, in the order they were sent.

    `by_file` maps each staged file that will be stored to its FileCleaning (with values: the
    caller shows them to the sender right away and stores only `stored()`); `originals` maps a
    kept original's id to the cleaned copy's id.
    """

    shown: list[tuple[str, FileCleaning]] = field(default_factory=list)
    by_file: dict[str, FileCleaning] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)


async def clean_upload(
    *,
    cleaner: Cleaner,
    staged: StagedFiles,
    policy: Policy,
    wanted: bool,
) -> CleanedUpload:
    """Replace each staged file by its cleaned copy, as `policy` says; never lose one.

    The original was sealed as it arrived (its key only in memory); it is read back, decrypted
    into the sandbox through a pipe, and the cleaned bytes are sealed into a new staged file as
    they come out. Then: REMOVE (and CHOOSE when `wanted`) forgets the original, KEEP_ORIGINAL
    keeps both, and a file that could not be cleaned stays as sent, flagged. Raises only what
    the staging itself raises (StorageFull, UploadsBusy, DiskLow): the caller discards as usual.
    """
    done = CleanedUpload()
    for original in list(staged.files):
        if policy is Policy.CHOOSE and not wanted:
            result = FileCleaning(outcome=Outcome.NOT_REQUESTED)
            done.by_file[original.id] = result
            done.shown.append((original.name, result))
            continue
        await staged.settle()  # the original's last rows must be written before it is read back
        result, copy = await _clean_one(cleaner, staged, original)
        if copy is None:
            done.by_file[original.id] = result
        elif policy is Policy.KEEP_ORIGINAL:
            result = dataclasses.replace(result, original_kept=True)
            done.by_file[copy.id] = result
            done.by_file[original.id] = result
            done.originals[original.id] = copy.id
            _put_in_place(staged, copy, original)
        else:
            _put_in_place(staged, copy, original)
            await staged.forget(original)
            done.by_file[copy.id] = result
        done.shown.append((original.name, result))
    return done


def _put_in_place(staged: StagedFiles, copy: StagedFile, original: StagedFile) -> None:
    """Keep the files in the order they were sent: the copy goes just before its original (which
    is then forgotten, or kept unlisted), so it takes the original's place."""
    copy.sent_as = original.as_sent()  # a proof of reporting names what was sent, not the copy
    staged.files.remove(copy)
    staged.files.insert(staged.files.index(original), copy)


async def _clean_one(cleaner: Cleaner, staged: StagedFiles,
                     original: StagedFile) -> tuple[FileCleaning, StagedFile | None]:
    """Clean one staged file into a new one. The copy is returned only when it is CLEANED;
    otherwise whatever of it was staged is forgotten, and the original stays."""
    pipe: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
    before = {f.id for f in staged.files}

    async def cleaned_chunks() -> AsyncIterator[bytes]:
        while (chunk := await pipe.get()) is not None:
            yield chunk

    adding = asyncio.ensure_future(staged.add(original.name, cleaned_chunks(),
                                              max_file_bytes=cleaner.settings.copy_max_bytes))

    async def sink(chunk: bytes) -> None:
        put = asyncio.ensure_future(pipe.put(chunk))
        await asyncio.wait([put, adding], return_when=asyncio.FIRST_COMPLETED)
        if not put.done():  # the staging gave up (too large, disk full): stop the cleaning
            put.cancel()
            raise _StagingStopped()

    copy: StagedFile | None = None
    try:
        try:
            result = await cleaner.clean(name=original.name, size=original.size,
                                         source=lambda: _plaintext(staged, original), sink=sink)
        except _StagingStopped:
            result = FileCleaning(outcome=Outcome.TOO_LARGE)
        if not adding.done():
            await pipe.put(None)
        try:
            copy = await adding
        except BlobError as e:
            # The copy could not be staged (over the file cap, uploads cap or disk reserve): the
            # original stays, flagged; the upload itself is not refused for it.
            outcome = Outcome.TOO_LARGE if isinstance(e, FileTooLarge) else Outcome.LIMIT
            result = FileCleaning(outcome=outcome, found=result.found, remaining=result.found)
    finally:
        if not adding.done():
            adding.cancel()
    if copy is not None and result.cleaned:
        return result, copy
    for leftover in [f for f in staged.files if f.id not in before]:
        await staged.forget(leftover)
    return result, None


class _StagingStopped(Exception):
    """The cleaned copy could not be staged; the sandbox's output is no longer wanted."""


async def _plaintext(staged: StagedFiles, original: StagedFile) -> AsyncIterator[bytes]:
    """The staged original, decrypted chunk by chunk in a worker thread: memory only."""
    reader = staged.blobs.read(original.id, file_key=original.file_key, size=original.size)
    try:
        while (chunk := await asyncio.to_thread(next, reader, None)) is not None:
            yield chunk
    finally:
        await asyncio.to_thread(reader.close)
