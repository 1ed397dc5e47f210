"""`normalize`: make equal texts byte-equal before anything compares them.

Unicode normalisation, control characters, line endings and whitespace are vectorised Polars
expressions; mojibake repair (ftfy) runs only on the rows a cheap regex flags as suspicious,
because ftfy is a per-document Python call.

``chinese_script`` converts documents written in the other Chinese script with OpenCC
(`pipelines.chinese_script`: only documents that are, never the Simplified text a mainland
corpus is made of), so a Hong Kong or Taiwan copy of a mainland text compares equal downstream;
a converted document records ``original_script`` and ``script_conversion`` in ``meta``.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import ClassVar, Literal

import ftfy
import numpy as np
import polars as pl

from pipelines.chinese_script import DEFAULT_CONFIG, TARGETS, converter, to_script
from pipelines.step import Step, StepContext, StepOutput, reject

# C0/C1 controls except \t and \n, zero-width and bidi marks, BOM.
CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u200B-\u200F\u202A-\u202E\u2060-\u2064\uFEFF]"
# UTF-8 read as cp1252/latin-1: "Ã©", "â€™", "Â " and friends.
MOJIBAKE_HINT = r"[ÃÂâ][\u0080-\u00BF\u2018-\u203A\u20AC\u0152\u0153\u0160\u0161\u0178\u017D\u017E\u0192\u02C6\u02DC]"


@dataclass
class Normalize(Step):
    name: ClassVar[str] = "normalize"
    rewrites_text: ClassVar[bool] = True
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFKC"
    fix_mojibake: bool = True
    chinese_script: Literal["keep", "simplified", "traditional"] = "keep"
    opencc_config: str | None = None  # default: t2s to simplified, s2t to traditional (or tw2sp, hk2s ...)

    def __post_init__(self) -> None:
        if self.form not in ("NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(f"form must be one of NFC, NFKC, NFD, NFKD, got {self.form!r}")
        if self.chinese_script not in TARGETS:
            raise ValueError(f"chinese_script must be one of {', '.join(TARGETS)}, got {self.chinese_script!r}")
        if self.opencc_config is not None:
            if self.chinese_script == "keep":
                raise ValueError("opencc_config needs chinese_script: simplified or traditional")
            converter(self.opencc_config)  # an unknown configuration fails when the config is read

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        df = df.with_columns(
            self.normalize(df.get_column("text")), self.normalize(df.get_column("title"), repair=False)
        )
        df = self.convert_script(df)
        empty = pl.col("text").str.len_bytes() == 0
        return StepOutput(df.filter(~empty), reject(df.filter(empty), self.name, "empty_after_normalize"))

    def rewrite_texts(self, texts: list[str], docs: pl.DataFrame) -> list[str]:
        """An instruction row's meta texts (prompt, response ...), cleaned like ``text``."""
        out = self.normalize(pl.Series(texts, dtype=pl.String))
        if self.chinese_script != "keep":
            out, _ = to_script(out, self.chinese_script, self.opencc_config)
        return out.to_list()

    def convert_script(self, df: pl.DataFrame) -> pl.DataFrame:
        """Text and title to ``chinese_script``; converted documents say so in ``meta``."""
        if self.chinese_script == "keep" or df.height == 0:
            return df
        target = self.chinese_script
        config = self.opencc_config or DEFAULT_CONFIG[target]
        text, changed = to_script(df.get_column("text"), target, config)
        title, _ = to_script(df.get_column("title"), target, config)
        df = df.with_columns(text, title)
        rows = np.flatnonzero(changed)
        if not len(rows):
            return df
        metas = df.get_column("meta").to_list()
        original = "traditional" if target == "simplified" else "simplified"
        for i in rows.tolist():
            metas[i] = _with_script(metas[i], original, config)
        return df.with_columns(pl.Series("meta", metas, dtype=df.schema["meta"]))

    def normalize(self, texts: pl.Series, *, repair: bool = True) -> pl.Series:
        """Mojibake repair, Unicode normalisation and whitespace cleaning of one column."""
        if repair and self.fix_mojibake:
            texts = repair_mojibake(texts)
        name = texts.name
        texts = unicode_normalize(texts, self.form)
        return pl.DataFrame({"t": texts}).select(clean_text(pl.col("t")).alias(name)).to_series()


def _with_script(meta: str | None, original: str, config: str) -> str:
    """``meta`` (a JSON object, or empty) with ``original_script`` and ``script_conversion`` set."""
    try:
        data = json.loads(meta) if meta else {}
    except json.JSONDecodeError:
        data = {"meta": meta}  # ingest writes JSON objects; keep anything else rather than lose it
    if not isinstance(data, dict):
        data = {"meta": data}
    data["original_script"] = original
    data["script_conversion"] = config
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def repair_mojibake(texts: pl.Series) -> pl.Series:
    idx = texts.str.contains(MOJIBAKE_HINT).arg_true()
    if not idx.len():
        return texts
    fixed = pl.Series([ftfy.fix_text(t) for t in texts.gather(idx).to_list()], dtype=pl.String)
    return texts.scatter(idx, fixed)


def unicode_normalize(texts: pl.Series, form: str = "NFKC") -> pl.Series:
    """Normalise only the texts that are not already in ``form``.

    CPython's quick check answers "already normalised" at ~400 MB/s; normalising is ~70 MB/s,
    and most web text is already NFKC, so checking first is several times faster.
    """
    todo = [i for i, t in enumerate(texts.to_list()) if t is not None and not unicodedata.is_normalized(form, t)]  # type: ignore[arg-type]
    if not todo:
        return texts
    idx = pl.Series(todo, dtype=pl.UInt32)
    return texts.scatter(idx, texts.gather(idx).str.normalize(form))  # type: ignore[arg-type]


def clean_text(expr: pl.Expr) -> pl.Expr:
    """Controls, line endings and whitespace, as one expression (after Unicode normalisation)."""
    return (
        expr.str.replace_all(r"\r\n?", "\n")
        .str.replace_all(CONTROL_CHARS, "")
        .str.replace_all(r"[^\S\n]{2,}|[^\S\n ]", " ")
        .str.replace_all(r" ?\n ?", "\n")
        .str.replace_all(r"\n{3,}", "\n\n")
        .str.strip_chars()
    )
