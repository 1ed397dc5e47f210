"""`python -m training.run --config configs/train.yaml [--set key=value ...]`: train on the corpus.

Reads final shards selected in the catalog (`training.data`), packs them with document
boundaries kept (`training.packing`), and trains with a DeepSpeed engine (ZeRO stage from the
config; gloo + fp32 on CPU, NCCL + bf16 on GPU), LoRA via peft or full fine-tuning, warmup +
cosine schedule, clipping and gradient accumulation. Writes `metrics.jsonl`, TensorBoard logs,
checkpoints, an HTML training report and an exported Hugging Face model directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from corpus.store import CorruptShardError, write_bytes
from training.config import TrainConfig, TrainingError
from training.curriculum import Curriculum, CurriculumError, open_curriculum
from training.data import DocumentTokenizer, NoShardsError, ShardRef, select_shards, tokenized_shard
from training.distributed import Dist, all_sum, barrier, init_distributed, rank_rows
from training.export import export_trained, full_state_dict
from training.loss import ChunkedCausalLMLoss, LossFn, labelled_tokens, model_loss
from training.packing import IGNORE_INDEX, PackedRow
from training.stream import Cursor, PackedStream, shard_loader


def status(message: str) -> None:
    """One progress line on stderr from the main process (through tqdm, so an open bar stays intact):
    the slow phases (model conversion and loading, DeepSpeed's set-up, eval, export) say what they
    are doing instead of leaving the terminal silent."""
    if os.environ.get("RANK", "0") == "0":
        tqdm.write(message, file=sys.stderr)


def _tensors(batch: list[PackedRow], dtype: Any, device: Any, packed_attention: str = "mask") -> dict[str, Any]:
    """Model inputs on ``device``. ``mask``: the 4D additive block-causal mask (the same mask as
    `PackedRow.attention_mask`) is built there from per-token segment ids (a [mb, seq, seq] mask is
    too large to build with NumPy and copy for every micro-batch at seq 2048). ``position_ids``: no
    mask; transformers finds the documents from the position ids restarting at 0 and builds the
    block mask its attention implementation needs (varlen for flash attention, a block-sparse
    BlockMask for flex attention)."""
    import torch

    host = {
        "input_ids": np.stack([r.input_ids for r in batch]),
        "labels": np.stack([r.labels for r in batch]),
        "position_ids": np.stack([r.position_ids for r in batch]),
    }
    if packed_attention == "mask":
        host["segments"] = np.stack([np.repeat(np.arange(len(r.segment_lengths)), r.segment_lengths) for r in batch])
    t: dict[str, Any] = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in host.items()}
    t["use_cache"] = False  # a cache would also switch off the packed-sequence detection
    if packed_attention == "position_ids":
        return t
    seg = t.pop("segments")
    seq = seg.shape[1]
    allowed = torch.ones(seq, seq, dtype=torch.bool, device=device).tril() & (seg[:, :, None] == seg[:, None, :])
    additive = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    return {**t, "attention_mask": additive[:, None]}


def loss_function(model: Any, cfg: TrainConfig) -> LossFn:
    """The model's own loss, or the chunked one; both divide a sum by ``num_items`` (`training.loss`)."""
    if cfg.loss_chunk_tokens:
        return ChunkedCausalLMLoss(model, cfg.loss_chunk_tokens)
    return model_loss


def step_divisor(batches: list[list[PackedRow]], dist: Dist, device: Any) -> Any:
    """``num_items`` for every micro-batch of one optimizer step: the step's labelled tokens on all
    ranks (at least 1) / (micro-batches x ranks), so that after DeepSpeed's 1/accumulation scaling
    and averaging over ranks the gradient is the mean over all of the step's labelled tokens."""
    import torch

    local = sum(labelled_tokens(np.stack([r.labels for r in batch])) for batch in batches)
    (total,) = all_sum([float(local)], dist)
    return torch.tensor(max(total, 1.0) / (len(batches) * dist.world), dtype=torch.float32, device=device)


def selection_digest(refs: list[ShardRef]) -> str:
    """Identity of the ordered shard selection a data cursor indexes into."""
    return hashlib.sha256("\n".join(r.checksum for r in refs).encode()).hexdigest()[:16]


def build_model(cfg: TrainConfig, announce: bool = True) -> tuple[Any, Any]:
    """The model (peft-wrapped for LoRA) and tokenizer. Seeded, so a random init and the LoRA
    init are the same on every rank and in every fresh copy (the export rebuilds one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from training.base_model import ModelNotFoundError, resolve_model_path

    try:
        base = resolve_model_path(None if cfg.model == "default" else cfg.model)
    except ModelNotFoundError as exc:
        raise TrainingError(str(exc)) from None
    if announce:
        status(f"model: {'random init Llama ' + str(cfg.from_scratch) if cfg.from_scratch is not None else base}")
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(cfg.seed)
    attn = cfg.attn_implementation
    try:
        if cfg.from_scratch is not None:
            config = LlamaConfig(vocab_size=len(tokenizer), attn_implementation=attn, **cfg.from_scratch)
            model = LlamaForCausalLM(config)
        else:
            model = AutoModelForCausalLM.from_pretrained(base, torch_dtype="float32", attn_implementation=attn)
    except (ImportError, ValueError) as exc:  # an unknown attention or one whose kernel package is missing
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"{base}: cannot build the model with attn_implementation={attn!r}: {reason}") from None
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
        kind = f"LoRA r={cfg.lora.get('r', 8)} on {targets}"
    else:
        kind = "full fine-tuning"
    if announce:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        status(f"model: {total / 1e6:,.1f}M parameters, {kind}: {trainable / 1e6:,.2f}M trainable")
    return model, tokenizer


def curriculum(
    cfg: TrainConfig,
    refs: list[ShardRef],
    doc_tok: DocumentTokenizer,
    cache: Path,
    dist: Dist,
    state: dict[str, Any] | None,
) -> Curriculum:
    """The row order of this run (`training.curriculum`), at the checkpoint's position if any."""

    def open_stream(shards: list[ShardRef], cursor: Cursor | None) -> PackedStream:
        return _stream(shards, doc_tok, cache, cfg, cursor)

    rows_per_step = dist.world * cfg.micro_batch * cfg.grad_accum
    try:
        return open_curriculum(cfg.mixture, refs, open_stream, rows_per_step, cfg.seed, state)
    except CurriculumError as exc:
        raise TrainingError(f"{cfg.root}: {exc}") from None


def _stream(
    refs: list[ShardRef], doc_tok: DocumentTokenizer, cache: Path, cfg: TrainConfig, cursor: Cursor | None = None
) -> PackedStream:
    return PackedStream(
        len(refs), shard_loader(refs, doc_tok, cache), cfg.seq_len, doc_tok.tokenizer.eos_token_id, cursor
    )


def tokenize_up_front(refs: list[ShardRef], doc_tok: DocumentTokenizer, cache: Path, dist: Dist) -> None:
    """Fill the token cache before training, shards split across ranks, so no rank tokenises a
    shard another rank also tokenises and no rank waits on tokenisation mid-step."""
    mine = [ref for k, ref in enumerate(refs) if k % dist.world == dist.rank]
    for ref in tqdm(mine, desc="tokenize", unit="shard", disable=not dist.main):
        tokenized_shard(ref, doc_tok, cache)
    barrier(dist)


def _announce_data(refs: list[ShardRef], eval_refs: list[ShardRef], cfg: TrainConfig) -> None:
    """What the run reads, and every train bucket that has no validation shard (so it is never
    left out of the eval silently)."""
    train_buckets = list(dict.fromkeys(r.bucket for r in refs))
    status(
        f"data: {len(refs)} train shard(s), {sum(r.rows for r in refs):,} documents, buckets {train_buckets}; "
        f"{len(eval_refs)} validation shard(s), {sum(r.rows for r in eval_refs):,} documents"
    )
    if cfg.eval_batches == 0:
        return
    missing = [b for b in train_buckets if b not in {r.bucket for r in eval_refs}]
    if missing:
        status(f"eval: bucket(s) {missing} have no validation shards in {cfg.root}; they are not evaluated")


def evaluate(
    engine: Any,
    loss_of: LossFn,
    cfg: TrainConfig,
    refs: list[ShardRef],
    doc_tok: DocumentTokenizer,
    cache: Path,
    dtype: Any,
    dist: Dist,
    label: str = "eval",
) -> dict[str, float]:
    """Validation loss per bucket: token-weighted mean over up to ``eval_batches`` global groups,
    each rank on its own rows, summed over ranks. The last group of a bucket may be partial (a
    small bucket can hold fewer rows than one ``world x micro_batch`` group): it is evaluated as
    is, and a rank left without rows runs one padding row with no labels, so every rank makes the
    same forward calls (ZeRO-3 gathers parameters collectively)."""
    import torch

    out: dict[str, float] = {}
    buckets = list(dict.fromkeys(r.bucket for r in refs))
    engine.eval()
    bar = tqdm(total=len(buckets) * cfg.eval_batches, desc=label, unit="batch", leave=False, disable=not dist.main)
    with bar:
        for bucket in buckets:
            stream = _stream([r for r in refs if r.bucket == bucket], doc_tok, cache, cfg)
            total = count = 0.0
            for _ in range(cfg.eval_batches):
                rows = rank_rows(stream, dist, cfg.micro_batch, partial=True)
                bar.update(1)
                if rows is None:
                    break
                batch = rows or [padding_row(cfg.seq_len, stream.pad_id)]
                tensors = _tensors(batch, dtype, dist.device, cfg.packed_attention)
                n = labelled_tokens(tensors["labels"])
                with torch.no_grad():  # the sum over this batch's labelled tokens
                    total += float(loss_of(engine, tensors, torch.ones((), device=dist.device)))
                count += n
            total, count = all_sum([total, count], dist)
            if count:
                out[bucket] = total / count
            else:
                status(f"{label}: bucket {bucket!r} has no labelled validation tokens; not evaluated")
    engine.train()
    return out


def padding_row(seq_len: int, pad_id: int) -> PackedRow:
    """A row of padding with no labels: a forward call that adds nothing to any sum."""
    return PackedRow(
        np.full(seq_len, pad_id, dtype=np.int64),
        np.full(seq_len, IGNORE_INDEX, dtype=np.int64),
        np.arange(seq_len, dtype=np.int64),
        [seq_len],
    )


def train(cfg: TrainConfig) -> dict[str, Any]:
    import deepspeed
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from training.report import write_training_report

    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        refs = select_shards(Path(cfg.root), split="train", buckets=cfg.buckets, sources=cfg.sources)
    except NoShardsError as exc:
        raise TrainingError(str(exc)) from None
    try:
        eval_refs = select_shards(Path(cfg.root), split="validation", buckets=cfg.buckets, sources=cfg.sources)
    except NoShardsError:
        eval_refs = []
    _announce_data(refs, eval_refs, cfg)
    model, tokenizer = build_model(cfg)  # identical on every rank: seeded random init / same weights
    status("engine: starting the process group (the first run on a machine builds DeepSpeed's C++ ops, ~1 min)")
    dist = init_distributed()
    torch.manual_seed(cfg.seed + dist.rank)  # per-rank dropout streams from here on
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu else torch.float32
    doc_tok = DocumentTokenizer(tokenizer)
    cache = Path(cfg.root) / "state" / "tokens"
    try:
        tokenize_up_front(refs + eval_refs, doc_tok, cache, dist)
    except CorruptShardError as exc:
        raise TrainingError(str(exc)) from None

    params = [p for p in model.parameters() if p.requires_grad]
    fused = cfg.fused_adamw if cfg.fused_adamw is not None else on_gpu
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, **({"fused": True} if fused else {})
    )
    loss_of = loss_function(model, cfg)
    if cfg.compile and cfg.zero_stage < 3:
        model.compile()  # in place: parameter names (checkpoints, export) stay the same

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # the export gathers the partitions
    ds_config = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.clip,
        "zero_optimization": zero,
        "bf16": {"enabled": on_gpu},
        "steps_per_print": 10**9,
    }
    precision = "bf16 on GPU" if on_gpu else "fp32 on CPU"
    status(f"engine: DeepSpeed ZeRO-{cfg.zero_stage}, {dist.world} process(es), {precision}")
    t_engine = time.perf_counter()
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    status(f"engine: ready in {time.perf_counter() - t_engine:.1f} s")
    if cfg.compile and cfg.zero_stage == 3:
        engine.compile()  # ZeRO-3's gather hooks must run inside the compiled module
    ckpt_dir = out_dir / "checkpoints"
    digest = selection_digest(refs)
    start_step, data_state = 0, None
    if cfg.resume and (ckpt_dir / "latest").exists():
        start_step, data_state = _resume(engine, ckpt_dir, digest, dist, trainable_only=bool(cfg.lora))
        status(f"resume: from {ckpt_dir / f'step{start_step}'} (step {start_step} of {cfg.max_steps})")
    order = curriculum(cfg, refs, doc_tok, cache, dist, data_state)
    if dist.main:  # a fresh start (or a resume) drops rows logged after its starting step
        _truncate_metrics(out_dir / "metrics.jsonl", start_step)
    # only rank 0 writes metrics, TensorBoard, the report and the export
    metrics = open(out_dir / "metrics.jsonl", "a", encoding="utf-8") if dist.main else None
    writer = SummaryWriter(str(out_dir / "tensorboard")) if dist.main else None

    def log(row: dict[str, Any], scalars: dict[str, float]) -> None:
        if metrics is None or writer is None:
            return
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        for name, value in scalars.items():
            writer.add_scalar(name, value, row["step"])

    def next_group() -> tuple[list[PackedRow], tuple[ShardRef, Cursor]]:
        try:
            return order.next_group(dist, cfg.micro_batch)
        except CurriculumError as exc:
            raise TrainingError(f"{cfg.root}: {exc}") from None

    evals: dict[int, dict[str, float]] = {}

    def run_eval(at_step: int) -> None:
        found = evaluate(engine, loss_of, cfg, eval_refs, doc_tok, cache, dtype, dist, label=f"eval@{at_step}")
        if found:
            ppls = ", ".join(f"bucket {b} ppl {math.exp(v):.2f}" for b, v in found.items())
            status(f"eval at step {at_step}: {ppls}")
        for bucket, eval_loss in found.items():
            ppl = math.exp(eval_loss)
            evals.setdefault(at_step, {})[bucket] = ppl
            log(
                {"kind": "eval", "step": at_step, "bucket": bucket, "loss": eval_loss, "ppl": ppl},
                {f"eval/ppl_bucket_{bucket}": ppl},
            )

    if eval_refs and cfg.eval_at_start and start_step == 0:
        run_eval(0)
    started, losses = time.perf_counter(), []
    bar = tqdm(total=cfg.max_steps, initial=start_step, desc="train", unit="step", disable=not dist.main)
    with bar:  # closed before an error is printed, so the error stays the last line
        for step in range(start_step, cfg.max_steps):
            t0, step_loss, tokens = time.perf_counter(), 0.0, 0
            lr = scheduler.get_last_lr()[0]  # this step's: the scheduler moves on at the step's end
            drawn_before = order.rows_by_bucket()
            batches, starts = [], []  # the whole step's rows first: the loss divides by all their labels
            for _ in range(cfg.grad_accum):
                batch, start = next_group()
                batches.append(batch)
                starts.append(start)
            num_items = step_divisor(batches, dist, dist.device)
            for micro, (batch, (shard, at)) in enumerate(zip(batches, starts, strict=True)):
                loss = loss_of(engine, _tensors(batch, dtype, dist.device, cfg.packed_attention), num_items)
                mean_loss = all_sum([float(loss.detach())], dist)[0] / dist.world  # the same verdict on every rank
                if not math.isfinite(mean_loss):
                    raise _nonfinite(engine, ckpt_dir, mean_loss, step + 1, micro, shard, at)
                engine.backward(loss)
                engine.step()
                step_loss += mean_loss / cfg.grad_accum
                tokens += sum(r.input_ids.size for r in batch) * dist.world
            seconds = time.perf_counter() - t0
            grad_norm = engine.get_global_grad_norm()
            row = {
                "kind": "train",
                "step": step + 1,
                "loss": step_loss,
                "lr": lr,
                "grad_norm": float(grad_norm) if grad_norm is not None else None,
                "tokens_per_s": tokens / seconds,
            }
            if drawn_before is not None:  # rows per bucket in this step's global batch: the mixture as run
                row["rows"] = {b: n - drawn_before[b] for b, n in (order.rows_by_bucket() or {}).items()}
            log(row, {f"train/{k}": row[k] for k in ("loss", "lr", "grad_norm", "tokens_per_s") if row[k] is not None})
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{row['lr']:.2e}", tok_s=f"{row['tokens_per_s']:,.0f}")
            bar.update(1)
            losses.append(step_loss)
            if eval_refs and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps):
                run_eval(step + 1)
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.max_steps:  # the last step always
                state = {"step": step + 1, "selection": digest, "curriculum": order.state()}
                _save(engine, ckpt_dir, f"step{step + 1}", state, dist, trainable_only=bool(cfg.lora))
    if metrics is not None and writer is not None:
        metrics.close()
        writer.close()
    if cfg.export:
        status("export: gathering the trained weights")
    state = full_state_dict(engine, dist.rank) if cfg.export else None  # collective under ZeRO-3
    summary: dict[str, Any] = {
        "steps": cfg.max_steps,
        "world_size": dist.world,
        "resumed_from_step": start_step,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "seconds": time.perf_counter() - started,
        "eval_ppl_start": evals.get(0),  # per bucket, before training (fresh runs)
        "eval_ppl_end": evals.get(cfg.max_steps),
    }
    if dist.main and cfg.export:
        assert state is not None
        fresh, _ = build_model(cfg, announce=False)
        probe = _stream(refs, doc_tok, cache, cfg).take(1)[0].input_ids[:64].tolist()
        merging = "saving the adapter, merging LoRA, " if cfg.lora else ""
        status(f"export: {merging}saving and verifying {out_dir / 'export'}")
        try:
            summary.update(export_trained(fresh, state, tokenizer, out_dir, probe))
        except RuntimeError as exc:
            raise TrainingError(str(exc)) from None
        status(f"export: reloaded logits match the trained model's within {summary['export_max_abs_logit_diff']:.2g}")
    if dist.main:
        summary["report"] = str(write_training_report(out_dir))
        status(f"report: {summary['report']}")
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    barrier(dist)
    return summary


def _save(
    engine: Any, ckpt_dir: Path, tag: str, client_state: dict[str, Any], dist: Dist, trainable_only: bool
) -> None:
    """Collective DeepSpeed checkpoint; each rank's RNG goes in first, so `latest` (written last)
    never points at a checkpoint with a missing RNG file. ``trainable_only`` (LoRA): the frozen
    base weights are left out (they are rebuilt from the base model, seeded, on resume), so a
    checkpoint is the adapter and its optimizer state, not another copy of the model."""
    import torch

    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    torch.save(torch.get_rng_state(), ckpt_dir / tag / f"rng_rank{dist.rank}.pt")
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, exclude_frozen_parameters=trainable_only)


def _nonfinite(
    engine: Any, ckpt_dir: Path, loss: float, step: int, micro: int, shard: ShardRef, at: Cursor
) -> TrainingError:
    """Keep the state that produced a non-finite loss for inspection (not as `latest`, so a rerun
    resumes from the last good checkpoint) and name the step and the batch's first row."""
    tag = f"nonfinite-step{step}"
    engine.save_checkpoint(str(ckpt_dir), tag=tag, save_latest=False, exclude_frozen_parameters=True)
    latest = ckpt_dir / "latest"
    good = f"resume starts from {latest.read_text().strip()}" if latest.exists() else "no earlier checkpoint"
    return TrainingError(
        f"loss is {loss} at step {step}, micro-batch {micro} (its rows start in {shard.path}, document {at.doc}, "
        f"token {at.offset}); checkpoint {ckpt_dir / tag} kept for inspection, {good}"
    )


def _resume(engine: Any, ckpt_dir: Path, digest: str, dist: Dist, trainable_only: bool) -> tuple[int, dict[str, Any]]:
    """Load the latest checkpoint; returns (step, the curriculum's state: its data cursors). The
    cursors are global (the same on every rank), so streams seek straight to them: nothing is
    replayed. ``trainable_only``: the checkpoint holds the trainable parameters (LoRA); each of
    them must be in it, the frozen ones keep the weights the model was built with."""
    import torch

    tag = (ckpt_dir / "latest").read_text().strip()
    saved_by = len(list((ckpt_dir / tag).glob("rng_rank*.pt")))
    if saved_by and saved_by != dist.world:
        raise TrainingError(
            f"{ckpt_dir / tag}: saved by {saved_by} process(es), resumed with {dist.world}; ZeRO partitions are "
            f"per rank: launch {saved_by} processes (or use a new output_dir)"
        )

    def load_trainable(src: dict[str, Any], dst: Any) -> None:
        missing, unexpected = dst.load_state_dict(src, strict=False)
        lost = sorted({n for n, p in dst.named_parameters() if p.requires_grad} & set(missing))
        if lost or unexpected:
            raise TrainingError(
                f"{ckpt_dir / tag}: the checkpoint does not fit this model: trainable parameters missing "
                f"{lost[:3]}, unexpected {unexpected[:3]} (the LoRA settings changed?); use a new output_dir"
            )

    path, client = engine.load_checkpoint(str(ckpt_dir), custom_load_fn=load_trainable if trainable_only else None)
    if path is None or "curriculum" not in client:
        raise TrainingError(f"{ckpt_dir}: the latest checkpoint could not be loaded or has no data cursor")
    if client["selection"] != digest:
        raise TrainingError(
            f"{path}: the checkpoint's data cursor indexes a different shard selection than this run's "
            "(the corpus or the buckets/sources filters changed); use a new output_dir or --set resume=false"
        )
    rng = Path(path) / f"rng_rank{dist.rank}.pt"
    if rng.exists():
        torch.set_rng_state(torch.load(rng))
    return client["step"], client["curriculum"]


def _truncate_metrics(path: Path, step: int) -> None:
    """Rows a killed run logged after its last checkpoint are logged again on resume, and a fresh
    run in an old output_dir logs from step 1: drop them."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_bytes("".join(line + "\n" for line in keep).encode(), path)


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
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({"config": asdict(cfg), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
