"""Scale-out: `python benchmarks/scale.py [--mb 200]`.

The same build (normalize, length_filter, exact_dedup with a 2-way partitioned reduce,
minhash_dedup with 2 band partitions and the partitioned merge rounds, split)
on a generated corpus with 1 and 2 workers, on the local process pool and on a local Ray
cluster, in one run. Import and ingest run once beforehand per root, so the timings are the
steps and the publish. Prints speedup vs 1 local worker and Ray's overhead vs local at equal
workers (cluster start-up printed apart), and checks that every run published the same bytes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build import generate

from corpus.catalog import Catalog
from corpus.store import CorpusLayout
from pipelines.config import BuildConfig, SourceSpec
from pipelines.executor import ray_thread_env
from pipelines.runner import run_build
from pipelines.steps import ExactDedup, LengthFilter, MinHashDedup, Normalize, Split


def published(root: Path) -> list[tuple]:
    with Catalog.open(CorpusLayout.at(root), read_only=True) as cat:
        return [(r.path, r.checksum) for stage in ("final", "rejects") for r in cat.shard_records(stage)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=200.0)
    p.add_argument("--dir", type=Path, default=Path("bench-data/scale"))
    args = p.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    files, mb = generate(args.dir / "input", args.mb)
    sources = [SourceSpec(f) for f in files]
    steps = [Normalize(), LengthFilter(), ExactDedup(reduce_partitions=2), MinHashDedup(reduce_partitions=2), Split()]
    rows, outputs = [], {}
    for executor in ("local", "ray"):
        for workers in (1, 2):
            root = args.dir / f"{executor}-{workers}"
            run_build(BuildConfig(root=root, workers=workers, sources=sources), progress=False)
            cfg = BuildConfig(root=root, workers=workers, executor=executor, sources=sources, steps=steps)
            if executor == "ray":  # cluster start-up is paid once per cluster, not per build
                import ray

                t0 = time.perf_counter()
                ray.init(
                    num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env=ray_thread_env(workers)
                )
                print(f"ray cluster with {workers} CPU(s) started in {time.perf_counter() - t0:.1f} s")
            started = time.perf_counter()
            run_build(cfg, progress=False)
            rows.append((executor, workers, time.perf_counter() - started))
            if executor == "ray":
                ray.shutdown()
            outputs[(executor, workers)] = published(root)
            shutil.rmtree(root / "work", ignore_errors=True)
    base = rows[0][2]
    local = {w: s for e, w, s in rows if e == "local"}
    print(f"\n{mb:.0f} MB of text, {len(files)} input files\n")
    print(f"{'executor':<8} {'workers':>7} {'seconds':>8} {'MB/s':>7} {'speedup':>8} {'vs local':>9}")
    for executor, workers, seconds in rows:
        print(
            f"{executor:<8} {workers:>7} {seconds:>8.1f} {mb / seconds:>7.1f} {base / seconds:>7.2f}x "
            f"{seconds / local[workers]:>8.2f}x"
        )
    same = len({tuple(v) for v in outputs.values()}) == 1
    print(f"\nall runs published identical final shards and rejects: {same}")


if __name__ == "__main__":
    main()
