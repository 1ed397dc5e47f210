"""MinHash signatures and LSH band hashes: one-permutation hashing with optimal densification.

A document's signature has ``num_perm`` slots. Every shingle hash is mixed once more with the
seed (xor, one 64-bit multiply by an odd constant: a bijection): the high bits pick its slot
(the hash range split into ``num_perm`` equal bins), the low 32 bits are its value, and each
slot keeps the minimum value that falls into it (one
`np.minimum.at` over all shingles of a batch). This is one-permutation hashing (Li, Owen & Zhang
2012): O(shingles) work instead of O(shingles x num_perm) for ``num_perm`` independent hash
functions, with the same estimator: the Jaccard estimate is the share of equal slots.

Slots that no shingle fell into (documents with fewer shingles than slots, or by chance) are
filled by *optimal densification* (Shrivastava 2017): empty slot j probes slots
``probe(j, 1), probe(j, 2), ...`` (a fixed pseudo-random sequence per slot and seed, the same for
every document) and copies the value of the first slot that was filled by a shingle. Two
documents then agree on a densified slot with probability equal to their Jaccard similarity,
as with a filled slot, so the estimator stays unbiased and LSH banding works unchanged.
`tests/test_dedup_minhash.py` checks estimates against `datasketch.MinHash` on the same shingles
and the LSH candidate rate against the S-curve.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

import numpy as np
import polars as pl

from pipelines.dedup.shingle import Shingles, shingle_texts, splitmix64

BATCH_BYTES = 4 << 20  # text per shingling batch: bounds a worker's memory whatever the shard size
EMPTY = np.uint32(0xFFFFFFFF)
PROBES = 8  # densification probes per slot tried per vectorised round
MAX_ROUNDS = 256  # then the remaining empty slots take the next filled slot to their right
_MUL = np.uint64(0x9FB21C651E98DF25)


def _seed_key(seed: int) -> np.uint64:
    return splitmix64(np.array([seed], np.uint64))[0]


def slot_values(hashes: np.ndarray, num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot int64, value uint32 < EMPTY) of every shingle hash: one permutation of the universe."""
    with np.errstate(over="ignore"):
        x = (hashes ^ _seed_key(seed)) * _MUL
    if num_perm & (num_perm - 1) == 0 and num_perm > 1:
        slot = x >> np.uint64(64 - (num_perm.bit_length() - 1))
    else:
        slot = ((x >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)
    low = x.view(np.uint32)[::2] if np.little_endian else x.astype(np.uint32)  # low 32 bits, no copy
    value = np.minimum(low, EMPTY - np.uint32(1))
    return slot.view(np.int64), value  # slots < num_perm: the same bits as int64


@lru_cache(maxsize=8)
def probe_table(num_perm: int, seed: int) -> np.ndarray:
    """int64[num_perm, PROBES * MAX_ROUNDS]: the slots empty slot j probes, in order."""
    attempts = PROBES * MAX_ROUNDS
    j = np.arange(num_perm, dtype=np.uint64)[:, None]
    t = np.arange(attempts, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        h = splitmix64(splitmix64(j * np.uint64(0x9E3779B97F4A7C15) ^ _seed_key(seed)) + t)
    return (((h >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)).astype(np.int64)


def densify(sig: np.ndarray, seed: int) -> None:
    """Fill the empty slots of every row that has at least one filled slot, in place."""
    num_perm = sig.shape[1]
    empty = sig == EMPTY
    filled = num_perm - empty.sum(axis=1)
    rows, cols = np.nonzero(empty & (filled > 0)[:, None])
    if len(rows) == 0:
        return
    single = filled[rows] == 1  # one filled slot: every probe sequence ends there
    if single.any():
        only = np.argmin(empty[rows[single]], axis=1)
        sig[rows[single], cols[single]] = sig[rows[single], only]
        rows, cols = rows[~single], cols[~single]
    probes = probe_table(num_perm, seed)
    out_rows, out_cols, out_vals = [], [], []
    for r in range(MAX_ROUNDS):
        if len(rows) == 0:
            break
        cand = probes[cols, r * PROBES : (r + 1) * PROBES]
        vals = sig[rows[:, None], cand]
        hit = vals != EMPTY
        found = hit.any(axis=1)
        first = hit.argmax(axis=1)
        out_rows.append(rows[found])
        out_cols.append(cols[found])
        out_vals.append(vals[found, first[found]])
        rows, cols = rows[~found], cols[~found]
    for d in range(1, num_perm) if len(rows) else ():  # astronomically rare: next filled slot
        vals = sig[rows, (cols + d) % num_perm]
        hit = vals != EMPTY
        out_rows.append(rows[hit])
        out_cols.append(cols[hit])
        out_vals.append(vals[hit])
        rows, cols = rows[~hit], cols[~hit]
        if len(rows) == 0:
            break
    if out_rows:  # written last: probes only ever see slots filled by shingles
        sig[np.concatenate(out_rows), np.concatenate(out_cols)] = np.concatenate(out_vals)


def signatures(shingles: Shingles, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """uint32[n_docs, num_perm]; a document without shingles gets all ``EMPTY``."""
    counts = shingles.counts
    n_docs = len(counts)
    sig = np.full((n_docs, num_perm), EMPTY, np.uint32)
    if len(shingles.hashes) == 0:
        return sig
    slot, value = slot_values(shingles.hashes, num_perm, seed)
    slot += np.repeat(np.arange(n_docs, dtype=np.int64) * num_perm, counts)
    np.minimum.at(sig.reshape(-1), slot, value)
    densify(sig, seed)
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


@lru_cache(maxsize=64)
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
    "densify",
    "jaccard_estimate",
    "optimal_bands",
    "probe_table",
    "sign_documents",
    "signatures",
    "slot_values",
]
