"""The build: import sources, ingest raw shards, run the steps shard by shard, publish.

Each stage's directory under ``work/`` is named by a hash of everything that determines its
output (the raw shards' checksums and the step specs up to it), so a rerun after a crash finds
finished shards by their done-markers and skips them, and a changed config never reuses stale
work. Final shards and rejects are written to staging directories and swapped in whole.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
from tqdm import tqdm

from corpus.catalog import Catalog, CatalogLockedError, RunInfo, ShardRecord, StepStatRow
from corpus.schema import REJECT_SCHEMA, document_schema, utc_now
from corpus.store import CorpusLayout, replace_dir, write_bytes
from pipelines.config import BuildConfig, SourceSpec
from pipelines.executor import Executor, make_executor
from pipelines.imports import import_file
from pipelines.ingest import IngestTask, partitions_for, run_ingest_task
from pipelines.ingest import done_marker as ingest_done
from pipelines.publish import (
    PARTITION_COLUMNS,
    SplitTask,
    WriteTask,
    partition_dir,
    run_split_task,
    run_write_task,
    split_done,
    write_groups,
)
from pipelines.step import GlobalStep, Step
from pipelines.tasks import (
    MergeTask,
    ReduceTask,
    ShardTask,
    done_path,
    merge_done_path,
    reduce_done_path,
    run_merge_task,
    run_reduce_task,
    run_shard_task,
    scan_path,
)

MB = 1024 * 1024


class BuildError(RuntimeError):
    """The build cannot go on; the message says what and where."""


@dataclass
class StageResult:
    index: int
    name: str
    directory: Path
    stats: StepStatRow


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
    """Run a whole build, recording it in the catalog; a failure is recorded, then re-raised.

    The catalog is only read at the start (a reader elsewhere does not block that) and written
    once at the end, so a notebook holding it open delays a build by the least possible."""
    layout = CorpusLayout.at(cfg.root)
    with build_lock(layout):
        run = RunInfo(Catalog.new_run_id("build"), utc_now(), command, cfg.to_dict(), cfg.steps_hash())
        executor = make_executor(cfg.executor, cfg.workers, address=cfg.ray_address)
        try:
            if force:
                shutil.rmtree(layout.work, ignore_errors=True)
            result = Build(cfg, layout, run, executor, progress).run()
        except BaseException as exc:
            _record_failure(layout, run, exc)
            raise
        finally:
            executor.close()
    return result


def _record_failure(layout: CorpusLayout, run: RunInfo, exc: BaseException) -> None:
    if isinstance(exc, CatalogLockedError):
        return  # the error says it all, and the catalog is still held
    try:
        with Catalog.open(layout) as cat:
            cat.insert_run(run, "failed", error=f"{type(exc).__name__}: {exc}")
    except CatalogLockedError as locked:  # the build's own error matters more; say why it is not recorded
        print(f"warning: the failed run is not recorded in the catalog: {locked}", file=sys.stderr)


class Build:
    def __init__(self, cfg: BuildConfig, layout: CorpusLayout, run: RunInfo, executor: Executor, progress: bool):
        self.cfg = cfg
        self.layout = layout
        self.run_info = run
        self.run_id = run.run_id
        self.executor = executor
        self.progress = progress
        self.imported: list[ShardRecord] = []

    def run(self) -> BuildResult:
        raw = self.import_sources(self.cfg.sources)
        ingest_dir, ingest_stats = self.ingest(raw)
        stages = [StageResult(0, "ingest", ingest_dir, ingest_stats)]
        prev_dir, prev_hash = ingest_dir, ingest_dir.name
        added: list[pa.Field] = []
        for i, step in enumerate(self.cfg.steps, start=1):
            added.extend(step.adds)
            # library versions are part of a stage's identity: a resumed build never mixes outputs
            step_hash = _hash(
                prev_hash, step.name, step.version, step.params(), self.cfg.rejects_text, pl.__version__, pa.__version__
            )
            step_dir = self.layout.work / f"{i:02d}-{step.name}-{step_hash}"
            stats = self.run_step(i, step, prev_dir, step_dir, document_schema(added))
            stages.append(StageResult(i, step.name, step_dir, stats))
            prev_dir, prev_hash = step_dir, step_hash
        return self.publish(raw, stages, document_schema(added))

    # -- sources and ingest ----------------------------------------------------------------
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
        records = sorted({r.path: r for r in [*listed, *self.imported]}.values(), key=lambda r: r.path)
        missing = [r.path for r in records if not (self.layout.root / r.path).exists()]
        if missing:
            raise BuildError(f"raw shards listed in the catalog are missing on disk: {', '.join(missing[:5])}")
        if not records:
            raise BuildError("no input documents: add 'sources' to the config, pass --input, or run a crawl first")
        return records

    def ingest(self, raw: list[ShardRecord]) -> tuple[Path, StepStatRow]:
        """Raw shards -> work shards with unique doc_ids, empty texts rejected: executor tasks in
        three phases (`pipelines.ingest`), resumable task by task."""
        fingerprint = _hash([(r.path, r.checksum) for r in raw], self.cfg.work_shard_mb)
        out = self.layout.work / f"00-ingest-{fingerprint}"
        clock = _StageClock(out)
        paths = tuple(self.layout.root / r.path for r in raw)
        parts = partitions_for(len(paths))
        for phase, count, unit in (
            ("ids", len(paths), "shard"),
            ("repeats", parts, "partition"),
            ("write", len(paths), "shard"),
        ):
            tasks = [
                IngestTask(
                    phase,
                    k,
                    out,
                    parts,
                    len(paths),
                    paths[k] if phase != "repeats" else None,
                    int(self.cfg.work_shard_mb * MB),
                )
                for k in range(count)
                if not ingest_done(out, phase, k).exists()
            ]
            self._run_tasks(tasks, f"ingest ({phase})", run_ingest_task, unit=unit)
        stats = [json.loads(ingest_done(out, "write", k).read_text()) for k in range(len(paths))]
        extra = [json.loads(p.read_text())["seconds"] for p in (out / "done").glob("[ir]*.json")]  # ids, repeats
        return out, clock.stop(_stat_row(0, "ingest", stats, extra_seconds=sum(extra)))

    # -- steps -----------------------------------------------------------------------------
    def run_step(self, index: int, step: Step, in_dir: Path, step_dir: Path, schema: pa.Schema) -> StepStatRow:
        step_dir.mkdir(parents=True, exist_ok=True)
        clock = _StageClock(step_dir)
        inputs = sorted(in_dir.glob("part-*.parquet"))
        label = f"{index}/{len(self.cfg.steps)} {step.name}"

        def tasks(phase: str) -> list[ShardTask]:
            return [
                ShardTask(step, phase, k, p, step_dir, schema, self.layout.root, self.cfg.rejects_text)  # type: ignore[arg-type]
                for k, p in enumerate(inputs)
                if not done_path(step_dir, k, phase).exists()
            ]  # type: ignore[arg-type]

        if isinstance(step, GlobalStep):
            self._run_tasks(tasks("scan"), f"{label} (scan)")
            self._reduce(step, len(inputs), step_dir, label)
        self._run_tasks(tasks("process"), label)
        stats = [json.loads(done_path(step_dir, k).read_text()) for k in range(len(inputs))]
        extra = [
            json.loads(p.read_text())["seconds"]
            for p in [
                *step_dir.glob("scan-done-*.json"),
                *step_dir.glob("reduce-*.done"),
                *step_dir.glob("merge/done-*"),
            ]
        ]
        return clock.stop(_stat_row(index, step.name, stats, extra_seconds=sum(extra)))

    def _reduce(self, step: GlobalStep, n_shards: int, step_dir: Path, label: str) -> None:
        """The reduce runs as executor tasks (one per partition), never inline on the driver."""
        if (step_dir / "reduce.done").exists():
            return
        parts = step.partitions()
        tasks = [
            ReduceTask(
                step,
                p,
                [scan_path(step_dir, k, None if parts == 1 else p) for k in range(n_shards)],
                step_dir,
                self.layout.root,
            )
            for p in range(parts)
            if not reduce_done_path(step_dir, p).exists()
        ]
        self._run_tasks(tasks, f"{label} (reduce)", run_reduce_task, unit="partition")
        round_index = 0
        while parts > 1 and (plan := step.merge_plan(step_dir, round_index)) is not None:
            merge = [
                MergeTask(step, step_dir, self.layout.root, round_index, plan.phase, p)
                for p in range(plan.tasks)
                if not merge_done_path(step_dir, round_index, p).exists()
            ]
            self._run_tasks(merge, f"{label} (merge {round_index}: {plan.phase})", run_merge_task, unit="task")
            round_index += 1
        write_bytes(b"{}", step_dir / "reduce.done")

    def _run_tasks(self, tasks: list, label: str, fn: Callable = run_shard_task, unit: str = "shard") -> list:
        """Run ``fn`` over ``tasks`` on the executor with a progress bar; the results, unordered."""
        results: list = []
        if not tasks:
            return results
        with tqdm(total=len(tasks), desc=label, unit=unit, disable=not self.progress) as bar:
            for result in self.executor.map_unordered(fn, tasks):
                results.append(result)
                bar.update(1)
        return results

    # -- publish ---------------------------------------------------------------------------
    def publish(self, raw: list[ShardRecord], stages: list[StageResult], schema: pa.Schema) -> BuildResult:
        """Write final shards (Hive-partitioned) and rejects as executor tasks (`pipelines.publish`),
        swap them in, update the catalog."""
        final_schema = pa.schema([f for f in schema if f.name not in PARTITION_COLUMNS], metadata=schema.metadata)
        shards_staging = self.layout.root / ".shards.staging"
        rejects_staging = self.layout.root / ".rejects.staging"
        for d in (shards_staging, rejects_staging):
            shutil.rmtree(d, ignore_errors=True)

        last = stages[-1].directory
        out = last / "publish"
        parts = sorted(last.glob("part-*.parquet"))
        splits = [SplitTask(k, p, out, final_schema) for k, p in enumerate(parts) if not split_done(out, k).exists()]
        self._run_tasks(splits, "publish (split)", run_split_task)
        keys = sorted(
            {tuple(key) for k in range(len(parts)) for key in json.loads(split_done(out, k).read_text())["partitions"]}
        )
        shard_bytes = int(self.cfg.shard_mb * MB)
        writes = [
            WriteTask(
                "final",
                group,
                self.layout.final_shard(bucket, split, 0, base=shards_staging).parent,
                final_schema,
                shard_bytes,
                prefix=f"part-{g:05d}",
            )
            for bucket, split in keys
            for g, group in enumerate(
                write_groups(sorted(partition_dir(out, bucket, split).glob("part-*.parquet")), shard_bytes)
            )
        ]
        writes += [
            WriteTask(
                "rejects",
                tuple(sorted(stage.directory.glob("rejects-*.parquet"))),
                rejects_staging / f"{stage.index:02d}-{stage.name}",
                REJECT_SCHEMA,
                shard_bytes,
            )
            for stage in stages
        ]
        written = [f for files in self._run_tasks(writes, "publish", run_write_task, unit="partition") for f in files]
        shards_staging.mkdir(parents=True, exist_ok=True)
        rejects_staging.mkdir(parents=True, exist_ok=True)
        final_rows = sorted((Path(f["path"]), f) for f in written if f["stage"] == "final")
        reject_rows = sorted((Path(f["path"]), f) for f in written if f["stage"] == "rejects")

        docs_in = stages[0].stats.docs_in
        docs_out = sum(f["rows"] for _, f in final_rows)
        docs_rejected = sum(f["rows"] for _, f in reject_rows)
        if docs_out + docs_rejected != docs_in:
            raise BuildError(f"accounting: {docs_in} documents in, {docs_out} out + {docs_rejected} rejected")

        final = [self._record(p, "final", f, shards_staging) for p, f in final_rows]
        rejected = [self._record(p, "rejects", f, rejects_staging) for p, f in reject_rows]
        # the catalog first: if another process holds it, nothing is swapped in and a rerun resumes
        with Catalog.open(self.layout) as cat, cat.transaction():
            replace_dir(shards_staging, self.layout.shards)
            replace_dir(rejects_staging, self.layout.rejects)
            cat.insert_run(self.run_info)
            cat.register_shards(self.run_id, self.imported)
            cat.replace_stage("final", self.run_id, final)
            cat.replace_stage("rejects", self.run_id, rejected)
            cat.record_inputs(self.run_id, raw)
            cat.record_step_stats(self.run_id, [s.stats for s in stages])
            for table, paths in _side_tables(stages).items():
                cat.replace_table_from_parquet(table, paths)
            cat.refresh_views()
            cat.finish_run(
                self.run_id, status="succeeded", docs_in=docs_in, docs_out=docs_out, docs_rejected=docs_rejected
            )
        shutil.rmtree(out, ignore_errors=True)  # the split copy: published now
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


class _StageClock:
    """This run's wall time on a stage, and how many of its tasks an earlier run had finished."""

    MARKERS = ("done/*.json", "done-*.json", "scan-done-*.json", "reduce-*.done", "merge/done-*.json")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started = time.perf_counter()
        self.reused = self._count()

    def _count(self) -> int:
        return sum(1 for pattern in self.MARKERS for _ in self.directory.glob(pattern))

    def stop(self, row: StepStatRow) -> StepStatRow:
        wall = time.perf_counter() - self.started
        return dataclasses.replace(row, wall_seconds=wall, tasks=self._count(), reused_tasks=self.reused)


def _side_tables(stages: list[StageResult]) -> dict[str, list[Path]]:
    tables: dict[str, list[Path]] = {}
    for stage in stages:
        for table_dir in sorted((stage.directory / "tables").glob("*")):
            tables.setdefault(table_dir.name, []).extend(sorted(table_dir.glob("*.parquet")))
    return tables


def _stat_row(index: int, name: str, stats: list[dict], extra_seconds: float = 0.0) -> StepStatRow:
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
        seconds=sum(s["seconds"] for s in stats) + extra_seconds,
        drops=dict(sorted(drops.items())),
    )


__all__ = ["BuildError", "BuildResult", "run_build"]
