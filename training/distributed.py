"""Process-group plumbing for `training.run`: one process or many, under any launcher.

`torchrun --nproc_per_node N` and `deepspeed --num_gpus N` set RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT; a plain `python -m training.run` is rank 0 of 1 on a free local port
(so concurrent single-process runs on one machine never collide). CPU runs use gloo and
DeepSpeed's CPU accelerator, without its shared-memory communication op (only DeepSpeed
inference uses it, and building it took minutes per fresh environment; any op that is still
JIT-built goes into a per-environment `extensions_dir`); GPU runs NCCL, one device per local rank.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.packing import PackedRow
from training.stream import PackedStream


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: Any  # torch.device of this rank

    @property
    def main(self) -> bool:
        return self.rank == 0


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def extensions_dir() -> Path:
    """Where DeepSpeed's JIT-built C++ ops go: one directory per Python environment. torch's
    default (``~/.cache/torch_extensions``) is shared by every environment of a user, and an op
    built by another venv (other include paths) is rebuilt, minutes on a small CPU, each time
    the other environment runs; a per-environment directory builds once and is reused."""
    from common.models import cache_dir

    key = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return cache_dir() / "torch_extensions" / key


def init_distributed() -> Dist:
    """Join (or, alone, create) the process group; gloo on CPU, NCCL on GPU."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(extensions_dir()))
    import deepspeed

    if not torch.cuda.is_available():
        # DeepSpeed builds its shared-memory CPU op (minutes of C++ on a small CPU, once per
        # environment) when the process group starts, but only `inference_all_reduce` (DeepSpeed
        # inference's tensor parallelism) uses it; training all-reduces through gloo.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", _free_port())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    return Dist(torch.distributed.get_rank(), torch.distributed.get_world_size(), device)


def all_sum(values: Sequence[float], dist: Dist) -> list[float]:
    """Element-wise sum over ranks (a no-op copy on one rank)."""
    import torch

    t = torch.tensor(list(values), dtype=torch.float64, device=dist.device)
    if dist.world > 1:
        torch.distributed.all_reduce(t)
    return t.tolist()


def barrier(dist: Dist) -> None:
    import torch

    if dist.world > 1:
        torch.distributed.barrier()


def rank_rows(stream: PackedStream, dist: Dist, micro_batch: int, partial: bool = False) -> list[PackedRow] | None:
    """This rank's micro-batch of the next global group of ``world * micro_batch`` rows.

    Rank r takes rows [r * mb, (r + 1) * mb) of the group and skips the others without packing
    them, so ranks read disjoint rows and every rank's cursor ends at the same place. None when
    the stream cannot fill a whole group (the same answer on every rank); with ``partial`` (eval)
    a group with at least one row is returned as is, so this rank's slice may be short or empty,
    and None means the stream is exhausted.
    """
    before = stream.skip(dist.rank * micro_batch)
    rows = stream.take(micro_batch)
    after = stream.skip((dist.world - 1 - dist.rank) * micro_batch)
    group = before + len(rows) + after
    if group == dist.world * micro_batch or (partial and group > 0):
        return rows
    return None
