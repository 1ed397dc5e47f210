"""Per-step losses of the same short training runs from two source trees, side by side.

A refactor of the trainer must not change what it computes: this builds one small corpus (the
bundled legal sample: normalize, exact dedup, split, 2 curriculum buckets) with this checkout,
then runs ``python -m training.run`` from each tree on it (a tiny random-init Llama, 10 steps,
full fine-tuning and LoRA, eval at 0/5/10) and prints every train and eval loss of both trees and
whether they are identical. A tree is any checkout, e.g. ``git archive <commit> | tar -x -C DIR``::

    python benchmarks/train_losses.py --before /tmp/before --after . --work /tmp/losses
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = (
    "{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, "
    "num_key_value_heads: 2, max_position_embeddings: 256}"
)
RUNS = {"full": "lora=null", "lora": "lora={r: 4, alpha: 8}"}
SETS = [
    f"from_scratch={TINY}", "seq_len=128", "micro_batch=2", "grad_accum=2", "lr=3.0e-3", "warmup_steps=2",
    "max_steps=10", "save_every=4", "eval_every=5", "eval_batches=2", "export=false",
]  # fmt: skip


def build(root: Path) -> None:
    if (root / "catalog.duckdb").exists():
        return
    config = root.parent / "build.yaml"
    config.write_text(
        f"root: {root}\nworkers: 1\nsources: [{REPO / 'samples' / 'legal_sample.jsonl'}]\n"
        "steps: [normalize, exact_dedup, {split: {validation_ratio: 0.1}}, {curriculum: {buckets: 2}}]\n"
    )
    subprocess.run([sys.executable, "-m", "pipelines.build", "--config", str(config)], cwd=REPO, check=True)


def losses(tree: Path, root: Path, out: Path, lora: str) -> list[tuple[str, int, str, float]]:
    cmd = [sys.executable, "-m", "training.run", "--config", "configs/train.yaml"]
    for item in [f"root={root}", f"output_dir={out}", "resume=false", lora, *SETS]:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{tree}: training.run failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r.get("bucket", ""), r["loss"]) for r in rows]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="source tree of the reference")
    p.add_argument("--after", type=Path, default=REPO, help="source tree to compare (default: this checkout)")
    p.add_argument("--work", type=Path, default=Path("/tmp/train-losses"))
    args = p.parse_args()
    root = args.work / "data"
    root.parent.mkdir(parents=True, exist_ok=True)
    build(root)
    same = True
    print("| run | kind | step | bucket | loss before | loss after | identical |\n|---|---|---|---|---|---|---|")
    for name, lora in RUNS.items():
        before = losses(args.before.resolve(), root, args.work / f"before-{name}", lora)
        after = losses(args.after.resolve(), root, args.work / f"after-{name}", lora)
        if [r[:3] for r in before] != [r[:3] for r in after]:
            print(f"{name}: the runs logged different steps: {before} vs {after}")
            return 1
        for (kind, step, bucket, a), (*_, b) in zip(before, after, strict=True):
            same &= a == b
            print(f"| {name} | {kind} | {step} | {bucket} | {a!r} | {b!r} | {'yes' if a == b else 'NO'} |")
    print(f"\nall losses identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
