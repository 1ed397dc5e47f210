"""The whole build's speed vs datatrove: `python benchmarks/pipeline.py [--mb 40 80] [--workers 1 2]`.

For each size, generates a mixed zh/en legal corpus with `benchmarks/build.py`'s generator, imports
and ingests it once per root (not timed), then times the steps of ``configs/default.yaml`` (the
default build, PII with English + Chinese NER) and the same build with
``pii_redact: {ner_languages: []}`` (no NER), with each ``--workers`` count, in one run. Per
build: wall seconds, CPU seconds (this process + its finished workers, ``RUSAGE_CHILDREN``; and the
tasks' own, from ``step_stats``), MB of text per CPU-second, peak RSS of one task, and the wall
speed-up of 2 workers over 1. Then datatrove 0.10 on the same input in one run of the equivalent
stages (MinHash signatures, buckets, clusters; then filter + PIIFormatter + Gopher quality and
repetition + C4 + FineWeb filters + writer), 1 worker, in a child process (CPU of the pipeline
runs only, its imports excluded). Every build of one variant must publish the same sorted
documents whatever the worker count (checked).

Each build runs in a fresh child process, so that none starts with the models and NER caches an
earlier build loaded into the same interpreter: until 2026-12-03 our builds ran in this process, and
with ``--mb 40 80`` the 1-worker 80 MB build (in-process) reused what the 40 MB builds had loaded
and tagged while the 2-worker one spawned cold workers, which read as "1.35x, 2 workers take 1.38x
the CPU".

    flock -w 1500 /work/heavy.lock timeout 1200 .venv/bin/python benchmarks/pipeline.py --mb 40
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build import generate

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def documents_digest(root: Path) -> str:
    import duckdb

    con = duckdb.connect(str(root / "catalog.duckdb"), read_only=True)
    rows = con.execute("SELECT doc_id, text FROM documents ORDER BY doc_id").fetchall()
    con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:16]


def run_ours(files: list[Path], mb: float, variant: str, workers: int, work: Path) -> dict:
    from pipelines.config import SourceSpec, load_config
    from pipelines.runner import run_build
    from pipelines.steps.pii_redact import PiiRedact

    cfg = load_config(ROOT / "configs/default.yaml")
    steps = cfg.steps
    if variant == "no NER":
        steps = [PiiRedact(ner_languages=[]) if s.name == "pii_redact" else s for s in steps]
    root = work / f"root-{variant.replace(' ', '_')}-w{workers}"
    shutil.rmtree(root, ignore_errors=True)
    cfg.set_root(str(root))
    cfg.sources, cfg.workers, cfg.steps = [SourceSpec(f) for f in files], workers, []
    run_build(cfg, progress=False)  # import + ingest only: the timed build is the steps
    cfg.steps = steps
    c0, w0 = cpu_seconds(), time.perf_counter()
    result = run_build(cfg, progress=False)
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    stats = [s.stats for s in result.stages if s.name != "ingest"]
    task_cpu = sum(s.cpu_seconds for s in stats)
    row = {
        "variant": variant,
        "workers": workers,
        "wall": wall,
        "cpu": cpu,
        "task_cpu": task_cpu,
        "mb_per_cpu": mb / cpu,
        "peak_rss_mb": max(s.peak_rss_mb for s in stats),
        "docs_out": result.docs_out,
        "digest": documents_digest(root),
        "steps": {s.step: (s.cpu_seconds, s.wall_seconds, s.tasks, s.peak_rss_mb) for s in stats},
    }
    shutil.rmtree(root, ignore_errors=True)
    return row


def run_ours_in_child(files: list[Path], mb: float, variant: str, workers: int, work: Path) -> dict:
    """`run_ours` in a fresh interpreter (see the module docstring for why)."""
    spec = json.dumps({"files": [str(f) for f in files], "mb": mb, "variant": variant, "workers": workers})
    out = subprocess.run([sys.executable, __file__, "--ours-child", spec, str(work)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{variant}, {workers} worker(s) failed (rc {out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_datatrove(files: list[Path], work: Path) -> dict:
    """datatrove's equivalent stages in one run, one worker (called in a child process)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    shutil.rmtree(work, ignore_errors=True)
    # sha1: datatrove 0.10's xxhash path passes str to xxhash 4, which rejects it (benchmarks/dedup.py)
    cfg = MinhashConfig(n_grams=5, num_buckets=9, hashes_per_bucket=13, hash_config=HashConfig(64, "sha1"))
    folder = str(files[0].parent)

    def reader() -> ParquetReader:
        return ParquetReader(folder, glob_pattern="*.parquet", text_key="text", id_key="url")

    stages = [
        ([reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)], 1),
        ([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)], 9),
        ([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg)], 1),
        (
            [
                reader(),
                MinhashDedupFilter(input_folder=str(work / "remove")),
                PIIFormatter(),
                GopherRepetitionFilter(),
                GopherQualityFilter(),
                C4QualityFilter(),
                FineWebQualityFilter(),
                ParquetWriter(str(work / "out")),
            ],
            1,
        ),
    ]
    c0, w0 = cpu_seconds(), time.perf_counter()
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}")).run()
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(work, ignore_errors=True)
    return {"cpu": cpu, "wall": wall, "peak_rss_mb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, nargs="+", default=[40.0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--variants", nargs="+", default=["default", "no NER"], choices=["default", "no NER"])
    p.add_argument("--dir", type=Path, default=Path("bench-data/pipeline"))
    p.add_argument("--skip-datatrove", action="store_true")
    p.add_argument("--datatrove-only", action="store_true", help="only datatrove (a separate locked command)")
    p.add_argument("--datatrove-child", nargs=2, metavar=("INPUT_DIR", "WORK"), help=argparse.SUPPRESS)
    p.add_argument("--ours-child", nargs=2, metavar=("SPEC", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ours_child:
        spec = json.loads(args.ours_child[0])
        files = [Path(f) for f in spec["files"]]
        print(json.dumps(run_ours(files, spec["mb"], spec["variant"], spec["workers"], Path(args.ours_child[1]))))
        return
    if args.datatrove_child:
        files = sorted(Path(args.datatrove_child[0]).glob("*.parquet"))
        print(json.dumps(run_datatrove(files, Path(args.datatrove_child[1]))))
        return

    for size in args.mb:
        work = args.dir / f"{size:g}mb"
        shutil.rmtree(work, ignore_errors=True)
        files, mb = generate(work / "input", size)
        print(f"\n=== {mb:.1f} MB of mixed zh/en text in {len(files)} files", flush=True)
        rows = []
        for variant in [] if args.datatrove_only else args.variants:
            for workers in args.workers:
                row = run_ours_in_child(files, mb, variant, workers, work)
                rows.append(row)
                print(
                    f"{variant}, {workers} worker(s): {row['wall']:.0f} s wall, {row['cpu']:.0f} CPU s "
                    f"({row['task_cpu']:.0f} in tasks), {row['mb_per_cpu']:.3f} MB/CPU-s, "
                    f"peak {row['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
        dt = None
        if not args.skip_datatrove:
            out = subprocess.run(
                [sys.executable, __file__, "--datatrove-child", str(work / "input"), str(work / "datatrove")],
                capture_output=True,
                text=True,
                check=True,
            )
            dt = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"datatrove, 1 worker: {dt['wall']:.0f} s wall, {dt['cpu']:.0f} CPU s", flush=True)

        print(f"\n{mb:.1f} MB: {'build':<26} {'workers':>7} {'wall s':>7} {'CPU s':>7} {'MB/CPU-s':>9} "
              f"{'vs datatrove':>12} {'peak MB':>8}")  # fmt: skip
        for r in rows:
            ratio = f"{r['mb_per_cpu'] / (mb / dt['cpu']):.1f}x" if dt else "-"
            print(f"{'':>{len(f'{mb:.1f} MB:')}} {r['variant']:<26} {r['workers']:>7} {r['wall']:>7.0f} "
                  f"{r['cpu']:>7.0f} {r['mb_per_cpu']:>9.3f} {ratio:>12} {r['peak_rss_mb']:>8.0f}")  # fmt: skip
        if dt:
            print(f"{'':>{len(f'{mb:.1f} MB:')}} {'datatrove (same stages)':<26} {1:>7} {dt['wall']:>7.0f} "
                  f"{dt['cpu']:>7.0f} {mb / dt['cpu']:>9.3f} {'1.0x':>12} {dt['peak_rss_mb']:>8.0f}")  # fmt: skip
        for variant in args.variants:
            by_w = {r["workers"]: r for r in rows if r["variant"] == variant}
            if 1 in by_w and 2 in by_w:
                same = by_w[1]["digest"] == by_w[2]["digest"]
                print(f"{variant}: 2 workers vs 1, wall speed-up {by_w[1]['wall'] / by_w[2]['wall']:.2f}x; "
                      f"same documents: {same}")  # fmt: skip
            for w, r in sorted(by_w.items()):
                per_step = ", ".join(
                    f"{name} {cpu:.0f} CPU-s/{wall:.1f} s/{n} tasks/{peak:.0f} MB"
                    for name, (cpu, wall, n, peak) in r["steps"].items()
                )
                driver = r["wall"] - sum(wall for _, wall, _, _ in r["steps"].values())
                per_step += f"; outside the steps {driver:.1f} s"
                print(f"  {variant}, {w} worker(s): {per_step}")


if __name__ == "__main__":
    main()
