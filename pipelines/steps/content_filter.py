"""`content_filter`: flagged words (per category, weighted) and URL/domain blocklists.

- URL rules (`pipelines.url_blocklist`) reject a document outright: ``blocked_url:<category>``,
  with the rule and its file line in ``detail``.
- Flagged-word lists (`pipelines.flagged_words`, one Aho-Corasick automaton over the whole
  shard) give every document its weighted hits per category, kept as the struct column
  ``content_flags`` (one float per category) so limits can be tuned in SQL before they reject
  anything. A category rejects a document (``flagged:<category>``) when its weighted hits exceed
  ``max_hits``, or reach ``min_hits`` and exceed ``max_hits_per_1k_chars`` per 1,000
  characters; ``categories`` sets other limits per category (``reject: false`` only counts).
  A judgment about a gambling case names gambling; the density rule, with ``min_hits``, is what
  tells it from a gambling site's page, and a legal corpus may well count that category only.

The lists' contents are part of the step's identity (``lists_digest``): editing a list
recomputes the stage on the next build.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.flagged_words import ListError, WordMatcher, load_lists
from pipelines.step import Step, StepContext, StepOutput, reject
from pipelines.url_blocklist import UrlBlocklist, load_blocklists

FLAGS_COLUMN = "content_flags"
LIMIT_KEYS = {"max_hits_per_1k_chars", "min_hits", "max_hits", "reject"}
TOP_TERMS = 5


@dataclass(frozen=True)
class Limits:
    per_1k: float | None
    min_hits: float
    max_hits: float | None
    reject: bool

    def exceeded(self, hits: float, chars: int) -> float:
        """How far over its limits a category is (> 1 rejects; 0 when within them)."""
        if not self.reject or hits <= 0:
            return 0.0
        over = 0.0
        if self.max_hits is not None and hits > self.max_hits:
            over = max(over, 1.0 + hits / max(self.max_hits, 1e-9))
        if self.per_1k is not None and hits >= self.min_hits:
            density = hits * 1000.0 / max(chars, 1)
            if density > self.per_1k:
                over = max(over, density / max(self.per_1k, 1e-9))
        return over


@dataclass
class ContentFilter(Step):
    name: ClassVar[str] = "content_filter"
    version: ClassVar[str] = "1"

    word_lists: list[str] = field(default_factory=list)
    url_blocklist: str | list[str] | None = None
    max_hits_per_1k_chars: float | None = 10.0
    min_hits: float = 3.0  # weighted hits a category needs before its density counts
    max_hits: float | None = None  # weighted hits above which a category rejects at any length
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)  # category -> limits above, reject
    filter: bool = True  # false: count and block nothing (tune the limits on the catalog first)
    # the lists' contents: part of params(), so editing a list recomputes the stage
    lists_digest: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._urls = [self.url_blocklist] if isinstance(self.url_blocklist, str) else list(self.url_blocklist or [])
        try:
            matcher, blocklist = load_lists(self.word_lists), load_blocklists(self._urls)
        except ListError as exc:
            raise ValueError(str(exc)) from None
        self._categories = matcher.categories
        unknown = sorted(set(self.categories) - set(self._categories) - set(blocklist.categories))
        if unknown:
            raise ValueError(f"categories: {unknown} are in no list; the lists have {self._categories}")
        self._limits = {c: self._limits_for(c) for c in self._categories}
        self.adds = (  # type: ignore[misc]  # the column's fields are the lists' categories
            (pa.field(FLAGS_COLUMN, pa.struct([pa.field(c, pa.float32()) for c in self._categories])),)
            if self._categories
            else ()
        )
        digest = hashlib.sha256()
        for p in [*self.word_lists, *self._urls]:
            digest.update(Path(p).read_bytes())
        self.lists_digest = digest.hexdigest()[:16]
        self._matcher: WordMatcher | None = matcher
        self._blocklist: UrlBlocklist | None = blocklist

    def _limits_for(self, category: str) -> Limits:
        over = self.categories.get(category) or {}
        if not isinstance(over, dict) or not set(over) <= LIMIT_KEYS:
            raise ValueError(f"categories.{category}: expected a mapping with keys from {sorted(LIMIT_KEYS)}")
        per_1k = over.get("max_hits_per_1k_chars", self.max_hits_per_1k_chars)
        min_hits = over.get("min_hits", self.min_hits)
        max_hits = over.get("max_hits", self.max_hits)
        for key, value in (("max_hits_per_1k_chars", per_1k), ("min_hits", min_hits), ("max_hits", max_hits)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ValueError(f"categories.{category}.{key}: must be a number >= 0 or null, got {value!r}")
        reject_it = over.get("reject", True)
        if not isinstance(reject_it, bool):
            raise ValueError(f"categories.{category}.reject: must be true or false, got {reject_it!r}")
        return Limits(per_1k, float(min_hits or 0), max_hits, reject_it and self.filter)

    def __getstate__(self) -> dict[str, Any]:
        """Workers rebuild the automaton from the lists (`setup`) rather than unpickle it."""
        return {**self.__dict__, "_matcher": None, "_blocklist": None}

    def setup(self, root: Path) -> None:
        if self._matcher is None:
            self._matcher = load_lists(self.word_lists)
        if self._blocklist is None:
            self._blocklist = load_blocklists(self._urls)

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        self.setup(ctx.root)
        assert self._matcher is not None and self._blocklist is not None
        n = df.height
        hits, hit_doc, hit_term = self._matcher.count(df.get_column("text"))
        chars = df.get_column("text").str.len_chars().to_numpy()
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        if self.filter:
            for i, rule in enumerate(self._blocklist.match(df.get_column("url"))):
                if rule is not None:
                    reasons[i] = f"blocked_url:{rule.category}"
                    details[i] = json.dumps({"rule": rule.text, "list": rule.origin}, ensure_ascii=False)
            self._judge_words(hits, chars, hit_doc, hit_term, reasons, details)
        out = df
        if self._categories:
            flags = pl.DataFrame(
                {c: pl.Series(hits[:, k], dtype=pl.Float32) for k, c in enumerate(self._categories)}
            ).select(pl.struct(self._categories).alias(FLAGS_COLUMN))
            out = df.with_columns(flags.to_series())
        removed = pl.Series(reasons, dtype=pl.String).is_not_null()
        marked = out.with_columns(
            pl.Series("__reason", reasons, dtype=pl.String), pl.Series("__detail", details, dtype=pl.String)
        )
        kept = marked.filter(~removed).drop("__reason", "__detail")
        rejected = reject(marked.filter(removed), self.name, pl.col("__reason"), detail=pl.col("__detail"))
        return StepOutput(kept, rejected)

    def _judge_words(
        self,
        hits: np.ndarray,
        chars: np.ndarray,
        hit_doc: np.ndarray,
        hit_term: np.ndarray,
        reasons: list[str | None],
        details: list[str | None],
    ) -> None:
        """Reject documents whose worst category is over its limits (URL rejects come first)."""
        assert self._matcher is not None
        for i in np.flatnonzero(hits.sum(axis=1) > 0).tolist():
            if reasons[i] is not None:
                continue
            over = [
                (self._limits[c].exceeded(float(hits[i, k]), int(chars[i])), k) for k, c in enumerate(self._categories)
            ]
            worst, k = max(over)
            if worst == 0.0:
                continue
            category = self._categories[k]
            limits = self._limits[category]
            mine = hit_term[(hit_doc == i) & (self._matcher.term_category[hit_term] == k)]
            terms, counts = np.unique(mine, return_counts=True)
            top = [self._matcher.terms[t].text for t in terms[np.argsort(-counts, kind="stable")][:TOP_TERMS]]
            reasons[i] = f"flagged:{category}"
            details[i] = json.dumps(
                {
                    "category": category,
                    "hits": round(float(hits[i, k]), 3),
                    "per_1k_chars": round(float(hits[i, k]) * 1000.0 / max(int(chars[i]), 1), 3),
                    "max_hits_per_1k_chars": limits.per_1k,
                    "max_hits": limits.max_hits,
                    "terms": top,
                },
                ensure_ascii=False,
            )
