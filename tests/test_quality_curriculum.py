"""Curriculum buckets (balanced, ordered, deterministic) and an end-to-end quality + split + curriculum build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from conftest import query, write_config, write_jsonl

from common.config import ConfigError
from corpus.stage import StageDir
from pipelines.config import load_config
from pipelines.runner import run_build
from pipelines.step import StepContext
from pipelines.steps.curriculum import TABLE, Curriculum, CurriculumError
from quality.rules import RULE_NAMES

FIXTURES = Path(__file__).parent / "data" / "quality_fixtures.jsonl"


def write_scans(step_dir: Path, n: int, seed: int, *, with_ppl: bool = True, reverse: bool = False) -> StepContext:
    """Scan files of 3 shards in ``step_dir`` (numbered in reverse with ``reverse``); the reduce's context."""
    rng = random.Random(seed)
    stage = StageDir(step_dir, step_dir / "state")
    paths = []
    for shard in range(3):
        rows = [
            {
                "doc_id": f"d{shard}-{i:04d}",
                "tokens": rng.choice([50, 100, 100, 400, 1200]),  # many ties on purpose
                "perplexity": rng.uniform(5, 200) if with_ppl else None,
                "quality_score": rng.random(),
            }
            for i in range(n)
        ]
        path = stage.scan(2 - shard if reverse else shard, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(
            rows,
            schema={"doc_id": pl.String, "tokens": pl.Int64, "perplexity": pl.Float64, "quality_score": pl.Float64},
        ).write_parquet(path)
        paths.append(path)
    return StepContext(-1, step_dir, step_dir)


@pytest.mark.parametrize("difficulty", ["length", "perplexity", "mix"])
def test_buckets_balanced_ordered_deterministic(tmp_path: Path, difficulty: str) -> None:
    step = Curriculum(difficulty=difficulty, buckets=4)  # type: ignore[arg-type]
    outs = []
    for run in ("a", "b"):
        ctx = write_scans(tmp_path / run, 334, seed=7, reverse=run == "b")  # shard order irrelevant
        step.reduce(ctx)
        outs.append(pl.read_parquet(ctx.stage.decision_files()).sort("doc_id"))
    assert outs[0].equals(outs[1])
    sizes = outs[0].group_by("bucket").len().sort("bucket")
    assert sizes["bucket"].to_list() == ["0", "1", "2", "3"]
    assert sizes["len"].max() - sizes["len"].min() <= 1  # type: ignore[operator]
    summary = pl.read_parquet(tmp_path / "a" / "tables" / TABLE / "part-00000.parquet").sort("bucket_index")
    assert summary["docs"].sum() == 1002
    lo, hi = summary["difficulty_min"].to_list(), summary["difficulty_max"].to_list()
    assert all(hi[k] <= lo[k + 1] for k in range(3))  # easy -> hard
    if difficulty == "length":
        assert summary["tokens_est"].to_list() == sorted(summary["tokens_est"].to_list())


def test_perplexity_difficulty_needs_perplexity(tmp_path: Path) -> None:
    ctx = write_scans(tmp_path / "step", 10, seed=1, with_ppl=False)
    with pytest.raises(CurriculumError, match="perplexity: true"):
        Curriculum(difficulty="perplexity").reduce(ctx)
    with pytest.raises(ConfigError, match="unknown weight"):
        Curriculum.from_params({"difficulty": "mix", "weights": {"size": 1}}, where="cfg.yaml: steps[3]")


def generated_corpus(path: Path, copies: int) -> tuple[Path, dict[str, str]]:
    """Fixture texts, each in ``copies`` distinct variants (a numbered closing line)."""
    records, labels = [], {}
    for fx in map(json.loads, FIXTURES.read_text(encoding="utf-8").splitlines()):
        for k in range(copies):
            tail = f"\n本文件编号为第{k + 1}号。" if fx["lang"] == "zh" else f"\nThis copy was filed as number {k + 1}."
            url = f"https://example.test/{fx['id']}/{k}"
            records.append({"url": url, "text": fx["text"] + tail, "lang": fx["lang"] if k else None})
            labels[url] = fx["label"]
    return write_jsonl(path, records), labels


def test_end_to_end_quality_split_curriculum(tmp_path: Path) -> None:
    source, labels = generated_corpus(tmp_path / "gen.jsonl", copies=2)
    root = tmp_path / "corpus"
    steps = [
        "normalize",
        {"quality": {"perplexity": True, "ppl_window": 16, "ppl_stride": 12, "ppl_max_tokens": 16}},
        {"split": {"validation_ratio": 0.2}},
        {"curriculum": {"difficulty": "mix", "buckets": 3, "weights": {"perplexity": 0.5, "length": 0.5}}},
    ]
    cfg = load_config(write_config(tmp_path / "build.yaml", root, [source], steps))
    result = run_build(cfg, progress=False)

    n_good = sum(1 for v in labels.values() if v == "good")
    assert result.docs_in == len(labels) == result.docs_out + result.docs_rejected
    assert result.docs_out == n_good
    rejected = query(root, "SELECT url, step, reason FROM rejects")
    assert {labels[u] for u, _, _ in rejected} == {"junk"}
    assert {s for _, s, _ in rejected} == {"quality"} and {r for _, _, r in rejected} <= set(RULE_NAMES)
    stats = query(root, "SELECT docs_in, docs_out, drops FROM step_stats WHERE step = 'quality'")[0]
    assert stats[0] - stats[1] == sum(stats[2].values()) == result.docs_rejected

    # final shards: Hive bucket=<k>/split=<s>, buckets balanced over the corpus
    parts = sorted(p.relative_to(root / "shards").parts[:2] for p in (root / "shards").rglob("*.parquet"))
    assert {b for b, _ in parts} == {"bucket=0", "bucket=1", "bucket=2"}
    assert {s for _, s in parts} <= {"split=train", "split=validation"}
    sizes = [n for _, n in query(root, "SELECT bucket, count(*) FROM documents GROUP BY bucket ORDER BY bucket")]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n_good
    summary = query(root, f"SELECT bucket, docs, tokens_est, mean_quality_score FROM {TABLE} ORDER BY bucket_index")
    assert [r[1] for r in summary] == sizes
    tokens = query(root, "SELECT sum(quality_signals.tokens_est) FROM documents")[0][0]
    assert sum(r[2] for r in summary) == tokens
    assert all(0.5 <= r[3] <= 1.0 for r in summary)

    # per-signal stats for every document that reached the quality step, queryable with SQL
    assert query(root, "SELECT count(*), count(perplexity) FROM quality_signals")[0] == (len(labels), len(labels))
    by_script = dict(query(root, "SELECT script, quantile_cont(alpha_frac, 0.5) FROM quality_signals GROUP BY 1"))
    assert set(by_script) == {"latin", "cjk"}
    assert query(root, "SELECT count(*) FROM documents WHERE lang IS NULL")[0][0] == 0  # filled by lingua

    # a forced rebuild: same buckets, perplexity served from the cache (no new cache files)
    cache_files = sorted((root / "state" / "quality" / "perplexity").rglob("*.parquet"))
    before = query(root, "SELECT doc_id, bucket, split FROM documents ORDER BY doc_id")
    run_build(cfg, force=True, progress=False)
    assert query(root, "SELECT doc_id, bucket, split FROM documents ORDER BY doc_id") == before
    assert sorted((root / "state" / "quality" / "perplexity").rglob("*.parquet")) == cache_files
