"""What a pipeline step is: one small class with one job over Polars frames of one shard.

A *map* step sees one shard at a time and returns the rows it keeps and the rows it rejects
(each with a named reason). A *global* step (dedup, quantile bucketing) adds two phases around
that: ``scan`` writes small per-shard key tables, ``reduce`` turns all of them into decisions
(on the driver, or distributed by an executor), and ``process`` applies the decisions per shard.
Steps never count their own stats: the runner derives docs/bytes in and out and drops by reason
from what they return, so every step is accounted the same way.

Parameters are dataclass fields; `Step.from_params` rejects unknown keys by name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import polars as pl
import pyarrow as pa

from corpus.schema import REJECT_SCHEMA


class ConfigError(ValueError):
    """A configuration is wrong; the message names the key and the file."""


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), "null" if value is None else type(value).__name__)


def type_mismatch(value: Any, annotation: Any) -> str | None:
    """What ``value`` should have been to match ``annotation`` (a parameter's type hint), or None
    when it matches. YAML gives ints where floats are meant, so an int is a number; a bool is not."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is typing.Any:
        return None
    if origin in (types.UnionType, typing.Union):
        wrongs = [type_mismatch(value, a) for a in args]
        return None if None in wrongs else " or ".join(w for w in wrongs if w)
    if origin is Literal:
        return None if value in args else "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return "a list"
        item = args[0] if args else Any
        return next((f"a list of which each item is {w}" for v in value if (w := type_mismatch(v, item))), None)
    if origin is dict:
        if not isinstance(value, dict):
            return "a mapping"
        key_type, value_type = args or (Any, Any)
        for k, v in value.items():
            if wrong := type_mismatch(k, key_type):
                return f"a mapping whose keys are each {wrong}"
            if wrong := type_mismatch(v, value_type):
                return f"{wrong} at key {k!r}"
        return None
    if annotation is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else _NAMES[float]
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else _NAMES[int]
    if annotation in (bool, str, type(None)):
        return None if isinstance(value, annotation) else _NAMES[annotation]
    return None  # a type this check does not know: the step's own validation decides


@dataclass(frozen=True)
class Resources:
    """What one task of a step needs, so an executor can place it (cf. NeMo Curator stages)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int = 1024


@dataclass(frozen=True)
class ShardContext:
    """Where a step is running: which shard, and the step's own directory for side outputs."""

    shard_index: int
    step_dir: Path
    root: Path

    def table_dir(self, table: str) -> Path:
        """Side outputs under ``tables/<name>/`` are loaded into the catalog as table ``name``."""
        return self.step_dir / "tables" / table

    @property
    def state_dir(self) -> Path:
        """Persistent per-corpus state (caches, indexes) that outlives one build."""
        return self.root / "state"


@dataclass
class StepOutput:
    kept: pl.DataFrame
    rejected: pl.DataFrame


@dataclass
class Step:
    """Base class. Subclasses set ``name``, declare added columns in ``adds`` and implement
    ``process``; parameters are dataclass fields with defaults."""

    name: ClassVar[str] = ""
    adds: ClassVar[tuple[pa.Field, ...]] = ()
    resources: ClassVar[Resources] = Resources()
    is_global: ClassVar[bool] = False
    # bump when the step's output for the same input and params changes (an algorithm change):
    # it is part of the stage identity, so a resumed build never reuses the old version's work
    version: ClassVar[str] = "1"

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, *, where: str) -> Step:
        params = dict(params or {})
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(
                f"{where}: unknown parameter(s) {', '.join(map(repr, unknown))} for step {cls.name!r}; "
                f"known: {', '.join(sorted(known)) or '(none)'}"
            )
        hints = typing.get_type_hints(cls)
        for key, value in params.items():
            wrong = type_mismatch(value, hints.get(key, Any))
            if wrong:
                raise ConfigError(
                    f"{where}: step {cls.name!r}: parameter {key!r} must be {wrong}, got {value!r} ({_kind(value)})"
                )
        try:
            step = cls(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: step {cls.name!r}: {exc}") from exc
        return step

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def setup(self, root: Path) -> None:
        """Load heavy resources once per worker process (models, recognizers)."""

    def process(self, df: pl.DataFrame, ctx: ShardContext) -> StepOutput:
        raise NotImplementedError


@dataclass
class GlobalStep(Step):
    """A step that needs to see every shard before deciding (map -> reduce -> apply)."""

    is_global: ClassVar[bool] = True

    def scan(self, df: pl.DataFrame, ctx: ShardContext) -> pl.DataFrame:
        """Per-shard keys for the reduce phase (small: ids and hashes, not texts)."""
        raise NotImplementedError

    def reduce(self, scans: list[Path], step_dir: Path, root: Path) -> None:
        """Read all scan files, write decisions under ``step_dir`` for ``process`` to apply."""
        raise NotImplementedError

    # -- optional: a reduce that an executor can spread over several tasks (a shuffle) --------
    def partitions(self) -> int:
        """How many independent reduce partitions; > 1 means ``scan`` output carries an int
        column ``partition`` and ``reduce_partition`` is called once per partition, each with
        only that partition's rows of every shard (in shard order)."""
        return 1

    def reduce_partition(self, scans: list[Path], partition: int, step_dir: Path, root: Path) -> None:
        raise NotImplementedError

    def merge_plan(self, step_dir: Path, round_index: int) -> MergeRound | None:
        """After all partitions: round ``round_index`` of combining their outputs (a phase name
        and a task count), or None when the merge is complete. Called on the driver once the
        previous round's tasks are done; it reads only their small stats
        (`pipelines.tasks.merge_round_stats`), so iterative passes (e.g. label propagation) can
        decide whether another round is needed. Must give the same answer when re-asked after a
        crash, so finished rounds are skipped by their done markers."""
        return None

    def merge_task(self, phase: str, part: int, round_index: int, step_dir: Path, root: Path) -> dict[str, Any]:
        """One task of a merge round, run by the executor; returns small JSON stats."""
        raise NotImplementedError


class MergeRound(NamedTuple):
    phase: str
    tasks: int


def reject(
    df: pl.DataFrame,
    step: str,
    reason: str | pl.Expr,
    *,
    dup_of: pl.Expr | None = None,
    detail: pl.Expr | None = None,
) -> pl.DataFrame:
    """Turn removed document rows into reject rows (the document's text is kept for audits)."""
    reason_expr = pl.lit(reason) if isinstance(reason, str) else reason
    return df.select(
        pl.col("doc_id"),
        pl.col("source"),
        pl.col("url"),
        pl.lit(step).alias("step"),
        reason_expr.cast(pl.String).alias("reason"),
        (dup_of if dup_of is not None else pl.lit(None)).cast(pl.String).alias("dup_of"),
        (detail if detail is not None else pl.lit(None)).cast(pl.String).alias("detail"),
        pl.col("text"),
    )


def empty_rejects() -> pl.DataFrame:
    return pl.from_arrow(REJECT_SCHEMA.empty_table())  # type: ignore[return-value]


def split_by_mask(df: pl.DataFrame, drop: pl.Expr, step: str, reason: str | pl.Expr, **kw: Any) -> StepOutput:
    """The common filter shape: rows where ``drop`` is true are rejected with ``reason``."""
    marked = df.with_columns(drop.fill_null(False).alias("__drop"))
    kept = marked.filter(~pl.col("__drop")).drop("__drop")
    removed = marked.filter(pl.col("__drop")).drop("__drop")
    return StepOutput(kept, reject(removed, step, reason, **kw))


__all__ = [
    "ConfigError",
    "GlobalStep",
    "Resources",
    "ShardContext",
    "Step",
    "StepOutput",
    "empty_rejects",
    "reject",
    "split_by_mask",
]
