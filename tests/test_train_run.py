"""`python -m training.run` end to end on CPU: DeepSpeed ZeRO-2 (gloo), a tiny random-init Llama."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, SAMPLE, run_cli
from transformers import AutoModelForCausalLM

from pipelines.config import BuildConfig, SourceSpec
from pipelines.runner import run_build
from pipelines.steps import Curriculum, ExactDedup, Normalize, Split

TINY = (
    "{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, "
    "num_key_value_heads: 2, max_position_embeddings: 256}"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train") / "data"
    cfg = BuildConfig(
        root=root,
        workers=1,
        sources=[SourceSpec(SAMPLE)],
        steps=[Normalize(), ExactDedup(), Split(validation_ratio=0.1), Curriculum(buckets=2)],
    )
    run_build(cfg, progress=False)
    return root


def test_tiny_llama_trains_under_zero2_and_exports(corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "-m",
        "training.run",
        "--config",
        "configs/train.yaml",
        "--set",
        f"root={corpus}",
        "--set",
        f"output_dir={out}",
        "--set",
        f"from_scratch={TINY}",
        "--set",
        "lora=null",
        "--set",
        "seq_len=128",
        "--set",
        "micro_batch=4",
        "--set",
        "grad_accum=2",
        "--set",
        "lr=3.0e-3",
        "--set",
        "warmup_steps=2",
        "--set",
        "max_steps=12",
        "--set",
        "eval_every=6",
        "--set",
        "eval_batches=2",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 13))
    assert sum(r["loss"] for r in train[-3:]) / 3 < sum(r["loss"] for r in train[:3]) / 3 - 0.5
    assert all(r["grad_norm"] is not None and r["tokens_per_s"] > 0 for r in train)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert {(r["step"], r["bucket"]) for r in evals} == {(6, "0"), (6, "1"), (12, "0"), (12, "1")}
    assert all(r["ppl"] > 1 for r in evals)
    assert (out / "training_report.html").exists() and list((out / "tensorboard").glob("events.*"))
    model = AutoModelForCausalLM.from_pretrained(out / "export")
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()


def test_clear_errors_before_any_training(corpus, tmp_path):
    bad_model = run_cli("-m", "training.run", "--set", f"root={corpus}", "--set", f"model={tmp_path}")
    assert bad_model.returncode == 1 and "not a Hugging Face model directory" in bad_model.stderr
    no_shards = run_cli("-m", "training.run", "--set", f"root={corpus}", "--set", "buckets=['7']")
    assert no_shards.returncode == 1 and "no final shards match" in no_shards.stderr
    too_long = run_cli(
        "-m", "training.run", "--set", f"root={corpus}", "--set", f"from_scratch={TINY}", "--set", "seq_len=4096"
    )
    assert too_long.returncode == 1 and "above the model's maximum of 256" in too_long.stderr
    unknown = run_cli("-m", "training.run", "--set", f"root={corpus}", "--set", "learning_rate=1")
    assert unknown.returncode == 1 and "unknown key(s) ['learning_rate']" in unknown.stderr


def _train_args(corpus: Path, out: Path) -> list[str]:
    sets = {
        "root": corpus,
        "output_dir": out,
        "from_scratch": TINY,
        "lora": "null",
        "seq_len": 128,
        "micro_batch": 2,
        "grad_accum": 2,
        "lr": "3.0e-3",
        "warmup_steps": 2,
        "max_steps": 10,
        "save_every": 4,
        "eval_every": 100,
        "eval_batches": 1,
    }
    return [
        "-m",
        "training.run",
        "--config",
        "configs/train.yaml",
        *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")],
    ]


def _losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]


def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(corpus, tmp_path):
    reference = run_cli(*_train_args(corpus, tmp_path / "ref"), timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, *_train_args(corpus, out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "checkpoints" / "latest").exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "export").exists()

    resumed = run_cli(*_train_args(corpus, out), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] >= 4
    got, want = _losses(out), _losses(tmp_path / "ref")
    assert [s for s, _ in got] == list(range(1, 11))
    assert [s for s, _ in got] == [s for s, _ in want]
    for (step, a), (_, b) in zip(got, want, strict=True):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), (step, a, b)
