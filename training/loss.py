"""Causal-LM loss computed from the final hidden states in chunks of tokens.

The usual path materialises the logits of every token ([tokens x vocab], upcast to fp32 for the
loss): at sequence 2048, micro-batch 8 and SmolLM2's 49k vocabulary that is 3.2 GB of fp32 plus
its gradient, more than the rest of a 135M model's activations. Here the model runs with
``logits_to_keep=1`` (no full logits), a forward hook keeps the decoder's last hidden state, and
the loss is summed chunk by chunk through the LM head under activation checkpointing, so at most
one chunk's logits exist at a time, in the forward and in the backward pass. Same value as the
HF loss (mean over labelled tokens, labels shifted by one, ``IGNORE_INDEX`` skipped), and 0 for a
micro-batch with no labelled tokens (an instruction row that is all prompt) instead of 0/0.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from training.packing import IGNORE_INDEX


def _chunk_loss(
    hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), labels, reduction="sum")


def chunked_lm_loss(
    hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module, chunk_tokens: int
) -> torch.Tensor:
    """Mean next-token cross-entropy of ``hidden`` [batch, seq, d] against ``labels`` [batch, seq]."""
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
    return total / max(y.numel(), 1)


class ChunkedCausalLMLoss:
    """``loss = ChunkedCausalLMLoss(model, 4096)(engine, inputs)`` for an HF causal LM (peft-wrapped
    or not) run through ``engine`` (a DeepSpeed engine or the model itself)."""

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

    def __call__(self, engine: Any, inputs: dict[str, Any]) -> torch.Tensor:
        labels = inputs["labels"]
        engine(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=1)
        hidden, self._hidden = self._hidden, None
        assert hidden is not None, "the decoder's forward hook did not run"
        return chunked_lm_loss(hidden, labels, self.head, self.chunk_tokens)


__all__ = ["ChunkedCausalLMLoss", "chunked_lm_loss"]
