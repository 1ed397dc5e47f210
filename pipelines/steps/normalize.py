"""`normalize`: make equal texts byte-equal before anything compares them.

Unicode normalisation, control characters, line endings and whitespace are vectorised Polars
expressions; mojibake repair (ftfy) runs only on the rows a cheap regex flags as suspicious,
because ftfy is a per-document Python call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import ftfy
import polars as pl

from pipelines.step import ShardContext, Step, StepOutput, reject

# C0/C1 controls except \t and \n, zero-width and bidi marks, BOM.
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u200B-\u200F\u202A-\u202E\u2060-\u2064\uFEFF]"
# UTF-8 read as cp1252/latin-1: "Ã©", "â€™", "Â " and friends.
MOJIBAKE_HINT = r"[ÃÂâ][\u0080-\u00BF\u2018-\u203A\u20AC\u0152\u0153\u0160\u0161\u0178\u017D\u017E\u0192\u02C6\u02DC]"


@dataclass
class Normalize(Step):
    name: ClassVar[str] = "normalize"
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFKC"
    fix_mojibake: bool = True

    def __post_init__(self) -> None:
        if self.form not in ("NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(f"form must be one of NFC, NFKC, NFD, NFKD, got {self.form!r}")

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        if self.fix_mojibake:
            suspicious = df.get_column("text").str.contains(MOJIBAKE_HINT)
            if suspicious.any():
                fixed = [ftfy.fix_text(t) if s else t for t, s in zip(df.get_column("text"), suspicious, strict=True)]
                df = df.with_columns(pl.Series("text", fixed, dtype=pl.String))
        df = df.with_columns(
            normalize_text(pl.col("text"), self.form).alias("text"),
            normalize_text(pl.col("title"), self.form).alias("title"),
        )
        empty = pl.col("text").str.len_bytes() == 0
        return StepOutput(df.filter(~empty), reject(df.filter(empty), self.name, "empty_after_normalize"))


def normalize_text(expr: pl.Expr, form: str = "NFKC") -> pl.Expr:
    """The normalisation as one expression, reusable by other steps and benchmarks."""
    return (
        expr.str.replace_all(r"\r\n?", "\n")
        .str.normalize(form)  # type: ignore[arg-type]
        .str.replace_all(CONTROL_CHARS, "")
        .str.replace_all(r"[^\S\n]+", " ")
        .str.replace_all(r" ?\n ?", "\n")
        .str.replace_all(r"\n{3,}", "\n\n")
        .str.strip_chars()
    )
