"""Every training config key is checked before anything loads: one line naming the key and what it may be."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from training.config import RULES, TrainConfig, TrainingError

BAD = [
    # (override, the message's key=value, what it says is allowed)
    ("max_steps=-5", "max_steps=-5", "an integer >= 1"),
    ("micro_batch=0", "micro_batch=0", "an integer >= 1"),
    ("grad_accum=1.5", "grad_accum=1.5", "an integer >= 1"),
    ("zero_stage=9", "zero_stage=9", "one of 0, 1, 2, 3"),
    ("seq_len=1", "seq_len=1", "an integer >= 2"),
    ("lr=0", "lr=0.0", "a number > 0"),
    ("lr=.inf", "lr=inf", "a number > 0"),
    ("warmup_steps=-1", "warmup_steps=-1", "an integer >= 0"),
    ("clip=-1", "clip=-1.0", "a number >= 0 (0: no clipping)"),
    ("eval_every=0", "eval_every=0", "an integer >= 1"),
    ("eval_batches=-2", "eval_batches=-2", "an integer >= 0"),
    ("save_every=0", "save_every=0", "an integer >= 1"),
    ("seed=-1", "seed=-1", "an integer >= 0"),
    ("resume=maybe", 'resume="maybe"', "true or false"),
    ("export=1", "export=1", "true or false"),
    ("fused_adamw=yes please", 'fused_adamw="yes please"', "true or false, or null"),
    ("attn_implementation=flash", 'attn_implementation="flash"', "one of 'sdpa', 'eager'"),
    ("packed_attention=varlen", 'packed_attention="varlen"', "one of 'mask', 'position_ids'"),
    ("loss_chunk_tokens=0", "loss_chunk_tokens=0", "an integer >= 1, or null"),
    ("buckets=[]", "buckets=[]", "a non-empty list of names, or null"),
    ("sources=hello", 'sources="hello"', "a non-empty list of names, or null"),
    ("lora={r: 0}", "lora.r=0", "an integer >= 1"),
    ("lora={r: 8, alpha: -1}", "lora.alpha=-1", "a number > 0"),
    ("lora={r: 8, dropout: 1.0}", "lora.dropout=1.0", "a number >= 0 and < 1"),
    ("lora={r: 8, target_modules: []}", "lora.target_modules=[]", "a non-empty list of names"),
    ("lora=8", "lora=8", "a mapping, or null"),
    ("from_scratch={hidden_size: 0}", "from_scratch.hidden_size=0", "an integer >= 1"),
    ("objective=ppo", 'objective="ppo"', "one of 'sft', 'dpo'"),
    ("dpo={beta: 0}", "dpo.beta=0", "a number > 0"),
    ("dpo={loss: hinge}", 'dpo.loss="hinge"', "one of 'sigmoid', 'ipo'"),
    ("dpo={label_smoothing: 0.5}", "dpo.label_smoothing=0.5", "a number >= 0 and < 0.5"),
]


@pytest.mark.parametrize(("override", "shown", "allowed"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_names_the_key_and_what_it_may_be(override: str, shown: str, allowed: str) -> None:
    with pytest.raises(TrainingError) as err:
        TrainConfig.load(REPO / "configs" / "train.yaml", [override])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"--set: {shown} is not allowed; expected {allowed}"), message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("lora={rank: 4}", "lora has unknown key(s) ['rank']; known: ['alpha', 'dropout', 'r', 'target_modules']"),
        ("from_scratch={hiden_size: 64}", "from_scratch has unknown LlamaConfig key(s) ['hiden_size']"),
        ("from_scratch={hidden_size: 65, num_attention_heads: 4}", "is not a multiple of the number of attention"),
        ("from_scratch={num_attention_heads: 4, num_key_value_heads: 3, hidden_size: 64}", "not a multiple of num_key"),
        ("from_scratch={max_position_embeddings: 64}", "seq_len=512 is above the model's maximum of 64 positions"),
        ("mixture=[{weights: {'0': -1}}]", "mixture phase 1: weights must be >= 0"),
        ("steps=5", "unknown key(s) ['steps']"),
        ("base_model=runs/sft/export", "unknown key(s) ['base_model'] (did you mean 'model' for 'base_model'?)"),
        ("dpo={beta: 0.1}", "dpo settings need objective 'dpo' (objective is 'sft')"),
        ("objective=dpo;loss_chunk_tokens=512", "loss_chunk_tokens is not used with objective 'dpo'"),
        ("objective=dpo;packed_attention=position_ids", "packed_attention is not used with objective 'dpo'"),
        ("objective=dpo;mixture=[{weights: {'0': 1}}]", "mixture is not used with objective 'dpo'"),
        ("objective=dpo;dpo={loss: ipo, label_smoothing: 0.1}", "dpo.label_smoothing applies to the sigmoid loss"),
    ],
)
def test_nested_and_combined_keys_are_checked(override: str, expected: str) -> None:
    with pytest.raises(TrainingError) as err:
        TrainConfig.load(REPO / "configs" / "train.yaml", override.split(";"))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_key_set_in_the_file_is_blamed_on_the_file(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("max_steps: 100\nmicro_batch: 0\n")
    with pytest.raises(TrainingError, match=rf"^{config}: micro_batch=0 is not allowed"):
        TrainConfig.load(config, [])
    with pytest.raises(TrainingError, match=r"^--set: max_steps=0 is not allowed"):
        TrainConfig.load(config, ["micro_batch=2", "max_steps=0"])


def test_every_key_has_a_rule_and_the_defaults_pass() -> None:
    assert set(RULES) == {f.name for f in fields(TrainConfig)}
    TrainConfig().validate()
    cfg = TrainConfig.load(REPO / "configs" / "train.yaml", ["buckets=[0, 1]", "lr=1e-3", "output_dir=2024"])
    assert cfg.buckets == ["0", "1"] and cfg.lr == 1e-3 and cfg.output_dir == "2024"


def test_the_cli_stops_before_loading_anything(tmp_path: Path) -> None:
    """`max_steps=-5` used to train zero steps and exit 0; `lora r=0` and `zero_stage=9` failed as
    tracebacks from peft / DeepSpeed after the model had loaded. Now: one line, before the model."""
    cases = (("max_steps=-5", "max_steps=-5"), ("lora={r: 0}", "lora.r=0"), ("zero_stage=9", "zero_stage=9"))
    for override, key in cases:
        started = time.monotonic()
        result = run_cli("-m", "training.run", "--set", f"output_dir={tmp_path / 'run'}", "--set", override)
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == [lines[-1]] and lines[0].startswith(f"error: --set: {key} is not allowed"), result.stderr
        assert time.monotonic() - started < 60
    assert not (tmp_path / "run").exists()
