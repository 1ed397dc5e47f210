"""Shared fixtures: the bundled sample corpus and helpers to build small corpora."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# One BLAS/OpenMP thread per process before torch is imported: the suite runs servers, workers and
# trainers beside the test process on 2 cores, and spinning OpenMP threads made a 135M scoring call
# 10x slower whenever another process was busy (13 s vs 1.4 s measured).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import duckdb  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "legal_sample.jsonl"


@pytest.fixture
def sample_jsonl() -> Path:
    return SAMPLE


def write_jsonl(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_config(path: Path, root: Path, sources: list[Path], steps: list, **extra) -> Path:
    import yaml

    cfg = {"root": str(root), "workers": 1, "sources": [str(s) for s in sources], "steps": steps, **extra}
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


# `--set from_scratch=...` for training runs: a two-layer Llama that trains in seconds on CPU
TINY = (
    "{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, "
    "num_key_value_heads: 2, max_position_embeddings: 256}"
)


def tiny_llama(vocab_size: int = 300, **overrides):
    """A seeded two-layer random-init Llama for model-level tests (loss, packing masks)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 64,
        **overrides,
    }
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, **shape))


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_torchrun(*args: str, nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc_per_node N <args>`` from this venv, one thread per process (2-core CI)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(torchrun), "--nproc_per_node", str(nproc), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def query(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "catalog.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llm_server() -> Iterator[str]:
    """The real `python -m training.serve` with the bundled SmolLM2 on 127.0.0.1 (one per session);
    yields its base URL without the ``/v1``."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.serve", "--port", str(port), "--max-batch", "4"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("server did not start in 180 s")
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def train_corpus(tmp_path_factory) -> Path:
    """A small built corpus (train/validation split, 2 curriculum buckets) for the training tests."""
    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps import Curriculum, ExactDedup, Normalize, Split

    root = tmp_path_factory.mktemp("train") / "data"
    cfg = BuildConfig(
        root=root,
        workers=1,
        sources=[SourceSpec(SAMPLE)],
        steps=[Normalize(), ExactDedup(), Split(validation_ratio=0.1), Curriculum(buckets=2)],
    )
    run_build(cfg, progress=False)
    return root
