"""Persistent MinHash state under ``<root>/state/minhash/<signature-key>/``, so a later build
signs only documents it has not seen (e.g. after a new crawl) and keeps earlier keepers kept.

Layout (one directory per signature parameters; other parameters may change freely):

- ``segments/seg-GGGGG.parquet``: documents first signed by build generation G: ``key`` (uint64
  hash of doc_id and text, so an edited text is signed again), ``sig``, ``band_0``..``band_{b-1}``.
  Append-only: old signatures are never recomputed or rewritten.
- ``docs-GGGGG.parquet``: every document known after generation G: ``key``, ``doc_id``, ``seq``
  (its position in the stable order: first sighting, never changes), ``kept`` (whether the last
  build kept it) and ``seg`` (which segment holds its signature).
- ``CURRENT.json``: the generation readers should use; written last, so a crash before it
  leaves the previous generation in force, and a rerun rewrites the same next generation.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from corpus.store import write_bytes

DOCS_SCHEMA = {"key": pl.UInt64, "doc_id": pl.String, "seq": pl.UInt64, "kept": pl.Boolean, "seg": pl.Int64}


class StateError(RuntimeError):
    """The persisted dedup state is inconsistent; the message names the directory."""


def state_dir(root: Path, signature_key: str) -> Path:
    return root / "state" / "minhash" / signature_key


def current_generation(directory: Path) -> int:
    """The generation in force (0 when nothing was persisted yet)."""
    path = directory / "CURRENT.json"
    if not path.exists():
        return 0
    return int(json.loads(path.read_text())["gen"])


def docs_path(directory: Path, gen: int) -> Path:
    return directory / f"docs-{gen:05d}.parquet"


def segment_path(directory: Path, gen: int) -> Path:
    return directory / "segments" / f"seg-{gen:05d}.parquet"


def read_docs(directory: Path, gen: int) -> pl.DataFrame:
    if gen == 0:
        return pl.DataFrame(schema=DOCS_SCHEMA)
    path = docs_path(directory, gen)
    if not path.exists():
        raise StateError(f"{directory}: generation {gen} is current but {path.name} is missing")
    return pl.read_parquet(path)


@lru_cache(maxsize=4)
def _known_keys(path: Path, mtime_ns: int) -> np.ndarray:
    return np.sort(pl.read_parquet(path, columns=["key"]).get_column("key").to_numpy())


def known_keys(directory: Path, gen: int) -> np.ndarray:
    """Sorted keys that already have a signature (read once per worker process and generation)."""
    if gen == 0:
        return np.zeros(0, np.uint64)
    path = docs_path(directory, gen)
    return _known_keys(path, path.stat().st_mtime_ns)


def segments(directory: Path, upto: int) -> list[Path]:
    """Existing segment files of generations 1..upto (a build with no new documents has none)."""
    return [p for g in range(1, upto + 1) if (p := segment_path(directory, g)).exists()]


def commit(directory: Path, gen: int) -> None:
    """Make ``gen`` current and drop docs tables older than its predecessor."""
    write_bytes(json.dumps({"gen": gen}).encode(), directory / "CURRENT.json")
    for old in directory.glob("docs-*.parquet"):
        if int(old.stem.split("-")[1]) < gen - 1:
            os.unlink(old)


__all__ = [
    "DOCS_SCHEMA",
    "StateError",
    "commit",
    "current_generation",
    "docs_path",
    "known_keys",
    "read_docs",
    "segment_path",
    "segments",
    "state_dir",
]
