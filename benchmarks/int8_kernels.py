"""Per-layer CPU timings behind ``--quantize int8``: SmolLM2-135M's linear shapes, fp32 ``F.linear``
against ``aten._weight_int8pack_mm`` with bf16 and with fp32 activations, and the prompt path
(int8 weight cast to bf16, bf16 GEMM, scaled after), at decode (1, 4 rows) and prefill (40, 160
rows) sizes. Median microseconds per call, the activation casts included.

    flock /work/heavy.lock python benchmarks/int8_kernels.py [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

SHAPES = {
    "q/o 576x576": (576, 576),
    "k/v 192x576": (192, 576),
    "gate/up 1536x576": (1536, 576),
    "down 576x1536": (576, 1536),
    "head 49152x576": (49152, 576),
}


def median_us(fn: Callable[[], object], reps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] * 1e6


def row(x: torch.Tensor, w: torch.Tensor, q: torch.Tensor, sb: torch.Tensor, sf: torch.Tensor, reps: int) -> list:
    with torch.inference_mode():
        return [
            median_us(lambda: F.linear(x, w), reps),
            median_us(lambda: torch.ops.aten._weight_int8pack_mm(x.bfloat16(), q, sb).float(), reps),
            median_us(lambda: torch.ops.aten._weight_int8pack_mm(x, q, sf), max(5, reps // 4)),
            median_us(lambda: F.linear(x.bfloat16(), q.to(torch.bfloat16)).float() * sf, reps),
        ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| layer | rows | fp32 | int8 kernel, bf16 act | int8 kernel, fp32 act | int8 -> bf16 GEMM |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (n, k) in SHAPES.items():
        w = torch.randn(n, k)
        s = w.abs().amax(1) / 127
        q = torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8)
        sb = s.bfloat16()
        sf = sb.float()
        for m in (1, 4, 40, 160):
            x = torch.randn(m, k)
            reps = 20 if n > 10000 or m >= 40 else 200
            cells = row(x, w, q, sb, sf, reps)
            print(f"| {name} | {m} | " + " | ".join(f"{c:.0f}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
