"""CPU seconds and peak RSS of one task, measured in the process that runs it.

CPU is `time.process_time` (every thread of the process: Polars' and BLAS' pools count). A
pool worker's first task also carries the worker's own start-up (interpreter, imports, the
task's unpickling), so a build's CPU seconds include what each extra process costs. Peak RSS
is the process's high-water mark over the task: Linux lets a process reset it
(``/proc/self/clear_refs``), so a task's peak is its own, not an earlier task's in the same
worker; elsewhere it is the process's lifetime peak (``ru_maxrss``), an upper bound.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_fresh_worker = False  # the next task is the first of a pool worker: count from process start


def mark_worker_start() -> None:
    """Called by a pool worker's initializer: its start-up is charged to its first task."""
    global _fresh_worker
    _fresh_worker = True


@dataclass
class Usage:
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _lifetime_peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def measure() -> Iterator[Usage]:
    """Usage of the enclosed block, filled in when it exits."""
    global _fresh_worker
    start = 0.0 if _fresh_worker else time.process_time()
    _fresh_worker = False
    reset = _reset_peak()
    usage = Usage()
    try:
        yield usage
    finally:
        usage.cpu_seconds = time.process_time() - start
        hwm = _status_mb("VmHWM") if reset else None
        usage.peak_rss_mb = hwm if hwm is not None else _lifetime_peak_mb()


__all__ = ["Usage", "mark_worker_start", "measure"]
