"""Prompt templates kept as files: ``<templates_dir>/<task>.<lang>.yaml``.

A template names a versioned ``id`` (e.g. ``qa.en.v1``: bump the version when the wording
changes), the chat messages with a ``{chunk}`` slot, the JSON schema the answer must satisfy,
and how a valid answer becomes an instruction row (``row.prompt`` / ``row.response``, format
strings over the answer's fields and ``chunk``). The content hash of the file goes into each
row's meta next to the id, so an edited-but-not-rebumped template is still traceable.
A ``preference`` template writes only ``row.prompt`` and adds ``answer_system``, the system
message the candidates answer that prompt under; its judge is a `JudgeTemplate`
(``judge.<lang>.yaml``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import ConfigError, read_template

REQUIRED_KEYS = {"id", "task", "lang", "system", "user", "schema", "row"}
DEFAULT_LANG = "en"


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    task: str
    lang: str
    system: str
    user: str
    schema: dict[str, Any]
    row_prompt: str
    row_response: str
    sha: str  # sha256 of the file, first 12 hex digits
    path: Path
    answer_system: str | None = None  # preference: how candidates are asked to answer the row's prompt

    def messages(self, chunk: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system.strip()},
            {"role": "user", "content": self.user.format_map({"chunk": chunk}).strip()},
        ]

    def to_row(self, answer: dict[str, Any], chunk: str) -> tuple[str, str]:
        """(prompt, response) of the training row an answer becomes."""
        values = {**{k: str(v).strip() for k, v in answer.items()}, "chunk": chunk}
        return self.row_prompt.format_map(values).strip(), self.row_response.format_map(values).strip()


def _fields(fmt: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(fmt) if name}


def load_template(path: Path) -> PromptTemplate:
    where = str(path)
    raw, sha = read_template(path, REQUIRED_KEYS, "template", exact=False)
    row = raw["row"]
    preference = raw.get("task") == "preference"
    if preference and (set(row or {}) != {"prompt"} or not isinstance(raw.get("answer_system"), str)):
        raise ConfigError(f"{where}: a preference template has 'row: {{prompt: ...}}' and an 'answer_system' message")
    if not preference and (not isinstance(row, dict) or set(row) != {"prompt", "response"}):
        raise ConfigError(f"{where}: 'row' must have exactly 'prompt' and 'response' format strings")
    row = {"response": "", **row}
    schema = raw["schema"]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ConfigError(f"{where}: 'schema' must be a JSON schema of type object")
    allowed = set(schema.get("properties", {})) | {"chunk"}
    for key in ("prompt", "response"):
        unknown = _fields(str(row[key])) - allowed
        if unknown:
            raise ConfigError(f"{where}: row.{key} uses {', '.join(sorted(unknown))}, not a schema property")
    if _fields(str(raw["user"])) != {"chunk"}:
        raise ConfigError(f"{where}: 'user' must contain the {{chunk}} slot and no other (escape braces as {{{{ }}}})")
    return PromptTemplate(
        id=str(raw["id"]),
        task=str(raw["task"]),
        lang=str(raw["lang"]),
        system=str(raw["system"]),
        user=str(raw["user"]),
        schema=schema,
        row_prompt=str(row["prompt"]),
        row_response=str(row["response"]),
        sha=sha,
        path=path,
        answer_system=str(raw["answer_system"]).strip() if preference else None,
    )


JUDGE_KEYS = {"id", "task", "lang", "system", "user", "answer_label", "rationale_max_chars"}
JUDGE_SLOTS = {"chunk", "prompt", "answers"}


@dataclass(frozen=True)
class JudgeTemplate:
    """The judge's messages: the seed text, the prompt and the numbered answers go in; out comes
    a JSON object with a short ``rationale`` and ``rating_1`` .. ``rating_N`` (1-10, as strings,
    so servers that guide only string fields, like ``training.serve``, can force the shape)."""

    id: str
    lang: str
    system: str
    user: str
    answer_label: str  # "Answer {n}" / "回答 {n}"
    rationale_max_chars: int
    sha: str
    path: Path

    def schema(self, n: int) -> dict[str, Any]:
        props: dict[str, Any] = {"rationale": {"type": "string", "minLength": 1, "maxLength": self.rationale_max_chars}}
        props |= {f"rating_{i}": {"type": "string", "minLength": 1, "maxLength": 5} for i in range(1, n + 1)}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    def messages(self, chunk: str, prompt: str, answers: list[str]) -> list[dict[str, str]]:
        block = "\n\n".join(f"{self.answer_label.format(n=i)}:\n{a}" for i, a in enumerate(answers, 1))
        user = self.user.format_map({"chunk": chunk, "prompt": prompt, "answers": block})
        return [{"role": "system", "content": self.system.strip()}, {"role": "user", "content": user.strip()}]


def load_judge(path: Path) -> JudgeTemplate:
    where = str(path)
    raw, sha = read_template(path, JUDGE_KEYS, "judge template")
    if _fields(str(raw["user"])) != JUDGE_SLOTS:
        raise ConfigError(f"{where}: 'user' must contain the slots {{chunk}}, {{prompt}} and {{answers}}, no other")
    if _fields(str(raw["answer_label"])) != {"n"}:
        raise ConfigError(f"{where}: 'answer_label' must contain the {{n}} slot")
    if raw["task"] != "judge" or not isinstance(raw["rationale_max_chars"], int) or raw["rationale_max_chars"] < 1:
        raise ConfigError(f"{where}: task must be 'judge' and rationale_max_chars a positive integer")
    return JudgeTemplate(
        id=str(raw["id"]),
        lang=str(raw["lang"]),
        system=str(raw["system"]),
        user=str(raw["user"]),
        answer_label=str(raw["answer_label"]),
        rationale_max_chars=raw["rationale_max_chars"],
        sha=sha,
        path=path,
    )


def template_lang(doc_lang: str | None) -> str:
    """Chinese documents get the Chinese variant; everything else the English one."""
    return "zh" if (doc_lang or "").lower().startswith("zh") else DEFAULT_LANG


class TemplateSet:
    """The templates of a job's tasks, loaded once and looked up by (task, document language)."""

    def __init__(self, directory: Path, tasks: list[str]) -> None:
        self.by_key: dict[tuple[str, str], PromptTemplate] = {}
        for task in tasks:
            paths = sorted(directory.glob(f"{task}.*.yaml"))
            if not paths:
                raise ConfigError(f"{directory}: no template for task {task!r} (expected {task}.<lang>.yaml)")
            for path in paths:
                tpl = load_template(path)
                if tpl.task != task:
                    raise ConfigError(f"{path}: declares task {tpl.task!r} but is named for {task!r}")
                self.by_key[(task, tpl.lang)] = tpl
            if (task, DEFAULT_LANG) not in self.by_key:
                raise ConfigError(f"{directory}: task {task!r} has no {DEFAULT_LANG!r} template to fall back on")

        self.judges: dict[str, JudgeTemplate] = {}
        if "preference" in tasks:
            for path in sorted(directory.glob("judge.*.yaml")):
                judge = load_judge(path)
                self.judges[judge.lang] = judge
            if DEFAULT_LANG not in self.judges:
                raise ConfigError(f"{directory}: task 'preference' needs judge.{DEFAULT_LANG}.yaml (the judge prompt)")

    def get(self, task: str, doc_lang: str | None) -> PromptTemplate:
        return self.by_key.get((task, template_lang(doc_lang))) or self.by_key[(task, DEFAULT_LANG)]

    def judge(self, doc_lang: str | None) -> JudgeTemplate:
        return self.judges.get(template_lang(doc_lang)) or self.judges[DEFAULT_LANG]
