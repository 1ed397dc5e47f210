"""Synthesis benchmark: the synthesis job against the local endpoint at concurrency 1 vs N.

Starts the real `python -m training.serve` (bundled SmolLM2-135M-Instruct, CPU unless a GPU is
present), seeds a fresh corpus with the first documents of the bundled legal sample, and runs the
same job (same prompts, greedy decoding, guided JSON) three times in this process:

1. concurrency 1 (one request in flight: the server cannot batch),
2. concurrency N (the server decodes up to ``--max-batch`` requests per step),
3. concurrency N again on the same cache: the rerun cost (zero requests expected).

Each of 1 and 2 uses its own corpus root, so neither sees the other's cache. Prints requests/s,
completion tokens/s, the server's mean batch size, and the ratios.

    nice python benchmarks/synth.py [--docs 8] [--tasks qa,summary] [--concurrency 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from corpus.catalog import Catalog
from corpus.store import CorpusLayout
from pipelines.imports import import_file
from pipelines.synth.config import parse_config
from pipelines.synth.job import SynthResult, run_job

ROOT = Path(__file__).resolve().parents[1]


def start_server(max_batch: int, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.serve", "--port", str(port), "--max-batch", str(max_batch), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("training.serve did not start")


def seed_corpus(root: Path, docs: int) -> None:
    lines = (ROOT / "samples/legal_sample.jsonl").read_text(encoding="utf-8").splitlines()
    picked = [json.loads(line) for line in lines if len(json.loads(line).get("text", "")) >= 300][:docs]
    src = root.parent / f"{root.name}.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    layout = CorpusLayout.at(root)
    shards = import_file(src, layout, source="import:bench")
    with Catalog.open(layout) as cat:
        cat.register_shards(None, shards)
        cat.refresh_views()


def run(root: Path, base: str, args: argparse.Namespace, concurrency: int) -> tuple[SynthResult, float]:
    cfg = parse_config(
        {
            "job": "bench",
            "root": str(root),
            "tasks": args.tasks.split(","),
            "templates_dir": str(ROOT / "configs/prompts"),
            "endpoint": {"base_url": f"{base}/v1", "model": "smollm2-135m-instruct", "timeout_s": 600},
            "limits": {"concurrency": concurrency},
            "seeds": {"table": "raw_documents"},
            "chunk": {"max_chars": args.chunk_chars, "max_chunks": 1},
            "generation": {"max_tokens": args.max_tokens},
        },
        "benchmark",
    )
    t0 = time.perf_counter()
    result = run_job(cfg, progress=False)
    return result, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--tasks", default="qa,summary")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--chunk-chars", type=int, default=800)
    args = p.parse_args()
    proc, base = start_server(args.concurrency)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, conc, root_name in (
                ("concurrency 1", 1, "c1"),
                (f"concurrency {args.concurrency}", args.concurrency, "cn"),
                (f"concurrency {args.concurrency}, cached rerun", args.concurrency, "cn"),
            ):
                root = Path(tmp) / root_name
                if not root.exists():
                    seed_corpus(root, args.docs)
                before = httpx.get(f"{base}/stats").json()
                result, wall = run(root, base, args, conc)
                after = httpx.get(f"{base}/stats").json()
                steps = after["decode_steps"] - before["decode_steps"]  # iteration-level batching:
                row_steps = after["row_steps"] - before["row_steps"]  # mean rows per decode step
                s = result.stats
                tokens = s.completion_tokens or s.cached_completion_tokens
                rows.append(
                    (
                        label,
                        result.items,
                        result.rows,
                        s.requests,
                        s.cache_hits,
                        tokens,
                        wall,
                        row_steps / steps if steps else 0.0,
                    )
                )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\nsynthesis job, {args.docs} docs x tasks {args.tasks}, max_tokens {args.max_tokens}, local SmolLM2-135M")
    print(
        f"{'run':<32}{'prompts':>8}{'rows':>6}{'requests':>9}{'cached':>7}{'tokens':>8}{'wall s':>8}"
        f"{'req/s':>7}{'tok/s':>7}{'batch':>6}"
    )
    for label, items, nrows, req, hits, tok, wall, batch in rows:
        print(
            f"{label:<32}{items:>8}{nrows:>6}{req:>9}{hits:>7}{tok:>8}{wall:>8.1f}"
            f"{items / wall:>7.2f}{tok / wall:>7.1f}{batch:>6.1f}"
        )
    (_, _, _, _, _, t1, w1, _), (_, _, _, _, _, tn, wn, _), (*_, wc, _) = rows
    print(f"\nconcurrency {args.concurrency} vs 1: {w1 / wn:.2f}x prompts/s, {(tn / wn) / (t1 / w1):.2f}x tokens/s")
    print(f"cached rerun vs first run at concurrency {args.concurrency}: {wn / wc:.0f}x faster")


if __name__ == "__main__":
    main()
