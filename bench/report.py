"""The targets of issue 6 checked against a run's figures, and the table printed at the end."""

from __future__ import annotations

import math
from typing import Any

from bench.cleaning import rows as cleaning_rows
from bench.measure import percentile

#: (key, what, limit, direction): a figure must be >= ("min") or <= ("max") its limit.
TARGETS = (
    ("upload_vs_raw", "sealed upload / raw aiohttp + fsync", 0.8, "min"),
    ("upload_vs_onionshare", "sealed upload / OnionShare", 1.0, "min"),
    ("peak_rss_1gib_mib", "server peak RSS, 1 GiB upload (MiB)", 80.0, "max"),
    ("landing_p99_flood_ms", "landing p99 under login flood (ms)", 100.0, "max"),
    ("list_first_page_p50_ms", "caseworker list first page p50 (ms)", 200.0, "max"),
    ("flood_submission_p99_ms", "submission p99 under receipt flood (ms)", 10_000.0, "max"),
    ("flood_caseworker_login_p99_ms", "caseworker login p99 under receipt flood (ms)", 10_000.0, "max"),
)

SEALED, RAW, ALONE = "drop box (sealed)", "raw aiohttp + fsync", "secretstream alone"


def _get(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _onionshare_key(case: dict[str, Any]) -> str | None:
    return next((k for k in case if k.startswith("OnionShare")), None)


def _ratio(case: dict[str, Any], other: str | None) -> float | None:
    """Median over rounds of (drop box / other) throughput; a round's two uploads ran back to back,
    so a neighbour's burst of load hurts both sides of one ratio alike."""
    if other is None or not _get(case, SEALED, "ok") or not _get(case, other, "ok"):
        return None
    mine, theirs = _get(case, SEALED, "runs") or [], _get(case, other, "runs") or []
    ratios = [a["mib_s"] / b["mib_s"] for a, b in zip(mine, theirs, strict=False)
              if a["ok"] and b["ok"] and b["mib_s"]]
    return percentile(ratios, 50) if ratios else None


def _big_case(upload: dict[str, Any]) -> str | None:
    return next((name for name in upload if name.startswith("1x")), None)


def figures_for_targets(results: dict[str, Any]) -> dict[str, list[tuple[str, float | None]]]:
    """Each target's figures, labelled (a ratio target gets one figure per upload case)."""
    upload = results.get("upload") or {}
    figures: dict[str, list[tuple[str, float | None]]] = {key: [] for key, *_ in TARGETS}
    for name, case in upload.items():
        figures["upload_vs_raw"].append((name, _ratio(case, RAW)))
        figures["upload_vs_onionshare"].append((name, _ratio(case, _onionshare_key(case))))
    big = _big_case(upload)
    if big:
        figures["peak_rss_1gib_mib"].append(("whole request", _get(upload, big, SEALED, "peak_rss_mib")))
        figures["peak_rss_1gib_mib"].append(("body transfer", _get(upload, big, SEALED, "peak_rss_stream_mib")))
    figures["landing_p99_flood_ms"].append(
        ("", _get(results, "logins", "landing_under_flood", "p99_ms")))
    figures["list_first_page_p50_ms"].append(("", _get(results, "list", "first_page", "p50_ms")))
    figures["flood_submission_p99_ms"].append(("", _get(results, "flood", "submissions", "p99_ms")))
    figures["flood_caseworker_login_p99_ms"].append(("", _get(results, "flood", "caseworker_logins", "p99_ms")))
    return figures


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    figures = figures_for_targets(results)
    for key, what, limit, direction in TARGETS:
        for label, value in figures[key]:
            measured = value is not None and math.isfinite(value)
            met = measured and (value >= limit if direction == "min" else value <= limit)  # type: ignore[operator]
            rows.append({"target": key, "what": what, "case": label, "limit": limit, "direction": direction,
                         "value": value if measured else None, "met": met if measured else None})
    return rows


# --- the table -------------------------------------------------------------------------------


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def _upload_rows(upload: dict[str, Any]) -> list[str]:
    lines = []
    for name, case in upload.items():
        lines.append(f"Upload {name}")
        for server, figures in case.items():
            if server == ALONE:
                lines.append(f"  {'libsodium secretstream push':30s} {_num(figures['libsodium_push_mib_s']):>7} MiB/s"
                             "   (seal only, one core)")
                sealer = _num(figures["filesealer_push_mib_s"])
                lines.append(f"  {'FileSealer.push (sealing.py)':30s} {sealer:>7} MiB/s")
                continue
            if not figures.get("ok"):
                lines.append(f"  {server:30s}  failed: {'; '.join(figures.get('errors', []))}")
                continue
            size = f"  ({figures['bytes'] / 2**20:.0f} MiB)" if figures["bytes"] != _sent(case) else ""
            lines.append(
                f"  {server:30s} {_num(figures['mib_s']):>7} MiB/s   body {_num(figures['mib_s_body']):>5} MiB/s"
                f"   RSS {_num(figures['rss_before_mib'])} -> {_num(figures['peak_rss_stream_mib'])} (body)"
                f" / {_num(figures['peak_rss_mib'])} MiB (request)"
                f"   CPU s/GiB server {_num(figures.get('server_cpu_s_per_gib'), '{:.1f}')}"
                f" client {_num(figures.get('client_cpu_s_per_gib'), '{:.1f}')}{size}")
    return lines


def _sent(case: dict[str, Any]) -> int:
    return int(_get(case, SEALED, "bytes") or _get(case, RAW, "bytes") or 0)


def _latency(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "-"
    failures = figures.get("failures") or {}
    failed = f", failures {failures}" if failures else ""
    return (f"p50 {_num(figures.get('p50_ms'))} ms, p99 {_num(figures.get('p99_ms'))} ms"
            f" (n={figures.get('n')}{failed})")


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    results = report["results"]
    lines = [
        f"Machine: {m['nproc']} cores, {m['memory_mib']} MiB, {m['cpu_model']}, Python {m['python']}",
        f"CPU busy before/after: {100 * report['cpu_busy_before']:.0f}% / "
        f"{100 * report.get('cpu_busy_after', math.nan):.0f}%"
        f"{'   (quick run: sizes too small for real figures)' if report.get('quick') else ''}",
    ]
    for part, cpu in (report.get("cpu") or {}).items():
        lines.append(f"  during {part}: {cpu['wall_s']:.0f} s, other people's processes used "
                     f"{100 * cpu['others_share']:.0f}% of the machine")
    lines.append("")
    lines += _upload_rows(results.get("upload") or {})
    subs = results.get("submissions")
    if subs:
        lines.append(f"Submissions: {subs['clients']} whistleblowers x {subs['per_client']}, 2 KiB each: "
                     f"{subs['per_second']:.1f}/s, {_latency(subs['latency'])}")
    logins = results.get("logins")
    if logins and "one_at_a_time" in logins:
        lines.append(f"Receipt login, one at a time: {_latency(logins['one_at_a_time'])}")
        quiet = logins["landing_quiet"]
        lines.append(f"Landing GET, {logins['clients']} clients, quiet:       {_latency(quiet)}; server CPU "
                     f"{_num(quiet.get('server_cpu_ms_per_request'), '{:.2f}')} ms/request")
        lines.append(f"Landing GET, {logins['clients']} clients, {logins['logins_in_flight']} logins in flight: "
                     f"{_latency(logins['landing_under_flood'])}")
        lines.append(f"Receipt logins during the flood: {_latency(logins['logins_during_flood'])}")
    elif logins:
        lines.append(f"Receipt logins: {logins.get('error')}")
    listed = results.get("list")
    if listed:
        if listed.get("ok"):
            lines.append(f"Caseworker list, {listed['seeded']['reports']} reports: first page "
                         f"{_latency(listed['first_page'])}; status=new {_latency(listed['filtered_page'])}")
        else:
            lines.append(f"Caseworker list: {listed.get('error')}")
    flooded = results.get("flood")
    if flooded:
        if flooded.get("ok"):
            lines.append(f"During a flood of {flooded['loops']} receipt-guessing loops "
                         f"(attackers got {flooded['attacker_outcomes']}):")
            lines.append(f"  submissions:        {_latency(flooded['submissions'])}")
            lines.append(f"  caseworker logins:  {_latency(flooded['caseworker_logins'])}")
        else:
            lines.append(f"Flood: {flooded.get('error')}")
    lines += cleaning_rows(results.get("cleaning") or {})
    lines += ["", "Targets:"]
    for row in report.get("targets", []):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        sign = ">=" if row["direction"] == "min" else "<="
        case = f" [{row['case']}]" if row["case"] else ""
        value = _num(row["value"], "{:.2f}")
        lines.append(f"  {row['what'] + case:58s} {value:>8} {sign} {row['limit']:<6g} {verdict}")
    return "\n".join(lines)
