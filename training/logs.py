"""A run's metrics on disk: ``metrics.jsonl`` (what `training.report` reads) and TensorBoard.

Only the main process writes. A resumed run first drops the rows logged after its checkpoint's
step (a killed run logged them, and they are logged again), and a fresh run in an old output
directory starts the file over, so the file always describes one run without repeated steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corpus.store import write_bytes

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``log(row, scalars)``: one JSON line in ``metrics.jsonl`` and each scalar in TensorBoard."""

    def __init__(self, out_dir: Path, main: bool, from_step: int) -> None:
        self.path = out_dir / METRICS_FILE
        self._file = None
        self._writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            truncate_metrics(self.path, from_step)
            self._file = open(self.path, "a", encoding="utf-8")
            self._writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, row: dict[str, Any], scalars: dict[str, float]) -> None:
        if self._file is None or self._writer is None:
            return
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, row["step"])

    def close(self) -> None:
        if self._file is not None and self._writer is not None:
            self._file.close()
            self._writer.close()
        self._file = self._writer = None


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the rows of steps <= ``step``: a killed run's rows after its last checkpoint, or an old
    run's rows when a fresh one starts at 0."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_bytes("".join(line + "\n" for line in keep).encode(), path)
