"""MinHash signatures and LSH band hashes, vectorised over uint32 arrays.

Each of the ``num_perm`` hash functions is ``h_k(x) = (a_k * x + b_k) mod 2**32`` with odd
``a_k``, applied to the top 32 bits of a shingle's 64-bit hash: a bijection of the 32-bit
universe (so no two shingles of a document collide within one function) that numpy evaluates
with SIMD 32-bit multiplies. The signature of a document is the per-function minimum over its
shingles. That is the same estimator as `datasketch.MinHash` (which uses ``(a*x+b) mod (2**61-1)``
truncated to 32 bits); tests check both agree with the true Jaccard within sampling error.

Work is blocked: a block of ``BLOCK`` shingles times ``num_perm`` functions fits in L2 cache,
and `np.minimum.reduceat` folds the rows of each document inside the block.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

import numpy as np
import polars as pl

from pipelines.dedup.shingle import Shingles, shingle_texts, splitmix64

BLOCK = 1024
BATCH_BYTES = 4 << 20  # text per shingling batch: bounds a worker's memory whatever the shard size
EMPTY = np.uint32(0xFFFFFFFF)


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) coefficients of the hash functions; a fixed function of (num_perm, seed)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def signatures(shingles: Shingles, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """uint32[n_docs, num_perm]; a document without shingles gets all ``EMPTY``."""
    a, b = permutations(num_perm, seed)
    x = (shingles.hashes >> np.uint64(32)).astype(np.uint32)
    starts = shingles.doc_start
    n_docs = len(starts) - 1
    sig = np.full((n_docs, num_perm), EMPTY, np.uint32)
    has = np.flatnonzero(np.diff(starts) > 0)
    if len(has) == 0:
        return sig
    # documents that own at least one shingle, and where their runs start
    doc_starts = starts[has]
    buf = np.empty((BLOCK, num_perm), np.uint32)
    total = len(x)
    first_doc = 0  # index into `has` of the first document touching the block
    for lo in range(0, total, BLOCK):
        hi = min(total, lo + BLOCK)
        while first_doc + 1 < len(has) and doc_starts[first_doc + 1] <= lo:
            first_doc += 1
        last_doc = int(np.searchsorted(doc_starts, hi, side="left"))  # exclusive
        seg = np.maximum(doc_starts[first_doc:last_doc], lo) - lo
        m = buf[: hi - lo]
        np.multiply(x[lo:hi, None], a[None, :], out=m)
        m += b
        mins = np.minimum.reduceat(m, seg, axis=0)
        rows = has[first_doc:last_doc]
        np.minimum(sig[rows], mins, out=mins)
        sig[rows] = mins
    return sig


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal signature slots: row-wise for two equally shaped arrays."""
    return (np.asarray(sig_a) == np.asarray(sig_b)).mean(axis=-1)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64[n_docs, bands]: band k hashes slots ``k*rows .. (k+1)*rows - 1`` (and k itself,
    so equal slot values in different bands never look like one bucket)."""
    n, num_perm = sig.shape
    if bands * rows > num_perm:
        raise ValueError(f"bands * rows = {bands * rows} exceeds num_perm = {num_perm}")
    out = np.empty((n, bands), np.uint64)
    with np.errstate(over="ignore"):
        for k in range(bands):
            h = np.full(n, np.uint64(k + 1) * np.uint64(0x9E3779B97F4A7C15), np.uint64)
            for j in range(k * rows, (k + 1) * rows):
                h = splitmix64(h ^ sig[:, j].astype(np.uint64))
            out[:, k] = h
    return out


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising equally weighted false-positive and false-negative probability
    mass around ``threshold`` (datasketch's `MinHashLSH` optimisation, called directly)."""
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, 0.5, 0.5)
    return int(b), int(r)


def candidate_probability(j: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The LSH S-curve: probability that two documents of Jaccard ``j`` share a band."""
    return 1.0 - (1.0 - np.asarray(j, dtype=float) ** rows) ** bands


def sign_documents(
    texts: pl.Series,
    langs: pl.Series | None,
    *,
    ngram: int,
    cjk_ngram: int,
    num_perm: int,
    seed: int,
    bands: int,
    rows: int,
    batch_bytes: int = BATCH_BYTES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signatures, band hashes, shingle counts) of every document, shingled in batches of about
    ``batch_bytes`` of text. A document without shingles gets band hashes 0 (never a candidate)."""
    n = len(texts)
    sig = np.empty((n, num_perm), np.uint32)
    counts = np.zeros(n, np.int64)
    sizes = texts.str.len_bytes().fill_null(0).to_numpy()
    cuts = [0, *np.flatnonzero(np.diff(np.cumsum(sizes) // batch_bytes)) + 1, n]
    for lo, hi in pairwise(cuts):
        if hi <= lo:
            continue
        sh = shingle_texts(
            texts.slice(lo, hi - lo),
            None if langs is None else langs.slice(lo, hi - lo),
            ngram=ngram,
            cjk_ngram=cjk_ngram,
        )
        sig[lo:hi] = signatures(sh, num_perm, seed)
        counts[lo:hi] = sh.counts
    bh = band_hashes(sig, bands, rows)
    bh[counts == 0] = 0
    return sig, bh, counts


__all__ = [
    "EMPTY",
    "band_hashes",
    "candidate_probability",
    "jaccard_estimate",
    "optimal_bands",
    "permutations",
    "sign_documents",
    "signatures",
]
