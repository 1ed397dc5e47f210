"""int8 variants of SmolLM2-135M against fp32: logit agreement, and what ``--quantize int8`` serves.

1. torch's dynamic int8 (``quantize_dynamic``: int8 weights, activations quantised per tensor at
   run time), the old ``--quantize int8``: per-tensor weights on every linear, then per-channel
   weights on one layer type at a time, all layers, and all but ``down_proj`` (whose input, the
   SwiGLU product, carries the largest outliers);
2. weight-only int8 (`training.int8`, activations stay floating point): bfloat16 activations alone
   (no int8, the kernel's floor), per-channel int8 rounded to nearest, and rounded with GPTQ on the
   fixed calibration text (what ``--quantize int8`` serves now).

Each compared with fp32 on `training.export`'s fixed probes (as the GGUF export table), on
`HELD_OUT` (longer texts, more positions, shared with neither the probes nor the calibration) and,
when ``../shared/data/zh_legal_dev.jsonl`` is there, on ``--real N`` real Chinese legal texts
nobody here wrote (spread over the file, first 256 tokens each): worst relative RMS logit error and
mean top-1 agreement. ``--weight-only`` skips the dynamic-int8 variants.

    flock /work/heavy.lock python benchmarks/int8_layers.py [--threads 2] [--real 12] [--weight-only]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.models import default_model_dir  # noqa: E402
from training.export import PROBES, compare_logits, probe_ids  # noqa: E402

HELD_OUT = (
    "When the river froze, the ferry stopped and the two villages on its banks lived apart until spring. "
    "Letters went round by the bridge forty kilometres downstream, and the children who went to school on "
    "the far side stayed with relatives for the winter, coming home only at Christmas.",
    "The function returns None when the key is missing, so callers must check the result before using it; "
    "a KeyError would be clearer. The patch adds a default argument and a test for both paths.",
    "北京时间昨天晚上，第十五届全国运动会在广州开幕。本届运动会共设三十四个大项，来自全国各地的一万多名运动员参加比赛。",
    "<|im_start|>user\nGive me three tips for a job interview.<|im_end|>\n<|im_start|>assistant\n"
    "Research the company, prepare short stories that show your skills, and ask one good question at the end.",
)

REAL = ROOT.parent / "shared" / "data" / "zh_legal_dev.jsonl"
PARTS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


def main() -> int:
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.int8 import Int8Linear, quantize_int8

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--real", type=int, default=12, help="real zh legal texts (0: none)")
    p.add_argument("--weight-only", action="store_true", help="only the weight-only variants")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    source = default_model_dir()
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    probes = probe_ids(tokenizer, model.config.max_position_embeddings)
    held_out = [tokenizer(t)["input_ids"] for t in HELD_OUT]
    sets = {"probes": (probes, [*PROBES, "chat"][: len(probes)]), "held out": (held_out, list(HELD_OUT))}
    if args.real and REAL.exists():
        rows = [json.loads(line) for line in REAL.read_text(encoding="utf-8").splitlines() if line.strip()]
        picked = [rows[i * len(rows) // args.real] for i in range(min(args.real, len(rows)))]
        sets["real zh"] = ([tokenizer(r["text"])["input_ids"][:256] for r in picked], [r["id"] for r in picked])
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]

    def dynamic(names: list[str], qconfig: object) -> torch.nn.Module:
        return quantize_dynamic(copy.deepcopy(model), dict.fromkeys(names, qconfig), dtype=torch.qint8)

    def bf16_only() -> torch.nn.Module:
        class Bf16(torch.nn.Module):
            def __init__(self, linear: torch.nn.Linear) -> None:
                super().__init__()
                self.weight = linear.weight.detach().bfloat16()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.linear(x.bfloat16(), self.weight).to(x.dtype)

        m = copy.deepcopy(model)
        for name in linears:
            parent, _, attr = name.rpartition(".")
            setattr(m.get_submodule(parent), attr, Bf16(m.get_submodule(name)))
        return m

    variants: dict[str, Callable[[], torch.nn.Module]] = {}
    if not args.weight_only:
        old = "dynamic, per-tensor weights (old --quantize int8)"
        variants[old] = lambda: dynamic(linears, default_dynamic_qconfig)
    for part in () if args.weight_only else PARTS:
        names = [n for n in linears if n.endswith(part)]
        variants[f"dynamic, only {part}"] = lambda names=names: dynamic(names, per_channel_dynamic_qconfig)
    if not args.weight_only:
        variants["dynamic, all linears"] = lambda: dynamic(linears, per_channel_dynamic_qconfig)
        variants["dynamic, all but down_proj"] = lambda: dynamic(
            [n for n in linears if not n.endswith("down_proj")], per_channel_dynamic_qconfig
        )
    variants["weight-only: bf16 activations, no int8"] = bf16_only
    variants["weight-only int8, round to nearest"] = lambda: quantize_int8(copy.deepcopy(model))
    variants["weight-only int8, GPTQ (--quantize int8)"] = lambda: quantize_int8(copy.deepcopy(model), tokenizer)
    positions = {k: sum(len(p) for p in v[0]) for k, v in sets.items()}
    print("positions: " + ", ".join(f"{k} {n}" for k, n in positions.items()))
    print("| int8 variant | " + " | ".join(f"{k} rel rms | {k} top-1" for k in sets) + " |")
    print("| --- | " + " | ".join("--- | ---" for _ in sets) + " |")
    for name, build in variants.items():
        started = time.perf_counter()
        quantised = build()
        built = time.perf_counter() - started
        cells = []
        for prompts, labels in sets.values():
            rows = compare_logits(model, quantised, prompts, labels)
            cells += [f"{max(r.rel_rms for r in rows):.3f}", f"{sum(r.top1 for r in rows) / len(rows):.3f}"]
        if name.endswith("(--quantize int8)"):
            assert any(isinstance(m, Int8Linear) for m in quantised.modules())
            name += f" [built in {built:.0f} s]"
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
