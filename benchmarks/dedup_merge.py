"""MinHash global phases: one partition (one task per phase) vs P partitions (P tasks per phase).

    PYTHONPATH=. nice python benchmarks/dedup_merge.py [--mb 50 200] [--parts 4]

Builds the generated dedup corpus (`benchmarks/dedup.py`'s generator, 10% near-duplicates) at two
sizes, once per plan, then replays the global phases of `minhash_dedup` from the finished scans, every task
in its own fresh (spawned) child process (one thread), so each task's peak RSS is its own:

- ``reduce_partitions: 1``: one band-grouping task, then every merge round (`sharded_merge`:
  verification, components, keepers, decisions, state) as one task each;
- ``reduce_partitions: P``: the same phases as P tasks each (band-hash partitions, document groups).

Prints per phase the number of tasks, total task seconds and the largest task's peak RSS above
an idle child's (the import baseline) at both sizes. At these sizes a task's peak is mostly
Parquet/allocator buffers that saturate after a few files, so the growth between the sizes is an
upper bound on what more documents add, not a per-document cost. Checks that both plans made
the same decisions.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl
from dedup import generate

from corpus.stage import StageDir
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.step import StepContext
from pipelines.steps import MinHashDedup, Normalize
from pipelines.tasks import MergeTask, ReduceTask, run_task

ONE_THREAD = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def peak_rss() -> int:
    """This process's own peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent
    across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measured(fn: Any, task: Any) -> tuple[float, int]:
    started = time.perf_counter()
    if fn is not None:
        fn(task)
    return time.perf_counter() - started, peak_rss()


def in_child(fn: Any, task: Any) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one task in a fresh process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measured, fn, task).result()


def reset(stage: StageDir) -> None:
    """Forget the global phases' outputs (and the state they persisted), keep the scans."""
    for phase in ("reduce", "merge-r*"):
        stage.forget(phase)
    for d in ("merge", "decisions", "edges", "tables"):
        shutil.rmtree(stage.scratch(d), ignore_errors=True)
    shutil.rmtree(stage.state("minhash"), ignore_errors=True)


def replay(step: MinHashDedup, stage: StageDir, root: Path) -> dict[str, list[tuple[float, int]]]:
    phases: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for p in range(step.reduce_partitions):
        phases["band grouping"].append(in_child(run_task, ReduceTask(stage, p, root, step=step)))
    r = 0
    while (plan := step.merge_plan(StepContext(-1, stage.path, root, round_index=r))) is not None:
        for t in range(plan.tasks):
            task = MergeTask(stage, t, root, step=step, round_index=r, round_phase=plan.phase)
            phases[plan.phase].append(in_child(run_task, task))
        r += 1
    return phases


def decisions(stage: StageDir) -> pl.DataFrame:
    return pl.read_parquet(stage.decision_files()).sort("doc_id")


def measure(mb: float, parts: int, directory: Path) -> tuple[int, dict[int, dict[str, list[tuple[float, int]]]]]:
    """Documents, and per plan the replayed phases' (seconds, peak RSS) of every task."""
    corpus = generate(mb)
    results, outputs, docs = {}, {}, 0
    for p in (1, parts):
        root = directory / f"{mb:g}mb-p{p}"
        shutil.rmtree(root, ignore_errors=True)
        step = MinHashDedup(reduce_partitions=p)
        cfg = BuildConfig(root=root, workers=1, sources=[SourceSpec(corpus)], steps=[Normalize(), step])
        result = run_build(cfg, progress=False)
        docs = result.stages[-1].stats.docs_in
        stage = result.stages[-1].stage
        reset(stage)
        results[p] = replay(step, stage, root)
        outputs[p] = decisions(stage)
        shutil.rmtree(root)
    assert outputs[1].equals(outputs[parts]), "the two plans made different decisions"
    print(f"{mb:g} MB: {docs:,} documents, {outputs[1].height:,} near-duplicates removed", flush=True)
    return docs, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, nargs=2, default=[50.0, 200.0], metavar=("SMALL", "LARGE"))
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--dir", type=Path, default=Path("bench-data/dedup-merge"))
    args = p.parse_args()
    os.environ.update(ONE_THREAD)
    baseline = in_child(None, None)[1]
    (n_small, small), (n_large, large) = (measure(mb, args.parts, args.dir) for mb in args.mb)

    print(f"\npeak RSS of the largest task of each phase above an idle child ({baseline / 2**20:.0f} MB); task seconds")
    print(f"summed over the phase's tasks at {args.mb[1]:g} MB\n")
    print(f"| plan | phase | tasks | task seconds | RSS at {n_small:,} docs | RSS at {n_large:,} docs |")
    print("| --- | --- | --- | --- | --- | --- |")
    peak: dict[int, dict[str, int]] = {}
    for parts, phases in large.items():
        peak[parts] = {}
        for phase, runs in phases.items():
            lo = max(r for _, r in small[parts][phase]) - baseline
            hi = peak[parts][phase] = max(r for _, r in runs) - baseline
            print(
                f"| P={parts} | {phase} | {len(runs)} | {sum(s for s, _ in runs):.2f} | {lo / 2**20:.0f} MB "
                f"| {hi / 2**20:.0f} MB |"
            )
    secs = {parts: sum(s for runs in phases.values() for s, _ in runs) for parts, phases in large.items()}
    worst = {parts: max((k for k in peak[parts] if k != "commit"), key=peak[parts].__getitem__) for parts in peak}
    one, many = peak[1][worst[1]], peak[args.parts][worst[args.parts]]
    print(
        f"\nlargest task: P={args.parts} ({worst[args.parts]}) {many / 2**20:.0f} MB vs P=1 ({worst[1]}) "
        f"{one / 2**20:.0f} MB ({one / many:.2f}x); task seconds {secs[args.parts]:.1f} vs {secs[1]:.1f} "
        f"({secs[args.parts] / secs[1]:.1f}x)"
    )


if __name__ == "__main__":
    main()
