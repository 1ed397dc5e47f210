"""The annotator's rubric prompts: ``<templates_dir>/annotate.<lang>.yaml``, versioned like the
synthesis prompts (an ``id`` such as ``annotate.en.v1``, bumped when the wording changes, and the
file's sha256 recorded with every label, so an edited-but-not-rebumped rubric stays traceable).

A rubric has a system message (the 0-5 scale), a user message with one ``{document}`` slot and
the JSON schema of the answer: ``reasons`` (a string of at least ``minLength`` characters) then
``score`` (an integer 0-5; ``training.serve`` guides both, so even a tiny model's answer is a
valid score; reasons first, so a model states them before it commits to a number).
`parse_score` turns a schema-valid answer into the integer score or says why it cannot.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import ConfigError, read_template

KEYS = {"id", "task", "lang", "system", "user", "schema"}
MAX_SCORE = 5


@dataclass(frozen=True)
class Rubric:
    id: str
    lang: str
    system: str
    user: str
    schema: dict[str, Any]
    sha: str  # sha256 of the file, first 12 hex digits
    path: Path

    def messages(self, document: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system.strip()},
            {"role": "user", "content": self.user.format_map({"document": document}).strip()},
        ]


def load_rubric(path: Path) -> Rubric:
    where = str(path)
    raw, sha = read_template(path, KEYS, "rubric")
    if raw["task"] != "annotate":
        raise ConfigError(f"{where}: task must be 'annotate', got {raw['task']!r}")
    slots = {name for _, name, _, _ in string.Formatter().parse(str(raw["user"])) if name}
    if slots != {"document"}:
        raise ConfigError(f"{where}: 'user' must contain the {{document}} slot and no other")
    schema = raw["schema"]
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    if not isinstance(schema, dict) or schema.get("type") != "object" or not {"score", "reasons"} <= set(props):
        raise ConfigError(f"{where}: 'schema' must be an object schema with 'reasons' and 'score' properties")
    return Rubric(
        id=str(raw["id"]),
        lang=str(raw["lang"]),
        system=str(raw["system"]),
        user=str(raw["user"]),
        schema=schema,
        sha=sha,
        path=path,
    )


class Rubrics:
    """The rubric per document language: ``zh`` documents get the zh variant, the rest ``en``."""

    def __init__(self, directory: Path) -> None:
        self.by_lang = {r.lang: r for r in map(load_rubric, sorted(Path(directory).glob("annotate.*.yaml")))}
        if "en" not in self.by_lang:
            raise ConfigError(f"{directory}: no annotate.en.yaml rubric (the fallback for every language)")

    def get(self, lang: str | None) -> Rubric:
        key = "zh" if (lang or "").lower().startswith("zh") else "en"
        return self.by_lang.get(key) or self.by_lang["en"]


def parse_score(answer: dict[str, Any]) -> tuple[int | None, str | None]:
    """(score, None) or (None, why): the score must be a whole number from 0 to `MAX_SCORE`."""
    raw = answer.get("score", "")
    value = "" if isinstance(raw, bool) else str(raw).strip()  # an integer, or a digit string (v1 rubrics)
    if not value.isdigit() or not 0 <= int(value) <= MAX_SCORE:
        return None, f"score {value!r} is not a whole number from 0 to {MAX_SCORE}"
    return int(value), None
