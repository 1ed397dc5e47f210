"""Per-language threshold files (``configs/quality/<lang>.yaml``): read by the step, written by calibration.

One file per language, named by its ISO 639-1 code::

    lang: zh
    quantile: 0.005            # share of the reference each rule may remove, per length band
    reference: {...}           # what it was calibrated on (documents per band, files, command)
    rules:
      gopher_dup_5gram: {short: 0.12, medium: 0.21, long: 0.34, good: 0.0}
      gopher_short_doc: null   # off for this language

A rule missing from ``rules`` keeps its script default for that language.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from quality.rules import RULE_NAMES, LangThresholds

Calibrated = dict[str, dict[str, LangThresholds]]  # lang -> rule -> thresholds


def parse(data: Any, where: str) -> tuple[str, dict[str, LangThresholds]]:
    """A loaded file -> (language, rule thresholds); errors name the file and the key."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping with 'lang' and 'rules'")
    lang = data.get("lang")
    if not isinstance(lang, str) or not lang:
        raise ValueError(f"{where}: 'lang' must be a language code like zh")
    rules = data.get("rules")
    if not isinstance(rules, Mapping):
        raise ValueError(f"{where}: 'rules' must be a mapping of rule name -> thresholds")
    out = {}
    for name, value in rules.items():
        if name not in RULE_NAMES:
            raise ValueError(f"{where}: unknown rule {name!r} in 'rules'; known rules: {', '.join(RULE_NAMES)}")
        out[name] = LangThresholds.parse(lang, value, f"{where}: rules.{name}")
    return lang, out


def load_dir(directory: Path | str) -> Calibrated:
    """Every ``*.yaml`` in ``directory``; one language per file, the file named after it."""
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"thresholds_from: {path}: no such folder of per-language threshold files")
    out: Calibrated = {}
    for file in sorted(path.glob("*.yaml")):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{file}: not valid YAML: {exc}") from None
        lang, rules = parse(data, str(file))
        if file.stem != lang:
            raise ValueError(f"{file}: 'lang: {lang}' does not match the file name (expected {lang}.yaml)")
        out[lang] = rules
    if not out:
        raise ValueError(f"thresholds_from: {path}: no <lang>.yaml files in the folder")
    return out


def as_plain(calibrated: Calibrated) -> dict[str, dict[str, list[float | None]]]:
    """JSON-able form (part of the step's identity: a changed file means a recomputed stage)."""
    return {
        lang: {name: [lt.short, lt.medium, lt.long, lt.good] for name, lt in sorted(rules.items())}
        for lang, rules in sorted(calibrated.items())
    }


def from_plain(plain: Mapping[str, Mapping[str, list[float | None]]]) -> Calibrated:
    return {lang: {name: LangThresholds(lang, *v) for name, v in rules.items()} for lang, rules in plain.items()}


def dump(path: Path, lang: str, rules: Mapping[str, LangThresholds | None], header: str, meta: dict[str, Any]) -> None:
    """Write one language's file: ``header`` as comment lines, then lang, meta and rules."""
    entries: dict[str, Any] = {}
    for name, lt in rules.items():
        if lt is None:
            entries[name] = None
        else:
            entries[name] = {k: getattr(lt, k) for k in ("short", "medium", "long", "good")}
    body = yaml.safe_dump({"lang": lang, **meta, "rules": entries}, sort_keys=False, allow_unicode=True, width=110)
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comment + body, encoding="utf-8")
