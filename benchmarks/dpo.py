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
``--speed-smollm2``: the same comparison on SmolLM2-135M-Instruct with LoRA r=8. Besides tokens/s
the table gives examples/s (SFT: prompt + chosen; DPO: a pair, whose prompt is run twice).

``--smollm2``: SmolLM2-135M-Instruct, LoRA r=8: SFT on the legal sample's default build, then
DPO from the SFT export (``model: <sft>/export``) on the pairs; held-out reward accuracy and
margin before (step 0: 0 by definition, policy == reference) and after, and the SFT run's
held-out perplexity before/after; then ``training.eval`` of the base, SFT and SFT + DPO models
(held-out legal documents, and with ../shared/data Chinese court text ppl and legal exam MCQ,
``--eval-limit`` items each).

    flock /work/heavy.lock python benchmarks/dpo.py --tiny --work /tmp/bench-dpo            # speed
    flock /work/heavy.lock python benchmarks/dpo.py --speed-smollm2 --steps 6 --repeats 1   # speed
    nice python benchmarks/dpo.py --smollm2 --work /tmp/bench-dpo                         # quality
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


def answer_tokens(source: Path) -> tuple[float, float]:
    """Mean tokens per SFT example (prompt + chosen) and per DPO pair (prompt + chosen, prompt +
    rejected), by the bundled tokenizer on the raw strings (the chat template adds the same few
    tokens to both): what turns the tokens/s ratio into an examples/s ratio."""
    from transformers import AutoTokenizer

    from common.models import default_model_dir

    tok = AutoTokenizer.from_pretrained(default_model_dir())
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    n = [(len(tok(r["prompt"]).input_ids), len(tok(r["chosen"]).input_ids), len(tok(r["rejected"]).input_ids))
         for r in rows]  # fmt: skip
    return statistics.mean(p + c for p, c, _ in n), statistics.mean(2 * p + c + r for p, c, r in n)


def speed(work: Path, model: str, repeats: int, steps: int) -> None:
    """DPO vs SFT tokens/s on the same model, rows and batch shape (``model``: tiny or smollm2)."""
    root = work / "pairs-data"
    source = work / "pairs.jsonl"
    if not source.exists():
        continuation_pairs(source)
    build(root, source, "[normalize, exact_dedup, {split: {validation_ratio: 0.1}}]")
    common = {
        "root": root, "seq_len": 256, "micro_batch": 4, "grad_accum": 1, "lr": "1.0e-3", "warmup_steps": 2,
        "max_steps": steps, "eval_batches": 0, "export": "false", "save_every": 1000,
    }  # fmt: skip
    if model == "tiny":
        common |= {"from_scratch": TINY, "lora": "null"}
        shape = "tiny Llama (d=128, 4 layers), full FT"
    else:
        common |= {"lora": "{r: 8, alpha: 16}"}
        shape = "SmolLM2-135M-Instruct, LoRA r=8"
    best: dict[str, float] = {}
    for r in range(repeats):
        for objective in ("sft", "dpo"):
            rows = train(work / f"{model}-{objective}-{r}", {**common, "objective": objective})
            speeds = [x["tokens_per_s"] for x in rows if x["kind"] == "train"][2:]
            best[objective] = max(best.get(objective, 0.0), statistics.median(speeds))
    per_example, per_pair = answer_tokens(source)
    print(f"\n{shape}: median tokens/s over steps 3-{steps}, best of {repeats} interleaved runs; "
          f"{per_example:.0f} tokens per SFT example, {per_pair:.0f} per DPO pair")  # fmt: skip
    print("| objective | model | seq | micro-batch | tokens/s | vs SFT | examples (pairs)/s | vs SFT |")
    print("|---|---|---|---|---|---|---|---|")
    for objective in ("sft", "dpo"):
        per = per_example if objective == "sft" else per_pair
        ex, ex_sft = best[objective] / per, best["sft"] / per_example
        print(f"| {objective} | {shape} | 256 | 4 packed rows / 4 pairs | {best[objective]:,.0f} | "
              f"{best[objective] / best['sft']:.2f}x | {ex:.2f} | {ex / ex_sft:.2f}x |")  # fmt: skip


def smollm2(work: Path, sft_steps: int, dpo_steps: int, eval_limit: int) -> None:
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
    print(f"\ntokens/s (median; these runs differ in data and batch shape, for the ratio see --speed-smollm2): "
          f"SFT {speed['sft']:,.0f}, DPO {speed['dpo']:,.0f}")  # fmt: skip
    evaluate(work, eval_limit)


def evaluate(work: Path, limit: int) -> None:
    """`training.eval` of the base, SFT and SFT + DPO models on the held-out legal documents and,
    where ../shared/data is present, real Chinese court text (ppl) and legal exam questions (MCQ):
    sets no run here trained or was tuned on."""
    heldout = REPO / "samples" / "eval" / "legal_heldout.jsonl"
    shared = REPO.parent / "shared" / "data"
    sets = ["--ppl", f"heldout={heldout}"]
    if (shared / "zh_legal_dev.jsonl").exists():
        sets += [
            "--ppl",
            f"zh_legal={shared / 'zh_legal_dev.jsonl'}",
            "--mcq",
            f"zh_exam={shared / 'zh_legal_exam_dev.jsonl'}",
        ]
    models = (("SmolLM2-135M-Instruct", "default"), ("+ SFT", str(work / "smollm2-sft")),
              ("+ SFT + DPO", str(work / "smollm2-dpo")))  # fmt: skip
    results = {}
    for name, model in models:
        out = work / f"eval-{Path(model).name}.json"
        cmd = [sys.executable, "-m", "training.eval", "--model", model, *sets, "--limit", str(limit),
               "--no-overlap", "--quiet", "--out", str(out)]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, capture_output=True)
        results[name] = json.loads(out.read_text())
    first = next(iter(results.values()))
    ppl_sets, mcq_sets = list(first["perplexity"]), list(first.get("mcq", {}))
    print(f"\n`python -m training.eval {' '.join(str(a) for a in sets)} --limit {limit}` (80 held-out legal "
          "documents; zh sets: ../shared/data, first --limit items spread evenly):\n")  # fmt: skip
    head = (
        [f"ppl {s}" for s in ppl_sets] + [f"bits/byte {s}" for s in ppl_sets] + [f"MCQ acc_norm {s}" for s in mcq_sets]
    )
    print("| model | " + " | ".join(head) + " |\n|---|" + "---|" * len(head))
    for name, r in results.items():
        cells = [f"{r['perplexity'][s]:.3f}" for s in ppl_sets] + [f"{r['bits_per_byte'][s]:.4f}" for s in ppl_sets]
        cells += [f"{r['mcq'][s]['acc_norm']:.3f} (n={r['mcq'][s]['n']})" for s in mcq_sets]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="DPO vs SFT tokens/s on a tiny model (CPU)")
    p.add_argument("--speed-smollm2", action="store_true", help="DPO vs SFT tokens/s on SmolLM2-135M LoRA")
    p.add_argument("--smollm2", action="store_true", help="SmolLM2-135M LoRA: SFT, then DPO from its export")
    p.add_argument("--eval-limit", type=int, default=100, help="items per shared-data eval set (--smollm2)")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-dpo"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=12, help="steps per --tiny run")
    p.add_argument("--sft-steps", type=int, default=30)
    p.add_argument("--dpo-steps", type=int, default=30)
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.tiny or not (args.smollm2 or args.speed_smollm2):
        speed(args.work, "tiny", args.repeats, args.steps)
    if args.speed_smollm2:
        speed(args.work, "smollm2", args.repeats, args.steps)
    if args.smollm2:
        smollm2(args.work, args.sft_steps, args.dpo_steps, args.eval_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
