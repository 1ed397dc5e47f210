"""ZeRO-3 + LoRA on 2 processes: the saved adapter is the trained one, the merged export is the same model."""

from __future__ import annotations

import json

import torch
from conftest import TINY, run_torchrun
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from training.config import TrainConfig
from training.model import build_model

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def test_zero3_lora_adapter_is_gathered_and_the_merged_export_matches_the_peft_model(train_corpus, tmp_path):
    out = tmp_path / "z3"
    sets = {
        "root": str(train_corpus),
        "output_dir": str(out),
        "from_scratch": TINY,
        "lora": "{r: 4, alpha: 8, dropout: 0.0}",
        "zero_stage": 3,
        "seq_len": 128,
        "micro_batch": 2,
        "grad_accum": 1,
        "lr": "1.0e-2",
        "warmup_steps": 1,
        "max_steps": 2,
        "save_every": 1,
        "eval_every": 100,
        "eval_batches": 1,
    }
    overrides = [f"{k}={v}" for k, v in sets.items()]
    result = run_torchrun("-m", "training.run", *[a for o in overrides for a in ("--set", o)])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["export_max_abs_logit_diff"] <= 1e-5
    ckpt = {p.name for p in (out / "checkpoints" / "step1").iterdir()}  # ZeRO-3: one partition per rank
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= ckpt

    # the adapter: every targeted projection of every layer, full-size (not ZeRO-3 placeholders), trained
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert len(adapter) == 2 * len(TARGETS) * 2
    for key, tensor in adapter.items():
        assert tensor.numel() > 0 and tensor.dim() == 2, key
        assert (tensor.shape[0] == 4) if ".lora_A." in key else (tensor.shape[1] == 4), (key, tensor.shape)
        if ".lora_B." in key:  # peft initialises lora_B to zero: non-zero means the trained values were gathered
            assert tensor.abs().max() > 0, key

    # the trained peft model, rebuilt from its seeded random base + the saved adapter, vs the merged export
    cfg = TrainConfig.load(None, [o for o in overrides if not o.startswith("lora=")] + ["lora=null"])
    base, tokenizer = build_model(cfg)
    trained = PeftModel.from_pretrained(base, out / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "export").eval()
    assert not hasattr(merged, "peft_config")
    ids = tokenizer("The tenant shall keep the premises in good repair.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want, got = trained(input_ids=ids).logits, merged(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    with torch.no_grad(), trained.disable_adapter():
        assert (trained(input_ids=ids).logits - want).abs().max() > 1e-4  # the adapter changes the model
