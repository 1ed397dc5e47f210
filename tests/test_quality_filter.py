"""Filter decisions on the labelled fixtures (good legal/news text in both languages vs junk) and the step."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from common.config import ConfigError
from corpus.schema import make_doc_id
from pipelines.step import ShardContext
from pipelines.steps.quality import ALL_SIGNALS, Quality
from quality.rules import RULE_NAMES, configure_rules, evaluate
from quality.signals import SignalConfig, compute_signals

FIXTURES = Path(__file__).parent / "data" / "quality_fixtures.jsonl"


@pytest.fixture(scope="module")
def fixtures() -> pl.DataFrame:
    return pl.read_ndjson(FIXTURES)


@pytest.fixture(scope="module")
def step() -> Quality:
    s = Quality()
    s.setup(Path("."))
    return s


def as_docs(fx: pl.DataFrame, *, with_lang: bool = True) -> pl.DataFrame:
    return fx.select(
        pl.Series("doc_id", [make_doc_id("fixture", i, t) for i, t in zip(fx["id"], fx["text"], strict=True)]),
        pl.lit("fixture").alias("source"),
        pl.col("id").alias("url"),
        pl.lit(None, dtype=pl.String).alias("title"),
        "text",
        (pl.col("lang") if with_lang else pl.lit(None, dtype=pl.String)).alias("lang"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("created_at"),
        pl.lit(None, dtype=pl.String).alias("meta"),
    )


def test_fixture_set_is_balanced(fixtures: pl.DataFrame) -> None:
    kinds = set(fixtures.filter(pl.col("label") == "junk")["kind"])
    assert {"nav_menu", "seo_spam", "lorem_ipsum", "code_dump"} <= kinds
    assert set(fixtures.filter(pl.col("label") == "good")["kind"]) >= {"statute", "judgment", "news"}
    assert fixtures.filter((pl.col("label") == "good") & (pl.col("lang") == "zh")).height >= 3
    assert fixtures.filter((pl.col("label") == "good") & (pl.col("lang") == "en")).height >= 3


def test_default_rules_keep_good_and_drop_junk(fixtures: pl.DataFrame) -> None:
    verdict = evaluate(compute_signals(fixtures["text"]), configure_rules())
    decided = fixtures.with_columns(verdict)
    wrongly_dropped = decided.filter((pl.col("label") == "good") & pl.col("reason").is_not_null())
    wrongly_kept = decided.filter((pl.col("label") == "junk") & pl.col("reason").is_null())
    assert wrongly_dropped.height == 0, wrongly_dropped.select("id", "reason", "detail").rows()
    assert wrongly_kept.height == 0, wrongly_kept.select("id").rows()
    assert set(decided["reason"].drop_nulls()) <= set(RULE_NAMES)
    # scores separate the classes: every good document above every junk document
    good = decided.filter(pl.col("label") == "good")["rule_score"]
    junk = decided.filter(pl.col("label") == "junk")["rule_score"]
    assert good.min() > 0.5 >= junk.max()  # type: ignore[operator]


def test_specific_reasons(fixtures: pl.DataFrame) -> None:
    verdict = evaluate(compute_signals(fixtures["text"]), configure_rules())
    reasons = dict(zip(fixtures["id"], verdict["reason"], strict=True))
    assert reasons["en_lorem_template"] == "c4_lorem_ipsum"
    assert reasons["en_repeated_boilerplate"] == "gopher_dup_line_frac"
    assert reasons["en_nav_menu"] == "gopher_short_doc"


def test_latin_line_length_would_kill_chinese_statutes(fixtures: pl.DataFrame) -> None:
    """Per-script definitions matter: with FineWeb's 30-character short line applied to Han text,
    a statute that lists its items one per line counts as a menu and is dropped."""
    statutes = fixtures.filter(pl.col("kind") == "statute", pl.col("lang") == "zh")
    assert evaluate(compute_signals(statutes["text"]), configure_rules())["reason"].null_count() == statutes.height
    latin_lines = compute_signals(statutes["text"], SignalConfig(short_line_chars_cjk=30))
    reasons = evaluate(latin_lines, configure_rules())["reason"].to_list()
    assert "fineweb_short_line_ratio" in reasons


def test_threshold_overrides_and_errors(fixtures: pl.DataFrame) -> None:
    sig = compute_signals(fixtures["text"])
    strict = configure_rules(thresholds={"gopher_short_doc": {"latin": 10_000}})
    reasons = evaluate(sig, strict)["reason"]
    latin = sig["script"] == "latin"
    assert (reasons.filter(latin) == "gopher_short_doc").all()
    off = configure_rules(disable=["gopher_short_doc", "gopher_few_stop_words"], families=["gopher_quality"])
    assert "gopher_short_doc" not in {r.name for r in off}
    assert {r.family for r in off} == {"gopher_quality"}
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        configure_rules(thresholds={"nope": 1})
    with pytest.raises(ConfigError, match="unknown rule 'gopher_typo'"):
        Quality.from_params({"disable": ["gopher_typo"]}, where="cfg.yaml: steps[1]")


def test_step_accounts_rejects_and_fills_lang(tmp_path: Path, fixtures: pl.DataFrame, step: Quality) -> None:
    docs = as_docs(fixtures, with_lang=False)
    ctx = ShardContext(0, tmp_path / "step", tmp_path)
    out = step.process(docs, ctx)
    assert out.kept.height + out.rejected.height == docs.height
    labels = dict(zip(docs["doc_id"], fixtures["label"], strict=True))
    assert {labels[d] for d in out.kept["doc_id"]} == {"good"}
    assert {labels[d] for d in out.rejected["doc_id"]} == {"junk"}
    assert set(out.rejected["step"]) == {"quality"}
    assert set(out.rejected["reason"]) <= set(RULE_NAMES)
    assert out.rejected["detail"].null_count() == 0
    # language filled from lingua where it was null
    expected = dict(zip(docs["doc_id"], fixtures["lang"], strict=True))
    assert all(expected[d] == lang for d, lang in out.kept.select("doc_id", "lang").iter_rows())
    assert out.kept["quality_signals"].struct.field("lang_confidence").min() > 0.5  # type: ignore[operator]
    scores = out.kept["quality_score"]
    assert scores.min() >= 0.5 and scores.max() <= 1.0  # type: ignore[operator]
    # side table: every document, kept or not, flattened, for SQL tuning
    table = pl.read_parquet(ctx.table_dir("quality_signals") / "part-00000.parquet")
    assert table.height == docs.height
    assert set(ALL_SIGNALS) <= set(table.columns)
    assert table.filter(~pl.col("kept")).height == out.rejected.height


def test_annotate_only_and_language_filter(tmp_path: Path, fixtures: pl.DataFrame) -> None:
    docs = as_docs(fixtures)
    ctx = ShardContext(0, tmp_path / "step", tmp_path)
    annotate = Quality(filter=False, detect_language=False)
    out = annotate.process(docs, ctx)
    assert out.rejected.height == 0 and out.kept.height == docs.height
    table = pl.read_parquet(ctx.table_dir("quality_signals") / "part-00000.parquet")
    assert table["failed_rule"].null_count() == fixtures.filter(pl.col("label") == "good").height
    only_en = Quality(keep_languages=["en"], families=["language"])
    only_en.setup(tmp_path)
    out = only_en.process(docs, ctx)
    assert set(out.kept["lang"]) == {"en"}
    assert set(out.rejected["reason"]) == {"lang_not_allowed"}
