"""The model a training config asks for: a local HF directory or a random-init Llama, with LoRA
(peft) or for full fine-tuning, and the loss function the config picks for it."""

from __future__ import annotations

from typing import Any

from training.config import TrainConfig, TrainingError
from training.loss import ChunkedCausalLMLoss, LossFn, model_loss
from training.progress import status

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def build_model(cfg: TrainConfig, announce: bool = True) -> tuple[Any, Any]:
    """The model (peft-wrapped for LoRA) and tokenizer. Seeded, so a random init and the LoRA
    init are the same on every rank and in every fresh copy (the export rebuilds one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from common.models import ModelNotFoundError, resolve_model_path

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

        targets = cfg.lora.get("target_modules", LORA_TARGETS)
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


def loss_function(model: Any, cfg: TrainConfig) -> LossFn:
    """The model's own loss, or the chunked one; both divide a sum by ``num_items`` (`training.loss`)."""
    if cfg.loss_chunk_tokens:
        return ChunkedCausalLMLoss(model, cfg.loss_chunk_tokens)
    return model_loss
