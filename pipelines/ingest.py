"""Ingest as executor tasks: raw shards -> work shards with unique doc_ids, empty texts rejected.

doc_ids are content hashes (`corpus.schema.make_doc_id`), so identical records share one; the
n-th repeat (n >= 1, in raw-shard then row order) gets ``occurrence_id(doc_id, n)``. Finding the
repeats needs every id at once, which on one process is a set of all ids (~100 B per document).
Here it is a hash-partitioned reduce, like `exact_dedup`'s, and every phase is an executor task:

1. **ids** (one task per raw shard): read only the ``doc_id`` column and write ``(doc_id, shard,
   row)`` into one file per partition (``ids/``).
2. **repeats** (one task per partition): the ids seen more than once, ranked by (shard, row); the
   rows to rename go to ``renames/p<NNN>.parquet`` (few: exact repeats are rare).
3. **write** (one task per raw shard): read and conform the shard, apply its renames, reject empty
   texts, and write work shards ``part-<shard>-<NNNNN>.parquet`` of about ``work_shard_mb``
   (in memory) and ``rejects-<shard>.parquet``.

Every phase is a list of `pipelines.tasks.Task`s, so a killed ingest resumes task by task; the
outputs do not depend on the executor, the workers or the partition count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa

from corpus.schema import BASE_SCHEMA, conform, occurrence_id
from corpus.stage import StageDir
from corpus.store import read_table, write_table
from pipelines.pii.scrub import RejectsPolicy
from pipelines.step import reject
from pipelines.tasks import Phase, ShardOutput, Stats, Task, TaskContext

IDS_SCHEMA = {"doc_id": pl.String, "shard": pl.UInt32, "row": pl.UInt32}


def partitions_for(raw_shards: int) -> int:
    """Partitions of the repeats reduce: enough that each holds ~8 raw shards' ids, at most 64."""
    return max(1, min(64, -(-raw_shards // 8)))


def _ids_path(stage: StageDir, shard: int, partition: int) -> Path:
    return stage.scratch("ids") / f"{shard:05d}-p{partition:03d}.parquet"


def _renames_path(stage: StageDir, partition: int) -> Path:
    return stage.scratch("renames") / f"p{partition:03d}.parquet"


@dataclass(frozen=True)
class IngestIds(Task):
    """Raw shard ``index``'s ``(doc_id, shard, row)``, one file per repeats partition."""

    path: Path = field(kw_only=True)
    partitions: int = field(kw_only=True)
    phase: ClassVar[str] = "ids"

    def run(self, ctx: TaskContext) -> Stats:
        ids = conform(
            read_table(self.path, columns=["doc_id"]), pa.schema([BASE_SCHEMA.field("doc_id")]), origin=str(self.path)
        )
        frame = pl.DataFrame({"doc_id": ids.column("doc_id")}).with_columns(
            pl.lit(self.index, pl.UInt32).alias("shard"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("row")
        )
        partition = frame.get_column("doc_id").hash(seed=0) % self.partitions
        for p in range(self.partitions):
            write_table(frame.filter(partition == p).to_arrow(), _ids_path(self.stage, self.index, p))
        return {"rows": frame.height}


@dataclass(frozen=True)
class IngestRepeats(Task):
    """Partition ``index``: the ids seen more than once, ranked by (shard, row), to rename."""

    shards: int = field(kw_only=True)
    phase: ClassVar[str] = "repeats"

    def run(self, ctx: TaskContext) -> Stats:
        files = [_ids_path(self.stage, k, self.index) for k in range(self.shards)]
        ids = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame(schema=IDS_SCHEMA)
        renames = (
            ids.sort("shard", "row")
            .with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).over("doc_id").alias("occurrence"))
            .filter(pl.col("occurrence") > 0)
        )
        renames = renames.with_columns(
            pl.struct("doc_id", "occurrence")
            .map_elements(lambda r: occurrence_id(r["doc_id"], r["occurrence"]), return_dtype=pl.String)
            .alias("new_id")
        ).select("shard", "row", "new_id")
        write_table(renames.to_arrow(), _renames_path(self.stage, self.index))
        return {"renamed": renames.height}


@dataclass(frozen=True)
class IngestWrite(Task):
    """Raw shard ``index`` conformed, renamed, empty texts rejected: ``part-<index>-NNNNN`` files."""

    path: Path = field(kw_only=True)
    partitions: int = field(kw_only=True)
    work_shard_bytes: int = field(kw_only=True)
    rejects_text: RejectsPolicy = field(default=RejectsPolicy(), kw_only=True)
    phase: ClassVar[str] = "write"

    def run(self, ctx: TaskContext) -> ShardOutput:
        df = pl.from_arrow(conform(read_table(self.path), BASE_SCHEMA, origin=str(self.path)))
        assert isinstance(df, pl.DataFrame)
        renames = pl.concat(
            [
                pl.read_parquet(_renames_path(self.stage, p)).filter(pl.col("shard") == self.index)
                for p in range(self.partitions)
            ]
        )
        if renames.height:
            new_ids = (
                pl.DataFrame({"row": pl.int_range(df.height, dtype=pl.UInt32, eager=True)})
                .join(renames.select("row", "new_id"), on="row", how="left", maintain_order="left")
                .get_column("new_id")
            )
            df = df.with_columns(new_ids).with_columns(pl.coalesce("new_id", "doc_id").alias("doc_id")).drop("new_id")
        empty = pl.col("text").str.strip_chars().str.len_bytes() == 0
        rejected = reject(df.filter(empty), "ingest", "empty_text")
        return ShardOutput(
            df, df.filter(~empty), rejected, BASE_SCHEMA, str(self.path), self.rejects_text, self.work_shard_bytes
        )


def ingest_phases(
    stage: StageDir, raw: list[Path], root: Path, work_shard_bytes: int, rejects_text: RejectsPolicy
) -> Iterator[Phase]:
    parts = partitions_for(len(raw))
    yield Phase("ingest (ids)", [IngestIds(stage, k, root, path=p, partitions=parts) for k, p in enumerate(raw)])
    yield Phase(
        "ingest (repeats)", [IngestRepeats(stage, p, root, shards=len(raw)) for p in range(parts)], unit="partition"
    )
    yield Phase(
        "ingest (write)",
        [
            IngestWrite(
                stage, k, root, path=p, partitions=parts, work_shard_bytes=work_shard_bytes, rejects_text=rejects_text
            )
            for k, p in enumerate(raw)
        ],
    )


__all__ = ["IngestIds", "IngestRepeats", "IngestWrite", "ingest_phases", "partitions_for"]
