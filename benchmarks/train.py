"""Training throughput: `python -m training.run` vs HF `Trainer` + peft + DeepSpeed ZeRO-2.

    python benchmarks/train.py --tiny          # CPU, a small random-init Llama, < 3 minutes
    python benchmarks/train.py                 # GPU: seq 2048, bf16, SmolLM2-135M and -1.7B shapes
    python benchmarks/train.py --prepare .bench  # here: the corpus + a weightless tokenizer dir to carry
    python benchmarks/train.py --work .bench   # there: a machine without polars or the SmolLM2 GGUF

In one run, for each model shape, both trainers train the same random-init Llama (same shape,
same seed, LoRA r=8 on q/k/v/o, ZeRO-2, AdamW, warmup + cosine, same micro-batch, accumulation
and sequence length) on the same token rows: the rows `training.run` packs from the bundled
sample corpus (built once into a temporary catalog). Differences that are part of what is being
compared: `training.run` streams and packs rows during the run and masks attention per document
(a 4D block-causal mask, position ids restarting per document); the baseline gets the same rows
pre-built in memory as plain causal-LM chunks (one causal mask across the row, the usual HF
"group_texts" recipe), which lets SDPA use its fastest kernels.

Variants of ours (``--variants``; all on a GPU, three on CPU):
``default`` is the reference path (our 4D block mask, the model's loss, AdamW, eager); ``fast-*``
add the speed options (packing from position ids, fused AdamW, torch.compile before DeepSpeed
wraps the model) at ZeRO 2, 1 or 0, ``fast-z1-chunked`` chunked cross-entropy (memory for
compute: the LM head runs again in the backward pass) and ``fast-z1-flex`` flex attention
(block-sparse over documents; GPU only). Each option is tested on CPU to train with
the same losses as the default path.

tokens/s counts all row tokens (padding included, the same rows for both) per median step time
over the steps after ``--warmup`` steps (wall time between step ends), best of ``--repeats`` runs
per trainer, interleaved (HF, ours, HF, ours), so a burst from another job on a shared machine
hits one run instead of deciding the ratio. MFU (GPU only) = tokens/s x FLOPs per token
/ peak dense bf16 FLOPs (H100/H200: 989 TFLOPS; ``--peak-tflops`` otherwise), with FLOPs per token
= 4 N + 12 L d s for LoRA (N = non-embedding weights incl. the LM head: 2N forward + 2N for the
input gradients, none for the frozen weights' gradients; attention 12 L d s as in PaLM).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LORA = {"r": 8, "alpha": 16, "dropout": 0.0}
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
    },
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    },
    "smollm2-1.7b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 24,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    },
}
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, first match wins


def build_corpus(root: Path) -> None:
    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps import Curriculum, ExactDedup, Normalize, Split

    cfg = BuildConfig(
        root=root,
        workers=1,
        sources=[SourceSpec(REPO / "samples" / "legal_sample.jsonl")],
        steps=[Normalize(), ExactDedup(), Split(validation_ratio=0.1), Curriculum(buckets=2)],
    )
    run_build(cfg, progress=False)


def prepare(work: Path) -> None:
    """What a GPU run needs that the lent machine cannot make: the built corpus (pipelines need
    polars) and the tokenizer with the model config but no weights (the default model comes from a
    98 MB GGUF); the shapes are random-init, so no weights are needed. A few MB, for `carry`."""
    from transformers import AutoConfig, AutoTokenizer

    from common.models import default_model_dir

    if not (work / "data" / "catalog.duckdb").exists():
        build_corpus(work / "data")
    source = default_model_dir()
    AutoConfig.from_pretrained(source).save_pretrained(work / "model")
    AutoTokenizer.from_pretrained(source).save_pretrained(work / "model")
    shutil.rmtree(work / "data" / "work", ignore_errors=True)  # build scratch, not needed to train
    size = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    print(
        f"{work}: corpus and tokenizer, {size / 2**20:.1f} MiB; on the GPU machine: "
        f"python benchmarks/train.py --work {work}"
    )


def run_ours(job: dict[str, Any], out: Path, options: dict[str, Any] | None = None) -> list[float]:
    """Step seconds of `python -m training.run` (one process, LoRA, ZeRO-2 unless ``options`` say
    otherwise), from metrics.jsonl."""
    sets = {
        "root": job["root"],
        "model": job["model"],
        "output_dir": str(out),
        "from_scratch": json.dumps(job["shape"]),
        "lora": json.dumps(LORA),
        "seq_len": job["seq_len"],
        "micro_batch": job["micro_batch"],
        "grad_accum": job["grad_accum"],
        "lr": 2e-4,
        "warmup_steps": 2,
        "max_steps": job["steps"],
        "zero_stage": 2,
        "save_every": 10**9,
        "eval_batches": 0,
        "export": False,
        "resume": False,
        **(options or {}),
    }
    cmd = [sys.executable, "-m", "training.run", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"training.run failed:\n{result.stderr[-4000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = job["micro_batch"] * job["grad_accum"] * job["seq_len"]
    return [tokens / r["tokens_per_s"] for r in rows if r["kind"] == "train"]


def run_baseline(job: dict[str, Any], out: Path) -> list[float]:
    """Step seconds of HF Trainer + peft + DeepSpeed ZeRO-2 in a fresh process (its own process group)."""
    cmd = [sys.executable, __file__, "--hf-worker", json.dumps({**job, "out": str(out)})]
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"HF Trainer baseline failed:\n{result.stderr[-4000:]}")
    return json.loads((out / "step_seconds.json").read_text())


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each run is its own single-process group on its own port
    return env


def hf_worker(job: dict[str, Any]) -> None:
    """The baseline: the same rows as plain causal-LM chunks, HF Trainer with a DeepSpeed config."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from common.models import resolve_model_path
    from training.data import DocumentTokenizer, select_shards
    from training.distributed import init_distributed
    from training.stream import packed_stream

    on_gpu = torch.cuda.is_available()
    init_distributed()  # a free port for this single-process group; Trainer reuses it
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(job["model"]))  # the one training.run uses
    refs = select_shards(Path(job["root"]), split="train")
    needed = job["steps"] * job["micro_batch"] * job["grad_accum"]
    rows: list[Any] = []
    while len(rows) < needed:  # passes over the selection, as training.run does
        rows += packed_stream(
            refs, DocumentTokenizer(tokenizer), Path(job["root"]) / "state" / "tokens", job["seq_len"]
        ).take(needed)
    dataset = [{"input_ids": torch.from_numpy(r.input_ids), "labels": torch.from_numpy(r.input_ids)} for r in rows]

    torch.manual_seed(1234)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **job["shape"]))
    model = get_peft_model(
        model,
        LoraConfig(
            r=LORA["r"],
            lora_alpha=LORA["alpha"],
            lora_dropout=LORA["dropout"],
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        ),
    )
    ds_config = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": {"stage": 2},
        "bf16": {"enabled": "auto"},
        "steps_per_print": 10**9,
    }
    args = TrainingArguments(
        output_dir=job["out"],
        per_device_train_batch_size=job["micro_batch"],
        gradient_accumulation_steps=job["grad_accum"],
        max_steps=job["steps"],
        learning_rate=2e-4,
        warmup_steps=2,
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        bf16=on_gpu,
        deepspeed=ds_config,
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        seed=1234,
        disable_tqdm=True,
    )

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.perf_counter()
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.seconds and state.global_step == 0:
                self.last = time.perf_counter()  # the first step starts here, after DeepSpeed's setup

        def on_step_end(self, args, state, control, **kwargs):
            if on_gpu:
                torch.cuda.synchronize()
            now = time.perf_counter()
            self.seconds.append(now - self.last)
            self.last = now

    clock = StepClock()
    Trainer(model=model, args=args, train_dataset=dataset, callbacks=[clock]).train()
    Path(job["out"]).mkdir(parents=True, exist_ok=True)
    (Path(job["out"]) / "step_seconds.json").write_text(json.dumps(clock.seconds))


BASELINE = "HF Trainer + peft + ZeRO-2"
# the speed options of training.run (docs/TRAINING.md), each tested on CPU to train like the default path
FAST = {"packed_attention": "position_ids", "fused_adamw": True, "compile": True}
CHUNKED = {**FAST, "loss_chunk_tokens": 4096}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {  # name -> (label, training.run options)
    "default": ("training.run (ZeRO-2, LoRA)", {}),
    "fast-z2": ("training.run fast (ZeRO-2)", FAST),
    "fast-z1": ("training.run fast (ZeRO-1)", {**FAST, "zero_stage": 1}),
    "fast-z0": ("training.run fast (ZeRO-0)", {**FAST, "zero_stage": 0}),
    "fast-z1-chunked": ("training.run fast + chunked CE (ZeRO-1)", {**CHUNKED, "zero_stage": 1}),
    "fast-z1-flex": (
        "training.run fast + flex attn (ZeRO-1)",
        {**FAST, "zero_stage": 1, "attn_implementation": "flex_attention"},
    ),
}
# flex attention has no backward on CPU; compile takes ~40 s per run here
CPU_VARIANTS = ["default", "fast-z2", "fast-z1-chunked"]


def trainers(variants: list[str]) -> dict[str, tuple[str, Callable[[dict[str, Any], Path], list[float]]]]:
    """label -> (output tag, runner): the baseline first, then the chosen variants of ours."""
    out: dict[str, tuple[str, Callable[[dict[str, Any], Path], list[float]]]] = {BASELINE: ("hf", run_baseline)}
    for name in variants:
        label, options = VARIANTS[name]
        out[label] = (name, functools.partial(run_ours, options=options))
    return out


def flops_per_token(shape: dict[str, Any], vocab: int, seq_len: int) -> float:
    """4 N + 12 L d s for LoRA training (see the module docstring)."""
    d, ff, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = d * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * ff  # q, o; k, v; gate, up, down
    n = layers * per_layer + d * vocab  # + LM head
    return 4 * n + 12 * layers * d * seq_len


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="CPU mode: a small model, a few steps")
    p.add_argument("--shapes", nargs="*", help="model shapes to run (default: tiny with --tiny, else both SmolLM2)")
    p.add_argument("--steps", type=int, help="optimizer steps per run (default 12 tiny, 30 GPU)")
    p.add_argument("--repeats", type=int, help="runs per trainer, interleaved, best kept (default 2 tiny, 1 GPU)")
    p.add_argument("--seq-len", type=int, help="override the shape's sequence length")
    p.add_argument("--micro-batch", type=int, help="override the shape's micro-batch (e.g. if 1.7B runs out of memory)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the throughput")
    p.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOPS of the GPU, for MFU")
    p.add_argument("--work", type=Path, help="keep the corpus and runs here (default: a temp dir)")
    p.add_argument(
        "--prepare", type=Path, metavar="DIR", help="only build the corpus and tokenizer into DIR, then stop"
    )
    p.add_argument(
        "--variants",
        nargs="*",
        choices=sorted(VARIANTS),
        help=f"training.run variants (default: all on GPU, {CPU_VARIANTS} on CPU)",
    )
    p.add_argument("--hf-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.hf_worker:
        hf_worker(json.loads(args.hf_worker))
        return 0
    if args.prepare:
        prepare(args.prepare)
        return 0

    import torch

    on_gpu = torch.cuda.is_available()
    if not args.tiny and not on_gpu:
        raise SystemExit("no GPU here: run with --tiny for the CPU mode")
    shapes = args.shapes or (["tiny"] if args.tiny else ["smollm2-135m", "smollm2-1.7b"])
    runs = trainers(args.variants or (CPU_VARIANTS if not on_gpu else list(VARIANTS)))
    # (seq_len, micro-batch, accumulation) per shape; GPU micro-batches fit an 80 GB H100 without checkpointing
    plan = {"tiny": (256, 4, 1), "smollm2-135m": (2048, 8, 1), "smollm2-1.7b": (2048, 4, 1)}
    steps = args.steps or (12 if args.tiny else 30)
    repeats = args.repeats or (2 if args.tiny else 1)
    peak = args.peak_tflops
    if on_gpu and peak is None:
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-train-"))
    root = work / "data"
    if not (root / "catalog.duckdb").exists():
        build_corpus(root)

    from transformers import AutoTokenizer

    from common.models import resolve_model_path

    model = work / "model" if (work / "model" / "config.json").exists() else "default"  # from --prepare
    vocab = len(AutoTokenizer.from_pretrained(resolve_model_path(model)))
    device = torch.cuda.get_device_name() if on_gpu else f"CPU ({os.cpu_count()} cores)"
    print(
        f"device: {device}; {steps} steps per run, median step time over steps {args.warmup + 1}..{steps}, "
        f"best of {repeats} interleaved run(s) per trainer"
    )
    header = f"{'shape':<14}{'seq':>6}{'mb':>4}  {'trainer':<42}{'tokens/s':>11}{'MFU':>8}{'vs HF':>8}"
    print(header + "\n" + "-" * len(header))
    results = []
    for shape_name in shapes:
        seq_len, mb, accum = plan[shape_name]
        seq_len, mb = args.seq_len or seq_len, args.micro_batch or mb
        job = {
            "root": str(root),
            "model": str(model),
            "shape": SHAPES[shape_name],
            "seq_len": seq_len,
            "micro_batch": mb,
            "grad_accum": accum,
            "steps": steps,
        }
        tokens_per_step = seq_len * mb * accum
        measured: dict[str, float | None] = {label: 0.0 for label in runs}
        for _ in range(repeats):  # interleaved, best of: a neighbour's burst hits one run, not the verdict
            for label, (tag, runner) in runs.items():
                out = work / f"{shape_name}-{tag}"
                shutil.rmtree(out, ignore_errors=True)
                try:
                    seconds = runner(job, out)[args.warmup :]
                except RuntimeError as exc:  # e.g. out of GPU memory: say so, go on with the other runs
                    print(f"{shape_name}: {label}: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
                    measured[label] = None
                    continue
                if not seconds:
                    raise SystemExit(f"--steps {steps} leaves no step after --warmup {args.warmup}")
                if measured[label] is not None:
                    measured[label] = max(measured[label] or 0.0, tokens_per_step / statistics.median(seconds))
        base = measured[BASELINE]
        fpt = flops_per_token(SHAPES[shape_name], vocab, seq_len)
        for label, tps in measured.items():
            if tps is None:
                print(f"{shape_name:<14}{seq_len:>6}{mb:>4}  {label:<42}{'failed':>11}")
                continue
            mfu = f"{100 * tps * fpt / (peak * 1e12):.1f}%" if on_gpu and peak else "-"
            ratio = f"{tps / base:>7.2f}x" if base else f"{'-':>8}"
            print(f"{shape_name:<14}{seq_len:>6}{mb:>4}  {label:<42}{tps:>11,.0f}{mfu:>8}{ratio}")
            results.append(
                {"shape": shape_name, "trainer": label, "tokens_per_s": tps, "vs_hf": tps / base if base else None}
            )
    (work / "results.json").write_text(json.dumps({"device": device, "steps": steps, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
