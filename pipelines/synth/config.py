"""Synthesis job configuration: YAML in, validated dataclasses out, every error naming its key.

The API key is never part of the config: ``endpoint.api_key_env`` names the environment
variable that holds it, so configs and the catalog's ``runs.config`` can be shared freely.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from common.config import ConfigError, read_yaml_mapping

STRUCTURED_MODES = ("json_schema", "json_object", "none")
SEED_TABLES = ("documents", "raw_documents")


@dataclass
class EndpointConfig:
    """Where requests go: any OpenAI-compatible server (``training.serve``, vLLM, a hosted API)."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "smollm2-135m-instruct"
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable; unset means a local server without auth
    timeout_s: float | None = None  # per request; None: derived from max_tokens (`request_timeout_s`)
    structured_output: str = "json_schema"  # json_schema | json_object | none (parse the text)

    def request_timeout_s(self, max_tokens: int) -> float:
        """The configured timeout, else one a CPU model can meet: the bundled SmolLM2 behind
        ``training.serve`` makes ~3 tokens/s per request in a full batch on 2 cores (a 160-token
        prompt took 92 s), and a request may queue behind one batch, so 60 s + 2 s per token."""
        return self.timeout_s if self.timeout_s is not None else 60.0 + 2.0 * max_tokens


@dataclass
class LimitsConfig:
    """Client-side politeness and fault handling."""

    concurrency: int = 8
    requests_per_minute: int = 0  # 0 = unlimited
    tokens_per_minute: int = 0  # 0 = unlimited; prompt estimate + max_tokens before, actual usage after
    max_retries: int = 6  # for 429, 5xx, timeouts and connection errors
    invalid_retries: int = 2  # extra attempts (seed + attempt) when a response fails validation
    backoff_s: float = 1.0  # first backoff; doubles per retry, with full jitter
    max_backoff_s: float = 60.0


@dataclass
class SeedsConfig:
    """Which catalog documents seed the job: a SQL filter plus a deterministic sample."""

    table: str = "documents"  # documents (final shards) or raw_documents
    where: str | None = None  # SQL boolean expression over the table's columns
    sql: str | None = None  # a whole SELECT instead; must return doc_id and text (lang, url optional)
    sample: int | None = None  # at most this many documents
    seed: int = 0  # the sample is ordered by md5(doc_id || seed): stable across runs and machines
    include_synthetic: bool = False  # also seed from rows a synthesis job wrote (source synth:*)


@dataclass
class ChunkConfig:
    """Documents longer than a context window are cut at paragraph/sentence boundaries."""

    max_chars: int = 2000
    max_chunks: int = 2  # per document


@dataclass
class GenerationConfig:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0


@dataclass
class CandidateConfig:
    """One candidate response per prompt: a sampling temperature, optionally another model or
    endpoint (same key variable) than ``endpoint``."""

    temperature: float = 0.7
    model: str | None = None
    base_url: str | None = None


@dataclass
class PreferenceConfig:
    """Task ``preference``: a prompt from the seed, candidates, a judge rating them against the seed."""

    candidates: list[CandidateConfig] = field(
        default_factory=lambda: [CandidateConfig(temperature=0.2), CandidateConfig(temperature=1.0)]
    )
    min_margin: int = 2  # judge rating points (1-10) chosen must beat rejected by, else rejected
    judge_model: str | None = None  # default: endpoint.model
    judge_base_url: str | None = None  # default: endpoint.base_url
    judge_max_tokens: int = 160
    answer_max_tokens: int | None = None  # default: generation.max_tokens


@dataclass
class PricesConfig:
    """USD per million tokens; zero means no cost is reported."""

    prompt: float = 0.0
    completion: float = 0.0


@dataclass
class SynthConfig:
    job: str = "synth"
    root: str = "data"  # a directory, or s3://bucket/prefix (the job then runs on a pulled mirror)
    tasks: list[str] = field(default_factory=lambda: ["qa"])
    templates_dir: Path = Path("configs/prompts")
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    seeds: SeedsConfig = field(default_factory=SeedsConfig)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)
    prices: PricesConfig = field(default_factory=PricesConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def job_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return None
        hint = next(a for a in get_args(hint) if a is not type(None))
        origin = get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _section(value, hint, where)
    raise ConfigError(f"{where}: unsupported type {hint}")  # pragma: no cover - a programming error


def _section(raw: Any, cls: type, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
    return cls(**{k: _check_type(v, hints[k], f"{where}.{k}" if where else k) for k, v in raw.items()})


def _validate(cfg: SynthConfig, where: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.job):
        raise ConfigError(f"{where}: 'job' must be letters, digits, '_', '.', '-' (it names a directory)")
    if not cfg.tasks:
        raise ConfigError(f"{where}: 'tasks' must list at least one task (e.g. qa, instruct, summary)")
    if cfg.endpoint.structured_output not in STRUCTURED_MODES:
        raise ConfigError(f"{where}: endpoint.structured_output must be one of {', '.join(STRUCTURED_MODES)}")
    if cfg.seeds.table not in SEED_TABLES:
        raise ConfigError(f"{where}: seeds.table must be one of {', '.join(SEED_TABLES)}")
    if cfg.seeds.sql and cfg.seeds.where:
        raise ConfigError(f"{where}: give seeds.sql or seeds.where, not both")
    positive = {
        "limits.concurrency": cfg.limits.concurrency,
        "chunk.max_chars": cfg.chunk.max_chars,
        "chunk.max_chunks": cfg.chunk.max_chunks,
        "generation.max_tokens": cfg.generation.max_tokens,
    }
    if cfg.endpoint.timeout_s is not None:
        positive["endpoint.timeout_s"] = cfg.endpoint.timeout_s
    non_negative = {
        "limits.requests_per_minute": cfg.limits.requests_per_minute,
        "limits.tokens_per_minute": cfg.limits.tokens_per_minute,
        "limits.max_retries": cfg.limits.max_retries,
        "limits.invalid_retries": cfg.limits.invalid_retries,
        "prices.prompt": cfg.prices.prompt,
        "prices.completion": cfg.prices.completion,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}: {key} must be positive, got {value}")
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{where}: {key} must not be negative, got {value}")
    pref = cfg.preference
    if "preference" in cfg.tasks:
        if len(pref.candidates) < 2:
            raise ConfigError(f"{where}: preference.candidates must list at least 2 candidates")
        if not 1 <= pref.min_margin <= 9:
            raise ConfigError(f"{where}: preference.min_margin must be 1-9 rating points, got {pref.min_margin}")
        if pref.judge_max_tokens <= 0 or (pref.answer_max_tokens is not None and pref.answer_max_tokens <= 0):
            raise ConfigError(f"{where}: preference.judge_max_tokens and answer_max_tokens must be positive")
        for i, c in enumerate(pref.candidates):
            if not 0.0 <= c.temperature <= 2.0:
                raise ConfigError(f"{where}: preference.candidates[{i}].temperature must be in [0, 2]")
    if cfg.seeds.sample is not None and cfg.seeds.sample <= 0:
        raise ConfigError(f"{where}: seeds.sample must be positive, got {cfg.seeds.sample}")


def parse_config(raw: Any, where: str) -> SynthConfig:
    cfg = _section(raw, SynthConfig, "")
    _validate(cfg, where)
    return cfg


def parse_section(raw: Any, cls: type, where: str) -> Any:
    """A YAML mapping as dataclass ``cls``, every key checked against its type (other jobs that
    talk to an endpoint, e.g. ``quality.annotate``, reuse the endpoint/limits/generation sections)."""
    return _section(raw, cls, where)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``dotted.key=yaml-value`` strings from the CLI, applied to a raw config mapping."""
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. seeds.sample=10)")
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[leaf] = yaml.safe_load(value)
    return raw


def load_config(path: Path, overrides: list[str] | None = None) -> SynthConfig:
    """Read a YAML job config; ``overrides`` are ``dotted.key=yaml-value`` strings from the CLI."""
    where = str(path)
    raw = apply_overrides(read_yaml_mapping(path), overrides)
    try:
        return parse_config(raw, where)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
