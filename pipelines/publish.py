"""Publish as executor tasks: the last stage's rows -> final shards per (bucket, split), and every
stage's rejects -> reject shards, written into staging directories the runner swaps in whole.

1. **split** (one task per work shard of the last stage): its rows grouped by ``(bucket, split)``
   (``all`` where a build has no such column), each group written to
   ``<work dir>/split/bucket=<b>/split=<s>/part-<shard>.parquet`` in the final schema.
2. **write** (per ``(bucket, split)``, one task per group of consecutive files of about
   ``shard_mb``, so a large partition is written by many tasks; one per stage's rejects): stream
   the group's files in work-shard order into shards ``part-<group>-<n>.parquet`` under the
   staging directory, and return each file's rows, size and checksum, so the driver never
   re-reads a final shard.

The row order inside a partition is the work order, so the bytes do not depend on the executor
or the number of workers. Split tasks leave done-markers (a rerun skips them); the write tasks
always run, because the staging directories are recreated by every publish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.schema import conform
from corpus.store import WORK_COMPRESSION, ShardWriter, file_checksum, write_bytes, write_table

PARTITION_COLUMNS = ("bucket", "split")


@dataclass(frozen=True)
class SplitTask:
    """Group one work shard's rows by (bucket, split)."""

    index: int
    part: Path
    out: Path
    schema: pa.Schema  # the final shards' schema (no partition columns)


@dataclass(frozen=True)
class WriteTask:
    """Stream ``inputs`` (in order) into shards of ``target_bytes`` under ``directory``."""

    stage: str  # the catalog stage of what it writes: "final" or "rejects"
    inputs: tuple[Path, ...]
    directory: Path
    schema: pa.Schema
    target_bytes: int
    prefix: str = "part"


def split_done(out: Path, index: int) -> Path:
    return out / "done" / f"split-{index:05d}.json"


def partition_dir(out: Path, bucket: str, split: str) -> Path:
    return out / "split" / f"bucket={bucket}" / f"split={split}"


def run_split_task(task: SplitTask) -> dict[str, Any]:
    df = pl.read_parquet(task.part)
    for col in PARTITION_COLUMNS:
        if col not in df.columns:
            df = df.with_columns(pl.lit("all").alias(col))
    df = df.with_columns(pl.col(c).cast(pl.String) for c in PARTITION_COLUMNS)
    groups = df.partition_by(list(PARTITION_COLUMNS), maintain_order=True, as_dict=True)
    for (bucket, split), sub in groups.items():
        rows = conform(sub.drop(PARTITION_COLUMNS).to_arrow(), task.schema, origin=str(task.part))
        target = partition_dir(task.out, str(bucket), str(split)) / f"part-{task.index:05d}.parquet"
        write_table(rows, target, compression=WORK_COMPRESSION)
    stats = {"rows": df.height, "partitions": [list(map(str, key)) for key in groups]}
    write_bytes(json.dumps(stats).encode(), split_done(task.out, task.index))
    return stats


def write_groups(files: list[Path], target_bytes: int) -> list[tuple[Path, ...]]:
    """Consecutive ``files`` in groups of about ``target_bytes`` on disk: one write task each."""
    groups: list[tuple[Path, ...]] = []
    current: list[Path] = []
    size = 0
    for path in files:
        current.append(path)
        size += path.stat().st_size
        if size >= target_bytes:
            groups.append(tuple(current))
            current, size = [], 0
    if current:
        groups.append(tuple(current))
    return groups


def run_write_task(task: WriteTask) -> list[dict[str, Any]]:
    """The shards written: stage, path, rows, bytes and checksum of each."""
    writer = ShardWriter(task.directory, task.schema, target_bytes=task.target_bytes, prefix=task.prefix)
    for path in task.inputs:
        for batch in pq.ParquetFile(path).iter_batches():
            writer.write(pa.Table.from_batches([batch]))
    writer.close()
    return [
        {"stage": task.stage, "path": str(p), "rows": n, "bytes": p.stat().st_size, "checksum": file_checksum(p)}
        for p, n in zip(writer.paths, writer.rows, strict=True)
    ]


__all__ = [
    "PARTITION_COLUMNS",
    "SplitTask",
    "WriteTask",
    "partition_dir",
    "run_split_task",
    "run_write_task",
    "split_done",
    "write_groups",
]
