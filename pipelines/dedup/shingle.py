"""Shingling for English and Chinese alike, vectorised: Polars normalises, numpy hashes.

Normalisation (`normalize_for_shingles`): NFKC, lower case, every run of digits becomes ``0``
(so renumbered clauses and dates still match), punctuation, symbols and whitespace runs become one
space. A *token* is then a run of non-space bytes, except that every CJK character (Hiragana,
Katakana, CJK ideographs incl. Extension A and compatibility ideographs, Hangul syllables; see
``CJK_RANGES``) is a token of its own: a word in space-delimited scripts, a character in CJK.

Shingles are n-grams of tokens. The n is chosen per document from its script: documents whose
tokens are mostly CJK characters (or whose ``lang`` is zh/ja/ko and that have a real share of CJK
tokens) use ``cjk_ngram`` (character n-grams), the rest use ``ngram`` (word n-grams). A
document shorter than n tokens is one shingle (all of its tokens), so short texts still compare.

Hashing never loops per token in Python: a token's 64-bit hash is a polynomial hash of its bytes
computed from a prefix sum over the shard's byte buffer, and a shingle's hash is the same trick
over the token hashes; both are finished with a splitmix64 mixer. The scheme is our own and fixed
(``SHINGLE_VERSION``), unlike Polars' `hash`, so persisted signatures stay valid across upgrades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

SHINGLE_VERSION = 1
# Code point ranges of characters that are tokens on their own (all 3-byte UTF-8 sequences).
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
CJK_LANGS = ("zh", "ja", "ko", "yue", "wuu", "cmn")
# A document is CJK when at least this share of its tokens are CJK characters ...
CJK_SHARE = 0.5
# ... or when its `lang` says zh/ja/ko and at least this share are.
CJK_SHARE_WITH_LANG = 0.1
WINDOW_BYTES = 1 << 20  # token hashing works on windows of about this many bytes

_P_BYTE = np.uint64(0x100000001B3)  # odd multipliers for the two polynomial hashes
_P_TOKEN = np.uint64(0x9E3779B97F4A7C15)


def normalize_for_shingles(text: pl.Expr) -> pl.Expr:
    """Case, digits, punctuation and whitespace folded, with a trailing space so that no token
    ever runs from one document into the next. NFKC comes first, from `nfkc` (only where needed);
    CJK characters are split apart later, on bytes."""
    # fmt: off
    return (
        text.fill_null("")
        .str.to_lowercase()
        .str.replace_all(r"\d+", "0")
        .str.replace_all(r"[\p{P}\p{S}\p{C}\s]+", " ")
        .str.strip_chars(" ")
        + pl.lit(" ")
    )
    # fmt: on


def nfkc(texts: pl.Series) -> pl.Series:
    """NFKC (full-width forms, compatibility characters) only where a text is not pure ASCII:
    ASCII is already NFKC, and the normalisation is the most expensive part of shingling."""
    texts = texts.cast(pl.String).fill_null("")
    rows = texts.str.contains(r"[^\x00-\x7F]").to_numpy().nonzero()[0]
    if len(rows) == 0:
        return texts
    if len(rows) == len(texts):
        return texts.str.normalize("NFKC")
    return texts.scatter(rows, texts.gather(rows).str.normalize("NFKC"))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Finaliser: spreads the polynomial hashes' bits (uint64 in, uint64 out, wrapping)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class _Powers:
    """P**k and P**-k mod 2**64 for k < n, grown on demand (shared by every call in a process)."""

    def __init__(self, base: np.uint64) -> None:
        self.base = base
        self.inverse = np.uint64(pow(int(base), -1, 1 << 64))
        self.pow = np.ones(1, np.uint64)
        self.inv = np.ones(1, np.uint64)

    def upto(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pow) < n:
            size = max(n, 2 * len(self.pow), 1 << 21)
            with np.errstate(over="ignore"):
                self.pow = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, self.base, np.uint64))))
                self.inv = np.concatenate(([np.uint64(1)], np.cumprod(np.full(size - 1, self.inverse, np.uint64))))
        return self.pow[:n], self.inv[:n]


_BYTE_POWERS = _Powers(_P_BYTE)
_TOKEN_POWERS = _Powers(_P_TOKEN)


def _string_buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64[n+1], bytes uint8) of a string Series, zero-copy where Arrow allows."""
    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets, data


def _cjk_leads(data: np.ndarray) -> np.ndarray:
    """Bool mask of the first bytes of 3-byte UTF-8 characters in the CJK ranges (Hiragana,
    Katakana, CJK Unified Ideographs and Extension A, Hangul syllables, compatibility ideographs)."""
    lead = (data & 0xF0) == 0xE0
    idx = np.flatnonzero(lead[: max(0, len(data) - 2)])
    if len(idx) == 0:  # no 3-byte characters at all (e.g. English): nothing to split
        return np.zeros(len(data), bool)
    cp = ((data[idx].astype(np.int32) & 0x0F) << 12) | ((data[idx + 1].astype(np.int32) & 0x3F) << 6)
    cp |= data[idx + 2].astype(np.int32) & 0x3F
    ok = np.zeros(len(idx), bool)
    for lo, hi in CJK_RANGES:
        ok |= (cp >= lo) & (cp <= hi)
    out = np.zeros(len(data), bool)
    out[idx[ok]] = True
    return out


def _window_hashes(data: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token start offsets, 64-bit token hashes and CJK flags of one window ending with a space.
    A token is a run of non-space bytes, except that every CJK character is a token of its own."""
    nonspace = data != 32
    cjk = _cjk_leads(data)
    brk = cjk.copy()
    brk[3:] |= cjk[:-3]  # the byte after a CJK character starts a new token
    prev = np.concatenate(([False], nonspace[:-1]))
    nxt = np.concatenate((nonspace[1:], [False]))
    nxt_brk = np.concatenate((brk[1:], [False]))
    starts = np.flatnonzero(nonspace & (~prev | brk))
    ends = np.flatnonzero(nonspace & (~nxt | nxt_brk)) + 1
    if len(starts) == 0:
        return starts + base, np.zeros(0, np.uint64), np.zeros(0, bool)
    pw, inv = _BYTE_POWERS.upto(len(data) + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(len(data) + 1, np.uint64)
        prefix[0] = 0
        np.cumsum(data.astype(np.uint64) * pw[: len(data)], out=prefix[1:])
        raw = (prefix[ends] - prefix[starts]) * inv[starts]
        raw += (ends - starts).astype(np.uint64)  # length term: keeps zero bytes from vanishing
    return starts + base, splitmix64(raw), cjk[starts]


def token_hashes(offsets: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document index, token hash, is CJK character) for every token of the buffer, in order.

    The buffer is cut into windows at spaces; every document ends with a space, so windows never
    split a token and the result does not depend on the window size."""
    starts_out: list[np.ndarray] = []
    hashes_out: list[np.ndarray] = []
    cjk_out: list[np.ndarray] = []
    pos, n = 0, len(data)
    while pos < n:
        end = min(n, pos + WINDOW_BYTES)
        if end < n:
            spaces = np.flatnonzero(data[end - 1 : min(n, end + (1 << 16))] == 32)
            if len(spaces):
                end = end + int(spaces[0])  # include that space
            else:  # a token longer than 64 KiB: take it whole
                nxt = np.flatnonzero(data[end:] == 32)
                end = end + int(nxt[0]) + 1 if len(nxt) else n
        s, h, c = _window_hashes(data[pos:end], pos)
        starts_out.append(s)
        hashes_out.append(h)
        cjk_out.append(c)
        pos = end
    if not starts_out:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, bool)
    starts = np.concatenate(starts_out)
    doc = np.searchsorted(offsets, starts, side="right") - 1
    return doc, np.concatenate(hashes_out), np.concatenate(cjk_out)


@dataclass
class Shingles:
    """Shingle hashes of a batch of documents, grouped by document (CSR layout).

    ``hashes[doc_start[i]:doc_start[i+1]]`` are document i's shingles (repeats included; MinHash
    does not care). ``cjk`` says which n-gram kind each document used."""

    hashes: np.ndarray  # uint64
    doc_start: np.ndarray  # int64, length n_docs + 1
    cjk: np.ndarray  # bool, per document

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.doc_start)

    def of(self, i: int) -> np.ndarray:
        return self.hashes[self.doc_start[i] : self.doc_start[i + 1]]


def shingle_texts(texts: pl.Series, langs: pl.Series | None = None, *, ngram: int = 5, cjk_ngram: int = 5) -> Shingles:
    """Shingle hashes for every document of ``texts`` (see the module docstring)."""
    if ngram < 1 or cjk_ngram < 1:
        raise ValueError(f"n-gram sizes must be >= 1, got ngram={ngram}, cjk_ngram={cjk_ngram}")
    n_docs = len(texts)
    norm = pl.DataFrame({"text": nfkc(texts)}).select(normalize_for_shingles(pl.col("text"))).to_series()
    offsets, data = _string_buffers(norm)
    doc, tok, tok_cjk = token_hashes(offsets, data)
    tokens = np.bincount(doc, minlength=n_docs)
    share = np.bincount(doc, weights=tok_cjk, minlength=n_docs) / np.maximum(tokens, 1)
    cjk_lang = np.zeros(n_docs, bool)
    if langs is not None:
        primary = langs.cast(pl.String).fill_null("").str.to_lowercase().str.split("-").list.first()
        cjk_lang = primary.is_in(list(CJK_LANGS)).to_numpy().astype(bool)
    cjk = (share >= CJK_SHARE) | (cjk_lang & (share >= CJK_SHARE_WITH_LANG))
    return _ngrams(doc, tok, n_docs, np.where(cjk, cjk_ngram, ngram).astype(np.int64), cjk)


def _ngrams(doc: np.ndarray, tok: np.ndarray, n_docs: int, n_per_doc: np.ndarray, cjk: np.ndarray) -> Shingles:
    """Combine each run of n token hashes of one document into a shingle hash."""
    tok_start = np.searchsorted(doc, np.arange(n_docs + 1), side="left").astype(np.int64)
    n_tok = len(tok)
    if n_tok == 0:
        return Shingles(np.zeros(0, np.uint64), np.zeros(n_docs + 1, np.int64), cjk)
    pw, inv = _TOKEN_POWERS.upto(n_tok + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(n_tok + 1, np.uint64)
        prefix[0] = 0
        np.cumsum(tok * pw[:n_tok], out=prefix[1:])
    i = np.arange(n_tok, dtype=np.int64)
    n = n_per_doc[doc]
    doc_end = tok_start[doc + 1]
    first = i == tok_start[doc]
    valid = (i + n <= doc_end) | (first & (doc_end - i < n))
    i = i[valid]
    end = np.minimum(i + n[valid], doc_end[valid])
    with np.errstate(over="ignore"):
        raw = (prefix[end] - prefix[i]) * inv[i] + (end - i).astype(np.uint64)
    hashes = splitmix64(raw)
    doc_start = np.searchsorted(doc[valid], np.arange(n_docs + 1), side="left").astype(np.int64)
    return Shingles(hashes, doc_start, cjk)


__all__ = ["SHINGLE_VERSION", "Shingles", "normalize_for_shingles", "shingle_texts", "splitmix64", "token_hashes"]
