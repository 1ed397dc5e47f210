"""Throughput of the build's first steps: `python benchmarks/build.py [--mb 200] [--workers 1 2]`.

Generates a legal-flavoured corpus of at least ``--mb`` MB of text (the sample generator with
many seeds, so it has the sample's duplicate rate), then runs `normalize` + `exact_dedup`
through the real runner with 1 and 2 workers, and a naive single-process Python baseline
(unicodedata + re + a dict of sha1 digests) on the same texts in the same run. Prints a table
of MB/s per worker and peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import resource
import shutil
import sys
import time
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.sample import SampleGenerator
from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps.exact_dedup import ExactDedup
from pipelines.steps.normalize import Normalize

MB = 1e6


def generate(out_dir: Path, target_mb: float) -> tuple[list[Path], float]:
    """Parquet input files of ~50 MB each; returns the files and the MB of text in them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files, total, seed, batch = [], 0.0, 0, []
    batch_bytes = 0.0
    while total < target_mb:
        for doc in SampleGenerator(seed).generate():
            doc = {**doc, "url": f"{doc['url']}?s={seed}", "meta": None}
            batch.append(doc)
            size = len(doc["text"].encode()) / MB
            total += size
            batch_bytes += size
        seed += 1
        if batch_bytes >= 50 or total >= target_mb:
            path = out_dir / f"input-{len(files):03d}.parquet"
            pq.write_table(pa.Table.from_pylist(batch), path, compression="zstd")
            files.append(path)
            batch, batch_bytes = [], 0.0
    return files, total


def baseline(files: list[Path]) -> tuple[float, int]:
    """The script a team would write first: per-document Python normalisation + a dict of hashes."""
    started = time.perf_counter()
    seen: dict[bytes, int] = {}
    kept = 0
    for path in files:
        for text in pq.read_table(path, columns=["text"]).column("text").to_pylist():
            text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n"))
            text = re.sub(r"[^\S\n]+", " ", text).strip()
            if not text:
                continue
            key = hashlib.sha1(re.sub(r"\s+", " ", text.lower()).encode()).digest()
            if key not in seen:
                seen[key] = 1
                kept += 1
    return time.perf_counter() - started, kept


def peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=200.0, help="MB of text to generate (default 200)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dir", type=Path, default=Path("bench-data/build"))
    args = p.parse_args()

    shutil.rmtree(args.dir, ignore_errors=True)
    t0 = time.perf_counter()
    files, mb = generate(args.dir / "input", args.mb)
    print(f"generated {mb:.0f} MB of text in {len(files)} files ({time.perf_counter() - t0:.0f} s)", flush=True)

    base_s, base_kept = baseline(files)
    rows = [("python baseline (1 process)", 1, base_s, mb / base_s, mb / base_s, base_kept, peak_rss_mb()[0])]
    for workers in args.workers:
        root = args.dir / f"root-w{workers}"
        cfg = BuildConfig(
            root=root, workers=workers, sources=[SourceSpec(f) for f in files], steps=[Normalize(), ExactDedup()]
        )
        started = time.perf_counter()
        result = run_build(cfg, progress=False)
        wall = time.perf_counter() - started
        ingest_s = result.stages[0].stats.seconds
        steps_s = sum(s.stats.seconds for s in result.stages[1:])  # task seconds, summed over workers
        step_wall = wall - ingest_s
        rows.append(
            (
                f"corpusforge normalize+exact_dedup, {workers} worker(s)",
                workers,
                step_wall,
                mb / step_wall / workers,
                mb / steps_s,
                result.docs_out,
                max(peak_rss_mb()),
            )
        )
        shutil.rmtree(root / "work", ignore_errors=True)

    print(
        f"\n{'run':<52} {'workers':>7} {'seconds':>8} {'MB/s/worker':>12} {'MB/s/task-core':>15} "
        f"{'docs kept':>10} {'peak RSS MB':>12}"
    )
    for name, w, s, per_worker, per_core, kept, rss in rows:
        print(f"{name:<52} {w:>7} {s:>8.1f} {per_worker:>12.1f} {per_core:>15.1f} {kept:>10} {rss:>12.0f}")
    ours = rows[1]
    print(
        f"\nspeedup per core vs baseline (1 worker): {ours[4] / rows[0][4]:.1f}x; "
        f"seconds exclude corpus import/ingest (reported by the build summary)."
    )


if __name__ == "__main__":
    main()
