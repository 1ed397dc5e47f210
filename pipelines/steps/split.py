"""`split`: deterministic train/validation assignment from a hash of the doc_id.

The same document lands in the same split on every run and every machine, whatever else is
in the corpus, so validation sets stay stable as a corpus grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import polars as pl
import pyarrow as pa
import xxhash

from pipelines.step import Step, StepContext, StepOutput, empty_rejects

SPLIT_FIELD = pa.field("split", pa.string())


def unit_interval(key: str, salt: str) -> float:
    """Map a key to [0, 1) with a salted 64-bit hash."""
    return xxhash.xxh3_64_intdigest(key.encode(), seed=xxhash.xxh32_intdigest(salt.encode())) / 2**64


@dataclass
class Split(Step):
    name: ClassVar[str] = "split"
    adds: ClassVar[tuple[pa.Field, ...]] = (SPLIT_FIELD,)
    validation_ratio: float = 0.05
    salt: str = "corpusforge"

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_ratio < 1.0:
            raise ValueError(f"validation_ratio must be in [0, 1), got {self.validation_ratio}")

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        u = pl.Series([unit_interval(d, self.salt) for d in df.get_column("doc_id")], dtype=pl.Float64)
        split = pl.when(u < self.validation_ratio).then(pl.lit("validation")).otherwise(pl.lit("train"))
        return StepOutput(df.with_columns(split.alias("split")), empty_rejects())
