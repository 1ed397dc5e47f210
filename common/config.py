"""What every config reader shares: the error type that names the file and key, and reading a
YAML file's top-level mapping (build, synthesis, training and ablation configs alike)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration is wrong; the message names the key and the file."""


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping; errors name the file."""
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{where}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping")
    return raw


def read_template(path: Path, keys: set[str], what: str, *, exact: bool = True) -> tuple[dict[str, Any], str]:
    """A versioned prompt file's mapping (synthesis prompts, judge prompts, annotation rubrics) and
    its version: the sha256 of the file's bytes, 12 hex digits, recorded with every answer made
    from it. With ``exact`` the file has exactly ``keys``, else at least them."""
    where = str(path)
    try:
        data = path.read_bytes()
        raw = yaml.safe_load(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read the {what}: {exc}") from None
    if not isinstance(raw, dict) or (exact and set(raw) != keys):
        raise ConfigError(f"{where}: a {what} has {'exactly ' if exact else ''}the keys {', '.join(sorted(keys))}")
    missing = sorted(keys - set(raw))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    return raw, hashlib.sha256(data).hexdigest()[:12]


__all__ = ["ConfigError", "read_template", "read_yaml_mapping"]
