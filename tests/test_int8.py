"""`training.int8`: weight-only int8 linears (per-channel scales, torch's ``_weight_int8pack_mm``,
a bf16 GEMM for prompts, GPTQ rounding): every linear replaced, the tied embedding int8 too (its
own per-row copy, or the head's matrix shared), and the logits of a tiny random-init Llama kept
close to fp32's (SmolLM2-135M's numbers are in docs/SERVING.md)."""

from __future__ import annotations

import copy

import pytest
from conftest import tiny_llama
from serve_support import tiny_tokenizer

torch = pytest.importorskip("torch")

from training.int8 import (  # noqa: E402
    CALIBRATION,
    PREFILL_ROWS,
    Int8Embedding,
    Int8Linear,
    quantize_int8,
    quantize_weight,
)

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


@pytest.mark.parametrize("share", [False, True], ids=["own-embedding", "shared-embedding"])
@pytest.mark.parametrize("calibrated", [False, True], ids=["nearest", "gptq"])
def test_int8_model_keeps_fp32_logits_and_quantises_the_tied_embedding(reference, tokenizer, calibrated, share):
    model = copy.deepcopy(reference)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the premise: tied
    embedding = reference.model.embed_tokens.weight.detach().clone()
    quantize_int8(model, tokenizer if calibrated else None, share_tied=share)
    assert not any(isinstance(m, torch.nn.Linear | torch.nn.Embedding) for m in model.modules())
    head, emb = model.lm_head, model.model.embed_tokens
    assert isinstance(head, Int8Linear) and head.weight.dtype == torch.int8
    assert isinstance(emb, Int8Embedding) and emb.weight.dtype == torch.int8
    # no fp32 copy of the embedding/head survives: every floating tensor left is a norm or a scale
    assert all(t.dtype == torch.int8 or t.dim() == 1 for t in model.state_dict().values())
    if share:  # one int8 matrix and one set of scales serve the lookup and the head
        assert emb.weight.data_ptr() == head.weight.data_ptr() and emb.scales.data_ptr() == head.scales.data_ptr()
    else:  # the lookup's own per-row copy, rounded to nearest
        assert emb.weight.data_ptr() != head.weight.data_ptr()
        step = emb.scales.float()[:, None]
        assert float(((emb.weight.float() * step - embedding) / step).abs().max()) <= 0.5 + 1e-3
    ids = torch.tensor([[3, 7, 3]])
    want = embedding[ids]
    assert float((emb(ids) - want).abs().max()) <= float(emb.scales.float().max()) * (0.5 if not share else 3)
    rel, top1 = _agreement(reference, model, tokenizer)
    assert rel < REL_RMS and top1 >= TOP1, (rel, top1)


def test_prompts_take_the_bf16_gemm_and_agree_with_the_kernel():
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40, bias=False)
    q = Int8Linear.from_linear(linear)
    x = torch.randn(PREFILL_ROWS + 5, 96)
    with torch.no_grad():
        want = torch.nn.functional.linear(x, q.dequantized())
        kernel = torch.cat([q(row[None]) for row in x])  # one row at a time: the int8 kernel
        gemm = q(x)  # a prompt's rows at once: the bf16 GEMM
    for got in (kernel, gemm):
        assert float((got - want).abs().max() / want.abs().max()) < 1e-2


def test_calibration_text_is_not_the_measured_prompts():
    from training.export import PROBES

    for probe in PROBES:
        for text in CALIBRATION:
            assert probe[:20] not in text


def test_dropping_the_checkpoint_pages_keeps_every_value(tmp_path):
    """quantize_int8 unmaps the file pages under fp32 weights it has quantised (the load peak);
    a mapped tensor read again afterwards still holds the file's values, and heap memory is
    never dropped."""
    np = pytest.importorskip("numpy")
    from training.int8 import _drop_file_pages

    data = torch.randn(256, 1024)
    path = tmp_path / "weights.bin"
    data.numpy().tofile(path)
    mapped = torch.from_numpy(np.memmap(path, dtype=np.float32, mode="c", shape=(256, 1024)))
    assert torch.equal(mapped, data)
    _drop_file_pages([mapped])
    assert torch.equal(mapped, data)  # faulted back in from the unchanged file
    heap = data.clone()
    _drop_file_pages([heap])
    assert torch.equal(heap, data)
