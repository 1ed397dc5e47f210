"""GGUF export: a tiny random-init Llama / Qwen2 and a LoRA run on one, read back with the `gguf`
reader and with transformers (logits, tokenizer, chat template)."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from conftest import TINY, run_cli
from serve_support import save_tiny_model, tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.export import EXPORT_TOLERANCE, ExportError, export_model, source_model_dir
from training.export import main as export_main

TEXTS = ["The lessee shall pay rent monthly, 1,250.00 EUR.", "第三条 当事人应当遵循诚信原则。", "emoji 🙂 ok"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "llama")


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_1", "q4_0"])
def test_tiny_llama_gguf_loads_with_gguf_and_transformers_within_tolerance(tiny_dir, tmp_path, quant):
    out = tmp_path / f"tiny-{quant}.gguf"
    report = export_model(tiny_dir, "gguf", quant, out)
    assert report.worst_rel_rms <= EXPORT_TOLERANCE[quant] and len(report.probes) == 4  # 3 texts + chat template
    assert all(p.top1 > 0.8 for p in report.probes)

    reader = gguf.GGUFReader(out)
    source = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "llama.block_count") == 2 and field(reader, "llama.attention.head_count_kv") == 2
    assert field(reader, "tokenizer.ggml.model") == "gpt2" and field(reader, "tokenizer.ggml.pre") == "gpt2"
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == source.config.vocab_size
    assert field(reader, "tokenizer.chat_template") == tokenizer.chat_template
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_token_id
    tensors = {t.name: t for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.ffn_down.weight"} <= set(tensors)
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    want = {"f16": "F16", "q8_0": "Q8_0", "q4_1": "Q4_1", "q4_0": "Q4_0"}[quant]
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == want
    assert report.tensor_types[want] >= 14  # every projection of both layers

    # the file's q rows are llama.cpp's interleaved RoPE layout, not Hugging Face's rotate-half one
    q_hf = source.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    q_file = gguf.dequantize(tensors["blk.0.attn_q.weight"].data, tensors["blk.0.attn_q.weight"].tensor_type)
    heads, half = 4, q_hf.shape[0] // 4 // 2
    interleaved = q_hf.reshape(heads, 2, half, -1).swapaxes(1, 2).reshape(q_hf.shape)
    assert np.abs(q_file - interleaved).max() < 0.02 < np.abs(q_file - q_hf).max()

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        want_logits, got = source(input_ids=ids).logits, loaded(input_ids=ids).logits
    rel = float((got - want_logits).pow(2).mean().sqrt() / want_logits.std())
    assert rel <= EXPORT_TOLERANCE[quant]

    exported = AutoTokenizer.from_pretrained(tmp_path, gguf_file=out.name)
    for text in TEXTS:
        assert exported(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert exported.decode(exported(text)["input_ids"]) == text
    chat = [{"role": "user", "content": TEXTS[1]}]
    assert exported.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == (
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    )


def test_qwen2_with_biases_and_its_pre_tokenizer(tmp_path):
    from tokenizers import Regex, pre_tokenizers
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = tiny_tokenizer()
    tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # random-init biases are zero: make them matter
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(std=0.5)
    src = save_tiny_model(tmp_path / "qwen2", model=model, tokenizer=tokenizer)
    report = export_model(src, "gguf", "q8_0", tmp_path / "qwen2.gguf")
    assert report.worst_rel_rms <= EXPORT_TOLERANCE["q8_0"]
    reader = gguf.GGUFReader(tmp_path / "qwen2.gguf")
    assert field(reader, "general.architecture") == "qwen2" and field(reader, "tokenizer.ggml.pre") == "qwen2"
    names = {t.name for t in reader.tensors}
    assert "blk.0.attn_q.bias" in names and "output.weight" not in names  # tied: loaders tie it back


def test_unsupported_models_and_bad_requests_get_clear_errors(tmp_path, tiny_dir):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=400, n_embd=32, n_layer=1, n_head=2, n_positions=64))
    src = save_tiny_model(tmp_path / "gpt2", model=gpt2)
    with pytest.raises(ExportError, match="GPT2LMHeadModel"):
        export_model(src, "gguf", "q8_0", tmp_path / "gpt2.gguf")
    assert not (tmp_path / "gpt2.gguf").exists()
    with pytest.raises(ExportError, match="GGUF block format"):
        export_model(tiny_dir, "hf", "q4_0", tmp_path / "hf")
    with pytest.raises(ExportError, match="no merged model"):
        source_model_dir(tmp_path, None)


def test_hf_f16_export_is_verified_too(tiny_dir, tmp_path):
    report = export_model(tiny_dir, "hf", "f16", tmp_path / "hf16")
    assert 0 < report.worst_rel_rms <= EXPORT_TOLERANCE["f16"]  # really rounded to f16, and close
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf16")
    assert next(model.parameters()).dtype == torch.float16


def test_a_lora_run_exports_as_gguf_through_the_cli(train_corpus, tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    sets = {
        "root": str(train_corpus),
        "output_dir": str(out),
        "model": str(tiny_dir),  # its tokenizer (400 tokens); from_scratch builds the tiny Llama on it
        "from_scratch": TINY,
        "lora": "{r: 4, alpha: 8, dropout: 0.0}",
        "zero_stage": 0,
        "seq_len": 128,
        "micro_batch": 2,
        "grad_accum": 1,
        "lr": "2.0e-2",
        "warmup_steps": 1,
        "max_steps": 3,
        "eval_every": 100,
        "eval_batches": 0,
        "save_every": 100,
    }
    trained = run_cli("-m", "training.run", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")], timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").exists()

    gguf_path = tmp_path / "lora-q8_0.gguf"
    result = run_cli(
        "-m", "training.export", "--run", str(out), "--format", "gguf", "--quant", "q8_0", "--out", str(gguf_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "relative RMS" in result.stdout and "rel rms" in result.stdout  # the printed per-prompt table
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["worst_rel_rms"] <= EXPORT_TOLERANCE["q8_0"] and report["bytes"] == gguf_path.stat().st_size
    assert field(gguf.GGUFReader(gguf_path), "general.name") == "run"

    merged = AutoModelForCausalLM.from_pretrained(out / "export").eval()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf_path.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "export")
    ids = torch.tensor([tokenizer(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        want, got = merged(input_ids=ids).logits, loaded(input_ids=ids).logits
    assert float((got - want).pow(2).mean().sqrt() / want.std()) <= EXPORT_TOLERANCE["q8_0"]
    assert AutoTokenizer.from_pretrained(tmp_path, gguf_file=gguf_path.name).chat_template == tokenizer.chat_template

    # the CLI's refusal, in process (a second interpreter start costs more than the check)
    capsys.readouterr()
    assert export_main(["--run", str(tmp_path), "--out", str(tmp_path / "x.gguf")]) == 1
    err = capsys.readouterr().err
    assert "no merged model" in err and len(err.strip().splitlines()) == 1
