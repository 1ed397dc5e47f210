"""One shard through one step phase, in a worker process.

A task's outputs are written atomically and its ``done-*.json`` marker last, so a task is
either finished (marker present, outputs complete) or will be redone on the next run. The task
also enforces the accounting rule: every input row is either kept or rejected, exactly once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from corpus.schema import REJECT_SCHEMA, conform
from corpus.store import WORK_COMPRESSION, write_bytes, write_table
from pipelines.pii.scrub import DEFAULT_REJECTS_TEXT, apply_rejects_text
from pipelines.step import GlobalStep, Resources, ShardContext, Step

Phase = Literal["scan", "process"]


class AccountingError(RuntimeError):
    """A step lost or duplicated documents; this is a bug in the step, never tolerated."""


@dataclass(frozen=True)
class ShardTask:
    step: Step
    phase: Phase
    shard_index: int
    input_path: Path
    step_dir: Path
    schema: pa.Schema
    root: Path
    rejects_text: str = DEFAULT_REJECTS_TEXT  # applied to every reject row this task writes

    @property
    def resources(self) -> Resources:
        return self.step.resources


def part_path(directory: Path, index: int, prefix: str = "part") -> Path:
    return directory / f"{prefix}-{index:05d}.parquet"


def done_path(directory: Path, index: int, phase: Phase = "process") -> Path:
    name = "done" if phase == "process" else "scan-done"
    return directory / f"{name}-{index:05d}.json"


def scan_path(directory: Path, index: int, partition: int | None = None) -> Path:
    suffix = "" if partition is None else f"-p{partition:03d}"
    return directory / "scan" / f"part-{index:05d}{suffix}.parquet"


def reduce_done_path(directory: Path, partition: int) -> Path:
    return directory / f"reduce-{partition:03d}.done"


def text_bytes(df: pl.DataFrame) -> int:
    return int(df.get_column("text").str.len_bytes().sum() or 0) if df.height else 0


_READY: dict[str, Step] = {}


def _ready_step(step: Step, root: Path) -> Step:
    """Set a step up once per worker process and reuse it for every shard it processes."""
    key = json.dumps([step.name, step.params()], sort_keys=True, default=str)
    if key not in _READY:
        step.setup(root)
        _READY[key] = step
    return _READY[key]


def run_shard_task(task: ShardTask) -> dict[str, Any]:
    started = time.perf_counter()
    step = _ready_step(task.step, task.root)
    df = pl.read_parquet(task.input_path)
    ctx = ShardContext(task.shard_index, task.step_dir, task.root)
    if task.phase == "scan":
        assert isinstance(step, GlobalStep)
        keys = step.scan(df, ctx)
        parts = step.partitions()
        if parts == 1:
            write_table(keys.to_arrow(), scan_path(task.step_dir, task.shard_index))
        else:  # map-side shuffle: one file per reduce partition
            for p in range(parts):
                sub = keys.filter(pl.col("partition") == p).drop("partition")
                write_table(sub.to_arrow(), scan_path(task.step_dir, task.shard_index, p))
        stats = {"seconds": time.perf_counter() - started}
        write_bytes(json.dumps(stats).encode(), done_path(task.step_dir, task.shard_index, "scan"))
        return stats

    out = step.process(df, ctx)
    origin = f"step {step.name!r} on shard {task.input_path.name}"
    check_accounting(df, out.kept, out.rejected, origin)
    kept = conform(out.kept.to_arrow(), task.schema, origin=origin)
    rejected = conform(
        apply_rejects_text(out.rejected, task.rejects_text).to_arrow(), REJECT_SCHEMA, origin=origin + " (rejects)"
    )
    write_table(rejected, part_path(task.step_dir, task.shard_index, "rejects"), compression=WORK_COMPRESSION)
    write_table(kept, part_path(task.step_dir, task.shard_index), compression=WORK_COMPRESSION)
    drops = out.rejected.get_column("reason").value_counts(sort=True) if out.rejected.height else None
    stats = {
        "docs_in": df.height,
        "docs_out": out.kept.height,
        "bytes_in": text_bytes(df),
        "bytes_out": text_bytes(out.kept),
        "drops": {r: int(c) for r, c in drops.iter_rows()} if drops is not None else {},
        "seconds": time.perf_counter() - started,
    }
    write_bytes(json.dumps(stats).encode(), done_path(task.step_dir, task.shard_index))
    return stats


@dataclass(frozen=True)
class ReduceTask:
    """One reduce partition of a global step (the whole reduce when the step has one)."""

    step: GlobalStep
    partition: int
    scans: list[Path]
    step_dir: Path
    root: Path

    @property
    def resources(self) -> Resources:
        return self.step.resources


def run_reduce_task(task: ReduceTask) -> dict[str, Any]:
    started = time.perf_counter()
    if task.step.partitions() == 1:
        task.step.reduce(task.scans, task.step_dir, task.root)
    else:
        task.step.reduce_partition(task.scans, task.partition, task.step_dir, task.root)
    stats = {"seconds": time.perf_counter() - started}
    write_bytes(json.dumps(stats).encode(), reduce_done_path(task.step_dir, task.partition))
    return stats


@dataclass(frozen=True)
class MergeTask:
    """One task of a merge round after a partitioned reduce (e.g. one node group of connected
    components), run by the executor like every other task rather than on the driver."""

    step: GlobalStep
    step_dir: Path
    root: Path
    round_index: int
    phase: str
    part: int

    @property
    def resources(self) -> Resources:
        return self.step.resources


def merge_done_path(step_dir: Path, round_index: int, part: int) -> Path:
    return step_dir / "merge" / f"done-r{round_index:03d}-{part:03d}.json"


def merge_round_stats(step_dir: Path, round_index: int) -> list[dict[str, Any]]:
    """The stats of every finished task of a merge round (what a step's ``merge_plan`` reads)."""
    files = sorted((step_dir / "merge").glob(f"done-r{round_index:03d}-*.json"))
    return [json.loads(p.read_text()) for p in files]


def run_merge_task(task: MergeTask) -> dict[str, Any]:
    started = time.perf_counter()
    stats = task.step.merge_task(task.phase, task.part, task.round_index, task.step_dir, task.root)
    stats = {**stats, "phase": task.phase, "seconds": time.perf_counter() - started}
    write_bytes(json.dumps(stats).encode(), merge_done_path(task.step_dir, task.round_index, task.part))
    return stats


def check_accounting(before: pl.DataFrame, kept: pl.DataFrame, rejected: pl.DataFrame, origin: str) -> None:
    """Kept + rejected must be exactly the input documents: none lost, none duplicated."""
    if kept.height + rejected.height != before.height:
        raise AccountingError(
            f"{origin}: {before.height} documents in, {kept.height} kept + {rejected.height} rejected"
        )
    ids_in = before.get_column("doc_id").sort()
    ids_out = pl.concat([kept.get_column("doc_id"), rejected.get_column("doc_id")]).sort()
    if not ids_in.equals(ids_out):
        raise AccountingError(f"{origin}: the kept and rejected doc_ids are not the input doc_ids")
