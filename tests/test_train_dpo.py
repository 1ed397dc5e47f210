"""DPO: the loss against a hand computation on a tiny model, zero gradient for identical answers,
the LoRA reference is the base model, and `training.run --set objective=dpo` end to end (rewards
rise on a separable preference set; SIGKILL and resume reproduce the losses)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, run_cli, tiny_llama, write_jsonl

from training.config import TrainConfig
from training.dpo import DPOSettings, dpo_loss, pair_logps, reference_logps
from training.model import build_model
from training.preference import Pair, pad_pairs

PROMPT = [5, 17, 23, 9]


def _pair(chosen: list[int], rejected: list[int]) -> Pair:
    def side(answer: list[int]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.array(PROMPT + answer, dtype=np.int32)
        return ids, np.array([False] * len(PROMPT) + [True] * len(answer))

    (c, cm), (r, rm) = side(chosen), side(rejected)
    return Pair(c, cm, r, rm, 0, 0)


def _inputs(pairs: list[Pair]) -> dict:
    host = pad_pairs(pairs, seq_len=64, pad_id=0)
    return {k: torch.from_numpy(v) for k, v in host.items()}


def _hand_logp(model, pair_side: tuple[np.ndarray, np.ndarray], average: bool) -> float:
    """log p(answer | prompt), token by token, from the unpadded row alone."""
    ids, mask = pair_side
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(ids[None].astype(np.int64))).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    terms = [float(logp[t - 1, ids[t]]) for t in range(1, len(ids)) if mask[t]]
    return sum(terms) / len(terms) if average else sum(terms)


@pytest.mark.parametrize(
    "settings",
    [DPOSettings(beta=0.1), DPOSettings(beta=0.5, label_smoothing=0.2), DPOSettings(beta=0.3, loss="ipo")],
    ids=["sigmoid", "smoothed", "ipo"],
)
def test_the_loss_equals_a_hand_computation(settings: DPOSettings) -> None:
    policy, reference = tiny_llama(), tiny_llama(hidden_size=32)
    torch.manual_seed(1)
    for p in reference.parameters():  # a different model: the reference terms matter
        p.data.add_(0.3 * torch.randn_like(p))
    pairs = [_pair([40, 41, 42], [70, 71]), _pair([99], [12, 13, 14, 15, 16])]
    inputs = _inputs(pairs)
    average = settings.loss == "ipo"
    losses, metrics = dpo_loss(*pair_logps(policy, inputs, average), *pair_logps(reference, inputs, average), settings)
    losses = losses.detach()
    for k, pair in enumerate(pairs):
        chosen, rejected = (pair.chosen, pair.chosen_mask), (pair.rejected, pair.rejected_mask)
        rc = _hand_logp(policy, chosen, average) - _hand_logp(reference, chosen, average)
        rr = _hand_logp(policy, rejected, average) - _hand_logp(reference, rejected, average)
        h, b, eps = rc - rr, settings.beta, settings.label_smoothing
        if settings.loss == "ipo":
            want = (h - 1 / (2 * b)) ** 2
        else:
            sig = 1 / (1 + math.exp(-b * h))
            want = -(1 - eps) * math.log(sig) - eps * math.log(1 - sig)
        # fp32 sums of ~20-nat log-probs against float64 hand sums: ~1e-6 per log-prob
        assert float(losses[k]) == pytest.approx(want, rel=1e-5, abs=1e-6)
        assert float(metrics["reward_chosen"][k]) == pytest.approx(b * rc, rel=1e-4, abs=2e-6)
        assert float(metrics["reward_rejected"][k]) == pytest.approx(b * rr, rel=1e-4, abs=2e-6)
        assert abs(b * (rc - rr)) > 1e-3  # the rewards are not all ~0: the check has teeth
        assert float(metrics["reward_accuracy"][k]) == float(b * rc > b * rr)


def test_identical_answers_give_zero_gradient_and_different_ones_do_not() -> None:
    settings = DPOSettings(beta=0.1)
    for pairs, zero in (([_pair([40, 41, 42], [40, 41, 42])] * 2, True), ([_pair([40, 41], [70, 71, 72])], False)):
        policy = tiny_llama().double()  # float64: "zero" means zero, not fp32 noise
        reference = tiny_llama().double()
        inputs = _inputs(pairs)
        losses, _ = dpo_loss(
            *pair_logps(policy, inputs, False), *reference_logps(policy, reference, inputs, False), settings
        )
        losses.sum().backward()
        largest = max(float(p.grad.abs().max()) for p in policy.parameters() if p.grad is not None)
        assert (largest < 1e-12) if zero else (largest > 1e-4), largest
        assert float(losses[0].detach()) == pytest.approx(math.log(2), rel=1e-6)  # policy == reference: h = 0


def test_the_lora_reference_is_the_base_model_with_the_adapter_disabled() -> None:
    """The reference costs no second copy: the same peft model with its adapter switched off gives
    exactly the base model's logits, while the policy (adapter on) differs from them."""
    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 64}  # fmt: skip
    cfg = TrainConfig(from_scratch=shape, lora={"r": 4, "alpha": 8}, seq_len=64)
    policy, _ = build_model(cfg, announce=False)
    torch.manual_seed(3)
    for name, p in policy.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (adapter = identity): make it matter
            p.data.normal_(0, 0.5)
    base, _ = build_model(TrainConfig(from_scratch=shape, lora=None, seq_len=64), announce=False)
    inputs = _inputs([_pair([40, 41, 42], [70, 71])])
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        want = base(**forward).logits
        with policy.disable_adapter():
            disabled = policy(**forward).logits
        on = policy(**forward).logits
    assert torch.equal(disabled, want)
    assert float((on - want).abs().max()) > 1e-3
    ref = reference_logps(policy, None, inputs, False)
    assert all(torch.equal(a, b) for a, b in zip(ref, pair_logps(base, inputs, False), strict=True))


# -- end to end -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preference_corpus(tmp_path_factory) -> Path:
    """A separable toy preference set built like any corpus (pipelines.build from a JSONL whose
    extra fields land in meta): the chosen answer cites the article the question names, the
    rejected one is noise. Some plain documents are mixed in (the DPO run skips them)."""
    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps import Split

    base = tmp_path_factory.mktemp("preference")
    records = []
    for i in range(240):
        prompt = f"Does article {i} of the civil code apply to a lease of {i % 7 + 2} years?"
        chosen = f"Yes. Article {i} applies to every lease; the tenant must register it."
        rejected = "".join("qzx vbn mlk "[(i * 5 + j) % 12] for j in range(40))
        records.append({"text": f"{prompt}\n{chosen}", "prompt": prompt, "chosen": chosen, "rejected": rejected,
                        "source": "synth:preference"})  # fmt: skip
    for i in range(20):
        records.append({"text": f"Plain document {i} about the civil code and its articles on leases."})
    source = write_jsonl(base / "pairs.jsonl", records)
    cfg = BuildConfig(root=base / "data", workers=1, sources=[SourceSpec(source)], steps=[Split(validation_ratio=0.15)])
    run_build(cfg, progress=False)
    return base / "data"


def _dpo_args(root: Path, out: Path, **changes) -> list[str]:
    sets = {
        "root": root,
        "output_dir": out,
        "objective": "dpo",
        "dpo": "{beta: 0.1}",
        "from_scratch": TINY,
        "lora": "null",
        "seq_len": 64,
        "micro_batch": 2,
        "grad_accum": 2,
        "lr": "3.0e-3",
        "warmup_steps": 2,
        "max_steps": 8,
        "save_every": 4,
        "eval_every": 4,
        "eval_batches": 4,
        "export": "false",
        **changes,
    }
    return ["-m", "training.run", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def _rows(out: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_dpo_learns_a_separable_preference_and_exports(preference_corpus: Path, tmp_path: Path) -> None:
    """Full fine-tuning (frozen reference copy): at step 0 policy == reference (accuracy 0, margin 0,
    loss log 2); after 8 steps the held-out chosen answers win (accuracy well above chance)."""
    out = tmp_path / "dpo"
    result = run_cli(*_dpo_args(preference_corpus, out, export="true"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows without meta.prompt/chosen/rejected skipped" in result.stderr
    train, evals = _rows(out, "train"), _rows(out, "eval")
    assert [r["step"] for r in train] == list(range(1, 9))
    assert train[0]["loss"] == pytest.approx(math.log(2), rel=1e-4) and train[0]["reward_margin"] == 0
    assert all(set(r) >= {"reward_accuracy", "reward_chosen", "reward_rejected", "reward_margin"} for r in train)
    start, end = [r for r in evals if r["step"] == 0], [r for r in evals if r["step"] == 8]
    assert start and end and all(r["reward_accuracy"] == 0 for r in start)
    assert all(r["reward_accuracy"] > 0.8 and r["reward_margin"] > 0 and r["loss"] < math.log(2) for r in end), end
    assert train[-1]["reward_accuracy"] > 0.8
    summary = json.loads((out / "summary.json").read_text())
    assert summary["export_max_abs_logit_diff"] < 1e-3 and (out / "export" / "model.safetensors").exists()
    html = (out / "training_report.html").read_text()
    assert "reward accuracy" in html


@pytest.fixture(scope="module")
def lora_reference(preference_corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dpo-lora") / "run"
    result = run_cli(*_dpo_args(preference_corpus, out, lora="{r: 4, alpha: 8}", eval_batches=0), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_sigkill_and_resume_reproduce_the_dpo_losses(preference_corpus: Path, lora_reference: Path, tmp_path: Path):
    out = tmp_path / "killed"
    args = _dpo_args(preference_corpus, out, lora="{r: 4, alpha: 8}", eval_batches=0)
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "checkpoints" / "latest").exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    resumed = run_cli(*args, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] >= 4
    got, want = _rows(out, "train"), _rows(lora_reference, "train")
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, 9))
    for a, b in zip(got, want, strict=True):
        for key in ("loss", "reward_margin", "reward_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    module = torch.load(out / "checkpoints" / "step4" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
    assert all("lora_" in k for k in module if "rotary" not in k)  # the adapter only, as for SFT
