"""Run every benchmark in one go, print a table and write bench-results/bench-<time>.json.

    .venv/bin/python -m bench                 # the full run (~10 min on 2 cores)
    .venv/bin/python -m bench --quick         # small sizes, to check the harness works
    .venv/bin/python -m bench --parts upload  # one part: upload, submissions, logins, list, flood, cleaning

Each part starts its own fresh install (`run.py init`, production Argon2id cost; one caseworker)
served by `run.py serve --no-tor` on free loopback ports. The JSON holds every run, the machine,
and how busy it was before and after; docs/BENCHMARKS.md explains the figures and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import cleaning, flood, listing, load, upload
from bench.measure import CpuAccount, cpu_busy_fraction, ensure_data_file, machine
from bench.report import evaluate, table
from bench.servers import REPO, dropbox_running, install_dropbox
from dropbox.config import Config, MiB

PARTS = ("upload", "submissions", "logins", "list", "flood", "cleaning")
QUIET_BUSY_SHARE = 0.25
log = logging.getLogger("bench")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (a harness check, not figures)")
    parser.add_argument("--repeat", type=int, help="uploads per server and case (default 3; quick 1)")
    parser.add_argument("--big-mib", type=int, help="size of the single-file upload (default 1024)")
    parser.add_argument("--reports", type=int, help="reports seeded for the list (default 10000)")
    parser.add_argument("--no-onionshare", dest="onionshare", action="store_false",
                        help="skip OnionShare (no install from PyPI)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="results folder (git-ignored)")
    parser.add_argument("--keep", action="store_true", help="keep the installs and uploads of this run")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each part, wait up to this long for the machine to be under 25%% busy")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if "logins" in args.parts and "submissions" not in args.parts:
        args.parts.insert(args.parts.index("logins"), "submissions")  # logins need receipts
    quick = args.quick
    args.repeat = args.repeat or (1 if quick else 3)
    args.big_mib = args.big_mib or (64 if quick else 1024)
    args.reports = args.reports if args.reports is not None else (300 if quick else 10_000)
    args.small_files = 10 if quick else 100
    args.clients, args.rounds = (8, 1) if quick else (32, 2)
    args.logins, args.flood, args.landing_clients, args.landing_requests = \
        (3, 6, 20, 5) if quick else (10, 50, 100, 30)
    args.list_repeat = 5 if quick else 30
    args.flood_loops, args.flood_rounds = (20, 3) if quick else (100, 10)
    args.clean_mib = 1 if quick else 4
    return args


@contextlib.contextmanager
def _workdir(out: Path, stamp: str, keep: bool) -> Iterator[Path]:
    workdir = out / f"run-{stamp}"
    workdir.mkdir(parents=True)
    try:
        yield workdir
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_quiet(limit_s: float) -> float:
    """Wait (bounded) until other work leaves the machine mostly idle; returns the last busy share."""
    deadline = time.monotonic() + limit_s
    busy = cpu_busy_fraction(3.0)
    while busy > QUIET_BUSY_SHARE and time.monotonic() < deadline:
        log.info("machine %.0f%% busy; waiting for it to quieten", 100 * busy)
        time.sleep(10)
        busy = cpu_busy_fraction(3.0)
    return busy


def _part_upload(args: argparse.Namespace, workdir: Path, data: Path) -> dict[str, Any]:
    cases = [upload.Case(f"1x{args.big_mib}MiB", 1, args.big_mib * MiB),
             upload.Case(f"{args.small_files}x1MiB", args.small_files, MiB)]
    return upload.run(workdir / "upload", data, cases=cases, repeat=args.repeat, with_onionshare=args.onionshare,
                      onionshare_venv=args.out / "onionshare-venv")


def _part_load(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with dropbox_running(workdir / "load" / "dropbox", log=workdir / "logs" / "dropbox-load.log") as box:
        async def go() -> None:
            figures, receipts = await load.submissions(box, clients=args.clients, rounds=args.rounds)
            results["submissions"] = figures
            log.info("submissions: %.1f/s", figures["per_second"])
            if "logins" not in args.parts:
                return
            if not receipts:
                results["logins"] = {"ok": False, "error": "no receipts from the submissions part"}
                return
            results["logins"] = {
                "one_at_a_time": await load.logins_one_at_a_time(box, receipts, count=args.logins),
                **await load.landing_under_login_flood(box, receipts, logins_in_flight=args.flood,
                                                       clients=args.landing_clients,
                                                       requests=args.landing_requests),
            }
        asyncio.run(go())
    return results


def _part_list(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "list" / "dropbox"
    logfile = workdir / "logs" / "dropbox-list.log"
    install_dropbox(data_dir, log=logfile)
    seeded = listing.seed_blocking(Config(data_dir=data_dir), reports=args.reports, caseworker="alice")
    log.info("seeded %d reports in %.0f s", args.reports, seeded["seconds"])
    with dropbox_running(data_dir, log=logfile, install=False) as box:
        pages = asyncio.run(listing.list_pages(box, repeat=args.list_repeat))
    return {"seeded": seeded, **pages}


def _part_flood(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    with dropbox_running(workdir / "flood" / "dropbox", log=workdir / "logs" / "dropbox-flood.log") as box:
        return asyncio.run(flood.during_flood(box, loops=args.flood_loops, rounds=args.flood_rounds))


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"started": stamp, "quick": args.quick, "machine": machine(),
                              "cpu_busy_before": cpu_busy_fraction(2.0), "cpu": {}, "busy_at_start": {}, "results": {}}
    log.info("machine: %s", report["machine"])
    log.info("CPU busy before: %.0f%%", 100 * report["cpu_busy_before"])
    results = report["results"]
    with _workdir(args.out, stamp, args.keep) as workdir:
        if "upload" in args.parts:
            data = ensure_data_file(args.out / "data" / f"random-{args.big_mib}MiB.bin",
                                    max(args.big_mib, args.small_files) * MiB)
            report["busy_at_start"]["upload"] = _wait_quiet(args.wait_quiet)
            cpu = CpuAccount()
            results["upload"] = _part_upload(args, workdir, data)
            report["cpu"]["upload"] = cpu.done()
        if "submissions" in args.parts:
            report["busy_at_start"]["submissions+logins"] = _wait_quiet(args.wait_quiet)
            cpu = CpuAccount()
            results.update(_part_load(args, workdir))
            report["cpu"]["submissions+logins"] = cpu.done()
        if "list" in args.parts:
            report["busy_at_start"]["list"] = _wait_quiet(args.wait_quiet)
            cpu = CpuAccount()
            results["list"] = _part_list(args, workdir)
            report["cpu"]["list"] = cpu.done()
        if "flood" in args.parts:
            report["busy_at_start"]["flood"] = _wait_quiet(args.wait_quiet)
            cpu = CpuAccount()
            results["flood"] = _part_flood(args, workdir)
            report["cpu"]["flood"] = cpu.done()
        if "cleaning" in args.parts:
            report["busy_at_start"]["cleaning"] = _wait_quiet(args.wait_quiet)
            cpu = CpuAccount()
            results["cleaning"] = cleaning.run(workdir / "cleaning", repeat=args.repeat, size_mib=args.clean_mib)
            report["cpu"]["cleaning"] = cpu.done()
    report["cpu_busy_after"] = cpu_busy_fraction(2.0)
    report["machine"]["loadavg_after"] = machine()["loadavg"]
    report["targets"] = evaluate(results)
    out = args.out / f"bench-{stamp}.json"
    out.write_text(json.dumps(_finite(report), indent=2, default=str, allow_nan=False) + "\n")
    (args.out / "latest.json").write_text(out.read_text())
    print(table(report))
    print(f"\nJSON: {out}")
    return 0


def _finite(value: Any) -> Any:
    """NaN (a figure that could not be measured) becomes null, so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
