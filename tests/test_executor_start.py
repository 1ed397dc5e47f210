"""`LocalExecutor.start`: every worker is started (and has imported the warm-up's module) before
the first task is submitted, and the pool still runs tasks as before."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipelines.executor import LocalExecutor


def _record_pid(directory: str) -> None:
    Path(directory, str(os.getpid())).touch()


def _square(x: int) -> int:
    return x * x


def test_start_spawns_every_worker_before_any_task(tmp_path: Path) -> None:
    from functools import partial

    ex = LocalExecutor(2)
    try:
        ex.start(partial(_record_pid, str(tmp_path)))
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = {int(p.name) for p in tmp_path.iterdir()}
        assert len(pids) == 2 and os.getpid() not in pids  # two distinct worker processes ran it
        assert sorted(ex.map_unordered(_square, range(6))) == [0, 1, 4, 9, 16, 25]
    finally:
        ex.close()


def test_start_with_one_worker_starts_nothing(tmp_path: Path) -> None:
    from functools import partial

    ex = LocalExecutor(1)
    try:
        ex.start(partial(_record_pid, str(tmp_path)))
        assert ex._pool is None and not list(tmp_path.iterdir())  # one worker runs tasks inline
        assert list(ex.map_unordered(_square, [3])) == [9]
    finally:
        ex.close()
