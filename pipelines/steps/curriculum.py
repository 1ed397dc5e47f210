"""`curriculum`: a difficulty per document and N equal-size buckets over the whole corpus, easy -> hard.

Scan emits (doc_id, tokens, perplexity, quality_score) per shard; reduce ranks every document of
the corpus by difficulty (ties broken by doc_id, so the result is deterministic) and cuts the
ranking into ``buckets`` global quantiles, so bucket sizes differ by at most one document.
The decisions give each document its bucket, the string column ``bucket`` ("0" easiest) that
process adds (every document must get one); the runner partitions
final shards as ``shards/bucket=<k>/split=<s>/``. A per-bucket summary (docs, token estimate,
mean quality score, difficulty range) becomes the catalog table ``curriculum_buckets``.

Difficulty: ``length`` (estimated tokens), ``perplexity`` (needs ``quality: {perplexity: true}``),
``classifier`` (1 - the learned ``classifier_score``: needs ``quality: {classifier: model.npz}``;
documents the classifier likes most come first), or ``mix``: a weighted mean of percentile ranks
of ``weights`` components (length, perplexity, quality and classifier, where low quality or a
low classifier score counts as hard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import polars as pl
import pyarrow as pa

from corpus.store import write_table
from pipelines.step import GlobalStep, StepContext

TABLE = "curriculum_buckets"
COMPONENTS = ("length", "perplexity", "quality", "classifier")
DIFFICULTIES = ("length", "perplexity", "classifier", "mix")
SCAN_SCHEMA = {
    "doc_id": pl.String,
    "tokens": pl.Int64,
    "perplexity": pl.Float64,
    "quality_score": pl.Float64,
    "classifier_score": pl.Float64,
}


class CurriculumError(ValueError):
    """The difficulty cannot be computed from what earlier steps produced."""


@dataclass
class Curriculum(GlobalStep):
    name: ClassVar[str] = "curriculum"
    adds: ClassVar[tuple[pa.Field, ...]] = (pa.field("bucket", pa.string()),)
    version: ClassVar[str] = "2"  # 2: classifier_score in the scans and the bucket summary
    difficulty: Literal["length", "perplexity", "classifier", "mix"] = "length"
    buckets: int = 4
    weights: dict[str, float] = field(default_factory=lambda: {"perplexity": 0.5, "length": 0.5})

    def __post_init__(self) -> None:
        if self.difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {self.difficulty!r}")
        if not 1 <= self.buckets <= 1000:
            raise ValueError(f"buckets must be in [1, 1000], got {self.buckets}")
        unknown = sorted(set(self.weights) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown weight component(s) {unknown}; known: {list(COMPONENTS)}")
        if any(w < 0 for w in self.weights.values()) or not sum(self.weights.values()) > 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {self.weights}")

    def components(self) -> dict[str, float]:
        if self.difficulty == "mix":
            return {k: float(w) for k, w in sorted(self.weights.items()) if w > 0}
        return {self.difficulty: 1.0}

    def scan(self, df: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        if "quality_signals" in df.columns:
            sig = pl.col("quality_signals").struct
            tokens, ppl = sig.field("tokens_est"), sig.field("perplexity")
            score = pl.col("quality_score")
            fields = {f.name for f in df.schema["quality_signals"].fields}  # type: ignore[attr-defined]
            cls = sig.field("classifier_score") if "classifier_score" in fields else pl.lit(None)
        else:  # no quality step: length only, from the text
            tokens = (pl.col("text").str.len_chars() / 4).ceil()
            ppl = score = cls = pl.lit(None)
        return df.select(
            "doc_id",
            tokens.alias("tokens"),
            ppl.alias("perplexity"),
            score.alias("quality_score"),
            cls.alias("classifier_score"),
        ).cast(SCAN_SCHEMA)  # type: ignore[arg-type]

    def reduce(self, ctx: StepContext) -> dict[str, int]:
        scans = ctx.scans()
        docs = pl.concat([pl.read_parquet(p) for p in scans]) if scans else pl.DataFrame(schema=SCAN_SCHEMA)
        missing = [pl.lit(None, dtype=t).alias(c) for c, t in SCAN_SCHEMA.items() if c not in docs.columns]
        docs = docs.with_columns(missing)  # scans written before a column existed
        docs = docs.with_columns(self.difficulty_expr(docs).alias("difficulty"))
        n = docs.height
        ranked = docs.sort(["difficulty", "doc_id"]).with_row_index("rank")
        ranked = ranked.with_columns(
            (pl.col("rank").cast(pl.Int64) * self.buckets // max(n, 1)).cast(pl.String).alias("bucket")
        )
        ctx.write_decisions(ranked.select("doc_id", "bucket"))
        summary = (
            ranked.group_by("bucket")
            .agg(
                pl.len().cast(pl.Int64).alias("docs"),
                pl.col("tokens").sum().alias("tokens_est"),
                pl.col("quality_score").mean().alias("mean_quality_score"),
                pl.col("perplexity").mean().alias("mean_perplexity"),
                pl.col("classifier_score").mean().alias("mean_classifier_score"),
                pl.col("difficulty").min().alias("difficulty_min"),
                pl.col("difficulty").max().alias("difficulty_max"),
            )
            .with_columns(pl.col("bucket").cast(pl.Int64).alias("bucket_index"), pl.lit(self.difficulty).alias("by"))
            .sort("bucket_index")
        )
        write_table(summary.to_arrow(), ctx.stage.table(TABLE, 0))
        return {"documents": n}

    def difficulty_expr(self, docs: pl.DataFrame) -> pl.Expr:
        """Higher is harder. Single components keep their unit; a mix averages percentile ranks."""
        comps = self.components()
        if "perplexity" in comps and docs.height and docs.get_column("perplexity").null_count() == docs.height:
            raise CurriculumError(
                f"curriculum difficulty {self.difficulty!r} needs perplexity: run the quality step with "
                "'perplexity: true' before it"
            )
        if "quality" in comps and docs.height and docs.get_column("quality_score").null_count() == docs.height:
            raise CurriculumError("curriculum weight 'quality' needs the quality step before it")
        if "classifier" in comps and docs.height and docs.get_column("classifier_score").null_count() == docs.height:
            raise CurriculumError(
                "curriculum difficulty 'classifier' needs classifier scores: run the quality step with "
                "'classifier: <model.npz>' (python -m quality.train_classifier) before it"
            )
        # documents too short to score get the median perplexity: neither easy nor hard
        ppl = pl.col("perplexity").log().fill_null(pl.col("perplexity").log().median())
        raw = {
            "length": pl.col("tokens").cast(pl.Float64),
            "perplexity": ppl,
            "quality": -pl.col("quality_score"),
            "classifier": 1.0 - pl.col("classifier_score"),
        }
        if len(comps) == 1:
            return raw[next(iter(comps))].fill_null(0.0)
        total = sum(comps.values())
        ranks = [raw[c].rank("average") / pl.len() * (w / total) for c, w in comps.items()]
        return pl.sum_horizontal(ranks).fill_null(0.0)
