"""`minhash_dedup`: near-duplicate removal with MinHash LSH, across all shards and across builds.

- scan (per shard, in the worker pool): shingle and sign the documents the persisted state does
  not know yet (`pipelines.dedup.shingle`, `pipelines.dedup.minhash`); write doc_id, key, band
  hashes and signature as Parquet.
- reduce (one executor task): order documents stably (state ``seq``: first sighting across
  builds), find candidate pairs band by band with a Polars group-by on the band hash
  (`pipelines.dedup.lsh`), optionally keep only pairs whose signature Jaccard estimate reaches the
  threshold, take connected components, choose keepers (documents kept by an earlier build stay
  kept; otherwise the ``keep`` policy decides), assign every other member to its nearest keeper,
  and persist the new signatures and decisions (`pipelines.dedup.state`).
- with ``reduce_partitions: N`` the same reduce is spread over executor tasks: band grouping
  over N band-hash partitions (`reduce_partition`), then the rounds of
  `pipelines.dedup.sharded_merge` over N document groups; no task holds the whole corpus.
- process (per shard): drop assigned documents into rejects (``near_duplicate``, ``dup_of``).

The ``dedup_clusters`` catalog table lists every cluster of two or more documents.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import xxhash

from corpus.store import write_table
from pipelines.dedup import lsh, sharded_merge, state
from pipelines.dedup.minhash import jaccard_estimate, optimal_bands, sign_documents
from pipelines.dedup.sharded_merge import CLUSTERS_TABLE, edges_path, index_path
from pipelines.dedup.shingle import SHINGLE_VERSION, string_buffers
from pipelines.step import GlobalStep, MergeRound, ShardContext, StepOutput, reject

KEEP_POLICIES = ("first", "longest", "quality_score")
MINHASH_VERSION = 2  # 2: one-permutation hashing with optimal densification (1: 128 affine hash functions)
SIGNATURE_SCHEME = "oph-densified"
VERIFY_CHUNK = 1 << 16


def doc_keys(doc_ids: pl.Series, texts: pl.Series) -> np.ndarray:
    """uint64 identity of (doc_id, text): a persisted signature is reused only for the same text.
    xxh3 of the text's UTF-8 bytes seeded with xxh3 of the doc_id, read straight from the Arrow
    buffers (no per-document string copies)."""
    id_off, id_data = string_buffers(doc_ids.cast(pl.String).fill_null(""))
    tx_off, tx_data = string_buffers(texts.cast(pl.String).fill_null(""))
    ids, txt = memoryview(id_data), memoryview(tx_data)
    h = xxhash.xxh3_64_intdigest
    id_off, tx_off = id_off.tolist(), tx_off.tolist()
    return np.fromiter(
        (h(txt[tx_off[i] : tx_off[i + 1]], h(ids[id_off[i] : id_off[i + 1]])) for i in range(len(id_off) - 1)),
        dtype=np.uint64,
        count=len(id_off) - 1,
    )


@lru_cache(maxsize=4)
def _read_decisions(files: tuple[tuple[Path, int], ...]) -> pl.DataFrame:
    return pl.read_parquet([f for f, _ in files])


@dataclass
class MinHashDedup(GlobalStep):
    name: ClassVar[str] = "minhash_dedup"
    version: ClassVar[str] = f"{SHINGLE_VERSION}.{MINHASH_VERSION}"
    num_perm: int = 128
    ngram: int = 5  # word n-grams for space-delimited text
    cjk_ngram: int = 5  # character n-grams for Chinese/Japanese/Korean text
    threshold: float = 0.8
    bands: int | None = None
    rows: int | None = None
    keep: str = "first"
    verify: bool = True  # drop LSH candidates whose signature Jaccard estimate is below threshold
    incremental: bool = True  # persist signatures and keepers under <root>/state/minhash
    seed: int = 1
    reduce_partitions: int = 1  # > 1: band grouping runs as that many executor tasks (band-hash partitions)

    def __post_init__(self) -> None:
        if not 1 <= self.reduce_partitions <= 1024:
            raise ValueError(f"reduce_partitions must be in 1..1024, got {self.reduce_partitions}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be >= 2, got {self.num_perm}")
        if self.keep not in KEEP_POLICIES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_POLICIES)}, got {self.keep!r}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then they are chosen for the threshold)")
        if self.bands is not None and self.rows is not None:
            if self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm:
                raise ValueError(f"need 1 <= bands * rows <= num_perm, got {self.bands} x {self.rows}")

    # -- parameters ------------------------------------------------------------------------
    @property
    def banding(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return optimal_bands(self.threshold, self.num_perm)

    def signature_ident(self) -> list:
        """Everything a persisted signature or band hash depends on."""
        return [
            SHINGLE_VERSION,
            MINHASH_VERSION,
            SIGNATURE_SCHEME,
            self.num_perm,
            self.ngram,
            self.cjk_ngram,
            self.seed,
            list(self.banding),
        ]

    def signature_key(self) -> str:
        return hashlib.sha256(json.dumps(self.signature_ident()).encode()).hexdigest()[:12]

    def _state_dir(self, root: Path) -> Path:
        return state.state_dir(root, self.signature_key())

    # -- scan ------------------------------------------------------------------------------
    def scan(self, df: pl.DataFrame, ctx: ShardContext) -> pl.DataFrame:
        bands, rows = self.banding
        keys = doc_keys(df.get_column("doc_id"), df.get_column("text"))
        gen = 0
        new = np.ones(len(keys), bool)
        if self.incremental:
            directory = self._state_dir(ctx.root)
            gen = state.current_generation(directory)
            known = state.known_keys(directory, gen)
            if len(known):
                pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
                new = known[pos] != keys
        todo = df.filter(pl.Series(new))
        sig_new, bh_new, _ = sign_documents(
            todo.get_column("text"),
            todo.get_column("lang"),
            ngram=self.ngram,
            cjk_ngram=self.cjk_ngram,
            num_perm=self.num_perm,
            seed=self.seed,
            bands=bands,
            rows=rows,
        )
        sig = np.zeros((len(keys), self.num_perm), np.uint32)
        bh = np.zeros((len(keys), bands), np.uint64)
        sig[new], bh[new] = sig_new, bh_new
        out = pl.DataFrame(
            {
                "doc_id": df.get_column("doc_id"),
                "key": pl.Series(keys, dtype=pl.UInt64),
                "new": pl.Series(new),
                "base_gen": pl.Series(np.full(len(keys), gen, np.int64)),
                "n_chars": df.get_column("text").str.len_chars().cast(pl.UInt32),
                "quality": self._quality(df, ctx),
                "sig": pl.Series(sig),
            }
        )
        out = out.with_columns(pl.Series(f"band_{k}", bh[:, k]) for k in range(bands))
        if self.reduce_partitions == 1:
            return out
        # partitioned reduce: the per-document index goes to a side file for the merge; the band
        # hashes of new documents are returned one row per (document, band) and shuffled by hash
        write_table(out.to_arrow(), index_path(ctx.step_dir, ctx.shard_index))
        return _band_rows(out, ctx.shard_index, bands, self.reduce_partitions)

    def partitions(self) -> int:
        return self.reduce_partitions

    def _quality(self, df: pl.DataFrame, ctx: ShardContext) -> pl.Series:
        if self.keep != "quality_score":
            return pl.Series("quality", [None] * df.height, dtype=pl.Float64)
        if "quality_score" not in df.columns:
            raise ValueError(
                f"minhash_dedup keep='quality_score' but shard {ctx.shard_index} has no 'quality_score' column; "
                "run the quality step before minhash_dedup or use keep='first' / 'longest'"
            )
        return df.get_column("quality_score").cast(pl.Float64)

    # -- reduce ----------------------------------------------------------------------------
    def reduce(self, scans: list[Path], step_dir: Path, root: Path) -> None:
        self._decide(scans, step_dir, root)

    def reduce_partition(self, scans: list[Path], partition: int, step_dir: Path, root: Path) -> None:
        """Candidate edges of one band-hash partition, over node ids ``shard << 32 | row``: the new
        documents' band rows come shuffled in ``scans``; known documents' rows are read from the
        state segments and kept when they fall in this partition and are part of this build."""
        parts = [pl.read_parquet(p) for p in scans]
        if self.incremental and scans:
            index_files = [index_path(step_dir, k) for k in range(len(scans))]
            gens = {g for p in index_files for g in pl.read_parquet(p, columns=["base_gen"]).get_column("base_gen")}
            directory = self._state_dir(root)
            present = pl.concat(
                [
                    pl.read_parquet(p, columns=["key", "new"])
                    .with_row_index("row")
                    .filter(~pl.col("new"))
                    .select("key", node=pl.lit(k << 32, pl.UInt64) + pl.col("row").cast(pl.UInt64))
                    for k, p in enumerate(index_files)
                ]
            )
            bands, _ = self.banding
            for seg in state.segments(directory, int(min(gens))) if present.height and gens else []:
                for k in range(bands):
                    parts.append(
                        pl.read_parquet(seg, columns=["key", f"band_{k}"])
                        .filter(lsh.partition_mask(pl.col(f"band_{k}"), partition, self.reduce_partitions))
                        .join(present, on="key")
                        .select("node", pl.lit(k, pl.Int32).alias("band"), pl.col(f"band_{k}").alias("h"))
                    )
        rows = pl.concat(parts) if parts else pl.DataFrame(schema=BAND_ROW_SCHEMA)
        rows = rows.filter(pl.col("h") != 0)
        roots = rows.group_by("band", "h").agg(src=pl.col("node").min(), n=pl.len()).filter(pl.col("n") > 1)
        edges = (
            rows.join(roots.drop("n"), on=["band", "h"])
            .filter(pl.col("node") != pl.col("src"))
            .select("src", dst="node")
            .unique()
        )
        write_table(edges.to_arrow(), edges_path(step_dir, partition))

    def merge_spec(self, root: Path) -> sharded_merge.MergeSpec:
        return sharded_merge.MergeSpec(
            parts=self.reduce_partitions,
            num_perm=self.num_perm,
            threshold=self.threshold,
            verify=self.verify,
            keep=self.keep,
            incremental=self.incremental,
            state_dir=self._state_dir(root),
            signature_ident=self.signature_ident(),
            bands=self.banding[0],
        )

    def merge_plan(self, step_dir: Path, round_index: int) -> MergeRound | None:
        """Verification, components, keepers and state over node groups (`sharded_merge`)."""
        return sharded_merge.plan(self.merge_spec(Path(".")), step_dir, round_index)

    def merge_task(self, phase: str, part: int, round_index: int, step_dir: Path, root: Path) -> dict[str, Any]:
        return sharded_merge.run(self.merge_spec(root), phase, part, round_index, step_dir)

    def _decide(self, scans: list[Path], step_dir: Path, root: Path) -> None:
        """Stable order, candidate edges band by band, verification, components, keepers,
        decisions and the persisted state, in one process."""
        bands, _ = self.banding
        docs, offsets = _read_index(scans)
        n = docs.height
        directory = self._state_dir(root)
        gens = docs.get_column("base_gen").unique().to_list()
        if len(gens) > 1:
            raise state.StateError(f"{directory}: shards were scanned against different generations {gens}")
        gen = int(gens[0]) if gens else 0
        prev = state.read_docs(directory, gen) if self.incremental else pl.DataFrame(schema=state.DOCS_SCHEMA)
        docs = _assign_seq(docs, prev, directory)
        seg_files = state.segments(directory, gen) if self.incremental else []
        old_idx = docs.filter(~pl.col("new")).select("key", "idx")

        edges = lsh.merge_edges(
            [lsh.band_edges(_band_frame(scans, offsets, seg_files, old_idx, k)) for k in range(bands)]
        )
        sigs = CandidateSignatures.load(edges, scans, offsets, seg_files, old_idx, n, self.num_perm)
        if self.verify and edges.height:
            edges = edges.filter(pl.Series(_estimates(sigs, edges) >= self.threshold))

        src = edges.get_column("src").to_numpy()
        dst = edges.get_column("dst").to_numpy()
        owner = self._owners(docs, src, dst)
        docs = docs.with_columns(owner=pl.Series(owner))
        dups = docs.filter((pl.col("owner") >= 0) & (pl.col("owner") != pl.col("idx")))
        keeper_ids = docs.get_column("doc_id").gather(dups.get_column("owner"))
        keeper_seq = docs.get_column("seq").gather(dups.get_column("owner"))
        est = sigs.estimates(dups.get_column("idx").to_numpy(), dups.get_column("owner").to_numpy())
        decisions = pl.DataFrame(
            {
                "doc_id": dups.get_column("doc_id"),
                "dup_of": keeper_ids,
                "cluster_id": keeper_seq,
                "jaccard": pl.Series(est, dtype=pl.Float64),
            }
        )
        write_table(decisions.to_arrow(), sharded_merge.decisions_dir(step_dir) / "part-00000.parquet")
        write_table(_clusters(docs).to_arrow(), step_dir / "tables" / CLUSTERS_TABLE / "part-00000.parquet")
        if self.incremental and n:  # a build without documents has nothing to persist
            self._persist(directory, gen, scans, docs, prev)

    def _owners(self, docs: pl.DataFrame, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Keeper of every document (itself for keepers and singletons)."""
        n = docs.height
        priority = docs.select(pl.col("seq").rank("ordinal") - 1).to_series().to_numpy().astype(np.int64)
        if len(src) == 0:
            return np.arange(n, dtype=np.int64)
        labels = lsh.components(n, src, dst)
        if self.keep == "longest":
            score = [(-pl.col("n_chars").cast(pl.Int64)), pl.col("seq")]
        elif self.keep == "quality_score":
            score = [(-pl.col("quality")).fill_null(float("inf")), pl.col("seq")]
        else:
            score = [pl.col("seq")]
        cols = ["idx", "seq", "n_chars", "quality", "kept_before"]
        ranked = docs.select(cols).with_columns(label=pl.Series(labels)).sort([*score, "idx"])
        sticky = ranked.filter(pl.col("kept_before"))
        sticky_labels = sticky.get_column("label").unique()
        best = (
            ranked.filter(~pl.col("label").is_in(sticky_labels.implode())).group_by("label").agg(pl.col("idx").first())
        )
        keepers = np.concatenate([sticky.get_column("idx").to_numpy(), best.get_column("idx").to_numpy()])
        owner = lsh.nearest_keeper(n, src, dst, keepers.astype(np.int64), priority)
        return np.where(owner < 0, np.arange(n), owner)

    def _persist(self, directory: Path, gen: int, scans: list[Path], docs: pl.DataFrame, prev: pl.DataFrame) -> None:
        """Append the new signatures as segment gen+1, write docs-(gen+1), then make it current."""
        nxt = gen + 1
        bands, _ = self.banding
        cols = ["key", "sig", *(f"band_{k}" for k in range(bands))]
        sharded_merge.append_new_rows(scans, cols, state.segment_path(directory, nxt))
        current = docs.select(
            "key",
            "doc_id",
            pl.col("seq").cast(pl.UInt64),
            (pl.col("owner") == pl.col("idx")).alias("kept"),
            pl.when(pl.col("new")).then(pl.lit(nxt)).otherwise(pl.col("seg")).cast(pl.Int64).alias("seg"),
        )
        absent = prev.join(current.select("key"), on="key", how="anti")
        shutil.rmtree(state.docs_path(directory, nxt), ignore_errors=True)  # parts of a crashed other plan
        table = pl.concat([absent, current]).sort("seq")
        write_table(table.to_arrow(), state.docs_part_path(directory, nxt, 0))
        state.write_key(directory, self.signature_ident())
        state.commit(directory, nxt, state.compact(directory, nxt))

    # -- process ---------------------------------------------------------------------------
    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        files = sorted(sharded_merge.decisions_dir(ctx.step_dir).glob("part-*.parquet"))
        decisions = _read_decisions(tuple((f, f.stat().st_mtime_ns) for f in files))
        marked = df.join(decisions, on="doc_id", how="left", maintain_order="left")
        is_dup = pl.col("dup_of").is_not_null()
        detail = pl.concat_str(
            pl.lit('{"cluster_id": '),
            pl.col("cluster_id").cast(pl.String),
            pl.lit(', "jaccard_estimate": '),
            pl.col("jaccard").round(4).cast(pl.String),
            pl.lit("}"),
        )
        return StepOutput(
            marked.filter(~is_dup).drop("dup_of", "cluster_id", "jaccard"),
            reject(marked.filter(is_dup), self.name, "near_duplicate", dup_of=pl.col("dup_of"), detail=detail),
        )


# -- reduce helpers (module level so an executor could run them as separate tasks) ---------------
BAND_ROW_SCHEMA = {"node": pl.UInt64, "band": pl.Int32, "h": pl.UInt64}


def _band_rows(out: pl.DataFrame, shard: int, bands: int, parts: int) -> pl.DataFrame:
    """One row per (new document, band) with its node id and reduce partition (band hash mod parts)."""
    node = pl.lit(shard << 32, pl.UInt64) + pl.int_range(pl.len(), dtype=pl.UInt64)
    wide = out.select(node.alias("node"), "new", *(f"band_{k}" for k in range(bands))).filter(pl.col("new"))
    long = pl.concat(
        [wide.select("node", pl.lit(k, pl.Int32).alias("band"), pl.col(f"band_{k}").alias("h")) for k in range(bands)]
    )
    return long.filter(pl.col("h") != 0).with_columns(partition=(pl.col("h") % parts).cast(pl.Int32))


INDEX_COLUMNS = ["doc_id", "key", "new", "base_gen", "n_chars", "quality"]


def _read_index(scans: list[Path]) -> tuple[pl.DataFrame, list[int]]:
    """Small per-document columns of every scan file, with the dense ``idx`` in build order."""
    frames = [pl.read_parquet(p, columns=INDEX_COLUMNS) for p in scans]
    offsets = np.cumsum([0, *(f.height for f in frames)]).tolist()
    if not frames:
        empty = {
            "doc_id": pl.String,
            "key": pl.UInt64,
            "new": pl.Boolean,
            "base_gen": pl.Int64,
            "n_chars": pl.UInt32,
            "quality": pl.Float64,
        }
        return pl.DataFrame(schema=empty).with_row_index("idx"), offsets
    return pl.concat(frames).with_row_index("idx"), offsets


def _assign_seq(docs: pl.DataFrame, prev: pl.DataFrame, directory: Path) -> pl.DataFrame:
    """Known documents keep their ``seq`` (and whether they were kept); new ones follow in build order."""
    docs = docs.join(
        prev.select("key", "seq", pl.col("kept").alias("kept_before"), "seg"),
        on="key",
        how="left",
        maintain_order="left",
    )
    state.require_known(docs, directory)
    start = int(prev.get_column("seq").max() or 0) + 1 if prev.height else 0
    new_rank = pl.col("new").cast(pl.UInt64).cum_sum() - 1
    return docs.with_columns(
        seq=pl.when(pl.col("new")).then(new_rank + start).otherwise(pl.col("seq")).cast(pl.UInt64),
        kept_before=pl.col("kept_before").fill_null(False) & ~pl.col("new"),
    )


def _band_frame(
    scans: list[Path], offsets: list[int], seg_files: list[Path], old_idx: pl.DataFrame, k: int
) -> pl.DataFrame:
    """(idx, h) of band ``k`` for every document of the build: new ones from the scans, known
    ones from the state segments. Only this band's column is read."""
    col = f"band_{k}"
    parts = [
        pl.read_parquet(p, columns=[col, "new"])
        .with_row_index("idx", offset=offsets[i])
        .filter(pl.col("new"))
        .select("idx", pl.col(col).alias("h"))
        for i, p in enumerate(scans)
    ]
    if old_idx.height:
        parts.extend(
            pl.read_parquet(p, columns=["key", col]).join(old_idx, on="key").select("idx", pl.col(col).alias("h"))
            for p in seg_files
        )
    if not parts:
        return pl.DataFrame(schema={"idx": pl.UInt32, "h": pl.UInt64})
    return pl.concat(parts).filter(pl.col("h") != 0)


@dataclass
class CandidateSignatures:
    """Signatures of the documents that appear in candidate edges only (``pos`` maps idx -> row),
    so memory follows the number of candidates, not the size of the corpus."""

    pos: np.ndarray
    matrix: np.ndarray

    @classmethod
    def load(
        cls,
        edges: pl.DataFrame,
        scans: list[Path],
        offsets: list[int],
        seg_files: list[Path],
        old_idx: pl.DataFrame,
        n: int,
        num_perm: int,
    ) -> CandidateSignatures:
        needed = np.unique(np.concatenate([edges.get_column("src").to_numpy(), edges.get_column("dst").to_numpy()]))
        pos = np.full(n, -1, np.int64)
        pos[needed] = np.arange(len(needed))
        matrix = np.zeros((len(needed), num_perm), np.uint32)
        if len(needed) == 0:
            return cls(pos, matrix)
        wanted = pl.Series("idx", needed.astype(np.uint32)).implode()
        for i, p in enumerate(scans):
            part = (
                pl.read_parquet(p, columns=["sig", "new"])
                .with_row_index("idx", offset=offsets[i])
                .filter(pl.col("new") & pl.col("idx").is_in(wanted))
            )
            if part.height:
                matrix[pos[part.get_column("idx").to_numpy()]] = part.get_column("sig").to_numpy()
        olds = old_idx.filter(pl.col("idx").is_in(wanted))
        keys = olds.get_column("key").implode()
        for p in seg_files if olds.height else []:  # decode only the wanted rows' signatures
            part = pl.scan_parquet(p).filter(pl.col("key").is_in(keys)).select("key", "sig").collect()
            part = part.join(olds, on="key")
            if part.height:
                matrix[pos[part.get_column("idx").to_numpy()]] = part.get_column("sig").to_numpy()
        return cls(pos, matrix)

    def estimates(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Jaccard estimates of the pairs (a[i], b[i]), in chunks to bound temporaries."""
        out = np.empty(len(a))
        for lo in range(0, len(a), VERIFY_CHUNK):
            hi = lo + VERIFY_CHUNK
            out[lo:hi] = jaccard_estimate(self.matrix[self.pos[a[lo:hi]]], self.matrix[self.pos[b[lo:hi]]])
        return out


def _estimates(sigs: CandidateSignatures, edges: pl.DataFrame) -> np.ndarray:
    return sigs.estimates(edges.get_column("src").to_numpy(), edges.get_column("dst").to_numpy())


def _clusters(docs: pl.DataFrame) -> pl.DataFrame:
    """One row per cluster of two or more documents; the cluster id is the keeper's ``seq``."""
    in_cluster = docs.filter(pl.col("owner") != pl.col("idx")).get_column("owner").unique()
    members = docs.select(
        pl.col("doc_id"),
        pl.col("seq"),
        owner_id=pl.col("doc_id").gather(pl.col("owner")),
        cluster_id=pl.col("seq").gather(pl.col("owner")).cast(pl.Int64),
        in_cluster=pl.col("owner").is_in(in_cluster.implode()),
    ).filter(pl.col("in_cluster"))
    return (
        members.sort("seq")
        .group_by("cluster_id", maintain_order=True)
        .agg(pl.col("doc_id").alias("members"), pl.col("owner_id").first().alias("kept_id"), pl.len().alias("size"))
        .select("cluster_id", "kept_id", pl.col("size").cast(pl.Int64), "members")
        .sort("cluster_id")
    )


__all__ = ["CLUSTERS_TABLE", "MinHashDedup", "doc_keys"]
