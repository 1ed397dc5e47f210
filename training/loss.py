"""Causal-LM losses normalised by the labelled tokens of the whole optimizer step.

**Normalisation.** A step's gradient must be the mean over every labelled token of the step, as
if its micro-batches and ranks were one batch. Averaging per-micro-batch means instead (what
``loss.mean()`` under gradient accumulation gives) overweights micro-batches with few labelled
tokens (a row that is mostly prompt, padding) and makes the result depend on ``micro_batch x
grad_accum x world`` rather than on the global batch. So each loss here is a *sum* over labelled
tokens divided by ``num_items``, which the trainer sets to the step's labelled tokens across all
micro-batches and ranks divided by ``grad_accum x world`` (DeepSpeed divides by the accumulation
steps in ``backward`` and averages gradients over ranks). A micro-batch without labelled tokens
gives 0 with zero gradients, never 0/0.

**Chunked cross-entropy.** The usual path materialises the logits of every token ([tokens x
vocab], upcast to fp32 for the loss): at sequence 2048, micro-batch 8 and SmolLM2's 49k
vocabulary that is 3.2 GB of fp32 plus its gradient, more than the rest of a 135M model's
activations. `ChunkedCausalLMLoss` runs the model with ``logits_to_keep=1`` (no full logits), a
forward hook keeps the decoder's last hidden state, and the loss is summed chunk by chunk through
the LM head under activation checkpointing, so at most one chunk's logits exist at a time, in the
forward and in the backward pass. Same value as `model_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from training.packing import IGNORE_INDEX


def _chunk_loss(
    hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), labels, reduction="sum")


def labelled_tokens(labels: Any) -> int:
    """Positions that carry a loss in ``labels`` [rows, seq] (NumPy or torch): labels shift by one."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def model_loss(engine: Any, inputs: dict[str, Any], num_items: torch.Tensor) -> torch.Tensor:
    """The model's own cross-entropy, summed over labelled tokens and divided by ``num_items``."""
    return engine(**inputs, num_items_in_batch=num_items).loss


def chunked_lm_loss(
    hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module, chunk_tokens: int, num_items: torch.Tensor
) -> torch.Tensor:
    """Next-token cross-entropy of ``hidden`` [batch, seq, d] against ``labels`` [batch, seq],
    summed and divided by ``num_items``."""
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1)
    keep = y != IGNORE_INDEX
    h, y = h[keep], y[keep]
    # Start from the (zero) loss of no tokens, so a micro-batch without labelled tokens still
    # has a graph through the decoder and the head: zero gradients, not missing ones.
    total = _chunk_loss(h[:0], y[:0], head.weight, head.bias)
    for lo in range(0, y.numel(), chunk_tokens):
        part = checkpoint(
            _chunk_loss,
            h[lo : lo + chunk_tokens],
            y[lo : lo + chunk_tokens],
            head.weight,
            head.bias,
            use_reentrant=False,
        )
        total = total + part
    return total / num_items


class ChunkedCausalLMLoss:
    """``loss = ChunkedCausalLMLoss(model, 4096)(engine, inputs, num_items)`` for an HF causal LM
    (peft-wrapped or not) run through ``engine`` (a DeepSpeed engine or the model itself)."""

    def __init__(self, model: Any, chunk_tokens: int):
        if chunk_tokens < 1:
            raise ValueError(f"loss_chunk_tokens must be >= 1, got {chunk_tokens}")
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.head = base.get_output_embeddings()
        self.chunk_tokens = chunk_tokens
        self._hidden: torch.Tensor | None = None
        base.get_decoder().register_forward_hook(self._keep)

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        self._hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def __call__(self, engine: Any, inputs: dict[str, Any], num_items: torch.Tensor) -> torch.Tensor:
        labels = inputs["labels"]
        engine(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=1)
        hidden, self._hidden = self._hidden, None
        assert hidden is not None, "the decoder's forward hook did not run"
        return chunked_lm_loss(hidden, labels, self.head, self.chunk_tokens, num_items)


LossFn = Callable[[Any, dict[str, Any], torch.Tensor], torch.Tensor]
"""``loss(engine, inputs, num_items)``: `model_loss` or a `ChunkedCausalLMLoss`."""

__all__ = ["ChunkedCausalLMLoss", "LossFn", "chunked_lm_loss", "labelled_tokens", "model_loss"]
