"""The default build with names redacted in both languages, per step: `python benchmarks/pii_build.py [--mb 40]`.

Generates a mixed zh/en legal corpus of at least ``--mb`` MB of text with `benchmarks/build.py`'s
generator (the bundled sample's generator over many seeds), imports and ingests it once, then
runs the steps of ``configs/default.yaml`` (normalize, length filter, exact + MinHash dedup,
``pii_redact`` with English and Chinese NER, quality, split, curriculum) and, in the same run, the
same build with ``pii_redact: {ner_languages: []}`` (structured PII only) as the reference.
Prints, per build: wall seconds, CPU seconds of this process and its workers (``RUSAGE_CHILDREN``
+ self), MB of input text per CPU-second (MB/s/core), and per step the task seconds (summed over
workers), MB/task-s and the step's share; then `pii_redact`'s own figures: the NER sentence
caches' hit rates are per worker and not visible here, so the non-repetitive speed is
`benchmarks/pii.py`'s.

    flock /work/heavy.lock nice python benchmarks/pii_build.py --mb 40 --workers 2
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from build import generate

from pipelines.config import SourceSpec, load_config
from pipelines.runner import run_build
from pipelines.steps.pii_redact import PiiRedact

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=40.0, help="MB of text to generate (default 40)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", type=Path, default=Path("bench-data/pii_build"))
    p.add_argument("--skip-reference", action="store_true", help="only the default build")
    args = p.parse_args()

    shutil.rmtree(args.dir, ignore_errors=True)
    files, mb = generate(args.dir / "input", args.mb)
    print(f"generated {mb:.1f} MB of text in {len(files)} files", flush=True)
    sources = [SourceSpec(f) for f in files]
    default = load_config(ROOT / "configs/default.yaml")
    variants = [("default (NER en + zh)", default.steps)]
    if not args.skip_reference:
        structured = [PiiRedact(ner_languages=[]) if s.name == "pii_redact" else s for s in default.steps]
        variants.append(("pii_redact structured-only", structured))
    tables = []
    for label, steps in variants:
        root = args.dir / f"root-{len(tables)}"
        base = load_config(ROOT / "configs/default.yaml")
        base.set_root(str(root))
        base.sources, base.workers = sources, args.workers
        base.steps = []
        run_build(base, progress=False)  # import + ingest only: the timed build is the steps
        base.steps = steps
        c0, w0 = cpu_seconds(), time.perf_counter()
        result = run_build(base, progress=False)
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
        tables.append((label, cpu, wall, result))
        print(f"{label}: {wall:.0f} s wall, {cpu:.0f} CPU s, {mb / cpu:.3f} MB/s/core", flush=True)
        shutil.rmtree(root, ignore_errors=True)

    for label, cpu, wall, result in tables:
        steps = [s.stats for s in result.stages if s.stats.step not in ("ingest",)]
        total = sum(s.seconds for s in steps) or 1.0
        print(f"\n== {label}: {mb:.1f} MB, {args.workers} workers: wall {wall:.0f} s, CPU {cpu:.0f} s, "
              f"{mb / cpu:.3f} MB/s/core, docs out {result.docs_out}")  # fmt: skip
        print(f"{'step':16} {'MB in':>7} {'task s':>8} {'MB/task-s':>10} {'share':>6}")
        for s in steps:
            rate = s.bytes_in / 1e6 / s.seconds if s.seconds else float("inf")
            print(f"{s.step:16} {s.bytes_in / 1e6:7.1f} {s.seconds:8.1f} {rate:10.2f} {s.seconds / total:6.1%}")
    if len(tables) == 2:
        print(f"\nNER cost: default / structured-only CPU seconds = {tables[0][1] / tables[1][1]:.2f}x")


if __name__ == "__main__":
    main()
