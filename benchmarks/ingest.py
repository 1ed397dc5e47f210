"""Ingest as executor tasks vs the single-process ingest: `python benchmarks/ingest.py [--mb 200]`.

Generates the build benchmark's corpus, imports it once, then times only the ingest (raw shards
-> work shards with unique doc_ids, empty texts rejected) in one run:

- baseline: the previous design, one process reading every raw shard in order with a Python
  set of every doc_id seen (what ran on the driver before `pipelines/ingest.py`),
- `pipelines.ingest` through the runner's local executor with 1 and 2 workers (ids, repeats
  and write tasks), the worker pool started before the clock (a build starts it once).

Prints seconds, MB/s and speedup vs the baseline, and checks that both produce the same
documents with the same ids (the work-shard boundaries differ: per raw shard now).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build import generate

from corpus.schema import BASE_SCHEMA, conform, occurrence_id
from corpus.store import WORK_COMPRESSION, CorpusLayout, ShardWriter, read_table
from pipelines.config import BuildConfig, SourceSpec
from pipelines.executor import make_executor
from pipelines.ingest import partitions_for
from pipelines.runner import Build


def single_process(paths: list[Path], out: Path, work_shard_bytes: int) -> pl.DataFrame:
    """The previous ingest: sequential, a set of all ids in one process, one work-shard writer."""
    seen: set[str] = set()
    kept = []
    writer = ShardWriter(out, BASE_SCHEMA, target_bytes=work_shard_bytes, compression=WORK_COMPRESSION)
    for path in paths:
        df = pl.from_arrow(conform(read_table(path), BASE_SCHEMA, origin=str(path)))
        ids = []
        for doc_id in df.get_column("doc_id"):
            candidate, n = doc_id, 0
            while candidate in seen:
                n += 1
                candidate = occurrence_id(doc_id, n)
            seen.add(candidate)
            ids.append(candidate)
        df = df.with_columns(pl.Series("doc_id", ids)).filter(pl.col("text").str.strip_chars().str.len_bytes() > 0)
        writer.write(df.to_arrow())
        kept.append(df.select("doc_id", "text"))
    writer.close()
    return pl.concat(kept)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=200.0)
    p.add_argument("--dir", type=Path, default=Path("bench-data/ingest"))
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    args = p.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    files, mb = generate(args.dir / "input", args.mb)
    root = args.dir / "data"
    cfg = BuildConfig(root=root, workers=1, sources=[SourceSpec(f) for f in files], work_shard_mb=32)
    layout = CorpusLayout.at(root)
    layout.root.mkdir(parents=True, exist_ok=True)
    raw = Build(cfg, layout, "bench", make_executor("local", 1), progress=False).import_sources(cfg.sources)
    paths = [root / r.path for r in raw]

    started = time.perf_counter()
    want = single_process(paths, args.dir / "single", int(cfg.work_shard_mb * 2**20))
    rows = [("single process (set of ids)", 1, time.perf_counter() - started)]
    for workers in args.workers:
        shutil.rmtree(layout.work, ignore_errors=True)
        executor = make_executor("local", workers)
        try:  # start the pool and import the modules first: a build pays that once for all its steps
            list(executor.map_unordered(partitions_for, range(4 * workers)))
            started = time.perf_counter()
            out, _ = Build(cfg, layout, "bench", executor, progress=False).ingest(raw)
            rows.append(("pipelines.ingest tasks", workers, time.perf_counter() - started))
        finally:
            executor.close()
        got = pl.concat([pl.read_parquet(f, columns=["doc_id", "text"]) for f in sorted(out.glob("part-*.parquet"))])
        if not got.equals(want):
            raise SystemExit(f"{workers} worker(s): the ingest differs from the single-process one")

    print(f"\n{mb:.0f} MB of text, {len(paths)} raw shards, {len(want):,} documents kept (identical in all runs)\n")
    print(f"{'ingest':<30} {'workers':>7} {'seconds':>8} {'MB/s':>7} {'vs single':>10}")
    base = rows[0][2]
    for name, workers, seconds in rows:
        print(f"{name:<30} {workers:>7} {seconds:>8.1f} {mb / seconds:>7.1f} {base / seconds:>9.2f}x")


if __name__ == "__main__":
    main()
