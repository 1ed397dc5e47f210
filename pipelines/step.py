"""What a pipeline step is: one small class with one job over Polars frames of one shard.

A *map* step sees one shard at a time and returns the rows it keeps and the rows it rejects
(each with a named reason). A *global* step (dedup, quantile bucketing) adds phases before
that: ``scan`` writes small per-shard key tables, ``reduce`` turns them into decisions, one
executor task per partition of the keys, optional ``merge`` rounds combine the partitions, and
``process`` applies the decisions per shard. Steps never count their own stats: the runner
derives docs/bytes in and out and drops by reason from what they return, so every step is
accounted the same way. A step that rewrites ``text`` says so (``rewrites_text``) and the
runner rewrites instruction rows' prompt and response with the same transform.

Parameters are dataclass fields; `Step.from_params` rejects unknown keys by name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import polars as pl
import pyarrow as pa

from common.config import ConfigError
from corpus.schema import REJECT_SCHEMA
from corpus.stage import StageDir
from corpus.store import write_table

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
class StepContext:
    """Where a step's hook runs, one object for all of them: the stage's directory and root, and
    which shard (``scan``, ``process``), reduce partition (``reduce``) or merge task (``merge``)."""

    shard_index: int
    step_dir: Path
    root: Path
    partition: int = 0
    round_index: int = 0
    phase: str = ""
    part: int = 0

    @property
    def stage(self) -> StageDir:
        return StageDir(self.step_dir, self.root / "state")

    def table_dir(self, table: str) -> Path:
        """Side outputs under ``tables/<name>/`` are loaded into the catalog as table ``name``."""
        return self.stage.table(table, 0).parent

    @property
    def state_dir(self) -> Path:
        """Persistent per-corpus state (caches, indexes) that outlives one build."""
        return self.stage.state()

    # -- a global step's reduce and merge -------------------------------------------------
    def scans(self) -> list[Path]:
        """This reduce partition's scan rows of every shard, one file per shard in shard order."""
        return self.stage.scans(self.partition)

    def write_decisions(self, decisions: pl.DataFrame, part: int | None = None) -> None:
        """Decisions for ``process`` to apply (`apply_decisions`): one file per reduce partition or
        merge task (``part``, by default this partition)."""
        write_table(decisions.to_arrow(), self.stage.decisions(self.partition if part is None else part))

    def decisions(self) -> pl.DataFrame:
        """Every decision of the stage (read once per worker process, not once per shard)."""
        files = self.stage.decision_files()
        if not files:
            raise FileNotFoundError(f"{self.step_dir}: no decisions written by the reduce")
        return _read_decisions(tuple((f, f.stat().st_mtime_ns) for f in files))

    def round_stats(self, round_index: int) -> list[dict[str, Any]]:
        """The stats of every task of merge round ``round_index`` (what ``merge_plan`` decides by)."""
        return self.stage.stats(merge_phase(round_index))


ShardContext = StepContext  # the name map steps and their tests construct it by


def merge_phase(round_index: int) -> str:
    return f"merge-r{round_index:03d}"


@lru_cache(maxsize=4)
def _read_decisions(files: tuple[tuple[Path, int], ...]) -> pl.DataFrame:
    return pl.read_parquet([f for f, _ in files])


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
    # True when ``process`` rewrites ``text``: the runner then rewrites every instruction row's
    # parts (`pipelines.steps.instruction_meta`) with `rewrite_texts`, so none is left uncleaned
    rewrites_text: ClassVar[bool] = False
    # CPU seconds one MB of text costs this step, roughly (from its benchmark): what the runner
    # sizes tasks by. A map step at or above `HEAVY_COST_PER_MB` has its shards re-split into
    # smaller tasks, so that every worker stays busy; a cheaper one runs fused with its cheap
    # neighbours (one read and one write for the run of them). See `cost`.
    cost_per_mb: ClassVar[float] = 0.0

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

    def changed_params(self) -> dict[str, Any]:
        """The parameters that differ from the step's defaults (or have none): what a config chose."""
        defaults: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
        return {k: v for k, v in self.params().items() if k not in defaults or defaults[k] != v}

    def cost(self) -> float:
        """CPU seconds per MB of text with these parameters (``cost_per_mb`` unless overridden)."""
        return self.cost_per_mb

    def applied_thresholds(self) -> list[tuple[str, str, float]]:
        """The thresholds the step applies, as ``(measure, label, value)`` (the measure: a
        ``quality_signals`` field, ``quality_score``, or ``characters`` of the text). Recorded in
        the catalog at build time (``step_settings``), so a report draws what the build applied."""
        return []

    def setup(self, root: Path) -> None:
        """Load heavy resources once per worker process (models, recognizers)."""

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def rewrite_texts(self, texts: list[str], docs: pl.DataFrame) -> list[str]:
        """``texts`` rewritten the way ``process`` rewrites a document's text (``rewrites_text``
        steps); ``docs`` holds, per text, the input row of the document it belongs to."""
        raise NotImplementedError(f"step {self.name!r} declares rewrites_text but has no rewrite_texts")


HEAVY_COST_PER_MB = 0.1  # CPU s/MB from which a map step's shards are re-split (light steps fuse)


def is_heavy(step: Step) -> bool:
    """A map step whose shards are worth re-splitting into several tasks."""
    return not step.is_global and step.cost() >= HEAVY_COST_PER_MB


def is_light(step: Step) -> bool:
    """A map step cheap enough that reading and writing its shard would dominate: it runs fused
    with the light map steps next to it."""
    return not step.is_global and step.cost() < HEAVY_COST_PER_MB


@dataclass
class GlobalStep(Step):
    """A step that needs to see every shard before deciding: ``scan`` per shard, ``reduce`` per
    partition of the scanned keys, optional ``merge`` rounds, then ``process`` per shard, which
    by default applies the decisions (`apply_decisions`). Every hook gets a `StepContext`."""

    is_global: ClassVar[bool] = True

    def scan(self, df: pl.DataFrame, ctx: StepContext) -> pl.DataFrame:
        """Per-shard keys for the reduce (small: ids and hashes, not texts); with more than one
        partition, an int column ``partition`` says which reduce task gets each row."""
        raise NotImplementedError

    def partitions(self) -> int:
        """How many reduce tasks; each sees only its partition's rows of every shard (in shard
        order, ``ctx.scans()``), so one partition is the whole reduce."""
        return 1

    def reduce(self, ctx: StepContext) -> dict[str, Any] | None:
        """One partition: read ``ctx.scans()``, write decisions (``ctx.write_decisions``) or files
        a merge round reads; returns small JSON stats (or None)."""
        raise NotImplementedError

    def merge_plan(self, ctx: StepContext) -> MergeRound | None:
        """After the reduce: merge round ``ctx.round_index`` (a phase name and a task count), or
        None when done. Runs on the driver once the previous round finished and reads only its
        small stats (``ctx.round_stats``), so iterative passes (label propagation) can decide
        whether another round is needed; it must give the same answer when asked again after a
        crash, since finished rounds are skipped by their done markers."""
        return None

    def merge(self, ctx: StepContext) -> dict[str, Any]:
        """Task ``ctx.part`` of merge round ``ctx.round_index`` (phase ``ctx.phase``), run by the
        executor; returns small JSON stats."""
        raise NotImplementedError

    def process(self, df: pl.DataFrame, ctx: StepContext) -> StepOutput:
        return apply_decisions(df, ctx.decisions(), self)


DECISION_REJECT_COLUMNS = ("reason", "dup_of", "detail")


def apply_decisions(df: pl.DataFrame, decisions: pl.DataFrame, step: Step) -> StepOutput:
    """A global step's decisions on one shard: documents whose decision has a ``reason`` are
    rejected with it (and its ``dup_of``, ``detail`` when given); any other decision column is
    one the step adds (``step.adds``), which every kept document must get."""
    marked = df.join(decisions, on="doc_id", how="left", maintain_order="left")
    added = [c for c in decisions.columns if c != "doc_id" and c not in DECISION_REJECT_COLUMNS]
    has_reason = "reason" in decisions.columns
    drop = pl.col("reason").is_not_null() if has_reason else pl.lit(False)
    kept = marked.filter(~drop).drop([c for c in DECISION_REJECT_COLUMNS if c in decisions.columns])
    for column in added:
        missing = kept.get_column(column).null_count()
        if missing:
            raise ValueError(f"step {step.name!r}: {missing} documents got no {column!r} from the decisions")
    rejected = (
        reject(
            marked.filter(drop),
            step.name,
            pl.col("reason"),
            dup_of=pl.col("dup_of") if "dup_of" in decisions.columns else None,
            detail=pl.col("detail") if "detail" in decisions.columns else None,
        )
        if has_reason
        else empty_rejects()
    )
    return StepOutput(kept, rejected)


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
    "HEAVY_COST_PER_MB",
    "GlobalStep",
    "Resources",
    "ShardContext",
    "Step",
    "StepContext",
    "StepOutput",
    "apply_decisions",
    "empty_rejects",
    "is_heavy",
    "is_light",
    "reject",
    "split_by_mask",
]
