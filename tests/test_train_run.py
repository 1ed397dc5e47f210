"""`python -m training.run` end to end on CPU: DeepSpeed ZeRO-2 (gloo), a tiny random-init Llama."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, run_cli, run_torchrun
from transformers import AutoModelForCausalLM


def test_tiny_llama_trains_under_zero2_and_exports(train_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "-m",
        "training.run",
        "--config",
        "configs/train.yaml",
        "--set",
        f"root={train_corpus}",
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
    # the lr each step trained with (warmup 2 then cosine to 0 at step 13), not the next step's
    want = [3e-3 * (s / 2 if s <= 2 else 0.5 * (1 + math.cos(math.pi * (s - 3) / 10))) for s in range(1, 13)]
    assert [r["lr"] for r in train] == pytest.approx(want, rel=1e-6)
    # no silent phase: what is loaded, set up, evaluated and exported is said as it happens, in order
    said = [
        line.split(":")[0]
        for line in result.stderr.splitlines()
        if re.match(r"^(data|model|engine|eval at step \d+|export|report):", line)
    ]
    assert list(dict.fromkeys(said)) == [
        "data",
        "model",
        "engine",
        "eval at step 0",
        "eval at step 6",
        "eval at step 12",
        "export",
        "report",
    ], result.stderr[-3000:]
    assert (out / "checkpoints" / "step12").is_dir()  # save_every 50: the last step is saved anyway
    assert sum(r["loss"] for r in train[-3:]) / 3 < sum(r["loss"] for r in train[:3]) / 3 - 0.5
    assert all(r["grad_norm"] is not None and r["tokens_per_s"] > 0 for r in train)
    evals = [r for r in rows if r["kind"] == "eval"]
    assert {(r["step"], r["bucket"]) for r in evals} == {(s, b) for s in (0, 6, 12) for b in ("0", "1")}
    assert all(r["ppl"] > 1 for r in evals)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["eval_ppl_start"]) == {"0", "1"}
    assert all(summary["eval_ppl_end"][b] < summary["eval_ppl_start"][b] for b in ("0", "1"))  # it learned
    assert (out / "training_report.html").exists() and list((out / "tensorboard").glob("events.*"))
    model = AutoModelForCausalLM.from_pretrained(out / "export")
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()


def test_clear_errors_before_any_training(train_corpus, tmp_path):
    bad_model = run_cli("-m", "training.run", "--set", f"root={train_corpus}", "--set", f"model={tmp_path}")
    assert bad_model.returncode == 1 and "not a Hugging Face model directory" in bad_model.stderr
    no_shards = run_cli("-m", "training.run", "--set", f"root={train_corpus}", "--set", "buckets=['7']")
    assert no_shards.returncode == 1 and "no final shards match" in no_shards.stderr
    too_long = run_cli(
        "-m", "training.run", "--set", f"root={train_corpus}", "--set", f"from_scratch={TINY}", "--set", "seq_len=4096"
    )
    assert too_long.returncode == 1 and "above the model's maximum of 256" in too_long.stderr
    unknown = run_cli("-m", "training.run", "--set", f"root={train_corpus}", "--set", "learning_rate=1")
    assert unknown.returncode == 1 and "unknown key(s) ['learning_rate']" in unknown.stderr
    not_a_number = run_cli("-m", "training.run", "--set", f"root={train_corpus}", "--set", "lr=fast")
    assert not_a_number.returncode == 1 and "lr='fast' is not a float" in not_a_number.stderr
    zero3_chunked = run_cli("-m", "training.run", "--set", "zero_stage=3", "--set", "loss_chunk_tokens=1024")
    assert zero3_chunked.returncode == 1 and "loss_chunk_tokens needs zero_stage <= 2" in zero3_chunked.stderr
    bad_mode = run_cli("-m", "training.run", "--set", "packed_attention=varlen")
    expected = """packed_attention="varlen" is not allowed; expected one of 'mask', 'position_ids'"""
    assert bad_mode.returncode == 1 and expected in bad_mode.stderr
    no_kernel = run_cli(
        "-m", "training.run", "--set", f"root={train_corpus}", "--set", f"from_scratch={TINY}", "--set", "seq_len=128",
        "--set", "attn_implementation=flash_attention_2",
    )  # fmt: skip
    assert no_kernel.returncode == 1, no_kernel.stderr
    assert "cannot build the model with attn_implementation='flash_attention_2'" in no_kernel.stderr
    assert "Traceback" not in no_kernel.stderr


def _train_args(train_corpus: Path, out: Path, **changes) -> list[str]:
    sets = {
        "root": train_corpus,
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
        **changes,
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


def _assert_same_losses(got: list[tuple[int, float]], want: list[tuple[int, float]], rel: float) -> None:
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, 11))
    for (step, a), (_, b) in zip(got, want, strict=True):
        assert abs(a - b) <= rel * max(1.0, abs(b)), (step, a, b)


@pytest.fixture(scope="module")
def reference(train_corpus, tmp_path_factory) -> Path:
    """One uninterrupted single-process run that the resumed and the 2-process runs must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = run_cli(*_train_args(train_corpus, out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_sigkill_and_resume_reproduce_the_uninterrupted_losses(train_corpus, reference, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, *_train_args(train_corpus, out)],
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

    resumed = run_cli(*_train_args(train_corpus, out), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] >= 4
    _assert_same_losses(_losses(out), _losses(reference), rel=1e-4)


def test_speed_options_train_exactly_like_the_reference_path(train_corpus, reference, tmp_path):
    """The GPU-minded options together (packing by position ids instead of our 4D mask, chunked
    cross-entropy, fused AdamW, torch.compile before DeepSpeed wraps the model) log the same
    per-step train and eval losses as the default path, and the run still checkpoints and exports."""
    out = tmp_path / "fast"
    options = {"packed_attention": "position_ids", "loss_chunk_tokens": 100, "fused_adamw": "true", "compile": "true"}
    result = run_cli(*_train_args(train_corpus, out, **options), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same_losses(_losses(out), _losses(reference), rel=1e-5)

    def evals(run: Path) -> list[tuple[int, str, float]]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["bucket"], r["loss"]) for r in rows if r["kind"] == "eval"]

    assert [e[:2] for e in evals(out)] == [e[:2] for e in evals(reference)]
    assert all(abs(a[2] - b[2]) <= 1e-5 * b[2] for a, b in zip(evals(out), evals(reference), strict=True))
    assert (out / "checkpoints" / "step8").is_dir() and (out / "export" / "model.safetensors").exists()


def test_two_processes_under_torchrun_split_the_rows_and_checkpoint_together(train_corpus, reference, tmp_path):
    """2 ranks x 1 micro-batch of 2 rows see exactly the rows 1 rank x 2 accumulated micro-batches
    sees (rank r takes rows [2r, 2r + 2) of each group of 4), so the per-step losses must match the
    single-process reference: disjoint, complete rank sharding, averaged over ranks."""
    out = tmp_path / "ddp"
    result = run_torchrun(*_train_args(train_corpus, out, grad_accum=1))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    got = _losses(out)
    assert all(math.isfinite(loss) for _, loss in got)
    assert sum(loss for _, loss in got[-3:]) / 3 < sum(loss for _, loss in got[:3]) / 3 - 0.5
    _assert_same_losses(got, _losses(reference), rel=1e-3)
    for tag in ("step4", "step8"):  # collective checkpoints: both ranks' optimizer partitions and RNG
        names = {p.name for p in (out / "checkpoints" / tag).iterdir()}
        assert {"rng_rank0.pt", "rng_rank1.pt", "mp_rank_00_model_states.pt"} <= names
        assert sum(n.endswith("optim_states.pt") for n in names) == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["bucket"]) for r in rows if r["kind"] == "eval"]
    assert evals == [(0, "0"), (0, "1"), (10, "0"), (10, "1")]  # rank 0 only
    model = AutoModelForCausalLM.from_pretrained(out / "export")
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3]])).logits).all()


def test_a_nonfinite_loss_stops_the_run_naming_the_step_and_batch_and_keeps_the_last_good_checkpoint(
    train_corpus, tmp_path
):
    """A real NaN: with ``rms_norm_eps`` 0 and the EOS id as ``pad_token_id`` (its embedding row is
    initialised to zeros), RMSNorm of the EOS ending each document is 0/0; the first micro-batch
    whose rows contain a document end produces a NaN loss."""
    from transformers import AutoTokenizer

    from common.models import default_model_dir

    eos = AutoTokenizer.from_pretrained(default_model_dir()).eos_token_id
    model = TINY[:-1] + f", rms_norm_eps: 0.0, pad_token_id: {eos}}}"
    out = tmp_path / "run"
    args = _train_args(
        train_corpus, out, from_scratch=model, seq_len=64, max_steps=8, save_every=1, eval_batches=0, export="false"
    )
    first = run_cli(*args, timeout=600)
    assert first.returncode == 1
    error = first.stderr.strip().splitlines()[-1]
    match = re.search(r"loss is nan at step (\d+), micro-batch (\d) \(its rows start in (\S+), document (\d+)", error)
    assert match, first.stderr[-3000:]
    step = int(match.group(1))
    assert 1 < step <= 8 and (train_corpus / match.group(3)).exists()
    ckpt = out / "checkpoints"
    assert (ckpt / f"nonfinite-step{step}" / "mp_rank_00_model_states.pt").exists()
    assert (ckpt / "latest").read_text().strip() == f"step{step - 1}"  # the bad state is not resumed from
    assert [s for s, _ in _losses(out)] == list(range(1, step))
    assert all(math.isfinite(loss) for _, loss in _losses(out))
    again = run_cli(*args, timeout=600)  # resumes from the last good checkpoint and meets the same batch
    assert again.returncode == 1 and again.stderr.strip().splitlines()[-1] == error


@pytest.fixture(scope="module")
def instruction_corpus(tmp_path_factory) -> Path:
    """Instruction rows whose prompts (no loss) range from a few to ~150 tokens, between plain
    documents: packed rows of 128 tokens carry very different numbers of labelled tokens."""
    from conftest import write_jsonl

    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps import Split

    base = tmp_path_factory.mktemp("instructions")
    records = []
    for i in range(160):
        if i % 4 == 3:
            text = " ".join(f"Article {i} section {j} of the civil code applies to the lease." for j in range(6))
            records.append({"text": text})
            continue
        prompt = " ".join(f"clause {i}.{j} binds the tenant" for j in range(2 + (i * 7) % 30))
        response = f"Clause {i} binds the tenant."
        records.append({"text": f"{prompt}\n{response}", "prompt": prompt, "response": response})
    source = write_jsonl(base / "instructions.jsonl", records)
    cfg = BuildConfig(root=base / "data", workers=1, sources=[SourceSpec(source)], steps=[Split(validation_ratio=0.1)])
    run_build(cfg, progress=False)
    return base / "data"


def test_gradient_accumulation_trains_like_one_big_micro_batch(instruction_corpus, tmp_path):
    """micro_batch 2 x grad_accum 2 and micro_batch 4 x grad_accum 1 are the same global batch of
    rows; with the loss divided by the step's labelled tokens (not averaged per micro-batch) they
    take the same optimizer steps, so the per-step losses agree, even though the micro-batches
    hold very different numbers of labelled tokens."""
    runs = {}
    for mb, accum in ((2, 2), (4, 1)):
        out = tmp_path / f"mb{mb}x{accum}"
        sets = {"micro_batch": mb, "grad_accum": accum, "eval_batches": 0, "export": "false", "save_every": 100}
        result = run_cli(*_train_args(instruction_corpus, out, **sets), timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[mb] = _losses(out)
    _assert_same_losses(runs[2], runs[4], rel=1e-5)


def test_a_mixture_curriculum_trains_by_phase_weights_and_resumes_its_draws(train_corpus, tmp_path):
    """Steps 1-3 draw only from the easy bucket, later steps from both; a rerun resumes from the
    step-8 checkpoint (data cursor per bucket + row index) and reproduces steps 9-10 exactly."""
    out = tmp_path / "mixture"
    mixture = '[{until_step: 3, weights: {"0": 1}}, {weights: {"0": 1, "1": 1}}]'
    args = _train_args(train_corpus, out, mixture=mixture, eval_batches=0, export="false")
    first = run_cli(*args, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    mix = [r["rows"] for r in rows if r["kind"] == "train"]
    assert all(sum(m.values()) == 4 for m in mix)  # micro_batch 2 x grad_accum 2 rows per step
    assert all(m == {"0": 4, "1": 0} for m in mix[:3])
    assert sum(m["1"] for m in mix[3:]) > 0 and sum(m["0"] for m in mix[3:]) > 0
    before = _losses(out)
    assert (out / "checkpoints" / "latest").read_text() == "step10"  # the last step is saved too
    (out / "checkpoints" / "latest").write_text("step8")  # as if killed after step 8's checkpoint

    again = run_cli(*args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] == 8
    _assert_same_losses(_losses(out), before, rel=1e-6)
    sequential = run_cli(*_train_args(train_corpus, out, eval_batches=0, export="false"))
    assert sequential.returncode == 1 and "written by a run with a mixture; this run has none" in sequential.stderr


def test_a_lora_checkpoint_holds_the_adapter_and_its_optimizer_state_only_and_resumes_exactly(train_corpus, tmp_path):
    """The frozen base is rebuilt (seeded) on resume, so a LoRA checkpoint is the adapter and its
    AdamW moments: it used to hold the whole model (528 MB for SmolLM2's 3.6 MB adapter). The
    6-step run saves steps 2, 4 and 6 (the last); resumed from step 4 it logs the same steps 5-6."""
    out = tmp_path / "lora"
    args = _train_args(
        train_corpus, out, lora="{r: 4, alpha: 8}", max_steps=6, save_every=2, eval_batches=0, export="false"
    )
    first = run_cli(*args, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = out / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("step*")) == ["step2", "step4", "step6"]
    module = torch.load(ckpt / "step6" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    params = {k: v for k, v in module.items() if "rotary" not in k}
    assert params and all(".lora_A." in k or ".lora_B." in k for k in params), sorted(params)[:5]
    trainable_bytes = sum(v.numel() * v.element_size() for v in params.values())
    size = sum(p.stat().st_size for p in (ckpt / "step6").iterdir())
    assert size < 4 * trainable_bytes + 200_000, (size, trainable_bytes)  # weights + 2 moments + fp32 copy
    before = _losses(out)

    (ckpt / "latest").write_text("step4")
    again = run_cli(*args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] == 4
    got = _losses(out)
    assert [s for s, _ in got] == [s for s, _ in before] == list(range(1, 7))
    assert all(abs(a - b) <= 1e-6 * abs(b) for (_, a), (_, b) in zip(got, before, strict=True)), (got, before)
