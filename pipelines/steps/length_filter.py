"""`length_filter`: drop documents too short to teach anything or too long to be one document.

Length limits live here, not in `quality` (whose calibrated languages switch their length rules
off): what is "too short" depends on the source. A 150-character case fact is a complete document
in a fine-tuning corpus and a stub on a crawled site, so ``per_source`` sets other limits for
named sources (``{import:cases: {min_chars: 20}}``); the others use ``min_chars``/``max_chars``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl

from pipelines.step import Step, StepContext, StepOutput, split_by_mask


@dataclass
class LengthFilter(Step):
    name: ClassVar[str] = "length_filter"
    min_chars: int = 50
    max_chars: int = 1_000_000
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> {min_chars:, max_chars:}

    def __post_init__(self) -> None:
        self._limits: dict[str, tuple[int, int]] = {}
        for source, limits in self.per_source.items():
            if not isinstance(limits, dict) or not set(limits) <= {"min_chars", "max_chars"}:
                raise ValueError(f"per_source.{source}: expected {{min_chars:, max_chars:}}, got {limits!r}")
            lo, hi = limits.get("min_chars", self.min_chars), limits.get("max_chars", self.max_chars)
            self._check(lo, hi, f"per_source.{source}: ")
            self._limits[source] = (int(lo), int(hi))
        self._check(self.min_chars, self.max_chars, "")

    @staticmethod
    def _check(lo: Any, hi: Any, where: str) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or not 0 <= lo <= hi:
            raise ValueError(f"{where}need integers 0 <= min_chars <= max_chars, got {lo!r} and {hi!r}")

    def _limit(self, which: int, default: int) -> pl.Expr:
        expr: pl.Expr = pl.lit(default)
        for source, limits in self._limits.items():
            expr = pl.when(pl.col("source") == source).then(pl.lit(limits[which])).otherwise(expr)
        return expr

    def applied_thresholds(self) -> list[tuple[str, str, float]]:
        return [
            ("characters", f"{self.name}.min_chars", float(self.min_chars)),
            ("characters", f"{self.name}.max_chars", float(self.max_chars)),
        ]

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        n = pl.col("text").str.len_chars()
        lo, hi = self._limit(0, self.min_chars), self._limit(1, self.max_chars)
        reason = pl.when(n < lo).then(pl.lit("too_short")).otherwise(pl.lit("too_long"))
        detail = pl.when(n < lo).then(pl.format("{} chars < {}", n, lo)).otherwise(pl.format("{} chars > {}", n, hi))
        return split_by_mask(df, (n < lo) | (n > hi), self.name, reason, detail=detail)
