"""Perplexity with the real bundled SmolLM2-135M (CPU, a handful of short texts) and its cache."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import torch

from quality.perplexity import PerplexityCache, PerplexityConfig, PerplexityScorer, score_with_cache

FLUENT = "The court held that the contract was void because the buyer had never agreed to the price."
GARBLED = "price the void agreed buyer never court contract held the had was because to the that"


@pytest.fixture(scope="module")
def scorer() -> PerplexityScorer:
    return PerplexityScorer(PerplexityConfig(window=32, stride=16, max_tokens=64, batch_tokens=256, device="cpu"))


def reference_ppl(scorer: PerplexityScorer, text: str) -> float:
    """Plain Hugging Face perplexity: exp(mean token loss) with the whole text in one window."""
    ids = scorer.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        loss = scorer.model(input_ids=ids, labels=ids).loss
    return math.exp(float(loss))


def test_matches_hugging_face_loss_and_ranks_fluency(scorer: PerplexityScorer) -> None:
    ppl, n = scorer.score([FLUENT, GARBLED, "a"])
    n_fluent = len(scorer.tokenizer(FLUENT, add_special_tokens=False)["input_ids"])
    assert n[0] == n_fluent - 1  # every token but the first is scored exactly once
    assert ppl[2] is None and n[2] == 0  # one token: nothing to predict
    assert ppl[0] < ppl[1] / 3  # shuffled words are far less likely
    assert ppl[0] == pytest.approx(reference_ppl(scorer, FLUENT), rel=1e-3)  # fits one 32-token window


def test_sliding_window_covers_long_documents_once(scorer: PerplexityScorer) -> None:
    long = " ".join([FLUENT] * 4)
    ids = scorer.tokenizer(long, add_special_tokens=False)["input_ids"][:64]
    wins = scorer.windows(ids)
    scored = [p for _, e, s in wins for p in range(s, e)]
    assert scored == list(range(1, len(ids)))  # each position once, in order
    assert all(e - b <= 32 for b, e, _ in wins)
    ppl, n = scorer.score([long])
    assert n == [63] and ppl[0] is not None and ppl[0] < 20  # repeated text becomes predictable


def test_batching_does_not_change_scores(scorer: PerplexityScorer) -> None:
    texts = [FLUENT, GARBLED, FLUENT + " " + GARBLED]
    together, _ = scorer.score(texts)
    alone = [scorer.score([t])[0][0] for t in texts]
    assert together == pytest.approx(alone, rel=1e-4)


def test_cache_reuse(tmp_path: Path, scorer: PerplexityScorer) -> None:
    ids = pl.Series(["d1", "d2", "d3"])
    texts = pl.Series([FLUENT, GARBLED, "Short."])
    first, fresh = score_with_cache(scorer, ids, texts, tmp_path)
    assert fresh == 3
    again, fresh = score_with_cache(scorer, ids, texts, tmp_path)
    assert fresh == 0 and again.equals(first)  # rerun is free
    changed, fresh = score_with_cache(scorer, ids, pl.Series([FLUENT, FLUENT, "Short."]), tmp_path)
    assert fresh == 1  # d2's text changed: only it is rescored
    assert changed["perplexity"][1] == pytest.approx(first["perplexity"][0])
    files = sorted(PerplexityCache(tmp_path, scorer.key).directory.glob("part-*.parquet"))
    assert len(files) == 2 and str(files[0]).startswith(str(tmp_path / "quality" / "perplexity"))
