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

DECISIONS = "decisions.parquet"


def text_key(texts: pl.Series) -> pl.Series:
    """128-bit content hash of the folded text (lower case, whitespace runs collapsed)."""
    folded = texts.str.to_lowercase().str.replace_all(r"\s{2,}|[^\S ]", " ").str.strip_chars().cast(pl.Binary)
    return pl.Series([xxhash.xxh3_128_digest(t) for t in folded], dtype=pl.Binary)


@lru_cache(maxsize=4)
def _read_decisions(path: Path, mtime_ns: int) -> pl.DataFrame:
    return pl.read_parquet(path)


def _decisions(path: Path) -> pl.DataFrame:
    """Decisions are read once per worker process, not once per shard."""
    return _read_decisions(path, path.stat().st_mtime_ns)


@dataclass
class ExactDedup(GlobalStep):
    name: ClassVar[str] = "exact_dedup"

    def scan(self, df: pl.DataFrame, ctx: ShardContext) -> pl.DataFrame:
        return pl.DataFrame({"doc_id": df.get_column("doc_id"), "key": text_key(df.get_column("text"))})

    def reduce(self, scans: list[Path], step_dir: Path, root: Path) -> None:
        keys = (
            pl.concat([pl.read_parquet(p) for p in scans])
            if scans
            else pl.DataFrame(schema={"doc_id": pl.String, "key": pl.Binary})
        )
        keepers = keys.group_by("key", maintain_order=True).agg(pl.col("doc_id").first().alias("dup_of"))
        dups = (
            keys.join(keepers, on="key", how="inner", maintain_order="left")
            .filter(pl.col("doc_id") != pl.col("dup_of"))
            .select("doc_id", "dup_of")
        )
        dups.write_parquet(step_dir / DECISIONS)

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        dups = _decisions(ctx.step_dir / DECISIONS)
        marked = df.join(dups, on="doc_id", how="left", maintain_order="left")
        is_dup = pl.col("dup_of").is_not_null()
        removed = marked.filter(is_dup)
        return StepOutput(
            marked.filter(~is_dup).drop("dup_of"),
            reject(removed, self.name, "exact_duplicate", dup_of=pl.col("dup_of")),
        )
