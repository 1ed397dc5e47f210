"""`training.int8`: weight-only int8 linears (per-channel scales, torch's ``_weight_int8pack_mm``,
GPTQ rounding): every linear replaced, the tied embedding left intact, and the logits of a tiny
random-init Llama kept close to fp32's (SmolLM2-135M's numbers are in docs/SERVING.md)."""

from __future__ import annotations

import copy

import pytest
from conftest import tiny_llama
from serve_support import tiny_tokenizer

torch = pytest.importorskip("torch")

from training.int8 import CALIBRATION, Int8Linear, quantize_int8, quantize_weight  # noqa: E402

# Relative RMS logit error (RMS of the difference / std of the fp32 logits) and top-1 agreement
# allowed on the tiny Llama; measured 2026-12-02: about 5e-3 and 1.0 for both roundings.
REL_RMS = 2e-2
TOP1 = 0.97


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def reference(tokenizer):
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2}
    model = tiny_llama(vocab_size=len(tokenizer), tie_word_embeddings=True, max_position_embeddings=256, **shape)
    return model.eval()


def _agreement(reference, candidate, tokenizer) -> tuple[float, float]:
    texts = ["The tenant shall keep the premises in good repair.", "第三条 当事人应当遵循诚信原则。", "x = [1, 2, 3]"]
    worst, top1 = 0.0, []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            want, got = reference(input_ids=ids).logits, candidate(input_ids=ids).logits
            worst = max(worst, float((got - want).pow(2).mean().sqrt() / want.std()))
            top1.append(float((got.argmax(-1) == want.argmax(-1)).float().mean()))
    return worst, sum(top1) / len(top1)


def test_int8_linear_is_the_dequantised_matmul():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40, bias=True)
    q = Int8Linear.from_linear(linear)
    assert q.weight.dtype == torch.int8 and q.scales.shape == (40,)
    # each row's largest weight maps to +-127 and the rounding error is at most half a step
    step = q.scales.float()[:, None]
    assert int(q.weight.abs().amax(1).min()) == 127
    assert float(((q.dequantized() - linear.weight.detach()) / step).abs().max()) <= 0.5 + 1e-3
    x = torch.randn(3, 5, 96)
    with torch.no_grad():
        want = torch.nn.functional.linear(x, q.dequantized(), linear.bias)
    got = q(x)
    assert got.shape == (3, 5, 40) and got.dtype == torch.float32
    # the kernel takes bfloat16 activations: ~3 significant digits
    assert float((got - want).abs().max() / want.abs().max()) < 1e-2


def test_gptq_lowers_the_output_error_on_its_calibration_inputs():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    # correlated, uneven input channels, as an LM's hidden states are
    x = (torch.randn(512, 24) @ torch.randn(24, 128) + 0.1 * torch.randn(512, 128)) * torch.linspace(0.2, 3.0, 128)
    errors = {}
    for name, hessian in (("nearest", None), ("gptq", x.T @ x)):
        q, s = quantize_weight(w, hessian)
        errors[name] = float((x @ (q.float() * s[:, None]).T - x @ w.T).pow(2).mean())
    assert errors["gptq"] < 0.5 * errors["nearest"], errors


@pytest.mark.parametrize("calibrated", [False, True], ids=["nearest", "gptq"])
def test_int8_model_keeps_fp32_logits_and_the_tied_embedding(reference, tokenizer, calibrated):
    model = copy.deepcopy(reference)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the premise: tied
    embedding = reference.model.embed_tokens.weight.detach().clone()
    quantize_int8(model, tokenizer if calibrated else None)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.lm_head, Int8Linear) and model.lm_head.weight.dtype == torch.int8
    assert torch.equal(model.model.embed_tokens.weight, embedding)  # quantising the head left it alone
    rel, top1 = _agreement(reference, model, tokenizer)
    assert rel < REL_RMS and top1 >= TOP1, (rel, top1)


def test_calibration_text_is_not_the_measured_prompts():
    from training.export import PROBES

    for probe in PROBES:
        for text in CALIBRATION:
            assert probe[:20] not in text
