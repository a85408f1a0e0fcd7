"""Real files carrying planted identifying metadata, built by the tests themselves.

Each builder returns (file name, bytes, planted values). Every planted value contains the marker
`PLANT`, so a byte search of a cleaned copy for the marker is a check nothing survived. exiftool
(the same one the drop box uses) plants the JPEG's EXIF and ffmpeg (which mat2 uses for video)
makes the MP4; the rest are written by hand with the standard library, so the tests depend on
nothing but what the product already installs.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from dropbox.config import MiB
from dropbox.sandbox import SandboxLimits

MARKER = "PLANTzq"

#: Sandbox limits roomy enough for every builder's file on a loaded machine.
SANDBOX_LIMITS = SandboxLimits(memory_bytes=1024 * MiB, cpu_seconds=60, wall_seconds=120, tmpfs_bytes=96 * MiB)

#: A plain 16×16 red JPEG (made once with Pillow), to which exiftool adds the EXIF.
_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBk"
    "eFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAQABAD"
    "ASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKB"
    "kaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZ"
    "mqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQF"
    "BgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5"
    "OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX"
    "2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDHooorhPqD/9k="
)


def jpeg(tmp: Path) -> tuple[str, bytes, list[str]]:
    """EXIF GPS position, camera make/model/serial and artist, planted with exiftool."""
    src = tmp / "plain.jpg"
    src.write_bytes(_JPEG)
    out = tmp / "photo.jpg"
    planted = [f"Artist {MARKER}", f"Cam {MARKER}", f"SN{MARKER}"]
    subprocess.run(["exiftool", "-q", "-o", str(out), f"-Artist={planted[0]}", "-Make=PlantMake",
                    f"-Model={planted[1]}", f"-SerialNumber={planted[2]}", "-GPSLatitude=55.676111",
                    "-GPSLatitudeRef=N", "-GPSLongitude=12.568333", "-GPSLongitudeRef=E", str(src)],
                   check=True, capture_output=True)
    return "photo.jpg", out.read_bytes(), planted


def docx_bytes() -> tuple[bytes, list[str]]:
    planted = [f"Creator {MARKER}", f"Modifier {MARKER}", f"Company {MARKER}"]
    ns = ('xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
          'xmlns:dc="http://purl.org/dc/elements/1.1/"')
    parts = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/'
        'document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties'
        '+xml"/><Override PartName="/docProps/app.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'extended-properties+xml"/></Types>',
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
        'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/officeDocument" Target="word/document.xml"/><Relationship Id="rId2" Type="http://schemas.'
        'openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
        '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-'
        'properties" Target="docProps/app.xml"/></Relationships>',
        "word/document.xml": '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats'
        '.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>The minutes</w:t></w:r></w:p></w:body></w:document>',
        "docProps/core.xml": f'<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties {ns}><dc:creator>{planted[0]}'
        f'</dc:creator><cp:lastModifiedBy>{planted[1]}</cp:lastModifiedBy></cp:coreProperties>',
        "docProps/app.xml": '<?xml version="1.0" encoding="UTF-8"?><Properties xmlns="http://schemas.openxmlformats.org/'
        f'officeDocument/2006/extended-properties"><Company>{planted[2]}</Company></Properties>',
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return buffer.getvalue(), planted


def docx(_tmp: Path) -> tuple[str, bytes, list[str]]:
    """creator, lastModifiedBy (core.xml) and Company (app.xml)."""
    data, planted = docx_bytes()
    return "minutes.docx", data, planted


def pdf(_tmp: Path) -> tuple[str, bytes, list[str]]:
    """Author, Creator, Producer in the Info dictionary, and the author again in an XMP packet."""
    planted = [f"Pdfwriter {MARKER}", f"Pdfmaker {MARKER}", f"Pdftool {MARKER}", f"Xmpwriter {MARKER}"]
    xmp = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
           'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator><rdf:Seq><rdf:li>'
           f'{planted[3]}</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>'
           '<?xpacket end="w"?>').encode()
    content = b"BT /F1 18 Tf 40 100 Td (Budget 2026) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /Metadata 6 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n" % len(xmp) + xmp + b"\nendstream",
        f"<< /Author ({planted[0]}) /Creator ({planted[1]}) /Producer ({planted[2]}) >>".encode(),
    ]
    return "budget.pdf", pdf_bytes(objects, info=7), planted


def pdf_bytes(objects: Sequence[bytes], *, info: int) -> bytes:
    """A PDF 1.4 file of `objects` (numbered from 1, the catalog first) with its cross-reference
    table and a trailer naming object `info` as the Info dictionary: the one PDF writer of the tests
    and the bench, so each only says which objects its file holds."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, info, xref)
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(_tmp: Path) -> tuple[str, bytes, list[str]]:
    """tEXt chunks: Author and Comment."""
    planted = [f"PngAuthor {MARKER}", f"PngComment {MARKER}"]
    raw = b"".join(b"\x00" + b"\x10\x80\x20" * 8 for _ in range(8))
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + _png_chunk(b"tEXt", b"Author\x00" + planted[0].encode())
            + _png_chunk(b"tEXt", b"Comment\x00" + planted[1].encode())
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))
    return "screen.png", data, planted


def _id3_frame(frame_id: bytes, text: str) -> bytes:
    body = b"\x00" + text.encode("latin-1")
    return frame_id + struct.pack(">I", len(body)) + b"\x00\x00" + body


def mp3(_tmp: Path) -> tuple[str, bytes, list[str]]:
    """ID3v2.3 artist, title and comment before silent MPEG-1 layer III frames."""
    planted = [f"Artist {MARKER}", f"Title {MARKER}"]
    frames = _id3_frame(b"TPE1", planted[0]) + _id3_frame(b"TIT2", planted[1])
    size = len(frames)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    tag = b"ID3\x03\x00\x00" + syncsafe + frames
    audio = (b"\xff\xfb\x90\x64" + bytes(413)) * 40  # 128 kbit/s, 44.1 kHz: 417-byte frames
    return "memo.mp3", tag + audio, planted


def zip_with_docx(_tmp: Path) -> tuple[str, bytes, list[str]]:
    """A ZIP archive holding the DOCX above."""
    data, planted = docx_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("minutes.docx", data)
    return "papers.zip", buffer.getvalue(), planted


def mp4(tmp: Path) -> tuple[str, bytes, list[str]]:
    """Two seconds of ffmpeg's test pattern and a tone (MPEG-4 video, AAC audio) with artist, title
    and comment, made by ffmpeg (which mat2 needs to clean video, so it is installed anyway)."""
    planted = [f"Artist {MARKER}", f"Title {MARKER}", f"Comment {MARKER}"]
    out = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-f", "lavfi", "-i", "sine=frequency=440",
                    "-t", "2", "-c:v", "mpeg4", "-c:a", "aac", "-metadata", f"artist={planted[0]}",
                    "-metadata", f"title={planted[1]}", "-metadata", f"comment={planted[2]}", str(out)],
                   check=True, capture_output=True)
    return "clip.mp4", out.read_bytes(), planted


BUILDERS = {"jpeg": jpeg, "docx": docx, "pdf": pdf, "png": png, "mp3": mp3, "zip": zip_with_docx, "mp4": mp4}


def unpacked(data: bytes) -> bytes:
    """The bytes, followed by every member of a ZIP (recursively, so the DOCX in a ZIP too): a byte
    search must also see what compression hides."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return data
    with archive:
        return data + b"".join(unpacked(archive.read(member)) for member in archive.namelist())


def exiftool_values(path: Path) -> str:
    """Everything exiftool reads from a file (all groups, archives unpacked where it can), as text."""
    done = subprocess.run(["exiftool", "-j", "-a", "-G1", "-ee", str(path)], capture_output=True, check=True)
    return json.dumps(json.loads(done.stdout))
