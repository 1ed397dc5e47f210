"""DPO in `training.run`: throughput against SFT on the same model, and SFT -> DPO on the legal sample.

The preference pairs are built from the bundled legal sample (real text, no model involved): the
prompt is the opening of a document, the chosen answer its true continuation, the rejected one a
span of another document of the same length. A model that reads the prompt prefers the true
continuation, so held-out reward accuracy measures whether DPO learned the document's own
context (grounding), the property a judge-made preference set is meant to teach. The pairs go
through ``pipelines.build`` like any corpus (``normalize``, ``exact_dedup``, a 10% validation
split): rows with ``meta.prompt`` / ``meta.chosen`` / ``meta.rejected``.

``--tiny`` (CPU): tokens/s of ``objective: dpo`` vs ``objective: sft`` on the same random-init
Llama, rows and batch shape (SFT trains on prompt -> chosen as instruction rows), median over the
steps after two warm-up steps, best of ``--repeats`` interleaved runs. A DPO step runs, per pair,
the policy forward + backward on both answers and a reference forward on both.

``--smollm2``: SmolLM2-135M-Instruct, LoRA r=8: SFT on the legal sample's default build, then
DPO from the SFT export (``model: <sft>/export``) on the pairs; held-out reward accuracy and
margin before (step 0: 0 by definition, policy == reference) and after, and the SFT run's
held-out perplexity before/after.

    nice python benchmarks/dpo.py --tiny --work /tmp/bench-dpo
    flock /work/heavy.lock nice python benchmarks/dpo.py --smollm2 --work /tmp/bench-dpo
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "legal_sample.jsonl"
TINY = (
    "{hidden_size: 128, intermediate_size: 256, num_hidden_layers: 4, num_attention_heads: 4, "
    "num_key_value_heads: 2, max_position_embeddings: 512}"
)


def continuation_pairs(path: Path, prompt_words: int = 48, answer_words: int = 32) -> list[dict[str, Any]]:
    """(opening, true continuation, another document's span) for every long enough document."""
    docs = [json.loads(line)["text"].split() for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    docs = [d for d in docs if len(d) >= prompt_words + answer_words + 8]
    out = []
    for i, words in enumerate(docs):
        other = docs[(i * 7 + 3) % len(docs)]
        if other is words:
            other = docs[(i + 1) % len(docs)]
        start = len(other) // 2 - answer_words // 2
        prompt = "Continue this passage from a legal document:\n\n" + " ".join(words[:prompt_words])
        chosen = " ".join(words[prompt_words : prompt_words + answer_words])
        rejected = " ".join(other[start : start + answer_words])
        out.append({"text": f"{prompt}\n{chosen}", "prompt": prompt, "chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    return out


def build(root: Path, source: Path, steps: str) -> None:
    if (root / "catalog.duckdb").exists():
        return
    config = root.parent / f"{root.name}.yaml"
    config.write_text(f"root: {root}\nworkers: 1\nsources: [{source}]\nsteps: {steps}\n")
    subprocess.run([sys.executable, "-m", "pipelines.build", "--config", str(config)], cwd=REPO, check=True)


def train(out: Path, sets: dict[str, Any]) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "training.run", "--config", "configs/train.yaml"]
    for k, v in {"output_dir": out, "resume": "false", **sets}.items():
        cmd += ["--set", f"{k}={v}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"training.run failed:\n{result.stderr[-4000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def tiny(work: Path, repeats: int, steps: int) -> None:
    root = work / "pairs-data"
    source = work / "pairs.jsonl"
    if not source.exists():
        continuation_pairs(source)
    build(root, source, "[normalize, exact_dedup, {split: {validation_ratio: 0.1}}]")
    common = {
        "root": root, "from_scratch": TINY, "lora": "null", "seq_len": 256, "micro_batch": 4, "grad_accum": 1,
        "lr": "1.0e-3", "warmup_steps": 2, "max_steps": steps, "eval_batches": 0, "export": "false",
        "save_every": 1000,
    }  # fmt: skip
    best: dict[str, float] = {}
    for r in range(repeats):
        for objective in ("sft", "dpo"):
            rows = train(work / f"tiny-{objective}-{r}", {**common, "objective": objective})
            speeds = [x["tokens_per_s"] for x in rows if x["kind"] == "train"][2:]
            best[objective] = max(best.get(objective, 0.0), statistics.median(speeds))
    print("| objective | model | seq | micro-batch | tokens/s (median, best of runs) | vs SFT |")
    print("|---|---|---|---|---|---|")
    for objective in ("sft", "dpo"):
        ratio = best[objective] / best["sft"]
        shape = "tiny Llama (d=128, 4 layers) | 256 | 4 rows / 4 pairs"
        print(f"| {objective} | {shape} | {best[objective]:,.0f} | {ratio:.2f}x |")


def smollm2(work: Path, sft_steps: int, dpo_steps: int) -> None:
    legal = work / "legal-data"
    build(legal, SAMPLE, "[normalize, exact_dedup, {split: {validation_ratio: 0.1}}, {curriculum: {buckets: 2}}]")
    pairs_root = work / "pairs-data"
    source = work / "pairs.jsonl"
    if not source.exists():
        continuation_pairs(source)
    build(pairs_root, source, "[normalize, exact_dedup, {split: {validation_ratio: 0.1}}]")
    lora = "{r: 8, alpha: 16}"
    sft = train(
        work / "smollm2-sft",
        {"root": legal, "lora": lora, "seq_len": 256, "micro_batch": 4, "grad_accum": 1, "lr": "5.0e-4",
         "warmup_steps": 4, "max_steps": sft_steps, "eval_every": sft_steps, "eval_batches": 4, "save_every": 1000},
    )  # fmt: skip
    dpo = train(
        work / "smollm2-dpo",
        {"root": pairs_root, "model": work / "smollm2-sft" / "export", "objective": "dpo", "dpo": "{beta: 0.1}",
         "lora": lora, "seq_len": 256, "micro_batch": 2, "grad_accum": 2, "lr": "5.0e-4", "warmup_steps": 4,
         "max_steps": dpo_steps, "eval_every": dpo_steps, "eval_batches": 8, "save_every": 1000},
    )  # fmt: skip
    print("| stage | metric | before | after |\n|---|---|---|---|")
    ppl = {(r["step"], r["bucket"]): r["ppl"] for r in sft if r["kind"] == "eval"}
    for bucket in sorted({b for _, b in ppl}):
        print(f"| SFT ({sft_steps} steps) | held-out ppl, bucket {bucket} | {ppl[(0, bucket)]:.2f} | "
              f"{ppl[(sft_steps, bucket)]:.2f} |")  # fmt: skip
    held = {r["step"]: r for r in dpo if r["kind"] == "eval"}
    for key in ("reward_accuracy", "reward_margin", "loss"):
        print(f"| DPO ({dpo_steps} steps) | held-out {key} ({held[0]['pairs']} pairs) | {held[0][key]:.4f} | "
              f"{held[dpo_steps][key]:.4f} |")  # fmt: skip
    speed = {name: statistics.median([r["tokens_per_s"] for r in rows if r["kind"] == "train"][2:])
             for name, rows in (("sft", sft), ("dpo", dpo))}  # fmt: skip
    print(f"\ntokens/s (median): SFT {speed['sft']:,.0f}, DPO {speed['dpo']:,.0f} ({speed['dpo'] / speed['sft']:.2f}x)")
    heldout = REPO / "samples" / "eval" / "legal_heldout.jsonl"
    print(f"\n`python -m training.eval --ppl {heldout.relative_to(REPO)}` (80 held-out legal documents):\n")
    print("| model | perplexity | bits per byte |\n|---|---|---|")
    for name, model in (("SmolLM2-135M-Instruct", "default"), ("+ SFT", work / "smollm2-sft"),
                        ("+ SFT + DPO", work / "smollm2-dpo")):  # fmt: skip
        out = work / f"eval-{model if model == 'default' else Path(model).name}.json"
        cmd = [sys.executable, "-m", "training.eval", "--model", str(model), "--ppl", f"heldout={heldout}",
               "--no-overlap", "--quiet", "--out", str(out)]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)
        result = json.loads(out.read_text())
        print(f"| {name} | {result['perplexity']['heldout']:.3f} | {result['bits_per_byte']['heldout']:.4f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="DPO vs SFT tokens/s on a tiny model (CPU)")
    p.add_argument("--smollm2", action="store_true", help="SmolLM2-135M LoRA: SFT, then DPO from its export")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-dpo"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=12, help="steps per --tiny run")
    p.add_argument("--sft-steps", type=int, default=30)
    p.add_argument("--dpo-steps", type=int, default=30)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.tiny or not args.smollm2:
        tiny(args.work, args.repeats, args.steps)
    if args.smollm2:
        smollm2(args.work, args.sft_steps, args.dpo_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
