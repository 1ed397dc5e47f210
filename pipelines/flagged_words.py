"""Flagged-word lists and their Aho-Corasick matcher, one pass over a whole shard.

The automaton is ``ahocorasick_rs`` (the Rust aho-corasick crate, leftmost-longest matching).
pyahocorasick, the usual choice, ran at 1.5 MB/s on a shard of Chinese court text with 5,000
terms here, against 34 MB/s for ahocorasick_rs on the same string, and its bytes automaton
(contiguous NFA) on the shard's UTF-8 buffer is faster again (no char-index conversion; and Polars' own
``str.extract_many`` reports only the shortest match at a position, which would let a term
inside an allowed phrase count).

List files (UTF-8, one entry a line; ``#`` starts a comment line, blank lines are skipped)::

    [gambling]                # a section: the category of the terms below it
    网络赌场
    百家乐<TAB>gambling<TAB>2  # term, category, weight (tab-separated; both optional)
    !百家乐园                 # '!' = an allowed phrase: a term inside it is not a hit
    casino

Terms are matched case-insensitively on the NFKC text. How a hit is delimited depends on the
script at each end of the term, on purpose:

- a Latin (or digit) end must sit at a word boundary: ``ass`` is no hit in ``class``, and
  ``casino`` is one in ``casino网站`` (a Han character is a boundary for a Latin word);
- a Chinese end needs none: Chinese has no spaces, so a listed term is a hit wherever it stands
  (``赌博`` in ``网络赌博网站``). A term that is also part of innocent longer words is made safe by
  listing those words as allowed phrases (``!淫羊藿``: a herb). Matching is leftmost-longest,
  so a hit inside a longer listed term or allowed phrase never counts twice or at all;
- whitespace between two Han characters is removed first (``赌 博``), since Chinese text has
  none: it is re-wrapped lines or an attempt to split a term.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.dedup.shingle import nfkc, string_buffers

DEFAULT_CATEGORY = "general"
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_SECTION = re.compile(r"^\[([^\]]*)\]\s*(?:#.*)?$")
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_JOIN = re.compile(rf"([{_HAN}])\s+(?=[{_HAN}])")
_SPACED = rf"[{_HAN}]\s+[{_HAN}]"  # the same, for Polars (no look-ahead there)
SEP = "\x00"  # between documents in the shard string: in no term, a boundary for every term


class ListError(ValueError):
    """A list file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Term:
    text: str  # as matched: NFKC, lower case
    category: str
    weight: float
    origin: str  # file:line, for error messages and details


def is_latin(ch: str) -> bool:
    """A character that needs a word boundary next to it (letters and digits outside CJK)."""
    if not ch.isalnum():
        return False
    cp = ord(ch)
    return not (0x3040 <= cp <= 0x30FF or 0x3400 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7AF or 0xF900 <= cp <= 0xFAFF)


@lru_cache(maxsize=1)
def _latin_bmp() -> np.ndarray:
    return np.array([is_latin(chr(c)) for c in range(0x10000)], bool)


def latin_table(cps: np.ndarray) -> np.ndarray:
    """`is_latin` of many code points (a table for the BMP, one call each above it)."""
    out = np.zeros(len(cps), bool)
    bmp = cps < 0x10000
    out[bmp] = _latin_bmp()[cps[bmp]]
    for k in np.flatnonzero(~bmp).tolist():
        out[k] = is_latin(chr(int(cps[k])))
    return out


def _decode_at(buf: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Code points of the UTF-8 characters whose lead bytes are at ``p`` (all inside ``buf``)."""
    size = len(buf)

    def cont(k: int) -> np.ndarray:
        return buf[np.minimum(p + k, size - 1)].astype(np.int64) & 0x3F

    b0 = buf[p].astype(np.int64)
    return np.select(
        [b0 < 0x80, b0 < 0xE0, b0 < 0xF0],
        [b0, ((b0 & 0x1F) << 6) | cont(1), ((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2)],
        ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
    )


def _code_point_at(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Code point of the UTF-8 character starting at byte ``pos`` (0 past the end); ASCII, the
    common neighbour, is its own byte, so only the others are decoded."""
    cps = buf[np.minimum(pos, len(buf) - 1)].astype(np.int64)
    cps[pos >= len(buf)] = 0
    wide = np.flatnonzero(cps >= 0x80)
    if len(wide):
        cps[wide] = _decode_at(buf, pos[wide])
    return cps


def _code_point_before(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Code point of the UTF-8 character that ends just before byte ``pos`` (0 at the start)."""
    cps = buf[np.maximum(pos - 1, 0)].astype(np.int64)
    cps[pos <= 0] = 0
    wide = np.flatnonzero(cps >= 0x80)
    if len(wide):
        lead = pos[wide] - 1
        for _ in range(3):  # step back over continuation bytes (10xxxxxx) to the lead byte
            more = (lead > 0) & ((buf[np.maximum(lead, 0)] & 0xC0) == 0x80)
            lead = np.where(more, lead - 1, lead)
        cps[wide] = _decode_at(buf, lead)
    return cps


def fold(text: str) -> str:
    """The form terms and texts are compared in."""
    import unicodedata

    return _JOIN.sub(r"\1", unicodedata.normalize("NFKC", text).lower())


def check_category(name: str, where: str) -> str:
    if not CATEGORY_RE.match(name):
        raise ListError(f"{where}: category {name!r} must be lower-case letters, digits and _ (a column name)")
    return name


def list_entries(path: Path, what: str) -> Iterator[tuple[str, str, str]]:
    """(where, raw line, the current ``[category]`` section) of every entry of a list file (word
    lists and URL blocklists share the format: ``#`` comments, blank lines, ``[category]`` headers)."""
    if not path.is_file():
        raise ListError(f"{path}: {what} not found")
    category = DEFAULT_CATEGORY
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path}:{lineno}"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if section := _SECTION.match(line):
            category = check_category(section.group(1).strip(), where)
            continue
        yield where, raw, category


def parse_list(path: Path) -> tuple[list[Term], list[str]]:
    """(terms, allowed phrases) of one list file; every error names the file and line."""
    terms: list[Term] = []
    allowed: list[str] = []
    for where, raw, category in list_entries(path, "word list"):
        fields = [f.strip() for f in raw.split("\t")]
        text = fold(fields[0].strip())
        if text.startswith("!"):
            if len(fields) > 1 or not text[1:].strip():
                raise ListError(f"{where}: an allowed phrase is '!' and the phrase, nothing else")
            allowed.append(text[1:].strip())
            continue
        if not text or SEP in text:
            raise ListError(f"{where}: empty term")
        if len(fields) > 3:
            raise ListError(f"{where}: expected term[<TAB>category[<TAB>weight]], got {len(fields)} fields")
        cat = check_category(fields[1], where) if len(fields) > 1 and fields[1] else category
        weight = 1.0
        if len(fields) > 2 and fields[2]:
            try:
                weight = float(fields[2])
            except ValueError:
                raise ListError(f"{where}: weight {fields[2]!r} is not a number") from None
            if not weight > 0:
                raise ListError(f"{where}: weight must be > 0, got {weight}")
        terms.append(Term(text, cat, weight, where))
    return terms, allowed


class WordMatcher:
    """All terms of all lists in one automaton; `count` gives weighted hits per category."""

    def __init__(self, terms: Sequence[Term], allowed: Iterable[str] = ()) -> None:
        import ahocorasick_rs

        seen: dict[str, Term] = {}
        for t in terms:
            if t.text in seen and seen[t.text].category != t.category:
                raise ListError(
                    f"{t.origin}: term {t.text!r} is already listed as {seen[t.text].category!r} "
                    f"({seen[t.text].origin})"
                )
            seen.setdefault(t.text, t)
        self.terms = list(seen.values())
        self.categories = sorted({t.category for t in self.terms})
        cat_index = {c: i for i, c in enumerate(self.categories)}
        self.term_category = np.array([cat_index[t.category] for t in self.terms], np.int64)
        self.term_weight = np.array([t.weight for t in self.terms], np.float64)
        self._left = np.array([is_latin(t.text[0]) for t in self.terms], bool)
        self._right = np.array([is_latin(t.text[-1]) for t in self.terms], bool)
        phrases = sorted(set(allowed) - set(seen))
        # pattern k is term k; the allowed phrases come after the terms (value -1)
        self._values = np.array([*range(len(self.terms)), *([-1] * len(phrases))], np.int64)
        patterns = [t.text.encode() for t in self.terms] + [p.encode() for p in phrases]
        self.empty = not self.terms
        self.automaton = (
            ahocorasick_rs.BytesAhoCorasick(
                patterns,
                matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST,
                implementation=ahocorasick_rs.Implementation.ContiguousNFA,
            )
            if patterns
            else None
        )

    def hits(self, texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(document, term, start byte offset in the folded UTF-8 text) of every hit in ``texts``.

        The automaton runs over the bytes of the whole shard (documents joined by `SEP`, straight
        from the Arrow buffer): matching UTF-8 patterns on UTF-8 bytes finds the same hits as on
        characters, without the char-index conversion a ``str`` haystack costs (4x slower here).
        """
        n = len(texts)
        if self.empty or n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        folded = nfkc(texts).str.to_lowercase()
        if folded.str.contains(_SPACED).any():
            folded = folded.str.replace_all(rf"([{_HAN}])\s+([{_HAN}])", "${1}${2}")
            folded = folded.str.replace_all(rf"([{_HAN}])\s+([{_HAN}])", "${1}${2}")  # 赌 博 网: overlapping pairs
        offsets, buf = string_buffers(folded + SEP)
        starts = offsets[:-1]
        assert self.automaton is not None
        found = self.automaton.find_matches_as_indexes(buf)
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        arr = np.array(found, np.int64).reshape(-1, 3)
        term = self._values[arr[:, 0]]
        first, ends = arr[term >= 0, 1], arr[term >= 0, 2]  # an allowed phrase is no hit
        term = term[term >= 0]
        ok = np.ones(len(term), bool)
        check = np.flatnonzero(self._left[term] | self._right[term])
        if len(check):  # a Latin end next to a Latin letter or digit is inside a word: no hit
            t = term[check]
            before = _code_point_before(buf, first[check])
            after = _code_point_at(buf, ends[check])
            inside = (self._left[t] & latin_table(before)) | (self._right[t] & latin_table(after))
            ok[check[inside]] = False
        doc = np.searchsorted(starts, first[ok], side="right") - 1
        return doc, term[ok], first[ok] - starts[doc]

    def count(self, texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted hits per document and category (float64 [docs, categories]), and the
        (document, term) pairs of the hits, for details."""
        doc, term, _ = self.hits(texts)
        out = np.zeros((len(texts), len(self.categories)), np.float64)
        if len(doc):
            np.add.at(out, (doc, self.term_category[term]), self.term_weight[term])
        return out, doc, term


def load_lists(paths: Sequence[str | Path]) -> WordMatcher:
    terms: list[Term] = []
    allowed: list[str] = []
    for p in paths:
        t, a = parse_list(Path(p))
        terms += t
        allowed += a
    return WordMatcher(terms, allowed)


__all__ = ["DEFAULT_CATEGORY", "ListError", "Term", "WordMatcher", "fold", "is_latin", "load_lists", "parse_list"]
