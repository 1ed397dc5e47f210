"""`minhash_dedup`: near-duplicate removal with MinHash LSH, across all shards and across builds.

- scan (per shard): shingle and sign the documents the persisted state does not know yet
  (`pipelines.dedup.shingle`, `pipelines.dedup.minhash`); write the shard's index (doc_id, key,
  band hashes, signature) for the merge, and return one row per (new document, band) for the
  reduce, shuffled by band hash into ``reduce_partitions`` partitions.
- reduce (one executor task per partition): candidate edges from a Polars group-by on the band
  hash (`pipelines.dedup.lsh`), known documents' bands read from the state.
- merge (`pipelines.dedup.sharded_merge`, rounds of executor tasks over document groups):
  stable order (state ``seq``: first sighting across builds), verification of candidates by
  their signatures' Jaccard estimate, connected components, keepers (documents kept by an
  earlier build stay kept; otherwise the ``keep`` policy decides), every other member assigned
  to its nearest keeper, decisions, and the persisted state (`pipelines.dedup.state`). One
  partition is one group: no task holds the whole corpus, and the result does not depend on
  the number of partitions.
- process (per shard): the decisions drop duplicates into rejects (``near_duplicate``, ``dup_of``).

The ``dedup_clusters`` catalog table lists every cluster of two or more documents.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import xxhash

from corpus.store import write_table
from pipelines.chinese_script import TARGETS, to_script
from pipelines.dedup import lsh, sharded_merge, state
from pipelines.dedup.minhash import optimal_bands, sign_documents
from pipelines.dedup.sharded_merge import CLUSTERS_TABLE, edges_path, index_path
from pipelines.dedup.shingle import SHINGLE_VERSION, string_buffers
from pipelines.step import GlobalStep, MergeRound, StepContext

KEEP_POLICIES = ("first", "longest", "quality_score")
MINHASH_VERSION = 2  # 2: one-permutation hashing with optimal densification (1: 128 affine hash functions)
SIGNATURE_SCHEME = "oph-densified"


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
    reduce_partitions: int = 1  # band grouping and merge rounds as that many executor tasks each
    chinese_script: str = "keep"  # simplified/traditional: shingle that script's form (a HK/TW copy matches)

    def __post_init__(self) -> None:
        if not 1 <= self.reduce_partitions <= 1024:
            raise ValueError(f"reduce_partitions must be in 1..1024, got {self.reduce_partitions}")
        if self.chinese_script not in TARGETS:
            raise ValueError(f"chinese_script must be one of {', '.join(TARGETS)}, got {self.chinese_script!r}")
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
        ] + ([f"script:{self.chinese_script}"] if self.chinese_script != "keep" else [])

    def signature_key(self) -> str:
        return hashlib.sha256(json.dumps(self.signature_ident()).encode()).hexdigest()[:12]

    def _state_dir(self, ctx: StepContext) -> Path:
        return ctx.stage.state("minhash", self.signature_key())

    # -- scan ------------------------------------------------------------------------------
    def scan(self, df: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        bands, rows = self.banding
        keys = doc_keys(df.get_column("doc_id"), df.get_column("text"))
        gen = 0
        new = np.ones(len(keys), bool)
        if self.incremental:
            directory = self._state_dir(ctx)
            gen = state.current_generation(directory)
            known = state.known_keys(directory, gen)
            if len(known):
                pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
                new = known[pos] != keys
        todo = df.filter(pl.Series(new))
        texts = todo.get_column("text")
        if self.chinese_script != "keep":
            texts, _ = to_script(texts, self.chinese_script)  # type: ignore[arg-type]
        sig_new, bh_new, _ = sign_documents(
            texts,
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
        # the per-document index goes to a side file for the merge; the band hashes of new
        # documents are returned one row per (document, band), shuffled by hash to the reduce
        write_table(out.to_arrow(), index_path(ctx.stage, ctx.shard_index))
        return _band_rows(out, ctx.shard_index, bands, self.reduce_partitions)

    def partitions(self) -> int:
        return self.reduce_partitions

    def _quality(self, df: pl.DataFrame, ctx: StepContext) -> pl.Series:
        if self.keep != "quality_score":
            return pl.Series("quality", [None] * df.height, dtype=pl.Float64)
        if "quality_score" not in df.columns:
            raise ValueError(
                f"minhash_dedup keep='quality_score' but shard {ctx.shard_index} has no 'quality_score' column; "
                "run the quality step before minhash_dedup or use keep='first' / 'longest'"
            )
        return df.get_column("quality_score").cast(pl.Float64)

    # -- reduce and merge ------------------------------------------------------------------
    def reduce(self, ctx: StepContext) -> dict[str, int]:
        """Candidate edges of one band-hash partition, over node ids ``shard << 32 | row``: the new
        documents' band rows come shuffled in ``ctx.scans()``; known documents' rows are read from
        the state segments and kept when they fall in this partition and are part of this build."""
        scans = ctx.scans()
        parts = [pl.read_parquet(p) for p in scans]
        if self.incremental and scans:
            index_files = [index_path(ctx.stage, k) for k in range(len(scans))]
            gens = {g for p in index_files for g in pl.read_parquet(p, columns=["base_gen"]).get_column("base_gen")}
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
            for seg in state.segments(self._state_dir(ctx), int(min(gens))) if present.height and gens else []:
                for k in range(bands):
                    parts.append(
                        pl.read_parquet(seg, columns=["key", f"band_{k}"])
                        .filter(lsh.partition_mask(pl.col(f"band_{k}"), ctx.partition, self.reduce_partitions))
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
        write_table(edges.to_arrow(), edges_path(ctx.stage, ctx.partition))
        return {"edges": edges.height}

    def merge_spec(self, ctx: StepContext) -> sharded_merge.MergeSpec:
        return sharded_merge.MergeSpec(
            parts=self.reduce_partitions,
            num_perm=self.num_perm,
            threshold=self.threshold,
            verify=self.verify,
            keep=self.keep,
            incremental=self.incremental,
            state_dir=self._state_dir(ctx),
            signature_ident=self.signature_ident(),
            bands=self.banding[0],
        )

    def merge_plan(self, ctx: StepContext) -> MergeRound | None:
        """Verification, components, keepers and state over document groups (`sharded_merge`)."""
        return sharded_merge.plan(self.merge_spec(ctx), ctx)

    def merge(self, ctx: StepContext) -> dict[str, Any]:
        return sharded_merge.run(self.merge_spec(ctx), ctx)


BAND_ROW_SCHEMA = {"node": pl.UInt64, "band": pl.Int32, "h": pl.UInt64}


def _band_rows(out: pl.DataFrame, shard: int, bands: int, parts: int) -> pl.DataFrame:
    """One row per (new document, band) with its node id and reduce partition (band hash mod parts)."""
    node = pl.lit(shard << 32, pl.UInt64) + pl.int_range(pl.len(), dtype=pl.UInt64)
    wide = out.select(node.alias("node"), "new", *(f"band_{k}" for k in range(bands))).filter(pl.col("new"))
    long = pl.concat(
        [wide.select("node", pl.lit(k, pl.Int32).alias("band"), pl.col(f"band_{k}").alias("h")) for k in range(bands)]
    )
    return long.filter(pl.col("h") != 0).with_columns(partition=(pl.col("h") % parts).cast(pl.Int32))


__all__ = ["CLUSTERS_TABLE", "MinHashDedup", "doc_keys"]
