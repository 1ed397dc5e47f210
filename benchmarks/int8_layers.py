"""Which linear layers make torch's dynamic int8 lose SmolLM2-135M: logit agreement per layer type.

Quantises one layer type at a time (per-channel int8 weights, activations quantised per tensor at
run time, as ``quantize_dynamic`` does) and compares the logits with fp32 on `training.export`'s
fixed probes: worst relative RMS error and mean top-1 agreement. Then all layers, and all but
``down_proj`` (whose input, the SwiGLU product, carries the largest outliers).

    nice python benchmarks/int8_layers.py
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.models import default_model_dir  # noqa: E402
from training.export import PROBES, compare_logits, probe_ids  # noqa: E402

PARTS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")


def main() -> int:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warnings.simplefilter("ignore")
    source = default_model_dir()
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    prompts = probe_ids(tokenizer, model.config.max_position_embeddings)
    labels = [*PROBES, "chat"][: len(prompts)]
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    variants = {f"only {part}": [n for n in linears if n.endswith(part)] for part in PARTS}
    variants["all linears"] = linears
    variants["all but down_proj"] = [n for n in linears if not n.endswith("down_proj")]
    print("| int8 layers | layers | worst rel rms | top-1 |\n| --- | --- | --- | --- |")
    for name, names in variants.items():
        quantised = quantize_dynamic(
            copy.deepcopy(model), dict.fromkeys(names, per_channel_dynamic_qconfig), dtype=torch.qint8
        )
        rows = compare_logits(model, quantised, prompts, labels)
        worst, top1 = max(r.rel_rms for r in rows), sum(r.top1 for r in rows) / len(rows)
        print(f"| {name} | {len(names)} | {worst:.3f} | {top1:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
