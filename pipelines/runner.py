"""The build: import sources, then a plan of stages (ingest, each step, publish), each a sequence
of phases, each phase a list of tasks (`pipelines.tasks`) run on the executor.

Each stage's directory under ``work/`` (`corpus.stage.StageDir`) is named by a hash of
everything that determines its output (the raw shards' checksums and the step specs up to it),
so a rerun after a crash skips every task whose done marker is there, and a changed config never
reuses stale work. Final shards and rejects are written to staging directories and swapped in
whole, with the catalog update.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
from tqdm import tqdm

from corpus import catalog
from corpus.catalog import Catalog, MemoryModel, ShardRecord, StepSettings, StepStatRow
from corpus.schema import document_schema
from corpus.stage import StageDir
from corpus.store import CorpusLayout, replace_dir
from pipelines.config import BuildConfig, SourceSpec
from pipelines.executor import Executor, make_executor
from pipelines.imports import import_file
from pipelines.ingest import ingest_phases
from pipelines.pii.scrub import RejectsPolicy, rejects_policies
from pipelines.publish import PARTITION_COLUMNS, Staging, publish_phases, written_files
from pipelines.step import Step, is_light
from pipelines.tasks import INTERMEDIATE_PHASE, FusedStep, Phase, fused_phase, run_task, step_phases, warm_worker

MB = 1024 * 1024


class BuildError(RuntimeError):
    """The build cannot go on; the message says what and where."""


@dataclass
class StageResult:
    index: int
    name: str
    stage: StageDir
    stats: StepStatRow

    @property
    def directory(self) -> Path:
        return self.stage.path


@dataclass
class BuildResult:
    run_id: str
    docs_in: int
    docs_out: int
    docs_rejected: int
    stages: list[StageResult] = field(default_factory=list)
    final_shards: list[Path] = field(default_factory=list)


def _hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@contextmanager
def build_lock(layout: CorpusLayout) -> Iterator[None]:
    """One build per corpus root at a time."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / ".build.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is running on {layout.root}") from None
        yield


def run_build(cfg: BuildConfig, *, command: str = "", force: bool = False, progress: bool = True) -> BuildResult:
    """Run a whole build as a catalog run; a failure is recorded, then re-raised.

    The catalog is only read at the start (a reader elsewhere does not block that) and written
    once at the end (a deferred run), so a notebook holding it open delays a build the least."""
    layout = CorpusLayout.at(cfg.root)
    config, steps = cfg.to_dict(), cfg.steps_hash()
    with (
        build_lock(layout),
        catalog.run(layout, "build", command=command, config=config, config_hash=steps, defer=True) as run,
    ):
        executor = make_executor(cfg.executor, cfg.workers, address=cfg.ray_address)
        executor.start(warm_worker)
        try:
            if force:
                shutil.rmtree(layout.work, ignore_errors=True)
            return Build(cfg, layout, run, executor, progress).run()
        finally:
            executor.close()


class Build:
    def __init__(self, cfg: BuildConfig, layout: CorpusLayout, run: catalog.Run, executor: Executor, progress: bool):
        self.cfg = cfg
        self.layout = layout
        self.catalog_run = run
        self.run_id = run.run_id
        self.executor = executor
        self.progress = progress
        self.imported: list[ShardRecord] = []
        self.memory: dict[str, MemoryModel] = {}  # per step: measured by the last build, requested per task

    def stage_dir(self, name: str) -> StageDir:
        return StageDir(self.layout.work / name, self.layout.state)

    def run(self) -> BuildResult:
        raw = self.import_sources(self.cfg.sources)
        root, work_bytes = self.layout.root, int(self.cfg.work_shard_mb * MB)
        identity = f"00-ingest-{_hash([(r.path, r.checksum) for r in raw], self.cfg.work_shard_mb)}"
        stage = self.stage_dir(identity)
        ingest_rejects = RejectsPolicy(self.cfg.rejects_text)
        phases = ingest_phases(stage, [root / r.path for r in raw], root, work_bytes, ingest_rejects)
        stages = [self.run_stage(0, "ingest", stage, phases, stats_phase="write")]
        added: list[pa.Field] = []
        planned: list[PlannedStep] = []
        policies = rejects_policies(self.cfg.steps, self.cfg.rejects_text)
        for i, (step, policy) in enumerate(zip(self.cfg.steps, policies, strict=True), start=1):
            added.extend(step.adds)
            # library versions are part of a stage's identity: a resumed build never mixes outputs
            identity = _hash(
                identity, step.name, step.version, step.params(), policy.identity(), pl.__version__, pa.__version__
            )
            stage = self.stage_dir(f"{i:02d}-{step.name}-{identity}")
            planned.append(PlannedStep(i, step, stage, document_schema(added), policy))
        for group in fuse_light_steps(planned):
            if len(group) > 1:
                stages.extend(self.run_fused(group, stages[-1].stage.parts()))
                continue
            [p] = group
            label = f"{p.index}/{len(self.cfg.steps)} {p.step.name}"
            phases = step_phases(
                p.step,
                p.stage,
                stages[-1].stage.parts(),
                p.schema,
                root,
                p.rejects,
                label,
                memory=self.memory.get(p.step.name),
            )
            stages.append(self.run_stage(p.index, p.step.name, p.stage, phases, stats_phase="process"))
        return self.publish(raw, stages, document_schema(added))

    # -- sources ---------------------------------------------------------------------------
    def import_sources(self, sources: list[SourceSpec]) -> list[ShardRecord]:
        """Import the config's and the command line's files (registered in the catalog at the end,
        with the run) and list every raw shard: the catalog's and the imported ones."""
        for spec in sources:
            self.imported += import_file(
                spec.path, self.layout, source=spec.source, shard_bytes=int(self.cfg.work_shard_mb * MB)
            )
        listed: list[ShardRecord] = []
        if self.layout.catalog.exists():
            with Catalog.open(self.layout, read_only=True) as cat:
                listed = cat.shard_records("raw")
                self.memory = cat.memory_models()
        records = sorted({r.path: r for r in [*listed, *self.imported]}.values(), key=lambda r: r.path)
        missing = [r.path for r in records if not (self.layout.root / r.path).exists()]
        if missing:
            raise BuildError(f"raw shards listed in the catalog are missing on disk: {', '.join(missing[:5])}")
        if not records:
            raise BuildError("no input documents: add 'sources' to the config, pass --input, or run a crawl first")
        return records

    # -- the plan's loop -------------------------------------------------------------------
    def run_stage(
        self, index: int, name: str, stage: StageDir, phases: Iterable[Phase], *, stats_phase: str
    ) -> StageResult:
        """Every phase of one stage, then its stats row from the tasks' markers."""
        stage.path.mkdir(parents=True, exist_ok=True)
        started, reused = time.perf_counter(), len(stage.all_stats())
        for phase in phases:
            self.run_phase(stage, phase)
        done = stage.all_stats()
        row = _stat_row(index, name, stage.stats(stats_phase), done)
        row = dataclasses.replace(row, wall_seconds=time.perf_counter() - started, tasks=len(done), reused_tasks=reused)
        return StageResult(index, name, stage, row)

    def run_fused(self, group: list[PlannedStep], inputs: list[Path]) -> list[StageResult]:
        """A run of light map steps as one phase of fused tasks; a stats row per step, this run's
        wall time shared out by the steps' task seconds."""
        for p in group:
            p.stage.path.mkdir(parents=True, exist_ok=True)
        last = group[-1].stage
        started, reused = time.perf_counter(), len(last.stats("process"))  # a task is done when its last step is
        names = "+".join(p.step.name for p in group)
        label = f"{group[0].index}-{group[-1].index}/{len(self.cfg.steps)} {names}"
        members = [FusedStep(p.step, p.stage, p.schema, self.memory.get(p.step.name)) for p in group]
        self.run_phase(last, fused_phase(members, inputs, self.layout.root, group[0].rejects, label))
        wall = time.perf_counter() - started
        phases = [INTERMEDIATE_PHASE] * (len(group) - 1) + ["process"]
        rows = [
            _stat_row(p.index, p.step.name, p.stage.stats(phase), p.stage.all_stats())
            for p, phase in zip(group, phases, strict=True)
        ]
        total = sum(r.seconds for r in rows) or 1.0
        return [
            StageResult(
                p.index,
                p.step.name,
                p.stage,
                dataclasses.replace(r, wall_seconds=wall * r.seconds / total, tasks=len(inputs), reused_tasks=reused),
            )
            for p, r in zip(group, rows, strict=True)
        ]

    def run_phase(self, stage: StageDir, phase: Phase) -> None:
        """The phase's tasks that have no done marker, on the executor, with a progress bar."""
        if phase.rerun:
            stage.forget(phase.tasks[0].phase if phase.tasks else "")
        todo = [t for t in phase.tasks if phase.rerun or not stage.is_done(*t.key)]
        if not todo:
            return
        with tqdm(total=len(todo), desc=phase.label, unit=phase.unit, disable=not self.progress) as bar:
            for _ in self.executor.map_unordered(run_task, todo):
                bar.update(1)

    # -- publish ---------------------------------------------------------------------------
    def publish(self, raw: list[ShardRecord], stages: list[StageResult], schema: pa.Schema) -> BuildResult:
        """Write final shards (Hive-partitioned) and rejects as publish tasks, swap them in, update
        the catalog."""
        final_schema = pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS], metadata=schema.metadata)
        staging = Staging.of(self.layout)
        for d in (staging.shards, staging.rejects):
            shutil.rmtree(d, ignore_errors=True)
        out = stages[-1].stage.child("publish")
        out.path.mkdir(parents=True, exist_ok=True)
        rejects = [(f"{s.index:02d}-{s.name}", s.stage.all_rejects()) for s in stages]
        phases = publish_phases(
            out, stages[-1].stage.parts(), rejects, staging, self.layout, final_schema, int(self.cfg.shard_mb * MB)
        )
        for phase in phases:
            self.run_phase(out, phase)
        written = written_files(out)
        staging.shards.mkdir(parents=True, exist_ok=True)
        staging.rejects.mkdir(parents=True, exist_ok=True)
        final_rows = sorted((Path(f["path"]), f) for f in written if f["stage"] == "final")
        reject_rows = sorted((Path(f["path"]), f) for f in written if f["stage"] == "rejects")

        docs_in = stages[0].stats.docs_in
        docs_out = sum(f["rows"] for _, f in final_rows)
        docs_rejected = sum(f["rows"] for _, f in reject_rows)
        if docs_out + docs_rejected != docs_in:
            raise BuildError(f"accounting: {docs_in} documents in, {docs_out} out + {docs_rejected} rejected")

        final = [self._record(p, "final", f, staging.shards) for p, f in final_rows]
        rejected = [self._record(p, "rejects", f, staging.rejects) for p, f in reject_rows]
        # the catalog first: if another process holds it, nothing is swapped in and a rerun resumes
        with self.catalog_run.catalog() as cat:
            replace_dir(staging.shards, self.layout.shards)
            replace_dir(staging.rejects, self.layout.rejects)
            cat.register_shards(self.run_id, self.imported)
            cat.replace_stage("final", self.run_id, final)
            cat.replace_stage("rejects", self.run_id, rejected)
            cat.record_inputs(self.run_id, raw)
            cat.record_step_stats(self.run_id, [s.stats for s in stages])
            cat.record_step_settings(self.run_id, _settings(self.cfg.steps))
            for table, paths in _side_tables(stages).items():
                cat.register_table(table, paths)
            cat.refresh_views()
            self.catalog_run.finish(docs_in=docs_in, docs_out=docs_out, docs_rejected=docs_rejected, cat=cat)
        out.remove()  # the split copy: published now
        self._collect_garbage({s.directory for s in stages})
        return BuildResult(
            self.run_id, docs_in, docs_out, docs_rejected, stages, [self.layout.root / r.path for r in final]
        )

    def _record(self, staged: Path, stage: str, written: dict, staging: Path) -> ShardRecord:
        """The catalog row of a published file, from what its write task measured."""
        target = self.layout.shards if stage == "final" else self.layout.rejects
        path = target / staged.relative_to(staging)
        return ShardRecord.of(
            path, stage, written["rows"], self.layout.root, size=written["bytes"], checksum=written["checksum"]
        )

    def _collect_garbage(self, keep: set[Path]) -> None:
        """Work directories of other plans are stale once this build has published."""
        for d in self.layout.work.iterdir() if self.layout.work.exists() else []:
            if d not in keep:
                shutil.rmtree(d, ignore_errors=True)


@dataclass(frozen=True)
class PlannedStep:
    """A configured step with its place in the plan: index, stage directory, output schema."""

    index: int
    step: Step
    stage: StageDir
    schema: pa.Schema
    rejects: RejectsPolicy  # what its reject rows keep of their text


def fuse_light_steps(planned: list[PlannedStep]) -> list[list[PlannedStep]]:
    """The plan's steps in order, consecutive light map steps (`pipelines.step.is_light`) grouped
    to run fused; every other step alone."""
    groups: list[list[PlannedStep]] = []
    for p in planned:
        if groups and is_light(p.step) and is_light(groups[-1][-1].step):
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def _settings(steps: list[Step]) -> list[StepSettings]:
    return [
        StepSettings(i, s.name, s.params(), s.changed_params(), s.applied_thresholds())
        for i, s in enumerate(steps, start=1)
    ]


def _side_tables(stages: list[StageResult]) -> dict[str, list[Path]]:
    tables: dict[str, list[Path]] = {}
    for stage in stages:
        for name, paths in stage.stage.side_tables().items():
            tables.setdefault(name, []).extend(paths)
    return tables


def _stat_row(index: int, name: str, stats: list[dict], done: list[dict]) -> StepStatRow:
    """The stage's row: docs and bytes from ``stats`` (its output phase's tasks), time and memory
    from ``done`` (every task of the stage; markers from before CPU was measured count 0)."""
    drops: dict[str, int] = {}
    for s in stats:
        for reason, n in s["drops"].items():
            drops[reason] = drops.get(reason, 0) + n
    return StepStatRow(
        step_index=index,
        step=name,
        docs_in=sum(s["docs_in"] for s in stats),
        docs_out=sum(s["docs_out"] for s in stats),
        bytes_in=sum(s["bytes_in"] for s in stats),
        bytes_out=sum(s["bytes_out"] for s in stats),
        seconds=sum(s["seconds"] for s in done),
        drops=dict(sorted(drops.items())),
        cpu_seconds=sum(s.get("cpu_seconds", 0.0) for s in done),
        peak_rss_mb=max((s.get("peak_rss_mb", 0.0) for s in done), default=0.0),
        **_memory_model(stats),
    )


def _memory_model(stats: list[dict]) -> dict[str, float]:
    """Base and per-MB peak RSS of the output phase's tasks (see `StepStatRow`): the smallest
    peak, and the largest growth over it per MB of a task's input (tasks of 0.1 MB or more)."""
    peaks = [(s["peak_rss_mb"], s.get("bytes_in", 0) / 1e6) for s in stats if s.get("peak_rss_mb")]
    if not peaks:
        return {"rss_base_mb": 0.0, "rss_mb_per_mb": 0.0}
    base = min(p for p, _ in peaks)
    per_mb = max(((p - base) / mb for p, mb in peaks if mb >= 0.1), default=0.0)
    return {"rss_base_mb": base, "rss_mb_per_mb": per_mb}


__all__ = ["BuildError", "BuildResult", "run_build"]
