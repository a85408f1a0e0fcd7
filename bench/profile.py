"""Profile the drop box server with py-spy while one sealed upload (or a login flood) runs.

    .venv/bin/python -m bench.profile upload --mib 1024
    .venv/bin/python -m bench.profile submissions      # 32 whistleblowers submitting at once
    .venv/bin/python -m bench.profile landing          # landing GETs while 50 logins are in flight

py-spy is not a dependency: install it with `pip install py-spy` (it needs ptrace, i.e. root or
CAP_SYS_PTRACE). Prints where the server's threads spent their samples, by leaf function
("self") and by every function on the stack ("inclusive"), per thread kind: the event loop,
the worker threads sealing uploads, the database threads (aiosqlite: SQLite's own work), the
other worker threads, the Argon2id pool. The upload workload leaves cleaning unrequested, as
`python -m bench --parts upload` does.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import load, upload
from bench.measure import ensure_data_file
from bench.servers import REPO, dropbox_running
from dropbox.config import MiB

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)(?::\d+)?\)$")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def _thread_kind(frames: list[str]) -> str:
    text = ";".join(frames)
    if "derive_receipt_keys" in text or "unwrap_caseworker_key" in text or "_argon2id" in text:
        return "argon2 pool"
    if "_connection_worker_thread (aiosqlite" in text:
        return "database threads (aiosqlite)"
    if "_FileSink" in text or "FileSealer" in text:
        return "seal worker (blobs._FileSink)"
    if "_worker (concurrent/futures/thread.py" in text:
        return "worker threads, other or idle"
    return "event loop"


def summarise(raw: Path, top: int) -> str:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    self_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("thread (")]
        kind = _thread_kind(frames)
        totals[kind] += int(count)
        names = [_short(f) for f in frames]
        if names:
            self_counts[kind][names[-1]] += int(count)
        for name in set(names):
            inclusive[kind][name] += int(count)
    out = []
    for kind, total in totals.most_common():
        out.append(f"\n== {kind}: {total} samples ==")
        out.append("  self:")
        out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in self_counts[kind].most_common(top)]
        out.append("  inclusive:")
        out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive[kind].most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


async def _workload(kind: str, box: object, data: Path, mib: int) -> None:
    if kind == "upload":
        target = upload.dropbox_target(box)  # type: ignore[arg-type]
        run = await upload.upload_once(target, upload.Case(f"1x{mib}MiB", 1, mib * MiB), data)
        print(f"upload: {run.mib_s:.0f} MiB/s end to end, {run.mib_s_body:.0f} MiB/s body, ok={run.ok} {run.error}")
    elif kind == "submissions":
        figures, _ = await load.submissions(box, clients=32, rounds=1)  # type: ignore[arg-type]
        print(f"submissions: {figures['per_second']:.1f}/s, latency {figures['latency']}")
    else:
        figures, receipts = await load.submissions(box, clients=4, rounds=1)  # type: ignore[arg-type]
        flood = await load.landing_under_login_flood(box, receipts, logins_in_flight=50, clients=100,  # type: ignore[arg-type]
                                                     requests=30)
        print(f"landing p99 quiet {flood['landing_quiet']['p99_ms']:.0f} ms, "  # type: ignore[index]
              f"under flood {flood['landing_under_flood']['p99_ms']:.0f} ms")  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=("upload", "submissions", "landing"))
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    out = REPO / "bench-results"
    data = ensure_data_file(out / "data" / f"random-{args.mib}MiB.bin", args.mib * MiB)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        setup = upload.cleaning_not_requested if args.workload == "upload" else None
        with dropbox_running(work / "dropbox", log=work / "dropbox.log", setup=setup) as box:
            raw = work / "py-spy.txt"
            spy = subprocess.Popen([_py_spy(), "record", "-p", str(box.server.pid), "-f", "raw", "-o", str(raw),  # noqa: S603
                                    "-r", str(args.rate), "--threads", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                asyncio.run(_workload(args.workload, box, data, args.mib))
            finally:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            print(summarise(raw, args.top))
            kept = out / f"py-spy-{args.workload}.txt"
            shutil.copy(raw, kept)
            print(f"\nraw stacks: {kept}")


if __name__ == "__main__":
    main()
