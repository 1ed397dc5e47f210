"""`StageDir`: the one place that names what a build stage keeps in its ``work/`` directory.

A stage (ingest, one step, publish) is a directory named by a hash of its inputs (so a resumed
build finds its own work and never another plan's). Its tasks write, atomically:

=======================================  ===========================================================
``part-<key>.parquet``                   the stage's output rows: the next stage's work shards
``rejects-<key>.parquet``                the rows it removed, with step and reason
``scan/part-<shard>-p<partition>``       a global step's per-shard keys, one file per reduce partition
``decisions/part-<n>.parquet``           a global step's decisions, applied to every shard
``tables/<name>/part-<n>.parquet``       side tables, loaded into the catalog as table ``<name>``
``<scratch>/...``                        files private to one kind of task (ids, merge rounds ...)
``done/<phase>-<index>.json``            a finished task's marker and stats, written last
=======================================  ===========================================================

Persistent per-corpus state (dedup indexes, caches) is not a stage's: it lives under the
corpus root's ``state/`` (`CorpusLayout.state`), reached through `StageDir.state`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StageDir:
    path: Path
    state_root: Path  # <corpus root>/state

    # -- output rows ----------------------------------------------------------------------
    def part(self, key: int | str) -> Path:
        """Output rows of task ``key`` (a shard index, or ``<raw shard>-<n>`` for ingest)."""
        return self.path / f"{self.part_prefix(key)}.parquet"

    @staticmethod
    def part_prefix(key: int | str) -> str:
        return f"part-{key:05d}" if isinstance(key, int) else f"part-{key}"

    def parts(self) -> list[Path]:
        """Every output file, in work order (the order the next stage reads them in)."""
        return sorted(self.path.glob("part-*.parquet"))

    def rejects(self, key: int) -> Path:
        return self.path / f"rejects-{key:05d}.parquet"

    def all_rejects(self) -> list[Path]:
        return sorted(self.path.glob("rejects-*.parquet"))

    # -- a global step's shuffle and decisions --------------------------------------------
    def scan(self, shard: int, partition: int) -> Path:
        return self.path / "scan" / f"part-{shard:05d}-p{partition:03d}.parquet"

    def scans(self, partition: int) -> list[Path]:
        """Partition ``partition``'s scan files of every shard, in shard order."""
        return sorted((self.path / "scan").glob(f"part-*-p{partition:03d}.parquet"))

    def decisions(self, part: int) -> Path:
        return self.path / "decisions" / f"part-{part:05d}.parquet"

    def decision_files(self) -> list[Path]:
        return sorted((self.path / "decisions").glob("part-*.parquet"))

    # -- side tables and private files ----------------------------------------------------
    def table(self, name: str, part: int) -> Path:
        """Part ``part`` of side table ``name`` (the catalog table of that name after publish)."""
        return self.path / "tables" / name / f"part-{part:05d}.parquet"

    def side_tables(self) -> dict[str, list[Path]]:
        return {d.name: sorted(d.glob("*.parquet")) for d in sorted((self.path / "tables").glob("*")) if d.is_dir()}

    def scratch(self, name: str) -> Path:
        """A directory private to one kind of task (e.g. ``ids``, ``merge``)."""
        return self.path / name

    def child(self, name: str) -> StageDir:
        """A stage nested in this one (publish, inside the last step's directory)."""
        return StageDir(self.path / name, self.state_root)

    def state(self, *names: str) -> Path:
        """Per-corpus state that outlives a build (``<root>/state/<names...>``)."""
        return self.state_root.joinpath(*names)

    # -- done markers ---------------------------------------------------------------------
    def marker(self, phase: str, index: int) -> Path:
        return self.path / "done" / f"{phase}-{index:05d}.json"

    def is_done(self, phase: str, index: int) -> bool:
        return self.marker(phase, index).exists()

    def stats(self, phase: str) -> list[dict[str, Any]]:
        """The stats of every finished task of ``phase``, in index order."""
        files = sorted((self.path / "done").glob(f"{phase}-[0-9]*.json"))
        return [json.loads(p.read_text()) for p in files]

    def all_stats(self) -> list[dict[str, Any]]:
        """The stats of every finished task of the stage, of any phase."""
        return [json.loads(p.read_text()) for p in sorted((self.path / "done").glob("*.json"))]

    def forget(self, phase: str) -> None:
        """Drop ``phase``'s markers (its tasks rerun: their outputs are recreated every time)."""
        for path in (self.path / "done").glob(f"{phase}-[0-9]*.json"):
            path.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


__all__ = ["StageDir"]
