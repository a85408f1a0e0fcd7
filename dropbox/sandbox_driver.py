"""Runs INSIDE the cleaning sandbox (see dropbox/sandbox.py), under Debian's /usr/bin/python3.

It is not imported by the drop box: the sandbox mounts this file read-only and runs it with the
system interpreter, because that is where Debian installs libmat2. It reads one file from stdin
into the sandbox's private tmpfs (memory, never disk), lists its metadata with libmat2 (and, for
the kinds mat2 does not report, exiftool), removes it with libmat2, checks the result again, and
writes to stdout:

    4-byte big-endian length || JSON header || cleaned bytes (only when status is "cleaned")

The header is {"status": "cleaned" | "unsupported" | "failed", "detail": str,
"found": {name: value}, "remaining": {name: value}}. Values are cut short so a hostile file
cannot make the header huge. Only stdlib and libmat2; keep it that way (it runs outside the venv).
"""

import json
import os
import shutil
import struct
import subprocess
import sys

WORK = "/tmp/w"  # noqa: S108 - the sandbox's private tmpfs, nobody else's /tmp
MAX_VALUE_CHARS = 200
MAX_ENTRIES = 300
#: exiftool's verdict on the cleaned copy: groups that identify a person, a place or a device.
EXIF_CHECK_TAGS = ("-Author", "-Creator", "-Artist", "-Copyright", "-OwnerName", "-SerialNumber",
                   "-BodySerialNumber", "-LensSerialNumber", "-InternalSerialNumber", "-Make", "-Model",
                   "-GPS:all", "-XMP:all", "-LastModifiedBy", "-Company", "-Producer", "-Comment",
                   "-Title", "-Album", "-Band", "-Keywords", "-Subject", "-Software")


def _flatten(meta, prefix="", out=None):
    """libmat2 returns nested dicts for archives (member → its metadata); flatten to 'member: key'."""
    out = {} if out is None else out
    for key, value in (meta or {}).items():
        if len(out) >= MAX_ENTRIES:
            break
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, prefix=f"{name} › ", out=out)
        else:
            out[name[:MAX_VALUE_CHARS]] = str(value)[:MAX_VALUE_CHARS]
    return out


def _exiftool(path):
    """Tags exiftool still finds in `path` from the identifying list (empty when it finds none)."""
    try:
        command = ["/usr/bin/exiftool", "-j", "-q", "-q", *EXIF_CHECK_TAGS, path]
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)  # noqa: S603 - fixed program
        rows = json.loads(done.stdout or b"[{}]")
    except (subprocess.SubprocessError, ValueError, OSError):
        return {}
    row = rows[0] if rows else {}
    return {k[:MAX_VALUE_CHARS]: str(v)[:MAX_VALUE_CHARS] for k, v in list(row.items())[:MAX_ENTRIES]
            if k != "SourceFile"}


def _emit(header, payload_path=None):
    raw = json.dumps(header, ensure_ascii=False).encode()
    out = sys.stdout.buffer
    out.write(struct.pack(">I", len(raw)) + raw)
    if payload_path is not None:
        with open(payload_path, "rb") as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    out.flush()


def main():
    suffix = sys.argv[1] if len(sys.argv) > 1 else ""
    if not (suffix == "" or (suffix.startswith(".") and suffix[1:].isalnum() and len(suffix) <= 10)):
        _emit({"status": "failed", "detail": "bad-suffix", "found": {}, "remaining": {}})
        return
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "file" + suffix.lower())
    try:
        with open(path, "wb") as sink:
            shutil.copyfileobj(sys.stdin.buffer, sink, 1024 * 1024)
    except OSError:
        # The tmpfs size or RLIMIT_FSIZE stopped us: the file is bigger than the sandbox allows.
        _emit({"status": "failed", "detail": "too-large", "found": {}, "remaining": {}})
        return
    from libmat2 import parser_factory  # late: importing GI costs time we spend only on real work

    before_exif = _exiftool(path)
    try:
        parser, _mime = parser_factory.get_parser(path)
    except Exception as e:  # noqa: BLE001 - libmat2 raises anything a hostile file provokes
        _emit({"status": "failed", "detail": f"unreadable:{type(e).__name__}", "found": before_exif,
               "remaining": before_exif})
        return
    if parser is None:
        _emit({"status": "unsupported", "detail": "format", "found": before_exif, "remaining": before_exif})
        return
    # libmat2 would wrap exiftool and ffmpeg in a bwrap of its own; nested namespaces are refused
    # in here (no capabilities), and we are already inside a stricter sandbox than the one it builds.
    parser.sandbox = False
    try:
        found = _flatten(parser.get_meta())
        found.update({k: v for k, v in before_exif.items() if k not in found})
        ok = parser.remove_all()
    except Exception as e:  # noqa: BLE001 - same: a parser crash is an answer, not our crash
        _emit({"status": "failed", "detail": f"crash:{type(e).__name__}", "found": before_exif,
               "remaining": before_exif})
        return
    output = parser.output_filename
    if not ok or not os.path.exists(output):
        _emit({"status": "failed", "detail": "refused", "found": found, "remaining": found})
        return
    remaining = _exiftool(output)
    try:
        again, _ = parser_factory.get_parser(output)
        if again is not None:
            again.sandbox = False
            remaining.update(_flatten(again.get_meta()))
    except Exception:  # noqa: BLE001, S110 - a re-read failing leaves exiftool's verdict
        pass
    _emit({"status": "cleaned", "detail": "", "found": found, "remaining": remaining,
           "size": os.path.getsize(output)}, output)


if __name__ == "__main__":
    main()
