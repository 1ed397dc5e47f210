"""`exact_dedup`: one copy of each text across *all* shards; the first in stable order wins.

Scan writes (doc_id, 128-bit hash of the case- and whitespace-folded text) per shard; reduce
groups the hashes of every shard in shard/row order and names each later copy's keeper;
process drops those rows into `rejects` with ``dup_of``. Only hashes cross shards, never texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import polars as pl
import xxhash

from pipelines.step import GlobalStep, ShardContext, StepOutput, reject

DECISIONS = "decisions-*.parquet"


def text_key(texts: pl.Series) -> pl.Series:
    """128-bit content hash of the folded text (lower case, whitespace runs collapsed)."""
    folded = texts.str.to_lowercase().str.replace_all(r"\s{2,}|[^\S ]", " ").str.strip_chars().cast(pl.Binary)
    return pl.Series([xxhash.xxh3_128_digest(t) for t in folded], dtype=pl.Binary)


@lru_cache(maxsize=4)
def _read_decisions(step_dir: Path, stamp: tuple[tuple[str, int], ...]) -> pl.DataFrame:
    return pl.read_parquet(sorted(step_dir.glob(DECISIONS)))


def _decisions(step_dir: Path) -> pl.DataFrame:
    """Decisions are read once per worker process, not once per shard."""
    files = sorted(step_dir.glob(DECISIONS))
    return _read_decisions(step_dir, tuple((f.name, f.stat().st_mtime_ns) for f in files))


@dataclass
class ExactDedup(GlobalStep):
    """``reduce_partitions`` spreads the reduce over that many tasks by hash prefix; the output
    does not depend on it."""

    name: ClassVar[str] = "exact_dedup"
    reduce_partitions: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.reduce_partitions <= 256:
            raise ValueError(f"reduce_partitions must be in 1..256, got {self.reduce_partitions}")

    def partitions(self) -> int:
        return self.reduce_partitions

    def scan(self, df: pl.DataFrame, ctx: ShardContext) -> pl.DataFrame:
        keys = text_key(df.get_column("text"))
        return pl.DataFrame({"doc_id": df.get_column("doc_id"), "key": keys}).with_columns(
            (pl.col("key").bin.slice(0, 1).bin.encode("hex").str.to_integer(base=16) % self.reduce_partitions)
            .cast(pl.Int32)
            .alias("partition")
        )

    def reduce(self, scans: list[Path], step_dir: Path, root: Path) -> None:
        self.reduce_partition(scans, 0, step_dir, root)

    def reduce_partition(self, scans: list[Path], partition: int, step_dir: Path, root: Path) -> None:
        """Within one hash partition, the first doc (shard order, then row order) keeps each key."""
        schema = {"doc_id": pl.String, "key": pl.Binary}
        keys = (
            pl.concat([pl.read_parquet(p, columns=["doc_id", "key"]) for p in scans])
            if scans
            else pl.DataFrame(schema=schema)
        )
        keepers = keys.group_by("key", maintain_order=True).agg(pl.col("doc_id").first().alias("dup_of"))
        dups = (
            keys.join(keepers, on="key", how="inner", maintain_order="left")
            .filter(pl.col("doc_id") != pl.col("dup_of"))
            .select("doc_id", "dup_of")
        )
        dups.write_parquet(step_dir / f"decisions-{partition:03d}.parquet")

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        dups = _decisions(ctx.step_dir)
        marked = df.join(dups, on="doc_id", how="left", maintain_order="left")
        is_dup = pl.col("dup_of").is_not_null()
        removed = marked.filter(is_dup)
        return StepOutput(
            marked.filter(~is_dup).drop("dup_of"),
            reject(removed, self.name, "exact_duplicate", dup_of=pl.col("dup_of")),
        )
