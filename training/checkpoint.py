"""Training checkpoints: a collective DeepSpeed save with each rank's RNG and the data cursor, and
the resume that continues a killed run exactly.

A checkpoint ``checkpoints/step<N>`` holds the engine's model, optimizer and scheduler state,
``rng_rank<r>.pt`` for every rank (written before DeepSpeed writes ``latest``, so ``latest``
never points at a checkpoint missing one) and, as client state, the step, a digest of the shard
selection the data cursor indexes and the curriculum's state. With LoRA only the trainable
parameters are saved: the frozen base is rebuilt from the base model (seeded) on resume.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from training.config import TrainingError
from training.data import ShardRef
from training.distributed import Dist
from training.stream import Cursor


def selection_digest(refs: list[ShardRef]) -> str:
    """Identity of the ordered shard selection a data cursor indexes into."""
    return hashlib.sha256("\n".join(r.checksum for r in refs).encode()).hexdigest()[:16]


def save(engine: Any, ckpt_dir: Path, tag: str, client_state: dict[str, Any], dist: Dist, trainable_only: bool) -> None:
    """Collective DeepSpeed checkpoint; each rank's RNG goes in first. ``trainable_only`` (LoRA):
    the frozen base weights are left out, so a checkpoint is the adapter and its optimizer state,
    not another copy of the model."""
    import torch

    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    torch.save(torch.get_rng_state(), ckpt_dir / tag / f"rng_rank{dist.rank}.pt")
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client_state, exclude_frozen_parameters=trainable_only)


def keep_nonfinite(
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


def resume(engine: Any, ckpt_dir: Path, digest: str, dist: Dist, trainable_only: bool) -> tuple[int, dict[str, Any]]:
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
