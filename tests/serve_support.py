"""Tiny real models for the export and serving tests: a byte-level BPE tokenizer trained on the
bundled sample (a few hundred tokens, so most CJK characters take several byte tokens, and GGUF
files load in a second) and random-init Llama/Qwen2 models saved as HF directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from conftest import REPO, SAMPLE, free_port, tiny_llama

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


def save_tiny_model(
    path: Path, model: Any = None, tokenizer: Any = None, *, never_eos: bool = False, **shape: Any
) -> Path:
    """A random-init model (default: the conftest tiny Llama) with the tiny tokenizer, as a HF dir.
    ``never_eos`` zeroes the special tokens' rows of the (untied) output layer, so greedy decoding runs
    until ``max_tokens``: a request as long as a test needs."""
    import torch

    tokenizer = tokenizer or tiny_tokenizer()
    model = model or tiny_llama(vocab_size=len(tokenizer), **shape)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if never_eos:
        with torch.no_grad():
            for special in SPECIALS:  # end of turn, and the other specials (they decode to nothing)
                model.lm_head.weight[tokenizer.convert_tokens_to_ids(special)] = 0.0
    model.config.eos_token_id = eos
    model.generation_config.eos_token_id = eos
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@contextmanager
def serve(model_dir: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[Any]:
    """The real ``python -m training.serve`` on 127.0.0.1; yields an object with ``base`` (URL
    without /v1) and ``proc``; stderr (the access log) goes to ``log``."""
    port = free_port()
    log = log or Path(os.devnull)
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "training.serve",
                "--model",
                str(model_dir),
                "--port",
                str(port),
                "--threads",
                "1",
                *args,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server = type("Server", (), {"base": f"http://127.0.0.1:{port}", "proc": proc, "log": log})()
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{server.base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 180 s")
            time.sleep(0.3)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
