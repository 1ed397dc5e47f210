"""Shingling for English and Chinese alike, vectorised over the UTF-8 bytes with numpy.

Normalisation: NFKC, lower case, every run of digits becomes ``0`` (so renumbered clauses and
dates still match), punctuation, symbols, control characters and whitespace separate tokens.
A *token* is then a run of other characters, except that every CJK character (Hiragana,
Katakana, CJK ideographs incl. Extension A and compatibility ideographs, Hangul syllables; see
``CJK_RANGES``) is a token of its own: a word in space-delimited scripts, a character in CJK.

Shingles are n-grams of tokens. The n is chosen per document from its script: documents whose
tokens are mostly CJK characters (or whose ``lang`` is zh/ja/ko and that have a real share of CJK
tokens) use ``cjk_ngram`` (character n-grams), the rest use ``ngram`` (word n-grams). A
document shorter than n tokens is one shingle (all of its tokens), so short texts still compare.

How it runs without a Python loop per character, token or shingle:

- Every code point's class (separator / digit / CJK / word) and whether NFKC or lower-casing can
  change it comes from a table built once per process with `unicodedata` (`char_info`). The few
  documents that contain such a character (upper-case non-ASCII letters, full-width letters,
  combining marks, ligatures...) are normalised with Polars first (``fixup``); every other
  document is already NFKC and only needs ASCII lower-casing, done on the bytes. Full-width
  punctuation such as ``，`` is NFKC-unstable but a separator either way, so Chinese text with
  ordinary punctuation stays on the fast path.
- Separators, digit runs and token boundaries are boolean masks over the bytes; a run of digits
  is collapsed by dropping all but its first byte (written as ``0``).
- A token of up to 8 bytes is identified by its bytes packed into one little-endian uint64 (one
  unaligned load per token), finished with splitmix64; longer tokens chain splitmix64 over their
  8-byte chunks (``LONG_TOKEN`` bytes and more: xxh3 per token, they are rare).
- A shingle's hash is a polynomial in its n token hashes, computed for all positions at once
  with n - 1 multiply-adds over shifted views.

The scheme is ours and fixed (``SHINGLE_VERSION``), unlike Polars' `hash`, so persisted
signatures stay valid across upgrades. `normalize_for_shingles` renders the same normalisation
as Polars expressions; the benchmark's datasketch baseline and the tests use it as a reference.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

SHINGLE_VERSION = 2
# Code point ranges of characters that are tokens on their own (all 3-byte UTF-8 sequences).
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))
CJK_LANGS = ("zh", "ja", "ko", "yue", "wuu", "cmn")
# A document is CJK when at least this share of its tokens are CJK characters ...
CJK_SHARE = 0.5
# ... or when its `lang` says zh/ja/ko and at least this share are.
CJK_SHARE_WITH_LANG = 0.1
WINDOW_BYTES = 1 << 20  # documents are tokenised in windows of about this many bytes (cache-sized temporaries)
LONG_TOKEN = 64  # tokens of this many bytes or more are hashed one by one with xxh3

# character classes (low two bits of `char_info`) and the "needs NFKC / lower-casing" flag
SEP, WORD, DIGIT, CJK = 0, 1, 2, 3
FIXUP = 4

_P_TOKEN = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the shingle polynomial
_LONG_SEED = np.uint64(0xD6E8FEB86659FD93)
_NGRAM_SEED = np.uint64(0xA0761D6478BD642F)
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], np.uint64)


# -- code point tables -------------------------------------------------------------------------
def _is_sep(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PSCZ" or ch.isspace()


def char_info(cp: int) -> int:
    """Class of one code point, plus ``FIXUP`` when NFKC or lower-casing could change a text that
    contains it (beyond turning a separator into separators): such documents go through Polars."""
    ch = chr(cp)
    cat = unicodedata.category(ch)
    if _is_sep(ch):
        cls = SEP
    elif cat == "Nd":
        cls = DIGIT
    elif any(lo <= cp <= hi for lo, hi in CJK_RANGES):
        cls = CJK
    else:
        cls = WORD
    if cp < 0x80:  # ASCII: already NFKC; A-Z are lower-cased on the bytes
        return cls
    nf = unicodedata.normalize("NFKC", ch)
    fix = (
        ch.lower() != ch
        or cat[0] == "M"  # combining marks compose with (and reorder after) their base
        or 0x1100 <= cp <= 0x11FF  # Hangul conjoining jamo compose into syllables
        or (nf != ch and not (cls == SEP and all(_is_sep(c) for c in nf)))
    )
    return cls | (FIXUP if fix else 0)


@lru_cache(maxsize=1)
def _bmp_info() -> np.ndarray:
    """`char_info` of every code point below U+10000 (about 0.1 s, once per process)."""
    return np.array([char_info(cp) for cp in range(0x10000)], np.uint8)


_ASTRAL: dict[int, int] = {}


def _info(cp: np.ndarray) -> np.ndarray:
    """`char_info` of many code points: a table for the BMP, a cache for the rest."""
    table = _bmp_info()
    if len(cp) == 0 or int(cp.max()) < 0x10000:
        return table[cp]
    out = np.empty(len(cp), np.uint8)
    bmp = cp < 0x10000
    out[bmp] = table[cp[bmp]]
    uniq, inv = np.unique(cp[~bmp], return_inverse=True)
    vals = [_ASTRAL.setdefault(int(c), char_info(int(c))) for c in uniq]
    out[~bmp] = np.array(vals, np.uint8)[inv]
    return out


# -- reference normalisation in Polars (fix-up path, benchmarks, tests) -------------------------
def normalize_for_shingles(text: pl.Expr) -> pl.Expr:
    """The normalisation as Polars expressions (apply after `nfkc`): case, digits, punctuation and
    whitespace folded, one trailing space. CJK characters are not split apart here."""
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
    """NFKC only where a text is not already NFKC: ASCII is, and CPython's quick check answers
    for the rest at several times the speed of normalising (most text, Chinese too, already is)."""
    texts = texts.cast(pl.String).fill_null("")
    rows = texts.str.contains(r"[^\x00-\x7F]").to_numpy().nonzero()[0]
    if len(rows) == 0:
        return texts
    candidates = texts.gather(rows).to_list()
    rows = rows[np.array([not unicodedata.is_normalized("NFKC", t) for t in candidates], bool)]
    if len(rows) == 0:
        return texts
    return texts.scatter(rows, texts.gather(rows).str.normalize("NFKC"))


# -- hashing helpers -----------------------------------------------------------------------------
def splitmix64(x: np.ndarray) -> np.ndarray:
    """Finaliser: spreads the bits of uint64 values (uint64 in, uint64 out, wrapping)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def string_buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64[n+1] starting at 0, bytes uint8) of a string Series, zero-copy where Arrow allows."""
    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


def _decode(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start offset, code point, byte length) of every non-ASCII character of UTF-8 bytes (a
    buffer cut inside a character decodes that one wrongly, nothing else). Code points are
    uint16 unless a 4-byte character occurs."""
    leads = np.flatnonzero(data >= 0xC0)
    if len(leads) == 0:
        return leads, np.zeros(0, np.uint16), np.zeros(0, np.uint8)
    if leads[-1] + 3 >= len(data):  # reads below go up to 3 bytes past a lead
        data = np.concatenate((data, np.zeros(3, np.uint8)))
    b0 = data[leads]
    b1 = (data[leads + 1] & np.uint8(0x3F)).astype(np.uint16)
    b2 = data[leads + 2] & np.uint8(0x3F)
    two = ((b0 & np.uint8(0x1F)).astype(np.uint16) << 6) | b1
    cp = np.where(b0 < 0xE0, two, ((b0 & np.uint8(0x0F)).astype(np.uint16) << 12) | (b1 << 6) | b2)
    nbytes = 2 + (b0 >= 0xE0).view(np.uint8) + (b0 >= 0xF0).view(np.uint8)
    four = np.flatnonzero(b0 >= 0xF0)
    if len(four):
        cp = cp.astype(np.int32)
        b3 = data[leads[four] + 3].astype(np.int32) & 0x3F
        hi = (b0[four].astype(np.int32) & 0x07) << 18
        cp[four] = hi | (b1[four].astype(np.int32) << 12) | (b2[four].astype(np.int32) << 6) | b3
    return leads, cp, nbytes


def _char_bytes(leads: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """Every byte position of the given characters (leads and continuation bytes)."""
    parts = [leads]
    for k in (1, 2, 3):
        parts.append(leads[nbytes > k] + k)
    return np.concatenate(parts)


# -- tokens ------------------------------------------------------------------------------------
@dataclass
class _Window:
    """Token hashes of one window of whole documents, with per-document token and CJK counts."""

    hashes: np.ndarray  # uint64, all tokens in order
    tokens: np.ndarray  # int64 per document
    cjk: np.ndarray  # int64 per document: tokens that are CJK characters


def _fixup(texts: pl.Series, rows: np.ndarray) -> pl.Series:
    """NFKC then lower case (Polars) for the documents the byte path cannot normalise exactly."""
    fixed = texts.gather(rows).str.normalize("NFKC").str.to_lowercase()
    return texts.clone().scatter(rows, fixed)


def _window_tokens(texts: pl.Series) -> _Window:
    offsets, data = string_buffers(texts)
    leads, cp, nbytes = _decode(data)
    info = _info(cp)
    fix = np.flatnonzero(info & FIXUP)
    if len(fix):
        rows = np.unique(np.searchsorted(offsets, leads[fix], side="right") - 1)
        offsets, data = string_buffers(_fixup(texts, rows))
        leads, cp, nbytes = _decode(data)
        info = _info(cp)
    return _tokens(offsets, data, leads, nbytes, info & 3)


def _tokens(offsets: np.ndarray, data: np.ndarray, leads: np.ndarray, nbytes: np.ndarray, cls: np.ndarray) -> _Window:
    """Token hashes of an NFKC byte buffer whose only upper-case letters are ASCII."""
    n = len(data)
    buf = np.zeros(n + 8, np.uint8)  # lower-cased bytes, padded for the 8-byte loads
    low = buf[:n]
    np.add(data, ((data - np.uint8(65)) < 26).view(np.uint8) << np.uint8(5), out=low)
    isdig = (data - np.uint8(48)) < 10
    nonsep = ((low - np.uint8(97)) < 26) | isdig | (data >= 0x80)
    dig_tail = None  # continuation bytes of non-ASCII digits: never the kept byte of a run
    if len(cls):
        special = np.flatnonzero((cls & 1) == 0)  # SEP (0) and DIGIT (2); WORD and CJK are odd
        if len(special):
            sep = special[cls[special] == SEP]
            nonsep[_char_bytes(leads[sep], nbytes[sep])] = False
            dig = special[cls[special] == DIGIT]
            if len(dig):
                isdig[_char_bytes(leads[dig], nbytes[dig])] = True
                dig_tail = _char_bytes(leads[dig], nbytes[dig])[len(dig) :]
        cjk_leads = leads[cls == CJK]
    else:
        cjk_leads = leads
    dropped = None
    if isdig.any():  # a run of digits becomes one "0": its first byte is written as "0", the rest drop out
        doc_starts = offsets[:-1][offsets[:-1] < n]
        first = isdig.copy()
        first[1:] &= ~isdig[:-1]
        first[doc_starts] = isdig[doc_starts]
        if dig_tail is not None:
            first[dig_tail] = False
        low[first] = ord("0")
        dropped = np.flatnonzero(isdig & ~first)
    # token boundaries: separators, document starts, and both sides of every CJK character
    brk = np.zeros(n + 1, bool)
    brk[offsets] = True
    brk[cjk_leads] = True
    brk[cjk_leads + 3] = True
    first_byte = nonsep & brk[:n]
    first_byte[1:] |= nonsep[1:] & ~nonsep[:-1]
    last_byte = nonsep & brk[1:]
    last_byte[:-1] |= nonsep[:-1] & ~nonsep[1:]
    starts = np.flatnonzero(first_byte)
    lens = np.flatnonzero(last_byte) + 1 - starts
    hashes = _token_hashes(buf, n, starts, lens)
    if dropped is not None and len(dropped):  # tokens with dropped digits: hash their kept bytes again
        _rehash_without(hashes, low, starts, lens, dropped)
    tokens = np.diff(np.searchsorted(starts, offsets))
    cjk = np.diff(np.searchsorted(cjk_leads, offsets))
    return _Window(hashes, tokens, cjk)


def _rehash_without(
    hashes: np.ndarray, low: np.ndarray, starts: np.ndarray, lens: np.ndarray, dropped: np.ndarray
) -> None:
    """Hash again, in place, the tokens that contain ``dropped`` bytes, from their other bytes."""
    owner = np.searchsorted(starts, dropped, side="right") - 1
    affected, per_token = np.unique(owner, return_counts=True)
    s, ln = starts[affected], lens[affected]
    pos = np.repeat(s - np.cumsum(ln) + ln, ln) + np.arange(int(ln.sum()))  # every byte of those tokens
    keep = np.ones(len(low), bool)
    keep[dropped] = False
    kept = low[pos[keep[pos]]]
    new_lens = ln - per_token
    buf = np.zeros(len(kept) + 8, np.uint8)
    buf[: len(kept)] = kept
    hashes[affected] = _token_hashes(buf, len(kept), np.cumsum(new_lens) - new_lens, new_lens)


def _token_hashes(buf: np.ndarray, n: int, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """64-bit hash of every token (``buf`` holds ``n`` bytes followed by at least 8 zero bytes)."""
    words = np.ndarray((n,), dtype="<u8", buffer=buf, strides=(1,))  # unaligned 8-byte loads
    if len(starts) == 0:
        return np.zeros(0, np.uint64)
    packed = words[starts] & _MASKS[np.minimum(lens, 8)]
    out = splitmix64(packed)
    long = np.flatnonzero(lens > 8)
    if len(long) == 0:
        return out
    mid = long[lens[long] < LONG_TOKEN]
    if len(mid):
        s, ln = starts[mid], lens[mid]
        with np.errstate(over="ignore"):
            acc = ln.astype(np.uint64) * _LONG_SEED
        for k in range(0, int(ln.max()), 8):
            act = np.flatnonzero(ln > k)
            chunk = words[s[act] + k] & _MASKS[np.minimum(ln[act] - k, 8)]
            acc[act] = splitmix64(acc[act] ^ chunk)
        out[mid] = acc
    huge = long[lens[long] >= LONG_TOKEN]
    if len(huge):
        out[huge] = [
            xxhash.xxh3_64_intdigest(buf[s : s + ln].tobytes())
            for s, ln in zip(starts[huge].tolist(), lens[huge].tolist(), strict=True)
        ]
    return out


def token_hashes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token hashes in order, tokens per document, CJK tokens per document) of ``texts``,
    tokenised in windows of whole documents (about ``WINDOW_BYTES`` each). A document longer
    than two windows is cut into pieces where no token spans the cut (`_cut_points`), so the
    temporaries stay window-sized whatever the document size, and the tokens are the same."""
    texts = texts.cast(pl.String).fill_null("")
    sizes = texts.str.len_bytes().to_numpy().astype(np.int64)
    big = np.flatnonzero(sizes > 2 * WINDOW_BYTES)
    if len(big) == 0:
        return _windowed(texts, sizes)
    parts: list[pl.Series] = []
    pieces = np.ones(len(texts), np.int64)
    prev = 0
    for i in big.tolist():
        raw = texts[i].encode()
        cuts = [0, *_cut_points(raw), len(raw)]
        parts += [texts.slice(prev, i - prev), pl.Series([raw[a:b].decode() for a, b in pairwise(cuts)])]
        pieces[i] = len(cuts) - 1
        prev = i + 1
    parts.append(texts.slice(prev, len(texts) - prev))
    expanded = pl.concat(parts)
    hashes, tokens, cjk = _windowed(expanded, expanded.str.len_bytes().to_numpy().astype(np.int64))
    first = np.concatenate(([0], np.cumsum(pieces)[:-1]))
    return hashes, np.add.reduceat(tokens, first), np.add.reduceat(cjk, first)


def _windowed(texts: pl.Series, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cuts = [0, *(np.flatnonzero(np.diff(np.cumsum(sizes) // WINDOW_BYTES)) + 1).tolist(), len(texts)]
    parts = [_window_tokens(texts.slice(lo, hi - lo)) for lo, hi in pairwise(cuts) if hi > lo]
    if not parts:
        return np.zeros(0, np.uint64), np.zeros(len(texts), np.int64), np.zeros(len(texts), np.int64)
    return tuple(np.concatenate([getattr(p, f) for p in parts]) for f in ("hashes", "tokens", "cjk"))  # type: ignore[return-value]


def _cut_points(raw: bytes) -> list[int]:
    """Byte offsets, about ``WINDOW_BYTES`` apart, where a long document can be cut without
    changing its tokens: before an ASCII separator byte, else before a separator or CJK
    character; only a run of word characters longer than a window is cut at a character boundary."""
    data = np.frombuffer(raw, np.uint8)
    out: list[int] = []
    start = 0
    while len(data) - start > 2 * WINDOW_BYTES:  # pieces of one to two windows
        at = start + WINDOW_BYTES
        window = data[at : at + WINDOW_BYTES]
        ascii_sep = np.flatnonzero((window < 0x80) & ~(((window | 0x20) - np.uint8(97)) < 26) & ~((window - 48) < 10))
        if len(ascii_sep):
            cut = at + int(ascii_sep[0])
        else:
            leads, cp, _ = _decode(data[at : at + len(window) + 3])  # complete the last character
            cls = _info(cp) & 3
            ok = np.flatnonzero(((cls == SEP) | (cls == CJK)) & (leads < len(window)))
            if len(ok):
                cut = at + int(leads[ok[0]])
            else:  # a window of word characters only: cut at a character boundary (splits that token)
                cut = at + int(np.flatnonzero((window & 0xC0) != 0x80)[0])
        out.append(cut)
        start = cut
    return out


# -- shingles ----------------------------------------------------------------------------------
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
    tok, tokens, cjk_tokens = token_hashes(texts)
    share = cjk_tokens / np.maximum(tokens, 1)
    cjk_lang = np.zeros(n_docs, bool)
    if langs is not None:
        primary = langs.cast(pl.String).fill_null("").str.to_lowercase().str.split("-").list.first()
        cjk_lang = primary.is_in(list(CJK_LANGS)).fill_null(False).to_numpy().astype(bool)
    cjk = (share >= CJK_SHARE) | (cjk_lang & (share >= CJK_SHARE_WITH_LANG))
    return _ngrams(tok, tokens, np.where(cjk, cjk_ngram, ngram).astype(np.int64), cjk)


def _rolling(tok: np.ndarray, n: int, at: np.ndarray | None = None) -> np.ndarray:
    """Hash of the n tokens starting at every position (or at the positions ``at``): a polynomial
    in the (splitmix64-mixed) token hashes. Not mixed again: the signature mixes every shingle
    hash with the seed before use, and a polynomial in random values is already uniform."""
    m = len(tok) - n + 1 if at is None else len(at)
    with np.errstate(over="ignore"):
        h = tok[:m].copy() if at is None else tok[at]
        for k in range(1, n):
            h *= _P_TOKEN
            h += tok[k : k + m] if at is None else tok[at + k]
        h ^= np.uint64(n) * _NGRAM_SEED
    return h


def _ngrams(tok: np.ndarray, tokens: np.ndarray, n_per_doc: np.ndarray, cjk: np.ndarray) -> Shingles:
    """Combine each run of n token hashes of one document into a shingle hash."""
    tok_start = np.concatenate(([0], np.cumsum(tokens))).astype(np.int64)
    regular = tokens >= n_per_doc
    n_sh = np.where(regular, tokens - n_per_doc + 1, np.minimum(tokens, 1))
    doc_start = np.concatenate(([0], np.cumsum(n_sh))).astype(np.int64)
    out = np.empty(int(doc_start[-1]), np.uint64)
    groups = np.unique(n_per_doc[regular])
    uniform = len(groups) == 1 and bool(np.all(regular | (tokens == 0)))  # the common case: one n, no short docs
    for n in groups.tolist():
        docs = regular & (n_per_doc == n)
        valid = np.ones(len(tok), bool) if uniform else np.repeat(docs, tokens)
        for k in range(1, n):  # the last n-1 positions of a document start no n-gram
            ends = tok_start[1:][docs] - k
            valid[ends] = False
        vals = _rolling(tok, n)[valid[: len(tok) - n + 1]]
        if uniform:
            out[:] = vals
        else:
            out[np.repeat(docs, n_sh)] = vals
    short = np.flatnonzero(~regular & (tokens > 0))
    for c in np.unique(tokens[short]).tolist():  # shorter than n: one shingle of all tokens
        docs = short[tokens[short] == c]
        out[doc_start[docs]] = _rolling(tok, c, at=tok_start[docs])
    return Shingles(out, doc_start, cjk)


__all__ = [
    "SHINGLE_VERSION",
    "Shingles",
    "char_info",
    "nfkc",
    "normalize_for_shingles",
    "shingle_texts",
    "splitmix64",
    "string_buffers",
    "token_hashes",
]
