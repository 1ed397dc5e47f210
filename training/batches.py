"""Packed rows -> model inputs on the device, and the divisor that makes a step's loss a token mean."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.distributed import Dist, all_sum
from training.loss import labelled_tokens
from training.packing import IGNORE_INDEX, PackedRow


def model_inputs(batch: list[PackedRow], dtype: Any, device: Any, packed_attention: str = "mask") -> dict[str, Any]:
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


def padding_row(seq_len: int, pad_id: int) -> PackedRow:
    """A row of padding with no labels: a forward call that adds nothing to any sum."""
    return PackedRow(
        np.full(seq_len, pad_id, dtype=np.int64),
        np.full(seq_len, IGNORE_INDEX, dtype=np.int64),
        np.arange(seq_len, dtype=np.int64),
        [seq_len],
    )


def step_divisor(batches: list[list[PackedRow]], dist: Dist, device: Any) -> Any:
    """``num_items`` for every micro-batch of one optimizer step: the step's labelled tokens on all
    ranks (at least 1) / (micro-batches x ranks), so that after DeepSpeed's 1/accumulation scaling
    and averaging over ranks the gradient is the mean over all of the step's labelled tokens."""
    import torch

    local = sum(labelled_tokens(np.stack([r.labels for r in batch])) for batch in batches)
    (total,) = all_sum([float(local)], dist)
    return torch.tensor(max(total, 1.0) / (len(batches) * dist.world), dtype=torch.float32, device=device)
