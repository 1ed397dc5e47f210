"""Built corpora for the audit and report tests, and ways to break them on purpose.

`build_corpus("plain")` runs the real build on the bundled sample with the default steps.
`build_corpus("full")` adds stand-ins for the stages that live on other branches (PII redaction,
near-dup clustering, quality scoring, bucketing): small, real steps that write the same columns
and side tables those stages write (``pii_findings``, ``dedup_clusters``, ``quality_signals``,
``quality_score``, ``bucket``), so every report section and audit check has data to work on.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.catalog import Catalog
from corpus.store import CorpusLayout, file_checksum, write_table
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.step import ShardContext, Step, StepOutput, empty_rejects, reject, split_by_mask
from pipelines.steps.exact_dedup import ExactDedup
from pipelines.steps.length_filter import LengthFilter
from pipelines.steps.normalize import Normalize
from pipelines.steps.split import Split, unit_interval

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "legal_sample.jsonl"
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\(?\d[\d ().-]{7,}\d")
PATTERNS = (("EMAIL_ADDRESS", EMAIL), ("PHONE_NUMBER", PHONE))


def _side_table(ctx: ShardContext, name: str, table: pa.Table) -> None:
    write_table(table, ctx.table_dir(name) / f"part-{ctx.shard_index:05d}.parquet")


def find_structured_pii(texts: list[str]) -> list[list[tuple[str, int, int]]]:
    """The PII stage's scanner when it is installed (so the pii_left audit agrees with the
    redaction), else e-mail and phone patterns."""
    try:
        from pipelines.pii.scan import scan_structured
    except ImportError:
        return [
            sorted((entity, m.start(), m.end()) for entity, pattern in PATTERNS for m in pattern.finditer(t))
            for t in texts
        ]
    return scan_structured(texts)


def redact(text: str, findings: list[tuple[str, int, int]]) -> str:
    """Replace spans right to left so earlier offsets stay valid; overlapping spans merge."""
    out, end_prev = text, len(text) + 1
    for entity, start, end in sorted(findings, key=lambda f: f[1], reverse=True):
        end = min(end, end_prev)
        if start < end:
            out = out[:start] + f"[{entity}]" + out[end:]
            end_prev = start
    return out


@dataclass
class PiiFixture(Step):
    """Redacts structured PII, recording each finding in ``pii_findings``."""

    name: ClassVar[str] = "pii_fixture"

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        rows: dict[str, list] = {k: [] for k in ("doc_id", "entity_type", "start", "end", "recognizer", "score")}
        texts = df["text"].to_list()
        found = find_structured_pii(texts)
        for doc_id, findings in zip(df["doc_id"], found, strict=True):
            for entity, start, end in findings:
                for key, value in zip(rows, (doc_id, entity, start, end, "pattern", 1.0), strict=True):
                    rows[key].append(value)
        schema = pa.schema(
            [
                ("doc_id", pa.string()),
                ("entity_type", pa.string()),
                ("start", pa.int64()),
                ("end", pa.int64()),
                ("recognizer", pa.string()),
                ("score", pa.float64()),
            ]
        )
        _side_table(ctx, "pii_findings", pa.table(rows, schema=schema))
        redacted = [redact(t, f) for t, f in zip(texts, found, strict=True)]
        return StepOutput(df.with_columns(pl.Series("text", redacted, dtype=pl.String)), empty_rejects())


@dataclass
class NearDupFixture(Step):
    """Clusters documents of a shard sharing their first ``prefix_chars`` characters (case-folded)."""

    name: ClassVar[str] = "near_dup_fixture"
    prefix_chars: int = 40

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        keyed = df.with_columns(pl.col("text").str.to_lowercase().str.slice(0, self.prefix_chars).alias("__k"))
        groups = (
            keyed.group_by("__k", maintain_order=True).agg(pl.col("doc_id")).filter(pl.col("doc_id").list.len() > 1)
        )
        clusters = groups.select(
            pl.col("doc_id").list.first().alias("cluster_id"),
            pl.col("doc_id").alias("members"),
            pl.col("doc_id").list.len().cast(pl.Int64).alias("size"),
            pl.col("doc_id").list.first().alias("kept_id"),
        )
        _side_table(ctx, "dedup_clusters", clusters.to_arrow())
        dups = clusters.select("members", "kept_id").explode("members").filter(pl.col("members") != pl.col("kept_id"))
        marked = df.join(
            dups.rename({"members": "doc_id", "kept_id": "dup_of"}), on="doc_id", how="left", maintain_order="left"
        )
        is_dup = pl.col("dup_of").is_not_null()
        return StepOutput(
            marked.filter(~is_dup).drop("dup_of"),
            reject(marked.filter(is_dup), self.name, "near_duplicate", dup_of=pl.col("dup_of")),
        )


SIGNALS = pa.struct([("word_count", pa.int64()), ("mean_word_len", pa.float64()), ("digit_ratio", pa.float64())])


@dataclass
class ScoreFixture(Step):
    """Adds ``quality_score`` and a ``quality_signals`` struct, writes the ``quality_signals`` table
    for every document and rejects scores below ``min_score``."""

    name: ClassVar[str] = "score_fixture"
    adds: ClassVar[tuple[pa.Field, ...]] = (
        pa.field("quality_score", pa.float64()),
        pa.field("quality_signals", SIGNALS),
    )
    min_score: float = 0.15
    min_word_count: int = 3

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        chars = pl.col("text").str.len_chars().cast(pl.Float64)
        words = pl.col("text").str.split(" ").list.len().cast(pl.Int64)
        scored = df.with_columns(
            pl.Series("quality_score", [unit_interval(d, "score") for d in df["doc_id"]], dtype=pl.Float64),
            pl.struct(
                words.alias("word_count"),
                (chars / words).alias("mean_word_len"),
                (pl.col("text").str.count_matches(r"\d").cast(pl.Float64) / chars).alias("digit_ratio"),
            ).alias("quality_signals"),
        )
        _side_table(
            ctx,
            "quality_signals",
            scored.select("doc_id", "quality_signals", "quality_score").unnest("quality_signals").to_arrow(),
        )
        low = (pl.col("quality_score") < self.min_score) | (
            pl.col("quality_signals").struct.field("word_count") < self.min_word_count
        )
        return split_by_mask(scored, low, self.name, "low_quality")


@dataclass
class BucketFixture(Step):
    """Puts documents into numbered buckets by ``quality_score``."""

    name: ClassVar[str] = "bucket_fixture"
    adds: ClassVar[tuple[pa.Field, ...]] = (pa.field("bucket", pa.string()),)
    edges: tuple[float, ...] = (0.45, 0.72)

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        bucket = (
            pl.when(pl.col("quality_score") < self.edges[0])
            .then(pl.lit("0-low"))
            .when(pl.col("quality_score") < self.edges[1])
            .then(pl.lit("1-mid"))
            .otherwise(pl.lit("2-high"))
        )
        return StepOutput(df.with_columns(bucket.alias("bucket")), empty_rejects())


def steps_for(kind: str) -> list[Step]:
    if kind == "plain":
        return [Normalize(), LengthFilter(50, 1_000_000), ExactDedup(), Split(validation_ratio=0.1)]
    if kind == "full":
        return [
            Normalize(),
            LengthFilter(50, 1_000_000),
            PiiFixture(),
            NearDupFixture(),
            ExactDedup(),
            ScoreFixture(),
            BucketFixture(),
            Split(validation_ratio=0.1),
        ]
    raise ValueError(kind)


def build(root: Path, kind: str, sources: list[Path] | None = None) -> Path:
    specs = [SourceSpec(p, "import:" + p.stem) for p in (sources or [SAMPLE])]
    cfg = BuildConfig(root=root, workers=1, sources=specs, steps=steps_for(kind))
    run_build(cfg, progress=False)
    return root


def build_once(base: Path, kind: str) -> Path:
    """One build per kind per test session, shared by the test modules (never modified)."""
    root = base / f"corpus-{kind}"
    if not (root / "report.done").exists():
        shutil.rmtree(root, ignore_errors=True)
        build(root, kind)
        (root / "report.done").write_text("built\n")
    return root


def copy_corpus(src: Path, dst: Path) -> Path:
    """A private copy to break; views are recreated so they point into the copy."""
    shutil.copytree(src, dst)
    with Catalog.open(CorpusLayout.at(dst)) as cat:
        cat.refresh_views()
    return dst


def final_shard(root: Path, split: str = "train", bucket: str | None = None) -> Path:
    pattern = f"bucket={bucket or '*'}/split={split}/part-*.parquet"
    return sorted((root / "shards").glob(pattern))[0]


def rewrite_shard(root: Path, path: Path, table: pa.Table) -> None:
    """Replace a catalogued shard's contents and update its catalog record (rows, size, sha256)."""
    write_table(table, path)
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    with Catalog.open(CorpusLayout.at(root)) as cat:
        cat.conn.execute(
            "UPDATE shards SET rows = ?, bytes = ?, checksum = ? WHERE path = ?",
            [table.num_rows, path.stat().st_size, file_checksum(path), rel],
        )
        cat.refresh_views()


def read_shard(path: Path) -> pa.Table:
    return pq.read_table(path)


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def rewrite_rows(root: Path, path: Path, rows: list[dict]) -> None:
    """`rewrite_shard` from row dicts, keeping the shard's schema."""
    rewrite_shard(root, path, pa.Table.from_pylist(rows, schema=pq.read_schema(path)))


def write_metrics(directory: Path, steps: int = 3000, eval_every: int = 250) -> Path:
    """metrics.jsonl shaped like the training stage writes it: a decaying noisy loss, warmup+cosine lr."""
    rng = random.Random(0)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        lr = 3e-4 * min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        loss = 2.0 + 3.0 * math.exp(-step / 600) + rng.gauss(0, 0.15)
        lines.append(
            {
                "kind": "train",
                "step": step,
                "loss": loss,
                "lr": lr,
                "grad_norm": abs(rng.gauss(1, 0.3)),
                "tokens_per_s": 9000 + rng.gauss(0, 300),
            }
        )
        if step % eval_every == 0:
            for k, bucket in enumerate(("0-easy", "1-medium", "2-hard")):
                eval_loss = 2.1 + 0.3 * k + 3.0 * math.exp(-step / 700)
                lines.append(
                    {"kind": "eval", "step": step, "bucket": bucket, "ppl": math.exp(eval_loss), "loss": eval_loss}
                )
    (directory / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return directory
