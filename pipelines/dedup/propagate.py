"""Connected components and keeper assignment by message passing, one node group per task.

The partitioned MinHash merge cannot hold the whole candidate graph in one process, so it runs
the two graph passes of `pipelines.dedup.lsh` (``components`` + keeper choice, ``nearest_keeper``)
as rounds over node groups (cf. Pregel / label propagation). Each round, a group's task reads its
nodes' state and the messages addressed to them, updates the state and sends messages along its
nodes' edges; the pass ends when a round sends nothing. Memory per task is its group's nodes,
edges and inbox.

1. **Best label** (components): every node starts with its own label ``(flag, score, seq)``
   (``flag`` 0 for a document kept by an earlier build, ``score`` the ``keep`` policy's key, ``seq``
   the stable order, unique) and adopts the smallest label it hears of. At convergence every node
   of a component holds the component's smallest label, which names its keeper: all
   earlier-kept documents when there are any (``flag`` 0), otherwise the best one (``lnode``).
   Rounds: the component's diameter + 1.
2. **Nearest keeper**: breadth-first from all keepers at once, one level per round; a node
   reached at the same level by several keepers takes the one with the lowest ``seq``, exactly
   like ``lsh.nearest_keeper``.

Functions here are pure (frames in, frames out) so they are tested on random graphs against the
single-process versions; `pipelines.dedup.sharded_merge` moves the frames through files.
"""

from __future__ import annotations

import polars as pl

LABEL = ["lflag", "lscore", "lseq", "lnode"]
LABEL_ORDER = ["lflag", "lscore", "lseq"]
LABEL_SCHEMA = {"node": pl.UInt64, "lflag": pl.UInt8, "lscore": pl.Float64, "lseq": pl.UInt64, "lnode": pl.UInt64}
OWNER_SCHEMA = {"node": pl.UInt64, "oseq": pl.UInt64, "onode": pl.UInt64}
ADJ_SCHEMA = {"u": pl.UInt64, "v": pl.UInt64}
STATE_SCHEMA = {**LABEL_SCHEMA, "seq": pl.UInt64, "kept_before": pl.Boolean, "oseq": pl.UInt64, "onode": pl.UInt64}


def initial_state(nodes: pl.DataFrame) -> pl.DataFrame:
    """State of a group's graph nodes (columns ``node, seq, score, kept_before``): own label, no owner."""
    return nodes.select(
        pl.col("node").cast(pl.UInt64),
        pl.when(pl.col("kept_before")).then(0).otherwise(1).cast(pl.UInt8).alias("lflag"),
        pl.col("score").cast(pl.Float64).alias("lscore"),
        pl.col("seq").cast(pl.UInt64).alias("lseq"),
        pl.col("node").cast(pl.UInt64).alias("lnode"),
        pl.col("seq").cast(pl.UInt64),
        pl.col("kept_before"),
        pl.lit(None, pl.UInt64).alias("oseq"),
        pl.lit(None, pl.UInt64).alias("onode"),
    )


def _smallest_label(frame: pl.DataFrame) -> pl.DataFrame:
    """Per node, the lexicographically smallest ``(flag, score, seq)`` label (seq is unique)."""
    return frame.sort("node", *LABEL_ORDER).unique(subset="node", keep="first", maintain_order=True)


def _send(changed: pl.DataFrame, adj: pl.DataFrame, columns: list[str], best: list[str]) -> pl.DataFrame:
    """Messages from changed nodes to their neighbours, combined per receiver (only the best one
    per receiver travels)."""
    out = changed.join(adj, left_on="node", right_on="u").select(pl.col("v").alias("node"), *columns)
    return out.sort("node", *best).unique(subset="node", keep="first", maintain_order=True)


def label_round(
    state: pl.DataFrame, inbox: pl.DataFrame | None, adj: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One round of smallest-label propagation. ``inbox`` None is the first round: every node
    announces its own label. Returns the new state and the outbox (``LABEL_SCHEMA`` rows)."""
    if inbox is None:
        changed = state
    else:
        heard = _smallest_label(pl.concat([state.select("node", *LABEL), inbox.select("node", *LABEL)]))
        merged = state.drop(LABEL).join(heard, on="node", how="left", maintain_order="left")
        changed_mask = merged.get_column("lnode") != state.get_column("lnode")
        state = merged.select(state.columns)
        changed = state.filter(changed_mask)
    return state, _send(changed, adj, LABEL, LABEL_ORDER)


def is_keeper() -> pl.Expr:
    """Kept by an earlier build, or the best document of a component without such documents."""
    return pl.col("kept_before") | ((pl.col("lflag") == 1) & (pl.col("lnode") == pl.col("node")))


def owner_round(
    state: pl.DataFrame, inbox: pl.DataFrame | None, adj: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One breadth-first level of keeper assignment. ``inbox`` None is the first round: keepers
    own themselves and announce it. Returns the new state and the outbox (``OWNER_SCHEMA`` rows)."""
    if inbox is None:
        keeper = is_keeper()
        state = state.with_columns(
            oseq=pl.when(keeper).then(pl.col("seq")).otherwise(pl.col("oseq")),
            onode=pl.when(keeper).then(pl.col("node")).otherwise(pl.col("onode")),
        )
        newly = state.filter(keeper)
    else:
        best = (
            inbox.sort("node", "oseq")
            .unique(subset="node", keep="first")
            .rename({"oseq": "in_seq", "onode": "in_node"})
        )
        joined = state.join(best, on="node", how="left", maintain_order="left")
        reached = pl.col("onode").is_null() & pl.col("in_node").is_not_null()
        newly_mask = joined.select(reached).to_series()
        state = joined.with_columns(
            oseq=pl.when(reached).then(pl.col("in_seq")).otherwise(pl.col("oseq")),
            onode=pl.when(reached).then(pl.col("in_node")).otherwise(pl.col("onode")),
        ).select(state.columns)
        newly = state.filter(newly_mask)
    return state, _send(newly, adj, ["oseq", "onode"], ["oseq"])


__all__ = [
    "ADJ_SCHEMA",
    "LABEL_SCHEMA",
    "OWNER_SCHEMA",
    "STATE_SCHEMA",
    "initial_state",
    "is_keeper",
    "label_round",
    "owner_round",
]
