"""A Hugging Face causal LM as one GGUF file, the format llama.cpp, Ollama and LM Studio load.

Written with the ``gguf`` package's writer and quantisers (the reference implementation that
ships with llama.cpp), following the conventions its converter uses, so a file from here loads
where theirs does:

* metadata under ``<arch>.*`` (context, widths, heads, RoPE base, RMS-norm epsilon), the file
  type, and the tokenizer as llama.cpp spells it (``tokenizer.ggml.*``: byte-level BPE tokens
  and merges, token types, special ids, whether BOS is added) with its chat template;
* tensor names from ``gguf.get_tensor_name_map`` (``blk.N.attn_q.weight``...); a tied
  ``lm_head`` is left out (loaders tie it back when ``output.weight`` is absent);
* for Llama the q/k projections are permuted from Hugging Face's rotate-half layout back to
  the interleaved layout llama.cpp's RoPE expects (Qwen2 uses the NeoX layout, kept as is);
* 1-D tensors (norms, biases) stay F32; matrices are F32/F16/Q8_0/Q4_1/Q4_0 as asked. Under
  Q4_x the embedding and output matrices are Q8_0, as llama.cpp's quantiser also keeps them at
  higher precision; a matrix whose rows are not a multiple of the 32-value block falls back to
  F16.

Anything outside that (other architectures, RoPE scaling, biases on Llama, SentencePiece
vocabularies) is refused with an error naming it rather than written as a file that loads wrong.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

QUANTS = ("f32", "f16", "q8_0", "q4_1", "q4_0")


class GgufExportError(ValueError):
    """The model or tokenizer cannot be written as GGUF; the message names what is unsupported."""


@dataclass(frozen=True)
class _Arch:
    gguf_name: str  # llama.cpp's architecture name
    permute_qk: bool  # llama.cpp's Llama RoPE wants interleaved q/k rows
    biases: frozenset[str] = frozenset()  # projections that may carry a bias


ARCHITECTURES: dict[str, _Arch] = {
    "LlamaForCausalLM": _Arch("llama", permute_qk=True),
    "Qwen2ForCausalLM": _Arch("qwen2", permute_qk=False, biases=frozenset({"q_proj", "k_proj", "v_proj"})),
}


@dataclass
class GgufSummary:
    path: Path
    bytes: int
    architecture: str
    tensor_types: dict[str, int] = field(default_factory=dict)  # GGML type name -> tensor count


def _architecture(model: Any) -> tuple[str, _Arch]:
    config = model.config
    name = type(model).__name__
    if name not in ARCHITECTURES:
        raise GgufExportError(f"GGUF export supports {', '.join(ARCHITECTURES)}; this model is {name}")
    arch = ARCHITECTURES[name]
    rope = _rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        raise GgufExportError(f"{name}: RoPE scaling {rope.get('rope_type')!r} is not supported by the GGUF export")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise GgufExportError(f"{name}: activation {config.hidden_act!r} is not supported (llama.cpp's is SiLU)")
    if arch.gguf_name == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise GgufExportError(f"{name}: attention/MLP biases are not supported by the GGUF export")
    if getattr(config, "use_sliding_window", False):
        raise GgufExportError(f"{name}: sliding-window attention is not supported by the GGUF export")
    return name, arch


def _rope_parameters(config: Any) -> dict[str, Any]:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    rope = dict(rope)
    if "rope_theta" not in rope and getattr(config, "rope_theta", None) is not None:
        rope["rope_theta"] = config.rope_theta
    return rope


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotate-half q/k rows -> the interleaved pairs llama.cpp's RoPE rotates."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_type(gguf_name: str, array: np.ndarray, quant: str) -> Any:
    import gguf

    T = gguf.GGMLQuantizationType
    if array.ndim == 1 or quant == "f32":
        return T.F32
    if quant == "f16":
        return T.F16
    want = T.Q8_0 if quant == "q8_0" or gguf_name in ("token_embd.weight", "output.weight") else T[quant.upper()]
    block = gguf.GGML_QUANT_SIZES[want][0]
    return want if array.shape[-1] % block == 0 else T.F16


def write_gguf(model: Any, tokenizer: Any, out: Path, quant: str = "f16", name: str | None = None) -> GgufSummary:
    """Write ``model`` (a loaded HF causal LM) and ``tokenizer`` to ``out`` (atomically)."""
    import gguf
    import torch

    if quant not in QUANTS:
        raise GgufExportError(f"--quant {quant!r}: GGUF supports {', '.join(QUANTS)}")
    config = model.config
    hf_arch, arch = _architecture(model)
    vocab = _vocabulary(tokenizer, config.vocab_size)  # before writing anything: it may refuse
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[quant]

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(staging, arch.gguf_name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or out.stem)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(_rope_parameters(config).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, vocab)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.gguf_name.upper()], config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    types: Counter[str] = Counter()
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        base, _, suffix = hf_name.rpartition(".")
        gguf_base = names.get_name(base)
        if gguf_base is None or suffix not in ("weight", "bias"):
            raise GgufExportError(f"{hf_arch}: no GGUF name for tensor {hf_name!r}")
        if suffix == "bias" and base.rpartition(".")[2] not in arch.biases:
            raise GgufExportError(f"{hf_arch}: bias {hf_name!r} has no place in llama.cpp's {arch.gguf_name}")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if arch.permute_qk and base.endswith("self_attn.q_proj"):
            array = _permute(array, n_head)
        elif arch.permute_qk and base.endswith("self_attn.k_proj"):
            array = _permute(array, n_kv)
        gguf_name = f"{gguf_base}.{suffix}"
        qtype = _tensor_type(gguf_name, array, quant)
        data = gguf.quants.quantize(array, qtype)
        writer.add_tensor(gguf_name, data, raw_shape=data.shape, raw_dtype=qtype)
        types[qtype.name] += 1
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(staging, out)
    return GgufSummary(out, out.stat().st_size, arch.gguf_name, dict(types))


@dataclass
class _Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str


def _vocabulary(tokenizer: Any, vocab_size: int) -> _Vocab:
    """The tokenizer as llama.cpp's ``gpt2`` (byte-level BPE) vocabulary, padded to the model's
    embedding rows with unused ``[PAD<i>]`` tokens."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GgufExportError(f"{type(tokenizer).__name__}: GGUF export needs a fast (tokenizers) tokenizer")
    spec = json.loads(backend.to_str())
    model, decoder = spec.get("model") or {}, spec.get("decoder") or {}
    if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
        kind = f"{model.get('type')} model with {decoder.get('type')} decoder"
        raise GgufExportError(f"tokenizer ({kind}): the GGUF export supports byte-level BPE vocabularies only")
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer") or {})
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if len(by_id) > vocab_size:
        raise GgufExportError(f"tokenizer has {len(by_id)} tokens but the model only {vocab_size} embedding rows")
    added = {a["id"]: a for a in spec.get("added_tokens", [])}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
        elif i in added:
            tokens.append(added[i]["content"])
            types.append(int(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED))
        else:
            tokens.append(by_id[i])
            types.append(int(gguf.TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return _Vocab(tokens, types, merges, pre)


def _pre_tokenizer_name(pre: dict[str, Any]) -> str:
    """llama.cpp's name for how text is split before BPE (``tokenizer.ggml.pre``)."""
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX as QWEN2

    known = {QWEN2: "qwen2", _LLAMA3_SPLIT: "llama-bpe"}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt2"
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if parts and len(parts) == 2 and parts[0].get("type") == "Split" and parts[1].get("type") == "ByteLevel":
        regex = (parts[0].get("pattern") or {}).get("Regex")
        if regex in known and not parts[1].get("use_regex", True):
            return known[regex]
    raise GgufExportError(f"tokenizer pre-tokenizer {json.dumps(pre)[:200]} has no llama.cpp equivalent known here")


_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _add_tokenizer(writer: Any, tokenizer: Any, vocab: _Vocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    special = {
        writer.add_bos_token_id: tokenizer.bos_token_id,
        writer.add_eos_token_id: tokenizer.eos_token_id,
        writer.add_unk_token_id: tokenizer.unk_token_id,
        writer.add_pad_token_id: tokenizer.pad_token_id,
    }
    for add, token_id in special.items():
        if token_id is not None:
            add(int(token_id))
    plain, marked = tokenizer("a", add_special_tokens=False)["input_ids"], tokenizer("a")["input_ids"]
    writer.add_add_bos_token(bool(marked[: len(marked) - len(plain)]) and marked[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(marked) > len(plain) and marked[-1] == tokenizer.eos_token_id)
    writer.add_add_space_prefix(False)
    template = getattr(tokenizer, "chat_template", None)
    if template:
        writer.add_chat_template(template)
