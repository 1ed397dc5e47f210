"""Chunked cross-entropy (`training.loss`) == the model's own loss, values and gradients, with LoRA."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from training.loss import ChunkedCausalLMLoss
from training.packing import IGNORE_INDEX, pack


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_chunked_loss_equals_the_hf_loss_and_its_gradients(chunk: int) -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():  # LoRA B starts at zero; make it count
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    rows = pack(
        [(list(range(5, 25)), None), (list(range(40, 51)), [False] * 4 + [True] * 7), (list(range(60, 90)), None)],
        seq_len=32,
        pad_id=0,
    )
    inputs = {
        "input_ids": torch.tensor([r.input_ids for r in rows]),
        "position_ids": torch.tensor([r.position_ids for r in rows]),
        "labels": torch.tensor([r.labels for r in rows]),
        "use_cache": False,
    }
    assert (inputs["labels"] == IGNORE_INDEX).any()  # boundaries and the prompt are masked
    chunked = ChunkedCausalLMLoss(model, chunk)

    reference = model(**inputs).loss
    reference.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    got = chunked(model, inputs)
    got.backward()
    torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-6)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, want[name], atol=1e-6, rtol=1e-5)
