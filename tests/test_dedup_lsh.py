"""Candidate edges per band (and per partition), components and keeper assignment."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.dedup import lsh


def band(idx: list[int], h: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"idx": pl.Series(idx, dtype=pl.UInt32), "h": pl.Series(h, dtype=pl.UInt64)})


def test_band_edges_star_to_lowest_idx_and_partitions_add_up() -> None:
    frame = band([5, 1, 3, 2, 4, 0], [7, 7, 9, 7, 9, 11])
    edges = lsh.band_edges(frame).sort("src", "dst")
    assert edges.rows() == [(1, 2), (1, 5), (3, 4)]
    parts = lsh.merge_edges([lsh.band_edges(frame, part=p, parts=3) for p in range(3)])
    assert parts.rows() == edges.rows()


def test_merge_edges_removes_repeats() -> None:
    a = pl.DataFrame({"src": [0, 1], "dst": [1, 2]}, schema=lsh.EDGE_SCHEMA)
    assert lsh.merge_edges([a, a]).rows() == [(0, 1), (1, 2)]
    assert lsh.merge_edges([]).height == 0


def test_nearest_keeper_splits_a_bridged_component() -> None:
    # 0 - 1 - 2 - 3 - 4 is one component; 0 and 4 are both keepers (e.g. kept by an earlier build)
    src, dst = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 4])
    labels = lsh.components(6, src, dst)
    assert len(set(labels[:5])) == 1 and labels[5] != labels[0]
    owner = lsh.nearest_keeper(6, src, dst, np.array([0, 4, 5]), priority=np.arange(6))
    # 1 is next to 0, 3 next to 4, 2 is equidistant: the keeper with the lower priority wins
    assert owner.tolist() == [0, 0, 0, 4, 4, 5]
    owner = lsh.nearest_keeper(6, src, dst, np.array([0, 4, 5]), priority=np.array([5, 1, 2, 3, 0, 4]))
    assert owner.tolist() == [0, 0, 4, 4, 4, 5]
