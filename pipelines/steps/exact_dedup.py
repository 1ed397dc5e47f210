"""`exact_dedup`: one copy of each text across *all* shards; the first in stable order wins.

Scan writes (doc_id, 128-bit hash of the case- and whitespace-folded text) per shard; reduce
groups the hashes of every shard in shard/row order and names each later copy's keeper, as
decisions that process applies (rows into `rejects` with ``dup_of``). Only hashes cross
shards, never texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import polars as pl
import xxhash

from pipelines.step import GlobalStep, StepContext


def text_key(texts: pl.Series) -> pl.Series:
    """128-bit content hash of the folded text (lower case, whitespace runs collapsed)."""
    folded = texts.str.to_lowercase().str.replace_all(r"\s{2,}|[^\S ]", " ").str.strip_chars().cast(pl.Binary)
    return pl.Series([xxhash.xxh3_128_digest(t) for t in folded], dtype=pl.Binary)


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

    def scan(self, df: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        keys = text_key(df.get_column("text"))
        return pl.DataFrame({"doc_id": df.get_column("doc_id"), "key": keys}).with_columns(
            (pl.col("key").bin.slice(0, 1).bin.encode("hex").str.to_integer(base=16) % self.reduce_partitions)
            .cast(pl.Int32)
            .alias("partition")
        )

    def reduce(self, ctx: StepContext) -> dict[str, int]:
        """Within one hash partition, the first doc (shard order, then row order) keeps each key."""
        schema = {"doc_id": pl.String, "key": pl.Binary}
        scans = ctx.scans()
        keys = (
            pl.concat([pl.read_parquet(p, columns=["doc_id", "key"]) for p in scans])
            if scans
            else pl.DataFrame(schema=schema)
        )
        keepers = keys.group_by("key", maintain_order=True).agg(pl.col("doc_id").first().alias("dup_of"))
        dups = (
            keys.join(keepers, on="key", how="inner", maintain_order="left")
            .filter(pl.col("doc_id") != pl.col("dup_of"))
            .select("doc_id", pl.lit("exact_duplicate").alias("reason"), "dup_of")
        )
        ctx.write_decisions(dups)
        return {"duplicates": dups.height}
