"""Build configuration: YAML in, validated dataclasses out, every error naming its key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import ConfigError, read_yaml_mapping
from corpus.audit import audit_check_dirs
from corpus.remote import default_mirror, is_remote
from pipelines.pii.scrub import DEFAULT_REJECTS_TEXT, check_rejects_text
from pipelines.step import Step
from pipelines.steps import step_class

DEFAULT_CONFIG = Path("configs/default.yaml")
TOP_LEVEL_KEYS = {
    "root",
    "workers",
    "shard_mb",
    "work_shard_mb",
    "sources",
    "steps",
    "executor",
    "ray_address",
    "audit_checks",
    "rejects_text",
}
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class SourceSpec:
    """An input file to import into the raw store; ``source`` defaults to ``import:<stem>``."""

    path: Path
    source: str | None = None


@dataclass
class BuildConfig:
    root: Path = Path("data")
    root_uri: str | None = None  # s3://bucket/prefix: ``root`` is then its local mirror (corpus.remote)
    workers: int = 2
    shard_mb: float = 128.0
    work_shard_mb: float = 32.0
    executor: str = "local"
    ray_address: str | None = None
    sources: list[SourceSpec] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    audit_checks: list[Path] = field(default_factory=list)  # folders of user .sql checks (corpus.audit)
    rejects_text: str = DEFAULT_REJECTS_TEXT  # what reject rows keep of a text (pipelines.pii.scrub)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root_uri or str(self.root),
            "workers": self.workers,
            "shard_mb": self.shard_mb,
            "work_shard_mb": self.work_shard_mb,
            "executor": self.executor,
            "ray_address": self.ray_address,
            "sources": [{"path": str(s.path), "source": s.source} for s in self.sources],
            "steps": [{s.name: s.params()} for s in self.steps],
            "audit_checks": [str(p) for p in self.audit_checks],
            "rejects_text": self.rejects_text,
        }

    def set_root(self, root: str) -> None:
        """A local path, or an object-store URL whose local mirror becomes ``root``."""
        if is_remote(root):
            self.root_uri, self.root = root, default_mirror(root)
        else:
            self.root_uri, self.root = None, Path(root)

    def steps_hash(self) -> str:
        """Identity of the processing (not of where it runs): steps and work shard size."""
        ident = {
            "steps": [{s.name: s.params()} for s in self.steps],
            "work_shard_mb": self.work_shard_mb,
            "rejects_text": self.rejects_text,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def parse_steps(items: Any, *, where: str) -> list[Step]:
    if not isinstance(items, list):
        raise ConfigError(f"{where}: 'steps' must be a list")
    steps: list[Step] = []
    for i, item in enumerate(items):
        at = f"{where}: steps[{i}]"
        if isinstance(item, str):
            name, params = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            if params is not None and not isinstance(params, dict):
                raise ConfigError(f"{at}: parameters of {name!r} must be a mapping")
        else:
            raise ConfigError(f"{at}: expected a step name or a one-key mapping name -> parameters")
        steps.append(step_class(name, where=at).from_params(params, where=at))
    names = [s.name for s in steps]
    for name in set(names):
        if names.count(name) > 1:
            raise ConfigError(f"{where}: step {name!r} is listed more than once")
    return steps


def load_config(path: Path | None) -> BuildConfig:
    """Read a YAML build config; ``None`` means the default config if it exists."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return BuildConfig()
        path = DEFAULT_CONFIG
    where = str(path)
    raw = read_yaml_mapping(path)
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    cfg = BuildConfig()
    if "root" in raw:
        cfg.set_root(str(raw["root"]))
    for key in ("workers", "shard_mb", "work_shard_mb"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{where}: {key!r} must be a positive number, got {value!r}")
            setattr(cfg, key, value)
    cfg.workers = int(cfg.workers)
    if "executor" in raw:
        cfg.executor = str(raw["executor"])
        if cfg.executor not in EXECUTORS:
            raise ConfigError(f"{where}: 'executor' must be one of {', '.join(EXECUTORS)}, got {cfg.executor!r}")
    if raw.get("ray_address"):
        cfg.ray_address = str(raw["ray_address"])
    for i, src in enumerate(raw.get("sources") or []):
        if isinstance(src, str):
            cfg.sources.append(SourceSpec(Path(src)))
        elif isinstance(src, dict) and "path" in src and set(src) <= {"path", "source"}:
            cfg.sources.append(SourceSpec(Path(src["path"]), src.get("source")))
        else:
            raise ConfigError(f"{where}: sources[{i}] must be a path or a mapping with 'path' (and optional 'source')")
    cfg.audit_checks = audit_check_dirs(raw.get("audit_checks"), where=where)
    if "rejects_text" in raw:
        try:
            cfg.rejects_text = check_rejects_text(str(raw["rejects_text"]))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    cfg.steps = parse_steps(raw.get("steps", []), where=where)
    return cfg
