"""Does a second busy core slow the first? `python benchmarks/pii_contention.py [--docs 3000]`.

The same PII work (`pii_redact` of configs/default.yaml, English + Chinese NER) on two different
slices of `benchmarks/build.py`'s generated corpus, in fresh spawned processes with one thread
each: one process alone, then two at once, twice. Prints each process's CPU seconds for imports,
model setup and the processing itself. If two at once cost more CPU per process than one alone,
the machine (shared caches, memory bandwidth, a host's other tenants) caps the build's 2-worker
speed-up below 2x whatever the scheduling (docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def work(args: tuple[str, int, int]) -> tuple[float, float, float]:
    path, lo, hi = args
    os.environ["POLARS_MAX_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    t0 = time.process_time()
    import polars as pl

    from pipelines.config import load_config
    from pipelines.step import StepContext

    imports = time.process_time() - t0
    step = next(s for s in load_config(ROOT / "configs/default.yaml").steps if s.name == "pii_redact")
    step.setup(ROOT)
    setup = time.process_time() - t0 - imports
    df = pl.read_parquet(path).slice(lo, hi - lo)
    df = df.with_columns(pl.Series("doc_id", [f"d{i}" for i in range(df.height)]), pl.lit("bench").alias("source"))
    out = Path(tempfile.mkdtemp())
    t1 = time.process_time()
    step.process(df, StepContext(0, out, out))
    return imports, setup, time.process_time() - t1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=3000, help="documents per process")
    p.add_argument("--dir", type=Path, default=Path("bench-data/pii_contention"))
    args = p.parse_args()
    if args.docs < 1:
        p.error("--docs must be at least 1")
    from build import generate

    files, _ = generate(args.dir / "input", 8.0)
    slices = [(str(files[0]), 0, args.docs), (str(files[0]), args.docs, 2 * args.docs)]
    ctx = mp.get_context("spawn")
    print(f"{'processes at once':>17} {'wall s':>7}  CPU-s per process (imports / setup / processing)")
    for k in (1, 2, 1, 2):
        with ctx.Pool(k) as pool:
            started = time.perf_counter()
            rows = pool.map(work, slices[:k])
            wall = time.perf_counter() - started
        cells = ", ".join(f"{a:.2f} / {b:.2f} / {c:.2f}" for a, b, c in rows)
        print(f"{k:>17} {wall:>7.1f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
