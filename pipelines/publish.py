"""Publish as executor tasks: the last stage's rows -> final shards per (bucket, split), and every
stage's rejects -> reject shards, written into staging directories the runner swaps in whole.

1. **split** (one task per work shard of the last stage): its rows grouped by ``(bucket, split)``
   (``all`` where a build has no such column), each group written to
   ``<publish stage>/split/bucket=<b>/split=<s>/part-<shard>.parquet`` in the final schema.
2. **write** (per ``(bucket, split)``, one task per group of consecutive files of about
   ``shard_mb``, so a large partition is written by many tasks; one per stage's rejects): stream
   the group's files in work-shard order into shards ``part-<group>-<n>.parquet`` under the
   staging directory, and return each file's rows, size and checksum, so the driver never
   re-reads a final shard.

The row order inside a partition is the work order, so the bytes do not depend on the executor
or the number of workers. Both are `pipelines.tasks.Task`s: a rerun skips finished split tasks;
the write tasks always run, because the staging directories are recreated by every publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.schema import REJECT_SCHEMA, conform
from corpus.stage import StageDir
from corpus.store import WORK_COMPRESSION, CorpusLayout, ShardWriter, file_checksum, write_table
from pipelines.tasks import Phase, Stats, Task, TaskContext

PARTITION_COLUMNS = ("bucket", "split")
MB = 1024 * 1024


def partition_dir(stage: StageDir, bucket: str, split: str) -> Path:
    return stage.scratch("split") / f"bucket={bucket}" / f"split={split}"


@dataclass(frozen=True)
class PublishSplit(Task):
    """Group work shard ``index``'s rows by (bucket, split)."""

    part: Path = field(kw_only=True)
    schema: pa.Schema = field(kw_only=True)  # the final shards' schema (no partition columns)
    phase: ClassVar[str] = "split"

    def run(self, ctx: TaskContext) -> Stats:
        df = pl.read_parquet(self.part)
        for col in PARTITION_COLUMNS:
            if col not in df.columns:
                df = df.with_columns(pl.lit("all").alias(col))
        df = df.with_columns(pl.col(c).cast(pl.String) for c in PARTITION_COLUMNS)
        groups = df.partition_by(list(PARTITION_COLUMNS), maintain_order=True, as_dict=True)
        for (bucket, split), sub in groups.items():
            rows = conform(sub.drop(PARTITION_COLUMNS).to_arrow(), self.schema, origin=str(self.part))
            target = partition_dir(self.stage, str(bucket), str(split)) / f"part-{self.index:05d}.parquet"
            write_table(rows, target, compression=WORK_COMPRESSION)
        return {"rows": df.height, "partitions": [list(map(str, key)) for key in groups]}


@dataclass(frozen=True)
class PublishWrite(Task):
    """Stream ``inputs`` (in order) into shards of ``target_bytes`` under ``directory``."""

    kind: str = field(kw_only=True)  # the catalog stage of what it writes: "final" or "rejects"
    inputs: tuple[Path, ...] = field(kw_only=True)
    directory: Path = field(kw_only=True)
    schema: pa.Schema = field(kw_only=True)
    target_bytes: int = field(kw_only=True)
    prefix: str = field(default="part", kw_only=True)
    phase: ClassVar[str] = "write"

    def run(self, ctx: TaskContext) -> Stats:
        """The shards written: stage, path, rows, bytes and checksum of each."""
        writer = ShardWriter(self.directory, self.schema, target_bytes=self.target_bytes, prefix=self.prefix)
        for path in self.inputs:
            for batch in pq.ParquetFile(path).iter_batches():
                writer.write(pa.Table.from_batches([batch]))
        writer.close()
        files = [
            {"stage": self.kind, "path": str(p), "rows": n, "bytes": p.stat().st_size, "checksum": file_checksum(p)}
            for p, n in zip(writer.paths, writer.rows, strict=True)
        ]
        return {"files": files}


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


@dataclass(frozen=True)
class Staging:
    """Where a publish writes before the swap: final shards and rejects, each swapped in whole."""

    shards: Path
    rejects: Path

    @classmethod
    def of(cls, layout: CorpusLayout) -> Staging:
        return cls(layout.root / ".shards.staging", layout.root / ".rejects.staging")


def publish_phases(
    stage: StageDir,
    parts: list[Path],
    rejects: list[tuple[str, list[Path]]],
    staging: Staging,
    layout: CorpusLayout,
    schema: pa.Schema,
    shard_bytes: int,
) -> Iterator[Phase]:
    """Split the last stage's ``parts``, then write every (bucket, split) partition and every
    stage's ``rejects`` (``(name, files)``, named ``NN-step``) into ``staging``."""
    yield Phase(
        "publish (split)", [PublishSplit(stage, k, layout.root, part=p, schema=schema) for k, p in enumerate(parts)]
    )
    keys = sorted({tuple(key) for s in stage.stats("split") for key in s["partitions"]})
    writes: list[dict[str, Any]] = [
        {
            "kind": "final",
            "inputs": group,
            "directory": layout.final_shard(bucket, split, 0, base=staging.shards).parent,
            "schema": schema,
            "prefix": f"part-{g:05d}",
        }
        for bucket, split in keys
        for g, group in enumerate(
            write_groups(sorted(partition_dir(stage, bucket, split).glob("part-*.parquet")), shard_bytes)
        )
    ]
    writes += [
        {"kind": "rejects", "inputs": tuple(files), "directory": staging.rejects / name, "schema": REJECT_SCHEMA}
        for name, files in rejects
    ]
    tasks = [PublishWrite(stage, i, layout.root, target_bytes=shard_bytes, **w) for i, w in enumerate(writes)]
    yield Phase("publish", tasks, unit="partition", rerun=True)


def written_files(stage: StageDir) -> list[dict[str, Any]]:
    """What the write tasks of the last publish wrote."""
    return [f for s in stage.stats("write") for f in s["files"]]


__all__ = [
    "PARTITION_COLUMNS",
    "PublishSplit",
    "PublishWrite",
    "Staging",
    "publish_phases",
    "write_groups",
    "written_files",
]
