"""CJK-aware n-gram overlap between evaluation items and a corpus: the one implementation.

Why: an evaluation item whose text also sits in the training data measures memory, not skill.
The evaluator's overlap guard (`training.eval`) and the ``decontaminate`` step both ask "which
of these items share n-grams with those documents", so the answer lives here, once.

Tokens come from the MinHash shingler (`pipelines.dedup.shingle.token_hashes`): NFKC, lower
case, digit runs as ``0``, punctuation and whitespace as separators, a word per token in
space-delimited scripts and a character per token in CJK text. So full/half-width forms,
punctuation, spacing and re-wrapped lines never hide a match, and a 13-gram of Chinese is 13
characters, of English 13 words, in one document as in the other (mixed text too). An n-gram's
hash is the shingler's polynomial in its token hashes (the same value its shingles have),
computed here from prefix sums so that any n costs the same few array passes.

`NgramIndex` holds the distinct n-grams of a set of items (each item a few text fields: a
question, its options, an answer): a sorted uint64 array with the items of every n-gram, and a
direct-address table over the top bits of the hash, so a corpus n-gram costs one table lookup
and only the rare hits a binary search. `NgramIndex.match` gives, per (document, item) pair,
how many of the item's n-grams the document holds, and where. An item field shorter than n
tokens has no n-gram; an item with no field of n tokens may be indexed by its whole fields of
at least ``min_ngram`` tokens (NeMo Curator's minimum n-gram), so short questions are checked.

`OverlapIndex` is the evaluator's guard on top: which items occur in a corpus at all.
An item is *overlapping* when any of its n-grams occurs in the corpus (GPT-3's 13-gram rule)
and *contaminated* when at least ``threshold`` of its distinct n-grams do (PaLM's 70% rule:
shared legal boilerplate alone does not mark an item).
"""

from __future__ import annotations

import gzip
import io
import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.dedup.shingle import CJK, SEP, char_info, token_hashes

DEFAULT_NGRAM = 13
DEFAULT_THRESHOLD = 0.7
ID_FIELDS = ("id", "doc_id", "item_id", "uid", "idx")
# the shingler's n-gram polynomial (pipelines.dedup.shingle._rolling): equal values, tested
_P = 0x9E3779B97F4A7C15
_NGRAM_SEED = 0xA0761D6478BD642F
_M64 = (1 << 64) - 1
CHUNK_TOKENS = 1 << 20  # tokens hashed per block of documents (the power tables' size)


class EvalItemsError(ValueError):
    """An evaluation file cannot be used; the message names the file, line and key."""


# -- evaluation items ----------------------------------------------------------------------------
@dataclass
class EvalItems:
    """The items of one evaluation set: an id and the text fields of each."""

    name: str
    path: str
    ids: list[str] = field(default_factory=list)
    fields: list[list[str]] = field(default_factory=list)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (an MCQ's options mapping or list, nested records)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def item_fields(rec: dict[str, Any], keys: Sequence[str] | None = None) -> list[str]:
    """The text fields of one record: every string in it (question, options, answer, prompt,
    response, passage ...) except ids, or only those under ``keys``. A short string (an answer
    key "B", a category) has no n-gram and costs nothing; ``meta`` given as a JSON string (a
    synthesised instruction row) is read as the object it holds."""
    out: list[str] = []
    for k, v in rec.items():
        if k in ID_FIELDS or (keys is not None and k not in keys):
            continue
        if k == "meta" and isinstance(v, str) and v.startswith("{"):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                pass
        out.extend(s for s in _strings(v) if s.strip())
    return out


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) of a JSONL (.jsonl, .jsonl.gz, .json lines) or Parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise EvalItemsError(f"{path}: not a readable Parquet file: {exc}") from None
        for i, rec in enumerate(table.to_pylist()):
            yield f"{path}:row {i}", rec
        return
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise EvalItemsError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
                if not isinstance(rec, dict):
                    raise EvalItemsError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                yield f"{path}:{lineno}", rec
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise EvalItemsError(f"{path}: cannot be read: {exc}") from None


def read_eval_items(path: str | Path, *, name: str | None = None, keys: Sequence[str] | None = None) -> EvalItems:
    """One evaluation file as items (ids from ``id``/``doc_id``/..., else the line or row)."""
    p = Path(path)
    if not p.is_file():
        raise EvalItemsError(f"{p}: evaluation file not found")
    stem = p.name
    for suffix in (".jsonl.gz", ".jsonl", ".json", ".parquet"):
        stem = stem.removesuffix(suffix)
    out = EvalItems(name or stem, str(p))
    seen: set[str] = set()
    for where, rec in _records(p):
        ident = next((str(rec[k]) for k in ID_FIELDS if rec.get(k) is not None), where.rsplit(":", 1)[-1])
        if ident in seen:
            raise EvalItemsError(f"{where}: item id {ident!r} used twice in the file")
        seen.add(ident)
        out.ids.append(ident)
        out.fields.append(item_fields(rec, keys))
    if not out.ids:
        raise EvalItemsError(f"{p}: no items")
    return out


# -- n-gram hashes -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _inverse() -> int:
    inv = _P
    for _ in range(6):  # Newton's iteration doubles the correct low bits: 3 -> 192
        inv = (inv * (2 - _P * inv)) & _M64
    assert (inv * _P) & _M64 == 1
    return inv


_POWERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P^k, P^-k) for k < n as uint64 (wrapping), grown on demand and kept per process."""
    size = max(n, CHUNK_TOKENS)
    have = next((k for k in _POWERS if k >= size), None)
    if have is None:
        base = np.empty(size, np.uint64)
        inv = np.empty(size, np.uint64)
        base[0] = inv[0] = 1
        base[1:] = _P
        inv[1:] = _inverse()
        with np.errstate(over="ignore"):
            _POWERS.clear()
            _POWERS[size] = (np.cumprod(base, dtype=np.uint64), np.cumprod(inv, dtype=np.uint64))
        have = size
    return _POWERS[have]


@dataclass
class Ngrams:
    """n-gram hashes of a batch of texts: ``hashes[k]`` covers tokens ``start[k]`` ..
    ``start[k] + length[k] - 1`` of text ``doc[k]``."""

    hashes: np.ndarray  # uint64
    doc: np.ndarray  # int64
    start: np.ndarray  # int64, token position in its text
    length: np.ndarray  # int64, tokens


def iter_ngrams(texts: pl.Series, lengths: Iterable[int]) -> tuple[Iterator[Ngrams], np.ndarray]:
    """The n-grams of every length in ``lengths`` at every position of every text, one block of
    about `CHUNK_TOKENS` tokens and one length at a time (so a caller keeps only what it needs),
    and the token count of each text."""
    tok, counts, _ = token_hashes(texts.cast(pl.String).fill_null(""))
    return _blocks(tok, counts.astype(np.int64), sorted(set(lengths))), counts.astype(np.int64)


def _blocks(tok: np.ndarray, counts: np.ndarray, lengths: list[int]) -> Iterator[Ngrams]:
    doc_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    lo, n_docs = 0, len(counts)
    while lo < n_docs:
        hi = int(np.searchsorted(doc_start, doc_start[lo] + CHUNK_TOKENS, side="right")) - 1
        hi = min(max(hi, lo + 1), n_docs)
        t0, t1 = int(doc_start[lo]), int(doc_start[hi])
        if t1 > t0:
            yield from _block(tok[t0:t1], doc_start[lo : hi + 1] - t0, lo, lengths)
        lo = hi


def ngrams(texts: pl.Series, lengths: Iterable[int]) -> tuple[Ngrams, np.ndarray]:
    """All of `iter_ngrams` in one `Ngrams` (for small inputs: evaluation items, tests)."""
    blocks, counts = iter_ngrams(texts, lengths)
    parts = list(blocks)
    if not parts:
        e = np.zeros(0, np.int64)
        return Ngrams(np.zeros(0, np.uint64), e, e, e), counts
    return Ngrams(*(np.concatenate([getattr(p, f) for p in parts]) for f in NGRAM_FIELDS)), counts


NGRAM_FIELDS = ("hashes", "doc", "start", "length")


def _block(tok: np.ndarray, bounds: np.ndarray, first_doc: int, lengths: list[int]) -> Iterator[Ngrams]:
    """n-grams of one block of whole documents (token hashes ``tok``, document bounds ``bounds``)."""
    block = _Block(tok, bounds)
    for n in lengths:
        h = block.all(n)
        starts = np.flatnonzero(block.remaining[: len(h)] >= n)  # the n-gram ends inside its document
        d = block.doc_of[starts]
        yield Ngrams(h[starts], d + first_doc, starts - bounds[d], np.full(len(starts), n, np.int64))


class _Block:
    """Prefix sums of one block of whole documents, from which the hash of any n tokens is two
    subtractions and a product: (Q[i+n] - Q[i]) * P^(i+n-1), Q the prefix sums of t * P^-i."""

    def __init__(self, tok: np.ndarray, bounds: np.ndarray) -> None:
        m = self.m = len(tok)
        self.pw, inv = _powers(m + 1)
        with np.errstate(over="ignore"):
            self.prefix = np.zeros(m + 1, np.uint64)
            np.cumsum(tok * inv[:m], out=self.prefix[1:])
        self.doc_of = np.repeat(np.arange(len(bounds) - 1, dtype=np.int64), np.diff(bounds))
        self.remaining = bounds[1:][self.doc_of] - np.arange(m, dtype=np.int64)  # tokens left in the document

    def all(self, n: int) -> np.ndarray:
        """The hash of the n tokens at every start (those crossing a document end are garbage)."""
        if self.m < n:
            return np.zeros(0, np.uint64)
        with np.errstate(over="ignore"):
            h = self.prefix[n:] - self.prefix[: self.m - n + 1]
            h *= self.pw[n - 1 : self.m]
            h ^= np.uint64((n * _NGRAM_SEED) & _M64)
        return h

    def at(self, starts: np.ndarray, n: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = (self.prefix[starts + n] - self.prefix[starts]) * self.pw[starts + n - 1]
            h ^= np.uint64((n * _NGRAM_SEED) & _M64)
        return h


def token_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the shingler's tokens of ``text`` (for locating and cutting matches;
    per character in Python, so only for the few documents that match)."""
    spans: list[tuple[int, int]] = []
    run_start = run_end = -1
    for i, ch in enumerate(text):
        for cls in _classes(ch):
            if cls == SEP or cls == CJK:
                if run_start >= 0:
                    spans.append((run_start, run_end))
                    run_start = -1
                if cls == CJK:
                    spans.append((i, i + 1))
            else:
                if run_start < 0:
                    run_start = i
                run_end = i + 1
    if run_start >= 0:
        spans.append((run_start, run_end))
    return spans


@lru_cache(maxsize=1 << 16)
def _classes(ch: str) -> tuple[int, ...]:
    """The shingler's class of each character ``ch`` becomes under NFKC and lower case."""
    return tuple(char_info(ord(c)) & 3 for c in unicodedata.normalize("NFKC", ch).lower())


# -- the index -----------------------------------------------------------------------------------
@dataclass
class Matches:
    """Per (document, item) pair with shared n-grams: how many of the item's distinct n-grams the
    document holds, and every matching n-gram occurrence (for locating and cutting)."""

    doc: np.ndarray  # int64, pairs
    item: np.ndarray  # int64, pairs
    found: np.ndarray  # int64, pairs: distinct item n-grams in the document
    hit_doc: np.ndarray  # int64, occurrences
    hit_item: np.ndarray
    hit_start: np.ndarray  # token position
    hit_length: np.ndarray  # tokens
    tokens: np.ndarray  # int64 per document: its token count


class NgramIndex:
    """The distinct n-grams of a list of items (each a list of text fields)."""

    def __init__(
        self,
        hashes: np.ndarray,
        ptr: np.ndarray,
        items: np.ndarray,
        item_ngrams: np.ndarray,
        n: int,
        lengths: Sequence[int] = (),
        anchors: np.ndarray | None = None,
        min_ngram: int | None = None,
    ) -> None:
        """``hashes`` sorted and distinct; the items of ``hashes[k]`` are ``items[ptr[k]:ptr[k+1]]``;
        ``item_ngrams[i]`` is item i's number of distinct n-grams; ``lengths`` the sizes of the
        whole short fields indexed besides ``n``, and ``anchors`` (sorted) the hashes of their
        first ``min_ngram`` tokens: the corpus is hashed at ``n`` and at ``min_ngram`` only, and a
        longer short field is hashed where its anchor matched."""
        self.hashes, self.ptr, self.items, self.item_ngrams, self.n = hashes, ptr, items, item_ngrams, n
        self.lengths = sorted({n, *lengths})
        self.short_lengths = [x for x in self.lengths if x != n]
        self.anchors = anchors if anchors is not None else np.zeros(0, np.uint64)
        self.min_ngram = min_ngram
        if self.short_lengths and (min_ngram is None or not len(self.anchors)):
            raise ValueError("an index with short fields needs their anchors and min_ngram")
        # a direct-address table over the hashes' top bits, ~32 slots per n-gram (3% false hits, at
        # most 64 MB): a corpus n-gram costs one lookup, and a binary search only when it hits
        bits = int(min(26, max(16, np.ceil(np.log2(max(len(hashes), 1) * 32)))))
        self._shift = np.uint64(64 - bits)
        self._table = np.zeros(1 << bits, bool)
        self._table[hashes >> self._shift] = True

    @classmethod
    def build(
        cls, fields: Sequence[Sequence[str]], *, n: int = DEFAULT_NGRAM, min_ngram: int | None = None
    ) -> NgramIndex:
        """Index items (``fields[i]``: the texts of item i). A field gives its n-grams; an item
        without a field of ``n`` tokens is indexed by its whole fields of ``min_ngram`` or more
        tokens (when ``min_ngram`` is set and they hold ``n`` tokens together), so that a short
        question with short options can still be found."""
        if n < 1:
            raise ValueError(f"n-gram size must be >= 1, got {n}")
        if min_ngram is not None and not 1 <= min_ngram <= n:
            raise ValueError(f"min_ngram must be in 1..{n}, got {min_ngram}")
        flat = [t for f in fields for t in f]
        owner = np.repeat(np.arange(len(fields), dtype=np.int64), [len(f) for f in fields])
        if flat:
            grams, counts = ngrams(pl.Series(flat, dtype=pl.String), range(min_ngram or n, n + 1))
        else:
            grams, counts = Ngrams(*(np.zeros(0, t) for t in (np.uint64, np.int64, np.int64, np.int64))), np.zeros(0)
        has_full = np.zeros(len(fields), bool)
        np.logical_or.at(has_full, owner, counts >= n)
        short_tokens = np.zeros(len(fields), np.int64)  # tokens in fields that can stand whole
        if min_ngram is not None:
            np.add.at(short_tokens, owner, np.where((counts >= min_ngram) & (counts < n), counts, 0))
        # an item without a full-size n-gram stands on its whole short fields only when they
        # hold n tokens together: "下列哪一选项正确" alone is in every exam book
        by_fields = ~has_full & (short_tokens >= n)
        field_item = owner[grams.doc] if len(grams.doc) else np.zeros(0, np.int64)
        full = grams.length == n
        whole = (grams.length < n) & (grams.start == 0) & (grams.length == counts[grams.doc]) if len(flat) else full
        keep = full | (whole & by_fields[field_item])
        pairs = np.unique(np.stack([grams.hashes[keep], field_item[keep].astype(np.uint64)]), axis=1)
        h, it = pairs[0], pairs[1].astype(np.int64)
        uniq, first = np.unique(h, return_index=True)
        ptr = np.append(first, len(h)).astype(np.int64)
        item_ngrams = np.bincount(it, minlength=len(fields)).astype(np.int64)
        short = keep & ~full
        anchors = np.zeros(0, np.uint64)
        if short.any():
            assert min_ngram is not None
            fields_with_short = np.unique(grams.doc[short])
            is_anchor = (grams.start == 0) & (grams.length == min_ngram) & np.isin(grams.doc, fields_with_short)
            anchors = np.unique(grams.hashes[is_anchor])
        lengths = sorted(set(grams.length[short].tolist()))
        return cls(uniq, ptr, it, item_ngrams, n, lengths, anchors, min_ngram if short.any() else None)

    def save(self, path: Path) -> None:
        """One ``.npz`` file, written atomically."""
        from corpus.store import write_bytes

        buf = io.BytesIO()
        np.savez(
            buf,
            hashes=self.hashes,
            ptr=self.ptr,
            items=self.items,
            item_ngrams=self.item_ngrams,
            n=np.int64(self.n),
            lengths=np.array(self.lengths, np.int64),
            anchors=self.anchors,
            min_ngram=np.int64(self.min_ngram or 0),
        )
        write_bytes(buf.getvalue(), path)

    @classmethod
    def load(cls, path: Path) -> NgramIndex:
        with np.load(path) as z:
            lengths = [int(x) for x in z["lengths"]]
            min_ngram = int(z["min_ngram"]) or None
            return cls(
                z["hashes"], z["ptr"], z["items"], z["item_ngrams"], int(z["n"]), lengths, z["anchors"], min_ngram
            )

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Position in ``self.hashes`` of every hash, -1 where absent: one table lookup each, a
        binary search only for the few the table lets through."""
        if not len(self.hashes) or not len(hashes):
            return np.full(len(hashes), -1, np.int64)
        maybe = np.flatnonzero(self._table[hashes >> self._shift])
        out = np.full(len(hashes), -1, np.int64)
        out[maybe] = self._confirm(hashes[maybe])
        return out

    def match(self, texts: pl.Series) -> Matches:
        """Which items' n-grams each text holds (see `Matches`)."""
        tok, counts, _ = token_hashes(texts.cast(pl.String).fill_null(""))
        doc_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        found: list[tuple[np.ndarray, ...]] = []  # (index position, doc, start, length) of hits
        lo, n_docs = 0, len(counts)
        while lo < n_docs:  # blocks of whole documents, about CHUNK_TOKENS tokens each
            hi = min(
                max(int(np.searchsorted(doc_start, doc_start[lo] + CHUNK_TOKENS, side="right")) - 1, lo + 1), n_docs
            )
            t0, t1 = int(doc_start[lo]), int(doc_start[hi])
            bounds = doc_start[lo : hi + 1] - t0
            block = _Block(tok[t0:t1], bounds)
            for n, at, h in self._candidates(block):
                pos = self._confirm(h)
                at = at[pos >= 0]
                if len(at):
                    d = block.doc_of[at]
                    found.append((pos[pos >= 0], d + lo, at - bounds[d], np.full(len(at), n, np.int64)))
            lo = hi
        e = np.zeros(0, np.int64)
        h_pos, hit_doc, hit_start, hit_len = (
            (np.concatenate(c) for c in zip(*found, strict=True)) if found else (e,) * 4
        )
        # every occurrence once per item that has the n-gram
        per = self.ptr[h_pos + 1] - self.ptr[h_pos]
        occ = np.repeat(np.arange(len(h_pos)), per)
        first = np.repeat(self.ptr[h_pos] - (np.cumsum(per) - per), per)
        item = self.items[first + np.arange(len(occ))]
        # distinct n-grams per (document, item): unique (document, n-gram), expanded to items
        dh = np.unique((hit_doc.astype(np.uint64) << np.uint64(32)) | h_pos.astype(np.uint64))
        d_doc = (dh >> np.uint64(32)).astype(np.int64)
        d_pos = (dh & np.uint64(0xFFFFFFFF)).astype(np.int64)
        d_per = self.ptr[d_pos + 1] - self.ptr[d_pos]
        d_first = np.repeat(self.ptr[d_pos] - (np.cumsum(d_per) - d_per), d_per)
        d_item = self.items[d_first + np.arange(int(d_per.sum()))]
        pair, n_found = np.unique(
            (np.repeat(d_doc, d_per).astype(np.uint64) << np.uint64(32)) | d_item.astype(np.uint64), return_counts=True
        )
        return Matches(
            (pair >> np.uint64(32)).astype(np.int64),
            (pair & np.uint64(0xFFFFFFFF)).astype(np.int64),
            n_found.astype(np.int64),
            hit_doc[occ],
            item,
            hit_start[occ],
            hit_len[occ],
            counts.astype(np.int64),
        )

    def _candidates(self, block: _Block) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(n, starts, hashes) of the block's n-grams that pass the direct-address table: every
        ``n``-gram, and the whole short fields where their ``min_ngram`` anchor occurs."""
        h = block.all(self.n)
        maybe = np.flatnonzero(self._table[h >> self._shift])  # one lookup per n-gram
        maybe = maybe[block.remaining[maybe] >= self.n]
        yield self.n, maybe, h[maybe]
        if not self.short_lengths:
            return
        assert self.min_ngram is not None
        a = block.all(self.min_ngram)
        pos = np.minimum(np.searchsorted(self.anchors, a), len(self.anchors) - 1)
        at = np.flatnonzero(self.anchors[pos] == a)
        for n in self.short_lengths:
            starts = at[block.remaining[at] >= n]
            yield n, starts, block.at(starts, n)

    def _confirm(self, hashes: np.ndarray) -> np.ndarray:
        """Position in ``self.hashes`` of each hash, or -1 (a binary search per hash)."""
        if not len(hashes):
            return np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return np.where(self.hashes[pos] == hashes, pos, -1)


# -- the evaluator's guard -----------------------------------------------------------------------
def ngram_hashes(texts: Sequence[str], n: int = DEFAULT_NGRAM) -> list[np.ndarray]:
    """Distinct n-gram hashes (uint64, sorted) of each text; empty for texts shorter than n tokens."""
    if not texts:
        return []
    grams, _ = ngrams(pl.Series(list(texts), dtype=pl.String), [n])
    order = np.argsort(grams.doc, kind="stable")
    bounds = np.searchsorted(grams.doc[order], np.arange(len(texts) + 1))
    return [np.unique(grams.hashes[order[a:b]]) for a, b in pairwise(bounds)]


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
    """Which n-grams of a set of items a corpus contains anywhere; `scan` batches, then `report`."""

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
        self.index = NgramIndex.build([[t] for t in texts], n=n)
        self.seen = np.zeros(len(self.index.hashes), bool)
        self.docs = 0

    def scan(self, corpus_texts: Iterable[str]) -> None:
        """Mark the item n-grams that occur in these corpus documents."""
        batch = list(corpus_texts)
        self.docs += len(batch)
        if not batch or not len(self.index.hashes):
            return
        blocks, _ = iter_ngrams(pl.Series(batch, dtype=pl.String), [self.n])
        for block in blocks:
            pos = self.index.lookup(block.hashes)
            self.seen[pos[pos >= 0]] = True

    def report(self) -> OverlapReport:
        idx = self.index
        per = np.diff(idx.ptr)
        seen_items = idx.items[np.repeat(self.seen, per)]
        found = np.bincount(seen_items, minlength=len(idx.item_ngrams)).astype(np.int64)
        return OverlapReport(self.n, self.threshold, idx.item_ngrams.copy(), found, self.docs, self.ids)


__all__ = [
    "DEFAULT_NGRAM",
    "DEFAULT_THRESHOLD",
    "EvalItems",
    "EvalItemsError",
    "Matches",
    "NgramIndex",
    "OverlapIndex",
    "OverlapReport",
    "item_fields",
    "iter_ngrams",
    "ngram_hashes",
    "ngrams",
    "read_eval_items",
    "token_spans",
]
