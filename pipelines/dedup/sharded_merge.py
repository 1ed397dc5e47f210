"""The partitioned MinHash merge: verification, connected components, keepers, decisions and the
persisted state as rounds of executor tasks, none of which holds the whole corpus or graph.

After the band-hash partitions have written candidate edges (`MinHashDedup.reduce`, nodes are
``shard << 32 | row``), documents are split into ``parts`` groups by shard (``shard % parts``)
and every round runs one task per group, exchanging Parquet files (one group: the whole corpus
in one task per round):

=========  ================================================================================
round      one task per group g
=========  ================================================================================
nodes      g's documents: stable ``seq`` (known ones from the state, new ones numbered after
           the state's last in build order), keep-policy score; candidate edges whose ``src``
           is in g, with ``src``'s signature, sent to ``dst``'s group
verify     attach ``dst``'s signature, keep pairs whose Jaccard estimate reaches the threshold,
           store each verified edge in both endpoints' adjacency
labels     smallest-label propagation (`pipelines.dedup.propagate`), repeated until no
           messages are sent: every node learns its component's keeper rule
owners     breadth-first nearest keeper, repeated until no messages are sent
assign     every duplicate, with its signature, sent to its keeper's group; every document's
           new state row sent to the key partition ``key % parts``
decide     decisions (doc_id, reason, dup_of, detail: cluster id and Jaccard estimate) and
           ``dedup_clusters`` rows for g's keepers
persist    the state's docs table part for key partition g (earlier documents absent from this
           build kept)
commit     one task: the new signatures appended as a segment, compaction, CURRENT.json
=========  ================================================================================

The result does not depend on the number of groups (tested on the same builds). Memory per task
is its group's documents (~100 B each), candidate edges and messages; the driver reads only the
rounds' small stats to decide whether another propagation round is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from corpus.stage import StageDir
from corpus.store import write_streamed, write_table
from pipelines.dedup import propagate, state
from pipelines.dedup.minhash import jaccard_estimate
from pipelines.step import MergeRound, StepContext

CLUSTERS_TABLE = "dedup_clusters"
NEXT_PHASE = {"nodes": "verify", "verify": "labels", "assign": "decide", "decide": "persist", "persist": "commit"}
NODE_COLUMNS = ["doc_id", "key", "new", "base_gen", "n_chars", "quality"]
NODE_SCHEMA = {
    "node": pl.UInt64,
    "doc_id": pl.String,
    "key": pl.UInt64,
    "new": pl.Boolean,
    "seq": pl.UInt64,
    "kept_before": pl.Boolean,
    "seg": pl.Int64,
    "score": pl.Float64,
}
CLUSTER_SCHEMA = {"cluster_id": pl.Int64, "kept_id": pl.String, "size": pl.Int64, "members": pl.List(pl.String)}


@dataclass(frozen=True)
class MergeSpec:
    """What the merge needs from the step's parameters."""

    parts: int
    num_perm: int
    threshold: float
    verify: bool
    keep: str
    incremental: bool
    state_dir: Path
    signature_ident: list
    bands: int


def plan(spec: MergeSpec, ctx: StepContext) -> MergeRound | None:
    """The next round, from the previous round's phase and how many messages it sent."""
    if ctx.round_index == 0:
        return MergeRound("nodes", spec.parts)
    stats = ctx.round_stats(ctx.round_index - 1)
    phase = stats[0]["phase"]
    if phase == "nodes":
        gens = {s["gen"] for s in stats if s["gen"] is not None}
        if len(gens) > 1:
            raise state.StateError(
                f"{spec.state_dir}: shards were scanned against different generations {sorted(gens)}"
            )
    sent = sum(s.get("sent", 0) for s in stats)
    if phase in ("labels", "owners"):
        if sent:
            return MergeRound(phase, spec.parts)
        return MergeRound("owners" if phase == "labels" else "assign", spec.parts)
    if phase == "commit" or (phase == "decide" and not (spec.incremental and _any_nodes(ctx))):
        return None  # a build without documents has nothing to persist: the state stays as it is
    nxt = NEXT_PHASE[phase]
    return MergeRound(nxt, 1 if nxt == "commit" else spec.parts)


def _any_nodes(ctx: StepContext) -> bool:
    return any(s["nodes"] for s in ctx.round_stats(0))


def run(spec: MergeSpec, ctx: StepContext) -> dict[str, Any]:
    return _Merge(spec, ctx).run(ctx.phase, ctx.part)


def edges_path(stage: StageDir, partition: int) -> Path:
    return stage.scratch("edges") / f"part-{partition:03d}.parquet"


def index_path(stage: StageDir, shard: int) -> Path:
    return stage.scratch("index") / f"part-{shard:05d}.parquet"


def shard_of(node: pl.Expr) -> pl.Expr:
    """Node ids are ``shard << 32 | row``."""
    return node // (1 << 32)


def group_of(node: pl.Expr, parts: int) -> pl.Expr:
    return (shard_of(node) % parts).cast(pl.Int64)


class _Merge:
    def __init__(self, spec: MergeSpec, ctx: StepContext):
        self.spec = spec
        self.ctx = ctx
        self.stage = ctx.stage
        self.dir = ctx.stage.scratch("merge")
        self.round = ctx.round_index
        self.n_shards = len(list(self.stage.scratch("index").glob("part-*.parquet")))

    def run(self, phase: str, part: int) -> dict[str, Any]:
        return getattr(self, f"phase_{phase}")(part)

    # -- file plumbing ----------------------------------------------------------------------
    def _shards(self, group: int) -> list[int]:
        return list(range(group, self.n_shards, self.spec.parts))

    def _send(self, frame: pl.DataFrame, kind: str, target: pl.Expr, sender: int) -> int:
        """Write ``frame``'s rows to ``<kind>/to-<target>/from-<sender>`` (every target gets a
        file, empty or not, so a rerun of the sender replaces exactly what it wrote)."""
        frame = frame.with_columns(_target=target)
        for t in range(self.spec.parts):
            rows = frame.filter(pl.col("_target") == t).drop("_target")
            write_table(rows.to_arrow(), self.dir / kind / f"to-{t:03d}" / f"from-{sender:03d}.parquet")
        return frame.height

    def _inbox(self, kind: str, group: int, schema: dict[str, Any]) -> pl.DataFrame:
        files = sorted((self.dir / kind / f"to-{group:03d}").glob("from-*.parquet"))
        return pl.read_parquet(files) if files else pl.DataFrame(schema=schema)

    def _node_table(self, group: int) -> pl.DataFrame:
        path = self.dir / "nodes" / f"part-{group:03d}.parquet"
        return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=NODE_SCHEMA)

    def _state_path(self, round_index: int, group: int) -> Path:
        return self.dir / "graph" / f"r{round_index:03d}" / f"part-{group:03d}.parquet"

    def _previous_phase(self) -> str:
        return self.ctx.round_stats(self.round - 1)[0]["phase"]

    def _gen(self) -> int:
        """The state generation the shards were scanned against (checked equal by ``plan``)."""
        return max((s["gen"] for s in self.ctx.round_stats(0) if s["gen"] is not None), default=0)

    def _signatures(self, nodes: pl.DataFrame, wanted: pl.Series, gen: int) -> pl.DataFrame:
        """(node, sig) of the ``wanted`` nodes among ``nodes`` (columns node, key, new): new
        documents' from the scan index files, known ones' from the state segments."""
        rows = nodes.filter(pl.col("node").is_in(wanted.implode()))
        parts = []
        fresh = rows.filter(pl.col("new"))
        for shard in fresh.select(shard_of(pl.col("node")).unique()).to_series().to_list():
            mine = fresh.filter(shard_of(pl.col("node")) == shard).get_column("node")
            part = (
                pl.read_parquet(index_path(self.stage, shard), columns=["sig"])
                .with_columns(node=(pl.lit(shard << 32, pl.UInt64) + pl.int_range(pl.len(), dtype=pl.UInt64)))
                .filter(pl.col("node").is_in(mine.implode()))
            )
            parts.append(part.select("node", "sig"))
        known = rows.filter(~pl.col("new")).select("node", "key")
        if known.height:
            keys = known.get_column("key").implode()
            for path in state.segments(self.spec.state_dir, gen):
                seg = pl.scan_parquet(path).filter(pl.col("key").is_in(keys)).select("key", "sig").collect()
                parts.append(seg.join(known, on="key").select("node", "sig"))
        if not parts:
            return pl.DataFrame(schema={"node": pl.UInt64, "sig": pl.Array(pl.UInt32, self.spec.num_perm)})
        return pl.concat(parts).unique(subset="node", keep="first")

    def _estimate(self, a: pl.Series, b: pl.Series) -> np.ndarray:
        if a.len() == 0:
            return np.zeros(0)
        return jaccard_estimate(a.to_numpy(), b.to_numpy())

    # -- rounds -----------------------------------------------------------------------------
    def phase_nodes(self, group: int) -> dict[str, Any]:
        """Group g's node table and its candidate edges (``src`` in g) with ``src``'s signature."""
        shards = self._shards(group)
        docs = pl.DataFrame()
        if shards:
            new_before = np.cumsum([0, *(_count_new(index_path(self.stage, k)) for k in range(shards[-1]))]).tolist()
            frames = [
                pl.read_parquet(index_path(self.stage, k), columns=NODE_COLUMNS).with_columns(
                    node=pl.lit(k << 32, pl.UInt64) + pl.int_range(pl.len(), dtype=pl.UInt64),
                    new_seq=pl.lit(new_before[k], pl.UInt64) + pl.col("new").cast(pl.UInt64).cum_sum() - 1,
                )
                for k in shards
            ]
            docs = pl.concat(frames)
        if docs.height == 0:  # no shards, or only shards that earlier steps emptied
            write_table(pl.DataFrame(schema=NODE_SCHEMA).to_arrow(), self.dir / "nodes" / f"part-{group:03d}.parquet")
            self._send(pl.DataFrame(schema=VSHUF_SCHEMA(self.spec.num_perm)), "vshuf", pl.lit(0), group)
            return {"gen": None, "nodes": 0, "edges": 0}
        gens = docs.get_column("base_gen").unique().to_list()
        if len(gens) > 1:
            raise state.StateError(f"{self.spec.state_dir}: shards were scanned against different generations {gens}")
        gen = int(gens[0])
        nodes = self._with_state(docs, gen)
        write_table(nodes.to_arrow(), self.dir / "nodes" / f"part-{group:03d}.parquet")

        parts = self.spec.parts
        edge_files = [edges_path(self.stage, p) for p in range(parts)]
        edges = pl.scan_parquet(edge_files).filter(group_of(pl.col("src"), parts) == group).unique().collect()
        sigs = self._signatures(nodes, edges.get_column("src").unique(), gen)
        out = edges.join(sigs.rename({"node": "src", "sig": "src_sig"}), on="src", how="left")
        self._send(out, "vshuf", group_of(pl.col("dst"), parts), group)
        return {"gen": gen, "nodes": nodes.height, "edges": edges.height}

    def _with_state(self, docs: pl.DataFrame, gen: int) -> pl.DataFrame:
        """Stable order and earlier decisions: known documents keep their ``seq``, ``kept`` and
        signing generation; new ones are numbered after the state's last ``seq`` in build order."""
        known = pl.DataFrame(schema=state.DOCS_SCHEMA)
        if self.spec.incremental and gen:
            keys = docs.filter(~pl.col("new")).get_column("key").implode()
            files = state.docs_files(self.spec.state_dir, gen)
            known = pl.scan_parquet(files).filter(pl.col("key").is_in(keys)).collect()
        docs = docs.join(
            known.select("key", "seq", pl.col("kept").alias("kept_before"), "seg"),
            on="key",
            how="left",
            maintain_order="left",
        )
        state.require_known(docs, self.spec.state_dir)
        start = state.next_seq(self.spec.state_dir, gen) if self.spec.incremental else 0
        if self.spec.keep == "longest":
            score = -pl.col("n_chars").cast(pl.Float64)
        elif self.spec.keep == "quality_score":
            score = (-pl.col("quality")).fill_null(float("inf"))
        else:
            score = pl.lit(0.0)
        return docs.select(
            "node",
            "doc_id",
            "key",
            "new",
            pl.when(pl.col("new"))
            .then(pl.col("new_seq") + start)
            .otherwise(pl.col("seq"))
            .cast(pl.UInt64)
            .alias("seq"),
            (pl.col("kept_before").fill_null(False) & ~pl.col("new")).alias("kept_before"),
            pl.col("seg").cast(pl.Int64),
            score.cast(pl.Float64).alias("score"),
        )

    def phase_verify(self, group: int) -> dict[str, Any]:
        """Candidate pairs with ``dst`` in g: keep those whose estimate reaches the threshold."""
        pairs = self._inbox("vshuf", group, VSHUF_SCHEMA(self.spec.num_perm))
        sigs = self._signatures(self._node_table(group), pairs.get_column("dst").unique(), self._gen())
        pairs = pairs.join(sigs.rename({"node": "dst", "sig": "dst_sig"}), on="dst", how="left")
        if self.spec.verify and pairs.height:
            est = self._estimate(pairs.get_column("src_sig"), pairs.get_column("dst_sig"))
            pairs = pairs.filter(pl.Series(est >= self.spec.threshold))
        both = pl.concat([pairs.select(u="src", v="dst"), pairs.select(u="dst", v="src")])
        self._send(both, "adj", group_of(pl.col("u"), self.spec.parts), group)
        return {"edges": pairs.height}

    def phase_labels(self, group: int) -> dict[str, Any]:
        adj = self._inbox("adj", group, propagate.ADJ_SCHEMA)
        if self._previous_phase() == "verify":
            graph = adj.select(node="u").unique()
            nodes = self._node_table(group).join(graph, on="node", how="semi")
            current, inbox = propagate.initial_state(nodes), None
        else:
            current = pl.read_parquet(self._state_path(self.round - 1, group))
            inbox = self._inbox(f"msg/r{self.round - 1:03d}", group, propagate.LABEL_SCHEMA)
        current, out = propagate.label_round(current, inbox, adj)
        return self._step_graph(current, out, group)

    def phase_owners(self, group: int) -> dict[str, Any]:
        adj = self._inbox("adj", group, propagate.ADJ_SCHEMA)
        current = pl.read_parquet(self._state_path(self.round - 1, group))
        first = self._previous_phase() == "labels"
        inbox = None if first else self._inbox(f"msg/r{self.round - 1:03d}", group, propagate.OWNER_SCHEMA)
        current, out = propagate.owner_round(current, inbox, adj)
        return self._step_graph(current, out, group)

    def _step_graph(self, current: pl.DataFrame, out: pl.DataFrame, group: int) -> dict[str, Any]:
        write_table(current.to_arrow(), self._state_path(self.round, group))
        sent = self._send(out, f"msg/r{self.round:03d}", group_of(pl.col("node"), self.spec.parts), group)
        return {"sent": sent}

    def phase_assign(self, group: int) -> dict[str, Any]:
        """Duplicates (with their signature) to their keeper's group; state rows to key partitions."""
        nodes = self._node_table(group)
        graph = pl.read_parquet(self._state_path(self.round - 1, group)).select("node", "onode")
        dups = nodes.join(graph, on="node").filter(pl.col("onode") != pl.col("node"))
        sigs = self._signatures(nodes, dups.get_column("node"), self._gen())
        dups = dups.select("node", "doc_id", "seq", "onode").join(sigs, on="node", how="left")
        self._send(dups, "own", group_of(pl.col("onode"), self.spec.parts), group)
        if self.spec.incremental:
            nxt = self._gen() + 1
            rows = nodes.join(dups.select("node"), on="node", how="anti").select("node", pl.lit(True).alias("kept"))
            current = nodes.join(rows, on="node", how="left", maintain_order="left").select(
                "key",
                "doc_id",
                "seq",
                pl.col("kept").fill_null(False),
                pl.when(pl.col("new")).then(pl.lit(nxt)).otherwise(pl.col("seg")).cast(pl.Int64).alias("seg"),
            )
            self._send(current, "cur", (pl.col("key") % self.spec.parts).cast(pl.Int64), group)
        return {"duplicates": dups.height}

    def phase_decide(self, group: int) -> dict[str, Any]:
        """Decisions and clusters of the keepers in group g."""
        dups = self._inbox("own", group, OWN_SCHEMA(self.spec.num_perm))
        nodes = self._node_table(group)
        keepers = nodes.join(dups.select(node="onode").unique(), on="node", how="semi")
        sigs = self._signatures(nodes, keepers.get_column("node"), self._gen())
        keepers = keepers.select("node", "doc_id", "seq").join(sigs, on="node", how="left")
        rows = dups.join(
            keepers.select(onode="node", dup_of="doc_id", cluster_id="seq", keeper_sig="sig"), on="onode", how="left"
        )
        est = self._estimate(rows.get_column("sig"), rows.get_column("keeper_sig"))
        detail = pl.concat_str(
            pl.lit('{"cluster_id": '),
            pl.col("cluster_id").cast(pl.String),
            pl.lit(', "jaccard_estimate": '),
            pl.Series(est, dtype=pl.Float64).round(4).cast(pl.String),
            pl.lit("}"),
        )
        decisions = rows.select("doc_id", pl.lit("near_duplicate").alias("reason"), "dup_of", detail.alias("detail"))
        self.ctx.write_decisions(decisions, group)
        members = pl.concat(
            [
                rows.select("doc_id", "seq", "cluster_id", kept_id="dup_of"),
                keepers.select("doc_id", "seq", cluster_id="seq", kept_id="doc_id"),
            ]
        )
        clusters = (
            members.sort("seq")
            .group_by("cluster_id", maintain_order=True)
            .agg(pl.col("doc_id").alias("members"), pl.col("kept_id").first(), pl.len().alias("size"))
            .select(pl.col("cluster_id").cast(pl.Int64), "kept_id", pl.col("size").cast(pl.Int64), "members")
            .sort("cluster_id")
        )
        clusters = clusters if clusters.height else pl.DataFrame(schema=CLUSTER_SCHEMA)
        write_table(clusters.to_arrow(), self.stage.table(CLUSTERS_TABLE, group))
        return {"decisions": decisions.height, "clusters": clusters.height}

    def phase_persist(self, group: int) -> dict[str, Any]:
        """Key partition g of the next docs table: this build's rows plus earlier documents absent
        from this build (their ``seq`` must survive if they come back)."""
        gen = self._gen()
        current = self._inbox("cur", group, state.DOCS_SCHEMA)
        prev = pl.DataFrame(schema=state.DOCS_SCHEMA)
        if gen:
            files = state.docs_files(self.spec.state_dir, gen)
            prev = pl.scan_parquet(files).filter((pl.col("key") % self.spec.parts) == group).collect()
        absent = prev.join(current.select("key"), on="key", how="anti")
        table = pl.concat([absent, current.select(absent.columns)]).sort("seq")
        write_table(table.to_arrow(), state.docs_part_path(self.spec.state_dir, gen + 1, group))
        return {"rows": table.height}

    def phase_commit(self, group: int) -> dict[str, Any]:
        """The new signatures as segment gen+1, then make gen+1 current (last, so a crash before
        it leaves the previous generation in force)."""
        gen = self._gen()
        directory = self.spec.state_dir
        for stale in state.docs_path(directory, gen + 1).glob("part-*.parquet"):  # from a crashed other plan
            if int(stale.stem.split("-")[1]) >= self.spec.parts:
                stale.unlink()
        columns = ["key", "sig", *(f"band_{k}" for k in range(self.spec.bands))]
        append_new_rows(
            [index_path(self.stage, k) for k in range(self.n_shards)],
            columns,
            state.segment_path(directory, gen + 1),
        )
        state.write_key(directory, self.spec.signature_ident)
        state.commit(directory, gen + 1, state.compact(directory, gen + 1))
        return {"gen": gen + 1}


def _count_new(path: Path) -> int:
    return int(pl.read_parquet(path, columns=["new"]).get_column("new").sum())


def VSHUF_SCHEMA(num_perm: int) -> dict[str, Any]:
    return {"src": pl.UInt64, "dst": pl.UInt64, "src_sig": pl.Array(pl.UInt32, num_perm)}


def OWN_SCHEMA(num_perm: int) -> dict[str, Any]:
    return {
        "node": pl.UInt64,
        "doc_id": pl.String,
        "seq": pl.UInt64,
        "onode": pl.UInt64,
        "sig": pl.Array(pl.UInt32, num_perm),
    }


def append_new_rows(scans: list[Path], columns: list[str], path: Path) -> None:
    """Stream the new documents' rows of every scan file into one segment file (atomically),
    one scan file in memory at a time."""
    parts = (pl.read_parquet(p, columns=[*columns, "new"]).filter(pl.col("new")).drop("new").to_arrow() for p in scans)
    write_streamed(parts, path)


__all__ = ["CLUSTERS_TABLE", "MergeSpec", "append_new_rows", "edges_path", "index_path", "plan", "run"]
