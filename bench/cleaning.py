"""Part "cleaning": what removing metadata costs (dropbox/cleaning.py, mat2 in its bwrap sandbox).

Two figures per kind of file (a JPEG photo, a DOCX, a PDF, each a few MiB):

* the sandboxed cleaning alone, in seconds per MiB of the file (median of `repeat` runs);
* what cleaning adds to a submission over HTTP: a report with that one file sent to a real
  `run.py serve --no-tor`, once on a channel that removes metadata and once on a channel whose
  whistleblower left the box unticked (no cleaning), the difference of the medians.

The JPEG is drawn with the system Python's Pillow (Debian's python3-pil, installed with mat2's
recommends); the DOCX and PDF are written with the standard library.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import subprocess
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.client import UploadFile, form_fields, receipt_from, upload
from bench.load import browser, hidden_inputs
from bench.servers import Dropbox, dropbox_running
from dropbox.cleaning import Cleaner, Outcome, settings_from
from dropbox.config import Config, MiB
from dropbox.storage import Store
from tests.support.metadata_files import pdf_bytes

log = logging.getLogger(__name__)

_JPEG_SCRIPT = """
import random, sys
from PIL import Image
random.seed(7)
w, h = int(sys.argv[2]), int(sys.argv[3])
img = Image.frombytes("RGB", (w, h), random.randbytes(w * h * 3))
img.save(sys.argv[1], "JPEG", quality=92, exif=Image.Exif())
"""


_OOXML = "http://schemas.openxmlformats.org"
_DOCX_PARTS = {
    "[Content_Types].xml": f'<?xml version="1.0"?><Types xmlns="{_OOXML}/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.'
    'core-properties+xml"/></Types>',
    "_rels/.rels": f'<?xml version="1.0"?><Relationships xmlns="{_OOXML}/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_OOXML}/officeDocument/2006/relationships/officeDocument" '
    f'Target="word/document.xml"/><Relationship Id="rId2" Type="{_OOXML}/package/2006/relationships/'
    'metadata/core-properties" Target="docProps/core.xml"/></Relationships>',
    "docProps/core.xml": f'<?xml version="1.0"?><cp:coreProperties xmlns:cp="{_OOXML}/package/2006/metadata/'
    'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Bench Author</dc:creator>'
    '</cp:coreProperties>',
}


def build_files(folder: Path, *, size_mib: int) -> dict[str, Path]:
    """A noisy photo, a long DOCX and a long PDF, each about `size_mib` MiB."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"jpeg": folder / "photo.jpg", "docx": folder / "minutes.docx", "pdf": folder / "budget.pdf"}
    side = int((size_mib * MiB / 1.05) ** 0.5)  # noise at quality 92: about 1.05 bytes a pixel
    subprocess.run(["/usr/bin/python3", "-c", _JPEG_SCRIPT, str(files["jpeg"]), str(side), str(side)], check=True)
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-Artist=Bench Artist", "-SerialNumber=123456",
                    "-GPSLatitude=55.67", "-GPSLatitudeRef=N", str(files["jpeg"])], check=True)
    rng = random.Random(7)
    words = ["invoice", "budget", "ministry", "approval", "contract", "audit", "transfer", "account"]
    paragraph = "<w:p><w:r><w:t>{}</w:t></w:r></w:p>"
    with zipfile.ZipFile(files["docx"], "w", zipfile.ZIP_STORED) as archive:
        for name, text in _DOCX_PARTS.items():
            archive.writestr(name, text)
        body = "".join(paragraph.format(" ".join(rng.choices(words, k=40)))
                       for _ in range(size_mib * MiB // 330))
        archive.writestr("word/document.xml", '<?xml version="1.0"?><w:document xmlns:w="http://schemas.'
                         f'openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>')
    files["pdf"].write_bytes(_pdf(pages=max(1, size_mib * 10), rng=rng, words=words))
    return files


def _pdf(*, pages: int, rng: random.Random, words: list[str]) -> bytes:
    """A text PDF of `pages` pages, about 100 KiB each, with an Author in its Info dictionary.
    Objects: 1 catalog, 2 page tree, 3 font, then per page its content and the page, then Info."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
                            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for _ in range(pages):
        lines = b"".join(b"(%s) Tj T* " % " ".join(rng.choices(words, k=12)).encode() for _ in range(1200))
        content = b"BT /F1 6 Tf 8 TL 20 780 Td " + lines + b"ET"
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        content_number = len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % content_number)
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), pages)
    objects.append(b"<< /Author (Bench Author) /Producer (Bench Producer) >>")
    return pdf_bytes(objects, info=len(objects))


async def _engine(path: Path, cleaner: Cleaner) -> tuple[float, Outcome]:
    data = path.read_bytes()

    async def source() -> AsyncIterator[bytes]:
        for start in range(0, len(data), MiB):
            yield data[start:start + MiB]

    async def sink(_chunk: bytes) -> None:
        return None

    started = time.perf_counter()
    result = await cleaner.clean(name=path.name, size=len(data), source=source, sink=sink)
    return time.perf_counter() - started, result.outcome


async def _set_policy(box: Dropbox, policy: str) -> None:
    store = await Store.open(box.data_dir / "dropbox.sqlite3")
    try:
        channel = await store.channel("default")
        await store.update_channel(channel.__class__(**{**channel.__dict__, "cleaning_policy": policy}))
    finally:
        await store.close()


async def _submit(box: Dropbox, path: Path) -> float:
    async with browser(keep_cookies=False) as session:
        hidden = await hidden_inputs(session, f"{box.base}/en/submit")
        fields = form_fields(hidden, {"channel": "default", "text": "bench"})
        result = await upload(session, f"{box.base}/en/submit", fields=fields, files=[
            UploadFile(field="files", filename=path.name, path=path, offset=0, length=path.stat().st_size)])
    if result.status != 200 or receipt_from(result.body) is None:
        raise RuntimeError(f"submission failed: HTTP {result.status}")
    return result.seconds


def run(workdir: Path, *, repeat: int, size_mib: int) -> dict[str, Any]:
    files = build_files(workdir / "files", size_mib=size_mib)
    cleaner = Cleaner(settings_from(Config(data_dir=workdir / "unused")))
    results: dict[str, Any] = {"repeat": repeat, "files": {}}
    for kind, path in files.items():
        mib = path.stat().st_size / MiB
        runs = [asyncio.run(_engine(path, cleaner)) for _ in range(repeat)]
        seconds = statistics.median(s for s, _ in runs)
        results["files"][kind] = {"mib": round(mib, 2), "outcome": str(runs[0][1]), "clean_s": seconds,
                                  "clean_s_per_mib": seconds / mib}
        log.info("cleaning %s (%.1f MiB): %.2f s, %.2f s/MiB, %s", kind, mib, seconds, seconds / mib, runs[0][1])
    with dropbox_running(workdir / "dropbox", log=workdir / "dropbox.log") as box:
        for kind, path in files.items():
            timings = {}
            for policy in ("choose", "remove"):  # choose with the box unticked: nothing is cleaned
                asyncio.run(_set_policy(box, policy))
                timings[policy] = statistics.median(asyncio.run(_submit(box, path)) for _ in range(repeat))
            added = timings["remove"] - timings["choose"]
            results["files"][kind].update({"submit_plain_s": timings["choose"], "submit_cleaned_s": timings["remove"],
                                           "cleaning_adds_s": added})
            log.info("submitting %s: %.2f s as sent, %.2f s cleaned (+%.2f s)", kind, timings["choose"],
                     timings["remove"], added)
    return results


def rows(results: dict[str, Any]) -> list[str]:
    """Lines for the printed table."""
    lines = []
    for kind, f in (results.get("files") or {}).items():
        lines.append(f"Cleaning {kind:4s} {f['mib']:5.1f} MiB: {f['clean_s_per_mib']:.2f} s/MiB ({f['outcome']}); "
                     f"submission {f.get('submit_plain_s', float('nan')):.2f} s as sent, "
                     f"{f.get('submit_cleaned_s', float('nan')):.2f} s cleaned "
                     f"(+{f.get('cleaning_adds_s', float('nan')):.2f} s)")
    return lines
