"""MinHash estimates against datasketch and the LSH S-curve against theory."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash, MinHashLSH

from pipelines.dedup.minhash import (
    EMPTY,
    band_hashes,
    candidate_probability,
    jaccard_estimate,
    optimal_bands,
    probe_table,
    signatures,
)
from pipelines.dedup.shingle import Shingles, shingle_texts, splitmix64

NUM_PERM = 128


def pair_sets(rng: np.random.Generator, jaccard: float, size: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of random 64-bit shingle hashes whose Jaccard is exactly ``jaccard`` (up to rounding)."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    common = rng.integers(0, 2**63, shared, dtype=np.uint64)
    a = np.concatenate([common, rng.integers(0, 2**63, size - shared, dtype=np.uint64)])
    b = np.concatenate([common, rng.integers(0, 2**63, size - shared, dtype=np.uint64)])
    return a, b


def batch(sets: list[np.ndarray]) -> Shingles:
    starts = np.cumsum([0, *(len(s) for s in sets)])
    return Shingles(np.concatenate(sets), starts, np.zeros(len(sets), bool))


def test_estimates_agree_with_datasketch_within_sampling_error() -> None:
    rng = np.random.default_rng(3)
    ours, theirs, truth = [], [], []
    for j in np.linspace(0.1, 0.95, 60):
        a, b = pair_sets(rng, float(j))
        shared = len(np.intersect1d(a, b))
        truth.append(shared / (len(a) + len(b) - shared))
        sig = signatures(batch([a, b]), NUM_PERM)
        ours.append(float(jaccard_estimate(sig[0], sig[1])))
        ma, mb = MinHash(num_perm=NUM_PERM), MinHash(num_perm=NUM_PERM)
        ma.update_batch([int(x).to_bytes(8, "little") for x in a])
        mb.update_batch([int(x).to_bytes(8, "little") for x in b])
        theirs.append(ma.jaccard(mb))
    ours_a, theirs_a, truth_a = np.array(ours), np.array(theirs), np.array(truth)
    sigma = np.sqrt(truth_a * (1 - truth_a) / NUM_PERM)
    # each estimate within 4 sigma of the truth, and of datasketch's estimate (difference of two estimators)
    assert np.all(np.abs(ours_a - truth_a) <= 4 * sigma + 1e-9)
    assert np.all(np.abs(ours_a - theirs_a) <= 4 * np.sqrt(2) * sigma + 1e-9)
    # no bias: mean errors agree to within the standard error of a mean over 60 pairs
    assert abs(np.mean(ours_a - truth_a)) < 3 * np.sqrt(np.mean(sigma**2) / len(sigma))
    # and the spread of our errors is that of datasketch's (a broken family would inflate it)
    assert np.std(ours_a - truth_a) < 1.5 * max(np.std(theirs_a - truth_a), np.sqrt(np.mean(sigma**2)))


def test_estimates_on_real_text_shingles_agree_with_datasketch() -> None:
    texts = pl.Series(
        ["The court heard the appeal brought by the claimant " * 3 + f"variant {v} " + "x y z " * v for v in range(4)]
    )
    sh = shingle_texts(texts, ngram=3)
    sig = signatures(sh, NUM_PERM)
    ds = []
    for i in range(4):
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([int(x).to_bytes(8, "little") for x in np.unique(sh.of(i))])
        ds.append(m)
    for i in range(1, 4):
        a, b = np.unique(sh.of(0)), np.unique(sh.of(i))
        shared = len(np.intersect1d(a, b))
        j = shared / (len(a) + len(b) - shared)
        sigma = np.sqrt(j * (1 - j) / NUM_PERM) + 1e-3
        assert abs(jaccard_estimate(sig[0], sig[i]) - j) <= 4 * sigma
        assert abs(ds[0].jaccard(ds[i]) - j) <= 4 * sigma


@pytest.mark.parametrize("jaccard", [0.5, 0.7, 0.8, 0.9])
def test_lsh_candidate_rate_follows_the_s_curve(jaccard: float) -> None:
    rng = np.random.default_rng(int(jaccard * 100))
    bands, rows = optimal_bands(0.8, NUM_PERM)
    pairs = 300
    sets = []
    for _ in range(pairs):
        sets.extend(pair_sets(rng, jaccard, size=200))
    bh = band_hashes(signatures(batch(sets), NUM_PERM), bands, rows)
    hit = (bh[0::2] == bh[1::2]).any(axis=1)
    p = float(candidate_probability(jaccard, bands, rows))
    assert abs(hit.mean() - p) <= 4 * np.sqrt(p * (1 - p) / pairs) + 0.01


def test_banding_is_datasketchs_optimum() -> None:
    for threshold in (0.5, 0.7, 0.8, 0.9):
        lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        assert optimal_bands(threshold, NUM_PERM) == (lsh.b, lsh.r)


def reference_signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """One-permutation hashing with optimal densification, spelled out with Python integers."""
    key = int(splitmix64(np.array([seed], np.uint64))[0])
    slots: list[int | None] = [None] * num_perm
    for h in hashes.tolist():
        x = ((h ^ key) * 0x9FB21C651E98DF25) % 2**64
        slot, value = ((x >> 32) * num_perm) >> 32, min(x & 0xFFFFFFFF, 0xFFFFFFFE)
        slots[slot] = value if slots[slot] is None else min(slots[slot], value)
    if all(v is None for v in slots):
        return np.full(num_perm, EMPTY, np.uint32)
    probes = probe_table(num_perm, seed)
    out = []
    for j, v in enumerate(slots):
        if v is None:
            v = next((slots[int(c)] for c in probes[j] if slots[int(c)] is not None), None)
        out.append(v)
    return np.array(out, np.uint32)


def test_signatures_match_the_reference_and_do_not_depend_on_batching() -> None:
    rng = np.random.default_rng(5)
    sizes = [0, 1, 2, 3, 10, 60, 127, 128, 400, 3000, *rng.integers(0, 3000, 10).tolist()]
    sets = [rng.integers(0, 2**63, int(n), dtype=np.uint64) for n in sizes]
    together = signatures(batch(sets), NUM_PERM)
    for i, s in enumerate(sets):
        alone = signatures(batch([s]), NUM_PERM)[0]
        np.testing.assert_array_equal(together[i], alone)
        np.testing.assert_array_equal(alone, reference_signature(s, NUM_PERM, 1))
    assert np.all(together[0] == EMPTY) and len(set(together[1].tolist())) == 1
    assert not np.any(together[1:] == EMPTY)  # densified: every slot of a non-empty document is filled
    # other sizes (a power of two or not) and seeds give other permutations
    for num_perm, seed in ((100, 1), (64, 2)):
        np.testing.assert_array_equal(
            signatures(batch([sets[5]]), num_perm, seed)[0], reference_signature(sets[5], num_perm, seed)
        )
    assert not np.array_equal(signatures(batch([sets[8]]), NUM_PERM, 2), signatures(batch([sets[8]]), NUM_PERM, 1))


@pytest.mark.parametrize("size", [20, 60, 400])
def test_small_documents_are_densified_without_bias(size: int) -> None:
    """Fewer shingles than slots: most slots are densified, the estimate must still be unbiased."""
    rng = np.random.default_rng(size)
    errors, sigmas = [], []
    for j in np.linspace(0.2, 0.95, 200):
        a, b = pair_sets(rng, float(j), size=size)
        shared = len(np.intersect1d(a, b))
        truth = shared / (len(a) + len(b) - shared)
        sig = signatures(batch([a, b]), NUM_PERM)
        errors.append(float(jaccard_estimate(sig[0], sig[1])) - truth)
        sigmas.append(np.sqrt(truth * (1 - truth) / min(NUM_PERM, size)))
    errors_a, sigmas_a = np.array(errors), np.array(sigmas)
    assert abs(errors_a.mean()) < 4 * np.sqrt(np.mean(sigmas_a**2) / len(errors_a))
    assert np.all(np.abs(errors_a) <= 5 * sigmas_a + 1e-9)
