"""What the corpus report costs next to the build it describes (#27.1: a small build must not be
dominated by its report).

Builds the bundled sample with the default config twice into fresh roots, once without and once
with ``--report`` (CPU seconds of the CLI and its workers, from the children's rusage), then
writes the report again on its own with ``python -m corpus.report``. Prints one table; the
ratio column is against the plain build in the same run.

    python benchmarks/report.py [--config configs/default.yaml] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds of the command and its children, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    py = sys.executable
    rows = []
    try:
        base = [py, "-m", "pipelines.build", "--config", args.config, "--workers", str(args.workers), "--quiet"]
        plain = run([*base, "--root", str(tmp / "a")])
        rows.append(("build", *plain))
        rows.append(("build --report", *run([*base, "--root", str(tmp / "b"), "--report"])))
        rows.append(("python -m corpus.report", *run([py, "-m", "corpus.report", "--root", str(tmp / "a")])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"| command ({args.config}, {args.workers} worker) | CPU s | wall s | CPU vs build |")
    print("| --- | --- | --- | --- |")
    for name, cpu, wall in rows:
        print(f"| {name} | {cpu:.1f} | {wall:.1f} | {cpu / plain[0]:.2f}x |")


if __name__ == "__main__":
    main()
