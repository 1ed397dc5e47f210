"""LSH band partitions, and an in-memory clustering used as the reference for the merge rounds.

The build uses `partition_mask` only (which reduce partition a band hash belongs to); its
clustering is `pipelines.dedup.sharded_merge` / `propagate`. `band_edges`, `merge_edges`,
`components` and `nearest_keeper` do the same job in one process with scipy, for the tests that
check the message passing against them and for `benchmarks/dedup_accuracy.py`.

Documents are dense integer ids (``idx``, 0..n-1, in the build's stable order); edges are pairs
``(src, dst)`` with ``src`` the lowest idx in the bucket, so a bucket of m documents yields m-1
edges (a star), enough for connected components.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EDGE_SCHEMA = {"src": pl.UInt32, "dst": pl.UInt32}


def partition_mask(hashes: pl.Expr, part: int, parts: int) -> pl.Expr:
    """Rows of one hash partition (top bits of the band hash), for splitting a band over tasks."""
    if parts <= 1:
        return pl.lit(True)
    return (hashes % parts) == part


def band_edges(band: pl.DataFrame, *, part: int = 0, parts: int = 1) -> pl.DataFrame:
    """Candidate edges of one band: documents that share the band hash ``h``.

    ``band`` has columns ``idx`` (UInt32) and ``h`` (UInt64); a group-by on ``h`` finds each
    bucket's root, so memory is that of one band (or one partition of it)."""
    band = band.filter(partition_mask(pl.col("h"), part, parts))
    roots = (
        band.group_by("h").agg(pl.col("idx").min().alias("src"), pl.len().alias("n")).filter(pl.col("n") > 1).drop("n")
    )
    return (
        band.join(roots, on="h", how="inner")
        .filter(pl.col("idx") != pl.col("src"))
        .select(pl.col("src").cast(pl.UInt32), pl.col("idx").cast(pl.UInt32).alias("dst"))
    )


def merge_edges(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """Union of edge lists without repeats (the same pair is usually found by several bands)."""
    if not parts:
        return pl.DataFrame(schema=EDGE_SCHEMA)
    return pl.concat(parts).unique().sort("src", "dst")


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component label of every document (union-find over the candidate graph)."""
    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def nearest_keeper(n: int, src: np.ndarray, dst: np.ndarray, keepers: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """For every document the keeper it is closest to in the graph (breadth-first from all keepers
    at once; ties go to the keeper with the lower ``priority``, a permutation of 0..n-1). Keepers
    map to themselves; a document whose component has no keeper maps to -1."""
    by_priority = np.empty(n, np.int64)
    by_priority[priority] = np.arange(n)
    owner = np.full(n, -1, np.int64)
    owner[keepers] = keepers
    u = np.concatenate([src, dst]).astype(np.int64)
    v = np.concatenate([dst, src]).astype(np.int64)
    sentinel = np.iinfo(np.int64).max
    while True:
        reach = (owner[u] >= 0) & (owner[v] < 0)
        if not reach.any():
            return owner
        best = np.full(n, sentinel, np.int64)
        np.minimum.at(best, v[reach], priority[owner[u[reach]]])
        newly = best != sentinel
        owner[newly] = by_priority[best[newly]]


__all__ = ["EDGE_SCHEMA", "band_edges", "components", "merge_edges", "nearest_keeper", "partition_mask"]
