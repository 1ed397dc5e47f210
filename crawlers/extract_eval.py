"""Token-level precision / recall / F1 of an extracted body against its ground truth.

The measure of article-extraction benchmarks (Scrapinghub's article-extraction-benchmark,
trafilatura's evaluation): bags of tokens, words for Latin script and single characters for
CJK, so it does not depend on line breaks or whitespace. Used by the crawl tests and
`benchmarks/crawl.py`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\W_]+")


def tokens(text: str) -> Counter[str]:
    return Counter(t for t in TOKEN.findall(text.lower()))


@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def token_prf(gold: str, got: str | None) -> PRF:
    """Counts of one extracted body against its ground truth; add `PRF`s to micro-average."""
    g, o = tokens(gold), tokens(got or "")
    overlap = sum((g & o).values())
    return PRF(overlap, sum(o.values()) - overlap, sum(g.values()) - overlap)
