"""Every unit of build work is a `Task`, and `run_task` runs each one the same way in a worker.

A task has a key, ``(phase, index)`` within its stage (`corpus.stage.StageDir`), and a ``run``
that does the work and returns small JSON stats, or a `ShardOutput` (the rows it kept and
rejected from one work unit), which `run_task` checks (every input row kept or rejected exactly
once), conforms and writes. `run_task` then writes the task's done marker last, with the stats
and the seconds it took: a task is either finished (marker present, outputs complete) or is
redone by the next run. Ingest (`pipelines.ingest`), the steps' phases (here) and publish
(`pipelines.publish`) are all tasks; the runner only orders their phases.

A step's phases: ``scan`` per shard (global steps; the keys shuffled into one file per reduce
partition), ``reduce`` per partition, the step's ``merge`` rounds, then ``process`` per shard.
`ProcessTask` applies the step and, for a step that ``rewrites_text``, the same rewrite to the
instruction fields of every row (`pipelines.steps.instruction_meta`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.catalog import MemoryModel
from corpus.schema import REJECT_SCHEMA, conform
from corpus.stage import StageDir
from corpus.store import WORK_COMPRESSION, balanced_slices, write_bytes, write_table
from pipelines.pii.scrub import RejectsPolicy, apply_rejects_text
from pipelines.step import GlobalStep, MergeRound, Resources, Step, StepContext, is_heavy, merge_phase
from pipelines.steps.instruction_meta import has_meta_text, rewrite_parts
from pipelines.usage import Usage, measure

Stats = dict[str, Any]


class AccountingError(RuntimeError):
    """A step lost or duplicated documents; this is a bug in the step, never tolerated."""


@dataclass(frozen=True)
class TaskContext:
    """What a task gets from the worker process it runs in."""

    stage: StageDir
    root: Path

    def ready(self, step: Step) -> Step:
        """``step``, set up once per worker process and reused for every task it runs."""
        key = json.dumps([step.name, step.params()], sort_keys=True, default=str)
        if key not in _READY:
            step.setup(self.root)
            _READY[key] = step
        return _READY[key]


_READY: dict[str, Step] = {}


@dataclass(frozen=True)
class ShardOutput:
    """The rows of one work unit: written by `run_task` as ``part-<key>`` (or, with
    ``split_bytes``, ``part-<key>-NNNNN`` files of equal size, none over that many in-memory bytes) and
    ``rejects-<key>``, after the accounting check."""

    before: pl.DataFrame
    kept: pl.DataFrame
    rejected: pl.DataFrame
    schema: pa.Schema
    origin: str  # what to name in an error: "step 'x' on shard part-00003.parquet"
    rejects_text: RejectsPolicy = field(default_factory=RejectsPolicy)
    split_bytes: int | None = None


@dataclass(frozen=True)
class Task:
    """One idempotent unit of work: ``index`` within ``phase`` of ``stage``."""

    stage: StageDir
    index: int
    root: Path
    phase: ClassVar[str] = ""

    @property
    def key(self) -> tuple[str, int]:
        return (self.phase, self.index)

    @property
    def resources(self) -> Resources:
        return Resources()

    def run(self, ctx: TaskContext) -> Stats | ShardOutput:
        raise NotImplementedError


def warm_worker() -> None:
    """Nothing: a pool worker that runs it has imported this module (and so what every task
    needs) before its first task arrives (`Executor.start`)."""


def run_task(task: Task) -> Stats:
    """Run ``task``, write what it produced and its marker (last); its stats, with the wall
    seconds, the CPU seconds and the peak RSS (MB) of the worker process over the task."""
    if isinstance(task, FusedTask):
        return task.run_fused()
    started = time.perf_counter()
    with measure() as usage:
        result = task.run(TaskContext(task.stage, task.root))
        stats = write_shard(task, result) if isinstance(result, ShardOutput) else dict(result)
    _finish(task.stage, task.phase, task.index, stats, started, usage)
    return stats


def _finish(stage: StageDir, phase: str, index: int, stats: Stats, started: float, usage: Usage) -> None:
    """Time and memory into ``stats``, then the done marker (the last thing a task writes)."""
    stats["seconds"] = time.perf_counter() - started
    stats["cpu_seconds"] = usage.cpu_seconds
    stats["peak_rss_mb"] = usage.peak_rss_mb
    write_bytes(json.dumps(stats).encode(), stage.marker(phase, index))


def write_shard(task: Task, out: ShardOutput) -> Stats:
    return write_outputs(task.stage, task.index, out)[0]


def write_outputs(stage: StageDir, index: int, out: ShardOutput, *, write_kept: bool = True) -> tuple[Stats, pa.Table]:
    """Check, conform and write one work unit's rows (the kept ones only with ``write_kept``: a
    fused step's kept rows go on to the next step in memory); its stats and the conformed kept rows."""
    check_accounting(out.before, out.kept, out.rejected, out.origin)
    kept = conform(out.kept.to_arrow(), out.schema, origin=out.origin)
    rejected = apply_rejects_text(out.rejected, out.rejects_text, out.before)
    rejects = conform(rejected.to_arrow(), REJECT_SCHEMA, origin=out.origin + " (rejects)")
    write_table(rejects, stage.rejects(index), compression=WORK_COMPRESSION)
    if not write_kept:
        pass
    elif out.split_bytes is None:
        write_table(kept, stage.part(index), compression=WORK_COMPRESSION)
    else:  # work shards of about equal size, none over split_bytes (of Arrow memory)
        for k, piece in enumerate(balanced_slices(kept, out.split_bytes)):
            write_table(piece, stage.path / f"{stage.part_prefix(index)}-{k:05d}.parquet", compression=WORK_COMPRESSION)
    drops = out.rejected.get_column("reason").value_counts(sort=True) if out.rejected.height else None
    return {
        "docs_in": out.before.height,
        "docs_out": out.kept.height,
        "bytes_in": text_bytes(out.before),
        "bytes_out": text_bytes(out.kept),
        "drops": {r: int(c) for r, c in drops.iter_rows()} if drops is not None else {},
    }, kept


def text_bytes(df: pl.DataFrame) -> int:
    return int(df.get_column("text").str.len_bytes().sum() or 0) if df.height else 0


def check_accounting(before: pl.DataFrame, kept: pl.DataFrame, rejected: pl.DataFrame, origin: str) -> None:
    """Kept + rejected must be exactly the input documents: none lost, none duplicated."""
    if kept.height + rejected.height != before.height:
        raise AccountingError(
            f"{origin}: {before.height} documents in, {kept.height} kept + {rejected.height} rejected"
        )
    ids_in = before.get_column("doc_id").sort()
    ids_out = pl.concat([kept.get_column("doc_id"), rejected.get_column("doc_id")]).sort()
    if not ids_in.equals(ids_out):
        raise AccountingError(f"{origin}: the kept and rejected doc_ids are not the input doc_ids")


# -- a step's tasks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StepTask(Task):
    step: Step = field(kw_only=True)
    memory_mb: int | None = field(default=None, kw_only=True)  # measured (`MemoryModel`), else declared

    @property
    def resources(self) -> Resources:
        declared = self.step.resources
        return dataclasses.replace(declared, memory_mb=self.memory_mb) if self.memory_mb else declared

    def context(self, **where: Any) -> StepContext:
        """The step's view of this task: a shard's (scan, process) unless ``where`` says otherwise."""
        return StepContext(where.pop("shard_index", self.index), self.stage.path, self.root, **where)


@dataclass(frozen=True)
class ScanTask(StepTask):
    """A global step's keys of shard ``index``, one file per reduce partition (a map-side shuffle)."""

    input_path: Path = field(kw_only=True)
    phase: ClassVar[str] = "scan"

    def run(self, ctx: TaskContext) -> Stats:
        step = ctx.ready(self.step)
        assert isinstance(step, GlobalStep)
        keys = step.scan(pl.read_parquet(self.input_path), self.context())
        for p in range(step.partitions()):
            rows = keys.filter(pl.col("partition") == p).drop("partition") if "partition" in keys.columns else keys
            write_table(rows.to_arrow(), self.stage.scan(self.index, p))
        return {"rows": keys.height}


@dataclass(frozen=True)
class ReduceTask(StepTask):
    """Reduce partition ``index`` of a global step (the whole reduce when it has one partition)."""

    phase: ClassVar[str] = "reduce"

    def run(self, ctx: TaskContext) -> Stats:
        step = self.step
        assert isinstance(step, GlobalStep)
        return step.reduce(self.context(shard_index=-1, partition=self.index)) or {}


@dataclass(frozen=True)
class MergeTask(StepTask):
    """Task ``index`` of merge round ``round_index`` of a global step."""

    round_index: int = field(kw_only=True)
    round_phase: str = field(kw_only=True)  # the round's name, as the step's merge_plan gave it

    @property
    def phase(self) -> str:  # type: ignore[override]
        return merge_phase(self.round_index)

    def run(self, ctx: TaskContext) -> Stats:
        step = self.step
        assert isinstance(step, GlobalStep)
        where = {"round_index": self.round_index, "phase": self.round_phase, "part": self.index}
        return {**step.merge(self.context(shard_index=-1, **where)), "phase": self.round_phase}


@dataclass(frozen=True)
class ProcessTask(StepTask):
    """The step over work unit ``index`` (kept rows -> ``part-<index>``, removed ->
    ``rejects-<index>``): a whole input shard, or rows ``rows`` (start, stop) of it when a heavy
    step's shards are re-split (`plan_pieces`)."""

    input_path: Path = field(kw_only=True)
    schema: pa.Schema = field(kw_only=True)
    rejects_text: RejectsPolicy = field(default=RejectsPolicy(), kw_only=True)
    rows: tuple[int, int] | None = field(default=None, kw_only=True)
    phase: ClassVar[str] = "process"

    def run(self, ctx: TaskContext) -> ShardOutput:
        step = ctx.ready(self.step)
        df = read_rows(self.input_path, self.rows)
        where = f" rows {self.rows[0]}-{self.rows[1] - 1}" if self.rows else ""
        origin = f"step {step.name!r} on shard {self.input_path.name}{where}"
        kept, rejected = apply_step(step, df, self.context(), origin)
        return ShardOutput(df, kept, rejected, self.schema, origin, self.rejects_text)


def read_rows(path: Path, rows: tuple[int, int] | None) -> pl.DataFrame:
    """A work shard, or rows [start, stop) of it (only the row groups that hold them are read)."""
    if rows is None:
        return pl.read_parquet(path)
    return pl.scan_parquet(path).slice(rows[0], rows[1] - rows[0]).collect()


def apply_step(step: Step, df: pl.DataFrame, ctx: StepContext, origin: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A map step (or a global step's ``process``) over ``df``: kept and rejected rows, the kept
    ones' instruction fields rewritten like their text (``rewrites_text``), or checked unchanged."""
    out = step.process(df, ctx)
    kept = _rewrite_instructions(step, df, out.kept) if step.rewrites_text else out.kept
    if not step.rewrites_text:
        _check_text_kept(step, df, kept, origin)
    return kept, out.rejected


# The marker phase of a fused step that is not its group's last: its rejects and stats are written
# but not its kept rows, so its shards are not "process"-done for a later build that reads its parts
# (a changed plan that runs it alone, or last of another group, recomputes it instead of reading
# nothing). `done/process-fused-<i>.json`: listed with the stage's process markers, never taken for one.
INTERMEDIATE_PHASE = "process-fused"


@dataclass(frozen=True)
class FusedStep:
    """One step of a fused task, with the stage it writes (its rejects and done markers) and the
    schema its kept rows conform to."""

    step: Step
    stage: StageDir
    schema: pa.Schema
    memory: MemoryModel | None = None  # measured by an earlier build


@dataclass(frozen=True)
class FusedTask(Task):
    """Consecutive light map steps over shard ``index`` in one task (as datatrove runs a pipeline
    per task): one read, the steps in memory, one write of the kept rows (the last step's
    ``part-<index>``); every step still writes its own ``rejects-<index>`` and done marker in its
    own stage, with its own stats, so accounting, rejects and resume are the same as unfused.
    ``stage`` is the last step's: its marker, written last, says the whole task is done."""

    members: tuple[FusedStep, ...] = field(kw_only=True)
    input_path: Path = field(kw_only=True)
    rejects_text: RejectsPolicy = field(default=RejectsPolicy(), kw_only=True)
    memory_mb: int | None = field(default=None, kw_only=True)
    phase: ClassVar[str] = "process"

    @property
    def resources(self) -> Resources:
        res = [m.step.resources for m in self.members]
        memory = self.memory_mb or max(r.memory_mb for r in res)
        return Resources(max(r.cpus for r in res), max(r.gpus for r in res), memory)

    def run_fused(self) -> Stats:
        """Each step timed and measured on its own (the read in the first's figures, the write of
        the kept rows in the last's); the last step's stats."""
        df: pl.DataFrame | None = None
        stats: Stats = {}
        for i, member in enumerate(self.members):
            started = time.perf_counter()
            with measure() as usage:
                if df is None:
                    df = pl.read_parquet(self.input_path)
                step = TaskContext(member.stage, self.root).ready(member.step)
                origin = f"step {step.name!r} on shard {self.input_path.name}"
                ctx = StepContext(self.index, member.stage.path, self.root)
                kept, rejected = apply_step(step, df, ctx, origin)
                out = ShardOutput(df, kept, rejected, member.schema, origin, self.rejects_text)
                last = i == len(self.members) - 1
                stats, table = write_outputs(member.stage, self.index, out, write_kept=last)
                if not last:
                    df = pl.from_arrow(table)  # type: ignore[assignment]  # as the next step would read it
            _finish(member.stage, self.phase if last else INTERMEDIATE_PHASE, self.index, stats, started, usage)
        return stats

    def run(self, ctx: TaskContext) -> Stats:
        return self.run_fused()


def fused_phase(
    members: list[FusedStep], inputs: list[Path], root: Path, rejects_text: RejectsPolicy, label: str
) -> Phase:
    """One fused task per input shard for a run of light map steps."""
    last = members[-1].stage
    models = [m.memory for m in members if m.memory is not None]

    def memory(path: Path) -> int | None:
        return max(m.request_mb(text_mb(path)) for m in models) if models else None

    tasks: list[Task] = [
        FusedTask(last, k, root, members=tuple(members), input_path=p, rejects_text=rejects_text, memory_mb=memory(p))
        for k, p in enumerate(inputs)
    ]
    return Phase(label, tasks)


# -- re-splitting a heavy step's shards -------------------------------------------------------
HEAVY_TASK_SECONDS = 10.0  # about this many CPU seconds per task of a heavy step ...
HEAVY_MIN_TASKS = 8  # ... but at least this many tasks over the stage's input ...
HEAVY_MIN_PIECE_MB = 1.0  # ... of at least this many MB each (a task's own fixed cost)


def text_mb(path: Path) -> float:
    """MB of ``text`` in a work shard, from its Parquet footer (the column's uncompressed size;
    with dictionary encoding, of the distinct texts: after dedup, about all of them)."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "text" not in names:
        return 0.0
    col = names.index("text")
    return sum(meta.row_group(g).column(col).total_uncompressed_size for g in range(meta.num_row_groups)) / 1e6


def piece_mb(cost_per_mb: float, total_mb: float) -> float:
    """The MB of text per task of a heavy step: ``HEAVY_TASK_SECONDS`` of work, and small enough
    for ``HEAVY_MIN_TASKS`` tasks over ``total_mb`` (so two or more workers share any input over
    a few MB evenly), but not under ``HEAVY_MIN_PIECE_MB``."""
    return max(HEAVY_MIN_PIECE_MB, min(HEAVY_TASK_SECONDS / max(cost_per_mb, 1e-9), total_mb / HEAVY_MIN_TASKS))


Piece = tuple[Path, tuple[int, int] | None, float]  # shard, row range (None: all of it), MB of text


def whole_shards(inputs: list[Path], sized: bool) -> list[Piece]:
    """One piece per shard; its MB of text from the footer when ``sized`` (else 0)."""
    return [(p, None, text_mb(p) if sized else 0.0) for p in inputs]


def plan_pieces(inputs: list[Path], cost_per_mb: float) -> list[Piece]:
    """Each input shard as consecutive row ranges of about `piece_mb` MB (``None``: the whole
    shard), in input order: the next stage reads the pieces' outputs in that order, so the rows
    keep their order. Depends only on the shards, so a resumed build makes the same plan."""
    sizes = [(p, text_mb(p), pq.ParquetFile(p).metadata.num_rows) for p in inputs]
    target = piece_mb(cost_per_mb, sum(mb for _, mb, _ in sizes))
    plan: list[Piece] = []
    for path, mb, rows in sizes:
        n = min(rows, math.ceil(mb / target)) if mb > target else 1
        if n <= 1:
            plan.append((path, None, mb))
            continue
        bounds = [rows * j // n for j in range(n + 1)]
        plan.extend((path, (a, b), mb * (b - a) / rows) for a, b in itertools.pairwise(bounds))
    return plan


def _rewrite_instructions(step: Step, before: pl.DataFrame, kept: pl.DataFrame) -> pl.DataFrame:
    """The instruction fields of ``kept`` rewritten by the step's own transform (each text with
    the input row of its document, for what the transform needs: language, doc_id)."""

    def transform(texts: list[str], owners: list[int]) -> list[str]:
        ids = kept.get_column("doc_id").gather(owners).to_frame()
        return step.rewrite_texts(texts, ids.join(before, on="doc_id", how="left", maintain_order="left"))

    return rewrite_parts(kept, transform)


def _check_text_kept(step: Step, before: pl.DataFrame, kept: pl.DataFrame, origin: str) -> None:
    """A step that does not declare ``rewrites_text`` must not change the text of a row with meta
    text fields (an instruction or preference row), or they would no longer match it."""
    if "meta" not in kept.columns or not kept.height:
        return
    rows = kept.filter(has_meta_text(kept))
    if not rows.height:
        return
    joined = rows.select("doc_id", "text").join(before.select("doc_id", old="text"), on="doc_id", how="left")
    changed = joined.filter(pl.col("text") != pl.col("old")).height
    if changed:
        raise AccountingError(
            f"{origin}: the text of {changed} rows with meta text fields (prompt, response ...) changed, but step "
            f"{step.name!r} does not declare rewrites_text, so those fields would not be rewritten the same way"
        )


def step_phases(
    step: Step,
    stage: StageDir,
    inputs: list[Path],
    schema: pa.Schema,
    root: Path,
    rejects_text: RejectsPolicy,
    label: str,
    *,
    memory: MemoryModel | None = None,
) -> Iterator[Phase]:
    """The phases of one step over the ``inputs`` work shards; merge rounds are planned one at a
    time, after the previous round finished. With ``memory`` (measured by an earlier build) each
    task requests its modelled peak RSS from the executor instead of the step's declared one."""

    def need(mb: float | None) -> int | None:
        return memory.request_mb(mb) if memory is not None else None

    if isinstance(step, GlobalStep):
        scans = whole_shards(inputs, memory is not None)
        yield Phase(
            f"{label} (scan)",
            [
                ScanTask(stage, k, root, step=step, input_path=p, memory_mb=need(mb))
                for k, (p, _, mb) in enumerate(scans)
            ],
        )
        reduces = [ReduceTask(stage, p, root, step=step, memory_mb=need(None)) for p in range(step.partitions())]
        yield Phase(f"{label} (reduce)", reduces, unit="partition")
        r = 0
        while (plan := step.merge_plan(StepContext(-1, stage.path, root, round_index=r))) is not None:
            tasks = [
                MergeTask(stage, i, root, step=step, round_index=r, round_phase=plan.phase, memory_mb=need(None))
                for i in range(plan.tasks)
            ]
            yield Phase(f"{label} (merge {r}: {plan.phase})", tasks, unit="task")
            r += 1
    pieces = plan_pieces(inputs, step.cost()) if is_heavy(step) else whole_shards(inputs, memory is not None)
    yield Phase(
        label,
        [
            ProcessTask(
                stage,
                k,
                root,
                step=step,
                input_path=p,
                schema=schema,
                rejects_text=rejects_text,
                rows=rows,
                memory_mb=need(mb),
            )
            for k, (p, rows, mb) in enumerate(pieces)
        ],
    )


@dataclass
class Phase:
    """Tasks that can run in any order once the previous phase is done; ``rerun``: their
    outputs are recreated by every run, so done markers from an earlier run do not count."""

    label: str
    tasks: list[Task]
    unit: str = "shard"
    rerun: bool = False


__all__ = [
    "INTERMEDIATE_PHASE",
    "AccountingError",
    "FusedStep",
    "FusedTask",
    "MergeRound",
    "MergeTask",
    "Phase",
    "ProcessTask",
    "ReduceTask",
    "ScanTask",
    "ShardOutput",
    "Stats",
    "Task",
    "TaskContext",
    "fused_phase",
    "plan_pieces",
    "run_task",
    "step_phases",
    "warm_worker",
]
