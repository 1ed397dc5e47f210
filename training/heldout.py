"""Held-out loss per curriculum bucket: the validation split through the model being trained.

Each bucket is its own packed stream; up to ``eval_batches`` global groups of ``world x
micro_batch`` rows are evaluated, each rank on its own rows, and the token sums are all-reduced,
so the value is the token-weighted mean over everything evaluated. A bucket's last group may be
partial (a small validation bucket can hold fewer rows than one group): it is evaluated as is,
and a rank left without rows runs one padding row with no labels, so every rank makes the same
forward calls (ZeRO-3 gathers parameters collectively).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.batches import model_inputs, padding_row
from training.config import TrainConfig
from training.data import DocumentTokenizer, ShardRef
from training.distributed import Dist, all_sum, rank_rows
from training.loss import LossFn, labelled_tokens
from training.progress import bar, status
from training.stream import packed_stream


def heldout_loss(
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
    """{bucket: mean loss per labelled token} over the validation shards ``refs``."""
    import torch

    out: dict[str, float] = {}
    buckets = list(dict.fromkeys(r.bucket for r in refs))
    engine.eval()
    with bar(len(buckets) * cfg.eval_batches, label, "batch", leave=False) as progress:
        for bucket in buckets:
            stream = packed_stream([r for r in refs if r.bucket == bucket], doc_tok, cache, cfg.seq_len)
            total = count = 0.0
            for _ in range(cfg.eval_batches):
                rows = rank_rows(stream, dist, cfg.micro_batch, partial=True)
                progress.update(1)
                if rows is None:
                    break
                inputs = model_inputs(
                    rows or [padding_row(cfg.seq_len, stream.pad_id)], dtype, dist.device, cfg.packed_attention
                )
                with torch.no_grad():  # the sum over this batch's labelled tokens
                    total += float(loss_of(engine, inputs, torch.ones((), device=dist.device)))
                count += labelled_tokens(inputs["labels"])
            total, count = all_sum([total, count], dist)
            if count:
                out[bucket] = total / count
            else:
                status(f"{label}: bucket {bucket!r} has no labelled validation tokens; not evaluated")
    engine.train()
    return out
