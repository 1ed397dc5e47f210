"""CJK-aware n-gram overlap between a small set of texts (evaluation items) and a large corpus.

Why: an evaluation item whose text also sits in the training data measures memory, not skill.
The evaluator's overlap guard (`training.eval`) and a decontamination step both need the same
answer to "which of these items share n-grams with those documents", so it lives here, once.

How: n-grams come from the MinHash shingler (`pipelines.dedup.shingle`): NFKC, lower case,
digit runs as ``0``, punctuation and whitespace as separators, a word per token in
space-delimited scripts and a character per token in CJK text (a 13-gram of Chinese is 13
characters, of English 13 words), hashed to uint64 without a Python loop per token. The items'
n-gram hashes are held in one sorted array; the corpus streams past in batches and only a
boolean "seen" flag per item n-gram is kept, so memory is bounded by the items, not the corpus.

An item is *overlapping* when any of its n-grams occurs in the corpus (GPT-3's 13-gram rule)
and *contaminated* when at least ``threshold`` of its distinct n-grams do (PaLM's 70% rule:
shared legal boilerplate alone does not mark an item). Items with fewer than ``n`` tokens have
no n-gram and are counted as ``too_short`` (they cannot be checked this way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from pipelines.dedup.shingle import shingle_texts

DEFAULT_NGRAM = 13
DEFAULT_THRESHOLD = 0.7


def ngram_hashes(texts: Sequence[str], n: int = DEFAULT_NGRAM) -> list[np.ndarray]:
    """Distinct n-gram hashes (uint64, sorted) of each text; empty for texts shorter than n tokens."""
    if not texts:
        return []
    sh = shingle_texts(pl.Series(list(texts), dtype=pl.String), ngram=n, cjk_ngram=n)
    tokens_ok = _long_enough(texts, n)
    return [np.unique(sh.of(i)) if tokens_ok[i] else np.zeros(0, np.uint64) for i in range(len(texts))]


def _long_enough(texts: Sequence[str], n: int) -> np.ndarray:
    """Whether each text has at least n tokens (the shingler makes one short shingle otherwise)."""
    from pipelines.dedup.shingle import token_hashes

    _, tokens, _ = token_hashes(pl.Series(list(texts), dtype=pl.String))
    return np.asarray(tokens) >= n


@dataclass
class OverlapReport:
    """Per item: how many distinct n-grams it has and how many of them the corpus contains."""

    ngram: int
    threshold: float
    ngrams: np.ndarray  # int64 per item
    found: np.ndarray  # int64 per item
    corpus_docs: int = 0
    ids: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> np.ndarray:
        return np.where(self.ngrams > 0, self.found / np.maximum(self.ngrams, 1), 0.0)

    @property
    def overlapping(self) -> np.ndarray:
        return self.found > 0

    @property
    def contaminated(self) -> np.ndarray:
        return (self.ngrams > 0) & (self.fraction >= self.threshold)

    def summary(self, max_ids: int = 20) -> dict:
        """JSON-ready counts, with the ids of up to ``max_ids`` contaminated items."""
        bad = np.flatnonzero(self.contaminated)
        return {
            "n": len(self.ngrams),
            "ngram": self.ngram,
            "threshold": self.threshold,
            "corpus_docs": self.corpus_docs,
            "too_short": int((self.ngrams == 0).sum()),
            "overlapping": int(self.overlapping.sum()),
            "contaminated": len(bad),
            "contaminated_ids": [self.ids[i] if i < len(self.ids) else str(i) for i in bad[:max_ids]],
        }


class OverlapIndex:
    """The n-grams of a set of items; `scan` corpus batches, then `report`."""

    def __init__(
        self,
        texts: Sequence[str],
        *,
        n: int = DEFAULT_NGRAM,
        threshold: float = DEFAULT_THRESHOLD,
        ids: Sequence[str] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError(f"n-gram size must be >= 1, got {n}")
        if not 0 < threshold <= 1:
            raise ValueError(f"overlap threshold must be in (0, 1], got {threshold}")
        self.n, self.threshold = n, threshold
        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        per_item = ngram_hashes(texts, n)
        self.counts = np.array([len(h) for h in per_item], np.int64)
        owner = np.repeat(np.arange(len(per_item)), self.counts)
        flat = np.concatenate(per_item) if per_item else np.zeros(0, np.uint64)
        order = np.argsort(flat, kind="stable")
        self.hashes, self.owner = flat[order], owner[order]  # sorted; an n-gram of several items repeats
        self.seen = np.zeros(len(self.hashes), bool)
        self.docs = 0

    def scan(self, corpus_texts: Iterable[str]) -> None:
        """Mark the item n-grams that occur in these corpus documents."""
        batch = list(corpus_texts)
        self.docs += len(batch)
        if not batch or not len(self.hashes):
            return
        sh = shingle_texts(pl.Series(batch, dtype=pl.String), ngram=self.n, cjk_ngram=self.n)
        if len(sh.hashes):
            self.seen |= np.isin(self.hashes, sh.hashes)

    def report(self) -> OverlapReport:
        found = np.bincount(self.owner[self.seen], minlength=len(self.counts)).astype(np.int64)
        return OverlapReport(self.n, self.threshold, self.counts, found, self.docs, self.ids)


__all__ = ["DEFAULT_NGRAM", "DEFAULT_THRESHOLD", "OverlapIndex", "OverlapReport", "ngram_hashes"]
