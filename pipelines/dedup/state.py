"""Persistent MinHash state under ``<root>/state/minhash/<signature-key>/``, so a later build
signs only documents it has not seen (e.g. after a new crawl) and keeps earlier keepers kept.

Layout (one directory per signature parameters; other parameters may change freely):

- ``segments/seg-GGGGG.parquet``: documents first signed by build generation G: ``key`` (uint64
  hash of doc_id and text, so an edited text is signed again), ``sig``, ``band_0``..``band_{b-1}``.
  Old signatures are never recomputed.
- ``segments/base-GGGGG.parquet``: the compacted segments of generations 1..G. When a build
  leaves more than ``MAX_SEGMENTS`` segment files in force, they are merged (streamed, one
  row group at a time) into a new base, so repeated incremental builds keep a bounded number of
  files and the reduce reads at most ``MAX_SEGMENTS`` files per band.
- ``docs-GGGGG/part-PPPPP.parquet``: every document known after generation G: ``key``,
  ``doc_id``, ``seq`` (its position in the stable order: first sighting, never changes), ``kept``
  (whether the last build kept it) and ``seg`` (the generation that signed it). One part per
  merge partition (``key % parts``), so a partitioned merge writes it without one process
  holding every row. (Older states have one ``docs-GGGGG.parquet`` file; it is still read.)
- ``CURRENT.json``: ``{"gen": G, "base": B}``, the generation readers should use and the base it
  builds on; written last, so a crash before it leaves the previous generation in force (a
  rerun rewrites the same files), and files it no longer refers to are deleted only after it.
- ``key.json``: the parameters the directory's signatures depend on (for audits).
"""

from __future__ import annotations

import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from corpus.store import write_bytes, write_streamed

DOCS_SCHEMA = {"key": pl.UInt64, "doc_id": pl.String, "seq": pl.UInt64, "kept": pl.Boolean, "seg": pl.Int64}
MAX_SEGMENTS = 8
MERGE_BATCH_ROWS = 1 << 16


class StateError(RuntimeError):
    """The persisted dedup state is inconsistent; the message names the directory."""


def read_current(directory: Path) -> dict[str, int]:
    """``{"gen": G, "base": B}`` in force (zeros when nothing was persisted yet)."""
    path = directory / "CURRENT.json"
    if not path.exists():
        return {"gen": 0, "base": 0}
    current = json.loads(path.read_text())
    return {"gen": int(current["gen"]), "base": int(current.get("base", 0))}


def current_generation(directory: Path) -> int:
    """The generation in force (0 when nothing was persisted yet)."""
    return read_current(directory)["gen"]


def docs_path(directory: Path, gen: int) -> Path:
    """The directory of generation ``gen``'s docs table parts."""
    return directory / f"docs-{gen:05d}"


def docs_part_path(directory: Path, gen: int, part: int) -> Path:
    return docs_path(directory, gen) / f"part-{part:05d}.parquet"


def docs_files(directory: Path, gen: int) -> list[Path]:
    """The files of generation ``gen``'s docs table (parts, or the single file of older states)."""
    legacy = directory / f"docs-{gen:05d}.parquet"
    files = sorted(docs_path(directory, gen).glob("part-*.parquet")) or ([legacy] if legacy.exists() else [])
    if not files:
        raise StateError(f"{directory}: generation {gen} is current but its docs table docs-{gen:05d} is missing")
    return files


def segment_path(directory: Path, gen: int) -> Path:
    return directory / "segments" / f"seg-{gen:05d}.parquet"


def base_path(directory: Path, gen: int) -> Path:
    return directory / "segments" / f"base-{gen:05d}.parquet"


def read_docs(directory: Path, gen: int) -> pl.DataFrame:
    if gen == 0:
        return pl.DataFrame(schema=DOCS_SCHEMA)
    return pl.read_parquet(docs_files(directory, gen))


@lru_cache(maxsize=4)
def _known_keys(files: tuple[tuple[Path, int], ...]) -> np.ndarray:
    keys = [pl.read_parquet(path, columns=["key"]).get_column("key").to_numpy() for path, _ in files]
    return np.sort(np.concatenate(keys))


def known_keys(directory: Path, gen: int) -> np.ndarray:
    """Sorted keys that already have a signature (read once per worker process and generation)."""
    if gen == 0:
        return np.zeros(0, np.uint64)
    return _known_keys(tuple((p, p.stat().st_mtime_ns) for p in docs_files(directory, gen)))


def next_seq(directory: Path, gen: int) -> int:
    """The ``seq`` the next new document gets: one past the largest known, from the Parquet
    statistics when present (so a merge task need not read the column)."""
    if gen == 0:
        return 0
    top = -1
    for path in docs_files(directory, gen):
        meta = pq.ParquetFile(path).metadata
        col = meta.schema.names.index("seq")
        for rg in range(meta.num_row_groups):
            stats = meta.row_group(rg).column(col).statistics
            if stats is None or not stats.has_min_max:
                top = max(top, int(pl.read_parquet(path, columns=["seq"]).get_column("seq").max() or -1))
                break
            top = max(top, int(stats.max))
    return top + 1


def segments(directory: Path, upto: int, base: int | None = None) -> list[Path]:
    """The files holding the signatures of generations 1..upto: the base in force (``base``, by
    default the one of CURRENT.json) and the segment files after it (a build with no new
    documents has none). A base may hold more than ``upto`` generations; readers join on key."""
    if base is None:
        base = read_current(directory)["base"]
    files = []
    if base:
        path = base_path(directory, base)
        if not path.exists():
            raise StateError(f"{directory}: base generation {base} is current but {path.name} is missing")
        files.append(path)
    files.extend(p for g in range(base + 1, upto + 1) if (p := segment_path(directory, g)).exists())
    return files


def compact(directory: Path, gen: int) -> int:
    """The base generation to commit with ``gen``: the current one, or ``gen`` itself after
    merging every file in force into ``base-gen`` when there are more than ``MAX_SEGMENTS``."""
    base = read_current(directory)["base"]
    files = segments(directory, gen, base)
    if len(files) <= MAX_SEGMENTS:
        return base
    dest = base_path(directory, gen)
    batches = (b for path in files for b in pq.ParquetFile(path).iter_batches(batch_size=MERGE_BATCH_ROWS))
    write_streamed(batches, dest)
    return gen


def commit(directory: Path, gen: int, base: int = 0) -> None:
    """Make ``gen`` (on ``base``) current, then drop what it no longer refers to: docs tables
    older than its predecessor, segments merged into the base and older bases."""
    write_bytes(json.dumps({"gen": gen, "base": base}).encode(), directory / "CURRENT.json")
    for old in directory.glob("docs-*"):
        if int(old.name.split("-")[1].split(".")[0]) < gen - 1:
            shutil.rmtree(old) if old.is_dir() else os.unlink(old)
    for old in (directory / "segments").glob("*.parquet"):
        kind, g = old.stem.split("-")
        if (kind == "seg" and int(g) <= base) or (kind == "base" and int(g) != base):
            os.unlink(old)


def require_known(docs: pl.DataFrame, directory: Path) -> None:
    """Documents scanned as known (``new`` false) must have found their state row (``seq``)."""
    lost = docs.filter(~pl.col("new") & pl.col("seq").is_null())
    if lost.height:
        raise StateError(
            f"{directory}: {lost.height} documents were scanned as known but are not in the state, "
            f"e.g. {lost.get_column('doc_id')[0]}; delete the directory to rebuild it"
        )


def write_key(directory: Path, ident: list) -> None:
    """Record the parameters behind this directory's signatures (once)."""
    path = directory / "key.json"
    if not path.exists():
        write_bytes(json.dumps(ident).encode(), path)


__all__ = [
    "DOCS_SCHEMA",
    "MAX_SEGMENTS",
    "StateError",
    "base_path",
    "commit",
    "compact",
    "current_generation",
    "docs_files",
    "docs_part_path",
    "docs_path",
    "known_keys",
    "next_seq",
    "read_current",
    "read_docs",
    "require_known",
    "segment_path",
    "segments",
    "write_key",
]
