"""What the benchmarks measure with: a process-tree RSS sampler, percentiles, the machine, test data.

Nothing here talks HTTP or knows the drop box, so the smoke test can exercise it on tiny sizes.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dropbox.config import MiB

#: Sampling period of the RSS sampler; the issue asks for ~50 ms.
RSS_INTERVAL_S = 0.05


# --- latency statistics ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; nan if empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p99/max in milliseconds, and how many samples they come from."""
    return {
        "n": len(seconds),
        "p50_ms": percentile(seconds, 50) * 1000,
        "p99_ms": percentile(seconds, 99) * 1000,
        "max_ms": max(seconds, default=math.nan) * 1000,
    }


def median(values: Iterable[float]) -> float:
    return percentile(list(values), 50)


# --- resident memory of a process tree -------------------------------------------------------


def _status_kib(pid: int, key: str) -> int | None:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return 0  # a zombie has no Vm* lines


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (via /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 1000:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    todo.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree_rss_kib(pid: int) -> int | None:
    """Summed VmRSS of `pid` and its descendants; None once `pid` itself is gone."""
    total = 0
    for index, member in enumerate(descendants(pid)):
        rss = _status_kib(member, "VmRSS")
        if rss is None and index == 0:
            return None
        total += rss or 0
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its living descendants, from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in descendants(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (the benchmark's client side), all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib(pid: int) -> int | None:
    """The kernel's own high-water mark (VmHWM) of one process since it started."""
    return _status_kib(pid, "VmHWM")


@dataclass
class RssSampler:
    """Samples a process tree's RSS every `interval` seconds in a thread, with timestamps.

    Use as a context manager around what is measured; `peak_mib(since, until)` picks a window
    by `time.perf_counter()` timestamps so one run can tell the body transfer from what follows.
    """

    pid: int
    interval: float = RSS_INTERVAL_S
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread = threading.Thread(target=self._run, name=f"rss-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def _sample(self) -> bool:
        rss = tree_rss_kib(self.pid)
        if rss is None:
            return False
        self.samples.append((time.perf_counter(), rss))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._sample():
                return

    def peak_mib(self, since: float = -math.inf, until: float = math.inf) -> float:
        window = [kib for t, kib in self.samples if since <= t <= until]
        return max(window, default=0) / 1024

    def first_mib(self) -> float:
        return self.samples[0][1] / 1024 if self.samples else math.nan


# --- the machine -----------------------------------------------------------------------------


def _first_line(path: str, prefix: str) -> str:
    try:
        with open(path, encoding="utf-8") as source:
            for line in source:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, object]:
    """What the figures depend on: cores, memory, CPU, Python, the load when asked."""
    mem_kib = _first_line("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_mib": int(mem_kib) // 1024 if mem_kib.isdigit() else None,
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
    }


def _stat_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores busy over `seconds`, to say how quiet the machine was."""
    busy0, total0 = _stat_jiffies()
    time.sleep(seconds)
    busy1, total1 = _stat_jiffies()
    return (busy1 - busy0) / max(1, total1 - total0)


def _own_cpu_seconds() -> float:
    """CPU time of this process and of its children that have been waited for (the servers, once stopped)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class CpuAccount:
    """How much of the machine a stretch of benchmark used, and how much everybody else used.

    Call `done()` after every server started inside the stretch was stopped, so their CPU time
    has been collected; what remains of the machine's busy time was other people's work.
    """

    started: float = field(default_factory=time.perf_counter)
    _stat: tuple[int, int] = field(default_factory=_stat_jiffies)
    _own: float = field(default_factory=_own_cpu_seconds)

    def done(self) -> dict[str, float]:
        busy, total = _stat_jiffies()
        ticks = os.sysconf("SC_CLK_TCK")
        cores = len(os.sched_getaffinity(0))
        wall = time.perf_counter() - self.started
        machine_busy = (busy - self._stat[0]) / ticks
        own = _own_cpu_seconds() - self._own
        others = max(0.0, machine_busy - own)
        return {"wall_s": wall, "bench_cpu_s": own, "others_cpu_s": others,
                "others_share": others / (wall * cores) if wall else 0.0,
                "machine_busy_share": (busy - self._stat[0]) / max(1, total - self._stat[1])}


# --- test data -------------------------------------------------------------------------------


def ensure_data_file(path: Path, size: int) -> Path:
    """A file of `size` random bytes (incompressible, like a real archive), made once and reused."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        remaining = size
        while remaining > 0:
            step = min(remaining, 4 * MiB)
            out.write(os.urandom(step))
            remaining -= step
    os.replace(partial, path)
    return path


def mib_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds if seconds > 0 else math.nan
