"""What every config reader shares: the error type that names the file and key, and reading a
YAML file's top-level mapping (build, synthesis, training and ablation configs alike)."""

from __future__ import annotations

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


__all__ = ["ConfigError", "read_yaml_mapping"]
