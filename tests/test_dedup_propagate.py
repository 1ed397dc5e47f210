"""Message-passing components + keeper assignment over node groups == the single-process graph passes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipelines.dedup import lsh
from pipelines.dedup.propagate import initial_state, label_round, owner_round


def single_process_owners(n: int, src, dst, seq, score, kept_before) -> np.ndarray:
    """The reference: scipy components, keepers by (score, seq) unless a component has earlier-kept
    documents, then nearest keeper breadth-first (what MinHashDedup._owners does)."""
    labels = lsh.components(n, src, dst)
    frame = pl.DataFrame({"idx": np.arange(n), "label": labels, "score": score, "seq": seq, "kb": kept_before})
    sticky = frame.filter(pl.col("kb"))
    best = (
        frame.filter(~pl.col("label").is_in(sticky.get_column("label").unique().implode()))
        .sort("score", "seq")
        .group_by("label")
        .agg(pl.col("idx").first())
    )
    keepers = np.concatenate([sticky.get_column("idx").to_numpy(), best.get_column("idx").to_numpy()])
    priority = np.argsort(np.argsort(seq))
    owner = lsh.nearest_keeper(n, src, dst, keepers.astype(np.int64), priority)
    return np.where(owner < 0, np.arange(n), owner)


def distributed_owners(n: int, src, dst, seq, score, kept_before, groups: int) -> tuple[np.ndarray, int]:
    """The same through `propagate`, with nodes split into groups that only exchange messages."""
    edges = pl.DataFrame({"u": src, "v": dst}, schema={"u": pl.UInt64, "v": pl.UInt64})
    both = pl.concat([edges, edges.select(u="v", v="u")])
    in_graph = np.unique(np.concatenate([src, dst])).astype(np.uint64)
    nodes = pl.DataFrame(
        {"node": np.arange(n, dtype=np.uint64), "seq": seq, "score": score, "kept_before": kept_before}
    )
    nodes = nodes.filter(pl.col("node").is_in(pl.Series(in_graph).implode()))
    group = lambda col: (pl.col(col) % groups).cast(pl.Int64)  # noqa: E731
    adj = {g: both.filter(group("u") == g) for g in range(groups)}
    state = {g: initial_state(nodes.filter(group("node") == g)) for g in range(groups)}
    rounds = 0
    for step in (label_round, owner_round):
        inbox: dict[int, pl.DataFrame | None] = dict.fromkeys(range(groups))
        while True:
            rounds += 1
            outs = []
            for g in range(groups):
                state[g], out = step(state[g], inbox[g], adj[g])
                outs.append(out)
            sent = pl.concat(outs)
            if sent.height == 0:
                break
            inbox = {g: sent.filter(group("node") == g) for g in range(groups)}
    owner = np.arange(n)
    final = pl.concat(state.values())
    owner[final.get_column("node").to_numpy().astype(np.int64)] = final.get_column("onode").to_numpy()
    return owner, rounds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_message_passing_assigns_the_same_keepers_as_the_single_process_passes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 460
    # random sparse edges over 400 nodes, a few stars, and a separate chain of 60 nodes (diameter 59)
    src = rng.integers(0, 400, 150)
    dst = rng.integers(0, 400, 150)
    chain = np.arange(400, 460)
    src = np.concatenate([src, chain[:-1], np.full(20, 7)])
    dst = np.concatenate([dst, chain[1:], rng.integers(0, 400, 20)])
    keep = src != dst
    src, dst = np.minimum(src, dst)[keep], np.maximum(src, dst)[keep]
    seq = rng.permutation(n).astype(np.uint64)
    score = -rng.integers(1, 5, n).astype(np.float64)  # ties on score are broken by seq
    kept_before = rng.random(n) < 0.05
    expected = single_process_owners(n, src, dst, seq, score, kept_before)
    got, rounds = distributed_owners(n, src, dst, seq, score, kept_before, groups=3)
    assert (got == expected).all()
    assert rounds >= 60  # the chain needs a round per hop


def test_no_edges_means_no_messages() -> None:
    got, rounds = distributed_owners(
        5,
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.arange(5, dtype=np.uint64),
        np.zeros(5),
        np.zeros(5, bool),
        groups=2,
    )
    assert (got == np.arange(5)).all() and rounds == 2
