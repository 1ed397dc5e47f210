"""`decontaminate`: remove evaluation items (benchmark questions, held-out texts) from the corpus.

- reduce (once per build, one executor task): every configured evaluation file (JSONL or
  Parquet, any text fields: question, options, answer, prompt, response, text ...) becomes one
  `pipelines.overlap.NgramIndex`, written to the stage's ``eval_index/``. The scan phase has
  nothing to collect: the index does not depend on the corpus.
- process (per shard): the shard's n-grams (CJK-aware: a Han character or a Latin word per
  token, after NFKC, case, digit, punctuation and whitespace folding, so re-wrapped,
  re-punctuated and full-width copies match) are looked up in the index, one table lookup
  each. A document is contaminated by an item when it holds at least ``min_overlap`` of the
  item's distinct n-grams (PaLM's rule; one shared 13-gram, GPT-3's, would mark every judgment
  that quotes the statute an exam question quotes).
  ``mode: drop`` rejects it (``contaminated``; ``detail``: eval set, item id, overlap and a
  matched n-gram). ``mode: cut`` removes each matched n-gram of the contaminating items plus
  ``cut_window`` characters on either side, widened to the nearest sentence end (NeMo
  Curator's approach), keeps the pieces of at least ``min_piece_chars`` characters, joined by
  a blank line, and drops the document when more than ``max_splits`` pieces, or none, are
  left. Instruction rows (prompt/response in ``meta``) are dropped, never cut.
- the catalog table ``contamination`` has one row per (document, item) with an overlap of at
  least ``record_overlap``: doc_id, eval_set, item_id, overlap, ngrams_found, item_ngrams and
  the action (``dropped``, ``cut``, or ``kept`` for a near miss below ``min_overlap``), so the
  threshold can be tuned in SQL; the audit ``eval_contamination`` rescans the published shards.

The evaluation files' contents are part of the step's identity (``eval_digest``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa

from corpus.store import write_table
from pipelines.overlap import (
    DEFAULT_NGRAM,
    EvalItems,
    EvalItemsError,
    Matches,
    NgramIndex,
    read_eval_items,
    token_spans,
)
from pipelines.step import GlobalStep, StepContext, StepOutput, reject
from pipelines.steps.instruction_meta import has_meta_text

TABLE = "contamination"
TABLE_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("overlap", pa.float32(), nullable=False),
        pa.field("ngrams_found", pa.int32(), nullable=False),
        pa.field("item_ngrams", pa.int32(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
    ]
)
SENTENCE_END = frozenset(".!?。！？\n")
INDEX_DIR = "eval_index"


def parse_eval_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH`` (named by the file stem)."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and name.isidentifier():
        return name, path
    return None, spec


def load_eval_sets(specs: list[str], keys: list[str] | None) -> list[EvalItems]:
    sets = [read_eval_items(path, name=name, keys=keys) for name, path in map(parse_eval_spec, specs)]
    names = [s.name for s in sets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EvalItemsError(f"eval set name(s) used twice: {dupes}; name them with NAME=PATH")
    return sets


@dataclass(frozen=True)
class ItemTable:
    """The indexed items in index order: their set and id."""

    sets: list[str]
    ids: list[str]


@lru_cache(maxsize=2)
def _load_index(directory: Path, stamp: float) -> tuple[NgramIndex, ItemTable]:
    items = pl.read_parquet(directory / "items.parquet")
    table = ItemTable(items.get_column("eval_set").to_list(), items.get_column("item_id").to_list())
    return NgramIndex.load(directory / "index.npz"), table


def load_index(directory: Path) -> tuple[NgramIndex, ItemTable]:
    """The index the reduce wrote, read once per worker process."""
    path = directory / "index.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no evaluation index (the reduce did not run)")
    return _load_index(directory, path.stat().st_mtime)


def build_index(sets: list[EvalItems], ngram: int, min_ngram: int | None) -> tuple[NgramIndex, ItemTable]:
    fields = [f for s in sets for f in s.fields]
    index = NgramIndex.build(fields, n=ngram, min_ngram=min_ngram)
    return index, ItemTable([s.name for s in sets for _ in s.ids], [i for s in sets for i in s.ids])


@dataclass
class Decontaminate(GlobalStep):
    name: ClassVar[str] = "decontaminate"
    version: ClassVar[str] = "1"

    eval_sets: list[str] = field(default_factory=list)  # paths, or NAME=PATH
    ngram: int = DEFAULT_NGRAM  # tokens: Latin words or Han characters
    min_ngram: int | None = 8  # an item with no field of `ngram` tokens: whole fields of this many or more
    min_overlap: float = 0.7  # share of an item's n-grams a document must hold to be contaminated by it
    fields: list[str] | None = None  # only these keys of an evaluation record (default: every text field)
    mode: Literal["drop", "cut"] = "drop"
    cut_window: int = 200  # characters removed on either side of a matched n-gram (then to a sentence end)
    min_piece_chars: int = 200  # shorter pieces left by a cut are dropped
    max_splits: int = 10  # a document cut into more pieces than this is dropped
    record_overlap: float = 0.2  # (document, item) pairs with at least this overlap go to `contamination`
    # the evaluation files' contents: part of params(), so a changed set recomputes the stage
    eval_digest: str = field(default="", init=False)

    def __post_init__(self) -> None:
        if not self.eval_sets:
            raise ValueError("decontaminate needs eval_sets: a list of JSONL/Parquet files (or NAME=PATH)")
        if self.ngram < 2:
            raise ValueError(f"ngram must be >= 2, got {self.ngram}")
        if self.min_ngram is not None and not 1 <= self.min_ngram <= self.ngram:
            raise ValueError(f"min_ngram must be in 1..ngram ({self.ngram}) or null, got {self.min_ngram}")
        if not 0 < self.min_overlap <= 1:
            raise ValueError(f"min_overlap must be in (0, 1], got {self.min_overlap}")
        if not 0 < self.record_overlap <= self.min_overlap:
            raise ValueError(f"record_overlap must be in (0, min_overlap], got {self.record_overlap}")
        if self.mode not in ("drop", "cut"):
            raise ValueError(f"mode must be 'drop' or 'cut', got {self.mode!r}")
        for key in ("cut_window", "min_piece_chars", "max_splits"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        try:  # read now: a bad file fails when the config is read, naming the file and line
            load_eval_sets(self.eval_sets, self.fields)
        except EvalItemsError as exc:
            raise ValueError(f"eval_sets: {exc}") from None
        digest = hashlib.sha256()
        for _, path in map(parse_eval_spec, self.eval_sets):
            digest.update(Path(path).read_bytes())
        self.eval_digest = digest.hexdigest()[:16]

    # -- scan and reduce ---------------------------------------------------------------------
    def scan(self, df: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """Nothing to collect from the corpus: the index is built from the evaluation files."""
        return pl.DataFrame({"doc_id": pl.Series([], dtype=pl.String)})

    def reduce(self, ctx: StepContext) -> dict[str, Any]:
        """The evaluation index, once per build: ``eval_index/index.npz`` and ``items.parquet``."""
        try:
            sets = load_eval_sets(self.eval_sets, self.fields)
        except EvalItemsError as exc:
            raise ValueError(f"step {self.name!r}: {exc}") from None
        index, items = build_index(sets, self.ngram, self.min_ngram)
        directory = ctx.stage.scratch(INDEX_DIR)
        table = pl.DataFrame(
            {"eval_set": items.sets, "item_id": items.ids, "ngrams": index.item_ngrams.astype(np.int32)}
        )
        write_table(table.to_arrow(), directory / "items.parquet")
        index.save(directory / "index.npz")
        return {
            "items": len(items.ids),
            "ngrams": len(index.hashes),
            "unchecked_items": int((index.item_ngrams == 0).sum()),  # too short for any n-gram
        }

    # -- process -----------------------------------------------------------------------------
    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        index, items = load_index(ctx.stage.scratch(INDEX_DIR))
        texts = df.get_column("text")
        found = contamination(index, texts, self.min_overlap, self.record_overlap)
        reasons: list[str | None] = [None] * df.height
        details: list[str | None] = [None] * df.height
        new_texts: dict[int, str] = {}
        actions: dict[int, str] = {}
        instruction = has_meta_text(df).to_numpy() if self.mode == "cut" else None
        for d in np.unique(found.doc[found.contaminating]).tolist():
            text = texts[d]
            best = found.best(d)
            spans = token_spans(text)
            located = len(spans) == found.tokens[d]
            detail: dict[str, Any] = {
                "eval_set": items.sets[best],
                "item_id": items.ids[best],
                "overlap": round(found.overlap_of(d, best), 4),
                "ngram": found.first_ngram(d, best, text, spans) if located else None,
            }
            if self.mode == "cut":
                outcome = self._cut(text, spans, found.hit_spans(d), located, bool(instruction[d]))  # type: ignore[index]
                if isinstance(outcome, str):
                    new_texts[d] = outcome
                    actions[d] = "cut"
                    continue
                detail["cut"] = outcome["why"]
            reasons[d] = "contaminated"
            details[d] = json.dumps(detail, ensure_ascii=False)
            actions[d] = "dropped"
        self._write_table(df, found, items, actions, ctx)
        if new_texts:
            rows = sorted(new_texts)
            df = df.with_columns(
                texts.scatter(
                    pl.Series(rows, dtype=pl.UInt32), pl.Series([new_texts[r] for r in rows], dtype=pl.String)
                )
            )
        removed = pl.Series(reasons, dtype=pl.String).is_not_null()
        marked = df.with_columns(
            pl.Series("__reason", reasons, dtype=pl.String), pl.Series("__detail", details, dtype=pl.String)
        )
        kept = marked.filter(~removed).drop("__reason", "__detail")
        return StepOutput(
            kept, reject(marked.filter(removed), self.name, pl.col("__reason"), detail=pl.col("__detail"))
        )

    def _cut(
        self, text: str, spans: list[tuple[int, int]], hits: list[tuple[int, int]], located: bool, instruction: bool
    ) -> str | dict[str, str]:
        """The document without its contaminated passages, or why it is dropped instead."""
        if instruction:
            return {"why": "an instruction row (prompt/response in meta) is dropped, not cut"}
        if not located:
            return {"why": "the matched passages could not be located in the text"}
        pieces = cut_pieces(
            text, [(spans[s][0], spans[s + n - 1][1]) for s, n in hits], self.cut_window, self.min_piece_chars
        )
        if not pieces:
            return {"why": f"no piece of {self.min_piece_chars}+ characters left"}
        if len(pieces) > self.max_splits:
            return {"why": f"{len(pieces)} pieces left, more than max_splits ({self.max_splits})"}
        return "\n\n".join(pieces)

    def _write_table(
        self, df: pl.DataFrame, found: Contamination, items: ItemTable, actions: dict[int, str], ctx: StepContext
    ) -> None:
        rec = found.recorded
        docs = found.doc[rec].tolist()
        its = found.item[rec].tolist()
        ids = df.get_column("doc_id")
        table = pa.table(
            {
                "doc_id": [ids[d] for d in docs],
                "eval_set": [items.sets[i] for i in its],
                "item_id": [items.ids[i] for i in its],
                "overlap": found.overlap[rec].astype(np.float32),
                "ngrams_found": found.found[rec].astype(np.int32),
                "item_ngrams": found.item_ngrams[rec].astype(np.int32),
                "action": [
                    actions.get(d, "kept") if c else "kept"
                    for d, c in zip(docs, found.contaminating[rec].tolist(), strict=True)
                ],
            },
            schema=TABLE_SCHEMA,
        )
        write_table(table, ctx.stage.table(TABLE, ctx.shard_index))


@dataclass
class Contamination:
    """`Matches` of one batch, with each pair's overlap and what is recorded / contaminating."""

    matches: Matches
    item_ngrams: np.ndarray  # per pair
    overlap: np.ndarray  # per pair
    contaminating: np.ndarray  # bool per pair
    recorded: np.ndarray  # bool per pair
    tokens: np.ndarray  # per document

    @property
    def doc(self) -> np.ndarray:
        return self.matches.doc

    @property
    def item(self) -> np.ndarray:
        return self.matches.item

    @property
    def found(self) -> np.ndarray:
        return self.matches.found

    def best(self, doc: int) -> int:
        rows = np.flatnonzero((self.doc == doc) & self.contaminating)
        return int(self.item[rows[np.argmax(self.overlap[rows])]])

    def overlap_of(self, doc: int, item: int) -> float:
        return float(self.overlap[(self.doc == doc) & (self.item == item)][0])

    def _hits(self, doc: int) -> np.ndarray:
        """Occurrences in ``doc`` of n-grams of the items that contaminate it."""
        m = self.matches
        bad = set(self.item[(self.doc == doc) & self.contaminating].tolist())
        return np.flatnonzero((m.hit_doc == doc) & np.isin(m.hit_item, list(bad)))

    def hit_spans(self, doc: int) -> list[tuple[int, int]]:
        """(first token, tokens) of every contaminating occurrence in ``doc``."""
        k = self._hits(doc)
        return sorted(set(zip(self.matches.hit_start[k].tolist(), self.matches.hit_length[k].tolist(), strict=True)))

    def first_ngram(self, doc: int, item: int, text: str, spans: list[tuple[int, int]]) -> str:
        m = self.matches
        k = np.flatnonzero((m.hit_doc == doc) & (m.hit_item == item))
        first = k[np.argmin(m.hit_start[k])]
        s, n = int(m.hit_start[first]), int(m.hit_length[first])
        return text[spans[s][0] : spans[s + n - 1][1]]


def contamination(index: NgramIndex, texts: pl.Series, min_overlap: float, record_overlap: float) -> Contamination:
    """Every (document, item) overlap of ``texts`` against ``index``."""
    m = index.match(texts)
    item_ngrams = index.item_ngrams[m.item]
    overlap = m.found / np.maximum(item_ngrams, 1)
    return Contamination(m, item_ngrams, overlap, overlap >= min_overlap, overlap >= record_overlap, m.tokens)


def cut_pieces(text: str, spans: list[tuple[int, int]], window: int, min_chars: int) -> list[str]:
    """``text`` without every span widened by ``window`` characters and then to the nearest
    sentence end on each side; the pieces left of at least ``min_chars`` characters."""
    removed: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        lo, hi = max(0, s - window), min(len(text), e + window)
        while lo > 0 and text[lo - 1] not in SENTENCE_END:  # back to just after a sentence end
            lo -= 1
        while hi < len(text) and text[hi - 1] not in SENTENCE_END:  # on through the next one
            hi += 1
        if removed and lo <= removed[-1][1]:
            removed[-1] = (removed[-1][0], max(removed[-1][1], hi))
        else:
            removed.append((lo, hi))
    pieces, prev = [], 0
    for lo, hi in removed:
        pieces.append(text[prev:lo])
        prev = hi
    pieces.append(text[prev:])
    return [p.strip() for p in pieces if len(p.strip()) >= min_chars]


# -- the audit: published shards against the configured evaluation sets -------------------------
AUDIT_COLUMNS = ["shard", "doc_id", "eval_set", "item_id", "overlap"]


def published_contamination(params: dict[str, Any], shards: list[Path], batch_rows: int = 4096) -> list[tuple]:
    """(shard, doc_id, eval_set, item_id, overlap) of every published document that a build's
    ``decontaminate`` step (its recorded ``params``) would find contaminated, read from
    ``shards`` in batches: the step's own rule, applied to what was published."""
    import pyarrow.parquet as pq

    known = {k: v for k, v in params.items() if k in Decontaminate.__dataclass_fields__ and k != "eval_digest"}
    step = Decontaminate(**known)
    index, items = build_index(load_eval_sets(step.eval_sets, step.fields), step.ngram, step.min_ngram)
    rows: list[tuple] = []
    for path in shards:
        for batch in pq.ParquetFile(path).iter_batches(columns=["doc_id", "text"], batch_size=batch_rows):
            ids = batch.column("doc_id").to_pylist()
            found = contamination(
                index, pl.Series(batch.column("text").to_pylist(), dtype=pl.String), step.min_overlap, 1.0
            )
            for k in np.flatnonzero(found.contaminating).tolist():
                d, i = int(found.doc[k]), int(found.item[k])
                rows.append((str(path), ids[d], items.sets[i], items.ids[i], round(float(found.overlap[k]), 4)))
    return rows


__all__ = [
    "TABLE",
    "Contamination",
    "Decontaminate",
    "build_index",
    "contamination",
    "cut_pieces",
    "load_eval_sets",
    "published_contamination",
]
