"""Losses (`training.loss`): chunked == the model's own, values and gradients, with LoRA; the
normalisation by the step's labelled tokens; no 0/0 for a micro-batch without labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_llama
from peft import LoraConfig, get_peft_model

from training.loss import ChunkedCausalLMLoss, labelled_tokens, model_loss
from training.packing import IGNORE_INDEX, PackedRow, pack


def _inputs(rows: list[PackedRow]) -> dict[str, torch.Tensor | bool]:
    return {
        "input_ids": torch.from_numpy(np.stack([r.input_ids for r in rows])),
        "position_ids": torch.from_numpy(np.stack([r.position_ids for r in rows])),
        "labels": torch.from_numpy(np.stack([r.labels for r in rows])),
        "use_cache": False,
    }


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


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
    inputs = _inputs(rows)
    assert (inputs["labels"] == IGNORE_INDEX).any()  # boundaries and the prompt are masked
    n = torch.tensor(float(labelled_tokens(inputs["labels"])))

    reference = model(**inputs).loss  # HF's mean over labelled tokens
    reference.backward()
    want = _grads(model)
    for loss_of in (model_loss, ChunkedCausalLMLoss(model, chunk)):
        model.zero_grad()
        got = loss_of(model, inputs, n)
        got.backward()
        torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-6)
        for name, grad in _grads(model).items():
            torch.testing.assert_close(grad, want[name], atol=1e-6, rtol=1e-5)


def test_accumulated_micro_batches_give_the_gradient_of_the_whole_batch() -> None:
    """Two micro-batches with very different numbers of labelled tokens (one row nearly all prompt),
    each divided by the step's labelled tokens / 2 and scaled by 1/2 as DeepSpeed's backward does,
    add up to the gradient of one batch of both rows; per-micro-batch means would not."""
    model = tiny_llama()
    prompt_heavy = pack([(list(range(5, 37)), [False] * 30 + [True] * 2)], seq_len=32, pad_id=0)
    plain = pack([(list(range(40, 72)), None)], seq_len=32, pad_id=0)
    whole = _inputs(prompt_heavy + plain)
    model(**whole).loss.backward()
    want = _grads(model)

    micro = [_inputs(prompt_heavy), _inputs(plain)]
    counts = [labelled_tokens(m["labels"]) for m in micro]
    assert counts == [2, 31]
    for num_items, should_match in ((torch.tensor(sum(counts) / 2), True), (None, False)):
        model.zero_grad()
        for m, count in zip(micro, counts, strict=True):
            divisor = num_items if num_items is not None else torch.tensor(float(count))  # per-micro mean
            (model_loss(model, m, divisor) / 2).backward()
        close = all(torch.allclose(g, want[n], atol=1e-6, rtol=1e-5) for n, g in _grads(model).items())
        assert close is should_match


def test_a_micro_batch_without_labelled_tokens_has_zero_loss_and_zero_gradients() -> None:
    """An instruction row that is all prompt has no labelled token; with the trainer's divisor
    clamped to at least 1 both loss paths give 0 and zero (not missing) gradients, not 0/0 = NaN,
    which the non-finite-loss check would stop the run on."""
    model = tiny_llama(tie_word_embeddings=False)  # an untied head: it must get (zero) gradients too
    inputs = _inputs(pack([(list(range(5, 37)), [False] * 32)], seq_len=32, pad_id=0))
    assert labelled_tokens(inputs["labels"]) == 0
    for loss_of in (model_loss, ChunkedCausalLMLoss(model, 8)):
        model.zero_grad(set_to_none=True)
        loss = loss_of(model, inputs, torch.tensor(1.0))
        assert float(loss.detach()) == 0.0
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert not p.grad.any(), name
