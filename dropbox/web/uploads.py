"""The one reader of multipart/form-data for both apps: text fields, and files sealed on arrival.

Every multipart POST of the whistleblower and the caseworker app comes through `read_form`; every
other POST through `read_small_form`, which refuses multipart. aiohttp's `request.post()` would
spool a multipart body's file parts, unencrypted, to a temporary file, so it is never called on a
body that may be multipart.

`read_form` walks the parts with aiohttp's `request.multipart()`. Text fields are read up to their
limit and no further; files go straight into `StagedFiles` in chunks of `file_chunk_bytes`, so a
file of any size costs a chunk or two of memory and is encrypted before anything touches the
disk. Every limit is enforced while reading, and the first one crossed stops the reading:

- a declared Content-Length that could not fit the limits is refused before a byte is read;
- a text field longer than its limit raises FieldTooLong (the beginning is kept for re-filling);
- a file over Config.max_file_bytes, or all files together over Config.max_submission_bytes,
  raises UploadTooLarge and its partial ciphertext is deleted at once;
- more than Config.max_files_per_submission files raises TooManyFiles;
- unknown or repeated field names, a broken body, or a body that is not multipart raise
  MalformedForm (ClientGone when the connection dropped);
- a disk that refuses the write (blobs.StorageFull) raises NoSpace;
- too many uploads in flight or too many bytes staged (blobs.UploadsBusy), or free space down to
  the reserve (blobs.DiskLow), raises TryLater, before any of the body is read when it can;
- a body arriving slower than Config.min_upload_bytes_per_second, averaged over
  Config.upload_rate_window_seconds (or a read that stalls for a whole window), raises TooSlow.

Each error carries `fields`: the text fields read before it, so the page can be filled in again.
On any error the staged files are discarded before the error leaves `read_form`; on success the
caller owns them (reports.owning: kept by the report or message, else discarded).

Nothing here logs: field values and file names are what the person typed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import unicodedata
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam
from multidict import MultiDict, MultiDictProxy

from dropbox.blobs import BlobStore, DiskLow, FileTooLarge, StagedFiles, StorageFull, UploadsBusy
from dropbox.config import Config

# aiohttp reports a malformed Content-Disposition as a *warning* whose text quotes the header, and
# that header holds the file name; Python prints warnings to stderr. Never let one out: such a
# part then has no name, and read_form refuses it as malformed.
warnings.filterwarnings("ignore", category=BadContentDispositionHeader)
warnings.filterwarnings("ignore", category=BadContentDispositionParam)

#: What aiohttp raises for a body that is not well-formed multipart (or that ends too early).
#: RuntimeWarning: the two warnings above, when a test runner turns warnings into errors.
_MALFORMED = (ValueError, LookupError, RuntimeError, HttpProcessingError, RuntimeWarning)

#: Bytes allowed per part for its boundary and headers when checking a declared Content-Length.
PART_OVERHEAD_BYTES = 4096  # boundary, Content-Disposition with a long UTF-8 name, Content-Type
#: Longest file name kept (characters, after cleaning).
MAX_FILENAME_CHARS = 200
#: A UTF-8 character takes at most this many bytes.
_UTF8_MAX = 4
_TEXT_READ_BYTES = 16 * 1024
#: Longest value of the `first` field (a CSRF token is 43 characters).
FIRST_FIELD_CHARS = 128

_T = TypeVar("_T")
#: The check of the first field: raises to refuse the request; may be a coroutine function.
FirstCheck = Callable[[str], Awaitable[None] | None]


class FormError(Exception):
    """Root of the errors of reading a form. `fields` holds the text fields read before it."""

    def __init__(self) -> None:
        super().__init__(type(self).__name__)
        self.fields: dict[str, str] = {}


class MalformedForm(FormError):
    """Not multipart/form-data, broken framing, an unexpected or repeated field, or bad UTF-8."""


class ClientGone(MalformedForm):
    """The connection dropped mid-upload. Not an OSError, so blobs.py cannot take it for a full disk."""


class FieldTooLong(FormError):
    """A text field went over its limit. `fields[name]` holds its first `limit` characters."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__()
        self.name = name
        self.limit = limit


class UploadTooLarge(FormError):
    """A file went over max_file_bytes, or all files together over max_submission_bytes."""


class TooManyFiles(FormError):
    """More files than max_files_per_submission."""


class NoSpace(FormError):
    """The disk refused a write (blobs.StorageFull): full, read-only or failing. Nothing was kept."""


class TryLater(FormError):
    """Uploads are at their install-wide limits, or free space is down to the reserve (503)."""


class TooSlow(FormError):
    """The body came in slower than the minimum rate, or stalled: aborted, nothing kept (408)."""


class RateGuard:
    """The minimum upload rate: at least `min_bytes_per_second` on average over every window of
    `window_seconds`, and no single read stalled for a whole window. Tor is slow, but not 1 KiB/s
    slow; a client that is holds a connection, a descriptor and staged bytes for nothing."""

    def __init__(self, *, min_bytes_per_second: int, window_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_seconds
        self._floor = min_bytes_per_second * window_seconds
        self._clock = clock
        self._start = clock()
        self._bytes = 0

    def note(self, n: int) -> None:
        """`n` more bytes arrived; TooSlow if the window that just closed had too few."""
        self._bytes += n
        now = self._clock()
        if now - self._start >= self.window_seconds:
            if self._bytes < self._floor:
                raise TooSlow()
            self._start, self._bytes = now, 0


@dataclass(frozen=True)
class FormSpec:
    """Which fields a form may carry.

    `fields`: exact names → longest value in characters.
    `prefixed`: name prefixes → longest value (e.g. "answer_" for per-channel questions), with
    at most `max_prefixed` such fields in all.
    `file_field`: the name of the file input, or None for a form without files.
    `first`: a field that must be the first part (the CSRF token) and a check that raises to
    refuse the request (it may be async, e.g. to check a caseworker's grant as well). The check
    runs before any other part is read, so a forged request never gets a byte of its files onto
    the disk. The field is not returned with the others.
    """

    fields: Mapping[str, int]
    prefixed: Mapping[str, int] = field(default_factory=dict)
    max_prefixed: int = 0
    file_field: str | None = "files"
    first: tuple[str, FirstCheck] | None = None


#: The most of a file part one read takes from aiohttp. Each read of n bytes makes aiohttp hold
#: about 4n at once (its buffer, the read, and the previous read joined to it to look for the
#: boundary), on the event loop's heap; with 1 MiB reads that was 10 MiB of the server's memory
#: while a body streamed. The sink evens the pieces into chunks of `file_chunk_bytes` anyway.
_READ_BYTES = 256 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_total_bytes: int
    max_files: int
    chunk_bytes: int
    min_bytes_per_second: int = 0
    rate_window_seconds: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> UploadLimits:
        return cls(max_file_bytes=config.max_file_bytes, max_total_bytes=config.max_submission_bytes,
                   max_files=config.max_files_per_submission, chunk_bytes=config.file_chunk_bytes,
                   min_bytes_per_second=config.min_upload_bytes_per_second,
                   rate_window_seconds=config.upload_rate_window_seconds)

    @property
    def read_bytes(self) -> int:
        """How much of a file one read asks aiohttp for: at most _READ_BYTES (see there)."""
        return min(self.chunk_bytes, _READ_BYTES)

    def rate_guard(self, clock: Callable[[], float] = time.monotonic) -> RateGuard:
        return RateGuard(min_bytes_per_second=self.min_bytes_per_second, window_seconds=self.rate_window_seconds,
                         clock=clock)

    def max_request_bytes(self, spec: FormSpec) -> int:
        """The largest body that could still be within every limit: files, text and framing."""
        text_chars = sum(spec.fields.values()) + spec.max_prefixed * max(spec.prefixed.values(), default=0)
        return self.max_total_bytes + _UTF8_MAX * (text_chars + FIRST_FIELD_CHARS) \
            + _max_parts(spec, self) * PART_OVERHEAD_BYTES


async def read_small_form(request: web.Request) -> MultiDictProxy[str]:
    """The fields of a form without files (login, logout, a note, a setting); `get` gives the
    first value of a name, `getall` every value (a list of checkboxes).

    Anything but url-encoded is MalformedForm: `request.post()` would accept multipart too, and
    spool its file parts, unencrypted, to a temporary file on disk.
    """
    if request.content_type != "application/x-www-form-urlencoded":
        raise MalformedForm()
    form = await request.post()
    return MultiDictProxy(MultiDict((name, value) for name, value in form.items() if isinstance(value, str)))


@dataclass
class ParsedForm:
    fields: dict[str, str]
    staged: StagedFiles


async def read_form(request: web.Request, *, spec: FormSpec, limits: UploadLimits, blobs: BlobStore,
                    public: bool = True, clock: Callable[[], float] = time.monotonic) -> ParsedForm:
    """Read the whole form as it arrives; see the module docstring for the errors.

    `public`: an anonymous upload, held to the install-wide caps (blobs.BlobStore.stage); a
    caseworker's is not, so a flood of whistleblower uploads cannot stop replies."""
    try:
        staged = blobs.stage(byte_budget=limits.max_total_bytes, public=public)
    except (UploadsBusy, DiskLow) as e:
        raise TryLater() from e
    reader = _Reader(spec, limits, staged, limits.rate_guard(clock))
    try:
        if request.content_type != "multipart/form-data":
            raise MalformedForm()
        declared = request.content_length
        if declared is not None and declared > limits.max_request_bytes(spec):
            raise UploadTooLarge()
        await reader.read(await _guard(request.multipart()))
        await reader.staged.settle()  # the last file's last batch: a refusal is NoSpace, here
    except FormError as e:
        await reader.staged.discard()
        e.fields = reader.fields
        raise
    except (StorageFull, UploadsBusy, DiskLow) as e:
        await reader.staged.discard()
        error: FormError = NoSpace() if isinstance(e, StorageFull) else TryLater()
        error.fields = reader.fields
        raise error from e
    except BaseException:
        await reader.staged.discard()
        raise
    return ParsedForm(fields=reader.fields, staged=reader.staged)


def _max_parts(spec: FormSpec, limits: UploadLimits) -> int:
    """Text fields, the first field, one part per file, and the empty part of an unused file input."""
    return len(spec.fields) + spec.max_prefixed + limits.max_files + 2


class _Reader:
    def __init__(self, spec: FormSpec, limits: UploadLimits, staged: StagedFiles, rate: RateGuard) -> None:
        self.spec = spec
        self.limits = limits
        self.staged = staged
        self.rate = rate
        self.fields: dict[str, str] = {}
        self.prefixed_count = 0

    async def read(self, multipart: MultipartReader) -> None:
        parts = 0
        while (part := await _guard(multipart.next(), self.rate)) is not None:
            parts += 1
            if not isinstance(part, BodyPartReader) or parts > _max_parts(self.spec, self.limits):
                raise MalformedForm()
            name, filename = _names(part)
            if parts == 1 and self.spec.first is not None:
                await self._check_first(self.spec.first, part, name, filename)
            elif name in self.fields:
                raise MalformedForm()
            elif name == self.spec.file_field and filename is not None:
                await self._file(part, filename)
            elif filename is None and (limit := self._text_limit(name)) is not None:
                self.fields[name] = await self._text(part, name, limit)
            else:
                raise MalformedForm()
        if parts == 0 and self.spec.first is not None:
            await self._check_first(self.spec.first, None, "", None)

    async def _check_first(self, first: tuple[str, FirstCheck], part: BodyPartReader | None,
                           name: str, filename: str | None) -> None:
        expected, check = first
        value = ""
        if part is not None and name == expected and filename is None:
            value = await self._text(part, name, FIRST_FIELD_CHARS)
            self.fields.pop(name, None)
        checked = check(value)
        if inspect.isawaitable(checked):
            await checked
        if not value:
            raise MalformedForm()  # the check must refuse a missing value; never read on without it

    def _text_limit(self, name: str) -> int | None:
        if name in self.spec.fields:
            return self.spec.fields[name]
        for prefix, limit in self.spec.prefixed.items():
            if name.startswith(prefix) and len(name) <= len(prefix) + 64:
                self.prefixed_count += 1
                if self.prefixed_count > self.spec.max_prefixed:
                    raise MalformedForm()
                return limit
        return None

    async def _text(self, part: BodyPartReader, name: str, limit: int) -> str:
        """The field's value, reading no more than `limit` characters' worth of bytes."""
        max_bytes = limit * _UTF8_MAX
        data = bytearray()
        while chunk := await _guard(part.read_chunk(_TEXT_READ_BYTES), self.rate):
            data += chunk
            if len(data) > max_bytes:
                self.fields[name] = _decode(bytes(data[:max_bytes]), errors="ignore")[:limit]
                raise FieldTooLong(name, limit)
        try:
            text = _decode(bytes(data), errors="strict")
        except UnicodeDecodeError as e:
            raise MalformedForm() from e
        if len(text) > limit:
            self.fields[name] = text[:limit]
            raise FieldTooLong(name, limit)
        return text

    async def _file(self, part: BodyPartReader, filename: str) -> None:
        first = await _guard(part.read_chunk(self.limits.read_bytes), self.rate)
        if not first and not filename:
            return  # a file input with nothing chosen: browsers send an empty, nameless part
        if len(self.staged.files) >= self.limits.max_files:
            raise TooManyFiles()
        try:
            await self.staged.add(clean_filename(_unescape(filename)),
                                  _chunks(part, first, self.limits.read_bytes, self.rate),
                                  max_file_bytes=self.limits.max_file_bytes)
        except FileTooLarge as e:
            raise UploadTooLarge() from e


def _names(part: BodyPartReader) -> tuple[str, str | None]:
    try:
        name, filename = part.name, part.filename
    except _MALFORMED as e:
        raise MalformedForm() from e
    if not name:
        raise MalformedForm()
    return name, filename


async def _chunks(part: BodyPartReader, first: bytes, size: int, rate: RateGuard) -> AsyncIterator[bytes]:
    """The part's bytes as they arrive, in reads of at most `size`, without a copy: the sink
    (blobs.StagedFiles.add) evens them into chunks of exactly `size` on its worker thread, so
    the blob's frame lengths tell nothing about how the upload arrived."""
    if first:
        yield first
    while data := await _guard(part.read_chunk(size), rate):
        yield data


async def _guard(step: Awaitable[_T], rate: RateGuard | None = None) -> _T:
    """Await one aiohttp read, turning its parse errors and disconnects into our errors, and
    (with `rate`) holding it to the minimum upload rate."""
    try:
        if rate is None:
            return await step
        async with asyncio.timeout(rate.window_seconds):
            result = await step
    except TimeoutError as e:
        raise TooSlow() from e
    except ConnectionError as e:
        raise ClientGone() from e
    except _MALFORMED as e:
        raise MalformedForm() from e
    rate.note(len(result) if isinstance(result, bytes | bytearray) else 0)
    return result


def _decode(data: bytes, *, errors: str) -> str:
    """UTF-8 (the form says accept-charset="utf-8"), line ends as the browser's CRLF made plain."""
    return data.decode("utf-8", errors=errors).replace("\r\n", "\n")


def _unescape(filename: str) -> str:
    """Undo the one escaping browsers apply to file names in form data (HTML's multipart/form-data
    encoding algorithm): LF, CR and '"' are sent as %0A, %0D and %22."""
    return filename.replace("%0A", "\n").replace("%0D", "\r").replace("%22", '"')


def clean_filename(name: str) -> str:
    """A file name as the person's system gave it, minus anything that is not part of the name.

    Keeps only the last path component (old browsers send full paths), drops control and
    formatting characters (including right-to-left overrides that disguise an extension), and
    caps the length while keeping the extension. Only ever shown escaped, and sealed at rest.
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(_filename_char(ch) for ch in name).strip().strip(".")
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and 0 < len(ext) <= 16 else ""
        name = name[: MAX_FILENAME_CHARS - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return name or "file"


def _filename_char(ch: str) -> str:
    """Control, format and line-separator characters go; other spaces become a plain space."""
    category = unicodedata.category(ch)
    if category[0] == "C" or category in ("Zl", "Zp"):
        return ""
    return " " if category == "Zs" else ch
