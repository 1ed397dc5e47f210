"""Built corpora for the audit and report tests, and ways to break them on purpose.

`build("plain")` runs the real build on the bundled sample with the foundation's steps only;
`build("full")` runs every stage (MinHash dedup, PII redaction, quality, curriculum), so every
report section and audit check has data to work on.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.catalog import Catalog
from corpus.store import CorpusLayout, file_checksum, write_table
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.step import Step
from pipelines.steps import (
    Curriculum,
    ExactDedup,
    LengthFilter,
    MinHashDedup,
    Normalize,
    PiiRedact,
    Quality,
    Split,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "legal_sample.jsonl"
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\(?\d[\d ().-]{7,}\d")
PATTERNS = (("EMAIL_ADDRESS", EMAIL), ("PHONE_NUMBER", PHONE))


def steps_for(kind: str) -> list[Step]:
    if kind == "plain":
        return [Normalize(), LengthFilter(50, 1_000_000), ExactDedup(), Split(validation_ratio=0.1)]
    if kind == "full":  # every stage corpusforge has, as in configs/default.yaml
        return [
            Normalize(),
            LengthFilter(50, 1_000_000),
            ExactDedup(),
            MinHashDedup(),
            PiiRedact(),
            Quality(thresholds={"gopher_below_avg_word_len": {"latin": 3.5}}),
            Split(validation_ratio=0.1),
            Curriculum(difficulty="length", buckets=3),
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
