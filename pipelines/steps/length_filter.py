"""`length_filter`: drop documents too short to teach anything or too long to be one document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from pipelines.step import ShardContext, Step, StepOutput, split_by_mask


@dataclass
class LengthFilter(Step):
    name: ClassVar[str] = "length_filter"
    min_chars: int = 50
    max_chars: int = 1_000_000

    def __post_init__(self) -> None:
        if not 0 <= self.min_chars <= self.max_chars:
            raise ValueError(f"need 0 <= min_chars <= max_chars, got {self.min_chars} and {self.max_chars}")

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        n = pl.col("text").str.len_chars()
        reason = pl.when(n < self.min_chars).then(pl.lit("too_short")).otherwise(pl.lit("too_long"))
        detail = pl.format("{} chars", n)
        return split_by_mask(df, (n < self.min_chars) | (n > self.max_chars), self.name, reason, detail=detail)
