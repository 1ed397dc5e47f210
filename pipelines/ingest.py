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

Every task writes its outputs atomically and a done-marker last, so a killed ingest resumes
task by task; the outputs do not depend on the executor, the workers or the partition count.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from corpus.schema import BASE_SCHEMA, REJECT_SCHEMA, conform, occurrence_id
from corpus.store import WORK_COMPRESSION, ShardWriter, read_table, write_bytes, write_table
from pipelines.step import reject
from pipelines.tasks import text_bytes

IDS_SCHEMA = {"doc_id": pl.String, "shard": pl.UInt32, "row": pl.UInt32}


@dataclass(frozen=True)
class IngestTask:
    """One task of one ingest phase: ``index`` is a raw shard (ids, write) or a partition (repeats)."""

    phase: str  # "ids" | "repeats" | "write"
    index: int
    out: Path
    partitions: int
    shards: int  # raw shards in the ingest
    path: Path | None  # the raw shard (ids, write)
    work_shard_bytes: int


def done_marker(out: Path, phase: str, index: int) -> Path:
    return out / "done" / f"{phase}-{index:05d}.json"


def partitions_for(raw_shards: int) -> int:
    """Partitions of the repeats reduce: enough that each holds ~8 raw shards' ids, at most 64."""
    return max(1, min(64, -(-raw_shards // 8)))


def _ids_path(out: Path, shard: int, partition: int) -> Path:
    return out / "ids" / f"{shard:05d}-p{partition:03d}.parquet"


def _renames_path(out: Path, partition: int) -> Path:
    return out / "renames" / f"p{partition:03d}.parquet"


def run_ingest_task(task: IngestTask) -> dict[str, Any]:
    started = time.perf_counter()
    stats = {"ids": _ids, "repeats": _repeats, "write": _write}[task.phase](task)
    stats["seconds"] = time.perf_counter() - started
    write_bytes(json.dumps(stats).encode(), done_marker(task.out, task.phase, task.index))
    return stats


def _ids(task: IngestTask) -> dict[str, Any]:
    path = task.path
    assert path is not None
    ids = conform(read_table(path, columns=["doc_id"]), pa.schema([BASE_SCHEMA.field("doc_id")]), origin=str(path))
    frame = pl.DataFrame({"doc_id": ids.column("doc_id")}).with_columns(
        pl.lit(task.index, pl.UInt32).alias("shard"), pl.int_range(pl.len(), dtype=pl.UInt32).alias("row")
    )
    partition = frame.get_column("doc_id").hash(seed=0) % task.partitions
    for p in range(task.partitions):
        write_table(frame.filter(partition == p).to_arrow(), _ids_path(task.out, task.index, p))
    return {"rows": frame.height}


def _repeats(task: IngestTask) -> dict[str, Any]:
    files = [_ids_path(task.out, k, task.index) for k in range(task.shards)]
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
    write_table(renames.to_arrow(), _renames_path(task.out, task.index))
    return {"renamed": renames.height}


def _write(task: IngestTask) -> dict[str, Any]:
    path = task.path
    assert path is not None
    df = pl.from_arrow(conform(read_table(path), BASE_SCHEMA, origin=str(path)))
    assert isinstance(df, pl.DataFrame)
    renames = pl.concat(
        [
            pl.read_parquet(_renames_path(task.out, p)).filter(pl.col("shard") == task.index)
            for p in range(task.partitions)
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
    kept, dropped = df.filter(~empty), df.filter(empty)
    writer = ShardWriter(
        task.out,
        BASE_SCHEMA,
        target_bytes=task.work_shard_bytes,
        compression=WORK_COMPRESSION,
        size_basis="memory",
        prefix=f"part-{task.index:05d}",
    )
    writer.write(kept.to_arrow())
    writer.close()
    if dropped.height:
        rejects = conform(reject(dropped, "ingest", "empty_text").to_arrow(), REJECT_SCHEMA, origin=str(path))
        write_table(rejects, task.out / f"rejects-{task.index:05d}.parquet", compression=WORK_COMPRESSION)
    return {
        "docs_in": df.height,
        "docs_out": kept.height,
        "bytes_in": text_bytes(df),
        "bytes_out": text_bytes(kept),
        "drops": {"empty_text": dropped.height} if dropped.height else {},
    }


__all__ = ["IngestTask", "done_marker", "partitions_for", "run_ingest_task"]
