"""Tiny real models for the export and serving tests: a byte-level BPE tokenizer trained on the
bundled sample (a few hundred tokens, so most CJK characters take several byte tokens, and GGUF
files load in a second) and random-init Llama/Qwen2 models saved as HF directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import SAMPLE, tiny_llama

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_tokenizer(vocab_size: int = 400) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [json.loads(line)["text"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:200]]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def save_tiny_model(path: Path, model: Any = None, tokenizer: Any = None, **shape: Any) -> Path:
    """A random-init model (default: the conftest tiny Llama) with the tiny tokenizer, as a HF dir."""
    tokenizer = tokenizer or tiny_tokenizer()
    model = model or tiny_llama(vocab_size=len(tokenizer), **shape)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.config.eos_token_id = eos
    model.generation_config.eos_token_id = eos
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
