"""A task's CPU seconds and peak RSS are its own, not its worker's earlier tasks'."""

from __future__ import annotations

import time

import numpy as np

from pipelines.usage import measure


def test_peak_rss_is_per_task_and_cpu_counts_the_work():
    with measure() as big:
        block = np.ones(40_000_000)  # 320 MB, touched
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            block[:1000] += 1
    del block
    with measure() as small:
        np.ones(1000).sum()
    assert big.peak_rss_mb > small.peak_rss_mb + 250
    assert big.cpu_seconds >= 0.2 and small.cpu_seconds < 0.2
