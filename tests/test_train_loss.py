"""Chunked cross-entropy (`training.loss`) == the model's own loss, values and gradients, with LoRA."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llama
from peft import LoraConfig, get_peft_model

from training.loss import ChunkedCausalLMLoss
from training.packing import IGNORE_INDEX, pack


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_chunked_loss_equals_the_hf_loss_and_its_gradients(chunk: int) -> None:
    model = get_peft_model(tiny_llama(tie_word_embeddings=True), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
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


def test_a_micro_batch_without_labelled_tokens_has_zero_loss_and_zero_gradients() -> None:
    """An instruction row that is all prompt has no labelled token: 0/0 would be NaN and stop the
    run as a non-finite loss. Both loss paths give 0 and zero (not missing) gradients."""
    from training.run import _model_loss

    model = tiny_llama(tie_word_embeddings=False)  # an untied head: it must get (zero) gradients too
    rows = pack([(list(range(5, 37)), [False] * 32)], seq_len=32, pad_id=0)
    inputs = {
        "input_ids": torch.tensor([r.input_ids for r in rows]),
        "position_ids": torch.tensor([r.position_ids for r in rows]),
        "labels": torch.tensor([r.labels for r in rows]),
        "use_cache": False,
    }
    assert (inputs["labels"] == IGNORE_INDEX).all()
    for loss_of in (_model_loss, ChunkedCausalLMLoss(model, 8)):
        model.zero_grad(set_to_none=True)
        loss = loss_of(model, inputs)
        assert float(loss) == 0.0
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert not p.grad.any(), name

    mixed = pack([(list(range(5, 25)), None), (list(range(40, 60)), None)], seq_len=20, pad_id=0)
    reference = model(
        input_ids=torch.tensor([r.input_ids for r in mixed]),
        labels=torch.tensor([r.labels for r in mixed]),
        use_cache=False,
    ).loss
    inputs = {
        "input_ids": torch.tensor([r.input_ids for r in mixed]),
        "labels": torch.tensor([r.labels for r in mixed]),
        "use_cache": False,
    }
    got = _model_loss(model, inputs)
    torch.testing.assert_close(got, reference)  # with labelled tokens: the model's own mean
